"""The seed server in Python, ASGI flavour: a Starlette app served by uvicorn.

Run ``python -m examples.node_demo.asgi_app`` (or ``make demo``): it listens on
``0.0.0.0:8080`` (``PORT`` and ``HOST`` override). ``app`` is also importable, for example
``uvicorn examples.node_demo.asgi_app:app``.

Layers, outermost first: the request log (every path, probes included, as the seed logged),
healthprobe's :class:`~healthprobe.asgi.HealthMiddleware` (``/livez``, ``/readyz``,
``/startupz``), then the Starlette app with the seed's routes (see :mod:`.common`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from types import FrameType

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from healthprobe import Probe
from healthprobe.asgi import HealthMiddleware

from .common import Answer, Demo, Settings, configure_logging, logger

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


def create_app(demo: Demo) -> ASGIApp:
    """The demo as an ASGI app for ``demo``: the seed's routes behind the probe middleware.

    Its lifespan touches the healthy file at startup and removes it at shutdown.
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
        demo.start()
        try:
            yield
        finally:
            demo.stop()

    routes = Starlette(routes=[Route("/{path:path}", dispatch, methods=METHODS)], lifespan=lifespan)
    return RequestLog(HealthMiddleware(routes, demo.endpoints), demo)


class _Server(uvicorn.Server):
    """uvicorn's server, logging the first shutdown signal and failing readiness (lifecycle
    ``draining``) when its shutdown begins."""

    def __init__(self, config: uvicorn.Config, demo: Demo) -> None:
        super().__init__(config)
        self.demo = demo
        self.signals: list[str] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            config = self.config
            logger.info("server is listening on http://%s:%d ...  PID = %d", config.host, config.port, os.getpid())

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        name = signal.Signals(sig).name
        if not self.signals:
            logger.info("received %s, closing", name)
        self.signals.append(name)
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Here, on the event loop, rather than in the signal handler: the handler may
        # interrupt the main thread while it holds the registry's lock.
        self.demo.registry.begin_drain()
        await super().shutdown(sockets)


def serve(app: ASGIApp, demo: Demo, host: str, port: int) -> int:
    """Serve ``app`` with uvicorn on ``host:port`` until SIGTERM or SIGINT; return the exit
    code: 0 after a clean shutdown, 1 when a second SIGINT forced it.

    With :class:`_Server`, the one place that starts the server and handles signals. On the
    first signal uvicorn stops accepting (closes its listening socket), lets open requests
    finish, runs the lifespan shutdown and returns; a second SIGINT forces the exit without
    waiting. uvicorn then re-raises the signals it caught against the handlers that were
    installed before it; the handlers installed here absorb them, so a clean shutdown exits
    0 as the seed did.
    """

    def absorb(sig: int, frame: FrameType | None) -> None:
        """Swallow the signal uvicorn re-raises after its graceful shutdown."""

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, absorb)
    server = _Server(uvicorn.Config(app, host=host, port=port, access_log=False, lifespan="on"), demo)
    server.run()
    if server.force_exit:
        logger.warning("forced exit after %s", ", ".join(server.signals))
        return 1
    logger.info("server stopped after %s", server.signals[0] if server.signals else "exit")
    return 0


def main() -> int:
    """Entry point of ``python -m examples.node_demo.asgi_app``: 2 on bad settings, else the
    exit code of :func:`serve`."""
    configure_logging()
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    demo = Demo(settings)
    return serve(create_app(demo), demo, settings.host, settings.port)


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
        _app = create_app(Demo(Settings.from_env()))
    return _app


if __name__ == "__main__":
    sys.exit(main())
