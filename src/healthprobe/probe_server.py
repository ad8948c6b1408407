"""The standalone probe server: probe endpoints on their own port, served by Werkzeug's request
handler from a daemon background thread (extra ``wsgi``).

For processes that have no web server (queue consumers, schedulers, batch workers) and for
apps whose server a client can keep busy (gunicorn sync workers, waitress): the probe server
has its own listening socket and answers each probe in a thread of its own, so probes are
answered while every app worker is occupied, and while an asyncio event loop in the same
process is blocked (the GIL is released while that loop sleeps or waits on I/O)::

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

Clients cannot starve it: connections that have not yet sent a whole request cost no thread
(one thread waits on all of them), each has ``idle_timeout`` seconds to send it, and at most
``max_connections`` are held at once, the oldest one still waiting for its request being
closed to make room for a new one. A thread is started only for a complete request.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import math
import os
import selectors
import socket
import threading
import time
import typing
import weakref

from . import _extras, _threads, _types, http, wsgi

with _extras.requires("wsgi", __name__):
    import werkzeug.serving

if typing.TYPE_CHECKING:
    from types import TracebackType
    from typing import Any

    from _typeshed import WriteableBuffer
    from _typeshed.wsgi import WSGIApplication
    from typing_extensions import Unpack

    from ._types import Lifecycle
    from .http import EndpointOptions, HealthEndpoints
    from .prometheus import ShutdownView
    from .registry import HealthRegistry

__all__ = ["DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_PORT", "MAX_HEAD_BYTES", "ProbeServer", "serve"]

_logger = logging.getLogger("healthprobe")

#: Default port of the standalone probe server: next to the conventional 8080 of the app.
DEFAULT_PORT = 8081

#: Default seconds a connection has, from the moment it is accepted, to send its request
#: line and headers; also the longest a read or a write of its answer waits.
DEFAULT_IDLE_TIMEOUT = 5.0

#: Default number of connections the probe server holds at once, waiting for their request
#: or being answered: at most one thread per connection being answered, plus one for all.
DEFAULT_MAX_CONNECTIONS = 64

#: Bytes a request line and its headers may take together; a longer head is answered ``431``
#: (RFC 6585, section 5) and the connection closed.
MAX_HEAD_BYTES = 65536

#: Seconds between two WARNING lines about the same kind of trouble (connections closed at
#: the cap, no file descriptor left to accept with): an attack must not flood the log.
_WARN_EVERY = 60.0

_TOO_LARGE_BODY = b"request head larger than 65536 bytes\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_TOO_LARGE_BODY)).encode() + b"\r\n"
    b"Cache-Control: no-store\r\n"
    b"Connection: close\r\n\r\n" + _TOO_LARGE_BODY
)

#: accept() errors that mean "no file descriptor or buffer left": closing a connection frees one.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _set_nodelay(sock: socket.socket) -> None:
    """Set ``TCP_NODELAY`` on a TCP socket (IPv4 or IPv6); other sockets are left alone.

    On a listening socket the option is inherited by the connections it accepts (Linux, the
    BSDs and macOS copy it at ``accept``). Without it, a response written in two pieces
    (headers, then body) waits for the client's delayed ACK before its second piece is sent:
    Nagle's algorithm (RFC 896) meeting delayed acknowledgement (RFC 1122, 4.2.3.2) costs
    about 40 ms per response on Linux on a kept-alive connection.

    Args:
        sock: the socket; an ``OSError`` from the option (a socket already closed) is ignored.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HeadFirst(io.RawIOBase):
    """A connection's input as the request handler reads it: first the bytes the server
    already received (the request head, perhaps more), then the socket, each read waiting at
    most ``timeout`` seconds and none past ``deadline`` (``time.monotonic()``)."""

    def __init__(self, sock: socket.socket, head: bytes, deadline: float, timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self._head = memoryview(head)
        self._deadline = deadline
        self._timeout = timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        target = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(target), len(self._head))
            target[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request was not received within the probe server's idle timeout")
        self._sock.settimeout(min(self._timeout, left))
        try:
            return self._sock.recv_into(target)
        finally:
            self._sock.settimeout(self._timeout)


class _Handler(werkzeug.serving.WSGIRequestHandler):
    """Werkzeug's request handler reading the head the server received for it first, with
    ``TCP_NODELAY`` on its connection. Werkzeug answers with ``Connection: close``, so each
    connection carries one request."""

    protocol_version = "HTTP/1.1"  # what Werkzeug sets for its threaded server
    disable_nagle_algorithm = True  # socketserver: TCP_NODELAY on the accepted connection
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket file opened by setup(): read through _HeadFirst instead
        head, deadline = self.server._handoff.pop(self.request)
        self.rfile = io.BufferedReader(_HeadFirst(self.request, head, deadline, self.server.idle_timeout))


class _QuietHandler(_Handler):
    """The request handler without the per-request access log line (errors are still
    logged): a probe every few seconds would otherwise fill the log."""

    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class _Waiting:
    """A connection that has not sent its whole request head yet."""

    __slots__ = ("address", "deadline", "head")

    def __init__(self, address: Any, deadline: float) -> None:
        self.address = address
        self.deadline = deadline
        self.head = bytearray()


class _Server(werkzeug.serving.BaseWSGIServer):
    """Werkzeug's WSGI server with one thread waiting on the listening socket and on every
    connection whose request head is incomplete (selectors), and one thread per connection
    being answered, started once its head is complete.

    ``idle_timeout`` (seconds) bounds the wait for a head, counted from ``accept``;
    ``max_connections`` bounds the connections held at once. At the bound a new connection
    takes the place of the oldest one still waiting for its head (closed), or is closed at
    once when every connection held is being answered.
    """

    multithread = True  # wsgi.multithread, and HTTP/1.1 for the handler

    def __init__(
        self,
        host: str,
        port: int,
        app: WSGIApplication,
        handler: type[_Handler],
        fd: int,
        idle_timeout: float,
        max_connections: int,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._waiting: dict[socket.socket, _Waiting] = {}  # oldest first; the loop thread's own
        self._answering: set[socket.socket] = set()
        self._handoff: dict[socket.socket, tuple[bytes, float]] = {}
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._selector: selectors.BaseSelector | None = None
        self._warned: dict[str, float] = {}
        super().__init__(host, port, app, handler, fd=fd)  # calls server_close() once: set up first
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _close_in_child(ref))

    # -- the loop ----------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections, read their heads and start a thread per complete request,
        until :meth:`shutdown`; wakes at least every ``poll_interval`` seconds."""
        self._stopped.clear()
        selector = self._selector = selectors.DefaultSelector()
        self.socket.setblocking(False)
        selector.register(self.socket, selectors.EVENT_READ)
        listening, resume_at = True, 0.0
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if not listening and now >= resume_at:
                    selector.register(self.socket, selectors.EVENT_READ)
                    listening = True
                timeout = poll_interval
                if self._waiting:
                    timeout = min(timeout, max(0.0, next(iter(self._waiting.values())).deadline - now))
                if not listening:
                    timeout = min(timeout, max(0.0, resume_at - now))
                accept = False
                for key, _ in selector.select(timeout):
                    if key.fileobj is self.socket:
                        accept = True
                    else:
                        self._receive(typing.cast(socket.socket, key.fileobj))
                if accept and not self._accept():
                    selector.unregister(self.socket)  # no descriptor left: try again shortly
                    listening, resume_at = False, time.monotonic() + 0.1
                self._expire(time.monotonic())
        finally:
            for conn in list(self._waiting):
                self._drop(conn)
            self._selector = None
            selector.close()
            self._stopped.set()

    def shutdown(self) -> None:
        """Make :meth:`serve_forever` return, and wait until it has (it wakes every poll
        interval). Connections being answered finish in their own threads."""
        self._stopping.set()
        self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket and every connection still waiting for its head."""
        for conn in list(self._waiting):
            self._drop(conn)
        super().server_close()

    # -- connections -------------------------------------------------------------------------

    def _accept(self) -> bool:
        """Accept what the listen backlog holds, at most ``max_connections`` at a time so
        that heads already arriving are read in between. ``False`` when no file descriptor
        is left and no waiting connection can be closed to free one."""
        for _ in range(self.max_connections):
            try:
                conn, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return True
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES and self._waiting:
                    self._drop(next(iter(self._waiting)))
                    continue
                self._warn("accept", "probe server on port %d cannot accept a connection: %s", self.port, exc)
                return False
            with self._lock:
                held = len(self._waiting) + len(self._answering)
            if held >= self.max_connections:
                self._warn(
                    "cap",
                    "probe server on port %d holds max_connections=%d connections: closing the oldest "
                    "that has not sent its request, or the new one when all are being answered",
                    self.port,
                    self.max_connections,
                )
                if not self._waiting:
                    _close(conn)
                    continue
                self._drop(next(iter(self._waiting)))
            conn.setblocking(False)
            self._waiting[conn] = _Waiting(address, time.monotonic() + self.idle_timeout)
            assert self._selector is not None
            self._selector.register(conn, selectors.EVENT_READ)
            self._receive(conn)  # a request sent right after the handshake is often here already
        return True

    def _receive(self, conn: socket.socket) -> None:
        waiting = self._waiting.get(conn)
        if waiting is None:
            return
        head = waiting.head
        try:
            data = conn.recv(MAX_HEAD_BYTES + 1 - len(head))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:  # the client closed (or half-closed) before its request was complete
            self._drop(conn)
            return
        start = max(0, len(head) - 2)
        head += data
        # The blank line ending the head: CRLF CRLF, or bare LF line ends (RFC 9112, 2.2).
        if head.find(b"\n\r\n", start) >= 0 or head.find(b"\n\n", start) >= 0:
            self._answer(conn, waiting)
        elif len(head) > MAX_HEAD_BYTES:
            with contextlib.suppress(OSError):
                conn.send(_TOO_LARGE)
            self._drop(conn)

    def _answer(self, conn: socket.socket, waiting: _Waiting) -> None:
        del self._waiting[conn]
        assert self._selector is not None
        self._selector.unregister(conn)
        conn.settimeout(self.idle_timeout)  # blocking, each read and write bounded
        with self._lock:
            self._answering.add(conn)
            self._handoff[conn] = (bytes(waiting.head), time.monotonic() + self.idle_timeout)
        try:
            # Short-lived, and not named healthprobe-*: thread listings of long-lived ones stay stable.
            _threads.start(self._handle, conn, waiting.address, name=f"probe-request-{self.port}")
        except RuntimeError as exc:  # no thread can be started: the request goes unanswered
            self._warn("thread", "probe server on port %d cannot start a thread: %s", self.port, exc)
            self._finished(conn)

    def _handle(self, conn: socket.socket, address: Any) -> None:
        try:
            self.finish_request(conn, address)
        except Exception:
            self.handle_error(conn, address)
        finally:
            self._finished(conn)

    def _finished(self, conn: socket.socket) -> None:
        with self._lock:
            self._answering.discard(conn)
            self._handoff.pop(conn, None)
        self.shutdown_request(conn)

    def _expire(self, now: float) -> None:
        while self._waiting:
            conn, waiting = next(iter(self._waiting.items()))
            if waiting.deadline > now:
                return
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        self._waiting.pop(conn, None)
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn)
        _close(conn)

    def _warn(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._warned.get(kind, -math.inf) >= _WARN_EVERY:
            self._warned[kind] = now
            _logger.warning(message, *args)

    def _close_inherited(self) -> None:
        """In a child forked from this process: close the copies of the listening socket,
        of the connections and of the selector (the threads serving them were not copied),
        so that the parent's closing them really closes them."""
        for conn in [self.socket, *self._waiting, *self._answering]:
            _close(conn)
        self._waiting.clear()
        self._answering.clear()
        if self._selector is not None:
            with contextlib.suppress(OSError):
                self._selector.close()


def _close_in_child(ref: weakref.ref[_Server]) -> None:
    server = ref()
    if server is not None:
        server._close_inherited()


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.close()


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
        idle_timeout: seconds a connection has to send its request (see :func:`serve`), or
            ``None`` for a server not built by :func:`serve`.
        max_connections: connections held at once (see :func:`serve`), or ``None``.

    Use it as a context manager, or call :meth:`stop` (alias :meth:`close`). To stop it with
    the process's lifecycle, register :meth:`on_lifecycle` as a lifecycle listener (done by
    :func:`serve` unless ``stop_on_stopped=False``): it stops the server when the registry
    enters ``stopped``, so probes are answered through ``draining`` until then.
    """

    def __init__(
        self, server: werkzeug.serving.BaseWSGIServer, host: str, endpoints: HealthEndpoints | None = None
    ) -> None:
        self._server = server
        self.host = host
        self.port = int(server.server_address[1])
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        self.url = f"http://[{shown}]:{self.port}" if ":" in shown else f"http://{shown}:{self.port}"
        self.endpoints = endpoints
        self.metrics_url: str | None = None
        if endpoints is not None and endpoints.metrics is not None:
            self.metrics_url = self.url + endpoints.metrics_path
        self.idle_timeout: float | None = getattr(server, "idle_timeout", None)
        self.max_connections: int | None = getattr(server, "max_connections", None)
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=f"healthprobe-probe-server-{self.port}", daemon=True)

    def _start(self) -> None:
        _threads.start_thread(self._thread)

    def _serve(self) -> None:
        try:
            self._server.serve_forever(poll_interval=0.2)
        except Exception:  # pragma: no cover - socketserver handles request errors itself
            _logger.exception("probe server on port %d stopped unexpectedly", self.port)

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
        _logger.info("probe server on port %d stopped", self.port)

    close = stop

    def close_after_fork(self) -> None:
        """In a process forked from the one serving (a prefork worker's child): close this
        process's copy of the listening socket, so that the port does not stay open after
        the serving process ends. The server thread is not copied into a child, so it
        serves nothing there; the serving process's server is not affected. Nothing else
        of this object is to be used in that process afterwards."""
        with contextlib.suppress(OSError):
            self._server.socket.close()

    def on_lifecycle(self, old: Lifecycle, new: Lifecycle) -> None:
        """A lifecycle listener (``registry.add_lifecycle_listener(server.on_lifecycle)``)
        that stops the server when the lifecycle enters ``stopped``."""
        if new is _types.Lifecycle.STOPPED:
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
    family = werkzeug.serving.select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _set_nodelay(sock)  # inherited by accepted connections; the handler sets it on each too
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _positive_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def serve(
    registry: HealthRegistry | HealthEndpoints,
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    *,
    shutdown: ShutdownView | None = None,
    access_log: bool = False,
    stop_on_stopped: bool = True,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    **options: Unpack[EndpointOptions],
) -> ProbeServer:
    """Serve the probe endpoints (and, with ``metrics``, Prometheus metrics) on
    ``host:port`` from a daemon background thread.

    Requests are answered by Werkzeug's WSGI request handler running
    :class:`healthprobe.wsgi.HealthApp`, each complete request in a daemon thread of its
    own, and checks run under their deadlines, so a hung check costs a probe its deadline
    and nothing more. Paths, bodies and status codes are those of the adapters (``/livez``,
    ``/healthz``, ``/readyz``, ``/startupz``, ``/readyz/<check>``, ``?verbose``,
    ``?format=json``; with ``metrics``, ``/metrics`` in the format ``Accept`` asks for,
    ``?name[]=`` filtering by metric name); other paths are ``404``. A malformed query is
    ``400``, a method other than ``GET`` or ``HEAD`` ``405``, as on the adapters. Each
    connection carries one request (Werkzeug answers ``Connection: close``); accepted
    connections have ``TCP_NODELAY`` set.

    No client can starve it of threads: one thread waits on the listening socket and on
    every connection that has not yet sent its request line and headers; a connection that
    has not sent them ``idle_timeout`` seconds after it was accepted is closed, and a head
    longer than :data:`MAX_HEAD_BYTES` is answered ``431``. At most ``max_connections``
    connections are held at once: when a new one would exceed that, the oldest connection
    still waiting for its request is closed to make room, or, when every connection held
    is being answered, the new one is closed at once. So a flood of idle connections
    (Slowloris) never costs more than ``max_connections`` file descriptors and never a
    thread, and a probe's connection, whose request follows its handshake at once, is
    answered. A WARNING says so, at most once a minute, when connections are closed at the
    bound.

    Args:
        registry: the :class:`HealthRegistry` (or a configured :class:`HealthEndpoints`).
        host: address to listen on; ``0.0.0.0`` (all IPv4 interfaces) so the kubelet, which
            probes the pod's IP, reaches it. ``"::"`` for IPv6.
        port: TCP port; ``0`` picks a free one (read it from the returned ``port``).
        shutdown: with ``metrics=True``, the shutdown coordinator whose requests in flight
            and phase the metrics show (``healthprobe_in_flight_requests``,
            ``healthprobe_shutdown_phase``): a
            :class:`~healthprobe.shutdown.GracefulShutdown`, or any object with ``in_flight``
            (int) and ``phase`` (str). It only feeds the metrics: probe requests are never
            counted as in flight, and nothing is installed.
        access_log: log one line per request (Werkzeug's format); off by default.
        stop_on_stopped: register :meth:`ProbeServer.on_lifecycle` on the registry so the
            server stops when the lifecycle enters ``stopped``.
        idle_timeout: seconds (float > 0) a connection has, from the moment it is accepted,
            to send its request line and headers, else it is closed without an answer; also
            the longest each read or write of its answer waits. Default
            :data:`DEFAULT_IDLE_TIMEOUT` (5 s): the kubelet and Prometheus send their
            request as soon as they are connected.
        max_connections: connections (int >= 1) held at once, waiting for their request or
            being answered; the server runs at most this many request threads, plus the one
            that accepts. Default :data:`DEFAULT_MAX_CONNECTIONS` (64).
        **options: the endpoint options, :class:`~healthprobe.http.EndpointOptions`
            (``paths``, ``failure_status``, ``expose_output``, ``metrics``,
            ``metrics_path``): ``metrics=True`` serves a
            :class:`healthprobe.prometheus.PrometheusMetrics` of ``registry`` (extra
            ``prometheus``; in multiprocess mode the merge of every process's metrics), or
            pass any :class:`~healthprobe.http.MetricsSource`. Off by default.

    When ``registry`` is a :class:`HealthEndpoints`, ``options`` and ``shutdown`` are ignored
    (configure them there), and ``stop_on_stopped`` listens to its registry.

    Returns:
        A running :class:`ProbeServer` (``url``, ``port``, ``metrics_url``, ``stop()``; a
        context manager).

    Raises:
        OSError: the address cannot be bound (for example the port is in use).
        ValueError: a malformed path or failure status, a metrics path that is also a probe
            path (see :class:`HealthEndpoints`), ``shutdown`` without ``metrics=True``, an
            ``idle_timeout`` that is not a finite number of seconds > 0, or a
            ``max_connections`` below 1.
        TypeError: ``shutdown`` has no ``in_flight`` or no ``phase``; ``host`` is not a str,
            ``port`` or ``max_connections`` not an int (``serve(registry, 8080)`` takes 8080
            for the host); an option of the wrong type, or a keyword that is not one.
        ImportError: ``metrics=True`` without prometheus-client installed.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, got {host!r}: the port is given as port=, serve(registry, port={host!r})")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, got {type(port).__name__}")
    idle_timeout = _positive_seconds("idle_timeout", idle_timeout)
    if isinstance(max_connections, bool) or not isinstance(max_connections, int):
        raise TypeError(f"max_connections must be an int, got {type(max_connections).__name__}")
    if max_connections < 1:
        raise ValueError(f"max_connections must be at least 1, got {max_connections}")
    if shutdown is not None:
        if options.get("metrics", False) is not True:
            raise ValueError(
                "shutdown= feeds the metrics that metrics=True builds: pass metrics=True too, or give your "
                "MetricsSource the coordinator (PrometheusMetrics(registry, shutdown=...))"
            )
        if not (hasattr(shutdown, "in_flight") and hasattr(shutdown, "phase")):
            raise TypeError(
                f"shutdown must have in_flight and phase (a GracefulShutdown), got {type(shutdown).__name__}"
            )
    app = wsgi.HealthApp(http.endpoints_for(registry, options, shutdown))
    sock = _listen(host, port)
    try:
        handler = _Handler if access_log else _QuietHandler
        wsgi_server = _Server(host, port, app, handler, sock.fileno(), idle_timeout, max_connections)
    finally:
        sock.close()  # the server duplicated the descriptor
    server = ProbeServer(wsgi_server, host, app.endpoints)
    server._start()
    if stop_on_stopped:
        app.endpoints.registry.add_lifecycle_listener(server.on_lifecycle)
    if server.metrics_url is not None:
        _logger.info("probe server listening on %s:%d, metrics on %s", host, server.port, app.endpoints.metrics_path)
    else:
        _logger.info("probe server listening on %s:%d", host, server.port)
    return server
