"""The Flask extension, ``healthprobe.flask.HealthProbe``, and its two pages run as written.

* docs/frameworks/flask.md: its files are written into a fresh project (tests/doc_pages.py)
  and served by its commands as real processes on loopback ports: ``gunicorn`` (with
  ``-w 2`` for the page's ``-w 4``: two workers show the same on a two-core machine),
  ``waitress-serve`` (with a shutdown delay from the environment, as the page says settings
  can be given), a variant whose Redis URL points at a closed port, and ``flask run``. Every
  ``$ curl`` line is run with curl and must print what the page shows; the page's own test
  file runs under pytest; its files pass ``mypy --strict``; its Kubernetes probes probe paths
  the app serves; its settings table lists every setting with its real default; its log
  excerpt is what the shutdown logs.
* docs/migrating/py-healthcheck.md: the "before" app answers as py-healthcheck does, the
  "after" app is served by the page's command, its curl lines print what the page shows,
  and it shuts down gracefully.
* The extension in-process (Flask's test client): settings and their errors (each naming its
  ``app.config`` key, a metrics path that a probe path answers included), ``init_app`` twice,
  the application-factory pattern with several apps in one process, hooks, the grace-period
  warning (at the app's first startup or readiness probe, counting the hooks registered after
  ``init_app``, as the page's factory registers ``close_redis``), and the warning when another
  app's coordinator already serves the process; then two apps of the page's factory served in
  one process by two real servers.

The real Redis on 127.0.0.1:6379 is required (skipped without it, failed under
``HEALTHPROBE_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import logging
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from flask import Flask

from healthprobe import HealthRegistry, Lifecycle
from healthprobe.flask import SETTINGS, HealthProbe, Settings, registry, state
from healthprobe.shutdown import GracefulShutdown
from healthprobe.wsgi import HealthMiddleware

from . import doc_pages
from .support import INSTALLED, PYTHON, ServerProcess, free_port, run_server, stop_gracefully, wait_until

FLASK_PAGE = "frameworks/flask.md"
MIGRATION_PAGE = "migrating/py-healthcheck.md"
TOKEN = "s3cret-token"


# -- helpers -----------------------------------------------------------------------------------


def argv(line: str, port: int) -> list[str]:
    """A page's command as argv (tests/doc_pages.py's rewriting of the tool and the address),
    split as a shell splits it, so that ``'myapp:create_app()'`` loses its quotes."""
    return shlex.split(" ".join(doc_pages.argv(line, port)))


@contextlib.contextmanager
def served(
    line: str, project: Path, name: str, env: Mapping[str, str] | None = None, *, port: int | None = None
) -> Iterator[ServerProcess]:
    """Run a page's command in ``project`` until it listens; kill its process group at the end."""
    port = port or free_port()
    # Outside a pod whatever runs the tests: the shutdown delay is 0 unless set.
    full_env = {"PYTHONPATH": str(project), "KUBERNETES_SERVICE_HOST": "", **(env or {})}
    with run_server(argv(line, port), port, project, env=full_env, name=name, cwd=project, timeout=30) as server:
        yield server


#: What a server that does not answer yet raises to a client (:func:`wait_until` tries again).
NOT_YET = (httpx.TransportError,)


def signal_when_installed(server: ServerProcess, workers: int = 1) -> None:
    server.wait_for_output(INSTALLED, workers)
    server.signal(signal.SIGTERM)


# -- the page's project ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flask_page() -> str:
    return doc_pages.page(FLASK_PAGE)


