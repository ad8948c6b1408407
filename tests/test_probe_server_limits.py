"""No client can starve the probe server, and under servers a client can starve (gunicorn's
sync workers, waitress) it answers the kubelet's probes on a port of its own.

The attack is the one of docs/kubernetes.md, "Probes that a busy server cannot starve": many
connections that each send a request line and a ``Host`` header but never the blank line that
ends the head (Slowloris), then probes as the kubelet sends them: a new connection, a whole
request, an answer awaited for 1 s (the default ``timeoutSeconds``). The probe server's own
bounds (``idle_timeout``, ``max_connections``, the 431 for an oversized head) are checked on
a server in this process; gunicorn and waitress run as real processes from the page's own
command and file, with an ``app.py`` as the page's "Wiring it up" builds it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

import healthprobe
from healthprobe import HealthRegistry
from healthprobe.probe_server import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, MAX_HEAD_BYTES

from .doc_pages import argv, blocks, command, files, page, write_project
from .support import PYTHON, ServerProcess, free_port, run_server, started_registry, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: The kubelet's default probe timeout (``timeoutSeconds: 1``), in seconds.
KUBELET_TIMEOUT = 1.0

#: Half a request: the head never ends.
HALF = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n"

SECTION_TITLE = "## Probes that a busy server cannot starve"

#: ``app.py`` as docs/kubernetes.md's "Wiring it up" builds it: a registry with a check, a
#: coordinator (a 1 s delay, so that the drain can be seen), the app wrapped in the middleware.
APP = """\
from healthprobe import HealthRegistry
from healthprobe.shutdown import GracefulShutdown
from healthprobe.wsgi import HealthMiddleware

registry = HealthRegistry()
registry.add_check("database", lambda: True)
shutdown = GracefulShutdown(registry, delay=1.0, drain_timeout=5.0, hook_timeout=1.0)


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"hello\\n"]


app = HealthMiddleware(hello, registry, shutdown=shutdown)
"""


# -- clients -----------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def descriptors() -> Iterator[None]:
    """Room for the 2,000 idle connections and then some (the soft limit is often 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 6000 if hard == resource.RLIM_INFINITY else min(6000, hard)
    if wanted < 2600:
        pytest.skip(f"the hard limit of open files is {hard}: 2,600 are needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def half_requests(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections to ``port``, each having sent :data:`HALF`; closed at the end."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
            opened.append(sock)
            sock.sendall(HALF)
        yield opened
    finally:
        for sock in opened:
            sock.close()


def probe(port: int, path: str = "/livez", timeout: float = KUBELET_TIMEOUT) -> tuple[int | None, float]:
    """One probe as the kubelet sends it: ``(status or None, seconds)``; ``None`` when no
    status line came within ``timeout``, the connection was refused or closed."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(max(0.01, timeout - (time.monotonic() - started)))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            line = b""
            while b"\r\n" not in line:
                data = sock.recv(1024)
                if not data:
                    return None, time.monotonic() - started
                line += data
    except OSError:
        return None, time.monotonic() - started
    return int(line.split()[1]), time.monotonic() - started


def probes(port: int, path: str = "/livez", count: int = 6) -> list[tuple[int | None, float]]:
    return [probe(port, path) for _ in range(count)]


def concurrent_probes(port: int, count: int = 6) -> list[tuple[int | None, float]]:
    """``count`` probes at once (those that time out, time out together)."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: probe(port), range(count)))


def answered(results: list[tuple[int | None, float]], status: int = 200) -> int:
    """How many of ``results`` answered ``status`` within the kubelet's timeout."""
    return sum(1 for code, seconds in results if code == status and seconds < KUBELET_TIMEOUT)


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


# -- the probe server's bounds, in this process -------------------------------------------------


@pytest.fixture
def registry() -> Iterator[HealthRegistry]:
    registry = started_registry(default_cache_ttl=0.0)
    yield registry
    registry.close()


def test_defaults_are_those_the_docs_state() -> None:
    assert (DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, MAX_HEAD_BYTES) == (5.0, 64, 65536)
    doc = page("probe-server.md")
    assert "| `idle_timeout` | `5.0` |" in doc and "| `max_connections` | `64` |" in doc


def test_a_connection_that_does_not_send_its_request_is_closed_after_idle_timeout(registry: HealthRegistry) -> None:
    with healthprobe.serve(registry, "127.0.0.1", 0, idle_timeout=0.5) as server:
        assert (server.idle_timeout, server.max_connections) == (0.5, 64)
        with half_requests(server.port, 1) as (half,), socket.create_connection(("127.0.0.1", server.port)) as silent:
            started = time.monotonic()
            assert closed_by_server(half, 5.0) and closed_by_server(silent, 5.0)
            assert 0.4 < time.monotonic() - started < 2.0
        # A request sent in pieces, each well within the bound, and with bare LF line ends.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as sock:
            for piece in (b"GET /li", b"vez HTTP/1.1\nHo", b"st: x\n", b"\n"):
                sock.sendall(piece)
                time.sleep(0.05)
            assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK\r\n")


def test_at_the_cap_the_oldest_waiting_connection_makes_room(
    registry: HealthRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="healthprobe")
    with healthprobe.serve(registry, "127.0.0.1", 0, idle_timeout=30.0, max_connections=4) as server:
        with half_requests(server.port, 10) as held:
            wait_until(lambda: closed_by_server(held[5], 0.01), 20.0, "the sixth connection closed")
            assert all(closed_by_server(sock, 1.0) for sock in held[:6])
            assert not any(closed_by_server(sock, 0.05) for sock in held[6:])  # the newest 4 are kept
            assert answered(probes(server.port)) == 6  # each probe takes the place of the oldest
        warnings = [r.getMessage() for r in caplog.records if "max_connections=4" in r.getMessage()]
        assert len(warnings) == 1, warnings  # once, not once per connection


def test_at_the_cap_with_every_connection_answered_a_new_one_is_closed_without_a_thread(
    registry: HealthRegistry,
) -> None:
    release = threading.Event()
    registry.add_check("held", lambda: release.wait(10.0), probes=["liveness"], timeout=10.0)
    with healthprobe.serve(registry, "127.0.0.1", 0, max_connections=2) as server:
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(probe, server.port, "/livez", 10.0) for _ in range(2)]
            wait_until(lambda: _request_threads(server.port) == 2, 20.0, "the two probes being answered")
            threads = threading.active_count()
            with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as third:
                third.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
                assert closed_by_server(third, 2.0)
            assert threading.active_count() == threads
            release.set()
            assert [future.result()[0] for future in held] == [200, 200]
        wait_until(lambda: _request_threads(server.port) == 0, 20.0, "the request threads ending")
        assert probe(server.port)[0] == 200


def _request_threads(port: int) -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == f"probe-request-{port}")


