"""The shutdown timeline figures of docs/kubernetes.md (``make docs-figures``,
benchmarks/figures.py) and the charts of docs/performance.md (``python -m benchmarks``): the
checked-in PNGs take the page's background on both palettes,
their numbers (docs/shutdown-timeline.json) say what the page says they say, the drawing
renders from a small sample of a run, and the measurement itself, in a short form, finds no
failed request with a delay and failed ones without.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.figures import FIGURES, NUMBERS, Run, draw, measure, read_phases, title
from benchmarks.haproxy_run import haproxy_binary

from .support import ROOT, assert_figure_reads_on_both_palettes, require_binary

DOCS = ROOT / "docs"


#: The charts of docs/performance.md, drawn by ``python -m benchmarks`` (benchmarks/chart.py).
CHARTS = ("fanout.png", "probe-cost.png")


@pytest.mark.parametrize("figure", sorted(FIGURES.values()) + list(CHARTS))
def test_the_checked_in_figures_take_the_page_background(figure: str) -> None:
    assert_figure_reads_on_both_palettes(DOCS / figure)


def test_the_checked_in_numbers_show_what_the_delay_prevents() -> None:
    numbers = json.loads((DOCS / NUMBERS).read_text())
    delay, none = numbers["delay"], numbers["no-delay"]
    assert delay["delay_s"] > 0 and none["delay_s"] == 0
    assert delay["failed"] == 0 and none["failed"] > 0
    for run in (delay, none):
        assert run["requests"] >= 200
        assert sorted(run["instances"]) == ["a", "b"]
        for instance in run["instances"].values():
            assert instance["exit_code"] == 0
            assert list(instance["phases_s"])[:2] == ["signal", "delay end"]
            assert "exit" in instance["phases_s"] and "started" in instance["phases_s"]
    # With the delay, HAProxy has the instance DOWN before it stops accepting; without, after.
    for instance in delay["instances"].values():
        assert instance["down_after_s"] < instance["phases_s"]["delay end"]


def test_the_kubernetes_page_shows_the_figures_and_quotes_their_numbers() -> None:
    page = (DOCS / "kubernetes.md").read_text()
    section = page.split("## The shutdown timeline", 1)[1].split("\n## ", 1)[0]
    numbers = json.loads((DOCS / NUMBERS).read_text())
    for key, figure in FIGURES.items():
        assert f"]({figure})" in section
        run = numbers[key]
        assert f"{run['failed']} of {run['requests']} requests failed" in section, key
    assert "make docs-figures" in section
    assert "```text\n SIGTERM" not in section  # the ASCII drawing is gone


def test_the_performance_page_shows_the_charts_its_run_drew() -> None:
    # Each chart is on the page, and the table names it among the rows of the run that drew it.
    page = (DOCS / "performance.md").read_text()
    table = page.split("<!-- table: python -m benchmarks -->", 1)[1].split("<!-- end table -->", 1)[0]
    for item, chart in (("1", "probe-cost.png"), ("4", "fanout.png")):
        assert f"]({chart})" in page
        assert f"| {item} | chart | docs/{chart} | - | - |" in table


def _sample_run(delay: float, failed: int) -> Run:
    """A small run as :func:`measure` records it: instance ``a`` stops and starts again,
    ``b`` serves on; ``failed`` requests fail just after the delay ends."""
    t0 = 1_800_000_000.0
    run = Run(delay, ("a", "b"))
    for i in range(120):  # 6 s of readings, every 50 ms
        t = t0 - 1.0 + i * 0.05
        status = "UP" if t < t0 + 0.2 else "UP 1/2" if t < t0 + 0.4 else "DOWN" if t < t0 + 3.5 else "UP"
        run.samples.append((t, {"a": (status, i % 3 if status == "UP" else 0), "b": ("UP", (i + 1) % 4)}))
    run.requests = [(t0 - 1.0 + i * 0.02, False) for i in range(300)]
    run.requests += [(t0 + delay + 0.01 * i, True) for i in range(failed)]
    run.phases = {
        "a": [
            ("signal", t0),
            ("delay end", t0 + delay),
            ("drain end", t0 + delay + 0.01),
            ("hooks", t0 + delay + 0.02),
            ("exit", t0 + delay + 0.03),
            ("started", t0 + delay + 0.2),
        ]
    }
    run.exit_codes = {"a": 0}
    return run


@pytest.mark.parametrize(("delay", "failed"), [(1.5, 0), (0.0, 12)])
def test_the_drawing_renders_a_sample_run(delay: float, failed: int, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = _sample_run(delay, failed)
    drawn = draw(run, tmp_path / "timeline.png", title(run))
    assert_figure_reads_on_both_palettes(drawn)
    numbers = run.numbers()
    assert (numbers["requests"], numbers["failed"]) == (300 + failed, failed)
    assert numbers["instances"]["a"]["down_after_s"] == pytest.approx(0.4, abs=0.06)
    assert f"{failed} of {300 + failed} requests failed" in title(run)


def test_phases_are_read_from_the_demo_log() -> None:
    log = (
        "2026-12-07 14:00:00,000 INFO node_demo: GET /\n"
        "2026-12-07 14:00:01,250 INFO healthprobe.shutdown: shutdown: SIGTERM received; readiness fails, "
        "serving on for the 5.0 s delay (2 request(s) in flight)\n"
        "2026-12-07 14:00:06,251 INFO healthprobe.shutdown: shutdown: delay over after 5.00 s; stopping "
        "accepting, draining 0 in-flight request(s) (bound 20.0 s)\n"
        "2026-12-07 14:00:06,260 INFO healthprobe.shutdown: shutdown: drained after 0.01 s\n"
        "2026-12-07 14:00:06,262 INFO healthprobe.shutdown: shutdown: 1 hook(s) done in 0.00 s\n"
        "2026-12-07 14:00:06,270 INFO healthprobe.shutdown: shutdown: stopped 5.02 s after the signal; exit code 0\n"
    )
    phases = read_phases(log)
    assert [name for name, _ in phases] == ["signal", "delay end", "drain end", "hooks", "exit"]
    assert phases[1][1] - phases[0][1] == pytest.approx(5.001, abs=1e-6)
    assert read_phases("2026-12-07 14:00:00,000 INFO node_demo: GET /shutdown\n") == []


#: Short runs without a delay until one shows a failed request (see the test).
CONTROL_ATTEMPTS = 3


@pytest.mark.slow
def test_the_measurement_in_short_finds_what_the_delay_prevents(tmp_path: Path) -> None:
    """One instance restarted with a 1 s delay loses nothing; with none, requests fail."""
    binary = haproxy_binary() or require_binary("haproxy", "haproxy")

    def short(delay: float, name: str) -> Run:
        workdir = tmp_path / name
        workdir.mkdir()
        return measure(delay, workdir, binary, restart=("a",), settle=40)

    runs = {1.0: short(1.0, "delay-1")}
    # Without a delay, the requests HAProxy sends to the instance between its exit and its DOWN
    # (one or two 200 ms checks later) fail; a short run on a loaded machine may send none in
    # that window, so the control has three tries to show that failures are seen at all.
    for attempt in range(CONTROL_ATTEMPTS):
        runs[0.0] = short(0.0, f"delay-0-{attempt}")
        if runs[0.0].numbers()["failed"]:
            break
    graceful, control = runs[1.0].numbers(), runs[0.0].numbers()
    assert graceful["failed"] == 0, graceful
    assert control["failed"] > 0, control
    for numbers in (graceful, control):
        a = numbers["instances"]["a"]
        assert a["exit_code"] == 0, numbers
        assert [p for p in a["phases_s"] if p != "started"] == ["signal", "delay end", "drain end", "hooks", "exit"]
        assert a["down_after_s"] is not None, numbers
        assert numbers["requests"] >= 80, numbers
    assert graceful["instances"]["a"]["down_after_s"] < graceful["instances"]["a"]["phases_s"]["delay end"]
    assert any(states["a"][1] > 0 for _, states in runs[1.0].samples), "no request in flight was seen on a"
    pytest.importorskip("matplotlib")
    for delay, run in runs.items():
        assert_figure_reads_on_both_palettes(draw(run, tmp_path / f"timeline-{delay:g}.png", title(run)))
