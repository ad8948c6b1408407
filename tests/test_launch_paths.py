"""SIGTERM on every common launch path (the rows of :mod:`tests.launch_paths`), with real processes.

* ``graceful`` rows: under load from a client that behaves like a load balancer (it polls
  ``/readyz`` every 100 ms and stops sending once a poll fails), SIGTERM arrives while a 2 s
  request is in flight: no request fails, ``/readyz`` answers 503 and ``/livez`` 200 during
  the delay, the request in flight is answered, every worker runs its hooks after its drain,
  and the process exits 0 within the budget.
* ``warns`` rows: one request to ``/livez``, then a ``WARNING`` of ``healthprobe.shutdown``
  naming the fix must be in the output within a few seconds. What SIGTERM then does (exit
  code, time, ``/readyz``, a request in flight, the log) is recorded for the documentation
  (printed, and as the test's ``sigterm`` property).
* ``development`` rows: after SIGTERM to the launched process, or SIGINT to its whole process
  group as a terminal's Ctrl-C sends it, every process of the group is gone within 3 s, and
  ``/readyz`` was not held at 503 for a delay.

Each server runs in a session of its own; every process of it is killed at the end, whatever
the outcome.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .launch_paths import DELAY, DEV_DELAY, DEV_EXIT_BOUND, ENV, FLASK, LaunchPath, rows
from .support import BIN, INSTALLED, LoadBalancer, Outcome, ServerProcess, free_port, run_server

pytestmark = pytest.mark.slow

#: The type of pytest's ``record_property`` fixture.
RecordProperty = Callable[[str, object], None]

#: Seconds of slack on a loaded two-core machine on top of a row's worst-case budget.
SLACK = 3.0
#: Seconds a ``warns`` row has to log its warning after the first request.
WARNING_WAIT = 5.0
#: Seconds a ``warns`` row is given to exit after SIGTERM before it is recorded as not exiting.
WARNS_EXIT_WAIT = 20.0


@contextlib.contextmanager
def _launched(row: LaunchPath, tmp_path: Path, suffix: str = "") -> Iterator[ServerProcess]:
    """Start ``row`` on a free port, wait until the port accepts, and at the end kill every
    process of its process group (children a supervisor or reloader left behind included)."""
    port = free_port()
    with run_server(
        row.command(port), port, tmp_path, env=dict(row.env), name=f"{row.name}{suffix}", timeout=30
    ) as server:
        try:
            yield server
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)


def _pid_of(response: httpx.Response) -> int | None:
    words = response.text.split()
    return int(words[-1]) if response.status_code == 200 and words and words[-1].isdigit() else None


def _answering_pids(url: str, path: str, count: int) -> set[int]:
    """Send ``count`` requests to ``path`` at once, each on a new connection; the process
    ids that answered them."""
    pids: set[int] = set()

    def get() -> None:
        with contextlib.suppress(httpx.HTTPError), httpx.Client(base_url=url, timeout=5.0) as client:
            pid = _pid_of(client.get(path))
            if pid is not None:
                pids.add(pid)

    threads = [threading.Thread(target=get) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return pids


def _wait_serving(server: ServerProcess, row: LaunchPath, timeout: float = 30.0) -> None:
    """Wait up to ``timeout`` seconds until ``/readyz`` answers 200 and every one of the row's
    workers has answered a request (concurrent requests on new connections, so that each
    worker gets some)."""
    deadline = time.monotonic() + timeout
    pids: set[int] = set()
    ready = False
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.output()}")
        with contextlib.suppress(httpx.HTTPError), httpx.Client(base_url=server.url, timeout=2.0) as client:
            ready = ready or client.get("/readyz").status_code == 200
        if ready:
            pids |= _answering_pids(server.url, row.warm_path, 2 * row.workers)
            if len(pids) >= row.workers:
                return
        time.sleep(0.1)
    raise TimeoutError(
        f"not serving within {timeout} s (readyz 200: {ready}, workers seen: {pids}):\n{server.output()}"
    )


def _wait_installed(server: ServerProcess, row: LaunchPath, timeout: float = 5.0) -> bool:
    """Whether every serving process logged that its coordinator is installed, within
    ``timeout`` seconds."""
    try:
        server.wait_for_output(INSTALLED, row.workers, timeout)
    except AssertionError:
        return False
    return True


def _wait_answers(server: ServerProcess, timeout: float = 30.0) -> None:
    """Wait up to ``timeout`` seconds until ``/`` answers 200 (behind a reloader, the server
    process it started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.output()}")
        with contextlib.suppress(httpx.HTTPError), httpx.Client(base_url=server.url, timeout=2.0) as client:
            if client.get("/").status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"/ did not answer 200 within {timeout} s:\n{server.output()}")


