"""Async checks that swallow their cancellation.

The reported check, ``while True: try: await asyncio.sleep(5); return True except
CancelledError: continue``, must not break the promise "a probe is always answered by its
deadline": the probe is answered (``timed out``), the check's task is cancelled once and
abandoned (counted in ``CheckStats.abandoned``, logged once with the check's name), never
cancelled again in a busy loop, and the check stays busy until it really ends.

In-process first (asyncio, trio, the private loop of sync callers), then under real servers
(uvicorn, hypercorn's asyncio and trio workers, waitress): the first ``/readyz`` is answered
by the deadline, the process's CPU time over the 5 s after the deadline is that of an idle
server's (read from ``/proc/<pid>/stat``, so it is CPU, not wall-clock), other routes stay
fast, and the abandonment is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from healthprobe import HealthRegistry, Report, Status
from healthprobe._runner import ABANDON_AFTER
from healthprobe.render import render_text
from tests import doc_pages
from tests.support import BIN, ServerProcess, free_port, started_registry, wait_until

#: The deadline of the stubborn checks, in seconds.
TIMEOUT = 0.5
#: The CPU a server may use over the window beyond what the idle server used, as a fraction of
#: one core. A check re-cancelled on every await keeps a core busy (0.96 to 1.00 measured with
#: earlier releases, docs/checks.md); an idle server uses about 0.
CPU_MARGIN = 0.05
#: The window after the deadline over which the CPU time is measured, in seconds.
WINDOW = 5.0

ABANDONED = "still running 1.0 s after it was cancelled at its 0.5 s deadline; abandoned"


def stubborn_asyncio(counter: list[int], seconds: float = 5.0) -> Callable[[], object]:
    """The reported check (sleeping ``seconds``); ``counter[0]`` counts the cancellations
    it swallowed."""

    async def stubborn() -> bool:
        while True:
            try:
                await asyncio.sleep(seconds)
                return True
            except asyncio.CancelledError:
                counter[0] += 1
                continue

    return stubborn


def stubborn_anyio(counter: list[int], seconds: float = 5.0) -> Callable[[], object]:
    """The same loop written with anyio, for trio."""

    async def stubborn() -> bool:
        while True:
            try:
                await anyio.sleep(seconds)
                return True
            except anyio.get_cancelled_exc_class():
                counter[0] += 1
                continue

    return stubborn


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (state no event signals), at most 10 s."""
    with anyio.fail_after(10.0):
        while not condition():  # noqa: ASYNC110 - polls state that no event signals
            await anyio.sleep(0.02)


def started(**checks: Callable[[], object]) -> HealthRegistry:
    """A started registry of ``checks``, each with the :data:`TIMEOUT` deadline and no cache."""
    return started_registry(checks, check_options={"timeout": TIMEOUT, "cache_ttl": 0})


# -- in process ---------------------------------------------------------------------------------


def test_asyncio_probe_is_answered_at_the_deadline_and_the_check_is_cancelled_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = [0]
    registry = started(stubborn=stubborn_asyncio(counter, seconds=2.0))
    state = registry.check_states()[0]

    async def main() -> tuple[float, Report, Report, int, float]:
        begun = time.monotonic()
        first = await registry.run_async("readiness")
        answered = time.monotonic() - begun
        # While the abandoned run goes on, a probe fails at once instead of starting another.
        begun = time.monotonic()
        second = await registry.run_async("readiness")
        quick = time.monotonic() - begun
        # Wait for the abandonment to be counted, then for the check to end on its own.
        await until(lambda: state.stats.abandoned == 1)
        abandoned_while = counter[0]
        await until(lambda: not state.busy)
        return answered, first, second, abandoned_while, quick

    with caplog.at_level(logging.DEBUG, logger="healthprobe"):
        answered, first, second, swallowed, quick = asyncio.run(main())
    assert TIMEOUT <= answered < TIMEOUT + 0.4, answered
    assert first.checks["stubborn"].result.output == "timed out after 0.5 s"
    assert second.checks["stubborn"].result.output == "timed out, previous run still running"
    assert quick < 0.2, quick
    assert swallowed == 1 and counter[0] == 1  # cancelled once, never again
    assert state.stats.abandoned == 1 and state.task is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "abandoned" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].getMessage().startswith(f"check stubborn: {ABANDONED}")
    assert warnings[0].check == "stubborn" and warnings[0].abandoned == 1  # type: ignore[attr-defined]
    assert any("its abandoned run ended" in r.getMessage() for r in caplog.records)


