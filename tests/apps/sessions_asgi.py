"""A Starlette app with long-lived connections, for the shutdown tests of WebSocket sessions
and streamed responses.

* ``/ws``: a WebSocket that answers each text message with ``echo: <text>`` until the client
  closes;
* ``/events``: a server-sent event stream, a ``tick`` every 0.1 s, that ends by itself with
  ``bye`` once the shutdown delay is over (``await shutdown.wait_stopping()``), as an app
  ends its own streams early;
* ``/ticks``: the same stream, ending only when the client goes away.

Run as ``uvicorn tests.apps.sessions_asgi:app`` or ``python -m tests.apps.sessions_asgi
hypercorn|hypercorn-trio PORT``. Timings from ``HP_DELAY``, ``HP_DRAIN``, ``HP_HOOK_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from healthprobe import HealthRegistry
from healthprobe.asgi import HealthMiddleware

from . import coordinator, echo_session

registry = HealthRegistry()
shutdown = coordinator(registry)


@shutdown.hook
async def cleanup() -> None:
    print(f"cleanup done in {os.getpid()}", flush=True)


async def echo(websocket: WebSocket) -> None:
    code = await echo_session(websocket)
    print(f"ws ended with {code}", flush=True)


async def _ticks(until_stopping: bool) -> AsyncIterator[str]:
    while not (until_stopping and shutdown.is_stopping):
        yield "data: tick\n\n"
        with anyio.move_on_after(0.1):
            if until_stopping:
                await shutdown.wait_stopping()
            else:
                await anyio.sleep_forever()
    yield "data: bye\n\n"


async def events(request: Request) -> StreamingResponse:
    return StreamingResponse(_ticks(until_stopping=True), media_type="text/event-stream")


async def ticks(request: Request) -> StreamingResponse:
    return StreamingResponse(_ticks(until_stopping=False), media_type="text/event-stream")


app = HealthMiddleware(
    Starlette(routes=[WebSocketRoute("/ws", echo), Route("/events", events), Route("/ticks", ticks)]),
    registry,
    shutdown=shutdown,
)


if __name__ == "__main__":
    from hypercorn.config import Config

    from healthprobe.servers.hypercorn import serve

    config = Config()
    config.bind = [f"127.0.0.1:{int(sys.argv[2])}"]
    if sys.argv[1] == "hypercorn-trio":
        import trio

        sys.exit(trio.run(serve, app, config, shutdown))
    sys.exit(asyncio.run(serve(app, config, shutdown)))
