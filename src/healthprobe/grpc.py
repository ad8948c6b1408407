"""gRPC health checking (``grpc.health.v1.Health``) served from a :class:`~healthprobe.HealthRegistry`.

The servicers answer the three RPCs of the gRPC Health Checking Protocol (the
``grpc.health.v1`` proto, https://github.com/grpc/grpc-proto/blob/master/grpc/health/v1/health.proto,
and gRPC's "Health Checking" documentation) by running the registry's checks, as the HTTP
adapters answer ``/livez``, ``/readyz`` and ``/startupz``::

    server = grpc.server(ThreadPoolExecutor(max_workers=16), interceptors=[InFlightInterceptor(shutdown)])
    healthprobe.grpc.add_to_server(server, registry)

The service names (the ``service`` field of ``HealthCheckRequest``):

* ``""``: readiness, the server's overall health (the proto: "If the caller does not
  specify a service name, the server should respond with its overall health status"); what
  a Kubernetes ``grpc:`` probe without ``service`` asks;
* ``"liveness"``, ``"readiness"``, ``"startup"``: the three probes;
* ``"<probe>/<check>"``: one member check of a probe (``"readiness/postgres"``), as
  ``/readyz/postgres`` answers for it.

What each answers (the kubelet accepts only ``SERVING``: Kubernetes, "Configure Liveness,
Readiness and Startup Probes", gRPC probes):

* ``SERVING`` when the probe (or the check) passes or warns; a non-critical check's failure
  is a warning, as it is over HTTP;
* ``NOT_SERVING`` when it fails: a critical check failed, raised, returned something that
  is not a result, or missed its deadline (timed out), the lifecycle fails readiness
  (``starting``, ``draining``, ``stopped``: a readiness service answers ``NOT_SERVING``
  from the shutdown signal on, while ``"liveness"`` stays ``SERVING``), a switch was set
  (``set_ready(False)``), or startup has not latched; a check that has not run yet is run
  before the answer, and one that cannot finish before the caller's deadline makes the
  answer ``NOT_SERVING`` (sent :data:`ANSWER_MARGIN` before that deadline, rather than
  letting the call fail with ``DEADLINE_EXCEEDED``);
* an unknown name: ``Check`` fails with ``NOT_FOUND`` and ``Watch`` sends
  ``SERVICE_UNKNOWN`` and keeps the stream open (the proto's words for both), sending the
  status once the service exists (a check added later).

A ``NOT_SERVING`` answer to ``Check`` carries the trailing metadata ``healthprobe-reason``:
one line naming what failed (``postgres failed: reason withheld; lifecycle failed:
draining``). What a check wrote (its output, an exception's text) is shown there only with
``expose_output=True``, as in HTTP bodies; the words healthprobe writes itself (``timed out
after 0.8 s``, ``draining``) always are.

Every answer comes from :meth:`HealthRegistry.run` (thread-pool servers) or
:meth:`HealthRegistry.run_async` (asyncio servers): the same deadlines, single-flight and
result cache as the HTTP probes, and the same Prometheus series
(``healthprobe_probe_status``, ``healthprobe_check_*``), whose label values are probe and
check names, never a client's text. A repeated ``Check`` whose answer still shows the
current results (:meth:`HealthRegistry.still_current`) is answered without a run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import logging
import math
import queue
import threading
import time
import types
import typing
import weakref

from . import _extras, _threads, _types
from . import registry as _registry
from . import render as _render
from . import shutdown as _shutdown

with _extras.requires("grpc", __name__):
    import grpc
    import grpc.aio
    from grpc_health.v1 import health_pb2, health_pb2_grpc

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Mapping

    from ._runner import Check
    from ._types import Probe, Report, Status
    from .registry import HealthRegistry
    from .shutdown import GracefulShutdown

__all__ = [
    "ANSWER_MARGIN",
    "HEALTH_SERVICE",
    "LIVENESS",
    "MIN_WATCH_INTERVAL",
    "OVERALL",
    "READINESS",
    "REASON_KEY",
    "REASON_LIMIT",
    "SERVICES",
    "SERVICE_LIMIT",
    "STARTUP",
    "WATCH_LIMIT",
    "AioHealthServicer",
    "AioInFlightInterceptor",
    "HealthServicer",
    "InFlightInterceptor",
    "add_to_server",
]

_logger = logging.getLogger("healthprobe")

#: The service name of the server's overall health: readiness (the proto's "overall health
#: status", asked with an empty ``service``; a Kubernetes ``grpc:`` probe without ``service``
#: sends it).
OVERALL = ""
#: The service name of the liveness probe.
LIVENESS = "liveness"
#: The service name of the readiness probe.
READINESS = "readiness"
#: The service name of the startup probe.
STARTUP = "startup"
#: Each whole-probe service name and the probe it answers for. One check of a probe is the
#: service ``"<probe>/<check>"`` (``"readiness/postgres"``).
SERVICES: Mapping[str, Probe] = types.MappingProxyType(
    {
        OVERALL: _types.Probe.READINESS,
        LIVENESS: _types.Probe.LIVENESS,
        READINESS: _types.Probe.READINESS,
        STARTUP: _types.Probe.STARTUP,
    }
)
#: The most services ``List`` returns; with more, it fails with ``RESOURCE_EXHAUSTED`` (the
#: ``grpc.health.v1`` proto: "The maximum number of services to return is 100; responses
#: exceeding this limit will result in a RESOURCE_EXHAUSTED error").
SERVICE_LIMIT = 100
#: The most distinct services watched at once on one servicer (known or not: a client may
#: watch a check before it is added); a ``Watch`` of one more fails with
#: ``RESOURCE_EXHAUSTED``, so that clients naming ever new services cannot make a re-runner
#: each without bound. Streams of a service already watched are not limited here.
WATCH_LIMIT = 2 * SERVICE_LIMIT
_TOO_MANY_WATCHED = f"more than {WATCH_LIMIT} services watched at once"
#: The full name of the gRPC health service, whose RPCs the in-flight interceptors do not
#: count.
HEALTH_SERVICE = "grpc.health.v1.Health"
#: Seconds before the caller's deadline at which an answer not yet made is given up and
#: ``NOT_SERVING`` sent instead, leaving this long for it to reach the caller. A caller that
#: sets no deadline waits for the checks' own deadlines.
ANSWER_MARGIN = 0.05
#: Fewest seconds between two runs of a watched service's checks by its re-runner (a check
#: with ``cache_ttl=0`` is re-run this often while it is watched).
MIN_WATCH_INTERVAL = 0.1
#: The trailing metadata key of a ``NOT_SERVING`` answer to ``Check``: one line saying what
#: failed.
REASON_KEY = "healthprobe-reason"
#: The most characters of :data:`REASON_KEY`'s value; a longer text is cut.
REASON_LIMIT = 1024

_PROBES = {probe.value: probe for probe in _types.Probe}
_HEALTH_PREFIX = f"/{HEALTH_SERVICE}/"
#: A ``time_remaining()`` above this many seconds is no deadline: the thread-pool server
#: gives the distance to its "infinite future" when the caller set none.
_NO_DEADLINE = 1e6
_LIST_ORDER = (_types.Probe.STARTUP, _types.Probe.READINESS, _types.Probe.LIVENESS)

_HealthCheckResponse = health_pb2.HealthCheckResponse
_SERVING_STATUS: int = _HealthCheckResponse.SERVING
_NOT_SERVING_STATUS: int = _HealthCheckResponse.NOT_SERVING
_UNKNOWN_STATUS: int = _HealthCheckResponse.SERVICE_UNKNOWN
# The answers are shared, never changed: the server only serialises them.
_RESPONSES = {
    status: _HealthCheckResponse(status=status) for status in (_SERVING_STATUS, _NOT_SERVING_STATUS, _UNKNOWN_STATUS)
}
_SERVING = _RESPONSES[_SERVING_STATUS]
_NOT_SERVING = _RESPONSES[_NOT_SERVING_STATUS]
_LATE_REASON = ((REASON_KEY, "not finished within the caller's deadline"),)
_ERROR_REASON = ((REASON_KEY, "internal error"),)

#: Set while a watched service's re-runner evaluates it: the report listener then knows the
#: report is the re-runner's own.
_evaluating: contextvars.ContextVar[bool] = contextvars.ContextVar("healthprobe_grpc_evaluating", default=False)

_Target = tuple["Probe", "str | None"]


class _Answer(typing.NamedTuple):
    """A remembered answer to ``Check``: sent again while the registry says ``stamp`` holds."""

    stamp: _registry.AnswerStamp
    response: object
    trailers: tuple[tuple[str, str], ...]


class _TooMany(Exception):
    """More services than ``List`` may return."""


def _serving(report: Report) -> int:
    return _SERVING_STATUS if report.status.ok else _NOT_SERVING_STATUS


def _metadata_text(text: str) -> str:
    """``text`` as a metadata value may carry it: one line of printable ASCII (other
    characters escaped), at most :data:`REASON_LIMIT` characters."""
    text = _render.one_line(text).encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 3] + "..."


def _deadline(context: typing.Any) -> float | None:
    """The ``time.monotonic()`` by which an answer must be made for the caller, or ``None``."""
    remaining: float | None = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return None
    return time.monotonic() + remaining - ANSWER_MARGIN


def _not_found(context: typing.Any, service: str) -> typing.NoReturn:
    """End the call with ``NOT_FOUND`` (``context.abort`` raises)."""
    context.abort(grpc.StatusCode.NOT_FOUND, _refusal(service))
    raise AssertionError("ServicerContext.abort returned")


async def _not_found_async(context: typing.Any, service: str) -> typing.NoReturn:
    """:func:`_not_found` for an asyncio server."""
    await context.abort(grpc.StatusCode.NOT_FOUND, _refusal(service))
    raise AssertionError("ServicerContext.abort returned")


def _refusal(service: str) -> str:
    """The details of a ``NOT_FOUND`` answer; a check name is shown only when it is one."""
    probe_name, slash, check = service.partition("/")
    if slash and probe_name in _PROBES and _registry.CHECK_NAME.fullmatch(check):
        return f"no {probe_name} check named {check!r}"
    return "unknown service: use '' (readiness), 'liveness', 'readiness', 'startup' or '<probe>/<check>'"


class _Entry:
    """One watched service: its streams, its latest status, and its re-runner's state."""

    __slots__ = ("depends", "interval", "loop", "service", "status", "subscribers", "task", "wake", "whole")

    def __init__(self, service: str, wake: threading.Event | asyncio.Event) -> None:
        self.service = service
        self.wake = wake
        self.subscribers: set[_Subscriber] = set()
        #: The latest status (a ``ServingStatus`` value), ``None`` before the first evaluation.
        self.status: int | None = None
        #: The raw status of each check the latest evaluation showed (or, for a service not
        #: known yet, the check it names, with no status): a new result of one of them with
        #: another status wakes the re-runner.
        self.depends: dict[str, Status | None] = {}
        #: The probe, when the service is a whole probe: its reports wake the re-runner.
        self.whole: Probe | None = None
        self.interval = MIN_WATCH_INTERVAL
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None


