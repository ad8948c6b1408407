"""healthprobe's log lines under real servers (docs/logging.md).

* With no logging configured, the shutdown timeline, lifecycle changes and check failures
  show in the serving server's own format, once per worker process: uvicorn (``--workers``
  too), gunicorn's sync and uvicorn workers, hypercorn ``--workers 0``.
* With the application's own ``logging.basicConfig``, every line shows once, in that format.
* A level the application set on ``healthprobe`` is kept.
* The access-log filter drops the lines of successful probe and metrics requests and keeps
  application lines and failing probes under uvicorn, gunicorn and hypercorn, for the
  default and for custom probe paths, by the one call and by the documented logging
  configurations.
* Records carry their structured fields (in-process, with a capturing handler).

The servers run ``tests/apps/unconfigured.py``, which configures no logging.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from healthprobe import HealthRegistry, logs
from healthprobe.shutdown import GracefulShutdown

from . import doc_pages
from .support import BIN, free_port, run_server

ASGI = "tests.apps.unconfigured:asgi"
WSGI = "tests.apps.unconfigured:wsgi"
IMPORTED = "unconfigured app imported in"
STARTED = "Application startup complete."

#: The line formats of the servers' error logs, as a prefix before healthprobe's message.
UVICORN_LINE = r"(INFO|WARNING|ERROR):\s+"
GUNICORN_LINE = r"\[[^\]]+\] \[\d+\] \[(INFO|WARNING|ERROR)\] "  # hypercorn's is the same

#: Requests of the access-log tests: (path, status it must get, whether its line is kept).
ACCESS: tuple[tuple[str, int, bool], ...] = (
    ("/", 200, True),
    ("/nope", 404, True),
    ("/livez", 200, False),
    ("/livez?verbose", 200, False),
    ("/healthz", 200, False),
    ("/startupz", 200, False),
    ("/readyz", 503, True),  # the flaky check fails
    ("/readyz/database", 200, False),
    ("/readyz/database/", 200, False),
    ("/readyz/flaky", 503, True),
    ("/readyz/nope", 404, True),
    ("/metrics", 200, False),
)
#: The same with the custom paths of HP_PATHS=custom: the default paths are the app's (404).
CUSTOM_ACCESS: tuple[tuple[str, int, bool], ...] = (
    ("/", 200, True),
    ("/live", 200, False),
    ("/ready/database", 200, False),
    ("/started", 200, False),
    ("/ready", 503, True),
    ("/livez", 404, True),
    ("/readyz", 404, True),
    ("/metrics", 200, False),
)

ACCESS_LINE = re.compile(r'"(?:GET|HEAD) (\S+) [^"]*" (\d{3})')


def _uvicorn(*args: str) -> list[str]:
    return [str(BIN / "uvicorn"), *args]


def _gunicorn(*args: str) -> list[str]:
    return [str(BIN / "gunicorn"), *args]


def _hypercorn(*args: str) -> list[str]:
    return [str(BIN / "hypercorn"), *args]


def _serve(
    command: list[str],
    tmp_path: Path,
    *,
    ready: str,
    workers: int = 1,
    env: dict[str, str] | None = None,
    requests: tuple[tuple[str, int, bool], ...] = (("/readyz", 503, True), ("/", 200, True)),
) -> str:
    """Start ``command`` (binding the port it is given by ``{port}``), wait for ``ready``
    in its output ``workers`` times, send ``requests`` (checking each status), then
    ``SIGTERM``; returns the whole output once the process exited 0."""
    port = free_port()
    argv = [arg.replace("{port}", str(port)) for arg in command]
    with run_server(argv, port, tmp_path, env=env) as server:
        server.wait_for_output(ready, workers)
        with httpx.Client(base_url=server.url, timeout=5.0) as client:
            for path, status, _kept in requests:
                assert client.get(path).status_code == status, (path, server.output())
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=20)
        output = server.output()
    assert code == 0, output
    return output


def _lines(output: str, message: str) -> list[str]:
    return [line for line in output.splitlines() if message in line]


def _assert_timeline(output: str, line_format: str, workers: int) -> None:
    """The timeline of every worker, each line once and in the server's format; the failing
    check's WARNING in that format too; no bare line of healthprobe's."""
    for message, level in (
        ("shutdown: SIGTERM received; readiness fails", "INFO"),
        ("shutdown: delay over after", "INFO"),
        ("shutdown: 1 hook(s) done in", "INFO"),
        ("shutdown: stopped ", "INFO"),
        ("-> draining", "INFO"),
        ("draining -> stopped", "INFO"),
    ):
        found = _lines(output, message)
        assert len(found) == workers, (message, output)
        assert all(re.match(line_format, line) and level in line for line in found), (message, output)
    assert all(line.endswith("exit code 0") for line in _lines(output, "shutdown: stopped "))
    failing = _lines(output, "check flaky: fail (check returned False)")
    assert failing and all(re.match(line_format, line) and "WARNING" in line for line in failing), output
    for line in output.splitlines():
        assert not line.startswith(("shutdown:", "check ", "lifecycle ")), (line, output)


# -- visible by default ----------------------------------------------------------------------


@pytest.mark.slow
def test_uvicorn_shows_the_timeline_in_its_format(tmp_path: Path) -> None:
    output = _serve(_uvicorn(ASGI, "--port", "{port}"), tmp_path, ready=STARTED)
    _assert_timeline(output, UVICORN_LINE, workers=1)
    assert _lines(output, "lifecycle starting -> started"), output


@pytest.mark.slow
def test_uvicorn_workers_show_the_timeline_of_each_worker(tmp_path: Path) -> None:
    output = _serve(
        _uvicorn(ASGI, "--workers", "2", "--port", "{port}"),
        tmp_path,
        ready=STARTED,
        workers=2,
        requests=tuple(("/readyz", 503, True) for _ in range(6)),
    )
    _assert_timeline(output, UVICORN_LINE, workers=2)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("worker", "app", "ready"),
    [("sync", WSGI, IMPORTED), ("uvicorn_worker.UvicornWorker", ASGI, STARTED)],
    ids=["sync", "uvicorn-worker"],
)
def test_gunicorn_shows_the_timeline_of_each_worker_in_its_format(
    worker: str, app: str, ready: str, tmp_path: Path
) -> None:
    output = _serve(
        _gunicorn("--bind", "127.0.0.1:{port}", "-w", "2", "-k", worker, app),
        tmp_path,
        ready=ready,
        workers=2,
        requests=tuple(("/readyz", 503, True) for _ in range(6)),
    )
    _assert_timeline(output, GUNICORN_LINE, workers=2)


@pytest.mark.slow
def test_hypercorn_workers_0_shows_the_timeline_in_its_format(tmp_path: Path) -> None:
    output = _serve(_hypercorn("--workers", "0", "--bind", "127.0.0.1:{port}", ASGI), tmp_path, ready="Running on")
    _assert_timeline(output, GUNICORN_LINE, workers=1)


@pytest.mark.slow
def test_a_warning_before_the_server_logs_says_it_is_one(tmp_path: Path) -> None:
    """hypercorn with worker processes sets up its logging after the application's import:
    the launch-path WARNING printed before that shows its level and logger, not a bare line."""
    port = free_port()
    argv = [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{port}", ASGI]
    with run_server(argv, port, tmp_path) as server:
        server.wait_for_output("graceful shutdown is OFF")
        (line,) = _lines(server.output(), "graceful shutdown is OFF")
    assert line.startswith("WARNING healthprobe.shutdown: shutdown: graceful shutdown is OFF in process "), line


@pytest.mark.slow
def test_applications_basic_config_shows_every_line_once(tmp_path: Path) -> None:
    """With the application's own logging.basicConfig, healthprobe's lines are its alone."""
    output = _serve(_uvicorn(ASGI, "--port", "{port}"), tmp_path, ready=STARTED, env={"HP_BASIC": "1"})
    for message in ("shutdown: SIGTERM received", "shutdown: stopped ", "-> draining", "check flaky: fail"):
        (line,) = _lines(output, message)
        assert re.match(r"\S+ \S+ \d+ healthprobe(\.shutdown)? (INFO|WARNING) ", line), (line, output)


@pytest.mark.slow
def test_applications_level_is_kept(tmp_path: Path) -> None:
    """A level set on the healthprobe logger by the application holds: at WARNING, the
    check's failure shows in uvicorn's format and the INFO timeline does not."""
    output = _serve(_uvicorn(ASGI, "--port", "{port}"), tmp_path, ready=STARTED, env={"HP_LEVEL": "WARNING"})
    assert re.match(UVICORN_LINE, _lines(output, "check flaky: fail")[0]), output
    assert not _lines(output, "shutdown: "), output


@pytest.mark.slow
def test_servers_log_level_is_followed(tmp_path: Path) -> None:
    """Without a level of the application's, healthprobe follows the server's: gunicorn's
    ``--log-level warning`` shows the check's failure and hides the INFO timeline."""
    output = _serve(_gunicorn("--bind", "127.0.0.1:{port}", "--log-level", "warning", WSGI), tmp_path, ready=IMPORTED)
    assert re.match(GUNICORN_LINE, _lines(output, "check flaky: fail")[0]), output
    assert not _lines(output, "shutdown: "), output


