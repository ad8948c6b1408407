"""Every common way of launching an app, and what ``SIGTERM`` must do under each.

One :class:`LaunchPath` per row of the launch-path table of docs/kubernetes.md; each row is
proven by ``tests/test_launch_paths.py`` with a real process. Three kinds of row:

* ``graceful``: ``SIGTERM`` gives the whole sequence: ``/readyz`` 503 at once while ``/livez``
  stays 200, serving on for the delay, then no longer accepting, in-flight requests drained,
  cleanup hooks run, exit 0.
* ``warns``: the launch path cannot give that sequence; healthprobe logs a ``WARNING`` on
  ``healthprobe.shutdown`` at start-up (or at the first request) naming the line that fixes
  it (``warning`` is a part of that message).
* ``development``: a development server (``flask run``, ``manage.py runserver``, a reloader):
  every process exits promptly, with no delay.

Commands are the console scripts a user types (``gunicorn``, ``uvicorn``, ``hypercorn``,
``waitress-serve``, ``flask``) from the virtual environment of the running interpreter; the
tests start them from the project root with ``PYTHONPATH`` set to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .support import BIN, PYTHON

#: Shutdown bounds in seconds of the ``graceful`` and ``warns`` rows: a delay long enough to
#: observe ``/readyz`` failing while ``/livez`` passes, a drain longer than the 2 s requests.
DELAY = 1.0
DRAIN = 4.0
HOOK_TIMEOUT = 1.0
ENV = {"HP_DELAY": str(DELAY), "HP_DRAIN": str(DRAIN), "HP_HOOK_TIMEOUT": str(HOOK_TIMEOUT)}
#: The ``development`` rows: a 5 s delay, so that one wrongly applied is plain to see against
#: their 3 s bound on exiting.
DEV_DELAY = 5.0
DEV_ENV = {**ENV, "HP_DELAY": str(DEV_DELAY)}
#: Seconds within which every process of a ``development`` row must be gone after the signal.
DEV_EXIT_BOUND = 3.0

Kind = Literal["graceful", "warns", "development"]

FLASK = "tests.apps.flask_app:app"
ASGI = "tests.apps.shutdown_asgi:app"
WSGI = "tests.apps.shutdown_wsgi:app"
DJANGO_WSGI = "tests.apps.django_site.wsgi:application"
DJANGO_ASGI = "tests.apps.django_site.asgi:application"
MANAGE_PY = "tests/apps/django_site/manage.py"


@dataclass(frozen=True)
class LaunchPath:
    """One way of launching an app.

    Attributes:
        name: the row's identifier (test ids use it).
        command: ``(port) -> argv``, serving on ``127.0.0.1:port``.
        kind: ``graceful``, ``warns`` or ``development`` (see the module's docstring).
        sigterm: what ``SIGTERM`` to the launched process does, as the documentation says it.
        env: environment variables of the process (on top of the test's own).
        warning: for ``warns`` rows, a part of the ``WARNING`` message that names the fix.
        workers: processes that serve requests (each runs its own coordinator and hooks).
        hooks: cleanup hooks registered by the app; the shutdown budget counts
            ``hook_timeout`` seconds for each.
        slow_senders: clients sending 2 s requests back to back during the graceful test
            (one for sync workers, which answer one request at a time: a second would leave
            no worker free for the probes).
        warm_path: what is requested, several at once, until every worker has answered
            (a short ``/slow`` where the app has one, so that sync workers must share them).
        latency: seconds the launched process may take to pass the signal on to the
            processes that serve.
        log_lines: lines the server's output must contain after the shutdown.
        websockets: the app serves the ``/ws`` echo session (tests/apps/shutdown_asgi.py),
            which the rolling restart behind HAProxy (tests/haproxy.py) keeps open.
    """

    name: str
    command: Callable[[int], list[str]]
    kind: Kind
    sigterm: str
    env: Mapping[str, str] = field(default_factory=lambda: dict(ENV))
    warning: str | None = None
    workers: int = 1
    hooks: int = 1
    slow_senders: int = 2
    warm_path: str = "/"
    latency: float = 0.0
    log_lines: tuple[str, ...] = ()
    websockets: bool = False

    @property
    def budget(self) -> float:
        """Worst-case seconds from the signal to the exit of a ``graceful`` row."""
        return self.latency + DELAY + DRAIN + self.hooks * HOOK_TIMEOUT


def _bind(port: int) -> str:
    return f"127.0.0.1:{port}"


def _gunicorn(*args: str) -> Callable[[int], list[str]]:
    return lambda port: [str(BIN / "gunicorn"), "--bind", _bind(port), *args]


def _uvicorn(*args: str) -> Callable[[int], list[str]]:
    return lambda port: [str(BIN / "uvicorn"), *args, "--port", str(port)]


def _hypercorn(*args: str) -> Callable[[int], list[str]]:
    return lambda port: [str(BIN / "hypercorn"), *args, "--bind", _bind(port)]


#: A program of its own that awaits uvicorn's ``Server.serve()`` on its event loop.
SERVER_SERVE = """
import asyncio, uvicorn
async def main():
    await uvicorn.Server(uvicorn.Config({app!r}, host="127.0.0.1", port={port})).serve()
asyncio.run(main())
"""

#: A program that serves the WSGI test app with healthprobe's waitress integration.
WAITRESS_SERVE = """
import sys
from healthprobe.servers.waitress import serve
from {module} import app, shutdown
sys.exit(serve(app, shutdown, listen="127.0.0.1:{{port}}", threads=4))
""".format(module=WSGI.split(":")[0])

GRACEFUL = "readiness 503 at once, liveness 200; serves on for the delay; stops accepting; drains; hooks; exit 0"

ROWS: tuple[LaunchPath, ...] = (
    # -- graceful --------------------------------------------------------------------------
    LaunchPath(
        "gunicorn-sync",
        _gunicorn("-w", "2", "-k", "sync", FLASK),
        "graceful",
        GRACEFUL + " (the master forwards SIGTERM to every worker; each worker runs the sequence)",
        workers=2,
        slow_senders=1,
        warm_path="/slow?seconds=0.3",
    ),
    LaunchPath(
        "gunicorn-gthread",
        _gunicorn("-w", "2", "-k", "gthread", "--threads", "4", FLASK),
        "graceful",
        GRACEFUL + " (in every worker)",
        workers=2,
        warm_path="/slow?seconds=0.3",
    ),
    LaunchPath(
        "gunicorn-uvicorn-worker",
        _gunicorn("-w", "2", "-k", "uvicorn_worker.UvicornWorker", ASGI),
        "graceful",
        GRACEFUL + " (in every worker)",
        workers=2,
        hooks=2,
        websockets=True,
    ),
    LaunchPath(
        "gunicorn-uvicorn-workers-module",
        _gunicorn("-w", "2", "-k", "uvicorn.workers.UvicornWorker", ASGI),
        "graceful",
        GRACEFUL + " (in every worker; uvicorn.workers is deprecated in favour of uvicorn-worker)",
        workers=2,
        hooks=2,
        websockets=True,
    ),
    LaunchPath(
        "gunicorn-django",
        _gunicorn("-w", "2", DJANGO_WSGI),
        "graceful",
        GRACEFUL + " (sync workers, gunicorn's default, in every worker)",
        workers=2,
        slow_senders=1,
        warm_path="/slow?seconds=0.3",
    ),
    LaunchPath(
        "uvicorn-django-asgi",
        _uvicorn(DJANGO_ASGI),
        "graceful",
        GRACEFUL + " (Django's ASGI handler refuses the lifespan scope: healthprobe answers the lifespan for it)",
        warm_path="/slow?seconds=0.3",
    ),
    LaunchPath(
        "uvicorn-lifespan-off",
        _uvicorn(ASGI, "--lifespan", "off"),
        "graceful",
        GRACEFUL + " (no lifespan: the coordinator is installed at the first request)",
        hooks=2,
        log_lines=("shutdown: stopped",),
        websockets=True,
    ),
    LaunchPath(
        "hypercorn-workers-0",
        _hypercorn("--workers", "0", ASGI),
        "graceful",
        GRACEFUL + " (asyncio, served by the process itself)",
        hooks=2,
        websockets=True,
    ),
    LaunchPath(
        "hypercorn-trio-workers-0",
        _hypercorn("-k", "trio", "--workers", "0", ASGI),
        "graceful",
        GRACEFUL + " (trio, served by the process itself: trio's Ctrl-C handler stops hypercorn when the delay ends)",
        hooks=2,
        websockets=True,
    ),
    LaunchPath(
        "uvicorn-run",
        lambda port: [PYTHON, "-c", f"import uvicorn; uvicorn.run({ASGI!r}, host='127.0.0.1', port={port})"],
        "graceful",
        GRACEFUL + " (uvicorn.run() from code: the same as the command line)",
        hooks=2,
        websockets=True,
    ),
    LaunchPath(
        "uvicorn-server-serve",
        lambda port: [PYTHON, "-c", SERVER_SERVE.format(app=ASGI, port=port)],
        "graceful",
        GRACEFUL + " (await uvicorn.Server(config).serve() in a program's own event loop)",
        hooks=2,
        websockets=True,
    ),
    LaunchPath(
        "waitress-serve",
        lambda port: [str(BIN / "waitress-serve"), f"--listen={_bind(port)}", "--threads=4", WSGI],
        "graceful",
        GRACEFUL,
        hooks=2,
    ),
    LaunchPath(
        "waitress-healthprobe",
        lambda port: [PYTHON, "-c", WAITRESS_SERVE.format(port=port)],
        "graceful",
        GRACEFUL + " (healthprobe.servers.waitress.serve from code)",
        hooks=2,
    ),
    LaunchPath(
        "gunicorn-gthread-own-handler-config",
        _gunicorn("-c", "python:healthprobe.servers.gunicorn", "-w", "2", "-k", "gthread", "--threads", "4", FLASK),
        "graceful",
        GRACEFUL + " (the app installed a SIGTERM handler of its own at import, over gunicorn's: it is called "
        "once per worker when the delay ends)",
        env={**ENV, "HP_OWN_HANDLER": "1"},
        workers=2,
        warm_path="/slow?seconds=0.3",
        log_lines=("app handler called",),
    ),
    LaunchPath(
        "uvicorn-uvloop",
        _uvicorn(ASGI, "--loop", "uvloop"),
        "graceful",
        GRACEFUL + " (uvicorn's uvloop event loop: uvicorn handles signals itself)",
        hooks=2,
        websockets=True,
    ),
    LaunchPath(
        "gunicorn-sync-preload",
        _gunicorn("-w", "2", "--preload", "-k", "sync", FLASK),
        "graceful",
        GRACEFUL + " (the app is imported in the master; each worker that has served a request runs the "
        "sequence; the master warns that one which has not stops at once)",
        workers=2,
        slow_senders=1,
        warm_path="/slow?seconds=0.3",
        log_lines=("gunicorn --preload: each worker installs the graceful shutdown at its first request",),
    ),
    # -- warns -----------------------------------------------------------------------------
    LaunchPath(
        "hypercorn-worker-process",
        _hypercorn(ASGI),
        "warns",
        "hypercorn's parent process sets an event that stops its worker process at once: no delay, /readyz never "
        "answers 503, new connections wait unanswered in the parent's copy of the listening socket; requests in "
        "flight complete, the hooks run, exit 0",
        warning="hypercorn --workers 0",
        hooks=2,
    ),
    LaunchPath(
        "hypercorn-trio",
        _hypercorn("-k", "trio", ASGI),
        "warns",
        "as hypercorn's default worker process: stopped at once by its parent, no delay, /readyz never answers "
        "503; requests in flight complete, the hooks run, exit 0",
        warning="healthprobe.servers.hypercorn.serve",
        hooks=2,
    ),
    LaunchPath(
        "gunicorn-gthread-preload",
        _gunicorn("-w", "2", "-k", "gthread", "--threads", "4", "--preload", FLASK),
        "warns",
        "gunicorn's own graceful stop: every worker stops accepting at once (no delay, /readyz never answers 503), "
        "finishes the requests it runs, exits without running the hooks; the master exits 0",
        warning="-c python:healthprobe.servers.gunicorn",
        workers=2,
    ),
    LaunchPath(
        "hypercorn-uvloop-workers-0",
        _hypercorn("-k", "uvloop", "--workers", "0", ASGI),
        "warns",
        "hypercorn's own stop: the uvloop event loop gets the signal too and hypercorn stops accepting at once "
        "(no delay, /readyz never answers 503); requests in flight complete within hypercorn's graceful_timeout, "
        "the hooks run, exit 0",
        warning="use the asyncio event loop",
        hooks=2,
    ),
    LaunchPath(
        "gunicorn-gthread-own-handler",
        _gunicorn("-w", "2", "-k", "gthread", "--threads", "4", "--graceful-timeout", "3", FLASK),
        "warns",
        "the application's handler replaced gunicorn's, so the worker does not stop on SIGTERM at all (as without "
        "healthprobe): the master kills it at graceful_timeout (3 s here)",
        env={**ENV, "HP_OWN_HANDLER": "1"},
        warning="-c python:healthprobe.servers.gunicorn",
        workers=2,
    ),
    LaunchPath(
        "waitress-programmatic",
        lambda port: [PYTHON, "-m", "tests.apps.waitress_plain", str(port)],
        "warns",
        "the process is killed by the signal at once (waitress installs no handler): requests in flight are "
        "cut, no hook runs",
        warning="healthprobe.servers.waitress.serve",
    ),
    LaunchPath(
        "werkzeug-make-server",
        lambda port: [PYTHON, "-m", "tests.apps.werkzeug_plain", str(port)],
        "warns",
        "the process is killed by the signal at once (serve_forever() installs no handler): requests in "
        "flight are cut, no hook runs",
        warning="healthprobe.servers.werkzeug.serve",
        hooks=2,
    ),
    # -- development -----------------------------------------------------------------------
    LaunchPath(
        "flask-run",
        lambda port: [str(BIN / "flask"), "--app", "tests.apps.flask_app", "run", "--port", str(port)],
        "development",
        "exits at once, no delay, no hook (SIGTERM ends the process; Ctrl-C exits 0)",
        env=DEV_ENV,
    ),
    LaunchPath(
        "flask-run-reload",
        lambda port: [str(BIN / "flask"), "--app", "tests.apps.flask_app", "run", "--port", str(port), "--reload"],
        "development",
        "the reloader ends the server process it runs and exits 0 at once: no delay, no hook",
        env=DEV_ENV,
    ),
    LaunchPath(
        "django-runserver",
        lambda port: [PYTHON, MANAGE_PY, "runserver", _bind(port)],
        "development",
        "the autoreloader ends the server process it runs and exits 0 at once: no delay, no hook",
        env=DEV_ENV,
    ),
    LaunchPath(
        "django-runserver-noreload",
        lambda port: [PYTHON, MANAGE_PY, "runserver", _bind(port), "--noreload"],
        "development",
        "exits at once, no delay, no hook (SIGTERM ends the process; Ctrl-C exits 0)",
        env=DEV_ENV,
    ),
    LaunchPath(
        "uvicorn-reload",
        # --reload-dir: without watchfiles uvicorn polls every *.py file below the directory
        # it watches (the project root, virtual environment included) four times a second.
        _uvicorn(ASGI, "--reload", "--reload-dir", "tests/apps"),
        "development",
        "the reloader stops its server process, which skips the delay: readiness fails, in-flight requests "
        "drain, the hooks run, exit 0",
        env=DEV_ENV,
        hooks=2,
        log_lines=("no shutdown delay",),
    ),
)

#: The rows by name.
BY_NAME: dict[str, LaunchPath] = {row.name: row for row in ROWS}


def rows(kind: Kind) -> list[LaunchPath]:
    """The rows of one kind, in table order."""
    return [row for row in ROWS if row.kind == kind]