class _Subscriber:
    """One ``Watch`` stream."""

    __slots__ = ("changed", "ended", "last", "lock", "send")

    def __init__(self, send: Callable[[object], object] | None = None) -> None:
        self.send = send
        self.last: int | None = None
        self.ended = False
        self.lock = threading.Lock()
        self.changed: asyncio.Event | None = None


class _Services:
    """What both servicers share: service names, the bound of a run, the remembered answers,
    the reasons of a failure, and the listeners that wake watched services."""

    def __init__(self, registry: HealthRegistry, expose_output: bool, entries: Callable[[], tuple[_Entry, ...]]):
        if not isinstance(registry, _registry.HealthRegistry):
            raise TypeError(f"registry must be a HealthRegistry, got {type(registry).__name__}")
        if not isinstance(expose_output, bool):
            raise TypeError(f"expose_output must be True or False, got {expose_output!r}")
        self.registry = registry
        self.expose_output = expose_output
        self.entries = entries
        self.wake: Callable[[_Entry], None] = lambda entry: None
        #: Remembered answers to ``Check``, by service name; replaced when the generation moves.
        self.answers: dict[str, _Answer] = {}
        self._table: tuple[int, dict[str, _Target]] = (-1, {})

    # -- names -----------------------------------------------------------------------------

    def targets(self) -> dict[str, _Target]:
        """Every service name and the ``(probe, only)`` it runs, for the current checks."""
        registry = self.registry
        generation = registry.generation
        table = self._table
        if table[0] == generation:
            return table[1]
        targets: dict[str, _Target] = {name: (probe, None) for name, probe in SERVICES.items()}
        for check in registry.checks:
            for probe in _LIST_ORDER:
                if probe in check.probes:
                    targets[f"{probe.value}/{check.name}"] = (probe, check.name)
        self._table = (generation, targets)
        self.answers = {}  # every stamp made before holds an older generation
        return targets

    def bound(self, probe: Probe, only: str | None) -> float:
        """The most seconds a run of ``probe`` (``only`` one check) may take now: the
        longest deadline of the checks it would run, 0 when every result is fresh."""
        registry = self.registry
        starting = registry.lifecycle is _types.Lifecycle.STARTING
        now = time.monotonic()
        worst = 0.0
        for state in registry.check_states():
            check = state.check
            if only is not None:
                member = check.name == only and probe in check.probes
            elif probe is _types.Probe.STARTUP:
                member = starting and probe in check.probes
            else:
                member = probe in check.probes or (
                    starting and probe is _types.Probe.READINESS and _types.Probe.STARTUP in check.probes
                )
            if member and check.timeout > worst and state.fresh_result(now) is None:
                worst = check.timeout
        return worst

    # -- answers -----------------------------------------------------------------------------

    def remembered(self, service: str, context: typing.Any) -> object | None:
        """The remembered answer of ``Check`` for ``service`` while it is still current, its
        trailing metadata set on ``context``; ``None`` when a run must make a new one."""
        answer = self.answers.get(service)
        if answer is None or not self.registry.still_current(answer.stamp):
            return None
        if answer.trailers:
            context.set_trailing_metadata(answer.trailers)
        return answer.response

    def reply(self, service: str, report: Report | None, generation: int, context: typing.Any) -> object:
        """The response of ``Check`` for ``report`` (``None``: it could not be made before the
        caller's deadline), its trailing metadata set on ``context``."""
        if report is None:
            context.set_trailing_metadata(_LATE_REASON)
            return _NOT_SERVING
        response, trailers = self.answer(service, report, generation)
        if trailers:
            context.set_trailing_metadata(trailers)
        return response

    def answer(self, service: str, report: Report, generation: int) -> tuple[object, tuple[tuple[str, str], ...]]:
        """The response and trailing metadata of ``Check`` for ``report``; remembered while
        it may be sent again."""
        trailers: tuple[tuple[str, str], ...] = ()
        if report.status.ok:
            response = _SERVING
        else:
            response, trailers = _NOT_SERVING, ((REASON_KEY, self.reason(report)),)
        stamp = self.registry.stamp(report, generation)
        if stamp is not None:
            self.answers[service] = _Answer(stamp, response, trailers)
        return response, trailers

    def reason(self, report: Report) -> str:
        """One line naming what fails ``report``; what checks wrote only with ``expose_output``."""
        parts = []
        for entry in report.checks.values():
            if entry.status is _types.Status.FAIL:
                result = entry.result
                shown = result.output if (result.timed_out or self.expose_output) and result.output else None
                parts.append(f"{entry.name} failed: {shown or _render.WITHHELD}")
        parts.extend(f"lifecycle failed: {reason}" for reason in report.reasons)
        return _metadata_text("; ".join(parts) or "failed")

    def listing(
        self, targets: Mapping[str, _Target], reports: Mapping[_Target, Report | None]
    ) -> health_pb2.HealthListResponse:
        """The answer to ``List``: each service's status from the reports made for it (a
        check's from its probe's report, or its own run when that report does not show
        it); ``NOT_SERVING`` where none was made in time."""
        response = health_pb2.HealthListResponse()
        statuses = response.statuses
        for service, target in targets.items():
            probe, only = target
            report = reports.get((probe, None))
            status = _NOT_SERVING_STATUS
            if only is None:
                if report is not None:
                    status = _serving(report)
            else:
                entry = None if report is None else report.checks.get(only)
                if entry is not None:
                    status = _SERVING_STATUS if entry.status.ok else _NOT_SERVING_STATUS
                else:
                    single = reports.get(target)
                    if single is not None:
                        status = _serving(single)
            statuses[service].status = status
        return response

    def list_targets(self) -> dict[str, _Target]:
        """The services ``List`` answers for. Raises :class:`_TooMany` beyond the limit."""
        targets = self.targets()
        if len(targets) > SERVICE_LIMIT:
            raise _TooMany(
                f"{len(targets)} services, more than the {SERVICE_LIMIT} that List may return "
                "(grpc.health.v1); ask for each with Check"
            )
        return targets

    @staticmethod
    def singles(targets: Mapping[str, _Target], reports: Mapping[_Target, Report | None]) -> list[_Target]:
        """The per-check services whose probe's report does not show their check (startup
        checks once startup has latched): they get a run of their own."""
        found: list[_Target] = []
        for probe, only in targets.values():
            if only is not None:
                report = reports.get((probe, None))
                if report is not None and only not in report.checks:
                    found.append((probe, only))
        return found

    # -- watched services --------------------------------------------------------------------

    def begin(self, entry: _Entry) -> _Target | None:
        """Start an evaluation of ``entry``: its target, or ``None`` (and its interval and
        dependency set) when its service does not exist."""
        target = self.targets().get(entry.service)
        if target is None:
            probe_name, slash, check = entry.service.partition("/")
            entry.whole = None
            entry.depends = {check: None} if slash and probe_name in _PROBES else {}
            entry.interval = self.idle_interval()
        else:
            entry.whole = target[0] if target[1] is None else None
        return target

    def settle(self, entry: _Entry, report: Report | None) -> int:
        """The status of ``entry`` from the report of its evaluation (``None``: unknown)."""
        if report is None:
            return _UNKNOWN_STATUS
        entry.depends = {name: check.raw_status for name, check in report.checks.items()}
        entry.interval = self.interval(report)
        return _serving(report)

    def interval(self, report: Report) -> float:
        """Seconds until the re-runner looks at a service again after ``report``: when its
        first result expires (a little past it, so that the check is due then), at least
        :data:`MIN_WATCH_INTERVAL`, at most :meth:`idle_interval`."""
        idle = self.idle_interval()
        now = time.monotonic()
        soonest = math.inf
        if report.checks:
            for state in self.registry.check_states():
                if state.check.name in report.checks:
                    soonest = min(soonest, state.fresh_until - now)
        return max(MIN_WATCH_INTERVAL, min(idle, soonest + 0.005))

    def idle_interval(self) -> float:
        """The longest the re-runner waits between two looks at a service: the registry's
        ``default_cache_ttl`` (at least :data:`MIN_WATCH_INTERVAL`). What no listener
        reports (``set_ready``, ``set_live``, a check added or removed) is seen then; a look
        while the results are fresh runs nothing."""
        return max(MIN_WATCH_INTERVAL, self.registry.default_cache_ttl)

    def on_result(self, check: Check, result: _types.CheckResult) -> None:
        name = check.name
        status = result.status
        for entry in self.entries():
            depends = entry.depends
            if name in depends and depends[name] is not status and entry.status is not None:
                self.wake(entry)

    def on_report(self, report: Report) -> None:
        if _evaluating.get():
            return  # the re-runner's own: it publishes the status itself
        status = _serving(report)
        for entry in self.entries():
            if entry.whole is report.probe and entry.status is not None and entry.status != status:
                self.wake(entry)

    def on_lifecycle(self, old: _types.Lifecycle, new: _types.Lifecycle) -> None:
        for entry in self.entries():
            if entry.status is not None:
                self.wake(entry)

    def listen(self, owner: object) -> None:
        """Register the listeners on the registry, through a weak reference to ``owner`` (the
        servicer), so that a registry outliving its servicer keeps nothing of it alive."""
        alive = weakref.ref(owner)
        services = weakref.ref(self)

        def on_result(check: Check, result: _types.CheckResult) -> None:
            found = services()
            if found is not None and alive() is not None:
                found.on_result(check, result)

        def on_report(report: Report) -> None:
            found = services()
            if found is not None and alive() is not None:
                found.on_report(report)

        def on_lifecycle(old: _types.Lifecycle, new: _types.Lifecycle) -> None:
            found = services()
            if found is not None and alive() is not None:
                found.on_lifecycle(old, new)

        self.registry.add_result_listener(on_result)
        self.registry.add_report_listener(on_report)
        self.registry.add_lifecycle_listener(on_lifecycle)