# -- the access-log filter -------------------------------------------------------------------


def _assert_access(output: str, requests: tuple[tuple[str, int, bool], ...]) -> None:
    logged = sorted((path.partition("?")[0], int(status)) for path, status in ACCESS_LINE.findall(output))
    kept = sorted((path.partition("?")[0], status) for path, status, keep in requests if keep)
    assert logged == kept, output


ACCESS_SERVERS = {
    "uvicorn": (_uvicorn(ASGI, "--port", "{port}"), STARTED),
    "gunicorn-sync": (_gunicorn("--bind", "127.0.0.1:{port}", "--access-logfile", "-", WSGI), IMPORTED),
    "gunicorn-uvicorn-worker": (
        _gunicorn("--bind", "127.0.0.1:{port}", "--access-logfile", "-", "-k", "uvicorn_worker.UvicornWorker", ASGI),
        STARTED,
    ),
    "hypercorn": (
        _hypercorn("--workers", "0", "--access-logfile", "-", "--bind", "127.0.0.1:{port}", ASGI),
        "Running on",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ACCESS_SERVERS))
def test_access_filter_drops_successful_probes_only(name: str, tmp_path: Path) -> None:
    command, ready = ACCESS_SERVERS[name]
    output = _serve(command, tmp_path, ready=ready, env={"HP_QUIET": "1"}, requests=ACCESS)
    _assert_access(output, ACCESS)


