"""Smoke run of ``python -m benchmarks --quick``: tiny counts, so the benchmarks cannot rot.

Nothing here asserts on timings (they belong to the benchmark's own table); it asserts that
every measurement ran, that each comparison produced a finite ratio, and that what does not
depend on timing holds (a hung check holds at most one thread). Peer packages (extra
``bench``) and wrk are included when installed, and their rows say so when they are not.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .support import ROOT, assert_figure_reads_on_both_palettes

#: Where the side with every operating feature on is measured: the rows of healthprobe as it
#: comes and with every feature on, in the same comparison, against the same target.
_LIVEZ = ("/livez healthprobe", " vs raw constant (")
_TRACKED = (" route /orders with vs without middleware and in-flight tracking", " (")
_EVERY = ", every operating feature on"
OPERATING_ROWS = {
    "1 ASGI": ("".join(_LIVEZ), f"{_LIVEZ[0]}{_EVERY},{_LIVEZ[1]}"),
    "1 WSGI": ("".join(_LIVEZ), f"{_LIVEZ[0]}{_EVERY},{_LIVEZ[1]}"),
    "2 ASGI": ("Starlette" + "".join(_TRACKED), f"Starlette{_TRACKED[0]}{_EVERY}{_TRACKED[1]}"),
    "2 WSGI": ("Flask" + "".join(_TRACKED), f"Flask{_TRACKED[0]}{_EVERY}{_TRACKED[1]}"),
}
READINESS_ROW = "/readyz, one cached check, every operating feature on vs off"
HAS_OTEL_SDK = importlib.util.find_spec("opentelemetry.sdk") is not None

PEERS = {
    "fastapi-health": ("fastapi_health", "1 ASGI"),
    "py-healthcheck": ("healthcheck", "1 WSGI"),
    "django-health-check": ("health_check", "1 WSGI"),
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--json",
            str(out / "rows.json"),
            "--chart",
            str(out / "f.png"),
            "--cost-chart",
            str(out / "c.png"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    document: dict[str, object] = json.loads((out / "rows.json").read_text())
    document["stdout"] = proc.stdout
    document["chart_path"] = out / "f.png"
    document["cost_chart_path"] = out / "c.png"
    return document


def _rows(smoke: dict[str, object]) -> list[dict[str, object]]:
    rows = smoke["rows"]
    assert isinstance(rows, list)
    return rows


def test_every_measurement_ran_and_printed_one_table(smoke: dict[str, object]) -> None:
    items = {str(row["item"]).split()[0] for row in _rows(smoke)}
    assert items == {"1", "2", "3", "4", "5", "6", "7", "8"}
    stdout = str(smoke["stdout"])
    assert stdout.startswith("| # | measurement | measured | target | met |")
    assert stdout.count("\n") >= len(_rows(smoke))


def test_measured_rows_carry_finite_positive_values(smoke: dict[str, object]) -> None:
    measured = [row for row in _rows(smoke) if row["met"] is not None]
    assert len(measured) >= 15
    for row in measured:
        value = row["value"]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, row


def test_probe_cost_compares_floor_and_bare_routes(smoke: dict[str, object]) -> None:
    whats = [str(row["what"]) for row in _rows(smoke) if str(row["item"]).startswith("1")]
    for name in ("raw constant", "bare Starlette route", "bare Werkzeug response"):
        assert any(name in what for what in whats), (name, whats)


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_installed_peers_are_measured(smoke: dict[str, object], peer: str) -> None:
    module, item = PEERS[peer]
    rows = [row for row in _rows(smoke) if row["item"] == item and peer in str(row["what"])]
    assert rows, f"no row for {peer}"
    if importlib.util.find_spec(module) is not None:
        assert rows[0]["met"] is not None, rows[0]
    else:  # extra `bench` not installed: the row names what is missing instead of a figure
        assert "not installed" in str(rows[0]["measured"])


def test_socket_run_uses_wrk_when_installed(smoke: dict[str, object]) -> None:
    (row,) = [row for row in _rows(smoke) if row["item"] == "3"]
    if shutil.which("wrk"):
        assert row["met"] is not None and float(row["value"]) > 0  # type: ignore[arg-type]
    else:
        assert "wrk not installed" in str(row["measured"])


def test_fanout_series_and_chart(smoke: dict[str, object]) -> None:
    series = smoke["fanout"]
    assert isinstance(series, dict)
    assert [n for n, _ in series["async checks (ASGI)"]] == [1, 10, 100]
    chart = smoke["chart_path"]
    assert isinstance(chart, Path)
    if importlib.util.find_spec("matplotlib") is not None:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_cost_sides_and_chart(smoke: dict[str, object]) -> None:
    # The chart of (1) draws the /livez comparison of each flavour: every side timed, the
    # floor's ratio to itself 1.
    costs = smoke["probe_cost"]
    assert isinstance(costs, dict) and sorted(costs) == ["ASGI", "WSGI"]
    for flavour, sides in (("ASGI", ["bare Starlette route"]), ("WSGI", ["bare Werkzeug response"])):
        per_call, ratios = costs[flavour]["per_call"], costs[flavour]["ratios"]
        assert {"raw constant", "healthprobe", *sides} <= set(per_call) == set(ratios), flavour
        assert ratios["raw constant"] == 1.0 and all(math.isfinite(s) and s > 0 for s in per_call.values())
    chart = smoke["cost_chart_path"]
    assert isinstance(chart, Path)
    if importlib.util.find_spec("matplotlib") is not None:
        assert_figure_reads_on_both_palettes(chart)
        assert any(row["what"] == "chart" and row["measured"] == str(chart) for row in _rows(smoke))


def test_the_charts_take_the_page_background_and_their_ink_reads_on_both_palettes(tmp_path: Path) -> None:
    # docs/fanout.png and docs/probe-cost.png sit on the docs' light and dark pages: no
    # background of their own, and text and axes in a mid grey rather than black (which would
    # vanish on the dark one).
    pytest.importorskip("matplotlib")
    from benchmarks.chart import fanout_chart, probe_cost_chart
    from benchmarks.harness import Comparison

    series = {"async checks (ASGI)": [(1, 0.051), (10, 0.052)], "sync checks (WSGI)": [(20, 0.054)]}
    drawn = fanout_chart(series, tmp_path / "f.png", 0.05)
    assert drawn is not None
    assert_figure_reads_on_both_palettes(drawn)
    asgi = {"raw constant": 1.2e-6, "healthprobe": 1.7e-6, "bare Starlette route": 13.5e-6, "a peer": 67e-6}
    wsgi = {"raw constant": 2.2e-6, "healthprobe": 2.6e-6, "bare Werkzeug response": 21e-6, "a peer": 1.2e-3}
    costs = {
        flavour: Comparison(sides, {name: s / sides["raw constant"] for name, s in sides.items()})
        for flavour, sides in (("ASGI", asgi), ("WSGI", wsgi))
    }
    drawn = probe_cost_chart(costs, tmp_path / "c.png")
    assert drawn is not None
    assert_figure_reads_on_both_palettes(drawn)


def test_storm_and_hung_check_hold_their_bounds(smoke: dict[str, object]) -> None:
    storm = [row for row in _rows(smoke) if row["item"] == "5" and "concurrent" in str(row["what"])]
    assert len(storm) == 2 and all(float(row["value"]) >= 1 for row in storm)  # type: ignore[arg-type]
    (threads,) = [row for row in _rows(smoke) if row["item"] == "6" and "threads held" in str(row["what"])]
    assert float(threads["value"]) <= 1  # type: ignore[arg-type]


@pytest.mark.parametrize("item", sorted(OPERATING_ROWS))
def test_every_operating_feature_is_measured_against_the_same_targets(smoke: dict[str, object], item: str) -> None:
    rows = [row for row in _rows(smoke) if row["item"] == item]
    plain, every = OPERATING_ROWS[item]
    if not HAS_OTEL_SDK:  # a row names what is missing instead of a figure
        assert any("opentelemetry-sdk is not installed" in str(row["measured"]) for row in rows)
        return
    (off,) = [row for row in rows if str(row["what"]).startswith(plain)]
    (on,) = [row for row in rows if str(row["what"]).startswith(every)]
    assert on["target"] == off["target"] == ("<= 1.50x" if item.startswith("1") else "<= +3.0%")
    for row in (on, off):
        assert isinstance(row["value"], float) and math.isfinite(row["value"]) and row["value"] > 0, row


@pytest.mark.parametrize("item", ["1 ASGI", "1 WSGI"])
def test_readiness_with_features_on_vs_off_and_each_alone(smoke: dict[str, object], item: str) -> None:
    from benchmarks.apps import FEATURES

    rows = [row for row in _rows(smoke) if row["item"] == item]
    whats = [str(row["what"]) for row in rows]
    if not HAS_OTEL_SDK:
        assert any("opentelemetry-sdk is not installed" in str(row["measured"]) for row in rows)
        return
    (on,) = [row for row in rows if str(row["what"]).startswith(READINESS_ROW)]
    assert on["target"] == "<= 1.50x" and on["met"] is not None
    for feature in FEATURES:
        (alone,) = [row for row in rows if f"/readyz with one feature on, {feature} (" in str(row["what"])]
        assert alone["met"] is None and math.isfinite(float(alone["value"])), (feature, whats)  # type: ignore[arg-type]


@pytest.mark.skipif(not HAS_OTEL_SDK, reason="opentelemetry-sdk is not installed")
def test_every_feature_on_switches_each_feature_on() -> None:
    import asyncio

    from benchmarks import apps
    from benchmarks.harness import AsgiCaller, WsgiCaller

    with apps.every_feature_on() as on:
        asgi = apps.healthprobe_asgi(shutdown=True, operating=on)
        wsgi = apps.healthprobe_wsgi(operating=on)
        assert asgi.endpoints.guard is on.guard and wsgi.endpoints.guard is on.guard  # type: ignore[attr-defined]
        assert on.guard is not None and on.guard.has_token and on.guard.networks
        assert on.registry.disable_file is not None and not Path(on.registry.disable_file).exists()
        assert apps.GROUP in on.registry.groups
        assert on.instrumentation is not None and on.publisher is not None
        loop = asyncio.new_event_loop()
        try:
            for path in ("/livez", "/readyz", "/orders"):
                assert loop.run_until_complete(AsgiCaller(asgi, path).once())[0] == 200, path
        finally:
            loop.close()
        assert WsgiCaller(wsgi, "/livez").once()[0] == 200
        assert on.notices() == 0  # the closed port was never tried
    assert on.transitions  # delivered by close(): the listener heard the probes' first answers
