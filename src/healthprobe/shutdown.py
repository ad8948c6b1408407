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

The coordinator itself imports no web framework and no server integration. Servers are
driven through a *stop* callable or a :class:`ServerControl` given to
:meth:`GracefulShutdown.install` (the integrations of :mod:`healthprobe.servers` pass their
own), or recognised by the signal handler they installed, and requests are counted in
:attr:`GracefulShutdown.requests_in_flight` (:class:`InFlight`) by the ``shutdown=`` argument
of the ASGI and WSGI ``HealthMiddleware``. Without any server, a worker loop reads
:attr:`~GracefulShutdown.is_draining`, blocks in :meth:`~GracefulShutdown.wait` or awaits
:meth:`~GracefulShutdown.wait_draining`, then calls :meth:`~GracefulShutdown.finish`.

:class:`GracefulShutdown` composes one private part per concept: its signal handlers and
the repeat-window rule (``_handlers``, ``_signals``), the phases and their log lines
(``_timeline``), the in-flight accounting and the drain's waiting (``_inflight``), and the
cleanup hooks with their share of the budget (``_hooks``); which server put a handler in
place, and how to stop it, is ``_launch``'s.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import typing
import weakref

import anyio

from . import _handlers, _hooks, _inflight, _launch, _signals, _threads, _timeline, _types
from . import registry as _registry
from ._hooks import Hook
from ._inflight import InFlight
from ._launch import ServerControl

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import FrameType
    from typing import Any, NoReturn

    from ._hooks import H
    from ._types import Lifecycle
    from .registry import HealthRegistry

__all__ = [
    "EXIT_TIMEOUT",
    "FORCED_EXIT_CODE",
    "KUBERNETES_DELAY",
    "PHASES",
    "REPEAT_WINDOW",
    "SESSION_CLOSE_WAIT",
    "GracefulShutdown",
    "Hook",
    "InFlight",
    "ServerControl",
    "current",
]

