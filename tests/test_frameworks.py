"""The adapters inside real framework apps: Flask and Django behind the WSGI middleware (and
a ``DispatcherMiddleware`` mount), FastAPI behind the ASGI middleware (and a mount).

Every app demands a login for every request, as an app with authentication does: a probe
that reached the app would answer 401. Requests go through real servers (werkzeug's
``make_server``, uvicorn) on ephemeral loopback ports, and through Flask's and Django's own
test clients.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from healthprobe import HealthRegistry
from healthprobe import asgi as hp_asgi
from healthprobe import wsgi as hp_wsgi
from tests.support import CheckSpec, started_registry, uvicorn_client, werkzeug_client

SLACK = 2.0
HANG = 0.4


@pytest.fixture
def registry() -> Iterator[HealthRegistry]:
    """db passes, cache raises, hang blocks (released at teardown), warm is async."""
    hang = threading.Event()

    def cache() -> None:
        raise TimeoutError("redis://:s3cret@cache:6379 did not answer")

    async def warm() -> bool:
        await anyio.sleep(0.01)
        return True

    checks: dict[str, CheckSpec] = {
        "db": (lambda: True, {"probes": ["readiness", "liveness"]}),
        "cache": cache,
        "hang": (hang.wait, {"timeout": HANG}),
        "warm": (warm, {"probes": ["startup"]}),
    }
    yield started_registry(checks, started=False, default_cache_ttl=0)
    hang.set()


def check_contract(client: Any, registry: HealthRegistry, mount: str = "/health") -> None:
    """What every framework app must show, through ``client`` (httpx or a test client)."""
    assert client.get("/").status_code == 401  # the app's own answer
    assert client.get("/anything/else").status_code == 401

    # Still starting: startup runs the async startup check and latches.
    startup = client.get("/startupz")
    assert startup.status_code == 200
    assert registry.lifecycle.value == "started"

    started = time.monotonic()
    ready = client.get("/readyz?verbose")
    assert time.monotonic() - started < HANG + SLACK
    assert ready.status_code == 503
    body = ready.text
    assert "[+]db ok" in body and "[-]cache failed: reason withheld" in body and "[-]hang failed: timed out" in body
    assert "s3cret" not in body and "TimeoutError" not in body
    assert ready.headers["cache-control"] == "no-store"

    assert client.get("/livez").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz/db").status_code == 200
    assert client.get("/readyz/nope").status_code == 404
    assert client.get("/readyz?exclude=cache&exclude=hang").status_code == 200
    assert client.get("/readyz?format=xml").status_code == 400
    json_answer = client.get("/readyz", headers={"accept": "application/health+json"})
    assert json_answer.headers["content-type"] == "application/health+json"
    assert json_answer.json()["status"] == "fail"
    assert client.post("/readyz").status_code == 405
    assert client.get(mount + "/livez").status_code == 200
    assert client.get(mount + "/readyz").status_code == 503

    registry.begin_drain()
    assert client.get("/readyz?exclude=cache&exclude=hang").status_code == 503
    assert client.get("/livez").status_code == 200


# -- Flask -----------------------------------------------------------------------------------


def flask_app(registry: HealthRegistry) -> Any:
    from flask import Flask

    app = Flask("healthprobe_flask_test")

    @app.before_request
    def require_login() -> tuple[str, int]:
        return "login required", 401

    @app.get("/")
    def index() -> str:
        return "hello"

    mounted = DispatcherMiddleware(app.wsgi_app, {"/health": hp_wsgi.HealthApp(registry)})
    app.wsgi_app = hp_wsgi.HealthMiddleware(mounted, registry)  # type: ignore[method-assign]
    return app


def test_flask_behind_werkzeug_server(registry: HealthRegistry) -> None:
    with werkzeug_client(flask_app(registry)) as client:
        check_contract(client, registry)


def test_flask_test_client(registry: HealthRegistry) -> None:
    client = flask_app(registry).test_client()

    class Adapter:
        def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
            return Wrapped(client.get(path, headers=headers or {}))

        def post(self, path: str) -> Any:
            return Wrapped(client.post(path))

    class Wrapped:
        def __init__(self, response: Any) -> None:
            self.status_code = response.status_code
            self.text = response.get_data(as_text=True)
            self.headers = {k.lower(): v for k, v in response.headers.items()}
            self._response = response

        def json(self) -> Any:
            import json

            return json.loads(self.text)

    check_contract(Adapter(), registry)


# -- Django ----------------------------------------------------------------------------------


class LoginRequired:
    """Django middleware refusing every request."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        from django.http import HttpResponse

        return HttpResponse("login required", status=401)


