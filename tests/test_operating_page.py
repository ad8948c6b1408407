"""docs/operating.md as written: its code runs, its shell commands take a real registry out
of rotation and back, and the bodies, log lines and alert rule it shows are the real ones."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from healthprobe import HealthRegistry
from healthprobe.wsgi import HealthApp

from . import doc_pages
from .support import require_binary

DOC = doc_pages.page("operating.md")
PAGE_PATH = "/run/myapp/disabled"


def test_the_call_example_runs_as_written() -> None:
    code = doc_pages.block(DOC, "python", contains="take_out_of_rotation(")
    out = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(out):
        exec(code, namespace)
    assert out.getvalue() == "False api rebuilding the search index\n"
    registry = namespace["registry"]
    assert isinstance(registry, HealthRegistry)
    state = registry.rotation
    assert (state.in_rotation, state.reason, state.source) == (False, "canary held back", "api")
    assert state.until is not None and state.until - state.since == pytest.approx(600, abs=1)


def test_the_disable_file_commands_take_out_and_bring_back_with_the_bodies_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="healthprobe")
    flag = tmp_path / "run" / "myapp" / "disabled"
    flag.parent.mkdir(parents=True)
    code = doc_pages.block(DOC, "python", contains="disable_file=")
    namespace: dict[str, object] = {}
    exec(code.replace(PAGE_PATH, str(flag)), namespace)
    registry = namespace["registry"]
    assert isinstance(registry, HealthRegistry)
    registry.add_check("database", lambda: True)
    registry.mark_started()
    app = HealthApp(registry)
    put, remove = doc_pages.commands(DOC)
    assert put.endswith(f"> {PAGE_PATH}") and remove == f"rm {PAGE_PATH}"
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://x") as client:
        assert client.get("/readyz").status_code == 200
        subprocess.run(["sh", "-c", put.replace(PAGE_PATH, str(flag))], check=True, timeout=10)
        answer = client.get("/readyz?verbose")
        assert answer.status_code == 503
        assert answer.text == doc_pages.block(DOC, "text", starts="[+]database ok")
        document = client.get("/readyz?format=json").text
        shown = re.search(r"`(\{\"status\":\"fail\".*?),\.\.\.\}`", DOC)
        assert shown is not None and document.startswith(shown.group(1) + ",")
        assert client.get("/livez").status_code == 200
        subprocess.run(["sh", "-c", remove.replace(PAGE_PATH, str(flag))], check=True, timeout=10)
        assert client.get("/readyz").status_code == 200
    lines = [r.getMessage() for r in caplog.records if hasattr(r, "rotation")]
    shown_lines = doc_pages.block(DOC, "text", starts="out of rotation:").splitlines()
    assert len(lines) == len(shown_lines) == 2
    assert lines[0] == shown_lines[0]

    def number(line: str) -> str:
        return re.sub(r"\d+\.\d\d s", "N s", line)

    assert number(lines[1]) == number(shown_lines[1])


def test_the_alert_rule_passes_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool", "prometheus")
    rules = yaml.safe_load(doc_pages.block(DOC, "yaml", contains="healthprobe_out_of_rotation"))
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "healthprobe", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
