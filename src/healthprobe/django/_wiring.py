# mypy: disable-error-code="import-untyped"
"""The process's registry and coordinator built from the settings, the drop-in application
factories, and the watch for an application served without them."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

from .. import http
from .._extras import requires
from ..registry import HealthRegistry
from ..shutdown import GracefulShutdown
from . import conf

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import FrameType
    from typing import Any

    from .. import asgi, wsgi

logger = logging.getLogger("healthprobe.django")

#: The id of the warning for an application served without healthprobe's factories.
UNWRAPPED = "healthprobe.W001"
#: The id of the warning for the factories used without the app in ``INSTALLED_APPS``.
NOT_INSTALLED = "healthprobe.W003"


class _State:
    """What this process built from the settings, and what it has said about them."""

    def __init__(self) -> None:
        # The registry exists before its checks are loaded: shutdown() needs only the
        # registry, and a check module that the settings name may call it at import.
        self.registry: HealthRegistry | None = None
        self.loaded = False
        self.loading = False
        self.shutdown: GracefulShutdown | None = None
        self.wrapped = False
        self.warned = False
        self.paths: tuple[str, ...] = ()
        self.groups_watched = False


_lock = threading.RLock()
_state = _State()


def _settings() -> Any:
    from django.conf import settings

    return settings


def _silenced() -> set[str]:
    silenced = getattr(_settings(), "SILENCED_SYSTEM_CHECKS", None) or ()
    return {str(item) for item in silenced}


def _raise(problems: Iterable[conf.Problem]) -> None:
    """Raise ``ImproperlyConfigured`` listing the errors among ``problems``, if any."""
    errors = [p for p in problems if p.is_error]
    if errors:
        lines = "\n".join(p.line() for p in errors)
        raise conf.MisconfiguredError(f"HEALTHPROBE is misconfigured (`python manage.py check` lists it all):\n{lines}")


def _registry_object() -> HealthRegistry:
    """The process's registry, with its checks loaded or not."""
    built = _state.registry
    if built is not None:
        return built
    with _lock:
        if _state.registry is None:
            basics, _ = conf.load_basics()  # wrong values replaced by defaults: registry() raises
            _state.registry = HealthRegistry(
                default_timeout=basics.default_timeout, default_cache_ttl=basics.default_cache_ttl
            )
        return _state.registry


def registry() -> HealthRegistry:
    """The :class:`~healthprobe.HealthRegistry` of this process, built from the
    ``HEALTHPROBE`` setting at the first call: the database, cache and migrations checks it
    enables, then its ``CHECKS``, in that order, then its ``GROUPS``.

    The probes served by :func:`get_wsgi_application` and :func:`get_asgi_application` and
    the ``manage.py healthprobe`` command all answer from this registry, so a check added in
    code (``registry().add_check("search", ping_search)``, in an ``AppConfig.ready()`` or a
    module that a check path imports) is probed like the configured ones. Thread-safe; a
    module that the settings name may call it (and :func:`shutdown`) while it is being
    built.

    Returns:
        The same :class:`~healthprobe.HealthRegistry` at every call in this process.

    Raises:
        django.core.exceptions.ImproperlyConfigured: ``HEALTHPROBE`` has errors (an unknown
            key, a check path that does not import or is not callable, a value of the
            wrong type...): one line each, naming the fix, with the ids the system check
            reports (``healthprobe.E002`` ...). No check of the setting is registered then;
            the next call tries again.
    """
    built = _registry_object()
    if _state.loaded:
        return built
    with _lock:
        if _state.loaded or _state.loading:  # loading: called again by a module imported below
            return built
        _state.loading = True
        try:
            basics, problems = conf.load_basics()
            _raise(problems)
            specs, problems = conf.load_checks()
            _raise(problems)
        finally:
            _state.loading = False
        for spec in specs:
            built.add_check(
                spec.name,
                spec.func,
                probes=spec.probes,
                tags=spec.tags,
                timeout=spec.timeout,
                critical=spec.critical,
                cache_ttl=spec.cache_ttl,
                interval=spec.interval,
            )
        for group in basics.groups:
            if group.name not in built.groups:  # not added in code by a module imported above
                built.add_group(group.name, **group.options)
        _state.loaded = True
        return built


def shutdown() -> GracefulShutdown:
    """The :class:`~healthprobe.shutdown.GracefulShutdown` of this process, on
    :func:`registry`, built at the first call with the arguments of
    ``HEALTHPROBE["SHUTDOWN"]``.

    Register cleanup hooks on it (``@shutdown().hook``, in a module that the settings name
    or an ``AppConfig.ready()``): they run once the requests in flight are drained. The
    applications of :func:`get_wsgi_application` and :func:`get_asgi_application` serve it;
    building it installs nothing, and raises nothing: a wrong value of ``SHUTDOWN`` is
    replaced by its default here, and reported (raised) by :func:`registry`, the
    application factories and the system check.

    Returns:
        The same coordinator at every call in this process.
    """
    built = _state.shutdown
    if built is not None:
        return built
    with _lock:
        if _state.shutdown is None:
            options = conf.load_basics()[0].shutdown  # wrong values replaced by defaults
            _state.shutdown = GracefulShutdown(_registry_object(), **options)  # type: ignore[arg-type]
        return _state.shutdown


