"""Thin integrations of :class:`healthprobe.shutdown.GracefulShutdown` with servers.

Most launch commands need none of them: the adapters' ``HealthMiddleware(shutdown=...)``
recognise the server by its signal handler and use :func:`uvicorn.control` or
:func:`gunicorn.control` by itself (importing this package registers them with the
coordinator; ``import healthprobe`` imports it, so ``shutdown.install()`` recognises them
too). Each module imports its server only when imported itself:

* :mod:`healthprobe.servers.uvicorn`: programmatic ``uvicorn.Server`` (``run`` / ``serve``),
  and worker processes under a supervisor that passes signals on (``run_workers``).
* :mod:`healthprobe.servers.hypercorn`: hypercorn's ``serve`` (asyncio or trio) via its
  shutdown trigger.
* :mod:`healthprobe.servers.gunicorn`: configuration hooks for sync, gthread and uvicorn
  workers (a second signal to the master ends every process at once).
* :mod:`healthprobe.servers.gunicorn_probes`: the probe server in gunicorn's master, on a
  port of its own (``-c python:healthprobe.servers.gunicorn_probes``), with the hooks of
  :mod:`healthprobe.servers.gunicorn`.
* :mod:`healthprobe.servers.waitress`: waitress from code (``serve``); ``waitress-serve``
  needs only the WSGI middleware.
* :mod:`healthprobe.servers.werkzeug`: a server from ``werkzeug.serving.make_server``.
* :mod:`healthprobe.servers.grpc`: a ``grpc.server`` or ``grpc.aio.server`` (``serve``,
  ``serve_async``), with the servicer and interceptors of :mod:`healthprobe.grpc`.
"""

from __future__ import annotations

import typing

from .. import _launch

if typing.TYPE_CHECKING:
    from ..shutdown import GracefulShutdown

__all__: list[str] = []


def _uvicorn(server: typing.Any, shutdown: GracefulShutdown) -> _launch.ServerControl:
    # Imported here, once a uvicorn server's handler was found: uvicorn is installed then.
    from . import uvicorn

    return uvicorn.control(server, shutdown)


def _gunicorn(worker: typing.Any, shutdown: GracefulShutdown) -> _launch.ServerControl:
    from . import gunicorn

    return gunicorn.control(worker, shutdown)


_launch.register_control("uvicorn", _uvicorn)
_launch.register_control("gunicorn", _gunicorn)
