"""Run logpipe's worker on stdin, without the supervisor, and report how it went.

``python -m bench.worker_main --report FILE [logpipe options]`` builds the
daemon's :class:`~logpipe.config.Settings` from the usual options (the
``LOGPIPE_*`` environment is ignored, so a benchmark is not changed by the
caller's shell), runs :class:`logpipe.daemon.worker.Worker` on fd 0 with no control
pipe (``ctrl_fd=-1``) until EOF, and writes a JSON report to FILE:

``lines`` (read), ``page_views``, ``outcomes``, ``rejected``,
``dropped_counts``, ``pending_keys`` (undelivered at exit), ``flushes``,
``run_seconds`` / ``cpu_seconds`` (from just before the read loop to EOF
and the final flush), ``startup_seconds`` (imports and building the worker),
``peak_rss`` (``VmHWM``, bytes) and ``exit_code``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

_T0 = time.perf_counter()

from logpipe.config import Settings, add_options, build_settings  # noqa: E402
from logpipe.daemon.worker import Worker  # noqa: E402

__all__ = ["main", "peak_rss"]


def peak_rss() -> int:
    """This process's peak resident set size (``VmHWM``), in bytes."""
    with open("/proc/self/status", "rb") as handle:
        for line in handle:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the worker on stdin, write the report; return its exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.worker_main")
    parser.add_argument("--report", required=True, help="write the JSON report here")
    parser.add_argument("--collect-visitors-only", action="store_true",
                        help="collect the visits (per line) but make and send no marker: the "
                             "floor of the visitors' cost in the worker (bench.visitors)")
    add_options(parser, [f.name for f in dataclasses.fields(Settings)])
    args = vars(parser.parse_args(argv))
    report_path = args.pop("report")
    if args.pop("collect_visitors_only"):
        from logpipe.daemon.visitors import VisitorMarkers

        VisitorMarkers.add = lambda self, visits: None  # visits collected, then dropped
    settings = build_settings(args, environ={})
    worker = Worker(settings, 0, -1)
    start, cpu_start = time.perf_counter(), time.process_time()
    code = worker.run()
    end, cpu_end = time.perf_counter(), time.process_time()
    pipeline = worker.pipeline
    stats = pipeline.classifier.stats
    report = {
        "lines": pipeline.lines,
        "page_views": stats.get("page view", 0),
        "outcomes": dict(stats),
        "rejected": dict(pipeline.rejected),
        "dropped_counts": worker.dropped_counts,
        "pending_keys": len(worker.pending),
        "flushes": worker.flushes,
        "run_seconds": end - start,
        "cpu_seconds": cpu_end - cpu_start,
        "startup_seconds": start - _T0,
        "peak_rss": peak_rss(),
        "exit_code": code,
        "dimensions": sorted(settings.dimension_set()),
        "flush_interval": settings.flush_interval,
    }
    with open(report_path, "w", encoding="utf-8") as handle:
        json.dump(report, handle)
    return code


if __name__ == "__main__":
    sys.exit(main())
