"""Value types shared by every part of healthprobe.

The status words come from the IETF draft "Health Check Response Format for HTTP APIs"
(draft-inadarei-api-health-check): ``pass``, ``warn`` and ``fail``. The probe names are the
three Kubernetes probes (https://kubernetes.io/docs/concepts/configuration/liveness-readiness-startup-probes/).
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import numbers
from collections.abc import Mapping  # at run time too: typing.get_type_hints(Report) resolves it


class Status(str, enum.Enum):
    """Outcome of a check or a probe (IETF draft-inadarei-api-health-check ``status``).

    ``WARN`` is served as success: it never fails a probe.
    """

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def ok(self) -> bool:
        """``True`` for ``pass`` and ``warn``, the two statuses served as success."""
        return self is not Status.FAIL


class Probe(str, enum.Enum):
    """The three Kubernetes probes. A check belongs to one or more of them."""

    STARTUP = "startup"
    READINESS = "readiness"
    LIVENESS = "liveness"


class Lifecycle(str, enum.Enum):
    """Lifecycle state of the process: ``starting -> started -> draining -> stopped``.

    Readiness fails while ``starting``, ``draining`` and ``stopped``; liveness is not
    affected by the lifecycle (a restart does not help a process that is shutting down).
    """

    STARTING = "starting"
    STARTED = "started"
    DRAINING = "draining"
    STOPPED = "stopped"


_PLAIN_VALUES = (int, float, str)

#: The most characters of a check's ``output``, of a ``str`` ``observed_value`` and of an
#: ``observed_unit`` that healthprobe keeps from a check run (and serves): what a check
#: writes is cut there, so no check can make a probe body or a log line grow without bound.
TEXT_LIMIT = 500


def _observed_value(value: object) -> float | int | str:
    """``value`` as an ``observed_value``: ints, floats and strs (subclasses too, ``bool``
    among them) as they are, other numbers converted; anything else is refused, rather than
    served as its ``repr``."""
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, (numbers.Real, decimal.Decimal)):
        return float(value)
    raise TypeError(f"CheckResult observed_value must be a number, a str or None, got {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What one run of a check found.

    A check may return this to report ``warn``, a message or a measured value. Fields the
    runner fills in (``duration``, ``time``, ``error_type``, ``timed_out``) are ignored
    when a check sets them.

    Attributes:
        status: ``pass``, ``warn`` or ``fail`` (a :class:`Status`, or its value as a string).
        output: a human-readable message from the check. Served in HTTP bodies only when
            the operator opted in (``expose_output=True``), since it may carry details of
            the dependency. From a check run, at most :data:`TEXT_LIMIT` (500) characters
            are kept, with secrets withheld (:func:`healthprobe.checks.redact`).
        observed_value: a measured value (an ``int``, a ``float`` or a short ``str``), served
            in the ``application/health+json`` body as ``observedValue`` **always**, whether
            or not the operator opted in to outputs: it is a measurement for monitoring
            (latency, bytes), so never put a secret or a dependency's details in it. Other
            numbers (:class:`numbers.Integral` and :class:`numbers.Real` ones such as
            NumPy's, and :class:`decimal.Decimal`) are converted to ``int`` or ``float``.
            NaN, the infinities and integers beyond the range of a float are kept here and
            served as ``null``, since JSON has no such numbers (RFC 8259, section 6). From a
            check run, a ``str`` is cut to :data:`TEXT_LIMIT` (500) characters and redacted
            as ``output`` is.
        observed_unit: the unit of ``observed_value`` (``"s"``, ``"bytes"``, ``"%"`` ...),
            served as ``observedUnit`` (cut to :data:`TEXT_LIMIT` characters).

    Raises:
        ValueError: ``status`` is not ``pass``, ``warn`` or ``fail``.
        TypeError: ``observed_value`` is not a number, a ``str`` or ``None``, or
            ``observed_unit`` is not a ``str`` or ``None``.

    Raised inside a check, either error fails that check with its type recorded, as any
    exception does.
        duration: how long the run took, in seconds (filled in by the runner).
        time: when the run finished, in seconds since the Unix epoch (runner).
        error_type: qualified name of the exception a check raised, or ``None`` (runner).
        timed_out: ``True`` when the check missed its deadline (runner).
    """

    status: Status
    output: str | None = None
    observed_value: float | int | str | None = None
    observed_unit: str | None = None
    duration: float = 0.0
    time: float = 0.0
    error_type: str | None = None
    timed_out: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.status, Status):
            # "warn" works as well as Status.WARN; anything else is refused here, where the
            # mistake is made (raised inside a check, it fails that check with this reason).
            try:
                object.__setattr__(self, "status", Status(self.status))
            except ValueError:
                raise ValueError(f"CheckResult status must be pass, warn or fail, got {self.status!r}") from None
        value = self.observed_value
        if value is not None and type(value) not in _PLAIN_VALUES:  # the common cases, cheaply
            object.__setattr__(self, "observed_value", _observed_value(value))
        unit = self.observed_unit
        if unit is not None and not isinstance(unit, str):
            raise TypeError(f"CheckResult observed_unit must be a str or None, got {type(unit).__name__}")

    @property
    def ok(self) -> bool:
        """``True`` unless the status is ``fail``."""
        return self.status.ok


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """One check's entry in a probe report.

    Attributes:
        name: the check's registered name.
        critical: whether a failure of this check fails the probe.
        result: the result the probe used; for a non-critical check a ``fail`` has been
            turned into ``warn`` (the original is kept in ``raw_status``).
        raw_status: the status the check itself produced.
        cached: ``True`` when the result came from the cache or a background run rather
            than from a run started by this probe.
        tags: the check's tags, sorted (shown as ``tags`` in ``application/health+json``).
    """

    name: str
    critical: bool
    result: CheckResult
    raw_status: Status
    cached: bool = False
    tags: tuple[str, ...] = ()

    @property
    def status(self) -> Status:
        """The status that counts for the probe."""
        return self.result.status


