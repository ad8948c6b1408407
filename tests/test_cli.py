"""The ``healthprobe probe`` command against real servers on loopback."""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

import healthprobe
from healthprobe import HealthRegistry
from healthprobe.cli import _check_tcp, failing_lines, main, probe, probe_tcp
from healthprobe.wsgi import HealthMiddleware

from .support import (
    BIN,
    PYTHON,
    ServerProcess,
    free_port,
    require_ipv6_loopback,
    run_server,
    started_registry,
    werkzeug_server,
)

seen_headers: dict[str, str] = {}


@Request.application
def _app(request: Request) -> Response:
    seen_headers.update(request.headers)
    if request.path == "/moved":
        return Response("", status=302, headers={"Location": "/elsewhere"})
    if request.path == "/error":
        return Response("boom", status=500)
    return Response("hello")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with werkzeug_server(HealthMiddleware(_app, started_registry({"db": lambda: False}))) as url:
        yield url


def echo_app(environ: dict[str, object], start_response: Callable[..., object]) -> Iterable[bytes]:
    """A WSGI app for gunicorn that logs the request headers it got (one ``seen {json}`` line on
    stderr, before it answers) and answers 200."""
    seen = {key: value for key, value in environ.items() if key.startswith("HTTP_")}
    print("seen " + json.dumps({"path": environ["PATH_INFO"], **seen}), file=sys.stderr, flush=True)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """gunicorn, a strict server: it answers 400 to a request with two ``Host`` headers
    (RFC 9110 section 5.3, a singleton field), where uvicorn takes it."""
    port = free_port()
    args = [PYTHON, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "tests.test_cli:echo_app"]
    with run_server(args, port, tmp_path_factory.mktemp("gunicorn"), name="gunicorn") as server:
        yield server


def probe_gunicorn(gunicorn: ServerProcess, *headers: str) -> tuple[int, dict[str, str]]:
    """Run ``healthprobe probe`` against ``gunicorn`` with ``--header`` for each of ``headers``;
    return its exit status and the request headers the app saw (``{}`` if none reached it)."""
    path = f"/echo/{uuid.uuid4().hex}"
    argv = ["probe", gunicorn.url + path]
    for header in headers:
        argv += ["--header", header]
    status = main(argv)
    for line in gunicorn.output().splitlines():
        if line.startswith("seen "):
            seen: dict[str, str] = json.loads(line[len("seen ") :])
            if seen.pop("path") == path:
                return status, seen
    return status, {}


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield int(listener.getsockname()[1])
    listener.close()


def test_success_codes_are_200_to_399_as_the_kubelet_counts_them(base_url: str) -> None:
    assert main(["probe", f"{base_url}/livez"]) == 0
    assert main(["probe", f"{base_url}/moved"]) == 0  # 302: success, not followed
    assert main(["probe", f"{base_url}/readyz"]) == 1  # 503: the db check fails
    assert main(["probe", f"{base_url}/error"]) == 1


def test_headers_are_sent_like_http_headers_of_a_probe(base_url: str) -> None:
    seen_headers.clear()
    assert main(["probe", f"{base_url}/anything?x=1", "--header", "Custom-Header: Awesome"]) == 0
    assert seen_headers.get("Custom-Header") == "Awesome"
    assert seen_headers.get("User-Agent", "").startswith("healthprobe/")


