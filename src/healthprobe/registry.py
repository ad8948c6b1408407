"""The health registry: named checks, lifecycle state, and ``run(probe) -> Report``."""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import logging
import math
import re
import threading
import time
import typing

from . import _runner, _types

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._runner import Check, CheckFunc, CheckState
    from ._types import CheckReport, CheckResult, Lifecycle, Probe, Report

__all__ = [
    "CHECK_NAME",
    "DEFAULT_CACHE_TTL",
    "DEFAULT_TIMEOUT",
    "RESERVED_NAMES",
    "AnswerStamp",
    "HealthRegistry",
    "LifecycleListener",
    "ReportListener",
    "ResultListener",
    "UnknownCheckError",
    "as_probe",
    "check_seconds",
]

_logger = logging.getLogger("healthprobe")

_F = typing.TypeVar("_F", bound="CheckFunc")
#: A lifecycle listener: called as ``listener(old, new)`` after every lifecycle change.
LifecycleListener = collections.abc.Callable[[_types.Lifecycle, _types.Lifecycle], None]
#: A result listener: called as ``listener(check, result)`` after every completed check run.
ResultListener = collections.abc.Callable[[_runner.Check, _types.CheckResult], None]
#: A report listener: called as ``listener(report)`` after every whole-probe answer.
ReportListener = collections.abc.Callable[[_types.Report], None]

#: Default deadline of one check run, in seconds: below the kubelet's default
#: ``timeoutSeconds`` of 1 s, so a probe is answered before the kubelet gives up.
DEFAULT_TIMEOUT = 0.8
#: Default time a check result is reused, in seconds.
DEFAULT_CACHE_TTL = 1.0

#: What a check name may be (1-63 characters, a DNS-label-like word that fits URLs,
#: bodies and Prometheus label values).
CHECK_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
#: Names healthprobe itself uses in bodies (``[-]lifecycle failed: draining``).
RESERVED_NAMES = frozenset({"lifecycle"})


class UnknownCheckError(LookupError):
    """Raised when a check name is not registered (or not a member of the probe asked)."""


def as_probe(value: Probe | str) -> Probe:
    """The :class:`~healthprobe.Probe` named by ``value``.

    Args:
        value: a probe, or its name: ``"startup"``, ``"readiness"`` or ``"liveness"``.

    Returns:
        The probe (``value`` itself when it is one).

    Raises:
        ValueError: ``value`` names no probe; the message lists the names.
    """
    if type(value) is _types.Probe:  # the hot path: adapters pass probes, not names
        return value
    try:
        return _types.Probe(value)
    except ValueError:
        names = ", ".join(p.value for p in _types.Probe)
        raise ValueError(f"unknown probe {value!r}: expected one of {names}") from None


def _is_async(func: object) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one probe run will do: its member checks after ``exclude``/``only``, and the
    startup probe to run alongside a readiness probe asked while still ``starting``."""

    probe: Probe
    states: list[CheckState]
    unknown: tuple[str, ...]
    only: str | None = None
    narrowed: bool = False
    startup: _Plan | None = None

    def all_states(self) -> list[CheckState]:
        """Startup states first (if any), then this probe's; a check in both is listed
        twice and the runner's single-flight makes it run once."""
        return ([] if self.startup is None else self.startup.all_states()) + self.states


