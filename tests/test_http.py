"""The HTTP rules of the probe endpoints, through both adapters, as middleware and as a
mounted app (Starlette ``Mount`` for ASGI, Werkzeug ``DispatcherMiddleware`` for WSGI).

ASGI requests go through httpx's ``ASGITransport`` (the real ASGI app on an event loop),
WSGI requests through httpx's ``WSGITransport`` (the real WSGI app). Real servers are
exercised in ``test_servers.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from healthprobe import CheckResult, HealthEndpoints, HealthRegistry, Probe, Status
from healthprobe import asgi as hp_asgi
from healthprobe import wsgi as hp_wsgi

from .support import started_registry

SLACK = 2.0
SECRET = "password=hunter2"

# -- the applications behind the probes: both refuse every request (as an app with
# authentication would), so a probe answered by them would show up as 401.


async def _asgi_denied(request: Request) -> PlainTextResponse:
    return PlainTextResponse("app: login required", status_code=401)


def asgi_inner() -> Starlette:
    return Starlette(routes=[Route("/{path:path}", _asgi_denied, methods=["GET", "HEAD", "POST"])])


@WerkzeugRequest.application  # type: ignore[arg-type]
def wsgi_inner(request: WerkzeugRequest) -> WerkzeugResponse:
    return WerkzeugResponse("app: login required", status=401)


class ASGIClient:
    """A blocking client for an ASGI app: each request runs on a fresh event loop through
    httpx's ``ASGITransport`` (app exceptions are raised, so a crash cannot pass as a 500)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                response = await client.request(method, url, **kwargs)
                await response.aread()
                return response

        return anyio.run(go)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", url, **kwargs)

    def close(self) -> None:
        pass


MODES = ["asgi-middleware", "asgi-mount", "wsgi-middleware", "wsgi-mount"]

ClientFactory = Callable[..., tuple[Any, str]]


@pytest.fixture(params=MODES)
def make_client(request: pytest.FixtureRequest) -> Iterator[ClientFactory]:
    """``make_client(registry, **HealthEndpoints options) -> (client, prefix)``."""
    mode: str = request.param
    clients: list[Any] = []

    def factory(registry: HealthRegistry, **options: Any) -> tuple[Any, str]:
        endpoints = HealthEndpoints(registry, **options)
        client: Any
        if mode == "asgi-middleware":
            client = ASGIClient(hp_asgi.HealthMiddleware(asgi_inner(), endpoints))
            prefix = ""
        elif mode == "asgi-mount":
            app = Starlette(routes=[Mount("/health", app=hp_asgi.HealthApp(endpoints)), Mount("/", asgi_inner())])
            client = ASGIClient(app)
            prefix = "/health"
        elif mode == "wsgi-middleware":
            transport = httpx.WSGITransport(app=hp_wsgi.HealthMiddleware(wsgi_inner, endpoints))
            client = httpx.Client(transport=transport, base_url="http://testserver")
            prefix = ""
        else:
            app = DispatcherMiddleware(wsgi_inner, {"/health": hp_wsgi.HealthApp(endpoints)})
            client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver")
            prefix = "/health"
        clients.append(client)
        return client, prefix

    yield factory
    for client in clients:
        client.close()


def registry_with(**checks: Callable[[], object]) -> HealthRegistry:
    """A started registry holding ``checks`` (readiness), whose results are never reused."""
    return started_registry(checks, default_cache_ttl=0)


