"""``healthprobe probe grpc://HOST:PORT[/SERVICE]`` run as a command against real gRPC servers
on loopback: exit 0 only for ``SERVING``, 1 with the kubelet's one-line message for anything
else (``pkg/probe/grpc/grpc.go``), a usage error and a missing ``grpc`` extra included; under
``--exit-codes distinct``, 1 for an answer, 2 for a usage error, 3 for no answer."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from healthprobe import HealthRegistry
from healthprobe.cli import main, probe_grpc
from healthprobe.grpc import AioHealthServicer, HealthServicer

from .support import BIN, free_port, raised_without, require_ipv6_loopback

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.UNKNOWN


class Done:
    """What one run of the command gave."""

    def __init__(self, done: subprocess.CompletedProcess[str], seconds: float) -> None:
        self.code = done.returncode
        self.out = done.stdout
        self.err = done.stderr
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Done(code={self.code}, out={self.out!r}, err={self.err!r}, seconds={self.seconds:.2f})"


def run(*args: str) -> Done:
    """``healthprobe probe ARGS...``, the installed console script, as an exec probe runs it."""
    started = time.monotonic()
    done = subprocess.run([str(BIN / "healthprobe"), "probe", *args], capture_output=True, text=True, timeout=30)
    return Done(done, time.monotonic() - started)


def failed(done: Done, line: str) -> None:
    """``done`` exited 1 with ``line`` as its one line on stderr and nothing on stdout."""
    assert (done.code, done.out, done.err) == (1, "", f"{line}\n"), done


class Table(health.HealthServicer):
    """The stock servicer (a status table), recording the ``user-agent`` of each call and
    holding ``Check`` for the service ``hang`` until released."""

    def __init__(self) -> None:
        super().__init__()
        self.agents: list[str] = []
        self.release = threading.Event()

    def Check(self, request: Any, context: Any) -> Any:
        self.agents += [value for key, value in context.invocation_metadata() if key == "user-agent"]
        if request.service == "hang":
            self.release.wait(10)
        return super().Check(request, context)


@contextlib.contextmanager
def sync_server(servicer: Any, host: str = "127.0.0.1") -> Iterator[int]:
    """A ``grpc.server`` on an ephemeral loopback port serving ``servicer`` (``None``: no
    health service at all); yields the port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    if servicer is not None:
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{host}:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(0).wait(5)


@contextlib.contextmanager
def aio_server(registry: HealthRegistry) -> Iterator[int]:
    """A ``grpc.aio.server`` serving :class:`healthprobe.grpc.AioHealthServicer` on its own
    event loop in a thread; yields the port."""
    loop = asyncio.new_event_loop()
    ready: futures.Future[int] = futures.Future()
    stop = asyncio.Event()

    async def serve() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(AioHealthServicer(registry), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        ready.set_result(port)
        await stop.wait()
        await server.stop(0)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield ready.result(10)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def table() -> Iterator[tuple[Table, int]]:
    servicer = Table()
    servicer.set("liveness", SERVING)
    servicer.set("readiness", NOT_SERVING)
    servicer.set("readiness/postgres", UNKNOWN)
    servicer.set("hang", SERVING)
    with sync_server(servicer) as port:
        yield servicer, port
    servicer.release.set()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


# -- the answer decides the exit status -----------------------------------------------------------


def test_serving_exits_0_silently_and_says_so_with_verbose(table: tuple[Table, int]) -> None:
    _, port = table
    quiet = run(f"grpc://127.0.0.1:{port}")
    assert (quiet.code, quiet.out, quiet.err) == (0, "", ""), quiet
    done = run(f"grpc://127.0.0.1:{port}", "--verbose")
    assert (done.code, done.out, done.err) == (0, "service healthy\n", ""), done
    done = run(f"grpc://localhost:{port}/liveness", "-v")
    assert (done.code, done.out) == (0, "service healthy\n"), done


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/readiness", "NOT_SERVING"),
        ("/readiness/postgres", "UNKNOWN"),  # a service name with a slash, sent as written
        ("/readiness%2Fpostgres", "UNKNOWN"),  # percent-decoded
    ],
)
def test_any_other_status_exits_1_with_the_kubelets_line(table: tuple[Table, int], path: str, shown: str) -> None:
    _, port = table
    failed(run(f"grpc://127.0.0.1:{port}{path}"), f'service unhealthy (responded with "{shown}")')
    failed(run(f"grpc://127.0.0.1:{port}{path}", "-v"), f'service unhealthy (responded with "{shown}")')


