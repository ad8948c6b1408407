# mypy: disable-error-code="import-untyped"
"""The ``HEALTHPROBE`` setting: read, checked, and turned into what :mod:`healthprobe.django`
builds.

One dict in the project's settings configures everything. Upper-case keys are this
integration's own; the lower-case keys of a check entry and of ``SHUTDOWN`` are the keyword
arguments of :meth:`healthprobe.HealthRegistry.add_check` and of
:class:`healthprobe.shutdown.GracefulShutdown`::

    HEALTHPROBE = {
        "CHECKS": [
            "mysite.health.search_index",                    # a dotted path: readiness, defaults
            {"check": "mysite.health.database_writable", "timeout": 0.5},
            {"check": "mysite.health.disk", "critical": False, "cache_ttl": 10},
        ],
        "DATABASES": ["default"],   # SELECT 1 per alias, readiness (the default)
        "CACHES": [],               # set/get per alias, readiness
        "MIGRATIONS": True,         # no unapplied migration on "default", startup (the default)
        "METRICS": "/metrics",      # off by default
        "SHUTDOWN": {"drain_timeout": 20},
        "GROUPS": {"wellness": {"tags": ["external"]}},   # answered at /health/wellness
        "GUARD": {"token": os.environ["HEALTH_TOKEN"]},  # details only with the token
    }

:func:`load` reads the setting and returns every problem it finds instead of raising, so that
``manage.py check`` can list them all; the system check (:mod:`healthprobe.django.system_checks`)
reports them, and :func:`healthprobe.django.registry` and the application factories raise
:class:`MisconfiguredError` (an ``ImproperlyConfigured``) on its errors, each on one line
that names the fix.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import types
import typing

import django.core.exceptions

from .. import _runner, _types, http, registry
from .. import guard as _guard_module
from . import checks as builtin

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from .._runner import CheckFunc

__all__ = [
    "BUILTIN_KEYS",
    "CHECK_KEYS",
    "DOCS",
    "GROUPLESS",
    "GROUP_KEYS",
    "GUARD_KEYS",
    "KEYS",
    "SETTING",
    "SHUTDOWN_KEYS",
    "Basics",
    "CheckSpec",
    "GroupSpec",
    "MisconfiguredError",
    "Problem",
    "load",
    "load_basics",
    "load_checks",
]

#: The name of the setting.
SETTING = "HEALTHPROBE"
#: Where the settings are documented, named in every hint.
DOCS = "docs/frameworks/django.md"
#: The keys of ``HEALTHPROBE`` and what each holds.
KEYS: Mapping[str, str] = {
    "CHECKS": "a list of checks: dotted paths, or dicts with 'check' and add_check's keyword arguments",
    "DATABASES": "a list of database aliases (or dicts with 'alias') checked with SELECT 1",
    "CACHES": "a list of cache aliases (or dicts with 'alias') checked with a set and a get",
    "MIGRATIONS": "True, False, a database alias, or a dict with 'alias': the unapplied-migrations check",
    "PATHS": "a dict of probe path to probe name",
    "FAILURE_STATUS": "the status code of a failing probe, or a dict of probe name to status code",
    "EXPOSE_OUTPUT": "True or False: show what checks wrote in probe bodies",
    "METRICS": "the path of the Prometheus metrics ('/metrics'), True for '/metrics', or None/False for off",
    "DEFAULT_TIMEOUT": "seconds a check may run when it sets no timeout",
    "DEFAULT_CACHE_TTL": "seconds a check's result is reused when it sets no cache_ttl",
    "SHUTDOWN": "a dict of GracefulShutdown's keyword arguments",
    "GROUPS": "a dict of group name to a dict of add_group's keyword arguments",
    "GROUP_PATH": "the path groups are answered under ('/health'), or None for none over HTTP",
    "GUARD": "a healthprobe.Guard, or a dict of its keyword arguments: who may see the details",
}
#: The keys of a dict in ``CHECKS`` (``check`` is required).
CHECK_KEYS = ("check", "name", "probes", "tags", "timeout", "critical", "cache_ttl", "interval")
#: The keys of a dict in ``DATABASES``, ``CACHES`` or of ``MIGRATIONS``.
BUILTIN_KEYS = ("alias", "name", "probes", "tags", "timeout", "critical", "cache_ttl", "interval")
#: The keys of a group in ``GROUPS``: :meth:`healthprobe.HealthRegistry.add_group`'s arguments.
GROUP_KEYS = ("checks", "tags", "lifecycle", "success_status", "failure_status", "expose_output")
#: The keys of a dict in ``GUARD``: :class:`healthprobe.Guard`'s arguments.
GUARD_KEYS = tuple(inspect.signature(_guard_module.Guard).parameters)
#: The id of the warning for groups left without a path (a probe path at or below ``/health``).
GROUPLESS = "healthprobe.W004"
#: The keys of ``SHUTDOWN``: :class:`healthprobe.shutdown.GracefulShutdown`'s arguments.
SHUTDOWN_KEYS = ("delay", "drain_timeout", "hook_timeout", "grace_period", "repeat_window")


class MisconfiguredError(django.core.exceptions.ImproperlyConfigured):  # type: ignore[misc]
    """``HEALTHPROBE`` has errors: raised by :func:`healthprobe.django.registry` and the
    application factories, one line per error (:meth:`Problem.line`)."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with the settings, as Django's system check framework reports it.

    Attributes:
        id: the check id: ``healthprobe.E001`` ... for errors, ``healthprobe.W...`` for
            warnings (docs/frameworks/django.md lists them).
        message: what is wrong, naming the key.
        hint: the fix.
        obj: what the message is about (``settings.HEALTHPROBE``), shown first by Django.
    """

    id: str
    message: str
    hint: str
    obj: str = "settings.HEALTHPROBE"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hint", self.hint[:1].upper() + self.hint[1:])  # a sentence

    @property
    def is_error(self) -> bool:
        """Whether this problem stops the application from starting (an ``E`` id)."""
        return ".E" in self.id

    def line(self) -> str:
        """The problem on one line: ``healthprobe.E002: <message>. <hint>``."""
        return f"{self.id}: {self.message}. {self.hint}"


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    """One check to register: :meth:`HealthRegistry.add_check`'s arguments.

    Attributes:
        name: the check's name.
        func: the check callable.
        probes: the probes it belongs to.
        timeout, cache_ttl, interval: seconds, or ``None`` for the registry's default.
        critical: whether a failure fails its probes.
        where: where it was configured (``HEALTHPROBE['CHECKS'][0]``), for messages.
    """

    name: str
    func: _runner.CheckFunc  # by module, which typing.get_type_hints resolves at run time
    probes: tuple[str, ...]
    timeout: float | None
    critical: bool
    cache_ttl: float | None
    interval: float | None
    where: str
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """One group to register: :meth:`HealthRegistry.add_group`'s arguments.

    Attributes:
        name: the group's name, in its path (``/health/<name>``).
        options: ``checks``, ``tags``, ``lifecycle``, ``success_status``,
            ``failure_status``, ``expose_output``, as given.
    """

    name: str
    options: dict[str, typing.Any]


@dataclasses.dataclass(frozen=True)
class Basics:
    """Everything ``HEALTHPROBE`` configures but the checks.

    Attributes:
        paths: probe path to probe name, or ``None`` for the defaults
            (``/livez``, ``/healthz``, ``/readyz``, ``/startupz``).
        failure_status: the status code of a failing probe, one or per probe.
        expose_output: whether probe bodies show what checks wrote.
        metrics_path: the path of the Prometheus metrics, or ``None`` when they are off.
        default_timeout, default_cache_ttl: the registry's defaults, in seconds.
        shutdown: the keyword arguments of the :class:`GracefulShutdown`.
        groups: the groups of ``GROUPS``, registered after the checks.
        group_path: the path groups are answered under, or ``None`` for none over HTTP.
        group_path_given: whether ``GROUP_PATH`` is set; when not, the endpoints' default
            (``/health``) gives way to a probe path at or below it.
        guard: the :class:`healthprobe.Guard` of ``GUARD``, or ``None``.
    """

    paths: dict[str, str] | None = None
    failure_status: int | dict[str, int] = 503
    expose_output: bool = False
    metrics_path: str | None = None
    default_timeout: float = registry.DEFAULT_TIMEOUT
    default_cache_ttl: float = registry.DEFAULT_CACHE_TTL
    shutdown: dict[str, float | None] = dataclasses.field(default_factory=dict)
    groups: tuple[GroupSpec, ...] = ()
    group_path: str | None = http.DEFAULT_GROUP_PATH
    group_path_given: bool = False
    guard: _guard_module.Guard | None = None

    def endpoint_options(self) -> dict[str, Any]:
        """The keyword arguments of the adapters' ``HealthMiddleware`` (but ``shutdown``)."""
        options = {
            "paths": self.paths,
            "failure_status": self.failure_status,
            "expose_output": self.expose_output,
            "metrics": self.metrics_path is not None,
            "metrics_path": self.metrics_path or "/metrics",
            "guard": self.guard,
        }
        if self.group_path_given:
            options["group_path"] = self.group_path
        return options

    def groupless_clash(self) -> str | None:
        """The probe (or metrics) path that leaves groups without a path: one at or below
        ``/health`` while ``GROUP_PATH`` is not set; else ``None``."""
        if self.group_path_given:
            return None
        return _clash(http.DEFAULT_GROUP_PATH, self.probe_paths())

    def probe_paths(self) -> tuple[str, ...]:
        """Every path the probes (and the metrics) are answered on."""
        paths = tuple(http.DEFAULT_PATHS if self.paths is None else self.paths)
        return paths + ((self.metrics_path,) if self.metrics_path else ())


