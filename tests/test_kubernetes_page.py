"""docs/kubernetes.md run as written: the wiring blocks, ``serve.py``, the exec probes and
the Docker ``HEALTHCHECK`` against a real served app, the log lines compared with what real
servers print, the sizing formula against ``GracefulShutdown.budget``, and the Deployment.

One run of the page's ``serve.py`` (``run_workers``, four uvicorn workers) serves an ``app.py``
made of the "Wiring it up" blocks, with a pod's ``KUBERNETES_SERVICE_HOST`` so that the
coordinator takes its default 5 s delay: the exec probes pass while it is ready, the
readiness ones fail during the delay, ``healthprobe kubelet`` replays the Deployment's probes
against it, and every worker logs the timeline the page shows, in uvicorn's format. A worker
with no server shows it, in order, through the page's ``configure`` block. gunicorn (sync)
serves the same blocks with the WSGI middleware, for its log format and the ``Host`` header
probe; hypercorn with its worker process, for the warning the page shows. Blocks of the
page that other modules run are listed in :func:`test_every_block_of_the_page_is_run`, each
with the test that reads it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import subprocess
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from healthprobe import HealthRegistry
from healthprobe.http import DEFAULT_PATHS
from healthprobe.shutdown import GracefulShutdown
from healthprobe.testing import free_port

from . import doc_pages
from .support import BIN, INSTALLED, PYTHON, run_server
from .test_logs import GUNICORN_LINE, UVICORN_LINE
from .test_metrics_page import as_wsgi

PAGE = doc_pages.page("kubernetes.md")

#: "The shutdown timeline": the lines one stop logs.
TIMELINE = doc_pages.block(PAGE, "text", starts="shutdown: SIGTERM received")
#: "Seeing these lines", the uvicorn tab and the gunicorn/hypercorn tab.
UVICORN_TAB = doc_pages.block(PAGE, "text", starts="INFO:     shutdown: SIGTERM received")
GUNICORN_TAB = doc_pages.block(PAGE, "text", contains="[INFO] shutdown: SIGTERM received")
CONFIGURE = doc_pages.block(PAGE, "python", contains="healthprobe.logs.configure(")
#: "Wiring it up": the coordinator with its hook, then the middleware.
WIRING = doc_pages.block(PAGE, "python", contains="@shutdown.hook")
WRAP = doc_pages.block(PAGE, "python", starts="from healthprobe.asgi import HealthMiddleware")
OFF_WARNING = doc_pages.block(PAGE, "text", contains="graceful shutdown is OFF")
SERVE = doc_pages.block(PAGE, "python", starts="# serve.py;")
FORMULA = doc_pages.block(PAGE, "text", starts="terminationGracePeriodSeconds >=")
DEPLOYMENT = doc_pages.block(PAGE, "yaml", contains="kind: Deployment")
#: "Exec probes and Docker HEALTHCHECK without curl".
EXEC_LIVENESS = doc_pages.block(PAGE, "yaml", starts="livenessProbe:\n  exec:")
HEALTHCHECK = doc_pages.block(PAGE, "dockerfile")
HOST_PROBE = doc_pages.block(PAGE, "yaml", contains='"Host: web.example"')
VERBOSE_PROBE = doc_pages.block(PAGE, "yaml", contains='"-v"')

#: The port the page's commands and manifests use.
PAGE_PORT = 8080
#: What a pod has in its environment, which gives the coordinator its 5 s delay.
IN_A_POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}

#: Before the page's blocks in ``app.py``: a plain ASGI app (``/`` answers ``ok``,
#: ``/slow?seconds=S`` after S seconds) and the ``pool`` the hook closes.
ASGI_HEAD = """\
import asyncio
import os


class Pool:
    async def close(self) -> None:
        await asyncio.sleep(0.05)


pool = Pool()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/slow":
        print(f"slow start in {os.getpid()}", flush=True)
        await asyncio.sleep(float(scope["query_string"].decode().partition("=")[2]))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


"""

#: The same for WSGI (gunicorn's sync workers).
WSGI_HEAD = """\
import asyncio


class Pool:
    async def close(self) -> None:
        await asyncio.sleep(0.05)


pool = Pool()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


