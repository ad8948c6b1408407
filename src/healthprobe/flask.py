"""Flask integration (extra ``flask``): the :class:`HealthProbe` extension.

::

    from flask import Flask
    from healthprobe.flask import HealthProbe

    health = HealthProbe()                      # one object, any number of apps


    def create_app() -> Flask:
        app = Flask(__name__)
        app.config["HEALTHPROBE_METRICS"] = True  # settings: app.config["HEALTHPROBE_..."]
        health.init_app(app)
        return app

What :meth:`HealthProbe.init_app` does to an app, and nothing more:

* wraps ``app.wsgi_app`` in :func:`healthprobe.wsgi.HealthMiddleware`, outermost, so probe
  (and metrics) requests are answered before Flask routes them: ``before_request``
  functions, sessions, Flask-Login or CSRF protection never see them;
* gives the app a :class:`~healthprobe.registry.HealthRegistry` (the one passed in, or a new
  one per app) and, unless ``HEALTHPROBE_SHUTDOWN`` is ``False``, a
  :class:`~healthprobe.shutdown.GracefulShutdown` of that registry, which the middleware
  installs in the serving process (gunicorn sync and ``gthread`` workers, ``waitress-serve``;
  ``flask run`` is left alone, see docs/kubernetes.md, "Launch paths");
* stores what it built as a :class:`ProbeState` in ``app.extensions["healthprobe"]``, which
  :func:`state` and :func:`registry` read back for the app of the current context.

It adds no route, blueprint or request hook; signal handlers are the coordinator's, installed
by the middleware in the process that serves, as for any WSGI app (docs/kubernetes.md).

Settings come from ``app.config`` keys (:data:`SETTINGS`), with the arguments given to
:class:`HealthProbe` as their defaults; the effective values are written back into
``app.config`` (``setdefault``). An unknown ``HEALTHPROBE_*`` key, a value of the wrong type
or out of range raises at ``init_app`` with one line naming the key and the fix.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import logging
import math
import os
import signal
import typing
import weakref

from . import _extras, _launch, _types, http, wsgi
from . import guard as _guard
from . import registry as _registry
from . import shutdown as _shutdown

with _extras.requires("flask", __name__):
    import flask

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, TypeVar

    from flask import Flask

    from ._types import Probe
    from .guard import Guard
    from .http import MetricsSource
    from .registry import HealthRegistry
    from .shutdown import GracefulShutdown

    Hook = Callable[[], Any]
    H = TypeVar("H", bound=Hook)

__all__ = [
    "DOCS",
    "EXTENSION_KEY",
    "PREFIX",
    "SETTINGS",
    "HealthProbe",
    "ProbeState",
    "Settings",
    "registry",
    "state",
]

_logger = logging.getLogger("healthprobe")

#: The key of ``app.extensions`` holding an app's :class:`ProbeState`.
EXTENSION_KEY = "healthprobe"
#: The prefix of every setting in ``app.config``.
PREFIX = "HEALTHPROBE_"
#: Where the settings and the launch commands are documented.
DOCS = "docs/frameworks/flask.md"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The effective settings of one app: each field is read from ``app.config`` under
    ``HEALTHPROBE_`` + its name in capitals (``drain_timeout`` from
    ``HEALTHPROBE_DRAIN_TIMEOUT``), the extension's argument being the default.

    Attributes:
        paths: probe path -> probe (``"liveness"``, ``"readiness"``, ``"startup"``); default
            ``/livez``, ``/healthz`` (an alias of ``/livez``), ``/readyz``, ``/startupz``.
        failure_status: status code of a failing probe (400-599), one for all or a mapping
            per probe; default 503.
        expose_output: show what checks wrote (messages, exception text) in probe bodies;
            default ``False``.
        metrics: serve Prometheus metrics (extra ``prometheus``): ``True``, ``False``, or a
            :class:`~healthprobe.http.MetricsSource`; default ``False``.
        metrics_path: the path of the metrics route; default ``/metrics``.
        shutdown: give the app a :class:`~healthprobe.shutdown.GracefulShutdown`; default
            ``True``.
        shutdown_delay: seconds to keep serving after ``SIGTERM`` while readiness fails;
            ``None`` (the default) is 5 s when ``KUBERNETES_SERVICE_HOST`` is set, else 0.
        drain_timeout: bound in seconds on waiting for requests in flight; default 20 s.
        hook_timeout: bound in seconds on each shutdown hook; default 5 s.
        grace_period: the pod's ``terminationGracePeriodSeconds``, in seconds: a warning is
            logged when delay + drain + hooks exceed it, at the app's first startup or
            readiness probe (or at the signal, if none came), so that the hooks registered
            after ``init_app`` count; default 30 s.
        repeat_window: seconds after the first signal during which another is a copy of it
            (docs/kubernetes.md); default 1 s.
        guard: who may see the details of probe and group answers, and the admin and
            thread dump paths it enables: a :class:`healthprobe.guard.Guard`, or a dict of
            its keyword arguments (``{"token": "..."}``, as ``from_prefixed_env()`` reads
            JSON); default ``None``: details for everyone (as ``expose_output`` says).
        group_path: the path groups of checks (``registry.add_group(...)``) are answered under, or
            ``None`` for none over HTTP; default ``/health``. Left at its default while a
            probe path is ``/health`` or below it, groups get no path, and a WARNING names
            this setting once the registry has a group.
    """

    # Annotations by module, which typing.get_type_hints resolves at run time.
    paths: collections.abc.Mapping[str, _types.Probe] = dataclasses.field(
        default_factory=lambda: dict(http.DEFAULT_PATHS)
    )
    failure_status: int | collections.abc.Mapping[str, int] = 503
    expose_output: bool = False
    metrics: bool | http.MetricsSource = False
    metrics_path: str = "/metrics"
    shutdown: bool = True
    shutdown_delay: float | None = None
    drain_timeout: float = 20.0
    hook_timeout: float = 5.0
    grace_period: float = 30.0
    repeat_window: float = 1.0
    guard: _guard.Guard | None = None
    group_path: str | None = http.DEFAULT_GROUP_PATH


