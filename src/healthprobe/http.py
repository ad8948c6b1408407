"""Framework-free HTTP handling of probe requests, shared by the ASGI and WSGI adapters.

An adapter turns its protocol's request into ``(method, path, query_string, accept)``,
calls :meth:`HealthEndpoints.handle_sync` or :meth:`HealthEndpoints.handle_async`, and
writes back the :class:`Response` (or passes the request on when the answer is ``None``).
The endpoints remember the answers they may give again (:attr:`HealthEndpoints.answers`,
each an :class:`Answer` carrying what an adapter sends, ready-made), under the key the
adapter passes: its own raw request values, so that it finds a repeated probe's answer
without decoding anything.

Rules (Kubernetes "Configure Liveness, Readiness and Startup Probes": any code from 200 to
399 is success; kube-apiserver "Kubernetes API health endpoints" for paths and queries):

* ``GET`` and ``HEAD`` on a probe path; ``HEAD`` answers like ``GET`` without a body
  (RFC 9110 section 9.3.2). Other methods get ``405`` with ``Allow: GET, HEAD``.
* 200 when the probe passes or warns, ``failure_status`` (503 by default) when it fails.
* ``/<probe path>/<check>`` answers for one member check; an unknown name is ``404``.
* For each group the registry has (:meth:`HealthRegistry.add_group`), ``<group_path>/<group>``
  (``/health/<group>``) answers for the group as a probe path does, with the group's own
  status codes and ``expose_output``, and ``<group_path>/<group>/<check>`` for one of its
  checks; a check the group does not select is ``404``. A path below ``group_path`` whose
  first segment is not a registered group is the application's.
* Query: ``verbose`` (list every check), ``exclude=<check>`` (repeatable), ``format=json``
  or ``format=text``; ``verbose`` or ``format`` given again with another meaning is ``400``.
  Anything else, or a malformed query, is ``400`` with a one-line reason.
* Any query (probe or metrics) longer than :data:`MAX_QUERY_LENGTH` characters, with more
  than :data:`MAX_QUERY_FIELDS` parameters, or not valid percent-encoded UTF-8 is ``400``.
* ``application/health+json`` when asked by ``?format=json``, or by ``Accept`` with a
  quality above that of text; text otherwise, and on a tie (kube-apiserver answers text).
* Error answers (``400``, ``404``, ``405``) are one ``text/plain`` line whatever format was
  asked: an ``application/health+json`` body carries a health status, and a malformed
  request says nothing about the health of the service.
* With ``metrics`` on, ``GET``/``HEAD`` on ``metrics_path`` (``/metrics``) serves Prometheus
  metrics in the format ``Accept`` asks for (Prometheus text 0.0.4 or OpenMetrics); the
  ``name[]`` query parameter filters by metric name, other parameters are ignored as
  prometheus-client ignores them.
* With a ``guard`` (:class:`healthprobe.guard.Guard`), the details of a probe answer
  (``verbose``, JSON's checks, the lines of checks, what they wrote) go only to a request it
  allows; another gets the plain answer (same status code) with
  ``X-Healthprobe-Details: withheld``. Its ``rotation_path`` (``GET``, ``HEAD``, ``POST``)
  and ``threads_path`` (``GET``, ``HEAD``) answer only a request it allows: ``401`` (with
  ``WWW-Authenticate: Bearer`` when the token goes in ``Authorization``, RFC 6750 section 3)
  without the right token, ``403`` from another network, ``405`` with ``Allow`` for another
  method, ``413`` for a body above :data:`ADMIN_BODY_LIMIT` bytes, ``415`` for a body that
  is neither JSON nor a form, ``400`` with a one-line reason for bad input.
* Every answer carries ``Cache-Control: no-store``. An unexpected error inside healthprobe is
  answered ``503`` (the probe fails) with a fixed body and logged: never a ``500``, never the
  exception text.
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import functools
import inspect
import json
import logging
import math
import multiprocessing
import os
import re
import sys
import tempfile
import typing
import urllib.parse
from http import HTTPStatus as _HTTPStatus

import anyio
import anyio.to_thread

from . import _types
from . import guard as _guard
from . import registry as _registry
from . import render as _render

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping, Sequence

    from typing_extensions import Unpack

    from ._types import Probe, Report
    from .prometheus import ShutdownView
    from .registry import HealthRegistry

__all__ = [
    "ADMIN_BODY_LIMIT",
    "ALLOW",
    "DEFAULT_GROUP_PATH",
    "DEFAULT_PATHS",
    "DETAILS_HEADER",
    "HEALTH_JSON",
    "MAX_QUERY_FIELDS",
    "MAX_QUERY_LENGTH",
    "TEXT",
    "Answer",
    "EndpointOptions",
    "HealthEndpoints",
    "MetricsSource",
    "ProbeRequest",
    "Response",
    "check_app",
    "check_path",
    "check_shutdown",
    "endpoints_for",
    "plain_body",
    "plain_response",
    "prefers_json",
    "when_grouped",
]

_logger = logging.getLogger("healthprobe")

#: Default probe paths. ``/healthz`` is an alias of ``/livez`` so manifests written for the
#: seed server (``httpGet: path: /healthz``) keep working.
DEFAULT_PATHS: Mapping[str, Probe] = {
    "/livez": _types.Probe.LIVENESS,
    "/healthz": _types.Probe.LIVENESS,
    "/readyz": _types.Probe.READINESS,
    "/startupz": _types.Probe.STARTUP,
}

#: Default path under which groups of checks are answered (``/health/<group>``).
DEFAULT_GROUP_PATH = "/health"

#: Longest query string accepted, in characters: a probe needs a few; a longer query is a
#: malformed request and gets 400, so nothing large is echoed back.
MAX_QUERY_LENGTH = 2048
#: Most parameters in one query; more is a malformed request and gets 400.
MAX_QUERY_FIELDS = 64

#: The media type of JSON probe bodies (IETF draft-inadarei-api-health-check).
HEALTH_JSON = "application/health+json"
#: The media type of text probe bodies and of every error answer.
TEXT = "text/plain; charset=utf-8"
#: The ``Allow`` header of a ``405`` answer: the methods a probe path answers.
ALLOW = "GET, HEAD"
#: Most bytes of the body of an admin request (:class:`~healthprobe.guard.Guard`
#: ``rotation_path``); a longer one is answered ``413`` unread.
ADMIN_BODY_LIMIT = 4096
#: The header marking an answer whose details a guard withheld, and its value.
DETAILS_HEADER = ("x-healthprobe-details", "withheld")
_WITHHELD_LINE = "details withheld: send the guard's token, or ask from an allowed network"
_ROTATION_FIELDS = ("action", "reason", "seconds")
_TRUE = {"", "1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_ADMIN_ALLOW = {"rotation": "GET, HEAD, POST", "threads": "GET, HEAD"}
#: Most ``seconds`` an admin request may keep the instance out for: 31 days.
_MOST_SECONDS = 31 * 24 * 3600
#: The pid of the process that warned that an admin request reaches it alone (once each).
_warned_in: list[int] = []
#: Most distinct requests whose answers are remembered (:attr:`HealthEndpoints.answers`).
_ANSWERS_LIMIT = 256
#: Longest check name (``registry.CHECK_NAME``): a longer name in a path is not echoed back.
_LONGEST_NAME = 63
_NOT_UTF8_PATH = "not found: the path is not valid percent-encoded UTF-8"


class MetricsSource(typing.Protocol):
    """What a metrics route serves; :class:`healthprobe.prometheus.PrometheusMetrics` is one."""

    def expose(self, accept: str | None, names: Sequence[str] = ()) -> tuple[str, bytes]:
        """``(content type, body)`` for a request's ``Accept`` header and ``name[]`` filter."""
        ...


class EndpointOptions(typing.TypedDict, total=False):
    """The options of the probe endpoints, every one optional: keyword arguments of
    :class:`HealthEndpoints`, of ``HealthMiddleware`` and ``HealthApp`` in
    :mod:`healthprobe.asgi` and :mod:`healthprobe.wsgi`, and of :func:`healthprobe.serve`
    (``HealthMiddleware(app, registry, metrics=True)``). Another keyword is a ``TypeError``,
    as for any function.
    """

    #: Path -> probe (a :class:`~healthprobe.Probe` or its name: ``"liveness"``,
    #: ``"readiness"``, ``"startup"``); default ``None``: :data:`DEFAULT_PATHS`. Each path must
    #: be ASCII, start with ``/`` and not end with one.
    paths: collections.abc.Mapping[str, _types.Probe | str] | None
    #: Status code of a failing probe, one for all or one per probe (400-599; the kubelet
    #: counts anything outside 200-399 as failure). Default 503.
    failure_status: int | collections.abc.Mapping[_types.Probe | str, int]
    #: Show what checks wrote (their output and exception text) in bodies. Default
    #: ``False``: such text can reveal hosts, users or queries.
    expose_output: bool
    #: Serve Prometheus metrics on ``metrics_path``: ``True`` builds a
    #: :class:`healthprobe.prometheus.PrometheusMetrics` of the registry (extra
    #: ``prometheus``), or pass any :class:`MetricsSource`. Default ``False``.
    metrics: bool | MetricsSource
    #: The path of the metrics route; default ``"/metrics"``. Another path needs ``metrics``
    #: on.
    metrics_path: str
    #: The path groups of checks are answered under (``<group_path>/<group>`` and
    #: ``<group_path>/<group>/<check>``), or ``None`` to answer no group over HTTP. Default
    #: :data:`DEFAULT_GROUP_PATH` (``"/health"``), or ``None`` when a probe path is
    #: ``/health`` or below it. Not ``/``, and no probe or metrics path may be it or below
    #: it. While the registry has no group, paths below it are the application's.
    group_path: str | None
    #: Who may see the details of probe answers, and the admin and thread dump paths it
    #: enables: a :class:`healthprobe.guard.Guard`. Default ``None``: details for everyone
    #: (as ``expose_output`` says), no admin path, no thread dump.
    guard: _guard.Guard | None


def _refuse_unknown(options: Mapping[str, object]) -> None:
    """Raise ``TypeError`` for a keyword that is not one of :class:`EndpointOptions`."""
    known = EndpointOptions.__optional_keys__
    for name in options:
        if name not in known:
            raise TypeError(
                f"unexpected keyword argument {name!r}: the endpoint options are {', '.join(sorted(known))}"
            )


@dataclasses.dataclass(frozen=True)
class Response:
    """A complete HTTP answer: status code, header pairs (names lower-case), body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def reason(self) -> str:
        """The standard reason phrase of ``status`` (for WSGI status lines)."""
        try:
            return _HTTPStatus(self.status).phrase
        except ValueError:
            return _REASONS.get(self.status, "Unknown")

    @functools.cached_property
    def status_line(self) -> str:
        """``"200 OK"``: the WSGI ``status`` string (PEP 3333), computed once."""
        return f"{self.status} {self.reason}"

    @functools.cached_property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as latin-1 byte pairs, as ASGI messages carry them, computed once.
        Copy the list before handing it on: a server or middleware may append to it."""
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Answer:
    """A remembered answer (:attr:`HealthEndpoints.answers`): the :class:`Response` and, ready
    for an adapter's fast path, what it sends and what it may be sent again under.
    Read-only; made by the endpoints.

    It may be sent again while :meth:`HealthEndpoints.is_current` holds for it.
    """

    #: The registry's :attr:`~healthprobe.registry.HealthRegistry.generation` when it was made.
    generation: int
    #: What the check results it shows must still be, or ``None`` when it shows none and
    #: does not watch the rotation (then ``generation`` alone decides).
    stamp: _registry.AnswerStamp | None
    #: The response itself.
    response: Response
    #: Its status code.
    status: int
    #: Its WSGI status line (``"200 OK"``).
    status_line: str
    #: Its headers as ``str`` pairs (WSGI); copy before handing them on.
    headers: tuple[tuple[str, str], ...]
    #: Its headers as latin-1 byte pairs (ASGI); copy into a list before handing them on.
    raw_headers: tuple[tuple[bytes, bytes], ...]
    #: Its body (empty for ``HEAD``).
    body: bytes


@dataclasses.dataclass(frozen=True)
class ProbeRequest:
    """A parsed, valid probe request."""

    probe: _types.Probe
    only: str | None
    exclude: tuple[str, ...]
    verbose: bool
    json: bool
    head: bool
    #: The group asked (``<group_path>/<group>``), or ``None`` for a probe.
    group: str | None = None
    #: Whether the answer may show details (``False``: a guard withheld them).
    details: bool = True


def _response(
    status: int, content_type: str, body: bytes, head: bool, extra: tuple[tuple[str, str], ...] = ()
) -> Response:
    """An answer with the headers every answer here carries (``no-store``, ``nosniff``); the
    length is that of ``body`` also for ``HEAD``, which gets no body (RFC 9110 section 9.3.2)."""
    headers = [
        ("content-type", content_type),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        *extra,
    ]
    return Response(status, headers, b"" if head else body)


def plain_response(status: int, text: str, head: bool = False, extra: tuple[tuple[str, str], ...] = ()) -> Response:
    """A one-line ``text/plain`` answer (empty body for ``HEAD``), with ``no-store``."""
    return _response(status, TEXT, (text + "\n").encode(), head, extra)


