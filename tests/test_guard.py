"""Guarded details, the admin request and the thread dump (healthprobe.guard), through both
adapters under real servers (uvicorn for ASGI, Werkzeug's server for WSGI), and through
HAProxy (``option forwardfor``) for proxied requests and the admin request under load.

Clients come from distinct loopback addresses (``127.0.0.5``, ``127.0.0.6``: all of
``127.0.0.0/8`` is local on Linux) so that networks and proxies can be told apart; HAProxy
connects to the servers from ``127.0.0.1``.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthprobe import CheckResult, Guard, HealthEndpoints, HealthRegistry, Status
from healthprobe.asgi import HealthMiddleware as AsgiMiddleware
from healthprobe.guard import Verdict, forwarded_for
from healthprobe.wsgi import HealthMiddleware as WsgiMiddleware

from .apps import plain_apps, started_registry
from .haproxy import ROWS, HAProxy, Switch, haproxy_binary, out_of_rotation
from .support import require_binary, uvicorn_server, werkzeug_server

TOKEN = "s3cret-token.value"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WITHHELD = "details withheld: send the guard's token, or ask from an allowed network"
#: What the failing check writes: shown only to a request the guard allows.
SECRET_OUTPUT = "connect to db-7.internal as app_rw failed"
ADAPTERS = pytest.mark.parametrize("adapter", ["asgi", "wsgi"])


#: A passing check of liveness and readiness.
CACHE = (lambda: True, {"probes": ("liveness", "readiness")})


def _database() -> CheckResult:
    return CheckResult(Status.FAIL, SECRET_OUTPUT)


def _registry(**checks: Any) -> HealthRegistry:
    return started_registry({"cache": CACHE, "database": (_database, {"probes": ("readiness",)}), **checks})


@contextlib.contextmanager
def served(adapter: str, registry: HealthRegistry, **options: Any) -> Iterator[str]:
    """The registry's probes in front of a bare app, under a real server; yields its URL."""
    asgi, wsgi = plain_apps()
    if adapter == "asgi":
        # Without uvicorn's own --proxy-headers, which would put the address of
        # X-Forwarded-For into scope["client"] for requests from 127.0.0.1 (its default
        # forwarded_allow_ips) before the guard sees them.
        with uvicorn_server(AsgiMiddleware(asgi, registry, **options), proxy_headers=False) as url:
            yield url
    else:
        with werkzeug_server(WsgiMiddleware(wsgi, registry, **options)) as url:
            yield url


