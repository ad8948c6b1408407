"""The node demo's manifests (examples/node_demo/k8s) replayed by the simulator against the
demo itself: the event sequences a kubelet produces, timings within one period.

The demo is started by the simulator (``cmd``), as the kubelet starts the container, and
restarted by it (``restart_cmd``) where the manifest's story includes a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from healthprobe.kubelet import Simulation, load_containers

from .support import PYTHON, ROOT, free_port

pytestmark = pytest.mark.slow

MANIFESTS = ROOT / "examples" / "node_demo" / "k8s"
DEMO = [PYTHON, "-m", "examples.node_demo.asgi_app"]


def demo_env(port: int, tmp_path: Path, **more: str) -> dict[str, str]:
    return {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "HEALTHY_FILE": str(tmp_path / "healthy"),
        "PYTHONPATH": str(ROOT),
        **more,
    }


def container(name: str) -> Any:
    (found,) = load_containers((MANIFESTS / name).read_text())
    return found


@contextlib.contextmanager
def the_healthy_file() -> Iterator[Path]:
    """/tmp/healthy, which the exec probe reads as written in the manifest, to this test alone."""
    with open("/tmp/healthprobe-tests-healthy.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = Path("/tmp/healthy")
        path.unlink(missing_ok=True)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)


def test_exec_liveness_kills_after_three_failures_and_the_restart_touches_the_file_again(tmp_path: Path) -> None:
    """pod-liveness-exec.yaml: ``cat /tmp/healthy`` every 5 s after 5 s. Once the file is
    removed, three ``Unhealthy`` events a period apart, then ``Killing``; the restarted demo
    touches the file again and the probe passes."""
    port = free_port()
    env = demo_env(port, tmp_path)
    del env["HEALTHY_FILE"]  # the demo's default, /tmp/healthy, is what the probe reads
    with the_healthy_file() as healthy:
        sim = Simulation(
            container("pod-liveness-exec.yaml"),
            cmd=DEMO,
            restart_cmd=DEMO,
            env=env,
            speed=5,
            verbose=True,
            output=subprocess.DEVNULL,
        ).start(duration=120)
        try:
            passed = _wait_for_result(sim, "liveness", "success")
            assert passed.t >= 5  # not before initialDelaySeconds
            healthy.unlink()
            killing = sim.wait_for("Killing", timeout=30)
            index = sim.events.index(killing)
            restarted = sim.wait_for("Started", timeout=30, after=index)
            again = _wait_for_result(sim, "liveness", "success", after=sim.events.index(restarted))
        finally:
            sim.stop()
            outcome = sim.wait(60)
    failures = [e for e in outcome.of("Unhealthy") if e.t <= killing.t]
    assert len(failures) == 3
    assert failures[0].message == "Liveness probe failed: cat: /tmp/healthy: No such file or directory\n"
    assert [round(b.t - a.t) for a, b in itertools.pairwise(failures)] == [5, 5]  # a period apart
    assert killing.t - failures[2].t < 1
    assert killing.message == "Container liveness failed liveness probe, will be restarted"
    assert again.t >= restarted.t + 5
    assert outcome.killed


def test_http_liveness_after_shutdown_fails_three_times_then_killing(tmp_path: Path) -> None:
    """pod-liveness-http.yaml: ``GET /healthz`` every 3 s after 3 s; after ``GET /shutdown``
    it answers 500: "Liveness probe failed: HTTP probe failed with statuscode: 500" three
    times, then ``Killing``."""
    port = free_port()
    sim = Simulation(
        container("pod-liveness-http.yaml"),
        cmd=DEMO,
        env=demo_env(port, tmp_path),
        port_map={8080: port},
        speed=3,
        verbose=True,
        output=subprocess.DEVNULL,
    ).start(duration=90)
    try:
        _wait_for_result(sim, "liveness", "success")
        assert httpx.get(f"http://127.0.0.1:{port}/shutdown").status_code == 200
        killing = sim.wait_for("Killing", timeout=30)
    finally:
        sim.stop()
        outcome = sim.wait(60)
    failures = outcome.of("Unhealthy")
    assert [e.message for e in failures] == ["Liveness probe failed: HTTP probe failed with statuscode: 500"] * 3
    assert 6 - 3 <= killing.t - failures[0].t < 6 + 3  # two periods after the first, within one
    assert outcome.of("Probed", "liveness")[0].t >= 3


def kubelet_cli(manifest: str, *args: str, timeout: float = 120) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run(
        [PYTHON, "-m", "healthprobe", "kubelet", str(MANIFESTS / manifest), "--json", "--verbose", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert done.stdout, done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def demo_args(port: int, tmp_path: Path, **more: str) -> list[str]:
    args = ["--cmd", " ".join(DEMO)]
    for name, value in demo_env(port, tmp_path, **more).items():
        args += ["--env", f"{name}={value}"]
    return args


def test_the_startup_probe_gates_liveness(tmp_path: Path) -> None:
    """pod-startup-probe.yaml: startup and liveness on /healthz every 10 s. The first startup
    probe meets a process still starting (refused); liveness runs only once startup passed."""
    port = free_port()
    code, events = kubelet_cli(
        "pod-startup-probe.yaml",
        "--port-map",
        f"liveness-port={port}",
        "--speed",
        "10",
        "--duration",
        "45",
        *demo_args(port, tmp_path),
    )
    assert code == 0, events
    startup = [e for e in events if e["probe"] == "startup" and e["event"] == "Probed"]
    assert startup[0]["result"] == "failure" and "connect: connection refused" in startup[0]["message"]
    assert startup[-1]["result"] == "success"
    started = next(e for e in events if e["event"] == "StartupSucceeded")
    liveness = [e for e in events if e["probe"] == "liveness" and e["event"] == "Probed"]
    assert liveness and all(e["t"] > started["t"] for e in liveness)
    assert liveness[0]["t"] < started["t"] + 10
    assert all(e["result"] == "success" for e in liveness)
    assert not any(e["event"] == "Killing" for e in events)


def test_tcp_probes_start_on_the_tick_after_the_initial_delay(tmp_path: Path) -> None:
    """pod-tcp-probes.yaml: both probes every 10 s after 15 s, so the first ones at 20 s (the
    first tick at or after the delay), and they pass."""
    port = free_port()
    code, events = kubelet_cli(
        "pod-tcp-probes.yaml",
        "--port-map",
        f"8080={port}",
        "--speed",
        "10",
        "--duration",
        "35",
        *demo_args(port, tmp_path),
    )
    assert code == 0, events
    for kind in ("readiness", "liveness"):
        times = [e["t"] for e in events if e["probe"] == kind and e["event"] == "Probed"]
        assert 20 <= times[0] < 21 and 30 <= times[1] < 31, times
    ready = next(e for e in events if e["event"] == "Ready")
    assert 20 <= ready["t"] < 21
    assert not any(e["event"] == "Unhealthy" for e in events)


def test_deployment_terminates_inside_its_grace_period(tmp_path: Path) -> None:
    """deployment.yaml: /startupz fails while STARTUP_DELAY (5 s, from the manifest's env)
    lasts; then ready. At the deletion, liveness stops, readiness goes on and fails (the demo
    answers 503 from SIGTERM on, through its SHUTDOWN_DELAY), and the demo exits 0 well
    inside terminationGracePeriodSeconds (35)."""
    port = free_port()
    code, events = kubelet_cli(
        "deployment.yaml",
        "--port-map",
        f"http={port}",
        "--speed",
        "2",
        "--terminate-at",
        "15",  # between two readiness ticks (every 2 s)
        *demo_args(port, tmp_path, SHUTDOWN_DELAY="3"),
    )
    assert code == 0, events
    kinds = [e["event"] for e in events if e["event"] not in ("Probed", "Unhealthy")]
    assert kinds == ["Started", "StartupSucceeded", "Ready", "Killing", "Signalled", "NotReady", "Exited", "Summary"], (
        kinds
    )
    started = next(e for e in events if e["event"] == "StartupSucceeded")
    assert 10 <= started["t"] < 10 + 2 + 4  # 5 s real at speed 2, then the next 2 s tick (+ start-up)
    deleted = next(e for e in events if e["event"] == "Killing")
    assert deleted["message"] == "Stopping container node-demo"
    assert not [
        e for e in events if e["probe"] == "liveness" and e["event"] == "Probed" and e["t"] > deleted["t"] + 0.5
    ]
    during = [e for e in events if e["probe"] == "readiness" and e["event"] == "Probed" and e["t"] > deleted["t"]]
    assert during and during[0]["result"] == "failure"
    exited = next(e for e in events if e["event"] == "Exited")
    assert exited["result"] == "success" and "exited with code 0" in exited["message"]


def _wait_for_result(sim: Simulation, probe: str, result: str, after: int = 0) -> Any:
    """The first ``Probed`` event of ``probe`` with ``result`` from index ``after`` on."""
    while True:
        event = sim.wait_for("Probed", probe=probe, timeout=30, after=after)
        if event.result == result:
            return event
        after = sim.events.index(event) + 1
