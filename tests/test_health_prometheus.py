"""``logpipe health --prometheus FILE``: the textfile for node_exporter, parsed back with
prometheus_client's own parser and compared with the status files it was made from.

Real processes, as in test_health.py (whose fixtures and helpers this reuses): logpipe under
a real httpd with a real memcached, and stand-in processes with hand-written status files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

try:
    from servers import wait_for
    from test_health import (  # noqa: F401 - fixtures
        health_json, judge, logpipe_under_apache, run_health, standin, status_dir)
except ImportError:  # pragma: no cover
    from tests.servers import wait_for
    from tests.test_health import (  # noqa: F401
        health_json, judge, logpipe_under_apache, run_health, standin, status_dir)

from logpipe.commands.health import CRITICAL, OK, UNKNOWN, prometheus

REPO = Path(__file__).resolve().parent.parent


def parse(path: Path) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted label items): value}`` of a textfile, with its TYPE checked."""
    samples = {}
    declared = {name: kind for name, kind, _, _ in
                prometheus.RUN_METRICS + prometheus.INSTANCE_METRICS + prometheus.SERVER_METRICS}
    for family in text_string_to_metric_families(path.read_text()):
        if family.name + "_total" in declared:
            assert family.type == "counter" and declared[family.name + "_total"] == "counter"
        else:
            assert family.type == declared.get(family.name, "gauge"), family.name
        assert family.documentation, family.name  # every metric has HELP text
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, key  # node_exporter rejects a file with duplicate series
            samples[key] = sample.value
    return samples


def status_file(status_dir: str, role: str, pid: int) -> dict:
    with open(os.path.join(status_dir, f"{role}-{pid}.json")) as handle:
        return json.load(handle)


def test_textfile_matches_the_status_files(logpipe_under_apache, logpipe_bin, status_dir, memcached,
                                           tmp_path) -> None:
    apache, report = logpipe_under_apache()
    assert apache.send([f"/page/{i}" for i in range(200)]) == (200, 0)
    sup_pid, worker_pid = report["instances"][0]["supervisor"]["pid"], report["instances"][0]["worker"]["pid"]

    def settled():  # every line read and counted, in both status files (rewritten every ~2 s)
        sup = status_file(status_dir, "supervisor", sup_pid)
        wst = status_file(status_dir, "worker", worker_pid)
        return (sup, wst) if sup["lines_read"] == 220 and wst["lines"] == 220 else None

    sup, wst = wait_for(settled, timeout=15, message="status files with the 220 lines")
    prom = tmp_path / "logpipe.prom"
    report = health_json(logpipe_bin, status_dir, "--prometheus", str(prom))
    assert report["exit_code"] == OK, report["problems"]
    got = parse(prom)
    me = (("supervisor", str(sup_pid)),)
    server = (("server", memcached.spec), ("supervisor", str(sup_pid)))

    # the counts: exactly the status files' (no line arrives after they settled)
    assert got[("logpipe_lines_read_total", me)] == sup["lines_read"] == 220
    assert got[("logpipe_lines_dropped_total", me)] == sup["lines_dropped"] == 0
    assert got[("logpipe_too_long_lines_total", me)] == sup["too_long_lines"]
    assert got[("logpipe_lines_lost_total", me)] == sup["lines_lost"]
    assert got[("logpipe_spool_bytes", me)] == sup["spool_bytes"] == 0
    assert got[("logpipe_spool_limit_bytes", me)] == sup["spool_max"] > 0
    assert got[("logpipe_worker_restarts", me)] == len(sup["worker_restarts"]) == 0
    assert got[("logpipe_worker_recycles_total", me)] == sup["worker_recycles"]
    assert got[("logpipe_rejected_ratio", me)] == 0.0
    assert got[("logpipe_pending_keys", me)] == wst["pending_keys"]
    assert got[("logpipe_dropped_counts_total", me)] == wst["dropped_counts"] == 0
    assert got[("logpipe_flush_failing", me)] == 0
    # the ages: the run's own, and within one status-file rewrite of the files read above
    inst = report["instances"][0]
    assert got[("logpipe_last_flush_age_seconds", me)] == inst["last_flush_age"]
    assert abs(report["time"] - wst["last_flush_ok"] - inst["last_flush_age"]) < 5
    for role in ("supervisor", "worker"):
        age = got[("logpipe_heartbeat_age_seconds", (("role", role), ("supervisor", str(sup_pid))))]
        assert age == inst[role]["heartbeat_age"] and 0 <= age < 10
    # liveness, status, memcached
    assert got[("logpipe_supervisor_up", me)] == got[("logpipe_worker_up", me)] == 1
    assert got[("logpipe_health_status", me)] == OK and got[("logpipe_health_run_status", ())] == OK
    assert got[("logpipe_instances", ())] == 1 and got[("logpipe_apache_up", ())] == 1
    assert got[("logpipe_health_run_timestamp_seconds", ())] == report["time"]
    assert got[("logpipe_memcached_up", server)] == 1
    assert 0 < got[("logpipe_memcached_rtt_seconds", server)] < 1
    assert got[("logpipe_memcached_evictions_total", server)] == inst["memcached"][0]["evictions"]

    # memcached stops: the file says so, and health still writes it while CRITICAL
    memcached.stop()
    code, out, _ = run_health(logpipe_bin, status_dir, "--prometheus", str(prom))
    assert code == CRITICAL, out
    got = parse(prom)
    assert got[("logpipe_memcached_up", server)] == 0
    assert ("logpipe_memcached_rtt_seconds", server) not in got  # unknown: left out, not 0
    assert got[("logpipe_health_status", me)] == CRITICAL
    assert got[("logpipe_health_run_status", ())] == CRITICAL
    assert got[("logpipe_lines_read_total", me)] == status_file(status_dir, "supervisor", sup_pid)["lines_read"]


