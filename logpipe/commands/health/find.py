"""Finding the logpipe instances on this machine: processes, command lines, status files.

A logpipe *daemon* is a process whose command line runs the ``logpipe``
console script (or ``python -m logpipe``) without a subcommand and without
``--dry-run``.  A daemon whose parent is not a daemon is a *supervisor* (its
parent is normally httpd); a daemon whose parent is a supervisor is its
*worker*.  The status files ``supervisor-{pid}.json`` / ``worker-{pid}.json``
are read from the given directories and from each daemon's own
``--status-dir`` (read from its command line, ``LOGPIPE_*`` environment and
config file); a supervisor status file whose process is alive finds an
instance the command line did not match.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Optional

from logpipe.daemon import protocol as P
from logpipe.commands.health import probe
from logpipe.commands.health.records import NO_STATUS, Census, Found, Proc, StatusFile
from logpipe.config import Settings, build_settings

#: subcommands of the ``logpipe`` script (a process running one is not a daemon).
SUBCOMMANDS = frozenset({"hits", "top", "health", "rollup", "report"})
_NOT_DAEMON_FLAGS = frozenset({"--dry-run", "--help", "-h", "--version", "--explain"})
_MODULES = ("logpipe", "logpipe.cli", "logpipe.commands.main")
APACHE_NAMES = frozenset({"apache2", "httpd"})
#: a process may be this much older (seconds) than the "started" in its status file and
#: still be the process that wrote it (python start-up); younger means the pid was reused.
START_SLACK = 5.0


def daemon_arguments(cmdline: Optional[list[str]]) -> Optional[list[str]]:
    """The logpipe arguments of *cmdline* when it is a logpipe daemon, else None.

    A daemon runs the ``logpipe`` console script (``python …/logpipe ARGS``,
    or the script itself) or ``python -m logpipe ARGS``, with no subcommand
    (``health``, ``top``, …) and without ``--dry-run``, ``--help`` or
    ``--version``.  A forked worker has its supervisor's command line.
    """
    if not cmdline:
        return None
    first = os.path.basename(cmdline[0])
    rest: Optional[list[str]] = None
    if first == "logpipe":
        rest = cmdline[1:]
    elif first.startswith("python"):
        i = 1
        while i < len(cmdline) and i < 6:
            token = cmdline[i]
            if token == "-m":
                if i + 1 < len(cmdline) and cmdline[i + 1] in _MODULES:
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
    if rest and rest[0] in SUBCOMMANDS:
        return None
    if any(arg in _NOT_DAEMON_FLAGS for arg in rest):
        return None
    return rest


def _option_values(argv: list[str]) -> dict[str, object]:
    """The :class:`Settings` options (and ``--config``) given in a daemon's *argv*."""
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
        if name in fields and isinstance(fields[name].default, bool):
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
    return values


def daemon_settings(pid: int, argv: list[str]) -> dict[str, str]:
    """``status_dir`` and ``memcached`` of a running daemon: its options, environment, config file.

    Best effort: what cannot be read (another user's environment) is left out, and a
    daemon whose settings do not build (it drains with a bad option) gets what its
    options and environment name directly.
    """
    values = _option_values(argv)
    environ, cwd = probe.process_environment(pid)
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


def same_process(proc: Optional[Proc], status: StatusFile) -> bool:
    """True when *proc* is the process that wrote *status* (not a reused pid)."""
    if proc is None:
        return False
    started = status.number(P.STARTED)
    return started is None or proc.create_time <= started + START_SLACK


def _command_line_text(cmdline: Optional[list]) -> str:
    return " ".join(map(str, cmdline or []))


