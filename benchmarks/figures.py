"""The shutdown timeline figures of docs/kubernetes.md, drawn from real runs.

``python -m benchmarks.figures`` (``make docs-figures``) runs a rolling restart of the node
demo (examples/node_demo, ASGI flavour, two instances ``a`` and ``b``) behind a real HAProxy
under continuous load (:mod:`benchmarks.haproxy_run`) twice: with the shutdown delay a pod
gets by default (5 s) and with no delay. During each run it reads HAProxy's stats socket
every 50 ms (each instance's status, as its ``/readyz`` checks left it, and ``scur``, the
requests in flight on it), records every request of the load generator (its end, and
whether it failed) and, afterwards, reads the phase lines the instances logged
(``healthprobe.shutdown``: signal, delay over, drained, hooks done, stopped). It draws one
PNG per run (transparent background, mid-grey ink, as :mod:`benchmarks.chart`) and writes
the measured numbers to a JSON file beside them, which the docs quote.
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthprobe.testing import AppServer, free_port

from .chart import INK, INK_STYLE
from .haproxy_run import HAProxy, Load, haproxy_binary

ROOT = Path(__file__).resolve().parent.parent
#: Seconds: the delay healthprobe uses inside a pod (``KUBERNETES_SERVICE_HOST`` set).
DEFAULT_DELAY = 5.0
#: The node demo's defaults for the drain and hook bounds, in seconds.
DRAIN_TIMEOUT = 20.0
HOOK_TIMEOUT = 5.0
#: Requests completed before the first signal, and after the last instance is UP again.
SETTLE = 150
#: Keep-alive HTTP clients sending requests through HAProxy (one in ten a 0.5 s one).
CLIENTS = 8
#: Seconds: the requests-per-second curve counts the answers of a window this wide around
#: each point, one point every :data:`STEP` seconds (the load's slow requests come in bursts);
#: failed requests are counted in bins of :data:`STEP` seconds.
WINDOW = 1.0
STEP = 0.1
#: The figures and their numbers, in ``docs/``.
FIGURES = {"delay": "shutdown-timeline.png", "no-delay": "shutdown-timeline-no-delay.png"}
NUMBERS = "shutdown-timeline.json"

#: The phases the instances log, by the start of their ``shutdown:`` line, in order.
PHASES: Sequence[tuple[str, re.Pattern[str]]] = (
    ("signal", re.compile(r"\S+ received; readiness fails")),
    ("delay end", re.compile(r"delay over after")),
    ("drain end", re.compile(r"drained after|drain ended after|drain bound of|the server stopped during the delay")),
    ("hooks", re.compile(r"\d+ hook\(s\) done")),
    ("exit", re.compile(r"stopped [\d.]+ s after the signal; exit code")),
)
#: A line of the demo's log (``logging.basicConfig`` with ``%(asctime)s``, local time).
_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ [\w.]+: shutdown: (.*)$")


@dataclass
class Run:
    """What one rolling restart measured; every time is a ``time.time()``.

    Attributes:
        delay: the instances' shutdown delay, in seconds.
        instances: the instances' names, in the order they were restarted.
        samples: each reading of HAProxy's stats socket: its time and, per instance, its
            status (``UP``, ``UP 1/2``, ``DOWN``, ...) and its requests in flight.
        requests: each request through HAProxy: the time it ended and whether it failed.
        phases: per instance, each phase it logged (``signal``, ``delay end``, ``drain end``,
            ``hooks``, ``exit``) and ``started`` (its process started again), with its time.
        exit_codes: per instance, the exit code of its stopped process.
    """

    delay: float
    instances: tuple[str, ...]
    samples: list[tuple[float, dict[str, tuple[str, int]]]] = field(default_factory=list)
    requests: list[tuple[float, bool]] = field(default_factory=list)
    phases: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    @property
    def origin(self) -> float:
        """The first signal's time (the figure's 0 s), else the first sample's."""
        signals = [at for phases in self.phases.values() for name, at in phases if name == "signal"]
        return min(signals) if signals else min(at for at, _ in self.samples)

    def numbers(self) -> dict[str, Any]:
        """The run's figures for the docs: requests, failed ones, and per instance the phase
        times (seconds from its signal), the seconds until HAProxy had it DOWN, the requests
        that failed between its signal and HAProxy having it DOWN, and its exit code."""
        per: dict[str, Any] = {}
        for name in self.instances:
            phases = dict(self.phases.get(name, []))
            signalled = phases.get("signal")
            entry: dict[str, Any] = {"exit_code": self.exit_codes.get(name)}
            if signalled is not None:
                entry["phases_s"] = {k: round(at - signalled, 3) for k, at in phases.items()}
                down = [at for at, states in self.samples if at >= signalled and states.get(name, ("",))[0] == "DOWN"]
                entry["down_after_s"] = round(down[0] - signalled, 3) if down else None
            per[name] = entry
        return {
            "delay_s": self.delay,
            "requests": len(self.requests),
            "failed": sum(1 for _, failed in self.requests if failed),
            "seconds": round(max(at for at, _ in self.requests) - min(at for at, _ in self.requests), 2)
            if self.requests
            else 0.0,
            "instances": per,
        }


