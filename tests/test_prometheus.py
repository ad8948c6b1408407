"""Prometheus metrics: the collector, the /metrics route on real servers, gunicorn
multiprocess mode, promtool, and a real Prometheus server scraping a real app."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from healthprobe import CheckResult, HealthRegistry, Lifecycle, Status
from healthprobe.prometheus import HealthCollector, PrometheusMetrics

from . import doc_pages
from .support import (
    BIN,
    MALFORMED,
    PYTHON,
    ROOT,
    Samples,
    ServerProcess,
    assert_metrics_route_rules,
    free_port,
    prometheus_query,
    prometheus_server,
    promtool_check_metrics,
    require_binary,
    run_server,
    wait_until,
)
from .support import sample_value as value
from .support import samples as parse

T = TypeVar("T")
ALERTS = ROOT / "examples" / "prometheus"
STATES = [state.value for state in Lifecycle]


def scrape(collector: HealthCollector) -> str:
    own = CollectorRegistry()
    own.register(collector)
    return generate_latest(own).decode()


def eventually(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Call ``probe`` every ``interval`` seconds until it returns something other than
    ``None`` (bounded by ``timeout``; a failed request counts as ``None``), and return it."""
    result = wait_until(probe, timeout, what, interval=interval, retry=(httpx.HTTPError, OSError))
    assert result is not None
    return result


class View:
    """A tiny object satisfying healthprobe.prometheus.ShutdownView."""

    def __init__(self, in_flight: int = 0, phase: str = "serving") -> None:
        self.in_flight = in_flight
        self.phase = phase


# -- the collector, in process ------------------------------------------------------------------


def test_collector_reports_each_check_probe_and_lifecycle() -> None:
    registry = HealthRegistry(default_cache_ttl=0.0)
    registry.add_check("database", lambda: True, probes=("readiness", "liveness"))
    registry.add_check("cache", lambda: CheckResult(Status.WARN, output="slow"))
    registry.add_check("queue", lambda: False, critical=False)
    registry.add_check("never-run", lambda: True, probes=("startup",))
    registry.mark_started()
    before = time.time()
    registry.run("readiness")
    registry.run("readiness")
    samples = parse(scrape(HealthCollector(registry)))

    expected = {"database": "pass", "cache": "warn", "queue": "fail"}
    for check, status in expected.items():
        for word in ("pass", "warn", "fail"):
            assert value(samples, "healthprobe_check_status", check=check, status=word) == float(word == status)
            runs = value(samples, "healthprobe_check_runs_total", check=check, status=word)
            assert runs == (2.0 if word == status else 0.0)
        assert value(samples, "healthprobe_check_duration_seconds_count", check=check) == 2.0
        assert value(samples, "healthprobe_check_duration_seconds_bucket", check=check, le="+Inf") == 2.0
        duration_sum = value(samples, "healthprobe_check_duration_seconds_sum", check=check)
        assert duration_sum is not None and 0.0 <= duration_sum < 5.0
    # A check that has not run has all-zero status and no last success.
    for word in ("pass", "warn", "fail"):
        assert value(samples, "healthprobe_check_status", check="never-run", status=word) == 0.0
    assert value(samples, "healthprobe_check_last_success_timestamp_seconds", check="never-run") is None
    # Only a passing run counts as a success.
    last = value(samples, "healthprobe_check_last_success_timestamp_seconds", check="database")
    assert last is not None and before - 1 <= last <= time.time() + 1
    assert value(samples, "healthprobe_check_last_success_timestamp_seconds", check="cache") is None
    # Readiness warned (a warn and a non-critical failure); liveness was never asked.
    assert value(samples, "healthprobe_probe_status", probe="readiness", status="warn") == 1.0
    assert value(samples, "healthprobe_probe_status", probe="readiness", status="pass") == 0.0
    assert all(value(samples, "healthprobe_probe_status", probe="liveness", status=w) == 0.0 for w in Status)
    assert value(samples, "healthprobe_lifecycle_state", state="started") == 1.0
    assert value(samples, "healthprobe_lifecycle_state", state="starting") == 0.0
    # Without a shutdown view there is no in-flight or phase metric.
    assert not any(name.startswith(("healthprobe_in_flight", "healthprobe_shutdown")) for name, _ in samples)


