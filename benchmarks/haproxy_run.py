"""HAProxy in front of local instances, and continuous load through it: what the rolling
restart test (tests/haproxy.py) and the shutdown timeline figures (:mod:`benchmarks.figures`)
both drive.

:class:`HAProxy` runs ``haproxy`` (Debian package ``haproxy``) on a loopback port with a
stats socket, health-checking each instance with ``GET /readyz`` every 200 ms (``fall 2
rise 1``), with ``retries 0`` and without ``option redispatch``, so that a request it could
not deliver reaches the client as HAProxy's own 502, 503 or 504; a thread reads the stats
socket every 50 ms. :class:`Load` sends keep-alive HTTP requests (and, optionally,
WebSocket sessions) through it and records every outcome.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from healthprobe.testing import free_port

#: Seconds of the slow request, one in :data:`SLOW_EVERY`.
SLOW = 0.5
SLOW_EVERY = 10
SLOW_PATH = f"/slow?seconds={SLOW}"
HTTP_CLIENTS = 4
#: Seconds each HTTP client waits between two requests.
PAUSE = 0.01
#: Seconds before a request without an answer counts as failed.
TIMEOUT = 5.0
WS_MESSAGES = 6
#: Seconds between two messages of a WebSocket session: a session lasts about 1.75 s, so
#: that one opened just after SIGTERM is still open when the 1.5 s delay ends.
WS_GAP = 0.35


#: Seconds between two readings of HAProxy's stats socket.
SAMPLE_EVERY = 0.05


# -- HAProxy ----------------------------------------------------------------------------------

HAPROXY_CONFIG = """\
global
    log stdout format raw local0
    nbthread 1
    stats socket {socket} mode 600 level admin

defaults
    mode http
    log global
    option httplog
    # Only requests that did not end normally are logged (HAProxy's own 5xx, aborts, timeouts).
    option dontlog-normal
    # No second attempt, on the same server or another one: a failure reaches the client.
    retries 0
    no option redispatch
    timeout connect 2s
    timeout client 15s
    timeout server 15s
    timeout http-keep-alive 15s
    timeout tunnel 30s
    timeout check 1s

frontend web
    bind 127.0.0.1:{port}
    # Which instance answered (a WebSocket handshake too): the load generator records it.
    http-response set-header X-Served-By %s
    # WebSocket handshakes have a backend of their own, whose round robin sees only them:
    # two handshakes in a row go one to each instance.
    use_backend ws if {{ path /ws }}
    default_backend app

backend ws
    balance roundrobin
{ws_servers}

