"""WebSocket sessions and streamed responses during a graceful shutdown, on real servers.

When the delay ends the server stops accepting, but the sessions and streams already open go
on until they end, or until the drain bound, where WebSocket sessions still open are closed
with code 1001 ("going away", RFC 6455 section 7.4.1). An app ends its own streams early by
awaiting ``shutdown.wait_stopping()``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .support import PYTHON, ServerProcess, free_port, run_server

pytestmark = pytest.mark.slow

DELAY = 1.0
DRAIN = 3.0
#: How long after the delay the short WebSocket session goes on, then ends by itself.
AFTER_DELAY = 1.5

SERVERS: dict[str, Callable[[int], list[str]]] = {
    "uvicorn-cli": lambda port: [
        *(PYTHON, "-m", "uvicorn", "tests.apps.sessions_asgi:app", "--port", str(port), "--ws", "wsproto"),
    ],
    "hypercorn": lambda port: [PYTHON, "-m", "tests.apps.sessions_asgi", "hypercorn", str(port)],
    "hypercorn-trio": lambda port: [PYTHON, "-m", "tests.apps.sessions_asgi", "hypercorn-trio", str(port)],
}


def _wait_ready(server: ServerProcess) -> None:
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/readyz").status_code == 200:
                    return
            time.sleep(0.05)
    raise TimeoutError(server.output())


@pytest.mark.parametrize("name", list(SERVERS))
def test_sessions_and_streams_run_past_the_delay_and_close_with_1001_at_the_bound(name: str, tmp_path: Path) -> None:
    port = free_port()
    # hypercorn's own 2 s after its graceful timeout comes out of the hooks' share of the budget.
    env = {"HP_DELAY": str(DELAY), "HP_DRAIN": str(DRAIN), "HP_HOOK_TIMEOUT": "3"}
    ws_url = f"ws://127.0.0.1:{port}/ws"
    signalled = threading.Event()
    signalled_at: list[float] = []
    results: dict[str, object] = {}
    ready = threading.Barrier(5)

    def short_session() -> None:
        # Exchanges messages until AFTER_DELAY past the delay, then closes by itself.
        sent = received = 0
        with connect(ws_url, open_timeout=5) as ws:
            ready.wait(10)
            while not signalled_at or time.time() < signalled_at[0] + DELAY + AFTER_DELAY:
                ws.send(f"m{sent}")
                sent += 1
                if ws.recv(timeout=5) == f"echo: m{sent - 1}":
                    received += 1
                time.sleep(0.1)
            ended = time.time()
        results["short"] = (sent, received, ended, ws.close_code)

    def held_session() -> None:
        # Never ends by itself: closed by the server at the drain bound.
        with connect(ws_url, open_timeout=5) as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "echo: hello"
            ready.wait(10)
            try:
                ws.recv(timeout=30)
            except ConnectionClosed as exc:
                results["held"] = (exc.rcvd.code if exc.rcvd else None, time.time())

    def stream(path: str) -> None:
        lines: list[str] = []
        try:
            with (
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
                client.stream("GET", path) as response,
            ):
                iterator = (line for line in response.iter_lines() if line)  # events, not separators
                lines.append(next(iterator))
                ready.wait(10)
                lines.extend(iterator)
            results[path] = ("complete", lines[-1], time.time())
        except httpx.HTTPError as exc:
            results[path] = (type(exc).__name__, lines[-1] if lines else "", time.time())

    with run_server(SERVERS[name](port), port, tmp_path, env=env, name=name) as server:
        _wait_ready(server)
        threads = [
            threading.Thread(target=target, args=args, daemon=True)
            for target, args in [(short_session, ()), (held_session, ()), (stream, ("/events",)), (stream, ("/ticks",))]
        ]
        for thread in threads:
            thread.start()
        ready.wait(10)  # every session and stream is open
        signalled_at.append(time.time())
        signalled.set()
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=DELAY + DRAIN + 15)
        for thread in threads:
            thread.join(10)
        log = server.output()

    start = signalled_at[0]
    # A session that ends by itself after the delay is served to its end, normally.
    sent, received, ended, close_code = results["short"]  # type: ignore[misc]
    assert received == sent and sent > (DELAY + AFTER_DELAY) / 0.1 / 2, (results, log)
    assert ended > start + DELAY + AFTER_DELAY - 0.2 and close_code == 1000, (results, log)
    assert "ws ended with 1000" in log, log
    # One still open at the drain bound is closed with 1001, not before.
    held_code, held_at = results["held"]  # type: ignore[misc]
    assert held_code == 1001, (results, log)
    assert held_at >= start + DELAY + DRAIN - 0.3, (held_at - start, log)
    assert "closing 1 WebSocket session(s) with code 1001" in log, log
    # The stream the app ends itself once the delay is over is complete.
    outcome, last, ended_at = results["/events"]  # type: ignore[misc]
    assert (outcome, last) == ("complete", "data: bye"), (results, log)
    assert start + DELAY - 0.2 <= ended_at < start + DELAY + 1.0, (ended_at - start, log)
    # The stream that never ends runs to the drain bound, and no further than the server's own.
    outcome, last, ended_at = results["/ticks"]  # type: ignore[misc]
    assert last == "data: tick" and ended_at >= start + DELAY + DRAIN - 0.3, (results, ended_at - start, log)
    assert code == 0, log
    assert "cleanup done" in log, log
