"""The supervisor: the process httpd spawned, the only reader of stdin.

httpd runs ``CustomLog "|/usr/local/bin/logpipe …" combined``; the process it
starts is this supervisor.  It reads the log from fd 0 in large chunks, cuts
them at newlines, hands them to the raw archive (*sink*) when one is
configured, and forwards them to a forked worker that parses and counts.  It
imports nothing but the standard library and :mod:`logpipe.config`, so it
never fails for want of a library and never waits on memcached: the worker
may be slow, hung, crash-looping or restarting, and stdin is still drained
into a bounded spool (``--spool-max``; past it lines are dropped and
counted).  The model is gunicorn's arbiter: signals wake a ``poll`` loop
through ``signal.set_wakeup_fd`` and are handled by name, children are
reaped with ``waitpid(WNOHANG)``, a worker whose heartbeat stops is killed
and replaced.

The parts, one job each (all standard library only):

=====================  =====================================================
``arbiter``            the main loop and the lifecycle (``State``), signals
``intake``             read stdin, cut lines, drop too-long lines
``spool``              the spool and the replay buffer, bounds and counters
``workers``            the worker handle (fork, hear, kill, reap) and the
                       restart policy (crash back-off, recycles)
``status``             the status file
``errlog``             rate-limited ErrorLog lines, quiet start
``system``             niceness, pipe sizes, privileges, fd helpers
=====================  =====================================================

What the supervisor shares with the worker and ``logpipe health`` (exit
codes, control messages, status-file names and writer) is in
:mod:`logpipe.daemon.protocol`.

Why (``../shared/reference/apache-piped-logs.md``): httpd writes each line
with one blocking ``write()``, so a full pipe stalls its workers (§0, §1.5);
it sends the logger ONE SIGTERM at graceful/restart/stop and old children
keep writing until EOF (§1.3), so SIGTERM means "drain until EOF", never
"exit now"; a normal start spawns the logger twice and SIGTERMs the first
within milliseconds, so start is quick and quiet; stderr is Apache's
ErrorLog, so messages are one terse, rate-limited line each.

Worker protocol (``worker_main(settings, data_fd, ctrl_fd) -> exit code``)
--------------------------------------------------------------------------
The worker runs in a child forked by the supervisor.  Before
``worker_main`` is called the child has fd 0 replaced by ``/dev/null`` (it
can never read httpd's pipe), the supervisor's pipe ends closed, SIGTERM,
SIGHUP, SIGCHLD, SIGUSR1 and SIGUSR2 reset to their defaults, SIGINT ignored
(a terminal's Ctrl-C reaches the whole process group; the supervisor owns
shutdown), SIGPIPE left ignored (Python's default: writes raise
``BrokenPipeError``), and ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` set, so the
worker gets SIGTERM when the supervisor dies.

* Data pipe, supervisor → worker (*data_fd*, blocking): raw log bytes,
  complete lines only, each ending in ``\\n``.  The worker counts the bytes
  it has read from this pipe since it started: its *offset* (each new worker
  starts again at 0).  EOF means end of input: flush, exit 0.
* Control pipe, worker → supervisor (*ctrl_fd*), ASCII lines:

  - ``A <offset>\\n``: every input byte up to *offset* is confirmed flushed
    to memcached.  Acks are monotonic and should fall on line boundaries.
  - ``H\\n``: heartbeat, at least once per second while the worker lives,
    also when idle and while memcached is down.

  Any message counts as a sign of life.  No message for
  ``--heartbeat-timeout`` seconds (a hung or SIGSTOPped worker): SIGKILL and
  replace.
* Exit code (``worker_main``'s return value, via ``os._exit``):
  0 = read EOF on the data pipe, flushed, done; 3 (:data:`~logpipe.daemon.protocol.EXIT_RECYCLE`) =
  recycle (over ``--max-rss``, flushed and acked; a new worker starts at once,
  not a crash); anything else, or death by a signal, is a crash.  An
  exception escaping ``worker_main`` is logged in one line and exits 70.
  A crashed worker that had confirmed a flush (acked) is restarted at once
  (killed, hung, out of memory: it was working); one that dies before its
  first ack is a crash loop: restarts back off 0.25 s doubling to 30 s.
* On SIGTERM the worker flushes what it holds and exits.  The supervisor
  sends SIGKILL only to a hung worker, or at the end of the final deadline.

Bytes the worker has not acked are kept (the *replay buffer*, bounded by
``--replay-max``; past it the oldest bytes are forgotten and their lines
counted as ``unprotected_lines``) and are written again, first, to the next
worker if this one dies.  A kill in the middle of a flush can therefore count
that one batch twice; a crash never loses a confirmed-unflushed line that is
still in the replay buffer.

Status file (what ``logpipe health`` reads)
-------------------------------------------
``{status_dir}/supervisor-{pid}.json``, replaced atomically (temporary file +
``os.replace``) about every 2 s and when the state changes; removed when the
supervisor returns.  ``status_dir`` is created with mode 0755 when missing
(and chowned to ``--user`` when the supervisor created it as root); if it
cannot be written the supervisor warns once and goes on.  Times are Unix
times (float seconds), sizes bytes, counts lines since the supervisor
started.  Schema 1::

    schema              1
    role                "supervisor"
    pid                 supervisor pid
    started, updated    when it started / when this file was written
    state               "running" | "draining" (SIGTERM seen, reading to EOF)
                        | "backoff" (no worker: waiting to restart one)
                        | "stopping" (end of input: flushing, then exit)
    argv                sys.argv
    memcached           --memcached
    pipe_size           capacity of the stdin pipe (bytes), null if not a pipe
    nice                the supervisor's niceness (--nice; the worker adds
                        --worker-nice)
    data_pipe_size      capacity of the pipe to the current worker, or null
    lines_read          complete lines read from stdin (a final partial line
                        at EOF counts)
    bytes_read          bytes read from stdin
    lines_forwarded     lines written to a worker (the first time)
    lines_replayed      lines written again to a later worker
    lines_dropped       lines dropped: spool full, or cut at the drain deadline
    too_long_lines      lines over 1 MiB, dropped
    unprotected_lines   lines forgotten by the replay buffer before they were
                        acked, plus partial lines cut at its edge
    lines_lost          unacked lines given up when stopping (worker failed)
    spool_bytes         bytes not yet written to the worker (incl. resends)
    spool_max           --spool-max
    replay_bytes        bytes written to the worker and not yet acked
    worker_pid          current worker, or null
    worker_started      when it started, or null
    worker_last_message when it last sent anything, or null
    worker_restarts     restart times after crashes/hangs in the last hour
    worker_recycles     exit-3 recycles since start
    crash_backoff_until when the next restart is due, or null
    last_worker_exit    {"code": n, "time": t} or {"signal": n, "time": t}
                        (+ "hung": true when it was killed for silence), or null
"""

