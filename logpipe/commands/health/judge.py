"""Judging for ``logpipe health``: figures against thresholds → OK / WARNING / CRITICAL / UNKNOWN.

Exit codes follow the monitoring-plugin convention (0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN).  A status is the worst of its checks, in the order
OK < UNKNOWN < WARNING < CRITICAL.  The checks and their limits are listed in
``docs/health.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional

from logpipe.daemon import protocol as P
from logpipe.commands.health.records import Found, number
from logpipe.config import ConfigError, parse_servers

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
#: exit code → name, as monitoring plugins print it.
STATUS_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
#: how bad each exit code is, for "the worst status wins".
SEVERITY = {OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}


def worst(codes: Iterable[int]) -> int:
    """The worst of monitoring-plugin exit codes (OK < UNKNOWN < WARNING < CRITICAL); OK when empty."""
    result = OK
    for code in codes:
        if SEVERITY[code] > SEVERITY[result]:
            result = code
    return result


@dataclasses.dataclass
class Thresholds:
    """Warning and critical limits of ``logpipe health`` (each is an option).

    Times are seconds; ``spool_*``, ``rejected_*`` are fractions (0.5 = 50 %).
    A value is a problem when it is at or above the limit; a limit of 0 is off.
    """

    heartbeat_warn: float = 10.0
    heartbeat_crit: float = 30.0
    restarts_warn: int = 3
    restarts_crit: int = 10
    spool_warn: float = 0.5
    spool_crit: float = 0.9
    dropped_warn: int = 1
    dropped_crit: int = 10000
    rejected_warn: float = 0.05
    rejected_crit: float = 0.5
    rejected_min_lines: int = 100
    flush_warn: float = 15.0
    flush_crit: float = 60.0
    rtt_warn: float = 0.1
    rtt_crit: float = 0.25
    evictions_warn: int = 1
    ping_timeout: float = 0.3


class Checks:
    """The checks of one instance, in order: ``{"name", "status", "code", "message"}`` dicts."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, name: str, status: int, message: str) -> None:
        """Add check *name* with exit code *status* (OK … UNKNOWN) and a one-line *message*."""
        self.items.append({"name": name, "status": STATUS_NAMES[status], "code": status,
                           "message": message})

    def graded(self, name: str, value: float, warn: float, crit: float, message: str) -> None:
        """Add a check whose status is *value* against *warn*/*crit* (0 disables a limit)."""
        status = OK
        if crit and value >= crit:
            status = CRITICAL
        elif warn and value >= warn:
            status = WARNING
        self.add(name, status, message)

    @property
    def status(self) -> int:
        """The worst exit code of the checks (OK when there is none)."""
        return worst(item["code"] for item in self.items)

    @property
    def problems(self) -> list[str]:
        """The messages of the checks that are not OK."""
        return [c["message"] for c in self.items if c["code"] != OK]


@dataclasses.dataclass
class Figures:
    """What judging measured for one instance (seconds, fractions, counts; None = unknown)."""

    supervisor_heartbeat: Optional[float] = None
    worker_heartbeat: Optional[float] = None
    restarts: Optional[int] = None
    spool_fill: Optional[float] = None
    rejected_share: Optional[float] = None
    flush_age: Optional[float] = None
    #: per memcached server: its ping entry plus ``server`` and ``evictions_since_start``
    memcached: list[dict] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Verdict:
    """One instance judged: what was found, its checks and its figures."""

    found: Found
    checks: Checks
    figures: Figures