def test_an_unknown_service_exits_1_naming_it(table: tuple[Table, int]) -> None:
    _, port = table
    failed(
        run(f"grpc://127.0.0.1:{port}/nonsense"),
        'error: health rpc probe failed: NOT_FOUND (no service "nonsense" on this server)',
    )


def test_the_empty_path_is_the_service_of_the_whole_server(table: tuple[Table, int]) -> None:
    servicer, port = table
    servicer.set("", NOT_SERVING)
    try:
        failed(run(f"grpc://127.0.0.1:{port}/"), 'service unhealthy (responded with "NOT_SERVING")')
        failed(run(f"grpc://127.0.0.1:{port}"), 'service unhealthy (responded with "NOT_SERVING")')
    finally:
        servicer.set("", SERVING)


def test_the_user_agent_names_healthprobe(table: tuple[Table, int]) -> None:
    servicer, port = table
    servicer.agents.clear()
    assert run(f"grpc://127.0.0.1:{port}/liveness").code == 0
    (agent,) = servicer.agents
    assert agent.startswith("healthprobe/"), agent


# -- no answer -------------------------------------------------------------------------------------


def test_a_refused_connection_exits_1_at_once() -> None:
    port = free_port()
    done = run(f"grpc://127.0.0.1:{port}", "--timeout", "5")
    assert done.code == 1 and done.out == "", done
    assert done.err.startswith(f'error: failed to connect service at "127.0.0.1:{port}": '), done
    assert "Connection refused" in done.err and done.err.count("\n") == 1, done
    assert done.seconds < 4, done  # not retried until the timeout


def test_no_http2_answer_is_a_connect_timeout(silent_port: int) -> None:
    done = run(f"grpc://127.0.0.1:{silent_port}", "--timeout", "0.5")
    failed(done, f'timeout: failed to connect service "127.0.0.1:{silent_port}" within 0.5s')
    assert done.seconds < 3, done


def test_a_check_that_does_not_answer_is_an_rpc_timeout(table: tuple[Table, int]) -> None:
    _, port = table
    done = run(f"grpc://127.0.0.1:{port}/hang", "--timeout", "0.5")
    failed(done, "timeout: health rpc did not complete within 0.5s")
    assert done.seconds < 3, done


def test_the_default_timeout_is_1_second(silent_port: int) -> None:
    done = run(f"grpc://127.0.0.1:{silent_port}")
    failed(done, f'timeout: failed to connect service "127.0.0.1:{silent_port}" within 1s')
    assert 0.9 < done.seconds < 4, done


def test_a_server_without_the_health_service_is_named() -> None:
    with sync_server(None) as port:
        done = run(f"grpc://127.0.0.1:{port}")
    assert done.code == 1 and done.out == "", done
    assert done.err.startswith(
        "error: this server does not implement the grpc health protocol (grpc.health.v1.Health)"
    ), done


def test_an_http1_server_is_not_a_grpc_server() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]

        def answer() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        done = run(f"grpc://127.0.0.1:{port}", "--timeout", "5")
        thread.join(5)
    assert done.code == 1 and done.err.startswith(f'error: failed to connect service at "127.0.0.1:{port}": '), done
    assert done.err.count("\n") == 1, done


