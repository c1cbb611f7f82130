"""logpipe's exceptions: one base, :class:`LogpipeError`, and one sibling per concern.

``except LogpipeError`` catches every error logpipe raises on purpose; each
subclass names where it came from.  None subclasses another (a database error
is not a memcached error).  Some also derive from the built-in exception they
replaced (``ValueError``, ``OSError``) so that code written against the
earlier classes keeps catching them.

The old import paths keep working: ``logpipe.config.ConfigError``,
``logpipe.daemon.store.StoreError`` (and ``logpipe.api.StoreError``),
``logpipe.history.HistoryError``, ``logpipe.commands.rollup.RollupError``,
``logpipe.daemon.archive.ArchiveError``,
``logpipe.counting.logformat.UnsupportedFormat`` are these classes.

Standard library only: the supervisor imports it.
"""

from __future__ import annotations

__all__ = ["LogpipeError", "ConfigError", "StoreError", "HistoryError", "RollupError",
           "ArchiveError", "UnsupportedFormat", "short_error"]


class LogpipeError(Exception):
    """Base of every error logpipe raises on purpose; the message is one line for a person."""


class ConfigError(LogpipeError, ValueError):
    """A setting (option, ``LOGPIPE_*`` variable, config-file line) has a value logpipe cannot use.

    The message names the setting.  Commands exit 2 on it; the daemon under
    httpd reports it once and keeps draining stdin.
    """


class StoreError(LogpipeError):
    """A memcached server could not be reached or answered badly."""


class HistoryError(LogpipeError):
    """The history database cannot be used (unreachable, bad ``--db`` URL, newer schema)."""


class RollupError(LogpipeError):
    """A file cannot be rolled up; the message says why (nothing of it was stored)."""


class ArchiveError(LogpipeError, OSError):
    """A chunk (or part of it) could not be written to the raw archive; the message says why."""


class UnsupportedFormat(LogpipeError, ValueError):
    """A LogFormat uses a directive that logpipe's parsers do not handle."""


def short_error(exc: BaseException) -> str:
    """The first line of *exc*'s message (a database driver's error, say), or its class name.

    SQLAlchemy wraps the driver's error in ``exc.orig`` and appends a
    background link on later lines; this keeps the driver's first line.
    """
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
