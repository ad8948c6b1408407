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
import collections.abc
import logging
import typing

import anyio
import anyio.from_thread
import anyio.lowlevel

from . import _extras

with _extras.requires("asgi", __name__):
    import starlette.types  # noqa: F401 -- the extra this adapter is documented and tested with

from . import _launch, http
from . import guard as _guard
from . import registry as _registry
from . import shutdown as _shutdown

if typing.TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
    from typing_extensions import Unpack

    from .http import EndpointOptions, HealthEndpoints, Response
    from .registry import HealthRegistry
    from .shutdown import GracefulShutdown

__all__ = ["LIFESPAN_SKIPPED", "HealthApp", "HealthMiddleware", "ProbeMiddleware", "SessionClosed", "registry_of"]

_logger = logging.getLogger("healthprobe.shutdown")

#: The key of the registry in the lifespan state (and so in every request's ``scope["state"]``).
_STATE_KEY = "healthprobe.registry"


class _HasScope(typing.Protocol):
    """A connection object of a framework (Starlette's ``Request`` and ``WebSocket``)."""

    @property
    def scope(self) -> Scope: ...


def _share(scope: Scope, registry: HealthRegistry) -> None:
    """Put ``registry`` into the lifespan ``state`` of ``scope``, if the server gives one
    (ASGI specification, Lifespan Protocol: ``state``, optional)."""
    state = scope.get("state")
    if isinstance(state, collections.abc.MutableMapping):
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
    scope = source if isinstance(source, collections.abc.Mapping) else source.scope
    state = scope.get("state")
    registry = state.get(_STATE_KEY) if isinstance(state, collections.abc.Mapping) else None
    if isinstance(registry, _registry.HealthRegistry):
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


def _raw_accept(scope: Scope) -> bytes | None:
    """The first ``Accept`` header of ``scope``, as the server gave it, or ``None``."""
    for key, value in scope.get("headers", ()):
        if key == b"accept":
            return bytes(value)
    return None


def _header(scope: Scope) -> typing.Callable[[str], str | None]:
    """A request header's value by lower-case name, its fields joined by ``,`` (RFC 9110
    section 5.3), or ``None``: what a guard reads."""

    def header(name: str) -> str | None:
        wanted = name.encode("latin-1")
        values = [bytes(value).decode("latin-1") for key, value in scope.get("headers", ()) if key.lower() == wanted]
        return ",".join(values) if values else None

    return header


def _peer(scope: Scope) -> str | None:
    """The direct peer's address (ASGI HTTP scope ``client``, optional), or ``None``."""
    client = scope.get("client")
    return str(client[0]) if client else None


