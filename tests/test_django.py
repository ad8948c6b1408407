"""healthprobe.django run as a user runs it: docs/frameworks/django.md and
docs/migrating/django-health-check.md, as written.

A project made by ``django-admin startproject``, with the page's settings, ``wsgi.py``,
``asgi.py`` and check module, on a PostgreSQL database of its own (created here, so that
``manage.py migrate`` writes Django's tables nowhere else), made production-like by the test
(``ALLOWED_HOSTS = ["example.com"]``, ``SECURE_SSL_REDIRECT``, ``APPEND_SLASH``, Django's
``LoginRequiredMiddleware``), is served by the page's gunicorn (2 workers) and uvicorn
commands as real processes: the probes answer the kubelet's ``Host: 10.1.2.3:8000`` while a
page of the site refuses it, unapplied migrations fail startup until the page's
``manage.py migrate``, a missing database fails readiness and never liveness, ``/metrics``
is scraped, the page's ``curl`` lines print what it shows, and ``SIGTERM`` ends every worker
gracefully. ``manage.py check`` reports a bad ``HEALTHPROBE`` with its check ids, the served
application refuses to start with it, ``manage.py healthprobe`` exits 0 and 1 as the page
says, an application still built by Django's own factory warns at start-up, and 300 runs of
the checks leave no database connection open. ``HEALTHPROBE`` is also read in-process: a check
path that names a module (E005, naming a function of it) and a bad ``FAILURE_STATUS`` (its
hint naming the key as written).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest

from . import doc_pages
from .support import (
    BIN,
    POD_HOST,
    POSTGRES_ADMIN,
    PYTHON,
    ROOT,
    ServerProcess,
    free_port,
    raised_without,
    run_server,
    stop_gracefully,
)

if TYPE_CHECKING:
    from healthprobe.django.conf import Problem

pytestmark = pytest.mark.slow

PAGE = doc_pages.page("frameworks/django.md")
MIGRATION = doc_pages.page("migrating/django-health-check.md")
#: The first line of the page's settings block, which is added to the generated settings.py.
SETTINGS_BLOCK = "# mysite/settings.py: add at the end\n"
MIGRATION_SETTINGS_BLOCK = "# mysite/settings.py: in place of the health_check apps and HEALTH_CHECK\n"
#: The page's log excerpts: the line of a startup probe before ``manage.py migrate``, and the
#: start-up warning of a ``wsgi.py`` still built by Django's own factory.
MIGRATIONS_LOG = doc_pages.block(PAGE, "text", contains="check migrations: fail")
UNWRAPPED_LOG = doc_pages.block(PAGE, "text", contains="healthprobe.W001:")

#: Added after the page's settings: a site whose own pages refuse the kubelet's Host, redirect
#: plain HTTP to HTTPS, add slashes, and want a login.
HARDENING = """
# Added by tests/test_django.py: a production-like site.
APPEND_SLASH = True
SECURE_SSL_REDIRECT = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
MIDDLEWARE += ["django.contrib.auth.middleware.LoginRequiredMiddleware"]
ROOT_URLCONF = "mysite.urls_site"
"""

#: The generated URLs and a home page (behind LoginRequiredMiddleware).
URLS_SITE = """\
from django.http import HttpResponse
from django.urls import path

from .urls import urlpatterns as generated


def home(request):
    return HttpResponse("home")


urlpatterns = [path("", home), *generated]
"""

#: Files of the test's own, beside the page's.
SETTINGS_BAD = """\
from .settings import *  # noqa: F403

HEALTHPROBE = {
    "CHEKS": [],
    "CHECKS": [
        "mysite.health.databse_writable",
        "mysite.nothere.check",
        "mysite.health.CheckResult",
        {"check": "mysite.health.database_writable", "timout": 1},
        "mysite.health",
    ],
    "DATABASES": ["defualt"],
    "FAILURE_STATUS": {"readiness": 200},
    "EXPOSE_OUTPUT": "yes",
    "SHUTDOWN": {"drain_timeout": "20"},
}
LOGGING = {"version": 1}
"""

SETTINGS_RUNSERVER = """\
from .settings import *  # noqa: F403

WSGI_APPLICATION = "mysite.wsgi_plain.application"
"""

SETTINGS_FLAT = """\
import os

from .settings import *  # noqa: F403

DATABASES["default"]["OPTIONS"]["application_name"] = os.environ["HP_APP_NAME"]
HEALTHPROBE = {**HEALTHPROBE, "DEFAULT_CACHE_TTL": 0}  # every probe runs every check
"""

SETTINGS_CACHE = """\
from .settings import *  # noqa: F403

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:6379/0"},
    "down": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:9/0",
        "OPTIONS": {"socket_connect_timeout": 0.2},
    },
}
HEALTHPROBE = {**HEALTHPROBE, "CACHES": ["default", {"alias": "down", "critical": False}]}
"""

SETTINGS_REPLICA = """\
from .settings import *  # noqa: F403

DATABASES["replica"] = {**DATABASES["default"]}  # the same server, as a second alias
"""

SETTINGS_QUIET = """\
from .settings import *  # noqa: F403

