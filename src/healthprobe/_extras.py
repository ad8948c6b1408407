"""Optional dependencies (the package's extras) and the error a missing one raises.

Every import of an extra's package goes through :func:`requires`, so that a missing package
names the extra that brings it instead of leaving a bare ``No module named 'starlette'``::

    with requires("asgi", __name__):
        from starlette.types import ASGIApp

raises, when Starlette is not installed::

    ModuleNotFoundError: healthprobe.asgi needs starlette: pip install 'healthprobe[asgi]'

This module imports nothing beyond the standard library, so the core may import it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["EXTRAS", "MissingExtraError", "requires"]

#: For each extra whose packages healthprobe imports: their top-level modules and, for each,
#: the distribution (the name ``pip`` knows) that provides it. Keep in step with
#: ``[project.optional-dependencies]`` in pyproject.toml (``demo``, ``uvicorn-worker``,
#: ``bench`` and ``dev`` bring nothing that healthprobe imports).
EXTRAS: dict[str, dict[str, str]] = {
    "asgi": {"starlette": "starlette"},
    "wsgi": {"werkzeug": "werkzeug"},
    "prometheus": {"prometheus_client": "prometheus-client"},
    "otel": {"opentelemetry": "opentelemetry-api"},
    "postgres": {"psycopg": "psycopg", "psycopg_pool": "psycopg-pool"},
    "redis": {"redis": "redis"},
    "sqlalchemy": {"sqlalchemy": "sqlalchemy", "greenlet": "greenlet"},
    "http": {"httpx": "httpx"},
    "uvicorn": {"uvicorn": "uvicorn"},
    "hypercorn": {"hypercorn": "hypercorn"},
    "gunicorn": {"gunicorn": "gunicorn"},
    "waitress": {"waitress": "waitress"},
    "django": {"django": "django"},
    "flask": {"flask": "flask", "werkzeug": "werkzeug"},
    "fastapi": {"fastapi": "fastapi", "starlette": "starlette"},
    "celery": {"celery": "celery", "werkzeug": "werkzeug"},
    "grpc": {"grpc": "grpcio", "grpc_health": "grpcio-health-checking"},
    "kubelet": {"yaml": "pyyaml"},
    "testing": {"yaml": "pyyaml", "httpx": "httpx", "pytest": "pytest"},
    "webhook": {"httpx": "httpx"},
}


class MissingExtraError(ModuleNotFoundError):
    """A package of an extra is not installed.

    A :class:`ModuleNotFoundError` (so an :class:`ImportError`: ``except ImportError`` and
    ``except ModuleNotFoundError`` both catch it) whose message names the command that
    installs the extra. ``name`` is the missing top-level package (``"starlette"``); the
    original error is chained as ``__cause__``.

    Attributes:
        extra: the extra that provides the missing module (``"asgi"``, ``"prometheus"``...).
    """

    def __init__(self, message: str, *, extra: str, name: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra


class _Requires:
    """The context manager :func:`requires` returns; it never suppresses an exception."""

    def __init__(self, extra: str, what: str) -> None:
        if extra not in EXTRAS:
            raise ValueError(f"unknown extra {extra!r}")
        self.extra = extra
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not isinstance(exc, ModuleNotFoundError):
            return
        missing = _missing_package(exc.name, EXTRAS[self.extra])
        if missing is None:
            return
        original = exc
        if isinstance(exc, MissingExtraError) and isinstance(exc.__cause__, ModuleNotFoundError):
            original = exc.__cause__  # nested guards: chain the first error, not each message
        raise MissingExtraError(
            f"{self.what} needs {EXTRAS[self.extra][missing]}: pip install 'healthprobe[{self.extra}]'",
            extra=self.extra,
            name=missing,
        ) from original


def _missing_package(name: str | None, modules: dict[str, str]) -> str | None:
    """The top-level package of ``modules`` that a ``ModuleNotFoundError`` for ``name``
    means is missing, or ``None`` when it is about something else.

    Only the package itself counts: a missing submodule of an installed package (an older
    release) or a missing dependency of that package keeps its own error. A package blocked
    with ``sys.modules[package] = None`` counts as missing, though importing a submodule of
    it reports the submodule (``No module named 'werkzeug.serving'; 'werkzeug' is not a package``).
    """
    if name is None:
        return None
    if name in modules:
        return name
    top = name.partition(".")[0]
    if top in modules and top in sys.modules and sys.modules[top] is None:
        return top
    return None


def requires(extra: str, what: str) -> _Requires:
    """A context manager for the imports of an optional dependency: a
    :class:`ModuleNotFoundError` of one of ``extra``'s top-level packages raised inside it
    becomes a :class:`MissingExtraError` naming the fix, for example
    ``healthprobe.asgi needs starlette: pip install 'healthprobe[asgi]'``.

    Any other exception, including a missing module that the extra does not provide,
    passes through unchanged.

    Args:
        extra: the extra's name as in pyproject.toml (a key of :data:`EXTRAS`).
        what: what needs it, first in the message: a module's ``__name__`` for an import at
            module level, or the public function that imports it (``"healthprobe.checks.redis()"``).

    Returns:
        A context manager whose ``__exit__`` raises :class:`MissingExtraError` (chained from
        the original error; ``name`` is the missing package) and otherwise lets the
        exception propagate.

    Raises:
        ValueError: ``extra`` is not a key of :data:`EXTRAS`.
    """
    return _Requires(extra, what)
