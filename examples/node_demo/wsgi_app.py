"""The seed server in Python, WSGI flavour: a Werkzeug app served by Werkzeug's threaded
server (``werkzeug.serving.make_server``).

Run ``python -m examples.node_demo.wsgi_app`` (or ``make demo-wsgi``): it listens on
``0.0.0.0:8080`` (``PORT`` and ``HOST`` override) and touches ``/tmp/healthy-wsgi``
(``HEALTHY_FILE`` overrides), not the ASGI flavour's ``/tmp/healthy``, so that the two run
side by side. ``app`` is also importable for any WSGI server, for example
``gunicorn examples.node_demo.wsgi_app:app``.

Layers, outermost first: the request log (every path, probes included, as the seed logged),
healthprobe's :func:`~healthprobe.wsgi.HealthMiddleware` (``/livez``, ``/readyz``,
``/startupz``, ``/metrics``; counts in-flight requests for the shutdown coordinator), then
the Werkzeug app with the seed's routes (see :mod:`.common`).

WSGI has no lifespan: the app counts as started (healthy file touched) when it is created
for another server (the module attribute ``app``), or once :func:`main` has bound its socket.
Under another WSGI server the coordinator counts requests but handles no signal unless that
server is wired to it (for gunicorn: ``-c python:healthprobe.servers.gunicorn``).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

import healthprobe.servers.werkzeug
from healthprobe import Probe
from healthprobe.wsgi import HealthMiddleware

from .common import (
    DEFAULT_HEALTHY_FILE_WSGI,
    Answer,
    Demo,
    Settings,
    configure_logging,
    run,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class RequestLog:
    """WSGI middleware logging each request path, then calling the app unchanged."""

    def __init__(self, app: WSGIApplication, demo: Demo) -> None:
        self.app = app
        self.demo = demo

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # PATH_INFO carries the undecoded bytes as latin-1 (PEP 3333); show them as UTF-8.
        raw = environ.get("PATH_INFO", "") or "/"
        self.demo.log_request(raw.encode("latin-1", "replace").decode("utf-8", "replace"))
        return self.app(environ, start_response)


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """This flavour's :class:`Settings` from ``environ`` (default ``os.environ``), with
    ``/tmp/healthy-wsgi`` as the default healthy file, apart from the ASGI flavour's.

    Raises:
        ValueError: with a one-line reason when a value is malformed.
    """
    return Settings.from_env(environ, default_healthy_file=DEFAULT_HEALTHY_FILE_WSGI)


def create_app(demo: Demo) -> WSGIApplication:
    """The demo as a WSGI app for ``demo``: the seed's routes behind the probe middleware.

    WSGI has no lifespan: whoever serves it starts ``demo`` (touches the healthy file),
    :func:`~.common.open_listener` in :func:`main`, the module attribute ``app`` otherwise.
    """

    def dispatch(request: Request) -> Answer:
        path = request.path
        if path == "/healthz":
            return demo.healthz(demo.registry.run(Probe.LIVENESS))
        if path == "/shutdown":
            return demo.shutdown()
        if path == "/slow":
            parsed = demo.slow_seconds(request.args.get("seconds"))
            if isinstance(parsed, Answer):
                return parsed
            time.sleep(parsed)
            return demo.slow_done(parsed)
        return demo.hello()

    def routes(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        answer = dispatch(Request(environ))
        response = Response(answer.text, status=answer.status, mimetype="text/plain")
        return response(environ, start_response)

    return RequestLog(HealthMiddleware(routes, demo.endpoints, shutdown=demo.coordinator), demo)


class _Handler(WSGIRequestHandler):
    """Werkzeug's request handler without its access log: the app logs each path itself."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def serve(app: WSGIApplication, demo: Demo, sock: socket.socket) -> int:
    """Serve ``app`` with Werkzeug's threaded server on the listening socket ``sock`` (from
    :func:`~.common.open_listener`; closed here) until shutdown completes; return the exit
    code: 0 after a clean shutdown (a second signal, more than a second after the first,
    exits at once with ``128 + signal``).

    :func:`healthprobe.servers.werkzeug.serve` installs ``demo.coordinator``: the first SIGTERM
    or SIGINT fails readiness, the server keeps serving for the delay, then its accept loop
    stops and the listening socket closes; the requests still being answered in their
    threads are drained through the middleware's in-flight count, then the cleanup hook
    runs. Werkzeug answers every request with ``Connection: close``, so no idle keep-alive
    connection holds the exit.

    ``make_server(fd=...)`` serves a duplicate of ``sock``'s descriptor (Werkzeug's own
    binding prints to standard error and calls ``sys.exit(1)`` on a port in use), so
    ``sock`` itself is closed at once: the server's ``server_close`` then really closes the
    listening socket.
    """
    host, port = sock.getsockname()[:2]
    with sock:
        server = make_server(host, port, app, threaded=True, request_handler=_Handler, fd=sock.fileno())
    return healthprobe.servers.werkzeug.serve(server, demo.coordinator)


def main() -> int:
    """Entry point of ``python -m examples.node_demo.wsgi_app``: see :func:`~.common.run`."""
    return run(read_settings, create_app, serve)


_app: WSGIApplication | None = None


def __getattr__(name: str) -> WSGIApplication:
    """``app``: the demo built from the environment on first access, for any WSGI server
    (PEP 562 module attribute; lazy, so that ``python -m`` reports bad settings itself
    rather than failing at import)."""
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        configure_logging()  # a no-op when the server has configured the root logger
        demo = Demo(read_settings())
        # Built first: under a gunicorn worker, building it installs the graceful shutdown,
        # which is then in place when the app counts as started (the healthy file).
        app = create_app(demo)
        demo.start()
        _app = app
    return _app


if __name__ == "__main__":
    sys.exit(main())
