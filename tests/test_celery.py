"""healthprobe.celery in real Celery workers: docs/frameworks/celery.md run as written.

The page's files are written into a fresh project and started with the page's commands
(``celery -A proj worker``, prefork and solo) as real processes, against a private
redis-server broker on an ephemeral port that the tests stop and start again, and the
machine's Redis as the result backend:

* the startup probe fails until the worker is ready (started while the broker is down), then
  passes, and a task sent through the broker runs;
* with the broker down, ``/livez`` stays 200 for more than twice the heartbeat's bound while
  ``/readyz`` is 503; with the broker back on the same port both pass and a task runs;
* a solo worker whose task blocks the consumer's loop longer than the bound fails ``/livez``;
* ``SIGTERM`` during a task: ``/readyz`` 503 at once, ``/livez`` 200, the task completes, exit 0;
* a normal start and warm shutdown, probed as the kubelet probes, log no WARNING from the
  checks (the startup check's first fail is INFO; from the signal on the broker and consumer
  checks keep their state), and the page's drain transcript and log excerpt are what it does;
* a probe port in use ends the worker with one line naming the port, an address that cannot
  be had one naming the host; misuse of ``install()`` raises, a wrong type as ``TypeError``
  and a value out of range as ``ValueError``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shlex
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from healthprobe import HealthRegistry

from . import doc_pages
from .support import (
    PrivateRedis,
    ServerProcess,
    free_port,
    raised_without,
    run_server,
    status,
    wait_until,
)

pytestmark = pytest.mark.slow

PAGE = doc_pages.page("frameworks/celery.md")
#: The heartbeat's bound in these tests (the page reads CONSUMER_MAX_INTERVAL), in seconds.
MAX_INTERVAL = 3.0
#: The result backend: the machine's Redis, which stays up while the broker is stopped.
RESULTS = "redis://127.0.0.1:6379/14"
PREFORK = "celery -A proj worker --loglevel=INFO --concurrency"
SOLO = "celery -A proj worker --loglevel=INFO --pool=solo"


# -- a broker that can be stopped and started again ---------------------------------------------


class Broker(PrivateRedis):
    """The broker: a private redis-server, stopped and started at will (same port)."""


def client_app(broker: Broker) -> Any:
    """A Celery app of the test's own that sends the page's tasks by name."""
    from celery import Celery

    app = Celery("client", broker=broker.url, backend=RESULTS)
    app.conf.broker_connection_retry_on_startup = False
    return app


# -- the page's worker ----------------------------------------------------------------------------


@contextlib.contextmanager
def worker(
    project: Path, starts: str, broker: Broker, log: Path, *, port: int | None = None, wait: bool = True
) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    """Run the page's command that starts with ``starts`` in ``project``, its probe port on
    loopback; yields once the probe port accepts (with ``wait``)."""
    port = free_port() if port is None else port
    env = {
        "PYTHONPATH": str(project),
        "CELERY_BROKER_URL": broker.url,
        "CELERY_RESULT_BACKEND": RESULTS,
        "PROBE_PORT": str(port),
        "CONSUMER_MAX_INTERVAL": str(MAX_INTERVAL),
    }
    argv = doc_pages.argv(doc_pages.command(PAGE, starts), port)
    with (
        run_server(argv, port, log.parent, env=env, name=log.stem, cwd=project, timeout=30 if wait else None) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        yield server, client


def ready(server: ServerProcess, client: httpx.Client, timeout: float = 30) -> None:
    """Wait until the three probes pass and the heartbeat is beating (not waiting)."""
    doc_pages.wait_status(client, "/readyz", 200, timeout, log=server.output)
    wait_until(
        lambda: "[+]celery-consumer ok" in client.get("/livez?verbose").text,
        timeout,
        "the heartbeat beats",
        server.output,
    )
    assert client.get("/startupz").status_code == 200


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return doc_pages.write_project(PAGE, tmp_path_factory.mktemp("celery-page"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, redis_up: None) -> Iterator[Broker]:
    """Needs the machine's Redis too, the result backend."""
    with Broker(tmp_path_factory.mktemp("broker")) as broker:
        yield broker  # not started: the first test starts the worker before the broker


@pytest.fixture(scope="module")
def prefork(
    project: Path, broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    """The page's prefork worker (2 children), shared by the tests until the SIGTERM test
    ends it."""
    with worker(project, PREFORK, broker, tmp_path_factory.mktemp("prefork") / "worker.log") as running:
        yield running


@pytest.fixture(scope="module")
def tasks(broker: Broker) -> Any:
    return client_app(broker)


# -- the page --------------------------------------------------------------------------------------


def test_probe_block_names_the_default_paths_and_the_probe_port() -> None:
    container = doc_pages.probe_port_container(PAGE)
    assert "{name: probes, containerPort: 8081}" in PAGE  # install(port=...) defaults to PROBE_PORT=8081
    assert 'os.environ.get("PROBE_PORT", "8081")' in PAGE
    # The container runs the page's first command.
    assert container["command"] == shlex.split(doc_pages.command(PAGE, PREFORK))


#: What tells the page's two ``curl`` transcripts apart: the broker is down, the worker drains.
BROKER_DOWN = "[-]celery-broker failed"
DRAINING = "[-]lifecycle failed: draining"
#: What tells the page's two log excerpts apart.
BROKER_LOST = "the consumer lost the broker"
NORMAL_RUN = "check celery-worker recovered: pass"


def test_every_page_command_is_run_here() -> None:
    commands = doc_pages.commands(PAGE)
    curls = [c for c in commands if c.startswith("curl ")]
    assert sorted(set(commands) - set(curls)) == sorted([doc_pages.command(PAGE, PREFORK), SOLO])
    # Each curl transcript is run by a test: the broker outage's, and the drain's.
    assert [len(steps) for steps in doc_pages.transcripts(PAGE)] == [2, 2]
    assert len(curls) == 4
    assert len(doc_pages.transcripts(PAGE, contains=BROKER_DOWN)) == 1
    assert len(doc_pages.transcripts(PAGE, contains=DRAINING)) == 1
    assert [BROKER_LOST in b for b in doc_pages.blocks(PAGE, "text")] == [True, False]
    assert [NORMAL_RUN in b for b in doc_pages.blocks(PAGE, "text")] == [False, True]


def test_the_pages_error_lines_are_the_real_ones(logger_filters: list[Any]) -> None:
    """The messages the page quotes for a bad argument of install() and for a probe server
    that cannot start are the ones raised and logged."""
    import healthprobe.celery

    prose = " ".join(PAGE.split())
    for kwargs in ({"max_interval": "60"}, {"metrics": "yes"}, {"port": 70000}, {"host": "999.1.1.1"}):
        with pytest.raises((TypeError, ValueError)) as raised:
            healthprobe.celery.install(_app(), **kwargs)
        assert f"`{type(raised.value).__name__}: {raised.value}`" in prose, raised.value
    app = _app()
    probes = healthprobe.celery.install(app, host="192.0.2.1", port=8081)  # TEST-NET-1: not this machine's
    logger = logging.getLogger("healthprobe")
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        with pytest.raises(SystemExit):
            probes._on_worker_init(sender=SimpleNamespace(app=app))
    finally:
        logger.removeHandler(handler)
    assert len(lines) == 1 and f"`{lines[0]}`" in prose, lines


# -- the prefork worker --------------------------------------------------------------------------


def test_startup_waits_for_the_broker_then_a_task_runs(
    prefork: tuple[ServerProcess, httpx.Client], broker: Broker, tasks: Any
) -> None:
    server, client = prefork
    assert not broker.running
    # Started while the broker is down: not started, not ready, alive (waiting for the broker).
    server.wait_for_output("consumer: Cannot connect to redis://", timeout=20)
    for _ in range(3):
        assert client.get("/startupz").status_code == 503
        assert client.get("/readyz").status_code == 503
        live = client.get("/livez?verbose")
        assert live.status_code == 200 and "[+]celery-consumer warn" in live.text, live.text
    broker.start()
    ready(server, client)
    assert "celery: worker ready; probes on 0.0.0.0:" in server.output()
    assert tasks.send_task("proj.tasks.add", args=(2, 3)).get(timeout=20) == 5
    # Only the main process serves: the two prefork children closed their copy of the socket.
    children = _children(server.proc.pid)
    assert len(children) >= 2, children
    for child in children:
        fds = Path(f"/proc/{child}/fd")
        inodes = {os.readlink(fd) for fd in fds.iterdir() if os.readlink(fd).startswith("socket:")}
        assert _listening_inode(client) not in inodes


def _children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (from /proc/<pid>/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _listening_inode(client: httpx.Client) -> str:
    """``socket:[inode]`` of the socket listening on the client's port (from /proc/net/tcp)."""
    port = httpx.URL(str(client.base_url)).port
    assert port is not None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
            return f"socket:[{fields[9]}]"
    raise AssertionError(f"nothing listens on {port}")


def test_metrics_on_the_probe_port(prefork: tuple[ServerProcess, httpx.Client], broker: Broker) -> None:
    server, client = prefork
    broker.start()
    ready(server, client)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    for check in ("celery-worker", "celery-consumer", "celery-broker", "results"):
        assert f'healthprobe_check_status{{check="{check}",status="pass"}} 1.0' in metrics.text, metrics.text
    assert "process_resident_memory_bytes" in metrics.text
    assert "healthprobe_in_flight_requests 0.0" in metrics.text  # no task runs
    assert 'healthprobe_shutdown_phase{phase="serving"} 1.0' in metrics.text


def test_broker_outage_fails_readiness_never_liveness(
    prefork: tuple[ServerProcess, httpx.Client], broker: Broker, tasks: Any
) -> None:
    server, client = prefork
    broker.start()
    ready(server, client)
    broker.stop()
    stopped = time.monotonic()
    observed: list[tuple[float, str, int | None]] = []
    curls_done = False
    # Observe for more than twice the heartbeat's bound: liveness always passes.
    while time.monotonic() - stopped < 2 * MAX_INTERVAL + 1.5:
        now = time.monotonic() - stopped
        observed.append((now, "/livez", status(client, "/livez")))
        observed.append((now, "/readyz", status(client, "/readyz")))
        if not curls_done and now > MAX_INTERVAL + 0.5:
            _curl_lines(server)  # past the heartbeat's bound: the page's outputs, as shown
            curls_done = True
        time.sleep(0.2)
    log = server.output()
    assert all(code == 200 for _, path, code in observed if path == "/livez"), (observed, log)
    failing = [t for t, path, code in observed if path == "/readyz" and code == 503]
    assert failing and failing[0] < 2.0, (observed, log)  # the loss is seen at once
    assert all(code == 503 for t, path, code in observed if path == "/readyz" and t >= failing[0]), observed
    assert curls_done
    assert re.search(r"check celery-consumer: warn \(waiting for broker for [\d.]+ s\)", log), log

    broker.start()  # the same port
    ready(server, client, timeout=40)  # Celery's next attempt: 2, 4, 6 ... s apart
    assert tasks.send_task("proj.tasks.add", args=(20, 22)).get(timeout=20) == 42
    _log_lines(server.output())


def _curl_lines(server: ServerProcess, contains: str = BROKER_DOWN) -> None:
    """The page's ``curl`` lines (of the block that ``contains``) print what the page shows
    below them."""
    (steps,) = doc_pages.transcripts(PAGE, contains=contains)
    assert len(steps) == 2
    doc_pages.run_transcript(steps, server.port, page_address="localhost:8081", check=False, log=server.output)


def _log_lines(log: str, contains: str = BROKER_LOST) -> None:
    """Every line of the page's log excerpt (the one that ``contains``) is in the worker's
    log (numbers may differ)."""
    excerpt = doc_pages.block(PAGE, "text", contains=contains)
    for line in excerpt.splitlines():
        level, message = re.fullmatch(r"\[[^:]+:[^:]+:[^:]+: (\w+)/MainProcess\] (.*)", line).groups()  # type: ignore[union-attr]
        pattern = re.escape(f"{level}/MainProcess] {message}")
        pattern = re.sub(r"\d+(?:\\\.\d+)?", r"[\\d.]+", pattern)
        assert re.search(pattern, log), (line, log)


def test_sigterm_during_a_task(prefork: tuple[ServerProcess, httpx.Client], broker: Broker, tasks: Any) -> None:
    server, client = prefork
    broker.start()
    ready(server, client)
    result = tasks.send_task("proj.tasks.long_job", args=(3.0,))
    server.wait_for_output("long_job started: 3.0 s", timeout=20)
    server.signal(signal.SIGTERM)
    signalled = time.monotonic()
    wait_until(lambda: status(client, "/readyz") == 503, 1.5, "readiness fails at once", server.output)
    assert not result.ready()
    metrics = client.get("/metrics").text
    assert "healthprobe_in_flight_requests 1.0" in metrics, metrics  # the task, still running
    assert 'healthprobe_shutdown_phase{phase="drain"} 1.0' in metrics, metrics
    lives: list[int | None] = []
    while not result.ready():
        lives.append(status(client, "/livez"))
        time.sleep(0.1)
    assert result.get(timeout=10) == 3.0  # the task completed
    assert time.monotonic() - signalled > 1.5
    assert lives and all(code == 200 for code in lives), lives
    assert server.wait(30) == 0, server.output()
    log = server.output()
    assert "worker: Warm shutdown (MainProcess)" in log
    assert "lifecycle started -> draining" in log
    assert "celery: warm shutdown: readiness fails, liveness passes while the running tasks finish" in log
    assert "lifecycle draining -> stopped" in log
    assert re.search(r"Task proj\.tasks\.long_job\[[\w-]+\] succeeded", log), log


#: A WARNING line logged by healthprobe in a worker's log (Celery's format): a check's change to
#: warn or fail, or one of the integration's own lines.
HEALTHPROBE_WARNING = re.compile(r"^.*WARNING/\w+\] (?:check |celery: |lifecycle |probe server ).*$", re.M)


@pytest.mark.usefixtures("redis_up")  # the result backend
def test_a_normal_start_and_warm_shutdown_log_no_warning_from_the_checks(project: Path, tmp_path: Path) -> None:
    """Probed as the kubelet probes it (``/startupz`` until it passes, then the three probes,
    through a warm shutdown that lets a task finish), a worker logs no WARNING from
    healthprobe: the startup check's first fail before ``worker_ready`` is logged at INFO,
    and from the signal on the broker and consumer checks report ``worker shutting down``
    in the state they were in (pass), so readiness fails by the lifecycle alone."""
    with Broker(tmp_path) as broker:
        tasks = client_app(broker)
        # The page's worker as the page runs it: its log excerpt is checked below.
        with worker(project, PREFORK, broker, tmp_path / "quiet.log") as (server, client):
            # Not ready until the broker answers: the startup check fails, as it should.
            server.wait_for_output("consumer: Cannot connect to redis://", timeout=20)
            for _ in range(3):
                assert client.get("/startupz").status_code == 503
            broker.start()
            doc_pages.wait_status(client, "/startupz", 200, 30, log=server.output)
            ready(server, client)
            result = tasks.send_task("proj.tasks.long_job", args=(3.0,))
            server.wait_for_output("long_job started: 3.0 s", timeout=20)
            server.signal(signal.SIGTERM)
            wait_until(lambda: status(client, "/readyz") == 503, 1.5, "readiness fails at once", server.output)
            _curl_lines(server, DRAINING)  # what the page shows during the drain
            assert not result.ready()
            seen: list[tuple[int, str, int, str]] = []
            while not result.ready():
                with contextlib.suppress(httpx.TransportError):
                    readiness, liveness = client.get("/readyz?verbose"), client.get("/livez?verbose")
                    seen.append((readiness.status_code, readiness.text, liveness.status_code, liveness.text))
                time.sleep(0.1)
            assert result.get(timeout=10) == 3.0
            assert server.wait(30) == 0, server.output()
            log = server.output()
    assert seen, log
    for ready_code, ready_body, live_code, live_body in seen:
        assert ready_code == 503 and "[-]lifecycle failed: draining" in ready_body, ready_body
        assert "[+]celery-broker ok" in ready_body, ready_body
        assert live_code == 200 and "[+]celery-consumer ok" in live_body, live_body
    assert "lifecycle started -> draining" in log and "lifecycle draining -> stopped" in log, log
    assert not HEALTHPROBE_WARNING.findall(log), log
    assert re.search(r"INFO/MainProcess\] check celery-worker: fail \(the worker is not ready yet", log), log
    assert "INFO/MainProcess] check celery-worker recovered: pass" in log, log
    _log_lines(log, NORMAL_RUN)


def _levels(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "healthprobe"]


def test_checks_from_the_shutdown_signal_on_keep_the_state_they_were_in(caplog: pytest.LogCaptureFixture) -> None:
    """From ``worker_shutting_down`` on, the broker check tries no connection and reports
    ``worker shutting down`` with the status it had (pass when it never ran), and the
    consumer's wait for the shutdown passes, or stays warn when it was waiting for the
    broker already: no change to warn or fail, so no WARNING."""
    import healthprobe.celery

    # A worker that was consuming: both checks pass, and go on passing.
    passing = HealthRegistry(default_cache_ttl=0)
    probes = healthprobe.celery.install(_app(), passing, port=0)
    probes._connected = True  # as the consumer bootstep's start sets it
    assert passing.run("liveness").checks["celery-consumer"].result.status.value == "pass"
    with caplog.at_level(logging.DEBUG, logger="healthprobe"):
        probes._stopping = True  # what worker_shutting_down sets, in the signal handler
        probes._consumer_stopped()  # the consumer stops with the worker
        probes._begin_drain("warm")
        for _ in range(2):
            readiness, liveness = passing.run("readiness"), passing.run("liveness")
            assert not readiness.ok and readiness.reasons == ("draining",)
            broker = readiness.checks["celery-broker"].result
            assert (broker.status.value, broker.output) == ("pass", "worker shutting down")
            consumer = liveness.checks["celery-consumer"].result
            assert liveness.ok and consumer.status.value == "pass", consumer
            assert re.fullmatch(r"worker shutting down; waiting for warm shutdown for [\d.]+ s", consumer.output or "")
    assert not [line for line in _levels(caplog) if line[0] == "WARNING"], caplog.text

    # A worker that had lost the broker: the broker check stays failed, the consumer warned.
    caplog.clear()
    failing = HealthRegistry(default_cache_ttl=0)
    probes = healthprobe.celery.install(_app(), failing, port=0)
    probes._consumer_lost()  # the consumer restarts to reconnect: liveness waits for the broker
    assert failing.run("readiness").checks["celery-broker"].result.status.value == "fail"
    assert failing.run("liveness").checks["celery-consumer"].result.status.value == "warn"
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="healthprobe"):
        probes._stopping = True
        probes._begin_drain("warm")
        broker = failing.run("readiness").checks["celery-broker"].result
        consumer = failing.run("liveness").checks["celery-consumer"].result
    assert (broker.status.value, broker.output) == ("fail", "worker shutting down")
    assert consumer.status.value == "warn"
    assert re.fullmatch(r"worker shutting down; waiting for broker for [\d.]+ s", consumer.output or "")
    levels = _levels(caplog)
    assert ("DEBUG", "check celery-broker still fail: worker shutting down") in levels, levels
    assert not [line for line in levels if line[0] == "WARNING"], levels


def test_the_startup_checks_first_fail_is_logged_at_info(
    caplog: pytest.LogCaptureFixture, logger_filters: list[Any]
) -> None:
    """In the worker's main process (from ``worker_init``), the startup check failing before
    ``worker_ready`` is logged at INFO; dropped where the logger shows no INFO."""
    import healthprobe.celery

    registry = HealthRegistry(default_cache_ttl=0)
    probes = healthprobe.celery.install(_app(), registry, port=0)
    logger = logging.getLogger("healthprobe")
    logger.addFilter(healthprobe.celery._NotReadyYet(probes))  # as worker_init does
    with caplog.at_level(logging.DEBUG, logger="healthprobe"):
        assert not registry.run("startup").ok
        assert not registry.run("startup").ok
        probes._ready = True  # worker_ready
        assert registry.run("startup").ok
    checks = [line for line in _levels(caplog) if line[1].startswith("check ")]
    assert checks[:3] == [
        ("INFO", "check celery-worker: fail (the worker is not ready yet (no worker_ready from Celery))"),
        ("DEBUG", "check celery-worker still fail: the worker is not ready yet (no worker_ready from Celery)"),
        ("INFO", "check celery-worker recovered: pass"),
    ]
    # The startup probe's first answer is quiet; its recovery is the probe's transition.
    assert ("DEBUG", "startup probe unknown -> fail (fail) after 0.00 s") in [
        (level, re.sub(r"after [\d.]+ s", "after 0.00 s", text)) for level, text in _levels(caplog)
    ]

    quiet = HealthRegistry()
    logger.addFilter(healthprobe.celery._NotReadyYet(healthprobe.celery.install(_app(), quiet, port=0)))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="healthprobe"):  # INFO is not shown here
        assert not quiet.run("startup").ok
    assert _levels(caplog) == [], caplog.text  # dropped, not shown as a WARNING


