"""Both adapters behind real servers on ephemeral loopback ports: uvicorn and hypercorn
(ASGI, as processes), waitress (WSGI, as a process) and werkzeug's ``make_server`` (WSGI, in
a thread). Each app has a sync check that hangs forever and one that raises (see
``server_apps.py``): probes still answer ``fail`` on time, other routes keep working, and the
ASGI middleware passes lifespan and websocket scopes through untouched.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, RejectConnection, Request, TextMessage

from tests import server_apps
from tests.support import free_port, run_server

pytestmark = pytest.mark.slow

SLACK = 2.0
ON_TIME = server_apps.HANG_TIMEOUT + SLACK
#: The sync checks of ``server_apps.registry``.
SYNC_CHECKS = ("hang", "broken", "db", "heart")


def exercise_probes(base_url: str) -> None:
    """The probe contract every server must keep with the apps of ``server_apps``."""
    with httpx.Client(base_url=base_url, timeout=10, headers={"connection": "close"}) as client:
        threads_before = int(client.get("/threads").text)
        assert client.get("/").text == "hello"

        for path in ("/readyz?verbose", "/health/readyz?verbose"):
            started = time.monotonic()
            response = client.get(path)
            elapsed = time.monotonic() - started
            assert elapsed < ON_TIME, f"{path} took {elapsed:.2f} s"
            assert response.status_code == 503
            assert response.headers["cache-control"] == "no-store"
            assert "[-]hang failed: timed out" in response.text
            assert "[-]broken failed: reason withheld" in response.text
            assert "[+]db ok" in response.text
            assert "hunter2" not in response.text and "ConnectionRefusedError" not in response.text

        document = client.get("/readyz?format=json").json()
        assert document["status"] == "fail"
        assert "hunter2" not in str(document)
        for path in ("/livez", "/healthz", "/health/livez", "/readyz/db", "/health/readyz/db/"):
            assert client.get(path).status_code == 200, path
        assert client.get("/readyz/nope").status_code == 404
        assert client.post("/readyz").status_code == 405
        assert client.get("/readyz?exclude=%ff").status_code == 400
        assert client.get("/readyz?exclude=hang&exclude=broken").status_code == 200
        get, head = client.get("/readyz"), client.head("/readyz")
        assert head.status_code == get.status_code == 503
        assert head.content == b"" and head.headers["content-length"] == str(len(get.content))

        # A probe storm while the app serves other requests: every probe answers fail on
        # time, every other request is answered.
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            started = time.monotonic()
            probes = [pool.submit(client.get, "/readyz") for _ in range(8)]
            others = [pool.submit(client.get, "/") for _ in range(4)]
            assert [f.result(timeout=30).status_code for f in probes] == [503] * 8
            assert [f.result(timeout=30).text for f in others] == ["hello"] * 4
            assert time.monotonic() - started < ON_TIME + SLACK

        for _ in range(10):
            assert client.get("/readyz").status_code == 503
        # Threads do not grow with probes: at most one per sync check (each runs on a
        # long-lived thread of its own; the hung one holds its thread).
        threads_after = int(client.get("/threads").text)
        for _ in range(20):
            assert client.get("/readyz").status_code == 503
            assert client.get("/livez").status_code == 200
        # (A server's own request threads come and go: one may still be ending.)
        assert int(client.get("/threads").text) <= threads_after + 2
        assert threads_after <= threads_before + len(SYNC_CHECKS), (threads_before, threads_after)


def websocket_echo(port: int, text: str, path: str = "/ws") -> str:
    """Send ``text`` over a websocket (wsproto, the sans-IO library) and return the reply."""
    connection = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(connection.send(Request(host=f"127.0.0.1:{port}", target=path)))
        reply: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            connection.receive_data(data or None)
            for event in connection.events():
                if isinstance(event, AcceptConnection):
                    sock.sendall(connection.send(TextMessage(data=text)))
                elif isinstance(event, RejectConnection):
                    raise AssertionError(f"websocket rejected with {event.status_code}")
                elif isinstance(event, TextMessage):
                    reply.append(event.data)
                elif isinstance(event, CloseConnection):
                    with contextlib.suppress(Exception):
                        sock.sendall(connection.send(event.response()))
                    return "".join(reply)
            if not data:
                return "".join(reply)
        raise TimeoutError("no websocket reply")


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_asgi_behind_real_servers(server: str, tmp_path: Path) -> None:
    port = free_port()
    lifespan_file = tmp_path / "lifespan"
    env = {"HEALTHPROBE_TEST_LIFESPAN_FILE": str(lifespan_file)}
    with run_server(server_apps.command(server, port), port, tmp_path, env=env, name=server) as proc:
        base = f"http://127.0.0.1:{port}"
        # Lifespan startup reached the app through the middleware.
        assert httpx.get(base + "/lifespan", timeout=10).text == "started"
        exercise_probes(base)
        # A websocket to the app passes through the middleware untouched.
        assert websocket_echo(port, "ping") == "echo: ping"
        # ... and so does lifespan shutdown.
        proc.signal(signal.SIGTERM)
        # A clean exit: uvicorn re-raises the signal it caught once it has shut down.
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM), proc.output()
        assert "Traceback" not in proc.output()
        assert lifespan_file.read_text() == "stopped"


def test_uvicorn_root_path(tmp_path: Path) -> None:
    port = free_port()
    command = server_apps.command("uvicorn", port, "--root-path", "/api")
    with (
        run_server(command, port, tmp_path, name="uvicorn"),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        # The kubelet probes the pod directly: /livez, which uvicorn presents as
        # path=/api/livez with root_path=/api.
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz/db").status_code == 200
        assert client.get("/health/livez").status_code == 200
        assert client.get("/").text == "hello"


def test_wsgi_behind_waitress(tmp_path: Path) -> None:
    port = free_port()
    with run_server(server_apps.command("waitress", port), port, tmp_path, name="waitress"):
        exercise_probes(f"http://127.0.0.1:{port}")


def test_wsgi_behind_werkzeug_make_server(tmp_path: Path) -> None:
    # A process of its own, as for the other servers: the thread counts of exercise_probes
    # are then this app's alone, not those of every registry the test process has built.
    port = free_port()
    with run_server(server_apps.command("werkzeug", port), port, tmp_path, name="werkzeug"):
        exercise_probes(f"http://127.0.0.1:{port}")
