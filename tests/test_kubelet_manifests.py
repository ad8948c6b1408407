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
SEED_FRAGMENT = ROOT.parent / "shared" / "seed" / "container-startup-probe.yaml"


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


@pytest.mark.skipif(not SEED_FRAGMENT.exists(), reason="the seed's files are not next to this clone")
def test_a_bare_container_spec_is_a_container() -> None:
    """The seed's container-startup-probe.yaml is a fragment of a container spec."""
    (container,) = load_containers(SEED_FRAGMENT.read_text())
    assert container.name == "container" and container.pod == ""
    assert set(container.probes) == {"startup", "liveness"}


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
    assert [round(e["t"]) for e in events[2:6]] == [0, 2, 4, 4]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
