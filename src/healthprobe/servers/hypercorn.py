"""hypercorn (asyncio or trio): stop serving through hypercorn's ``shutdown_trigger``.

::

    shutdown = GracefulShutdown(registry)
    app = HealthMiddleware(app, registry, shutdown=shutdown)
    sys.exit(asyncio.run(healthprobe.servers.hypercorn.serve(app, config, shutdown)))
    # or, under trio:
    sys.exit(trio.run(healthprobe.servers.hypercorn.serve, app, config, shutdown))

Given a shutdown trigger, hypercorn installs no signal handler of its own; the coordinator's
handlers are installed for the duration of :func:`serve`. When the delay ends the trigger
returns: hypercorn closes its listening sockets and waits for open connections within
``graceful_timeout`` (set above the coordinator's drain bound, so that the drain, and the
closing of WebSocket sessions still open at its bound, come first), then sends the lifespan
shutdown, where the middleware runs the cleanup hooks.

The ``hypercorn`` command line runs the application in worker processes that their parent
stops at once, without the delay: the middleware then logs a WARNING naming the fix. With
``hypercorn --workers 0`` the application runs in the process that gets the signal, and the
middleware takes hypercorn's handlers over (asyncio; under ``-k trio`` trio's Ctrl-C handler
is what stops hypercorn when the delay ends).
"""

from __future__ import annotations

import asyncio
import typing

import anyio

from .. import _extras
from .. import shutdown as _shutdown

with _extras.requires("hypercorn", __name__):
    import hypercorn.config

if typing.TYPE_CHECKING:
    from typing import Any

    from ..shutdown import GracefulShutdown

__all__ = ["serve"]


async def serve(app: Any, config: hypercorn.config.Config, shutdown: GracefulShutdown) -> int:
    """Serve the ASGI ``app`` with hypercorn until shutdown completes, under asyncio
    (``hypercorn.asyncio.serve``) or trio (``hypercorn.trio.serve``), whichever runs it.

    Args:
        app: the ASGI application, normally wrapped in ``HealthMiddleware(shutdown=shutdown)``.
        config: a ``hypercorn.config.Config``; its ``graceful_timeout`` is raised to
            ``shutdown.drain_timeout`` + 2 s when lower.
        shutdown: the :class:`GracefulShutdown` of this process.

    Returns:
        The exit code, 0 after a clean shutdown. Must run in the main thread. If the task
        running it is cancelled, the cleanup hooks still run (shielded, each bounded by
        ``hook_timeout``) and the cancellation goes on.
    """
    config.graceful_timeout = max(config.graceful_timeout, shutdown.drain_timeout + _shutdown.SESSION_CLOSE_WAIT + 1.0)
    if _backend() == "trio":
        from hypercorn.trio import serve as serve_trio

        serving = serve_trio(app, config, shutdown_trigger=shutdown.wait_stopping)
    else:
        from hypercorn.asyncio import serve as serve_asyncio

        serving = serve_asyncio(app, config, shutdown_trigger=shutdown.wait_stopping)
    shutdown.install(stop=lambda: None)  # the trigger above returns when the delay ends
    try:
        await serving
    except anyio.get_cancelled_exc_class():
        await shutdown.finish_cancelled()
        raise
    finally:
        shutdown.uninstall()
    return await shutdown.finish_async()


def _backend() -> str:
    """``"asyncio"`` or ``"trio"``: the async library running the caller."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "trio"
    return "asyncio"