def test_a_check_that_ends_when_cancelled_is_not_abandoned() -> None:
    async def hangs() -> None:
        await asyncio.sleep(30)

    registry = started(hangs=hangs)
    state = registry.check_states()[0]

    async def main() -> Report:
        report = await registry.run_async("readiness")
        await asyncio.sleep(ABANDON_AFTER + 0.2)  # past the moment an abandonment is counted
        return report

    report = asyncio.run(main())
    assert report.checks["hangs"].result.output == "timed out after 0.5 s"
    assert state.stats.abandoned == 0 and not state.busy


def test_trio_probe_is_answered_at_the_deadline_and_the_check_stops_being_cancelled() -> None:
    counter = [0]
    registry = started(stubborn=stubborn_anyio(counter, seconds=2.0))
    state = registry.check_states()[0]
    samples: list[int] = []

    async def main() -> tuple[float, Report]:
        begun = time.monotonic()
        report = await registry.run_async("readiness")
        answered = time.monotonic() - begun
        await until(lambda: state.stats.abandoned == 1)
        samples.append(counter[0])
        await anyio.sleep(0.5)  # a span in which a busy loop would swallow thousands more
        samples.append(counter[0])
        await until(lambda: not state.busy)
        return answered, report

    answered, report = anyio.run(main, backend="trio")
    assert TIMEOUT <= answered < TIMEOUT + 0.4, answered
    assert report.checks["stubborn"].result.output == "timed out after 0.5 s"
    # trio's cancellation is level-triggered: the check swallowed it a bounded number of
    # times in the first scheduling rounds, then was shielded and never cancelled again.
    assert samples[0] >= 1 and samples[0] == samples[1] == counter[0], (samples, counter)
    assert state.stats.abandoned == 1


def test_sync_callers_run_the_check_on_the_private_loop_and_cancel_it_once() -> None:
    counter = [0]
    registry = started(stubborn=stubborn_asyncio(counter, seconds=2.0))
    state = registry.check_states()[0]
    begun = time.monotonic()
    report = registry.run("readiness")
    answered = time.monotonic() - begun
    assert TIMEOUT <= answered < TIMEOUT + 0.4, answered
    assert report.checks["stubborn"].result.timed_out
    cpu = time.process_time()
    wait_until(lambda: state.stats.abandoned == 1, 5.0, "one abandoned run", interval=0.02)
    assert counter[0] == 1
    begun = time.monotonic()
    again = registry.run("readiness")
    assert time.monotonic() - begun < 0.2
    assert again.checks["stubborn"].result.output == "timed out, previous run still running"
    assert time.process_time() - cpu < 0.2  # the private loop is not spinning
    wait_until(lambda: not state.busy, 10.0, "the check ending", interval=0.02)
    assert counter[0] == 1


def test_cancelling_the_probe_cancels_the_probe_not_the_run_it_started() -> None:
    calls = 0
    entered: list[asyncio.Event] = []

    async def slow() -> bool:
        nonlocal calls
        calls += 1
        entered[0].set()
        await asyncio.sleep(0.3)
        return True

    registry = HealthRegistry()
    registry.mark_started()
    registry.add_check("slow", slow, timeout=3.0, cache_ttl=0)

    async def main() -> Report:
        entered.append(asyncio.Event())
        task = asyncio.create_task(registry.run_async("readiness"))
        await entered[0].wait()
        task.cancel()  # a native cancellation of the probe that started the run
        with pytest.raises(asyncio.CancelledError):
            await task
        return await registry.run_async("readiness")  # joins the run still in flight

    report = asyncio.run(main())
    assert report.checks["slow"].status is Status.PASS and calls == 1


