"""The phases and the timeline of one process's shutdown: the phase names, the moments that
separate them, and every line the sequence logs, each with the phase and the measured
seconds as fields of its record (docs/logging.md).

The lines of the phases (``signal``, ``drain``, ``drained``, ``hooks``, ``cut``,
``stopped``) are logged once each; the others (``repeat``, ``second_signal``,
``forced_exit``, ``exit``) as they happen. :class:`healthprobe.shutdown.GracefulShutdown`
decides when; this module says what.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio

from ._signals import signal_name

__all__ = ["PHASES", "POLL", "Timeline", "leftovers", "until"]

logger = logging.getLogger("healthprobe.shutdown")

#: The shutdown phases in order.
PHASES: tuple[str, ...] = ("serving", "delay", "drain", "hooks", "stopped")
#: Seconds between two looks at a state that signal handlers and other threads change.
POLL = 0.05


class Timeline:
    """When each step of one shutdown happened, and its log lines.

    Attributes:
        t0: ``time.monotonic()`` when the shutdown began (the first signal, or ``begin()``);
            0 before.
        stop_at: when the delay ended (the server was told to stop accepting); 0 before.
        stopped_at: when the sequence finished; 0 before.
        draining: set once readiness fails.
        stopping: set once the delay is over.
        stopped: set once the sequence finished.
        finishing: set once the server returned (a finish began): a sequence still in its
            delay has nothing left to stop.
    """

    def __init__(self) -> None:
        self.t0 = 0.0
        self.stop_at = 0.0
        self.stopped_at = 0.0
        self.draining = threading.Event()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.finishing = threading.Event()
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def phase(self, signalled: bool, hooks_claimed: bool) -> str:
        """The current phase, one of :data:`PHASES`, given whether a shutdown began and whether
        the hooks were claimed to run."""
        if self.stopped.is_set():
            return "stopped"
        if hooks_claimed:
            return "hooks"
        if self.stopping.is_set():
            return "drain"
        if signalled:
            return "delay"
        return "serving"

    def log(
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

    # -- the lines of the phases, in order ---------------------------------------------------

    def began(self, signum: int, delay: float, in_flight: int) -> None:
        """Readiness fails: the ``signal`` line."""
        self.log(
            "signal",
            "shutdown: %s received; readiness fails, serving on for the %.1f s delay (%d request(s) in flight)",
            signal_name(signum),
            delay,
            in_flight,
            extra={"signal": signal_name(signum), "delay": delay, "in_flight": in_flight},
        )

    def delay_over(self, in_flight: int, drain_timeout: float) -> None:
        """The server stops accepting: the ``drain`` line."""
        self.log(
            "drain",
            "shutdown: delay over after %.2f s; stopping accepting, draining %d in-flight request(s) (bound %.1f s)",
            self.stop_at - self.t0,
            in_flight,
            drain_timeout,
            extra={"seconds": self.stop_at - self.t0, "in_flight": in_flight, "drain_timeout": drain_timeout},
        )

    def drained(
        self,
        *,
        left: int,
        cut: str,
        cancelled: int,
        backlog: str,
        quick: str | None,
        signalled: bool,
        drain_timeout: float,
    ) -> bool:
        """Log how the drain ended, once (the ``drained`` line), with the measured seconds and
        what the server cut; whether it was clean (no request left in flight, none cut).

        Args:
            left: requests still in flight.
            cut: what the server cut, as :meth:`healthprobe.shutdown.InFlight.cut_text` says it.
            cancelled: how many requests the server cut.
            backlog: the note on connections waiting in the listen backlog, or ``""``.
            quick: the server's own quick shutdown, when it stopped at once on a signal of
                its own, else ``None``.
            signalled: whether a shutdown signal (or ``begin()``) began the shutdown.
            drain_timeout: the drain bound, in seconds.
        """
        now = time.monotonic()
        tail = (f"; {cut}" if cut else "") + backlog
        clean = left == 0 and not cut
        said_quick = f"; {quick}" if quick else ""
        extra: dict[str, object] = {"in_flight": left, "cancelled": cancelled}
        args: tuple[object, ...]
        if not signalled and quick is not None:
            # The server stopped at once on a signal of its own: no delay, no drain.
            message = (
                "shutdown: %s in process %d: readiness did not fail first, no delay and no drain; "
                "%d request(s) in flight%s"
            )
            args = (quick, os.getpid(), left, tail)
            clean = False
        elif not signalled:
            # The server stopped by itself (its own signal handling, a parent process, a
            # request limit): nothing here knows what it did to its requests.
            message = (
                "shutdown: the server stopped with no shutdown signal received by healthprobe in process %d: "
                "readiness did not fail before it stopped accepting; %d request(s) in flight%s"
            )
            args = (os.getpid(), left, tail)
        elif not self.stopping.is_set() and not (clean and not tail):
            took = now - self.t0
            message = (
                "shutdown: the server stopped during the delay, %.2f s after the signal%s; %d request(s) in flight%s"
            )
            args = (took, said_quick, left, tail)
            extra["seconds"] = took
            clean = False
        elif left > 0:
            took = now - self.stop_at
            message = (
                "shutdown: drain bound of %.1f s reached with %d request(s) still in flight "
                "(%.2f s after the delay ended)%s"
            )
            args = (drain_timeout, left, took, tail)
            extra.update(seconds=took, drain_timeout=drain_timeout)
        elif tail:  # the server ended them (uvicorn at its timeout_graceful_shutdown, gunicorn's quick shutdown)
            took = now - (self.stop_at or self.t0)
            message = "shutdown: drain ended after %.2f s%s%s"
            args = (took, said_quick, tail)
            extra["seconds"] = took
        else:  # from the end of the delay; from the signal for a worker loop that finished during it
            took = now - (self.stop_at or self.t0)
            message = "shutdown: drained after %.2f s"
            args = (took,)
            extra["seconds"] = took
        level = logging.INFO if clean and not tail else logging.WARNING
        if self.log("drained", message, *args, level=level, extra=extra) and tail:
            self._logged.add("cut")  # said here: not again when the process stops
        return clean

    def hooks_done(self, count: int, start: float) -> None:
        """The hooks ran: the ``hooks`` line, ``start`` being when the first began."""
        self.log(
            "hooks",
            "shutdown: %d hook(s) done in %.2f s",
            count,
            (took := time.monotonic() - start),
            extra={"hooks": count, "seconds": took},
        )

    def cut(self, text: str, cancelled: int) -> None:
        """What the server cut after the drain was logged (at its own bound): the ``cut`` line."""
        self.log("cut", "shutdown: %s", text, level=logging.WARNING, extra={"cancelled": cancelled})

    def stopped_line(self, exit_code: int) -> None:
        """The sequence finished: the ``stopped`` line."""
        if self.t0:
            self.log(
                "stopped",
                "shutdown: stopped %.2f s after the signal; exit code %d",
                time.monotonic() - self.t0,
                exit_code,
                extra={"seconds": time.monotonic() - self.t0, "exit_code": exit_code},
            )
        else:  # the server ended by itself: its exit status is its own, not known here
            self.log("stopped", "shutdown: stopped without a signal", extra={"seconds": None})

    # -- lines of what happens out of order ---------------------------------------------------

    def repeat(self, signum: int, after: float, window: float) -> None:
        """A copy of the first signal came ``after`` seconds after it, within ``window``."""
        logger.info(
            "shutdown: %s again %.3f s after the first signal, within the %.1f s repeat window; "
            "taken as the same shutdown",
            signal_name(signum),
            after,
            window,
            extra={"phase": "repeat", "signal": signal_name(signum), "seconds": after},
        )

    def second_signal(self, signum: int, exit_code: int) -> None:
        """A second signal: the process exits at once with ``exit_code``."""
        logger.error(
            "shutdown: second signal %s %.2f s after the first; exiting at once with code %d",
            signal_name(signum),
            (elapsed := time.monotonic() - self.t0),
            exit_code,
            extra={"phase": "second_signal", "signal": signal_name(signum), "seconds": elapsed, "exit_code": exit_code},
        )

    def forced_exit(
        self,
        *,
        state: str,
        drain_timeout: float,
        hooks: str,
        bound: float,
        in_flight: int,
        backlog: str,
        exit_code: int,
    ) -> None:
        """The budget ended before the sequence did: the process exits with ``exit_code``.

        Args:
            state: where the sequence is (``"in phase drain"``, with the hook running).
            drain_timeout: the drain bound, in seconds.
            hooks: the hooks' share of the budget, as text.
            bound: seconds the sequence had from the end of the delay.
            in_flight: requests still in flight.
            backlog: the note on connections waiting in the listen backlog, or ``""``.
            exit_code: the code the process exits with.
        """
        now = time.monotonic()
        logger.error(
            "shutdown: not stopped %.2f s after the delay ended (%.2f s after the signal), at the end of its budget "
            "of drain %.1f s + %s; %d request(s) in flight %s%s; exiting with code %d",
            (after := now - self.stop_at),
            now - self.t0,
            drain_timeout,
            hooks,
            in_flight,
            state,
            backlog,
            exit_code,
            extra={
                "phase": "forced_exit",
                "seconds": after,
                "bound": bound,
                "in_flight": in_flight,
                "exit_code": exit_code,
            },
        )

    def exit_late(self, exit_code: int, loop: Any) -> None:
        """The process still runs after the sequence finished: it exits with ``exit_code``;
        what may keep it running is named (:func:`leftovers` of ``loop``)."""
        now = time.monotonic()
        logger.warning(
            "shutdown: still running %.2f s after it stopped (%.2f s after the signal)%s; exiting with code %d",
            (after := now - self.stopped_at),
            now - self.t0,
            leftovers(loop),
            exit_code,
            extra={"phase": "exit", "seconds": after, "exit_code": exit_code},
        )


def leftovers(loop: Any) -> str:
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


async def until(done: Callable[[], bool]) -> None:
    """Return once ``done()`` is true, looking every :data:`POLL` seconds (asyncio or trio)."""
    # The state changes in signal handlers and other threads, which cannot set an
    # anyio.Event of this loop; polling works the same under asyncio and trio.
    while not done():  # noqa: ASYNC110
        await anyio.sleep(POLL)
