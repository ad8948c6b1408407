"""Built-in checks against the real things on this machine: PostgreSQL, Redis, TCP and HTTP
servers, the file system, this process's memory; plus secret redaction and leak bounds."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from healthprobe import CheckResult, HealthRegistry, Status, checks
from healthprobe.checks import redact

from .support import POSTGRES, POSTGRES_ADMIN, REDIS, free_port, started_registry, werkzeug_server

SECRET = "S3cr3t-pa55"

pytestmark = pytest.mark.timeout(150)


def run(check: object) -> CheckResult:
    """Call a check directly (sync or async) and return its result."""
    value = check()  # type: ignore[operator]
    if hasattr(value, "__await__"):

        async def wait() -> CheckResult:
            return await value  # type: ignore[no-any-return]

        return anyio.run(wait)
    assert isinstance(value, CheckResult)
    return value


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class SilentServer:
    """Accepts TCP connections and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.conns.append(conn)

    def open_connections(self) -> int:
        """Accepted connections whose client has not closed them yet (what a client sent,
        such as a startup packet, is read and dropped on the way to the end of stream)."""
        alive = 0
        for conn in self.conns:
            conn.setblocking(False)
            try:
                while conn.recv(65536):
                    pass
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def closed_port() -> int:
    """A loopback port with no listener."""
    return free_port()


def timed_probe(registry: HealthRegistry, name: str) -> tuple[CheckResult, float]:
    start = time.monotonic()
    report = registry.run("readiness")
    return report.checks[name].result, time.monotonic() - start


def fails_within_timeout_without_leaks(check_on: Callable[[int], object], silent: SilentServer) -> None:
    """Probe a registry (1 s timeout) of two checks made by ``check_on(port)``, ``closed`` on a
    port with no listener and ``silent`` on the ``silent`` server's, a few times: each fails
    within timeout + 2 s, and no socket, descriptor or thread is left behind."""
    registry = started_registry(
        {"closed": check_on(closed_port()), "silent": check_on(silent.port)},  # type: ignore[dict-item]
        default_cache_ttl=0.0,
        default_timeout=1.0,
    )

    def probe() -> None:
        start = time.monotonic()
        report = registry.run("readiness")
        elapsed = time.monotonic() - start
        assert elapsed < 1.0 + 2.0
        for name in ("closed", "silent"):
            result = report.checks[name].result
            assert result.status is Status.FAIL
            assert SECRET not in (result.output or "")
        assert report.checks["silent"].result.timed_out

    probe()  # the first probe also starts the registry's private loop (for sync callers)
    fds, threads = open_fds(), threading.active_count()
    for _ in range(3):
        time.sleep(0.3)  # let the cancelled run finish, so the next probe starts a new one
        probe()
    # The async runs were cancelled at their deadline: their sockets are closed, not leaked.
    deadline = time.monotonic() + 5
    while silent.open_connections() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(silent.conns) >= 2
    assert silent.open_connections() == 0
    # Sockets the silent server accepted are in this process too; they do not count.
    assert open_fds() - len(silent.conns) <= fds + 1
    assert threading.active_count() <= threads + 1


# -- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("postgresql://app:S3cr3t-pa55@db:5432/app", ["S3cr3t-pa55", "app:"]),
        ("host=db user=app password=S3cr3t-pa55 dbname=app", ["S3cr3t-pa55"]),
        ("host=db password='S3 cr3t' dbname=app", ["S3 cr3t"]),
        ("redis://:S3cr3t-pa55@cache:6379/0", ["S3cr3t-pa55"]),
        ("https://TOKEN123@example.com/x?access_token=abc123&x=1", ["TOKEN123", "abc123"]),
        ("failed for https://u:p%40ss@h/?password=zz", ["p%40ss", "zz"]),
    ],
)
def test_redact_removes_userinfo_and_secret_params(text: str, leaked: list[str]) -> None:
    out = redact(text)
    for secret in leaked:
        assert secret not in out
    assert "***" in out


