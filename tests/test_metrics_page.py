"""docs/metrics.md run as written: each code block is read from the page, given the names it
assumes (``app``, ``registry``, ``coordinator``), served by a real server on a loopback port
and scraped with httpx.

Run here: the metrics routes of the first block (uvicorn, Werkzeug), the coordinator's block
(uvicorn through a shutdown, waitress), prometheus-client's own exposition apps (uvicorn,
Werkzeug, ``start_http_server``), the multiprocess snippet of the prose (gunicorn) and the
scrape configuration (promtool, and a real Prometheus scraping the first block's app). Run
elsewhere: the install line (tests/test_install.py, in a fresh virtual environment), the
gunicorn start-up, its ``child_exit`` hook and the PromQL queries (tests/test_prometheus.py).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from healthprobe import GracefulShutdown
from healthprobe.testing import free_port

from . import doc_pages
from .apps import plain_apps
from .support import (
    PYTHON,
    ROOT,
    Samples,
    ServerProcess,
    assert_metrics_route_rules,
    prometheus_query,
    prometheus_server,
    require_binary,
    run_server,
    started_registry,
    uvicorn_client,
    wait_until,
    werkzeug_client,
)
from .support import sample_value as value
from .support import samples as parse
from .test_prometheus import CHILD_EXIT_CONF, MULTIPROCESS_START

PAGE = doc_pages.page("metrics.md")
INSTALL = doc_pages.block(PAGE, "sh", starts="pip install ")
ROUTES = doc_pages.block(PAGE, "python", contains="metrics_path=")
COORDINATOR = doc_pages.block(PAGE, "python", contains="PrometheusMetrics(registry, shutdown=coordinator)")
EXPOSITION = doc_pages.block(PAGE, "python", contains="start_http_server")
SCRAPE = doc_pages.block(PAGE, "yaml", contains="scrape_configs:")
#: The multiprocess exposition, shown in the prose rather than in a block.
(MULTIPROCESS_APP,) = re.findall(r"`([^`\n]*make_wsgi_app\(PrometheusMetrics[^`\n]*)`", PAGE)

PHASES = GracefulShutdown.phases


def test_every_block_of_the_page_is_run() -> None:
    """Each block of the page is one a test runs (here, or where the module docstring says):
    a block added to the page fails here until a test runs it."""
    run = [INSTALL, ROUTES, COORDINATOR, EXPOSITION, SCRAPE, MULTIPROCESS_START, CHILD_EXIT_CONF]
    assert sorted(doc_pages.blocks(PAGE)) == sorted([*run, *doc_pages.blocks(PAGE, "promql")])
    # The install line adds one extra that pyproject.toml declares.
    extras = re.fullmatch(r"pip install 'healthprobe\[([\w,-]+)\]'\n", INSTALL)
    assert extras is not None, INSTALL
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    known = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras.group(1) == "prometheus" and "prometheus" in known


# -- the first block, in this process ------------------------------------------------------------


def run_block(source: str, **names: Any) -> dict[str, Any]:
    """Execute a block of the page with the names it assumes; its namespace afterwards."""
    namespace: dict[str, Any] = dict(names)
    exec(compile(source, "docs/metrics.md", "exec"), namespace)
    return namespace


def as_wsgi(source: str) -> str:
    """``source`` with the WSGI adapter its import offers (``# or healthprobe.wsgi``)."""
    (line,) = [line for line in source.splitlines() if line.startswith("from healthprobe.asgi import HealthMiddleware")]
    assert line.endswith("# or healthprobe.wsgi"), line
    return source.replace(line, line.replace("healthprobe.asgi", "healthprobe.wsgi", 1))


@contextlib.contextmanager
def serving(flavour: str, source: str) -> Iterator[httpx.Client]:
    """``source`` run on a plain ``app`` of ``flavour`` (``/`` answers ``ok <pid>``, other
    paths ``404``) and a ``registry`` with one passing check, ``database``; the ``app`` it
    leaves served by uvicorn (ASGI) or Werkzeug (WSGI), in a thread. Readiness is probed
    once, so the check has a result to show."""
    asgi, wsgi = plain_apps()
    registry = started_registry({"database": lambda: True})
    if flavour == "asgi":
        app = run_block(source, app=asgi, registry=registry)["app"]
        server = uvicorn_client(app)
    else:
        app = run_block(as_wsgi(source), app=wsgi, registry=registry)["app"]
        server = werkzeug_client(app)
    with server as client:
        assert client.get("/readyz").status_code == 200
        yield client


def assert_health_metrics(answer: httpx.Response) -> Samples:
    """``answer`` is a scrape in the text format holding the health metrics (the check
    passing) and prometheus-client's process metrics; its samples."""
    assert answer.status_code == 200, (answer.url, answer.text)
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = parse(answer.text)
    assert value(found, "healthprobe_check_status", check="database", status="pass") == 1.0
    assert value(found, "healthprobe_check_status", check="database", status="fail") == 0.0
    assert value(found, "healthprobe_lifecycle_state", state="started") == 1.0
    assert any(name.startswith("process_") for name, _ in found)
    return found


@pytest.mark.parametrize("flavour", ["asgi", "wsgi"])
def test_the_metrics_routes_of_the_first_block(flavour: str) -> None:
    """Both lines as written (the second wraps the first): ``/metrics`` and ``/-/metrics``
    each serve the health metrics and keep every promise of the paragraph below the block."""
    with serving(flavour, ROUTES) as client:
        for path in ("/metrics", "/-/metrics"):
            answer = client.get(path)
            found = assert_health_metrics(answer)
            assert value(found, "healthprobe_probe_status", probe="readiness", status="pass") == 1.0
            assert answer.headers["cache-control"] == "no-store"
            only = client.get(f"{path}?name[]=healthprobe_check_status")
            assert {name for name, _ in parse(only.text)} == {"healthprobe_check_status"}
            assert_metrics_route_rules(client, path)  # HEAD, 405 for POST, 400 for %zz, OpenMetrics
            # A query of 2,048 characters or of 64 parameters is served, one more is refused.
            at_limit = [f"name[]={'x' * 2041}", "&".join(["name[]=x"] * 64)]
            assert [client.get(f"{path}?{query}").status_code for query in at_limit] == [200, 200]
            over = {
                f"name[]={'x' * 2042}": "query string longer than 2048 characters\n",
                "&".join(["name[]=x"] * 65): "more than 64 query parameters\n",
            }
            for query, reason in over.items():
                refused = client.get(f"{path}?{query}")
                assert (refused.status_code, refused.text) == (400, reason)
        assert client.get("/").text.startswith("ok ")


@pytest.mark.parametrize(
    ("line", "served", "passed_on"), [(0, "/metrics", "/-/metrics"), (1, "/-/metrics", "/metrics")]
)
def test_each_line_of_the_first_block_alone(line: int, served: str, passed_on: str) -> None:
    """Each assignment with the import, as the alternatives they are: ``metrics_path``
    moves the route, the other path reaches the application."""
    first, *assignments = [text for text in ROUTES.splitlines() if text.strip()]
    assert len(assignments) == 2
    with serving("asgi", f"{first}\n{assignments[line]}\n") as client:
        assert_health_metrics(client.get(served))
        other = client.get(passed_on)
        assert (other.status_code, other.text) == (404, "not found")


# -- blocks served by a server process ---------------------------------------------------------

#: The start of a server process's module: ``registry``, with one passing check.
REGISTRY_SOURCE = """\
from healthprobe import HealthRegistry

registry = HealthRegistry()
registry.add_check("database", lambda: True)
registry.mark_started()
"""

#: The ``app`` a block wraps: ``/hold`` answers once ``/release`` has been asked, any other
#: path at once; all ``application``.
INNER_APPS = {
    "asgi": """\
import asyncio

_release = asyncio.Event()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/hold":
        await _release.wait()
    elif scope["path"] == "/release":
        _release.set()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"application"})
""",
    "wsgi": """\
import threading

_release = threading.Event()


def app(environ, start_response):
    if environ["PATH_INFO"] == "/hold":
        _release.wait(30)
    elif environ["PATH_INFO"] == "/release":
        _release.set()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"application"]
""",
}

#: How each kind of application is served: the argv for a port.
COMMANDS: dict[str, Callable[[int], list[str]]] = {
    "asgi": lambda port: [PYTHON, "-m", "uvicorn", "page_app:app", "--host", "127.0.0.1", "--port", str(port)],
    "wsgi": lambda port: [PYTHON, "-m", "waitress", f"--listen=127.0.0.1:{port}", "page_app:app"],
}


@contextlib.contextmanager
def page_server(
    tmp_path: Path, source: str, command: Callable[[int], list[str]], env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """``source`` as ``page_app.py`` in ``tmp_path``, served by ``command`` on a free port."""
    (tmp_path / "page_app.py").write_text(source)
    port = free_port()
    # An empty KUBERNETES_SERVICE_HOST: the coordinator's delay is 0 s, as off Kubernetes.
    full_env = {"PYTHONPATH": str(tmp_path), "KUBERNETES_SERVICE_HOST": "", **(env or {})}
    with run_server(command(port), port, tmp_path, env=full_env, name="page-app", cwd=tmp_path) as server:
        yield server


def coordinator_app(flavour: str) -> str:
    """The coordinator's block on ``INNER_APPS[flavour]`` (with ``healthprobe.wsgi`` for
    WSGI, as its import offers)."""
    block = COORDINATOR if flavour == "asgi" else as_wsgi(COORDINATOR)
    return f"{REGISTRY_SOURCE}\n{INNER_APPS[flavour]}\n# docs/metrics.md\n{block}"


def phases(found: Samples) -> dict[str, float]:
    return {dict(labels)["phase"]: v for (name, labels), v in found.items() if name == "healthprobe_shutdown_phase"}


def hold(url: str) -> tuple[threading.Thread, list[object]]:
    """``GET /hold`` in a thread: the thread, and the list that gets its answer (or error)."""
    got: list[object] = []

    def run() -> None:
        try:
            got.append(httpx.get(f"{url}/hold", timeout=20))
        except httpx.HTTPError as exc:
            got.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, got


def in_flight(client: httpx.Client) -> float | None:
    return value(parse(client.get("/metrics").text), "healthprobe_in_flight_requests")


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["asgi", "wsgi"])
def test_the_coordinator_block_counts_requests_in_flight(flavour: str, tmp_path: Path) -> None:
    with (
        page_server(tmp_path, coordinator_app(flavour), COMMANDS[flavour]) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        assert client.get("/readyz").status_code == 200
        found = assert_health_metrics(client.get("/metrics"))
        assert phases(found) == {phase: float(phase == "serving") for phase in PHASES}
        assert value(found, "healthprobe_in_flight_requests") == 0.0
        thread, got = hold(server.url)
        wait_until(lambda: in_flight(client) == 1.0, 10, "the held request in flight")
        assert client.get("/release").text == "application"
        thread.join(10)
        assert [answer.text for answer in got if isinstance(answer, httpx.Response)] == ["application"], got
        wait_until(lambda: in_flight(client) == 0.0, 10, "no request in flight")


@pytest.mark.slow
def test_the_coordinator_block_shows_the_drain(tmp_path: Path) -> None:
    """Under uvicorn, SIGTERM with a request in flight: a scrape on a connection opened
    before (Prometheus keeps its connections) sees the drain phase and the request; once it
    ends the process exits 0."""
    with (
        page_server(tmp_path, coordinator_app("asgi"), COMMANDS["asgi"]) as server,
        httpx.Client(base_url=server.url, timeout=10) as scraper,
        httpx.Client(base_url=server.url, timeout=10) as releaser,
    ):
        assert scraper.get("/readyz").status_code == 200
        assert releaser.get("/").text == "application"  # its connection, open before the signal
        thread, got = hold(server.url)
        wait_until(lambda: in_flight(scraper) == 1.0, 10, "the held request in flight")
        server.signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                httpx.get(f"{server.url}/livez", timeout=2)
            except httpx.ConnectError:
                return True
            return False

        wait_until(refused, 10, "the server no longer accepting", server.output)
        found = parse(scraper.get("/metrics").text)
        assert phases(found) == {phase: float(phase == "drain") for phase in PHASES}
        assert value(found, "healthprobe_in_flight_requests") == 1.0
        assert value(found, "healthprobe_lifecycle_state", state="draining") == 1.0
        assert releaser.get("/release").text == "application"
        thread.join(10)
        assert [answer.text for answer in got if isinstance(answer, httpx.Response)] == ["application"], got
        assert server.wait(20) == 0, server.output()


#: Runs the exposition block (``block.py``) as a module would, then serves what it made: its
#: ASGI app mounted at ``/metrics`` in Starlette (uvicorn, on the port its argument names), its WSGI app at
#: ``/metrics`` with Werkzeug's DispatcherMiddleware (Werkzeug's server, ``WSGI_PORT``); the
#: block's ``start_http_server`` serves the third.
EXPOSITION_RUNNER = (
    """\
import os
import sys
import threading

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from healthprobe import GracefulShutdown

"""
    + REGISTRY_SOURCE
    + """
coordinator = GracefulShutdown(registry)


class Names(dict):
    \"\"\"The block's names, with every value each was given: the block gives ``metrics_app``
    the ASGI app, then the WSGI one.\"\"\"

    def __init__(self, **names):
        super().__init__(names)
        self.given = {}

    def __setitem__(self, name, value):
        self.given.setdefault(name, []).append(value)
        super().__setitem__(name, value)


names = Names(registry=registry, coordinator=coordinator)
with open("block.py") as block:
    exec(compile(block.read(), "docs/metrics.md", "exec"), {}, names)
registry.run("readiness")
asgi_metrics, wsgi_metrics = names.given["metrics_app"]


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"application"]


wsgi = DispatcherMiddleware(application, {"/metrics": wsgi_metrics})
wsgi_server = make_server("127.0.0.1", int(os.environ["WSGI_PORT"]), wsgi, threaded=True)
threading.Thread(target=wsgi_server.serve_forever, daemon=True).start()
asgi = Starlette(routes=[Mount("/metrics", asgi_metrics)])
uvicorn.run(asgi, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
)


@pytest.mark.slow
def test_prometheus_clients_own_exposition_apps(tmp_path: Path) -> None:
    http_port, wsgi_port = free_port(), free_port()
    # start_http_server's port and address are the only changes: 9100 (node_exporter's usual
    # port) may be taken on this machine or by a test running alongside, so a free port; and
    # 127.0.0.1, as every server of the tests listens on loopback only.
    shown = 'start_http_server(9100, addr="0.0.0.0")'
    assert EXPOSITION.count(shown) == 1
    (tmp_path / "block.py").write_text(EXPOSITION.replace(shown, f'start_http_server({http_port}, addr="127.0.0.1")'))
    env = {"WSGI_PORT": str(wsgi_port)}
    with (
        # uvicorn, started last, on the port waited for: once it accepts, the other two do.
        page_server(tmp_path, EXPOSITION_RUNNER, lambda port: [PYTHON, "page_app.py", str(port)], env) as server,
        httpx.Client(timeout=10) as client,
    ):
        urls = [
            f"http://127.0.0.1:{http_port}/metrics",  # start_http_server
            f"http://127.0.0.1:{wsgi_port}/metrics",  # make_wsgi_app under DispatcherMiddleware
            # make_asgi_app under Starlette's Mount, which redirects /metrics to /metrics/ (a
            # redirect that Prometheus follows)
            f"{server.url}/metrics",
        ]
        for url in urls:
            found = assert_health_metrics(client.get(url, follow_redirects=True))
            assert value(found, "healthprobe_in_flight_requests") == 0.0
            assert phases(found) == {phase: float(phase == "serving") for phase in PHASES}
        assert client.get(f"http://127.0.0.1:{wsgi_port}/").text == "application"


@pytest.mark.slow
def test_the_multiprocess_snippet_under_gunicorn(tmp_path: Path) -> None:
    """The prose's ``make_wsgi_app(PrometheusMetrics(registry).collectors)`` as the whole
    app of two gunicorn workers in multiprocess mode: whichever answers, the scrape merges
    both workers' files (one run of the check in each)."""
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    imports = "from prometheus_client import make_wsgi_app\n\nfrom healthprobe.prometheus import PrometheusMetrics\n"
    source = f"{imports}{REGISTRY_SOURCE}\napp = {MULTIPROCESS_APP}  # docs/metrics.md\nregistry.run('readiness')\n"

    def gunicorn(port: int) -> list[str]:
        return [PYTHON, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}", "page_app:app"]

    env = {"PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    with (
        page_server(tmp_path, source, gunicorn, env) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):

        def both_runs() -> Samples | None:
            found = parse(client.get("/metrics").text)
            return found if value(found, "healthprobe_check_runs_total", check="database", status="pass") == 2 else None

        found = wait_until(both_runs, 20, "both workers' runs in a scrape", server.output, retry=(httpx.HTTPError,))
        assert found is not None
        assert value(found, "healthprobe_check_status", check="database", status="pass") == 1.0
        assert value(found, "healthprobe_lifecycle_state", state="started") == 1.0
        assert len({path.stem.rsplit("_", 1)[1] for path in multiproc.glob("gauge_livemax_*.db")}) == 2


@pytest.mark.slow
def test_the_scrape_configuration(tmp_path: Path) -> None:
    """The page's job, its target the first block's app: promtool accepts the file, and a real
    Prometheus scraping that job sees the target up and its health metrics."""
    (job,) = yaml.safe_load(SCRAPE)["scrape_configs"]
    (static,) = job["static_configs"]
    (target,) = static["targets"]
    assert SCRAPE.count(target) == 1
    with serving("asgi", ROUTES) as app:
        address = f"{app.base_url.host}:{app.base_url.port}"
        written = tmp_path / "page" / "prometheus.yml"
        written.parent.mkdir()
        written.write_text(SCRAPE.replace(target, address))
        promtool = require_binary("promtool", "prometheus")
        checked = subprocess.run([promtool, "check", "config", written], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr

        # The same job in Prometheus, scraped every second rather than every 15 s so that its
        # first scrape comes at once: the configuration the helper writes is the page's but
        # for that interval.
        (tmp_path / "prometheus").mkdir()
        with (
            prometheus_server(tmp_path / "prometheus", job["job_name"], app.base_url.port or 0) as prometheus,
            httpx.Client(base_url=prometheus.url, timeout=10) as api,
        ):
            (config,) = [arg.split("=", 1)[1] for arg in prometheus.command if arg.startswith("--config.file=")]
            (page_job,) = yaml.safe_load(written.read_text())["scrape_configs"]
            del page_job["scrape_interval"]
            assert yaml.safe_load(Path(config).read_text())["scrape_configs"] == [page_job]

            name = job["job_name"]
            query = f'up{{job="{name}"}}'
            # (an API that answers 503 while Prometheus starts fails prometheus_query's assertion: retried)
            up = wait_until(
                lambda: prometheus_query(api, query), 20, "the first scrape", prometheus.output, retry=(AssertionError,)
            )
            assert [(r["metric"]["instance"], r["value"][1]) for r in up] == [(address, "1")]
            query = f'healthprobe_check_status{{job="{name}", check="database", status="pass"}}'
            assert [r["value"][1] for r in prometheus_query(api, query)] == ["1"]
