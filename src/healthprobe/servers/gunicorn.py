"""gunicorn: configuration hooks for sync, ``gthread`` and uvicorn workers (``uvicorn-worker``).

Plain ``gunicorn app:app`` needs none of this: the middleware recognises a sync or ``gthread``
worker by its ``SIGTERM`` handler and installs the coordinator with :func:`control` as the
worker imports the application (uvicorn workers: at lifespan startup); the hooks then run
when the worker's interpreter exits. This module adds what only the master can do, a second
signal that ends every process at once, and runs the hooks from gunicorn's ``worker_exit``.
Use it as the configuration, or import its hooks into your own ``gunicorn.conf.py``::

    gunicorn -c python:healthprobe.servers.gunicorn --graceful-timeout 30 -w 2 app:app

    # gunicorn.conf.py
    from healthprobe.servers.gunicorn import post_worker_init, when_ready, worker_exit

The application module constructs the :class:`GracefulShutdown` (found here with
:func:`healthprobe.shutdown.current`) and wraps the app in ``HealthMiddleware(...,
shutdown=shutdown)``. What happens on ``SIGTERM`` to the master (Kubernetes sends it to
PID 1): the master closes its copies of the listening sockets and sends ``SIGTERM`` to every
worker, then waits up to ``graceful_timeout`` (size it above the coordinator's budget). Each
worker's coordinator fails readiness and keeps serving for the delay, then stops its worker
(sync and ``gthread``: once no connection waits in the listen backlog, the worker's own
``SIGTERM`` handler, then a wake-up of its ``select`` or poller; uvicorn: ``should_exit``),
drains, runs the hooks and exits; the master then exits 0. A ``gthread`` worker finishes the
requests its threads run or have queued, within ``graceful_timeout``, before it exits. A
second ``SIGTERM`` or ``SIGINT`` to the master is forwarded to the workers, which exit at
once, and the master exits with ``128 + signal number``; one within the repeat window of the
first (:data:`healthprobe.shutdown.REPEAT_WINDOW`, 1 s) is a copy of it and changes nothing.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from types import FrameType
from typing import Any

from .._launch import ServerControl
from ..logs import use_server_logger
from ..shutdown import REPEAT_WINDOW, GracefulShutdown, current

logger = logging.getLogger("healthprobe.shutdown")


def _coordinator() -> GracefulShutdown | None:
    shutdown = current()
    if shutdown is None:
        logger.warning("shutdown: no GracefulShutdown was constructed by the application; gunicorn hooks do nothing")
    return shutdown


def when_ready(arbiter: Any) -> None:
    """gunicorn hook (master): make a second ``SIGTERM``/``SIGINT`` end everything at once.

    The first signal goes to gunicorn's own handler (graceful stop for ``SIGTERM``). A
    signal within the repeat window of the first is a copy of it and ignored: the
    application's ``GracefulShutdown.repeat_window`` when the master has one (the app
    preloaded), else :data:`healthprobe.shutdown.REPEAT_WINDOW` (1 s).
    """
    use_server_logger()  # the master's lines go to gunicorn's error log
    shutdown = current()
    window = shutdown.repeat_window if shutdown is not None else REPEAT_WINDOW
    first_at: list[float] = []
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if not first_at:
            first_at.append(now)
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            return
        if now - first_at[0] < window:
            return  # a copy of the first signal: the same shutdown
        for pid in list(arbiter.WORKERS):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        os._exit(128 + signum)

    for sig in previous:
        signal.signal(sig, on_signal)


def post_worker_init(worker: Any) -> None:
    """gunicorn hook (worker): install the coordinator in a sync or ``gthread`` worker, with
    :func:`control` to stop it, and warn when ``graceful_timeout`` is below the coordinator's
    budget.

    The WSGI ``HealthMiddleware`` already installs the coordinator when the worker imports
    the application (or at its first request, with ``--preload``): this hook covers
    applications that build the middleware outside the import. Workers that leave
    ``SIGTERM`` to their server (uvicorn workers) are left alone: the ASGI middleware
    installs the coordinator at lifespan startup, inside uvicorn's own signal capture.
    """
    shutdown = _coordinator()
    if shutdown is None:
        return
    _warn_graceful_timeout(worker, shutdown)
    if any(cls.__module__.startswith("uvicorn") for cls in type(worker).__mro__):
        return  # uvicorn's own server is stopped: see healthprobe.servers.uvicorn.control
    # Whatever handler is in place (gunicorn's, or one the application installed over it,
    # which is then called once when the delay ends), the worker is stopped as its own
    # SIGTERM handler would.
    shutdown._install(control=control(worker, shutdown))


_warned: set[int] = set()


def _warn_graceful_timeout(worker: Any, shutdown: GracefulShutdown) -> None:
    graceful = float(worker.cfg.graceful_timeout)
    if shutdown.budget > graceful and os.getpid() not in _warned:
        _warned.add(os.getpid())
        logger.warning(
            "shutdown: gunicorn graceful_timeout of %.1f s is below the shutdown budget of %.1f s; "
            "the master may kill workers before they stop cleanly",
            graceful,
            shutdown.budget,
        )


def control(worker: Any, shutdown: GracefulShutdown) -> ServerControl:
    """How the coordinator stops a sync or ``gthread`` gunicorn ``worker`` (recognised by its
    ``handle_exit`` handler), with or without this configuration module.

    When the delay ends, the worker first accepts and serves the connections already
    waiting in the listen backlog, then stops the way its own ``SIGTERM`` handler would
    (``alive = False``) and is woken at once; it finishes the requests it serves or has
    queued, within gunicorn's ``graceful_timeout``. The hooks then run from ``worker_exit``
    (this module) or, without this module, when the worker's interpreter exits.
    """
    _warn_graceful_timeout(worker, shutdown)

    def stop() -> None:
        # Connections the kernel has already accepted into the listen backlog while this
        # worker was busy would be reset when the last copy of the socket closes: keep the
        # accept loop running until no listener has one waiting (bounded by the drain).
        _wait_for_empty_backlog(worker.sockets, shutdown.drain_remaining())
        # What the SIGTERM the coordinator took over would have done: ``alive = False``, and
        # for gthread a wake-up of its poller, which does not watch the pipe below (without
        # it the worker noticed only at its 1 s poll timeout).
        worker.handle_exit(signal.SIGTERM, None)
        try:
            os.write(worker.PIPE[1], b"s")  # wake a sync worker's select() at once
        except OSError:
            pass

    return ServerControl("gunicorn", stop)


def _wait_for_empty_backlog(listeners: list[Any], bound: float) -> None:
    """Return once no listening socket has a connection waiting to be accepted (a
    listening socket is readable while its accept queue is not empty), or after ``bound``
    seconds. The worker's own loop accepts and serves them meanwhile."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            ready, _, _ = select.select(listeners, [], [], 0)
        except (OSError, ValueError):  # a listener already closed: nothing more to accept
            return
        if not ready:
            return
        time.sleep(0.01)


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook (worker, at exit): drain, run the hooks if not yet run, mark stopped."""
    shutdown = current()
    if shutdown is not None:
        shutdown.finish()
