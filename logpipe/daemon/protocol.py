"""What the supervisor, the worker and ``logpipe health`` share: one place, standard library only.

The supervisor (:mod:`logpipe.daemon.supervisor`) and the worker it forks
(:mod:`logpipe.daemon.worker`) are two processes that talk through two pipes
and an exit code; both write a status file that ``logpipe health`` reads.
Everything both sides must agree on is defined here, so a change is made once:

* exit codes of the worker and of the supervisor;
* the control messages, worker -> supervisor: ``A <offset>\\n`` (every input
  byte up to *offset* is confirmed flushed to memcached) and ``H\\n``
  (heartbeat), built by :func:`ack` / :data:`HEARTBEAT` and read by
  :func:`parse_control`;
* the read sizes both sides use on their pipes (:data:`READ_SIZE`,
  :data:`COALESCE_BELOW`);
* the status files: schema version, field names (``SUPERVISOR_FIELDS``,
  ``WORKER_FIELDS``), the supervisor's lifecycle states (:class:`State`), the
  file name rule (:func:`status_path`, :func:`parse_status_name`) and the
  atomic writer (:func:`write_status`).

The full protocol (fds, signals, who kills whom) is described in the
docstring of :mod:`logpipe.daemon.supervisor`; the status-file schema in the
README, "Status files".  This module must import only the standard library:
the supervisor imports it, and the supervisor never fails for want of a
library.
"""

from __future__ import annotations

import enum
import json
import os
from typing import Optional

# -- exit codes ---------------------------------------------------------------------------------

#: Worker: read EOF on the data pipe, flushed, done.  Supervisor: every line confirmed.
EXIT_OK = 0
#: Supervisor: lines had to be given up while stopping (counted as ``lines_lost``).
EXIT_LINES_LOST = 1
#: Worker: its supervisor died before PR_SET_PDEATHSIG took effect; it never ran.
EXIT_ORPHANED = 1
#: Worker: asks to be recycled (over ``--max-rss``, flushed and acked): not a crash.
EXIT_RECYCLE = 3
#: Worker: ``worker_main`` raised (or returned a code outside 0..255).
EXIT_WORKER_EXCEPTION = 70

# -- the pipes ----------------------------------------------------------------------------------

#: Bytes per read, from stdin (supervisor) and from the data pipe (worker).
READ_SIZE = 1 << 20
#: Read coalescing on both sides: after a read under this many bytes, pause a moment so the
#: next read carries hundreds of lines (bench/PROFILE.md).
COALESCE_BELOW = 256 << 10
#: Seconds between the worker's heartbeats (the protocol asks for at least one a second).
HEARTBEAT_EVERY = 0.5
#: A control line longer than this (bytes) is garbage: dropped and reported as unknown.
CTRL_LINE_MAX = 4096

#: The heartbeat message, ``H\\n``.
HEARTBEAT = b"H\n"
#: Kinds returned by :func:`parse_control`.
MSG_ACK = "A"
MSG_HEARTBEAT = "H"


def ack(offset: int) -> bytes:
    """The acknowledgement message ``A <offset>\\n``.

    Args:
        offset: bytes read from the data pipe since the worker started, all confirmed
            flushed to memcached (monotonic; should fall on a line boundary).
    """
    return b"A %d\n" % offset


def parse_control(line: bytes) -> Optional[tuple[str, int]]:
    """Read one control line (without its ``\\n``).

    Returns:
        ``(MSG_ACK, offset)`` for ``A <offset>``; ``(MSG_HEARTBEAT, 0)`` for ``H`` or an empty
        line (any message is a sign of life); ``None`` for anything else (an unknown
        message, or ``A`` with a bad number).  Never raises.
    """
    if line.startswith(b"A "):
        try:
            return MSG_ACK, int(line[2:])
        except ValueError:
            return None
    if line == b"H" or not line:
        return MSG_HEARTBEAT, 0
    return None


# -- status files -------------------------------------------------------------------------------

#: Version of the status file layout (the ``schema`` field).
STATUS_SCHEMA = 1
ROLE_SUPERVISOR = "supervisor"
ROLE_WORKER = "worker"
STATUS_SUFFIX = ".json"


class State(str, enum.Enum):
    """The supervisor's lifecycle, as written in the ``state`` field."""

    #: a worker is running and stdin is read
    RUNNING = "running"
    #: SIGTERM seen: reading stdin on until EOF (or ``--drain-timeout``)
    DRAINING = "draining"
    #: no worker: waiting to restart one (crash back-off)
    BACKOFF = "backoff"
    #: end of input: flushing, then exit
    STOPPING = "stopping"


# Fields of both files.
SCHEMA = "schema"
ROLE = "role"
PID = "pid"
STARTED = "started"
UPDATED = "updated"

