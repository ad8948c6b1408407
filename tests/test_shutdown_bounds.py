"""The shutdown's bounds hold where they are measured from, and its log says the real numbers.

Each case runs a real server as its own process on an ephemeral loopback port and sends it
real signals:

* gunicorn with one sync worker, busy with a slow request while one more connection waits
  in its listen backlog behind it: the forced exit comes at ``delay + drain_timeout +
  hook_timeout x hooks`` after the signal (the backlog wait is part of the drain, counted
  from the end of the delay), and the seconds the log gives match the seconds measured
  by the clients; when the requests fit in the drain, the queued one is served and the
  drain's and the stop's seconds match too;
* uvicorn, hypercorn, gunicorn, waitress and Werkzeug with a request that outlasts the
  drain: each does what the table of docs/kubernetes.md ("Requests that outlast the
  drain") says, within the budget;
* gunicorn's quick shutdown (``SIGINT`` or ``SIGQUIT`` to the master, ``SIGINT`` to the
  whole process group as a Ctrl-C does): the request in flight, answered ``500``, is
  logged as ended by ``SystemExit`` and the queued connection as reset, never as drained;
* ``uvicorn app:app`` whose cleanup hook leaves a task that swallows its cancellation, or a
  thread that never ends: the process exits :data:`EXIT_TIMEOUT` after the sequence
  stopped, with the exit code it logged;
* a worker loop that comes back late from its drain: its hooks are cut at the end of the
  budget (or not run), so that it exits within it.

Timing assertions compare a logged number with a measured one, with tolerances a loaded
two-core machine keeps.
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.test import EnvironBuilder

from healthprobe import HealthRegistry
from healthprobe.shutdown import EXIT_TIMEOUT, GracefulShutdown
from healthprobe.wsgi import HealthMiddleware

from .support import BIN, INSTALLED, PYTHON, ROOT, ServerProcess, free_port, run_server

pytestmark = pytest.mark.slow

#: Seconds a logged duration may differ from the one the clients measure (signals pass
#: through gunicorn's master; a loaded machine wakes threads late).
TOLERANCE = 0.6
WSGI = "tests.apps.bounds_wsgi:app"


@dataclass
class Answer:
    """What one raw HTTP/1.1 request got: the status (``None`` when the connection ended
    without an answer), the error that ended it, and when it ended (``time.monotonic()``)."""

    status: int | None = None
    error: str | None = None
    ended: float = 0.0


class Client(threading.Thread):
    """Sends ``GET path`` on a connection of its own, once connected (the kernel has then
    queued it in the server's listen backlog, whether or not a worker accepted it), and
    reads until the server closes it."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.answer = Answer()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        self.start()

    def run(self) -> None:
        data = b""
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except OSError as exc:
            self.answer.error = type(exc).__name__
        self.answer.ended = time.monotonic()
        self.sock.close()
        match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
        self.answer.status = int(match.group(1)) if match else None


def _seconds(log: str, pattern: str) -> float:
    """The number the one line matching ``pattern`` (a regex with one group) logged."""
    found = re.findall(pattern, log)
    assert len(found) == 1, (pattern, log)
    return float(found[0])


@contextmanager
def _serve(tmp_path: Path, command: list[str], port: int, env: dict[str, str]) -> Iterator[ServerProcess]:
    """Start ``command`` (serving on ``port``), wait until its coordinator is installed,
    and always kill it in the end."""
    with run_server(command, port, tmp_path, env=env) as server:
        server.wait_for_output(INSTALLED, interval=0.02)
        yield server


def _bounds(delay: float, drain: float, hook_timeout: float, **more: str) -> dict[str, str]:
    return {"HP_DELAY": str(delay), "HP_DRAIN": str(drain), "HP_HOOK_TIMEOUT": str(hook_timeout), **more}


def _gunicorn(port: int, *config: str) -> list[str]:
    """One sync worker serving tests/apps/bounds_wsgi.py."""
    bind = f"127.0.0.1:{port}"
    return [PYTHON, "-m", "gunicorn", *config, "--workers", "1", "--graceful-timeout", "30", "--bind", bind, WSGI]


#: docs/kubernetes.md with its whitespace collapsed, so that lines wrapped in it read whole.
DOCS = " ".join((ROOT / "docs" / "kubernetes.md").read_text().split())


def _as_documented(log: str, start: str) -> None:
    """Assert that ``log`` has a line as docs/kubernetes.md shows the one beginning with
    ``start`` (up to the next backtick: inline code, or a ``text`` block; a trailing
    ``...`` stands for the rest of the line), its numbers (seconds, counts, process ids)
    whatever they are here."""
    begin = DOCS.index(start)
    documented = DOCS[begin : DOCS.index("`", begin)].strip().removesuffix("...").strip()
    pattern = re.sub(r"\d+(?:\\\.\d+)?", lambda _: r"\d+(?:\.\d+)?", re.escape(documented))
    assert re.search(pattern, log), (documented, log)


def _busy_with_one_queued(server: ServerProcess, seconds: float) -> tuple[Client, Client]:
    """A slow request the single worker is serving, and a connection queued behind it."""
    slow = Client(server.port, f"/slow?seconds={seconds}")
    server.wait_for_output("slow start", interval=0.02)
    queued = Client(server.port, "/")
    return slow, queued


# -- gunicorn sync workers: the forced exit and the drain, measured -------------------------------


def test_a_request_that_outlasts_the_budget_ends_at_delay_plus_drain_plus_hooks(tmp_path: Path) -> None:
    """The worker serves a 30 s request while one more connection waits behind it: the
    backlog never empties, so the drain takes its whole bound, and the coordinator ends the
    worker at the end of its budget (delay 0.5 + drain 1.5 + one hook x 1.0 = 3.0 s after
    the signal), saying so with the seconds the clients measure."""
    delay, drain, hook_timeout = 0.5, 1.5, 1.0
    budget = delay + drain + hook_timeout
    port = free_port()
    with _serve(tmp_path, _gunicorn(port), port, _bounds(delay, drain, hook_timeout)) as server:
        slow, queued = _busy_with_one_queued(server, 30)
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=budget + 15)
        exited = time.monotonic()
        slow.join(5)
        queued.join(5)
        log = server.output()

    assert code == 0, log  # gunicorn's master exits 0 whatever its workers' status
    assert "exited with code 1" in log, log  # the worker's: forced
    assert "cleanup ran" not in log, log  # the worker never came back to run its hook
    # Neither connection got an answer; each ended when the worker exited.
    assert slow.answer.status is None and queued.answer.status is None, (slow.answer, queued.answer, log)

    assert _seconds(log, r"delay over after (\d+\.\d+) s") == pytest.approx(delay, abs=0.2), log
    drained = _seconds(log, r"drain bound of 1\.5 s reached with 1 request\(s\) still in flight \((\d+\.\d+) s after")
    assert drained == pytest.approx(drain, abs=0.3), log
    forced = re.search(
        r"not stopped (\d+\.\d+) s after the delay ended \((\d+\.\d+) s after the signal\), at the end of its "
        r"budget of drain 1\.5 s \+ 1 hook\(s\) x 1\.0 s; 1 request\(s\) in flight in phase drain; "
        r"connection\(s\) waiting in the listen backlog are reset unless another worker accepts them; "
        r"exiting with code 1",
        log,
    )
    assert forced, log
    after_delay, after_signal = float(forced.group(1)), float(forced.group(2))
    # The bound counts from the end of the delay, the backlog wait included: not a second
    # drain later.
    assert budget - delay <= after_delay < budget - delay + TOLERANCE, log
    assert budget <= after_signal < budget + TOLERANCE, log
    # What the clients saw matches what the log says.
    for answer in (slow.answer, queued.answer):
        assert answer.ended - signalled == pytest.approx(after_signal, abs=TOLERANCE), (answer, log)
    assert exited - signalled < budget + 2 * TOLERANCE, log
    _as_documented(log, "not stopped 2.50 s after the delay ended")
    _as_documented(log, "shutdown: drain bound of 1.5 s reached with 1 request(s) still in flight (1.50 s")


