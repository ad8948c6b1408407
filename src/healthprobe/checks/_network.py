"""Network checks: a TCP connect (as the kubelet's ``tcpSocket`` probe) and an HTTP request
(as its ``httpGet`` probe)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import anyio

from .._extras import requires
from .._types import CheckResult, Status
from ._common import check_timeout, deadline, elapsed_since, failure, redact, url_secrets

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    import httpx


class TcpCheck:
    """Async check: open a TCP connection to ``host:port`` and close it at once.

    Created by :func:`tcp`; see there.
    """

    def __init__(self, host: str, port: int, *, timeout: float | None = None) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"port must be an integer from 1 to 65535, got {port!r}")
        self.host = host
        self.port = port
        self.timeout = check_timeout(timeout)

    def __repr__(self) -> str:
        return f"<tcp check {self.host}:{self.port}>"

    async def __call__(self) -> CheckResult:
        start = time.monotonic()
        try:
            with deadline(self.timeout):
                stream = await anyio.connect_tcp(self.host, self.port)
                await stream.aclose()
        except Exception as exc:
            return failure(exc, timeout=self.timeout)
        return CheckResult(Status.PASS, observed_value=elapsed_since(start), observed_unit="s")


def tcp(host: str, port: int, *, timeout: float | None = None) -> TcpCheck:
    """A check that passes when a TCP connection to ``host:port`` can be opened, like the
    kubelet's ``tcpSocket`` probe ("if it can establish a connection, the container is
    considered healthy", Kubernetes "Configure Liveness, Readiness and Startup Probes").

    Args:
        host: host name or IP address.
        port: TCP port, 1 to 65535.
        timeout: optional own deadline in seconds, for calling the check outside a registry;
            inside a registry the check's registered ``timeout`` already bounds each run.

    Returns:
        An async check callable. A run reports the connect latency as its observed value
        (seconds, unit ``"s"``); a refused, unreachable or timed-out connect fails it.

    Raises:
        ValueError: ``port`` is out of range or ``timeout`` is not positive.
    """
    return TcpCheck(host, port, timeout=timeout)


class HttpCheck:
    """Async check: one HTTP request with httpx; created by :func:`http`; see there."""

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        follow_redirects: bool = False,
        expected_status: Iterable[int] | None = None,
        timeout: float | None = None,
        verify: Any = True,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        with requires("http", "healthprobe.checks.http()"):
            import httpx  # noqa: F401  (fail at registration when the ``http`` extra is missing)

        self.url = url
        self.method = method.upper()
        pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
        self.headers = pairs
        self.follow_redirects = bool(follow_redirects)
        self.expected_status = None if expected_status is None else frozenset(expected_status)
        self.timeout = check_timeout(timeout)
        self.verify = verify
        self.client = client
        self._secrets = [*url_secrets(url), *(value for _, value in pairs)]

    def __repr__(self) -> str:
        return f"<http check {self.method} {redact(self.url, self._secrets)}>"

    def _ok(self, status_code: int) -> bool:
        if self.expected_status is not None:
            return status_code in self.expected_status
        return 200 <= status_code < 400

    async def __call__(self) -> CheckResult:
        import httpx

        start = time.monotonic()
        try:
            with deadline(self.timeout):
                if self.client is not None:
                    response = await self._send(self.client)
                else:
                    # No client-side timeout: the registry's deadline (or ``timeout``) cancels.
                    # No proxy from the environment: like the kubelet, probe the target directly.
                    async with httpx.AsyncClient(verify=self.verify, timeout=None, trust_env=False) as client:
                        response = await self._send(client)
        except Exception as exc:
            return failure(exc, self._secrets, timeout=self.timeout)
        latency = elapsed_since(start)
        code = response.status_code
        if self._ok(code):
            return CheckResult(Status.PASS, output=f"HTTP {code}", observed_value=latency, observed_unit="s")
        return CheckResult(Status.FAIL, output=f"HTTP {code}", observed_value=latency, observed_unit="s")

    async def _send(self, client: httpx.AsyncClient) -> httpx.Response:
        request = client.build_request(self.method, self.url, headers=self.headers)
        response = await client.send(request, follow_redirects=self.follow_redirects, stream=True)
        await response.aclose()  # the status line is the answer; the body is not read
        return response


def http(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    follow_redirects: bool = False,
    expected_status: Iterable[int] | None = None,
    timeout: float | None = None,
    verify: Any = True,
    client: httpx.AsyncClient | None = None,
) -> HttpCheck:
    """A check that sends one HTTP request and passes on a success status, counted as the
    kubelet's ``httpGet`` probe counts it: "any code greater than or equal to 200 and less
    than 400 indicates success" (Kubernetes "Configure Liveness, Readiness and Startup
    Probes"). Needs the ``http`` extra (httpx), imported only when the check is created.

    Args:
        url: the URL to request. Its userinfo and secret-looking query values never appear
            in results or logs.
        method: HTTP method (``GET`` by default; ``HEAD`` for a body-free check).
        headers: request headers (a mapping or ``(name, value)`` pairs; duplicates allowed,
            as in the kubelet's ``httpHeaders``). Their values are treated as secrets.
        follow_redirects: follow redirects (not by default: a 3xx answer is a success).
        expected_status: if given, the status codes that pass, instead of 200-399.
        timeout: optional own deadline in seconds, for calling the check outside a registry.
        verify: TLS verification as httpx's ``verify`` (``True``, ``False``, an SSL context).
        client: an ``httpx.AsyncClient`` to reuse (its own timeout, proxy and other settings
            apply); by default each run uses a fresh client that is closed after the run and
            ignores proxy settings from the environment (``HTTP_PROXY`` ...), as the kubelet
            connects to the target directly.

    Returns:
        An async check callable. A run reports the response latency (status line received)
        as its observed value in seconds (unit ``"s"``) and ``HTTP <code>`` as its output.
        A connection error, a timeout or a status outside the accepted set fails it.

    Raises:
        ImportError: httpx is not installed (``pip install 'healthprobe[http]'``).
        ValueError: ``timeout`` is not positive.
    """
    return HttpCheck(
        url,
        method=method,
        headers=headers,
        follow_redirects=follow_redirects,
        expected_status=expected_status,
        timeout=timeout,
        verify=verify,
        client=client,
    )