def _clash(group_path: str, taken: Iterable[str]) -> str | None:
    """The path of ``taken`` that ``group_path`` is, lies below or above, or ``None``."""
    return next(
        (p for p in taken if p == group_path or p.startswith(group_path + "/") or group_path.startswith(p + "/")),
        None,
    )


def _raw(settings: Any) -> object:
    return getattr(settings, SETTING, None)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    options = list(choices)
    by_case = [c for c in options if c.lower() == word.lower()]
    close = by_case or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(word.upper(), options, n=1, cutoff=0.6)
        close = close or difflib.get_close_matches(word.lower(), options, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _unknown_keys(where: str, given: Mapping[Any, Any], known: Iterable[str]) -> list[Problem]:
    known = list(known)
    problems = []
    for key in given:
        if key in known:
            continue
        shown = key if isinstance(key, str) else repr(key)
        problems.append(
            Problem(
                "healthprobe.E002",
                f"{where} has an unknown key {shown!r}",
                f"{_did_you_mean(str(key), known)}The keys are {', '.join(known)} (see {DOCS})",
            )
        )
    return problems


def _bad(where: str, what: str, hint: str) -> Problem:
    return Problem("healthprobe.E003", f"{where} {what}", hint)


def _seconds(where: str, value: object, *, positive: bool, none: bool = True) -> tuple[float | None, Problem | None]:
    """``value`` as seconds (the registry's rule), or the problem with it."""
    if value is None and none:
        return None, None
    try:
        registry.check_seconds(where, value, positive=positive)  # type: ignore[arg-type]
    except ValueError:
        wanted = f"a finite number of seconds {'> 0' if positive else '>= 0'}" + (", or None" if none else "")
        return None, _bad(where, f"is {value!r}", f"give {wanted} (see {DOCS})")
    return float(value), None  # type: ignore[arg-type]


def _settings() -> Any:
    from django.conf import settings

    return settings


def load_basics(settings: Any = None) -> tuple[Basics, list[Problem]]:
    """Read everything ``HEALTHPROBE`` configures but the checks, importing nothing.

    Args:
        settings: the settings object to read (``django.conf.settings`` when ``None``).

    Returns:
        ``(basics, problems)``: the :class:`Basics` to use (defaults where a value is wrong)
        and every problem found, errors and warnings (an empty list when all is well).
    """
    settings = _settings() if settings is None else settings
    raw = _raw(settings)
    problems: list[Problem] = []
    if raw is None:
        return Basics(), _logging_problems(settings)
    if not isinstance(raw, collections.abc.Mapping):
        problems.append(
            Problem(
                "healthprobe.E001",
                f"HEALTHPROBE must be a dict, not {type(raw).__name__}",
                f"write HEALTHPROBE = {{}} for the defaults, or a dict of the keys in {DOCS}",
            )
        )
        return Basics(), problems
    problems += _unknown_keys("HEALTHPROBE", raw, KEYS)
    values: dict[str, Any] = {}

    paths = raw.get("PATHS")
    if paths is not None:
        if not isinstance(paths, collections.abc.Mapping) or not paths or not all(isinstance(k, str) for k in paths):
            problems.append(
                _bad(
                    "HEALTHPROBE['PATHS']",
                    f"is {paths!r}",
                    "give a dict of path to probe name, such as {'/livez': 'liveness', '/readyz': 'readiness', "
                    "'/startupz': 'startup'}",
                )
            )
        else:
            values["paths"] = dict(paths)

    status = raw.get("FAILURE_STATUS", 503)
    if isinstance(status, collections.abc.Mapping):
        values["failure_status"] = dict(status)
    else:
        values["failure_status"] = status

    expose = raw.get("EXPOSE_OUTPUT", False)
    if not isinstance(expose, bool):
        problems.append(_bad("HEALTHPROBE['EXPOSE_OUTPUT']", f"is {expose!r}", "write True or False"))
    else:
        values["expose_output"] = expose

    metrics = raw.get("METRICS")
    if metrics is True:
        values["metrics_path"] = "/metrics"
    elif isinstance(metrics, str):
        values["metrics_path"] = metrics
    elif metrics is not None and metrics is not False:
        problems.append(
            _bad(
                "HEALTHPROBE['METRICS']",
                f"is {metrics!r}",
                "write the path of the metrics, such as '/metrics', or None to leave them off",
            )
        )

    for key, field, positive in (
        ("DEFAULT_TIMEOUT", "default_timeout", True),
        ("DEFAULT_CACHE_TTL", "default_cache_ttl", False),
    ):
        if key in raw:
            value, problem = _seconds(f"HEALTHPROBE[{key!r}]", raw[key], positive=positive, none=False)
            if problem is not None:
                problems.append(problem)
            else:
                values[field] = value

    shutdown = raw.get("SHUTDOWN", {})
    if not isinstance(shutdown, collections.abc.Mapping):
        problems.append(
            _bad(
                "HEALTHPROBE['SHUTDOWN']",
                f"is {shutdown!r}",
                f"give a dict of GracefulShutdown's keyword arguments ({', '.join(SHUTDOWN_KEYS)})",
            )
        )
    else:
        problems += _unknown_keys("HEALTHPROBE['SHUTDOWN']", shutdown, SHUTDOWN_KEYS)
        options: dict[str, float | None] = {}
        for key in SHUTDOWN_KEYS:
            if key in shutdown:
                value, problem = _seconds(
                    f"HEALTHPROBE['SHUTDOWN'][{key!r}]", shutdown[key], positive=False, none=key == "delay"
                )
                if problem is not None:
                    problems.append(problem)
                else:
                    options[key] = value
        values["shutdown"] = options

    if "GROUP_PATH" in raw:
        group_path = raw["GROUP_PATH"]
        if group_path is not None and not isinstance(group_path, str):
            problems.append(
                _bad(
                    "HEALTHPROBE['GROUP_PATH']",
                    f"is {group_path!r}",
                    "write a path such as '/groups', or None to answer no group over HTTP",
                )
            )
        else:
            values["group_path"] = group_path
            values["group_path_given"] = True
    found_guard, guard_problems = _guard("HEALTHPROBE['GUARD']", raw.get("GUARD"))
    values["guard"] = found_guard
    problems += guard_problems
    groups, group_problems = _groups(raw.get("GROUPS"))
    values["groups"] = groups
    problems += group_problems

    basics, found = _checked_endpoints(Basics(**values))
    clash = basics.groupless_clash()
    if basics.groups and clash is not None:
        found.append(
            Problem(
                GROUPLESS,
                f"HEALTHPROBE['GROUPS'] has groups ({', '.join(g.name for g in basics.groups)}) but none is answered "
                f"over HTTP: the probe path {clash!r} is at or below {http.DEFAULT_GROUP_PATH}, where groups are "
                "answered by default",
                f"set HEALTHPROBE['GROUP_PATH'] to a path of their own, such as '/groups' (see {DOCS})",
            )
        )
    return basics, problems + found + _logging_problems(settings)


def _guard(where: str, value: object) -> tuple[_guard_module.Guard | None, list[Problem]]:
    """The guard of ``GUARD`` (a Guard, or a dict of its keyword arguments), or the
    problems with it; never a message that shows the token."""
    if value is None or isinstance(value, _guard_module.Guard):
        return value, []
    if not isinstance(value, collections.abc.Mapping):
        return None, [
            _bad(
                where,
                f"is a {type(value).__name__}",
                "give a healthprobe.Guard, or a dict of its keyword arguments such as "
                "{'token': os.environ['HEALTH_TOKEN'], 'networks': ['10.0.0.0/8']}",
            )
        ]
    problems = _unknown_keys(where, value, GUARD_KEYS)
    if problems:
        return None, problems
    try:
        return _guard_module.Guard(**value), []
    except (TypeError, ValueError) as exc:  # Guard's messages never hold the token
        return None, [_bad(where, "is refused", f"{exc} (see {DOCS})")]


def _groups(raw: object) -> tuple[tuple[GroupSpec, ...], list[Problem]]:
    """The groups of ``GROUPS``, each checked by registering it on a scratch registry (so
    the rules are add_group's own), or the problems with them."""
    if raw is None:
        return (), []
    if not isinstance(raw, collections.abc.Mapping):
        return (), [
            _bad(
                "HEALTHPROBE['GROUPS']",
                f"is a {type(raw).__name__}",
                "give a dict of group name to add_group's arguments, such as {'wellness': {'tags': ['external']}}",
            )
        ]
    specs: list[GroupSpec] = []
    problems: list[Problem] = []
    scratch = registry.HealthRegistry()
    for name, entry in raw.items():
        where = f"HEALTHPROBE['GROUPS'][{name!r}]"
        if not isinstance(entry, collections.abc.Mapping):
            problems.append(
                _bad(where, f"is {entry!r}", f"give a dict of add_group's arguments ({', '.join(GROUP_KEYS)})")
            )
            continue
        unknown = _unknown_keys(where, entry, GROUP_KEYS)
        if unknown:
            problems += unknown
            continue
        options = dict(entry)
        try:
            scratch.add_group(name, **options)
        except (TypeError, ValueError) as exc:
            problems.append(_bad(where, "is refused", str(exc)))
            continue
        specs.append(GroupSpec(name, options))
    return tuple(specs), problems


def _checked_endpoints(basics: Basics) -> tuple[Basics, list[Problem]]:
    """The paths, failure statuses and metrics path, checked by the endpoints themselves (on
    a registry of no check, which runs nothing); a wrong value is replaced by its default."""
    problems: list[Problem] = []
    try:
        endpoints = http.HealthEndpoints(registry.HealthRegistry(), paths=basics.paths)
    except Exception as exc:  # TypeError, ValueError; AttributeError for a path that is no str
        problems.append(_bad("HEALTHPROBE['PATHS']", f"is {basics.paths!r}", f"{exc} (see {DOCS})"))
        basics = dataclasses.replace(basics, paths=None)
        endpoints = http.HealthEndpoints(registry.HealthRegistry())
    if basics.group_path_given and basics.group_path is not None:
        group_path = basics.group_path
        clash = _clash(group_path, basics.probe_paths())
        hint = None
        if group_path == "/":
            hint = "'/' would make every path of the site a group's"
        elif clash is not None:
            hint = (
                f"it clashes with the path {clash!r} (a group path is no probe or metrics path, nor above or below one)"
            )
        else:
            try:
                http.check_path("group", group_path)
            except ValueError as exc:
                hint = str(exc)
        if hint is not None:
            problems.append(
                _bad(
                    "HEALTHPROBE['GROUP_PATH']",
                    f"is {group_path!r}",
                    f"{hint}: give groups a path of their own, such as '/groups'",
                )
            )
            basics = dataclasses.replace(basics, group_path=None)
    if basics.guard is not None:
        try:
            http.HealthEndpoints(registry.HealthRegistry(), paths=basics.paths, guard=basics.guard, group_path=None)
        except ValueError as exc:
            problems.append(_bad("HEALTHPROBE['GUARD']", "is refused", f"{exc} (see {DOCS})"))
            basics = dataclasses.replace(basics, guard=None)
    wrong = _failure_status_problem(basics.failure_status)
    if wrong is None:
        try:
            http.HealthEndpoints(registry.HealthRegistry(), failure_status=basics.failure_status)
        except Exception as exc:  # TypeError, ValueError: what the rules above missed
            wrong = f"FAILURE_STATUS is refused ({exc})"
    if wrong is not None:
        problems.append(
            _bad(
                "HEALTHPROBE['FAILURE_STATUS']",
                f"is {basics.failure_status!r}",
                f"{wrong}; write an int, or a dict such as {{'readiness': 503, 'liveness': 500}}",
            )
        )
        basics = dataclasses.replace(basics, failure_status=503)
    path = basics.metrics_path
    if path is None:
        return basics, problems
    try:
        http.check_path("metrics", path)
    except ValueError as exc:
        problems.append(_bad("HEALTHPROBE['METRICS']", f"is {path!r}", f"{exc}, such as '/metrics'"))
    else:
        if endpoints.route(path) is not None:
            problems.append(
                _bad(
                    "HEALTHPROBE['METRICS']",
                    f"is {path!r}, which is also a probe path",
                    "give the metrics a path of their own, such as '/metrics'",
                )
            )
        elif importlib.util.find_spec("prometheus_client") is None:
            problems.append(
                Problem(
                    "healthprobe.E008",
                    "HEALTHPROBE['METRICS'] is on but prometheus-client is not installed",
                    "install it with pip install 'healthprobe[prometheus]', or set 'METRICS': None",
                )
            )
        else:
            return basics, problems
    return dataclasses.replace(basics, metrics_path=None), problems


def _failure_status_problem(value: object) -> str | None:
    """What is wrong with a ``FAILURE_STATUS``, in words that name the key as it is written
    in the settings, or ``None``."""

    def code_problem(key: str, code: object) -> str | None:
        if isinstance(code, bool) or not isinstance(code, int):
            return f"{key} must be an int (a status code from 400 to 599), not {code!r}"
        if not 400 <= code <= 599:
            return f"{key} must be a status code from 400 to 599, not {code}"
        return None

    if not isinstance(value, collections.abc.Mapping):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"FAILURE_STATUS must be an int or a dict of probe name to int, not {value!r}"
        return code_problem("FAILURE_STATUS", value)
    for probe, code in value.items():
        try:
            registry.as_probe(probe)
        except (ValueError, TypeError):
            names = ", ".join(repr(p.value) for p in _types.Probe)
            return f"FAILURE_STATUS names the probe {probe!r}: the probes are {names}"
        problem = code_problem(f"FAILURE_STATUS[{probe!r}]", code)
        if problem is not None:
            return problem
    return None


def _logging_problems(settings: Any) -> list[Problem]:
    """A ``LOGGING`` that disables healthprobe's loggers: ``logging.config.dictConfig``
    disables every logger that exists and is not named in it unless
    ``disable_existing_loggers`` is ``False`` (its default is ``True``), and healthprobe's
    exist before Django configures logging when the application is built by
    :func:`healthprobe.django.get_wsgi_application`."""
    if getattr(settings, "LOGGING_CONFIG", "logging.config.dictConfig") != "logging.config.dictConfig":
        return []  # Django does not configure logging, or does it its own way
    logging_config = getattr(settings, "LOGGING", None)
    if not isinstance(logging_config, collections.abc.Mapping) or not logging_config:
        return []
    if logging_config.get("disable_existing_loggers", True) is False:
        return []
    loggers = logging_config.get("loggers") or {}
    if isinstance(loggers, collections.abc.Mapping) and "healthprobe" in loggers:
        return []
    return [
        Problem(
            "healthprobe.W002",
            "LOGGING disables the loggers that exist when Django configures logging, healthprobe's among them "
            "('disable_existing_loggers' is True, the default of logging.config.dictConfig), so its check "
            "failures and shutdown lines would not show",
            "add 'disable_existing_loggers': False to LOGGING, or configure the 'healthprobe' logger in it",
            obj="settings.LOGGING",
        )
    ]


def _default_alias(settings: Any) -> str | None:
    """``"default"`` when the project has a default database with a real engine (Django's
    dummy engine stands for no database at all)."""
    databases = getattr(settings, "DATABASES", None) or {}
    default = databases.get("default") if isinstance(databases, collections.abc.Mapping) else None
    if not isinstance(default, collections.abc.Mapping):
        return None
    engine = default.get("ENGINE") or ""
    if not engine or engine == "django.db.backends.dummy":
        return None
    return "default"


def _entry_options(where: str, entry: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """Check the add_check keyword arguments of one entry (probes, timeout, critical,
    cache_ttl, interval)."""
    problems: list[Problem] = []
    options: dict[str, Any] = {}
    probes = entry.get("probes")
    if probes is not None:
        names = [probes] if isinstance(probes, str) else probes
        if not isinstance(names, (list, tuple)):
            problems.append(
                _bad(
                    f"{where}['probes']",
                    f"is {probes!r}",
                    "give a list of 'startup', 'readiness', 'liveness', or [] for a check only groups run",
                )
            )
        else:
            try:
                options["probes"] = tuple(registry.as_probe(name).value for name in names)
            except (ValueError, TypeError) as exc:
                problems.append(_bad(f"{where}['probes']", f"is {probes!r}", str(exc)))
    if "tags" in entry:
        tags = entry["tags"]
        words = [tags] if isinstance(tags, str) else tags
        bad = not isinstance(words, (list, tuple)) or not all(
            isinstance(w, str) and registry.CHECK_NAME.fullmatch(w) for w in words
        )
        if bad:
            problems.append(
                _bad(
                    f"{where}['tags']",
                    f"is {tags!r}",
                    "give a list of tags, each 1-63 letters, digits, '_', '.' or '-', such as ['db', 'external']",
                )
            )
        else:
            options["tags"] = tuple(words)
    for key, positive in (("timeout", True), ("cache_ttl", False), ("interval", True)):
        if key in entry:
            value, problem = _seconds(f"{where}[{key!r}]", entry[key], positive=positive)
            if problem is not None:
                problems.append(problem)
            else:
                options[key] = value
    if "critical" in entry:
        if not isinstance(entry["critical"], bool):
            problems.append(_bad(f"{where}['critical']", f"is {entry['critical']!r}", "write True or False"))
        else:
            options["critical"] = entry["critical"]
    return options, problems


def _name_problem(where: str, name: object) -> Problem | None:
    if not isinstance(name, str) or not registry.CHECK_NAME.fullmatch(name):
        return _bad(
            where,
            f"gives the check name {name!r}",
            "a check name has 1-63 letters, digits, '_', '.' or '-', starting and ending with a letter or digit: "
            "give one with 'name'",
        )
    if name in registry.RESERVED_NAMES:
        return _bad(where, f"gives the check name {name!r}, which healthprobe uses itself", "give another 'name'")
    return None


def _spec(
    where: str, name: str, func: CheckFunc, default_probes: tuple[str, ...], options: Mapping[str, Any]
) -> CheckSpec:
    return CheckSpec(
        name=name,
        func=func,
        probes=options.get("probes", default_probes),
        timeout=options.get("timeout"),
        critical=options.get("critical", True),
        cache_ttl=options.get("cache_ttl"),
        interval=options.get("interval"),
        where=where,
        tags=options.get("tags", ()),
    )


def _import(where: str, path: object) -> tuple[object, Problem | None]:
    """The object a dotted path names, or the problem that keeps it from being had."""
    hint = (
        "Give the dotted path of a function (or callable object) that takes no arguments, "
        "such as 'mysite.health.database_writable'"
    )
    if not isinstance(path, str) or "." not in path.strip("."):
        return None, _bad(where, f"is {path!r}, not a dotted path", hint)
    module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except MisconfiguredError:
        # The module asked for the registry while the settings have errors: those errors
        # are reported by themselves, not as this path's.
        return None, None
    except Exception as exc:
        return None, _does_not_import(where, path, exc, hint)
    try:
        return getattr(module, attribute), None
    except AttributeError:
        pass
    # A submodule is no attribute of its package until something imports it: the path may
    # name a module (reported as such by _callable_problem), or nothing.
    try:
        return importlib.import_module(path), None
    except MisconfiguredError:
        return None, None
    except ModuleNotFoundError as exc:
        if exc.name != path:  # the module exists, and imports what is not there
            return None, _does_not_import(where, path, exc, hint)
    except Exception as exc:
        return None, _does_not_import(where, path, exc, hint)
    names = [n for n, v in vars(module).items() if not n.startswith("_") and callable(v)]
    return None, Problem(
        "healthprobe.E004",
        f"{where}: module {module_name!r} has no attribute {attribute!r}",
        f"{_did_you_mean(attribute, names)}{hint}",
    )


def _does_not_import(where: str, path: str, exc: BaseException, hint: str) -> Problem:
    first = (str(exc).strip().splitlines() or [""])[0]
    return Problem("healthprobe.E004", f"{where}: {path!r} does not import: {type(exc).__name__}: {first}", hint)


def _callable_problem(where: str, path: str, func: object) -> Problem | None:
    hint = "point at a function (or callable object) that takes no arguments and returns None, a bool or a CheckResult"
    if isinstance(func, types.ModuleType):
        names = [
            name
            for name, value in vars(func).items()
            if not name.startswith("_")
            and inspect.isfunction(value)
            and getattr(value, "__module__", None) == func.__name__
        ]
        example = f", such as {f'{path}.{names[0]}'!r}" if names else ""
        return Problem(
            "healthprobe.E005",
            f"{where}: {path!r} is a module, not a callable",
            f"name a function in it (or a callable object) that takes no arguments{example}",
        )
    if inspect.isclass(func):
        return Problem(
            "healthprobe.E005",
            f"{where}: {path!r} is a class, not a check",
            f"{hint}: an instance of the class, or a function that uses it",
        )
    if not callable(func):
        return Problem("healthprobe.E005", f"{where}: {path!r} is a {type(func).__name__}, not callable", hint)
    try:
        inspect.signature(func).bind()
    except TypeError:
        return Problem("healthprobe.E005", f"{where}: {path!r} cannot be called without arguments", hint)
    except ValueError:  # no signature to read (some builtins): found out at the first run
        pass
    return None


def _user_checks(raw: object) -> tuple[list[CheckSpec], list[Problem]]:
    if raw is None:
        return [], []
    if not isinstance(raw, (list, tuple)):
        return [], [
            _bad(
                "HEALTHPROBE['CHECKS']",
                f"is a {type(raw).__name__}",
                "give a list of dotted paths, or of dicts with 'check' and add_check's keyword arguments",
            )
        ]
    specs: list[CheckSpec] = []
    problems: list[Problem] = []
    for index, entry in enumerate(raw):
        where = f"HEALTHPROBE['CHECKS'][{index}]"
        if isinstance(entry, str):
            entry = {"check": entry}
        if not isinstance(entry, collections.abc.Mapping):
            problems.append(
                _bad(where, f"is {entry!r}", "give a dotted path, or a dict with 'check' and add_check's arguments")
            )
            continue
        problems += _unknown_keys(where, entry, CHECK_KEYS)
        if "check" not in entry:
            problems.append(
                _bad(where, "has no 'check'", "give the dotted path of the check: {'check': 'mysite.health.redis'}")
            )
            continue
        path = entry["check"]
        options, found = _entry_options(where, entry)
        problems += found
        func, problem = _import(where, path)
        if func is None and problem is None:
            continue
        if problem is None:
            problem = _callable_problem(where, str(path), func)
        if problem is not None:
            problems.append(problem)
            continue
        name = entry.get("name", str(path).rpartition(".")[2])
        problem = _name_problem(where, name)
        if problem is not None:
            problems.append(problem)
            continue
        if found:
            continue
        specs.append(_spec(where, name, func, ("readiness",), options))  # type: ignore[arg-type]
    return specs, problems


@dataclasses.dataclass(frozen=True)
class _Builtin:
    """A key of ``HEALTHPROBE`` that names aliases of a Django setting to check."""

    key: str  # DATABASES, CACHES or MIGRATIONS
    setting: str  # the Django setting whose aliases it names
    word: str  # the check's name ("<word>-<alias>" for an alias but "default")
    probes: tuple[str, ...]
    factory: Callable[[str], CheckFunc]


#: The built-in checks, in the order they are registered.
_BUILTINS = (
    _Builtin("DATABASES", "DATABASES", "database", ("readiness",), builtin.database),
    _Builtin("CACHES", "CACHES", "cache", ("readiness",), builtin.cache),
    _Builtin("MIGRATIONS", "DATABASES", "migrations", ("startup",), builtin.migrations),
)


def _builtins(kind: _Builtin, raw: object, settings: Any) -> tuple[list[CheckSpec], list[Problem]]:
    """The checks of ``DATABASES``, ``CACHES`` (a list of entries) or ``MIGRATIONS`` (one
    entry): each entry an alias, or a dict with ``alias`` and add_check's arguments."""
    key, setting, word = kind.key, kind.setting, kind.word
    known = list(getattr(settings, setting, None) or {})
    if key == "MIGRATIONS":
        entries = [raw]
    elif isinstance(raw, (list, tuple)):
        entries = list(raw)
    else:
        return [], [
            _bad(
                f"HEALTHPROBE[{key!r}]",
                f"is {raw!r}",
                f"give a list of aliases of settings.{setting}, such as ['default'], or [] for none",
            )
        ]
    specs: list[CheckSpec] = []
    problems: list[Problem] = []
    for index, entry in enumerate(entries):
        where = f"HEALTHPROBE[{key!r}]" if key == "MIGRATIONS" else f"HEALTHPROBE[{key!r}][{index}]"
        if isinstance(entry, str):
            entry = {"alias": entry}
        if not isinstance(entry, collections.abc.Mapping):
            problems.append(
                _bad(where, f"is {entry!r}", f"give an alias of settings.{setting}, or a dict with 'alias'")
            )
            continue
        problems += _unknown_keys(where, entry, BUILTIN_KEYS)
        alias = entry.get("alias", "default")
        options, found = _entry_options(where, entry)
        problems += found
        if alias not in known:
            problems.append(
                Problem(
                    "healthprobe.E006",
                    f"{where} names the alias {alias!r}, which is not in settings.{setting}",
                    f"{_did_you_mean(str(alias), known)}The aliases are {', '.join(map(repr, known)) or 'none'}",
                )
            )
            continue
        name = entry.get("name", word if alias == "default" else f"{word}-{alias}")
        problem = _name_problem(where, name)
        if problem is not None:
            problems.append(problem)
            continue
        if not found:
            specs.append(_spec(where, name, kind.factory(alias), kind.probes, options))
    return specs, problems


def load_checks(settings: Any = None) -> tuple[list[CheckSpec], list[Problem]]:
    """The checks ``HEALTHPROBE`` configures, importing the dotted paths of ``CHECKS``.

    In order: the database checks (``DATABASES``, readiness), the cache checks (``CACHES``,
    readiness), the migrations check (``MIGRATIONS``, startup), then ``CHECKS`` (readiness
    unless they say otherwise).

    Args:
        settings: the settings object to read (``django.conf.settings`` when ``None``).

    Returns:
        ``(specs, problems)``: the checks that can be registered, and every problem found
        (a check with a problem is left out).
    """
    settings = _settings() if settings is None else settings
    raw = _raw(settings)
    if raw is None:
        raw = {}
    if not isinstance(raw, collections.abc.Mapping):
        return [], []  # reported by load_basics
    default = _default_alias(settings)
    migrations = raw.get("MIGRATIONS", default is not None)
    given = {
        "DATABASES": raw.get("DATABASES", [default] if default else []),
        "CACHES": raw.get("CACHES", []),
        "MIGRATIONS": "default" if migrations is True else migrations,
    }
    specs: list[CheckSpec] = []
    problems: list[Problem] = []
    for kind in _BUILTINS:
        value = given[kind.key]
        if kind.key == "MIGRATIONS" and (value is False or value is None):
            continue  # off
        found = _builtins(kind, value, settings)
        specs += found[0]
        problems += found[1]
    found = _user_checks(raw.get("CHECKS"))
    specs += found[0]
    problems += found[1]

    seen: dict[str, str] = {}
    unique: list[CheckSpec] = []
    for spec in specs:
        if spec.name in seen:
            problems.append(
                Problem(
                    "healthprobe.E007",
                    f"{spec.where} and {seen[spec.name]} both name a check {spec.name!r}",
                    "give one of them another 'name'",
                )
            )
            continue
        seen[spec.name] = spec.where
        unique.append(spec)
    return unique, problems


def load(settings: Any = None) -> tuple[Basics, list[CheckSpec], list[Problem]]:
    """Read the whole ``HEALTHPROBE`` setting (see :func:`load_basics` and :func:`load_checks`).

    Returns:
        ``(basics, specs, problems)``.
    """
    basics, problems = load_basics(settings)
    specs, more = load_checks(settings)
    return basics, specs, problems + more
