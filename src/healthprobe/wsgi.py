"""WSGI adapter (PEP 3333): a middleware that answers probe paths, and a mountable app.

Wrap the application outermost, so its authentication never blocks probes::

    app.wsgi_app = HealthMiddleware(app.wsgi_app, registry)        # Flask
    application = HealthMiddleware(get_wsgi_application(), registry)  # Django

or mount :class:`HealthApp` with Werkzeug's ``DispatcherMiddleware`` (it reads
``PATH_INFO``, which the dispatcher has already stripped of the mount prefix, PEP 3333).

What it changes: requests to probe paths are answered here and never reach the app;
everything else passes through untouched. The calling worker thread waits for the checks,
which run in their own daemon threads, so a hung check costs the probe its deadline and
never holds the worker beyond it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from ._types import Probe
from .http import HealthEndpoints, MetricsSource, Response, endpoints_for, plain_response
from .registry import HealthRegistry
from .shutdown import GracefulShutdown

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def _answer(response: Response, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    # PEP 3333: status line and a list of (name, value) str pairs, then the body. The headers
    # already carry the length of the GET body, which HEAD repeats (RFC 9110 section 9.3.2);
    # the list is copied since servers add to it (wsgiref adds Date and Server).
    start_response(response.status_line, list(response.headers))
    return [response.body]


def _handle(endpoints: HealthEndpoints, environ: WSGIEnvironment) -> Response | None:
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "") or "/"
    query = environ.get("QUERY_STRING", "")
    accept = environ.get("HTTP_ACCEPT")
    response = endpoints.cached(method, path, query, accept)
    if response is None:
        response = endpoints.handle_sync(method, path, query, accept)
    return response


class _InFlight:
    """The app's response iterable, counted in flight until the server closes it (PEP 3333
    requires servers to call ``close()``); closes the app's iterable first, then counts the
    request finished, once however often it is closed."""

    __slots__ = ("_finished", "_iterable")

    def __init__(self, iterable: Iterable[bytes], finished: Callable[[], None]) -> None:
        self._iterable = iterable
        self._finished: Callable[[], None] | None = finished

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._iterable)

    def close(self) -> None:
        finished, self._finished = self._finished, None
        if finished is None:
            return
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            finished()


class HealthMiddleware:
    """WSGI middleware answering probe paths before the wrapped app sees them.

    Args:
        app: the WSGI application to pass other requests to.
        registry: a :class:`HealthRegistry`, or a configured :class:`HealthEndpoints`.
        paths, failure_status, expose_output, metrics, metrics_path: as
            :class:`HealthEndpoints`; ``metrics=True`` also serves Prometheus metrics on
            ``/metrics``.
        shutdown: a :class:`GracefulShutdown` to serve: requests to ``app`` are counted
            as in flight until the server closes the response iterable (PEP 3333 requires
            servers to call ``close()``). No ``Connection`` header is added while draining:
            hop-by-hop headers belong to the server, not the application (PEP 3333); the
            server integration stops accepting instead.
    """

    def __init__(
        self,
        app: WSGIApplication,
        registry: HealthRegistry | HealthEndpoints,
        *,
        paths: Mapping[str, Probe | str] | None = None,
        failure_status: int | Mapping[Probe | str, int] = 503,
        expose_output: bool = False,
        metrics: bool | MetricsSource = False,
        metrics_path: str = "/metrics",
        shutdown: GracefulShutdown | None = None,
    ) -> None:
        self.app = app
        self.endpoints = endpoints = endpoints_for(
            registry, paths, failure_status, expose_output, metrics, metrics_path
        )
        self.shutdown = shutdown
        # Every path answered here is one of these or starts with one of the prefixes.
        self._exact = frozenset([*endpoints.paths, *([endpoints.metrics_path] if endpoints.metrics else [])])
        self._prefixes = tuple(path.rstrip("/") + "/" for path in endpoints.paths)
        self._registry = endpoints.registry
        self._answers = endpoints._answers

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # Every request passes here: a set lookup and one startswith decide whether it is
        # ours; a repeated probe whose answer is still current is answered from the
        # endpoints' remembered answers by one lookup on the raw environ values and one
        # validity test, without a call in between (docs/performance.md).
        path = environ.get("PATH_INFO", "") or "/"
        if path in self._exact:
            entry = self._answers.get(
                (
                    environ.get("REQUEST_METHOD", "GET"),
                    path,
                    environ.get("QUERY_STRING", ""),
                    environ.get("HTTP_ACCEPT"),
                )
            )
            if entry is not None:
                stamp, answer = entry
                registry = self._registry
                if stamp.generation == registry._generation and (not stamp.pairs or registry._current(stamp)):
                    start_response(answer.status_line, list(answer.headers))
                    return [answer.body]
            ours = True
        else:
            ours = path.startswith(self._prefixes) and self.endpoints.matches(path)
        if ours:
            response = _handle(self.endpoints, environ)
            if response is not None:
                return _answer(response, environ, start_response)
        shutdown = self.shutdown
        if shutdown is None:
            return self.app(environ, start_response)
        shutdown.request_started()
        try:
            iterable = self.app(environ, start_response)
        except BaseException:
            shutdown.request_finished()
            raise
        return _InFlight(iterable, shutdown.request_finished)


class HealthApp:
    """A WSGI app serving only the probe paths (others are ``404``), for mounting under
    Werkzeug's ``DispatcherMiddleware`` or any WSGI router.

    Args:
        registry: a :class:`HealthRegistry`, or a configured :class:`HealthEndpoints`.
        paths, failure_status, expose_output, metrics, metrics_path: as
            :class:`HealthEndpoints`; ``metrics=True`` also serves Prometheus metrics on
            ``/metrics``.
    """

    def __init__(
        self,
        registry: HealthRegistry | HealthEndpoints,
        *,
        paths: Mapping[str, Probe | str] | None = None,
        failure_status: int | Mapping[Probe | str, int] = 503,
        expose_output: bool = False,
        metrics: bool | MetricsSource = False,
        metrics_path: str = "/metrics",
    ) -> None:
        self.endpoints = endpoints_for(registry, paths, failure_status, expose_output, metrics, metrics_path)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = _handle(self.endpoints, environ)
        if response is None:
            response = plain_response(404, "not found", environ.get("REQUEST_METHOD") == "HEAD")
        return _answer(response, environ, start_response)