class HealthRegistry:
    """Named checks and the lifecycle state of one process: the single source of truth
    that every adapter, server integration and metrics collector reads.

    Args:
        default_timeout: deadline of a check run in seconds when a check sets none
            (0.8 s, inside the kubelet's default 1 s ``timeoutSeconds``).
        default_cache_ttl: seconds a result is reused when a check sets none (1.0 s).

    Probe rules (Kubernetes, "Configure Liveness, Readiness and Startup Probes"):

    * **startup** passes once every critical startup check passes, then latches: the
      lifecycle becomes ``started`` and the startup probe passes from then on.
    * **readiness** fails while the lifecycle is ``starting``, ``draining`` or ``stopped``,
      while marked not ready, or when a critical readiness check fails.
    * **liveness** fails only when marked not live or a critical liveness check fails; the
      lifecycle never fails it.
    """

    def __init__(
        self, *, default_timeout: float = DEFAULT_TIMEOUT, default_cache_ttl: float = DEFAULT_CACHE_TTL
    ) -> None:
        check_seconds("default_timeout", default_timeout, positive=True)
        check_seconds("default_cache_ttl", default_cache_ttl, positive=False)
        self.default_timeout = default_timeout
        self.default_cache_ttl = default_cache_ttl
        self._lock = threading.Lock()
        self._states: dict[str, CheckState] = {}
        self._lifecycle = _types.Lifecycle.STARTING
        # The reasons of set_ready(False) and set_live(False), by probe: None while not set.
        self._marked: dict[Probe, str | None] = {_types.Probe.READINESS: None, _types.Probe.LIVENESS: None}
        self._listeners: list[LifecycleListener] = []
        self._result_listeners: list[ResultListener] = []
        self._report_listeners: list[ReportListener] = []
        self._runner = _runner.Runner()
        self._runner.on_result = self._notify_result
        self.last_reports: dict[Probe, Report] = {}
        #: Counts every change a report depends on besides check results (checks added or
        #: removed, lifecycle, manual switches): a report stamped with an older generation is
        #: never served again (:meth:`stamp`). Read-only for callers; a plain attribute,
        #: since the adapters read it on every repeated probe.
        self.generation = 0

    # -- registration ----------------------------------------------------------------------

    def add_check(
        self,
        name: str,
        func: CheckFunc,
        *,
        probes: Iterable[Probe | str] = (_types.Probe.READINESS,),
        timeout: float | None = None,
        critical: bool = True,
        cache_ttl: float | None = None,
        interval: float | None = None,
    ) -> Check:
        """Register a check.

        Args:
            name: unique name of 1 to 63 characters (letters, digits, ``_ . -``; starting
                and ending with a letter or digit), used in URLs, bodies and metric labels.
            func: a callable taking no arguments, sync or async. It passes by returning
                ``None`` or ``True``, fails by returning ``False`` or raising, and may return
                a :class:`CheckResult` to report ``warn``, an output or an observed value.
            probes: the probes the check belongs to (``"startup"``, ``"readiness"``,
                ``"liveness"``); readiness only by default.
            timeout: deadline of one run in seconds (default ``default_timeout``).
            critical: when ``False``, a failure is reported as ``warn`` and never fails a probe.
            cache_ttl: seconds a result is reused before the check runs again.
            interval: when set, seconds between background runs; probes then read the latest
                background result instead of running the check.

        Returns:
            The registered :class:`Check`.

        Raises:
            ValueError: on a duplicate, reserved (``lifecycle``) or malformed name, an
                unknown probe, no probe, or a
                non-positive or non-finite ``timeout``/``interval`` or negative ``cache_ttl``.
            TypeError: if ``func`` is not callable, or not callable without arguments, or the
                two are swapped.
        """
        if callable(name) and isinstance(func, str):
            raise TypeError(f"the name comes first: add_check({func!r}, function)")
        if not isinstance(name, str) or not CHECK_NAME.fullmatch(name):
            raise ValueError(
                f"invalid check name {name!r}: use 1-63 letters, digits, '_', '.' or '-', "
                "starting and ending with a letter or digit"
            )
        if name in RESERVED_NAMES:
            raise ValueError(f"check name {name!r} is reserved: healthprobe uses it in probe bodies")
        if not callable(func):
            raise TypeError(f"check {name!r}: func must be callable, got {type(func).__name__}")
        try:
            inspect.signature(func).bind()
        except TypeError:
            raise TypeError(f"check {name!r}: func must be callable with no arguments") from None
        except ValueError:  # no signature to read (some builtins): found out at the first run
            pass
        probe_set = frozenset(as_probe(p) for p in ([probes] if isinstance(probes, str) else probes))
        if not probe_set:
            raise ValueError(f"check {name!r} must belong to at least one probe")
        timeout = self.default_timeout if timeout is None else timeout
        cache_ttl = self.default_cache_ttl if cache_ttl is None else cache_ttl
        check_seconds("timeout", timeout, positive=True)
        check_seconds("cache_ttl", cache_ttl, positive=False)
        if interval is not None:
            check_seconds("interval", interval, positive=True)
        check = _runner.Check(
            name=name,
            func=func,
            probes=probe_set,
            timeout=float(timeout),
            critical=bool(critical),
            cache_ttl=float(cache_ttl),
            interval=None if interval is None else float(interval),
            is_async=_is_async(func),
        )
        state = _runner.CheckState(check)
        with self._lock:
            if name in self._states:
                raise ValueError(f"a check named {name!r} is already registered")
            self._states = {**self._states, name: state}
            self.generation += 1
        self._runner.add_background(state)
        return check

    @typing.overload
    def check(self, name: _F, /) -> _F: ...

    @typing.overload
    def check(
        self,
        name: str | None = None,
        *,
        probes: Iterable[Probe | str] = (_types.Probe.READINESS,),
        timeout: float | None = None,
        critical: bool = True,
        cache_ttl: float | None = None,
        interval: float | None = None,
    ) -> Callable[[_F], _F]: ...

    def check(
        self,
        name: str | _F | None = None,
        *,
        probes: Iterable[Probe | str] = (_types.Probe.READINESS,),
        timeout: float | None = None,
        critical: bool = True,
        cache_ttl: float | None = None,
        interval: float | None = None,
    ) -> Callable[[_F], _F] | _F:
        """Decorator form of :meth:`add_check`; the name defaults to the function's name.

        Used with arguments (``@registry.check("db", timeout=0.5)``), with none
        (``@registry.check()``) or bare (``@registry.check``, the defaults of
        :meth:`add_check`). Returns the function unchanged. Raises as :meth:`add_check` does.
        """
        if callable(name):  # bare @registry.check: ``name`` is the function itself
            func = name
            self.add_check(str(getattr(func, "__name__", "")), func)
            return func

        def register(func: _F) -> _F:
            self.add_check(
                name or str(getattr(func, "__name__", "")),
                func,
                probes=probes,
                timeout=timeout,
                critical=critical,
                cache_ttl=cache_ttl,
                interval=interval,
            )
            return func

        return register

    def remove_check(self, name: str) -> None:
        """Unregister a check. Raises :class:`UnknownCheckError` if there is none by that name."""
        with self._lock:
            if name not in self._states:
                raise UnknownCheckError(name)
            state = self._states[name]
            state.removed = True  # ends its background loop, if any
            self._states = {k: v for k, v in self._states.items() if k != name}
            self.generation += 1
        self._runner.close_threads([state], timeout=0)

    def close(self, timeout: float = 1.0) -> None:
        """End the threads that run the sync checks, once their current run is over, running
        the teardowns the checks registered in them (:func:`healthprobe.on_thread_exit`).

        :class:`healthprobe.GracefulShutdown` calls this after its cleanup hooks. The registry
        stays usable: a later run of a sync check starts a new thread.

        Args:
            timeout: how long to wait in all for idle threads to end, in seconds (a thread
                inside a run that hangs is not waited for beyond it; it is a daemon thread).
        """
        self._runner.close_threads(self.check_states(), timeout)

    @property
    def checks(self) -> tuple[Check, ...]:
        """The registered checks, in registration order."""
        return tuple(state.check for state in self._states.values())

    def check_states(self) -> tuple[CheckState, ...]:
        """Live state of every check (last result, statistics), for read-only views such as
        the Prometheus collector."""
        return tuple(self._states.values())

    def last_result(self, name: str) -> CheckResult | None:
        """The latest result of check ``name``, or ``None`` before its first run.

        Raises :class:`UnknownCheckError` for an unknown name.
        """
        try:
            return self._states[name].last
        except KeyError:
            raise UnknownCheckError(name) from None

    # -- lifecycle and manual switches -----------------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        """The current lifecycle state."""
        return self._lifecycle

    def add_lifecycle_listener(self, listener: LifecycleListener) -> None:
        """Call ``listener(old, new)`` after every lifecycle change (in the changing thread)."""
        self._listeners.append(listener)

    def add_result_listener(self, listener: ResultListener) -> None:
        """Call ``listener(check, result)`` after every completed run of any check.

        It is called in the thread that settled the run (a check thread, a probe's thread
        or an event loop), after the result and the statistics are recorded and before the
        probes waiting for the run see the result, so it must return quickly and never
        block. An exception it raises is logged and ignored.
        """
        self._result_listeners.append(listener)

    def add_report_listener(self, listener: ReportListener) -> None:
        """Call ``listener(report)`` after every whole-probe answer is recorded in
        :attr:`last_reports` (in the answering thread; must return quickly). An exception
        it raises is logged and ignored."""
        self._report_listeners.append(listener)

    def _notify_result(self, state: CheckState, result: CheckResult) -> None:
        for listener in list(self._result_listeners):
            try:
                listener(state.check, result)
            except Exception:
                _logger.exception("result listener %r raised", listener, extra={"check": state.check.name})

    def _transition(self, allowed: tuple[Lifecycle, ...], new: Lifecycle) -> bool:
        with self._lock:
            old = self._lifecycle
            if old not in allowed:
                return False
            self._lifecycle = new
            self.generation += 1
        _logger.info(
            "lifecycle %s -> %s", old.value, new.value, extra={"lifecycle": new.value, "previous_lifecycle": old.value}
        )
        for listener in list(self._listeners):
            try:
                listener(old, new)
            except Exception:
                _logger.exception(
                    "lifecycle listener %r raised",
                    listener,
                    extra={"lifecycle": new.value, "previous_lifecycle": old.value},
                )
        return True

    def mark_started(self) -> bool:
        """Latch startup (``starting -> started``) without waiting for startup checks.

        Returns ``True`` if the state changed.
        """
        return self._transition((_types.Lifecycle.STARTING,), _types.Lifecycle.STARTED)

    def begin_drain(self) -> bool:
        """Enter ``draining``: readiness fails from now on, liveness is unaffected.

        Returns ``True`` if the state changed (``False`` if already draining or stopped).
        """
        return self._transition((_types.Lifecycle.STARTING, _types.Lifecycle.STARTED), _types.Lifecycle.DRAINING)

    def mark_stopped(self) -> bool:
        """Enter ``stopped`` (final). Returns ``True`` if the state changed."""
        return self._transition(
            (_types.Lifecycle.STARTING, _types.Lifecycle.STARTED, _types.Lifecycle.DRAINING), _types.Lifecycle.STOPPED
        )

    def set_ready(self, ready: bool, reason: str | None = None) -> None:
        """Switch readiness by hand (for maintenance, warm-up, back-pressure).

        Args:
            ready: ``False`` fails readiness until called again with ``True``.
            reason: short operator text shown in probe bodies as ``not ready: <reason>``.
        """
        self._mark(_types.Probe.READINESS, None if ready else (reason or "marked not ready"))

    def set_live(self, live: bool, reason: str | None = None) -> None:
        """Switch liveness by hand: ``False`` makes the kubelet restart the container once
        ``failureThreshold`` probes in a row have failed.

        Args:
            live: ``False`` fails liveness until called again with ``True``.
            reason: short operator text shown in probe bodies as ``not live: <reason>``.
        """
        self._mark(_types.Probe.LIVENESS, None if live else (reason or "marked not live"))

    def _mark(self, probe: Probe, reason: str | None) -> None:
        with self._lock:  # no bump of the generation may be lost to a concurrent one
            self._marked[probe] = reason
            self.generation += 1

    # -- running probes --------------------------------------------------------------------

    def _plan(self, probe: Probe | str, exclude: Iterable[str], only: str | None) -> _Plan:
        probe = as_probe(probe)
        states = [s for s in self._states.values() if probe in s.check.probes]
        self._runner.ensure_background(self._states.values())
        if only is not None:
            states = [s for s in states if s.check.name == only]
            if not states:
                raise UnknownCheckError(only)
            return _Plan(probe, states, (), only=only)
        excluded = {exclude} if isinstance(exclude, str) else set(exclude)
        unknown = tuple(sorted(excluded - {s.check.name for s in states}))
        states = [s for s in states if s.check.name not in excluded]
        if probe is _types.Probe.STARTUP and self._lifecycle is not _types.Lifecycle.STARTING:
            states = []  # latched: startup checks never run again
        startup = None
        if probe is _types.Probe.READINESS and self._lifecycle is _types.Lifecycle.STARTING:
            # Readiness cannot pass before startup has: run the startup checks alongside the
            # readiness checks (one deadline for both), then let the startup report latch.
            startup = self._plan(_types.Probe.STARTUP, (), None)
        return _Plan(probe, states, unknown, narrowed=bool(excluded), startup=startup)

    def _finish(self, plan: _Plan, results: list[tuple[CheckResult, bool]]) -> Report:
        """Build the report of ``plan`` from the results of its states (and, first, the
        report of the startup probe it carries)."""
        if plan.startup is not None:
            startup_count = len(plan.startup.states)
            self._finish(plan.startup, results[:startup_count])
            results = results[startup_count:]
        probe, only, unknown = plan.probe, plan.only, plan.unknown
        entries: dict[str, CheckReport] = {}
        for state, (result, cached) in zip(plan.states, results, strict=True):
            check = state.check
            shown = result
            if result.status is _types.Status.FAIL and not check.critical:
                shown = _types.CheckResult(
                    _types.Status.WARN,
                    output=result.output,
                    observed_value=result.observed_value,
                    observed_unit=result.observed_unit,
                    duration=result.duration,
                    time=result.time,
                    error_type=result.error_type,
                    timed_out=result.timed_out,
                )
            entries[check.name] = _types.CheckReport(check.name, check.critical, shown, result.status, cached)
        reasons: tuple[str, ...] = ()
        if only is None:
            reasons = self._reasons(probe)
        status = _types.aggregate(entries, reasons)
        whole = only is None and not plan.narrowed
        if probe is _types.Probe.STARTUP and whole and status.ok:
            # Only a run of every startup check may latch startup: ``?exclude`` narrows
            # what one answer looks at, never the process's state.
            self.mark_started()
        report = _types.Report(probe, status, entries, reasons, self._lifecycle, unknown)
        if whole:
            self.last_reports[probe] = report
            for listener in list(self._report_listeners):
                try:
                    listener(report)
                except Exception:
                    _logger.exception("report listener %r raised", listener, extra={"probe": probe.value})
        return report

    def _reasons(self, probe: Probe) -> tuple[str, ...]:
        marked = self._marked.get(probe)  # None for startup, which has no switch
        if probe is _types.Probe.READINESS:
            lifecycle = self._lifecycle
            reasons = [] if lifecycle is _types.Lifecycle.STARTED else [lifecycle.value]
            if marked is not None:
                reasons.append(f"not ready: {marked}")
            return tuple(reasons)
        return () if marked is None else (f"not live: {marked}",)

    def run(self, probe: Probe | str, *, exclude: Iterable[str] = (), only: str | None = None) -> Report:
        """Answer a probe from a sync caller (a WSGI thread, a worker loop, a script).

        Member checks run in parallel; the call returns within the longest member
        ``timeout`` (plus scheduling), however the checks behave.

        Args:
            probe: ``"startup"``, ``"readiness"`` or ``"liveness"``.
            exclude: names of member checks to leave out, or one name as a ``str`` (names
                that match none are listed in ``Report.excluded_unknown``, as kube-apiserver
                warns of them).
            only: run just this one member check (as ``/readyz/<check>``); lifecycle
                reasons are then not applied.

        Returns:
            A :class:`Report`.

        Raises:
            UnknownCheckError: ``only`` names no member check of ``probe``.
            ValueError: ``probe`` is not a probe name.
        """
        plan = self._plan(probe, exclude, only)
        return self._finish(plan, self._runner.run_sync(plan.all_states()))

    async def run_async(self, probe: Probe | str, *, exclude: Iterable[str] = (), only: str | None = None) -> Report:
        """Answer a probe from async code without blocking the event loop.

        Async checks run on the calling event loop (asyncio or trio, through anyio); sync
        checks run in daemon threads. Arguments, result and errors as :meth:`run`.
        """
        plan = self._plan(probe, exclude, only)
        return self._finish(plan, await self._runner.run_async(plan.all_states()))

    # -- serving a report again -------------------------------------------------------------

    def stamp(self, report: Report, generation: int) -> AnswerStamp | None:
        """What must still hold for ``report`` to be served again without a new run, or
        ``None`` if it must not be reused.

        A report is reused only while no check result it shows has expired or been replaced,
        and nothing else it depends on has changed (:attr:`generation`). Never while
        ``starting``: readiness then also runs the startup checks, and startup must get the
        chance to latch. Never when it shows a non-critical failure as ``warn`` (the result
        it shows is a copy, not the check's own).

        Args:
            report: a report this registry made.
            generation: :attr:`generation` read before the run that made ``report``.

        Returns:
            An :class:`AnswerStamp` for :meth:`still_current`, or ``None``.
        """
        if generation != self.generation or self._lifecycle is _types.Lifecycle.STARTING:
            return None
        pairs: list[tuple[CheckState, CheckResult]] = []
        fresh_until = math.inf
        for name, entry in report.checks.items():
            state = self._states.get(name)
            if state is None or state.last is not entry.result:  # replaced, or a warn copy
                return None
            fresh_until = min(fresh_until, state.fresh_until)
            pairs.append((state, entry.result))
        return AnswerStamp(generation, fresh_until, tuple(pairs))

    def still_current(self, stamp: AnswerStamp) -> bool:
        """Whether a report stamped with ``stamp`` (by :meth:`stamp`) may still be served:
        :attr:`generation` is the stamp's, and, if the report shows check results, none of
        them has expired (``time.monotonic()`` before ``fresh_until``) or been replaced."""
        if stamp.generation != self.generation:
            return False
        if stamp.pairs:
            if time.monotonic() >= stamp.fresh_until:
                return False
            for state, result in stamp.pairs:
                if state.last is not result:
                    return False
        return True


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class AnswerStamp:
    """The conditions under which one report may be served again: made by
    :meth:`HealthRegistry.stamp`, tested by :meth:`HealthRegistry.still_current`.
    Read-only."""

    #: :attr:`HealthRegistry.generation` when the report was made.
    generation: int
    #: ``time.monotonic()`` at which the first check result shown expires (``inf`` when
    #: the report shows none).
    fresh_until: float
    #: Each check result the report shows, with the live state of its check: the report
    #: is stale once a state's latest result is another one.
    pairs: tuple[tuple[_runner.CheckState, _types.CheckResult], ...]


def check_seconds(what: str, value: float, *, positive: bool) -> None:
    """Refuse a number of seconds given as an option.

    Args:
        what: the option's name, for the message (``"timeout"``).
        value: the value given.
        positive: ``True`` when ``0`` is refused too.

    Raises:
        ValueError: ``value`` is not a finite ``int`` or ``float`` (a ``bool`` is refused),
            is negative, or is ``0`` while ``positive``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{what} must be {'> 0' if positive else '>= 0'} seconds, got {value!r}")