def client(url: str, source: str = "127.0.0.1") -> httpx.Client:
    """A client of ``url`` whose connections come from the loopback address ``source``."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=url, timeout=10, transport=transport, trust_env=False)


def _plain(answer: httpx.Response) -> bool:
    """Whether ``answer`` is the plain one: marked withheld, naming no check, showing nothing
    a check wrote."""
    return (
        answer.headers.get("x-healthprobe-details") == "withheld"
        and SECRET_OUTPUT not in answer.text
        and "database" not in answer.text
        and "cache" not in answer.text
    )


# -- details ----------------------------------------------------------------------------------


@ADAPTERS
def test_plain_status_for_everyone_details_for_the_token(adapter: str) -> None:
    registry = _registry()
    guard = Guard(TOKEN)
    with served(adapter, registry, expose_output=True, guard=guard) as url, client(url) as anyone:
        # The kubelet's probe: same status code, minimal body, no token needed.
        for _ in range(2):  # the second answer may come from the remembered one
            readyz = anyone.get("/readyz")
            assert (readyz.status_code, readyz.text) == (503, "readyz check failed\n")
            assert _plain(readyz)
            livez = anyone.get("/livez")
            assert (livez.status_code, livez.text) == (200, "ok\n")
            verbose = anyone.get("/livez?verbose")
            assert (verbose.status_code, verbose.text) == (200, f"ok\n{WITHHELD}\n")
            assert _plain(verbose)
            detailed = anyone.get("/livez?verbose", headers=AUTH)
            assert (detailed.status_code, detailed.text) == (200, "[+]cache ok\nlivez check passed\n")
            assert "x-healthprobe-details" not in detailed.headers
        asked = anyone.get("/readyz?verbose")
        assert (asked.status_code, asked.text) == (503, f"readyz check failed\n{WITHHELD}\n")
        one = anyone.get("/readyz/database")
        assert (one.status_code, one.text) == (503, f"readyz check failed\n{WITHHELD}\n")
        document = anyone.get("/readyz?format=json").json()
        assert document == {"status": "fail", "description": "readiness probe", "notes": [WITHHELD]}
        for headers in (
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
            {"X-Token": TOKEN},
        ):
            refused = anyone.get("/readyz?verbose", headers=headers)
            assert refused.status_code == 503 and _plain(refused), (headers, refused.text)
        # The right token (the scheme is case-insensitive): everything, what checks wrote too.
        for scheme in ("Bearer", "bearer"):
            full = anyone.get("/readyz?verbose", headers={"Authorization": f"{scheme} {TOKEN}"})
            assert full.status_code == 503
            assert full.text == f"[+]cache ok\n[-]database failed: {SECRET_OUTPUT}\nreadyz check failed\n"
        checks = anyone.get("/readyz?format=json", headers=AUTH).json()["checks"]
        assert checks["database"][0]["output"] == SECRET_OUTPUT
        assert anyone.get("/readyz/database", headers=AUTH).text == (
            f"[-]database failed: {SECRET_OUTPUT}\nreadyz check failed\n"
        )
        # Out of rotation: the operator's reason is plain status, shown to everyone.
        registry.take_out_of_rotation("maintenance")
        readyz = anyone.get("/readyz")
        assert readyz.text == "[-]lifecycle failed: out of rotation: maintenance\nreadyz check failed\n"


@ADAPTERS
def test_a_groups_details_are_guarded_as_a_probes(adapter: str) -> None:
    """A group (``/health/<group>``) answers everyone its status and only an allowed request
    its checks and what they wrote, with the group's own status code."""
    registry = _registry()
    registry.add_group("wellness", checks=("cache", "database"), failure_status=500, expose_output=True)
    with served(adapter, registry, guard=Guard(TOKEN)) as url, client(url) as anyone:
        for _ in range(2):  # the second answer may come from the remembered one
            plain = anyone.get("/health/wellness?verbose")
            assert (plain.status_code, plain.text) == (500, f"wellness check failed\n{WITHHELD}\n")
            assert _plain(plain)
            one = anyone.get("/health/wellness/database")
            assert one.status_code == 500 and _plain(one)
            document = anyone.get("/health/wellness?format=json").json()
            assert document == {"status": "fail", "description": "wellness group", "notes": [WITHHELD]}
            full = anyone.get("/health/wellness?verbose", headers=AUTH)
            assert (full.status_code, full.text) == (
                500,
                f"[+]cache ok\n[-]database failed: {SECRET_OUTPUT}\nwellness check failed\n",
            )
            assert "x-healthprobe-details" not in full.headers
        # An unregistered group is the application's (plain_apps: 404 "not found"), told
        # apart from no other path; a per-check path's status code is plain status, as
        # documented: anyone learns whether a guessed name exists.
        assert (anyone.get("/health/nope").text, anyone.get("/health/nope", headers=AUTH).text) == ("not found",) * 2
        assert anyone.get("/readyz/nosuch").status_code == 404
        assert anyone.get("/health/wellness/nosuch").status_code == 404