def assert_probe_headers(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.status_code != 500


def one_line(response: httpx.Response) -> str:
    text = response.text
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text.strip()


# -- status codes ----------------------------------------------------------------------------


def test_pass_is_200_ok_text(make_client: ClientFactory) -> None:
    client, prefix = make_client(registry_with(db=lambda: True))
    for path in ("/livez", "/readyz", "/startupz", "/healthz"):
        response = client.get(prefix + path)
        assert response.status_code == 200, path
        assert response.text == "ok\n"
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert int(response.headers["content-length"]) == len(response.content)
        assert_probe_headers(response)


def test_fail_is_503_with_reason_withheld(make_client: ClientFactory) -> None:
    client, prefix = make_client(registry_with(cache=lambda: True, db=lambda: False))
    response = client.get(prefix + "/readyz")
    assert response.status_code == 503
    assert response.text == "[+]cache ok\n[-]db failed: reason withheld\nreadyz check failed\n"
    assert_probe_headers(response)
    assert client.get(prefix + "/livez").status_code == 200  # db is readiness only


def test_warn_is_served_as_success(make_client: ClientFactory) -> None:
    registry = registry_with(disk=lambda: CheckResult(Status.WARN, output="92% full"))
    registry.add_check("optional", lambda: False, critical=False)
    client, prefix = make_client(registry)
    assert client.get(prefix + "/readyz").text == "ok\n"  # warn is success
    response = client.get(prefix + "/readyz?verbose")
    assert response.status_code == 200
    assert "[+]disk warn: reason withheld" in response.text
    assert "[+]optional warn: reason withheld" in response.text
    assert "92%" not in response.text


def test_failure_status_is_configurable(make_client: ClientFactory) -> None:
    registry = registry_with(db=lambda: False)
    registry.add_check("heart", lambda: False, probes=["liveness"])
    client, prefix = make_client(registry, failure_status=500)
    assert client.get(prefix + "/readyz").status_code == 500
    client, prefix = make_client(registry, failure_status={"readiness": 429})
    assert client.get(prefix + "/readyz").status_code == 429
    assert client.get(prefix + "/livez").status_code == 503


def test_failure_status_out_of_range_rejected() -> None:
    for bad in (200, 302, 600, True):
        with pytest.raises(ValueError):
            HealthEndpoints(HealthRegistry(), failure_status=bad)


def test_lifecycle_reasons_are_shown(make_client: ClientFactory) -> None:
    registry = registry_with(db=lambda: True)
    client, prefix = make_client(registry)
    registry.set_ready(False, "maintenance")
    response = client.get(prefix + "/readyz")
    assert response.status_code == 503
    assert "[-]lifecycle failed: out of rotation: maintenance" in response.text
    registry.set_ready(True)
    registry.begin_drain()
    response = client.get(prefix + "/readyz")
    assert response.status_code == 503 and "[-]lifecycle failed: draining" in response.text
    assert client.get(prefix + "/livez").status_code == 200


# -- methods ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/readyz", "/livez?verbose", "/readyz?format=json", "/readyz/db", "/nope/x"])
def test_head_is_get_without_body(make_client: ClientFactory, path: str) -> None:
    client, prefix = make_client(registry_with(db=lambda: False))
    if path.startswith("/nope") and not prefix:
        return  # the middleware passes non-probe paths to the app
    get = client.get(prefix + path)
    head = client.head(prefix + path)
    assert head.status_code == get.status_code
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405_with_allow(make_client: ClientFactory, method: str) -> None:
    client, prefix = make_client(registry_with(db=lambda: True))
    for path in ("/readyz", "/livez", "/readyz/db"):
        response = client.request(method, prefix + path)
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert_probe_headers(response)


# -- single checks, unknown paths ------------------------------------------------------------


def test_single_check_and_unknown_check(make_client: ClientFactory) -> None:
    registry = registry_with(db=lambda: True, cache=lambda: False)
    client, prefix = make_client(registry)
    response = client.get(prefix + "/readyz/db")
    assert response.status_code == 200 and response.text == "ok\n"
    response = client.get(prefix + "/readyz/cache?verbose")
    assert response.status_code == 503
    assert response.text == "[-]cache failed: reason withheld\nreadyz check failed\n"
    for path in ("/readyz/nope", "/livez/db", "/readyz/db/extra", "/readyz//"):
        response = client.get(prefix + path)
        assert response.status_code == 404, path
        assert_probe_headers(response)
        one_line(response)


def test_unknown_paths(make_client: ClientFactory) -> None:
    client, prefix = make_client(registry_with(db=lambda: True))
    if prefix:  # the mounted app answers only probe paths
        assert client.get(prefix + "/metrics").status_code == 404
        assert client.get(prefix + "/").status_code == 404
    # Everything else reaches the application untouched.
    for path in ("/", "/livezz", "/api/readyz", "/readyzfoo"):
        response = client.get(path)
        assert response.status_code == 401 and response.text == "app: login required", path


# -- queries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "word"),
    [
        ("exclude=%ff", "percent-encoded"),
        ("exclude=%C3%28", "percent-encoded"),
        ("exclude=%zz", "percent-encoded"),
        ("exclude=db%", "percent-encoded"),
        ("%zz", "percent-encoded"),
        ("verbose=%2", "percent-encoded"),
        ("bogus=1", "unknown query parameter"),
        ("verbos", "unknown query parameter"),
        ("format=xml", "format"),
        ("format=", "format"),
        ("exclude", "exclude"),
        ("exclude=", "exclude"),
        ("verbose=maybe", "verbose"),
        ("exclude=" + "x" * 64, "not a valid check name"),
        ("exclude=db%0A", "not a valid check name"),
        ("exclude=../db", "not a valid check name"),
        ("format=json&format=text", "twice"),
        ("exclude=db&" * 65, "more than 64 query parameters"),
        ("verbose=" + "1" * 3000, "longer than 2048"),
    ],
)
def test_malformed_query_is_400_with_one_line_reason(make_client: ClientFactory, query: str, word: str) -> None:
    client, prefix = make_client(registry_with(db=lambda: True))
    response = client.get(f"{prefix}/readyz?{query}")
    assert response.status_code == 400
    assert word in one_line(response)
    assert_probe_headers(response)


