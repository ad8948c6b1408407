"""Applications served by real servers in tests/test_prometheus.py.

Each process has one registry with a check ``flaky`` whose outcome a control request
switches (in the process that answers it), and ``database`` that always passes.

* ``asgi_app`` (uvicorn): Starlette app behind ``HealthMiddleware(..., metrics=True)``, with
  prometheus-client's own ``make_asgi_app`` of a :class:`HealthCollector` mounted at ``/prom``.
* ``wsgi_app`` (gunicorn): raw WSGI app behind the WSGI ``HealthMiddleware``, serving metrics
  through :class:`PrometheusMetrics` with a request-counting shutdown view.
* ``plain_wsgi_app``: the same WSGI app behind ``HealthMiddleware(..., metrics=True)``, with
  no shutdown source.

Environment: ``APP_INTERVAL`` (seconds) runs ``flaky`` in the background at that interval.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from healthprobe import CheckResult, HealthRegistry, Status

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

registry = HealthRegistry()
state = {"fail": False}
_interval = os.environ.get("APP_INTERVAL")


def flaky() -> CheckResult:
    if state["fail"]:
        # The output carries a secret: it must never reach a metric label or body.
        raise ConnectionError("password=hunter2 rejected by 10.0.0.7")
    return CheckResult(Status.PASS)


registry.add_check("flaky", flaky, interval=float(_interval) if _interval else None, cache_ttl=0.0)
registry.add_check("database", lambda: True, cache_ttl=0.0)
registry.mark_started()


class RequestCounter:
    """A stand-in for the shutdown coordinator: counts application requests being served
    (in_flight; scrapes are left out) and reports a fixed phase (it satisfies healthprobe.prometheus.ShutdownView)."""

    phases = ("serving", "draining")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.phase = "serving"

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


counter = RequestCounter()


# -- ASGI ---------------------------------------------------------------------------------------


def _build_asgi() -> Any:
    from prometheus_client import CollectorRegistry, make_asgi_app
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from healthprobe.asgi import HealthMiddleware
    from healthprobe.prometheus import HealthCollector

    async def control(request: Request) -> PlainTextResponse:
        state["fail"] = request.path_params["what"] == "fail"
        await registry.run_async("readiness")
        return PlainTextResponse(str(os.getpid()))

    own = CollectorRegistry()
    own.register(HealthCollector(registry))
    app = Starlette(
        routes=[
            Route("/control/{what}", control, methods=["POST"]),
            Route("/", lambda request: PlainTextResponse("application")),
            Mount("/prom", make_asgi_app(own)),
        ]
    )
    return HealthMiddleware(app, registry, metrics=True)


# -- WSGI ---------------------------------------------------------------------------------------


def _wsgi_inner(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path in ("/control/fail", "/control/pass"):
        state["fail"] = path == "/control/fail"
        registry.run("readiness")
        body = str(os.getpid()).encode()
    elif path == "/control/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
        body = b"slept"
    else:
        body = b"application"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _build_wsgi() -> Any:
    from healthprobe.prometheus import PrometheusMetrics
    from healthprobe.wsgi import HealthMiddleware

    metrics = PrometheusMetrics(registry, shutdown=counter, phases=RequestCounter.phases)
    inner = HealthMiddleware(_wsgi_inner, registry, metrics=metrics)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/metrics":  # count application requests only
            yield from inner(environ, start_response)
            return
        counter.enter()
        try:
            yield from inner(environ, start_response)
        finally:
            counter.leave()

    registry.run("readiness")  # every worker has a result before its first request
    return app


def _build_plain_wsgi() -> Any:
    from healthprobe.wsgi import HealthMiddleware

    registry.run("readiness")
    return HealthMiddleware(_wsgi_inner, registry, metrics=True)


def __getattr__(name: str) -> Any:
    # Build only the app a server asks for, so a WSGI server never imports Starlette.
    if name == "asgi_app":
        return _build_asgi()
    if name == "wsgi_app":
        return _build_wsgi()
    if name == "plain_wsgi_app":
        return _build_plain_wsgi()
    raise AttributeError(name)