@ADAPTERS
def test_an_answer_the_same_for_every_verdict_goes_unmarked_and_fast(adapter: str) -> None:
    """A passing probe asked plainly is ``ok`` whatever the guard says: nothing is withheld,
    so it carries no mark, and it is remembered under the request values alone, where the
    adapter's fast path finds it without asking the guard. A failing one differs by verdict:
    marked, and remembered only with the verdict, so no token holder gets the plain one."""
    registry = _registry()
    asgi, wsgi = plain_apps()
    guard = Guard(TOKEN)
    if adapter == "asgi":
        middleware: Any = AsgiMiddleware(asgi, registry, guard=guard)
        server = uvicorn_server(middleware, proxy_headers=False)
    else:
        middleware = WsgiMiddleware(wsgi, registry, guard=guard)
        server = werkzeug_server(middleware)

    def remembered(path: str) -> list[tuple[object, ...]]:
        return [key for key in middleware.endpoints.answers if key[1] == path]

    with server as url, client(url) as anyone:
        for headers in ({}, AUTH, {}):
            livez = anyone.get("/livez", headers=headers)
            assert (livez.status_code, livez.text) == (200, "ok\n")
            assert "x-healthprobe-details" not in livez.headers
        assert any(len(key) == 4 for key in remembered("/livez"))
        for _ in range(2):
            readyz = anyone.get("/readyz")
            assert readyz.status_code == 503 and _plain(readyz)
            full = anyone.get("/readyz", headers=AUTH)
            assert full.text == "[+]cache ok\n[-]database failed: reason withheld\nreadyz check failed\n"
        assert remembered("/readyz") and all(len(key) == 5 for key in remembered("/readyz"))


@ADAPTERS
def test_a_token_in_a_header_of_its_own(adapter: str) -> None:
    guard = Guard(TOKEN, header="X-Health-Token")
    with served(adapter, _registry(), guard=guard) as url, client(url) as anyone:
        assert _plain(anyone.get("/livez?verbose", headers=AUTH))
        assert anyone.get("/livez?verbose", headers={"X-Health-Token": TOKEN}).text == (
            "[+]cache ok\nlivez check passed\n"
        )


@ADAPTERS
def test_networks_and_proxy_headers_ignored_by_default(adapter: str) -> None:
    """Only the peer's address counts: a client outside the network cannot name itself an
    allowed address in X-Forwarded-For or Forwarded."""
    guard = Guard(networks=["127.0.0.5/32"])
    with served(adapter, _registry(), guard=guard) as url:
        with client(url, "127.0.0.5") as inside:
            assert inside.get("/livez?verbose").text == "[+]cache ok\nlivez check passed\n"
        with client(url, "127.0.0.6") as outside:
            for headers in ({}, {"X-Forwarded-For": "127.0.0.5"}, {"Forwarded": "for=127.0.0.5"}, AUTH):
                answer = outside.get("/livez?verbose", headers=headers)
                assert answer.status_code == 200 and _plain(answer), (headers, answer.text)


@ADAPTERS
def test_token_and_network_both_required(adapter: str) -> None:
    guard = Guard(TOKEN, networks=["127.0.0.5/32"])
    with served(adapter, _registry(), guard=guard) as url:
        with client(url, "127.0.0.5") as inside:
            assert _plain(inside.get("/livez?verbose"))
            assert not _plain(inside.get("/livez?verbose", headers=AUTH))
        with client(url, "127.0.0.6") as outside:
            assert _plain(outside.get("/livez?verbose", headers=AUTH))


@ADAPTERS
def test_forwarded_from_a_trusted_peer_and_malformed_headers(adapter: str) -> None:
    """A trusted peer's Forwarded header (RFC 7239) names the client: the right-most hop
    that is not a trusted proxy. A header that does not parse, or names no address, makes
    the client unknown: plain answer, same status, never an error."""
    guard = Guard(networks=["127.0.0.5/32"], trusted_proxies=["127.0.0.1/32", "127.0.0.2/32"], proxy_header="forwarded")
    allowed = [
        "for=127.0.0.5",
        'For="127.0.0.5:4711";proto=http',
        "for=127.0.0.9, for=127.0.0.5",  # the right-most is the one the proxy added
        "for=127.0.0.5, for=127.0.0.2",  # a trusted proxy on the way is skipped
        "for=127.0.0.5,,for=127.0.0.2",
        'for="[::ffff:127.0.0.5]:80"',
    ]
    refused = [
        'for="127.0.0.5',  # unterminated quoted string
        "for=127.0.0.5;for=127.0.0.5",  # a parameter twice in one element
        "for=127.0.0.5 x",
        "for=unknown",
        "for=_hidden",
        "proto=http",  # no for
        "for=127.0.0.5, for=127.0.0.6",  # the right-most untrusted is .6
        "for=999.0.0.5",
        "=127.0.0.5",
        ", ".join(["for=127.0.0.5"] * 40),  # more hops than are read
        "\u00e9=1",
    ]
    with served(adapter, _registry(), guard=guard) as url, client(url, "127.0.0.1") as proxy:
        for value in allowed:
            answer = proxy.get("/livez?verbose", headers={"Forwarded": value.encode()})
            assert answer.text == "[+]cache ok\nlivez check passed\n", value
        for value in refused:
            answer = proxy.get("/livez?verbose", headers={"Forwarded": value.encode()})
            assert answer.status_code == 200 and _plain(answer), value
        # Only the configured header is read: X-Forwarded-For names nobody here.
        assert _plain(proxy.get("/livez?verbose", headers={"X-Forwarded-For": "127.0.0.5"}))
        assert _plain(proxy.get("/livez?verbose"))
    with served(adapter, _registry(), guard=guard) as url, client(url, "127.0.0.6") as untrusted:
        assert _plain(untrusted.get("/livez?verbose", headers={"Forwarded": "for=127.0.0.5"}))


