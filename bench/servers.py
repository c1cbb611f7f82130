"""The real-server helpers of ``tests/servers.py``, for bench code.

``tests/`` is not an installed package, so the module is loaded from its file
(under the name ``logpipe_bench_servers``); that works whatever the current
directory is and whatever other ``tests`` package is installed.  Re-exports
:class:`Memcached`, :class:`Apache`, :func:`wait_for` and :func:`free_port`,
plus a few helpers the benchmarks need on top.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import urllib.parse
from types import ModuleType

from . import REPO

__all__ = ["Memcached", "Apache", "wait_for", "free_port", "reap_orphans", "metadump",
           "get_values", "counter_keys", "proc_children", "proc_cpu_seconds", "proc_state", "signal_pid"]


def _load() -> ModuleType:
    name = "logpipe_bench_servers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "servers.py")
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError(f"cannot load {REPO / 'tests' / 'servers.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_servers = _load()
Memcached = _servers.Memcached
Apache = _servers.Apache
wait_for = _servers.wait_for
free_port = _servers.free_port
reap_orphans = _servers.reap_orphans


def metadump(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> list[str]:
    """Every key memcached holds (``lru_crawler metadump all``), decoded.

    Independent of logpipe's own per-day index: the benchmark's count checks
    enumerate keys this way.
    """
    keys: list[str] = []
    buf = b""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"lru_crawler metadump all\r\n")
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
            if buf.endswith(b"END\r\n") or buf.startswith(b"BUSY") or buf.startswith(b"ERROR"):
                break
    if not buf.endswith(b"END\r\n"):
        raise RuntimeError(f"metadump failed: {buf[:200]!r}")
    for line in buf.splitlines():  # entries end in "\n", END in "\r\n"
        if line.startswith(b"key="):
            raw = line.split(b" ", 1)[0][4:].decode("ascii")
            keys.append(urllib.parse.unquote(raw, errors="surrogateescape"))
    return keys


def counter_keys(port: int, host: str = "127.0.0.1") -> set[str]:
    """Every logpipe counter key in the server at *port* (index items left out).

    ``lru_crawler metadump`` can miss an item that memcached's LRU
    maintainer moves while the crawler walks (seen here: a hot counter
    missing from a dump), so two dumps are merged with the values listed in
    logpipe's per-day indexes (``{head}#index.N``) of every day and
    dimension the dumps show.
    """
    from pymemcache.client.base import Client

    from logpipe.keys import INDEX_SHARDS, MAX_KEY_BYTES, encode_value

    keys = set(metadump(port, host)) | set(metadump(port, host))
    heads = set()
    for key in keys:
        parts = key.split(":", 3)
        if len(parts) == 4:
            heads.add(":".join(parts[:3]) + ":")
    client = Client((host, port), timeout=10.0, connect_timeout=5.0)
    try:
        for head in heads:
            shards = get_values(client, [f"{head}#index.{n}" for n in range(INDEX_SHARDS)])
            for blob in shards.values():
                for value in blob.decode("utf-8", "surrogateescape").split("\n"):
                    if value:
                        keys.add(head + encode_value(value, MAX_KEY_BYTES - len(head)))
    finally:
        client.close()
    return {k for k in keys if "#index." not in k}


def get_values(client, keys: list[str], batch: int = 500) -> dict[str, bytes]:
    """``get_many`` in batches; *client* is a pymemcache ``Client``."""
    found: dict[str, bytes] = {}
    for start in range(0, len(keys), batch):
        found.update(client.get_many(keys[start:start + batch]))
    return found


def proc_children(pid: int) -> list[int]:
    """Direct children of *pid* (from ``/proc/*/stat``)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in (b"Z", b"X"):
            out.append(int(name))
    return out


def proc_state(pid: int) -> str | None:
    """The one-letter state of *pid* (``R``, ``S``, ``T`` …), None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[0].decode()
    except OSError:
        return None


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds *pid* has used so far, None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def signal_pid(pid: int, sig: int) -> bool:
    """Send *sig* to *pid*; False when the process is gone."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False