def test_a_request_head_over_64_kib_is_answered_431(registry: HealthRegistry) -> None:
    with (
        healthprobe.serve(registry, "127.0.0.1", 0) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as sock,
    ):
        sock.sendall(b"GET /livez HTTP/1.1\r\nX-Padding: " + b"a" * MAX_HEAD_BYTES)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(65536):
                answer += data
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
        assert b"Cache-Control: no-store" in answer
        assert probe(server.port)[0] == 200


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("idle_timeout", 0, ValueError),
        ("idle_timeout", -1.0, ValueError),
        ("idle_timeout", math.nan, ValueError),
        ("idle_timeout", math.inf, ValueError),
        ("idle_timeout", True, ValueError),
        ("idle_timeout", "5", ValueError),
        ("max_connections", 0, ValueError),
        ("max_connections", 2.5, TypeError),
        ("max_connections", True, TypeError),
    ],
)
def test_bad_bounds_are_refused_with_their_name(
    registry: HealthRegistry, option: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=option):
        healthprobe.serve(registry, "127.0.0.1", 0, **{option: value})  # type: ignore[arg-type]


def test_a_forked_child_closes_its_copies_of_the_servers_sockets(registry: HealthRegistry) -> None:
    """A connection the server closes is really closed although a child forked meanwhile
    (a gunicorn worker, say) is still running: the child closed its copy at the fork."""
    with (
        healthprobe.serve(registry, "127.0.0.1", 0, idle_timeout=0.5) as server,
        half_requests(server.port, 1) as (half,),
    ):
        wait_until(lambda: bool(server._server._waiting), 20.0, "the connection accepted")  # type: ignore[attr-defined]
        listener = server._server.socket.fileno()  # type: ignore[attr-defined]
        pid = os.fork()
        if pid == 0:  # the child: its copy of the listening socket is closed; it lives on 3 s
            code = 0
            try:
                os.fstat(listener)
                code = 1
            except OSError:
                pass
            time.sleep(2.0)
            os._exit(code)
        try:
            started = time.monotonic()
            assert closed_by_server(half, 3.0)
            assert time.monotonic() - started < 1.5, "the child's copy kept the connection open"
        finally:
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child still had the listening socket"


# -- the page's wiring, as real processes --------------------------------------------------------