def test_histogram_buckets_are_cumulative() -> None:
    registry = HealthRegistry()
    delays = iter([0.0, 0.3, 0.0])
    registry.add_check("slow", lambda: time.sleep(next(delays)), timeout=5.0, cache_ttl=0.0)
    registry.mark_started()
    for _ in range(3):
        registry.run("readiness")
    samples = parse(scrape(HealthCollector(registry)))
    buckets = {float(dict(labels)["le"]): v for (name, labels), v in samples.items() if name.endswith("_bucket")}
    assert buckets[0.25] == 2.0  # the two quick runs
    assert buckets[0.5] == 3.0 and buckets[float("inf")] == 3.0
    counts = [buckets[bound] for bound in sorted(buckets)]
    assert counts == sorted(counts)


def test_status_changes_follow_the_latest_run() -> None:
    registry = HealthRegistry()
    outcome = {"ok": True}
    registry.add_check("flaky", lambda: outcome["ok"], cache_ttl=0.0)
    registry.mark_started()
    collector = HealthCollector(registry)
    registry.run("readiness")
    assert value(parse(scrape(collector)), "healthprobe_check_status", check="flaky", status="pass") == 1.0
    outcome["ok"] = False
    registry.run("readiness")
    samples = parse(scrape(collector))
    assert value(samples, "healthprobe_check_status", check="flaky", status="fail") == 1.0
    assert value(samples, "healthprobe_check_status", check="flaky", status="pass") == 0.0
    assert value(samples, "healthprobe_probe_status", probe="readiness", status="fail") == 1.0
    registry.begin_drain()
    samples = parse(scrape(collector))
    assert value(samples, "healthprobe_lifecycle_state", state="draining") == 1.0
    assert value(samples, "healthprobe_lifecycle_state", state="started") == 0.0


def test_a_scrape_never_runs_a_check_nor_waits_for_one() -> None:
    registry = HealthRegistry()
    release = threading.Event()
    calls = {"n": 0}

    def blocking() -> bool:
        calls["n"] += 1
        release.wait(10)
        return True

    registry.add_check("blocking", blocking, timeout=5.0, cache_ttl=0.0)
    registry.mark_started()
    collector = HealthCollector(registry)
    prober = threading.Thread(target=registry.run, args=("readiness",), daemon=True)
    prober.start()
    try:
        eventually(lambda: calls["n"] == 1 or None, 5, "the check to start")
        for _ in range(5):
            started = time.monotonic()
            samples = parse(scrape(collector))
            assert time.monotonic() - started < 1.0  # generous: the check holds for up to 10 s
        assert calls["n"] == 1  # scrapes started no run
        assert all(value(samples, "healthprobe_check_status", check="blocking", status=w) == 0.0 for w in Status)
        assert value(samples, "healthprobe_check_runs_total", check="blocking", status="pass") == 0.0
    finally:
        release.set()
        prober.join(10)
    samples = parse(scrape(collector))
    assert value(samples, "healthprobe_check_status", check="blocking", status="pass") == 1.0
    assert calls["n"] == 1


def test_labels_come_only_from_registered_names_never_exception_text() -> None:
    registry = HealthRegistry()

    def leaky() -> None:
        raise ConnectionError("password=hunter2 rejected by 10.0.0.7 /api/v1/users?id=42")

    registry.add_check("leaky", leaky)
    registry.mark_started()
    registry.run("readiness")
    text = scrape(HealthCollector(registry, shutdown=View(), phases=("serving", "drain")))
    assert "hunter2" not in text and "10.0.0.7" not in text and "/api" not in text
    allowed = {"leaky", "pass", "warn", "fail", "serving", "drain", *(p.value for p in Lifecycle)}
    allowed |= {"startup", "readiness", "liveness"}
    for (name, labels), _ in parse(text).items():
        for key, label_value in labels:
            if key != "le":
                assert label_value in allowed, (name, key, label_value)


