"""The standalone probe server (healthprobe.serve) and the liveness checks for wedged
processes, seen from outside through real HTTP: a busy sync app, a blocked event loop, a
worker that stops beating."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import healthprobe
from healthprobe import HealthEndpoints, HealthRegistry, Status, checks
from healthprobe.shutdown import REPEAT_WINDOW, GracefulShutdown

from .support import (
    PYTHON,
    ROOT,
    assert_metrics_route_rules,
    free_port,
    promtool_check_metrics,
    run_server,
    sample_value,
    samples,
    started_registry,
    wait_for_port,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def registry() -> HealthRegistry:
    return started_registry(default_cache_ttl=0.0)


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2.0)
    except httpx.ConnectError:
        return True
    return False


def check_entry(response: httpx.Response, name: str) -> dict[str, Any]:
    entry = response.json()["checks"][name][0]
    assert isinstance(entry, dict)
    return entry


# -- the server itself -------------------------------------------------------------------------


def test_a_forked_child_closes_its_copy_and_the_parent_keeps_serving(registry: HealthRegistry) -> None:
    """ProbeServer.close_after_fork, as a Celery prefork child calls it: the port stays the
    serving process's."""
    with healthprobe.serve(registry, "127.0.0.1", 0) as server:
        pid = os.fork()
        if pid == 0:  # the child: close its copy, and leave without running anything else
            code = 1
            try:
                server.close_after_fork()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert httpx.get(f"{server.url}/livez", timeout=5.0).text == "ok\n"


def test_serve_answers_probes_and_stops(registry: HealthRegistry) -> None:
    hb = checks.heartbeat(60.0)
    registry.add_check("worker", hb, probes=["liveness"])
    threads = threading.active_count()
    with healthprobe.serve(registry, "127.0.0.1", 0) as server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        assert server.running
        with httpx.Client(base_url=server.url, timeout=5.0) as client:
            assert client.get("/livez").text == "ok\n"
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
            assert client.get("/elsewhere").status_code == 404
            head = client.head("/livez")
            assert head.status_code == 200 and head.content == b""
            assert client.post("/livez").status_code == 405
            entry = check_entry(client.get("/livez", params={"format": "json"}), "worker")
            assert entry["status"] == "pass" and entry["observedUnit"] == "s"
    assert not server.running
    assert refused(f"{server.url}/livez")
    server.stop()  # idempotent
    deadline = time.monotonic() + 5
    while threading.active_count() > threads + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads + 1  # + the registry's private check loop


def test_serve_stops_when_the_registry_stops(registry: HealthRegistry) -> None:
    server = healthprobe.serve(registry, "127.0.0.1", 0)
    try:
        registry.begin_drain()
        answer = httpx.get(f"{server.url}/readyz", params={"verbose": ""}, timeout=5.0)
        assert answer.status_code == 503 and "draining" in answer.text  # still answering
        assert httpx.get(f"{server.url}/livez", timeout=5.0).status_code == 200
        registry.mark_stopped()
        assert not server.running
        assert refused(f"{server.url}/livez")
    finally:
        server.stop()


def test_serve_on_a_busy_port_raises_oserror(registry: HealthRegistry) -> None:
    with healthprobe.serve(registry, "127.0.0.1", 0) as server, pytest.raises(OSError):
        healthprobe.serve(registry, "127.0.0.1", server.port)


def test_serve_ipv6_loopback(registry: HealthRegistry) -> None:
    if not socket.has_ipv6:
        return
    try:
        server = healthprobe.serve(registry, "::1", 0)
    except OSError:  # no IPv6 on this host's loopback: nothing to prove here
        return
    with server:
        assert server.url.startswith("http://[::1]:")
        assert httpx.get(f"{server.url}/livez", timeout=5.0).status_code == 200


# -- metrics on the probe port -----------------------------------------------------------------


