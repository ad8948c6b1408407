"""``Heartbeat.waiting``: a declared wait keeps a heartbeat from failing for lack of beats.

No processes: the heartbeat is driven with bounds of a few hundredths of a second, and every
test waits for the condition it needs (the bound passed) instead of sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import anyio
import pytest

from healthprobe import CheckResult, HealthRegistry, Status
from healthprobe.checks import Heartbeat, heartbeat

from . import doc_pages
from .support import wait_until

BOUND = 0.05


def wait_for(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` closely (the bound is 50 ms) until it holds, at most 5 s."""
    wait_until(condition, 5.0, interval=0.005)


def past_bound(hb: Heartbeat) -> None:
    """Return once the heartbeat's last beat is older than its bound."""
    wait_for(lambda: hb.age > hb.max_interval)


def test_a_wait_turns_a_missing_beat_into_warn() -> None:
    hb = heartbeat(BOUND)
    past_bound(hb)
    assert hb().status is Status.FAIL
    with hb.waiting("broker"):
        result = hb()
        assert result.status is Status.WARN
        assert result.ok
        assert result.output is not None
        assert result.output.startswith("waiting for broker for ")
        assert result.output.endswith(" s")
        assert result.observed_unit == "s"
        assert isinstance(result.observed_value, float) and result.observed_value >= 0
        past_bound(hb)  # long past the bound inside the wait: still warn
        assert hb().status is Status.WARN
    assert hb().status is Status.PASS


def test_the_output_counts_the_seconds_of_the_wait() -> None:
    hb = heartbeat(BOUND)
    with hb.waiting("broker"):
        wait_for(lambda: hb.waits[0][1] > 0.2)
        result = hb()
    assert isinstance(result.observed_value, float) and result.observed_value >= 0.2
    assert result.output == f"waiting for broker for {result.observed_value:.1f} s"


def test_leaving_a_wait_restarts_the_clock_as_a_beat() -> None:
    hb = heartbeat(BOUND)
    with hb.waiting("broker"):
        wait_for(lambda: hb.age > 0.5)  # ten times the bound without a beat
        beats = hb.beats
    assert hb.age < 0.5  # the clock restarted as the wait ended
    assert hb.beats == beats + 1
    past_bound(hb)  # no beat since the wait ended: fails again
    result = hb()
    assert result.status is Status.FAIL
    assert result.output is not None and result.output.startswith("no heartbeat for ")


def test_an_exception_inside_the_wait_ends_it() -> None:
    hb = heartbeat(BOUND)
    with pytest.raises(ConnectionError), hb.waiting("broker"):
        raise ConnectionError("refused")
    assert hb.waits == ()
    assert hb().status is Status.PASS


def test_nested_waits_report_the_oldest() -> None:
    hb = heartbeat(BOUND)
    with hb.waiting("broker"):
        with hb.waiting("lock"):
            assert [reason for reason, _ in hb.waits] == ["broker", "lock"]
            output = hb().output
            assert output is not None and output.startswith("waiting for broker for ")
        past_bound(hb)  # the inner wait's end beat: the outer wait still covers the gap
        output = hb().output
        assert hb().status is Status.WARN and output is not None and output.startswith("waiting for broker")
    assert hb.waits == ()
    assert hb().status is Status.PASS


def test_the_same_object_entered_again() -> None:
    hb = heartbeat(BOUND)
    wait = hb.waiting("broker")
    with wait:
        with wait:
            assert len(hb.waits) == 2
        assert len(hb.waits) == 1
    assert hb.waits == ()
    with pytest.raises(RuntimeError, match="exited more often than it was entered"):
        wait.__exit__(None, None, None)


def test_waits_in_one_callback_ended_in_another() -> None:
    """A wait that begins in one callback and ends in another (a consumer's stop, then its
    start), through an ExitStack."""
    hb = heartbeat(BOUND)
    stack = contextlib.ExitStack()
    stack.enter_context(hb.waiting("broker"))
    past_bound(hb)
    assert hb().status is Status.WARN
    stack.close()
    assert hb().status is Status.PASS