def test_requests_within_the_drain_are_answered_and_the_logged_seconds_match(tmp_path: Path) -> None:
    """The slow request ends 1.5 s after the delay; the connection queued behind it is
    then accepted and answered, inside the drain. The drain's and the stop's seconds in the
    log are those the clients measure."""
    delay, drain, hook_timeout = 0.5, 5.0, 1.0
    port = free_port()
    with _serve(tmp_path, _gunicorn(port), port, _bounds(delay, drain, hook_timeout)) as server:
        slow, queued = _busy_with_one_queued(server, 2.0)
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=delay + drain + hook_timeout + 15)
        exited = time.monotonic()
        slow.join(5)
        queued.join(5)
        log = server.output()

    assert code == 0, log
    assert (slow.answer.status, queued.answer.status) == (200, 200), (slow.answer, queued.answer, log)
    assert "cleanup ran" in log and "exited with code" not in log, log
    assert "listen backlog" not in log, log
    logged_delay = _seconds(log, r"delay over after (\d+\.\d+) s")
    drained = _seconds(log, r"shutdown: drained after (\d+\.\d+) s")
    stopped = _seconds(log, r"stopped (\d+\.\d+) s after the signal; exit code 0")
    assert logged_delay == pytest.approx(delay, abs=0.2), log
    # The drain ends when the queued request has been answered: measured from the end of
    # the delay, as logged.
    assert queued.answer.ended - signalled == pytest.approx(logged_delay + drained, abs=TOLERANCE), log
    assert drained < drain, log
    assert exited - signalled == pytest.approx(stopped, abs=TOLERANCE), log