@pytest.mark.parametrize(
    ("value", "listed"),
    [(v, True) for v in ("", "1", "true", "YES", "On")] + [(v, False) for v in ("0", "False", "no", "OFF")],
)
def test_verbose_takes_the_values_docs_index_md_lists(make_client: ClientFactory, value: str, listed: bool) -> None:
    # docs/index.md's query table and the 400's reason name the same values, in any case.
    client, prefix = make_client(registry_with(db=lambda: True))
    response = client.get(f"{prefix}/readyz?verbose={value}" if value else f"{prefix}/readyz?verbose")
    assert response.status_code == 200
    assert ("[+]db ok" in response.text) is listed, response.text
    refused = one_line(client.get(f"{prefix}/readyz?verbose=maybe"))
    assert refused.endswith("one of 1, true, yes, on, 0, false, no, off"), refused


MALFORMED_QUERY = "malformed query string: not valid percent-encoded UTF-8"


@pytest.mark.parametrize(
    "query",
    [
        "name[]=%zz",  # not an escape at all
        "name[]=%ff",  # an escape, but not UTF-8
        "name[]=%C3%28",
        "name[]=%",
        "name[]=%2",
        "name%5B%5D=%zz",
        "name[]=healthprobe_lifecycle_state&other=%g0",  # in a parameter that is ignored
        "%zz",
    ],
)
def test_malformed_percent_encoding_in_the_metrics_query_is_400(make_client: ClientFactory, query: str) -> None:
    client, prefix = make_client(registry_with(db=lambda: True), metrics=True)
    response = client.get(f"{prefix}/metrics?{query}")
    assert response.status_code == 400
    assert one_line(response) == MALFORMED_QUERY
    assert_probe_headers(response)
    head = client.head(f"{prefix}/metrics?{query}")
    assert head.status_code == 400 and head.content == b""