def section() -> str:
    text = page("kubernetes.md")
    start = text.index(SECTION_TITLE)
    return text[start : text.index("\n## ", start + 1)]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page's files (``serve_waitress.py``) and the ``app.py`` they import."""
    files_here = files(section())
    assert set(files_here) == {"serve_waitress.py"}, files_here
    return write_project(section(), tmp_path_factory.mktemp("starve"), {**files_here, "app.py": APP})


@contextlib.contextmanager
def run(line: str, project: Path, port: int, probe_port: int, name: str) -> Iterator[ServerProcess]:
    env = {"PYTHONPATH": str(project), "HEALTHPROBE_PROBE_PORT": str(probe_port), "PORT": str(port)}
    env["PROBE_PORT"] = str(probe_port)
    with run_server(argv(line, port), port, project, env=env, name=name, cwd=project, timeout=30) as server:
        wait_until(lambda: probe(port, "/readyz")[0] == 200, 20.0, "the application ready", server.output)
        wait_until(lambda: probe(probe_port)[0] == 200, 20.0, "the probe port answering", server.output)
        yield server


def probing_pid(server: ServerProcess, probe_port: int) -> int:
    """The process listening on ``probe_port``: gunicorn's master, or waitress's only one."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for fields in (line.split() for line in lines):
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == probe_port:  # LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    for fd in os.listdir(f"/proc/{server.proc.pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{server.proc.pid}/fd/{fd}") in inodes:
                return server.proc.pid
    raise AssertionError(f"process {server.proc.pid} does not listen on {probe_port}")


def attack_and_measure(server: ServerProcess, port: int, probe_port: int) -> dict[str, object]:
    """200 half requests on each port; the probes on each; then 2,000 idle connections on the
    probe port and the threads and memory of the process that serves it. Returns the figures
    (printed for docs/kubernetes.md)."""
    pid = probing_pid(server, probe_port)
    with half_requests(port, 200), half_requests(probe_port, 200):
        time.sleep(0.3)  # let the servers take them in
        on_app = concurrent_probes(port)
        on_probes = probes(probe_port) + probes(probe_port, "/startupz")
        readiness = probe(probe_port, "/readyz")
    assert answered(on_app) == 0, f"the application's port was not starved: {on_app}"
    assert answered(on_probes) == 12, on_probes
    assert readiness[0] == 200
    time.sleep(0.2)  # the request threads of those probes end
    threads, rss = threads_of(pid), rss_mib(pid)
    with half_requests(probe_port, 2000):
        time.sleep(0.3)
        crowded = threads_of(pid), rss_mib(pid)
        under_2000 = probes(probe_port)
    assert answered(under_2000) == 6, under_2000
    assert crowded[0] <= threads + 1, f"{threads} threads before 2,000 idle connections, {crowded[0]} with them"
    assert crowded[1] - rss < 10.0, f"resident memory grew from {rss:.1f} to {crowded[1]:.1f} MiB"
    figures = {
        "app": f"{answered(on_app)} of 6",
        "probes": f"{answered(on_probes[:6])} of 6 ({max(s for _, s in on_probes) * 1000:.0f} ms at most)",
        "threads": f"{threads} -> {crowded[0]}",
        "rss": f"+{crowded[1] - rss:.1f} MiB",
    }
    print(f"\n{server.log_path.stem}: {figures}")
    return figures


def assert_the_table_says(figures: dict[str, object], row: str) -> None:
    """The page's row for this setup shows what was measured, bar the milliseconds."""
    (line,) = [line for line in section().splitlines() if line.startswith(f"| {row}")]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[1] == figures["app"], (cells, figures)
    assert cells[2].startswith("6 of 6 ("), (cells, figures)
    before, after = re.findall(r"\d+", cells[3])[:2]
    assert before == after, cells  # the page shows no thread added by 2,000 idle connections


def assert_drains_then_stops(server: ServerProcess, probe_port: int) -> None:
    """SIGTERM: the probe port answers ``/readyz`` 503 and ``/livez`` 200 during the delay,
    the process exits 0, and the probe port is closed."""
    server.signal(signal.SIGTERM)
    wait_until(lambda: probe(probe_port, "/readyz")[0] == 503, 5.0, "readiness failing", server.output)
    assert probe(probe_port, "/livez")[0] == 200
    assert server.wait(timeout=20) == 0, server.output()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", probe_port), timeout=2.0).close()


