"""The fan-out chart of measurement (4), drawn with matplotlib (extra ``bench``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
