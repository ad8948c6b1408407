"""One deadline for a whole HTTP exchange.

``http.client`` applies its ``timeout`` to each socket operation: a server that sends a byte
every half second keeps a one-second request going for as long as it likes. The kubelet's
``http.Client{Timeout}`` bounds the whole exchange, connection, headers and body (Go
``net/http`` documentation, ``Client.Timeout``), and so do the probes here: when the deadline
passes, :func:`expire_after` shuts the connection's socket down, which ends whatever read is
waiting on it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import http.client
    from collections.abc import Iterator

__all__ = ["Deadline", "expire_after"]


class Deadline:
    """What :func:`expire_after` yields: whether the deadline passed, and the socket to cut."""

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        self._connection = connection
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._expired = False

    def watch(self) -> None:
        """Take the connection's socket now that it is connected: ``getresponse`` drops it
        from the connection when the answer will close it, while the answer still reads it."""
        with self._lock:
            self._sock = self._connection.sock
            expired = self._expired
        if expired:
            self._cut()

    def is_set(self) -> bool:
        """Whether the deadline has passed."""
        with self._lock:
            return self._expired

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
        self._cut()

    def _cut(self) -> None:
        sock = self._sock or self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def expire_after(connection: http.client.HTTPConnection, seconds: float) -> Iterator[Deadline]:
    """Within the block, shut ``connection``'s socket down (both ways) once ``seconds`` have
    passed; yields a :class:`Deadline`: call ``watch()`` once the request is sent, and
    ``is_set()`` tells a deadline from a server that closed the connection."""
    deadline = Deadline(connection)
    timer = threading.Timer(seconds, deadline._expire)
    timer.daemon = True
    timer.start()
    try:
        yield deadline
    finally:
        timer.cancel()
