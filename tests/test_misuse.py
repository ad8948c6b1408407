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


def test_a_coordinator_on_another_registry_is_refused() -> None:
    """Readiness would never fail at shutdown: the coordinator drains its own registry."""
    with pytest.raises(ValueError, match="same registry"):
        hp_asgi.HealthMiddleware(FastAPI(), HealthRegistry(), shutdown=GracefulShutdown(HealthRegistry()))


@pytest.mark.parametrize(("adapter", "cls"), [(hp_asgi, FastAPI), (hp_asgi, Starlette), (hp_wsgi, Flask)])
def test_an_application_class_instead_of_an_instance_is_refused(adapter: Any, cls: type) -> None:
    with pytest.raises(TypeError, match=rf"{cls.__name__} is a class: pass the application"):
        adapter.HealthMiddleware(cls, HealthRegistry())


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"failure_status": "503"}, TypeError, "failure_status must be an int"),
        ({"metrics_path": "/-/metrics"}, ValueError, "add metrics=True"),
        ({"metrics": True, "metrics_path": "/m?x"}, ValueError, "a path alone"),
    ],
)
def test_endpoint_options_of_the_wrong_kind(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        hp_wsgi.HealthMiddleware(wsgi_app, HealthRegistry(), **options)


def test_the_probe_server_refuses_a_port_given_as_the_host() -> None:
    from healthprobe import serve

    with pytest.raises(TypeError, match="port="):
        serve(HealthRegistry(), 8081)  # type: ignore[arg-type]


def test_swapped_check_arguments_and_hook_forms() -> None:
    registry = HealthRegistry()
    with pytest.raises(TypeError, match="the name comes first"):
        registry.add_check(lambda: True, "db")  # type: ignore[arg-type]
    shutdown = GracefulShutdown(registry)
    ran: list[str] = []

    @shutdown.hook()
    def called() -> None:
        ran.append("called")

    @shutdown.hook(name="named")
    def other() -> None:
        ran.append("named")

    with pytest.raises(TypeError, match="callable with no arguments"):
        shutdown.add_hook(lambda pool: None)
    shutdown.run_hooks()
    assert ran == ["named", "called"]


def test_an_in_process_client_installs_no_signal_handler() -> None:
    """A test that sends a request through httpx's ASGI transport inside asyncio.run() must not
    leave healthprobe's handlers behind (Ctrl-C would then no longer stop the test run):
    asyncio.run()'s own SIGINT handler is a program's, not a server's."""
    import subprocess
    import sys

    script = """
import asyncio, signal
import httpx
from fastapi import FastAPI
from healthprobe import HealthRegistry
from healthprobe.asgi import HealthMiddleware
from healthprobe.shutdown import GracefulShutdown

registry = HealthRegistry()
app = HealthMiddleware(FastAPI(), registry, shutdown=GracefulShutdown(registry))

async def main():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/readyz")).status_code == 200

asyncio.run(main())
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "True True", result.stdout + result.stderr
    assert "graceful shutdown is OFF" in result.stderr  # said once, in the test's output
