"""Probes for a Celery worker in one call (extra ``celery``).

A worker has no web server of its own, and Celery owns its signals, its event loop and its
broker connection. :func:`install` wires healthprobe into those from the app module::

    # proj/celery.py
    from celery import Celery

    import healthprobe.celery

    app = Celery("proj", broker="redis://redis:6379/0")
    probes = healthprobe.celery.install(app, port=8081, metrics=True)

Then ``celery -A proj worker`` serves, from its main process only (never from a prefork
child):

* ``/startupz``: ``503`` until Celery sends ``worker_ready`` (the consumer is connected and
  consuming), then ``200`` for good (check ``celery-worker``).
* ``/livez``: ``503`` once the consumer's event loop has not run for ``max_interval``
  seconds (check ``celery-consumer``, a :func:`~healthprobe.checks.heartbeat` beaten from a
  timer on that loop). While the consumer reconnects to a broker that is down, and during a
  warm shutdown, the loop cannot beat: the heartbeat is then
  :meth:`~healthprobe.checks.Heartbeat.waiting` and liveness keeps passing, since
  restarting the worker fixes neither.
* ``/readyz``: ``503`` while the consumer is not connected to the broker or a fresh
  connection to the broker fails (check ``celery-broker``), and from the moment a shutdown
  signal reaches the worker (Celery's ``worker_shutting_down``) until it exits, while the
  tasks it runs finish (the lifecycle, ``draining``, fails it).
* ``/metrics`` with ``metrics=True`` (extra ``prometheus``).

Celery handles ``SIGTERM`` itself (a warm shutdown: no new task, the running ones finish,
exit 0); healthprobe installs no signal handler and only follows it.

A normal start and warm shutdown log no ``WARNING`` from these checks: the startup check's
first ``fail`` before ``worker_ready`` is logged at ``INFO`` (a worker that is not ready yet
is expected at start), and from the shutdown signal on the broker and consumer checks report
``worker shutting down`` without a change to ``warn`` or ``fail``.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import math
import os
import re
import socket
import threading
import time
import typing
import weakref

from . import _extras, _threads, _types, probe_server
from . import registry as _registry
from .checks import _common, _liveness

with _extras.requires("celery", __name__):
    from celery import bootsteps, signals  # type: ignore[import-untyped]
    from celery.worker import state as worker_state  # type: ignore[import-untyped]

if typing.TYPE_CHECKING:
    from typing import Any

    from ._types import CheckResult, Status
    from .http import MetricsSource
    from .probe_server import ProbeServer
    from .registry import HealthRegistry

__all__ = [
    "CHECK_NAMES",
    "DEFAULT_MAX_INTERVAL",
    "EXIT_NO_PROBES",
    "SHUTTING_DOWN",
    "CeleryProbes",
    "ConsumerHeartbeat",
    "install",
]

_logger = logging.getLogger("healthprobe")

#: Default ``max_interval`` in seconds: how long the consumer's event loop may go without
#: running before liveness fails.
DEFAULT_MAX_INTERVAL = 60.0
#: The checks :func:`install` registers, per probe.
CHECK_NAMES = {"startup": "celery-worker", "liveness": "celery-consumer", "readiness": "celery-broker"}
#: Exit status of a worker whose probe server cannot start (Celery's ``EX_FAILURE``).
EXIT_NO_PROBES = 1
#: The output of the broker check from the shutdown signal on, and the start of the
#: consumer check's.
SHUTTING_DOWN = "worker shutting down"


# One CeleryProbes per Celery app (the consumer bootstep finds its own through its app).
_installed: weakref.WeakKeyDictionary[Any, CeleryProbes] = weakref.WeakKeyDictionary()


class CeleryProbes:
    """What :func:`install` wired for one Celery app; returned by it.

    Attributes:
        app: the Celery app.
        registry: the :class:`~healthprobe.HealthRegistry` the checks are registered in; add
            your own (a result backend, a database the tasks use) to it.
        heartbeat: the consumer's :class:`~healthprobe.checks.Heartbeat`, which check
            ``celery-consumer`` (liveness) reports.
        host: the address the probe server listens on.
        port: the port it was asked to listen on (``server.port`` is the bound one).
        server: the running :class:`~healthprobe.ProbeServer` in the worker's main process,
            ``None`` in every other process (prefork children, a web app that imports the
            Celery app to send tasks, ``celery beat``) and before the worker starts.
    """

    def __init__(
        self,
        app: Any,
        registry: HealthRegistry,
        *,
        host: str,
        port: int,
        max_interval: float,
        broker_check: bool,
        broker_timeout: float | None,
        max_broker_wait: float | None,
        metrics: bool | MetricsSource,
        expose_output: bool,
    ) -> None:
        self.app = app
        self.registry = registry
        self.host = host
        self.port = port
        self.heartbeat = _liveness.Heartbeat(max_interval)
        self.server: ProbeServer | None = None
        self.max_broker_wait = max_broker_wait
        self.broker_timeout = broker_timeout if broker_timeout is not None else registry.default_timeout
        self._metrics = metrics
        self._expose_output = expose_output
        self._ready = False
        self._connected = False
        self._stopping = False  # set by worker_shutting_down, in the worker's main process
        self._pid = 0  # the worker's main process, once worker_init came
        self._worker: Any = None
        self._lock = threading.Lock()
        self._broker_wait: contextlib.ExitStack | None = None
        self._shutdown_wait: contextlib.ExitStack | None = None
        self._wake: tuple[int, int] | None = None
        self._redis: bool | None = None
        registry.add_check(CHECK_NAMES["startup"], self._check_ready, probes=["startup"])
        registry.add_check(CHECK_NAMES["liveness"], self._check_consumer, probes=["liveness"])
        if broker_check:
            registry.add_check(
                CHECK_NAMES["readiness"], self._check_broker, probes=["readiness"], timeout=self.broker_timeout
            )

    #: The values :attr:`phase` takes (the words of :class:`~healthprobe.GracefulShutdown`).
    phases: tuple[str, ...] = ("serving", "drain", "stopped")

    def __repr__(self) -> str:
        where = self.server.url if self.server is not None else f"{self.host}:{self.port}, not serving here"
        return f"<CeleryProbes {self.app.main or 'celery'} {where}>"

    @property
    def ready(self) -> bool:
        """Whether Celery sent ``worker_ready`` in this process."""
        return self._ready

    @property
    def connected(self) -> bool:
        """Whether the consumer is connected to the broker (its bootsteps have started and it
        has not lost the connection since)."""
        return self._connected

    @property
    def in_flight(self) -> int:
        """The tasks this worker runs now (Celery's active requests), shown by ``/metrics``
        as ``healthprobe_in_flight_requests``."""
        return len(worker_state.active_requests)

    @property
    def phase(self) -> str:
        """``serving``, ``drain`` from the shutdown signal while the running tasks finish,
        then ``stopped``; shown by ``/metrics`` as ``healthprobe_shutdown_phase``."""
        lifecycle = self.registry.lifecycle
        if lifecycle is _types.Lifecycle.DRAINING:
            return "drain"
        return "stopped" if lifecycle is _types.Lifecycle.STOPPED else "serving"

    # -- checks ------------------------------------------------------------------------------

    def _check_ready(self) -> CheckResult:
        if self._ready:
            return _types.CheckResult(_types.Status.PASS)
        # Logged at INFO, not WARNING, when it is the check's first result (_NotReadyYet).
        return _types.CheckResult(
            _types.Status.FAIL, output="the worker is not ready yet (no worker_ready from Celery)"
        )

    def _previous_status(self, name: str) -> Status | None:
        try:
            previous = self.registry.last_result(name)
        except _registry.UnknownCheckError:
            return None
        return None if previous is None else previous.status

    def _check_consumer(self) -> CheckResult:
        result = self.heartbeat()
        if not self._stopping or result.status is not _types.Status.WARN:
            return result
        # The wait for the shutdown (or for a broker that was already gone) is expected: it
        # passes, or stays warn when the check already warned, so it is no new warning.
        previous = self._previous_status(CHECK_NAMES["liveness"])
        return _types.CheckResult(
            _types.Status.WARN if previous is _types.Status.WARN else _types.Status.PASS,
            output=f"{SHUTTING_DOWN}; {result.output}",
            observed_value=result.observed_value,
            observed_unit=result.observed_unit,
        )

    def _check_broker(self) -> CheckResult:
        if self._stopping:
            # The consumer stops with the worker, and the lifecycle (draining) fails readiness
            # already: the state the broker was last seen in stands, without a new attempt.
            previous = self._previous_status(CHECK_NAMES["readiness"])
            return _types.CheckResult(previous or _types.Status.PASS, output=SHUTTING_DOWN)
        if not self._connected:
            return _types.CheckResult(_types.Status.FAIL, output="the consumer is not connected to the broker")
        start = time.monotonic()
        # The attempt ends by itself before the check's deadline, so no thread outlives it.
        timeout = self.broker_timeout * 0.9
        if self._redis is None:
            with self.app.connection_for_read() as unconnected:  # the transport, no connection yet
                self._redis = unconnected.transport.driver_type == "redis"
        # Redis takes its socket timeouts from the transport options, not connect_timeout.
        options = {"socket_connect_timeout": timeout, "socket_timeout": timeout} if self._redis else {}
        url = str(self.app.conf.broker_read_url or self.app.conf.broker_url or "")
        conn = self.app.connection_for_read(connect_timeout=timeout, transport_options=options)
        try:
            # One attempt per broker URL (failover alternates too), no sleep between them.
            conn.ensure_connection(max_retries=max(0, len(conn.alt) - 1), timeout=timeout)
        except Exception as exc:
            return _common.failure(exc, _common.url_secrets(url))
        finally:
            with contextlib.suppress(Exception):
                conn.release()
        return _types.CheckResult(_types.Status.PASS, observed_value=_common.elapsed_since(start), observed_unit="s")

    # -- the consumer's connection (called by ConsumerHeartbeat, in the consumer's thread) ---

    def _wait_for_broker(self) -> None:
        with self._lock:
            if self._broker_wait is None:
                stack = contextlib.ExitStack()
                stack.enter_context(self.heartbeat.waiting("broker", max_seconds=self.max_broker_wait))
                self._broker_wait = stack

    def _consumer_started(self) -> None:
        with self._lock:
            self._connected = True
            stack, self._broker_wait = self._broker_wait, None
        if stack is not None:
            stack.close()  # leaving the wait restarts the heartbeat's clock

    def _consumer_lost(self) -> None:
        """The consumer restarts after a connection error: it reconnects from now on."""
        self._connected = False
        self._wait_for_broker()
        _logger.warning(
            "celery: the consumer lost the broker; liveness waits for it, readiness fails",
            extra={"check": CHECK_NAMES["readiness"]},
        )

    def _consumer_stopped(self) -> None:
        self._connected = False

    # -- Celery's signals ------------------------------------------------------------------

    def _on_worker_init(self, sender: Any = None, **kwargs: Any) -> None:
        if getattr(sender, "app", None) is not self.app or self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._worker = sender
        self._wait_for_broker()  # the consumer connects after the pool started
        # healthprobe's threads block the signals Celery handles (healthprobe._threads): the
        # kernel delivers SIGTERM to the main thread, whose sleep or poll it interrupts, so
        # Celery's handler runs at once (a task on the main thread with --pool=solo included).
        quiet = _NotReadyYet(self)
        _logger.addFilter(quiet)  # before the first probe can come
        try:
            self.server = probe_server.serve(
                self.registry,
                self.host,
                self.port,
                metrics=self._metrics,
                expose_output=self._expose_output,
                shutdown=self if self._metrics is True else None,
            )
            read, write = os.pipe()
            self._wake = (read, write)
            _threads.start(self._watch_shutdown, read, name="healthprobe-celery")
        except Exception as exc:
            _logger.removeFilter(quiet)
            # Celery's signal dispatch would log an exception and start the worker without
            # probes, which the kubelet would then restart for ever: end it here, on one line.
            reason = " ".join(str(exc).split()) or type(exc).__name__
            _logger.error("celery: cannot serve probes on %s:%d: %s%s", self.host, self.port, reason, _bind_fix(exc))
            raise SystemExit(EXIT_NO_PROBES) from exc

    def _on_worker_process_init(self, **kwargs: Any) -> None:
        # A prefork child (forked from the main process): it must not keep the probe port
        # open, or the port would outlive the main process. Closing the child's copy leaves
        # the main process's socket listening.
        server = self.server
        if server is not None and self._pid != os.getpid():
            server.close_after_fork()
            self.server = None

    def _on_worker_ready(self, sender: Any = None, **kwargs: Any) -> None:
        if getattr(sender, "app", None) is not self.app or self._pid != os.getpid():
            return
        self._ready = True
        port = self.server.port if self.server is not None else self.port
        _logger.info(
            "celery: worker ready; probes on %s:%d (startup /startupz, readiness /readyz, liveness /livez)",
            self.host,
            port,
            extra={"check": CHECK_NAMES["startup"]},
        )

    def _on_worker_shutting_down(self, sender: Any = None, how: str = "Warm", **kwargs: Any) -> None:
        # Called from Celery's signal handler, between two bytecodes of the main thread:
        # nothing here may take a lock (logging, the registry and the heartbeat do), so the
        # rest happens in the watcher thread, woken through a pipe.
        wake = self._wake
        if wake is None or self._pid != os.getpid():
            return
        self._stopping = True  # one attribute: the checks read it from their threads
        with contextlib.suppress(OSError):
            os.write(wake[1], b"c" if how == "Cold" else b"w")

    def _watch_shutdown(self, fd: int) -> None:
        while True:
            try:
                word = os.read(fd, 1)
            except OSError:
                return
            if not word:
                return
            self._begin_drain("cold" if word == b"c" else "warm")

    def _begin_drain(self, how: str) -> None:
        with self._lock:
            if self._shutdown_wait is None:
                stack = contextlib.ExitStack()
                stack.enter_context(self.heartbeat.waiting(f"{how} shutdown"))
                self._shutdown_wait = stack
        if self.registry.begin_drain():
            _logger.info(
                "celery: %s shutdown: readiness fails, liveness passes while the running tasks finish",
                how,
                extra={"phase": "signal"},
            )

    def _on_worker_shutdown(self, sender: Any = None, **kwargs: Any) -> None:
        if sender is None or sender is not self._worker:
            return
        self.registry.mark_stopped()  # stops the probe server (serve()'s lifecycle listener)
        self.registry.close()  # the sync checks' threads, with their teardowns


class ConsumerHeartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """The consumer bootstep :func:`install` adds to ``app.steps["consumer"]``.

    It starts after the consumer's ``Tasks`` step (the broker connection is up, the task
    consumer declared), just before the event loop, and beats the heartbeat from a timer
    entry on the consumer's timer. With the kombu hub (the event loop of the prefork, solo
    and threads pools on a transport that supports it, Redis and AMQP among them) the entry
    is on the loop's own timer, so the beats stop when that loop stops running; without it
    (eventlet, gevent, other transports) the timer only queues the beat, which the loop
    performs with its pending operations (``Consumer.call_soon``). Stopped for a restart after a connection error (the
    blueprint still running), it starts the heartbeat's ``waiting("broker")``, which its next
    start ends (Celery reconnects in between, Consumer.start in celery/worker/consumer).
    """

    label = "healthprobe heartbeat"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.probes = _installed.get(c.app)
        self._tref: Any = None
        self._queued = False

    def include_if(self, c: Any) -> bool:
        return self.probes is not None

    def start(self, c: Any) -> None:
        probes = self.probes
        assert probes is not None
        self._cancel(c)
        probes._consumer_started()
        period = min(1.0, probes.heartbeat.max_interval / 4)
        if c.hub is not None:
            self._tref = c.timer.call_repeatedly(period, probes.heartbeat.beat)
        else:
            self._tref = c.timer.call_repeatedly(period, self._queue_beat, (c,))

    def stop(self, c: Any) -> None:
        probes = self.probes
        assert probes is not None
        self._cancel(c)
        if c.blueprint.state == bootsteps.RUN:
            probes._consumer_lost()
        else:
            probes._consumer_stopped()

    def shutdown(self, c: Any) -> None:
        self._cancel(c)
        if self.probes is not None:
            self.probes._consumer_stopped()

    def _cancel(self, c: Any) -> None:
        tref, self._tref = self._tref, None
        if tref is not None:
            with contextlib.suppress(Exception):
                c.timer.cancel(tref)

    def _queue_beat(self, c: Any) -> None:
        # From the timer thread of a worker without an event loop: the beat itself runs
        # when the consumer's loop performs its pending operations; one queued at a time.
        if not self._queued:
            self._queued = True
            c.call_soon(self._beat)

    def _beat(self) -> None:
        self._queued = False
        if self.probes is not None:
            self.probes.heartbeat.beat()


class _NotReadyYet(logging.Filter):
    """Logs the startup check's first ``fail``, before Celery sent ``worker_ready``, at
    ``INFO`` instead of ``WARNING``: a worker probed while it starts is expected to be not
    ready yet (docs/frameworks/celery.md, "Logging"). Put on the ``healthprobe`` logger in
    the worker's main process (``worker_init``); a no-op once the worker is ready."""

    def __init__(self, probes: CeleryProbes) -> None:
        super().__init__()
        self._probes = weakref.ref(probes)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or getattr(record, "check", None) != CHECK_NAMES["startup"]:
            return True
        probes = self._probes()
        if probes is None or probes._ready:
            return True
        if (
            getattr(record, "status", None) != _types.Status.FAIL.value
            or getattr(record, "previous_status", "") is not None
        ):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.INFO):
            return False
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


