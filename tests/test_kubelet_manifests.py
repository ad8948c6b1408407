"""Reading manifests for the simulator: kinds, defaults, validation, ports, and the command
line's answers to bad input."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from healthprobe.kubelet import (
    Container,
    ExecAction,
    HTTPGetAction,
    Probe,
    Simulation,
    SleepAction,
    TCPSocketAction,
    load_containers,
    pick_container,
)

from .support import PYTHON, ROOT

MANIFESTS = ROOT / "examples" / "node_demo" / "k8s"
#: The seed tutorial's container-startup-probe.yaml: a fragment of a container spec.
SEED_FRAGMENT = """\
ports:
- name: liveness-port
  containerPort: 8080
  hostPort: 8080
livenessProbe:
  httpGet:
    path: /healthz
    port: liveness-port
  failureThreshold: 1
  periodSeconds: 10
startupProbe:
  httpGet:
    path: /healthz
    port: liveness-port
  failureThreshold: 30
  periodSeconds: 10
"""


def test_the_node_demo_manifests_load_with_the_apis_defaults() -> None:
    """Probe defaults (Kubernetes API reference, Probe v1): initialDelaySeconds 0,
    periodSeconds 10, timeoutSeconds 1, successThreshold 1, failureThreshold 3; a pod's
    terminationGracePeriodSeconds 30 (pkg/apis/core/v1/defaults.go)."""
    (exec_pod,) = load_containers((MANIFESTS / "pod-liveness-exec.yaml").read_text())
    assert exec_pod.label == "liveness-exec/liveness"
    assert exec_pod.probes["liveness"] == Probe("liveness", ExecAction(("cat", "/tmp/healthy")), 5, 5, 1, 1, 3)
    assert exec_pod.termination_grace_period_seconds == 30
    (http_pod,) = load_containers((MANIFESTS / "pod-liveness-http.yaml").read_text())
    action = http_pod.probes["liveness"].action
    assert action == HTTPGetAction(8080, "/healthz", headers=(("Custom-Header", "Awesome"),))
    (tcp_pod,) = load_containers((MANIFESTS / "pod-tcp-probes.yaml").read_text())
    assert set(tcp_pod.probes) == {"readiness", "liveness"}
    assert tcp_pod.probes["readiness"].action == TCPSocketAction(8080)
    (startup_pod,) = load_containers((MANIFESTS / "pod-startup-probe.yaml").read_text())
    assert startup_pod.ports == {"liveness-port": 8080}
    assert startup_pod.probes["startup"].failure_threshold == 30


def test_a_deployment_gives_its_template_and_skips_the_service() -> None:
    (container,) = load_containers((MANIFESTS / "deployment.yaml").read_text())
    assert container.pod == "node-demo" and container.name == "node-demo"
    assert container.env == {"STARTUP_DELAY": "5", "GRACE_PERIOD": "35"}
    assert container.ports == {"http": 8080}
    assert container.termination_grace_period_seconds == 35
    assert [container.probes[k].action.port for k in ("startup", "readiness", "liveness")] == ["http"] * 3


def test_a_bare_container_spec_is_a_container() -> None:
    """The seed's container-startup-probe.yaml is a fragment of a container spec."""
    (container,) = load_containers(SEED_FRAGMENT)
    assert container.name == "container" and container.pod == ""
    assert set(container.probes) == {"startup", "liveness"}
    assert container.ports == {"liveness-port": 8080}


def test_workloads_cronjobs_and_prestop() -> None:
    text = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          terminationGracePeriodSeconds: 7
          containers:
          - name: job
            livenessProbe: {exec: {command: ["true"]}}
            lifecycle: {preStop: {sleep: {seconds: 3}}}
          - name: sidecar
---
kind: StatefulSet
metadata: {name: db}
spec:
  template:
    spec:
      containers:
      - name: db
        readinessProbe: {grpc: {port: 5000, service: db}, successThreshold: 2}
