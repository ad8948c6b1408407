"""OpenTelemetry (healthprobe.otel): the spans of probes and check runs and the metrics,
read from the SDK's in-memory exporter and reader, for probes asked over HTTP of real
servers on both adapters (uvicorn + healthprobe.asgi, Werkzeug + healthprobe.wsgi)."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from healthprobe import CheckResult, GracefulShutdown, HealthRegistry, Status, asgi, wsgi
from healthprobe.otel import ATTRIBUTES, METRICS, Instrumentation, instrument

from . import doc_pages
from .support import clean_env, raised_without, started_registry, uvicorn_client, wait_until, werkzeug_client

OPERATING = doc_pages.page("operating.md")

#: What the failing check's exception says: a dependency's detail, and a secret.
DETAIL = "connection refused by db.internal:5432"
SECRET = "hunter2"


def _broken() -> None:
    raise ConnectionRefusedError(f"{DETAIL} password={SECRET}")


async def _hangs() -> None:
    await anyio.sleep(30)


def _flaky() -> CheckResult:
    return CheckResult(Status.FAIL, output=f"replica lag from {DETAIL}")


def probe_registry() -> HealthRegistry:
    """``ok`` passes, ``broken`` raises, ``slow`` (async) outlives its 0.3 s deadline and
    ``flaky`` (not critical) fails; results are cached long enough for a second probe."""
    return started_registry(
        {
            "ok": lambda: True,
            "broken": _broken,
            "slow": (_hangs, {"timeout": 0.3}),
            "flaky": (_flaky, {"critical": False}),
        },
        check_options={"cache_ttl": 60},
    )


@dataclass
class Otel:
    """The SDK, kept in memory."""

    spans: InMemorySpanExporter
    tracer_provider: TracerProvider
    reader: InMemoryMetricReader
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Metric name -> ``[(attributes, data point)]`` of one collection."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "healthprobe"
                for metric in scope.metrics:
                    found[metric.name] = [(dict(p.attributes or {}), p) for p in metric.data.data_points]
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(spans, tracer_provider, reader, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def instrumented(registry: HealthRegistry, otel: Otel, **options: Any) -> Instrumentation:
    return instrument(registry, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, **options)


# -- real servers -----------------------------------------------------------------------------


Serve = Callable[[HealthRegistry], contextlib.AbstractContextManager[httpx.Client]]

SERVERS: dict[str, Serve] = {
    "uvicorn-asgi": lambda registry: uvicorn_client(asgi.HealthApp(registry)),
    "werkzeug-wsgi": lambda registry: werkzeug_client(wsgi.HealthApp(registry)),
}


@pytest.fixture(params=list(SERVERS))
def serve(request: pytest.FixtureRequest) -> Serve:
    return SERVERS[request.param]


def background(span: ReadableSpan) -> bool:
    return bool((span.attributes or {})["healthprobe.check.background"])


def everything_in(span: ReadableSpan) -> str:
    """All the text a span carries: attributes, status, events."""
    return repr((dict(span.attributes or {}), span.status.description, [e.attributes for e in span.events]))


# -- spans ------------------------------------------------------------------------------------


def test_a_group_answer_is_a_group_span_over_its_check_runs(otel: Otel, serve: Serve) -> None:
    """``/health/<group>``: a ``healthprobe.group <group>`` span, the parent of the runs it
    started; a probe's span is not made for it."""
    registry = probe_registry()
    registry.add_group("wellness", checks=("ok", "broken"))
    instrumented(registry, otel)
    with serve(registry) as client:
        assert client.get("/health/wellness").status_code == 503
        (group,) = otel.named("healthprobe.group wellness")
        assert dict(group.attributes or {}) == {
            "healthprobe.group.name": "wellness",
            "healthprobe.probe.status": "fail",
            "healthprobe.probe.cached": False,
            "healthprobe.lifecycle.state": "started",
        }
        assert group.status.status_code is StatusCode.ERROR
        assert not otel.named("healthprobe.probe readiness")
        runs = [span for span in otel.finished() if span.name.startswith("healthprobe.check ")]
        assert sorted(span.name for span in runs) == ["healthprobe.check broken", "healthprobe.check ok"]
        assert all(span.parent is not None and span.parent.span_id == group.context.span_id for span in runs)
        assert client.get("/health/wellness/ok").status_code == 200
        one = otel.named("healthprobe.group wellness")[-1]
        assert (one.attributes or {})["healthprobe.probe.only"] == "ok"