def test_in_flight_and_shutdown_phase_come_from_the_shutdown_view() -> None:
    registry = HealthRegistry()
    view = View(in_flight=3, phase="serving")
    collector = HealthCollector(registry, shutdown=view, phases=("serving", "delay", "drain", "hooks"))
    samples = parse(scrape(collector))
    assert value(samples, "healthprobe_in_flight_requests") == 3.0
    assert value(samples, "healthprobe_shutdown_phase", phase="serving") == 1.0
    assert value(samples, "healthprobe_shutdown_phase", phase="drain") == 0.0
    view.in_flight, view.phase = 1, "drain"
    samples = parse(scrape(collector))
    assert value(samples, "healthprobe_in_flight_requests") == 1.0
    assert value(samples, "healthprobe_shutdown_phase", phase="serving") == 0.0
    assert value(samples, "healthprobe_shutdown_phase", phase="drain") == 1.0
    # A phase the collector was not told about still shows while it is current.
    view.phase = "exit"
    samples = parse(scrape(collector))
    assert value(samples, "healthprobe_shutdown_phase", phase="exit") == 1.0
    assert sum(v for (name, _), v in samples.items() if name == "healthprobe_shutdown_phase") == 1.0


def test_a_broken_shutdown_view_leaves_the_rest_of_the_scrape_intact() -> None:
    class Broken:
        @property
        def in_flight(self) -> int:
            raise RuntimeError("coordinator gone")

        phase = "serving"

    registry = HealthRegistry()
    registry.add_check("database", lambda: True)
    registry.mark_started()
    registry.run("readiness")
    samples = parse(scrape(HealthCollector(registry, shutdown=Broken())))
    assert value(samples, "healthprobe_check_status", check="database", status="pass") == 1.0
    assert value(samples, "healthprobe_in_flight_requests") is None


def test_promtool_accepts_the_exposition() -> None:
    registry = HealthRegistry()
    registry.add_check("database", lambda: True, probes=("startup", "readiness"))
    registry.add_check("cache", lambda: False, critical=False)
    registry.run("readiness")
    registry.run("liveness")
    metrics = PrometheusMetrics(registry, shutdown=View(2), phases=("serving", "drain"), multiprocess=False)
    content_type, body = metrics.expose("text/plain")
    assert content_type.startswith("text/plain; version=0.0.4")
    promtool_check_metrics(body.decode())


def test_default_registry_is_served_without_a_second_copy_of_ours() -> None:
    from prometheus_client import REGISTRY

    registry = HealthRegistry()
    registry.add_check("database", lambda: True)
    registry.run("readiness")
    also_registered = HealthCollector(registry)
    REGISTRY.register(also_registered)
    try:
        _, body = PrometheusMetrics(registry, multiprocess=False).expose(None)
    finally:
        REGISTRY.unregister(also_registered)
    text = body.decode()
    assert text.count("# TYPE healthprobe_check_status gauge") == 1
    assert "process_" in text or "python_info" in text  # the default registry's own collectors
    promtool_check_metrics(text)


def test_openmetrics_by_accept_header() -> None:
    registry = HealthRegistry()
    registry.add_check("database", lambda: True)
    registry.mark_started()
    registry.run("readiness")
    metrics = PrometheusMetrics(registry, shutdown=View(), include_default=False, multiprocess=False)
    content_type, body = metrics.expose("application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n")
    families = {family.name: family for family in parse_openmetrics(text)}
    assert families["healthprobe_check_duration_seconds"].unit == "seconds"
    assert families["healthprobe_check_runs"].type == "counter"
    assert families["healthprobe_check_last_success_timestamp_seconds"].unit == "seconds"
    # The name[] filter of prometheus-client.
    _, body = metrics.expose(None, ["healthprobe_lifecycle_state"])
    assert {name for name, _ in parse(body.decode())} == {"healthprobe_lifecycle_state"}