def test_redact_removes_literal_secrets_in_any_form() -> None:
    out = redact("auth failed for p@ss/w0rd and p%40ss%2Fw0rd", ["p@ss/w0rd"])
    assert "p@ss" not in out and "w0rd" not in out
    assert redact("nothing secret here") == "nothing secret here"
    # PostgreSQL folds unquoted identifiers to lower case before echoing them in errors
    out = redact('relation "secret_table_pgpw789" does not exist', ["PGPW789"])
    assert "pgpw789" not in out.lower()
    # A short or common password is not replaced inside other words, which would give it away
    assert redact("postgresql://postgres:postgres@127.0.0.1/x", ["postgres"]) == "postgresql://***@127.0.0.1/x"
    assert redact("OperationalError: connection failed", ["o"]) == "OperationalError: connection failed"
    assert redact("auth failed: password 'o' rejected", ["o"]) == "auth failed: password '***' rejected"


# -- tcp and http ------------------------------------------------------------------------------


def test_tcp_passes_with_latency_and_fails_on_closed_port(postgres_up: None) -> None:
    result = run(checks.tcp(*POSTGRES))
    assert result.status is Status.PASS
    assert result.observed_unit == "s" and isinstance(result.observed_value, float)
    assert 0 <= result.observed_value < 5
    assert run(checks.tcp("127.0.0.1", closed_port())).status is Status.FAIL


def test_tcp_own_timeout_on_unroutable_times_out(silent: SilentServer) -> None:
    # A silent server accepts, so TCP passes: a tcpSocket probe only checks the connect.
    assert run(checks.tcp("127.0.0.1", silent.port)).status is Status.PASS
    with pytest.raises(ValueError):
        checks.tcp("127.0.0.1", 70000)


@pytest.fixture
def http_server() -> Iterator[str]:
    from werkzeug.wrappers import Request, Response

    @Request.application  # type: ignore[arg-type]
    def app(request: Request) -> Response:
        if request.path == "/redirect":
            return Response("", status=302, headers={"Location": "/status/500"})
        if request.path.startswith("/status/"):
            return Response("x", status=int(request.path.rsplit("/", 1)[1]))
        if request.path == "/auth":
            ok = request.headers.get("Authorization") == "Bearer tok-123"
            return Response("", status=200 if ok else 401)
        return Response("ok")

    with werkzeug_server(app) as url:
        yield url


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (200, Status.PASS),
        (204, Status.PASS),
        (399, Status.PASS),
        (301, Status.PASS),
        (400, Status.FAIL),
        (404, Status.FAIL),
        (500, Status.FAIL),
        (503, Status.FAIL),
    ],
)
def test_http_counts_200_to_399_as_success(http_server: str, code: int, status: Status) -> None:
    result = run(checks.http(f"{http_server}/status/{code}"))
    assert result.status is status
    assert result.output == f"HTTP {code}"
    assert result.observed_unit == "s"


def test_http_does_not_follow_redirects_unless_asked(http_server: str) -> None:
    assert run(checks.http(f"{http_server}/redirect")).status is Status.PASS  # 302 counts
    followed = run(checks.http(f"{http_server}/redirect", follow_redirects=True))
    assert followed.status is Status.FAIL and followed.output == "HTTP 500"
    assert run(checks.http(f"{http_server}/status/204", expected_status={200})).status is Status.FAIL


