"""The node_demo's Dockerfile and Kubernetes manifests: well-formed objects whose probes
match what the demo serves, the seed's four probe set-ups kept, and every probe answered
by the running demo (both flavours) the way the kubelet would ask it."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from examples.node_demo import common

from tests.support import PYTHON, ROOT, free_port, http_client, run_server

DEMO = ROOT / "examples" / "node_demo"
MANIFESTS = sorted((DEMO / "k8s").glob("*.yaml"))
IMAGE = "healthprobe-node-demo:0.1.0"
KINDS = {("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Service")}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
PROBE_FIELDS = {*HANDLERS, "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold"}
PROBE_FIELDS |= {"failureThreshold", "terminationGracePeriodSeconds"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")  # IANA_SVC_NAME, 1-15 chars


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def objects() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in MANIFESTS:
        for obj in load(path):
            yield path.name, obj


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] == "Pod":
        return dict(obj["spec"])
    if obj["kind"] == "Deployment":
        return dict(obj["spec"]["template"]["spec"])
    return None


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, obj in objects():
        spec = pod_spec(obj)
        for container in (spec or {}).get("containers", []):
            yield f"{name}:{container['name']}", container


def probes() -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(where, probe kind, probe, container) for every probe in every manifest."""
    for where, container in containers():
        for kind in PROBES:
            if kind in container:
                yield where, kind, container[kind], container


def resolve_port(port: int | str, container: dict[str, Any]) -> int:
    """A probe's port as a number: itself, or the ``containerPort`` of the named port."""
    if isinstance(port, int):
        return port
    matches = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert len(matches) == 1, f"port name {port!r} names {len(matches)} container ports"
    return int(matches[0])


def by_file() -> dict[str, list[dict[str, Any]]]:
    return {path.name: load(path) for path in MANIFESTS}


# -- well-formed objects ---------------------------------------------------------------------


def test_every_manifest_parses_into_kubernetes_objects() -> None:
    assert {path.name for path in MANIFESTS} == {
        "pod-liveness-exec.yaml",
        "pod-liveness-http.yaml",
        "pod-tcp-probes.yaml",
        "pod-startup-probe.yaml",
        "deployment.yaml",
    }
    for name, obj in objects():
        assert isinstance(obj, dict), name
        assert (obj.get("apiVersion"), obj.get("kind")) in KINDS, name
        assert DNS_LABEL.match(obj["metadata"]["name"]), name
        labels = obj["metadata"].get("labels", {})
        assert all(isinstance(v, str) for v in labels.values()), name
        assert isinstance(obj["spec"], dict), name


def test_containers_run_the_demo_image() -> None:
    found = list(containers())
    assert len(found) == 5
    for where, container in found:
        assert DNS_LABEL.match(container["name"]), where
        assert container["image"] == IMAGE, where
        assert container.get("imagePullPolicy") == "IfNotPresent", where
        ports = container.get("ports", [])
        assert [p["containerPort"] for p in ports] == [common.DEFAULT_PORT], where
        for port in ports:
            assert "name" not in port or PORT_NAME.match(port["name"]), where
        for var in container.get("env", []):
            assert set(var) <= {"name", "value", "valueFrom"} and isinstance(var.get("value", ""), str), where


def test_probes_are_well_formed_and_match_the_demo() -> None:
    served = {"/healthz", *common.PROBE_PATHS}
    count = 0
    for where, kind, probe, container in probes():
        count += 1
        assert set(probe) <= PROBE_FIELDS, (where, kind, set(probe) - PROBE_FIELDS)
        handlers = [h for h in HANDLERS if h in probe]
        assert len(handlers) == 1, (where, kind, handlers)
        for field, low in (("periodSeconds", 1), ("timeoutSeconds", 1), ("failureThreshold", 1)):
            value = probe.get(field, low)
            assert isinstance(value, int) and value >= low, (where, kind, field)
        assert probe.get("initialDelaySeconds", 0) >= 0, (where, kind)
        if kind != "readinessProbe":
            assert probe.get("successThreshold", 1) == 1, (where, kind, "successThreshold must be 1")
        handler = probe[handlers[0]]
        if "httpGet" in probe:
            assert handler["path"] in served, (where, kind, handler["path"])
            assert handler.get("scheme", "HTTP") == "HTTP", (where, kind)
        if "httpGet" in probe or "tcpSocket" in probe:
            assert resolve_port(handler["port"], container) == common.DEFAULT_PORT, (where, kind)
        if "exec" in probe:
            assert handler["command"] == ["cat", common.DEFAULT_HEALTHY_FILE], (where, kind)
    assert count == 9


