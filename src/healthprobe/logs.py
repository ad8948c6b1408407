"""Where healthprobe's log records appear, and access logs without the probes.

healthprobe logs on two loggers: ``healthprobe`` (check state changes, lifecycle changes)
and its child ``healthprobe.shutdown`` (the shutdown timeline, launch-path warnings). Their
records carry structured fields as attributes (``check``, ``status``, ``phase``,
``seconds``, ...; docs/logging.md lists them), which JSON handlers such as
python-json-logger and structlog's ``ProcessorFormatter`` pick up. No field ever holds
exception text or a check's output.

**Visible by default.** While logging is not configured for healthprobe (no handler on
``healthprobe``, on a logger below it, or on the root logger), its records go through the
error logger of the server that serves the process: ``uvicorn.error`` (also under
gunicorn's uvicorn workers), ``gunicorn.error``, ``hypercorn.error``, or ``waitress`` when
that one has a handler. They then appear in the server's format and stream, at the
server's log level. :class:`~healthprobe.shutdown.GracefulShutdown` sets this up as it
installs itself in the serving process (:func:`use_server_logger`); it decides again for
every record, so once a handler is configured anywhere on the way (``logging.basicConfig``,
``dictConfig``, ``--log-config``), records go there alone and no line is doubled. A level
set on ``healthprobe`` by the application is left as it is.

Where no server logs (a worker, ``waitress.serve``, Werkzeug's server), :func:`configure`
is the one call that shows healthprobe's records on standard error.

**Access logs.** :class:`ProbeAccessFilter` drops the access lines of successful probe
and metrics requests (:func:`quiet_probe_access_logs` puts one on the access loggers of
uvicorn, gunicorn and hypercorn) and keeps failing probes and every application line.

This module imports no server.
"""

from __future__ import annotations

import collections.abc
import logging
import sys
import typing

from . import http

if typing.TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import TextIO

    from .http import HealthEndpoints

__all__ = [
    "ACCESS_LOGGERS",
    "FORMAT",
    "LOGGER",
    "SERVER_LOGGERS",
    "ProbeAccessFilter",
    "configure",
    "quiet_probe_access_logs",
    "use_server_logger",
]

#: The logger at the top of healthprobe's own (``healthprobe.shutdown`` is below it).
LOGGER = "healthprobe"
#: The servers' error loggers, in the order they are looked for: the first one with a
#: handler (its own or an ancestor's below the root) carries healthprobe's records while
#: logging is not configured for healthprobe.
SERVER_LOGGERS: tuple[str, ...] = ("uvicorn.error", "gunicorn.error", "hypercorn.error", "waitress")
#: The servers' access loggers that :func:`quiet_probe_access_logs` filters.
ACCESS_LOGGERS: tuple[str, ...] = ("uvicorn.access", "gunicorn.access", "hypercorn.access")
#: The line format of :func:`configure`: time, level, logger, process id, message.
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"

#: What a record that no server logger shows looks like on standard error.
_BARE = logging.Formatter("%(levelname)s %(name)s: %(message)s")

#: Marks the handler installed by configure, which a later call replaces.
_CONFIGURE_MARK = "_healthprobe_configure"

# The level this module set on the ``healthprobe`` logger, or None when the level there is
# the application's own or unset.
_owned_level: int | None = None


