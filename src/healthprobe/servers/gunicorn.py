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

A worker still serving a request when its budget ends (``delay + drain_timeout +
hook_timeout x max(1, hooks)`` after the signal) is ended by its coordinator with exit code
1, before its hooks; connections still waiting in its listen backlog then are reset, and
the log says so. A first ``SIGINT`` or ``SIGQUIT`` to the master is gunicorn's quick
shutdown: it sends ``SIGQUIT`` to the workers, whose handler raises ``SystemExit`` in the
request being served (answered ``500``); the log names the quick shutdown and counts that
request as ended unfinished by ``SystemExit``, never as drained.
"""

from __future__ import annotations

import logging
import os
import pathlib
import select
import signal
import threading
import time
import typing

from .. import _signals, logs
from .. import shutdown as _shutdown

if typing.TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

    from ..shutdown import GracefulShutdown, ServerControl

__all__ = ["control", "post_worker_init", "when_ready", "worker_exit"]

_logger = logging.getLogger("healthprobe.shutdown")


def _coordinator() -> GracefulShutdown | None:
    shutdown = _shutdown.current()
    if shutdown is None:
        _logger.warning("shutdown: no GracefulShutdown was constructed by the application; gunicorn hooks do nothing")
    return shutdown


def when_ready(arbiter: Any) -> None:
    """gunicorn hook (master): make a second ``SIGTERM``/``SIGINT`` end everything at once.

    The first signal goes to gunicorn's own handler (graceful stop for ``SIGTERM``). A
    signal within the repeat window of the first is a copy of it and ignored: the
    application's ``GracefulShutdown.repeat_window`` when the master has one (the app
    preloaded), else :data:`healthprobe.shutdown.REPEAT_WINDOW` (1 s).
    """
    logs.use_server_logger()  # the master's lines go to gunicorn's error log
    shutdown = _shutdown.current()
    window = _signals.RepeatWindow(shutdown.repeat_window if shutdown is not None else _shutdown.REPEAT_WINDOW)
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        kind = window.classify(time.monotonic())
        if kind == _signals.FIRST:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            return
        if kind == _signals.COPY:
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
    shutdown.install(control=control(worker, shutdown))


_warned: set[int] = set()


def _warn_graceful_timeout(worker: Any, shutdown: GracefulShutdown) -> None:
    graceful = float(worker.cfg.graceful_timeout)
    if shutdown.budget > graceful and os.getpid() not in _warned:
        _warned.add(os.getpid())
        _logger.warning(
            "shutdown: gunicorn graceful_timeout of %.1f s is below the shutdown budget of %.1f s; "
            "the master may kill workers before they stop cleanly",
            graceful,
            shutdown.budget,
        )


def control(worker: Any, shutdown: GracefulShutdown) -> ServerControl:
    """How the coordinator stops a sync or ``gthread`` gunicorn ``worker`` (recognised by its
    ``handle_exit`` handler), with or without this configuration module.

    When the delay ends, the worker first accepts and serves the connections already
    waiting in the listen backlog, within what is left of the drain bound, then stops the
    way its own ``SIGTERM`` handler would (``alive = False``) and is woken at once; it
    finishes the requests it serves or has queued, within gunicorn's ``graceful_timeout``.
    The hooks then run from ``worker_exit`` (this module) or, without this module, when the
    worker's interpreter exits.

    The worker's ``SIGQUIT`` handler (gunicorn's quick shutdown: the master sends ``SIGQUIT``
    on ``SIGINT`` or ``SIGQUIT``, and the worker raises ``SystemExit`` in the request it
    serves) is wrapped so that the coordinator's log names it; and the log says when
    connections still wait in the listen backlog as the worker stops, since they are reset
    when it exits.
    """
    _warn_graceful_timeout(worker, shutdown)
    sockets = list(worker.sockets)
    shutdown.requests_in_flight.backlog = lambda: _backlog_waiting(sockets) and _master_closed(sockets)
    _wrap_quick_shutdown(worker, shutdown)

    def stop() -> None:
        # Connections the kernel has already accepted into the listen backlog while this
        # worker was busy would be reset when the last copy of the socket closes: keep the
        # accept loop running until no listener has one waiting, within the drain bound
        # (this wait is part of the drain, which counts from the end of the delay). The
        # drain's line says when some still wait at the bound.
        _wait_for_empty_backlog(worker.sockets, shutdown.drain_remaining())
        # What the SIGTERM the coordinator took over would have done: ``alive = False``, and
        # for gthread a wake-up of its poller, which does not watch the pipe below (without
        # it the worker noticed only at its 1 s poll timeout).
        worker.handle_exit(signal.SIGTERM, None)
        try:
            os.write(worker.PIPE[1], b"s")  # wake a sync worker's select() at once
        except OSError:
            pass

    return _shutdown.ServerControl("gunicorn", stop)


def _wrap_quick_shutdown(worker: Any, shutdown: GracefulShutdown) -> None:
    """Put a wrapper over the worker's own ``SIGQUIT`` handler (``handle_quit``, which raises
    ``SystemExit`` in the request being served): the wrapper records the quick shutdown on
    the coordinator (plain attribute writes: it runs between two bytecodes of whatever the
    main thread was doing) and calls gunicorn's handler. Main thread only; once per worker."""
    if not hasattr(signal, "SIGQUIT") or threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(signal.SIGQUIT)
    if not callable(handler) or getattr(handler, "__self__", None) is not worker:
        return  # not gunicorn's handle_quit (ours already, or the application's)
    handle_quit: Callable[[int, FrameType | None], Any] = handler

    def on_quit(signum: int, frame: FrameType | None) -> None:
        shutdown.requests_in_flight.quick = (
            "gunicorn's quick shutdown (SIGQUIT from its master, on SIGINT or SIGQUIT to the master)"
        )
        handle_quit(signum, frame)

    signal.signal(signal.SIGQUIT, on_quit)


def _backlog_waiting(listeners: list[Any]) -> bool:
    """Whether a connection waits to be accepted on one of ``listeners`` (a listening
    socket is readable while its accept queue is not empty)."""
    try:
        ready, _, _ = select.select(listeners, [], [], 0)
    except (OSError, ValueError):  # a listener already closed: nothing more to accept
        return False
    return bool(ready)


def _master_closed(listeners: list[Any]) -> bool:
    """Whether the master has closed its copies of ``listeners`` (it does as it shuts
    down), so that connections waiting in their backlog are reset once the last worker
    holding them exits; while it holds them (a worker recycled after ``--max-requests``, or
    replaced on ``SIGHUP``) they wait for the next worker. Read from ``/proc`` (Linux);
    ``False`` where it cannot be told."""
    try:
        ours = {f"socket:[{os.fstat(listener.fileno()).st_ino}]" for listener in listeners}
        fds = list(pathlib.Path(f"/proc/{os.getppid()}/fd").iterdir())
    except (OSError, ValueError):  # no /proc, or a listener closed
        return False
    for fd in fds:
        try:
            if os.readlink(fd) in ours:
                return False
        except OSError:  # closed meanwhile
            continue
    return True


def _wait_for_empty_backlog(listeners: list[Any], bound: float) -> None:
    """Return once no listening socket has a connection waiting to be accepted, or after
    ``bound`` seconds. The worker's own loop accepts and serves them meanwhile."""
    deadline = time.monotonic() + bound
    while _backlog_waiting(listeners) and time.monotonic() < deadline:
        time.sleep(0.01)


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook (worker, at exit): drain, run the hooks if not yet run, mark stopped."""
    shutdown = _shutdown.current()
    if shutdown is not None:
        shutdown.finish()
