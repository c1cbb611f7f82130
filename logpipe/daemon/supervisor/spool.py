"""The spool and the replay buffer: every line between stdin and a confirmed flush.

One class, :class:`Spool`, because a line moves through both and back:

* the **spool** holds complete lines read from stdin and not yet written to
  the current worker, resends first; it is bounded by ``--spool-max`` bytes of
  new lines (resends do not count against it), and a chunk that does not fit
  is dropped and counted (``lines_dropped``), so httpd never waits on a slow
  or dead worker (DESIGN.md §1);
* the **replay buffer** holds what was written to the current worker and not
  yet acknowledged (``A <offset>``).  When the worker dies its content goes
  back to the head of the spool and is written again, first, to the next
  worker.  It is bounded by ``--replay-max`` bytes: past it the oldest bytes
  are forgotten and their lines counted as ``unprotected_lines`` (they would
  be lost if the worker crashed before confirming them).

Offsets are those of the protocol (:mod:`logpipe.daemon.protocol`): bytes
written to the current worker since it started; :meth:`Spool.new_worker`
starts them again at 0.  Nothing here touches a file descriptor or a
process, so the bookkeeping is tested alone (tests/test_spool.py).
"""

from __future__ import annotations

from collections import deque
from typing import Union

__all__ = ["Spool"]

Buffer = Union[bytes, memoryview]


class Spool:
    """Bytes waiting for the worker (spool) and bytes it has not confirmed (replay).

    Args:
        spool_max: bound of the spool, in bytes of new lines (``--spool-max``).
        replay_max: bound of the replay buffer, in bytes (``--replay-max``).

    Counters (lines since start): ``lines_forwarded`` (written to a worker the first
    time), ``lines_replayed`` (written again), ``lines_dropped`` (spool full, or cut by
    :meth:`drop`), ``unprotected_lines`` (forgotten by the replay buffer before an ack,
    plus partial lines cut at its edge).  Sizes: ``pending_bytes`` (spool, resends
    included), ``resend_bytes``, ``replay_bytes``.
    """

    def __init__(self, spool_max: int, replay_max: int):
        self.spool_max = spool_max
        self.replay_max = replay_max
        # spool: bytes not yet written to the current worker; resends first
        self.pending: deque[bytes] = deque()
        self.pend_off = 0  # bytes of pending[0] already written
        self.pending_bytes = 0
        self.resend_bytes = 0
        # replay: bytes written to the current worker, not acked yet
        self.replay: deque[bytes] = deque()
        self.replay_bytes = 0
        self.replay_start = 0  # worker offset of replay[0][0]
        self.head_clean = True  # the byte before replay[0][0] is a newline
        # the current worker's offset space
        self.written = 0
        self.acked = 0
        # counters
        self.lines_forwarded = 0
        self.lines_replayed = 0
        self.lines_dropped = 0
        self.unprotected_lines = 0

    # -- in -------------------------------------------------------------------------------------

    def add(self, chunk: bytes, lines: int) -> bool:
        """Spool *chunk* (complete lines, *lines* of them); False when it was dropped.

        A chunk is dropped whole, and its lines counted in ``lines_dropped``, when the new
        (not resent) bytes in the spool would pass ``spool_max``.
        """
        if self.pending_bytes - self.resend_bytes + len(chunk) > self.spool_max:
            self.lines_dropped += lines
            return False
        self.pending.append(chunk)
        self.pending_bytes += len(chunk)
        return True

    def drop(self, lines: int) -> None:
        """Count *lines* dropped before they reached the spool (cut at the drain deadline)."""
        self.lines_dropped += lines

    # -- out to the worker ----------------------------------------------------------------------

    def buffers(self, max_bytes: int, max_count: int) -> tuple[list[Buffer], int]:
        """The head of the spool for one ``writev``: (buffers, their total size in bytes).

        Stops after the buffer that reaches *max_bytes*, or at *max_count* buffers (IOV_MAX).
        """
        buffers: list[Buffer] = []
        total = 0
        off = self.pend_off
        for chunk in self.pending:
            buffers.append(memoryview(chunk)[off:] if off else chunk)
            total += len(chunk) - off
            off = 0
            if total >= max_bytes or len(buffers) >= max_count:
                break
        return buffers, total

    def advance(self, n: int) -> int:
        """Move *n* bytes just written to the worker from the spool to the replay buffer.

        Returns:
            the lines the replay buffer forgot to stay within ``replay_max`` (already added
            to ``unprotected_lines``; the caller reports them).
        """
        pending = self.pending
        while n > 0:
            chunk = pending[0]
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
            self.written += take
            self.pending_bytes -= take
            n -= take
            if end == len(chunk):
                pending.popleft()
                self.pend_off = 0
            else:
                self.pend_off = end
        forgotten = 0
        while self.replay_bytes > self.replay_max and self.replay:
            piece = self.replay.popleft()
            self.replay_bytes -= len(piece)
            self.replay_start += len(piece)
            forgotten += piece.count(b"\n")
            self.head_clean = piece.endswith(b"\n")
        self.unprotected_lines += forgotten
        return forgotten

    # -- back from the worker -------------------------------------------------------------------

    def ack(self, offset: int) -> bool:
        """The worker confirmed every byte up to *offset*: free the replay buffer up to it.

        Returns:
            True when the ack moved forward (an old or repeated ack changes nothing; an ack
            past what was written is taken as everything written).
        """
        if offset <= self.acked:
            return False
        offset = min(offset, self.written)
        self.acked = offset
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
        return True

    def confirm_all(self) -> None:
        """The worker read EOF, flushed and exited 0: what it did not ack is done too."""
        self.replay.clear()
        self.replay_bytes = 0

    def requeue(self) -> None:
        """The worker is gone: put its unacked bytes back at the head of the spool.

        When the replay buffer had forgotten part of a line, the rest of that line is cut
        (counted in ``unprotected_lines``): the next worker starts on a line boundary.
        """
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

    def new_worker(self) -> None:
        """A new worker starts: its offsets start at 0."""
        self.replay_start = 0
        self.written = 0
        self.acked = 0

    # -- what is held ---------------------------------------------------------------------------

    def pending_lines(self) -> int:
        """Lines in the spool (not yet written), counted now."""
        total = sum(c.count(b"\n") for c in self.pending)
        if self.pend_off and self.pending:
            total -= self.pending[0].count(b"\n", 0, self.pend_off)
        return total

    def unacked_lines(self) -> int:
        """Lines in the replay buffer (written, not confirmed), counted now."""
        return sum(p.count(b"\n") for p in self.replay)
