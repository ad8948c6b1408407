"""``python -m benchmarks [--quick] [--only 1,2,...] [--json FILE] [--chart FILE] [--cost-chart FILE]``.

Prints one table: each measurement, the measured value (a ratio where two things are
compared), the target, and whether it was met.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import suites
from .chart import fanout_chart, probe_cost_chart
from .harness import Comparison, Row

SUITES: dict[str, Callable[..., list[Row]]] = {
    "2": suites.pass_through,
    "3": suites.sockets,
    "5": suites.storm,
    "6": suites.hung_check,
    "7": suites.memory,
    "8": suites.grpc_check,
}


def machine() -> str:
    """One line naming the machine and interpreter."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


PACKAGES = (
    "healthprobe",
    "starlette",
    "fastapi",
    "fastapi-health",
    "werkzeug",
    "flask",
    "py-healthcheck",
    "django",
    "django-health-check",
    "uvicorn",
    "httptools",
    "anyio",
    "grpcio",
    "grpcio-health-checking",
)


def versions() -> str:
    """Installed versions of the packages compared (``-`` when missing)."""
    from importlib import metadata

    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} -")
    return ", ".join(found)


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| # | measurement | measured | target | met |", "|---|---|---|---|---|"]
    for row in rows:
        met = "-" if row.met is None else ("yes" if row.met else "**no**")
        what = f"{row.what}; {row.detail}" if row.detail else row.what
        lines.append(f"| {row.item} | {what} | {row.measured} | {row.target} | {met} |")
    return "\n".join(lines)


@dataclasses.dataclass
class Results:
    """What a run measured: the table's rows, the fan-out series of (4) (name -> [(checks,
    seconds)]) and the ``/livez`` comparisons of (1) (flavour -> median seconds per call and
    ratio to the floor, per side)."""

    rows: list[Row] = dataclasses.field(default_factory=list)
    fanout: dict[str, list[tuple[int, float]]] = dataclasses.field(default_factory=dict)
    probe_cost: dict[str, Comparison] = dataclasses.field(default_factory=dict)


def _chart_row(item: str, drawn: Path | None) -> Row:
    """The row naming where a chart went (``None``: matplotlib is missing)."""
    return Row(item, "chart", str(drawn) if drawn else "skipped: matplotlib not installed", "-", None)


def run(
    *,
    quick: bool = False,
    only: set[str] | None = None,
    chart: Path | None = None,
    cost_chart: Path | None = None,
    log: Callable[[str], None] = print,
) -> Results:
    """Run the selected measurements, drawing the fan-out chart of (4) to ``chart`` and the
    probe-cost chart of (1) to ``cost_chart`` (each when given and its measurement runs)."""
    counts = suites.QUICK if quick else suites.FULL
    results = Results()
    rows, series = results.rows, results.fanout
    for key in ["1", "2", "3", "4", "5", "6", "7", "8"]:
        if only is not None and key not in only:
            continue
        started = time.monotonic()
        if key == "1":
            got = suites.probe_cost(counts, results.probe_cost)
            if cost_chart is not None:
                got.append(_chart_row("1", probe_cost_chart(results.probe_cost, cost_chart)))
        elif key == "4":
            got = suites.fan_out(counts, series)
            if chart is not None:
                got.append(_chart_row("4", fanout_chart(series, chart, suites.CHECK_SECONDS)))
        else:
            got = SUITES[key](counts)
        rows.extend(got)
        log(f"({key}) done in {time.monotonic() - started:.1f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts (a smoke run, not a measurement)")
    parser.add_argument("--only", help="comma-separated measurement numbers, e.g. 1,2")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--chart", type=Path, default=Path("docs/fanout.png"), help="fan-out chart of (4) (PNG)")
    parser.add_argument(
        "--cost-chart", type=Path, default=Path("docs/probe-cost.png"), help="probe-cost chart of (1) (PNG)"
    )
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    print(f"machine: {machine()}", file=sys.stderr)
    print(f"versions: {versions()}", file=sys.stderr)
    results = run(
        quick=args.quick,
        only=only,
        chart=args.chart,
        cost_chart=args.cost_chart,
        log=lambda s: print(s, file=sys.stderr),
    )
    print(table(results.rows))
    if args.json:
        document = {
            "machine": machine(),
            "versions": versions(),
            "rows": [dataclasses.asdict(r) for r in results.rows],
            "fanout": results.fanout,
            "probe_cost": {f: dataclasses.asdict(c) for f, c in results.probe_cost.items()},
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
