"""``logpipe health``: is every logpipe under Apache alive, keeping up and delivering?

For a systemd timer or a monitoring system.  One run takes a snapshot and
exits; it is read-only: it reads ``/proc`` (through psutil), the status files
and memcached's ``stats``, and never signals, writes to or otherwise changes a
running logpipe.

What is checked, for every logpipe supervisor found (an *instance*):

* the supervisor and its worker are alive (a zombie is not);
* the age of each one's heartbeat (its status file, see below);
* the worker restarts in the last hour;
* how full the supervisor's spool is, and how many lines it dropped;
* the share of lines the worker rejected (a ``--format`` that does not match
  the LogFormat rejects nearly all of them);
* the age of the last successful flush to memcached, while flushes fail;
* each memcached server: reachable, round-trip time, evictions since the
  supervisor started (when memcached's own counters allow telling).

And globally: Apache running (a process named ``apache2`` or ``httpd``) with
no logpipe is CRITICAL.

Finding instances: one pass of ``psutil.process_iter``.  A logpipe daemon is a
process whose command line runs the ``logpipe`` console script (or
``python -m logpipe``) without a subcommand and without ``--dry-run``.  A
daemon whose parent is not a daemon is a supervisor (its parent is normally
httpd); a daemon whose parent is a supervisor is its worker.  The status files
``supervisor-{pid}.json`` / ``worker-{pid}.json`` are read from this
command's ``--status-dir`` and from each daemon's own ``--status-dir`` (read
from its command line, ``LOGPIPE_*`` environment and config file); a
supervisor status file whose process is alive finds an instance the command
line did not match.

Exit codes follow the monitoring-plugin convention: 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN.  The run's status is the worst of all checks, in the
order OK < UNKNOWN < WARNING < CRITICAL.  Output: one line per instance, worst
first (so the first line is the one a monitoring system shows), or one JSON
document with ``--json`` (schema in ``docs/health.md``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from typing import Any, Iterable

from logpipe.config import ConfigError, Settings, build_settings, parse_servers

__all__ = [
    "OK",
    "WARNING",
    "CRITICAL",
    "UNKNOWN",
    "STATUS_NAMES",
    "Thresholds",
    "add_arguments",
    "run",
    "check",
    "format_lines",
    "daemon_arguments",
    "worst",
]

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
#: exit code → name, as monitoring plugins print it.
STATUS_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
#: how bad each exit code is, for "the worst status wins".
_SEVERITY = {OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}
#: Version of the ``--json`` document.
SCHEMA = 1
#: subcommands of the ``logpipe`` script (a process running one is not a daemon).
_SUBCOMMANDS = frozenset({"hits", "top", "health", "rollup", "report"})
_NOT_DAEMON_FLAGS = frozenset({"--dry-run", "--help", "-h", "--version", "--explain"})
_APACHE_NAMES = frozenset({"apache2", "httpd"})
#: a process may be this much older than the "started" in its status file and still be
#: the process that wrote it (python start-up); younger means the pid was reused.
_START_SLACK = 5.0


def worst(codes: Iterable[int]) -> int:
    """The worst of monitoring-plugin exit codes (OK < UNKNOWN < WARNING < CRITICAL)."""
    result = OK
    for code in codes:
        if _SEVERITY[code] > _SEVERITY[result]:
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


_OPTIONS = [
    # (field, type, help)
    ("heartbeat_warn", float, "heartbeat (status file) age in seconds for WARNING (default %(default)s)"),
    ("heartbeat_crit", float, "heartbeat age in seconds for CRITICAL (default %(default)s)"),
    ("restarts_warn", int, "worker restarts in the last hour for WARNING (default %(default)s)"),
    ("restarts_crit", int, "worker restarts in the last hour for CRITICAL (default %(default)s)"),
    ("spool_warn", float, "spool fill (0-1) for WARNING (default %(default)s)"),
    ("spool_crit", float, "spool fill (0-1) for CRITICAL (default %(default)s)"),
    ("dropped_warn", int, "lines dropped since the supervisor started, for WARNING "
                          "(default %(default)s; 0 = off)"),
    ("dropped_crit", int, "same, for CRITICAL (default %(default)s; 0 = off)"),
    ("rejected_warn", float, "share of lines rejected (0-1) for WARNING (default %(default)s)"),
    ("rejected_crit", float, "share of lines rejected (0-1) for CRITICAL (default %(default)s)"),
    ("rejected_min_lines", int, "judge the rejected share only after this many lines (default %(default)s)"),
    ("flush_warn", float, "seconds since the last successful flush, while flushes fail, "
                          "for WARNING (default %(default)s)"),
    ("flush_crit", float, "same, for CRITICAL (default %(default)s)"),
    ("rtt_warn", float, "memcached round-trip time in seconds for WARNING (default %(default)s)"),
    ("rtt_crit", float, "memcached round-trip time in seconds for CRITICAL (default %(default)s)"),
    ("evictions_warn", int, "memcached evictions since the supervisor started, for WARNING "
                            "(default %(default)s; 0 = off)"),
    ("ping_timeout", float, "seconds to wait for each memcached server (default %(default)s)"),
]


def add_arguments(parser, name: str) -> None:
    """Add the options of ``logpipe health`` to *parser*."""
    parser.description = (
        "Check every running logpipe (supervisor, worker, spool, memcached). "
        "Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Read-only."
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document (schema in docs/health.md)")
    parser.add_argument("--match", metavar="TEXT", action="append", default=None,
                        help="check only the instances whose supervisor command line contains TEXT "
                             "(repeatable: any may match); Apache running with no match is CRITICAL")
    # A bad option is UNKNOWN (3) for a monitoring plugin, not the CLI's usual 2 (CRITICAL).
    parser.error = _usage_error
    defaults = Thresholds()
    for field, kind, text in _OPTIONS:
        parser.add_argument("--" + field.replace("_", "-"), type=kind, default=getattr(defaults, field),
                            metavar="N", help=text)


def _usage_error(message: str) -> None:
    """argparse's error hook for ``health``: one UNKNOWN line, exit 3."""
    sys.stdout.write(f"UNKNOWN logpipe health: {message} (logpipe health --help)\n")
    sys.exit(UNKNOWN)