def prefers_json(accept: str | None) -> bool:
    """Whether an ``Accept`` header (RFC 9110 section 12.5.1) prefers JSON to plain text.

    ``application/health+json`` and ``application/json`` count as JSON; JSON wins only
    with a quality strictly above that of ``text/plain`` (or ``text/*``, ``*/*``). On a tie
    (``application/json, text/plain``) the answer is text, the format of kube-apiserver's
    own health endpoints and of a client that names no preference.
    """
    if not accept:
        return False
    best_json = best_text = 0.0
    for part in accept.split(","):
        media, _, params = part.partition(";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if media in (HEALTH_JSON, "application/json", "application/*"):
            best_json = max(best_json, quality)
        elif media in ("text/plain", "text/*", "*/*"):
            best_text = max(best_text, quality)
    return best_json > best_text


class HealthEndpoints:
    """Maps probe paths to a registry, answers probe requests, and remembers the answers it
    may give again.

    Args:
        registry: the :class:`HealthRegistry` to answer from.
        shutdown: with ``metrics=True``, the graceful-shutdown coordinator whose in-flight
            requests and shutdown phase the metrics include (the adapters pass their own
            ``shutdown=``); ignored otherwise.
        **options: the endpoint options, :class:`EndpointOptions` (``paths``,
            ``failure_status``, ``expose_output``, ``metrics``, ``metrics_path``).

    Raises:
        TypeError: an argument of the wrong type (``registry`` not a :class:`HealthRegistry`,
            ``expose_output`` not a bool, ...), or a keyword that is not an option.
        ValueError: on a malformed path (the metrics path too, even while metrics are off),
            a metrics path that is also a probe path, a ``group_path`` that is ``/`` or that a
            probe or metrics path is or lies below, or an out-of-range status code.
        ImportError: ``metrics=True`` without prometheus-client installed.
    """

    def __init__(
        self, registry: HealthRegistry, *, shutdown: ShutdownView | None = None, **options: Unpack[EndpointOptions]
    ) -> None:
        _refuse_unknown(options)
        paths = options.get("paths")
        failure_status = options.get("failure_status", 503)
        expose_output = options.get("expose_output", False)
        metrics = options.get("metrics", False)
        metrics_path = options.get("metrics_path", "/metrics")
        guard = options.get("guard")
        if guard is not None and not isinstance(guard, _guard.Guard):
            raise TypeError(f"guard must be a healthprobe.Guard or None, got {type(guard).__name__}")
        if not isinstance(registry, _registry.HealthRegistry):
            raise TypeError(f"registry must be a HealthRegistry, got {type(registry).__name__}")
        if paths is not None and not isinstance(paths, collections.abc.Mapping):
            raise TypeError(f"paths must be a mapping of path to probe, got {type(paths).__name__}")
        if not isinstance(expose_output, bool):
            raise TypeError(f"expose_output must be True or False, got {expose_output!r}")
        if not isinstance(metrics, bool) and not callable(getattr(metrics, "expose", None)):
            raise TypeError(f"metrics must be True, False or a MetricsSource, got {type(metrics).__name__}")
        if not isinstance(metrics_path, str):
            raise TypeError(f"metrics_path must be a str, got {type(metrics_path).__name__}")
        check_path("metrics", metrics_path)  # checked even while off: a typo is caught now
        if metrics is False and metrics_path != "/metrics":
            raise ValueError(f"metrics_path={metrics_path!r} is given but metrics are off: add metrics=True")
        if not isinstance(failure_status, (int, collections.abc.Mapping)):
            raise TypeError(
                f"failure_status must be an int or a mapping of probe to int, got {type(failure_status).__name__}"
            )
        #: The registry answered from.
        self.registry = registry
        #: Whether bodies show what checks wrote.
        self.expose_output = expose_output
        #: Probe path -> probe.
        self.paths: dict[str, Probe] = {}
        for path, probe in (DEFAULT_PATHS if paths is None else paths).items():
            check_path("probe", path)
            self.paths[path] = _registry.as_probe(probe)
        self._exact = {path: (probe, None) for path, probe in self.paths.items()}
        #: The probe paths, each followed by ``/``: where the paths of single checks begin;
        #: and ``group_path`` followed by ``/``, where the paths of groups begin.
        self.prefixes = tuple(path.rstrip("/") + "/" for path in self.paths)
        #: The path groups are answered under, or ``None`` (see :class:`EndpointOptions`).
        self.group_path = _group_path(options, [*self.paths, *([metrics_path] if metrics is not False else [])])
        #: ``group_path`` followed by ``/``, or ``None``.
        self.group_prefix = None if self.group_path is None else self.group_path + "/"
        if self.group_prefix is not None:
            self.prefixes = (*self.prefixes, self.group_prefix)
        #: What the metrics route serves, or ``None`` when metrics are off.
        self.metrics: MetricsSource | None = None
        #: The path of the metrics route.
        self.metrics_path = metrics_path
        if metrics is not False:
            if self.route(metrics_path) is not None:
                raise ValueError(f"metrics path {metrics_path!r} is also a probe path")
            self.metrics = _metrics_source(registry, shutdown) if metrics is True else metrics
        #: Probe -> status code of its failure.
        self.failure_status = _failure_statuses(failure_status)
        #: The guard of details and admin paths, or ``None``.
        self.guard = guard
        #: Admin path -> what it serves (``"rotation"``, ``"threads"``); empty without a guard.
        self.admin_paths: dict[str, str] = {}
        if guard is not None:
            for kind, admin_path in (("rotation", guard.rotation_path), ("threads", guard.threads_path)):
                if admin_path is None:
                    continue
                check_path(kind, admin_path)
                below = [metrics_path, *([] if self.group_path is None else [self.group_path])]
                if (
                    self.route(admin_path) is not None
                    or any(admin_path == p or admin_path.startswith(p + "/") for p in below)
                    or admin_path in self.admin_paths
                ):
                    raise ValueError(
                        f"{kind} path {admin_path!r} is, or lies below, a probe, metrics, group or admin path"
                    )
                self.admin_paths[admin_path] = kind
        #: Every path answered here as it is: the probe paths, and the metrics path when
        #: metrics are on. Any other path answered here starts with one of :attr:`prefixes`
        #: (and :meth:`matches` it): so an adapter tells a request to pass on by a set lookup
        #: and one ``startswith``.
        self.exact_paths = frozenset(
            [*self.paths, *([metrics_path] if self.metrics is not None else []), *self.admin_paths]
        )
        #: The answers that may be given again, by the key of their request (see
        #: :meth:`handle_sync`): at most 256 (all are forgotten when a new one would make
        #: more). Read-only for callers: adapters look repeated requests up here, and give
        #: an :class:`Answer` again while :meth:`is_current` holds for it.
        self.answers: dict[Hashable, Answer] = {}

    # -- routing -----------------------------------------------------------------------------

    def route(self, path: str) -> tuple[Probe, str | None] | None:
        """``(probe, check name or None)`` for a probe path, or ``None`` if not one of ours.

        ``/readyz`` and ``/readyz/`` are the probe; ``/readyz/<name>`` and ``/readyz/<name>/``
        one check (a trailing slash is accepted rather than redirected, so no probe ever
        sees a 3xx that a kubelet would count as success).
        """
        exact = self._exact.get(path)
        if exact is not None:
            return exact
        if not path.startswith(self.prefixes):
            return None
        for prefix, probe in self.paths.items():
            if path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] == "/":
                name = path[len(prefix) + 1 :]
                if len(name) > 1 and name.endswith("/"):
                    name = name[:-1]
                return probe, (name or None)
        return None

    def route_group(self, path: str) -> tuple[str, str | None] | None:
        """``(group name, check name or None)`` for a path below ``group_path``, or ``None``
        if not one of ours: another path, ``group_path`` itself or followed by ``/`` alone,
        or a path whose first segment is not a registered group (so an application's own
        ``/health/live`` route keeps working once a group exists, and an unknown group is
        not told apart from any other path of the application).

        ``/health/<group>`` and ``/health/<group>/`` are the group; ``/health/<group>/<name>``
        and ``/health/<group>/<name>/`` one check. The check name is not looked up here: a
        check the group does not select is answered ``404``.
        """
        prefix = self.group_prefix
        if prefix is None or not path.startswith(prefix) or not self.registry.groups:
            return None
        group, _, name = path[len(prefix) :].partition("/")
        if group not in self.registry.groups:
            return None  # not a group's path: the application's (its own /health/live)
        if len(name) > 1 and name.endswith("/"):
            name = name[:-1]
        return group, (name or None)

    def matches(self, path: str) -> bool:
        """Whether ``path`` is answered here (a probe path, a group's path while the
        registry has groups, an admin path a guard enables, or the metrics path when on)."""
        return (
            self.route(path) is not None
            or (self.metrics is not None and path == self.metrics_path)
            or path in self.admin_paths
            or self.route_group(path) is not None
        )

    def prepare(
        self, method: str, path: str, query_string: str, accept: str | None, details: bool = True
    ) -> ProbeRequest | Response | None:
        """Validate a request: a :class:`ProbeRequest` to run, an error :class:`Response`
        (400, 404 for a name that cannot be a check, 405), or ``None`` if ``path`` is not a
        probe path. ``details``: whether the guard allows details (``True`` without one)."""
        routed = self.route(path)
        group: str | None = None
        if routed is None:
            grouped = self.route_group(path)
            if grouped is None:
                return None
            group, only = grouped
            probe = _types.Probe.READINESS
        else:
            probe, only = routed
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            return _not_allowed(method)
        if group is not None:
            refused = _refused_name(group)
            if refused is not None:
                return plain_response(404, refused.replace("check names", "group names"), head)
        if only is not None:
            refused = _refused_name(only)
            if refused is not None:
                return plain_response(404, refused, head)
        query = _read_query(query_string) if query_string else (None, None, ())
        if isinstance(query, str):
            return plain_response(400, query, head)
        verbose, fmt, exclude = query
        if only is not None and exclude:
            whole = "probe" if group is None else "group"
            return plain_response(400, f"exclude applies to a whole {whole}, not to one check", head)
        wants_json = fmt == "json" if fmt is not None else prefers_json(accept)
        return ProbeRequest(probe, only, exclude, bool(verbose), wants_json, head, group=group, details=details)

    def respond(self, request: ProbeRequest, report: Report) -> Response:
        """Turn a report into the probe's (or the group's) :class:`Response`; without
        ``details``, the plain answer (:func:`plain_body`) marked by :data:`DETAILS_HEADER`."""
        expose_output = self.expose_output
        if request.group is None:
            status = 200 if report.ok else self.failure_status[request.probe]
        else:
            # Removed since it ran: answered with a group's defaults.
            group = self.registry.groups.get(request.group) or _registry.Group(request.group)
            status = group.success_status if report.ok else group.failure_status
            if group.expose_output is not None:
                expose_output = group.expose_output
        if not request.details:
            content_type, body = plain_body(report, request)
            return _response(status, content_type, body, request.head, (DETAILS_HEADER,))
        if request.json:
            body = _render.dumps(_render.render_json(report, expose_output=expose_output))
            return _response(status, HEALTH_JSON, body, request.head)
        text = _render.render_text(report, verbose=request.verbose, expose_output=expose_output)
        return _response(status, TEXT, text.encode(), request.head)

    def _run_sync(self, request: ProbeRequest) -> Report:
        if request.group is None:
            return self.registry.run(request.probe, exclude=request.exclude, only=request.only)
        return self.registry.run_group(request.group, exclude=request.exclude, only=request.only)

    async def _run_async(self, request: ProbeRequest) -> Report:
        if request.group is None:
            return await self.registry.run_async(request.probe, exclude=request.exclude, only=request.only)
        return await self.registry.run_group_async(request.group, exclude=request.exclude, only=request.only)

    def _failed(self, request: ProbeRequest, error: Exception) -> Response:
        """The answer of a run that raised ``error`` (called while it is handled)."""
        if isinstance(error, _registry.UnknownGroupError):
            return plain_response(404, f"no group named {request.group!r}", request.head)
        if isinstance(error, _registry.UnknownCheckError):
            if request.group is not None:
                return plain_response(404, f"no check named {request.only!r} in group {request.group!r}", request.head)
            word = _render.PROBE_WORD[request.probe]
            return plain_response(404, f"no {word} check named {request.only!r}", request.head)
        return self._internal_error(request)

    def _internal_error(self, request: ProbeRequest) -> Response:
        if request.group is not None:
            _logger.exception("healthprobe failed to answer group %s", request.group)
            return plain_response(503, f"{request.group} check failed: internal error", request.head)
        _logger.exception("healthprobe failed to answer a %s probe", request.probe.value)
        return plain_response(503, f"{_render.PROBE_WORD[request.probe]} check failed: internal error", request.head)

    # -- metrics -----------------------------------------------------------------------------

    def _metrics_request(self, method: str, query_string: str) -> tuple[str, ...] | Response:
        if method not in ("GET", "HEAD"):
            return _not_allowed(method)
        pairs = _query_pairs(query_string)
        if isinstance(pairs, str):
            return plain_response(400, pairs, method == "HEAD")
        return tuple(value for key, value in pairs if key == "name[]")

    def _metrics_response(self, method: str, accept: str | None, names: tuple[str, ...]) -> Response:
        assert self.metrics is not None
        try:
            content_type, body = self.metrics.expose(accept, names)
        except Exception:
            _logger.exception("healthprobe failed to render metrics")
            return plain_response(503, "metrics unavailable: internal error", method == "HEAD")
        return _response(200, content_type, body, method == "HEAD")

    # -- guarded paths -----------------------------------------------------------------------

    def verdict(self, peer: str | None, header: Callable[[str], str | None]) -> _guard.Verdict:
        """What the guard says of a request (:meth:`healthprobe.guard.Guard.verdict`):
        ``ALLOWED`` without a guard.

        Args:
            peer: the direct peer's address (ASGI ``scope["client"][0]``, WSGI
                ``REMOTE_ADDR``), or ``None``.
            header: a request header's value by lower-case name (fields joined by ``,``),
                or ``None``.
        """
        guard = self.guard
        return _guard.Verdict.ALLOWED if guard is None else guard.verdict(peer, header)

    def admin_refusal(
        self, kind: str, method: str, verdict: _guard.Verdict, content_length: int | None
    ) -> Response | None:
        """The answer refusing an admin request before its body is read, or ``None`` to
        read the body (at most ``content_length`` bytes) and call :meth:`admin`.

        Args:
            kind: what the path serves, :attr:`admin_paths` (``"rotation"``, ``"threads"``).
            method: the request method.
            verdict: what the guard said (:meth:`verdict`).
            content_length: the ``Content-Length`` in bytes, or ``None`` without one.

        Returns:
            ``405`` with ``Allow`` for a method the path does not answer; ``401`` without the
            right token (``WWW-Authenticate: Bearer``, RFC 6750 section 3, when it goes in
            ``Authorization``); ``403`` from a network not allowed; ``413`` for a body above
            :data:`ADMIN_BODY_LIMIT` bytes; else ``None``.
        """
        head = method == "HEAD"
        allow = _ADMIN_ALLOW[kind]
        if method not in allow.split(", "):
            return plain_response(405, f"method {method[:20]} not allowed; use {allow}", extra=(("allow", allow),))
        if verdict is _guard.Verdict.NO_TOKEN or verdict is _guard.Verdict.WRONG_TOKEN:
            extra: tuple[tuple[str, str], ...] = ()
            if self.guard is not None and self.guard.header == "authorization":
                error = ', error="invalid_token"' if verdict is _guard.Verdict.WRONG_TOKEN else ""
                extra = (("www-authenticate", f'Bearer realm="healthprobe"{error}'),)
            return plain_response(401, f"unauthorized: {verdict.value}", head, extra)
        if verdict is not _guard.Verdict.ALLOWED:
            return plain_response(403, "forbidden: not from an allowed network", head)
        if content_length is not None and content_length > ADMIN_BODY_LIMIT:
            return plain_response(413, f"body larger than {ADMIN_BODY_LIMIT} bytes", head)
        return None

    def admin(self, kind: str, method: str, query_string: str, content_type: str | None, body: bytes) -> Response:
        """Answer an allowed admin request (:meth:`admin_refusal` said ``None``) whose body
        was read.

        ``threads``: the thread dump (:func:`healthprobe.guard.thread_dump`), ``text/plain``.
        ``rotation``: ``GET`` and ``HEAD`` show the rotation; ``POST`` takes ``action``
        (``out`` or ``in``), ``reason`` (text) and ``seconds`` (a number above 0, with
        ``out`` only, at most 2678400: 31 days) from the query, a form body or a JSON object
        body. When the registry has a :attr:`~HealthRegistry.disable_file`, ``out`` writes
        that file (the reason its first line; a temporary file then :func:`os.replace`) and
        ``in`` removes it and calls :meth:`HealthRegistry.return_to_rotation`, so that every
        worker process sharing the file follows (``seconds`` is then refused: the file has no
        expiry); without one, it calls :meth:`HealthRegistry.take_out_of_rotation` or
        :meth:`HealthRegistry.return_to_rotation` with ``source="admin"``, which changes this
        process only. Either answers ``200`` with the rotation as JSON on one line:
        ``{"in_rotation": bool, "reason": str|null, "source": str|null, "since": epoch
        seconds, "until": epoch seconds|null, "scope": "file"|"process"}``.

        Args:
            kind: as :meth:`admin_refusal` takes it.
            method: the request method.
            query_string: the raw query, without ``?``.
            content_type: the ``Content-Type`` header, or ``None``.
            body: the body, at most :data:`ADMIN_BODY_LIMIT` bytes.

        Returns:
            The answer; ``400`` with a one-line reason for bad input (unknown or repeated
            field, missing or unknown action, malformed query, form or JSON, a ``seconds``
            that is not a number above 0 or is above 31 days), ``415`` for a body that is
            neither JSON nor a form, ``503`` when the disable file cannot be written or
            removed (logged; the rotation is unchanged).
        """
        head = method == "HEAD"
        if kind == "threads":
            if query_string:
                return plain_response(400, "the thread dump takes no query", head)
            return _response(200, TEXT, _guard.thread_dump().encode("utf-8", "replace"), head)
        if method == "POST":
            asked = _rotation_request(query_string, content_type, body)
            if isinstance(asked, Response):
                return asked
            failed = self._rotate(*asked)
            if failed is not None:
                return failed
        elif query_string:
            return plain_response(400, "GET shows the rotation and takes no query; POST action=out or action=in", head)
        rotation = self.registry.rotation
        document = {
            "in_rotation": rotation.in_rotation,
            "reason": rotation.reason,
            "source": rotation.source,
            "since": round(rotation.since, 3),
            "until": None if rotation.until is None else round(rotation.until, 3),
            "scope": "process" if self.registry.disable_file is None else "file",
        }
        return _response(200, "application/json", _render.dumps(document) + b"\n", head)

    def _rotate(self, action: str, reason: str | None, seconds: float | None) -> Response | None:
        """Carry out an admin rotation request: ``None`` when done, else the answer saying why
        not. With the registry's disable file, ``out`` writes the file and ``in`` removes it
        (and ends any hold of a call), so every worker process of the container follows;
        without one, only this process changes (warned once per process when it looks like
        one of several workers)."""
        path = self.registry.disable_file
        if path is None:
            _warn_if_one_of_several()
            if action == "out":
                self.registry.take_out_of_rotation(reason, seconds=seconds, source="admin")
            else:
                self.registry.return_to_rotation(source="admin")
            return None
        if action == "out" and seconds is not None:
            return plain_response(
                400, "seconds cannot be kept in the disable file: leave it out and send action=in to come back"
            )
        try:
            if action == "out":
                _write_disable_file(path, reason)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
        except OSError as exc:
            _logger.warning(
                "admin rotation request: could not %s the disable file %s (%s)",
                "write" if action == "out" else "remove",
                path,
                type(exc).__name__,
            )
            return plain_response(503, "the disable file could not be changed; the rotation is as it was")
        if action == "in":
            self.registry.return_to_rotation(source="admin")
        return None

    # -- answering again ---------------------------------------------------------------------

    def is_current(self, answer: Answer) -> bool:
        """Whether a remembered ``answer`` may be given again now: the one rule of reuse.

        It may while the registry's :attr:`~HealthRegistry.generation` is still the one it
        was made under (no check added or removed, no lifecycle change, no manual switch
        since) and, when it shows check results or the rotation (its ``stamp``), while none
        of them has expired or been replaced and the rotation is unchanged
        (:meth:`HealthRegistry.still_current`: a readiness answer looks at the disable file
        again). Answers made while
        ``starting``, or showing a non-critical failure as ``warn``, are never remembered
        (:meth:`HealthRegistry.stamp`).

        The adapters' fast paths repeat this test once each, on the same public attributes
        (``answer.generation == registry.generation and (answer.stamp is None or
        registry.still_current(answer.stamp))``), to spare a call per probe.
        """
        registry = self.registry
        return answer.generation == registry.generation and (
            answer.stamp is None or registry.still_current(answer.stamp)
        )

    def cached(
        self,
        method: str,
        path: str,
        query_string: str,
        accept: str | None,
        key: Hashable | None = None,
        details: bool = True,
    ) -> Response | None:
        """The answer last given to this same request, if it may be given again now
        (:meth:`is_current`). ``None`` means: call :meth:`handle_sync` or
        :meth:`handle_async`.

        A probe answered here runs nothing and is the same bytes as the last answer; it
        leaves :attr:`HealthRegistry.last_reports` as that answer's run left it.

        Args:
            method, path, query_string, accept: the request, as :meth:`handle_sync` takes it.
            key: the ``key`` passed to :meth:`handle_sync` or :meth:`handle_async` for this
                request, if one was.
            details: as :meth:`handle_sync` takes it.
        """
        answer = self.answers.get(self._key(method, path, query_string, accept, key, details))
        if answer is not None and self.is_current(answer):
            return answer.response
        return None

    def _remember(self, key: Hashable, generation: int, report: Report, response: Response) -> None:
        stamp = self.registry.stamp(report, generation)
        if stamp is None:
            return
        answers = self.answers
        if len(answers) >= _ANSWERS_LIMIT and key not in answers:
            answers.clear()  # bounded: odd queries and Accept values cannot grow it
        answers[key] = Answer(
            stamp.generation,
            stamp if stamp.pairs or stamp.watches_rotation else None,
            response,
            response.status,
            response.status_line,
            tuple(response.headers),
            tuple(response.raw_headers),
            response.body,
        )

    # -- whole requests ----------------------------------------------------------------------

    def _request(
        self, method: str, path: str, query_string: str, accept: str | None, details: bool = True
    ) -> tuple[str, ...] | ProbeRequest | Response | None:
        """What a request asks: metric names, a probe to run, an error answer, or ``None``."""
        if self.metrics is not None and path == self.metrics_path:
            return self._metrics_request(method, query_string)
        return self.prepare(method, path, query_string, accept, details)

    def _key(
        self, method: str, path: str, query_string: str, accept: str | None, key: Hashable | None, details: bool
    ) -> Hashable:
        """What an answer is remembered under: ``key``, or the request's values (and, under
        a guard, whether it got details, so that no answer is given to the other kind)."""
        if key is not None:
            return key
        if self.guard is None:
            return (method, path, query_string, accept)
        return (method, path, query_string, accept, details)

    def _finish(self, request: ProbeRequest, report: Report, generation: int, key: Hashable) -> Response:
        try:
            response = self.respond(request, report)
            shared = self.guard is not None and isinstance(key, tuple) and self._shared(request, report, response)
        except Exception:  # rendering is ours too: a failure is a failed probe, never a 500
            return self._internal_error(request)
        if shared:
            # The same answer whatever the guard says (a passing probe asked plainly: "ok"):
            # nothing is withheld, so it goes unmarked and is also remembered under the
            # request values alone, where the adapters' fast path finds it without asking
            # the guard (docs/performance.md). The adapters' guarded key is those values
            # followed by the verdict.
            response = dataclasses.replace(response, headers=[h for h in response.headers if h != DETAILS_HEADER])
            self._remember(typing.cast("tuple[object, ...]", key)[:-1], generation, report, response)
        self._remember(key, generation, report, response)
        return response

    def _shared(self, request: ProbeRequest, report: Report, response: Response) -> bool:
        """Whether ``response`` is what the request would get with details allowed and with
        them withheld alike (but for the :data:`DETAILS_HEADER` marking the plain one)."""
        other = self.respond(dataclasses.replace(request, details=not request.details), report)
        if other.status != response.status or other.body != response.body:
            return False
        unmarked = [h for h in other.headers if h != DETAILS_HEADER]
        return unmarked == [h for h in response.headers if h != DETAILS_HEADER]

    def handle_sync(
        self,
        method: str,
        path: str,
        query_string: str,
        accept: str | None,
        key: Hashable | None = None,
        details: bool = True,
    ) -> Response | None:
        """Answer a request from a sync caller, running the checks; ``None`` if ``path`` is
        not answered here. An answer that may be given again is remembered
        (:attr:`answers`) under ``key``.

        Args:
            method: the request method (``"GET"``).
            path: the path below any mount prefix, percent-decoded as UTF-8 (an undecodable
                byte as U+FFFD, as ASGI servers decode it).
            query_string: the raw query, without ``?``.
            accept: the ``Accept`` header, or ``None``.
            key: what to remember the answer under, for an adapter that looks repeated
                requests up by its own raw values (any hashable that differs for requests
                that differ in these four values, and in ``details`` under a guard); default
                ``(method, path, query_string, accept)``, with ``details`` after them under
                a guard.
            details: whether the guard allows this request details (:meth:`verdict`);
                ``True`` without a guard.
        """
        request = self._request(method, path, query_string, accept, details)
        if isinstance(request, tuple):
            return self._metrics_response(method, accept, request)
        if not isinstance(request, ProbeRequest):
            return request
        generation = self.registry.generation
        try:
            report = self._run_sync(request)
        except Exception as exc:
            return self._failed(request, exc)
        return self._finish(request, report, generation, self._key(method, path, query_string, accept, key, details))

    async def handle_async(
        self,
        method: str,
        path: str,
        query_string: str,
        accept: str | None,
        key: Hashable | None = None,
        details: bool = True,
    ) -> Response | None:
        """Answer a request from async code, as :meth:`handle_sync` does; checks run as
        :meth:`HealthRegistry.run_async` runs them. Metrics are rendered in a worker thread
        (in multiprocess mode that reads files)."""
        request = self._request(method, path, query_string, accept, details)
        if isinstance(request, tuple):
            return await anyio.to_thread.run_sync(self._metrics_response, method, accept, request)
        if not isinstance(request, ProbeRequest):
            return request
        generation = self.registry.generation
        try:
            report = await self._run_async(request)
        except Exception as exc:
            return self._failed(request, exc)
        return self._finish(request, report, generation, self._key(method, path, query_string, accept, key, details))


