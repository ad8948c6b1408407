"""The eight measurements of the benchmark, each returning rows of the result table."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import gc
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio

from healthprobe import HealthRegistry

from . import apps
from .harness import AsgiCaller, Comparison, Row, WsgiCaller, compare, fmt_ratio, ms, on_loop, rss_bytes, us

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Counts:
    """How much work each measurement does (``QUICK`` for the smoke test)."""

    rounds: int = 21
    calls: int = 2000
    #: pass-through rounds are short (about 10 ms) and many, so load changes on a shared
    #: machine hit both sides of a round alike
    passthrough_rounds: int = 101
    passthrough_calls: int = 200
    socket_rounds: int = 10
    socket_seconds: int = 2
    fanout_sizes: tuple[int, ...] = (1, 10, 100, 1000)
    fanout_repeats: int = 9
    storm: int = 1000
    storm_seconds: float = 2.0
    hung_probes: int = 10_000
    rss_probes: int = 100_000
    rss_warmup: int = 10_000
    #: gRPC Check latency: rounds of sequential calls (as ``rounds``/``calls``), then rounds
    #: of ``grpc_load_seconds`` of ``grpc_concurrency`` concurrent calls per server
    grpc_rounds: int = 21
    grpc_calls: int = 2000
    grpc_load_rounds: int = 5
    grpc_load_seconds: float = 1.0
    grpc_concurrency: int = 32


FULL = Counts()
QUICK = Counts(
    rounds=3,
    calls=50,
    passthrough_rounds=3,
    passthrough_calls=20,
    socket_rounds=1,
    socket_seconds=1,
    fanout_sizes=(1, 10, 100),
    fanout_repeats=1,
    storm=100,
    storm_seconds=0.3,
    hung_probes=200,
    rss_probes=1000,
    rss_warmup=200,
    grpc_rounds=3,
    grpc_calls=50,
    grpc_load_rounds=1,
    grpc_load_seconds=0.2,
    grpc_concurrency=8,
)


def _peer(rows: list[Row], item: str, what: str, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except apps.MissingPeer as exc:
        rows.append(Row(item, what, f"skipped: {exc}", "-", None))
        return None


def _checked(caller: AsgiCaller | WsgiCaller, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Refuse to time an app that does not answer 200 (a broken side proves nothing)."""
    if isinstance(caller, AsgiCaller):
        assert loop is not None
        status, _body = loop.run_until_complete(caller.once())
    else:
        status, _body = caller.once()
    if status != 200:
        raise RuntimeError(f"{caller.app!r} answered {status} on {caller.path}")


