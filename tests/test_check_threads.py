"""Sync checks run on a long-lived thread of their own: what a check keeps per thread lives
across runs, and the teardowns it registers run when that thread ends."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import threading
import uuid
from collections.abc import Iterator

import pytest

from healthprobe import GracefulShutdown, HealthRegistry, Status, on_thread_exit

from .support import POSTGRES_ADMIN, started_registry, wait_until

PG = f"{POSTGRES_ADMIN} connect_timeout=3"


@pytest.fixture
def postgres(postgres_up: None) -> Iterator[object]:
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(PG, autocommit=True) as admin:
        yield admin


def _backends(admin: object, name: str) -> int:
    (count,) = admin.execute(  # type: ignore[attr-defined]
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
    ).fetchone()
    return int(count)


class _Handler:
    """Holds its connection in a reference cycle, as ORMs' connection handlers do: dropped,
    it is freed only by the cyclic garbage collector."""

    def __init__(self, conn: object) -> None:
        self.conn = conn
        self.me = self


def test_thread_local_connection_is_made_once(postgres: object) -> None:
    """300 runs of a check that keeps its connection in a ``threading.local()``, held in a
    reference cycle, with the cyclic garbage collector off: one connection, opened once."""
    import psycopg

    name = f"healthprobe-test-{uuid.uuid4().hex[:12]}"
    local = threading.local()
    opened = []

    def database() -> None:
        if not hasattr(local, "handler"):
            local.handler = _Handler(psycopg.connect(PG, application_name=name, autocommit=True))
            opened.append(1)
            on_thread_exit(local.handler.conn.close)
        local.handler.conn.execute("SELECT 1")

    registry = started_registry()
    registry.add_check("database", database, cache_ttl=0, timeout=5)
    gc.disable()
    try:
        counts = []
        for index in range(300):
            assert registry.run("readiness").status is Status.PASS
            if index % 50 == 0:
                counts.append(_backends(postgres, name))
        assert len(opened) == 1
        assert counts == [1] * len(counts)
        registry.close()  # the teardown closes it
        # The server ends the backend once it reads the client's Terminate message: soon
        # after close() returns, not at once.
        wait_until(lambda: _backends(postgres, name) == 0, 10, "the connection's backend to end")
    finally:
        gc.enable()


def test_async_callers_share_the_same_thread() -> None:
    import anyio

    seen: set[int] = set()
    registry = started_registry()
    registry.add_check("where", lambda: seen.add(threading.get_ident()), cache_ttl=0)

    async def main() -> None:
        for _ in range(20):
            assert (await registry.run_async("readiness")).status is Status.PASS

    anyio.run(main)
    for _ in range(20):
        registry.run("readiness")
    assert len(seen) == 1


def test_late_run_retires_its_thread_after_its_teardowns() -> None:
    gate = threading.Event()
    threads: list[threading.Thread] = []  # the objects, not idents: an ended thread's ident is reused
    torn_down: list[threading.Thread] = []

    def slow() -> None:
        ident = threading.current_thread()
        if ident not in threads:
            threads.append(ident)
            on_thread_exit(lambda: torn_down.append(ident))
        if len(threads) == 1:
            gate.wait(10)

    registry = started_registry()
    registry.add_check("slow", slow, timeout=0.2, cache_ttl=0)
    result = registry.run("readiness").checks["slow"].result
    assert result.timed_out
    gate.set()
    # The hung run returns, retires its thread (teardown run), and the next run gets a new one.
    for _ in range(100):
        if torn_down:
            break
        threading.Event().wait(0.05)
    assert torn_down == threads[:1]
    assert registry.run("readiness").status is Status.PASS
    assert len(threads) == 2 and threads[0] is not threads[1]


def test_removing_a_check_ends_its_thread() -> None:
    done = threading.Event()

    def check() -> None:
        if not getattr(local, "registered", False):
            local.registered = True
            on_thread_exit(done.set)

    local = threading.local()
    registry = started_registry()
    registry.add_check("c", check, cache_ttl=0)
    registry.run("readiness")
    registry.remove_check("c")
    assert done.wait(5)


def test_teardowns_run_last_first_and_a_raising_one_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    order: list[str] = []

    def boom() -> None:
        raise OSError("secret: pw=hunter2")

    def check() -> None:
        on_thread_exit(lambda: order.append("first"))
        on_thread_exit(boom)
        on_thread_exit(lambda: order.append("last"))

    registry = started_registry()
    registry.add_check("c", check, cache_ttl=0)
    registry.run("readiness")
    with caplog.at_level(logging.WARNING, logger="healthprobe"):
        registry.close()
    assert order == ["last", "first"]
    (record,) = [r for r in caplog.records if "teardown" in r.getMessage()]
    assert "OSError" in record.getMessage() and "hunter2" not in record.getMessage()


def test_graceful_shutdown_closes_the_check_threads_after_its_hooks() -> None:
    order: list[str] = []

    def check() -> None:
        if not getattr(local, "registered", False):
            local.registered = True
            on_thread_exit(lambda: order.append("teardown"))

    local = threading.local()
    registry = started_registry()
    registry.add_check("c", check, cache_ttl=0)
    registry.run("readiness")
    shutdown = GracefulShutdown(registry, delay=0)
    shutdown.add_hook(lambda: order.append("hook"), name="hook")
    assert shutdown.finish() == 0
    assert order == ["hook", "teardown"]


def test_misuse_is_refused() -> None:
    with pytest.raises(RuntimeError, match="inside a sync check"):
        on_thread_exit(lambda: None)
    errors: list[BaseException] = []

    def check() -> None:
        try:
            on_thread_exit("close")  # type: ignore[arg-type]
        except TypeError as exc:
            errors.append(exc)

    registry = started_registry()
    registry.add_check("c", check, cache_ttl=0)
    registry.run("readiness")
    assert errors and "callable" in str(errors[0])


def _run_in_child(registry: HealthRegistry, out: multiprocessing.Queue[object]) -> None:
    out.put(registry.run("readiness").status.value)


def test_a_forked_child_gets_its_own_thread() -> None:
    registry = started_registry()
    registry.add_check("c", lambda: True, cache_ttl=0)
    assert registry.run("readiness").status is Status.PASS  # the parent's thread exists
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[object] = context.Queue()
    child = context.Process(target=_run_in_child, args=(registry, out))
    child.start()
    assert out.get(timeout=10) == "pass"
    child.join(10)
    assert child.exitcode == 0


def test_the_example_of_docs_index_md(postgres: object) -> None:
    """The thread-local connection example of docs/index.md, run as written."""
    from .doc_pages import blocks, page

    (example,) = [b for b in blocks(page("index.md"), "python") if "on_thread_exit(local.conn.close)" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/index.md", "exec"), namespace)
    registry = namespace["registry"]
    assert isinstance(registry, HealthRegistry)
    import psycopg

    made: list[psycopg.Connection[object]] = []

    class Recording:  # stands for the module in the example's globals: records what it opens
        @staticmethod
        def connect(*args: object, **kwargs: object) -> object:
            made.append(psycopg.connect(*args, **kwargs))  # type: ignore[call-overload]
            return made[-1]

    namespace["psycopg"] = Recording
    registry.mark_started()
    for _ in range(20):
        assert registry.run("readiness").status is Status.PASS
    (conn,) = made
    assert not conn.closed
    registry.close()
    assert conn.closed


def test_an_idle_check_thread_ends_with_its_teardowns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry no longer probed leaves no thread behind: after ``CHECK_THREAD_IDLE``
    seconds without a run the thread ends (teardowns run); the next run starts another."""
    from healthprobe import _runner

    monkeypatch.setattr(_runner, "CHECK_THREAD_IDLE", 0.2)
    ended = threading.Event()
    threads: list[threading.Thread] = []

    def check() -> None:
        threads.append(threading.current_thread())
        if len(threads) == 1:
            on_thread_exit(ended.set)

    registry = started_registry()
    registry.add_check("c", check, cache_ttl=0)
    registry.run("readiness")
    assert ended.wait(5)
    threads[0].join(5)
    assert not threads[0].is_alive()
    assert registry.run("readiness").status is Status.PASS
    assert threads[1] is not threads[0]
