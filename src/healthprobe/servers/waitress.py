"""waitress: serve with a graceful shutdown, from code or from the ``waitress-serve`` command.

::

    shutdown = GracefulShutdown(registry)
    app = HealthMiddleware(app, registry, shutdown=shutdown)
    sys.exit(healthprobe.servers.waitress.serve(app, shutdown, listen="0.0.0.0:8080"))

``waitress-serve --listen=0.0.0.0:8080 myapp:app`` needs nothing more: waitress installs no
signal handler of its own (``SIGTERM`` would end the process at once), so the WSGI
``HealthMiddleware(shutdown=...)`` installs the coordinator when the command imports the
application, in its main thread.

When the delay ends the listening sockets are closed on waitress's main loop (no new
connection is accepted; open ones go on). Once the requests in flight are answered (or the
drain bound is reached) and waitress has written what it holds, every connection is closed on
that loop, which ends it: ``run()`` returns, and the hooks run. ``waitress.serve(app)`` called
by an application of its own cannot be stopped this way from a request thread: a WARNING
says so at the first request.

waitress reads requests on its main loop, but holds at most ``connection_limit`` (100)
connections and answers with ``threads`` (4) threads: a client that opens connections and
sends half a request leaves the probes on the application's port unanswered. With
``probe_port`` the probes are also answered by the standalone probe server
(:func:`healthprobe.serve`), which no client can starve, on a port of their own::

    sys.exit(healthprobe.servers.waitress.serve(app, shutdown, listen="0.0.0.0:8080", probe_port=8081))
"""

from __future__ import annotations

import gc
import time
import typing

from .. import _extras
from .. import shutdown as _shutdown
from ..http import HealthEndpoints as _HealthEndpoints

with _extras.requires("waitress", __name__):
    import waitress.server
    from waitress import wasyncore

if typing.TYPE_CHECKING:
    from typing import Any

    from ..shutdown import GracefulShutdown, ServerControl

__all__ = ["FLUSH_TIMEOUT", "adopt", "control", "serve"]

#: Seconds allowed for waitress to write out the responses it holds once the drain is over.
FLUSH_TIMEOUT = 1.0


def serve(
    app: Any,
    shutdown: GracefulShutdown,
    *,
    probe_port: int | None = None,
    probe_host: str = "0.0.0.0",
    **kwargs: Any,
) -> int:
    """Serve the WSGI ``app`` with waitress until shutdown completes.

    Args:
        app: the WSGI application, normally wrapped in ``HealthMiddleware(shutdown=shutdown)``.
        shutdown: the :class:`GracefulShutdown` of this process.
        probe_port: when given, also serve the probes with the standalone probe server
            (:func:`healthprobe.serve`, extra ``wsgi``) on this TCP port, from the endpoints
            of ``app`` when it is a ``HealthMiddleware`` (same paths, statuses and metrics),
            else from ``shutdown``'s registry. It answers through the drain (readiness 503,
            liveness 200) and stops when the registry enters ``stopped``.
        probe_host: the probe server's address (``0.0.0.0``: the kubelet probes the pod's IP).
        kwargs: waitress's settings (``listen="0.0.0.0:8080"``, ``threads=8``, ...), as for
            ``waitress.serve``.

    Returns:
        The exit code, 0 after a clean shutdown. Must run in the main thread.

    Raises:
        OSError: an address cannot be bound (a port is in use); the probe server is bound
            first, and stopped again when the application's address cannot be bound.
    """
    probes = None
    if probe_port is not None:
        with _extras.requires("wsgi", "healthprobe.servers.waitress.serve(probe_port=...)"):
            from ..probe_server import serve as serve_probes

        endpoints = getattr(app, "endpoints", None)
        source = endpoints if isinstance(endpoints, _HealthEndpoints) else shutdown.registry
        probes = serve_probes(source, probe_host, probe_port)
    try:
        server = waitress.server.create_server(app, **kwargs)
        shutdown.install(control=control(shutdown, server))
        server.print_listen("Serving on http://{}:{}")
        if probes is not None:
            server.log_info(f"Serving probes on http://{probe_host}:{probes.port}")
        server.run()
        return shutdown.finish()
    finally:
        if probes is not None:
            probes.stop()


def adopt(shutdown: GracefulShutdown) -> None:
    """Install the coordinator in a process that ``waitress-serve`` is starting (called by
    the WSGI middleware as the command imports the application, before the server exists)."""
    shutdown.install_automatically("waitress", control=control(shutdown))


def control(shutdown: GracefulShutdown, server: Any = None) -> ServerControl:
    """How the coordinator stops waitress: ``server`` from ``create_server``, or every
    waitress server of this process when ``None`` (found when the delay ends)."""

    def servers() -> list[waitress.server.BaseWSGIServer]:
        if server is None:
            return [o for o in gc.get_objects() if isinstance(o, waitress.server.BaseWSGIServer)]
        return [server] if isinstance(server, waitress.server.BaseWSGIServer) else [*_listeners(server)]

    def stop() -> None:
        for listener in servers():
            # On waitress's main loop: the socket map is not to be changed from elsewhere.
            listener.trigger.pull_trigger(lambda listener=listener: wasyncore.dispatcher.close(listener))

    def release() -> None:
        listeners = servers()
        deadline = time.monotonic() + FLUSH_TIMEOUT
        while time.monotonic() < deadline and not all(_flushed(listener) for listener in listeners):
            time.sleep(0.02)
        for listener in listeners:
            # Closing every connection and the trigger empties the socket map, which ends
            # waitress's main loop (``while map: poll``): run() returns.
            listener.trigger.pull_trigger(lambda listener=listener: wasyncore.close_all(listener._map))

    return _shutdown.ServerControl("waitress", stop, release)


def _listeners(server: Any) -> list[waitress.server.BaseWSGIServer]:
    # A MultiSocketServer (several listen addresses) holds its listeners in its socket map.
    return [o for o in getattr(server, "map", {}).values() if isinstance(o, waitress.server.BaseWSGIServer)]


def _flushed(listener: waitress.server.BaseWSGIServer) -> bool:
    try:
        channels = list(getattr(listener, "active_channels", {}).values())
        return all(not channel.total_outbufs_len and not channel.requests for channel in channels)
    except RuntimeError:  # the loop changed the channels meanwhile: look again
        return False
