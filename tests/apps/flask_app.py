"""A Flask app for the launch-path tests: ``/`` answers at once, ``/slow`` after
``?seconds=`` (default 2.0 s).

Wired as the documentation tells Flask users to: the ``healthprobe.flask.HealthProbe``
extension. Run by the tests under plain gunicorn (``tests.apps.flask_app:app``) and
``flask --app tests.apps.flask_app run``. Timings come from the environment: ``HP_DELAY``,
``HP_DRAIN``, ``HP_HOOK_TIMEOUT``, ``HP_REPEAT_WINDOW`` (seconds); ``HP_OWN_HANDLER=1`` installs
a SIGTERM handler of the application's own at import. With ``HP_UPSTREAM_PORT`` set, a check
of the TCP service on that port in no probe, tagged ``external``, makes the group
``wellness`` (``/health/wellness``), and ``HP_GUARD_TOKEN`` is the token of a guard given
as ``HEALTHPROBE_GUARD`` (a dict, as ``from_prefixed_env()`` would read it).
"""

from __future__ import annotations

import os
import socket
import time

from flask import Flask, request

from healthprobe import HealthRegistry
from healthprobe.flask import HealthProbe

from . import add_cleanup_sleep, bounds, show_logs

show_logs()
registry = HealthRegistry()


if os.environ.get("HP_OWN_HANDLER") == "1":
    # An application that installs a SIGTERM handler of its own at import, over the one its
    # server put in place (as engines that flush state do).
    import signal

    def _flush_state(signum: int, frame: object) -> None:
        print(f"app handler called in {os.getpid()}", flush=True)

    signal.signal(signal.SIGTERM, _flush_state)


app = Flask(__name__)


@app.get("/")
def fast() -> str:
    return f"ok {os.getpid()}"


@app.get("/slow")
def slow() -> str:
    time.sleep(float(request.args.get("seconds", "2.0")))
    return f"slow ok {os.getpid()}"


if os.environ.get("HP_GUARD_TOKEN"):
    app.config["HEALTHPROBE_GUARD"] = {"token": os.environ["HP_GUARD_TOKEN"]}
if os.environ.get("HP_UPSTREAM_PORT"):

    @registry.check(probes=(), tags=("external",))
    def upstream() -> None:
        socket.create_connection(("127.0.0.1", int(os.environ["HP_UPSTREAM_PORT"])), timeout=0.5).close()

    registry.add_group("wellness", tags="external")


_bounds = bounds()
health = HealthProbe(
    app,
    registry,
    shutdown_delay=_bounds["delay"],
    drain_timeout=_bounds["drain_timeout"],
    hook_timeout=_bounds["hook_timeout"],
    repeat_window=_bounds["repeat_window"],
)
shutdown = app.extensions["healthprobe"].shutdown
add_cleanup_sleep(shutdown)
