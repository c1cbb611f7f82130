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
through ``signal.set_wakeup_fd``, children are reaped with
``waitpid(WNOHANG)``, a worker whose heartbeat stops is killed and replaced.

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
  0 = read EOF on the data pipe, flushed, done; 3 (:data:`EXIT_RECYCLE`) =
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

import errno
import fcntl
import json
import logging
import os
import select
import signal
import stat
import sys
import time
from collections import deque
from typing import Any, Callable, Optional

from logpipe.config import Settings, warn

#: Read coalescing: after a read under COALESCE_BELOW bytes, sleep COALESCE_DELAY
#: seconds, if fd 0's pipe holds at least COALESCE_MIN_PIPE bytes.
COALESCE_BELOW = 256 << 10
COALESCE_DELAY = 0.01
COALESCE_MIN_PIPE = 512 << 10

__all__ = ["run", "set_nice", "set_pipe_size", "EXIT_RECYCLE", "EXIT_WORKER_EXCEPTION", "STATUS_SCHEMA"]

#: Worker exit code asking for a recycle (not a crash).
EXIT_RECYCLE = 3
#: Exit code of a worker whose ``worker_main`` raised.
EXIT_WORKER_EXCEPTION = 70
#: Version of the status file layout (``schema`` field).
STATUS_SCHEMA = 1

#: Bytes per read from stdin.
READ_SIZE = 1 << 20
#: A partial line longer than this without a newline is dropped (too_long).
MAX_LINE = 1 << 20
#: Bytes per write to the worker's data pipe.
WRITE_SIZE = 1 << 20
try:
    _IOV_MAX = max(16, min(1024, os.sysconf("SC_IOV_MAX")))
except (ValueError, OSError, AttributeError):  # pragma: no cover
    _IOV_MAX = 16
#: Seconds between status file updates.
STATUS_INTERVAL = 2.0
#: Crash back-off: first delay, cap, and the lifetime that resets it (seconds).
BACKOFF_FIRST = 0.25
BACKOFF_CAP = 30.0
STABLE_AFTER = 10.0
#: Recycles (exit 3) of workers that lived less than FAST_RECYCLE seconds,
#: this many times in a row, are handled as a crash loop (--max-rss too low).
FAST_RECYCLE = 1.0
FAST_RECYCLE_LIMIT = 5
#: After end of input: how long one worker may take to finish (seconds), and
#: how many more workers may be started to replay unacked lines.
FINAL_TIMEOUT = 5.0
FINAL_RESTARTS = 2
#: Seconds between SIGTERM and SIGKILL when a worker must go.
TERM_GRACE = 1.0
#: Once everything is acked after EOF, how long to wait for the worker's exit.
EXIT_GRACE = 0.2
#: Start-up warnings (root, status dir) wait this long, so httpd's throw-away
#: first instance, SIGTERMed within milliseconds, prints nothing.
QUIET_START = 1.0
_CTRL_LINE_MAX = 4096

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Python >= 3.10 names them
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_PR_SET_PDEATHSIG = 1
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)

WorkerMain = Callable[[Settings, int, int], int]


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
    return _Supervisor(settings, worker_main, sink).run()


# -- helpers ----------------------------------------------------------------------------------


