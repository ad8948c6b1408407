"""Liveness for processes that wedge: a heartbeat a worker loop beats, and the lag of an
event loop measured from outside it. Neither touches an external dependency, so a failing
one means the process itself stopped making progress: what a restart fixes."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from typing import TYPE_CHECKING

import anyio

from .._types import CheckResult, Status
from ._common import within

if TYPE_CHECKING:
    from types import TracebackType


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")
    return float(value)


class _Wait:
    """One wait in progress: what it waits for, since when, and its optional bound."""

    __slots__ = ("max_seconds", "reason", "since")

    def __init__(self, reason: str, since: float, max_seconds: float | None) -> None:
        self.reason = reason
        self.since = since
        self.max_seconds = max_seconds


class Waiting:
    """The context manager :meth:`Heartbeat.waiting` returns; see there.

    Usable with ``with`` and ``async with``, nested, and entered again while already
    entered (each entry is one wait, ended by its own exit).
    """

    def __init__(self, heartbeat: Heartbeat, reason: str, max_seconds: float | None) -> None:
        self.heartbeat = heartbeat
        self.reason = reason
        self.max_seconds = max_seconds
        self._tokens: list[int] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        bound = "" if self.max_seconds is None else f" max_seconds={self.max_seconds:g}"
        return f"<waiting for {self.reason!r}{bound}>"

    def __enter__(self) -> Waiting:
        token = self.heartbeat._begin_wait(self.reason, self.max_seconds)
        with self._lock:
            self._tokens.append(token)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            if not self._tokens:
                raise RuntimeError(f"{self!r} was exited more often than it was entered")
            token = self._tokens.pop()
        self.heartbeat._end_wait(token)

    async def __aenter__(self) -> Waiting:
        return self.__enter__()  # takes a lock held for microseconds only: nothing to await

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Heartbeat:
    """A sync check that fails when :meth:`beat` was not called for more than
    ``max_interval`` seconds, except while the loop declared a legitimate wait with
    :meth:`waiting`; created by :func:`heartbeat`; see there."""

    def __init__(self, max_interval: float) -> None:
        self.max_interval = _seconds("max_interval", max_interval)
        self._last = time.monotonic()
        self._beats = 0
        self._lock = threading.Lock()
        self._waits: dict[int, _Wait] = {}  # insertion order: the oldest wait first
        self._tokens = itertools.count()

    def __repr__(self) -> str:
        return f"<heartbeat check max_interval={self.max_interval:g}>"

    def beat(self) -> None:
        """Record progress. Cheap and thread-safe: call it once per loop iteration or job."""
        with self._lock:
            self._last = time.monotonic()
            self._beats += 1

    @property
    def beats(self) -> int:
        """How many times :meth:`beat` was called (the end of each wait counts as one)."""
        return self._beats

    @property
    def age(self) -> float:
        """Seconds since the last beat (or since creation, before the first beat)."""
        return time.monotonic() - self._last

    def waiting(self, reason: str, *, max_seconds: float | None = None) -> Waiting:
        """Declare a legitimate wait of the loop, during which it cannot beat: reconnecting
        to a broker or a database, waiting out a rate limit, a long blocking call.

        While inside, the check does not fail for lack of beats: it reports ``warn`` (served
        as success, IETF draft-inadarei-api-health-check) with the output ``waiting for
        <reason> for <seconds> s``. Leaving the wait restarts the clock, as a beat does, so
        the loop has ``max_interval`` seconds from then on to beat again::

            while True:
                hb.beat()
                try:
                    job = queue.get(timeout=5)
                except ConnectionError:
                    with hb.waiting("broker"):
                        reconnect()          # retries until the broker is back
                    continue
                handle(job)

        Thread-safe; waits nest and may overlap across threads (the check reports the
        oldest one in progress), and the returned object may be entered again while
        entered. Works as ``async with`` too (entering and leaving never block). For a wait
        that begins in one callback and ends in another, enter and exit it through a
        :class:`contextlib.ExitStack`.

        Args:
            reason: what the loop waits for, shown in the check's output (``"broker"``).
            max_seconds: bound on the wait in seconds, or ``None`` (the default) for none.
                A wait that lasts longer fails the check (``waiting for broker for 312.4 s
                (max 300 s)``): a reconnect loop that itself wedged, which a restart fixes.

        Returns:
            A :class:`Waiting` context manager (sync and async).

        Raises:
            TypeError: ``reason`` is not a str.
            ValueError: ``reason`` is empty, or ``max_seconds`` is not ``None`` or a
                positive finite number.
        """
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str saying what the loop waits for, got {type(reason).__name__}")
        if not reason.strip():
            raise ValueError("reason must say what the loop waits for, e.g. waiting('broker')")
        bound = None if max_seconds is None else _seconds("max_seconds", max_seconds)
        return Waiting(self, reason.strip(), bound)

    def _begin_wait(self, reason: str, max_seconds: float | None) -> int:
        token = next(self._tokens)
        with self._lock:
            self._waits[token] = _Wait(reason, time.monotonic(), max_seconds)
        return token

    def _end_wait(self, token: int) -> None:
        with self._lock:
            self._waits.pop(token, None)
            self._last = time.monotonic()
            self._beats += 1

    @property
    def waits(self) -> tuple[tuple[str, float], ...]:
        """The waits in progress, oldest first: ``(reason, seconds so far)`` each."""
        now = time.monotonic()
        with self._lock:
            return tuple((wait.reason, now - wait.since) for wait in self._waits.values())

    def __call__(self) -> CheckResult:
        with self._lock:
            waits = list(self._waits.values())
            last = self._last
        now = time.monotonic()
        if waits:
            for wait in waits:
                seconds = round(now - wait.since, 3)
                if wait.max_seconds is not None and seconds > wait.max_seconds:
                    output = f"waiting for {wait.reason} for {seconds:.1f} s (max {wait.max_seconds:g} s)"
                    return CheckResult(Status.FAIL, output=output, observed_value=seconds, observed_unit="s")
            oldest = waits[0]
            seconds = round(now - oldest.since, 3)
            output = f"waiting for {oldest.reason} for {seconds:.1f} s"
            return CheckResult(Status.WARN, output=output, observed_value=seconds, observed_unit="s")
        age = round(now - last, 3)
        return within(age, self.max_interval, "s", f"no heartbeat for {age:g} s (max {self.max_interval:g} s)")


def heartbeat(max_interval: float) -> Heartbeat:
    """A liveness check for a worker loop (queue consumer, scheduler): the loop calls
    ``beat()`` whenever it makes progress, and the check fails once more than
    ``max_interval`` seconds pass without a beat::

        hb = heartbeat(30.0)
        registry.add_check("worker", hb, probes=["liveness"])
        while True:
            job = queue.get(timeout=5)  # bounded waits, so an idle loop still beats
            hb.beat()
            handle(job)

    Choose ``max_interval`` above the longest legitimate gap between beats (the longest job
    plus the longest idle wait). The clock starts when the heartbeat is created.

    A wait that is not the process's fault, such as reconnecting to a broker that is down,
    goes inside ``with hb.waiting("broker"):`` (see :meth:`Heartbeat.waiting`): the check
    then reports ``warn`` ("waiting for broker for 12.3 s"), which does not fail the probe,
    so liveness does not fail because a dependency is down; leaving the wait restarts the
    clock. ``max_seconds=`` bounds a wait that never ends.

    Args:
        max_interval: the longest allowed gap between beats, in seconds.

    Returns:
        A :class:`Heartbeat`: a sync check callable reporting the seconds since the last beat
        as its observed value (unit ``"s"``; during a wait, the seconds the oldest wait in
        progress has lasted), with :meth:`Heartbeat.beat` and :meth:`Heartbeat.waiting`.

    Raises:
        ValueError: ``max_interval`` is not a positive finite number.
    """
    return Heartbeat(max_interval)


class EventLoopLag:
    """A sync check of an event loop's responsiveness; created by :func:`event_loop_lag`."""

    def __init__(self, max_seconds: float, interval: float) -> None:
        self.max_seconds = _seconds("max_seconds", max_seconds)
        self.interval = _seconds("interval", interval)
        self._tick: float | None = None
        self._late = 0.0
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<event_loop_lag check max_seconds={self.max_seconds:g}>"

    async def run(self) -> None:
        """The sampler: run it as a task on the loop to watch (runs until cancelled).

        Works on any anyio backend (asyncio or trio), e.g.
        ``task_group.start_soon(lag.run)``. Each wake-up records the time and how late it
        came; :meth:`__call__` reads both from any thread.
        """
        self._running = True
        try:
            self._tick = time.monotonic()
            while True:
                expected = time.monotonic() + self.interval
                await anyio.sleep(self.interval)
                now = time.monotonic()
                self._late = max(0.0, now - expected)
                self._tick = now
        finally:
            self._running = False

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the sampler as a task on an asyncio loop.

        Args:
            loop: the loop to watch; by default the running loop (call from inside it, e.g.
                in a lifespan or startup handler). From another thread, pass the loop.

        Raises:
            RuntimeError: no loop is given and none is running in this thread.
        """
        with self._lock:
            if self._task is not None and not self._task.done():
                return
            if loop is None:
                self._task = asyncio.get_running_loop().create_task(self.run(), name="healthprobe-event-loop-lag")
                return
        loop.call_soon_threadsafe(self.start)

    def stop(self) -> None:
        """Cancel the sampler started by :meth:`start`; the check then reports ``warn``."""
        task = self._task
        if task is not None:
            task.get_loop().call_soon_threadsafe(task.cancel)

    @property
    def lag(self) -> float | None:
        """The current lag in seconds, or ``None`` before the sampler first ran.

        The larger of how late the last wake-up came and how far the next wake-up is
        overdue now; the second keeps growing while the loop is blocked.
        """
        tick = self._tick
        if tick is None:
            return None
        overdue = time.monotonic() - tick - self.interval
        return max(0.0, self._late, overdue)

    def __call__(self) -> CheckResult:
        lag = self.lag
        if lag is None or not self._running:
            return CheckResult(Status.WARN, output="event loop lag sampler is not running")
        lag = round(lag, 4)
        return within(lag, self.max_seconds, "s", f"event loop lagging {lag:g} s (max {self.max_seconds:g} s)")


def event_loop_lag(max_seconds: float, *, interval: float = 0.1) -> EventLoopLag:
    """A liveness check for async apps: fails while the event loop is blocked (a
    ``time.sleep``, a CPU-bound loop or a sync driver call on the loop) for more than
    ``max_seconds``.

    A sampler task on the watched loop wakes every ``interval`` seconds and records the
    time; the check itself is **sync**, so it runs in a thread of its own and reads those
    records from outside the loop. It therefore answers while the loop is blocked (served
    by the standalone probe server, :func:`healthprobe.serve`, or any server whose probe
    handling does not run on that loop)::

        lag = event_loop_lag(2.0)
        registry.add_check("event-loop", lag, probes=["liveness"])

        @asynccontextmanager
        async def lifespan(app):
            lag.start()          # or: task_group.start_soon(lag.run)
            yield
            lag.stop()

    Args:
        max_seconds: the largest tolerated lag, in seconds.
        interval: the sampler's period, in seconds (0.1 by default); the cost is one
            timer wake-up per period.

    Returns:
        An :class:`EventLoopLag`: a sync check callable reporting the lag in seconds as its
        observed value (unit ``"s"``). Before the sampler runs, or after it stopped, the
        check reports ``warn`` ("sampler is not running"), which does not fail the probe.

    Raises:
        ValueError: ``max_seconds`` or ``interval`` is not a positive finite number.
    """
    return EventLoopLag(max_seconds, interval)