def test_figures_from_hand_written_status_files(standin, tmp_path) -> None:
    s = standin()
    now = time.time()
    s.write("supervisor", s.pid, lines_read=5000, lines_dropped=7, too_long_lines=2, spool_bytes=1 << 20,
            spool_max=4 << 20, worker_restarts=[now - 60, now - 120, now - 5000], worker_recycles=4)
    s.write("worker", s.worker, lines=4000, rejected={"bad format": 400}, pending_keys=12,
            dropped_counts=3, last_flush_ok=now - 20, last_flush_error="127.0.0.1:1: refused")
    report = judge(s, now)  # judged at the time the files were written: exact ages
    prom = tmp_path / "x.prom"
    prometheus.write(report, str(prom))
    got = parse(prom)
    me = (("supervisor", str(s.pid)),)
    assert got[("logpipe_lines_read_total", me)] == 5000
    assert got[("logpipe_lines_dropped_total", me)] == 7
    assert got[("logpipe_too_long_lines_total", me)] == 2
    assert got[("logpipe_spool_bytes", me)] == 1 << 20 and got[("logpipe_spool_limit_bytes", me)] == 4 << 20
    assert got[("logpipe_worker_restarts", me)] == 2  # the last hour only
    assert got[("logpipe_worker_recycles_total", me)] == 4
    assert got[("logpipe_rejected_ratio", me)] == 0.1
    assert got[("logpipe_pending_keys", me)] == 12 and got[("logpipe_dropped_counts_total", me)] == 3
    assert got[("logpipe_last_flush_age_seconds", me)] == 20.0
    assert got[("logpipe_flush_failing", me)] == 1
    heartbeat = (("role", "worker"), ("supervisor", str(s.pid)))
    assert got[("logpipe_heartbeat_age_seconds", heartbeat)] == 0.0
    # the warnings (dropped lines, dropped counts, rejected share, failing flush) make it WARNING
    assert got[("logpipe_health_status", me)] == report["exit_code"] == 1
    # what the files do not say is absent: no lines_lost, unprotected_lines in them
    assert ("logpipe_lines_lost_total", me) not in got
    assert ("logpipe_unprotected_lines_total", me) not in got