#: The first table of the page: the start of a row, the server that row names (serving the
#: apps of ``tests/server_apps.py``, whose ``/livez`` passes at once) and its options.
STARVED_ROWS = [
    pytest.param("`uvicorn app:app`", "uvicorn", [], id="uvicorn"),
    pytest.param("`uvicorn app:app`", "gunicorn-asgi", ["-k", "uvicorn_worker.UvicornWorker"], id="gunicorn-uvicorn"),
    pytest.param("`hypercorn app:app`", "hypercorn", [], id="hypercorn"),
    pytest.param("Werkzeug's threaded server", "werkzeug", [], id="werkzeug"),
    pytest.param("`gunicorn app:app` (sync workers, 1 or 4)", "gunicorn", [], id="gunicorn-sync-1"),
    pytest.param("`gunicorn app:app` (sync workers, 1 or 4)", "gunicorn", ["--workers", "4"], id="gunicorn-sync-4"),
    pytest.param("`gunicorn -k gthread", "gunicorn", ["-k", "gthread", "--threads", "4"], id="gunicorn-gthread"),
    pytest.param("`waitress-serve app:app`", "waitress", [], id="waitress-serve"),
]


def _starved_row_command(server: str, port: int, extra: list[str]) -> list[str]:
    from . import server_apps

    if server == "werkzeug":
        return [PYTHON, "-m", "tests.apps.werkzeug_plain", str(port)]
    if server == "gunicorn-asgi":
        return [*server_apps.command("gunicorn", port, *extra)[:-1], "tests.server_apps:asgi_app"]
    return server_apps.command(server, port, *extra)


@pytest.mark.parametrize(("row", "server", "extra"), STARVED_ROWS)
def test_the_first_table_as_measured(row: str, server: str, extra: list[str], tmp_path: Path) -> None:
    """Each server of the page's first table, under the attack on its own port, answers the
    probes as its row says: all of them, or none."""
    (line,) = [line for line in section().splitlines() if line.startswith(f"| {row}")]
    expected = 6 if "| 6 of 6" in line else 0
    assert expected == 6 or "| **0 of 6** |" in line, line
    port = free_port()
    with run_server(_starved_row_command(server, port, extra), port, tmp_path, timeout=30) as process:
        wait_until(lambda: probe(port)[0] == 200, 20.0, "/livez answering", process.output)
        with half_requests(port, 200):
            time.sleep(0.3)
            results = concurrent_probes(port)
        assert answered(results) == expected, (results, process.output()[-2000:])


