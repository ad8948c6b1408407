"""Checks that misbehave: raising ``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit`` or
another ``BaseException``, raising an exception whose ``__str__`` raises, writing line breaks
into their output, reporting values JSON cannot carry. Each is a failed check, answered at
once, in a body that stays well-formed; none reaches the server or its event loop.

Through uvicorn (a real process), from sync callers (a check thread, the private event loop)
and from async callers on asyncio and trio.
"""

from __future__ import annotations

import decimal
import fractions
import json
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from healthprobe import CheckReport, CheckResult, HealthRegistry, Probe, Report, Status
from healthprobe import wsgi as hp_wsgi
from healthprobe.render import dumps, one_line, render_json
from tests import check_apps
from tests.support import PYTHON, free_port, run_server, started_registry

#: Deadline of the checks below, in seconds. A failure that waited for it says "timed out".
TIMEOUT = 3.0


def raiser(exc: BaseException, *, is_async: bool) -> Callable[[], Any]:
    if is_async:

        async def check() -> None:
            await anyio.lowlevel.checkpoint()
            raise exc

        return check

    def sync_check() -> None:
        raise exc

    return sync_check


BASE_EXCEPTIONS = [
    pytest.param(SystemExit(3), "SystemExit", "SystemExit: 3", id="SystemExit"),
    pytest.param(KeyboardInterrupt(), "KeyboardInterrupt", "KeyboardInterrupt", id="KeyboardInterrupt"),
    pytest.param(GeneratorExit(), "GeneratorExit", "GeneratorExit", id="GeneratorExit"),
    pytest.param(check_apps.Fatal("fatal"), "tests.check_apps.Fatal", "tests.check_apps.Fatal: fatal", id="Fatal"),
]


def registry_of(**checks: Callable[[], Any]) -> HealthRegistry:
    """A started registry of ``checks`` with the :data:`TIMEOUT` deadline and no result cache."""
    return started_registry(checks, default_timeout=TIMEOUT, default_cache_ttl=0.0)


async def ok_async() -> bool:
    await anyio.lowlevel.checkpoint()
    return True


# -- BaseException from a check ---------------------------------------------------------------


@pytest.mark.slow
def test_base_exceptions_from_async_checks_fail_at_once_under_uvicorn(tmp_path: Any) -> None:
    port = free_port()
    args = [PYTHON, "-m", "uvicorn", "--factory", "tests.check_apps:asgi_app", "--port", str(port)]
    args += ["--log-level", "warning"]
    expected = {
        "exits": "[-]exits failed: SystemExit: 3",
        "interrupted": "[-]interrupted failed: KeyboardInterrupt",
        "closed": "[-]closed failed: GeneratorExit",
        "fatal": "[-]fatal failed: tests.check_apps.Fatal: fatal",
        "broken-text": "[-]broken-text failed: tests.check_apps.BrokenText: <exception str() failed>",
        "broken-text-sync": "[-]broken-text-sync failed: tests.check_apps.BrokenText: <exception str() failed>",
        "forged": "[-]forged failed: line1\\n[+]forged ok\\nreadyz check passed",
    }
    assert set(expected) == set(check_apps.CHECKS)
    with run_server(args, port, tmp_path, name="uvicorn") as server:
        with httpx.Client(base_url=server.url, timeout=3 * check_apps.TIMEOUT) as client:
            for name, line in expected.items():
                for _ in range(2):  # the second run shows the first left nothing busy or broken
                    response = client.get(f"/readyz/{name}")
                    assert (response.status_code, response.text) == (503, f"{line}\nreadyz check failed\n")
            # All at once: one task per check, in one task group.
            response = client.get("/readyz")
            assert response.status_code == 503
            assert response.text.splitlines() == [*expected.values(), "readyz check failed"]
            assert client.get("/").text == "hello\n"  # the event loop still serves the app
        assert server.proc.poll() is None
        output = server.output()
    assert "Traceback" not in output and "Exception in ASGI application" not in output, output