# -- docs/kubernetes.md, "Requests that outlast the drain": every row ---------------------------------


@dataclass(frozen=True)
class Outlast:
    """One row of the table: how to serve the app, and what a 6 s request gets when the
    drain bound is 1.5 s, with no delay and one 0.5 s hook (``hook_timeout`` 4 s: a budget
    of 5.5 s)."""

    command: Callable[[int], list[str]]
    status: int | None  # what the client gets: 500, or no answer at all
    code: int  # the exit status of the process signalled
    hooks_run: bool
    cut_logged: bool  # "1 request(s) cancelled by the server unfinished"
    forced: bool = False  # ended by the coordinator at the end of the budget


OUTLAST = {
    "uvicorn": Outlast(
        lambda port: [PYTHON, "-m", "uvicorn", "tests.apps.bounds_asgi:app", "--port", str(port)], 500, 0, True, True
    ),
    "hypercorn": Outlast(lambda port: [PYTHON, "-m", "tests.apps.bounds_asgi", str(port)], 500, 0, True, True),
    "gunicorn-sync": Outlast(_gunicorn, None, 0, False, False, forced=True),
    "waitress-serve": Outlast(
        lambda port: [str(BIN / "waitress-serve"), f"--listen=127.0.0.1:{port}", WSGI],
        None,
        0,
        True,
        False,
    ),
    "werkzeug": Outlast(lambda port: [PYTHON, "-m", "tests.apps.bounds_wsgi", str(port)], None, 0, True, False),
}
OUTLAST_BUDGET = 0.0 + 1.5 + 4.0


