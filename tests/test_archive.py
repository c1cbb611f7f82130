"""Issue 5, raw archive: every line Apache wrote, in dated files, whatever the worker and memcached do.

Unit tests drive :class:`logpipe.daemon.archive.Archive` with an injected clock; the end-to-end tests run
real httpd with two CustomLogs -- logpipe with ``--archive`` and a plain file beside it -- and
compare the two.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from logpipe.daemon.archive import Archive, ArchiveError

from servers import wait_for

LINE = b'10.0.0.%d - - [21/Nov/2026:10:00:00 +0000] "GET /p/%d HTTP/1.1" 200 5 "-" "test"\n'


def lines(start: int, count: int) -> bytes:
    return b"".join(LINE % (i % 250, i) for i in range(start, start + count))


class Clock:
    """A settable clock (Unix seconds)."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- unit: naming, rotation, symlink -------------------------------------------------------------


def test_rotation_at_midnight_of_a_shifted_clock(tmp_path):
    zone = "Asia/Kathmandu"  # +05:45: its midnight is no UTC hour boundary
    midnight = dt.datetime(2026, 11, 21, tzinfo=__import__("zoneinfo").ZoneInfo(zone)).timestamp()
    clock = Clock(midnight - 2.5)
    pattern = str(tmp_path / "logs" / "%Y" / "%m" / "%d" / "access.log")
    link = tmp_path / "logs" / "access.log"
    archive = Archive(pattern, symlink=str(link), tz=zone, clock=clock)
    archive.write(lines(0, 3))
    clock.now = midnight - 0.001
    archive.write(lines(3, 2))
    day1 = tmp_path / "logs/2026/11/20/access.log"
    assert os.readlink(link) == str(day1)
    clock.now = midnight  # exactly midnight belongs to the new day
    archive.write(lines(5, 4))
    clock.now = midnight + 3600
    archive.write(lines(9, 1))
    archive.close()
    day2 = tmp_path / "logs/2026/11/21/access.log"
    assert day1.read_bytes() == lines(0, 5)
    assert day2.read_bytes() == lines(5, 5)
    assert os.readlink(link) == str(day2)
    assert sorted(p.name for p in link.parent.iterdir()) == ["2026", "access.log"]  # no temp left
    assert archive.files_opened == 2 and archive.lines_written == 10 and archive.lines_lost == 0
    assert oct(day2.stat().st_mode & 0o777) == oct(0o640 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_local_zone_follows_tz_and_appends_to_existing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC+10")  # POSIX: local = UTC - 10 h
    time.tzset()
    try:
        when = dt.datetime(2026, 11, 21, 5, 0, tzinfo=dt.timezone.utc).timestamp()  # 20th, 19:00 local
        target = tmp_path / "2026-11-20.log"
        target.write_bytes(b"kept\n")
        archive = Archive(str(tmp_path / "%Y-%m-%d.log"), clock=lambda: when)
        archive.write(lines(0, 2))
        archive.close()
        assert target.read_bytes() == b"kept\n" + lines(0, 2)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_reopen_creates_the_file_again_after_logrotate_moved_it(tmp_path):
    archive = Archive(str(tmp_path / "access.log"), symlink=str(tmp_path / "current"))
    archive.write(lines(0, 3))
    os.rename(tmp_path / "access.log", tmp_path / "access.log.1")
    archive.write(lines(3, 1))  # still the open file, now named .1 (as cronolog/rotatelogs)
    archive.reopen()
    archive.write(lines(4, 2))
    archive.close()
    assert (tmp_path / "access.log.1").read_bytes() == lines(0, 4)
    assert (tmp_path / "access.log").read_bytes() == lines(4, 2)
    assert os.readlink(tmp_path / "current") == str(tmp_path / "access.log")


def test_a_regular_file_at_the_symlink_path_is_never_replaced(tmp_path):
    reports = []
    real = tmp_path / "access.log"
    real.write_bytes(b"precious\n")
    archive = Archive(str(tmp_path / "%Y.log"), symlink=str(real), report=reports.append)
    archive.write(lines(0, 1))
    archive.close()
    assert real.read_bytes() == b"precious\n" and not real.is_symlink()
    assert reports and "not a symlink" in reports[0]


def test_bad_settings_are_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="time zone"):
        Archive(str(tmp_path / "%Y.log"), tz="Mars/Olympus_Mons")
    with pytest.raises(ValueError):
        Archive("")


# -- unit: errors never stop the stream ----------------------------------------------------------


def test_open_error_is_raised_counted_and_the_next_chunk_retries(tmp_path):
    blocker = tmp_path / "logs"
    blocker.write_bytes(b"a file where a directory should be\n")
    archive = Archive(str(tmp_path / "logs" / "%Y" / "access.log"))
    with pytest.raises(ArchiveError, match="3 lines not archived"):
        archive.write(lines(0, 3))
    assert archive.lines_lost == 3 and archive.write_errors == 1 and archive.last_error
    blocker.unlink()
    archive.write(lines(3, 2))
    archive.close()
    (written,) = list((tmp_path / "logs").iterdir())
    assert (written / "access.log").read_bytes() == lines(3, 2)