#: Every ``app.config`` key the extension reads, to the :class:`Settings` field it sets.
SETTINGS: Mapping[str, str] = {PREFIX + field.name.upper(): field.name for field in dataclasses.fields(Settings)}


@dataclasses.dataclass(frozen=True, eq=False)
class ProbeState:
    """What :meth:`HealthProbe.init_app` set up for one app, kept in
    ``app.extensions["healthprobe"]``.

    Attributes:
        extension: the :class:`HealthProbe` that set the app up.
        registry: the app's :class:`~healthprobe.registry.HealthRegistry`.
        shutdown: the app's :class:`~healthprobe.shutdown.GracefulShutdown`, or ``None``
            when ``HEALTHPROBE_SHUTDOWN`` is ``False`` (or another coordinator already
            serves the process: a WARNING said so).
        middleware: the :func:`~healthprobe.wsgi.HealthMiddleware` now in ``app.wsgi_app``.
        settings: the effective :class:`Settings`.
        app_name: the app's ``name`` (for messages).
    """

    extension: HealthProbe
    registry: _registry.HealthRegistry
    shutdown: _shutdown.GracefulShutdown | None
    middleware: wsgi.ProbeMiddleware
    settings: Settings
    app_name: str

    @typing.overload
    def on_shutdown(self, func: H, /) -> H: ...

    @typing.overload
    def on_shutdown(self, func: None = None, /, *, name: str | None = None) -> Callable[[H], H]: ...

    def on_shutdown(self, func: H | None = None, /, *, name: str | None = None) -> H | Callable[[H], H]:
        """Register a cleanup hook of this app (close its pools): run after the drain, last
        registered first, each bounded by ``hook_timeout`` seconds. Bare
        (``@probes.on_shutdown``) or called (``@probes.on_shutdown(name="close_pool")``), or
        ``probes.on_shutdown(client.close)``; returns the function unchanged.

        Without a coordinator (``HEALTHPROBE_SHUTDOWN`` is ``False``) the hook is not kept
        and an INFO line says so: the app's own shutdown code must close what it holds.

        Raises:
            TypeError: ``func`` is not callable without arguments
                (:meth:`GracefulShutdown.add_hook`).
        """
        return _hook_or_decorator(self._add, func, name)

    def _add(self, func: Hook, name: str | None) -> None:
        if self.shutdown is None:
            _logger.info(
                "healthprobe.flask: app %r has no graceful shutdown (HEALTHPROBE_SHUTDOWN is False): "
                "shutdown hook %r will not run",
                self.app_name,
                name or getattr(func, "__name__", repr(func)),
            )
            return
        self.shutdown.add_hook(func, name=name)