@pytest.mark.parametrize("name", list(OUTLAST))
def test_a_request_that_outlasts_the_drain_as_the_table_says(name: str, tmp_path: Path) -> None:
    """What each server does with a request still running at the drain bound, as the
    table of docs/kubernetes.md says, each within the budget, the logged seconds matching
    the measured ones."""
    row = OUTLAST[name]
    port = free_port()
    with _serve(tmp_path, row.command(port), port, _bounds(0, 1.5, 4.0)) as server:
        slow = Client(port, "/slow?seconds=6")
        server.wait_for_output("slow start", interval=0.02)
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=OUTLAST_BUDGET + 15)
        exited = time.monotonic()
        slow.join(5)
        log = server.output()

    assert code == row.code, log
    assert slow.answer.status == row.status, (slow.answer, log)
    drained = _seconds(log, r"drain bound of 1\.5 s reached with 1 request\(s\) still in flight \((\d+\.\d+) s after")
    assert drained == pytest.approx(1.5, abs=0.3), log
    assert ("cleanup ran" in log) == row.hooks_run, log
    assert ("1 request(s) cancelled by the server unfinished" in log) == row.cut_logged, log
    assert exited - signalled < OUTLAST_BUDGET + TOLERANCE, log
    if name == "uvicorn":
        _as_documented(log, "drain bound of 1.5 s reached with 1 request(s) still in flight (1.51 s")
    if row.forced:
        _as_documented(log, "shutdown: not stopped 5.50 s after the delay ended")
        after_signal = _seconds(log, r"not stopped \d+\.\d+ s after the delay ended \((\d+\.\d+) s after the signal\)")
        assert OUTLAST_BUDGET <= after_signal < OUTLAST_BUDGET + TOLERANCE, log
        assert slow.answer.ended - signalled == pytest.approx(after_signal, abs=TOLERANCE), log
    else:
        stopped = _seconds(log, r"stopped (\d+\.\d+) s after the signal; exit code 0")
        assert exited - signalled == pytest.approx(stopped, abs=TOLERANCE), log


# -- gunicorn's quick shutdown: cut, never drained -------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "to", "config"),
    [
        (signal.SIGINT, "master", ()),
        (signal.SIGQUIT, "master", ("-c", "python:healthprobe.servers.gunicorn")),
        (signal.SIGINT, "group", ()),
    ],
    ids=["SIGINT-master", "SIGQUIT-master-config", "SIGINT-group"],
)
def test_gunicorns_quick_shutdown_is_logged_as_cut_not_drained(
    sig: signal.Signals, to: str, config: tuple[str, ...], tmp_path: Path
) -> None:
    """gunicorn's quick shutdown raises ``SystemExit`` in the request being served (gunicorn
    answers it ``500``) and resets the connection queued behind it. The log names the quick
    shutdown, counts the request as ended by ``SystemExit`` and says the queued connection
    is reset; it never says drained. Sent to the whole process group (a Ctrl-C in a
    terminal), the worker's coordinator also began its delay: the log says the server
    stopped during it."""
    port = free_port()
    with _serve(tmp_path, _gunicorn(port, *config), port, _bounds(1.0, 4.0, 1.0)) as server:
        slow, queued = _busy_with_one_queued(server, 30)
        if to == "group":
            server.signal_group(sig)
        else:
            server.signal(sig)
        code = server.wait(timeout=20)
        slow.join(5)
        queued.join(5)
        log = server.output()

    assert code == 0, log
    assert slow.answer.status == 500, (slow.answer, log)
    assert queued.answer.status is None, (queued.answer, log)
    assert "drained after" not in log, log
    quick = [line for line in log.splitlines() if "gunicorn's quick shutdown (SIGQUIT from its master" in line]
    assert len(quick) == 1 and "WARNING" in quick[0], log
    assert "0 request(s) in flight; 1 request(s) ended unfinished by SystemExit" in quick[0], log
    assert "connection(s) waiting in the listen backlog are reset" in quick[0], log
    if to == "group":
        assert "SIGINT received; readiness fails" in log, log
        assert "the server stopped during the delay" in quick[0], log
        assert re.search(r"stopped \d+\.\d+ s after the signal; exit code 0", log), log
        _as_documented(log, "shutdown: the server stopped during the delay, 0.10 s after the signal; gunicorn's quick")
    else:
        assert "readiness did not fail first, no delay and no drain" in quick[0], log
        assert "stopped without a signal" in log, log
        _as_documented(log, "shutdown: gunicorn's quick shutdown (SIGQUIT from its master")
    assert "cleanup ran" in log, log  # the hooks run as the worker exits


