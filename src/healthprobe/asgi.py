"""ASGI adapter (Starlette): a middleware that answers probe paths, and a mountable app.

Put :class:`HealthMiddleware` outermost, so authentication, sessions or rate limits of the
application never stand between the kubelet and its probes::

    app = HealthMiddleware(app, registry)

Or mount :class:`HealthApp` under a prefix (``Mount("/health", HealthApp(registry))``);
it honours ``root_path`` and never redirects for a trailing slash.

Probe checks never run on the event loop: sync checks run in daemon threads, async checks
are awaited under their deadlines (ASGI 3.0 specification; HTTP, lifespan and websocket
scopes of other paths pass through unchanged).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._types import Probe
from .http import HealthEndpoints, MetricsSource, Response, endpoints_for, plain_response
from .registry import HealthRegistry, _Stamp
from .shutdown import GracefulShutdown

#: Most distinct raw requests whose remembered answers the middleware can send directly.
_HITS_LIMIT = 256


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


class HealthMiddleware:
    """ASGI middleware answering probe paths before the wrapped app sees them.

    Args:
        app: the ASGI application to protect and pass other requests to.
        registry: a :class:`HealthRegistry`, or a configured :class:`HealthEndpoints`.
        paths, failure_status, expose_output, metrics, metrics_path: as
            :class:`HealthEndpoints` (ignored when ``registry`` is a :class:`HealthEndpoints`);
            ``metrics=True`` also serves Prometheus metrics on ``/metrics``.
        shutdown: a :class:`GracefulShutdown` to serve: HTTP requests to ``app`` are
            counted as in flight until the app returns; the HTTP/1.x response of every
            request that starts while draining carries ``Connection: close`` so that clients leave the process
            (RFC 9112 section 9.6); at lifespan startup (or the first request) the
            coordinator's signal handlers are installed in this serving process, and at
            lifespan shutdown it drains and runs its cleanup hooks before ``app`` sees the
            shutdown message.

    Every scope other than an HTTP request to a probe path (lifespan, websocket, other
    paths) is passed to ``app``; without ``shutdown`` it is passed unchanged. Probe paths
    are matched against the path below ``root_path`` (as Starlette's router does), so
    ``uvicorn --root-path /api``, which prefixes ``path`` with ``root_path``, still answers
    ``/livez``.
    """

    def __init__(
        self,
        app: ASGIApp,
        registry: HealthRegistry | HealthEndpoints,
        *,
        paths: Mapping[str, Probe | str] | None = None,
        failure_status: int | Mapping[Probe | str, int] = 503,
        expose_output: bool = False,
        metrics: bool | MetricsSource = False,
        metrics_path: str = "/metrics",
        shutdown: GracefulShutdown | None = None,
    ) -> None:
        self.app = app
        self.endpoints = endpoints_for(registry, paths, failure_status, expose_output, metrics, metrics_path)
        self.shutdown = shutdown
        # Every path answered here is one of these or starts with one of the prefixes.
        endpoints = self.endpoints
        self._exact = frozenset([*endpoints.paths, *([endpoints.metrics_path] if endpoints.metrics else [])])
        self._prefixes = tuple(path.rstrip("/") + "/" for path in endpoints.paths)
        self._registry = endpoints.registry
        # (path, raw query, raw Accept, method) -> the stamp and ready-made message parts of
        # an answer the endpoints remembered: a repeated probe is answered from one lookup
        # without decoding anything (docs/performance.md).
        self._hits: dict[
            tuple[str, bytes, bytes | None, str], tuple[_Stamp, int, tuple[tuple[bytes, bytes], ...], bytes]
        ] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every request of the application passes here: whether it is ours is decided by a
        # set lookup and one startswith, without a call or a coroutine (docs/performance.md).
        kind = scope["type"]
        shutdown = self.shutdown
        if kind == "http":
            path = _route_path(scope) if scope.get("root_path") else (scope["path"] or "/")
            if path in self._exact:
                # A repeated probe whose answer is still current: one lookup on the raw
                # request values and one validity test. Not while draining (the answer
                # then needs Connection: close) nor before the coordinator is installed.
                if shutdown is None or (shutdown.pid is not None and not shutdown.is_draining):
                    accept = None
                    for key, value in scope.get("headers", ()):
                        if key == b"accept":
                            accept = value
                            break
                    hit = self._hits.get((path, scope.get("query_string", b""), accept, scope["method"]))
                    if hit is not None:
                        stamp, status, headers, body = hit
                        registry = self._registry
                        if stamp.generation == registry._generation and (not stamp.pairs or registry._current(stamp)):
                            await send({"type": "http.response.start", "status": status, "headers": list(headers)})
                            await send({"type": "http.response.body", "body": body})
                            return
                ours = True
            else:
                ours = path.startswith(self._prefixes) and self.endpoints.matches(path)
            if shutdown is None:
                if not (ours and await self._answer(path, scope, receive, send)):
                    await self.app(scope, receive, send)
                return
            # Under a coordinator, inline rather than in a coroutine of its own: this is
            # the pass-through cost of every request (docs/performance.md).
            if shutdown.pid is None:  # no lifespan: install on the first request instead
                shutdown.install()
            if shutdown.is_draining and scope.get("http_version", "1.1") in ("1.0", "1.1"):
                send = _closing(send)
            if ours and await self._answer(path, scope, receive, send):
                return
            shutdown.request_started()
            try:
                await self.app(scope, receive, send)
            except (asyncio.CancelledError, anyio.get_cancelled_exc_class()):
                if shutdown.is_stopping:  # cut by the server's own shutdown bound
                    shutdown.request_cancelled()
                raise
            finally:
                shutdown.request_finished()
            return
        if kind == "lifespan" and shutdown is not None:
            await self.app(scope, _lifespan_receive(shutdown, receive), send)
            return
        await self.app(scope, receive, send)

    async def _answer(self, path: str, scope: Scope, receive: Receive, send: Send) -> bool:
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
        if entry is not None and entry[1] is response and path in self._exact:
            raw_accept = None if accept is None else accept.encode("latin-1")
            key = (path, scope.get("query_string", b""), raw_accept, method)
            hits = self._hits
            if len(hits) >= _HITS_LIMIT and key not in hits:
                hits.clear()  # bounded, as the endpoints' own answers are
            hits[key] = (entry[0], response.status, tuple(response.raw_headers), response.body)
        # _send's two messages, without a coroutine of its own: this is every probe's path.
        await send({"type": "http.response.start", "status": response.status, "headers": list(response.raw_headers)})
        await send({"type": "http.response.body", "body": response.body})
        return True


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


def _lifespan_receive(shutdown: GracefulShutdown, receive: Receive) -> Receive:
    async def wrapped() -> Message:
        message = await receive()
        if message["type"] == "lifespan.startup":
            shutdown.install()
        elif message["type"] == "lifespan.shutdown":
            await shutdown.finish_async()
        return message

    return wrapped


class HealthApp:
    """A mountable ASGI app serving only the probe paths (others are ``404``).

    Args:
        registry: a :class:`HealthRegistry`, or a configured :class:`HealthEndpoints`.
        paths, failure_status, expose_output, metrics, metrics_path: as
            :class:`HealthEndpoints`; ``metrics=True`` also serves Prometheus metrics on
            ``/metrics``.

    Under a Starlette ``Mount("/health", ...)`` the probe paths are relative to the mount
    (``/health/livez``): the ``root_path`` prefix is removed from ``path`` first, as
    the ASGI specification describes ``root_path`` and Starlette's router does.
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
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
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
