"""logpipe.daemon.protocol: the control messages, the status-file names and the atomic writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from logpipe.config import Settings
from logpipe.daemon import protocol as P


def test_ack_and_heartbeat_round_trip():
    assert P.ack(0) == b"A 0\n"
    assert P.ack(123456789012) == b"A 123456789012\n"
    assert P.parse_control(P.ack(42)[:-1]) == (P.MSG_ACK, 42)
    assert P.parse_control(P.HEARTBEAT[:-1]) == (P.MSG_HEARTBEAT, 0)
    assert P.parse_control(b"") == (P.MSG_HEARTBEAT, 0)  # any message is a sign of life


@pytest.mark.parametrize("line", [b"A", b"A x", b"A 1.5", b"Z 3", b"HH", b"h", b"\x00"])
def test_unknown_control_lines_are_none(line):
    assert P.parse_control(line) is None


def test_exit_codes_are_the_documented_ones():
    assert (P.EXIT_OK, P.EXIT_LINES_LOST, P.EXIT_RECYCLE, P.EXIT_WORKER_EXCEPTION) == (0, 1, 3, 70)
    from logpipe.daemon import supervisor, worker

    assert worker.EXIT_RECYCLE is P.EXIT_RECYCLE and supervisor.EXIT_RECYCLE is P.EXIT_RECYCLE


def test_status_names_round_trip(tmp_path):
    path = P.status_path(str(tmp_path), P.ROLE_SUPERVISOR, 4242)
    assert path == os.path.join(str(tmp_path), "supervisor-4242.json")
    assert P.parse_status_name(os.path.basename(path)) == ("supervisor", 4242)
    assert P.parse_status_name("worker-7.json") == ("worker", 7)
    for name in (".supervisor-1.json.tmp", "worker-7.json.tmp", "worker-x.json", "other-1.json",
                 "supervisor1.json", "supervisor-.json"):
        assert P.parse_status_name(name) is None, name


def test_write_status_is_atomic_and_creates_the_directory(tmp_path):
    path = P.status_path(str(tmp_path / "new"), P.ROLE_WORKER, 9)
    P.write_status(path, {"a": 1})
    assert json.loads(open(path).read()) == {"a": 1}
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    P.write_status(path, {"a": 2, "state": P.State.DRAINING})
    assert json.loads(open(path).read()) == {"a": 2, "state": "draining"}
    assert sorted(os.listdir(tmp_path / "new")) == ["worker-9.json"]  # no temporary left
    with pytest.raises(FileNotFoundError):
        P.write_status(str(tmp_path / "missing" / "x.json"), {}, make_dir=False)
    P.remove_status(path)
    P.remove_status(path)  # already gone: no error
    assert not os.path.exists(path)


def test_supervisor_status_has_exactly_the_declared_fields():
    from logpipe.daemon.supervisor import Supervisor

    status = Supervisor(Settings(log_interval=1e9, status_dir=""), None, None).status()
    assert tuple(status) == P.SUPERVISOR_FIELDS
    assert status[P.STATE] == "backoff" and status[P.SCHEMA] == P.STATUS_SCHEMA


def test_worker_status_has_exactly_the_declared_fields():
    from logpipe.daemon.worker import Worker

    r, w = os.pipe()
    try:
        worker = Worker(Settings(memcached="127.0.0.1:1", status_dir="", log_interval=1e9), r, -1)
        status = worker.status()
    finally:
        os.close(r)
        os.close(w)
    assert tuple(status) == P.WORKER_FIELDS
    assert status[P.ROLE] == P.ROLE_WORKER and status[P.PID] == os.getpid()
    server = next(iter(status[P.SERVERS].values()))
    assert set(server) == {P.SERVER_FAILURES, P.SERVER_LAST_ERROR, P.SERVER_LAST_OK, P.SERVER_RTT}


def test_protocol_imports_only_the_standard_library():
    code = ("import sys; import logpipe.daemon.protocol; "
            "print(sorted(m for m in sys.modules if m.startswith('logpipe')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['logpipe', 'logpipe.daemon', 'logpipe.daemon.protocol']"


def test_the_supervisor_imports_only_the_standard_library():
    """DESIGN.md §1: the supervisor must never fail for want of a library."""
    code = ("import sys; before = set(sys.modules); import logpipe.daemon.supervisor; "
            "names = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print(sorted(names - set(sys.stdlib_module_names) - {'logpipe'})); "
            "print(sorted(m for m in sys.modules if m.startswith('logpipe.')"
            " and not m.startswith(('logpipe.daemon.supervisor', 'logpipe.daemon.protocol'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    third_party, ours = out.stdout.strip().splitlines()
    assert third_party == "[]"
    assert ours == "['logpipe.config', 'logpipe.daemon', 'logpipe.errors', 'logpipe.log']"