def test_serve_metrics_on_the_probe_port(registry: HealthRegistry) -> None:
    registry.add_check("database", lambda: True, probes=["readiness"])
    registry.add_check("cache", lambda: False, critical=False)
    with (
        healthprobe.serve(registry, "127.0.0.1", 0, metrics=True) as server,
        httpx.Client(base_url=server.url, timeout=5.0) as client,
    ):
        assert server.metrics_url == f"{server.url}/metrics"
        assert client.get("/readyz").status_code == 200  # probes as before, on the same port
        answer = client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert answer.headers["cache-control"] == "no-store"
        text = answer.text
        found = samples(text)
        assert sample_value(found, "healthprobe_check_status", check="database", status="pass") == 1.0
        assert sample_value(found, "healthprobe_check_status", check="cache", status="fail") == 1.0
        assert sample_value(found, "healthprobe_probe_status", probe="readiness", status="warn") == 1.0
        assert sample_value(found, "healthprobe_lifecycle_state", state="started") == 1.0
        assert sample_value(found, "healthprobe_in_flight_requests") is None  # no shutdown source given
        assert any(name.startswith("process_") or name == "python_info" for name, _ in found)
        promtool_check_metrics(text)

        assert_metrics_route_rules(client)
        assert client.get("/metrics?" + "&".join(["a=1"] * 65)).status_code == 400
        only = client.get("/metrics", params={"name[]": "healthprobe_lifecycle_state"})
        assert {name for name, _ in samples(only.text)} == {"healthprobe_lifecycle_state"}
        assert client.get("/metrics/").status_code == 404
        assert client.get("/readyz", params={"bogus": "1"}).status_code == 400  # probe rules unchanged


def test_serve_without_metrics_has_no_metrics_path(registry: HealthRegistry) -> None:
    with healthprobe.serve(registry, "127.0.0.1", 0) as server:
        assert server.metrics_url is None
        assert httpx.get(f"{server.url}/metrics", timeout=5.0).status_code == 404


def test_serve_metrics_on_another_path_and_from_any_source(registry: HealthRegistry) -> None:
    class Source:
        calls: list[tuple[str | None, tuple[str, ...]]] = []

        def expose(self, accept: str | None, names: Sequence[str] = ()) -> tuple[str, bytes]:
            self.calls.append((accept, tuple(names)))
            if "broken" in names:
                raise RuntimeError("secret detail")
            return (
                "text/plain; version=0.0.4; charset=utf-8",
                b"# HELP jobs_done_total Jobs done.\n# TYPE jobs_done_total counter\njobs_done_total 3\n",
            )

    source = Source()
    with (
        healthprobe.serve(registry, "127.0.0.1", 0, metrics=source, metrics_path="/internal/metrics") as server,
        httpx.Client(base_url=server.url, timeout=5.0) as client,
    ):
        assert server.metrics_url == f"{server.url}/internal/metrics"
        assert client.get("/metrics").status_code == 404
        answer = client.get("/internal/metrics", params={"name[]": "jobs_done_total"}, headers={"accept": "*/*"})
        assert answer.status_code == 200 and sample_value(samples(answer.text), "jobs_done_total") == 3.0
        assert source.calls[-1] == ("*/*", ("jobs_done_total",))
        promtool_check_metrics(answer.text)
        broken = client.get("/internal/metrics", params={"name[]": "broken"})
        assert broken.status_code == 503 and "secret" not in broken.text
    with pytest.raises(ValueError, match="also a probe path"):
        healthprobe.serve(registry, "127.0.0.1", 0, metrics=True, metrics_path="/readyz")


