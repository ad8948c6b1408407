"""Prometheus metrics of checks, probes, lifecycle and shutdown (extra ``prometheus``).

The :class:`HealthRegistry` stays the single source of truth: :class:`HealthCollector` reads
it when Prometheus scrapes (prometheus-client "custom collectors"), so a scrape never runs a
check and never waits for one. It only takes each check's lock for the moment it copies the
last result and the counters.

Metrics (names, units and suffixes follow https://prometheus.io/docs/practices/naming/;
every label value is a registered check name, a probe name or a fixed word, never a request
path and never exception text):

* ``healthprobe_check_status{check,status}`` (gauge): 1 for the status (pass, warn, fail)
  of the check's latest run, 0 for the other two; all 0 before the first run.
* ``healthprobe_check_duration_seconds{check}`` (histogram): duration of the check's runs.
* ``healthprobe_check_runs_total{check,status}`` (counter): runs by status.
* ``healthprobe_check_last_success_timestamp_seconds{check}`` (gauge): end of the latest
  passing run, in seconds since the Unix epoch.
* ``healthprobe_probe_status{probe,status}`` (gauge): 1 for the status of the latest answer
  to the probe; all 0 before the first one.
* ``healthprobe_lifecycle_state{state}`` (gauge): 1 for the current lifecycle state.
* ``healthprobe_out_of_rotation`` (gauge): 1 while the instance is out of rotation
  (:attr:`HealthRegistry.rotation`: a call or the disable file), else 0.
* ``healthprobe_in_flight_requests`` (gauge): requests being served (needs a ``shutdown``
  source).
* ``healthprobe_shutdown_phase{phase}`` (gauge): 1 for the current shutdown phase (needs a
  ``shutdown`` source).
* ``healthprobe_webhook_notices_total{outcome}`` (counter) and
  ``healthprobe_webhook_queued_notices`` (gauge): a webhook publisher's notices by outcome
  (``sent``, ``failed``, ``dropped``) and those waiting (:class:`WebhookCollector`).

**Multiprocess servers** (gunicorn with several workers): a custom collector only sees the
process that answers the scrape (prometheus-client documentation, "Multiprocess Mode"). When
``PROMETHEUS_MULTIPROC_DIR`` is set, :class:`PrometheusMetrics` therefore mirrors the same
metrics into prometheus-client's multiprocess files in every worker, and serves the merge of
all workers' files. Status gauges use the ``livemax`` mode (a check failing in any live worker
shows ``status="fail"`` as 1), in-flight requests ``livesum``. The gunicorn ``child_exit``
hook :func:`child_exit` removes a dead worker's live gauges, so it leaves no stale series.
A worker's file that cannot be read yet (prometheus-client creates it empty, then sizes it)
is left out of the scrape rather than failing it.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import typing
import weakref

from . import _extras, _runner, _threads, _types

with _extras.requires("prometheus", __name__):
    import prometheus_client
    import prometheus_client.core
    import prometheus_client.exposition
    import prometheus_client.multiprocess
    import prometheus_client.registry
    import prometheus_client.utils

if typing.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from typing import Any

    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from ._runner import Check
    from ._types import CheckResult, Lifecycle, Report
    from .registry import HealthRegistry

__all__ = [
    "MULTIPROC_ENV",
    "HealthCollector",
    "MultiprocessMirror",
    "PrometheusMetrics",
    "ShutdownView",
    "WebhookCollector",
    "child_exit",
    "multiprocess_mirror",
]

_logger = logging.getLogger("healthprobe")

#: The environment variable that puts prometheus-client in multiprocess mode. It must be set
#: before ``prometheus_client`` is first imported, in the environment of the server's master.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_CHECK_STATUS = "healthprobe_check_status"
_CHECK_DURATION = "healthprobe_check_duration_seconds"
_CHECK_RUNS = "healthprobe_check_runs"  # exposed as healthprobe_check_runs_total
_CHECK_LAST_SUCCESS = "healthprobe_check_last_success_timestamp_seconds"
_PROBE_STATUS = "healthprobe_probe_status"
_LIFECYCLE_STATE = "healthprobe_lifecycle_state"
_OUT_OF_ROTATION = "healthprobe_out_of_rotation"
_IN_FLIGHT = "healthprobe_in_flight_requests"
_SHUTDOWN_PHASE = "healthprobe_shutdown_phase"

_HELP = {
    _CHECK_STATUS: "Status of the latest run of a check: 1 for its status (pass, warn or fail), 0 for the others.",
    _CHECK_DURATION: "Duration of check runs in seconds.",
    _CHECK_RUNS: "Check runs by status.",
    _CHECK_LAST_SUCCESS: "End of the latest passing run of a check, in seconds since the Unix epoch.",
    _PROBE_STATUS: "Status of the latest answer to a probe: 1 for its status (pass, warn or fail), 0 for the others.",
    _LIFECYCLE_STATE: "Lifecycle state of the process: 1 for the current one (starting, started, draining, stopped).",
    _OUT_OF_ROTATION: "1 while the instance is out of rotation (readiness fails, nothing stops), else 0.",
    _IN_FLIGHT: "Requests being served right now.",
    _SHUTDOWN_PHASE: "Phase of graceful shutdown: 1 for the current phase.",
}


class ShutdownView(typing.Protocol):
    """What the collector reads from a shutdown coordinator: any object with these two
    attributes (plain attributes or properties) will do.

    Attributes:
        in_flight: number of requests being served right now.
        phase: name of the current shutdown phase; a short fixed word chosen by the
            coordinator (never request data), used as the ``phase`` label value.
    """

    @property
    def in_flight(self) -> int: ...

    @property
    def phase(self) -> str: ...


_Samples = list[tuple[tuple[str, ...], float]]


def _phases(shutdown: ShutdownView | None, phases: Sequence[str]) -> tuple[str, ...]:
    """The phase names to export: those given, else the coordinator's own ``phases``
    (:data:`healthprobe.shutdown.PHASES` for :class:`~healthprobe.shutdown.GracefulShutdown`)."""
    return tuple(phases) or tuple(getattr(shutdown, "phases", ()))


def _gauge_view(
    registry: HealthRegistry, shutdown: ShutdownView | None, phases: Sequence[str]
) -> dict[str, tuple[tuple[str, ...], _Samples]]:
    """Every gauge's label names and samples, read from ``registry`` without running anything.

    Shared by the collector and the multiprocess mirror, so both expose the same values.
    """
    status: _Samples = []
    last_success: _Samples = []
    for state in registry.check_states():
        with state.lock:
            last = state.last
            success_time = state.stats.last_success_time
        name = state.check.name
        for word in _types.Status:
            status.append(((name, word.value), 1.0 if last is not None and last.status is word else 0.0))
        if success_time is not None:
            last_success.append(((name,), success_time))
    reports = registry.last_reports.copy()
    probes: _Samples = []
    for probe in _types.Probe:
        report = reports.get(probe)
        for word in _types.Status:
            probes.append(((probe.value, word.value), 1.0 if report is not None and report.status is word else 0.0))
    lifecycle = registry.lifecycle
    view: dict[str, tuple[tuple[str, ...], _Samples]] = {
        _CHECK_STATUS: (("check", "status"), status),
        _CHECK_LAST_SUCCESS: (("check",), last_success),
        _PROBE_STATUS: (("probe", "status"), probes),
        _LIFECYCLE_STATE: (("state",), [((s.value,), 1.0 if s is lifecycle else 0.0) for s in _types.Lifecycle]),
        _OUT_OF_ROTATION: ((), [((), 0.0 if registry.rotation.in_rotation else 1.0)]),
    }
    if shutdown is not None:
        try:
            in_flight = float(shutdown.in_flight)
            phase = str(shutdown.phase)
        except Exception:  # a misbehaving coordinator must not break the scrape
            _logger.exception("reading in-flight requests and shutdown phase failed")
        else:
            names = list(dict.fromkeys([*phases, phase]))
            view[_IN_FLIGHT] = ((), [((), in_flight)])
            view[_SHUTDOWN_PHASE] = (("phase",), [((p,), 1.0 if p == phase else 0.0) for p in names])
    return view


def _cumulative(bucket_counts: Sequence[int]) -> list[tuple[str, float]]:
    total = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(_runner.DURATION_BUCKETS, bucket_counts, strict=True):
        total += count
        buckets.append((prometheus_client.utils.floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
    return buckets


class HealthCollector(prometheus_client.registry.Collector):
    """A prometheus-client collector that reads a :class:`HealthRegistry` at scrape time.

    Register it with a ``CollectorRegistry`` (``REGISTRY.register(HealthCollector(registry))``)
    in a single-process server. Under a multiprocess server use :class:`PrometheusMetrics`
    instead (custom collectors cannot be merged across processes).

    Args:
        registry: the registry to read.
        shutdown: an object with ``in_flight`` (int) and ``phase`` (str), such as the
            graceful-shutdown coordinator; without it the in-flight and phase metrics are
            left out.
        phases: every phase name ``shutdown`` can report, so each gets a series (0 or 1);
            a phase not listed is still exposed while it is the current one.
    """

    def __init__(
        self, registry: HealthRegistry, *, shutdown: ShutdownView | None = None, phases: Sequence[str] = ()
    ) -> None:
        self.registry = registry
        self.shutdown = shutdown
        self.phases = _phases(shutdown, phases)

    def describe(self) -> Iterable[Metric]:
        """The metric families without samples (lets a registry detect clashes without a
        collection)."""
        return list(self._families(with_samples=False))

    def collect(self) -> Iterable[Metric]:
        """Build every metric family from the registry's current state."""
        return list(self._families(with_samples=True))

    def _families(self, *, with_samples: bool) -> Iterator[Metric]:
        view = _gauge_view(self.registry, self.shutdown, self.phases) if with_samples else None
        yield from self._gauges(view, _CHECK_STATUS, ("check", "status"))
        duration = prometheus_client.core.HistogramMetricFamily(
            _CHECK_DURATION, _HELP[_CHECK_DURATION], labels=("check",), unit="seconds"
        )
        runs = prometheus_client.core.CounterMetricFamily(_CHECK_RUNS, _HELP[_CHECK_RUNS], labels=("check", "status"))
        if with_samples:
            for state in self.registry.check_states():
                with state.lock:
                    stats = state.stats.snapshot()
                name = state.check.name
                duration.add_metric((name,), _cumulative(stats.bucket_counts), stats.duration_sum)
                for word in _types.Status:
                    runs.add_metric((name, word.value), float(stats.runs[word]))
        yield duration
        yield runs
        yield from self._gauges(view, _CHECK_LAST_SUCCESS, ("check",), unit="seconds")
        yield from self._gauges(view, _PROBE_STATUS, ("probe", "status"))
        yield from self._gauges(view, _LIFECYCLE_STATE, ("state",))
        yield from self._gauges(view, _OUT_OF_ROTATION, ())
        if self.shutdown is not None:
            yield from self._gauges(view, _IN_FLIGHT, ())
            yield from self._gauges(view, _SHUTDOWN_PHASE, ("phase",))

    @staticmethod
    def _gauges(
        view: dict[str, tuple[tuple[str, ...], _Samples]] | None, name: str, labels: Sequence[str], unit: str = ""
    ) -> Iterator[Metric]:
        family = prometheus_client.core.GaugeMetricFamily(name, _HELP[name], labels=labels, unit=unit)
        if view is not None:
            if name not in view:
                return  # the shutdown source could not be read: leave the family out
            for values, value in view[name][1]:
                family.add_metric(values, value)
        yield family