def find(status_dirs: Iterable[str], match: Iterable[str] = ()) -> Census:
    """Find every logpipe instance on this machine.

    Args:
        status_dirs: status directories to read besides each daemon's own ``--status-dir``.
        match: keep only the instances whose supervisor command line contains one of
            these strings (empty: all); only their status directories are read.

    Returns:
        The :class:`Census`: instances sorted by pid (supervisors, then orphaned workers).
    """
    match = [m for m in match if m]
    procs = probe.processes()
    me = os.getpid()
    daemons = {pid: args for pid, p in procs.items()
               if pid != me and p.alive and (args := daemon_arguments(p.cmdline)) is not None}
    apache = sorted(pid for pid, p in procs.items()
                    if p.alive and (p.name in APACHE_NAMES
                                    or os.path.basename((p.cmdline or [""])[0]) in APACHE_NAMES))

    def matches(cmdline: Optional[list]) -> bool:
        return not match or any(m in _command_line_text(cmdline) for m in match)

    dirs: list[str] = []
    for directory in status_dirs:
        if directory and directory not in dirs:
            dirs.append(directory)
    own: dict[int, dict[str, str]] = {}
    for pid, args in daemons.items():
        # supervisors only (workers share their settings), and only those --match keeps
        if procs[pid].ppid not in daemons and matches(procs[pid].cmdline):
            own[pid] = daemon_settings(pid, args)
            directory = own[pid].get("status_dir")
            if directory and directory not in dirs:
                dirs.append(directory)
    files = probe.status_files(dirs)

    # supervisors: live processes with a supervisor status file, and daemons whose parent is
    # neither a daemon nor such a process; a daemon with only a worker file is an orphan
    def has_file(role: str, pid: int) -> bool:
        return (role, pid) in files and same_process(procs.get(pid), files[(role, pid)])

    by_file = {pid for (role, pid) in files if role == P.ROLE_SUPERVISOR and pid != me
               and has_file(P.ROLE_SUPERVISOR, pid)}
    parents = set(daemons) | by_file
    candidates = {pid for pid in daemons if procs[pid].ppid not in parents}
    orphans = {pid for pid in candidates if has_file(P.ROLE_WORKER, pid) and pid not in by_file}
    supervisor_pids = (candidates - orphans) | by_file
    stale = sorted(status.path for (role, pid), status in files.items()
                   if not same_process(procs.get(pid), status))

    instances = []
    for pid in sorted(supervisor_pids):
        proc = procs[pid]
        # none, or left by an earlier process with this pid
        status = files.get((P.ROLE_SUPERVISOR, pid), NO_STATUS) if pid in by_file else NO_STATUS
        cmdline = proc.cmdline or status.get(P.ARGV) or []
        if not matches(cmdline):
            continue
        found = Found(pid=pid, proc=proc, cmdline=[str(a) for a in cmdline], status=status,
                      memcached_spec=status.get(P.MEMCACHED) or own.get(pid, {}).get("memcached"))
        _find_worker(found, procs, daemons, files)
        instances.append(found)
    for pid in sorted(orphans):
        proc = procs[pid]
        if not matches(proc.cmdline):
            continue
        instances.append(Found(pid=pid, proc=proc, cmdline=[str(a) for a in proc.cmdline or []],
                               orphan=True, worker_pid=pid, worker_proc=proc,
                               worker_status=files.get((P.ROLE_WORKER, pid), NO_STATUS)))
    return Census(instances=instances, apache=apache, status_dirs=dirs, stale_status_files=stale)


def _find_worker(found: Found, procs: dict[int, Proc], daemons: dict[int, list[str]],
                 files: dict[tuple[str, int], StatusFile]) -> None:
    """Fill in *found*'s worker: the child its status file names, else its youngest live
    daemon child, else a zombie child."""
    children = [p for p in procs.values() if p.ppid == found.pid]
    by_pid = {p.pid: p for p in children}
    wanted = found.status.get(P.WORKER_PID)
    live = sorted((p for p in children if p.pid in daemons), key=lambda p: p.create_time)
    chosen = None
    if isinstance(wanted, int) and wanted in by_pid:
        chosen = by_pid[wanted]
    elif live:
        chosen = live[-1]
    elif isinstance(wanted, int) and wanted:
        found.worker_pid = wanted  # named by the status file, but gone
    else:
        zombies = [p for p in children if not p.alive]
        if zombies:
            chosen = zombies[-1]
    if chosen is not None:
        found.worker_pid = chosen.pid
        found.worker_proc = chosen
        found.extra_workers = [p.pid for p in live if p.pid != chosen.pid]
        status = files.get((P.ROLE_WORKER, chosen.pid))
        if status is not None and same_process(chosen, status):
            found.worker_status = status