@pytest.mark.parametrize(("exc", "error_type", "output"), BASE_EXCEPTIONS)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_base_exceptions_fail_at_once_from_a_sync_caller(
    exc: BaseException, error_type: str, output: str, is_async: bool
) -> None:
    registry = registry_of(bad=raiser(exc, is_async=is_async), later=ok_async)
    for _ in range(2):  # the second run shows the first left nothing busy or broken
        report = registry.run("readiness", exclude="later")
        result = report.checks["bad"].result
        assert (result.status, result.error_type, result.output) == (Status.FAIL, error_type, output)
        assert not result.timed_out
    # The private event loop that ran the async checks is still alive.
    assert registry.run("readiness", only="later").status is Status.PASS


@pytest.mark.parametrize(("exc", "error_type", "output"), BASE_EXCEPTIONS)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_base_exceptions_from_async_checks_fail_at_once_from_an_async_caller(
    exc: BaseException, error_type: str, output: str, backend: str
) -> None:
    registry = registry_of(bad=raiser(exc, is_async=True), good=ok_async)

    async def main() -> list[object]:
        return [await registry.run_async("readiness"), await registry.run_async("readiness", only="bad")]

    for report in anyio.run(main, backend=backend):
        result = report.checks["bad"].result  # type: ignore[attr-defined]
        assert (result.status, result.error_type, result.output) == (Status.FAIL, error_type, output)
        assert not result.timed_out


# -- an exception whose text cannot be had -----------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_exception_whose_str_raises_fails_at_once_with_a_placeholder(
    is_async: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    registry = registry_of(broken=raiser(check_apps.BrokenText(), is_async=is_async))

    async def from_async() -> object:
        return await registry.run_async("readiness")

    for report in (registry.run("readiness"), registry.run("readiness"), anyio.run(from_async)):
        result = report.checks["broken"].result  # type: ignore[attr-defined]
        assert result.status is Status.FAIL and not result.timed_out
        assert result.error_type == "tests.check_apps.BrokenText"
        assert result.output == "tests.check_apps.BrokenText: <exception str() failed>"
    assert died == []


# -- what a check wrote stays on its line -------------------------------------------------------

FORGING = [
    "line1\n[+]forged ok\nreadyz check passed",
    "carriage\r[+]return ok",
    "\x1b[2K\x1b[1Gescape",
    "del\x7fete, tab\tand vertical tab\x0b, form feed\x0c",
    "next line\x85and\u2028separators\u2029[+]x ok",
    "file separator\x1c[+]x ok",
]


def test_text_bodies_keep_each_check_and_reason_on_one_line() -> None:
    def raising() -> None:
        raise RuntimeError("a\nreadyz check passed")

    registry = registry_of(
        **{
            f"forged-{index}": (lambda text=text: CheckResult(Status.WARN, output=text))
            for index, text in enumerate(FORGING)
        },
        raising=raising,
    )
    registry.set_ready(False, "maintenance\n[+]lifecycle ok")
    app = hp_wsgi.HealthApp(registry, expose_output=True)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://probe") as client:
        text = client.get("/readyz").text
        document = client.get("/readyz?format=json")
    lines = text.splitlines()  # splits on every line boundary Python knows, \x1c and \u2028 too
    assert len(lines) == len(FORGING) + 3, text
    assert lines[: len(FORGING)] == [f"[+]forged-{i} warn: {one_line(t)}" for i, t in enumerate(FORGING)]
    assert lines[len(FORGING) :] == [
        "[-]raising failed: RuntimeError: a\\nreadyz check passed",
        "[-]lifecycle failed: out of rotation: maintenance\\n[+]lifecycle ok",
        "readyz check failed",
    ]
    # JSON escapes control characters itself: the exact text, and no raw line break.
    assert b"\n" not in document.content and b"\r" not in document.content
    checks = document.json()["checks"]
    assert [checks[f"forged-{i}"][0]["output"] for i in range(len(FORGING))] == FORGING
    assert checks["raising"][0]["output"] == "RuntimeError: a\nreadyz check passed"


