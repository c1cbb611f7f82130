"""One run of ``logpipe health``: find the instances, probe memcached, judge, build the report."""

from __future__ import annotations

import time
from typing import Iterable, Optional

from logpipe.commands.health import find, probe
from logpipe.commands.health.judge import Thresholds, judge, judge_memcached
from logpipe.commands.health.output import report_document


def check(
    thresholds: Optional[Thresholds] = None,
    status_dirs: Iterable[str] = ("/run/logpipe",),
    match: Optional[Iterable[str]] = None,
    default_memcached: Optional[str] = None,
    now: Optional[float] = None,
) -> dict:
    """Take one snapshot of every logpipe on this machine and judge it.

    Args:
        thresholds: the limits (defaults: :class:`Thresholds`).
        status_dirs: where to look for status files besides each daemon's own
            ``--status-dir``.
        match: keep only the instances whose supervisor command line contains
            one of these strings (None: all).
        default_memcached: the servers of an instance whose own are unknown.
        now: the Unix time to judge against (tests); default: now.

    Returns:
        The report, the document ``--json`` prints (``docs/health.md``).
    """
    started = time.monotonic()
    limits = thresholds or Thresholds()
    now = time.time() if now is None else now
    match = [m for m in (match or []) if m]
    census = find.find(status_dirs, match)
    verdicts = [judge(found, limits, now) for found in census.instances]
    specs = {f.memcached_spec or default_memcached for f in census.instances if f.alive}
    pings = probe.ping_all(sorted(s for s in specs if s), limits.ping_timeout) if specs else {}
    for verdict in verdicts:
        judge_memcached(verdict, pings, default_memcached, limits, now)
    return report_document(census, verdicts, match, limits, now, time.monotonic() - started)