@pytest.mark.slow
def test_access_filter_follows_custom_probe_paths(tmp_path: Path) -> None:
    command, ready = ACCESS_SERVERS["uvicorn"]
    output = _serve(command, tmp_path, ready=ready, env={"HP_QUIET": "1", "HP_PATHS": "custom"}, requests=CUSTOM_ACCESS)
    _assert_access(output, CUSTOM_ACCESS)


@pytest.mark.slow
def test_access_log_lines_are_all_there_without_the_filter(tmp_path: Path) -> None:
    command, ready = ACCESS_SERVERS["uvicorn"]
    output = _serve(command, tmp_path, ready=ready, requests=ACCESS)
    _assert_access(output, tuple((path, status, True) for path, status, _ in ACCESS))


DOC = doc_pages.page("logging.md")


@pytest.mark.slow
def test_documented_uvicorn_log_config(tmp_path: Path) -> None:
    """docs/logging.md's ``--log-config`` file: filtered access lines, and healthprobe's
    lines through uvicorn's handler."""
    config = tmp_path / "log.json"
    config.write_text(doc_pages.block(DOC, "json", contains="ProbeAccessFilter"))
    json.loads(config.read_text())
    output = _serve(
        _uvicorn(ASGI, "--log-config", str(config), "--port", "{port}"), tmp_path, ready=STARTED, requests=ACCESS
    )
    _assert_access(output, ACCESS)
    assert re.match(UVICORN_LINE, _lines(output, "shutdown: stopped")[0]), output