def test_forwarded_for_follows_the_grammar() -> None:
    assert forwarded_for('for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"') == [
        "192.0.2.60",
        "[2001:db8:cafe::17]:4711",
    ]
    assert forwarded_for('for="_gazonk", proto=https') == ["_gazonk", None]
    assert forwarded_for('for="a\\"b"') == ['a"b']
    assert forwarded_for("for=1.2.3.4;;by=x") == ["1.2.3.4"]
    for malformed in ("for", "for=", 'for="x', "for=a b", "for=1;FOR=2", "a=b=c", "for=\u00e9"):
        assert forwarded_for(malformed) is None, malformed


@given(st.text(max_size=200))
def test_forwarded_for_and_the_verdict_never_raise(value: str) -> None:
    found = forwarded_for(value)
    assert found is None or all(hop is None or isinstance(hop, str) for hop in found)
    guard = Guard(networks=["127.0.0.5/32"], trusted_proxies=["127.0.0.1/32"], proxy_header="forwarded")
    assert guard.verdict("127.0.0.1", lambda name: value if name == "forwarded" else None) in Verdict


def test_guard_settings_are_checked_and_the_token_never_shown() -> None:
    guard = Guard(TOKEN, networks=["10.0.0.0/8"])
    assert TOKEN not in repr(guard) and "'***'" in repr(guard)
    assert guard.verdict("10.1.2.3", lambda name: None) is Verdict.NO_TOKEN
    with pytest.raises(ValueError, match="needs a token, networks, or both"):
        Guard()
    with pytest.raises(ValueError, match="needs a token, networks, or both"):
        Guard(networks=[])
    with pytest.raises(ValueError, match="visible ASCII"):
        Guard("")
    with pytest.raises(ValueError, match="visible ASCII"):
        Guard("two words")
    with pytest.raises(TypeError, match="list of networks"):
        Guard(networks="10.0.0.0/8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has host bits set"):
        Guard(networks=["10.0.0.1/8"])
    with pytest.raises(ValueError, match="proxy_header"):
        Guard(TOKEN, proxy_header="x-real-ip")
    with pytest.raises(ValueError, match="rotation_path needs a token"):
        Guard(networks=["10.0.0.0/8"], rotation_path="/admin/rotation")
    for path in ("/readyz/rotation", "/readyz", "/health", "/health/admin", "/metrics", "/metrics/x"):
        with pytest.raises(ValueError, match="lies below, a probe, metrics, group or admin path"):
            HealthEndpoints(HealthRegistry(), guard=Guard(TOKEN, rotation_path=path), metrics=True)
        with pytest.raises(ValueError, match="lies below, a probe, metrics, group or admin path"):
            HealthEndpoints(HealthRegistry(), guard=Guard(TOKEN, threads_path=path), metrics=True)
    # Without groups over HTTP, /health is free for an admin path.
    assert HealthEndpoints(HealthRegistry(), guard=Guard(TOKEN, threads_path="/health/threads"), group_path=None)
    # A token read from a mounted Secret ends with a newline: stripped.
    assert Guard(f" {TOKEN}\n").verdict(None, {"authorization": f"Bearer {TOKEN}"}.get) is Verdict.ALLOWED
    with pytest.raises(ValueError, match="must start with '/'"):
        HealthEndpoints(HealthRegistry(), guard=Guard(TOKEN, threads_path="debug"))
    with pytest.raises(TypeError, match="guard must be"):
        HealthEndpoints(HealthRegistry(), guard="token")  # type: ignore[typeddict-item]