def test_registry_listeners_see_runs_and_reports_and_survive_errors() -> None:
    registry = HealthRegistry()
    registry.add_check("database", lambda: True, cache_ttl=0.0)
    registry.mark_started()
    seen: list[tuple[str, Status]] = []
    reports: list[str] = []

    def broken(*_: object) -> None:
        raise RuntimeError("listener bug")

    registry.add_result_listener(broken)
    registry.add_result_listener(lambda check, result: seen.append((check.name, result.status)))
    registry.add_report_listener(broken)
    registry.add_report_listener(lambda report: reports.append(report.probe.value))
    assert registry.run("readiness").ok
    registry.run("readiness", only="database")
    assert seen == [("database", Status.PASS), ("database", Status.PASS)]
    assert reports == ["readiness"]  # a one-check answer is not a probe report


def test_importing_the_core_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, healthprobe, healthprobe.http, healthprobe.asgi, healthprobe.wsgi\n"
        "assert 'prometheus_client' not in sys.modules, 'prometheus_client imported'\n"
    )
    subprocess.run([PYTHON, "-c", code], check=True, timeout=60, cwd=ROOT)


def test_multiprocess_mode_needs_prometheus_client_in_multiprocess_mode() -> None:
    from healthprobe.prometheus import MultiprocessMirror

    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        MultiprocessMirror(HealthRegistry())
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        PrometheusMetrics(HealthRegistry(), multiprocess=True)


def test_metrics_path_must_not_shadow_a_probe_path() -> None:
    from healthprobe import HealthEndpoints

    with pytest.raises(ValueError, match="also a probe path"):
        HealthEndpoints(HealthRegistry(), metrics=True, metrics_path="/readyz")
    with pytest.raises(ValueError, match="must start with"):
        HealthEndpoints(HealthRegistry(), metrics=True, metrics_path="metrics")
    assert not HealthEndpoints(HealthRegistry()).matches("/metrics")  # off by default


# -- alert rules --------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = require_binary("promtool", "prometheus")
    checked = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"], cwd=ALERTS, capture_output=True, timeout=60, check=False
    )
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
    assert b"SUCCESS: 4 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=ALERTS, capture_output=True, timeout=60, check=False
    )
    assert tested.returncode == 0, (tested.stdout + tested.stderr).decode()


# -- real servers -------------------------------------------------------------------------------


def _uvicorn(port: int) -> list[str]:
    return [PYTHON, "-m", "uvicorn", "tests.metrics_apps:asgi_app", "--host", "127.0.0.1", "--port", str(port)]


@pytest.mark.slow
def test_asgi_metrics_route_on_uvicorn(tmp_path: Path) -> None:
    port = free_port()
    with (
        run_server(_uvicorn(port), port, tmp_path, name="uvicorn") as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        assert client.get("/readyz").status_code == 200
        answer = client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert answer.headers["cache-control"] == "no-store"
        samples = parse(answer.text)
        assert value(samples, "healthprobe_check_status", check="flaky", status="pass") == 1.0
        assert value(samples, "healthprobe_probe_status", probe="readiness", status="pass") == 1.0
        # metrics=True also serves prometheus-client's default registry (process metrics).
        assert any(name.startswith("process_") for name, _ in samples)
        promtool_check_metrics(answer.text)

        assert client.post("/control/fail").status_code == 200
        samples = parse(client.get("/metrics").text)
        assert value(samples, "healthprobe_check_status", check="flaky", status="fail") == 1.0
        assert "hunter2" not in client.get("/metrics").text

        assert_metrics_route_rules(client)
        # prometheus-client's own ASGI app serving a HealthCollector (the documented way).
        own = client.get("/prom/")
        assert own.status_code == 200
        assert value(parse(own.text), "healthprobe_check_status", check="flaky", status="fail") == 1.0
        assert client.get("/").text == "application"


def _gunicorn(port: int, conf: Path, workers: int = 2, app: str = "tests.metrics_apps:wsgi_app") -> list[str]:
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--config",
        str(conf),
        app,
    ]


def _live_pids(directory: Path) -> set[int]:
    return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("gauge_livemax_*.db")}


