"""uvicorn: stop a ``uvicorn.Server`` when the shutdown delay ends.

Programmatic use (the coordinator installs itself inside uvicorn's own signal capture)::

    shutdown = GracefulShutdown(registry)
    app = HealthMiddleware(app, registry, shutdown=shutdown)
    sys.exit(healthprobe.servers.uvicorn.run(uvicorn.Config(app, host="0.0.0.0", port=8080), shutdown))

Command line (``uvicorn module:app``, ``--lifespan off`` too) and gunicorn's uvicorn workers:
wrapping the app in the ASGI ``HealthMiddleware(app, registry, shutdown=shutdown)`` is enough.
At lifespan startup (or the first request, without a lifespan), in the serving process, the
middleware installs the coordinator on top of ``uvicorn.Server.handle_exit``, and
:func:`control` tells it how to stop that server: when the delay ends, the listening sockets
are closed (open requests, streams and WebSocket sessions go on); once they have ended (or at
the drain bound, where WebSocket sessions still open are closed with code 1001) ``should_exit``
is set. uvicorn then closes idle keep-alive connections, waits for what is left within
``timeout_graceful_shutdown`` and sends the lifespan shutdown, where the middleware runs the
cleanup hooks (without a lifespan they run right after it).

Worker processes (``uvicorn module:app --workers N``): each worker is such a command-line
server, and the middleware is enough there too. The signal goes to uvicorn's supervisor,
which as of uvicorn 0.54 (``uvicorn/supervisors/multiprocess.py``) only queues it in its
handler and reads the queue every 0.5 s; it then sends ``SIGTERM`` to every worker, joins
each without a timeout, and exits 0 whatever the workers' exit statuses. Signals that arrive
after that are queued and never read, and its copy of the listening socket stays open until
it exits. :func:`run_workers` runs the workers under :class:`Supervisor` instead, which
passes the signal on at once, acts on a second one, and exits with the workers' status::

    # serve.py, run as the container's command: python serve.py
    if __name__ == "__main__":
        config = uvicorn.Config("app:app", host="0.0.0.0", port=8080, workers=4)
        sys.exit(healthprobe.servers.uvicorn.run_workers(config))
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import socket
import threading
import time
import typing

from .. import _extras, _signals

with _extras.requires("uvicorn", __name__):
    import uvicorn
    import uvicorn.supervisors

from .. import logs
from .. import shutdown as _shutdown

if typing.TYPE_CHECKING:
    from collections.abc import Generator
    from types import FrameType
    from typing import Any

    from ..shutdown import GracefulShutdown, ServerControl

__all__ = ["Server", "Supervisor", "control", "run", "run_workers", "serve"]

_logger = logging.getLogger("healthprobe.shutdown")


def control(server: uvicorn.Server, shutdown: GracefulShutdown) -> ServerControl:
    """How the coordinator drives ``server``: given by :class:`Server`, or built when the
    coordinator finds the server's ``handle_exit`` handler (``uvicorn module:app``,
    gunicorn's uvicorn workers).

    When the delay ends, the server's listening sockets are closed on its event loop: it
    accepts no new connection, while open requests, streams and WebSocket sessions go on
    (uvicorn's own shutdown would close WebSocket sessions at once, with code 1012). Once the
    coordinator's drain is over, ``should_exit`` is set (read by uvicorn's main loop every
    0.1 s; not ``handle_exit``, which would re-raise the signal once the server returns and
    end the process with a non-zero status), with ``timeout_graceful_shutdown``, when unset,
    set to what is left of the drain bound (at least 0.1 s): uvicorn cancels what still runs
    then.

    Without an ASGI lifespan (``--lifespan off``) the cleanup hooks run on the server's
    event loop right after uvicorn's own lifespan shutdown step. Under ``--reload`` (a
    development reloader) the coordinator skips its delay.
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None

    def stop() -> None:
        if loop is not None:
            loop.call_soon_threadsafe(_close_listeners, server)

    def release() -> None:
        if server.config.timeout_graceful_shutdown is None:
            # uvicorn hands it to asyncio.wait_for, which takes any number of seconds.
            left = max(0.1, shutdown.drain_remaining())
            server.config.timeout_graceful_shutdown = left  # type: ignore[assignment]
        server.should_exit = True

    if not shutdown.lifespan_seen:
        _finish_after_lifespan(server, shutdown)
    return _shutdown.ServerControl("uvicorn", stop, release, development=bool(server.config.reload))


def _close_listeners(server: uvicorn.Server) -> None:
    for listener in getattr(server, "servers", ()):
        listener.close()


