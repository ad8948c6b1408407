"""Running checks: parallel, under deadlines that really return, single-flight, cached.

Every run of a check is one :class:`_Run` whose outcome is a thread-safe
:class:`concurrent.futures.Future`, so async callers (ASGI, on any anyio backend) and sync
callers (WSGI threads, the standalone probe server) can join the same run:

* **Single-flight.** While a run is in flight, every probe that needs the check waits on that
  run instead of starting another. A fresh result (``cache_ttl``) is served without a run.
* **Deadlines are enforced by the waiters**, not by the check: each waiter stops waiting at
  the run's deadline and resolves the run as ``fail`` ("timed out"). A sync check runs in a
  long-lived daemon thread of its own (:class:`_CheckThread`), reused by every run, so what a
  check keeps per thread (a ``threading.local()`` connection, an ORM's per-thread handle)
  lives across runs instead of being made anew each time. One that blocks forever holds
  exactly that thread, never blocks an event loop, and never keeps the interpreter from
  exiting; an idle one ends after :data:`CHECK_THREAD_IDLE` seconds. Until that thread
  returns, the check is *busy*: later probes get an immediate ``fail`` instead of a second
  thread; a run that outlived its deadline retires its thread
  (the next run gets a new one), after that thread's teardowns (:func:`on_thread_exit`).
* **Async checks** run as a task of their own, never inside a probe's task: on the caller's
  event loop when the caller is async (so clients bound to the application's loop keep
  working), and on a private daemon event loop when the caller is sync. At the run's deadline
  the run is settled as ``fail`` ("timed out") and, on asyncio, the check's task is cancelled
  **once**: a check that swallows that cancellation is left to run (*abandoned*: logged, and
  counted in :attr:`CheckStats.abandoned`) and is never cancelled again, so it cannot turn the
  event loop into a busy loop. Until its task ends the check is busy, as a sync check is. On
  trio, whose cancellation is level-triggered (every checkpoint of a cancelled scope raises
  ``Cancelled`` again), the check runs as a system task and is shielded from further
  cancellation once the deadline's ``Cancelled`` has had two scheduling rounds to reach it.
* **What a check wrote is bounded and redacted.** Its output, a ``str`` observed value and
  its unit are cut to :data:`~healthprobe._types.TEXT_LIMIT` characters, and secrets are
  withheld from the output and the observed value (:func:`healthprobe.checks.redact`: the
  userinfo of URLs, ``password=``-like values) before anything stores, logs or serves them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from . import _threads
from ._transitions import UNKNOWN, check_reason
from ._types import TEXT_LIMIT, CheckResult, Probe, Status  # Probe: Check's field, for typing.get_type_hints
from .checks._common import redact
from .render import one_line

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

logger = logging.getLogger("healthprobe")

CheckFunc = Callable[[], object | Awaitable[object]]

#: Upper bounds, in seconds, of the buckets of the check duration histogram. These are
#: prometheus-client's default buckets, which suit network round trips.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    math.inf,
)

_OUTPUT_LIMIT = TEXT_LIMIT

#: Seconds after an async check's task was cancelled at its deadline that it is counted as
#: abandoned if it has not ended: a check that cleans up on cancellation (closes its
#: connection) ends well within it.
ABANDON_AFTER = 1.0

#: trio: scheduling rounds a cancelled check gets for the deadline's ``Cancelled`` to reach it
#: before it is shielded from further cancellation. One round delivers it to a check blocked
#: at a checkpoint; the second covers one that was runnable at the deadline and reaches its
#: next checkpoint in the round after (trio may run the tasks of a round in either order).
_TRIO_CANCEL_ROUNDS = 2


@dataclasses.dataclass(frozen=True)
class Check:
    """A registered check (see :meth:`healthprobe.HealthRegistry.add_check`).

    Attributes:
        name: unique name, used in paths, bodies and metric labels.
        func: the callable, sync or async, taking no arguments.
        probes: the probes the check belongs to.
        timeout: deadline of one run, in seconds.
        critical: whether a failure fails the probe (else it is reported as ``warn``).
        cache_ttl: how long a result is served without a new run, in seconds.
        interval: if set, the check runs in the background every ``interval`` seconds and
            probes read its latest result.
        is_async: whether ``func`` is a coroutine function (run on an event loop).
        tags: words that group checks (``"db"``, ``"external"``): a group of the registry
            selects checks by tag (:meth:`healthprobe.HealthRegistry.add_group`).
    """

    name: str
    func: CheckFunc
    probes: frozenset[Probe]
    timeout: float
    critical: bool
    cache_ttl: float
    interval: float | None
    is_async: bool
    tags: frozenset[str] = frozenset()


class CheckStats:
    """Counters of one check's runs, read by the Prometheus collector at scrape time.

    All fields are updated under the check's lock; readers take a consistent copy with
    :meth:`snapshot`.

    Attributes:
        runs: runs settled, by status.
        bucket_counts: runs per bucket of :data:`DURATION_BUCKETS` (not cumulative).
        duration_sum: seconds of all runs.
        last_success_time: end of the latest passing run, in seconds since the Unix epoch.
        abandoned: runs of an async check whose task had not ended :data:`ABANDON_AFTER`
            seconds after it was cancelled at its deadline (it swallowed the cancellation):
            each was left running, never cancelled again.
    """

    def __init__(self) -> None:
        self.runs: dict[Status, int] = {status: 0 for status in Status}
        self.bucket_counts: list[int] = [0] * len(DURATION_BUCKETS)
        self.duration_sum = 0.0
        self.last_success_time: float | None = None
        self.abandoned = 0

    def record(self, result: CheckResult) -> None:
        self.runs[result.status] += 1
        self.duration_sum += result.duration
        for index, bound in enumerate(DURATION_BUCKETS):
            if result.duration <= bound:
                self.bucket_counts[index] += 1
                break
        if result.status is Status.PASS:
            self.last_success_time = result.time

    def snapshot(self) -> CheckStats:
        copy = CheckStats()
        copy.runs = dict(self.runs)
        copy.bucket_counts = list(self.bucket_counts)
        copy.duration_sum = self.duration_sum
        copy.last_success_time = self.last_success_time
        copy.abandoned = self.abandoned
        return copy


class _Run:
    __slots__ = ("abandoned", "cut", "deadline", "ended", "ending", "future", "resolved", "scopes", "started")

    def __init__(self, started: float, deadline: float) -> None:
        self.started = started
        self.deadline = deadline
        self.future: concurrent.futures.Future[CheckResult] = concurrent.futures.Future()
        self.resolved = False
        #: healthprobe cancelled the check's task at the deadline (asyncio).
        self.cut = False
        #: the task had not ended :data:`ABANDON_AFTER` seconds after that: left running.
        self.abandoned = False
        #: the check's task has ended (async checks).
        self.ended = False
        #: trio: the cancel scopes around the check, the outer one carrying the deadline.
        self.scopes: tuple[Any, Any] | None = None
        #: Called with the result when the run settles, before any waiter can see it (the
        #: end of its span: :attr:`Runner.on_run` sets it); ``None`` unless traced.
        self.ending: Callable[[CheckResult], None] | None = None


class CheckState:
    """Mutable state of one registered check: last result, in-flight run, statistics."""

    def __init__(self, check: Check) -> None:
        self.check = check
        self.lock = threading.Lock()
        self.last: CheckResult | None = None
        #: ``time.monotonic()`` when the latest status began (registration before a first run).
        self.status_since = time.monotonic()
        self.fresh_until = -math.inf
        self.run: _Run | None = None
        self.busy = False
        self.removed = False
        self.stats = CheckStats()
        self.thread: _CheckThread | None = None
        #: The task running the async check's current run (a strong reference: asyncio keeps
        #: only weak ones), ``None`` when none runs.
        self.task: object | None = None
        #: The latest run that ended was abandoned: a further abandonment is logged at DEBUG.
        self.abandoning = False

    def fresh_result(self, now: float) -> CheckResult | None:
        """The cached result if it is still fresh at monotonic time ``now``."""
        last = self.last
        if last is not None and now < self.fresh_until:
            return last
        return None


def bounded(text: str) -> str:
    """``text`` as healthprobe keeps what a check wrote: secrets withheld
    (:func:`healthprobe.checks.redact`), then cut to :data:`_OUTPUT_LIMIT` characters.

    Redaction comes before the cut, so a secret is never cut in half and kept in part; only
    the first four times the limit are read, so a huge text costs no more than a short one.
    """
    return redact(text[: 4 * _OUTPUT_LIMIT])[:_OUTPUT_LIMIT]


def normalize(value: object) -> CheckResult:
    """Turn what a check returned into a :class:`CheckResult`.

    ``None`` and ``True`` pass, ``False`` fails, a :class:`Status` or :class:`CheckResult`
    is taken as is, its ``output``, ``str`` ``observed_value`` and ``observed_unit``
    bounded (:func:`bounded`: redacted, cut to 500 characters); anything else is a failure
    ("unsupported return value").
    """
    if value is None or value is True:
        return CheckResult(Status.PASS)
    if value is False:
        return CheckResult(Status.FAIL, output="check returned False")
    if isinstance(value, CheckResult) and isinstance(value.status, Status):
        observed = value.observed_value
        unit = value.observed_unit
        return CheckResult(
            status=value.status,
            output=None if value.output is None else bounded(str(value.output)),
            observed_value=bounded(observed) if isinstance(observed, str) else observed,
            observed_unit=unit if unit is None or len(unit) <= _OUTPUT_LIMIT else unit[:_OUTPUT_LIMIT],
        )
    if isinstance(value, Status):
        return CheckResult(value)
    if inspect.isawaitable(value):
        # A plain callable returned an awaitable (``lambda: ping()``): it was run as a sync
        # check, in a thread with no event loop. Close a coroutine so it is not reported as
        # "never awaited", and say how to register it.
        close = getattr(value, "close", None)
        if callable(close):
            close()
        return CheckResult(
            Status.FAIL,
            output="check returned an awaitable from a plain function; register an async def",
            error_type="healthprobe.UnsupportedResult",
        )
    return CheckResult(
        Status.FAIL,
        output=f"check returned an unsupported value of type {type(value).__name__}",
        error_type="healthprobe.UnsupportedResult",
    )


#: What a failure says instead of an exception's text when ``str()`` of the exception itself
#: raises (the words of :mod:`traceback` in the same case).
UNPRINTABLE = "<exception str() failed>"


def _from_exception(exc: BaseException) -> CheckResult:
    """The ``fail`` result of a check that raised ``exc`` (any :class:`BaseException`).

    Its output is ``"<type>: <text>"``, or the type alone when the text is empty (as for a
    bare ``KeyboardInterrupt``), bounded (:func:`bounded`: secrets withheld, cut to 500
    characters). Never raises: an exception whose ``__str__`` raises is reported with
    :data:`UNPRINTABLE` as its text.
    """
    kind = type(exc)
    qualname = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    try:
        text = str(exc)
    except BaseException:  # whatever __str__ raises, the failure is what counts
        text = UNPRINTABLE
    output = f"{qualname}: {text}" if text else qualname
    return CheckResult(Status.FAIL, output=bounded(output), error_type=qualname)


def _timeout_result(check: Check, still_running: bool = False) -> CheckResult:
    text = "timed out, previous run still running" if still_running else f"timed out after {check.timeout:g} s"
    return CheckResult(Status.FAIL, output=text, timed_out=True)


#: The result of an async check's run when its task was cancelled by someone other than
#: healthprobe (the event loop shutting down cancels every task) before the check finished.
_INTERRUPTED = CheckResult(Status.FAIL, output="cancelled before it finished")


_teardowns = threading.local()


def on_thread_exit(callback: Callable[[], object]) -> None:
    """Register ``callback`` to run when the thread running the current sync check ends.

    A sync check runs in a long-lived thread of its own, reused by every run, so a resource
    kept per thread (``threading.local()``) is made once, not once per run. That thread ends
    after :data:`CHECK_THREAD_IDLE` (60) seconds without a run, when the check is removed,
    when the registry is closed (:meth:`HealthRegistry.close`, which
    :class:`healthprobe.GracefulShutdown` calls once its hooks are done), or after a run that
    outlived its deadline (the next run gets a fresh thread, and so a fresh resource). Call
    this from inside a sync check, once per resource it opens::

        local = threading.local()

        @registry.check
        def database() -> None:
            if not hasattr(local, "conn"):
                local.conn = psycopg.connect(DSN)
                on_thread_exit(local.conn.close)
            local.conn.execute("SELECT 1")

    Callbacks run in the ending thread, last registered first; one that raises is logged at
    WARNING (its exception type only) and the others still run.

    Args:
        callback: a callable taking no arguments.

    Raises:
        RuntimeError: called outside a sync check run by healthprobe (there is no check
            thread whose end would run it).
        TypeError: ``callback`` is not callable.
    """
    if not callable(callback):
        raise TypeError(f"on_thread_exit() takes a callable, got {type(callback).__name__}")
    callbacks: list[Callable[[], object]] | None = getattr(_teardowns, "callbacks", None)
    if callbacks is None:
        raise RuntimeError("on_thread_exit() must be called from inside a sync check run by healthprobe")
    callbacks.append(callback)


#: Seconds a sync check's thread waits for its next run before it ends (with its teardowns):
#: above the kubelet's default probe period (10 s) and a background check's usual interval,
#: so a probed check keeps its thread, while a registry no longer used leaves none behind.
CHECK_THREAD_IDLE = 60.0


class _CheckThread:
    """The daemon thread that runs one sync check's runs, one at a time, in arrival order;
    it ends after :data:`CHECK_THREAD_IDLE` seconds without one (the next run starts another).

    Not started again after a fork (threads do not survive ``fork``): :meth:`submit` refuses
    in another process, and the runner starts a new one.
    """

    def __init__(self, runner: Runner, state: CheckState) -> None:
        self._runner = runner
        self._state = state
        self._pid = os.getpid()
        self._runs: queue.SimpleQueue[_Run | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._retired = False
        self._thread = _threads.start(self._main, name=f"healthprobe-check-{state.check.name}")

    def submit(self, run: _Run) -> bool:
        """Queue ``run``; ``False`` if this thread takes no more runs (retired, or forked away)."""
        with self._lock:
            if self._retired or self._pid != os.getpid():
                return False
            self._runs.put(run)
            return True

    def retire(self) -> bool:
        """Take no more runs; end after the current one. Whether the thread was running."""
        with self._lock:
            if self._retired or self._pid != os.getpid():
                return False
            self._retired = True
            self._runs.put(None)
            return True

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _main(self) -> None:
        _teardowns.callbacks = []
        try:
            while True:
                try:
                    run = self._runs.get(timeout=CHECK_THREAD_IDLE)
                except queue.Empty:
                    with self._lock:  # no run was queued meanwhile: take no more, end
                        if self._runs.empty():
                            self._retired = True
                            break
                    continue
                if run is None:
                    break
                self._runner._call_sync(self._state, run, self)
        finally:
            callbacks: list[Callable[[], object]] = _teardowns.callbacks
            while callbacks:
                callback = callbacks.pop()
                try:
                    callback()
                except Exception as exc:  # one teardown's failure must not skip the others
                    logger.warning(
                        "check %r: a thread teardown raised %s",
                        self._state.check.name,
                        type(exc).__name__,
                        extra={"check": self._state.check.name, "error_type": type(exc).__name__},
                    )


class Runner:
    """Executes checks for a registry. One per :class:`healthprobe.HealthRegistry`."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_pid = 0
        self._background_pid = 0
        self._background_tasks: list[concurrent.futures.Future[None]] = []
        self.on_result: Callable[[CheckState, CheckResult], None] | None = None
        #: Called as ``on_run(state, background)`` for every new run, in the thread (and
        #: context) of the probe that claimed it, before it starts (``background``: a
        #: background check's own run); what it returns, if not ``None``, is called with the
        #: run's result before any waiter sees it. Set with the registry's ``tracing`` (a span
        #: per run); its exceptions are logged and ignored. ``None``, the default, costs one test.
        self.on_run: Callable[[CheckState, bool], Callable[[CheckResult], None] | None] | None = None
        #: Called after a run settled with a status other than the check's previous one (or
        #: its first), as ``on_change(state, previous, result, seconds the old status lasted)``.
        self.on_change: Callable[[CheckState, CheckResult | None, CheckResult, float], None] | None = None

    # -- private event loop -------------------------------------------------------------

    def private_loop(self) -> asyncio.AbstractEventLoop:
        """A daemon thread's event loop, for async checks asked for by sync callers.

        Re-created in a forked child (threads do not survive ``fork``).
        """
        pid = os.getpid()
        loop = self._loop
        if loop is not None and self._loop_pid == pid:
            return loop
        with self._lock:
            if self._loop is None or self._loop_pid != pid:
                new_loop = asyncio.new_event_loop()
                _threads.start(new_loop.run_forever, name="healthprobe-checks")
                self._loop, self._loop_pid = new_loop, pid
            return self._loop

    # -- claiming a run --------------------------------------------------------------------

    def claim(self, state: CheckState, *, force: bool = False) -> tuple[_Run | CheckResult, bool]:
        """Find or start the run a probe should use for ``state``'s check.

        Returns ``(fresh CheckResult, False)`` for a cache hit, ``(run, False)`` to join a run
        in flight (or one already resolved), and ``(run, True)`` when the caller must lead
        (start) the new run.
        """
        now = time.monotonic()
        check = state.check
        with state.lock:
            if not force:
                fresh = state.fresh_result(now)
                if fresh is not None:
                    return fresh, False
            run = state.run
            if run is not None and not run.resolved:
                return run, False
            run = _Run(now, now + check.timeout)
            state.run = run
            if state.busy:
                lead = False
            else:
                state.busy = True
                lead = True
        on_run = self.on_run
        if on_run is not None:
            try:
                run.ending = on_run(state, force)
            except Exception:  # tracing must never break a probe
                logger.debug("check %s: on_run hook raised", check.name, exc_info=True)
        if not lead:
            self.resolve(state, run, _timeout_result(check, still_running=True))
        return run, lead

    def resolve(self, state: CheckState, run: _Run, result: CheckResult) -> None:
        """Settle ``run`` with ``result`` unless it is settled already (first one wins)."""
        now = time.monotonic()
        result = CheckResult(  # dataclasses.replace, without its per-call introspection
            result.status,
            result.output,
            result.observed_value,
            result.observed_unit,
            now - run.started,
            time.time(),
            result.error_type,
            result.timed_out,
        )
        check = state.check
        lasted = 0.0
        with state.lock:
            if run.resolved:
                return
            run.resolved = True
            previous = state.last
            state.last = result
            changed = previous is None or previous.status is not result.status
            if changed:
                lasted, state.status_since = now - state.status_since, now
            ttl = check.cache_ttl
            if check.interval is not None:
                ttl = max(ttl, check.interval + check.timeout)
            state.fresh_until = now + ttl
            state.stats.record(result)
        # Log, then tell listeners (multiprocess metrics), then wake the waiters: when a
        # probe answers, its result is already in the log and in what listeners maintain.
        _log_transition(check, previous, result, lasted if changed else None)
        try:
            # A change is queued for the transition listeners (a short lock, only when the
            # status changed) before the waiters wake, so that it comes before the change of
            # the probe that waits for it.
            if changed and self.on_change is not None:
                self.on_change(state, previous, result, lasted)
            if self.on_result is not None:
                self.on_result(state, result)
        finally:
            if run.ending is not None:
                try:
                    run.ending(result)
                except Exception:  # tracing must never break a probe
                    logger.debug("check %s: ending hook raised", check.name, exc_info=True)
            run.future.set_result(result)

    def _release(self, state: CheckState) -> None:
        with state.lock:
            state.busy = False

    # -- leading a run -------------------------------------------------------------------

    def start_sync_check(self, state: CheckState, run: _Run) -> None:
        """Run a sync check in its own long-lived thread (started on first use, again after
        a fork or after a run that outlived its deadline)."""
        with state.lock:
            thread = state.thread
            if thread is None or not thread.submit(run):
                thread = state.thread = _CheckThread(self, state)
                thread.submit(run)

    def _call_sync(self, state: CheckState, run: _Run, thread: _CheckThread) -> None:
        """Run ``run`` on ``thread``, the check's own; one that outlived its deadline retires
        the thread before the check is released, so the next run never queues behind it."""
        try:
            result = normalize(state.check.func())
        except BaseException as exc:  # SystemExit too: a check must never take the thread down
            result = _from_exception(exc)
        if time.monotonic() > run.deadline:
            thread.retire()
        self._release(state)
        self.resolve(state, run, result)

    def close_threads(self, states: Iterable[CheckState], timeout: float = 1.0) -> None:
        """End the threads of ``states``' sync checks after their current run, running each
        thread's teardowns (:func:`on_thread_exit`); wait up to ``timeout`` seconds in all
        for the idle ones. A later run starts a new thread."""
        ending = []
        for state in states:
            with state.lock:
                thread, state.thread = state.thread, None
            if thread is not None and thread.retire():
                ending.append(thread)
        deadline = time.monotonic() + timeout
        for thread in ending:
            thread.join(max(0.0, deadline - time.monotonic()))

    def start_async_check(self, state: CheckState, run: _Run) -> None:
        """Start an async check's run as a task of its own on the running event loop.

        On asyncio it is a plain task; on trio a system task
        (:func:`trio.lowlevel.spawn_system_task`), which needs no nursery. Either way it
        runs in a copy of the caller's context variables, settles ``run`` when it ends or at
        its deadline, and releases the check only when it has really ended. Never raises: a
        task that cannot be started fails the run.
        """
        try:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no asyncio loop in this thread: anyio runs us on trio
                self._start_on_trio(state, run)
            else:
                self._start_on_asyncio(loop, state, run)
        except BaseException as exc:  # nothing may leave the check busy for ever
            self._release(state)
            self.resolve(state, run, _from_exception(exc))

    def start_async_check_elsewhere(self, state: CheckState, run: _Run) -> None:
        """Start an async check's run on the private loop (for sync callers)."""
        loop = self.private_loop()
        try:
            loop.call_soon_threadsafe(self._start_here, loop, state, run)
        except RuntimeError as exc:  # the loop was closed: nothing may leave the check busy
            self._release(state)
            self.resolve(state, run, _from_exception(exc))

    def _start_here(self, loop: asyncio.AbstractEventLoop, state: CheckState, run: _Run) -> None:
        """:meth:`start_async_check` on ``loop``, which must be running in this thread."""
        try:
            self._start_on_asyncio(loop, state, run)
        except BaseException as exc:
            self._release(state)
            self.resolve(state, run, _from_exception(exc))

    def _start_on_asyncio(self, loop: asyncio.AbstractEventLoop, state: CheckState, run: _Run) -> None:
        task = loop.create_task(self._asyncio_run(state, run), name=f"healthprobe-check-{state.check.name}")
        with state.lock:
            if not task.done():  # an eager task factory may have run it to its end already
                state.task = task

    async def _asyncio_run(self, state: CheckState, run: _Run) -> None:
        """One run of an async check, as its own asyncio task.

        At the deadline a timer settles the run as "timed out" (so every probe waiting for
        it is answered) and cancels this task **once**. A check that swallows that
        cancellation is abandoned :data:`ABANDON_AFTER` seconds later (logged, counted) and
        left to end on its own, never cancelled again: a scope that cancels on every await
        would turn such a check into a busy loop.

        Whatever the check raises is its failure, recorded with the exception's type at
        once: :class:`SystemExit`, :class:`KeyboardInterrupt`, :class:`GeneratorExit` and
        other :class:`BaseException` subclasses too, so none of them reaches the event loop
        (asyncio re-raises ``SystemExit`` and ``KeyboardInterrupt`` out of ``run_forever``).
        A ``CancelledError`` is the deadline's when healthprobe cancelled the task, the
        check's own failure when nobody did (``raise asyncio.CancelledError`` from a client
        library), and is propagated when someone else cancelled the task (the event loop
        shutting down), which Python 3.11+ tells by :meth:`asyncio.Task.cancelling`.
        """
        check = state.check
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        timer = loop.call_later(max(0.0, run.deadline - time.monotonic()), self._cut_asyncio, state, run, task)
        result: CheckResult | None = None
        try:
            try:
                value = check.func()
                result = normalize(await value) if inspect.isawaitable(value) else normalize(value)
            except asyncio.CancelledError as exc:
                if not run.cut:
                    cancelling = getattr(task, "cancelling", None)
                    if callable(cancelling) and cancelling():
                        raise  # cancelled by someone else: the event loop is shutting down
                    # One the check raised itself (``raise asyncio.CancelledError`` from a
                    # client library): the check's failure.
                    result = _from_exception(exc)
            except BaseException as exc:  # SystemExit, KeyboardInterrupt...: see the docstring
                result = _from_exception(exc)
        finally:
            timer.cancel()
            if result is None:
                result = _timeout_result(check) if run.cut else _INTERRUPTED
            elif run.cut or time.monotonic() > run.deadline:
                # Past the deadline the answer is "timed out", whatever the check returned:
                # a check that swallowed its cancellation, or one that blocked the event loop
                # beyond its deadline, must not report pass.
                result = _timeout_result(check)
            self._ended(state, run, task)
            self.resolve(state, run, result)

    def _cut_asyncio(self, state: CheckState, run: _Run, task: asyncio.Task[None]) -> None:
        """At the deadline of ``run``: settle it as timed out, cancel its task once, and
        look again :data:`ABANDON_AFTER` seconds later."""
        if task.done():
            return
        run.cut = True
        self.resolve(state, run, _timeout_result(state.check))
        task.cancel()
        task.get_loop().call_later(ABANDON_AFTER, self._abandon_if_running, state, run, task.done)

    def _start_on_trio(self, state: CheckState, run: _Run) -> None:
        import contextvars

        import trio

        trio.lowlevel.spawn_system_task(
            self._trio_run,
            state,
            run,
            name=f"healthprobe-check-{state.check.name}",
            context=contextvars.copy_context(),
        )

    async def _trio_run(self, state: CheckState, run: _Run) -> None:
        """One run of an async check, as a trio system task.

        The check runs inside two cancel scopes: the outer one carries the run's deadline,
        the inner one is there to be shielded. trio's cancellation is level-triggered (every
        checkpoint inside a cancelled scope raises ``Cancelled``), so a check that swallowed
        it would get it again at once, for ever: a busy loop. So the probes waiting for the
        run, the first of them at the deadline, have it watched (:meth:`_watch_on_trio`):
        once the deadline's ``Cancelled`` has had :data:`_TRIO_CANCEL_ROUNDS` scheduling
        rounds to reach the check, the inner scope is shielded and the check, if it is still
        running, is left alone. Exceptions as :meth:`_asyncio_run`; the ``Cancelled`` of the
        trio run ending (system tasks are cancelled when the main task returns) propagates.
        """
        import trio

        check = state.check
        result: CheckResult | None = None
        try:
            remaining = max(0.0, run.deadline - time.monotonic())
            with trio.CancelScope(deadline=trio.current_time() + remaining) as outer, trio.CancelScope() as inner:
                run.scopes = (outer, inner)
                try:
                    value = check.func()
                    result = normalize(await value) if inspect.isawaitable(value) else normalize(value)
                except trio.Cancelled:
                    raise  # the deadline's (the outer scope ends it) or the trio run's end
                except BaseException as exc:  # see the docstring
                    result = _from_exception(exc)
        finally:
            if result is None:
                result = _timeout_result(check) if time.monotonic() >= run.deadline else _INTERRUPTED
            elif run.cut or time.monotonic() > run.deadline:
                result = _timeout_result(check)
            self._ended(state, run, None)
            self.resolve(state, run, result)

    def _watch_on_trio(self, state: CheckState, run: _Run) -> None:
        """Watch ``run``, which outlived its deadline (trio; once per run): cancel it, let
        the ``Cancelled`` reach the check, then shield the check from further cancellation,
        and count it as abandoned if it is still running :data:`ABANDON_AFTER` seconds
        later."""
        import trio

        if run.cut or run.ended:
            return
        run.cut = True
        scopes = run.scopes

        async def watch() -> None:
            if scopes is not None:
                outer, inner = scopes
                outer.cancel()  # in case trio's clock has not reached the deadline yet
                for _ in range(_TRIO_CANCEL_ROUNDS):
                    await trio.lowlevel.checkpoint()
                if not run.ended:
                    inner.shield = True
            await trio.sleep(ABANDON_AFTER)
            self._abandon_if_running(state, run, lambda: run.ended)

        trio.lowlevel.spawn_system_task(watch, name=f"healthprobe-watch-{state.check.name}")

    def _abandon_if_running(self, state: CheckState, run: _Run, ended: Callable[[], bool]) -> None:
        """Count and log ``run`` as abandoned if its task has not ended: once per run, at
        WARNING unless the check's previous run was abandoned too (then at DEBUG)."""
        if ended():
            return
        check = state.check
        with state.lock:
            if run.abandoned:
                return
            run.abandoned = True
            state.stats.abandoned += 1
            count = state.stats.abandoned
            repeated, state.abandoning = state.abandoning, True
        logger.log(
            logging.DEBUG if repeated else logging.WARNING,
            "check %s: still running %.1f s after it was cancelled at its %g s deadline; abandoned, "
            "not cancelled again (it swallows its cancellation: see 'What a check must not do' in "
            "docs/checks.md); probes fail at once until it ends",
            check.name,
            ABANDON_AFTER,
            check.timeout,
            extra={
                "check": check.name,
                "probes": sorted(probe.value for probe in check.probes),
                "abandoned": count,
            },
        )

    def _ended(self, state: CheckState, run: _Run, task: object | None) -> None:
        """The task of ``run`` has ended: release the check for the next run."""
        run.ended = True
        with state.lock:
            if task is None or state.task is task:
                state.task = None
            if not run.abandoned:
                state.abandoning = False
            state.busy = False
        if run.abandoned:
            logger.debug(
                "check %s: its abandoned run ended %.1f s after its deadline",
                state.check.name,
                time.monotonic() - run.deadline,
                extra={"check": state.check.name},
            )

    # -- waiting -------------------------------------------------------------------------

    def wait_sync(self, state: CheckState, run: _Run) -> CheckResult:
        """Block the calling thread until ``run`` settles or its deadline passes."""
        if not run.future.done():
            remaining = run.deadline - time.monotonic()
            if remaining > 0:
                concurrent.futures.wait([run.future], timeout=remaining)
            if not run.future.done():
                self.resolve(state, run, _timeout_result(state.check))
        return run.future.result()

    async def wait_async(self, state: CheckState, run: _Run) -> CheckResult:
        """Wait without blocking the event loop until ``run`` settles or its deadline passes."""
        future = run.future
        if not future.done():
            remaining = run.deadline - time.monotonic()
            token = anyio.lowlevel.current_token().native_token
            if remaining <= 0:
                pass
            elif isinstance(token, asyncio.AbstractEventLoop):
                # asyncio's own primitives: a future woken by the run or by a timer, at a
                # fraction of the cost of an anyio event inside a cancel scope.
                waiter = token.create_future()
                future.add_done_callback(lambda _: _wake(token, lambda: _settle(waiter)))
                timer = token.call_later(remaining, _settle, waiter)
                try:
                    await waiter
                finally:
                    timer.cancel()
            else:
                event = anyio.Event()
                future.add_done_callback(lambda _: _wake(token, event.set))
                with anyio.move_on_after(remaining):
                    await event.wait()
            if not future.done():
                self.resolve(state, run, _timeout_result(state.check))
                if state.check.is_async and not run.ended and not isinstance(token, asyncio.AbstractEventLoop):
                    self._watch_on_trio(state, run)  # on asyncio, the run's own timer does this
        return future.result()

    # -- whole probes --------------------------------------------------------------------

    def run_sync(self, states: Iterable[CheckState]) -> list[tuple[CheckResult, bool]]:
        """Run ``states`` in parallel from a sync caller; returns ``(result, cached)`` each."""
        claims = [(state, *self.claim(state)) for state in states]
        for state, run, lead in claims:
            if lead and isinstance(run, _Run):
                if state.check.is_async:
                    self.start_async_check_elsewhere(state, run)
                else:
                    self.start_sync_check(state, run)
        results: list[tuple[CheckResult, bool]] = []
        for state, run, _lead in claims:
            if isinstance(run, CheckResult):
                results.append((run, True))
            else:
                results.append((self.wait_sync(state, run), False))
        return results

    async def run_async(self, states: Iterable[CheckState]) -> list[tuple[CheckResult, bool]]:
        """Run ``states`` in parallel from an async caller, without blocking its loop.

        Every check runs in a task or thread of its own, so the caller only waits: for each
        run in the order of their deadlines, which settles each one at its own deadline at
        the latest and returns by the latest of them.
        """
        claims = [(state, *self.claim(state)) for state in states]
        results: list[tuple[CheckResult, bool] | None] = [None] * len(claims)
        pending: list[tuple[float, int, CheckState, _Run]] = []
        for index, (state, run, lead) in enumerate(claims):
            if isinstance(run, CheckResult):
                results[index] = (run, True)
                continue
            if lead:
                if state.check.is_async:
                    self.start_async_check(state, run)
                else:
                    self.start_sync_check(state, run)
            pending.append((run.deadline, index, state, run))
        pending.sort(key=lambda entry: entry[0])
        for _deadline, index, state, run in pending:
            results[index] = (await self.wait_async(state, run), False)
        return [entry for entry in results if entry is not None]

    # -- background checks ---------------------------------------------------------------

    def ensure_background(self, states: Iterable[CheckState]) -> None:
        """Start the background loops of checks that have an ``interval`` (once per process)."""
        pid = os.getpid()
        if self._background_pid == pid:
            return
        with self._lock:
            if self._background_pid == pid:
                return
            self._background_pid = pid
            periodic = [state for state in states if state.check.interval is not None]
            if periodic:
                loop = self.private_loop()
                self._background_tasks = [
                    asyncio.run_coroutine_threadsafe(self._background(state), loop) for state in periodic
                ]

    def add_background(self, state: CheckState) -> None:
        """Start the background loop of one check registered after the others started."""
        if self._background_pid == os.getpid() and state.check.interval is not None:
            self._background_tasks.append(
                asyncio.run_coroutine_threadsafe(self._background(state), self.private_loop())
            )

    async def _background(self, state: CheckState) -> None:
        interval = state.check.interval
        assert interval is not None
        while not state.removed:
            run, lead = self.claim(state, force=True)
            if isinstance(run, _Run):
                if lead:
                    if state.check.is_async:
                        self.start_async_check(state, run)
                    else:
                        self.start_sync_check(state, run)
                await self.wait_async(state, run)
            await asyncio.sleep(interval)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake(token: object, callback: Callable[[], Any]) -> None:
    """Call ``callback`` on the event loop behind ``token``, from any thread: at once when
    called on that loop (a check's own task settling its run), else soon."""
    try:
        if isinstance(token, asyncio.AbstractEventLoop):
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is token:
                callback()
            else:
                token.call_soon_threadsafe(callback)
        else:  # trio: TrioToken.run_sync_soon
            token.run_sync_soon(callback)  # type: ignore[attr-defined]
    except RuntimeError:  # the loop has closed: nobody is waiting any more
        pass