class _Servicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """What the thread-pool and the asyncio servicers share: the services they answer for
    and the registry they answer from."""

    _entries: dict[str, _Entry]
    _services: _Services

    @property
    def registry(self) -> HealthRegistry:
        """The registry answered from."""
        return self._services.registry

    @property
    def expose_output(self) -> bool:
        """Whether ``NOT_SERVING`` answers show what checks wrote."""
        return self._services.expose_output

    def _entry_list(self) -> tuple[_Entry, ...]:
        return tuple(self._entries.values())


class HealthServicer(_Servicer):
    """The ``grpc.health.v1.Health`` service of a thread-pool server (``grpc.server``),
    answered from ``registry``: ``Check``, ``Watch`` and ``List``. Add it with
    :func:`add_to_server`.

    Args:
        registry: the :class:`~healthprobe.HealthRegistry` to answer from.
        expose_output: show what checks wrote (their output and exception text) in the
            :data:`REASON_KEY` trailer of ``NOT_SERVING`` answers. Default ``False``: such
            text can reveal hosts, users or queries.

    Raises:
        TypeError: ``registry`` is not a :class:`~healthprobe.HealthRegistry`, or
            ``expose_output`` is not a bool.

    ``Check`` runs in the server's thread pool. ``Watch`` holds no thread of it: its streams
    are sent to (grpcio's ``experimental_non_blocking``) by one re-runner thread per watched
    service.
    """

    def __init__(self, registry: HealthRegistry, *, expose_output: bool = False) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._services = _Services(registry, expose_output, self._entry_list)
        self._services.wake = _wake_thread
        # Runs started for callers whose deadline is shorter than the run's bound, by
        # (probe, only): the callers for the same one wait on one run.
        self._pending: dict[_Target, concurrent.futures.Future[Report]] = {}
        self._services.listen(self)

    # -- Check ---------------------------------------------------------------------------------

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> object:
        """Answer the status of ``request.service`` (see the module for the names and
        what each status means).

        The probe runs in the calling thread unless it might not be done before the caller's
        deadline (:data:`ANSWER_MARGIN` seconds before it); then it runs in a thread of its
        own, shared by every caller asking for the same service meanwhile, and a caller
        whose deadline comes first is answered ``NOT_SERVING``.

        Args:
            request: a ``HealthCheckRequest``; ``service`` names the service.
            context: the call's ``grpc.ServicerContext``.

        Returns:
            A ``HealthCheckResponse`` whose ``status`` is ``SERVING`` or ``NOT_SERVING``; a
            ``NOT_SERVING`` answer sets the :data:`REASON_KEY` trailing metadata.

        Raises:
            Exception: what ``context.abort`` raises to end the call with a status (grpcio):
                ``NOT_FOUND`` for an unknown service, with one line naming the service's
                forms (the proto: "If the requested service is unknown, the call will fail
                with status NOT_FOUND"). A failure inside healthprobe is logged and answered
                ``NOT_SERVING``, never sent as an error text.
        """
        service = request.service
        services = self._services
        remembered = services.remembered(service, context)
        if remembered is not None:
            return remembered
        target = services.targets().get(service)
        if target is None:
            _not_found(context, service)
        generation = services.registry.generation
        try:
            report = self._run(target, _deadline(context))
        except _registry.UnknownCheckError:  # removed meanwhile
            _not_found(context, service)
        except Exception:
            _logger.exception("gRPC health check of %r failed inside healthprobe", target[0].value)
            context.set_trailing_metadata(_ERROR_REASON)
            return _NOT_SERVING
        return services.reply(service, report, generation, context)

    def _run(self, target: _Target, deadline: float | None) -> Report | None:
        """The report of ``target``, or ``None`` when it cannot be made by ``deadline``."""
        probe, only = target
        registry = self._services.registry
        if deadline is None:
            return registry.run(probe, only=only)
        left = deadline - time.monotonic()
        if self._services.bound(probe, only) <= max(left, 0.0):  # fresh results: answer now
            return registry.run(probe, only=only)
        if left <= 0:
            return None
        with self._lock:
            future = self._pending.get(target)
            if future is None:
                future = self._pending[target] = concurrent.futures.Future()
                _threads.start(self._run_for_others, target, future, name="healthprobe-grpc-check")
        try:
            return future.result(timeout=left)
        except concurrent.futures.TimeoutError:
            return None

    def _run_for_others(self, target: _Target, future: concurrent.futures.Future[Report]) -> None:
        try:
            report = self._services.registry.run(target[0], only=target[1])
        except BaseException as error:
            future.set_exception(error)
        else:
            future.set_result(report)
        finally:
            with self._lock:
                if self._pending.get(target) is future:
                    del self._pending[target]

    # -- List ----------------------------------------------------------------------------------

    def List(self, request: health_pb2.HealthListRequest, context: grpc.ServicerContext) -> object:
        """Answer every service with its status: ``""``, ``"liveness"``, ``"readiness"``,
        ``"startup"`` and each ``"<probe>/<check>"``, each as ``Check`` would answer it now
        (one run of each probe; a startup check after startup has latched, which its probe
        no longer runs, with a run of its own). A status not made before the caller's
        deadline (:data:`ANSWER_MARGIN` seconds before it) is ``NOT_SERVING``.

        Args:
            request: a ``HealthListRequest`` (it has no field).
            context: the call's ``grpc.ServicerContext``.

        Returns:
            A ``HealthListResponse`` whose ``statuses`` map each service name to a
            ``HealthCheckResponse`` (``SERVING`` or ``NOT_SERVING``).

        Raises:
            Exception: what ``context.abort`` raises to end the call with a status (grpcio):
                ``RESOURCE_EXHAUSTED`` when there are
                more than :data:`SERVICE_LIMIT` (100) services (the proto's limit).
        """
        services = self._services
        try:
            targets = services.list_targets()
        except _TooMany as error:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
            raise AssertionError("ServicerContext.abort returned") from None
        deadline = _deadline(context)
        reports: dict[_Target, Report | None] = {}
        for probe in _LIST_ORDER:
            reports[(probe, None)] = self._run_quietly((probe, None), deadline)
        for target in services.singles(targets, reports):
            reports[target] = self._run_quietly(target, deadline)
        return services.listing(targets, reports)

    def _run_quietly(self, target: _Target, deadline: float | None) -> Report | None:
        try:
            return self._run(target, deadline)
        except _registry.UnknownCheckError:
            return None
        except Exception:
            _logger.exception("gRPC health list of %r failed inside healthprobe", target[0].value)
            return None

    # -- Watch ---------------------------------------------------------------------------------

    def Watch(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.ServicerContext,
        send_response_callback: Callable[[object], object] | None = None,
    ) -> _BlockingStream | None:
        """Stream ``service``'s status: the current one at once (as soon as its checks have
        answered), then one message each time it changes, until the client ends the call.

        Changes are found without polling the stream: the registry's listeners wake the
        service's re-runner when a check it shows settles with another status, when a probe
        it answers for is answered by anyone else, and at each lifecycle change; and the
        re-runner runs the service's checks again when their results expire (their
        ``cache_ttl``, at least :data:`MIN_WATCH_INTERVAL` seconds), so a service nobody
        else probes is kept current too. It looks again at least every ``default_cache_ttl``
        seconds of the registry (1 s by default; such a look runs nothing while the results
        are fresh): what no listener reports (``set_ready``, ``set_live``, a check added or
        removed) is sent by then. One re-runner (a daemon thread) per watched service,
        shared by its streams; it ends with the last of them. An unknown service is sent
        ``SERVICE_UNKNOWN`` and its stream stays open; once the service exists (a check
        added), its status is sent (the proto's rule).

        Args:
            request: a ``HealthCheckRequest``; ``service`` names the service.
            context: the call's ``grpc.ServicerContext``.
            send_response_callback: given by grpcio to a non-blocking handler: each
                ``HealthCheckResponse`` is sent through it.

        Returns:
            ``None`` when grpcio gave ``send_response_callback``; else (a server that does
            not know the option) an iterator of the ``HealthCheckResponse`` messages, which
            then holds a thread of the pool while the stream is open.
        """
        blocking: _BlockingStream | None = None
        if send_response_callback is None:
            blocking = _BlockingStream()
            send_response_callback = blocking.put
        subscriber = _Subscriber(send_response_callback)
        service = request.service
        with self._lock:
            entry = self._entries.get(service)
            start = entry is None
            full = start and len(self._entries) >= WATCH_LIMIT
            if entry is None and not full:
                entry = self._entries[service] = _Entry(service, threading.Event())
            if entry is not None:
                entry.subscribers.add(subscriber)
        if entry is None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _TOO_MANY_WATCHED)  # raises
            return blocking
        if not context.add_callback(functools.partial(self._unsubscribe, entry, subscriber, blocking)):
            self._unsubscribe(entry, subscriber, blocking)  # the call is over already
        if start:  # even then: the re-runner takes the entry away once no stream is left
            _threads.start(self._rerun, entry, name="healthprobe-grpc-watch")
        else:
            _deliver(entry, subscriber)
        return blocking

    # Handled without holding a thread of the pool (grpcio's _server.py: a handler marked so is
    # given ``send_response_callback`` and returns at once).
    Watch.experimental_non_blocking = True  # type: ignore[attr-defined]
    Watch.experimental_thread_pool = None  # type: ignore[attr-defined]

    def _unsubscribe(self, entry: _Entry, subscriber: _Subscriber, blocking: _BlockingStream | None) -> None:
        subscriber.ended = True
        with self._lock:
            entry.subscribers.discard(subscriber)
            empty = not entry.subscribers
        if empty:
            typing.cast("threading.Event", entry.wake).set()
        if blocking is not None:
            blocking.put(None)

    def _rerun(self, entry: _Entry) -> None:
        """The re-runner of one watched service (see :meth:`Watch`)."""
        wake = typing.cast("threading.Event", entry.wake)
        services = self._services
        while True:
            with self._lock:
                if not entry.subscribers:
                    if self._entries.get(entry.service) is entry:
                        del self._entries[entry.service]
                    return
            wake.clear()
            try:
                status = self._evaluate(entry)
            except Exception:
                _logger.exception("gRPC health watch of a service failed inside healthprobe")
                status = _NOT_SERVING_STATUS
                entry.interval = services.idle_interval()
            with self._lock:
                entry.status = status
                subscribers = tuple(entry.subscribers)
            for subscriber in subscribers:
                _deliver(entry, subscriber)
            wake.wait(entry.interval)

    def _evaluate(self, entry: _Entry) -> int:
        services = self._services
        target = services.begin(entry)
        if target is None:
            return _UNKNOWN_STATUS
        token = _evaluating.set(True)
        try:
            report: Report | None = services.registry.run(target[0], only=target[1])
        except _registry.UnknownCheckError:
            report = None
        finally:
            _evaluating.reset(token)
        return services.settle(entry, report)