# -- multiprocess ------------------------------------------------------------------------------

_Mode = typing.Literal["livemax", "max", "livesum"]
_GAUGE_MODES: dict[str, _Mode] = {
    _CHECK_STATUS: "livemax",
    # A success seen by a worker that has since exited is still the latest success.
    _CHECK_LAST_SUCCESS: "max",
    _PROBE_STATUS: "livemax",
    _LIFECYCLE_STATE: "livemax",
    _OUT_OF_ROTATION: "livemax",
    _IN_FLIGHT: "livesum",
    _SHUTDOWN_PHASE: "livemax",
}
_GAUGE_LABELS: dict[str, tuple[str, ...]] = {
    _CHECK_STATUS: ("check", "status"),
    _CHECK_LAST_SUCCESS: ("check",),
    _PROBE_STATUS: ("probe", "status"),
    _LIFECYCLE_STATE: ("state",),
    _OUT_OF_ROTATION: (),
    _IN_FLIGHT: (),
    _SHUTDOWN_PHASE: ("phase",),
}
_metrics_lock = threading.Lock()
_mp_metrics: dict[str, Any] = {}


def _multiprocess_metrics() -> dict[str, Any]:
    """prometheus-client metric objects for the mirror, created once per process and
    registered nowhere (multiprocess mode exports every metric from its files).

    Only the counter and the histogram are created here; each gauge is created by
    :func:`_multiprocess_gauge` when it is first set, because prometheus-client writes a
    sample for an unlabelled metric the moment it exists: ``healthprobe_in_flight_requests``
    would show 0 even without a ``shutdown`` source.
    """
    with _metrics_lock:
        if _CHECK_RUNS not in _mp_metrics:
            _mp_metrics[_CHECK_RUNS] = prometheus_client.Counter(
                _CHECK_RUNS, _HELP[_CHECK_RUNS], ("check", "status"), registry=None
            )
            _mp_metrics[_CHECK_DURATION] = prometheus_client.Histogram(
                _CHECK_DURATION,
                _HELP[_CHECK_DURATION],
                ("check",),
                registry=None,
                buckets=_runner.DURATION_BUCKETS,
                unit="seconds",
            )
        return _mp_metrics