def plain_body(report: Report, request: ProbeRequest) -> tuple[str, bytes]:
    """``(content type, body)`` of the plain answer a guard gives a request it does not
    allow details: no check is named and nothing a check wrote is shown.

    Text: ``ok`` when the probe passes (or warns), else one ``[-]lifecycle failed: <reason>``
    line per lifecycle reason (draining, out of rotation: the operator's words) and the
    closing ``<probe>z check failed``; then, when the request asked for details (``verbose``
    or one check's path), a line saying they were withheld. JSON
    (``application/health+json``): ``status``, ``description``, ``output`` (the lifecycle
    reasons, if any) and ``notes`` saying details were withheld; no ``checks``.
    """
    if request.json:
        description = f"{report.probe.value} probe" if report.group is None else f"{report.group} group"
        document: dict[str, object] = {"status": report.status.value, "description": description}
        if report.reasons:
            document["output"] = "; ".join(report.reasons)
        document["notes"] = [_WITHHELD_LINE]
        return HEALTH_JSON, _render.dumps(document)
    if report.ok:
        lines = ["ok"]
    else:
        lines = [f"[-]lifecycle failed: {_render.one_line(reason)}" for reason in report.reasons]
        word = _render.PROBE_WORD[report.probe] if report.group is None else report.group
        lines.append(f"{word} check failed")
    if request.verbose or request.only is not None:
        lines.append(_WITHHELD_LINE)
    return TEXT, ("\n".join(lines) + "\n").encode()