#: docs/metrics.md's gunicorn start-up: the ``sh`` block that sets and empties the
#: multiprocess directory and starts gunicorn, and the ``gunicorn.conf.py`` line of its hook.
MULTIPROCESS_START = doc_pages.block(doc_pages.page("metrics.md"), "sh", contains="PROMETHEUS_MULTIPROC_DIR")
CHILD_EXIT_CONF = doc_pages.block(doc_pages.page("metrics.md"), "python", contains="child_exit")


@pytest.mark.slow
def test_gunicorn_multiprocess_shows_any_failing_worker_and_forgets_dead_ones(tmp_path: Path) -> None:
    # Started as docs/metrics.md says, its two blocks as written: the sh lines under a real
    # shell (the directory, the workers and the app ours; the address in the configuration),
    # the hook's line as the whole of gunicorn.conf.py but for the address and a short
    # graceful timeout.
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    (multiproc / "gauge_livemax_999999.db").write_bytes(b"")  # a file of an earlier run
    port = free_port()
    (tmp_path / "gunicorn.conf.py").write_text(f"{CHILD_EXIT_CONF}graceful_timeout = 5\nbind = '127.0.0.1:{port}'\n")
    script = MULTIPROCESS_START
    for page, ours in (
        ("/tmp/healthprobe-metrics", str(multiproc)),
        ("--workers 4", "--workers 2"),
        (" myapp:app", " tests.metrics_apps:wsgi_app"),
    ):
        assert page in script, page
        script = script.replace(page, ours)
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # the environment's gunicorn
    with (
        run_server(["sh", "-c", script], port, tmp_path, env=env, cwd=tmp_path, name="gunicorn") as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):

        def metrics() -> Samples:
            answer = client.get("/metrics")
            assert answer.status_code == 200, answer.text
            return parse(answer.text)

        workers = eventually(
            lambda: _live_pids(multiproc) if len(_live_pids(multiproc)) == 2 else None, 30, "2 workers"
        )
        assert 999999 not in workers  # the start emptied the directory
        samples = metrics()
        assert value(samples, "healthprobe_check_status", check="flaky", status="pass") == 1.0
        assert value(samples, "healthprobe_check_status", check="flaky", status="fail") == 0.0
        assert value(samples, "healthprobe_lifecycle_state", state="started") == 1.0
        assert value(samples, "healthprobe_shutdown_phase", phase="serving") == 1.0
        assert not any(("pid", str(pid)) in labels for _, labels in samples for pid in workers)
        promtool_check_metrics(client.get("/metrics").text)
        only = parse(client.get("/metrics", params={"name[]": "healthprobe_in_flight_requests"}).text)
        assert list(only) == [("healthprobe_in_flight_requests", frozenset())]

        # Fail the check in whichever worker answers; every scrape (from either worker) shows it.
        failing = int(client.get("/control/fail").text)
        assert failing in workers
        for _ in range(6):
            samples = metrics()
            assert value(samples, "healthprobe_check_status", check="flaky", status="fail") == 1.0
            assert value(samples, "healthprobe_check_status", check="flaky", status="pass") == 1.0  # the other
            assert value(samples, "healthprobe_check_runs_total", check="flaky", status="fail") == 1.0

        # In-flight requests of a busy worker, seen through the other one (livesum).
        sleeper = threading.Thread(target=lambda: httpx.get(f"{server.url}/control/sleep?4", timeout=10))
        sleeper.start()
        try:
            eventually(
                lambda: value(metrics(), "healthprobe_in_flight_requests") == 1.0 or None, 5, "1 request in flight"
            )
        finally:
            sleeper.join(10)
        eventually(lambda: value(metrics(), "healthprobe_in_flight_requests") == 0.0 or None, 5, "no request in flight")

        # The failing worker dies hard; gunicorn's child_exit hook drops its live gauges.
        os.kill(failing, signal.SIGKILL)
        eventually(
            lambda: True if failing not in _live_pids(multiproc) and len(_live_pids(multiproc)) == 2 else None,
            30,
            "a replacement worker and no files of the dead one",
        )
        samples = metrics()
        assert value(samples, "healthprobe_check_status", check="flaky", status="fail") == 0.0
        assert value(samples, "healthprobe_check_status", check="flaky", status="pass") == 1.0
        # Counters keep the dead worker's runs: totals never go backwards.
        assert value(samples, "healthprobe_check_runs_total", check="flaky", status="fail") == 1.0