def _multiprocess_gauge(name: str) -> Any:
    """The process's multiprocess gauge ``name`` (one of :data:`_GAUGE_MODES`), created on
    first use."""
    gauge = _mp_metrics.get(name)
    if gauge is None:
        with _metrics_lock:
            gauge = _mp_metrics.get(name)
            if gauge is None:
                unit = "seconds" if name == _CHECK_LAST_SUCCESS else ""
                gauge = _mp_metrics[name] = prometheus_client.Gauge(
                    name,
                    _HELP[name],
                    _GAUGE_LABELS[name],
                    registry=None,
                    multiprocess_mode=_GAUGE_MODES[name],
                    unit=unit,
                )
    return gauge


class MultiprocessMirror:
    """Copies a registry's metrics into prometheus-client's multiprocess files.

    Get one with :func:`multiprocess_mirror` (one per registry and process). The gauges are
    rewritten from the registry after every check run, every probe answer, every lifecycle
    change and every ``interval`` seconds (for in-flight requests and the shutdown phase);
    the run counter and the duration histogram count each run as it completes, from the
    moment the mirror exists.

    Args:
        registry: the registry to mirror.
        shutdown, phases: as :class:`HealthCollector`.
        interval: seconds between background refreshes of the gauges (default 1.0).

    Raises:
        RuntimeError: prometheus-client is not in multiprocess mode
            (``PROMETHEUS_MULTIPROC_DIR`` was not set when it was imported).
    """

    def __init__(
        self,
        registry: HealthRegistry,
        *,
        shutdown: ShutdownView | None = None,
        phases: Sequence[str] = (),
        interval: float = 1.0,
    ) -> None:
        from prometheus_client import values

        if not getattr(values.ValueClass, "_multiprocess", False):
            raise RuntimeError(
                f"prometheus-client is not in multiprocess mode: set {MULTIPROC_ENV} before it is imported"
            )
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.registry = registry
        self.shutdown = shutdown
        self.phases = _phases(shutdown, phases)
        self.interval = interval
        self._metrics = _multiprocess_metrics()
        self._sync_lock = threading.Lock()
        self._thread_pid = 0
        self._thread_lock = threading.Lock()
        registry.add_result_listener(self._on_result)
        registry.add_report_listener(self._on_report)
        registry.add_lifecycle_listener(self._on_lifecycle)
        self.refresh()

    def refresh(self) -> None:
        """Rewrite every gauge of this process from the registry now (also starts the
        background refresher in this process if it is not running)."""
        self._ensure_thread()
        with self._sync_lock:
            for name, (_labels, samples) in _gauge_view(self.registry, self.shutdown, self.phases).items():
                gauge = _multiprocess_gauge(name)
                for values, value in samples:
                    (gauge.labels(*values) if values else gauge).set(value)

    def _on_result(self, check: Check, result: CheckResult) -> None:
        self._metrics[_CHECK_RUNS].labels(check.name, result.status.value).inc()
        self._metrics[_CHECK_DURATION].labels(check.name).observe(result.duration)
        self.refresh()

    def _on_report(self, report: Report) -> None:
        self.refresh()

    def _on_lifecycle(self, old: Lifecycle, new: Lifecycle) -> None:
        self.refresh()

    def _ensure_thread(self) -> None:
        # Threads do not survive fork(): a worker forked from a process that had a mirror
        # starts its own refresher on first use.
        pid = os.getpid()
        if self._thread_pid == pid:
            return
        with self._thread_lock:
            if self._thread_pid == pid:
                return
            self._thread_pid = pid
            ref = weakref.ref(self)
            _threads.start(_refresh_forever, ref, pid, name="healthprobe-metrics")