def test_no_answer_fails_within_the_timeout(silent_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert main(["probe", f"http://127.0.0.1:{silent_port}/livez", "--timeout", "0.5"]) == 1
    assert time.monotonic() - started < 3
    assert "timed out" in capsys.readouterr().err


def test_a_refused_connection_fails() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ok, description = probe(f"http://127.0.0.1:{port}/livez", timeout=1)
    assert not ok and "ConnectionRefusedError" in description


@pytest.mark.parametrize(
    "argv",
    [
        ["probe", "ftp://example.invalid/"],
        ["probe", "/livez"],
        ["probe", "http://127.0.0.1:1/", "--timeout", "0"],
        ["probe", "http://127.0.0.1:1/", "--header", "no colon"],
    ],
)
def test_usage_errors_exit_1_by_default_and_2_with_distinct_codes(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 1  # Docker reserves 2 for HEALTHCHECK
    with pytest.raises(SystemExit) as raised:
        main([*argv, "--exit-codes", "distinct"])
    assert raised.value.code == 2
    with pytest.raises(SystemExit) as raised:
        main([*argv, "--exit-codes", "docker"])
    assert raised.value.code == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:1/live z", "contains a space"),
        ("http://127.0.0.1 :1/livez", "contains a space"),
        (" http://127.0.0.1:1/livez", "contains a space"),
        ("http://127.0.0.1:1/livez\n", "contains a control character"),
        ("http://127.0.0.1:1/li\tvez", "contains a control character"),
        ("http://127.0.0.1:1/livez\x01", "contains a control character"),
        ("http://127.0.0.1:1/livez\x7f", "contains a control character"),
        ("http://127.0.0.1:1/liv\u00e9z", "non-ASCII"),
        ("127.0.0.1:8080/livez", "not an absolute http(s) URL"),
        ("localhost/livez", "not an absolute http(s) URL"),
        ("ftp://127.0.0.1/livez", "not an absolute http(s) URL"),
        ("http:///livez", "not an absolute http(s) URL"),
        ("http://127.0.0.1:99999/livez", "Port out of range"),
        ("http://127.0.0.1:port/livez", "not a valid URL"),
        ("http://[::1/livez", "Invalid IPv6 URL"),
    ],
)
def test_a_malformed_url_is_a_usage_error_on_one_line(
    url: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(["probe", url], capsys)
    assert reason in err, err
    with pytest.raises(ValueError, match="URL"):
        probe(url)


def test_the_module_entry_point_runs_as_an_exec_probe(base_url: str) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "healthprobe", "probe", f"{base_url}/livez", "-v"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("200")
    failed = subprocess.run(
        [sys.executable, "-m", "healthprobe", "probe", f"{base_url}/readyz"], capture_output=True, text=True, timeout=30
    )
    assert failed.returncode == 1 and failed.stderr.startswith("503")
    malformed = subprocess.run(
        [sys.executable, "-m", "healthprobe", "probe", f"{base_url}/live z"], capture_output=True, text=True, timeout=30
    )
    assert malformed.returncode == 1 and malformed.stdout == ""
    assert malformed.stderr.count("\n") == 1 and "contains a space" in malformed.stderr


def test_ipv6_urls_without_a_port_use_the_scheme_default() -> None:
    require_ipv6_loopback()  # and nothing listens on [::1]:80 here
    ok, description = probe("http://[::1]/livez", timeout=1)
    assert not ok and description.startswith("no answer from [::1]:80:"), description


def test_an_ipv6_server_is_probed(tmp_path: object) -> None:
    registry = HealthRegistry()
    registry.mark_started()
    try:
        server = make_server("::1", 0, HealthMiddleware(_app, registry), threaded=True)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert main(["probe", f"http://[::1]:{server.server_port}/livez"]) == 0
    finally:
        server.shutdown()
        thread.join(5)


def test_without_headers_the_default_host_and_user_agent_are_sent(gunicorn: ServerProcess) -> None:
    status, seen = probe_gunicorn(gunicorn)
    assert status == 0
    assert seen["HTTP_HOST"] == f"127.0.0.1:{gunicorn.port}"
    assert seen["HTTP_USER_AGENT"].startswith("healthprobe/")


@pytest.mark.parametrize("name", ["Host", "host", "HOST"])
def test_a_given_host_replaces_the_default_one(gunicorn: ServerProcess, name: str) -> None:
    # With two Host headers gunicorn answers 400: the probe would fail.
    status, seen = probe_gunicorn(gunicorn, f"{name}: pod.example")
    assert status == 0
    assert seen["HTTP_HOST"] == "pod.example"


@pytest.mark.parametrize("name", ["User-Agent", "user-agent"])
def test_a_given_user_agent_replaces_the_default_one(gunicorn: ServerProcess, name: str) -> None:
    # gunicorn joins repeated headers with a comma: one value shows that one header was sent.
    status, seen = probe_gunicorn(gunicorn, f"{name}: kube-probe/1.30")
    assert status == 0
    assert seen["HTTP_USER_AGENT"] == "kube-probe/1.30"


def test_an_empty_user_agent_sends_none_and_an_empty_host_the_default_as_the_kubelet_does(
    gunicorn: ServerProcess,
) -> None:
    status, seen = probe_gunicorn(gunicorn, "User-Agent:", "Host:")
    assert status == 0
    assert "HTTP_USER_AGENT" not in seen
    assert seen["HTTP_HOST"] == f"127.0.0.1:{gunicorn.port}"


def test_other_headers_are_sent_as_given_and_non_ascii_values_as_utf8(gunicorn: ServerProcess) -> None:
    status, seen = probe_gunicorn(gunicorn, "X-Tab: a\tb", "X-Repeated: 1", "X-Repeated: 2", "X-Text: café", "X-Empty:")
    assert status == 0
    assert seen["HTTP_X_TAB"] == "a\tb"
    assert seen["HTTP_X_REPEATED"] == "1,2"
    # WSGI gives header bytes as latin-1 text (PEP 3333).
    assert seen["HTTP_X_TEXT"].encode("latin-1").decode("utf-8") == "café"
    assert seen["HTTP_X_EMPTY"] == ""


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line that ``main(argv)`` writes on stderr when it exits 1 with nothing on stdout;
    with ``--exit-codes distinct`` added at the end, it writes the same line and exits 2."""
    statuses = []
    for args, status in ((argv, 1), ([*argv, "--exit-codes", "distinct"], 2)):
        with pytest.raises(SystemExit) as raised:
            main(args)
        out, err = capsys.readouterr()
        assert raised.value.code == status, (args, err)
        assert out == ""
        assert err.startswith("healthprobe probe: error: ") and err.count("\n") == 1 and err.endswith("\n"), err
        statuses.append(err)
    assert statuses[0] == statuses[1], statuses
    return statuses[0]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Host: a", "more than one Host header"),
        ("host: a", "more than one Host header"),
        ("User-Agent: a", "more than one User-Agent header"),
    ],
)
def test_host_or_user_agent_given_twice_is_a_usage_error(
    header: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = header.split(":")[0].title() + ": b"
    err = usage_error(["probe", "http://127.0.0.1:1/livez", "--header", first, "--header", header], capsys)
    assert reason in err, err


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("NoColon", "expected 'Name: value'"),
        (": value", "expected 'Name: value'"),
        ("Bad Name: x", "token"),
        ("X(: x", "token"),
        ("X/Y: x", "token"),
        ("Na\u00efve: x", "token"),
        ("X\x01: x", "token"),
        ("X-Token: secret\x01", "control character"),
        ("X-Token: secret\x7f", "control character"),
        ("X-Token: secret\x00", "control character"),
        ("X-Token: secret\r\nX-Injected: 1", "control character"),
        ("X-Token: secret\nX-Injected: 1", "control character"),
        ("X-Token: se\rcret", "control character"),
    ],
)
def test_a_malformed_header_is_a_usage_error_that_does_not_echo_its_value(
    header: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(["probe", "http://127.0.0.1:1/livez", "--header", header], capsys)
    assert "argument --header: " in err and reason in err, err
    assert "secret" not in err and "NoColon" not in err, err
    name, colon, value = header.partition(":")
    if colon:  # the same rule for the Python API
        with pytest.raises(ValueError, match=reason) as raised:
            probe("http://127.0.0.1:1/livez", headers=[(name.strip(), value.strip(" "))])
        assert "secret" not in str(raised.value)


def test_port_0_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(["probe", "http://127.0.0.1:0/livez"], capsys)
    assert "port 0" in err, err
    with pytest.raises(ValueError, match="port 0"):
        probe("http://127.0.0.1:00/livez")


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["probe", "http://127.0.0.1:1/", "--timeout", "0"], "argument --timeout: "),
        (["probe", "http://127.0.0.1:1/", "--timeout", "-1"], "argument --timeout: "),
        (["probe", "http://127.0.0.1:1/", "--timeout", "abc"], "argument --timeout: "),
        (["probe", "http://127.0.0.1:1/", "--timeout", "inf"], "argument --timeout: "),
        (["probe", "http://127.0.0.1:1/", "--timeout", "nan"], "argument --timeout: "),
        (["probe", "http://127.0.0.1:1/", "--timeout"], "argument --timeout: "),
        (["probe", "http://127.0.0.1:1/", "--header"], "argument --header: "),
        (["probe"], "required: url"),
        (["probe", "http://127.0.0.1:1/", "--bogus"], "unrecognized arguments: --bogus"),
        (["probe", "http://127.0.0.1:1/", "http://127.0.0.1:2/"], "unrecognized arguments: http://127.0.0.1:2/"),
    ],
)
def test_every_usage_error_of_probe_is_one_line(
    argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(argv, capsys)
    assert reason in err, err


def test_a_usage_error_of_the_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # No command named (or an unknown one): no command's status applies, and Docker's 1 does.
    for argv in (["nonsense"], [], ["porbe", "http://127.0.0.1:1/", "--exit-codes", "distinct"]):
        with pytest.raises(SystemExit) as raised:
            main(argv)
        out, err = capsys.readouterr()
        assert raised.value.code == 1 and out == ""
        assert err.startswith("healthprobe: error: ") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "url",
    [
        "http://user:s3cret@127.0.0.1:{port}/livez",
        "http://user:s3cret@127.0.0.1:abc/livez",
        "http://user:s3cret@127.0.0.1:0/livez",
        "http://user:s3cret@127.0.0.1:99999/livez",
        "http://s3cret@127.0.0.1:{port}/livez",
        "http://user:s3cret@[::1/livez",
        "http://user:s3cret@127.0.0.1:{port}/live z",
        "http://user:s3cret@127.0.0.1:{port}/livez\n",
        "http://user:s3cret@127.0.0.1:{port}/liv\u00e9z",
        "user:s3cret@127.0.0.1:{port}/livez",
        "ftp://user:s3cret@127.0.0.1/livez",
        "http://user:s3cr@t@127.0.0.1:{port}/livez",
        "http://user:s3/cret@127.0.0.1:{port}/livez",
    ],
)
def test_credentials_in_the_url_are_a_usage_error_and_never_echoed(
    url: str, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = url.format(port=base_url.rsplit(":", 1)[1])
    err = usage_error(["probe", url], capsys)
    assert "s3" not in err and "user" not in err, err
    with pytest.raises(ValueError) as raised:
        probe(url)
    assert "s3" not in str(raised.value) and "user" not in str(raised.value)


def test_credentials_in_the_url_say_to_use_an_authorization_header(
    base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = base_url.rsplit(":", 1)[1]
    err = usage_error(["probe", f"http://user:s3cret@127.0.0.1:{port}/livez"], capsys)
    assert "--header 'Authorization: " in err, err
    assert f"http://***@127.0.0.1:{port}/livez" in err, err


@pytest.mark.parametrize(
    ("extra", "shown"),
    [
        (["http://user:s3cret@127.0.0.1:2/"], "http://***@127.0.0.1:2/"),
        (["--headr", "Authorization: Bearer s3cret"], "--headr <value>"),
        (["--headr=Authorization: Bearer s3cret"], "--headr=<value>"),
    ],
)
def test_an_unrecognized_argument_shows_no_secret(
    extra: list[str], shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(["probe", "http://127.0.0.1:1/", *extra], capsys)
    assert "s3cret" not in err and f"unrecognized arguments: {shown}\n" in err, err


def test_usage_errors_are_one_line_from_the_installed_command() -> None:
    for args in (["--timeout", "abc"], ["--header", "NoColon"], ["--timeout", "0"]):
        for codes, status in (([], 1), (["--exit-codes", "distinct"], 2)):
            result = subprocess.run(
                [sys.executable, "-m", "healthprobe", "probe", "http://127.0.0.1:1/livez", *args, *codes],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert result.returncode == status and result.stdout == "", result
            assert result.stderr.startswith("healthprobe probe: error: argument ") and result.stderr.count("\n") == 1


# -- --verbose: what a failing answer says -----------------------------------------------------


@contextlib.contextmanager
def answering(response: bytes) -> Iterator[str]:
    """A loopback HTTP server that answers every request with the raw bytes ``response``
    (whatever a server may send, control characters and all); yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                connection.sendall(response)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join(5)
        listener.close()


def raw_answer(status_line: bytes, content_type: bytes | None, body: bytes) -> bytes:
    headers = b"Content-Type: " + content_type + b"\r\n" if content_type is not None else b""
    return status_line + b"\r\n" + headers + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_verbose_prints_the_failing_checks_of_a_text_body(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Without --verbose, the status line only, as before.
    assert run(["probe", f"{base_url}/readyz"], capsys) == (1, "", "503 Service Unavailable\n")
    expected = (1, "", "503 Service Unavailable\n[-]db failed: reason withheld\n")
    assert run(["probe", "-v", f"{base_url}/readyz"], capsys) == expected
    assert run(["probe", f"{base_url}/readyz", "--verbose"], capsys) == expected
    # A passing answer: the status line on stdout, nothing more.
    assert run(["probe", "-v", f"{base_url}/livez"], capsys) == (0, "200 OK\n", "")
    assert run(["probe", "-v", f"{base_url}/livez?verbose"], capsys) == (0, "200 OK\n", "")


def test_verbose_reads_health_json_bodies(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    expected = (1, "", "503 Service Unavailable\n[-]db failed: reason withheld\n")
    assert run(["probe", "-v", f"{base_url}/readyz?format=json"], capsys) == expected
    accept = ["--header", "Accept: application/health+json"]
    assert run(["probe", "-v", f"{base_url}/readyz", *accept], capsys) == expected


def test_verbose_prints_a_one_line_error_answer(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(["probe", "-v", f"{base_url}/readyz/dbb"], capsys)
    assert (status, out, err) == (1, "", "404 Not Found\nno readyz check named 'dbb'\n")
    status, out, err = run(["probe", "-v", f"{base_url}/readyz?verbos"], capsys)
    assert (status, out, err) == (1, "", "400 Bad Request\nunknown query parameter 'verbos'\n")


def test_verbose_from_the_command_an_exec_probe_runs(base_url: str) -> None:
    failed = subprocess.run(
        [sys.executable, "-m", "healthprobe", "probe", "-v", f"{base_url}/readyz"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr == "503 Service Unavailable\n[-]db failed: reason withheld\n"


def test_verbose_shows_at_most_ten_lines_of_a_real_probe_server(capsys: pytest.CaptureFixture[str]) -> None:
    registry = HealthRegistry(default_cache_ttl=0.0)
    registry.mark_started()
    for number in range(12):
        registry.add_check(f"queue-{number:02}", lambda: False, probes=["readiness"])
    registry.add_check("cache", lambda: False, probes=["readiness"], critical=False)  # a warning: not listed
    with healthprobe.serve(registry, "127.0.0.1", 0) as server:
        status, out, err = run(["probe", "-v", f"{server.url}/readyz"], capsys)
        lines = err.splitlines()
        assert status == 1 and out == ""
        assert lines == [
            "503 Service Unavailable",
            *[f"[-]queue-{number:02} failed: reason withheld" for number in range(9)],
            "... 3 more",
        ]
    draining = HealthRegistry()
    draining.add_check("database", lambda: True)
    draining.mark_started()
    draining.begin_drain()  # readiness fails for a reason of the lifecycle, not of a check
    with healthprobe.serve(draining, "127.0.0.1", 0) as server:
        assert run(["probe", "-v", f"{server.url}/readyz"], capsys)[2] == (
            "503 Service Unavailable\n[-]lifecycle failed: draining\n"
        )
        assert run(["probe", "-v", f"{server.url}/readyz?format=json"], capsys)[2] == (
            "503 Service Unavailable\noutput: draining\n"
        )


def test_verbose_never_echoes_raw_bytes_and_stays_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    line = b"[-]check%d failed: \x1b[2J\x07bell \xff\xfe \xe2\x80\xae" + b"x" * 300 + b"\r\n"
    body = b"".join(line % number for number in range(50)) + b"readyz check failed\n"
    response = raw_answer(b"HTTP/1.1 503 Bad\x1b[31m News", b"text/plain; charset=utf-8", body)
    with answering(response) as url:
        status, out, err = run(["probe", "-v", f"{url}/readyz"], capsys)
    assert status == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == "503 Bad\\x1b[31m News"
    details = lines[1:]
    assert len(details) <= 10 and sum(len(text.encode()) + 1 for text in details) <= 1024
    assert details[-1] == f"... {50 - len(details) + 1} more"
    for text in details:
        assert text.isprintable() and len(text) <= 200, text
    assert details[0].startswith("[-]check0 failed: \\x1b[2J\\x07bell \\xff\\xfe \\u202exxx")
    assert details[0].endswith("x...") and len(details[0]) == 200
    # Without --verbose, still the status line only.
    with answering(response) as url:
        assert run(["probe", f"{url}/readyz"], capsys) == (1, "", "503 Bad\\x1b[31m News\n")


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (b"text/html", b"<html><body>[-]bad gateway</body></html>\n", []),
        (None, b"[-]db failed: timed out after 1.0 s\nreadyz check failed\n", ["[-]db failed: timed out after 1.0 s"]),
        (b"text/plain", b"\n  database unreachable  \nretrying\n", ["database unreachable"]),
        (b"text/plain", b"", []),
        (
            b"application/json",
            b'{"status":"down","output":"degraded\\u001b","checks":{"db:responseTime":[{"status":"error",'
            b'"output":"slow"},{"status":"pass"}],"cache":{"status":"DOWN"},"disk":[{"status":"warn"}]}}',
            ["output: degraded\\x1b", "[-]db:responseTime failed: slow", "[-]cache failed"],
        ),
        (b"application/vnd.health+json", b'{"checks": []}', []),
        (b"application/health+json", b"{not json", []),
        (b"application/health+json", b"[1, 2]", []),
    ],
)
def test_verbose_reads_other_servers_bodies(
    content_type: bytes | None, body: bytes, expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with answering(raw_answer(b"HTTP/1.1 500 Internal Server Error", content_type, body)) as url:
        status, out, err = run(["probe", "-v", f"{url}/healthz"], capsys)
    assert (status, out) == (1, "")
    assert err.splitlines() == ["500 Internal Server Error", *expected]
    assert failing_lines(body, content_type.decode() if content_type else None) == expected


def test_failing_lines_bounds() -> None:
    assert failing_lines(b"[-]a\n" * 10, None) == ["[-]a"] * 10
    assert failing_lines(b"[-]a\n" * 11, None) == ["[-]a"] * 9 + ["... 2 more"]
    exact = "[-]" + "y" * 197
    assert failing_lines(exact.encode(), "text/plain") == [exact]
    assert failing_lines((exact + "z").encode(), "text/plain") == ["[-]" + "y" * 194 + "..."]
    # An escape is never cut in two.
    assert failing_lines(("[-]" + "y" * 194 + "\x1b").encode(), None) == ["[-]" + "y" * 194 + "..."]
    # Multi-byte characters count in bytes: 200 characters of 3 bytes each.
    wide = "[-]" + "\u20ac" * 300
    shown = failing_lines((wide + "\n").encode() * 5, None)
    assert shown[-1].startswith("... ") and sum(len(text.encode()) + 1 for text in shown) <= 1024


def test_the_verbose_example_of_kubernetes_md_is_a_real_answer(capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "kubernetes.md").read_text()
    section = doc[doc.index("### Which check failed: `--verbose`") :]
    console = re.search(r"```console\n(.*?)```", section, re.S)
    assert console is not None
    command, *shown = console.group(1).splitlines()
    assert command == '$ healthprobe probe -v http://127.0.0.1:8080/readyz; echo "exit $?"'

    def redis() -> None:
        raise ConnectionError("connection refused")

    registry = HealthRegistry()
    registry.add_check("database", lambda: time.sleep(3), timeout=0.8)
    registry.add_check("redis", redis)
    registry.mark_started()
    with healthprobe.serve(registry, "127.0.0.1", 0) as server:
        status, out, err = run(["probe", "-v", f"{server.url}/readyz"], capsys)
    assert out == "" and [*err.splitlines(), f"exit {status}"] == shown


# -- exit statuses: Docker's 0 and 1 by default, one per kind with --exit-codes distinct --------


def command(*args: str) -> subprocess.CompletedProcess[str]:
    """``healthprobe ARGS...``, the installed console script, as an exec probe runs it."""
    return subprocess.run([str(BIN / "healthprobe"), *args], capture_output=True, text=True, timeout=60)


def test_each_kind_of_outcome_has_its_exit_status(base_url: str, silent_port: int) -> None:
    refused = free_port()
    with answering(b"") as closing:  # reads the request, then closes without a word
        cases = {
            "passes": ([f"{base_url}/livez"], 0),
            "a 302 passes": ([f"{base_url}/moved"], 0),
            "answered 503": ([f"{base_url}/readyz"], 1),
            "answered 500": ([f"{base_url}/error"], 1),
            "a malformed URL": ([f"{base_url}/live z"], 2),
            "a malformed header": ([f"{base_url}/livez", "--header", "NoColon"], 2),
            "an unknown option": ([f"{base_url}/livez", "--bogus"], 2),
            "refused": ([f"http://127.0.0.1:{refused}/livez"], 3),
            "timed out": ([f"http://127.0.0.1:{silent_port}/livez", "--timeout", "0.3"], 3),
            "closed without an answer": ([f"{closing}/livez"], 3),
            "a host that does not resolve": (["http://nosuch.invalid/livez", "--timeout", "5"], 3),
        }
        for what, (args, distinct) in cases.items():
            default = command("probe", *args)
            assert default.returncode == (0 if distinct == 0 else 1), (what, default)
            assert default.stderr.count("\n") == (0 if distinct == 0 else 1), (what, default)
            named = command("probe", *args, "--exit-codes", "distinct")
            assert named.returncode == distinct, (what, named)
            assert named.stderr == default.stderr, (what, named)
            docker = command("probe", *args, "--exit-codes", "docker")
            assert (docker.returncode, docker.stderr) == (default.returncode, default.stderr), (what, docker)


def test_help_and_version_exit_0() -> None:
    for args in (["--help"], ["probe", "--help"], ["probe", "--help", "--exit-codes", "distinct"], ["--version"]):
        done = command(*args)
        assert done.returncode == 0 and done.stderr == "", (args, done)
    assert command("--version").stdout == f"{healthprobe.__version__}\n"
    assert "--exit-codes {docker,distinct}" in command("probe", "--help").stdout


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["probe"], 1),
        (["probe", "--exit-codes", "distinct"], 2),  # no URL: argparse's error, before any parsing is done
        (["probe", "--exit-codes=distinct"], 2),
        (["probe", "--exit", "distinct"], 2),  # an abbreviation argparse takes
        (["probe", "--exit-c=distinct"], 2),
        (["--bogus", "probe", "http://127.0.0.1:1/"], 1),  # an option of the command line itself
        (["--bogus", "probe", "http://127.0.0.1:1/", "--exit-codes", "distinct"], 2),
        (["probe", "http://127.0.0.1:1/", "--timeout", "0", "--exit-codes", "distinct"], 2),
        (["probe", "--exit-codes", "distinct", "http://127.0.0.1:1/", "--timeout"], 2),
        (["probe", "--exit-codes", "distinct", "--exit-codes", "docker", "http://127.0.0.1:1/", "--bogus"], 1),
        (["probe", "--exit-codes", "docker", "--exit-codes", "distinct", "http://127.0.0.1:1/", "--bogus"], 2),
        (["probe", "http://127.0.0.1:1/", "--exit-codes", "bogus"], 1),  # the error is the value
        (["probe", "http://127.0.0.1:1/", "--exit-codes"], 1),
        (["probe", "--", "http://127.0.0.1:1/", "--exit-codes", "distinct"], 1),  # after --: arguments
        (["porbe", "http://127.0.0.1:1/", "--exit-codes", "distinct"], 1),  # no such command
    ],
)
def test_an_error_in_the_arguments_themselves_reads_exit_codes_from_them(
    argv: list[str], status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    out, err = capsys.readouterr()
    assert raised.value.code == status, err
    assert out == "" and err.count("\n") == 1 and ": error: " in err, err


@pytest.mark.parametrize(
    "option", [["--attempt-timeout", "2"], ["--period", "2"], ["--stable", "0"], ["--stable", "2"]]
)
def test_the_options_of_wait_without_it_are_usage_errors(option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(["probe", "http://127.0.0.1:1/", *option], capsys)
    assert f"{option[0]} is for --wait" in err, err


# -- tcp://HOST:PORT: the kubelet's tcpSocket probe ----------------------------------------------


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port that accepts TCP connections (never answering on them)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield int(listener.getsockname()[1])


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A loopback port whose listener never accepts and whose queue of connections is full:
    Linux drops every further SYN, so that a connect neither succeeds nor is refused."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    held: list[socket.socket] = []
    try:
        for _ in range(16):
            client = socket.socket()
            client.settimeout(0.5)
            try:
                client.connect(("127.0.0.1", port))
            except TimeoutError:
                client.close()
                break
            held.append(client)
        else:
            pytest.skip("this system completes connections beyond a full backlog: no connect to time out")
        yield port
    finally:
        for client in held:
            client.close()
        listener.close()


def test_a_tcp_connection_passes_silently_and_says_so_with_verbose(listening: int) -> None:
    quiet = command("probe", f"tcp://127.0.0.1:{listening}")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", ""), quiet
    loud = command("probe", "-v", f"tcp://127.0.0.1:{listening}", "--exit-codes", "distinct")
    assert (loud.returncode, loud.stdout, loud.stderr) == (0, f"connected to 127.0.0.1:{listening}\n", ""), loud
    named = command("probe", "-v", f"tcp://localhost:{listening}")
    assert (named.returncode, named.stdout) == (0, f"connected to localhost:{listening}\n"), named


def test_a_refused_tcp_connection_is_no_answer_with_the_go_dialers_message() -> None:
    port = free_port()
    line = f"dial tcp 127.0.0.1:{port}: connect: connection refused\n"
    for args, status in (([], 1), (["--exit-codes", "distinct"], 3), (["-v"], 1)):
        done = command("probe", f"tcp://127.0.0.1:{port}", *args)
        assert (done.returncode, done.stdout, done.stderr) == (status, "", line), done
    assert probe_tcp(f"tcp://127.0.0.1:{port}") == (False, line.strip())


def test_a_tcp_connection_that_is_not_completed_times_out() -> None:
    with full_backlog() as port:
        started = time.monotonic()
        done = command("probe", f"tcp://127.0.0.1:{port}", "--timeout", "0.5", "--exit-codes", "distinct")
        seconds = time.monotonic() - started
    assert (done.returncode, done.stdout, done.stderr) == (3, "", f"dial tcp 127.0.0.1:{port}: i/o timeout\n"), done
    assert 0.5 <= seconds < 10, seconds


def test_a_tcp_host_that_does_not_resolve_is_no_answer() -> None:
    done = command("probe", "tcp://nosuch.invalid:5432", "--timeout", "5", "--exit-codes", "distinct")
    assert done.returncode == 3 and done.stdout == "", done
    assert done.stderr.startswith("dial tcp: lookup nosuch.invalid: ") and done.stderr.count("\n") == 1, done


def test_an_ipv6_tcp_port_is_probed() -> None:
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with listener:
        port = listener.getsockname()[1]
        done = command("probe", "-v", f"tcp://[::1]:{port}")
        assert (done.returncode, done.stdout) == (0, f"connected to [::1]:{port}\n"), done
    refused = command("probe", f"tcp://[::1]:{port}")
    assert (refused.returncode, refused.stderr) == (1, f"dial tcp [::1]:{port}: connect: connection refused\n")


def test_check_tcp_takes_a_checked_host_and_port(listening: int) -> None:
    # The seam other modules run tcpSocket probes through: host and port already checked.
    assert _check_tcp("127.0.0.1", listening, 1.0) == (True, f"connected to 127.0.0.1:{listening}")
    port = free_port()
    assert _check_tcp("127.0.0.1", port, 1.0) == (False, f"dial tcp 127.0.0.1:{port}: connect: connection refused")
    assert _check_tcp("nosuch.invalid", port, 5.0)[1].startswith("dial tcp: lookup nosuch.invalid: ")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("tcp://127.0.0.1", "has no port (TCP has no default port)"),
        ("tcp://127.0.0.1:", "has no port"),
        ("tcp://127.0.0.1:0", "has port 0"),
        ("tcp://127.0.0.1:99999", "Port out of range"),
        ("tcp://127.0.0.1:port", "not a valid URL"),
        ("tcp://:5432", "not a tcp://HOST:PORT URL"),
        ("tcp://127.0.0.1:5432/", "a tcp:// URL has no path, query or fragment"),
        ("tcp://127.0.0.1:5432/db", "a tcp:// URL has no path, query or fragment"),
        ("tcp://127.0.0.1:5432?x=1", "a tcp:// URL has no path, query or fragment"),
        ("tcp://127.0.0.1:5432#x", "a tcp:// URL has no path, query or fragment"),
        ("tcp://[::1:5432", "Invalid IPv6 URL"),
        ("tcp://127.0.0.1 :5432", "contains a space"),
        ("tcp://127.0.0.1:5432\n", "contains a control character"),
        ("tcp://h\u00f4te:5432", "non-ASCII"),
        ("tcp://user:s3cret@127.0.0.1:5432", "credentials in a URL are not sent"),
        ("tcp://s3cret@127.0.0.1:5432", "credentials in a URL are not sent"),
    ],
)
def test_a_malformed_tcp_url_is_a_usage_error_on_one_line(
    url: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(["probe", url], capsys)
    assert reason in err and "s3cret" not in err, err
    with pytest.raises(ValueError, match="URL") as raised:
        probe_tcp(url)
    assert "s3cret" not in str(raised.value)


def test_headers_are_refused_for_tcp(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(["probe", "tcp://127.0.0.1:5432", "--header", "Authorization: Bearer s3cret"], capsys)
    assert (
        err == "healthprobe probe: error: --header is for http(s) URLs: the kubelet's tcpSocket probe sends nothing\n"
    )


@pytest.mark.parametrize("timeout", [0.0, -1.0, math.inf, math.nan])
def test_probe_tcp_wants_a_timeout_in_seconds(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        probe_tcp("tcp://127.0.0.1:5432", timeout=timeout)


def test_the_timeout_bounds_a_trickled_answer() -> None:
    """``--timeout`` bounds the whole exchange, as the kubelet's ``http.Client.Timeout`` does:
    an answer whose body comes a byte at a time is cut off, not waited for."""

    def trickle(environ: dict[str, object], start_response: Callable[..., object]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])

        for _ in range(50):
            time.sleep(0.1)
            yield b"."

    with werkzeug_server(trickle) as url:
        began = time.monotonic()
        ok, description = probe(url + "/", timeout=1.0)
        took = time.monotonic() - began
    assert not ok and description.endswith(": timed out")
    assert took < 4  # the body alone takes 5 s
