"""Profile logpipe's worker pipeline with cProfile on the benchmark input.

``python -m bench.profile [--lines 1000000] [--dimensions url] [--top 30] [--stages]``
builds the same input as ``bench.run`` (the real combined logs replicated,
or a generated log), starts a private memcached, and runs
:class:`logpipe.daemon.worker.Worker` in this process on the file under cProfile.
Prints the functions with the most own time and the most cumulative time,
and saves the raw stats to ``bench/out/profile.pstats``
(``python -m pstats bench/out/profile.pstats`` to browse).

cProfile adds a fixed cost to every Python-level call, so functions called
once per line (there are almost none: the per-line work is C) look cheap and
per-distinct-tuple Python code looks a little more expensive than it is.
The wall time without the profiler is printed first for comparison.

``--stages`` instead times the pipeline's stages without any profiler, in
this process and without memcached: :meth:`Pipeline.feed` (regex scan and
tuple counting), :meth:`Pipeline.take` (classification of each distinct
tuple) and :meth:`Pipeline.to_keys`, with a flush every 60 MiB chunks
(about 250,000 lines, one flush interval at that rate), CPU time, best of 3.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

from . import OUT_DIR
from .data import write_replicated
from .servers import Memcached

__all__ = ["main", "profile_worker", "time_stages"]


def time_stages(path, dimensions: str | None, rounds: int = 3, flush_every: int = 60) -> dict:
    """CPU seconds of feed / take / to_keys over the file at *path* (best of *rounds*)."""
    from logpipe.config import build_settings
    from logpipe.daemon.pipeline import Pipeline

    with open(path, "rb") as handle:
        data = handle.read()
    chunks, pos = [], 0
    while pos < len(data):
        end = data.rfind(b"\n", pos, pos + (1 << 20)) + 1 or len(data)
        chunks.append(data[pos:end])
        pos = end
    values = {"dimensions": dimensions} if dimensions else {}
    best: dict = {}
    for _ in range(rounds):
        pipeline = Pipeline(build_settings(values, environ={}))
        spent = {"feed": 0.0, "take": 0.0, "to_keys": 0.0}
        distinct = 0
        clock = time.process_time
        for i, chunk in enumerate(chunks):
            t = clock()
            pipeline.feed(chunk)
            spent["feed"] += clock() - t
            if i % flush_every == flush_every - 1 or i == len(chunks) - 1:
                distinct += len(pipeline.raw)
                t = clock()
                increments = pipeline.take()
                spent["take"] += clock() - t
                t = clock()
                pipeline.to_keys(increments)
                spent["to_keys"] += clock() - t
        spent["total"] = sum(spent.values())
        if not best or spent["total"] < best["total"]:
            best = dict(spent, lines=pipeline.lines, distinct_tuples=distinct,
                    page_views=pipeline.classifier.stats.get("page view", 0),
                    rejected=sum(pipeline.rejected.values()))
    return best


def _print_stages(r: dict, title: str) -> None:
    lines = r["lines"]
    print(f"{title}: {lines:,} lines, {r['distinct_tuples']:,} distinct tuples "
          f"({r['distinct_tuples'] / lines:.0%}), {r['page_views']:,} page views, {r['rejected']:,} rejected; "
          "CPU seconds, best of the rounds:")
    for stage in ("feed", "take", "to_keys", "total"):
        print(f"  {stage:8s} {r[stage]:6.2f} s  {r[stage] / lines * 1e6:5.2f} µs/line  "
              f"{r[stage] / r['total']:4.0%}")
    print(f"  = {lines / r['total']:,.0f} lines per CPU second (no memcached, no I/O)")


def profile_worker(path, server: Memcached, dimensions: str | None, profile: bool):
    """Run the worker on *path* in-process; return ``(seconds, lines, cProfile.Profile | None)``."""
    from logpipe.config import build_settings
    from logpipe.daemon.worker import Worker

    values = {"memcached": server.spec, "status_dir": ""}
    if dimensions:
        values["dimensions"] = dimensions
    settings = build_settings(values, environ={})
    fd = os.open(path, os.O_RDONLY)
    try:
        worker = Worker(settings, fd, -1)
        profiler = cProfile.Profile() if profile else None
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        worker.run()
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    return elapsed, worker.pipeline.lines, profiler


def main(argv: list[str] | None = None) -> int:
    """Command line: build the input, time one plain run, then one under cProfile."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="input lines (default 1,000,000)")
    parser.add_argument("--dimensions", default=None, help="logpipe --dimensions (default: all)")
    parser.add_argument("--top", type=int, default=30, help="rows per listing")
    parser.add_argument("--stages", action="store_true", help="time feed/take/to_keys without a profiler")
    args = parser.parse_args(argv)
    work = OUT_DIR / "work"
    data = write_replicated(work / f"input-{args.lines}-{os.getpid()}.log", args.lines)
    print(f"input: {data.lines:,} lines, {data.bytes / 1e6:.0f} MB, {data.source}")
    if args.stages:
        _print_stages(time_stages(data.path, args.dimensions), "stock")
        data.path.unlink(missing_ok=True)
        return 0
    with Memcached(memory_mb=1024) as server:
        plain, lines, _ = profile_worker(data.path, server, args.dimensions, profile=False)
        print(f"without profiler: {lines:,} lines in {plain:.2f} s = {lines / plain:,.0f} lines/s")
    with Memcached(memory_mb=1024) as server:
        profiled, lines, profiler = profile_worker(data.path, server, args.dimensions, profile=True)
        print(f"under cProfile:   {lines:,} lines in {profiled:.2f} s")
    out = OUT_DIR / "profile.pstats"
    profiler.dump_stats(str(out))
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer)
        stats.strip_dirs().sort_stats(order).print_stats(args.top)
        text = buffer.getvalue()
        print(f"\n=== by {order} ===")
        print(text[text.find("   ncalls"):].rstrip())
    print(f"\nstats saved to {out}")
    data.path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
