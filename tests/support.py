"""Helpers shared by the tests: ephemeral ports, real server processes, the machine's
services, waiting, registries, metrics, and a client that behaves like a load balancer.

Fixtures several test files use are in ``tests/conftest.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from healthprobe.testing import AppServer, free_port, wait_for_port

# The registries' one builder lives with the apps, which server processes import (no pytest there).
from .apps import CheckSpec as CheckSpec
from .apps import started_registry as started_registry

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
#: The directory of the interpreter's console scripts (the virtual environment's ``bin``).
BIN = Path(PYTHON).parent

#: Logged at DEBUG by each serving process of the test apps (and of the pages run as written)
#: once its coordinator's handlers are in place: the sign that a worker is ready.
INSTALLED = "shutdown: handlers installed in process"

#: The Host header of a kubelet's probe: the pod's IP address, which no host check allows.
POD_HOST = "10.1.2.3:8000"

#: The machine's PostgreSQL and Redis (``require_service`` skips a test without them; the
#: ``postgres_up`` and ``redis_up`` fixtures of conftest.py do so for a whole test).
POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
#: A libpq connection string to the machine's PostgreSQL, as its superuser, on the database
#: ``test``: what the tests use to look at or prepare the server.
POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


class ServerProcess(AppServer):
    """A server started as its own process from the project root (on ``PYTHONPATH``); output
    goes to a file read on demand. ``proc`` is its process; :meth:`stop` kills it at once
    (the tests that stop a server gracefully signal it themselves)."""

    def __init__(
        self, args: Sequence[str], port: int, *, env: dict[str, str] | None = None, cwd: Path = ROOT, log: Path
    ) -> None:
        super().__init__(args, port, env={"PYTHONPATH": str(ROOT), **(env or {})}, cwd=cwd, log=log)
        self.proc = self.process

    def wait_for_output(self, text: str, count: int = 1, timeout: float = 20.0, *, interval: float = 0.05) -> str:
        """Wait until ``text`` shows ``count`` times (or more) in the output, and return the
        output. Fails (``AssertionError``, with the output) when the process exits without it
        or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (log := self.output()).count(text) < count:
            if self.proc.poll() is not None:
                log = self.output()  # what it wrote just before it exited
                assert log.count(text) >= count, f"exited with {self.proc.returncode} before {text!r} x {count}:\n{log}"
                return log
            assert time.monotonic() < deadline, f"{text!r} not seen {count} time(s) within {timeout} s:\n{log}"
            time.sleep(interval)
        return log

    def signal_group(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to every process of the server's process group at once (the server
        leads its own session), as an init that signals its child's whole group does
        (dumb-init by default, ``tini -g``)."""
        os.killpg(self.proc.pid, sig)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 0.0) -> int:
        """Kill the server's process group at once (``SIGKILL``); its exit code."""
        return self.kill()


@contextlib.contextmanager
def run_server(
    args: Sequence[str],
    port: int,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    name: str = "server",
    cwd: Path = ROOT,
    timeout: float | None = 20.0,
) -> Iterator[ServerProcess]:
    """Start ``args`` in ``cwd`` as a process whose output goes to ``tmp_path/<name>.log``,
    wait up to ``timeout`` seconds until ``port`` accepts (not at all with ``None``), and
    always kill it at the end."""
    server = ServerProcess(args, port, env=env, cwd=cwd, log=tmp_path / f"{name}.log")
    try:
        if timeout is not None:
            server.wait_ready(timeout)
        yield server
    finally:
        server.stop()


def stop_gracefully(
    server: ServerProcess, *, workers: int = 1, timeout: float = 30, installed_line: bool = True
) -> str:
    """SIGTERM the server once every worker has installed its handlers (their DEBUG line
    :data:`INSTALLED`, waited for unless ``installed_line=False``: hypercorn, for one, sets
    up its logging only after the application's lifespan started); assert a graceful exit
    (code 0, no "graceful shutdown is OFF" warning, one SIGTERM line per worker) and return
    the log."""
    if installed_line:
        server.wait_for_output(INSTALLED, workers)
    server.signal(signal.SIGTERM)
    code = server.wait(timeout)
    log = server.output()
    assert code == 0, log
    assert "graceful shutdown is OFF" not in log, log
    assert log.count("shutdown: SIGTERM received") == workers, log
    return log


