"""Run a documentation page as written: the files its code blocks name, the commands its
console blocks give, and the probe block it shows for Kubernetes.

A page marks a complete file by a first line that is a comment naming it, relative to the
project root (``# myapp/main.py``, ``# gunicorn.conf.py``, ``# mysite/settings.py``); a
``console`` block gives shell commands as ``$ command`` lines, each followed by the output it
prints. A page test writes the files into a fresh project, runs one of the page's commands
under a real server, probes, scrapes and stops it with SIGTERM, runs the page's ``curl`` (or
``redis-cli``) lines against it and compares what they print with what the page shows
(:func:`transcripts`, :func:`run_transcript`), so no page can rot without a red test.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from .support import BIN, PYTHON, ROOT, ServerProcess, free_port, require_binary, run_server, wait_until

DOCS = ROOT / "docs"

#: A fenced block, at the margin or indented (inside a content tab ``=== "FastAPI"``, an
#: admonition or a list item): its indent, language and body, up to the closing fence at the
#: same indent.
_BLOCK = re.compile(r"^([ \t]*)```([\w+-]*)[^\n]*\n(.*?)^\1```[ \t]*$", re.S | re.M)
_FILE_LINE = re.compile(r"^(?:#|//) ([\w./-]+\.(?:py|toml|yaml|yml|cfg|ini|txt|conf))\n")


def page(name: str) -> str:
    """The text of ``docs/<name>``."""
    return (DOCS / name).read_text()


def fences(text: str) -> list[tuple[str, str]]:
    """Every fenced code block of ``text``, in page order: ``(language, body)``, the body
    without the indent of its fence (a block inside a tab or admonition reads as written)."""
    found = []
    for indent, lang, body in _BLOCK.findall(text):
        if indent:
            body = "".join(line.removeprefix(indent) for line in body.splitlines(keepends=True))
        found.append((lang, body))
    return found


def blocks(text: str, language: str | None = None) -> list[str]:
    """The fenced code blocks of ``text`` (their bodies), of ``language`` if given."""
    return [body for lang, body in fences(text) if language is None or lang == language]


def block(text: str, language: str, *, starts: str | None = None, contains: str | None = None) -> str:
    """The one ``language`` block of ``text`` whose body starts with ``starts`` and contains
    ``contains`` (each when given)."""
    (found,) = [
        body
        for body in blocks(text, language)
        if (starts is None or body.startswith(starts)) and (contains is None or contains in body)
    ]
    return found


def files(text: str) -> dict[str, str]:
    """Every block whose first line names a file: ``{relative path: contents}``. A file named
    twice is an error (a page shows one version of each file)."""
    found: dict[str, str] = {}
    for body in blocks(text):
        match = _FILE_LINE.match(body)
        if match is None:
            continue
        path = match.group(1)
        assert path not in found, f"{path} is shown twice on the page"
        found[path] = body
    return found


def commands(text: str) -> list[str]:
    """The ``$ command`` lines of the page's ``console`` blocks, without the ``$ ``."""
    return [line[2:].strip() for body in blocks(text, "console") for line in body.splitlines() if line.startswith("$ ")]


def command(text: str, starts: str) -> str:
    """The one command of the page that starts with ``starts``."""
    (found,) = [c for c in commands(text) if c.startswith(starts)]
    return found


#: A console block's step: a command (without the ``$ ``) and the lines the page shows under it.
Step = tuple[str, list[str]]

#: The Debian package of each client a page's transcript runs.
_CLIENT_PACKAGES = {"curl": "curl", "redis-cli": "redis-tools"}


def transcripts(text: str, program: str = "curl", contains: str | None = None) -> list[list[Step]]:
    """Per ``console`` block of ``text`` (that contains ``contains``, if given) with a line
    ``$ program ...``: each such command and the lines shown under it, up to the next ``$ ``
    line. Blocks without one are left out, so every list returned has a step."""
    found = []
    for body in blocks(text, "console"):
        if contains is not None and contains not in body:
            continue
        steps: list[Step] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        ours = [step for step in steps if step[0].startswith(f"{program} ")]
        if ours:
            found.append(ours)
    return found


def run_client(command: str, port: int, *, page_address: str = "localhost:8000", check: bool = True) -> str:
    """Run a page's client command with the real binary against ``127.0.0.1:port``; its
    standard output. ``curl``: the page's address (``page_address``) becomes
    ``127.0.0.1:port``; ``redis-cli``: ``-p port --no-raw`` is added (output formatted as on
    a terminal). ``check``: fail on a non-zero exit."""
    args = shlex.split(command.replace(page_address, f"127.0.0.1:{port}"))
    program = args[0]
    binary = require_binary(program, _CLIENT_PACKAGES.get(program, program))
    if program == "redis-cli":
        args[1:1] = ["-p", str(port), "--no-raw"]
    return subprocess.run([binary, *args[1:]], capture_output=True, text=True, timeout=10, check=check).stdout