#: ``errno`` values of a bind that fails for the address (the host), not for the port.
_HOST_ERRORS = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})
#: ``errno`` values of a bind that fails for the port: in use, or privileged.
_PORT_ERRORS = frozenset({errno.EADDRINUSE, errno.EACCES})


def _bind_fix(exc: BaseException) -> str:
    """The advice that ends the line of a worker whose probe server cannot start: the
    argument of :func:`install` at fault (the host for a name that does not resolve or an
    address that is not this machine's, the port for one in use or privileged)."""
    if isinstance(exc, socket.gaierror) or (isinstance(exc, OSError) and exc.errno in _HOST_ERRORS):
        return "; pass another host to healthprobe.celery.install(host=...)"
    if isinstance(exc, OSError) and exc.errno in _PORT_ERRORS:
        return "; pass another port to healthprobe.celery.install(port=...)"
    return ""


def _check_host(host: str) -> None:
    """Raise ``ValueError`` for a malformed IP address (only digits and dots, or a colon,
    but no address): refused here rather than by the worker, which would look it up as a
    host name. Looks nothing up."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"host must be an IP address or a host name, got {host!r}: not an IPv6 address") from None
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            socket.inet_aton(host)  # what bind() accepts as an IPv4 address ("10.1", "0" too)
        except OSError:
            raise ValueError(f"host must be an IP address or a host name, got {host!r}: not an IPv4 address") from None


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def _check_seconds_type(name: str, value: object, *, none: bool = False) -> None:
    """Raise ``TypeError`` unless ``value`` is a number (``None`` too, with ``none``)."""
    if (value is None and none) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return
    either = " or None" if none else ""
    raise TypeError(f"{name} must be a number of seconds{either}, got {value!r} ({type(value).__name__})")


def _seconds(name: str, value: float) -> float:
    """``value`` as seconds: a wrong type is a ``TypeError``, a number that is not positive
    and finite a ``ValueError``."""
    _check_seconds_type(name, value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")
    return float(value)


def _seconds_or_none(name: str, value: float | None) -> float | None:
    """:func:`_seconds`, or ``None``."""
    _check_seconds_type(name, value, none=True)
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number of seconds or None, got {value!r}")
    return float(value)


def _metrics(value: object) -> bool | MetricsSource:
    """``metrics`` as the probe server takes it: a bool, or a metrics source (an object with
    ``expose``)."""
    if isinstance(value, bool) or callable(getattr(value, "expose", None)):
        return value  # type: ignore[return-value]
    raise TypeError(f"metrics must be True, False or a MetricsSource, got {value!r} ({type(value).__name__})")


def install(
    app: Any,
    registry: HealthRegistry | None = None,
    *,
    host: str = "0.0.0.0",
    port: int = probe_server.DEFAULT_PORT,
    max_interval: float = DEFAULT_MAX_INTERVAL,
    broker_check: bool = True,
    broker_timeout: float | None = None,
    max_broker_wait: float | None = None,
    metrics: bool | MetricsSource = False,
    expose_output: bool = False,
) -> CeleryProbes:
    """Serve startup, readiness and liveness probes (and metrics) for the Celery worker
    that runs ``app``.

    Call it once, at import of the module that creates the app (the one ``celery -A``
    names), so every process that imports the app has it: it connects receivers to
    Celery's signals and adds a consumer bootstep, and does nothing else until a worker
    starts. In the worker's main process (``worker_init``) it starts the standalone probe
    server (:func:`healthprobe.serve`, extra ``wsgi``); prefork children close their copy of
    the listening socket (``worker_process_init``); other processes that import the app (a
    web app sending tasks, ``celery beat``) serve nothing.

    It registers three checks in ``registry``:

    * ``celery-worker`` (startup): passes once Celery sent ``worker_ready``.
    * ``celery-consumer`` (liveness): a heartbeat beaten every ``min(1, max_interval / 4)``
      seconds from the consumer's event loop (:class:`ConsumerHeartbeat`). It fails when the
      loop has not run for ``max_interval`` seconds (a wedged consumer; with ``-P solo`` the
      tasks run on that loop, so ``max_interval`` must exceed the longest task). While the
      consumer waits for the broker (at start and after losing it), it reports ``warn``
      ("waiting for broker for 12.3 s"), which passes. During a shutdown it passes
      ("worker shutting down; waiting for warm shutdown for 2.1 s"), or stays ``warn`` if
      it was waiting for the broker already: an expected wait, logged as no warning.
    * ``celery-broker`` (readiness, with ``broker_check``): fails while the consumer is not
      connected, else opens a fresh connection to the broker with kombu (one attempt, no
      retry, bounded by ``broker_timeout``), which works for any broker Celery supports.
      From the shutdown signal on it tries no connection and reports ``worker shutting
      down`` with the status it had (``pass`` if it never ran): the consumer stops with
      the worker, and the lifecycle fails readiness already.

    The startup check's first ``fail`` (a probe before ``worker_ready``) is logged at
    ``INFO``, not ``WARNING``: a worker that is not ready yet is expected at start.

    A shutdown signal (Celery's ``worker_shutting_down``: ``SIGTERM`` for the warm
    shutdown, ``SIGQUIT`` for the cold one) moves the registry to ``draining`` at once, so
    readiness fails while liveness keeps passing as the running tasks finish; Celery keeps
    its own signal handling (no handler is installed). ``worker_shutdown`` moves it to
    ``stopped``, which stops the probe server. Kubernetes' rules for the three probes:
    https://kubernetes.io/docs/concepts/configuration/liveness-readiness-startup-probes/.

    Args:
        app: the ``celery.Celery`` app.
        registry: the :class:`~healthprobe.HealthRegistry` to register the checks in and
            serve; a new one when ``None``. Add your own checks to it before or after.
        host: address of the probe server; ``0.0.0.0`` so the kubelet reaches the pod's IP.
            A malformed IP address (``"999.1.1.1"``) is refused here; a host name is looked
            up by the worker.
        port: its TCP port (8081 by default; ``0`` picks a free one, read back from
            ``probes.server.port`` in the worker).
        max_interval: seconds the consumer's event loop may go without running before
            liveness fails (60 s by default).
        broker_check: register the ``celery-broker`` readiness check (``True`` or ``False``).
        broker_timeout: the deadline of that check in seconds; by default the registry's
            ``default_timeout`` (0.8 s, inside the kubelet's default ``timeoutSeconds`` of
            1 s). The connection attempt is given 90 % of it, so it ends by itself first.
        max_broker_wait: seconds the consumer may wait for the broker before liveness fails
            after all, or ``None`` (the default): a broker outage alone never fails
            liveness, since a restart does not bring the broker back.
        metrics: also serve Prometheus metrics on ``/metrics`` of the probe port: ``True``
            (extra ``prometheus``) for the checks and probes, ``healthprobe_in_flight_requests``
            (the tasks running), ``healthprobe_shutdown_phase`` (``serving``, ``drain``,
            ``stopped``) and prometheus-client's default registry of the main process; or a
            :class:`~healthprobe.http.MetricsSource` of your own, as :func:`healthprobe.serve`
            takes it.
        expose_output: show the checks' outputs in probe bodies (withheld by default; ``True``
            or ``False``).

    Returns:
        The :class:`CeleryProbes` wired for ``app`` (``registry``, ``heartbeat``, and
        ``server`` in the worker's main process once it started).

    Raises:
        TypeError: an argument of the wrong type: ``app`` is not a Celery app, ``registry``
            not a ``HealthRegistry``, ``host`` not a str, ``port`` not an int, a duration not
            a number (``max_interval="60"``), ``broker_check`` or ``expose_output`` not a
            bool, ``metrics`` neither a bool nor a metrics source (``metrics="yes"``).
        ValueError: a value out of range: ``port`` outside 0-65535, a malformed IP address
            as ``host``, a duration that is not a positive finite number, or the registry
            already has a check of one of the names above.
        RuntimeError: :func:`install` was already called for ``app``.
        ImportError: ``metrics=True`` without prometheus-client installed.

    A worker whose probe server cannot start logs one ``ERROR`` line and exits with status 1
    before it consumes anything; the line ends with the argument to change: the port when
    it is in use (or privileged), the host when it does not resolve or is not an address of
    the machine.
    """
    if not (hasattr(app, "steps") and hasattr(app, "connection_for_read") and hasattr(app, "conf")):
        raise TypeError(f"app must be a celery.Celery app, got {type(app).__name__}")
    if registry is None:
        registry = _registry.HealthRegistry()
    elif not isinstance(registry, _registry.HealthRegistry):
        raise TypeError(f"registry must be a HealthRegistry, got {type(registry).__name__}")
    # Every type first (TypeError), then the values (ValueError).
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, got {type(port).__name__}")
    _check_seconds_type("max_interval", max_interval)
    _check_seconds_type("broker_timeout", broker_timeout, none=True)
    _check_seconds_type("max_broker_wait", max_broker_wait, none=True)
    _flag("broker_check", broker_check)
    _flag("expose_output", expose_output)
    metrics = _metrics(metrics)
    _check_host(host)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be from 0 to 65535, got {port}")
    interval = _seconds("max_interval", max_interval)
    timeout = _seconds_or_none("broker_timeout", broker_timeout)
    max_wait = _seconds_or_none("max_broker_wait", max_broker_wait)
    taken = sorted({check.name for check in registry.checks} & set(CHECK_NAMES.values()))
    if taken:
        raise ValueError(f"the registry already has a check named {', '.join(taken)}: healthprobe.celery registers it")
    if app in _installed:
        raise RuntimeError(f"healthprobe.celery.install() was already called for {app!r}: call it once per app")
    if metrics is True:
        from . import prometheus  # noqa: F401 - a missing prometheus-client is reported here, at start-up

    probes = CeleryProbes(
        app,
        registry,
        host=host,
        port=port,
        max_interval=interval,
        broker_check=broker_check,
        broker_timeout=timeout,
        max_broker_wait=max_wait,
        metrics=metrics,
        expose_output=expose_output,
    )
    _installed[app] = probes
    app.steps["consumer"].add(ConsumerHeartbeat)
    uid = f"healthprobe.celery.{id(probes)}"
    signals.worker_init.connect(probes._on_worker_init, weak=False, dispatch_uid=f"{uid}.init")
    signals.worker_process_init.connect(probes._on_worker_process_init, weak=False, dispatch_uid=f"{uid}.child")
    signals.worker_ready.connect(probes._on_worker_ready, weak=False, dispatch_uid=f"{uid}.ready")
    signals.worker_shutting_down.connect(probes._on_worker_shutting_down, weak=False, dispatch_uid=f"{uid}.signal")
    signals.worker_shutdown.connect(probes._on_worker_shutdown, weak=False, dispatch_uid=f"{uid}.shutdown")
    return probes