def test_serve_metrics_show_the_shutdown_coordinator(registry: HealthRegistry) -> None:
    shutdown = GracefulShutdown(registry, delay=0.0, drain_timeout=5.0)
    server = healthprobe.serve(registry, "127.0.0.1", 0, metrics=True, shutdown=shutdown)
    try:
        assert server.metrics_url is not None
        with httpx.Client(timeout=5.0) as client:
            text = client.get(server.metrics_url).text
            found = samples(text)
            assert sample_value(found, "healthprobe_in_flight_requests") == 0.0  # probe requests are not counted
            assert sample_value(found, "healthprobe_shutdown_phase", phase="serving") == 1.0
            assert {labels for name, labels in found if name == "healthprobe_shutdown_phase"} == {
                frozenset({("phase", phase)}) for phase in GracefulShutdown.phases
            }
            promtool_check_metrics(text)
            shutdown.request_started()  # a worker's job, say
            assert sample_value(samples(client.get(server.metrics_url).text), "healthprobe_in_flight_requests") == 1.0
            shutdown.begin()  # readiness fails; the coordinator waits for the job
            deadline = time.monotonic() + 5
            while shutdown.phase != "drain" and time.monotonic() < deadline:
                time.sleep(0.02)
            found = samples(client.get(server.metrics_url).text)
            assert sample_value(found, "healthprobe_shutdown_phase", phase="drain") == 1.0
            assert sample_value(found, "healthprobe_lifecycle_state", state="draining") == 1.0
            assert client.get(f"{server.url}/readyz").status_code == 503
            shutdown.request_finished()
            assert sample_value(samples(client.get(server.metrics_url).text), "healthprobe_in_flight_requests") == 0.0
        assert shutdown.finish() == 0
        assert not server.running  # stopped with the registry
    finally:
        server.stop()
        shutdown.uninstall()


def test_serve_shutdown_only_feeds_metrics_true(registry: HealthRegistry) -> None:
    shutdown = GracefulShutdown(registry, delay=0.0)

    class Source:
        def expose(self, accept: str | None, names: Sequence[str] = ()) -> tuple[str, bytes]:
            return "text/plain", b""

    for metrics in (False, Source()):
        with pytest.raises(ValueError, match="metrics=True"):
            healthprobe.serve(registry, "127.0.0.1", 0, metrics=metrics, shutdown=shutdown)
    with pytest.raises(TypeError, match="in_flight and phase"):
        healthprobe.serve(registry, "127.0.0.1", 0, metrics=True, shutdown=object())  # type: ignore[arg-type]


def test_serve_configured_endpoints_serve_their_own_metrics(registry: HealthRegistry) -> None:
    endpoints = HealthEndpoints(registry, paths={"/alive": "liveness"}, metrics=True, metrics_path="/m")
    with healthprobe.serve(endpoints, "127.0.0.1", 0) as server:
        assert server.endpoints is endpoints and server.metrics_url == f"{server.url}/m"
        assert httpx.get(f"{server.url}/alive", timeout=5.0).status_code == 200
        found = samples(httpx.get(server.metrics_url, timeout=5.0).text)
        assert sample_value(found, "healthprobe_lifecycle_state", state="started")


# -- heartbeat ---------------------------------------------------------------------------------


def test_heartbeat_fails_after_max_interval_and_recovers_on_beat() -> None:
    hb = checks.heartbeat(0.3)
    assert hb().status is Status.PASS
    time.sleep(0.6)
    stale = hb()
    assert stale.status is Status.FAIL and stale.observed_unit == "s"
    assert isinstance(stale.observed_value, float) and stale.observed_value >= 0.3
    hb.beat()
    assert hb().status is Status.PASS and hb.beats == 1
    with pytest.raises(ValueError):
        checks.heartbeat(0)


