"""The admin rotation request under a real ``gunicorn -w 3``: with the registry's disable
file, one request takes every worker of the container out of rotation and back; without
one, it reaches the one worker that answered, says so in its answer (``"scope":
"process"``) and warns in the log."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from healthprobe.testing import free_port

from .support import BIN, run_server

TOKEN = "workers-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORKERS = 3


def _gunicorn(port: int) -> list[str]:
    return [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "-w", str(WORKERS), "tests.apps.admin_workers:app"]


def _states(url: str, timeout: float = 30.0) -> dict[int, str]:
    """Each worker's readiness, from ``/who``, asked on new connections until every worker
    has answered once (sync workers take connections in turn, not in order)."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < WORKERS:
        assert time.monotonic() < deadline, f"only workers {seen} answered within {timeout} s"
        answer = httpx.get(url + "/who", timeout=5, trust_env=False)
        pid, state = answer.text.split()
        seen.setdefault(int(pid), state)
    return seen


def _post(url: str, **body: str) -> dict[str, object]:
    answer = httpx.post(url + "/admin/rotation", data=body, headers=AUTH, timeout=5, trust_env=False)
    assert answer.status_code == 200, answer.text
    document: dict[str, object] = answer.json()
    return document


def test_one_request_takes_every_worker_out_and_back_through_the_disable_file(tmp_path: Path) -> None:
    flag = tmp_path / "disabled"
    port = free_port()
    env = {"HP_GUARD_TOKEN": TOKEN, "HP_DISABLE_FILE": str(flag)}
    with run_server(_gunicorn(port), port, tmp_path, env=env) as server:
        url = f"http://127.0.0.1:{port}"
        assert set(_states(url).values()) == {"pass"}, server.output()
        out = _post(url, action="out", reason="rebalancing shards")
        assert (out["in_rotation"], out["source"], out["scope"]) == (False, "file", "file")
        assert flag.read_text() == "rebalancing shards\n"
        assert set(_states(url).values()) == {"fail"}, server.output()
        probes = [httpx.get(url + "/readyz", timeout=5, trust_env=False) for _ in range(3 * WORKERS)]
        assert {(p.status_code, p.text) for p in probes} == {
            (503, "[-]lifecycle failed: out of rotation: rebalancing shards\nreadyz check failed\n")
        }
        # A chunked body (no Content-Length): gunicorn sets wsgi.input_terminated.
        too_big = httpx.post(
            url + "/admin/rotation", content=iter([b"a" * 3000, b"b" * 3000]), headers=AUTH, timeout=5, trust_env=False
        )
        assert (too_big.status_code, too_big.text) == (413, "body larger than 4096 bytes\n")
        chunked = httpx.post(url + "/admin/rotation", content=iter([b"action=", b"in"]), headers=AUTH, trust_env=False)
        assert chunked.status_code == 200, chunked.text
        back = chunked.json()
        assert (back["in_rotation"], back["scope"]) == (True, "file")
        assert not flag.exists()
        assert set(_states(url).values()) == {"pass"}, server.output()
        assert all(httpx.get(url + "/readyz", timeout=5, trust_env=False).status_code == 200 for _ in range(WORKERS))


def test_without_a_disable_file_the_request_reaches_one_worker_and_says_so(tmp_path: Path) -> None:
    port = free_port()
    with run_server(_gunicorn(port), port, tmp_path, env={"HP_GUARD_TOKEN": TOKEN}) as server:
        url = f"http://127.0.0.1:{port}"
        assert set(_states(url).values()) == {"pass"}
        out = _post(url, action="out", reason="one only")
        assert (out["in_rotation"], out["source"], out["scope"]) == (False, "admin", "process")
        states = _states(url)
        assert sorted(states.values()) == ["fail", "pass", "pass"], states
        log = server.wait_for_output("changed this worker process")
        assert log.count("changed this worker process") == 1, log
        assert "give the registry a disable_file" in log
