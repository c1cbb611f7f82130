"""The supervisor (logpipe/daemon/supervisor/), run as a real process with a pipe as its stdin.

Each test starts ``python tests/supervisor_helpers.py CONFIG`` (the supervisor with a scriptable
test worker, see that module), writes to its stdin, signals it, and checks outcomes: what each
worker received (``recv-<pid>`` files), worker starts (``starts``), the status file, the exit
code, stderr and timing.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parent / "supervisor_helpers.py"

STATUS_FIELDS = {
    "schema", "role", "pid", "started", "updated", "state", "argv", "memcached", "pipe_size", "nice",
    "lines_read", "bytes_read", "lines_forwarded", "lines_dropped", "too_long_lines",
    "unprotected_lines", "spool_bytes", "spool_max", "replay_bytes", "worker_pid",
    "worker_started", "worker_last_message", "worker_restarts", "crash_backoff_until",
    "last_worker_exit",
}


def wait_for(predicate, timeout: float, interval: float = 0.01):
    """Poll *predicate* until it returns something truthy; return it (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


def numbered(first: int, last: int, width: int = 0) -> bytes:
    """Lines ``line 00001`` … as bytes, each ending in a newline (padded to *width* bytes)."""
    return b"".join(f"line {i:06d} {'x' * max(0, width - 13)}\n".encode()
                    for i in range(first, last + 1))


class Sup:
    """One supervisor process under test."""

    def __init__(self, tmp: Path, settings: dict | None = None, worker: dict | None = None,
                 sink: dict | None = None, env: dict | None = None):
        self.dir = tmp
        self.status_dir = tmp / "status"
        base = {"status_dir": str(self.status_dir), "user": pwd.getpwuid(os.getuid()).pw_name,
                "log_interval": 60.0}
        base.update(settings or {})
        config = {
            "settings": base,
            "worker": {"dir": str(tmp), **(worker or {})},
            "constants": {"STATUS_INTERVAL": 0.1},
        }
        if sink:
            config["sink"] = sink
        self.proc = subprocess.Popen(
            [sys.executable, str(HELPERS), json.dumps(config)],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        self.stderr = b""
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr += line

    # input ---------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close(self) -> float:
        """Close stdin (EOF); return the monotonic time of the close."""
        self.proc.stdin.close()
        return time.monotonic()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the exit (stdin left as it is); return the exit code.

        stderr is collected in ``self.stderr`` all along.
        """
        code = self.proc.wait(timeout)
        self._reader.join(2)
        return code

    # outcomes ------------------------------------------------------------------------------
    @property
    def status_file(self) -> Path:
        return self.status_dir / f"supervisor-{self.proc.pid}.json"

    def status(self) -> dict | None:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return None

    def status_when(self, predicate, timeout: float = 5.0) -> dict:
        return wait_for(lambda: (lambda s: s if s and predicate(s) else None)(self.status()),
                        timeout)

    def starts(self) -> list[list[str]]:
        try:
            return [line.split() for line in (self.dir / "starts").read_text().splitlines()]
        except OSError:
            return []

    def worker_pids(self) -> list[int]:
        return [int(fields[0]) for fields in self.starts()]

    def recv(self, pid: int) -> bytes:
        try:
            return (self.dir / f"recv-{pid}").read_bytes()
        except OSError:
            return b""

    def received(self) -> bytes:
        """Everything every worker received, in worker start order."""
        return b"".join(self.recv(pid) for pid in self.worker_pids())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.worker_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def sup(tmp_path):
    made: list[Sup] = []

    def make(**kwargs) -> Sup:
        made.append(Sup(tmp_path, **kwargs))
        return made[-1]

    yield make
    for one in made:
        one.kill()


def dead(pid: int) -> bool:
    """True when *pid* is gone or a zombie (its parent may not reap it at once)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


# -- the stream ---------------------------------------------------------------------------------


def test_lines_forwarded_once_in_order_partial_last_line_and_fast_exit(sup):
    s = sup(env={"NOTIFY_SOCKET": "/run/systemd/notify"})
    data = numbered(1, 30000)
    for i in range(0, len(data), 70001):  # cuts land mid-line
        s.write(data[i:i + 70001])
    s.write(b"no newline at the end")
    wait_for(lambda: len(s.received()) >= len(data), 5)
    closed = s.close()
    assert s.wait() == 0
    elapsed = time.monotonic() - closed
    assert s.received() == data + b"no newline at the end\n"
    assert len(s.starts()) == 1
    assert s.starts()[0][3] == "-", "NOTIFY_SOCKET must be removed from the environment"
    assert elapsed < 0.5, f"exit took {elapsed:.3f} s after EOF"
    assert s.stderr == b""


def test_status_file_present_with_schema_then_removed(sup):
    s = sup(settings={"pipe_size": 256 << 10})
    s.write(numbered(1, 100))
    status = s.status_when(lambda st: st["lines_forwarded"] == 100)
    assert STATUS_FIELDS <= set(status)
    assert status["schema"] == 1 and status["role"] == "supervisor"
    assert status["pid"] == s.proc.pid
    assert status["state"] == "running"
    assert status["worker_pid"] == s.worker_pids()[0]
    assert status["lines_read"] == 100 and status["bytes_read"] == len(numbered(1, 100))
    assert status["pipe_size"] >= 256 << 10
    # --nice -5 (the default) needs root; unprivileged, the niceness it had.
    assert status["nice"] == os.getpriority(os.PRIO_PROCESS, s.proc.pid)
    assert status["nice"] == (-5 if os.geteuid() == 0 else os.getpriority(os.PRIO_PROCESS, 0))
    assert status["worker_last_message"] >= status["worker_started"]
    assert status["worker_restarts"] == [] and status["last_worker_exit"] is None
    assert oct(s.status_dir.stat().st_mode & 0o777) == "0o755"
    s.close()
    assert s.wait() == 0
    assert not s.status_file.exists()


def test_too_long_line_is_dropped_and_the_stream_resynchronises(sup):
    s = sup()
    s.write(b"first\n" + b"x" * (1 << 20) + b"y" * (1 << 19) + b"\nsecond\n")
    s.write(b"z" * (5 << 19) + b"\nthird\n")  # 2.5 MiB: dropped before its newline arrives
    s.write(b"w" * ((1 << 20) - 1) + b"\n")  # just under the limit: kept
    status = s.status_when(lambda st: st["lines_read"] == 4)
    assert status["too_long_lines"] == 2
    s.close()
    assert s.wait() == 0
    assert s.received() == b"first\nsecond\nthird\n" + b"w" * ((1 << 20) - 1) + b"\n"
    assert s.stderr.count(b"\n") == 1 and b"longer than" in s.stderr  # rate-limited


def test_sink_gets_every_chunk_first_reopens_on_sighup_and_its_errors_do_not_stop_the_stream(
        sup, tmp_path):
    archive = tmp_path / "archive.log"
    s = sup(sink={"path": str(archive), "fail_every": 0})
    s.write(numbered(1, 10))
    wait_for(lambda: s.received() == numbered(1, 10), 5)
    assert archive.read_bytes() == numbered(1, 10)  # archived before forwarding
    s.signal(signal.SIGHUP)
    wait_for(lambda: archive.read_bytes().endswith(b"REOPEN\n"), 5)
    s.write(numbered(11, 20))
    s.close()
    assert s.wait() == 0
    assert archive.read_bytes() == numbered(1, 10) + b"REOPEN\n" + numbered(11, 20) + b"CLOSED\n"
    assert s.received() == numbered(1, 20)
    assert len(s.starts()) == 1, "SIGHUP must not restart the worker"

    failing = tmp_path / "failing"
    failing.mkdir()
    s2 = Sup(failing, sink={"path": str(failing / "archive.log"), "fail_every": 2})
    try:
        for i in range(1, 41, 10):
            s2.write(numbered(i, i + 9))
            wait_for(lambda: s2.received().endswith(numbered(i, i + 9)), 5)
        s2.close()
        assert s2.wait() == 0
        assert s2.received() == numbered(1, 40)
        assert s2.stderr.count(b"raw archive write failed") == 1  # rate-limited
    finally:
        s2.kill()


# -- SIGTERM and EOF (httpd's graceful restart and stop) ----------------------------------------


def test_sigterm_then_more_input_then_eof_loses_nothing(sup):
    s = sup()
    s.write(numbered(1, 100))
    wait_for(lambda: s.received() == numbered(1, 100), 5)
    s.signal(signal.SIGTERM)
    s.status_when(lambda st: st["state"] == "draining")
    time.sleep(0.2)
    assert s.proc.poll() is None, "SIGTERM must not stop the supervisor before EOF"
    s.write(numbered(101, 200))  # httpd's old children still writing
    s.close()
    assert s.wait() == 0
    assert s.received() == numbered(1, 200)
    assert s.stderr == b""


def test_sigterm_then_immediate_eof_exits_quickly_and_quietly(sup):
    s = sup(settings={"user": None})  # as root without --user: the warning must wait
    wait_for(s.status, 5)  # the supervisor is up (handlers installed)
    s.signal(signal.SIGTERM)
    closed = s.close()
    assert s.wait(2) == 0
    assert time.monotonic() - closed < 0.5
    assert s.stderr == b""


def test_drain_deadline_stops_reading(sup):
    s = sup(settings={"drain_timeout": 0.3})
    s.write(numbered(1, 10))
    wait_for(lambda: s.received() == numbered(1, 10), 5)
    s.signal(signal.SIGTERM)
    assert s.wait(3) == 0  # stdin still open
    assert b"after SIGTERM" in s.stderr


# -- worker failures ----------------------------------------------------------------------------


def test_killed_worker_gets_its_unacked_lines_replayed(sup):
    s = sup(worker={"ack": False})
    s.write(numbered(1, 50))
    first = wait_for(lambda: s.worker_pids(), 5)[0]
    wait_for(lambda: s.recv(first) == numbered(1, 50), 5)
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: s.worker_pids()[1:], 5)[0]
    s.write(numbered(51, 100))
    s.close()
    assert s.wait() == 0
    assert s.recv(first) == numbered(1, 50)
    assert s.recv(second) == numbered(1, 100), "unacked lines first, then the rest, once each"
    assert b"killed by signal 9" in s.stderr


def test_replay_bound_forgets_oldest_and_resends_from_a_line_boundary(sup, tmp_path):
    release = tmp_path / "release"
    s = sup(settings={"replay_max": 20 << 10, "pipe_size": 64 << 10},
            worker={"ack": False, "stall_until": str(release)})
    data = numbered(1, 5000, width=40)  # 200 KB: fills the 64 KiB data pipe, rest spooled
    s.write(data)
    first = wait_for(lambda: s.worker_pids(), 5)[0]
    status = s.status_when(lambda st: st["lines_read"] == 5000 and st["unprotected_lines"] > 0)
    time.sleep(0.3)  # the stalled worker reads nothing: the counts are settled
    status = s.status()
    assert 0 < status["replay_bytes"] <= 20 << 10
    forgotten = status["unprotected_lines"]
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: s.worker_pids()[1:], 5)
    release.touch()
    s.close()
    assert s.wait() == 0
    second = s.worker_pids()[1]
    got = s.recv(second)
    assert got == numbered(forgotten + 1, 5000, width=40), \
        "resent from the first whole line after the forgotten ones, then the rest, once each"