def _started() -> conf.Basics:
    """What the served application does at start-up: report the settings' problems (raise
    on errors, log warnings), and stop watching for probes reaching Django."""
    _state.wrapped = True
    _disconnect_watch()
    basics, _, problems = conf.load()
    _raise(problems)
    from django.apps import apps

    if not apps.is_installed("healthprobe.django"):
        problems.append(
            conf.Problem(
                NOT_INSTALLED,
                "healthprobe.django is not in INSTALLED_APPS, so `manage.py check` does not check HEALTHPROBE and "
                "`manage.py healthprobe` does not exist",
                'add "healthprobe.django" to INSTALLED_APPS',
                obj="settings.INSTALLED_APPS",
            )
        )
    silenced = _silenced()
    warnings = [p for p in problems if not p.is_error and p.id not in silenced]
    if warnings:
        from ..logs import use_server_logger

        if any(p.id == "healthprobe.W002" for p in warnings):
            _enable_loggers()
        use_server_logger()
        for problem in warnings:
            logger.warning("%s", problem.line(), extra={"check_id": problem.id})
    return basics


def _enable_loggers() -> None:
    """Enable healthprobe's loggers again after a ``LOGGING`` that disabled them with every
    other logger that existed (``disable_existing_loggers``); W002 says so."""
    for name, item in list(logging.root.manager.loggerDict.items()):
        if (name == "healthprobe" or name.startswith("healthprobe.")) and isinstance(item, logging.Logger):
            item.disabled = False


def get_wsgi_application() -> wsgi.ProbeMiddleware:
    """Django's WSGI application, wrapped so that probes are answered before Django and the
    shutdown is graceful: the drop-in for ``django.core.wsgi.get_wsgi_application`` in the
    project's ``wsgi.py``.

    Calls Django's own (``django.setup()``, then Django's ``WSGIHandler``, which loads
    ``MIDDLEWARE``), reports the problems of the ``HEALTHPROBE`` setting, then returns
    ``healthprobe.wsgi.HealthMiddleware(handler, registry(), shutdown=shutdown(), ...)``
    with the paths, failure status, output and metrics of the settings. Probe and metrics
    requests never reach Django: ``ALLOWED_HOSTS`` (the kubelet sends the pod's IP address
    as ``Host``), ``SECURE_SSL_REDIRECT``, ``APPEND_SLASH``, authentication and CSRF never
    touch them. Every other request is counted in flight; the coordinator is installed in
    the serving process (a gunicorn sync or ``gthread`` worker, ``waitress-serve``),
    or leaves ``manage.py runserver`` alone (docs/kubernetes.md, "Launch paths").

    Returns:
        A :class:`healthprobe.wsgi.ProbeMiddleware`, the WSGI application to serve.

    Raises:
        django.core.exceptions.ImproperlyConfigured: ``HEALTHPROBE`` has errors (one line
            each, naming the fix); its warnings are logged at ``WARNING``.
        ImportError: ``METRICS`` is on without prometheus-client (``healthprobe[prometheus]``).
    """
    from django.core.wsgi import get_wsgi_application as django_application

    from ..wsgi import HealthMiddleware

    handler = django_application()
    basics = _started()
    application = HealthMiddleware(handler, registry(), shutdown=shutdown(), **basics.endpoint_options())
    _watch_groups(registry(), basics)
    return application


def get_asgi_application() -> asgi.ProbeMiddleware:
    """Django's ASGI application, wrapped so that probes are answered before Django and the
    shutdown is graceful: the drop-in for ``django.core.asgi.get_asgi_application`` in the
    project's ``asgi.py`` (needs the ``asgi`` extra).

    As :func:`get_wsgi_application`, with :func:`healthprobe.asgi.HealthMiddleware`. Django's
    ``ASGIHandler`` refuses the ASGI lifespan scope; the middleware answers it for Django, so
    the coordinator is installed at the server's lifespan startup and its hooks run at
    lifespan shutdown, on the server's event loop (``uvicorn mysite.asgi:application``).

    Returns:
        A :class:`healthprobe.asgi.ProbeMiddleware`, the ASGI 3 application to serve.

    Raises:
        django.core.exceptions.ImproperlyConfigured: as :func:`get_wsgi_application`.
        ImportError: Starlette is missing: ``pip install 'healthprobe[asgi]'``.
    """
    with requires("asgi", "healthprobe.django.get_asgi_application()"):
        from ..asgi import HealthMiddleware
    from django.core.asgi import get_asgi_application as django_application

    handler = django_application()
    basics = _started()
    application = HealthMiddleware(handler, registry(), shutdown=shutdown(), **basics.endpoint_options())
    _watch_groups(registry(), basics)
    return application