"""

#: A worker with no server, the last row of the launch-path table, logging by the page's
#: ``configure`` block: it works until the coordinator drains, then finishes.
WORKER_TAIL = """
import sys
import time

shutdown.install()
print("working", flush=True)
while not shutdown.is_draining:
    time.sleep(0.01)
sys.exit(shutdown.finish())
"""


def masked(text: str) -> str:
    """``text`` with every number (times, process ids, seconds, counts) as ``N``."""
    return re.sub(r"\d+", "N", text)


#: Where healthprobe's message begins in a log line: its ``shutdown: `` after the prefix the
#: log format puts before it (not the logger's name, ``healthprobe.shutdown: ``).
MESSAGE = re.compile(r"(?:^|(?<=\s))shutdown: ")


def shutdown_lines(output: str, level: str = "INFO") -> list[str]:
    """The lines of ``output`` that hold a ``level`` ``shutdown: ...`` message of
    healthprobe's (the DEBUG lines of ``sitecustomize.py`` left out)."""
    found = []
    for line in output.splitlines():
        start = MESSAGE.search(line)
        if start is not None and level in line[: start.start()]:
            found.append(line)
    return found


def message(line: str) -> str:
    """A log line's message: from ``shutdown: `` on."""
    start = MESSAGE.search(line)
    assert start is not None, line
    return line[start.start() :]


def exec_argv(block: str, port: int) -> list[str]:
    """The ``exec`` command of a probe block of the page, the installed ``healthprobe`` first,
    the page's port moved to ``port``."""
    (probe,) = yaml.safe_load(block).values()
    command = probe["exec"]["command"]
    return _installed(command, port)


def healthcheck_argv(block: str, port: int) -> list[str]:
    """The exec form (JSON) after ``CMD`` of the page's ``HEALTHCHECK`` line, as Docker runs it."""
    options, cmd, form = block.strip().partition(" CMD ")
    assert options.startswith("HEALTHCHECK ") and cmd, block
    return _installed(json.loads(form), port)


def _installed(command: list[str], port: int) -> list[str]:
    assert command[0] == "healthprobe", command
    assert sum(f":{PAGE_PORT}/" in argument for argument in command) == 1, command
    return [str(BIN / "healthprobe"), *(a.replace(f":{PAGE_PORT}/", f":{port}/") for a in command[1:])]


