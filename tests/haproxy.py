"""Zero request loss behind a real load balancer: a rolling restart through HAProxy.

HAProxy (Debian package ``haproxy``) listens on a loopback port in front of two instances of
a test app, ``a`` and ``b``, health-checking each with ``GET /readyz`` every 200 ms (``fall 2
rise 1``), with ``retries 0`` and without ``option redispatch``, so that HAProxy answers a
request it could not deliver with its own 502, 503 or 504 instead of hiding the failure.
Several keep-alive HTTP clients send requests through it continuously (one in ten is a
0.5 s one), and for ASGI apps two clients run WebSocket sessions of about 1.75 s back to
back. Meanwhile each instance in turn gets SIGTERM, exits, starts again on the same port and
waits until HAProxy has it UP, as a rolling update of a Deployment does. Both WebSocket
clients open their next session just after each SIGTERM, one on each instance, so that a
session is open on the stopping instance when its delay ends.

HAProxy and the load generator are :mod:`benchmarks.haproxy_run`'s, shared with the shutdown
timeline figures of the docs (``make docs-figures``).

:func:`rollout` runs one row of :data:`ROWS` (or :data:`CONTROL`) and returns a
:class:`Rollout`; :func:`problems` lists what a row owes and did not deliver.
``python -m tests.haproxy [ROW ...]`` runs rows and prints a markdown table of the figures.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
from benchmarks.haproxy_run import SLOW, TIMEOUT, HAProxy, Load, Outcome, Session, haproxy_binary

from .launch_paths import rows as launch_path_rows
from .support import INSTALLED, PYTHON, ServerProcess, free_port

#: Seconds: the coordinator's delay, long enough for HAProxy's ``fall 2`` at 200 ms plus
#: the time of a check to mark a draining instance DOWN.
DELAY = 1.5
#: Seconds: the drain bound, far above the stop bound, so that a stop that waits for it fails.
DRAIN = 10.0
HOOK_TIMEOUT = 1.0
#: Seconds taken by the apps' hooks once ``cleanup_hang`` is left out (``cleanup_sleep``).
HOOKS = 0.5
#: Seconds a stop may take beyond delay + longest request + hooks.
SLACK = 1.0
ENV = {
    "HP_DELAY": str(DELAY),
    "HP_DRAIN": str(DRAIN),
    "HP_HOOK_TIMEOUT": str(HOOK_TIMEOUT),
    "HP_NO_HANG_HOOK": "1",
}
WS_CLIENTS = 2

#: Requests completed before the first SIGTERM, and after the last instance is UP again.
SETTLE = 40
#: The fewest requests and WebSocket sessions a row must complete to mean anything.
MIN_REQUESTS = 200
MIN_WS_SESSIONS = 6
#: The fewest requests that must start between each SIGTERM and that instance's exit.
MIN_DURING_STOP = 20


def stop_bound(delay: float = DELAY) -> float:
    """Seconds from SIGTERM to exit that a graceful stop may take: the delay, the longest
    request, the hooks and :data:`SLACK`. Far below ``delay + DRAIN``."""
    return delay + SLOW + HOOKS + SLACK


@dataclass(frozen=True)
class Row:
    """How to start one instance of an app (``command(port)`` and ``env`` over :data:`ENV`),
    whether it serves WebSockets, and when it is ready: once HAProxy has it UP and, when
    ``ready`` is set, once ``ready`` is logged ``workers`` times. ``graceful`` is false for a
    control row, which must lose requests. ``latency``: seconds the signalled process may take
    to pass the signal on to its workers (uvicorn's own supervisor reads it every 0.5 s).
    ``linger``: seconds the server itself keeps idle keep-alive connections open once it stops
    accepting, for a request a client may be sending on one (gunicorn's ``gthread`` worker:
    its ``keepalive``, 2 s by default)."""

    command: Callable[[int], list[str]]
    websockets: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    workers: int = 1
    ready: str | None = None
    graceful: bool = True
    latency: float = 0.0
    linger: float = 0.0

    @property
    def delay(self) -> float:
        """The coordinator's delay of this row, in seconds."""
        return float({**ENV, **self.env}["HP_DELAY"])


def _asgi(mode: str) -> Callable[[int], list[str]]:
    return lambda port: [PYTHON, "-m", "tests.apps.shutdown_asgi", mode, str(port)]


def _gunicorn(worker_class: str, app: str, *extra: str) -> Callable[[int], list[str]]:
    return lambda port: [
        *(PYTHON, "-m", "gunicorn", "-c", "python:healthprobe.servers.gunicorn"),
        *("--workers", "2", "--worker-class", worker_class, "--graceful-timeout", "15", *extra),
        *("--bind", f"127.0.0.1:{port}", app),
    ]


#: The demo's own settings (examples/node_demo/README.md) with the rows' timings; each
#: instance gets its port and a healthy file of its own (``{port}`` is filled in).
DEMO_ENV = {
    "HOST": "127.0.0.1",
    "PORT": "{port}",
    "HEALTHY_FILE": str(Path(tempfile.gettempdir()) / "healthprobe-haproxy-{port}" / "healthy"),
    "SHUTDOWN_DELAY": ENV["HP_DELAY"],
    "DRAIN_TIMEOUT": ENV["HP_DRAIN"],
    "HOOK_TIMEOUT": ENV["HP_HOOK_TIMEOUT"],
}


def _uvicorn_cli(*extra: str) -> Callable[[int], list[str]]:
    return lambda port: [
        *(PYTHON, "-m", "uvicorn", "tests.apps.shutdown_asgi:app"),
        *("--port", str(port), "--host", "127.0.0.1", "--ws", "wsproto", *extra),
    ]


#: gunicorn's ``keepalive`` default, in seconds: how long a stopping ``gthread`` worker keeps
#: the idle keep-alive connections of a proxy open (gunicorn/workers/gthread.py).
GTHREAD_LINGER = 2.0


def _launch_paths() -> dict[str, Row]:
    """Every ``graceful`` row of the launch-path table (tests/launch_paths.py)."""
    return {
        path.name: Row(
            path.command,
            websockets=path.websockets,
            workers=path.workers,
            ready=INSTALLED,
            latency=path.latency,
            linger=GTHREAD_LINGER if "gthread" in path.command(0) else 0.0,
        )
        for path in launch_path_rows("graceful")
    }


ROWS: dict[str, Row] = {
    "uvicorn-programmatic": Row(_asgi("uvicorn"), websockets=True),
    "uvicorn-installed-first": Row(_asgi("uvicorn-plain"), websockets=True),
    "uvicorn-cli": Row(_uvicorn_cli(), websockets=True),
    # uvicorn's own supervisor reads its signal queue every 0.5 s.
    "uvicorn-cli-workers": Row(
        _uvicorn_cli("--workers", "2"), websockets=True, workers=2, ready=INSTALLED, latency=0.5
    ),
    "uvicorn-workers": Row(_asgi("uvicorn-workers"), websockets=True, workers=2, ready=INSTALLED),
    "gunicorn-sync-config": Row(_gunicorn("sync", "tests.apps.shutdown_wsgi:app"), workers=2, ready=INSTALLED),
    "gunicorn-gthread-config": Row(
        _gunicorn("gthread", "tests.apps.shutdown_wsgi:app", "--threads", "4"),
        workers=2,
        ready=INSTALLED,
        linger=GTHREAD_LINGER,
    ),
    "gunicorn-uvicorn-worker-config": Row(
        _gunicorn("uvicorn_worker.UvicornWorker", "tests.apps.shutdown_asgi:app"),
        websockets=True,
        workers=2,
        ready=INSTALLED,
    ),
    "werkzeug": Row(lambda port: [PYTHON, "-m", "tests.apps.shutdown_wsgi", str(port)]),
    "hypercorn-programmatic": Row(_asgi("hypercorn"), websockets=True),
    # The seed server's rewrite, both flavours, as a user runs it (make demo, make demo-wsgi).
    "node-demo-asgi": Row(lambda port: [PYTHON, "-m", "examples.node_demo.asgi_app"], env=DEMO_ENV),
    "node-demo-wsgi": Row(lambda port: [PYTHON, "-m", "examples.node_demo.wsgi_app"], env=DEMO_ENV),
    **_launch_paths(),
}

#: Rows that must lose requests, proving that the test can fail: no delay, so the instance
#: stops accepting while HAProxy still routes to it.
CONTROL: dict[str, Row] = {
    "uvicorn-programmatic-delay-0": replace(ROWS["uvicorn-programmatic"], env={"HP_DELAY": "0"}, graceful=False),
}


# -- the rolling restart ----------------------------------------------------------------------


@dataclass
class Stop:
    """One instance's stop: its exit code (``None`` when it did not exit and was killed),
    seconds from SIGTERM to exit, seconds from SIGTERM until HAProxy had it DOWN, and how
    many requests started between SIGTERM and exit. ``signalled`` is a ``time.time()``."""

    instance: str
    code: int | None
    seconds: float
    down_after: float | None
    signalled: float
    requests: int = 0


@dataclass
class Rollout:
    """The figures of one rolling restart through HAProxy."""

    row: str
    requests: int
    failed: int
    ws_sessions: int
    ws_failed: int
    stops: list[Stop]
    seconds: float
    #: WebSocket sessions still open on an instance when its delay ended, which a graceful
    #: stop must let finish: 0 means this run did not put that to the test.
    ws_across: int = 0
    #: Up to ten failed requests and sessions, then the timeline, HAProxy's log and the
    #: stopped instances' shutdown lines: what a failure message shows.
    details: str = ""

    def summary(self) -> str:
        """One line: the row, its requests, WebSocket sessions and each stop."""
        stops = ", ".join(
            f"{s.instance}: exit {s.code} in {s.seconds:.2f} s (DOWN after {_seconds(s.down_after)})"
            for s in self.stops
        )
        return (
            f"{self.row}: {self.requests} requests, {self.failed} failed; {self.ws_sessions} WebSocket "
            f"sessions, {self.ws_failed} failed, {self.ws_across} open at a delay's end; stops {stops}; "
            f"{self.seconds:.1f} s"
        )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def problems(result: Rollout, row: Row) -> list[str]:
    """What ``result`` owes as a ``row`` and did not deliver, one sentence each (empty: it
    passed). A graceful row: no failed request or WebSocket session, exit code 0 and a stop
    within :func:`stop_bound` for every instance, and enough traffic to mean anything.
    A control row: failed requests."""
    found = []
    if result.requests < MIN_REQUESTS:
        found.append(f"only {result.requests} requests (at least {MIN_REQUESTS})")
    if row.websockets and result.ws_sessions < MIN_WS_SESSIONS:
        found.append(f"only {result.ws_sessions} WebSocket sessions (at least {MIN_WS_SESSIONS})")
    for stop in result.stops:
        if stop.requests < MIN_DURING_STOP:
            found.append(f"{stop.instance}: only {stop.requests} requests during its stop (at least {MIN_DURING_STOP})")
    if not row.graceful:
        if result.failed == 0:
            found.append("no failed request without a delay: the test cannot tell a graceful stop from another")
        return found
    if row.websockets and result.ws_across < len(result.stops):
        found.append(f"only {result.ws_across} WebSocket sessions open at a delay's end (one per stop)")
    if result.failed:
        found.append(f"{result.failed} of {result.requests} requests failed")
    if result.ws_failed:
        found.append(f"{result.ws_failed} of {result.ws_sessions} WebSocket sessions failed")
    bound = stop_bound(row.delay) + row.latency + row.linger
    for stop in result.stops:
        if stop.code != 0:
            found.append(f"{stop.instance}: exit code {stop.code}")
        if stop.seconds > bound:
            found.append(f"{stop.instance}: stopped in {stop.seconds:.2f} s, above the bound of {bound:.2f} s")
    return found


class _Instances:
    """The app's instances, by name; every process started is killed at the end."""

    def __init__(self, row: Row, workdir: Path) -> None:
        self.row = row
        self.workdir = workdir
        self.env = {**ENV, **row.env}
        self.ports = {name: free_port() for name in ("a", "b")}
        self.current: dict[str, ServerProcess] = {}
        self.started: list[ServerProcess] = []

    def start(self, name: str) -> ServerProcess:
        index = sum(1 for s in self.started if s.port == self.ports[name]) + 1
        port = self.ports[name]
        server = ServerProcess(
            self.row.command(port),
            port,
            env={key: value.format(port=port) for key, value in self.env.items()},
            log=self.workdir / f"{name}-{index}.log",
        )
        self.current[name] = server
        self.started.append(server)
        return server

    def wait_logged(self, server: ServerProcess, timeout: float = 30.0) -> None:
        """Wait until ``server`` logged its ``ready`` line once per worker (if the row has one)."""
        if self.row.ready is not None:
            server.wait_for_output(self.row.ready, self.row.workers, timeout)

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


def rollout(name: str, row: Row, workdir: Path, haproxy: str) -> Rollout:
    """Run the rolling restart of ``row`` through the HAProxy binary ``haproxy``, with logs and
    configuration in ``workdir``; returns its figures. Every process is killed at the end."""
    began = time.time()
    instances = _Instances(row, workdir)
    balancer: HAProxy | None = None
    load: Load | None = None
    events: list[tuple[float, str]] = []
    stops: list[Stop] = []
    try:
        for instance in ("a", "b"):
            instances.start(instance)
        for server in instances.current.values():
            server.wait_ready(30.0)
        balancer = HAProxy(haproxy, instances.ports, workdir)
        for instance, server in instances.current.items():
            instances.wait_logged(server)
            balancer.wait_state(instance, "UP", 30.0, check="L7OK")
        load = Load(balancer.url, ws_clients=WS_CLIENTS if row.websockets else 0)
        load.start()
        load.wait_requests(SETTLE)
        for instance in ("a", "b"):
            stops.append(_restart(instance, instances, balancer, load, events))
        load.wait_requests(SETTLE)
    finally:
        if load is not None:
            events.append((time.time(), "load: stopping"))
            load.stop()
            events.append((time.time(), "load: stopped"))
        instances.stop_all()
        if balancer is not None:
            balancer.stop()
    requests = load.requests if load else []
    sessions = load.sessions if load else []
    failed = [r for r in requests if r.error is not None]
    ws_failed = [s for s in sessions if s.error is not None]
    for stop in stops:
        exited = stop.signalled + stop.seconds
        stop.requests = sum(1 for r in requests if stop.signalled <= r.start < exited)
    across = sum(
        1
        for stop in stops
        for s in sessions
        if s.server == stop.instance and s.start < stop.signalled + row.delay < s.end
    )
    result = Rollout(
        name, len(requests), len(failed), len(sessions), len(ws_failed), stops, time.time() - began, across
    )
    result.details = _details(failed, ws_failed, events, balancer, instances, began)
    return result


def _restart(
    instance: str, instances: _Instances, balancer: HAProxy, load: Load, events: list[tuple[float, str]]
) -> Stop:
    """SIGTERM ``instance``'s process (the one Kubernetes signals), wait for it to exit, wait
    until HAProxy has it DOWN, start it again on its port and wait until HAProxy has it UP.
    The WebSocket sessions of ``load`` are held before the signal and all start just after it."""
    server = instances.current[instance]
    limit = instances.row.delay + DRAIN + HOOK_TIMEOUT * 2 + 10.0
    if load.ws_clients:
        load.hold_sessions()
    signalled = time.time()
    server.signal(signal.SIGTERM)
    # Sessions open while HAProxy still routes to the instance: with two clients, one of
    # them is on it (the ws backend's round robin), and still open when the delay ends.
    load.release_sessions()
    events.append((signalled, f"{instance}: SIGTERM"))
    try:
        code: int | None = server.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        code = None
    exited = time.time()
    events.append((exited, f"{instance}: exited with {code}" if code is not None else f"{instance}: killed"))
    server.stop()
    balancer.wait_state(instance, "DOWN", 10.0)
    down = [at for at, name, status in balancer.changes if name == instance and status == "DOWN" and at >= signalled]
    restarted = instances.start(instance)
    events.append((time.time(), f"{instance}: started again"))
    instances.wait_logged(restarted)
    balancer.wait_state(instance, "UP", 30.0, check="L7OK")
    return Stop(instance, code, exited - signalled, down[0] - signalled if down else None, signalled)


def _details(
    failed: Sequence[Outcome],
    ws_failed: Sequence[Session],
    events: Sequence[tuple[float, str]],
    balancer: HAProxy | None,
    instances: _Instances,
    began: float,
) -> str:
    """Failures, the timeline, HAProxy's log and the shutdown lines, times from ``began``."""
    lines = [f"+{r.start - began:.2f} s {r.path}: {r.status} {r.error}" for r in failed[:10]]
    lines += [
        f"+{s.start - began:.2f} s to +{s.end - began:.2f} s WebSocket on {s.server}: {s.error}" for s in ws_failed[:10]
    ]
    timeline = sorted(
        [*events, *((at, f"{name}: {status}") for at, name, status in balancer.changes)] if balancer else events
    )
    lines.append("timeline:")
    lines += [f"  +{at - began:.2f} s {what}" for at, what in timeline]
    if balancer is not None:
        lines.append("haproxy log:")
        lines += ["  " + line for line in balancer.output().splitlines() if line.strip()][:30]
    for server in instances.started:
        log = server.log_path.read_text(errors="replace")
        shutdown = [line for line in log.splitlines() if "shutdown:" in line or "rror" in line]
        if shutdown:
            lines.append(f"{server.log_path.name}:")
            lines += ["  " + line for line in shutdown[:20]]
    return "\n".join(lines)


# -- out of rotation, and back -----------------------------------------------------------------


@dataclass(frozen=True)
class Switch:
    """How :func:`out_of_rotation` takes instance ``a`` out and brings it back: ``env`` for
    every instance (``{port}`` and ``{workdir}`` are filled in), and ``out`` and ``back``,
    called with ``a``'s port and the work directory."""

    name: str
    env: Mapping[str, str]
    out: Callable[[int, Path], None]
    back: Callable[[int, Path], None]


#: The disable file (``DISABLE_FILE``): created with a reason, then removed.
DISABLE_FILE = Switch(
    "disable file",
    {"DISABLE_FILE": "{workdir}/disabled-{port}"},
    lambda port, workdir: (workdir / f"disabled-{port}").write_text("rebalancing\n"),
    lambda port, workdir: (workdir / f"disabled-{port}").unlink(),
)


@dataclass
class RotationRun:
    """The figures of taking instance ``a`` out of rotation (by its disable file, or another
    :class:`Switch`) and back, under load through HAProxy: every request, the failed ones,
    seconds from taking it out until HAProxy had ``a`` DOWN and from bringing it back until
    UP, the requests HAProxy sent to ``a`` while it was DOWN, and those it sent to ``a`` once
    it was UP again."""

    row: str
    requests: int
    failed: int
    down_after: float
    up_after: float
    sent_while_out: int
    sent_after: int
    seconds: float
    details: str = ""

    def summary(self) -> str:
        return (
            f"{self.row} out of rotation and back: {self.requests} requests, {self.failed} failed; "
            f"DOWN {self.down_after:.2f} s after it was taken out, UP {self.up_after:.2f} s after it was back; "
            f"{self.sent_while_out} request(s) sent to it while out, {self.sent_after} after; {self.seconds:.1f} s"
        )


#: Requests completed while the instance is out of rotation, before it is brought back.
WHILE_OUT = 60


def out_of_rotation(name: str, row: Row, workdir: Path, haproxy: str, switch: Switch = DISABLE_FILE) -> RotationRun:
    """Start ``row``'s two instances behind HAProxy with ``switch``'s environment (by
    default a disable file each, ``DISABLE_FILE``), put them under load, take ``a`` out
    (create its file), wait until HAProxy has ``a`` DOWN, check that ``a`` still serves and
    lives, bring it back (remove the file) and wait until ``a`` is UP and served again. Every
    process is killed at the end."""
    began = time.time()
    env = {**row.env, **{key: value.replace("{workdir}", str(workdir)) for key, value in switch.env.items()}}
    instances = _Instances(replace(row, env=env), workdir)
    balancer: HAProxy | None = None
    load: Load | None = None
    events: list[tuple[float, str]] = []
    try:
        for instance in ("a", "b"):
            instances.start(instance)
        for server in instances.current.values():
            server.wait_ready(30.0)
        balancer = HAProxy(haproxy, instances.ports, workdir)
        for instance in ("a", "b"):
            balancer.wait_state(instance, "UP", 30.0, check="L7OK")
        load = Load(balancer.url)
        load.start()
        load.wait_requests(SETTLE)
        created = time.time()
        switch.out(instances.ports["a"], workdir)
        events.append((created, f"a: out by {switch.name}"))
        down = balancer.wait_state("a", "DOWN", 10.0) - created
        out_from = balancer.sessions("a")
        load.wait_requests(WHILE_OUT)
        server = instances.current["a"]
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=TIMEOUT, trust_env=False) as direct:
            readyz, livez, app = direct.get("/readyz?verbose"), direct.get("/livez"), direct.get("/")
        assert server.proc.poll() is None, "the instance stopped"
        assert (readyz.status_code, livez.status_code, app.status_code) == (503, 200, 200), (readyz.text, livez.text)
        assert "out of rotation: rebalancing" in readyz.text, readyz.text
        sent_while_out = balancer.sessions("a") - out_from
        removed = time.time()
        switch.back(instances.ports["a"], workdir)
        events.append((removed, f"a: back by {switch.name}"))
        up = balancer.wait_state("a", "UP", 10.0, check="L7OK") - removed
        back_from = balancer.sessions("a")
        load.wait_requests(SETTLE)
        sent_after = balancer.sessions("a") - back_from
    finally:
        if load is not None:
            load.stop()
        instances.stop_all()
        if balancer is not None:
            balancer.stop()
    requests = load.requests if load else []
    failed = [r for r in requests if r.error is not None]
    result = RotationRun(name, len(requests), len(failed), down, up, sent_while_out, sent_after, time.time() - began)
    result.details = _details(failed, [], events, balancer, instances, began)
    return result