@pytest.fixture(scope="module")
def project(flask_page: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return doc_pages.write_project(flask_page, tmp_path_factory.mktemp("flask_page"))


@pytest.fixture(scope="module")
def migration_page() -> str:
    return doc_pages.page(MIGRATION_PAGE)


@pytest.fixture(scope="module")
def migration_project(migration_page: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return doc_pages.write_project(migration_page, tmp_path_factory.mktemp("migration_page"))


@pytest.fixture(scope="module")
def gunicorn(flask_page: str, project: Path, redis_up: None) -> Iterator[ServerProcess]:
    line = doc_pages.command(flask_page, "gunicorn")
    assert " -w 4 " in line
    with served(line.replace(" -w 4 ", " -w 2 "), project, "gunicorn", {"FLASK_API_TOKEN": TOKEN}) as server:
        yield server


# -- the page as documentation -------------------------------------------------------------------


def test_settings_table_lists_every_setting_with_its_default(flask_page: str) -> None:
    rows = re.findall(r"^\| `(HEALTHPROBE_\w+)` \| ([^|]+) \| `([^`]+)` \|", flask_page, re.M)
    assert [key for key, _, _ in rows] == list(SETTINGS)
    defaults = Settings()
    for key, _, shown in rows:
        real = getattr(defaults, SETTINGS[key])
        if isinstance(real, Mapping):
            real = {path: probe.value for path, probe in real.items()}
        assert ast.literal_eval(shown) == real, key


def test_error_messages_on_the_page_are_the_real_ones(flask_page: str) -> None:
    prose = " ".join(flask_page.split())
    raised: list[BaseException] = []
    for config in (
        {"HEALTHPROBE_DRAIN_TIMOUT": 20},
        {"HEALTHPROBE_DRAIN_TIMEOUT": "20s"},
        {"HEALTHPROBE_METRICS": True, "HEALTHPROBE_METRICS_PATH": "/livez"},
    ):
        with pytest.raises((TypeError, ValueError)) as caught:
            HealthProbe().init_app(make_app("myapp", **config))
        raised.append(caught.value)
    twice = make_app("myapp")
    HealthProbe(twice, shutdown=False)
    with pytest.raises(RuntimeError) as caught_twice:
        HealthProbe().init_app(twice)
    for error in [*raised, caught_twice.value]:
        assert f"`{type(error).__name__}: {error}`" in prose


def test_kubernetes_block_runs_the_page_command_and_probes_default_paths(flask_page: str) -> None:
    (spec,) = doc_pages.probe_specs(flask_page)
    assert {name: probe["httpGet"]["path"] for name, probe in spec.items()} == {
        "startupProbe": "/startupz",
        "readinessProbe": "/readyz",
        "livenessProbe": "/livez",
    }
    (deployment,) = [d for body in doc_pages.blocks(flask_page, "yaml") for d in yaml.safe_load_all(body)]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == shlex.split(doc_pages.command(flask_page, "gunicorn"))
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]
    assert all(probe["httpGet"]["port"] == "http" for probe in spec.values())
    # The grace period the page configures is the pod's, and covers the budget of one hook.
    assert "HEALTHPROBE_GRACE_PERIOD=35," in flask_page
    assert pod["terminationGracePeriodSeconds"] == 35 >= 5 + 20 + 5


# -- the page's app under real servers -----------------------------------------------------------


@pytest.mark.slow
def test_gunicorn_serves_probes_before_the_apps_token_check(
    gunicorn: ServerProcess, flask_page: str, project: Path
) -> None:
    with httpx.Client(base_url=gunicorn.url, timeout=5) as client:
        for path in ("/livez", "/healthz", "/readyz", "/startupz", "/readyz/redis"):
            assert client.get(path).status_code == 200, path
        # The app's before_request refuses everything without the token; the probes never
        # reach it, so the kubelet needs none.
        assert client.get("/").status_code == 401
        assert client.get("/readyz", headers={"authorization": "Bearer wrong"}).status_code == 200
        auth = {"authorization": f"Bearer {TOKEN}"}
        visits = client.get("/", headers=auth)
        assert visits.status_code == 200 and isinstance(visits.json()["visits"], int)
        # healthprobe.flask.registry() in a view: the registry of the app serving it.
        readiness = client.get("/admin/readiness", headers=auth)
        assert readiness.status_code == 200
        assert readiness.json()["checks"]["redis"][0]["status"] == "pass"
        for spec in doc_pages.probe_specs(flask_page)[0].values():
            assert client.get(spec["httpGet"]["path"]).status_code == 200

        def scraped_pass() -> bool:
            client.get("/readyz")
            metrics = client.get("/metrics")
            assert metrics.status_code == 200, metrics.text  # no token needed
            return 'healthprobe_check_status{check="redis",status="pass"} 1.0' in metrics.text

        wait_until(scraped_pass, 10, "a worker's metrics showing redis passing", gunicorn.output, retry=NOT_YET)
    doc_pages.run_transcript(doc_pages.transcripts(flask_page)[0], gunicorn.port, log=gunicorn.output)


@pytest.mark.slow
def test_gunicorn_sigterm_is_graceful_and_closes_the_pool(gunicorn: ServerProcess, flask_page: str) -> None:
    log = stop_gracefully(gunicorn, workers=2)
    assert log.count("redis connection pool closed") == 2, log
    assert log.count("shutdown: hook 'close_redis' finished") == 2, log
    # The page's log excerpt, timestamps, process ids and figures aside.
    excerpt = doc_pages.block(flask_page, "text", contains="SIGTERM received")
    for line in excerpt.splitlines():
        message = line.split(" ", 3)[3]
        pattern = r"\d+ " + re.sub(r"\\ ", " ", re.sub(r"\d+(?:\\\.\d+)?", r"\\d+(?:\\.\\d+)?", re.escape(message)))
        assert re.search(pattern, log), (message, log)


@pytest.mark.slow
def test_gunicorn_gthread_workers(flask_page: str, project: Path, redis_up: None) -> None:
    """The page's command with ``-k gthread --threads 4`` (the page names both worker
    classes), one worker: requests run outside the worker's main thread, the coordinator is
    installed as the worker calls the factory."""
    line = doc_pages.command(flask_page, "gunicorn").replace(" -w 4 ", " -w 1 -k gthread --threads 4 ")
    with served(line, project, "gunicorn-gthread") as server, httpx.Client(base_url=server.url) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 10, "ready", server.output, retry=NOT_YET)
        assert client.get("/").status_code == 401
        log = stop_gracefully(server, workers=1)
    assert "(server: gunicorn)" in log and log.count("redis connection pool closed") == 1, log


