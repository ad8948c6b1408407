"""The health registry: named checks, lifecycle state, and ``run(probe) -> Report``."""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import logging
import math
import os
import re
import threading
import time
import types
import typing

from . import _runner, _transitions, _types, render

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._runner import Check, CheckFunc, CheckState
    from ._transitions import Transition
    from ._types import CheckReport, CheckResult, Lifecycle, Probe, Report

__all__ = [
    "CHECK_NAME",
    "DEFAULT_CACHE_TTL",
    "DEFAULT_TIMEOUT",
    "GROUP_STATUS_RANGES",
    "RESERVED_NAMES",
    "ROTATION_REASON_LIMIT",
    "TRANSITION_QUEUE_SIZE",
    "AnswerStamp",
    "Group",
    "HealthRegistry",
    "LifecycleListener",
    "ReportListener",
    "ResultListener",
    "Rotation",
    "Tracing",
    "TransitionListener",
    "UnknownCheckError",
    "UnknownGroupError",
    "as_probe",
    "check_seconds",
]

_logger = logging.getLogger("healthprobe")

#: How many transitions wait for the transition listeners at most (the oldest is dropped when
#: the queue is full): :meth:`HealthRegistry.add_transition_listener`.
TRANSITION_QUEUE_SIZE = _transitions.TRANSITION_QUEUE_SIZE
#: A transition listener: called as ``listener(transition)`` with a
#: :class:`healthprobe.Transition` on the transitions thread.
TransitionListener = _transitions.TransitionListener

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
#: The most characters of an out-of-rotation reason that healthprobe keeps (from a call or
#: from the disable file's first line): a longer one is cut, so a body stays small.
ROTATION_REASON_LIMIT = 200
#: Bytes read from the disable file for its first line: enough for the longest reason in
#: UTF-8, so that a large file costs no more than a small one.
_DISABLE_FILE_READ = ROTATION_REASON_LIMIT * 4 + 2
#: The reason shown for a disable file whose first line is empty (or cannot be read).
_FILE_REASON = "disable file present"


class Tracing(typing.Protocol):
    """Hooks that trace probe answers and check runs, set as :attr:`HealthRegistry.tracing`
    (:func:`healthprobe.otel.instrument` sets one that makes OpenTelemetry spans).

    Every hook is called in the thread (or task) of the probe concerned and must return
    quickly and never raise: healthprobe calls them without a guard on the probe's path
    (``run_started``'s exceptions excepted, which are logged at DEBUG and ignored).
    """

    def probe_started(self, probe: Probe, only: str | None, group: str | None) -> object:
        """A probe's or a group's answer begins (:meth:`HealthRegistry.run`, ``run_async``,
        ``run_group``, ``run_group_async``), before any of its checks is claimed; returns a
        token for :meth:`probe_ended`.

        Args:
            probe: the probe asked (readiness for a group: the rules it answers by).
            only: the one check asked for (``/readyz/<check>``), or ``None``.
            group: the group asked (``/health/<group>``), or ``None`` for a probe.
        """
        ...

    def probe_ended(self, token: object, report: Report | None) -> None:
        """The answer :meth:`probe_started` began is made: ``report``, or ``None`` if making
        it raised. Called in the same thread or task as :meth:`probe_started`."""
        ...

    def run_started(self, check: Check, background: bool) -> Callable[[CheckResult], None] | None:
        """A new run of ``check`` begins, claimed by the probe being answered in this thread
        or task, or, when ``background`` is true, by the check's own background loop.

        Returns:
            ``None``, or a callable that the run's result is passed to when the run settles,
            before any probe sees that result (in the thread that settled it).
        """
        ...


class UnknownCheckError(LookupError):
    """Raised when a check name is not registered (or not a member of the probe asked)."""


class UnknownGroupError(LookupError):
    """Raised when a group name is not registered (:meth:`HealthRegistry.add_group`)."""


#: The status codes a group may answer with: ``success_status`` from 200 to 299 and
#: ``failure_status`` from 400 to 599 (a kubelet or a load balancer counts 200-399 as
#: success, and a 3xx without a ``Location`` means nothing to a dashboard).
GROUP_STATUS_RANGES = {"success_status": (200, 299), "failure_status": (400, 599)}


def _words(what: str, owner: str, values: str | Iterable[str]) -> frozenset[str]:
    """Check names or tags given as one ``str`` or an iterable of them, each validated as
    a check name is (:data:`CHECK_NAME`)."""
    if isinstance(values, str):
        values = (values,)
    try:
        found = frozenset(values)
    except TypeError:
        raise TypeError(f"{owner}: {what} must be a str or an iterable of str, got {type(values).__name__}") from None
    for value in found:
        if not isinstance(value, str) or not CHECK_NAME.fullmatch(value):
            raise ValueError(
                f"{owner}: invalid {what[:-1]} {value!r}: use 1-63 letters, digits, '_', '.' or '-', "
                "starting and ending with a letter or digit"
            )
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class Group:
    """A user-named group of checks (:meth:`HealthRegistry.add_group`), answered at its own
    path (``/health/<name>``) with its own status codes and detail policy, as Spring Boot's
    health groups and ASP.NET Core's tag predicates select checks. Read-only.

    A group runs its members as a probe runs them (single-flight, deadlines, the result
    cache, all shared with the probes), and changes no probe's answer: a check that belongs
    to no probe (``probes=()``) is run only for the groups that select it.
    """

    #: The group's name (validated as a check name): its path is ``<group_path>/<name>``.
    name: str
    #: The names of checks it selects (a name not registered selects nothing).
    checks: frozenset[str] = frozenset()
    #: The tags it selects: every check carrying one of them is a member.
    tags: frozenset[str] = frozenset()
    #: Whether the group fails with readiness's lifecycle and rotation reasons (``starting``,
    #: ``draining``, ``stopped``, out of rotation). ``False`` by default: a dashboard's view
    #: of dependencies says nothing about this instance's shutdown.
    lifecycle: bool = False
    #: HTTP status code of a passing (or warning) answer, 200-299.
    success_status: int = 200
    #: HTTP status code of a failing answer, 400-599.
    failure_status: int = 503
    #: Show what checks wrote in this group's bodies; ``None`` follows the endpoints'
    #: ``expose_output``.
    expose_output: bool | None = None

    def selects(self, check: Check) -> bool:
        """Whether ``check`` is a member: named by :attr:`checks` or carrying one of
        :attr:`tags`."""
        return check.name in self.checks or not self.tags.isdisjoint(check.tags)


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
    group: Group | None = None

    def all_states(self) -> list[CheckState]:
        """Startup states first (if any), then this probe's; a check in both is listed
        twice and the runner's single-flight makes it run once."""
        return ([] if self.startup is None else self.startup.all_states()) + self.states


