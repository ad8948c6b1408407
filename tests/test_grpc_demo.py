"""The grpc_demo (``examples/grpc_demo``): run as ``python -m examples.grpc_demo`` on an
ephemeral port against the machine's PostgreSQL, probed with the stock ``HealthStub`` and
with ``healthprobe probe grpc://...`` as the kubelet probes it; its settings, its shutdown
(readiness first, serving through the delay, the drain and its bound, the cleanup hook, exit
0); its readiness with an unreachable database; the generated code against its ``.proto``;
and its Dockerfile and Kubernetes manifest, checked in the style of
``tests/test_node_demo_k8s.py`` with the fields of the Kubernetes API (``Probe``,
``GRPCAction``: ``port`` a number from 1 to 65535, ``service`` a string)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from examples.grpc_demo import keyvalue_pb2, keyvalue_pb2_grpc, service
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .support import BIN, POSTGRES_ADMIN, PYTHON, ROOT, ServerProcess, free_port, run_server, wait_until

DEMO = ROOT / "examples" / "grpc_demo"
MANIFEST = DEMO / "k8s" / "deployment.yaml"
IMAGE = "healthprobe-grpc-demo:0.1.0"
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
#: What the demo logs once it serves.
SERVING_LINE = "serving gRPC on"
#: The health services of the demo: the probes, ``""`` and each check as ``<probe>/<check>``.
SERVICES = ("", "startup", "readiness", "liveness", "startup/warmup", "readiness/postgres", "liveness/event-loop")
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")

# The fields of the Kubernetes API objects the manifest uses (API reference, v1.32).
PROBE_FIELDS = {"exec", "httpGet", "tcpSocket", "grpc", "initialDelaySeconds", "periodSeconds", "timeoutSeconds"}
PROBE_FIELDS |= {"successThreshold", "failureThreshold", "terminationGracePeriodSeconds"}
GRPC_ACTION_FIELDS = {"port", "service"}
CONTAINER_FIELDS = {"name", "image", "imagePullPolicy", "command", "args", "env", "ports", "resources"}
CONTAINER_FIELDS |= {"securityContext", "volumeMounts", "lifecycle", "workingDir", *PROBES}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")  # IANA_SVC_NAME, 1-15 chars
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


# -- the running demo ---------------------------------------------------------------------------


def status(port: int, service_name: str, timeout: float = 2.0) -> str:
    """What ``Health/Check`` answers for ``service_name``: the status, or the error code's name."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service_name), timeout=timeout)
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def cli_probe(port: int, service_name: str) -> subprocess.CompletedProcess[str]:
    """``healthprobe probe grpc://127.0.0.1:PORT/SERVICE --verbose``, as an exec probe runs it."""
    url = f"grpc://127.0.0.1:{port}/{service_name}"
    command = [str(BIN / "healthprobe"), "probe", url, "--verbose"]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


@pytest.fixture
def table() -> Iterator[None]:
    """The demo's table is dropped from the test database at the end."""
    yield
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP TABLE IF EXISTS {service.TABLE}")


def demo(tmp_path: Path, name: str = "demo", **env: str) -> Any:
    """The demo on an ephemeral loopback port (``GRPC_PORT``), its output in ``name``.log."""
    port = free_port()
    settings = {"HOST": "127.0.0.1", "GRPC_PORT": str(port), "DATABASE_URL": DATABASE_URL, **env}
    return run_server([PYTHON, "-m", "examples.grpc_demo"], port, tmp_path, env=settings, name=name)


def ready(server: ServerProcess) -> None:
    server.wait_for_output(SERVING_LINE)
    wait_until(lambda: status(server.port, "readiness") == "SERVING", 10, "readiness SERVING", server.output)


