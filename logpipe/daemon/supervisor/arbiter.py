"""The supervisor's main loop: the lifecycle httpd drives, over the parts that do the work.

:class:`Supervisor` owns one of each part and moves the process through its
lifecycle (:class:`logpipe.daemon.protocol.State`), as httpd drives it
(reference/apache-piped-logs.md §1.3):

* **start** (:meth:`Supervisor.start`): signals, pipe size, niceness, status
  directory and ``--user``, the first worker.  State ``running`` (``backoff``
  when no worker could be started).
* **run** (:meth:`Supervisor.step`, one ``poll`` per turn): stdin through the
  :class:`~.intake.Intake` into the :class:`~.spool.Spool`, out to the worker
  (:class:`~.workers.WorkerHandle`); acks free the replay buffer; a dead or
  silent worker is replaced on the :class:`~.workers.Restarts` schedule
  (``backoff`` while waiting).
* **drain** on httpd's one SIGTERM (:meth:`Supervisor.handle_term`): state
  ``draining``, stdin is read on until EOF or ``--drain-timeout``.
* **EOF** (or the drain deadline, or a second SIGTERM): state ``stopping``;
  the worker gets every spooled line and EOF, replacements replay what it did
  not confirm (at most FINAL_RESTARTS more, FINAL_TIMEOUT seconds each).
* **exit** (:meth:`Supervisor.stop`): status file removed, archive closed.

Signals are queued by the handler and dispatched by name on the next turn
(``handle_term``, ``handle_int``, ``handle_hup``, ``handle_chld``), as in
gunicorn's arbiter; ``signal.set_wakeup_fd`` wakes the ``poll``.
"""

from __future__ import annotations

import logging
import errno
import os
import select
import signal
import time
from typing import Any, Optional

from logpipe.config import Settings, warn
from logpipe.daemon import protocol as P
from logpipe.daemon.protocol import State
from logpipe.daemon.supervisor import system
from logpipe.daemon.supervisor.errlog import Limiter, StartupMessages
from logpipe.daemon.supervisor.intake import Intake
from logpipe.daemon.supervisor.signals import SignalQueue
from logpipe.daemon.supervisor.spool import Spool
from logpipe.daemon.supervisor.status import StatusFile, document
from logpipe.daemon.supervisor.workers import (
    FAST_RECYCLE, HANDLED_SIGNALS, STABLE_AFTER, TERM_GRACE, Restarts, WorkerHandle, WorkerMain,
)

__all__ = ["Supervisor", "FINAL_TIMEOUT", "FINAL_RESTARTS", "EXIT_GRACE"]

#: After end of input: how long one worker may take to finish (seconds), and
#: how many more workers may be started to replay unacked lines.
FINAL_TIMEOUT = 5.0
FINAL_RESTARTS = 2
#: Once everything is acked after EOF, how long to wait for the worker's exit.
EXIT_GRACE = 0.2