def http_client(server: ServerProcess, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=timeout)


def require_service(host: str, port: int, what: str) -> None:
    """Skip the test when ``what`` is not reachable, unless HEALTHPROBE_REQUIRE_SERVICES=1
    (set in CI), where a missing service fails the test instead."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        message = f"{what} not reachable on {host}:{port}: {exc}"
        if os.environ.get("HEALTHPROBE_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def require_ipv6_loopback() -> None:
    """Skip the test on a machine without an IPv6 loopback address (``::1`` cannot be bound)."""
    with socket.socket(socket.AF_INET6) as sock:
        try:
            sock.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback on this machine")


def require_binary(name: str, package: str) -> str:
    """The path of executable ``name``; skip the test when it is missing, unless
    HEALTHPROBE_REQUIRE_SERVICES=1 (set in CI), where a missing binary fails the test."""
    import shutil

    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not found on PATH (Debian package {package!r})"
    if os.environ.get("HEALTHPROBE_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


# -- a client that behaves like a load balancer --------------------------------------------------


@dataclass
class Outcome:
    """One request of :class:`LoadBalancer`: its path, wall-clock start and end, the status
    (``None`` when it failed without an answer, ``error`` then says why), and the process id
    the answer ends with, if any (the shutdown test apps end their bodies with it)."""

    path: str
    start: float
    end: float
    status: int | None
    error: str | None = None
    pid: int | None = None


def start_threads(targets: list[Callable[[], object]], into: list[threading.Thread]) -> None:
    """Start a daemon thread for each of ``targets`` (a load generator's clients), adding it
    to ``into``."""
    for target in targets:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        into.append(thread)


def stop_threads(done: threading.Event, threads: list[threading.Thread], timeout: float = 15.0) -> None:
    """Set ``done``, which the clients started by :func:`start_threads` watch, and join each
    (at most ``timeout`` seconds each)."""
    done.set()
    for thread in threads:
        thread.join(timeout=timeout)


@dataclass
class LoadBalancer:
    """Routes traffic to one backend while its readiness probe passes.

    One thread polls ``/readyz`` (then ``/livez``) every 100 ms into ``probes``; once a
    readiness poll fails the backend is out of rotation and no new request is sent, while
    requests already sent run to completion. ``fast_senders`` threads send ``fast_path``
    every 20 ms and ``slow_senders`` threads send ``slow_path`` back to back, into ``requests``.
    """

    url: str
    fast_senders: int = 3
    slow_senders: int = 2
    fast_path: str = "/"
    slow_path: str = "/slow"
    out_of_rotation: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    slow_started: threading.Event = field(default_factory=threading.Event)
    requests: list[Outcome] = field(default_factory=list)
    probes: list[Outcome] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        targets = [self._poll] + [self._send_fast] * self.fast_senders + [self._send_slow] * self.slow_senders
        start_threads(targets, self.threads)

    def stop(self) -> None:
        stop_threads(self.done, self.threads)

    def _get(self, client: httpx.Client, path: str, into: list[Outcome]) -> Outcome:
        start = time.time()
        try:
            response = client.get(path)
            last = response.text.split()[-1] if response.status_code == 200 and response.text.strip() else ""
            pid = int(last) if path in (self.fast_path, self.slow_path) and last.isdigit() else None
            outcome = Outcome(path, start, time.time(), response.status_code, pid=pid)
        except httpx.HTTPError as exc:
            outcome = Outcome(path, start, time.time(), None, f"{type(exc).__name__}: {exc}")
        into.append(outcome)
        return outcome

    def _poll(self) -> None:
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while not self.done.is_set():
                started = time.time()
                if self._get(client, "/readyz", self.probes).status != 200:
                    self.out_of_rotation.set()
                self._get(client, "/livez", self.probes)
                self.done.wait(max(0.0, 0.1 - (time.time() - started)))

    def _send(self, path: str, pause: float) -> None:
        with httpx.Client(base_url=self.url, timeout=15.0) as client:
            while not self.done.is_set() and not self.out_of_rotation.is_set():
                if path == self.slow_path:
                    self.slow_started.set()
                self._get(client, path, self.requests)
                self.done.wait(pause)

    def _send_fast(self) -> None:
        self._send(self.fast_path, 0.02)

    def _send_slow(self) -> None:
        self._send(self.slow_path, 0.0)

    def signal_mid_load(
        self, server: ServerProcess, wait_timeout: float, *, group: bool = False
    ) -> tuple[float, int, float]:
        """Put ``server`` under load, then send it SIGTERM just after a slow request began
        (so that request outlasts the delay and the drain must wait for it), to its whole
        process group when ``group`` is true. Returns ``(signalled, exit code, exited)``,
        the times as ``time.time()``."""
        self.start()
        try:
            assert self.slow_started.wait(10)
            time.sleep(1.0)  # steady load first
            self.slow_started.clear()
            assert self.slow_started.wait(5)
            time.sleep(0.1)
            signalled = time.time()
            if group:
                server.signal_group(signal.SIGTERM)
            else:
                server.signal(signal.SIGTERM)
            code = server.wait(timeout=wait_timeout)
            return signalled, code, time.time()
        finally:
            self.stop()

    def assert_nothing_lost(self, signalled: float, delay: float, log: str, *, latency: float = 0.0) -> list[Outcome]:
        """What a graceful shutdown begun at ``signalled`` (``time.time()``) with a
        ``delay`` in seconds owes this load balancer: no failed or reset request; during the
        delay ``/readyz`` 503 and ``/livez`` 200; the slow requests sent before the signal
        ended 200, past the delay. ``latency`` is how long, in seconds, the signalled
        process may take to pass the signal on to the processes that serve (a supervisor's
        polling interval): every one of them is in its delay from ``signalled + latency``
        to ``signalled + delay``. Returns those slow requests."""
        failed = [r for r in self.requests if r.status != 200]
        assert not failed, f"{len(failed)} failed of {len(self.requests)}: {failed[:5]}\n{log}"
        assert len(self.requests) >= 10

        in_delay = [p for p in self.probes if signalled + latency + 0.3 < p.start and p.end < signalled + delay - 0.1]
        assert any(p.path == "/readyz" and p.status == 503 for p in in_delay), (self.probes, log)
        assert any(p.path == "/livez" and p.status == 200 for p in in_delay), (self.probes, log)
        assert not any(p.path == "/readyz" and p.status == 200 for p in in_delay)
        assert all(p.status == 200 for p in in_delay if p.path == "/livez")

        long_ones = [r for r in self.requests if r.path == self.slow_path and r.start < signalled]
        assert long_ones and all(r.status == 200 for r in long_ones)
        assert any(r.end > signalled + delay for r in long_ones)
        return long_ones


@contextlib.contextmanager
def werkzeug_server(app: object, port: int = 0) -> Iterator[str]:
    """Serve the WSGI ``app`` with Werkzeug's threaded server on loopback port ``port`` (an
    ephemeral one for 0), in a thread of this process; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def uvicorn_server(app: object, **config: Any) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn on an ephemeral loopback port, in a thread of this
    process, with ``config`` (``uvicorn.Config`` keyword arguments; lifespan off and log level
    warning unless given); yields its base URL."""
    import uvicorn

    port = free_port()
    options: dict[str, Any] = {"lifespan": "off", "log_level": "warning", **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 20, "uvicorn started", interval=0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class TcpDependency:
    """A real TCP service on an ephemeral loopback port that goes away and comes back, always
    on the same port (a database or upstream a check connects to): listening from the start;
    :meth:`down` closes it, so connections are refused, and :meth:`up` listens again (each a
    no-op when already so). :meth:`check` is a health check of it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        if self.listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener

    def down(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def check(self) -> None:
        """Connect to the service within 0.5 s; raises (``ConnectionRefusedError`` while it
        is down) when that fails."""
        socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()


@contextlib.contextmanager
def uvicorn_client(app: object, **config: Any) -> Iterator[httpx.Client]:
    """An httpx client of ``app`` served by uvicorn in a thread (:func:`uvicorn_server`,
    ``config`` passed on)."""
    with uvicorn_server(app, **config) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


@contextlib.contextmanager
def werkzeug_client(app: object) -> Iterator[httpx.Client]:
    """An httpx client of ``app`` served by Werkzeug's threaded server (:func:`werkzeug_server`)."""
    with werkzeug_server(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


#: The one-line answer to a query that is not valid percent-encoded UTF-8.
MALFORMED = "malformed query string: not valid percent-encoded UTF-8\n"


def assert_metrics_route_rules(client: httpx.Client, path: str = "/metrics") -> None:
    """What every metrics route owes, whoever serves it (the adapters, the probe server):
    ``HEAD`` like ``GET`` without a body, ``405`` with ``Allow`` for other methods, ``400``
    for malformed percent-encoding (an escape that is not UTF-8, or no escape at all), and
    OpenMetrics when ``Accept`` asks for it."""
    head = client.head(path)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
    post = client.post(path)
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    malformed = [client.get(f"{path}?name[]={bad}") for bad in ("%ff", "%zz", "%")]
    assert [(r.status_code, r.text) for r in malformed] == [(400, MALFORMED)] * 3
    openmetrics = client.get(path, headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")


class PrivateRedis:
    """A private redis-server on an ephemeral loopback port that a test stops and starts at
    will, always on the same port (a broker or queue that goes away and comes back).

    Started at once with ``start=True``; as a context manager, stopped at the end."""

    def __init__(self, tmp: Path, *, start: bool = False) -> None:
        self.binary = require_binary("redis-server", "redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        if start:
            self.start()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.starts += 1
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(self.tmp / f"redis-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen([*argv, "--dir", str(self.tmp)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, process=self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str = "the condition",
    log: Callable[[], str] | None = None,
    *,
    interval: float = 0.05,
    retry: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a true value, and return
    that value; an exception of a ``retry`` type counts as false (a server not answering yet).
    Fails (``AssertionError``) with ``what``, the last such exception and ``log()`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = predicate()
        except retry as exc:
            last = exc
        else:
            if result:
                return result
        error = f" (last error: {last!r})" if last is not None else ""
        assert time.monotonic() < deadline, f"{what} not seen within {timeout} s{error}\n{log() if log else ''}"
        time.sleep(interval)


def status(client: httpx.Client, path: str) -> int | None:
    """The status of ``GET path``, or ``None`` when the server does not answer."""
    try:
        return client.get(path).status_code
    except httpx.TransportError:
        return None


# -- metrics ------------------------------------------------------------------------------------

#: The samples of a Prometheus text exposition: ``(sample name, labels)`` to value.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (sample name, labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample_value(found: Samples, name: str, **labels: str) -> float | None:
    """The value of sample ``name`` with exactly ``labels`` in ``found``, or ``None``."""
    return found.get((name, frozenset(labels.items())))


def promtool_check_metrics(text: str) -> None:
    """``promtool check metrics`` finds nothing to say about the exposition ``text``."""
    promtool = require_binary("promtool", "prometheus")
    done = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    report = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, report
    assert report.strip() == "", report


# -- an interpreter without a package -----------------------------------------------------------

# Makes the named top-level packages unimportable, as if not installed (a meta path finder
# first in line), or, with BLOCK_MODE=none, by ``sys.modules[name] = None``; then runs the
# statement and prints what it raised as JSON.
_WITHOUT = textwrap.dedent(
    """
    import json, os, sys

    names = set(os.environ["BLOCK"].split(","))

    class NotInstalled:
        def find_spec(self, fullname, path=None, target=None):
            if fullname.partition(".")[0] in names:
                raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
            return None

    if os.environ.get("BLOCK_MODE") == "none":
        for name in names:
            sys.modules[name] = None
    else:
        sys.meta_path.insert(0, NotInstalled())

    import healthprobe
    from healthprobe import checks

    try:
        exec(os.environ["STATEMENT"])
    except BaseException as exc:
        cause = exc.__cause__
        print(json.dumps({
            "type": [c.__name__ for c in type(exc).__mro__],
            "message": str(exc),
            "name": getattr(exc, "name", None),
            "extra": getattr(exc, "extra", None),
            "cause": None if cause is None else [type(cause).__name__, getattr(cause, "name", None)],
        }))
    else:
        print(json.dumps(None))
    """
)


def clean_env() -> dict[str, str]:
    """This environment without what would point an interpreter at this checkout or venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def raised_without(block: str, statement: str, mode: str = "finder") -> dict[str, Any] | None:
    """Run ``statement`` in a fresh interpreter (``healthprobe`` and ``healthprobe.checks``
    imported) where the top-level packages ``block`` (comma-separated) are missing: hidden by
    a meta path finder, or with ``mode="none"`` by ``sys.modules[name] = None``. Returns what
    it raised (``type``: the names of its class's MRO, ``message``, ``name``, ``extra`` and
    ``cause``: ``[type name, name]``), or ``None`` when it raised nothing."""
    env = {**clean_env(), "BLOCK": block, "STATEMENT": statement, "BLOCK_MODE": mode}
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] | None = json.loads(done.stdout.splitlines()[-1])
    return result


# -- ASGI ---------------------------------------------------------------------------------------


def asgi_call(app: Any, scope: dict[str, Any]) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request with an empty body straight into an ASGI app, on a new asyncio event loop:
    ``(status, headers, body)``."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start.get("headers", [])), body


def assert_figure_reads_on_both_palettes(path: Path) -> None:
    """``path`` is a PNG whose corners are fully transparent, mostly transparent overall, with
    the mid-grey ink drawn and nothing black (which would vanish on the dark palette)."""
    pytest.importorskip("matplotlib")
    import matplotlib.image
    from benchmarks.chart import INK

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[2] == 4, "no alpha channel"
    height, width = pixels.shape[:2]
    assert width >= 600 and height >= 400
    for y, x in ((0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1)):
        assert pixels[y, x, 3] == 0, f"corner {(y, x)} is not transparent"
    assert (pixels[..., 3] == 0).mean() > 0.5, "most of the figure should show the page behind it"
    opaque = pixels[pixels[..., 3] == 1][:, :3]
    ink = [int(INK[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    assert ((abs(opaque - ink) < 0.02).all(axis=1)).sum() > 500, "the grey ink is not drawn"
    assert not ((opaque < 0.1).all(axis=1)).any(), "black ink would vanish on the dark palette"


@contextlib.contextmanager
def prometheus_server(tmp_path: Path, job: str, target_port: int, rules: Path | None = None) -> Iterator[ServerProcess]:
    """Debian's ``prometheus`` server on a free loopback port, scraping ``job`` at
    ``127.0.0.1:target_port`` every second (and evaluating ``rules``); always killed."""
    prometheus = require_binary("prometheus", "prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    rule_files = f"rule_files:\n  - {rules}\n" if rules is not None else ""
    config.write_text(
        f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
{rule_files}scrape_configs:
  - job_name: {job}
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
"""
    )
    args = [
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with run_server(args, port, tmp_path, name="prometheus") as prom:
        yield prom


def prometheus_query(client: httpx.Client, promql: str) -> list[dict[str, Any]]:
    """The result vector of an instant query through Prometheus' HTTP API."""
    answer = client.get("/api/v1/query", params={"query": promql})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"]["result"])
