"""``logpipe health``: against logpipe under a real httpd with a real memcached, and against
stand-in processes with hand-written status files for the states that are hard to provoke.

Every check is scoped with ``--match`` to the status directory of its own test, so other
logpipes running on the machine at the same time (other test runs) do not change the answer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

try:
    from servers import wait_for
except ImportError:  # pragma: no cover
    from tests.servers import wait_for

from logpipe.commands import health
from logpipe.commands.health import CRITICAL, OK, UNKNOWN, WARNING, Thresholds, daemon_arguments
from logpipe.commands.health import probe

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "health.md"


# ------------------------------------------------------------------------------ helpers


#: memcached's round-trip time is one sample: on a loaded test machine it can pass the
#: default limits. Tests that are not about it turn it off (0 = off).
NO_RTT = ("--rtt-warn", "0", "--rtt-crit", "0")


def run_health(logpipe_bin: str, status_dir: str, *options: str, json_output: bool = False,
               rtt: bool = False):
    """Run ``logpipe health`` scoped to one status dir; return (exit code, stdout, seconds)."""
    cmd = [logpipe_bin, "health", "--status-dir", status_dir, "--match", status_dir,
           *(() if rtt else NO_RTT), *options]
    if json_output:
        cmd.append("--json")
    started = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    assert res.stderr == "", res.stderr
    return res.returncode, res.stdout, elapsed


def health_json(logpipe_bin: str, status_dir: str, *options: str, rtt: bool = False) -> dict:
    code, out, _ = run_health(logpipe_bin, status_dir, *options, json_output=True, rtt=rtt)
    report = json.loads(out)
    assert report["exit_code"] == code
    return report


def status_dir_for_test() -> str:
    """A status directory that does not exist yet, under a world-readable parent."""
    parent = tempfile.mkdtemp(prefix="logpipe-health-")
    os.chmod(parent, 0o755)
    return os.path.join(parent, "status")


@pytest.fixture
def status_dir():
    path = status_dir_for_test()
    yield path
    subprocess.run(["rm", "-rf", os.path.dirname(path)], check=False)


@pytest.fixture
def logpipe_under_apache(status_dir, apache_factory, memcached, logpipe_bin):
    """``start(*extra_options) -> (apache, report)``: httpd whose CustomLog runs logpipe, once
    health sees a supervisor and its worker.

    status_dir comes first: set up first, removed last, after httpd and logpipe are gone
    (a running supervisor would create it again)."""

    def start(*extra: str):
        options = " ".join(extra)
        apache = apache_factory([f'CustomLog "|{logpipe_bin} --memcached {memcached.spec} '
                                 f'--status-dir {status_dir} {options}" combined'])
        assert apache.send([f"/warm/{i}" for i in range(20)]) == (20, 0)

        def ready():
            report = health_json(logpipe_bin, status_dir)
            inst = report["instances"]
            return report if (len(inst) == 1 and inst[0]["worker"]
                              and inst[0]["worker"]["status_file"]
                              and inst[0]["supervisor"]["status_file"]) else None

        report = wait_for(ready, timeout=15, message="a logpipe with status files")
        return apache, report

    return start


# ------------------------------------------------------------------------------ real httpd


def test_ok_when_all_is_well(logpipe_under_apache, logpipe_bin, status_dir, memcached) -> None:
    apache, report = logpipe_under_apache()
    assert apache.send([f"/page/{i}" for i in range(200)]) == (200, 0)
    inst = report["instances"][0]
    sup, worker = inst["supervisor"]["pid"], inst["worker"]["pid"]
    assert sup in apache.logger_pids("logpipe")
    assert inst["supervisor"]["parent_pid"] == apache.pid

    code, out, _ = wait_for(  # with every default threshold, memcached's rtt included
        lambda: (r := run_health(logpipe_bin, status_dir, rtt=True))[0] == OK and r,
        timeout=10, message="health OK")
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith(f"OK logpipe {sup}/{worker}: all checks OK | "), out
    assert f"memcached {memcached.spec}" in lines[0]
    assert "lines/s" in lines[0]

    # lines/s and the counts come through once the worker has written its status again
    def counted():  # each status file is rewritten every ~2 s: wait for both
        r = health_json(logpipe_bin, status_dir)
        inst = r["instances"][0]
        return r if min(inst["worker_lines"], inst["lines_read"]) >= 220 else None

    report = wait_for(counted, timeout=10, message="status files with the 220 lines")
    inst = report["instances"][0]
    assert report["status"] == "OK" and report["exit_code"] == 0 and report["problems"] == []
    assert inst["lines_read"] >= 220 and inst["lines_dropped"] == 0
    assert inst["rejected_share"] == 0.0 and inst["spool_fill"] == 0.0
    assert inst["worker_restarts_last_hour"] == 0
    assert inst["memcached"][0]["ok"] and inst["memcached"][0]["server"] == memcached.spec
    assert 0 < inst["memcached"][0]["rtt"] < 0.3
    assert {c["name"] for c in inst["checks"]} >= {
        "supervisor", "supervisor_heartbeat", "worker", "worker_heartbeat", "restarts",
        "spool", "dropped", "rejected", "flush", f"memcached {memcached.spec}"}
    assert all(c["status"] == "OK" for c in inst["checks"])


def test_fast_and_read_only(logpipe_under_apache, logpipe_bin, status_dir) -> None:
    apache, report = logpipe_under_apache()
    inst = report["instances"][0]
    pids = (inst["supervisor"]["pid"], inst["worker"]["pid"])
    files = sorted(os.listdir(status_dir))
    times = [run_health(logpipe_bin, status_dir)[2] for _ in range(3)]
    assert min(times) < 1.0, times  # the whole command, Python start-up included
    assert health_json(logpipe_bin, status_dir)["elapsed"] < 1.0
    # nothing was signalled or replaced: same processes, same status files, no restarts
    report = health_json(logpipe_bin, status_dir)
    inst = report["instances"][0]
    assert (inst["supervisor"]["pid"], inst["worker"]["pid"]) == pids
    assert inst["worker_restarts_last_hour"] == 0 and inst["last_worker_exit"] is None
    assert sorted(os.listdir(status_dir)) == files
    assert "failed unexpectedly" not in apache.error_log_text()


def test_critical_when_memcached_is_stopped(logpipe_under_apache, logpipe_bin, status_dir,
                                            memcached) -> None:
    apache, _ = logpipe_under_apache()
    memcached.stop()
    assert apache.send([f"/down/{i}" for i in range(20)]) == (20, 0)
    code, out, elapsed = run_health(logpipe_bin, status_dir)
    assert code == CRITICAL, out
    assert out.startswith("CRITICAL logpipe "), out
    assert f"memcached {memcached.spec} unreachable: ConnectionRefusedError" in out
    assert f"memcached {memcached.spec} down" in out
    report = health_json(logpipe_bin, status_dir)
    inst = report["instances"][0]
    assert inst["memcached"][0]["ok"] is False and "Connection refused" in inst["memcached"][0]["error"]
    assert any(p.startswith(f"logpipe {inst['supervisor']['pid']}: memcached ") for p in report["problems"])
    # the worker reports its failing flushes too, once it has tried
    wait_for(lambda: health_json(logpipe_bin, status_dir)["instances"][0]["last_flush_error"],
             timeout=10, message="the worker's flush error in its status file")


def test_critical_when_memcached_hangs_and_still_fast(logpipe_under_apache, logpipe_bin,
                                                      status_dir, memcached) -> None:
    logpipe_under_apache()
    memcached.pause()
    try:
        code, out, elapsed = run_health(logpipe_bin, status_dir)
        assert code == CRITICAL, out
        assert f"memcached {memcached.spec} unreachable" in out
        assert elapsed < 2.0, elapsed  # one ping timeout (0.3 s) plus start-up, under load
    finally:
        memcached.resume()


def test_warning_then_critical_as_a_stopped_workers_heartbeat_ages(
        logpipe_under_apache, logpipe_bin, status_dir) -> None:
    # the supervisor would replace a silent worker after --heartbeat-timeout: not in this test
    apache, report = logpipe_under_apache("--heartbeat-timeout 120")
    worker = report["instances"][0]["worker"]["pid"]
    # status files are rewritten every ~2 s: 5 s leaves room for a loaded machine
    options = ("--heartbeat-warn", "5", "--heartbeat-crit", "12")
    wait_for(lambda: run_health(logpipe_bin, status_dir, *options)[0] == OK, timeout=10,
             message="health OK before the SIGSTOP")
    os.kill(worker, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        code, out, _ = wait_for(
            lambda: (r := run_health(logpipe_bin, status_dir, *options))[0] != OK
            and "worker heartbeat" in r[1] and r,
            timeout=15, interval=0.2, message="health to notice the stopped worker")
        assert code == WARNING, out
        assert "worker heartbeat" in out and "(process stopped)" in out, out
        assert time.monotonic() - stopped_at >= 2.0  # not at once: only as the heartbeat ages
        code, out, _ = wait_for(
            lambda: (r := run_health(logpipe_bin, status_dir, *options))[0] == CRITICAL and r,
            timeout=20, interval=0.2, message="health CRITICAL")
        assert "worker heartbeat" in out, out
        report = health_json(logpipe_bin, status_dir, *options)
        inst = report["instances"][0]
        assert inst["worker"]["pid"] == worker and inst["worker"]["process_status"] == "stopped"
        assert inst["worker"]["heartbeat_age"] >= 12
        checks = {c["name"]: c["status"] for c in inst["checks"]}
        assert checks["supervisor_heartbeat"] == "OK"  # the supervisor itself is fine
        assert checks["worker"] == "OK"  # alive: stopped is not dead
    finally:
        os.kill(worker, signal.SIGCONT)
    wait_for(lambda: run_health(logpipe_bin, status_dir, *options)[0] == OK, timeout=15,
             message="health OK again after SIGCONT")


def test_graceful_restart_hands_over(logpipe_under_apache, logpipe_bin, status_dir) -> None:
    apache, report = logpipe_under_apache()
    old = report["instances"][0]["supervisor"]["pid"]
    apache.graceful()
    assert apache.send([f"/after/{i}" for i in range(20)]) == (20, 0)

    def new_one():
        r = health_json(logpipe_bin, status_dir)
        pids = [i["supervisor"]["pid"] for i in r["instances"]]
        return r if r["exit_code"] == OK and pids and old not in pids else None

    report = wait_for(new_one, timeout=20, message="health OK with the new supervisor only")
    assert len(report["instances"]) == 1
    assert report["instances"][0]["supervisor"]["parent_pid"] == apache.pid
    assert report["status_dirs"] == [status_dir]  # --match: no other logpipe's directory
    assert report["stale_status_files"] == [], report  # the old one removed its files


def test_critical_when_apache_runs_without_logpipe(apache_factory, logpipe_bin, status_dir,
                                                   tmp_path) -> None:
    apache = apache_factory([f'CustomLog "{tmp_path / "access.log"}" combined'])
    code, out, _ = run_health(logpipe_bin, status_dir)
    assert code == CRITICAL, out
    assert out.startswith("CRITICAL Apache is running (pid ") and "but no logpipe" in out, out
    report = health_json(logpipe_bin, status_dir)
    assert report["apache"]["running"] is True and apache.pid in report["apache"]["pids"]
    assert report["instances"] == []
    check_schema(report)


def test_json_schema(logpipe_under_apache, logpipe_bin, status_dir, memcached) -> None:
    logpipe_under_apache()
    report = health_json(logpipe_bin, status_dir)
    check_schema(report)
    assert len(report["instances"]) == 1
    memcached.stop()
    report = health_json(logpipe_bin, status_dir)
    check_schema(report)
    assert report["status"] == "CRITICAL" and report["exit_code"] == 2


# ------------------------------------------------------------------------------ the schema

NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))
STATUSES = {"OK", "WARNING", "CRITICAL", "UNKNOWN"}

TOP = {"schema": int, "status": str, "exit_code": int, "time": NUM, "elapsed": OPT_NUM,
       "apache": dict, "problems": list, "instances": list, "status_dirs": list,
       "stale_status_files": list, "thresholds": (dict, type(None))}
INSTANCE = {
    "status": str, "exit_code": int, "problems": list, "supervisor": dict,
    "worker": (dict, type(None)), "extra_workers": list, "lines_per_second": OPT_NUM,
    "lines_per_second_average": OPT_NUM, "lines_read": OPT_NUM, "lines_dropped": OPT_NUM,
    "lines_lost": OPT_NUM, "unprotected_lines": OPT_NUM, "too_long_lines": OPT_NUM,
    "spool_bytes": OPT_NUM, "spool_max": OPT_NUM, "spool_fill": OPT_NUM,
    "worker_restarts_last_hour": (int, type(None)), "worker_recycles": OPT_NUM,
    "last_worker_exit": (dict, type(None)), "worker_lines": OPT_NUM, "rejected_share": OPT_NUM,
    "pending_keys": OPT_NUM, "dropped_counts": OPT_NUM, "dropped_visitors": OPT_NUM,
    "last_flush_age": OPT_NUM,
    "last_flush_error": OPT_STR, "memcached_spec": OPT_STR, "memcached": list, "checks": list,
}
SUPERVISOR = {"pid": int, "alive": bool, "orphaned_worker": bool, "process_status": str,
              "parent_pid": int, "started": NUM, "state": OPT_STR, "heartbeat_age": OPT_NUM,
              "status_file": OPT_STR, "cmdline": list}
WORKER = {"pid": int, "alive": bool, "process_status": OPT_STR, "started": OPT_NUM,
          "heartbeat_age": OPT_NUM, "status_file": OPT_STR}
SERVER = {"server": str, "ok": bool, "rtt": OPT_NUM, "error": OPT_STR,
          "evictions": (int, type(None)), "evictions_since_start": (int, type(None)),
          "uptime": (int, type(None))}
CHECK = {"name": str, "status": str, "message": str}


def _fields(obj: dict, spec: dict, where: str) -> None:
    assert set(obj) == set(spec), f"{where}: {sorted(set(obj) ^ set(spec))}"
    for key, kind in spec.items():
        assert isinstance(obj[key], kind), f"{where}.{key} = {obj[key]!r}"
        assert not (isinstance(obj[key], bool) and kind in (int, NUM, OPT_NUM)), f"{where}.{key}"


def check_schema(report: dict) -> None:
    """The --json document has exactly the documented fields, with their types."""
    _fields(report, TOP, "report")
    assert report["schema"] == 1
    assert report["status"] in STATUSES
    assert report["exit_code"] == {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}[report["status"]]
    _fields(report["apache"], {"running": (bool, type(None)), "pids": list}, "apache")
    assert all(isinstance(p, str) for p in report["problems"])
    for inst in report["instances"]:
        _fields(inst, INSTANCE, "instance")
        assert inst["status"] in STATUSES
        _fields(inst["supervisor"], SUPERVISOR, "supervisor")
        if inst["worker"] is not None:
            _fields(inst["worker"], WORKER, "worker")
        for server in inst["memcached"]:
            _fields(server, SERVER, "memcached")
        for check in inst["checks"]:
            _fields(check, CHECK, "check")
            assert check["status"] in STATUSES
        worst = max((c["status"] for c in inst["checks"]),
                    key=["OK", "UNKNOWN", "WARNING", "CRITICAL"].index)
        assert inst["status"] == worst
    if report["thresholds"] is not None:
        assert set(report["thresholds"]) == {f for f, _, _ in health.OPTIONS}


def test_schema_is_documented() -> None:
    """docs/health.md names every field of the --json document and every option."""
    text = DOC.read_text()
    for spec in (TOP, INSTANCE, SUPERVISOR, WORKER, SERVER, CHECK):
        for key in spec:
            assert f"`{key}`" in text, key
    for field, _, _ in health.OPTIONS:
        assert "--" + field.replace("_", "-") in text, field


# ------------------------------------------------------------------------------ stand-ins
#
# A script named "logpipe" that forks once and sleeps: to health it is a supervisor and
# its worker (the command line matches; the child's parent is the supervisor). The status
# files are written by the test.

STANDIN = textwrap.dedent("""\
    import os, sys, time
    mode = os.environ.get("STANDIN_MODE", "")
    pid = os.fork()
    if pid == 0:
        if mode in ("zombie_worker", "no_worker"):
            os._exit(1)
        time.sleep(120)
        os._exit(0)
    if mode == "no_worker":
        os.waitpid(pid, 0)
    print(pid, flush=True)
    if mode == "orphan":
        os._exit(0)
    time.sleep(120)