def test_acked_lines_are_not_replayed_across_crashes(sup):
    s = sup(worker={"exit_after": 40, "exit_code": 1})
    data = numbered(1, 200)
    step = len(numbered(1, 7)) + 5  # cut mid-line

    def trickle(part: bytes):
        for i in range(0, len(part), step):
            s.write(part[i:i + step])
            time.sleep(0.002)

    trickle(data[:len(data) // 2])
    wait_for(lambda: len(s.worker_pids()) >= 2, 5)  # the first worker crashed mid-stream
    trickle(data[len(data) // 2:])
    s.close()
    assert s.wait() == 0
    assert s.received() == data, "every line exactly once, in order, across worker crashes"


def test_recycle_exit_3_restarts_at_once_without_backoff(sup):
    s = sup(worker={"exit_after": 30, "exit_code": 3})
    gaps = []
    for k in range(4):  # back-off would space restarts 0, 0.25, 0.5, 1 s
        s.write(numbered(30 * k + 1, 30 * k + 30))
        status = s.status_when(lambda st: st["worker_recycles"] == k + 1)
        wait_for(lambda: len(s.starts()) >= k + 2, 5)
        gaps.append(float(s.starts()[k + 1][1]) - status["last_worker_exit"]["time"])
    assert status["worker_restarts"] == [] and status["last_worker_exit"]["code"] == 3
    assert max(gaps) < 0.4, f"back-off applied to recycles: {gaps}"
    s.close()
    assert s.wait() == 0
    assert s.received() == numbered(1, 120)
    assert s.stderr == b""


def test_instant_recycle_loop_is_treated_as_a_crash_loop(sup):
    s = sup(worker={"exit_after": 1, "exit_code": 3})
    for i in range(1, 9):
        s.write(numbered(i, i))
        wait_for(lambda: len(s.starts()) >= i + 1, 5)
    wait_for(lambda: b"recycled" in s.stderr, 5)
    s.close()
    assert s.wait() == 0
    assert s.received() == numbered(1, 8)
    assert b"--max-rss" in s.stderr


def test_stopped_worker_is_killed_and_replaced_after_heartbeat_timeout(sup):
    s = sup(settings={"heartbeat_timeout": 0.8})
    s.write(numbered(1, 10))
    first = wait_for(lambda: s.worker_pids(), 5)[0]
    wait_for(lambda: s.recv(first) == numbered(1, 10), 5)
    os.kill(first, signal.SIGSTOP)
    stopped = time.monotonic()
    s.write(numbered(11, 20))  # into the pipe, never read by the stopped worker
    second = wait_for(lambda: s.worker_pids()[1:], 5)[0]
    assert 0.7 < time.monotonic() - stopped < 3
    status = s.status_when(lambda st: st["worker_pid"] == second)
    assert status["last_worker_exit"]["signal"] == signal.SIGKILL
    assert status["last_worker_exit"]["hung"] is True
    wait_for(lambda: dead(first), 2)
    s.close()
    assert s.wait() == 0
    assert s.recv(second) == numbered(11, 20)


def test_crash_loop_backs_off_while_stdin_is_drained(sup, tmp_path):
    healthy = tmp_path / "healthy"
    s = sup(worker={"crash_unless": str(healthy)})
    data = numbered(1, 20000)
    writer = threading.Thread(target=s.write, args=(data,))
    began = time.monotonic()
    writer.start()
    writer.join(5)
    assert not writer.is_alive(), "the writer (httpd) blocked while workers crash-looped"
    status = s.status_when(lambda st: st["lines_read"] == 20000)
    assert status["lines_dropped"] == 0
    time.sleep(max(0.0, 2.5 - (time.monotonic() - began)))
    status = s.status_when(lambda st: st["state"] == "backoff")
    assert status["crash_backoff_until"] > time.time() - 0.1
    starts = len(s.worker_pids())
    # at once, then 0.25, 0.5, 1, 2 s: about 5 starts in 2.5 s (hundreds without back-off)
    assert 3 <= starts <= 7, starts
    assert len(status["worker_restarts"]) >= starts - 1
    healthy.touch()
    closed = s.close()  # EOF: one more worker at once, despite the back-off
    assert s.wait() == 0
    assert time.monotonic() - closed < 1.5
    assert s.received() == data
    assert b"restarting" in s.stderr


def test_spool_bound_drops_and_counts_without_blocking_the_writer(sup, tmp_path):
    release = tmp_path / "release"
    s = sup(settings={"spool_max": 256 << 10, "pipe_size": 64 << 10},
            worker={"stall_until": str(release)})
    data = numbered(1, 40000, width=100)  # 4 MB
    writer = threading.Thread(target=s.write, args=(data,))
    writer.start()
    writer.join(5)
    assert not writer.is_alive(), "the writer (httpd) blocked on a full spool"
    status = s.status_when(lambda st: st["lines_read"] == 40000)
    assert status["lines_dropped"] > 0
    assert status["spool_bytes"] <= 256 << 10
    release.touch()
    s.close()
    assert s.wait() == 0
    got = s.received().splitlines()
    assert len(got) == 40000 - status["lines_dropped"]
    numbers = [int(line.split()[1]) for line in got]
    assert numbers == sorted(set(numbers)), "kept lines arrive once and in order"
    assert s.stderr.count(b"spool full") == 1  # rate-limited


def test_worker_exits_within_a_second_when_the_supervisor_is_killed(sup):
    s = sup()
    s.write(numbered(1, 10))
    worker = wait_for(lambda: s.worker_pids(), 5)[0]
    wait_for(lambda: s.recv(worker), 5)
    s.proc.kill()
    s.proc.wait()
    wait_for(lambda: dead(worker), 1.0)


def test_final_worker_failures_are_bounded_and_reported(sup, tmp_path):
    s = sup(worker={"crash_unless": str(tmp_path / "never")})
    s.write(numbered(1, 10))
    wait_for(lambda: len(s.worker_pids()) >= 2, 5)
    s.close()
    assert s.wait(5) == 1
    assert b"10 lines not confirmed" in s.stderr


# -- privileges ---------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_drops_privileges_to_user_and_chowns_the_status_dir():
    nobody = pwd.getpwnam("nobody")
    work = Path(tempfile.mkdtemp(prefix="logpipe-sup-"))
    try:
        work.chmod(0o777)
        s = Sup(work, settings={"user": "nobody"})
        try:
            s.write(numbered(1, 5))
            wait_for(lambda: s.received() == numbered(1, 5), 5)
            assert int(s.starts()[0][2]) == nobody.pw_uid
            assert s.status_dir.stat().st_uid == nobody.pw_uid
            status = s.status_when(lambda st: st["lines_forwarded"] == 5)
            assert status["pid"] == s.proc.pid
            s.close()
            assert s.wait() == 0
            assert s.stderr == b""
        finally:
            s.kill()
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_without_user_warns_once_after_the_quiet_start(sup):
    s = sup(settings={"user": None})
    wait_for(s.status, 5)  # up (Python start-up is slow under load)
    time.sleep(1.2)
    s.close()
    assert s.wait() == 0
    assert s.stderr.count(b"\n") == 1 and b"running as root" in s.stderr