# -- python -m tests.haproxy --------------------------------------------------------------------


def table(results: Sequence[tuple[Rollout, Row]]) -> str:
    """A markdown table of ``results``: requests, failures, WebSocket sessions, each stop,
    and what the row owed and did not deliver."""
    lines = [
        "| row | requests | failed | WebSocket sessions (failed; open at a delay's end) "
        "| stop a | stop b | DOWN in HAProxy after (a, b) | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result, row in results:
        stops = [f"{s.seconds:.2f} s, exit {s.code}" for s in result.stops] + ["-", "-"]
        down = ", ".join(_seconds(s.down_after) for s in result.stops) or "-"
        sessions = f"{result.ws_sessions} ({result.ws_failed}; {result.ws_across})" if row.websockets else "-"
        found = problems(result, row)
        verdict = "; ".join(found) if found else ("ok" if row.graceful else "fails, as a control must")
        lines.append(
            f"| {result.row} | {result.requests} | {result.failed} | {sessions} | {stops[0]} | {stops[1]} "
            f"| {down} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named rows (default: all, then the control) and print a markdown table."""
    every = {**ROWS, **CONTROL}
    parser = argparse.ArgumentParser(prog="python -m tests.haproxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="*", metavar="ROW", help="one of: " + ", ".join(every))
    parser.add_argument("-v", "--verbose", action="store_true", help="print each row's details")
    args = parser.parse_args(argv)
    unknown = [name for name in args.rows if name not in every]
    if unknown:
        parser.error(f"unknown row(s): {', '.join(unknown)}")
    binary = haproxy_binary()
    if binary is None:
        print("haproxy not found (Debian package 'haproxy')", file=sys.stderr)
        return 2
    results = []
    for name in args.rows or every:
        with tempfile.TemporaryDirectory(prefix="hp-") as workdir:
            result = rollout(name, every[name], Path(workdir), binary)
        print(result.summary(), file=sys.stderr)
        if args.verbose:
            print(result.details, file=sys.stderr)
        results.append((result, every[name]))
    print(table(results))
    return 0 if all(not problems(result, row) for result, row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