# Fields of ``supervisor-{pid}.json`` (meanings in the supervisor's docstring).
STATE = "state"
ARGV = "argv"
MEMCACHED = "memcached"
PIPE_SIZE = "pipe_size"
NICE = "nice"
DATA_PIPE_SIZE = "data_pipe_size"
LINES_READ = "lines_read"
BYTES_READ = "bytes_read"
LINES_FORWARDED = "lines_forwarded"
LINES_REPLAYED = "lines_replayed"
LINES_DROPPED = "lines_dropped"
TOO_LONG_LINES = "too_long_lines"
UNPROTECTED_LINES = "unprotected_lines"
LINES_LOST = "lines_lost"
SPOOL_BYTES = "spool_bytes"
SPOOL_MAX = "spool_max"
REPLAY_BYTES = "replay_bytes"
WORKER_PID = "worker_pid"
WORKER_STARTED = "worker_started"
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

SUPERVISOR_FIELDS = (
    SCHEMA, ROLE, PID, STARTED, UPDATED, STATE, ARGV, MEMCACHED, PIPE_SIZE, NICE, DATA_PIPE_SIZE,
    LINES_READ, BYTES_READ, LINES_FORWARDED, LINES_REPLAYED, LINES_DROPPED, TOO_LONG_LINES,
    UNPROTECTED_LINES, LINES_LOST, SPOOL_BYTES, SPOOL_MAX, REPLAY_BYTES, WORKER_PID,
    WORKER_STARTED, WORKER_LAST_MESSAGE, WORKER_RESTARTS, WORKER_RECYCLES, CRASH_BACKOFF_UNTIL,
    LAST_WORKER_EXIT,
)

# Fields of ``worker-{pid}.json``.
PPID = "ppid"
LINES = "lines"
LINES_PER_SECOND = "lines_per_second"
PAGE_VIEWS = "page_views"
REJECTED = "rejected"
OUTCOMES = "outcomes"
PENDING_KEYS = "pending_keys"
DROPPED_COUNTS = "dropped_counts"
PENDING_VISITORS = "pending_visitors"
DROPPED_VISITORS = "dropped_visitors"
FLUSHES = "flushes"
LAST_FLUSH_OK = "last_flush_ok"
LAST_FLUSH_ERROR = "last_flush_error"
INPUT_OFFSET = "input_offset"
ACKED_OFFSET = "acked_offset"
RSS = "rss"
SERVERS = "servers"
# keys of each ``servers`` entry
SERVER_FAILURES = "failures"
SERVER_LAST_ERROR = "last_error"
SERVER_LAST_OK = "last_ok"
SERVER_RTT = "rtt"

WORKER_FIELDS = (
    SCHEMA, ROLE, PID, PPID, STARTED, UPDATED, LINES, LINES_PER_SECOND, PAGE_VIEWS, REJECTED,
    OUTCOMES, PENDING_KEYS, DROPPED_COUNTS, PENDING_VISITORS, DROPPED_VISITORS, FLUSHES, LAST_FLUSH_OK, LAST_FLUSH_ERROR,
    INPUT_OFFSET, ACKED_OFFSET, RSS, SERVERS,
)


def status_path(directory: str, role: str, pid: int) -> str:
    """The status file of process *pid*: ``{directory}/{role}-{pid}.json``.

    Args:
        directory: ``--status-dir``.
        role: :data:`ROLE_SUPERVISOR` or :data:`ROLE_WORKER`.
        pid: the process id of the writer.
    """
    return os.path.join(directory, f"{role}-{pid}{STATUS_SUFFIX}")


def parse_status_name(name: str) -> Optional[tuple[str, int]]:
    """``(role, pid)`` when *name* (a file name, no directory) is a status file, else None.

    The inverse of :func:`status_path`: ``supervisor-123.json`` -> ``("supervisor", 123)``;
    temporary files of :func:`write_status` and anything else -> None.
    """
    role, dash, rest = name.partition("-")
    if not dash or role not in (ROLE_SUPERVISOR, ROLE_WORKER) or not rest.endswith(STATUS_SUFFIX):
        return None
    pid_text = rest[:-len(STATUS_SUFFIX)]
    if not pid_text.isdigit():
        return None
    return role, int(pid_text)


def write_status(path: str, document: dict, make_dir: bool = True) -> None:
    """Replace the status file *path* atomically with *document* as compact JSON.

    Writes ``.{name}.tmp`` beside it (mode 0644), then ``os.replace``: a reader sees the old
    file or the new one, never half of one.

    Args:
        path: the status file, usually from :func:`status_path`.
        document: a JSON-serialisable dict.
        make_dir: create the directory (mode 0755) when it is missing.

    Raises:
        OSError: the file could not be written (callers warn once and go on).
    """
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.tmp")
    data = json.dumps(document, separators=(",", ":")).encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        fd = os.open(temporary, flags, 0o644)
    except FileNotFoundError:
        if not make_dir:
            raise
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd = os.open(temporary, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(temporary, path)


def remove_status(path: Optional[str]) -> None:
    """Remove the status file *path* if there is one; errors are ignored (it may be gone)."""
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
