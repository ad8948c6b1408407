"""``healthprobe probe --wait``: probing again until the target passes, run as a command against
real servers on loopback, and the examples of docs/kubernetes.md that use it, run as written."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.wrappers import Request, Response

from . import doc_pages
from .support import BIN, free_port, wait_until, werkzeug_server

HEALTHPROBE = str(BIN / "healthprobe")


class Flipping:
    """A WSGI app on ``/readyz`` that answers the statuses of ``script`` in turn (the last one
    for ever after), or, once ``script`` is used up, 503 until :attr:`ready` is set and 200
    after; it records the status of every answer."""

    def __init__(self, *script: int) -> None:
        self.script = list(script)
        self.ready = threading.Event()
        self.answered: list[int] = []
        self.lock = threading.Lock()

    @Request.application
    def __call__(self, request: Request) -> Response:
        with self.lock:
            if self.script:
                status = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            else:
                status = 200 if self.ready.is_set() else 503
            self.answered.append(status)
        body = "ok\n" if status == 200 else "[-]database failed: reason withheld\nreadyz check failed\n"
        return Response(body, status=f"{status} {HTTPStatus(status).phrase}", content_type="text/plain")

    def count(self) -> int:
        with self.lock:
            return len(self.answered)


@contextlib.contextmanager
def serving(app: Any, port: int = 0) -> Iterator[str]:
    """``app`` under Werkzeug's threaded server on ``127.0.0.1:port`` (an ephemeral one for 0),
    in a thread; yields the ``/readyz`` URL."""
    with werkzeug_server(app, port) as url:
        yield f"{url}/readyz"


class Waiting:
    """``healthprobe probe ARGS...`` started as its own process, its stderr read line by line."""

    def __init__(self, *args: str, start_new_session: bool = False, preexec: Any = None) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [HEALTHPROBE, "probe", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=start_new_session,
            preexec_fn=preexec,
        )

    def line(self) -> str:
        """The next line of stderr (``""`` at its end)."""
        assert self.process.stderr is not None
        return self.process.stderr.readline()

    def end(self, timeout: float = 30) -> tuple[int, str, str, float]:
        """Its exit status, the rest of stdout and stderr, and the seconds since its start."""
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err, time.monotonic() - self.started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@contextlib.contextmanager
def waiting(*args: str, **options: Any) -> Iterator[Waiting]:
    command = Waiting(*args, **options)
    try:
        yield command
    finally:
        command.kill()


def run(*args: str, timeout: float = 60) -> tuple[int, str, str, float]:
    """``healthprobe probe ARGS...`` to its end: exit status, stdout, stderr and seconds."""
    started = time.monotonic()
    done = subprocess.run([HEALTHPROBE, "probe", *args], capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


# -- until it passes ---------------------------------------------------------------------------


def test_wait_prints_one_line_per_change_and_exits_0_once_the_target_passes() -> None:
    app = Flipping()
    with serving(app) as url, waiting("--wait", "--period", "0.05", "--timeout", "60", url) as command:
        assert command.line() == f"waiting for {url}: 503 Service Unavailable\n"
        wait_until(lambda: app.count() >= 5, 20, "five attempts")  # five failing attempts, one line
        app.ready.set()
        status, out, err, _ = command.end()
    assert (status, out, err) == (0, "", "")
    assert app.answered[-1] == 200 and app.answered.count(200) == 1


def test_wait_for_a_server_that_is_not_listening_yet() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/readyz"
    app = Flipping(503, 200)
    with waiting("--wait", "--period", "0.05", "--timeout", "60", "-v", url) as command:
        assert command.line() == f"waiting for {url}: no answer from 127.0.0.1:{port}: ConnectionRefusedError\n"
        with serving(app, port):
            assert command.line() == f"waiting for {url}: 503 Service Unavailable\n"
            status, out, err, _ = command.end()
    assert (status, out, err) == (0, "200 OK\n", "")


def test_wait_for_a_tcp_port() -> None:
    port = free_port()
    with waiting("--wait", "--period", "0.05", "--timeout", "60", "-v", f"tcp://127.0.0.1:{port}") as command:
        line = command.line()
        assert line == f"waiting for tcp://127.0.0.1:{port}: dial tcp 127.0.0.1:{port}: connect: connection refused\n"
        with socket.create_server(("127.0.0.1", port)):
            status, out, err, _ = command.end()
    assert (status, out, err) == (0, f"connected to 127.0.0.1:{port}\n", "")


def test_stable_asks_for_passes_over_that_time_and_a_failure_starts_it_over() -> None:
    # 200, then 503, then 200 for ever: the first pass does not end the wait, the 503 resets it.
    app = Flipping(200, 503, 200)
    with serving(app) as url:
        status, out, err, seconds = run("--wait", "--period", "0.1", "--stable", "0.3", "--timeout", "60", "-v", url)
    assert (status, out) == (0, "200 OK\n"), err
    assert err.splitlines() == [
        f"waiting for {url}: 200 OK (passing; --stable 0.3 s)",
        f"waiting for {url}: 503 Service Unavailable",
        f"waiting for {url}: 200 OK (passing; --stable 0.3 s)",
    ]
    # At least two passes after the 503, 0.3 s apart at least on the grid of 0.1 s periods.
    assert app.answered[:3] == [200, 503, 200] and len(app.answered) >= 4, app.answered
    assert set(app.answered[2:]) == {200}
    assert 0.5 <= seconds < 30, seconds


# -- giving up ----------------------------------------------------------------------------------


def test_wait_gives_up_at_the_timeout_with_the_last_failure() -> None:
    app = Flipping()
    with serving(app) as url:
        for codes in ("docker", "distinct"):
            status, out, err, seconds = run("--wait", "--period", "0.2", "--timeout", "1", "--exit-codes", codes, url)
            assert (status, out) == (1, ""), err  # an answer: 1 in either mode
            assert err.splitlines() == [
                f"waiting for {url}: 503 Service Unavailable",
                f"gave up waiting for {url} (--timeout 1 s): 503 Service Unavailable",
            ]
            assert 0.7 <= seconds < 20, seconds
        status, _, err, _ = run("--wait", "--period", "0.2", "--timeout", "0.5", "-v", url)
        assert status == 1 and err.splitlines()[1:] == [
            f"gave up waiting for {url} (--timeout 0.5 s): 503 Service Unavailable",
            "[-]database failed: reason withheld",
        ], err


def test_wait_for_no_answer_gives_up_with_3_under_distinct_codes() -> None:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    line = f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    for codes, expected in (("docker", 1), ("distinct", 3)):
        status, out, err, _ = run("--wait", "--period", "0.2", "--timeout", "0.7", "--exit-codes", codes, url)
        assert (status, out) == (expected, ""), err
        assert err.splitlines() == [
            f"waiting for {url}: {line}",
            f"gave up waiting for {url} (--timeout 0.7 s): {line}",
        ]


def test_each_attempt_has_its_own_timeout_within_the_whole_one() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        url = f"http://127.0.0.1:{port}/readyz"
        status, _, err, seconds = run(
            "--wait", "--attempt-timeout", "0.2", "--period", "0.3", "--timeout", "2", "--exit-codes", "distinct", url
        )
    assert status == 3
    assert err.splitlines() == [
        f"waiting for {url}: no answer from 127.0.0.1:{port}: timed out",
        f"gave up waiting for {url} (--timeout 2 s): no answer from 127.0.0.1:{port}: timed out",
    ]
    assert 1.5 <= seconds < 20, seconds


def test_a_target_passing_for_less_than_stable_at_the_timeout_fails() -> None:
    with serving(Flipping(200)) as url:
        for codes in ("docker", "distinct"):
            status, _, err, _ = run(
                "--wait", "--period", "0.5", "--stable", "0.9", "--timeout", "1", "--exit-codes", codes, url
            )
            assert status == 1
            assert err.splitlines() == [
                f"waiting for {url}: 200 OK (passing; --stable 0.9 s)",
                f"gave up waiting for {url} (--timeout 1 s): 200 OK, passing for only 0.5 s of --stable 0.9 s",
            ]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--stable", "5", "--timeout", "5"], "--stable 5 cannot be reached within --timeout 5"),
        (["--period", "0"], "argument --period: expected a finite number of seconds > 0"),
        (["--attempt-timeout", "-1"], "argument --attempt-timeout: expected a finite number of seconds > 0"),
        (["--stable", "-1"], "argument --stable: expected a finite number of seconds >= 0"),
        (["--header", "Authorization: Bearer s3cret", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_of_wait_are_never_retried(args: list[str], reason: str) -> None:
    for codes, expected in (([], 1), (["--exit-codes", "distinct"], 2)):
        status, out, err, _ = run("--wait", "http://127.0.0.1:1/readyz", *args, *codes)
        assert (status, out) == (expected, ""), err
        assert err.startswith(f"healthprobe probe: error: {reason}") and err.count("\n") == 1, err
    status, _, err, _ = run("--wait", "--exit-codes", "distinct", "http://127.0.0.1:1/live z")
    assert status == 2 and err.count("\n") == 1 and "contains a space" in err, err


# -- signals ------------------------------------------------------------------------------------


def default_sigint() -> None:
    """In the child before it runs the command: SIGINT to its default action, whatever this
    process inherited (a shell's background job ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("sig", "statuses"), [(signal.SIGTERM, (-15, 143)), (signal.SIGINT, (-2, 130))])
def test_a_signal_ends_the_wait_at_once(sig: signal.Signals, statuses: tuple[int, int]) -> None:
    port = free_port()
    with waiting("--wait", "--timeout", "60", f"tcp://127.0.0.1:{port}", preexec=default_sigint) as command:
        assert command.line().startswith(f"waiting for tcp://127.0.0.1:{port}: ")
        signalled = time.monotonic()
        command.process.send_signal(sig)
        status, out, err, _ = command.end(timeout=10)
        assert time.monotonic() - signalled < 5
    assert status in statuses and out == "" and "Traceback" not in err, (status, err)


def unshared(*args: str) -> subprocess.Popen[str]:
    """``args`` run as PID 1 of a new PID namespace (``unshare --pid --fork``)."""
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--map-root-user", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pid_one(outer: subprocess.Popen[str]) -> int:
    """The process id, seen from here, of the PID 1 that ``outer`` (``unshare``) started."""

    def child() -> int:
        children = Path(f"/proc/{outer.pid}/task/{outer.pid}/children").read_text().split()
        return int(children[0]) if children else 0

    return wait_until(child, 10, "unshare's child")


def end_pid_one(outer: subprocess.Popen[str], inner: int) -> None:
    """Stop ``outer`` and the PID 1 ``inner`` it started (0: none known), whatever state they
    are in: SIGKILL reaches a PID 1 from outside its namespace."""
    if inner and outer.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(inner, signal.SIGKILL)
    outer.kill()
    outer.communicate()


def test_as_pid_1_sigterm_ends_the_wait() -> None:
    try:
        subprocess.run(["unshare", "--pid", "--fork", "--map-root-user", "true"], check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("no unshare --pid --map-root-user here: cannot run a process as PID 1")
    # As PID 1, a process that leaves SIGTERM to its default action does not end.
    sleeper = unshared("sleep", "60")
    inner = 0
    try:
        inner = pid_one(sleeper)
        os.kill(inner, signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            sleeper.wait(timeout=1)
    finally:
        end_pid_one(sleeper, inner)
    port = free_port()
    command = unshared(HEALTHPROBE, "probe", "--wait", "--timeout", "60", f"tcp://127.0.0.1:{port}")
    inner = 0
    try:
        assert command.stderr is not None
        assert command.stderr.readline().startswith(f"waiting for tcp://127.0.0.1:{port}: ")
        inner = pid_one(command)
        os.kill(inner, signal.SIGTERM)
        _, err = command.communicate(timeout=10)
    finally:
        end_pid_one(command, inner)
    assert command.returncode == 143 and "Traceback" not in err, (command.returncode, err)


# -- docs/kubernetes.md, as written -----------------------------------------------------------------

PAGE = doc_pages.page("kubernetes.md")
SECTION = PAGE[PAGE.index("## Exec probes and Docker `HEALTHCHECK` without curl") :]


def steps(contains: str) -> list[tuple[str, list[str]]]:
    """The ``$ command`` lines of the page's one console block holding ``contains``, each with
    the lines it shows."""
    (body,) = [body for body in doc_pages.blocks(SECTION, "console") if contains in body]
    found: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        else:
            found[-1][1].append(line)
    return found


def shell(command: str, ports: dict[int, int]) -> list[str]:
    """A page's command (``healthprobe ...; echo "exit $?"``) with each page port moved to
    its real one, the installed console script first on the ``PATH``: the lines it prints,
    stderr and stdout in the order printed, with the real ports moved back."""
    for page_port, real in ports.items():
        command = command.replace(f":{page_port}", f":{real}")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=60
    )
    text = done.stdout
    for page_port, real in ports.items():
        text = text.replace(f":{real}", f":{page_port}")
    return text.splitlines()


def test_the_exit_codes_example_is_a_real_answer() -> None:
    ((command, shown),) = steps("--exit-codes distinct http://")
    assert shell(command, {8080: free_port()}) == shown


def test_the_tcp_examples_are_real_answers() -> None:
    (passing, shown_passing), (refused, shown_refused) = steps("tcp://127.0.0.1:5433")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ports = {5432: listener.getsockname()[1], 5433: free_port()}
        assert shell(passing, ports) == shown_passing
        assert shell(refused, ports) == shown_refused


def test_the_wait_example_is_a_real_wait() -> None:
    ((command, shown),) = steps("--wait --timeout 60")
    port = free_port()
    app = Flipping()
    argv = shlex.split(command.partition(";")[0].replace(":8080", f":{port}"))
    assert argv[0] == "healthprobe"
    with waiting(*argv[2:]) as started:
        assert started.line().replace(f":{port}", ":8080") == shown[0] + "\n"
        with serving(app, port):
            assert started.line().replace(f":{port}", ":8080") == shown[1] + "\n"
            app.ready.set()
            status, out, err, _ = started.end()
    assert (out, err, f"exit {status}") == ("", "", shown[2])


def test_the_wait_timeout_example_is_a_real_answer() -> None:
    ((command, shown),) = steps("--wait --timeout 3")
    assert shell(command, {5432: free_port()}) == shown


def test_the_init_containers_wait_as_the_page_says() -> None:
    pod = doc_pages.block(SECTION, "yaml", contains="initContainers")
    (manifest,) = yaml.safe_load_all(pod)
    spec = manifest["spec"]
    images = {container["image"] for container in [*spec["initContainers"], *spec["containers"]]}
    assert len(images) == 1, "the init containers run the application's own image"
    commands = {container["name"]: container["command"] for container in spec["initContainers"]}
    assert set(commands) == {"wait-for-postgres", "wait-for-api"}
    postgres = free_port()
    app = Flipping()
    with serving(app) as url:
        api = int(url.split(":")[2].split("/")[0])
        ports = {"postgres:5432": f"127.0.0.1:{postgres}", "api:8080": f"127.0.0.1:{api}"}

        def argv(name: str) -> list[str]:
            args = list(commands[name])
            assert args[0] == "healthprobe"
            for page, real in ports.items():
                args = [argument.replace(page, real) for argument in args]
            return [HEALTHPROBE, *args[1:]]

        first = subprocess.Popen(argv("wait-for-postgres"), stderr=subprocess.PIPE, text=True)
        try:
            assert first.stderr is not None
            assert "connection refused" in first.stderr.readline()
            with socket.create_server(("127.0.0.1", postgres)):
                assert first.wait(30) == 0
        finally:
            first.kill()
            first.communicate()
        app.ready.set()
        started = time.monotonic()
        second = subprocess.run(argv("wait-for-api"), capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second
        assert time.monotonic() - started >= 5  # --stable 5: ready for 5 s first
        assert second.stderr == f"waiting for {url}: 200 OK (passing; --stable 5 s)\n"


def test_the_compose_file_waits_as_the_page_says() -> None:
    compose = yaml.safe_load(doc_pages.block(SECTION, "yaml", starts="# compose.yaml\n"))
    services = compose["services"]
    assert services["web"]["depends_on"] == {
        "wait-for-postgres": {"condition": "service_completed_successfully"},
        "api": {"condition": "service_healthy"},
    }
    healthcheck = services["api"]["healthcheck"]
    test = healthcheck["test"]
    assert test[:2] == ["CMD", "healthprobe"] and "--wait" not in test  # Docker repeats it
    assert float(healthcheck["timeout"].rstrip("s")) > 1  # above the probe's default --timeout
    wait = services["wait-for-postgres"]["command"]
    assert wait[0] == "healthprobe" and "--wait" in wait
    assert services["wait-for-postgres"]["image"] == services["web"]["image"]
    # The healthcheck: 0 (healthy) for a ready API, 1 (unhealthy) for one that is not: never 2.
    app = Flipping()
    with serving(app) as url:
        port = url.split(":")[2].split("/")[0]
        args = [HEALTHPROBE, *(argument.replace(":8080", f":{port}") for argument in test[2:])]
        assert subprocess.run(args, capture_output=True, timeout=30).returncode == 1
        app.ready.set()
        assert subprocess.run(args, capture_output=True, timeout=30).returncode == 0
    refused = [HEALTHPROBE, *test[2:-1], f"http://127.0.0.1:{free_port()}/readyz"]
    assert subprocess.run(refused, capture_output=True, timeout=30).returncode == 1
    # The one-off service: exits 0 once PostgreSQL's port accepts connections.
    postgres = free_port()
    args = [HEALTHPROBE, *(argument.replace("postgres:5432", f"127.0.0.1:{postgres}") for argument in wait[1:])]
    with contextlib.ExitStack() as stack:
        waiter = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        stack.callback(waiter.communicate)
        stack.callback(waiter.kill)
        assert waiter.stderr is not None
        assert "connection refused" in waiter.stderr.readline()
        with socket.create_server(("127.0.0.1", postgres)):
            assert waiter.wait(30) == 0


def test_the_page_documents_every_option_of_the_command() -> None:
    helped = subprocess.run([HEALTHPROBE, "probe", "--help"], capture_output=True, text=True, timeout=30).stdout
    options = set(re.findall(r"(--[a-z][a-z-]+)", helped)) - {"--help"}
    assert options == {
        "--timeout",
        "--header",
        "--verbose",
        "--wait",
        "--attempt-timeout",
        "--period",
        "--stable",
        "--exit-codes",
    }, options
    missing = sorted(option for option in options if f"`{option}" not in SECTION)
    assert not missing, missing
