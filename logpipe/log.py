"""logpipe's messages in Apache's ErrorLog, in Apache's own shape.

Under httpd, logpipe's stderr is the main server's ErrorLog, so every line is written
like httpd 2.4's own lines (its default ErrorLogFormat)::

    [Wed Dec 02 22:00:00.123456 2026] [logpipe:error] [pid 30268] worker failed: …

local time with microseconds, then ``logpipe:LEVEL`` with Apache's level names, then the
pid of the process that wrote it (the supervisor's or its worker's). Everything goes through
the standard :mod:`logging` module, logger ``"logpipe.errorlog"``, with the one formatter
below; :func:`setup` sets the level from ``--log-level``. (Not the ``"logpipe"`` logger: an
app's own loggers under ``logpipe.*``, a Django app's say, keep going to the app's handlers.) Repeats are rate-limited by the callers
(``--log-interval``): the supervisor, the worker and the raw archive each say one line per
kind of message per interval.

This module imports only the standard library: the supervisor uses it.
"""

from __future__ import annotations

import logging
import sys
import time

__all__ = ["LEVELS", "NOTICE", "ApacheFormatter", "logger", "setup", "level_number"]

#: Apache's ``notice`` (between INFO and WARNING), also a level of the logging module here.
NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

#: ``--log-level`` values (Apache's LogLevel names) → logging levels. Source: httpd 2.4
#: "LogLevel Directive" (emerg … debug); emerg and alert are not used by logpipe.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": NOTICE,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "crit": logging.CRITICAL,
}
_NAMES = {number: name for name, number in LEVELS.items()}
#: The default ``--log-level``: Apache's own default LogLevel.
DEFAULT_LEVEL = "warn"


class ApacheFormatter(logging.Formatter):
    """``[Wed Dec 02 22:00:00.123456 2026] [logpipe:warn] [pid N] message``.

    The time is the record's creation time in local time (what httpd writes; the TZ of the
    environment httpd passed on), the level is Apache's name for it (debug, info, notice,
    warn, error, crit), ``N`` the writing process's pid. A message with line breaks is
    folded onto one line: an ErrorLog line is one record.
    """

    def format(self, record: logging.LogRecord) -> str:
        when = time.localtime(record.created)
        stamp = time.strftime("%a %b %d %H:%M:%S", when)
        micro = min(999_999, int((record.created % 1.0) * 1_000_000))
        level = _NAMES.get(record.levelno) or _nearest(record.levelno)
        message = record.getMessage()
        if record.exc_info:
            message += ": " + self.formatException(record.exc_info)
        if "\n" in message or "\r" in message:
            message = " ".join(message.splitlines())
        return (f"[{stamp}.{micro:06d} {when.tm_year}] [logpipe:{level}] "
                f"[pid {record.process}] {message}")


def _nearest(levelno: int) -> str:
    """Apache's name for a logging level number between the named ones."""
    below = [number for number in _NAMES if number <= levelno]
    return _NAMES[max(below)] if below else "debug"


class _StderrHandler(logging.Handler):
    """Writes each record to the *current* ``sys.stderr`` in one write, never raising:
    a full or closed ErrorLog must not stop the daemon."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            if stream is None:
                return
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # OSError, ValueError (closed), anything from a bad message
            pass

    def handleError(self, record: logging.LogRecord) -> None:  # pragma: no cover
        pass


def _make_logger() -> logging.Logger:
    log = logging.getLogger("logpipe.errorlog")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(ApacheFormatter())
        log.addHandler(handler)
    log.propagate = False  # an application's root handlers must not print it twice
    if log.level == logging.NOTSET:
        log.setLevel(LEVELS[DEFAULT_LEVEL])
    return log


#: The ErrorLog logger, ready to use (level ``warn`` until :func:`setup`).
logger = _make_logger()


def level_number(name: str) -> int:
    """The logging level of a ``--log-level`` name (case-insensitive; ``warning`` is ``warn``).

    Raises:
        ValueError: not one of :data:`LEVELS`.
    """
    key = name.strip().lower()
    key = {"warning": "warn", "critical": "crit"}.get(key, key)
    if key not in LEVELS:
        raise ValueError(f"unknown log level {name!r} (one of {', '.join(LEVELS)})")
    return LEVELS[key]


def setup(level: str = DEFAULT_LEVEL) -> logging.Logger:
    """Set the ErrorLog logger's level from a ``--log-level`` name and return it.

    Raises:
        ValueError: an unknown level name.
    """
    logger.setLevel(level_number(level))
    return logger
