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

Point the pod's probes at this port (``httpGet: {path: /livez, port: 8081}``).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Mapping
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server, select_address_family

from ._types import Lifecycle, Probe
from .http import HealthEndpoints
from .registry import HealthRegistry
from .wsgi import HealthApp

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

    Attributes:
        host: the address it listens on.
        port: the port it listens on (the bound one when ``0`` was asked).
        url: ``http://host:port`` (loopback for a wildcard address), for clients and tests.

    Use it as a context manager, or call :meth:`stop` (alias :meth:`close`). To stop it with
    the process's lifecycle, register :meth:`on_lifecycle` as a lifecycle listener (done by
    :func:`serve` unless ``stop_on_stopped=False``): it stops the server when the registry
    enters ``stopped``, so probes are answered through ``draining`` until then.
    """

    def __init__(self, server: BaseWSGIServer, host: str) -> None:
        self._server = server
        self.host = host
        self.port = int(server.server_address[1])
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        self.url = f"http://[{shown}]:{self.port}" if ":" in shown else f"http://{shown}:{self.port}"
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=f"healthprobe-probe-server-{self.port}", daemon=True)

    def _start(self) -> None:
        self._thread.start()

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
            threading.Thread(target=self._server.shutdown, daemon=True).start()
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
    access_log: bool = False,
    stop_on_stopped: bool = True,
) -> ProbeServer:
    """Serve the probe endpoints on ``host:port`` from a daemon background thread.

    The server is Werkzeug's threaded WSGI server (``werkzeug.serving.make_server``) running
    :class:`healthprobe.wsgi.HealthApp`: each request gets its own daemon thread, and checks
    run under their deadlines, so a hung check costs a probe its deadline and nothing more.
    Paths, bodies and status codes are those of the adapters (``/livez``, ``/healthz``,
    ``/readyz``, ``/startupz``, ``/readyz/<check>``, ``?verbose``, ``?format=json``); other
    paths are ``404``.

    Args:
        registry: the :class:`HealthRegistry` (or a configured :class:`HealthEndpoints`).
        host: address to listen on; ``0.0.0.0`` (all IPv4 interfaces) so the kubelet, which
            probes the pod's IP, reaches it. ``"::"`` for IPv6.
        port: TCP port; ``0`` picks a free one (read it from the returned ``port``).
        paths, failure_status, expose_output: as :class:`HealthEndpoints`.
        access_log: log one line per probe request (Werkzeug's format); off by default.
        stop_on_stopped: register :meth:`ProbeServer.on_lifecycle` on the registry so the
            server stops when the lifecycle enters ``stopped`` (ignored for a
            :class:`HealthEndpoints`, whose registry is used instead).

    Returns:
        A running :class:`ProbeServer` (``url``, ``port``, ``stop()``; a context manager).

    Raises:
        OSError: the address cannot be bound (for example the port is in use).
        ValueError: a malformed path or failure status (see :class:`HealthEndpoints`).
    """
    app = HealthApp(registry, paths=paths, failure_status=failure_status, expose_output=expose_output)
    sock = _listen(host, port)
    try:
        handler: type[WSGIRequestHandler] = WSGIRequestHandler if access_log else _QuietHandler
        wsgi_server = make_server(host, port, app, threaded=True, request_handler=handler, fd=sock.fileno())
    finally:
        sock.close()  # make_server() duplicated the descriptor
    server = ProbeServer(wsgi_server, host)
    server._start()
    owner = registry.registry if isinstance(registry, HealthEndpoints) else registry
    if stop_on_stopped:
        owner.add_lifecycle_listener(server.on_lifecycle)
    logger.info("probe server listening on %s:%d", host, server.port)
    return server
