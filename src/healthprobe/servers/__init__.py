"""Thin integrations of :class:`healthprobe.shutdown.GracefulShutdown` with servers.

Each module imports its server only when imported itself:

* :mod:`healthprobe.servers.uvicorn`: programmatic ``uvicorn.Server`` (``run`` / ``serve``),
  and worker processes under a supervisor that passes signals on (``run_workers``); the
  ``uvicorn module:app`` command line needs only the ASGI ``HealthMiddleware(shutdown=...)``.
* :mod:`healthprobe.servers.hypercorn`: hypercorn's asyncio ``serve`` via its shutdown trigger.
* :mod:`healthprobe.servers.gunicorn`: configuration hooks for sync, gthread and uvicorn workers.
* :mod:`healthprobe.servers.werkzeug`: a server from ``werkzeug.serving.make_server``.
"""