def run(args) -> int:
    """Run the check, print the report, and return its exit code (0/1/2/3)."""
    from logpipe.commands.main import settings_from

    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"UNKNOWN logpipe health: {exc}")
        return UNKNOWN
    thresholds = Thresholds(**{f: getattr(args, f) for f, _, _ in _OPTIONS})
    try:
        report = check(thresholds, status_dirs=[settings.status_dir], match=args.match,
                       default_memcached=settings.memcached)
    except Exception as exc:  # noqa: BLE001 - a monitoring plugin must answer
        report = _unknown_report(f"{type(exc).__name__}: {exc}")
    if args.json:
        print(json.dumps(report, indent=None, sort_keys=False))
    else:
        for line in format_lines(report):
            print(line)
    return report["exit_code"]


# -- finding the processes --------------------------------------------------------------------


def daemon_arguments(cmdline: list[str] | None) -> list[str] | None:
    """The logpipe arguments of *cmdline* when it is a logpipe daemon, else None.

    A daemon runs the ``logpipe`` console script (``python …/logpipe ARGS``,
    or the script itself) or ``python -m logpipe ARGS``, with no subcommand
    (``health``, ``top``, …) and without ``--dry-run``, ``--help`` or
    ``--version``.  A forked worker has its supervisor's command line.
    """
    if not cmdline:
        return None
    first = os.path.basename(cmdline[0])
    rest: list[str] | None = None
    if first == "logpipe":
        rest = cmdline[1:]
    elif first.startswith("python"):
        i = 1
        while i < len(cmdline) and i < 6:
            token = cmdline[i]
            if token == "-m":
                if i + 1 < len(cmdline) and cmdline[i + 1] in ("logpipe", "logpipe.cli", "logpipe.commands.main"):
                    rest = cmdline[i + 2:]
                break
            if token in ("-X", "-W"):
                i += 2
                continue
            if token.startswith("-"):
                i += 1
                continue
            if os.path.basename(token) == "logpipe":
                rest = cmdline[i + 1:]
            break
    if rest is None:
        return None
    if rest and rest[0] in _SUBCOMMANDS:
        return None
    if any(arg in _NOT_DAEMON_FLAGS for arg in rest):
        return None
    return rest