# -- the solo pool: a task on the consumer's loop --------------------------------------------------


@pytest.mark.usefixtures("redis_up")  # the result backend
def test_solo_task_longer_than_the_bound_fails_liveness(project: Path, tmp_path: Path) -> None:
    with Broker(tmp_path) as broker:
        broker.start()
        tasks = client_app(broker)
        with worker(project, SOLO, broker, tmp_path / "solo.log") as (server, client):
            ready(server, client)
            result = tasks.send_task("proj.tasks.long_job", args=(MAX_INTERVAL + 3.5,))
            server.wait_for_output("long_job started", timeout=20)
            wait_until(lambda: status(client, "/livez") == 503, MAX_INTERVAL + 2, "liveness fails", server.output)
            body = client.get("/livez?verbose").text
            assert "[-]celery-consumer failed: reason withheld" in body, body
            assert client.get("/startupz").status_code == 200
            assert result.get(timeout=20) == MAX_INTERVAL + 3.5
            wait_until(lambda: status(client, "/livez") == 200, 5, "liveness recovers", server.output)
            assert re.search(r"check celery-consumer: fail \(no heartbeat for [\d.]+ s \(max 3 s\)\)", server.output())
            # The WARNING the page quotes, with its 60 s bound.
            (quoted,) = re.findall(r"`(check celery-consumer: fail \(no heartbeat [^`]+)`", PAGE)
            pattern = re.sub(r"\d+(?:\\\.\d+)?", r"[\\d.]+", re.escape(quoted))
            assert re.search(pattern, server.output()), (quoted, server.output())

            # SIGTERM while a task runs on the main thread: Celery's handler, and readiness
            # with it, do not wait for the task (the probe server's threads block the signal).
            second = tasks.send_task("proj.tasks.long_job", args=(2.5,))
            server.wait_for_output("long_job started: 2.5 s", timeout=20)
            server.signal(signal.SIGTERM)
            wait_until(lambda: status(client, "/readyz") == 503, 1.5, "readiness fails at once", server.output)
            assert not second.ready()
            assert status(client, "/livez") == 200
            assert second.get(timeout=20) == 2.5
            assert server.wait(30) == 0, server.output()


