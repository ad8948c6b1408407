"""Every socket healthprobe binds gives its connections ``TCP_NODELAY``.

Without it a response written in two pieces (headers, then body) on a kept-alive connection
waits for the client's delayed ACK before its second piece leaves: Nagle's algorithm (RFC 896)
against delayed acknowledgement, at least 40 ms on Linux (``TCP_DELACK_MIN``). asyncio sets
the option on an accepted connection only when the listening socket object was created with
``proto=IPPROTO_TCP``; the node demo's was created with ``proto=0``, and 50 requests on one
connection took 2.2 s instead of 0.04 s.

Each server here is checked two ways:

* the option itself, read on the server's own accepted socket: the test finds the socket of
  its connection in the server process (``/proc/net/tcp`` gives the inode, ``/proc/<pid>/fd``
  the descriptor), takes a copy with ``pidfd_getfd(2)`` (Linux 5.6; the server is the test's
  child, which ptrace's rules let a parent inspect) and calls ``getsockopt``;
* the cost that matters, for servers that keep connections alive: 50 requests on one
  connection, whose median must stay under half the 40 ms delayed-ACK floor.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import pytest

import healthprobe
from healthprobe import HealthRegistry

from .support import PYTHON, free_port, run_server, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: Linux's floor for a delayed ACK (``TCP_DELACK_MIN``, HZ/25), in seconds: with Nagle's
#: algorithm on, no response after the first on a kept-alive connection comes sooner.
DELAYED_ACK = 0.040

_SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture (unified syscall table)


# -- reading the option on the server's side ---------------------------------------------------


def _inode(server_port: int, client_port: int) -> int:
    """The inode of the server side of the loopback connection ``client_port`` ->
    ``server_port`` (``/proc/net/tcp``, ``/proc/net/tcp6``: ports in hexadecimal)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                    return int(fields[9])
    raise AssertionError(f"no server socket for 127.0.0.1:{client_port} -> {server_port} in /proc/net/tcp")


def _processes(root: int) -> list[int]:
    """``root`` and its descendants (worker processes), from ``/proc/<pid>/task/*/children``."""
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    queue.extend(int(child) for child in children.read().split())
    return found


def _descriptor(pids: list[int], inode: int) -> tuple[int, int]:
    """``(pid, fd)`` of the process among ``pids`` that holds socket ``inode``."""
    target = f"socket:[{inode}]"
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid, int(fd)
    raise AssertionError(f"no process of {pids} holds {target}")


def _server_descriptor(root: int, server_port: int, client: socket.socket, timeout: float = 10.0) -> tuple[int, int]:
    """``(pid, fd)`` of the server's socket for connection ``client``, once a process of
    ``root``'s tree has accepted it (a connection still in the listen backlog has inode 0)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _descriptor(_processes(root), _inode(server_port, client.getsockname()[1]))
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def server_nodelay(root: int, server_port: int, client: socket.socket) -> int | None:
    """``TCP_NODELAY`` of the server's socket for connection ``client``, read in the process
    tree of ``root`` that holds it; ``None`` when this kernel does not let the test copy
    another process's descriptor (no ``pidfd_getfd``, or a sandbox that forbids it)."""
    pid, fd = _server_descriptor(root, server_port, client)
    if pid == os.getpid():
        copy = os.dup(fd)
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        pidfd = os.pidfd_open(pid)
        try:
            copy = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
            if copy < 0:
                error = ctypes.get_errno()
                if error in (errno.ENOSYS, errno.EPERM, errno.EACCES):
                    return None
                raise OSError(error, os.strerror(error))
        finally:
            os.close(pidfd)
    with socket.socket(fileno=copy) as sock:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def assert_nodelay(root: int, server_port: int, client: socket.socket) -> None:
    value = server_nodelay(root, server_port, client)
    if value is None:
        if os.environ.get("HEALTHPROBE_REQUIRE_SERVICES") == "1":
            pytest.fail("pidfd_getfd(2) is not available: the option cannot be read on the server's side")
        return  # the timing below still proves it for the keep-alive servers
    assert value != 0, "TCP_NODELAY is not set on the server's accepted socket"


# -- timing a kept-alive connection ------------------------------------------------------------


