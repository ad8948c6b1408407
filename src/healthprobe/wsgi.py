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
import typing

from . import _launch, http
from . import guard as _guard

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from typing_extensions import Unpack

    from .http import EndpointOptions, HealthEndpoints, Response
    from .registry import HealthRegistry
    from .shutdown import GracefulShutdown

__all__ = ["HealthApp", "HealthMiddleware", "ProbeMiddleware"]


def _answer(response: Response, start_response: StartResponse) -> Iterable[bytes]:
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


def _header(environ: WSGIEnvironment) -> Callable[[str], str | None]:
    """A request header's value by lower-case name, or ``None``: what a guard reads (PEP 3333
    ``HTTP_`` variables; servers join repeated fields with ``,``)."""

    def header(name: str) -> str | None:
        if name == "content-type":
            value = environ.get("CONTENT_TYPE")
        else:
            value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        return value if isinstance(value, str) else None

    return header


def _admin(endpoints: HealthEndpoints, kind: str, environ: WSGIEnvironment) -> Response:
    """The answer of a request on a guarded admin path: the body is read only when the guard
    allows it, and only ``CONTENT_LENGTH`` bytes of it, at most
    :data:`~healthprobe.http.ADMIN_BODY_LIMIT`. Without ``CONTENT_LENGTH`` (a chunked
    body), it is read up to the limit and one byte more (``413`` beyond) when the server
    sets ``wsgi.input_terminated`` (gunicorn and Werkzeug do: the input then ends where the
    body ends); otherwise it counts as empty, since PEP 3333 lets a server give no end of
    input without a length."""
    method = environ.get("REQUEST_METHOD", "GET")
    header = _header(environ)
    verdict = endpoints.verdict(environ.get("REMOTE_ADDR"), header)
    given = environ.get("CONTENT_LENGTH")
    chunked = not given and bool(environ.get("wsgi.input_terminated"))
    try:
        length = int(given or 0)
    except ValueError:
        length = http.ADMIN_BODY_LIMIT + 1
    response = endpoints.admin_refusal(kind, method, verdict, None if chunked else length)
    if response is not None:
        return response
    body = b""
    if method == "POST" and chunked:
        body = _read_terminated(environ["wsgi.input"], http.ADMIN_BODY_LIMIT + 1)
        if len(body) > http.ADMIN_BODY_LIMIT:
            return endpoints.admin_refusal(kind, method, verdict, len(body)) or http.plain_response(413, "too large")
    elif method == "POST" and length > 0:
        body = environ["wsgi.input"].read(length)
    return endpoints.admin(kind, method, environ.get("QUERY_STRING", ""), header("content-type"), body)


def _read_terminated(stream: typing.Any, most: int) -> bytes:
    """At most ``most`` bytes of a ``wsgi.input`` that ends where the body ends: read until
    it gives nothing (a raw stream, as Werkzeug's dechunking one, may give less than asked)."""
    chunks: list[bytes] = []
    size = 0
    while size < most:
        chunk = stream.read(most - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _handle(endpoints: HealthEndpoints, environ: WSGIEnvironment) -> Response | None:
    method = environ.get("REQUEST_METHOD", "GET")
    path = _path(environ)
    query = environ.get("QUERY_STRING", "")
    accept = environ.get("HTTP_ACCEPT")
    if endpoints.guard is None:
        response = endpoints.cached(method, path, query, accept)
        if response is None:
            response = endpoints.handle_sync(method, path, query, accept)
        return response
    kind = endpoints.admin_paths.get(path)
    if kind is not None:
        return _admin(endpoints, kind, environ)
    details = endpoints.verdict(environ.get("REMOTE_ADDR"), _header(environ)) is _guard.Verdict.ALLOWED
    response = endpoints.cached(method, path, query, accept, None, details)
    if response is None:
        response = endpoints.handle_sync(method, path, query, accept, None, details)
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

    __slots__ = ("_closed", "_iterable", "_shutdown", "_slots")

    def __init__(self, iterable: Iterable[bytes], slots: list[None], shutdown: GracefulShutdown) -> None:
        self._iterable = iterable
        self._slots: list[None] | None = slots
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
        slots, self._slots = self._slots, None
        if slots:  # never below zero, whatever else counts there
            slots.pop()

    def _cut(self, error: BaseException) -> None:
        if self._slots is not None:  # counted once, before the count drops
            self._shutdown.request_cut(error)
            self._finished()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._slots is not None:  # closed before the body was exhausted
            error = sys.exc_info()[1]  # what propagates through the server's finally, if any
            if error is not None and not isinstance(error, (Exception, GeneratorExit)):
                self._cut(error)
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            self._finished()


class ProbeMiddleware(typing.Protocol):
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
    shutdown: GracefulShutdown | None = None,
    **options: Unpack[EndpointOptions],
) -> ProbeMiddleware:
    """Wrap a WSGI app so that probe paths are answered before it sees them.

    Args:
        app: the WSGI application to pass other requests to.
        registry: a :class:`HealthRegistry`, or a configured :class:`HealthEndpoints`.
        **options: the endpoint options, :class:`~healthprobe.http.EndpointOptions`
            (``paths``, ``failure_status``, ``expose_output``, ``metrics``,
            ``metrics_path``, ``guard``), ignored when ``registry`` is a
            :class:`HealthEndpoints`; ``metrics=True`` also serves Prometheus metrics on
            ``/metrics``. Under a ``guard``, the client address is ``REMOTE_ADDR``.
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
        TypeError, ValueError, ImportError: as :class:`HealthEndpoints`; ``TypeError`` also
            for an ``app`` that is not a WSGI application (an ASGI one, a class) or a
            ``shutdown`` that is not a coordinator of the same registry.

    Use it like a middleware class: ``app.wsgi_app = HealthMiddleware(app.wsgi_app,
    registry)``. It is a function returning a closure because every request of the
    application passes through it, and CPython calls a function markedly faster than an
    object's ``__call__`` (docs/performance.md); and the function built is chosen once, here:
    with a coordinator, one that counts requests in flight, without, one that passes them on
    as they are.
    """
    http.check_app(app, "wsgi")
    http.check_shutdown(app, shutdown, registry)
    endpoints = http.endpoints_for(registry, options, shutdown)
    probes = _probes(app, endpoints)
    if shutdown is not None:
        _adopt_at_import(shutdown)
    middleware = probes if shutdown is None else _counting(app, endpoints, probes, shutdown)
    built = typing.cast(ProbeMiddleware, middleware)
    built.app, built.endpoints, built.shutdown = app, endpoints, shutdown
    return built


