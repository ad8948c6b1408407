"""Answers reused between probes (HealthEndpoints.answers, .cached, .is_current): served again
only while nothing they show has changed, through both adapters."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from healthprobe import CheckResult, HealthEndpoints, HealthRegistry, Status
from healthprobe.asgi import HealthMiddleware as AsgiMiddleware
from healthprobe.http import Response
from healthprobe.wsgi import HealthMiddleware as WsgiMiddleware

from .support import started_registry


def _inner_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("204 No Content", [])
    return [b""]


def _get_wsgi(app: Any, url: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        return client.get(url, **kwargs)


async def _get_asgi(app: Any, url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.get(url, **kwargs)


def test_cached_answer_is_the_same_response_until_a_switch_changes() -> None:
    registry = started_registry()
    endpoints = HealthEndpoints(registry)
    first = endpoints.handle_sync("GET", "/livez", "", "*/*")
    assert first is not None and first.status == 200
    assert endpoints.cached("GET", "/livez", "", "*/*") is first
    assert endpoints.cached("HEAD", "/livez", "", "*/*") is None  # another request
    assert endpoints.cached("GET", "/livez", "", "application/json") is None
    registry.set_live(False, "wedged")
    assert endpoints.cached("GET", "/livez", "", "*/*") is None
    again = endpoints.handle_sync("GET", "/livez", "", "*/*")
    assert again is not None and again.status == 503


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.set_ready(False),
        lambda r: r.begin_drain(),
        lambda r: r.add_check("extra", lambda: False),
        lambda r: r.remove_check("db"),
    ],
    ids=["set_ready", "begin_drain", "add_check", "remove_check"],
)
def test_any_state_change_invalidates(change: Any) -> None:
    registry = started_registry()
    registry.add_check("db", lambda: True)
    endpoints = HealthEndpoints(registry)
    assert endpoints.handle_sync("GET", "/readyz", "", None) is not None
    assert endpoints.cached("GET", "/readyz", "", None) is not None
    change(registry)
    assert endpoints.cached("GET", "/readyz", "", None) is None


def test_check_runs_again_once_its_result_expires() -> None:
    registry = started_registry()
    calls: list[float] = []
    registry.add_check("db", lambda: calls.append(time.monotonic()), cache_ttl=0.2)
    app = WsgiMiddleware(_inner_wsgi, registry)
    for _ in range(20):
        assert _get_wsgi(app, "/readyz").status_code == 200
    assert len(calls) == 1
    time.sleep(0.3)
    assert _get_wsgi(app, "/readyz").status_code == 200
    assert len(calls) == 2


def test_uncached_check_is_never_served_from_an_old_answer() -> None:
    registry = started_registry()
    results = iter([True, False, True])
    registry.add_check("flaky", lambda: next(results), cache_ttl=0)
    app = WsgiMiddleware(_inner_wsgi, registry)
    assert [_get_wsgi(app, "/readyz").status_code for _ in range(3)] == [200, 503, 200]


def test_background_result_replaces_a_cached_answer() -> None:
    registry = started_registry()
    state = {"ok": True}
    registry.add_check("bg", lambda: state["ok"], interval=0.05, timeout=0.5)
    endpoints = HealthEndpoints(registry)
    deadline = time.monotonic() + 5
    try:
        while (response := endpoints.handle_sync("GET", "/readyz", "", None)) is None or response.status != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        state["ok"] = False
        while True:  # the background run replaces the result within a few intervals
            response = endpoints.cached("GET", "/readyz", "", None) or endpoints.handle_sync("GET", "/readyz", "", None)
            assert response is not None
            if response.status == 503:
                break
            assert time.monotonic() < deadline, "a cached answer outlived the background result it showed"
            time.sleep(0.02)
    finally:
        registry.remove_check("bg")  # ends the background loop, which would log into later tests
        registry.close()


def test_non_critical_failure_and_starting_are_not_reused() -> None:
    registry = HealthRegistry()
    endpoints = HealthEndpoints(registry)
    assert endpoints.handle_sync("GET", "/readyz", "", None) is not None  # starting: 503
    assert endpoints.cached("GET", "/readyz", "", None) is None
    registry.mark_started()
    registry.add_check("optional", lambda: CheckResult(Status.FAIL), critical=False)
    assert endpoints.handle_sync("GET", "/readyz", "", None) is not None
    assert endpoints.cached("GET", "/readyz", "", None) is None


def test_remembered_answers_are_bounded() -> None:
    endpoints = HealthEndpoints(started_registry())
    for index in range(1000):
        endpoints.handle_sync("GET", "/livez", "", f"text/plain;q=0.{index % 10}, x/{index}")
    assert 0 < len(endpoints.answers) <= 256


def test_answers_the_asgi_middleware_remembers_are_bounded_too() -> None:
    app = AsgiMiddleware(Starlette(), started_registry())

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            for index in range(300):
                assert (await client.get("/livez", headers={"accept": f"text/plain, x/{index}"})).status_code == 200

    asyncio.run(run())
    assert 0 < len(app.endpoints.answers) <= 256


def test_an_answer_is_current_until_what_it_shows_changes() -> None:
    """HealthEndpoints.is_current is the rule the adapters' fast paths write out."""
    registry = started_registry()
    registry.add_check("db", lambda: True, cache_ttl=60)
    endpoints = HealthEndpoints(registry)
    endpoints.handle_sync("GET", "/livez", "", None)
    endpoints.handle_sync("GET", "/readyz", "", None)
    livez, readyz = endpoints.answers[("GET", "/livez", "", None)], endpoints.answers[("GET", "/readyz", "", None)]
    assert livez.stamp is None and readyz.stamp is not None  # /livez shows no check result
    assert endpoints.is_current(livez) and endpoints.is_current(readyz)
    assert (readyz.status, readyz.status_line, readyz.body) == (200, "200 OK", b"ok\n")
    assert dict(readyz.raw_headers) == {k.encode(): v.encode() for k, v in readyz.headers}
    registry.set_live(True)  # a switch, even one that changes nothing shown
    assert not endpoints.is_current(livez) and not endpoints.is_current(readyz)