def _finish_after_lifespan(server: uvicorn.Server, shutdown: GracefulShutdown) -> None:
    # uvicorn awaits server.lifespan.shutdown() after its drain whether or not the app has a
    # lifespan (LifespanOff's does nothing): the hooks run there, on the server's loop.
    lifespan = getattr(server, "lifespan", None)
    if lifespan is None:
        return
    shutdown_step = lifespan.shutdown

    async def shutdown_then_finish() -> None:
        await shutdown_step()
        await shutdown.finish_async()

    lifespan.shutdown = shutdown_then_finish


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
            if threading.current_thread() is threading.main_thread():
                # This server's own stop, not one recognised from its handle_exit.
                self.coordinator.install(control=control(self, self.coordinator))
            else:
                self.coordinator.install()  # signal handlers can only be installed in the main thread
            try:
                yield
            finally:
                self.coordinator.uninstall()


def _nodelay(sockets: list[socket.socket]) -> None:
    """Set ``TCP_NODELAY`` on the TCP listening sockets of ``sockets``; the connections they
    accept inherit it (Linux, the BSDs, macOS).

    asyncio sets it on an accepted connection only when the listening socket object was
    created with ``proto=IPPROTO_TCP`` (``asyncio.base_events._set_nodelay``), as uvicorn's
    own ``Config.bind_socket`` does; a socket made with ``socket.socket(AF_INET,
    SOCK_STREAM)`` has ``proto`` 0, and every response after the first on a kept-alive
    connection then waits about 40 ms for the client's delayed ACK (Nagle's algorithm,
    RFC 896).
    """
    for sock in sockets:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def serve(config: uvicorn.Config, shutdown: GracefulShutdown, sockets: list[socket.socket] | None = None) -> int:
    """Serve ``config`` until shutdown completes; run the hooks if the lifespan did not.

    If the task running it is cancelled (an embedding program's Ctrl-C, a task group that
    ends), the cleanup hooks still run, shielded and each bounded by ``hook_timeout``, and
    the cancellation goes on.

    ``sockets``, listening sockets bound by the caller, get ``TCP_NODELAY`` (inherited by
    the connections they accept), whatever ``proto`` they were created with.

    Returns:
        The exit code, 0 after a clean shutdown (a second signal exits the process at once).

    Raises:
        asyncio.CancelledError: the task was cancelled (after the hooks ran).
    """
    if sockets is not None:
        _nodelay(sockets)
    try:
        await Server(config, shutdown).serve(sockets=sockets)
    except asyncio.CancelledError:
        await shutdown.finish_cancelled()
        raise
    return await shutdown.finish_async()


def run(config: uvicorn.Config, shutdown: GracefulShutdown) -> int:
    """Blocking form of :func:`serve` on a new asyncio event loop; returns the exit code."""
    return asyncio.run(serve(config, shutdown))