def test_worker_that_stops_beating_fails_liveness(tmp_path: Path) -> None:
    port = free_port()
    env = {"PROBE_PORT": str(port), "PROBE_HOST": "127.0.0.1", "WORKER_MAX_INTERVAL": "1.0"}
    worker_args = [PYTHON, "-m", "examples.worker"]
    with (
        run_server(worker_args, port, tmp_path, env=env, name="worker") as worker,
        httpx.Client(base_url=worker.url, timeout=5.0) as client,
    ):
        time.sleep(1.5)  # longer than max_interval: a healthy loop keeps passing
        assert client.get("/livez").status_code == 200, worker.output()
        assert client.get("/readyz").status_code == 200
        worker.signal(signal.SIGUSR1)  # the next job hangs forever
        wedged_at = time.monotonic()
        answer = client.get("/livez", params={"format": "json"})
        while answer.status_code == 200 and time.monotonic() - wedged_at < 1.0 + 5.0:
            time.sleep(0.1)
            answer = client.get("/livez", params={"format": "json"})
        assert answer.status_code == 503, worker.output()
        entry = check_entry(answer, "worker")
        assert entry["status"] == "fail" and entry["observedUnit"] == "s"
        assert entry["observedValue"] > 1.0
        assert client.get("/readyz").status_code == 200  # readiness is not liveness


def test_worker_drains_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {"PROBE_PORT": str(port), "PROBE_HOST": "127.0.0.1", "JOB_SECONDS": "0.5"}
    with run_server([PYTHON, "-m", "examples.worker"], port, tmp_path, env=env, name="worker") as worker:
        assert httpx.get(f"{worker.url}/readyz", timeout=5.0).status_code == 200
        time.sleep(0.5)
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0, worker.output()
        log = worker.output()
        # GracefulShutdown ran the sequence: readiness failed, the loop ended, the hook ran.
        assert "shutdown: SIGTERM received" in log and "-> draining" in log, log
        assert "stopped after" in log
        assert "hook 'release_jobs' finished" in log and "exit code 0" in log, log
        assert refused(f"{worker.url}/livez")


def test_worker_serves_metrics_on_its_probe_port(tmp_path: Path) -> None:
    """examples/worker: one port for probes and metrics; the job being worked on is in
    flight, and the shutdown phase follows SIGTERM until the server stops."""
    port = free_port()
    env = {"PROBE_PORT": str(port), "PROBE_HOST": "127.0.0.1", "JOB_SECONDS": "0.5"}
    with (
        run_server([PYTHON, "-m", "examples.worker"], port, tmp_path, env=env, name="worker") as worker,
        httpx.Client(base_url=worker.url, timeout=5.0) as client,
    ):
        assert client.get("/livez").status_code == 200
        assert f"metrics on {worker.url}/metrics" in worker.output()
        deadline = time.monotonic() + 10
        text = client.get("/metrics").text
        while sample_value(samples(text), "healthprobe_in_flight_requests") != 1.0:  # a job is being worked on
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
            text = client.get("/metrics").text
        found = samples(text)
        assert sample_value(found, "healthprobe_check_status", check="worker", status="pass") == 1.0
        assert sample_value(found, "healthprobe_probe_status", probe="liveness", status="pass") == 1.0
        assert sample_value(found, "healthprobe_shutdown_phase", phase="serving") == 1.0
        assert sample_value(found, "healthprobe_lifecycle_state", state="started") == 1.0
        promtool_check_metrics(text)
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0, worker.output()
        assert refused(f"{worker.url}/metrics")


@pytest.mark.parametrize(
    "env",
    [{"PROBE_PORT": "abc"}, {"PROBE_PORT": "70000"}, {"WORKER_MAX_INTERVAL": "0"}, {"JOB_SECONDS": "soon"}],
    ids=lambda env: next(iter(env)) + "=" + next(iter(env.values())),
)
def test_worker_bad_settings_exit_2(env: dict[str, str]) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "examples.worker"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PROBE_HOST": "127.0.0.1", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ERROR" in lines[0] and next(iter(env)) in lines[0], result.stderr


