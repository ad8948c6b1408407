"""gunicorn: answer the kubelet's probes from the master process, on a port of their own
(extra ``wsgi``, for the probe server).

gunicorn's sync and ``gthread`` workers read a request in the thread that answers it, so a
client that opens connections and sends half a request ties up every worker (or thread)
until gunicorn's ``--timeout``: the probes on the application's port then go unanswered and
the kubelet restarts a healthy pod. This configuration module serves the probes from the
master, which never reads a client's request, with the standalone probe server
(:func:`healthprobe.serve`), which no client can starve::

    gunicorn -c python:healthprobe.servers.gunicorn_probes --bind 0.0.0.0:8080 app:app

It also carries the hooks of :mod:`healthprobe.servers.gunicorn` (a second signal ends
every process at once, the cleanup hooks run from ``worker_exit``), so it replaces
``-c python:healthprobe.servers.gunicorn``. In a ``gunicorn.conf.py`` of your own, import
its hooks: ``from healthprobe.servers.gunicorn_probes import *``.

Settings come from the environment of the master (``-e NAME=value`` on gunicorn's command
line sets it too):

* ``HEALTHPROBE_PROBE_PORT``: the probe server's TCP port, default ``8081``
  (:data:`healthprobe.probe_server.DEFAULT_PORT`);
* ``HEALTHPROBE_PROBE_HOST``: its address, default ``0.0.0.0`` (the kubelet probes the pod's IP).

What the master answers: it knows that it runs, not what the application's checks say. Its
:data:`registry` has no check of its own: ``/livez`` answers 200 while the master runs (and
gunicorn itself restarts a worker that does not report within ``--timeout``);
``/startupz`` passes once the master listens; ``/readyz`` answers 200 until the master gets
``SIGTERM``, ``SIGINT`` or ``SIGQUIT``, then 503. Point the ``livenessProbe`` and the
``startupProbe`` here, where no client can starve them, and keep the ``readinessProbe`` on the
application's port: readiness, the shutdown's drain and the dependency checks live in the
workers, and a pod whose workers are all taken is not ready to serve. Add checks that make
sense in the master to :data:`registry` (for one, ``checks.file(path, max_age=...)`` on a file
the workers touch).
"""

from __future__ import annotations

import logging
import os
import signal
import typing

from .. import _extras
from ..registry import HealthRegistry as _HealthRegistry

with _extras.requires("wsgi", __name__):  # the probe server is Werkzeug's request handler
    from ..probe_server import DEFAULT_PORT as _DEFAULT_PORT
    from ..probe_server import serve as _serve
from . import gunicorn as _hooks

if typing.TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

    from ..probe_server import ProbeServer

__all__ = ["ENV_HOST", "ENV_PORT", "on_exit", "post_worker_init", "registry", "when_ready", "worker_exit"]

_logger = logging.getLogger("healthprobe")

#: The environment variable naming the probe server's port (default 8081).
ENV_PORT = "HEALTHPROBE_PROBE_PORT"
#: The environment variable naming the probe server's address (default ``0.0.0.0``).
ENV_HOST = "HEALTHPROBE_PROBE_HOST"

#: The registry the master's probe server answers from; started when the master listens,
#: draining from its first stop signal, stopped when it exits.
registry = _HealthRegistry()

_server: list[ProbeServer] = []  # the master's probe server, once started (one per process)

#: gunicorn's worker hooks, unchanged (see :mod:`healthprobe.servers.gunicorn`).
post_worker_init = _hooks.post_worker_init
worker_exit = _hooks.worker_exit


def _address() -> tuple[str, int]:
    """The probe server's host and port from the environment; raises ``SystemExit(1)``
    after one log line naming the variable when the port is not a TCP port number."""
    host = os.environ.get(ENV_HOST, "0.0.0.0")
    raw = os.environ.get(ENV_PORT, str(_DEFAULT_PORT))
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        _logger.error("probe server: %s=%r is not a TCP port number (0 to 65535)", ENV_PORT, raw)
        raise SystemExit(1)
    return host, port


def when_ready(arbiter: Any) -> None:
    """gunicorn hook (master): the hook of :func:`healthprobe.servers.gunicorn.when_ready`,
    then start the probe server in the master and fail its readiness on the first stop
    signal.

    Raises:
        SystemExit: with status 1, after one ERROR line naming the setting, when
            ``HEALTHPROBE_PROBE_PORT`` is not a port number or the address cannot be bound
            (the port is in use). A master re-executed by ``SIGUSR2`` whose old master still
            holds the port logs a WARNING and serves no probes instead.
    """
    _hooks.when_ready(arbiter)
    if _server and _server[0].running:
        return
    host, port = _address()
    try:
        server = _serve(registry, host, port)
    except OSError as exc:
        reason = " ".join(str(exc).split())
        if getattr(arbiter, "master_pid", 0):
            _logger.warning(
                "probe server: cannot listen on %s:%d (%s, %s): %s; the old master still serves the probes "
                "until it exits",
                host,
                port,
                ENV_HOST,
                ENV_PORT,
                reason,
            )
            return
        _logger.error("probe server: cannot listen on %s:%d (%s, %s): %s", host, port, ENV_HOST, ENV_PORT, reason)
        raise SystemExit(1) from None
    _server[:] = [server]
    registry.mark_started()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        _drain_on(sig)


def _drain_on(sig: signal.Signals) -> None:
    """Put a handler for ``sig`` in front of the one in place (gunicorn's, or the second-
    signal handler of :mod:`healthprobe.servers.gunicorn`): readiness fails, then that handler
    runs as before."""
    previous: Callable[[int, FrameType | None], Any] | int | None = signal.getsignal(sig)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        registry.begin_drain()
        if callable(previous):
            previous(signum, frame)

    signal.signal(sig, on_signal)


def on_exit(arbiter: Any) -> None:
    """gunicorn hook (master, as it exits once every worker has): stop the probe server
    (the registry enters ``stopped``), then run :mod:`healthprobe.servers.gunicorn`'s own
    ``on_exit`` if it has one."""
    registry.mark_stopped()
    for server in _server:
        server.stop()
    other = getattr(_hooks, "on_exit", None)
    if callable(other):
        other(arbiter)