class HealthProbe:
    """The Flask extension: probes, graceful shutdown and metrics for each app given to
    :meth:`init_app`.

    Args:
        app: a Flask app to set up now (same as calling :meth:`init_app`), or ``None`` for
            the application-factory pattern.
        registry: the :class:`~healthprobe.registry.HealthRegistry` of every app set up
            without one of its own; ``None`` gives each app a new registry, so apps built
            by a factory (tests!) never share a lifecycle.
        paths, failure_status, expose_output, metrics, metrics_path, shutdown,
            shutdown_delay, drain_timeout, hook_timeout, grace_period, repeat_window, guard,
            group_path: the defaults of the ``HEALTHPROBE_*`` settings; see
            :class:`Settings` (durations in seconds).

    Raises:
        TypeError: an argument of the wrong type (``registry`` not a ``HealthRegistry``,
            ``drain_timeout="20"``...).
        ValueError: an argument out of range (a negative duration, a malformed path, a
            status code outside 400-599, a ``group_path`` that is ``/`` or that a probe or
            metrics path is or lies below), or a guard whose admin path is a probe path.
    """

    def __init__(
        self,
        app: Flask | None = None,
        registry: HealthRegistry | None = None,
        *,
        paths: Mapping[str, Probe | str] | None = None,
        failure_status: int | Mapping[Probe | str, int] = 503,
        expose_output: bool = False,
        metrics: bool | MetricsSource = False,
        metrics_path: str = "/metrics",
        shutdown: bool = True,
        shutdown_delay: float | None = None,
        drain_timeout: float = 20.0,
        hook_timeout: float = 5.0,
        grace_period: float = 30.0,
        repeat_window: float = 1.0,
        guard: Guard | Mapping[str, Any] | None = None,
        group_path: str | None = http.DEFAULT_GROUP_PATH,
    ) -> None:
        if registry is not None and not isinstance(registry, _registry.HealthRegistry):
            raise TypeError(f"HealthProbe(registry=...) must be a HealthRegistry, got {type(registry).__name__}")
        given = {
            "paths": http.DEFAULT_PATHS if paths is None else paths,
            "failure_status": failure_status,
            "expose_output": expose_output,
            "metrics": metrics,
            "metrics_path": metrics_path,
            "shutdown": shutdown,
            "shutdown_delay": shutdown_delay,
            "drain_timeout": drain_timeout,
            "hook_timeout": hook_timeout,
            "grace_period": grace_period,
            "repeat_window": repeat_window,
            "guard": guard,
            "group_path": group_path,
        }
        # A group path equal to the default counts as not given: it gives way to a probe path
        # at or below it, as the endpoints' default does.
        self._group_path_given = group_path != http.DEFAULT_GROUP_PATH
        self._defaults = _settings(given, lambda field: f"HealthProbe({field}=...)", self._group_path_given)
        self._registry = registry
        self._hooks: list[tuple[Hook, str | None]] = []
        self._states: weakref.WeakSet[ProbeState] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    @property
    def defaults(self) -> Settings:
        """The settings an app gets where its ``app.config`` sets none."""
        return self._defaults

    @property
    def registry(self) -> HealthRegistry:
        """The registry of the current app (inside an application or request context of an
        app set up by this extension), else the one given to the constructor.

        Raises:
            RuntimeError: outside such a context, when no registry was given to the
                constructor.
        """
        if flask.has_app_context():
            found = flask.current_app.extensions.get(EXTENSION_KEY)
            if isinstance(found, ProbeState) and found.extension is self:
                return found.registry
        if self._registry is None:
            raise RuntimeError(
                "HealthProbe.registry: each app has its own registry here (none was given to HealthProbe()): "
                "use it inside an app or request context, or healthprobe.flask.registry(app)"
            )
        return self._registry

    def init_app(self, app: Flask, registry: HealthRegistry | None = None) -> ProbeState:
        """Set up ``app``: read its ``HEALTHPROBE_*`` settings, give it a registry and (unless
        ``HEALTHPROBE_SHUTDOWN`` is ``False``) a graceful-shutdown coordinator, and wrap
        ``app.wsgi_app`` in :func:`healthprobe.wsgi.HealthMiddleware`.

        Args:
            app: the Flask app.
            registry: this app's registry; default: the constructor's, else a new one.

        Returns:
            The app's :class:`ProbeState`, also in ``app.extensions["healthprobe"]``.

        Raises:
            TypeError: ``app`` is not a Flask app, ``registry`` not a ``HealthRegistry``, or
                a setting has the wrong type.
            ValueError: an unknown ``HEALTHPROBE_*`` key (with the closest known one), or a
                setting out of range.
            RuntimeError: the app is already set up (``init_app`` twice), or its
                ``wsgi_app`` is already wrapped in a ``HealthMiddleware``.
            ImportError: ``HEALTHPROBE_METRICS`` is on without prometheus-client
                (``pip install 'healthprobe[prometheus]'``).

        Groups of the registry get no path while a probe path is at or below ``/health``
        and no group path is set: one WARNING names ``HEALTHPROBE_GROUP_PATH``, here if
        the registry has a group already, else at the first probe answered after one is
        added.
        """
        if not isinstance(app, flask.Flask):
            raise TypeError(f"HealthProbe.init_app needs a Flask app, got {type(app).__name__}")
        if registry is not None and not isinstance(registry, _registry.HealthRegistry):
            raise TypeError(f"init_app(registry=...) must be a HealthRegistry, got {type(registry).__name__}")
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"Flask app {app.name!r} is already set up by a HealthProbe (app.extensions[{EXTENSION_KEY!r}]): "
                "call init_app once per app"
            )
        if _is_probe_middleware(app.wsgi_app):
            raise RuntimeError(
                f"the wsgi_app of Flask app {app.name!r} is already wrapped in healthprobe.wsgi.HealthMiddleware: "
                "remove that line, HealthProbe wraps app.wsgi_app itself"
            )
        group_path_given = self._group_path_given or PREFIX + "GROUP_PATH" in app.config
        settings = _settings_of(app, self._defaults, group_path_given)
        health = registry or self._registry or _registry.HealthRegistry()
        coordinator = self._coordinator(app, health, settings)
        groups: dict[str, Any] = {"group_path": settings.group_path} if group_path_given else {}
        middleware = wsgi.HealthMiddleware(
            app.wsgi_app,
            health,
            paths=settings.paths,
            failure_status=settings.failure_status,
            expose_output=settings.expose_output,
            metrics=settings.metrics,
            metrics_path=settings.metrics_path,
            shutdown=coordinator,
            guard=settings.guard,
            **groups,
        )
        if not group_path_given:
            clash = _group_path_clash(http.DEFAULT_GROUP_PATH, _taken(settings))
            if clash is not None:
                _warn_pathless_groups(health, app.name, clash)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        probe_state = ProbeState(self, health, coordinator, middleware, settings, app.name)
        app.extensions[EXTENSION_KEY] = probe_state
        self._states.add(probe_state)
        _logger.debug(
            "healthprobe.flask: app %r answers %s%s; graceful shutdown %s",
            app.name,
            ", ".join(settings.paths),
            f" and {settings.metrics_path}" if settings.metrics is not False else "",
            "on" if coordinator is not None else "off",
        )
        return probe_state

    def _coordinator(self, app: Flask, health: HealthRegistry, settings: Settings) -> GracefulShutdown | None:
        if not settings.shutdown:
            return None
        other = _serving_coordinator()
        if other is not None:
            # A process shuts down once, and only one coordinator's handlers can be in place:
            # a second one would fail to install at its first request.
            _logger.warning(
                "healthprobe.flask: Flask app %r gets no graceful shutdown: the GracefulShutdown of an app set up "
                "earlier already serves process %d, so this app's requests are not counted in its drain and its "
                "readiness does not fail on SIGTERM; give the graceful shutdown to the app the server serves and "
                "set HEALTHPROBE_SHUTDOWN = False on the others (see %s)",
                app.name,
                os.getpid(),
                DOCS,
            )
            return None
        coordinator = _shutdown.GracefulShutdown(
            health,
            delay=settings.shutdown_delay,
            drain_timeout=settings.drain_timeout,
            hook_timeout=settings.hook_timeout,
            grace_period=settings.grace_period,
            repeat_window=settings.repeat_window,
        )
        for func, name in self._hooks:
            coordinator.add_hook(func, name=name)
        return coordinator

    @typing.overload
    def on_shutdown(self, func: H, /) -> H: ...

    @typing.overload
    def on_shutdown(self, func: None = None, /, *, name: str | None = None) -> Callable[[H], H]: ...

    def on_shutdown(self, func: H | None = None, /, *, name: str | None = None) -> H | Callable[[H], H]:
        """Register a cleanup hook for every app this extension sets up, before or after
        this call: run by each app's coordinator after its drain, last registered first,
        each bounded by ``hook_timeout`` seconds. Bare (``@health.on_shutdown``) or called
        (``@health.on_shutdown(name="flush")``); returns the function unchanged.

        For what one app holds (a pool made in the factory), use that app's
        :meth:`ProbeState.on_shutdown`.

        Raises:
            TypeError: ``func`` is not callable without arguments.
        """
        return _hook_or_decorator(self._add_hook, func, name)

    def _add_hook(self, func: Hook, name: str | None) -> None:
        _check_hook(func, name)  # here, where the mistake is made, even before any app is set up
        self._hooks.append((func, name))
        for probe_state in list(self._states):
            if probe_state.shutdown is not None:
                probe_state.shutdown.add_hook(func, name=name)


