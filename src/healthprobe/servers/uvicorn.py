"""uvicorn: stop a ``uvicorn.Server`` when the shutdown delay ends.

Programmatic use (the coordinator installs itself inside uvicorn's own signal capture)::

    shutdown = GracefulShutdown(registry)
    app = HealthMiddleware(app, registry, shutdown=shutdown)
    sys.exit(healthprobe.servers.uvicorn.run(uvicorn.Config(app, host="0.0.0.0", port=8080), shutdown))

Command line (``uvicorn module:app``) and gunicorn's uvicorn workers: wrapping the app in the
ASGI ``HealthMiddleware(app, registry, shutdown=shutdown)`` is enough. At lifespan startup, in
the serving process, the middleware installs the coordinator on top of
``uvicorn.Server.handle_exit``; when the delay ends the server is stopped by setting
``should_exit`` (not by calling ``handle_exit``, which would re-raise the signal once the
server returns and end the process with a non-zero status).

uvicorn then closes its listening sockets, closes idle keep-alive connections and waits for
open ones within ``timeout_graceful_shutdown`` (set to what is left of the drain bound when
unset), then sends the lifespan shutdown, where the middleware runs the cleanup hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator

import uvicorn

from ..shutdown import GracefulShutdown


def stopper(server: uvicorn.Server, shutdown: GracefulShutdown) -> Callable[[], None]:
    """How to stop ``server`` when the delay ends: bound its graceful wait by the drain
    bound left, then set ``should_exit`` (read by its main loop every 0.1 s)."""

    def stop() -> None:
        if server.config.timeout_graceful_shutdown is None:
            server.config.timeout_graceful_shutdown = max(1, round(shutdown.drain_remaining()))
        server.should_exit = True

    return stop


class Server(uvicorn.Server):
    """A ``uvicorn.Server`` whose signal handling is the coordinator's, chained to uvicorn's.

    Args:
        config: the ``uvicorn.Config`` (its app should be wrapped in the ASGI
            ``HealthMiddleware(..., shutdown=shutdown)`` to count in-flight requests).
        shutdown: the :class:`GracefulShutdown` of this process.
    """

    def __init__(self, config: uvicorn.Config, shutdown: GracefulShutdown) -> None:
        super().__init__(config)
        self.coordinator = shutdown

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            self.coordinator.install(stopper(self, self.coordinator))
            try:
                yield
            finally:
                self.coordinator.uninstall()


async def serve(config: uvicorn.Config, shutdown: GracefulShutdown, sockets: list[socket.socket] | None = None) -> int:
    """Serve ``config`` until shutdown completes; run the hooks if the lifespan did not.

    Returns:
        The exit code, 0 after a clean shutdown (a second signal exits the process at once).
    """
    await Server(config, shutdown).serve(sockets=sockets)
    return await shutdown.finish_async()


def run(config: uvicorn.Config, shutdown: GracefulShutdown) -> int:
    """Blocking form of :func:`serve` on a new asyncio event loop; returns the exit code."""
    return asyncio.run(serve(config, shutdown))
