"""An ASGI app whose checks misbehave, served by uvicorn in test_check_failures.py.

Every check raises what no check should (``SystemExit``, ``KeyboardInterrupt``,
``GeneratorExit``, a bare ``BaseException`` subclass, an exception whose ``__str__`` raises)
or writes line breaks meant to forge lines of the text body. Their deadline is long
(:data:`TIMEOUT`), so an answer that waited for it is told apart from an immediate one by its
body alone. Output is exposed so the bodies show each failure's exception type.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from healthprobe import CheckResult, Status
from healthprobe.asgi import HealthMiddleware

from .apps import started_registry

#: Deadline of every check, in seconds: far longer than an immediate failure takes.
TIMEOUT = 10.0
FORGED = "line1\n[+]forged ok\nreadyz check passed"


class Fatal(BaseException):
    """Neither an Exception nor one of the interpreter's own BaseExceptions."""


class BrokenText(Exception):
    def __str__(self) -> str:
        raise ValueError("no text for you")


async def exits() -> None:
    raise SystemExit(3)


async def interrupted() -> None:
    raise KeyboardInterrupt


async def closed() -> None:
    raise GeneratorExit


async def fatal() -> None:
    raise Fatal("fatal")


async def broken_text() -> None:
    raise BrokenText


def broken_text_sync() -> None:
    raise BrokenText


def forged() -> CheckResult:
    return CheckResult(Status.FAIL, output=FORGED)


CHECKS = {
    "exits": exits,
    "interrupted": interrupted,
    "closed": closed,
    "fatal": fatal,
    "broken-text": broken_text,
    "broken-text-sync": broken_text_sync,
    "forged": forged,
}


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello\n")


def asgi_app() -> Any:
    """Factory (``uvicorn --factory tests.check_apps:asgi_app``)."""
    registry = started_registry(CHECKS, default_timeout=TIMEOUT, default_cache_ttl=0.0)
    return HealthMiddleware(Starlette(routes=[Route("/", hello)]), registry, expose_output=True)
