"""Groups and tags (docs/operating.md): checks carry tags, user-named groups select checks by
name or tag and are answered at ``/health/<group>`` with their own status codes and detail
policy; running a group changes no probe's answer, and a check only in a group is never run
by a probe. Through both adapters under real servers, with a real TCP dependency that goes
away while liveness and readiness keep passing."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from healthprobe import HealthEndpoints, HealthRegistry, Probe, Status, checks
from healthprobe.asgi import HealthMiddleware as AsgiMiddleware
from healthprobe.registry import Group, UnknownCheckError, UnknownGroupError
from healthprobe.wsgi import HealthMiddleware as WsgiMiddleware

from .apps import plain_apps
from .support import (
    TcpDependency,
    promtool_check_metrics,
    sample_value,
    samples,
    uvicorn_server,
    wait_until,
    werkzeug_server,
)


def counting(calls: list[str], name: str, result: object = True) -> Any:
    def check() -> object:
        calls.append(name)
        return result

    return check


# -- tags ----------------------------------------------------------------------------------------


def test_checks_carry_validated_tags_shown_in_json() -> None:
    registry = HealthRegistry()
    registry.mark_started()
    check = registry.add_check("database", lambda: True, tags=("db", "external"))
    assert check.tags == frozenset({"db", "external"})

    @registry.check("cache", tags="external")  # one tag as a str
    def cache() -> bool:
        return True

    assert {c.name: c.tags for c in registry.checks}["cache"] == frozenset({"external"})
    assert registry.add_check("plain", lambda: True).tags == frozenset()
    endpoints = HealthEndpoints(registry)
    response = endpoints.handle_sync("GET", "/readyz", "format=json", None)
    assert response is not None
    document = json.loads(response.body)
    assert document["checks"]["database"][0]["tags"] == ["db", "external"]  # sorted
    assert document["checks"]["cache"][0]["tags"] == ["external"]
    assert "tags" not in document["checks"]["plain"][0]  # none: no key
    assert registry.run(Probe.READINESS).checks["database"].tags == ("db", "external")


@pytest.mark.parametrize("tags", [("no spaces",), ("",), ("-dash",), ("x" * 64,), (3,)])
def test_malformed_tags_are_refused(tags: Any) -> None:
    registry = HealthRegistry()
    with pytest.raises(ValueError, match="invalid tag"):
        registry.add_check("c", lambda: True, tags=tags)
    with pytest.raises(TypeError, match="iterable"):
        registry.add_check("c", lambda: True, tags=42)  # type: ignore[arg-type]
    assert registry.checks == ()  # nothing half-registered


# -- groups in the registry ----------------------------------------------------------------------


def test_groups_select_by_name_or_tag_and_look_members_up_at_each_run() -> None:
    registry = HealthRegistry()
    registry.mark_started()
    registry.add_check("database", lambda: True, tags="db")
    registry.add_check("search", lambda: True, probes=(), tags="external")
    registry.add_check("disk", lambda: True, probes="liveness")
    group = registry.add_group("wellness", checks="disk", tags=("db", "external"))
    assert group == Group("wellness", frozenset({"disk"}), frozenset({"db", "external"}))
    assert [c.name for c in registry.group_checks("wellness")] == ["database", "search", "disk"]
    registry.add_check("payments", lambda: True, probes=(), tags="external")  # after the group
    report = registry.run_group("wellness")
    assert (report.group, report.status) == ("wellness", Status.PASS)
    assert list(report.checks) == ["database", "search", "disk", "payments"]
    assert list(registry.groups) == ["wellness"]
    with pytest.raises(TypeError):
        registry.groups["x"] = group  # type: ignore[index]  # a read-only view
    registry.remove_group("wellness")
    assert registry.groups == {}
    with pytest.raises(UnknownGroupError):
        registry.run_group("wellness")
    with pytest.raises(UnknownGroupError):
        registry.remove_group("wellness")


@pytest.mark.parametrize(
    ("name", "options", "error", "message"),
    [
        ("bad name", {"tags": "db"}, ValueError, "invalid group name"),
        ("", {"tags": "db"}, ValueError, "invalid group name"),
        ("x" * 64, {"tags": "db"}, ValueError, "invalid group name"),
        ("wellness", {}, ValueError, "selects no check"),
        ("wellness", {"checks": ["bad name"]}, ValueError, "invalid check"),
        ("wellness", {"tags": ["a/b"]}, ValueError, "invalid tag"),
        ("wellness", {"tags": "db", "success_status": 300}, ValueError, "success_status must be from 200 to 299"),
        ("wellness", {"tags": "db", "success_status": 199}, ValueError, "success_status"),
        ("wellness", {"tags": "db", "failure_status": 399}, ValueError, "failure_status must be from 400 to 599"),
        ("wellness", {"tags": "db", "failure_status": 600}, ValueError, "failure_status"),
        ("wellness", {"tags": "db", "failure_status": True}, TypeError, "failure_status must be an int"),
        ("wellness", {"tags": "db", "lifecycle": "yes"}, TypeError, "lifecycle must be True or False"),
        ("wellness", {"tags": "db", "expose_output": 1}, TypeError, "expose_output must be"),
        ("wellness", {"tags": 7}, TypeError, "iterable"),
    ],
)
def test_group_options_are_validated(name: str, options: dict[str, Any], error: type, message: str) -> None:
    registry = HealthRegistry()
    with pytest.raises(error, match=message):
        registry.add_group(name, **options)
    assert registry.groups == {}


def test_a_duplicate_group_is_refused() -> None:
    registry = HealthRegistry()
    registry.add_group("wellness", tags="db")
    with pytest.raises(ValueError, match="already registered"):
        registry.add_group("wellness", checks="other")
    assert registry.groups["wellness"].tags == frozenset({"db"})


def test_running_a_group_changes_no_probe_and_group_only_checks_never_run_for_probes() -> None:
    calls: list[str] = []
    registry = HealthRegistry(default_cache_ttl=0)
    registry.add_check("boot", counting(calls, "boot"), probes="startup", tags="all")
    registry.add_check("database", counting(calls, "database"), tags="all")
    registry.add_check("payments", counting(calls, "payments", False), probes=(), tags="external")
    registry.add_group("wellness", tags=("all", "external"))
    # While starting, a passing group with the startup check in it does not latch startup.
    assert registry.run_group("wellness", exclude="payments").ok
    assert registry.lifecycle.value == "starting" and registry.last_reports == {}
    assert registry.run(Probe.STARTUP).ok and registry.lifecycle.value == "started"
    calls.clear()
    for probe in Probe:
        assert registry.run(probe).ok
    assert "payments" not in calls  # in no probe: never run by one
    before = dict(registry.last_reports)
    failed = registry.run_group("wellness")
    assert failed.status is Status.FAIL and failed.checks["payments"].status is Status.FAIL
    assert calls.count("payments") == 1
    assert registry.last_reports == before  # nothing recorded as a probe's answer
    assert registry.run(Probe.READINESS).ok and registry.run(Probe.LIVENESS).ok
    with pytest.raises(UnknownCheckError):
        registry.run_group("wellness", only="nope")
    assert registry.run_group("wellness", only="payments").status is Status.FAIL


def test_a_check_run_serves_probes_and_groups_alike() -> None:
    """One run of a check, cached for its ``cache_ttl``, answers readiness and the group."""
    calls: list[str] = []
    registry = HealthRegistry()
    registry.mark_started()
    registry.add_check("database", counting(calls, "database"), tags="db", cache_ttl=60)
    registry.add_group("data", tags="db")
    assert registry.run(Probe.READINESS).ok
    entry = registry.run_group("data").checks["database"]
    assert entry.cached and calls == ["database"]


def test_a_group_asked_while_a_probe_runs_a_check_starts_no_second_run() -> None:
    """A group asked while readiness runs a hanging check joins that run (or, once its
    deadline has passed, finds the check busy): the check is never run twice at once."""
    calls: list[str] = []
    gate = threading.Event()

    def hanging() -> bool:
        calls.append("hanging")
        gate.wait(30)
        return True

    registry = HealthRegistry(default_cache_ttl=0)
    registry.mark_started()
    registry.add_check("hanging", hanging, tags="db", timeout=1.0)
    registry.add_group("data", tags="db")
    results: dict[str, Status] = {}
    probe = threading.Thread(target=lambda: results.update(probe=registry.run(Probe.READINESS).status))
    probe.start()
    try:
        wait_until(lambda: calls, 5, "the probe's run started", interval=0.01)
        results["group"] = registry.run_group("data").status
        probe.join(10)
        assert results == {"probe": Status.FAIL, "group": Status.FAIL}
        assert calls == ["hanging"]
    finally:
        gate.set()


def test_lifecycle_and_rotation_fail_a_group_only_when_asked() -> None:
    registry = HealthRegistry()
    registry.mark_started()
    registry.add_check("database", lambda: True, tags="db")
    registry.add_group("wellness", tags="db")
    registry.add_group("serving", tags="db", lifecycle=True)
    registry.take_out_of_rotation("maintenance")
    assert registry.run_group("wellness").ok
    assert registry.run_group("serving").reasons == ("out of rotation: maintenance",)
    registry.return_to_rotation()
    registry.begin_drain()
    assert not registry.run(Probe.READINESS).ok
    assert registry.run_group("wellness").ok
    serving = registry.run_group("serving")
    assert serving.status is Status.FAIL and serving.reasons == ("draining",)
    assert registry.run_group("serving", only="database").ok  # one check: no lifecycle reason


# -- endpoint options ------------------------------------------------------------------------------


def test_group_path_option() -> None:
    registry = HealthRegistry()
    registry.add_group("wellness", tags="db")
    assert HealthEndpoints(registry).group_path == "/health"
    assert HealthEndpoints(registry, group_path="/status/groups").group_prefix == "/status/groups/"
    off = HealthEndpoints(registry, group_path=None)
    assert off.group_path is None and off.handle_sync("GET", "/health/wellness", "", None) is None
    # A probe path at /health or below it: no group path unless one is given.
    assert HealthEndpoints(registry, paths={"/health": "liveness"}).group_path is None
    assert HealthEndpoints(registry, paths={"/health/live": "liveness"}).group_path is None
    with pytest.raises(ValueError, match="clashes with the path '/health'"):
        HealthEndpoints(registry, paths={"/health": "liveness"}, group_path="/health")
    with pytest.raises(ValueError, match="clashes with the path '/readyz'"):
        HealthEndpoints(registry, group_path="/readyz/groups")
    with pytest.raises(ValueError, match="clashes with the path '/metrics'"):
        HealthEndpoints(registry, group_path="/metrics", metrics=True)
    with pytest.raises(ValueError, match="must not be '/'"):
        HealthEndpoints(registry, group_path="/")
    with pytest.raises(ValueError, match="must start with '/'"):
        HealthEndpoints(registry, group_path="health")
    with pytest.raises(TypeError, match="group_path must be a str or None"):
        HealthEndpoints(registry, group_path=b"/health")  # type: ignore[typeddict-item]


def test_without_groups_the_group_path_is_the_applications() -> None:
    registry = HealthRegistry()
    registry.add_check("database", lambda: True)
    endpoints = HealthEndpoints(registry)
    for path in ("/health", "/health/", "/health/anything", "/health/a/b"):
        assert not endpoints.matches(path)
        assert endpoints.handle_sync("GET", path, "", None) is None
    registry.add_group("wellness", checks="database")
    assert endpoints.matches("/health/wellness") and endpoints.matches("/health/wellness/database")
    # A path whose group is not registered stays the application's once groups exist.
    assert not endpoints.matches("/health/anything") and not endpoints.matches("/health/live")
    assert endpoints.handle_sync("GET", "/health/anything", "", None) is None
    assert not endpoints.matches("/health") and not endpoints.matches("/health/")


# -- through both adapters under real servers --------------------------------------------------------


def application_apps() -> tuple[Any, Any]:
    """The bare apps behind the middleware, answering every path but ``/`` with
    ``application <path>``: the sign that a request reached the application."""
    return plain_apps(fallback=lambda path: b"application " + path.encode())


@contextlib.contextmanager
def served(adapter: str, registry: HealthRegistry, **options: Any) -> Iterator[httpx.Client]:
    asgi, wsgi = application_apps()
    if adapter == "asgi":
        server = uvicorn_server(AsgiMiddleware(asgi, registry, **options))
    else:
        server = werkzeug_server(WsgiMiddleware(wsgi, registry, **options))
    with server as url, httpx.Client(base_url=url, timeout=5) as client:
        yield client


ADAPTERS = pytest.mark.parametrize("adapter", ["asgi", "wsgi"])


def wellness_registry(dependency: TcpDependency) -> HealthRegistry:
    registry = HealthRegistry()
    registry.add_check("database", lambda: True, probes=("readiness", "liveness"), tags="db")
    registry.add_check("upstream", checks.tcp("127.0.0.1", dependency.port), probes=(), tags="external", cache_ttl=0)
    registry.add_group("wellness", tags=("db", "external"))
    registry.mark_started()
    return registry


@ADAPTERS
def test_a_dependency_down_fails_the_wellness_group_never_liveness_or_readiness(adapter: str) -> None:
    dependency = TcpDependency()
    registry = wellness_registry(dependency)
    try:
        with served(adapter, registry, metrics=True) as client:
            assert client.get("/health/wellness").text == "ok\n"
            verbose = client.get("/health/wellness?verbose")
            assert (verbose.status_code, verbose.text) == (
                200,
                "[+]database ok\n[+]upstream ok\nwellness check passed\n",
            )
            dependency.down()
            failed = client.get("/health/wellness", params={"verbose": ""})
            assert (failed.status_code, failed.text) == (
                503,
                "[+]database ok\n[-]upstream failed: reason withheld\nwellness check failed\n",
            )
            assert failed.headers["cache-control"] == "no-store"
            for path in ("/livez", "/readyz", "/startupz", "/healthz"):
                answer = client.get(path + "?verbose")
                assert answer.status_code == 200, (path, answer.text)
                assert "upstream" not in answer.text  # never run by a probe
            document = client.get("/health/wellness", headers={"Accept": "application/health+json"})
            assert document.headers["content-type"] == "application/health+json"
            body = document.json()
            assert (body["status"], body["description"]) == ("fail", "wellness group")
            assert body["checks"]["upstream"][0]["status"] == "fail"
            assert body["checks"]["upstream"][0]["tags"] == ["external"]
            assert body["checks"]["database"][0]["tags"] == ["db"]
            # One check of the group, and the group without it.
            assert client.get("/health/wellness/upstream").status_code == 503
            assert client.get("/health/wellness/database/").status_code == 200
            excluded = client.get("/health/wellness?exclude=upstream&verbose")
            assert (excluded.status_code, excluded.text) == (200, "[+]database ok\nwellness check passed\n")
            # The group's runs are no probe's answers: the probe series shows readiness passing.
            metrics = client.get("/metrics").text
            promtool_check_metrics(metrics)
            found = samples(metrics)
            assert sample_value(found, "healthprobe_probe_status", probe="readiness", status="pass") == 1.0
            assert sample_value(found, "healthprobe_check_status", check="upstream", status="fail") == 1.0
            assert "wellness" not in metrics
            dependency.up()
            assert client.get("/health/wellness").status_code == 200
            assert client.get("/app").text == "application /app"
    finally:
        dependency.down()


@ADAPTERS
def test_group_requests_behave_like_probe_requests(adapter: str) -> None:
    dependency = TcpDependency()
    registry = wellness_registry(dependency)
    try:
        with served(adapter, registry) as client:
            head = client.head("/health/wellness")
            assert (head.status_code, head.content) == (200, b"")
            assert head.headers["content-length"] == str(len(b"ok\n"))
            post = client.post("/health/wellness")
            assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
            # A group that is not registered is not ours: the application answers, so its own
            # /health/live keeps working and no one learns which groups exist by asking.
            for method in ("GET", "DELETE", "POST"):
                unknown = client.request(method, "/health/nope")
                assert (unknown.status_code, unknown.text) == (200, "application /health/nope"), method
            assert client.get("/health/live").text == "application /health/live"
            assert client.get("/health/nope/database").text == "application /health/nope/database"
            assert client.get("/health/" + "x" * 64).text == "application /health/" + "x" * 64
            missing = client.get("/health/wellness/nope")
            assert (missing.status_code, missing.text) == (404, "no check named 'nope' in group 'wellness'\n")
            assert client.get("/health/wellness/a/b").status_code == 404
            for query, reason in (
                ("bogus=1", "unknown query parameter 'bogus'"),
                ("format=xml", "format must be json or text"),
                ("exclude=bad name", "exclude: not a valid check name"),
                ("verbose=maybe", "verbose takes no value"),
            ):
                answer = client.get(f"/health/wellness?{query}")
                assert answer.status_code == 400 and answer.text.startswith(reason), (query, answer.text)
            one = client.get("/health/wellness/upstream?exclude=database")
            assert (one.status_code, one.text) == (400, "exclude applies to a whole group, not to one check\n")
            unmatched = client.get("/health/wellness?exclude=ghost")
            assert unmatched.status_code == 200
            assert 'no matches for "ghost"' in unmatched.text
            # Not ours: the group path itself, and everything while there is no group.
            assert client.get("/health").text == "application /health"
            assert client.get("/health/").text == "application /health/"
            registry.remove_group("wellness")
            assert client.get("/health/wellness").text == "application /health/wellness"
    finally:
        dependency.down()


@ADAPTERS
def test_a_group_has_its_own_status_codes_and_detail_policy(adapter: str) -> None:
    def broken() -> None:
        raise ConnectionRefusedError("search.internal:9200 refused")

    registry = HealthRegistry(default_cache_ttl=0)
    registry.add_check("search", broken, probes=(), tags="external")
    registry.add_check("database", lambda: True, tags="db")
    registry.add_group("dashboard", tags="external", success_status=203, failure_status=500, expose_output=True)
    registry.add_group("quiet", checks="search", expose_output=False)
    registry.add_group("default", checks=("search", "database"))
    registry.add_group("serving", tags="db", lifecycle=True)
    registry.mark_started()
    with served(adapter, registry, group_path="/status", expose_output=True) as client:
        shown = client.get("/status/dashboard")
        assert (shown.status_code, shown.text) == (
            500,
            "[-]search failed: ConnectionRefusedError: search.internal:9200 refused\ndashboard check failed\n",
        )
        quiet = client.get("/status/quiet?format=json")
        assert quiet.status_code == 503 and quiet.json()["checks"]["search"][0]["output"] == "reason withheld"
        assert "refused" in client.get("/status/default?format=json").json()["checks"]["search"][0]["output"]
        registry.remove_check("search")
        assert client.get("/status/dashboard").status_code == 203  # no member: passes, as a probe with none
        assert client.get("/health/dashboard").text == "application /health/dashboard"
        registry.begin_drain()
        assert client.get("/readyz").status_code == 503
        assert client.get("/status/default").status_code == 200  # a wellness group ignores draining
        serving = client.get("/status/serving?verbose")
        assert (serving.status_code, serving.text) == (
            503,
            "[+]database ok\n[-]lifecycle failed: draining\nserving check failed\n",
        )


# -- docs/operating.md, "Groups and tags", as written --------------------------------------------


def test_the_operating_page_example_runs_as_written_under_a_real_server() -> None:
    from . import doc_pages

    page = doc_pages.page("operating.md")
    code = doc_pages.block(page, "python", contains="add_group(")
    database, search = TcpDependency(), TcpDependency()
    search.down()  # the search cluster is down
    code = code.replace('"db.internal", 5432', f'"127.0.0.1", {database.port}')
    code = code.replace('"search.internal", 9200', f'"127.0.0.1", {search.port}')
    out = io.StringIO()
    namespace: dict[str, object] = {}
    try:
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
        assert out.getvalue() == "['postgres', 'search', 'stripe']\n"
        registry = namespace["registry"]
        assert isinstance(registry, HealthRegistry)
        with served("wsgi", registry) as client:
            answer = client.get("/health/wellness?verbose")
            assert answer.status_code == 503
            assert answer.text == doc_pages.block(page, "text", starts="[+]postgres ok")
            assert client.get("/livez").status_code == 200
            assert client.get("/readyz").status_code == 200
            shown = json.loads(doc_pages.block(page, "json", contains='"wellness group"'))
            document = client.get("/health/wellness?format=json&exclude=postgres&exclude=stripe").json()
            for item in (shown["checks"]["search"][0], document["checks"]["search"][0]):
                assert item.pop("time").endswith("Z")
            assert document == shown
            assert client.get("/health/payments").status_code == 200
            database.down()  # seen once the result cached for cache_ttl (1 s) expires
            payments = wait_until(
                lambda: (found := client.get("/health/payments")).status_code == 500 and found,
                10,
                "the payments group failing",
            )
            assert payments.text.startswith("[-]postgres failed: ") and "withheld" not in payments.text
            assert "[-]postgres failed: reason withheld" in client.get("/readyz?verbose").text
    finally:
        database.down()
