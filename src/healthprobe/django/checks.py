# mypy: disable-error-code="import-untyped"
"""Checks of Django's own services, through Django's APIs: a database per alias, a cache per
alias, and the migrations not yet applied.

``HEALTHPROBE["DATABASES"]``, ``["CACHES"]`` and ``["MIGRATIONS"]`` register them; they can
also be registered by hand::

    from healthprobe.django import checks, registry

    registry().add_check("database-replica", checks.database("replica"))

Each is a sync check: healthprobe runs it in a thread of its own, never on an event loop, so
Django's ORM (which refuses to run on one) works under ASGI too. Django's database
connections belong to the thread that opened them: the checks close the connection they used
at the end of every run, so a probe never leaves a connection open, however often it runs.
Failures carry the exception's type and first line with the database's password withheld
(``healthprobe.checks.redact``); probe bodies withhold them further unless
``EXPOSE_OUTPUT`` is on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import typing
import uuid

from .. import _types
from ..checks import _common

if typing.TYPE_CHECKING:
    from typing import Any

    from .._types import CheckResult

__all__ = ["CACHE_KEY_EXPIRY", "CacheCheck", "DatabaseCheck", "MigrationsCheck", "cache", "database", "migrations"]

#: Seconds a cache check's key lives in the cache, should its delete not happen.
CACHE_KEY_EXPIRY = 10


def _database_secrets(settings_dict: Any) -> list[str]:
    secrets: list[str] = []
    if not isinstance(settings_dict, dict):
        return secrets
    password = settings_dict.get("PASSWORD")
    if password:
        secrets.append(str(password))
    options = settings_dict.get("OPTIONS")
    if isinstance(options, dict):
        for key in ("password", "passwd", "sslpassword"):
            if options.get(key):
                secrets.append(str(options[key]))
    return secrets


def _cache_secrets(alias: str) -> list[str]:
    """The passwords in the ``LOCATION`` URLs of a cache (``redis://:password@host``)."""
    from django.conf import settings

    location = (getattr(settings, "CACHES", None) or {}).get(alias, {}).get("LOCATION")
    locations = [location] if isinstance(location, str) else location if isinstance(location, list) else []
    return [secret for item in locations if isinstance(item, str) for secret in _common.url_secrets(item)]


def _close(connection: Any) -> None:
    """Close a connection of this thread, unless it is inside a transaction (the check was
    called by hand from code that holds one: that transaction is not ours to end)."""
    if connection.in_atomic_block:
        return
    with contextlib.suppress(Exception):  # a broken connection is dropped all the same
        connection.close()


class DatabaseCheck:
    """``SELECT 1`` on ``django.db.connections[alias]``, through a connection opened and
    closed by each run; see :func:`database`."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias

    def __repr__(self) -> str:
        return f"<django database check {self.alias!r}>"

    def __call__(self) -> CheckResult:
        from django.db import connections

        connection = connections[self.alias]
        start = time.monotonic()
        try:
            with connection.cursor() as cursor:
                # " FROM DUAL" on Oracle, nothing elsewhere.
                cursor.execute("SELECT 1" + connection.features.bare_select_suffix)
                row = cursor.fetchone()
        except Exception as exc:
            return _common.failure(exc, _database_secrets(connection.settings_dict))
        finally:
            _close(connection)
        if not row or row[0] != 1:
            return _types.CheckResult(_types.Status.FAIL, output="SELECT 1 did not answer 1")
        return _types.CheckResult(_types.Status.PASS, observed_value=_common.elapsed_since(start), observed_unit="s")


class CacheCheck:
    """A set, a get and a delete of a key of its own on ``django.core.cache.caches[alias]``;
    see :func:`cache`."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self._prefix = f"healthprobe:{socket.gethostname()}:{os.getpid()}"

    def __repr__(self) -> str:
        return f"<django cache check {self.alias!r}>"

    def __call__(self) -> CheckResult:
        from django.core.cache import caches

        cache = caches[self.alias]
        key = f"{self._prefix}:{uuid.uuid4().hex}"  # one key per run: no race between processes
        value = uuid.uuid4().hex
        start = time.monotonic()
        try:
            cache.set(key, value, timeout=CACHE_KEY_EXPIRY)
            read = cache.get(key)
            cache.delete(key)
        except Exception as exc:
            return _common.failure(exc, _cache_secrets(self.alias))
        finally:
            with contextlib.suppress(Exception):
                cache.close()  # what Django does at the end of a request
        if read != value:
            return _types.CheckResult(_types.Status.FAIL, output="the value read back is not the one written")
        return _types.CheckResult(_types.Status.PASS, observed_value=_common.elapsed_since(start), observed_unit="s")


class MigrationsCheck:
    """Fails while ``manage.py migrate`` has migrations to apply to ``alias``; see
    :func:`migrations`."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias

    def __repr__(self) -> str:
        return f"<django migrations check {self.alias!r}>"

    def __call__(self) -> CheckResult:
        from django.db import connections
        from django.db.migrations.executor import MigrationExecutor

        connection = connections[self.alias]
        try:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception as exc:
            return _common.failure(exc, _database_secrets(connection.settings_dict))
        finally:
            _close(connection)
        count = len(plan)
        if count:
            return _types.CheckResult(
                _types.Status.FAIL,
                output=f"{count} unapplied migration{'s' if count != 1 else ''}: run manage.py migrate",
                observed_value=count,
                observed_unit="migrations",
            )
        return _types.CheckResult(_types.Status.PASS, observed_value=0, observed_unit="migrations")


def database(alias: str = "default") -> DatabaseCheck:
    """A readiness check of one of Django's databases: ``SELECT 1`` (``SELECT 1 FROM DUAL``
    on Oracle) through ``connections[alias].cursor()``.

    Each run opens the connection, queries and closes it, in the check's thread: Django's
    connections belong to the thread that opened them, and a probe answered before Django
    (``healthprobe.django.get_wsgi_application``) never reaches Django's
    ``request_finished``, which closes a request's connections. Give the database a connect
    timeout below the check's deadline (``"OPTIONS": {"connect_timeout": 2}`` on
    PostgreSQL), so that a database that does not answer costs one run of the check, not a
    thread held for the operating system's TCP timeout.

    Args:
        alias: a key of ``settings.DATABASES``.

    Returns:
        A :class:`DatabaseCheck`: ``pass`` with the round trip (connect included) in seconds
        as observed value, or ``fail`` with the exception's type and first line, the
        database's password withheld. An unknown alias fails each run
        (``ConnectionDoesNotExist``); the system check catches it first.
    """
    return DatabaseCheck(alias)


def cache(alias: str = "default") -> CacheCheck:
    """A readiness check of one of Django's caches: sets a key of its own (host name, process
    id and a random part) with a short expiry (:data:`CACHE_KEY_EXPIRY`, 10 s), reads it back
    and deletes it, through ``caches[alias]``; then closes the cache's connection, as Django
    does at the end of a request.

    Args:
        alias: a key of ``settings.CACHES``.

    Returns:
        A :class:`CacheCheck`: ``pass`` with the round trip in seconds, or ``fail`` when the
        cache raises or answers another value (``DummyCache`` always does).
    """
    return CacheCheck(alias)


def migrations(alias: str = "default") -> MigrationsCheck:
    """A startup check that fails while migrations are unapplied on ``alias``: the plan of
    Django's ``MigrationExecutor`` to the leaf nodes of the migration graph (what
    ``manage.py migrate`` would apply) is not empty.

    The failure names the count (``3 unapplied migrations: run manage.py migrate``), never
    the migrations; the observed value is the count. The connection the run used is closed.

    Args:
        alias: a key of ``settings.DATABASES``.

    Returns:
        A :class:`MigrationsCheck`.
    """
    return MigrationsCheck(alias)
