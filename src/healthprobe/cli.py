"""The ``healthprobe`` command: probe an HTTP endpoint the way the kubelet does, for
``exec`` probes and Docker ``HEALTHCHECK`` in images that have no curl or wget.

Usage::

    healthprobe probe http://127.0.0.1:8080/readyz [--timeout 1] [--header 'Name: value'] [--verbose]

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
"""

from __future__ import annotations

import argparse
import http.client
import math
import re
import socket
import sys
import urllib.parse
from collections.abc import Sequence
from typing import NoReturn

from . import __version__

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
        description is the status line, or why no answer came.

    Raises:
        ValueError: if ``url`` is not an absolute http(s) URL: no ``http``/``https`` scheme
            or host, a space, a control character or a non-ASCII character in it, a
            malformed port or IPv6 address, port 0, or credentials (``user:password@``); or
            if a header name is not a token (RFC 9110 section 5.6.2), a value has a control
            character other than HTAB (section 5.5), or ``Host`` or ``User-Agent`` is given
            more than once. The message is one line and shows neither the URL's credentials
            nor a header's value.
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
        response.read(64 * 1024)
    except (OSError, http.client.HTTPException) as exc:
        reason = "timed out" if isinstance(exc, (TimeoutError, socket.timeout)) else type(exc).__name__
        shown = f"[{host}]" if ":" in host else host
        return False, f"no answer from {shown}:{port}: {reason}"
    finally:
        connection.close()
    return 200 <= response.status < 400, f"{response.status} {response.reason}"


def _split(url: str) -> tuple[urllib.parse.SplitResult, str, int]:
    """``url`` split into its parts, host and port (the scheme's default if none is given),
    if it is an absolute http(s) URL without credentials and with a port other than 0.

    Raises:
        ValueError: with a one-line reason (the URL is shown by ``repr``, so a control
            character in it cannot break the line, and without its credentials).
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
        raise ValueError(
            f"not a valid URL: {shown!r}: credentials in a URL are not sent (the kubelet's httpGet "
            "has no place for them); send them with --header 'Authorization: ...'"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {shown!r}")
    if port == 0:
        raise ValueError(f"not a valid URL: {shown!r} has port 0, which nothing can listen on")
    return parts, parts.hostname, port or (443 if parts.scheme == "https" else 80)


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
    one = commands.add_parser("probe", help="GET a URL; exit 0 for a 200-399 answer, else 1")
    one.add_argument("url")
    one.add_argument("--timeout", type=_seconds, default=1.0, help="seconds (default 1, the kubelet's)")
    one.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        help="'Name: value', repeatable; a Host or User-Agent replaces the default",
    )
    one.add_argument("--verbose", "-v", action="store_true", help="print the status line")
    args, extra = parser.parse_known_args(argv)
    if extra:
        one.error("unrecognized arguments: " + " ".join(_shown_argument(argument) for argument in extra))
    try:
        ok, description = probe(args.url, timeout=args.timeout, headers=args.header)
    except ValueError as exc:  # a malformed URL or header: a usage error, on one line
        one.error(str(exc))
    if args.verbose or not ok:
        print(description, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover - python -m healthprobe.cli
    sys.exit(main())