@pytest.mark.slow
def test_the_demo_serves_its_health_services_and_its_store(postgres_up: None, table: None, tmp_path: Path) -> None:
    with demo(tmp_path, SHUTDOWN_DELAY="0") as server:
        ready(server)
        assert {name: status(server.port, name) for name in SERVICES} == dict.fromkeys(SERVICES, "SERVING")
        assert status(server.port, "readiness/no-such-check") == "NOT_FOUND"
        assert status(server.port, "nonsense") == "NOT_FOUND"

        # The kubelet's view, through the CLI: exit 0 only for SERVING.
        for name in ("readiness", "liveness", "startup", ""):
            done = cli_probe(server.port, name)
            assert (done.returncode, done.stdout.strip()) == (0, "service healthy"), (name, done)
        unknown = cli_probe(server.port, "nonsense")
        assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr, unknown

        key = f"key-{uuid.uuid4()}"
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            store = keyvalue_pb2_grpc.KeyValueStub(channel)
            with pytest.raises(grpc.RpcError) as missing:
                store.Get(keyvalue_pb2.GetRequest(key=key), timeout=5)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            assert store.Put(keyvalue_pb2.PutRequest(key=key, value="one"), timeout=5).created
            assert not store.Put(keyvalue_pb2.PutRequest(key=key, value="two"), timeout=5).created
            assert store.Get(keyvalue_pb2.GetRequest(key=key), timeout=5).value == "two"
            assert store.Slow(keyvalue_pb2.SlowRequest(seconds=0.1), timeout=5).pid == server.proc.pid
            bad = [
                lambda: store.Put(keyvalue_pb2.PutRequest(key="", value="x"), timeout=5),
                lambda: store.Put(keyvalue_pb2.PutRequest(key="k\x00", value="x"), timeout=5),
                lambda: store.Put(keyvalue_pb2.PutRequest(key="k", value="x" * (service.MAX_VALUE + 1)), timeout=5),
                lambda: store.Get(keyvalue_pb2.GetRequest(key="k" * (service.MAX_KEY + 1)), timeout=5),
                lambda: store.Slow(keyvalue_pb2.SlowRequest(seconds=-1), timeout=5),
                lambda: store.Slow(keyvalue_pb2.SlowRequest(seconds=float("inf")), timeout=5),
            ]
            for call in bad:
                with pytest.raises(grpc.RpcError) as refused:
                    call()
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
        server.signal(signal.SIGTERM)
        assert server.wait(10) == 0, server.output()


@pytest.mark.slow
def test_sigterm_fails_readiness_serves_through_the_delay_and_drains(
    postgres_up: None, table: None, tmp_path: Path
) -> None:
    delay = 2.0
    with demo(tmp_path, SHUTDOWN_DELAY=str(delay), DRAIN_TIMEOUT="5") as server:
        ready(server)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            store = keyvalue_pb2_grpc.KeyValueStub(channel)
            slow = store.Slow.future(keyvalue_pb2.SlowRequest(seconds=delay + 1.0), timeout=15)
            time.sleep(0.3)
            signalled = time.monotonic()
            server.signal(signal.SIGTERM)
            first = wait_until(
                lambda: status(server.port, "readiness") == "NOT_SERVING" and time.monotonic(), 2, "NOT_SERVING"
            )
            assert first - signalled < 0.5, server.output()
            # Through the delay: liveness SERVING, the store serves, the kubelet's CLI sees it.
            assert status(server.port, "liveness") == "SERVING"
            assert status(server.port, "") == "NOT_SERVING"
            assert cli_probe(server.port, "liveness").returncode == 0
            not_ready = cli_probe(server.port, "readiness")
            assert not_ready.returncode == 1 and "NOT_SERVING" in not_ready.stderr, not_ready
            assert store.Put(keyvalue_pb2.PutRequest(key=f"k-{uuid.uuid4()}", value="v"), timeout=5).created
            assert time.monotonic() - signalled < delay, "the checks above took the whole delay"
            # The RPC in flight at the end of the delay is drained, past it.
            assert slow.result(timeout=15).pid == server.proc.pid
            answered = time.monotonic()
        assert answered - signalled > delay
        code = server.wait(15)
        log = server.output()
    assert code == 0, log
    assert "draining 1 in-flight request(s)" in log, log
    assert re.search(r"shutdown: drained after [\d.]+ s", log), log
    assert "hook 'close_pool' finished" in log and "closed the database pool" in log, log
    assert "exit code 0" in log, log


@pytest.mark.slow
def test_an_rpc_that_outlasts_the_drain_bound_is_cut_there(postgres_up: None, table: None, tmp_path: Path) -> None:
    with demo(tmp_path, SHUTDOWN_DELAY="0.5", DRAIN_TIMEOUT="1") as server:
        ready(server)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            slow = keyvalue_pb2_grpc.KeyValueStub(channel).Slow.future(keyvalue_pb2.SlowRequest(seconds=20), timeout=30)
            time.sleep(0.3)
            signalled = time.monotonic()
            server.signal(signal.SIGTERM)
            code = server.wait(10)
            took = time.monotonic() - signalled
            with pytest.raises(grpc.RpcError) as cut:
                slow.result(timeout=5)
        log = server.output()
    assert cut.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE), cut.value
    assert code == 0, log
    assert "drain bound of 1.0 s reached with 1 request(s) still in flight" in log, log
    assert "hook 'close_pool' finished" in log, log
    assert took < 0.5 + 1.0 + 5.0, log  # delay + drain + the hook's bound, not the RPC's 20 s


