"""In-flight accounting for the shutdown coordinator: the requests, streams and WebSocket
sessions the adapters count (:class:`InFlight`, exported by :mod:`healthprobe.shutdown`),
the requests the server cut, and waiting for them to end during the drain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from . import _threads
from ._timeline import POLL, until

__all__ = ["InFlight", "close_sessions", "wait_empty", "wait_empty_async"]

logger = logging.getLogger("healthprobe.shutdown")


class InFlight:
    """The requests and WebSocket sessions in flight in one process, as the adapters count
    them for :class:`~healthprobe.shutdown.GracefulShutdown` (its
    ``requests_in_flight``), and what the server cut.

    Attributes:
        slots: one item (``None``) per request, stream or session in flight. An adapter
            appends one when a request starts and, ``if slots``, pops one when it ends:
            ``list.append`` and ``list.pop`` are atomic, so counting takes no lock on the
            path every request passes (docs/performance.md). Never replaced.
        sessions: a callable per open WebSocket session that closes it with code 1001
            (the ASGI middleware adds and discards them; called at the drain bound).
        cut: one item per request the server ended unfinished: ``""`` for one it
            cancelled, else the name of the exception that ended it (``"SystemExit"``).
            Appended before the request's slot is dropped, so a drain that sees no request
            in flight sees the cut ones too.
        quick: set by a server integration when the server stops at once on a signal of
            its own (gunicorn's quick shutdown), naming it for the drain's log line;
            ``None`` otherwise. A plain attribute: it may be set from a signal handler.
        backlog: set by a server integration: a callable telling whether connections
            wait in the server's listen backlog (gunicorn sync workers), which are reset
            when the process exits; ``None`` where it cannot be told.
    """

    __slots__ = ("backlog", "cut", "quick", "sessions", "slots")

    def __init__(self) -> None:
        self.slots: list[None] = []
        self.sessions: set[Callable[[], None]] = set()
        self.cut: list[str] = []
        self.quick: str | None = None
        self.backlog: Callable[[], bool] | None = None

    @property
    def count(self) -> int:
        """The number of requests, streams and sessions in flight."""
        return len(self.slots)

    def cut_text(self) -> str:
        """What the server cut, for the log: ``"2 request(s) cancelled by the server
        unfinished"``, ``"1 request(s) ended unfinished by SystemExit"``; ``""`` if nothing."""
        cut = list(self.cut)
        parts = []
        if cancelled := cut.count(""):
            parts.append(f"{cancelled} request(s) cancelled by the server unfinished")
        for name in sorted(set(cut) - {""}):
            parts.append(f"{cut.count(name)} request(s) ended unfinished by {name}")
        return "; ".join(parts)

    def backlog_note(self) -> str:
        """``"; connection(s) ..."`` when the server says connections wait in its listen
        backlog (they are reset when the process exits), else ``""``."""
        waiting = self.backlog
        try:
            if waiting is None or not waiting():
                return ""
        except Exception:  # a listener closed meanwhile: nothing waits in it
            return ""
        return "; connection(s) waiting in the listen backlog are reset unless another worker accepts them"


def wait_empty(in_flight: InFlight, deadline: float) -> None:
    """Return once nothing is in flight, or at ``deadline`` (``time.monotonic()``)."""
    while in_flight.slots and time.monotonic() < deadline:
        time.sleep(POLL)


async def wait_empty_async(in_flight: InFlight, deadline: float) -> None:
    """:func:`wait_empty` for async callers (asyncio or trio)."""
    await until(lambda: not in_flight.slots or time.monotonic() >= deadline)


def close_sessions(in_flight: InFlight, drain_timeout: float, close_wait: float) -> None:
    """At the drain bound, with requests still in flight: close the WebSocket sessions still
    open with code 1001 ("going away", RFC 6455 section 7.4.1) and give them up to
    ``close_wait`` seconds to end. Nothing when no session is open or nothing is in flight.

    Args:
        in_flight: the accounting whose sessions to close.
        drain_timeout: the drain bound reached, in seconds (for the log line).
        close_wait: seconds to wait for the sessions to end.
    """
    if not (in_flight.sessions and in_flight.slots):
        return
    closers = list(in_flight.sessions)
    logger.info(
        "shutdown: drain bound of %.1f s reached; closing %d WebSocket session(s) with code 1001",
        drain_timeout,
        len(closers),
        extra={"phase": "drain", "sessions": len(closers), "drain_timeout": drain_timeout},
    )
    thread: threading.Thread = _threads.start(_close_all, closers, name="healthprobe-sessions")
    end = time.monotonic() + close_wait
    thread.join(close_wait)
    # Wait for these sessions only: a stream still running goes on until the server
    # is released, and waiting for it would take the hooks' time for nothing.
    while any(close in in_flight.sessions for close in closers) and time.monotonic() < end:
        time.sleep(POLL)


def _close_all(closers: list[Callable[[], None]]) -> None:
    for close in closers:
        try:
            close()
        except Exception:  # a session that ended meanwhile, or a loop that is gone
            logger.debug("shutdown: closing a WebSocket session failed", exc_info=True)
