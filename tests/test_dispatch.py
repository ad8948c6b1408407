"""The adapters' request dispatch on the path every application request takes."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import httpx

from healthprobe import GracefulShutdown, HealthRegistry
from healthprobe.wsgi import HealthMiddleware


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
