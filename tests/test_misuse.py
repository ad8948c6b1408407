"""Misuse is caught where it is made, with a one-line error that says the fix: at
registration or when the middleware is built, never at the first probe (the adapters never
answer 500) and never by serving probes while every application request fails."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from healthprobe import HealthEndpoints, HealthRegistry
from healthprobe import asgi as hp_asgi
from healthprobe import wsgi as hp_wsgi
from healthprobe.shutdown import GracefulShutdown


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


async def hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("hello")


def test_the_bare_decorator_registers_the_check() -> None:
    registry = HealthRegistry()

    @registry.check
    def database() -> bool:
        return False

    assert [check.name for check in registry.checks] == ["database"]
    assert database() is False  # the function is returned unchanged
    registry.mark_started()
    assert registry.run("readiness").status.value == "fail"


@pytest.mark.parametrize(
    ("adapter", "app", "fix"),
    [
        (hp_wsgi, FastAPI(), "use healthprobe.asgi.HealthMiddleware"),
        (hp_wsgi, Starlette(), "use healthprobe.asgi.HealthMiddleware"),
        (hp_asgi, Flask(__name__), "use healthprobe.wsgi.HealthMiddleware"),
        (hp_asgi, wsgi_app, "use healthprobe.wsgi.HealthMiddleware"),
    ],
    ids=["wsgi-fastapi", "wsgi-starlette", "asgi-flask", "asgi-wsgi-function"],
)
def test_an_app_of_the_other_protocol_is_refused(adapter: Any, app: Any, fix: str) -> None:
    with pytest.raises(TypeError, match=fix):
        adapter.HealthMiddleware(app, HealthRegistry())


@pytest.mark.parametrize(
    ("adapter", "app"),
    [
        (hp_asgi, FastAPI()),
        (hp_asgi, Starlette(routes=[Route("/", hello)])),
        (hp_wsgi, Flask(__name__)),
        (hp_wsgi, wsgi_app),
        (hp_wsgi, DispatcherMiddleware(wsgi_app)),
    ],
)
def test_apps_of_the_right_protocol_are_accepted(adapter: Any, app: Any) -> None:
    adapter.HealthMiddleware(app, HealthRegistry())


@pytest.mark.parametrize("adapter", [hp_asgi, hp_wsgi], ids=["asgi", "wsgi"])
@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ("no registry", TypeError, "registry must be a HealthRegistry"),
        ("swapped", TypeError, "the app comes first"),
        ("not callable", TypeError, "app must be an"),
        ("metrics path", ValueError, "must start with '/'"),
        ("shutdown", TypeError, "shutdown must be a GracefulShutdown"),
        ("expose_output", TypeError, "expose_output must be True or False"),
        ("paths", TypeError, "paths must be a mapping"),
    ],
)
def test_bad_arguments_fail_at_construction(adapter: Any, arguments: str, error: type, message: str) -> None:
    app = FastAPI() if adapter is hp_asgi else wsgi_app
    registry = HealthRegistry()
    calls = {
        "no registry": lambda: adapter.HealthMiddleware(app, None),
        "swapped": lambda: adapter.HealthMiddleware(registry, app),
        "not callable": lambda: adapter.HealthMiddleware("app", registry),
        "metrics path": lambda: adapter.HealthMiddleware(app, registry, metrics_path="metrics"),
        "shutdown": lambda: adapter.HealthMiddleware(app, registry, shutdown="x"),
        "expose_output": lambda: adapter.HealthMiddleware(app, registry, expose_output="yes"),
        "paths": lambda: adapter.HealthMiddleware(app, registry, paths=["/livez"]),
    }
    with pytest.raises(error, match=message):
        calls[arguments]()


def test_a_coordinator_given_something_else_than_a_registry() -> None:
    with pytest.raises(TypeError, match="HealthRegistry"):
        GracefulShutdown("x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="HealthRegistry"):
        HealthEndpoints(None)  # type: ignore[arg-type]


def test_the_same_coordinator_wrapped_twice_is_refused() -> None:
    registry = HealthRegistry()
    shutdown = GracefulShutdown(registry)
    inner = hp_wsgi.HealthMiddleware(wsgi_app, registry, shutdown=shutdown)
    with pytest.raises(ValueError, match="wrap it once"):
        hp_wsgi.HealthMiddleware(inner, registry, shutdown=shutdown)
    inner_asgi = hp_asgi.HealthMiddleware(FastAPI(), registry, shutdown=shutdown)
    with pytest.raises(ValueError, match="wrap it once"):
        hp_asgi.HealthMiddleware(inner_asgi, registry, shutdown=shutdown)
    # Two apps, each wrapped once, under one dispatcher: each request passes one of them.
    both = DispatcherMiddleware(
        hp_wsgi.HealthMiddleware(wsgi_app, registry, shutdown=shutdown),
        {"/other": hp_wsgi.HealthMiddleware(wsgi_app, registry, shutdown=shutdown)},
    )
    with httpx.Client(transport=httpx.WSGITransport(app=both), base_url="http://x") as client:  # type: ignore[arg-type]
        assert client.get("/other/x").text == "hello"
    assert shutdown.in_flight == 0
