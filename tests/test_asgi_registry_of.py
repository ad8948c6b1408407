"""``healthprobe.asgi.registry_of``: the registry of the HealthMiddleware (or HealthApp)
serving a request, read from the lifespan state the server copies into every request's
scope (ASGI lifespan state). Served here by Starlette's TestClient, which runs the lifespan
with its state as uvicorn and hypercorn do; tests/test_framework_pages.py runs the same
under the real servers."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from healthprobe import HealthEndpoints, HealthRegistry
from healthprobe.asgi import HealthApp, HealthMiddleware, registry_of
from healthprobe.shutdown import GracefulShutdown

with warnings.catch_warnings():  # Starlette 1.x: "Using `httpx` with `starlette.testclient` is deprecated"
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

KEY = "healthprobe.registry"


def _which(request: Request) -> PlainTextResponse:
    """A route naming the registry it reaches, or the LookupError's message."""
    try:
        found = registry_of(request)
    except LookupError as exc:
        return PlainTextResponse(f"LookupError: {exc}", status_code=500)
    return PlainTextResponse(str(id(found)))


def get_registry(request: Request) -> HealthRegistry:
    """The FastAPI dependency of docs/frameworks/fastapi.md (module level, where FastAPI
    resolves the string annotations of this module)."""
    return registry_of(request)


def test_from_a_scope() -> None:
    registry = HealthRegistry()
    assert registry_of({"type": "http", "state": {KEY: registry, "other": 1}}) is registry


@pytest.mark.parametrize(
    "scope",
    [
        {"type": "http"},  # the server supports no lifespan state
        {"type": "http", "state": {}},  # no middleware put it there (no lifespan ran)
        {"type": "http", "state": {KEY: "not a registry"}},
        {"type": "http", "state": None},
    ],
    ids=["no-state", "empty-state", "not-a-registry", "state-none"],
)
def test_lookup_error_names_the_fix(scope: dict[str, Any]) -> None:
    with pytest.raises(LookupError, match=r"HealthMiddleware .*lifespan on \(not uvicorn --lifespan off"):
        registry_of(scope)


@pytest.mark.parametrize("with_shutdown", [False, True], ids=["plain", "shutdown"])
def test_outermost_middleware(with_shutdown: bool) -> None:
    """Wrapped outermost, with or without a coordinator (the lifespan takes another path
    with one): every request's ``scope["state"]`` holds the registry."""
    registry = HealthRegistry()
    shutdown = GracefulShutdown(registry) if with_shutdown else None
    app = HealthMiddleware(Starlette(routes=[Route("/which", _which)]), registry, shutdown=shutdown)
    with TestClient(app) as client:
        assert client.get("/which").text == str(id(registry))
        assert client.get("/readyz").status_code == 200


def test_fastapi_add_middleware_and_dependency() -> None:
    """FastAPI: HealthMiddleware added with ``add_middleware`` (built by Starlette at the
    first call), the registry handed to a route by a dependency; the app's own lifespan
    state is kept beside it."""
    registry = HealthRegistry()
    shutdown = GracefulShutdown(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"pool": "the pool"}

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(HealthMiddleware, registry=registry, shutdown=shutdown)

    @app.get("/checks")
    async def names(registry: Annotated[HealthRegistry, Depends(get_registry)], request: Request) -> dict[str, Any]:
        registry.add_check("added", lambda: True)  # at run time, from a route
        return {"pool": request.state.pool, "checks": [check.name for check in registry.checks]}

    with TestClient(app) as client:
        assert client.get("/checks").json() == {"pool": "the pool", "checks": ["added"]}
        assert client.get("/readyz/added").status_code == 200
        assert "/checks" in client.get("/openapi.json").json()["paths"]


def test_websocket() -> None:
    registry = HealthRegistry()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(str(id(registry_of(websocket))))
        await websocket.close()

    app = HealthMiddleware(Starlette(routes=[WebSocketRoute("/ws", endpoint)]), registry)
    with TestClient(app) as client, client.websocket_connect("/ws") as session:
        assert session.receive_text() == str(id(registry))


def test_innermost_wins_and_endpoints_give_their_registry() -> None:
    outer, inner = HealthRegistry(), HealthRegistry()
    app = Starlette(routes=[Route("/which", _which)])
    app.add_middleware(HealthMiddleware, registry=HealthEndpoints(inner))
    with TestClient(HealthMiddleware(app, outer)) as client:
        assert client.get("/which").text == str(id(inner))


def test_health_app_served_alone_shares_it() -> None:
    """A HealthApp that receives the lifespan (served as the application itself) puts its
    registry into the lifespan state too."""
    registry = HealthRegistry()
    state: dict[str, Any] = {}
    sent: list[MutableMapping[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> MutableMapping[str, Any]:
        return next(messages)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    anyio.run(HealthApp(registry), scope, receive, send)
    assert state == {KEY: registry}
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_mounted_health_app_alone_gives_no_registry() -> None:
    """Starlette's Mount passes no lifespan to a mounted HealthApp: the route gets the
    LookupError, whose message says why."""
    registry = HealthRegistry()
    app = Starlette(routes=[Route("/which", _which), Mount("/health", app=HealthApp(registry))])
    with TestClient(app) as client:
        assert client.get("/health/readyz").status_code == 200
        response = client.get("/which")
    assert response.status_code == 500
    assert "a mounted HealthApp never sees the lifespan" in response.text


def test_no_lifespan_no_registry() -> None:
    """TestClient outside ``with`` runs no lifespan, as ``uvicorn --lifespan off``."""
    app = HealthMiddleware(Starlette(routes=[Route("/which", _which)]), HealthRegistry())
    response = TestClient(app).get("/which")
    assert response.status_code == 500
    assert response.text.startswith("LookupError: no healthprobe registry in this request's scope['state']")


def test_requests_pass_unchanged() -> None:
    """Nothing is written into a request's scope: the registry reaches requests only through
    the server's copy of the lifespan state, at no cost per request."""
    registry = HealthRegistry()
    seen: list[dict[str, Any]] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(dict(scope))
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    middleware = HealthMiddleware(app, registry)
    http: dict[str, Any] = {"type": "http", "method": "GET", "path": "/orders", "headers": [], "query_string": b""}
    anyio.run(middleware, http, receive, send)
    assert seen == [{"type": "http", "method": "GET", "path": "/orders", "headers": [], "query_string": b""}]

    # A lifespan scope without state (a server without the feature) passes unchanged too.
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def lifespan_receive() -> MutableMapping[str, Any]:
        return next(messages)

    anyio.run(middleware, {"type": "lifespan"}, lifespan_receive, send)
    assert seen[1] == {"type": "lifespan"}
