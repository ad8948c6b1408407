"""healthprobe.grpc: the grpc.health.v1 servicers against real ``grpc.server`` and
``grpc.aio.server`` instances on 127.0.0.1, with grpcio's own ``HealthStub`` as the client.

Every test runs against both kinds of server. Servers whose registry a test may change in ways
others would see (the lifecycle, switches) are made per test; the rest share one server of each
kind for the module, each test adding checks of its own names and removing them afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_health")

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from healthprobe import CheckResult, GracefulShutdown, HealthRegistry  # noqa: E402
from healthprobe import grpc as hgrpc  # noqa: E402

from .support import samples, wait_until  # noqa: E402

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
KINDS = ["sync", "aio"]

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


# -- servers -----------------------------------------------------------------------------------


class AioLoop:
    """An asyncio event loop in a daemon thread, for the grpc.aio servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-grpc-aio", daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def aio_loop() -> Iterator[AioLoop]:
    loop = AioLoop()
    yield loop
    loop.close()


class Watcher:
    """A ``Watch`` call read by a thread: the statuses it received, in order."""

    def __init__(self, stub: Any, service: str) -> None:
        self.call = stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=60)
        self.received: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.received.put(response.status)
        except grpc.RpcError as error:
            self.error.append(error)

    def next(self, timeout: float = 5.0) -> int:
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no Watch message within {timeout} s") from None

    def nothing(self, within: float) -> None:
        try:
            status = self.received.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected Watch message {status}")

    def cancel(self) -> None:
        self.call.cancel()
        self.thread.join(5)
        assert not self.thread.is_alive()


@dataclasses.dataclass
class Served:
    """A health server of one kind, its registry and a client."""

    kind: str
    registry: HealthRegistry
    servicer: Any
    channel: Any
    stub: Any

    def check(self, service: str = "", timeout: float = 5.0) -> int:
        return self.stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status

    def check_call(self, service: str = "", timeout: float = 5.0) -> tuple[int, dict[str, str]]:
        response, call = self.stub.Check.with_call(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return response.status, dict(call.trailing_metadata() or ())

    def refused(self, service: str, rpc: str = "Check") -> Any:
        with pytest.raises(grpc.RpcError) as raised:
            if rpc == "Check":
                self.check(service)
            else:
                self.list()
        return raised.value

    def list(self, timeout: float = 5.0) -> dict[str, int]:
        response = self.stub.List(health_pb2.HealthListRequest(), timeout=timeout)
        return {name: value.status for name, value in response.statuses.items()}

    def watch(self, service: str) -> Watcher:
        return Watcher(self.stub, service)


Work = dict[str, Any]


@contextlib.contextmanager
def serve(
    kind: str,
    registry: HealthRegistry,
    aio_loop: AioLoop,
    *,
    expose_output: bool = False,
    shutdown: GracefulShutdown | None = None,
    work: Work | None = None,
) -> Iterator[Served]:
    """Serve ``registry`` on a server of ``kind`` on an ephemeral port of 127.0.0.1; ``work``
    adds a service ``test.Work`` of method handlers."""
    if kind == "sync":
        interceptors = [hgrpc.InFlightInterceptor(shutdown)] if shutdown is not None else None
        server = grpc.server(ThreadPoolExecutor(max_workers=32), interceptors=interceptors)
        servicer = hgrpc.add_to_server(server, registry, expose_output=expose_output)
        if work:
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Work", work),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
    else:

        async def start() -> tuple[Any, Any, int]:
            interceptors = [hgrpc.AioInFlightInterceptor(shutdown)] if shutdown is not None else None
            server = grpc.aio.server(interceptors=interceptors)
            servicer = hgrpc.add_to_server(server, registry, expose_output=expose_output)
            if work:
                server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Work", work),))
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            return server, servicer, port

        server, servicer, port = aio_loop.run(start())
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(kind, registry, servicer, channel, health_pb2_grpc.HealthStub(channel))
    finally:
        channel.close()
        if kind == "sync":
            server.stop(None).wait(5)
        else:
            aio_loop.run(server.stop(None))


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=KINDS)
def shared(request: pytest.FixtureRequest, aio_loop: AioLoop) -> Iterator[Served]:
    """One started registry and server of each kind, for the tests that only add checks."""
    registry = HealthRegistry(default_timeout=0.5, default_cache_ttl=0.2)
    registry.mark_started()
    with serve(str(request.param), registry, aio_loop) as served:
        yield served