@pytest.mark.parametrize(
    ("query", "line"),
    [
        ("name[]=x&" * 65, "more than 64 query parameters"),
        ("name[]=" + "x" * 3000, "query string longer than 2048 characters"),
    ],
)
def test_metrics_query_has_the_limits_of_probe_queries(make_client: ClientFactory, query: str, line: str) -> None:
    client, prefix = make_client(registry_with(db=lambda: True), metrics=True)
    for path in ("/metrics", "/readyz"):
        response = client.get(f"{prefix}{path}?{query}")
        assert response.status_code == 400, path
        assert one_line(response) == line
        assert_probe_headers(response)
    # Up to the limits, a filter is served.
    names = "&".join(["name[]=healthprobe_lifecycle_state"] + ["name[]=x"] * 63)
    response = client.get(f"{prefix}/metrics?{names}")
    assert response.status_code == 200
    assert "healthprobe_lifecycle_state{" in response.text


def test_metrics_name_filter_decodes_valid_percent_encoding(make_client: ClientFactory) -> None:
    client, prefix = make_client(registry_with(db=lambda: True), metrics=True)
    client.get(prefix + "/readyz")
    for query in (
        "name[]=healthprobe_lifecycle_state",
        "name%5B%5D=healthprobe_lifecycle_state",
        "name[]=%68ealthprobe_lifecycle%5Fstate",
        "name[]=healthprobe_lifecycle_state&other=%25zz+%41",
    ):
        response = client.get(f"{prefix}/metrics?{query}")
        assert response.status_code == 200, (query, response.text)
        samples = [line for line in response.text.splitlines() if not line.startswith("#")]
        assert samples and all(line.startswith("healthprobe_lifecycle_state{") for line in samples), query
    everything = client.get(prefix + "/metrics?other=%41")
    assert everything.status_code == 200 and "healthprobe_check_status{" in everything.text


def test_exclude_on_a_single_check_is_400(make_client: ClientFactory) -> None:
    client, prefix = make_client(registry_with(db=lambda: True))
    response = client.get(prefix + "/readyz/db?exclude=db")
    assert response.status_code == 400
    one_line(response)


def test_verbose_lists_every_check(make_client: ClientFactory) -> None:
    client, prefix = make_client(registry_with(db=lambda: True, cache=lambda: True))
    for query in ("verbose", "verbose=", "verbose=1", "verbose=true"):
        response = client.get(f"{prefix}/readyz?{query}")
        assert response.status_code == 200
        assert response.text == "[+]db ok\n[+]cache ok\nreadyz check passed\n"
    assert client.get(prefix + "/readyz?verbose=0").text == "ok\n"


@pytest.mark.parametrize(
    "query",
    [
        "verbose&verbose=0",
        "verbose=0&verbose",
        "verbose=true&verbose=false",
        "verbose=1&verbose=1&verbose=off",
        "format=json&format=text",
        "format=text&format=json",
    ],
)
def test_repeated_parameters_with_conflicting_values_are_400(make_client: ClientFactory, query: str) -> None:
    client, prefix = make_client(registry_with(db=lambda: True))
    response = client.get(f"{prefix}/readyz?{query}")
    assert response.status_code == 400
    assert "given twice with different values" in one_line(response)
    assert_probe_headers(response)


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("verbose&verbose", "[+]db ok\nreadyz check passed\n"),
        ("verbose&verbose=1&verbose=true", "[+]db ok\nreadyz check passed\n"),
        ("verbose=0&verbose=false", "ok\n"),
        ("format=text&format=text", "ok\n"),
    ],
)
def test_repeated_parameters_with_the_same_meaning_are_accepted(
    make_client: ClientFactory, query: str, text: str
) -> None:
    client, prefix = make_client(registry_with(db=lambda: True))
    response = client.get(f"{prefix}/readyz?{query}")
    assert response.status_code == 200
    assert response.text == text
    document = client.get(f"{prefix}/readyz?format=json&format=json&verbose").json()
    assert document["status"] == "pass"