def _refresh_forever(ref: weakref.ReferenceType[MultiprocessMirror], pid: int) -> None:
    while True:
        mirror = ref()
        if mirror is None or mirror._thread_pid != pid:
            return
        interval = mirror.interval
        try:
            mirror.refresh()
        except Exception:
            _logger.exception("refreshing the multiprocess metrics failed")
        del mirror
        threading.Event().wait(interval)


_mirrors_lock = threading.Lock()
# Kept on the registry itself (not in a module-level mapping, which would keep every
# registry alive): registry and mirror refer to each other and go away together.
_MIRROR_ATTRIBUTE = "_healthprobe_prometheus_mirror"


def multiprocess_mirror(
    registry: HealthRegistry, *, shutdown: ShutdownView | None = None, phases: Sequence[str] = ()
) -> MultiprocessMirror:
    """The process's :class:`MultiprocessMirror` of ``registry``, created on first call
    (later calls return the same mirror, so runs are never counted twice).

    Raises:
        RuntimeError: prometheus-client is not in multiprocess mode.
    """
    with _mirrors_lock:
        mirror: MultiprocessMirror | None = getattr(registry, _MIRROR_ATTRIBUTE, None)
        if mirror is None:
            mirror = MultiprocessMirror(registry, shutdown=shutdown, phases=phases)
            setattr(registry, _MIRROR_ATTRIBUTE, mirror)
        elif shutdown is not None and mirror.shutdown is None:
            mirror.shutdown, mirror.phases = shutdown, _phases(shutdown, phases)
        return mirror


