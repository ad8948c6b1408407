"""healthprobe's own threads, started so that signals reach the main thread.

Python runs signal handlers in the main thread only, but the kernel may deliver a
process-directed signal (``SIGTERM`` from the kubelet, ``SIGINT``) to any thread that does not
block it. Delivered to another thread, the handler waits until the main thread next runs
Python code: a worker whose main thread sleeps in ``time.sleep(30)``, or blocks in a C call,
would start its graceful shutdown late by that long. Every thread healthprobe starts
therefore blocks the asynchronous signals (``pthread_sigmask``, POSIX; signal(7): "A
process-directed signal may be delivered to any one of the threads that does not currently
have the signal blocked"), so the kernel picks the main thread. Synchronous signals a fault
raises in the thread itself (``SIGSEGV``, ``SIGBUS``, ``SIGFPE``, ``SIGILL``...) stay
unblocked.

A process started from such a thread inherits its signal mask (fork(2), execve(2)): a sync
check that runs a subprocess gives it these signals blocked. ``subprocess.run(..., timeout=)``
ends a child with ``SIGKILL``, which no mask holds back.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: Left unblocked: the signals a thread raises on itself by what it executes (blocking them
#: would turn a fault into undefined behaviour, sigprocmask(2)), SIGPIPE (ignored by Python;
#: blocked, it would stay pending in the thread instead of being discarded), and the two no
#: process can block.
_LEFT_UNBLOCKED = frozenset(
    {"SIGABRT", "SIGBUS", "SIGFPE", "SIGILL", "SIGKILL", "SIGPIPE", "SIGSEGV", "SIGSTOP", "SIGSYS", "SIGTRAP"}
)

if hasattr(signal, "pthread_sigmask"):
    BLOCKED: frozenset[signal.Signals] = frozenset(
        s for s in signal.valid_signals() if isinstance(s, signal.Signals) and s.name not in _LEFT_UNBLOCKED
    )
else:  # Windows: no per-thread masks; handlers run in the main thread regardless
    BLOCKED = frozenset()


def start(target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
    """Start a daemon thread running ``target(*args)`` with :data:`BLOCKED` blocked in it.

    Args:
        target: what the thread runs.
        *args: its positional arguments.
        name: the thread's name (shown in thread dumps and logs).

    Returns:
        The started :class:`threading.Thread`.
    """
    return start_thread(threading.Thread(target=target, args=args, name=name, daemon=True))


def start_thread(thread: threading.Thread) -> threading.Thread:
    """Start ``thread`` (not yet started) with :data:`BLOCKED` blocked in it; returns it."""
    if not BLOCKED:
        thread.start()
        return thread
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)  # inherited by the new thread
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread
