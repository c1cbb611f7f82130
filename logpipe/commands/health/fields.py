"""The status files as ``logpipe health`` reads them: file names and field names, in one place.

Stand-in for the shared ``logpipe.daemon.protocol`` module (issue 17.5), with
the same names, so that switching to it is an import.
"""

from __future__ import annotations

from typing import Optional

ROLE_SUPERVISOR = "supervisor"
ROLE_WORKER = "worker"
STATUS_SUFFIX = ".json"

# Fields of both files.
STARTED = "started"
UPDATED = "updated"

# Fields of ``supervisor-{pid}.json``.
STATE = "state"
ARGV = "argv"
MEMCACHED = "memcached"
LINES_READ = "lines_read"
LINES_DROPPED = "lines_dropped"
TOO_LONG_LINES = "too_long_lines"
UNPROTECTED_LINES = "unprotected_lines"
LINES_LOST = "lines_lost"
SPOOL_BYTES = "spool_bytes"
SPOOL_MAX = "spool_max"
WORKER_PID = "worker_pid"
WORKER_LAST_MESSAGE = "worker_last_message"
WORKER_RESTARTS = "worker_restarts"
WORKER_RECYCLES = "worker_recycles"
CRASH_BACKOFF_UNTIL = "crash_backoff_until"
LAST_WORKER_EXIT = "last_worker_exit"
# keys of ``last_worker_exit``
EXIT_CODE = "code"
EXIT_SIGNAL = "signal"
EXIT_TIME = "time"
EXIT_HUNG = "hung"

# Fields of ``worker-{pid}.json``.
LINES = "lines"
LINES_PER_SECOND = "lines_per_second"
REJECTED = "rejected"
PENDING_KEYS = "pending_keys"
DROPPED_COUNTS = "dropped_counts"
LAST_FLUSH_OK = "last_flush_ok"
LAST_FLUSH_ERROR = "last_flush_error"


def parse_status_name(name: str) -> Optional[tuple[str, int]]:
    """``(role, pid)`` when *name* (no directory) is a status file, e.g. ``worker-12.json``; else None."""
    role, dash, rest = name.partition("-")
    if not dash or role not in (ROLE_SUPERVISOR, ROLE_WORKER) or not rest.endswith(STATUS_SUFFIX):
        return None
    pid_text = rest[:-len(STATUS_SUFFIX)]
    if not pid_text.isdigit():
        return None
    return role, int(pid_text)
