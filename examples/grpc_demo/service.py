"""The grpc_demo: settings, the key-value service, the health registry and the server.

:func:`main` is ``python -m examples.grpc_demo``; :func:`serve` runs one demo on the running
asyncio event loop (the tests and other programs call it with :class:`Settings` of their own).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc.aio
import psycopg
from psycopg_pool import AsyncConnectionPool

import healthprobe.servers.grpc
from examples.settings import optional_seconds, seconds
from healthprobe import CheckResult, HealthRegistry, Probe, Status, checks
from healthprobe.grpc import AioInFlightInterceptor, add_to_server
from healthprobe.shutdown import GracefulShutdown

from . import keyvalue_pb2, keyvalue_pb2_grpc

logger = logging.getLogger("grpc_demo")

DEFAULT_HOST = "0.0.0.0"
#: The port gRPC examples use; ``GRPC_PORT`` overrides it.
DEFAULT_GRPC_PORT = 50051
DEFAULT_DATABASE_URL = "postgresql://app@localhost:5432/app"
#: Exit code for bad settings or an address or port that cannot be bound (as node_demo's).
EXIT_SETTINGS = 2
#: Longest wait ``Slow`` accepts, in seconds (node_demo's ``/slow`` takes as long).
SLOW_MAX_SECONDS = 30.0
#: The table the values are kept in, created when the pool opens its first connection.
TABLE = "grpc_demo_kv"
#: Size limits of a key and a value, in characters.
MAX_KEY = 256
MAX_VALUE = 65536
#: Seconds an RPC waits at most for a database connection (less when its deadline is sooner).
CONNECTION_WAIT = 2.0
#: Longest tolerated lag of the event loop, in seconds, before liveness fails.
MAX_LOOP_LAG = 2.0

CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key text PRIMARY KEY,
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""
#: ``xmax = 0`` only for a row this statement inserted (PostgreSQL sets it on the row an
#: ``ON CONFLICT DO UPDATE`` replaced): whether the key was new, in one atomic statement.
UPSERT = f"""
INSERT INTO {TABLE} (key, value) VALUES (%s, %s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
RETURNING (xmax = 0) AS created
"""
SELECT = f"SELECT value FROM {TABLE} WHERE key = %s"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The demo's settings, read from the environment: those of node_demo, with the same
    names and defaults, save for the port (``GRPC_PORT``), plus the database's URL.

    Attributes:
        host: address to listen on (``HOST``, default ``0.0.0.0``).
        port: TCP port of the gRPC server (``GRPC_PORT``, default 50051; 0 picks a free one).
        database_url: the PostgreSQL database holding the values (``DATABASE_URL``, a libpq
            URL or ``key=value`` string; default ``postgresql://app@localhost:5432/app``).
        startup_delay: seconds the ``warmup`` startup check keeps failing after start
            (``STARTUP_DELAY``, default 0).
        shutdown_delay: seconds to keep serving after SIGTERM while readiness answers
            ``NOT_SERVING`` (``SHUTDOWN_DELAY``); ``None`` (unset) leaves it to
            :class:`GracefulShutdown`: 5 s when ``KUBERNETES_SERVICE_HOST`` is set (inside a
            pod), else 0.
        drain_timeout: bound in seconds on waiting for RPCs in flight once the server stops
            accepting (``DRAIN_TIMEOUT``, default 20).
        hook_timeout: bound in seconds on each cleanup hook (``HOOK_TIMEOUT``, default 5).
        grace_period: the pod's ``terminationGracePeriodSeconds`` (``GRACE_PERIOD``, default
            30); a warning is logged at start when the shutdown can take longer.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_GRPC_PORT
    database_url: str = DEFAULT_DATABASE_URL
    startup_delay: float = 0.0
    shutdown_delay: float | None = None
    drain_timeout: float = 20.0
    hook_timeout: float = 5.0
    grace_period: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``HOST``, ``GRPC_PORT``, ``DATABASE_URL``, ``STARTUP_DELAY``,
        ``SHUTDOWN_DELAY``, ``DRAIN_TIMEOUT``, ``HOOK_TIMEOUT`` and ``GRACE_PERIOD`` from
        ``environ`` (default ``os.environ``); an empty value counts as unset.

        Raises:
            ValueError: with a one-line reason when a value is malformed.
        """
        env = os.environ if environ is None else environ
        raw_port = env.get("GRPC_PORT", "").strip() or str(DEFAULT_GRPC_PORT)
        if not raw_port.isdigit() or int(raw_port) > 65535:
            raise ValueError(f"GRPC_PORT must be a TCP port number from 0 to 65535, got {raw_port!r}")
        return cls(
            host=env.get("HOST", "").strip() or DEFAULT_HOST,
            port=int(raw_port),
            database_url=env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL,
            startup_delay=seconds(env, "STARTUP_DELAY", 0.0),
            shutdown_delay=optional_seconds(env, "SHUTDOWN_DELAY"),
            drain_timeout=seconds(env, "DRAIN_TIMEOUT", cls.drain_timeout),
            hook_timeout=seconds(env, "HOOK_TIMEOUT", cls.hook_timeout),
            grace_period=seconds(env, "GRACE_PERIOD", cls.grace_period),
        )

    @property
    def address(self) -> str:
        """``HOST:PORT`` as gRPC takes it (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


async def create_table(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's ``configure`` step, for each new connection: create :data:`TABLE` unless
    it exists, under a transaction-scoped advisory lock (two ``CREATE TABLE IF NOT EXISTS``
    at once can both try to create it)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (TABLE,))
        await conn.execute(CREATE_TABLE)


def open_pool(database_url: str) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    """The connection pool of the service and of its readiness check, not opened yet.

    Each connection is checked before it is lent (a server restart would otherwise leave
    broken ones in the pool), and has the table it needs (:func:`create_table`).
    """
    return AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=4,
        open=False,
        kwargs={"autocommit": True, "connect_timeout": 2},
        configure=create_table,
        check=AsyncConnectionPool.check_connection,
        name="grpc-demo",
    )


class KeyValueService(keyvalue_pb2_grpc.KeyValueServicer):
    """``grpcdemo.v1.KeyValue`` (``keyvalue.proto``), kept in PostgreSQL through ``pool``."""

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]) -> None:
        self.pool = pool

    async def Put(self, request: keyvalue_pb2.PutRequest, context: grpc.aio.ServicerContext) -> Any:
        await _check_text(context, "key", request.key, MAX_KEY, empty=False)
        await _check_text(context, "value", request.value, MAX_VALUE, empty=True)
        async with self._connection(context) as conn:
            cursor = await conn.execute(UPSERT, (request.key, request.value))
            row = await cursor.fetchone()
        return keyvalue_pb2.PutResponse(created=bool(row and row[0]))

    async def Get(self, request: keyvalue_pb2.GetRequest, context: grpc.aio.ServicerContext) -> Any:
        await _check_text(context, "key", request.key, MAX_KEY, empty=False)
        async with self._connection(context) as conn:
            cursor = await conn.execute(SELECT, (request.key,))
            row = await cursor.fetchone()
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no value under this key")
        return keyvalue_pb2.GetResponse(value=row[0])

    async def Slow(self, request: keyvalue_pb2.SlowRequest, context: grpc.aio.ServicerContext) -> Any:
        wait = request.seconds
        if not math.isfinite(wait) or not 0 <= wait <= SLOW_MAX_SECONDS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"seconds must be a number from 0 to {SLOW_MAX_SECONDS:g}"
            )
        await asyncio.sleep(wait)
        return keyvalue_pb2.SlowResponse(pid=os.getpid())

    @asynccontextmanager
    async def _connection(self, context: grpc.aio.ServicerContext) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection of the pool, within the RPC's deadline; ``UNAVAILABLE`` (a client
        retries it elsewhere) when none can be had or the database fails under it."""
        remaining = context.time_remaining()
        wait = CONNECTION_WAIT if remaining is None else max(0.0, min(CONNECTION_WAIT, remaining))
        try:
            async with self.pool.connection(timeout=wait) as conn:
                yield conn
        except psycopg.OperationalError as exc:  # the pool's timeout, a lost connection
            logger.warning("database unavailable: %s", " ".join(str(exc).split()))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable")


async def _check_text(context: grpc.aio.ServicerContext, name: str, text: str, limit: int, *, empty: bool) -> None:
    """``INVALID_ARGUMENT`` for a text PostgreSQL cannot store (a NUL character), an empty
    one where it is not allowed, or one over ``limit`` characters."""
    if not empty and not text:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name} must not be empty")
    if len(text) > limit:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name} must be at most {limit} characters")
    if "\x00" in text:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name} must not contain NUL characters")


