"""What both flavours of the node_demo share: settings, the health registry and its checks,
the seed's texts and status codes, and the request log.

The seed (``node-server.js``) answered ``GET /healthz`` with 200 until ``GET /shutdown``
flipped a flag, then with 500; every other path with 200 "hello"; and it logged each request
path. Here the flag is the registry's liveness switch (:meth:`HealthRegistry.set_live`), so
``/healthz``, ``/livez`` and the kubelet all see the same truth, and the registry adds two
real checks:

* ``healthy-file`` (startup and liveness): the file the app touches when it starts still
  exists: ``/tmp/healthy`` for the ASGI flavour (the image's, as the seed's exec probe
  ``cat /tmp/healthy`` expects), ``/tmp/healthy-wsgi`` for the WSGI flavour, so that both
  can run side by side on one machine; ``HEALTHY_FILE`` overrides either.
* ``warmup`` (startup): ``STARTUP_DELAY`` seconds have passed since the app started, a
  stand-in for a slow start that the startup probe must cover.

Shutdown is healthprobe's :class:`~healthprobe.shutdown.GracefulShutdown` (``Demo.coordinator``):
on SIGTERM or SIGINT readiness fails at once, the demo keeps serving for the delay, then
stops accepting, drains in-flight requests and runs its one cleanup hook, which removes the
healthy file. ``/metrics`` serves the registry's Prometheus metrics, in-flight requests and
the shutdown phase included.

Each flavour (``asgi_app``, ``wsgi_app``) only translates between its protocol and these
pieces, and hands its server to the matching :mod:`healthprobe.servers` module. Before
serving, :func:`open_listener` binds the listening socket and touches the healthy file; a
failure of either is a :class:`StartupError`, reported on one line with exit code 2 like a
malformed setting.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from examples.settings import optional_seconds, seconds
from healthprobe import CheckResult, HealthEndpoints, HealthRegistry, Probe, Report, Status
from healthprobe.prometheus import PrometheusMetrics
from healthprobe.shutdown import GracefulShutdown

logger = logging.getLogger("node_demo")

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8080
#: The ASGI flavour's healthy file: the one the image's exec probe reads (``k8s/``).
DEFAULT_HEALTHY_FILE = "/tmp/healthy"
#: The WSGI flavour's, distinct so that stopping one flavour (its cleanup hook removes its
#: file) does not fail the liveness of the other running beside it.
DEFAULT_HEALTHY_FILE_WSGI = "/tmp/healthy-wsgi"
#: Exit code for bad settings, an unusable address or port, or an unusable healthy file.
EXIT_SETTINGS = 2
#: Longest wait ``/slow`` accepts, in seconds.
SLOW_MAX_SECONDS = 30.0
#: Probe paths served by the registry. ``/healthz`` is left to the app, which answers it
#: with the seed's texts from the same liveness probe.
PROBE_PATHS: Mapping[str, Probe] = {"/livez": Probe.LIVENESS, "/readyz": Probe.READINESS, "/startupz": Probe.STARTUP}
#: The seed's code for a failed ``/healthz``; ``/livez`` fails with it too.
LIVENESS_FAILURE_STATUS = 500

TEXT_HEALTHY = "python http server is health."
TEXT_UNHEALTHY = "python http server is unhealth."
TEXT_SHUTDOWN = "python http server is shutdown."
TEXT_HELLO = "hello python http server"


@dataclasses.dataclass(frozen=True)
class Answer:
    """A plain-text answer of the demo: status code and body text."""

    status: int
    text: str


@dataclasses.dataclass(frozen=True)
class Settings:
    """The demo's settings, read from the environment.

    Attributes:
        host: address to listen on (``HOST``, default ``0.0.0.0`` like the seed).
        port: TCP port (``PORT``, default 8080; 0 picks a free one).
        healthy_file: the file touched at start and checked by liveness (``HEALTHY_FILE``,
            default ``/tmp/healthy``; the WSGI flavour reads its settings with
            ``/tmp/healthy-wsgi`` as the default).
        startup_delay: seconds the ``warmup`` startup check keeps failing after start
            (``STARTUP_DELAY``, default 0).
        shutdown_delay: seconds to keep serving after SIGTERM while readiness fails
            (``SHUTDOWN_DELAY``); ``None`` (unset) leaves it to :class:`GracefulShutdown`:
            5 s when ``KUBERNETES_SERVICE_HOST`` is set (inside a pod), else 0.
        drain_timeout: bound in seconds on waiting for in-flight requests (``DRAIN_TIMEOUT``,
            default 20).
        hook_timeout: bound in seconds on each cleanup hook (``HOOK_TIMEOUT``, default 5).
        grace_period: the pod's ``terminationGracePeriodSeconds`` (``GRACE_PERIOD``, default
            30); a warning is logged at start when the shutdown can take longer.
        disable_file: the disable file (``DISABLE_FILE``, default unset: none): while a file
            exists there the demo is out of rotation (``/readyz`` fails with its first line
            as the reason, ``/livez`` passes, nothing stops).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    healthy_file: Path = Path(DEFAULT_HEALTHY_FILE)
    startup_delay: float = 0.0
    shutdown_delay: float | None = None
    drain_timeout: float = 20.0
    hook_timeout: float = 5.0
    grace_period: float = 30.0
    disable_file: Path | None = None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, default_healthy_file: str = DEFAULT_HEALTHY_FILE
    ) -> Settings:
        """Read ``HOST``, ``PORT``, ``HEALTHY_FILE``, ``STARTUP_DELAY``, ``SHUTDOWN_DELAY``,
        ``DRAIN_TIMEOUT``, ``HOOK_TIMEOUT``, ``GRACE_PERIOD`` and ``DISABLE_FILE`` (an empty value counts as
        unset) from ``environ`` (default ``os.environ``); ``default_healthy_file`` is the
        path used when ``HEALTHY_FILE`` is unset.

        Raises:
            ValueError: with a one-line reason when a value is malformed.
        """
        env = os.environ if environ is None else environ
        raw_port = env.get("PORT", "").strip() or str(DEFAULT_PORT)
        if not raw_port.isdigit() or int(raw_port) > 65535:
            raise ValueError(f"PORT must be a TCP port number from 0 to 65535, got {raw_port!r}")
        return cls(
            host=env.get("HOST", "").strip() or DEFAULT_HOST,
            port=int(raw_port),
            healthy_file=Path(env.get("HEALTHY_FILE", "").strip() or default_healthy_file),
            startup_delay=seconds(env, "STARTUP_DELAY", 0.0),
            shutdown_delay=optional_seconds(env, "SHUTDOWN_DELAY"),
            drain_timeout=seconds(env, "DRAIN_TIMEOUT", cls.drain_timeout),
            hook_timeout=seconds(env, "HOOK_TIMEOUT", cls.hook_timeout),
            grace_period=seconds(env, "GRACE_PERIOD", cls.grace_period),
            disable_file=Path(disable) if (disable := env.get("DISABLE_FILE", "").strip()) else None,
        )


