"""Transition events (docs/operating.md, "Transition events"): one log record per status
change of a check, of a probe and of the lifecycle, none for repeats; transition listeners
fed on one thread behind a bounded queue that never slows a probe; and, through both
adapters under real servers, the transitions of a check whose TCP dependency goes away and
comes back."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from healthprobe import HealthRegistry, Transition
from healthprobe.asgi import HealthMiddleware as AsgiMiddleware
from healthprobe.registry import TRANSITION_QUEUE_SIZE
from healthprobe.wsgi import HealthMiddleware as WsgiMiddleware

from . import doc_pages
from .apps import plain_apps
from .support import TcpDependency, uvicorn_server, wait_until, werkzeug_server

DOC = doc_pages.page("operating.md")

SECRET = "s3cret-connection-detail"


def transition_records(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "healthprobe" and getattr(r, "transition", None) == kind]


def changes(records: list[logging.LogRecord]) -> list[tuple[str, str, str]]:
    return [(r.old, r.new, r.reason_class) for r in records]  # type: ignore[attr-defined]


class Switch:
    """A check that passes, fails, raises or hangs, as told."""

    def __init__(self) -> None:
        self.mode = "pass"
        self.release = threading.Event()

    def __call__(self) -> bool:
        if self.mode == "raise":
            raise ConnectionError(SECRET)
        if self.mode == "hang":
            self.release.wait(10)
        return self.mode != "fail"


def started(switch: Switch, **options: Any) -> HealthRegistry:
    registry = HealthRegistry(default_cache_ttl=0)
    registry.add_check("dependency", switch, probes=("readiness",), **options)
    registry.mark_started()
    return registry


# -- log records ---------------------------------------------------------------------------


def test_one_record_per_check_change_none_for_repeats(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="healthprobe")
    switch = Switch()
    registry = started(switch, timeout=0.2)
    for mode, runs in (("pass", 3), ("raise", 3), ("fail", 2), ("pass", 2), ("hang", 2)):
        switch.mode = mode
        for _ in range(runs):
            registry.run("readiness")
        if mode == "hang":
            switch.release.set()
    records = transition_records(caplog, "check")
    assert changes(records) == [
        ("unknown", "pass", "initial"),
        ("pass", "fail", "error"),
        ("fail", "pass", "recovered"),
        ("pass", "fail", "timeout"),
    ]
    # A raise then a False are both "fail": no record for the second; the first pass is quiet.
    assert [r.levelno for r in records] == [logging.DEBUG, logging.WARNING, logging.INFO, logging.WARNING]
    for record in records:
        assert record.check == "dependency" and record.lasted >= 0  # type: ignore[attr-defined]
        fields = {k: v for k, v in vars(record).items() if k not in ("msg", "args", "message")}
        assert SECRET not in repr(fields)  # the exception's text is in the message only
    # How long the old state lasted: the failing state began at the first raise.
    assert records[2].lasted >= 0 and records[2].old == "fail"  # type: ignore[attr-defined]


def test_a_probes_first_answer_is_quiet_even_failing(caplog: pytest.LogCaptureFixture) -> None:
    """Failing from the start: the check's record warns and says why; the probe's first
    answer is at DEBUG, and only its later changes are louder."""
    caplog.set_level(logging.DEBUG, logger="healthprobe")
    switch = Switch()
    switch.mode = "fail"
    registry = started(switch)
    registry.run("readiness")
    switch.mode = "pass"
    registry.run("readiness")
    probes = transition_records(caplog, "probe")
    assert changes(probes) == [("unknown", "fail", "fail"), ("fail", "pass", "recovered")]
    assert [r.levelno for r in probes] == [logging.DEBUG, logging.INFO]
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.getMessage().startswith("check dependency: fail")


def test_probe_and_lifecycle_records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="healthprobe")
    switch = Switch()
    registry = HealthRegistry(default_cache_ttl=0)
    registry.add_check("dependency", switch, probes=("readiness",))
    registry.mark_started()
    registry.run("readiness")
    registry.run("readiness")
    switch.mode = "fail"
    registry.run("readiness")
    registry.run("readiness")
    switch.mode = "pass"
    registry.run("readiness")
    registry.take_out_of_rotation("maintenance")
    registry.run("readiness")  # already known to fail: no record
    registry.return_to_rotation()
    registry.run("readiness")
    registry.begin_drain()
    registry.run("readiness")
    probes = transition_records(caplog, "probe")
    assert changes(probes) == [
        ("unknown", "pass", "initial"),
        ("pass", "fail", "fail"),
        ("fail", "pass", "recovered"),
        ("pass", "fail", "rotation"),
        ("fail", "pass", "recovered"),
        ("pass", "fail", "lifecycle"),
    ]
    assert {r.probe for r in probes} == {"readiness"}  # type: ignore[attr-defined]
    assert [r.levelno for r in probes] == [
        logging.DEBUG,
        logging.WARNING,
        logging.INFO,
        logging.INFO,  # the operator's own doing
        logging.INFO,
        logging.INFO,  # the shutdown's
    ]
    assert probes[1].getMessage().startswith("readiness probe pass -> fail (fail) after ")
    lifecycle = transition_records(caplog, "lifecycle")
    assert changes(lifecycle) == [("starting", "started", "started"), ("started", "draining", "draining")]
    assert lifecycle[1].lasted > 0  # type: ignore[attr-defined]


# -- listeners -----------------------------------------------------------------------------


def test_listeners_get_frozen_transitions_in_order() -> None:
    switch = Switch()
    registry = HealthRegistry(default_cache_ttl=0)
    registry.add_check("dependency", switch, probes=("readiness",))
    got: list[Transition] = []
    registry.add_transition_listener(got.append)
    before = time.time()
    registry.mark_started()
    registry.run("readiness")
    switch.mode = "raise"
    registry.run("readiness")
    registry.run("readiness")
    registry.close()
    assert not any(t.name == "healthprobe-transitions" for t in threading.enumerate())
    assert [(t.kind, t.name, t.old, t.new, t.reason) for t in got] == [
        ("lifecycle", "lifecycle", "starting", "started", "started"),
        ("check", "dependency", "unknown", "pass", "initial"),
        ("probe", "readiness", "unknown", "pass", "initial"),
        ("check", "dependency", "pass", "fail", "error"),
        ("probe", "readiness", "pass", "fail", "error"),
    ]
    assert all(before <= t.at <= time.time() and t.lasted >= 0 for t in got)
    # The check's output (it may hold exception text) is there for listeners; a probe's is
    # its failing checks' names only.
    assert got[3].output == f"ConnectionError: {SECRET}" and got[4].output == "dependency failed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        got[0].new = "stopped"  # type: ignore[misc]
    # The registry stays usable: the next change starts the thread again.
    switch.mode = "pass"
    registry.run("readiness")
    wait_until(lambda: len(got) == 7, 5, "two more transitions")
    registry.close()


def test_a_raising_listener_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    registry = HealthRegistry()
    got: list[Transition] = []

    def broken(transition: Transition) -> None:
        raise RuntimeError("listener bug")

    registry.add_transition_listener(broken)
    registry.add_transition_listener(got.append)
    registry.mark_started()
    registry.close()
    assert [t.new for t in got] == ["started"]
    assert any("transition listener" in r.getMessage() and r.exc_info for r in caplog.records)
    with pytest.raises(TypeError):
        registry.add_transition_listener("not callable")  # type: ignore[arg-type]


def test_a_stuck_listener_never_slows_a_probe_and_the_oldest_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="healthprobe")
    switch = Switch()
    registry = started(switch)
    release, entered = threading.Event(), threading.Event()
    got: list[Transition] = []

    def stuck(transition: Transition) -> None:
        entered.set()
        release.wait(30)
        got.append(transition)

    registry.add_transition_listener(stuck)
    switch.mode = "fail"
    registry.run("readiness")
    assert entered.wait(10)
    flips = TRANSITION_QUEUE_SIZE + 200
    slowest = 0.0
    for index in range(1, flips):
        switch.mode = "fail" if index % 2 == 0 else "pass"
        started_at = time.monotonic()
        registry.run("readiness")
        slowest = max(slowest, time.monotonic() - started_at)
    assert slowest < 1.0  # generous: a probe never waits for the stuck listener
    # Each flip is a check change and a probe change; one is in the listener's hands, the
    # queue holds the latest TRANSITION_QUEUE_SIZE, the rest were dropped (the oldest first).
    total = 2 * flips
    assert registry.transitions_dropped == total - TRANSITION_QUEUE_SIZE - 1
    drops = [r for r in caplog.records if "dropping the oldest transitions" in r.getMessage()]
    assert len(drops) == 1  # once per burst
    release.set()
    registry.close(timeout=10)
    assert len(got) == TRANSITION_QUEUE_SIZE + 1
    assert (got[-1].kind, got[-1].new) == ("probe", "pass")  # the latest was kept


# -- through real servers ------------------------------------------------------------------


@contextlib.contextmanager
def served(adapter: str, registry: HealthRegistry) -> Iterator[str]:
    """``registry`` behind the ``adapter``'s middleware under a real server in a thread."""
    asgi, wsgi = plain_apps()
    if adapter == "wsgi":
        with werkzeug_server(WsgiMiddleware(wsgi, registry)) as url:
            yield url
    else:
        with uvicorn_server(AsgiMiddleware(asgi, registry)) as url:
            yield url


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_transitions_of_a_dependency_going_away_through_a_real_server(adapter: str) -> None:
    dependency = TcpDependency()
    registry = HealthRegistry(default_cache_ttl=0)
    registry.add_check("upstream", dependency.check)
    registry.mark_started()
    got: list[Transition] = []
    registry.add_transition_listener(got.append)
    try:
        with served(adapter, registry) as url, httpx.Client(base_url=url, timeout=5) as client:
            assert client.get("/readyz").status_code == 200
            assert client.get("/readyz").status_code == 200
            dependency.down()
            assert client.get("/readyz").status_code == 503
            assert client.get("/readyz").status_code == 503
            dependency.up()
            assert client.get("/readyz").status_code == 200

            def seen() -> list[tuple[str, str, str, str, str]]:
                return [(t.kind, t.name, t.old, t.new, t.reason) for t in got]

            wait_until(lambda: len(got) == 6, 5, "six transitions", lambda: repr(seen()))
            assert seen() == [
                ("check", "upstream", "unknown", "pass", "initial"),
                ("probe", "readiness", "unknown", "pass", "initial"),
                ("check", "upstream", "pass", "fail", "error"),
                ("probe", "readiness", "pass", "fail", "error"),
                ("check", "upstream", "fail", "pass", "recovered"),
                ("probe", "readiness", "fail", "pass", "recovered"),
            ]
            assert "ConnectionRefusedError" in (got[2].output or "")
            assert got[4].lasted >= 0 and got[4].lasted <= got[4].at - got[0].at + 0.01
    finally:
        registry.close()
        dependency.down()


# -- docs/operating.md, "Transition events" ------------------------------------------------------


def test_the_listener_example_prints_what_the_page_shows() -> None:
    code = doc_pages.block(DOC, "python", contains="add_transition_listener(")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {})
    assert out.getvalue() == doc_pages.block(DOC, "text", starts="lifecycle lifecycle")


def test_the_log_lines_shown_are_the_real_ones(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="healthprobe")
    failing = [False]

    def database() -> None:
        if failing[0]:
            raise TimeoutError("timed out")

    registry = HealthRegistry(default_cache_ttl=0)
    registry.add_check("database", database)
    registry.mark_started()
    registry.run("readiness")
    failing[0] = True
    registry.run("readiness")
    failing[0] = False
    registry.run("readiness")
    registry.begin_drain()

    def number(line: str) -> str:
        return re.sub(r"\d+\.\d\d s", "N s", line)

    lines = [number(r.getMessage()) for r in caplog.records if r.name == "healthprobe"]
    for shown in doc_pages.block(DOC, "text", starts="check database: fail").splitlines():
        assert number(shown) in lines
    fields = {"transition", "old", "new", "reason_class", "lasted"}
    assert all(fields <= set(vars(r)) for r in caplog.records if hasattr(r, "transition"))
