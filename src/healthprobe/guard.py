"""Guarded details: who may see what the checks say, change the rotation and dump the threads.

A :class:`Guard`, given to the endpoints as ``guard=`` (an endpoint option of both adapters),
limits to a token and/or source networks:

* the **details** of probe answers: ``?verbose``, the check list of JSON, the per-check
  paths' lines and what checks wrote (``expose_output``). The plain status (the status code,
  and ``ok`` or the closing ``<probe>z check failed`` line with the operator's lifecycle
  reasons) stays open to everyone, so the kubelet probes without a token; a request that is
  not allowed gets the plain answer with the same status code, marked by the header
  ``X-Healthprobe-Details: withheld``, never a 401 or 403. What is withheld is bodies:
  the status code of a per-check path (``/readyz/<check>``) is plain status, so whether a
  guessed check name exists (``404``) and passes is not hidden;
* the **admin request** on ``rotation_path`` (a token is required to enable it);
* the **thread dump** on ``threads_path``.

The client address is the direct peer (ASGI ``scope["client"]``, WSGI ``REMOTE_ADDR``).
``X-Forwarded-For`` and ``Forwarded`` (RFC 7239) are ignored unless the peer is in
``trusted_proxies``: then the header the proxy sets is read from the right, skipping
trusted proxies, and the first address that is not one is the client (the rule of
Werkzeug's ``ProxyFix`` and of RFC 7239 section 8.1: only the hops added by one's own
proxies can be believed). Anything that does not parse makes the client unknown, which no
network allows.

This module is part of the core and imports no web framework: Werkzeug, whose ``ProxyFix``
it follows, has no parser of RFC 7239 ``Forwarded`` either, so the small one here
implements the grammar of RFC 7239 section 4 and the node names of section 6.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import re
import sys
import threading
import traceback
import typing

from . import render as _render

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["PROXY_HEADERS", "Guard", "Verdict", "forwarded_for", "thread_dump"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The headers a trusted proxy may name the client in.
PROXY_HEADERS = ("x-forwarded-for", "forwarded")
#: Most hops read from a proxy header; a longer chain makes the client unknown.
_MOST_HOPS = 32
#: RFC 9110 section 5.6.2 token, and section 5.6.4 quoted-string (no CR or LF).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR = re.compile(rf"[ \t]*({_TOKEN})=({_TOKEN}|\"(?:[^\"\\\r\n]|\\[^\r\n])*\")[ \t]*")
_ESCAPE = re.compile(r"\\(.)")
#: A header name (RFC 9110 section 5.1: a token).
_HEADER_NAME = re.compile(_TOKEN)
#: What a token may hold: visible ASCII without spaces (RFC 6750 section 2.1 ``b64token``
#: and any header value's visible characters).
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


class Verdict(enum.Enum):
    """What a :class:`Guard` says of a request."""

    #: Allowed: the token matches (if one is required) and the client is in a network (if
    #: networks are given).
    ALLOWED = "allowed"
    #: A token is required and the request carries none.
    NO_TOKEN = "no token"
    #: A token is required and the request carries another one.
    WRONG_TOKEN = "wrong token"
    #: The client address is not in the allowed networks, or is unknown.
    NETWORK = "network"


def _networks(what: str, values: Iterable[str | _Network] | None) -> tuple[_Network, ...]:
    if values is None:
        return ()
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{what} must be a list of networks (['10.0.0.0/8']), got {type(values).__name__}")
    found = []
    for value in values:
        if not isinstance(value, (str, ipaddress.IPv4Network, ipaddress.IPv6Network)):
            raise TypeError(f"{what}: a network is a str or an ipaddress network, got {type(value).__name__}")
        try:
            found.append(ipaddress.ip_network(value))
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
    return tuple(found)


def _address(text: str | None) -> _Address | None:
    """An address as a peer or a proxy header gives it (``1.2.3.4``, ``1.2.3.4:80``,
    ``[::1]:80``, ``::1``), IPv4-mapped IPv6 taken as IPv4; ``None`` when it is not one."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else "x"
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_for(value: str) -> list[str | None] | None:
    """The ``for`` parameter of each element of a ``Forwarded`` header (RFC 7239 section 4),
    first hop first.

    Args:
        value: the header's value (several header fields joined by ``,``).

    Returns:
        One entry per element: its ``for`` value unquoted (``"192.0.2.60"``,
        ``"[2001:db8::17]:4711"``, ``"unknown"``), or ``None`` for an element without one;
        empty elements are skipped (RFC 9110 section 5.6.1). ``None`` for a header that
        does not follow the grammar: a pair that is not ``token=token`` or
        ``token="quoted string"``, or a parameter given twice in one element.
    """
    elements: list[dict[str, str]] = [{}]
    pos, end = 0, len(value)
    while pos < end:
        char = value[pos]
        if char in " \t;":
            pos += 1
            continue
        if char == ",":
            elements.append({})
            pos += 1
            continue
        match = _PAIR.match(value, pos)
        if match is None:
            return None
        name, raw = match[1].lower(), match[2]
        if raw.startswith('"'):
            raw = _ESCAPE.sub(r"\1", raw[1:-1])
        if name in elements[-1]:
            return None
        elements[-1][name] = raw
        pos = match.end()
        if pos < end and value[pos] not in ",;":
            return None
    return [element.get("for") for element in elements if element]


