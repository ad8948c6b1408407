"""The fan-out chart of measurement (4), drawn with matplotlib (extra ``bench``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .harness import Comparison

#: Text, axes and ticks: a mid grey, readable on the docs' light and dark palettes alike (the
#: background is transparent, so the chart takes the page's).
INK = "#888888"
#: Matplotlib settings that draw every text, axis and tick in :data:`INK`: readable on the
#: docs' light and dark palettes alike (the figures' backgrounds are transparent).
INK_STYLE = {
    "text.color": INK,
    "axes.labelcolor": INK,
    "axes.edgecolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "legend.edgecolor": INK,
}


def fanout_chart(series: dict[str, list[tuple[int, float]]], path: Path, check_seconds: float) -> Path | None:
    """Draw probe latency against the number of checks to ``path`` (PNG, transparent
    background).

    Returns ``path``, or ``None`` when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    with plt.rc_context(INK_STYLE):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        _draw(ax, series, check_seconds)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, transparent=True)
        plt.close(fig)
    return path


def _draw(ax: Any, series: dict[str, list[tuple[int, float]]], check_seconds: float) -> None:
    import matplotlib.ticker

    markers = {"async checks (ASGI)": "o-", "sync checks (ASGI)": "s", "sync checks (WSGI)": "^"}
    for name, points in series.items():
        xs = [n for n, _ in points]
        ys = [seconds * 1000 for _, seconds in points]
        if len(points) == 1:  # a single point: its value goes in the legend, not on the plot
            ax.plot(xs, ys, markers.get(name, "o"), label=f"{xs[0]} {name}: {ys[0]:.0f} ms", markersize=7)
            continue
        ax.plot(xs, ys, markers.get(name, "o-"), label=name, markersize=7)
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{y:.0f} ms", (x, y), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.axhline(check_seconds * 1000, color=INK, linestyle=":", label="one check (50 ms)")
    ax.axhline(check_seconds * 1200, color="tab:red", linestyle="--", label="target: 1.2x one check")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("checks in the probe (each takes 50 ms)")
    ax.set_ylabel("/readyz latency (ms)")
    ax.set_title("healthprobe fan-out: probe latency vs number of checks")
    top = max([s * 1000 for points in series.values() for _, s in points] + [check_seconds * 1200])
    ax.set_ylim(0, top * 1.15)
    ax.grid(True, which="both", alpha=0.3)
    # Upper left is empty (latency grows with the count); no fill, so no light box in dark mode.
    ax.legend(loc="upper left", fontsize=8, facecolor="none", framealpha=0)


#: The colour of each kind of side in the probe-cost chart: healthprobe, the floor (a constant
#: answer that does nothing), and the bare framework routes and peer packages.
_OURS, _OTHERS = "tab:blue", "tab:orange"


def probe_cost_chart(costs: dict[str, Comparison], path: Path, floor: str = "raw constant") -> Path | None:
    """Draw what one ``/livez`` probe costs, per side, to ``path`` (PNG, transparent
    background): one panel per flavour (``ASGI``, ``WSGI``), one bar per side on a
    logarithmic axis of microseconds, each labelled with its median time and its ratio to
    ``floor`` (the median of the per-round ratios, as the table gives it).

    Args:
        costs: flavour -> the ``/livez`` comparison of measurement (1), its sides named as
            :func:`benchmarks.suites.probe_cost` names them.
        path: where the PNG goes; its folder is created.
        floor: the side every ratio is taken against.

    Returns ``path``, or ``None`` when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    flavours = [f for f in ("ASGI", "WSGI") if f in costs]
    heights = [len(costs[f].per_call) for f in flavours]
    with plt.rc_context(INK_STYLE):
        fig, axes = plt.subplots(
            len(flavours),
            1,
            figsize=(7, 1.3 + 0.4 * sum(heights)),
            dpi=110,
            sharex=True,
            gridspec_kw={"height_ratios": heights},
            squeeze=False,
        )
        widest = max(s for f in flavours for s in costs[f].per_call.values()) * 1e6
        for ax, flavour in zip(axes[:, 0], flavours, strict=True):
            _draw_costs(ax, flavour, costs[flavour], floor, widest)
        fig.suptitle("What one /livez probe costs, called in-process")
        axes[-1, 0].set_xlabel("median time per probe in µs (log scale), and times the floor's")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, transparent=True)
        plt.close(fig)
    return path


def _draw_costs(ax: Any, flavour: str, sides: Comparison, floor: str, widest: float) -> None:
    import matplotlib.ticker

    names = list(sides.per_call)
    times = [sides.per_call[name] * 1e6 for name in names]
    colours = [INK if name == floor else _OURS if name.startswith("healthprobe") else _OTHERS for name in names]
    rows = range(len(names))
    ax.barh(rows, times, color=colours, height=0.6)
    labels = [f"{name} (floor)" if name == floor else name.replace(" operating ", " ") for name in names]
    ax.set_yticks(list(rows), labels, fontsize=8)
    ax.invert_yaxis()  # the first side on top
    ax.set_ylabel(flavour)
    for row, name, micro in zip(rows, names, times, strict=True):
        ratio = sides.ratios.get(name)
        said = "" if name == floor or ratio is None else f", {ratio:.2f}x" if ratio < 10 else f", {ratio:.0f}x"
        ax.annotate(f" {micro:.{1 if micro < 100 else 0}f} µs{said}", (micro, row), va="center", fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlim(min(times) / 2, widest * 30)  # room on the right for the widest bar's label
    ax.grid(True, axis="x", which="major", alpha=0.3)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