def _probes(app: WSGIApplication, endpoints: HealthEndpoints) -> WSGIApplication:
    """The middleware without a coordinator: probe requests answered, others passed to
    ``app`` as they are; with a coordinator, what answers its probe requests."""
    exact, prefixes, answers, health = endpoints.exact_paths, endpoints.prefixes, endpoints.answers, endpoints.registry

    def health_middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # Every request passes here: a set lookup (and one startswith for other paths)
        # decides whether it is ours; a repeated probe whose answer is still current is
        # answered from the endpoints' remembered answers by one lookup on the raw environ
        # values and the test of HealthEndpoints.is_current written out, without a call in
        # between (docs/performance.md).
        try:
            path = environ["PATH_INFO"] or "/"
        except KeyError:  # PATH_INFO may be absent (PEP 3333)
            path = "/"
        if path in exact:
            try:
                answer = answers[environ["REQUEST_METHOD"], path, environ["QUERY_STRING"], environ.get("HTTP_ACCEPT")]
            except KeyError:  # not remembered, or QUERY_STRING absent (PEP 3333): answered below
                pass
            else:
                if answer.generation == health.generation and (
                    answer.stamp is None or health.still_current(answer.stamp)
                ):
                    start_response(answer.status_line, [*answer.headers])
                    return [answer.body]
        elif not (path.startswith(prefixes) and endpoints.matches(path)):
            return app(environ, start_response)
        response = _handle(endpoints, environ)
        if response is None:
            return app(environ, start_response)
        return _answer(response, start_response)

    return health_middleware


def _counting(
    app: WSGIApplication, endpoints: HealthEndpoints, probes: WSGIApplication, shutdown: GracefulShutdown
) -> WSGIApplication:
    """The middleware with a coordinator: requests to ``app`` counted in flight until their
    body is sent or closed, probe requests answered by ``probes``; a request that comes
    while the coordinator is not installed here installs it (or warns)."""
    exact, prefixes = endpoints.exact_paths, endpoints.prefixes
    slots = shutdown.requests_in_flight.slots

    def health_middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not shutdown.steady:
            # Not installed in this process yet (--preload), or draining: a probe is often
            # a process's first request, so it is the one to install, or to warn.
            shutdown.adopt(_launch.server_name(environ.get("SERVER_SOFTWARE", "")))
        try:
            path = environ["PATH_INFO"] or "/"
        except KeyError:  # PATH_INFO may be absent (PEP 3333)
            path = "/"
        if path in exact or (path.startswith(prefixes) and endpoints.matches(path)):
            return probes(environ, start_response)
        # The coordinator's own list, not its methods: this is the pass-through cost of
        # every request (docs/performance.md).
        slots.append(None)
        try:
            iterable = app(environ, start_response)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt: the request is cut
                shutdown.request_cut(exc)  # before the count drops, so no drain sees it clean
            if slots:
                slots.pop()
            raise
        return _InFlight(iterable, slots, shutdown)

    return health_middleware


def _adopt_at_import(shutdown: GracefulShutdown) -> None:
    """Install the coordinator now when the server importing the application is known and
    its worker serves from the main thread later (gunicorn's sync and ``gthread`` workers,
    ``waitress-serve``): requests of a ``gthread`` worker or of waitress run in other
    threads, where signal handlers cannot be installed."""
    server = _launch.server_at_import()
    if server == "gunicorn":
        shutdown.install_automatically(server)
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
        **options: the endpoint options, :class:`~healthprobe.http.EndpointOptions`,
            ignored when ``registry`` is a :class:`HealthEndpoints`; ``metrics=True`` also
            serves Prometheus metrics on ``/metrics``.
    """

    def __init__(self, registry: HealthRegistry | HealthEndpoints, **options: Unpack[EndpointOptions]) -> None:
        self.endpoints = http.endpoints_for(registry, options)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = _handle(self.endpoints, environ)
        if response is None:
            response = http.plain_response(404, "not found", environ.get("REQUEST_METHOD") == "HEAD")
        return _answer(response, start_response)