@pytest.fixture
def add(shared: Served) -> Iterator[Callable[..., str]]:
    """Add a check of a new name to the shared registry (removed after the test); returns its name."""
    added: list[str] = []

    def add_check(func: Callable[[], object], prefix: str = "c", **options: Any) -> str:
        name = unique(prefix)
        shared.registry.add_check(name, func, **options)
        added.append(name)
        return name

    yield add_check
    for name in added:
        shared.registry.remove_check(name)


class Counter:
    """A check that counts its runs and passes while ``ok``."""

    def __init__(self, ok: bool = True, sleep: float = 0.0) -> None:
        self.ok = ok
        self.sleep = sleep
        self.runs = 0
        self.lock = threading.Lock()

    def __call__(self) -> bool:
        with self.lock:
            self.runs += 1
        if self.sleep:
            time.sleep(self.sleep)
        return self.ok


# -- the mapping of probes and checks --------------------------------------------------------


def test_whole_probes_follow_the_lifecycle_and_the_switches(kind: str, aio_loop: AioLoop) -> None:
    registry = HealthRegistry(default_cache_ttl=0)
    warming = Counter(ok=False)
    registry.add_check("warm", warming, probes=["startup"])
    registry.add_check("db", lambda: None, probes=["readiness", "liveness"])
    with serve(kind, registry, aio_loop) as served:
        # Startup not latched: startup, readiness and the overall service are not serving.
        assert served.check("startup") == NOT_SERVING
        assert served.check("") == NOT_SERVING
        assert served.check("readiness") == NOT_SERVING
        assert served.check("liveness") == SERVING
        status, trailers = served.check_call("")
        assert status == NOT_SERVING and "starting" in trailers[hgrpc.REASON_KEY]
        # Startup passes and latches; readiness follows.
        warming.ok = True
        assert served.check("startup") == SERVING
        assert registry.lifecycle.value == "started"
        assert served.check("") == SERVING
        assert served.check("readiness") == SERVING
        warming.ok = False  # latched: startup is not run again
        assert served.check("startup") == SERVING
        # The switches.
        registry.set_ready(False, "maintenance")
        status, trailers = served.check_call("readiness")
        assert status == NOT_SERVING and trailers[hgrpc.REASON_KEY] == "lifecycle failed: out of rotation: maintenance"
        assert served.check("liveness") == SERVING
        registry.set_ready(True)
        assert served.check("") == SERVING
        registry.set_live(False)
        assert served.check("liveness") == NOT_SERVING
        registry.set_live(True)
        # Draining: readiness fails, liveness and startup do not.
        registry.begin_drain()
        assert served.check("") == NOT_SERVING
        assert served.check("readiness") == NOT_SERVING
        assert served.check("readiness/db") == SERVING  # one check: no lifecycle reasons, as /readyz/db
        assert served.check("liveness") == SERVING
        assert served.check("startup") == SERVING


def test_one_check_pass_warn_fail_raise_nonsense_and_timeout(shared: Served, add: Callable[..., str]) -> None:
    def raises() -> None:
        raise ValueError("password=hunter2 at db.internal")

    async def hangs() -> None:
        await asyncio.sleep(5)

    passing = add(lambda: None)
    warning = add(lambda: CheckResult("warn", output="slow"))
    failing = add(lambda: False)
    optional = add(lambda: False, critical=False)
    raising = add(raises)
    nonsense = add(lambda: 42)
    slow = add(hangs, timeout=0.2, probes=["liveness"])
    assert shared.check(f"readiness/{passing}") == SERVING
    assert shared.check(f"readiness/{warning}") == SERVING
    assert shared.check(f"readiness/{optional}") == SERVING  # a non-critical failure is a warning
    assert shared.check(f"readiness/{failing}") == NOT_SERVING
    status, trailers = shared.check_call(f"readiness/{raising}")
    assert status == NOT_SERVING
    assert trailers[hgrpc.REASON_KEY] == f"{raising} failed: reason withheld"  # no exception text
    assert shared.check(f"readiness/{nonsense}") == NOT_SERVING
    started = time.monotonic()
    status, trailers = shared.check_call(f"liveness/{slow}")
    assert status == NOT_SERVING and time.monotonic() - started < 1.0
    assert trailers[hgrpc.REASON_KEY] == f"{slow} failed: timed out after 0.2 s"  # healthprobe's own words
    # The whole probe: any critical failure fails it.
    status, trailers = shared.check_call("readiness")
    assert status == NOT_SERVING
    reason = trailers[hgrpc.REASON_KEY]
    assert f"{failing} failed" in reason and f"{raising} failed" in reason and passing not in reason
    assert shared.check("") == NOT_SERVING
    assert shared.check("liveness") == NOT_SERVING