def _read_response(sock: socket.socket, buffer: bytearray) -> None:
    """Read one response with a ``Content-Length`` from ``sock`` (what follows stays in
    ``buffer``)."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        assert data, "connection closed before a whole response"
        buffer += data
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    end = len(head) + 4 + length
    while len(buffer) < end:
        data = sock.recv(65536)
        assert data, "connection closed before a whole response"
        buffer += data
    del buffer[:end]


def keep_alive_latencies(sock: socket.socket, path: str = "/livez", requests: int = 50) -> list[float]:
    """Seconds each of ``requests`` GETs took on the one kept-alive connection ``sock``."""
    sock.settimeout(10.0)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    buffer = bytearray()
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        sock.sendall(request)
        _read_response(sock, buffer)
        latencies.append(time.perf_counter() - started)
    return latencies


def assert_fast_keep_alive(sock: socket.socket) -> float:
    """50 requests on ``sock``: their median is well under the delayed-ACK floor. Returns it."""
    latencies = keep_alive_latencies(sock)
    median = statistics.median(latencies[1:])  # the first rides on the handshake's quick ACKs
    assert median < DELAYED_ACK / 2, f"median {median * 1000:.1f} ms per kept-alive request: Nagle's algorithm is on"
    return median


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10.0)


# -- the servers -------------------------------------------------------------------------------


def test_node_demo_asgi_keeps_alive_without_delayed_acks(tmp_path: Path) -> None:
    """The reported case: the ASGI demo binds its own socket and hands it to uvicorn."""
    port = free_port()
    env = {"HOST": "127.0.0.1", "PORT": str(port), "HEALTHY_FILE": str(tmp_path / "healthy")}
    with (
        run_server(
            [PYTHON, "-m", "examples.node_demo.asgi_app"], port, tmp_path, env=env, name="asgi-demo", timeout=30
        ) as server,
        connect(port) as client,
    ):
        assert_fast_keep_alive(client)
        assert_nodelay(server.proc.pid, port, client)


def test_node_demo_wsgi_sets_the_option(tmp_path: Path) -> None:
    """Werkzeug closes each connection after its answer, so no delay shows; the option is
    set all the same (the listening socket's, inherited)."""
    port = free_port()
    env = {"HOST": "127.0.0.1", "PORT": str(port), "HEALTHY_FILE": str(tmp_path / "healthy")}
    with (
        run_server(
            [PYTHON, "-m", "examples.node_demo.wsgi_app"], port, tmp_path, env=env, name="wsgi-demo", timeout=30
        ) as server,
        connect(port) as client,
    ):
        client.sendall(b"GET /livez HTTP/1.1\r\n")  # half a request: the connection stays open
        value = server_nodelay(server.proc.pid, port, client)
        if value is None:
            if os.environ.get("HEALTHPROBE_REQUIRE_SERVICES") == "1":
                pytest.fail("pidfd_getfd(2) is not available")
            pytest.skip("pidfd_getfd(2) is not available: the option cannot be read on the server's side")
        assert value != 0


SOCKET_OF_ITS_OWN = """
import asyncio, socket, sys
import uvicorn
import healthprobe.servers.uvicorn
from tests.apps.shutdown_asgi import app, shutdown

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0, as the demo's was
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), loop="asyncio")
sys.exit(asyncio.run(healthprobe.servers.uvicorn.serve(config, shutdown, sockets=[sock])))
"""


def test_servers_uvicorn_serve_sets_it_on_a_socket_of_the_callers(tmp_path: Path) -> None:
    """``healthprobe.servers.uvicorn.serve(..., sockets=[sock])`` with a socket made
    ``socket.socket(AF_INET, SOCK_STREAM)``: asyncio's own rule would leave Nagle on."""
    port = free_port()
    with (
        run_server(
            [PYTHON, "-c", SOCKET_OF_ITS_OWN, str(port)], port, tmp_path, name="uvicorn-own-socket", timeout=30
        ) as server,
        connect(port) as client,
    ):
        assert_fast_keep_alive(client)
        assert_nodelay(server.proc.pid, port, client)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["-m", "tests.apps.shutdown_asgi", "uvicorn-workers", "{port}"], id="run_workers"),
        pytest.param(
            [
                "-m",
                "uvicorn",
                "tests.apps.shutdown_asgi:app",
                "--port",
                "{port}",
                "--workers",
                "2",
                "--loop",
                "asyncio",
            ],
            id="uvicorn-cli-workers",
        ),
    ],
)
def test_worker_processes_have_it(command: list[str], tmp_path: Path) -> None:
    """``run_workers`` sets the option on the socket its workers share; uvicorn's own
    ``--workers`` (not healthprobe's code) binds with ``proto=IPPROTO_TCP``, so asyncio sets
    it in each worker: both are measured, so that a change in uvicorn shows here."""
    port = free_port()
    args = [PYTHON, *(part.format(port=port) for part in command)]
    with run_server(args, port, tmp_path, name="workers", timeout=30) as server, connect(port) as client:
        keep_alive_latencies(client, requests=1)  # answered: a worker holds the connection
        assert_fast_keep_alive(client)
        assert_nodelay(server.proc.pid, port, client)


def test_probe_server_sets_it_while_waiting_and_while_answering() -> None:
    """The standalone probe server, in this process: a connection still sending its request
    has the option (inherited from the listening socket), and so has one being answered
    (set by the request handler)."""
    release = threading.Event()
    registry = HealthRegistry(default_cache_ttl=0)
    registry.add_check("slow", lambda: release.wait(5.0), probes=["liveness"], timeout=5.0)
    registry.mark_started()
    with healthprobe.serve(registry, "127.0.0.1", 0) as server:
        with connect(server.port) as waiting:
            waiting.sendall(b"GET /livez HTTP/1.1\r\n")
            assert server_nodelay(os.getpid(), server.port, waiting) == 1
        with connect(server.port) as answering:
            answering.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(
                lambda: "probe-request" in " ".join(t.name for t in threading.enumerate()), 20, "a request thread"
            )
            assert server_nodelay(os.getpid(), server.port, answering) == 1
            release.set()
            buffer = bytearray()
            _read_response(answering, buffer)
    registry.close()


if sys.platform != "linux":  # pragma: no cover - /proc and pidfd_getfd are Linux's
    pytestmark.append(pytest.mark.skip(reason="reads /proc and uses pidfd_getfd(2): Linux only"))