SILENCED_SYSTEM_CHECKS = ["healthprobe.W001"]
"""

SETTINGS_W002 = """\
from .settings import *  # noqa: F403

LOGGING = {**LOGGING, "disable_existing_loggers": True}
"""

SETTINGS_NO_APP = """\
from .settings import *  # noqa: F403

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "healthprobe.django"]
"""

#: Runs the page's "Checks in code" block after django.setup(), then a readiness probe.
IN_CODE = """\
import json
import sys

import django

django.setup()
exec(sys.stdin.read())

from healthprobe.django import registry

report = registry().run("readiness")
print(json.dumps({"ok": report.ok, "checks": {n: e.status.value for n, e in report.checks.items()}}))
"""

#: 300 readiness runs in one process, counting after each the server backends of the checks'
#: application_name in pg_stat_activity (seen from another connection).
FLAT = """\
import json
import os
import time

import django
import psycopg

django.setup()

from healthprobe.django import registry

health = registry()
name = os.environ["HP_APP_NAME"]
query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
counts, waits, failed = [], [], []
with psycopg.connect(os.environ["HP_POSTGRES_ADMIN"], autocommit=True) as observer:
    before = observer.execute(query, (name,)).fetchone()[0]
    for run in range(300):
        report = health.run("readiness")
        if not report.ok:
            failed.append(run)
        start = time.monotonic()
        count = observer.execute(query, (name,)).fetchone()[0]
        while count and time.monotonic() - start < 2.0:  # a closed connection's backend exits
            time.sleep(0.002)
            count = observer.execute(query, (name,)).fetchone()[0]
        counts.append(count)
        waits.append(time.monotonic() - start)
        if count:
            break  # a connection left open: no need to go on
runs = {state.check.name: sum(state.stats.runs.values()) for state in health.check_states()}
print(json.dumps({"before": before, "counts": counts, "max_wait": max(waits), "failed": failed, "runs": runs}))
"""

#: Calls the wrapped WSGI application of the project in process, without a server.
CALL_WSGI = """\
import json
import sys
from wsgiref.util import setup_testing_defaults

from mysite.wsgi import application

answers = {}
for path in sys.argv[1:]:
    status = []
    environ = {"PATH_INFO": path, "HTTP_HOST": "10.1.2.3:8000"}
    setup_testing_defaults(environ)
    body = b"".join(application(environ, lambda line, headers, exc_info=None: status.append(line)))
    answers[path] = [status[0], body.decode()]
print(json.dumps(answers))
"""


@dataclasses.dataclass
class Site:
    """The project on disk, and the environment its processes run with."""

    project: Path
    logs: Path
    env: dict[str, str]


# -- the project -------------------------------------------------------------------------------


def _admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
        connection.execute(sql)  # type: ignore[arg-type]


@contextlib.contextmanager
def _database() -> Iterator[str]:
    """A PostgreSQL database of its own, dropped at the end."""
    name = f"hp_django_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _argv(line: str) -> tuple[dict[str, str], list[str]]:
    """A page's command as ``(environment, argv)``: ``VAR=value`` prefixes taken apart, the
    tool from this venv (:func:`doc_pages.argv`, which also moves a listening address)."""
    parts = shlex.split(line)
    env = {}
    while parts and re.fullmatch(r"[A-Z_]+=\S*", parts[0]):
        key, _, value = parts.pop(0).partition("=")
        env[key] = value
    return env, doc_pages.argv(shlex.join(parts), 0)


def _run(site: Site, line: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a page's command in the project, as a process, and return what it did."""
    extra, argv = _argv(line)
    full = {**os.environ, "PYTHONPATH": str(site.project), **site.env, **(env or {}), **extra}
    return subprocess.run(argv, cwd=site.project, env=full, capture_output=True, text=True, timeout=60, check=False)


def _manage(site: Site, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run(site, shlex.join(["python", "manage.py", *args]), env)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, postgres_up: None) -> Iterator[Site]:
    """``django-admin startproject`` as the page says, then the page's files and settings."""
    root = tmp_path_factory.mktemp("django")
    project = root / "project"
    project.mkdir()
    site = Site(project, root, {"DJANGO_ALLOWED_HOSTS": "example.com"})
    made = _run(site, doc_pages.command(PAGE, "django-admin startproject"))
    assert made.returncode == 0, made.stderr
    mysite = project / "mysite"
    generated = (mysite / "settings.py").read_text()
    extra = {
        # What startproject wrote, kept: Django's own factories, and its own settings.
        "mysite/wsgi_plain.py": (mysite / "wsgi.py").read_text(),
        "mysite/asgi_plain.py": (mysite / "asgi.py").read_text(),
        "mysite/settings_startproject.py": generated,
        "mysite/settings.py": generated + "\n" + doc_pages.block(PAGE, "python", starts=SETTINGS_BLOCK) + HARDENING,
        "mysite/urls_site.py": URLS_SITE,
        "mysite/settings_bad.py": SETTINGS_BAD,
        "mysite/settings_runserver.py": SETTINGS_RUNSERVER,
        "mysite/settings_flat.py": SETTINGS_FLAT,
        "mysite/settings_cache.py": SETTINGS_CACHE,
        "mysite/settings_replica.py": SETTINGS_REPLICA,
        "mysite/settings_quiet.py": SETTINGS_QUIET,
        "mysite/settings_w002.py": SETTINGS_W002,
        "mysite/settings_no_app.py": SETTINGS_NO_APP,
        "flat.py": FLAT,
        "in_code.py": IN_CODE,
        "call_wsgi.py": CALL_WSGI,
    }
    doc_pages.write_project(PAGE, project, extra)
    with _database() as name:
        site.env["POSTGRES_DB"] = name
        yield site