async def _admin(endpoints: HealthEndpoints, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a request on a guarded admin path: the body is read only when the guard allows
    it, and at most :data:`~healthprobe.http.ADMIN_BODY_LIMIT` bytes of it."""
    method: str = scope["method"]
    header = _header(scope)
    verdict = endpoints.verdict(_peer(scope), header)
    length = header("content-length")
    try:
        declared = None if length is None else int(length)
    except ValueError:
        declared = http.ADMIN_BODY_LIMIT + 1
    response = endpoints.admin_refusal(kind, method, verdict, declared)
    if response is None:
        chunks: list[bytes] = []
        size = 0
        more = method == "POST"
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > http.ADMIN_BODY_LIMIT:
                response = endpoints.admin_refusal(kind, method, verdict, size)
                break
            chunks.append(chunk)
            more = message.get("more_body", False)
    if response is None:
        query = scope.get("query_string", b"").decode("latin-1")
        response = endpoints.admin(kind, method, query, header("content-type"), b"".join(chunks))
    await _send(response, send)


async def _answer(endpoints: HealthEndpoints, path: str, scope: Scope, send: Send, receive: Receive) -> bool:
    """Answer a request at ``path`` from ``endpoints``; ``False`` if they do not answer it.

    The answer is remembered under the raw request values (method, path, raw query, raw
    ``Accept``; and whether a guard allowed details), which the middleware's fast path looks
    up without decoding anything (docs/performance.md); under a guard, no answer is
    remembered under the four values alone, so the fast path never gives one. The two
    messages are sent here, as Starlette's ``Response`` sends them, without building one;
    the header list is copied, since a wrapping ``send`` may append to it.
    """
    method: str = scope["method"]
    raw_query: bytes = scope.get("query_string", b"")
    raw_accept = _raw_accept(scope)
    query, accept = raw_query.decode("latin-1"), None if raw_accept is None else raw_accept.decode("latin-1")
    if endpoints.guard is None:
        key: tuple[object, ...] = (method, path, raw_query, raw_accept)
        response = endpoints.cached(method, path, query, accept, key)
        if response is None:
            response = await endpoints.handle_async(method, path, query, accept, key)
    else:
        kind = endpoints.admin_paths.get(path)
        if kind is not None:
            await _admin(endpoints, kind, scope, receive, send)
            return True
        details = endpoints.verdict(_peer(scope), _header(scope)) is _guard.Verdict.ALLOWED
        key = (method, path, raw_query, raw_accept, details)
        response = endpoints.cached(method, path, query, accept, key, details)
        if response is None:
            response = await endpoints.handle_async(method, path, query, accept, key, details)
    if response is None:
        return False
    await _send(response, send)
    return True


async def _send(response: Response, send: Send) -> None:
    # The headers already carry the length of the GET body, which HEAD repeats (RFC 9110
    # section 9.3.2).
    await send({"type": "http.response.start", "status": response.status, "headers": list(response.raw_headers)})
    await send({"type": "http.response.body", "body": response.body})


class ProbeMiddleware(typing.Protocol):
    """What :func:`HealthMiddleware` returns: an ASGI 3.0 application, with the parts it was
    built from as read-only attributes."""

    #: The wrapped application.
    app: ASGIApp
    #: The endpoints answering probe (and metrics) requests.
    endpoints: HealthEndpoints
    #: The coordinator counting in-flight requests, or ``None``.
    shutdown: GracefulShutdown | None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


def HealthMiddleware(
    app: ASGIApp,
    registry: HealthRegistry | HealthEndpoints,
    *,
    shutdown: GracefulShutdown | None = None,
    **options: Unpack[EndpointOptions],
) -> ProbeMiddleware:
    """Wrap an ASGI app so that probe paths are answered before it sees them.

    Args:
        app: the ASGI application to protect and pass other requests to.
        registry: a :class:`HealthRegistry`, or a configured :class:`HealthEndpoints`.
        **options: the endpoint options, :class:`~healthprobe.http.EndpointOptions`
            (``paths``, ``failure_status``, ``expose_output``, ``metrics``,
            ``metrics_path``, ``guard``), ignored when ``registry`` is a
            :class:`HealthEndpoints`; ``metrics=True`` also serves Prometheus metrics on
            ``/metrics``. Under a ``guard``, the client address is ``scope["client"]``.
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
        TypeError, ValueError, ImportError: as :class:`HealthEndpoints`; ``TypeError`` also
            for an ``app`` that is not an ASGI application (a WSGI one, a class) or a
            ``shutdown`` that is not a coordinator of the same registry.

    Every scope other than an HTTP request to a probe path (lifespan, websocket, other
    paths) is passed to ``app``; without ``shutdown`` it is passed unchanged, except that
    the registry is put into the lifespan scope's ``state``, for :func:`registry_of`. Probe paths
    are matched against the path below ``root_path`` (as Starlette's router does), so
    ``uvicorn --root-path /api``, which prefixes ``path`` with ``root_path``, still answers
    ``/livez``. Use it like a middleware class: ``HealthMiddleware(app, registry)``, or
    ``app.add_middleware(HealthMiddleware, registry=registry)`` in Starlette and FastAPI. It
    is a function returning a closure because every request of the application passes
    through it, and CPython calls a function markedly faster than an object's
    ``__call__`` (docs/performance.md); and the function built is chosen once, here: with a
    coordinator, one that counts requests in flight, without, one that passes them on as
    they are.
    """
    http.check_app(app, "asgi")
    http.check_shutdown(app, shutdown, registry)
    endpoints = http.endpoints_for(registry, options, shutdown)
    middleware = _probes(app, endpoints) if shutdown is None else _counting(app, endpoints, shutdown)
    built = typing.cast(ProbeMiddleware, middleware)
    built.app, built.endpoints, built.shutdown = app, endpoints, shutdown
    return built


def _probes(app: ASGIApp, endpoints: HealthEndpoints) -> ASGIApp:
    """The middleware without a coordinator: probe requests answered, every other scope
    passed to ``app`` as it is (the lifespan's ``state`` given the registry)."""
    exact, prefixes, answers, health = endpoints.exact_paths, endpoints.prefixes, endpoints.answers, endpoints.registry

    async def health_middleware(scope: Scope, receive: Receive, send: Send) -> None:
        # Every request of the application passes here: whether it is ours is decided by a
        # set lookup (and one startswith for other paths), without a call or a coroutine
        # (docs/performance.md).
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                _share(scope, health)
            await app(scope, receive, send)
            return
        try:
            path: str = _route_path(scope) if scope["root_path"] else scope["path"] or "/"
        except KeyError:  # root_path is optional (ASGI 3.0 HTTP scope)
            path = scope["path"] or "/"  # an empty path is the root, as Starlette's router reads it
        if path in exact:
            # A repeated probe whose answer is still current: one lookup on the raw request
            # values and the test of HealthEndpoints.is_current written out. Written again in
            # the middleware with a coordinator: a shared function costs every probe a call,
            # 5% of the floor (docs/performance.md).
            try:
                for key, accept in scope["headers"]:  # noqa: B007 -- kept after the break
                    if key == b"accept":
                        break
                else:
                    accept = None
                answer = answers[scope["method"], path, scope["query_string"], accept]
            except (KeyError, TypeError, ValueError):  # not remembered, or a malformed scope
                pass
            else:
                if answer.generation == health.generation and (
                    answer.stamp is None or health.still_current(answer.stamp)
                ):
                    await send(
                        {"type": "http.response.start", "status": answer.status, "headers": [*answer.raw_headers]}
                    )
                    await send({"type": "http.response.body", "body": answer.body})
                    return
        elif not (path.startswith(prefixes) and endpoints.matches(path)):
            await app(scope, receive, send)
            return
        if not await _answer(endpoints, path, scope, send, receive):
            await app(scope, receive, send)

    return health_middleware


def _counting(app: ASGIApp, endpoints: HealthEndpoints, shutdown: GracefulShutdown) -> ASGIApp:
    """The middleware with a coordinator: HTTP requests to ``app`` counted in flight, probe
    requests answered (a repeated one from the remembered answer while the coordinator is
    installed here and no shutdown has begun; else the first request installs the
    coordinator, and answers while draining carry ``Connection: close``), lifespan and
    WebSocket scopes served for the coordinator."""
    exact, prefixes = endpoints.exact_paths, endpoints.prefixes
    slots = shutdown.requests_in_flight.slots
    answers, health = endpoints.answers, endpoints.registry

    async def health_middleware(scope: Scope, receive: Receive, send: Send) -> None:
        # The coordinator's plain attributes, not its properties or methods, on the path
        # every request passes (docs/performance.md).
        if scope["type"] != "http":
            await _not_http(app, scope, receive, send, shutdown, endpoints.registry)
            return
        try:
            path: str = _route_path(scope) if scope["root_path"] else scope["path"] or "/"
        except KeyError:  # root_path is optional (ASGI 3.0 HTTP scope)
            path = scope["path"] or "/"
        if path in exact:
            if shutdown.steady:
                # A repeated probe, as in the middleware without a coordinator (not while
                # draining: the answer then needs Connection: close).
                try:
                    for key, accept in scope["headers"]:  # noqa: B007 -- kept after the break
                        if key == b"accept":
                            break
                    else:
                        accept = None
                    answer = answers[scope["method"], path, scope["query_string"], accept]
                except (KeyError, TypeError, ValueError):  # not remembered, or a malformed scope
                    pass
                else:
                    if answer.generation == health.generation and (
                        answer.stamp is None or health.still_current(answer.stamp)
                    ):
                        await send(
                            {"type": "http.response.start", "status": answer.status, "headers": [*answer.raw_headers]}
                        )
                        await send({"type": "http.response.body", "body": answer.body})
                        return
            mine = True
        else:
            mine = path.startswith(prefixes) and endpoints.matches(path)
        if not shutdown.steady:
            send = _unsteady(app, scope, send, shutdown)
        if mine and await _answer(endpoints, path, scope, send, receive):
            return
        slots.append(None)
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
            if slots:  # never below zero, whatever else counts here
                slots.pop()

    return health_middleware


async def _not_http(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, shutdown: GracefulShutdown, registry: HealthRegistry
) -> None:
    """A lifespan, WebSocket or other scope under a coordinator."""
    if scope["type"] == "lifespan":
        _share(scope, registry)
        await _lifespan(app, scope, receive, send, shutdown)
    elif scope["type"] == "websocket":
        await _session(app, scope, receive, send, shutdown)
    else:
        await app(scope, receive, send)


def _unsteady(app: ASGIApp, scope: Scope, send: Send, shutdown: GracefulShutdown) -> Send:
    """For a request that comes while the coordinator is not installed in this process or
    is draining: install it (no lifespan, as with ``uvicorn --lifespan off``: at the first
    request), and the ``send`` to answer with (adding ``Connection: close`` once draining)."""
    if not shutdown.lifespan_seen:
        _warn_if_lifespan_skipped(app)
    shutdown.adopt()
    if shutdown.signalled and scope.get("http_version", "1.1") in ("1.0", "1.1"):
        return _closing(send)
    return send


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
                _logger.warning(LIFESPAN_SKIPPED)
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
    shutdown.note_lifespan()
    server = ""
    config = _launch.hypercorn_config(receive)
    if config is not None:
        server = "hypercorn-trio" if getattr(config, "worker_class", "") == "trio" else "hypercorn"
        # hypercorn cancels what is still running graceful_timeout seconds after it stops
        # accepting (3 s by default): let the drain bound, and the closing of WebSocket
        # sessions at it, come first.
        bound = shutdown.drain_timeout + _shutdown.SESSION_CLOSE_WAIT + 1.0
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
            shutdown.install_automatically(server)
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
    _logger.info("the application does not speak the ASGI lifespan protocol (%s): healthprobe answers it", reason)
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
    if not shutdown.steady:
        shutdown.adopt()
    session = _Session(send)
    closer = session.close_from_thread
    in_flight = shutdown.requests_in_flight
    slots = in_flight.slots
    slots.append(None)
    in_flight.sessions.add(closer)
    try:
        await app(scope, receive, session.send)
    finally:
        in_flight.sessions.discard(closer)
        if slots:
            slots.pop()


class HealthApp:
    """A mountable ASGI app serving only the probe paths (others are ``404``).

    Args:
        registry: a :class:`HealthRegistry`, or a configured :class:`HealthEndpoints`.
        **options: the endpoint options, :class:`~healthprobe.http.EndpointOptions`,
            ignored when ``registry`` is a :class:`HealthEndpoints`; ``metrics=True`` also
            serves Prometheus metrics on ``/metrics``.

    Under a Starlette ``Mount("/health", ...)`` the probe paths are relative to the mount
    (``/health/livez``): the ``root_path`` prefix is removed from ``path`` first, as
    the ASGI specification describes ``root_path`` and Starlette's router does. Served as
    the application itself, it puts the registry into the lifespan state (for
    :func:`registry_of`); mounted, it never sees the lifespan.
    """

    def __init__(self, registry: HealthRegistry | HealthEndpoints, **options: Unpack[EndpointOptions]) -> None:
        self.endpoints = http.endpoints_for(registry, options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            _share(scope, self.endpoints.registry)
            await _complete_lifespan(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        if not await _answer(self.endpoints, _route_path(scope), scope, send, receive):
            await _send(http.plain_response(404, "not found", scope["method"] == "HEAD"), send)
