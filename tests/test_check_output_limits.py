"""What a check writes is bounded and redacted.

* A check's ``output``, a ``str`` ``observed_value`` and its ``observed_unit`` are cut to 500
  characters, so ``CheckResult(..., observed_value="z" * 2_000_000)`` gives a JSON body of a
  few hundred bytes instead of 2 MB; numbers JSON cannot carry (NaN, the infinities, integers
  beyond a float's range, which Python will not even write past 4,300 digits) are ``null``.
* Secrets are withheld (``healthprobe.checks.redact``) from every output and ``str`` observed
  value a check run produces, so they reach neither a log line (at any level) nor a body,
  even with ``expose_output=True``; ``observedValue`` is always shown (it is a measurement).

In process (sync and async checks, hand-made reports), then through uvicorn and waitress
(real processes), whose logs must not hold the password.
"""

from __future__ import annotations

import decimal
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from healthprobe import CheckReport, CheckResult, HealthRegistry, Probe, Report, Status
from healthprobe.render import dumps, render_json, render_text
from tests import doc_pages
from tests.apps.stubborn import SECRET
from tests.support import BIN, ServerProcess, free_port, run_server, started_registry

DSN = f"postgres://admin:{SECRET}@db:5432/x"
REDACTED = "postgres://***@db:5432/x"


def started(**checks: Callable[[], object]) -> HealthRegistry:
    """A started registry of ``checks``, without a result cache."""
    return started_registry(checks, default_cache_ttl=0.0)


def both_kinds(value: Callable[[], object]) -> list[Callable[[], object]]:
    """A sync check and an async check doing the same."""

    async def async_check() -> object:
        await anyio.lowlevel.checkpoint()
        return value()

    return [value, async_check]


def huge() -> CheckResult:
    return CheckResult(Status.PASS, output="o" * 10_000, observed_value="z" * 2_000_000, observed_unit="u" * 100_000)


# -- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [0, 1], ids=["sync", "async"])
def test_output_observed_value_and_unit_are_cut_to_500_characters(kind: int) -> None:
    registry = started(huge=both_kinds(huge)[kind])
    for report in (registry.run("readiness"), anyio.run(registry.run_async, "readiness")):
        result = report.checks["huge"].result
        assert (len(result.output or ""), len(str(result.observed_value)), len(result.observed_unit or "")) == (
            500,
            500,
            500,
        )
        body = dumps(render_json(report, expose_output=True))
        assert len(body) < 2_000, len(body)
        item = json.loads(body)["checks"]["huge"][0]
        assert item["observedValue"] == "z" * 500 and item["observedUnit"] == "u" * 500


def test_an_exception_text_of_megabytes_is_cut() -> None:
    def raises() -> None:
        raise RuntimeError("x" * 3_000_000)

    result = started(raises=raises).run("readiness").checks["raises"].result
    assert result.output == ("RuntimeError: " + "x" * 3_000_000)[:500]


def test_a_hand_made_report_renders_small_and_valid_whatever_it_holds() -> None:
    values: dict[str, Any] = {
        "long-str": "z" * 2_000_000,
        "huge-int": 10**5000,  # json.dumps itself refuses past 4,300 digits
        "negative-huge-int": -(10**400),
        "big-int": 10**300,  # within a float's range: kept exact
        "decimal": decimal.Decimal("1e999"),  # converted to float: inf
        "flag": True,
        "bytes": 2**63,
    }
    results = {
        name: CheckResult(Status.PASS, observed_value=value, observed_unit="u" * 10_000)
        for name, value in values.items()
    }
    entries = {name: CheckReport(name, True, result, Status.PASS) for name, result in results.items()}
    body = dumps(render_json(Report(Probe.LIVENESS, Status.PASS, entries)))
    assert len(body) < 6_000, len(body)
    checks = json.loads(body)["checks"]
    observed = {name: items[0]["observedValue"] for name, items in checks.items()}
    assert observed == {
        "long-str": "z" * 500,
        "huge-int": None,
        "negative-huge-int": None,
        "big-int": 10**300,
        "decimal": None,
        "flag": True,
        "bytes": 2**63,
    }
    assert {len(items[0]["observedUnit"]) for items in checks.values()} == {500}


def test_a_check_reporting_an_integer_of_thousands_of_digits_is_answered() -> None:
    registry = started(digits=lambda: CheckResult(Status.PASS, observed_value=10**5000))
    report = registry.run("readiness")
    document = json.loads(dumps(render_json(report)))
    assert document["status"] == "pass" and document["checks"]["digits"][0]["observedValue"] is None