def read_phases(log: str) -> list[tuple[str, float]]:
    """The phases in an instance's ``log`` (the node demo's format), each with its
    ``time.time()`` (to the millisecond the log shows), in the order logged."""
    found = []
    for line in log.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        stamp, text = match.groups()
        for name, pattern in PHASES:
            if pattern.match(text):
                at = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                found.append((name, at))
                break
    return found


# -- the measurement ---------------------------------------------------------------------------


class _Demo:
    """The node demo's instances (ASGI flavour), each on a port of its own; every process
    started is killed at the end."""

    def __init__(self, delay: float, workdir: Path, names: Sequence[str]) -> None:
        self.delay = delay
        self.workdir = workdir
        self.ports = {name: free_port() for name in names}
        self.current: dict[str, AppServer] = {}
        self.started: list[tuple[str, AppServer]] = []

    def start(self, name: str) -> AppServer:
        port = self.ports[name]
        count = sum(1 for started, _ in self.started if started == name) + 1
        env = {
            "PYTHONPATH": str(ROOT),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "HEALTHY_FILE": str(self.workdir / f"healthy-{name}"),
            "SHUTDOWN_DELAY": str(self.delay),
            "DRAIN_TIMEOUT": str(DRAIN_TIMEOUT),
            "HOOK_TIMEOUT": str(HOOK_TIMEOUT),
        }
        server = AppServer(
            [sys.executable, "-m", "examples.node_demo.asgi_app"],
            port,
            env=env,
            cwd=ROOT,
            log=self.workdir / f"{name}-{count}.log",
        )
        self.current[name] = server
        self.started.append((name, server))
        return server

    def kill_all(self) -> None:
        for _, server in self.started:
            server.kill()


def measure(
    delay: float, workdir: Path, binary: str, *, restart: Sequence[str] = ("a", "b"), settle: int = SETTLE
) -> Run:
    """Run a rolling restart of the node demo's two instances ``a`` and ``b`` behind the
    HAProxy binary ``binary`` under load, with a shutdown delay of ``delay`` seconds;
    restart the instances named in ``restart``, in turn: ``SIGTERM``, wait for the exit and
    for HAProxy to have it DOWN, start it again, wait until HAProxy has it UP. ``settle``
    requests complete before the first signal and after the last instance is UP again.
    Logs and configuration go to ``workdir``; every process is killed at the end.

    Raises:
        RuntimeError: an instance did not log its phases (the message names it), or HAProxy
            exited.
        TimeoutError: an instance or HAProxy did not get where it should in time.
    """
    run = Run(delay, tuple(restart))
    demo = _Demo(delay, workdir, ("a", "b"))
    balancer: HAProxy | None = None
    load: Load | None = None
    stopped: list[tuple[str, AppServer]] = []
    try:
        for name in demo.ports:
            demo.start(name).wait_ready(30.0)
        balancer = HAProxy(binary, demo.ports, workdir)
        for name in demo.ports:
            balancer.wait_state(name, "UP", 30.0, check="L7OK")
        load = Load(balancer.url, http_clients=CLIENTS)
        load.start()
        load.wait_requests(settle)
        for name in restart:
            server = demo.current[name]
            server.process.send_signal(signal.SIGTERM)
            try:
                run.exit_codes[name] = server.process.wait(timeout=delay + DRAIN_TIMEOUT + HOOK_TIMEOUT + 10.0)
            except subprocess.TimeoutExpired:
                run.exit_codes[name] = None
            server.kill()
            stopped.append((name, server))
            balancer.wait_state(name, "DOWN", 10.0)
            started = time.time()
            again = demo.start(name)
            again.wait_ready(30.0)
            balancer.wait_state(name, "UP", 30.0, check="L7OK")
            run.phases.setdefault(name, []).append(("started", started))
        load.wait_requests(settle)
    finally:
        if load is not None:
            load.stop()
        demo.kill_all()
        if balancer is not None:
            balancer.stop()
    run.samples = list(balancer.samples) if balancer else []
    run.requests = [(r.end, r.error is not None) for r in (load.requests if load else [])]
    for name, server in stopped:
        phases = read_phases(server.output())
        if not any(phase == "signal" for phase, _ in phases):
            raise RuntimeError(f"instance {name} logged no shutdown phase:\n{server.output()[-2000:]}")
        run.phases[name] = phases + run.phases.get(name, [])
    return run


