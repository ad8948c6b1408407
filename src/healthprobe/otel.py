"""OpenTelemetry traces and metrics of checks and probes (extra ``otel``: ``opentelemetry-api``).

:func:`instrument` makes a registry report through the OpenTelemetry API, to whatever SDK
and exporters the application set up (or to the ones passed in); without an SDK the API's
no-op providers make every call cheap and nothing is exported.

**Spans** (names and attributes in the table of docs/operating.md, "OpenTelemetry"):

* ``healthprobe.probe <probe>`` around each answer the registry makes
  (:meth:`HealthRegistry.run <healthprobe.HealthRegistry.run>` and ``run_async``, which the
  adapters call), a child of the span current in the caller (a server's request span, if
  the application traces requests);
* ``healthprobe.check <check>`` for each run of a check, a child of the span of the probe
  that started the run. A probe that joins a run already in flight, or is served a cached
  result, starts no check span. A background check's run (``interval=``) is a root span of
  its own.

A check span carries the check's name, status (``pass``, ``warn`` or ``fail``: the run's own,
as ``healthprobe_check_status`` shows it), duration in seconds, whether it timed out, and the
exception's class name (``error.type``) when the check raised; a failed run's span status is
``ERROR``, described by that class name or by healthprobe's own words (``timed out after
0.8 s``). What the check wrote (its output, an exception's text) is never put in a span
unless ``expose_output=True``, as in HTTP bodies.

**Metrics** mirror the Prometheus series of :mod:`healthprobe.prometheus` in OpenTelemetry's
naming (dots, units apart): the duration histogram is recorded as runs end; every other
instrument is observable, read from the registry at collection time, as the Prometheus
collector reads it at scrape time.

A probe or check is never slowed or broken by the instrumentation: an exception raised by
the OpenTelemetry SDK is caught, logged once at WARNING (its type only) and then at DEBUG.
A registry that was never instrumented pays one ``is None`` test per probe and per run.

An answer that an adapter gives again as it stands (the remembered answer of
:meth:`HealthEndpoints.cached <healthprobe.http.HealthEndpoints.cached>`: the same bytes,
nothing run) makes no span: the registry is not asked.
"""

from __future__ import annotations

import functools
import logging
import threading
import typing

from . import __version__, _extras, _runner, _types

with _extras.requires("otel", __name__):
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

    from ._runner import Check, CheckState
    from ._types import CheckResult, Probe, Report
    from .prometheus import ShutdownView
    from .registry import HealthRegistry

__all__ = [
    "ATTRIBUTES",
    "METRICS",
    "Instrumentation",
    "instrument",
]

_logger = logging.getLogger("healthprobe")

#: The instrumentation scope's name (the tracer's and the meter's).
_SCOPE = "healthprobe"

# Attribute keys.
_CHECK = "healthprobe.check.name"
_CHECK_STATUS = "healthprobe.check.status"
_CRITICAL = "healthprobe.check.critical"
_DURATION = "healthprobe.check.duration"
_TIMED_OUT = "healthprobe.check.timed_out"
_BACKGROUND = "healthprobe.check.background"
_OUTPUT = "healthprobe.check.output"
_ERROR_TYPE = "error.type"  # OpenTelemetry semantic conventions, "General attributes"
_PROBE = "healthprobe.probe.name"
_PROBE_STATUS = "healthprobe.probe.status"
_CACHED = "healthprobe.probe.cached"
_ONLY = "healthprobe.probe.only"
_REASONS = "healthprobe.probe.reasons"
_GROUP = "healthprobe.group.name"
_LIFECYCLE = "healthprobe.lifecycle.state"
_PHASE = "healthprobe.shutdown.phase"

