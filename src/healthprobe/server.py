"""The standalone probe server: probe endpoints on their own port, served by Werkzeug in a
daemon background thread (extra ``wsgi``).

For processes that have no web server (queue consumers, schedulers, batch workers) and for
sync apps whose workers can all be busy: the probe server has its own listening socket and
answers each probe in a thread of its own, so probes are answered while every app worker is
occupied, and while an asyncio event loop in the same process is blocked (the GIL is
released while that loop sleeps or waits on I/O)::

    import healthprobe
    from healthprobe import checks

    registry = healthprobe.HealthRegistry()
    hb = checks.heartbeat(30.0)
    registry.add_check("worker", hb, probes=["liveness"])
    server = healthprobe.serve(registry, port=8081)   # returns at once
    registry.mark_started()
    ...
    server.stop()

Point the pod's probes at this port (``httpGet: {path: /livez, port: 8081}``). With
``metrics=True`` the same port also serves Prometheus metrics on ``/metrics``, so a worker
needs one port, one ``containerPort`` and one scrape target.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from . import _threads
from ._extras import requires

with requires("wsgi", __name__):
    from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server, select_address_family

from ._types import Lifecycle, Probe
from .http import HealthEndpoints, MetricsSource, endpoints_for
from .registry import HealthRegistry
from .wsgi import HealthApp

if TYPE_CHECKING:
    from .prometheus import ShutdownView

logger = logging.getLogger("healthprobe")

#: Default port of the standalone probe server: next to the conventional 8080 of the app.
DEFAULT_PORT = 8081


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's request handler without the per-request access log line (errors are still
    logged): a probe every few seconds would otherwise fill the log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class ProbeServer:
    """A running standalone probe server; returned by :func:`serve`.

    Args:
        server: the Werkzeug server to run, bound and not yet serving.
        host: the address it listens on, as given to :func:`serve`.
        endpoints: the :class:`HealthEndpoints` it answers from, if known (:func:`serve`
            passes them).

    Attributes:
        host: the address it listens on.
        port: the port it listens on (the bound one when ``0`` was asked).
        url: ``http://host:port`` (loopback for a wildcard address), for clients and tests.
        endpoints: the :class:`HealthEndpoints` answering probe and metrics requests, or
            ``None``.
        metrics_url: ``url`` followed by the metrics path (``http://127.0.0.1:8081/metrics``)
            when metrics are served, else ``None``.

    Use it as a context manager, or call :meth:`stop` (alias :meth:`close`). To stop it with
    the process's lifecycle, register :meth:`on_lifecycle` as a lifecycle listener (done by
    :func:`serve` unless ``stop_on_stopped=False``): it stops the server when the registry
    enters ``stopped``, so probes are answered through ``draining`` until then.
    """

    def __init__(self, server: BaseWSGIServer, host: str, endpoints: HealthEndpoints | None = None) -> None:
        self._server = server
        self.host = host
        self.port = int(server.server_address[1])
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        self.url = f"http://[{shown}]:{self.port}" if ":" in shown else f"http://{shown}:{self.port}"
        self.endpoints = endpoints
        self.metrics_url: str | None = None
        if endpoints is not None and endpoints.metrics is not None:
            self.metrics_url = self.url + endpoints.metrics_path
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=f"healthprobe-probe-server-{self.port}", daemon=True)

    def _start(self) -> None:
        _threads.start_thread(self._thread)

    def _serve(self) -> None:
        try:
            self._server.serve_forever(poll_interval=0.2)
        except Exception:  # pragma: no cover - socketserver handles request errors itself
            logger.exception("probe server on port %d stopped unexpectedly", self.port)

    @property
    def running(self) -> bool:
        """``True`` until :meth:`stop` has completed."""
        return not self._stopped and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting probes, close the listening socket and end the server thread.

        Probe requests already being answered finish in their own daemon threads. Safe to
        call more than once and from any thread, including a probe request's own thread and
        a lifecycle listener.

        Args:
            timeout: seconds to wait for the server thread to end (it wakes every 0.2 s).
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if threading.current_thread() is self._thread:
            # shutdown() waits for serve_forever() to return: never from inside it.
            _threads.start(self._server.shutdown, name="healthprobe-probe-server-stop")
            return
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()
        logger.info("probe server on port %d stopped", self.port)

    close = stop

    def on_lifecycle(self, old: Lifecycle, new: Lifecycle) -> None:
        """A lifecycle listener (``registry.add_lifecycle_listener(server.on_lifecycle)``)
        that stops the server when the lifecycle enters ``stopped``."""
        if new is Lifecycle.STOPPED:
            self.stop()

    def __enter__(self) -> ProbeServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ProbeServer {self.url} {'running' if self.running else 'stopped'}>"


def _listen(host: str, port: int) -> socket.socket:
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(
    registry: HealthRegistry | HealthEndpoints,
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    *,
    paths: Mapping[str, Probe | str] | None = None,
    failure_status: int | Mapping[Probe | str, int] = 503,
    expose_output: bool = False,
    metrics: bool | MetricsSource = False,
    metrics_path: str = "/metrics",
    shutdown: ShutdownView | None = None,
    access_log: bool = False,
    stop_on_stopped: bool = True,
) -> ProbeServer:
    """Serve the probe endpoints (and, with ``metrics``, Prometheus metrics) on
    ``host:port`` from a daemon background thread.

    The server is Werkzeug's threaded WSGI server (``werkzeug.serving.make_server``) running
    :class:`healthprobe.wsgi.HealthApp`: each request gets its own daemon thread, and checks
    run under their deadlines, so a hung check costs a probe its deadline and nothing more.
    Paths, bodies and status codes are those of the adapters (``/livez``, ``/healthz``,
    ``/readyz``, ``/startupz``, ``/readyz/<check>``, ``?verbose``, ``?format=json``; with
    ``metrics``, ``/metrics`` in the format ``Accept`` asks for, ``?name[]=`` filtering by
    metric name); other paths are ``404``. A malformed query is ``400``, a method other than
    ``GET`` or ``HEAD`` ``405``, as on the adapters.

    Args:
        registry: the :class:`HealthRegistry` (or a configured :class:`HealthEndpoints`).
        host: address to listen on; ``0.0.0.0`` (all IPv4 interfaces) so the kubelet, which
            probes the pod's IP, reaches it. ``"::"`` for IPv6.
        port: TCP port; ``0`` picks a free one (read it from the returned ``port``).
        paths, failure_status, expose_output, metrics, metrics_path: as
            :class:`HealthEndpoints`: ``metrics=True`` serves a
            :class:`healthprobe.prometheus.PrometheusMetrics` of ``registry`` (extra
            ``prometheus``; in multiprocess mode the merge of every process's metrics), or
            pass any :class:`~healthprobe.http.MetricsSource`. Off by default.
        shutdown: with ``metrics=True``, the shutdown coordinator whose requests in flight
            and phase the metrics show (``healthprobe_in_flight_requests``,
            ``healthprobe_shutdown_phase``): a
            :class:`~healthprobe.shutdown.GracefulShutdown`, or any object with ``in_flight``
            (int) and ``phase`` (str). It only feeds the metrics: probe requests are never
            counted as in flight, and nothing is installed.
        access_log: log one line per request (Werkzeug's format); off by default.
        stop_on_stopped: register :meth:`ProbeServer.on_lifecycle` on the registry so the
            server stops when the lifecycle enters ``stopped``.

    When ``registry`` is a :class:`HealthEndpoints`, ``paths``, ``failure_status``,
    ``expose_output``, ``metrics``, ``metrics_path`` and ``shutdown`` are ignored (configure
    them there), and ``stop_on_stopped`` listens to its registry.

    Returns:
        A running :class:`ProbeServer` (``url``, ``port``, ``metrics_url``, ``stop()``; a
        context manager).

    Raises:
        OSError: the address cannot be bound (for example the port is in use).
        ValueError: a malformed path or failure status, a metrics path that is also a probe
            path (see :class:`HealthEndpoints`), or ``shutdown`` without ``metrics=True``.
        TypeError: ``shutdown`` has no ``in_flight`` or no ``phase``; ``host`` is not a str
            or ``port`` not an int (``serve(registry, 8080)`` takes 8080 for the host).
        ImportError: ``metrics=True`` without prometheus-client installed.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, got {host!r}: the port is given as port=, serve(registry, port={host!r})")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, got {type(port).__name__}")
    if shutdown is not None:
        if metrics is not True:
            raise ValueError(
                "shutdown= feeds the metrics that metrics=True builds: pass metrics=True too, or give your "
                "MetricsSource the coordinator (PrometheusMetrics(registry, shutdown=...))"
            )
        if not (hasattr(shutdown, "in_flight") and hasattr(shutdown, "phase")):
            raise TypeError(
                f"shutdown must have in_flight and phase (a GracefulShutdown), got {type(shutdown).__name__}"
            )
    app = HealthApp(endpoints_for(registry, paths, failure_status, expose_output, metrics, metrics_path, shutdown))
    sock = _listen(host, port)
    try:
        handler: type[WSGIRequestHandler] = WSGIRequestHandler if access_log else _QuietHandler
        wsgi_server = make_server(host, port, app, threaded=True, request_handler=handler, fd=sock.fileno())
    finally:
        sock.close()  # make_server() duplicated the descriptor
    server = ProbeServer(wsgi_server, host, app.endpoints)
    server._start()
    if stop_on_stopped:
        app.endpoints.registry.add_lifecycle_listener(server.on_lifecycle)
    if server.metrics_url is not None:
        logger.info("probe server listening on %s:%d, metrics on %s", host, server.port, app.endpoints.metrics_path)
    else:
        logger.info("probe server listening on %s:%d", host, server.port)
    return server