def _fields(check: Check, previous: CheckResult | None, result: CheckResult) -> dict[str, object]:
    """The structured fields of a check's log record (docs/logging.md); never its output."""
    return {
        "check": check.name,
        "probes": sorted(probe.value for probe in check.probes),
        "status": result.status.value,
        "previous_status": None if previous is None else previous.status.value,
        "seconds": result.duration,
    }


def _change_fields(previous: CheckResult | None, result: CheckResult, lasted: float) -> dict[str, object]:
    """The transition fields of a check's change record (docs/logging.md)."""
    return {
        "transition": "check",
        "old": UNKNOWN if previous is None else previous.status.value,
        "new": result.status.value,
        "reason_class": check_reason(previous, result),
        "lasted": round(lasted, 3),
    }


def _logged(output: str | None) -> str | None:
    """What a log line shows of a check's output: redacted (:func:`healthprobe.checks.redact`;
    a check run's output already is, this covers every other way a result is made) and
    escaped onto one line (:func:`one_line`)."""
    return None if output is None else one_line(redact(output))


def _log_transition(check: Check, previous: CheckResult | None, result: CheckResult, lasted: float | None) -> None:
    """The record of a check's run: one per change of status (``lasted``: seconds the old
    status lasted, ``None`` for a repeat), at DEBUG for a repeat that does not pass."""
    if lasted is None:
        if result.status is not Status.PASS and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "check %s still %s: %s",
                check.name,
                result.status.value,
                _logged(result.output),
                extra=_fields(check, previous, result),
            )
        return
    if result.status is Status.PASS:
        if previous is not None:
            logger.info(
                "check %s recovered: pass",
                check.name,
                extra={**_fields(check, previous, result), **_change_fields(previous, result, lasted)},
            )
        elif logger.isEnabledFor(logging.DEBUG):  # a first pass: quiet at start-up
            logger.debug(
                "check %s: pass",
                check.name,
                extra={**_fields(check, previous, result), **_change_fields(previous, result, lasted)},
            )
        return
    logger.warning(
        "check %s: %s (%s)%s",
        check.name,
        result.status.value,
        _logged(result.output) or "no output",
        f" [{result.error_type}]" if result.error_type else "",
        extra={
            **_fields(check, previous, result),
            "critical": check.critical,
            "timed_out": result.timed_out,
            "error_type": result.error_type,
            **_change_fields(previous, result, lasted),
        },
    )