def test_replaced_atomically(tmp_path, logpipe_bin) -> None:
    """Each run renames a complete new file over the old one: a reader never sees half a file,
    the old inode keeps the old content, and no temporary file is left behind."""
    directory = tmp_path / "textfile"
    directory.mkdir()
    prom = directory / "logpipe.prom"
    only_this = ("--match", f"no-logpipe-{os.getpid()}", "--status-dir", str(tmp_path / "status"))
    command = [logpipe_bin, "health", *only_this, "--prometheus", str(prom)]
    subprocess.run(command, capture_output=True, timeout=30)
    names = {name for name, _ in parse(prom)}
    assert {"logpipe_health_run_status", "logpipe_health_run_timestamp_seconds"} <= names
    reads, partial, stop = [0], [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            text = prom.read_text()
            reads[0] += 1
            got = {f.name for f in text_string_to_metric_families(text)}
            if not text.endswith("\n") or got != {n.removesuffix("_total") for n in names}:
                partial.append(text)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(4):
            old = directory / f"old-{i}"
            os.link(prom, old)  # holds the old inode: a rewrite in place would change it
            before = prom.read_text()
            res = subprocess.run(command, capture_output=True, text=True, timeout=30)
            assert res.returncode in (OK, CRITICAL), res.stdout  # CRITICAL when an Apache runs
            assert os.stat(prom).st_ino != os.stat(old).st_ino
            assert old.read_text() == before
            old.unlink()
    finally:
        stop.set()
        thread.join()
    assert reads[0] > 0 and partial == []
    assert sorted(os.listdir(directory)) == ["logpipe.prom"]  # no temporary file left


def test_unwritable_file_is_unknown(standin, tmp_path, logpipe_bin) -> None:
    s = standin()  # an instance that is OK in every other respect
    s.write("supervisor", s.pid)
    s.write("worker", s.worker)
    missing = tmp_path / "no-such-dir" / "logpipe.prom"
    code, out, _ = run_health(logpipe_bin, str(s.status_dir), "--prometheus", str(missing))
    assert code == UNKNOWN, out
    lines = out.splitlines()  # worst first: the UNKNOWN line, then the OK instance
    assert lines[0] == f"UNKNOWN logpipe health: cannot write --prometheus {missing}: No such file or directory"
    assert lines[1].startswith(f"OK logpipe {s.pid}/{s.worker}: all checks OK"), out
    report = health_json(logpipe_bin, str(s.status_dir), "--prometheus", str(missing))
    assert report["exit_code"] == UNKNOWN and report["instances"][0]["status"] == "OK"
    assert report["problems"] == [lines[0].removeprefix("UNKNOWN ")]
    assert not missing.parent.exists()


def test_option_help_and_a_name_node_exporter_would_skip(logpipe_bin, tmp_path) -> None:
    res = subprocess.run([logpipe_bin, "health", "--help"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "--prometheus FILE" in text
    assert "node_exporter's textfile collector" in text and "must end in .prom" in text
    assert "replaced atomically" in text and "(default: none, no file)" in text
    res = subprocess.run([logpipe_bin, "health", "--prometheus", str(tmp_path / "logpipe.txt")],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == UNKNOWN and "does not end in .prom" in res.stdout, res.stdout
    assert not (tmp_path / "logpipe.txt").exists()
    # a setting that stops the check (a missing --config) still leaves an UNKNOWN in the file
    prom = tmp_path / "logpipe.prom"
    res = subprocess.run([logpipe_bin, "health", "--config", str(tmp_path / "missing.conf"),
                          "--prometheus", str(prom)], capture_output=True, text=True, timeout=30)
    assert res.returncode == UNKNOWN and res.stdout.startswith("UNKNOWN logpipe health: "), res.stdout
    assert parse(prom)[("logpipe_health_run_status", ())] == UNKNOWN


def test_metrics_are_documented() -> None:
    text = (REPO / "docs" / "health.md").read_text()
    for name in prometheus.METRIC_NAMES:
        assert f"`{name}`" in text, name
    assert "--collector.textfile.directory" in text


def drop_in() -> str:
    """The ``--prometheus`` drop-in shown in the comments of logpipe-health.service."""
    unit = (REPO / "systemd" / "logpipe-health.service").read_text()
    start = unit.index("#     [Service]\n", unit.index("# Prometheus:"))
    lines = []
    for line in unit[start:].splitlines():
        if not line.startswith("#     "):
            break
        lines.append(line.removeprefix("#     "))
    return "\n".join(lines) + "\n"


def test_the_units_drop_in_verifies_and_writes_the_file(tmp_path, logpipe_bin) -> None:
    """The drop-in as documented: systemd-analyze accepts it, and its command writes the file."""
    text = drop_in()
    assert "--prometheus /var/lib/prometheus/node-exporter/logpipe.prom" in text
    assert "ReadWritePaths=-/var/lib/prometheus/node-exporter" in text  # ProtectSystem=strict
    command = [v for k, _, v in (line.partition("=") for line in text.splitlines())
               if k == "ExecStart" and v][0]
    textfiles = tmp_path / "node-exporter"
    textfiles.mkdir()
    command = command.replace("/usr/local/bin/logpipe", logpipe_bin).replace(
        "/var/lib/prometheus/node-exporter", str(textfiles))
    only_this = ["--match", f"no-logpipe-{os.getpid()}", "--status-dir", str(tmp_path / "status")]
    res = subprocess.run(command.split() + only_this, capture_output=True, text=True, timeout=30)
    assert res.returncode in (OK, CRITICAL), res.stdout  # CRITICAL when an Apache runs
    got = parse(textfiles / "logpipe.prom")
    assert got[("logpipe_instances", ())] == 0 and got[("logpipe_health_run_status", ())] == res.returncode
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    units = tmp_path / "units"
    (units / "logpipe-health.service.d").mkdir(parents=True)
    for name in ("logpipe-health.service", "logpipe-notify@.service"):
        (units / name).write_text((REPO / "systemd" / name).read_text().replace("/usr/local/bin/logpipe",
                                                                                logpipe_bin))
    conf = units / "logpipe-health.service.d" / "prometheus.conf"
    conf.write_text(text.replace("/usr/local/bin/logpipe", logpipe_bin))
    verify = [analyze, "verify", "--recursive-errors=no", "--man=no", str(units / "logpipe-health.service")]
    res = subprocess.run(verify, capture_output=True, text=True, timeout=60, cwd=units)
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr
    conf.write_text(conf.read_text().replace("ReadWritePaths=", "ReadWritePathz="))  # it can fail
    res = subprocess.run(verify, capture_output=True, text=True, timeout=60, cwd=units)
    assert "ReadWritePathz" in res.stderr