def state(app: Flask | None = None) -> ProbeState:
    """What :meth:`HealthProbe.init_app` set up for an app.

    Args:
        app: a Flask app; ``None`` (the default) means the app of the current application
            or request context (``flask.current_app``).

    Returns:
        The app's :class:`ProbeState` (``app.extensions["healthprobe"]``).

    Raises:
        RuntimeError: no app given outside an application context (Flask's own error), or
            the app was not set up by a :class:`HealthProbe`.
    """
    target: Flask = flask.current_app if app is None else app
    found = target.extensions.get(EXTENSION_KEY)
    if not isinstance(found, ProbeState):
        raise RuntimeError(
            f"Flask app {target.name!r} is not set up by healthprobe: call HealthProbe(app) or health.init_app(app)"
        )
    return found


def registry(app: Flask | None = None) -> HealthRegistry:
    """The registry of an app, for its views: ``healthprobe.flask.registry().run("readiness")``.

    Args:
        app: a Flask app; ``None`` (the default) means the app of the current application
            or request context.

    Returns:
        The app's :class:`~healthprobe.registry.HealthRegistry`.

    Raises:
        RuntimeError: as :func:`state`.
    """
    return state(app).registry


# -- settings ------------------------------------------------------------------------------------


def _settings_of(app: Flask, defaults: Settings, group_path_given: bool) -> Settings:
    """The app's settings: its ``HEALTHPROBE_*`` keys over ``defaults``, checked; the
    effective values are written back into ``app.config`` (``HEALTHPROBE_GROUP_PATH``:
    ``None`` when the default gives way to a probe path)."""
    config = app.config
    _refuse_unknown(config.keys(), app.name)
    metrics_path_set = PREFIX + "METRICS_PATH" in config
    values = {field: config.get(key, getattr(defaults, field)) for key, field in SETTINGS.items()}
    settings = _settings(values, lambda field: f"app.config[{PREFIX + field.upper()!r}]", group_path_given)
    if metrics_path_set and settings.metrics is False and settings.metrics_path != "/metrics":
        raise ValueError(
            f"app.config['{PREFIX}METRICS_PATH'] is {settings.metrics_path!r} but metrics are off: "
            f"set app.config['{PREFIX}METRICS'] = True"
        )
    for key, field in SETTINGS.items():
        value = getattr(settings, field)
        if field == "group_path" and not group_path_given and _group_path_clash(value, _taken(settings)):
            value = None
        if isinstance(value, collections.abc.Mapping):  # plain words, as a config file would give them
            value = {str(k): v.value if isinstance(v, _types.Probe) else v for k, v in value.items()}
        config.setdefault(key, value)
    return settings


