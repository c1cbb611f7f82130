"""The supervisor's spool and replay buffer (logpipe/daemon/supervisor/spool.py), alone.

No process, no pipe: bytes go in with :meth:`Spool.add`, "writes" to a worker are
simulated with :meth:`Spool.buffers` + :meth:`Spool.advance`, acks with
:meth:`Spool.ack`, a worker's death with :meth:`Spool.requeue` + :meth:`Spool.new_worker`.
"""

from __future__ import annotations

import random

import pytest

from logpipe.daemon.supervisor.errlog import Limiter
from logpipe.daemon.supervisor.intake import Intake
from logpipe.daemon.supervisor.spool import Spool


def lines(first: int, last: int) -> bytes:
    return b"".join(b"line %04d\n" % i for i in range(first, last + 1))  # 10 bytes each


def write(spool: Spool, n: int | None = None) -> bytes:
    """Simulate one write of up to *n* bytes (all pending when None): the bytes written."""
    buffers, total = spool.buffers(1 << 30, 1024)
    data = b"".join(bytes(b) for b in buffers)
    n = total if n is None else min(n, total)
    spool.advance(n)
    return data[:n]


# -- bounds ---------------------------------------------------------------------------------------


def test_spool_bound_drops_whole_chunks_and_counts_their_lines():
    spool = Spool(spool_max=35, replay_max=1 << 20)
    assert spool.add(lines(1, 3), 3)  # 30 bytes
    assert not spool.add(lines(4, 4), 1)  # 40 > 35
    assert spool.add(b"abcd\n", 1)  # 35: just fits
    assert not spool.add(b"x\n", 1)
    assert spool.lines_dropped == 2
    assert spool.pending_bytes == 35 and spool.pending_lines() == 4
    assert write(spool) == lines(1, 3) + b"abcd\n"
    assert spool.pending_bytes == 0 and spool.lines_forwarded == 4
    assert spool.add(lines(5, 7), 3), "written bytes no longer count against the spool"


def test_resent_bytes_do_not_count_against_the_spool_bound():
    spool = Spool(spool_max=30, replay_max=1 << 20)
    assert spool.add(lines(1, 3), 3)
    write(spool)
    spool.requeue()  # the worker died before acking: 30 bytes back in the spool
    spool.new_worker()
    assert spool.pending_bytes == 30 and spool.resend_bytes == 30
    assert spool.add(lines(4, 6), 3), "only new bytes are bounded by --spool-max"
    assert not spool.add(b"x\n", 1)
    assert spool.lines_dropped == 1


def test_replay_bound_forgets_the_oldest_lines_and_counts_them_unprotected():
    spool = Spool(spool_max=1 << 20, replay_max=25)
    for i in range(1, 5):
        spool.add(lines(i, i), 1)
    write(spool, 20)
    assert spool.unprotected_lines == 0 and spool.replay_bytes == 20
    forgotten = spool.advance(20)  # 40 bytes unacked > 25: the two oldest chunks go
    assert forgotten == 2 and spool.unprotected_lines == 2
    assert spool.replay_bytes == 20 and spool.replay_start == 20
    assert spool.unacked_lines() == 2


# -- acks -----------------------------------------------------------------------------------------


def test_ack_frees_the_replay_buffer_up_to_the_offset_and_never_moves_back():
    spool = Spool(spool_max=1 << 20, replay_max=1 << 20)
    spool.add(lines(1, 5), 5)
    assert write(spool) == lines(1, 5)
    assert spool.replay_bytes == 50 and spool.written == 50
    assert spool.ack(20)
    assert spool.replay_bytes == 30 and spool.acked == 20 and spool.unacked_lines() == 3
    assert not spool.ack(10) and not spool.ack(20), "old and repeated acks change nothing"
    assert spool.replay_bytes == 30
    assert spool.ack(25)  # mid-line: bytes freed, the head is no longer on a line boundary
    assert spool.replay_bytes == 25 and not spool.head_clean
    assert spool.ack(10_000)  # past what was written: taken as everything written
    assert spool.acked == 50 and spool.replay_bytes == 0 and spool.head_clean


def test_new_worker_starts_offsets_at_zero():
    spool = Spool(spool_max=1 << 20, replay_max=1 << 20)
    spool.add(lines(1, 2), 2)
    write(spool)
    spool.ack(20)
    spool.new_worker()
    spool.add(lines(3, 3), 1)
    write(spool)
    assert spool.written == 10 and spool.acked == 0
    assert spool.ack(10) and spool.replay_bytes == 0


# -- replay after a worker's death ----------------------------------------------------------------


def test_unacked_lines_are_written_again_first_to_the_next_worker():
    spool = Spool(spool_max=1 << 20, replay_max=1 << 20)
    spool.add(lines(1, 4), 4)
    assert write(spool) == lines(1, 4)
    spool.ack(20)  # lines 1-2 confirmed
    spool.add(lines(5, 6), 2)  # arrived while the worker was dying
    spool.requeue()
    spool.new_worker()
    assert spool.resend_bytes == 20 and spool.pending_bytes == 40
    assert write(spool) == lines(3, 6), "resends first, then the new lines, once each"
    assert spool.lines_replayed == 2 and spool.lines_forwarded == 6
    assert spool.ack(40) and spool.replay_bytes == 0 and spool.pending_bytes == 0