def _rotation_request(
    query_string: str, content_type: str | None, body: bytes
) -> tuple[str, str | None, float | None] | Response:
    """``(action, reason, seconds)`` of an admin rotation request, from its query and body,
    or the ``400`` (``415``) answer saying what is wrong with it."""
    found: dict[str, object] = {}
    pairs = _query_pairs(query_string) if query_string else []
    if isinstance(pairs, str):
        return plain_response(400, pairs)
    items: list[tuple[str, object]] = list(pairs)
    if body:
        media = (content_type or "").partition(";")[0].strip().lower()
        if media == "application/json":
            try:
                document = json.loads(body.decode("utf-8"), object_pairs_hook=_no_repeats)
            except _RepeatedField as repeated:
                return plain_response(400, f"{str(repeated)[:40]} given twice")
            except ValueError:  # UnicodeDecodeError is one
                return plain_response(400, "body is not valid JSON")
            if not isinstance(document, dict):
                return plain_response(400, 'body must be a JSON object: {"action": "out", ...}')
            items += document.items()
        elif media in ("", "application/x-www-form-urlencoded"):
            try:
                text = body.decode("utf-8")
                if _BAD_ESCAPE.search(text):
                    raise ValueError(text)
                items += urllib.parse.parse_qsl(
                    text, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS
                )
            except ValueError:
                return plain_response(400, "body is not a valid form (application/x-www-form-urlencoded)")
        else:
            return plain_response(415, "send the body as application/json or application/x-www-form-urlencoded")
    for name, value in items:
        if name not in _ROTATION_FIELDS:
            return plain_response(400, f"unknown field {name[:40]!r}; the fields are action, reason, seconds")
        if name in found:
            return plain_response(400, f"{name} given twice")
        found[name] = value
    action = found.get("action")
    if action not in ("out", "in"):
        return plain_response(400, "action must be out or in")
    reason = found.get("reason")
    if reason is not None and not isinstance(reason, str):
        return plain_response(400, "reason must be text")
    seconds = found.get("seconds")
    if seconds is None:
        return str(action), reason, None
    if action == "in":
        return plain_response(400, "seconds goes with action=out only")
    if isinstance(seconds, str):
        try:
            seconds = float(seconds)
        except ValueError:
            seconds = None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        return plain_response(400, "seconds must be a number above 0")
    if seconds > _MOST_SECONDS:
        return plain_response(400, f"seconds must be at most {_MOST_SECONDS} (31 days)")
    return str(action), reason, float(seconds)


