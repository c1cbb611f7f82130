"""The worker as the supervisor sees it: fork it, hear it, stop it, reap it, restart it.

:class:`WorkerHandle` is one forked worker: :meth:`WorkerHandle.spawn` forks it
with the isolation the protocol promises (module docstring of
:mod:`logpipe.daemon.supervisor`), and the handle holds the supervisor's end of
its two pipes, reads its control messages (heartbeats and acks), signals it,
and reaps it.  :class:`Restarts` is the restart policy: crash back-off,
recycles, and the restart history the status file reports.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections import deque
from typing import Any, Callable, Optional

from logpipe.config import Settings, warn
from logpipe.daemon import protocol as P
from logpipe.daemon.supervisor import system
from logpipe.daemon.supervisor.spool import Spool

__all__ = ["WorkerHandle", "Restarts", "WorkerMain", "BACKOFF_FIRST", "BACKOFF_CAP",
           "STABLE_AFTER", "FAST_RECYCLE", "FAST_RECYCLE_LIMIT", "TERM_GRACE", "HANDLED_SIGNALS"]

WorkerMain = Callable[[Settings, int, int], int]

#: Crash back-off: first delay, cap, and the lifetime that resets it (seconds).
BACKOFF_FIRST = 0.25
BACKOFF_CAP = 30.0
STABLE_AFTER = 10.0
#: Recycles (exit 3) of workers that lived less than FAST_RECYCLE seconds,
#: this many times in a row, are handled as a crash loop (--max-rss too low).
FAST_RECYCLE = 1.0
FAST_RECYCLE_LIMIT = 5
#: Bytes per write to the worker's data pipe.
WRITE_SIZE = 1 << 20
try:
    _IOV_MAX = max(16, min(1024, os.sysconf("SC_IOV_MAX")))
except (ValueError, OSError, AttributeError):  # pragma: no cover
    _IOV_MAX = 16
#: Seconds between SIGTERM and SIGKILL when a worker must go.
TERM_GRACE = 1.0
#: The signals the supervisor handles; blocked around fork so the child never runs its handlers.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


class WorkerHandle:
    """One forked worker, seen from the supervisor.

    Attributes: ``pid``; ``data_w`` / ``ctrl_r``, the supervisor's ends of the data and
    control pipes (-1 once closed); ``started`` / ``last_msg`` (monotonic seconds) and
    ``started_wall`` / ``last_msg_wall`` (Unix times, for the status file); ``acked``
    (it confirmed a flush at least once); ``eof_sent``; ``hung`` (killed for silence);
    ``term_at`` (when SIGTERM was sent); ``kill_sent``; ``pipe_size`` (capacity of the
    data pipe, bytes).
    """

    def __init__(self, pid: int, data_w: int, ctrl_r: int, now: float, wall: float):
        self.pid = pid
        self.data_w = data_w
        self.ctrl_r = ctrl_r
        self.ctrl_buf = b""
        self.started = now
        self.started_wall = wall
        self.last_msg = now
        self.last_msg_wall: Optional[float] = None
        self.acked = False
        self.eof_sent = False
        self.hung = False
        self.term_at: Optional[float] = None
        self.kill_sent = False
        self.pipe_size: Optional[int] = None

    @classmethod
    def spawn(cls, settings: Settings, worker_main: WorkerMain, close_in_child: tuple,
              now: float) -> "WorkerHandle":
        """Fork a worker running ``worker_main(settings, data_r, ctrl_w)``.

        Args:
            settings: the daemon's settings (``pipe_size``: the data pipe's capacity, bytes).
            worker_main: the worker's body; its return value is the exit code.
            close_in_child: the supervisor's own fds the child must not keep (wake-up pipe).
            now: monotonic time.

        Raises:
            OSError: no pipe or no fork (the caller backs off and retries).
        """
        fds: list[int] = []
        try:
            data_r, data_w = os.pipe()
            fds += [data_r, data_w]
            ctrl_r, ctrl_w = os.pipe()
            fds += [ctrl_r, ctrl_w]
            os.set_blocking(data_w, False)
            os.set_blocking(ctrl_r, False)
            pipe_size = system.set_pipe_size(data_w, settings.pipe_size)
            system.load_prctl()
            parent = os.getpid()
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
            try:
                pid = os.fork()
                if pid == 0:  # never returns
                    _child(settings, worker_main, data_r, ctrl_w,
                           (data_w, ctrl_r, *close_in_child), mask, parent)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        except OSError:
            for fd in fds:
                system.close_fd(fd)
            raise
        system.close_fd(data_r)
        system.close_fd(ctrl_w)
        handle = cls(pid, data_w, ctrl_r, now, time.time())
        handle.pipe_size = pipe_size
        return handle

    # -- hearing it -----------------------------------------------------------------------------

    def read_control(self, now: float) -> list[bytes]:
        """Read what the worker sent; return its control lines (without ``\\n``).

        Any message refreshes ``last_msg``.  At EOF the control pipe is closed.  A line
        longer than CTRL_LINE_MAX is garbage: it is replaced by ``b"?"`` (an unknown message).
        """
        lines: list[bytes] = []
        while self.ctrl_r >= 0:
            try:
                data = os.read(self.ctrl_r, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                system.close_fd(self.ctrl_r)
                self.ctrl_r = -1
                break
            self.last_msg = now
            self.last_msg_wall = time.time()
            *got, self.ctrl_buf = (self.ctrl_buf + data).split(b"\n")
            lines += got
            if len(self.ctrl_buf) > P.CTRL_LINE_MAX:
                self.ctrl_buf = b""
                lines.append(b"?")
        return lines

    def silent_for(self, now: float) -> float:
        """Seconds since the worker last sent anything."""
        return now - self.last_msg

    # -- talking to it --------------------------------------------------------------------------

    def feed(self, spool: Spool) -> tuple[int, Optional[OSError]]:
        """Write the head of *spool* to the data pipe until it is empty, the pipe is full, or
        8 x WRITE_SIZE bytes went (the loop must come back to stdin).

        Returns:
            (lines the replay buffer forgot meanwhile, the write error or None).  On an error
            (EPIPE: the worker is gone or closed its end) the data pipe is closed and the
            worker asked to stop (SIGTERM).
        """
        forgotten = 0
        budget = 8 * WRITE_SIZE
        while spool.pending_bytes and budget > 0:
            buffers, total = spool.buffers(WRITE_SIZE, _IOV_MAX)
            try:
                n = os.writev(self.data_w, buffers)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.close_data()
                if self.term_at is None and not self.kill_sent:
                    self.kill(signal.SIGTERM)
                return forgotten, exc
            finally:
                del buffers
            forgotten += spool.advance(n)
            budget -= n
            if n < total:
                break
        return forgotten, None

    def send_eof(self) -> None:
        """Close the data pipe: the worker reads EOF, flushes and exits 0."""
        self.close_data()
        self.eof_sent = True

    def close_data(self) -> None:
        """Close the supervisor's end of the data pipe (after EPIPE, or to send EOF)."""
        system.close_fd(self.data_w)
        self.data_w = -1

    def kill(self, sig: int) -> None:
        """Send *sig*; remember when SIGTERM went (SIGKILL follows after TERM_GRACE)."""
        try:
            os.kill(self.pid, sig)
        except OSError:
            pass
        if sig == signal.SIGKILL:
            self.kill_sent = True
        elif self.term_at is None:
            self.term_at = time.monotonic()

    # -- reaping it -----------------------------------------------------------------------------

    def reap(self) -> tuple[bool, Optional[int]]:
        """``waitpid(WNOHANG)``: (exited, wait status).  A child reaped elsewhere counts as
        exited with status None (a crash)."""
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return True, None
        except InterruptedError:
            return False, None
        return pid != 0, status

    def close(self) -> None:
        """Close the supervisor's ends of both pipes."""
        system.close_fd(self.ctrl_r)
        system.close_fd(self.data_w)
        self.ctrl_r = self.data_w = -1

    def exit_record(self, status: Optional[int], wall: float) -> tuple[dict, Optional[int], str]:
        """(``last_worker_exit`` record, exit code or None when killed by a signal, words)."""
        if status is not None and os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            record = {P.EXIT_SIGNAL: sig, P.EXIT_TIME: wall}
            code, what = None, f"was killed by signal {sig}"
        else:
            code = os.WEXITSTATUS(status) if status is not None else -1
            record = {P.EXIT_CODE: code, P.EXIT_TIME: wall}
            what = f"exited with code {code}"
        if self.hung:
            record[P.EXIT_HUNG] = True
            what = "was killed (no heartbeat)"
        return record, code, what