@pytest.mark.slow
def test_documented_gunicorn_logconfig_dict(tmp_path: Path) -> None:
    """docs/logging.md's ``logconfig_dict`` for gunicorn.conf.py."""
    config = tmp_path / "gunicorn_conf.py"
    config.write_text(doc_pages.block(DOC, "python", contains="logconfig_dict"))
    output = _serve(
        _gunicorn("--bind", "127.0.0.1:{port}", "-c", str(config), WSGI), tmp_path, ready=IMPORTED, requests=ACCESS
    )
    _assert_access(output, ACCESS)
    (line,) = _lines(output, "shutdown: stopped")
    assert re.match(GUNICORN_LINE, line), output


def _access_record(args: Any) -> logging.LogRecord:
    record = logging.LogRecord("access", logging.INFO, __file__, 1, "access", None, None)
    record.args = args
    return record


def test_access_filter_reads_each_servers_records() -> None:
    quiet = logs.ProbeAccessFilter()
    uvicorn_ok = _access_record(("127.0.0.1:1", "GET", "/readyz?verbose", "1.1", 200))
    uvicorn_failed = _access_record(("127.0.0.1:1", "GET", "/readyz", "1.1", 503))
    atoms_ok = _access_record({"U": "/livez", "s": "200", "m": "GET"})  # gunicorn: s is a str
    atoms_redirect = _access_record({"U": "/metrics", "s": 302})
    atoms_app = _access_record({"U": "/livez/x/y", "s": "200"})
    other = _access_record(("a", "b"))
    assert [quiet.filter(r) for r in (uvicorn_ok, uvicorn_failed, atoms_ok, atoms_redirect, atoms_app, other)] == [
        False,
        True,
        False,
        False,
        True,
        True,
    ]


def test_access_filter_from_dict_config() -> None:
    configurator = logging.config.DictConfigurator({})
    quiet = configurator.configure_custom(
        {"()": "healthprobe.logs.ProbeAccessFilter", "paths": ["/ping"], "metrics_path": "/stats"}
    )
    assert isinstance(quiet, logs.ProbeAccessFilter)
    assert quiet.paths == ("/ping",) and quiet.metrics_path == "/stats"
    assert quiet.quiet("/ping/db") and quiet.quiet("/stats") and not quiet.quiet("/livez")


def test_access_filter_refuses_malformed_paths() -> None:
    with pytest.raises(TypeError):
        logs.ProbeAccessFilter("/livez")
    with pytest.raises(ValueError):
        logs.ProbeAccessFilter(["livez"])


def test_quiet_probe_access_logs_replaces_its_previous_filter() -> None:
    first = logs.quiet_probe_access_logs()
    second = logs.quiet_probe_access_logs(["/ping"])
    try:
        for name in logs.ACCESS_LOGGERS:
            filters = logging.getLogger(name).filters
            assert second in filters and first not in filters
    finally:
        for name in logs.ACCESS_LOGGERS:
            logger = logging.getLogger(name)
            for installed in (first, second):
                logger.removeFilter(installed)


# -- structured fields -----------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[_Capture]:
    """Every record of healthprobe's loggers, from DEBUG up; their state restored after."""
    logger = logging.getLogger("healthprobe")
    saved = (logger.level, logger.propagate, list(logger.handlers), logs._owned_level)
    capture = _Capture()
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        logger.handlers[:] = saved[2]
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logs._owned_level = saved[3]


def _fields(record: logging.LogRecord) -> dict[str, object]:
    standard = vars(logging.LogRecord("x", logging.INFO, __file__, 1, "x", None, None)).keys()
    return {key: value for key, value in vars(record).items() if key not in standard and key != "message"}


