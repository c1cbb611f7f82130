"""The raw archive: every log line appended to a dated file (what cronolog did).

``logpipe --archive '/var/log/apache2/%Y/%m/%d/access.log' --symlink
/var/log/apache2/access.log`` keeps each raw line Apache wrote.  The
supervisor calls :meth:`Archive.write` with every chunk of complete lines
*before* it forwards the chunk to the worker, so a crashed worker, a hung
memcached or a full spool loses nothing from the archive.  ``logpipe rollup``
reads these files into the database (:mod:`logpipe.commands.rollup`).

Rules, as cronolog's (``../shared/reference/apache-piped-logs.md`` §2):

* The file name is the pattern through ``strftime`` at the wall-clock time
  a chunk *arrives* (``time.time()``, checked per chunk), in ``--archive-tz``
  (an IANA name such as ``Europe/Paris``; default: the local zone, i.e. the
  ``TZ`` variable or ``/etc/localtime``).  With ``%Y/%m/%d`` in the pattern the
  file changes at local midnight.  A request that started before midnight and
  finished after it is in the new day's file; ``logpipe rollup`` counts it for
  the day of its ``%t`` all the same.
* Missing directories are created (mode 0750, less the umask); files are
  created with mode 0640 and opened ``O_WRONLY|O_APPEND``.  Each chunk is one
  ``os.write`` (retried for the rest after a short write), so two loggers
  appending to the same file -- the old and the new one during a graceful
  restart -- never interleave inside a line.
* ``--symlink PATH`` points at the current file, updated atomically (a new
  symlink under a temporary name, then ``rename``).  A regular file at PATH is
  never replaced.
* :meth:`Archive.reopen` (the supervisor calls it on SIGHUP) closes the file;
  the next chunk opens the file its time names again, so a file moved away by
  logrotate is created anew.
* Errors never stop the stream: a chunk that could not be written raises
  :class:`ArchiveError` (the supervisor reports it, rate-limited, and forwards
  the chunk to the worker as usual), and the next chunk tries again.  Lines
  lost this way are counted in :attr:`Archive.lines_lost`.

This module imports only the standard library: it runs in the supervisor.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from typing import Callable

from logpipe.config import warn
from logpipe.errors import ArchiveError  # re-exported: defined in logpipe.errors

__all__ = ["Archive", "ArchiveError", "zone"]

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def zone(tz: str):
    """The ``zoneinfo.ZoneInfo`` for an IANA name such as ``Europe/Paris`` (``--archive-tz``).

    Raises:
        ValueError: an unknown or malformed time zone name (the message names --archive-tz).
    """
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(tz)
    except Exception as exc:  # ZoneInfoNotFoundError is a KeyError; bad keys raise ValueError
        raise ValueError(f"--archive-tz: unknown time zone {tz!r} ({exc.__class__.__name__})") from None


class Archive:
    """Append raw log chunks to files named by a ``strftime`` pattern.

    Args:
        pattern: ``strftime`` template of the file name, e.g.
            ``/var/log/apache2/%Y/%m/%d/access.log``.  A relative pattern is
            made absolute against the current directory now (httpd starts
            piped loggers in its ServerRoot).
        symlink: path of a symlink kept pointing at the current file, or None.
        tz: IANA time zone name for the file names (``zoneinfo``), or None for
            the local zone.
        clock: returns the current Unix time in seconds (``time.time`` by
            default; tests inject a shifted clock).
        file_mode: permission bits of new files (before the umask).
        dir_mode: permission bits of new directories (before the umask).
        report: called with one line of text for problems that lose no data
            (the symlink could not be updated); default: stderr, at most once a
            minute per kind of problem.

    Raises:
        ValueError: *pattern* is empty or does not render, or *tz* is not a
            known time zone.

    Attributes (for a status file; counts since construction):
        path: the file currently open, or None.
        lines_written, bytes_written: what reached the archive.
        lines_lost: lines of chunks that could not be written (a partial line
            cut by a failing write counts as lost).
        write_errors: failed writes and failed opens.
        files_opened: how many times a file was opened (rotations, reopens).
        last_error: text of the last error, or None.
    """

    def __init__(self, pattern: str, *, symlink: str | None = None, tz: str | None = None,
                 clock: Callable[[], float] = time.time, file_mode: int = 0o640,
                 dir_mode: int = 0o750, report: Callable[[str], None] | None = None):
        if not pattern:
            raise ValueError("--archive needs a file name pattern, e.g. /var/log/apache2/%Y/%m/%d/access.log")
        self.pattern = os.path.abspath(pattern)
        self.symlink = os.path.abspath(symlink) if symlink else None
        self._tz = zone(tz) if tz else None
        self.tz_name = tz
        self._clock = clock
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self._report = report or _StderrReport()
        try:
            rendered = self.path_for(clock())
        except (ValueError, OverflowError, OSError) as exc:
            raise ValueError(f"--archive pattern {pattern!r} does not render: {exc}") from None
        if not os.path.basename(rendered):
            raise ValueError(f"--archive pattern {pattern!r} names a directory, not a file")
        self.path: str | None = None
        self._fd: int | None = None
        self._reopen = False
        self._torn_path: str | None = None  # a failed write left a partial line in this file
        self.lines_written = 0
        self.bytes_written = 0
        self.lines_lost = 0
        self.write_errors = 0
        self.files_opened = 0
        self.last_error: str | None = None

    # -- public API ------------------------------------------------------------------------

    def path_for(self, when: float) -> str:
        """The file name for Unix time *when* (seconds), in the archive's time zone."""
        if self._tz is None:
            moment = _dt.datetime.fromtimestamp(when).astimezone()  # local zone, honours TZ
        else:
            moment = _dt.datetime.fromtimestamp(when, self._tz)
        return moment.strftime(self.pattern)

    def write(self, chunk: bytes) -> None:
        """Append *chunk* (complete lines, ending with ``\\n``) to the current file.

        Opens (and creates) the file the clock names when it changed since the
        last chunk, or after :meth:`reopen` or a failure.

        Raises:
            ArchiveError: the chunk, or part of it, was not written (directory
                or file cannot be created, disk full, I/O error).  Its lines are
                counted in :attr:`lines_lost`; the next call tries again.
        """
        if not chunk:
            return
        path = self.path_for(self._clock())
        if self._fd is None or self._reopen or path != self.path:
            try:
                self._open(path)
            except OSError as exc:
                self._lost(chunk.count(b"\n"), f"cannot open {path}: {exc.strerror or exc}")
        fd = self._fd
        data = chunk
        prefix = 0
        if self._torn_path == path:
            data = b"\n" + chunk  # end the partial line a failed write left behind
            prefix = 1
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(fd, view[done:])
        except OSError as exc:
            if 0 < done and data[done - 1:done] != b"\n":
                self._torn_path = path
            elif done:
                self._torn_path = None
            lost = data[max(done, prefix):].count(b"\n")
            self._close_fd()  # the next chunk opens the file again
            self._lost(lost, f"cannot write {path}: {exc.strerror or exc}")
        self._torn_path = None
        self.bytes_written += len(data)
        self.lines_written += chunk.count(b"\n")

    def reopen(self) -> None:
        """Close the current file; the next chunk opens its file again (SIGHUP, after logrotate)."""
        self._reopen = True
        self._close_fd()

    def close(self) -> None:
        """Close the current file.  Safe to call twice; a later :meth:`write` reopens."""
        self._close_fd()

    def status(self) -> dict:
        """The counters above as a JSON-ready dict (for the supervisor's status file)."""
        return {"archive_path": self.path, "archive_lines_written": self.lines_written,
                "archive_bytes_written": self.bytes_written, "archive_lines_lost": self.lines_lost,
                "archive_write_errors": self.write_errors, "archive_last_error": self.last_error}

    # -- internals -------------------------------------------------------------------------

    def _open(self, path: str) -> None:
        self._close_fd()
        self._reopen = False
        self.path = None
        directory = os.path.dirname(path)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, mode=self.dir_mode, exist_ok=True)
        self._fd = os.open(path, _OPEN_FLAGS, self.file_mode)
        self.path = path
        self.files_opened += 1
        if self._torn_path is not None and self._torn_path != path:
            self._torn_path = None
        if self.symlink:
            self._point_symlink(path)

    def _point_symlink(self, target: str) -> None:
        link = self.symlink
        try:
            if os.readlink(link) == target:
                return
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno == 22:  # EINVAL: PATH exists and is not a symlink
                self._report(f"raw archive: --symlink {link} exists and is not a symlink; left alone")
                return
            self._report(f"raw archive: cannot read symlink {link}: {exc.strerror or exc}")
            return
        temporary = f"{link}.logpipe-{os.getpid()}.tmp"
        try:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            os.symlink(target, temporary)
            os.replace(temporary, link)  # rename(2): readers see the old link or the new one
        except OSError as exc:
            self._report(f"raw archive: cannot point {link} at {target}: {exc.strerror or exc}")
            try:
                os.unlink(temporary)
            except OSError:
                pass

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _lost(self, lines: int, message: str) -> None:
        self.lines_lost += lines
        self.write_errors += 1
        self.last_error = message
        raise ArchiveError(f"raw archive: {message} ({lines} lines not archived, "
                           f"{self.lines_lost} so far)")


class _StderrReport:
    """One line to stderr (Apache's ErrorLog), each kind of message at most once a minute."""

    def __init__(self, interval: float = 60.0):
        self.interval = interval
        self._last: dict[str, float] = {}

    def __call__(self, message: str) -> None:
        kind = " ".join(message.split()[:4])
        now = time.monotonic()
        if now - self._last.get(kind, -self.interval) < self.interval:
            return
        self._last[kind] = now
        warn(message)