@pytest.mark.slow
def test_waitress_serves_with_settings_from_the_environment(flask_page: str, project: Path, redis_up: None) -> None:
    """``FLASK_HEALTHPROBE_SHUTDOWN_DELAY=1.5`` reaches the coordinator through the page's
    ``from_prefixed_env()``: readiness fails at once on SIGTERM while liveness passes, for
    the delay; then the pool is closed and the process exits 0."""
    line = doc_pages.command(flask_page, "waitress-serve")
    env = {"FLASK_HEALTHPROBE_SHUTDOWN_DELAY": "1.5"}
    with served(line, project, "waitress", env) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/").status_code == 401
        metrics = client.get("/metrics").text
        assert 'healthprobe_check_status{check="redis",status="pass"} 1.0' in metrics
        assert 'healthprobe_shutdown_phase{phase="serving"} 1.0' in metrics
        signal_when_installed(server)
        signalled = time.monotonic()
        # The signal handler only wakes the coordinator's thread: readiness fails a moment later.
        wait_until(
            lambda: client.get("/readyz").status_code == 503, 0.5, "readiness failing", server.output, retry=NOT_YET
        )
        answers = []
        while time.monotonic() - signalled < 1.0:
            answers.append((client.get("/readyz").status_code, client.get("/livez").status_code))
        assert answers and set(answers) == {(503, 200)}, answers
        code = server.wait(20)
        took = time.monotonic() - signalled
        log = server.output()
    assert code == 0, log
    assert 1.5 <= took < 10, (took, log)
    assert "serving on for the 1.5 s delay" in log and "redis connection pool closed" in log, log
    assert "graceful shutdown is OFF" not in log, log


