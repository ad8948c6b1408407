"""docs/probe-server.md run as written: each code block is read from the page, given the names
it assumes, and run in a process of its own with the page's port 8081 moved to a free one.

* The first block (a heartbeat, a PostgreSQL check, ``serve(..., metrics=True)``) against the
  machine's PostgreSQL: ``/livez``, ``/readyz`` and ``/metrics`` answer on its port.
* The ``ports``/probes block names that port and paths that answer there.
* The job loop counted in flight, with a job that runs until the test releases it: ``SIGTERM``
  fails readiness, the drain waits for the job (the gauge shows it in flight meanwhile) and
  the process exits 0 once it is done.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from healthprobe.testing import free_port

from . import doc_pages
from .support import POSTGRES, PYTHON, ServerProcess, require_service, run_server, wait_until
from .support import sample_value as value
from .support import samples as parse

PAGE = doc_pages.page("probe-server.md")
SERVE = doc_pages.block(PAGE, "python", starts="import healthprobe\n", contains="checks.postgres(DSN)")
PORTS = doc_pages.block(PAGE, "yaml", starts="ports:")
JOB_LOOP = doc_pages.block(PAGE, "python", contains="shutdown.request_started()")
#: The port the page serves on, moved to a free one for each run.
PAGE_PORT = "port=8081"
#: The machine's PostgreSQL, for the page's ``DSN``.
DSN = "postgresql://postgres@127.0.0.1:5432/test"


def test_every_block_of_the_page_is_run() -> None:
    """Each block of the page is one a test of this module runs: a block added to the page
    fails here until a test runs it."""
    assert sorted(doc_pages.blocks(PAGE)) == sorted([SERVE, PORTS, JOB_LOOP])
    for block in (SERVE, JOB_LOOP):
        assert block.count(PAGE_PORT) == 1, block


def _at(block: str, port: int) -> str:
    return block.replace(PAGE_PORT, f"port={port}")


# -- the first block, and the ports of the probes ---------------------------------------------------


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The first block in a process of its own, its ``DSN`` the machine's PostgreSQL; the
    process stays up (the server's thread is a daemon) until the module is done."""
    require_service(*POSTGRES, "PostgreSQL")
    tmp = tmp_path_factory.mktemp("probe-server")
    port = free_port()
    script = tmp / "worker.py"
    script.write_text(f"DSN = {DSN!r}\n\n{_at(SERVE, port)}\nimport threading\n\nthreading.Event().wait()\n")
    with run_server([PYTHON, str(script)], port, tmp, name="worker") as server:
        yield server


@pytest.mark.slow
def test_the_first_block_serves_probes_and_metrics_on_its_port(probe_server: ServerProcess) -> None:
    with httpx.Client(base_url=probe_server.url, timeout=5.0) as client:
        live = client.get("/livez", params={"verbose": ""})
        assert live.status_code == 200 and "worker" in live.text, (live.text, probe_server.output())
        ready = client.get("/readyz", params={"verbose": ""})
        assert ready.status_code == 200 and "database" in ready.text, (ready.text, probe_server.output())
        assert "worker" not in ready.text  # the heartbeat is in liveness only
        scrape = client.get("/metrics")
        assert scrape.status_code == 200, scrape.text
        found = parse(scrape.text)
        assert value(found, "healthprobe_check_status", check="database", status="pass") == 1.0
        assert value(found, "healthprobe_check_status", check="worker", status="pass") == 1.0
        assert client.get("/nope").status_code == 404


@pytest.mark.slow
def test_the_ports_block_asks_the_first_blocks_server(probe_server: ServerProcess) -> None:
    """The container port is the one ``serve()`` binds, and the probes' paths answer there."""
    container = yaml.safe_load(PORTS)
    (ports,) = container.pop("ports")
    (served,) = re.findall(r"port=(\d+)", SERVE)
    assert ports == {"name": "probes", "containerPort": int(served)}
    probes = container
    assert set(probes) == {"livenessProbe", "readinessProbe"}
    with httpx.Client(base_url=probe_server.url, timeout=5.0) as client:
        for probe in probes.values():
            assert probe["httpGet"]["port"] == ports["name"]
            assert client.get(probe["httpGet"]["path"]).status_code == 200, (probe, probe_server.output())


# -- the job loop -----------------------------------------------------------------------------------

#: What the job loop assumes, given to it ahead of the block: ``healthprobe`` and a
#: ``registry``, a ``queue`` of numbered jobs and a ``handle`` that runs until the file named
#: by the first argument exists; healthprobe's INFO lines on standard error.
JOB_LOOP_PRELUDE = """\
import os
import sys
import time

import healthprobe
import healthprobe.logs

healthprobe.logs.configure(level="INFO")
registry = healthprobe.HealthRegistry()
RELEASE = sys.argv[1]


class Queue:
    jobs = 0

    def get(self):
        self.jobs += 1
        return self.jobs


queue = Queue()


def handle(job):
    print(f"job {job} started", flush=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(RELEASE) and time.monotonic() < deadline:
        time.sleep(0.02)
    print(f"job {job} done", flush=True)


"""


def _in_flight(client: httpx.Client) -> tuple[float | None, str]:
    """The in-flight gauge and the current shutdown phase of a scrape."""
    found = parse(client.get("/metrics").text)
    (phase,) = [
        dict(labels)["phase"] for (name, labels), v in found.items() if name == "healthprobe_shutdown_phase" and v
    ]
    return value(found, "healthprobe_in_flight_requests"), phase


@pytest.mark.slow
def test_the_job_loop_drains_its_job_and_exits_0(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "jobs.py"
    script.write_text(JOB_LOOP_PRELUDE + _at(JOB_LOOP, port))
    release = tmp_path / "release"
    with (
        run_server([PYTHON, str(script), str(release)], port, tmp_path, name="jobs") as worker,
        httpx.Client(base_url=worker.url, timeout=5.0) as client,
    ):
        worker.wait_for_output("job 1 started")
        assert client.get("/readyz").status_code == 200, worker.output()
        assert _in_flight(client) == (1.0, "serving")
        worker.signal(signal.SIGTERM)
        wait_until(lambda: client.get("/readyz").status_code == 503, 10, "readiness failing", worker.output)
        # The job is still running: the drain waits for it, and the gauge shows it.
        wait_until(lambda: _in_flight(client) == (1.0, "drain"), 10, "the drain phase", worker.output)
        assert worker.proc.poll() is None, worker.output()
        assert "shutdown: drained" not in worker.output()
        release.touch()
        assert worker.wait(timeout=20) == 0, worker.output()
    log = worker.output()
    assert log.count("job ") == 2, log  # one job, started and done: no job is taken after SIGTERM
    assert "(1 request(s) in flight)" in log, log
    assert log.index("job 1 done") < log.index("shutdown: drained after"), log
    assert re.search(r"shutdown: stopped [\d.]+ s after the signal; exit code 0", log), log
