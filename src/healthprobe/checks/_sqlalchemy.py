"""SQLAlchemy engine check (extra ``sqlalchemy``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .._extras import requires
from .._types import CheckResult, Status
from ._common import check_timeout, deadline, elapsed_since, failure

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine


def _engine_secrets(engine: Engine | AsyncEngine) -> list[str]:
    url = engine.url
    return [str(url.password)] if url.password else []


class _SqlAlchemyBase:
    def __init__(self, engine: Engine | AsyncEngine, query: str, timeout: float | None) -> None:
        from sqlalchemy import text

        self.statement = text(query)
        self.timeout = check_timeout(timeout)
        self._secrets = _engine_secrets(engine)
        # Neither user nor password: host and database name only.
        self._target = f"{engine.url.get_backend_name()}://{engine.url.host or ''}/{engine.url.database or ''}"

    def __repr__(self) -> str:
        return f"<sqlalchemy check {self._target}>"

    def _fail(self, exc: BaseException) -> CheckResult:
        return failure(exc, self._secrets, timeout=self.timeout)


class SqlAlchemyCheck(_SqlAlchemyBase):
    """Sync check on an ``Engine``; see :func:`sqlalchemy`."""

    def __init__(self, engine: Engine, query: str, timeout: float | None) -> None:
        super().__init__(engine, query, timeout)
        self.engine = engine

    def __call__(self) -> CheckResult:
        start = time.monotonic()
        try:
            with self.engine.connect() as conn:
                conn.execute(self.statement)
        except Exception as exc:
            return self._fail(exc)
        return CheckResult(Status.PASS, observed_value=elapsed_since(start), observed_unit="s")


class AsyncSqlAlchemyCheck(_SqlAlchemyBase):
    """Async check on an ``AsyncEngine``; see :func:`sqlalchemy`."""

    def __init__(self, engine: AsyncEngine, query: str, timeout: float | None) -> None:
        super().__init__(engine, query, timeout)
        self.engine = engine

    async def __call__(self) -> CheckResult:
        start = time.monotonic()
        try:
            with deadline(self.timeout):
                async with self.engine.connect() as conn:
                    await conn.execute(self.statement)
        except Exception as exc:
            return self._fail(exc)
        return CheckResult(Status.PASS, observed_value=elapsed_since(start), observed_unit="s")


def sqlalchemy(
    engine: Engine | AsyncEngine, *, query: str = "SELECT 1", timeout: float | None = None
) -> SqlAlchemyCheck | AsyncSqlAlchemyCheck:
    """A check that runs ``query`` on a connection from a SQLAlchemy engine's pool (extra
    ``sqlalchemy``), so it never holds more connections than the pool allows
    (``pool_size + max_overflow``) and returns its connection after every run.

    Args:
        engine: a ``sqlalchemy.engine.Engine`` (sync check, run in a thread of its own) or
            a ``sqlalchemy.ext.asyncio.AsyncEngine`` (async check; its pool belongs to the
            event loop it runs on, so serve the probes from that loop). Connect and query
            timeouts of a sync engine are the driver's (``connect_args``, e.g. psycopg's
            ``connect_timeout``); until the driver gives up, later probes fail at once
            rather than start a second thread.
        query: the statement to run (``SELECT 1``).
        timeout: optional own deadline in seconds for an async run, for calling the check
            outside a registry.

    Returns:
        A check callable reporting the round-trip time as its observed value in seconds
        (unit ``"s"``). The engine URL's password never appears in its results.

    Raises:
        ImportError: SQLAlchemy is not installed (``pip install 'healthprobe[sqlalchemy]'``).
        TypeError: ``engine`` is not an engine.
        ValueError: ``timeout`` is not positive.
    """
    with requires("sqlalchemy", "healthprobe.checks.sqlalchemy()"):
        from sqlalchemy.engine import Engine

    if isinstance(engine, Engine):
        return SqlAlchemyCheck(engine, query, timeout)
    with requires("sqlalchemy", "healthprobe.checks.sqlalchemy()"):
        from sqlalchemy.ext.asyncio import AsyncEngine  # needs greenlet (sqlalchemy[asyncio])

    if isinstance(engine, AsyncEngine):
        return AsyncSqlAlchemyCheck(engine, query, timeout)
    raise TypeError(f"sqlalchemy() needs an Engine or AsyncEngine, got {type(engine).__name__}")
