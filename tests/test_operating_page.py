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

from healthprobe import CheckResult, HealthRegistry, Status
from healthprobe.wsgi import HealthApp

from . import doc_pages
from .apps import plain_apps
from .support import PYTHON, ROOT, clean_env, require_binary, uvicorn_server, werkzeug_server

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
    put, remove = [c for c in doc_pages.commands(DOC) if not c.startswith("curl ")]
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


# -- guarded details and the admin request -----------------------------------------------------

TOKEN = "page-token-1"


def _numbers(text: str) -> str:
    """``text`` with the times of a rotation document made alike."""
    return re.sub(r'"(since|until)":[0-9.]+', r'"\1":N', text)


def _run_steps(steps: list[doc_pages.Step], url: str) -> None:
    """Run the page's curl lines (its ``$HEALTH_TOKEN`` given) against ``url``; each prints
    what the page shows under it, times aside. A line the page shows no output for is left
    to its own test."""
    port = int(url.rsplit(":", 1)[1])
    for command, shown in steps:
        if not shown:
            continue
        out = doc_pages.run_client(command.replace("$HEALTH_TOKEN", TOKEN), port)
        assert _numbers(out) == _numbers("".join(f"{line}\n" for line in shown)), (command, out)


def test_the_admin_request_example_and_its_transcript(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTH_TOKEN", TOKEN)
    code = doc_pages.block(DOC, "python", contains='rotation_path="/admin/rotation")')
    asgi, _ = plain_apps()
    namespace: dict[str, object] = {"app": asgi}
    exec(code, namespace)
    registry = namespace["registry"]
    assert isinstance(registry, HealthRegistry)
    (steps,) = doc_pages.transcripts(DOC, contains="/admin/rotation")
    with uvicorn_server(namespace["app"]) as url:
        _run_steps(steps, url)
    assert registry.rotation.in_rotation


def _guarded_page_app(monkeypatch: pytest.MonkeyPatch) -> tuple[object, HealthRegistry]:
    """The guard example's app as the page builds it, its networks those of this machine's
    loopback (the page's 10.0.0.0/8 reaches no test), with the checks its bodies show."""
    monkeypatch.setenv("HEALTH_TOKEN", TOKEN)
    code = doc_pages.block(DOC, "python", contains="threads_path=")
    assert '"10.0.0.0/8"' in code
    _, wsgi = plain_apps()
    namespace: dict[str, object] = {"app": wsgi}
    exec(code.replace('"10.0.0.0/8"', '"127.0.0.0/8"'), namespace)
    registry = namespace["registry"]
    assert isinstance(registry, HealthRegistry)
    registry.add_check("cache", lambda: True)
    registry.add_check("database", lambda: CheckResult(Status.FAIL, "connection refused"))
    registry.mark_started()
    return namespace["app"], registry


def test_the_guard_example_and_its_transcript(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = _guarded_page_app(monkeypatch)
    (steps,) = doc_pages.transcripts(DOC, contains="readyz?verbose")
    with werkzeug_server(app) as url:
        _run_steps(steps, url)
        with httpx.Client(base_url=url, trust_env=False) as anyone:
            document = anyone.get("/readyz?format=json").text
    assert document == doc_pages.block(DOC, "json", contains="details withheld").strip()


_THREAD_LINE = re.compile(r'Thread "[^"]+" ident=\d+ daemon=(True|False|\?)')


def test_the_thread_dump_looks_as_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = _guarded_page_app(monkeypatch)
    command = doc_pages.command(DOC, 'curl -s -H "Authorization: Bearer $HEALTH_TOKEN" localhost:8000/debug/')
    shown = doc_pages.block(DOC, "text", starts='Thread "MainThread"').splitlines()
    with werkzeug_server(app) as url:
        out = doc_pages.run_client(command.replace("$HEALTH_TOKEN", TOKEN), int(url.rsplit(":", 1)[1]))
    lines = out.splitlines()
    for page_lines in (shown, lines):
        heads = [line for line in page_lines if line.startswith("Thread ")]
        assert heads and all(_THREAD_LINE.fullmatch(line) for line in heads), heads
        assert all(line.startswith(("Thread ", "  File ", "    ", "  ...")) or not line for line in page_lines), (
            page_lines
        )
    assert lines[0].startswith('Thread "MainThread" ') and lines[1].startswith("  File ")


# -- every python block of the page --------------------------------------------------------------

#: What a block marked as a fragment (its first line) is run after, and with which environment.
FRAGMENTS = {
    "# Fragment: `app` is your ASGI application, and HEALTH_TOKEN is set (from a Secret).": (
        "from tests.apps import plain_apps\napp, _ = plain_apps()\n",
        {"HEALTH_TOKEN": TOKEN},
    ),
    "# Fragment: `app` is your WSGI application, and HEALTH_TOKEN is set (from a Secret).": (
        "from tests.apps import plain_apps\n_, app = plain_apps()\n",
        {"HEALTH_TOKEN": TOKEN},
    ),
    "# Fragment: continues the block above (`registry`, `publisher`).": (None, {}),
}


def test_every_python_block_runs_as_written_or_is_a_marked_fragment(tmp_path: Path) -> None:
    """Each block runs as written in a fresh interpreter (no HEALTH_TOKEN, no ``app``), or
    says on its first line that it is a fragment and what it needs, and runs given that."""
    blocks = doc_pages.blocks(DOC, "python")
    assert len(blocks) >= 9
    env = {k: v for k, v in clean_env().items() if k != "HEALTH_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    for number, code in enumerate(blocks, 1):
        first = code.splitlines()[0]
        extra: dict[str, str] = {}
        if first.startswith("# Fragment"):
            assert first in FRAGMENTS, (number, first)
            prelude, extra = FRAGMENTS[first]
            code = (blocks[number - 2] if prelude is None else prelude) + code
        done = subprocess.run(
            [PYTHON, "-c", code], env={**env, **extra}, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, (number, code, done.stderr)
        if first.startswith("# Fragment") and extra:  # the fragment alone fails: the marker is needed
            alone = doc_pages.blocks(DOC, "python")[number - 1]
            failed = subprocess.run([PYTHON, "-c", alone], env=env, cwd=tmp_path, capture_output=True, timeout=60)
            assert failed.returncode != 0, number


def test_every_block_of_the_page_is_read_by_a_test() -> None:
    """Every block, of any language, is one a test reads: the python blocks by the test
    above, each other one by the test named beside it. A block added to the page fails here
    until a test reads it."""
    read = [
        # test_every_python_block_runs_as_written_or_is_a_marked_fragment (and the targeted
        # tests of this module, tests/test_groups.py, test_transitions.py, test_webhook.py)
        *doc_pages.blocks(DOC, "python"),
        # test_the_disable_file_commands_take_out_and_bring_back_with_the_bodies_shown: its
        # commands, the body and the two log lines
        doc_pages.block(DOC, "console", starts=f'$ echo "rebalancing shards" > {PAGE_PATH}'),
        doc_pages.block(DOC, "text", starts="[+]database ok"),
        doc_pages.block(DOC, "text", starts="out of rotation:"),
        # test_the_alert_rule_passes_promtool
        doc_pages.block(DOC, "yaml", contains="healthprobe_out_of_rotation"),
        # test_the_admin_request_example_and_its_transcript
        doc_pages.block(DOC, "console", contains="/admin/rotation"),
        # test_the_guard_example_and_its_transcript: the transcript and the JSON answer
        doc_pages.block(DOC, "console", contains="readyz?verbose"),
        doc_pages.block(DOC, "json", contains="details withheld"),
        # test_the_thread_dump_looks_as_shown: the command and the dump
        doc_pages.block(DOC, "console", contains="/debug/threads"),
        doc_pages.block(DOC, "text", starts='Thread "MainThread"'),
        # tests/test_groups.py::test_the_operating_page_example_runs_as_written_under_a_real_server
        doc_pages.block(DOC, "text", starts="[+]postgres ok"),
        doc_pages.block(DOC, "json", contains='"wellness group"'),
        # tests/test_transitions.py::test_the_listener_example_prints_what_the_page_shows
        doc_pages.block(DOC, "text", starts="lifecycle lifecycle"),
        # tests/test_transitions.py::test_the_log_lines_shown_are_the_real_ones
        doc_pages.block(DOC, "text", starts="check database: fail"),
        # tests/test_webhook.py::test_the_publisher_example_sends_to_a_real_receiver
        doc_pages.block(DOC, "json", contains='"event":"failing"'),
    ]
    assert sorted(doc_pages.blocks(DOC)) == sorted(read)