def child_exit(server: object, worker: Any) -> None:
    """gunicorn ``child_exit`` server hook: drop a dead worker's live gauges.

    Put ``from healthprobe.prometheus import child_exit`` in ``gunicorn.conf.py``. gunicorn
    calls it in the master for every worker that exits, however it exits (gunicorn
    "Server hooks"); it calls prometheus-client's ``multiprocess.mark_process_dead``, which
    deletes the worker's ``live*`` gauge files.
    """
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


#: Size of the header of prometheus-client's multiprocess files (bytes used, then padding).
_HEADER_BYTES = 8
_unreadable_logged: set[str] = set()


class _MultiProcessFiles(prometheus_client.multiprocess.MultiProcessCollector):
    """prometheus-client's ``MultiProcessCollector``, except that a file that cannot be read
    is left out of the merge instead of failing the whole scrape.

    prometheus-client creates a process's ``*.db`` file before it sizes it (``MmapedDict``
    opens it, then truncates it to 64 KiB), so a scrape that lists the directory in that
    moment can find an empty file, and reading its header raises ``struct.error``, which
    would lose every worker's metrics for that scrape. A worker killed in that moment leaves
    the empty file behind for good, so trying again would not help. An empty or short file
    holds no sample, so leaving it out loses nothing; any other unreadable file is left out
    too, and logged once.
    """

    def collect(self) -> Iterable[Metric]:
        files = glob.glob(os.path.join(self._path, "*.db"))
        try:
            return self.merge(files, accumulate=True)  # type: ignore[no-untyped-call,no-any-return]
        except Exception:
            # Rare (a file being created right now): merge the files that can be read alone.
            readable = [path for path in files if _readable(path)]
            return self.merge(readable, accumulate=True)  # type: ignore[no-untyped-call,no-any-return]