backend app
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host 127.0.0.1
    default-server inter 200ms fall 2 rise 1
{options}
{servers}
"""


def haproxy_binary() -> str | None:
    """The path of ``haproxy`` (``/usr/sbin`` included, which is not on every user's PATH)."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")


def _socket_path(workdir: Path) -> Path:
    """Where the stats socket goes: ``workdir``, unless its path is too long for a unix
    socket (108 bytes on Linux), then a new directory under the system's temporary one."""
    path = workdir / "haproxy.sock"
    if len(os.fsencode(path)) < 100:
        return path
    return Path(tempfile.mkdtemp(prefix="hp-")) / "haproxy.sock"


class HAProxy:
    """HAProxy in the foreground (``-db``), in front of ``servers`` (name -> port), listening on
    a loopback port; its log (abnormal requests, server state changes) goes to a file.

    A thread reads the servers' states from the stats socket every 50 ms (``show stat``) and
    records each change with its ``time.time()``, in ``changes``, and every reading (status
    and requests in flight per server) in ``samples``. ``options``: more lines of
    the ``app`` backend (``option forwardfor``)."""

    def __init__(self, binary: str, servers: Mapping[str, int], workdir: Path, options: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.socket = _socket_path(workdir)
        self.config = workdir / "haproxy.cfg"
        lines = "\n".join(f"    server {name} 127.0.0.1:{port} check" for name, port in servers.items())
        # The ws backend's servers take the state of app's, whose checks are the only ones.
        ws_lines = "\n".join(f"    server {name} 127.0.0.1:{port} track app/{name}" for name, port in servers.items())
        config = HAPROXY_CONFIG.format(
            socket=self.socket,
            port=self.port,
            servers=lines,
            ws_servers=ws_lines,
            options="\n".join(f"    {line}" for line in options),
        )
        self.config.write_text(config)
        self.log_path = workdir / "haproxy.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, "-db", "-f", str(self.config)], stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        #: The latest (status, check status) of each server, e.g. ("UP", "L7OK"), ("DOWN", "L4CON").
        self.states: dict[str, tuple[str, str]] = {}
        self.changes: list[tuple[float, str, str]] = []
        #: Every reading of the stats socket: its ``time.time()`` and, per server, its status
        #: and ``scur``, the requests HAProxy has under way on it (its sessions in flight).
        self.samples: list[tuple[float, dict[str, tuple[str, int]]]] = []
        self._changed = threading.Condition()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def command(self, line: str) -> str:
        """Send one command to the stats socket and return its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def _app_rows(self) -> list[dict[str, str]]:
        """The ``show stat`` rows of the ``app`` backend's servers."""
        rows = csv.DictReader(self.command("show stat").removeprefix("# ").splitlines())
        return [row for row in rows if row.get("pxname") == "app" and row.get("svname") not in ("FRONTEND", "BACKEND")]

    def servers(self) -> dict[str, tuple[str, str]]:
        """Each server's status (``UP``, ``UP 1/2`` while going down, ``DOWN``, ...) and its
        last check's status (``L7OK``, ``L7STS``, ``L4CON``, ``INI`` before the first)."""
        return {row["svname"]: (row["status"], row["check_status"].removeprefix("* ")) for row in self._app_rows()}

    def sessions(self, name: str) -> int:
        """How many requests HAProxy has sent to server ``name`` of the ``app`` backend so far
        (``stot``: its streams, one per HTTP request; health checks are not counted)."""
        rows = csv.DictReader(self.command("show stat").removeprefix("# ").splitlines())
        (row,) = [row for row in rows if row.get("pxname") == "app" and row.get("svname") == name]
        return int(row["stot"])

    def _watch(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(OSError, KeyError, ValueError):
                rows = self._app_rows()
                now = time.time()
                states = {row["svname"]: (row["status"], row["check_status"].removeprefix("* ")) for row in rows}
                sample = {row["svname"]: (row["status"], int(row["scur"] or 0)) for row in rows}
                with self._changed:
                    for name, state in states.items():
                        if self.states.get(name, (None, None))[0] != state[0]:
                            self.changes.append((now, name, state[0]))
                    self.states = states
                    self.samples.append((now, sample))
                    self._changed.notify_all()
            self._done.wait(SAMPLE_EVERY)

    def wait_state(self, name: str, status: str, timeout: float, *, check: str | None = None) -> float:
        """Wait until server ``name`` has ``status`` (and last check ``check``); returns the
        ``time.time()`` at which it was seen."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                state = self.states.get(name)
                if state is not None and state[0] == status and check in (None, state[1]):
                    return time.time()
                if self.proc.poll() is not None:
                    raise RuntimeError(f"haproxy exited with {self.proc.returncode}:\n{self.output()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"haproxy: server {name} not {status} within {timeout} s: {state}")
                self._changed.wait(min(left, 0.5))

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self._done.set()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        self._log.close()
        if self.socket.parent != self.config.parent:  # the directory _socket_path made
            shutil.rmtree(self.socket.parent, ignore_errors=True)


@dataclass
class Outcome:
    """One request of :class:`Load`: its path, ``time.time()`` start and end, the status
    (``None`` when it failed without an answer) and ``error``, which says why it failed (a
    non-2xx answer's text, or the exception), ``None`` when it did not."""

    path: str
    start: float
    end: float
    status: int | None
    error: str | None = None


# -- load -------------------------------------------------------------------------------------


@dataclass
class Session:
    """One WebSocket session: its ``time.time()`` start and end, the close code the server
    sent (``None`` when none was received), ``error`` when it failed, and the instance
    that served it (HAProxy's ``X-Served-By``; ``None`` without a handshake answer)."""

    start: float
    end: float
    code: int | None
    error: str | None = None
    server: str | None = None


@dataclass
class Load:
    """Continuous traffic through ``url``: ``http_clients`` threads, each with its own
    keep-alive ``httpx.Client``, send ``/`` with :data:`PAUSE` between requests and, one
    request in :data:`SLOW_EVERY`, :data:`SLOW_PATH`; ``ws_clients`` threads run WebSocket
    sessions on ``/ws`` back to back, except while held (:meth:`hold_sessions`). Outcomes go
    to ``requests`` and ``sessions``."""

    url: str
    http_clients: int = HTTP_CLIENTS
    ws_clients: int = 0
    requests: list[Outcome] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    _hold: threading.Event = field(default_factory=threading.Event)
    _release: threading.Event = field(default_factory=threading.Event)
    _held: threading.Condition = field(default_factory=threading.Condition)
    _waiting: int = 0

    def start(self) -> None:
        targets = [(self._http, (i,)) for i in range(self.http_clients)]
        targets += [(self._ws, (i,)) for i in range(self.ws_clients)]
        for target, args in targets:
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        """Stop sending; requests and sessions under way finish first."""
        self.done.set()
        self._release.set()
        for thread in self.threads:
            thread.join(timeout=TIMEOUT + 10)

    def wait_requests(self, count: int, timeout: float = 20.0) -> None:
        """Wait until ``count`` more requests have completed."""
        target = len(self.requests) + count
        deadline = time.monotonic() + timeout
        while len(self.requests) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} requests completed within {timeout} s")
            time.sleep(0.02)

    def _http(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=TIMEOUT, trust_env=False) as client:
            sent = index  # the clients' slow requests do not all start together
            while not self.done.is_set():
                sent += 1
                path = SLOW_PATH if sent % SLOW_EVERY == 0 else "/"
                start = time.time()
                try:
                    response = client.get(path)
                    ok = 200 <= response.status_code < 300
                    error = None if ok else " ".join(response.text.split())[:80]
                    outcome = Outcome(path, start, time.time(), response.status_code, error)
                except httpx.HTTPError as exc:
                    outcome = Outcome(path, start, time.time(), None, f"{type(exc).__name__}: {exc}")
                self.requests.append(outcome)
                self.done.wait(PAUSE)

    def hold_sessions(self, timeout: float = 15.0) -> None:
        """Let the WebSocket sessions under way finish and start no other one until
        :meth:`release_sessions`; returns once every WebSocket client waits."""
        self._release.clear()
        self._hold.set()
        deadline = time.monotonic() + timeout
        with self._held:
            while self._waiting < self.ws_clients:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"WebSocket sessions still under way after {timeout} s")
                self._held.wait(left)

    def release_sessions(self) -> None:
        """Every WebSocket client starts its next session at once."""
        self._hold.clear()
        self._release.set()

    def _ws(self, index: int) -> None:
        # The clients' sessions are spread over a session's length, not in step.
        self.done.wait(index * WS_GAP * (WS_MESSAGES - 1) / max(self.ws_clients, 1))
        while not self.done.is_set():
            if self._hold.is_set():
                with self._held:
                    self._waiting += 1
                    self._held.notify_all()
                self._release.wait()
                with self._held:
                    self._waiting -= 1
                continue
            self.sessions.append(self._session())

    def _session(self) -> Session:
        from websockets.sync.client import connect

        url = self.url.replace("http://", "ws://", 1) + "/ws"
        start = time.time()
        server = None
        try:
            with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, proxy=None, ping_interval=None) as ws:
                server = ws.response.headers.get("X-Served-By") if ws.response else None
                for i in range(WS_MESSAGES):
                    if i:
                        time.sleep(WS_GAP)
                    ws.send(f"m{i}")
                    reply = ws.recv(timeout=TIMEOUT)
                    if reply != f"echo: m{i}":
                        ws.close()
                        return Session(start, time.time(), ws.close_code, f"unexpected reply {reply!r}", server)
                ws.close()
                if ws.protocol.close_rcvd_then_sent:
                    error: str | None = f"the server closed first, with code {ws.close_code}"
                elif ws.close_code != 1000:
                    error = f"closed with code {ws.close_code}"
                else:
                    error = None
                return Session(start, time.time(), ws.close_code, error, server)
        except Exception as exc:  # any failure of the session: refused, handshake, closed, timeout
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            return Session(start, time.time(), code, f"{type(exc).__name__}: {exc}", server)
