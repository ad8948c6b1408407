"""ASGI adapter (Starlette): a middleware that answers probe paths, and a mountable app.

Put :func:`HealthMiddleware` outermost, so authentication, sessions or rate limits of the
application never stand between the kubelet and its probes::

    app = HealthMiddleware(app, registry)

Or mount :class:`HealthApp` under a prefix (``Mount("/health", HealthApp(registry))``);
it honours ``root_path`` and never redirects for a trailing slash.

Probe checks never run on the event loop: sync checks run in daemon threads, async checks
are awaited under their deadlines (ASGI 3.0 specification; HTTP, lifespan and websocket
scopes of other paths pass through unchanged).

Both put their registry into the lifespan state, which the server copies into every
request's scope, so that a route handler finds it with :func:`registry_of`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, MutableMapping
from typing import Protocol, cast

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._extras import requires

with requires("asgi", __name__):
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import _launch
from ._types import Probe
from .http import (
    HealthEndpoints,
    MetricsSource,
    Response,
    check_app,
    check_shutdown,
    endpoints_for,
    plain_response,
)
from .registry import HealthRegistry, _Stamp
from .shutdown import SESSION_CLOSE_WAIT, GracefulShutdown

logger = logging.getLogger("healthprobe.shutdown")

#: Most distinct raw requests whose remembered answers the middleware can send directly.
_HITS_LIMIT = 256

#: The key of the registry in the lifespan state (and so in every request's ``scope["state"]``).
_STATE_KEY = "healthprobe.registry"


class _HasScope(Protocol):
    """A connection object of a framework (Starlette's ``Request`` and ``WebSocket``)."""

    @property
    def scope(self) -> Scope: ...


def _share(scope: Scope, registry: HealthRegistry) -> None:
    """Put ``registry`` into the lifespan ``state`` of ``scope``, if the server gives one
    (ASGI specification, Lifespan Protocol: ``state``, optional)."""
    state = scope.get("state")
    if isinstance(state, MutableMapping):
        state[_STATE_KEY] = registry


def registry_of(source: Scope | _HasScope) -> HealthRegistry:
    """The :class:`HealthRegistry` of the :func:`HealthMiddleware` (or :class:`HealthApp`)
    serving this request, for route handlers: to show a report on an admin page
    (``await registry_of(request).run_async("readiness")``) or to add a check at run time.

    :func:`HealthMiddleware` and :class:`HealthApp` put their registry into the lifespan
    state (key ``"healthprobe.registry"``) when the server starts the application; the
    server gives each request a copy of that state as ``scope["state"]`` (ASGI
    specification, Lifespan Protocol, and the HTTP and WebSocket connection scopes:
    ``state``). So it costs requests nothing, and is there under uvicorn, hypercorn,
    gunicorn's uvicorn workers and Starlette's ``TestClient`` used as a context manager.
    Where several put theirs, the innermost one, nearest the route, wins.

    Args:
        source: an ASGI HTTP or WebSocket scope (a mapping), or an object with a ``scope``
            attribute such as Starlette's and FastAPI's ``Request`` and ``WebSocket``.

    Returns:
        The registry.

    Raises:
        LookupError: the request's scope holds none: the server ran no lifespan
            (``uvicorn --lifespan off``, an in-process client outside ``with``), does not
            support lifespan state, or the registry is served only by a mounted
            :class:`HealthApp`, which never sees the lifespan (Starlette's ``Mount`` does not
            pass it on). The message names the fix.
    """
    scope = source if isinstance(source, Mapping) else source.scope
    state = scope.get("state")
    registry = state.get(_STATE_KEY) if isinstance(state, Mapping) else None
    if isinstance(registry, HealthRegistry):
        return registry
    raise LookupError(
        "no healthprobe registry in this request's scope['state']: wrap the app in "
        "healthprobe.asgi.HealthMiddleware (a mounted HealthApp never sees the lifespan) and serve it with "
        "its lifespan on (not uvicorn --lifespan off; in tests, 'with TestClient(app):')"
    )


def _route_path(scope: Scope) -> str:
    """``path`` below ``root_path``: the rule of Starlette's router (``get_route_path``),
    since servers such as uvicorn prefix ``path`` with ``root_path`` (ASGI 3.0 HTTP scope)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        path = path[len(root) :]
    return path or "/"


def _accept(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"accept":
            return str(value.decode("latin-1"))
    return None


async def _send(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    # The two messages Starlette's Response sends, without building one per probe. The
    # headers already carry the length of the GET body, which HEAD repeats (RFC 9110
    # section 9.3.2); the list is copied since a wrapping send may append to it.
    await send({"type": "http.response.start", "status": response.status, "headers": list(response.raw_headers)})
    await send({"type": "http.response.body", "body": response.body})


class ProbeMiddleware(Protocol):
    """What :func:`HealthMiddleware` returns: an ASGI 3.0 application, with the parts it was
    built from as read-only attributes."""

    #: The wrapped application.
    app: ASGIApp
    #: The endpoints answering probe (and metrics) requests.
    endpoints: HealthEndpoints
    #: The coordinator counting in-flight requests, or ``None``.
    shutdown: GracefulShutdown | None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class _Probes:
    """The probe side of one middleware: which paths are its own, and answering them."""

    def __init__(self, endpoints: HealthEndpoints) -> None:
        self.endpoints = endpoints
        # Every path answered here is one of these or starts with one of the prefixes.
        self.exact = frozenset([*endpoints.paths, *([endpoints.metrics_path] if endpoints.metrics else [])])
        self.prefixes = tuple(path.rstrip("/") + "/" for path in endpoints.paths)
        # (path, raw query, raw Accept, method) -> (registry generation, stamp or None when
        # only the generation matters, status, headers, body) of an answer the endpoints
        # remembered: a repeated probe is answered from one lookup on the raw request values
        # and one validity test, without decoding anything (docs/performance.md).
        self.hits: dict[
            tuple[str, bytes, bytes | None, str],
            tuple[int, _Stamp | None, int, tuple[tuple[bytes, bytes], ...], bytes],
        ] = {}

    async def answer(self, path: str, scope: Scope, send: Send) -> bool:
        """Answer a probe or metrics request at ``path`` (one of ours); ``False`` if
        nothing here answers it after all."""
        method, query, accept = scope["method"], scope.get("query_string", b"").decode("latin-1"), _accept(scope)
        endpoints = self.endpoints
        response = endpoints.cached(method, path, query, accept)
        if response is None:
            response = await endpoints.handle_async(method, path, query, accept)
        if response is None:
            return False
        entry = endpoints._answers.get((method, path, query, accept))
        if entry is not None and entry[1] is response and path in self.exact:
            stamp = entry[0]
            raw_accept = None if accept is None else accept.encode("latin-1")
            key = (path, scope.get("query_string", b""), raw_accept, method)
            hits = self.hits
            if len(hits) >= _HITS_LIMIT and key not in hits:
                hits.clear()  # bounded, as the endpoints' own answers are
            hits[key] = (
                stamp.generation,
                stamp if stamp.pairs else None,
                response.status,
                tuple(response.raw_headers),
                response.body,
            )
        await send({"type": "http.response.start", "status": response.status, "headers": list(response.raw_headers)})
        await send({"type": "http.response.body", "body": response.body})
        return True


def HealthMiddleware(
    app: ASGIApp,
    registry: HealthRegistry | HealthEndpoints,
    *,
    paths: Mapping[str, Probe | str] | None = None,
    failure_status: int | Mapping[Probe | str, int] = 503,
    expose_output: bool = False,
    metrics: bool | MetricsSource = False,
    metrics_path: str = "/metrics",
    shutdown: GracefulShutdown | None = None,
) -> ProbeMiddleware:
    """Wrap an ASGI app so that probe paths are answered before it sees them.

    Args:
        app: the ASGI application to protect and pass other requests to.
        registry: a :class:`HealthRegistry`, or a configured :class:`HealthEndpoints`.
        paths, failure_status, expose_output, metrics, metrics_path: as
            :class:`HealthEndpoints` (ignored when ``registry`` is a :class:`HealthEndpoints`);
            ``metrics=True`` also serves Prometheus metrics on ``/metrics``.
        shutdown: a :class:`GracefulShutdown` to serve: HTTP requests to ``app`` are
            counted as in flight until the app returns; the HTTP/1.x response of every
            request that starts while draining carries ``Connection: close`` so that clients
            leave the process (RFC 9112 section 9.6); WebSocket sessions are counted in
            flight until the app returns, and those still open at the drain bound are
            closed with code 1001; at lifespan startup (or the first request, without a
            lifespan) the coordinator's signal handlers are installed in this serving
            process on top of the server's (or, where the server cannot be stopped, a
            WARNING names the fix), and at lifespan shutdown it drains and runs its
            cleanup hooks before ``app`` sees the shutdown message. An app that does not
            speak the lifespan protocol (Django's) gets it spoken for it.

    Returns:
        A :class:`ProbeMiddleware`: the ASGI 3.0 application to serve (an ``async``
        function, so servers that tell ASGI 2 from 3 by inspection see ASGI 3), with
        ``app``, ``endpoints`` and ``shutdown`` as attributes.

    Raises:
        ValueError, ImportError: as :class:`HealthEndpoints`.

    Every scope other than an HTTP request to a probe path (lifespan, websocket, other
    paths) is passed to ``app``; without ``shutdown`` it is passed unchanged, except that
    the registry is put into the lifespan scope's ``state``, for :func:`registry_of`. Probe paths
    are matched against the path below ``root_path`` (as Starlette's router does), so
    ``uvicorn --root-path /api``, which prefixes ``path`` with ``root_path``, still answers
    ``/livez``. Use it like a middleware class: ``HealthMiddleware(app, registry)``, or
    ``app.add_middleware(HealthMiddleware, registry=registry)`` in Starlette and FastAPI. It
    is a function returning a closure because every request of the application passes
    through it, and CPython calls a function markedly faster than an object's
    ``__call__`` (docs/performance.md).
    """
    check_app(app, "asgi")
    check_shutdown(app, shutdown, registry)
    endpoints = endpoints_for(registry, paths, failure_status, expose_output, metrics, metrics_path, shutdown)
    probes = _Probes(endpoints)
    exact, prefixes, hits, answer = probes.exact, probes.prefixes, probes.hits, probes.answer
    health = endpoints.registry
    requests = shutdown._requests if shutdown is not None else []  # the in-flight count

    async def health_middleware(scope: Scope, receive: Receive, send: Send) -> None:
        # Every request of the application passes here: whether it is ours is decided by a
        # set lookup (and one startswith for other paths), without a call or a coroutine
        # (docs/performance.md).
        if scope["type"] == "http":
            path: str = scope["path"]
            try:
                if scope["root_path"]:
                    path = _route_path(scope)
            except KeyError:  # root_path is optional (ASGI 3.0 HTTP scope)
                pass
            if path in exact:
                # A repeated probe whose answer is still current: one lookup on the raw
                # request values and one validity test. Not while draining (the answer
                # then needs Connection: close) nor before the coordinator is installed.
                if shutdown is None or shutdown._steady:
                    try:
                        for key, accept in scope["headers"]:  # noqa: B007 -- kept after the break
                            if key == b"accept":
                                break
                        else:
                            accept = None
                        generation, stamp, status, headers, body = hits[
                            (path, scope["query_string"], accept, scope["method"])
                        ]
                    except (KeyError, TypeError, ValueError):  # not remembered, or a malformed scope
                        pass
                    else:
                        if generation == health._generation and (stamp is None or health._current(stamp)):
                            await send({"type": "http.response.start", "status": status, "headers": [*headers]})
                            await send({"type": "http.response.body", "body": body})
                            return
                mine = True
            elif path:
                mine = path.startswith(prefixes) and endpoints.matches(path)
            else:  # an empty path is the root, as Starlette's router reads it
                path = "/"
                mine = endpoints.matches(path)
            if shutdown is None:
                if not (mine and await answer(path, scope, send)):
                    await app(scope, receive, send)
                return
            # Under a coordinator: its plain attributes, not its properties or methods,
            # since this is the pass-through cost of every request (docs/performance.md).
            if not shutdown._steady:
                if not shutdown._lifespan_seen:
                    _warn_if_lifespan_skipped(app)
                shutdown._adopt()  # no lifespan (uvicorn --lifespan off): install on the first request
                if shutdown._signalled and scope.get("http_version", "1.1") in ("1.0", "1.1"):
                    send = _closing(send)
            if mine and await answer(path, scope, send):
                return
            requests.append(None)
            try:
                await app(scope, receive, send)
            except (asyncio.CancelledError, anyio.get_cancelled_exc_class()):
                if shutdown.is_stopping:  # cut by the server's own shutdown bound
                    shutdown.request_cancelled()
                raise
            except BaseException as exc:
                if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt: cut, not drained
                    shutdown.request_cut(exc)
                raise
            finally:
                if requests:  # never below zero, whatever else counts here
                    requests.pop()
            return
        if scope["type"] == "lifespan":
            _share(scope, health)
            if shutdown is not None:
                await _lifespan(app, scope, receive, send, shutdown)
                return
        elif shutdown is not None and scope["type"] == "websocket":
            await _session(app, scope, receive, send, shutdown)
            return
        await app(scope, receive, send)

    middleware = cast(ProbeMiddleware, health_middleware)
    middleware.app = app
    middleware.endpoints = endpoints
    middleware.shutdown = shutdown
    return middleware


#: Logged once per process (:func:`_warn_if_lifespan_skipped`).
LIFESPAN_SKIPPED = (
    "the server ran no ASGI lifespan (uvicorn --lifespan off?), so the application's own lifespan "
    "did not run: what it sets up there (connection pools, checks it registers) is missing, and "
    "the probes cannot see it; serve with the lifespan on (uvicorn's default, --lifespan auto)"
)
_lifespan_warned = False


def _warn_if_lifespan_skipped(app: ASGIApp) -> None:
    """At the first request of a process that saw no lifespan scope: a WARNING when ``app``
    (or an app it wraps, through ``.app``) has a lifespan of its own to run: a Starlette or
    FastAPI router with a ``lifespan=`` or startup/shutdown handlers. Apps without one
    (Django's, plain ASGI callables) need none, and get no warning."""
    global _lifespan_warned
    if _lifespan_warned:
        return
    _lifespan_warned = True
    current: object = app
    for _ in range(32):  # a middleware chain, each wrapping the next as ``.app``
        for holder in (current, getattr(current, "router", None)):
            context = getattr(holder, "lifespan_context", None)
            if context is None:
                continue
            default = type(context).__name__ == "_DefaultLifespan"  # Starlette's, for no lifespan=
            if not default or getattr(holder, "on_startup", None) or getattr(holder, "on_shutdown", None):
                logger.warning(LIFESPAN_SKIPPED)
            return
        current = getattr(current, "app", None)
        if current is None:
            return


def _closing(send: Send) -> Send:
    """``send`` adding ``Connection: close`` to the response start (RFC 9112 section 9.6).

    Used for HTTP/1.x requests that start while draining, so that clients move to other
    pods. Requests that began before the signal are not wrapped: a keep-alive connection
    gets the header on its next request, which is still served, and the server closes idle
    connections when it stops accepting; so no request pays for this before shutdown.
    HTTP/2 and HTTP/3 forbid connection-specific headers (RFC 9113 section 8.2.2): their
    servers close with GOAWAY, so their messages pass unchanged.
    """

    async def closing_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
            headers.append((b"connection", b"close"))
            message = {**message, "headers": headers}
        await send(message)

    return closing_send


async def _lifespan(app: ASGIApp, scope: Scope, receive: Receive, send: Send, shutdown: GracefulShutdown) -> None:
    """Pass the lifespan (ASGI 3.0 lifespan protocol) to ``app``: the coordinator is
    installed at ``lifespan.startup`` and finished (drain, hooks) at ``lifespan.shutdown``,
    before ``app`` sees either; if the lifespan task is cancelled, the hooks still run
    (:meth:`GracefulShutdown.finish_cancelled`).

    An app that does not speak the protocol (it raises or returns before reading a message,
    as Django's ``ASGIHandler`` raises on a lifespan scope) gets it spoken for it, so that
    the coordinator is installed and its hooks run on the server's event loop all the same.
    """
    shutdown._lifespan_seen = True
    server = ""
    config = _launch.hypercorn_config(receive)
    if config is not None:
        server = "hypercorn-trio" if getattr(config, "worker_class", "") == "trio" else "hypercorn"
        # hypercorn cancels what is still running graceful_timeout seconds after it stops
        # accepting (3 s by default): let the drain bound, and the closing of WebSocket
        # sessions at it, come first.
        bound = shutdown.drain_timeout + SESSION_CLOSE_WAIT + 1.0
        if getattr(config, "graceful_timeout", bound) < bound:
            config.graceful_timeout = bound
    read = False

    async def wrapped() -> Message:
        nonlocal read
        try:
            message = await receive()
        except anyio.get_cancelled_exc_class():
            await shutdown.finish_cancelled()
            raise
        read = True
        if message["type"] == "lifespan.startup":
            shutdown._install(automatic=server)
        elif message["type"] == "lifespan.shutdown":
            await shutdown.finish_async()
        return message

    try:
        await app(scope, wrapped, send)
    except Exception as exc:
        if read:
            raise
        reason = f"it raised {type(exc).__name__}: {str(exc)[:200]}"
    else:
        if read:
            return
        reason = "it returned"
    logger.info("the application does not speak the ASGI lifespan protocol (%s): healthprobe answers it", reason)
    await _complete_lifespan(wrapped, send)


async def _complete_lifespan(receive: Receive, send: Send) -> None:
    """Answer the lifespan protocol (ASGI 3.0) for an app with nothing to do at startup or
    shutdown: complete each step as it comes."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class SessionClosed(OSError):
    """Raised by ``send`` of a WebSocket session that healthprobe closed with code 1001 at
    the drain bound: the ASGI specification asks servers to raise a subclass of
    ``OSError`` when ``send`` is called on a closed connection (Starlette's ``WebSocket``
    turns it into ``WebSocketDisconnect``)."""


class _Session:
    """One WebSocket session under a coordinator: counted in flight while the app runs it,
    and closed with code 1001 ("going away", RFC 6455 section 7.4.1) from the coordinator's
    thread if it is still open at the drain bound."""

    __slots__ = ("_send", "closed", "token")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.closed = False
        self.token = anyio.lowlevel.current_token()

    async def send(self, message: Message) -> None:
        if self.closed:
            if message["type"] == "websocket.close":
                return  # closing a session that is closed already changes nothing
            raise SessionClosed("the WebSocket session was closed by the server's shutdown (code 1001)")
        if message["type"] == "websocket.close":
            self.closed = True
        await self._send(message)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self._send({"type": "websocket.close", "code": 1001, "reason": "server shutting down"})

    def close_from_thread(self) -> None:
        anyio.from_thread.run(self.close, token=self.token)


async def _session(app: ASGIApp, scope: Scope, receive: Receive, send: Send, shutdown: GracefulShutdown) -> None:
    if not shutdown._steady:
        shutdown._adopt()
    session = _Session(send)
    closer = session.close_from_thread
    requests = shutdown._requests
    requests.append(None)
    shutdown._sessions.add(closer)
    try:
        await app(scope, receive, session.send)
    finally:
        shutdown._sessions.discard(closer)
        if requests:
            requests.pop()


class HealthApp:
    """A mountable ASGI app serving only the probe paths (others are ``404``).

    Args:
        registry: a :class:`HealthRegistry`, or a configured :class:`HealthEndpoints`.
        paths, failure_status, expose_output, metrics, metrics_path: as
            :class:`HealthEndpoints`; ``metrics=True`` also serves Prometheus metrics on
            ``/metrics``.

    Under a Starlette ``Mount("/health", ...)`` the probe paths are relative to the mount
    (``/health/livez``): the ``root_path`` prefix is removed from ``path`` first, as
    the ASGI specification describes ``root_path`` and Starlette's router does. Served as
    the application itself, it puts the registry into the lifespan state (for
    :func:`registry_of`); mounted, it never sees the lifespan.
    """

    def __init__(
        self,
        registry: HealthRegistry | HealthEndpoints,
        *,
        paths: Mapping[str, Probe | str] | None = None,
        failure_status: int | Mapping[Probe | str, int] = 503,
        expose_output: bool = False,
        metrics: bool | MetricsSource = False,
        metrics_path: str = "/metrics",
    ) -> None:
        self.endpoints = endpoints_for(registry, paths, failure_status, expose_output, metrics, metrics_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            _share(scope, self.endpoints.registry)
            await _complete_lifespan(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        path = _route_path(scope)
        method, query, accept = scope["method"], scope.get("query_string", b"").decode("latin-1"), _accept(scope)
        response = self.endpoints.cached(method, path, query, accept)
        if response is None:
            response = await self.endpoints.handle_async(method, path, query, accept)
        if response is None:
            response = plain_response(404, "not found", scope["method"] == "HEAD")
        await _send(response, scope, receive, send)