@pytest.mark.slow
def test_readiness_is_not_serving_while_the_database_is_unreachable(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    url = f"postgresql://app:hunter2@127.0.0.1:{closed}/app"
    with demo(tmp_path, DATABASE_URL=url, SHUTDOWN_DELAY="0") as server:
        server.wait_for_output(SERVING_LINE)
        # Startup and liveness pass: the kubelet keeps the pod, out of the Service.
        wait_until(lambda: status(server.port, "startup") == "SERVING", 10, "startup SERVING", server.output)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert status(server.port, "readiness") == "NOT_SERVING"
            assert status(server.port, "") == "NOT_SERVING"
            assert status(server.port, "readiness/postgres") == "NOT_SERVING"
            assert status(server.port, "liveness") == "SERVING"
            time.sleep(0.2)
        not_ready = cli_probe(server.port, "readiness")
        assert not_ready.returncode == 1 and 'responded with "NOT_SERVING"' in not_ready.stderr, not_ready
        assert cli_probe(server.port, "liveness").returncode == 0
        with (
            grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
            pytest.raises(grpc.RpcError) as unavailable,
        ):
            keyvalue_pb2_grpc.KeyValueStub(channel).Get(keyvalue_pb2.GetRequest(key="k"), timeout=10)
        assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE
        assert unavailable.value.details() == "database unavailable"
        server.signal(signal.SIGTERM)
        code = server.wait(10)
        log = server.output()
    assert code == 0, log
    assert "hunter2" not in log + not_ready.stderr + not_ready.stdout


# -- settings -----------------------------------------------------------------------------------


def test_the_settings_are_node_demos_with_grpc_port_and_database_url() -> None:
    from examples.node_demo import common

    ours, theirs = service.Settings(), common.Settings()
    for name in ("host", "startup_delay", "shutdown_delay", "drain_timeout", "hook_timeout", "grace_period"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert (ours.port, service.DEFAULT_GRPC_PORT) == (50051, 50051)
    env = {
        "HOST": "::1",
        "GRPC_PORT": "0",
        "DATABASE_URL": "postgresql://db/app",
        "STARTUP_DELAY": "1.5",
        "SHUTDOWN_DELAY": "2",
        "DRAIN_TIMEOUT": "3",
        "HOOK_TIMEOUT": "4",
        "GRACE_PERIOD": "40",
        "PORT": "9999",  # node_demo's HTTP port: not this one's
    }
    settings = service.Settings.from_env(env)
    assert settings == service.Settings("::1", 0, "postgresql://db/app", 1.5, 2.0, 3.0, 4.0, 40.0)
    assert settings.address == "[::1]:0"
    assert service.Settings.from_env({"SHUTDOWN_DELAY": " ", "GRPC_PORT": ""}) == service.Settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRPC_PORT": "http"}, "GRPC_PORT must be a TCP port number from 0 to 65535, got 'http'"),
        ({"GRPC_PORT": "70000"}, "GRPC_PORT must be a TCP port number from 0 to 65535, got '70000'"),
        ({"SHUTDOWN_DELAY": "-1"}, "SHUTDOWN_DELAY must be a number of seconds >= 0, got '-1'"),
        ({"DRAIN_TIMEOUT": "nan"}, "DRAIN_TIMEOUT must be a number of seconds >= 0, got 'nan'"),
    ],
)
def test_a_malformed_setting_exits_2_on_one_line(env: dict[str, str], message: str) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "examples.grpc_demo"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == service.EXIT_SETTINGS, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"ERROR grpc_demo: {message}"), done.stderr


def test_a_port_in_use_exits_2_on_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"HOST": "127.0.0.1", "GRPC_PORT": str(port), "DATABASE_URL": DATABASE_URL}
        with run_server([PYTHON, "-m", "examples.grpc_demo"], port, tmp_path, env=env, timeout=None) as server:
            code = server.wait(30)
            log = server.output()
    assert code == service.EXIT_SETTINGS, log
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1:{port} (HOST, GRPC_PORT)" in errors[0], log