def _django_index(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("hello")


urlpatterns: list[Any] = []


def django_application() -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="healthprobe-tests-" + "x" * 40,
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
            MIDDLEWARE=[f"{__name__}.LoginRequired"],
            INSTALLED_APPS=[],
            DATABASES={},
            USE_TZ=True,
        )
        django.setup()
        from django.urls import path

        urlpatterns[:] = [path("", _django_index)]
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def django_app(registry: HealthRegistry) -> Any:
    mounted = DispatcherMiddleware(django_application(), {"/health": hp_wsgi.HealthApp(registry)})
    return hp_wsgi.HealthMiddleware(mounted, registry)


def test_django_behind_werkzeug_server(registry: HealthRegistry) -> None:
    with werkzeug_client(django_app(registry)) as client:
        check_contract(client, registry)


def test_django_through_wsgi_transport(registry: HealthRegistry) -> None:
    transport = httpx.WSGITransport(app=django_app(registry))
    with httpx.Client(transport=transport, base_url="http://testserver") as client:
        check_contract(client, registry)


# -- FastAPI ---------------------------------------------------------------------------------


def fastapi_app(registry: HealthRegistry, *, add_middleware: bool = False) -> Any:
    """The app wrapped by calling HealthMiddleware, or with ``add_middleware``, the
    FastAPI app itself with HealthMiddleware added as its last (outermost) middleware."""
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse

    app = FastAPI()

    @app.middleware("http")
    async def require_login(request: Request, call_next: Any) -> Any:
        # A mounted app sits inside the app's middleware, so the app must let it through;
        # the outermost HealthMiddleware needs no such exception.
        if request.url.path.startswith("/health/"):
            return await call_next(request)
        return PlainTextResponse("login required", status_code=401)

    @app.get("/")
    async def index() -> str:
        return "hello"

    app.mount("/health", hp_asgi.HealthApp(registry))
    if add_middleware:
        app.add_middleware(hp_asgi.HealthMiddleware, registry=registry)
        return app
    return hp_asgi.HealthMiddleware(app, registry)


def test_fastapi_add_middleware_behind_uvicorn(registry: HealthRegistry) -> None:
    """Starlette's add_middleware builds HealthMiddleware itself, outside the app's own
    (login) middleware, so probes are answered and the app still refuses everything else."""
    with uvicorn_client(fastapi_app(registry, add_middleware=True), lifespan="on") as client:
        check_contract(client, registry)


def test_fastapi_behind_uvicorn(registry: HealthRegistry) -> None:
    with uvicorn_client(fastapi_app(registry), lifespan="on") as client:
        # A probe in flight never blocks the event loop: the app answers meanwhile.
        with httpx.Client(base_url=str(client.base_url), timeout=10) as other:
            finished: dict[str, float] = {}
            result: list[int] = []

            def probe() -> None:
                result.append(other.get("/readyz").status_code)
                finished["probe"] = time.monotonic()

            thread = threading.Thread(target=probe)
            thread.start()
            time.sleep(0.1)
            assert client.get("/").status_code == 401
            finished["app"] = time.monotonic()
            thread.join(10)
        assert result == [503]
        assert finished["app"] < finished["probe"]
        check_contract(client, registry)
