"""docs/grpc.md run as written: both servers of the page (``python app.py``, a thread-pool
``grpc.server``, and ``python aio_app.py``, a ``grpc.aio.server``) against the machine's
PostgreSQL, probed with the stock ``HealthStub``; ``SIGTERM`` under a watching client and an
RPC in flight; the page's ``client.py`` and ``healthprobe probe grpc://`` lines printing what
the page shows; the Deployment's ``grpc:`` probes asking what the servers answer."""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from healthprobe import shutdown as shutdown_module

from . import doc_pages
from .support import BIN, INSTALLED, ROOT, ServerProcess, free_port, run_server, wait_until

pytestmark = pytest.mark.slow

PAGE = doc_pages.page("grpc.md")
APPS = ("app.py", "aio_app.py")
#: The page's address, which every command is moved from.
PAGE_ADDRESS = "localhost:50051"
DATABASE_UP = "postgresql://postgres@127.0.0.1:5432/test"
Status = health_pb2.HealthCheckResponse.ServingStatus


def database_down() -> str:
    """A PostgreSQL URL whose port nothing listens on."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/test"


@contextlib.contextmanager
def served(app: str, tmp_path: Path, *, database: str, in_pod: bool = False) -> Iterator[ServerProcess]:
    """The page's ``python APP`` in a fresh project with the page's files, on an ephemeral
    port (``GRPC_PORT``); ``in_pod``: with ``KUBERNETES_SERVICE_HOST`` set, so the
    coordinator's delay is its 5 s default."""
    project = tmp_path / "project"
    if not project.exists():
        doc_pages.write_project(PAGE, project)
    port = free_port()
    env = {
        "PYTHONPATH": str(project),
        "GRPC_PORT": str(port),
        "DATABASE_URL": database,
        "KUBERNETES_SERVICE_HOST": "10.96.0.1" if in_pod else "",
    }
    argv = doc_pages.argv(doc_pages.command(PAGE, f"python {app}"), port)
    with run_server(argv, port, tmp_path, env=env, name=app, cwd=project, timeout=30) as server:
        yield server


class Client:
    """The stock stub on a channel to a served page."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.run_job = self.channel.unary_unary("/demo.Jobs/Run")

    def status(self, service: str) -> str:
        """The name of ``service``'s status, or of the error status the call ended with."""
        try:
            answer = self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return str(Status.Name(answer.status))

    def statuses(self, *services: str) -> dict[str, str]:
        return {service: self.status(service) for service in services}

    def close(self) -> None:
        self.channel.close()