# -- secrets ------------------------------------------------------------------------------------


def leaky() -> None:
    raise ConnectionError(f"could not reach {DSN}; retry with password={SECRET}")


@pytest.mark.parametrize("kind", [0, 1], ids=["sync", "async"])
def test_a_secret_in_an_exception_text_reaches_no_log_line(kind: int, caplog: pytest.LogCaptureFixture) -> None:
    registry = started(leaky=both_kinds(leaky)[kind])
    with caplog.at_level(logging.DEBUG, logger="healthprobe"):
        for _ in range(2):  # the failure (WARNING), then "still fail" (DEBUG)
            registry.run("readiness")
        anyio.run(registry.run_async, "readiness")
    messages = [record.getMessage() for record in caplog.records if "leaky" in record.getMessage()]
    assert len(messages) == 3, messages
    assert SECRET not in caplog.text
    assert f"could not reach {REDACTED}; retry with password=***" in messages[0], messages


def test_the_log_line_of_the_docs(caplog: pytest.LogCaptureFixture) -> None:
    """docs/checks.md ("No secrets in output") shows the line a check raising with a DSN logs."""
    page = doc_pages.page("checks.md")
    raised = re.search(r"`(ConnectionError\(\"[^`]*\"\))`", page)
    logged = re.search(r"`(check db: fail \([^`]*)`", page)
    assert raised is not None and logged is not None and SECRET in raised[1]

    def db() -> None:
        raise eval(raised[1])  # the exception the page shows

    with caplog.at_level(logging.WARNING, logger="healthprobe"):
        started(db=db).run("readiness")
    assert [record.getMessage() for record in caplog.records] == [logged[1]]


def test_a_secret_in_a_check_output_is_withheld_from_results_and_exposed_bodies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def warns() -> CheckResult:
        return CheckResult(Status.WARN, output=f"slow replica {DSN} token={SECRET}", observed_value=f"pwd={SECRET}")

    registry = started(warns=warns)
    with caplog.at_level(logging.DEBUG, logger="healthprobe"):
        report = registry.run("readiness")
    result = report.checks["warns"].result
    assert result.output == f"slow replica {REDACTED} token=***" and result.observed_value == "pwd=***"
    for body in (
        render_text(report, verbose=True, expose_output=True),
        dumps(render_json(report, expose_output=True)).decode(),
        caplog.text,
    ):
        assert SECRET not in body
    assert REDACTED in caplog.text


def test_observed_values_are_shown_without_expose_output() -> None:
    registry = started(
        latency=lambda: CheckResult(Status.FAIL, output="too slow", observed_value=0.25, observed_unit="s")
    )
    item = render_json(registry.run("readiness"))["checks"]["latency"][0]
    assert (item["observedValue"], item["observedUnit"], item["output"]) == (0.25, "s", "reason withheld")


# -- real servers -------------------------------------------------------------------------------

APP = "tests.apps.stubborn"


@pytest.fixture(scope="module", params=["uvicorn", "waitress"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    port = free_port()
    if request.param == "uvicorn":
        command = [str(BIN / "uvicorn"), f"{APP}:asgi", "--port", str(port)]
    else:
        command = [str(BIN / "waitress-serve"), f"--listen=127.0.0.1:{port}", "--threads=4", f"{APP}:wsgi"]
    with run_server(command, port, tmp_path_factory.mktemp(request.param)) as process:
        yield process


@pytest.mark.slow
def test_a_huge_observed_value_gives_a_small_json_body(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/livez/huge?format=json", timeout=5.0)
    assert response.status_code == 200
    assert len(response.content) < 2_000, len(response.content)
    [item] = response.json()["checks"]["huge"]
    assert item["observedValue"] == "z" * 500 and item["observedUnit"] == "u" * 500


@pytest.mark.slow
def test_the_server_log_holds_the_failure_without_the_password(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/livez/leaky", timeout=5.0)
    assert response.status_code == 503 and "reason withheld" in response.text
    # The line is logged before the probe is answered (docs/logging.md).
    lines = [line for line in server.output().splitlines() if "check leaky: fail" in line]
    assert len(lines) == 1 and f"(ConnectionError: could not reach {REDACTED})" in lines[0], server.output()
    assert SECRET not in server.output()