def test_expose_output_shows_what_checks_wrote_in_the_trailer(kind: str, aio_loop: AioLoop) -> None:
    registry = HealthRegistry()
    registry.mark_started()

    def raises() -> None:
        raise ConnectionError("refused by db.internal:5432 \u2014 caf\u00e9\nnext line")

    registry.add_check("db", raises)
    with serve(kind, registry, aio_loop, expose_output=True) as served:
        status, trailers = served.check_call("readiness/db")
        assert status == NOT_SERVING
        assert trailers[hgrpc.REASON_KEY] == (
            "db failed: ConnectionError: refused by db.internal:5432 \\u2014 caf\\xe9\\nnext line"
        )
    with pytest.raises(TypeError, match="expose_output"):
        hgrpc.HealthServicer(registry, expose_output="yes")  # type: ignore[arg-type]


def test_unknown_names_are_not_found_without_echoing_them(shared: Served, add: Callable[..., str]) -> None:
    readiness_only = add(lambda: None)
    for service in ["nope", "Readiness", "readiness/", "readiness/nope", f"liveness/{readiness_only}", "/", "x" * 5000]:
        error = shared.refused(service)
        assert error.code() == grpc.StatusCode.NOT_FOUND, service
        assert "x" * 100 not in error.details()
    assert shared.refused("readiness/nope").details() == "no readiness check named 'nope'"
    assert "'<probe>/<check>'" in shared.refused("nope").details()


def test_metrics_show_grpc_probes_and_no_client_text(kind: str, aio_loop: AioLoop) -> None:
    pytest.importorskip("prometheus_client")
    from healthprobe.prometheus import PrometheusMetrics

    registry = HealthRegistry()
    registry.mark_started()
    registry.add_check("db", lambda: False)
    metrics = PrometheusMetrics(registry)
    with serve(kind, registry, aio_loop) as served:
        assert served.check("readiness") == NOT_SERVING
        assert served.check("liveness") == SERVING
        for service in ["client-text", "readiness/client-text"]:
            served.refused(service)
        _, body = metrics.expose(None)
    text = body.decode()
    found = samples(text)
    assert found[("healthprobe_probe_status", frozenset({("probe", "readiness"), ("status", "fail")}))] == 1
    assert found[("healthprobe_probe_status", frozenset({("probe", "liveness"), ("status", "pass")}))] == 1
    assert found[("healthprobe_check_runs_total", frozenset({("check", "db"), ("status", "fail")}))] >= 1
    assert "client-text" not in text


# -- deadlines, single-flight ---------------------------------------------------------------


def test_a_thousand_concurrent_checks_run_the_dependency_once(shared: Served, add: Callable[..., str]) -> None:
    dependency = Counter(sleep=0.2)
    # A deadline no loaded machine reaches: this is about sharing one run, not about
    # deadlines (with the default 0.8 s, a thousand calls on two busy cores can starve the
    # check's thread past it, and every caller is then rightly NOT_SERVING).
    name = add(dependency, probes=["liveness"], cache_ttl=30, timeout=10)
    request = health_pb2.HealthCheckRequest(service=f"liveness/{name}")
    calls = [shared.stub.Check.future(request, timeout=20) for _ in range(1000)]
    assert {call.result().status for call in calls} == {SERVING}
    assert dependency.runs == 1