# -- the generated code -------------------------------------------------------------------------


def test_the_generated_modules_match_the_proto(tmp_path: Path) -> None:
    """The checked-in ``keyvalue_pb2*.py`` describe the ``.proto`` as it is now (compiled here
    with grpcio-tools, whatever its version), and the stub and servicer have its methods."""
    protoc = pytest.importorskip("grpc_tools.protoc")
    from google.protobuf import descriptor_pb2

    out = tmp_path / "keyvalue.desc"
    assert protoc.main(["protoc", f"-I{ROOT}", f"--descriptor_set_out={out}", str(DEMO / "keyvalue.proto")]) == 0
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    checked_in = descriptor_pb2.FileDescriptorProto()
    keyvalue_pb2.DESCRIPTOR.CopyToProto(checked_in)
    for message in compiled.message_type:  # protoc leaves the JSON names out of Python modules
        for field in message.field:
            field.ClearField("json_name")
    assert compiled == checked_in, "regenerate the modules: see examples/grpc_demo/__init__.py"

    methods = [method.name for method in compiled.service[0].method]
    assert methods == ["Put", "Get", "Slow"]
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        stub = keyvalue_pb2_grpc.KeyValueStub(channel)
        assert all(callable(getattr(stub, name)) for name in methods)
    assert all(name in vars(service.KeyValueService) for name in methods)


# -- the manifest ---------------------------------------------------------------------------------


def objects() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc is not None]


def deployment_container() -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = objects()[0]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


def grpc_port(container: dict[str, Any]) -> int:
    (port,) = container["ports"]
    assert PORT_NAME.match(port["name"]) and port.get("protocol", "TCP") == "TCP"
    return int(port["containerPort"])