# -- start-up errors and misuse ------------------------------------------------------------------


def test_probe_port_in_use_ends_the_worker_with_one_line(project: Path, tmp_path: Path) -> None:
    with socket.socket() as taken, Broker(tmp_path) as broker:
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with worker(project, PREFORK, broker, tmp_path / "taken.log", port=port, wait=False) as (server, _):
            assert server.wait(30) == 1, server.output()
            log = server.output()
    line = (
        f"celery: cannot serve probes on 0.0.0.0:{port}: [Errno 98] Address already in use; "
        "pass another port to healthprobe.celery.install(port=...)"
    )
    assert line in log, log
    assert "Traceback" not in log, log
    assert f"`{line.replace(str(port), '8081')}`" in " ".join(PAGE.split())  # as the page quotes it


def _app(name: str = "t") -> Any:
    from celery import Celery

    return Celery(name, broker="redis://127.0.0.1:1/0")


def test_install_registers_the_checks_and_serves_nothing_outside_a_worker() -> None:
    import healthprobe.celery

    registry = HealthRegistry()
    probes = healthprobe.celery.install(_app(), registry, port=0)
    assert [c.name for c in registry.checks] == ["celery-worker", "celery-consumer", "celery-broker"]
    assert [sorted(p.value for p in c.probes) for c in registry.checks] == [["startup"], ["liveness"], ["readiness"]]
    assert probes.server is None and not probes.ready and not probes.connected
    startup = registry.run("startup")
    assert not startup.ok
    assert startup.checks["celery-worker"].result.output == "the worker is not ready yet (no worker_ready from Celery)"
    readiness = registry.run("readiness")
    assert readiness.checks["celery-broker"].result.output == "the consumer is not connected to the broker"
    assert registry.run("liveness").ok  # the clock started at install(), far from its 60 s bound
    assert probes.heartbeat.max_interval == 60.0


