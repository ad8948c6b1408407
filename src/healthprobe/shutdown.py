"""Graceful shutdown: fail readiness first, keep serving, drain in-flight requests, run
cleanup hooks, exit 0.

The sequence (Kubernetes, "Pod Lifecycle: Termination of Pods"; the kubelet sends SIGTERM,
then SIGKILL after ``terminationGracePeriodSeconds``)::

    signal ─► delay ─► drain ─► hooks ─► stopped
      │         │        │        │
      │         │        │        └ cleanup callbacks, last registered first, each bounded
      │         │        └ stop accepting; wait for in-flight requests (bounded)
      │         └ serve normally while endpoints and load balancers notice the 503
      └ readiness fails at once (lifecycle ``draining``), liveness keeps passing

A second signal during the sequence exits at once with ``128 + signal number``; a signal
within :data:`REPEAT_WINDOW` (1 s) of the first is a copy of it (an init that signals the
whole process group, then the supervisor passing it on) and changes nothing. A signalled
shutdown ends by its budget, ``delay + drain_timeout + hook_timeout x max(1, hooks)``
seconds after the signal (:attr:`GracefulShutdown.budget`): hooks are cut there, and a
process that has not finished exits with code 1 (see :class:`GracefulShutdown`). Each line
of the log gives the seconds measured for its step.

The coordinator itself imports no web framework. Servers are driven through a *stop*
callable given to :meth:`GracefulShutdown.install` (see :mod:`healthprobe.servers`), and
requests are counted by the ``shutdown=`` argument of the ASGI and WSGI
``HealthMiddleware``. Without any server, a worker loop reads :attr:`~GracefulShutdown.is_draining`,
blocks in :meth:`~GracefulShutdown.wait` or awaits :meth:`~GracefulShutdown.wait_draining`,
then calls :meth:`~GracefulShutdown.finish`.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import math
import os
import signal
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from types import FrameType
from typing import Any, NoReturn, TypeVar, overload

import anyio

from . import _launch, _threads
from ._launch import ServerControl, SignalHandler
from ._types import Lifecycle
from .registry import HealthRegistry

logger = logging.getLogger("healthprobe.shutdown")

Hook = Callable[[], Any]
H = TypeVar("H", bound=Hook)

#: Delay in seconds used when ``KUBERNETES_SERVICE_HOST`` is set and no delay is given: long
#: enough for the endpoints controller and kube-proxy or an ingress to drop the pod.
KUBERNETES_DELAY = 5.0
#: Seconds after the first shutdown signal during which another one is taken as a copy of
#: it rather than as the second signal that forces the exit (the default ``repeat_window``).
#: An init that signals its child's whole process group (dumb-init's default, ``tini -g``)
#: gives a worker the signal directly, then its supervisor passes the same one on: gunicorn's
#: master and healthprobe's uvicorn supervisor within milliseconds, uvicorn's own supervisor
#: within 0.5 s (it reads its signal queue every 0.5 s).
REPEAT_WINDOW = 1.0
#: Seconds given to WebSocket sessions to end once they were closed at the drain bound.
SESSION_CLOSE_WAIT = 1.0
_POLL = 0.05

_current: GracefulShutdown | None = None


def current() -> GracefulShutdown | None:
    """The :class:`GracefulShutdown` constructed last in this process, or ``None``.

    Server hooks that cannot be handed the coordinator (gunicorn's configuration hooks)
    find it here.
    """
    return _current


class GracefulShutdown:
    """Coordinates the shutdown of one serving process.

    Args:
        registry: the :class:`HealthRegistry` whose readiness fails once shutdown begins
            (:meth:`HealthRegistry.begin_drain`) and which is marked stopped at the end.
        delay: seconds to keep serving after the signal, while readiness fails, so that
            load balancers stop sending new requests. ``None`` means 5 s when the
            ``KUBERNETES_SERVICE_HOST`` environment variable is set (inside a pod), else 0.
        drain_timeout: bound in seconds on waiting for in-flight requests once the server
            stops accepting, counted from the end of the delay (default 20 s).
        hook_timeout: bound in seconds on each cleanup hook (default 5 s); the budget counts
            it once per hook, and at least once.
        grace_period: the pod's ``terminationGracePeriodSeconds`` (default 30 s); a warning
            is logged when :attr:`budget` exceeds it, at the registry's first lifecycle
            change (startup passing, or the shutdown beginning), so that every hook the
            application registered by then counts, and at each :meth:`add_hook` after it.
        signals: the signals that begin shutdown (default SIGTERM and SIGINT).
        repeat_window: seconds after the first signal during which another of ``signals``
            is a copy of the first (logged, otherwise ignored), not a second signal
            (default :data:`REPEAT_WINDOW`, 1 s; 0 makes every later signal a second one).

    A shutdown begun by a signal always ends, by :attr:`budget` seconds after the signal
    at the latest: a second signal, more than ``repeat_window`` seconds after the first,
    exits at once with ``128 + signal number``; hooks that would outlast the budget are cut
    at its end; if the server or worker loop has not called :meth:`finish` by then (a
    wedged loop, a sync worker still serving a request), the process exits with
    :data:`FORCED_EXIT_CODE`. Where a server was stopped (not a worker loop), a process
    whose sequence has ended exits within :data:`EXIT_TIMEOUT` seconds, and by the end of
    the budget, with the exit code it logged, even if a task or thread it left does not
    end.

    Raises:
        TypeError: ``registry`` is not a :class:`HealthRegistry`.
        ValueError: a duration is negative or not finite, or ``signals`` is empty or names
            ``SIGKILL`` or ``SIGSTOP``, which no process can handle.
    """

    #: Every value :attr:`phase` can take, in order.
    phases: tuple[str, ...] = ("serving", "delay", "drain", "hooks", "stopped")

    def __init__(
        self,
        registry: HealthRegistry,
        *,
        delay: float | None = None,
        drain_timeout: float = 20.0,
        hook_timeout: float = 5.0,
        grace_period: float = 30.0,
        signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT),
        repeat_window: float = REPEAT_WINDOW,
    ) -> None:
        if not isinstance(registry, HealthRegistry):
            raise TypeError(f"registry must be a HealthRegistry, got {type(registry).__name__}")
        if delay is None:
            delay = KUBERNETES_DELAY if os.environ.get("KUBERNETES_SERVICE_HOST") else 0.0
        self.registry = registry
        self.delay = _seconds("delay", delay)
        self.drain_timeout = _seconds("drain_timeout", drain_timeout)
        self.hook_timeout = _seconds("hook_timeout", hook_timeout)
        self.grace_period = _seconds("grace_period", grace_period)
        self.repeat_window = _seconds("repeat_window", repeat_window)
        self.signals = tuple(signal.Signals(s) for s in signals)
        if not self.signals:
            raise ValueError("signals must name at least one signal")
        uncatchable = [s.name for s in self.signals if s in (signal.SIGKILL, signal.SIGSTOP)]
        if uncatchable:
            raise ValueError(f"{', '.join(uncatchable)} cannot be handled by a process")
        self._lock = threading.RLock()
        self._hooks: list[tuple[str, Hook]] = []
        # One item per request in flight: list.append and list.pop are atomic, so counting
        # takes no lock on the path every request passes (docs/performance.md). Never
        # replaced: the middlewares hold this list.
        self._requests: list[None] = []
        # One item per request the server ended unfinished: "" for one it cancelled (the
        # ASGI middleware), else the name of what ended it (SystemExit, KeyboardInterrupt).
        # Appended before the request's count is dropped, so a drain that sees no request
        # in flight sees the cut ones too.
        self._cut: list[str] = []
        # Set by a server integration when the server stops at once on a signal of its own
        # (gunicorn's quick shutdown), to say so in the drain's line; and a callable telling
        # whether connections wait in the server's listen backlog (gunicorn sync workers).
        self._quick: str | None = None
        self._backlog: Callable[[], bool] | None = None
        # Open WebSocket sessions: a callable per session that closes it with code 1001
        # (the ASGI middleware adds and discards them; called when the drain bound is reached).
        self._sessions: set[Callable[[], None]] = set()
        # The handlers found by the latest install (per signal), and the application's own
        # handler per signal: the one in place before any server's or ours, found at
        # construction or at the first install in this process. It is called once when the
        # delay ends, restored by uninstall(), and given the signals that come after the
        # sequence ended.
        self._previous: dict[int, SignalHandler] = {}
        self._original: dict[int, SignalHandler] = {}
        self._original_pid = os.getpid()
        self._handler = self._on_signal
        self._record_original()
        self._control: ServerControl | None = None
        # A signal this coordinator sends to the main thread for another handler (trio's
        # KeyboardInterrupt, for example): (signal number, the handler to give it to).
        self._pass: tuple[int, SignalHandler] | None = None
        self._pid: int | None = None
        # Process id of the last automatic install that could not stop the server (warned).
        self._auto_failed_pid = 0
        # Whether an ASGI lifespan reached the middleware: without one the hooks run when
        # the server returns (healthprobe.servers.uvicorn) or at interpreter exit.
        self._lifespan_seen = False
        self._atexit_pid = 0
        # Process id where an adapter installed the coordinator by itself: there the hooks
        # also run when the interpreter exits without a signal (a worker its server recycles).
        self._automatic_pid = 0
        self._signum: int | None = None
        self._frame: FrameType | None = None
        # Set by the signal handler, which takes no lock (a lock held by the interrupted
        # code of the same thread would never be released); the coordinator's thread,
        # woken through a pipe, does the rest.
        self._signalled = False
        # When the first signal came (time.monotonic(); 0 while none came, even after
        # begin()), and the copies of it that came within repeat_window, as (signal number,
        # seconds after the first): appended by the handler, logged by the coordinator's
        # thread.
        self._signal_at = 0.0
        self._repeats: list[tuple[int, float]] = []
        self._repeats_thread = False
        # Installed in this process and not signalled: all a request then needs from the
        # coordinator is to be counted (one attribute the ASGI middleware reads per request).
        self._steady = False
        self._by_signal = False
        self._wake: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._thread_pid = 0
        self._draining = threading.Event()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        # Set once finish() (or its async forms) began: the server returned, so a sequence
        # still in its delay has nothing left to stop.
        self._finishing = threading.Event()
        self._hooks_claimed = False
        self._hooks_done = threading.Event()
        self._hook_running: str | None = None
        self._t0 = 0.0
        self._stop_at = 0.0
        self._stopped_at = 0.0
        # The asyncio loop the sequence finished on, to name the tasks left on it if the
        # process does not exit (see _exit_late).
        self._loop: Any = None
        self._logged: set[str] = set()
        self.exit_code = 0
        self._warned_budget = False
        self._budget_due = False
        from .logs import use_server_logger

        use_server_logger()  # the budget warning shows in the server's log too
        self._warn_budget_when_started()
        global _current
        _current = self

    # -- configuration -----------------------------------------------------------------------

    def add_hook(self, func: Hook, *, name: str | None = None) -> None:
        """Register a cleanup hook, run after the drain, last registered first.

        Args:
            func: a callable taking no arguments, sync or async. Sync hooks run in a daemon
                thread; async hooks run on the server's event loop when shutdown is driven
                from one (ASGI lifespan), else in a fresh one. Each is bounded by
                ``hook_timeout`` seconds and shielded from the server's cancellation; a
                hook cut at its bound, or raising, is logged and the next one runs.
            name: the name used in logs (default: the function's name).

        Raises:
            TypeError: ``func`` is not callable, or not callable without arguments.
        """
        if not callable(func):
            raise TypeError(f"hook must be callable, got {type(func).__name__}")
        hook_name = name or str(getattr(func, "__name__", repr(func)))
        try:
            inspect.signature(func).bind()
        except TypeError:
            raise TypeError(f"hook {hook_name!r} must be callable with no arguments") from None
        except ValueError:  # no signature to read (some builtins)
            pass
        if self._hooks_claimed:
            logger.warning(
                "shutdown: hook %r added after the hooks ran; it will not run", hook_name, extra={"hook": hook_name}
            )
        self._hooks.append((hook_name, func))
        self._warn_budget()

    @overload
    def hook(self, func: H, /) -> H: ...

    @overload
    def hook(self, func: None = None, /, *, name: str | None = None) -> Callable[[H], H]: ...

    def hook(self, func: H | None = None, /, *, name: str | None = None) -> H | Callable[[H], H]:
        """Decorator form of :meth:`add_hook`, bare (``@shutdown.hook``) or called
        (``@shutdown.hook()``, ``@shutdown.hook(name="close_pool")``); returns the function
        unchanged. Raises as :meth:`add_hook` does."""
        if func is not None:
            self.add_hook(func, name=name)
            return func

        def register(hook: H) -> H:
            self.add_hook(hook, name=name)
            return hook

        return register

    @property
    def budget(self) -> float:
        """Worst-case seconds from the signal to the exit: ``delay + drain_timeout +
        hook_timeout x max(1, hooks)``.

        The hooks' share counts at least one ``hook_timeout``, which also bounds the
        server's return after the drain (cancelling what it still runs) and the checks'
        teardowns when no hook is registered. A signalled process exits by then: hooks are
        cut at its end and a process that has not stopped exits with
        :data:`FORCED_EXIT_CODE` (see :class:`GracefulShutdown`).
        """
        return self.delay + self._after_delay()

    def _after_delay(self) -> float:
        """Seconds the sequence may take once the delay ended: the budget without the delay."""
        return self.drain_timeout + self.hook_timeout * max(1, len(self._hooks))

    def _hooks_text(self) -> str:
        if self._hooks:
            return f"{len(self._hooks)} hook(s) x {self.hook_timeout:.1f} s"
        return f"{self.hook_timeout:.1f} s of hook time (no hook registered)"

    def _warn_budget_when_started(self) -> None:
        """Check the budget against the grace period at the registry's first lifecycle
        change (startup passing, or the shutdown beginning), not at construction: the
        application registers its hooks after building the coordinator (in a factory after
        ``init_app``, in a lifespan, in a module imported later), and a warning made before
        them would count none. After that, :meth:`add_hook` checks again."""
        if self.registry.lifecycle is not Lifecycle.STARTING:
            self._budget_due = True
            self._warn_budget()
            return
        ref = weakref.ref(self)

        def on_lifecycle(old: Lifecycle, new: Lifecycle) -> None:
            coordinator = ref()
            if coordinator is not None and not coordinator._budget_due:
                coordinator._budget_due = True
                coordinator._warn_budget()

        self.registry.add_lifecycle_listener(on_lifecycle)

    def _warn_budget(self) -> None:
        if self._budget_due and self.budget > self.grace_period and not self._warned_budget:
            self._warned_budget = True
            logger.warning(
                "shutdown: delay %.1f s + drain %.1f s + %s = %.1f s exceeds the grace period "
                "of %.1f s; the process may be killed before it stops cleanly",
                self.delay,
                self.drain_timeout,
                self._hooks_text(),
                self.budget,
                self.grace_period,
                extra={"seconds": self.budget, "grace_period": self.grace_period},
            )

    # -- signal handlers -----------------------------------------------------------------------

    def install(self, stop: Callable[[], None] | None = None) -> bool:
        """Install the signal handlers in this (serving) process, on top of the current ones.

        Call it from the process that serves, after the server installed its own handlers
        (the server integrations and the adapters do). Calling it again re-installs on top
        of any handler set in between, so the order against the server's own installation
        does not matter.

        What the coordinator does with the handlers it finds (see :mod:`healthprobe._launch`):

        * the application's own handler (a Python callable in place before any server's or
          ours, found at construction or at the first install) is called once, from the
          coordinator's thread, when the delay ends; it is restored by :meth:`uninstall`,
          and a signal that comes once the sequence has ended is given to it (or, where
          there was none, gets the default action), whatever the install order;
        * a recognised server's handler (uvicorn, a gunicorn worker, an asyncio loop's,
          trio's) tells how to stop that server when the delay ends, unless ``stop`` is
          given.

        Args:
            stop: called once, from the coordinator's thread, when the delay ends, to make
                the server stop accepting. When ``None`` and no server is recognised, the
                handler found by the latest install, if it is a Python callable other than
                the application's and than the default ``KeyboardInterrupt`` raiser, is
                called instead (an unknown server's handler, which stops it).

        Returns:
            ``True`` if a handler was installed now; ``False`` outside the main thread
            (signals can only be handled there) or when already in place.
        """
        return self._install(stop)

    def _install(
        self,
        stop: Callable[[], None] | None = None,
        *,
        automatic: str | None = None,
        control: ServerControl | None = None,
    ) -> bool:
        """:meth:`install`; with ``automatic`` (the server's name, or ``""`` when unknown),
        as an adapter does it by itself: only when the server can be stopped, else a
        WARNING naming the fix (once per process) and nothing installed; under a
        development server, nothing (an INFO line says so). ``control`` says how to stop
        the server, for integrations that know it."""
        from .logs import use_server_logger  # the server's logging is set up by now (docs/logging.md)

        use_server_logger()
        if stop is not None:
            control = ServerControl("given", stop)
        if control is not None:
            self._control = control
        pid = os.getpid()
        if automatic is not None:
            development = _launch.development_server()
            if development is not None:
                if self._auto_failed_pid != pid:
                    self._auto_failed_pid = pid
                    logger.info(
                        "shutdown: %s is a development server: SIGTERM stops it at once, with no shutdown delay",
                        development,
                        extra={"server": development},
                    )
                return False
        if not _launch.in_main_thread():
            if automatic is not None and self._pid != pid:
                self._cannot_stop(automatic if automatic in ("gunicorn", "waitress", "werkzeug") else "thread")
            else:
                logger.debug("shutdown: not installing signal handlers outside the main thread")
            return False
        if self._original_pid != pid:  # a new process (a fork): what this one had before us
            self._original, self._original_pid = {}, pid
            self._record_original()
        found = {sig: signal.getsignal(sig) for sig in self.signals}
        if self._pid == pid and all(handler == self._handler for handler in found.values()):
            self._warn_budget()
            return False
        if self._pid != pid and self._control is not None and control is None and self._control.server != "given":
            self._control = None  # recognised in another process (before a fork)
        if self._control is None:
            self._control = _launch.control_for(self, found)
            found = {sig: signal.getsignal(sig) for sig in self.signals}  # an asyncio loop's were taken off
        if automatic is not None and self._control is None:
            unknown = self._fallback_stop(found)
            if unknown is None:
                self._cannot_stop(_launch.uvloop_or(found, automatic))
                return False
            if self._auto_failed_pid != pid:
                logger.warning(_launch.unknown_server(unknown), extra={"server": _launch.owner_of(unknown)[1] or None})
        if automatic is not None:
            self._automatic_pid = pid
        first = self._pid != pid
        for sig, handler in found.items():
            if handler == self._handler:
                continue
            if first and self._callable_handler(handler):
                self._original[sig] = handler  # the application's, installed since construction
            elif sig not in self._original:
                self._original[sig] = _launch.uninstalled_handler(sig) if _launch.server_handler(handler) else handler
            self._previous[sig] = handler
            signal.signal(sig, self._handler)
        self._start_thread()
        self._pid = pid
        self._steady = not self._signalled
        control = self._control
        logger.debug(
            "shutdown: handlers installed in process %d for %s (server: %s)",
            pid,
            self._signal_names(),
            control.server if control is not None else "none recognised",
            extra={"server": control.server if control is not None else None},
        )
        self._warn_budget()
        return True

    def _adopt(self, server: str = "") -> None:
        """Install automatically, from an adapter's first request, unless installed in this
        process already or found unable to stop its server (see :meth:`_install`)."""
        pid = os.getpid()
        if self._pid != pid and self._auto_failed_pid != pid and not self._signalled:
            self._install(automatic=server)

    def _record_original(self) -> None:
        # The application's handlers in place at construction, when it runs in the main
        # thread; a server's own handler, or another coordinator's, is not the application's.
        if not _launch.in_main_thread():
            return
        for sig in self.signals:
            handler = signal.getsignal(sig)
            if not _launch.server_handler(handler):
                self._original[sig] = handler

    def _fallback_stop(self, found: dict[signal.Signals, SignalHandler]) -> SignalHandler:
        """A handler of ``found`` that, called when the delay ends, may stop an unknown
        server: a Python callable other than the application's own; ``None`` if none."""
        for sig, handler in found.items():
            if self._callable_handler(handler) and handler != self._original.get(sig):
                return handler
        return None

    def _callable_handler(self, handler: SignalHandler) -> bool:
        return (
            callable(handler)
            and handler is not signal.default_int_handler
            and handler != self._handler
            and _launch.server_handler(handler) is None
        )

    def _cannot_stop(self, server: str) -> None:
        pid = os.getpid()
        if self._auto_failed_pid != pid:
            self._auto_failed_pid = pid
            logger.warning(_launch.unsupported(server), extra={"server": server or None})

    def uninstall(self) -> None:
        """Where our handler is still in place, put back the one it replaced: the server's
        own, which the server replaces in turn with what it found when it returns, or the
        application's (see :meth:`install`)."""
        if not _launch.in_main_thread():
            return
        for sig in self.signals:
            if signal.getsignal(sig) == self._handler:
                replaced = self._previous.get(sig, self._original.get(sig, _launch.uninstalled_handler(sig)))
                signal.signal(sig, replaced if replaced is not None else signal.SIG_DFL)
        self._previous.clear()

    @property
    def pid(self) -> int | None:
        """The id of the process where :meth:`install` last installed handlers, or ``None``."""
        return self._pid

    @property
    def installed(self) -> bool:
        """Whether our handler is in place for every configured signal."""
        return all(signal.getsignal(s) == self._handler for s in self.signals)

    @property
    def server(self) -> str | None:
        """The name of the server the coordinator stops when the delay ends (``"uvicorn"``,
        ``"gunicorn"``, ``"asyncio"``, ``"trio"``, ``"waitress"``, ``"given"`` for a
        ``stop`` passed to :meth:`install`), or ``None`` when none is known."""
        return self._control.server if self._control is not None else None

    def _signal_names(self) -> str:
        return ", ".join(s.name for s in self.signals)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes of whatever it was doing: set
        # plain attributes and write to a pipe, nothing that takes a lock (logging does).
        passing = self._pass
        if passing is not None and passing[0] == signum:
            # Sent by this coordinator for another handler, to run in the main thread.
            self._pass = None
            if callable(passing[1]):
                passing[1](signum, frame)
            return
        now = time.monotonic()
        if not self._signalled:
            self._signalled = True
            self._steady = False
            self._by_signal = True
            self._signum, self._frame, self._t0, self._signal_at = signum, frame, now, now
            if self._wake is not None:
                os.write(self._wake[1], b"s")
            return
        if self._stopped.is_set():
            # The sequence has ended, yet this handler is in place (a server restored it):
            # the signal goes where it would have gone without us.
            self._pass_on(signum, frame)
            return
        if self._signal_at and now - self._signal_at < self.repeat_window:
            # A copy of the first signal (the whole process group signalled, then the
            # supervisor passing it on): the same shutdown. list.append takes no lock.
            self._repeats.append((signum, now - self._signal_at))
            if self._wake is not None:
                os.write(self._wake[1], b"r")
            return
        self._fast_exit(signum)

    def _pass_on(self, signum: int, frame: FrameType | None) -> None:
        original = self._original.get(signum, _launch.uninstalled_handler(signum))
        if callable(original):
            original(signum, frame)
        elif original != signal.SIG_IGN:  # the default action: restore it and let it happen
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def _deliver_in_main_thread(self, signum: int, handler: SignalHandler) -> None:
        """Have ``handler`` called with ``signum`` in the main thread, as a signal it
        handles would (trio's ``KeyboardInterrupt``, the default one of ``SIGINT``)."""
        self._pass = (signum, handler)
        if signal.getsignal(signum) != self._handler:
            self._pass = None
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, signum)

    def _fast_exit(self, signum: int) -> None:
        code = 128 + signum
        self.exit_code = code
        logger.error(
            "shutdown: second signal %s %.2f s after the first; exiting at once with code %d",
            _name(signum),
            (elapsed := time.monotonic() - self._t0),
            code,
            extra={"phase": "second_signal", "signal": _name(signum), "seconds": elapsed, "exit_code": code},
        )
        _flush_logs()
        os._exit(code)

    # -- the sequence ---------------------------------------------------------------------------

    def begin(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> bool:
        """Begin shutdown as the first signal does (for triggers other than a signal).

        Returns once readiness fails: ``True`` if shutdown began now, ``False`` if it had
        already begun.
        """
        self._start_thread()
        with self._lock:
            if self._signalled:
                return False
            self._signalled = True
            self._steady = False
            self._signum, self._frame, self._t0 = signum, frame, time.monotonic()
        assert self._wake is not None
        os.write(self._wake[1], b"b")
        self._draining.wait(5.0)
        return True

    def _start_thread(self) -> None:
        with self._lock:
            pid = os.getpid()
            if self._atexit_pid != pid:
                self._atexit_pid = pid
                atexit.register(self._at_exit)
            if self._thread is not None and self._thread_pid == pid:
                return  # started in this process (a thread started before a fork is not in the child)
            self._thread_pid = pid
            self._wake = os.pipe()
            self._thread = _threads.start(self._sequence, name="healthprobe-shutdown")

    def _sequence(self) -> None:
        assert self._wake is not None
        while not self._signalled:  # the pipe stays open: a late writer never meets a reused fd
            os.read(self._wake[0], 1)
        if self._by_signal and self.repeat_window > 0:
            # From here on the pipe carries the handler's word of a repeated signal.
            self._repeats_thread = True
            _threads.start(self._log_repeats, name="healthprobe-shutdown-repeats")
        self.registry.begin_drain()
        self._draining.set()
        control = self._control
        delay = self.delay
        if control is not None and control.development:
            delay = 0.0
            logger.info(
                "shutdown: %s runs under a development reloader: no shutdown delay",
                control.server,
                extra={"server": control.server},
            )
        self._phase(
            "signal",
            "shutdown: %s received; readiness fails, serving on for the %.1f s delay (%d request(s) in flight)",
            _name(self._signum or signal.SIGTERM),
            delay,
            (in_flight := self.in_flight),
            extra={"signal": _name(self._signum or signal.SIGTERM), "delay": delay, "in_flight": in_flight},
        )
        if delay > 0:
            self._finishing.wait(delay)
        if self._finishing.is_set():
            # A worker loop (or a server that stopped by itself) finished during the delay:
            # nothing is left to stop.
            if self._by_signal and self._control is not None:
                self._stopped.wait()  # the hooks, each bounded, then the checks' threads (1 s)
                self._exit_after_stop(None)
            return
        with self._lock:
            self._stop_at = time.monotonic()
            self._stopping.set()
        if self._by_signal:
            # A signalled process must end by the end of its budget, whatever the server's
            # stop, the drain or the hooks do in this thread or another: its own thread
            # counts from here, where the drain bound starts.
            _threads.start(self._watch_exit, name="healthprobe-shutdown-exit")
        self._phase(
            "drain",
            "shutdown: delay over after %.2f s; stopping accepting, draining %d in-flight request(s) (bound %.1f s)",
            self._stop_at - self._t0,
            (in_flight := self.in_flight),
            self.drain_timeout,
            extra={"seconds": self._stop_at - self._t0, "in_flight": in_flight, "drain_timeout": self.drain_timeout},
        )
        self._call_original()
        self._call(control.stop if control is not None else self._fallback, "stopping the server")
        self._watch_drain()
        if control is not None and control.release is not None:
            self._call(control.release, "letting the server return")

    def _call(self, func: Callable[[], object], what: str) -> None:
        try:
            func()
        except BaseException:  # SystemExit from a handler included: the sequence goes on
            logger.exception("shutdown: %s raised", what, extra={"phase": self.phase})

    def _call_original(self) -> None:
        """Call the application's own handler of the first signal, once (see :meth:`install`)."""
        signum = self._signum or signal.SIGTERM
        original = self._original.get(signum)
        if callable(original) and self._callable_handler(original):
            self._call(lambda: original(signum, self._frame), f"the application's {_name(signum)} handler")

    def _fallback(self) -> None:
        # No server recognised and no stop given: the handler found by the latest install,
        # when it is not the application's (already called), is an unknown server's.
        signum = self._signum or signal.SIGTERM
        previous = self._previous.get(signum)
        if callable(previous) and self._callable_handler(previous) and previous != self._original.get(signum):
            previous(signum, self._frame)

    def _watch_drain(self) -> None:
        """Wait until no request, stream or WebSocket session is in flight, or the drain
        bound is reached; at the bound, close the WebSocket sessions still open with code
        1001 ("going away", RFC 6455 section 7.4.1) and give them up to
        :data:`SESSION_CLOSE_WAIT` seconds to end."""
        deadline = self._stop_at + self.drain_timeout
        while self.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(_POLL)
        if self._sessions and self.in_flight > 0:
            closers = list(self._sessions)
            logger.info(
                "shutdown: drain bound of %.1f s reached; closing %d WebSocket session(s) with code 1001",
                self.drain_timeout,
                len(closers),
                extra={"phase": "drain", "sessions": len(closers), "drain_timeout": self.drain_timeout},
            )
            thread = _threads.start(_close_all, closers, name="healthprobe-sessions")
            end = time.monotonic() + SESSION_CLOSE_WAIT
            thread.join(SESSION_CLOSE_WAIT)
            # Wait for these sessions only: a stream still running goes on until the server
            # is released, and waiting for it would take the hooks' time for nothing.
            while any(close in self._sessions for close in closers) and time.monotonic() < end:
                time.sleep(_POLL)
        self._drained()

    def _at_exit(self) -> None:
        # The interpreter exits after a signalled shutdown that no server integration
        # finished (a server that returned by itself: gunicorn without healthprobe's
        # configuration, waitress-serve), or after an adapter installed the coordinator
        # here and the server ended the process by itself (a gunicorn worker recycled after
        # --max-requests): drain what is left and run the hooks now.
        pid = os.getpid()
        installed_here = self._by_signal or (self._automatic_pid == pid and self._pid == pid)
        if installed_here and self._thread_pid == pid and not self._stopped.is_set():
            self.finish()

    def _log_repeats(self) -> None:
        assert self._wake is not None
        logged = 0
        while True:
            done = self._stopped.is_set()  # before reading what is to be logged
            while logged < len(self._repeats):
                signum, after = self._repeats[logged]
                logged += 1
                logger.info(
                    "shutdown: %s again %.3f s after the first signal, within the %.1f s repeat window; "
                    "taken as the same shutdown",
                    _name(signum),
                    after,
                    self.repeat_window,
                    extra={"phase": "repeat", "signal": _name(signum), "seconds": after},
                )
            if done:
                return
            os.read(self._wake[0], 1)  # a repeat ("r"), or the end of the sequence ("f")

    def _exit_deadline(self) -> float | None:
        """When a signalled process must have exited (``time.monotonic()``): the end of its
        budget, counted from the end of the delay; ``None`` before the delay ended or when
        no signal began the shutdown."""
        if not self._by_signal or not self._stopping.is_set():
            return None
        return self._stop_at + self._after_delay()

    def _watch_exit(self) -> None:
        """Exit by force at the end of the budget unless the sequence finished by then, then
        see to it that the process exits (:meth:`_exit_after_stop`). Runs in a thread of its
        own from the end of the delay, so that nothing the sequence waits for delays it."""
        while True:
            deadline = self._exit_deadline()
            assert deadline is not None
            if self._stopped.wait(max(0.0, deadline - time.monotonic())):
                break
            if time.monotonic() >= (self._exit_deadline() or deadline):  # a hook added meanwhile moves it
                self._forced_exit()
        self._exit_after_stop(self._exit_deadline())

    def _exit_after_stop(self, deadline: float | None) -> None:
        """Once a signalled sequence has finished, exit with the logged exit code if the
        process is still running :data:`EXIT_TIMEOUT` seconds later, or at ``deadline``
        (the end of the budget), whichever comes first: a task that ignores its cancellation
        or a thread that never ends would otherwise keep it running until the kubelet's
        ``SIGKILL``. Not for a worker loop or an unknown server's process (no server was
        stopped by the coordinator): after :meth:`finish` returns, that process is the
        program's."""
        if self._control is None:
            return
        end = self._stopped_at + EXIT_TIMEOUT
        if deadline is not None:
            end = min(end, deadline)
        time.sleep(max(0.0, end - time.monotonic()))
        self._exit_late()

    def _exit_late(self) -> NoReturn:
        now = time.monotonic()
        logger.warning(
            "shutdown: still running %.2f s after it stopped (%.2f s after the signal)%s; exiting with code %d",
            (after := now - self._stopped_at),
            now - self._t0,
            _leftovers(self._loop),
            self.exit_code,
            extra={"phase": "exit", "seconds": after, "exit_code": self.exit_code},
        )
        _flush_logs()
        os._exit(self.exit_code)

    def _forced_exit(self) -> NoReturn:
        self.exit_code = FORCED_EXIT_CODE
        now = time.monotonic()
        state = f"in phase {self.phase}"
        if self._hook_running is not None:
            state += f" (hook {self._hook_running!r} running)"
        backlog = self._backlog_note()
        logger.error(
            "shutdown: not stopped %.2f s after the delay ended (%.2f s after the signal), at the end of its budget "
            "of drain %.1f s + %s; %d request(s) in flight %s%s; exiting with code %d",
            (after := now - self._stop_at),
            now - self._t0,
            self.drain_timeout,
            self._hooks_text(),
            (in_flight := self.in_flight),
            state,
            backlog,
            FORCED_EXIT_CODE,
            extra={
                "phase": "forced_exit",
                "seconds": after,
                "bound": self._after_delay(),
                "in_flight": in_flight,
                "exit_code": FORCED_EXIT_CODE,
            },
        )
        _flush_logs()
        os._exit(FORCED_EXIT_CODE)

    def _backlog_note(self) -> str:
        """``"; connection(s) ..."`` when the server says connections wait in its listen
        backlog (they are reset when the process exits), else ``""``."""
        waiting = self._backlog
        try:
            if waiting is None or not waiting():
                return ""
        except Exception:  # a listener closed meanwhile: nothing waits in it
            return ""
        return "; connection(s) waiting in the listen backlog are reset unless another worker accepts them"

    @property
    def is_draining(self) -> bool:
        """``True`` from the first signal (or :meth:`begin`) on."""
        return self._signalled

    @property
    def is_stopping(self) -> bool:
        """``True`` once the delay is over and the server should stop accepting."""
        return self._stopping.is_set()

    @property
    def is_stopped(self) -> bool:
        """``True`` once :meth:`finish` has completed."""
        return self._stopped.is_set()

    @property
    def phase(self) -> str:
        """The current phase, one of :data:`PHASES`: ``serving`` before any signal, then
        ``delay`` (readiness fails, still serving), ``drain`` (not accepting, waiting for
        in-flight requests), ``hooks`` (cleanup hooks running), ``stopped``."""
        if self._stopped.is_set():
            return "stopped"
        if self._hooks_claimed:
            return "hooks"
        if self._stopping.is_set():
            return "drain"
        if self._signalled:
            return "delay"
        return "serving"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until shutdown begins, like :meth:`threading.Event.wait`.

        Args:
            timeout: seconds to wait at most; ``None`` waits for ever.

        Returns:
            ``True`` if draining, ``False`` on timeout.
        """
        return self._draining.wait(timeout)

    async def wait_draining(self) -> None:
        """Return once shutdown has begun (asyncio or trio; polls every 50 ms)."""
        await _until(self._draining.is_set)

    async def wait_stopping(self) -> None:
        """Return once the delay is over: usable as hypercorn's ``shutdown_trigger``."""
        await _until(self._stopping.is_set)

    # -- in-flight requests ---------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests counted by the middleware that have not finished."""
        return len(self._requests)

    def request_started(self) -> None:
        """Count one request as in flight (the middleware calls this)."""
        self._requests.append(None)

    def request_cancelled(self) -> None:
        """Record that the server cancelled an in-flight request while draining (the ASGI
        middleware calls this, before :meth:`request_finished`), so the drain is not logged
        as clean."""
        self._cut.append("")

    def request_cut(self, error: BaseException) -> None:
        """Record that an in-flight request was ended unfinished by ``error``, an exception
        that ends a process rather than a request (``SystemExit``, ``KeyboardInterrupt``:
        gunicorn's quick shutdown and its worker timeout raise ``SystemExit`` in the request),
        so that it is counted and logged as cut, never as drained. The WSGI middleware calls
        this before it counts the request finished.

        Args:
            error: the exception that ended the request; its type names it in the log.
        """
        self._cut.append(type(error).__name__)

    def _cut_text(self) -> str:
        """What the server cut, for the log: ``"2 request(s) cancelled by the server
        unfinished"``, ``"1 request(s) ended unfinished by SystemExit"``; ``""`` if nothing."""
        cut = list(self._cut)
        parts = []
        if cancelled := cut.count(""):
            parts.append(f"{cancelled} request(s) cancelled by the server unfinished")
        for name in sorted(set(cut) - {""}):
            parts.append(f"{cut.count(name)} request(s) ended unfinished by {name}")
        return "; ".join(parts)

    def request_finished(self) -> None:
        """Count one in-flight request as finished (the middleware calls this, once per
        :meth:`request_started`)."""
        try:
            self._requests.pop()
        except IndexError:  # more finishes than starts: a caller's bug, never a negative count
            logger.warning("shutdown: request_finished() called with no request in flight")

    def _drain_left(self) -> float:
        if not self._stopping.is_set():
            return self.drain_timeout
        return max(0.0, self._stop_at + self.drain_timeout - time.monotonic())

    def drain_remaining(self) -> float:
        """Seconds left of the drain bound (the full bound before the delay has ended)."""
        return self._drain_left()

    def drain(self) -> bool:
        """Block until no request is in flight, within what is left of ``drain_timeout``.

        Returns ``True`` when drained cleanly, ``False`` when the bound was reached first
        or the server cut requests (:meth:`request_cancelled`, :meth:`request_cut`).
        """
        deadline = time.monotonic() + self._drain_left()
        while self.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(_POLL)
        return self._drained()

    async def drain_async(self) -> bool:
        """:meth:`drain` for async callers (shielded from cancellation)."""
        with anyio.CancelScope(shield=True):
            deadline = time.monotonic() + self._drain_left()
            await _until(lambda: self.in_flight <= 0 or time.monotonic() >= deadline)
        return self._drained()

    def _drained(self) -> bool:
        """Log how the drain ended, once, with the measured seconds and what the server cut;
        whether it was clean (no request left in flight, none cut)."""
        left = self.in_flight
        now = time.monotonic()
        cut = self._cut_text()
        tail = (f"; {cut}" if cut else "") + self._backlog_note()
        clean = left == 0 and not cut
        quick = f"; {self._quick}" if self._quick else ""
        extra: dict[str, object] = {"in_flight": left, "cancelled": len(self._cut)}
        args: tuple[object, ...]
        if not self._signalled and self._quick is not None:
            # The server stopped at once on a signal of its own: no delay, no drain.
            message = (
                "shutdown: %s in process %d: readiness did not fail first, no delay and no drain; "
                "%d request(s) in flight%s"
            )
            args = (self._quick, os.getpid(), left, tail)
            clean = False
        elif not self._signalled:
            # The server stopped by itself (its own signal handling, a parent process, a
            # request limit): nothing here knows what it did to its requests.
            message = (
                "shutdown: the server stopped with no shutdown signal received by healthprobe in process %d: "
                "readiness did not fail before it stopped accepting; %d request(s) in flight%s"
            )
            args = (os.getpid(), left, tail)
        elif not self._stopping.is_set() and not (clean and not tail):
            took = now - self._t0
            message = (
                "shutdown: the server stopped during the delay, %.2f s after the signal%s; %d request(s) in flight%s"
            )
            args = (took, quick, left, tail)
            extra["seconds"] = took
            clean = False
        elif left > 0:
            took = now - self._stop_at
            message = (
                "shutdown: drain bound of %.1f s reached with %d request(s) still in flight "
                "(%.2f s after the delay ended)%s"
            )
            args = (self.drain_timeout, left, took, tail)
            extra.update(seconds=took, drain_timeout=self.drain_timeout)
        elif tail:  # the server ended them (uvicorn at its timeout_graceful_shutdown, gunicorn's quick shutdown)
            took = now - (self._stop_at or self._t0)
            message = "shutdown: drain ended after %.2f s%s%s"
            args = (took, quick, tail)
            extra["seconds"] = took
        else:  # from the end of the delay; from the signal for a worker loop that finished during it
            took = now - (self._stop_at or self._t0)
            message = "shutdown: drained after %.2f s"
            args = (took,)
            extra["seconds"] = took
        level = logging.INFO if clean and not tail else logging.WARNING
        if self._phase("drained", message, *args, level=level, extra=extra) and tail:
            self._logged.add("cut")  # said here: not again when the process stops
        return clean

    # -- hooks ----------------------------------------------------------------------------------

    def _claim_hooks(self) -> bool:
        with self._lock:
            if self._hooks_claimed:
                return False
            self._hooks_claimed = True
            return True

    def run_hooks(self) -> None:
        """Run the cleanup hooks once, last registered first, each bounded by
        ``hook_timeout`` and, in a signalled shutdown, by the end of the :attr:`budget`.
        Later calls (from any thread or loop) do nothing."""
        if not self._claim_hooks():
            return
        start = time.monotonic()
        for name, func in reversed(self._hooks):
            bound, by_budget = self._hook_bound()
            if bound <= 0:
                self._report_hook(name, [None], "skipped", 0.0)
                continue
            began = time.monotonic()
            self._hook_running = name
            thread, outcome = _start_hook(func)
            thread.join(bound)
            self._hook_running = None
            cut = ("budget" if by_budget else "bound") if thread.is_alive() else ""
            self._report_hook(name, outcome, cut, time.monotonic() - began)
        self._hooks_finished(start)

    async def run_hooks_async(self) -> None:
        """:meth:`run_hooks` from an event loop: async hooks are awaited on this loop, in a
        cancel scope shielded from the server's own cancellation."""
        if not self._claim_hooks():
            return
        start = time.monotonic()
        for name, func in reversed(self._hooks):
            bound, by_budget = self._hook_bound()
            if bound <= 0:
                self._report_hook(name, [None], "skipped", 0.0)
                continue
            began = time.monotonic()
            self._hook_running = name
            outcome: list[BaseException | None] = [None]
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + bound) as scope:
                if _is_async(func):
                    try:
                        await func()
                    except Exception as exc:
                        outcome[0] = exc
                else:
                    thread, outcome = _start_hook(func)
                    await _until(lambda t=thread: not t.is_alive())  # type: ignore[misc]
            self._hook_running = None
            cut = ("budget" if by_budget else "bound") if scope.cancelled_caught else ""
            self._report_hook(name, outcome, cut, time.monotonic() - began)
        self._hooks_finished(start)

    def _close_timeout(self) -> float:
        """Seconds to wait for the sync checks' threads to end after the hooks: 1 s, less
        what the budget of a signalled shutdown no longer has."""
        deadline = self._exit_deadline()
        if deadline is None:
            return 1.0
        return max(0.0, min(1.0, deadline - _EXIT_RESERVE / 2 - time.monotonic()))

    def _hook_bound(self) -> tuple[float, bool]:
        """Seconds the next hook may run, and whether the end of the budget (rather than
        ``hook_timeout``) sets them: in a signalled shutdown, hooks end
        :data:`_EXIT_RESERVE` seconds before the budget does, so that the process exits
        within it."""
        deadline = self._exit_deadline()
        if deadline is None:
            return self.hook_timeout, False
        left = deadline - _EXIT_RESERVE - time.monotonic()
        if left < self.hook_timeout:
            return max(0.0, left), True
        return self.hook_timeout, False

    def _report_hook(self, name: str, outcome: list[BaseException | None], cut: str, took: float) -> None:
        if cut == "skipped":
            logger.error(
                "shutdown: hook %r not run: the shutdown budget of %.1f s is spent",
                name,
                self.budget,
                extra={"phase": "hook", "hook": name, "seconds": 0.0, "timed_out": True},
            )
        elif cut == "budget":
            logger.error(
                "shutdown: hook %r cut after %.2f s, at the end of the shutdown budget of %.1f s",
                name,
                took,
                self.budget,
                extra={"phase": "hook", "hook": name, "seconds": took, "timed_out": True},
            )
        elif cut:
            logger.error(
                "shutdown: hook %r cut at its bound of %.1f s",
                name,
                self.hook_timeout,
                extra={"phase": "hook", "hook": name, "seconds": took, "timed_out": True},
            )
        elif outcome and outcome[0] is not None:
            error = outcome[0]
            logger.error(
                "shutdown: hook %r raised %s",
                name,
                type(error).__name__,
                exc_info=error,
                extra={"phase": "hook", "hook": name, "seconds": took, "error_type": type(error).__name__},
            )
        else:
            logger.info(
                "shutdown: hook %r finished in %.2f s",
                name,
                took,
                extra={"phase": "hook", "hook": name, "seconds": took},
            )

    def _hooks_finished(self, start: float) -> None:
        self._hooks_done.set()
        self._phase(
            "hooks",
            "shutdown: %d hook(s) done in %.2f s",
            len(self._hooks),
            (took := time.monotonic() - start),
            extra={"hooks": len(self._hooks), "seconds": took},
        )

    # -- the end --------------------------------------------------------------------------------

    def finish(self) -> int:
        """Drain, run the hooks (once), mark the registry stopped and restore the signal
        handlers. Returns the exit code: 0 (a forced exit never returns here)."""
        self._finishing.set()
        self.drain()
        self.run_hooks()
        self.registry.close(self._close_timeout())  # the sync checks' threads, with their teardowns
        return self._finished()

    async def finish_async(self) -> int:
        """:meth:`finish` for async callers (shielded from cancellation)."""
        self._loop = _asyncio_loop()
        self._finishing.set()
        with anyio.CancelScope(shield=True):
            await self.drain_async()
            await self.run_hooks_async()
            await anyio.to_thread.run_sync(self.registry.close, self._close_timeout())
        return self._finished()

    async def finish_cancelled(self) -> int:
        """:meth:`finish_async` for a serving task or lifespan that is being cancelled (an
        embedding program's Ctrl-C, a task group ending): the hooks run at once, on this
        loop, shielded and each bounded by ``hook_timeout``, without waiting for a drain
        (the server's requests are being cancelled with it). Returns the exit code."""
        self._loop = _asyncio_loop()
        self._finishing.set()
        with anyio.CancelScope(shield=True):
            if not self._stopped.is_set():
                logger.info(
                    "shutdown: the serving task was cancelled; running the cleanup hooks", extra={"phase": "cancelled"}
                )
            await self.run_hooks_async()
            # Hooks another task runs (the lifespan's, on its shutdown message) end before
            # this one lets the cancellation go on, and with it the event loop.
            deadline = time.monotonic() + self.hook_timeout * len(self._hooks) + _POLL
            await _until(lambda: self._hooks_done.is_set() or time.monotonic() >= deadline)
            await anyio.to_thread.run_sync(self.registry.close, self._close_timeout())
        return self._finished()

    def _finished(self) -> int:
        if self._cut:  # after the drain was logged: the server cut them at its own bound
            self._phase(
                "cut",
                "shutdown: %s",
                self._cut_text(),
                level=logging.WARNING,
                extra={"cancelled": len(self._cut)},
            )
        self.registry.mark_stopped()
        self.uninstall()
        if not self._stopped.is_set():
            self._stopped_at = time.monotonic()
            self._finishing.set()
            self._stopped.set()
            if self._repeats_thread and self._wake is not None:
                os.write(self._wake[1], b"f")  # let the thread logging repeats end
            if self._t0:
                self._phase(
                    "stopped",
                    "shutdown: stopped %.2f s after the signal; exit code %d",
                    time.monotonic() - self._t0,
                    self.exit_code,
                    extra={"seconds": time.monotonic() - self._t0, "exit_code": self.exit_code},
                )
            else:  # the server ended by itself: its exit status is its own, not known here
                self._phase("stopped", "shutdown: stopped without a signal", extra={"seconds": None})
        return self.exit_code

    def _phase(
        self, phase: str, message: str, *args: object, level: int = logging.INFO, extra: dict[str, object] | None = None
    ) -> bool:
        """Log the line of ``phase`` unless it was logged already, with ``phase`` and ``extra``
        as the record's fields (docs/logging.md); whether it was logged now."""
        with self._lock:
            if phase in self._logged:
                return False
            self._logged.add(phase)
        logger.log(level, message, *args, extra={"phase": phase, **(extra or {})})
        return True


#: The shutdown phases in order, as :attr:`GracefulShutdown.phase` names them (DESIGN.md's
#: shutdown table); the Prometheus collector exports one series per phase.
PHASES: tuple[str, ...] = GracefulShutdown.phases


#: Exit code of a signalled shutdown that had not finished at the end of its budget
#: (:attr:`GracefulShutdown.budget`).
FORCED_EXIT_CODE = 1
#: Seconds a process whose signalled shutdown sequence has finished (``stopped ... exit code
#: N`` logged) may take to exit, after its server returned, before it exits with that code by
#: force: a task that ignores its cancellation (it keeps ``asyncio.run`` waiting for it) or a
#: thread that never ends would otherwise keep it running until the kubelet's ``SIGKILL``.
#: Never later than the end of the budget.
EXIT_TIMEOUT = 2.0
#: Seconds before the end of the budget at which the hooks of a signalled shutdown are cut,
#: so that the process can exit within it.
_EXIT_RESERVE = 0.25


def _seconds(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers + logger.handlers:
        try:
            handler.flush()
        except Exception:
            pass


def _asyncio_loop() -> Any:
    """The running asyncio event loop, or ``None`` (under trio, or no loop)."""
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _leftovers(loop: Any) -> str:
    """What may keep a stopped process running, for its last log line: the tasks still
    pending on ``loop`` (an asyncio loop, or ``None``) and the threads other than the main
    thread that the interpreter waits for (non-daemon); ``""`` if none is found."""
    import asyncio

    found: list[str] = []
    if loop is not None:
        try:
            tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        except Exception:  # read from another thread: the set may change meanwhile
            tasks = []
        for task in tasks[:5]:
            coro = task.get_coro()
            found.append(f"task {task.get_name()!r} ({getattr(coro, '__qualname__', type(coro).__name__)})")
        if len(tasks) > 5:
            found.append(f"{len(tasks) - 5} more task(s)")
    main = threading.main_thread()
    threads = [t.name for t in threading.enumerate() if t is not main and not t.daemon]
    found += [f"thread {name!r}" for name in threads[:5]]
    if len(threads) > 5:
        found.append(f"{len(threads) - 5} more thread(s)")
    return f": left running: {', '.join(found)}" if found else ""


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _is_async(func: object) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


async def _until(done: Callable[[], bool]) -> None:
    # The state changes in signal handlers and other threads, which cannot set an
    # anyio.Event of this loop; polling works the same under asyncio and trio.
    while not done():  # noqa: ASYNC110
        await anyio.sleep(_POLL)


def _start_hook(func: Hook) -> tuple[threading.Thread, list[BaseException | None]]:
    outcome: list[BaseException | None] = [None]

    def target() -> None:
        try:
            if _is_async(func):

                async def call() -> None:
                    await func()

                anyio.run(call)
            else:
                result = func()
                if inspect.isawaitable(result):
                    anyio.run(_await, result)
        except BaseException as exc:
            outcome[0] = exc

    return _threads.start(target, name="healthprobe-shutdown-hook"), outcome


async def _await(awaitable: Awaitable[Any]) -> None:
    await awaitable


def _close_all(closers: list[Callable[[], None]]) -> None:
    for close in closers:
        try:
            close()
        except Exception:  # a session that ended meanwhile, or a loop that is gone
            logger.debug("shutdown: closing a WebSocket session failed", exc_info=True)