def test_exclude_is_repeatable(make_client: ClientFactory) -> None:
    client, prefix = make_client(registry_with(db=lambda: False, cache=lambda: False, disk=lambda: True))
    assert client.get(prefix + "/readyz?exclude=db").status_code == 503
    response = client.get(prefix + "/readyz?exclude=db&exclude=cache&verbose")
    assert response.status_code == 200
    assert response.text == "[+]disk ok\nreadyz check passed\n"
    response = client.get(prefix + "/readyz?exclude=db&exclude=cache&exclude=ghost")
    assert response.status_code == 200
    assert 'no matches for "ghost"' in response.text


def test_healthz_is_livez(make_client: ClientFactory) -> None:
    registry = registry_with()
    registry.add_check("heart", lambda: False, probes=["liveness"])
    client, prefix = make_client(registry)
    livez = client.get(prefix + "/livez?verbose")
    healthz = client.get(prefix + "/healthz?verbose")
    assert livez.status_code == healthz.status_code == 503
    assert healthz.text == livez.text == "[-]heart failed: reason withheld\nlivez check failed\n"


def test_trailing_slash_answers_without_redirect(make_client: ClientFactory) -> None:
    client, prefix = make_client(registry_with(db=lambda: False))
    for path in ("/readyz/", "/livez/", "/healthz/", "/readyz/db/"):
        plain = client.get(prefix + path.rstrip("/"))
        slashed = client.get(prefix + path)
        assert slashed.status_code == plain.status_code
        assert slashed.status_code not in (301, 302, 307, 308)
        assert slashed.text == plain.text


# -- formats ---------------------------------------------------------------------------------


def test_json_by_accept_and_by_query(make_client: ClientFactory) -> None:
    registry = registry_with(db=lambda: True)
    registry.add_check("disk", lambda: CheckResult(Status.WARN, observed_value=92.5, observed_unit="%"))
    client, prefix = make_client(registry)
    for response in (
        client.get(prefix + "/readyz", headers={"accept": "application/health+json"}),
        client.get(prefix + "/readyz", headers={"accept": "application/json"}),
        client.get(prefix + "/readyz?format=json"),
        client.get(prefix + "/readyz?format=json", headers={"accept": "text/plain"}),
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/health+json"
        document = response.json()
        assert document["status"] == "warn"
        assert document["checks"]["db"] == [
            {"componentId": "db", "status": "pass", "time": document["checks"]["db"][0]["time"]}
        ]
        disk = document["checks"]["disk"][0]
        assert (disk["status"], disk["observedValue"], disk["observedUnit"]) == ("warn", 92.5, "%")
        assert disk["output"] == "reason withheld"


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "text/plain",
        "*/*",
        "text/html",
        "application/json;q=0.5, text/plain",
        "text/*, application/json;q=0.9",
        # A tie is text, as kube-apiserver answers.
        "application/json, text/plain",
        "application/health+json;q=0.5, text/plain;q=0.5",
        "application/json, */*",
    ],
)
def test_text_unless_json_is_preferred(make_client: ClientFactory, accept: str | None) -> None:
    client, prefix = make_client(registry_with(db=lambda: True))
    headers = {} if accept is None else {"accept": accept}
    response = client.get(prefix + "/readyz", headers=headers)
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "ok\n"
    forced = client.get(prefix + "/readyz?format=text", headers={"accept": "application/health+json"})
    assert forced.headers["content-type"] == "text/plain; charset=utf-8"


def test_failing_json(make_client: ClientFactory) -> None:
    registry = registry_with(db=lambda: False)
    registry.begin_drain()
    client, prefix = make_client(registry)
    response = client.get(prefix + "/readyz?format=json")
    assert response.status_code == 503
    document = json.loads(response.content)
    assert document["status"] == "fail"
    assert document["output"] == "draining"
    assert document["checks"]["db"][0]["output"] == "reason withheld"