def test_a_hung_sync_check_answers_not_serving_within_its_deadline(
    kind: str, aio_loop: AioLoop, release: threading.Event
) -> None:
    registry = HealthRegistry()
    registry.mark_started()
    registry.add_check("hung", release.wait, timeout=0.3)
    registry.add_check("stuck", release.wait, probes=["liveness"], timeout=1.0)
    with serve(kind, registry, aio_loop) as served:
        # The check's own deadline.
        started = time.monotonic()
        status, trailers = served.check_call("readiness/hung", timeout=3)
        assert status == NOT_SERVING and time.monotonic() - started < 0.8
        assert trailers[hgrpc.REASON_KEY] == "hung failed: timed out after 0.3 s"
        # The caller's deadline, shorter than the check's: NOT_SERVING before it, not
        # DEADLINE_EXCEEDED, for every caller at once.
        started = time.monotonic()
        request = health_pb2.HealthCheckRequest(service="liveness")
        calls = [served.stub.Check.future(request, timeout=0.5) for _ in range(20)]
        assert {call.result().status for call in calls} == {NOT_SERVING}
        assert time.monotonic() - started < 0.5
        status, trailers = served.check_call("liveness/stuck", timeout=0.3)
        assert status == NOT_SERVING
        assert trailers[hgrpc.REASON_KEY] == "not finished within the caller's deadline"
        # Once the run is over (at its own deadline), the answer says so.
        reason = wait_until(lambda: served.check_call("liveness", timeout=2)[1].get(hgrpc.REASON_KEY), 3)
        assert reason == "stuck failed: timed out after 1 s"


# -- Watch ---------------------------------------------------------------------------------


def test_watch_sees_pass_fail_pass_within_one_cache_interval(shared: Served, add: Callable[..., str]) -> None:
    interval = 0.3
    dependency = Counter()
    name = add(dependency, cache_ttl=interval)
    watchers = [shared.watch(f"readiness/{name}") for _ in range(3)]
    try:
        assert [watcher.next() for watcher in watchers] == [SERVING] * 3
        for flipped, expected in ((False, NOT_SERVING), (True, SERVING)):
            dependency.ok = flipped
            started = time.monotonic()
            assert [watcher.next() for watcher in watchers] == [expected] * 3
            assert time.monotonic() - started < interval + 0.25
        # Nobody else runs the check: one re-runner for the three streams runs it about once
        # per cache interval, and sends nothing while the status stays.
        before = dependency.runs
        time.sleep(0.7)
        assert 1 <= dependency.runs - before <= 0.7 / interval + 1
        for watcher in watchers:
            watcher.nothing(0)
        if shared.kind == "sync":  # one re-runner thread (those of earlier tests end at once)
            wait_until(lambda: sum(t.name == "healthprobe-grpc-watch" for t in threading.enumerate()) == 1, 2)
    finally:
        for watcher in watchers:
            watcher.cancel()
    # Cancelled: the re-runner is gone, and the check is no longer run.
    time.sleep(interval + 0.1)
    runs = dependency.runs
    time.sleep(2 * interval)
    assert dependency.runs == runs
    for watcher in watchers:
        assert watcher.error and watcher.error[0].code() == grpc.StatusCode.CANCELLED


def test_watch_follows_the_lifecycle_at_once(kind: str, aio_loop: AioLoop) -> None:
    registry = HealthRegistry(default_cache_ttl=30)
    registry.add_check("db", lambda: None, probes=["readiness", "liveness"])
    registry.mark_started()
    with serve(kind, registry, aio_loop) as served:
        overall, liveness = served.watch(""), served.watch("liveness")
        try:
            assert overall.next() == SERVING and liveness.next() == SERVING
            started = time.monotonic()
            registry.begin_drain()  # the lifecycle listener, not the 30 s cache
            assert overall.next() == NOT_SERVING and time.monotonic() - started < 0.5
            liveness.nothing(0.3)
        finally:
            overall.cancel()
            liveness.cancel()


