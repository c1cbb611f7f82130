"""Proposed hot-path changes, applied as monkeypatches so their gain can be measured (PROFILE.md).

Nothing here is used by logpipe itself; the owners of the patched modules
decide what to adopt.

* :func:`patch_findall_scan` — ``LineParser.scan`` with ``findall`` over the
  chunk regex plus a catch-all group for unparseable lines (no match objects,
  no second scan of a chunk holding a bad line).  Measure with
  ``python -m bench.profile --stages --experiment findall``.
* :func:`patch_read_coalescing` / :func:`patch_worker_nice` — the supervisor
  and the worker wait a few milliseconds after a small read so each read
  carries hundreds of lines, and the worker runs at a lower CPU priority.
  Measure under httpd with ``bench/experiment_logpipe.py`` (a drop-in for the
  ``logpipe`` command)::

      python -m bench.run --only httpd \\
          --logpipe "$PWD/.venv/bin/python $PWD/bench/experiment_logpipe.py --x-coalesce"
"""

from __future__ import annotations

import os
import re
import time

__all__ = ["patch_findall_scan", "patch_read_coalescing", "patch_worker_nice"]


def patch_findall_scan() -> None:
    """Replace ``LineParser.scan`` with the ``findall`` + catch-all version.

    The classifier's ``method is not None`` test sees ``b""`` for a request
    line of another shape; those lines are then counted as "not a path"
    instead of "no request line" (page views and rejects are unchanged).
    """
    from logpipe import parsing

    original = parsing.LineParser.scan

    def scan(self, chunk: bytes):
        if self.fallback:
            return original(self, chunk)
        rx = self.__dict__.get("_catch_all")
        if rx is None:
            body = self._chunk_regex.pattern[1:-1]  # without the leading ^ and the trailing $
            rx = self._catch_all = re.compile(rb"^(?:" + body + rb"|(.+))$", re.MULTILINE)
        tuples = rx.findall(chunk, 0, len(chunk) - 1)  # endpos: no empty match after the last \n
        if len(tuples) != chunk.count(b"\n"):  # an empty line: rare
            return self._scan_slow(chunk)
        bad = [t for t in tuples if t[-1]]
        if not bad:
            return tuples, []
        return ([t for t in tuples if not t[-1]],
                [(parsing.reject_reason(t[-1]), t[-1]) for t in bad])

    parsing.LineParser.scan = scan


def patch_read_coalescing(supervisor_delay: float = 0.01, worker_delay: float = 0.02,
                          small: int = 256 << 10) -> None:
    """After a read of less than *small* bytes, sleep before polling again.

    The supervisor waits *supervisor_delay* seconds and the worker
    *worker_delay* seconds (a 1 MiB pipe holds more than 200 ms of log at
    20,000 requests/s, and counts are flushed once a second anyway).
    """
    from logpipe import supervisor, worker

    read_stdin = supervisor._Supervisor._read_stdin

    def _read_stdin(self, now):
        before = self.bytes_read
        read_stdin(self, now)
        if 0 < self.bytes_read - before < small and not self.signals:
            time.sleep(supervisor_delay)

    supervisor._Supervisor._read_stdin = _read_stdin
    read = worker.Worker._read

    def _read(self):
        before = self.offset
        eof = read(self)
        if not eof and 0 < self.offset - before < small and not self.stopping:
            time.sleep(worker_delay)
        return eof

    worker.Worker._read = _read


def patch_worker_nice(increment: int = 10) -> None:
    """Start every worker with ``os.nice(increment)`` (the supervisor keeps its priority)."""
    from logpipe import worker

    run = worker.Worker.run

    def _run(self):
        os.nice(increment)
        return run(self)

    worker.Worker.run = _run