def _printable(path: str, limit: int = 200) -> str:
    """``path`` with control characters escaped, so a request cannot forge log lines."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in path[:limit])
    return shown + ("..." if len(path) > limit else "")


class Demo:
    """The state of one demo process: its settings, registry, shutdown coordinator and
    probe and metrics endpoints.

    Args:
        settings: the :class:`Settings` to run with.

    Attributes:
        registry: the :class:`HealthRegistry` with the ``healthy-file`` and ``warmup`` checks,
            and the disable file of ``DISABLE_FILE`` (if set).
        coordinator: the :class:`GracefulShutdown` of this process, with one cleanup hook,
            ``remove_healthy_file``. Pass it to the middleware (``shutdown=``) and to the
            server integration.
        endpoints: the :class:`HealthEndpoints` serving ``/livez``, ``/readyz``,
            ``/startupz`` and ``/metrics`` (:class:`PrometheusMetrics` reading the registry
            and, for in-flight requests and the shutdown phase, ``coordinator``).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = HealthRegistry(disable_file=settings.disable_file)
        self.registry.add_check("healthy-file", self._healthy_file, probes=(Probe.STARTUP, Probe.LIVENESS), cache_ttl=0)
        self.registry.add_check("warmup", self._warmup, probes=(Probe.STARTUP,), cache_ttl=0)
        self.coordinator = GracefulShutdown(
            self.registry,
            delay=settings.shutdown_delay,
            drain_timeout=settings.drain_timeout,
            hook_timeout=settings.hook_timeout,
            grace_period=settings.grace_period,
        )
        self.coordinator.add_hook(self.remove_healthy_file)
        self.endpoints = HealthEndpoints(
            self.registry,
            paths=PROBE_PATHS,
            failure_status={Probe.LIVENESS: LIVENESS_FAILURE_STATUS},
            metrics=PrometheusMetrics(self.registry, shutdown=self.coordinator),
        )
        self._started_at: float | None = None

    # -- checks ------------------------------------------------------------------------------

    def _healthy_file(self) -> CheckResult:
        path = self.settings.healthy_file
        if path.exists():
            return CheckResult(Status.PASS)
        return CheckResult(Status.FAIL, output=f"{path} does not exist")

    def _warmup(self) -> CheckResult:
        if self._started_at is None:
            return CheckResult(Status.FAIL, output="not started")
        remaining = self.settings.startup_delay - (time.monotonic() - self._started_at)
        if remaining > 0:
            return CheckResult(Status.FAIL, output="warming up", observed_value=round(remaining, 3), observed_unit="s")
        return CheckResult(Status.PASS)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has run."""
        return self._started_at is not None

    def start(self) -> None:
        """Touch the healthy file and start the warm-up clock (the app has started).

        Raises:
            OSError: the healthy file (or its missing parent folders) cannot be created.
        """
        path = self.settings.healthy_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        self._started_at = time.monotonic()
        logger.info("touched %s; startup passes in %g s", path, self.settings.startup_delay)

    def remove_healthy_file(self) -> None:
        """The cleanup hook: remove the healthy file, once in-flight requests are drained."""
        self.settings.healthy_file.unlink(missing_ok=True)
        logger.info("removed %s", self.settings.healthy_file)

    def listening(self, host: str, port: int) -> None:
        """Log the seed's start line, once the socket is bound and listening on ``port``."""
        logger.info("server is listening on %s ...  PID = %d", _url(host, port), os.getpid())

    # -- the seed's routes -------------------------------------------------------------------

    def log_request(self, path: str) -> None:
        """Log a request path the way the seed did: ``Request for /x received.``"""
        logger.info("Request for %s received.", _printable(path))

    def healthz(self, report: Report) -> Answer:
        """``GET /healthz``: the seed's texts, from the registry's liveness ``report``."""
        if report.ok:
            return Answer(200, TEXT_HEALTHY)
        return Answer(LIVENESS_FAILURE_STATUS, TEXT_UNHEALTHY)

    def shutdown(self) -> Answer:
        """``GET /shutdown``: fail liveness from now on (the seed's flag), so the kubelet
        restarts the container after ``failureThreshold`` failed probes."""
        self.registry.set_live(False, reason="GET /shutdown")
        logger.info("liveness switched off by /shutdown")
        return Answer(200, TEXT_SHUTDOWN)

    def hello(self) -> Answer:
        """Every other path: 200 "hello"."""
        logger.info("server is working...")
        return Answer(200, TEXT_HELLO)

    @staticmethod
    def slow_seconds(raw: str | None) -> float | Answer:
        """Parse ``/slow?seconds=N`` (default 1): the seconds to wait before answering, or a
        400 :class:`Answer` when ``N`` is not a number from 0 to :data:`SLOW_MAX_SECONDS`."""
        if raw is None:
            return 1.0
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not math.isfinite(seconds) or not 0 <= seconds <= SLOW_MAX_SECONDS:
            return Answer(400, f"seconds must be a number from 0 to {SLOW_MAX_SECONDS:g}")
        return seconds

    @staticmethod
    def slow_done(seconds: float) -> Answer:
        """The answer of ``/slow`` once its wait is over."""
        return Answer(200, f"{TEXT_HELLO} after {seconds:g} s")