#: Every attribute key healthprobe sets, with what it holds (spans and metrics).
ATTRIBUTES: dict[str, str] = {
    _CHECK: "the check's name",
    _CHECK_STATUS: "pass, warn or fail",
    _CRITICAL: "whether a failure of the check fails the probe (check spans)",
    _DURATION: "the run's duration in seconds (check spans)",
    _TIMED_OUT: "whether the run outlived its deadline (check spans)",
    _BACKGROUND: "whether the run is a background check's own (check spans)",
    _ERROR_TYPE: "the class name of the exception the check raised (check spans)",
    _OUTPUT: "what the check wrote, only with expose_output=True (check spans)",
    _PROBE: "startup, readiness or liveness",
    _PROBE_STATUS: "pass, warn or fail",
    _CACHED: "every check result the answer shows was cached: no check ran for it (probe spans)",
    _ONLY: "the one check asked for (/readyz/<check>, /health/<group>/<check>) (probe and group spans)",
    _GROUP: "the group asked (/health/<group>) (group spans)",
    _REASONS: "why the probe fails besides its checks: lifecycle, rotation (probe spans)",
    _LIFECYCLE: "starting, started, draining or stopped",
    _PHASE: "the shutdown phase (healthprobe.shutdown)",
}

# Metric names.
_M_DURATION = "healthprobe.check.duration"
_M_RUNS = "healthprobe.check.runs"
_M_STATUS = "healthprobe.check.status"
_M_LAST_SUCCESS = "healthprobe.check.last_success_time"
_M_PROBE_STATUS = "healthprobe.probe.status"
_M_LIFECYCLE = "healthprobe.lifecycle"
_M_ROTATION = "healthprobe.out_of_rotation"
_M_IN_FLIGHT = "healthprobe.in_flight"
_M_SHUTDOWN = "healthprobe.shutdown"

#: Every metric healthprobe reports: ``name: (instrument, unit, attributes, the Prometheus
#: series it mirrors)``.
METRICS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    _M_DURATION: ("histogram", "s", (_CHECK,), "healthprobe_check_duration_seconds"),
    _M_RUNS: ("observable counter", "{run}", (_CHECK, _CHECK_STATUS), "healthprobe_check_runs_total"),
    _M_STATUS: ("observable gauge", "1", (_CHECK, _CHECK_STATUS), "healthprobe_check_status"),
    _M_LAST_SUCCESS: ("observable gauge", "s", (_CHECK,), "healthprobe_check_last_success_timestamp_seconds"),
    _M_PROBE_STATUS: ("observable gauge", "1", (_PROBE, _PROBE_STATUS), "healthprobe_probe_status"),
    _M_LIFECYCLE: ("observable gauge", "1", (_LIFECYCLE,), "healthprobe_lifecycle_state"),
    _M_ROTATION: ("observable gauge", "1", (), "healthprobe_out_of_rotation"),
    _M_IN_FLIGHT: ("observable up-down counter", "{request}", (), "healthprobe_in_flight_requests"),
    _M_SHUTDOWN: ("observable gauge", "1", (_PHASE,), "healthprobe_shutdown_phase"),
}

_DESCRIPTIONS = {
    _M_DURATION: "Duration of check runs.",
    _M_RUNS: "Check runs by status.",
    _M_STATUS: "Status of the latest run of a check: 1 for its status (pass, warn or fail), 0 for the others.",
    _M_LAST_SUCCESS: "End of the latest passing run of a check, in seconds since the Unix epoch.",
    _M_PROBE_STATUS: "Status of the latest answer to a probe: 1 for its status, 0 for the others.",
    _M_LIFECYCLE: "Lifecycle state of the process: 1 for the current one.",
    _M_ROTATION: "1 while the instance is out of rotation (readiness fails, nothing stops), else 0.",
    _M_IN_FLIGHT: "Requests being served right now.",
    _M_SHUTDOWN: "Phase of graceful shutdown: 1 for the current phase.",
}