""")


class StandIn:
    def __init__(self, directory: Path, status_dir: Path, memcached: str, mode: str = "",
                 name: str = "logpipe"):
        self.status_dir = status_dir
        script = directory / "bin" / name
        script.parent.mkdir(exist_ok=True)
        script.write_text(STANDIN)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--memcached", memcached, "--status-dir", str(status_dir)],
            stdout=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, "STANDIN_MODE": mode})
        self.pid = self.proc.pid
        self.worker = int(self.proc.stdout.readline())
        self.started = time.time()

    def write(self, role: str, pid: int, **fields) -> None:
        now = time.time()
        doc = {"schema": 1, "role": role, "pid": pid, "started": self.started, "updated": now}
        if role == "supervisor":
            doc.update(state="running", argv=[], memcached=None, lines_read=1000, lines_dropped=0,
                       spool_bytes=0, spool_max=64 << 20, worker_pid=self.worker,
                       worker_last_message=now, worker_restarts=[], last_worker_exit=None)
        else:
            doc.update(lines=1000, lines_per_second=12.5, rejected={}, pending_keys=0,
                       dropped_counts=0, last_flush_ok=now, last_flush_error=None)
        doc.update(fields)
        self.status_dir.mkdir(exist_ok=True)
        (self.status_dir / f"{role}-{pid}.json").write_text(json.dumps(doc))

    def stop(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def standin(tmp_path, memcached):
    made: list[StandIn] = []

    def make(mode: str = "", memcached_spec: str | None = None, name: str = "logpipe") -> StandIn:
        s = StandIn(tmp_path, tmp_path / "status", memcached_spec or memcached.spec, mode, name)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def judge(s: StandIn, now: float | None = None, **limits) -> dict:
    limits = {"rtt_warn": 0, "rtt_crit": 0, **limits}  # see NO_RTT
    report = health.check(Thresholds(**limits), status_dirs=[str(s.status_dir)],
                          match=[str(s.status_dir)], now=now)
    check_schema(report)
    return report


def by_name(inst: dict) -> dict[str, dict]:
    return {c["name"]: c for c in inst["checks"]}


def test_standin_is_found_and_ok(standin, memcached) -> None:
    s = standin()
    s.write("supervisor", s.pid)
    s.write("worker", s.worker)
    report = judge(s)
    assert report["status"] == "OK", report["problems"]
    inst = report["instances"][0]
    assert (inst["supervisor"]["pid"], inst["worker"]["pid"]) == (s.pid, s.worker)
    assert inst["memcached_spec"] == memcached.spec  # from its command line
    assert inst["lines_per_second"] == 12.5
    line = health.format_lines(report)[0]
    assert line.startswith(f"OK logpipe {s.pid}/{s.worker}: all checks OK | 12.5 lines/s"), line


# fields are callables: times are taken when the test runs, not when it is collected
@pytest.mark.parametrize("fields, check, status, words", [
    (lambda now: {"spool_bytes": 60 << 20}, "spool", CRITICAL, "spool 94% full"),
    (lambda now: {"spool_bytes": 40 << 20}, "spool", WARNING, "spool 62% full"),
    (lambda now: {"lines_dropped": 5}, "dropped", WARNING, "5 lines dropped"),
    (lambda now: {"lines_dropped": 20000}, "dropped", CRITICAL, "20000 lines dropped"),
    (lambda now: {"worker_restarts": [now - 60] * 4 + [now - 4000] * 9}, "restarts", WARNING,
     "4 worker restarts in the last hour"),
    (lambda now: {"worker_restarts": [now - 60] * 12}, "restarts", CRITICAL, "12 worker restarts"),
    (lambda now: {"updated": now - 12}, "supervisor_heartbeat", WARNING, "supervisor heartbeat 12."),
    (lambda now: {"updated": now - 31}, "supervisor_heartbeat", CRITICAL, "supervisor heartbeat 31."),
])
def test_supervisor_figures(standin, fields, check, status, words) -> None:
    s = standin()
    now = time.time()
    s.write("supervisor", s.pid, **fields(now))
    s.write("worker", s.worker)
    report = judge(s, now)  # judged at the time the files were written: exact ages
    got = by_name(report["instances"][0])[check]
    assert (got["status"], words in got["message"]) == (health.STATUS_NAMES[status], True), got
    assert report["exit_code"] == status


@pytest.mark.parametrize("fields, check, status, words", [
    (lambda now: {"lines": 1000, "rejected": {"bad format": 700}}, "rejected", CRITICAL,
     "70.0% of 1000 lines rejected (mostly bad format; does --format match the LogFormat?)"),
    (lambda now: {"lines": 1000, "rejected": {"bad timestamp": 80}}, "rejected", WARNING,
     "8.0% of 1000"),
    (lambda now: {"lines": 50, "rejected": {"bad format": 50}}, "flush", OK, ""),  # too few lines
    (lambda now: {"last_flush_ok": now - 20, "last_flush_error": "127.0.0.1:1: refused",
                  "pending_keys": 7}, "flush", WARNING,
     "no successful flush for 20.0s: 127.0.0.1:1: refused (7 keys wait)"),
    (lambda now: {"last_flush_ok": now - 100, "last_flush_error": "x"}, "flush", CRITICAL,
     "(0 keys wait)"),
    (lambda now: {"last_flush_ok": now - 3600}, "flush", OK, "flushes succeed"),  # idle
    (lambda now: {"dropped_counts": 3}, "dropped_counts", WARNING, "--max-pending-keys"),
    (lambda now: {"dropped_visitors": 4}, "dropped_visitors", WARNING, "4 new visitors dropped"),
    (lambda now: {"updated": now - 40}, "worker_heartbeat", OK, "worker heartbeat 0."),  # see below
])
def test_worker_figures(standin, fields, check, status, words) -> None:
    s = standin()
    now = time.time()
    s.write("supervisor", s.pid, worker_last_message=now)  # the worker's heartbeat is fresh
    s.write("worker", s.worker, **fields(now))
    inst = judge(s, now)["instances"][0]
    got = by_name(inst)[check]
    assert got["status"] == health.STATUS_NAMES[status] and words in got["message"], got
    if check == "flush" and status == OK and not words:
        assert "rejected" not in by_name(inst) and inst["rejected_share"] == 1.0


def test_worker_heartbeat_from_either_source(standin) -> None:
    s = standin()
    now = time.time()
    s.write("supervisor", s.pid, updated=now, worker_last_message=now - 12)
    s.write("worker", s.worker, updated=now - 40)
    got = by_name(judge(s, now)["instances"][0])["worker_heartbeat"]
    assert got["status"] == "WARNING" and "worker heartbeat 12.0s" in got["message"], got
    s.write("supervisor", s.pid, updated=now, worker_last_message=None)
    got = by_name(judge(s, now)["instances"][0])["worker_heartbeat"]
    assert got["status"] == "CRITICAL" and "worker heartbeat 40." in got["message"], got


def test_found_by_its_status_file_alone(standin, memcached) -> None:
    """A supervisor whose command line does not look like logpipe's (renamed, wrapped) is
    found by its status file, and its worker is the child the file names."""
    s = standin(name="renamed-logger")
    s.write("supervisor", s.pid, memcached=memcached.spec)
    s.write("worker", s.worker)
    report = judge(s)
    assert report["status"] == "OK", report["problems"]
    assert len(report["instances"]) == 1
    inst = report["instances"][0]
    assert (inst["supervisor"]["pid"], inst["worker"]["pid"]) == (s.pid, s.worker)
    assert inst["supervisor"]["cmdline"][1].endswith("renamed-logger")
    assert inst["memcached"][0]["ok"]


def test_zombie_worker(standin) -> None:
    s = standin("zombie_worker")
    wait_for(lambda: open(f"/proc/{s.worker}/stat").read().split(") ")[1][0] == "Z", timeout=5)
    s.write("supervisor", s.pid)
    inst = judge(s)["instances"][0]
    assert inst["worker"]["alive"] is False and inst["worker"]["process_status"] == "zombie"
    assert by_name(inst)["worker"]["status"] == "WARNING"  # the supervisor is fresh: it will reap
    s.write("supervisor", s.pid, updated=time.time() - 40)
    inst = judge(s)["instances"][0]
    assert by_name(inst)["worker"]["status"] == "CRITICAL"
    assert "zombie" in by_name(inst)["worker"]["message"]


def test_no_worker_after_a_crash(standin) -> None:
    s = standin("no_worker")  # its worker exited at once and was reaped
    wait_for(lambda: not os.path.exists(f"/proc/{s.worker}"), timeout=5)
    s.write("supervisor", s.pid, worker_pid=None, state="backoff",
            last_worker_exit={"code": 70, "time": time.time() - 2},
            crash_backoff_until=time.time() + 3)
    report = judge(s)
    inst = report["instances"][0]
    assert inst["worker"] is None
    worker = by_name(inst)["worker"]
    assert worker["status"] == "WARNING" and "restarting (last exit: code 70)" in worker["message"]
    assert "next start in" in worker["message"]
    assert health.format_lines(report)[0].startswith(f"WARNING logpipe {s.pid}/- [backoff]: ")
    s.write("supervisor", s.pid, worker_pid=None, state="backoff",
            last_worker_exit={"signal": 9, "time": time.time() - 25, "hung": True})
    worker = by_name(judge(s)["instances"][0])["worker"]
    assert worker["status"] == "CRITICAL" and "killed (no heartbeat)" in worker["message"]


def test_no_worker_and_no_status_file_hints_at_a_bad_option(standin) -> None:
    s = standin("no_worker")
    wait_for(lambda: not os.path.exists(f"/proc/{s.worker}"), timeout=5)
    report = judge(s, heartbeat_warn=0.01)
    worker = by_name(report["instances"][0])["worker"]
    assert worker["status"] == "CRITICAL" and "a bad option?" in worker["message"]


def test_orphaned_worker_and_stale_files(standin) -> None:
    s = standin("orphan")
    s.proc.wait()  # the stand-in supervisor is gone; its worker lives on
    s.write("worker", s.worker)
    s.write("supervisor", s.pid)  # left behind by the dead supervisor: stale
    report = judge(s)
    assert len(report["instances"]) == 1
    inst = report["instances"][0]
    assert inst["supervisor"]["orphaned_worker"] is True and inst["supervisor"]["alive"] is False
    assert inst["status"] == "WARNING" and "has no supervisor" in inst["problems"][0]
    assert report["stale_status_files"] == [str(s.status_dir / f"supervisor-{s.pid}.json")]


def test_status_file_of_a_reused_pid_is_stale(standin) -> None:
    s = standin()
    s.started = time.time() - 3600  # written by a process that started before this one
    s.write("supervisor", s.pid)
    report = judge(s)
    assert str(s.status_dir / f"supervisor-{s.pid}.json") in report["stale_status_files"]
    inst = report["instances"][0]  # still found, from its command line
    assert inst["supervisor"]["status_file"] is None


def test_missing_status_file_is_unknown_after_the_grace(standin) -> None:
    s = standin()
    report = judge(s)  # just started: no status file yet is normal
    assert by_name(report["instances"][0])["supervisor_heartbeat"]["status"] == "OK"
    report = judge(s, heartbeat_warn=0.01)
    checks = by_name(report["instances"][0])
    assert checks["supervisor_heartbeat"]["status"] == "UNKNOWN"
    assert report["exit_code"] == UNKNOWN  # the worker lives: nothing worse than unknown


def test_memcached_down(standin) -> None:
    s = standin(memcached_spec="127.0.0.1:1")  # nothing listens on port 1
    s.write("supervisor", s.pid)
    s.write("worker", s.worker)
    report = judge(s)
    assert report["exit_code"] == CRITICAL
    assert "memcached 127.0.0.1:1 unreachable: ConnectionRefusedError" in report["problems"][0]


def test_memcached_round_trip_is_graded(standin, memcached) -> None:
    s = standin()
    s.write("supervisor", s.pid)
    s.write("worker", s.worker)
    name = f"memcached {memcached.spec}"
    checks = by_name(judge(s, rtt_warn=1e-9, rtt_crit=10)["instances"][0])
    assert checks[name]["status"] == "WARNING" and " rtt " in checks[name]["message"]
    checks = by_name(judge(s, rtt_warn=1e-9, rtt_crit=1e-9)["instances"][0])
    assert checks[name]["status"] == "CRITICAL"
    assert by_name(judge(s)["instances"][0])[name]["status"] == "OK"  # 0 = off


def test_evictions_since_start(standin, memcached_factory, memcached) -> None:
    s = standin(memcached_spec="127.0.0.1:1")
    before = memcached  # started before the stand-in: its evictions have no baseline
    time.sleep(3)  # memcached's uptime runs ~2 s ahead
    small = memcached_factory(memory_mb=2)  # started after the stand-in
    client = small.client()
    for i in range(400):
        client.set(f"filler-{i}", b"x" * 50_000)
    client.close()
    s.write("supervisor", s.pid, memcached=f"{small.spec},{before.spec}")
    s.write("worker", s.worker)
    report = judge(s)
    inst = report["instances"][0]
    servers = {e["server"]: e for e in inst["memcached"]}
    assert servers[small.spec]["evictions"] > 0
    assert servers[small.spec]["evictions_since_start"] == servers[small.spec]["evictions"]
    assert servers[before.spec]["evictions"] == 0
    assert servers[before.spec]["evictions_since_start"] is None
    assert by_name(inst)[f"memcached {small.spec} evictions"]["status"] == "WARNING"
    assert f"memcached {before.spec} evictions" not in by_name(inst)
    assert report["exit_code"] == WARNING


def test_no_logpipe_and_no_apache_is_ok(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(probe, "processes", lambda: {})  # a machine with nothing running
    report = health.check(status_dirs=[str(tmp_path)])
    assert report["status"] == "OK" and report["instances"] == []
    assert health.format_lines(report) == ["OK no logpipe running, and Apache is not running"]


# ------------------------------------------------------------------------------ small parts


@pytest.mark.parametrize("cmdline, expected", [
    (["/usr/bin/python3", "/usr/local/bin/logpipe", "--memcached", "x"], ["--memcached", "x"]),
    (["/opt/venv/bin/python3.11", "-u", "/opt/venv/bin/logpipe"], []),
    (["/usr/local/bin/logpipe", "--format", "combined"], ["--format", "combined"]),
    (["python3", "-X", "dev", "-m", "logpipe", "--prefix", "p"], ["--prefix", "p"]),
    (["python3", "-m", "logpipe.commands.main"], []),
    (["/usr/bin/python3", "/usr/local/bin/logpipe", "health", "--json"], None),
    (["/usr/bin/python3", "/usr/local/bin/logpipe", "top"], None),
    (["/usr/bin/python3", "/usr/local/bin/logpipe", "--dry-run"], None),
    (["/usr/bin/python3", "/usr/local/bin/logpipe", "--version"], None),
    (["/usr/bin/vim", "/usr/local/bin/logpipe"], None),
    (["/usr/bin/python3", "/srv/logpipe-tools/other.py"], None),
    (["python3", "-m", "pytest", "logpipe"], None),
    ([], None),
    (None, None),
])
def test_daemon_arguments(cmdline, expected) -> None:
    assert daemon_arguments(cmdline) == expected


def test_worst_order() -> None:
    assert health.worst([]) == OK
    assert health.worst([OK, UNKNOWN]) == UNKNOWN
    assert health.worst([UNKNOWN, WARNING]) == WARNING
    assert health.worst([WARNING, CRITICAL, UNKNOWN]) == CRITICAL


def test_bad_option_or_setting_is_unknown(logpipe_bin, tmp_path) -> None:
    res = subprocess.run([logpipe_bin, "health", "--heartbeat-warn", "soon"], capture_output=True,
                         text=True)
    assert res.returncode == UNKNOWN, res
    assert res.stdout.startswith("UNKNOWN logpipe health: argument --heartbeat-warn"), res.stdout
    res = subprocess.run([logpipe_bin, "health", "--no-such-option"], capture_output=True, text=True)
    assert res.returncode == UNKNOWN and "--no-such-option" in res.stdout
    res = subprocess.run([logpipe_bin, "health", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--heartbeat-warn" in res.stdout
    res = subprocess.run([logpipe_bin, "health", "--config", str(tmp_path / "missing.conf")],
                         capture_output=True, text=True)
    assert res.returncode == UNKNOWN and res.stdout.startswith("UNKNOWN "), res.stdout