def test_disk_full_raises_without_blocking(tmp_path):
    archive = Archive("/dev/full")  # every write: ENOSPC
    for start in range(0, 30, 10):
        with pytest.raises(ArchiveError, match="No space left"):
            archive.write(lines(start, 10))
    assert archive.lines_lost == 30 and archive.write_errors == 3


def test_a_short_write_leaves_no_glued_lines(tmp_path):
    """RLIMIT_FSIZE cuts a chunk in the middle of a line (a short write, then EFBIG); once room is
    back, the torn line is ended before the next chunk, so no two lines are glued together."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from logpipe.daemon.archive import Archive, ArchiveError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        line = b"%06d the same length every time\\n"
        archive = Archive(sys.argv[1])
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
        try:
            archive.write(b"".join(line % i for i in range(100)))
        except ArchiveError as exc:
            print("lost", archive.lines_lost)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        archive.write(b"".join(line % i for i in range(100, 103)))
        archive.close()
    """)
    target = tmp_path / "a.log"
    run = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 0, run.stderr
    size = len(b"000000 the same length every time\n")
    full, torn = divmod(1000, size)
    assert torn, "the limit must cut a line"
    rows = target.read_bytes().split(b"\n")
    assert rows[-1] == b"" and len(rows) - 1 == full + 1 + 3
    assert rows[:full] == [b"%06d the same length every time" % i for i in range(full)]
    assert len(rows[full]) == torn  # the torn line, ended by a newline of its own
    assert rows[full + 1:-1] == [b"%06d the same length every time" % i for i in (100, 101, 102)]
    assert run.stdout.split() == ["lost", str(100 - full)]


def test_two_archives_appending_to_one_file_never_interleave_lines(tmp_path):
    """During a graceful restart the old and the new logger both append to today's file."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from logpipe.daemon.archive import Archive
        tag = sys.argv[2].encode()
        archive = Archive(sys.argv[1])
        body = b"".join(b"%s %05d " % (tag, i) + b"x" * 150 + b"\\n" for i in range(400))
        for _ in range(50):
            archive.write(body)
    """)
    target = tmp_path / "shared.log"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(target), tag]) for tag in ("AAA", "BBB")]
    assert [p.wait(60) for p in procs] == [0, 0]
    rows = target.read_bytes().split(b"\n")[:-1]
    assert len(rows) == 2 * 50 * 400
    assert all(len(r) == 160 and r[:4] in (b"AAA ", b"BBB ") and r.endswith(b"x" * 150) for r in rows)


# -- end to end under real httpd ------------------------------------------------------------------


def _supervisor_ready():
    if not (Path(__file__).resolve().parent.parent / "logpipe" / "daemon" / "supervisor").exists():
        pytest.skip("logpipe/daemon/supervisor has not landed yet")


def _archive_log(logpipe_bin, memcached_spec, tmp_path, *extra):
    args = [logpipe_bin, "--memcached", memcached_spec, "--status-dir", str(tmp_path / "status"),
            "--archive", str(tmp_path / "archive" / "%Y" / "%m" / "%d" / "access.log"),
            "--symlink", str(tmp_path / "archive" / "access.log"), "--flush-interval", "0.2", *extra]
    return f'CustomLog "|{" ".join(args)}" combined'


def _archived(tmp_path) -> list[bytes]:
    out = []
    for path in sorted((tmp_path / "archive").glob("*/*/*/access.log")):
        out.extend(path.read_bytes().splitlines(keepends=True))
    return out