from __future__ import annotations

from typing import Any

from logpipe.config import Settings
from logpipe.daemon.protocol import EXIT_RECYCLE, EXIT_WORKER_EXCEPTION, STATUS_SCHEMA
from logpipe.daemon.supervisor.arbiter import Supervisor
from logpipe.daemon.supervisor.system import set_nice, set_pipe_size
from logpipe.daemon.supervisor.workers import WorkerMain

__all__ = ["run", "set_nice", "set_pipe_size", "Supervisor", "WorkerMain", "EXIT_RECYCLE",
           "EXIT_WORKER_EXCEPTION", "STATUS_SCHEMA"]


def run(settings: Settings, worker_main: WorkerMain, sink: Any = None) -> int:
    """Supervise: read stdin until EOF, forward lines to a forked worker, return the exit code.

    This is the body of the daemon that httpd spawns for ``CustomLog "|logpipe …"``; the
    worker protocol, the signals and the status file are described in the module docstring.

    Args:
        settings: the daemon's settings.  Used here: ``spool_max``, ``replay_max`` and
            ``pipe_size`` (bytes), ``heartbeat_timeout``, ``drain_timeout`` and
            ``log_interval`` (seconds), ``status_dir``, ``user``, ``group``, ``memcached``.
        worker_main: run in each forked worker as ``worker_main(settings, data_fd, ctrl_fd)``;
            its return value is the worker's exit code (0 done at EOF, 3 recycle).
        sink: optional raw archive with ``write(chunk: bytes)``, ``reopen()`` (on SIGHUP) and
            ``close()`` (on return).  Each chunk of complete lines goes to ``sink.write``
            before it is forwarded; its exceptions are reported (rate-limited) and ignored.

    Returns:
        0 after end of input (or the drain deadline) once the worker confirmed every line;
        1 if lines had to be given up while stopping (reported on stderr and counted as
        ``lines_lost``).

    Raises:
        Nothing in normal operation: the loop logs and survives its own exceptions, because a
        dead logger makes httpd block on a full pipe (reference/apache-piped-logs.md §0).
        Must be called from the main thread (signal handlers).
    """
    return Supervisor(settings, worker_main, sink).run()