def probe(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


#: ``healthprobe kubelet`` replaying a manifest's probes for 11 simulated seconds (startup,
#: readiness, then the first liveness probe at 10 s), ten times faster, every probe shown.
KUBELET = [str(BIN / "healthprobe"), "kubelet", "--speed", "10", "--duration", "11", "--json", "--verbose"]


def write(into: Path, files: dict[str, str]) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    for name, text in {"sitecustomize.py": doc_pages.SITECUSTOMIZE, **files}.items():
        (into / name).write_text(text)
    return into


def asgi_project(into: Path) -> Path:
    """``app.py`` (the page's two wiring blocks after :data:`ASGI_HEAD`) and ``serve.py``."""
    return write(into, {"app.py": ASGI_HEAD + WIRING + "\n" + WRAP, "serve.py": SERVE})


# -- the shared run: serve.py, four uvicorn workers, probed and stopped as a pod is -------------


@dataclass
class Stop:
    """What the run of ``serve.py`` saw: the exec probes' results while ready and during the
    delay (``{name: CompletedProcess}``), the kubelet replay of the Deployment, the slow
    requests' statuses, the exit code and the log."""

    ready: dict[str, subprocess.CompletedProcess[str]]
    kubelet: subprocess.CompletedProcess[str]
    draining: dict[str, subprocess.CompletedProcess[str]]
    slow: list[int]
    code: int
    log: str


WORKERS = 4
#: What ``run_workers``'s supervisor logs at the signal, besides the workers' timelines.
SUPERVISOR = f"shutdown: SIGTERM passed on to {WORKERS} worker(s); waiting for them to stop"
SLOW = 3


@pytest.fixture(scope="module")
def stop(tmp_path_factory: pytest.TempPathFactory) -> Stop:
    """Run the page's ``serve.py`` as written (its address moved to a free loopback port),
    probe it with the page's exec probes and replay the Deployment's probes, start
    :data:`SLOW` requests that outlast the delay, ``SIGTERM`` it and probe again during the
    delay."""
    project = asgi_project(tmp_path_factory.mktemp("kubernetes"))
    port = free_port()
    source = SERVE
    for page, here in (('host="0.0.0.0"', 'host="127.0.0.1"'), (f"port={PAGE_PORT}", f"port={port}")):
        assert source.count(page) == 1, source
        source = source.replace(page, here)
    (project / "serve.py").write_text(source)
    probes = {
        "liveness": exec_argv(EXEC_LIVENESS, port),
        "healthcheck": healthcheck_argv(HEALTHCHECK, port),
        "verbose": exec_argv(VERBOSE_PROBE, port),
    }
    env = {"PYTHONPATH": str(project), **IN_A_POD}
    with run_server([PYTHON, "serve.py"], port, project, env=env, cwd=project, timeout=30) as server:
        server.wait_for_output(INSTALLED, WORKERS)
        ready = {name: probe(argv) for name, argv in probes.items()}
        (project / "deployment.yaml").write_text(DEPLOYMENT)
        kubelet = probe([*KUBELET, str(project / "deployment.yaml"), "--port-map", f"http={port}"])
        slow: list[int] = []
        with httpx.Client(base_url=server.url, timeout=30) as client:

            def get() -> None:
                slow.append(client.get("/slow", params={"seconds": "6.5"}).status_code)

            threads = [threading.Thread(target=get) for _ in range(SLOW)]
            for thread in threads:
                thread.start()
            server.wait_for_output("slow start", SLOW)
            server.signal(signal.SIGTERM)
            server.wait_for_output("shutdown: SIGTERM received", WORKERS)
            with ThreadPoolExecutor(len(probes)) as pool:  # at once, well within the delay
                draining = dict(zip(probes, pool.map(probe, probes.values()), strict=True))
            assert "delay over" not in server.output(), "the probes outlasted the delay"
            code = server.wait(timeout=40)
            for thread in threads:
                thread.join(10)
        return Stop(ready, kubelet, draining, slow, code, server.output())


def test_serve_py_runs_four_workers_and_exits_0_after_draining(stop: Stop) -> None:
    """The launcher of "Worker processes" serves the wiring blocks in four workers; SIGTERM
    with requests in flight ends in exit 0, every request answered, each worker's hook run."""
    assert stop.code == 0, stop.log
    assert stop.slow == [200] * SLOW, stop.log
    assert stop.log.count(INSTALLED) == WORKERS, stop.log
    assert "graceful shutdown is OFF" not in stop.log, stop.log
    assert len(re.findall(r"shutdown: hook 'close_pool' finished in", stop.log)) == WORKERS, stop.log


def test_every_worker_logs_the_timeline_the_page_shows(stop: Stop) -> None:
    """Each of the four workers logs the six lines of "The shutdown timeline" (numbers
    aside) in uvicorn's format, as the uvicorn tab shows; the requests in flight at the
    signal are counted, and drained after the delay."""
    lines = shutdown_lines(stop.log)
    assert all(re.match(UVICORN_LINE, line) for line in lines), lines
    passed_on = [line for line in lines if "passed on to" in line]  # the supervisor's one line
    assert [masked(line) for line in passed_on] == [masked(f"INFO:     {SUPERVISOR}")], passed_on
    lines = [line for line in lines if line not in passed_on]
    shown = [masked(line) for line in TIMELINE.splitlines()]
    assert Counter(masked(message(line)) for line in lines) == Counter(shown * WORKERS), stop.log
    (tab,) = UVICORN_TAB.splitlines()
    received = [line for line in lines if "SIGTERM received" in line]
    assert [masked(line) for line in received] == [masked(tab)] * WORKERS, received
    counts = [int(n) for line in received for n in re.findall(r"\((\d+) request\(s\) in flight\)", line)]
    assert sum(counts) == SLOW and all("for the 5.0 s delay" in line for line in received), received
    draining = [int(n) for n in re.findall(r"draining (\d+) in-flight request\(s\)", stop.log)]
    assert sum(draining) == SLOW, stop.log


def test_the_exec_probes_pass_while_ready_and_readiness_fails_during_the_delay(stop: Stop) -> None:
    """The page's exec liveness probe and Docker HEALTHCHECK, run as argv: both exit 0 while
    the app is ready; during the delay the HEALTHCHECK (``/readyz``) exits 1 while liveness
    still exits 0. The ``-v`` readiness probe prints the status line, and then the lifecycle
    reason, which is always shown."""
    assert {name: done.returncode for name, done in stop.ready.items()} == {
        "liveness": 0,
        "healthcheck": 0,
        "verbose": 0,
    }, stop.ready
    assert stop.ready["verbose"].stdout == "200 OK\n", stop.ready["verbose"]
    assert {name: done.returncode for name, done in stop.draining.items()} == {
        "liveness": 0,
        "healthcheck": 1,
        "verbose": 1,
    }, stop.draining
    assert stop.draining["healthcheck"].stderr == "503 Service Unavailable\n", stop.draining
    verbose = stop.draining["verbose"].stderr.splitlines()
    assert verbose[0] == "503 Service Unavailable" and "[-]lifecycle failed: draining" in verbose, verbose


def test_the_exec_probes_fail_on_a_closed_port() -> None:
    port = free_port()
    for argv in (exec_argv(EXEC_LIVENESS, port), healthcheck_argv(HEALTHCHECK, port), exec_argv(VERBOSE_PROBE, port)):
        done = probe(argv)
        assert done.returncode == 1 and "ConnectionRefusedError" in done.stderr, (argv, done)


def test_the_verbose_probe_is_the_command_the_console_shows() -> None:
    """The ``-v`` readiness probe runs the command of the console block below it, which
    tests/test_cli.py compares with a real answer."""
    (probe_,) = yaml.safe_load(VERBOSE_PROBE).values()
    line = doc_pages.command(PAGE, "healthprobe probe -v http://127.0.0.1:8080/readyz")
    assert shlex.join(probe_["exec"]["command"]) == line.partition(";")[0]


# -- the other servers of "Seeing these lines" -----------------------------------------------


def test_gunicorn_logs_the_line_of_its_tab_and_sends_one_host_header(tmp_path: Path) -> None:
    """gunicorn (sync) serving the wiring blocks with the WSGI middleware (the import's
    ``# or healthprobe.wsgi``): the readiness probe with ``--header "Host: web.example"``
    passes, gunicorn having got that one ``Host`` (a second one it answers with 400); the
    SIGTERM line reads as the gunicorn tab shows it."""
    project = write(tmp_path / "wsgi", {"app.py": WSGI_HEAD + WIRING + "\n" + as_wsgi(WRAP)})
    port = free_port()
    argv = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--access-logfile", "-"]
    argv += ["--access-logformat", "access host=%({host}i)s %(U)s %(s)s", "app:app"]
    with run_server(argv, port, tmp_path, env={"PYTHONPATH": str(project)}, cwd=project) as server:
        server.wait_for_output(INSTALLED)
        done = probe(exec_argv(HOST_PROBE, port))
        assert done.returncode == 0, (done, server.output())
        server.wait_for_output("access host=")
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=20)
        log = server.output()
    assert code == 0, log
    assert [line for line in log.splitlines() if line.startswith("access ")] == ["access host=web.example /readyz 200"]
    (received,) = [line for line in shutdown_lines(log) if "SIGTERM received" in line]
    assert re.match(GUNICORN_LINE, received), received
    assert masked(received) == masked(GUNICORN_TAB.strip()), received