@pytest.fixture(scope="module")
def migrated(site: Site) -> Site:
    """The site's database after the page's ``manage.py migrate``."""
    done = _run(site, doc_pages.command(PAGE, "python manage.py migrate"))
    assert done.returncode == 0, done.stderr
    return site


# -- serving -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _serving(site: Site, starts: str, name: str, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """The page's command starting with ``starts``, served on a loopback port."""
    line = doc_pages.command(PAGE, starts).replace("--host 0.0.0.0", "--host 127.0.0.1")
    with doc_pages.served(line, site.project, site.logs / f"{name}.log", env={**site.env, **(env or {})}) as server:
        yield server


def _client(server: ServerProcess) -> httpx.Client:
    """A client that sends the kubelet's Host header."""
    return httpx.Client(base_url=server.url, timeout=10, headers={"Host": POD_HOST})


def _steady(client: httpx.Client, server: ServerProcess, path: str, status: int = 200, times: int = 6) -> None:
    """Wait until ``path`` answers ``status`` ``times`` times in a row (every worker of a
    gunicorn has run its checks since the change)."""
    deadline = time.monotonic() + 20
    row = 0
    while row < times:
        assert time.monotonic() < deadline, f"{path} never answered {status} {times} times in a row\n{server.output()}"
        row = row + 1 if client.get(path).status_code == status else 0
        time.sleep(0.05)


#: What a log excerpt of the page may show otherwise than the process prints it: ``(...)``
#: for text left out, an absolute path (the project is elsewhere), a number (time, process
#: id, count, line number).
_LOG_MASKS = re.compile(r"(?P<elided>\(\.\.\.\))|(?P<path>/[\w./-]+)|(?P<number>\b\d+\b)")
_LOG_MASKED = {"elided": r"\(.+?\)", "path": r"/[\w./-]+", "number": r"\d+"}


def _log_pattern(shown: str) -> re.Pattern[str]:
    """A line of a log excerpt of the page as a pattern of the whole line: the text as
    shown, with :data:`_LOG_MASKS` taken as wildcards."""
    parts, start = [], 0
    for mask in _LOG_MASKS.finditer(shown):
        parts += [re.escape(shown[start : mask.start()]), _LOG_MASKED[str(mask.lastgroup)]]
        start = mask.end()
    return re.compile("".join([*parts, re.escape(shown[start:])]))


def _logged_as_shown(excerpt: str, log: str) -> list[str]:
    """The lines of ``log`` that are a line of the page's ``excerpt`` (each line of the
    excerpt is one of them, whole, as :func:`_log_pattern` reads it)."""
    found = []
    for shown in excerpt.splitlines():
        pattern = _log_pattern(shown)
        matching = [line for line in log.splitlines() if pattern.fullmatch(line)]
        assert matching, (shown, pattern.pattern, log)
        found += matching
    return found


def _curl_block(server: ServerProcess, contains: str) -> None:
    """Run the ``curl`` lines of the page's console block that contains ``contains``; each
    prints what the page shows below it."""
    (steps,) = doc_pages.transcripts(PAGE, contains=contains)
    doc_pages.run_transcript(steps, server.port, log=server.output)


