"""examples/node_demo, each flavour run as its own process on an ephemeral loopback port and
driven through the seed server's sequence (``/work/shared/seed/node-server.js``):
``/healthz`` 200, other paths 200 "hello", ``/shutdown``, ``/healthz`` 500, request paths
logged, and on SIGTERM or SIGINT: stop accepting, finish open requests, exit 0 (through
healthprobe's GracefulShutdown); under load, with a load-balancer-like client, no request
is lost; ``/metrics`` passes ``promtool check metrics``."""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from examples.node_demo import asgi_app, common, wsgi_app

from healthprobe.shutdown import REPEAT_WINDOW
from tests.support import (
    PYTHON,
    ROOT,
    LoadBalancer,
    ServerProcess,
    free_port,
    http_client,
    promtool_check_metrics,
    run_server,
    samples,
    stop_gracefully,
)

FLAVOURS = {"asgi": "examples.node_demo.asgi_app", "wsgi": "examples.node_demo.wsgi_app"}


@pytest.fixture(params=sorted(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def demo(flavour: str, tmp_path: Path, **env: str) -> Iterator[tuple[ServerProcess, Path]]:
    """Start one flavour with ``python -m`` on a free port and its own healthy file; no
    shutdown delay unless ``SHUTDOWN_DELAY`` is given (even where ``KUBERNETES_SERVICE_HOST``
    is set)."""
    port = free_port()
    healthy = tmp_path / "healthy"
    full_env = {"HOST": "127.0.0.1", "PORT": str(port), "HEALTHY_FILE": str(healthy), "SHUTDOWN_DELAY": "0", **env}
    with run_server([PYTHON, "-m", FLAVOURS[flavour]], port, tmp_path, env=full_env, name=flavour) as server:
        yield server, healthy


def refused(port: int, timeout: float) -> bool:
    """Whether a new TCP connection to ``port`` is refused within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_seed_sequence(flavour: str, tmp_path: Path) -> None:
    with demo(flavour, tmp_path) as (server, healthy), http_client(server) as client:
        assert healthy.exists(), "the app touches its healthy file when it starts"

        response = client.get("/healthz")
        assert (response.status_code, response.text) == (200, common.TEXT_HEALTHY)
        assert response.headers["content-type"].startswith("text/plain")
        for method, path in (("GET", "/"), ("GET", "/anything/at/all"), ("POST", "/form")):
            response = client.request(method, path)
            assert (response.status_code, response.text) == (200, common.TEXT_HELLO), (method, path)
        for path in ("/livez", "/readyz", "/startupz"):
            assert client.get(path).status_code == 200, path
        assert "[+]healthy-file ok" in client.get("/livez?verbose").text

        response = client.get("/shutdown")
        assert (response.status_code, response.text) == (200, common.TEXT_SHUTDOWN)

        response = client.get("/healthz")
        assert (response.status_code, response.text) == (500, common.TEXT_UNHEALTHY)
        assert client.get("/livez").status_code == 500
        assert client.get("/livez?format=json").json()["status"] == "fail"
        # /shutdown flips liveness only, as the seed's flag did: traffic may still come.
        assert client.get("/readyz").status_code == 200
        assert client.get("/startupz").status_code == 200
        assert client.get("/other").status_code == 200

        for bad in ("abc", "-1", "31", "nan"):
            response = client.get("/slow", params={"seconds": bad})
            assert response.status_code == 400, bad
            assert "seconds must be a number" in response.text
        assert client.get("/slow", params={"seconds": "0"}).status_code == 200

    log = server.log_path.read_text()
    for path in ("/healthz", "/", "/anything/at/all", "/form", "/livez", "/readyz", "/startupz", "/shutdown", "/slow"):
        assert f"Request for {path} received." in log, path


@pytest.mark.slow
def test_healthy_file_is_a_liveness_check(flavour: str, tmp_path: Path) -> None:
    with demo(flavour, tmp_path) as (server, healthy), http_client(server) as client:
        assert client.get("/livez").status_code == 200
        assert client.get("/startupz").status_code == 200  # startup latches with the file present
        healthy.unlink()
        response = client.get("/livez?verbose")
        assert response.status_code == 500
        assert "[-]healthy-file failed" in response.text
        assert client.get("/healthz").status_code == 500
        assert client.get("/readyz").status_code == 200, "liveness checks never fail readiness"
        assert client.get("/startupz").status_code == 200, "startup stays latched"
        healthy.touch()
        assert client.get("/healthz").status_code == 200
        assert client.get("/livez").status_code == 200


@pytest.mark.slow
def test_startup_needs_the_healthy_file(flavour: str, tmp_path: Path) -> None:
    with demo(flavour, tmp_path) as (server, healthy), http_client(server) as client:
        healthy.unlink()
        response = client.get("/startupz?verbose")
        assert response.status_code == 503
        assert "[-]healthy-file failed" in response.text
        assert client.get("/readyz").status_code == 503, "readiness fails until startup passed"
        healthy.touch()
        assert client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_startup_probe_waits_for_warmup(flavour: str, tmp_path: Path) -> None:
    delay = 1.5
    with demo(flavour, tmp_path, STARTUP_DELAY=str(delay)) as (server, _), http_client(server) as client:
        started = time.monotonic()
        response = client.get("/startupz?verbose")
        if time.monotonic() - started < delay:  # still inside the warm-up (not a slow machine)
            assert response.status_code == 503
            assert "[-]warmup failed" in response.text
            assert client.get("/readyz").status_code == 503, "readiness fails until startup passed"
        deadline = time.monotonic() + delay + 10
        while client.get("/startupz").status_code != 200:
            assert time.monotonic() < deadline, "startup never passed"
            time.sleep(0.1)
        assert client.get("/readyz").status_code == 200
        assert client.get("/startupz").status_code == 200, "startup latches"
    assert "lifecycle starting -> started" in server.log_path.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_open_request(flavour: str, sig: signal.Signals, tmp_path: Path) -> None:
    slow = 3.0
    with demo(flavour, tmp_path) as (server, healthy), concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(httpx.get, f"{server.url}/slow", params={"seconds": str(slow)}, timeout=slow + 20)
        server.wait_for_output("Request for /slow received.", timeout=10)
        server.signal(sig)

        assert refused(server.port, timeout=slow + 5), "new connections are still accepted"
        assert not future.done(), "the open request ended before new connections were refused"

        response = future.result(timeout=slow + 20)
        assert (response.status_code, response.text) == (200, f"{common.TEXT_HELLO} after {slow:g} s")
        assert server.wait(timeout=slow + 15) == 0
    log = server.log_path.read_text()
    assert f"shutdown: {sig.name} received" in log
    assert "-> draining" in log
    assert "hook 'remove_healthy_file' finished" in log
    assert "exit code 0" in log
    assert not healthy.exists(), "the cleanup hook removes the healthy file on a clean stop"


@pytest.mark.slow
def test_bad_settings_exit_2(flavour: str) -> None:
    result = subprocess.run(
        [PYTHON, "-m", FLAVOURS[flavour]],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PORT": "http"},
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"PORT must be a TCP port number" in result.stderr


def test_flavours_default_to_distinct_healthy_files() -> None:
    """Stopping one flavour removes its healthy file: the other, running beside it with the
    defaults, must not be watching the same file."""
    asgi = asgi_app.read_settings({}).healthy_file
    wsgi = wsgi_app.read_settings({}).healthy_file
    assert asgi != wsgi
    assert str(asgi) == common.DEFAULT_HEALTHY_FILE == "/tmp/healthy", "the image's exec probe reads /tmp/healthy"
    assert str(wsgi) == "/tmp/healthy-wsgi"
    for module in (asgi_app, wsgi_app):
        assert str(module.read_settings({"HEALTHY_FILE": "/x/h"}).healthy_file) == "/x/h"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["port-in-use", "bad-host", "bad-healthy-file"])
def test_unusable_address_or_healthy_file_exits_2(flavour: str, case: str, tmp_path: Path) -> None:
    """An address that cannot be bound or a healthy file that cannot be created is a
    settings problem: one error line, exit 2, no "listening" line, no healthy file left."""
    healthy = tmp_path / "healthy"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "HEALTHY_FILE": str(healthy)}
    with socket.create_server(("127.0.0.1", 0)) as busy:
        env["PORT"] = str(busy.getsockname()[1]) if case == "port-in-use" else "0"
        if case == "bad-host":
            env["HOST"] = "256.1.1.1"
        if case == "bad-healthy-file":
            env["HEALTHY_FILE"] = "/proc/nope/x"
        result = subprocess.run(
            [PYTHON, "-m", FLAVOURS[flavour]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
        )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, output
    expected = {
        "port-in-use": "(HOST, PORT): [Errno",
        "bad-host": "(HOST, PORT):",
        "bad-healthy-file": "(HEALTHY_FILE):",
    }
    assert expected[case] in errors[0], output
    assert "Traceback" not in output
    assert "listening" not in output and "exit code 0" not in output, output
    assert len(output.strip().splitlines()) == 1, output
    assert not healthy.exists(), "a failed start leaves no healthy file behind"


def test_settings_from_env() -> None:
    settings = common.Settings.from_env({})
    assert (settings.host, settings.port, str(settings.healthy_file), settings.startup_delay) == (
        "0.0.0.0",
        8080,
        "/tmp/healthy",
        0.0,
    )
    assert settings.disable_file is None
    assert (settings.shutdown_delay, settings.drain_timeout, settings.hook_timeout, settings.grace_period) == (
        None,
        20.0,
        5.0,
        30.0,
    )
    settings = common.Settings.from_env(
        {
            "HOST": "::1",
            "PORT": "9000",
            "HEALTHY_FILE": "/x",
            "STARTUP_DELAY": "2.5",
            "SHUTDOWN_DELAY": "1",
            "DRAIN_TIMEOUT": "4",
            "HOOK_TIMEOUT": "0.5",
            "GRACE_PERIOD": "35",
            "DISABLE_FILE": "/run/demo/disabled",
        }
    )
    assert str(settings.disable_file) == "/run/demo/disabled"
    assert common.Settings.from_env({"DISABLE_FILE": " "}).disable_file is None
    assert (settings.host, settings.port, str(settings.healthy_file), settings.startup_delay) == (
        "::1",
        9000,
        "/x",
        2.5,
    )
    assert (settings.shutdown_delay, settings.drain_timeout, settings.hook_timeout, settings.grace_period) == (
        1.0,
        4.0,
        0.5,
        35.0,
    )
    bad = ({"PORT": "-1"}, {"PORT": "65536"}, {"STARTUP_DELAY": "soon"}, {"STARTUP_DELAY": "-1"})
    bad += ({"SHUTDOWN_DELAY": "inf"}, {"DRAIN_TIMEOUT": "-2"}, {"HOOK_TIMEOUT": "nan"}, {"GRACE_PERIOD": "x"})
    for env in bad:
        with pytest.raises(ValueError, match=next(iter(env))):
            common.Settings.from_env(env)


def test_coordinator_delay_follows_kubernetes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, the shutdown delay is GracefulShutdown's: 5 s inside a pod, else 0;
    SHUTDOWN_DELAY overrides it either way."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert common.Demo(common.Settings.from_env({})).coordinator.delay == 0.0
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    demo = common.Demo(common.Settings.from_env({}))
    assert demo.coordinator.delay == 5.0
    assert demo.coordinator.budget == 5.0 + 20.0 + 5.0, "delay + drain + one hook"
    assert common.Demo(common.Settings.from_env({"SHUTDOWN_DELAY": "1.5"})).coordinator.delay == 1.5


def test_request_log_escapes_control_characters(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="node_demo"):
        common.Demo(common.Settings()).log_request("/a\nRequest for /forged received.")
    assert caplog.messages == ["Request for /a\\nRequest for /forged received. received."]


@pytest.mark.slow
def test_second_sigint_forces_exit(flavour: str, tmp_path: Path) -> None:
    slow = 30.0
    with demo(flavour, tmp_path) as (server, _), concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(httpx.get, f"{server.url}/slow", params={"seconds": str(slow)}, timeout=slow + 10)
        server.wait_for_output("Request for /slow received.", timeout=10)
        server.signal(signal.SIGINT)
        server.wait_for_output("shutdown: SIGINT received", timeout=10)
        time.sleep(REPEAT_WINDOW + 0.5)  # a signal within the window would be a copy of the first
        server.signal(signal.SIGINT)
        # The coordinator's forced exit: 128 + signal number, the shell's code for a
        # process ended by that signal (the seed's demo used 1).
        assert server.wait(timeout=slow / 2) == 128 + signal.SIGINT, "a second SIGINT did not force the exit"
        # The open request is cut: a reset connection (WSGI) or uvicorn's 500 for a
        # cancelled request (ASGI), never the 200 of a completed one.
        try:
            cut = future.result(timeout=slow / 2).status_code != 200
        except httpx.HTTPError:
            cut = True
        assert cut
    assert "second signal SIGINT" in server.log_path.read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ["-m", "uvicorn", "examples.node_demo.asgi_app:app", "--host", "127.0.0.1", "--port", "{port}"],
        ["-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "examples.node_demo.wsgi_app:app"],
    ],
    ids=["uvicorn-cli", "gunicorn-cli"],
)
def test_app_serves_under_other_servers(command: list[str], tmp_path: Path) -> None:
    """The demo's ``app`` under plain ``uvicorn`` and plain ``gunicorn`` (no healthprobe
    configuration): it serves, and SIGTERM gives the graceful shutdown in every process."""
    port = free_port()
    args = [PYTHON, *(arg.format(port=port) for arg in command)]
    healthy = tmp_path / "healthy"
    env = {"HEALTHY_FILE": str(healthy)}
    workers = 2 if "gunicorn" in command else 1
    with run_server(args, port, tmp_path, env=env) as server, http_client(server) as client:
        response = client.get("/healthz")
        assert (response.status_code, response.text) == (200, common.TEXT_HEALTHY)
        assert client.get("/readyz").status_code == 200
        assert client.get("/nothing").text == common.TEXT_HELLO
        server.wait_for_output("Request for /nothing received.", timeout=10)
        server.wait_for_output("touched", workers)  # every process has built the app
        log = stop_gracefully(server, workers=workers, installed_line=False)
    assert log.count("exit code 0") == workers, log
    assert not healthy.exists(), log  # the cleanup hook ran


# -- shutdown under load (issue 3) ------------------------------------------------------------

DELAY = 1.0
DRAIN = 4.0
#: Slack for a loaded two-core machine on top of delay + drain (the one hook is instant).
SLACK = 3.0


def wait_ready(server: ServerProcess, timeout: float = 20.0) -> None:
    """Ask ``/startupz`` as the kubelet does (the lifecycle starts once it passes), then wait
    for ``/readyz`` to pass."""
    deadline = time.monotonic() + timeout
    with http_client(server) as client:
        while client.get("/startupz").status_code != 200 or client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, f"not ready within {timeout} s:\n{server.output()}"
            time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_under_load_loses_no_request(flavour: str, tmp_path: Path) -> None:
    env = {"SHUTDOWN_DELAY": str(DELAY), "DRAIN_TIMEOUT": str(DRAIN)}
    with demo(flavour, tmp_path, **env) as (server, healthy):
        wait_ready(server)
        balancer = LoadBalancer(server.url, slow_path="/slow?seconds=2")
        signalled, code, exited = balancer.signal_mid_load(server, DELAY + DRAIN + SLACK + 5)
        log = server.output()

    balancer.assert_nothing_lost(signalled, DELAY, log)

    assert code == 0, log
    assert exited - signalled <= DELAY + DRAIN + SLACK, log
    assert "delay over after" in log and "exit code 0" in log
    assert not healthy.exists(), "the cleanup hook ran"


# -- /metrics (issue 4) ------------------------------------------------------------------------


@pytest.mark.slow
def test_metrics_pass_promtool_and_show_the_shutdown(flavour: str, tmp_path: Path) -> None:
    with (
        demo(flavour, tmp_path, SHUTDOWN_DELAY="3") as (server, _),
        http_client(server) as client,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        wait_ready(server)
        answer = client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        promtool_check_metrics(answer.text)
        seen = samples(answer.text)
        assert seen[("healthprobe_check_status", frozenset({("check", "healthy-file"), ("status", "pass")}))] == 1.0
        assert seen[("healthprobe_shutdown_phase", frozenset({("phase", "serving")}))] == 1.0
        assert seen[("healthprobe_in_flight_requests", frozenset())] == 0.0

        # A request in flight and the delay phase are visible to a scrape during shutdown.
        future = pool.submit(httpx.get, f"{server.url}/slow", params={"seconds": "2"}, timeout=20)
        server.wait_for_output("Request for /slow received.", timeout=10)
        server.signal(signal.SIGTERM)
        server.wait_for_output("shutdown: SIGTERM received", timeout=10)
        seen = samples(client.get("/metrics").text)
        assert seen[("healthprobe_shutdown_phase", frozenset({("phase", "delay")}))] == 1.0
        assert seen[("healthprobe_shutdown_phase", frozenset({("phase", "serving")}))] == 0.0
        assert seen[("healthprobe_in_flight_requests", frozenset())] == 1.0
        assert seen[("healthprobe_lifecycle_state", frozenset({("state", "draining")}))] == 1.0
        assert future.result(timeout=20).status_code == 200
        assert server.wait(timeout=3 + DRAIN + SLACK + 5) == 0
    assert "Request for /metrics received." in server.log_path.read_text()