def test_one_line_escapes_c0_del_c1_and_line_separators_and_keeps_the_rest() -> None:
    controls = [chr(code) for code in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]]
    for char in controls:
        escaped = one_line(f"a{char}b")
        assert escaped == "a" + repr(char)[1:-1] + "b" and escaped.isprintable()
    assert one_line("plain ascii, café, 日本, ✓ [+]") == "plain ascii, café, 日本, ✓ [+]"
    assert one_line(None) is None


# -- observedValue -------------------------------------------------------------------------------


def test_observed_values_json_cannot_carry_are_null_and_nonsense_is_refused() -> None:
    registry = registry_of(
        nan=lambda: CheckResult(Status.PASS, observed_value=float("nan"), observed_unit="%"),
        inf=lambda: CheckResult(Status.PASS, observed_value=float("inf")),
        neg=lambda: CheckResult(Status.PASS, observed_value=float("-inf")),
        obj=lambda: CheckResult(Status.PASS, observed_value=object()),  # type: ignore[arg-type]
        unit=lambda: CheckResult(Status.PASS, observed_value=1, observed_unit=object()),  # type: ignore[arg-type]
        ratio=lambda: CheckResult(Status.PASS, observed_value=fractions.Fraction(1, 4)),  # type: ignore[arg-type]
    )
    app = hp_wsgi.HealthApp(registry, expose_output=True)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://probe") as client:
        response = client.get("/readyz?format=json")
    assert " at 0x" not in response.text  # no repr with a memory address
    checks = json.loads(response.content, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))["checks"]
    assert checks["nan"][0]["observedValue"] is None and checks["nan"][0]["observedUnit"] == "%"
    assert checks["inf"][0]["observedValue"] is None and checks["neg"][0]["observedValue"] is None
    assert checks["ratio"][0]["observedValue"] == 0.25
    for name, field in (("obj", "observed_value"), ("unit", "observed_unit")):
        entry = checks[name][0]
        assert entry["status"] == "fail" and "observedValue" not in entry
        assert entry["output"].startswith(f"TypeError: CheckResult {field} must be")


def test_observed_value_types() -> None:
    assert CheckResult(Status.PASS, observed_value=decimal.Decimal("1.5")).observed_value == 1.5  # type: ignore[arg-type]
    assert CheckResult(Status.PASS, observed_value=fractions.Fraction(3, 1)).observed_value == 3.0  # type: ignore[arg-type]
    assert CheckResult(Status.PASS, observed_value=True).observed_value is True
    assert CheckResult(Status.PASS, observed_value="v1.2").observed_value == "v1.2"
    with pytest.raises(TypeError, match="observed_value must be a number, a str or None, got list"):
        CheckResult(Status.PASS, observed_value=[1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="observed_unit must be a str or None, got int"):
        CheckResult(Status.PASS, observed_value=1, observed_unit=1)  # type: ignore[arg-type]


def test_dumps_never_writes_a_repr_or_a_non_finite_number() -> None:
    with pytest.raises(TypeError):
        dumps({"value": object()})
    with pytest.raises(ValueError):
        dumps({"value": float("nan")})


def test_a_hand_made_report_with_nonsense_values_still_renders_valid_json() -> None:
    # CheckResult refuses these; a report built around that (object.__setattr__ on the frozen
    # dataclass) still renders without a repr and without raising, so an adapter never fails.
    result = CheckResult(Status.PASS, time=1.0)
    object.__setattr__(result, "observed_value", object())
    object.__setattr__(result, "observed_unit", object())
    report = Report(Probe.READINESS, Status.PASS, {"c": CheckReport("c", True, result, Status.PASS)})
    item = json.loads(dumps(render_json(report)))["checks"]["c"][0]
    assert item["observedValue"] is None and "observedUnit" not in item