def _write_disable_file(path: str, reason: str | None) -> None:
    """Write the disable file at ``path`` with ``reason`` as its first line, atomically: a
    temporary file in the same folder, then :func:`os.replace`, so that no worker reads
    it half written. Raises ``OSError``."""
    text = "" if reason is None else _render.one_line(reason.strip()[: _registry.ROTATION_REASON_LIMIT])
    folder, name = os.path.split(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    try:
        os.chmod(temporary, 0o644)  # readable as a file made by `echo reason > path` is
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text + "\n" if text else "")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def _warn_if_one_of_several() -> None:
    """Log a WARNING, once per process, when an admin rotation request changes this process
    alone and it looks like one of several workers: a gunicorn worker (its arbiter is
    imported) or a child started by :mod:`multiprocessing` (uvicorn ``--workers``)."""
    pid = os.getpid()
    if pid in _warned_in:
        return
    _warned_in.append(pid)
    if "gunicorn.arbiter" in sys.modules or multiprocessing.parent_process() is not None:
        _logger.warning(
            "the admin rotation request changed this worker process (pid %d) only: with several workers "
            "(gunicorn -w N, uvicorn --workers N) give the registry a disable_file, which every worker follows",
            pid,
        )


class _RepeatedField(ValueError):
    """A JSON object of an admin body names a field twice (its name is the message)."""


