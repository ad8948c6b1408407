"""PostgreSQL check with psycopg 3 (extra ``postgres``)."""

from __future__ import annotations

import time
import traceback
from typing import TYPE_CHECKING

import anyio

from .._extras import requires
from .._types import CheckResult, Status
from ._common import check_timeout, deadline, elapsed_since, failure, redact, url_secrets

if TYPE_CHECKING:
    from typing import Any

    from psycopg_pool import AsyncConnectionPool, ConnectionPool

#: ``application_name`` of the connections a DSN check opens (unless the DSN sets one), so
#: they can be told apart in ``pg_stat_activity``.
APPLICATION_NAME = "healthprobe"


def _dsn_secrets(conninfo: str, kwargs: dict[str, Any] | None = None) -> list[str]:
    secrets = url_secrets(conninfo)
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(conninfo, **(kwargs or {}))
    except Exception:
        params = dict(kwargs or {})
    for key in ("password", "sslpassword"):
        value = params.get(key)
        if value:
            secrets.append(str(value))
    return secrets


def _pool_secrets(pool: Any) -> list[str]:
    conninfo = pool.conninfo if isinstance(pool.conninfo, str) else ""
    kwargs = pool.kwargs if isinstance(pool.kwargs, dict) else None
    return _dsn_secrets(conninfo, kwargs)


class _PostgresBase:
    def __init__(self, query: str, timeout: float | None, secrets: list[str], target: str) -> None:
        self.query = query
        self.timeout = check_timeout(timeout)
        self._secrets = secrets
        self._target = redact(target, secrets)

    def __repr__(self) -> str:
        return f"<postgres check {self._target}>"

    def _fail(self, exc: BaseException) -> CheckResult:
        return failure(exc, self._secrets, timeout=self.timeout)


class PostgresDsnCheck(_PostgresBase):
    """Async check opening one connection per run (closed after it); see :func:`postgres`."""

    def __init__(self, dsn: str, query: str, timeout: float | None) -> None:
        with requires("postgres", "healthprobe.checks.postgres()"):
            from psycopg.conninfo import conninfo_to_dict

        super().__init__(query, timeout, _dsn_secrets(dsn), dsn)
        self._dsn = dsn
        try:
            has_name = "application_name" in conninfo_to_dict(dsn)
        except Exception as exc:
            raise ValueError(f"invalid PostgreSQL DSN: {redact(str(exc), self._secrets)}") from None
        self._extra: dict[str, Any] = {} if has_name else {"application_name": APPLICATION_NAME}

    async def __call__(self) -> CheckResult:
        import psycopg

        start = time.monotonic()
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            with deadline(self.timeout):
                conn = await self._connect()
                await conn.execute(self.query)
        except Exception as exc:
            return self._fail(exc)
        finally:
            if conn is not None:
                with anyio.CancelScope(shield=True):
                    await conn.close()
        return CheckResult(Status.PASS, observed_value=elapsed_since(start), observed_unit="s")

    async def _connect(self) -> Any:
        import psycopg

        try:
            return await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, **self._extra)
        except BaseException as exc:
            # Cancelled (at the run's deadline) or failed mid-connect: the half-open libpq
            # connection lives in psycopg's finished frames, which the traceback keeps alive
            # until the garbage collector finds the cycle. Clearing them closes its socket now.
            traceback.clear_frames(exc.__traceback__)
            raise


class PostgresAsyncPoolCheck(_PostgresBase):
    """Async check borrowing a connection from an ``AsyncConnectionPool``; see :func:`postgres`."""

    def __init__(self, pool: AsyncConnectionPool[Any], query: str, timeout: float | None) -> None:
        super().__init__(query, timeout, _pool_secrets(pool), f"pool {pool.name}")
        self.pool = pool

    async def __call__(self) -> CheckResult:
        start = time.monotonic()
        try:
            with deadline(self.timeout):
                async with self.pool.connection(timeout=self.timeout) as conn:
                    await conn.execute(self.query)
        except Exception as exc:
            return self._fail(exc)
        return CheckResult(Status.PASS, observed_value=elapsed_since(start), observed_unit="s")


class PostgresPoolCheck(_PostgresBase):
    """Sync check borrowing a connection from a ``ConnectionPool``; see :func:`postgres`."""

    def __init__(self, pool: ConnectionPool[Any], query: str, timeout: float | None) -> None:
        super().__init__(query, timeout, _pool_secrets(pool), f"pool {pool.name}")
        self.pool = pool

    def __call__(self) -> CheckResult:
        start = time.monotonic()
        try:
            with self.pool.connection(timeout=self.timeout) as conn:
                conn.execute(self.query)
        except Exception as exc:
            return self._fail(exc)
        return CheckResult(Status.PASS, observed_value=elapsed_since(start), observed_unit="s")


def postgres(
    target: str | ConnectionPool[Any] | AsyncConnectionPool[Any],
    *,
    query: str = "SELECT 1",
    timeout: float | None = None,
) -> PostgresDsnCheck | PostgresAsyncPoolCheck | PostgresPoolCheck:
    """A check that runs ``query`` on PostgreSQL with psycopg 3 (extra ``postgres``).

    What it holds, by ``target``:

    * a **DSN** (``"postgresql://user:pw@host/db"`` or ``"host=... dbname=..."``): an async
      check that opens one connection per run (``application_name=healthprobe`` unless the
      DSN names one) and always closes it, also when the run is cancelled at its deadline;
    * a ``psycopg_pool.AsyncConnectionPool``: an async check borrowing one of the pool's
      connections, so it never holds more than the pool's ``max_size``. The pool belongs to
      the event loop that opened it: serve the probes from that loop (the ASGI adapter);
    * a ``psycopg_pool.ConnectionPool``: a sync check borrowing one of the pool's
      connections (for WSGI apps, workers and the standalone probe server).

    The DSN, its password and any ``password=`` parameter never appear in results, logs or
    the check's ``repr``.

    Args:
        target: a DSN string or a psycopg pool.
        query: the statement to run (``SELECT 1``).
        timeout: optional own deadline in seconds, for calling the check outside a registry
            (for a pool also the wait for a free connection; otherwise the pool's
            ``timeout`` applies to that wait). Inside a registry the check's registered
            ``timeout`` bounds each run; an async run is cancelled at that deadline.

    Returns:
        A check callable reporting the round-trip time (connect, if any, plus query) as its
        observed value in seconds (unit ``"s"``). A refused or silent server, a wrong
        database or user, or a pool timeout fails it with a redacted reason.

    Raises:
        ImportError: psycopg is not installed (``pip install 'healthprobe[postgres]'``).
        TypeError: ``target`` is neither a string nor a psycopg pool.
        ValueError: the DSN cannot be parsed, or ``timeout`` is not positive.
    """
    if isinstance(target, str):
        return PostgresDsnCheck(target, query, timeout)
    try:
        from psycopg_pool import AsyncConnectionPool, ConnectionPool
    except ImportError:  # pragma: no cover - psycopg-pool ships with the extra
        raise TypeError("postgres() got a pool but psycopg_pool is not installed") from None
    if isinstance(target, AsyncConnectionPool):
        return PostgresAsyncPoolCheck(target, query, timeout)
    if isinstance(target, ConnectionPool):
        return PostgresPoolCheck(target, query, timeout)
    raise TypeError(f"postgres() needs a DSN string or a psycopg_pool pool, got {type(target).__name__}")