# -- through HAProxy --------------------------------------------------------------------------


@pytest.fixture
def haproxy() -> str:
    return require_binary("haproxy", "haproxy")


@contextlib.contextmanager
def behind_haproxy(haproxy: str, url: str, workdir: Path, options: tuple[str, ...]) -> Iterator[str]:
    """HAProxy in front of the server at ``url`` with ``options`` in its backend, once it has
    the server UP; yields HAProxy's URL."""
    balancer = HAProxy(haproxy, {"a": int(url.rsplit(":", 1)[1])}, workdir, options)
    try:
        balancer.wait_state("a", "UP", 20.0, check="L7OK")
        yield balancer.url
    finally:
        balancer.stop()


@ADAPTERS
def test_x_forwarded_for_trusted_only_from_the_configured_proxy(adapter: str, haproxy: str, tmp_path: Path) -> None:
    """HAProxy's ``option forwardfor`` appends the address it saw to X-Forwarded-For: a
    client that sends its own header cannot pass for an allowed address, and a guard that
    trusts no proxy sees HAProxy's address only."""
    trusting = Guard(networks=["127.0.0.5/32"], trusted_proxies=["127.0.0.1/32"])
    with (
        served(adapter, started_registry({"cache": CACHE}), guard=trusting) as url,
        behind_haproxy(haproxy, url, tmp_path, ("option forwardfor",)) as proxied,
    ):
        with client(proxied, "127.0.0.5") as inside:
            assert inside.get("/livez?verbose").text == "[+]cache ok\nlivez check passed\n"
            # A header of its own is kept to the left of what HAProxy adds: still itself.
            spoofing = inside.get("/livez?verbose", headers={"X-Forwarded-For": "127.0.0.9"})
            assert spoofing.text == "[+]cache ok\nlivez check passed\n"
        with client(proxied, "127.0.0.6") as outside:
            for value in ("127.0.0.5", "127.0.0.5, 127.0.0.1", "garbage"):
                answer = outside.get("/livez?verbose", headers={"X-Forwarded-For": value})
                assert answer.status_code == 200 and _plain(answer), value
        # Around the proxy, straight to the server: the peer is not a trusted proxy.
        with client(url, "127.0.0.6") as direct:
            assert _plain(direct.get("/livez?verbose", headers={"X-Forwarded-For": "127.0.0.5"}))
    default = Guard(networks=["127.0.0.5/32"])
    with (
        served(adapter, started_registry({"cache": CACHE}), guard=default) as url,
        behind_haproxy(haproxy, url, tmp_path, ("option forwardfor",)) as proxied,
        client(proxied, "127.0.0.5") as inside,
    ):
        answer = inside.get("/livez?verbose")
        assert answer.status_code == 200 and _plain(answer)


# -- the admin request ------------------------------------------------------------------------