def _probes_answered_before_django(client: httpx.Client) -> None:
    """Every probe path answers 200 to the kubelet's Host, over plain HTTP, with or without a
    trailing slash, never a redirect; a page of the site answers as Django's middleware
    says; the metrics are there."""
    for path in ("/livez", "/healthz", "/readyz", "/readyz/", "/startupz", "/readyz/database"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        assert response.headers["cache-control"] == "no-store"
    assert client.get("/readyz/database-writable").status_code == 200
    assert client.get("/startupz/migrations").status_code == 200
    # The same Host on a page of the site: ALLOWED_HOSTS refuses it.
    assert client.get("/").status_code == 400
    # The site's own name: plain HTTP is redirected, HTTPS wants a login, APPEND_SLASH adds.
    site = {"Host": "example.com"}
    assert client.get("/", headers=site).status_code == 301
    https = {**site, "X-Forwarded-Proto": "https"}
    login = client.get("/", headers=https)
    assert login.status_code == 302 and login.headers["location"].startswith("/accounts/login/"), login.headers
    assert client.get("/admin", headers=https).headers["location"] == "/admin/"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'healthprobe_check_status{check="database",status="pass"}' in metrics.text
    assert 'healthprobe_check_status{check="database-writable",status="pass"}' in metrics.text
    assert "healthprobe_in_flight_requests" in metrics.text


# -- the page's project under its servers ---------------------------------------------------------


def test_gunicorn_from_unmigrated_to_ready_then_graceful_stop(site: Site) -> None:
    """The page's commands in order on a database of its own: check, then gunicorn with two
    workers before migrate (startup fails, and readiness with it), then migrate (both pass)."""
    with _database() as name:
        env = {"POSTGRES_DB": name}
        check = _run(site, doc_pages.command(PAGE, "python manage.py check"), env)
        assert check.returncode == 0 and "System check identified no issues" in check.stdout, check.stderr
        with _serving(site, "gunicorn ", "gunicorn", env) as server, _client(server) as client:
            doc_pages.wait_status(client, "/livez", log=server.output)
            _steady(client, server, "/startupz", 503)
            assert client.get("/readyz").status_code == 503
            assert client.get("/livez").status_code == 200
            _curl_block(server, "/startupz")
            _logged_as_shown(MIGRATIONS_LOG, server.output())

            migrate = _run(site, doc_pages.command(PAGE, "python manage.py migrate"), env)
            assert migrate.returncode == 0, migrate.stderr
            _steady(client, server, "/startupz")
            _steady(client, server, "/readyz")
            _probes_answered_before_django(client)
            _curl_block(server, "%{http_code}")
            log = stop_gracefully(server, workers=2)
    assert log.count("shutdown: hook 'flush_logs' finished") == 2, log
    assert log.count("exit code 0") == 2, log


def test_uvicorn_asgi(migrated: Site) -> None:
    """The page's uvicorn command: Django's ASGI handler behind the probes, the lifespan
    answered for it, a graceful stop with the hook run on the server's loop."""
    with _serving(migrated, "uvicorn ", "uvicorn") as server, _client(server) as client:
        doc_pages.wait_status(client, "/readyz", log=server.output)
        _probes_answered_before_django(client)
        _curl_block(server, "%{http_code}")
        log = stop_gracefully(server)
    assert "shutdown: hook 'flush_logs' finished" in log, log
    assert "Application shutdown complete" in log


def test_missing_database_fails_readiness_not_liveness(migrated: Site) -> None:
    """A POSTGRES_DB that does not exist: the server starts and serves, readiness fails with
    the database's checks, liveness passes; the exec probe of the page fails the same way."""
    env = {"POSTGRES_DB": "hp_django_no_such_database"}
    with _serving(migrated, "uvicorn ", "uvicorn-missing", env) as server, _client(server) as client:
        doc_pages.wait_status(client, "/livez", log=server.output)
        _steady(client, server, "/readyz", 503, times=2)
        assert client.get("/readyz/database").status_code == 503
        _curl_block(server, "$ curl -s localhost:8000/livez")
        assert "check database: fail (OperationalError: " in server.output()
        stop_gracefully(server)

    line = doc_pages.command(PAGE, "POSTGRES_DB=nowhere python manage.py healthprobe readiness")
    done = _run(migrated, line)
    assert done.returncode == 1, done.stderr
    shown = _shown_after(PAGE, line)
    probe_lines = [x for x in done.stderr.splitlines() if x.startswith("[") or x.endswith("check failed")]
    assert probe_lines == shown, done.stderr
    assert done.stdout == ""


def _shown_after(text: str, line: str) -> list[str]:
    """The lines a console block shows below ``$ line``."""
    for body in doc_pages.blocks(text, "console"):
        lines = body.splitlines()
        if f"$ {line}" in lines:
            shown = []
            for following in lines[lines.index(f"$ {line}") + 1 :]:
                if following.startswith("$ "):
                    break
                shown.append(following)
            return shown
    raise AssertionError(f"no console block runs {line!r}")


def test_exec_probe_command_and_the_kubernetes_block(migrated: Site) -> None:
    """``manage.py healthprobe`` prints what the page shows and exits 0 on a ready site;
    the page's Kubernetes block probes the package's paths, runs the page's gunicorn
    command, and its exec probes and init container's migrate exit 0."""
    for line in ("python manage.py healthprobe readiness", "python manage.py healthprobe readiness -v"):
        done = _run(migrated, line)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == _shown_after(PAGE, line), done.stdout
    assert _manage(migrated, "healthprobe", "--verbose").stdout.splitlines() == _shown_after(
        PAGE, "python manage.py healthprobe readiness -v"
    )
    quiet = _manage(migrated, "healthprobe", "readiness", "-v", "0", env={"POSTGRES_DB": "hp_django_no_such_database"})
    assert (quiet.returncode, quiet.stdout, [x for x in quiet.stderr.splitlines() if x.startswith("[")]) == (1, "", [])
    usage = _manage(migrated, "healthprobe", "ready")
    assert usage.returncode == 2 and "invalid choice: 'ready'" in usage.stderr, usage.stderr

    import yaml

    (deployment, exec_probes) = [b for b in doc_pages.blocks(PAGE, "yaml")]
    spec = yaml.safe_load(deployment)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == shlex.split(doc_pages.command(PAGE, "gunicorn "))
    paths = {kind: container[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert paths == {"startupProbe": "/startupz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
    assert all(container[kind]["httpGet"]["port"] == "http" for kind in paths)
    (init,) = spec["initContainers"]
    commands = [init["command"]] + [probe["exec"]["command"] for probe in yaml.safe_load(exec_probes).values()]
    for command in commands:
        done = _run(migrated, shlex.join(command))
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert {probe["exec"]["command"][-1] for probe in yaml.safe_load(exec_probes).values()} == {
        "startup",
        "readiness",
        "liveness",
    }


def test_bad_settings_are_reported_with_their_ids(migrated: Site) -> None:
    """``manage.py check`` lists every problem of a bad HEALTHPROBE with its id and fix;
    ``manage.py healthprobe`` exits 1 with them; the served application refuses to start."""
    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings_bad"}
    check = _manage(migrated, "check", env=env)
    assert check.returncode == 1, check.stderr
    report = check.stderr
    expected = [
        "(healthprobe.E002) HEALTHPROBE has an unknown key 'CHEKS'",
        "HINT: Did you mean 'CHECKS'?",
        "(healthprobe.E002) HEALTHPROBE['CHECKS'][3] has an unknown key 'timout'",
        "HINT: Did you mean 'timeout'?",
        "(healthprobe.E004) HEALTHPROBE['CHECKS'][0]: module 'mysite.health' has no attribute 'databse_writable'",
        "HINT: Did you mean 'database_writable'?",
        "(healthprobe.E004) HEALTHPROBE['CHECKS'][1]: 'mysite.nothere.check' does not import: ModuleNotFoundError",
        "(healthprobe.E005) HEALTHPROBE['CHECKS'][2]: 'mysite.health.CheckResult' is a class, not a check",
        "(healthprobe.E005) HEALTHPROBE['CHECKS'][4]: 'mysite.health' is a module, not a callable",
        "HINT: Name a function in it (or a callable object) that takes no arguments, "
        "such as 'mysite.health.database_writable'",
        "(healthprobe.E003) HEALTHPROBE['FAILURE_STATUS'] is {'readiness': 200}",
        "HINT: FAILURE_STATUS['readiness'] must be a status code from 400 to 599, not 200; write an int, "
        "or a dict such as {'readiness': 503, 'liveness': 500}",
        "(healthprobe.E006) HEALTHPROBE['DATABASES'][0] names the alias 'defualt', which is not in settings.DATABASES",
        "HINT: Did you mean 'default'?",
        "(healthprobe.E003) HEALTHPROBE['EXPOSE_OUTPUT'] is 'yes'",
        "HINT: Write True or False",
        "(healthprobe.E003) HEALTHPROBE['SHUTDOWN']['drain_timeout'] is '20'",
        "HINT: Give a finite number of seconds >= 0 (see docs/frameworks/django.md)",
        "(healthprobe.W002) LOGGING disables the loggers",
    ]
    missing = [line for line in expected if line not in report]
    assert not missing, report
    # What the page's table of ids quotes.
    for quoted in (
        "FAILURE_STATUS['readiness'] must be a status code from 400 to 599, not 200",
        "'mysite.health' is a module, not a callable",
    ):
        assert f"`{quoted}`" in PAGE and quoted in report, quoted
    sample = doc_pages.block(PAGE, "text", contains="(healthprobe.E002)")
    assert sample in report, (sample, report)  # the page's sample, as Django prints it
    assert f"System check identified {report.count('(healthprobe.')} issues" in report, report
    assert _manage(migrated, "check", "--tag", "healthprobe").returncode == 0

    probe = _manage(migrated, "healthprobe", env=env)
    assert probe.returncode == 1 and probe.stdout == "", probe
    assert "CommandError: HEALTHPROBE is misconfigured" in probe.stderr
    assert "healthprobe.E002: HEALTHPROBE has an unknown key 'CHEKS'. Did you mean 'CHECKS'?" in probe.stderr

    port = free_port()
    argv = [str(BIN / "uvicorn"), "mysite.asgi:application", "--port", str(port)]
    full = {**os.environ, "PYTHONPATH": str(migrated.project), **migrated.env, **env}
    started = subprocess.run(
        argv, cwd=migrated.project, env=full, capture_output=True, text=True, timeout=60, check=False
    )
    assert started.returncode != 0, started.stderr
    assert "MisconfiguredError: HEALTHPROBE is misconfigured" in started.stderr, started.stderr
    assert "healthprobe.E006: HEALTHPROBE['DATABASES'][0] names the alias 'defualt'" in started.stderr


def test_an_application_that_is_not_wrapped_warns(migrated: Site) -> None:
    """The ``asgi.py`` that ``startproject`` wrote (Django's own factory) warns at start-up,
    before any request, naming the file and the fix; the kubelet's probe then gets Django's
    400. Under ``runserver`` serving Django's own handler, the first probe request warns;
    serving the project's ``wsgi.py`` it is answered before Django."""
    plain = migrated.project / "mysite" / "asgi_plain.py"
    line = "uvicorn mysite.asgi_plain:application --host 127.0.0.1 --port 8000"
    with doc_pages.served(line, migrated.project, migrated.logs / "plain.log", env=migrated.env) as server:
        warning = rf"healthprobe.W001: {re.escape(str(plain))}:\d+ serves Django's own get_asgi_application\(\)"
        assert re.search(warning, server.output()), server.output()
        assert f"in {plain}, `from healthprobe.django import get_asgi_application` instead of Django's" in (
            server.output()
        )
        with _client(server) as client:
            assert client.get("/readyz").status_code == 400

    # The page's gunicorn command on the wsgi.py that startproject wrote: its workers log the
    # page's line, naming that file.
    wsgi_plain = migrated.project / "mysite" / "wsgi_plain.py"
    gunicorn = doc_pages.command(PAGE, "gunicorn ").replace("mysite.wsgi ", "mysite.wsgi_plain ")
    with doc_pages.served(gunicorn, migrated.project, migrated.logs / "plain-wsgi.log", env=migrated.env) as server:
        with _client(server) as client:
            assert client.get("/readyz").status_code == 400
        warned = _logged_as_shown(UNWRAPPED_LOG, server.output())
    assert all(f" {wsgi_plain}:" in x and f"in {wsgi_plain}, " in x for x in warned), warned

    quiet = {**migrated.env, "DJANGO_SETTINGS_MODULE": "mysite.settings_quiet"}
    with doc_pages.served(line, migrated.project, migrated.logs / "quiet.log", env=quiet) as server:
        with _client(server) as client:
            assert client.get("/readyz").status_code == 400
        assert "healthprobe.W001" not in server.output(), server.output()  # SILENCED_SYSTEM_CHECKS

    for settings, status in (("mysite.settings_runserver", 400), ("mysite.settings", 200)):
        port = free_port()
        argv = [PYTHON, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
        env = {"PYTHONPATH": str(migrated.project), **migrated.env, "DJANGO_SETTINGS_MODULE": settings}
        with run_server(argv, port, migrated.logs, env=env, name=settings, cwd=migrated.project, timeout=30) as server:
            with _client(server) as client:
                assert client.get("/readyz").status_code == status
            if status == 400:
                server.wait_for_output("healthprobe.W001: a probe request (/readyz) reached Django", timeout=10)
            if status == 200:
                assert "healthprobe.W001" not in server.output(), server.output()
            server.signal(signal.SIGINT)
            assert server.wait(10) == 0, server.output()  # runserver stops at once, as it should


def test_logging_that_disables_healthprobe_is_reported_and_undone(migrated: Site) -> None:
    """A LOGGING with ``disable_existing_loggers`` on: the served application logs W002 at
    start-up and turns healthprobe's loggers back on, so its lines still show."""
    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings_w002"}
    with _serving(migrated, "uvicorn ", "uvicorn-w002", env) as server, _client(server) as client:
        doc_pages.wait_status(client, "/readyz", log=server.output)
        assert "WARNING healthprobe.django" in server.output() and "healthprobe.W002: LOGGING disables" in (
            server.output()
        )
        server.wait_for_output("INFO healthprobe ", timeout=10)  # "lifecycle starting -> started"
        stop_gracefully(server)


def test_factories_without_the_app_warn(migrated: Site) -> None:
    """The page's ``wsgi.py`` with ``healthprobe.django`` left out of INSTALLED_APPS: the
    application is built and answers probes, and W003 says what is missing."""
    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings_no_app"}
    done = _run(migrated, "python call_wsgi.py /livez", env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"/livez": ["200 OK", "ok\n"]}
    assert "healthprobe.W003: healthprobe.django is not in INSTALLED_APPS" in done.stderr, done.stderr
    assert 'Add "healthprobe.django" to INSTALLED_APPS' in done.stderr


# -- the checks ----------------------------------------------------------------------------------


def test_checks_in_code(migrated: Site) -> None:
    """The page's "Checks in code" block: a check added to registry() in code is probed with
    the configured ones."""
    block = doc_pages.block(PAGE, "python", contains="registry().add_check(")
    env = {
        **os.environ,
        "PYTHONPATH": str(migrated.project),
        **migrated.env,
        "DJANGO_SETTINGS_MODULE": "mysite.settings_replica",
    }
    done = subprocess.run(
        [PYTHON, "in_code.py"],
        cwd=migrated.project,
        env=env,
        input=block,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {
        "ok": True,
        "checks": {"database": "pass", "database-writable": "pass", "database-replica": "pass"},
    }, result


def test_database_connections_stay_flat_over_300_runs(migrated: Site) -> None:
    """300 readiness runs (every check run each time): after each, no server backend of the
    checks' application_name is left in pg_stat_activity."""
    name = f"hp-flat-{uuid.uuid4().hex[:8]}"
    env = {
        "DJANGO_SETTINGS_MODULE": "mysite.settings_flat",
        "HP_APP_NAME": name,
        "HP_POSTGRES_ADMIN": f"{POSTGRES_ADMIN} application_name=hp-flat-observer",
    }
    done = _run(migrated, "python flat.py", env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["failed"] == [], done.stderr
    assert result["before"] == 0
    assert len(result["counts"]) == 300 and set(result["counts"]) == {0}, result["counts"]
    assert result["max_wait"] < 2.0
    # Every run ran the checks (none answered from a cache); migrations once, at startup.
    assert result["runs"] == {"database": 300, "database-writable": 300, "migrations": 1}, result["runs"]


@pytest.mark.usefixtures("redis_up")
def test_cache_checks_against_redis(migrated: Site) -> None:
    """``CACHES``: a Redis cache passes its set/get check; a non-critical alias whose server
    is down warns without failing the probe."""
    done = _manage(migrated, "healthprobe", "readiness", "-v", env={"DJANGO_SETTINGS_MODULE": "mysite.settings_cache"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[+]database ok",
        "[+]cache ok",
        "[+]cache-down warn: reason withheld",
        "[+]database-writable ok",
        "readyz check passed",
    ], done.stdout
    assert "check cache-down: warn" in done.stderr or "check cache-down: fail" in done.stderr, done.stderr


# -- the migration guide -------------------------------------------------------------------------


@pytest.mark.usefixtures("redis_up")
def test_migration_guide_as_written(migrated: Site) -> None:
    """docs/migrating/django-health-check.md: its check module and settings block, on the
    project ``startproject`` made (SQLite), pass ``manage.py check``; its exec command prints
    what it shows; the old ``/ht/`` URL answers the readiness probe."""
    project = migrated.project
    for path, contents in doc_pages.files(MIGRATION).items():
        (project / path).write_text(contents)
    startproject = (project / "mysite" / "settings_startproject.py").read_text()
    block = doc_pages.block(MIGRATION, "python", starts=MIGRATION_SETTINGS_BLOCK)
    (project / "mysite" / "settings_migrated.py").write_text(startproject + "\n" + block)
    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings_migrated"}

    check = _manage(migrated, "check", env=env)
    assert check.returncode == 0 and "no issues" in check.stdout, check.stderr
    assert _manage(migrated, "migrate", env=env).returncode == 0
    (line,) = doc_pages.commands(MIGRATION)
    done = _run(migrated, line, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == _shown_after(MIGRATION, line), done.stdout
    assert not list((project / "healthprobe").glob("*")), "the storage check left a file"

    call = _run(migrated, "python call_wsgi.py /ht /ht/ /livez /", env)
    assert call.returncode == 0, call.stderr
    answers = json.loads(call.stdout.splitlines()[-1])
    assert answers["/ht"] == answers["/ht/"] == ["200 OK", "ok\n"], answers
    assert answers["/livez"] == ["200 OK", "ok\n"]
    assert answers["/"][0].startswith("400"), answers  # Django's page refuses the pod's Host


# -- the pages and the package --------------------------------------------------------------------


def test_every_command_of_the_pages_is_run_here() -> None:
    """Each ``$`` command of both pages is one this module runs (a command added to a page
    without a test fails here)."""
    run_here = {
        "django-admin startproject mysite .",
        "python manage.py check",
        "python manage.py migrate",
        "gunicorn mysite.wsgi --workers 2 --bind 0.0.0.0:8000",
        "uvicorn mysite.asgi:application --host 0.0.0.0 --port 8000",
        "python manage.py healthprobe readiness",
        "python manage.py healthprobe readiness -v",
        "POSTGRES_DB=nowhere python manage.py healthprobe readiness",
    }
    commands = [c for c in doc_pages.commands(PAGE) + doc_pages.commands(MIGRATION) if not c.startswith("curl ")]
    assert set(commands) == run_here
    assert set(doc_pages.files(PAGE)) == {"mysite/wsgi.py", "mysite/asgi.py", "mysite/health.py"}
    assert set(doc_pages.files(MIGRATION)) == {"mysite/checks.py"}
    # The install line names extras that exist.
    extras = set(re.findall(r"^(\S+) = \[", (ROOT / "pyproject.toml").read_text(), re.M))
    for text in (PAGE, MIGRATION):
        (install,) = [line for line in doc_pages.blocks(text, "sh")[0].splitlines() if "healthprobe[" in line]
        named = re.search(r"healthprobe\[([^\]]+)\]", install)
        assert named and set(named.group(1).split(",")) <= extras, install


# -- HEALTHPROBE read in-process (healthprobe.django.conf, no site) -----------------------------------


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package of checks, as a project's ``mysite`` with its ``health.py`` (not imported by
    the package's ``__init__``), under a name of its own; forgotten after the test."""
    name = f"site_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "health.py").write_text(
        "import os\n\n\ndef database_writable():\n    return True\n\n\ndef disk():\n    return True\n"
    )
    (root / "broken.py").write_text("import a_dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def _problems(**setting: object) -> list[Problem]:
    from healthprobe.django import conf

    settings = type("Settings", (), {"HEALTHPROBE": setting, "DATABASES": {}})()
    return conf.load(settings)[2]


def test_a_check_path_that_names_a_module_says_so(package: str) -> None:
    """``"CHECKS": ["mysite.health"]`` names a module, not a callable: an E005 that says so
    and names a function in it, whether or not the module was imported before (a submodule
    is no attribute of its package until then); a module that does not import, or a name
    that is nothing, stays an E004."""
    for _ in range(2):  # the module not imported yet, then imported by the first round
        (problem,) = _problems(CHECKS=[f"{package}.health"])
        assert problem.line() == (
            f"healthprobe.E005: HEALTHPROBE['CHECKS'][0]: '{package}.health' is a module, not a callable. "
            f"Name a function in it (or a callable object) that takes no arguments, "
            f"such as '{package}.health.database_writable'"
        )
    broken, missing, typo = _problems(CHECKS=[f"{package}.broken", f"{package}.healthz", f"{package}.health.dsik"])
    assert [p.id for p in (broken, missing, typo)] == ["healthprobe.E004"] * 3
    assert broken.message == (
        f"HEALTHPROBE['CHECKS'][0]: '{package}.broken' does not import: "
        "ModuleNotFoundError: No module named 'a_dependency_that_is_not_installed'"
    )
    assert missing.message == f"HEALTHPROBE['CHECKS'][1]: module '{package}' has no attribute 'healthz'"
    assert typo.hint.startswith("Did you mean 'disk'?")
    assert _problems(CHECKS=[f"{package}.health.disk"]) == []


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        ({"readiness": 200}, "FAILURE_STATUS['readiness'] must be a status code from 400 to 599, not 200"),
        ({"liveness": "500"}, "FAILURE_STATUS['liveness'] must be an int (a status code from 400 to 599), not '500'"),
        ({"ready": 500}, "FAILURE_STATUS names the probe 'ready': the probes are 'startup', 'readiness', 'liveness'"),
        (700, "FAILURE_STATUS must be a status code from 400 to 599, not 700"),
        ("503", "FAILURE_STATUS must be an int or a dict of probe name to int, not '503'"),
    ],
)
def test_a_bad_failure_status_is_named_as_written(status: object, hint: str) -> None:
    """The hint names the key as the settings spell it, ``FAILURE_STATUS``, never
    ``Failure_status``."""
    (problem,) = _problems(FAILURE_STATUS=status)
    assert problem.id == "healthprobe.E003"
    assert problem.message == f"HEALTHPROBE['FAILURE_STATUS'] is {status!r}"
    assert problem.hint == f"{hint}; write an int, or a dict such as {{'readiness': 503, 'liveness': 500}}"
    assert _problems(FAILURE_STATUS={"readiness": 503, "liveness": 500}) == []


def test_the_settings_table_names_every_key() -> None:
    """The page's reference table lists every key the code knows, and no other."""
    from healthprobe.django import conf

    table = PAGE.split("## Settings reference", 1)[1].split("\n## ", 1)[0]
    keys = re.findall(r"^\| `([A-Z_]+)` \|", table, re.M)
    assert keys == list(conf.KEYS)
    entry_keys = re.findall(r"^\| `([a-z_]+)` \|", table, re.M)
    assert set(entry_keys) == set(conf.CHECK_KEYS) | set(conf.BUILTIN_KEYS)
    for key in conf.SHUTDOWN_KEYS:
        assert f"`{key}`" in table


def test_without_django_the_import_names_the_extra() -> None:
    raised = raised_without("django", "import healthprobe.django")
    assert raised is not None and "ImportError" in raised["type"]
    assert (raised["type"][0], raised["name"], raised["message"]) == (
        "MissingExtraError",
        "django",
        "healthprobe.django needs django: pip install 'healthprobe[django]'",
    )


def test_groups_tags_and_guard_read_in_process(package: str) -> None:
    """``probes: []`` and ``tags`` make a check only groups run; ``GROUPS`` and ``GUARD`` (a
    Guard, or a dict of its arguments) reach the endpoint options; a refused token is never
    shown."""
    from healthprobe import Guard
    from healthprobe.django import conf

    entry = {"check": f"{package}.health.disk", "probes": [], "tags": ["external", "disk"]}
    settings = type(
        "Settings",
        (),
        {
            "HEALTHPROBE": {
                "CHECKS": [entry],
                "GROUPS": {"wellness": {"tags": ["external"], "failure_status": 500}},
                "GUARD": {"token": "s3cret", "networks": ["10.0.0.0/8"]},
            },
            "DATABASES": {},
        },
    )()
    basics, (spec,), problems = conf.load(settings)
    assert problems == []
    assert (spec.probes, spec.tags) == ((), ("external", "disk"))
    assert [(g.name, g.options) for g in basics.groups] == [("wellness", {"tags": ["external"], "failure_status": 500})]
    options = basics.endpoint_options()
    assert isinstance(options["guard"], Guard) and options["guard"].has_token and "group_path" not in options
    guard = Guard(token="s3cret")
    assert (
        conf.load_basics(type("S", (), {"HEALTHPROBE": {"GUARD": guard, "GROUP_PATH": None}})())[0].endpoint_options()[
            "guard"
        ]
        is guard
    )
    (problem,) = _problems(GUARD={"token": "s3cret with space"})
    assert problem.id == "healthprobe.E003" and "s3cret" not in problem.line()
    (problem,) = _problems(GUARD=["s3cret"])
    assert (
        problem.line().startswith("healthprobe.E003: HEALTHPROBE['GUARD'] is a list.")
        and "s3cret" not in problem.line()
    )
    (problem,) = _problems(CHECKS=[{"check": f"{package}.health.disk", "probes": "nightly"}])
    assert problem.message.startswith("HEALTHPROBE['CHECKS'][0]['probes'] is 'nightly'")