def _no_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``json.loads``'s ``object_pairs_hook``: the object as a dict, refusing a name given
    twice (RFC 8259 section 4 leaves repeated names to the reader; one would win unseen)."""
    found: dict[str, object] = {}
    for name, value in pairs:
        if name in found:
            raise _RepeatedField(name)
        found[name] = value
    return found


def _failure_statuses(failure_status: int | Mapping[Probe | str, int]) -> dict[Probe, int]:
    """Probe -> failure status code, from the ``failure_status`` option."""
    if isinstance(failure_status, int):
        statuses = {probe: failure_status for probe in _types.Probe}
    else:
        statuses = {probe: 503 for probe in _types.Probe}
        statuses.update({_registry.as_probe(k): v for k, v in failure_status.items()})
    for code in statuses.values():
        if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 599:
            raise ValueError(f"failure_status must be an int from 400 to 599, got {code!r}")
    return statuses


def _group_path(options: EndpointOptions, taken: list[str]) -> str | None:
    """The ``group_path`` option, checked against the probe and metrics paths ``taken``."""
    given = "group_path" in options
    group_path = options.get("group_path", DEFAULT_GROUP_PATH)
    if group_path is None:
        return None
    if not isinstance(group_path, str):
        raise TypeError(f"group_path must be a str or None, got {type(group_path).__name__}")
    check_path("group", group_path)
    if group_path == "/":
        raise ValueError("group_path must not be '/': every path of the application would be a group's")
    clash = next(
        (p for p in taken if p == group_path or p.startswith(group_path + "/") or group_path.startswith(p + "/")),
        None,
    )
    if clash is None:
        return group_path
    if not given:
        return None  # a probe path is /health or below it: no group path unless one is given
    raise ValueError(f"group_path {group_path!r} clashes with the path {clash!r}: give groups a path of their own")


def _not_allowed(method: str) -> Response:
    return plain_response(405, f"method {method[:20]} not allowed; use GET or HEAD", extra=(("allow", ALLOW),))


def _refused_name(only: str) -> str | None:
    """Why a check name in a path cannot name a check (the text of a 404), or ``None``.

    Adapters pass the path percent-decoded as UTF-8, undecodable bytes replaced by U+FFFD (as
    ASGI servers do); no check name can hold either of these, nor be longer than 63."""
    if "/" in only:
        return "not found"
    if "\ufffd" in only:
        return _NOT_UTF8_PATH
    if len(only) > _LONGEST_NAME:
        return f"not found: check names have at most {_LONGEST_NAME} characters"
    return None


def _read_query(query_string: str) -> tuple[bool | None, str | None, tuple[str, ...]] | str:
    """``(verbose, format, exclude)`` of a probe's query, or the reason for a ``400``."""
    pairs = _query_pairs(query_string)
    if isinstance(pairs, str):
        return pairs
    verbose: bool | None = None
    fmt: str | None = None
    exclude: list[str] = []
    for key, value in pairs:
        if key == "verbose":
            lowered = value.lower()
            if lowered not in _TRUE and lowered not in _FALSE:
                return "verbose takes no value, or one of 1, true, yes, on, 0, false, no, off"
            # Given again, it must mean the same (``verbose&verbose=1``), as format.
            if verbose is not None and verbose != (lowered in _TRUE):
                return "verbose given twice with different values"
            verbose = lowered in _TRUE
        elif key == "exclude":
            if not value:
                return "exclude needs a check name"
            if not _registry.CHECK_NAME.fullmatch(value):
                return "exclude: not a valid check name"
            exclude.append(value)
        elif key == "format":
            if value not in ("json", "text"):
                return "format must be json or text"
            if fmt is not None and fmt != value:
                return "format given twice with different values"
            fmt = value
        else:
            return f"unknown query parameter {key[:40]!r}"
    return verbose, fmt, tuple(exclude)


#: A ``%`` that does not start a percent-encoded octet (RFC 3986 section 2.1: ``%`` and two
#: hex digits); ``urllib.parse.unquote`` would keep it as it is instead of failing.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MALFORMED_QUERY = "malformed query string: not valid percent-encoded UTF-8"


def _query_pairs(query_string: str) -> list[tuple[str, str]] | str:
    """The ``(name, value)`` pairs of a query string, percent-decoded as UTF-8 (``+`` is a
    space, as in HTML forms), or the one-line reason it is malformed. One rule for probe
    and metrics queries.

    Args:
        query_string: the raw query, without the ``?``.

    Returns:
        A list of pairs (blank values kept), or a ``str``: the reason for a ``400`` answer
        when the query is longer than :data:`MAX_QUERY_LENGTH` characters, has more than
        :data:`MAX_QUERY_FIELDS` pairs, has a ``%`` not followed by two hex digits (RFC 3986
        section 2.1), or has an escape that does not decode as UTF-8.
    """
    if len(query_string) > MAX_QUERY_LENGTH:
        return f"query string longer than {MAX_QUERY_LENGTH} characters"
    if _BAD_ESCAPE.search(query_string):
        return _MALFORMED_QUERY
    try:
        return urllib.parse.parse_qsl(
            query_string, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS
        )
    except UnicodeDecodeError:
        return _MALFORMED_QUERY
    except ValueError:  # parse_qsl's own limit
        return f"more than {MAX_QUERY_FIELDS} query parameters"