# -- a stopped process exits, whatever it left running ---------------------------------------------


@pytest.mark.parametrize("leftover", ["task", "thread"])
def test_a_stopped_uvicorn_exits_within_the_bound_with_its_logged_code(leftover: str, tmp_path: Path) -> None:
    """``uvicorn app:app`` whose cleanup hook leaves a task that swallows its cancellation
    (``asyncio.run`` would wait for it for ever) or a thread that never ends: the process
    exits ``EXIT_TIMEOUT`` seconds after the sequence logged ``stopped``, with the exit code
    it logged, and names what it left running."""
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "tests.apps.bounds_asgi:app", "--port", str(port)]
    with _serve(tmp_path, command, port, _bounds(0.3, 2, 5, HP_LEFTOVER=leftover)) as server:
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=20)
        exited = time.monotonic()
        log = server.output()

    assert f"leaving a {leftover} running" in log, log
    stopped = _seconds(log, r"stopped (\d+\.\d+) s after the signal; exit code 0")
    late = re.search(
        r"still running (\d+\.\d+) s after it stopped \((\d+\.\d+) s after the signal\): left running: (.*); "
        r"exiting with code 0",
        log,
    )
    assert late, log
    assert code == 0, log
    assert float(late.group(1)) == pytest.approx(EXIT_TIMEOUT, abs=0.3), log
    assert float(late.group(2)) == pytest.approx(stopped + EXIT_TIMEOUT, abs=0.3), log
    assert exited - signalled == pytest.approx(float(late.group(2)), abs=TOLERANCE), log
    named = "task 'stubborn' (stubborn)" if leftover == "task" else "thread 'never-ends'"
    assert named in late.group(3), log
    if leftover == "task":
        _as_documented(log, "shutdown: still running 2.00 s after it stopped")


LATE_WORKER = """
import logging, signal, sys, time
from healthprobe import HealthRegistry
from healthprobe.shutdown import GracefulShutdown
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
registry = HealthRegistry()
registry.mark_started()
shutdown = GracefulShutdown(registry, delay=0, drain_timeout=0.3, hook_timeout=1.0)
shutdown.add_hook(lambda: print("flush_metrics ran", flush=True), name="flush_metrics")
shutdown.add_hook(lambda: time.sleep(3600), name="close_pool")
shutdown.add_hook(lambda: time.sleep(0.5), name="close_cache")
shutdown.install()
shutdown.request_started()  # a job that never ends: the drain takes its whole bound
signal.raise_signal(signal.SIGTERM)
while not shutdown.is_stopping:
    time.sleep(0.01)
shutdown.drain()
time.sleep(1.8)  # the loop comes back late, as a server slow to return would
sys.exit(shutdown.finish())
"""


