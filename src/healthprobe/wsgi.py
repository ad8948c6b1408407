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

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol, cast

from . import _launch
from ._types import Probe
from .http import (
    HealthEndpoints,
    MetricsSource,
    Response,
    check_app,
    check_shutdown,
    endpoints_for,
    plain_response,
)
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


def _path(environ: WSGIEnvironment) -> str:
    """``PATH_INFO`` as text, decoded as ASGI servers decode ``path``.

    PEP 3333 servers pass the percent-decoded bytes of the path as a latin-1 ``str``
    ("bytes-as-unicode"); the bytes are UTF-8 (RFC 3987 section 3.2, and what browsers and
    HTTP clients send). They are decoded as uvicorn and hypercorn decode ``path``
    (``urllib.parse.unquote``: UTF-8, an undecodable byte becomes U+FFFD), so that both
    adapters give the same answer. A ``str`` that cannot be latin-1 bytes (no PEP 3333
    server makes one) is taken as text already.
    """
    path: str = environ.get("PATH_INFO", "") or "/"
    if path.isascii():
        return path
    try:
        raw = path.encode("latin-1")
    except UnicodeEncodeError:
        return path
    return raw.decode("utf-8", "replace")


def _handle(endpoints: HealthEndpoints, environ: WSGIEnvironment) -> Response | None:
    method = environ.get("REQUEST_METHOD", "GET")
    path = _path(environ)
    query = environ.get("QUERY_STRING", "")
    accept = environ.get("HTTP_ACCEPT")
    response = endpoints.cached(method, path, query, accept)
    if response is None:
        response = endpoints.handle_sync(method, path, query, accept)
    return response


class _InFlight:
    """The app's response iterable, counted in flight until its body is exhausted or the
    server closes it, whichever comes first: what the client sees. (PEP 3333 requires
    servers to call ``close()``, but some call it late: Werkzeug's server only once the
    peer closes a keep-alive connection.) Closes the app's iterable once, and counts the
    request finished once, however often either happens.

    A body ended by an exception that ends a process rather than a request
    (``SystemExit``: gunicorn's quick shutdown and worker timeout; ``KeyboardInterrupt``),
    raised while the body is produced or while the server writes it (``close()`` is then
    called with it propagating), is counted as cut (:meth:`GracefulShutdown.request_cut`),
    never as finished cleanly."""

    __slots__ = ("_closed", "_iterable", "_requests", "_shutdown")

    def __init__(self, iterable: Iterable[bytes], requests: list[None], shutdown: GracefulShutdown) -> None:
        self._iterable = iterable
        self._requests: list[None] | None = requests
        self._shutdown = shutdown
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._iterable
        except (Exception, GeneratorExit):  # the app's error, or the server stopped iterating
            raise
        except BaseException as exc:
            self._cut(exc)
            raise
        self._finished()

    def _finished(self) -> None:
        requests, self._requests = self._requests, None
        if requests:  # never below zero, whatever else counts there
            requests.pop()

    def _cut(self, error: BaseException) -> None:
        if self._requests is not None:  # counted once, before the count drops
            self._shutdown.request_cut(error)
            self._finished()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._requests is not None:  # closed before the body was exhausted
            error = sys.exc_info()[1]  # what propagates through the server's finally, if any
            if error is not None and not isinstance(error, (Exception, GeneratorExit)):
                self._cut(error)
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            self._finished()


class ProbeMiddleware(Protocol):
    """What :func:`HealthMiddleware` returns: a WSGI application (PEP 3333), with the parts
    it was built from as read-only attributes."""

    #: The wrapped application.
    app: WSGIApplication
    #: The endpoints answering probe (and metrics) requests.
    endpoints: HealthEndpoints
    #: The coordinator counting in-flight requests, or ``None``.
    shutdown: GracefulShutdown | None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]: ...


