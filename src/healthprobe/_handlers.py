"""The shutdown coordinator's signal handlers in one process: putting them on top of the ones
found and back, the first-signal / repeat-window / second-signal rule as the handler applies
it, the application's own handlers (called once, restored, given later signals), and
signals handed to another handler in the main thread.

What a handler found tells of the server that put it there is :mod:`healthprobe._launch`'s
business; what the coordinator does on each signal, :mod:`healthprobe.shutdown`'s (through the
callables given to :class:`SignalHandlers`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from . import _launch
from ._launch import SignalHandler
from ._signals import COPY, FIRST, RepeatWindow

__all__ = ["SignalHandlers"]


class SignalHandlers:
    """The coordinator's handler for ``signals`` and the handlers it found.

    Args:
        handler: what is installed for the signals: a bound method of the coordinator that
            calls :meth:`on_signal`, so that the handler in place names the coordinator as
            its owner (``__self__``), as :mod:`healthprobe._launch` and the application see it.
        signals: the signals that begin the shutdown.
        repeat_window: seconds after the first signal during which another one is a copy
            of it (:class:`healthprobe._signals.RepeatWindow`).
        first: called by the handler, with ``time.monotonic()``, on the first signal.
        wake: called by the handler with ``b"r"`` on a copy of the first signal (recorded
            in :attr:`copies`).
        second: called by the handler with the signal number on a second signal; exits.
        ended: whether the shutdown sequence has ended: a signal then goes where it would
            have gone without the coordinator (:meth:`pass_on`).

    Attributes:
        window: the repeat-window rule.
        handler: the handler installed, as given.
        previous: per signal, the handler found by the latest install.
        original: per signal, the application's own handler: the one in place before any
            server's or the coordinator's, found at construction or at the first install in
            this process. It is called once when the delay ends, restored by
            :meth:`uninstall`, and given the signals that come after the sequence ended.
        pid: the process where the handlers were last installed, or ``None``.
        signum: the first signal (or the one given to ``begin()``), or ``None``.
        frame: the frame the first signal interrupted.
        by_signal: whether a signal (not ``begin()``) began the shutdown.
        copies: the copies of the first signal that came within the window, as (signal
            number, seconds after the first); appended by the handler.
    """

    def __init__(
        self,
        handler: Callable[[int, FrameType | None], None],
        signals: Iterable[signal.Signals],
        repeat_window: float,
        *,
        first: Callable[[float], None],
        wake: Callable[[bytes], None],
        second: Callable[[int], None],
        ended: Callable[[], bool],
    ) -> None:
        self.signals = tuple(signals)
        self.window = RepeatWindow(repeat_window)
        self.previous: dict[int, SignalHandler] = {}
        self.original: dict[int, SignalHandler] = {}
        self.pid: int | None = None
        self.signum: int | None = None
        self.frame: FrameType | None = None
        self.by_signal = False
        self.copies: list[tuple[int, float]] = []
        self.handler = handler
        self._first, self._wake, self._second, self._ended = first, wake, second, ended
        # A signal sent to the main thread for another handler (trio's KeyboardInterrupt,
        # for example): (signal number, the handler to give it to).
        self._passing: tuple[int, SignalHandler] | None = None
        self._original_pid = os.getpid()
        self._record_original()

    # -- the handler --------------------------------------------------------------------------

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """What the handler installed for every one of the signals does."""
        # Runs in the main thread between two bytecodes of whatever it was doing: set
        # plain attributes and write to a pipe, nothing that takes a lock (logging does).
        passing = self._passing
        if passing is not None and passing[0] == signum:
            # Sent by this coordinator for another handler, to run in the main thread.
            self._passing = None
            if callable(passing[1]):
                passing[1](signum, frame)
            return
        now = time.monotonic()
        kind = self.window.classify(now)
        if kind == FIRST:
            self.by_signal = True
            self.signum, self.frame = signum, frame
            self._first(now)
            return
        if self._ended():
            # The sequence has ended, yet this handler is in place (a server restored it):
            # the signal goes where it would have gone without us.
            self.pass_on(signum, frame)
            return
        if kind == COPY:
            # A copy of the first signal (the whole process group signalled, then the
            # supervisor passing it on): the same shutdown. list.append takes no lock.
            self.copies.append((signum, now - self.window.first_at))
            self._wake(b"r")
            return
        self._second(signum)

    def begun(self, signum: int, frame: FrameType | None) -> None:
        """The shutdown began without a signal, as ``signum`` would begin it: every signal
        from now on is a second one."""
        self.window.begin_without_signal()
        self.signum, self.frame = signum, frame

    def pass_on(self, signum: int, frame: FrameType | None) -> None:
        """Give ``signum`` to the application's handler, or let its default action happen."""
        original = self.original.get(signum, _launch.uninstalled_handler(signum))
        if callable(original):
            original(signum, frame)
        elif original != signal.SIG_IGN:  # the default action: restore it and let it happen
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def deliver_in_main_thread(self, signum: int, handler: SignalHandler) -> None:
        """Have ``handler`` called with ``signum`` in the main thread, as a signal it
        handles would (trio's ``KeyboardInterrupt``, the default one of ``SIGINT``)."""
        self._passing = (signum, handler)
        if signal.getsignal(signum) != self.handler:
            self._passing = None
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, signum)

    # -- installing ---------------------------------------------------------------------------

    def found(self) -> dict[signal.Signals, SignalHandler]:
        """The handler in place for each of :attr:`signals`."""
        return {sig: signal.getsignal(sig) for sig in self.signals}

    def in_place(self, found: dict[signal.Signals, SignalHandler]) -> bool:
        """Whether every handler of ``found`` is the coordinator's."""
        return all(handler == self.handler for handler in found.values())

    def renew_original(self, pid: int) -> None:
        """In a new process (a fork), find the application's handlers anew."""
        if self._original_pid != pid:  # a new process (a fork): what this one had before us
            self.original, self._original_pid = {}, pid
            self._record_original()

    def take_over(self, found: dict[signal.Signals, SignalHandler], pid: int) -> None:
        """Install the coordinator's handler on top of each of ``found`` that is not already
        the coordinator's, in process ``pid``, remembering what it replaced."""
        first = self.pid != pid
        for sig, handler in found.items():
            if handler == self.handler:
                continue
            if first and self.callable_handler(handler):
                self.original[sig] = handler  # the application's, installed since construction
            elif sig not in self.original:
                self.original[sig] = _launch.uninstalled_handler(sig) if _launch.server_handler(handler) else handler
            self.previous[sig] = handler
            signal.signal(sig, self.handler)

    def uninstall(self) -> None:
        """Where the coordinator's handler is still in place, put back the one it replaced."""
        if not _launch.in_main_thread():
            return
        for sig in self.signals:
            if signal.getsignal(sig) == self.handler:
                replaced = self.previous.get(sig, self.original.get(sig, _launch.uninstalled_handler(sig)))
                signal.signal(sig, replaced if replaced is not None else signal.SIG_DFL)
        self.previous.clear()

    @property
    def installed(self) -> bool:
        """Whether the coordinator's handler is in place for every signal."""
        return all(signal.getsignal(s) == self.handler for s in self.signals)

    def names(self) -> str:
        """The signals' names, for the log: ``"SIGTERM, SIGINT"``."""
        return ", ".join(s.name for s in self.signals)

    # -- the handlers found -------------------------------------------------------------------

    def callable_handler(self, handler: SignalHandler) -> bool:
        """Whether ``handler`` is a Python callable of the application's or of an unknown
        server's: not the default ``KeyboardInterrupt`` raiser, nor the coordinator's, nor a
        known server's."""
        return (
            callable(handler)
            and handler is not signal.default_int_handler
            and handler != self.handler
            and _launch.server_handler(handler) is None
        )

    def fallback_stop(self, found: dict[signal.Signals, SignalHandler]) -> SignalHandler:
        """A handler of ``found`` that, called when the delay ends, may stop an unknown
        server: a Python callable other than the application's own; ``None`` if none."""
        for sig, handler in found.items():
            if self.callable_handler(handler) and handler != self.original.get(sig):
                return handler
        return None

    def application_handler(self) -> Callable[[int, FrameType | None], Any] | None:
        """The application's own handler of the first signal, when it is a Python callable."""
        original = self.original.get(self.signum or signal.SIGTERM)
        if callable(original) and self.callable_handler(original):
            return original
        return None

    def call_unknown_server(self) -> None:
        """No server recognised and no stop given: call the handler of the first signal found
        by the latest install, when it is not the application's (already called), as an
        unknown server's, which stops it."""
        signum = self.signum or signal.SIGTERM
        previous = self.previous.get(signum)
        if callable(previous) and self.callable_handler(previous) and previous != self.original.get(signum):
            previous(signum, self.frame)

    def _record_original(self) -> None:
        # The application's handlers in place at construction, when it runs in the main
        # thread; a server's own handler, or another coordinator's, is not the application's.
        if not _launch.in_main_thread():
            return
        for sig in self.signals:
            handler = signal.getsignal(sig)
            if not _launch.server_handler(handler):
                self.original[sig] = handler