def test_hooks_are_cut_at_the_end_of_the_budget_so_the_process_exits_within_it() -> None:
    """Drain 0.3 s + 3 hooks x 1.0 s = a budget of 3.3 s, of which the worker loop loses
    1.8 s after the drain: ``close_cache`` (0.5 s) runs, ``close_pool`` is cut 0.25 s before
    the end of the budget, ``flush_metrics`` is not run, and the process exits 0, as logged,
    within the budget."""
    import subprocess

    started = time.monotonic()
    proc = subprocess.run([PYTHON, "-c", LATE_WORKER], capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "shutdown: hook 'close_cache' finished in 0.5" in output, output
    cut = _seconds(output, r"hook 'close_pool' cut after (\d+\.\d+) s, at the end of the shutdown budget of 3\.3 s")
    assert cut == pytest.approx(3.3 - 0.25 - 0.3 - 1.8 - 0.5, abs=0.2), output
    assert "flush_metrics ran" not in output, output
    _as_documented(output, "shutdown: hook 'close_pool' cut after")
    _as_documented(output, "shutdown: hook 'flush_metrics' not run")
    assert re.search(r"stopped 3\.\d+ s after the signal; exit code 0", output), output
    assert elapsed < 3.3 + 1.5, output  # the interpreter's start included


# -- the budget and the WSGI middleware's accounting, in this process --------------------------------


def test_the_budget_counts_one_hook_time_even_without_hooks() -> None:
    """What the forced exit waits for, whatever the hooks: the server's return and the
    checks' teardowns get one ``hook_timeout`` when no hook is registered."""
    shutdown = GracefulShutdown(HealthRegistry(), delay=5, drain_timeout=20, hook_timeout=5)
    assert shutdown.budget == 30.0
    shutdown.add_hook(lambda: None)
    assert shutdown.budget == 30.0
    shutdown.add_hook(lambda: None)
    assert shutdown.budget == 35.0


def test_a_request_ended_by_systemexit_is_counted_as_cut() -> None:
    """``SystemExit`` raised by the app, by its body while the server iterates it, or while
    the server writes the body (``close()`` is called with it propagating) ends the request
    as cut, once; an ordinary exception or a client that goes away does not."""
    registry = HealthRegistry()
    shutdown = GracefulShutdown(registry, delay=0)

    def raises(environ: object, start_response: object) -> list[bytes]:
        raise SystemExit(0)

    def streams(environ: object, start_response: object) -> Iterator[bytes]:
        yield b"first"
        raise SystemExit(0)

    def fails(environ: object, start_response: object) -> list[bytes]:
        raise ValueError("a bug")

    def plain(environ: object, start_response: object) -> list[bytes]:
        return [b"ok"]

    environ = EnvironBuilder(path="/").get_environ()
    with pytest.raises(SystemExit):
        HealthMiddleware(raises, registry, shutdown=shutdown)(environ, lambda *a: None)  # type: ignore[arg-type]
    assert (shutdown.in_flight, shutdown.requests_in_flight.cut_text()) == (
        0,
        "1 request(s) ended unfinished by SystemExit",
    )

    body = HealthMiddleware(streams, registry, shutdown=shutdown)(environ, lambda *a: None)  # type: ignore[arg-type]
    chunks = iter(body)
    assert next(chunks) == b"first" and shutdown.in_flight == 1
    with pytest.raises(SystemExit):
        next(chunks)
    getattr(body, "close")()  # noqa: B009 - as PEP 3333 servers call it
    assert (shutdown.in_flight, shutdown.requests_in_flight.cut_text()) == (
        0,
        "2 request(s) ended unfinished by SystemExit",
    )

    body = HealthMiddleware(plain, registry, shutdown=shutdown)(environ, lambda *a: None)  # type: ignore[arg-type]
    try:  # the server's write is interrupted: it closes the body in its finally clause
        try:
            raise KeyboardInterrupt
        finally:
            getattr(body, "close")()  # noqa: B009
    except KeyboardInterrupt:
        pass
    assert shutdown.in_flight == 0
    assert shutdown.requests_in_flight.cut_text() == (
        "1 request(s) ended unfinished by KeyboardInterrupt; 2 request(s) ended unfinished by SystemExit"
    )

    with pytest.raises(ValueError):
        HealthMiddleware(fails, registry, shutdown=shutdown)(environ, lambda *a: None)  # type: ignore[arg-type]
    body = HealthMiddleware(plain, registry, shutdown=shutdown)(environ, lambda *a: None)  # type: ignore[arg-type]
    getattr(body, "close")()  # noqa: B009 - closed unread: the client went away
    assert shutdown.in_flight == 0 and len(shutdown.requests_in_flight.cut) == 3