class Supervisor(uvicorn.supervisors.Multiprocess):
    """uvicorn's multiprocess supervisor (``uvicorn --workers N``), with the signal handling
    a graceful shutdown of its workers needs.

    The workers are uvicorn's, each serving the application, whose ASGI
    ``HealthMiddleware(shutdown=...)`` installs the worker's coordinator. What differs from
    uvicorn's own supervisor, on ``SIGTERM`` or ``SIGINT``:

    * the first signal is passed on to every worker at once, from the handler (uvicorn's
      reads its signal queue every 0.5 s), once only (a second copy would be each
      worker's second signal), and no worker is started after it;
    * its own copies of the listening sockets are closed once shutdown begins: the
      workers keep serving on theirs until their delay ends, and a connection made after
      every worker stopped accepting is refused at once, instead of waiting in the listen
      backlog to be reset when the supervisor exits;
    * a second signal, more than ``repeat_window`` seconds after the first, is passed on
      too (each worker's coordinator then exits at once) and the supervisor exits with
      ``128 + signal number``; one within the window is a copy of the first (the whole
      process group signalled at once, which gave each worker its own copy too) and is
      ignored, as the workers' coordinators ignore theirs;
    * :attr:`exit_code` is the workers' status: 0 when every worker exited 0.

    Like uvicorn's, it waits for its workers without a bound of its own: each worker's
    coordinator bounds its shutdown (a forced exit with code 1 at the end of its budget,
    delay + drain + hooks), and the kubelet's ``SIGKILL`` ends the grace period.

    Args:
        config: the ``uvicorn.Config``; ``config.app`` must be an import string, since
            every worker imports it.
        sockets: the listening sockets, bound once here and shared by the workers.
        repeat_window: seconds after the first signal during which another one is a copy
            of it (default :data:`healthprobe.shutdown.REPEAT_WINDOW`, 1 s); give it the
            workers' ``GracefulShutdown(repeat_window=...)``.
        kwargs: passed on to uvicorn's supervisor (``target``, the worker's entry point,
            for uvicorn versions whose supervisor takes one).

    Raises:
        ValueError: ``repeat_window`` is negative or not finite.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        sockets: list[socket.socket],
        *,
        repeat_window: float = _shutdown.REPEAT_WINDOW,
        **kwargs: Any,
    ) -> None:
        self.repeat_window = _signals.check_seconds("repeat_window", repeat_window)
        logs.use_server_logger()  # this process never builds the app: its lines go to uvicorn's log here
        super().__init__(config, sockets=sockets, **kwargs)
        #: Exit status of the supervisor once :meth:`run` returns.
        self.exit_code = 0
        self._first: int | None = None
        self._window = _signals.RepeatWindow(self.repeat_window)
        self._passed_on: set[int] = set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes of the supervisor's loop: it sends
        # signals and appends to a list, and takes no lock the loop may hold (setting
        # should_exit would), save for the log line of a second signal before the exit.
        kind = self._window.classify(time.monotonic())
        if kind == _signals.FIRST:
            self._first = signum
            self._pass_on(signum)
            self.signal_queue.append(signum)  # uvicorn's loop then sets should_exit
            return
        if kind == _signals.COPY:
            return  # a copy of the first signal: the same shutdown
        self._pass_on(signum)
        code = 128 + signum
        _logger.error(
            "shutdown: second signal %s; passed on to the workers, exiting with code %d",
            _signals.signal_name(signum),
            code,
        )
        _signals.flush_logs()
        os._exit(code)

    def _pass_on(self, signum: int) -> None:
        for process in list(self.processes):
            pid = process.pid
            if pid is None:
                continue
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                continue
            self._passed_on.add(pid)

    def keep_subprocess_alive(self) -> None:
        """uvicorn's restart of dead or hung workers, until shutdown begins."""
        if self._first is None:
            super().keep_subprocess_alive()

    def terminate_all(self) -> None:
        """Close this process's copies of the listening sockets, and send ``SIGTERM`` to the
        workers the signal was not passed on to (the supervisor stops for another reason,
        or a worker was started meanwhile)."""
        for sock in self.sockets:
            sock.close()
        if self._first is not None:
            _logger.info(
                "shutdown: %s passed on to %d worker(s); waiting for them to stop",
                _signals.signal_name(self._first),
                len(self._passed_on),
            )
        for process in self.processes:
            if process.pid not in self._passed_on:
                process.terminate()

    def run(self) -> None:
        """Start the workers, supervise them until a signal, wait for them, and set
        :attr:`exit_code`: 0 when every worker exited 0, else the first non-zero status
        (``128 + N`` for a worker ended by signal ``N``)."""
        super().run()
        for process in self.processes:
            code = process.exitcode
            if code:
                self.exit_code = 128 - code if code < 0 else code
                break


def run_workers(config: uvicorn.Config, *, repeat_window: float = _shutdown.REPEAT_WINDOW) -> int:
    """Serve ``config`` with ``config.workers`` worker processes under :class:`Supervisor`:
    what ``uvicorn module:app --workers N`` does, with a graceful shutdown of the workers.

    Args:
        config: a ``uvicorn.Config`` whose ``app`` is an import string (``"module:app"``),
            naming an application wrapped in ``HealthMiddleware(..., shutdown=shutdown)``;
            ``workers`` is the number of worker processes. Call this from the main thread
            of a module that does not import the application itself.
        repeat_window: seconds after the first signal during which another one is a copy
            of it, not a second signal (see :class:`Supervisor`; default 1 s).

    Returns:
        The exit code: 0 when every worker exited 0 (see :attr:`Supervisor.exit_code`). A
        second signal, more than ``repeat_window`` seconds after the first, exits the
        process at once with ``128 + signal number``.

    Raises:
        TypeError: ``config.app`` is not an import string.
        ValueError: ``repeat_window`` is negative or not finite.
        SystemExit: with uvicorn's startup-failure status (3) when the address cannot be
            bound (``uvicorn.Config.bind_socket``).
    """
    if not isinstance(config.app, str):
        raise TypeError("uvicorn worker processes import the application: pass it as an import string, 'module:app'")
    _signals.check_seconds("repeat_window", repeat_window)  # before binding the socket
    sock = config.bind_socket()
    _nodelay([sock])  # inherited by every worker's connections, whatever the event loop
    kwargs: dict[str, Any] = {}
    if "target" in inspect.signature(uvicorn.supervisors.Multiprocess.__init__).parameters:
        # Earlier uvicorn supervisors are given the worker's entry point, as uvicorn.main.run did.
        kwargs["target"] = uvicorn.Server(config).run
    supervisor = Supervisor(config, [sock], repeat_window=repeat_window, **kwargs)
    try:
        supervisor.run()
    finally:
        if config.uds and os.path.exists(config.uds):
            os.remove(config.uds)
    return supervisor.exit_code