#: Wrong arguments of install(): a wrong type is a TypeError, a value out of range a ValueError.
BAD_ARGUMENTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    # Types.
    ({"port": "8081"}, TypeError, "port must be an int, got str"),
    ({"host": 8081}, TypeError, "host must be a str, got 8081"),
    ({"max_interval": "60"}, TypeError, "max_interval must be a number of seconds, got '60' (str)"),
    ({"max_interval": True}, TypeError, "max_interval must be a number of seconds, got True (bool)"),
    ({"broker_timeout": "1"}, TypeError, "broker_timeout must be a number of seconds or None, got '1' (str)"),
    ({"max_broker_wait": [600]}, TypeError, "max_broker_wait must be a number of seconds or None, got [600] (list)"),
    ({"metrics": "yes"}, TypeError, "metrics must be True, False or a MetricsSource, got 'yes' (str)"),
    ({"metrics": 1}, TypeError, "metrics must be True, False or a MetricsSource, got 1 (int)"),
    ({"broker_check": "no"}, TypeError, "broker_check must be True or False, got 'no' (str)"),
    ({"expose_output": 1}, TypeError, "expose_output must be True or False, got 1 (int)"),
    ({"registry": object()}, TypeError, "registry must be a HealthRegistry, got object"),
    # A wrong type is found before a value out of range, whatever the order of the arguments.
    ({"port": 70000, "max_interval": "60"}, TypeError, "max_interval must be a number of seconds"),
    # Values.
    ({"port": 70000}, ValueError, "port must be from 0 to 65535, got 70000"),
    ({"host": "999.1.1.1"}, ValueError, "host must be an IP address or a host name, got '999.1.1.1': not an IPv4"),
    ({"host": "fe80::zz"}, ValueError, "host must be an IP address or a host name, got 'fe80::zz': not an IPv6"),
    ({"max_interval": 0}, ValueError, "max_interval must be a positive finite number of seconds, got 0"),
    ({"max_interval": float("nan")}, ValueError, "max_interval must be a positive finite number of seconds, got nan"),
    ({"broker_timeout": -1}, ValueError, "broker_timeout must be a positive finite number of seconds or None"),
    ({"max_broker_wait": float("inf")}, ValueError, "max_broker_wait must be a positive finite number"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_ARGUMENTS)