class Demo:
    """The state of one demo process.

    Args:
        settings: the :class:`Settings` to run with.

    Attributes:
        registry: the :class:`HealthRegistry`: ``warmup`` (startup: ``STARTUP_DELAY``
            seconds have passed since :meth:`start`), ``event-loop`` (liveness: the event
            loop is not blocked for more than :data:`MAX_LOOP_LAG` seconds) and
            ``postgres`` (readiness: a connection of the pool runs ``SELECT 1``).
        pool: the connection pool of the service and of its readiness check (opened by
            :meth:`start`).
        coordinator: the :class:`GracefulShutdown` of this process, whose one cleanup hook,
            ``close_pool``, closes the pool once the RPCs in flight have ended.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = open_pool(settings.database_url)
        self.lag = checks.event_loop_lag(MAX_LOOP_LAG)
        self.registry = HealthRegistry()
        self.registry.add_check("warmup", self._warmup, probes=(Probe.STARTUP,), cache_ttl=0)
        self.registry.add_check("event-loop", self.lag, probes=(Probe.LIVENESS,))
        self.registry.add_check("postgres", checks.postgres(self.pool), probes=(Probe.READINESS,))
        self.coordinator = GracefulShutdown(
            self.registry,
            delay=settings.shutdown_delay,
            drain_timeout=settings.drain_timeout,
            hook_timeout=settings.hook_timeout,
            grace_period=settings.grace_period,
        )
        self.coordinator.add_hook(self.close_pool)
        self._started_at: float | None = None

    def _warmup(self) -> CheckResult:
        if self._started_at is None:
            return CheckResult(Status.FAIL, output="not started")
        remaining = self.settings.startup_delay - (time.monotonic() - self._started_at)
        if remaining > 0:
            return CheckResult(Status.FAIL, output="warming up", observed_value=round(remaining, 3), observed_unit="s")
        return CheckResult(Status.PASS)

    async def start(self) -> None:
        """On the serving event loop: open the pool (without waiting for the database,
        which readiness reports), start the event-loop sampler and the warm-up clock."""
        await self.pool.open(wait=False)
        self.lag.start()
        self._started_at = time.monotonic()

    async def close_pool(self) -> None:
        """The cleanup hook: close the pool, once the RPCs in flight have ended."""
        await self.pool.close()
        self.lag.stop()
        logger.info("closed the database pool")

    def create_server(self) -> grpc.aio.Server:
        """The gRPC server: healthprobe's health servicer and the key-value service, with
        the interceptor that counts RPCs in flight for the coordinator; no port yet.

        ``grpc.so_reuseport`` is off: gRPC sets ``SO_REUSEPORT`` on Linux by default, and a
        second demo on the same port would then share its connections instead of failing.
        """
        server = grpc.aio.server(
            interceptors=[AioInFlightInterceptor(self.coordinator)], options=[("grpc.so_reuseport", 0)]
        )
        add_to_server(server, self.registry)
        keyvalue_pb2_grpc.add_KeyValueServicer_to_server(KeyValueService(self.pool), server)
        return server


async def serve(settings: Settings) -> int:
    """Run the demo with ``settings`` on the running event loop until shutdown completes.

    Returns:
        The exit code: 0 after a clean shutdown (SIGTERM or SIGINT; a second signal, more
        than a second after the first, exits at once with ``128 + signal``), 2
        (:data:`EXIT_SETTINGS`) when the address cannot be bound, logged on one line.
    """
    demo = Demo(settings)
    server = demo.create_server()
    try:
        port = server.add_insecure_port(settings.address)
    except RuntimeError as exc:  # grpcio: "Failed to bind to address ..."
        logger.error("cannot listen on %s (HOST, GRPC_PORT): %s", settings.address, " ".join(str(exc).split()))
        return EXIT_SETTINGS
    await demo.start()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    services = "grpc.health.v1.Health, grpcdemo.v1.KeyValue"
    logger.info("serving gRPC on %s:%d (%s)  PID = %d", host, port, services, os.getpid())
    return await healthprobe.servers.grpc.serve_async(server, demo.coordinator)


def configure_logging() -> None:
    """Log to standard error at INFO, one line per event."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> int:
    """Entry point of ``python -m examples.grpc_demo``: read the settings and serve.

    Returns:
        2 (:data:`EXIT_SETTINGS`) on a malformed setting or an address that cannot be bound,
        each logged on one line; else the exit code of :func:`serve`.
    """
    configure_logging()
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        logger.error("%s", exc)
        return EXIT_SETTINGS
    return asyncio.run(serve(settings))
