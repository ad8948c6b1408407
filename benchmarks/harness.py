"""Measuring tools: interleaved comparisons, direct ASGI/WSGI calls, resident memory."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

#: Headers the kubelet sends with an ``httpGet`` probe (pkg/probe/http in Kubernetes).
KUBELET_HEADERS = [
    (b"host", b"10.0.0.7:8080"),
    (b"user-agent", b"kube-probe/1.31"),
    (b"accept", b"*/*"),
    (b"connection", b"close"),
]

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclasses.dataclass
class Row:
    """One line of the result table."""

    item: str
    what: str
    measured: str
    target: str
    met: bool | None
    value: float | None = None
    detail: str = ""


@dataclasses.dataclass
class Comparison:
    """Median per-call times (seconds) of every side and median ratios to the baseline."""

    per_call: dict[str, float]
    ratios: dict[str, float]


# -- direct calls ------------------------------------------------------------------------


def asgi_scope(path: str, query: bytes = b"", method: str = "GET") -> dict[str, Any]:
    """A fresh HTTP scope, as a server builds one for each request (ASGI 3.0, HTTP 1.1)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": list(KUBELET_HEADERS),
        "client": ("10.0.0.1", 51234),
        "server": ("10.0.0.7", 8080),
        "state": {},
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class AsgiCaller:
    """Calls an ASGI app in a loop on one event loop and keeps what it sent."""

    def __init__(self, app: ASGIApp, path: str, query: bytes = b"") -> None:
        self.app = app
        self.path = path
        self.query = query
        self.messages: list[dict[str, Any]] = []

    async def _send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    async def call_many(self, n: int) -> float:
        app, send, path, query, messages = self.app, self._send, self.path, self.query, self.messages
        start = time.perf_counter()
        for _ in range(n):
            await app(asgi_scope(path, query), _receive, send)
            messages.clear()
        return time.perf_counter() - start

    async def once(self) -> tuple[int, bytes]:
        """One call: ``(status, body)``."""
        self.messages.clear()
        await self.app(asgi_scope(self.path, self.query), _receive, self._send)
        status = next(m["status"] for m in self.messages if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")
        self.messages.clear()
        return status, body


def wsgi_environ(path: str, query: str = "", method: str = "GET") -> dict[str, Any]:
    """A fresh WSGI environ (PEP 3333), as a server builds one for each request."""
    return {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "10.0.0.7",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_HOST": "10.0.0.7:8080",
        "HTTP_USER_AGENT": "kube-probe/1.31",
        "HTTP_ACCEPT": "*/*",
        "HTTP_CONNECTION": "close",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


class WsgiCaller:
    """Calls a WSGI app as a server does: start_response, iterate, close."""

    def __init__(self, app: WSGIApp, path: str, query: str = "") -> None:
        self.app = app
        self.path = path
        self.query = query
        self.status = ""

    def _start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
        self.status = status
        return _write

    def call(self) -> bytes:
        result = self.app(wsgi_environ(self.path, self.query), self._start_response)
        try:
            return b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def call_many(self, n: int) -> float:
        call = self.call
        start = time.perf_counter()
        for _ in range(n):
            call()
        return time.perf_counter() - start

    def once(self) -> tuple[int, bytes]:
        body = self.call()
        return int(self.status.split(" ", 1)[0]), body


def _write(data: bytes) -> None:
    pass


# -- comparisons -------------------------------------------------------------------------

#: Longest a side's batch of calls should take in one round, in seconds.
BATCH_SECONDS = 0.02


def compare(sides: dict[str, Callable[[int], float]], baseline: str, *, rounds: int, n: int) -> Comparison:
    """Time ``n`` calls of every side per round, interleaved, for ``rounds`` rounds.

    A slow side (a whole framework) makes fewer calls per round, about ``BATCH_SECONDS``
    worth, so every round stays short. The order of the sides alternates from round to
    round (forwards, then backwards) so that a drift in machine load does not favour one
    side. Returns the median per-call time
    of each side and, for each side, the median of its per-round ratio to ``baseline``.
    """
    names = list(sides)
    times: dict[str, list[float]] = {name: [] for name in names}
    calls: dict[str, int] = {}
    for name in names:  # warm-up (caches, lazy imports, first-call paths), then batch sizes
        warm = max(1, n // 10)
        per_call = sides[name](warm) / warm
        calls[name] = min(n, max(5, int(BATCH_SECONDS / per_call))) if per_call > 0 else n
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(sides[name](calls[name]) / calls[name])
    per_call = {name: statistics.median(values) for name, values in times.items()}
    ratios = {
        name: statistics.median(a / b for a, b in zip(times[name], times[baseline], strict=True)) for name in names
    }
    return Comparison(per_call, ratios)


def on_loop(loop: asyncio.AbstractEventLoop, caller: AsgiCaller) -> Callable[[int], float]:
    """A side for :func:`compare` that runs ``caller`` on ``loop``."""
    return lambda n: loop.run_until_complete(caller.call_many(n))


# -- memory and formatting -----------------------------------------------------------------


def rss_bytes() -> int:
    """Resident set size of this process in bytes (Linux ``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: peak RSS is the best the standard library offers
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def us(seconds: float) -> str:
    """Seconds as microseconds, for the table."""
    return f"{seconds * 1e6:.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def fmt_ratio(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"
