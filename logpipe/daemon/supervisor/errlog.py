"""Messages to stderr, which is Apache's ErrorLog: terse, rate-limited, quiet at start.

reference/apache-piped-logs.md: a piped logger's stderr goes into the
ErrorLog, and httpd's normal start spawns the logger twice and SIGTERMs the
first within milliseconds.  So repeats of one kind of message are summarised
(:class:`Limiter`), and start-up warnings wait :data:`QUIET_START` seconds
(:class:`StartupMessages`) so that the throw-away first instance prints
nothing.
"""

from __future__ import annotations

import logging

from logpipe.config import warn

__all__ = ["Limiter", "StartupMessages", "QUIET_START"]

#: Start-up warnings (root, status dir) wait this long, in seconds.
QUIET_START = 1.0
#: Limiter keys whose messages are ErrorLog "error" lines (counts lost or a worker down);
#: the others are "warn".
_ERRORS = {key: logging.ERROR for key in ("crash", "fork", "drop", "final", "internal")}


class Limiter:
    """One stderr line per key per *interval* seconds; repeats are counted and summarised."""

    def __init__(self, interval: float):
        self.interval = max(0.0, interval)
        self.last: dict[str, float] = {}
        self.latest: dict[str, str] = {}
        self.suppressed: dict[str, int] = {}

    def say(self, key: str, message: str, now: float) -> None:
        """Print *message* unless a message of kind *key* was printed less than *interval* ago
        (*now*: monotonic seconds); then it is held, and counted."""
        last = self.last.get(key)
        if last is None or now - last >= self.interval:
            self._emit(key, message, now, self.suppressed.pop(key, 0))
        else:
            self.latest[key] = message
            self.suppressed[key] = self.suppressed.get(key, 0) + 1

    def flush(self, now: float) -> None:
        """Emit the latest suppressed message of every key whose interval has passed."""
        for key in [k for k, n in self.suppressed.items() if n]:
            if now - self.last.get(key, 0.0) >= self.interval:
                self._emit(key, self.latest.get(key, ""), now, self.suppressed.pop(key) - 1)

    def _emit(self, key: str, message: str, now: float, hidden: int) -> None:
        self.latest.pop(key, None)
        if hidden > 0:
            message += f" (+{hidden} similar in the last {self.interval:g} s)"
        warn(message, _ERRORS.get(key, logging.WARNING))
        self.last[key] = now


class StartupMessages:
    """Warnings held back until the process has lived :data:`QUIET_START` seconds.

    Args:
        started: monotonic time the process started.
    """

    def __init__(self, started: float):
        self.started = started
        self.held: list[str] = []
        self.done = False

    def say(self, message: str) -> None:
        """Print *message* now if the quiet start is over, else hold it."""
        if self.done:
            warn(message)
        else:
            self.held.append(message)

    def due(self) -> float:
        """Monotonic time the held messages are due (past once released)."""
        return self.started + QUIET_START

    def release(self, now: float, silent: bool) -> None:
        """After the quiet start: print what was held, unless *silent* (already stopping)."""
        if not self.done and now - self.started >= QUIET_START:
            self.done = True
            if not silent:
                for message in self.held:
                    warn(message)
            self.held.clear()
