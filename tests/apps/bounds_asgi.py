"""A Starlette app for the tests of the shutdown bounds (tests/test_shutdown_bounds.py):
``uvicorn tests.apps.bounds_asgi:app``, or ``python -m tests.apps.bounds_asgi PORT`` to serve
it with ``healthprobe.servers.hypercorn.serve``.

``/`` answers at once; ``/slow?seconds=N`` prints ``slow start <pid>`` as it begins, then
answers after ``N`` seconds (2 by default). Its cleanup hook sleeps 0.5 s and prints
``cleanup ran in <pid>``; with ``HP_LEFTOVER`` it also leaves something running that does
not end:

* ``task``: an asyncio task that swallows its cancellation in a loop (as some client
  libraries do), so ``asyncio.run`` waits for it for ever once the server returns;
* ``thread``: a non-daemon thread that never ends, which the interpreter waits for at exit.

Timings come from the environment as for the other shutdown apps (``HP_DELAY``,
``HP_DRAIN``, ``HP_HOOK_TIMEOUT``, in seconds).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from healthprobe import HealthRegistry
from healthprobe.asgi import HealthMiddleware

from . import coordinator

registry = HealthRegistry()
shutdown = coordinator(registry)
_left: list[object] = []  # a reference, so that nothing collects what is left running


async def stubborn() -> None:
    """Swallow every cancellation and go on waiting."""
    while True:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            continue


@shutdown.hook
async def cleanup() -> None:
    await anyio.sleep(0.5)
    what = os.environ.get("HP_LEFTOVER")
    if what == "task":
        _left.append(asyncio.get_running_loop().create_task(stubborn(), name="stubborn"))
    elif what == "thread":
        thread = threading.Thread(target=threading.Event().wait, name="never-ends", daemon=False)
        thread.start()
        _left.append(thread)
    print(f"cleanup ran in {os.getpid()}" + (f", leaving a {what} running" if what else ""), flush=True)


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"ok {os.getpid()}")


async def slow(request: Request) -> PlainTextResponse:
    print(f"slow start {os.getpid()}", flush=True)
    await anyio.sleep(float(request.query_params.get("seconds", "2")))
    return PlainTextResponse(f"slow ok {os.getpid()}")


app = HealthMiddleware(Starlette(routes=[Route("/", home), Route("/slow", slow)]), registry, shutdown=shutdown)


if __name__ == "__main__":
    from hypercorn.config import Config

    from healthprobe.servers.hypercorn import serve

    config = Config()
    config.bind = [f"127.0.0.1:{int(sys.argv[1])}"]
    sys.exit(asyncio.run(serve(app, config, shutdown)))
