"""A WSGI app for the tests of the shutdown bounds (tests/test_shutdown_bounds.py):
``gunicorn tests.apps.bounds_wsgi:app``, ``waitress-serve ... tests.apps.bounds_wsgi:app``, or
``python -m tests.apps.bounds_wsgi PORT`` to serve it with Werkzeug's threaded server through
``healthprobe.servers.werkzeug.serve``.

``/`` answers at once; ``/slow?seconds=N`` prints ``slow start <pid>`` as it begins, then
answers after ``N`` seconds (2 by default). Its cleanup hook sleeps 0.5 s and prints
``cleanup ran in <pid>``. Timings come from the environment as for the other shutdown apps
(``HP_DELAY``, ``HP_DRAIN``, ``HP_HOOK_TIMEOUT``, in seconds).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from healthprobe import HealthRegistry
from healthprobe.wsgi import HealthMiddleware

from . import coordinator

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

registry = HealthRegistry()
shutdown = coordinator(registry)


@shutdown.hook
def cleanup() -> None:
    time.sleep(0.5)
    print(f"cleanup ran in {os.getpid()}", flush=True)


def _app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/slow":
        print(f"slow start {os.getpid()}", flush=True)
        time.sleep(float(parse_qs(environ.get("QUERY_STRING", "")).get("seconds", ["2"])[0]))
    body = f"ok {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = HealthMiddleware(_app, registry, shutdown=shutdown)


if __name__ == "__main__":
    from werkzeug.serving import make_server

    from healthprobe.servers.werkzeug import serve

    sys.exit(serve(make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True), shutdown))
