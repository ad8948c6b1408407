"""GracefulShutdown without a web server, and the in-flight counting of both middlewares."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from werkzeug.test import Client, EnvironBuilder
from werkzeug.wrappers import Response

from healthprobe import HealthRegistry, Lifecycle
from healthprobe.asgi import HealthMiddleware as AsgiHealthMiddleware
from healthprobe.shutdown import REPEAT_WINDOW, GracefulShutdown, current
from healthprobe.wsgi import HealthMiddleware as WsgiHealthMiddleware

from .support import asgi_call


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_worker_loop_drains_runs_hooks_once_in_lifo_order_and_restores_handlers(restore_signals: None) -> None:
    registry = HealthRegistry()
    registry.mark_started()
    chained: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        chained.append(signum)

    signal.signal(signal.SIGUSR1, previous)
    shutdown = GracefulShutdown(registry, delay=0.3, drain_timeout=2, hook_timeout=1, signals=(signal.SIGUSR1,))
    assert current() is shutdown
    order: list[str] = []
    shutdown.add_hook(lambda: order.append("first"), name="first")

    @shutdown.hook
    async def second() -> None:
        await anyio.sleep(0.01)
        order.append("second")

    assert shutdown.install() is True
    assert shutdown.install() is False  # already in place
    assert shutdown.pid == os.getpid()
    assert not shutdown.wait(0.01)
    assert shutdown.phase == "serving"

    os.kill(os.getpid(), signal.SIGUSR1)
    assert shutdown.wait(2)
    assert shutdown.is_draining and not shutdown.is_stopping
    assert shutdown.phase == "delay"
    assert registry.lifecycle is Lifecycle.DRAINING
    assert registry.run("readiness").status.value == "fail"
    assert registry.run("liveness").status.value == "pass"
    assert chained == []  # the previous handler runs only when the delay is over

    deadline = time.monotonic() + 5
    while not chained and time.monotonic() < deadline:
        time.sleep(0.02)
    assert chained == [signal.SIGUSR1]
    assert shutdown.is_stopping
    assert shutdown.phase == "drain"

    assert shutdown.finish() == 0
    assert order == ["second", "first"]
    shutdown.run_hooks()
    assert anyio.run(shutdown.run_hooks_async) is None
    assert order == ["second", "first"]  # never twice
    assert registry.lifecycle is Lifecycle.STOPPED
    assert shutdown.is_stopped
    assert shutdown.phase == "stopped"
    assert signal.getsignal(signal.SIGUSR1) == previous


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_wait_draining_in_an_async_worker_loop(backend: str) -> None:
    shutdown = GracefulShutdown(HealthRegistry(), delay=0.1, drain_timeout=1)
    rounds = 0

    async def worker() -> int:
        nonlocal rounds
        async with anyio.create_task_group() as group:

            async def loop() -> None:
                nonlocal rounds
                while not shutdown.is_draining:
                    rounds += 1
                    await anyio.sleep(0.01)

            group.start_soon(loop)
            await anyio.sleep(0.1)
            shutdown.begin()
            with anyio.fail_after(2):
                await shutdown.wait_draining()
                await shutdown.wait_stopping()
        return await shutdown.finish_async()

    assert anyio.run(worker, backend=backend) == 0
    assert rounds > 0
    assert shutdown.begin() is False


def test_hooks_are_bounded_and_failures_logged(caplog: pytest.LogCaptureFixture) -> None:
    shutdown = GracefulShutdown(HealthRegistry(), delay=0, hook_timeout=0.3)
    ran: list[str] = []
    shutdown.add_hook(lambda: ran.append("last"), name="last")
    shutdown.add_hook(lambda: threading.Event().wait(), name="hangs")

    @shutdown.hook
    def raises() -> None:
        raise RuntimeError("secret detail")

    caplog.set_level(logging.INFO, logger="healthprobe.shutdown")
    started = time.monotonic()
    shutdown.run_hooks()
    assert time.monotonic() - started < 0.3 + 2
    assert ran == ["last"]
    assert "hook 'raises' raised RuntimeError" in caplog.text
    assert "hook 'hangs' cut at its bound of 0.3 s" in caplog.text
    assert "hook 'last' finished" in caplog.text


def test_async_hooks_are_shielded_from_cancellation_and_bounded(caplog: pytest.LogCaptureFixture) -> None:
    shutdown = GracefulShutdown(HealthRegistry(), delay=0, hook_timeout=0.5)
    done: list[str] = []

    @shutdown.hook
    async def hangs() -> None:
        await anyio.sleep(3600)

    @shutdown.hook
    async def slow() -> None:
        await anyio.sleep(0.2)
        done.append("slow")

    async def main() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()  # the server cancels its own tasks: the hooks still run
            await shutdown.run_hooks_async()

    caplog.set_level(logging.INFO, logger="healthprobe.shutdown")
    anyio.run(main)
    assert done == ["slow"]
    assert "hook 'hangs' cut at its bound of 0.5 s" in caplog.text


def test_budget_warning_and_defaults(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert GracefulShutdown(HealthRegistry()).delay == 0
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    quiet = GracefulShutdown(HealthRegistry())
    assert (quiet.delay, quiet.drain_timeout, quiet.hook_timeout, quiet.grace_period) == (5, 20, 5, 30)
    assert quiet.repeat_window == REPEAT_WINDOW == 1.0
    assert "exceeds the grace period" not in caplog.text
    quiet.add_hook(lambda: None)
    assert "exceeds the grace period" not in caplog.text
    quiet.add_hook(lambda: None)  # 5 + 20 + 2 x 5 = 35 s > 30 s, but the app is not started yet:
    quiet.add_hook(lambda: None)  # hooks registered before it starts are all counted
    assert "exceeds the grace period" not in caplog.text
    quiet.registry.mark_started()  # the first lifecycle change
    assert "= 40.0 s exceeds the grace period of 30.0 s" in caplog.text
    caplog.clear()
    started = HealthRegistry()
    started.mark_started()
    GracefulShutdown(started, delay=10, drain_timeout=25)  # built after the start: at once
    assert "exceeds the grace period" in caplog.text
    caplog.clear()
    late = GracefulShutdown(HealthRegistry(), delay=10, drain_timeout=25)
    assert "exceeds the grace period" not in caplog.text
    late.registry.begin_drain()  # the shutdown begins before any start: then
    assert "= 40.0 s exceeds the grace period of 30.0 s" in caplog.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay": -1},
        {"drain_timeout": float("nan")},
        {"hook_timeout": "5"},
        {"signals": ()},
        {"repeat_window": -0.5},
        {"repeat_window": float("inf")},
        {"signals": (signal.SIGTERM, signal.SIGKILL)},  # no process can handle SIGKILL
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        GracefulShutdown(HealthRegistry(), **kwargs)


def test_a_registry_is_required() -> None:
    with pytest.raises(TypeError, match="HealthRegistry"):
        GracefulShutdown(None)  # type: ignore[arg-type]


def test_a_hook_added_after_the_hooks_ran_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    shutdown = GracefulShutdown(HealthRegistry(), delay=0)
    ran: list[str] = []

    @shutdown.hook
    def first() -> None:
        shutdown.add_hook(lambda: ran.append("late"), name="late")  # from inside a hook
        ran.append("first")

    shutdown.run_hooks()
    assert ran == ["first"]
    assert "hook 'late' added after the hooks ran; it will not run" in caplog.text


def test_a_worker_that_finishes_during_the_delay_ends_the_sequence(caplog: pytest.LogCaptureFixture) -> None:
    """The worker pattern of the docs (``while not shutdown.is_draining: ...`` then
    ``finish()``): nothing is logged as stopping after the process has stopped."""
    caplog.set_level(logging.INFO, "healthprobe.shutdown")
    shutdown = GracefulShutdown(HealthRegistry(), delay=0.5)
    shutdown.begin()
    assert shutdown.finish() == 0
    time.sleep(0.8)  # past the delay
    assert "stopped" in caplog.text
    # (A coordinator another test left in its 30 s delay may log its own "delay over" here.)
    assert not re.search(r"delay over after 0\.", caplog.text) and not shutdown.is_stopping


def test_an_unknown_servers_handler_is_kept_and_named(restore_signals: None, caplog: pytest.LogCaptureFixture) -> None:
    """An adapter that finds a handler of no server it knows installs on top of it (the
    delay is kept, the handler is called when it ends), and says so with a WARNING."""
    called: list[int] = []

    class OtherServer:
        def on_term(self, signum: int, frame: FrameType | None) -> None:
            called.append(signum)

    registry = HealthRegistry()
    shutdown = GracefulShutdown(registry, delay=0.1, drain_timeout=0.5, signals=(signal.SIGUSR1,))
    signal.signal(signal.SIGUSR1, OtherServer().on_term)  # after the coordinator was built
    shutdown.install_automatically("")
    assert "an unknown server's signal handler" in caplog.text and shutdown.server is None
    os.kill(os.getpid(), signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not called and time.monotonic() < deadline:
        time.sleep(0.02)
    assert called == [signal.SIGUSR1]
    assert shutdown.finish() == 0


def test_asgi_counts_in_flight_and_closes_connections_while_draining(restore_signals: None) -> None:
    registry = HealthRegistry()
    shutdown = GracefulShutdown(registry, delay=30)
    seen: list[int] = []

    async def page(request: Request) -> PlainTextResponse:
        seen.append(shutdown.in_flight)
        return PlainTextResponse("ok", headers={"Connection": "keep-alive"})

    app = AsgiHealthMiddleware(Starlette(routes=[Route("/", page)]), registry, shutdown=shutdown)

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            before = await client.get("/")
            ready_before = await client.get("/readyz")
            shutdown.begin()
            after = await client.get("/")
            ready_after = await client.get("/readyz")
            live_after = await client.get("/livez")
        return [before, ready_before, after, ready_after, live_after]

    before, ready_before, after, ready_after, live_after = anyio.run(main)
    assert seen == [1, 1]
    assert shutdown.in_flight == 0
    assert before.headers["connection"] == "keep-alive"
    assert ready_before.status_code == 200 and "connection" not in ready_before.headers
    assert after.status_code == 200 and after.headers.get_list("connection") == ["close"]
    assert ready_after.status_code == 503 and ready_after.headers["connection"] == "close"
    assert live_after.status_code == 200
    # No server here, only asyncio.run()'s own Ctrl-C handler: nothing is installed at the
    # first request (a test run must stay interruptible), and begin() shuts down all the same.
    assert shutdown.pid is None


def test_asgi_repeated_probe_closes_connections_once_draining(restore_signals: None) -> None:
    """A liveness answer remembered before the signal still gets Connection: close after it."""
    registry = HealthRegistry()
    registry.mark_started()
    shutdown = GracefulShutdown(registry, delay=30)
    app = AsgiHealthMiddleware(Starlette(), registry, shutdown=shutdown)

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = [await client.get("/livez") for _ in range(3)]
            shutdown.begin()
            answers += [await client.get("/livez") for _ in range(2)]
        return answers

    answers = anyio.run(main)
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.headers.get("connection") for a in answers] == [None, None, None, "close", "close"]
    assert shutdown.in_flight == 0


def test_asgi_sets_no_connection_header_on_http2(restore_signals: None) -> None:
    registry = HealthRegistry()
    shutdown = GracefulShutdown(registry, delay=30)
    shutdown.begin()
    app = AsgiHealthMiddleware(
        Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))]), registry, shutdown=shutdown
    )
    scope = {
        "type": "http",
        "http_version": "2",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "scheme": "https",
        "query_string": b"",
        "headers": [],
        "server": ("test", 443),
    }
    status, headers, _ = asgi_call(app, scope)
    assert status == 200
    assert b"connection" not in headers


def test_wsgi_counts_until_the_body_is_sent_or_closed_and_sets_no_hop_by_hop_header() -> None:
    """A WSGI request is in flight until its body is exhausted or the server closes the
    iterable, whichever comes first: what the client sees (Werkzeug's server closes it only
    once a keep-alive peer closes the connection)."""
    registry = HealthRegistry()
    shutdown = GracefulShutdown(registry, delay=30)
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    def broken(environ: dict[str, Any], start_response: Any) -> Body:
        raise RuntimeError("boom")

    client = Client(WsgiHealthMiddleware(app, registry, shutdown=shutdown))
    shutdown.begin()
    iterable, status, headers = client.run_wsgi_app(EnvironBuilder(path="/").get_environ())
    assert status == "200 OK" and shutdown.in_flight == 1
    chunks = iter(iterable)
    assert next(chunks) == b"a"
    assert shutdown.in_flight == 1  # part of the body is still to be sent
    assert list(chunks) == [b"b"]
    assert shutdown.in_flight == 0  # the whole body is out: no longer in flight
    iterable.close()  # type: ignore[attr-defined]
    iterable.close()  # type: ignore[attr-defined]
    assert shutdown.in_flight == 0 and closed == [True]  # the app's iterable closed once
    assert "Connection" not in headers

    # Closed before its body was exhausted (a client gone): finished once, at the close.
    iterable, _, _ = client.run_wsgi_app(EnvironBuilder(path="/").get_environ())
    assert next(iter(iterable)) == b"a" and shutdown.in_flight == 1
    iterable.close()  # type: ignore[attr-defined]
    assert shutdown.in_flight == 0 and closed == [True, True]

    response = Client(WsgiHealthMiddleware(app, registry, shutdown=shutdown), Response).get("/readyz")
    assert response.status_code == 503 and "Connection" not in response.headers

    with pytest.raises(RuntimeError):
        Client(WsgiHealthMiddleware(broken, registry, shutdown=shutdown)).get("/")
    assert shutdown.in_flight == 0


WEDGED_WORKER = """
import logging, sys, time
from healthprobe import HealthRegistry
from healthprobe.shutdown import GracefulShutdown
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
registry = HealthRegistry()
registry.mark_started()
shutdown = GracefulShutdown(registry, delay=0.2, drain_timeout=0.5, hook_timeout=0.3)
shutdown.install()
print("ready", flush=True)
while True:  # a job loop wedged in a call that never returns: it never looks at is_draining
    time.sleep(3600)
