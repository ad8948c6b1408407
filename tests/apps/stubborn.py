"""An app whose checks fight back, for tests/test_stubborn_checks.py and
tests/test_check_output_limits.py.

``asgi`` (uvicorn, hypercorn, hypercorn's trio worker) and ``wsgi`` (waitress) serve one
registry and one coordinator:

* readiness: ``stubborn`` (``timeout=0.5``), an async check that swallows its cancellation in
  a loop, as some client libraries do: in its asyncio form, or with
  ``HP_STUBBORN=anyio`` the same loop written with anyio (for trio);
* liveness: ``leaky``, which raises with a connection string holding the password
  ``S3cretPW``, and ``huge``, whose observed value is 2,000,000 characters long and whose
  unit is 100,000.

``/`` answers ``ok <pid>``; ``/stats`` answers a JSON object of each check's abandoned runs
(``CheckStats.abandoned``) and whether it is busy. Logs go to the server's logger at INFO.
"""

from __future__ import annotations

import asyncio
import json
import os

import anyio

from healthprobe import CheckResult, HealthRegistry, Status
from healthprobe.asgi import HealthMiddleware as AsgiMiddleware
from healthprobe.shutdown import GracefulShutdown
from healthprobe.wsgi import HealthMiddleware as WsgiMiddleware

from . import plain_apps

#: The password the ``leaky`` check's exception text holds.
SECRET = "S3cretPW"

registry = HealthRegistry()
shutdown = GracefulShutdown(registry, delay=0.0, drain_timeout=2.0, hook_timeout=1.0)

if os.environ.get("HP_STUBBORN") == "anyio":

    @registry.check(timeout=0.5)
    async def stubborn() -> bool:
        while True:
            try:
                await anyio.sleep(5)
                return True
            except anyio.get_cancelled_exc_class():
                continue

else:

    @registry.check(timeout=0.5)
    async def stubborn() -> bool:
        while True:
            try:
                await asyncio.sleep(5)
                return True
            except asyncio.CancelledError:
                continue


@registry.check(probes=["liveness"])
def leaky() -> None:
    raise ConnectionError(f"could not reach postgres://admin:{SECRET}@db:5432/x")


@registry.check(probes=["liveness"])
def huge() -> CheckResult:
    return CheckResult(Status.PASS, observed_value="z" * 2_000_000, observed_unit="u" * 100_000)


def _stats() -> bytes:
    return json.dumps(
        {
            state.check.name: {"abandoned": state.stats.abandoned, "busy": state.busy}
            for state in registry.check_states()
        }
    ).encode()


_asgi_app, _wsgi_app = plain_apps({"/stats": _stats})

asgi = AsgiMiddleware(_asgi_app, registry, shutdown=shutdown)
wsgi = WsgiMiddleware(_wsgi_app, registry, shutdown=shutdown)
