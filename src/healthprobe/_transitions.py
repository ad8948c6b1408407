"""Transition events: a status change of a check, of a probe or of the lifecycle, and the
one thread that hands them to the registry's transition listeners.

A probe never waits for a listener: a change is put on a bounded queue (the oldest dropped
and counted when it is full) and a dispatcher thread, started at the first change with a
listener to hear it, calls the listeners one after the other.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import typing

from . import _threads, _types

if typing.TYPE_CHECKING:
    from ._types import CheckResult

__all__ = [
    "TRANSITION_QUEUE_SIZE",
    "UNKNOWN",
    "Transition",
    "TransitionListener",
    "check_reason",
]

_logger = logging.getLogger("healthprobe")

#: The state of a check or a probe before its first result: its first result is a change
#: from ``unknown``.
UNKNOWN = "unknown"
#: How many transitions wait for the listeners at most; when full, the oldest is dropped.
TRANSITION_QUEUE_SIZE = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """One status change, as a transition listener receives it
    (:meth:`healthprobe.HealthRegistry.add_transition_listener`). Read-only.

    Repeats are never transitions: a check that fails twice in a row changed once.
    """

    #: What changed: ``"check"``, ``"probe"`` or ``"lifecycle"``.
    kind: str
    #: The check's name, the probe's (``"startup"``, ``"readiness"``, ``"liveness"``), or
    #: ``"lifecycle"``.
    name: str
    #: The state before: a status (``"pass"``, ``"warn"``, ``"fail"``) for a check or a probe,
    #: ``"unknown"`` before its first result; a lifecycle state (``"starting"``,
    #: ``"started"``, ``"draining"``, ``"stopped"``) for the lifecycle.
    old: str
    #: The state now, in the same words.
    new: str
    #: Why, as a fixed word (never a message): ``"timeout"`` (a run hit its deadline),
    #: ``"error"`` (a check raised), ``"fail"`` (a check reported ``fail``), ``"warn"``,
    #: ``"recovered"`` (a pass after a warn or a fail), ``"initial"`` (a first pass);
    #: for a probe also ``"lifecycle"`` (readiness failed by the lifecycle), ``"rotation"``
    #: (out of rotation) and ``"not_live"`` (``set_live(False)``); for the lifecycle its new
    #: state's word: ``"started"``, ``"draining"``, ``"stopped"``.
    reason: str
    #: How long the old state lasted, in seconds (for ``unknown``: since the check was
    #: registered, or since the registry was made).
    lasted: float
    #: When the change was seen, in seconds since the Unix epoch.
    at: float
    #: What the check reported (its output, redacted and cut to 500 characters: it may hold
    #: an exception's text) for a check's change, the reasons for a probe's; ``None`` for
    #: none. Logs never show it in a field; :class:`healthprobe.webhook.WebhookPublisher`
    #: sends it only with ``expose_output=True``.
    output: str | None = None


#: A transition listener: called as ``listener(transition)`` on the dispatcher thread.
TransitionListener = typing.Callable[[Transition], None]


def check_reason(previous: CheckResult | None, result: CheckResult) -> str:
    """The reason word of a check's change from ``previous`` (``None``: its first result) to
    ``result``; see :attr:`Transition.reason`."""
    status = result.status
    if status is _types.Status.PASS:
        return "initial" if previous is None else "recovered"
    if status is _types.Status.WARN:
        return "warn"
    if result.timed_out:
        return "timeout"
    if result.error_type is not None and not result.error_type.startswith("healthprobe."):
        return "error"
    return "fail"


class Dispatcher:
    """The bounded queue of transitions and the thread that delivers them to listeners.

    :meth:`put` never blocks beyond a short lock and never calls a listener; the thread is
    started at the first :meth:`put` (again after :meth:`close` or a fork), and listeners are
    called on it in the order the changes were seen.
    """

    def __init__(self, listeners: list[TransitionListener], size: int = TRANSITION_QUEUE_SIZE) -> None:
        self._listeners = listeners
        self._size = size
        self._queue: collections.deque[Transition] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closing = False
        self._dropping = False
        #: Transitions dropped because the queue was full (the oldest first).
        self.dropped = 0

    def put(self, transition: Transition) -> None:
        """Queue ``transition`` for the listeners; drop the oldest when the queue is full."""
        burst = False
        with self._cond:
            if len(self._queue) >= self._size:
                self._queue.popleft()
                self.dropped += 1
                burst, self._dropping = not self._dropping, True
            self._queue.append(transition)
            if self._thread is None or self._pid != os.getpid():
                self._closing = False
                self._pid = os.getpid()
                self._thread = _threads.start(self._main, name="healthprobe-transitions")
            self._cond.notify()
        if burst:
            _logger.warning(
                "transition listeners fall behind: dropping the oldest transitions (queue of %d full)",
                self._size,
                extra={"dropped": self.dropped},
            )

    def close(self, timeout: float) -> None:
        """Deliver what is queued, then end the thread; wait up to ``timeout`` seconds."""
        with self._cond:
            thread, self._thread = self._thread, None
            if thread is None or self._pid != os.getpid():
                return
            self._closing = True
            self._cond.notify()
        thread.join(timeout)

    def _main(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while not self._queue and not (self._closing or self._thread is not me):
                    self._cond.wait()
                if not self._queue:
                    return
                transition = self._queue.popleft()
                if not self._queue:
                    self._dropping = False
            for listener in list(self._listeners):
                try:
                    listener(transition)
                except Exception:
                    _logger.exception(
                        "transition listener %r raised",
                        listener,
                        extra={"transition": transition.kind, "subject": transition.name},
                    )
