"""The ``healthprobe`` command: probe an HTTP endpoint or a gRPC health service the way the
kubelet does, for ``exec`` probes and Docker ``HEALTHCHECK`` in images that have no curl,
wget or grpc_health_probe.

Usage::

    healthprobe probe http://127.0.0.1:8080/readyz [--timeout 1] [--header 'Name: value'] [--verbose]
    healthprobe probe grpc://127.0.0.1:50051[/SERVICE] [--timeout 1] [--verbose]

A failing answer prints its status line on stderr (``503 Service Unavailable``); with
``--verbose`` a passing one prints it on stdout, and a failing one also prints what its body
says failed (:func:`failing_lines`): the ``[-]name failed: reason`` lines of a text body, the
failing checks of an ``application/health+json`` body, else the first line of a plain-text
body; at most 10 lines and 1 KiB, each line cut to 200 characters and its control characters
escaped, since an exec probe's output lands in the pod's events. The URL is sent as given.

Exit status: 0 when the answer's status code is from 200 to 399 (the kubelet's ``httpGet``
rule, Kubernetes "Configure Liveness, Readiness and Startup Probes"), 1 for any other code,
a timeout or a refused connection, 2 for a usage error (one line on stderr,
``healthprobe probe: error: <reason>``), such as a malformed URL or header. Redirects are not
followed (the kubelet follows them only to the same host; a probe endpoint has no reason to
redirect).

Headers follow the kubelet's rules (Kubernetes "Configure Liveness, Readiness and Startup
Probes": ``httpHeaders`` can override ``Host`` and ``User-Agent``): a given ``Host`` or
``User-Agent`` replaces the default one; an empty ``Host`` keeps the default, an empty
``User-Agent`` sends none. Credentials in the URL are refused (the kubelet's ``httpGet`` has
none; send ``--header 'Authorization: ...'``), and no message ever shows them.

A ``grpc://HOST:PORT[/SERVICE]`` URL calls ``grpc.health.v1.Health/Check`` (gRPC docs
"Health Checking") with ``SERVICE`` as the service name (percent-decoded; none is ``""``, the
server as a whole) over plaintext HTTP/2, as the kubelet's ``grpc`` probe does
(``pkg/probe/grpc/grpc.go``; it has no TLS, no headers and no default port): exit status 0
only when the answer is ``SERVING``; 1 for ``NOT_SERVING``, ``UNKNOWN``, an error status such
as ``NOT_FOUND`` (a service the server does not know) or ``UNIMPLEMENTED`` (no health
service), a timeout or a refused connection, with the kubelet's one-line messages on stderr
(:func:`probe_grpc`); 2 for a usage error, and when grpcio is not installed (the ``grpc``
extra). ``--verbose`` prints ``service healthy`` on stdout for ``SERVING``, and after a
failing answer of healthprobe's own servicer what failed, one line per failing check or
lifecycle reason (its ``healthprobe-reason`` trailer, :data:`healthprobe.grpc.REASON_KEY`),
bounded as for HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import re
import socket
import sys
import typing
import urllib.parse

from . import __version__, _extras

if typing.TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, NoReturn

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DETAIL_BYTES",
    "MAX_DETAIL_LINE",
    "MAX_DETAIL_LINES",
    "USER_AGENT",
    "failing_lines",
    "main",
    "probe",
    "probe_grpc",
]

#: The ``User-Agent`` header sent unless ``--header`` gives another (``healthprobe/<version>``).
USER_AGENT = f"healthprobe/{__version__}"
#: A space, a C0 control character or DEL: never part of a URL (RFC 3986 section 2);
#: ``urlsplit`` would silently drop some of them (tab, CR, LF) and keep the others.
_NOT_IN_URL = re.compile(r"[\x00-\x20\x7f]")
#: A field name is a token (RFC 9110 sections 5.1 and 5.6.2).
_TCHAR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]")
#: A control character but HTAB: never part of a field value (RFC 9110 section 5.5; CR, LF and
#: NUL would also split or end the header line).
_NOT_IN_FIELD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: A control character, shown escaped in a usage error so that it stays on one line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Most bytes of an answer's body read (and searched by ``--verbose``).
MAX_BODY_BYTES = 64 * 1024
#: What ``--verbose`` prints of a failing answer's body at most: lines, bytes (UTF-8, line
#: ends included) and characters per line. The kubelet keeps the first 10 KiB of an exec
#: probe's output (``maxReadLength`` in ``pkg/probe/exec/exec.go``).
MAX_DETAIL_LINES = 10
MAX_DETAIL_BYTES = 1024
MAX_DETAIL_LINE = 200
#: IETF draft "Health Check Response Format for HTTP APIs": the status values of a failure.
_FAIL_WORDS = frozenset({"fail", "error", "down"})


class _Answer(typing.NamedTuple):
    ok: bool
    description: str
    content_type: str | None
    body: bytes


def probe(url: str, *, timeout: float = 1.0, headers: Sequence[tuple[str, str]] = ()) -> tuple[bool, str]:
    """Send one ``GET`` to ``url`` and judge it as the kubelet's ``httpGet`` probe does.

    Args:
        url: an ``http://`` or ``https://`` URL.
        timeout: seconds to wait for the connection and for the answer (the kubelet's
            ``timeoutSeconds``, default 1).
        headers: extra request headers as ``(name, value)`` pairs, as the probe's
            ``httpHeaders``: a ``Host`` or ``User-Agent`` replaces the default one (an empty
            ``Host`` keeps the default, an empty ``User-Agent`` sends none, as the kubelet's
            ``pkg/probe/http/request.go`` does); values are sent as UTF-8.

    Returns:
        ``(success, description)``: success for a status code from 200 to 399; the
        description is the status line (``503 Service Unavailable``, the server's reason
        phrase with control characters escaped and cut to :data:`MAX_DETAIL_LINE`
        characters), or why no answer came.

    Raises:
        ValueError: if ``url`` is not an absolute http(s) URL: no ``http``/``https`` scheme
            or host, a space, a control character or a non-ASCII character in it, a
            malformed port or IPv6 address, port 0, or credentials (``user:password@``); or
            if a header name is not a token (RFC 9110 section 5.6.2), a value has a control
            character other than HTAB (section 5.5), or ``Host`` or ``User-Agent`` is given
            more than once. The message is one line and shows neither the URL's credentials
            nor a header's value.
    """
    answer = _get(url, timeout=timeout, headers=headers)
    return answer.ok, answer.description


def _get(url: str, *, timeout: float, headers: Sequence[tuple[str, str]]) -> _Answer:
    """:func:`probe`, with the answer's ``Content-Type`` and its first
    :data:`MAX_BODY_BYTES` bytes (``None`` and ``b""`` when no answer came).

    Raises:
        ValueError: see :func:`probe`.
    """
    parts, host, port = _split(url)
    skip_host, lines = _request_headers(headers)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    # The port is always given: with none, http.client would read an IPv6 host ("::1") as
    # host:port.
    connection = kind(host, port, timeout=timeout)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        connection.putrequest("GET", target, skip_host=skip_host, skip_accept_encoding=True)
        for name, value in lines:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read(MAX_BODY_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        reason = "timed out" if isinstance(exc, (TimeoutError, socket.timeout)) else type(exc).__name__
        shown = f"[{host}]" if ":" in host else host
        return _Answer(False, f"no answer from {shown}:{port}: {reason}", None, b"")
    finally:
        connection.close()
    ok = 200 <= response.status < 400
    # The reason phrase is the server's text: shown escaped and bounded, as the body is.
    description = f"{response.status} {_printable(response.reason, MAX_DETAIL_LINE)}"
    return _Answer(ok, description, response.getheader("Content-Type"), body)


def probe_grpc(url: str, *, timeout: float = 1.0) -> tuple[bool, str]:
    """Call ``grpc.health.v1.Health/Check`` at a ``grpc://HOST:PORT[/SERVICE]`` URL and judge
    the answer as the kubelet's ``grpc`` probe does (``pkg/probe/grpc/grpc.go``; Kubernetes
    "Configure Liveness, Readiness and Startup Probes": only ``SERVING`` succeeds).

    The call goes over plaintext HTTP/2 (no TLS, as the kubelet's), straight to the address
    (no HTTP proxy from the environment), with ``User-Agent`` :data:`USER_AGENT`; a refused
    connection fails at once rather than being retried until the timeout. It runs an event
    loop of its own (``asyncio.run``), so it is not for a coroutine: call it from a thread.

    Args:
        url: ``grpc://HOST:PORT`` (the service ``""``, the server as a whole) or
            ``grpc://HOST:PORT/SERVICE``; ``SERVICE`` is percent-decoded and may hold ``/``
            (``grpc://127.0.0.1:50051/readiness/postgres``).
        timeout: seconds for connecting and for the answer together (the kubelet's
            ``timeoutSeconds``, default 1).

    Returns:
        ``(success, description)``: success only for ``SERVING``; the description is one of
        the kubelet's lines: ``service healthy``, ``service unhealthy (responded with
        "NOT_SERVING")`` (or ``"UNKNOWN"``), ``timeout: failed to connect service
        "HOST:PORT" within 1s``, ``timeout: health rpc did not complete within 1s``,
        ``error: failed to connect service at "HOST:PORT": <reason>`` (refused, unresolved,
        not HTTP/2), ``error: this server does not implement the grpc health protocol
        (grpc.health.v1.Health): <details>``, or ``error: health rpc probe failed: <CODE>:
        <details>`` for another status, such as ``NOT_FOUND (no service "SERVICE" on this
        server)``, the protocol's answer for a service the server does not know; the
        server's text escaped and cut to :data:`MAX_DETAIL_LINE` characters.

    Raises:
        ValueError: if ``url`` is not such a URL: another scheme, no host or no port, port
            0, credentials, a query or fragment, a space, a control or non-ASCII character,
            or a service name that is not UTF-8 once decoded (one line, without credentials).
        ImportError: grpcio or grpcio-health-checking is not installed
            (``pip install 'healthprobe[grpc]'``; the message says so).
    """
    ok, description, _reason = _check_grpc(url, timeout=timeout)
    return ok, description


def _check_grpc(url: str, *, timeout: float) -> tuple[bool, str, str]:
    """:func:`probe_grpc`, with the text of the answer's ``healthprobe-reason`` trailer
    (:data:`healthprobe.grpc.REASON_KEY`: what failed, from healthprobe's servicer), ``""``
    when there is none.

    Raises:
        ValueError, ImportError: see :func:`probe_grpc`.
    """
    target, service = _split_grpc(url)
    with _extras.requires("grpc", "probing grpc:// URLs"):
        import grpc
        import grpc.aio
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from .grpc import REASON_KEY

    def reason(trailers: Any) -> str:
        return next((str(value) for key, value in trailers or () if key == REASON_KEY), "")

    async def check() -> tuple[bool, str, str]:
        options = [("grpc.primary_user_agent", USER_AGENT), ("grpc.enable_http_proxy", 0)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            call = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
            try:
                response = await call
            except grpc.aio.AioRpcError as exc:
                connected = channel.get_state() is grpc.ChannelConnectivity.READY
                failure = _grpc_failure(grpc, exc.code(), exc.details() or "", target, service, timeout, connected)
                return False, failure, reason(exc.trailing_metadata())
            trailers = await call.trailing_metadata()
        if response.status == health_pb2.HealthCheckResponse.SERVING:
            return True, "service healthy", ""
        try:
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        except ValueError:  # a value the proto does not define (its enum is open)
            name = str(response.status)
        return False, f'service unhealthy (responded with "{name}")', reason(trailers)

    return asyncio.run(check())


def _grpc_failure(
    grpc: Any, code: Any, details: str, target: str, service: str, timeout: float, connected: bool
) -> str:
    """The kubelet's line for a health RPC to ``service`` that ended with status ``code`` (a
    ``grpc.StatusCode``) and ``details``; ``connected``: the channel had reached ``READY``."""
    details = _printable(details, MAX_DETAIL_LINE)
    within = f"{timeout:g}s"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        if connected:
            return f"timeout: health rpc did not complete within {within}"
        return f'timeout: failed to connect service "{target}" within {within}'
    if code == grpc.StatusCode.UNAVAILABLE and not connected:
        return f'error: failed to connect service at "{target}": {details}'
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {details}"
    line = f"error: health rpc probe failed: {code.name}"
    if code == grpc.StatusCode.NOT_FOUND:  # the protocol's answer for a service it does not know
        line += f' (no service "{_printable(service, MAX_DETAIL_LINE)}" on this server)'
    return line + (f": {details}" if details else "")


def failing_lines(body: bytes, content_type: str | None) -> list[str]:
    """What a failing answer's body says failed, as lines safe to print on a terminal.

    * ``text/plain`` (or no ``Content-Type``): the lines that start with ``[-]``
      (kube-apiserver's ``[-]name failed: reason``, healthprobe's text bodies); with none,
      the first non-blank line (a one-line error such as ``no readyz check named 'x'``).
    * JSON (``application/health+json``, ``application/json``, any ``+json``): the
      document's ``output``, as ``output: <text>``, then ``[-]name failed: <output>`` for
      each entry of ``checks`` whose ``status`` is ``fail`` (or ``error``, ``down``: IETF
      draft "Health Check Response Format for HTTP APIs"). Malformed JSON gives nothing.
    * Any other type (an HTML error page): nothing.

    Bytes that are not UTF-8 are shown as ``\\xNN``; every character
    :meth:`str.isprintable` refuses (controls, escape sequences, bidirectional overrides,
    line separators) as its Python escape. At most :data:`MAX_DETAIL_LINES` lines and
    :data:`MAX_DETAIL_BYTES` bytes in all, each line cut to :data:`MAX_DETAIL_LINE`
    characters (ending in ``...``); lines left out are counted on a last ``... N more`` line.

    Args:
        body: the answer's body (or its first bytes).
        content_type: the answer's ``Content-Type`` header, or ``None``.

    Returns:
        The lines, without line ends; empty when the body says nothing that fits.
    """
    media = (content_type or "text/plain").split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "backslashreplace")
    if media in ("application/json", "application/health+json") or media.endswith("+json"):
        found = _json_failures(text)
    elif media == "text/plain":
        lines = [line.rstrip("\r") for line in text.split("\n")]
        found = [line for line in lines if line.startswith("[-]")]
        if not found:
            found = [line.strip() for line in lines if line.strip()][:1]
    else:
        found = []
    return _bounded(found)


def _json_failures(text: str) -> list[str]:
    """The ``output`` and failing checks of an IETF health-check JSON document, unescaped."""
    try:
        document = json.loads(text)
    except ValueError:
        return []
    if not isinstance(document, dict):
        return []
    found: list[str] = []
    output = document.get("output")
    if isinstance(output, str) and output:
        found.append(f"output: {output}")
    checks = document.get("checks")
    if isinstance(checks, dict):
        for name, entries in checks.items():
            for entry in entries if isinstance(entries, list) else [entries]:
                if isinstance(entry, dict) and _is_failure(entry):
                    reason = entry.get("output")
                    found.append(f"[-]{name} failed" + (f": {reason}" if isinstance(reason, str) and reason else ""))
    return found


def _is_failure(entry: dict[str, Any]) -> bool:
    status = entry.get("status")
    return isinstance(status, str) and status.lower() in _FAIL_WORDS


def _bounded(lines: Sequence[str]) -> list[str]:
    """``lines`` escaped, cut and limited as :func:`failing_lines` promises."""
    shown: list[str] = []
    used = 0
    for line in lines:
        if len(shown) == MAX_DETAIL_LINES:
            break
        safe = _printable(line, MAX_DETAIL_LINE)
        cost = len(safe.encode()) + 1
        if used + cost > MAX_DETAIL_BYTES:
            break
        shown.append(safe)
        used += cost
    left = len(lines) - len(shown)
    if left:
        # The count line fits within both bounds too: make room for it.
        while shown and (len(shown) == MAX_DETAIL_LINES or used + len(f"... {left} more") + 1 > MAX_DETAIL_BYTES):
            used -= len(shown.pop().encode()) + 1
            left += 1
        shown.append(f"... {left} more")
    return shown


def _printable(text: str, limit: int) -> str:
    """``text`` with every character :meth:`str.isprintable` refuses written as its Python
    escape, and at most ``limit`` characters long: when longer, cut to ``limit - 3`` and
    ``...`` added (an escape is never cut in two)."""
    pieces: list[str] = []
    size = 0
    for char in text:  # escapes only what can be shown, and a little more
        piece = char if char.isprintable() else repr(char)[1:-1]
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            break
    if size <= limit:
        return "".join(pieces)
    kept: list[str] = []
    size = 0
    for piece in pieces:
        if size + len(piece) > limit - 3:
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept) + "..."


def _split(url: str) -> tuple[urllib.parse.SplitResult, str, int]:
    """``url`` split into its parts, host and port (the scheme's default if none is given),
    if it is an absolute http(s) URL without credentials and with a port other than 0.

    Raises:
        ValueError: with a one-line reason (the URL is shown by ``repr``, so a control
            character in it cannot break the line, and without its credentials).
    """
    parts, port = _url_parts(
        url, "the kubelet's httpGet has no place for them); send them with --header 'Authorization: ...'"
    )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL (or grpc://HOST:PORT): {_redacted(url)!r}")
    if port == 0:
        raise ValueError(f"not a valid URL: {_redacted(url)!r} has port 0, which nothing can listen on")
    return parts, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _url_parts(url: str, no_credentials: str) -> tuple[urllib.parse.SplitResult, int | None]:
    """``url`` split into its parts and its port (``None`` when it gives none), if it has no
    space, control or non-ASCII character, a well-formed host and port, and no credentials;
    ``no_credentials`` ends the message that refuses credentials (what the kubelet's probe
    of that scheme does instead, and its closing parenthesis).

    Raises:
        ValueError: as :func:`_split` says.
    """
    shown = _redacted(url)
    bad = _NOT_IN_URL.search(url)
    if bad is not None:
        what = "a space" if bad.group() == " " else "a control character"
        raise ValueError(f"not a valid URL: {shown!r} contains {what}")
    if not url.isascii():
        raise ValueError(f"not a valid URL: {shown!r} contains a non-ASCII character (percent-encode it)")
    parts: urllib.parse.SplitResult | None
    port: int | None
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a malformed bracketed IPv6 host, or a port that is not one
        if "@" not in url:
            raise ValueError(f"not a valid URL: {shown!r} ({exc})") from None
        # Credentials with a '/', '?' or '#' in them: urlsplit took what precedes it for the
        # host and port, which its message would show.
        parts = port = None
    if parts is None or "@" in parts.netloc:
        raise ValueError(f"not a valid URL: {shown!r}: credentials in a URL are not sent ({no_credentials}")
    return parts, port


def _split_grpc(url: str) -> tuple[str, str]:
    """The ``HOST:PORT`` target (an IPv6 host in brackets) and the service name of a
    ``grpc://HOST:PORT[/SERVICE]`` URL: the path after its first ``/``, percent-decoded as
    UTF-8 (``grpc://h:50051/readiness/postgres`` is ``readiness/postgres``; none is ``""``).

    Raises:
        ValueError: as :func:`_split` says for what any URL may not hold, and, with a one-line
            reason, for another scheme, no host or no port (gRPC has none by default), port 0,
            a query or fragment, or a service name that is not UTF-8 once decoded.
    """
    parts, port = _url_parts(url, "the kubelet's grpc probe has no place for them)")
    shown = _redacted(url)
    if parts.scheme != "grpc" or not parts.hostname:
        raise ValueError(f"not a grpc://HOST:PORT[/SERVICE] URL: {shown!r}")
    if port is None:
        raise ValueError(f"not a valid URL: {shown!r} has no port (gRPC has no default port)")
    if port == 0:
        raise ValueError(f"not a valid URL: {shown!r} has port 0, which nothing can listen on")
    if "?" in url or "#" in url:
        raise ValueError(f"not a valid URL: {shown!r}: a grpc:// URL has no query or fragment")
    try:
        service = urllib.parse.unquote(parts.path[1:], errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"not a valid URL: {shown!r}: the service name is not UTF-8 once percent-decoded") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}", service


def _redacted(url: str) -> str:
    """``url`` with everything from the ``//`` after its scheme (or from its start) to its
    last ``@`` replaced by ``***``: whatever could be credentials, however malformed."""
    at = url.rfind("@")
    if at < 0:
        return url
    start = url.find("//")
    start = start + 2 if 0 <= start < at else 0
    return f"{url[:start]}***{url[at:]}"


def _check_header(name: str, value: str) -> None:
    """Raise ValueError (one line, without the value) unless ``name: value`` is a valid header
    line: the name a token, the value without a control character other than HTAB
    (RFC 9110 sections 5.1, 5.5 and 5.6.2)."""
    if not name:
        raise ValueError("expected 'Name: value': the name is empty")
    bad = next((char for char in name if not _TCHAR.fullmatch(char)), None)
    if bad is not None:
        raise ValueError(
            f"a header name is a token (RFC 9110 section 5.6.2: letters, digits and !#$%&'*+-.^_`|~), not {bad!r}"
        )
    if _NOT_IN_FIELD_VALUE.search(value):
        raise ValueError(
            f"the value of header {name!r} contains a control character "
            "(RFC 9110 section 5.5: CR, LF, NUL or another one but HTAB)"
        )


def _request_headers(headers: Sequence[tuple[str, str]]) -> tuple[bool, list[tuple[str, bytes]]]:
    """The header lines to send after ``putrequest``, and whether ``putrequest`` must leave
    out its own ``Host`` (because one is given).

    The kubelet's rules (``pkg/probe/http/request.go``, and Go's ``Request.Write``): a given
    ``Host`` or ``User-Agent`` replaces the default one; an empty ``Host`` keeps the default,
    an empty ``User-Agent`` sends none. A second ``Host`` makes a request invalid (RFC 9110
    section 5.3, and strict servers such as gunicorn answer 400); the kubelet would send only
    the first one, so two of either are refused here.

    Raises:
        ValueError: see :func:`probe`.
    """
    given: dict[str, str] = {}
    lines: list[tuple[str, bytes]] = []
    for name, value in headers:
        _check_header(name, value)
        key = name.lower()
        if key in ("host", "user-agent"):
            if key in given:
                raise ValueError(f"more than one {name.title()} header: a request has one")
            given[key] = value
            if key == "host" or not value:
                continue
        lines.append((name, value.encode("utf-8", "surrogateescape")))
    if "user-agent" not in given:
        lines.insert(0, ("User-Agent", USER_AGENT.encode()))
    host = given.get("host")
    if host:
        lines.insert(0, ("Host", host.encode("utf-8", "surrogateescape")))
    return bool(host), lines


def _header(text: str) -> tuple[str, str]:
    """``--header``'s type: ``'Name: value'`` as ``(name, value)``, spaces and tabs around
    each removed."""
    name, sep, value = text.partition(":")
    name, value = name.strip(" \t"), value.strip(" \t")
    if not sep:
        raise argparse.ArgumentTypeError("expected 'Name: value': no ':' in it")
    try:
        _check_header(name, value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, value


def _seconds(text: str) -> float:
    """``--timeout``'s type: a finite number of seconds > 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return seconds


def _shown_argument(argument: str) -> str:
    """An unrecognized command-line argument as an error may show it: an option's name, a URL
    without credentials, and none of any other value (it may be a header's secret value)."""
    if argument.startswith("-"):
        name, eq, _ = argument.partition("=")
        return f"{name}=<value>" if eq else name
    return _redacted(argument) if "://" in argument else "<value>"


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, ``PROG: error: REASON``, exit
    status 2, without the usage text argparse prints before them: an exec probe's output
    lands in the kubelet's events."""

    def error(self, message: str) -> NoReturn:
        message = _CONTROL.sub(lambda match: repr(match.group())[1:-1], message)
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    parser = _Parser(prog="healthprobe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser(
        "probe",
        help="GET an http(s) URL (exit 0 for a 200-399 answer) or Check a grpc:// one (exit 0 for SERVING); else 1",
    )
    one.add_argument("url", help="http(s)://HOST[:PORT]/PATH or grpc://HOST:PORT[/SERVICE]")
    one.add_argument("--timeout", type=_seconds, default=1.0, help="seconds (default 1, the kubelet's)")
    one.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        help="'Name: value', repeatable; a Host or User-Agent replaces the default (http(s) only)",
    )
    one.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="print the status line (grpc: the answer); for a failing answer also what it says failed",
    )
    args, extra = parser.parse_known_args(argv)
    if extra:
        one.error("unrecognized arguments: " + " ".join(_shown_argument(argument) for argument in extra))
    if args.url.partition(":")[0].lower() == "grpc":
        if args.header:
            one.error("--header is for http(s) URLs: the kubelet's grpc probe sends no headers")
        try:
            ok, description, reason = _check_grpc(args.url, timeout=args.timeout)
        except ImportError as exc:  # the grpc extra is missing: its message names the fix
            one.error(str(exc))
        except ValueError as exc:  # a malformed URL: a usage error, on one line
            one.error(str(exc))
        if args.verbose or not ok:
            print(description, file=sys.stdout if ok else sys.stderr)
        if args.verbose and reason:
            for line in _bounded(reason.split("; ")):
                print(line, file=sys.stderr)
        return 0 if ok else 1
    try:
        answer = _get(args.url, timeout=args.timeout, headers=args.header)
    except ValueError as exc:  # a malformed URL or header: a usage error, on one line
        one.error(str(exc))
    if args.verbose or not answer.ok:
        print(answer.description, file=sys.stdout if answer.ok else sys.stderr)
    if args.verbose and not answer.ok:
        for line in failing_lines(answer.body, answer.content_type):
            print(line, file=sys.stderr)
    return 0 if answer.ok else 1


if __name__ == "__main__":  # pragma: no cover - python -m healthprobe.cli
    sys.exit(main())