def _refuse_unknown(keys: Iterable[object], app_name: str) -> None:
    """Raise ``ValueError`` for a key that is meant as a setting and is none: any other
    ``HEALTHPROBE_*`` key, and a near miss of the prefix (``HEALTH_PROBE_METRICS``)."""
    known = list(SETTINGS)
    by_suffix = {key[len(PREFIX) :]: key for key in known}
    for key in keys:
        if not isinstance(key, str) or key in SETTINGS:
            continue
        upper = key.upper()
        if upper.startswith(PREFIX):
            close = [by_suffix[s] for s in difflib.get_close_matches(upper[len(PREFIX) :], by_suffix, n=1, cutoff=0.6)]
        elif upper.startswith("HEALTH"):
            close = difflib.get_close_matches(upper, known, n=1, cutoff=0.85)
            if not close:
                continue
        else:
            continue
        hint = f"did you mean {close[0]!r}?" if close else f"the settings are {', '.join(known)}"
        raise ValueError(f"unknown healthprobe setting app.config[{key!r}] of Flask app {app_name!r}: {hint}")


def _settings(values: Mapping[str, Any], where: Callable[[str], str], group_path_given: bool) -> Settings:
    """Check every value (types first, then ranges) and build :class:`Settings`; a
    ``group_path`` not given may clash with a probe path (it then gives way)."""
    settings = Settings(
        paths=_paths(values["paths"], where("paths")),
        failure_status=_failure_status(values["failure_status"], where("failure_status")),
        expose_output=_flag(values["expose_output"], where("expose_output")),
        metrics=_metrics(values["metrics"], where("metrics")),
        metrics_path=_path(values["metrics_path"], where("metrics_path"), "metrics"),
        shutdown=_flag(values["shutdown"], where("shutdown")),
        shutdown_delay=(
            None if values["shutdown_delay"] is None else _seconds(values["shutdown_delay"], where("shutdown_delay"))
        ),
        drain_timeout=_seconds(values["drain_timeout"], where("drain_timeout")),
        hook_timeout=_seconds(values["hook_timeout"], where("hook_timeout")),
        grace_period=_seconds(values["grace_period"], where("grace_period")),
        repeat_window=_seconds(values["repeat_window"], where("repeat_window")),
        guard=_guard_of(values["guard"], where("guard")),
        group_path=(
            None if values["group_path"] is None else _path(values["group_path"], where("group_path"), "group")
        ),
    )
    if settings.metrics is not False:
        clash = _probe_path_of(settings.metrics_path, settings.paths)
        if clash is not None:
            path = settings.metrics_path
            what = (
                f"which is also a probe path of {where('paths')}"
                if clash == path
                else f"which the probe path {clash!r} of {where('paths')} answers (as {clash}/<check>)"
            )
            example = ", such as '/metrics'" if _probe_path_of("/metrics", settings.paths) is None else ""
            raise ValueError(
                f"{where('metrics_path')} is {path!r}, {what}: give the metrics a path of their own{example}"
            )
    _check_group_path(settings, where, group_path_given)
    if settings.guard is not None:
        try:  # the guard's admin paths against the probe paths, by the endpoints' rule
            http.HealthEndpoints(
                _registry.HealthRegistry(), paths=settings.paths, guard=settings.guard, group_path=None
            )
        except ValueError as exc:
            raise ValueError(f"{where('guard')}: {exc}") from None
        admin = {settings.guard.rotation_path, settings.guard.threads_path}
        if settings.metrics is not False and settings.metrics_path in admin:
            raise ValueError(f"{where('guard')}: an admin path is also the metrics path {settings.metrics_path!r}")
    return settings


