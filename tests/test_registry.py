"""Registry and runner: what checks return, names, deadlines, single-flight, cache,
background runs, manual switches and the lifecycle, from sync and async callers."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings

import anyio
import anyio.lowlevel
import pytest

from healthprobe import CheckResult, HealthRegistry, Lifecycle, Probe, Status, UnknownCheckError

from .support import started_registry

# A generous allowance on top of a deadline: a loaded 2-core machine still meets it.
SLACK = 2.0


def only_result(registry: HealthRegistry, name: str, probe: str = "readiness") -> CheckResult:
    return registry.run(probe).checks[name].result


# -- what a check returns --------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, True])
def test_none_and_true_pass(value: object) -> None:
    registry = started_registry()
    registry.add_check("c", lambda: value)
    report = registry.run("readiness")
    assert report.status is Status.PASS
    assert report.checks["c"].result.status is Status.PASS


def test_false_fails() -> None:
    registry = started_registry()
    registry.add_check("c", lambda: False)
    report = registry.run("readiness")
    assert report.status is Status.FAIL
    assert report.checks["c"].result.error_type is None


def test_check_result_carries_warn_output_and_observed_value() -> None:
    registry = started_registry()
    registry.add_check(
        "disk", lambda: CheckResult(Status.WARN, output="92% full", observed_value=92.5, observed_unit="%")
    )
    report = registry.run("readiness")
    result = report.checks["disk"].result
    assert report.status is Status.WARN
    assert report.ok
    assert (result.status, result.output, result.observed_value, result.observed_unit) == (
        Status.WARN,
        "92% full",
        92.5,
        "%",
    )
    assert result.duration >= 0 and result.time > 0


def test_runner_fields_set_by_a_check_are_ignored() -> None:
    registry = started_registry()
    registry.add_check("c", lambda: CheckResult(Status.PASS, duration=99.0, timed_out=True, error_type="x"))
    result = only_result(registry, "c")
    assert result.duration < 99.0 and not result.timed_out and result.error_type is None


def test_exception_fails_with_type_and_text_only_in_log(caplog: pytest.LogCaptureFixture) -> None:
    class SecretError(Exception):
        pass

    def broken() -> None:
        raise SecretError("password=hunter2")

    registry = started_registry()
    registry.add_check("db", broken)
    with caplog.at_level(logging.WARNING, logger="healthprobe"):
        report = registry.run("readiness")
    result = report.checks["db"].result
    assert report.status is Status.FAIL
    assert result.error_type is not None and result.error_type.endswith("SecretError")
    assert "password=***" in caplog.text and "SecretError" in caplog.text
    assert "hunter2" not in caplog.text
    # The text is kept for the log and for operators who opt in; the default renderers
    # withhold it (tested in test_http.py).
    from healthprobe import render_json, render_text

    assert "hunter2" not in render_text(report, verbose=True)
    assert "hunter2" not in str(render_json(report))


@pytest.mark.parametrize("value", [42, "ok", [], {"status": "pass"}, object(), 0, 1.0])
def test_nonsense_return_fails(value: object) -> None:
    registry = started_registry()
    registry.add_check("c", lambda: value)
    result = only_result(registry, "c")
    assert result.status is Status.FAIL
    assert result.error_type == "healthprobe.UnsupportedResult"


def test_plain_function_returning_a_coroutine_fails_cleanly() -> None:
    async def ping() -> bool:
        return True

    registry = started_registry()
    registry.add_check("c", lambda: ping())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = only_result(registry, "c")
    assert result.status is Status.FAIL
    assert "async def" in (result.output or "")


# -- names and options -----------------------------------------------------------------------


def test_duplicate_name_rejected() -> None:
    registry = HealthRegistry()
    registry.add_check("db", lambda: True)
    with pytest.raises(ValueError, match="already registered"):
        registry.add_check("db", lambda: True, probes=["liveness"])
    assert [c.name for c in registry.checks] == ["db"]


@pytest.mark.parametrize("name", ["", "-db", "db-", "a b", "a/b", "x" * 64, "dé", "db\n", "a?b", None, 3])
def test_malformed_name_rejected(name: object) -> None:
    registry = HealthRegistry()
    with pytest.raises(ValueError, match="invalid check name"):
        registry.add_check(name, lambda: True)  # type: ignore[arg-type]
    assert registry.checks == ()


@pytest.mark.parametrize("name", ["a", "db", "redis-cache", "pg.primary", "a_1", "x" * 63])
def test_wellformed_names_accepted(name: str) -> None:
    HealthRegistry().add_check(name, lambda: True)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"timeout": True},
        {"cache_ttl": -0.1},
        {"interval": 0},
        {"probes": ["bogus"]},
        {"tags": ["no spaces"]},
        {"tags": [""]},
    ],
)
def test_bad_options_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        HealthRegistry().add_check("c", lambda: True, **kwargs)  # type: ignore[arg-type]


def test_not_callable_rejected() -> None:
    with pytest.raises(TypeError):
        HealthRegistry().add_check("c", "not a function")  # type: ignore[arg-type]


def test_defaults() -> None:
    registry = HealthRegistry()
    check = registry.add_check("c", lambda: True)
    assert check.probes == frozenset({Probe.READINESS})
    assert check.timeout == 0.8
    assert check.critical is True
    assert check.interval is None


def test_decorator_registers_sync_and_async_and_returns_the_function() -> None:
    registry = started_registry()

    @registry.check()
    def database() -> bool:
        return True

    @registry.check("cache", probes=["readiness", "liveness"], critical=False, timeout=0.5)
    async def redis_ping() -> CheckResult:
        await asyncio.sleep(0)
        return CheckResult(Status.WARN, output="slow")

    assert database() is True
    assert asyncio.iscoroutinefunction(redis_ping)
    checks = {c.name: c for c in registry.checks}
    assert set(checks) == {"database", "cache"}
    assert checks["cache"].is_async and not checks["database"].is_async
    assert checks["cache"].probes == frozenset({Probe.READINESS, Probe.LIVENESS})
    report = registry.run("readiness")
    assert report.checks["database"].status is Status.PASS
    assert report.checks["cache"].status is Status.WARN
    assert registry.run("liveness").checks.keys() == {"cache"}


def test_remove_check() -> None:
    registry = started_registry()
    registry.add_check("c", lambda: False)
    registry.remove_check("c")
    assert registry.run("readiness").status is Status.PASS
    with pytest.raises(UnknownCheckError):
        registry.remove_check("c")


def test_unknown_only_and_unknown_probe() -> None:
    registry = started_registry()
    registry.add_check("db", lambda: True)
    with pytest.raises(UnknownCheckError):
        registry.run("readiness", only="nope")
    with pytest.raises(UnknownCheckError):
        registry.run("liveness", only="db")  # not a liveness member
    with pytest.raises(ValueError, match="unknown probe"):
        registry.run("wellness")


def test_non_critical_failure_reports_warn() -> None:
    registry = started_registry()
    registry.add_check("optional", lambda: False, critical=False)
    report = registry.run("readiness")
    entry = report.checks["optional"]
    assert report.status is Status.WARN
    assert entry.status is Status.WARN and entry.raw_status is Status.FAIL


# -- deadlines -------------------------------------------------------------------------------


def test_hanging_sync_check_times_out_and_holds_one_thread(release: threading.Event) -> None:
    registry = started_registry()
    registry.add_check("hang", release.wait, timeout=0.3, cache_ttl=0)
    registry.add_check("fine", lambda: True, cache_ttl=0)
    before = threading.active_count()
    started = time.monotonic()
    report = registry.run("readiness")
    elapsed = time.monotonic() - started
    assert elapsed < 0.3 + SLACK
    assert report.status is Status.FAIL
    hang = report.checks["hang"].result
    assert hang.timed_out and "timed out" in (hang.output or "")
    assert report.checks["fine"].status is Status.PASS  # the other check was not held up
    for _ in range(25):
        report = registry.run("readiness")
        assert report.checks["hang"].result.timed_out
        assert report.checks["fine"].status is Status.PASS
    # One thread stays blocked in the hung check; the passing check keeps its one thread.
    assert threading.active_count() - before == 2


def test_busy_check_answers_at_once(release: threading.Event) -> None:
    registry = started_registry()
    registry.add_check("hang", release.wait, timeout=0.3, cache_ttl=0)
    registry.run("readiness")
    started = time.monotonic()
    result = only_result(registry, "hang")
    # The previous run still holds the thread: no new thread, no new wait.
    assert time.monotonic() - started < 0.3 + SLACK
    assert result.timed_out and "still running" in (result.output or "")


def test_hung_check_recovers_once_it_returns() -> None:
    gate = threading.Event()
    registry = started_registry()
    registry.add_check("slow", lambda: gate.wait(), timeout=0.2, cache_ttl=0)
    assert registry.run("readiness").status is Status.FAIL
    gate.set()
    deadline = time.monotonic() + 5
    while registry.run("readiness").status is not Status.PASS:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_hanging_async_check_times_out() -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    registry = started_registry()
    registry.add_check("forever", forever, timeout=0.3)
    started = time.monotonic()
    result = only_result(registry, "forever")
    assert time.monotonic() - started < 0.3 + SLACK
    assert result.status is Status.FAIL and result.timed_out


def test_readiness_while_starting_is_bounded_by_one_deadline(release: threading.Event) -> None:
    # The startup checks run alongside the readiness checks, not before them.
    registry = HealthRegistry()
    registry.add_check("boot", release.wait, probes=["startup"], timeout=1.5)
    registry.add_check("db", release.wait, timeout=1.5)
    started = time.monotonic()
    report = registry.run("readiness")
    elapsed = time.monotonic() - started
    assert report.status is Status.FAIL and report.reasons == ("starting",)
    assert elapsed < 2.7, f"readiness took {elapsed:.2f} s: startup and readiness checks ran one after the other"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_hanging_sync_check_never_blocks_the_event_loop(backend: str, release: threading.Event) -> None:
    registry = started_registry()
    registry.add_check("hang", release.wait, timeout=0.5, cache_ttl=0)

    async def other() -> bool:
        await anyio.sleep(0.01)
        return True

    registry.add_check("async-ok", other, cache_ttl=0)
    ticks = 0

    async def main() -> None:
        nonlocal ticks
        async with anyio.create_task_group() as group:

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await anyio.sleep(0.01)

            group.start_soon(ticker)
            started = time.monotonic()
            report = await registry.run_async("readiness")
            assert time.monotonic() - started < 0.5 + SLACK
            assert report.checks["hang"].result.timed_out
            assert report.checks["async-ok"].status is Status.PASS
            group.cancel_scope.cancel()

    anyio.run(main, backend=backend)
    # 0.5 s of waiting at 10 ms a tick: a blocked loop would tick once or twice.
    assert ticks >= 10


# -- single-flight, cache, background --------------------------------------------------------


def test_single_flight_across_threads() -> None:
    calls = 0
    go = threading.Event()

    def counted() -> bool:
        nonlocal calls
        calls += 1
        go.wait(5)
        return True

    registry = started_registry()
    registry.add_check("c", counted, timeout=5, cache_ttl=0)
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(registry.run("readiness"))) for _ in range(12)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every probe has joined the one run in flight
    go.set()
    for thread in threads:
        thread.join(10)
    assert calls == 1
    assert len(reports) == 12 and all(r.status is Status.PASS for r in reports)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_single_flight_across_tasks(backend: str) -> None:
    calls = 0

    async def counted() -> bool:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.3)
        return True

    registry = started_registry()
    registry.add_check("c", counted, timeout=5, cache_ttl=0)
    statuses: list[Status] = []

    async def probe() -> None:
        statuses.append((await registry.run_async("readiness")).status)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(probe)

    anyio.run(main, backend=backend)
    assert calls == 1
    assert statuses == [Status.PASS] * 20


def test_cache_ttl() -> None:
    calls = 0

    def counted() -> bool:
        nonlocal calls
        calls += 1
        return True

    registry = started_registry()
    registry.add_check("c", counted, cache_ttl=30)
    first = registry.run("readiness")
    second = registry.run("readiness")
    assert calls == 1
    assert not first.checks["c"].cached and second.checks["c"].cached

    short = started_registry()
    short.add_check("c", counted, cache_ttl=0.1)
    short.run("readiness")
    time.sleep(0.3)
    assert not short.run("readiness").checks["c"].cached
    assert calls == 3

    none = started_registry()
    none.add_check("c", counted, cache_ttl=0)
    for _ in range(3):
        none.run("readiness")
    assert calls == 6


def test_background_interval_runs_without_probes() -> None:
    calls = 0

    def counted() -> bool:
        nonlocal calls
        calls += 1
        return True

    registry = started_registry()
    registry.add_check("bg", counted, interval=0.05)
    registry.run("readiness")  # starts the background loop
    deadline = time.monotonic() + 5
    while calls < 4:
        assert time.monotonic() < deadline, f"only {calls} background runs"
        time.sleep(0.05)
    assert registry.run("readiness").checks["bg"].cached  # probes read the background result
    registry.remove_check("bg")  # ends the loop
    time.sleep(0.2)
    after = calls
    time.sleep(0.3)
    assert calls == after


def test_check_stats_count_runs() -> None:
    registry = started_registry()
    registry.add_check("c", lambda: False, cache_ttl=0)
    for _ in range(3):
        registry.run("readiness")
    (state,) = registry.check_states()
    stats = state.stats.snapshot()
    assert stats.runs[Status.FAIL] == 3 and stats.runs[Status.PASS] == 0
    assert sum(stats.bucket_counts) == 3
    assert stats.last_success_time is None


# -- manual switches and lifecycle -----------------------------------------------------------


def test_set_ready_and_set_live() -> None:
    registry = started_registry()
    registry.set_ready(False, "maintenance")
    readiness = registry.run("readiness")
    assert readiness.status is Status.FAIL and readiness.reasons == ("out of rotation: maintenance",)
    assert registry.run("liveness").status is Status.PASS
    registry.set_ready(True)
    assert registry.run("readiness").status is Status.PASS

    registry.set_live(False)
    liveness = registry.run("liveness")
    assert liveness.status is Status.FAIL and liveness.reasons == ("not live: marked not live",)
    assert registry.run("readiness").status is Status.PASS
    registry.set_live(True)
    assert registry.run("liveness").status is Status.PASS


def test_lifecycle_transitions_and_listeners(caplog: pytest.LogCaptureFixture) -> None:
    registry = HealthRegistry()
    seen: list[tuple[Lifecycle, Lifecycle]] = []
    registry.add_lifecycle_listener(lambda old, new: seen.append((old, new)))

    def broken(old: Lifecycle, new: Lifecycle) -> None:
        raise RuntimeError("listener bug")

    registry.add_lifecycle_listener(broken)
    assert registry.lifecycle is Lifecycle.STARTING
    assert registry.mark_started() is True and registry.mark_started() is False
    with caplog.at_level(logging.ERROR, logger="healthprobe"):
        assert registry.begin_drain() is True
    assert "listener bug" in caplog.text  # logged, and the transition still happened
    assert registry.mark_started() is False  # never back from draining
    assert registry.begin_drain() is False
    readiness = registry.run("readiness")
    assert readiness.status is Status.FAIL and readiness.reasons == ("draining",)
    assert registry.run("liveness").status is Status.PASS
    assert registry.run("startup").status is Status.PASS
    assert registry.mark_stopped() is True and registry.mark_stopped() is False
    assert registry.begin_drain() is False
    assert registry.run("readiness").reasons == ("stopped",)
    assert registry.run("liveness").status is Status.PASS
    assert seen == [
        (Lifecycle.STARTING, Lifecycle.STARTED),
        (Lifecycle.STARTED, Lifecycle.DRAINING),
        (Lifecycle.DRAINING, Lifecycle.STOPPED),
    ]


def test_startup_latches_through_the_startup_probe() -> None:
    booted = False
    registry = HealthRegistry()
    registry.add_check("boot", lambda: booted, probes=["startup"], cache_ttl=0)
    registry.add_check("db", lambda: True, cache_ttl=0)

    startup = registry.run("startup")
    assert startup.status is Status.FAIL and registry.lifecycle is Lifecycle.STARTING
    readiness = registry.run("readiness")
    assert readiness.status is Status.FAIL and readiness.reasons == ("starting",)

    booted = True
    assert registry.run("startup").status is Status.PASS
    assert registry.lifecycle is Lifecycle.STARTED
    booted = False  # a startup check is never asked again once latched
    assert registry.run("startup").status is Status.PASS
    assert registry.run("startup").checks == {}
    assert registry.run("readiness").status is Status.PASS


def test_readiness_latches_startup_when_startup_checks_pass() -> None:
    registry = HealthRegistry()
    registry.add_check("boot", lambda: True, probes=["startup"])
    assert registry.run("readiness").status is Status.PASS
    assert registry.lifecycle is Lifecycle.STARTED
    assert registry.last_reports[Probe.STARTUP].status is Status.PASS


def test_exclude_never_latches_startup() -> None:
    registry = HealthRegistry()
    registry.add_check("boot", lambda: False, probes=["startup"], cache_ttl=0)
    report = registry.run("startup", exclude=["boot"])
    assert report.status is Status.PASS and report.checks == {}
    assert registry.lifecycle is Lifecycle.STARTING
    assert registry.run("startup").status is Status.FAIL
    assert registry.run("readiness").status is Status.FAIL


def test_exclude_and_unknown_names() -> None:
    registry = started_registry()
    registry.add_check("a", lambda: False)
    registry.add_check("b", lambda: True)
    report = registry.run("readiness", exclude=["a", "zzz"])
    assert report.status is Status.PASS
    assert list(report.checks) == ["b"]
    assert report.excluded_unknown == ("zzz",)


def test_only_skips_lifecycle_reasons() -> None:
    registry = HealthRegistry()  # still starting
    registry.add_check("db", lambda: True)
    report = registry.run("readiness", only="db")
    assert report.status is Status.PASS and report.reasons == ()


# -- run_async under both anyio backends -----------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_async_sync_and_async_checks(backend: str, release: threading.Event) -> None:
    async def async_ok() -> CheckResult:
        await anyio.sleep(0.01)
        return CheckResult(Status.PASS, observed_value=3, observed_unit="ms")

    async def async_raises() -> None:
        await anyio.lowlevel.checkpoint()
        raise ConnectionError("refused by 10.0.0.5")

    registry = started_registry()
    registry.add_check("sync-ok", lambda: True)
    registry.add_check("async-ok", async_ok)
    registry.add_check("async-raises", async_raises, critical=False)
    registry.add_check("sync-hang", release.wait, timeout=0.3, probes=["liveness"])

    async def main() -> tuple[object, object]:
        return await registry.run_async("readiness"), await registry.run_async(Probe.LIVENESS)

    readiness, liveness = anyio.run(main, backend=backend)
    assert readiness.status is Status.WARN  # type: ignore[attr-defined]
    checks = readiness.checks  # type: ignore[attr-defined]
    assert checks["async-ok"].result.observed_value == 3
    assert checks["async-raises"].raw_status is Status.FAIL
    assert checks["async-raises"].result.error_type == "ConnectionError"
    assert liveness.status is Status.FAIL  # type: ignore[attr-defined]
    assert liveness.checks["sync-hang"].result.timed_out  # type: ignore[attr-defined]


def test_async_check_from_a_sync_caller() -> None:
    async def async_ok() -> bool:
        await asyncio.sleep(0.01)
        return True

    registry = started_registry()
    registry.add_check("a", async_ok)
    assert registry.run("readiness").status is Status.PASS


def test_async_check_raising_cancelled_error_is_its_own_failure() -> None:
    async def cancelled() -> None:
        await asyncio.sleep(0)
        raise asyncio.CancelledError  # as some client libraries do on their own timeouts

    registry = started_registry()
    registry.add_check("flaky", cancelled, cache_ttl=0)
    registry.add_check("ok", lambda: True, cache_ttl=0)

    async def main() -> object:
        return await registry.run_async("readiness")

    for report in (anyio.run(main), registry.run("readiness")):
        result = report.checks["flaky"].result  # type: ignore[attr-defined]
        assert result.status is Status.FAIL and not result.timed_out
        assert result.error_type == "asyncio.exceptions.CancelledError"
        assert report.checks["ok"].status is Status.PASS  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_cancelled_probe_does_not_fail_the_run_it_shares(backend: str) -> None:
    calls = 0

    async def slow() -> bool:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.3)
        return True

    registry = started_registry()
    registry.add_check("slow", slow, timeout=5, cache_ttl=0)
    statuses: list[Status] = []

    scopes: list[anyio.CancelScope] = []

    async def leader() -> None:
        with anyio.CancelScope() as scope:  # the probe whose client goes away
            scopes.append(scope)
            await registry.run_async("readiness")

    async def follower() -> None:
        statuses.append((await registry.run_async("readiness")).status)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(leader)
            await anyio.sleep(0.05)
            group.start_soon(follower)
            await anyio.sleep(0.05)
            scopes[0].cancel()

    anyio.run(main, backend=backend)
    assert statuses == [Status.PASS]
    assert calls == 1


def test_exclude_accepts_a_single_name() -> None:
    registry = started_registry()
    registry.add_check("db", lambda: False)
    registry.add_check("d", lambda: True)
    report = registry.run("readiness", exclude="db")
    assert list(report.checks) == ["d"] and report.status is Status.PASS


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_async_check_that_swallows_its_cancellation_still_times_out(backend: str) -> None:
    registry = HealthRegistry()
    registry.mark_started()

    @registry.check("swallow", timeout=0.2, cache_ttl=0)
    async def swallow() -> bool:
        try:
            await anyio.sleep(10)
        except BaseException:  # a hung dependency's client that catches everything
            return True
        return True

    report = anyio.run(registry.run_async, "readiness", backend=backend)
    entry = report.checks["swallow"]
    assert report.status is Status.FAIL
    assert entry.result.timed_out and entry.result.output == "timed out after 0.2 s"
    sync_report = registry.run("readiness")
    assert sync_report.status is Status.FAIL and sync_report.checks["swallow"].result.timed_out


def test_an_async_check_that_blocks_the_loop_past_its_deadline_fails() -> None:
    registry = HealthRegistry()
    registry.mark_started()

    @registry.check("blocking", timeout=0.1, cache_ttl=0)
    async def blocking() -> bool:
        time.sleep(0.3)  # noqa: ASYNC251 - blocks the event loop on purpose: no cancellation reaches it
        return True

    report = anyio.run(registry.run_async, "readiness")
    assert report.status is Status.FAIL and report.checks["blocking"].result.timed_out


def test_what_a_check_wrote_stays_on_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    registry = HealthRegistry()
    registry.mark_started()

    def forged() -> None:
        raise RuntimeError("a\nWARNING fake line\r\x1b[31m")

    registry.add_check("forged", forged)
    with caplog.at_level(logging.WARNING, logger="healthprobe"):
        registry.run("readiness")
    [record] = [r for r in caplog.records if "forged" in r.getMessage()]
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    assert "a\\nWARNING fake line" in message


def test_reserved_names_and_checks_that_need_arguments_are_refused_at_registration() -> None:
    registry = HealthRegistry()
    with pytest.raises(ValueError, match="reserved"):
        registry.add_check("lifecycle", lambda: True)
    with pytest.raises(TypeError, match="no arguments"):
        registry.add_check("needs-arg", lambda conn: True)
    registry.add_check("defaults-ok", lambda conn=None: True)


def test_check_result_status_may_be_given_as_its_value_and_nonsense_fails_the_check() -> None:
    assert CheckResult("warn").status is Status.WARN  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass, warn or fail"):
        CheckResult("weird")  # type: ignore[arg-type]
    registry = HealthRegistry()
    registry.mark_started()
    registry.add_check("weird", lambda: CheckResult("weird"))  # type: ignore[arg-type]
    registry.add_check("warned", lambda: CheckResult("warn"))  # type: ignore[arg-type]
    report = registry.run("readiness")
    assert report.checks["weird"].status is Status.FAIL
    assert report.checks["weird"].result.error_type == "ValueError"
    assert report.checks["warned"].status is Status.WARN