def test_partial_write_then_death_resends_from_the_unacked_byte():
    spool = Spool(spool_max=1 << 20, replay_max=1 << 20)
    spool.add(lines(1, 3), 3)
    assert write(spool, 15) == lines(1, 3)[:15]  # the pipe took a line and a half
    spool.ack(10)
    spool.requeue()
    spool.new_worker()
    assert write(spool) == lines(2, 3)
    assert spool.lines_replayed == 0, "line 2 was never complete in the old worker's pipe"
    assert spool.lines_forwarded == 3


def test_replay_that_forgot_half_a_line_resumes_at_the_next_line():
    spool = Spool(spool_max=1 << 20, replay_max=15)
    spool.add(lines(1, 1), 1)
    spool.add(lines(2, 2), 1)
    write(spool)  # 20 unacked > 15: line 1 forgotten
    assert spool.unprotected_lines == 1
    spool.ack(15)  # half of line 2 confirmed, then the worker dies
    spool.requeue()
    spool.new_worker()
    assert spool.pending_bytes == 0, "the rest of line 2 is cut, not sent as a fragment"
    assert spool.unprotected_lines == 2


def test_confirm_all_after_a_clean_exit_at_eof():
    spool = Spool(spool_max=1 << 20, replay_max=1 << 20)
    spool.add(lines(1, 3), 3)
    write(spool)
    spool.confirm_all()
    assert spool.replay_bytes == 0 and spool.unacked_lines() == 0


def test_buffers_respect_the_byte_and_count_limits_and_a_partial_head():
    spool = Spool(spool_max=1 << 20, replay_max=1 << 20)
    for i in range(1, 6):
        spool.add(lines(i, i), 1)
    spool.advance(4)
    buffers, total = spool.buffers(max_bytes=12, max_count=10)
    assert [bytes(b) for b in buffers] == [lines(1, 1)[4:], lines(2, 2)] and total == 16
    buffers, total = spool.buffers(max_bytes=1 << 20, max_count=3)
    assert len(buffers) == 3 and total == 26
    assert spool.pending_lines() == 5 and spool.pending_bytes == 46


# -- random cuts, partial writes, acks and deaths: exactly once -----------------------------------


def _peek(spool: Spool, n: int) -> bytes:
    """The next *n* bytes the supervisor would write to its worker."""
    buffers, _ = spool.buffers(n, 1 << 20)
    return b"".join(bytes(b) for b in buffers)[:n]


def _simulate(seed: int, replay_max: int):
    rng = random.Random(seed)
    all_lines = [f"{i:06d} {'x' * rng.randrange(0, 80)}\n".encode() for i in range(300)]
    data = b"".join(all_lines)
    intake = Intake(Limiter(1e9))
    spool = Spool(spool_max=1 << 30, replay_max=replay_max)
    workers: list[dict] = []

    def new_worker():
        spool.new_worker()
        workers.append({"stream": bytearray(), "acked": 0})

    def send(n: int):
        workers[-1]["stream"] += _peek(spool, n)
        spool.advance(n)

    new_worker()
    pos = 0
    while pos < len(data):
        op = rng.random()
        current = workers[-1]
        if op < 0.4:
            n = rng.randrange(1, 400)
            chunk, count = intake.take(data[pos:pos + n], 0.0)
            if chunk:
                assert spool.add(chunk, count)
            pos += n
        elif op < 0.7 and spool.pending_bytes:
            send(rng.randrange(1, spool.pending_bytes + 1))
        elif op < 0.93:
            stream = current["stream"]
            ends = [i + 1 for i, byte in enumerate(stream) if byte == 10 and i + 1 > current["acked"]]
            if ends:
                current["acked"] = rng.choice(ends)
                spool.ack(current["acked"])
        else:
            spool.requeue()
            new_worker()
    send(spool.pending_bytes)  # the last worker gets and confirms everything
    workers[-1]["acked"] = len(workers[-1]["stream"])
    spool.ack(workers[-1]["acked"])
    assert spool.replay_bytes == 0 and spool.pending_bytes == 0
    assert intake.lines_read == len(all_lines)
    return all_lines, data, workers, spool


@pytest.mark.parametrize("seed", range(40))
def test_bookkeeping_exactly_once_with_unbounded_replay(seed):
    all_lines, data, workers, spool = _simulate(seed, replay_max=1 << 30)
    confirmed = b"".join(bytes(c["stream"][:c["acked"]]) for c in workers)
    assert confirmed == data
    assert spool.unprotected_lines == 0
    assert spool.lines_forwarded == len(all_lines)


@pytest.mark.parametrize("seed", range(40))
def test_bookkeeping_with_a_tiny_replay_bound_resends_whole_lines_only(seed):
    all_lines, data, workers, spool = _simulate(seed, replay_max=300)
    valid = set(all_lines)
    for c in workers:  # every worker's stream starts on a line boundary: whole lines only
        stream = bytes(c["stream"])
        whole = stream[:stream.rfind(b"\n") + 1]
        assert all(line + b"\n" in valid for line in whole.splitlines()), seed
    confirmed = b"".join(bytes(c["stream"][:c["acked"]]) for c in workers).splitlines(True)
    indices = [all_lines.index(line) for line in confirmed]
    assert indices == sorted(set(indices)), "confirmed once each, in order"
    assert len(all_lines) - len(confirmed) <= spool.unprotected_lines