def test_the_page_names_the_servers_that_need_it() -> None:
    text = section()
    for row in ("`gunicorn app:app` (sync workers, 1 or 4) | **0 of 6**", "-k gthread", "`waitress-serve app:app`"):
        assert row in text, row
    specs = yaml.safe_load(next(b for b in blocks(text, "yaml") if "livenessProbe" in b))
    assert specs["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "probes"}
    assert specs["startupProbe"]["httpGet"] == {"path": "/startupz", "port": "probes"}
    assert specs["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in specs["ports"]} == {"http": 8080, "probes": 8081}
    assert all(specs[probe]["timeoutSeconds"] >= 1 for probe in ("startupProbe", "readinessProbe", "livenessProbe"))


def test_gunicorn_master_answers_the_probes_a_slowloris_takes_from_the_workers(project: Path) -> None:
    """The page's gunicorn command: its sync worker is starved, the master's probe server is
    not, and keeps its threads under 2,000 idle connections; SIGTERM drains and stops it."""
    line = command(section(), "gunicorn ")
    assert line == "gunicorn -c python:healthprobe.servers.gunicorn_probes --bind 0.0.0.0:8080 app:app"
    port, probe_port = free_port(), free_port()
    with run(line, project, port, probe_port, "gunicorn") as server:
        figures = attack_and_measure(server, port, probe_port)
        assert_the_table_says(figures, "`gunicorn -c python:healthprobe.servers.gunicorn_probes")
        assert_drains_then_stops(server, probe_port)
        log = server.output()
        assert f"probe server listening on 0.0.0.0:{probe_port}" in log, log
        assert f"probe server on port {probe_port} stopped" in log, log


def test_gunicorn_refuses_to_start_on_a_probe_port_in_use(project: Path) -> None:
    line = command(section(), "gunicorn ")
    with socket.create_server(("0.0.0.0", 0)) as busy:
        probe_port = busy.getsockname()[1]
        port = free_port()
        env = {"PYTHONPATH": str(project), "HEALTHPROBE_PROBE_PORT": str(probe_port)}
        with run_server(argv(line, port), port, project, env=env, name="busy", cwd=project, timeout=None) as server:
            assert server.wait(timeout=30) == 1
            log = server.output()
    errors = [entry for entry in log.splitlines() if "probe server: cannot listen on" in entry]
    assert len(errors) == 1 and "(HEALTHPROBE_PROBE_HOST, HEALTHPROBE_PROBE_PORT)" in errors[0], log
    assert "Traceback" not in log, log


def test_gunicorn_refuses_a_probe_port_that_is_not_a_number(project: Path) -> None:
    line = command(section(), "gunicorn ")
    port = free_port()
    env = {"PYTHONPATH": str(project), "HEALTHPROBE_PROBE_PORT": "eighty"}
    with run_server(argv(line, port), port, project, env=env, name="nan", cwd=project, timeout=None) as server:
        assert server.wait(timeout=30) == 1
        log = server.output()
    assert re.search(r"HEALTHPROBE_PROBE_PORT='eighty' is not a TCP port number", log), log
    assert "Traceback" not in log, log


def test_waitress_probe_port_answers_the_probes_a_slowloris_takes_from_waitress(project: Path) -> None:
    """The page's ``serve_waitress.py``: waitress is starved, its probe server is not, and
    answers through the drain from the application's own endpoints."""
    line = command(section(), "python serve_waitress.py")
    port, probe_port = free_port(), free_port()
    with run(line, project, port, probe_port, "waitress") as server:
        assert probe(probe_port, "/readyz/database")[0] == 200  # the application's checks
        figures = attack_and_measure(server, port, probe_port)
        assert_the_table_says(figures, "`healthprobe.servers.waitress.serve(")
        assert_drains_then_stops(server, probe_port)
        assert "Traceback" not in server.output(), server.output()


def test_waitress_serve_stops_the_probe_server_when_its_own_port_is_taken(project: Path) -> None:
    with socket.create_server(("0.0.0.0", 0)) as busy:
        port, probe_port = busy.getsockname()[1], free_port()
        code = (
            "import sys, healthprobe.servers.waitress\n"
            "from app import app, shutdown\n"
            "try:\n"
            f"    healthprobe.servers.waitress.serve(app, shutdown, listen='0.0.0.0:{port}', probe_port={probe_port})\n"
            "except OSError as exc:\n"
            "    print('refused:', exc.errno)\n"
            "    import socket\n"
            f"    socket.create_server(('0.0.0.0', {probe_port})).close()  # free again\n"
            "    print('probe port free')\n"
        )
        env = {"PYTHONPATH": str(project)}
        with run_server(
            [PYTHON, "-c", code], port, project, env=env, name="taken", cwd=project, timeout=None
        ) as server:
            assert server.wait(timeout=30) == 0, server.output()
            log = server.output()
    assert "refused:" in log and "probe port free" in log, log


def test_gunicorn_conf_py_importing_the_hooks(project: Path) -> None:
    """The page's other gunicorn form: ``from healthprobe.servers.gunicorn_probes import *``
    in a ``gunicorn.conf.py`` of one's own."""
    assert "`from healthprobe.servers.gunicorn_probes import *`" in " ".join(section().split())
    (project / "gunicorn.conf.py").write_text("from healthprobe.servers.gunicorn_probes import *\n\nworkers = 2\n")
    port, probe_port = free_port(), free_port()
    with run(
        f"gunicorn -c gunicorn.conf.py --bind 0.0.0.0:{port} app:app", project, port, probe_port, "conf"
    ) as server:
        with half_requests(probe_port, 200):
            assert answered(probes(probe_port)) == 6
        assert_drains_then_stops(server, probe_port)


WAITRESS_SERVE_APP = (
    APP
    + """
import os

import healthprobe

healthprobe.serve(registry, port=int(os.environ["PROBE_PORT"]))
"""
)


def test_waitress_serve_command_with_the_one_line_in_the_application(project: Path) -> None:
    """The page's line for ``waitress-serve``: ``healthprobe.serve(registry, port=8081)`` in the
    application module; the probe port answers under the attack, through the drain, and is
    closed when the process stops."""
    assert "`healthprobe.serve(registry, port=8081)`" in section()
    (project / "waitress_app.py").write_text(WAITRESS_SERVE_APP)
    port, probe_port = free_port(), free_port()
    with run(f"waitress-serve --listen=0.0.0.0:{port} waitress_app:app", project, port, probe_port, "cli") as server:
        with half_requests(port, 200), half_requests(probe_port, 200):
            assert answered(concurrent_probes(port)) == 0
            assert answered(probes(probe_port)) == 6
        assert_drains_then_stops(server, probe_port)