def test_the_example_of_the_docs_is_answered_at_its_deadline_and_abandoned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The check of docs/checks.md ("A check that swallows its cancellation"), as written
    there, with the answer and the log line the page shows."""
    section = doc_pages.page("checks.md").split("### A check that swallows its cancellation", 1)[1]
    [code] = doc_pages.blocks(section.split("\n## ", 1)[0], "python")
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/checks.md", "exec"), namespace)
    registry: HealthRegistry = namespace["registry"]
    registry.mark_started()
    state = registry.check_states()[0]
    with caplog.at_level(logging.INFO, logger="healthprobe"):
        begun = time.monotonic()
        report = registry.run("readiness")  # on the private loop: nothing waits for it at exit
        assert TIMEOUT <= time.monotonic() - begun < TIMEOUT + 0.4
        assert render_text(report) == "[-]stubborn failed: timed out after 0.5 s\nreadyz check failed\n"
        assert section.count("`503`, `[-]stubborn failed: timed out after 0.5 s`") == 1
        # Counted, then logged, by the private loop's thread.
        wait_until(lambda: any("abandoned" in r.getMessage() for r in caplog.records), 5.0, "the log", interval=0.02)
    assert state.stats.abandoned == 1
    [line] = [r.getMessage() for r in caplog.records if "abandoned" in r.getMessage()]
    documented = (
        "check stubborn: still running 1.0 s after it was cancelled\n"
        "  at its 0.5 s deadline; abandoned, not cancelled again (...)"
    )
    assert documented in section
    assert line.startswith(documented.replace("\n  ", " ").removesuffix(" (...)"))


# -- real servers -------------------------------------------------------------------------------

APP = "tests.apps.stubborn"


def _command(server: str, port: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if server in ("uvicorn", "idle"):
        return [str(BIN / "uvicorn"), f"{APP}:asgi", "--port", str(port)]
    if server == "hypercorn":
        return [str(BIN / "hypercorn"), "--workers", "0", "-b", bind, f"{APP}:asgi"]
    if server == "hypercorn-trio":
        return [str(BIN / "hypercorn"), "-k", "trio", "--workers", "0", "-b", bind, f"{APP}:asgi"]
    assert server == "waitress"
    return [str(BIN / "waitress-serve"), f"--listen={bind}", "--threads=4", f"{APP}:wsgi"]


SERVERS = ["uvicorn", "hypercorn", "hypercorn-trio", "waitress"]


def cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by every process of the group ``pgid``, from
    ``/proc/<pid>/stat`` (fields 14 and 15, in clock ticks)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            text = Path(f"/proc/{entry}/stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class FirstProbe:
    """The first ``/readyz`` of a server: how long it took, its status and JSON body, and the
    CPU time of the server and of the idle server when it was answered."""

    seconds: float
    status: int
    body: dict[str, object]
    answered: float
    cpu: float
    idle_cpu: float


@dataclass
class Fleet:
    servers: dict[str, ServerProcess]
    idle: ServerProcess
    first: dict[str, FirstProbe]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    logs = tmp_path_factory.mktemp("stubborn")
    names = [*SERVERS, "idle"]
    processes = {
        name: ServerProcess(
            _command(name, port := free_port()),
            port,
            env={"HP_STUBBORN": "anyio"} if name == "hypercorn-trio" else None,
            log=logs / f"{name}.log",
        )
        for name in names
    }
    try:
        for process in processes.values():
            process.wait_ready()
        with httpx.Client(timeout=5.0) as client:
            for process in processes.values():  # every app imported and serving
                assert client.get(f"{process.url}/").status_code == 200
        idle = processes["idle"]
        first: dict[str, FirstProbe] = {}

        def probe(name: str) -> None:
            server = processes[name]
            with httpx.Client(timeout=10.0) as client:
                begun = time.monotonic()
                response = client.get(f"{server.url}/readyz?format=json")
                answered = time.monotonic()
                first[name] = FirstProbe(
                    answered - begun,
                    response.status_code,
                    response.json(),
                    answered,
                    cpu_seconds(server.proc.pid),
                    cpu_seconds(idle.proc.pid),
                )

        threads = [threading.Thread(target=probe, args=(name,)) for name in SERVERS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        yield Fleet({name: processes[name] for name in SERVERS}, idle, first)
    finally:
        for process in processes.values():
            process.stop()


def _stats(server: ServerProcess) -> dict[str, dict[str, object]]:
    result: dict[str, dict[str, object]] = httpx.get(f"{server.url}/stats", timeout=5.0).json()
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name", SERVERS)
def test_the_first_readyz_is_answered_by_its_deadline(fleet: Fleet, name: str) -> None:
    first = fleet.first[name]
    assert first.status == 503, first
    assert TIMEOUT <= first.seconds < TIMEOUT + 0.5, first.seconds
    [entry] = first.body["checks"]["stubborn"]  # type: ignore[index]
    assert entry["output"] == "timed out after 0.5 s", entry


@pytest.mark.slow
@pytest.mark.parametrize("name", SERVERS)
def test_while_the_abandoned_run_goes_on_probes_fail_at_once_and_routes_stay_fast(fleet: Fleet, name: str) -> None:
    server = fleet.servers[name]
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        outputs: list[str] = []
        deadline = time.monotonic() + 3.0  # the first result is served from the cache for 1 s
        while time.monotonic() < deadline:
            begun = time.monotonic()
            response = client.get("/readyz?format=json")
            seconds = time.monotonic() - begun
            [entry] = response.json()["checks"]["stubborn"]
            assert response.status_code == 503 and seconds < 0.25, (entry, seconds)
            outputs.append(entry["output"])
            if entry["output"] != "timed out after 0.5 s":
                break
            time.sleep(0.05)
        assert outputs[-1] == "timed out, previous run still running", outputs
        assert _stats(server)["stubborn"]["busy"] is True
        latencies = []
        for _ in range(10):
            begun = time.monotonic()
            assert client.get("/").status_code == 200
            latencies.append(time.monotonic() - begun)
        assert statistics.median(latencies) < 0.1, latencies


@pytest.mark.slow
def test_no_cpu_is_burnt_after_the_deadline(fleet: Fleet) -> None:
    """CPU time over the ``WINDOW`` after each server's first probe was answered (the
    deadline), against the idle server's over the same span."""
    end = max(first.answered for first in fleet.first.values()) + WINDOW
    time.sleep(max(0.0, end - time.monotonic()))  # the measurement's window, not a wait for a condition
    idle_now = cpu_seconds(fleet.idle.proc.pid)
    figures = {}
    for name, first in fleet.first.items():
        span = time.monotonic() - first.answered
        used = (cpu_seconds(fleet.servers[name].proc.pid) - first.cpu) / span
        idle = (idle_now - first.idle_cpu) / span
        figures[name] = (round(used, 3), round(idle, 3))
    print(f"CPU share of a core over {WINDOW:g} s after the deadline (server, idle): {figures}")
    for name, (used, idle) in figures.items():
        assert used <= idle + CPU_MARGIN, (name, figures)