def HealthMiddleware(
    app: WSGIApplication,
    registry: HealthRegistry | HealthEndpoints,
    *,
    paths: Mapping[str, Probe | str] | None = None,
    failure_status: int | Mapping[Probe | str, int] = 503,
    expose_output: bool = False,
    metrics: bool | MetricsSource = False,
    metrics_path: str = "/metrics",
    shutdown: GracefulShutdown | None = None,
) -> ProbeMiddleware:
    """Wrap a WSGI app so that probe paths are answered before it sees them.

    Args:
        app: the WSGI application to pass other requests to.
        registry: a :class:`HealthRegistry`, or a configured :class:`HealthEndpoints`.
        paths, failure_status, expose_output, metrics, metrics_path: as
            :class:`HealthEndpoints` (ignored when ``registry`` is a :class:`HealthEndpoints`);
            ``metrics=True`` also serves Prometheus metrics on ``/metrics``.
        shutdown: a :class:`GracefulShutdown` to serve: requests to ``app`` are counted
            as in flight until their body is exhausted or the server closes the response
            iterable, whichever comes first (PEP 3333); one ended by ``SystemExit`` or
            ``KeyboardInterrupt`` (gunicorn's quick shutdown, its worker timeout) is counted
            as cut, not drained. The coordinator's signal handlers are installed in the
            serving process: here, as a gunicorn sync or ``gthread`` worker or
            ``waitress-serve`` imports the application; else at the first request, when it
            runs in the main thread (gunicorn with ``--preload``). Where the server cannot
            be stopped that way, a WARNING at the first request names the fix; under a
            development server (``flask run``, ``manage.py runserver``) nothing is
            installed. No ``Connection`` header is added while draining: hop-by-hop headers
            belong to the server, not the application (PEP 3333); the server stops accepting
            instead.

    Returns:
        A :class:`ProbeMiddleware`: the WSGI application to serve, with ``app``,
        ``endpoints`` and ``shutdown`` as attributes.

    Raises:
        ValueError, ImportError: as :class:`HealthEndpoints`.

    Use it like a middleware class: ``app.wsgi_app = HealthMiddleware(app.wsgi_app,
    registry)``. It is a function returning a closure because every request of the
    application passes through it, and CPython calls a function markedly faster than an
    object's ``__call__`` (docs/performance.md).
    """
    check_app(app, "wsgi")
    check_shutdown(app, shutdown, registry)
    endpoints = endpoints_for(registry, paths, failure_status, expose_output, metrics, metrics_path, shutdown)
    if shutdown is not None:
        _adopt_at_import(shutdown)
    # Every path answered here is one of these or starts with one of the prefixes.
    exact = frozenset([*endpoints.paths, *([endpoints.metrics_path] if endpoints.metrics else [])])
    prefixes = tuple(path.rstrip("/") + "/" for path in endpoints.paths)
    answers = endpoints._answers
    health = endpoints.registry

    def health_middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # Every request passes here: a set lookup (and one startswith for other paths)
        # decides whether it is ours; a repeated probe whose answer is still current is
        # answered from the endpoints' remembered answers by one lookup on the raw environ
        # values and one validity test, without a call in between (docs/performance.md).
        if shutdown is not None and not shutdown._steady:
            # Not installed in this process yet (--preload), or draining: a probe is often
            # a process's first request, so it is the one to install, or to warn.
            shutdown._adopt(_launch.server_name(environ.get("SERVER_SOFTWARE", "")))
        try:
            path = environ["PATH_INFO"] or "/"
        except KeyError:  # PATH_INFO may be absent (PEP 3333)
            path = "/"
        if path in exact:
            try:
                entry = answers.get(
                    (environ["REQUEST_METHOD"], path, environ["QUERY_STRING"], environ.get("HTTP_ACCEPT"))
                )
            except KeyError:  # QUERY_STRING may be absent (PEP 3333): answered below
                entry = None
            if entry is not None:
                stamp, answer = entry
                if stamp.generation == health._generation and (not stamp.pairs or health._current(stamp)):
                    start_response(answer.status_line, [*answer.headers])
                    return [answer.body]
            mine = True
        else:
            mine = path.startswith(prefixes) and endpoints.matches(path)
        if mine:
            response = _handle(endpoints, environ)
            if response is not None:
                return _answer(response, environ, start_response)
        if shutdown is None:
            return app(environ, start_response)
        # The coordinator's own list, not its methods: this is the pass-through cost of
        # every request (docs/performance.md).
        requests = shutdown._requests
        requests.append(None)
        try:
            iterable = app(environ, start_response)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt: the request is cut
                shutdown.request_cut(exc)  # before the count drops, so no drain sees it clean
            if requests:
                requests.pop()
            raise
        return _InFlight(iterable, requests, shutdown)

    middleware = cast(ProbeMiddleware, health_middleware)
    middleware.app = app
    middleware.endpoints = endpoints
    middleware.shutdown = shutdown
    return middleware


def _adopt_at_import(shutdown: GracefulShutdown) -> None:
    """Install the coordinator now when the server importing the application is known and
    its worker serves from the main thread later (gunicorn's sync and ``gthread`` workers,
    ``waitress-serve``): requests of a ``gthread`` worker or of waitress run in other
    threads, where signal handlers cannot be installed."""
    server = _launch.server_at_import()
    if server == "gunicorn":
        shutdown._install(automatic=server)
    elif server == "waitress":
        from .servers import waitress

        waitress.adopt(shutdown)
    elif _launch.gunicorn_preloading():
        _launch.warn_preload()


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