def test_a_probe_span_with_a_child_span_per_check_run(otel: Otel, serve: Serve) -> None:
    registry = probe_registry()
    instrumented(registry, otel)
    with serve(registry) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503

        (probe,) = otel.named("healthprobe.probe readiness")
        assert dict(probe.attributes or {}) == {
            "healthprobe.probe.name": "readiness",
            "healthprobe.probe.status": "fail",
            "healthprobe.probe.cached": False,
            "healthprobe.lifecycle.state": "started",
        }
        assert probe.status.status_code is StatusCode.ERROR
        checks = {span.name: span for span in otel.finished() if span.name.startswith("healthprobe.check ")}
        assert set(checks) == {f"healthprobe.check {name}" for name in ("ok", "broken", "slow", "flaky")}
        for span in checks.values():
            assert span.parent is not None and span.parent.span_id == probe.context.span_id
            assert span.context.trace_id == probe.context.trace_id
            assert probe.start_time <= span.start_time <= span.end_time <= probe.end_time
            assert span.attributes is not None and span.attributes["healthprobe.check.background"] is False

        ok = checks["healthprobe.check ok"].attributes or {}
        assert (ok["healthprobe.check.status"], ok["healthprobe.check.timed_out"]) == ("pass", False)
        assert 0 <= float(ok["healthprobe.check.duration"]) < 5  # type: ignore[arg-type]
        assert "error.type" not in ok
        assert checks["healthprobe.check ok"].status.status_code is StatusCode.UNSET

        broken = checks["healthprobe.check broken"]
        assert broken.attributes is not None
        assert broken.attributes["healthprobe.check.status"] == "fail"
        assert broken.attributes["healthprobe.check.timed_out"] is False
        assert broken.attributes["error.type"] == "ConnectionRefusedError"
        assert broken.status.status_code is StatusCode.ERROR
        assert broken.status.description == "ConnectionRefusedError"

        slow = checks["healthprobe.check slow"]
        assert slow.attributes is not None
        assert slow.attributes["healthprobe.check.timed_out"] is True
        assert slow.attributes["healthprobe.check.status"] == "fail"
        assert float(slow.attributes["healthprobe.check.duration"]) >= 0.25  # type: ignore[arg-type]
        assert slow.status.description == "timed out after 0.3 s"  # healthprobe's own words

        # The run's own status, as healthprobe_check_status shows it; the probe shows warn.
        flaky = checks["healthprobe.check flaky"].attributes or {}
        assert (flaky["healthprobe.check.status"], flaky["healthprobe.check.critical"]) == ("fail", False)

        # By default nothing a check wrote reaches a span.
        for span in [probe, *checks.values()]:
            assert DETAIL not in everything_in(span) and SECRET not in everything_in(span)
            assert "healthprobe.check.output" not in (span.attributes or {})

        # Asked again: every result comes from the cache, no check runs, no check span.
        otel.spans.clear()
        assert client.get("/readyz").status_code == 503
        (again,) = otel.finished()
        assert again.name == "healthprobe.probe readiness"
        assert again.attributes is not None and again.attributes["healthprobe.probe.cached"] is True


def test_what_checks_wrote_only_with_expose_output(otel: Otel, serve: Serve) -> None:
    registry = probe_registry()
    instrumented(registry, otel, expose_output=True)
    with serve(registry) as client:
        assert client.get("/readyz").status_code == 503
    checks = {span.name: span for span in otel.finished()}
    broken = checks["healthprobe.check broken"]
    assert broken.attributes is not None
    output = str(broken.attributes["healthprobe.check.output"])
    assert output.startswith(f"ConnectionRefusedError: {DETAIL}")
    assert SECRET not in output  # what a check wrote is redacted before anything keeps it
    assert broken.status.description == output
    flaky = checks["healthprobe.check flaky"].attributes or {}
    assert flaky["healthprobe.check.output"] == f"replica lag from {DETAIL}"
    assert (checks["healthprobe.check ok"].attributes or {}).get("healthprobe.check.output") is None


def test_one_check_probe_and_startup_checks_run_under_readiness(otel: Otel, serve: Serve) -> None:
    registry = started_registry(
        {"warmup": (lambda: True, {"probes": ["startup"]}), "database": lambda: True}, started=False
    )
    instrumented(registry, otel)
    with serve(registry) as client:
        assert client.get("/readyz").status_code == 200  # runs warmup too, and latches startup
        (probe,) = otel.named("healthprobe.probe readiness")
        children = [s for s in otel.finished() if s.parent is not None and s.parent.span_id == probe.context.span_id]
        assert sorted(s.name for s in children) == ["healthprobe.check database", "healthprobe.check warmup"]
        otel.spans.clear()
        registry.remove_check("database")  # a new generation: no remembered answer
        registry.add_check("database", lambda: True)
        assert client.get("/readyz/database").status_code == 200
        (one,) = otel.named("healthprobe.probe readiness")
        assert one.attributes is not None and one.attributes["healthprobe.probe.only"] == "database"


