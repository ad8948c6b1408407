"""docs/kubelet.md run as written: its commands against the node demo, its Python example,
and its rule table kept in step with the rule tests."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from .doc_pages import block, blocks, page
from .support import BIN, PYTHON, ROOT, free_port

pytestmark = pytest.mark.slow

PAGE = page("kubelet.md")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def transcripts() -> list[tuple[str, list[str]]]:
    """Each ``console`` block: its command and the lines it shows."""
    found = []
    for body in blocks(PAGE, "console"):
        command, *shown = body.splitlines()
        assert command.startswith("$ healthprobe kubelet ")
        found.append((command[2:], shown))
    return found


def columns(line: str) -> tuple[str, str, str]:
    """An event line as (type, event, message with every number as N)."""
    _t, kind, event, message = line.split(None, 3)
    return kind, event, _NUMBER.sub("N", message)


def run(command: str, port: int) -> subprocess.CompletedProcess[str]:
    # The page's port is the demo's default; the test's is a free one (every "=8080": the
    # local side of --port-map and the demo's PORT).
    argv = shlex.split(command.replace("=8080", f"={port}"))
    argv[0] = str(BIN / "healthprobe")
    argv[argv.index("--cmd") + 1] = argv[argv.index("--cmd") + 1].replace("python", PYTHON, 1)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("index", range(len(transcripts())))
def test_console_blocks_print_what_the_page_shows(index: int) -> None:
    command, shown = transcripts()[index]
    done = run(command, free_port())
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()

    # The startup probe's failures before the demo answers depend on how fast it starts:
    # compare them by their kind, everything else line by line.
    def normal(lines: list[str]) -> list[tuple[str, str, str]]:
        found = []
        for line in lines:
            kind, event, message = columns(line)
            if message.startswith("node-demo: Startup probe failed: "):
                if found and found[-1][1] == "StartupFailed":
                    continue
                event, message = "StartupFailed", ""
            found.append((kind, event, message))
        return found

    assert normal(printed) == normal(shown), done.stdout


def test_the_python_example_runs(tmp_path: Path) -> None:
    source = block(PAGE, "python", starts="# check_probes.py")
    port = free_port()
    script = tmp_path / "check_probes.py"
    script.write_text(source)
    env = {**os.environ, "PORT": str(port)}
    done = subprocess.run([PYTHON, str(script)], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ready at 20s\n"


def test_the_text_example_is_the_http_liveness_replay() -> None:
    """The ``text`` block is what tests/test_kubelet_node_demo.py sees for
    pod-liveness-http.yaml: the same messages, in the same order."""
    (shown,) = blocks(PAGE, "text")
    events = [columns(line)[1] for line in shown.splitlines()]
    assert events == ["Started", "Ready", "Unhealthy", "Unhealthy", "Unhealthy", "Killing", "NotReady"]
    assert "HTTP probe failed with statuscode: 500" in shown


def test_every_rule_in_the_table_cites_a_tested_source() -> None:
    tests = "".join(
        (ROOT / "tests" / name).read_text() for name in ("test_kubelet_rules.py", "test_kubelet_manifests.py")
    )
    sources = re.findall(r"^\| .*? \| (.*) \|$", PAGE.split("## The rules")[1].split("What it does")[0], re.M)
    files = {name for cell in sources[1:] for name in re.findall(r"`([\w/]+\.go)`", cell)}
    assert files, sources
    cited = {Path(name).name for name in files}
    for name in cited:
        assert name in tests, f"no rule test cites {name}"
