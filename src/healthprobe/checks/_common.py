"""Helpers shared by the built-in checks: secret redaction, failure results, timing."""

from __future__ import annotations

import re
import time
import urllib.parse
from typing import TYPE_CHECKING

import anyio

from .._types import CheckResult, Status

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Iterable

#: What a secret is replaced with.
MASK = "***"

# ``scheme://userinfo@`` (RFC 3986 section 3.2.1): the whole userinfo is withheld, since
# tokens are often passed as the user name (``https://TOKEN@host``).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s?#]+)@")
# ``password=...`` in libpq keyword/value strings, query strings and key=value messages.
_SECRET_PARAM = re.compile(
    r"(?i)(?P<key>\b(?:password|passwd|pwd|pass|sslpassword|secret|client_secret|token|access_token|"
    r"auth_token|api_key|apikey|api-key|key|signature|sig|auth)\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\"]+)"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Withhold secrets from ``text``.

    Removes the userinfo of every URL (``postgresql://user:pw@host`` becomes
    ``postgresql://***@host``), the value of every ``password=``/``token=``-like parameter
    (libpq keyword/value DSNs and URL query strings), and every literal occurrence of the
    given ``secrets`` that stands alone, not inside a longer word (plain and
    percent-encoded, in any letter case).

    Args:
        text: any message, DSN or URL.
        secrets: literal values known to be secret (passwords, tokens, header values).

    Returns:
        The text with each secret replaced by ``***``.
    """
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _SECRET_PARAM.sub(lambda m: f"{m['key']}{MASK}", text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            # Only where it stands alone (not inside a longer word: a password "postgres" must
            # not turn "postgresql://" into "***ql://", which would give it away), and in
            # any letter case (servers echo identifiers folded: PostgreSQL lower-cases them).
            pattern = rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])"
            text = re.sub(pattern, MASK, text, flags=re.IGNORECASE)
    return text


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL: the password of its userinfo, and the values of its query
    parameters whose names look secret (``password``, ``token``, ``key`` ...). A user name
    is not replaced literally everywhere (``postgres`` is also a word of the scheme); the
    userinfo pattern of :func:`redact` removes it from URLs."""
    secrets: list[str] = []
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return secrets
    try:
        password = parts.password
    except ValueError:
        password = None
    if password:
        secrets.extend((password, urllib.parse.unquote(password)))
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=False):
        if value and _SECRET_PARAM.match(f"{key}=x"):
            secrets.append(value)
    return secrets


def failure(exc: BaseException, secrets: Iterable[str] = (), *, timeout: float | None = None) -> CheckResult:
    """A ``fail`` result describing ``exc`` with every secret withheld.

    A :class:`TimeoutError` raised by the check's own ``timeout`` is reported as
    ``timed out after <timeout> s``.
    """
    if isinstance(exc, TimeoutError) and timeout is not None:
        return CheckResult(Status.FAIL, output=f"timed out after {timeout:g} s")
    message = str(exc).strip().splitlines()
    first = message[0] if message else ""
    name = type(exc).__name__
    return CheckResult(Status.FAIL, output=redact(f"{name}: {first}" if first else name, secrets))


def deadline(timeout: float | None) -> contextlib.AbstractContextManager[anyio.CancelScope]:
    """``anyio.fail_after(timeout)``, or a scope that never expires when ``timeout`` is None."""
    if timeout is None:
        return anyio.CancelScope()
    return anyio.fail_after(timeout)


def check_timeout(timeout: float | None) -> float | None:
    """Validate an own-timeout argument (``None`` or a positive finite number of seconds)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 or timeout == float("inf"):
        raise ValueError(f"timeout must be a positive finite number of seconds or None, got {timeout!r}")
    return float(timeout)


def elapsed_since(start: float) -> float:
    """Seconds since the monotonic time ``start``, rounded to microseconds."""
    return round(time.monotonic() - start, 6)


def within(value: float, limit: float | None, unit: str, exceeded: str) -> CheckResult:
    """``pass`` while ``value`` is at most ``limit`` (or there is no limit), else ``fail``
    with the ``exceeded`` message; either way ``value`` is the observed value in ``unit``."""
    if limit is not None and value > limit:
        return CheckResult(Status.FAIL, output=exceeded, observed_value=value, observed_unit=unit)
    return CheckResult(Status.PASS, observed_value=value, observed_unit=unit)