def test_worker_busy_probe_port_exits_2() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = subprocess.run(
            [PYTHON, "-m", "examples.worker"],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PROBE_HOST": "127.0.0.1", "PROBE_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "(PROBE_HOST, PROBE_PORT): [Errno" in lines[0], result.stderr


def test_wedged_worker_does_not_exit_0_on_sigterm(tmp_path: Path) -> None:
    """docs/probe-server.md: with its job loop wedged, SIGTERM fails readiness but cannot
    finish the loop, so the worker never exits 0; a second SIGTERM ends it at once."""
    port = free_port()
    env = {"PROBE_PORT": str(port), "PROBE_HOST": "127.0.0.1", "WORKER_MAX_INTERVAL": "1.0"}
    with run_server([PYTHON, "-m", "examples.worker"], port, tmp_path, env=env, name="worker") as worker:
        with httpx.Client(base_url=worker.url, timeout=5.0) as client:
            assert client.get("/readyz").status_code == 200
            worker.signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while "stuck" not in worker.output():
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.05)
            worker.signal(signal.SIGTERM)
            while "-> draining" not in worker.output():
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.05)
            assert client.get("/readyz").status_code == 503
            time.sleep(2.0)  # well past what an un-wedged loop takes to stop (one job)
            assert worker.proc.poll() != 0, worker.output()
        assert "stopped after" not in worker.output()
        if worker.proc.poll() is None:
            worker.signal(signal.SIGTERM)
            assert worker.wait(timeout=10) == 128 + signal.SIGTERM, worker.output()


def test_worker_second_sigterm_exits_at_once(tmp_path: Path) -> None:
    port = free_port()
    env = {"PROBE_PORT": str(port), "PROBE_HOST": "127.0.0.1", "JOB_SECONDS": "30"}
    with run_server([PYTHON, "-m", "examples.worker"], port, tmp_path, env=env, name="worker") as worker:
        with httpx.Client(base_url=worker.url, timeout=5.0) as client:
            assert client.get("/readyz").status_code == 200
            time.sleep(1.0)  # a 30 s job has begun: the first signal waits for it
            worker.signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while "-> draining" not in worker.output():
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.05)
            assert client.get("/readyz").status_code == 503
            assert client.get("/livez").status_code == 200
        time.sleep(REPEAT_WINDOW + 0.5)  # a signal within the window would be a copy of the first
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 128 + signal.SIGTERM, worker.output()
        assert "second signal SIGTERM" in worker.output()
        assert "stopped after" not in worker.output()


# -- event loop lag ----------------------------------------------------------------------------


@pytest.fixture
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_event_loop_lag_in_process(registry: HealthRegistry, loop_thread: asyncio.AbstractEventLoop) -> None:
    lag = checks.event_loop_lag(0.5, interval=0.05)
    assert lag().status is Status.WARN  # sampler not running yet
    registry.add_check("event-loop", lag, probes=["liveness"])
    lag.start(loop_thread)
    deadline = time.monotonic() + 5
    while lag.lag is None and time.monotonic() < deadline:
        time.sleep(0.02)
    with (
        healthprobe.serve(registry, "127.0.0.1", 0) as server,
        httpx.Client(base_url=server.url, timeout=5.0) as client,
    ):
        assert client.get("/livez").status_code == 200
        loop_thread.call_soon_threadsafe(time.sleep, 2.5)
        time.sleep(1.2)
        blocked = client.get("/livez", params={"format": "json"})
        assert blocked.status_code == 503
        entry = check_entry(blocked, "event-loop")
        assert entry["observedUnit"] == "s" and entry["observedValue"] > 0.5
        deadline = time.monotonic() + 10
        while client.get("/livez").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/livez").status_code == 200
    lag.stop()
    deadline = time.monotonic() + 5
    while lag().status is not Status.WARN and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lag().status is Status.WARN


def test_event_loop_lag_sampler_runs_under_trio() -> None:
    lag = checks.event_loop_lag(0.3, interval=0.05)
    seen: list[Status] = []

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(lag.run)
            await anyio.sleep(0.3)
            seen.append(await anyio.to_thread.run_sync(lambda: lag().status))
            watcher = threading.Timer(0.8, lambda: seen.append(lag().status))
            watcher.start()
            time.sleep(1.2)  # noqa: ASYNC251 - blocks trio's loop on purpose
            watcher.join()
            await anyio.sleep(0.3)
            seen.append(lag().status)
            group.cancel_scope.cancel()

    anyio.run(main, backend="trio")
    assert seen == [Status.PASS, Status.FAIL, Status.PASS]


