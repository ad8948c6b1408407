"""Which server serves this process, and how the shutdown coordinator stops it.

The coordinator (:class:`healthprobe.shutdown.GracefulShutdown`) installs its signal handlers
on top of the ones it finds. A handler it recognises names the server that put it there and
how to stop that server when the shutdown delay ends:

* ``uvicorn.Server.handle_exit`` (``uvicorn mod:app``, ``uvicorn.run``, gunicorn's uvicorn
  workers): :func:`healthprobe.servers.uvicorn.control`;
* a gunicorn worker's ``handle_exit`` (sync and ``gthread`` workers, with or without
  healthprobe's gunicorn configuration): :func:`healthprobe.servers.gunicorn.control`;
* an asyncio event loop's own handlers (``loop.add_signal_handler``: ``hypercorn --workers 0``,
  ``hypercorn.asyncio.serve`` without a shutdown trigger): the coordinator takes them off
  the loop and calls the server's callback on the loop when the delay ends;
* trio's ``KeyboardInterrupt`` handler for ``SIGINT`` (``hypercorn -k trio --workers 0``):
  the coordinator hands it a ``SIGINT`` in the main thread when the delay ends, which trio
  raises in its main task, as a Ctrl-C does.

The first two through the factory registered under the server's name
(:func:`register_control`): importing :mod:`healthprobe.servers` registers them (``import
healthprobe`` does), and this module imports no server integration. Integrations that know their server
pass its :class:`ServerControl` to ``install`` instead.

Any other Python handler found is the application's own (or an unknown server's) and is
called once when the delay ends. Where nothing can stop the server, the adapters do not
install the coordinator and log one WARNING naming the fix (:func:`unsupported`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .shutdown import GracefulShutdown

    #: Builds the :class:`ServerControl` of a recognised server from the object its signal
    #: handler is bound to and the coordinator.
    ControlFactory = Callable[[Any, GracefulShutdown], "ServerControl"]

logger = logging.getLogger("healthprobe.shutdown")

SignalHandler = Callable[[int, "FrameType | None"], Any] | int | signal.Handlers | None

#: Where the launch paths and their fixes are documented.
DOCS = "docs/kubernetes.md, 'Launch paths'"


@dataclass
class ServerControl:
    """How the coordinator drives one server through the shutdown sequence.

    Attributes:
        server: a short name for logs: ``"uvicorn"``, ``"gunicorn"``, ``"asyncio"``, ...
        stop: called once from the coordinator's thread when the delay ends: the server
            stops accepting new connections; requests, streams and WebSocket sessions
            already open go on.
        release: called once from the coordinator's thread when the drain is over (no
            request in flight, or its bound reached): the server closes what is left and
            returns. ``None`` when ``stop`` already lets it return by itself.
        development: the server runs under a development reloader (``uvicorn --reload``):
            no shutdown delay, so that a reload or a Ctrl-C is prompt.
    """

    server: str
    stop: Callable[[], None]
    release: Callable[[], None] | None = None
    development: bool = False


def owner_of(handler: object) -> tuple[object | None, str]:
    """The object a bound-method ``handler`` belongs to and the module that defined it
    (through ``functools.partial``: asyncio's ``Runner`` handles ``SIGINT`` with one)."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    owner = getattr(handler, "__self__", None)
    module = type(owner).__module__ if owner is not None else str(getattr(handler, "__module__", "") or "")
    return owner, module


def server_handler(handler: object) -> str | None:
    """The name of the server whose own signal handler ``handler`` is (``"uvicorn"``,
    ``"gunicorn"``, ``"asyncio"``, ``"trio"``; ``"healthprobe"`` for a coordinator's), or
    ``None`` when it is an application's handler, the default action, or ignored."""
    owner, module = owner_of(handler)
    if owner is not None:
        if _derives_from(owner, "uvicorn.server") and getattr(handler, "__name__", "") == "handle_exit":
            return "uvicorn"
        if _derives_from(owner, "gunicorn.workers.base"):
            return "gunicorn"
        if _derives_from(owner, "healthprobe.shutdown"):
            return "healthprobe"
        if module.startswith("uvloop"):
            return "uvloop"  # the loop's own handler: uvloop keeps the callbacks out of reach
        if module.startswith("asyncio"):
            return "asyncio"  # asyncio.run()'s Ctrl-C handler: a program's, not a server's
        return None
    if module.startswith("asyncio"):
        return "asyncio"  # the loop's _sighandler_noop: the loop's own handlers do the work
    if module.startswith("uvloop"):
        return "uvloop"  # likewise, but uvloop keeps its handlers out of reach
    if module.startswith("trio"):
        return "trio"
    return None


def _derives_from(owner: object, module: str) -> bool:
    return any(cls.__module__ == module for cls in type(owner).__mro__)


_controls: dict[str, ControlFactory] = {}


def register_control(server: str, factory: ControlFactory) -> None:
    """Have :func:`control_for` drive a server whose signal handler :func:`server_handler`
    names ``server`` (``"uvicorn"``, ``"gunicorn"``) with what ``factory(owner, shutdown)``
    returns, ``owner`` being the object the handler is bound to. A later registration for
    the same name replaces the earlier one."""
    _controls[server] = factory


def control_for(
    shutdown: GracefulShutdown,
    found: Mapping[signal.Signals, SignalHandler],
    deliver: Callable[[int, SignalHandler], None],
) -> ServerControl | None:
    """A :class:`ServerControl` for the server whose handlers are in ``found`` (signal
    number to the handler in place), or ``None`` when none is recognised.

    Called in the main thread by :meth:`GracefulShutdown.install` before it installs its
    own handlers. A uvicorn or gunicorn handler is recognised when a factory was registered
    for it (:func:`register_control`). For an asyncio loop's handlers, it removes them from
    the loop (the coordinator's handlers take their place) and calls the server's callback
    on the loop when the delay ends. For trio's, ``deliver(signal number, handler)`` hands
    the handler a ``SIGINT`` in the main thread when the delay ends.
    """
    for handler in found.values():
        name = server_handler(handler)
        factory = _controls.get(name) if name is not None else None
        if factory is not None:
            owner, _ = owner_of(handler)
            return factory(owner, shutdown)
    loop_control = _asyncio_control(found)
    if loop_control is not None:
        return loop_control
    ki = found.get(signal.SIGINT)
    if ki is not None and server_handler(ki) == "trio":
        return ServerControl("trio", lambda: deliver(signal.SIGINT, ki))
    return None


def _asyncio_control(found: Mapping[signal.Signals, SignalHandler]) -> ServerControl | None:
    if not any(server_handler(handler) == "asyncio" for handler in found.values()):
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    # asyncio's Unix loop keeps the handlers of loop.add_signal_handler in this mapping of
    # signal number to asyncio.Handle; it has no public accessor.
    handles: Mapping[int, asyncio.Handle] = getattr(loop, "_signal_handlers", {})
    taken = [handles[sig] for sig in found if sig in handles]
    if not taken:
        return None
    for sig in found:
        if sig in handles:
            loop.remove_signal_handler(sig)
    handle = taken[0]

    def stop() -> None:
        # What the first signal would have done: the server's own callback, on its loop.
        loop.call_soon_threadsafe(handle._run)

    return ServerControl("asyncio", stop)


def uninstalled_handler(sig: int) -> SignalHandler:
    """What a signal's handler is when neither a server nor the application set one."""
    return signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL


# -- launch paths that cannot be coordinated ---------------------------------------------------


def development_server() -> str | None:
    """The name of the development server this process runs under, or ``None``.

    Development servers exit at once on ``SIGTERM`` (a reload, a Ctrl-C): healthprobe leaves
    them so.
    """
    if os.environ.get("FLASK_RUN_FROM_CLI") == "true" and "flask.cli" in sys.modules:
        return "flask run"
    if "django.core.management.commands.runserver" in sys.modules:
        return "manage.py runserver"
    if os.environ.get("WERKZEUG_RUN_MAIN") == "true":
        return "Werkzeug's reloader"
    return None


#: The fix to name, per server, when the coordinator cannot stop it.
_FIXES = {
    "hypercorn": (
        "hypercorn's worker processes are stopped by their parent process at once, without the "
        "shutdown delay, so readiness cannot fail before they stop accepting: run one process per "
        "container with `hypercorn --workers 0 ...` (asyncio), or serve with "
        "healthprobe.servers.hypercorn.serve (asyncio and trio)"
    ),
    "hypercorn-trio": (
        "hypercorn's trio worker processes are stopped by their parent process at once, without "
        "the shutdown delay: serve with healthprobe.servers.hypercorn.serve under trio.run, or run "
        "`hypercorn -k trio --workers 0 ...`"
    ),
    "gunicorn": (
        "this gunicorn worker serves requests outside its main thread (gthread), where signal "
        "handlers cannot be installed, and its SIGTERM handler was not gunicorn's own when it "
        "imported the application (--preload, or the application installed a handler of its "
        "own): add `-c python:healthprobe.servers.gunicorn` to the gunicorn command line"
    ),
    "uvloop": (
        "the uvloop event loop handles SIGTERM itself and keeps its handlers out of healthprobe's "
        "reach, so the server would stop at once: use the asyncio event loop (hypercorn's default "
        "worker class), or uvicorn, whose uvloop loop works"
    ),
    "waitress": (
        "waitress.serve() installs no signal handler and cannot be stopped gracefully from a "
        "request thread: serve with healthprobe.servers.waitress.serve(app, shutdown, ...) or "
        "the waitress-serve command"
    ),
    "werkzeug": (
        "Werkzeug's server is stopped at once by SIGTERM: serve with "
        "healthprobe.servers.werkzeug.serve(make_server(...), shutdown)"
    ),
    "thread": (
        "the server runs outside the main thread, where signal handlers cannot be installed: "
        "call shutdown.install() in the main thread, or begin the shutdown with shutdown.begin()"
    ),
}


def server_name(server_software: str) -> str:
    """A key of the fixes above for a WSGI ``SERVER_SOFTWARE`` string (``"gunicorn/23.0"``,
    ``"waitress"``, ``"Werkzeug/3.1"``), or ``""``."""
    lowered = server_software.lower()
    for name in ("gunicorn", "waitress", "werkzeug", "hypercorn", "uvicorn"):
        if lowered.startswith(name):
            return name
    return ""


def unknown_server(handler: object) -> str:
    """The WARNING logged, once per process, where the coordinator found a signal handler of
    a server it does not know (daphne's, say) and will call it when the delay ends."""
    _, module = owner_of(handler)
    name = module or type(handler).__name__
    return (
        f"shutdown: an unknown server's signal handler ({name}) is in place in process {os.getpid()}: "
        "readiness fails at SIGTERM and the delay is kept, then that handler is called, and whether "
        "requests in flight are drained is up to the server; serve with a server of the launch-path "
        f"table for a drain healthprobe can vouch for (see {DOCS})"
    )


def unsupported(server: str) -> str:
    """The WARNING logged, once per process, where the coordinator cannot stop ``server``
    (a key of the fixes above, or anything else for an unknown server)."""
    fix = _FIXES.get(server)
    if fix is None:
        fix = (
            f"no signal handler of a known server was found ({server or 'unknown server'}), so "
            "healthprobe cannot stop it after the delay; serve with one of the integrations in "
            "healthprobe.servers"
        )
    return f"shutdown: graceful shutdown is OFF in process {os.getpid()}: {fix} (see {DOCS})"


def hypercorn_config(receive: object) -> Any:
    """hypercorn's ``Config`` when ``receive`` is the ``receive`` callable of a hypercorn
    lifespan (a bound method of hypercorn's ``Lifespan``), else ``None``."""
    owner, module = owner_of(receive)
    if owner is None or not module.startswith("hypercorn."):
        return None
    return getattr(owner, "config", None)


def in_main_thread() -> bool:
    """Whether the caller runs in the main thread (the only one that can set handlers)."""
    return threading.current_thread() is threading.main_thread()


def server_at_import() -> str | None:
    """The server that is importing the application, when the coordinator can be installed
    now, in the main thread, before any request: ``"gunicorn"`` in a sync or ``gthread``
    worker (its ``SIGTERM`` handler is in place before it imports the application, unless
    ``--preload``), ``"waitress"`` under the ``waitress-serve`` command; else ``None``."""
    if not in_main_thread():
        return None
    handler = signal.getsignal(signal.SIGTERM)
    if server_handler(handler) == "gunicorn":
        return "gunicorn"
    if "waitress.runner" in sys.modules and handler == signal.SIG_DFL:
        return "waitress"
    return None


def gunicorn_preloading() -> bool:
    """Whether a gunicorn master is importing the application (``--preload``) without
    healthprobe's gunicorn configuration (``-c python:healthprobe.servers.gunicorn``, imported
    by gunicorn before it preloads): its workers, forked later, can only install the
    coordinator at their first request."""
    return (
        in_main_thread()
        and "gunicorn.arbiter" in sys.modules
        and "healthprobe.servers.gunicorn" not in sys.modules
        and server_handler(signal.getsignal(signal.SIGTERM)) is None
    )


#: Logged once by a gunicorn master that preloads the application (:func:`warn_preload`).
PRELOAD_WARNING = (
    "shutdown: gunicorn --preload: each worker installs the graceful shutdown at its first "
    "request, so a worker that has served none when SIGTERM comes stops at once (no delay, no "
    "hooks), and a gthread worker cannot install it at all; for every worker from its start, "
    "add `-c python:healthprobe.servers.gunicorn` to the gunicorn command line"
)


def warn_preload() -> None:
    """Log :data:`PRELOAD_WARNING` at WARNING, once per process."""
    global _preload_warned
    if not _preload_warned:
        _preload_warned = True
        logger.warning(PRELOAD_WARNING, extra={"server": "gunicorn"})


_preload_warned = False


def uvloop_or(found: Mapping[signal.Signals, SignalHandler], server: str) -> str:
    """``"uvloop"`` when one of the ``found`` handlers is uvloop's, else ``server``: the key
    of the fix to name where the coordinator cannot stop the server."""
    return "uvloop" if any(server_handler(handler) == "uvloop" for handler in found.values()) else server
