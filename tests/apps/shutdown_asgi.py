"""A Starlette app for the shutdown tests: ``/`` answers at once, ``/slow`` after 2 s (or
``?seconds=N``), ``/ws`` a WebSocket that answers each text message ``echo: <text>``.

Run by the tests as ``uvicorn tests.apps.shutdown_asgi:app`` (``--workers 2`` too), under
gunicorn's uvicorn workers, or programmatically:
``python -m tests.apps.shutdown_asgi uvicorn|uvicorn-plain|uvicorn-workers|hypercorn PORT``.
Timings come from the environment: ``HP_DELAY``, ``HP_DRAIN``, ``HP_HOOK_TIMEOUT``,
``HP_REPEAT_WINDOW`` (seconds); ``HP_NO_HANG_HOOK=1`` leaves out the ``cleanup_hang`` hook;
``HP_GUARD_TOKEN`` guards the probes' details and serves the admin request with that token.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from healthprobe import HealthRegistry
from healthprobe.asgi import HealthMiddleware

from . import coordinator, echo_session, guard_options, repeat_window

registry = HealthRegistry()
shutdown = coordinator(registry)


async def cleanup_hang() -> None:
    await anyio.sleep(3600)


if os.environ.get("HP_NO_HANG_HOOK") != "1":
    shutdown.hook(cleanup_hang)


@shutdown.hook
async def cleanup_sleep() -> None:
    print(f"cleanup_sleep start {os.getpid()} {time.time():.3f}", flush=True)
    await anyio.sleep(0.5)
    print(f"cleanup_sleep done in {os.getpid()}", flush=True)


async def fast(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"ok {os.getpid()}")


async def slow(request: Request) -> PlainTextResponse:
    await anyio.sleep(float(request.query_params.get("seconds", "2.0")))
    return PlainTextResponse(f"slow ok {os.getpid()}")


app = HealthMiddleware(
    Starlette(routes=[Route("/", fast), Route("/slow", slow), WebSocketRoute("/ws", echo_session)]),
    registry,
    shutdown=shutdown,
    **guard_options(),
)


if __name__ == "__main__":
    server, port = sys.argv[1], int(sys.argv[2])
    if server == "uvicorn-plain":
        # Installed before uvicorn installs its own handlers: the lifespan startup of the
        # middleware installs the coordinator again, on top of uvicorn's.
        import uvicorn

        shutdown.install()
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info")).run()
        sys.exit(shutdown.exit_code)
    elif server == "uvicorn-workers":
        # Two worker processes under healthprobe's supervisor; each imports the app itself.
        import uvicorn

        from healthprobe.servers.uvicorn import run_workers

        config = uvicorn.Config("tests.apps.shutdown_asgi:app", host="127.0.0.1", port=port, workers=2)
        sys.exit(run_workers(config, repeat_window=repeat_window()))
    elif server == "uvicorn":
        import uvicorn

        from healthprobe.servers.uvicorn import run

        sys.exit(run(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info"), shutdown))
    else:
        from hypercorn.config import Config

        from healthprobe.servers.hypercorn import serve

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        sys.exit(asyncio.run(serve(app, config, shutdown)))
