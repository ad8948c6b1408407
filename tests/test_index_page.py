"""docs/index.md, the quickstart, run as a user copies it.

``myapp/health.py`` (its database pointed at the machine's PostgreSQL, its disk at a
temporary folder) and the FastAPI tab's ``myapp/main.py`` are served by the command the tab
names, ``uvicorn myapp.main:asgi``, probed, and stopped with SIGTERM. The prefix mounts
(Starlette's ``Mount``, Werkzeug's ``DispatcherMiddleware``) and ``expose_output=True`` are
served by uvicorn or Werkzeug in a thread of this process. The page's ``curl`` lines run
against a real server and print what the page shows. Every other block is run by the test
named where :func:`test_every_block_of_the_page_is_run` lists it, so a block added to the
page fails that test until a test runs it.
"""

from __future__ import annotations

import re
import signal
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from healthprobe import GracefulShutdown, HealthRegistry

from . import doc_pages
from .apps import plain_apps, started_registry
from .support import POSTGRES, ServerProcess, uvicorn_client, uvicorn_server, werkzeug_client
from .test_docs import docs_registry

DOC = doc_pages.page("index.md")

HEALTH = doc_pages.block(DOC, "python", starts="# myapp/health.py\n")
MAIN = doc_pages.block(DOC, "python", starts="# myapp/main.py\n")
MOUNT = doc_pages.block(DOC, "python", starts="from starlette.routing import Mount\n")
DISPATCHER = doc_pages.block(DOC, "python", starts="from werkzeug.middleware.dispatcher import DispatcherMiddleware\n")
EXPOSE = doc_pages.block(DOC, "python", starts="HealthMiddleware(app, registry, expose_output=True)")
CURL = doc_pages.blocks(DOC, "console")
#: The ``curl`` line of each console block and what the page shows under it.
TRANSCRIPTS = doc_pages.transcripts(DOC)

#: The database the tests reach (user ``postgres``, database ``test``), for the page's ``db`` host.
DATABASE_URL = "postgresql://postgres@{}:{}/test".format(*POSTGRES)


def _after(body: str) -> str:
    """The block that follows ``body`` on the page."""
    bodies = [found for _, found in doc_pages.fences(DOC)]
    return bodies[bodies.index(body) + 1]


def test_every_block_of_the_page_is_run() -> None:
    """Each block of the page is one a test runs, here or in the test named beside it."""
    here = [HEALTH, MAIN, MOUNT, DISPATCHER, EXPOSE, _after(EXPOSE), *CURL]
    elsewhere = [
        # tests/test_install.py::test_wheel_and_sdist_install_into_a_fresh_venv: the editable
        # line run as written in the clone, the other the README's line it runs; the wheel
        # and sdist lines are its build and installs, their file names those it built.
        doc_pages.block(DOC, "sh", starts="pip install -e '.[asgi]'"),
        doc_pages.block(DOC, "sh", starts="pip install build && python -m build"),
        # tests/test_check_threads.py::test_the_example_of_docs_index_md
        doc_pages.block(DOC, "python", contains="on_thread_exit(local.conn.close)"),
        # tests/test_docs_recipes.py::test_flask_recipe
        doc_pages.block(DOC, "python", starts="# myapp/__init__.py\n"),
        # tests/test_docs.py::test_text_examples_are_real_answers (the other text block is here)
        doc_pages.block(DOC, "text", contains="[-]lifecycle failed: draining"),
        # tests/test_docs.py::test_json_example_has_the_real_shape
        doc_pages.block(DOC, "json"),
        # tests/test_docs.py::test_manifest_probes_served_paths
        doc_pages.block(DOC, "yaml"),
    ]
    assert sorted(doc_pages.blocks(DOC)) == sorted(here + elsewhere)
    assert [len(steps) for steps in TRANSCRIPTS] == [1] * len(CURL)  # each console block, one curl line


# -- myapp/health.py and the FastAPI tab, served by uvicorn ---------------------------------------------


def _project(into: Path, disk: Path) -> Path:
    """The page's two files under ``into``: health.py with its database and disk moved here."""
    assert HEALTH.count("postgresql://app@db/app") == 1 and HEALTH.count('"/var/lib/app"') == 1, HEALTH
    health = HEALTH.replace("postgresql://app@db/app", DATABASE_URL).replace('"/var/lib/app"', repr(str(disk)))
    (into / "myapp").mkdir(parents=True)
    (into / "myapp" / "health.py").write_text(health)
    (into / "myapp" / "main.py").write_text(MAIN)
    return into


