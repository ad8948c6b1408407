"""An app that configures no logging, for tests/test_logs.py: healthprobe's lines must show
in the server's own format without any set-up.

``asgi`` and ``wsgi`` serve the same registry and coordinator: ``/`` answers ``ok <pid>``,
anything else ``404``. Readiness has two checks, ``database`` (passes) and ``flaky``
(always fails), so ``/readyz`` and ``/readyz/flaky`` answer 503 and ``/readyz/database``
200. Metrics are served on ``/metrics``. The environment chooses:

* ``HP_PATHS=custom``: probe paths ``/live``, ``/ready``, ``/started`` instead of the defaults;
* ``HP_QUIET=1``: ``healthprobe.logs.quiet_probe_access_logs(asgi)`` at import;
* ``HP_BASIC=1``: the application's own ``logging.basicConfig`` at INFO, before anything else;
* ``HP_LEVEL=WARNING`` (any level name): the application's own level on the ``healthprobe`` logger;
* ``HP_DELAY``: the shutdown delay in seconds (0.3 by default).

The module prints ``unconfigured app imported in <pid>`` once it is imported (by then, a
gunicorn sync worker has installed the coordinator).
"""

from __future__ import annotations

import logging
import os

if os.environ.get("HP_BASIC") == "1":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")

from healthprobe import HealthRegistry
from healthprobe.asgi import HealthMiddleware as AsgiMiddleware
from healthprobe.logs import quiet_probe_access_logs
from healthprobe.shutdown import GracefulShutdown
from healthprobe.wsgi import HealthMiddleware as WsgiMiddleware

from . import plain_apps

if os.environ.get("HP_LEVEL"):
    logging.getLogger("healthprobe").setLevel(os.environ["HP_LEVEL"])

registry = HealthRegistry()
shutdown = GracefulShutdown(
    registry, delay=float(os.environ.get("HP_DELAY", "0.3")), drain_timeout=3.0, hook_timeout=1.0
)


@registry.check(probes=["readiness"])
def database() -> bool:
    return True


@registry.check(probes=["readiness"])
def flaky() -> bool:
    return False


@shutdown.hook
def close_pool() -> None:
    pass


PATHS = {"/live": "liveness", "/ready": "readiness", "/started": "startup"} if os.environ.get("HP_PATHS") else None


_asgi_app, _wsgi_app = plain_apps()

asgi = AsgiMiddleware(_asgi_app, registry, paths=PATHS, metrics=True, shutdown=shutdown)
wsgi = WsgiMiddleware(_wsgi_app, registry, paths=PATHS, metrics=True, shutdown=shutdown)

if os.environ.get("HP_QUIET") == "1":
    quiet_probe_access_logs(asgi)

print(f"unconfigured app imported in {os.getpid()}", flush=True)
