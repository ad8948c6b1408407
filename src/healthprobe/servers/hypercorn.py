"""hypercorn (asyncio): stop serving through hypercorn's ``shutdown_trigger``.

::

    shutdown = GracefulShutdown(registry)
    app = HealthMiddleware(app, registry, shutdown=shutdown)
    sys.exit(asyncio.run(healthprobe.servers.hypercorn.serve(app, config, shutdown)))

Given a shutdown trigger, hypercorn installs no signal handler of its own; the coordinator's
handlers are installed for the duration of :func:`serve`. When the delay ends the trigger
returns: hypercorn closes its listening sockets, waits for open connections within
``graceful_timeout`` (set to the coordinator's drain bound), then sends the lifespan
shutdown, where the middleware runs the cleanup hooks.
"""

from __future__ import annotations

from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from ..shutdown import GracefulShutdown


async def serve(app: Any, config: Config, shutdown: GracefulShutdown) -> int:
    """Serve the ASGI ``app`` with hypercorn until shutdown completes.

    Args:
        app: the ASGI application, normally wrapped in ``HealthMiddleware(shutdown=shutdown)``.
        config: a ``hypercorn.config.Config``; its ``graceful_timeout`` is set to
            ``shutdown.drain_timeout`` seconds.
        shutdown: the :class:`GracefulShutdown` of this process.

    Returns:
        The exit code, 0 after a clean shutdown. Must run in the main thread.
    """
    config.graceful_timeout = shutdown.drain_timeout
    shutdown.install(stop=lambda: None)
    try:
        await hypercorn_serve(app, config, shutdown_trigger=shutdown.wait_stopping)
    finally:
        shutdown.uninstall()
    return await shutdown.finish_async()
