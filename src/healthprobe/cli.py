"""The ``healthprobe`` command: probe an HTTP endpoint, a gRPC health service or a TCP port
the way the kubelet does, for ``exec`` probes and Docker ``HEALTHCHECK`` in images that have
no curl, wget or grpc_health_probe, and wait until such a target passes (init containers,
Docker Compose, scripts).

Usage::

    healthprobe probe http://127.0.0.1:8080/readyz [--timeout 1] [--header 'Name: value'] [--verbose]
    healthprobe probe grpc://127.0.0.1:50051[/SERVICE] [--timeout 1] [--verbose]
    healthprobe probe tcp://127.0.0.1:5432 [--timeout 1] [--verbose]
    healthprobe probe URL --wait [--timeout S] [--attempt-timeout 1] [--period 1] [--stable 0]
    healthprobe probe URL ... [--exit-codes docker|distinct]

A failing answer prints its status line on stderr (``503 Service Unavailable``); with
``--verbose`` a passing one prints it on stdout, and a failing one also prints what its body
says failed (:func:`failing_lines`): the ``[-]name failed: reason`` lines of a text body, the
failing checks of an ``application/health+json`` body, else the first line of a plain-text
body; at most 10 lines and 1 KiB, each line cut to 200 characters and its control characters
escaped, since an exec probe's output lands in the pod's events. The URL is sent as given.
A status code from 200 to 399 passes (the kubelet's ``httpGet`` rule, Kubernetes "Configure
Liveness, Readiness and Startup Probes"). Redirects are not followed (the kubelet follows
them only to the same host; a probe endpoint has no reason to redirect).

Exit status, by default (``--exit-codes docker``): 0 when the target passes, 1 for anything
else: a failing answer, no answer (a refused connection, a timeout, a host name that does not
resolve, a connection reset or an answer in another protocol), and a usage error (one line on
stderr, ``healthprobe probe: error: <reason>``) such as a malformed URL, header or option. A
Docker ``HEALTHCHECK`` command has exit statuses 0 (healthy) and 1 (unhealthy) only: "exit
status 2 is reserved, do not use" (Dockerfile reference, ``HEALTHCHECK``), hence the one 1.
``--exit-codes distinct`` tells the failures apart, for scripts: 0 the target passes; 1 it
answered and failed (an HTTP status outside 200-399, a gRPC answer other than ``SERVING`` or
an error status its server sent); 2 a usage error, a missing ``grpc`` extra included; 3 no
answer. The kubelet counts any status but 0 as a failure, so both modes suit exec probes.
``--help`` and ``--version`` exit 0.

The exit status of a usage error is the named command's (``probe``'s: as above), even when
the error is found while the arguments are read (``healthprobe probe`` without a URL,
``healthprobe --bogus probe URL``): ``--exit-codes distinct`` is then read from the arguments
before they are parsed, as argparse would read it (``--exit-codes distinct``,
``--exit-codes=distinct`` or an abbreviation argparse accepts, such as ``--exit distinct``;
the last one counts; none after ``--``). When that value is not a mode (the error may be
about it), the status is 1. An error before any known command (``healthprobe``,
``healthprobe porbe URL``) exits 1 too.

Headers follow the kubelet's rules (Kubernetes "Configure Liveness, Readiness and Startup
Probes": ``httpHeaders`` can override ``Host`` and ``User-Agent``): a given ``Host`` or
``User-Agent`` replaces the default one; an empty ``Host`` keeps the default, an empty
``User-Agent`` sends none. Credentials in the URL are refused (the kubelet's ``httpGet`` has
none; send ``--header 'Authorization: ...'``), and no message ever shows them.

A ``grpc://HOST:PORT[/SERVICE]`` URL calls ``grpc.health.v1.Health/Check`` (gRPC docs
"Health Checking") with ``SERVICE`` as the service name (percent-decoded; none is ``""``, the
server as a whole) over plaintext HTTP/2, as the kubelet's ``grpc`` probe does
(``pkg/probe/grpc/grpc.go``; it has no TLS, no headers and no default port): it passes only
when the answer is ``SERVING``; ``NOT_SERVING``, ``UNKNOWN`` and an error status such as
``NOT_FOUND`` (a service the server does not know) or ``UNIMPLEMENTED`` (no health service)
are failing answers, a timeout or a refused connection no answer, each with the kubelet's
one-line message on stderr (:func:`probe_grpc`); grpcio not installed (the ``grpc`` extra)
is a usage error. ``--verbose`` prints ``service healthy`` on stdout for ``SERVING``, and
after a failing answer of healthprobe's own servicer what failed, one line per failing check
or lifecycle reason (its ``healthprobe-reason`` trailer, :data:`healthprobe.grpc.REASON_KEY`),
bounded as for HTTP.

A ``tcp://HOST:PORT`` URL opens a TCP connection within the timeout and closes it, sending
and reading nothing, as the kubelet's ``tcpSocket`` probe does (``pkg/probe/tcp/tcp.go``:
success when the dial succeeds): any failure is no answer, with the Go dialer's message the
kubelet shows on stderr (``dial tcp 127.0.0.1:5432: connect: connection refused``,
``dial tcp 10.0.0.1:5432: i/o timeout``, ``dial tcp: lookup db: no such host``;
:func:`probe_tcp`). ``--verbose`` prints ``connected to HOST:PORT`` on stdout. The URL has a
host (an IPv6 address in brackets) and a port other than 0, and nothing more: no credentials,
path, query or fragment; ``--header`` is a usage error.

``--wait`` probes again until the target passes, for init containers, a Docker Compose
service that others wait for, and scripts:

* ``--timeout S`` bounds the whole command. Without ``--wait`` it is the one attempt's timeout
  (default 1 s, the kubelet's ``timeoutSeconds``); with ``--wait``, the whole wait's (default:
  no limit).
* ``--attempt-timeout S`` (default 1): each attempt's timeout, cut to what is left of
  ``--timeout``.
* ``--period S`` (default 1): attempts start every S seconds, on a fixed grid from the
  first one, without backoff; an attempt that outlasts the period skips the starts it covers.
* ``--stable S`` (default 0): the target must pass every attempt for S seconds, from the
  start of the first passing attempt to the start of the last one (on the grid of
  ``--period``), before the command exits 0; any failure starts the count over. With 0 the
  first passing attempt ends the wait. S must be below ``--timeout``.

``--attempt-timeout``, ``--period`` and ``--stable`` without ``--wait`` are usage errors, as
are a malformed URL or header, found before the first attempt: they are never retried.
While waiting, each change of outcome prints one line on stderr, ``waiting for URL: <line>``,
with the line a single attempt prints (``503 Service Unavailable``, ``dial tcp ...: connect:
connection refused``; a passing line that ``--stable`` holds ends with ``(passing; --stable
S s)``); an outcome repeated prints nothing. When the target passes (for ``--stable``
seconds), the exit status is 0, and ``--verbose`` prints the passing line on stdout. When
the next attempt would start at or after the end of ``--timeout``, the command gives up:
``gave up waiting for URL (--timeout S s): <line>`` on stderr, with the last attempt's line
(with ``--verbose`` followed by what a failing answer says failed), and exit status 1, or
under ``--exit-codes distinct`` the last attempt's: 1 for a failing answer, 3 for no answer,
and 1 for a target passing for less than ``--stable`` seconds.

SIGTERM and SIGINT end the command at once by their default action, so that a shell sees a
process killed by that signal (exit status 143 or 130) and a script stops at a Ctrl-C; a
Ctrl-C prints no traceback. As PID 1 of a container (an init container's command), where the
kernel ignores a signal left to its default action, the command handles SIGTERM itself while
waiting, and exits 143.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import ipaddress
import json
import math
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import typing
import urllib.parse

from . import __version__, _extras, _watchdog

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from types import FrameType
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
    "probe_tcp",
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

#: The kinds of outcome, each the exit status it gives under ``--exit-codes distinct``: the
#: target passed; it answered and failed; a usage error; no answer.
_PASSED, _FAILED, _USAGE, _NO_ANSWER = 0, 1, 2, 3
#: ``--exit-codes``' modes: ``docker`` gives 1 for every kind but ``_PASSED``.
_EXIT_CODES = ("docker", "distinct")
#: The least time Go's dialer gives each address of a host name when the time left allows
#: it (``partialDeadline`` in Go's ``net/dial.go``, ``saneMinimum``).
_DIAL_SANE_MINIMUM = 2.0


class _Answer(typing.NamedTuple):
    ok: bool
    description: str
    content_type: str | None
    body: bytes
    #: False when no HTTP answer came (refused, timeout, reset, not HTTP).
    answered: bool = True


class _Outcome(typing.NamedTuple):
    """What one attempt of the command gave."""

    #: ``_PASSED``, ``_FAILED`` or ``_NO_ANSWER``.
    kind: int
    #: The one line it prints (``503 Service Unavailable``, ``service healthy``).
    line: str
    #: What ``--verbose`` prints after a failing answer's line: already bounded and escaped.
    details: Sequence[str] = ()


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
    # ``timeout`` bounds the whole exchange, as the kubelet's http.Client.Timeout does: a
    # server that trickles its answer is cut off when it runs out.
    with _watchdog.expire_after(connection, timeout) as expired:
        try:
            connection.putrequest("GET", target, skip_host=skip_host, skip_accept_encoding=True)
            for name, value in lines:
                connection.putheader(name, value)
            connection.endheaders()
            expired.watch()
            response = connection.getresponse()
            body = response.read(MAX_BODY_BYTES)
            if expired.is_set():
                raise TimeoutError
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set() or isinstance(exc, TimeoutError):
                reason = "timed out"
            elif isinstance(exc, socket.gaierror):
                reason = f"lookup {host}: no such host"
            else:
                reason = type(exc).__name__
            shown = f"[{host}]" if ":" in host else host
            return _Answer(False, f"no answer from {shown}:{port}: {reason}", None, b"", answered=False)
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
        the kubelet's lines: ``service healthy``,
        ``service unhealthy (responded with "NOT_SERVING")`` (or ``"UNKNOWN"``),
        ``timeout: failed to connect service "HOST:PORT" within 1s``,
        ``timeout: health rpc did not complete within 1s``,
        ``error: failed to connect service at "HOST:PORT": <reason>`` (refused, unresolved,
        not HTTP/2),
        ``error: this server does not implement the grpc health protocol (grpc.health.v1.Health): <details>``,
        or ``error: health rpc probe failed: <CODE>: <details>`` for another status, such as
        ``NOT_FOUND (no service "SERVICE" on this server)``, the protocol's answer for a
        service the server does not know; the server's text escaped and cut to
        :data:`MAX_DETAIL_LINE` characters.

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
    ok, description, reason, _answered = _grpc_answer(url, timeout=timeout)
    return ok, description, reason


def _grpc_modules() -> tuple[Any, Any, Any, str]:
    """``grpc`` (with ``grpc.aio``), ``health_pb2``, ``health_pb2_grpc`` and
    :data:`healthprobe.grpc.REASON_KEY`.

    Raises:
        ImportError: see :func:`probe_grpc`.
    """
    with _extras.requires("grpc", "probing grpc:// URLs"):
        import grpc
        import grpc.aio
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from .grpc import REASON_KEY
    return grpc, health_pb2, health_pb2_grpc, REASON_KEY


def _grpc_answer(url: str, *, timeout: float) -> tuple[bool, str, str, bool]:
    """:func:`_check_grpc`, and whether the server answered: False for a timeout and for a
    connection that failed (the kubelet's ``timeout:`` and ``failed to connect`` lines).

    Raises:
        ValueError, ImportError: see :func:`probe_grpc`.
    """
    target, service = _split_grpc(url)
    grpc, health_pb2, health_pb2_grpc, reason_key = _grpc_modules()

    def reason(trailers: Any) -> str:
        return next((str(value) for key, value in trailers or () if key == reason_key), "")

    async def check() -> tuple[bool, str, str, bool]:
        options = [("grpc.primary_user_agent", USER_AGENT), ("grpc.enable_http_proxy", 0)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            call = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
            try:
                response = await call
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                connected = channel.get_state() is grpc.ChannelConnectivity.READY
                failure = _grpc_failure(grpc, code, exc.details() or "", target, service, timeout, connected)
                answered = not (
                    code == grpc.StatusCode.DEADLINE_EXCEEDED or (code == grpc.StatusCode.UNAVAILABLE and not connected)
                )
                return False, failure, reason(exc.trailing_metadata()), answered
            trailers = await call.trailing_metadata()
        if response.status == health_pb2.HealthCheckResponse.SERVING:
            return True, "service healthy", "", True
        try:
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        except ValueError:  # a value the proto does not define (its enum is open)
            name = str(response.status)
        return False, f'service unhealthy (responded with "{name}")', reason(trailers), True

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


def probe_tcp(url: str, *, timeout: float = 1.0) -> tuple[bool, str]:
    """Open a TCP connection to a ``tcp://HOST:PORT`` URL and close it, as the kubelet's
    ``tcpSocket`` probe does (``pkg/probe/tcp/tcp.go``, ``DoTCPProbe``: success when the dial
    succeeds, and its error message otherwise; Kubernetes "Configure Liveness, Readiness and
    Startup Probes": "if it can establish a connection, the container is considered healthy").

    Nothing is sent or read. The host name is resolved (every address it has is tried in
    turn, as Go's dialer does, each given an equal share of what is left of the timeout but
    at least 2 s when that much is left) and the connection opened within ``timeout`` in all;
    the socket lingers 1 s at most once closed, as the kubelet's ``ProbeDialer``
    (``pkg/probe/dialer_others.go``) sets it.

    Args:
        url: ``tcp://HOST:PORT``: a host name or IP address (an IPv6 address in brackets,
            ``tcp://[::1]:5432``) and a port from 1 to 65535, nothing more.
        timeout: seconds, a finite number > 0, for resolving the host and connecting
            together (the kubelet's ``timeoutSeconds``, default 1).

    Returns:
        ``(success, description)``: ``(True, "connected to HOST:PORT")``, or ``False`` and
        the Go dialer's message, as the kubelet shows it in a pod's events: ``dial tcp
        127.0.0.1:5432: connect: connection refused``, ``dial tcp 10.0.0.1:5432: i/o
        timeout``, ``dial tcp: lookup db: no such host`` (the address of the first attempt
        that failed, an IPv6 one in brackets).

    Raises:
        ValueError: if ``url`` is not such a URL: another scheme, no host or no port, port
            0, credentials, a path (``/`` included), query or fragment, a space, a control or
            non-ASCII character, a malformed port or IPv6 address (one line, without
            credentials); or if ``timeout`` is not a finite number > 0.
    """
    host, port = _split_tcp(url)
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout: expected a finite number of seconds > 0, got {timeout!r}")
    return _check_tcp(host, port, timeout)


def _check_tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """:func:`probe_tcp` for a host and port already checked: ``host`` a host name or IP
    address (an IPv6 one with or without brackets), ``port`` from 1 to 65535, ``timeout``
    seconds > 0. Never raises for what the network does: every failure is a message."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    deadline = time.monotonic() + timeout
    try:
        addresses = _addresses(host, port, timeout)
    except TimeoutError:
        return False, f"dial tcp: lookup {host}: i/o timeout"
    except OSError as exc:  # socket.gaierror
        no_host = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
        return False, f"dial tcp: lookup {host}: {'no such host' if no_host else _go_text(exc)}"
    first = ""
    for index, (family, address) in enumerate(addresses):
        shown = _host_port(str(address[0]), port)
        left = deadline - time.monotonic()
        if left <= 0:
            first = first or f"dial tcp {shown}: i/o timeout"
            break
        share = left / (len(addresses) - index)
        if share < _DIAL_SANE_MINIMUM:
            share = min(left, _DIAL_SANE_MINIMUM)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if sys.platform != "win32":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 1))
            sock.settimeout(share)
            sock.connect(address)
        except TimeoutError:
            failure = f"dial tcp {shown}: i/o timeout"
        except OSError as exc:
            failure = f"dial tcp {shown}: connect: {_go_text(exc)}"
        else:
            return True, f"connected to {_host_port(host, port)}"
        finally:
            sock.close()
        first = first or failure
    return False, first or f"dial tcp: lookup {host}: no such host"


def _addresses(host: str, port: int, timeout: float) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
    """The addresses of ``host``, in the resolver's order, each with its family; a host name
    is resolved in a thread of its own, so that a slow resolver costs ``timeout`` at most.

    Raises:
        socket.gaierror: the name does not resolve.
        TimeoutError: no answer from the resolver within ``timeout``.
    """

    def lookup() -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [(family, tuple(address)) for family, _, _, _, address in found]

    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return lookup()
    result: list[Any] = []

    def resolve() -> None:
        try:
            result.append(lookup())
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=resolve, name="healthprobe-tcp-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        raise TimeoutError(f"no answer from the resolver for {host!r} within {timeout:g} s")
    if isinstance(result[0], OSError):
        raise result[0]
    addresses: list[tuple[socket.AddressFamily, tuple[Any, ...]]] = result[0]
    return addresses


def _go_text(exc: OSError) -> str:
    """An operating system error as Go's ``syscall.Errno`` says it: the C library's text
    with a lowercase first letter (``connection refused``, ``no route to host``)."""
    text = exc.strerror or (os.strerror(exc.errno) if exc.errno else type(exc).__name__)
    return text[:1].lower() + text[1:]


def _host_port(host: str, port: int) -> str:
    """``HOST:PORT``, an IPv6 host in brackets (Go's ``net.JoinHostPort``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
        raise ValueError(f"not an absolute http(s) URL (or grpc://HOST:PORT, tcp://HOST:PORT): {_redacted(url)!r}")
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


def _host_and_port(url: str, scheme: str, form: str, protocol: str) -> tuple[urllib.parse.SplitResult, str, int, str]:
    """``url``'s parts, host, port and the URL as a message may show it, if it is a ``scheme`` URL
    (whose ``form`` a message names) with a host and a port other than 0 (``protocol`` has no
    default port), and holds nothing that no URL may (:func:`_url_parts`).

    Raises:
        ValueError: with a one-line reason, as :func:`_split` says.
    """
    probe = {"grpc": "grpc probe", "tcp": "tcpSocket probe"}[scheme]
    parts, port = _url_parts(url, f"the kubelet's {probe} has no place for them)")
    shown = _redacted(url)
    if parts.scheme != scheme or not parts.hostname:
        raise ValueError(f"not a {form} URL: {shown!r}")
    if port is None:
        raise ValueError(f"not a valid URL: {shown!r} has no port ({protocol} has no default port)")
    if port == 0:
        raise ValueError(f"not a valid URL: {shown!r} has port 0, which nothing can listen on")
    return parts, parts.hostname, port, shown


def _split_grpc(url: str) -> tuple[str, str]:
    """The ``HOST:PORT`` target (an IPv6 host in brackets) and the service name of a
    ``grpc://HOST:PORT[/SERVICE]`` URL: the path after its first ``/``, percent-decoded as
    UTF-8 (``grpc://h:50051/readiness/postgres`` is ``readiness/postgres``; none is ``""``).

    Raises:
        ValueError: as :func:`_split` says for what any URL may not hold, and, with a one-line
            reason, for another scheme, no host or no port (gRPC has none by default), port 0,
            a query or fragment, or a service name that is not UTF-8 once decoded.
    """
    parts, host, port, shown = _host_and_port(url, "grpc", "grpc://HOST:PORT[/SERVICE]", "gRPC")
    if "?" in url or "#" in url:
        raise ValueError(f"not a valid URL: {shown!r}: a grpc:// URL has no query or fragment")
    try:
        service = urllib.parse.unquote(parts.path[1:], errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"not a valid URL: {shown!r}: the service name is not UTF-8 once percent-decoded") from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}", service


def _split_tcp(url: str) -> tuple[str, int]:
    """The host (an IPv6 one without brackets) and port of a ``tcp://HOST:PORT`` URL.

    Raises:
        ValueError: as :func:`_split` says for what any URL may not hold, and, with a one-line
            reason, for another scheme, no host or no port (TCP has none by default), port 0,
            or a path, query or fragment.
    """
    parts, host, port, shown = _host_and_port(url, "tcp", "tcp://HOST:PORT", "TCP")
    if parts.path or "?" in url or "#" in url:
        raise ValueError(f"not a valid URL: {shown!r}: a tcp:// URL has no path, query or fragment")
    return host, port


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
    """``--timeout``'s type (and ``--attempt-timeout``'s, ``--period``'s): a finite number of
    seconds > 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return seconds


def _seconds_or_zero(text: str) -> float:
    """``--stable``'s type: a finite number of seconds >= 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text!r}")
    return seconds


def _shown_argument(argument: str) -> str:
    """An unrecognized command-line argument as an error may show it: an option's name, a URL
    without credentials, and none of any other value (it may be a header's secret value)."""
    if argument.startswith("-"):
        name, eq, _ = argument.partition("=")
        return f"{name}=<value>" if eq else name
    return _redacted(argument) if "://" in argument else "<value>"


def _argparse_status() -> int:
    """argparse's exit status for a usage error: 2."""
    return 2


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, ``PROG: error: REASON``,
    without the usage text argparse prints before them (an exec probe's output lands in the
    kubelet's events), and whose exit status is ``usage_status()``, called when the error
    happens: each command of the ``healthprobe`` command line has its own (argparse's 2
    unless it is given)."""

    def __init__(self, *args: Any, usage_status: Callable[[], int] = _argparse_status, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.usage_status = usage_status

    def error(self, message: str) -> NoReturn:
        message = _CONTROL.sub(lambda match: repr(match.group())[1:-1], message)
        self.exit(self.usage_status(), f"{self.prog}: error: {message}\n")


def _command_index(arguments: Sequence[str]) -> int:
    """The index of the command (``probe``) in the ``healthprobe`` command line's arguments:
    the first that is not an option (the command line's own options, ``--help`` and
    ``--version``, take no value), or the one after ``--``; ``len(arguments)`` if none."""
    for index, argument in enumerate(arguments):
        if argument == "--":
            return index + 1
        if not argument.startswith("-"):
            return index
    return len(arguments)


def _exit_codes_in(arguments: Sequence[str], options: Sequence[str]) -> str:
    """The ``--exit-codes`` mode of a ``healthprobe probe`` command line read without parsing
    it, for a usage error found while parsing it: the value of the last ``--exit-codes``
    among the arguments after the command and before ``--`` (``--exit-codes V``,
    ``--exit-codes=V``, or an abbreviation argparse takes for it: a prefix of no other of
    ``options``, the probe command's option strings). ``docker`` when there is none, or when
    its value is not a mode."""
    codes = "docker"
    rest = iter(arguments[_command_index(arguments) + 1 :])
    for argument in rest:
        if argument == "--":
            break
        name, eq, value = argument.partition("=")
        if not name.startswith("--") or len(name) < 3:
            continue
        if name != "--exit-codes" and [option for option in options if option.startswith(name)] != ["--exit-codes"]:
            continue
        codes = value if eq else next(rest, "")
    return codes if codes in _EXIT_CODES else "docker"


def _status(kind: int, codes: str) -> int:
    """The exit status of an outcome of ``kind`` under ``--exit-codes codes``."""
    return kind if codes == "distinct" or kind == _PASSED else 1


def _attempt_of(url: str, headers: Sequence[tuple[str, str]]) -> Callable[[float], _Outcome]:
    """One attempt at ``url``, a function of its timeout, once the URL (and the headers) are
    found valid for its scheme.

    Raises:
        ValueError: a usage error, with its one-line reason: a malformed URL or header, or a
            header for a URL that sends none.
        ImportError: a grpc:// URL without the ``grpc`` extra.
    """
    scheme = url.partition(":")[0].lower()
    if scheme == "grpc":
        if headers:
            raise ValueError("--header is for http(s) URLs: the kubelet's grpc probe sends no headers")
        _split_grpc(url)
        _grpc_modules()

        def grpc_attempt(timeout: float) -> _Outcome:
            ok, line, reason, answered = _grpc_answer(url, timeout=timeout)
            if ok:
                return _Outcome(_PASSED, line)
            return _Outcome(_FAILED if answered else _NO_ANSWER, line, _bounded(reason.split("; ")) if reason else ())

        return grpc_attempt
    if scheme == "tcp":
        if headers:
            raise ValueError("--header is for http(s) URLs: the kubelet's tcpSocket probe sends nothing")
        host, port = _split_tcp(url)

        def tcp_attempt(timeout: float) -> _Outcome:
            ok, line = _check_tcp(host, port, timeout)
            return _Outcome(_PASSED if ok else _NO_ANSWER, line)

        return tcp_attempt
    _split(url)
    _request_headers(headers)

    def http_attempt(timeout: float) -> _Outcome:
        answer = _get(url, timeout=timeout, headers=headers)
        if answer.ok:
            return _Outcome(_PASSED, answer.description)
        if not answer.answered:
            return _Outcome(_NO_ANSWER, answer.description)
        return _Outcome(_FAILED, answer.description, failing_lines(answer.body, answer.content_type))

    return http_attempt


def _print_failure(outcome: _Outcome, line: str, verbose: bool) -> None:
    """``line`` on stderr, then with ``verbose`` what ``outcome`` says failed."""
    print(line, file=sys.stderr, flush=True)
    if verbose:
        for detail in outcome.details:
            print(detail, file=sys.stderr)


class _Wait(typing.NamedTuple):
    """``--wait``'s settings, in seconds."""

    #: The whole wait's bound, ``math.inf`` for none.
    timeout: float
    attempt_timeout: float
    period: float
    stable: float


def _wait(url: str, attempt: Callable[[float], _Outcome], wait: _Wait, *, verbose: bool, codes: str) -> int:
    """Run ``attempt`` every ``wait.period`` seconds until it passes for ``wait.stable``
    seconds or the next start would be at or after ``wait.timeout``; print what the module
    docstring says and return the exit status.

    Attempts start on a grid, ``wait.period`` apart from the first one's start; how long the
    target has passed is measured on that grid, from the start of the first passing attempt
    to the start of the current one (the clock's jitter cannot then cost a period more)."""
    started = time.monotonic()
    deadline = started + wait.timeout
    shown = None
    tick = 0  # the current attempt's start on the grid, in periods from the first one's
    first_pass: int | None = None  # the start of the first passing attempt of this run of passes
    passed = 0.0  # seconds the target has passed, on the grid
    outcome: _Outcome | None = None
    while True:
        left = deadline - time.monotonic() if outcome is not None else wait.timeout
        if left <= 0:
            break
        outcome = attempt(min(wait.attempt_timeout, left))
        ended = time.monotonic()
        if outcome.kind == _PASSED:
            first_pass = tick if first_pass is None else first_pass
            passed = (tick - first_pass) * wait.period
            if passed >= wait.stable - 1e-9:
                if verbose:
                    print(outcome.line)
                return 0
        else:
            first_pass = None
        if outcome.line != shown:  # a change of outcome: one line
            shown = outcome.line
            held = f" (passing; --stable {wait.stable:g} s)" if outcome.kind == _PASSED else ""
            print(f"waiting for {url}: {outcome.line}{held}", file=sys.stderr, flush=True)
        tick = max(tick + 1, math.floor((ended - started) / wait.period) + 1)  # the next start after this end
        upcoming = started + tick * wait.period
        if upcoming >= deadline:
            break
        time.sleep(max(0.0, upcoming - time.monotonic()))
    assert outcome is not None  # the first attempt always runs
    gave_up = f"gave up waiting for {url} (--timeout {wait.timeout:g} s): {outcome.line}"
    if outcome.kind == _PASSED:
        print(f"{gave_up}, passing for only {passed:g} s of --stable {wait.stable:g} s", file=sys.stderr, flush=True)
        return 1
    _print_failure(outcome, gave_up, verbose)
    return _status(outcome.kind, codes)


@contextlib.contextmanager
def _terminable() -> Iterator[None]:
    """While the command waits as PID 1 of a container, where the kernel ignores a SIGTERM
    left to its default action: a SIGTERM handler that ends the command with exit status
    143. Elsewhere (or with a handler already set, or off the main thread) nothing changes."""
    if (
        os.getpid() != 1
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _killed_by_sigint() -> int:
    """End the process as SIGINT's default action does, so that a shell running it sees a
    process killed by SIGINT and stops its script (Python does so for a ``KeyboardInterrupt``
    nothing caught, after printing its traceback); where that does not end it (PID 1, a
    thread other than the main one), return 130, the status a shell gives such a process."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return 128 + signal.SIGINT


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring).

    A Ctrl-C (``KeyboardInterrupt``) ends the process as SIGINT's default action does,
    without a traceback.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    parsed: list[argparse.Namespace] = []
    probe_options: list[str] = []

    def command_usage_status() -> int:
        # An error of the command line itself takes the status of the command it names.
        named = arguments[_command_index(arguments) : _command_index(arguments) + 1]
        command = choices.get(named[0]) if named else None
        return command.usage_status() if isinstance(command, _Parser) else 1

    def probe_usage_status() -> int:
        codes = parsed[0].exit_codes if parsed else _exit_codes_in(arguments, probe_options)
        return _status(_USAGE, codes)

    parser = _Parser(prog="healthprobe", description=__doc__.split("\n\n")[0], usage_status=command_usage_status)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    choices: Mapping[str, argparse.ArgumentParser] = commands.choices
    one = commands.add_parser(
        "probe",
        help=(
            "GET an http(s) URL (exit 0 for a 200-399 answer), Check a grpc:// one (exit 0 for SERVING) "
            "or connect to a tcp:// one; else 1"
        ),
        usage_status=probe_usage_status,
    )
    one.add_argument("url", help="http(s)://HOST[:PORT]/PATH, grpc://HOST:PORT[/SERVICE] or tcp://HOST:PORT")
    options = [
        one.add_argument(
            "--timeout",
            type=_seconds,
            default=None,
            help="seconds: the attempt's (default 1, the kubelet's); with --wait, the whole wait's (default: no limit)",
        ),
        one.add_argument(
            "--header",
            type=_header,
            action="append",
            default=[],
            help="'Name: value', repeatable; a Host or User-Agent replaces the default (http(s) only)",
        ),
        one.add_argument(
            "--verbose",
            "-v",
            action="store_true",
            help="print the passing line (grpc: the answer); for a failing answer also what it says failed",
        ),
        one.add_argument(
            "--wait",
            action="store_true",
            help="probe every --period seconds until the target passes (for --stable seconds), within --timeout",
        ),
        one.add_argument(
            "--attempt-timeout",
            type=_seconds,
            default=None,
            help="with --wait: seconds for each attempt (default 1), cut to what is left of --timeout",
        ),
        one.add_argument(
            "--period",
            type=_seconds,
            default=None,
            help="with --wait: seconds from one attempt's start to the next one's (default 1)",
        ),
        one.add_argument(
            "--stable",
            type=_seconds_or_zero,
            default=None,
            help="with --wait: seconds the target must keep passing before the command exits 0 (default 0)",
        ),
        one.add_argument(
            "--exit-codes",
            choices=_EXIT_CODES,
            default="docker",
            help="docker (default): 1 for every failure; distinct: 1 a failing answer, 2 a usage error, 3 no answer",
        ),
    ]
    probe_options += ["-h", "--help", *(name for action in options for name in action.option_strings)]
    from . import kubelet

    simulator = commands.add_parser(
        "kubelet",
        help="simulate the kubelet's probes of a manifest against a local process (exit 0 unless it is killed)",
        description=kubelet.DESCRIPTION,
    )
    kubelet.add_arguments(simulator)
    try:
        args, extra = parser.parse_known_args(arguments)
        parsed.append(args)
        if extra:
            choices[args.command].error(
                "unrecognized arguments: " + " ".join(_shown_argument(argument) for argument in extra)
            )
        if args.command == "kubelet":
            return kubelet.run_command(args, simulator)
        return _probe(args, one)
    except KeyboardInterrupt:
        return _killed_by_sigint()


def _probe(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``healthprobe probe`` with its parsed arguments; usage errors go to ``parser``."""
    if not args.wait:
        for name in ("attempt_timeout", "period", "stable"):
            if getattr(args, name) is not None:
                parser.error(f"--{name.replace('_', '-')} is for --wait: without it there is one attempt")
    try:
        attempt = _attempt_of(args.url, args.header)
    except (ValueError, ImportError) as exc:  # a malformed URL or header, a missing extra: on one line
        parser.error(str(exc))
    if not args.wait:
        outcome = attempt(1.0 if args.timeout is None else args.timeout)
        if outcome.kind == _PASSED:
            if args.verbose:
                print(outcome.line)
        else:
            _print_failure(outcome, outcome.line, args.verbose)
        return _status(outcome.kind, args.exit_codes)
    wait = _Wait(
        timeout=math.inf if args.timeout is None else args.timeout,
        attempt_timeout=1.0 if args.attempt_timeout is None else args.attempt_timeout,
        period=1.0 if args.period is None else args.period,
        stable=0.0 if args.stable is None else args.stable,
    )
    if wait.stable >= wait.timeout:
        parser.error(f"--stable {wait.stable:g} cannot be reached within --timeout {wait.timeout:g}")
    with _terminable():
        return _wait(args.url, attempt, wait, verbose=args.verbose, codes=args.exit_codes)


if __name__ == "__main__":  # pragma: no cover - python -m healthprobe.cli
    sys.exit(main())
