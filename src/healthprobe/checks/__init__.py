"""Built-in checks: one line each for a dependency, the host, or the process itself.

Each factory returns a check callable to register::

    from healthprobe import checks

    registry.add_check("database", checks.postgres(DSN), probes=["readiness"])
    registry.add_check("cache", checks.redis("redis://cache:6379/0"), critical=False)
    registry.add_check("disk", checks.disk("/var/lib/app", min_free_ratio=0.05))
    registry.add_check("worker", hb := checks.heartbeat(30.0), probes=["liveness"])

Dependency checks (``postgres``, ``redis``, ``sqlalchemy``, ``http``) import their driver
only when created, so each needs its own extra (``healthprobe[postgres]`` ...). Every check
reports a measured value (latency in seconds, free or resident bytes, lag in seconds) as the
result's ``observed_value``/``observed_unit``, and withholds connection strings, passwords
and tokens from every result, log line and ``repr``.

Use dependency checks for **readiness** only: liveness must not fail because a dependency is
down (a restart does not fix a database). ``heartbeat``, ``event_loop_lag`` and ``memory``
are the liveness checks.
"""

from ._common import redact
from ._liveness import EventLoopLag, Heartbeat, Waiting, event_loop_lag, heartbeat
from ._network import HttpCheck, TcpCheck, http, tcp
from ._postgres import PostgresAsyncPoolCheck, PostgresDsnCheck, PostgresPoolCheck, postgres
from ._redis import RedisAsyncClientCheck, RedisClientCheck, RedisUrlCheck, redis
from ._sqlalchemy import AsyncSqlAlchemyCheck, SqlAlchemyCheck, sqlalchemy
from ._system import DiskCheck, FileCheck, MemoryCheck, cgroup_memory_limit, disk, file, memory, rss_bytes

__all__ = [
    "AsyncSqlAlchemyCheck",
    "DiskCheck",
    "EventLoopLag",
    "FileCheck",
    "Heartbeat",
    "HttpCheck",
    "MemoryCheck",
    "PostgresAsyncPoolCheck",
    "PostgresDsnCheck",
    "PostgresPoolCheck",
    "RedisAsyncClientCheck",
    "RedisClientCheck",
    "RedisUrlCheck",
    "SqlAlchemyCheck",
    "TcpCheck",
    "Waiting",
    "cgroup_memory_limit",
    "disk",
    "event_loop_lag",
    "file",
    "heartbeat",
    "http",
    "memory",
    "postgres",
    "redact",
    "redis",
    "rss_bytes",
    "sqlalchemy",
    "tcp",
]
