"""docs/index.md shows real answers: its example bodies are what the adapters produce, its
JSON is valid, and its Kubernetes manifest probes paths that healthprobe serves."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from healthprobe import CheckResult, HealthRegistry, Status
from healthprobe.http import DEFAULT_PATHS
from healthprobe.wsgi import HealthApp

from . import doc_pages
from .support import ROOT, started_registry

DOC = doc_pages.page("index.md")


def blocks(language: str) -> list[str]:
    return doc_pages.blocks(DOC, language)


def _disk() -> CheckResult:
    return CheckResult(Status.WARN, output="91% used", observed_value=91.2, observed_unit="%")


def _cache() -> None:
    raise ConnectionError("connection refused")


def docs_registry() -> HealthRegistry:
    """The checks the examples show: database passes, disk warns, cache raises."""
    return started_registry(
        {
            "database": (lambda: True, {"probes": ["readiness", "liveness"]}),
            "disk": (_disk, {"critical": False}),
            "cache": _cache,
        }
    )


def client(registry: HealthRegistry, **options: object) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=HealthApp(registry, **options)), base_url="http://x")  # type: ignore[arg-type]


def test_console_examples_are_real_answers() -> None:
    consoles = blocks("console")
    with client(docs_registry()) as http:
        livez = http.get("/livez")
        readyz = http.get("/readyz")
    assert f"HTTP/1.1 200 OK\ncontent-type: {livez.headers['content-type']}" in consoles[0]
    assert consoles[0].endswith("\n\n" + livez.text)
    assert readyz.status_code == 503
    assert consoles[1].endswith("\n\n" + readyz.text)


def test_text_examples_are_real_answers() -> None:
    texts = blocks("text")
    registry = docs_registry()
    with client(registry, expose_output=True) as exposed:
        assert exposed.get("/readyz").text in texts
    registry.begin_drain()
    registry.remove_check("disk")
    registry.remove_check("cache")
    with client(registry) as http:
        assert http.get("/readyz").text in texts


def test_json_example_has_the_real_shape() -> None:
    (example,) = [json.loads(block) for block in blocks("json")]
    registry = docs_registry()
    registry.begin_drain()
    with client(registry) as http:
        real = http.get("/readyz?format=json").json()

    def shape(document: dict[str, object]) -> object:
        checks = document["checks"]
        assert isinstance(checks, dict)
        return (
            {k: v for k, v in document.items() if k != "checks"},
            {
                name: [{k: v for k, v in item.items() if k != "time"} for item in items]
                for name, items in checks.items()
            },
        )

    assert shape(example) == shape(real)


def test_manifest_probes_served_paths() -> None:
    (manifest,) = [yaml.safe_load(block) for block in blocks("yaml")]
    (container,) = manifest["spec"]["containers"]
    probes = {
        "startupProbe": "startup",
        "readinessProbe": "readiness",
        "livenessProbe": "liveness",
    }
    for field, probe in probes.items():
        spec = container[field]
        assert DEFAULT_PATHS[spec["httpGet"]["path"]].value == probe
        assert spec["timeoutSeconds"] >= 1  # above the default 0.8 s check deadline


def test_every_launch_path_is_in_the_table_of_kubernetes_md() -> None:
    """docs/kubernetes.md names the test row of every launch path that tests/launch_paths.py
    proves, and every row of the rolling restarts behind HAProxy in its figures."""
    from .haproxy import CONTROL, ROWS
    from .launch_paths import ROWS as LAUNCH_PATHS

    text = doc_pages.page("kubernetes.md")
    missing = [row.name for row in LAUNCH_PATHS if f"`{row.name}`" not in text]
    missing += [name for name in [*ROWS, *CONTROL] if f"| {name} |" not in text]
    assert not missing, missing


def test_the_stream_that_ends_itself_at_shutdown_as_kubernetes_md_shows_it() -> None:
    """docs/kubernetes.md's server-sent event stream, run as written in a Starlette app: it
    ticks until the delay is over, then ends by itself with ``bye``."""
    from collections.abc import AsyncIterator

    import anyio
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse

    from healthprobe.shutdown import GracefulShutdown

    snippet = doc_pages.block(doc_pages.page("kubernetes.md"), "python", contains="wait_stopping()")
    registry = HealthRegistry()
    shutdown = GracefulShutdown(registry, delay=0.3)
    namespace: dict[str, object] = {
        "AsyncIterator": AsyncIterator,
        "anyio": anyio,
        "StreamingResponse": StreamingResponse,
        "shutdown": shutdown,
        "app": Starlette(),
    }
    exec(snippet, namespace)

    async def main() -> str:
        transport = httpx.ASGITransport(app=namespace["app"])  # type: ignore[arg-type]
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://x") as client,
            anyio.create_task_group() as group,
        ):
            group.start_soon(anyio.to_thread.run_sync, shutdown.begin)
            response = await client.get("/events")
        return response.text

    body = anyio.run(main)
    assert body.startswith("data: tick\n\n") and body.endswith("data: bye\n\n"), body
    shutdown.finish()


@pytest.mark.slow
def test_the_testing_page_example_runs_as_written(tmp_path: Path) -> None:
    """docs/testing.md's test file, run by the page's own ``pytest`` line in a project of a
    user's (its ``tests/`` and the clone's ``examples/``; the plugin from its entry point, none
    of this suite's conftest or settings): its four tests pass. With the shutdown delay set
    to 0, its rollout test fails as the page shows: the requests refused by the old replica,
    and the same steps in its timeline."""
    text = doc_pages.page("testing.md")
    ((name, example),) = doc_pages.files(text).items()
    assert name == "tests/test_deployment.py"
    assert "SHUTDOWN_DELAY = 1.5" in example
    (line,) = [x for body in doc_pages.blocks(text, "sh") for x in body.splitlines() if x.startswith("pytest ")]
    argv = doc_pages.argv(shlex.join(shlex.split(line, comments=True)), 0)  # this venv's pytest
    assert argv[1:] == [name], line
    (tmp_path / "tests").mkdir()
    (tmp_path / name).write_text(example)
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # the paths the file names, from the root
    control = "tests/test_control.py"
    (tmp_path / control).write_text(example.replace("SHUTDOWN_DELAY = 1.5", "SHUTDOWN_DELAY = 0"))
    # The page's argv as written; from the environment, no cache written and warnings as errors.
    env = {**os.environ, "PYTEST_ADDOPTS": "-p no:cacheprovider -W error"}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "4 passed" in done.stdout, done.stdout + done.stderr
    control_argv = [*argv[:-1], f"{control}::test_a_rollout_loses_no_request"]
    done = subprocess.run(control_argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "1 failed" in out, out

    shown = doc_pages.block(text, "text", starts="AssertionError: rollout:")
    failure = "\n".join(line.removeprefix("E").strip() for line in out.splitlines() if line.startswith("E "))
    assert re.search(r"AssertionError: rollout: \d+ failed of \d+ requests", failure), out
    assert "old  ConnectError: [Errno 111] Connection refused" in failure, out

    def steps(lines: str) -> set[str]:
        timeline = lines.split("timeline (real seconds since the rollout began):\n", 1)[1].split("failures:", 1)[0]
        return {re.sub(r"\d+(\.\d+)?", "N", line.strip().split(None, 1)[1]) for line in timeline.splitlines()}

    assert steps(shown) == steps(failure), out