# -- the drawing ---------------------------------------------------------------------------------

#: HAProxy's status of an instance, as the band above its panel shows it.
STATES = {
    "UP": ("in rotation (UP)", "tab:green"),
    "going": ("checks failing, still routed (UP 1/2)", "tab:orange"),
    "DOWN": ("out of rotation (DOWN)", "tab:red"),
}
#: How each phase line is drawn: its label and line style.
PHASE_STYLE = {
    "signal": ("SIGTERM", "-"),
    "delay end": ("delay end", "--"),
    "drain end": ("drained", "-."),
    "hooks": ("hooks", ":"),
    "exit": ("exit", "-"),
    "started": ("started again", (0, (1, 3))),
}


def _state(status: str) -> str:
    if status == "UP":
        return "UP"
    if status.startswith("UP ") or status.startswith("DOWN "):  # UP 1/2 going down, DOWN 1/2 going up
        return "going"
    return "DOWN"


def _spans(run: Run, name: str) -> list[tuple[float, float, str]]:
    """The instance's states as HAProxy saw them: (start, end, state), times from the origin."""
    spans: list[tuple[float, float, str]] = []
    origin = run.origin
    for at, states in run.samples:
        if name not in states:
            continue
        state = _state(states[name][0])
        t = at - origin
        if spans and spans[-1][2] == state:
            spans[-1] = (spans[-1][0], t, state)
        else:
            if spans:
                spans[-1] = (spans[-1][0], t, spans[-1][2])
            spans.append((t, t, state))
    return spans


def _phase_labels(phases: Sequence[tuple[str, float]], origin: float) -> list[tuple[float, str]]:
    """Phase labels, one per position: phases within 0.3 s of each other share one."""
    labels: list[tuple[float, str]] = []
    for name, at in sorted(phases, key=lambda p: p[1]):
        t = at - origin
        text = PHASE_STYLE[name][0]
        if labels and t - labels[-1][0] < 0.3:
            labels[-1] = (labels[-1][0], f"{labels[-1][1]}, {text}")
        else:
            labels.append((t, text))
    return labels


def _per_second(times: Sequence[float], points: Sequence[float]) -> list[float]:
    """At each of ``points``, the number of ``times`` (sorted) within :data:`WINDOW` around
    it, per second."""
    half = WINDOW / 2
    return [(bisect.bisect_left(times, t + half) - bisect.bisect_left(times, t - half)) / WINDOW for t in points]