@pytest.mark.slow
def test_redis_down_fails_readiness_only(flask_page: str, project: Path) -> None:
    line = doc_pages.command(flask_page, "waitress-serve")
    env = {"FLASK_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there
    with served(line, project, "waitress-no-redis", env) as server, httpx.Client(base_url=server.url) as client:
        doc_pages.run_transcript(doc_pages.transcripts(flask_page)[1], server.port, log=server.output)
        assert client.get("/readyz").status_code == 503
        assert client.get("/startupz").status_code == 200
        assert client.get("/livez").status_code == 200
        metrics = client.get("/metrics").text
        assert 'healthprobe_check_status{check="redis",status="fail"} 1.0' in metrics
        server.wait_for_output("check redis: fail (ConnectionError", timeout=5)


@pytest.mark.slow
def test_flask_run_is_left_alone(flask_page: str, project: Path, redis_up: None) -> None:
    line = doc_pages.command(flask_page, "flask")
    with served(line, project, "flask-run") as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/readyz").status_code == 200
        server.wait_for_output("flask run is a development server", timeout=5)
        server.signal(signal.SIGTERM)
        signalled = time.monotonic()
        server.wait(10)
        took = time.monotonic() - signalled
        log = server.output()
    assert took < 3.0, (took, log)
    assert "SIGTERM received" not in log, log


@pytest.mark.slow
def test_the_pages_own_test_file_passes(flask_page: str, project: Path, redis_up: None) -> None:
    (line,) = [c for c in doc_pages.commands(flask_page) if c.startswith("python -m pytest")]
    result = subprocess.run(
        argv(line, 0),
        cwd=project,
        env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
def test_page_files_pass_mypy_strict(project: Path, migration_project: Path) -> None:
    files = [str(path) for path in sorted((project / "myapp").glob("*.py"))]
    files.append(str(project / "tests" / "test_app.py"))
    files.append(str(migration_project / "shop" / "after.py"))
    result = subprocess.run(
        [PYTHON, "-m", "mypy", "--strict", "--no-incremental", *files],
        cwd=project,
        env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


#: Two apps of the page's factory in one process, one extension object: the API with the
#: graceful shutdown, served by healthprobe's Werkzeug integration in the main thread; an
#: admin app with its own registry (Redis at a closed port), probe paths and no shutdown,
#: served by a second Werkzeug server in a thread.
TWO_APPS = """
import sys
import threading

from werkzeug.serving import make_server

from healthprobe.flask import state
from healthprobe.servers.werkzeug import serve
from myapp import create_app
from myapp.health import health

api_port, admin_port, closed_port = (int(arg) for arg in sys.argv[1:])
api = create_app()
admin = create_app({
    "REDIS_URL": f"redis://127.0.0.1:{closed_port}/0",
    "HEALTHPROBE_SHUTDOWN": False,
    "HEALTHPROBE_PATHS": {"/-/ready": "readiness", "/-/live": "liveness"},
})


@health.on_shutdown  # registered after both apps were set up: reaches every coordinator
def goodbye() -> None:
    print("extension hook ran", flush=True)


assert state(api).shutdown is not None and state(admin).shutdown is None
assert state(api).registry is not state(admin).registry
other = make_server("127.0.0.1", admin_port, admin, threaded=True)
threading.Thread(target=other.serve_forever, daemon=True).start()
sys.exit(serve(make_server("127.0.0.1", api_port, api, threaded=True), state(api).shutdown))
"""


@pytest.mark.slow
def test_two_apps_of_one_factory_in_one_process(project: Path, redis_up: None) -> None:
    (project / "two_apps.py").write_text(TWO_APPS)
    api_port, admin_port = free_port(), free_port()
    line = f"python two_apps.py {api_port} {admin_port} {free_port()}"
    with (
        served(line, project, "two-apps", port=api_port) as server,
        httpx.Client(base_url=server.url) as api,
        httpx.Client(base_url=f"http://127.0.0.1:{admin_port}") as admin,
    ):
        wait_until(lambda: admin.get("/-/live").status_code == 200, 10, "admin server", server.output, retry=NOT_YET)
        assert api.get("/readyz").status_code == 200
        assert admin.get("/-/ready").status_code == 503  # its own registry, its own Redis URL
        assert admin.get("/readyz").status_code == 401  # not its path: the app's own answer
        assert api.get("/-/ready").status_code == 401
        signal_when_installed(server)
        code = server.wait(20)
        log = server.output()
    assert code == 0, log
    assert log.count("extension hook ran") == 1 and log.count("redis connection pool closed") == 1, log
    assert "shutdown hook 'close_redis' will not run" in log, log  # the admin app's, without a coordinator


# -- the migration page ------------------------------------------------------------------------


BEFORE = """
import json
import os

os.environ["DATABASE_URL"] = "postgresql://app:hunter2@db/app"
os.environ["API_TOKEN"] = "t0ken"
from shop.before import app

client = app.test_client()
for path in ("/healthcheck", "/environment"):
    answer = client.get(path)
    print(json.dumps([answer.status_code, answer.content_type, answer.get_json()]))
"""


@pytest.mark.slow
def test_migration_before_is_what_py_healthcheck_answers(migration_project: Path, redis_up: None) -> None:
    result = subprocess.run(
        [PYTHON, "-c", BEFORE],
        cwd=migration_project,
        env={"PYTHONPATH": str(migration_project), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    (status, content_type, document), (env_status, _, environment) = (
        json.loads(x) for x in result.stdout.split("\n")[:2]
    )
    assert (status, content_type, document["status"]) == (200, "application/json", "success")
    assert [r["checker"] for r in document["results"]] == ["redis_available", "disk_space"]
    assert document["version"] == "1.4.2"
    # What the page says of EnvironmentDump: masked by name only.
    assert env_status == 200
    assert environment["process"]["environ"]["API_TOKEN"] == "********"
    assert environment["process"]["environ"]["DATABASE_URL"] == "postgresql://app:hunter2@db/app"


@pytest.mark.slow
def test_migration_after_served_as_written(migration_page: str, migration_project: Path, redis_up: None) -> None:
    line = doc_pages.command(migration_page, "gunicorn")
    with served(line, migration_project, "after") as server, httpx.Client(base_url=server.url) as client:
        (block,) = doc_pages.transcripts(migration_page)
        doc_pages.run_transcript(block, server.port, log=server.output)
        assert client.get("/readyz/redis").status_code == 200
        assert client.get("/healthz").status_code == 404  # not among the page's paths
        assert "healthprobe_check_status" in client.get("/metrics").text
        log = stop_gracefully(server, workers=2)
    assert log.count("hook 'close_cache' finished") == 2, log


# -- the extension in-process --------------------------------------------------------------------


def make_app(name: str = "app", **config: Any) -> Flask:
    app = Flask(name)
    app.config.update(config)

    @app.before_request
    def refuse() -> tuple[str, int]:
        return "login required", 401

    return app


@pytest.fixture
def health() -> HealthProbe:
    return HealthProbe(shutdown=False)


def test_probes_never_reach_the_app(health: HealthProbe) -> None:
    app = make_app(HEALTHPROBE_METRICS=True)
    probes = health.init_app(app)
    probes.registry.add_check("db", lambda: True)
    client = app.test_client()
    assert client.get("/").status_code == 401
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200
    assert client.post("/readyz").status_code == 405  # answered by healthprobe, not Flask
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and 'healthprobe_check_status{check="db",status="pass"} 1.0' in metrics.text
    assert app.extensions["healthprobe"] is probes and state(app) is probes
    assert app.wsgi_app is probes.middleware and probes.middleware.shutdown is None


def test_settings_from_config_over_the_extensions_defaults() -> None:
    health = HealthProbe(drain_timeout=7, failure_status=500, paths={"/ready": "readiness"})
    first = make_app("first")
    second = make_app("second", HEALTHPROBE_DRAIN_TIMEOUT=3, HEALTHPROBE_PATHS={"/-/live": "liveness"})
    a, b = health.init_app(first), health.init_app(second)
    assert (a.settings.drain_timeout, b.settings.drain_timeout) == (7.0, 3.0)
    assert a.shutdown is not None and b.shutdown is not None
    assert (a.shutdown.drain_timeout, b.shutdown.drain_timeout) == (7.0, 3.0)
    # The effective values are written back, as plain values.
    assert first.config["HEALTHPROBE_DRAIN_TIMEOUT"] == 7.0
    assert first.config["HEALTHPROBE_PATHS"] == {"/ready": "readiness"}
    assert first.config["HEALTHPROBE_SHUTDOWN_DELAY"] is None
    assert second.config["HEALTHPROBE_PATHS"] == {"/-/live": "liveness"}
    a.registry.add_check("db", lambda: False)
    assert first.test_client().get("/ready").status_code == 500
    assert first.test_client().get("/-/live").status_code == 401
    assert second.test_client().get("/-/live").status_code == 200
    assert second.test_client().get("/ready").status_code == 401


def test_factory_apps_have_their_own_registry_coordinator_and_hooks() -> None:
    health = HealthProbe()
    ran: list[str] = []

    @health.on_shutdown
    def before_any_app() -> None:
        ran.append("extension, registered first")

    def create_app(name: str) -> Flask:
        app = Flask(name)
        probes = health.init_app(app)
        probes.on_shutdown(lambda: ran.append(f"{name}'s own"), name=f"close_{name}")

        @app.get("/checks")
        def checks() -> list[str]:
            assert health.registry is registry()  # the extension's attribute, in a request
            return [check.name for check in registry().checks]

        return app

    one, two = create_app("one"), create_app("two")
    registry(one).add_check("only_in_one", lambda: True)

    @health.on_shutdown(name="after_both")
    def after_both() -> None:
        ran.append("extension, registered last")

    one_state, two_state = state(one), state(two)
    assert one_state.registry is not two_state.registry
    assert one_state.shutdown is not None and two_state.shutdown is not None
    assert one_state.shutdown is not two_state.shutdown
    assert one.test_client().get("/checks").json == ["only_in_one"]
    assert two.test_client().get("/checks").json == []
    with one.test_request_context("/checks"):
        assert [check.name for check in registry().checks] == ["only_in_one"]
        assert health.registry is one_state.registry
    with two.app_context():
        assert health.registry is two_state.registry and not registry().checks
    with pytest.raises(RuntimeError, match="each app has its own registry"):
        _ = health.registry

    # Draining one app leaves the other ready.
    one_state.registry.begin_drain()
    assert one.test_client().get("/readyz").status_code == 503
    assert two.test_client().get("/readyz").status_code == 200
    assert two_state.registry.lifecycle is Lifecycle.STARTED

    # Each coordinator runs its app's hooks and the extension's, last registered first.
    one_state.shutdown.run_hooks()
    assert ran == ["extension, registered last", "one's own", "extension, registered first"]
    ran.clear()
    two_state.shutdown.run_hooks()
    assert ran == ["extension, registered last", "two's own", "extension, registered first"]


def test_registry_given_to_the_extension_or_to_init_app() -> None:
    shared, own = HealthRegistry(), HealthRegistry()
    health = HealthProbe(registry=shared, shutdown=False)
    assert health.registry is shared  # outside any app context: the constructor's
    a, b, c = make_app("a"), make_app("b"), make_app("c")
    assert health.init_app(a).registry is shared and health.init_app(b).registry is shared
    assert health.init_app(c, registry=own).registry is own
    with c.app_context():
        assert health.registry is own
    assert HealthProbe(make_app("d"), own, shutdown=False).registry is own


def test_shutdown_off_keeps_no_hook(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(HEALTHPROBE_SHUTDOWN=False)
    HealthProbe(app)
    probes = state(app)
    assert probes.shutdown is None and probes.middleware.shutdown is None
    with caplog.at_level(logging.INFO, logger="healthprobe"):
        probes.on_shutdown(lambda: None, name="close_pool")
    assert "shutdown hook 'close_pool' will not run" in caplog.text


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        (
            {"HEALTHPROBE_DRAIN_TIMOUT": 3},
            ValueError,
            "unknown healthprobe setting app.config['HEALTHPROBE_DRAIN_TIMOUT'] of Flask app 'app': "
            "did you mean 'HEALTHPROBE_DRAIN_TIMEOUT'?",
        ),
        ({"HEALTH_PROBE_METRICS": True}, ValueError, "did you mean 'HEALTHPROBE_METRICS'?"),
        ({"HEALTHPROBE_COLOUR": "blue"}, ValueError, "the settings are HEALTHPROBE_PATHS, "),
        (
            {"HEALTHPROBE_DRAIN_TIMEOUT": "20s"},
            TypeError,
            "app.config['HEALTHPROBE_DRAIN_TIMEOUT'] must be a number of seconds, got '20s' (str)",
        ),
        ({"HEALTHPROBE_METRICS": "true"}, TypeError, "['HEALTHPROBE_METRICS'] must be True, False or a MetricsSource"),
        ({"HEALTHPROBE_SHUTDOWN": 1}, TypeError, "app.config['HEALTHPROBE_SHUTDOWN'] must be True or False"),
        ({"HEALTHPROBE_PATHS": ["/readyz"]}, TypeError, "must be a mapping of path to probe"),
        ({"HEALTHPROBE_FAILURE_STATUS": "503"}, TypeError, "must be a status code or a mapping"),
        ({"HEALTHPROBE_SHUTDOWN_DELAY": -1}, ValueError, "must be a finite number of seconds >= 0, got -1"),
        ({"HEALTHPROBE_HOOK_TIMEOUT": float("nan")}, ValueError, "HEALTHPROBE_HOOK_TIMEOUT"),
        ({"HEALTHPROBE_FAILURE_STATUS": 200}, ValueError, "a status code from 400 to 599, got 200"),
        ({"HEALTHPROBE_FAILURE_STATUS": {"ready": 500}}, ValueError, "unknown probe 'ready'"),
        ({"HEALTHPROBE_PATHS": {"readyz": "readiness"}}, ValueError, "must start with '/'"),
        ({"HEALTHPROBE_PATHS": {"/r": "ready"}}, ValueError, "['/r']: unknown probe 'ready'"),
        ({"HEALTHPROBE_PATHS": {}}, ValueError, "must name at least one probe path"),
        ({"HEALTHPROBE_METRICS_PATH": "/-/metrics"}, ValueError, "set app.config['HEALTHPROBE_METRICS'] = True"),
        # A metrics path that a probe path answers: the keys named, as every other error names its key.
        (
            {"HEALTHPROBE_METRICS": True, "HEALTHPROBE_METRICS_PATH": "/livez"},
            ValueError,
            "app.config['HEALTHPROBE_METRICS_PATH'] is '/livez', which is also a probe path of "
            "app.config['HEALTHPROBE_PATHS']: give the metrics a path of their own, such as '/metrics'",
        ),
        (
            {"HEALTHPROBE_METRICS": True, "HEALTHPROBE_METRICS_PATH": "/readyz/metrics"},
            ValueError,
            "app.config['HEALTHPROBE_METRICS_PATH'] is '/readyz/metrics', which the probe path '/readyz' of "
            "app.config['HEALTHPROBE_PATHS'] answers (as /readyz/<check>): give the metrics a path of their own",
        ),
        # Groups and the guard.
        (
            {"HEALTHPROBE_GUARD": "s3cret"},
            TypeError,
            "app.config['HEALTHPROBE_GUARD'] must be a healthprobe.Guard, a dict of its keyword arguments",
        ),
        (
            {"HEALTHPROBE_GUARD": {"tokn": "s3cret"}},
            TypeError,
            "app.config['HEALTHPROBE_GUARD'] has an unknown key 'tokn': did you mean 'token'?",
        ),
        (
            {"HEALTHPROBE_GUARD": {"token": "two words"}},
            ValueError,
            "app.config['HEALTHPROBE_GUARD']: token must be non-empty visible ASCII without spaces",
        ),
        (
            {"HEALTHPROBE_GUARD": {"token": "t", "threads_path": "/readyz/threads"}},
            ValueError,
            "app.config['HEALTHPROBE_GUARD']: threads path '/readyz/threads'",
        ),
        (
            {"HEALTHPROBE_GROUP_PATH": "/readyz"},
            ValueError,
            "app.config['HEALTHPROBE_GROUP_PATH'] is '/readyz', which clashes with the path '/readyz': "
            "give groups a path of their own, such as '/groups'",
        ),
        (
            {"HEALTHPROBE_GROUP_PATH": "/health", "HEALTHPROBE_PATHS": {"/health/live": "liveness"}},
            ValueError,
            "app.config['HEALTHPROBE_GROUP_PATH'] is '/health', which clashes with the path '/health/live'",
        ),
        ({"HEALTHPROBE_GROUP_PATH": "/"}, ValueError, "app.config['HEALTHPROBE_GROUP_PATH'] must not be '/'"),
        ({"HEALTHPROBE_GROUP_PATH": 1}, TypeError, "app.config['HEALTHPROBE_GROUP_PATH'] must be a path (str)"),
        (
            {"HEALTHPROBE_METRICS": True, "HEALTHPROBE_PATHS": {"/metrics": "liveness"}},
            ValueError,
            "app.config['HEALTHPROBE_METRICS_PATH'] is '/metrics', which is also a probe path of "
            "app.config['HEALTHPROBE_PATHS']: give the metrics a path of their own",
        ),
    ],
)
def test_bad_settings_stop_init_app_and_change_nothing(config: dict[str, Any], error: type, message: str) -> None:
    app = make_app(**config)
    original = app.wsgi_app
    with pytest.raises(error) as raised:
        HealthProbe().init_app(app)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert "healthprobe" not in app.extensions and app.wsgi_app == original
    assert not any(key in app.config for key in SETTINGS if key not in config)


def test_bad_arguments_of_the_extension() -> None:
    with pytest.raises(TypeError, match=r"HealthProbe\(drain_timeout=\.\.\.\) must be a number of seconds"):
        HealthProbe(drain_timeout="20")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a HealthRegistry"):
        HealthProbe(registry=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("HealthProbe(metrics_path=...) is '/healthz', which is also a")):
        HealthProbe(metrics=True, metrics_path="/healthz")
    HealthProbe(metrics_path="/healthz")  # metrics off: the path serves nothing
    with pytest.raises(TypeError, match=r"HealthProbe\(guard=\.\.\.\) must be a healthprobe\.Guard"):
        HealthProbe(guard="s3cret")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"HealthProbe\(group_path=\.\.\.\) is '/livez', which clashes"):
        HealthProbe(group_path="/livez")
    # The default group path gives way to probe paths below it; another one given is refused.
    HealthProbe(paths={"/health/live": "liveness"})
    with pytest.raises(ValueError, match="clashes with the path '/health/live'"):
        HealthProbe(paths={"/health/live": "liveness"}, group_path="/health/live")
    with pytest.raises(TypeError, match="needs a Flask app, got function"):
        HealthProbe().init_app(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="hook 'takes_one' must be callable with no arguments"):

        @HealthProbe().on_shutdown
        def takes_one(x: int) -> None: ...


def test_init_app_twice_is_refused_and_never_wraps_twice(health: HealthProbe) -> None:
    app = make_app()
    original = app.wsgi_app
    probes = health.init_app(app)
    for extension in (health, HealthProbe()):
        with pytest.raises(RuntimeError, match=r"already set up by a HealthProbe .*call init_app once per app"):
            extension.init_app(app)
    assert app.wsgi_app is probes.middleware and probes.middleware.app == original

    by_hand = make_app("by_hand")
    by_hand.wsgi_app = HealthMiddleware(by_hand.wsgi_app, HealthRegistry())  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match=r"already wrapped in healthprobe\.wsgi\.HealthMiddleware: remove that line"):
        health.init_app(by_hand)


def test_state_and_registry_of_an_app_not_set_up() -> None:
    app = make_app("plain")
    with pytest.raises(RuntimeError, match="Flask app 'plain' is not set up by healthprobe"):
        registry(app)
    with pytest.raises(RuntimeError, match="application context"):
        registry()


def test_missing_flask_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flask", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "healthprobe.flask")
    with pytest.raises(ImportError, match=r"^healthprobe\.flask needs flask: pip install 'healthprobe\[flask\]'$"):
        importlib.import_module("healthprobe.flask")


BUDGET = "exceeds the grace period"


def _budget_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if BUDGET in r.getMessage()]


def test_the_grace_period_warning_counts_the_hooks_registered_after_init_app(caplog: pytest.LogCaptureFixture) -> None:
    """The warning that delay + drain + hooks exceed the grace period counts every hook the
    factory registers, those after ``init_app`` included: it comes at the app's first
    startup or readiness probe, not inside ``init_app`` (where no hook of the app is in)."""
    health = HealthProbe()

    @health.on_shutdown
    def flush() -> None: ...

    app = make_app("budget", HEALTHPROBE_GRACE_PERIOD=10, HEALTHPROBE_SHUTDOWN_DELAY=0)
    with caplog.at_level(logging.WARNING, logger="healthprobe.shutdown"):
        probes = health.init_app(app)
        probes.on_shutdown(lambda: None, name="close_redis")  # as the page's factory does
        assert _budget_lines(caplog) == []
        client = app.test_client()
        assert client.get("/livez").status_code == 200  # liveness changes no lifecycle
        assert _budget_lines(caplog) == []
        assert client.get("/startupz").status_code == 200  # startup latches: the hooks are in
        client.get("/readyz")
        probes.on_shutdown(lambda: None, name="late")  # warned once already
    assert _budget_lines(caplog) == [
        "shutdown: delay 0.0 s + drain 20.0 s + 2 hook(s) x 5.0 s = 30.0 s exceeds the grace period of 10.0 s; "
        "the process may be killed before it stops cleanly"
    ]
    assert probes.shutdown is not None and probes.shutdown.budget == 35.0

    # Within the budget: no warning; a hook that takes it over once the app runs warns then.
    caplog.clear()
    roomy = make_app("roomy", HEALTHPROBE_GRACE_PERIOD=30, HEALTHPROBE_SHUTDOWN_DELAY=0)
    with caplog.at_level(logging.WARNING, logger="healthprobe.shutdown"):
        probes = HealthProbe().init_app(roomy)
        probes.on_shutdown(lambda: None, name="close_redis")
        assert roomy.test_client().get("/readyz").status_code == 200
        assert _budget_lines(caplog) == []
        probes.on_shutdown(lambda: None, name="flush_cache")
        probes.on_shutdown(lambda: None, name="close_db")
    assert _budget_lines(caplog) == [
        "shutdown: delay 0.0 s + drain 20.0 s + 3 hook(s) x 5.0 s = 35.0 s exceeds the grace period of 30.0 s; "
        "the process may be killed before it stops cleanly"
    ]

    # Probed by liveness alone: the shutdown itself is the first lifecycle change.
    caplog.clear()
    unprobed = make_app("unprobed", HEALTHPROBE_GRACE_PERIOD=10, HEALTHPROBE_SHUTDOWN_DELAY=0)
    with caplog.at_level(logging.WARNING, logger="healthprobe.shutdown"):
        probes = HealthProbe().init_app(unprobed)
        probes.on_shutdown(lambda: None, name="close_redis")
        probes.registry.begin_drain()
    assert _budget_lines(caplog) == [
        "shutdown: delay 0.0 s + drain 20.0 s + 1 hook(s) x 5.0 s = 25.0 s exceeds the grace period of 10.0 s; "
        "the process may be killed before it stops cleanly"
    ]


GRACE = """
import logging

from myapp import create_app

app = create_app({"HEALTHPROBE_GRACE_PERIOD": 10, "HEALTHPROBE_SHUTDOWN_DELAY": 0})
logging.getLogger("myapp").warning("factory returned")
app.test_client().get("/startupz")
"""


@pytest.mark.slow
def test_the_pages_factory_warns_of_its_grace_period_with_its_hook(flask_page: str, project: Path) -> None:
    """``create_app({"HEALTHPROBE_GRACE_PERIOD": 10})`` of the page: the warning counts
    ``close_redis``, registered after ``init_app``, comes once the factory returned, and is
    the line the page shows (time and process id aside)."""
    result = subprocess.run(
        [PYTHON, "-c", GRACE],
        cwd=project,
        env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin", "KUBERNETES_SERVICE_HOST": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if BUDGET in line or "factory returned" in line]
    assert len(lines) == 2 and "factory returned" in lines[0], result.stderr
    shown = doc_pages.block(flask_page, "text", contains=BUDGET)
    assert lines[1].split(" ", 3)[3] == shown.strip().split(" ", 3)[3], (lines[1], shown)
    assert lines[1].endswith(
        "healthprobe.shutdown WARNING shutdown: delay 0.0 s + drain 20.0 s + 1 hook(s) x 5.0 s = 25.0 s exceeds "
        "the grace period of 10.0 s; the process may be killed before it stops cleanly"
    ), result.stderr


def test_second_coordinator_in_a_serving_process_warns(caplog: pytest.LogCaptureFixture) -> None:
    """An app set up while another coordinator serves this process (as under gunicorn, where
    the first app installs its coordinator as the worker imports it) gets none, and a
    WARNING names the fix, rather than a coordinator that could never be installed."""
    serving = GracefulShutdown(HealthRegistry())
    assert serving.install()
    try:
        app = make_app("admin")
        with caplog.at_level(logging.WARNING, logger="healthprobe"):
            probes = HealthProbe().init_app(app)
        assert probes.shutdown is None
        assert "Flask app 'admin' gets no graceful shutdown" in caplog.text
        assert "set HEALTHPROBE_SHUTDOWN = False on the others" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="healthprobe"):
            assert HealthProbe().init_app(make_app("quiet", HEALTHPROBE_SHUTDOWN=False)).shutdown is None
        assert not caplog.text
    finally:
        serving.uninstall()
    assert HealthProbe().init_app(make_app("later")).shutdown is not None
