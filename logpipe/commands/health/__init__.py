"""``logpipe health``: is every logpipe under Apache alive, keeping up and delivering?

For a systemd timer or a monitoring system.  One run takes a snapshot and
exits; it is read-only: it reads ``/proc`` (through psutil), the status files
and memcached's ``stats``, and never signals, writes to or otherwise changes a
running logpipe (``--prometheus`` writes only its own file).

What is checked, for every logpipe supervisor found (an *instance*): the
supervisor and its worker are alive (a zombie is not); the age of each one's
heartbeat (its status file); the worker restarts in the last hour; how full
the supervisor's spool is, and how many lines it dropped; the share of lines
the worker rejected; the age of the last successful flush to memcached, while
flushes fail; each memcached server: reachable, round-trip time, evictions
since the supervisor started.  And globally: Apache running (a process named
``apache2`` or ``httpd``) with no logpipe is CRITICAL.

The parts, one job each:

* :mod:`.find` — finding the instances: processes, command lines, status files;
* :mod:`.probe` — reading: the process table (psutil), status files, memcached;
* :mod:`.judge` — thresholds → OK / WARNING / CRITICAL / UNKNOWN;
* :mod:`.output` — the ``--json`` document and the text lines;
* :mod:`.prometheus` — the ``--prometheus`` textfile for node_exporter;
* :mod:`.snapshot` — one run: find, probe, judge, report (:func:`check`);
* :mod:`.command` — the CLI: ``add_arguments`` and ``run``;
* :mod:`.records` — the typed records they hand to each other.

Exit codes follow the monitoring-plugin convention: 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN.  Output: one line per instance, worst first, or one
JSON document with ``--json`` (schema in ``docs/health.md``).
"""

from __future__ import annotations

from logpipe.commands.health.command import OPTIONS, add_arguments, run
from logpipe.commands.health.find import daemon_arguments
from logpipe.commands.health.judge import (
    CRITICAL, OK, STATUS_NAMES, UNKNOWN, WARNING, Thresholds, worst,
)
from logpipe.commands.health.output import SCHEMA, format_lines
from logpipe.commands.health.snapshot import check

__all__ = [
    "OK",
    "WARNING",
    "CRITICAL",
    "UNKNOWN",
    "STATUS_NAMES",
    "SCHEMA",
    "OPTIONS",
    "Thresholds",
    "add_arguments",
    "run",
    "check",
    "format_lines",
    "daemon_arguments",
    "worst",
]
