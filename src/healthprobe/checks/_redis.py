"""Redis check with redis-py (extra ``redis``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from .._extras import requires
from .._types import CheckResult, Status
from ._common import check_timeout, deadline, elapsed_since, failure, redact, url_secrets

if TYPE_CHECKING:
    from typing import Any

    import redis as redis_sync
    import redis.asyncio as redis_async


def _client_secrets(client: Any) -> list[str]:
    try:
        kwargs = client.connection_pool.connection_kwargs
    except AttributeError:
        return []
    return [str(kwargs[key]) for key in ("password",) if kwargs.get(key)]


def _pong(reply: object) -> CheckResult | None:
    if reply is True or reply in (b"PONG", "PONG"):
        return None
    return CheckResult(Status.FAIL, output="unexpected reply to PING")


class _RedisBase:
    def __init__(self, timeout: float | None, secrets: list[str], target: str) -> None:
        self.timeout = check_timeout(timeout)
        self._secrets = secrets
        self._target = redact(target, secrets)

    def __repr__(self) -> str:
        return f"<redis check {self._target}>"

    def _fail(self, exc: BaseException) -> CheckResult:
        return failure(exc, self._secrets, timeout=self.timeout)

    def _passed(self, start: float, reply: object) -> CheckResult:
        return _pong(reply) or CheckResult(Status.PASS, observed_value=elapsed_since(start), observed_unit="s")


class RedisUrlCheck(_RedisBase):
    """Async check with one connection per run (closed after it); see :func:`redis`."""

    def __init__(self, url: str, timeout: float | None) -> None:
        with requires("redis", "healthprobe.checks.redis()"):
            import redis.asyncio  # noqa: F401  (fail at registration when the extra is missing)

        super().__init__(timeout, url_secrets(url), url)
        self._url = url

    async def __call__(self) -> CheckResult:
        import redis.asyncio

        start = time.monotonic()
        client = redis.asyncio.Redis.from_url(self._url, single_connection_client=True)
        try:
            with deadline(self.timeout):
                reply = await client.ping()
        except Exception as exc:
            return self._fail(exc)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                await client.aclose()
        return self._passed(start, reply)


class RedisAsyncClientCheck(_RedisBase):
    """Async check using a ``redis.asyncio.Redis`` client; see :func:`redis`."""

    def __init__(self, client: redis_async.Redis, timeout: float | None) -> None:
        super().__init__(timeout, _client_secrets(client), "client")
        self.client = client

    async def __call__(self) -> CheckResult:
        start = time.monotonic()
        try:
            with deadline(self.timeout):
                reply = await self.client.ping()
        except Exception as exc:
            return self._fail(exc)
        return self._passed(start, reply)


class RedisClientCheck(_RedisBase):
    """Sync check using a ``redis.Redis`` client; see :func:`redis`."""

    def __init__(self, client: redis_sync.Redis, timeout: float | None) -> None:
        super().__init__(timeout, _client_secrets(client), "client")
        self.client = client

    def __call__(self) -> CheckResult:
        start = time.monotonic()
        try:
            reply = self.client.ping()
        except Exception as exc:
            return self._fail(exc)
        return self._passed(start, reply)


def redis(
    target: str | redis_sync.Redis | redis_async.Redis, *, timeout: float | None = None
) -> RedisUrlCheck | RedisAsyncClientCheck | RedisClientCheck:
    """A check that sends ``PING`` to Redis with redis-py (extra ``redis``).

    What it holds, by ``target``:

    * a **URL** (``"redis://:password@host:6379/0"``, ``rediss://``, ``unix://``): an async
      check that opens one connection per run and always closes it, also when the run is
      cancelled at its deadline;
    * a ``redis.asyncio.Redis`` client: an async check using the client's connection pool
      (never more connections than its ``max_connections``). The client belongs to the
      event loop it first ran on: serve the probes from that loop (the ASGI adapter);
    * a ``redis.Redis`` client: a sync check using the client's pool (for WSGI apps,
      workers and the standalone probe server). Give the client a ``socket_timeout`` so a
      silent server cannot hold the check's thread longer than that.

    Passwords and user names never appear in results, logs or the check's ``repr``.

    Args:
        target: a Redis URL or a redis-py client.
        timeout: optional own deadline in seconds for an async run, for calling the check
            outside a registry. Inside a registry the check's registered ``timeout`` bounds
            each run; an async run is cancelled at that deadline.

    Returns:
        A check callable reporting the round-trip time (connect, if any, plus ``PING``) as
        its observed value in seconds (unit ``"s"``). A refused or silent server, a failed
        ``AUTH``, a bad database number or an unexpected reply fails it.

    Raises:
        ImportError: redis-py is not installed (``pip install 'healthprobe[redis]'``).
        TypeError: ``target`` is neither a string nor a redis-py client.
        ValueError: ``timeout`` is not positive.
    """
    if isinstance(target, str):
        return RedisUrlCheck(target, timeout)
    with requires("redis", "healthprobe.checks.redis()"):
        import redis as redis_sync
        import redis.asyncio as redis_async

    if isinstance(target, redis_async.Redis):
        return RedisAsyncClientCheck(target, timeout)
    if isinstance(target, redis_sync.Redis):
        return RedisClientCheck(target, timeout)
    raise TypeError(f"redis() needs a URL or a redis-py client, got {type(target).__name__}")
