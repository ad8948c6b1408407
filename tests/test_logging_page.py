"""docs/logging.md run as written: each code block is put in the application module (or the
program) it is shown for and served by a real server; each output example is compared with
the line the run printed, its times, process ids and numbers masked.

* ``use_server_logger()`` in an application served without a coordinator (gunicorn): the
  failing check's WARNING in gunicorn's format, where without the call it is a bare line.
* The application's ``logging.basicConfig`` under uvicorn: the SIGTERM line as shown.
* ``healthprobe.logs.configure(level="INFO")`` in a program that shuts down on ``SIGTERM``:
  its standard error holds the SIGTERM line as shown.
* python-json-logger's formatter under uvicorn: the ``drained`` line has the keys and value
  types of the JSON example.
* ``quiet_probe_access_logs()`` under each server of tests/test_logs.py's access-log tests.

Run elsewhere: the ``--log-config`` file and the ``logconfig_dict`` (tests/test_logs.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from . import doc_pages
from .support import PYTHON, ROOT
from .test_logs import (
    ACCESS,
    ACCESS_SERVERS,
    ASGI,
    GUNICORN_LINE,
    STARTED,
    WSGI,
    _assert_access,
    _gunicorn,
    _lines,
    _serve,
    _uvicorn,
)

PAGE = doc_pages.page("logging.md")
USE_SERVER_LOGGER = doc_pages.block(PAGE, "python", contains="healthprobe.logs.use_server_logger()")
BASIC_CONFIG = doc_pages.block(PAGE, "python", contains='format="%(asctime)s %(process)d')
CONFIGURE = doc_pages.block(PAGE, "python", contains='healthprobe.logs.configure(level="INFO")')
JSON_FORMATTER = doc_pages.block(PAGE, "python", contains="JsonFormatter(")
QUIET = doc_pages.block(PAGE, "python", contains="quiet_probe_access_logs()")
#: Run by tests/test_logs.py::test_documented_uvicorn_log_config.
LOG_CONFIG = doc_pages.block(PAGE, "json", contains="ProbeAccessFilter")
#: Run by tests/test_logs.py::test_documented_gunicorn_logconfig_dict.
LOGCONFIG_DICT = doc_pages.block(PAGE, "python", contains="logconfig_dict")


def _shown_after(code: str, language: str) -> str:
    """The block that follows ``code`` on the page: the output it shows, in ``language``."""
    found = doc_pages.fences(PAGE)
    (index,) = [i for i, (_, body) in enumerate(found) if body == code]
    lang, body = found[index + 1]
    assert lang == language, (lang, body)
    return body


BASIC_OUTPUT = _shown_after(BASIC_CONFIG, "text")
CONFIGURE_OUTPUT = _shown_after(CONFIGURE, "text")
JSON_LINE = _shown_after(JSON_FORMATTER, "json")


def test_every_block_of_the_page_is_run() -> None:
    """Each block of the page is one a test runs (here, or where the module docstring says):
    a block added to the page fails here until a test runs it."""
    run = [USE_SERVER_LOGGER, BASIC_CONFIG, CONFIGURE, JSON_FORMATTER, QUIET, LOG_CONFIG, LOGCONFIG_DICT]
    shown = [BASIC_OUTPUT, CONFIGURE_OUTPUT, JSON_LINE]
    assert sorted(doc_pages.blocks(PAGE)) == sorted([*run, *shown])


def _masked(line: str) -> str:
    """``line`` with every number (times, process ids, durations, counts) as ``N``."""
    return re.sub(r"\d+", "N", line.strip())


def _app(tmp_path: Path, name: str, source: str) -> dict[str, str]:
    """Write the application module ``name`` into ``tmp_path``; the environment that
    imports it."""
    (tmp_path / f"{name}.py").write_text(source)
    return {"PYTHONPATH": f"{tmp_path}:{ROOT}"}


#: The application of tests/apps/unconfigured.py (a failing check ``flaky``, a coordinator
#: with a 0.3 s delay), imported after the page's block.
UNCONFIGURED = "\nfrom tests.apps.unconfigured import asgi, wsgi\n"


# -- use_server_logger ------------------------------------------------------------------------------

#: An application served without a GracefulShutdown: readiness with a passing and a failing
#: check, ``/`` answering ``ok <pid>``.
WITHOUT_COORDINATOR = """
import os

from healthprobe import HealthRegistry
from healthprobe.wsgi import HealthMiddleware
from tests.apps import plain_apps

