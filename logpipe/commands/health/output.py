"""Printing for ``logpipe health``: the ``--json`` document (schema 1) and the one-line-per-instance text.

The schema is documented field by field in ``docs/health.md``; new fields may
be added within schema 1, none removed or retyped.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

from logpipe.daemon import protocol as P
from logpipe.commands.health.judge import (
    CRITICAL, OK, SEVERITY, STATUS_NAMES, UNKNOWN, Thresholds, Verdict, fmt_seconds, worst,
)
from logpipe.commands.health.records import Census, number

#: Version of the ``--json`` document.
SCHEMA = 1


def _round(value: Any, digits: int = 3) -> Optional[float]:
    value = number(value)
    return None if value is None else round(value, digits)


def instance_document(verdict: Verdict) -> dict:
    """One judged instance in the ``--json`` schema."""
    found, figures, checks = verdict.found, verdict.figures, verdict.checks
    sup, wst, proc, worker = found.status, found.worker_status, found.proc, found.worker_proc
    status = checks.status
    started = sup.number(P.STARTED)
    updated = sup.number(P.UPDATED)
    lines_read = sup.number(P.LINES_READ)
    average = (lines_read / (updated - started)
               if lines_read is not None and started and updated and updated > started else None)
    return {
        "status": STATUS_NAMES[status],
        "exit_code": status,
        "problems": checks.problems,
        "supervisor": {
            "pid": found.pid,
            "alive": found.alive,
            "orphaned_worker": found.orphan,
            "process_status": proc.status,
            "parent_pid": proc.ppid,
            "started": started if started is not None else proc.create_time,
            "state": sup.get(P.STATE) if not found.orphan else None,
            "heartbeat_age": _round(figures.supervisor_heartbeat),
            "status_file": sup.path or None,
            "cmdline": found.cmdline,
        },
        "worker": None if found.worker_pid is None else {
            "pid": found.worker_pid,
            "alive": bool(worker and worker.alive),
            "process_status": worker.status if worker else None,
            "started": wst.number(P.STARTED) or (worker.create_time if worker else None),
            "heartbeat_age": _round(figures.worker_heartbeat),
            "status_file": wst.path or None,
        },
        "extra_workers": found.extra_workers,
        "lines_per_second": wst.number(P.LINES_PER_SECOND),
        "lines_per_second_average": _round(average, 1),
        "lines_read": lines_read,
        "lines_dropped": sup.number(P.LINES_DROPPED),
        "lines_lost": sup.number(P.LINES_LOST),
        "unprotected_lines": sup.number(P.UNPROTECTED_LINES),
        "too_long_lines": sup.number(P.TOO_LONG_LINES),
        "spool_bytes": sup.number(P.SPOOL_BYTES),
        "spool_max": sup.number(P.SPOOL_MAX),
        "spool_fill": _round(figures.spool_fill, 4),
        "worker_restarts_last_hour": figures.restarts,
        "worker_recycles": sup.number(P.WORKER_RECYCLES),
        "last_worker_exit": sup.get(P.LAST_WORKER_EXIT),
        "worker_lines": wst.number(P.LINES),
        "rejected_share": _round(figures.rejected_share, 4),
        "pending_keys": wst.number(P.PENDING_KEYS),
        "dropped_counts": wst.number(P.DROPPED_COUNTS),
        "dropped_visitors": wst.number(P.DROPPED_VISITORS),
        "last_flush_age": _round(figures.flush_age),
        "last_flush_error": wst.get(P.LAST_FLUSH_ERROR),
        "memcached_spec": found.memcached_spec,
        "memcached": [
            {"server": e["server"], "ok": bool(e.get("ok")), "rtt": _round(e.get("rtt"), 6),
             "error": e.get("error"), "evictions": e.get("evictions"),
             "evictions_since_start": e.get("evictions_since_start"), "uptime": e.get("uptime")}
            for e in figures.memcached
        ],
        "checks": [{"name": c["name"], "status": c["status"], "message": c["message"]}
                   for c in checks.items],
    }


def report_document(census: Census, verdicts: list[Verdict], match: list[str], limits: Thresholds,
                    now: float, elapsed: float) -> dict:
    """The whole ``--json`` document: every instance (worst first) and the global check.

    Args:
        census: what was found.
        verdicts: each instance of the census, judged (memcached included).
        match: the ``--match`` strings (for the message when nothing matched).
        limits: the thresholds used.
        now: the Unix time of the snapshot (seconds).
        elapsed: seconds the check took.
    """
    documents = [instance_document(v) for v in verdicts]
    documents.sort(key=lambda d: (-SEVERITY[d["exit_code"]], d["supervisor"]["pid"]))
    apache = census.apache
    problems: list[str] = []
    global_status = OK
    if not documents:
        what = "logpipe" + (f" matching {' or '.join(map(repr, match))}" if match else "")
        if apache:
            global_status = CRITICAL
            problems.append(f"Apache is running (pid {', '.join(map(str, apache[:5]))}"
                            f"{', …' if len(apache) > 5 else ''}) but no {what} is")
        else:
            problems.append(f"no {what} running, and Apache is not running")
    for doc in documents:
        problems.extend(f"logpipe {doc['supervisor']['pid']}: {p}" for p in doc["problems"])
    code = worst([global_status, *(d["exit_code"] for d in documents)])
    return {
        "schema": SCHEMA,
        "status": STATUS_NAMES[code],
        "exit_code": code,
        "time": now,
        "elapsed": round(elapsed, 3),
        "apache": {"running": bool(apache), "pids": apache},
        "problems": problems,
        "instances": documents,
        "status_dirs": census.status_dirs,
        "stale_status_files": census.stale_status_files,
        "thresholds": dataclasses.asdict(limits),
    }


def unknown_report(message: str) -> dict:
    """The document of a run that could not check at all (UNKNOWN, *message* as its problem)."""
    return {"schema": SCHEMA, "status": "UNKNOWN", "exit_code": UNKNOWN, "time": time.time(),
            "elapsed": None, "apache": {"running": None, "pids": []}, "problems": [message],
            "instances": [], "status_dirs": [], "stale_status_files": [], "thresholds": None}


def format_lines(report: dict) -> list[str]:
    """The human output: one line per instance (worst first), or one line when there is none.

    Each line is ``STATUS logpipe SUP/WORKER [state]: problems | figures``.
    """
    if not report["instances"]:
        return [f"{report['status']} {'; '.join(report['problems']) or 'nothing to check'}"]
    lines = []
    for inst in report["instances"]:
        sup, worker = inst["supervisor"], inst["worker"]
        who = f"logpipe {sup['pid']}/{worker['pid'] if worker else '-'}"
        if sup.get("state") and sup["state"] != P.State.RUNNING:
            who += f" [{sup['state']}]"
        figures = []
        if inst["lines_per_second"] is not None:
            figures.append(f"{inst['lines_per_second']:g} lines/s")
        elif inst["lines_per_second_average"] is not None:
            figures.append(f"{inst['lines_per_second_average']:g} lines/s (average)")
        ages = [sup["heartbeat_age"], worker["heartbeat_age"] if worker else None]
        beats = ["-" if age is None else fmt_seconds(age) for age in ages]
        figures.append(f"heartbeat {beats[0]}/{beats[1]}")
        if inst["spool_fill"] is not None:
            figures.append(f"spool {inst['spool_fill']:.0%}")
        if inst["lines_dropped"] is not None:
            figures.append(f"dropped {inst['lines_dropped']:.0f}")
        if inst["rejected_share"] is not None:
            figures.append(f"rejected {inst['rejected_share']:.1%}")
        if inst["worker_restarts_last_hour"] is not None:
            figures.append(f"restarts {inst['worker_restarts_last_hour']}/h")
        for server in inst["memcached"]:
            if server["ok"]:
                figures.append(f"memcached {server['server']} {server['rtt'] * 1000:.1f}ms"
                               f" evictions {server['evictions']}")
            else:
                figures.append(f"memcached {server['server']} down")
        problems = "; ".join(inst["problems"]) or "all checks OK"
        lines.append(f"{inst['status']} {who}: {problems} | {', '.join(figures)}")
    return lines