"""
    job, db = load_containers(text)
    assert job.label == "nightly/job" and job.pre_stop == SleepAction(3)
    assert job.termination_grace_period_seconds == 7
    assert db.probes["readiness"].success_threshold == 2
    with pytest.raises(ValueError, match="several containers with probes"):
        pick_container([job, db])
    assert pick_container([job, db], "db") is db
    assert pick_container([job, db], "nightly/job") is job
    with pytest.raises(
        ValueError, match=r"no container 'web' with probes in the manifest \(there are: nightly/job, db/db\)"
    ):
        pick_container([job, db], "web")


@pytest.mark.parametrize(
    ("probe", "message"),
    [
        ("livenessProbe: {exec: {command: [x]}, successThreshold: 2}", "livenessProbe.successThreshold: must be 1"),
        ("readinessProbe: {exec: {command: [x]}, tcpSocket: {port: 1}}", "expected exactly one of"),
        ("readinessProbe: {periodSeconds: 3}", "expected exactly one of exec, httpGet, tcpSocket, grpc, got 0"),
        ("readinessProbe: {exec: {command: [x]}, periodSeconds: 0}", "periodSeconds: expected a whole number >= 1"),
        ("readinessProbe: {exec: {command: [x]}, initialDelaySeconds: -1}", "initialDelaySeconds: expected a whole"),
        ("readinessProbe: {exec: {command: [x]}, timeoutSeconds: '1'}", "timeoutSeconds: expected a whole number"),
        ("readinessProbe: {exec: {command: [x]}, terminationGracePeriodSeconds: 3}", "only liveness and startup"),
        ("readinessProbe: {exec: {command: []}}", "exec.command: a non-empty list"),
        ("readinessProbe: {httpGet: {path: /}}", "httpGet.port: a port number or a port name"),
        ("readinessProbe: {httpGet: {port: 80, scheme: FTP}}", "httpGet.scheme: HTTP or HTTPS"),
    ],
)
def test_a_probe_that_the_api_would_refuse_is_refused(probe: str, message: str) -> None:
    """The API server's validation (pkg/apis/core/validation/validation.go: validateProbe): one handler,
    periodSeconds and timeoutSeconds >= 1, successThreshold 1 for liveness and startup."""
    text = f"kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - name: c\n    {probe}\n"
    with pytest.raises(ValueError, match="^" + 'pod "p" container "c" ' + ".*" + message.replace("(", r"\(")):
        load_containers(text)


def test_named_ports_and_the_port_map() -> None:
    """prober.go ``extractPort``: a name is looked up among the container's ports, else read as
    a number; the port map then points it at the local process."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        local = listener.getsockname()[1]
        probes = {
            "readiness": Probe("readiness", TCPSocketAction("http"), period_seconds=1),
            "liveness": Probe("liveness", TCPSocketAction("9090"), period_seconds=1),
        }
        container = Container("app", probes, ports={"http": 8080})
        by_number = Simulation(container, port_map={8080: local, "9090": local}, speed=10).run(duration=0.5)
        by_name = Simulation(container, port_map={"http": local, 9090: local}, speed=10).run(duration=0.5)
        unmapped = Simulation(
            Container("app", {"readiness": Probe("readiness", TCPSocketAction("metrics"), period_seconds=1)}),
            speed=10,
        ).run(duration=0.5)
    for outcome in (by_number, by_name):
        assert not outcome.of("Unhealthy") and outcome.of("Ready")
    assert unmapped.of("Unhealthy")[0].message == (
        "Readiness probe errored and resulted in unknown state: unable to find port 'metrics' in container app"
    )


def kubelet(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "healthprobe", "kubelet", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["no-such.yaml"], "cannot read no-such.yaml: No such file or directory"),
        (["-", "--speed", "0"], "argument --speed: expected a finite number > 0, got '0'"),
        (["-", "--port-map", "http"], "expected NAME=PORT"),
        (["-", "--terminate-at", "5"], "--terminate-at needs the container's process: give --cmd"),
        (["-", "--container", "web"], "no container 'web' with probes"),
    ],
)
def test_usage_errors_exit_2_on_one_line(args: list[str], error: str) -> None:
    manifest = (MANIFESTS / "pod-liveness-exec.yaml").read_text()
    done = kubelet(*args, stdin=manifest)
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and error in done.stderr, done.stderr


def test_bad_yaml_is_a_usage_error() -> None:
    done = kubelet("-", stdin="kind: Pod\nspec: [unclosed\n")
    assert done.returncode == 2 and "-: not YAML: " in done.stderr and len(done.stderr.splitlines()) == 1
    done = kubelet("-", stdin="kind: Service\nmetadata: {name: s}\n")
    assert done.returncode == 2 and "no container with a startupProbe, readinessProbe or livenessProbe" in done.stderr


