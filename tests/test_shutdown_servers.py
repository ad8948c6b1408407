"""Graceful shutdown under load on real servers: no request lost.

Each server runs as its own process on an ephemeral loopback port. A client that behaves like
a load balancer polls ``/readyz`` every 100 ms and stops sending new requests once a poll
fails, while requests already sent (including 2 s ones) run to completion; SIGTERM arrives
while a 2 s request is in flight.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from healthprobe.shutdown import REPEAT_WINDOW

from .support import INSTALLED, PYTHON, LoadBalancer, ServerProcess, free_port, run_server

pytestmark = pytest.mark.slow

DELAY = 1.0
DRAIN = 4.0
HOOK_TIMEOUT = 1.0
HOOKS = 2  # cleanup_sleep (0.5 s) and cleanup_hang (cut at HOOK_TIMEOUT)
#: Slack for a loaded two-core machine on top of the worst case delay + drain + hooks.
SLACK = 3.0
ENV = {"HP_DELAY": str(DELAY), "HP_DRAIN": str(DRAIN), "HP_HOOK_TIMEOUT": str(HOOK_TIMEOUT)}


def _gunicorn(worker_class: str, app: str, port: int, *extra: str) -> list[str]:
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "-c",
        "python:healthprobe.servers.gunicorn",
        "--workers",
        "2",
        "--worker-class",
        worker_class,
        *extra,
        "--graceful-timeout",
        "15",
        "--bind",
        f"127.0.0.1:{port}",
        app,
    ]


@dataclass(frozen=True)
class Server:
    """How to start one server and what to expect of it.

    ``ready`` is a line each of the ``workers`` logs once it serves (``None``: one worker,
    ready once ``/readyz`` answers 200). ``latency`` is how long, in seconds, the process
    Kubernetes signals may take to pass the signal on to its workers; ``delay`` the
    coordinator's delay, long enough to observe a 503 after that latency.
    ``second_signal`` is whether the signalled process acts on a second signal.
    """

    command: Callable[[int], list[str]]
    workers: int = 1
    slow_senders: int = 2
    ready: str | None = None
    latency: float = 0.0
    delay: float = DELAY
    second_signal: bool = True


def _asgi(mode: str) -> Callable[[int], list[str]]:
    return lambda port: [PYTHON, "-m", "tests.apps.shutdown_asgi", mode, str(port)]


SERVERS = {
    "uvicorn-programmatic": Server(_asgi("uvicorn")),
    "uvicorn-installed-first": Server(_asgi("uvicorn-plain")),
    "uvicorn-cli": Server(lambda port: [PYTHON, "-m", "uvicorn", "tests.apps.shutdown_asgi:app", "--port", str(port)]),
    # uvicorn's own supervisor reads its signal queue every 0.5 s and acts on one signal only.
    "uvicorn-cli-workers": Server(
        lambda port: [PYTHON, "-m", "uvicorn", "tests.apps.shutdown_asgi:app", "--port", str(port), "--workers", "2"],
        workers=2,
        ready="Application startup complete.",
        latency=0.5,
        delay=1.5,
        second_signal=False,
    ),
    "uvicorn-workers": Server(_asgi("uvicorn-workers"), workers=2, ready="Application startup complete."),
    "hypercorn": Server(_asgi("hypercorn")),
    "gunicorn-sync": Server(
        lambda port: _gunicorn("sync", "tests.apps.shutdown_wsgi:app", port), 2, 1, ready=INSTALLED
    ),
    "gunicorn-gthread": Server(
        lambda port: _gunicorn("gthread", "tests.apps.shutdown_wsgi:app", port, "--threads", "4"),
        2,
        2,
        ready=INSTALLED,
    ),
    "gunicorn-uvicorn-worker": Server(
        lambda port: _gunicorn("uvicorn_worker.UvicornWorker", "tests.apps.shutdown_asgi:app", port),
        2,
        2,
        ready=INSTALLED,
    ),
    "werkzeug": Server(lambda port: [PYTHON, "-m", "tests.apps.shutdown_wsgi", str(port)]),
}


def _wait_ready(server: ServerProcess, spec: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/readyz").status_code == 200 and (
                    spec.ready is None or server.output().count(spec.ready) >= spec.workers
                ):
                    return
            time.sleep(0.1)
    raise TimeoutError(f"server not ready within {timeout} s:\n{server.output()}")


@contextlib.contextmanager
def _server(name: str, tmp_path: Path, **env: str) -> Iterator[tuple[ServerProcess, Server]]:
    spec = SERVERS[name]
    port = free_port()
    with run_server(
        spec.command(port), port, tmp_path, env={**ENV, "HP_DELAY": str(spec.delay), **env}, name=name
    ) as server:
        _wait_ready(server, spec)
        yield server, spec


@pytest.mark.parametrize("name", list(SERVERS))
def test_sigterm_under_load_loses_no_request(name: str, tmp_path: Path) -> None:
    with _server(name, tmp_path) as (server, spec):
        budget = spec.latency + spec.delay + DRAIN + HOOKS * HOOK_TIMEOUT
        balancer = LoadBalancer(server.url, slow_senders=spec.slow_senders)
        signalled, code, exited = balancer.signal_mid_load(server, budget + SLACK + 5)
        log = server.output()

    long_ones = balancer.assert_nothing_lost(signalled, spec.delay, log, latency=spec.latency)

    # The drain: hooks start only once the long requests served by their process are done
    # (the server cannot have answered one before 2 s after the client sent it).
    hook_starts = {int(pid): float(at) for pid, at in re.findall(r"cleanup_sleep start (\d+) ([\d.]+)", log)}
    for request in long_ones:
        assert request.pid in hook_starts, log
        assert hook_starts[request.pid] >= request.start + 2.0, (request, hook_starts, log)

    # Clean exit, within the bound.
    assert code == 0, log
    assert exited - signalled <= budget + SLACK, log
    assert log.count("cleanup_sleep done") == spec.workers, log
    assert log.count("hook 'cleanup_hang' cut at its bound of 1.0 s") == spec.workers, log
    assert log.count("delay over after") == spec.workers, log


#: Servers whose workers are processes of their own, under the process Kubernetes signals.
WORKER_PROCESSES = [name for name, spec in SERVERS.items() if spec.workers > 1]


@pytest.mark.parametrize("name", WORKER_PROCESSES)
def test_sigterm_to_the_whole_process_group_loses_no_request(name: str, tmp_path: Path) -> None:
    """An init that signals its child's whole process group (dumb-init by default, ``tini
    -g``) gives each worker SIGTERM directly, then again from its supervisor, milliseconds
    later (uvicorn's own supervisor: up to 0.5 s): a copy of the first signal, not a second
    one, so the shutdown is as graceful as when the supervisor alone is signalled."""
    with _server(name, tmp_path) as (server, spec):
        budget = spec.latency + spec.delay + DRAIN + HOOKS * HOOK_TIMEOUT
        balancer = LoadBalancer(server.url, slow_senders=spec.slow_senders)
        signalled, code, exited = balancer.signal_mid_load(server, budget + SLACK + 5, group=True)
        log = server.output()

    # Every worker had the signal at once: readiness fails from the start.
    balancer.assert_nothing_lost(signalled, spec.delay, log)
    assert "second signal" not in log, log
    assert code == 0, log
    assert exited - signalled <= budget + SLACK, log
    # Each worker took the supervisor's copy, if it came apart from the first (a copy that
    # comes while the first is still pending is merged with it), for the same shutdown,
    # and exited 0.
    assert log.count("taken as the same shutdown") <= spec.workers, log
    assert log.count("cleanup_sleep done") == spec.workers, log
    assert log.count("exit code 0") == spec.workers, log
    assert "exited with code" not in log, log  # gunicorn's line for a worker's non-zero status


@pytest.mark.parametrize(
    ("name", "group"),
    [(name, False) for name, spec in SERVERS.items() if spec.second_signal]
    + [(name, True) for name in WORKER_PROCESSES if SERVERS[name].second_signal],
)
def test_second_sigterm_during_delay_exits_at_once(name: str, group: bool, tmp_path: Path) -> None:
    """A second signal after the repeat window, to the signalled process or (``group``) to
    the whole process group, ends every process at once."""
    delay = 5.0
    with _server(name, tmp_path, HP_DELAY=str(delay)) as (server, _):
        send = server.signal_group if group else server.signal
        with httpx.Client(base_url=server.url, timeout=2.0) as client:
            first = time.monotonic()
            send(signal.SIGTERM)
            deadline = first + REPEAT_WINDOW
            while client.get("/readyz").status_code != 503:
                assert time.monotonic() < deadline, "readiness did not fail after SIGTERM"
                time.sleep(0.05)
            assert client.get("/livez").status_code == 200
        # Past the window in which a signal is taken as a copy of the first.
        time.sleep(max(0.0, first + REPEAT_WINDOW + 0.5 - time.monotonic()))
        second = time.monotonic()
        assert second - first < delay, "the second signal must arrive during the delay"
        send(signal.SIGTERM)
        code = server.wait(timeout=delay + 10)
        took = time.monotonic() - second
        log = server.output()
    assert code != 0, log
    assert code == 128 + signal.SIGTERM, log
    assert took < (delay - REPEAT_WINDOW) / 2, log  # did not wait out the delay, let alone the drain and hooks
    assert "second signal SIGTERM" in log or name.startswith("gunicorn"), log
    assert "taken as the same shutdown" not in log or group, log
    assert "cleanup_sleep done" not in log, log


@pytest.mark.parametrize("name", ["uvicorn-workers", "gunicorn-sync"])
def test_a_copy_of_the_first_signal_to_the_supervisor_changes_nothing(name: str, tmp_path: Path) -> None:
    """A signal to the supervisor within the repeat window of the first (here 3 s) is a copy
    of it: the supervisor neither passes it on nor exits, and the shutdown stays graceful.
    gunicorn's master knows the application's window when the application is preloaded."""
    window = 3.0
    port = free_port()
    command = SERVERS[name].command(port)
    if name.startswith("gunicorn"):
        command.insert(command.index("--bind"), "--preload")
    env = {**ENV, "HP_REPEAT_WINDOW": str(window)}
    with run_server(command, port, tmp_path, env=env, name=name) as server:
        _wait_ready(server, SERVERS[name])
        first = time.monotonic()
        server.signal(signal.SIGTERM)
        # Both workers have it from the supervisor: its handler has run.
        server.wait_for_output("serving on for the", 2, timeout=window)
        copy = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=DELAY + DRAIN + HOOKS * HOOK_TIMEOUT + SLACK + 5)
        log = server.output()
    assert copy - first < window, log
    assert code == 0, log
    assert "second signal" not in log, log
    assert "taken as the same shutdown" not in log, log  # not passed on to the workers
    assert log.count("cleanup_sleep done") == 2, log


def test_gunicorn_sync_serves_connections_queued_behind_a_busy_worker(tmp_path: Path) -> None:
    """A connection that arrives during the delay while the only worker is busy waits in the
    listen backlog; the worker must still accept and answer it before it exits, or the
    connection is reset when the socket closes."""
    import threading

    port = free_port()
    command = _gunicorn("sync", "tests.apps.shutdown_wsgi:app", port)
    command[command.index("--workers") + 1] = "1"
    with run_server(command, port, tmp_path, env=ENV, name="gunicorn-sync-1") as server:
        _wait_ready(server, Server(lambda _: command))
        results: dict[str, int | str] = {}

        def get(path: str, after: float) -> None:
            time.sleep(after)
            try:
                with httpx.Client(base_url=server.url, timeout=15.0) as client:
                    results[path] = client.get(path).status_code
            except httpx.HTTPError as exc:
                results[path] = f"{type(exc).__name__}: {exc}"

        server.signal(signal.SIGTERM)
        # Inside the 1 s delay: a 2 s request occupies the worker, then a fast one queues.
        threads = [threading.Thread(target=get, args=("/slow", 0.2)), threading.Thread(target=get, args=("/", 0.5))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        code = server.wait(timeout=DELAY + DRAIN + HOOKS * HOOK_TIMEOUT + SLACK + 5)
        log = server.output()
    assert results == {"/slow": 200, "/": 200}, log
    assert code == 0, log


def test_requests_the_server_cuts_at_its_bound_are_not_logged_as_a_clean_drain(tmp_path: Path) -> None:
    """uvicorn cancels what is still running at its graceful-shutdown bound (set from the
    drain bound, rounded down to whole seconds here): the log must say so."""
    import threading

    with _server("uvicorn-programmatic", tmp_path, HP_DELAY="0", HP_DRAIN="1.4") as (server, _):
        outcome: list[object] = []

        def slow() -> None:
            try:
                with httpx.Client(base_url=server.url, timeout=10.0) as client:
                    outcome.append(client.get("/slow").status_code)
            except httpx.HTTPError as exc:
                outcome.append(type(exc).__name__)

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.3)  # the 2 s request is in flight
        server.signal(signal.SIGTERM)
        server.wait(timeout=15)
        thread.join(15)
        log = server.output()
    assert outcome and outcome[0] != 200, (outcome, log)
    assert "1 request(s) cancelled by the server unfinished" in log, log
    assert "drained after" not in log, log


def _worker_pids(log: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", log)]


@pytest.mark.parametrize("name", ["uvicorn-workers", "uvicorn-cli-workers"])
def test_connections_after_every_worker_stopped_accepting(name: str, tmp_path: Path) -> None:
    """Once every worker has closed its listener, a new connection is refused at once under
    healthprobe's supervisor, which closed its own copy of the socket at the signal. uvicorn's
    supervisor keeps its copy until it exits: the kernel accepts the connection into that
    copy's backlog, where nothing accepts it, and resets it when the supervisor exits."""
    import threading

    with _server(name, tmp_path) as (server, _):
        slow: list[int] = []

        def keep_a_worker_draining() -> None:
            with httpx.Client(base_url=server.url, timeout=15.0) as client:
                slow.append(client.get("/slow").status_code)

        thread = threading.Thread(target=keep_a_worker_draining)
        thread.start()
        time.sleep(0.3)  # the 2 s request is in flight
        server.signal(signal.SIGTERM)
        if name == "uvicorn-workers":
            server.wait_for_output("passed on to 2 worker(s)", timeout=10.0)  # logged once its own copy is closed
        server.wait_for_output("Shutting down", 2, timeout=10.0)  # each worker closes its listener next
        time.sleep(0.5)
        error: httpx.HTTPError | None = None
        try:
            with httpx.Client(base_url=server.url, timeout=15.0) as client:
                client.get("/")
        except httpx.HTTPError as exc:
            error = exc
        code = server.wait(timeout=20)
        thread.join(15)
        log = server.output()
    assert slow == [200], log
    assert code == 0, log
    if name == "uvicorn-workers":
        assert isinstance(error, httpx.ConnectError), (error, log)
    else:
        assert error is not None and not isinstance(error, httpx.ConnectError), (error, log)


@pytest.mark.parametrize(("name", "expected"), [("uvicorn-workers", 128 + signal.SIGKILL), ("uvicorn-cli-workers", 0)])
def test_supervisor_exit_status_after_a_worker_was_killed(name: str, expected: int, tmp_path: Path) -> None:
    """healthprobe's supervisor exits with the status of a worker that did not stop cleanly;
    uvicorn's exits 0 whatever its workers did."""
    with _server(name, tmp_path) as (server, _):
        pids = _worker_pids(server.output())
        assert len(pids) == 2, server.output()
        server.signal(signal.SIGTERM)
        # Both workers are in their delay and the supervisor will start no other one.
        server.wait_for_output("serving on for the", 2, timeout=10.0)
        server.wait_for_output(
            "passed on to 2 worker(s)" if name == "uvicorn-workers" else "Received SIGTERM", timeout=10.0
        )
        os.kill(pids[0], signal.SIGKILL)
        code = server.wait(timeout=DELAY + DRAIN + HOOKS * HOOK_TIMEOUT + SLACK + 5)
        log = server.output()
    assert code == expected, log
    assert log.count("cleanup_sleep done") == 1, log  # the other worker stopped cleanly


def test_uvicorn_supervisor_does_not_act_on_a_second_signal(tmp_path: Path) -> None:
    """uvicorn's own supervisor reads no signal once it waits for its workers: a second
    SIGTERM changes nothing, and the workers complete their sequence, within their own
    bound. healthprobe's supervisor exits at once instead (the parametrized test above)."""
    delay = 3.0
    with _server("uvicorn-cli-workers", tmp_path, HP_DELAY=str(delay)) as (server, _):
        first = time.monotonic()
        server.signal(signal.SIGTERM)
        server.wait_for_output("Received SIGTERM", timeout=10.0)
        server.wait_for_output("serving on for the", 2, timeout=10.0)
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=delay + DRAIN + HOOKS * HOOK_TIMEOUT + SLACK + 5)
        took = time.monotonic() - first
        log = server.output()
    assert code == 0, log
    assert took >= delay, log
    assert "second signal" not in log, log
    assert log.count("cleanup_sleep done") == 2, log


def test_run_workers_needs_the_app_as_an_import_string() -> None:
    import uvicorn

    from healthprobe.servers.uvicorn import run_workers

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("never served")

    with pytest.raises(TypeError, match="import string"):
        run_workers(uvicorn.Config(app, port=free_port(), workers=2))
    with pytest.raises(ValueError, match="repeat_window"):
        run_workers(uvicorn.Config("tests.apps.shutdown_asgi:app", port=free_port(), workers=2), repeat_window=-1)
