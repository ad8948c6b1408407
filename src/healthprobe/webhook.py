"""Webhook notices of failing and restored checks and probes, with damping.

:class:`WebhookPublisher` POSTs one JSON document per notice to a URL (a chat bridge, an
incident tool, a receiver of your own): a ``failing`` notice once a check or a probe has
failed ``after_failures`` times in a row, at most once per ``min_interval`` seconds per
check or probe, and one ``restored`` notice when it passes again after a ``failing`` notice
was sent. It sends with the standard library (:mod:`urllib.request`), or with httpx when
installed (extra ``webhook``) or asked for.

A probe never waits for it: what it hears from the registry (each check run, each whole
answer) is handed to its own thread without a lock, and notices wait on a bounded queue
(the oldest dropped and counted when it is full) for a second thread that sends them, each
with at most ``attempts`` tries and a backoff between them, then gives up and counts it.
:class:`healthprobe.prometheus.WebhookCollector` shows the counts to Prometheus.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import queue
import socket
import threading
import time
import typing
import urllib.error
import urllib.parse
import urllib.request

from . import _extras, _threads, _transitions, _types
from . import registry as _registry
from .checks import _common

if typing.TYPE_CHECKING:
    from collections.abc import Mapping

    from ._runner import Check
    from ._types import CheckResult, Report
    from .registry import HealthRegistry

__all__ = ["DEFAULT_QUEUE_SIZE", "OUTCOMES", "Notice", "WebhookPublisher"]

_logger = logging.getLogger("healthprobe")

#: How many notices wait to be sent at most, by default.
DEFAULT_QUEUE_SIZE = 100
#: The outcomes a notice is counted under: sent (a 2xx answer), failed (every attempt
#: failed), dropped (the queue was full, or the publisher closed before sending it).
OUTCOMES = ("sent", "failed", "dropped")
#: How many raw events (check runs, whole answers) wait to be looked at, at most.
_INBOX_SIZE = 10_000
#: The HTTP statuses worth another attempt besides 5xx (RFC 9110: 408 Request Timeout;
#: RFC 6585: 429 Too Many Requests).
_RETRY_STATUSES = frozenset({408, 429})


@dataclasses.dataclass(frozen=True, slots=True)
class Notice:
    """One notice, as sent (:meth:`as_json`). Read-only.

    Attributes:
        event: ``"failing"`` or ``"restored"``.
        kind: ``"check"`` or ``"probe"``.
        name: the check's name, or the probe's (``"readiness"``...).
        status: the status now: ``"fail"`` for ``failing``; ``"pass"`` or ``"warn"`` for
            ``restored``.
        reason: the reason word (:attr:`healthprobe.Transition.reason`): ``"timeout"``,
            ``"error"``, ``"fail"``, ``"lifecycle"``, ``"rotation"``... for ``failing``,
            ``"recovered"`` for ``restored``.
        failures: failed runs or answers in a row (for ``restored``: before it passed).
        since: when the failures began, in seconds since the Unix epoch.
        seconds: for ``restored``, how long it failed, in seconds; else since ``since``.
        at: when the notice was made, in seconds since the Unix epoch.
        instance: who sends it (the host name: the pod's name in Kubernetes).
        output: what the check reported (redacted), or a probe's reasons; ``None`` unless
            the publisher has ``expose_output=True``.
    """

    event: str
    kind: str
    name: str
    status: str
    reason: str
    failures: int
    since: float
    seconds: float
    at: float
    instance: str
    output: str | None = None

    def as_json(self) -> bytes:
        """The JSON document POSTed (UTF-8): an object with each attribute as a key (``output``
        only when it is set)."""
        document = dataclasses.asdict(self)
        if document["output"] is None:
            del document["output"]
        return json.dumps(document, separators=(",", ":")).encode()


@dataclasses.dataclass(slots=True)
class _Subject:
    """What the damping knows of one check or probe."""

    failures: int = 0
    since: float = 0.0
    notified: bool = False
    last_notice: float | None = None


class WebhookPublisher:
    """POST a JSON :class:`Notice` when a check or a probe keeps failing, and when it passes
    again; attach it to a registry with :meth:`attach`.

    Args:
        url: where to POST (``http://`` or ``https://``). It is never logged with its
            userinfo or query values (:func:`healthprobe.checks.redact`).
        after_failures: failed runs (or whole answers) in a row before a ``failing`` notice
            (default 3; at least 1).
        min_interval: seconds between two ``failing`` notices of one check or probe at most
            once (default 300); a ``restored`` notice is always sent after a ``failing`` one.
        timeout: seconds an attempt may wait for each network operation (connect, send,
            each read) before it fails (default 5).
        headers: extra request headers (an ``Authorization`` header, for example); never
            logged.
        restored: send a ``restored`` notice when a check or probe passes again after a
            ``failing`` notice (default ``True``).
        queue_size: notices waiting to be sent at most; when full the oldest is dropped and
            counted (default :data:`DEFAULT_QUEUE_SIZE`).
        attempts: tries per notice before it is counted ``failed`` and dropped (default 3).
            A 5xx answer, 408, 429, a network error or a timeout is tried again; any other
            answer outside 2xx is not.
        backoff: seconds before the second try, doubled for each further one (default 0.5).
        checks: send notices about checks (default ``True``).
        probes: send notices about probes' whole answers (default ``True``).
        expose_output: put what the check reported (it may hold exception text, redacted) or
            a probe's reasons in ``output`` (default ``False``: never sent).
        instance: the ``instance`` of every notice (default: the host name).
        client: ``"urllib"`` (the standard library), ``"httpx"`` (extra ``webhook``), or
            ``"auto"`` (the default: httpx when it can be imported, else the standard library).

    Raises:
        ValueError: a URL that is not ``http``/``https``, ``after_failures`` or
            ``attempts`` below 1, ``queue_size`` below 1, a negative ``min_interval`` or
            ``backoff``, a non-positive ``timeout``, or an unknown ``client``.
        ModuleNotFoundError: ``client="httpx"`` without httpx installed; the message names
            the extra that brings it (``pip install 'healthprobe[webhook]'``).
    """

    def __init__(
        self,
        url: str,
        *,
        after_failures: int = 3,
        min_interval: float = 300.0,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        restored: bool = True,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        attempts: int = 3,
        backoff: float = 0.5,
        checks: bool = True,
        probes: bool = True,
        expose_output: bool = False,
        instance: str | None = None,
        client: str = "auto",
    ) -> None:
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"url must be an http:// or https:// URL, got {_common.redact(str(url))!r}")
        for what, number in (("after_failures", after_failures), ("attempts", attempts), ("queue_size", queue_size)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ValueError(f"{what} must be an int >= 1, got {number!r}")
        _registry.check_seconds("min_interval", min_interval, positive=False)
        _registry.check_seconds("timeout", timeout, positive=True)
        _registry.check_seconds("backoff", backoff, positive=False)
        if client not in ("auto", "urllib", "httpx"):
            raise ValueError(f"client must be 'auto', 'urllib' or 'httpx', got {client!r}")
        self.url = url
        self.after_failures = after_failures
        self.min_interval = float(min_interval)
        self.timeout = float(timeout)
        self.headers = {"Content-Type": "application/json", **dict(headers or {})}
        self.restored = bool(restored)
        self.queue_size = queue_size
        self.attempts = attempts
        self.backoff = float(backoff)
        self.checks = bool(checks)
        self.probes = bool(probes)
        self.expose_output = bool(expose_output)
        self.instance = instance if instance is not None else socket.gethostname()
        self._httpx: typing.Any = None
        if client == "httpx" or client == "auto":
            try:
                with _extras.requires("webhook", __name__):
                    import httpx
            except ModuleNotFoundError:
                if client == "httpx":
                    raise
            else:
                self._httpx = httpx.Client(timeout=self.timeout, follow_redirects=False)
        #: ``"httpx"`` or ``"urllib"``: what sends.
        self.client = "urllib" if self._httpx is None else "httpx"
        self._shown = _common.redact(url)
        self._subjects: dict[tuple[str, str], _Subject] = {}
        # Raw events, handed over without a lock: a deque append is atomic, and the wake-up
        # queue's put never blocks.
        self._inbox: collections.deque[tuple[str, str, CheckResult | Report, float]] = collections.deque(
            maxlen=_INBOX_SIZE
        )
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._idle = False
        self._notices: collections.deque[Notice] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads: tuple[threading.Thread, threading.Thread] | None = None
        self._pid = 0
        # Bumped at each start and close: a thread of an older generation ends once idle.
        self._generation = 0
        # The sender's: bumped by close only once the looking thread has queued its last notice.
        self._send_generation = 0
        self._dropping = False
        self._counts = dict.fromkeys(OUTCOMES, 0)

    # -- attaching -----------------------------------------------------------------------

    def attach(self, registry: HealthRegistry) -> WebhookPublisher:
        """Hear ``registry``'s check runs and whole answers (through its result and report
        listeners, which only hand them to this publisher's thread). Returns the publisher.

        Never runs a check or a probe: notices follow what the probers, background checks
        and scrapes make the registry run.
        """
        if self.checks:
            registry.add_result_listener(self._on_result)
        if self.probes:
            registry.add_report_listener(self._on_report)
        return self

    def _on_result(self, check: Check, result: CheckResult) -> None:
        self._hand("check", check.name, result)

    def _on_report(self, report: Report) -> None:
        self._hand("probe", report.probe.value, report)

    def _hand(self, kind: str, name: str, event: CheckResult | Report) -> None:
        """Hand one event to the publisher's thread: no lock, no wait."""
        self._inbox.append((kind, name, event, time.monotonic()))
        if self._threads is None or self._pid != os.getpid():
            self._start()
        if self._idle:
            self._wake.put(None)

    def _start(self) -> None:
        with self._cond:
            if self._threads is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._generation += 1
            self._send_generation = self._generation
            self._idle = False
            self._threads = (
                _threads.start(self._look, self._generation, name="healthprobe-webhook"),
                _threads.start(self._send_forever, self._generation, name="healthprobe-webhook-send"),
            )

    # -- damping -------------------------------------------------------------------------

    def _look(self, generation: int) -> None:
        """The thread that applies the damping to each event, in the order they came."""
        while True:
            self._idle = True  # before looking: an event handed from now on wakes us
            if not self._inbox:
                if self._generation != generation:
                    return
                self._wake.get()
            self._idle = False
            while self._inbox:
                kind, name, event, seen = self._inbox.popleft()
                notice = self._damp(kind, name, event, seen)
                if notice is not None:
                    self._queue(notice)

    def _damp(self, kind: str, name: str, event: CheckResult | Report, now: float) -> Notice | None:
        """The notice ``event``, handed at ``time.monotonic()`` ``now``, calls for, if any;
        updates what is known of its subject."""
        status = event.status
        subject = self._subjects.setdefault((kind, name), _Subject())
        wall = time.time() - (time.monotonic() - now)
        if status is _types.Status.FAIL:
            if subject.failures == 0:
                subject.since = wall
            subject.failures += 1
            if subject.notified or subject.failures < self.after_failures:
                return None
            if subject.last_notice is not None and now - subject.last_notice < self.min_interval:
                return None
            subject.notified, subject.last_notice = True, now
            reason, output = self._why(event)
            return Notice(
                "failing",
                kind,
                name,
                "fail",
                reason,
                subject.failures,
                subject.since,
                wall - subject.since,
                wall,
                self.instance,
                output,
            )
        failures, notified = subject.failures, subject.notified
        subject.failures, subject.notified = 0, False
        if not (notified and self.restored):
            return None
        return Notice(
            "restored",
            kind,
            name,
            status.value,
            "recovered",
            failures,
            subject.since,
            wall - subject.since,
            wall,
            self.instance,
        )

    def _why(self, event: CheckResult | Report) -> tuple[str, str | None]:
        """The reason word of a failure and, with ``expose_output``, its output."""
        if isinstance(event, _types.Report):
            failing = [entry for entry in event.checks.values() if entry.result.status is _types.Status.FAIL]
            reason = "fail"
            for text in event.reasons:
                reason = (
                    "rotation"
                    if text.startswith("out of rotation")
                    else "not_live"
                    if text.startswith("not live")
                    else "lifecycle"
                )
                break
            else:
                if failing:
                    reason = _transitions.check_reason(failing[0].result, failing[0].result)
            words = [*event.reasons, *(f"{entry.name} failed" for entry in failing)]
            return reason, ("; ".join(words) or None) if self.expose_output else None
        return _transitions.check_reason(event, event), event.output if self.expose_output else None

    # -- sending -------------------------------------------------------------------------

    def _queue(self, notice: Notice) -> None:
        burst = False
        with self._cond:
            if len(self._notices) >= self.queue_size:
                self._notices.popleft()
                self._counts["dropped"] += 1
                burst, self._dropping = not self._dropping, True
            self._notices.append(notice)
            self._cond.notify()
        if burst:
            _logger.warning(
                "webhook %s falls behind: dropping the oldest notices (queue of %d full)",
                self._shown,
                self.queue_size,
                extra={"webhook": self._shown, "outcome": "dropped"},
            )

    def _send_forever(self, generation: int) -> None:
        while True:
            with self._cond:
                while not self._notices and self._send_generation == generation:
                    self._cond.wait()
                if not self._notices:
                    return
                notice = self._notices.popleft()
                if not self._notices:
                    self._dropping = False
            outcome = "sent" if self._send(notice) else "failed"
            with self._cond:
                self._counts[outcome] += 1

    def _send(self, notice: Notice) -> bool:
        """Try to deliver ``notice`` at most :attr:`attempts` times; whether it was."""
        body = notice.as_json()
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status = self._post(body)
            except Exception as exc:  # a network error, a timeout: worth another try
                problem = type(exc).__name__
                continue
            if 200 <= status < 300:
                return True
            problem = f"HTTP {status}"
            if status < 500 and status not in _RETRY_STATUSES:
                break
        _logger.warning(
            "webhook %s: %s notice of %s %s not sent (%s)",
            self._shown,
            notice.event,
            notice.kind,
            notice.name,
            problem,
            extra={"webhook": self._shown, "outcome": "failed", "event": notice.event, "subject": notice.name},
        )
        return False

    def _post(self, body: bytes) -> int:
        """POST ``body``; the answer's status code. Raises on a network error or timeout."""
        if self._httpx is not None:
            answer = self._httpx.post(self.url, content=body, headers=self.headers)
            return int(answer.status_code)
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read()
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)

    # -- counts and closing --------------------------------------------------------------

    @property
    def counts(self) -> dict[str, int]:
        """Notices so far by outcome (:data:`OUTCOMES`): ``{"sent": 3, "failed": 0, "dropped": 1}``."""
        with self._cond:
            return dict(self._counts)

    @property
    def queued(self) -> int:
        """Notices waiting to be sent now."""
        return len(self._notices)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then end the publisher's threads; wait up to ``timeout``
        seconds in all. Notices still queued after it are counted ``dropped``. A later event
        starts the threads again."""
        with self._cond:
            threads, self._threads = self._threads, None
            if threads is None or self._pid != os.getpid():
                return
            generation = self._generation
            self._generation += 1  # the looking thread ends once it has looked at everything
        self._wake.put(None)
        deadline = time.monotonic() + timeout
        threads[0].join(max(0.0, deadline - time.monotonic()))
        with self._cond:  # then the sender, once it has sent what is queued
            if self._send_generation == generation:
                self._send_generation = -1
            self._cond.notify_all()
        threads[1].join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            if threads[1].is_alive():
                return  # still sending: it counts what it sends
            left = len(self._notices)
            self._notices.clear()
            self._counts["dropped"] += left