def _wait_exit(server: ServerProcess, timeout: float) -> int | None:
    """The exit code, or ``None`` when the process is still running after ``timeout`` seconds."""
    try:
        return server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# -- recording what a signal did ------------------------------------------------------------------


def _label(outcome: Outcome) -> str:
    if outcome.status is not None:
        return str(outcome.status)
    kind = (outcome.error or "error").split(":")[0]
    return {"ConnectError": "refused", "ConnectTimeout": "connect timeout"}.get(kind, kind)


def _timeline(outcomes: list[Outcome], path: str, since: float) -> str:
    """The answers to ``path`` from just before ``since`` (``time.time()``) on, as runs of
    one answer: ``200 -0.08..+0.02 s, 503 +0.12..+0.98 s, refused +1.08..+1.18 s``."""
    runs: list[list[object]] = []
    for outcome in outcomes:
        if outcome.path != path or outcome.start < since - 0.3:
            continue
        label, at = _label(outcome), outcome.start - since
        if runs and runs[-1][0] == label:
            runs[-1][2] = at
        else:
            runs.append([label, at, at])
    return ", ".join(f"{label} {first:+.2f}..{last:+.2f} s" for label, first, last in runs) or "no answer"


def _failures(requests: list[Outcome], since: float) -> str:
    """How many of ``requests`` failed, by path and answer, with when the first and last
    of each kind started relative to ``since`` (``time.time()``)."""
    kinds: dict[tuple[str, str], list[float]] = {}
    for request in requests:
        if request.status != 200:
            kinds.setdefault((request.path, _label(request)), []).append(request.start - since)
    detail = "; ".join(
        f"{len(times)} x {path} {label} ({min(times):+.2f}..{max(times):+.2f} s)"
        for (path, label), times in kinds.items()
    )
    failed = sum(len(times) for times in kinds.values())
    return f"{failed} of {len(requests)} failed" + (f": {detail}" if detail else "")


def _log_after(log: str, offset: int, limit: int = 60) -> str:
    """The output from ``offset`` on, without access-log lines (the probes' polling)."""
    lines = [line for line in log[offset:].splitlines() if '"GET ' not in line and "GET /" not in line]
    if len(lines) > limit:
        lines = [*lines[:limit], f"... {len(lines) - limit} more line(s)"]
    return "\n".join(lines)


@dataclass
class Record:
    """What a signal did to a launched server: its exit code (``None``: still running
    ``took`` seconds after the signal), the answers to the probes, the fate of the requests
    sent, the processes of its group left behind, and the log after the signal."""

    row: str
    signal: str
    code: int | None
    took: float
    readyz: str
    livez: str
    requests: str
    left_behind: str
    log: str
    notes: str = ""

    def __str__(self) -> str:
        exited = f"exit code {self.code} after {self.took:.2f} s" if self.code is not None else "still running"
        if self.code is None:
            exited += f" after {self.took:.1f} s (killed)"
        return (
            f"{self.row}: {self.signal}: {exited}\n"
            f"  /readyz: {self.readyz}\n  /livez: {self.livez}\n"
            f"  requests: {self.requests}\n  processes left behind: {self.left_behind}\n"
            + (f"  {self.notes}\n" if self.notes else "")
            + "  log after the signal:\n"
            + "\n".join(f"    {line}" for line in self.log.splitlines())
        )


