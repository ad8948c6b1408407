"""Out of rotation without shutting down (docs/operating.md): by a call, with an expiry, and
by the disable file; readiness fails with the reason, liveness and startup are untouched,
nothing stops; shown in text and JSON bodies, metrics and one log record per change; seen
at once by remembered answers, in process and through both adapters under real servers."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from healthprobe import HealthEndpoints, HealthRegistry, Probe, Status
from healthprobe.asgi import HealthMiddleware as AsgiMiddleware
from healthprobe.prometheus import HealthCollector, PrometheusMetrics
from healthprobe.registry import ROTATION_REASON_LIMIT, Rotation
from healthprobe.wsgi import HealthMiddleware as WsgiMiddleware

from .apps import plain_apps
from .support import promtool_check_metrics, sample_value, samples, uvicorn_server, wait_until, werkzeug_server


def started(**options: Any) -> HealthRegistry:
    registry = HealthRegistry(**options)
    registry.add_check("database", lambda: True, probes=("readiness", "liveness"))
    registry.mark_started()
    return registry


def rotation_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "healthprobe" and hasattr(r, "rotation")]


# -- by a call -----------------------------------------------------------------------------------


def test_out_of_rotation_fails_readiness_only_and_comes_back() -> None:
    registry = started()
    assert registry.rotation.in_rotation and registry.rotation.source is None
    before = time.time()
    state = registry.take_out_of_rotation("maintenance")
    assert state == registry.rotation
    assert (state.in_rotation, state.reason, state.source, state.until) == (False, "maintenance", "api", None)
    assert before <= state.since <= time.time()
    readiness = registry.run(Probe.READINESS)
    assert readiness.status is Status.FAIL and readiness.reasons == ("out of rotation: maintenance",)
    assert registry.run(Probe.LIVENESS).status is Status.PASS
    assert registry.run(Probe.STARTUP).status is Status.PASS
    assert registry.lifecycle.value == "started"  # nothing stops
    back = registry.return_to_rotation()
    assert back.in_rotation and back.reason is None and back.since >= state.since
    assert registry.run(Probe.READINESS).status is Status.PASS


def test_set_ready_is_the_same_switch() -> None:
    registry = started()
    registry.set_ready(False, "warming the cache")
    assert registry.rotation.reason == "warming the cache" and registry.rotation.source == "api"
    registry.return_to_rotation()
    assert registry.run(Probe.READINESS).ok
    registry.take_out_of_rotation()
    assert registry.run(Probe.READINESS).reasons == ("out of rotation",)
    registry.set_ready(True)
    assert registry.rotation.in_rotation


def test_reasons_are_bounded_and_kept_on_one_line() -> None:
    registry = started()
    registry.take_out_of_rotation("  a\nb\x1b " + "x" * 1000)
    # Stripped, cut to the limit, then each control character written as its escape.
    assert registry.rotation.reason == "a\\nb\\x1b " + "x" * (ROTATION_REASON_LIMIT - 5)
    with pytest.raises(TypeError):
        registry.take_out_of_rotation(42)  # type: ignore[arg-type]
    for bad in (0, -1, float("nan"), float("inf"), True):
        with pytest.raises(ValueError):
            registry.take_out_of_rotation("x", seconds=bad)


def test_one_log_record_per_change_none_for_repeats(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="healthprobe")
    registry = started()
    registry.take_out_of_rotation("maintenance")
    registry.take_out_of_rotation("maintenance")
    registry.set_ready(False, "maintenance, still")  # a new reason while out: no record
    for _ in range(3):
        registry.run(Probe.READINESS)
    registry.return_to_rotation()
    registry.return_to_rotation()
    registry.set_ready(True)
    out, back = rotation_records(caplog)
    assert out.getMessage() == "out of rotation: maintenance" and out.levelno == logging.INFO
    assert (out.rotation, out.reason, out.source, out.expires_in) == ("out", "maintenance", "api", None)  # type: ignore[attr-defined]
    assert back.getMessage().startswith("back in rotation after ")
    assert back.getMessage().endswith(" s out (maintenance, still; returned by a call)")
    assert (back.rotation, back.reason, back.source) == ("in", "maintenance, still", "api")  # type: ignore[attr-defined]
    assert isinstance(back.seconds, float) and back.seconds >= 0  # type: ignore[attr-defined]


# -- expiry ----------------------------------------------------------------------------------------


def test_expiry_returns_by_itself_at_probe_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="healthprobe")
    registry = started()
    endpoints = HealthEndpoints(registry)
    began = time.monotonic()
    state = registry.take_out_of_rotation("deploy", seconds=0.3)
    assert state.until is not None and state.until - state.since == pytest.approx(0.3, abs=0.05)
    first = endpoints.handle_sync("GET", "/readyz", "", None)
    assert first is not None and first.status == 503
    # The remembered 503 is served while out, and never once the time is up.
    while time.monotonic() - began < 0.25:
        again = endpoints.cached("GET", "/readyz", "", None)
        assert again is first
        time.sleep(0.01)
    came_back = wait_until(
        lambda: endpoints.cached("GET", "/readyz", "", None) is None and time.monotonic(), 2, "expiry"
    )
    assert 0.3 <= came_back - began < 0.5
    answer = endpoints.handle_sync("GET", "/readyz", "", None)
    assert answer is not None and answer.status == 200 and registry.rotation.in_rotation
    out, back = rotation_records(caplog)
    assert out.getMessage() == "out of rotation: deploy (returns by itself in 0.3 s)"
    assert back.getMessage().endswith("(deploy; its time was up)") and back.source == "expiry"  # type: ignore[attr-defined]


def test_a_new_call_replaces_the_expiry() -> None:
    registry = started()
    registry.take_out_of_rotation("short", seconds=0.05)
    registry.take_out_of_rotation("no end")
    time.sleep(0.1)
    assert registry.rotation.reason == "no end" and registry.rotation.until is None


# -- the disable file ------------------------------------------------------------------------------


def test_the_disable_file_takes_out_and_brings_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="healthprobe")
    flag = tmp_path / "disabled"
    registry = started(disable_file=flag)
    assert registry.disable_file == str(flag)
    endpoints = HealthEndpoints(registry)
    ok = endpoints.handle_sync("GET", "/readyz", "verbose", None)
    assert ok is not None and ok.status == 200
    flag.touch()
    assert endpoints.cached("GET", "/readyz", "verbose", None) is None  # one stat: seen at once
    empty = endpoints.handle_sync("GET", "/readyz", "verbose", None)
    assert empty is not None and empty.status == 503
    assert empty.body.decode().splitlines() == [
        "[+]database ok",
        "[-]lifecycle failed: out of rotation: disable file present",
        "readyz check failed",
    ]
    live = endpoints.handle_sync("GET", "/livez", "", None)
    assert live is not None and live.status == 200
    flag.write_text("rebalancing shards\nticket 42\n")
    with_reason = endpoints.handle_sync("GET", "/readyz", "format=json", None)
    assert with_reason is not None and with_reason.status == 503
    assert httpx.Response(200, content=with_reason.body).json()["output"] == "out of rotation: rebalancing shards"
    assert registry.rotation.source == "file" and registry.rotation.until is None
    flag.unlink()
    assert endpoints.cached("GET", "/readyz", "format=json", None) is None
    back = endpoints.handle_sync("GET", "/readyz", "", None)
    assert back is not None and back.status == 200
    out, came_back = rotation_records(caplog)
    assert out.getMessage() == "out of rotation: disable file present" and out.source == "file"  # type: ignore[attr-defined]
    assert came_back.getMessage().endswith("(rebalancing shards; the disable file is gone)")


def test_the_file_first_line_is_bounded_and_escaped(tmp_path: Path) -> None:
    flag = tmp_path / "disabled"
    flag.write_bytes(b"\xff bad\x1b[31m " + b"y" * 5000 + b"\nsecond line")
    registry = started(disable_file=str(flag))
    reason = registry.rotation.reason
    assert reason is not None and reason.startswith("\ufffd bad\\x1b[31m y")
    assert len(reason) <= ROTATION_REASON_LIMIT + 4 and "second" not in reason
    text = registry.run(Probe.READINESS)
    assert text.reasons == (f"out of rotation: {reason}",)


def test_either_source_holds_the_instance_out(tmp_path: Path) -> None:
    flag = tmp_path / "disabled"
    registry = started()
    registry.set_disable_file(flag)
    flag.write_text("file says so")
    registry.take_out_of_rotation("call says so")
    assert registry.rotation.reason == "call says so"  # the call's reason first
    since = registry.rotation.since
    registry.return_to_rotation()
    state = registry.rotation
    assert (state.in_rotation, state.source, state.reason, state.since) == (False, "file", "file says so", since)
    flag.unlink()
    assert registry.rotation.in_rotation
    registry.take_out_of_rotation("call")
    flag.touch()
    flag.unlink()
    assert registry.rotation.source == "api"
    registry.set_disable_file(None)
    assert registry.disable_file is None
    with pytest.raises(ValueError):
        registry.set_disable_file("")
    with pytest.raises(TypeError):
        registry.set_disable_file(3)  # type: ignore[arg-type]


def test_without_a_file_or_expiry_nothing_is_looked_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rotation costs nothing to readiness answers unless a file or an expiry is set:
    no stat; with the file, one stat per answer, and none for liveness."""
    registry = started()
    endpoints = HealthEndpoints(registry)
    calls: list[object] = []
    real_stat = os.stat

    def counting_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        calls.append(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    endpoints.handle_sync("GET", "/readyz", "", None)
    assert endpoints.cached("GET", "/readyz", "", None) is not None
    assert calls == []
    registry.set_disable_file(tmp_path / "disabled")
    calls.clear()
    endpoints.handle_sync("GET", "/readyz", "", None)
    endpoints.handle_sync("GET", "/livez", "", None)
    assert endpoints.cached("GET", "/livez", "", None) is not None
    assert len(calls) == 1
    assert endpoints.cached("GET", "/readyz", "", None) is not None
    assert len(calls) == 2


# -- metrics ---------------------------------------------------------------------------------------


def test_the_gauge_follows_the_rotation_and_passes_promtool(tmp_path: Path) -> None:
    flag = tmp_path / "disabled"
    registry = started(disable_file=flag)
    collector = HealthCollector(registry)

    def gauge() -> float | None:
        from prometheus_client import CollectorRegistry, generate_latest

        scrape = CollectorRegistry()
        scrape.register(collector)
        return sample_value(samples(generate_latest(scrape).decode()), "healthprobe_out_of_rotation")

    assert gauge() == 0.0
    flag.touch()  # read at scrape time, with no probe in between
    assert gauge() == 1.0
    flag.unlink()
    registry.take_out_of_rotation("x", seconds=60)
    assert gauge() == 1.0
    registry.return_to_rotation()
    assert gauge() == 0.0
    registry.set_ready(False)
    _, body = PrometheusMetrics(registry, multiprocess=False).expose("text/plain")
    assert sample_value(samples(body.decode()), "healthprobe_out_of_rotation") == 1.0
    promtool_check_metrics(body.decode())


# -- both adapters under real servers --------------------------------------------------------------


@contextlib.contextmanager
def served(adapter: str, registry: HealthRegistry) -> Iterator[str]:
    asgi, wsgi = plain_apps()
    if adapter == "asgi":
        with uvicorn_server(AsgiMiddleware(asgi, registry, metrics=True)) as url:
            yield url
    else:
        with werkzeug_server(WsgiMiddleware(wsgi, registry, metrics=True)) as url:
            yield url


ADAPTERS = pytest.mark.parametrize("adapter", ["asgi", "wsgi"])


@ADAPTERS
def test_through_a_real_server_by_call_file_and_expiry(adapter: str, tmp_path: Path) -> None:
    flag = tmp_path / "disabled"
    registry = started(disable_file=flag)
    with served(adapter, registry) as url, httpx.Client(base_url=url, timeout=5) as client:
        assert client.get("/readyz").status_code == 200
        registry.take_out_of_rotation("maintenance")
        answer = client.get("/readyz?verbose")
        assert (answer.status_code, answer.text) == (
            503,
            "[+]database ok\n[-]lifecycle failed: out of rotation: maintenance\nreadyz check failed\n",
        )
        document = client.get("/readyz", headers={"Accept": "application/health+json"}).json()
        assert (document["status"], document["output"]) == ("fail", "out of rotation: maintenance")
        assert client.get("/livez").status_code == 200
        assert client.get("/startupz").status_code == 200
        assert client.get("/").text == f"ok {os.getpid()}"  # the application's answer: nothing stops
        metrics = client.get("/metrics").text
        assert sample_value(samples(metrics), "healthprobe_out_of_rotation") == 1.0
        registry.return_to_rotation()
        assert client.get("/readyz").status_code == 200
        flag.write_text("file flag\n")
        assert client.get("/readyz").status_code == 503
        assert client.get("/readyz?format=json").json()["output"] == "out of rotation: file flag"
        assert client.get("/livez").status_code == 200
        flag.unlink()
        assert client.get("/readyz").status_code == 200
        registry.take_out_of_rotation("brief", seconds=0.2)
        assert client.get("/readyz").status_code == 503
        wait_until(lambda: client.get("/readyz").status_code == 200, 2, "back after the expiry", interval=0.02)
        assert sample_value(samples(client.get("/metrics").text), "healthprobe_out_of_rotation") == 0.0


@ADAPTERS
def test_remembered_answers_never_outlive_a_file_change_under_concurrent_probes(adapter: str, tmp_path: Path) -> None:
    """Threads probe ``/readyz`` without pause through the server (most answers remembered)
    while the disable file comes and goes: every probe sent after the file appeared and
    answered before it went is a 503, and every one sent after it went and answered before
    it came again is a 200."""
    flag = tmp_path / "disabled"
    registry = started(disable_file=flag)
    outcomes: list[tuple[float, float, int]] = []
    done = threading.Event()

    def probe(url: str) -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            while not done.is_set():
                sent = time.monotonic()
                code = client.get("/readyz").status_code
                outcomes.append((sent, time.monotonic(), code))

    changes: list[tuple[float, float, bool]] = []  # (monotonic times before and after a change, out)
    with served(adapter, registry) as url:
        threads = [threading.Thread(target=probe, args=(url,), daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(6):
                count = len(outcomes)
                wait_until(lambda count=count: len(outcomes) >= count + 20, 10, "probes answered", interval=0.005)
                before = time.monotonic()
                if flag.exists():
                    flag.unlink()
                else:
                    flag.touch()
                changes.append((before, time.monotonic(), flag.exists()))
            count = len(outcomes)
            wait_until(lambda: len(outcomes) >= count + 20, 10, "probes answered", interval=0.005)
        finally:
            done.set()
            for thread in threads:
                thread.join(10)
    # Between the end of one change and the start of the next, the answer is known.
    nexts = [before for before, _, _ in changes[1:]] + [float("inf")]
    judged = 0
    for sent, answered, code in outcomes:
        for (_, at, out), next_change in zip(changes, nexts, strict=True):
            if sent > at and answered < next_change:
                assert code == (503 if out else 200), (sent - at, out, code)
                judged += 1
    assert judged >= 100, judged


def test_rotation_state_is_a_read_only_view() -> None:
    state = started().rotation
    assert isinstance(state, Rotation) and state.text is None
    with pytest.raises(AttributeError):
        state.reason = "x"  # type: ignore[misc]