class Supervisor:
    """The state and loop behind :func:`logpipe.daemon.supervisor.run` (one per process).

    Args:
        settings: the daemon's settings.
        worker_main: the worker's body, run in each forked child.
        sink: the raw archive (``write``, ``reopen``, ``close``) or None.
    """

    #: signal -> the method that handles it (dispatched in the loop, not in the handler)
    SIGNAL_HANDLERS = {signal.SIGTERM: "handle_term", signal.SIGINT: "handle_int",
                       signal.SIGHUP: "handle_hup", signal.SIGCHLD: "handle_chld"}

    def __init__(self, settings: Settings, worker_main: WorkerMain, sink: Any):
        self.settings = settings
        self.worker_main = worker_main
        self.sink = sink
        self.pid = os.getpid()
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.limiter = Limiter(settings.log_interval)
        self.startup = StartupMessages(self.started)
        self.intake = Intake(self.limiter)
        self.spool = Spool(settings.spool_max, settings.replay_max)
        self.restarts = Restarts()
        self.worker: Optional[WorkerHandle] = None
        self.status_file = StatusFile(None)
        self.state = State.BACKOFF  # no worker yet
        self.state_seen: Optional[State] = None  # as last written to the status file
        self.nice: Optional[int] = None
        self.last_exit: Optional[dict] = None
        self.lines_lost = 0
        self.drain_deadline = 0.0
        self.final_deadline = 0.0
        self.final_starts = 0
        self.all_acked_at: Optional[float] = None
        self.exit_code = P.EXIT_OK
        self.signals = SignalQueue()
        self.max_sleep = 1.0  # seconds; shorter when signals cannot wake the poll

    # -- the lifecycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Start, loop until the end of input is confirmed, stop; return the exit code."""
        try:
            self.start()
        except Exception as exc:  # pragma: no cover - defensive
            warn(f"supervisor set-up failed (continuing): {exc!r}", logging.ERROR)
        try:
            while True:
                try:
                    if self.step():
                        break
                except Exception as exc:  # the loop never dies: log, breathe, go on
                    self.limiter.say("internal", f"supervisor error (continuing): {exc!r}",
                                     time.monotonic())
                    time.sleep(0.01)
        finally:
            self.stop()
        return self.exit_code

    def start(self) -> None:
        """Signals, stdin's pipe size, niceness, status directory, privileges, first worker."""
        s = self.settings
        os.environ.pop("NOTIFY_SOCKET", None)  # httpd's, never ours to write to
        if not self.signals.install(HANDLED_SIGNALS, (signal.SIGPIPE, signal.SIGUSR1,
                                                      signal.SIGUSR2)):
            self.max_sleep = 0.05
        self.intake.pipe_size = system.set_pipe_size(self.intake.fd, s.pipe_size)
        self.nice = system.set_nice(s.nice)  # before --user: raising priority needs root
        system.load_prctl()  # imports ctypes: before --user, which may not read the Python install
        usable, messages = system.prepare_status_dir_and_user(s)
        for message in messages:
            self.startup.say(message)
        if s.status_dir:
            self.status_file = StatusFile(
                P.status_path(s.status_dir, P.ROLE_SUPERVISOR, self.pid), warned=not usable)
        self._start_worker(time.monotonic())
        self._write_status()

    def step(self) -> bool:
        """One turn of the loop; True when the supervisor should return."""
        now = time.monotonic()
        w = self.worker
        intake = self.intake
        poller = select.poll()
        if intake.open:
            poller.register(intake.fd, select.POLLIN)
        wake_r = self.signals.wake_r
        if wake_r >= 0:
            poller.register(wake_r, select.POLLIN)
        if w is not None and w.ctrl_r >= 0:
            poller.register(w.ctrl_r, select.POLLIN)
        if w is not None and w.data_w >= 0 and self.spool.pending_bytes:
            poller.register(w.data_w, select.POLLOUT)
        timeout = self._timeout(now)
        events = poller.poll(max(0, int(timeout * 1000 + 0.999)))
        ready = {fd for fd, _ in events}

        now = time.monotonic()
        if wake_r in ready:
            self.signals.drain()
        self.dispatch_signals(now)
        self._reap(now)
        w = self.worker
        if w is not None and w.ctrl_r in ready:
            self._hear(w, now)
        if intake.open and intake.fd in ready:
            self._read_input(now)
        self._write_worker(now)
        return self._timers(now)

    def begin_stop(self, now: float, eof: bool) -> None:
        """End of input (*eof*), the drain deadline or a second SIGTERM: stop reading, get
        every line confirmed, then exit.  At EOF a last line without newline counts; else
        it is cut (``lines_dropped``)."""
        if self.state is State.STOPPING:
            return
        chunk, cut = self.intake.close(eof)
        if chunk:
            self._accept(chunk, 1, now)
        self.spool.drop(cut)
        self.state = State.STOPPING
        self.final_deadline = now + FINAL_TIMEOUT
        self.restarts.cancel()

    def stop(self) -> None:
        """Restore the signal handlers, close the pipes, remove the status file, close the archive."""
        self.signals.restore()
        if self.worker is not None:
            self.worker.close()
        self.status_file.remove()
        if self.sink is not None:
            try:
                self.sink.close()
            except Exception as exc:
                warn(f"raw archive close failed: {exc}")

    # -- signals --------------------------------------------------------------------------------

    def dispatch_signals(self, now: float) -> None:
        """Run ``handle_<name>(now)`` for each queued signal, in arrival order."""
        while self.signals.queue:
            sig = self.signals.pop()
            name = self.SIGNAL_HANDLERS.get(sig)
            if name is not None:
                getattr(self, name)(now)

    def handle_term(self, now: float) -> None:
        """httpd's one SIGTERM: old children may still write; read on until EOF.  A second
        one (an operator) stops reading now."""
        if self.state in (State.RUNNING, State.BACKOFF):
            self.state = State.DRAINING
            self.drain_deadline = now + max(0.0, self.settings.drain_timeout)
        elif self.state is State.DRAINING:
            self.begin_stop(now, eof=False)

    handle_int = handle_term  # a terminal's Ctrl-C: the same as SIGTERM

    def handle_hup(self, now: float) -> None:
        """Reopen the raw archive (log rotation)."""
        if self.sink is not None:
            try:
                self.sink.reopen()
            except Exception as exc:
                self.limiter.say("sink", f"raw archive reopen failed: {exc}", now)

    def handle_chld(self, now: float) -> None:
        """Nothing to do here: the worker is reaped on every turn."""

    # -- input ----------------------------------------------------------------------------------

    def _may_pause(self) -> bool:
        return not self.signals.queue and self.state is not State.DRAINING

    def _read_input(self, now: float) -> None:
        got = self.intake.read(now, self._may_pause)
        if got is None:
            self.begin_stop(now, eof=True)
        elif got[1]:
            self._accept(got[0], got[1], now)

    def _accept(self, chunk: bytes, lines: int, now: float) -> None:
        """Archive a chunk of complete lines, then spool it for the worker (or drop it)."""
        if self.sink is not None:
            try:
                self.sink.write(chunk)
            except Exception as exc:
                self.limiter.say("sink", f"raw archive write failed: {exc}", now)
        if not self.spool.add(chunk, lines):
            self.limiter.say("drop", f"worker is not keeping up: spool full "
                             f"({self.settings.spool_max} bytes), {self.spool.lines_dropped} "
                             "lines dropped so far", now)

    # -- the worker -----------------------------------------------------------------------------

    def _set_worker(self, w: Optional[WorkerHandle]) -> None:
        self.worker = w
        if self.state in (State.RUNNING, State.BACKOFF):
            self.state = State.RUNNING if w is not None else State.BACKOFF

    def _start_worker(self, now: float) -> None:
        self.restarts.cancel()
        try:
            w = WorkerHandle.spawn(self.settings, self.worker_main, (self.signals.wake_r, self.signals.wake_w), now)
        except OSError as exc:
            self.limiter.say("fork", f"cannot start a worker: {exc.strerror or exc}", now)
            self.restarts.schedule(now, crashed_after=0.0)
            return
        self.spool.new_worker()
        self._set_worker(w)
        self.all_acked_at = None

    def _write_worker(self, now: float) -> None:
        w = self.worker
        if w is None or w.data_w < 0:
            return
        forgotten, error = w.feed(self.spool)
        if forgotten:
            self.limiter.say("unprotected", "worker is not confirming flushes: replay "
                             f"buffer full ({self.settings.replay_max} bytes), "
                             f"{self.spool.unprotected_lines} lines would be lost if it crashed",
                             time.monotonic())
        if error is not None and error.errno != errno.EPIPE:
            self.limiter.say("datapipe", f"write to worker {w.pid} failed: {error}", now)
        if (self.state is State.STOPPING and w.data_w >= 0 and not self.spool.pending_bytes
                and not w.eof_sent):
            w.send_eof()

    def _hear(self, w: WorkerHandle, now: float) -> None:
        """Read the worker's control messages: acks free the replay buffer."""
        for line in w.read_control(now):
            message = P.parse_control(line)
            if message is None:
                self.limiter.say("ctrl", f"worker {w.pid} sent an unknown control message "
                                 f"{line[:60]!r}", now)
            elif message[0] == P.MSG_ACK and self.spool.ack(message[1]):
                w.acked = w.acked or self.spool.acked > 0

    def _reap(self, now: float) -> None:
        w = self.worker
        if w is not None:
            exited, wait_status = w.reap()
            if exited:
                self._on_exit(w, wait_status, now)

    def _on_exit(self, w: WorkerHandle, wait_status: Optional[int], now: float) -> None:
        self._hear(w, now)  # its last acks are still in the pipe
        w.close()
        self._set_worker(None)
        if self.status_file.path:  # a killed worker could not remove its own status file
            P.remove_status(P.status_path(os.path.dirname(self.status_file.path),
                                          P.ROLE_WORKER, w.pid))
        wall = time.time()
        self.last_exit, code, what = w.exit_record(wait_status, wall)
        lived = now - w.started
        self.status_file.next_at = now  # report the exit promptly
        if self.state is State.STOPPING and code == 0 and w.eof_sent:
            # It read EOF, flushed and said so by exiting 0: whatever it did not ack is done.
            self.spool.confirm_all()
            return
        self.spool.requeue()
        if self.state is State.STOPPING:
            self.limiter.say("crash", f"worker {w.pid} {what} while stopping", now)
            return  # _finish_step decides
        if code == P.EXIT_RECYCLE and not w.hung:
            if self.restarts.recycle(lived):
                self._start_worker(now)
                return
            what = f"asked to be recycled {self.restarts.fast_recycles} times in a row " \
                   f"within {FAST_RECYCLE:g} s of starting (--max-rss too low?)"
        elif code == 0:
            what = "exited before the end of input"
        recent = self.restarts.crashed(wall)
        # A worker that confirmed a flush was doing its job (killed, hung, out of memory):
        # restart it at once.  Back-off is for workers that die before getting anywhere.
        delay = self.restarts.schedule(now, crashed_after=STABLE_AFTER if w.acked else lived)
        when = "now" if delay == 0 else f"in {delay:g} s"
        self.limiter.say("crash", f"worker {w.pid} {what}; restarting {when} "
                         f"({recent} restarts in the last hour)", now)
        if delay == 0:
            self._start_worker(now)

    # -- timers ---------------------------------------------------------------------------------

    def _timeout(self, now: float) -> float:
        t = min(self.max_sleep, self.status_file.next_at - now)
        w = self.worker
        if w is not None:
            if not w.kill_sent:
                t = min(t, w.last_msg + self.settings.heartbeat_timeout - now)
            if w.term_at is not None:
                t = min(t, w.term_at + TERM_GRACE - now)
        elif self.restarts.restart_at is not None:
            t = min(t, self.restarts.restart_at - now)
        if self.state is State.DRAINING:
            t = min(t, self.drain_deadline - now)
        elif self.state is State.STOPPING:
            t = min(t, self.final_deadline - now)
            if self.all_acked_at is not None:
                t = min(t, self.all_acked_at + EXIT_GRACE - now)
            if self.worker is None:
                t = 0.0
        if not self.startup.done:
            t = min(t, self.startup.due() - now)
        return max(0.0, t)

    def _timers(self, now: float) -> bool:
        s = self.settings
        w = self.worker
        if w is not None:
            if not w.kill_sent and w.silent_for(now) > s.heartbeat_timeout:
                self.limiter.say("hung", f"worker {w.pid} sent nothing for "
                                 f"{w.silent_for(now):.1f} s: killing it", now)
                w.hung = True
                w.kill(signal.SIGKILL)
            elif w.term_at is not None and not w.kill_sent and now >= w.term_at + TERM_GRACE:
                w.kill(signal.SIGKILL)
        if self.state is State.DRAINING and now >= self.drain_deadline:
            warn(f"no end of input {s.drain_timeout:g} s after SIGTERM: stopping")
            self.begin_stop(now, eof=False)
        done = False
        if self.state is State.STOPPING:
            done = self._finish_step(now)
        elif self.worker is None:
            if self.restarts.restart_at is None:
                self.restarts.restart_at = now
            if now >= self.restarts.restart_at:
                self._start_worker(now)
        self.startup.release(now, silent=self.state is State.STOPPING)
        if not done and (now >= self.status_file.next_at or self.state is not self.state_seen):
            self._write_status()
        return done

    # -- stopping -------------------------------------------------------------------------------

    def _finish_step(self, now: float) -> bool:
        """After end of input: get every byte confirmed, then return True."""
        w = self.worker
        spool = self.spool
        if w is None:
            if not spool.pending_bytes:
                return self._done(P.EXIT_OK)
            if self.final_starts >= FINAL_RESTARTS:
                return self._give_up()
            self.final_starts += 1
            self.final_deadline = now + FINAL_TIMEOUT
            self._start_worker(now)
            self._write_worker(now)
            return False
        if w.eof_sent and not spool.pending_bytes and not spool.replay_bytes:
            # all confirmed: its exit is a formality
            if self.all_acked_at is None:
                self.all_acked_at = now
            elif now - self.all_acked_at >= EXIT_GRACE:
                w.kill(signal.SIGTERM)
                return self._done(P.EXIT_OK)
        if now >= self.final_deadline:
            if w.term_at is None:
                self.limiter.say("final", f"worker {w.pid} did not finish within "
                                 f"{FINAL_TIMEOUT:g} s of the end of input: stopping it", now)
                w.kill(signal.SIGTERM)
            elif w.kill_sent and now >= w.term_at + TERM_GRACE + 0.5:
                return self._give_up()  # not even reaped after SIGKILL
        return False

    def _give_up(self) -> bool:
        lost = self.spool.pending_lines() + self.spool.unacked_lines()
        self.lines_lost += lost
        warn(f"stopping with {lost} lines not confirmed by a worker (not counted)", logging.ERROR)
        return self._done(P.EXIT_LINES_LOST if lost else P.EXIT_OK)

    def _done(self, code: int) -> bool:
        self.exit_code = code
        return True

    # -- status file ----------------------------------------------------------------------------

    def status(self) -> dict:
        """The status file's contents (schema in the package docstring)."""
        return document(self)

    def _write_status(self) -> None:
        now = time.monotonic()
        self.state_seen = self.state
        self.limiter.flush(now)
        problem = self.status_file.write(self.status, now)
        if problem:
            self.startup.say(problem)