def _child(settings: Settings, worker_main: WorkerMain, data_r: int, ctrl_w: int,
           close: tuple, mask: Any, parent: int) -> None:
    """In the forked worker: isolate from httpd's pipe and the supervisor, run worker_main."""
    code = P.EXIT_WORKER_EXCEPTION
    try:
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1,
                        signal.SIGUSR2):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for fd in close:
                system.close_fd(fd)
            null = os.open(os.devnull, os.O_RDONLY)
            if null != 0:
                os.dup2(null, 0)
                os.close(null)
            if system.prctl is not None:
                system.prctl(system.PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent:  # the supervisor died before prctl took effect
                os._exit(P.EXIT_ORPHANED)
            result = worker_main(settings, data_r, ctrl_w)
            code = 0 if result is None else int(result)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:
            text = " ".join(str(exc).split())[:300]
            warn(f"worker failed: {type(exc).__name__}: {text}", logging.ERROR)
            code = P.EXIT_WORKER_EXCEPTION
        if not 0 <= code <= 255:
            code = P.EXIT_WORKER_EXCEPTION
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    finally:
        os._exit(code)


class Restarts:
    """When to start the next worker: crash back-off, recycles, and the restart history.

    A crashed worker that had confirmed a flush is restarted at once (killed, hung, out of
    memory: it was working); one that dies before its first ack is a crash loop, and
    restarts back off 0.25 s doubling to 30 s.  Recycles (exit 3) restart at once, unless
    FAST_RECYCLE_LIMIT workers in a row asked within FAST_RECYCLE seconds of starting.
    """

    def __init__(self) -> None:
        self.restart_at: Optional[float] = None  # monotonic time of the next start
        self.backoff_until_wall: Optional[float] = None  # the same, Unix time, when waiting
        self.next_backoff = 0.0
        self.fast_recycles = 0
        self.recycles = 0
        self.history: deque[float] = deque()  # Unix times of restarts after crashes/hangs

    def schedule(self, now: float, crashed_after: float) -> float:
        """Exponential back-off: at once, then 0.25 s doubling to 30 s; reset by a worker that
        lived 10 s or confirmed a flush (*crashed_after* is then STABLE_AFTER).  Returns the
        delay in seconds."""
        if crashed_after >= STABLE_AFTER:
            self.next_backoff = 0.0
        delay = self.next_backoff
        self.next_backoff = BACKOFF_FIRST if delay == 0 else min(delay * 2, BACKOFF_CAP)
        self.restart_at = now + delay
        self.backoff_until_wall = time.time() + delay if delay else None
        return delay

    def recycle(self, lived: float) -> bool:
        """A worker asked to be recycled after *lived* seconds: True to start the next at once,
        False when this is a crash loop in disguise (``--max-rss`` too low)."""
        self.recycles += 1
        self.fast_recycles = self.fast_recycles + 1 if lived < FAST_RECYCLE else 0
        return self.fast_recycles < FAST_RECYCLE_LIMIT

    def crashed(self, wall: float) -> int:
        """Record a restart after a crash at Unix time *wall*; return restarts in the last hour."""
        self.history.append(wall)
        return len(self.history)

    def cancel(self) -> None:
        """Nothing is scheduled any more (a worker was started, or the supervisor stops)."""
        self.restart_at = None
        self.backoff_until_wall = None

    def recent(self, wall: float) -> list[float]:
        """Restart times within the hour before Unix time *wall*."""
        while self.history and self.history[0] < wall - 3600:
            self.history.popleft()
        return list(self.history)
