"""Apps the probe-server tests run as real server processes (never imported by the tests).

``sync_app``: a WSGI app for gunicorn's sync worker whose ``/work`` keeps its only worker busy
for ``WORK_SECONDS``; the standalone probe server is started in the worker process.

``asgi_app``: a Starlette app whose ``/block`` blocks the event loop with ``time.sleep`` for
``BLOCK_SECONDS``; ``event_loop_lag`` samples the loop and the probe server reads it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import healthprobe
from healthprobe import checks

from .apps import started_registry

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PROBE_PORT = int(os.environ.get("PROBE_PORT", "0"))


def sync_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/work":
        time.sleep(float(os.environ.get("WORK_SECONDS", "10")))
        body = b"worked\n"
    else:
        body = b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def asgi_app() -> Any:
    """Factory (``uvicorn --factory tests.probe_apps:asgi_app``)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from healthprobe.asgi import HealthMiddleware

    registry = healthprobe.HealthRegistry(default_cache_ttl=0.0)
    lag = checks.event_loop_lag(float(os.environ.get("MAX_LAG", "0.5")))
    registry.add_check("event-loop", lag, probes=["liveness"])

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        lag.start()
        server = healthprobe.serve(registry, "127.0.0.1", PROBE_PORT)
        registry.mark_started()
        yield
        registry.mark_stopped()  # stops the probe server
        lag.stop()
        assert not server.running

    async def block(request: Any) -> PlainTextResponse:
        time.sleep(float(os.environ.get("BLOCK_SECONDS", "3")))  # noqa: ASYNC251 - the bug being caught
        return PlainTextResponse("unblocked\n")

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello\n")

    app = Starlette(routes=[Route("/block", block), Route("/", hello)], lifespan=lifespan)
    return HealthMiddleware(app, registry)


if PROBE_PORT and os.environ.get("PROBE_APP") == "sync":
    # Imported in gunicorn's worker process (no --preload): one probe server per worker.
    disk = checks.disk("/", min_free_ratio=0.0001)
    SERVER = healthprobe.serve(
        started_registry({"disk": (disk, {"probes": ["readiness", "liveness"]})}), "127.0.0.1", PROBE_PORT
    )