def _readable(path: str) -> bool:
    """Whether prometheus-client can merge the multiprocess file ``path`` on its own."""
    try:
        prometheus_client.multiprocess.MultiProcessCollector.merge([path], accumulate=True)  # type: ignore[no-untyped-call]
    except Exception:
        try:
            empty = os.path.getsize(path) < _HEADER_BYTES
        except OSError:  # removed meanwhile (a dead worker's live gauges)
            return False
        if not empty and path not in _unreadable_logged and len(_unreadable_logged) < 1000:
            _unreadable_logged.add(path)
            _logger.warning("multiprocess metrics file %s cannot be read; left out", path, exc_info=True)
        return False
    return True


# -- exposition -----------------------------------------------------------------------------


class _Forward(prometheus_client.registry.Collector):
    """Serves another registry's metrics inside ours (prometheus-client's default one),
    leaving out ``healthprobe_*`` families: ours come from our own collector, and a second
    copy (a :class:`HealthCollector` also registered there) would duplicate every series."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return [family for family in self.source.collect() if not family.name.startswith("healthprobe_")]


class _Only(prometheus_client.registry.Collector):
    """The families of ``source`` that have samples named in ``names``, with only those
    samples (the ``name[]`` filter; works for collectors that do not describe themselves,
    such as ``MultiProcessCollector``)."""

    def __init__(self, source: CollectorRegistry, names: frozenset[str]) -> None:
        self.source = source
        self.names = names

    def collect(self) -> Iterable[Metric]:
        for family in self.source.collect():
            samples = [sample for sample in family.samples if sample.name in self.names]
            if samples:
                kept = prometheus_client.core.Metric(family.name, family.documentation, family.type, family.unit)
                kept.samples = samples
                yield kept


class PrometheusMetrics:
    """The metrics a ``/metrics`` route serves (see ``metrics=`` on the adapters).

    In a single process it serves a :class:`HealthCollector` of ``registry`` plus, with
    ``include_default``, everything in prometheus-client's default ``REGISTRY`` (the
    application's own metrics, process and platform metrics). In multiprocess mode
    (``PROMETHEUS_MULTIPROC_DIR`` set) it starts this process's :class:`MultiprocessMirror`
    and serves the merge of every worker's files (``MultiProcessCollector``).

    Args:
        registry: the registry to expose.
        shutdown, phases: as :class:`HealthCollector`.
        include_default: also serve prometheus-client's default registry (single process;
            its ``healthprobe_*`` families are left out). In multiprocess mode every metric
            of every worker is served from the multiprocess files anyway.
        multiprocess: force multiprocess mode on or off; by default on when
            ``PROMETHEUS_MULTIPROC_DIR`` is set.

    Attributes:
        collectors: the ``CollectorRegistry`` served; usable with prometheus-client's own
            ``make_asgi_app`` / ``make_wsgi_app``.

    Raises:
        RuntimeError: multiprocess mode was asked for but prometheus-client is not in it.
    """

    def __init__(
        self,
        registry: HealthRegistry,
        *,
        shutdown: ShutdownView | None = None,
        phases: Sequence[str] = (),
        include_default: bool = True,
        multiprocess: bool | None = None,
    ) -> None:
        if multiprocess is None:
            multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.collectors = prometheus_client.CollectorRegistry()
        self.mirror: MultiprocessMirror | None = None
        if multiprocess:
            self.mirror = multiprocess_mirror(registry, shutdown=shutdown, phases=phases)
            _MultiProcessFiles(self.collectors)  # type: ignore[no-untyped-call]
        else:
            self.collectors.register(HealthCollector(registry, shutdown=shutdown, phases=phases))
            if include_default:
                self.collectors.register(_Forward(prometheus_client.REGISTRY))

    def expose(self, accept: str | None, names: Sequence[str] = ()) -> tuple[str, bytes]:
        """Render the metrics in the format ``accept`` asks for.

        Args:
            accept: the request's ``Accept`` header; ``application/openmetrics-text`` gets
                OpenMetrics, anything else the Prometheus text format 0.0.4
                (prometheus-client's ``choose_encoder``).
            names: if given, only these metric names (prometheus-client's ``name[]`` filter).

        Returns:
            ``(content type, body bytes)``.
        """
        encoder, content_type = prometheus_client.exposition.choose_encoder(accept or "")
        if names:
            restricted = prometheus_client.CollectorRegistry()
            restricted.register(_Only(self.collectors, frozenset(names)))
            return content_type, encoder(restricted)
        return content_type, encoder(self.collectors)


_WEBHOOK_NOTICES = "healthprobe_webhook_notices"  # exposed as healthprobe_webhook_notices_total
_WEBHOOK_QUEUED = "healthprobe_webhook_queued_notices"
_HELP[_WEBHOOK_NOTICES] = "Webhook notices by outcome: sent, failed (every attempt failed) or dropped (queue full)."
_HELP[_WEBHOOK_QUEUED] = "Webhook notices waiting to be sent."


class WebhookCollector(prometheus_client.registry.Collector):
    """A prometheus-client collector of a :class:`healthprobe.webhook.WebhookPublisher`'s
    counts, read at scrape time: ``healthprobe_webhook_notices_total{outcome}`` (counter;
    ``sent``, ``failed``, ``dropped``) and ``healthprobe_webhook_queued_notices`` (gauge).

    Register it next to the health metrics: ``metrics.collectors.register(
    WebhookCollector(publisher))`` for a :class:`PrometheusMetrics`, or
    ``REGISTRY.register(...)``. The counts are the process's own (in a multiprocess server,
    each worker's publisher counts what it sent).

    Args:
        publisher: the publisher to read (anything with ``counts``, a ``dict`` of the
            outcomes to ints, and ``queued``, an int).
    """

    def __init__(self, publisher: Any) -> None:
        self.publisher = publisher

    def describe(self) -> Iterable[Metric]:
        """The metric families without samples."""
        return list(self._families(with_samples=False))

    def collect(self) -> Iterable[Metric]:
        """The metric families with the publisher's counts now."""
        return list(self._families(with_samples=True))

    def _families(self, *, with_samples: bool) -> Iterator[Metric]:
        notices = prometheus_client.core.CounterMetricFamily(
            _WEBHOOK_NOTICES, _HELP[_WEBHOOK_NOTICES], labels=("outcome",)
        )
        queued = prometheus_client.core.GaugeMetricFamily(_WEBHOOK_QUEUED, _HELP[_WEBHOOK_QUEUED])
        if with_samples:
            for outcome, count in self.publisher.counts.items():
                notices.add_metric((outcome,), float(count))
            queued.add_metric((), float(self.publisher.queued))
        yield notices
        yield queued
