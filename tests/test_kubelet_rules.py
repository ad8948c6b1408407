"""The simulator's rules, one test each, against real servers and processes on loopback.

Each test names the kubelet source line it follows (Kubernetes ``pkg/kubelet/prober/worker.go``,
``prober.go``, ``pkg/probe/http/http.go``, ``tcp/tcp.go``, ``exec/exec.go``, ``grpc/grpc.go``,
``pkg/kubelet/kuberuntime/kuberuntime_container.go``). Times are simulated seconds; a timing
is asserted within one period, never in wall-clock seconds.
"""

from __future__ import annotations

import itertools
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from healthprobe.kubelet import (
    KUBE_PROBE_USER_AGENT,
    MAX_BODY_BYTES,
    Container,
    ExecAction,
    HTTPGetAction,
    Outcome,
    Probe,
    Simulation,
    TCPSocketAction,
)

from .support import free_port, werkzeug_server

pytestmark = pytest.mark.slow


class Answers:
    """A WSGI app whose answer per path the test sets, recording the requests it saw."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.delays: dict[str, float] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()

    def set(self, path: str, status: int, body: bytes = b"", **headers: str) -> None:
        with self.lock:
            self.routes[path] = (status, headers, body)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self.lock:
            self.seen.append((request.path, dict(request.headers)))
            status, headers, body = self.routes.get(request.path, (404, {}, b"not found"))
            delay = self.delays.get(request.path, 0.0)
        if delay:
            time.sleep(delay)
        return Response(body, status, headers)(environ, start_response)


@pytest.fixture
def answers() -> Iterator[tuple[Answers, int]]:
    app = Answers()
    with werkzeug_server(app) as url:
        yield app, int(url.rsplit(":", 1)[1])


def http_probe(kind: str, path: str, port: int, **fields: Any) -> Probe:
    return Probe(kind, HTTPGetAction(port, path), **fields)


def simulate(*probes: Probe, duration: float, speed: float = 5.0, **options: Any) -> Outcome:
    container = Container("app", {probe.kind: probe for probe in probes}, **options.pop("container", {}))
    return Simulation(container, speed=speed, verbose=True, **options).run(duration=duration)


def probed(outcome: Outcome, kind: str) -> list[float]:
    return [event.t for event in outcome.of("Probed", kind)]


@pytest.mark.parametrize(("delay", "period", "first"), [(0, 5, 0), (3, 5, 5), (5, 5, 5), (6, 5, 10), (12, 4, 12)])
def test_first_probe_is_the_first_tick_at_or_after_the_initial_delay(
    answers: tuple[Answers, int], delay: int, period: int, first: int
) -> None:
    """worker.go ``run``: one probe when the worker starts, then one per ``probeTicker`` tick
    (``periodSeconds``); ``doProbe``: ``if int32(time.Since(c.State.Running.StartedAt.Time)
    .Seconds()) < w.spec.InitialDelaySeconds { return true }``: a tick before the delay is
    skipped, so the first probe waits for the next tick, not for the delay."""
    app, port = answers
    app.set("/ready", 200)
    probe = http_probe("readiness", "/ready", port, initial_delay_seconds=delay, period_seconds=period)
    outcome = simulate(probe, duration=first + period - 0.5, speed=20)
    times = probed(outcome, "readiness")
    assert times, outcome.events
    assert first <= times[0] < first + 1, times
    assert all(b - a >= period - 1 for a, b in itertools.pairwise(times)), times
    assert outcome.of("Ready")[0].t == pytest.approx(times[0], abs=1)


def test_a_probe_slower_than_its_period_drops_ticks(answers: tuple[Answers, int]) -> None:
    """worker.go ``run``: one worker probes one at a time, waiting on ``probeTicker.C``, a Go
    ``time.Ticker`` whose channel holds one tick: after a probe longer than the period the
    next one starts at once and the other missed ticks are dropped (never two at a time)."""
    app, port = answers
    app.set("/slow", 200)
    app.delays["/slow"] = 0.3  # 3 simulated seconds at speed 10
    probe = http_probe("readiness", "/slow", port, period_seconds=1, timeout_seconds=5)
    outcome = simulate(probe, duration=10, speed=10)
    times = probed(outcome, "readiness")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 2 <= len(times) <= 4, times  # one per 3 s, not one per period
    assert all(2.9 <= gap < 4.5 for gap in gaps), gaps
    assert 0 <= len(app.seen) - len(times) <= 1  # one may still be running when the run ends


def test_a_redirect_to_another_host_passes_with_a_warning(answers: tuple[Answers, int]) -> None:
    """http.go ``RedirectChecker(false)``: a redirect to another host is not followed
    (``http.ErrUseLastResponse``); ``DoHTTPProbe``: a 3xx then is ``probe.Warning``, "Probe
    terminated redirects, Response body: ..."; prober.go: a warning is a success with a
    ``ProbeWarning`` event."""
    app, port = answers
    app.set("/moved", 302, b"moved away", Location=f"http://localhost:{port}/elsewhere")
    app.set("/elsewhere", 500)
    outcome = simulate(http_probe("readiness", "/moved", port, period_seconds=1), duration=2.5)
    warnings = outcome.of("ProbeWarning", "readiness")
    assert warnings, outcome.events
    assert warnings[0].message == "Readiness probe warning: Probe terminated redirects, Response body: moved away"
    assert warnings[0].type == "Warning"
    assert outcome.of("Ready") and not outcome.of("Unhealthy")
    assert all(path == "/moved" for path, _ in app.seen)  # localhost is another host than 127.0.0.1


def test_a_redirect_to_the_same_host_is_followed(answers: tuple[Answers, int]) -> None:
    """http.go ``RedirectChecker``: same hostname (``req.URL.Hostname() == via[0].URL
    .Hostname()``, the port may differ): followed, and the last answer decides; after 10
    redirects, "stopped after 10 redirects" (a failure: ``DoHTTPProbe`` turns a client
    error into ``probe.Failure``)."""
    app, port = answers
    app.set("/old", 301, Location="/new")
    app.set("/new", 503)
    app.set("/loop", 302, Location="/loop")
    outcome = simulate(
        http_probe("readiness", "/old", port, period_seconds=1),
        http_probe("liveness", "/loop", port, period_seconds=1, failure_threshold=5),
        duration=1.5,
    )
    readiness = outcome.of("Unhealthy", "readiness")
    assert readiness and readiness[0].message == "Readiness probe failed: HTTP probe failed with statuscode: 503"
    liveness = outcome.of("Unhealthy", "liveness")
    assert liveness, outcome.events
    assert (
        liveness[0].message == f'Liveness probe failed: Get "http://127.0.0.1:{port}/loop": stopped after 10 redirects'
    )
    assert sum(1 for path, _ in app.seen if path == "/loop") >= 11


def test_at_most_10_kib_of_a_body_is_read(answers: tuple[Answers, int]) -> None:
    """http.go: ``utilio.ReadAtMost(res.Body, maxRespBodyLength)`` with ``maxRespBodyLength =
    10 * 1 << 10``; a longer body is truncated, not an error."""
    app, port = answers
    app.set("/big", 302, b"x" * (MAX_BODY_BYTES * 2) + b"END", Location="http://localhost/")
    app.set("/huge", 200, b"y" * (4 * 1024 * 1024))
    outcome = simulate(
        http_probe("readiness", "/big", port, period_seconds=1),
        http_probe("liveness", "/huge", port, period_seconds=1),
        duration=1.5,
    )
    warning = outcome.of("ProbeWarning")[0].message
    assert warning.endswith("Response body: " + "x" * MAX_BODY_BYTES)
    assert [event.result for event in outcome.of("Probed", "liveness")] == ["success", "success"]


def test_request_headers_are_the_kubelets(answers: tuple[Answers, int]) -> None:
    """request.go ``NewProbeRequest``: ``User-Agent: kube-probe/<major>.<minor>`` and ``Accept:
    */*`` unless ``httpHeaders`` sets them; a ``Host`` header replaces the request's host."""
    app, port = answers
    app.set("/a", 200)
    app.set("/b", 200)
    headers = (("Custom-Header", "Awesome"), ("Host", "pod.example"), ("Accept", "text/plain"))
    probes = (
        http_probe("readiness", "/a", port, period_seconds=5),
        Probe("liveness", HTTPGetAction(port, "/b", headers=headers), period_seconds=5),
    )
    simulate(*probes, duration=1)
    seen = dict(app.seen)
    assert seen["/a"]["User-Agent"] == KUBE_PROBE_USER_AGENT and seen["/a"]["Accept"] == "*/*"
    assert seen["/a"]["Connection"] == "close"  # the kubelet's transport has DisableKeepAlives
    assert seen["/b"]["Custom-Header"] == "Awesome"
    assert seen["/b"]["Host"] == "pod.example" and seen["/b"]["Accept"] == "text/plain"