def shell(command: str, port: int, cwd: Path) -> subprocess.Popen[str]:
    """One of the page's console lines in bash, in ``cwd``, with this venv's programs first
    on ``PATH`` and the page's address moved to the served port; stderr merged into stdout,
    as a terminal shows both."""
    line = command.replace(PAGE_ADDRESS, f"127.0.0.1:{port}")
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONPATH": str(cwd)}
    return subprocess.Popen(
        ["bash", "-c", line], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def steps(starts: str) -> list[doc_pages.Step]:
    """The console steps of the page whose command starts with ``starts``."""
    return [
        step for block in doc_pages.transcripts(PAGE, starts.split()[0]) for step in block if step[0].startswith(starts)
    ]


def numbers_hidden(line: str) -> str:
    """``line`` with every number written as ``N``: timings and counts vary from run to run."""
    return re.sub(r"\d+(?:\.\d+)?", "N", line)


# -- the page's text -----------------------------------------------------------------------------


def test_every_block_of_the_page_is_run_here() -> None:
    """The page's files, commands, install line, Deployment and log lines are the ones the
    tests of this module run or compare, and the page has no other block, of any language:
    a block added to the page fails here until a test reads it."""
    files = doc_pages.files(PAGE)
    assert set(files) == {"app.py", "aio_app.py", "client.py"}
    commands = doc_pages.commands(PAGE)
    assert commands == [
        "python app.py",
        "python aio_app.py",
        "python client.py localhost:50051 list",
        "python client.py localhost:50051 watch",
        'healthprobe probe grpc://localhost:50051/liveness; echo "exit $?"',
        'healthprobe probe -v grpc://localhost:50051/readiness; echo "exit $?"',
        'healthprobe probe grpc://localhost:50051/readiness/postgress; echo "exit $?"',
    ]
    (install,) = doc_pages.blocks(PAGE, "sh")
    extras = re.fullmatch(r"pip install '/path/to/healthprobe\[([\w,-]+)\]'\n", install)
    assert extras is not None, install
    tomllib = pytest.importorskip("tomllib")
    known = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras.group(1).split(",")) == {"grpc", "postgres"} and {"grpc", "postgres"} <= set(known)
    (deployment,) = doc_pages.blocks(PAGE, "yaml")  # test_the_deployment_probes_ask_the_services_the_page_names
    (log,) = doc_pages.blocks(PAGE, "text")  # the server's log lines, compared in a test below
    assert log.startswith("shutdown: SIGTERM received")
    consoles = [
        # the servers of `served` (test_the_page_serves_and_shuts_down_as_it_says and the others)
        doc_pages.block(PAGE, "console", starts="$ python app.py\n"),
        doc_pages.block(PAGE, "console", starts="$ python aio_app.py\n"),
        # test_the_page_transcripts_with_postgres_down
        doc_pages.block(PAGE, "console", starts="$ python client.py localhost:50051 list\n"),
        doc_pages.block(PAGE, "console", starts="$ healthprobe probe grpc://"),
        # test_the_page_serves_and_shuts_down_as_it_says
        doc_pages.block(PAGE, "console", starts="$ python client.py localhost:50051 watch\n"),
    ]
    assert sorted(doc_pages.blocks(PAGE)) == sorted([install, *files.values(), *consoles, deployment, log])