def test_hypercorn_with_its_worker_process_warns_as_the_page_shows(tmp_path: Path) -> None:
    """``hypercorn app:app`` (one worker process, the default) on the wiring blocks: the
    WARNING the page shows, numbers (the process id) aside."""
    project = asgi_project(tmp_path / "asgi")
    port = free_port()
    argv = [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{port}", "app:app"]
    with run_server(argv, port, tmp_path, env={"PYTHONPATH": str(project)}, cwd=project) as server:
        log = server.wait_for_output("graceful shutdown is OFF")
    (line,) = shutdown_lines(log, "WARNING")
    assert masked(message(line)) == masked(OFF_WARNING.strip()), line


def test_configure_shows_the_timeline_on_stderr_of_a_worker_with_no_server(tmp_path: Path) -> None:
    """The page's ``configure`` block in a worker with no server (the wiring block, its
    coordinator installed by hand): every line of the timeline on standard error, with
    time, level, logger and process id."""
    script = tmp_path / "worker.py"
    script.write_text(CONFIGURE + "\n" + WSGI_HEAD.partition("\n\ndef app")[0] + "\n\n" + WIRING + WORKER_TAIL)
    worker = subprocess.Popen([PYTHON, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "working\n"
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            worker.kill()
    assert worker.returncode == 0, err
    lines = shutdown_lines(err)
    stamp = rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} INFO healthprobe\.shutdown \[{worker.pid}\] shutdown: "
    assert lines and all(re.match(stamp, line) for line in lines), err
    # A loop that sees the drain before the coordinator's thread ends its (0 s) delay
    # finishes during it, with no "delay over" line; the other lines come in the page's order,
    # the signal's first (the loop's drain waits for that line).
    shown = [masked(line) for line in TIMELINE.splitlines()]
    logged = [masked(message(line)) for line in lines]
    assert not Counter(logged) - Counter(shown), err
    assert all("delay over" in line for line in Counter(shown) - Counter(logged)), err
    assert logged == [line for line in shown if line in logged], err


# -- sizing, and the Deployment ---------------------------------------------------------------


def _budget_terms() -> str:
    """The formula's middle part, which the page says is ``GracefulShutdown.budget``."""
    match = re.fullmatch(r"terminationGracePeriodSeconds >= preStop \+ (.+) \+ margin\n", FORMULA)
    assert match is not None, FORMULA
    return match.group(1)


@pytest.mark.parametrize(
    ("delay", "drain_timeout", "hook_timeout", "hooks"),
    [(0.0, 20.0, 5.0, 0), (5.0, 20.0, 5.0, 1), (1.5, 10.0, 2.0, 3), (0.5, 1.5, 1.0, 1)],
)
def test_the_formula_is_the_coordinators_budget(
    delay: float, drain_timeout: float, hook_timeout: float, hooks: int
) -> None:
    shutdown = GracefulShutdown(HealthRegistry(), delay=delay, drain_timeout=drain_timeout, hook_timeout=hook_timeout)
    for _ in range(hooks):
        shutdown.hook(lambda: None)
    terms = _budget_terms().replace(" x ", " * ")
    names = {"delay": delay, "drain_timeout": drain_timeout, "hook_timeout": hook_timeout, "hooks": hooks, "max": max}
    assert eval(terms, {"__builtins__": {}}, names) == pytest.approx(shutdown.budget), terms


def test_the_deployment_sizes_its_grace_period_for_the_wiring_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Deployment's comment is the budget of the page's wiring block in a pod (one hook,
    the defaults): its grace period is that budget plus the margin it names."""
    (deployment,) = yaml.safe_load_all(DEPLOYMENT)
    pod = deployment["spec"]["template"]["spec"]
    comment = re.search(
        r"# delay (\d+) \+ drain (\d+) \+ (\d+) hook x (\d+) = (\d+) s, plus a (\d+) s margin", DEPLOYMENT
    )
    assert comment is not None, DEPLOYMENT
    delay, drain, hooks, hook_timeout, budget, margin = (float(n) for n in comment.groups())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", IN_A_POD["KUBERNETES_SERVICE_HOST"])
    namespace: dict[str, Any] = {}
    exec(compile(WIRING, "docs/kubernetes.md", "exec"), namespace)
    shutdown = namespace["shutdown"]
    assert (shutdown.delay, shutdown.drain_timeout, shutdown.hook_timeout) == (delay, drain, hook_timeout)
    assert hooks == 1 and namespace["close_pool"] is not None
    assert shutdown.budget == budget == delay + drain + hooks * hook_timeout
    assert pod["terminationGracePeriodSeconds"] == budget + margin > shutdown.grace_period


def test_the_deployment_probes_ask_what_the_app_serves() -> None:
    """Selector and labels match; the probes ask the default paths on the container's named
    port, which ``serve.py`` and the ``PORT`` variable name too, within ``timeoutSeconds`` of
    at least 1 (the checks' 0.8 s deadline); readiness fails a pod within the delay."""
    (deployment,) = yaml.safe_load_all(DEPLOYMENT)
    assert deployment["kind"] == "Deployment" and deployment["apiVersion"] == "apps/v1"
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
    (container,) = spec["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": PAGE_PORT} and f"port={PAGE_PORT}" in SERVE
    assert {"name": "PORT", "value": str(PAGE_PORT)} in container["env"]
    probes = {"startupProbe": "startup", "readinessProbe": "readiness", "livenessProbe": "liveness"}
    for field, kind in probes.items():
        http_get = container[field]["httpGet"]
        assert DEFAULT_PATHS[http_get["path"]].value == kind and http_get["port"] in ports
        assert container[field]["timeoutSeconds"] >= 1
    readiness = container["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= 5.0 - 1  # a second below the delay


def test_the_kubelet_replays_the_deployments_probes_against_serve_py(stop: Stop) -> None:
    """``healthprobe kubelet`` with the Deployment as written, its ``http`` port mapped to
    the port ``serve.py`` listens on: startup passes, then the pod is ready and alive."""
    assert stop.kubelet.returncode == 0, stop.kubelet
    events = [json.loads(line) for line in stop.kubelet.stdout.splitlines()]
    probed = [event for event in events if event["event"] == "Probed"]
    assert {event["probe"] for event in probed} == {"startup", "readiness", "liveness"}, events
    assert all(event["result"] == "success" for event in probed), events
    names = [event["event"] for event in events]
    assert "StartupSucceeded" in names and "Ready" in names and "Unhealthy" not in names, events


# -- every block of the page ------------------------------------------------------------------


def test_every_block_of_the_page_is_run() -> None:
    """Each block of the page is one a test runs, here or in the module named beside it: a
    block added to the page fails here until a test reads it."""
    here = [
        TIMELINE,
        UVICORN_TAB,
        GUNICORN_TAB,
        CONFIGURE,
        WIRING,
        WRAP,
        OFF_WARNING,
        SERVE,
        FORMULA,
        DEPLOYMENT,
        EXEC_LIVENESS,
        HEALTHCHECK,
        HOST_PROBE,
        VERBOSE_PROBE,
    ]
    elsewhere = [
        # tests/test_docs.py::test_the_stream_that_ends_itself_at_shutdown_as_kubernetes_md_shows_it
        doc_pages.block(PAGE, "python", contains="wait_stopping()"),
        # tests/test_shutdown_bounds.py (_as_documented, from the line's start to the fence)
        doc_pages.block(PAGE, "text", starts="shutdown: gunicorn's quick shutdown"),
        # tests/test_probe_server_limits.py: the project fixture writes serve_waitress.py, the
        # gunicorn and waitress tests run the two commands, and
        # test_the_page_names_the_servers_that_need_it reads the probes
        doc_pages.files(PAGE)["serve_waitress.py"],
        doc_pages.block(PAGE, "console", starts="$ gunicorn -c python:healthprobe.servers.gunicorn_probes"),
        doc_pages.block(PAGE, "console", starts="$ python serve_waitress.py"),
        doc_pages.block(PAGE, "yaml", contains="port: probes"),
        # tests/test_cli.py::test_the_verbose_example_of_kubernetes_md_is_a_real_answer
        doc_pages.block(PAGE, "console", starts="$ healthprobe probe -v http://"),
        # tests/test_cli_wait.py: the exit-codes, tcp and --wait examples, the init
        # containers and the compose file
        doc_pages.block(PAGE, "console", starts="$ healthprobe probe --exit-codes distinct"),
        doc_pages.block(PAGE, "console", starts="$ healthprobe probe -v tcp://"),
        doc_pages.block(PAGE, "console", starts="$ healthprobe probe --wait --timeout 60"),
        doc_pages.block(PAGE, "console", starts="$ healthprobe probe --wait --timeout 3"),
        doc_pages.block(PAGE, "yaml", contains="initContainers:"),
        doc_pages.block(PAGE, "yaml", starts="# compose.yaml\n"),
    ]
    assert sorted(doc_pages.blocks(PAGE)) == sorted([*here, *elsewhere])