@dataclasses.dataclass(frozen=True, slots=True)
class Rotation:
    """Whether this instance is in rotation, as :attr:`HealthRegistry.rotation` reads it.
    Read-only.

    Out of rotation, readiness fails with the reason (load balancers and Kubernetes
    endpoints stop sending traffic) while liveness and startup are untouched and nothing
    stops: the instance keeps serving what still reaches it. Two sources take it out: a call
    (:meth:`HealthRegistry.take_out_of_rotation`, or ``set_ready(False)``) and the disable
    file (``disable_file``); it is out while either says so, the call's reason shown first.
    """

    #: ``True`` while in rotation.
    in_rotation: bool
    #: Why it is out (the operator's text, on one line, at most
    #: :data:`ROTATION_REASON_LIMIT` characters), ``None`` when no reason was given or while in.
    reason: str | None
    #: What holds it out: ``"api"`` (a call), ``"admin"`` (the guarded admin request of the
    #: endpoints, :class:`healthprobe.guard.Guard` ``rotation_path``) or ``"file"`` (the disable
    #: file); ``None`` while in.
    source: str | None
    #: When the current state began (out, or back in), in seconds since the Unix epoch;
    #: the registry's creation while it has never been out.
    since: float
    #: When a call's ``seconds`` returns it by itself, in seconds since the Unix epoch, or
    #: ``None``.
    until: float | None = None

    @property
    def text(self) -> str | None:
        """What a readiness answer shows: ``"out of rotation: <reason>"`` (``"out of
        rotation"`` without a reason), or ``None`` while in rotation."""
        if self.in_rotation:
            return None
        return "out of rotation" if self.reason is None else f"out of rotation: {self.reason}"


@dataclasses.dataclass(frozen=True, slots=True)
class _OutByCall:
    """A call's hold on the rotation: its reason and, with ``seconds``, when it ends
    (``time.monotonic()``) and when that is on the wall clock."""

    reason: str | None
    ends: float | None
    until: float | None
    source: str = "api"


class _DisableFile:
    """The disable file: one ``stat`` per look; its first line is read again only when the
    file is new or its inode, size or modification time changed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[tuple[int, int, int], str] | None = None

    def look(self) -> str | None:
        """The reason the file gives (:data:`_FILE_REASON` when it gives none), or ``None``
        when there is no file (or it cannot be looked at: an unreadable folder counts as no
        file, as ``os.path.exists`` does)."""
        try:
            st = os.stat(self.path)
        except (OSError, ValueError):
            return None
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        seen = self._seen
        if seen is not None and seen[0] == signature:
            return seen[1]
        reason = _first_line(self.path)
        self._seen = (signature, reason)
        return reason


def _first_line(path: str) -> str:
    """The first line of the file at ``path``, stripped, cut and escaped onto one line;
    :data:`_FILE_REASON` when it is empty or cannot be read."""
    try:
        with open(path, "rb") as file:
            head = file.read(_DISABLE_FILE_READ)
    except OSError:
        return _FILE_REASON
    lines = head.decode("utf-8", errors="replace").splitlines()
    return _reason_text(lines[0] if lines else None) or _FILE_REASON


def _reason_text(reason: str | None) -> str | None:
    """An operator's reason as kept: stripped, cut to :data:`ROTATION_REASON_LIMIT`
    characters and escaped onto one line; ``None`` for none or a blank one."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise TypeError(f"reason must be a str or None, got {type(reason).__name__}")
    reason = reason.strip()[:ROTATION_REASON_LIMIT]
    return render.one_line(reason) or None


