"""docs/checks.md run as written: each code block is read from the page and given the names it
assumes, with the page's hosts and ports moved to this machine's.

* The first block against the machine's PostgreSQL and Redis, its disk path a temporary
  directory: readiness and liveness pass with every check it adds.
* The heartbeat loop, with a queue of three jobs: it beats once per job and its probe
  server's ``/livez`` passes, then stops with the registry's lifecycle.
* ``event_loop_lag`` in the lifespan of a Starlette app under uvicorn: a route that blocks
  the loop fails ``/livez`` on the probe server, which answers meanwhile, and it passes
  again once the loop runs.

Run elsewhere: the check that swallows its cancellation
(tests/test_stubborn_checks.py::test_the_example_of_the_docs_is_answered_at_its_deadline_and_abandoned_once)
and the loop with declared waits
(tests/test_heartbeat_waiting.py::test_the_checks_page_loop_runs_as_written).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

import healthprobe
from healthprobe import HealthRegistry, Status, checks
from healthprobe.testing import free_port

from . import doc_pages
from .support import BIN, ROOT, run_server, wait_until

PAGE = doc_pages.page("checks.md")
FIRST = doc_pages.block(PAGE, "python", starts="from healthprobe import HealthRegistry, checks\n")
HEARTBEAT = doc_pages.block(PAGE, "python", starts="hb = checks.heartbeat(30.0)\n")
LAG = doc_pages.block(PAGE, "python", starts="lag = checks.event_loop_lag(")
#: Read by tests/test_stubborn_checks.py (the same section and block).
STUBBORN = doc_pages.blocks(
    PAGE.split("### A check that swallows its cancellation", 1)[1].split("\n## ", 1)[0], "python"
)[0]
#: Read by tests/test_heartbeat_waiting.py (the first block of the section).
DECLARED_WAITS = doc_pages.blocks(PAGE.split("#### Declared waits", 1)[1], "python")[0]

#: The page's dependencies and path, and this machine's.
DATABASE = ("postgresql://app:pw@db:5432/app", "postgresql://postgres@127.0.0.1:5432/test")
CACHE = ("redis://cache:6379/0", "redis://127.0.0.1:6379/0")
DISK = '"/var/lib/app"'
#: The port the page serves probes on, moved to a free one for each run.
PAGE_PORT = "port=8081"


def test_every_block_of_the_page_is_run() -> None:
    """Each block of the page is one a test runs (here, or where the module docstring says):
    a block added to the page fails here until a test runs it."""
    assert sorted(doc_pages.blocks(PAGE)) == sorted([FIRST, STUBBORN, HEARTBEAT, DECLARED_WAITS, LAG])
    assert "@registry.check(timeout=0.5)" in STUBBORN and "hb.waiting(" in DECLARED_WAITS


def _run(source: str, **names: Any) -> dict[str, Any]:
    """Execute a block of the page with the names it assumes; its namespace afterwards."""
    namespace: dict[str, Any] = dict(names)
    exec(compile(source, "docs/checks.md", "exec"), namespace)
    return namespace


# -- the first block ------------------------------------------------------------------------------


def test_the_first_block_passes_against_the_machines_services(
    postgres_up: None, redis_up: None, tmp_path: Path
) -> None:
    source = FIRST
    for page_value, here in (DATABASE, CACHE, (DISK, repr(str(tmp_path)))):
        assert source.count(page_value) == 1, (page_value, FIRST)
        source = source.replace(page_value, here)
    registry: HealthRegistry = _run(source)["registry"]
    registry.mark_started()
    readiness = registry.run("readiness")
    liveness = registry.run("liveness")
    assert {name: state.status for name, state in readiness.checks.items()} == {
        "database": Status.PASS,
        "cache": Status.PASS,
        "disk": Status.PASS,
    }, readiness
    assert {name: state.status for name, state in liveness.checks.items()} == {
        "memory": Status.PASS,
        "worker": Status.PASS,
    }, liveness
    assert readiness.status is Status.PASS and liveness.status is Status.PASS
    assert readiness.checks["disk"].result.observed_unit == "bytes"


# -- the heartbeat loop ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_heartbeat_loop_beats_per_job_and_its_probe_server_answers() -> None:
    port = free_port()
    assert HEARTBEAT.count(PAGE_PORT) == 1, HEARTBEAT
    registry = HealthRegistry()
    answers: list[tuple[int, dict[str, Any]]] = []
    namespace: dict[str, Any] = {"registry": registry, "checks": checks, "healthprobe": healthprobe, "stopping": False}

    class Queue:
        def __init__(self) -> None:
            self.jobs = 0

        def get(self, timeout: float) -> int:
            assert timeout == 5
            self.jobs += 1
            return self.jobs

    def handle(job: int) -> None:
        live = httpx.get(f"http://127.0.0.1:{port}/livez", params={"format": "json"}, timeout=5.0)
        answers.append((live.status_code, live.json()["checks"]["worker"][0]))
        namespace["stopping"] = job == 3

    namespace.update(queue=Queue(), handle=handle)
    try:
        exec(compile(HEARTBEAT.replace(PAGE_PORT, f"port={port}"), "docs/checks.md", "exec"), namespace)
        assert namespace["hb"].beats == 3
        assert [status for status, _ in answers] == [200, 200, 200]
        for _, worker in answers:
            assert worker["status"] == "pass" and worker["observedUnit"] == "s"
            assert 0 <= worker["observedValue"] < 30.0
    finally:
        registry.begin_drain()
        registry.mark_stopped()  # stops the probe server the block started
    wait_until(lambda: _refused(port), 10, "the probe server stopped")


def _refused(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2.0)
    except httpx.ConnectError:
        return True
    return False


# -- event_loop_lag under uvicorn -----------------------------------------------------------------

#: A Starlette app around the block: the names it assumes, and a route ``/block`` that blocks
#: the event loop until the file named by ``RELEASE`` exists.
LAG_APP = """\
import contextlib
import os
import time

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import healthprobe
from healthprobe import HealthRegistry, checks