def run_transcript(
    steps: list[Step],
    port: int,
    *,
    page_address: str = "localhost:8000",
    check: bool = True,
    before: Callable[[str], None] | None = None,
    log: Callable[[], str] | None = None,
) -> None:
    """Run each step's command (:func:`run_client`) and assert it prints exactly the lines
    the page shows under it. ``before(command)`` runs ahead of each command; ``log()``, if
    given, is added to a failure's message."""
    for command, shown in steps:
        if before is not None:
            before(command)
        out = run_client(command, port, page_address=page_address, check=check)
        assert out == "".join(f"{line}\n" for line in shown), (command, out, log() if log else "")


def probe_specs(text: str) -> list[dict[str, Any]]:
    """The containers' probe blocks of the page's YAML blocks that hold any probe: a list of
    ``{"startupProbe": ..., "readinessProbe": ..., "livenessProbe": ...}`` (missing keys left out)."""
    found = []
    for body in blocks(text, "yaml"):
        for document in yaml.safe_load_all(body):
            stack: list[Any] = [document]
            while stack:
                item = stack.pop()
                if isinstance(item, Mapping):
                    probes = {k: item[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in item}
                    if probes:
                        found.append(probes)
                    stack.extend(item.values())
                elif isinstance(item, list):
                    stack.extend(item)
    return found


def probe_port_container(text: str) -> dict[str, Any]:
    """Assert that the page's one probe block has the three probes ask the default paths on
    the container port named ``probes``; return the one container of its one YAML block."""
    (spec,) = probe_specs(text)
    assert {key: probe["httpGet"] for key, probe in spec.items()} == {
        "startupProbe": {"path": "/startupz", "port": "probes"},
        "readinessProbe": {"path": "/readyz", "port": "probes"},
        "livenessProbe": {"path": "/livez", "port": "probes"},
    }
    (deployment,) = [yaml.safe_load(body) for body in blocks(text, "yaml")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


#: Written beside a page's files: shows healthprobe's DEBUG line "shutdown: handlers installed
#: in process N", which :func:`tests.support.stop_gracefully` waits for, whatever logging the page sets up.
SITECUSTOMIZE = """\
import logging

logging.getLogger("healthprobe.shutdown").setLevel(logging.DEBUG)
"""


def write_project(text: str, into: Path, extra: Mapping[str, str] | None = None) -> Path:
    """Write the page's files (then ``extra``, which may add or replace files) under ``into``,
    with a ``sitecustomize.py`` that shows the coordinator's DEBUG lines (:data:`SITECUSTOMIZE`)."""
    for path, contents in {"sitecustomize.py": SITECUSTOMIZE, **files(text), **(extra or {})}.items():
        target = into / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(contents)
    return into


def argv(line: str, port: int) -> list[str]:
    """A page's command as argv: the tool taken from this venv, its listening address moved to
    ``127.0.0.1:port`` (``0.0.0.0:8000`` and ``--port 8000`` forms)."""
    line = re.sub(r"(?:0\.0\.0\.0|127\.0\.0\.1|localhost|\[::\]):\d+", f"127.0.0.1:{port}", line)
    line = re.sub(r"--port[= ]\d+", f"--port {port}", line)
    parts = shlex.split(line)
    tool = BIN / parts[0]
    if tool.exists():
        parts[0] = str(tool)
    elif parts[0] in ("python", "python3"):
        parts[0] = PYTHON
    return parts


@contextlib.contextmanager
def served(
    line: str, cwd: Path, log: Path, *, env: Mapping[str, str] | None = None, timeout: float = 30
) -> Iterator[ServerProcess]:
    """Run a page's command (see :func:`argv`) in ``cwd`` until it listens; kill it at the end."""
    port = free_port()
    full_env = {"PYTHONPATH": str(cwd), **(env or {})}
    with run_server(
        argv(line, port), port, log.parent, env=full_env, name=log.stem, cwd=cwd, timeout=timeout
    ) as server:
        yield server


def wait_status(client: httpx.Client, path: str, status: int = 200, timeout: float = 20, *, log: Any = None) -> None:
    """Poll ``path`` until it answers ``status`` (no answer counts as another status); fail
    with ``log()`` (if given) on timeout."""
    what = f"{path} answering {status}"
    wait_until(
        lambda: client.get(path).status_code == status, timeout, what, log, interval=0.1, retry=(httpx.TransportError,)
    )