class StartupError(Exception):
    """The demo cannot start with its settings: the address or port cannot be bound, or the
    healthy file cannot be created. Its message is one line, for the log; the entry points
    exit with :data:`EXIT_SETTINGS`."""


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def open_listener(demo: Demo) -> socket.socket:
    """Bind and listen on ``demo.settings``' host and port, then start ``demo`` (touch its
    healthy file), in that order, so that nothing is left behind when either fails.

    The address family follows the host as uvicorn's and Werkzeug's own binding does
    (IPv6 when it contains ``:``); ``SO_REUSEADDR`` is set, as both servers set it. The
    socket is created with ``proto=IPPROTO_TCP``, as uvicorn creates its own, and has
    ``TCP_NODELAY`` set, which the connections it accepts inherit: without it, each
    response after the first on a kept-alive connection waited about 40 ms for the
    client's delayed ACK (asyncio sets ``TCP_NODELAY`` only on connections of a listening
    socket whose ``proto`` is ``IPPROTO_TCP``).

    Returns:
        The listening TCP socket, for the flavour's server to serve on (it owns it from
        then on). Its ``getsockname()[1]`` is the real port when ``PORT`` is 0.

    Raises:
        StartupError: one line naming the setting, when the address cannot be bound
            (port in use, unknown host, no permission) or the healthy file cannot be
            created; the socket is closed again in the second case.
    """
    host, port = demo.settings.host, demo.settings.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen()
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {_url(host, port)} (HOST, PORT): {_reason(exc)}") from None
    try:
        demo.start()
    except OSError as exc:
        sock.close()
        path = demo.settings.healthy_file
        raise StartupError(f"cannot create the healthy file {path} (HEALTHY_FILE): {_reason(exc)}") from None
    return sock


def _reason(exc: OSError) -> str:
    """``exc`` as one line: ``[Errno 98] Address already in use``."""
    return " ".join(str(exc).split())


def configure_logging() -> None:
    """Log to standard error at INFO, one line per event (the seed's ``console.log``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


App = TypeVar("App")


def run(
    read_settings: Callable[[], Settings],
    create_app: Callable[[Demo], App],
    serve: Callable[[App, Demo, socket.socket], int],
) -> int:
    """The ``main()`` of both flavours: read the settings, bind the socket, serve.

    Returns:
        2 (:data:`EXIT_SETTINGS`) on a malformed setting, an address or port that cannot be
        bound, or a healthy file that cannot be created, each logged on one line with
        nothing left behind; else the exit code of ``serve``.
    """
    configure_logging()
    try:
        demo = Demo(read_settings())
        sock = open_listener(demo)
    except (ValueError, StartupError) as exc:
        logger.error("%s", exc)
        return EXIT_SETTINGS
    demo.listening(demo.settings.host, sock.getsockname()[1])
    try:
        return serve(create_app(demo), demo, sock)
    except BaseException:
        demo.remove_healthy_file()  # the server failed before the cleanup hook could run
        raise