def draw(run: Run, path: Path, heading: str) -> Path:
    """Draw ``run``'s timeline to ``path`` (PNG, transparent background, mid-grey ink): one
    panel per instance (HAProxy's view of it as a band, its requests in flight, its phase
    lines) and one of the requests per second through HAProxy, failed ones in red.

    Returns ``path``. Raises ``ImportError`` without matplotlib (extra ``bench``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    origin = run.origin
    # From the load's first answers to its last: HAProxy's first readings come before.
    times = [at - origin for at, _ in run.requests] or [at - origin for at, _ in run.samples]
    left, right = min(times), max(times)
    with plt.rc_context(INK_STYLE):
        fig, axes = plt.subplots(
            len(run.instances) + 1,
            1,
            sharex=True,
            figsize=(9, 1.7 * len(run.instances) + 2.8),
            dpi=110,
            gridspec_kw={"height_ratios": [1.0] * len(run.instances) + [1.2]},
        )
        top_in_flight = max([1, *(n for _, states in run.samples for _, n in states.values())])
        for ax, name in zip(axes, run.instances, strict=False):
            for start, end, state in _spans(run, name):
                ax.axvspan(start, end, ymin=0.86, ymax=1.0, color=STATES[state][1], alpha=0.55, linewidth=0)
            xs = [at - origin for at, states in run.samples if name in states]
            ys = [states[name][1] for _, states in run.samples if name in states]
            ax.step(xs, ys, where="post", color="tab:blue", linewidth=1.1)
            ax.set_ylim(0, top_in_flight * 1.8 + 0.5)
            ax.set_ylabel(f"{name}: in flight", fontsize=9)
            phases = run.phases.get(name, [])
            for phase, at in phases:
                ax.axvline(at - origin, color=INK, linestyle=PHASE_STYLE[phase][1], linewidth=1.0)
            # Labels one under the other, so that two phases close in time stay legible.
            # Those in the last third go left of their line, so as not to run off the panel.
            for row, (t, text) in enumerate(_phase_labels(phases, origin)):
                late = t > left + (right - left) * 2 / 3
                ax.annotate(
                    text,
                    (t, 0.8 - 0.2 * (row % 3)),
                    xycoords=("data", "axes fraction"),
                    xytext=(-3 if late else 3, 0),
                    textcoords="offset points",
                    fontsize=7.5,
                    va="top",
                    ha="right" if late else "left",
                )
            ax.grid(True, axis="x", alpha=0.3)
        rate = axes[-1]
        answered = sorted(at - origin for at, failed in run.requests if not failed)
        lost = sorted(at - origin for at, failed in run.requests if failed)
        points = [left + WINDOW / 2 + i * STEP for i in range(int((right - left - WINDOW) / STEP) + 1)]
        ok = _per_second(answered, points)
        rate.plot(points, ok, color="tab:blue", linewidth=1.1, label="answered (2xx)")
        edges = [left + i * STEP for i in range(int((right - left) / STEP) + 1)]
        bad = [(bisect.bisect_left(lost, t + STEP) - bisect.bisect_left(lost, t)) / STEP for t in edges]
        rate.bar(edges, bad, width=STEP, align="edge", color="tab:red", label="failed (HAProxy 503, errors)")
        for name in run.instances:
            for phase, at in run.phases.get(name, []):
                if phase == "signal":
                    rate.axvline(at - origin, color=INK, linewidth=1.0)
        numbers = run.numbers()
        rate.text(
            0.01,
            0.9,
            f"{numbers['failed']} of {numbers['requests']} requests failed",
            transform=rate.transAxes,
            fontsize=9,
            va="top",
            color="tab:red" if numbers["failed"] else INK,
        )
        rate.set_ylim(0, max([1.0, *ok, *bad]) * 1.25)
        rate.set_ylabel("requests/s\nthrough HAProxy", fontsize=9)
        rate.set_xlabel("seconds from the first SIGTERM")
        rate.grid(True, alpha=0.3)
        rate.legend(loc="upper right", fontsize=8, facecolor="none", framealpha=0, ncol=2)
        rate.set_xlim(left, right)
        handles = [Patch(color=color, alpha=0.55, label=label) for label, color in STATES.values()]
        handles.append(Line2D([], [], color="tab:blue", label="requests in flight (HAProxy scur)"))
        fig.legend(
            handles=handles,
            loc="upper center",
            ncol=2,
            fontsize=8,
            facecolor="none",
            framealpha=0,
            bbox_to_anchor=(0.5, 0.96),
        )
        fig.suptitle(heading, fontsize=11, y=0.995)
        fig.tight_layout(rect=(0, 0, 1, 0.9))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, transparent=True)
        plt.close(fig)
    return path


def title(run: Run) -> str:
    """The figure's title: the delay and how many requests failed."""
    numbers = run.numbers()
    delay = f"shutdown delay {run.delay:g} s" if run.delay else "no shutdown delay"
    return (
        f"Rolling restart of 2 instances through HAProxy, {delay}: "
        f"{numbers['failed']} of {numbers['requests']} requests failed"
    )


def haproxy_version(binary: str) -> str:
    """``haproxy -v``'s first line, e.g. ``HAProxy version 2.6.12-1 2023/03/20``."""
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].strip() if out else "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs and the JSON go (docs/)")
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY, help="the delay of the first run, seconds")
    args = parser.parse_args(argv)
    binary = haproxy_binary()
    if binary is None:
        print("haproxy not found (Debian package 'haproxy')", file=sys.stderr)
        return 2
    document: dict[str, Any] = {"haproxy": haproxy_version(binary), "demo": "examples/node_demo (ASGI, uvicorn)"}
    for key, delay in (("delay", args.delay), ("no-delay", 0.0)):
        with tempfile.TemporaryDirectory(prefix="hp-fig-") as workdir:
            run = measure(delay, Path(workdir), binary)
        figure = draw(run, args.out / FIGURES[key], title(run))
        document[key] = {"figure": figure.name, **run.numbers()}
        print(f"{figure}: {title(run)}", file=sys.stderr)
    (args.out / NUMBERS).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
