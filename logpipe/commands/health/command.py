"""The ``logpipe health`` command: its options, and one run from arguments to exit code."""

from __future__ import annotations

import argparse
import json
import sys

from logpipe.commands.health.judge import SEVERITY, STATUS_NAMES, UNKNOWN, Thresholds, worst
from logpipe.commands.health.output import format_lines, unknown_report
from logpipe.config import ConfigError

#: The threshold options: (Thresholds field, type, help).
OPTIONS = [
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

PROMETHEUS_HELP = (
    "also write the figures to FILE in Prometheus' text format, for node_exporter's textfile "
    "collector: FILE goes in its --collector.textfile.directory (Debian: "
    "/var/lib/prometheus/node-exporter) and must end in .prom; replaced atomically "
    "(temporary file, then rename) on every run; metric names in docs/health.md "
    "(default: none, no file)"
)


def _prom_file(value: str) -> str:
    """argparse type of ``--prometheus``: a path ending in ``.prom``."""
    from logpipe.commands.health.prometheus import SUFFIX

    if not value.endswith(SUFFIX) or value.endswith("/" + SUFFIX):
        raise argparse.ArgumentTypeError(
            f"{value!r} does not end in {SUFFIX} (node_exporter's textfile collector reads only *{SUFFIX})")
    return value


def add_arguments(parser, name: str) -> None:
    """Add the options of ``logpipe health`` to *parser* (an argparse parser; *name* is unused)."""
    parser.description = (
        "Check every running logpipe (supervisor, worker, spool, memcached). "
        "Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Read-only."
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document (schema in docs/health.md)")
    parser.add_argument("--match", metavar="TEXT", action="append", default=None,
                        help="check only the instances whose supervisor command line contains TEXT "
                             "(repeatable: any may match); Apache running with no match is CRITICAL")
    parser.add_argument("--prometheus", metavar="FILE", type=_prom_file, default=None, help=PROMETHEUS_HELP)
    # A bad option is UNKNOWN (3) for a monitoring plugin, not the CLI's usual 2 (CRITICAL).
    parser.error = _usage_error
    defaults = Thresholds()
    for field, kind, text in OPTIONS:
        parser.add_argument("--" + field.replace("_", "-"), type=kind, default=getattr(defaults, field),
                            metavar="N", help=text)


def _usage_error(message: str) -> None:
    """argparse's error hook for ``health``: one UNKNOWN line, exit 3."""
    sys.stdout.write(f"UNKNOWN logpipe health: {message} (logpipe health --help)\n")
    sys.exit(UNKNOWN)


def _write_prometheus(report: dict, path: str) -> str | None:
    """Write *report* to the ``--prometheus`` file; the problem in one line, or None."""
    from logpipe.commands.health import prometheus

    try:
        prometheus.write(report, path)
    except OSError as exc:
        return f"logpipe health: cannot write --prometheus {path}: {exc.strerror or exc}"
    return None


def run(args) -> int:
    """Run the check, print the report (and write ``--prometheus``), return the exit code (0/1/2/3).

    A ``--prometheus`` file that cannot be written makes the run at least UNKNOWN, with
    one more line (text) or problem (``--json``).
    """
    from logpipe.commands.health.snapshot import check
    from logpipe.commands.main import settings_from

    try:
        settings = settings_from(args)
    except ConfigError as exc:
        message = f"logpipe health: {exc}"
        failure = args.prometheus and _write_prometheus(unknown_report(message), args.prometheus)
        print(f"UNKNOWN {message}")
        if failure:
            print(f"UNKNOWN {failure}")
        return UNKNOWN
    thresholds = Thresholds(**{f: getattr(args, f) for f, _, _ in OPTIONS})
    try:
        report = check(thresholds, status_dirs=[settings.status_dir], match=args.match,
                       default_memcached=settings.memcached)
    except Exception as exc:  # noqa: BLE001 - a monitoring plugin must answer
        report = unknown_report(f"{type(exc).__name__}: {exc}")
    failure = args.prometheus and _write_prometheus(report, args.prometheus)
    if failure:
        report["problems"].append(failure)
        report["exit_code"] = worst([report["exit_code"], UNKNOWN])
        report["status"] = STATUS_NAMES[report["exit_code"]]
    if args.json:
        print(json.dumps(report, indent=None, sort_keys=False))
        return report["exit_code"]
    lines = format_lines(report)
    if failure and report["instances"]:
        # worst first: after the instances worse than UNKNOWN, before the others
        worse = sum(1 for inst in report["instances"] if SEVERITY[inst["exit_code"]] > SEVERITY[UNKNOWN])
        lines.insert(worse, f"UNKNOWN {failure}")
    for line in lines:
        print(line)
    return report["exit_code"]
