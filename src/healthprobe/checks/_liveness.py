"""Liveness for processes that wedge: a heartbeat a worker loop beats, and the lag of an
event loop measured from outside it. Neither touches an external dependency, so a failing
one means the process itself stopped making progress: what a restart fixes."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import anyio

from .._types import CheckResult, Status
from ._common import within


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")
    return float(value)


class Heartbeat:
    """A sync check that fails when :meth:`beat` was not called for more than
    ``max_interval`` seconds; created by :func:`heartbeat`; see there."""

    def __init__(self, max_interval: float) -> None:
        self.max_interval = _seconds("max_interval", max_interval)
        self._last = time.monotonic()
        self._beats = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<heartbeat check max_interval={self.max_interval:g}>"

    def beat(self) -> None:
        """Record progress. Cheap and thread-safe: call it once per loop iteration or job."""
        with self._lock:
            self._last = time.monotonic()
            self._beats += 1

    @property
    def beats(self) -> int:
        """How many times :meth:`beat` was called."""
        return self._beats

    @property
    def age(self) -> float:
        """Seconds since the last beat (or since creation, before the first beat)."""
        return time.monotonic() - self._last

    def __call__(self) -> CheckResult:
        age = round(self.age, 3)
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

    Args:
        max_interval: the longest allowed gap between beats, in seconds.

    Returns:
        A :class:`Heartbeat`: a sync check callable reporting the seconds since the last beat
        as its observed value (unit ``"s"``), with :meth:`Heartbeat.beat`.

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
