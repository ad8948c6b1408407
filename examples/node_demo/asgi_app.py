"""The seed server in Python, ASGI flavour: a Starlette app served by uvicorn.

Run ``python -m examples.node_demo.asgi_app`` (or ``make demo``): it listens on
``0.0.0.0:8080`` (``PORT`` and ``HOST`` override) and touches ``/tmp/healthy``
(``HEALTHY_FILE`` overrides). ``app`` is also importable, for example
``uvicorn examples.node_demo.asgi_app:app``.

Layers, outermost first: the request log (every path, probes included, as the seed logged),
healthprobe's :func:`~healthprobe.asgi.HealthMiddleware` (``/livez``, ``/readyz``,
``/startupz``, ``/metrics``; counts in-flight requests for the shutdown coordinator), then
the Starlette app with the seed's routes (see :mod:`.common`).

Under ``uvicorn examples.node_demo.asgi_app:app`` the middleware installs the coordinator
on top of uvicorn's own signal handler at lifespan startup, so the shutdown is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Mapping

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import healthprobe.servers.uvicorn
from healthprobe import Probe
from healthprobe.asgi import HealthMiddleware

from .common import (
    DEFAULT_HEALTHY_FILE,
    Answer,
    Demo,
    Settings,
    configure_logging,
    run,
)

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class RequestLog:
    """ASGI middleware logging each HTTP request path, then passing the scope on unchanged."""

    def __init__(self, app: ASGIApp, demo: Demo) -> None:
        self.app = app
        self.demo = demo

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.demo.log_request(scope["path"])
        await self.app(scope, receive, send)


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """This flavour's :class:`Settings` from ``environ`` (default ``os.environ``), with
    ``/tmp/healthy`` as the default healthy file: the one the image's exec probe reads.

    Raises:
        ValueError: with a one-line reason when a value is malformed.
    """
    return Settings.from_env(environ, default_healthy_file=DEFAULT_HEALTHY_FILE)


def create_app(demo: Demo) -> ASGIApp:
    """The demo as an ASGI app for ``demo``: the seed's routes behind the probe middleware.

    Its lifespan touches the healthy file at startup, unless ``demo`` was started before
    (:func:`main` starts it before serving); at shutdown the probe middleware drains
    in-flight requests and runs ``demo.coordinator``'s cleanup hook, which removes it.
    """

    async def dispatch(request: Request) -> PlainTextResponse:
        path = request.scope["path"]
        answer: Answer
        if path == "/healthz":
            answer = demo.healthz(await demo.registry.run_async(Probe.LIVENESS))
        elif path == "/shutdown":
            answer = demo.shutdown()
        elif path == "/slow":
            parsed = demo.slow_seconds(request.query_params.get("seconds"))
            if isinstance(parsed, Answer):
                answer = parsed
            else:
                await anyio.sleep(parsed)
                answer = demo.slow_done(parsed)
        else:
            answer = demo.hello()
        return PlainTextResponse(answer.text, status_code=answer.status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not demo.started:
            demo.start()
        yield

    routes = Starlette(routes=[Route("/{path:path}", dispatch, methods=METHODS)], lifespan=lifespan)
    return RequestLog(HealthMiddleware(routes, demo.endpoints, shutdown=demo.coordinator), demo)


def serve(app: ASGIApp, demo: Demo, sock: socket.socket) -> int:
    """Serve ``app`` with uvicorn on the listening socket ``sock`` (from
    :func:`~.common.open_listener`) until shutdown completes; return the exit code: 0 after
    a clean shutdown (a second signal, more than a second after the first, exits at once
    with ``128 + signal``).

    :func:`healthprobe.servers.uvicorn.serve` installs ``demo.coordinator`` inside uvicorn's
    own signal capture; the coordinator fails readiness on the first SIGTERM or SIGINT,
    serves on for the delay, then stops uvicorn, which closes ``sock`` and waits for open
    requests; the lifespan shutdown drains and runs the cleanup hook. The socket is bound
    before uvicorn starts, so that an address in use is reported by :func:`main` on one line
    instead of failing inside uvicorn after its lifespan has started.
    """
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, access_log=False, lifespan="on")
    return asyncio.run(healthprobe.servers.uvicorn.serve(config, demo.coordinator, sockets=[sock]))


def main() -> int:
    """Entry point of ``python -m examples.node_demo.asgi_app``: see :func:`~.common.run`."""
    return run(read_settings, create_app, serve)


_app: ASGIApp | None = None


def __getattr__(name: str) -> ASGIApp:
    """``app``: the demo built from the environment on first access, for
    ``uvicorn examples.node_demo.asgi_app:app`` (PEP 562 module attribute; lazy, so that
    ``python -m`` reports bad settings itself rather than failing at import)."""
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        configure_logging()  # a no-op when the server has configured the root logger
        _app = create_app(Demo(read_settings()))
    return _app


if __name__ == "__main__":
    sys.exit(main())