def test_a_background_check_run_is_a_root_span(otel: Otel, serve: Serve) -> None:
    registry = started_registry({"queue": (lambda: True, {"interval": 0.1})})
    instrumented(registry, otel)

    def background_runs() -> list[ReadableSpan] | None:
        spans = [s for s in otel.named("healthprobe.check queue") if background(s)]
        return spans if len(spans) >= 3 else None

    try:
        with serve(registry) as client:
            assert client.get("/readyz").status_code == 200  # starts the background loop
            runs = wait_until(background_runs, 20, "three background runs")
    finally:
        registry.remove_check("queue")  # ends its loop
    for span in runs:
        assert span.parent is None
    assert len({span.context.trace_id for span in runs}) == len(runs)
    # The first run may be the probe's own (the loop then joins it): a child of its span.
    (probe,) = otel.named("healthprobe.probe readiness")
    led = [s for s in otel.named("healthprobe.check queue") if not background(s)]
    assert len(led) <= 1
    assert all(s.parent is not None and s.parent.span_id == probe.context.span_id for s in led)


def test_a_remembered_answer_makes_no_span(otel: Otel, serve: Serve) -> None:
    registry = started_registry({"ok": lambda: True}, check_options={"cache_ttl": 60})
    instrumented(registry, otel)
    with serve(registry) as client:
        assert client.get("/livez").status_code == 200  # no liveness check: remembered
        assert client.get("/livez").status_code == 200
    assert len(otel.named("healthprobe.probe liveness")) == 1


# -- metrics ----------------------------------------------------------------------------------


def test_metrics_after_probes(otel: Otel, serve: Serve) -> None:
    registry = probe_registry()
    instrumented(registry, otel)
    with serve(registry) as client:
        assert client.get("/readyz").status_code == 503
        assert client.get("/livez").status_code == 200
        found = otel.metrics()
        assert set(found) == set(METRICS) - {"healthprobe.in_flight", "healthprobe.shutdown"}

        def value(name: str, **attributes: str) -> Any:
            wanted = {f"healthprobe.{key.replace('_', '.')}": v for key, v in attributes.items()}
            (point,) = [p for attrs, p in found[name] if attrs == wanted]
            return point

        assert value("healthprobe.check.runs", check_name="broken", check_status="fail").value == 1
        assert value("healthprobe.check.runs", check_name="broken", check_status="pass").value == 0
        assert value("healthprobe.check.runs", check_name="slow", check_status="fail").value == 1
        assert value("healthprobe.check.status", check_name="ok", check_status="pass").value == 1
        assert value("healthprobe.check.status", check_name="broken", check_status="fail").value == 1
        assert value("healthprobe.check.status", check_name="broken", check_status="pass").value == 0
        duration = value("healthprobe.check.duration", check_name="slow")
        assert duration.count == 1 and duration.sum >= 0.25  # event loop timers may fire a little early
        assert list(duration.explicit_bounds)[:3] == [0.005, 0.01, 0.025]  # the Prometheus buckets
        assert value("healthprobe.check.last_success_time", check_name="ok").value == pytest.approx(time.time(), abs=60)
        assert [p for attrs, p in found["healthprobe.check.last_success_time"] if "broken" in attrs.values()] == []
        assert value("healthprobe.probe.status", probe_name="readiness", probe_status="fail").value == 1
        assert value("healthprobe.probe.status", probe_name="liveness", probe_status="pass").value == 1
        assert value("healthprobe.probe.status", probe_name="startup", probe_status="pass").value == 0
        assert value("healthprobe.lifecycle", lifecycle_state="started").value == 1
        assert value("healthprobe.lifecycle", lifecycle_state="draining").value == 0
        assert value("healthprobe.out_of_rotation").value == 0

        registry.take_out_of_rotation("maintenance")
        registry.begin_drain()
        found = otel.metrics()
        assert value("healthprobe.out_of_rotation").value == 1
        assert value("healthprobe.lifecycle", lifecycle_state="draining").value == 1
        assert value("healthprobe.lifecycle", lifecycle_state="started").value == 0


def test_in_flight_and_shutdown_phase_with_a_coordinator(otel: Otel) -> None:
    registry = started_registry()
    shutdown = GracefulShutdown(registry, delay=0)
    instrumented(registry, otel, shutdown=shutdown)
    shutdown.request_started()
    shutdown.request_started()
    found = otel.metrics()
    ((attrs, in_flight),) = found["healthprobe.in_flight"]
    assert (attrs, in_flight.value) == ({}, 2)
    phases = {attrs["healthprobe.shutdown.phase"]: point.value for attrs, point in found["healthprobe.shutdown"]}
    assert phases == {phase: int(phase == "serving") for phase in GracefulShutdown.phases}


