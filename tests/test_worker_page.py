"""docs/frameworks/worker.md run as written: ``python worker.py`` against a private
redis-server on an ephemeral port, which the test stops and starts again.

The jobs the page's ``redis-cli`` lines give are done; with Redis down, ``/livez`` stays 200
for more than twice the heartbeat's bound while ``/readyz`` is 503, and with Redis back the
worker takes jobs again; a ``SIGTERM`` during a job fails readiness at once, keeps liveness,
lets the job finish and ends the worker with 0.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from . import doc_pages
from .support import PrivateRedis, free_port, require_binary, run_server, status, wait_until

pytestmark = pytest.mark.slow

PAGE = doc_pages.page("frameworks/worker.md")
#: The heartbeat's bound in this test (the page reads WORKER_MAX_INTERVAL), in seconds.
MAX_INTERVAL = 2.0


class Redis(PrivateRedis):
    """A private redis-server on an ephemeral loopback port, stopped and started at will."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.cli = require_binary("redis-cli", "redis-tools")

    def push(self, job: dict[str, object]) -> None:
        doc_pages.run_client(f"redis-cli rpush jobs {shlex.quote(json.dumps(job))}", self.port)

    def done(self) -> list[str]:
        out = subprocess.run(
            [self.cli, "-p", str(self.port), "lrange", "jobs:done", "0", "-1"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return out.split()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    with Redis(tmp_path) as server:
        server.start()
        yield server


def test_probe_block() -> None:
    container = doc_pages.probe_port_container(PAGE)
    assert container["command"] == shlex.split(doc_pages.command(PAGE, "python"))
    assert container["ports"] == [{"name": "probes", "containerPort": 8081}]
    assert 'os.environ.get("PROBE_PORT", "8081")' in PAGE


def test_worker_page(redis: Redis, tmp_path: Path) -> None:
    project = doc_pages.write_project(PAGE, tmp_path / "project")
    port = free_port()
    env = {
        "PYTHONPATH": str(project),
        "REDIS_URL": redis.url,
        "PROBE_PORT": str(port),
        "WORKER_MAX_INTERVAL": str(MAX_INTERVAL),
    }
    line = doc_pages.command(PAGE, "python")
    argv = doc_pages.argv(line, port)
    with run_server(argv, port, tmp_path, env=env, name="worker", cwd=project, timeout=30) as server:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            for path in ("/startupz", "/readyz", "/livez"):
                doc_pages.wait_status(client, path, 200, log=server.output)

            # The page's redis-cli lines print what the page shows.
            cli = [c for c in doc_pages.commands(PAGE) if c.startswith("redis-cli ")]
            assert [c.split()[1] for c in cli] == ["rpush", "lrange"]

            def job_1_done(command: str) -> None:
                if " lrange " in command:
                    wait_until(lambda: redis.done() == ["job-1"], 10, "job-1 is done", server.output)

            for steps in doc_pages.transcripts(PAGE, "redis-cli"):
                doc_pages.run_transcript(steps, redis.port, before=job_1_done, log=server.output)

            # Redis down: readiness fails, liveness passes for more than twice its bound.
            redis.stop()
            stopped = time.monotonic()
            observed: list[tuple[float, str, int | None]] = []
            while time.monotonic() - stopped < 2 * MAX_INTERVAL + 1.0:
                now = time.monotonic() - stopped
                observed += [(now, "/livez", status(client, "/livez")), (now, "/readyz", status(client, "/readyz"))]
                time.sleep(0.2)
            assert all(code == 200 for _, path, code in observed if path == "/livez"), observed
            failing = [t for t, path, code in observed if path == "/readyz" and code == 503]
            assert failing and failing[0] < 2.0, observed
            assert all(code == 503 for t, path, code in observed if path == "/readyz" and t >= failing[0]), observed
            body = client.get("/readyz?verbose").text
            assert "[-]redis failed: reason withheld" in body, body
            log = server.output()
            assert "WARNING worker: redis unavailable (" in log and "); waiting for it" in log, log
            assert re.search(r"check worker: warn \(waiting for redis for [\d.]+ s\)", log), log
            assert "check redis: fail (ConnectionError: " in log, log

            # Redis back on the same port: both pass, the worker takes jobs again.
            redis.start()
            doc_pages.wait_status(client, "/readyz", 200, 20, log=server.output)
            wait_until(lambda: "[+]worker ok" in client.get("/livez?verbose").text, 20, "beats", server.output)
            assert "INFO worker: redis is back" in server.output()
            redis.push({"id": "job-2", "seconds": 0})
            wait_until(lambda: redis.done() == ["job-2"], 10, "job-2 is done", server.output)

            # SIGTERM during a job: readiness fails at once, liveness passes, the job ends.
            redis.push({"id": "job-3", "seconds": 1.5})
            server.wait_for_output("job job-3: 1.5 s", timeout=10)
            assert "healthprobe_in_flight_requests 1.0" in client.get("/metrics").text
            server.signal(signal.SIGTERM)
            wait_until(lambda: status(client, "/readyz") == 503, 1.5, "readiness fails at once", server.output)
            assert "job-3" not in redis.done()
            lives: list[int | None] = []
            while "job-3" not in redis.done():
                lives.append(status(client, "/livez"))
                time.sleep(0.1)
            assert lives and all(code == 200 for code in lives), lives
            assert server.wait(30) == 0, server.output()
        log = server.output()
        assert "shutdown: SIGTERM received" in log
        assert "shutdown: hook 'close_redis' finished" in log, log
        assert "graceful shutdown is OFF" not in log
        assert redis.done() == ["job-2", "job-3"]