JSON_ASKED: list[tuple[str, dict[str, str]]] = [
    ("?format=json", {}),
    ("", {"accept": "application/health+json"}),
    ("", {"accept": "application/json"}),
]


@pytest.mark.parametrize(("query", "headers"), JSON_ASKED)
def test_error_answers_are_text_even_when_json_is_asked(
    make_client: ClientFactory, query: str, headers: dict[str, str]
) -> None:
    # An application/health+json body carries a health status; a malformed request says
    # nothing about the service's health, so 400, 404 and 405 stay one line of text.
    client, prefix = make_client(registry_with(db=lambda: True))
    sep = "&" if query else "?"
    for method, path, status in (
        ("GET", f"/readyz{query}{sep}bogus=1", 400),
        ("GET", f"/readyz{query}{sep}verbose=maybe", 400),
        ("GET", f"/readyz/nope{query}", 404),
        ("GET", f"/readyz/a%2Fb{query}", 404),
        ("POST", f"/readyz{query}", 405),
    ):
        response = client.request(method, prefix + path, headers=headers)
        assert response.status_code == status, path
        assert response.headers["content-type"] == "text/plain; charset=utf-8", path
        one_line(response)
        assert_probe_headers(response)


# -- what is withheld, and never a 500 -------------------------------------------------------


def _raises() -> None:
    raise RuntimeError(SECRET)


def test_exception_text_never_in_a_body_by_default(make_client: ClientFactory) -> None:
    registry = registry_with(db=_raises)
    registry.add_check("soft", lambda: CheckResult(Status.FAIL, output=SECRET), critical=False)
    client, prefix = make_client(registry)
    for query in ("", "?verbose", "?format=json", "?verbose&format=json"):
        for path in ("/readyz", "/readyz/db"):
            response = client.get(prefix + path + query)
            assert response.status_code == 503
            assert "hunter2" not in response.text and "RuntimeError" not in response.text, response.text


def test_expose_output_opts_in(make_client: ClientFactory) -> None:
    registry = registry_with(db=_raises)
    client, prefix = make_client(registry, expose_output=True)
    response = client.get(prefix + "/readyz")
    assert response.status_code == 503
    # The text, with its secret withheld (healthprobe.checks.redact).
    assert "[-]db failed: RuntimeError: password=***" in response.text and "hunter2" not in response.text
    document = client.get(prefix + "/readyz?format=json").json()
    assert document["checks"]["db"][0]["output"] == "RuntimeError: password=***"


def test_hanging_check_answers_fail_on_time(make_client: ClientFactory, release: threading.Event) -> None:
    registry = registry_with(db=lambda: True)
    registry.add_check("hang", release.wait, timeout=0.3)
    client, prefix = make_client(registry)
    for _ in range(3):
        started = time.monotonic()
        response = client.get(prefix + "/readyz?verbose")
        assert time.monotonic() - started < 0.3 + SLACK
        assert response.status_code == 503
        assert "[-]hang failed: timed out" in response.text
        assert "[+]db ok" in response.text
    assert client.get(prefix + "/livez").status_code == 200


class BrokenRegistry(HealthRegistry):
    """A registry whose probe runs fail inside healthprobe itself."""

    def run(self, probe: Probe | str, **kwargs: Any) -> Any:
        raise RuntimeError("internal " + SECRET)

    async def run_async(self, probe: Probe | str, **kwargs: Any) -> Any:
        raise RuntimeError("internal " + SECRET)


def test_internal_error_is_503_never_500(make_client: ClientFactory, caplog: pytest.LogCaptureFixture) -> None:
    client, prefix = make_client(BrokenRegistry())
    for method in ("GET", "HEAD"):
        response = client.request(method, prefix + "/readyz")
        assert response.status_code == 503
        assert "hunter2" not in response.text
        assert_probe_headers(response)
    assert client.get(prefix + "/readyz").text == "readyz check failed: internal error\n"
    assert "hunter2" in caplog.text  # the operator still finds it in the log