class _AppendHeader:
    """A raw ASGI middleware that appends a header to the list in each start message, in
    place, as ASGI allows a wrapping ``send`` to do."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-served-by", b"edge"))
            await send(message)

        await self.app(scope, receive, wrapped)


def test_asgi_cached_answers_keep_headers_intact_under_a_wrapping_middleware() -> None:
    """A reused answer must not collect the headers an outer middleware adds, request after
    request."""
    app = _AppendHeader(AsgiMiddleware(Starlette(), started_registry()))

    async def run() -> list[httpx.Response]:
        return [await _get_asgi(app, "/livez") for _ in range(5)]

    answers = asyncio.run(run())
    assert {a.status_code for a in answers} == {200}
    assert all(a.text == "ok\n" for a in answers)
    assert [a.headers.get_list("x-served-by") for a in answers] == [["edge"]] * 5


def test_head_repeats_get_length_and_wsgi_status_line() -> None:
    app = WsgiMiddleware(_inner_wsgi, started_registry())
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        for _ in range(2):  # first run, then the reused answer
            head = client.head("/livez")
            assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "3"
        assert client.get("/livez").text == "ok\n"
        assert client.get("/livez?format=json").headers["content-type"] == "application/health+json"
        assert client.post("/livez").status_code == 405


def _requests() -> list[tuple[str, str, dict[str, str]]]:
    """Requests that differ in exactly what a remembered answer is keyed on."""
    return [
        ("GET", "/livez", {}),
        ("HEAD", "/livez", {}),
        ("GET", "/livez", {"accept": "application/health+json"}),
        ("GET", "/livez?verbose", {}),
        ("GET", "/livez?format=json", {"accept": "text/plain"}),
        ("GET", "/readyz", {"accept": "*/*"}),
        ("POST", "/livez", {}),
    ]


def _reference(registry: HealthRegistry, method: str, url: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
    """The answer a fresh set of endpoints (nothing remembered) gives."""
    path, _, query = url.partition("?")
    response = HealthEndpoints(registry).handle_sync(method, path, query, headers.get("accept"))
    assert response is not None
    return response.status, response.body, dict(response.headers)["content-type"]


def test_both_middlewares_answer_repeats_like_a_fresh_run() -> None:
    """Repeated requests answered from what the middleware remembered are, request by
    request, the answer a fresh run gives, also after a switch changes it."""
    registry = started_registry()
    asgi = AsgiMiddleware(Starlette(), registry)
    wsgi = WsgiMiddleware(_inner_wsgi, registry)
    # Count the requests that reach the endpoints: a repeat answered from what the ASGI
    # middleware remembered never does.
    reached: list[str] = []
    cached = asgi.endpoints.cached

    def counting_cached(method: str, path: str, query: str, accept: str | None, key: Any = None) -> Response | None:
        reached.append(path)
        return cached(method, path, query, accept, key)

    asgi.endpoints.cached = counting_cached  # type: ignore[method-assign]

    async def asgi_answers() -> list[tuple[int, bytes, str]]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://t") as client:
            answers = []
            for method, url, headers in _requests():
                r = await client.request(method, url, headers=headers)
                answers.append((r.status_code, r.content, r.headers["content-type"]))
            return answers

    def wsgi_answers() -> list[tuple[int, bytes, str]]:
        with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://t") as client:
            answers = []
            for method, url, headers in _requests():
                r = client.request(method, url, headers=headers)
                answers.append((r.status_code, r.content, r.headers["content-type"]))
            return answers

    for live in (True, True, False, False, True, True):
        registry.set_live(live, None if live else "wedged")
        expected = [_reference(registry, method, url, headers) for method, url, headers in _requests()]
        assert asyncio.run(asgi_answers()) == expected
        reached.clear()
        assert asyncio.run(asgi_answers()) == expected  # the same requests again
        # Only the 405 answer (never remembered) reached the endpoints the second time.
        assert reached == ["/livez"]
        assert wsgi_answers() == expected
        assert wsgi_answers() == expected


def test_asgi_root_path_repeats_answer_below_the_root() -> None:
    registry = started_registry()
    app = AsgiMiddleware(Starlette(), registry)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answers = [await client.get("/api/livez") for _ in range(3)]
            registry.set_live(False, "wedged")
            answers.append(await client.get("/api/livez"))
            return answers

    answers = asyncio.run(run())
    assert [a.status_code for a in answers] == [200, 200, 200, 503]