@dataclasses.dataclass
class _Proc:
    pid: int
    ppid: int
    name: str
    cmdline: list[str] | None
    create_time: float
    status: str

    @property
    def alive(self) -> bool:
        return self.status not in ("zombie", "dead")


def _snapshot() -> dict[int, _Proc]:
    """Every process, from one pass of psutil."""
    import psutil

    procs: dict[int, _Proc] = {}
    for p in psutil.process_iter(["pid", "ppid", "name", "cmdline", "create_time", "status"]):
        info = p.info
        procs[info["pid"]] = _Proc(
            pid=info["pid"], ppid=info["ppid"] or 0, name=info["name"] or "",
            cmdline=info["cmdline"], create_time=info["create_time"] or 0.0,
            status=info["status"] or "",
        )
    return procs


def _daemon_settings(pid: int, argv: list[str]) -> dict[str, str]:
    """``status_dir`` and ``memcached`` of a running daemon: its options, environment, config file.

    Best effort: what cannot be read (another user's environment) is left out.
    """
    import psutil

    values: dict[str, object] = {}
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if not token.startswith("--"):
            continue
        name, eq, value = token[2:].partition("=")
        name = name.replace("-", "_")
        if name != "config" and name not in fields:
            continue
        is_flag = name in fields and isinstance(fields[name].default, bool)
        if is_flag:
            values[name] = True
            continue
        if not eq:
            if i >= len(argv):
                break
            value = argv[i]
            i += 1
        if name in fields and fields[name].default_factory is not dataclasses.MISSING:
            values.setdefault(name, []).append(value)  # type: ignore[union-attr]
        else:
            values[name] = value
    environ: dict[str, str] = {}
    cwd = None
    try:
        process = psutil.Process(pid)
        environ = {k: v for k, v in process.environ().items() if k.startswith("LOGPIPE_")}
        cwd = process.cwd()
    except psutil.Error:
        pass
    config = values.get("config") or environ.get("LOGPIPE_CONFIG")
    if config and cwd and not os.path.isabs(str(config)):
        values["config"] = os.path.join(cwd, str(config))
        environ.pop("LOGPIPE_CONFIG", None)
    try:
        settings = build_settings(values, environ=environ)
        return {"status_dir": settings.status_dir, "memcached": settings.memcached}
    except Exception:  # noqa: BLE001 - a daemon with a bad option still runs (it drains)
        found = {}
        for name in ("status_dir", "memcached"):
            value = values.get(name) or environ.get("LOGPIPE_" + name.upper())
            if isinstance(value, str):
                found[name] = value
        return found


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _status_files(directories: Iterable[str]) -> dict[tuple[str, int], tuple[str, dict]]:
    """``{(role, pid): (path, document)}`` for every readable status file."""
    found: dict[tuple[str, int], tuple[str, dict]] = {}
    for directory in directories:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            role, dash, rest = name.partition("-")
            if not dash or role not in ("supervisor", "worker") or not rest.endswith(".json"):
                continue
            pid_text = rest[:-5]
            if not pid_text.isdigit():
                continue
            key = (role, int(pid_text))
            if key in found:
                continue
            path = os.path.join(directory, name)
            document = _read_json(path)
            if document is not None:
                found[key] = (path, document)
    return found


def _same_process(proc: _Proc | None, document: dict) -> bool:
    """True when *proc* is the process that wrote *document* (not a reused pid)."""
    if proc is None:
        return False
    started = _number(document.get("started"))
    return started is None or proc.create_time <= started + _START_SLACK