def test_a_timeout_and_a_refused_connection_are_failures(answers: tuple[Answers, int]) -> None:
    """http.go ``DoHTTPProbe``: "Convert errors into failures to catch timeouts": both count
    toward ``failureThreshold`` (``failureThreshold: 1`` kills at the first, with
    kuberuntime_manager.go's message "Container NAME failed liveness probe, will be
    restarted")."""
    app, port = answers
    app.set("/slow", 200)
    app.delays["/slow"] = 3.0
    closed = free_port()
    outcome = simulate(
        http_probe("liveness", "/slow", port, period_seconds=10, failure_threshold=1),
        duration=5,
        speed=1,
    )
    assert outcome.killed
    assert outcome.of("Unhealthy")[0].message == (
        f'Liveness probe failed: Get "http://127.0.0.1:{port}/slow": '
        "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    )
    outcome = simulate(http_probe("liveness", "/", closed, period_seconds=10, failure_threshold=1), duration=5)
    assert outcome.killed
    assert outcome.of("Unhealthy")[0].message == (
        f'Liveness probe failed: Get "http://127.0.0.1:{closed}/": '
        f"dial tcp 127.0.0.1:{closed}: connect: connection refused"
    )
    killing = outcome.of("Killing")[0]
    assert killing.message == "Container app failed liveness probe, will be restarted"


def test_readiness_needs_success_threshold_successes_in_a_row(answers: tuple[Answers, int]) -> None:
    """worker.go ``doProbe``: ``if w.lastResult == result { w.resultRun++ } else { ...
    w.resultRun = 1 }``; a success counts once ``resultRun >= SuccessThreshold``."""
    app, port = answers
    app.set("/ready", 200)
    outcome = simulate(http_probe("readiness", "/ready", port, period_seconds=1, success_threshold=3), duration=3.5)
    ready = outcome.of("Ready")
    assert len(ready) == 1, outcome.events
    times = probed(outcome, "readiness")
    assert ready[0].t >= times[2] and ready[0].t < times[2] + 1


def test_failures_below_the_threshold_change_nothing(answers: tuple[Answers, int]) -> None:
    """worker.go ``doProbe``: ``result == results.Failure && w.resultRun < FailureThreshold``
    leaves the state unchanged; every failed probe is an ``Unhealthy`` event (prober.go)."""
    app, port = answers
    app.set("/ready", 200)
    sim = Simulation(
        Container("app", {"readiness": http_probe("readiness", "/ready", port, period_seconds=1, failure_threshold=3)}),
        speed=10,
        verbose=True,
    ).start(duration=12)
    sim.wait_for("Ready", timeout=10)
    app.set("/ready", 503)
    first = sim.wait_for("Unhealthy", timeout=10)
    not_ready = sim.wait_for("NotReady", timeout=10)
    outcome = sim.wait(30)
    unhealthy = [e for e in outcome.of("Unhealthy") if e.t <= not_ready.t]
    assert len(unhealthy) == 3
    assert 1 <= not_ready.t - first.t < 3  # the third failure, two periods after the first


def test_startup_gates_the_other_probes_and_stops_once_passed(answers: tuple[Answers, int]) -> None:
    """worker.go ``doProbe``: until ``c.Started``, "Disable other probes until container has
    started"; once started, "Stop probing for startup once container has started"."""
    app, port = answers
    app.set("/startup", 503)
    app.set("/ready", 200)
    app.set("/live", 200)
    probes = {
        "startup": http_probe("startup", "/startup", port, period_seconds=1, failure_threshold=30),
        "readiness": http_probe("readiness", "/ready", port, period_seconds=1, failure_threshold=1),
        "liveness": http_probe("liveness", "/live", port, period_seconds=1),
    }
    sim = Simulation(Container("app", probes), speed=10, verbose=True).start(duration=9)
    sim.wait_for("Unhealthy", probe="startup", timeout=10)
    time.sleep(0.3)
    app.set("/startup", 200)
    started = sim.wait_for("StartupSucceeded", timeout=10)
    outcome = sim.wait(30)
    assert not any(
        e.t < started.t for e in outcome.events if e.probe in ("readiness", "liveness") and e.event == "Probed"
    )
    assert max(probed(outcome, "startup")) <= started.t
    # The other workers tick on their own: their first probe comes within a period.
    assert min(probed(outcome, "liveness")) < started.t + 1.5
    assert outcome.of("Ready")[0].t < started.t + 1.5


def test_an_exec_probe_fails_on_a_nonzero_exit_and_errors_when_it_cannot_run(tmp_path: Path) -> None:
    """exec.go: exit status 0 is success, another is ``probe.Failure`` with the output; a
    command that cannot start is an error: prober.go retries it ``maxProbeRetries`` (3) times,
    records "probe errored", and worker.go throws the result away ("Prober error, throw away
    the result"), so it never counts toward ``failureThreshold``."""
    marker = tmp_path / "healthy"
    marker.write_text("ok")
    probes = {
        "liveness": Probe("liveness", ExecAction(("cat", str(marker))), period_seconds=1, failure_threshold=2),
        "readiness": Probe("readiness", ExecAction((str(tmp_path / "no-such-command"),)), period_seconds=1),
    }
    sim = Simulation(Container("app", probes), speed=10, verbose=True).start(duration=30)
    sim.wait_for("Probed", probe="liveness", timeout=10)
    marker.unlink()
    killing = sim.wait_for("Killing", timeout=10)
    outcome = sim.wait(30)
    failed = outcome.of("Unhealthy", "liveness")
    assert len(failed) == 2 and killing.t - failed[0].t < 2
    assert f"cat: {marker}: No such file or directory" in failed[0].message
    errored = outcome.of("Unhealthy", "readiness")
    assert errored and errored[0].result == "error"
    assert errored[0].message.startswith("Readiness probe errored and resulted in unknown state: ")
    assert not outcome.of("Ready") and not outcome.of("NotReady")  # never counted either way


def test_an_exec_probe_times_out(tmp_path: Path) -> None:
    """exec.go: with ExecProbeTimeout (GA since 1.20), a command that outlives
    ``timeoutSeconds`` fails with the timeout's message."""
    probe = Probe("liveness", ExecAction(("sleep", "5")), period_seconds=10, failure_threshold=1)
    outcome = simulate(probe, duration=3, speed=1)
    assert outcome.of("Unhealthy")[0].message == 'Liveness probe failed: command "sleep 5" timed out'
    assert outcome.killed


def test_tcp_socket_passes_when_it_connects() -> None:
    """tcp.go ``DoTCPProbe``: success if the dial succeeds; else the dial error, a failure."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        open_port = listener.getsockname()[1]
        closed = free_port()
        passing = simulate(Probe("readiness", TCPSocketAction(open_port), period_seconds=1), duration=1.5)
    # Alone: its Killing ends the simulation, which must not cut the other probe short.
    failing = simulate(Probe("liveness", TCPSocketAction(closed), period_seconds=1, failure_threshold=1), duration=1.5)
    assert passing.of("Ready") and not passing.of("Unhealthy")
    assert failing.of("Unhealthy", "liveness")[0].message == (
        f"Liveness probe failed: dial tcp 127.0.0.1:{closed}: connect: connection refused"
    )


def test_grpc_only_serving_passes() -> None:
    """grpc.go: ``resp.GetStatus() != HealthCheckResponse_SERVING`` fails with "service
    unhealthy (responded with ...)"; ``SERVING`` is "service healthy"."""
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from healthprobe.kubelet import GRPCAction

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        outcome = simulate(
            Probe("readiness", GRPCAction(port), period_seconds=1),
            Probe("liveness", GRPCAction(port, "db"), period_seconds=1, failure_threshold=5),
            duration=1.5,
        )
    finally:
        server.stop(None)
    assert outcome.of("Ready")
    assert outcome.of("Unhealthy", "liveness")[0].message == (
        'Liveness probe failed: service unhealthy (responded with "NOT_SERVING")'
    )


#: A process that answers /ready and /live, fails /ready once it gets SIGTERM, and exits
#: after DRAIN seconds (or never, with DRAIN=-1).
SERVER = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    stopping = threading.Event()
    drain = float(os.environ["DRAIN"])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            code = 503 if self.path == "/ready" and stopping.is_set() else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)

    def on_term(signum, frame):
        stopping.set()
        if drain >= 0:
            threading.Timer(drain, server.shutdown).start()

    signal.signal(signal.SIGTERM, on_term)
    server.serve_forever()
    """
)


def served(tmp_path: Path, drain: float, **container: Any) -> tuple[Simulation, int]:
    port = free_port()
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    probes = {
        "readiness": http_probe("readiness", "/ready", port, period_seconds=1, failure_threshold=1),
        "liveness": http_probe("liveness", "/live", port, period_seconds=1),
    }
    sim = Simulation(
        Container("app", probes, **container),
        cmd=[sys.executable, str(script)],
        env={"PORT": str(port), "DRAIN": str(drain)},
        speed=4,
        verbose=True,
        output=-3,  # subprocess.DEVNULL
    )
    return sim, port


def test_during_termination_readiness_goes_on_and_liveness_stops(tmp_path: Path) -> None:
    """worker.go ``doProbe``: once the pod has a ``DeletionTimestamp``, liveness and startup
    workers stop ("Stop probing at this point"); readiness probes go on until the container
    exits, so a process that fails readiness at SIGTERM is seen not ready while it drains."""
    sim, _ = served(tmp_path, drain=2.0, termination_grace_period_seconds=30)
    outcome = sim.run(terminate_at=2.5)  # between two ticks
    assert outcome.terminated_at is not None and outcome.exited_in_time and outcome.exit_code == 0
    deleted = outcome.terminated_at
    assert not [t for t in probed(outcome, "liveness") if t > deleted + 0.5]
    during = [e for e in outcome.of("Probed", "readiness") if e.t > deleted]
    assert during and during[0].result == "failure"
    assert outcome.of("NotReady")[0].t < deleted + 1.5
    assert outcome.of("Summary")[0].result == "success"
    signalled = outcome.of("Signalled")[0]
    assert signalled.t == pytest.approx(deleted, abs=0.5)


def test_sigkill_at_the_end_of_the_grace_period_and_prestop_first(tmp_path: Path) -> None:
    """kuberuntime_container.go ``killContainer``: the ``preStop`` hook runs first, inside the
    grace period (``terminationGracePeriodSeconds``, counted from the deletion); SIGTERM, then
    SIGKILL when the grace period ends (at least ``minimumGracePeriodInSeconds``, 2 s, after
    the hook)."""
    from healthprobe.kubelet import SleepAction

    sim, _ = served(tmp_path, drain=-1, termination_grace_period_seconds=6, pre_stop=SleepAction(3))
    outcome = sim.run(terminate_at=2.5)
    assert outcome.exited_in_time is False and not outcome.ok
    assert outcome.terminated_at is not None
    signalled = outcome.of("Signalled")[0]
    assert 3 <= signalled.t - outcome.terminated_at < 4  # after the 3 s preStop sleep
    exited = outcome.of("Exited")[0]
    assert "killed (SIGKILL)" in exited.message
    assert 6 <= exited.t - outcome.terminated_at < 7.5


def test_a_restarted_container_is_probed_again_after_the_back_off(tmp_path: Path) -> None:
    """worker.go: after ``Killing`` the worker is ``onHold`` "until there is a new container";
    a new container ID resumes it. The kubelet restarts the first time at once, then after a
    back-off of 10 s doubling (``backOffPeriod``, pkg/kubelet/kubelet.go)."""
    probe = Probe(
        "liveness", ExecAction(("test", "-e", str(tmp_path / "never"))), period_seconds=1, failure_threshold=1
    )
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    outcome = Simulation(
        Container("app", {"liveness": probe}, termination_grace_period_seconds=1),
        cmd=sleep,
        restart_cmd=sleep,
        speed=10,
        verbose=True,
    ).run(duration=16)
    kinds = [e.event for e in outcome.events if e.event in ("Started", "Killing", "BackOff")]
    assert kinds[:6] == ["Started", "Killing", "Started", "Killing", "BackOff", "Started"], kinds
    started = outcome.of("Started")
    backoff = outcome.of("BackOff")[0]
    assert backoff.message == "Back-off 10s restarting failed container=app"
    assert 10 <= started[2].t - backoff.t < 11


def test_readiness_probes_at_once_when_startup_passes(answers: tuple[Answers, int]) -> None:
    """prober_manager.go ``UpdatePodStatus``: a changed probe result syncs the pod, and a sync
    of a started container that is not ready "Trigger[s] an immediate run of the
    readinessProbe": Ready comes with the startup result, not a readiness period later."""
    app, port = answers
    app.set("/startup", 200)
    app.set("/ready", 200)
    probes = (
        http_probe("startup", "/startup", port, initial_delay_seconds=2, period_seconds=1),
        http_probe("readiness", "/ready", port, period_seconds=10),
    )
    outcome = simulate(*probes, duration=6)
    started = outcome.of("StartupSucceeded")[0]
    ready = outcome.of("Ready")[0]
    assert 2 <= started.t < 3
    assert ready.t - started.t < 0.5  # its next tick would be at 10 s


def test_a_body_that_outlasts_the_timeout_is_an_error(answers: tuple[Answers, int]) -> None:
    """http.go: ``http.Client{Timeout}`` bounds the whole exchange, body included; a body read
    that fails is returned as an error, which prober.go records as "errored" and worker.go
    throws away: it neither passes nor counts toward ``failureThreshold``."""
    app, port = answers

    def trickle(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Iterator[bytes]:
            for _ in range(40):
                time.sleep(0.1)
                yield b"."

        return body()

    with werkzeug_server(trickle) as url:
        slow = int(url.rsplit(":", 1)[1])
        began = time.monotonic()
        outcome = simulate(
            http_probe("liveness", "/", slow, period_seconds=10, failure_threshold=1), duration=3.5, speed=1
        )
        took = time.monotonic() - began
    errored = outcome.of("Unhealthy", "liveness")
    assert errored and errored[0].result == "error", outcome.events
    assert errored[0].message == (
        "Liveness probe errored and resulted in unknown state: "
        "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
    )
    assert not outcome.killed
    assert took < 5  # three tries of at most a second each, not 4 s of trickle each
    del app, port


def test_prestop_failures_are_the_kubelets(tmp_path: Path, answers: tuple[Answers, int]) -> None:
    """handlers.go ``runHTTPHandler``: an httpGet hook fails only when no answer comes (a 404
    is fine); ``executePreStopHook`` (kuberuntime_container.go) records "PreStopHook failed"
    without the hook's output, "so that secrets won't leak"."""
    app, port = answers
    app.set("/stop", 404)
    closed = free_port()
    for hook, fails in (
        (HTTPGetAction(port, "/stop"), False),
        (HTTPGetAction(closed, "/stop"), True),
        (ExecAction(("sh", "-c", "echo secret-token; exit 1")), True),
        (TCPSocketAction(port), True),
    ):
        sim, _ = served(tmp_path, drain=0.0, pre_stop=hook)
        outcome = sim.run(terminate_at=1.5)
        failed = outcome.of("FailedPreStopHook")
        assert bool(failed) is fails, (hook, outcome.events)
        assert all(event.message == "PreStopHook failed" for event in failed)
        assert outcome.exited_in_time and outcome.exit_code == 0