"""


def test_a_wedged_worker_exits_by_force_once_drain_and_hooks_have_had_their_time() -> None:
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", WEDGED_WORKER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        for _ in range(20):  # log lines come first
            if proc.stdout.readline().strip() == "ready":
                break
        else:
            raise AssertionError("the worker never said ready")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        elapsed = time.monotonic() - started
        output = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 1, output
    # delay 0.2 + drain 0.5 + one hook slot 0.3: the budget, never before it, and not much after
    assert 1.0 <= elapsed < 15, (elapsed, output)
    assert "not stopped" in output and "exiting with code 1" in output


REPEATED_SIGNAL = """
import logging, signal, sys, time
from healthprobe import HealthRegistry
from healthprobe.shutdown import GracefulShutdown
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
window, gap, delay = (float(arg) for arg in sys.argv[1:])
registry = HealthRegistry()
registry.mark_started()
shutdown = GracefulShutdown(registry, delay=delay, drain_timeout=0.5, hook_timeout=0.5, repeat_window=window)
shutdown.install()
signal.raise_signal(signal.SIGTERM)
while not shutdown.is_draining:  # the handler has run: the next signal is not merged with it
    time.sleep(0.001)
time.sleep(gap)
signal.raise_signal(signal.SIGINT)
while not shutdown.is_stopping:
    time.sleep(0.01)
