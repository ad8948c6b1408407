"""Run a documentation page as written: the files its code blocks name, the commands its
console blocks give, and the probe block it shows for Kubernetes.

A page marks a complete file by a first line that is a comment naming it, relative to the
project root (``# myapp/main.py``, ``# gunicorn.conf.py``, ``# mysite/settings.py``); a
``console`` block gives shell commands as ``$ command`` lines. A page test writes the files
into a fresh project, runs one of the page's commands under a real server, probes, scrapes
and stops it with SIGTERM, so no page can rot without a red test.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from .support import PYTHON, ROOT, ServerProcess, free_port

BIN = Path(PYTHON).parent
DOCS = ROOT / "docs"

_BLOCK = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```", re.S | re.M)
_FILE_LINE = re.compile(r"^(?:#|//) ([\w./-]+\.(?:py|toml|yaml|yml|cfg|ini|txt|conf))\n")


def page(name: str) -> str:
    """The text of ``docs/<name>``."""
    return (DOCS / name).read_text()


def blocks(text: str, language: str | None = None) -> list[str]:
    """The fenced code blocks of ``text`` (their bodies), of ``language`` if given."""
    return [body for lang, body in _BLOCK.findall(text) if language is None or lang == language]


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


#: Written beside a page's files: shows healthprobe's DEBUG line "shutdown: handlers installed
#: in process N", which :func:`stop_gracefully` waits for, whatever logging the page sets up.
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
    server = ServerProcess(argv(line, port), port, cwd=cwd, env={"PYTHONPATH": str(cwd), **(env or {})}, log=log)
    try:
        server.wait_ready(timeout)
        yield server
    finally:
        server.stop()


def wait_status(client: httpx.Client, path: str, status: int = 200, timeout: float = 20, *, log: Any = None) -> None:
    """Poll ``path`` until it answers ``status``; fail with ``log()`` (if given) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if client.get(path).status_code == status:
                return
        assert time.monotonic() < deadline, f"{path} never answered {status}\n" + (log() if log else "")
        time.sleep(0.1)


def stop_gracefully(server: ServerProcess, *, workers: int = 1, timeout: float = 30) -> str:
    """SIGTERM the server once every worker has installed its handlers; assert a graceful
    exit (code 0, no "graceful shutdown is OFF" warning, one SIGTERM line per worker) and
    return the log."""
    deadline = time.monotonic() + 20
    while server.output().count("shutdown: handlers installed in process") < workers:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
    server.signal(signal.SIGTERM)
    code = server.wait(timeout)
    log = server.output()
    assert code == 0, log
    assert "graceful shutdown is OFF" not in log, log
    assert log.count("shutdown: SIGTERM received") == workers, log
    return log