def _number(value: Any) -> float | int | None:
    """*value* when it is a number (int or float, not bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


# -- memcached ---------------------------------------------------------------------------------


def _ping_all(specs: Iterable[str], timeout: float) -> dict[str, dict]:
    """Ping every server of every ``--memcached`` spec, in parallel, within a deadline.

    Returns ``{server name: CounterStore.ping() entry}``; a server that did not
    answer in time gets ``ok: False`` and an error.
    """
    from logpipe.daemon.store import CounterStore, node_name

    servers: dict[str, object] = {}
    for spec in specs:
        try:
            for server in parse_servers(spec):
                servers.setdefault(node_name(server), server)
        except ConfigError:
            continue
    results: dict[str, dict] = {}
    lock = threading.Lock()

    def ping(name: str, server) -> None:
        store = CounterStore([server], timeout=timeout, connect_timeout=timeout)
        try:
            entry = store.ping()[name]
        except Exception as exc:  # noqa: BLE001
            entry = {"ok": False, "rtt": None, "error": f"{type(exc).__name__}: {exc}",
                     "evictions": None, "uptime": None}
        finally:
            store.close()
        with lock:
            results[name] = entry

    threads = [threading.Thread(target=ping, args=item, daemon=True) for item in servers.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 3 * timeout + 0.1  # connect + mn + stats
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        for name in servers:
            results.setdefault(name, {"ok": False, "rtt": None, "evictions": None, "uptime": None,
                                      "error": f"no answer within {3 * timeout:.1f} s"})
        return dict(results)


# -- the check ---------------------------------------------------------------------------------


class _Checks:
    """The checks of one instance: name, status, message."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, name: str, status: int, message: str) -> None:
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
        return worst(item["code"] for item in self.items)


def _age(now: float, then: Any) -> float | None:
    value = _number(then)
    return None if value is None else max(0.0, now - value)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "K", "M", "G"):
        if abs(n) < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}"


def _exit_time(last_exit: Any) -> float | None:
    """When the last worker exited (``last_worker_exit["time"]``), or None."""
    return _number(last_exit.get("time")) if isinstance(last_exit, dict) else None


def _exit_text(last_exit: Any) -> str:
    """``last_worker_exit`` in words: "killed (no heartbeat)", "code 70", "signal 9"."""
    if not isinstance(last_exit, dict):
        return ""
    if last_exit.get("hung"):
        return "killed (no heartbeat)"
    if last_exit.get("signal") is not None:
        return f"signal {last_exit['signal']}"
    if last_exit.get("code") is not None:
        return f"code {last_exit['code']}"
    return ""


def check(
    thresholds: Thresholds | None = None,
    status_dirs: Iterable[str] = ("/run/logpipe",),
    match: Iterable[str] | None = None,
    default_memcached: str | None = None,
    now: float | None = None,
) -> dict:
    """Take one snapshot of every logpipe on this machine and judge it.

    Args:
        thresholds: the limits (defaults: :class:`Thresholds`).
        status_dirs: where to look for status files besides each daemon's own
            ``--status-dir``.
        match: keep only the instances whose supervisor command line contains
            one of these strings (None: all).
        default_memcached: the servers of an instance whose own are unknown.
        now: the time to judge against (tests); default: now.

    Returns:
        The report, the document ``--json`` prints (``docs/health.md``).
    """
    started_monotonic = time.monotonic()
    limits = thresholds or Thresholds()
    now = time.time() if now is None else now
    match = [m for m in (match or []) if m]
    procs = _snapshot()
    me = os.getpid()
    daemons = {pid: args for pid, p in procs.items()
               if pid != me and p.alive and (args := daemon_arguments(p.cmdline)) is not None}
    apache = sorted(pid for pid, p in procs.items()
                    if p.alive and (p.name in _APACHE_NAMES
                                    or os.path.basename((p.cmdline or [""])[0]) in _APACHE_NAMES))

    dirs: list[str] = []
    for directory in status_dirs:
        if directory and directory not in dirs:
            dirs.append(directory)
    def matches(cmdline: list | None) -> bool:
        return not match or any(m in " ".join(map(str, cmdline or [])) for m in match)

    own: dict[int, dict[str, str]] = {}
    for pid, args in daemons.items():
        # supervisors only (workers share their settings), and only those --match keeps
        if procs[pid].ppid not in daemons and matches(procs[pid].cmdline):
            own[pid] = _daemon_settings(pid, args)
            directory = own[pid].get("status_dir")
            if directory and directory not in dirs:
                dirs.append(directory)
    files = _status_files(dirs)

    # supervisors: live processes with a supervisor status file, and daemons whose parent is
    # neither a daemon nor such a process; a daemon with only a worker file is an orphan
    def has_file(role: str, pid: int) -> bool:
        return (role, pid) in files and _same_process(procs.get(pid), files[(role, pid)][1])

    by_file = {pid for (role, pid) in files if role == "supervisor" and pid != me
               and has_file("supervisor", pid)}
    parents = set(daemons) | by_file
    candidates = {pid for pid in daemons if procs[pid].ppid not in parents}
    orphans = {pid for pid in candidates if has_file("worker", pid) and pid not in by_file}
    supervisor_pids = (candidates - orphans) | by_file

    stale = sorted(path for (role, pid), (path, document) in files.items()
                   if not _same_process(procs.get(pid), document))

    instances = []
    for pid in sorted(supervisor_pids):
        proc = procs[pid]
        path, document = files.get(("supervisor", pid), (None, None))
        if pid not in by_file:
            path, document = None, None  # none, or left by an earlier process with this pid
        cmdline = proc.cmdline or (document or {}).get("argv") or []
        if not matches(cmdline):
            continue
        instances.append(_Instance.supervisor(pid, proc, path, document, cmdline, procs, daemons,
                                              files, own.get(pid, {}), limits, now))
    for pid in sorted(orphans):
        proc = procs[pid]
        if not matches(proc.cmdline):
            continue
        instances.append(_Instance.orphaned_worker(pid, proc, files, limits, now))

    specs = {i.memcached_spec or default_memcached for i in instances if i.alive}
    pings = _ping_all(sorted(s for s in specs if s), limits.ping_timeout) if specs else {}
    for instance in instances:
        instance.judge_memcached(pings, default_memcached)

    documents = [i.document() for i in instances]
    documents.sort(key=lambda d: (-_SEVERITY[d["exit_code"]], d["supervisor"]["pid"]))
    problems: list[str] = []
    global_status = OK
    if not instances:
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
        "elapsed": round(time.monotonic() - started_monotonic, 3),
        "apache": {"running": bool(apache), "pids": apache},
        "problems": problems,
        "instances": documents,
        "status_dirs": dirs,
        "stale_status_files": stale,
        "thresholds": dataclasses.asdict(limits),
    }