@ADAPTERS
def test_admin_request_takes_out_of_rotation_and_back(adapter: str) -> None:
    registry = started_registry({"cache": CACHE})
    guard = Guard(TOKEN, rotation_path="/admin/rotation")
    with served(adapter, registry, guard=guard) as url, client(url) as anyone:
        shown = anyone.get("/admin/rotation", headers=AUTH)
        assert shown.status_code == 200 and shown.headers["content-type"] == "application/json"
        assert shown.json()["in_rotation"] is True
        assert shown.json()["scope"] == "process"  # no disable file: this process only
        out = anyone.post(
            "/admin/rotation", json={"action": "out", "reason": "rebalancing", "seconds": 600}, headers=AUTH
        )
        assert out.status_code == 200, out.text
        state = out.json()
        assert (state["in_rotation"], state["source"], state["reason"]) == (False, "admin", "rebalancing")
        assert 590 < state["until"] - state["since"] <= 600.5
        assert registry.rotation.source == "admin"
        readyz = anyone.get("/readyz")
        assert (readyz.status_code, readyz.text) == (
            503,
            "[-]lifecycle failed: out of rotation: rebalancing\nreadyz check failed\n",
        )
        assert anyone.get("/livez").status_code == 200
        back = anyone.post("/admin/rotation", data={"action": "in"}, headers=AUTH)
        assert (back.status_code, back.json()["in_rotation"]) == (200, True)
        assert anyone.get("/readyz").status_code == 200
        by_query = anyone.post("/admin/rotation?action=out&reason=by+query", headers=AUTH)
        assert by_query.json()["reason"] == "by query"
        assert anyone.head("/admin/rotation", headers=AUTH).status_code == 200
        assert anyone.post("/admin/rotation", json={"action": "in"}, headers=AUTH).status_code == 200