def test_an_ipv6_server_is_probed() -> None:
    require_ipv6_loopback()
    servicer = Table()
    with sync_server(servicer, host="[::1]") as port:
        done = run(f"grpc://[::1]:{port}", "-v")
    assert (done.code, done.out) == (0, "service healthy\n"), done


# -- usage errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("grpc://127.0.0.1", "has no port (gRPC has no default port)"),
        ("grpc://127.0.0.1:0", "has port 0"),
        ("grpc://127.0.0.1:port", "not a valid URL"),
        ("grpc://:50051", "not a grpc://HOST:PORT[/SERVICE] URL"),
        ("grpc://127.0.0.1:50051/readiness?verbose", "a grpc:// URL has no query or fragment"),
        ("grpc://127.0.0.1:50051/#x", "a grpc:// URL has no query or fragment"),
        ("grpc://127.0.0.1:50051/ready ness", "contains a space"),
        ("grpc://127.0.0.1:50051/r\u00e9adiness", "non-ASCII"),
        ("grpc://127.0.0.1:50051/%ff", "not UTF-8 once percent-decoded"),
        ("grpc://user:s3cret@127.0.0.1:50051", "credentials in a URL are not sent"),
    ],
)
def test_a_malformed_grpc_url_is_a_usage_error_on_one_line(
    url: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for codes, status in (([], 1), (["--exit-codes", "distinct"], 2)):
        with pytest.raises(SystemExit) as raised:
            main(["probe", url, *codes])
        out, err = capsys.readouterr()
        assert raised.value.code == status and out == ""
        assert err.startswith("healthprobe probe: error: ") and err.count("\n") == 1, err
        assert reason in err and "s3cret" not in err, err
    with pytest.raises(ValueError, match="URL"):
        probe_grpc(url)


def test_headers_are_for_http_urls_only(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["probe", "grpc://127.0.0.1:50051", "--header", "Authorization: Bearer s3cret"])
    out, err = capsys.readouterr()
    assert raised.value.code == 1 and out == ""
    assert err == "healthprobe probe: error: --header is for http(s) URLs: the kubelet's grpc probe sends no headers\n"


def test_without_the_grpc_extra_the_fix_is_named() -> None:
    raised = raised_without("grpc", "from healthprobe.cli import probe_grpc; probe_grpc('grpc://127.0.0.1:1')")
    assert raised is not None
    assert raised["message"] == "probing grpc:// URLs needs grpcio: pip install 'healthprobe[grpc]'"
    assert "ImportError" in raised["type"]
    for codes, status in (([], 1), (["--exit-codes", "distinct"], 2)):  # a usage error
        script = (
            "import sys; sys.modules['grpc_health'] = None\n"
            "from healthprobe.cli import main\n"
            f"sys.exit(main(['probe', 'grpc://127.0.0.1:1', *{codes!r}]))\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
        assert (done.returncode, done.stdout) == (status, ""), done
        assert done.stderr == (
            "healthprobe probe: error: probing grpc:// URLs needs grpcio-health-checking: "
            "pip install 'healthprobe[grpc]'\n"
        )


def test_http_urls_import_no_grpc() -> None:
    script = (
        "import sys\n"
        "from healthprobe.cli import main\n"
        "code = main(['probe', 'http://127.0.0.1:1/livez'])\n"
        "assert code == 1 and 'grpc' not in sys.modules, sorted(sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


# -- healthprobe's own servicer --------------------------------------------------------------------


def registry_of(ready: dict[str, bool]) -> HealthRegistry:
    """A started registry with one readiness check per ``ready`` item (passing or failing)."""
    registry = HealthRegistry()
    for name, passes in ready.items():
        registry.add_check(name, (lambda: None) if passes else _fail, probes=("readiness",))
    registry.mark_started()
    return registry


def _fail() -> None:
    raise ConnectionError("database unreachable")


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_healthprobes_servicer_as_a_kubelet_sees_it(flavour: str) -> None:
    registry = registry_of({"postgres": False, "cache": True})
    try:
        if flavour == "sync":
            served: contextlib.AbstractContextManager[int] = sync_server(HealthServicer(registry))
        else:
            served = aio_server(registry)
        with served as port:
            address = f"grpc://127.0.0.1:{port}"
            results = {path: run(f"{address}{path}") for path in ("/liveness", "/startup", "/readiness/cache")}
            unready = {path: run(f"{address}{path}") for path in ("", "/readiness", "/readiness/postgres")}
            unknown = run(f"{address}/readiness/nonsense")
    finally:
        registry.close()
    for path, done in results.items():
        assert (done.code, done.err) == (0, ""), (path, done)
    for done in unready.values():
        failed(done, 'service unhealthy (responded with "NOT_SERVING")')
    assert unknown.code == 1 and unknown.err.startswith(
        'error: health rpc probe failed: NOT_FOUND (no service "readiness/nonsense" on this server)'
    ), unknown


def test_verbose_says_what_failed_from_healthprobes_servicer() -> None:
    registry = registry_of({"postgres": False, "cache": False})
    try:
        with sync_server(HealthServicer(registry)) as port:
            verbose = run(f"grpc://127.0.0.1:{port}/readiness", "-v")
            quiet = run(f"grpc://127.0.0.1:{port}/readiness")
            one = run(f"grpc://127.0.0.1:{port}/readiness/cache", "--verbose")
    finally:
        registry.close()
    assert (verbose.code, verbose.out) == (1, ""), verbose
    assert verbose.err == (
        'service unhealthy (responded with "NOT_SERVING")\n'
        "postgres failed: reason withheld\n"
        "cache failed: reason withheld\n"
    ), verbose
    failed(quiet, 'service unhealthy (responded with "NOT_SERVING")')
    assert one.err == 'service unhealthy (responded with "NOT_SERVING")\ncache failed: reason withheld\n', one


# -- --exit-codes distinct and --wait --------------------------------------------------------------


def test_distinct_exit_codes_tell_an_answer_from_no_answer(table: tuple[Table, int], silent_port: int) -> None:
    _, port = table
    address = f"grpc://127.0.0.1:{port}"
    with sync_server(None) as bare:
        cases = {
            "SERVING": ([f"{address}/liveness"], 0),
            "NOT_SERVING": ([f"{address}/readiness"], 1),
            "UNKNOWN": ([f"{address}/readiness/postgres"], 1),
            "NOT_FOUND, an answer of the server": ([f"{address}/nonsense"], 1),
            "UNIMPLEMENTED, an answer of the server": ([f"grpc://127.0.0.1:{bare}"], 1),
            "refused": ([f"grpc://127.0.0.1:{free_port()}"], 3),
            "no HTTP/2 answer": ([f"grpc://127.0.0.1:{silent_port}", "--timeout", "0.3"], 3),
            "no answer to the call": ([f"{address}/hang", "--timeout", "0.3"], 3),
            "a malformed URL": (["grpc://127.0.0.1"], 2),
        }
        for what, (args, distinct) in cases.items():
            default = run(*args)
            assert default.code == (0 if distinct == 0 else 1), (what, default)
            named = run(*args, "--exit-codes", "distinct")
            assert (named.code, named.err) == (distinct, default.err), (what, named)


def test_wait_until_the_service_is_serving(table: tuple[Table, int]) -> None:
    servicer, port = table
    servicer.set("flip", NOT_SERVING)
    url = f"grpc://127.0.0.1:{port}/flip"
    waiting = subprocess.Popen(
        [str(BIN / "healthprobe"), "probe", "--wait", "--period", "0.1", "--timeout", "60", "-v", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stderr is not None
        first = waiting.stderr.readline()
        assert first == f'waiting for {url}: service unhealthy (responded with "NOT_SERVING")\n'
        servicer.set("flip", SERVING)
        out, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
        waiting.wait()
    assert (waiting.returncode, out, err) == (0, "service healthy\n", ""), (out, err)