def test_max_seconds_fails_a_wait_that_never_ends() -> None:
    hb = heartbeat(60.0)
    with hb.waiting("broker", max_seconds=BOUND):
        assert hb().status is Status.WARN
        wait_for(lambda: hb.waits[0][1] > BOUND)
        result = hb()
        assert result.status is Status.FAIL
        assert result.output is not None
        assert result.output.startswith("waiting for broker for ")
        assert result.output.endswith(f" s (max {BOUND:g} s)")
        with hb.waiting("lock"):  # an unbounded wait inside does not hide the bounded one
            assert hb().status is Status.FAIL
    assert hb().status is Status.PASS


def test_an_unbounded_wait_around_a_bounded_one_still_fails_on_the_bound() -> None:
    hb = heartbeat(60.0)
    with hb.waiting("broker"), hb.waiting("leader election", max_seconds=BOUND):
        wait_for(lambda: hb.waits[1][1] > BOUND)
        output = hb().output
        assert hb().status is Status.FAIL
        assert output is not None and output.startswith("waiting for leader election for ")


def test_liveness_passes_through_the_registry_while_waiting() -> None:
    registry = HealthRegistry(default_cache_ttl=0)
    hb = heartbeat(BOUND)
    registry.add_check("worker", hb, probes=["liveness"])
    with hb.waiting("broker"):
        past_bound(hb)
        report = registry.run("liveness")
        assert report.ok and report.status is Status.WARN
        assert report.checks["worker"].result.output is not None
    past_bound(hb)
    assert not registry.run("liveness").ok


def test_waits_from_many_threads() -> None:
    hb = heartbeat(BOUND)
    shared = hb.waiting("shared")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            start.wait()
            for _ in range(200):
                with hb.waiting(f"thread {i}"), shared:
                    assert hb().status is Status.WARN
                hb.beat()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert hb.waits == ()
    assert hb.beats == 8 * 200 * 3  # each thread: two waits ended and one beat per round


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_with(backend: str) -> None:
    hb = heartbeat(BOUND)

    async def main() -> None:
        async with hb.waiting("broker"):
            await anyio.to_thread.run_sync(past_bound, hb)  # a blocking wait, off the loop
            assert hb().status is Status.WARN
        assert hb().status is Status.PASS

    anyio.run(main, backend=backend)


@pytest.mark.parametrize(
    ("reason", "max_seconds", "error", "message"),
    [
        (None, None, TypeError, "reason must be a str saying what the loop waits for, got NoneType"),
        ("  ", None, ValueError, "reason must say what the loop waits for, e.g. waiting('broker')"),
        ("broker", 0, ValueError, "max_seconds must be a positive finite number of seconds, got 0"),
        ("broker", -1.0, ValueError, "max_seconds must be a positive finite number of seconds, got -1.0"),
        ("broker", float("inf"), ValueError, "max_seconds must be a positive finite number of seconds, got inf"),
        ("broker", True, ValueError, "max_seconds must be a positive finite number of seconds, got True"),
    ],
)
def test_bad_arguments(reason: object, max_seconds: object, error: type[Exception], message: str) -> None:
    hb = heartbeat(BOUND)
    with pytest.raises(error) as caught:
        hb.waiting(reason, max_seconds=max_seconds)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_repr() -> None:
    hb = heartbeat(BOUND)
    assert repr(hb.waiting("broker")) == "<waiting for 'broker'>"
    assert repr(hb.waiting("broker", max_seconds=300)) == "<waiting for 'broker' max_seconds=300>"


def test_the_checks_page_loop_runs_as_written() -> None:
    """The loop of docs/checks.md ("Declared waits"), with a queue whose first get() finds
    the broker down: liveness passes through the reconnect, then the job is handled."""
    section = doc_pages.page("checks.md").split("#### Declared waits", 1)[1]
    loop = doc_pages.blocks(section, "python")[0]
    hb = heartbeat(BOUND)
    seen: list[object] = []
    namespace: dict[str, object] = {"hb": hb, "stopping": False}

    class Queue:
        calls = 0

        def get(self, timeout: float) -> str:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("broker down")
            return "job-1"

    def reconnect() -> None:
        past_bound(hb)
        seen.append(hb())

    def handle(job: str) -> None:
        seen.append(job)
        namespace["stopping"] = True

    namespace.update(queue=Queue(), reconnect=reconnect, handle=handle)
    exec(loop, namespace)
    waiting, job = seen
    assert isinstance(waiting, CheckResult) and waiting.status is Status.WARN
    assert waiting.output is not None and waiting.output.startswith("waiting for broker for ")
    assert job == "job-1"
    assert hb.waits == ()