@pytest.mark.slow
def test_blocked_asgi_loop_fails_liveness_seen_from_probe_server(tmp_path: Path) -> None:
    app_port, probe_port = free_port(), free_port()
    env = {"PROBE_PORT": str(probe_port), "BLOCK_SECONDS": "4", "MAX_LAG": "0.5"}
    args = [PYTHON, "-m", "uvicorn", "--factory", "tests.probe_apps:asgi_app", "--port", str(app_port),
            "--host", "127.0.0.1", "--log-level", "info", "--no-access-log"]  # fmt: skip
    with run_server(args, app_port, tmp_path, env=env, name="uvicorn") as app:
        wait_for_port(probe_port, process=app.proc)
        probes = httpx.Client(base_url=f"http://127.0.0.1:{probe_port}", timeout=5.0)
        with probes:
            assert probes.get("/livez").status_code == 200, app.output()
            assert httpx.get(f"{app.url}/livez", timeout=5.0).status_code == 200  # the app's own path too
            blocker = threading.Thread(target=lambda: httpx.get(f"{app.url}/block", timeout=15.0))
            blocker.start()
            time.sleep(1.5)
            # The loop is blocked: the app's own probe path cannot answer ...
            with pytest.raises(httpx.TimeoutException):
                httpx.get(f"{app.url}/livez", timeout=1.0)
            # ... but the probe server does, and reports the lag it measured from outside.
            answer = probes.get("/livez", params={"format": "json"})
            assert answer.status_code == 503, app.output()
            entry = check_entry(answer, "event-loop")
            assert entry["status"] == "fail" and entry["observedUnit"] == "s"
            assert entry["observedValue"] > 0.5
            blocker.join(20)
            deadline = time.monotonic() + 10
            while probes.get("/livez").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert probes.get("/livez").status_code == 200
        app.signal(signal.SIGTERM)
        # uvicorn re-raises the signal it shut down for, after a clean shutdown.
        assert app.wait(timeout=15) in (0, -signal.SIGTERM), app.output()
        assert "Application shutdown complete" in app.output()
        assert "Traceback" not in app.output()
        assert refused(f"http://127.0.0.1:{probe_port}/livez")  # stopped with the registry


# -- a sync app with every worker busy ---------------------------------------------------------


@pytest.mark.slow
def test_busy_sync_workers_still_get_probe_answers(tmp_path: Path) -> None:
    app_port, probe_port = free_port(), free_port()
    env = {"PROBE_PORT": str(probe_port), "PROBE_APP": "sync", "WORK_SECONDS": "10"}
    args = [PYTHON, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync", "--timeout", "60",
            "--bind", f"127.0.0.1:{app_port}", "tests.probe_apps:sync_app"]  # fmt: skip
    with run_server(args, app_port, tmp_path, env=env, name="gunicorn") as app:
        wait_for_port(probe_port, process=app.proc)
        assert httpx.get(f"{app.url}/", timeout=5.0).text == "hello\n"
        started = time.monotonic()
        done: list[float] = []

        def work() -> None:
            httpx.get(f"{app.url}/work", timeout=30.0)
            done.append(time.monotonic() - started)

        worker = threading.Thread(target=work)
        worker.start()
        time.sleep(0.5)
        # The only worker is busy: the app itself does not answer ...
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f"{app.url}/", timeout=1.0)
        # ... the probe server answers every probe, promptly, for the whole 10 s.
        answered = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{probe_port}", timeout=2.0) as probes:
            while not done and time.monotonic() - started < 20:
                for path in ("/livez", "/readyz"):
                    assert probes.get(path).status_code == 200, app.output()
                    answered += 1
                time.sleep(0.25)
        worker.join(20)
        assert done and done[0] >= 9.5  # the worker really was busy for 10 s
        assert answered >= 20
        assert os.path.exists(app.log_path)
