"""The worker: lines from the supervisor in, batches of counters to memcached out.

Runs in a child forked by :mod:`logpipe.daemon.supervisor`, to the protocol in
that package's docstring (its constants and messages are in
:mod:`logpipe.daemon.protocol`): it reads complete lines from *data_fd*,
writes ``H`` (a heartbeat, at least once a second) and ``A <offset>`` (every
input byte up to *offset* is confirmed in memcached) to *ctrl_fd*, and exits
0 after EOF, 3 to be recycled (``--max-rss``).  On SIGTERM (its supervisor died: PDEATHSIG, or
an operator) it flushes what it holds and exits 0.

Counts wait in memory while memcached is down or slow, bounded by
``--max-pending-keys`` distinct keys; increments for new keys past that bound
are dropped and counted (``dropped_counts`` in the status file).  Unique
visitors go through marker items first (:mod:`logpipe.daemon.visitors`),
bounded by ``--max-pending-visitors`` (``dropped_visitors``).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import time

from logpipe.config import Settings, warn
from logpipe.daemon import protocol as P
from logpipe.daemon.protocol import COALESCE_BELOW, EXIT_OK, EXIT_RECYCLE, HEARTBEAT_EVERY, READ_SIZE
from logpipe.daemon.pipeline import Pipeline
from logpipe.daemon.store import CounterStore
from logpipe.daemon.today import CountingDay

__all__ = ["run", "Worker", "EXIT_RECYCLE"]

STATUS_EVERY = 2.0
#: How long the last flush after EOF or SIGTERM may keep retrying, seconds.
FINAL_FLUSH_SECONDS = 3.0
#: After a read under COALESCE_BELOW bytes the worker sleeps COALESCE_DELAY seconds.
COALESCE_DELAY = 0.02
#: Flush before the interval when this many distinct counted keys are held
#: (a burst of new URLs): memory stays bounded, a few more round trips.
FLUSH_EARLY_KEYS = 10_000
#: Send unique-visitor markers before the interval when this many distinct
#: visits are held: their memory stays small (README, "Unique visitors").
MARKERS_EARLY = 3_000
#: Seconds a visitors claim may stay in flight (memcached answering it while
#: lines are read) before the worker reads its replies and commits, idle or
#: not: far inside the owner's window (2 s with ``--timeout 0.5``).
SETTLE_CLAIM_AFTER = 0.05


class Worker:
    """State of one worker process (see the module docstring).

    Args:
        settings: the daemon's settings.
        data_fd: read end of the data pipe (complete lines).
        ctrl_fd: write end of the control pipe, or -1 (no supervisor).
    """

    def __init__(self, settings: Settings, data_fd: int, ctrl_fd: int):
        self.settings = settings
        self.data_fd = data_fd
        self.ctrl_fd = ctrl_fd
        self.pipeline = Pipeline(settings, local_visitors=False)
        self.store = CounterStore(settings.servers(), settings.ttl, settings.timeout, settings.connect_timeout,
                                  ttl_by_dimension={"post_ip": settings.post_ip_ttl})
        self.visitors = None
        if self.pipeline.visits is not None:
            from logpipe.daemon.visitors import VisitorMarkers

            self.visitors = VisitorMarkers(self.store, settings)
        self.pending: dict[str, int] = {}
        self.counting_day = CountingDay(settings.prefix)
        self.pending_appends: dict[str, list[str]] = {}
        self.offset = 0
        self.acked = 0
        # Reads land in one reusable buffer (a new 1 MiB bytes object per read
        # cost page faults: ~7 % of the worker's time); _held bytes at its
        # start are a line whose end has not arrived yet.
        self._buffer = bytearray(READ_SIZE)
        self._held = 0
        self.dropped_counts = 0
        self.flushes = 0
        self.last_flush_ok: float | None = None
        self.last_flush_error: str | None = None
        self.started = time.time()
        self.stopping = False
        self._last_warn: dict[str, float] = {}
        self._status_path = None
        self._rate = (time.monotonic(), 0)
        self.lines_per_second = 0.0

    # -- main loop ------------------------------------------------------------

    def run(self) -> int:
        """Read until EOF or SIGTERM; return the exit code."""
        if self.ctrl_fd >= 0 and self.settings.worker_nice:  # under a supervisor
            # --worker-nice trades count delay for Apache's CPU under a CPU
            # shortage; the default is 0 because a worker that is starved of
            # the CPU it needs falls behind until the spool drops lines
            # (README, "Performance").
            try:
                os.nice(self.settings.worker_nice)
            except OSError:
                pass
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self._status_path = self._open_status()
        interval = self.settings.flush_interval
        next_flush = time.monotonic() + interval
        next_beat = 0.0
        next_status = 0.0
        eof = False
        while not eof and not self.stopping:
            now = time.monotonic()
            if now >= next_beat:
                self._send(P.HEARTBEAT)
                next_beat = now + HEARTBEAT_EVERY
            if now >= next_flush:
                self.flush()
                # A steady cadence: a count waits one interval, not one interval plus the
                # flush's own time (unless flushes fall behind: then no back-to-back flushes).
                next_flush = max(next_flush + interval, time.monotonic() + interval / 4)
                if self._over_memory():
                    self.final_flush()
                    self._remove_status()
                    return EXIT_RECYCLE
            if now >= next_status:
                self._write_status()
                next_status = now + STATUS_EVERY
            timeout = max(0.0, min(next_flush, next_beat) - time.monotonic())
            if self.visitors is not None and self.visitors.claimed_for() >= 0:
                timeout = min(timeout, SETTLE_CLAIM_AFTER)  # idle soon: commit the claim in flight
            try:
                ready, _, _ = select.select([self.data_fd, wake_r], [], [], timeout)
            except InterruptedError:
                continue
            if wake_r in ready:
                os.read(wake_r, 512)
            if self.data_fd in ready:
                eof = self._read()
                if self.pipeline.held() >= FLUSH_EARLY_KEYS:
                    self.flush()  # a burst of new keys: bound memory
                elif self.visitors is not None and self.pipeline.visits_held() >= MARKERS_EARLY:
                    self._send_markers()
                    if len(self.pending) >= FLUSH_EARLY_KEYS:
                        self.flush()  # many new visitors counters (one per URL): bound memory
                elif self.visitors is not None and self.visitors.claimed_for() > SETTLE_CLAIM_AFTER:
                    self.visitors.settle()  # a trickle after a burst: commit well within the owner's window
            elif not ready:
                self.prepare()  # idle: classify now, so a flush or EOF only sends
                if self.visitors is not None:
                    self.visitors.settle()  # and commit the visitors claimed
        self.final_flush()
        self._remove_status()
        return EXIT_OK

    def _on_term(self, signum, frame) -> None:
        self.stopping = True

    def _read(self) -> bool:
        buffer, held = self._buffer, self._held
        if held == len(buffer):  # one unfinished line fills it
            buffer.extend(bytes(len(buffer)))
        try:
            with memoryview(buffer) as view:
                got = os.readv(self.data_fd, [view[held:]])
        except BlockingIOError:
            return False
        if not got:
            if held:
                self._feed(bytes(buffer[:held]) + b"\n")
                self._held = 0
            return True
        self.offset += got
        if got < COALESCE_BELOW and not self.stopping:
            # Fewer, larger reads (see the supervisor's read coalescing); counts are
            # flushed once per interval anyway.
            time.sleep(COALESCE_DELAY)
        end = held + got
        cut = buffer.rfind(b"\n", held, end)
        if cut < 0:
            self._held = end
            return False
        self.counting_day.see(buffer, buffer.rfind(b"\n", 0, cut) + 1, cut)  # one line per read
        self._feed(buffer, 0, cut + 1)
        rest = end - cut - 1
        buffer[:rest] = buffer[cut + 1:end]  # the unfinished line to the front
        self._held = rest
        return False

    def _feed(self, chunk: bytes | bytearray, start: int = 0, end: int | None = None) -> None:
        rejected = self.pipeline.feed(chunk, start, end)
        if rejected:
            for reason, line in rejected:
                self._warn_limited(
                    "reject:" + reason,
                    f"rejected a line ({reason}, {len(line)} bytes): {line[:120]!r}"
                    f" — {self.pipeline.rejected[reason]} so far",
                )

    # -- flushing -------------------------------------------------------------

    def prepare(self) -> None:
        """Classify what was read and turn it into pending keys, without sending."""
        increments = self.pipeline.take()
        if increments:
            counts, appends = self.pipeline.to_keys(increments)
            self._merge(counts, appends)

    def flush(self) -> bool:
        """Classify what was read and send it; ack when nothing is left pending.

        Returns:
            True when every count read so far is confirmed in memcached.
        """
        offset = self.offset - self._held
        self.prepare()
        counters_ok = True
        if self.visitors is not None:
            self.visitors.settle()  # the claim in flight: the counters use the same connections
        sending = bool(self.pending or self.pending_appends)
        if sending:
            done, done_appends, failed = self.store.flush(self.pending, self.pending_appends,
                                                          self.counting_day.items())
            for key in done:
                del self.pending[key]
            for key in done_appends:
                del self.pending_appends[key]
            self.flushes += 1
            if failed:
                counters_ok = False
                self.last_flush_error = "; ".join(
                    f"{s.name}: {s.last_error}" for s in self.store.servers if s.name in failed and s.last_error
                ) or "backing off"
                self._warn_limited("flush", f"memcached unavailable ({self.last_flush_error}); "
                                            f"{len(self.pending)} keys wait")
                # A server that failed may have restarted empty: index again.
                self.pipeline.forget_index()
                if self.visitors is not None:
                    self.visitors.forget()
        # The visitor markers after the counters (they carry their own visitors increments):
        # a page view's count is not held up by the visitors' round trips.
        visitors_ok = self._send_markers(check=True) if self.visitors is not None else True
        if sending and counters_ok and visitors_ok:
            self.last_flush_ok = time.time()
            self.last_flush_error = None
        if not self.pending and not self.pending_appends and visitors_ok:
            self.last_flush_ok = self.last_flush_ok or time.time()
            if offset > self.acked:
                self.acked = offset
                self._send(P.ack(offset))
            return True
        return False

    def _send_markers(self, check: bool = False) -> bool:
        """Claim and commit the markers of the visits read so far (with *check*, also
        read the markers others hold: once per flush).  Returns False while some wait."""
        self.visitors.add(self.pipeline.take_visits())
        if not self.visitors.waiting():
            return True
        ok = self.visitors.flush(check)
        if not ok:
            self.last_flush_error = self.visitors.last_error or "visitor markers wait"
        return ok

    def _merge(self, counts: dict[str, int], appends: dict[str, list[str]]) -> None:
        pending = self.pending
        room = self.settings.max_pending_keys - len(pending)
        for key, n in counts.items():
            if key in pending:
                pending[key] += n
            elif room > 0:
                pending[key] = n
                room -= 1
            else:
                self.dropped_counts += n
        if room <= 0:
            self._warn_limited("dropped", f"--max-pending-keys reached: {self.dropped_counts} counts dropped so far")
        for key, values in appends.items():
            self.pending_appends.setdefault(key, []).extend(values)

    def final_flush(self) -> None:
        """Flush until everything is confirmed or FINAL_FLUSH_SECONDS pass.

        The back-off of servers that failed earlier is ignored: after a long outage a server
        that is back may not be due for a retry for up to 30 s, and this is the last chance.
        """
        deadline = time.monotonic() + FINAL_FLUSH_SECONDS
        # A pending marker of a dead writer (a replay) is taken over only past the grace.
        grace = time.monotonic() + FINAL_FLUSH_SECONDS + (self.visitors.grace if self.visitors else 0)
        while True:
            for server in self.store.servers:
                server.retry_at = 0.0
            if self.flush():
                break
            now = time.monotonic()
            markers = self.visitors
            only_young = markers is not None and not (self.pending or self.pending_appends
                                                      or markers.pending or markers.raw)
            if now >= deadline and (now >= grace or not only_young):
                break  # only young markers of others may wait for the grace
            self._send(P.HEARTBEAT)
            time.sleep(max(0.0, min(0.25, deadline - now) if now < deadline else 0.25))
        if self.pending:
            lost = sum(self.pending.values())
            warn(f"exiting with {lost} counts in {len(self.pending)} keys not delivered: {self.last_flush_error}",
                 logging.ERROR)
        if self.visitors is not None and self.visitors.waiting():
            warn(f"exiting with {self.visitors.waiting()} visitor markers not delivered: {self.last_flush_error}",
                 logging.ERROR)
        self.store.close()

    def _over_memory(self) -> bool:
        limit = self.settings.max_rss
        if not limit or self.pending or (self.visitors is not None and self.visitors.waiting()):
            return False
        return _rss() > limit

    # -- reporting ------------------------------------------------------------

    def _send(self, message: bytes) -> None:
        if self.ctrl_fd < 0:
            return
        try:
            os.write(self.ctrl_fd, message)
        except (BlockingIOError, BrokenPipeError, OSError):
            pass

    def _warn_limited(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(kind, -1e9) >= self.settings.log_interval:
            self._last_warn[kind] = now
            warn(message)

    def _open_status(self):
        directory = self.settings.status_dir
        if not directory:
            return None
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        except OSError:
            return None
        return P.status_path(directory, P.ROLE_WORKER, os.getpid())

    def status(self) -> dict:
        """The worker's status document (README, "Status files")."""
        now_m = time.monotonic()
        then, lines_then = self._rate
        if now_m - then >= 1.0:
            self.lines_per_second = (self.pipeline.lines - lines_then) / (now_m - then)
            self._rate = (now_m, self.pipeline.lines)
        stats = self.pipeline.classifier.stats
        return {
            P.SCHEMA: P.STATUS_SCHEMA,
            P.ROLE: P.ROLE_WORKER,
            P.PID: os.getpid(),
            P.PPID: os.getppid(),
            P.STARTED: self.started,
            P.UPDATED: time.time(),
            P.LINES: self.pipeline.lines,
            P.LINES_PER_SECOND: round(self.lines_per_second, 1),
            P.PAGE_VIEWS: stats.get("page view", 0),
            P.REJECTED: self.pipeline.rejected_counts(),
            P.OUTCOMES: dict(stats),
            P.PENDING_KEYS: len(self.pending),
            P.DROPPED_COUNTS: self.dropped_counts,
            P.PENDING_VISITORS: self.visitors.waiting() if self.visitors is not None else 0,
            P.DROPPED_VISITORS: self.visitors.dropped if self.visitors is not None else 0,
            P.FLUSHES: self.flushes,
            P.LAST_FLUSH_OK: self.last_flush_ok,
            P.LAST_FLUSH_ERROR: self.last_flush_error,
            P.INPUT_OFFSET: self.offset,
            P.ACKED_OFFSET: self.acked,
            P.RSS: _rss(),
            P.SERVERS: {
                s.name: {P.SERVER_FAILURES: s.failures, P.SERVER_LAST_ERROR: s.last_error,
                         P.SERVER_LAST_OK: s.last_ok, P.SERVER_RTT: s.rtt}
                for s in self.store.servers
            },
        }

    def _write_status(self) -> None:
        if not self._status_path:
            return
        try:
            P.write_status(self._status_path, self.status(), make_dir=False)
        except OSError:
            self._status_path = None

    def _remove_status(self) -> None:
        P.remove_status(self._status_path)


def _rss() -> int:
    """Resident set size of this process, in bytes (from /proc, as psutil reads it)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def run(settings: Settings, data_fd: int, ctrl_fd: int) -> int:
    """The worker's entry point (``worker_main`` for the supervisor).

    Args:
        settings: daemon settings.
        data_fd: file descriptor to read lines from.
        ctrl_fd: file descriptor for acks and heartbeats (-1 for none).

    Returns:
        0 after EOF or SIGTERM, :data:`EXIT_RECYCLE` when over ``--max-rss``.
    """
    try:
        worker = Worker(settings, data_fd, ctrl_fd)
    except Exception as exc:  # a bad setting must not crash-loop silently
        warn(f"worker cannot start: {exc}", logging.ERROR)
        raise
    code = worker.run()
    sys.stderr.flush()
    return code