def set_nice(want: int) -> Optional[int]:
    """Set this process's niceness to *want* (-20..19) where allowed; return the one it has.

    ``--nice`` (default -5): the supervisor drains Apache's pipe and the
    worker (which inherits it) counts; their CPU is bounded by the log's
    bytes, and at Apache's priority a worker on a saturated machine waits for
    the CPU it needs and counts arrive late (README, "Performance").  Only
    root may lower the niceness; unprivileged, the current one is kept.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, want)
    except OSError:
        pass
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except OSError:  # pragma: no cover
        return None


def set_pipe_size(fd: int, want: int) -> Optional[int]:
    """Raise the capacity of the pipe *fd* to *want* bytes if it is smaller; return the capacity.

    Unprivileged processes are capped at ``/proc/sys/fs/pipe-max-size`` (fcntl(2)); on EPERM
    the cap is tried instead.  The pipe is never shrunk.

    Returns:
        the capacity in bytes after the attempt, or ``None`` when *fd* is not a pipe (a
        file, a terminal, a socket) or the capacity cannot be read.  Never raises.
    """
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        current = fcntl.fcntl(fd, _F_GETPIPE_SZ)
    except (OSError, ValueError):
        return None
    if want > current:
        try:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, want)
        except (OSError, OverflowError, ValueError):
            try:
                with open("/proc/sys/fs/pipe-max-size", "rb") as handle:
                    cap = int(handle.read())
                if current < cap < want:
                    fcntl.fcntl(fd, _F_SETPIPE_SZ, cap)
            except (OSError, ValueError, OverflowError):
                pass
    try:
        return fcntl.fcntl(fd, _F_GETPIPE_SZ)
    except OSError:
        return None


#: Limiter keys whose messages are ErrorLog "error" lines (counts lost or a worker down);
#: the others are "warn".
_ERRORS = {key: logging.ERROR for key in ("crash", "fork", "drop", "final", "internal")}


class _Limiter:
    """One stderr line per key per *interval* seconds; repeats are counted and summarised."""

    def __init__(self, interval: float):
        self.interval = max(0.0, interval)
        self.last: dict[str, float] = {}
        self.latest: dict[str, str] = {}
        self.suppressed: dict[str, int] = {}

    def say(self, key: str, message: str, now: float) -> None:
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


class _Worker:
    """Book-keeping of one forked worker, seen from the supervisor."""

    def __init__(self, pid: int, data_w: int, ctrl_r: int, now: float, wall: float):
        self.pid = pid
        self.data_w = data_w  # -1 once closed (EOF sent or broken)
        self.ctrl_r = ctrl_r  # -1 once closed
        self.ctrl_buf = b""
        self.started = now
        self.started_wall = wall
        self.last_msg = now
        self.last_msg_wall: Optional[float] = None
        self.written = 0  # bytes written to it: its offset space
        self.acked = 0
        self.eof_sent = False
        self.hung = False
        self.term_at: Optional[float] = None
        self.kill_sent = False
        self.pipe_size: Optional[int] = None
        self.nice: Optional[int] = None


class _Supervisor:
    """The state and loop behind :func:`run` (one instance per process)."""

    def __init__(self, settings: Settings, worker_main: WorkerMain, sink: Any):
        self.settings = settings
        self.worker_main = worker_main
        self.sink = sink
        self.limiter = _Limiter(settings.log_interval)
        self.pid = os.getpid()
        self.started = time.monotonic()
        self.started_wall = time.time()
        # stdin
        self.stdin_open = True
        self.tail = b""
        self.skipping = False
        self.pipe_size: Optional[int] = None
        # spool: bytes not yet written to the current worker; resends first
        self.pending: deque[bytes] = deque()
        self.pend_off = 0
        self.pending_bytes = 0
        self.resend_bytes = 0
        # replay: bytes written to the current worker, not acked yet
        self.replay: deque[bytes] = deque()
        self.replay_bytes = 0
        self.replay_start = 0  # worker offset of replay[0][0]
        self.head_clean = True  # the byte before replay[0][0] is a newline
        # counters
        self.lines_read = 0
        self.bytes_read = 0
        self.lines_forwarded = 0
        self.lines_replayed = 0
        self.lines_dropped = 0
        self.too_long_lines = 0
        self.unprotected_lines = 0
        self.lines_lost = 0
        # worker
        self.worker: Optional[_Worker] = None
        self.restart_at: Optional[float] = None
        self.backoff_until_wall: Optional[float] = None
        self.next_backoff = 0.0
        self.fast_recycles = 0
        self.recycles = 0
        self.restarts: deque[float] = deque()
        self.last_exit: Optional[dict] = None
        # lifecycle
        self.draining = False
        self.drain_deadline: Optional[float] = None
        self.finishing = False
        self.final_deadline = 0.0
        self.final_starts = 0
        self.all_acked_at: Optional[float] = None
        self.exit_code = 0
        # signals
        self.signals: list[int] = []
        self.wake_r = -1
        self.wake_w = -1
        self.old_handlers: dict[int, Any] = {}
        self.old_wakeup = -1
        self.max_sleep = 1.0
        # status file
        self.status_path: Optional[str] = None
        self.status_warned = False
        self.next_status = 0.0
        self.later: list[str] = []
        self.later_done = False
        self.state_seen = ""

    # -- life cycle ---------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self._setup()
        except Exception as exc:  # pragma: no cover - defensive
            warn(f"supervisor set-up failed (continuing): {exc!r}", logging.ERROR)
        try:
            while True:
                try:
                    if self._step():
                        break
                except Exception as exc:  # the loop never dies: log, breathe, go on
                    self.limiter.say("internal", f"supervisor error (continuing): {exc!r}",
                                     time.monotonic())
                    time.sleep(0.01)
        finally:
            self._teardown()
        return self.exit_code

    def _setup(self) -> None:
        os.environ.pop("NOTIFY_SOCKET", None)  # httpd's, never ours to write to
        self._install_signals()
        self.pipe_size = set_pipe_size(0, self.settings.pipe_size)
        self.nice = set_nice(self.settings.nice)  # before --user: raising priority needs root
        _load_prctl()  # imports ctypes: before --user, which may not read the Python install
        self._prepare_status_and_user()
        self._start_worker(time.monotonic())
        self._write_status()

    def _install_signals(self) -> None:
        try:
            self.wake_r, self.wake_w = os.pipe()
            os.set_blocking(self.wake_r, False)
            os.set_blocking(self.wake_w, False)
            self.old_wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
            for sig in _HANDLED:
                self.old_handlers[sig] = signal.signal(sig, self._on_signal)
            for sig in (signal.SIGPIPE, signal.SIGUSR1, signal.SIGUSR2):
                self.old_handlers[sig] = signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError) as exc:  # not the main thread: poll often instead
            warn(f"signal handling unavailable ({exc}); polling")
            self.max_sleep = 0.05

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def _teardown(self) -> None:
        try:
            if self.old_handlers:
                signal.set_wakeup_fd(self.old_wakeup)
                for sig, handler in self.old_handlers.items():
                    signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        except (ValueError, OSError, TypeError):
            pass
        for fd in (self.wake_r, self.wake_w):
            _close(fd)
        w = self.worker
        if w is not None:
            _close(w.data_w)
            _close(w.ctrl_r)
        if self.status_path:
            try:
                os.unlink(self.status_path)
            except OSError:
                pass
        if self.sink is not None:
            try:
                self.sink.close()
            except Exception as exc:
                warn(f"raw archive close failed: {exc}")

    # -- privileges and status directory ------------------------------------------------------

    def _prepare_status_and_user(self) -> None:
        s = self.settings
        uid = gid = None
        username = s.user
        if username:
            try:
                import grp
                import pwd

                pw = pwd.getpwnam(username)
                uid, gid = pw.pw_uid, pw.pw_gid
                if s.group:
                    gid = grp.getgrnam(s.group).gr_gid
            except (KeyError, ImportError) as exc:
                self.later.append(f"unknown --user/--group ({exc}); not switching user")
                uid = gid = None
        elif s.group:
            self.later.append("--group is ignored without --user")
        # the status directory, owned by the user we are about to become
        directory = s.status_dir
        if directory:
            created = False
            try:
                if not os.path.isdir(directory):
                    os.makedirs(directory, mode=0o755, exist_ok=True)
                    created = True
                    os.chmod(directory, 0o755)  # makedirs' mode is filtered by the umask
                if created and uid is not None and os.geteuid() == 0:
                    os.chown(directory, uid, gid)
            except OSError as exc:
                self.later.append(f"status directory {directory}: {exc.strerror or exc}; "
                                  "no status file")
                self.status_warned = True
            self.status_path = os.path.join(directory, f"supervisor-{self.pid}.json")
        # privileges
        if os.geteuid() != 0:
            if uid is not None and uid != os.geteuid():
                self.later.append(f"--user {username} ignored: not running as root")
            return
        if uid is None:
            if not username:
                self.later.append("running as root; set --user to drop privileges")
            return
        try:
            os.initgroups(username, gid)
            os.setgid(gid)
            os.setuid(uid)
        except OSError as exc:
            self.later.append(f"cannot switch to user {username}: {exc.strerror or exc}; "
                              "still running as root")

    def _say_later(self, now: float) -> None:
        if not self.later_done and now - self.started >= QUIET_START:
            self.later_done = True
            if not self.finishing:
                for message in self.later:
                    warn(message)
            self.later.clear()

    # -- the loop -----------------------------------------------------------------------------

    def _step(self) -> bool:
        """One turn of the loop; True when the supervisor should return."""
        now = time.monotonic()
        w = self.worker
        poller = select.poll()
        if self.stdin_open:
            poller.register(0, select.POLLIN)
        if self.wake_r >= 0:
            poller.register(self.wake_r, select.POLLIN)
        if w is not None and w.ctrl_r >= 0:
            poller.register(w.ctrl_r, select.POLLIN)
        if w is not None and w.data_w >= 0 and self.pending_bytes:
            poller.register(w.data_w, select.POLLOUT)
        timeout = self._timeout(now)
        events = poller.poll(max(0, int(timeout * 1000 + 0.999)))
        ready = {fd for fd, _ in events}

        now = time.monotonic()
        if self.wake_r in ready:
            _drain_fd(self.wake_r)
        self._handle_signals(now)
        self._reap(now)
        w = self.worker
        if w is not None and w.ctrl_r in ready:
            self._read_ctrl(w, now)
        if self.stdin_open and 0 in ready:
            self._read_stdin(now)
        self._write_worker(now)
        return self._timers(now)

    def _timeout(self, now: float) -> float:
        t = min(self.max_sleep, self.next_status - now)
        w = self.worker
        if w is not None:
            if not w.kill_sent:
                t = min(t, w.last_msg + self.settings.heartbeat_timeout - now)
            if w.term_at is not None:
                t = min(t, w.term_at + TERM_GRACE - now)
        elif self.restart_at is not None:
            t = min(t, self.restart_at - now)
        if self.drain_deadline is not None and not self.finishing:
            t = min(t, self.drain_deadline - now)
        if self.finishing:
            t = min(t, self.final_deadline - now)
            if self.all_acked_at is not None:
                t = min(t, self.all_acked_at + EXIT_GRACE - now)
            if self.worker is None:
                t = 0.0
        if not self.later_done:
            t = min(t, self.started + QUIET_START - now)
        return max(0.0, t)

    def _timers(self, now: float) -> bool:
        s = self.settings
        w = self.worker
        if w is not None:
            if not w.kill_sent and now - w.last_msg > s.heartbeat_timeout:
                self.limiter.say("hung", f"worker {w.pid} sent nothing for "
                                 f"{now - w.last_msg:.1f} s: killing it", now)
                w.hung = True
                self._kill(w, signal.SIGKILL)
            elif w.term_at is not None and not w.kill_sent and now >= w.term_at + TERM_GRACE:
                self._kill(w, signal.SIGKILL)
        if (self.draining and not self.finishing and self.drain_deadline is not None
                and now >= self.drain_deadline):
            warn(f"no end of input {s.drain_timeout:g} s after SIGTERM: stopping")
            self._begin_finish(now, eof=False)
        done = False
        if self.finishing:
            done = self._finish_step(now)
        elif self.worker is None:
            if self.restart_at is None:
                self.restart_at = now
            if now >= self.restart_at:
                self._start_worker(now)
        self._say_later(now)
        if not done and (now >= self.next_status or self._state() != self.state_seen):
            self._write_status()
        return done

    # -- signals ------------------------------------------------------------------------------

    def _handle_signals(self, now: float) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT):
                if not self.draining and not self.finishing:
                    # httpd's one SIGTERM: old children may still write; read on until EOF.
                    self.draining = True
                    self.drain_deadline = now + max(0.0, self.settings.drain_timeout)
                elif not self.finishing:  # a second one (an operator): stop reading now
                    self._begin_finish(now, eof=False)
            elif sig == signal.SIGHUP:
                if self.sink is not None:
                    try:
                        self.sink.reopen()
                    except Exception as exc:
                        self.limiter.say("sink", f"raw archive reopen failed: {exc}", now)
            # SIGCHLD: _reap runs every turn

    # -- stdin --------------------------------------------------------------------------------

    def _read_stdin(self, now: float) -> None:
        # fd 0 stays blocking: its open file description is shared with httpd, which keeps the
        # read end for respawns.  It is read once per poll() that says it is readable, and the
        # supervisor is its only reader, so the read cannot block.
        try:
            data = os.read(0, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.limiter.say("stdin", f"cannot read the log ({exc.strerror or exc}): "
                             "treating it as end of input", now)
            data = b""
        if not data:
            self._begin_finish(now, eof=True)
            return
        self.bytes_read += len(data)
        self._take(data, now)
        if (len(data) < COALESCE_BELOW and (self.pipe_size or 0) >= COALESCE_MIN_PIPE
                and not self.signals and not self.draining):
            # Let the pipe fill for a moment so the next read carries hundreds of lines:
            # at 4-15 lines per read a line cost 17-24 µs of CPU in wake-ups, at 200-600
            # it costs 3.4 µs (bench/PROFILE.md).  Only with a pipe that holds the pause at
            # full speed (1 MiB is about 160 ms of log at 25,000 requests/s).
            time.sleep(COALESCE_DELAY)

    def _take(self, data: bytes, now: float) -> None:
        """Cut *data* (appended to the partial tail) at its last newline; accept the lines."""
        if self.skipping:  # the rest of a too-long line: drop through its newline
            cut = data.find(b"\n")
            if cut < 0:
                return
            self.skipping = False
            data = data[cut + 1:]
            if not data:
                return
        if self.tail:
            first = data.find(b"\n")
            if first >= 0 and len(self.tail) + first > MAX_LINE:
                # the partial line ends here but is too long: drop it, keep the rest
                self.tail = b""
                self._too_long(now)
                data = data[first + 1:]
                if not data:
                    return
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
            return
        if cut == len(data) - 1:
            self.tail = b""
            self._accept(data, now)
        else:
            self.tail = data[cut + 1:]
            self._accept(data[:cut + 1], now)

    def _too_long(self, now: float) -> None:
        self.too_long_lines += 1
        self.limiter.say("toolong", f"line longer than {MAX_LINE} bytes dropped "
                         f"({self.too_long_lines} so far)", now)

    def _accept(self, chunk: bytes, now: float) -> None:
        """Archive a chunk of complete lines, then spool it for the worker (or drop it)."""
        lines = chunk.count(b"\n")
        self.lines_read += lines
        if self.sink is not None:
            try:
                self.sink.write(chunk)
            except Exception as exc:
                self.limiter.say("sink", f"raw archive write failed: {exc}", now)
        if self.pending_bytes - self.resend_bytes + len(chunk) > self.settings.spool_max:
            self.lines_dropped += lines
            self.limiter.say("drop", f"worker is not keeping up: spool full "
                             f"({self.settings.spool_max} bytes), {self.lines_dropped} lines "
                             "dropped so far", now)
            return
        self.pending.append(chunk)
        self.pending_bytes += len(chunk)

    def _begin_finish(self, now: float, eof: bool) -> None:
        """End of input (or the drain deadline): stop reading, flush, then exit."""
        if self.finishing:
            return
        self.stdin_open = False
        if self.tail:
            if eof:
                self._accept(self.tail + b"\n", now)
            else:
                self.lines_dropped += 1
        self.tail = b""
        self.finishing = True
        self.final_deadline = now + FINAL_TIMEOUT
        self.restart_at = None
        self.backoff_until_wall = None

    # -- the data pipe ------------------------------------------------------------------------

    def _write_worker(self, now: float) -> None:
        w = self.worker
        if w is None or w.data_w < 0:
            return
        budget = 8 * WRITE_SIZE
        while self.pending_bytes and budget > 0:
            buffers: list = []
            total = 0
            off = self.pend_off
            for chunk in self.pending:
                buffers.append(memoryview(chunk)[off:] if off else chunk)
                total += len(chunk) - off
                off = 0
                if total >= WRITE_SIZE or len(buffers) >= _IOV_MAX:
                    break
            try:
                n = os.writev(w.data_w, buffers)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EPIPE: the worker is gone or closed its end
                if exc.errno != errno.EPIPE:
                    self.limiter.say("datapipe", f"write to worker {w.pid} failed: {exc}", now)
                _close(w.data_w)
                w.data_w = -1
                if w.term_at is None and not w.kill_sent:
                    self._kill(w, signal.SIGTERM)
                return
            finally:
                del buffers
            self._advance(w, n)
            budget -= n
            if n < total:
                return
        if self.finishing and not self.pending_bytes and not w.eof_sent:
            _close(w.data_w)
            w.data_w = -1
            w.eof_sent = True

    def _advance(self, w: _Worker, n: int) -> None:
        """Move *n* written bytes from the head of the spool to the replay buffer."""
        while n > 0:
            chunk = self.pending[0]
            off = self.pend_off
            take = min(len(chunk) - off, n)
            end = off + take
            resent = min(take, self.resend_bytes)
            if resent:
                self.lines_replayed += chunk.count(b"\n", off, off + resent)
                self.resend_bytes -= resent
            if take > resent:
                self.lines_forwarded += chunk.count(b"\n", off + resent, end)
            self.replay.append(chunk if off == 0 and end == len(chunk) else chunk[off:end])
            self.replay_bytes += take
            w.written += take
            self.pending_bytes -= take
            n -= take
            if end == len(chunk):
                self.pending.popleft()
                self.pend_off = 0
            else:
                self.pend_off = end
        forgotten = 0
        while self.replay_bytes > self.settings.replay_max and self.replay:
            piece = self.replay.popleft()
            self.replay_bytes -= len(piece)
            self.replay_start += len(piece)
            forgotten += piece.count(b"\n")
            self.head_clean = piece.endswith(b"\n")
        if forgotten:
            self.unprotected_lines += forgotten
            self.limiter.say("unprotected", "worker is not confirming flushes: replay buffer "
                             f"full ({self.settings.replay_max} bytes), {self.unprotected_lines} "
                             "lines would be lost if it crashed", time.monotonic())

    def _on_ack(self, w: _Worker, offset: int) -> None:
        """Free the replay buffer up to the worker's confirmed *offset*."""
        if offset <= w.acked:
            return
        offset = min(offset, w.written)
        w.acked = offset
        free = offset - self.replay_start
        while free > 0 and self.replay:
            piece = self.replay[0]
            if len(piece) <= free:
                self.replay.popleft()
                size = len(piece)
                self.head_clean = piece.endswith(b"\n")
            else:
                self.replay[0] = piece[free:]
                size = free
                self.head_clean = piece[free - 1] == 0x0A
            self.replay_bytes -= size
            self.replay_start += size
            free -= size

    def _requeue(self) -> None:
        """The worker is gone: put its unacked bytes back at the head of the spool."""
        if self.pend_off:
            self.pending[0] = self.pending[0][self.pend_off:]
            self.pend_off = 0
        if self.replay:
            self.pending.extendleft(reversed(self.replay))
            self.pending_bytes += self.replay_bytes
            self.resend_bytes += self.replay_bytes
            self.replay.clear()
            self.replay_bytes = 0
        self.replay_start = 0
        if not self.head_clean:  # the head is the middle of a line: drop through its newline
            self.head_clean = True
            while self.pending:
                chunk = self.pending[0]
                cut = chunk.find(b"\n")
                size = len(chunk) if cut < 0 else cut + 1
                if size == len(chunk):
                    self.pending.popleft()
                else:
                    self.pending[0] = chunk[size:]
                self.pending_bytes -= size
                self.resend_bytes -= min(self.resend_bytes, size)
                if cut >= 0:
                    self.unprotected_lines += 1
                    break

    # -- the control pipe ---------------------------------------------------------------------

    def _read_ctrl(self, w: _Worker, now: float) -> None:
        while w.ctrl_r >= 0:
            try:
                data = os.read(w.ctrl_r, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                _close(w.ctrl_r)
                w.ctrl_r = -1
                return
            w.last_msg = now
            w.last_msg_wall = time.time()
            *lines, w.ctrl_buf = (w.ctrl_buf + data).split(b"\n")
            if len(w.ctrl_buf) > _CTRL_LINE_MAX:
                w.ctrl_buf = b""
                lines.append(b"?")
            for line in lines:
                if line.startswith(b"A "):
                    try:
                        self._on_ack(w, int(line[2:]))
                        continue
                    except ValueError:
                        pass
                elif line == b"H" or not line:
                    continue
                self.limiter.say("ctrl", f"worker {w.pid} sent an unknown control message "
                                 f"{line[:60]!r}", now)

    # -- forking and reaping ------------------------------------------------------------------

    def _start_worker(self, now: float) -> None:
        self.restart_at = None
        self.backoff_until_wall = None
        fds: list[int] = []
        try:
            data_r, data_w = os.pipe()
            fds += [data_r, data_w]
            ctrl_r, ctrl_w = os.pipe()
            fds += [ctrl_r, ctrl_w]
            os.set_blocking(data_w, False)
            os.set_blocking(ctrl_r, False)
            pipe_size = set_pipe_size(data_w, self.settings.pipe_size)
            _load_prctl()
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
            try:
                pid = os.fork()
                if pid == 0:
                    self._child(data_r, ctrl_w, (data_w, ctrl_r), mask)  # never returns
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        except OSError as exc:
            for fd in fds:
                _close(fd)
            self.limiter.say("fork", f"cannot start a worker: {exc.strerror or exc}", now)
            self._schedule_restart(now, crashed_after=0.0)
            return
        _close(data_r)
        _close(ctrl_w)
        w = _Worker(pid, data_w, ctrl_r, now, time.time())
        w.pipe_size = pipe_size
        self.worker = w
        self.replay_start = 0
        self.all_acked_at = None

    def _child(self, data_r: int, ctrl_w: int, parent_fds: tuple, mask: Any) -> None:
        """In the forked worker: isolate from httpd's pipe and the supervisor, run worker_main."""
        code = EXIT_WORKER_EXCEPTION
        try:
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1,
                            signal.SIGUSR2):
                    signal.signal(sig, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                for fd in (*parent_fds, self.wake_r, self.wake_w):
                    _close(fd)
                null = os.open(os.devnull, os.O_RDONLY)
                if null != 0:
                    os.dup2(null, 0)
                    os.close(null)
                if _prctl is not None:
                    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
                if os.getppid() != self.pid:  # the supervisor died before prctl took effect
                    os._exit(1)
                result = self.worker_main(self.settings, data_r, ctrl_w)
                code = 0 if result is None else int(result)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException as exc:
                text = " ".join(str(exc).split())[:300]
                warn(f"worker failed: {type(exc).__name__}: {text}", logging.ERROR)
                code = EXIT_WORKER_EXCEPTION
            if not 0 <= code <= 255:
                code = EXIT_WORKER_EXCEPTION
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
        finally:
            os._exit(code)

    def _kill(self, w: _Worker, sig: int) -> None:
        try:
            os.kill(w.pid, sig)
        except OSError:
            pass
        if sig == signal.SIGKILL:
            w.kill_sent = True
        elif w.term_at is None:
            w.term_at = time.monotonic()

    def _reap(self, now: float) -> None:
        w = self.worker
        if w is None:
            return
        try:
            pid, status = os.waitpid(w.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: treat as a crash
            pid, status = w.pid, None
        except InterruptedError:
            return
        if pid == 0:
            return
        self._on_exit(w, status, now)

    def _on_exit(self, w: _Worker, status: Optional[int], now: float) -> None:
        self._read_ctrl(w, now)  # its last acks are still in the pipe
        _close(w.ctrl_r)
        _close(w.data_w)
        self.worker = None
        if self.status_path:  # a killed worker could not remove its own status file
            try:
                os.unlink(os.path.join(os.path.dirname(self.status_path), f"worker-{w.pid}.json"))
            except OSError:
                pass
        wall = time.time()
        code = sig = None
        if status is not None and os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            self.last_exit = {"signal": sig, "time": wall}
            what = f"was killed by signal {sig}"
        else:
            code = os.WEXITSTATUS(status) if status is not None else -1
            self.last_exit = {"code": code, "time": wall}
            what = f"exited with code {code}"
        if w.hung:
            self.last_exit["hung"] = True
            what = "was killed (no heartbeat)"
        lived = now - w.started
        self.next_status = now  # report the exit promptly
        if self.finishing and code == 0 and w.eof_sent:
            # It read EOF, flushed and said so by exiting 0: whatever it did not ack is done.
            self.replay.clear()
            self.replay_bytes = 0
            return
        self._requeue()
        if self.finishing:
            self.limiter.say("crash", f"worker {w.pid} {what} while stopping", now)
            return  # _finish_step decides
        if code == EXIT_RECYCLE and not w.hung:
            self.recycles += 1
            self.fast_recycles = self.fast_recycles + 1 if lived < FAST_RECYCLE else 0
            if self.fast_recycles < FAST_RECYCLE_LIMIT:
                self._start_worker(now)
                return
            what = f"asked to be recycled {self.fast_recycles} times in a row within " \
                   f"{FAST_RECYCLE:g} s of starting (--max-rss too low?)"
        elif code == 0:
            what = "exited before the end of input"
        self.restarts.append(wall)
        # A worker that confirmed a flush was doing its job (killed, hung, out of memory):
        # restart it at once.  Back-off is for workers that die before getting anywhere.
        delay = self._schedule_restart(now, crashed_after=STABLE_AFTER if w.acked else lived)
        when = "now" if delay == 0 else f"in {delay:g} s"
        self.limiter.say("crash", f"worker {w.pid} {what}; restarting {when} "
                         f"({len(self.restarts)} restarts in the last hour)", now)
        if delay == 0:
            self._start_worker(now)

    def _schedule_restart(self, now: float, crashed_after: float) -> float:
        """Exponential back-off: at once, then 0.25 s doubling to 30 s; reset by a worker that
        lived 10 s or confirmed a flush (*crashed_after* is then STABLE_AFTER)."""
        if crashed_after >= STABLE_AFTER:
            self.next_backoff = 0.0
        delay = self.next_backoff
        self.next_backoff = BACKOFF_FIRST if delay == 0 else min(delay * 2, BACKOFF_CAP)
        self.restart_at = now + delay
        self.backoff_until_wall = time.time() + delay if delay else None
        return delay

    # -- stopping -----------------------------------------------------------------------------

    def _finish_step(self, now: float) -> bool:
        """After end of input: get every byte confirmed, then return True."""
        w = self.worker
        if w is None:
            if not self.pending_bytes:
                return self._done(0)
            if self.final_starts >= FINAL_RESTARTS:
                return self._give_up(now)
            self.final_starts += 1
            self.final_deadline = now + FINAL_TIMEOUT
            self._start_worker(now)
            self._write_worker(now)
            return False
        if w.eof_sent and not self.pending_bytes and not self.replay_bytes:
            # all confirmed: its exit is a formality
            if self.all_acked_at is None:
                self.all_acked_at = now
            elif now - self.all_acked_at >= EXIT_GRACE:
                self._kill(w, signal.SIGTERM)
                return self._done(0)
        if now >= self.final_deadline:
            if w.term_at is None:
                self.limiter.say("final", f"worker {w.pid} did not finish within "
                                 f"{FINAL_TIMEOUT:g} s of the end of input: stopping it", now)
                self._kill(w, signal.SIGTERM)
            elif w.kill_sent and now >= w.term_at + TERM_GRACE + 0.5:
                return self._give_up(now)  # not even reaped after SIGKILL
        return False

    def _give_up(self, now: float) -> bool:
        lost = self.pending_lines() + sum(p.count(b"\n") for p in self.replay)
        self.lines_lost += lost
        warn(f"stopping with {lost} lines not confirmed by a worker (not counted)", logging.ERROR)
        return self._done(1 if lost else 0)

    def _done(self, code: int) -> bool:
        self.exit_code = code
        return True

    def pending_lines(self) -> int:
        """Lines in the spool (unwritten), counted now."""
        total = sum(c.count(b"\n") for c in self.pending)
        if self.pend_off and self.pending:
            total -= self.pending[0].count(b"\n", 0, self.pend_off)
        return total

    # -- status file --------------------------------------------------------------------------

    def _state(self) -> str:
        if self.finishing:
            return "stopping"
        if self.draining:
            return "draining"
        if self.worker is None:
            return "backoff"
        return "running"

    def status(self) -> dict:
        """The status file's contents (schema in the module docstring)."""
        wall = time.time()
        while self.restarts and self.restarts[0] < wall - 3600:
            self.restarts.popleft()
        w = self.worker
        return {
            "schema": STATUS_SCHEMA,
            "role": "supervisor",
            "pid": self.pid,
            "started": self.started_wall,
            "updated": wall,
            "state": self._state(),
            "argv": list(sys.argv),
            "memcached": self.settings.memcached,
            "pipe_size": self.pipe_size,
            "nice": self.nice,
            "data_pipe_size": w.pipe_size if w else None,
            "lines_read": self.lines_read,
            "bytes_read": self.bytes_read,
            "lines_forwarded": self.lines_forwarded,
            "lines_replayed": self.lines_replayed,
            "lines_dropped": self.lines_dropped,
            "too_long_lines": self.too_long_lines,
            "unprotected_lines": self.unprotected_lines,
            "lines_lost": self.lines_lost,
            "spool_bytes": self.pending_bytes,
            "spool_max": self.settings.spool_max,
            "replay_bytes": self.replay_bytes,
            "worker_pid": w.pid if w else None,
            "worker_started": w.started_wall if w else None,
            "worker_last_message": w.last_msg_wall if w else None,
            "worker_restarts": list(self.restarts),
            "worker_recycles": self.recycles,
            "crash_backoff_until": self.backoff_until_wall if w is None else None,
            "last_worker_exit": self.last_exit,
        }

    def _write_status(self) -> None:
        now = time.monotonic()
        self.next_status = now + STATUS_INTERVAL
        self.state_seen = self._state()
        self.limiter.flush(now)
        if not self.status_path:
            return
        directory = os.path.dirname(self.status_path)
        temporary = os.path.join(directory, f".supervisor-{self.pid}.json.tmp")
        try:
            data = json.dumps(self.status(), separators=(",", ":")).encode()
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                             0o644)
            except FileNotFoundError:
                os.makedirs(directory, mode=0o755, exist_ok=True)
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                             0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(temporary, self.status_path)
        except OSError as exc:
            if not self.status_warned:
                self.status_warned = True
                message = f"cannot write the status file {self.status_path}: " \
                          f"{exc.strerror or exc}"
                if self.later_done:
                    warn(message)
                else:
                    self.later.append(message)


_prctl: Optional[Callable[..., int]] = None
_prctl_loaded = False


def _load_prctl() -> None:
    """Look up libc's prctl once, in the supervisor (the child must not import anything)."""
    global _prctl, _prctl_loaded
    if _prctl_loaded:
        return
    _prctl_loaded = True
    try:
        import ctypes

        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):  # not Linux: the worker checks its parent
        _prctl = None


def _close(fd: int) -> None:
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def _drain_fd(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
