"""What the shutdown coordinator and the server integrations share about signals: a signal's
name for the log, flushing the log before an immediate exit, the validation of a duration,
and the one rule that tells a copy of the first shutdown signal from a second signal
(:class:`RepeatWindow`).

It imports nothing of healthprobe, so that both the core (:mod:`healthprobe.shutdown`) and
:mod:`healthprobe.servers` may import it.
"""

from __future__ import annotations

import logging
import math
import signal

__all__ = ["COPY", "FIRST", "SECOND", "RepeatWindow", "check_seconds", "flush_logs", "signal_name"]

logger = logging.getLogger("healthprobe.shutdown")


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for ``signal.SIGTERM``; ``"signal 42"`` for a number with no name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def flush_logs() -> None:
    """Flush the root logger's and the shutdown logger's handlers (before ``os._exit``, which
    flushes nothing); a handler that fails to is skipped."""
    for handler in logging.getLogger().handlers + logger.handlers:
        try:
            handler.flush()
        except Exception:
            pass


def check_seconds(what: str, value: object) -> float:
    """``value`` as a float number of seconds.

    Args:
        what: the argument's name, for the error message.
        value: the duration given.

    Raises:
        ValueError: ``value`` is not a finite number ``>= 0`` (a bool is not a number here).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


#: What :meth:`RepeatWindow.classify` says of a signal: the first one, which begins the shutdown;
FIRST = "first"
#: a copy of the first (within the window after it), which changes nothing;
COPY = "copy"
#: a second signal (after the window), which ends the process at once.
SECOND = "second"


class RepeatWindow:
    """The rule for the shutdown signals of one process after the first: one that comes
    within ``window`` seconds of the first is a copy of it, not a second signal.

    An init that signals its child's whole process group (dumb-init's default, ``tini -g``)
    gives a worker the signal directly, then its supervisor passes the same one on: the
    worker gets it twice within moments, and must not take the copy for the second signal
    that forces the exit. The shutdown coordinator, healthprobe's uvicorn supervisor and its
    gunicorn master hook all apply this rule.

    Only plain attribute reads and writes: it runs inside signal handlers, which must take
    no lock.

    Args:
        window: seconds after the first signal during which another one is a copy (0: every
            later signal is a second one).

    Attributes:
        window: as given.
        first_at: ``time.monotonic()`` when the first signal came; 0 while none came, and
            after a shutdown that began without a signal (:meth:`begin_without_signal`).
        seen: whether the first signal came, or the shutdown began without one.
    """

    __slots__ = ("first_at", "seen", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self.first_at = 0.0
        self.seen = False

    def classify(self, now: float) -> str:
        """What a signal that comes at ``now`` (``time.monotonic()``) is: :data:`FIRST` (and
        it is recorded as such), :data:`COPY` or :data:`SECOND`."""
        if not self.seen:
            self.seen, self.first_at = True, now
            return FIRST
        if self.first_at and now - self.first_at < self.window:
            return COPY
        return SECOND

    def begin_without_signal(self) -> None:
        """The shutdown began without a signal: any signal from now on is a second one."""
        self.seen = True