def test_watch_is_woken_by_results_and_reports_made_elsewhere(kind: str, aio_loop: AioLoop) -> None:
    registry = HealthRegistry(default_cache_ttl=30)
    registry.mark_started()
    dependency = Counter()
    # Run in the background every 0.2 s; its results stay fresh for interval + timeout (2.2 s),
    # so the re-runner's own turn comes after that.
    registry.add_check("dep", dependency, probes=["readiness"], interval=0.2, timeout=2.0)
    with serve(kind, registry, aio_loop) as served:
        one, liveness = served.watch("readiness/dep"), served.watch("liveness")
        try:
            assert one.next() == SERVING and liveness.next() == SERVING
            started = time.monotonic()
            dependency.ok = False  # the background run's result wakes the stream
            assert one.next() == NOT_SERVING and time.monotonic() - started < 1.0
            registry.set_live(False)  # no listener for the switch: the next answer tells
            liveness.nothing(0.3)
            started = time.monotonic()
            registry.run("liveness")  # an HTTP probe, say
            assert liveness.next() == NOT_SERVING and time.monotonic() - started < 0.5
        finally:
            one.cancel()
            liveness.cancel()
            registry.remove_check("dep")  # ends its background loop, which would log into later tests


def test_watch_of_an_unknown_service_stays_open_until_it_exists(shared: Served) -> None:
    name = unique("later")
    watcher = shared.watch(f"readiness/{name}")
    try:
        assert watcher.next() == SERVICE_UNKNOWN
        watcher.nothing(0.3)
        shared.registry.add_check(name, lambda: None, cache_ttl=30)
        assert watcher.next(timeout=2) == SERVING
        shared.registry.remove_check(name)
        assert watcher.next(timeout=2) == SERVICE_UNKNOWN
    finally:
        watcher.cancel()
    watcher = shared.watch("no such service")
    try:
        assert watcher.next() == SERVICE_UNKNOWN
    finally:
        watcher.cancel()


