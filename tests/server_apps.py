"""Applications that test_servers.py serves with real servers (uvicorn, hypercorn, waitress
as processes; werkzeug in a thread).

Each registry has a sync check that blocks forever, a check that raises an exception whose
text must never reach a body, and passing checks. The ASGI app has a lifespan (its state is
served at ``/lifespan`` and written to ``$HEALTHPROBE_TEST_LIFESPAN_FILE`` at shutdown) and a
websocket echo route, all behind :class:`healthprobe.asgi.HealthMiddleware`, with
:class:`healthprobe.asgi.HealthApp` also mounted at ``/health``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from healthprobe import HealthRegistry
from healthprobe import asgi as hp_asgi
from healthprobe import wsgi as hp_wsgi

from .apps import CheckSpec, started_registry

#: Deadline of the hanging check, in seconds.
HANG_TIMEOUT = 0.5
SECRET = "password=hunter2"


def _broken() -> None:
    raise ConnectionRefusedError(f"connect to db.internal:5432 failed, {SECRET}")


def build_registry(hang: threading.Event | None = None) -> HealthRegistry:
    """A started registry: ``hang`` (blocks on ``hang``, forever by default), ``broken``
    (raises), ``db`` (readiness and liveness) and ``heart`` (liveness), no result cache."""
    checks: dict[str, CheckSpec] = {
        "hang": ((hang or threading.Event()).wait, {"timeout": HANG_TIMEOUT}),
        "broken": _broken,
        "db": (lambda: True, {"probes": ["readiness", "liveness"]}),
        "heart": (lambda: True, {"probes": ["liveness"]}),
    }
    return started_registry(checks, default_cache_ttl=0)


# -- ASGI ------------------------------------------------------------------------------------

_lifespan_state = {"state": "not started"}


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    _lifespan_state["state"] = "started"
    yield
    _lifespan_state["state"] = "stopped"
    target = os.environ.get("HEALTHPROBE_TEST_LIFESPAN_FILE")
    if target:
        await anyio.Path(target).write_text("stopped")


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def _lifespan_route(request: Request) -> PlainTextResponse:
    return PlainTextResponse(_lifespan_state["state"])


def _healthprobe_threads() -> int:
    """healthprobe's own threads in this process (check threads, the shutdown coordinator's):
    what probes could make grow; the server's request threads, which come and go with each
    request (Werkzeug starts one per request), are not counted."""
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("healthprobe"))


async def _threads(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(_healthprobe_threads()))


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(f"echo: {text}")
    await websocket.close()


def build_asgi_app(registry: HealthRegistry) -> Any:
    inner = Starlette(
        routes=[
            Route("/", _hello),
            Route("/lifespan", _lifespan_route),
            Route("/threads", _threads),
            WebSocketRoute("/ws", _echo),
            Mount("/health", app=hp_asgi.HealthApp(registry)),
        ],
        lifespan=_lifespan,
    )
    return hp_asgi.HealthMiddleware(inner, registry)


# -- WSGI ------------------------------------------------------------------------------------


@WerkzeugRequest.application  # type: ignore[arg-type]
def _wsgi_inner(request: WerkzeugRequest) -> WerkzeugResponse:
    if request.path == "/threads":
        return WerkzeugResponse(str(_healthprobe_threads()))
    return WerkzeugResponse("hello")


def build_wsgi_app(registry: HealthRegistry) -> Any:
    mounted = DispatcherMiddleware(_wsgi_inner, {"/health": hp_wsgi.HealthApp(registry)})
    return hp_wsgi.HealthMiddleware(mounted, registry)


#: The apps that server processes serve (``tests.server_apps:asgi_app`` and ``:wsgi_app``).
asgi_app = build_asgi_app(build_registry())
wsgi_app = build_wsgi_app(build_registry())


def command(server: str, port: int, *extra: str) -> list[str]:
    """The command line serving this module's app on a loopback ``port``: ``asgi_app`` under
    uvicorn or hypercorn, ``wsgi_app`` under waitress, gunicorn or Werkzeug's ``make_server``
    (:func:`healthprobe.testing.server_command`, imported here only: server processes import
    this module without pytest)."""
    from healthprobe.testing import server_command

    defaults = {
        "uvicorn": ["--lifespan", "on", "--ws", "wsproto", "--no-access-log"],
        "waitress": ["--threads=4"],
        "gunicorn": ["--workers", "1"],
    }
    app = "tests.server_apps:asgi_app" if server in ("uvicorn", "hypercorn") else "tests.server_apps:wsgi_app"
    return server_command(app, server, port, args=[*defaults.get(server, []), *extra])