class Guard:
    """Who may see the details of probe answers, send the admin request and read the thread
    dump: a token, source networks, or both (then both must pass).

    Args:
        token: the secret a request must carry, or ``None`` for none. In the
            ``Authorization`` header (the default ``header``) it is sent as
            ``Bearer <token>`` (RFC 6750 section 2.1; the scheme is case-insensitive);
            in another header, as the whole value. Compared in constant time
            (:func:`hmac.compare_digest`); never logged nor shown, also not by ``repr``.
            Take it from the environment or a mounted secret
            (``token=os.environ["HEALTH_TOKEN"]``); surrounding whitespace is stripped (a
            Secret mounted as a file often ends with a newline).
        networks: the networks a client must come from (``["10.0.0.0/8", "::1/128"]``,
            strings or :mod:`ipaddress` networks), or ``None`` for any. An IPv4-mapped IPv6
            peer (``::ffff:10.1.2.3``) counts as its IPv4 address.
        trusted_proxies: the networks of your own proxies (load balancer, ingress): only
            when the direct peer is in one is ``proxy_header`` believed. Default none: the
            headers are ignored, so a client cannot name itself an allowed address.
        proxy_header: the header your proxies set: ``"x-forwarded-for"`` (the default;
            HAProxy's ``option forwardfor``, nginx's ``$proxy_add_x_forwarded_for``) or
            ``"forwarded"`` (RFC 7239). Only that one is read: a client could send the other
            through a proxy that does not touch it.
        header: the header carrying the token, default ``"authorization"``.
        rotation_path: the path of the admin request that takes the instance out of
            rotation and back (``"/admin/rotation"``), or ``None`` (the default) for none.
            Needs a ``token``.
        threads_path: the path of the thread dump (``"/debug/threads"``), or ``None`` (the
            default) for none.

    Raises:
        TypeError: an argument of the wrong type (a single network as a str instead of a
            list).
        ValueError: neither ``token`` nor ``networks``; an empty token or one with a space
            or a control character; a malformed network (host bits set: ``10.0.0.1/8``);
            an unknown ``proxy_header``; a ``header`` that is not a header name; a
            ``rotation_path`` without a ``token``. The paths are checked by the endpoints.
    """

    __slots__ = (
        "_token",
        "header",
        "networks",
        "proxy_header",
        "rotation_path",
        "threads_path",
        "trusted_proxies",
    )

    def __init__(
        self,
        token: str | None = None,
        *,
        networks: Iterable[str | _Network] | None = None,
        trusted_proxies: Iterable[str | _Network] | None = None,
        proxy_header: str = "x-forwarded-for",
        header: str = "authorization",
        rotation_path: str | None = None,
        threads_path: str | None = None,
    ) -> None:
        if token is not None:
            if not isinstance(token, str):
                raise TypeError(f"token must be a str or None, got {type(token).__name__}")
            token = token.strip()  # a Secret mounted as a file ends with a newline
            if not _TOKEN_CHARS.fullmatch(token):
                raise ValueError("token must be non-empty visible ASCII without spaces")
        if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
            raise ValueError("header must be a header name, such as 'authorization'")
        if proxy_header not in PROXY_HEADERS:
            raise ValueError(f"proxy_header must be 'x-forwarded-for' or 'forwarded', got {proxy_header!r}")
        for what, path in (("rotation_path", rotation_path), ("threads_path", threads_path)):
            if path is not None and not isinstance(path, str):
                raise TypeError(f"{what} must be a str or None, got {type(path).__name__}")
        self._token = None if token is None else token.encode()
        #: The allowed networks (empty: any).
        self.networks = _networks("networks", networks)
        if self._token is None and not self.networks:
            raise ValueError("a Guard needs a token, networks, or both")
        if rotation_path is not None and self._token is None:
            raise ValueError("rotation_path needs a token: the admin request is only served to a token")
        #: The networks whose requests' ``proxy_header`` is believed.
        self.trusted_proxies = _networks("trusted_proxies", trusted_proxies)
        #: The header the proxies set, lower-case.
        self.proxy_header = proxy_header
        #: The header carrying the token, lower-case.
        self.header = header.lower()
        #: The admin request's path, or ``None``.
        self.rotation_path = rotation_path
        #: The thread dump's path, or ``None``.
        self.threads_path = threads_path

    def __repr__(self) -> str:
        token = "None" if self._token is None else "'***'"
        networks = [str(n) for n in self.networks] or None
        return (
            f"Guard(token={token}, networks={networks}, trusted_proxies={[str(n) for n in self.trusted_proxies]}, "
            f"proxy_header={self.proxy_header!r}, header={self.header!r}, rotation_path={self.rotation_path!r}, "
            f"threads_path={self.threads_path!r})"
        )

    @property
    def has_token(self) -> bool:
        """Whether a token is required."""
        return self._token is not None

    def client(self, peer: str | None, header: Callable[[str], str | None]) -> _Address | None:
        """The client's address: the peer's, or, when the peer is a trusted proxy, the
        right-most address of ``proxy_header`` that is not a trusted proxy (the left-most
        when all are).

        Args:
            peer: the direct peer's address (ASGI ``scope["client"][0]``, WSGI
                ``REMOTE_ADDR``), or ``None`` (a unix socket).
            header: the value of a request header by lower-case name (several fields joined
                by ``,``), or ``None``.

        Returns:
            The address, or ``None`` when it is unknown: no peer address, or a trusted
            peer's header missing, malformed, longer than 32 hops or naming an ``unknown``
            or obfuscated node (RFC 7239 section 6).
        """
        address = _address(peer)
        if address is None or not self._trusted(address):
            return address
        value = header(self.proxy_header)
        if value is None:
            return None
        hops = forwarded_for(value) if self.proxy_header == "forwarded" else value.split(",")
        if not hops or len(hops) > _MOST_HOPS:
            return None
        for hop in reversed(hops):
            found = _address(hop)
            if found is None:
                return None
            address = found
            if not self._trusted(found):
                return found
        return address

    def verdict(self, peer: str | None, header: Callable[[str], str | None]) -> Verdict:
        """Whether a request passes: its token first, then its client's network.

        Args:
            peer, header: as :meth:`client` takes them.
        """
        if self._token is not None:
            value = header(self.header)
            if value is None:
                return Verdict.NO_TOKEN
            value = value.strip()
            if self.header == "authorization":
                scheme, _, value = value.partition(" ")
                if scheme.lower() != "bearer":
                    return Verdict.NO_TOKEN
                value = value.strip()
            if not hmac.compare_digest(value.encode("utf-8", "replace"), self._token):
                return Verdict.WRONG_TOKEN
        if self.networks:
            client = self.client(peer, header)
            if client is None or not any(client in network for network in self.networks):
                return Verdict.NETWORK
        return Verdict.ALLOWED

    def _trusted(self, address: _Address) -> bool:
        return any(address in network for network in self.trusted_proxies)


def thread_dump() -> str:
    """Every thread's name, ident, daemon flag and stack, as text: for finding what holds a
    sync worker (the same as ``py-spy dump`` without the tool, from
    :func:`sys._current_frames` and :func:`traceback.format_stack`).

    Returns:
        One block per running thread, the main thread first, each a line ``Thread "<name>" ident=<n>
        daemon=<True|False>`` (``daemon=?`` for a thread not started by :mod:`threading`)
        then the stack, most recent call last, then a blank line. Thread names are escaped
        onto their line.
    """
    frames = sys._current_frames()
    threads = {thread.ident: thread for thread in threading.enumerate()}
    # The main thread first, then the others as threading lists them, then any thread that
    # threading does not know (one started by C code).
    order = sorted(frames, key=lambda ident: (threads.get(ident) is not threading.main_thread(), ident not in threads))
    blocks = []
    for ident in order:
        frame = frames[ident]
        thread = threads.get(ident)
        name = _render.one_line(thread.name) if thread is not None else "(not started by threading)"
        daemon = thread.daemon if thread is not None else "?"
        stack = "".join(traceback.format_stack(frame))
        blocks.append(f'Thread "{name}" ident={ident} daemon={daemon}\n{stack}')
    return "\n".join(blocks)