def _taken(settings: Settings) -> list[str]:
    """The paths a group path may not be, nor lie above or below: the probe paths, and the
    metrics path when metrics are on."""
    return [*settings.paths, *([settings.metrics_path] if settings.metrics is not False else [])]


def _group_path_clash(group_path: str | None, taken: Iterable[str]) -> str | None:
    """The path of ``taken`` that ``group_path`` is, lies below or lies above (the rule of
    :class:`healthprobe.http.EndpointOptions`), or ``None``."""
    if group_path is None:
        return None
    return next(
        (p for p in taken if p == group_path or p.startswith(group_path + "/") or group_path.startswith(p + "/")),
        None,
    )


def _check_group_path(settings: Settings, where: Callable[[str], str], given: bool) -> None:
    group_path = settings.group_path
    if group_path == "/":
        raise ValueError(f"{where('group_path')} must not be '/': every path of the app would be a group's")
    clash = _group_path_clash(group_path, _taken(settings))
    if clash is not None and given:
        raise ValueError(
            f"{where('group_path')} is {group_path!r}, which clashes with the path {clash!r}: "
            "give groups a path of their own, such as '/groups'"
        )


def _guard_of(value: object, where: str) -> Guard | None:
    """A :class:`~healthprobe.guard.Guard`, one built from a dict of its keyword arguments,
    or ``None``; the token never appears in a message."""
    if value is None or isinstance(value, _guard.Guard):
        return value
    if not isinstance(value, collections.abc.Mapping):
        raise TypeError(
            f"{where} must be a healthprobe.Guard, a dict of its keyword arguments such as "
            f"{{'token': '...'}}, or None, got {type(value).__name__}"
        )
    known = list(inspect.signature(_guard.Guard).parameters)
    for key in value:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"the keys are {', '.join(known)}"
            raise TypeError(f"{where} has an unknown key {key!r}: {hint}")
    try:
        return _guard.Guard(**value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


def _warn_pathless_groups(health: HealthRegistry, app_name: str, clash: str) -> None:
    """Log one WARNING once ``health`` has a group that the app cannot answer: now, or at
    the first probe answered after a group is added (a report listener that does nothing
    after it warned)."""

    def warn() -> None:
        _logger.warning(
            "healthprobe.flask: Flask app %r has groups (%s) but answers none over HTTP: its probe path %r is at or "
            "below %s, where groups are answered by default; set app.config['%sGROUP_PATH'] (or "
            "HealthProbe(group_path=...)) to a path of their own, such as '/groups' (see %s)",
            app_name,
            ", ".join(health.groups),
            clash,
            http.DEFAULT_GROUP_PATH,
            PREFIX,
            DOCS,
        )

    http.when_grouped(health, warn)


def _probe_path_of(path: str, paths: Iterable[str]) -> str | None:
    """The probe path that answers ``path``: itself, or the probe path it is a check of
    (``/readyz/<check>``), as :meth:`healthprobe.http.HealthEndpoints.route` matches them."""
    for probe_path in paths:
        if path == probe_path or (path.startswith(probe_path) and path[len(probe_path) : len(probe_path) + 1] == "/"):
            return probe_path
    return None


def _got(value: object) -> str:
    return f"got {value!r} ({type(value).__name__})"


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where} must be True or False, {_got(value)}")
    return value


