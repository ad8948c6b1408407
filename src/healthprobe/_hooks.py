"""The shutdown coordinator's cleanup hooks: registration, running each once under its bound
(last registered first), one log line per hook, and their share of the shutdown budget.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio

from . import _threads
from ._timeline import Timeline, until

__all__ = ["EXIT_RESERVE", "H", "Hook", "Hooks", "is_async", "start_hook"]

logger = logging.getLogger("healthprobe.shutdown")

#: A cleanup hook: a callable taking no arguments, sync or async.
Hook = Callable[[], Any]
H = TypeVar("H", bound=Hook)

#: Seconds before the end of the budget at which the hooks of a signalled shutdown are cut,
#: so that the process can exit within it.
EXIT_RESERVE = 0.25


class Hooks:
    """The cleanup hooks of one coordinator.

    Args:
        timeline: the shutdown's timeline, where the ``hooks`` line is logged.
        hook_timeout: bound in seconds on each hook.

    Attributes:
        entries: ``(name, hook)`` in the order registered.
        claimed: set once a run began: later runs do nothing, later hooks never run.
        done: set once every hook ran (or was cut, or skipped).
        running: the name of the hook running now, or ``None``.
        budget_due: set once the budget is to be checked against the grace period (at the
            registry's first lifecycle change: the application registers its hooks after
            building the coordinator, and a warning made before them would count none).
    """

    def __init__(self, timeline: Timeline, hook_timeout: float) -> None:
        self.entries: list[tuple[str, Hook]] = []
        self.claimed = False
        self.done = threading.Event()
        self.running: str | None = None
        self.budget_due = False
        self.hook_timeout = hook_timeout
        self._timeline = timeline
        self._lock = threading.Lock()
        self._warned = False

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, func: Hook, name: str | None) -> None:
        """Register ``func`` under ``name`` (default: its ``__name__``); see
        :meth:`healthprobe.shutdown.GracefulShutdown.add_hook`.

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
        if self.claimed:
            logger.warning(
                "shutdown: hook %r added after the hooks ran; it will not run", hook_name, extra={"hook": hook_name}
            )
        self.entries.append((hook_name, func))

    # -- the budget ---------------------------------------------------------------------------

    def share(self) -> float:
        """The hooks' share of the budget: ``hook_timeout x max(1, hooks)`` seconds."""
        return self.hook_timeout * max(1, len(self.entries))

    def text(self) -> str:
        """The hooks' share of the budget, for the log."""
        if self.entries:
            return f"{len(self.entries)} hook(s) x {self.hook_timeout:.1f} s"
        return f"{self.hook_timeout:.1f} s of hook time (no hook registered)"

    def warn_budget(self, delay: float, drain_timeout: float, grace_period: float) -> None:
        """Once :attr:`budget_due`, log one WARNING when ``delay + drain_timeout +``
        :meth:`share` seconds exceed ``grace_period`` (the pod's
        ``terminationGracePeriodSeconds``)."""
        budget = delay + drain_timeout + self.share()
        if self.budget_due and budget > grace_period and not self._warned:
            self._warned = True
            logger.warning(
                "shutdown: delay %.1f s + drain %.1f s + %s = %.1f s exceeds the grace period "
                "of %.1f s; the process may be killed before it stops cleanly",
                delay,
                drain_timeout,
                self.text(),
                budget,
                grace_period,
                extra={"seconds": budget, "grace_period": grace_period},
            )

    def bound(self, deadline: float | None) -> tuple[float, bool]:
        """Seconds the next hook may run, and whether the end of the budget (rather than
        ``hook_timeout``) sets them: given the end of the budget of a signalled shutdown
        (``deadline``, ``time.monotonic()``; ``None`` otherwise), hooks end
        :data:`EXIT_RESERVE` seconds before it, so that the process exits within it."""
        if deadline is None:
            return self.hook_timeout, False
        left = deadline - EXIT_RESERVE - time.monotonic()
        if left < self.hook_timeout:
            return max(0.0, left), True
        return self.hook_timeout, False

    # -- running them -------------------------------------------------------------------------

    def claim(self) -> bool:
        """Whether this caller runs the hooks: ``True`` for the first only."""
        with self._lock:
            if self.claimed:
                return False
            self.claimed = True
            return True

    def run(self, deadline: Callable[[], float | None], budget: Callable[[], float]) -> None:
        """Run the hooks once, last registered first, each in a thread of its own, under
        :meth:`bound`; later calls do nothing.

        Args:
            deadline: the end of the budget of a signalled shutdown, or ``None``.
            budget: the budget in seconds, for the log.
        """
        for turn in self._turns(deadline, budget):
            thread, turn.outcome = start_hook(turn.func)
            thread.join(turn.bound)
            turn.timed_out = thread.is_alive()

    async def run_async(self, deadline: Callable[[], float | None], budget: Callable[[], float]) -> None:
        """:meth:`run` from an event loop: async hooks are awaited on this loop, in a cancel
        scope shielded from the server's own cancellation."""
        for turn in self._turns(deadline, budget):
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + turn.bound) as scope:
                if is_async(turn.func):
                    try:
                        await turn.func()
                    except Exception as exc:
                        turn.outcome[0] = exc
                else:
                    thread, turn.outcome = start_hook(turn.func)
                    await until(lambda t=thread: not t.is_alive())  # type: ignore[misc]
            turn.timed_out = scope.cancelled_caught

    def _turns(self, deadline: Callable[[], float | None], budget: Callable[[], float]) -> Iterator[_Turn]:
        """Each hook to run, once claimed, with its bound; after the caller ran it (and set
        what came of it on the turn), its line is logged; at the end, the ``hooks`` line."""
        if not self.claim():
            return
        start = time.monotonic()
        for name, func in reversed(self.entries):
            bound, by_budget = self.bound(deadline())
            if bound <= 0:
                self._report(name, [None], "skipped", 0.0, budget())
                continue
            turn = _Turn(func, bound)
            self.running = name
            yield turn
            self.running = None
            cut = ("budget" if by_budget else "bound") if turn.timed_out else ""
            self._report(name, turn.outcome, cut, time.monotonic() - turn.began, budget())
        self.done.set()
        self._timeline.hooks_done(len(self.entries), start)

    def _report(self, name: str, outcome: list[BaseException | None], cut: str, took: float, budget: float) -> None:
        if cut == "skipped":
            logger.error(
                "shutdown: hook %r not run: the shutdown budget of %.1f s is spent",
                name,
                budget,
                extra={"phase": "hook", "hook": name, "seconds": 0.0, "timed_out": True},
            )
        elif cut == "budget":
            logger.error(
                "shutdown: hook %r cut after %.2f s, at the end of the shutdown budget of %.1f s",
                name,
                took,
                budget,
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


class _Turn:
    """One hook's run: what to call, its bound, and what came of it."""

    __slots__ = ("began", "bound", "func", "outcome", "timed_out")

    def __init__(self, func: Hook, bound: float) -> None:
        self.func = func
        self.bound = bound
        self.began = time.monotonic()
        self.outcome: list[BaseException | None] = [None]
        self.timed_out = False


def is_async(func: object) -> bool:
    """Whether calling ``func`` returns a coroutine (a coroutine function, or an object whose
    ``__call__`` is one)."""
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


def start_hook(func: Hook) -> tuple[threading.Thread, list[BaseException | None]]:
    """Run ``func`` in a thread of its own (an async one on a fresh event loop); returns the
    thread and a list whose item is set to what it raised."""
    outcome: list[BaseException | None] = [None]

    def target() -> None:
        try:
            if is_async(func):

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
