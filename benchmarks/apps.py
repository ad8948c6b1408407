"""The applications compared: healthprobe, raw constant floors, bare framework routes, peers.

Every probe app answers ``/livez`` with no checks registered: the job a liveness endpoint
does for every kubelet probe. Peer packages are imported only when asked for (extra
``bench``); a missing one raises :class:`MissingPeer` with the package to install.
:func:`every_feature_on` switches the operating features (docs/operating.md) on for a
registry, so the same apps can be measured with them.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from typing import Any

from healthprobe import Guard, HealthRegistry, Transition

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


def _need(module: str, package: str, extra: str = "bench") -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingPeer(f"{package} is not installed (pip install -e '.[{extra}]')") from exc


def started_registry() -> HealthRegistry:
    """A registry past startup with no checks: what ``/livez`` answers in most services."""
    registry = HealthRegistry()
    registry.mark_started()
    return registry


# -- operating features ------------------------------------------------------------------

#: The guard's token: the kubelet, as the benchmark's requests, sends none, so every probe is
#: answered as a guard answers a request it does not allow (the plain answer).
GUARD_TOKEN = "benchmark-only-not-secret"
#: The guard's networks; the benchmark's client, ``10.0.0.1``, is in the first.
GUARD_NETWORKS = ["10.0.0.0/8", "192.168.0.0/16"]
#: The group switched on: it names the readiness check of the (1) readiness row.
GROUP = "dependencies"


#: The operating features :func:`every_feature_on` switches on, by the name the rows use.
FEATURES = ("disable file", "group", "guard", "OpenTelemetry", "transition listener and webhook")


@dataclasses.dataclass
class Operating:
    """Operating features of docs/operating.md on one registry: what was switched on, to
    pass the guard to the endpoints and to close what started threads."""

    registry: HealthRegistry
    features: tuple[str, ...]
    guard: Guard | None = None
    publisher: Any = None
    instrumentation: Any = None
    transitions: list[Transition] = dataclasses.field(default_factory=list)

    def notices(self) -> int:
        """Notices the webhook publisher made (sent, failed, dropped or queued): none is
        expected in steady state, where every check passes."""
        if self.publisher is None:
            return 0
        return int(sum(self.publisher.counts.values())) + int(self.publisher.queued)

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close(timeout=2.0)
        if self.instrumentation is not None:
            self.instrumentation.uninstrument()
        self.registry.close()

    def __enter__(self) -> Operating:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def closed_loopback_url() -> str:
    """An ``http://127.0.0.1:<port>/`` URL where nothing listens (a port just released): a
    notice sent there fails at once, and none should be sent in steady state."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/healthprobe"


def every_feature_on(registry: HealthRegistry | None = None, features: tuple[str, ...] = FEATURES) -> Operating:
    """Switch the operating ``features`` (default: all of :data:`FEATURES`) on for
    ``registry`` (default: a started one with no checks):

    * ``disable file``: a path where no file exists (one ``stat`` per readiness answer);
    * ``group``: :data:`GROUP`, naming the check ``database`` and the tag ``db``;
    * ``guard``: a token and networks, the admin request and the thread dump; the guard is
      returned for the endpoints, which take it as an option;
    * ``OpenTelemetry``: spans and metrics through the SDK's ``TracerProvider`` and
      ``MeterProvider``, with no exporter and no reader;
    * ``transition listener and webhook``: a listener keeping the transitions, and a webhook
      publisher pointed at a closed loopback port.
    """
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown operating features: {sorted(unknown)}")
    if "OpenTelemetry" in features:  # before anything is switched on
        sdk_trace = _need("opentelemetry.sdk.trace", "opentelemetry-sdk", "dev")
        sdk_metrics = _need("opentelemetry.sdk.metrics", "opentelemetry-sdk", "dev")
    registry = registry or started_registry()
    on = Operating(registry, tuple(features))
    if "disable file" in features:
        absent = os.path.join(tempfile.gettempdir(), f"healthprobe-bench-{os.getpid()}-absent", "disabled")
        registry.set_disable_file(absent)
    if "group" in features:
        registry.add_group(GROUP, checks=("database",), tags=("db",))
    if "guard" in features:
        on.guard = Guard(
            token=GUARD_TOKEN, networks=GUARD_NETWORKS, rotation_path="/admin/rotation", threads_path="/debug/threads"
        )
    if "OpenTelemetry" in features:
        from healthprobe.otel import instrument

        on.instrumentation = instrument(
            registry, tracer_provider=sdk_trace.TracerProvider(), meter_provider=sdk_metrics.MeterProvider()
        )
    if "transition listener and webhook" in features:
        from healthprobe.webhook import WebhookPublisher

        registry.add_transition_listener(on.transitions.append)
        on.publisher = WebhookPublisher(closed_loopback_url(), attempts=1, timeout=1.0).attach(registry)
    return on


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


def _wiring(
    registry: HealthRegistry | None, shutdown: bool, operating: Operating | None
) -> tuple[HealthRegistry, dict[str, Any]]:
    """The registry and the keyword arguments of either adapter's ``HealthMiddleware``."""
    if operating is not None:
        if registry is not None and registry is not operating.registry:
            raise ValueError("operating features belong to another registry")
        registry = operating.registry
    registry = registry or started_registry()
    options: dict[str, Any] = {"shutdown": in_flight_tracking(registry) if shutdown else None}
    if operating is not None and operating.guard is not None:
        options["guard"] = operating.guard
    return registry, options


def healthprobe_asgi(
    inner: ASGIApp | None = None,
    registry: HealthRegistry | None = None,
    *,
    shutdown: bool = False,
    operating: Operating | None = None,
) -> ASGIApp:
    """healthprobe's ASGI middleware in front of an ordinary Starlette app; with
    ``shutdown``, also counting in-flight requests for a graceful shutdown; with
    ``operating`` (:func:`every_feature_on`), on its registry and with its guard."""
    from healthprobe.asgi import HealthMiddleware

    app = inner if inner is not None else starlette_app("/orders")
    registry, options = _wiring(registry, shutdown, operating)
    return HealthMiddleware(app, registry, **options)  # type: ignore[arg-type]


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
    inner: WSGIApp | None = None,
    registry: HealthRegistry | None = None,
    *,
    shutdown: bool = False,
    operating: Operating | None = None,
) -> WSGIApp:
    """healthprobe's WSGI middleware in front of an ordinary app; with ``shutdown``, also
    counting in-flight requests for a graceful shutdown; with ``operating``
    (:func:`every_feature_on`), on its registry and with its guard."""
    from healthprobe.wsgi import HealthMiddleware

    app = inner if inner is not None else werkzeug_app
    registry, options = _wiring(registry, shutdown, operating)
    return HealthMiddleware(app, registry, **options)


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
