"""The recipes of docs/index.md and README.md, run as written: each code block is copied into
a project of its own, served by the commands the docs name, probed, and stopped with SIGTERM.
(The framework pages of docs/frameworks/ are run by their own tests.)"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from . import doc_pages
from .support import BIN, ROOT, ServerProcess, free_port, run_server, stop_gracefully, wait_until

pytestmark = pytest.mark.slow

DOC = doc_pages.page("index.md")

#: Stands for the docs' ``health.py``: a registry with one check, and logging that shows
#: healthprobe's lines.
HEALTH = """
import logging

from healthprobe import HealthRegistry

logging.basicConfig(level=logging.INFO, format="%(process)d %(name)s %(levelname)s %(message)s")
logging.getLogger("healthprobe.shutdown").setLevel(logging.DEBUG)  # "handlers installed in process N"
registry = HealthRegistry()
registry.add_check("database", lambda: True)
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


#: Appended to a recipe: a cleanup hook on the coordinator it built, that says it ran.
HOOK = """
from healthprobe.shutdown import current as _current

_current().add_hook(lambda: print("hook ran", flush=True), name="close_pool")
"""


def _with_hook(recipe: str) -> str:
    return recipe + HOOK


@contextlib.contextmanager
def _served(command: list[str], cwd: Path, tmp_path: Path, name: str) -> Iterator[ServerProcess]:
    port = free_port()
    argv = [c.replace("PORT", str(port)) for c in command]
    with run_server(argv, port, tmp_path, env={"PYTHONPATH": str(cwd)}, name=name, cwd=cwd, timeout=30) as server:
        yield server


def _ready(server: ServerProcess, client: httpx.Client) -> None:
    wait_until(
        lambda: client.get("/readyz").status_code == 200, 20, "/readyz answering 200", server.output, interval=0.1
    )


def _probe_then_stop(server: ServerProcess, workers: int) -> str:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        _ready(server, client)
        assert client.get("/livez").status_code == 200
        assert client.get("/").status_code in (200, 404)  # the app answers (the recipe adds no route)
    log = stop_gracefully(server, workers=workers)  # once every worker booted
    assert log.count("hook ran") == workers, log
    assert log.count("exit code 0") == workers, log
    return log


@pytest.mark.parametrize(
    ("name", "command", "workers"),
    [
        ("gunicorn", [str(BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:PORT", "myapp:create_app()"], 2),
        ("waitress", [str(BIN / "waitress-serve"), "--listen=127.0.0.1:PORT", "--call", "myapp:create_app"], 1),
    ],
)
def test_flask_recipe(name: str, command: list[str], workers: int, tmp_path: Path) -> None:
    project = tmp_path / "project"
    _write(project / "myapp" / "health.py", HEALTH)
    hook = '\nhealth.on_shutdown(lambda: print("hook ran", flush=True), name="close_pool")\n'
    _write(project / "myapp" / "__init__.py", doc_pages.block(DOC, "python", starts="# myapp/__init__.py\n") + hook)
    with _served(command, project, tmp_path, name) as server:
        _probe_then_stop(server, workers)


README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("uvicorn", [str(BIN / "uvicorn"), "--port", "PORT", "app:app"]),
        (
            "gunicorn-uvicorn-worker",
            [str(BIN / "gunicorn"), "-k", "uvicorn_worker.UvicornWorker", "-b", "127.0.0.1:PORT", "app:app"],
        ),
        ("hypercorn", [str(BIN / "hypercorn"), "--workers", "0", "-b", "127.0.0.1:PORT", "app:app"]),
    ],
)
def test_readme_quickstart(name: str, command: list[str], tmp_path: Path) -> None:
    """The README's first code block, as ``app.py``, under each command its shell block
    names: it serves the app, the probes and metrics (the coordinator's in-flight series
    included), and stops on SIGTERM with its hook run."""
    quickstart = doc_pages.block(README, "python", starts="# app.py\n")
    shell = doc_pages.blocks(README, "sh")[0]
    assert "uvicorn app:app" in shell and "uvicorn_worker.UvicornWorker app:app" in shell
    assert "hypercorn --workers 0 app:app" in shell
    project = tmp_path / "project"
    _write(project / "app.py", _with_hook(quickstart))
    with _served(command, project, tmp_path, name) as server:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            _ready(server, client)
            assert client.get("/").json() == {"hello": "world"}
            metrics = client.get("/metrics").text
            assert 'healthprobe_check_status{check="disk"' in metrics
            assert "healthprobe_in_flight_requests" in metrics  # shutdown= given with metrics=True
        server.signal(signal.SIGTERM)
        code = server.wait(30)
        log = server.output()
    assert code == 0, log
    assert "hook ran" in log, log