class UnrenderableRegistry(HealthRegistry):
    """A registry whose probe runs return something no report renders from."""

    def run(self, probe: Probe | str, **kwargs: Any) -> Any:
        return object()

    async def run_async(self, probe: Probe | str, **kwargs: Any) -> Any:
        return object()


def test_a_report_that_cannot_be_rendered_is_503_never_500(make_client: ClientFactory) -> None:
    client, prefix = make_client(UnrenderableRegistry())
    response = client.get(prefix + "/readyz")
    assert (response.status_code, response.text) == (503, "readyz check failed: internal error\n")


def test_endpoint_paths_are_configurable(make_client: ClientFactory) -> None:
    registry = registry_with(db=lambda: False)
    client, prefix = make_client(registry, paths={"/-/ready": "readiness", "/-/alive": Probe.LIVENESS})
    assert client.get(prefix + "/-/ready").status_code == 503
    assert client.get(prefix + "/-/alive").status_code == 200
    assert client.get(prefix + "/-/ready/db").status_code == 503
    assert client.get(prefix + "/readyz").status_code in (401, 404)  # no longer ours


@pytest.mark.parametrize("path", ["livez", "/livez/", "", "/sant\u00e9"])
def test_malformed_configured_paths_rejected(path: str) -> None:
    with pytest.raises(ValueError):
        HealthEndpoints(HealthRegistry(), paths={path: "liveness"})
    with pytest.raises(ValueError):
        HealthEndpoints(HealthRegistry(), metrics=True, metrics_path=path)


def test_asgi_middleware_matches_below_root_path() -> None:
    # uvicorn --root-path /api sends path="/api/livez", root_path="/api" (the path as the
    # proxy saw it); the probe paths are matched below root_path, as Starlette's router does.
    app = hp_asgi.HealthMiddleware(asgi_inner(), registry_with(db=lambda: False))

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return [await client.get(path) for path in ("/api/readyz", "/api/livez", "/apix/livez")]

    readyz, livez, other = anyio.run(go)
    assert (readyz.status_code, livez.status_code) == (503, 200)
    assert other.status_code == 401  # the app's, untouched


def test_non_finite_observed_value_keeps_the_json_valid(make_client: ClientFactory) -> None:
    registry = registry_with(ratio=lambda: CheckResult(Status.PASS, observed_value=float("nan"), observed_unit="%"))
    registry.add_check("load", lambda: CheckResult(Status.PASS, observed_value=float("inf")))
    client, prefix = make_client(registry)
    response = client.get(prefix + "/readyz?format=json")
    document = json.loads(response.content, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert document["checks"]["ratio"][0]["observedValue"] is None
    assert document["checks"]["ratio"][0]["observedUnit"] == "%"
    assert document["checks"]["load"][0]["observedValue"] is None


@pytest.mark.parametrize(
    "build",
    [
        lambda registry, options: HealthEndpoints(registry, **options),
        lambda registry, options: hp_asgi.HealthMiddleware(asgi_inner(), registry, **options),
        lambda registry, options: hp_asgi.HealthApp(registry, **options),
        lambda registry, options: hp_wsgi.HealthMiddleware(wsgi_inner, registry, **options),
        lambda registry, options: hp_wsgi.HealthApp(registry, **options),
        lambda registry, options: hp_asgi.HealthApp(HealthEndpoints(registry), **options),
    ],
    ids=["endpoints", "asgi-middleware", "asgi-app", "wsgi-middleware", "wsgi-app", "given-endpoints"],
)
def test_every_adapter_takes_the_endpoint_options_and_no_other_keyword(build: Any) -> None:
    registry = HealthRegistry()
    options = {
        "paths": {"/alive": "liveness"},
        "failure_status": 500,
        "expose_output": True,
        "metrics_path": "/metrics",
    }
    build(registry, options)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'path'.*failure_status"):
        build(registry, {"path": "/alive"})