def _group_members(pgid: int) -> list[tuple[int, str, str]]:
    """``(pid, state, command line)`` of every process of the process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid:
            members.append((int(entry.name), fields[0], cmdline))
    return members


def _wait_group_gone(pgid: int, timeout: float) -> list[tuple[int, str, str]]:
    """Wait up to ``timeout`` seconds for the process group ``pgid`` to be empty
    (``os.killpg(pgid, 0)`` raising ``ProcessLookupError``). Returns the processes still in
    it, zombies left out (an orphan's exit status is collected by the machine's init, which
    may take its time or never do it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        if time.monotonic() > deadline:
            return [member for member in _group_members(pgid) if member[1] != "Z"]
        time.sleep(0.05)


def _slow_request(url: str, into: list[str]) -> threading.Thread:
    def send() -> None:
        try:
            with httpx.Client(base_url=url, timeout=30.0) as client:
                response = client.get("/slow")
                into.append(f"{response.status_code} {response.text.strip()[:40]!r}")
        except httpx.HTTPError as exc:
            into.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _signal_and_record(
    server: ServerProcess, row: LaunchPath, how: str, wait: float, *, in_flight: bool
) -> tuple[Record, float, list[Outcome]]:
    """Send the signal (``sigterm``: SIGTERM to the launched process; ``sigint-group``:
    SIGINT to its whole process group) while ``/readyz`` and ``/livez`` are polled every
    100 ms and, if ``in_flight``, a 2 s request runs; wait up to ``wait`` seconds for the exit.
    Returns the record, the signal's ``time.time()`` and the probes' answers."""
    poller = LoadBalancer(server.url, fast_senders=0, slow_senders=0)
    poller.start()
    answers: list[str] = []
    slow = None
    try:
        time.sleep(0.3)  # some answers before the signal
        if in_flight:
            slow = _slow_request(server.url, answers)
            time.sleep(0.3)  # the request is being served
        offset = len(server.output())
        signalled = time.time()
        if how == "sigterm":
            server.signal(signal.SIGTERM)
        else:
            server.signal_group(signal.SIGINT)
        code = _wait_exit(server, wait)
        took = time.time() - signalled
        left = _wait_group_gone(server.proc.pid, 0.5 if code is not None else 0.0)
        if slow is not None:
            slow.join(5)
        time.sleep(0.2)  # the poller's view of the process gone
    finally:
        poller.stop()
    record = Record(
        row.name,
        "SIGTERM to the launched process" if how == "sigterm" else "SIGINT to the process group",
        code,
        took,
        _timeline(poller.probes, "/readyz", signalled),
        _timeline(poller.probes, "/livez", signalled),
        f"a 2 s request in flight at the signal: {answers[0] if answers else 'no outcome'}"
        if in_flight
        else "none sent",
        "; ".join(f"{pid} {state} {cmd}" for pid, state, cmd in left) or "none",
        _log_after(server.output(), offset),
    )
    return record, signalled, poller.probes


def _report(record: Record, record_property: RecordProperty) -> None:
    print(record)  # shown with -rA, and with the failure report
    record_property("sigterm", str(record))


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("row", rows("graceful"), ids=lambda row: row.name)
def test_graceful_launch_path_loses_no_request(
    row: LaunchPath, tmp_path: Path, record_property: RecordProperty
) -> None:
    with _launched(row, tmp_path) as server:
        _wait_serving(server, row)
        installed = _wait_installed(server, row)
        balancer = LoadBalancer(server.url, slow_senders=row.slow_senders)
        offset = len(server.output())
        wait = row.budget + SLACK + 5
        sent: list[float] = []
        send = server.signal

        def note_and_send(sig: int = signal.SIGTERM) -> None:
            sent.append(time.time())
            send(sig)

        server.signal = note_and_send  # type: ignore[method-assign]
        try:
            signalled, code, exited = balancer.signal_mid_load(server, wait)
        except subprocess.TimeoutExpired:  # still running: recorded, then killed
            signalled, code, exited = sent[0], None, time.time()
        log = server.output()

    record = Record(
        row.name,
        "SIGTERM to the launched process under load",
        code,
        exited - signalled,
        _timeline(balancer.probes, "/readyz", signalled),
        _timeline(balancer.probes, "/livez", signalled),
        _failures(balancer.requests, signalled),
        "not checked",
        _log_after(log, offset),
    )
    _report(record, record_property)

    assert installed, f"{INSTALLED!r} logged {log.count(INSTALLED)} time(s), expected {row.workers}:\n{log}"
    assert code is not None, f"still running {wait:.1f} s after SIGTERM:\n{log}"
    long_ones = balancer.assert_nothing_lost(signalled, DELAY, log, latency=row.latency)

    # Drained before the hooks: a process starts its hooks only once the 2 s requests it
    # served are done (it cannot have answered one before 2 s after the client sent it).
    hook_starts = {int(pid): float(at) for pid, at in re.findall(r"cleanup_sleep start (\d+) ([\d.]+)", log)}
    for request in long_ones:
        assert request.pid in hook_starts, (request, log)
        assert hook_starts[request.pid] >= request.start + 2.0, (request, hook_starts, log)

    assert code == 0, log
    assert exited - signalled <= row.budget + SLACK, log
    assert log.count("cleanup_sleep done") == row.workers, log
    for line in row.log_lines:
        assert line in log, (line, log)


def _warning(substring: str) -> re.Pattern[str]:
    """A WARNING record of ``healthprobe.shutdown`` containing ``substring``, in the test
    apps' format ``%(asctime)s %(process)d %(name)s %(levelname)s %(message)s``."""
    return re.compile(rf"^\S+ \S+ \d+ healthprobe\.shutdown WARNING .*{re.escape(substring)}.*$", re.MULTILINE)


@pytest.mark.parametrize("row", rows("warns"), ids=lambda row: row.name)
def test_launch_path_that_cannot_shut_down_gracefully_warns(
    row: LaunchPath, tmp_path: Path, record_property: RecordProperty
) -> None:
    assert row.warning is not None
    pattern = _warning(row.warning)
    with _launched(row, tmp_path) as server:
        with httpx.Client(base_url=server.url, timeout=5.0) as client:
            deadline = time.monotonic() + 20.0
            while True:  # one answered request (a server may accept before it serves)
                try:
                    client.get("/livez")
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, server.output()
                    time.sleep(0.1)
        deadline = time.monotonic() + WARNING_WAIT
        while not pattern.search(server.output()) and time.monotonic() < deadline:
            time.sleep(0.05)
        warned = pattern.search(server.output())
        record, _, _ = _signal_and_record(server, row, "sigterm", WARNS_EXIT_WAIT, in_flight=True)
        log = server.output()
    warnings = re.findall(r"^.*healthprobe\.shutdown WARNING .*$", log, re.MULTILINE)
    record.notes = (
        f"WARNING within {WARNING_WAIT:.0f} s of the first /livez: {warned.group(0) if warned else 'none'}\n"
        "  every WARNING of healthprobe.shutdown in the log:\n" + "\n".join(f"    {line}" for line in warnings)
    )
    _report(record, record_property)
    assert warned, f"no WARNING of healthprobe.shutdown containing {row.warning!r}:\n{log}"


@pytest.mark.parametrize(
    ("row", "how"),
    [(row, how) for row in rows("development") for how in ("sigterm", "sigint-group")],
    ids=lambda value: value.name if isinstance(value, LaunchPath) else value,
)
def test_development_server_exits_promptly(
    row: LaunchPath, how: str, tmp_path: Path, record_property: RecordProperty
) -> None:
    with _launched(row, tmp_path, f"-{how}") as server:
        _wait_answers(server)
        # Long enough to see a wrongly applied delay, drain and hooks through.
        record, signalled, probes = _signal_and_record(server, row, how, DEV_DELAY + 10, in_flight=False)
        left = _wait_group_gone(server.proc.pid, max(0.0, signalled + DEV_EXIT_BOUND - time.time()))
        log = server.output()
    _report(record, record_property)

    assert record.code is not None and record.took <= DEV_EXIT_BOUND, f"{record}\n{log}"
    assert not left, f"left behind: {left}\n{log}"
    held = [p for p in probes if p.path == "/readyz" and p.status == 503 and p.start > signalled + 1.0]
    assert not held, f"/readyz held at 503 after the signal: {record.readyz}\n{log}"
    for line in row.log_lines:
        assert line in log, (line, log)


def test_a_worker_its_server_recycles_runs_its_hooks(tmp_path: Path) -> None:
    """gunicorn replaces a worker after ``--max-requests``: no signal reaches healthprobe, and
    the recycled worker's cleanup hooks still run as it exits (plain gunicorn, no
    configuration module), with an INFO line rather than a WARNING."""
    port = free_port()
    command = [str(BIN / "gunicorn"), "-w", "1", "--max-requests", "3", "-b", f"127.0.0.1:{port}", FLASK]
    with run_server(command, port, tmp_path, env=dict(ENV), name="max-requests", timeout=30) as server:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            for _ in range(9):  # three workers' worth: two recycled
                assert client.get("/").status_code == 200
        log = server.wait_for_output("cleanup_sleep done", 2, interval=0.1)
    assert "no shutdown signal received by healthprobe" in log, log
    assert not _warning("no shutdown signal").search(log), log
