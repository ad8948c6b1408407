"""The framework pages run as written: docs/frameworks/fastapi.md, starlette.md and
asgi-wsgi.md, and docs/migrating/fastapi-health.md.

Each page's files are written into a fresh project and served by each command of its
``console`` blocks, as real processes on ephemeral loopback ports, against the real
PostgreSQL and Redis: the probes answer, a failing dependency fails readiness and never
liveness, ``/metrics`` carries the check's series, the route that reaches the registry
works, the probe block's paths exist, the page's ``curl`` lines print what the page shows,
and ``SIGTERM`` ends the process gracefully (exit 0, the hook that closes the dependency's
client run).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from fastapi import FastAPI

from healthprobe import HealthRegistry
from healthprobe.asgi import HealthApp, HealthMiddleware

from . import doc_pages
from .support import POD_HOST, PYTHON, ROOT, PrivateRedis, ServerProcess, free_port, stop_gracefully

with warnings.catch_warnings():  # Starlette 1.x: "Using `httpx` with `starlette.testclient` is deprecated"
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.slow

DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
#: A database that does not exist: the server refuses every connection to it.
MISSING_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/healthprobe_no_such_database"
PROBES = ("/startupz", "/readyz", "/livez")

FASTAPI = doc_pages.page("frameworks/fastapi.md")
STARLETTE = doc_pages.page("frameworks/starlette.md")
PLAIN = doc_pages.page("frameworks/asgi-wsgi.md")
MIGRATION = doc_pages.page("migrating/fastapi-health.md")


# -- running a page ----------------------------------------------------------------------------


def _loopback(line: str) -> str:
    """A page's command with its ``--host 0.0.0.0`` moved to loopback (the port is moved by
    :func:`doc_pages.argv`)."""
    return line.replace("--host 0.0.0.0", "--host 127.0.0.1")


@contextlib.contextmanager
def _serving(
    text: str, starts: str, tmp_path: Path, name: str, env: dict[str, str]
) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    """Serve the page's files with its one command starting with ``starts``."""
    project = doc_pages.write_project(text, tmp_path / name)
    line = _loopback(doc_pages.command(text, starts))
    with (
        doc_pages.served(line, project, tmp_path / f"{name}.log", env=env) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield server, client


def _wait(client: httpx.Client, server: ServerProcess, path: str, status: int = 200) -> None:
    doc_pages.wait_status(client, path, status, log=server.output)


def _probes_pass(client: httpx.Client, server: ServerProcess, prefix: str = "") -> None:
    _wait(client, server, prefix + "/readyz")
    for path in PROBES:
        response = client.get(prefix + path)
        assert (response.status_code, response.text) == (200, "ok\n"), (path, response.text)


def _dependency_fails(client: httpx.Client, server: ServerProcess, check: str) -> None:
    """Readiness fails on ``check`` while liveness and startup pass."""
    _wait(client, server, "/readyz", 503)
    assert f"[-]{check} failed" in client.get("/readyz").text
    assert client.get("/livez").status_code == 200
    assert client.get("/startupz").status_code == 200
    metrics = client.get("/metrics").text
    assert f'healthprobe_check_status{{check="{check}",status="fail"}} 1.0' in metrics, metrics
    assert f"check {check}: fail" in server.output()


def _yaml_paths(text: str, client: httpx.Client, index: int = 0) -> None:
    """The paths of the page's ``index``-th probe block answer 200 on the app, and they are
    the package's probe paths."""
    spec = doc_pages.probe_specs(text)[index]
    assert set(spec) == {"startupProbe", "readinessProbe", "livenessProbe"}, spec
    for key, probe in spec.items():
        path = probe["httpGet"]["path"]
        assert path.endswith({"startupProbe": "/startupz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}[key])
        assert client.get(path).status_code == 200, path


def _metrics(client: httpx.Client, check: str) -> None:
    """``/metrics`` carries the check's series. Each worker process serves its own metrics
    (no multiprocess directory here), and gunicorn's sync workers take each request on a new
    connection: probe and scrape until one worker answers both."""
    line = f'healthprobe_check_status{{check="{check}",status="pass"}} 1.0'
    deadline = time.monotonic() + 20
    while True:
        client.get("/readyz")
        metrics = client.get("/metrics").text
        if line in metrics:
            break
        assert time.monotonic() < deadline, metrics
    assert f'healthprobe_check_runs_total{{check="{check}",status="pass"}}' in metrics
    assert "healthprobe_in_flight_requests" in metrics  # the coordinator's series


def _admin_readiness(client: httpx.Client, check: str, ok: bool = True) -> None:
    """The route that reaches the registry (``registry_of`` or the module's registry)
    serves the readiness report."""
    response = client.get("/admin/readiness")
    assert response.status_code == (200 if ok else 503), response.text
    document = response.json()
    assert document["status"] == ("pass" if ok else "fail")
    assert document["checks"][check][0]["status"] == ("pass" if ok else "fail")


def _curl_lines(text: str, server: ServerProcess) -> None:
    """Run the page's ``curl`` lines against the server; each prints the lines the page shows
    below it."""
    steps = [step for block in doc_pages.transcripts(text) for step in block]
    assert steps, "the page shows no curl line"
    doc_pages.run_transcript(steps, server.port, log=server.output)


def _stop(server: ServerProcess, *, hook: str, workers: int = 1, installed_line: bool = True) -> str:
    """SIGTERM the server and assert a graceful exit with ``hook`` run in every worker.

    ``installed_line=False`` for hypercorn, which sets up its logging only after the
    application's lifespan started, so the DEBUG line of the install never shows: there the
    install is done once the port accepts (hypercorn binds after the lifespan startup)."""
    log = stop_gracefully(server, workers=workers, installed_line=installed_line)
    assert log.count(f"shutdown: hook '{hook}' finished") == workers, log
    assert log.count("exit code 0") == workers, log
    return log


def _redis_stopped(client: httpx.Client, server: ServerProcess, redis: PrivateRedis) -> None:
    """Stop Redis: readiness fails on the check, liveness and startup pass, the route that
    reaches the registry reports the failure."""
    redis.stop()
    _dependency_fails(client, server, "redis")
    _admin_readiness(client, "redis", ok=False)


# -- the install lines -------------------------------------------------------------------------


PAGES = sorted([*(ROOT / "docs" / "frameworks").glob("*.md"), *(ROOT / "docs" / "migrating").glob("*.md")])


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_install_lines_name_real_extras(page: Path) -> None:
    """Every ``pip install`` line of a framework or migration page installs from a clone (not
    on PyPI yet) with extras that pyproject.toml declares, and every other package it names
    is importable here."""
    text = page.read_text()
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    sh = [line for body in doc_pages.blocks(text, "sh") for line in body.splitlines()]
    lines = [line for line in sh if line.startswith("pip install ")]
    assert lines
    for line in lines:
        words = shlex.split(line)[2:]
        (ours,) = [w for w in words if w.startswith("/path/to/healthprobe[")]
        named = set(ours[len("/path/to/healthprobe[") : -1].split(","))
        assert named <= extras, named - extras
        for other in (w for w in words if w != ours):
            module = other.replace("-", "_")
            subprocess.run([PYTHON, "-c", f"import {module}"], check=True, timeout=30)


@pytest.mark.parametrize("text", [FASTAPI, STARLETTE, PLAIN], ids=["fastapi", "starlette", "plain"])
def test_yaml_commands_are_the_pages_commands(text: str) -> None:
    """The container command of each page's Deployment is one of the commands the page runs
    (and so the tests below run)."""
    found = []
    for body in doc_pages.blocks(text, "yaml"):
        for document in yaml.safe_load_all(body):
            if isinstance(document, dict) and document.get("kind") == "Deployment":
                for container in document["spec"]["template"]["spec"]["containers"]:
                    found.append(" ".join(container["command"]))
    assert found
    for command in found:
        assert command in doc_pages.commands(text), command


# -- FastAPI -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("starts", "workers"), [("uvicorn", 1), ("gunicorn", 2)])
@pytest.mark.usefixtures("postgres_up")
def test_fastapi_page(starts: str, workers: int, tmp_path: Path) -> None:
    env = {"DATABASE_URL": DATABASE_URL}
    with _serving(FASTAPI, starts, tmp_path, f"fastapi-{starts}", env) as (server, client):
        _probes_pass(client, server)
        _yaml_paths(FASTAPI, client)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d.*", client.get("/now").json()["now"])
        _admin_readiness(client, "database")
        _metrics(client, "database")
        # Not in the API schema, whatever the server.
        paths = set(client.get("/openapi.json").json()["paths"])
        assert paths == {"/now", "/admin/readiness"}, paths
        # HealthMiddleware, added last, answers before TrustedHostMiddleware: a probe sent to
        # the pod's address passes, while the app refuses that host.
        assert client.get("/readyz", headers={"host": POD_HOST}).status_code == 200
        assert client.get("/now", headers={"host": POD_HOST}).status_code == 400
        if starts == "uvicorn":  # uvicorn logs access lines by default: the probes leave none
            log = server.output()
            assert '"GET /now HTTP/1.1" 200' in log, log
            assert '"GET /livez HTTP/1.1"' not in log and '"GET /metrics HTTP/1.1"' not in log, log
        _stop(server, hook="close_pool", workers=workers)


@pytest.mark.usefixtures("postgres_up")
def test_fastapi_page_database_missing(tmp_path: Path) -> None:
    """The database named does not exist: the process starts and serves, readiness fails on
    the check, liveness passes, and the page's curl lines print what it shows. Once the
    database is created, readiness passes by itself; the shutdown closes the pool."""
    name = f"healthprobe_pages_{os.getpid()}_{time.monotonic_ns()}"
    env = {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}"}
    try:
        with _serving(FASTAPI, "uvicorn", tmp_path, "fastapi-missing", env) as (server, client):
            _dependency_fails(client, server, "database")
            _admin_readiness(client, "database", ok=False)
            _curl_lines(FASTAPI, server)
            with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            _wait(client, server, "/readyz", 200)
            assert "check database recovered: pass" in server.output()
            assert client.get("/now").status_code == 200
            log = _stop(server, hook="close_pool")
    finally:
        with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    # The pool's own warning, which the page quotes, says why it failed.
    assert "error connecting in 'pool-1'" in log and f'database "{name}" does not exist' in log, log


def test_fastapi_middleware_added_first_meets_the_host_check(tmp_path: Path) -> None:
    """The control of the ordering above: the page's app with HealthMiddleware added before
    TrustedHostMiddleware (so inside it) refuses a probe sent to the pod's address."""
    main = doc_pages.files(FASTAPI)["myapp/main.py"]
    health = re.search(r"^# Added last.*?\napp\.add_middleware\(HealthMiddleware.*?\n", main, re.S | re.M)
    assert health is not None
    trusted = "app.add_middleware(TrustedHostMiddleware, allowed_hosts=ALLOWED_HOSTS)\n"
    swapped = main.replace(health.group(0), "").replace(trusted, health.group(0) + trusted)
    assert swapped != main
    project = doc_pages.write_project(FASTAPI, tmp_path / "swapped", {"myapp/main.py": swapped})
    script = (
        "from starlette.testclient import TestClient\n"
        "from myapp.main import app\n"
        f"print(TestClient(app).get('/readyz', headers={{'host': {POD_HOST!r}}}).status_code)\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", script], cwd=project, capture_output=True, text=True, timeout=60, env=_env(project)
    )
    assert done.stdout.split() == ["400"], done.stdout + done.stderr


def _env(project: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(project), "DATABASE_URL": DATABASE_URL}


def test_fastapi_schema_leaves_out_middleware_and_mounted_probes() -> None:
    """Neither the middleware's probe paths nor a mounted HealthApp appear in FastAPI's
    OpenAPI schema, while both answer."""
    registry = HealthRegistry()
    app = FastAPI()

    @app.get("/items")
    async def items() -> list[str]:
        return []

    app.mount("/health", HealthApp(registry, metrics=True))
    app.add_middleware(HealthMiddleware, registry=registry, metrics=True)
    with TestClient(app) as client:
        for path in ("/livez", "/readyz", "/startupz", "/healthz", "/metrics", "/health/readyz", "/health/metrics"):
            assert client.get(path).status_code == 200, path
        assert set(client.get("/openapi.json").json()["paths"]) == {"/items"}


# -- Starlette ---------------------------------------------------------------------------------


def test_starlette_page_uvicorn_redis_down_and_back(tmp_path: Path) -> None:
    with (
        PrivateRedis(tmp_path, start=True) as redis,
        _serving(STARLETTE, "uvicorn myapp.main", tmp_path, "starlette-uvicorn", {"REDIS_URL": redis.url}) as (
            server,
            client,
        ),
    ):
        _probes_pass(client, server)
        _yaml_paths(STARLETTE, client)
        assert client.post("/hits").json() == {"hits": 1}
        assert client.post("/hits").json() == {"hits": 2}
        _admin_readiness(client, "redis")
        _metrics(client, "redis")
        assert client.get("/readyz", headers={"host": POD_HOST}).status_code == 200
        assert client.post("/hits", headers={"host": POD_HOST}).status_code == 400
        # Redis stops: readiness fails, liveness passes; it starts again: readiness passes.
        _redis_stopped(client, server, redis)
        _curl_lines(STARLETTE, server)
        redis.start()  # again, on the same port
        _wait(client, server, "/readyz", 200)
        assert "check redis recovered: pass" in server.output()
        _stop(server, hook="close_redis")


def test_starlette_page_hypercorn(tmp_path: Path) -> None:
    with (
        PrivateRedis(tmp_path, start=True) as redis,
        _serving(STARLETTE, "hypercorn", tmp_path, "starlette-hypercorn", {"REDIS_URL": redis.url}) as (server, client),
    ):
        _probes_pass(client, server)
        _yaml_paths(STARLETTE, client)
        assert client.post("/hits").json() == {"hits": 1}
        _admin_readiness(client, "redis")
        _metrics(client, "redis")
        assert client.get("/readyz", headers={"host": POD_HOST}).status_code == 200
        assert client.post("/hits", headers={"host": POD_HOST}).status_code == 400
        _stop(server, hook="close_redis", installed_line=False)


def test_starlette_page_mounted(tmp_path: Path) -> None:
    """The mounted variant: probes under /health only, /metrics, the registry from a route
    and the graceful shutdown kept by the middleware without probe paths."""
    with (
        PrivateRedis(tmp_path, start=True) as redis,
        _serving(STARLETTE, "uvicorn myapp.mounted", tmp_path, "starlette-mounted", {"REDIS_URL": redis.url}) as (
            server,
            client,
        ),
    ):
        _probes_pass(client, server, prefix="/health")
        _yaml_paths(STARLETTE, client, index=1)
        assert client.get("/readyz").status_code == 404  # paths={}: the middleware answers none
        assert client.get("/health/readyz/redis").status_code == 200
        _admin_readiness(client, "redis")
        _metrics(client, "redis")
        log = server.output()
        assert '"GET /admin/readiness HTTP/1.1" 200' in log, log
        assert '"GET /health/livez HTTP/1.1"' not in log, log  # the filter knows the mount's paths
        _stop(server, hook="close_redis")


def test_mounted_health_app_cannot(tmp_path: Path) -> None:
    """What the page says a mounted HealthApp cannot do: take a coordinator, pass the app's
    host check, or give route handlers the registry."""
    script = """
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from healthprobe import HealthRegistry
from healthprobe.asgi import HealthApp, registry_of
from healthprobe.shutdown import GracefulShutdown

registry = HealthRegistry()
try:
    HealthApp(registry, shutdown=GracefulShutdown(registry))
except TypeError:
    print("no shutdown")

def admin(request: Request) -> PlainTextResponse:
    try:
        registry_of(request)
    except LookupError:
        return PlainTextResponse("no registry")
    return PlainTextResponse("registry")

app = Starlette(
    routes=[Route("/admin", admin), Mount("/health", app=HealthApp(registry))],
    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=["localhost", "testserver"])],
)
with TestClient(app) as client:
    print(client.get("/health/readyz").status_code)
    print(client.get("/health/readyz", headers={"host": "10.1.2.3:8000"}).status_code)
    print(client.get("/admin").text)
"""
    done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.stdout.splitlines() == ["no shutdown", "200", "400", "no registry"], done.stdout + done.stderr


# -- plain ASGI and WSGI -----------------------------------------------------------------------


def test_plain_asgi_page_uvicorn(tmp_path: Path) -> None:
    with (
        PrivateRedis(tmp_path, start=True) as redis,
        _serving(PLAIN, "uvicorn", tmp_path, "plain-asgi", {"REDIS_URL": redis.url}) as (server, client),
    ):
        _probes_pass(client, server)
        _yaml_paths(PLAIN, client)
        assert client.post("/hits").json() == {"hits": 1}
        assert client.get("/elsewhere").status_code == 404
        _admin_readiness(client, "redis")
        _metrics(client, "redis")
        assert "does not speak the ASGI lifespan protocol (it returned): healthprobe answers it" in server.output()
        _redis_stopped(client, server, redis)
        redis.start()  # again, on the same port
        _wait(client, server, "/readyz", 200)
        _stop(server, hook="close_redis")


@pytest.mark.parametrize(("starts", "workers"), [("gunicorn", 2), ("waitress-serve", 1)])
@pytest.mark.usefixtures("postgres_up")
def test_plain_wsgi_page(starts: str, workers: int, tmp_path: Path) -> None:
    env = {"DATABASE_URL": DATABASE_URL}
    with _serving(PLAIN, starts, tmp_path, f"plain-{starts}", env) as (server, client):
        _probes_pass(client, server)
        _yaml_paths(PLAIN, client)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d.*", client.get("/now").json()["now"])
        _admin_readiness(client, "database")
        _metrics(client, "database")
        log = _stop(server, hook="close_pool", workers=workers)
        assert "INFO healthprobe: lifecycle starting -> started" in log, log  # the page's format


def test_plain_wsgi_page_database_unreachable(tmp_path: Path) -> None:
    """Nothing listens on the database's port: the process serves, readiness fails on the
    check, liveness passes, and the page's curl lines print what it shows."""
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    with _serving(PLAIN, "waitress-serve", tmp_path, "plain-unreachable", {"DATABASE_URL": closed}) as (
        server,
        client,
    ):
        _dependency_fails(client, server, "database")
        _admin_readiness(client, "database", ok=False)
        _curl_lines(PLAIN, server)
        _stop(server, hook="close_pool")


# -- migrating from fastapi-health -------------------------------------------------------------


@pytest.mark.usefixtures("postgres_up")
def test_migration_page_before(tmp_path: Path) -> None:
    """The page's "before" app, with fastapi-health, does what the table says of it: its
    route is in the API schema, its failure body is the handler's, and there is no probe
    path but its own."""
    pytest.importorskip("fastapi_health")
    project = doc_pages.write_project(MIGRATION, tmp_path / "migration")
    line = "uvicorn myapp.main:app --host 127.0.0.1 --port 8000"
    env = {"DATABASE_URL": MISSING_DATABASE_URL}
    with (
        doc_pages.served(line, project / "before", tmp_path / "before.log", env=env) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        response = client.get("/health")
        assert response.status_code == 503, server.output()
        assert response.json() == {"status": "fail", "failing": ["database"]}
        assert "/health" in client.get("/openapi.json").json()["paths"]
        assert client.get("/livez").status_code == 404


@pytest.mark.usefixtures("postgres_up")
def test_migration_page_after(tmp_path: Path) -> None:
    """The page's "after" app under its command: the three probes, the kept /health route
    with the readiness report, no health path in the API schema, metrics, and a graceful
    shutdown that closes the pool."""
    with _serving(MIGRATION, "uvicorn", tmp_path, "migration-after", {"DATABASE_URL": DATABASE_URL}) as (
        server,
        client,
    ):
        _probes_pass(client, server)
        response = client.get("/health")
        assert response.status_code == 200
        assert response.json()["checks"]["database"][0]["status"] == "pass"
        assert client.get("/openapi.json").json()["paths"] == {}
        _metrics(client, "database")
        _stop(server, hook="close_pool")


@pytest.mark.usefixtures("postgres_up")
def test_fastapi_page_under_lifespan_off_warns_that_its_lifespan_did_not_run(tmp_path: Path) -> None:
    """``uvicorn --lifespan off`` skips the app's lifespan, where the page opens its pool and
    registers its check: readiness would pass with the check missing. The first request
    logs one WARNING that says so and names the fix; an app with no lifespan of its own (the
    plain ASGI page) gets none."""
    project = doc_pages.write_project(FASTAPI, tmp_path / "lifespan-off")
    line = _loopback(doc_pages.command(FASTAPI, "uvicorn")) + " --lifespan off"
    with (
        doc_pages.served(line, project, tmp_path / "off.log", env={"DATABASE_URL": DATABASE_URL}) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        assert client.get("/livez").status_code == 200
        client.get("/readyz")
        log = server.output()
        assert log.count("the server ran no ASGI lifespan (uvicorn --lifespan off?)") == 1, log
        assert "serve with the lifespan on (uvicorn's default, --lifespan auto)" in log, log
        assert "WARNING" in log, log
    with (
        PrivateRedis(tmp_path, start=True) as redis,
        doc_pages.served(
            _loopback(doc_pages.command(PLAIN, "uvicorn")) + " --lifespan off",
            doc_pages.write_project(PLAIN, tmp_path / "plain-off"),
            tmp_path / "plain-off.log",
            env={"REDIS_URL": redis.url},
        ) as plain,
        httpx.Client(base_url=plain.url, timeout=10) as client,
    ):
        assert client.get("/livez").status_code == 200
        assert "ran no ASGI lifespan" not in plain.output()