def test_deployment_and_service_fit_together() -> None:
    deployment, service = by_file()["deployment.yaml"]
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    assert service["spec"]["selector"].items() <= template_labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (port,) = service["spec"]["ports"]
    assert resolve_port(port["targetPort"], container) == common.DEFAULT_PORT
    paths = {kind: container[kind]["httpGet"]["path"] for kind in PROBES}
    assert paths == {"startupProbe": "/startupz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    if container.get("securityContext", {}).get("readOnlyRootFilesystem"):
        assert str(Path(common.DEFAULT_HEALTHY_FILE).parent) in mounts, "the healthy file needs a writable /tmp"


def deployment_container() -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment's pod spec and its one container."""
    deployment = by_file()["deployment.yaml"][0]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


def prestop_seconds(container: dict[str, Any]) -> float:
    """Seconds a ``preStop`` hook takes: its ``sleep`` action, or an exec ``sleep N``."""
    hook = container.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, f"preStop {command} has no known duration"
    return float(command[1])


def test_deployment_shutdown_fits_the_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's GracefulShutdown, configured as the Deployment's container is (inside a
    pod, so KUBERNETES_SERVICE_HOST is set), finishes within terminationGracePeriodSeconds
    with a margin, and is told that grace period (docs/kubernetes.md, "Sizing")."""
    spec, container = deployment_container()
    env = {var["name"]: var["value"] for var in container.get("env", [])}
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    coordinator = common.Demo(common.Settings.from_env(env)).coordinator
    assert coordinator.delay == 5.0, "the default delay inside a pod"
    assert (coordinator.drain_timeout, coordinator.hook_timeout) == (20.0, 5.0), "the defaults"
    grace = spec["terminationGracePeriodSeconds"]
    assert coordinator.budget == 30.0  # delay 5 + drain 20 + 1 hook x 5
    assert grace >= prestop_seconds(container) + coordinator.budget + 5, "no margin before SIGKILL"
    assert coordinator.grace_period == grace, "GRACE_PERIOD must match terminationGracePeriodSeconds"
    # docs/kubernetes.md: with healthprobe's in-process delay a preStop hook is not needed.
    assert "preStop" not in container.get("lifecycle", {})


def test_deployment_probes_fit_the_shutdown_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process stopped without its pod being deleted (a liveness restart) leaves the
    Service's endpoints only once readiness fails: the readiness probe must fail within the
    shutdown delay, with time to spare for the endpoints update. Every probe is answered
    within the kubelet's 1 s timeout (checks run under a 0.8 s deadline)."""
    _, container = deployment_container()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    delay = common.Demo(common.Settings.from_env({})).coordinator.delay
    readiness = container["readinessProbe"]
    noticed = readiness.get("failureThreshold", 3) * readiness.get("periodSeconds", 10)
    assert noticed <= delay - 2, f"readiness fails after {noticed} s, too late for a {delay} s delay"
    for kind in PROBES:
        assert container[kind]["timeoutSeconds"] == 1, kind


# -- the seed's four set-ups, kept ------------------------------------------------------------


def only_container(name: str) -> dict[str, Any]:
    (pod,) = by_file()[name]
    (container,) = pod["spec"]["containers"]
    return dict(container)


def test_seed_exec_liveness_kept() -> None:
    probe = only_container("pod-liveness-exec.yaml")["livenessProbe"]
    assert probe == {"exec": {"command": ["cat", "/tmp/healthy"]}, "initialDelaySeconds": 5, "periodSeconds": 5}


def test_seed_http_liveness_kept() -> None:
    probe = only_container("pod-liveness-http.yaml")["livenessProbe"]
    assert probe["httpGet"] == {
        "path": "/healthz",
        "port": 8080,
        "httpHeaders": [{"name": "Custom-Header", "value": "Awesome"}],
    }
    assert (probe["initialDelaySeconds"], probe["periodSeconds"]) == (3, 3)


def test_seed_tcp_probes_kept() -> None:
    container = only_container("pod-tcp-probes.yaml")
    for kind in ("readinessProbe", "livenessProbe"):
        assert container[kind] == {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 15, "periodSeconds": 10}


def test_seed_startup_probe_kept() -> None:
    container = only_container("pod-startup-probe.yaml")
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    assert startup["httpGet"] == liveness["httpGet"] == {"path": "/healthz", "port": "liveness-port"}
    assert startup["failureThreshold"] * startup["periodSeconds"] == 300
    assert (liveness["failureThreshold"], liveness["periodSeconds"]) == (1, 10)
    assert container["ports"] == [{"name": "liveness-port", "containerPort": 8080, "hostPort": 8080}]


# -- the Dockerfile ---------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEMO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines if line and line[0] != "#"]


def test_dockerfile_builds_the_asgi_flavour() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert ("EXPOSE", str(common.DEFAULT_PORT)) in steps
    entrypoints = [args for op, args in steps if op in ("ENTRYPOINT", "CMD")]
    assert len(entrypoints) == 1
    # Exec form (a JSON array): Python is PID 1 and gets SIGTERM itself, not via /bin/sh.
    assert json.loads(entrypoints[0]) == ["python", "-m", "examples.node_demo.asgi_app"]
    assert any(op == "RUN" and shlex.split(args) == ["pip", "install", ".[demo]"] for op, args in steps)
    for op, args in steps:
        if op == "COPY":
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} missing from the repository"
    user = [args for op, args in steps if op == "USER"]
    assert user and not user[-1].startswith(("0", "root")), "the image runs unprivileged"


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    rules = [
        line.strip()
        for line in (DEMO / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for op, args in dockerfile():
        if op == "COPY":
            *sources, _ = args.split()
            for source in sources:
                assert source.rstrip("/") in kept, source


def test_the_image_holds_every_file_the_demo_imports(tmp_path: Path) -> None:
    """Lay out the examples the way the Dockerfile's COPY steps do (the package itself is
    pip-installed in the image, as it is here) and import both flavours from that tree
    alone: a module the demo imports but the image lacks fails here."""
    import subprocess
    import sys

    for op, args in dockerfile():
        if op != "COPY":
            continue
        *sources, target = args.split()
        for source in sources:
            if not source.startswith("examples"):
                continue  # pyproject, README, src: installed into the image by pip
            origin, destination = ROOT / source, tmp_path / target
            if origin.is_dir():  # COPY dir/ dest/: the directory's contents into dest
                shutil.copytree(origin, destination, dirs_exist_ok=True)
            else:  # COPY file dest/: the file into the directory dest
                assert target.endswith("/"), "file COPY steps name a directory target"
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, destination)
    probe = (
        "import examples.node_demo.asgi_app, examples.node_demo.wsgi_app, examples.node_demo.common as c; "
        "print(c.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(tmp_path)), done.stdout


# -- the running demo answers every probe -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("module", ["examples.node_demo.asgi_app", "examples.node_demo.wsgi_app"])
def test_every_probe_answers_the_running_demo(module: str, tmp_path: Path) -> None:
    port = free_port()
    healthy = tmp_path / "healthy"
    env = {"HOST": "127.0.0.1", "PORT": str(port), "HEALTHY_FILE": str(healthy)}
    asked = set()
    with run_server([PYTHON, "-m", module], port, tmp_path, env=env) as server, http_client(server) as client:
        for where, kind, probe, _ in probes():
            if "httpGet" in probe:
                get = probe["httpGet"]
                headers = [(h["name"], h["value"]) for h in get.get("httpHeaders", [])]
                response = client.get(get["path"], headers=headers)
                assert response.status_code == 200, (where, kind, get["path"], response.text)
                asked.add(get["path"])
            elif "tcpSocket" in probe:
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    pass
            else:
                # The exec probe's `cat /tmp/healthy`, pointed at this process's healthy file.
                command = [
                    str(healthy) if arg == common.DEFAULT_HEALTHY_FILE else arg for arg in probe["exec"]["command"]
                ]
                assert subprocess.run(command, capture_output=True, timeout=10).returncode == 0, (where, kind)
        assert asked == {"/healthz", "/livez", "/readyz", "/startupz"}

        # Both liveness mechanisms see the same file: without it, exec and /livez fail together.
        healthy.unlink()
        assert subprocess.run(["cat", str(healthy)], capture_output=True, timeout=10).returncode != 0
        assert client.get("/livez").status_code == common.LIVENESS_FAILURE_STATUS
