"""The supervisor's status file, ``{status_dir}/supervisor-{pid}.json``, for ``logpipe health``.

The fields and their meanings are in the docstring of
:mod:`logpipe.daemon.supervisor` (schema 1); the field names, the file name
rule and the atomic writer are shared with the worker and health through
:mod:`logpipe.daemon.protocol`.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Callable, Optional

from logpipe.daemon import protocol as P

if TYPE_CHECKING:  # pragma: no cover
    from logpipe.daemon.supervisor.arbiter import Supervisor

__all__ = ["StatusFile", "document", "STATUS_INTERVAL"]

#: Seconds between status file updates (it is also written when the state changes).
STATUS_INTERVAL = 2.0


def document(sup: "Supervisor") -> dict:
    """The status file's contents, read from the supervisor's parts."""
    wall = time.time()
    w = sup.worker
    intake = sup.intake
    spool = sup.spool
    restarts = sup.restarts
    return {
        P.SCHEMA: P.STATUS_SCHEMA,
        P.ROLE: P.ROLE_SUPERVISOR,
        P.PID: sup.pid,
        P.STARTED: sup.started_wall,
        P.UPDATED: wall,
        P.STATE: sup.state.value,
        P.ARGV: list(sys.argv),
        P.MEMCACHED: sup.settings.memcached,
        P.PIPE_SIZE: intake.pipe_size,
        P.NICE: sup.nice,
        P.DATA_PIPE_SIZE: w.pipe_size if w else None,
        P.LINES_READ: intake.lines_read,
        P.BYTES_READ: intake.bytes_read,
        P.LINES_FORWARDED: spool.lines_forwarded,
        P.LINES_REPLAYED: spool.lines_replayed,
        P.LINES_DROPPED: spool.lines_dropped,
        P.TOO_LONG_LINES: intake.too_long_lines,
        P.UNPROTECTED_LINES: spool.unprotected_lines,
        P.LINES_LOST: sup.lines_lost,
        P.SPOOL_BYTES: spool.pending_bytes,
        P.SPOOL_MAX: sup.settings.spool_max,
        P.REPLAY_BYTES: spool.replay_bytes,
        P.WORKER_PID: w.pid if w else None,
        P.WORKER_STARTED: w.started_wall if w else None,
        P.WORKER_LAST_MESSAGE: w.last_msg_wall if w else None,
        P.WORKER_RESTARTS: restarts.recent(wall),
        P.WORKER_RECYCLES: restarts.recycles,
        P.CRASH_BACKOFF_UNTIL: restarts.backoff_until_wall if w is None else None,
        P.LAST_WORKER_EXIT: sup.last_exit,
    }


class StatusFile:
    """Writes the status file every :data:`STATUS_INTERVAL` seconds; warns once if it cannot.

    Args:
        path: the file, or None for no status file (``--status-dir ""``).
        warned: True when the failure was already reported (the directory was unusable).
    """

    def __init__(self, path: Optional[str], warned: bool = False):
        self.path = path
        self.warned = warned
        self.next_at = 0.0  # monotonic time of the next periodic write

    def write(self, content: Callable[[], dict], now: float) -> Optional[str]:
        """Replace the file with ``content()``; return None, or the one-time warning to print.

        *now* (monotonic seconds) schedules the next periodic write.
        """
        self.next_at = now + STATUS_INTERVAL
        if not self.path:
            return None
        try:
            P.write_status(self.path, content())
        except OSError as exc:
            if not self.warned:
                self.warned = True
                return f"cannot write the status file {self.path}: {exc.strerror or exc}"
        return None

    def remove(self) -> None:
        """Remove the file (the supervisor returns)."""
        P.remove_status(self.path)
