"""The input side: read httpd's pipe (fd 0), cut it into complete lines, drop too-long lines.

httpd writes each log line with one ``write()``; lines over PIPE_BUF (4 KiB)
may be split and interleaved with others, and a line can be ~100 KB
(DESIGN.md §2).  :class:`Intake` reads large chunks, keeps the partial line
at the end of a read for the next one, and returns the complete lines of
each read as one chunk.  A line longer than :data:`MAX_LINE` is dropped and
counted (``too_long_lines``), and the stream resynchronises at the next
newline.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

from logpipe.daemon.protocol import COALESCE_BELOW, READ_SIZE
from logpipe.daemon.supervisor.errlog import Limiter

__all__ = ["Intake", "MAX_LINE", "COALESCE_DELAY", "COALESCE_MIN_PIPE"]

#: A partial line longer than this (bytes) without a newline is dropped (too_long).
MAX_LINE = 1 << 20
#: Read coalescing: after a read under COALESCE_BELOW bytes, sleep COALESCE_DELAY
#: seconds, if fd 0's pipe holds at least COALESCE_MIN_PIPE bytes.
COALESCE_DELAY = 0.01
COALESCE_MIN_PIPE = 512 << 10


class Intake:
    """Reads fd *fd* and cuts it into chunks of complete lines.

    Args:
        limiter: where the "line too long" and read-error messages go (rate-limited).
        fd: the log pipe, 0 under httpd.

    Counters: ``bytes_read``, ``lines_read`` (complete lines returned, plus a final
    partial line at EOF), ``too_long_lines``.  ``open`` is False once :meth:`close` ran.
    """

    def __init__(self, limiter: Limiter, fd: int = 0):
        self.limiter = limiter
        self.fd = fd
        self.open = True
        self.pipe_size: Optional[int] = None  # capacity of fd's pipe, set by the supervisor
        self.tail = b""  # a line whose newline has not arrived yet
        self.skipping = False  # in the rest of a too-long line
        self.bytes_read = 0
        self.lines_read = 0
        self.too_long_lines = 0

    def read(self, now: float, may_pause: Callable[[], bool]) -> Optional[tuple[bytes, int]]:
        """One read: (the complete lines it finished, how many), or None at end of input.

        Called once per ``poll()`` that says fd is readable.  fd stays blocking: its open file
        description is shared with httpd, which keeps the read end for respawns, and this is
        its only reader, so the read cannot block.  A read error is reported and taken as
        end of input.  After a small read, when ``may_pause()``, sleeps :data:`COALESCE_DELAY`
        so that the next read carries hundreds of lines.
        """
        try:
            data = os.read(self.fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return b"", 0
        except OSError as exc:
            self.limiter.say("stdin", f"cannot read the log ({exc.strerror or exc}): "
                             "treating it as end of input", now)
            data = b""
        if not data:
            return None
        self.bytes_read += len(data)
        chunk = self.take(data, now)
        if (len(data) < COALESCE_BELOW and (self.pipe_size or 0) >= COALESCE_MIN_PIPE
                and may_pause()):
            # Let the pipe fill for a moment so the next read carries hundreds of lines:
            # at 4-15 lines per read a line cost 17-24 µs of CPU in wake-ups, at 200-600
            # it costs 3.4 µs (bench/PROFILE.md).  Only with a pipe that holds the pause at
            # full speed (1 MiB is about 160 ms of log at 25,000 requests/s).
            time.sleep(COALESCE_DELAY)
        return chunk

    def take(self, data: bytes, now: float) -> tuple[bytes, int]:
        """Cut *data* (appended to the partial tail) at its last newline.

        Returns:
            (the complete lines, each ending in ``\\n``, or ``b""``; how many), the count
            also added to ``lines_read``.
        """
        if self.skipping:  # the rest of a too-long line: drop through its newline
            cut = data.find(b"\n")
            if cut < 0:
                return b"", 0
            self.skipping = False
            data = data[cut + 1:]
            if not data:
                return b"", 0
        if self.tail:
            first = data.find(b"\n")
            if first >= 0 and len(self.tail) + first > MAX_LINE:
                # the partial line ends here but is too long: drop it, keep the rest
                self.tail = b""
                self._too_long(now)
                data = data[first + 1:]
                if not data:
                    return b"", 0
            else:
                data = self.tail + data
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > MAX_LINE:
                self.tail = b""
                self.skipping = True
                self._too_long(now)
            else:
                self.tail = data
            return b"", 0
        if cut == len(data) - 1:
            self.tail = b""
        else:
            self.tail = data[cut + 1:]
            data = data[:cut + 1]
        lines = data.count(b"\n")
        self.lines_read += lines
        return data, lines

    def close(self, eof: bool) -> tuple[bytes, int]:
        """Stop reading.  Returns (last chunk, lines cut).

        At end of input (*eof*) a final line without newline still counts: it is returned
        with a ``\\n`` added.  At the drain deadline (not *eof*) it is cut: 1 line cut.
        """
        self.open = False
        tail, self.tail = self.tail, b""
        if not tail:
            return b"", 0
        if eof:
            self.lines_read += 1
            return tail + b"\n", 0
        return b"", 1

    def _too_long(self, now: float) -> None:
        self.too_long_lines += 1
        self.limiter.say("toolong", f"line longer than {MAX_LINE} bytes dropped "
                         f"({self.too_long_lines} so far)", now)
