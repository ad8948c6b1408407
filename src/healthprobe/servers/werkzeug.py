"""werkzeug: serve a ``werkzeug.serving.make_server`` server until shutdown completes.

::

    shutdown = GracefulShutdown(registry)
    app = HealthMiddleware(app, registry, shutdown=shutdown)
    sys.exit(healthprobe.servers.werkzeug.serve(make_server("0.0.0.0", 8080, app, threaded=True), shutdown))

When the delay ends the server's ``serve_forever`` loop is stopped and its listening socket
closed; requests already being handled in their threads (``threaded=True``) are drained
through the middleware's in-flight count, then the hooks run.
"""

from __future__ import annotations

import typing

from .. import _extras

with _extras.requires("wsgi", __name__):
    import werkzeug.serving

if typing.TYPE_CHECKING:
    from ..shutdown import GracefulShutdown

__all__ = ["serve"]


def serve(server: werkzeug.serving.BaseWSGIServer, shutdown: GracefulShutdown) -> int:
    """Run ``server.serve_forever()`` with the coordinator's signal handlers installed.

    Args:
        server: from ``make_server(...)``; use ``threaded=True`` so that probes are answered
            while requests run.
        shutdown: the :class:`GracefulShutdown` of this process.

    Returns:
        The exit code, 0 after a clean shutdown. Must run in the main thread.
    """
    shutdown.install(stop=server.shutdown)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return shutdown.finish()