def test_the_manifest_holds_a_deployment_and_its_service() -> None:
    found = objects()
    assert [(o["apiVersion"], o["kind"]) for o in found] == [("apps/v1", "Deployment"), ("v1", "Service")]
    for obj in found:
        assert DNS_LABEL.match(obj["metadata"]["name"]), obj["metadata"]
        assert all(isinstance(v, str) for v in obj["metadata"].get("labels", {}).values())
    deployment, svc = found
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    assert svc["spec"]["selector"].items() <= template_labels.items()

    spec, container = deployment_container()
    assert set(container) <= CONTAINER_FIELDS, set(container) - CONTAINER_FIELDS
    assert DNS_LABEL.match(container["name"])
    assert (container["image"], container["imagePullPolicy"]) == (IMAGE, "IfNotPresent")
    assert grpc_port(container) == service.DEFAULT_GRPC_PORT
    (port,) = svc["spec"]["ports"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named[port["targetPort"]] == service.DEFAULT_GRPC_PORT
    assert port["appProtocol"] == "kubernetes.io/h2c"  # plaintext HTTP/2, a standard appProtocol value
    assert spec["securityContext"]["runAsNonRoot"] is True

    env = container["env"]
    for var in env:
        assert set(var) in ({"name", "value"}, {"name", "valueFrom"}), var
        assert ENV_NAME.match(var["name"]) and isinstance(var.get("value", ""), str), var
    database = next(var for var in env if var["name"] == "DATABASE_URL")
    assert set(database["valueFrom"]["secretKeyRef"]) == {"name", "key"}, "a database URL holds a password"


def test_the_probes_are_grpc_probes_of_the_demos_services() -> None:
    _, container = deployment_container()
    port = grpc_port(container)
    services = {}
    for kind in PROBES:
        probe = container[kind]
        assert set(probe) <= PROBE_FIELDS, (kind, set(probe) - PROBE_FIELDS)
        assert [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in probe] == ["grpc"], kind
        action = probe["grpc"]
        assert set(action) <= GRPC_ACTION_FIELDS, (kind, action)
        # GRPCAction.port: a number from 1 to 65535 (a named port is refused); service: a string.
        assert isinstance(action["port"], int) and not isinstance(action["port"], bool), (kind, action)
        assert 1 <= action["port"] <= 65535 and action["port"] == port, (kind, action)
        assert isinstance(action.get("service", ""), str), (kind, action)
        for field, low in (("periodSeconds", 1), ("timeoutSeconds", 1), ("failureThreshold", 1)):
            value = probe.get(field, low)
            assert isinstance(value, int) and value >= low, (kind, field)
        if kind != "readinessProbe":
            assert probe.get("successThreshold", 1) == 1, (kind, "successThreshold must be 1")
        services[kind] = action.get("service", "")
    assert services == {"startupProbe": "startup", "readinessProbe": "readiness", "livenessProbe": "liveness"}


def test_the_shutdown_fits_the_grace_period_and_readiness_fails_within_the_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As for node_demo's Deployment (docs/kubernetes.md, "Sizing"): the coordinator, built
    as the container's environment builds it inside a pod, ends within
    terminationGracePeriodSeconds with a margin and knows that figure; the readiness probe
    fails within the delay, with time to spare for the endpoints update; every probe is
    answered within the kubelet's 1 s timeout."""
    spec, container = deployment_container()
    env = {var["name"]: var["value"] for var in container["env"] if "value" in var}
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    coordinator = service.Demo(service.Settings.from_env(env)).coordinator
    assert coordinator.delay == 5.0 and (coordinator.drain_timeout, coordinator.hook_timeout) == (20.0, 5.0)
    assert coordinator.budget == 30.0  # delay 5 + drain 20 + 1 hook x 5
    grace = spec["terminationGracePeriodSeconds"]
    assert grace >= coordinator.budget + 5, "no margin before SIGKILL"
    assert coordinator.grace_period == grace, "GRACE_PERIOD must match terminationGracePeriodSeconds"
    assert "lifecycle" not in container, "no preStop: the delay runs in the process"
    readiness = container["readinessProbe"]
    assert readiness["failureThreshold"] * readiness["periodSeconds"] <= coordinator.delay - 2
    assert all(container[kind]["timeoutSeconds"] == 1 for kind in PROBES)


@pytest.mark.slow
def test_every_probe_of_the_manifest_answers_the_running_demo(postgres_up: None, table: None, tmp_path: Path) -> None:
    """Each probe, asked as the kubelet asks it (its service, on the demo's port), passes;
    through the CLI too, as an exec probe would run it."""
    _, container = deployment_container()
    with demo(tmp_path, SHUTDOWN_DELAY="0") as server:
        ready(server)
        for kind in PROBES:
            name = container[kind]["grpc"].get("service", "")
            assert status(server.port, name) == "SERVING", kind
            assert cli_probe(server.port, name).returncode == 0, kind
        server.signal(signal.SIGTERM)
        assert server.wait(10) == 0


# -- the Dockerfile -----------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEMO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines if line and line[0] != "#"]


def test_the_dockerfile_runs_the_demo_unprivileged() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert ("EXPOSE", str(service.DEFAULT_GRPC_PORT)) in steps
    entrypoints = [args for op, args in steps if op in ("ENTRYPOINT", "CMD")]
    # Exec form (a JSON array): Python is PID 1 and gets SIGTERM itself, not via /bin/sh.
    assert [json.loads(args) for args in entrypoints] == [["python", "-m", "examples.grpc_demo"]]
    installs = [shlex.split(args) for op, args in steps if op == "RUN"]
    assert any(words[:3] == ["pip", "install", ".[grpc,postgres]"] for words in installs), installs
    user = [args for op, args in steps if op == "USER"]
    assert user and not user[-1].startswith(("0", "root")), "the image runs unprivileged"
    rules = [
        line.strip()
        for line in (DEMO / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for op, args in steps:
        if op == "COPY":
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} missing from the repository"
                assert source.rstrip("/") in kept, f"{source} is not in the build context"


def test_the_image_holds_every_file_the_demo_imports(tmp_path: Path) -> None:
    """Lay out the examples as the Dockerfile's COPY steps do (the package itself is
    pip-installed in the image, as it is here) and import the demo from that tree alone."""
    for op, args in dockerfile():
        if op != "COPY":
            continue
        *sources, target = args.split()
        for source in sources:
            if not source.startswith("examples"):
                continue  # pyproject, README, src: installed into the image by pip
            origin, destination = ROOT / source, tmp_path / target
            if origin.is_dir():
                shutil.copytree(origin, destination, dirs_exist_ok=True)
            else:
                assert target.endswith("/"), "file COPY steps name a directory target"
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, destination)
    code = "import examples.grpc_demo.service as s, examples.grpc_demo.__main__; print(s.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(tmp_path)), done.stdout
