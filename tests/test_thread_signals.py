"""Every thread healthprobe starts blocks the asynchronous signals, so the kernel delivers a
process's SIGTERM to the main thread, where Python runs its handler at once (signal(7))."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import pytest

import healthprobe
from healthprobe import GracefulShutdown, HealthRegistry

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc/<pid>/task")


def _blocked(native_id: int) -> set[int]:
    """The signals thread ``native_id`` of this process blocks, from /proc."""
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    (mask,) = [line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")]
    bits = int(mask, 16)
    return {number for number in range(1, 65) if bits >> (number - 1) & 1}


def test_healthprobe_threads_block_sigterm_and_sigint_and_the_main_thread_does_not() -> None:
    seen: dict[str, int] = {}

    def record() -> None:
        seen[threading.current_thread().name] = threading.get_native_id()

    async def record_async() -> None:
        record()

    registry = HealthRegistry()
    registry.add_check("sync-check", record, cache_ttl=0)
    registry.add_check("async-check", record_async, cache_ttl=0)
    registry.mark_started()
    shutdown = GracefulShutdown(registry, delay=0)
    shutdown.install()
    server = healthprobe.serve(registry, port=0, host="127.0.0.1")
    try:
        assert httpx.get(server.url + "/readyz", timeout=5).status_code == 200  # a request thread
        registry.run("readiness")  # from this thread: the async check on the private loop
        ours = {t.name: t.native_id for t in threading.enumerate() if t.name.startswith("healthprobe")}
        ours.update(seen)
        names = set(ours)
        assert {"healthprobe-check-sync-check", "healthprobe-checks", "healthprobe-shutdown"} <= names, names
        assert any(name.startswith("healthprobe-probe-server") for name in names), names
        for name, native_id in ours.items():
            assert native_id is not None
            blocked = _blocked(native_id)
            assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP} <= blocked, name
            assert signal.SIGSEGV not in blocked and signal.SIGPIPE not in blocked, name
        assert signal.SIGTERM not in _blocked(threading.main_thread().native_id or 0)
    finally:
        server.stop()
        shutdown.uninstall()
        registry.close()