_logger = logging.getLogger("healthprobe.shutdown")

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
#: Seconds a drain waits, at most, for the shutdown thread to log the signal's line, so that
#: a worker loop that saw the signal first does not log its drain before it.
_SIGNAL_LINE_WAIT = 1.0

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
    phases: tuple[str, ...] = _timeline.PHASES

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
        if not isinstance(registry, _registry.HealthRegistry):
            raise TypeError(f"registry must be a HealthRegistry, got {type(registry).__name__}")
        if delay is None:
            delay = KUBERNETES_DELAY if os.environ.get("KUBERNETES_SERVICE_HOST") else 0.0
        self.registry = registry
        self.delay = _signals.check_seconds("delay", delay)
        self.drain_timeout = _signals.check_seconds("drain_timeout", drain_timeout)
        self.hook_timeout = _signals.check_seconds("hook_timeout", hook_timeout)
        self.grace_period = _signals.check_seconds("grace_period", grace_period)
        self.repeat_window = _signals.check_seconds("repeat_window", repeat_window)
        self.signals = tuple(signal.Signals(s) for s in signals)
        if not self.signals:
            raise ValueError("signals must name at least one signal")
        uncatchable = [s.name for s in self.signals if s in (signal.SIGKILL, signal.SIGSTOP)]
        if uncatchable:
            raise ValueError(f"{', '.join(uncatchable)} cannot be handled by a process")
        #: The requests and sessions in flight (:class:`InFlight`; the adapters count in its
        #: ``slots``): created once and never replaced, since the adapters hold its lists.
        self.requests_in_flight = InFlight()
        #: ``True`` while installed in this process and no shutdown signal came (nor
        #: :meth:`begin`): all a request then needs from the coordinator is to be counted.
        #: A plain attribute, read by the adapters per request; read-only for callers.
        self.steady = False
        #: The exit code the sequence logged: 0, ``128 + signal number`` after a second
        #: signal, :data:`FORCED_EXIT_CODE` at the end of the budget.
        self.exit_code = 0
        # Set by the signal handler, which takes no lock (a lock held by the interrupted
        # code of the same thread would never be released); the coordinator's thread,
        # woken through a pipe, does the rest.
        self._signalled = False
        self._lock = threading.RLock()
        self._timeline = _timeline.Timeline()
        self._hooks = _hooks.Hooks(self._timeline, self.hook_timeout)
        self._handlers = _handlers.SignalHandlers(
            self._on_signal,
            self.signals,
            self.repeat_window,
            first=self._first_signal,
            wake=self._notify,
            second=self._fast_exit,
            ended=self._timeline.stopped.is_set,
        )
        self._control: ServerControl | None = None
        # Process id of the last automatic install that could not stop the server (warned).
        self._auto_failed_pid = 0
        # Process id where an adapter installed the coordinator by itself: there the hooks
        # also run when the interpreter exits without a signal (a worker its server recycles).
        self._automatic_pid = 0
        # Whether an ASGI lifespan reached the middleware: without one the hooks run when
        # the server returns (healthprobe.servers.uvicorn) or at interpreter exit.
        self._lifespan_seen = False
        self._own = _OwnThread()
        # The asyncio loop the sequence finished on, to name the tasks left on it if the
        # process does not exit (see _exit_late).
        self._loop: Any = None
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
        self._hooks.add(func, name)
        self._warn_budget()

    @typing.overload
    def hook(self, func: H, /) -> H: ...

    @typing.overload
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
        return self.drain_timeout + self._hooks.share()

    def _warn_budget_when_started(self) -> None:
        """Check the budget against the grace period at the registry's first lifecycle
        change (startup passing, or the shutdown beginning), not at construction: the
        application registers its hooks after building the coordinator (in a factory after
        ``init_app``, in a lifespan, in a module imported later), and a warning made before
        them would count none. After that, :meth:`add_hook` checks again."""
        if self.registry.lifecycle is not _types.Lifecycle.STARTING:
            self._budget_became_due()
            return
        became_due = weakref.WeakMethod(self._budget_became_due)  # the registry may outlive us

        def on_lifecycle(old: Lifecycle, new: Lifecycle) -> None:
            method = became_due()
            if method is not None:
                method()

        self.registry.add_lifecycle_listener(on_lifecycle)

    def _budget_became_due(self) -> None:
        if not self._hooks.budget_due:
            self._hooks.budget_due = True
            self._warn_budget()

    def _warn_budget(self) -> None:
        self._hooks.warn_budget(self.delay, self.drain_timeout, self.grace_period)

    # -- signal handlers -----------------------------------------------------------------------

    def install(self, stop: Callable[[], None] | None = None, *, control: ServerControl | None = None) -> bool:
        """Install the signal handlers in this (serving) process, on top of the current ones.

        Call it from the process that serves, after the server installed its own handlers
        (the server integrations and the adapters do). Calling it again re-installs on top
        of any handler set in between, so the order against the server's own installation
        does not matter.

        What the coordinator does with the handlers it finds:

        * the application's own handler (a Python callable in place before any server's or
          ours, found at construction or at the first install) is called once, from the
          coordinator's thread, when the delay ends; it is restored by :meth:`uninstall`,
          and a signal that comes once the sequence has ended is given to it (or, where
          there was none, gets the default action), whatever the install order;
        * a recognised server's handler (uvicorn, a gunicorn worker, an asyncio loop's,
          trio's) tells how to stop that server when the delay ends, unless ``stop`` or
          ``control`` is given (uvicorn and gunicorn through the factories that
          :mod:`healthprobe.servers` registers; ``import healthprobe`` imports it).

        Args:
            stop: called once, from the coordinator's thread, when the delay ends, to make
                the server stop accepting. When ``None`` and no server is recognised, the
                handler found by the latest install, if it is a Python callable other than
                the application's and than the default ``KeyboardInterrupt`` raiser, is
                called instead (an unknown server's handler, which stops it).
            control: how to drive the server through the sequence, for the integrations of
                :mod:`healthprobe.servers`, which know their server; ignored when ``stop``
                is given.

        Returns:
            ``True`` if a handler was installed now; ``False`` outside the main thread
            (signals can only be handled there) or when already in place.
        """
        return self._install(stop, control=control)

    def install_automatically(self, server: str, *, control: ServerControl | None = None) -> bool:
        """Install as an adapter does by itself (at ASGI lifespan startup, as a WSGI worker
        imports the application, under ``waitress-serve``): only where the server can be
        stopped when the delay ends, else a WARNING naming the fix (once per process) and
        nothing installed; under a development server, nothing (an INFO line says so).

        Args:
            server: the server's name (``"gunicorn"``, ``"hypercorn"``, ``"waitress"``, ...)
                as the adapter knows it, or ``""`` when unknown; it selects the fix named
                in the warning.
            control: how to drive the server, when the caller knows it (see :meth:`install`).

        Returns:
            ``True`` if a handler was installed now, as :meth:`install` does.
        """
        return self._install(automatic=server, control=control)

    def adopt(self, server: str = "") -> None:
        """Install automatically (:meth:`install_automatically`), as an adapter does at a
        process's first request, unless installed in this process already, found unable to
        stop its server here, or signalled.

        Args:
            server: the server's name as the adapter knows it, or ``""`` when unknown.
        """
        pid = os.getpid()
        if self._handlers.pid != pid and self._auto_failed_pid != pid and not self._signalled:
            self._install(automatic=server)

    def note_lifespan(self) -> None:
        """Record that an ASGI lifespan reached the adapter (it calls this): the hooks then
        run at the lifespan's shutdown, not when the server returns (see
        :attr:`lifespan_seen`)."""
        self._lifespan_seen = True

    @property
    def lifespan_seen(self) -> bool:
        """Whether an ASGI lifespan reached the adapter (:meth:`note_lifespan`)."""
        return self._lifespan_seen

    def _install(
        self,
        stop: Callable[[], None] | None = None,
        *,
        automatic: str | None = None,
        control: ServerControl | None = None,
    ) -> bool:
        """:meth:`install`; with ``automatic`` (the server's name, or ``""`` when unknown),
        :meth:`install_automatically`."""
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
                    _logger.info(
                        "shutdown: %s is a development server: SIGTERM stops it at once, with no shutdown delay",
                        development,
                        extra={"server": development},
                    )
                return False
        handlers = self._handlers
        if not _launch.in_main_thread():
            if automatic is not None and handlers.pid != pid:
                self._cannot_stop(automatic if automatic in ("gunicorn", "waitress", "werkzeug") else "thread")
            else:
                _logger.debug("shutdown: not installing signal handlers outside the main thread")
            return False
        handlers.renew_original(pid)
        found = handlers.found()
        if handlers.pid == pid and handlers.in_place(found):
            self._warn_budget()
            return False
        if handlers.pid != pid and self._control is not None and control is None and self._control.server != "given":
            self._control = None  # recognised in another process (before a fork)
        if self._control is None:
            self._control = _launch.control_for(self, found, handlers.deliver_in_main_thread)
            found = handlers.found()  # an asyncio loop's were taken off
        if automatic is not None and self._control is None:
            unknown = handlers.fallback_stop(found)
            if unknown is None:
                self._cannot_stop(_launch.uvloop_or(found, automatic))
                return False
            if self._auto_failed_pid != pid:
                _logger.warning(_launch.unknown_server(unknown), extra={"server": _launch.owner_of(unknown)[1] or None})
        if automatic is not None:
            self._automatic_pid = pid
        handlers.take_over(found, pid)
        self._start_thread()
        handlers.pid = pid
        self.steady = not self._signalled
        control = self._control
        _logger.debug(
            "shutdown: handlers installed in process %d for %s (server: %s)",
            pid,
            handlers.names(),
            control.server if control is not None else "none recognised",
            extra={"server": control.server if control is not None else None},
        )
        self._warn_budget()
        return True

    def _cannot_stop(self, server: str) -> None:
        pid = os.getpid()
        if self._auto_failed_pid != pid:
            self._auto_failed_pid = pid
            _logger.warning(_launch.unsupported(server), extra={"server": server or None})

    def uninstall(self) -> None:
        """Where our handler is still in place, put back the one it replaced: the server's
        own, which the server replaces in turn with what it found when it returns, or the
        application's (see :meth:`install`)."""
        self._handlers.uninstall()

    @property
    def pid(self) -> int | None:
        """The id of the process where :meth:`install` last installed handlers, or ``None``."""
        return self._handlers.pid

    @property
    def installed(self) -> bool:
        """Whether our handler is in place for every configured signal."""
        return self._handlers.installed

    @property
    def server(self) -> str | None:
        """The name of the server the coordinator stops when the delay ends (``"uvicorn"``,
        ``"gunicorn"``, ``"asyncio"``, ``"trio"``, ``"waitress"``, ``"given"`` for a
        ``stop`` passed to :meth:`install`), or ``None`` when none is known."""
        return self._control.server if self._control is not None else None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # The handler in place: it names this coordinator as its owner; the rule is _handlers'.
        self._handlers.on_signal(signum, frame)

    def _first_signal(self, now: float) -> None:
        # Called by the signal handler on the first signal: plain attributes and a pipe.
        self._signalled = True
        self.steady = False
        self._timeline.t0 = now
        self._notify(b"s")

    def _notify(self, word: bytes) -> None:
        if self._own.pipe is not None:
            os.write(self._own.pipe[1], word)

    def _fast_exit(self, signum: int) -> None:
        code = 128 + signum
        self.exit_code = code
        self._timeline.second_signal(signum, code)
        _signals.flush_logs()
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
            self._handlers.begun(signum, frame)
            self._signalled = True
            self.steady = False
            self._timeline.t0 = time.monotonic()
        self._notify(b"b")
        self._timeline.draining.wait(5.0)
        return True

    def _start_thread(self) -> None:
        own = self._own
        with self._lock:
            pid = os.getpid()
            if own.atexit_pid != pid:
                own.atexit_pid = pid
                atexit.register(self._at_exit)
            if own.thread is not None and own.pid == pid:
                return  # started in this process (a thread started before a fork is not in the child)
            own.pid = pid
            own.pipe = os.pipe()
            own.thread = _threads.start(self._sequence, name="healthprobe-shutdown")

    def _sequence(self) -> None:
        own = self._own
        while not self._signalled:  # the pipe stays open: a late writer never meets a reused fd
            own.read()
        handlers, timeline = self._handlers, self._timeline
        if handlers.by_signal and self.repeat_window > 0:
            # From here on the pipe carries the handler's word of a repeated signal.
            own.logs_repeats = True
            _threads.start(self._log_repeats, name="healthprobe-shutdown-repeats")
        control = self._control
        delay = self.delay
        if control is not None and control.development:
            delay = 0.0
            _logger.info(
                "shutdown: %s runs under a development reloader: no shutdown delay",
                control.server,
                extra={"server": control.server},
            )
        self.registry.begin_drain()
        # The signal line is logged before anything waiting on ``draining`` goes on (a worker
        # loop's drain and its line among them), so the timeline's lines come in order.
        timeline.began(handlers.signum or signal.SIGTERM, delay, self.in_flight)
        timeline.draining.set()
        if delay > 0:
            timeline.finishing.wait(delay)
        if timeline.finishing.is_set():
            # A worker loop (or a server that stopped by itself) finished during the delay:
            # nothing is left to stop.
            if handlers.by_signal and self._control is not None:
                timeline.stopped.wait()  # the hooks, each bounded, then the checks' threads (1 s)
                self._exit_after_stop(None)
            return
        with self._lock:
            timeline.stop_at = time.monotonic()
            timeline.stopping.set()
        if handlers.by_signal:
            # A signalled process must end by the end of its budget, whatever the server's
            # stop, the drain or the hooks do in this thread or another: its own thread
            # counts from here, where the drain bound starts.
            _threads.start(self._watch_exit, name="healthprobe-shutdown-exit")
        timeline.delay_over(self.in_flight, self.drain_timeout)
        self._call_original()
        self._call(control.stop if control is not None else handlers.call_unknown_server, "stopping the server")
        self._watch_drain()
        if control is not None and control.release is not None:
            self._call(control.release, "letting the server return")

    def _call(self, func: Callable[[], object], what: str) -> None:
        try:
            func()
        except BaseException:  # SystemExit from a handler included: the sequence goes on
            _logger.exception("shutdown: %s raised", what, extra={"phase": self.phase})

    def _call_original(self) -> None:
        """Call the application's own handler of the first signal, once (see :meth:`install`)."""
        handlers = self._handlers
        original = handlers.application_handler()
        if original is not None:
            signum = handlers.signum or signal.SIGTERM
            name = _signals.signal_name(signum)
            self._call(lambda: original(signum, handlers.frame), f"the application's {name} handler")

    def _watch_drain(self) -> None:
        """Wait until no request, stream or WebSocket session is in flight, or the drain
        bound is reached; at the bound, close the WebSocket sessions still open with code
        1001 ("going away", RFC 6455 section 7.4.1) and give them up to
        :data:`SESSION_CLOSE_WAIT` seconds to end."""
        _inflight.wait_empty(self.requests_in_flight, self._timeline.stop_at + self.drain_timeout)
        _inflight.close_sessions(self.requests_in_flight, self.drain_timeout, SESSION_CLOSE_WAIT)
        self._drained()

    def _at_exit(self) -> None:
        # The interpreter exits after a signalled shutdown that no server integration
        # finished (a server that returned by itself: gunicorn without healthprobe's
        # configuration, waitress-serve), or after an adapter installed the coordinator
        # here and the server ended the process by itself (a gunicorn worker recycled after
        # --max-requests): drain what is left and run the hooks now.
        pid = os.getpid()
        installed_here = self._handlers.by_signal or (self._automatic_pid == pid and self._handlers.pid == pid)
        if installed_here and self._own.pid == pid and not self._timeline.stopped.is_set():
            self.finish()

    def _log_repeats(self) -> None:
        copies = self._handlers.copies
        logged = 0
        while True:
            done = self._timeline.stopped.is_set()  # before reading what is to be logged
            while logged < len(copies):
                signum, after = copies[logged]
                logged += 1
                self._timeline.repeat(signum, after, self.repeat_window)
            if done:
                return
            self._own.read()  # a repeat ("r"), or the end of the sequence ("f")

    def _exit_deadline(self) -> float | None:
        """When a signalled process must have exited (``time.monotonic()``): the end of its
        budget, counted from the end of the delay; ``None`` before the delay ended or when
        no signal began the shutdown."""
        if not self._handlers.by_signal or not self._timeline.stopping.is_set():
            return None
        return self._timeline.stop_at + self._after_delay()

    def _watch_exit(self) -> None:
        """Exit by force at the end of the budget unless the sequence finished by then, then
        see to it that the process exits (:meth:`_exit_after_stop`). Runs in a thread of its
        own from the end of the delay, so that nothing the sequence waits for delays it."""
        while True:
            deadline = self._exit_deadline()
            assert deadline is not None
            if self._timeline.stopped.wait(max(0.0, deadline - time.monotonic())):
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
        end = self._timeline.stopped_at + EXIT_TIMEOUT
        if deadline is not None:
            end = min(end, deadline)
        time.sleep(max(0.0, end - time.monotonic()))
        self._exit_late()

    def _exit_late(self) -> NoReturn:
        self._timeline.exit_late(self.exit_code, self._loop)
        _signals.flush_logs()
        os._exit(self.exit_code)

    def _forced_exit(self) -> NoReturn:
        self.exit_code = FORCED_EXIT_CODE
        state = f"in phase {self.phase}"
        running = self._hooks.running
        if running is not None:
            state += f" (hook {running!r} running)"
        self._timeline.forced_exit(
            state=state,
            drain_timeout=self.drain_timeout,
            hooks=self._hooks.text(),
            bound=self._after_delay(),
            in_flight=self.in_flight,
            backlog=self.requests_in_flight.backlog_note(),
            exit_code=FORCED_EXIT_CODE,
        )
        _signals.flush_logs()
        os._exit(FORCED_EXIT_CODE)

    @property
    def signalled(self) -> bool:
        """``True`` once a first shutdown signal came or :meth:`begin` was called (the
        same as :attr:`is_draining`)."""
        return self._signalled

    @property
    def is_draining(self) -> bool:
        """``True`` from the first signal (or :meth:`begin`) on."""
        return self._signalled

    @property
    def is_stopping(self) -> bool:
        """``True`` once the delay is over and the server should stop accepting."""
        return self._timeline.stopping.is_set()

    @property
    def is_stopped(self) -> bool:
        """``True`` once :meth:`finish` has completed."""
        return self._timeline.stopped.is_set()

    @property
    def phase(self) -> str:
        """The current phase, one of :data:`PHASES`: ``serving`` before any signal, then
        ``delay`` (readiness fails, still serving), ``drain`` (not accepting, waiting for
        in-flight requests), ``hooks`` (cleanup hooks running), ``stopped``."""
        return self._timeline.phase(self._signalled, self._hooks.claimed)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until shutdown begins, like :meth:`threading.Event.wait`.

        Args:
            timeout: seconds to wait at most; ``None`` waits for ever.

        Returns:
            ``True`` if draining, ``False`` on timeout.
        """
        return self._timeline.draining.wait(timeout)

    async def wait_draining(self) -> None:
        """Return once shutdown has begun (asyncio or trio; polls every 50 ms)."""
        await _timeline.until(self._timeline.draining.is_set)

    async def wait_stopping(self) -> None:
        """Return once the delay is over: usable as hypercorn's ``shutdown_trigger``."""
        await _timeline.until(self._timeline.stopping.is_set)

    # -- in-flight requests ---------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests counted by the middleware that have not finished."""
        return len(self.requests_in_flight.slots)

    def request_started(self) -> None:
        """Count one request as in flight (the middleware calls this)."""
        self.requests_in_flight.slots.append(None)

    def request_cancelled(self) -> None:
        """Record that the server cancelled an in-flight request while draining (the ASGI
        middleware calls this, before :meth:`request_finished`), so the drain is not logged
        as clean."""
        self.requests_in_flight.cut.append("")

    def request_cut(self, error: BaseException) -> None:
        """Record that an in-flight request was ended unfinished by ``error``, an exception
        that ends a process rather than a request (``SystemExit``, ``KeyboardInterrupt``:
        gunicorn's quick shutdown and its worker timeout raise ``SystemExit`` in the request),
        so that it is counted and logged as cut, never as drained. The WSGI middleware calls
        this before it counts the request finished.

        Args:
            error: the exception that ended the request; its type names it in the log.
        """
        self.requests_in_flight.cut.append(type(error).__name__)

    def request_finished(self) -> None:
        """Count one in-flight request as finished (the middleware calls this, once per
        :meth:`request_started`)."""
        try:
            self.requests_in_flight.slots.pop()
        except IndexError:  # more finishes than starts: a caller's bug, never a negative count
            _logger.warning("shutdown: request_finished() called with no request in flight")

    def _drain_left(self) -> float:
        timeline = self._timeline
        if not timeline.stopping.is_set():
            return self.drain_timeout
        return max(0.0, timeline.stop_at + self.drain_timeout - time.monotonic())

    def drain_remaining(self) -> float:
        """Seconds left of the drain bound (the full bound before the delay has ended)."""
        return self._drain_left()

    def drain(self) -> bool:
        """Block until no request is in flight, within what is left of ``drain_timeout``.
        Once a signal began the shutdown, first wait (at most 1 s) until the coordinator has
        logged it, so that the drain's line never comes before the signal's.

        Returns ``True`` when drained cleanly, ``False`` when the bound was reached first
        or the server cut requests (:meth:`request_cancelled`, :meth:`request_cut`).
        """
        if self._signalled:  # the signal's line first (a loop may see the signal before it is logged)
            self._timeline.draining.wait(_SIGNAL_LINE_WAIT)
        _inflight.wait_empty(self.requests_in_flight, time.monotonic() + self._drain_left())
        return self._drained()

    async def drain_async(self) -> bool:
        """:meth:`drain` for async callers (shielded from cancellation)."""
        with anyio.CancelScope(shield=True):
            if self._signalled:
                deadline = time.monotonic() + _SIGNAL_LINE_WAIT
                draining = self._timeline.draining
                await _timeline.until(lambda: draining.is_set() or time.monotonic() >= deadline)
            await _inflight.wait_empty_async(self.requests_in_flight, time.monotonic() + self._drain_left())
        return self._drained()

    def _drained(self) -> bool:
        """Log how the drain ended, once; whether it was clean (see :meth:`Timeline.drained`)."""
        accounting = self.requests_in_flight
        return self._timeline.drained(
            left=self.in_flight,
            cut=accounting.cut_text(),
            cancelled=len(accounting.cut),
            backlog=accounting.backlog_note(),
            quick=accounting.quick,
            signalled=self._signalled,
            drain_timeout=self.drain_timeout,
        )

    # -- hooks ----------------------------------------------------------------------------------

    def run_hooks(self) -> None:
        """Run the cleanup hooks once, last registered first, each bounded by
        ``hook_timeout`` and, in a signalled shutdown, by the end of the :attr:`budget`.
        Later calls (from any thread or loop) do nothing."""
        self._hooks.run(self._exit_deadline, self._budget_now)

    async def run_hooks_async(self) -> None:
        """:meth:`run_hooks` from an event loop: async hooks are awaited on this loop, in a
        cancel scope shielded from the server's own cancellation."""
        await self._hooks.run_async(self._exit_deadline, self._budget_now)

    def _budget_now(self) -> float:
        return self.budget

    def _close_timeout(self) -> float:
        """Seconds to wait for the sync checks' threads to end after the hooks: 1 s, less
        what the budget of a signalled shutdown no longer has."""
        deadline = self._exit_deadline()
        if deadline is None:
            return 1.0
        return max(0.0, min(1.0, deadline - _hooks.EXIT_RESERVE / 2 - time.monotonic()))

    # -- the end --------------------------------------------------------------------------------

    def finish(self) -> int:
        """Drain, run the hooks (once), mark the registry stopped and restore the signal
        handlers. Returns the exit code: 0 (a forced exit never returns here)."""
        self._timeline.finishing.set()
        self.drain()
        self.run_hooks()
        self.registry.close(self._close_timeout())  # the sync checks' threads, with their teardowns
        return self._finished()

    async def finish_async(self) -> int:
        """:meth:`finish` for async callers (shielded from cancellation)."""
        self._loop = _asyncio_loop()
        self._timeline.finishing.set()
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
        self._timeline.finishing.set()
        with anyio.CancelScope(shield=True):
            if not self._timeline.stopped.is_set():
                _logger.info(
                    "shutdown: the serving task was cancelled; running the cleanup hooks", extra={"phase": "cancelled"}
                )
            await self.run_hooks_async()
            # Hooks another task runs (the lifespan's, on its shutdown message) end before
            # this one lets the cancellation go on, and with it the event loop.
            hooks = self._hooks
            deadline = time.monotonic() + self.hook_timeout * len(hooks) + _timeline.POLL
            await _timeline.until(lambda: hooks.done.is_set() or time.monotonic() >= deadline)
            await anyio.to_thread.run_sync(self.registry.close, self._close_timeout())
        return self._finished()

    def _finished(self) -> int:
        accounting, timeline = self.requests_in_flight, self._timeline
        if accounting.cut:  # after the drain was logged: the server cut them at its own bound
            timeline.cut(accounting.cut_text(), len(accounting.cut))
        self.registry.mark_stopped()
        self.uninstall()
        if not timeline.stopped.is_set():
            timeline.stopped_at = time.monotonic()
            timeline.finishing.set()
            timeline.stopped.set()
            if self._own.logs_repeats:
                self._notify(b"f")  # let the thread logging repeats end
            timeline.stopped_line(self.exit_code)
        return self.exit_code


#: The shutdown phases in order, as :attr:`GracefulShutdown.phase` names them (the phase
#: table of docs/kubernetes.md); the Prometheus collector exports one series per phase.
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


class _OwnThread:
    """The coordinator's thread in one process and the pipe that wakes it: the signal
    handler writes ``s`` for the first signal and ``r`` for a copy of it, :meth:`begin`
    ``b``, and the end of the sequence ``f`` for the thread that logs the copies."""

    __slots__ = ("atexit_pid", "logs_repeats", "pid", "pipe", "thread")

    def __init__(self) -> None:
        self.pipe: tuple[int, int] | None = None
        self.thread: threading.Thread | None = None
        self.pid = 0  # the process it was started in
        self.atexit_pid = 0  # the process where GracefulShutdown._at_exit was registered
        self.logs_repeats = False  # a second thread reads the pipe: the one logging copies

    def read(self) -> None:
        """Wait for one word on the pipe."""
        assert self.pipe is not None
        os.read(self.pipe[0], 1)


def _asyncio_loop() -> Any:
    """The running asyncio event loop, or ``None`` (under trio, or no loop)."""
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