sys.exit(shutdown.finish())
"""


@pytest.mark.parametrize(
    ("window", "gap", "delay", "expected"),
    [
        (5.0, 0.05, 0.5, 0),  # a copy of the first signal: the same shutdown
        (0.5, 1.0, 3.0, 128 + signal.SIGINT),  # a second signal after the window
        (0.0, 0.05, 1.0, 128 + signal.SIGINT),  # no window: every later signal is a second one
    ],
)
def test_a_signal_within_the_repeat_window_is_a_copy_of_the_first(
    window: float, gap: float, delay: float, expected: int
) -> None:
    """The handler in a real process: a signal ``gap`` seconds after the first is logged and
    ignored within ``repeat_window`` seconds, and forces the exit after it. The delay
    outlasts the gap, so the second signal comes while the sequence runs."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", REPEATED_SIGNAL, str(window), str(gap), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
    )
    output = proc.stdout
    assert proc.returncode == expected, output
    if expected == 0:
        assert output.count("taken as the same shutdown") == 1, output
        assert "SIGINT again " in output and f"within the {window:.1f} s repeat window" in output, output
        assert "second signal" not in output and "exit code 0" in output, output
    else:
        assert "taken as the same shutdown" not in output, output
        assert "second signal SIGINT" in output and "stopped" not in output, output