def _watch_groups(health: HealthRegistry, basics: conf.Basics) -> None:
    """Log one WARNING (``healthprobe.W004``) once ``health`` has a group that no path
    answers (a probe path at or below ``/health``, no ``GROUP_PATH``): now, or at the first
    probe answered after a group is added in code. Groups of ``GROUPS`` were reported at
    start-up by the system check already."""
    clash = basics.groupless_clash()
    if clash is None or basics.groups or _state.groups_watched or conf.GROUPLESS in _silenced():
        return
    _state.groups_watched = True

    def warn() -> None:
        from ..logs import use_server_logger

        use_server_logger()
        logger.warning(
            "%s: the registry has groups (%s) but none is answered over HTTP: the probe path %r is at or below %s, "
            "where groups are answered by default. Set HEALTHPROBE['GROUP_PATH'] to a path of their own, such as "
            "'/groups' (see %s; SILENCED_SYSTEM_CHECKS = ['%s'] silences this)",
            conf.GROUPLESS,
            ", ".join(health.groups),
            clash,
            http.DEFAULT_GROUP_PATH,
            conf.DOCS,
            conf.GROUPLESS,
            extra={"check_id": conf.GROUPLESS},
        )

    http.when_grouped(health, warn)


# -- an application served without the factories above -------------------------------------


def _django_factory_caller() -> tuple[str, str, int] | None:
    """``(factory name, file, line)`` of the code calling Django's own
    ``get_wsgi_application`` or ``get_asgi_application`` on this thread's stack (the project's
    ``wsgi.py`` or ``asgi.py``, still Django's), or ``None``: not being called, or called by
    healthprobe's."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name in ("get_wsgi_application", "get_asgi_application") and frame.f_globals.get(
            "__name__"
        ) in ("django.core.wsgi", "django.core.asgi"):
            caller = frame.f_back
            if caller is None or str(caller.f_globals.get("__name__", "")).startswith("healthprobe."):
                return None
            return frame.f_code.co_name, caller.f_code.co_filename, caller.f_lineno
        frame = frame.f_back
    return None


def _warn_unwrapped(what: str, fix: str) -> None:
    if _state.warned or _state.wrapped:
        return
    _state.warned = True
    _disconnect_watch()
    if UNWRAPPED in _silenced():
        return
    from ..logs import use_server_logger

    use_server_logger()
    logger.warning(
        "%s: %s, so the probes go through Django's middleware (ALLOWED_HOSTS refuses the pod IP address the "
        "kubelet sends as Host; authentication, APPEND_SLASH and SECURE_SSL_REDIRECT answer them) and SIGTERM "
        "stops the server without a graceful shutdown: %s (see %s; SILENCED_SYSTEM_CHECKS = ['%s'] silences this)",
        UNWRAPPED,
        what,
        fix,
        conf.DOCS,
        UNWRAPPED,
        extra={"check_id": UNWRAPPED},
    )


def watch(paths: Iterable[str]) -> None:
    """Watch this process for an application that is not healthprobe's: called by the app's
    ``ready()``, while ``django.setup()`` runs.

    At start-up, when ``django.setup()`` is being called by Django's own
    ``get_wsgi_application()`` or ``get_asgi_application()`` (the project's ``wsgi.py`` or
    ``asgi.py`` was not changed), one WARNING (``healthprobe.W001``) names the file, the
    line and the fix. Otherwise the first request that reaches Django on a probe path (a
    server started otherwise, ``manage.py runserver`` serving Django's handler) logs it.
    """
    found = _django_factory_caller()
    if found is not None:
        name, filename, line = found
        _warn_unwrapped(
            f"{filename}:{line} serves Django's own {name}()",
            f"in {filename}, `from healthprobe.django import {name}` instead of Django's",
        )
        return
    _state.paths = tuple(paths)
    from django.core.signals import request_started

    request_started.connect(_on_request_started, dispatch_uid=__name__)


def _disconnect_watch() -> None:
    from django.core.signals import request_started

    request_started.disconnect(dispatch_uid=__name__)


def _on_request_started(sender: object, environ: Any = None, scope: Any = None, **kwargs: object) -> None:
    """``request_started`` receiver: a request that reached Django on a probe path."""
    if _state.warned or _state.wrapped:
        return
    if isinstance(environ, dict):
        path = environ.get("PATH_INFO") or "/"
    elif isinstance(scope, dict):
        path = scope.get("path") or "/"
    else:
        return
    path = str(path).rstrip("/") or "/"
    for probe_path in _state.paths:
        if path == probe_path or path.startswith(probe_path + "/"):
            _warn_unwrapped(
                f"a probe request ({path}) reached Django in process {os.getpid()}",
                "in the project's wsgi.py and asgi.py, `from healthprobe.django import get_wsgi_application` "
                "(get_asgi_application) instead of Django's",
            )
            return
