"""Groups and the guard through the framework integrations, under real servers.

* Flask (``healthprobe.flask``): ``HEALTHPROBE_GUARD`` / ``HEALTHPROBE_GROUP_PATH`` and the
  extension's ``guard=`` / ``group_path=``, served by Werkzeug's threaded server in this
  process and by gunicorn (tests/apps/flask_app.py): a group at ``/health/wellness`` fails
  on a real TCP dependency that is down (tests.support.TcpDependency) while ``/livez`` and
  ``/readyz`` pass; without the guard's token the answer is plain, with it detailed; the
  WARNING when groups have no path (probe paths under ``/health``, no group path), at
  ``init_app`` or at the first probe after a group is added, once.
* Django (``healthprobe.django``): the ``HEALTHPROBE`` keys ``GROUPS``, ``GROUP_PATH``,
  ``GUARD`` and a check's ``tags`` and ``probes: []``, on the launch-path test site
  (tests/apps/django_site) under uvicorn (ASGI) and gunicorn (WSGI); ``healthprobe.W004``
  from ``manage.py check`` and at start-up; the system-check errors of bad groups, tags and
  guards, none showing the token.
* The "Groups and the guard" sections of docs/frameworks/flask.md and django.md, run as
  written: their code blocks are the apps served, their ``curl`` lines print what they show.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from healthprobe import Guard
from healthprobe.flask import HealthProbe

from . import doc_pages
from .support import (
    BIN,
    PYTHON,
    ROOT,
    ServerProcess,
    TcpDependency,
    free_port,
    run_server,
    wait_until,
    werkzeug_client,
    werkzeug_server,
)

TOKEN = "groups-t0ken"
WITHHELD = "details withheld: send the guard's token, or ask from an allowed network"
AUTH = {"authorization": f"Bearer {TOKEN}"}
FLASK_PAGE = doc_pages.page("frameworks/flask.md")
DJANGO_PAGE = doc_pages.page("frameworks/django.md")
NOT_YET = (httpx.TransportError,)


@pytest.fixture
def upstream() -> Iterator[TcpDependency]:
    dependency = TcpDependency()
    yield dependency
    dependency.down()


def _guarded_group(client: httpx.Client, group: str, check: str, ready: str = "/readyz", live: str = "/livez") -> None:
    """With ``check``'s dependency down: the probes pass, the group fails; plain without the
    token, detailed with it."""
    assert client.get(live).status_code == 200
    assert client.get(ready).status_code == 200
    plain = client.get(f"{group}?verbose")
    assert (plain.status_code, plain.text) == (503, f"wellness check failed\n{WITHHELD}\n"), plain.text
    assert plain.headers["x-healthprobe-details"] == "withheld"
    detailed = client.get(f"{group}?verbose", headers=AUTH)
    assert detailed.status_code == 503
    assert detailed.text.startswith(f"[-]{check} failed") and "wellness check failed" in detailed.text
    assert client.get(f"{group}/{check}", headers=AUTH).status_code == 503
    document = client.get(f"{group}?format=json").json()
    assert document["status"] == "fail" and "checks" not in document, document
    assert client.get(f"{group}?format=json", headers=AUTH).json()["checks"][check][0]["tags"] == ["external"]
    assert check not in client.get(f"{ready}?verbose").text  # a check in no probe


# -- Flask -------------------------------------------------------------------------------------


def _flask_app(name: str = "groups", **config: Any) -> Flask:
    app = Flask(name)
    app.config.update(config)

    @app.before_request
    def refuse() -> tuple[str, int]:
        return "login required", 401

    return app


def test_flask_group_and_guard_under_werkzeug(upstream: TcpDependency) -> None:
    app = _flask_app()
    probes = HealthProbe(guard=Guard(token=TOKEN), shutdown=False).init_app(app)
    probes.registry.add_check("db", lambda: True, probes=("readiness", "liveness"))
    probes.registry.add_check("upstream", upstream.check, probes=(), tags=("external",))
    probes.registry.add_group("wellness", tags="external")
    upstream.down()
    with werkzeug_client(app) as client:
        _guarded_group(client, "/health/wellness", "upstream")
        assert client.get("/").status_code == 401  # the app's own answer
        upstream.up()
        wait_until(lambda: client.get("/health/wellness").status_code == 200, 10, "the group passing")
        assert client.get("/health/wellness?verbose").text == f"ok\n{WITHHELD}\n"


GROUPLESS = "has groups (wellness) but answers none over HTTP"
NESTED = {"/health/live": "liveness", "/health/ready": "readiness"}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if GROUPLESS in r.getMessage()]


def test_flask_group_path_setting_and_the_warning_without_it(
    upstream: TcpDependency, caplog: pytest.LogCaptureFixture
) -> None:
    """Probe paths under /health: with HEALTHPROBE_GROUP_PATH the group is answered there and
    nothing is logged; without it the group has no path (the app's own answer), and one
    WARNING names the setting: at init_app for a group added before, at the first probe
    for a group added after."""
    upstream.down()
    with caplog.at_level(logging.WARNING, logger="healthprobe"):
        given = _flask_app("given", HEALTHPROBE_PATHS=NESTED, HEALTHPROBE_GROUP_PATH="/groups")
        probes = HealthProbe(shutdown=False).init_app(given)
        probes.registry.add_check("upstream", upstream.check, probes=(), tags=("external",))
        probes.registry.add_group("wellness", tags="external")
        with werkzeug_client(given) as client:
            assert client.get("/health/ready").status_code == 200
            answer = client.get("/groups/wellness?verbose")
            assert (answer.status_code, answer.text) == (
                503,
                "[-]upstream failed: reason withheld\nwellness check failed\n",
            )
        assert given.config["HEALTHPROBE_GROUP_PATH"] == "/groups"
        assert _warnings(caplog) == []

        # Added after init_app: the first probe answered warns, once.
        late = _flask_app("late", HEALTHPROBE_PATHS=NESTED)
        probes = HealthProbe(shutdown=False).init_app(late)
        assert late.config["HEALTHPROBE_GROUP_PATH"] is None  # the effective value
        probes.registry.add_check("upstream", upstream.check, probes=(), tags=("external",))
        probes.registry.add_group("wellness", tags="external")
        assert _warnings(caplog) == []
        with werkzeug_client(late) as client:
            for _ in range(3):
                assert client.get("/health/ready").status_code == 200
            assert client.get("/health/wellness").status_code == 401  # nobody answers it but the app
    (line,) = _warnings(caplog)
    assert line == (
        "healthprobe.flask: Flask app 'late' has groups (wellness) but answers none over HTTP: its probe path "
        "'/health/live' is at or below /health, where groups are answered by default; set "
        "app.config['HEALTHPROBE_GROUP_PATH'] (or HealthProbe(group_path=...)) to a path of their own, such as "
        "'/groups' (see docs/frameworks/flask.md)"
    )
    # The page shows this line, with its app's name.
    shown = doc_pages.block(FLASK_PAGE, "text", contains=GROUPLESS).strip()
    assert shown == line.replace("'late'", "'myapp'")

    # A group there before init_app: warned at init_app; the constructor's group_path silences it.
    caplog.clear()
    shared = HealthProbe(shutdown=False)
    early = _flask_app("early", HEALTHPROBE_PATHS=NESTED)
    from healthprobe import HealthRegistry

    registry = HealthRegistry()
    registry.add_check("upstream", upstream.check, probes=(), tags=("external",))
    registry.add_group("wellness", tags="external")
    with caplog.at_level(logging.WARNING, logger="healthprobe"):
        shared.init_app(early, registry)
        assert len(_warnings(caplog)) == 1
        quiet = _flask_app("quiet", HEALTHPROBE_PATHS=NESTED)
        state = HealthProbe(shutdown=False, group_path="/-/groups").init_app(quiet, registry)
        none = _flask_app("none", HEALTHPROBE_PATHS=NESTED, HEALTHPROBE_GROUP_PATH=None)
        HealthProbe(shutdown=False).init_app(none, registry)
    assert len(_warnings(caplog)) == 1
    assert state.middleware.endpoints.group_path == "/-/groups"
    assert quiet.test_client().get("/-/groups/wellness").status_code == 503


@pytest.mark.slow
def test_flask_group_and_guard_under_gunicorn(upstream: TcpDependency, tmp_path: Path) -> None:
    """tests/apps/flask_app.py with HEALTHPROBE_GUARD from the environment (a dict) and a
    group, served by gunicorn's sync workers."""
    port = free_port()
    argv = [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "tests.apps.flask_app:app"]
    env = {"HP_UPSTREAM_PORT": str(upstream.port), "HP_GUARD_TOKEN": TOKEN, "KUBERNETES_SERVICE_HOST": ""}
    upstream.down()
    with run_server(argv, port, tmp_path, env=env, name="gunicorn-groups") as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            _guarded_group(client, "/health/wellness", "upstream")
            upstream.up()
            wait_until(
                lambda: client.get("/health/wellness").status_code == 200, 10, "the group passing", server.output
            )
        assert GROUPLESS not in server.output()


def test_flask_page_groups_and_the_guard(upstream: TcpDependency, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's block is the app; its curl lines print what the page shows."""
    block = doc_pages.block(FLASK_PAGE, "python", contains="HEALTHPROBE_GROUP_PATH")
    monkeypatch.setenv("HEALTH_TOKEN", TOKEN)
    monkeypatch.setenv("SEARCH_HOST", "127.0.0.1")
    monkeypatch.setenv("SEARCH_PORT", str(upstream.port))
    namespace: dict[str, Any] = {"__name__": "myapp"}
    exec(compile(block, "flask.md", "exec"), namespace)
    upstream.down()
    (steps,) = doc_pages.transcripts(FLASK_PAGE, contains="/groups/wellness")
    with werkzeug_server(namespace["app"]) as url:
        port = int(url.rsplit(":", 1)[1])
        for command, shown in steps:
            out = doc_pages.run_client(command.replace("$HEALTH_TOKEN", TOKEN), port, check=False)
            assert out == "".join(f"{line}\n" for line in shown), (command, out)


# -- Django ------------------------------------------------------------------------------------

DJANGO_WSGI = "tests.apps.django_site.wsgi:application"
DJANGO_ASGI = "tests.apps.django_site.asgi:application"
MANAGE_PY = str(ROOT / "tests" / "apps" / "django_site" / "manage.py")


def _django_argv(kind: str, port: int) -> list[str]:
    if kind == "uvicorn":
        return [str(BIN / "uvicorn"), DJANGO_ASGI, "--host", "127.0.0.1", "--port", str(port)]
    return [str(BIN / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{port}", DJANGO_WSGI]


@contextlib.contextmanager
def _django(kind: str, tmp_path: Path, env: dict[str, str], name: str) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    port = free_port()
    full = {"KUBERNETES_SERVICE_HOST": "", **env}
    with (
        run_server(_django_argv(kind, port), port, tmp_path, env=full, name=name, timeout=30) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield server, client


def _page_project(tmp_path: Path) -> Path:
    """The page's two blocks as a project beside the launch-path site: ``mysite/health.py``
    is the page's check module, ``page_settings.py`` the site's settings followed by the
    page's block."""
    project = tmp_path / "project"
    (project / "mysite").mkdir(parents=True)
    (project / "mysite" / "__init__.py").write_text("")
    (project / "mysite" / "health.py").write_text(
        doc_pages.block(DJANGO_PAGE, "python", starts="# mysite/health.py, beside")
    )
    settings = doc_pages.block(DJANGO_PAGE, "python", starts="# mysite/settings.py, after the HEALTHPROBE")
    (project / "page_settings.py").write_text(
        f"import os\n\nfrom tests.apps.django_site.settings import *  # noqa: F403\n\n{settings}"
    )
    return project


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_django_page_groups_and_the_guard(kind: str, upstream: TcpDependency, tmp_path: Path) -> None:
    """The page's settings block on the launch-path site, under uvicorn (ASGI) and gunicorn
    (WSGI): the group fails on the real dependency while the probes pass, plain without the
    token, detailed with it; the page's curl lines print what it shows."""
    project = _page_project(tmp_path)
    env = {
        "PYTHONPATH": f"{project}:{ROOT}",
        "DJANGO_SETTINGS_MODULE": "page_settings",
        "HEALTH_TOKEN": TOKEN,
        "SEARCH_HOST": "127.0.0.1",
        "SEARCH_PORT": str(upstream.port),
    }
    check = subprocess.run(
        [PYTHON, MANAGE_PY, "check"], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0 and "no issues" in check.stdout, check.stdout + check.stderr
    upstream.down()
    with _django(kind, tmp_path, env, f"django-{kind}") as (server, client):
        wait_until(lambda: client.get("/livez").status_code == 200, 20, "serving", server.output, retry=NOT_YET)
        _guarded_group(client, "/health/wellness", "search")
        detailed = client.get("/health/wellness?verbose", headers=AUTH).text
        assert "OSError" in detailed  # the group's expose_output
        assert "OSError" not in client.get("/health/wellness?verbose").text
        assert client.get("/readyz?verbose").text == f"ok\n{WITHHELD}\n"
        (steps,) = doc_pages.transcripts(DJANGO_PAGE, contains="/health/wellness")
        for command, shown in steps:
            out = doc_pages.run_client(command.replace("$HEALTH_TOKEN", TOKEN), server.port, check=False)
            assert out == "".join(f"{line}\n" for line in shown), (command, out, server.output())
        upstream.up()
        wait_until(lambda: client.get("/health/wellness").status_code == 200, 10, "the group passing", server.output)
        assert "healthprobe.W004" not in server.output()


W004 = "healthprobe.W004"


@pytest.mark.slow
def test_django_group_path_and_w004(upstream: TcpDependency, tmp_path: Path) -> None:
    """Probe paths under /health (tests/apps/django_site/settings_nested.py): with GROUP_PATH
    the group is answered there; without it, manage.py check reports W004, and the served
    application logs it once, for GROUPS and for a group added in code."""
    base = {"DJANGO_SETTINGS_MODULE": "tests.apps.django_site.settings_nested", "HP_UPSTREAM_PORT": str(upstream.port)}
    upstream.down()
    with _django("uvicorn", tmp_path, {**base, "HP_GROUP_PATH": "/groups"}, "nested-given") as (server, client):
        wait_until(lambda: client.get("/health/live").status_code == 200, 20, "serving", server.output, retry=NOT_YET)
        assert client.get("/health/ready").status_code == 200
        answer = client.get("/groups/wellness?verbose")
        assert (answer.status_code, answer.text) == (
            503,
            "[-]upstream failed: reason withheld\nwellness check failed\n",
        )
        assert W004 not in server.output()

    check = subprocess.run(
        [PYTHON, MANAGE_PY, "check"], env={**os.environ, **base}, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    assert (
        "(healthprobe.W004) HEALTHPROBE['GROUPS'] has groups (wellness) but none is answered over HTTP: the probe "
        "path '/health/live' is at or below /health, where groups are answered by default"
    ) in check.stderr, check.stderr
    assert "HINT: Set HEALTHPROBE['GROUP_PATH'] to a path of their own, such as '/groups'" in check.stderr

    for name, extra in (("settings", {}), ("code", {"HP_GROUPS_IN_SETTINGS": "", "HP_GROUP_IN_CODE": "wellness"})):
        with _django("gunicorn", tmp_path, {**base, **extra}, f"nested-{name}") as (server, client):
            wait_until(lambda: client.get("/health/live").status_code == 200, 20, "up", server.output, retry=NOT_YET)
            for _ in range(3):
                assert client.get("/health/ready").status_code == 200
            assert client.get("/health/wellness").status_code == 404  # Django's: no group path
            log = server.wait_for_output(f"{W004}: ", timeout=10)
            assert log.count(f"{W004}: ") == 1, log
            assert "Set HEALTHPROBE['GROUP_PATH'] to a path of their own, such as '/groups'" in log, log


def _check_output(settings: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": f"tests.apps.django_site.{settings}", **env}
    return subprocess.run([PYTHON, MANAGE_PY, "check"], env=full, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_django_system_check_errors_of_groups_tags_and_guard() -> None:
    done = _check_output("settings_groups_bad")
    assert done.returncode == 1, done.stderr
    report = done.stderr
    expected = [
        "(healthprobe.E002) HEALTHPROBE['CHECKS'][0] has an unknown key 'tag'",
        "HINT: Did you mean 'tags'? The keys are check, name, probes, tags, timeout, critical, cache_ttl, interval",
        "(healthprobe.E002) HEALTHPROBE['GROUPS']['wellness'] has an unknown key 'tag'",
        "HINT: Did you mean 'tags'? The keys are checks, tags, lifecycle, success_status, failure_status, "
        "expose_output",
        "(healthprobe.E002) HEALTHPROBE['GUARD'] has an unknown key 'tokn'",
        "HINT: Did you mean 'token'? The keys are token, networks, trusted_proxies, proxy_header, header, "
        "rotation_path, threads_path",
        "(healthprobe.E003) HEALTHPROBE['CHECKS'][1]['tags'] is ['no spaces']",
        "(healthprobe.E003) HEALTHPROBE['GROUPS']['bad name'] is refused",
        "HINT: Invalid group name 'bad name'",
        "(healthprobe.E003) HEALTHPROBE['GROUPS']['empty'] is refused",
        "HINT: Group 'empty' selects no check: give checks=(names) or tags=(tags)",
        "(healthprobe.E003) HEALTHPROBE['GROUPS']['listed'] is ['upstream']",
        "(healthprobe.E003) HEALTHPROBE['GROUPS']['payments'] is refused",
        "HINT: Group 'payments': failure_status must be from 400 to 599, got 200",
        "(healthprobe.E003) HEALTHPROBE['GROUP_PATH'] is '/livez'",
        "HINT: It clashes with the path '/livez'",
    ]
    missing = [line for line in expected if line not in report]
    assert not missing, report
    assert "System check identified 9 issues" in report, report
    assert "s3cret-value" not in report + done.stdout  # the value of the misspelt token key

    done = _check_output("settings_guard_bad")
    assert done.returncode == 1, done.stderr
    assert "(healthprobe.E003) HEALTHPROBE['GUARD'] is refused" in done.stderr, done.stderr
    assert "HINT: Token must be non-empty visible ASCII without spaces" in done.stderr
    assert "(healthprobe.E003) HEALTHPROBE['GROUPS'] is a list" in done.stderr
    assert "two words" not in done.stderr + done.stdout

    # The served application refuses to start with them, one line each.
    started = subprocess.run(
        [PYTHON, "-c", "import tests.apps.django_site.wsgi"],
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "tests.apps.django_site.settings_guard_bad",
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert started.returncode != 0
    assert "healthprobe.E003: HEALTHPROBE['GUARD'] is refused. Token must be non-empty" in started.stderr
    assert "two words" not in started.stderr