def check_path(what: str, path: str) -> None:
    """Refuse a probe or metrics path given as an option.

    ASCII only, because the WSGI adapter matches probe paths against ``PATH_INFO`` before
    decoding it (PEP 3333 gives its bytes as latin-1), so a non-ASCII path would be answered
    by one adapter and passed on by the other.

    Args:
        what: what the path is for, for the message (``"probe"``, ``"metrics"``).
        path: the path given.

    Raises:
        ValueError: ``path`` does not start with ``/``, ends with one (``/`` alone is
            accepted), is not ASCII, or holds a query, a fragment, a space or a control
            character.
    """
    if not path.startswith("/") or (len(path) > 1 and path.endswith("/")):
        raise ValueError(f"{what} path {path!r} must start with '/' and not end with '/'")
    if not path.isascii():
        raise ValueError(f"{what} path {path!r} must be ASCII")
    if any(c in path for c in "?#") or not path.isprintable() or " " in path:
        raise ValueError(f"{what} path {path!r} must be a path alone: no query, fragment, space or control character")


def check_app(app: object, protocol: str) -> None:
    """Refuse, at construction, an ``app`` that an adapter of ``protocol`` (``"asgi"`` or
    ``"wsgi"``) cannot serve, with a one-line error that says the fix: every request to it
    would fail while the probes pass, and Kubernetes would route traffic to the pod.

    Raises:
        TypeError: ``app`` is a registry or endpoints (arguments swapped), not callable, or an
            application of the other protocol: an ``async`` callable is ASGI (ASGI 3.0
            specification); a plain callable taking exactly ``(environ, start_response)`` is
            WSGI (PEP 3333). An app whose protocol cannot be told is accepted.
    """
    if isinstance(app, (_registry.HealthRegistry, HealthEndpoints)):
        raise TypeError("the app comes first: HealthMiddleware(app, registry, ...)")
    if not callable(app):
        raise TypeError(f"app must be an {protocol.upper()} application (a callable), got {type(app).__name__}")
    if inspect.isclass(app) and _class_of_apps(app):
        raise TypeError(f"{app.__name__} is a class: pass the application, an instance of it ({app.__name__}(...))")
    found = _protocol_of(app)
    if found is not None and found != protocol:
        other = "asgi" if protocol == "wsgi" else "wsgi"
        raise TypeError(
            f"{type(app).__name__} is an {found.upper()} application: use healthprobe.{other}.HealthMiddleware "
            f"(healthprobe.{protocol} serves {protocol.upper()} applications)"
        )


def check_shutdown(app: object, shutdown: object, registry: object = None) -> None:
    """Refuse, at construction, a ``shutdown=`` that is not a coordinator, one built on
    another registry than the middleware's ``registry`` (readiness would not fail at
    shutdown), or one the wrapped ``app`` already serves (each request would be counted
    twice).

    Raises:
        TypeError: ``shutdown`` is not a :class:`~healthprobe.shutdown.GracefulShutdown`.
        ValueError: another registry, or ``app`` is a ``HealthMiddleware`` serving the same
            coordinator.
    """
    from .shutdown import GracefulShutdown

    if shutdown is None:
        return
    if not isinstance(shutdown, GracefulShutdown):
        raise TypeError(f"shutdown must be a GracefulShutdown, got {type(shutdown).__name__}")
    served = registry.registry if isinstance(registry, HealthEndpoints) else registry
    if isinstance(served, _registry.HealthRegistry) and shutdown.registry is not served:
        raise ValueError(
            "the GracefulShutdown was built on another HealthRegistry than the middleware's, so readiness "
            "would not fail at shutdown: build both on the same registry"
        )
    if getattr(app, "shutdown", None) is shutdown and isinstance(getattr(app, "endpoints", None), HealthEndpoints):
        raise ValueError(
            "the app is already wrapped by a HealthMiddleware serving this GracefulShutdown: wrap it once "
            "(each request would be counted twice)"
        )


def _class_of_apps(cls: type) -> bool:
    """Whether instances of ``cls`` are ASGI 3 or WSGI applications: its ``__call__`` takes
    ``(scope, receive, send)`` as a coroutine, or ``(environ, start_response)``. An ASGI 2
    class (instantiated per connection, with ``async __call__(receive, send)``) is not."""
    call = next((vars(base)["__call__"] for base in cls.__mro__ if "__call__" in vars(base)), None)
    if call is None:
        return False
    try:
        parameters = list(inspect.signature(call).parameters.values())[1:]  # without self
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in parameters if p.kind in kinds and p.default is p.empty]
    return len(required) == (3 if inspect.iscoroutinefunction(call) else 2)


def _protocol_of(app: object) -> str | None:
    # An object's own __call__, looked up on its type as Python calls it.
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else vars(type(app)).get("__call__")
    if call is None and not inspect.isfunction(app):
        call = next((vars(cls)["__call__"] for cls in type(app).__mro__ if "__call__" in vars(cls)), None)
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return "asgi"
    if inspect.isclass(app):
        return None  # an ASGI 2 application class, or anything: cannot tell
    try:
        parameters = list(inspect.signature(app).parameters.values())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in parameters if p.kind in kinds and p.default is p.empty]
    if len(required) == 2 and all(p.kind in kinds for p in parameters):
        return "wsgi"
    return None


def when_grouped(registry: HealthRegistry, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once, as soon as ``registry`` has a group: now if it has one, else
    at the first probe answered after one is added (a report listener that does nothing
    after it has called). For integrations that must warn of groups no path answers.

    Args:
        registry: the registry to watch.
        callback: called at most once, with no argument, in the thread of that probe.
    """
    called = False

    def look(_: object = None) -> None:
        nonlocal called
        if called or not registry.groups:
            return
        called = True
        callback()

    look()
    if not called:
        registry.add_report_listener(look)


def endpoints_for(
    registry: HealthRegistry | HealthEndpoints, options: EndpointOptions, shutdown: ShutdownView | None = None
) -> HealthEndpoints:
    """The endpoints an adapter serves: ``registry`` itself if it is a
    :class:`HealthEndpoints` (``options`` are then ignored), else endpoints built on it.

    Args:
        registry: a :class:`HealthRegistry`, or configured :class:`HealthEndpoints`.
        options: the :class:`EndpointOptions` the adapter was given as keyword arguments.
        shutdown: as :class:`HealthEndpoints` takes it.

    Raises:
        TypeError, ValueError, ImportError: as :class:`HealthEndpoints`; a key of ``options``
            that is not an option (``shutdown`` given to a mounted app, a typo) is a
            ``TypeError`` also when ``registry`` is endpoints.
    """
    _refuse_unknown(options)
    if isinstance(registry, HealthEndpoints):
        return registry
    return HealthEndpoints(registry, shutdown=shutdown, **options)


def _metrics_source(registry: HealthRegistry, shutdown: ShutdownView | None = None) -> MetricsSource:
    from ._extras import requires

    with requires("prometheus", "metrics=True"):
        from .prometheus import PrometheusMetrics
    return PrometheusMetrics(registry, shutdown=shutdown)