@pytest.mark.slow
@pytest.mark.usefixtures("postgres_up")
def test_the_fastapi_tab_serves_the_checks_of_health_py(tmp_path: Path) -> None:
    """``uvicorn myapp.main:asgi``, as the tab's comment says: startup passes on
    ``migrations``, readiness on ``database`` (a real connection) and ``disk`` (a
    ``CheckResult`` with its value in percent), liveness has no check; other paths reach
    FastAPI; SIGTERM shuts down gracefully, exit code 0."""
    match = re.search(r"# serve this one: (uvicorn [\w.:]+)\n", MAIN)
    assert match is not None, MAIN
    (tmp_path / "disk").mkdir()
    project = _project(tmp_path / "project", tmp_path / "disk")
    with (
        doc_pages.served(f"{match.group(1)} --port 8000", project, tmp_path / "uvicorn.log") as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        startup = client.get("/startupz?verbose")
        shown = (startup.status_code, startup.text)
        assert shown == (200, "[+]migrations ok\nstartupz check passed\n"), server.output()
        ready = client.get("/readyz?format=json&verbose")
        assert ready.status_code == 200, (ready.text, server.output())
        checks = ready.json()["checks"]
        assert set(checks) == {"database", "disk"}, checks
        assert checks["database"][0]["status"] == "pass", checks
        (disk,) = checks["disk"]
        assert disk["observedUnit"] == "%" and 0 <= disk["observedValue"] <= 100, disk
        assert disk["status"] == ("warn" if disk["observedValue"] > 90 else "pass"), disk
        assert disk["critical"] is False, disk
        assert (client.get("/livez?verbose").text, client.get("/livez").text) == ("livez check passed\n", "ok\n")
        assert client.get("/").json() == {"detail": "Not Found"}  # FastAPI's own answer
        _stop(server)


def _stop(server: ServerProcess) -> None:
    """SIGTERM: the tab's coordinator fails readiness, drains, and the process exits 0 after
    the app's lifespan shutdown, its timeline in uvicorn's log."""
    server.signal(signal.SIGTERM)
    code = server.wait(30)
    log = server.output()
    assert code == 0, log
    assert "shutdown: SIGTERM received; readiness fails" in log, log
    assert re.search(r"shutdown: stopped [\d.]+ s after the signal; exit code 0", log), log
    assert "Application shutdown complete" in log and "Finished server process" in log, log


# -- the mounts and expose_output, served from this process ---------------------------------------


def _run(source: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = dict(names)
    exec(compile(source, "docs/index.md", "exec"), namespace)
    return namespace


def _registry() -> HealthRegistry:
    return started_registry({"database": lambda: True})


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
def test_the_mount_snippet_answers_under_its_prefix(framework: str) -> None:
    """``app.mount("/health", HealthApp(registry))`` on a FastAPI or Starlette app, and the
    ``Mount`` route of the snippet's ``routes``: both answer ``/health/<probe>``, with a
    trailing slash alike and no redirect, and leave the app's other paths to it."""
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = FastAPI() if framework == "fastapi" else Starlette()
    namespace = _run(MOUNT, app=app, registry=_registry())
    mount, rest = namespace["routes"]
    assert isinstance(mount, Mount) and mount.path == "/health" and rest is Ellipsis
    for served in (app, Starlette(routes=[mount])):
        with uvicorn_client(served) as client:
            for path in ("/health/livez", "/health/readyz", "/health/startupz", "/health/readyz/"):
                answer = client.get(path, follow_redirects=False)
                assert (answer.status_code, answer.text) == (200, "ok\n"), (path, answer.text)
            assert client.get("/livez").status_code == 404  # only under the prefix


def test_the_dispatcher_snippet_answers_under_its_prefix() -> None:
    """Werkzeug's ``DispatcherMiddleware`` around a WSGI ``application``: the probes under
    ``/health``, everything else to the application."""
    _, application = plain_apps()
    wrapped = _run(DISPATCHER, application=application, registry=_registry())["application"]
    with werkzeug_client(wrapped) as client:
        for path in ("/health/livez", "/health/readyz", "/health/startupz"):
            assert (client.get(path).status_code, client.get(path).text) == (200, "ok\n"), path
        assert client.get("/").text.startswith("ok ")
        assert client.get("/livez").status_code == 404


@pytest.mark.parametrize("flavour", ["asgi", "wsgi"])
def test_expose_output_shows_the_text_below_it(flavour: str) -> None:
    """The snippet, given an app and the checks of the page's examples, answers ``/readyz``
    with exactly the text block that follows it, under uvicorn and under Werkzeug."""
    asgi, wsgi = plain_apps()
    if flavour == "asgi":
        from healthprobe.asgi import HealthMiddleware

        names: dict[str, Any] = {"HealthMiddleware": HealthMiddleware, "app": asgi}
    else:
        from healthprobe.wsgi import HealthMiddleware as WsgiHealthMiddleware

        names = {"HealthMiddleware": WsgiHealthMiddleware, "app": wsgi}
    app = eval(compile(EXPOSE, "docs/index.md", "eval"), {**names, "registry": docs_registry()})
    with uvicorn_client(app) if flavour == "asgi" else werkzeug_client(app) as client:
        answer = client.get("/readyz")
    assert (answer.status_code, answer.text) == (503, _after(EXPOSE))


# -- the curl lines, against a real server ----------------------------------------------------------


@pytest.fixture(scope="module")
def docs_server() -> Iterator[int]:
    """The checks of the page's examples behind ``HealthMiddleware(app, registry)``, served by
    uvicorn; its port."""
    from healthprobe.asgi import HealthMiddleware

    asgi, _ = plain_apps()
    with uvicorn_server(HealthMiddleware(asgi, docs_registry())) as url:
        yield int(url.rsplit(":", 1)[1])


#: The headers the page leaves out: the server's own, and the length of the body.
LEFT_OUT = {"date", "server", "content-length"}


@pytest.mark.parametrize("index", range(len(TRANSCRIPTS)), ids=["livez", "readyz"])
def test_the_curl_lines_print_what_the_page_shows(index: int, docs_server: int) -> None:
    """``curl -i``: the status line, the headers the page shows, in their order (the others
    are the server's own and the length), and the body, as printed."""
    ((command, shown),) = TRANSCRIPTS[index]
    out = doc_pages.run_client(command, docs_server)
    head, _, body = out.partition("\n\n")
    shown_head, _, shown_body = "\n".join(shown).partition("\n\n")
    status, *headers = head.splitlines()
    shown_status, *shown_headers = shown_head.splitlines()
    assert status == shown_status, out
    assert [line for line in headers if line in shown_headers] == shown_headers, out  # all of them, in order
    assert {line.split(":", 1)[0].lower() for line in set(headers) - set(shown_headers)} == LEFT_OUT, out
    assert body == shown_body + "\n", out


# -- the Pod manifest ---------------------------------------------------------------------------


def test_the_pod_sizes_its_grace_period_for_the_fastapi_tabs_coordinator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pod's comment is the budget of the coordinator the FastAPI tab builds, in a pod
    (its defaults, no hook): delay, drain, the hooks' share. The grace period is that budget
    plus a margin, and no shorter than the grace period the coordinator assumes."""
    pod = doc_pages.block(DOC, "yaml")
    comment = re.search(r"# Shutdown delay (\d+) s \+ drain (\d+) s \+ hooks (\d+) s \+ margin", pod)
    assert comment is not None, pod
    delay, drain, hooks = (float(n) for n in comment.groups())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    health = types.ModuleType("myapp.health")
    health.registry = HealthRegistry()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "myapp", types.ModuleType("myapp"))
    monkeypatch.setitem(sys.modules, "myapp.health", health)
    shutdown = _run(MAIN)["shutdown"]
    assert isinstance(shutdown, GracefulShutdown)
    assert (shutdown.delay, shutdown.drain_timeout, shutdown.budget) == (delay, drain, delay + drain + hooks)
    grace = yaml.safe_load(pod)["spec"]["terminationGracePeriodSeconds"]
    assert grace > shutdown.budget and grace >= shutdown.grace_period, (grace, shutdown.budget)
