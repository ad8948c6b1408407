"""The applications compared: healthprobe, raw constant floors, bare framework routes, peers.

Every probe app answers ``/livez`` with no checks registered: the job a liveness endpoint
does for every kubelet probe. Peer packages are imported only when asked for (extra
``bench``); a missing one raises :class:`MissingPeer` with the package to install.
"""

from __future__ import annotations

from typing import Any

from healthprobe import HealthRegistry

from .harness import ASGIApp, WSGIApp

#: The floor answers with the same status, headers and body as healthprobe's ``/livez``, as
#: constants, so a comparison measures the work of answering and not a choice of headers.
OK_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"3"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


class MissingPeer(RuntimeError):
    """A peer package of the comparison is not installed."""


def _need(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingPeer(f"{package} is not installed (pip install -e '.[bench]')") from exc


def started_registry() -> HealthRegistry:
    """A registry past startup with no checks: what ``/livez`` answers in most services."""
    registry = HealthRegistry()
    registry.mark_started()
    return registry


# -- ASGI --------------------------------------------------------------------------------


async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The floor: a raw ASGI callable answering a constant ``200 ok``."""
    await send({"type": "http.response.start", "status": 200, "headers": OK_HEADERS})
    await send({"type": "http.response.body", "body": b"ok\n"})


def starlette_app(path: str = "/livez") -> ASGIApp:
    """A bare Starlette app with one route answering ``ok`` at ``path``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def handler(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route(path, handler)])  # type: ignore[return-value]


def in_flight_tracking(registry: HealthRegistry) -> Any:
    """A graceful-shutdown coordinator that counts in-flight requests, installed as a server
    integration installs it (the benchmarks call the apps with no server), so requests take
    the path they take in a served process. It listens for SIGUSR2 only, so a benchmark
    never takes over SIGTERM or SIGINT of its process."""
    import signal

    from healthprobe import GracefulShutdown

    shutdown = GracefulShutdown(registry, delay=0, signals=(signal.SIGUSR2,))
    shutdown.install(stop=lambda: None)
    return shutdown


def healthprobe_asgi(
    inner: ASGIApp | None = None, registry: HealthRegistry | None = None, *, shutdown: bool = False
) -> ASGIApp:
    """healthprobe's ASGI middleware in front of an ordinary Starlette app; with
    ``shutdown``, also counting in-flight requests for a graceful shutdown."""
    from healthprobe.asgi import HealthMiddleware

    app = inner if inner is not None else starlette_app("/orders")
    registry = registry or started_registry()
    coordinator = in_flight_tracking(registry) if shutdown else None
    return HealthMiddleware(app, registry, shutdown=coordinator)  # type: ignore[arg-type,return-value]


class NoopAsgiMiddleware:
    """An ASGI middleware that only passes the call on: what any middleware layer costs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def least_routing_and_counting(app: ASGIApp) -> ASGIApp:
    """The least a Python ASGI middleware can do to answer probe paths and count the other
    requests in flight: a function (not an object), the default probe paths as a set and
    prefixes, one list for the count; no ``root_path``, no shutdown state. A floor for
    healthprobe's pass-through, which does those too."""
    exact = frozenset(["/livez", "/readyz", "/healthz", "/startupz"])
    prefixes = ("/livez/", "/readyz/", "/healthz/", "/startupz/")
    requests: list[None] = []

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path in exact or path.startswith(prefixes):
                raise RuntimeError("a probe path: not measured here")
            requests.append(None)
            try:
                await app(scope, receive, send)
            finally:
                requests.pop()
            return
        await app(scope, receive, send)

    return middleware


def fastapi_health_app() -> ASGIApp:
    """fastapi-health's endpoint in a FastAPI app, at ``/livez``, with no conditions."""
    fastapi = _need("fastapi", "fastapi")
    route = _need("fastapi_health", "fastapi-health")
    app = fastapi.FastAPI()
    app.add_api_route("/livez", route.health([]))
    return app  # type: ignore[no-any-return]


# -- WSGI --------------------------------------------------------------------------------

_RAW_WSGI_HEADERS = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in OK_HEADERS]


def raw_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The floor: a raw WSGI callable answering a constant ``200 ok``."""
    start_response("200 OK", list(_RAW_WSGI_HEADERS))
    return [b"ok\n"]


def werkzeug_app(environ: dict[str, Any], start_response: Any) -> Any:
    """A bare Werkzeug response per request."""
    from werkzeug.wrappers import Response

    return Response("ok\n", mimetype="text/plain")(environ, start_response)


def flask_app() -> Any:
    """An ordinary Flask app with one route, ``/orders``."""
    flask = _need("flask", "flask")
    app = flask.Flask("orders")

    @app.get("/orders")
    def orders() -> str:
        return "[]"

    return app


def healthprobe_wsgi(
    inner: WSGIApp | None = None, registry: HealthRegistry | None = None, *, shutdown: bool = False
) -> WSGIApp:
    """healthprobe's WSGI middleware in front of an ordinary app; with ``shutdown``, also
    counting in-flight requests for a graceful shutdown."""
    from healthprobe.wsgi import HealthMiddleware

    app = inner if inner is not None else werkzeug_app
    registry = registry or started_registry()
    coordinator = in_flight_tracking(registry) if shutdown else None
    return HealthMiddleware(app, registry, shutdown=coordinator)  # type: ignore[arg-type,return-value]


class NoopWsgiMiddleware:
    """A WSGI middleware that only passes the call on: what any middleware layer costs."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


def py_healthcheck_flask() -> WSGIApp:
    """py-healthcheck's ``HealthCheck`` served by Flask at ``/livez``, with no checkers."""
    flask = _need("flask", "flask")
    healthcheck = _need("healthcheck", "py-healthcheck")
    app = flask.Flask("pyhealthcheck")
    health = healthcheck.HealthCheck()
    app.add_url_rule("/livez", "livez", view_func=lambda: health.run())
    return app.wsgi_app  # type: ignore[no-any-return]


def django_health_check_app() -> WSGIApp:
    """django-health-check's view at ``/livez`` in a minimal in-process Django project."""
    django = _need("django", "django")
    _need("health_check", "django-health-check")
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="benchmark-only-not-secret",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF="benchmarks.django_urls",
            INSTALLED_APPS=["django.contrib.contenttypes", "health_check"],
            MIDDLEWARE=[],
            DATABASES={},
            USE_TZ=True,
            TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True}],
            LOGGING_CONFIG=None,
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()  # type: ignore[no-any-return]