# -- safety -----------------------------------------------------------------------------------


class Raising(SpanProcessor):
    """A span processor that raises on every span: an SDK that misbehaves."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("exporter down")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("exporter down")


def test_an_opentelemetry_failure_never_breaks_a_probe(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    provider = TracerProvider()
    provider.add_span_processor(Raising())
    registry = started_registry({"ok": lambda: True, "broken": _broken}, check_options={"cache_ttl": 0})
    instrument(registry, tracer_provider=provider, meter_provider=MeterProvider())
    with caplog.at_level(logging.DEBUG, logger="healthprobe"), serve(registry) as client:
        for _ in range(3):
            answer = client.get("/readyz?verbose")
            assert answer.status_code == 503
            assert "[+]ok ok" in answer.text and "[-]broken failed" in answer.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "OpenTelemetry" in r.getMessage()]
    assert len(warnings) == 1
    line = "OpenTelemetry probe span raised RuntimeError; the probe is answered without it"
    assert warnings[0].getMessage() == line
    assert line in " ".join(OPERATING.split())  # the page shows the real line
    assert any(r.levelno == logging.DEBUG and "OpenTelemetry" in r.getMessage() for r in caplog.records)
    provider.shutdown()


def test_uninstrument_and_instrument_once(otel: Otel) -> None:
    registry = started_registry({"ok": lambda: True}, check_options={"cache_ttl": 0})
    assert registry.tracing is None
    first = instrumented(registry, otel)
    assert registry.tracing is not None
    with pytest.raises(RuntimeError, match="instrumented already"):
        instrumented(registry, otel)
    with pytest.raises(TypeError, match="expose_output must be True or False"):
        instrument(HealthRegistry(), expose_output="yes")  # type: ignore[arg-type]
    registry.run("readiness")
    assert len(otel.finished()) == 2
    first.uninstrument()
    first.uninstrument()
    assert registry.tracing is None
    registry.run("readiness")
    assert len(otel.finished()) == 2
    assert otel.metrics().get("healthprobe.check.runs", []) == []
    instrumented(registry, otel)
    registry.run("readiness")
    assert len(otel.finished()) == 4


def test_without_an_sdk_the_api_is_a_no_op() -> None:
    """The global providers of the bare API: nothing recorded, nothing raised."""
    registry = started_registry({"ok": lambda: True, "broken": _broken})
    instrument(registry)
    assert registry.run("readiness").status is Status.FAIL


@pytest.mark.parametrize("mode", ["finder", "none"])
def test_without_the_extra_the_error_names_the_fix(mode: str) -> None:
    raised = raised_without("opentelemetry", "import healthprobe.otel", mode=mode)
    assert raised is not None
    assert raised["message"] == "healthprobe.otel needs opentelemetry-api: pip install 'healthprobe[otel]'"
    assert "ImportError" in raised["type"]
    assert raised["name"] == "opentelemetry"
    assert raised["extra"] == "otel"


# -- docs/operating.md ------------------------------------------------------------------------

_USE_THE_PAGE = """
from myapp.telemetry import meter_provider, registry, tracer_provider
from healthprobe import wsgi
from werkzeug.test import Client

registry.mark_started()
print(Client(wsgi.HealthApp(registry)).get("/readyz").status_code)
tracer_provider.force_flush()
meter_provider.force_flush()
"""


def test_the_operating_page_setup_exports_spans_and_metrics(tmp_path: Any) -> None:
    """The page's set-up, as written, in a fresh interpreter (it sets the global providers):
    a probe through the WSGI adapter, and what the console exporters print."""
    files = doc_pages.files(OPERATING)
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "telemetry.py").write_text(files["myapp/telemetry.py"])
    done = subprocess.run(
        [sys.executable, "-c", _USE_THE_PAGE],
        cwd=tmp_path,
        env={**clean_env(), "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("200\n")
    assert '"name": "healthprobe.probe readiness"' in out
    assert '"name": "healthprobe.check database"' in out
    assert '"service.name": "myapp"' in out
    for name in ("healthprobe.check.duration", "healthprobe.check.status", "healthprobe.lifecycle"):
        assert f'"name": "{name}"' in out


def test_the_operating_page_lists_every_metric_and_attribute() -> None:
    section = OPERATING[OPERATING.index("## OpenTelemetry") :]
    for name, (_instrument, unit, attributes, prometheus) in METRICS.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| `{unit}` |" in row and f"`{prometheus}`" in row, row
        for attribute in attributes:
            assert f"`{attribute}`" in row, (name, attribute)
    for attribute in ATTRIBUTES:
        assert f"`{attribute}`" in section, attribute