class _ServerChannel(logging.Handler):
    """The handler :func:`use_server_logger` puts on the ``healthprobe`` logger.

    For each record: when another handler on the record's way up shows it, nothing (the
    application configured logging); else the record goes to the server's error logger's
    handlers, or, with no server logger, to standard error for ``WARNING`` and above (what
    Python's :data:`logging.lastResort` shows without any handler), prefixed with the level
    and the logger's name, so that a warning printed before the server set up its logging
    (hypercorn's) reads as one: ``WARNING healthprobe.shutdown: ...``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if _handled_elsewhere(record.name):
                return
            server = _server_logger()
            if server is not None:
                server.callHandlers(record)
            else:
                last = logging.lastResort
                if last is not None and record.levelno >= last.level:
                    message = _BARE.format(record)
                    stream = getattr(last, "stream", None) or sys.stderr
                    stream.write(message + "\n")
                    stream.flush()
        except Exception:
            self.handleError(record)


class _LevelGate(logging.Filter):
    """The filter :func:`use_server_logger` puts on healthprobe's loggers: before a record
    goes anywhere, the level of the ``healthprobe`` logger is decided again (the server's,
    or the application's once it configured logging), and a record below it is dropped, so
    that a level this module set never lets a record through an application's handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        _sync_level()
        logger = _existing(record.name)
        return logger is None or record.levelno >= logger.getEffectiveLevel()


def use_server_logger() -> str | None:
    """Send healthprobe's records through the serving server's error logger while logging
    is not configured for healthprobe (see the module's docstring).

    :class:`~healthprobe.shutdown.GracefulShutdown` calls this when it installs itself in
    the serving process; call it from the application module for an application served
    without one. Idempotent, and cheap to call again: each call, and each record, looks
    for the server's logger anew. While logging is not configured for healthprobe and the
    application set no level on the ``healthprobe`` logger, that logger takes the server
    logger's level (``INFO`` unless the server's ``--log-level`` says otherwise; ``INFO``
    while no server logger has a handler yet, records below ``WARNING`` being dropped then
    as Python drops them), so that the shutdown timeline shows.

    Returns:
        The name of the logger whose handlers show healthprobe's records now (one of
        :data:`SERVER_LOGGERS`), or ``None``: logging is configured for healthprobe, or no
        server logger has a handler in this process.
    """
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(handler, _ServerChannel) for handler in logger.handlers):
        logger.addHandler(_ServerChannel())
    for name in [LOGGER, *(n for n in list(logging.Logger.manager.loggerDict) if n.startswith(LOGGER + "."))]:
        own = _existing(name) or logging.getLogger(name)
        if not any(isinstance(f, _LevelGate) for f in own.filters):
            own.addFilter(_LevelGate())
    if _sync_level():
        server = _server_logger()
        return None if server is None else server.name
    return None


def _existing(name: str) -> logging.Logger | None:
    """The logger called ``name`` if something created it, without creating it."""
    logger = logging.Logger.manager.loggerDict.get(name)
    return logger if isinstance(logger, logging.Logger) else None