def _wake_thread(entry: _Entry) -> None:
    typing.cast("threading.Event", entry.wake).set()


def _deliver(entry: _Entry, subscriber: _Subscriber) -> None:
    """Send ``entry``'s current status to a thread-pool server's stream, unless it was the
    last one sent; one send at a time per stream, so a later status never overtakes."""
    with subscriber.lock:
        status = entry.status
        if subscriber.ended or status is None or status == subscriber.last or subscriber.send is None:
            return
        subscriber.last = status
        try:
            subscriber.send(_RESPONSES[status])
        except Exception:  # the call ended meanwhile
            subscriber.ended = True


class _BlockingStream:
    """The messages of a ``Watch`` on a server that calls it without ``send_response_callback``."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()

    def put(self, response: object) -> None:
        self._queue.put(response)

    def __iter__(self) -> Iterator[object]:
        while True:
            response = self._queue.get()
            if response is None:
                return
            yield response


class AioHealthServicer(_Servicer):
    """The ``grpc.health.v1.Health`` service of an asyncio server (``grpc.aio.server``),
    answered from ``registry`` without blocking its event loop: ``Check``, ``Watch`` and
    ``List``, as :class:`HealthServicer` answers them. Add it with :func:`add_to_server`.

    Args:
        registry: the :class:`~healthprobe.HealthRegistry` to answer from.
        expose_output: as for :class:`HealthServicer`.

    Raises:
        TypeError: as :class:`HealthServicer`.

    Async checks run on the server's event loop, sync checks in their own threads
    (:meth:`HealthRegistry.run_async`). A watched service's re-runner is a task on the loop.
    """

    def __init__(self, registry: HealthRegistry, *, expose_output: bool = False) -> None:
        self._entries: dict[str, _Entry] = {}
        self._services = _Services(registry, expose_output, self._entry_list)
        self._services.wake = _wake_task
        self._pending: dict[_Target, asyncio.Task[Report]] = {}
        self._services.listen(self)

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> object:
        """As :meth:`HealthServicer.Check`; a run that might not be done before the caller's
        deadline is a task shared by the callers asking for the same service meanwhile."""
        service = request.service
        services = self._services
        remembered = services.remembered(service, context)
        if remembered is not None:
            return remembered
        target = services.targets().get(service)
        if target is None:
            await _not_found_async(context, service)
        generation = services.registry.generation
        try:
            report = await self._run(target, _deadline(context))
        except _registry.UnknownCheckError:  # removed meanwhile
            await _not_found_async(context, service)
        except Exception:
            _logger.exception("gRPC health check of %r failed inside healthprobe", target[0].value)
            context.set_trailing_metadata(_ERROR_REASON)
            return _NOT_SERVING
        return services.reply(service, report, generation, context)

    async def _run(self, target: _Target, deadline: float | None) -> Report | None:
        probe, only = target
        registry = self._services.registry
        if deadline is None:
            return await registry.run_async(probe, only=only)
        left = deadline - time.monotonic()
        if self._services.bound(probe, only) <= max(left, 0.0):  # fresh results: answer now
            return await registry.run_async(probe, only=only)
        if left <= 0:
            return None
        task = self._pending.get(target)
        if task is None:
            task = self._pending[target] = asyncio.get_running_loop().create_task(
                registry.run_async(probe, only=only), name="healthprobe-grpc-check"
            )
            task.add_done_callback(functools.partial(self._ran, target))
        done, _ = await asyncio.wait({task}, timeout=left)
        return task.result() if done else None

    def _ran(self, target: _Target, task: asyncio.Task[Report]) -> None:
        if self._pending.get(target) is task:
            del self._pending[target]
        if not task.cancelled():
            task.exception()  # retrieved: a caller that gave up is not told of it

    async def List(self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext) -> object:
        """As :meth:`HealthServicer.List`; the probes run concurrently."""
        services = self._services
        try:
            targets = services.list_targets()
        except _TooMany as error:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
            raise AssertionError("ServicerContext.abort returned") from None
        deadline = _deadline(context)
        reports: dict[_Target, Report | None] = {}
        wholes: list[_Target] = [(probe, None) for probe in _LIST_ORDER]
        for target, report in zip(wholes, await self._run_all(wholes, deadline), strict=True):
            reports[target] = report
        singles = services.singles(targets, reports)
        for target, report in zip(singles, await self._run_all(singles, deadline), strict=True):
            reports[target] = report
        return services.listing(targets, reports)

    async def _run_all(self, targets: list[_Target], deadline: float | None) -> list[Report | None]:
        results = await asyncio.gather(*(self._run(target, deadline) for target in targets), return_exceptions=True)
        reports: list[Report | None] = []
        for target, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, _registry.UnknownCheckError):
                    _logger.error("gRPC health list of %r failed inside healthprobe", target[0].value, exc_info=result)
                reports.append(None)
            else:
                reports.append(result)
        return reports

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        """As :meth:`HealthServicer.Watch`: the messages are written with
        ``context.write`` by the stream's handler, which waits on the loop (it returns
        ``None`` when the client cancels the call), and the service's re-runner is a task on
        the loop."""
        service = request.service
        entry = self._entries.get(service)
        if entry is None:
            if len(self._entries) >= WATCH_LIMIT:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _TOO_MANY_WATCHED)
            entry = self._entries[service] = _Entry(service, asyncio.Event())
            entry.loop = asyncio.get_running_loop()
            entry.task = entry.loop.create_task(self._rerun(entry), name="healthprobe-grpc-watch")
        subscriber = _Subscriber()
        changed = subscriber.changed = asyncio.Event()
        if entry.status is not None:
            changed.set()
        entry.subscribers.add(subscriber)
        try:
            while True:
                await changed.wait()
                changed.clear()
                status = entry.status
                if status is not None and status != subscriber.last:
                    subscriber.last = status
                    await context.write(_RESPONSES[status])
        finally:
            entry.subscribers.discard(subscriber)
            if not entry.subscribers:
                typing.cast("asyncio.Event", entry.wake).set()

    async def _rerun(self, entry: _Entry) -> None:
        wake = typing.cast("asyncio.Event", entry.wake)
        services = self._services
        try:
            while entry.subscribers:
                wake.clear()
                try:
                    status = await self._evaluate(entry)
                except Exception:
                    _logger.exception("gRPC health watch of a service failed inside healthprobe")
                    status = _NOT_SERVING_STATUS
                    entry.interval = services.idle_interval()
                entry.status = status
                for subscriber in entry.subscribers:
                    if subscriber.changed is not None:
                        subscriber.changed.set()
                if not entry.subscribers:
                    break
                try:
                    await asyncio.wait_for(wake.wait(), entry.interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            if self._entries.get(entry.service) is entry:
                del self._entries[entry.service]

    async def _evaluate(self, entry: _Entry) -> int:
        services = self._services
        target = services.begin(entry)
        if target is None:
            return _UNKNOWN_STATUS
        token = _evaluating.set(True)
        try:
            report: Report | None = await services.registry.run_async(target[0], only=target[1])
        except _registry.UnknownCheckError:
            report = None
        finally:
            _evaluating.reset(token)
        return services.settle(entry, report)


def _wake_task(entry: _Entry) -> None:
    """Wake an asyncio re-runner from any thread (a listener runs in the thread that settled
    a run); nothing when its loop has closed."""
    loop = entry.loop
    if loop is None:
        return
    try:
        loop.call_soon_threadsafe(typing.cast("asyncio.Event", entry.wake).set)
    except RuntimeError:
        pass


def add_to_server(
    server: object, registry: HealthRegistry, *, expose_output: bool = False
) -> HealthServicer | AioHealthServicer:
    """Serve ``grpc.health.v1.Health`` from ``registry`` on ``server``.

    Args:
        server: a ``grpc.server`` (thread pool) or a ``grpc.aio.server``, not started yet
            (grpcio adds services before ``start``).
        registry: the :class:`~healthprobe.HealthRegistry` to answer from.
        expose_output: as for :class:`HealthServicer`.

    Returns:
        The :class:`AioHealthServicer` for a ``grpc.aio.Server``, else the
        :class:`HealthServicer` added (``health_pb2_grpc.add_HealthServicer_to_server``).

    Raises:
        TypeError: ``server`` is neither kind of server, or as :class:`HealthServicer`.
    """
    servicer: HealthServicer | AioHealthServicer
    if isinstance(server, grpc.aio.Server):
        servicer = AioHealthServicer(registry, expose_output=expose_output)
    elif isinstance(server, grpc.Server):
        servicer = HealthServicer(registry, expose_output=expose_output)
    else:
        raise TypeError(f"server must be a grpc.server() or a grpc.aio.server(), got {type(server).__name__}")
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


# -- in-flight interceptors ----------------------------------------------------------------------


def _check_shutdown(shutdown: object) -> list[None]:
    if not isinstance(shutdown, _shutdown.GracefulShutdown):
        raise TypeError(f"shutdown must be a GracefulShutdown, got {type(shutdown).__name__}")
    return shutdown.requests_in_flight.slots


def _release(slots: list[None], *_: object) -> None:
    if slots:
        slots.pop()


def _counted_handler(handler: typing.Any, wrap: Callable[[typing.Any], typing.Any]) -> typing.Any:
    """``handler`` with its behaviour wrapped by ``wrap``, of the same kind."""
    options = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **options)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **options)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **options)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **options)
    return handler


class _Wrapped:
    """The counted handler of each method, made once per handler the server gives."""

    def __init__(self, wrap: Callable[[typing.Any], typing.Any]) -> None:
        self._wrap = wrap
        self._made: dict[str, tuple[typing.Any, typing.Any]] = {}

    def get(self, method: str, handler: typing.Any) -> typing.Any:
        made = self._made.get(method)
        if made is not None and made[0] is handler:
            return made[1]
        counted = _counted_handler(handler, self._wrap)
        self._made[method] = (handler, counted)
        return counted


class InFlightInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Counts the RPCs of a thread-pool server (``grpc.server``) in
    ``shutdown.requests_in_flight``, so that the coordinator's drain waits for them::

        server = grpc.server(executor, interceptors=[InFlightInterceptor(shutdown)])

    Every RPC is counted from the moment its handler is called until it ends (its status
    sent, or the call cancelled: grpcio's termination callback), unary and streaming alike;
    the ``grpc.health.v1.Health`` RPCs are not (a probe is not work to drain, and a
    ``Watch`` stream lasts as long as its client).

    Args:
        shutdown: the :class:`~healthprobe.GracefulShutdown` of the process.

    Raises:
        TypeError: ``shutdown`` is not a :class:`~healthprobe.GracefulShutdown`.
    """

    def __init__(self, shutdown: GracefulShutdown) -> None:
        slots = _check_shutdown(shutdown)
        #: The coordinator counted for.
        self.shutdown = shutdown

        def wrap(behavior: Callable[..., typing.Any]) -> Callable[..., typing.Any]:
            release = functools.partial(_release, slots)

            @functools.wraps(behavior)  # keeps grpcio's experimental_* attributes
            def counted(request: object, context: typing.Any, *rest: typing.Any) -> typing.Any:
                slots.append(None)
                if not context.add_callback(release):  # already over
                    release()
                return behavior(request, context, *rest)

            return counted

        self._wrapped = _Wrapped(wrap)

    def intercept_service(
        self, continuation: Callable[[typing.Any], typing.Any], handler_call_details: typing.Any
    ) -> typing.Any:
        """The handler of the call, counted unless it is a health RPC (grpcio's
        ``ServerInterceptor`` interface)."""
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_HEALTH_PREFIX):
            return handler
        return self._wrapped.get(method, handler)


class AioInFlightInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """:class:`InFlightInterceptor` for an asyncio server (``grpc.aio.server``)::

        server = grpc.aio.server(interceptors=[AioInFlightInterceptor(shutdown)])

    An RPC is counted while its handler runs: until the coroutine returns or the async
    generator is done, or the handler is cancelled with the call.

    Args:
        shutdown: the :class:`~healthprobe.GracefulShutdown` of the process.

    Raises:
        TypeError: ``shutdown`` is not a :class:`~healthprobe.GracefulShutdown`.
    """

    def __init__(self, shutdown: GracefulShutdown) -> None:
        slots = _check_shutdown(shutdown)
        #: The coordinator counted for.
        self.shutdown = shutdown
        self._wrapped = _Wrapped(functools.partial(_count_aio, slots))

    async def intercept_service(
        self, continuation: Callable[[typing.Any], typing.Any], handler_call_details: typing.Any
    ) -> typing.Any:
        """The handler of the call, counted unless it is a health RPC (grpcio's
        ``aio.ServerInterceptor`` interface)."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_HEALTH_PREFIX):
            return handler
        return self._wrapped.get(method, handler)


def _count_aio(slots: list[None], behavior: Callable[..., typing.Any]) -> Callable[..., typing.Any]:
    """``behavior`` counted in ``slots`` while it runs, of the same kind (coroutine, async
    generator, or a plain function or generator, which grpc.aio runs in a thread)."""
    if inspect.isasyncgenfunction(behavior):

        @functools.wraps(behavior)
        async def counted_stream(request: object, context: typing.Any) -> AsyncIterator[typing.Any]:
            slots.append(None)
            try:
                async for response in behavior(request, context):
                    yield response
            finally:
                _release(slots)

        return counted_stream
    if inspect.iscoroutinefunction(behavior):

        @functools.wraps(behavior)
        async def counted(request: object, context: typing.Any) -> typing.Any:
            slots.append(None)
            try:
                return await behavior(request, context)
            finally:
                _release(slots)

        return counted
    if inspect.isgeneratorfunction(behavior):

        @functools.wraps(behavior)
        def counted_generator(request: object, context: typing.Any) -> Iterator[typing.Any]:
            slots.append(None)
            try:
                yield from behavior(request, context)
            finally:
                _release(slots)

        return counted_generator

    @functools.wraps(behavior)
    def counted_call(request: object, context: typing.Any) -> typing.Any:
        slots.append(None)
        try:
            return behavior(request, context)
        finally:
            _release(slots)

    return counted_call
