"""Helpers shared by the tests: ephemeral ports, real server processes, service discovery."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    """An ephemeral loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, *, host: str = "127.0.0.1", timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode} before listening:\n{out}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout} s")


class ServerProcess:
    """A server started as its own process; output goes to a file read on demand."""

    def __init__(
        self, args: Sequence[str], port: int, *, env: dict[str, str] | None = None, cwd: Path = ROOT, log: Path
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **(env or {})}
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(args), cwd=cwd, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise TimeoutError(f"server did not listen on {self.port} within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def run_server(
    args: Sequence[str], port: int, tmp_path: Path, *, env: dict[str, str] | None = None, name: str = "server"
) -> Iterator[ServerProcess]:
    """Start ``args`` as a process, wait until ``port`` accepts, and always kill it at the end."""
    server = ServerProcess(args, port, env=env, log=tmp_path / f"{name}.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def http_client(server: ServerProcess, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=timeout)


def require_service(host: str, port: int, what: str) -> None:
    """Skip the test when ``what`` is not reachable, unless HEALTHPROBE_REQUIRE_SERVICES=1
    (set in CI), where a missing service fails the test instead."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        message = f"{what} not reachable on {host}:{port}: {exc}"
        if os.environ.get("HEALTHPROBE_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def require_binary(name: str, package: str) -> str:
    """The path of executable ``name``; skip the test when it is missing, unless
    HEALTHPROBE_REQUIRE_SERVICES=1 (set in CI), where a missing binary fails the test."""
    import shutil

    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not found on PATH (Debian package {package!r})"
    if os.environ.get("HEALTHPROBE_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)
