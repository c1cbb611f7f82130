"""Test doubles for tests/test_supervisor.py: a supervisor entry point and a scriptable worker.

Run as ``python supervisor_helpers.py CONFIG_JSON``: builds :class:`Settings` from
``CONFIG_JSON["settings"]`` and calls :func:`logpipe.daemon.supervisor.run` with :func:`worker_main`
(and :class:`FileSink` when ``CONFIG_JSON["sink"]`` is set); exits with its return code.

The worker (keys of ``CONFIG_JSON["worker"]``, all optional):

    dir          directory for its files (required): ``starts`` gets one line per worker start,
                 ``<pid> <unix time> <uid> <NOTIFY_SOCKET or ->``; ``recv-<pid>`` gets every
                 complete line the worker received
    ack          send ``A <offset>`` after each read (default true)
    exit_after   return *exit_code* once this many lines were received (after acking them)
    exit_code    default 1
    crash_unless return 1 at once unless this file exists (crash loop until it does)
    stall_until  read nothing (but heartbeat) until this file exists
    heartbeat    seconds between heartbeats (default 0.2)
"""

from __future__ import annotations

import json
import os
import select
import sys
import time

from logpipe.daemon import supervisor
from logpipe.config import Settings

CONFIG: dict = {}


def worker_main(settings: Settings, data_fd: int, ctrl_fd: int) -> int:
    """The test worker (see the module docstring)."""
    cfg = CONFIG["worker"]
    directory = cfg["dir"]
    pid = os.getpid()
    with open(os.path.join(directory, "starts"), "a") as handle:
        handle.write(f"{pid} {time.time():.3f} {os.getuid()} "
                     f"{os.environ.get('NOTIFY_SOCKET', '-')}\n")
    crash_unless = cfg.get("crash_unless")
    if crash_unless and not os.path.exists(crash_unless):
        return 1
    out = open(os.path.join(directory, f"recv-{pid}"), "ab", buffering=0)
    heartbeat = cfg.get("heartbeat", 0.2)
    stall_until = cfg.get("stall_until")
    ack = cfg.get("ack", True)
    exit_after = cfg.get("exit_after")
    offset = 0
    buf = b""
    lines = 0
    last_heartbeat = 0.0
    while True:
        now = time.monotonic()
        if now - last_heartbeat >= heartbeat:
            os.write(ctrl_fd, b"H\n")
            last_heartbeat = now
        if stall_until and not os.path.exists(stall_until):
            time.sleep(0.02)
            continue
        stall_until = None
        ready, _, _ = select.select([data_fd], [], [], heartbeat / 2)
        if not ready:
            continue
        data = os.read(data_fd, 65536)
        if not data:
            if buf:  # the supervisor promised complete lines
                out.write(b"PARTIAL:" + buf + b"\n")
            return 0
        offset += len(data)
        buf += data
        cut = buf.rfind(b"\n")
        if cut < 0:
            continue
        complete, buf = buf[:cut + 1], buf[cut + 1:]
        out.write(complete)
        lines += complete.count(b"\n")
        if ack:
            os.write(ctrl_fd, f"A {offset - len(buf)}\n".encode())
        if exit_after and lines >= exit_after:
            return cfg.get("exit_code", 1)


class FileSink:
    """A raw-archive double: appends chunks to a file; ``REOPEN`` lines mark SIGHUPs."""

    def __init__(self, path: str, fail_every: int = 0):
        self.path = path
        self.fail_every = fail_every
        self.calls = 0
        self.handle = open(path, "ab", buffering=0)

    def write(self, chunk: bytes) -> None:
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            raise OSError(28, "No space left on device (test)")
        self.handle.write(chunk)

    def reopen(self) -> None:
        self.handle.close()
        self.handle = open(self.path, "ab", buffering=0)
        self.handle.write(b"REOPEN\n")

    def close(self) -> None:
        self.handle.write(b"CLOSED\n")
        self.handle.close()


def main() -> int:
    """Entry point of the supervisor subprocess used by the tests."""
    CONFIG.update(json.loads(sys.argv[1]))
    for name, value in CONFIG.get("constants", {}).items():
        setattr(supervisor, name, value)
    settings = Settings(**CONFIG.get("settings", {}))
    sink = None
    if CONFIG.get("sink"):
        sink = FileSink(**CONFIG["sink"])
    return supervisor.run(settings, worker_main, sink)


if __name__ == "__main__":
    sys.exit(main())