@pytest.mark.slow
@pytest.mark.parametrize("name", SERVERS)
def test_the_abandonment_is_counted_and_logged_once(fleet: Fleet, name: str) -> None:
    server = fleet.servers[name]
    server.wait_for_output(f"check stubborn: {ABANDONED}", timeout=5.0, interval=0.02)
    assert _stats(server)["stubborn"]["abandoned"] == 1
    lines = [line for line in server.output().splitlines() if "abandoned" in line]
    assert len(lines) == 1 and f"check stubborn: {ABANDONED}" in lines[0], server.output()


@pytest.mark.slow
@pytest.mark.parametrize("name", SERVERS)
def test_the_check_runs_again_once_its_abandoned_run_has_ended(fleet: Fleet, name: str) -> None:
    server = fleet.servers[name]
    wait_until(
        lambda: _stats(server)["stubborn"]["busy"] is False,
        10.0,
        "not busy",
        lambda: str(_stats(server)),
        interval=0.02,
    )
    begun = time.monotonic()
    response = httpx.get(f"{server.url}/readyz?format=json", timeout=5.0)
    seconds = time.monotonic() - begun
    [entry] = response.json()["checks"]["stubborn"]
    assert entry["output"] == "timed out after 0.5 s" and TIMEOUT <= seconds < TIMEOUT + 0.5, (entry, seconds)
    # The second abandonment in a row is counted and logged at DEBUG only.
    wait_until(
        lambda: _stats(server)["stubborn"]["abandoned"] == 2,
        5.0,
        "two abandoned",
        lambda: str(_stats(server)),
        interval=0.02,
    )
    assert sum("abandoned" in line for line in server.output().splitlines()) == 1, server.output()