def fmt_seconds(seconds: Optional[float]) -> str:
    """A duration for people: ``4.2s``, ``12min``, ``3.1h``, ``2.0d``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def fmt_bytes(n: Optional[float]) -> str:
    """A size for people, in binary units: ``512B``, ``1.5K``, ``64.0M``; ``?`` when unknown."""
    if n is None:
        return "?"
    for unit in ("B", "K", "M", "G"):
        if abs(n) < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}"


def _age(now: float, then: Any) -> Optional[float]:
    value = number(then)
    return None if value is None else max(0.0, now - value)


def _exit_time(last_exit: Any) -> Optional[float]:
    """When the last worker exited (``last_worker_exit["time"]``), or None."""
    return number(last_exit.get(P.EXIT_TIME)) if isinstance(last_exit, dict) else None


def _exit_text(last_exit: Any) -> str:
    """``last_worker_exit`` in words: "killed (no heartbeat)", "code 70", "signal 9"."""
    if not isinstance(last_exit, dict):
        return ""
    if last_exit.get(P.EXIT_HUNG):
        return "killed (no heartbeat)"
    if last_exit.get(P.EXIT_SIGNAL) is not None:
        return f"signal {last_exit[P.EXIT_SIGNAL]}"
    if last_exit.get(P.EXIT_CODE) is not None:
        return f"code {last_exit[P.EXIT_CODE]}"
    return ""


def judge(found: Found, limits: Thresholds, now: float) -> Verdict:
    """Run every check of one instance but memcached's (see :func:`judge_memcached`).

    Args:
        found: the instance.
        limits: the thresholds.
        now: the Unix time to judge ages against (seconds).
    """
    verdict = Verdict(found, Checks(), Figures())
    if found.orphan:
        verdict.checks.add("supervisor", WARNING, f"worker {found.pid} has no supervisor "
                                                  f"(parent {found.proc.ppid}); it should be exiting")
        return verdict
    _judge_supervisor(verdict, limits, now)
    _judge_worker(verdict, limits, now)
    _judge_counters(verdict, limits, now)
    _judge_flush(verdict, limits, now)
    return verdict


def _judge_supervisor(verdict: Verdict, limits: Thresholds, now: float) -> None:
    """``supervisor`` (alive) and ``supervisor_heartbeat`` (its status file's age)."""
    found, checks = verdict.found, verdict.checks
    proc, status = found.proc, found.status
    state = status.get(P.STATE)
    age = max(0.0, now - proc.create_time)
    stopped = " (process stopped)" if proc.status == "stopped" else ""
    if not proc.alive:
        checks.add("supervisor", CRITICAL, f"supervisor {found.pid} is a zombie (exited, not reaped)")
    else:
        checks.add("supervisor", OK, f"supervisor {found.pid} {state or 'running'}")
    if status.path:
        heartbeat = verdict.figures.supervisor_heartbeat = _age(now, status.get(P.UPDATED))
        if heartbeat is None:
            checks.add("supervisor_heartbeat", UNKNOWN, f"{status.path} has no '{P.UPDATED}' time")
        else:
            checks.graded("supervisor_heartbeat", heartbeat, limits.heartbeat_warn,
                          limits.heartbeat_crit, f"supervisor heartbeat {fmt_seconds(heartbeat)} old{stopped}")
    elif age < limits.heartbeat_warn:  # the grace of a starting process
        checks.add("supervisor_heartbeat", OK, f"starting ({fmt_seconds(age)}), no status file yet")
    else:
        name = P.status_path("", P.ROLE_SUPERVISOR, found.pid)  # supervisor-PID.json
        checks.add("supervisor_heartbeat", UNKNOWN, f"no status file {name} (is --status-dir writable?)")


def _judge_worker(verdict: Verdict, limits: Thresholds, now: float) -> None:
    """``worker`` (alive, restarting, gone) and ``worker_heartbeat``."""
    found, checks, figures = verdict.found, verdict.checks, verdict.figures
    sup = found.status
    worker = found.worker_proc
    state = sup.get(P.STATE)
    grace = limits.heartbeat_warn
    sup_fresh = figures.supervisor_heartbeat is not None and figures.supervisor_heartbeat < grace
    if worker is not None and worker.alive:
        checks.add("worker", OK, f"worker {worker.pid} running")
    elif worker is not None:
        checks.add("worker", WARNING if sup_fresh else CRITICAL,
                   f"worker {worker.pid} is a zombie (exited, not reaped by the supervisor)")
    elif state == P.State.STOPPING:
        checks.add("worker", OK, "no worker (supervisor stopping)")
    else:
        # none between a crash and its restart: at once, then back-off 0.25 s … 30 s
        last_exit = sup.get(P.LAST_WORKER_EXIT)
        gone = _exit_time(last_exit)
        since = now - gone if gone else max(0.0, now - found.proc.create_time)
        last = _exit_text(last_exit)
        detail = f" (last exit: {last})" if last else ""
        until = sup.number(P.CRASH_BACKOFF_UNTIL)
        if state == P.State.BACKOFF and until:
            detail += f", next start in {fmt_seconds(max(0.0, until - now))}"
        if since < grace:
            checks.add("worker", OK if not gone else WARNING,
                       "worker starting" if not gone else f"worker restarting{detail}")
        else:
            if not sup.path:  # no status file and no worker: the drain-only mode of a bad option
                detail += " and no status file: a bad option? (see Apache's ErrorLog)"
            checks.add("worker", CRITICAL, f"no worker process for {fmt_seconds(since)}{detail}")

    if worker is None or not worker.alive:
        return
    # its heartbeat: its status file, or the supervisor's last message from it
    times = [found.worker_status.number(P.UPDATED)]
    if sup.get(P.WORKER_PID) == worker.pid:
        times.append(sup.number(P.WORKER_LAST_MESSAGE))
    times = [t for t in times if t]
    wage = max(0.0, now - worker.create_time)
    wstopped = " (process stopped)" if worker.status == "stopped" else ""
    if times:
        beat = figures.worker_heartbeat = max(0.0, now - max(times))
        checks.graded("worker_heartbeat", beat, limits.heartbeat_warn, limits.heartbeat_crit,
                      f"worker heartbeat {fmt_seconds(beat)} old{wstopped}")
    elif wage < grace:
        checks.add("worker_heartbeat", OK, f"worker starting ({fmt_seconds(wage)})")
    elif not sup.path:
        checks.add("worker_heartbeat", UNKNOWN, f"no status file from worker {worker.pid} or its supervisor")
    else:
        figures.worker_heartbeat = wage
        checks.graded("worker_heartbeat", wage, limits.heartbeat_warn, limits.heartbeat_crit,
                      f"no heartbeat from worker {worker.pid} in {fmt_seconds(wage)}{wstopped}")


def _judge_counters(verdict: Verdict, limits: Thresholds, now: float) -> None:
    """``restarts``, ``spool``, ``dropped``, ``dropped_counts``, ``dropped_visitors`` and ``rejected``."""
    found, checks, figures = verdict.found, verdict.checks, verdict.figures
    sup, wst = found.status, found.worker_status

    restarts = sup.get(P.WORKER_RESTARTS)
    if isinstance(restarts, list):
        figures.restarts = sum(1 for t in restarts if (number(t) or 0) > now - 3600)
        checks.graded("restarts", figures.restarts, limits.restarts_warn, limits.restarts_crit,
                      f"{figures.restarts} worker restarts in the last hour")

    spool, spool_max = sup.number(P.SPOOL_BYTES), sup.number(P.SPOOL_MAX)
    if spool is not None and spool_max:
        fill = figures.spool_fill = spool / spool_max
        checks.graded("spool", fill, limits.spool_warn, limits.spool_crit,
                      f"spool {fill:.0%} full ({fmt_bytes(spool)} of {fmt_bytes(spool_max)})")

    # dropped lines (supervisor) and counts (worker, --max-pending-keys)
    dropped = sup.number(P.LINES_DROPPED)
    if dropped is not None:
        since = fmt_seconds(max(0.0, now - (sup.number(P.STARTED) or found.proc.create_time)))
        checks.graded("dropped", dropped, limits.dropped_warn, limits.dropped_crit,
                      f"{dropped} lines dropped since the supervisor started {since} ago")
    counts = wst.number(P.DROPPED_COUNTS)
    if counts:
        checks.add("dropped_counts", WARNING,
                   f"{counts:.0f} counts dropped by the worker (--max-pending-keys reached)")
    visitors = wst.number(P.DROPPED_VISITORS)
    if visitors:
        checks.add("dropped_visitors", WARNING,
                   f"{visitors:.0f} new visitors dropped by the worker (--max-pending-visitors reached)")

    lines = wst.number(P.LINES)
    rejected = wst.get(P.REJECTED)
    if lines is not None and isinstance(rejected, dict):
        bad = sum(v for v in rejected.values() if isinstance(v, (int, float)))
        share = figures.rejected_share = bad / lines if lines else 0.0
        if lines >= limits.rejected_min_lines:
            top = max(rejected, key=lambda k: rejected[k]) if bad else ""
            hint = (f" (mostly {top}; does --format match the LogFormat?)"
                    if share >= limits.rejected_warn and top else "")
            checks.graded("rejected", share, limits.rejected_warn, limits.rejected_crit,
                          f"{share:.1%} of {lines:.0f} lines rejected{hint}")


def _judge_flush(verdict: Verdict, limits: Thresholds, now: float) -> None:
    """``flush``: the age of the last successful flush, graded while flushes fail."""
    found, figures = verdict.found, verdict.figures
    wst = found.worker_status
    if not wst.document:
        return
    error = wst.get(P.LAST_FLUSH_ERROR)
    if error:
        since = (wst.number(P.LAST_FLUSH_OK) or wst.number(P.STARTED)
                 or (found.worker_proc.create_time if found.worker_proc else now))
        age = figures.flush_age = max(0.0, now - since)
        verdict.checks.graded("flush", age, limits.flush_warn, limits.flush_crit,
                              f"no successful flush for {fmt_seconds(age)}: {error}"
                              f" ({wst.get(P.PENDING_KEYS, '?')} keys wait)")
    else:
        figures.flush_age = _age(now, wst.get(P.LAST_FLUSH_OK))
        verdict.checks.add("flush", OK, "flushes succeed")


def judge_memcached(verdict: Verdict, pings: dict[str, dict], default: Optional[str],
                    limits: Thresholds, now: float) -> None:
    """Add one check per memcached server of a live instance (and one for its evictions).

    Args:
        verdict: the instance, judged by :func:`judge`.
        pings: :func:`probe.ping_all`'s answers, by server name.
        default: the servers of an instance whose own are unknown (``--memcached``).
        limits: the thresholds (``rtt_*``, ``evictions_warn``).
        now: the Unix time of the run (seconds).
    """
    from logpipe.daemon.store import node_name

    found, checks = verdict.found, verdict.checks
    spec = found.memcached_spec or default
    if not found.alive or not spec:
        return
    try:
        names = [node_name(s) for s in parse_servers(spec)]
    except ConfigError as exc:
        checks.add("memcached", UNKNOWN, f"cannot read --memcached {spec!r}: {exc}")
        return
    started = found.status.number(P.STARTED) or found.proc.create_time
    for name in names:
        entry = dict(pings.get(name) or {"ok": False, "error": "not checked"})
        entry["server"] = name
        since_start = None
        uptime = entry.get("uptime")
        # memcached's uptime runs about 2 s ahead (its clock starts at 2): count its
        # evictions as "since start" only when it surely started after the supervisor
        if entry.get("ok") and isinstance(uptime, int) and now - uptime + 1 >= started:
            since_start = entry.get("evictions")
        entry["evictions_since_start"] = since_start
        verdict.figures.memcached.append(entry)
        check_name = f"memcached {name}"
        if not entry.get("ok"):
            checks.add(check_name, CRITICAL, f"memcached {name} unreachable: {entry.get('error')}")
            continue
        rtt = entry.get("rtt") or 0.0
        checks.graded(check_name, rtt, limits.rtt_warn, limits.rtt_crit,
                      f"memcached {name} rtt {rtt * 1000:.1f}ms")
        if since_start is not None:
            checks.graded(check_name + " evictions", since_start, limits.evictions_warn, 0,
                          f"memcached {name}: {since_start} evictions since it started"
                          f" {fmt_seconds(uptime)} ago")
