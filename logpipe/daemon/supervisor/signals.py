"""Signals into the loop: handlers only queue the signal number and wake ``poll``.

A Python signal handler runs between two bytecodes of whatever the loop was
doing, so the handler does nothing but append to a queue; ``set_wakeup_fd``
writes a byte to a pipe the loop polls, so a signal ends the ``poll`` at
once.  The loop then dispatches the queue by name (gunicorn's arbiter does
the same with its ``SIG_QUEUE`` and ``handle_*`` methods).
"""

from __future__ import annotations

import os
import signal
from typing import Any, Iterable

from logpipe.config import warn
from logpipe.daemon.supervisor import system

__all__ = ["SignalQueue"]


class SignalQueue:
    """Queued signal numbers and the wake-up pipe; installs and restores the handlers.

    Attributes: ``queue`` (signal numbers in arrival order), ``wake_r`` / ``wake_w``
    (the wake-up pipe, -1 when signals could not be installed).
    """

    def __init__(self) -> None:
        self.queue: list[int] = []
        self.wake_r = -1
        self.wake_w = -1
        self.old_handlers: dict[int, Any] = {}
        self.old_wakeup = -1

    def install(self, handled: Iterable[int], ignored: Iterable[int]) -> bool:
        """Queue *handled* signals, ignore *ignored* ones.  False when signals cannot be
        installed (not the main thread): the caller then polls often instead."""
        try:
            self.wake_r, self.wake_w = os.pipe()
            os.set_blocking(self.wake_r, False)
            os.set_blocking(self.wake_w, False)
            self.old_wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
            for sig in handled:
                self.old_handlers[sig] = signal.signal(sig, self._handler)
            for sig in ignored:
                self.old_handlers[sig] = signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError) as exc:
            warn(f"signal handling unavailable ({exc}); polling")
            return False
        return True

    def _handler(self, signum: int, frame: Any) -> None:
        self.queue.append(signum)

    def drain(self) -> None:
        """Empty the wake-up pipe (after ``poll`` said it is readable)."""
        system.drain_fd(self.wake_r)

    def pop(self) -> int:
        """The oldest queued signal (the queue must not be empty)."""
        return self.queue.pop(0)

    def restore(self) -> None:
        """Put back the handlers and wake-up fd found at :meth:`install`; close the pipe."""
        try:
            if self.old_handlers:
                signal.set_wakeup_fd(self.old_wakeup)
                for sig, handler in self.old_handlers.items():
                    signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        except (ValueError, OSError, TypeError):
            pass
        for fd in (self.wake_r, self.wake_w):
            system.close_fd(fd)