def _measure(
    callers: dict[str, AsgiCaller] | dict[str, WsgiCaller],
    baseline: str,
    *,
    rounds: int,
    n: int,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Comparison:
    """Check that every side answers 200, then :func:`compare` them, interleaved (ASGI
    sides on ``loop``)."""
    for caller in callers.values():
        _checked(caller, loop)
    sides: dict[str, Callable[[int], float]] = {
        name: on_loop(loop, caller) if isinstance(caller, AsgiCaller) else caller.call_many  # type: ignore[arg-type]
        for name, caller in callers.items()
    }
    return compare(sides, baseline, rounds=rounds, n=n)


def _quiet(*operating: apps.Operating | None) -> None:
    """Refuse figures for which the webhook publisher made a notice: it must not be hit in
    steady state (every check passes), or the side measured something else."""
    for on in operating:
        if on is not None and on.notices():
            raise RuntimeError(f"the webhook publisher made {on.notices()} notices in steady state: {on.features}")


#: The side of (1) and (2) with every operating feature on (docs/operating.md).
ON = "healthprobe, every operating feature on"


def _every_feature(stack: contextlib.ExitStack, rows: list[Row], item: str) -> Any:
    """Every operating feature on a started registry with no checks, closed with ``stack``;
    ``None`` (and a row saying what to install) without the OpenTelemetry SDK."""
    on = _peer(rows, item, ON, apps.every_feature_on)
    if on is not None:
        stack.enter_context(on)
    return on


# -- (1) probe cost ------------------------------------------------------------------------


def probe_cost(counts: Counts, costs: dict[str, Comparison] | None = None) -> list[Row]:
    """Measurement (1): ``/livez`` against the floor, the bare routes and the peers, and
    ``/readyz`` with the operating features on and off. Fills ``costs`` (flavour -> the ``/livez``
    comparison), when given, for the probe-cost chart."""
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        loop = asyncio.new_event_loop()
        stack.callback(loop.close)
        asgi: dict[str, AsgiCaller] = {
            "raw constant": AsgiCaller(apps.raw_asgi, "/livez"),
            "healthprobe": AsgiCaller(apps.healthprobe_asgi(), "/livez"),
        }
        on = _every_feature(stack, rows, "1 ASGI")
        if on is not None:
            asgi[ON] = AsgiCaller(apps.healthprobe_asgi(operating=on), "/livez")
        asgi["bare Starlette route"] = AsgiCaller(apps.starlette_app(), "/livez")
        peer = _peer(rows, "1 ASGI", "fastapi-health (FastAPI)", apps.fastapi_health_app)
        if peer is not None:
            asgi["fastapi-health (FastAPI)"] = AsgiCaller(peer, "/livez")
        result = _measure(asgi, "raw constant", rounds=counts.rounds, n=counts.calls, loop=loop)
        _quiet(on)
        if costs is not None:
            costs["ASGI"] = result
        rows.extend(_probe_rows("1 ASGI", result))
        rows.extend(_readiness(counts, "1 ASGI", stack, loop))

    with contextlib.ExitStack() as stack:
        wsgi: dict[str, WsgiCaller] = {
            "raw constant": WsgiCaller(apps.raw_wsgi, "/livez"),
            "healthprobe": WsgiCaller(apps.healthprobe_wsgi(), "/livez"),
        }
        on = _every_feature(stack, rows, "1 WSGI")
        if on is not None:
            wsgi[ON] = WsgiCaller(apps.healthprobe_wsgi(operating=on), "/livez")
        wsgi["bare Werkzeug response"] = WsgiCaller(apps.werkzeug_app, "/livez")
        peer = _peer(rows, "1 WSGI", "py-healthcheck (Flask)", apps.py_healthcheck_flask)
        if peer is not None:
            wsgi["py-healthcheck (Flask)"] = WsgiCaller(peer, "/livez")
        peer = _peer(rows, "1 WSGI", "django-health-check", apps.django_health_check_app)
        if peer is not None:
            wsgi["django-health-check"] = WsgiCaller(peer, "/livez")
        result = _measure(wsgi, "raw constant", rounds=counts.rounds, n=counts.calls)
        _quiet(on)
        if costs is not None:
            costs["WSGI"] = result
        rows.extend(_probe_rows("1 WSGI", result))
        rows.extend(_readiness(counts, "1 WSGI", stack))
    return rows


#: How each healthprobe side of (1) and (2) is named in its rows.
_OURS = {"healthprobe": "", ON: ", every operating feature on,"}


def _probe_rows(item: str, result: Comparison) -> list[Row]:
    """Each healthprobe side against the floor (the target), then healthprobe as it comes
    against the bare route and the peers."""
    per_call, ratios = result.per_call, result.ratios
    rows = [
        Row(
            item,
            f"/livez healthprobe{_OURS[side]} vs raw constant ({us(per_call[side])} vs {us(per_call['raw constant'])})",
            fmt_ratio(ratios[side]),
            "<= 1.50x",
            ratios[side] <= 1.5,
            ratios[side],
        )
        for side in _OURS
        if side in ratios
    ]
    ours = ratios["healthprobe"]
    for name, ratio in ratios.items():
        if name in _OURS or name == "raw constant":
            continue
        relative = ours / ratio
        rows.append(
            Row(
                item,
                f"/livez healthprobe vs {name} ({us(per_call[name])})",
                fmt_ratio(relative),
                "< 1.00x",
                relative < 1.0,
                relative,
            )
        )
    return rows


#: The one check of the readiness rows: its result is cached for longer than the run, so
#: every probe timed is answered from cached results, as most readiness probes are.
READINESS_CACHE_TTL = 3600.0


def _readiness_registry() -> HealthRegistry:
    registry = apps.started_registry()
    registry.add_check("database", lambda: None, cache_ttl=READINESS_CACHE_TTL)
    return registry


def _readiness(
    counts: Counts, item: str, stack: contextlib.ExitStack, loop: asyncio.AbstractEventLoop | None = None
) -> list[Row]:
    """``/readyz`` with one cached check: every operating feature on against none (the
    target), and each feature alone for scale. ASGI when ``loop`` is given, else WSGI."""

    def prober(registry: HealthRegistry | None = None, operating: apps.Operating | None = None) -> Any:
        if loop is None:
            return WsgiCaller(apps.healthprobe_wsgi(registry=registry, operating=operating), "/readyz")
        return AsgiCaller(apps.healthprobe_asgi(registry=registry, operating=operating), "/readyz")

    rows: list[Row] = []
    sides: dict[str, Any] = {"off": prober(_readiness_registry())}
    features: dict[str, apps.Operating] = {}
    for name, which in [("on", apps.FEATURES), *((feature, (feature,)) for feature in apps.FEATURES)]:
        switch = functools.partial(apps.every_feature_on, _readiness_registry(), which)
        on = _peer(rows, item, f"/readyz with {'every feature' if name == 'on' else name} on", switch)
        if on is None:
            continue
        features[name] = stack.enter_context(on)
        sides[name] = prober(operating=on)
    result = _measure(sides, "off", rounds=counts.rounds, n=counts.calls, loop=loop)
    _quiet(*features.values())
    per_call, ratios = result.per_call, result.ratios
    if "on" in ratios:
        rows.append(
            Row(
                item,
                f"/readyz, one cached check, every operating feature on vs off "
                f"({us(per_call['on'])} vs {us(per_call['off'])})",
                fmt_ratio(ratios["on"]),
                "<= 1.50x",
                ratios["on"] <= 1.5,
                ratios["on"],
            )
        )
    for feature in apps.FEATURES:
        if feature in ratios:
            rows.append(
                Row(
                    item,
                    f"for scale: /readyz with one feature on, {feature} ({us(per_call[feature])}) vs off",
                    fmt_ratio(ratios[feature]),
                    "no target",
                    None,
                    ratios[feature],
                )
            )
    return rows


# -- (2) pass-through overhead -------------------------------------------------------------


def pass_through(counts: Counts) -> list[Row]:
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        loop = asyncio.new_event_loop()
        stack.callback(loop.close)
        inner = apps.starlette_app("/orders")
        sides = {
            "bare": AsgiCaller(inner, "/orders"),
            "healthprobe": AsgiCaller(apps.healthprobe_asgi(inner, shutdown=True), "/orders"),
        }
        on = _every_feature(stack, rows, "2 ASGI")
        if on is not None:
            sides[ON] = AsgiCaller(apps.healthprobe_asgi(inner, shutdown=True, operating=on), "/orders")
        sides["probes only"] = AsgiCaller(apps.healthprobe_asgi(inner), "/orders")
        sides["no-op middleware"] = AsgiCaller(apps.NoopAsgiMiddleware(inner), "/orders")
        sides["least"] = AsgiCaller(apps.least_routing_and_counting(inner), "/orders")
        result = _measure(sides, "bare", rounds=counts.passthrough_rounds, n=counts.passthrough_calls, loop=loop)
        _quiet(on)
        rows.extend(_overhead_rows("2 ASGI", "Starlette route /orders", result))
        rows.append(_floor_row("2 ASGI", "no-op ASGI middleware", result.per_call, result.ratios["no-op middleware"]))
        rows.append(_probes_only_row("2 ASGI", result.per_call, result.ratios["probes only"]))
        rows.append(
            Row(
                "2 ASGI",
                "for scale: the least a Python middleware that tells probe paths apart and counts "
                f"in flight can do (a bare function; no root_path, no shutdown state) ({us(result.per_call['least'])})",
                f"{(result.ratios['least'] - 1.0) * 100:+.1f}%",
                "no target",
                None,
                result.ratios["least"],
            )
        )
    flask = _peer(rows, "2 WSGI", "Flask route /orders", apps.flask_app)
    if flask is not None:
        with contextlib.ExitStack() as stack:
            wsgi = {
                "bare": WsgiCaller(flask.wsgi_app, "/orders"),
                "healthprobe": WsgiCaller(apps.healthprobe_wsgi(flask.wsgi_app, shutdown=True), "/orders"),
            }
            on = _every_feature(stack, rows, "2 WSGI")
            if on is not None:
                wsgi[ON] = WsgiCaller(apps.healthprobe_wsgi(flask.wsgi_app, shutdown=True, operating=on), "/orders")
            wsgi["probes only"] = WsgiCaller(apps.healthprobe_wsgi(flask.wsgi_app), "/orders")
            wsgi["no-op middleware"] = WsgiCaller(apps.NoopWsgiMiddleware(flask.wsgi_app), "/orders")
            result = _measure(wsgi, "bare", rounds=counts.passthrough_rounds, n=counts.passthrough_calls)
            _quiet(on)
            rows.extend(_overhead_rows("2 WSGI", "Flask route /orders", result))
            noop = result.ratios["no-op middleware"]
            rows.append(_floor_row("2 WSGI", "no-op WSGI middleware", result.per_call, noop))
            rows.append(_probes_only_row("2 WSGI", result.per_call, result.ratios["probes only"]))
    return rows


def _overhead_rows(item: str, what: str, result: Comparison) -> list[Row]:
    """Each healthprobe side (with in-flight tracking) against the bare route: the target."""
    rows = []
    for side, named in _OURS.items():
        if side not in result.ratios:
            continue
        ratio = result.ratios[side]
        overhead = (ratio - 1.0) * 100
        rows.append(
            Row(
                item,
                f"{what} with vs without middleware and in-flight tracking{named.rstrip(',')} "
                f"({us(result.per_call[side])} vs {us(result.per_call['bare'])})",
                f"{overhead:+.1f}%",
                "<= +3.0%",
                overhead <= 3.0,
                ratio,
            )
        )
    return rows


def _probes_only_row(item: str, per_call: dict[str, float], ratio: float) -> Row:
    """The middleware answering probes, without a shutdown coordinator to count requests."""
    return Row(
        item,
        f"for scale: the middleware without in-flight tracking ({us(per_call['probes only'])})",
        f"{(ratio - 1.0) * 100:+.1f}%",
        "no target",
        None,
        ratio,
    )


def _floor_row(item: str, what: str, per_call: dict[str, float], ratio: float) -> Row:
    """What any middleware layer costs on the same route: the floor under the target."""
    return Row(
        item,
        f"for scale: a {what} that only passes the call on ({us(per_call['no-op middleware'])})",
        f"{(ratio - 1.0) * 100:+.1f}%",
        "no target",
        None,
        ratio,
    )


# -- (3) over real sockets -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _uvicorn(target: str) -> Iterator[int]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
    args += ["--no-access-log", "--log-level", "warning", "--lifespan", "off"]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn {target} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn {target} did not listen within 20 s")
            time.sleep(0.05)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wrk(wrk: str, port: int, seconds: int) -> float:
    out = subprocess.run(
        [wrk, "-t1", "-c32", f"-d{seconds}s", "--timeout", "2s", f"http://127.0.0.1:{port}/livez"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw non-2xx answers:\n{out}")
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{out}")
    return float(match.group(1))


def sockets(counts: Counts) -> list[Row]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return [
            Row(
                "3", "uvicorn /livez rps vs raw constant", "skipped: wrk not installed (apt-get install wrk)", "-", None
            )
        ]
    ratios: list[float] = []
    rps: dict[str, list[float]] = {"healthprobe": [], "raw": []}
    with _uvicorn("benchmarks.serve:healthprobe_app") as ours, _uvicorn("benchmarks.serve:raw_app") as raw:
        ports = {"healthprobe": ours, "raw": raw}
        for port in ports.values():  # warm-up
            _wrk(wrk, port, 1)
        for index in range(counts.socket_rounds):
            order = ["healthprobe", "raw"] if index % 2 == 0 else ["raw", "healthprobe"]
            got = {name: _wrk(wrk, ports[name], counts.socket_seconds) for name in order}
            for name, value in got.items():
                rps[name].append(value)
            ratios.append(got["healthprobe"] / got["raw"])
    ratio = statistics.median(ratios)
    what = (
        f"uvicorn /livez rps, healthprobe vs raw constant "
        f"({statistics.median(rps['healthprobe']):.0f} vs {statistics.median(rps['raw']):.0f} req/s, wrk -c32)"
    )
    spread = f"per-round ratios {min(ratios):.2f}-{max(ratios):.2f}"
    return [Row("3", what, fmt_ratio(ratio), ">= 0.90x", ratio >= 0.9, ratio, spread)]


# -- (4) fan-out -----------------------------------------------------------------------------


CHECK_SECONDS = 0.05


def _fanout_registry(n: int, *, sync: bool) -> HealthRegistry:
    registry = HealthRegistry()
    registry.mark_started()
    for index in range(n):
        if sync:
            registry.add_check(f"c{index}", lambda: time.sleep(CHECK_SECONDS), timeout=5.0, cache_ttl=0)
        else:

            async def slow() -> None:
                await anyio.sleep(CHECK_SECONDS)

            registry.add_check(f"c{index}", slow, timeout=5.0, cache_ttl=0)
    return registry


def _time_probe_asgi(loop: asyncio.AbstractEventLoop, registry: HealthRegistry, repeats: int) -> float:
    caller = AsgiCaller(apps.healthprobe_asgi(registry=registry), "/readyz")
    loop.run_until_complete(caller.once())  # warm-up: first-call paths, not fan-out
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        status, body = loop.run_until_complete(caller.once())
        samples.append(time.perf_counter() - start)
        if status != 200:
            raise RuntimeError(f"fan-out probe failed: {body[:200]!r}")
    return statistics.median(samples)


def _time_probe_wsgi(registry: HealthRegistry, repeats: int) -> float:
    caller = WsgiCaller(apps.healthprobe_wsgi(registry=registry), "/readyz")
    caller.once()  # warm-up: first-call paths, not fan-out
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        status, body = caller.once()
        samples.append(time.perf_counter() - start)
        if status != 200:
            raise RuntimeError(f"fan-out probe failed: {body[:200]!r}")
    return statistics.median(samples)


def fan_out(counts: Counts, series: dict[str, list[tuple[int, float]]]) -> list[Row]:
    """Fills ``series`` (name -> [(checks, seconds)]) for the chart."""
    rows: list[Row] = []
    loop = asyncio.new_event_loop()
    try:
        for n in counts.fanout_sizes:
            latency = _time_probe_asgi(loop, _fanout_registry(n, sync=False), counts.fanout_repeats)
            series.setdefault("async checks (ASGI)", []).append((n, latency))
            ratio = latency / CHECK_SECONDS
            within = n <= 100
            rows.append(
                Row(
                    "4",
                    f"/readyz, {n} async checks of 50 ms (ASGI): {ms(latency)}",
                    fmt_ratio(ratio),
                    "<= 1.20x" if within else "shown (no target)",
                    ratio <= 1.2 if within else None,
                    ratio,
                )
            )
        latency = _time_probe_asgi(loop, _fanout_registry(20, sync=True), counts.fanout_repeats)
        series.setdefault("sync checks (ASGI)", []).append((20, latency))
        rows.append(
            Row(
                "4",
                f"/readyz, 20 sync checks of 50 ms (ASGI): {ms(latency)}",
                fmt_ratio(latency / CHECK_SECONDS),
                "<= 1.20x",
                latency / CHECK_SECONDS <= 1.2,
                latency / CHECK_SECONDS,
            )
        )
    finally:
        loop.close()
    latency = _time_probe_wsgi(_fanout_registry(20, sync=True), counts.fanout_repeats)
    series.setdefault("sync checks (WSGI)", []).append((20, latency))
    rows.append(
        Row(
            "4",
            f"/readyz, 20 sync checks of 50 ms (WSGI): {ms(latency)}",
            fmt_ratio(latency / CHECK_SECONDS),
            "<= 1.20x",
            latency / CHECK_SECONDS <= 1.2,
            latency / CHECK_SECONDS,
        )
    )
    return rows


# -- (5) probe storm -------------------------------------------------------------------------


class _Dependency:
    """Stands for a database behind a check: counts calls and when they happened."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.lock = threading.Lock()

    def hit(self) -> None:
        with self.lock:
            self.calls.append(time.monotonic())

    def max_per_window(self, ttl: float) -> int:
        """The most calls that fell inside any one cache window of ``ttl`` seconds."""
        best = 0
        for index, start in enumerate(self.calls):
            best = max(best, sum(1 for t in self.calls[index:] if t - start < ttl))
        return best


def storm(counts: Counts) -> list[Row]:
    rows: list[Row] = []
    ttl = 1.0
    # ASGI: `storm` concurrent /readyz on one event loop; the check awaits a 20 ms dependency.
    dep = _Dependency()
    registry = HealthRegistry(default_cache_ttl=ttl)
    registry.mark_started()

    async def database() -> None:
        dep.hit()
        await anyio.sleep(0.02)

    registry.add_check("database", database)
    app = apps.healthprobe_asgi(registry=registry)

    async def asgi_storm() -> list[int]:
        callers = [AsgiCaller(app, "/readyz") for _ in range(counts.storm)]
        answers = await asyncio.gather(*(caller.once() for caller in callers))
        return [status for status, _ in answers]

    statuses = asyncio.run(asgi_storm())
    rows.append(_storm_row("ASGI", counts.storm, statuses, len(dep.calls)))

    # WSGI: the same storm from 64 server threads; the check is a sync call to the dependency.
    dep_sync = _Dependency()
    registry = HealthRegistry(default_cache_ttl=ttl)
    registry.mark_started()

    def database_sync() -> None:
        dep_sync.hit()
        time.sleep(0.02)

    registry.add_check("database", database_sync)
    wsgi = apps.healthprobe_wsgi(registry=registry)
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(lambda _: WsgiCaller(wsgi, "/readyz").once(), range(counts.storm)))
    rows.append(_storm_row("WSGI", counts.storm, [s for s, _ in answers], len(dep_sync.calls)))

    # Sustained: waves of concurrent probes for several cache windows (ASGI, ttl 0.2 s).
    dep_long = _Dependency()
    window = 0.2
    registry = HealthRegistry(default_cache_ttl=window)
    registry.mark_started()

    async def database_long() -> None:
        dep_long.hit()
        await anyio.sleep(0.02)

    registry.add_check("database", database_long)
    app_long = apps.healthprobe_asgi(registry=registry)

    async def sustained() -> int:
        probes = 0
        end = time.monotonic() + counts.storm_seconds
        while time.monotonic() < end:
            wave = [AsgiCaller(app_long, "/readyz").once() for _ in range(min(counts.storm, 100))]
            await asyncio.gather(*wave)
            probes += len(wave)
        return probes

    probes = asyncio.run(sustained())
    worst = dep_long.max_per_window(window)
    rows.append(
        Row(
            "5",
            f"{probes} /readyz in waves over {counts.storm_seconds:g} s, cache window {window:g} s: "
            f"{len(dep_long.calls)} dependency calls",
            f"max {worst} per window",
            "1 per window",
            worst == 1,
            float(worst),
        )
    )
    return rows


def _storm_row(flavour: str, n: int, statuses: list[int], calls: int) -> Row:
    ok = sum(1 for s in statuses if s == 200)
    return Row(
        "5",
        f"{n} concurrent /readyz ({flavour}, {ok} answered 200): dependency calls",
        str(calls),
        "1",
        calls == 1 and ok == n,
        float(calls),
    )


# -- (6) a hung sync check -------------------------------------------------------------------


def hung_check(counts: Counts) -> list[Row]:
    release = threading.Event()
    registry = HealthRegistry()
    registry.mark_started()
    registry.add_check("hung", lambda: release.wait(), timeout=0.02, cache_ttl=0)
    wsgi = WsgiCaller(apps.healthprobe_wsgi(registry=registry), "/readyz")
    loop = asyncio.new_event_loop()
    asgi = AsgiCaller(apps.healthprobe_asgi(registry=registry), "/readyz")
    try:
        gc.collect()
        threads_before = threading.active_count()
        warm = max(1, counts.hung_probes // 10)
        for _ in range(warm):
            wsgi.once()
            loop.run_until_complete(asgi.once())
        gc.collect()
        rss_before = rss_bytes()
        statuses: set[int] = set()
        start = time.perf_counter()
        for _ in range(counts.hung_probes // 2):
            statuses.add(wsgi.once()[0])
            statuses.add(loop.run_until_complete(asgi.once())[0])
        elapsed = time.perf_counter() - start
        gc.collect()
        held = threading.active_count() - threads_before
        growth = rss_bytes() - rss_before
    finally:
        release.set()
        loop.close()
    per_probe = elapsed / max(1, counts.hung_probes)
    return [
        Row(
            "6",
            f"hung sync check, {counts.hung_probes} probes (WSGI+ASGI, answered {sorted(statuses)}, "
            f"{us(per_probe)} each): threads held",
            str(held),
            "<= 1",
            held <= 1,
            float(held),
        ),
        Row(
            "6",
            "hung sync check: resident memory growth",
            f"{growth / 1024:.0f} KiB",
            "no growth",
            growth < 256 * 1024,
            growth / 1024,
            "tolerance 256 KiB (allocator pages)",
        ),
    ]


# -- (7) memory over many probes -------------------------------------------------------------


def memory(counts: Counts) -> list[Row]:
    rows: list[Row] = []
    # ASGI /readyz with one async check that runs on every probe (no cache): the whole runner.
    registry = HealthRegistry(default_cache_ttl=0)
    registry.mark_started()

    async def ping() -> None:
        await asyncio.sleep(0)

    registry.add_check("ping", ping)
    asgi = AsgiCaller(apps.healthprobe_asgi(registry=registry), "/readyz")
    loop = asyncio.new_event_loop()
    try:
        rows.append(
            _rss_row(
                "ASGI /readyz, 1 async check, uncached", counts, lambda n: loop.run_until_complete(asgi.call_many(n))
            )
        )
        livez = AsgiCaller(apps.healthprobe_asgi(), "/livez")
        rows.append(_rss_row("ASGI /livez", counts, lambda n: loop.run_until_complete(livez.call_many(n))))
    finally:
        loop.close()
    registry = HealthRegistry(default_cache_ttl=0.01)
    registry.mark_started()
    registry.add_check("ping", lambda: None)
    wsgi = WsgiCaller(apps.healthprobe_wsgi(registry=registry), "/readyz")
    rows.append(_rss_row("WSGI /readyz, 1 sync check, 10 ms cache", counts, wsgi.call_many))
    return rows


def _rss_row(what: str, counts: Counts, run: Callable[[int], float]) -> Row:
    run(counts.rss_warmup)
    gc.collect()
    before = rss_bytes()
    run(counts.rss_probes)
    gc.collect()
    growth = rss_bytes() - before
    return Row(
        "7",
        f"{what}: RSS growth over {counts.rss_probes:,} probes",
        f"{growth / 1024:.0f} KiB",
        "< 1024 KiB",
        growth < 1024 * 1024,
        growth / 1024,
    )


# -- (8) gRPC health checks ------------------------------------------------------------------

#: The servers compared (``benchmarks/grpc_serve.py``): the first is the baseline.
GRPC_SIDES = ("stock", "healthprobe", "interceptor")


class _GrpcServer:
    """A ``python -m benchmarks.grpc_serve SIDE FLAVOUR`` process and a channel to it."""

    def __init__(self, side: str, flavour: str) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self.side = side
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "benchmarks.grpc_serve", side, flavour]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True
        )
        timer = threading.Timer(30, self.proc.kill)  # a server that never says its port
        timer.start()
        try:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        if not line.strip().isdigit():
            self.close()
            self.errors.seek(0)
            raise RuntimeError(f"grpc_serve {side} {flavour} did not start: {self.errors.read().decode()[-2000:]}")
        self.target = f"127.0.0.1:{int(line)}"
        self.channel = grpc.insecure_channel(self.target)
        self.stub = health_pb2_grpc.HealthStub(self.channel)
        self.request = health_pb2.HealthCheckRequest(service="")
        answer = self.stub.Check(self.request, timeout=10)
        if answer.status != health_pb2.HealthCheckResponse.SERVING:  # a broken side proves nothing
            self.close()
            raise RuntimeError(f"grpc_serve {side} {flavour} answered {answer.status}, not SERVING")

    def calls(self, n: int) -> float:
        """``n`` sequential Checks on one channel; seconds taken."""
        check, request = self.stub.Check, self.request
        start = time.perf_counter()
        for _ in range(n):
            check(request, timeout=10)
        return time.perf_counter() - start

    def cpu_seconds(self) -> float:
        """CPU time (user + system, every thread) the server process has used
        (``/proc/PID/stat``; ``nan`` where there is none)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        with contextlib.suppress(AttributeError):
            self.channel.close()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.errors.close()


async def _load(target: str, seconds: float, concurrency: int) -> tuple[int, float]:
    """``concurrency`` Checks in flight at all times for ``seconds``, from the stock stub on a
    ``grpc.aio`` channel; ``(calls answered, seconds taken)``."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        await stub.Check(request, timeout=10)
        end = time.monotonic() + seconds

        async def caller() -> int:
            done = 0
            while time.monotonic() < end:
                await stub.Check(request, timeout=10)
                done += 1
            return done

        start = time.perf_counter()
        counts = await asyncio.gather(*(caller() for _ in range(concurrency)))
        return sum(counts), time.perf_counter() - start


def grpc_check(counts: Counts) -> list[Row]:
    rows: list[Row] = []
    try:
        import grpc  # noqa: F401
        import grpc_health  # noqa: F401
    except ImportError:
        return [Row("8", "gRPC Check", "skipped: pip install 'healthprobe[grpc]'", "-", None)]
    for flavour in ("sync", "aio"):
        rows.extend(_grpc_flavour(flavour, counts))
    return rows


def _grpc_flavour(flavour: str, counts: Counts) -> list[Row]:
    item = f"8 {flavour}"
    servers: dict[str, _GrpcServer] = {}
    loop = asyncio.new_event_loop()
    try:
        for side in GRPC_SIDES:
            servers[side] = _GrpcServer(side, flavour)
        latency = compare(
            {side: server.calls for side, server in servers.items()},
            "stock",
            rounds=counts.grpc_rounds,
            n=counts.grpc_calls,
        )
        rps: dict[str, list[float]] = {side: [] for side in servers}
        cpu: dict[str, list[float]] = {side: [] for side in servers}
        for index in range(counts.grpc_load_rounds):
            order = list(GRPC_SIDES) if index % 2 == 0 else list(GRPC_SIDES)[::-1]
            for side in order:
                server = servers[side]
                before = server.cpu_seconds()
                done, seconds = loop.run_until_complete(
                    _load(server.target, counts.grpc_load_seconds, counts.grpc_concurrency)
                )
                rps[side].append(done / seconds)
                cpu[side].append((server.cpu_seconds() - before) / max(1, done))
    finally:
        loop.close()
        for server in servers.values():
            server.close()

    def ratio(values: dict[str, list[float]], side: str) -> float:
        return statistics.median(a / b if b else math.nan for a, b in zip(values[side], values["stock"], strict=True))

    def median(values: dict[str, list[float]], side: str) -> float:
        return statistics.median(values[side])

    speed = ratio(rps, "healthprobe")
    cost = ratio(cpu, "healthprobe")
    ours = latency.ratios["healthprobe"]
    scale = latency.ratios["interceptor"]
    server = "grpc.server, 16 threads" if flavour == "sync" else "grpc.aio.server"
    return [
        Row(
            item,
            f"Check latency ({server}), healthprobe's servicer vs the stock one "
            f"({us(latency.per_call['healthprobe'])} vs {us(latency.per_call['stock'])}, sequential calls)",
            fmt_ratio(ours),
            "<= 1.50x",
            ours <= 1.5,
            ours,
        ),
        Row(
            item,
            f"Check throughput ({server}), healthprobe's servicer vs the stock one "
            f"({median(rps, 'healthprobe'):.0f} vs {median(rps, 'stock'):.0f} req/s, "
            f"{counts.grpc_concurrency} concurrent calls)",
            fmt_ratio(speed),
            ">= 0.67x",
            speed >= 1 / 1.5 if math.isfinite(speed) else None,
            speed,
        ),
        Row(
            item,
            f"server CPU per Check ({server}), healthprobe's servicer vs the stock one "
            f"({us(median(cpu, 'healthprobe'))} vs {us(median(cpu, 'stock'))}, under that load)",
            fmt_ratio(cost),
            "<= 1.50x",
            cost <= 1.5 if math.isfinite(cost) else None,
            cost if math.isfinite(cost) else None,
        ),
        Row(
            item,
            f"for scale: healthprobe's servicer behind the in-flight interceptor, Check latency "
            f"({us(latency.per_call['interceptor'])}) vs the stock servicer",
            fmt_ratio(scale),
            "no target",
            None,
            scale,
            f"throughput {ratio(rps, 'interceptor'):.2f}x, server CPU per Check {ratio(cpu, 'interceptor'):.2f}x",
        ),
    ]