def test_the_deployment_probes_ask_the_services_the_page_names() -> None:
    (spec,) = doc_pages.probe_specs(PAGE)
    assert {key: probe["grpc"] for key, probe in spec.items()} == {
        "startupProbe": {"port": 50051, "service": "startup"},
        "readinessProbe": {"port": 50051, "service": "readiness"},
        "livenessProbe": {"port": 50051, "service": "liveness"},
    }
    for probe in spec.values():
        assert set(probe) == {"grpc", "periodSeconds", "failureThreshold", "timeoutSeconds"}, probe
        assert probe["timeoutSeconds"] == 1  # the checks' 0.8 s deadline fits in it
    (deployment,) = [yaml.safe_load(body) for body in doc_pages.blocks(PAGE, "yaml")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == shlex.split(doc_pages.command(PAGE, "python app.py"))
    assert container["ports"] == [{"name": "grpc", "containerPort": 50051}]
    assert {"name": "GRPC_PORT", "value": "50051"} in container["env"]
    assert 'os.environ.get("GRPC_PORT", "50051")' in doc_pages.files(PAGE)["app.py"]
    # The budget of the default sequence with the page's one hook fits the grace period.
    budget = shutdown_module.KUBERNETES_DELAY + 20.0 + 5.0
    assert budget < pod["terminationGracePeriodSeconds"]
    assert deployment["spec"]["selector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]


# -- the servers, as the kubelet and clients see them ----------------------------------------------------


@pytest.mark.parametrize("app", APPS)
def test_the_page_serves_and_shuts_down_as_it_says(app: str, postgres_up: None, tmp_path: Path) -> None:
    with served(app, tmp_path, database=DATABASE_UP, in_pod=True) as server:
        client = Client(server.port)
        try:
            services = ("", "readiness", "readiness/postgres", "liveness", "startup")
            wait_until(
                lambda: set(client.statuses(*services).values()) == {"SERVING"},
                20,
                "every service SERVING",
                server.output,
            )
            assert client.status("readiness/nonsense") == "NOT_FOUND"
            assert client.run_job(b"abc", timeout=5) == b"abc"
            # The Deployment's probes, as the kubelet sends them.
            (spec,) = doc_pages.probe_specs(PAGE)
            for probe in spec.values():
                assert client.status(probe["grpc"]["service"]) == "SERVING", probe

            watch = shell(
                doc_pages.command(PAGE, "python client.py localhost:50051 watch"), server.port, tmp_path / "project"
            )
            assert watch.stdout is not None
            assert watch.stdout.readline() == "SERVING\n"
            server.wait_for_output(INSTALLED)

            # A job that starts during the delay and outlasts it: the drain waits for it.
            results: list[bytes | str] = []

            def job() -> None:
                try:
                    results.append(client.run_job(b"x" * 40, timeout=15))  # 4 s
                except grpc.RpcError as exc:
                    results.append(str(exc.code()))

            server.signal(signal.SIGTERM)
            signalled = time.monotonic()
            wait_until(
                lambda: client.status("readiness") == "NOT_SERVING", 1.5, "readiness fails at once", server.output
            )
            assert client.statuses("", "readiness/postgres") == {"": "NOT_SERVING", "readiness/postgres": "SERVING"}
            assert client.statuses("liveness", "startup") == {"liveness": "SERVING", "startup": "SERVING"}
            time.sleep(max(0.0, 2.0 - (time.monotonic() - signalled)))
            worker = threading.Thread(target=job)
            worker.start()
            assert client.run_job(b"new", timeout=5) == b"new"  # served as before during the delay
            lives = []
            while time.monotonic() - signalled < shutdown_module.KUBERNETES_DELAY - 0.5:
                lives.append(client.status("liveness"))
                time.sleep(0.2)
            assert lives and set(lives) == {"SERVING"}, lives
            worker.join(20)
            assert results == [b"x" * 40], results
            assert server.wait(30) == 0, server.output()
            shown = watch.communicate(timeout=10)[0]
        finally:
            client.close()
        (block,) = steps("python client.py localhost:50051 watch")
        assert ["SERVING", *shown.splitlines()] == block[1], shown
        log = server.output()
        assert "graceful shutdown is OFF" not in log, log
        (page_log,) = doc_pages.blocks(PAGE, "text")
        lines = [numbers_hidden(line) for line in log.splitlines()]
        for line in page_log.splitlines():
            assert any(seen.endswith(numbers_hidden(line)) for seen in lines), (line, log)
        assert "draining 1 in-flight request(s)" in log, log
        assert "closing what the service holds" in log and "shutdown: hook 'close' finished" in log, log


def test_the_page_transcripts_with_postgres_down(tmp_path: Path) -> None:
    with served("app.py", tmp_path, database=database_down()) as server:
        client = Client(server.port)
        try:
            wait_until(
                lambda: client.status("readiness/postgres") == "NOT_SERVING", 20, "postgres failing", server.output
            )
        finally:
            client.close()
        project = tmp_path / "project"
        ran = 0
        for starts in ("python client.py localhost:50051 list", "healthprobe probe"):
            for command, shown in steps(starts):
                done = shell(command, server.port, project)
                out = done.communicate(timeout=30)[0]
                assert out.splitlines() == shown, (command, out)
                ran += 1
        assert ran == 4


def test_a_probe_that_is_unhealthy_is_listed_by_name(tmp_path: Path) -> None:
    """What the page says of ``healthprobe-reason``: one line, ``expose_output`` off."""
    with served("aio_app.py", tmp_path, database=database_down()) as server:
        client = Client(server.port)
        try:
            wait_until(lambda: client.status("") == "NOT_SERVING", 20, "readiness failing", server.output)
            call: Any = client.health.Check.with_call(health_pb2.HealthCheckRequest(service=""), timeout=2)
            _, rpc = call
            trailers = dict(rpc.trailing_metadata())
        finally:
            client.close()
    assert trailers["healthprobe-reason"] == "postgres failed: reason withheld"