def test_watching_ever_new_service_names_is_bounded(kind: str, aio_loop: AioLoop) -> None:
    """A client naming ever new services cannot make a re-runner each without bound: past
    WATCH_LIMIT distinct services at once, a Watch of one more fails RESOURCE_EXHAUSTED,
    while more streams of a service already watched are still served."""
    registry = HealthRegistry(default_cache_ttl=30)
    registry.mark_started()
    with serve(kind, registry, aio_loop) as served:
        watchers = [served.watch(f"unknown-{number}") for number in range(hgrpc.WATCH_LIMIT)]
        try:
            assert {watcher.next() for watcher in watchers} == {SERVICE_UNKNOWN}
            if kind == "sync":  # one re-runner thread per watched service, and no more
                rerunners = [t for t in threading.enumerate() if t.name == "healthprobe-grpc-watch"]
                assert len(rerunners) <= hgrpc.WATCH_LIMIT
            refused = served.watch("one-more")
            refused.thread.join(5)
            assert refused.error and refused.error[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            again = served.watch("unknown-0")  # a service already watched: served
            try:
                assert again.next() == SERVICE_UNKNOWN
            finally:
                again.cancel()
        finally:
            for watcher in watchers:
                watcher.cancel()

        def watched_again() -> bool:
            later = served.watch("one-more")
            try:
                return later.next(timeout=1) == SERVICE_UNKNOWN
            finally:
                later.cancel()

        # Once the streams ended (their re-runners end on their own), new names are watched again.
        wait_until(watched_again, 10, "a Watch of a new name after the others ended", retry=(AssertionError,))


# -- List ------------------------------------------------------------------------------------


def test_list_answers_every_service(kind: str, aio_loop: AioLoop) -> None:
    registry = HealthRegistry()
    registry.add_check("warm", lambda: None, probes=["startup"])
    registry.add_check("db", lambda: None, probes=["readiness", "liveness"])
    registry.add_check("cache", lambda: False, critical=False)
    registry.add_check("queue", lambda: False)
    with serve(kind, registry, aio_loop) as served:
        assert served.list() == {
            "": NOT_SERVING,
            "readiness": NOT_SERVING,
            "liveness": SERVING,
            "startup": SERVING,  # latched by this very run
            "startup/warm": SERVING,
            "readiness/db": SERVING,
            "liveness/db": SERVING,
            "readiness/cache": SERVING,
            "readiness/queue": NOT_SERVING,
        }
        registry.remove_check("queue")
        listed = served.list()
        assert listed[""] == listed["readiness"] == SERVING and "readiness/queue" not in listed
        assert listed["startup/warm"] == SERVING  # run on its own once startup has latched


def test_list_refuses_more_services_than_the_protocol_allows(kind: str, aio_loop: AioLoop) -> None:
    registry = HealthRegistry(default_cache_ttl=30)
    registry.mark_started()
    for number in range(hgrpc.SERVICE_LIMIT - len(hgrpc.SERVICES)):
        registry.add_check(f"c{number}", lambda: None)
    with serve(kind, registry, aio_loop) as served:
        listed = served.list()
        assert len(listed) == hgrpc.SERVICE_LIMIT and set(listed.values()) == {SERVING}
        registry.add_check("one-more", lambda: None)
        error = served.refused("", rpc="List")
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "101 services" in error.details()
        assert served.check("readiness/one-more") == SERVING  # Check still answers each


# -- in-flight interceptors ----------------------------------------------------------------


def test_interceptors_count_unary_and_streaming_rpcs_but_not_health_ones(
    kind: str, aio_loop: AioLoop, release: threading.Event
) -> None:
    registry = HealthRegistry()
    registry.mark_started()
    shutdown = GracefulShutdown(registry, delay=0)
    go_on = threading.Event()
    if kind == "sync":

        def slow(request: bytes, context: Any) -> bytes:
            go_on.wait(5)
            return b"done"

        def stream(request: bytes, context: Any) -> Iterator[bytes]:
            while not release.is_set():
                yield b"tick"
                time.sleep(0.05)

    else:

        async def slow(request: bytes, context: Any) -> bytes:
            await asyncio.get_running_loop().run_in_executor(None, go_on.wait, 5)
            return b"done"

        async def stream(request: bytes, context: Any) -> Any:
            while not release.is_set():
                yield b"tick"
                await asyncio.sleep(0.05)

    work = {"Slow": grpc.unary_unary_rpc_method_handler(slow), "Stream": grpc.unary_stream_rpc_method_handler(stream)}
    with serve(kind, registry, aio_loop, shutdown=shutdown, work=work) as served:
        unary = served.channel.unary_unary("/test.Work/Slow")
        streaming = served.channel.unary_stream("/test.Work/Stream")
        pending = unary.future(b"", timeout=10)
        wait_until(lambda: shutdown.in_flight == 1, 5, "the unary RPC counted")
        watcher = served.watch("")
        assert watcher.next() == SERVING and served.check() == SERVING and served.list()
        assert shutdown.in_flight == 1  # health RPCs are not counted
        go_on.set()
        assert pending.result() == b"done"
        wait_until(lambda: shutdown.in_flight == 0, 5, "the unary RPC ended")
        ticks = streaming(b"", timeout=10)
        assert next(ticks) == b"tick"
        wait_until(lambda: shutdown.in_flight == 1, 5, "the stream counted")
        ticks.cancel()
        wait_until(lambda: shutdown.in_flight == 0, 5, "the cancelled stream ended")
        watcher.cancel()
    with pytest.raises(TypeError, match="GracefulShutdown"):
        hgrpc.InFlightInterceptor(registry)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="GracefulShutdown"):
        hgrpc.AioInFlightInterceptor(None)  # type: ignore[arg-type]


def test_add_to_server_picks_the_servicer_by_server_kind(aio_loop: AioLoop) -> None:
    registry = HealthRegistry()
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    assert type(hgrpc.add_to_server(server, registry)) is hgrpc.HealthServicer

    async def aio() -> type:
        return type(hgrpc.add_to_server(grpc.aio.server(), registry))

    assert aio_loop.run(aio()) is hgrpc.AioHealthServicer
    with pytest.raises(TypeError, match=r"grpc\.server"):
        hgrpc.add_to_server(object(), registry)
    with pytest.raises(TypeError, match="HealthRegistry"):
        hgrpc.add_to_server(server, object())  # type: ignore[arg-type]
