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

from collections.abc import Mapping

from starlette.responses import Response as StarletteResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ._types import Probe
from .http import HealthEndpoints, MetricsSource, Response, endpoints_for, plain_response
from .registry import HealthRegistry


def _route_path(scope: Scope) -> str:
    """``path`` below ``root_path``: the rule of Starlette's router (``get_route_path``),
    since servers such as uvicorn prefix ``path`` with ``root_path`` (ASGI 3.0 HTTP scope)."""
    path = str(scope["path"])
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        path = path[len(root) :]
    return path or "/"


def _accept(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"accept":
            return str(value.decode("latin-1"))
    return None


async def _send(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    answer = StarletteResponse(content=response.body, status_code=response.status)
    # Starlette computes content-length from the (possibly empty) body; ours already
    # carries the length of the GET body, which HEAD must repeat (RFC 9110 section 9.3.2).
    answer.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    await answer(scope, receive, send)


class HealthMiddleware:
    """ASGI middleware answering probe paths before the wrapped app sees them.

    Args:
        app: the ASGI application to protect and pass other requests to.
        registry: a :class:`HealthRegistry`, or a configured :class:`HealthEndpoints`.
        paths, failure_status, expose_output, metrics, metrics_path: as
            :class:`HealthEndpoints` (ignored when ``registry`` is a :class:`HealthEndpoints`);
            ``metrics=True`` also serves Prometheus metrics on ``/metrics``.

    Every scope other than an HTTP request to a probe path (lifespan, websocket, other
    paths) is passed to ``app`` unchanged. Probe paths are matched against the path below
    ``root_path`` (as Starlette's router does), so ``uvicorn --root-path /api``, which
    prefixes ``path`` with ``root_path``, still answers ``/livez``.
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
    ) -> None:
        self.app = app
        self.endpoints = endpoints_for(registry, paths, failure_status, expose_output, metrics, metrics_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = _route_path(scope)
            if self.endpoints.matches(path):
                response = await self.endpoints.handle_async(
                    scope["method"], path, scope.get("query_string", b"").decode("latin-1"), _accept(scope)
                )
                if response is not None:
                    await _send(response, scope, receive, send)
                    return
        await self.app(scope, receive, send)


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
        response = await self.endpoints.handle_async(
            scope["method"], path, scope.get("query_string", b"").decode("latin-1"), _accept(scope)
        )
        if response is None:
            response = plain_response(404, "not found", scope["method"] == "HEAD")
        await _send(response, scope, receive, send)