def test_check_and_lifecycle_records_carry_fields(captured: _Capture) -> None:
    registry = HealthRegistry(default_cache_ttl=0)
    state = {"fail": True}

    def database() -> None:
        if state["fail"]:
            raise ConnectionError("password=hunter2 refused")

    registry.add_check("database", database, probes=["readiness", "liveness"])
    registry.mark_started()
    registry.run("readiness")
    registry.run("readiness")
    state["fail"] = False
    registry.run("readiness")
    failed, still, recovered = [r for r in captured.records if getattr(r, "check", None) == "database"]
    assert failed.levelno == logging.WARNING and "password=*** refused" in failed.getMessage()
    assert "hunter2" not in failed.getMessage()
    fields = _fields(failed)
    assert isinstance(fields.pop("seconds"), float)
    assert isinstance(fields.pop("lasted"), float)  # seconds in the old state (transition fields)
    assert fields == {
        "check": "database",
        "probes": ["liveness", "readiness"],
        "status": "fail",
        "previous_status": None,
        "critical": True,
        "timed_out": False,
        "error_type": "ConnectionError",
        "transition": "check",
        "old": "unknown",
        "new": "fail",
        "reason_class": "error",
    }
    assert "transition" not in _fields(still)  # a repeat is no transition
    assert still.levelno == logging.DEBUG and _fields(still)["previous_status"] == "fail"
    assert recovered.levelno == logging.INFO
    assert {k: v for k, v in _fields(recovered).items() if k not in ("seconds", "lasted")} == {
        "check": "database",
        "probes": ["liveness", "readiness"],
        "status": "pass",
        "previous_status": "fail",
        "transition": "check",
        "old": "fail",
        "new": "pass",
        "reason_class": "recovered",
    }
    for record in (failed, still, recovered):  # no exception text in any field
        assert not any("hunter2" in str(value) for value in _fields(record).values())
    (lifecycle,) = [r for r in captured.records if r.getMessage().startswith("lifecycle ")]
    fields = _fields(lifecycle)
    assert isinstance(fields.pop("lasted"), float)
    assert fields == {
        "lifecycle": "started",
        "previous_lifecycle": "starting",
        "transition": "lifecycle",
        "old": "starting",
        "new": "started",
        "reason_class": "started",
    }


def test_shutdown_records_carry_their_phase(captured: _Capture) -> None:
    registry = HealthRegistry()
    shutdown = GracefulShutdown(registry, delay=0.1, drain_timeout=1.0, hook_timeout=1.0)
    shutdown.add_hook(lambda: None, name="close_pool")
    shutdown.begin()
    deadline = time.monotonic() + 5
    while shutdown.phase == "delay" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert shutdown.finish() == 0
    timeline = [r for r in captured.records if r.name == "healthprobe.shutdown" and hasattr(r, "phase")]
    phases = [r.phase for r in timeline]  # type: ignore[attr-defined]
    assert phases == ["signal", "drain", "drained", "hook", "hooks", "stopped"], phases
    by_phase = {r.phase: _fields(r) for r in timeline}  # type: ignore[attr-defined]
    assert by_phase["signal"] == {"phase": "signal", "signal": "SIGTERM", "delay": 0.1, "in_flight": 0}
    assert by_phase["drain"]["seconds"] == pytest.approx(0.1, abs=0.5)
    assert by_phase["drain"]["drain_timeout"] == 1.0
    assert by_phase["drained"]["in_flight"] == 0
    assert by_phase["hook"]["hook"] == "close_pool"
    assert by_phase["hooks"]["hooks"] == 1
    assert by_phase["stopped"]["exit_code"] == 0
    for fields in by_phase.values():
        for key, value in fields.items():
            if key in ("seconds", "delay", "drain_timeout"):
                assert isinstance(value, float), (key, fields)
    (stopped,) = [r for r in captured.records if r.getMessage() == "lifecycle draining -> stopped"]
    assert {k: v for k, v in _fields(stopped).items() if k != "lasted"} == {
        "lifecycle": "stopped",
        "previous_lifecycle": "draining",
        "transition": "lifecycle",
        "old": "draining",
        "new": "stopped",
        "reason_class": "stopped",
    }


def test_configure_writes_one_line_per_record_to_its_stream(captured: _Capture) -> None:
    stream = io.StringIO()
    handler = logs.configure("INFO", stream=stream)
    again = logs.configure(logging.INFO, stream=stream)
    logger = logging.getLogger("healthprobe")
    assert handler not in logger.handlers and again in logger.handlers
    assert not logger.propagate and logger.level == logging.INFO
    logging.getLogger("healthprobe.shutdown").info("shutdown: stopped 1.00 s after the signal; exit code 0")
    logging.getLogger("healthprobe").debug("not shown")
    (line,) = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d [\d:,]+ INFO healthprobe\.shutdown \[\d+\] shutdown: stopped 1\.00 s after the signal; "
        r"exit code 0",
        line,
    ), line
    with pytest.raises(ValueError):
        logs.configure("LOUD")
