"""A Werkzeug WSGI app for the shutdown tests: ``/`` answers at once, ``/slow`` after 2 s (or
``?seconds=N``).

Run by the tests under gunicorn sync workers (``tests.apps.shutdown_wsgi:app``) or with
Werkzeug's server: ``python -m tests.apps.shutdown_wsgi PORT``. Timings come from the
environment: ``HP_DELAY``, ``HP_DRAIN``, ``HP_HOOK_TIMEOUT``, ``HP_REPEAT_WINDOW`` (seconds);
``HP_NO_HANG_HOOK=1`` leaves out the ``cleanup_hang`` hook; ``HP_GUARD_TOKEN`` guards the
probes' details and serves the admin request with that token.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from healthprobe import HealthRegistry
from healthprobe.wsgi import HealthMiddleware

from . import add_cleanup_sleep, coordinator, guard_options

registry = HealthRegistry()
shutdown = coordinator(registry)


def cleanup_hang() -> None:
    threading.Event().wait()


if os.environ.get("HP_NO_HANG_HOOK") != "1":
    shutdown.hook(cleanup_hang)


add_cleanup_sleep(shutdown)


@Request.application  # type: ignore[arg-type]
def _app(request: Request) -> Response:
    if request.path == "/slow":
        time.sleep(float(request.args.get("seconds", "2.0")))
        return Response(f"slow ok {os.getpid()}")
    return Response(f"ok {os.getpid()}")


def _wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    return _app(environ, start_response)  # type: ignore[no-any-return]


app = HealthMiddleware(_wsgi, registry, shutdown=shutdown, **guard_options())


if __name__ == "__main__":
    from werkzeug.serving import make_server

    from healthprobe.servers.werkzeug import serve

    sys.exit(serve(make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True), shutdown))
