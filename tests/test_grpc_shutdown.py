"""Graceful shutdown of gRPC servers under load: no RPC lost.

Each server (a thread-pool ``grpc.server`` served by :func:`healthprobe.servers.grpc.serve`, a
``grpc.aio.server`` served by :func:`healthprobe.servers.grpc.serve_async`) runs as its own
process on an ephemeral loopback port (``tests/apps/grpc_shutdown.py``). A prober polls
``grpc.health.v1.Health/Check`` for ``""`` (readiness) and ``"liveness"`` every 100 ms with
the stock ``HealthStub``, as the kubelet's ``grpc`` probes do; a pool of client threads
sends unary RPCs, fast ones every 20 ms and 2 s ones back to back, and keeps sending until
the process has exited, so that RPCs sent after the server stopped accepting fail as they
must. SIGTERM arrives while a 2 s RPC is in flight.
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from healthprobe import HealthRegistry
from healthprobe.grpc import add_to_server
from healthprobe.servers.grpc import FLUSH_TIMEOUT, control, serve, serve_async
from healthprobe.shutdown import GracefulShutdown

from .support import (
    INSTALLED,
    PYTHON,
    ServerProcess,
    free_port,
    run_server,
    start_threads,
    started_registry,
    stop_threads,
    wait_until,
)

DELAY = 1.5
DRAIN = 4.0
HOOK_TIMEOUT = 1.0
#: Seconds the slow RPCs take: begun just before the signal, they outlast the delay.
SLOW = 2.0
#: Slack for a loaded two-core machine on top of a worst case.
SLACK = 3.0
#: Seconds by which an RPC must have been sent before the end of the delay to count as
#: started before it: the time it takes a request to leave a client thread and reach the
#: server on loopback.
TRANSIT = 0.1
ENV = {"HP_DELAY": str(DELAY), "HP_DRAIN": str(DRAIN), "HP_HOOK_TIMEOUT": str(HOOK_TIMEOUT)}
MODES = ["sync", "aio"]

SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"


@dataclass
class Call:
    """One RPC: what was called, when (``time.time()``), and how it ended: ``code`` is the
    name of its ``grpc.StatusCode``; ``answer`` the reply (its text, or for a health check
    the name of the status it answered)."""

    what: str
    start: float
    end: float
    code: str
    answer: str = ""


def _call(what: str, into: list[Call], rpc: Callable[[], str]) -> Call:
    start = time.time()
    try:
        answer = rpc()
        call = Call(what, start, time.time(), "OK", answer)
    except grpc.RpcError as exc:
        call = Call(what, start, time.time(), exc.code().name, exc.details() or "")
    into.append(call)
    return call


@dataclass
class Load:
    """A client of one gRPC server: a prober, ``fast_senders`` threads sending ``Fast``
    every 20 ms and ``slow_senders`` threads sending ``Slow`` (2 s) back to back, on
    channels of their own (the prober's apart, as the kubelet's), until :meth:`stop`."""

    port: int
    fast_senders: int = 4
    slow_senders: int = 2
    calls: list[Call] = field(default_factory=list)
    probes: list[Call] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    slow_started: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    channels: list[grpc.Channel] = field(default_factory=list)

    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.channels.append(channel)
        return channel

    def start(self) -> None:
        probe_channel, rpc_channel = self.channel(), self.channel()
        targets = [lambda: self._poll(probe_channel)]
        targets += [lambda: self._send(rpc_channel, "Fast", b"", 0.02)] * self.fast_senders
        targets += [lambda: self._send(rpc_channel, "Slow", str(SLOW).encode(), 0.0)] * self.slow_senders
        start_threads(targets, self.threads)

    def stop(self) -> None:
        stop_threads(self.done, self.threads)
        for channel in self.channels:
            channel.close()

    def _poll(self, channel: grpc.Channel) -> None:
        stub = health_pb2_grpc.HealthStub(channel)

        def check(service: str) -> Callable[[], str]:
            def rpc() -> str:
                response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

            return rpc

        while not self.done.is_set():
            started = time.time()
            _call("readiness", self.probes, check(""))
            _call("liveness", self.probes, check("liveness"))
            self.done.wait(max(0.0, 0.1 - (time.time() - started)))

    def _send(self, channel: grpc.Channel, method: str, request: bytes, pause: float) -> None:
        rpc = channel.unary_unary(f"/tests.Load/{method}")
        while not self.done.is_set():
            if method == "Slow":
                self.slow_started.set()
            call = _call(method, self.calls, lambda: bytes(rpc(request, timeout=SLOW + 10)).decode())
            self.done.wait(pause if call.code == "OK" else 0.02)

    def signal_mid_load(self, server: ServerProcess, wait_timeout: float) -> tuple[float, int, float]:
        """Put ``server`` under load, then send it SIGTERM just after a slow RPC began.
        Returns ``(signalled, exit code, exited)``, the times as ``time.time()``."""
        self.start()
        try:
            assert self.slow_started.wait(10)
            time.sleep(1.0)  # steady load first
            self.slow_started.clear()
            assert self.slow_started.wait(5)
            time.sleep(0.1)
            signalled = time.time()
            server.signal(signal.SIGTERM)
            code = server.wait(timeout=wait_timeout)
            return signalled, code, time.time()
        finally:
            self.stop()


def _health(port: int, service: str = "") -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=1.0
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _started(mode: str, tmp_path: Path, **env: str) -> Any:
    port = free_port()
    command = [PYTHON, "-m", "tests.apps.grpc_shutdown", mode, str(port)]
    return run_server(command, port, tmp_path, env={**ENV, **env}, name=f"grpc-{mode}")


def _ready(server: ServerProcess) -> None:
    server.wait_for_output(INSTALLED)
    wait_until(lambda: _health(server.port) == SERVING, 10, "readiness SERVING", server.output, retry=(grpc.RpcError,))


def _delay_over(log: str) -> float:
    """The seconds from the signal handler to the end of the delay, as the coordinator logged them."""
    found = re.findall(r"delay over after ([\d.]+) s", log)
    assert len(found) == 1, log
    return float(found[0])


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_sigterm_under_load_fails_no_rpc_started_before_the_end_of_the_delay(mode: str, tmp_path: Path) -> None:
    budget = DELAY + DRAIN + HOOK_TIMEOUT
    with _started(mode, tmp_path) as server:
        _ready(server)
        load = Load(server.port)
        signalled, code, exited = load.signal_mid_load(server, budget + SLACK + 5)
        log = server.output()

    # The server's delay ended no sooner than this: the coordinator counts it from its
    # signal handler, which runs after the signal was sent.
    delay_end = signalled + _delay_over(log)
    assert _delay_over(log) >= DELAY, log

    # Readiness NOT_SERVING at once, liveness SERVING, through the delay.
    after = [p for p in load.probes if p.start > signalled]
    first_readiness = next(p for p in after if p.what == "readiness")
    assert first_readiness.answer == NOT_SERVING or first_readiness.start > signalled + 0.3, load.probes
    in_delay = [p for p in after if signalled + 0.3 < p.start and p.end < delay_end - 0.1]
    readiness = [p for p in in_delay if p.what == "readiness"]
    liveness = [p for p in in_delay if p.what == "liveness"]
    assert readiness and all((p.code, p.answer) == ("OK", NOT_SERVING) for p in readiness), (readiness, log)
    assert liveness and all((p.code, p.answer) == ("OK", SERVING) for p in liveness), (liveness, log)
    before = [p for p in load.probes if p.end < signalled]
    assert before and all(p.answer == SERVING for p in before), before

    # Zero failed RPCs among those sent before the end of the delay; the server served on
    # through the delay, and RPCs sent after it stopped accepting were refused.
    started_before = [c for c in load.calls if c.start < delay_end - TRANSIT]
    failed = [c for c in started_before if c.code != "OK"]
    assert not failed, (failed[:5], log)
    assert len([c for c in started_before if c.start > signalled + 0.2 and c.what == "Fast"]) >= 10, log
    late = [c for c in load.calls if c.start > delay_end + 0.5]
    assert late and all(c.code == "UNAVAILABLE" for c in late), (late[:5], log)

    # The drain: slow RPCs sent before the signal ran past the end of the delay and were
    # answered, and the hooks ran after them.
    long_ones = [c for c in load.calls if c.what == "Slow" and c.start < signalled]
    assert long_ones and all(c.code == "OK" and c.answer.startswith("slow ok") for c in long_ones), long_ones
    assert any(c.end > delay_end for c in long_ones), (long_ones, delay_end)
    hook_start = float(re.findall(r"cleanup_sleep start \d+ ([\d.]+)", log)[0])
    assert hook_start >= max(c.end for c in long_ones) - TRANSIT, log

    # Clean exit, within the bound, with the hooks run.
    assert code == 0, log
    assert exited - signalled <= budget + SLACK, log
    assert "cleanup_sleep done" in log, log
    if mode == "aio":
        assert "async hook on the server's loop" in log, log
    assert re.search(r"shutdown: drained after [\d.]+ s", log), log
    assert "exit code 0" in log, log
    assert "graceful shutdown is OFF" not in log, log


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_an_open_watch_stream_does_not_hold_the_exit(mode: str, tmp_path: Path) -> None:
    """A client that health-checks with ``Watch`` (Envoy, gRPC's client-side health
    checking) sees readiness turn ``NOT_SERVING`` at the signal; its stream, which the
    interceptors do not count, is ended once the drain is over (after
    :data:`FLUSH_TIMEOUT`), not held open until the drain bound."""
    drain = 10.0
    with _started(mode, tmp_path, HP_DRAIN=str(drain)) as server:
        _ready(server)
        seen: list[tuple[float, str]] = []
        ended: list[tuple[float, str]] = []
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)

        def read() -> None:
            try:
                for response in stream:
                    seen.append((time.time(), health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)))
            except grpc.RpcError as exc:
                ended.append((time.time(), exc.code().name))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_until(lambda: seen, 5, "the first Watch message", server.output)
        signalled = time.time()
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=DELAY + drain + HOOK_TIMEOUT + SLACK)
        exited = time.time()
        reader.join(10)
        channel.close()
        log = server.output()

    assert code == 0, log
    assert seen[0][1] == SERVING, seen
    assert any(status == NOT_SERVING and signalled < at < signalled + 0.5 for at, status in seen), (seen, log)
    assert ended and ended[0][1] in ("CANCELLED", "UNAVAILABLE"), (ended, log)
    delay_end = signalled + _delay_over(log)
    assert delay_end + FLUSH_TIMEOUT - 0.2 <= ended[0][0] <= delay_end + FLUSH_TIMEOUT + SLACK, (ended, log)
    assert exited - signalled < DELAY + drain / 2, log  # not held until the drain bound
    assert "cleanup_sleep done" in log, log


# -- misuse, in this process --------------------------------------------------------------------


def test_serve_and_control_refuse_what_they_cannot_serve() -> None:
    shutdown = GracefulShutdown(HealthRegistry(), delay=0.0)
    with pytest.raises(TypeError, match=r"needs a grpc\.Server or a grpc\.aio\.Server, got object"):
        control(object(), shutdown)
    with pytest.raises(TypeError, match=r"serve\(\) needs a grpc.Server"):
        serve(object(), shutdown)  # type: ignore[arg-type]

    async def aio() -> grpc.aio.Server:
        server = grpc.aio.server()
        with pytest.raises(TypeError, match=r"serve a grpc.aio server with serve_async\(\)"):
            serve(server, shutdown)
        with pytest.raises(TypeError, match=r"serve_async\(\) needs a grpc.aio.Server"):
            await serve_async(grpc.server(ThreadPoolExecutor(1)), shutdown)  # type: ignore[arg-type]
        assert control(server, shutdown).server == "grpc.aio"
        return server

    server = asyncio.run(aio())
    with pytest.raises(RuntimeError, match="must be called on the event loop that serves it"):
        control(server, shutdown)
    assert control(grpc.server(ThreadPoolExecutor(1)), shutdown).server == "grpc"
    assert not shutdown.installed


def test_a_cancelled_serving_task_stops_the_server_and_runs_the_hooks() -> None:
    """An embedding program cancels the task that serves (its own Ctrl-C, a task group that
    ends): the server's RPCs are cancelled with it, the cleanup hooks run, the signal
    handlers are put back, and the cancellation goes on."""
    registry = started_registry({"dependency": lambda: True})
    shutdown = GracefulShutdown(registry, delay=0.0, hook_timeout=1.0)
    ran: list[str] = []
    shutdown.add_hook(lambda: ran.append("hook"), name="record")
    handlers = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))

    async def main() -> tuple[str, str]:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        add_to_server(server, registry)
        port = server.add_insecure_port("127.0.0.1:0")
        serving = asyncio.create_task(serve_async(server, shutdown))
        request = health_pb2.HealthCheckRequest(service="")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            before = await stub.Check(request, timeout=5, wait_for_ready=True)
            serving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await serving
            with pytest.raises(grpc.aio.AioRpcError) as after:
                await stub.Check(request, timeout=2)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(before.status), after.value.code().name

    assert asyncio.run(main()) == ("SERVING", "UNAVAILABLE")
    assert ran == ["hook"]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers
    assert registry.lifecycle.value == "stopped"