def _worker_pids(supervisor_pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(supervisor_pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


@pytest.mark.faults
def test_archive_holds_every_line_through_a_worker_kill_and_a_memcached_outage(
        apache_factory, memcached, logpipe_bin, tmp_path):
    _supervisor_ready()
    plain = tmp_path / "plain.log"
    apache = apache_factory([_archive_log(logpipe_bin, memcached.spec, tmp_path),
                             f'CustomLog "{plain}" combined'])
    (supervisor,) = apache.logger_pids(contains="--archive")
    sent = 0

    def send(count: int) -> None:
        nonlocal sent
        ok, failed = apache.send([f"/page/{i}?q={i}" for i in range(sent, sent + count)], concurrency=6)
        assert (ok, failed) == (count, 0)
        sent += count

    send(300)
    assert wait_for(lambda: len(_archived(tmp_path)) == 300, timeout=10)
    for pid in _worker_pids(supervisor):
        os.kill(pid, signal.SIGKILL)  # the worker crashes mid-stream
    send(300)
    memcached.stop()  # and memcached goes away
    send(300)
    assert wait_for(lambda: _worker_pids(supervisor), timeout=10, message="a new worker")
    for pid in _worker_pids(supervisor):
        os.kill(pid, signal.SIGKILL)
    send(300)
    apache.stop()  # EOF for the logger
    expected = plain.read_bytes().splitlines(keepends=True)
    assert len(expected) == sent == 1200
    assert Counter(_archived(tmp_path)) == Counter(expected)
    link = tmp_path / "archive" / "access.log"
    assert os.readlink(link) == str(sorted((tmp_path / "archive").glob("*/*/*/access.log"))[-1])


@pytest.mark.faults
def test_archive_rotates_at_midnight_of_a_shifted_clock_under_httpd(
        apache_factory, memcached, logpipe_bin, tmp_path):
    """httpd and logpipe run with a TZ whose midnight is a few seconds away."""
    _supervisor_ready()
    midnight = int(time.time()) + 10
    east = ((-midnight + 43200) % 86400) - 43200  # seconds east of UTC that put midnight there
    sign = "-" if east >= 0 else "+"  # POSIX TZ offsets count west
    hours, rest = divmod(abs(east), 3600)
    tz = f"LPT{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    zone = dt.timezone(dt.timedelta(seconds=east))
    before = dt.datetime.fromtimestamp(midnight - 1, zone).date()
    after = dt.datetime.fromtimestamp(midnight, zone).date()
    assert after == before + dt.timedelta(days=1)
    plain = tmp_path / "plain.log"
    apache = apache_factory([_archive_log(logpipe_bin, memcached.spec, tmp_path),
                             f'CustomLog "{plain}" combined'], env={"TZ": tz})
    early = [f"/before/{i}" for i in range(60)]
    assert apache.send(early, concurrency=4) == (60, 0)
    assert time.time() < midnight - 1.5, "the machine is too slow for this test's margins"
    wait_for(lambda: time.time() > midnight + 1.0, timeout=15, interval=0.05)
    late = [f"/after/{i}" for i in range(60)]
    assert apache.send(late, concurrency=4) == (60, 0)
    apache.stop()
    day1 = tmp_path / "archive" / before.strftime("%Y/%m/%d") / "access.log"
    day2 = tmp_path / "archive" / after.strftime("%Y/%m/%d") / "access.log"
    first, second = day1.read_bytes(), day2.read_bytes()
    assert first.count(b"\n") == 60 and all(b"GET /before/" in x for x in first.splitlines())
    assert second.count(b"\n") == 60 and all(b"GET /after/" in x for x in second.splitlines())
    assert Counter(first.splitlines() + second.splitlines()) == Counter(plain.read_bytes().splitlines())
    # httpd's %t uses the same shifted zone: the days in the lines match the files
    assert before.strftime("%d/%b/%Y").encode() in first.splitlines()[0]
    assert os.readlink(tmp_path / "archive" / "access.log") == str(day2)


@pytest.mark.faults
def test_sighup_reopens_the_archive_after_logrotate_moved_it(apache_factory, memcached, logpipe_bin,
                                                            tmp_path):
    _supervisor_ready()
    plain = tmp_path / "plain.log"
    apache = apache_factory([_archive_log(logpipe_bin, memcached.spec, tmp_path),
                             f'CustomLog "{plain}" combined'])
    (supervisor,) = apache.logger_pids(contains="--archive")
    assert apache.send([f"/one/{i}" for i in range(100)]) == (100, 0)
    assert wait_for(lambda: len(_archived(tmp_path)) == 100, timeout=10)
    (current,) = (tmp_path / "archive").glob("*/*/*/access.log")
    rotated = current.with_name("access.log.1")
    os.rename(current, rotated)  # what logrotate does, then it signals
    os.kill(supervisor, signal.SIGHUP)
    time.sleep(0.5)
    assert apache.send([f"/two/{i}" for i in range(50)]) == (50, 0)
    assert wait_for(lambda: current.exists() and current.read_bytes().count(b"\n") == 50, timeout=10)
    assert apache.logger_pids(contains="--archive") == [supervisor]  # reopened, not restarted
    apache.stop()
    assert rotated.read_bytes().count(b"\n") == 100
    assert all(b"GET /two/" in x for x in current.read_bytes().splitlines())
    assert Counter(rotated.read_bytes().splitlines() + current.read_bytes().splitlines()) == \
        Counter(plain.read_bytes().splitlines())
    assert "Traceback" not in apache.error_log_text()


def test_an_unwritable_archive_never_stops_the_counting(logpipe_bin, memcached, tmp_path):
    """--archive /dev/full: every archive write fails (reported, rate-limited); every line is counted."""
    _supervisor_ready()
    from logpipe.api import Reader

    data = b"".join(b'127.0.0.1 - - [21/Nov/2026:10:00:00 +0000] "GET /k/%d HTTP/1.1" 200 5 "-" "t"\n' % (i % 5)
                    for i in range(5000))
    run = subprocess.run([logpipe_bin, "--memcached", memcached.spec, "--status-dir", str(tmp_path / "s"),
                          "--archive", "/dev/full", "--count-all", "--dimensions", "url"],
                         input=data, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr
    reader = Reader(memcached.spec)
    assert [reader.hits(f"/k/{i}", "2026-11-21") for i in range(5)] == [1000] * 5
    errors = [x for x in run.stderr.decode().splitlines() if "raw archive" in x]
    assert errors and "No space left" in errors[0] and len(errors) <= 3