def test_http_ignores_proxy_settings_from_the_environment(http_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert run(checks.http(f"{http_server}/status/200")).status is Status.PASS


def test_http_headers_sent_and_never_shown(http_server: str, silent: SilentServer) -> None:
    good = checks.http(f"{http_server}/auth", headers={"Authorization": "Bearer tok-123"})
    assert run(good).status is Status.PASS
    assert run(checks.http(f"{http_server}/auth")).status is Status.FAIL
    hung = checks.http(
        f"http://user:{SECRET}@127.0.0.1:{silent.port}/?token={SECRET}",
        headers={"Authorization": f"Bearer {SECRET}"},
        timeout=0.5,
    )
    result = run(hung)
    assert result.status is Status.FAIL and result.output == "timed out after 0.5 s"
    assert SECRET not in repr(hung)


def test_http_fails_within_registry_timeout_on_silent_and_closed(silent: SilentServer) -> None:
    fails_within_timeout_without_leaks(lambda port: checks.http(f"http://127.0.0.1:{port}/?token={SECRET}"), silent)


# -- disk, memory, file ------------------------------------------------------------------------


def test_disk_reports_free_bytes_and_thresholds(tmp_path: Path) -> None:
    result = run(checks.disk(tmp_path, min_free_bytes=1))
    assert result.status is Status.PASS and result.observed_unit == "bytes"
    assert isinstance(result.observed_value, int) and result.observed_value > 0
    too_much = run(checks.disk(tmp_path, min_free_bytes=result.observed_value * 1000))
    assert too_much.status is Status.FAIL and too_much.observed_value is not None
    assert run(checks.disk(tmp_path, min_free_ratio=1.0)).status is Status.FAIL
    assert run(checks.disk(tmp_path / "missing", min_free_ratio=0.01)).status is Status.FAIL
    with pytest.raises(ValueError):
        checks.disk(tmp_path)
    with pytest.raises(ValueError):
        checks.disk(tmp_path, min_free_ratio=1.5)


def test_memory_compares_rss_with_limit() -> None:
    rss = checks.rss_bytes()
    assert rss > 1_000_000
    passed = run(checks.memory(max_rss_bytes=rss * 10))
    assert passed.status is Status.PASS and passed.observed_unit == "bytes"
    failed = run(checks.memory(max_rss_bytes=rss // 10))
    assert failed.status is Status.FAIL and isinstance(failed.observed_value, int)
    with pytest.raises(ValueError):
        checks.memory()


def test_cgroup_limits_v2_v1_and_none(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "kubepods" / "pod1").mkdir(parents=True)
    (v2 / "memory.max").write_text("max\n")
    (v2 / "kubepods" / "memory.max").write_text("1073741824\n")
    (v2 / "kubepods" / "pod1" / "memory.max").write_text("536870912\n")
    assert checks.cgroup_memory_limit("0::/kubepods/pod1\n", v2) == 536870912
    (v2 / "kubepods" / "pod1" / "memory.max").write_text("max\n")
    assert checks.cgroup_memory_limit("0::/kubepods/pod1\n", v2) == 1073741824  # the parent's limit
    v1 = tmp_path / "v1"
    (v1 / "memory" / "docker" / "abc").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (v1 / "memory" / "docker" / "abc" / "memory.limit_in_bytes").write_text("268435456\n")
    assert checks.cgroup_memory_limit("4:memory:/docker/abc\n0::/\n", v1) == 268435456
    (v1 / "memory" / "docker" / "abc" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert checks.cgroup_memory_limit("4:memory:/docker/abc\n", v1) is None
    assert checks.cgroup_memory_limit("", tmp_path / "none") is None
    # On this machine: whatever the kernel says, the call must answer (an int or None).
    limit = checks.cgroup_memory_limit()
    assert limit is None or limit > 0


def test_file_exists_and_max_age(tmp_path: Path) -> None:
    path = tmp_path / "healthy"
    check = checks.file(path, max_age=5.0)
    assert run(check).status is Status.FAIL
    path.touch()
    result = run(check)
    assert result.status is Status.PASS and result.observed_unit == "s"
    old = time.time() - 60
    os.utime(path, (old, old))
    stale = run(check)
    assert stale.status is Status.FAIL and isinstance(stale.observed_value, float) and stale.observed_value >= 59
    assert run(checks.file(path)).status is Status.PASS  # no max_age: existence only


# -- PostgreSQL --------------------------------------------------------------------------------


def pg_dsn(app: str, *, db: str = "test", user: str = "postgres", port: int = 5432) -> str:
    return f"postgresql://{user}:{SECRET}@127.0.0.1:{port}/{db}?application_name={app}"


def pg_count(app: str) -> int:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchone()
    assert row is not None
    return int(row[0])


def test_postgres_dsn_passes_and_closes_its_connection(postgres_up: None) -> None:
    app = f"hp-{uuid.uuid4().hex[:12]}"
    check = checks.postgres(pg_dsn(app))
    result = run(check)
    assert result.status is Status.PASS, result.output
    assert result.observed_unit == "s" and isinstance(result.observed_value, float)
    assert SECRET not in repr(check)
    registry = started_registry({"database": (check, {"timeout": 5.0})}, default_cache_ttl=0.0)
    assert registry.run("readiness").ok  # starts the private loop that sync callers use
    fds = open_fds()
    for _ in range(50):
        assert registry.run("readiness").ok
    assert pg_count(app) == 0
    assert open_fds() <= fds + 2


@pytest.mark.parametrize("target", ["wrong_db", "wrong_user"])
def test_postgres_wrong_database_or_user_fails_redacted(postgres_up: None, target: str) -> None:
    dsn = pg_dsn("hp-wrong", db="no_such_db") if target == "wrong_db" else pg_dsn("hp-wrong", user="no_such_user")
    keyword_dsn = f"host=127.0.0.1 dbname=no_such_db user=postgres password={SECRET}"
    for check in (checks.postgres(dsn), checks.postgres(keyword_dsn)):
        result = run(check)
        assert result.status is Status.FAIL
        assert result.output and "does not exist" in result.output
        assert SECRET not in result.output and SECRET not in repr(check)


def test_postgres_closed_port_and_silent_server_fail_within_timeout(postgres_up: None, silent: SilentServer) -> None:
    fails_within_timeout_without_leaks(lambda port: checks.postgres(pg_dsn("hp-down", port=port)), silent)
    own = checks.postgres(pg_dsn("hp-down", port=silent.port), timeout=0.5)
    assert run(own).output == "timed out after 0.5 s"


async def hammer(check: Callable[[], Awaitable[CheckResult]], connections: Callable[[], int]) -> tuple[int, int]:
    """Run an async ``check`` 10,000 times from 10 tasks while sampling the server's count of
    its connections every 0.2 s; returns ``(failed runs, peak connections)``."""
    failures = peak = 0

    async def worker(n: int) -> None:
        nonlocal failures
        for _ in range(n):
            if (await check()).status is not Status.PASS:
                failures += 1

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, await anyio.to_thread.run_sync(connections))
            await anyio.sleep(0.2)

    async with anyio.create_task_group() as group:
        group.start_soon(sample)
        async with anyio.create_task_group() as workers:
            for _ in range(10):
                workers.start_soon(worker, 1000)
        group.cancel_scope.cancel()
    return failures, peak


def test_postgres_async_pool_never_exceeds_pool_size(postgres_up: None) -> None:
    from psycopg_pool import AsyncConnectionPool

    app = f"hp-{uuid.uuid4().hex[:12]}"

    async def main() -> tuple[int, int, int]:
        dsn = f"host=127.0.0.1 user=postgres dbname=test password={SECRET} application_name={app}"
        async with AsyncConnectionPool(dsn, min_size=1, max_size=2, open=False) as pool:
            await pool.open(wait=True)
            check = checks.postgres(pool)
            assert SECRET not in repr(check)
            failures, peak = await hammer(check, lambda: pg_count(app))
        return failures, peak, await anyio.to_thread.run_sync(pg_count, app)

    failures, peak, after = anyio.run(main)
    assert failures == 0
    assert 1 <= peak <= 2
    assert after == 0


def test_postgres_async_pool_run_cancelled_at_deadline_gives_its_connection_back(postgres_up: None) -> None:
    from psycopg_pool import AsyncConnectionPool

    app = f"hp-{uuid.uuid4().hex[:12]}"

    async def main() -> tuple[list[float], Status, dict[str, int]]:
        conninfo = f"host=127.0.0.1 user=postgres dbname=test application_name={app}"
        async with AsyncConnectionPool(conninfo, min_size=1, max_size=1, open=False, timeout=5) as pool:
            await pool.open(wait=True)
            registry = HealthRegistry(default_cache_ttl=0.0)
            registry.add_check("slow", checks.postgres(pool, query="SELECT pg_sleep(2)"), timeout=0.5)
            registry.add_check("fast", checks.postgres(pool), probes=["liveness"], timeout=5.0)
            registry.mark_started()
            elapsed = []
            for _ in range(3):
                start = time.monotonic()
                report = await registry.run_async("readiness")  # async caller: runs on this loop
                elapsed.append(time.monotonic() - start)
                assert report.checks["slow"].result.timed_out
            fast = (await registry.run_async("liveness")).checks["fast"].result.status
            return elapsed, fast, pool.get_stats()

    elapsed, fast, stats = anyio.run(main)
    assert all(seconds < 0.5 + 2.0 for seconds in elapsed)
    assert fast is Status.PASS  # the pool still has its connection to lend
    assert stats["pool_size"] <= 1
    # The client side closed each cancelled connection; PostgreSQL notices a gone client only
    # when the statement ends, so the server side may linger until pg_sleep(2) returns.
    deadline = time.monotonic() + 10
    while pg_count(app) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pg_count(app) == 0


def test_postgres_sync_pool_check(postgres_up: None) -> None:
    from psycopg_pool import ConnectionPool

    app = f"hp-{uuid.uuid4().hex[:12]}"
    with ConnectionPool(
        f"host=127.0.0.1 user=postgres dbname=test application_name={app}", min_size=1, max_size=1
    ) as pool:
        pool.wait()
        check = checks.postgres(pool, timeout=2.0)
        registry = started_registry({"database": (check, {"timeout": 3.0})}, default_cache_ttl=0.0)
        threads = threading.active_count()
        for _ in range(300):
            assert registry.run("readiness").ok
        assert threading.active_count() <= threads + 1
        assert pg_count(app) == 1
    assert pg_count(app) == 0


# -- Redis -------------------------------------------------------------------------------------


def redis_count(name: str) -> int:
    import redis

    client = redis.Redis(host=REDIS[0], port=REDIS[1])
    try:
        return sum(1 for entry in client.client_list() if entry.get("name") == name)
    finally:
        client.close()


def test_redis_url_passes_and_closes_its_connection(redis_up: None) -> None:
    name = f"hp-{uuid.uuid4().hex[:12]}"
    check = checks.redis(f"redis://127.0.0.1:6379/0?client_name={name}")
    result = run(check)
    assert result.status is Status.PASS, result.output
    assert result.observed_unit == "s"
    registry = started_registry({"cache": (check, {"timeout": 5.0})}, default_cache_ttl=0.0)
    assert registry.run("readiness").ok  # starts the private loop that sync callers use
    fds = open_fds()
    for _ in range(100):
        assert registry.run("readiness").ok
    assert redis_count(name) == 0
    assert open_fds() <= fds + 2


def test_redis_wrong_credentials_and_database_fail_redacted(redis_up: None) -> None:
    wrong_user = checks.redis(f"redis://no_such_user:{SECRET}@127.0.0.1:6379/0")
    result = run(wrong_user)
    assert result.status is Status.FAIL and result.output
    assert SECRET not in result.output and SECRET not in repr(wrong_user)
    assert "Authentication" in result.output or "WRONGPASS" in result.output or "invalid" in result.output
    bad_db = run(checks.redis("redis://127.0.0.1:6379/9999"))
    assert bad_db.status is Status.FAIL and bad_db.output and "out of range" in bad_db.output


def test_redis_closed_port_and_silent_server_fail_within_timeout(redis_up: None, silent: SilentServer) -> None:
    fails_within_timeout_without_leaks(lambda port: checks.redis(f"redis://:{SECRET}@127.0.0.1:{port}/0"), silent)
    own = checks.redis(f"redis://127.0.0.1:{silent.port}/0", timeout=0.5)
    assert run(own).output == "timed out after 0.5 s"


def test_redis_async_client_never_exceeds_its_pool(redis_up: None) -> None:
    import redis.asyncio

    name = f"hp-{uuid.uuid4().hex[:12]}"

    async def main() -> tuple[int, int]:
        pool = redis.asyncio.BlockingConnectionPool(
            host=REDIS[0], port=REDIS[1], max_connections=2, client_name=name, password=SECRET
        )
        client = redis.asyncio.Redis(connection_pool=pool)
        check = checks.redis(client)
        assert SECRET not in repr(check)
        try:
            return await hammer(check, lambda: redis_count(name))
        finally:
            await client.aclose()
            await pool.aclose()

    failures, peak = anyio.run(main)
    assert failures == 0
    assert 1 <= peak <= 2
    assert redis_count(name) == 0


def test_redis_sync_client_check(redis_up: None) -> None:
    import redis

    name = f"hp-{uuid.uuid4().hex[:12]}"
    client = redis.Redis(host=REDIS[0], port=REDIS[1], client_name=name, socket_timeout=1.0, max_connections=1)
    try:
        registry = started_registry({"cache": (checks.redis(client), {"timeout": 2.0})}, default_cache_ttl=0.0)
        for _ in range(300):
            assert registry.run("readiness").ok
        assert redis_count(name) == 1
    finally:
        client.close()


# -- SQLAlchemy --------------------------------------------------------------------------------


def test_sqlalchemy_engine_pool_bound(postgres_up: None) -> None:
    import sqlalchemy

    app = f"hp-{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:5432/test",
        pool_size=2,
        max_overflow=0,
        connect_args={"application_name": app},
    )
    try:
        check = checks.sqlalchemy(engine)
        assert SECRET not in repr(check)
        results: list[Status] = []

        def worker() -> None:
            for _ in range(2500):
                results.append(check().status)

        workers = [threading.Thread(target=worker) for _ in range(4)]  # 10,000 runs in all
        for thread in workers:
            thread.start()
        peak = 0
        while any(thread.is_alive() for thread in workers):
            peak = max(peak, pg_count(app))
            time.sleep(0.2)
        for thread in workers:
            thread.join()
        assert results.count(Status.PASS) == 10_000
        assert peak <= 2 and pg_count(app) <= 2
    finally:
        engine.dispose()
    assert pg_count(app) == 0


def test_sqlalchemy_async_engine_and_wrong_database(postgres_up: None) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    async def main() -> tuple[CheckResult, CheckResult]:
        good = create_async_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test", pool_size=1, max_overflow=0)
        bad = create_async_engine(f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:5432/no_such_db")
        try:
            return await checks.sqlalchemy(good)(), await checks.sqlalchemy(bad)()
        finally:
            await good.dispose()
            await bad.dispose()

    ok, failed = anyio.run(main)
    assert ok.status is Status.PASS and ok.observed_unit == "s"
    assert failed.status is Status.FAIL and failed.output and "no_such_db" in failed.output
    assert SECRET not in failed.output


def test_sync_clients_against_silent_server_hold_one_thread_at_most(
    postgres_up: None, redis_up: None, silent: SilentServer
) -> None:
    """Sync checks (pools and clients of sync drivers) run in a thread of their own: against a
    server that never answers, probes still fail within the deadline, and the check holds at
    most one thread until the driver's own timeout ends it."""
    import redis
    import sqlalchemy
    from psycopg_pool import ConnectionPool

    client = redis.Redis(host="127.0.0.1", port=silent.port, password=SECRET, socket_timeout=1.5)
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:{silent.port}/test", connect_args={"connect_timeout": 2}
    )
    pool = ConnectionPool(
        f"host=127.0.0.1 port={silent.port} password={SECRET} connect_timeout=2", min_size=0, max_size=1, open=True
    )
    try:
        registry = HealthRegistry(default_cache_ttl=0.0, default_timeout=1.0)
        registry.add_check("redis", checks.redis(client))
        registry.add_check("sqlalchemy", checks.sqlalchemy(engine))
        registry.add_check("pool", checks.postgres(pool, timeout=1.0))
        registry.mark_started()
        threads = threading.active_count()
        for _ in range(5):
            start = time.monotonic()
            report = registry.run("readiness")
            assert time.monotonic() - start < 1.0 + 2.0
            for name in ("redis", "sqlalchemy", "pool"):
                assert report.checks[name].result.status is Status.FAIL
                assert SECRET not in (report.checks[name].result.output or "")
            assert threading.active_count() <= threads + 3 + 1  # one per check, + the pool's own
            time.sleep(0.2)
    finally:
        client.close()
        engine.dispose()
        pool.close(timeout=1.0)


# -- secrets never reach bodies or logs --------------------------------------------------------


def test_secrets_absent_from_logs_and_exposed_bodies(
    postgres_up: None, redis_up: None, caplog: pytest.LogCaptureFixture
) -> None:
    from healthprobe.render import render_json, render_text

    registry = HealthRegistry(default_cache_ttl=0.0)
    registry.add_check("database", checks.postgres(pg_dsn("hp-x", db="no_such_db")), timeout=3.0)
    registry.add_check("cache", checks.redis(f"redis://nobody:{SECRET}@127.0.0.1:6379/0"), timeout=3.0)
    registry.add_check("closed", checks.postgres(f"host=127.0.0.1 port={closed_port()} password={SECRET}"), timeout=3.0)
    registry.mark_started()
    with caplog.at_level("DEBUG", logger="healthprobe"):
        report = registry.run("readiness")
        report = registry.run("readiness")
    assert not report.ok
    assert len(caplog.records) >= 3
    text = render_text(report, verbose=True, expose_output=True)
    body = str(render_json(report, expose_output=True))
    assert "failed" in text
    for out in (text, body, caplog.text):
        assert SECRET not in out


def test_factories_reject_bad_targets_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="invalid PostgreSQL DSN") as info:
        checks.postgres(f"host=db password={SECRET} bogus")
    assert SECRET not in str(info.value)
    with pytest.raises(TypeError):
        checks.postgres(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        checks.redis(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        checks.sqlalchemy("postgresql://db/app")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        checks.tcp("127.0.0.1", 80, timeout=0)
    with pytest.raises(ValueError):
        checks.event_loop_lag(0)
    with pytest.raises(ValueError):
        checks.file("/tmp/x", max_age=-1)
