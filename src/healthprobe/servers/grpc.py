"""gRPC: serve a ``grpc.server`` or a ``grpc.aio.server`` until shutdown completes.

A thread-pool server (``grpc.server``)::

    registry = HealthRegistry()
    shutdown = GracefulShutdown(registry)
    server = grpc.server(ThreadPoolExecutor(max_workers=16), interceptors=[InFlightInterceptor(shutdown)])
    healthprobe.grpc.add_to_server(server, registry)
    my_pb2_grpc.add_MyServiceServicer_to_server(MyService(), server)
    server.add_insecure_port("0.0.0.0:50051")
    sys.exit(healthprobe.servers.grpc.serve(server, shutdown))

An asyncio server (``grpc.aio.server``)::

    async def main() -> int:
        server = grpc.aio.server(interceptors=[AioInFlightInterceptor(shutdown)])
        healthprobe.grpc.add_to_server(server, registry)
        my_pb2_grpc.add_MyServiceServicer_to_server(MyService(), server)
        server.add_insecure_port("0.0.0.0:50051")
        return await healthprobe.servers.grpc.serve_async(server, shutdown)

    sys.exit(asyncio.run(main()))

gRPC servers install no signal handler of their own (``SIGTERM`` would end the process at
once): :func:`serve` and :func:`serve_async` install the coordinator's, with :func:`control`
telling it how to stop the server. On ``SIGTERM`` (or ``SIGINT``):

* at once, the readiness services of :mod:`healthprobe.grpc` (``""`` and ``"readiness"``)
  answer ``NOT_SERVING``, while ``"liveness"`` stays ``SERVING``: the kubelet takes the pod
  out of the Service's endpoints without restarting it, and clients that health-check with
  ``Watch`` move their traffic elsewhere;
* for the delay, the server serves every RPC as before;
* when the delay ends, ``server.stop(grace)``: per grpcio's ``Server.stop``, the server
  stops servicing new RPCs at once (gRPC's core closes its listening sockets and sends
  ``GOAWAY`` on open connections, so clients reconnect elsewhere) while the RPCs in flight
  go on; ``grace`` is what is left of the drain bound plus :data:`FLUSH_TIMEOUT`, so that
  gRPC's own abort at its end is only a backstop;
* once the RPCs the in-flight interceptors count have ended, the server has
  :data:`FLUSH_TIMEOUT` seconds to terminate by itself; RPCs still open then, which the
  interceptors do not count (a ``Health/Watch`` stream ends only when its client or the
  server ends it), are cancelled (``server.stop(0)``). At the drain bound, the RPCs still
  running are cancelled at once (the log says how many were left);
* the server terminated, the cleanup hooks run, the registry is marked stopped and the
  process exits 0.

Count the application's RPCs in flight with :class:`healthprobe.grpc.InFlightInterceptor`
(or :class:`healthprobe.grpc.AioInFlightInterceptor`), as above: without it the drain has
nothing to wait for, and RPCs still running at the end of the delay have
:data:`FLUSH_TIMEOUT` seconds to end before they are cancelled.

Set ``options=[("grpc.so_reuseport", 0)]`` on the server when a port must not be shared:
gRPC sets ``SO_REUSEPORT`` on Linux by default, so a second server binds a port in use
without an error and the kernel shares its connections between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import typing

import anyio

from .. import _extras
from .. import shutdown as _shutdown

with _extras.requires("grpc", __name__):
    import grpc
    import grpc.aio

if typing.TYPE_CHECKING:
    import concurrent.futures
    from typing import Any

    from ..shutdown import GracefulShutdown, ServerControl

__all__ = ["FLUSH_TIMEOUT", "control", "serve", "serve_async"]

#: Seconds the server has, once the drain is over, to send the last responses of the RPCs it
#: drained and terminate by itself, before the RPCs still open (``Health/Watch`` streams,
#: RPCs no interceptor counts) are cancelled.
FLUSH_TIMEOUT = 1.0


def control(server: Any, shutdown: GracefulShutdown) -> ServerControl:
    """How the coordinator drives ``server`` through the shutdown sequence (see the module
    documentation), for ``shutdown.install(control=...)``.

    Args:
        server: a ``grpc.server(...)`` (``grpc.Server``), or a ``grpc.aio.server(...)``
            (``grpc.aio.Server``); for the latter, call this on the event loop that serves
            it: its stop is scheduled there (``asyncio.run_coroutine_threadsafe``) from the
            coordinator's thread.
        shutdown: the :class:`GracefulShutdown` of this process.

    Returns:
        A :class:`ServerControl` named ``"grpc"`` (thread-pool server) or ``"grpc.aio"``:
        ``stop`` calls ``server.stop(grace)`` with ``grace`` the seconds left of the drain
        bound (:meth:`GracefulShutdown.drain_remaining`) plus :data:`FLUSH_TIMEOUT`, and
        returns at once; ``release`` (once the coordinator's drain is over) waits up to
        :data:`FLUSH_TIMEOUT` seconds for the server to terminate, or not at all when
        counted RPCs are still in flight (the drain bound was reached), then cancels the
        RPCs still open (``server.stop(0)``).

    Raises:
        TypeError: ``server`` is neither a ``grpc.Server`` nor a ``grpc.aio.Server``.
        RuntimeError: ``server`` is a ``grpc.aio.Server`` and no event loop runs in this
            thread.
    """
    if isinstance(server, grpc.aio.Server):
        return _aio_control(server, shutdown)
    if isinstance(server, grpc.Server):
        return _sync_control(server, shutdown)
    raise TypeError(f"control() needs a grpc.Server or a grpc.aio.Server, got {type(server).__name__}")


def _sync_control(server: grpc.Server, shutdown: GracefulShutdown) -> ServerControl:
    terminated: list[threading.Event] = []

    def stop() -> None:
        # With a grace, grpcio's stop returns at once (a thread of its own aborts what is
        # left when the grace runs out); the event it returns is set once the server has
        # terminated.
        terminated.append(server.stop(_grace(shutdown)))

    def release() -> None:
        if shutdown.in_flight or not terminated or not terminated[0].wait(FLUSH_TIMEOUT):
            server.stop(0)  # cancels every RPC still open, and returns at once

    return _shutdown.ServerControl("grpc", stop, release)


def _aio_control(server: grpc.aio.Server, shutdown: GracefulShutdown) -> ServerControl:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "healthprobe.servers.grpc.control() for a grpc.aio server must be called on the event loop that serves it"
        ) from None
    stopping: list[concurrent.futures.Future[None]] = []

    def stop() -> None:
        # grpc.aio's stop(grace) returns once the server has terminated: scheduled on the
        # server's loop, it is waited for by release().
        stopping.append(asyncio.run_coroutine_threadsafe(server.stop(_grace(shutdown)), loop))

    def release() -> None:
        if stopping and not shutdown.in_flight:
            with contextlib.suppress(TimeoutError):
                stopping[0].result(FLUSH_TIMEOUT)
                return
        # A smaller grace than the one in course stops the server sooner (grpc.aio's
        # Server.stop): every RPC still open is cancelled now.
        asyncio.run_coroutine_threadsafe(server.stop(0), loop)

    return _shutdown.ServerControl("grpc.aio", stop, release)


def _grace(shutdown: GracefulShutdown) -> float:
    """The grace given to ``server.stop``: what is left of the drain bound, and
    :data:`FLUSH_TIMEOUT` more, so that the coordinator's bound comes first and ``release``
    cancels there what is still running (logged as such), gRPC's own abort being the
    backstop."""
    return shutdown.drain_remaining() + FLUSH_TIMEOUT


def serve(server: grpc.Server, shutdown: GracefulShutdown) -> int:
    """Serve with a thread-pool ``grpc.server`` until shutdown completes.

    Installs the coordinator's signal handlers with :func:`control`, starts ``server``
    unless it was started already, waits until it has terminated (the coordinator stops
    it when the delay ends), then runs :meth:`GracefulShutdown.finish`: the drain's end,
    the cleanup hooks, the registry marked stopped.

    Args:
        server: a ``grpc.server(...)`` with its ports added, its servicers registered
            (:func:`healthprobe.grpc.add_to_server` among them) and, to count the RPCs in
            flight, :class:`healthprobe.grpc.InFlightInterceptor` among its interceptors.
        shutdown: the :class:`GracefulShutdown` of this process.

    Returns:
        The exit code, 0 after a clean shutdown (a second signal exits the process at once
        with ``128 + signal number``). Must run in the main thread, the only one where
        signal handlers can be installed; elsewhere, only :meth:`GracefulShutdown.begin`
        begins the shutdown.

    Raises:
        TypeError: ``server`` is not a ``grpc.Server`` (a ``grpc.aio.Server`` is served by
            :func:`serve_async`).
    """
    if isinstance(server, grpc.aio.Server) or not isinstance(server, grpc.Server):
        raise TypeError(
            f"serve() needs a grpc.Server (grpc.server(...)), got {type(server).__name__}"
            + ("; serve a grpc.aio server with serve_async()" if isinstance(server, grpc.aio.Server) else "")
        )
    shutdown.install(control=control(server, shutdown))
    try:
        with contextlib.suppress(ValueError):  # grpcio: "Cannot start already-started server!"
            server.start()
        server.wait_for_termination()  # wakes every 0.1 s: the signal handler runs meanwhile
    except BaseException:
        shutdown.uninstall()
        raise
    return shutdown.finish()


async def serve_async(server: grpc.aio.Server, shutdown: GracefulShutdown) -> int:
    """Serve with a ``grpc.aio.server`` on the running asyncio event loop until shutdown
    completes: :func:`serve` for asyncio, ending with
    :meth:`GracefulShutdown.finish_async` (async cleanup hooks are awaited on this loop).

    Args:
        server: a ``grpc.aio.server(...)`` with its ports added, its servicers registered
            (:func:`healthprobe.grpc.add_to_server` among them) and, to count the RPCs in
            flight, :class:`healthprobe.grpc.AioInFlightInterceptor` among its
            interceptors; started here unless it was already.
        shutdown: the :class:`GracefulShutdown` of this process.

    Returns:
        The exit code, 0 after a clean shutdown. Must run in the main thread
        (``asyncio.run(main())``). If the task running it is cancelled, the server stops
        and its RPCs are cancelled (``server.stop(0)``, waited for up to ``hook_timeout``
        seconds), the cleanup hooks run (shielded, each bounded by ``hook_timeout``) and
        the cancellation goes on.

    Raises:
        TypeError: ``server`` is not a ``grpc.aio.Server``.
        asyncio.CancelledError: the task was cancelled (after the hooks ran).
    """
    if not isinstance(server, grpc.aio.Server):
        raise TypeError(f"serve_async() needs a grpc.aio.Server (grpc.aio.server(...)), got {type(server).__name__}")
    shutdown.install(control=control(server, shutdown))
    try:
        await server.start()
        # Shielded: grpc.aio's wait_for_termination() awaits the server's own "shutdown
        # completed" future, which a cancellation of this task would cancel too, and every
        # later server.stop() would then raise CancelledError.
        await asyncio.shield(server.wait_for_termination())
    except asyncio.CancelledError:
        with anyio.move_on_after(shutdown.hook_timeout, shield=True):
            await server.stop(0)
        await shutdown.finish_cancelled()
        raise
    except BaseException:
        shutdown.uninstall()
        raise
    return await shutdown.finish_async()