registry = HealthRegistry()
registry.add_check("database", lambda: True, probes=["readiness"])
registry.add_check("flaky", lambda: False, probes=["readiness"])
wsgi = HealthMiddleware(plain_apps()[1], registry)
print(f"app without a coordinator imported in {os.getpid()}", flush=True)
"""

READY = "app without a coordinator imported in"
FLAKY = "check flaky: fail (check returned False)"


@pytest.mark.slow
def test_use_server_logger_shows_the_lines_in_the_servers_format(tmp_path: Path) -> None:
    env = _app(tmp_path, "server_logger_app", USE_SERVER_LOGGER + WITHOUT_COORDINATOR)
    output = _serve(_gunicorn("--bind", "127.0.0.1:{port}", "server_logger_app:wsgi"), tmp_path, ready=READY, env=env)
    (line,) = _lines(output, FLAKY)
    assert re.match(GUNICORN_LINE, line) and "[WARNING]" in line, output


@pytest.mark.slow
def test_without_use_server_logger_the_line_is_not_the_servers(tmp_path: Path) -> None:
    """The same application without the page's call: the line is not in gunicorn's format."""
    env = _app(tmp_path, "plain_app", WITHOUT_COORDINATOR)
    output = _serve(_gunicorn("--bind", "127.0.0.1:{port}", "plain_app:wsgi"), tmp_path, ready=READY, env=env)
    (line,) = _lines(output, FLAKY)
    assert not re.match(GUNICORN_LINE, line), output


# -- the application's own configuration ------------------------------------------------------------


@pytest.mark.slow
def test_basic_config_prints_the_line_shown(tmp_path: Path) -> None:
    env = _app(tmp_path, "basic_app", BASIC_CONFIG + UNCONFIGURED)
    output = _serve(
        _uvicorn(ASGI.replace("tests.apps.unconfigured", "basic_app"), "--port", "{port}"),
        tmp_path,
        ready=STARTED,
        env=env,
    )
    (shown,) = BASIC_OUTPUT.splitlines()
    (line,) = _lines(output, "shutdown: SIGTERM received")
    assert _masked(line) == _masked(shown), (line, shown)
    for message in ("shutdown: stopped ", "-> draining", FLAKY):  # each line once, in that format
        (line,) = _lines(output, message)
        assert re.match(r"\S+ \S+ \d+ healthprobe(\.shutdown)? (INFO|WARNING) ", line), (line, output)


#: A program with a coordinator that signals itself once and finishes its shutdown.
SIGNALLED = """
import signal

from healthprobe import HealthRegistry
from healthprobe.shutdown import GracefulShutdown

registry = HealthRegistry()
shutdown = GracefulShutdown(registry, delay=0.1, drain_timeout=1.0)
shutdown.install()
signal.raise_signal(signal.SIGTERM)
assert shutdown.wait(10)  # the coordinator's thread began the shutdown
raise SystemExit(shutdown.finish())
"""


def test_configure_prints_the_line_shown(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(CONFIGURE + SIGNALLED)
    done = subprocess.run(
        [PYTHON, str(script)], cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    (shown,) = CONFIGURE_OUTPUT.splitlines()
    signalled = _lines(done.stderr, "shutdown: SIGTERM received")
    assert len(signalled) == 1, done.stderr
    (line,) = signalled
    assert _masked(line) == _masked(shown), (line, shown)
    (stopped,) = _lines(done.stderr, "shutdown: stopped ")  # an INFO line: the level holds
    assert " INFO healthprobe.shutdown [" in stopped, done.stderr
    assert done.stdout == ""


@pytest.mark.slow
def test_json_formatter_prints_the_fields_shown(tmp_path: Path) -> None:
    pytest.importorskip("pythonjsonlogger.json")
    env = _app(tmp_path, "json_app", JSON_FORMATTER + UNCONFIGURED)
    output = _serve(
        _uvicorn(ASGI.replace("tests.apps.unconfigured", "json_app"), "--port", "{port}"),
        tmp_path,
        ready=STARTED,
        env=env,
    )
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    (drained,) = [record for record in records if record.get("phase") == "drained"]
    shown = json.loads(JSON_LINE)
    assert {key: type(value) for key, value in drained.items()} == {key: type(value) for key, value in shown.items()}
    assert _masked(drained["message"]) == _masked(shown["message"])
    assert _masked(drained["asctime"]) == _masked(shown["asctime"])
    same = ("levelname", "name", "in_flight", "cancelled")
    assert {key: drained[key] for key in same} == {key: shown[key] for key in same}
    assert _lines(output, FLAKY) and all(line.startswith("{") for line in _lines(output, FLAKY)), output


# -- access logs without the probes -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ACCESS_SERVERS))
def test_quiet_probe_access_logs_as_written(name: str, tmp_path: Path) -> None:
    command, ready = ACCESS_SERVERS[name]
    env = _app(tmp_path, "quiet_app", QUIET + UNCONFIGURED)
    app = {ASGI: "quiet_app:asgi", WSGI: "quiet_app:wsgi"}
    assert len([arg for arg in command if arg in app]) == 1, command
    output = _serve([app.get(arg, arg) for arg in command], tmp_path, ready=ready, env=env, requests=ACCESS)
    _assert_access(output, ACCESS)