def test_json_events_against_a_closed_port(tmp_path: Path) -> None:
    """End to end through the command: one JSON object a line; a liveness probe that keeps
    failing ends in Killing and exit status 1."""
    closed_port = _closed_port()
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n"
        "    livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}\n"
    )
    done = kubelet(str(manifest), "--port-map", f"8080={closed_port}", "--speed", "20", "--json")
    assert done.returncode == 1, done
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in events] == [
        "Started",
        "Ready",
        "Unhealthy",
        "Unhealthy",
        "Unhealthy",
        "Killing",
        "NotReady",
    ]
    assert set(events[2]) == {"t", "container", "probe", "result", "event", "message", "type"}
    assert (
        events[2]["message"] == f"Liveness probe failed: dial tcp 127.0.0.1:{closed_port}: connect: connection refused"
    )
    # Killing comes with the third failure, at any speed (the kubelet kills on that result).
    assert [round(e["t"]) for e in events[2:6]] == [0, 2, 4, 4]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_port_name_in_the_port_map_covers_its_number_and_a_stranger_is_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        local = listener.getsockname()[1]
        container = Container(
            "app", {"readiness": Probe("readiness", TCPSocketAction(8080), period_seconds=1)}, ports={"http": 8080}
        )
        outcome = Simulation(container, port_map={"http": local}, speed=10).run(duration=0.5)
    assert outcome.of("Ready") and not outcome.of("Unhealthy")
    with pytest.raises(ValueError, match=r"port_map: no port named 'web' in container app \(its named ports: http\)"):
        Simulation(container, port_map={"web": local})


@pytest.mark.parametrize(
    ("probe", "message"),
    [
        ("readinessProbe: {tcpSocket: {port: 99999}}", "tcpSocket.port: a port number is 1 to 65535, got 99999"),
        ("readinessProbe: {grpc: {port: 70000}}", "grpc.port: a port number is 1 to 65535, got 70000"),
    ],
)
def test_a_port_out_of_range_is_refused(probe: str, message: str) -> None:
    text = f"kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - name: c\n    {probe}\n"
    with pytest.raises(ValueError, match=message):
        load_containers(text)


def test_a_list_longer_than_any_manifest_has_is_refused() -> None:
    entries = ", ".join(["{}"] * 10_001)
    with pytest.raises(ValueError, match=r"spec\.containers: more than 10000 entries"):
        load_containers(f"kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers: [{entries}]\n")


def test_a_crashing_container_exits_1_and_its_restarts_are_bounded_by_the_duration(tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n"
        "    livenessProbe: {exec: {command: ['true']}, periodSeconds: 1}\n"
    )
    crash = f"{PYTHON} -c 'raise SystemExit(3)'"
    done = kubelet(str(manifest), "--cmd", crash, "--restart-cmd", crash, "--duration", "15", "--speed", "10", "--json")
    assert done.returncode == 1, done
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert next(e["message"] for e in events if e["event"] == "Exited") == "container c exited with code 3"
    assert max(e["t"] for e in events) <= 15.5  # the back-off does not outlast --duration
    assert [e["event"] for e in events].count("BackOff") >= 1


def test_sigterm_to_the_simulator_stops_the_containers_processes(tmp_path: Path) -> None:
    """The simulator's own SIGTERM (or SIGHUP) stops its container's process and every process
    of its session, even one that ignores SIGTERM; exit status 128 + 15."""
    import os
    import signal
    import time

    pids = tmp_path / "pids"
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(600)\n"
    )
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n"
        "    livenessProbe: {exec: {command: ['true']}, periodSeconds: 1}\n"
    )
    simulator = subprocess.Popen(
        [PYTHON, "-m", "healthprobe", "kubelet", str(manifest), "--cmd", f"{PYTHON} {script}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while not (pids.exists() and pids.read_text().count(" ") == 1):
            assert time.monotonic() < deadline and simulator.poll() is None
            time.sleep(0.05)
        simulator.send_signal(signal.SIGTERM)
        assert simulator.wait(30) == 128 + signal.SIGTERM
    finally:
        if simulator.poll() is None:
            simulator.kill()
    for pid in map(int, pids.read_text().split()):
        with pytest.raises(ProcessLookupError):
            for _ in range(100):  # a zombie may take a moment to be reaped by init
                os.kill(pid, 0)
                if _state(pid) in ("Z", "X"):
                    raise ProcessLookupError
                time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"
