"""Probing for ``logpipe health``: the process table (psutil), status files, memcached's ``stats``.

Everything here only reads; nothing is judged.  psutil and the memcached
client are imported when first needed, not when the command loads.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Iterable, Optional

from logpipe.daemon import protocol as P
from logpipe.commands.health.records import Proc, StatusFile
from logpipe.config import ConfigError, parse_servers


def processes() -> dict[int, Proc]:
    """Every process on the machine, ``{pid: Proc}``, from one pass of ``psutil.process_iter``."""
    import psutil

    procs: dict[int, Proc] = {}
    for p in psutil.process_iter(["pid", "ppid", "name", "cmdline", "create_time", "status"]):
        info = p.info
        procs[info["pid"]] = Proc(
            pid=info["pid"], ppid=info["ppid"] or 0, name=info["name"] or "",
            cmdline=info["cmdline"], create_time=info["create_time"] or 0.0,
            status=info["status"] or "",
        )
    return procs


def process_environment(pid: int) -> tuple[dict[str, str], Optional[str]]:
    """``(LOGPIPE_* variables, working directory)`` of process *pid*.

    Best effort: another user's environment and cwd need CAP_SYS_PTRACE; what cannot
    be read is returned empty (``{}``, None).
    """
    import psutil

    try:
        process = psutil.Process(pid)
        environ = {k: v for k, v in process.environ().items() if k.startswith("LOGPIPE_")}
        return environ, process.cwd()
    except psutil.Error:
        return {}, None


def read_json(path: str) -> Optional[dict]:
    """The JSON object in file *path*, or None (missing, unreadable, not JSON, not an object)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status_files(directories: Iterable[str]) -> dict[tuple[str, int], StatusFile]:
    """``{(role, pid): StatusFile}`` for every readable status file in *directories*.

    The first directory that has a file for ``(role, pid)`` wins; missing or
    unreadable directories are skipped.
    """
    found: dict[tuple[str, int], StatusFile] = {}
    for directory in directories:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            key = P.parse_status_name(name)
            if key is None or key in found:
                continue
            path = os.path.join(directory, name)
            document = read_json(path)
            if document is not None:
                found[key] = StatusFile(path, document)
    return found


def _unanswered(error: str) -> dict:
    return {"ok": False, "rtt": None, "error": error, "evictions": None, "uptime": None}


def ping_all(specs: Iterable[str], timeout: float) -> dict[str, dict]:
    """Ping every server of every ``--memcached`` spec, in parallel, within a deadline.

    Args:
        specs: ``--memcached`` values (``host:port[,host:port…]`` or socket paths);
            an unreadable one is skipped.
        timeout: seconds for each step (connect, ``mn``, ``stats``) of each server.

    Returns:
        ``{server name: CounterStore.ping() entry}`` (``ok``, ``rtt`` seconds, ``error``,
        ``evictions``, ``uptime``); a server that did not answer within three timeouts
        gets ``ok: False`` and an error.
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
            entry = _unanswered(f"{type(exc).__name__}: {exc}")
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
            results.setdefault(name, _unanswered(f"no answer within {3 * timeout:.1f} s"))
        return dict(results)