registry = HealthRegistry()

{block}

async def block(request):
    deadline = time.monotonic() + 30
    while not os.path.exists(os.environ["RELEASE"]) and time.monotonic() < deadline:
        time.sleep(0.02)  # on the event loop: nothing else runs on it meanwhile
    return PlainTextResponse("unblocked")


app = Starlette(routes=[Route("/block", block)], lifespan=lifespan)
"""


def _event_loop(client: httpx.Client) -> tuple[int, str]:
    answer = client.get("/livez", params={"format": "json"})
    return answer.status_code, answer.json()["checks"]["event-loop"][0]["status"]


@pytest.mark.slow
def test_event_loop_lag_fails_liveness_while_a_route_blocks_the_loop(tmp_path: Path) -> None:
    probe_port, app_port = free_port(), free_port()
    assert LAG.count(PAGE_PORT) == 1, LAG
    (tmp_path / "lag_app.py").write_text(LAG_APP.format(block=LAG.replace(PAGE_PORT, f"port={probe_port}")))
    release = tmp_path / "release"
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "RELEASE": str(release)}
    argv = [str(BIN / "uvicorn"), "lag_app:app", "--host", "127.0.0.1", "--port", str(app_port)]
    with (
        run_server(argv, app_port, tmp_path, env=env, cwd=tmp_path, name="uvicorn") as server,
        httpx.Client(base_url=f"http://127.0.0.1:{probe_port}", timeout=5.0) as probes,
        httpx.Client(base_url=server.url, timeout=30.0) as app,
    ):
        # The sampler runs: the check passes (before its first record it only warns).
        wait_until(lambda: _event_loop(probes) == (200, "pass"), 10, "the sampler running", server.output)
        blocked: list[httpx.Response] = []
        request = threading.Thread(target=lambda: blocked.append(app.get("/block")))
        request.start()
        try:
            wait_until(lambda: _event_loop(probes) == (503, "fail"), 15, "liveness failing", server.output)
        finally:
            release.touch()
            request.join(30)
        assert [answer.text for answer in blocked] == ["unblocked"], server.output()
        wait_until(lambda: _event_loop(probes) == (200, "pass"), 10, "liveness passing again", server.output)
        server.signal(signal.SIGTERM)  # no coordinator: uvicorn ends as the signal would
        assert server.wait(timeout=20) in (0, -signal.SIGTERM), server.output()
        assert "Application shutdown complete." in server.output()  # the lifespan's lag.stop()