def _seconds(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where} must be a number of seconds, {_got(value)}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _path(value: object, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a path (str), {_got(value)}")
    try:
        http.check_path(what, value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return value


def _probe(value: object, where: str) -> Probe:
    if isinstance(value, _types.Probe):
        return value
    try:
        return _types.Probe(value)
    except ValueError:
        names = ", ".join(repr(p.value) for p in _types.Probe)
        raise ValueError(f"{where}: unknown probe {value!r}, expected one of {names}") from None


def _paths(value: object, where: str) -> dict[str, Probe]:
    if not isinstance(value, collections.abc.Mapping):
        raise TypeError(
            f"{where} must be a mapping of path to probe, such as {{'/readyz': 'readiness'}}, {_got(value)}"
        )
    if not value:
        raise ValueError(f"{where} must name at least one probe path")
    return {_path(path, where, "probe"): _probe(probe, f"{where}[{path!r}]") for path, probe in value.items()}


def _status(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where} must be an HTTP status code (int), {_got(value)}")
    if not 400 <= value <= 599:
        raise ValueError(f"{where} must be a status code from 400 to 599, got {value}")
    return value


def _failure_status(value: object, where: str) -> int | dict[str, int]:
    if isinstance(value, collections.abc.Mapping):
        return {_probe(probe, where).value: _status(code, f"{where}[{probe!r}]") for probe, code in value.items()}
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{where} must be a status code or a mapping of probe to status code, such as {{'liveness': 500}}, "
            f"{_got(value)}"
        )
    return _status(value, where)


def _metrics(value: object, where: str) -> bool | MetricsSource:
    if isinstance(value, bool):
        return value
    if callable(getattr(value, "expose", None)):
        return value  # type: ignore[return-value]
    raise TypeError(f"{where} must be True, False or a MetricsSource, {_got(value)}")


# -- the process -----------------------------------------------------------------------------------


def _hook_or_decorator(
    add: Callable[[Hook, str | None], None], func: H | None, name: str | None
) -> H | Callable[[H], H]:
    """What ``on_shutdown`` returns: ``func`` once ``add`` took it, or, without ``func``
    (``@on_shutdown(name=...)``), the decorator that does so."""
    if func is not None:
        add(func, name)
        return func

    def register(hook: H) -> H:
        add(hook, name)
        return hook

    return register


def _check_hook(func: object, name: str | None) -> None:
    """Raise ``TypeError`` as :meth:`GracefulShutdown.add_hook` would for ``func``."""
    if not callable(func):
        raise TypeError(f"hook must be callable, got {type(func).__name__}")
    try:
        inspect.signature(func).bind()
    except TypeError:
        hook_name = name or str(getattr(func, "__name__", repr(func)))
        raise TypeError(f"hook {hook_name!r} must be callable with no arguments") from None
    except ValueError:  # no signature to read (some builtins)
        pass


def _is_probe_middleware(app: object) -> bool:
    return isinstance(getattr(app, "endpoints", None), http.HealthEndpoints) and hasattr(app, "shutdown")


def _serving_coordinator() -> GracefulShutdown | None:
    """The :class:`GracefulShutdown` whose handlers serve this process already (installed as
    a gunicorn worker or ``waitress-serve`` imported an app), or ``None``."""
    if not _launch.in_main_thread():
        return None
    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if isinstance(owner, _shutdown.GracefulShutdown) and owner.pid == os.getpid() and not owner.is_stopped:
        return owner
    return None