@contextlib.contextmanager
def _multiprocess_gunicorn(tmp_path: Path, app: str) -> Iterator[tuple[ServerProcess, httpx.Client, Path]]:
    """gunicorn with one sync worker serving ``app`` in multiprocess mode, once the worker
    has written its files: (server, client, the multiprocess directory)."""
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(CHILD_EXIT_CONF)
    port = free_port()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    with (
        run_server(_gunicorn(port, conf, workers=1, app=app), port, tmp_path, env=env, name="gunicorn") as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        eventually(lambda: _live_pids(multiproc) or None, 30, "the worker's files")
        yield server, client, multiproc


@pytest.mark.slow
def test_multiprocess_scrape_leaves_out_files_that_cannot_be_read_yet(tmp_path: Path) -> None:
    """prometheus-client creates a worker's file empty and sizes it a moment later; a scrape
    in that moment (or after the worker was killed in it) still answers, without that file."""
    with _multiprocess_gunicorn(tmp_path, "tests.metrics_apps:wsgi_app") as (server, client, multiproc):
        assert client.get("/control/fail").status_code == 200
        (multiproc / "gauge_livemax_999991.db").write_bytes(b"")  # just created
        (multiproc / "counter_999992.db").write_bytes(b"\x08\x00")  # shorter than its header
        (multiproc / "histogram_999993.db").write_bytes(b"")
        # Not empty but claiming more than it holds: left out as well, and logged once.
        (multiproc / "counter_999994.db").write_bytes(b"\x00\x10\x00\x00" + b"\x00" * 60)
        for _ in range(3):
            answer = client.get("/metrics")
            assert answer.status_code == 200, answer.text
            samples = parse(answer.text)
            assert value(samples, "healthprobe_check_status", check="flaky", status="fail") == 1.0
            assert value(samples, "healthprobe_check_runs_total", check="flaky", status="fail") == 1.0
            assert value(samples, "healthprobe_in_flight_requests") is not None
        filtered = client.get("/metrics", params={"name[]": "healthprobe_lifecycle_state"})
        assert filtered.status_code == 200
        assert value(parse(filtered.text), "healthprobe_lifecycle_state", state="started") == 1.0
        promtool_check_metrics(client.get("/metrics").text)
        log = server.output()
        assert log.count("counter_999994.db cannot be read") == 1, log
        assert "999991" not in log and "999992" not in log, log  # empty files hold nothing to report


@pytest.mark.slow
def test_multiprocess_in_flight_and_phase_only_with_a_shutdown_source(tmp_path: Path) -> None:
    with _multiprocess_gunicorn(tmp_path, "tests.metrics_apps:plain_wsgi_app") as (_, client, _dir):
        answer = client.get("/metrics")
        assert answer.status_code == 200, answer.text
        samples = parse(answer.text)
        assert value(samples, "healthprobe_check_status", check="flaky", status="pass") == 1.0
        assert not any(name.startswith(("healthprobe_in_flight", "healthprobe_shutdown")) for name, _ in samples)
        assert "healthprobe_in_flight_requests" not in answer.text


@pytest.mark.slow
def test_real_prometheus_scrapes_and_sees_a_check_fail(tmp_path: Path) -> None:
    app_port = free_port()
    env = {"APP_INTERVAL": "0.2"}
    with (
        run_server(_uvicorn(app_port), app_port, tmp_path, env=env, name="uvicorn") as app,
        prometheus_server(tmp_path, "healthprobe", app_port, ALERTS / "alerts.yml") as prom,
        httpx.Client(base_url=prom.url, timeout=10) as client,
    ):
        httpx.get(f"{app.url}/readyz", timeout=10)  # starts the background check

        def fail_indicator() -> str | None:
            answer = client.get(
                "/api/v1/query", params={"query": 'healthprobe_check_status{check="flaky",status="fail"}'}
            )
            results = answer.json()["data"]["result"]
            if len(results) != 1:
                return None
            assert results[0]["metric"]["job"] == "healthprobe"
            return str(results[0]["value"][1])

        assert eventually(lambda: fail_indicator() == "0" or None, 60, "the check passing in Prometheus")
        assert httpx.post(f"{app.url}/control/fail", timeout=10).status_code == 200
        assert eventually(lambda: fail_indicator() == "1" or None, 30, "the check failing in Prometheus")
        # The kubelet's next readiness probe fails, and Prometheus sees that answer too.
        assert httpx.get(f"{app.url}/readyz", timeout=10).status_code == 503

        def readiness_failing() -> bool | None:
            query = 'healthprobe_probe_status{probe="readiness",status="fail"}'
            answer = client.get("/api/v1/query", params={"query": query}).json()
            return [r["value"][1] for r in answer["data"]["result"]] == ["1"] or None

        eventually(readiness_failing, 30, "readiness failing in Prometheus")

        def rules_evaluated() -> list[dict[str, str]] | None:
            groups = client.get("/api/v1/rules").json()["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            if len(rules) != 4 or any(rule["lastEvaluation"].startswith("0001") for rule in rules):
                return None
            return rules

        # Every PromQL example of docs/metrics.md is valid and evaluates on real data.
        queries = doc_pages.blocks(doc_pages.page("metrics.md"), "promql")
        assert len(queries) >= 8
        for query in queries:
            answer = client.get("/api/v1/query", params={"query": query})
            assert answer.status_code == 200 and answer.json()["status"] == "success", (query, answer.text)
        failing = client.get("/api/v1/query", params={"query": queries[0]}).json()["data"]["result"]
        assert [result["metric"]["check"] for result in failing] == ["flaky"]

        rules = eventually(rules_evaluated, 30, "the alert rules evaluated")
        assert all(rule["health"] == "ok" for rule in rules), rules
        pending = {rule["name"]: rule["state"] for rule in rules}
        assert pending["HealthprobeCheckFailing"] == "pending"  # `for: 5m` has not passed


@pytest.mark.slow
def test_real_prometheus_scrapes_the_node_demo_and_sees_its_check_fail(tmp_path: Path) -> None:
    """Prometheus scrapes the running node_demo (ASGI flavour, its own /metrics) and sees
    the ``healthy-file`` check pass, then fail once the file the demo watches is deleted.
    A scrape never runs a check: the test asks /livez as the kubelet would, and
    Prometheus sees the result of those probes."""
    demo_port = free_port()
    healthy = tmp_path / "healthy"
    env = {"HOST": "127.0.0.1", "PORT": str(demo_port), "HEALTHY_FILE": str(healthy), "SHUTDOWN_DELAY": "0"}
    command = [PYTHON, "-m", "examples.node_demo.asgi_app"]
    with (
        run_server(command, demo_port, tmp_path, env=env, name="node-demo") as demo,
        prometheus_server(tmp_path, "node-demo", demo_port) as prom,
        httpx.Client(base_url=prom.url, timeout=10) as client,
        httpx.Client(base_url=demo.url, timeout=10) as kubelet,
    ):

        def healthy_file_is(status: str) -> dict[str, str] | None:
            """After a liveness probe: the check's status series if ``status`` is the one at 1."""
            kubelet.get("/livez")
            results = prometheus_query(client, 'healthprobe_check_status{job="node-demo",check="healthy-file"}')
            series = {r["metric"]["status"]: r["value"][1] for r in results}
            return series if series.get(status) == "1" else None

        assert kubelet.get("/startupz").status_code == 200
        passing = eventually(lambda: healthy_file_is("pass"), 60, "healthy-file passing in Prometheus", 0.5)
        assert passing == {"pass": "1", "warn": "0", "fail": "0"}
        # The coordinator's view comes with the demo's own metrics.
        phase = prometheus_query(client, 'healthprobe_shutdown_phase{job="node-demo"} == 1')
        assert [r["metric"]["phase"] for r in phase] == ["serving"]
        assert len(prometheus_query(client, 'healthprobe_in_flight_requests{job="node-demo"}')) == 1

        healthy.unlink()
        failing = eventually(lambda: healthy_file_is("fail"), 30, "healthy-file failing in Prometheus", 0.5)
        assert failing == {"pass": "0", "warn": "0", "fail": "1"}
        liveness = prometheus_query(client, 'healthprobe_probe_status{job="node-demo",probe="liveness",status="fail"}')
        assert [r["value"][1] for r in liveness] == ["1"]
        # The first PromQL example of docs/metrics.md (failing checks) names the check.
        queries = doc_pages.blocks(doc_pages.page("metrics.md"), "promql")
        assert [r["metric"]["check"] for r in prometheus_query(client, queries[0])] == ["healthy-file"]


@pytest.mark.slow
def test_wsgi_metrics_route_on_waitress_reads_in_flight_at_scrape_time(tmp_path: Path) -> None:
    port = free_port()
    args = [PYTHON, "-m", "waitress", f"--listen=127.0.0.1:{port}", "--threads=4", "tests.metrics_apps:wsgi_app"]
    with (
        run_server(args, port, tmp_path, name="waitress") as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        samples = parse(client.get("/metrics").text)
        assert value(samples, "healthprobe_in_flight_requests") == 0.0
        assert value(samples, "healthprobe_shutdown_phase", phase="serving") == 1.0
        assert value(samples, "healthprobe_shutdown_phase", phase="draining") == 0.0
        sleeper = threading.Thread(target=lambda: httpx.get(f"{server.url}/control/sleep?3", timeout=10))
        sleeper.start()
        try:
            # Read when scraped (one process, no mirror): no refresh interval to wait for.
            eventually(
                lambda: value(parse(client.get("/metrics").text), "healthprobe_in_flight_requests") == 1.0 or None,
                2.5,
                "1 request in flight",
            )
        finally:
            sleeper.join(10)
        assert value(parse(client.get("/metrics").text), "healthprobe_in_flight_requests") == 0.0
        malformed = [client.get(f"/metrics?name[]={bad}") for bad in ("%ff", "%zz", "%")]
        assert [(r.status_code, r.text) for r in malformed] == [(400, MALFORMED)] * 3
        only = client.get("/metrics?name%5B%5D=healthprobe_lifecycle_%73tate")
        assert list(parse(only.text)) == [
            ("healthprobe_lifecycle_state", frozenset({("state", state)})) for state in STATES
        ]
        assert client.get("/control/fail").text.isdigit()
        answer = client.get("/metrics")
        assert value(parse(answer.text), "healthprobe_check_status", check="flaky", status="fail") == 1.0
        assert "hunter2" not in answer.text
        assert client.get("/readyz").status_code == 503
        assert client.get("/elsewhere").text == "application"


def test_the_collector_reads_phase_and_in_flight_of_a_real_coordinator() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from healthprobe.prometheus import HealthCollector
    from healthprobe.shutdown import GracefulShutdown

    registry = HealthRegistry()
    registry.mark_started()
    shutdown = GracefulShutdown(registry, delay=30, signals=(signal.SIGUSR2,))
    collectors = CollectorRegistry()
    collectors.register(HealthCollector(registry, shutdown=shutdown))

    def sample(text: str, line_start: str) -> float:
        for line in text.splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no sample {line_start!r} in:\n{text}")

    shutdown.request_started()
    text = generate_latest(collectors).decode()
    assert sample(text, 'healthprobe_shutdown_phase{phase="serving"}') == 1
    assert sample(text, 'healthprobe_shutdown_phase{phase="delay"}') == 0
    assert sample(text, "healthprobe_in_flight_requests ") == 1

    shutdown.begin()
    text = generate_latest(collectors).decode()
    assert sample(text, 'healthprobe_shutdown_phase{phase="serving"}') == 0
    assert sample(text, 'healthprobe_shutdown_phase{phase="delay"}') == 1
    assert sample(text, 'healthprobe_lifecycle_state{state="draining"}') == 1
    shutdown.request_finished()
    assert sample(generate_latest(collectors).decode(), "healthprobe_in_flight_requests ") == 0