def _handled_elsewhere(name: str) -> bool:
    """Whether a record of logger ``name`` meets a handler other than the channel on its way
    up (the way ``Logger.callHandlers`` walks: up to a logger that does not propagate)."""
    current: logging.Logger | None = _existing(name) or logging.getLogger(LOGGER)
    while current is not None:
        if any(not isinstance(handler, _ServerChannel) for handler in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def _configured() -> bool:
    """Whether the application configured logging for healthprobe: a handler on the root
    logger, on ``healthprobe`` or on any logger below it."""
    if _handled_elsewhere(LOGGER):
        return True
    prefix = LOGGER + "."
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(prefix):
            logger = _existing(name)
            if logger is not None and any(not isinstance(h, _ServerChannel) for h in logger.handlers):
                return True
    return False


def _server_logger() -> logging.Logger | None:
    """The first of :data:`SERVER_LOGGERS` that has a handler in this process, if any."""
    for name in SERVER_LOGGERS:
        logger = _existing(name)
        if logger is not None and not logger.disabled and logger.hasHandlers():
            return logger
    return None


def _sync_level() -> bool:
    """Decide the level of the ``healthprobe`` logger again: the server logger's (``INFO``
    while there is none) as long as logging is not configured for healthprobe and the
    application set no level there; back to unset once it configured logging. Returns
    whether healthprobe's records go the server's way (logging not configured)."""
    global _owned_level
    logger = logging.getLogger(LOGGER)
    if _owned_level is not None and logger.level != _owned_level:
        _owned_level = None  # set by the application since: its own from now on
    configured = _configured()
    if _owned_level is None and logger.level != logging.NOTSET:
        return not configured  # the application's level
    if configured:
        if _owned_level is not None:
            logger.setLevel(logging.NOTSET)
            _owned_level = None
        return False
    server = _server_logger()
    level = logging.INFO if server is None else server.getEffectiveLevel()
    if logger.level != level:
        logger.setLevel(level)
    _owned_level = level
    return True


def configure(level: int | str = "INFO", *, stream: TextIO | None = None) -> logging.Handler:
    """Show healthprobe's records on standard error, for a process no server logs for (a
    worker with :func:`healthprobe.serve`, ``waitress.serve``, Werkzeug's server, a script).

    One line per record, in :data:`FORMAT`: time, level, logger, process id, message.
    healthprobe's records then go to this handler only (the ``healthprobe`` logger stops
    propagating), so a handler on the root logger never shows them twice. Calling it again
    replaces the handler of the previous call.

    Args:
        level: the least level shown, a name (``"INFO"``, ``"DEBUG"``) or a number of
            :mod:`logging` (``logging.INFO``); set on the ``healthprobe`` logger.
        stream: where lines are written (default :data:`sys.stderr`, looked up now).

    Returns:
        The :class:`logging.StreamHandler` added to the ``healthprobe`` logger.

    Raises:
        ValueError: ``level`` is not a level name :mod:`logging` knows.
        TypeError: ``level`` is neither a ``str`` nor an ``int``.
    """
    global _owned_level
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level)  # raises on an unknown level, before anything changed
    _owned_level = None
    for handler in list(logger.handlers):
        if getattr(handler, _CONFIGURE_MARK, False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    setattr(handler, _CONFIGURE_MARK, True)
    logger.addHandler(handler)
    logger.propagate = False
    return handler


# -- access logs -----------------------------------------------------------------------------


class ProbeAccessFilter(logging.Filter):
    """Drops the access-log lines of successful probe and metrics requests.

    A line is dropped when its status is 2xx or 3xx (what the kubelet counts as success)
    and its path (without the query) is a probe path, ``<probe path>/`` or
    ``<probe path>/<check>`` (with or without a trailing slash), or the metrics path.
    Failing probes (503), errors (400, 404, 405) and every other line are kept. Made for
    the access records of uvicorn (``uvicorn.access``, also under gunicorn's uvicorn
    workers: ``args`` is ``(client, method, path with query, HTTP version, status)``),
    gunicorn (``gunicorn.access``: ``args`` is its mapping of atoms, ``U`` the path and
    ``s`` the status) and hypercorn (``hypercorn.access``: the same atoms); a record of
    any other shape is kept.

    Put it on the access logger (``logger.addFilter``), or let
    :func:`quiet_probe_access_logs` do it; in a ``dictConfig`` (uvicorn's
    ``--log-config``, gunicorn's ``logconfig_dict``), name it as a filter factory:
    ``{"()": "healthprobe.logs.ProbeAccessFilter"}``, with ``paths`` and ``metrics_path``
    as keys when they are not the defaults.

    Args:
        paths: the probe paths: a :class:`~healthprobe.http.HealthEndpoints`, or a
            ``HealthMiddleware`` (whose ``endpoints`` are read), for its ``paths`` and
            ``metrics_path``; or an iterable of path strings; ``None`` for the defaults
            (``/livez``, ``/healthz``, ``/readyz``, ``/startupz``). Paths are compared
            with the path the server logs, which includes an ASGI ``root_path``.
        metrics_path: the metrics path, ``/metrics`` by default (or the one of the
            ``HealthEndpoints`` given).

    Raises:
        TypeError: ``paths`` is a single ``str``, or holds something other than strings.
        ValueError: a path does not start with ``/``.
    """

    def __init__(
        self, paths: HealthEndpoints | Iterable[str] | None = None, *, metrics_path: str | None = None
    ) -> None:
        super().__init__()
        endpoints = getattr(paths, "endpoints", paths)
        probe_paths: Iterable[object]
        if endpoints is not None and isinstance(getattr(endpoints, "paths", None), collections.abc.Mapping):
            probe_paths = list(endpoints.paths)  # type: ignore[union-attr]
            if metrics_path is None:
                metrics_path = getattr(endpoints, "metrics_path", None)
        elif paths is None:
            probe_paths = list(http.DEFAULT_PATHS)
        elif isinstance(paths, (str, bytes)):
            raise TypeError("paths must be an iterable of paths, not a single string")
        else:
            probe_paths = list(paths)  # type: ignore[arg-type]
        checked = [_checked_path(path) for path in probe_paths]
        metrics = _checked_path("/metrics" if metrics_path is None else metrics_path)
        self.paths: tuple[str, ...] = tuple(checked)
        self.metrics_path: str = metrics
        self._exact = frozenset([*(p.rstrip("/") or "/" for p in checked), metrics])
        self._prefixes = tuple(p.rstrip("/") + "/" for p in checked)

    def quiet(self, path: str) -> bool:
        """Whether ``path`` (with or without a query) is a probe or metrics path."""
        path = path.partition("?")[0]
        if path in self._exact:
            return True
        if not path.startswith(self._prefixes):
            return False
        for prefix in self._prefixes:
            if path.startswith(prefix):
                name = path[len(prefix) :]
                if name.endswith("/"):
                    name = name[:-1]
                if "/" not in name:
                    return True
        return False

    def filter(self, record: logging.LogRecord) -> bool:
        """``False`` (drop) for the line of a successful probe or metrics request."""
        found = _path_and_status(record.args)
        if found is None:
            return True
        path, status = found
        return not (200 <= status < 400 and self.quiet(path))


def _checked_path(path: object) -> str:
    if not isinstance(path, str):
        raise TypeError(f"a path must be a str, got {type(path).__name__}")
    if not path.startswith("/"):
        raise ValueError(f"a path must start with '/', got {path!r}")
    return path


def _path_and_status(args: object) -> tuple[str, int] | None:
    """``(path, status)`` of an access record of uvicorn, gunicorn or hypercorn, else ``None``."""
    if isinstance(args, tuple):
        # uvicorn: (client address, method, path with query, HTTP version, status)
        if len(args) == 5 and isinstance(args[2], str) and isinstance(args[4], int):
            return args[2], args[4]
        return None
    if isinstance(args, collections.abc.Mapping):
        # gunicorn and hypercorn: a dict of atoms. dict.get, not [], which both override to
        # answer "-" for a missing atom.
        path = dict.get(args, "U") if isinstance(args, dict) else args.get("U")
        status = dict.get(args, "s") if isinstance(args, dict) else args.get("s")
        if not isinstance(path, str):
            return None
        if isinstance(status, int) and not isinstance(status, bool):
            return path, status
        if isinstance(status, str) and status.isdigit():
            return path, int(status)
    return None


#: Marks the filters installed by quiet_probe_access_logs, which a later call replaces.
_QUIET_MARK = "_healthprobe_quiet"


def quiet_probe_access_logs(
    paths: HealthEndpoints | Iterable[str] | None = None,
    *,
    metrics_path: str | None = None,
    loggers: Iterable[str] = ACCESS_LOGGERS,
) -> ProbeAccessFilter:
    """Drop the access-log lines of successful probe and metrics requests from uvicorn's,
    gunicorn's and hypercorn's access logs (one :class:`ProbeAccessFilter` on each of
    :data:`ACCESS_LOGGERS`).

    Call it from the application module: every worker process imports that module, and a
    filter set on a logger stays through the server's logging set-up. Calling it again
    replaces the filters of the previous call.

    Args:
        paths: as :class:`ProbeAccessFilter`: pass the ``HealthMiddleware`` (or its
            ``HealthEndpoints``) when its probe paths are not the defaults.
        metrics_path: as :class:`ProbeAccessFilter`.
        loggers: names of the access loggers to filter.

    Returns:
        The filter installed.

    Raises:
        TypeError, ValueError: as :class:`ProbeAccessFilter`.
    """
    quiet = ProbeAccessFilter(paths, metrics_path=metrics_path)
    setattr(quiet, _QUIET_MARK, True)
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if getattr(f, _QUIET_MARK, False)]:
            logger.removeFilter(old)
        logger.addFilter(quiet)
    return quiet