@ADAPTERS
def test_admin_request_refusals_and_bad_input(adapter: str) -> None:
    registry = started_registry({"cache": CACHE})
    guard = Guard(TOKEN, networks=["127.0.0.1/32"], rotation_path="/admin/rotation")
    as_json = {**AUTH, "Content-Type": "application/json"}
    with served(adapter, registry, guard=guard) as url, client(url) as admin:
        missing = admin.post("/admin/rotation", json={"action": "out"})
        assert (missing.status_code, missing.text) == (401, "unauthorized: no token\n")
        assert missing.headers["www-authenticate"] == 'Bearer realm="healthprobe"'
        wrong = admin.post("/admin/rotation", json={"action": "out"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == 'Bearer realm="healthprobe", error="invalid_token"'
        with client(url, "127.0.0.6") as outside:
            elsewhere = outside.post("/admin/rotation", json={"action": "out"}, headers=AUTH)
            assert (elsewhere.status_code, elsewhere.text) == (403, "forbidden: not from an allowed network\n")
        put = admin.put("/admin/rotation", json={"action": "out"}, headers=AUTH)
        assert (put.status_code, put.headers["allow"]) == (405, "GET, HEAD, POST")
        bad = {
            "huge body": (413, {"content": b"x" * 5000, "headers": as_json}),
            "not JSON": (400, {"content": b"{action: out", "headers": as_json}),
            "not UTF-8": (400, {"content": b'{"action":"\xff"}', "headers": as_json}),
            "JSON list": (400, {"json": ["out"], "headers": AUTH}),
            "negative seconds": (400, {"json": {"action": "out", "seconds": -5}, "headers": AUTH}),
            "zero seconds": (400, {"data": {"action": "out", "seconds": "0"}, "headers": AUTH}),
            "nan seconds": (400, {"data": {"action": "out", "seconds": "nan"}, "headers": AUTH}),
            "bool seconds": (400, {"json": {"action": "out", "seconds": True}, "headers": AUTH}),
            "seconds with in": (400, {"json": {"action": "in", "seconds": 5}, "headers": AUTH}),
            "unknown action": (400, {"json": {"action": "drain"}, "headers": AUTH}),
            "no action": (400, {"json": {"reason": "x"}, "headers": AUTH}),
            "unknown field": (400, {"json": {"action": "out", "force": True}, "headers": AUTH}),
            "field twice": (400, {"params": {"action": "out"}, "data": {"action": "out"}, "headers": AUTH}),
            "JSON field twice": (400, {"content": b'{"action":"out","action":"in"}', "headers": as_json}),
            "seconds above 31 days": (400, {"json": {"action": "out", "seconds": 2678401}, "headers": AUTH}),
            "reason not text": (400, {"json": {"action": "out", "reason": 5}, "headers": AUTH}),
            "bad form": (400, {"content": b"action=%zz", "headers": AUTH}),
            "XML": (415, {"content": b"<out/>", "headers": {**AUTH, "Content-Type": "application/xml"}}),
        }
        for what, (code, request) in bad.items():
            answer = admin.post("/admin/rotation", **request)
            assert answer.status_code == code, (what, answer.status_code, answer.text)
            assert answer.headers["content-type"] == "text/plain; charset=utf-8", what
            assert answer.text.count("\n") == 1, what
        twice = admin.post("/admin/rotation", content=b'{"action":"out","action":"in"}', headers=as_json)
        assert twice.text == "action given twice\n"
        # A chunked body (no Content-Length) is counted as it comes: by uvicorn's messages,
        # and by Werkzeug's wsgi.input_terminated input.
        chunks = iter([b"a" * 3000, b"b" * 3000])
        streamed = admin.post("/admin/rotation", content=chunks, headers=as_json)
        assert (streamed.status_code, streamed.text) == (413, "body larger than 4096 bytes\n")
        assert registry.rotation.in_rotation, "bad input changed nothing"
        chunked = admin.post(
            "/admin/rotation", content=iter([b'{"action": "out", ', b'"reason": "chunked"}']), headers=as_json
        )
        assert (chunked.status_code, chunked.json()["reason"]) == (200, "chunked"), chunked.text
        assert admin.post("/admin/rotation", content=iter([b"action=in"]), headers=AUTH).json()["in_rotation"] is True
        assert admin.get("/admin/rotation?action=out", headers=AUTH).status_code == 400
        # Still a working endpoint after all that.
        assert admin.post("/admin/rotation", json={"action": "out"}, headers=AUTH).json()["in_rotation"] is False


@ADAPTERS
def test_admin_request_with_a_disable_file_writes_and_removes_it(adapter: str, tmp_path: Path) -> None:
    """With the registry's disable file, ``out`` writes it (so every worker process of the
    container follows) and ``in`` removes it and ends a call's hold too."""
    flag = tmp_path / "disabled"
    registry = started_registry({"cache": CACHE})
    registry.set_disable_file(flag)
    guard = Guard(TOKEN, rotation_path="/admin/rotation")
    with served(adapter, registry, guard=guard) as url, client(url) as admin:
        assert admin.get("/admin/rotation", headers=AUTH).json()["scope"] == "file"
        out = admin.post("/admin/rotation", data={"action": "out", "reason": "two\nlines"}, headers=AUTH)
        assert out.status_code == 200, out.text
        assert (out.json()["in_rotation"], out.json()["source"], out.json()["scope"]) == (False, "file", "file")
        assert flag.read_text() == "two\\nlines\n"  # one line, as every reason is kept
        assert [p.name for p in tmp_path.iterdir()] == ["disabled"], "no temporary file left"
        assert admin.get("/readyz").text == "[-]lifecycle failed: out of rotation: two\\nlines\nreadyz check failed\n"
        timed = admin.post("/admin/rotation", data={"action": "out", "seconds": "60"}, headers=AUTH)
        assert (timed.status_code, timed.text.startswith("seconds cannot be kept in the disable file")) == (400, True)
        registry.take_out_of_rotation("held by a call")
        back = admin.post("/admin/rotation", json={"action": "in"}, headers=AUTH)
        assert (back.status_code, back.json()["in_rotation"], back.json()["scope"]) == (200, True, "file")
        assert not flag.exists() and registry.rotation.in_rotation
        assert admin.get("/readyz").status_code == 200
        assert admin.post("/admin/rotation", data={"action": "in"}, headers=AUTH).status_code == 200  # no file: fine
        registry.set_disable_file(tmp_path / "missing" / "disabled")  # its folder does not exist
        failed = admin.post("/admin/rotation", data={"action": "out"}, headers=AUTH)
        assert (failed.status_code, failed.text) == (
            503,
            "the disable file could not be changed; the rotation is as it was\n",
        )
        assert registry.rotation.in_rotation


@ADAPTERS
def test_admin_paths_are_not_served_without_being_enabled(adapter: str) -> None:
    for options in ({}, {"guard": Guard(TOKEN)}):
        with served(adapter, _registry(), **options) as url, client(url) as anyone:
            for path in ("/admin/rotation", "/debug/threads"):
                answer = anyone.post(path, json={"action": "out"}, headers=AUTH)
                assert (answer.status_code, answer.text) == (404, "not found"), (options, path)


# -- the thread dump --------------------------------------------------------------------------


def wedged_in_a_sync_check(release: threading.Event) -> bool:
    return release.wait(60)


@ADAPTERS
def test_thread_dump_shows_a_wedged_check(adapter: str, release: threading.Event) -> None:
    registry = started_registry(
        {"stuck": (lambda: wedged_in_a_sync_check(release), {"probes": ("readiness",), "timeout": 0.3})}
    )
    guard = Guard(TOKEN, threads_path="/debug/threads")
    with served(adapter, registry, guard=guard) as url, client(url) as anyone:
        assert anyone.get("/readyz").status_code == 503  # timed out; its thread still waits
        dump = anyone.get("/debug/threads", headers=AUTH)
        assert dump.status_code == 200 and dump.headers["content-type"] == "text/plain; charset=utf-8"
        blocks = dump.text.split('\nThread "')
        stuck = [block for block in blocks if "in wedged_in_a_sync_check" in block]
        assert stuck, dump.text
        assert "return release.wait(60)" in stuck[0] and "daemon=True" in stuck[0]
        assert dump.text.startswith('Thread "') and f"ident={threading.main_thread().ident}" in dump.text
        refused = anyone.get("/debug/threads")
        assert refused.status_code == 401 and "wedged" not in refused.text
        assert anyone.get("/debug/threads", headers={"Authorization": "Bearer nope"}).status_code == 401
        post = anyone.post("/debug/threads", headers=AUTH)
        assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
        assert anyone.get("/debug/threads?x=1", headers=AUTH).status_code == 400


# -- the admin request behind HAProxy, under load ---------------------------------------------


def _post_rotation(port: int, body: dict[str, str]) -> None:
    answer = httpx.post(f"http://127.0.0.1:{port}/admin/rotation", json=body, headers=AUTH, timeout=5, trust_env=False)
    assert answer.status_code == 200, answer.text
    assert answer.json()["in_rotation"] is (body["action"] == "in"), answer.text


#: The admin request as the way out of rotation and back (tests/haproxy.py's :class:`Switch`).
ADMIN = Switch(
    "admin request",
    {"HP_GUARD_TOKEN": TOKEN},
    lambda port, workdir: _post_rotation(port, {"action": "out", "reason": "rebalancing"}),
    lambda port, workdir: _post_rotation(port, {"action": "in"}),
)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["uvicorn-programmatic", "werkzeug"])
def test_admin_request_takes_an_instance_out_behind_haproxy_losing_nothing(
    name: str, haproxy: str, tmp_path: Path
) -> None:
    """As the disable file's test in tests/test_haproxy.py, by the admin request: HAProxy
    stops sending requests to the instance, which keeps serving and living, and sends them
    again once it is back; no request fails."""
    assert haproxy_binary() is not None
    result = out_of_rotation(name, ROWS[name], tmp_path, haproxy, ADMIN)
    print(result.summary())
    message = "\n".join([result.summary(), result.details])
    assert result.failed == 0, message
    assert result.sent_while_out == 0, message
    assert result.sent_after > 0, message
    assert result.down_after < 1.5 and result.up_after < 1.0, message


def test_admin_rotation_is_logged_with_source_admin(caplog: pytest.LogCaptureFixture) -> None:
    registry = started_registry({"cache": CACHE})
    endpoints = HealthEndpoints(registry, guard=Guard(TOKEN, rotation_path="/admin/rotation"))
    with caplog.at_level("INFO", logger="healthprobe"):
        answer = endpoints.admin("rotation", "POST", "", "application/json", json.dumps({"action": "out"}).encode())
        endpoints.admin("rotation", "POST", "action=in", None, b"")
    assert answer.status == 200
    assert [record.__dict__.get("source") for record in caplog.records] == ["admin", "admin"]
    assert "back in rotation after" in caplog.records[1].getMessage()
    assert "returned by an admin request" in caplog.records[1].getMessage()