class Instrumentation:
    """What :func:`instrument` set up on one registry; :meth:`uninstrument` undoes it.

    Attributes:
        registry: the instrumented :class:`~healthprobe.HealthRegistry`.
        expose_output: whether check spans carry what the checks wrote.
    """

    def __init__(
        self,
        registry: HealthRegistry,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        expose_output: bool,
        shutdown: ShutdownView | None,
        phases: Sequence[str],
    ) -> None:
        self.registry = registry
        self.expose_output = expose_output
        self._shutdown = shutdown
        self._phases = tuple(phases) or tuple(getattr(shutdown, "phases", ()))
        self._active = True
        self._warned = False
        self._warn_lock = threading.Lock()
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider)
        self._duration = _histogram(meter)
        meter.create_observable_counter(
            _M_RUNS, [self._observe_runs], unit=METRICS[_M_RUNS][1], description=_DESCRIPTIONS[_M_RUNS]
        )
        gauges = {
            _M_STATUS: self._observe_status,
            _M_LAST_SUCCESS: self._observe_last_success,
            _M_PROBE_STATUS: self._observe_probes,
            _M_LIFECYCLE: self._observe_lifecycle,
            _M_ROTATION: self._observe_rotation,
        }
        if shutdown is not None:
            gauges[_M_SHUTDOWN] = self._observe_shutdown
            meter.create_observable_up_down_counter(
                _M_IN_FLIGHT,
                [self._observe_in_flight],
                unit=METRICS[_M_IN_FLIGHT][1],
                description=_DESCRIPTIONS[_M_IN_FLIGHT],
            )
        for name, callback in gauges.items():
            meter.create_observable_gauge(name, [callback], unit=METRICS[name][1], description=_DESCRIPTIONS[name])

    # -- installing --------------------------------------------------------------------------

    def uninstrument(self) -> None:
        """Stop: no more spans, no more duration records, and the observable instruments
        report nothing from now on (the OpenTelemetry API cannot remove an instrument).
        The registry may be instrumented again. Calling it twice does nothing."""
        if not self._active:
            return
        self._active = False
        hooks = self.registry.tracing
        if isinstance(hooks, _Hooks) and hooks.owner is self:
            self.registry.tracing = None

    def _failed(self, what: str, exc: Exception) -> None:
        """Log an exception of the OpenTelemetry SDK: once at WARNING, then at DEBUG."""
        with self._warn_lock:
            first, self._warned = not self._warned, True
        _logger.log(
            logging.WARNING if first else logging.DEBUG,
            "OpenTelemetry %s raised %s; the probe is answered without it",
            what,
            type(exc).__name__,
            extra={"error_type": type(exc).__name__},
        )

    # -- spans ---------------------------------------------------------------------------------

    def _start_probe(self, probe: Probe, only: str | None, group: str | None) -> object:
        """Start the span of one probe's (or group's) answer and make it current."""
        try:
            attributes: dict[str, str] = {_PROBE: probe.value} if group is None else {_GROUP: group}
            if only is not None:
                attributes[_ONLY] = only
            name = f"healthprobe.probe {probe.value}" if group is None else f"healthprobe.group {group}"
            span = self._tracer.start_span(name, attributes=attributes)
        except Exception as exc:
            self._failed("probe span", exc)
            return None
        try:
            token = otel_context.attach(trace.set_span_in_context(span))
        except Exception as exc:
            self._failed("probe span", exc)
            token = None  # its check spans are not its children; it still ends
        return span, token

    def _end_probe(self, token: object, report: Report | None) -> None:
        """End the span :meth:`_start_probe` began, with the report's status."""
        if token is None:
            return
        span, context_token = typing.cast("tuple[Span, object]", token)
        if context_token is not None:
            try:
                otel_context.detach(context_token)  # type: ignore[arg-type]
            except Exception as exc:
                self._failed("context", exc)
        try:
            if report is None:
                span.set_status(trace.StatusCode.ERROR, "the probe raised")
            else:
                entries = report.checks.values()
                span.set_attributes(
                    {
                        _PROBE_STATUS: report.status.value,
                        _CACHED: bool(entries) and all(entry.cached for entry in entries),
                        _LIFECYCLE: report.lifecycle.value,
                    }
                )
                if report.reasons:
                    span.set_attribute(_REASONS, list(report.reasons))
                if report.status is _types.Status.FAIL:
                    span.set_status(trace.StatusCode.ERROR)
            span.end()
        except Exception as exc:
            self._failed("probe span", exc)

    def _run_started(self, check: Check, background: bool) -> Callable[[CheckResult], None] | None:
        """Start the span of a new run, under the current span (the probe's) or, for a
        background check's own run, as a root span; returns what ends it."""
        if not self._active:
            return None
        name = check.name
        try:
            span = self._tracer.start_span(
                f"healthprobe.check {name}",
                context=otel_context.Context() if background else None,
                attributes={_CHECK: name, _CRITICAL: check.critical, _BACKGROUND: background},
            )
        except Exception as exc:
            self._failed("check span", exc)
            return None
        return functools.partial(self._end_run, span, name)

    def _end_run(self, span: Span, name: str, result: CheckResult) -> None:
        """End the span of a run with its result (before any probe sees the result), and
        record its duration."""
        try:
            self._duration.record(result.duration, {_CHECK: name})
        except Exception as exc:
            self._failed("histogram", exc)
        try:
            attributes: dict[str, str | bool | float] = {
                _CHECK_STATUS: result.status.value,
                _DURATION: result.duration,
                _TIMED_OUT: result.timed_out,
            }
            if result.error_type:
                attributes[_ERROR_TYPE] = result.error_type
            if self.expose_output and result.output:
                attributes[_OUTPUT] = result.output
            span.set_attributes(attributes)
            if result.status is _types.Status.FAIL:
                # healthprobe's own words (timed out) are always shown, as in HTTP bodies.
                shown = result.output if (self.expose_output or result.timed_out) else result.error_type
                span.set_status(trace.StatusCode.ERROR, shown)
            span.end()
        except Exception as exc:
            self._failed("check span", exc)

    # -- metrics -------------------------------------------------------------------------------

    def _observe_runs(self, options: CallbackOptions) -> Iterable[Observation]:
        found = []
        for state in self._states():
            with state.lock:
                runs = dict(state.stats.runs)
            for word in _types.Status:
                found.append(metrics.Observation(runs[word], {_CHECK: state.check.name, _CHECK_STATUS: word.value}))
        return found

    def _observe_status(self, options: CallbackOptions) -> Iterable[Observation]:
        found = []
        for state in self._states():
            last = state.last
            for word in _types.Status:
                value = 1 if last is not None and last.status is word else 0
                found.append(metrics.Observation(value, {_CHECK: state.check.name, _CHECK_STATUS: word.value}))
        return found

    def _observe_last_success(self, options: CallbackOptions) -> Iterable[Observation]:
        found = []
        for state in self._states():
            with state.lock:
                success = state.stats.last_success_time
            if success is not None:
                found.append(metrics.Observation(success, {_CHECK: state.check.name}))
        return found

    def _observe_probes(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._active:
            return []
        reports = self.registry.last_reports.copy()
        found = []
        for probe in _types.Probe:
            report = reports.get(probe)
            for word in _types.Status:
                value = 1 if report is not None and report.status is word else 0
                found.append(metrics.Observation(value, {_PROBE: probe.value, _PROBE_STATUS: word.value}))
        return found

    def _observe_lifecycle(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._active:
            return []
        lifecycle = self.registry.lifecycle
        return [metrics.Observation(1 if s is lifecycle else 0, {_LIFECYCLE: s.value}) for s in _types.Lifecycle]

    def _observe_rotation(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._active:
            return []
        return [metrics.Observation(0 if self.registry.rotation.in_rotation else 1)]

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._active or self._shutdown is None:
            return []
        return [metrics.Observation(int(self._shutdown.in_flight))]

    def _observe_shutdown(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._active or self._shutdown is None:
            return []
        phase = str(self._shutdown.phase)
        names = list(dict.fromkeys([*self._phases, phase]))
        return [metrics.Observation(1 if name == phase else 0, {_PHASE: name}) for name in names]

    def _states(self) -> tuple[CheckState, ...]:
        return self.registry.check_states() if self._active else ()


class _Hooks:
    """The :class:`~healthprobe.registry.Tracing` hooks :func:`instrument` sets on a registry."""

    __slots__ = ("owner",)

    def __init__(self, owner: Instrumentation) -> None:
        self.owner = owner

    def probe_started(self, probe: Probe, only: str | None, group: str | None) -> object:
        return self.owner._start_probe(probe, only, group)

    def probe_ended(self, token: object, report: Report | None) -> None:
        self.owner._end_probe(token, report)

    def run_started(self, check: Check, background: bool) -> Callable[[CheckResult], None] | None:
        return self.owner._run_started(check, background)


def _histogram(meter: metrics.Meter) -> metrics.Histogram:
    """The duration histogram, with the Prometheus histogram's bucket bounds as advice
    (``explicit_bucket_boundaries_advisory``, opentelemetry-api 1.23 and later)."""
    bounds = [bound for bound in _runner.DURATION_BUCKETS if bound != float("inf")]
    description = _DESCRIPTIONS[_M_DURATION]
    try:
        return meter.create_histogram(
            _M_DURATION, unit="s", description=description, explicit_bucket_boundaries_advisory=bounds
        )
    except TypeError:  # an older API without the advice
        return meter.create_histogram(_M_DURATION, unit="s", description=description)


_instrument_lock = threading.Lock()


def instrument(
    registry: HealthRegistry,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    expose_output: bool = False,
    shutdown: ShutdownView | None = None,
    phases: Sequence[str] = (),
) -> Instrumentation:
    """Report ``registry``'s probes and checks through OpenTelemetry: a span per probe
    answer and per check run, and the metrics of :data:`METRICS`.

    Call it once, after the OpenTelemetry SDK is configured (or pass its providers), before
    serving. Spans and metric names follow the OpenTelemetry naming guidelines
    ("Semantic Conventions: General naming considerations"; units as UCUM, ``s`` for seconds).

    Args:
        registry: the :class:`~healthprobe.HealthRegistry` to instrument.
        tracer_provider: where spans go; by default the global one
            (``opentelemetry.trace.set_tracer_provider``).
        meter_provider: where metrics go; by default the global one
            (``opentelemetry.metrics.set_meter_provider``).
        expose_output: put what a check wrote (its output, an exception's text: it may
            contain dependency details) in its span (``healthprobe.check.output`` and the
            span status description); off by default, as in HTTP bodies.
        shutdown: an object with ``in_flight`` (int) and ``phase`` (str), such as the
            :class:`~healthprobe.GracefulShutdown` coordinator, for the in-flight and
            shutdown-phase metrics (left out without it).
        phases: every phase name ``shutdown`` can report (default: its ``phases``), so
            each gets a series (0 or 1).

    Returns:
        The :class:`Instrumentation`, whose :meth:`~Instrumentation.uninstrument` undoes it.

    Raises:
        TypeError: ``expose_output`` is not a ``bool``.
        RuntimeError: ``registry`` is instrumented already (spans would be made twice).
    """
    if not isinstance(expose_output, bool):
        raise TypeError(f"expose_output must be True or False, got {expose_output!r}")
    with _instrument_lock:
        if registry.tracing is not None:
            raise RuntimeError("this registry is instrumented already: call uninstrument() on the first first")
        instrumentation = Instrumentation(registry, tracer_provider, meter_provider, expose_output, shutdown, phases)
        registry.tracing = _Hooks(instrumentation)
    return instrumentation
