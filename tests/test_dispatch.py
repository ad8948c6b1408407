"""The adapters' request dispatch on the path every application request takes."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import httpx

from healthprobe import GracefulShutdown, HealthRegistry
from healthprobe.wsgi import HealthMiddleware

from .support import asgi_call


class _Body:
    """A response iterable that records whether the server closed it."""

    def __init__(self, shutdown: GracefulShutdown) -> None:
        self.shutdown = shutdown
        self.closed = 0
        self.in_flight_while_iterating: list[int] = []

    def __iter__(self) -> Iterator[bytes]:
        self.in_flight_while_iterating.append(self.shutdown.in_flight)
        yield b"hello"

    def close(self) -> None:
        self.closed += 1


def test_wsgi_counts_a_request_until_the_server_closes_its_body_once() -> None:
    registry = HealthRegistry()
    registry.mark_started()
    shutdown = GracefulShutdown(registry, delay=0, signals=(signal.SIGUSR2,))
    body = _Body(shutdown)

    def app(environ: dict[str, Any], start_response: Any) -> _Body:
        start_response("200 OK", [("content-type", "text/plain")])
        return body

    middleware = HealthMiddleware(app, registry, shutdown=shutdown)
    try:
        with httpx.Client(transport=httpx.WSGITransport(app=middleware), base_url="http://t") as client:
            assert client.get("/page").text == "hello"
            assert client.get("/livez").text == "ok\n"  # probes are answered, not counted
        assert body.in_flight_while_iterating == [1]
        assert body.closed == 1
        assert shutdown.in_flight == 0

        iterable = middleware({"PATH_INFO": "/page", "REQUEST_METHOD": "GET"}, lambda *a: None)
        assert shutdown.in_flight == 1
        close = getattr(iterable, "close")  # noqa: B009 - PEP 3333 servers call close() like this
        close()
        close()  # a second close neither closes the body again nor counts the request twice
        assert body.closed == 2 and shutdown.in_flight == 0
    finally:
        shutdown.uninstall()


# -- ASGI --------------------------------------------------------------------------------------


async def _inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": scope["type"].encode()})


def test_asgi_answers_scopes_without_the_optional_keys_every_time() -> None:
    """root_path is optional in an ASGI HTTP scope; a server that also leaves out the query
    string or headers still gets answers, first and repeated, and never an exception."""
    from healthprobe.asgi import HealthMiddleware as AsgiMiddleware

    registry = HealthRegistry()
    registry.mark_started()
    app = AsgiMiddleware(_inner, registry)
    bare = {"type": "http", "method": "GET", "path": "/livez"}
    for _ in range(3):
        status, headers, body = asgi_call(app, dict(bare))
        assert (status, headers[b"content-type"], body) == (200, b"text/plain; charset=utf-8", b"ok\n")
    assert asgi_call(app, {**bare, "path": "/orders"})[0] == 299
    registry.set_live(False, "wedged")
    assert asgi_call(app, dict(bare))[0] == 503


def test_asgi_empty_path_is_the_root_and_websockets_pass() -> None:
    from healthprobe.asgi import HealthMiddleware as AsgiMiddleware

    registry = HealthRegistry()
    registry.mark_started()
    app = AsgiMiddleware(_inner, registry, paths={"/": "liveness"})
    scope = {"type": "http", "method": "GET", "path": "", "root_path": "", "query_string": b"", "headers": []}
    assert asgi_call(app, scope)[2] == b"ok\n"
    assert asgi_call(app, {**scope, "path": "/"})[2] == b"ok\n"
    assert asgi_call(app, {**scope, "path": "/other"})[0] == 299
    assert asgi_call(app, {**scope, "type": "websocket", "path": "/"}) == (299, {}, b"websocket")


def test_asgi_first_accept_line_decides_on_repeats_too() -> None:
    """With two Accept lines the first decides (the slow path's rule), also when the same
    request is answered again from what was remembered."""
    from healthprobe.asgi import HealthMiddleware as AsgiMiddleware

    registry = HealthRegistry()
    registry.mark_started()
    app = AsgiMiddleware(_inner, registry)
    scope = {"type": "http", "method": "GET", "path": "/livez", "root_path": "", "query_string": b""}
    json_first = [(b"host", b"t"), (b"accept", b"application/health+json"), (b"accept", b"text/plain")]
    text_first = [(b"host", b"t"), (b"accept", b"text/plain"), (b"accept", b"application/health+json")]
    for _ in range(3):
        for headers, kind in ((json_first, b"application/health+json"), (text_first, b"text/plain; charset=utf-8")):
            status, sent_headers, _body = asgi_call(app, {**scope, "headers": list(headers)})
            assert status == 200 and sent_headers[b"content-type"] == kind
