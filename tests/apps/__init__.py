"""Apps the tests start as real server processes, and their building blocks.

Kept light (healthprobe and the standard library only, other packages imported where used),
since every server process of the tests imports it: :func:`started_registry` builds the
registries of the tests and of the apps; :func:`plain_apps` is a bare ASGI and WSGI app pair;
:func:`echo_session` the WebSocket echo route; the rest sets up an app's coordinator.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from healthprobe import HealthRegistry
from healthprobe.shutdown import REPEAT_WINDOW, GracefulShutdown

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

#: A check given to :func:`started_registry`: the function, or the function and the
#: keyword arguments of ``HealthRegistry.add_check`` for it.
CheckSpec = Callable[[], Any] | tuple[Callable[[], Any], Mapping[str, Any]]


def started_registry(
    checks: Mapping[str, CheckSpec] | None = None,
    /,
    *,
    started: bool = True,
    check_options: Mapping[str, Any] | None = None,
    **registry_options: Any,
) -> HealthRegistry:
    """A ``HealthRegistry(**registry_options)`` holding ``checks``, marked started.

    Args:
        checks: check name to check function, or to ``(function, add_check keyword
            arguments)``; added in order.
        started: ``False`` leaves the registry in ``starting``.
        check_options: ``add_check`` keyword arguments given to every check (a check's own
            arguments take precedence).
        registry_options: keyword arguments of ``HealthRegistry``.
    """
    registry = HealthRegistry(**registry_options)
    for name, spec in (checks or {}).items():
        func, options = spec if isinstance(spec, tuple) else (spec, {})
        registry.add_check(name, func, **{**(check_options or {}), **options})
    if started:
        registry.mark_started()
    return registry


def plain_apps(
    routes: Mapping[str, Callable[[], bytes]] | None = None,
    *,
    fallback: Callable[[str], bytes] | None = None,
) -> tuple[Callable[..., Awaitable[None]], Callable[..., Iterable[bytes]]]:
    """An ASGI app and a WSGI app without a framework that answer alike: ``/`` with
    ``ok <pid>``, each path of ``routes`` with the bytes its function returns, anything else
    ``404`` ``not found`` (or, with ``fallback``, ``200`` with the bytes it returns for the
    path), all as ``text/plain``. The ASGI app completes the lifespan."""
    extra = dict(routes or {})

    def answer(path: str) -> tuple[int, bytes]:
        if path == "/":
            return 200, f"ok {os.getpid()}".encode()
        if path in extra:
            return 200, extra[path]()
        if fallback is not None:
            return 200, fallback(path)
        return 404, b"not found"

    async def asgi(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        status, body = answer(scope["path"])
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    def wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        status, body = answer(environ.get("PATH_INFO") or "/")
        start_response("200 OK" if status == 200 else "404 Not Found", [("Content-Type", "text/plain")])
        return [body]

    return asgi, wsgi


async def echo_session(websocket: WebSocket) -> int:
    """Accept the WebSocket and answer each text message with ``echo: <text>`` until the
    client closes; returns the close code."""
    from starlette.websockets import WebSocketDisconnect

    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect as exc:
        return exc.code


def show_logs() -> None:
    """Log each process's lines with its pid (the coordinator's from DEBUG on)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    # "shutdown: handlers installed in process N": the tests' sign that a worker is ready.
    logging.getLogger("healthprobe.shutdown").setLevel(logging.DEBUG)


def bounds() -> dict[str, float]:
    """The shutdown bounds of a test app, in seconds, as ``GracefulShutdown``'s keyword
    arguments: from ``HP_DELAY``, ``HP_DRAIN``, ``HP_HOOK_TIMEOUT`` and ``HP_REPEAT_WINDOW``."""
    return {
        "delay": float(os.environ.get("HP_DELAY", "1.0")),
        "drain_timeout": float(os.environ.get("HP_DRAIN", "4.0")),
        "hook_timeout": float(os.environ.get("HP_HOOK_TIMEOUT", "1.0")),
        "repeat_window": repeat_window(),
    }


def guard_options() -> dict[str, Any]:
    """The endpoint option ``guard`` from ``HP_GUARD_TOKEN`` (unset or empty: no guard): a
    :class:`healthprobe.Guard` of that token serving the admin request on
    ``/admin/rotation`` and the thread dump on ``/debug/threads``."""
    token = os.environ.get("HP_GUARD_TOKEN")
    if not token:
        return {}
    from healthprobe import Guard

    return {"guard": Guard(token, rotation_path="/admin/rotation", threads_path="/debug/threads")}


def coordinator(registry: HealthRegistry) -> GracefulShutdown:
    """The coordinator of a test app, its bounds from :func:`bounds`, with :func:`show_logs`."""
    show_logs()
    return GracefulShutdown(registry, **bounds())


def repeat_window() -> float:
    """``HP_REPEAT_WINDOW`` in seconds, else the default :data:`REPEAT_WINDOW`."""
    return float(os.environ.get("HP_REPEAT_WINDOW", REPEAT_WINDOW))


def add_cleanup_sleep(shutdown: GracefulShutdown) -> None:
    """Give ``shutdown`` the tests' ``cleanup_sleep`` hook: it prints ``cleanup_sleep start
    <pid> <time>``, sleeps 0.5 s, then prints ``cleanup_sleep done in <pid>``."""

    def cleanup_sleep() -> None:
        print(f"cleanup_sleep start {os.getpid()} {time.time():.3f}", flush=True)
        time.sleep(0.5)
        print(f"cleanup_sleep done in {os.getpid()}", flush=True)

    shutdown.add_hook(cleanup_sleep)