class HealthRegistry:
    """Named checks and the lifecycle state of one process: the single source of truth
    that every adapter, server integration and metrics collector reads.

    Args:
        default_timeout: deadline of a check run in seconds when a check sets none
            (0.8 s, inside the kubelet's default 1 s ``timeoutSeconds``).
        default_cache_ttl: seconds a result is reused when a check sets none (1.0 s).
        disable_file: the path of the disable file, or ``None`` (the default) for none:
            while a file exists there, the instance is out of rotation, its first line the
            reason (see :meth:`set_disable_file`).

    Probe rules (Kubernetes, "Configure Liveness, Readiness and Startup Probes"):

    * **startup** passes once every critical startup check passes, then latches: the
      lifecycle becomes ``started`` and the startup probe passes from then on.
    * **readiness** fails while the lifecycle is ``starting``, ``draining`` or ``stopped``,
      while out of rotation (:attr:`rotation`), or when a critical readiness check fails.
    * **liveness** fails only when marked not live or a critical liveness check fails; the
      lifecycle never fails it.

    Groups (:meth:`add_group`, Spring Boot's health groups) select checks by name or tag
    and fail when a critical member fails (the lifecycle too, only with ``lifecycle=True``);
    running one changes no probe's answer.
    """

    def __init__(
        self,
        *,
        default_timeout: float = DEFAULT_TIMEOUT,
        default_cache_ttl: float = DEFAULT_CACHE_TTL,
        disable_file: str | os.PathLike[str] | None = None,
    ) -> None:
        check_seconds("default_timeout", default_timeout, positive=True)
        check_seconds("default_cache_ttl", default_cache_ttl, positive=False)
        self.default_timeout = default_timeout
        self.default_cache_ttl = default_cache_ttl
        self._lock = threading.Lock()
        self._states: dict[str, CheckState] = {}
        self._groups: dict[str, Group] = {}
        self._lifecycle = _types.Lifecycle.STARTING
        # The reason of set_live(False): None while not set. (Readiness has the rotation.)
        self._marked: dict[Probe, str | None] = {_types.Probe.LIVENESS: None}
        # The rotation: the call holding the instance out (if any), the disable file (if
        # configured), and the state they made, as last looked at.
        self._out_by_call: _OutByCall | None = None
        self._disable_file: _DisableFile | None = None
        self._rotation = Rotation(True, None, None, time.time())
        self._rotation_changed = time.monotonic()
        # Whether the rotation may change without a call (a disable file, a call's expiry):
        # readiness answers are then looked at again before they are served again.
        self._rotation_watched = False
        self._listeners: list[LifecycleListener] = []
        self._result_listeners: list[ResultListener] = []
        self._report_listeners: list[ReportListener] = []
        # Transition events: the listeners, their dispatcher (made with the first listener),
        # each probe's status as last seen with the time.monotonic() it began, and when the
        # lifecycle state began.
        self._transition_listeners: list[TransitionListener] = []
        self._dispatcher: _transitions.Dispatcher | None = None
        self._probe_status: dict[Probe, tuple[str, float]] = {}
        self._probe_status_lock = threading.Lock()
        self._created = self._lifecycle_since = time.monotonic()
        self._runner = _runner.Runner()
        self._runner.on_result = self._notify_result
        # Tracing hooks (the ``tracing`` property); ``None`` costs one test per probe.
        self._tracing: Tracing | None = None
        self._runner.on_change = self._check_changed
        self.last_reports: dict[Probe, Report] = {}
        #: Counts every change a report depends on besides check results (checks added or
        #: removed, lifecycle, manual switches): a report stamped with an older generation is
        #: never served again (:meth:`stamp`). Read-only for callers; a plain attribute,
        #: since the adapters read it on every repeated probe.
        self.generation = 0
        if disable_file is not None:
            self.set_disable_file(disable_file)

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
        tags: str | Iterable[str] = (),
    ) -> Check:
        """Register a check.

        Args:
            name: unique name of 1 to 63 characters (letters, digits, ``_ . -``; starting
                and ending with a letter or digit), used in URLs, bodies and metric labels.
            func: a callable taking no arguments, sync or async. It passes by returning
                ``None`` or ``True``, fails by returning ``False`` or raising, and may return
                a :class:`CheckResult` to report ``warn``, an output or an observed value.
            probes: the probes the check belongs to (``"startup"``, ``"readiness"``,
                ``"liveness"``); readiness only by default. ``()`` for none: the check is
                then run only for the groups that select it (:meth:`add_group`), never by a
                probe.
            timeout: deadline of one run in seconds (default ``default_timeout``).
            critical: when ``False``, a failure is reported as ``warn`` and never fails a probe.
            cache_ttl: seconds a result is reused before the check runs again.
            interval: when set, seconds between background runs; probes then read the latest
                background result instead of running the check.
            tags: words (one ``str``, or several) that groups select checks by
                (``("db", "external")``), each validated as a name is; shown as ``tags`` in
                ``application/health+json``.

        Returns:
            The registered :class:`Check`.

        Raises:
            ValueError: on a duplicate, reserved (``lifecycle``) or malformed name or tag,
                an unknown probe, or a
                non-positive or non-finite ``timeout``/``interval`` or negative ``cache_ttl``.
            TypeError: if ``func`` is not callable, or not callable without arguments, or the
                two are swapped, or ``tags`` is not a ``str`` or an iterable.
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
        tag_set = _words("tags", f"check {name!r}", tags)
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
            tags=tag_set,
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
        tags: str | Iterable[str] = (),
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
        tags: str | Iterable[str] = (),
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
                tags=tags,
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

    def add_group(
        self,
        name: str,
        *,
        checks: str | Iterable[str] = (),
        tags: str | Iterable[str] = (),
        lifecycle: bool = False,
        success_status: int = 200,
        failure_status: int = 503,
        expose_output: bool | None = None,
    ) -> Group:
        """Register a group: the checks named in ``checks`` and those carrying one of
        ``tags``, answered together at ``<group_path>/<name>`` (``/health/<name>`` by
        default) and one at a time at ``<group_path>/<name>/<check>``, with ``?verbose``,
        ``?exclude=`` and ``?format=json`` as on a probe path.

        Membership is looked up at each run, so checks may be added after the group; a name
        in ``checks`` that is not registered selects nothing. Running a group changes no
        probe's answer (nothing is recorded in :attr:`last_reports`, startup never latches)
        and a check registered with ``probes=()`` is never run by a probe: a group may hold
        dependency checks that must never fail liveness (a "wellness" page for dashboards).
        Check runs are shared with the probes (single-flight and ``cache_ttl``).

        Args:
            name: the group's name, validated as a check name (1-63 letters, digits,
                ``_ . -``), used in its path.
            checks: check names it selects (one ``str``, or several).
            tags: tags it selects (one ``str``, or several); at least one of ``checks`` and
                ``tags`` must be given.
            lifecycle: ``True`` to fail the group with readiness's lifecycle and rotation
                reasons (``starting``, ``draining``, ``stopped``, out of rotation); ``False``
                (the default): only its checks decide.
            success_status: HTTP status code of a passing or warning answer (200-299).
            failure_status: HTTP status code of a failing answer (400-599).
            expose_output: ``True`` or ``False`` to show or withhold what checks wrote in
                this group's bodies; ``None`` (the default) follows the endpoints'
                ``expose_output``.

        Returns:
            The registered :class:`Group`.

        Raises:
            ValueError: a duplicate or malformed name, a malformed check name or tag,
                neither ``checks`` nor ``tags``, or a status code out of range
                (:data:`GROUP_STATUS_RANGES`).
            TypeError: a flag that is not a ``bool`` (``expose_output`` may be ``None``),
                a status code that is not an ``int``, or ``checks``/``tags`` not a ``str``
                or an iterable.
        """
        if not isinstance(name, str) or not CHECK_NAME.fullmatch(name):
            raise ValueError(
                f"invalid group name {name!r}: use 1-63 letters, digits, '_', '.' or '-', "
                "starting and ending with a letter or digit"
            )
        owner = f"group {name!r}"
        names = _words("checks", owner, checks)
        tag_set = _words("tags", owner, tags)
        if not names and not tag_set:
            raise ValueError(f"{owner} selects no check: give checks=(names) or tags=(tags)")
        if not isinstance(lifecycle, bool):
            raise TypeError(f"{owner}: lifecycle must be True or False, got {lifecycle!r}")
        if expose_output is not None and not isinstance(expose_output, bool):
            raise TypeError(f"{owner}: expose_output must be True, False or None, got {expose_output!r}")
        for what, code in (("success_status", success_status), ("failure_status", failure_status)):
            if isinstance(code, bool) or not isinstance(code, int):
                raise TypeError(f"{owner}: {what} must be an int, got {type(code).__name__}")
            low, high = GROUP_STATUS_RANGES[what]
            if not low <= code <= high:
                raise ValueError(f"{owner}: {what} must be from {low} to {high}, got {code}")
        group = Group(name, names, tag_set, lifecycle, success_status, failure_status, expose_output)
        with self._lock:
            if name in self._groups:
                raise ValueError(f"a group named {name!r} is already registered")
            self._groups = {**self._groups, name: group}
            self.generation += 1
        return group

    def remove_group(self, name: str) -> None:
        """Unregister a group (its checks stay). Raises :class:`UnknownGroupError` if there
        is none by that name."""
        with self._lock:
            if name not in self._groups:
                raise UnknownGroupError(name)
            self._groups = {k: v for k, v in self._groups.items() if k != name}
            self.generation += 1

    @property
    def groups(self) -> collections.abc.Mapping[str, Group]:
        """The registered groups by name, in registration order (a read-only view)."""
        return types.MappingProxyType(self._groups)

    def group_checks(self, name: str) -> tuple[Check, ...]:
        """The checks group ``name`` selects now, in registration order.

        Raises :class:`UnknownGroupError` for an unknown name.
        """
        group = self._groups.get(name)
        if group is None:
            raise UnknownGroupError(name)
        return tuple(state.check for state in self._states.values() if group.selects(state.check))

    def close(self, timeout: float = 1.0) -> None:
        """End the threads that run the sync checks, once their current run is over, running
        the teardowns the checks registered in them (:func:`healthprobe.on_thread_exit`).

        :class:`healthprobe.GracefulShutdown` calls this after its cleanup hooks. The registry
        stays usable: a later run of a sync check starts a new thread.

        Args:
            timeout: how long to wait in all for idle threads to end, in seconds (a thread
                inside a run that hangs is not waited for beyond it; it is a daemon thread).
                The transition listeners' thread is given the same time to deliver what
                is queued (:meth:`add_transition_listener`).
        """
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.close(timeout)
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

    @property
    def tracing(self) -> Tracing | None:
        """The :class:`Tracing` hooks called around each probe answer and check run, or
        ``None`` (the default: nothing is called, and it costs one test per probe and per
        run). Set it to a :class:`Tracing` to trace, to ``None`` to stop;
        :func:`healthprobe.otel.instrument` sets it for OpenTelemetry."""
        return self._tracing

    @tracing.setter
    def tracing(self, hooks: Tracing | None) -> None:
        self._tracing = hooks
        self._runner.on_run = None if hooks is None else self._run_started

    def _run_started(self, state: CheckState, background: bool) -> Callable[[CheckResult], None] | None:
        hooks = self._tracing
        return None if hooks is None else hooks.run_started(state.check, background)

    def add_transition_listener(self, listener: TransitionListener) -> None:
        """Call ``listener(transition)`` with a :class:`healthprobe.Transition` after every
        status change of a check, of a probe's whole answer, or of the lifecycle; never for
        a repeat. A check's first result is a change from ``"unknown"``; so is a probe's
        first whole answer.

        Listeners never slow a probe: changes wait on a bounded queue
        (:data:`TRANSITION_QUEUE_SIZE`, the oldest dropped when it is full, logged once per
        burst of drops) and one daemon thread, ``healthprobe-transitions``, started at the
        first change, calls the listeners one after the other, in the order the changes
        were seen. :meth:`close` delivers what is queued and ends the thread (the next
        change starts it again). An exception a listener raises is logged and ignored. A
        listener must not run probes or checks of this registry itself.

        Args:
            listener: a callable taking one :class:`healthprobe.Transition`.

        Raises:
            TypeError: ``listener`` is not callable.
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {type(listener).__name__}")
        with self._lock:
            if self._dispatcher is None:
                self._dispatcher = _transitions.Dispatcher(self._transition_listeners)
            self._transition_listeners.append(listener)

    @property
    def transitions_dropped(self) -> int:
        """Transitions dropped so far because the listeners fell behind a full queue."""
        dispatcher = self._dispatcher
        return 0 if dispatcher is None else dispatcher.dropped

    def _emit(self, transition: Transition) -> None:
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.put(transition)

    def _check_changed(
        self, state: CheckState, previous: CheckResult | None, result: CheckResult, lasted: float
    ) -> None:
        """A check's status changed (the runner logged it): hand it to the listeners."""
        if self._dispatcher is None:
            return
        self._emit(
            _transitions.Transition(
                "check",
                state.check.name,
                _transitions.UNKNOWN if previous is None else previous.status.value,
                result.status.value,
                _transitions.check_reason(previous, result),
                lasted,
                result.time or time.time(),
                result.output,
            )
        )

    def _probe_seen(self, probe: Probe, status: str, reason: Callable[[str], str], output: str | None) -> None:
        """The whole answer to ``probe`` is ``status`` now: log and hand over a change.
        ``reason(old)`` gives the reason word of a change from ``old``."""
        seen = self._probe_status.get(probe)
        if seen is not None and seen[0] == status:  # a repeat: no lock taken
            return
        now = time.monotonic()
        with self._probe_status_lock:
            seen = self._probe_status.get(probe)
            if seen is not None and seen[0] == status:
                return
            old, since = (_transitions.UNKNOWN, self._created) if seen is None else seen
            self._probe_status[probe] = (status, now)
        why = reason(old)
        lasted = now - since
        fields = {
            "probe": probe.value,
            "transition": "probe",
            "old": old,
            "new": status,
            "reason_class": why,
            "lasted": round(lasted, 3),
        }
        # A failure by a check warns; one the operator or the lifecycle asked for informs;
        # a first answer is quiet, whatever it is: its checks' own records say why.
        level = logging.WARNING if status == "fail" and why not in ("lifecycle", "rotation") else logging.INFO
        if old == _transitions.UNKNOWN:
            level = logging.DEBUG
        _logger.log(level, "%s probe %s -> %s (%s) after %.2f s", probe.value, old, status, why, lasted, extra=fields)
        self._emit(_transitions.Transition("probe", probe.value, old, status, why, lasted, time.time(), output))

    def _report_seen(self, report: Report) -> None:
        """Look for a change of ``report``'s probe (a whole answer)."""
        seen = self._probe_status.get(report.probe)
        if seen is not None and seen[0] == report.status.value:
            return
        failing = [entry for entry in report.checks.values() if entry.result.status is _types.Status.FAIL]

        def reason(old: str) -> str:
            if report.status is _types.Status.PASS:
                return "initial" if old == _transitions.UNKNOWN else "recovered"
            if report.status is _types.Status.WARN:
                return "warn"
            for text in report.reasons:
                if text.startswith("out of rotation"):
                    return "rotation"
                if text.startswith("not live"):
                    return "not_live"
            if report.reasons:
                return "lifecycle"
            return _transitions.check_reason(failing[0].result, failing[0].result) if failing else "fail"

        words = [*report.reasons, *(f"{entry.name} failed" for entry in failing)]
        self._probe_seen(report.probe, report.status.value, reason, "; ".join(words) or None)

    def _readiness_failed(self, why: str, text: str) -> None:
        """Readiness fails from now on (out of rotation, draining): a change if its last
        whole answer did not fail. Nothing before a first answer: that one tells."""
        seen = self._probe_status.get(_types.Probe.READINESS)
        if seen is not None and seen[0] != "fail":
            self._probe_seen(_types.Probe.READINESS, "fail", lambda _old: why, text)

    def _notify_result(self, state: CheckState, result: CheckResult) -> None:
        for listener in list(self._result_listeners):
            try:
                listener(state.check, result)
            except Exception:
                _logger.exception("result listener %r raised", listener, extra={"check": state.check.name})

    def _transition(self, allowed: tuple[Lifecycle, ...], new: Lifecycle) -> bool:
        now = time.monotonic()
        with self._lock:
            old = self._lifecycle
            if old not in allowed:
                return False
            self._lifecycle = new
            self.generation += 1
            lasted, self._lifecycle_since = now - self._lifecycle_since, now
        _logger.info(
            "lifecycle %s -> %s",
            old.value,
            new.value,
            extra={
                "lifecycle": new.value,
                "previous_lifecycle": old.value,
                "transition": "lifecycle",
                "old": old.value,
                "new": new.value,
                "reason_class": new.value,
                "lasted": round(lasted, 3),
            },
        )
        self._emit(
            _transitions.Transition("lifecycle", "lifecycle", old.value, new.value, new.value, lasted, time.time())
        )
        if new is not _types.Lifecycle.STARTED:
            self._readiness_failed("lifecycle", new.value)
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
        """Switch readiness by hand (for maintenance, warm-up, back-pressure): the same
        switch as :meth:`take_out_of_rotation` (``ready=False``) and
        :meth:`return_to_rotation` (``ready=True``).

        Args:
            ready: ``False`` fails readiness until called again with ``True``.
            reason: short operator text shown in probe bodies as ``out of rotation: <reason>``.

        Raises:
            TypeError: ``reason`` is not a ``str`` or ``None``.
        """
        if ready:
            self.return_to_rotation()
        else:
            self.take_out_of_rotation(reason)

    # -- rotation ----------------------------------------------------------------------------

    def take_out_of_rotation(
        self, reason: str | None = None, *, seconds: float | None = None, source: str = "api"
    ) -> Rotation:
        """Take this instance out of rotation: readiness fails with ``reason`` until
        :meth:`return_to_rotation` (or ``seconds`` have passed), so that Kubernetes endpoints
        and load balancers stop sending it traffic; liveness and startup are untouched and
        nothing stops (the instance serves whatever still reaches it). For maintenance, a
        warm cache being rebuilt, or a canary held back. Called again, it replaces the
        reason and the expiry.

        Logged once (``out of rotation: <reason>``, INFO) when the instance goes out; a
        repeated call logs nothing.

        Args:
            reason: short operator text, shown in probe bodies as ``out of rotation:
                <reason>`` (it is the operator's, so it is never withheld: put no secret
                in it); stripped, cut to :data:`ROTATION_REASON_LIMIT` characters and
                escaped onto one line.
            seconds: when given, the instance returns to rotation by itself after this many
                seconds (looked at when a probe is answered or :attr:`rotation` is read; no
                thread). ``None``: until :meth:`return_to_rotation`.
            source: what asks, shown as :attr:`Rotation.source` and in the log: ``"api"`` (a
                call, the default) or ``"admin"`` (the endpoints' guarded admin request).

        Returns:
            The :class:`Rotation` now.

        Raises:
            TypeError: ``reason`` is not a ``str`` or ``None``.
            ValueError: ``seconds`` is not a finite number above 0, or ``source`` is not
                ``"api"`` or ``"admin"``.
        """
        _check_source(source)
        text = _reason_text(reason)
        if seconds is not None:
            check_seconds("seconds", seconds, positive=True)
        now, wall = time.monotonic(), time.time()
        ends = None if seconds is None else now + seconds
        until = None if seconds is None else wall + seconds
        with self._lock:
            self._out_by_call = _OutByCall(text, ends, until, source)
            change = self._settle_rotation(self._looked_file(), now, wall)
        self._log_rotation(change)
        return self._rotation

    def return_to_rotation(self, *, source: str = "api") -> Rotation:
        """End what :meth:`take_out_of_rotation` (or ``set_ready(False)``) started: readiness
        passes again, if nothing else fails it. The disable file, while it exists, keeps the
        instance out: remove it as well.

        Logged once (``back in rotation after <seconds> s out``, INFO) when the instance
        comes back; a repeated call logs nothing.

        Args:
            source: what asks, for the log record's ``source``: ``"api"`` (a call, the
                default) or ``"admin"`` (the endpoints' guarded admin request).

        Returns:
            The :class:`Rotation` now.

        Raises:
            ValueError: ``source`` is not ``"api"`` or ``"admin"``.
        """
        _check_source(source)
        now, wall = time.monotonic(), time.time()
        with self._lock:
            self._out_by_call = None
            change = self._settle_rotation(self._looked_file(), now, wall, source)
        self._log_rotation(change)
        return self._rotation

    @property
    def rotation(self) -> Rotation:
        """Whether this instance is in rotation now, why not, since when and until when (a
        :class:`Rotation`). Reading it looks at the disable file and at a call's expiry, as
        a readiness probe does."""
        return self._look_at_rotation()

    @property
    def disable_file(self) -> str | None:
        """The path of the disable file (:meth:`set_disable_file`), or ``None``."""
        found = self._disable_file
        return None if found is None else found.path

    def set_disable_file(self, path: str | os.PathLike[str] | None) -> None:
        """Take the instance out of rotation while a file exists at ``path`` (OpenStack
        oslo.middleware's ``disable_by_file``): ``touch`` it to take the instance out,
        remove it to bring it back, without a restart and without a request to the app.

        The file is looked at with one ``stat`` when a readiness probe is answered (a
        remembered answer included) and when :attr:`rotation` or the metrics are read; nothing
        is looked at in between, and liveness answers never look. Its first line, if any,
        is the reason (read again when the file changes; at most
        :data:`ROTATION_REASON_LIMIT` characters, escaped onto one line); an empty file
        shows ``disable file present``. A path that cannot be looked at (a folder without
        permission) counts as no file.

        Args:
            path: the file's path (absolute, or relative to the working directory when
                looked at), or ``None`` to look at no file.

        Raises:
            TypeError: ``path`` is not a ``str``, an ``os.PathLike`` or ``None``.
            ValueError: ``path`` is empty.
        """
        if path is None:
            found = None
        else:
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"disable_file must be a path or None, got {type(path).__name__}")
            text = os.fspath(path)
            if not isinstance(text, str) or not text:
                raise ValueError(f"disable_file must be a non-empty path, got {path!r}")
            found = _DisableFile(text)
        now, wall = time.monotonic(), time.time()
        with self._lock:
            self._disable_file = found
            self.generation += 1  # a remembered readiness answer did not look at this file
            change = self._settle_rotation(self._looked_file(), now, wall)
        self._log_rotation(change)

    def _looked_file(self) -> str | None:
        """What the disable file says now (its reason, or ``None``). Called with the lock
        held: looks are made and settled one at a time, so that a look made before the file
        changed can never be settled after a look made since, and undo it."""
        found = self._disable_file
        return None if found is None else found.look()

    def _look_at_rotation(self) -> Rotation:
        """Settle the rotation now, if it may have changed without a call (a disable file, a
        call's expiry): the probe-time look. Returns the rotation it found."""
        if not self._rotation_watched:
            return self._rotation
        call, found = self._out_by_call, self._rotation
        if call is None or call.ends is None:
            # Nothing expires: when the file says what the state already shows, there is
            # nothing to settle, and no lock is taken (a look on every readiness answer;
            # docs/performance.md). A look that finds a change settles under the lock below.
            disable_file = self._disable_file
            reason = None if disable_file is None else disable_file.look()
            if call is not None:
                return found  # a call holds it out, whatever the file says
            if reason is None:
                if found.in_rotation:
                    return found
            elif not found.in_rotation and found.source == "file" and found.reason == reason:
                return found
        with self._lock:
            change = self._settle_rotation(self._looked_file(), time.monotonic(), time.time())
            found = self._rotation
        self._log_rotation(change)
        return found

    def _settle_rotation(
        self, file_reason: str | None, now: float, wall: float, by: str = "api"
    ) -> tuple[Rotation, Rotation, float, str] | None:
        """Make the rotation state from the call's hold (ended if expired) and the disable
        file's reason; bump :attr:`generation` if it changed. Called with the lock held.

        Returns:
            ``(old, new, seconds in the old state, what ended it)`` when the instance went
            out or came back (to log, outside the lock), else ``None``.
        """
        call = self._out_by_call
        ended = by
        if call is not None and call.ends is not None and now >= call.ends:
            self._out_by_call = call = None
            ended = "expiry"
        if file_reason is None:
            ended = "file" if self._rotation.source == "file" else ended
        old = self._rotation
        if call is not None:
            new = Rotation(False, call.reason, call.source, old.since, call.until)
        elif file_reason is not None:
            new = Rotation(False, file_reason, "file", old.since)
        else:
            new = Rotation(True, None, None, old.since)
        self._rotation_watched = self._disable_file is not None or (call is not None and call.ends is not None)
        if new == old:
            return None
        flipped = new.in_rotation != old.in_rotation
        if flipped:
            new = dataclasses.replace(new, since=wall)
        self._rotation = new
        self.generation += 1
        if not flipped:
            return None
        lasted = now - self._rotation_changed
        self._rotation_changed = now
        return old, new, lasted, ended

    def _log_rotation(self, change: tuple[Rotation, Rotation, float, str] | None) -> None:
        """The one record of a change into or out of rotation (and, going out, of readiness
        failing by it, if its last answer did not fail)."""
        if change is None:
            return
        old, new, lasted, ended = change
        if not new.in_rotation:
            expires = None if new.until is None else round(new.until - time.time(), 3)
            _logger.info(
                "%s%s",
                new.text,
                "" if expires is None else f" (returns by itself in {expires:g} s)",
                extra={"rotation": "out", "reason": new.reason, "source": new.source, "expires_in": expires},
            )
            self._readiness_failed("rotation", new.text or "out of rotation")
        else:
            how = {
                "expiry": "its time was up",
                "file": "the disable file is gone",
                "admin": "returned by an admin request",
            }.get(ended, "returned by a call")
            _logger.info(
                "back in rotation after %.2f s out (%s; %s)",
                lasted,
                old.reason or "no reason given",
                how,
                extra={"rotation": "in", "reason": old.reason, "source": ended, "seconds": round(lasted, 3)},
            )

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

    def _plan_group(self, name: str, exclude: Iterable[str], only: str | None) -> _Plan:
        group = self._groups.get(name)
        if group is None:
            raise UnknownGroupError(name)
        states = [s for s in self._states.values() if group.selects(s.check)]
        self._runner.ensure_background(self._states.values())
        probe = _types.Probe.READINESS  # the rules a group answers by; never recorded as readiness
        if only is not None:
            return _Plan(probe, _only(states, only), (), only=only, group=group)
        states, unknown, excluded = _excluding(states, exclude)
        return _Plan(probe, states, unknown, narrowed=excluded, group=group)

    def _plan(self, probe: Probe | str, exclude: Iterable[str], only: str | None) -> _Plan:
        probe = as_probe(probe)
        states = [s for s in self._states.values() if probe in s.check.probes]
        self._runner.ensure_background(self._states.values())
        if only is not None:
            return _Plan(probe, _only(states, only), (), only=only)
        states, unknown, excluded = _excluding(states, exclude)
        if probe is _types.Probe.STARTUP and self._lifecycle is not _types.Lifecycle.STARTING:
            states = []  # latched: startup checks never run again
        startup = None
        if probe is _types.Probe.READINESS and self._lifecycle is _types.Lifecycle.STARTING:
            # Readiness cannot pass before startup has: run the startup checks alongside the
            # readiness checks (one deadline for both), then let the startup report latch.
            startup = self._plan(_types.Probe.STARTUP, (), None)
        return _Plan(probe, states, unknown, narrowed=excluded, startup=startup)

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
            entries[check.name] = _types.CheckReport(
                check.name, check.critical, shown, result.status, cached, tuple(sorted(check.tags))
            )
        reasons: tuple[str, ...] = ()
        group = plan.group
        if only is None and (group is None or group.lifecycle):
            reasons = self._reasons(probe)
        status = _types.aggregate(entries, reasons)
        if group is not None:  # changes no probe's answer: nothing latched, nothing recorded
            return _types.Report(probe, status, entries, reasons, self._lifecycle, unknown, group.name)
        whole = only is None and not plan.narrowed
        if probe is _types.Probe.STARTUP and whole and status.ok:
            # Only a run of every startup check may latch startup: ``?exclude`` narrows
            # what one answer looks at, never the process's state.
            self.mark_started()
        report = _types.Report(probe, status, entries, reasons, self._lifecycle, unknown)
        if whole:
            self.last_reports[probe] = report
            self._report_seen(report)
            for listener in list(self._report_listeners):
                try:
                    listener(report)
                except Exception:
                    _logger.exception("report listener %r raised", listener, extra={"probe": probe.value})
        return report

    def _reasons(self, probe: Probe) -> tuple[str, ...]:
        if probe is _types.Probe.READINESS:
            rotation = self._look_at_rotation()
            lifecycle = self._lifecycle
            reasons = [] if lifecycle is _types.Lifecycle.STARTED else [lifecycle.value]
            out = rotation.text
            if out is not None:
                reasons.append(out)
            return tuple(reasons)
        marked = self._marked.get(probe)  # None for startup, which has no switch
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
        return self._answer(self._plan(probe, exclude, only))

    async def run_async(self, probe: Probe | str, *, exclude: Iterable[str] = (), only: str | None = None) -> Report:
        """Answer a probe from async code without blocking the event loop.

        Async checks run on the calling event loop (asyncio or trio, through anyio); sync
        checks run in daemon threads. Arguments, result and errors as :meth:`run`.
        """
        return await self._answer_async(self._plan(probe, exclude, only))

    def _answer(self, plan: _Plan) -> Report:
        """Run ``plan``'s checks from a sync caller and make its report, traced when
        :attr:`tracing` is set."""
        tracing = self._tracing
        if tracing is None:
            return self._finish(plan, self._runner.run_sync(plan.all_states()))
        token, report = self._trace_started(tracing, plan), None
        try:
            report = self._finish(plan, self._runner.run_sync(plan.all_states()))
            return report
        finally:
            tracing.probe_ended(token, report)

    async def _answer_async(self, plan: _Plan) -> Report:
        """:meth:`_answer` from async code."""
        tracing = self._tracing
        if tracing is None:
            return self._finish(plan, await self._runner.run_async(plan.all_states()))
        token, report = self._trace_started(tracing, plan), None
        try:
            report = self._finish(plan, await self._runner.run_async(plan.all_states()))
            return report
        finally:
            tracing.probe_ended(token, report)

    @staticmethod
    def _trace_started(tracing: Tracing, plan: _Plan) -> object:
        return tracing.probe_started(plan.probe, plan.only, None if plan.group is None else plan.group.name)

    def run_group(self, name: str, *, exclude: Iterable[str] = (), only: str | None = None) -> Report:
        """Answer a group (:meth:`add_group`) from a sync caller, as :meth:`run` answers a
        probe: member checks in parallel under their deadlines, runs shared with the probes.

        Args:
            name: the group's name.
            exclude: names of member checks to leave out, or one name as a ``str`` (names
                that match none are listed in ``Report.excluded_unknown``).
            only: run just this one member check (as ``/health/<group>/<check>``); the
                lifecycle reasons of a ``lifecycle=True`` group are then not applied.

        Returns:
            A :class:`Report` whose ``group`` is ``name`` (and whose ``probe`` is readiness,
            the rules it answers by). It is not recorded in :attr:`last_reports` and no
            report listener hears it.

        Raises:
            UnknownGroupError: no group is registered by that name.
            UnknownCheckError: ``only`` names no member check of the group.
        """
        return self._answer(self._plan_group(name, exclude, only))

    async def run_group_async(self, name: str, *, exclude: Iterable[str] = (), only: str | None = None) -> Report:
        """Answer a group from async code without blocking the event loop, as
        :meth:`run_async` answers a probe. Arguments, result and errors as :meth:`run_group`."""
        return await self._answer_async(self._plan_group(name, exclude, only))

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
        watched = report.probe is _types.Probe.READINESS and self._rotation_watched
        if watched and report.group is not None:  # a group shows the rotation only if asked
            group = self._groups.get(report.group)
            watched = group is not None and group.lifecycle
        pairs: list[tuple[CheckState, CheckResult]] = []
        fresh_until = math.inf
        for name, entry in report.checks.items():
            state = self._states.get(name)
            if state is None or state.last is not entry.result:  # replaced, or a warn copy
                return None
            fresh_until = min(fresh_until, state.fresh_until)
            pairs.append((state, entry.result))
        return AnswerStamp(generation, fresh_until, tuple(pairs), watched)

    def still_current(self, stamp: AnswerStamp) -> bool:
        """Whether a report stamped with ``stamp`` (by :meth:`stamp`) may still be served:
        :attr:`generation` is the stamp's, and, if the report shows check results, none of
        them has expired (``time.monotonic()`` before ``fresh_until``) or been replaced.
        For a stamp that ``watches_rotation``, the disable file and a call's expiry are
        looked at first (one ``stat``), which bumps :attr:`generation` if the rotation
        changed."""
        if stamp.generation != self.generation:
            return False
        if stamp.watches_rotation:
            self._look_at_rotation()
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
    #: Whether the report shows the rotation while something may change it without a call
    #: (the disable file, a call's expiry): :meth:`HealthRegistry.still_current` then looks
    #: at it first. Such a stamp is always tested, even when it shows no check result.
    watches_rotation: bool = False


def _only(states: list[CheckState], only: str) -> list[CheckState]:
    """The state of member check ``only``, alone; :class:`UnknownCheckError` if none."""
    found = [s for s in states if s.check.name == only]
    if not found:
        raise UnknownCheckError(only)
    return found


def _excluding(states: list[CheckState], exclude: Iterable[str]) -> tuple[list[CheckState], tuple[str, ...], bool]:
    """``states`` without the ``exclude``d names, the excluded names that match no state
    (sorted), and whether any name was given."""
    excluded = {exclude} if isinstance(exclude, str) else set(exclude)
    if not excluded:
        return states, (), False
    unknown = tuple(sorted(excluded - {s.check.name for s in states}))
    return [s for s in states if s.check.name not in excluded], unknown, True


def _check_source(source: str) -> None:
    """Refuse a rotation ``source`` other than ``"api"`` and ``"admin"`` (``ValueError``)."""
    if source not in ("api", "admin"):
        raise ValueError(f"source must be 'api' or 'admin', got {source!r}")


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
