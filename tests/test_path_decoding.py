"""Non-ASCII and malformed check names in probe paths get the same answer from every server.

ASGI servers (uvicorn, hypercorn) hand the application a ``path`` already percent-decoded as
UTF-8, undecodable bytes replaced by U+FFFD (``urllib.parse.unquote``). WSGI servers hand it
``PATH_INFO`` as the request's bytes decoded as latin-1 (PEP 3333): waitress and gunicorn
keep the bytes as they came, Werkzeug's server replaces undecodable ones first. The WSGI
adapter decodes ``PATH_INFO`` back to text, so both adapters give the same status and body.

The apps are those of ``server_apps.py`` (``HealthMiddleware`` over an app with
``HealthApp`` mounted at ``/health``); each server runs for real on an ephemeral port.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from werkzeug.test import Client

from healthprobe import HealthEndpoints
from healthprobe import wsgi as hp_wsgi
from tests import server_apps
from tests.support import free_port, run_server, werkzeug_server

pytestmark = pytest.mark.slow

NOT_UTF8 = "not found: the path is not valid percent-encoded UTF-8"

#: Path -> (status, body line) expected from every server, through the middleware and
#: through the mounted app (``/health`` + path).
EXPECTED = {
    "/readyz/db": (200, "ok"),
    "/readyz/nope": (404, "no readyz check named 'nope'"),
    "/readyz/%C3%A9": (404, "no readyz check named '\u00e9'"),
    "/readyz/caf%C3%A9/": (404, "no readyz check named 'caf\u00e9'"),
    "/livez/%E2%9C%93db": (404, "no livez check named '\u2713db'"),
    "/readyz/%E2%80%A8": (404, "no readyz check named '\\u2028'"),  # repr escapes it: one line
    "/readyz/%FF": (404, NOT_UTF8),
    "/readyz/%C3%28": (404, NOT_UTF8),
    "/readyz/db%E9": (404, NOT_UTF8),
    "/readyz/" + "x" * 100: (404, "not found: check names have at most 63 characters"),
    "/readyz/a%2Fb": (404, "not found"),
}


def answers(base_url: str) -> dict[str, tuple[int, str]]:
    """Status and body of every path of :data:`EXPECTED`, directly and under ``/health``."""
    found: dict[str, tuple[int, str]] = {}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for path in EXPECTED:
            for prefix in ("", "/health"):
                response = client.get(prefix + path)
                assert response.headers["content-type"] == "text/plain; charset=utf-8", path
                found[prefix + path] = (response.status_code, response.content.decode())
    return found


def expected() -> dict[str, tuple[int, str]]:
    return {
        prefix + path: (status, line + "\n") for path, (status, line) in EXPECTED.items() for prefix in ("", "/health")
    }


def test_every_server_gives_the_same_answer_for_non_ascii_check_names(tmp_path: Path) -> None:
    seen: dict[str, dict[str, tuple[int, str]]] = {}
    for server in ("uvicorn", "hypercorn", "waitress", "gunicorn"):
        port = free_port()
        with run_server(server_apps.command(server, port), port, tmp_path, name=server):
            seen[server] = answers(f"http://127.0.0.1:{port}")
    hang = threading.Event()
    try:
        with werkzeug_server(server_apps.build_wsgi_app(server_apps.build_registry(hang))) as base:
            seen["werkzeug"] = answers(base)
    finally:
        hang.set()
    reference = seen["uvicorn"]
    for server, found in seen.items():
        differing = {path: (found[path], reference[path]) for path in found if found[path] != reference[path]}
        assert not differing, f"{server} answers differently from uvicorn: {differing}"
    assert seen["uvicorn"] == expected()


def test_wsgi_decodes_path_info_as_pep_3333_describes_it() -> None:
    # Werkzeug's test client builds PATH_INFO as a PEP 3333 server does: the percent-decoded
    # bytes of the path, as a latin-1 str.
    endpoints = HealthEndpoints(server_apps.build_registry(threading.Event()))
    client = Client(hp_wsgi.HealthApp(endpoints))
    response = client.get("/readyz/%C3%A9")
    assert response.status_code == 404
    assert response.get_data(as_text=True) == "no readyz check named '\u00e9'\n"
    # A str that is not bytes-as-latin-1 (no PEP 3333 server makes one) is taken as text.
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/readyz/\u2713", "QUERY_STRING": ""}
    status: list[str] = []
    body = b"".join(hp_wsgi.HealthApp(endpoints)(environ, lambda s, h, e=None: status.append(s)))
    assert status == ["404 Not Found"]
    assert body == "no readyz check named '\u2713'\n".encode()