def test_install_refuses_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    import healthprobe.celery

    app = _app()
    with pytest.raises(error, match=re.escape(message)):
        healthprobe.celery.install(app, **kwargs)
    assert app not in healthprobe.celery._installed  # nothing wired


class Source:
    """A metrics source of the application's own (healthprobe.http.MetricsSource)."""

    def expose(self, accept: str | None, names: Any = ()) -> tuple[str, bytes]:
        return "text/plain; version=0.0.4; charset=utf-8", b"own_metric 1.0\n"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "127.0.0.1"},
        {"host": "0"},  # 0.0.0.0, as bind() reads it
        {"host": "::"},
        {"host": "worker-0.proj.svc.cluster.local"},  # a host name is looked up by the worker
        {"metrics": Source()},
        {"max_interval": 5, "broker_timeout": 0.5, "max_broker_wait": 600.0},
        {"broker_check": False, "expose_output": True},
    ],
)
def test_install_takes_good_arguments(kwargs: dict[str, Any]) -> None:
    import healthprobe.celery

    probes = healthprobe.celery.install(_app(), **kwargs)
    assert probes.server is None


@pytest.fixture
def logger_filters() -> Iterator[list[Any]]:
    """The filters of the ``healthprobe`` logger, put back as they were after the test (a
    worker's ``worker_init``, called here in-process, adds one)."""
    logger = logging.getLogger("healthprobe")
    before = list(logger.filters)
    yield before
    logger.filters[:] = before


