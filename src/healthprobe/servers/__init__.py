"""Thin integrations of :class:`healthprobe.shutdown.GracefulShutdown` with servers.

Most launch commands need none of them: the adapters' ``HealthMiddleware(shutdown=...)``
recognises the server by its signal handler (:mod:`healthprobe._launch`) and uses
:func:`uvicorn.control` or :func:`gunicorn.control` by itself. Each module imports its server
only when imported itself:

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
"""