@dataclasses.dataclass(frozen=True)
class Report:
    """The answer to one probe, or to one group of checks.

    Attributes:
        probe: the probe that was asked. A group's report (``group`` set) carries
            ``READINESS``, whose rules a group answers by (a critical member failing fails
            it); it is not an answer of the readiness probe and is never recorded as one.
        status: ``fail`` if the lifecycle or a manual switch fails the probe, or if any
            critical member check failed; else ``warn`` if any check warned; else ``pass``.
        checks: per-check entries in registration order, after ``exclude`` was applied.
        reasons: why the lifecycle or a manual switch fails the probe (for example
            ``"draining"``); these words come from healthprobe or from the operator's own
            call to :meth:`HealthRegistry.set_ready`, never from a check.
        lifecycle: the lifecycle state when the report was made.
        excluded_unknown: names given in ``exclude`` that match no member check.
        group: the name of the group asked (:meth:`healthprobe.HealthRegistry.run_group`),
            or ``None`` for a probe's report.
    """

    probe: Probe
    status: Status
    checks: Mapping[str, CheckReport] = dataclasses.field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    lifecycle: Lifecycle = Lifecycle.STARTED
    excluded_unknown: tuple[str, ...] = ()
    group: str | None = None

    @property
    def ok(self) -> bool:
        """``True`` unless the probe failed."""
        return self.status.ok


def aggregate(entries: Mapping[str, CheckReport], reasons: tuple[str, ...] = ()) -> Status:
    """Combine check entries and lifecycle reasons into a probe status.

    Args:
        entries: the member checks' entries (already adjusted for ``critical``).
        reasons: lifecycle or manual reasons that fail the probe; any reason fails it.

    Returns:
        ``fail`` if there is a reason or any entry is ``fail``; ``warn`` if any entry is
        ``warn``; else ``pass``.
    """
    if reasons:
        return Status.FAIL
    status = Status.PASS
    for entry in entries.values():
        if entry.result.status is Status.FAIL:
            return Status.FAIL
        if entry.result.status is Status.WARN:
            status = Status.WARN
    return status