def test_a_metrics_source_of_ones_own_is_served(logger_filters: list[Any]) -> None:
    """``metrics=`` takes a MetricsSource as the probe server does: the worker serves it on
    ``/metrics`` (no ``shutdown=`` is given to a source the integration did not build)."""
    import healthprobe.celery

    app = _app()
    probes = healthprobe.celery.install(app, host="127.0.0.1", port=0, metrics=Source())
    probes._on_worker_init(sender=SimpleNamespace(app=app))
    assert probes.server is not None and probes._wake is not None
    try:
        with httpx.Client(base_url=probes.server.url, timeout=5) as client:
            assert client.get("/metrics").text == "own_metric 1.0\n"
            assert client.get("/startupz").status_code == 503
    finally:
        probes.server.stop()
        os.close(probes._wake[1])  # ends the watcher thread


@pytest.mark.parametrize(
    ("host", "error", "line"),
    [
        # An address the machine does not have (TEST-NET-1): the host is at fault.
        (
            "192.0.2.1",
            None,
            "[Errno 99] Cannot assign requested address; pass another host to healthprobe.celery.install(host=...)",
        ),
        # A host name that does not resolve (the worker looks it up as it binds).
        (
            "worker-0.proj.invalid",
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "[Errno -2] Name or service not known; pass another host to healthprobe.celery.install(host=...)",
        ),
        # A port in use: the port is.
        (
            "127.0.0.1",
            OSError(errno.EADDRINUSE, "Address already in use"),
            "[Errno 98] Address already in use; pass another port to healthprobe.celery.install(port=...)",
        ),
        # A privileged port, for a worker that is not root: the port too.
        (
            "127.0.0.1",
            PermissionError(errno.EACCES, "Permission denied"),
            "[Errno 13] Permission denied; pass another port to healthprobe.celery.install(port=...)",
        ),
    ],
)
def test_a_probe_server_that_cannot_start_names_the_argument_at_fault(
    host: str,
    error: OSError | None,
    line: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    logger_filters: list[Any],
) -> None:
    """The worker's one ERROR line ends with the argument of install() to change: the host
    when the address cannot be had, the port when it is in use (or privileged)."""
    import healthprobe.celery

    if error is not None:

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise error

        monkeypatch.setattr(healthprobe.probe_server, "serve", refuse)
    app = _app()
    port = free_port()
    probes = healthprobe.celery.install(app, host=host, port=port)
    with caplog.at_level(logging.ERROR, logger="healthprobe"), pytest.raises(SystemExit) as exited:
        probes._on_worker_init(sender=SimpleNamespace(app=app))
    assert exited.value.code == healthprobe.celery.EXIT_NO_PROBES == 1
    assert [r.getMessage() for r in caplog.records] == [f"celery: cannot serve probes on {host}:{port}: {line}"]
    assert probes.server is None
    assert logging.getLogger("healthprobe").filters == logger_filters  # nothing left behind


def test_install_refuses_a_second_call_a_taken_name_and_a_non_app() -> None:
    import healthprobe.celery

    app = _app()
    healthprobe.celery.install(app)
    with pytest.raises(RuntimeError, match=r"already called for .*: call it once per app"):
        healthprobe.celery.install(app)
    registry = HealthRegistry()
    registry.add_check("celery-broker", lambda: True)
    with pytest.raises(ValueError, match="the registry already has a check named celery-broker"):
        healthprobe.celery.install(_app(), registry)
    assert [c.name for c in registry.checks] == ["celery-broker"]  # nothing added
    with pytest.raises(TypeError, match=r"app must be a celery\.Celery app, got str"):
        healthprobe.celery.install("proj")


def test_missing_celery_names_the_extra() -> None:
    raised = raised_without("celery", "import healthprobe.celery")
    assert raised is not None and "ImportError" in raised["type"]
    assert (raised["type"][0], raised["name"], raised["extra"], raised["message"]) == (
        "MissingExtraError",
        "celery",
        "celery",
        "healthprobe.celery needs celery: pip install 'healthprobe[celery]'",
    )