class _Instance:
    """One supervisor with its worker (or an orphaned worker), judged."""

    def __init__(self, pid: int, proc: _Proc, cmdline: list, limits: Thresholds, now: float):
        self.limits = limits
        self.now = now
        self.checks = _Checks()
        self.pid = pid
        self.proc = proc
        self.cmdline = [str(a) for a in cmdline]
        self.path: str | None = None
        self.sup: dict = {}
        self.memcached_spec: str | None = None
        self.orphan = False
        self.worker_pid: int | None = None
        self.worker_proc: _Proc | None = None
        self.worker_path: str | None = None
        self.wst: dict = {}
        self.extra_workers: list[int] = []
        self.memcached: list[dict] = []
        self.sup_heartbeat: float | None = None
        self.worker_heartbeat: float | None = None
        self.restarts: int | None = None
        self.spool_fill: float | None = None
        self.rejected_share: float | None = None
        self.flush_age: float | None = None

    @classmethod
    def supervisor(cls, pid, proc, path, status, cmdline, procs, daemons, files, settings, limits, now):
        """A supervisor: find its worker and run every check but memcached's."""
        self = cls(pid, proc, cmdline, limits, now)
        self.path = path
        self.sup = status or {}
        self.memcached_spec = self.sup.get("memcached") or settings.get("memcached")
        self._find_worker(procs, daemons, files)
        self._judge()
        return self

    @classmethod
    def orphaned_worker(cls, pid, proc, files, limits, now) -> "_Instance":
        """A worker whose supervisor is gone (it should be exiting: PDEATHSIG)."""
        self = cls(pid, proc, proc.cmdline or [], limits, now)
        self.orphan = True
        self.worker_pid = pid
        self.worker_proc = proc
        self.worker_path, self.wst = files.get(("worker", pid), (None, {}))
        self.checks.add("supervisor", WARNING,
                        f"worker {pid} has no supervisor (parent {proc.ppid}); it should be exiting")
        return self

    @property
    def alive(self) -> bool:
        """True for a live supervisor (not a zombie, not an orphaned worker)."""
        return self.proc.alive and not self.orphan

    # -- finding the worker

    def _find_worker(self, procs, daemons, files) -> None:
        children = [p for p in procs.values() if p.ppid == self.pid]
        by_pid = {p.pid: p for p in children}
        wanted = self.sup.get("worker_pid")
        live = sorted((p for p in children if p.pid in daemons), key=lambda p: p.create_time)
        chosen = None
        if isinstance(wanted, int) and wanted in by_pid:
            chosen = by_pid[wanted]
        elif live:
            chosen = live[-1]
        elif isinstance(wanted, int) and wanted:
            self.worker_pid = wanted  # named by the status file, but gone
        else:
            zombies = [p for p in children if not p.alive]
            if zombies:
                chosen = zombies[-1]
        if chosen is not None:
            self.worker_pid = chosen.pid
            self.worker_proc = chosen
            self.extra_workers = [p.pid for p in live if p.pid != chosen.pid]
            path, document = files.get(("worker", chosen.pid), (None, None))
            if document is not None and _same_process(chosen, document):
                self.worker_path, self.wst = path, document

    # -- the checks

    def _judge(self) -> None:
        limits, now, checks = self.limits, self.now, self.checks
        proc = self.proc
        sup = self.sup
        state = sup.get("state")
        age = max(0.0, now - proc.create_time)
        grace = limits.heartbeat_warn
        stopped = " (process stopped)" if proc.status == "stopped" else ""

        # supervisor alive and its heartbeat
        if not proc.alive:
            checks.add("supervisor", CRITICAL, f"supervisor {self.pid} is a zombie (exited, not reaped)")
        else:
            checks.add("supervisor", OK, f"supervisor {self.pid} {state or 'running'}")
        if self.path:
            self.sup_heartbeat = _age(now, sup.get("updated"))
            if self.sup_heartbeat is None:
                checks.add("supervisor_heartbeat", UNKNOWN, f"{self.path} has no 'updated' time")
            else:
                checks.graded("supervisor_heartbeat", self.sup_heartbeat, limits.heartbeat_warn,
                              limits.heartbeat_crit,
                              f"supervisor heartbeat {_fmt_seconds(self.sup_heartbeat)} old{stopped}")
        elif age < grace:
            checks.add("supervisor_heartbeat", OK, f"starting ({_fmt_seconds(age)}), no status file yet")
        else:
            checks.add("supervisor_heartbeat", UNKNOWN,
                       f"no status file supervisor-{self.pid}.json (is --status-dir writable?)")

        # worker alive
        worker = self.worker_proc
        sup_fresh = self.sup_heartbeat is not None and self.sup_heartbeat < limits.heartbeat_warn
        if worker is not None and worker.alive:
            checks.add("worker", OK, f"worker {worker.pid} running")
        elif worker is not None:
            checks.add("worker", WARNING if sup_fresh else CRITICAL,
                       f"worker {worker.pid} is a zombie (exited, not reaped by the supervisor)")
        elif state == "stopping":
            checks.add("worker", OK, "no worker (supervisor stopping)")
        else:
            # none between a crash and its restart: at once, then back-off 0.25 s … 30 s
            gone = _exit_time(sup.get("last_worker_exit"))
            since = now - gone if gone else age
            last = _exit_text(sup.get("last_worker_exit"))
            detail = f" (last exit: {last})" if last else ""
            until = _number(sup.get("crash_backoff_until"))
            if state == "backoff" and until:
                detail += f", next start in {_fmt_seconds(max(0.0, until - now))}"
            if since < grace:
                checks.add("worker", OK if not gone else WARNING,
                           "worker starting" if not gone else f"worker restarting{detail}")
            else:
                if not self.path:  # no status file and no worker: the drain-only mode of a bad option
                    detail += " and no status file: a bad option? (see Apache's ErrorLog)"
                checks.add("worker", CRITICAL, f"no worker process for {_fmt_seconds(since)}{detail}")

        # worker heartbeat: its status file, or the supervisor's last message from it
        if worker is not None and worker.alive:
            times = [_number(self.wst.get("updated"))]
            if sup.get("worker_pid") == worker.pid:
                times.append(_number(sup.get("worker_last_message")))
            times = [t for t in times if t]
            wage = max(0.0, now - worker.create_time)
            wstopped = " (process stopped)" if worker.status == "stopped" else ""
            if times:
                self.worker_heartbeat = max(0.0, now - max(times))
                checks.graded("worker_heartbeat", self.worker_heartbeat, limits.heartbeat_warn,
                              limits.heartbeat_crit,
                              f"worker heartbeat {_fmt_seconds(self.worker_heartbeat)} old{wstopped}")
            elif wage < grace:
                checks.add("worker_heartbeat", OK, f"worker starting ({_fmt_seconds(wage)})")
            elif not self.path:
                checks.add("worker_heartbeat", UNKNOWN,
                           f"no status file from worker {worker.pid} or its supervisor")
            else:
                self.worker_heartbeat = wage
                checks.graded("worker_heartbeat", wage, limits.heartbeat_warn, limits.heartbeat_crit,
                              f"no heartbeat from worker {worker.pid} in {_fmt_seconds(wage)}{wstopped}")

        # restarts in the last hour
        restarts = sup.get("worker_restarts")
        if isinstance(restarts, list):
            self.restarts = sum(1 for t in restarts if (_number(t) or 0) > now - 3600)
            checks.graded("restarts", self.restarts, limits.restarts_warn, limits.restarts_crit,
                          f"{self.restarts} worker restarts in the last hour")

        # spool
        spool, spool_max = _number(sup.get("spool_bytes")), _number(sup.get("spool_max"))
        if spool is not None and spool_max:
            self.spool_fill = spool / spool_max
            checks.graded("spool", self.spool_fill, limits.spool_warn, limits.spool_crit,
                          f"spool {self.spool_fill:.0%} full ({_fmt_bytes(spool)} of {_fmt_bytes(spool_max)})")

        # dropped lines (supervisor) and counts (worker, --max-pending-keys)
        dropped = _number(sup.get("lines_dropped"))
        if dropped is not None:
            since = _fmt_seconds(max(0.0, now - (_number(sup.get("started")) or proc.create_time)))
            checks.graded("dropped", dropped, limits.dropped_warn, limits.dropped_crit,
                          f"{dropped} lines dropped since the supervisor started {since} ago")
        counts = _number(self.wst.get("dropped_counts"))
        if counts:
            checks.add("dropped_counts", WARNING,
                       f"{counts:.0f} counts dropped by the worker (--max-pending-keys reached)")

        # rejected share
        lines = _number(self.wst.get("lines"))
        rejected = self.wst.get("rejected")
        if lines is not None and isinstance(rejected, dict):
            bad = sum(v for v in rejected.values() if isinstance(v, (int, float)))
            self.rejected_share = bad / lines if lines else 0.0
            if lines >= limits.rejected_min_lines:
                top = max(rejected, key=lambda k: rejected[k]) if bad else ""
                checks.graded("rejected", self.rejected_share, limits.rejected_warn, limits.rejected_crit,
                              f"{self.rejected_share:.1%} of {lines:.0f} lines rejected"
                              + (f" (mostly {top}; does --format match the LogFormat?)"
                                 if self.rejected_share >= limits.rejected_warn and top else ""))

        # last successful flush, while flushes fail
        if self.wst:
            error = self.wst.get("last_flush_error")
            if error:
                since = (_number(self.wst.get("last_flush_ok")) or _number(self.wst.get("started"))
                         or worker.create_time)
                self.flush_age = max(0.0, now - since)
                checks.graded("flush", self.flush_age, limits.flush_warn, limits.flush_crit,
                              f"no successful flush for {_fmt_seconds(self.flush_age)}: {error}"
                              f" ({self.wst.get('pending_keys', '?')} keys wait)")
            else:
                ok_at = _number(self.wst.get("last_flush_ok"))
                self.flush_age = None if ok_at is None else max(0.0, now - ok_at)
                checks.add("flush", OK, "flushes succeed")

    def judge_memcached(self, pings: dict[str, dict], default: str | None) -> None:
        """Add one check per memcached server of this instance, from *pings*."""
        from logpipe.daemon.store import node_name

        spec = self.memcached_spec or default
        if not self.alive or not spec:
            return
        try:
            names = [node_name(s) for s in parse_servers(spec)]
        except ConfigError as exc:
            self.checks.add("memcached", UNKNOWN, f"cannot read --memcached {spec!r}: {exc}")
            return
        limits, now = self.limits, self.now
        started = _number(self.sup.get("started")) or self.proc.create_time
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
            self.memcached.append(entry)
            check_name = f"memcached {name}"
            if not entry.get("ok"):
                self.checks.add(check_name, CRITICAL, f"memcached {name} unreachable: {entry.get('error')}")
                continue
            rtt = entry.get("rtt") or 0.0
            self.checks.graded(check_name, rtt, limits.rtt_warn, limits.rtt_crit,
                               f"memcached {name} rtt {rtt * 1000:.1f}ms")
            if since_start is not None:
                self.checks.graded(check_name + " evictions", since_start, limits.evictions_warn, 0,
                                   f"memcached {name}: {since_start} evictions since it started"
                                   f" {_fmt_seconds(uptime)} ago")

    # -- output

    def document(self) -> dict:
        """This instance in the ``--json`` schema."""
        sup, wst, proc, worker = self.sup, self.wst, self.proc, self.worker_proc
        status = self.checks.status
        lines_per_second = _number(wst.get("lines_per_second"))
        started = _number(sup.get("started"))
        updated = _number(sup.get("updated"))
        lines_read = _number(sup.get("lines_read"))
        average = (lines_read / (updated - started)
                   if lines_read is not None and started and updated and updated > started else None)
        return {
            "status": STATUS_NAMES[status],
            "exit_code": status,
            "problems": [c["message"] for c in self.checks.items if c["code"] != OK],
            "supervisor": {
                "pid": self.pid,
                "alive": self.alive,
                "orphaned_worker": self.orphan,
                "process_status": proc.status,
                "parent_pid": proc.ppid,
                "started": started if started is not None else proc.create_time,
                "state": sup.get("state") if not self.orphan else None,
                "heartbeat_age": _round(self.sup_heartbeat),
                "status_file": self.path,
                "cmdline": self.cmdline,
            },
            "worker": None if self.worker_pid is None else {
                "pid": self.worker_pid,
                "alive": bool(worker and worker.alive),
                "process_status": worker.status if worker else None,
                "started": _number(wst.get("started")) or (worker.create_time if worker else None),
                "heartbeat_age": _round(self.worker_heartbeat),
                "status_file": self.worker_path,
            },
            "extra_workers": self.extra_workers,
            "lines_per_second": lines_per_second,
            "lines_per_second_average": _round(average, 1),
            "lines_read": lines_read,
            "lines_dropped": _number(sup.get("lines_dropped")),
            "lines_lost": _number(sup.get("lines_lost")),
            "unprotected_lines": _number(sup.get("unprotected_lines")),
            "too_long_lines": _number(sup.get("too_long_lines")),
            "spool_bytes": _number(sup.get("spool_bytes")),
            "spool_max": _number(sup.get("spool_max")),
            "spool_fill": _round(self.spool_fill, 4),
            "worker_restarts_last_hour": self.restarts,
            "worker_recycles": _number(sup.get("worker_recycles")),
            "last_worker_exit": sup.get("last_worker_exit"),
            "worker_lines": _number(wst.get("lines")),
            "rejected_share": _round(self.rejected_share, 4),
            "pending_keys": _number(wst.get("pending_keys")),
            "dropped_counts": _number(wst.get("dropped_counts")),
            "last_flush_age": _round(self.flush_age),
            "last_flush_error": wst.get("last_flush_error"),
            "memcached_spec": self.memcached_spec,
            "memcached": [
                {"server": e["server"], "ok": bool(e.get("ok")), "rtt": _round(e.get("rtt"), 6),
                 "error": e.get("error"), "evictions": e.get("evictions"),
                 "evictions_since_start": e.get("evictions_since_start"), "uptime": e.get("uptime")}
                for e in self.memcached
            ],
            "checks": [{"name": c["name"], "status": c["status"], "message": c["message"]}
                       for c in self.checks.items],
        }


def _round(value: Any, digits: int = 3) -> float | None:
    number = _number(value)
    return None if number is None else round(number, digits)


def _unknown_report(message: str) -> dict:
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
        if sup.get("state") and sup["state"] != "running":
            who += f" [{sup['state']}]"
        figures = []
        if inst["lines_per_second"] is not None:
            figures.append(f"{inst['lines_per_second']:g} lines/s")
        elif inst["lines_per_second_average"] is not None:
            figures.append(f"{inst['lines_per_second_average']:g} lines/s (average)")
        ages = [sup["heartbeat_age"], worker["heartbeat_age"] if worker else None]
        beats = ["-" if age is None else _fmt_seconds(age) for age in ages]
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


if __name__ == "__main__":  # pragma: no cover
    from logpipe.commands.main import main

    sys.exit(main(["health", *sys.argv[1:]]))
