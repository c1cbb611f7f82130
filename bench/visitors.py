"""Unique visitors (issue 12): throughput, worker memory and memcached bytes, in one run.

``python -m bench.visitors [--lines N] [--visitors N]`` prints, as ratios of one run on
the same input:

1. whole-process throughput, ``logpipe`` (supervisor + worker) stdin → a fresh
   memcached on the real logs repeated to ``--lines`` (default 1,000,000), with
   visitors on (the default) and off (``--dimensions`` without ``visitors``), with
   the visits collected but no marker made (:data:`COLLECT_ONLY`: what the markers
   cost, and the ceiling were they free), and GoAccess on the same file: lines per
   second of wall-clock time and the ratios;
2. the worker's peak RSS with ``--visitors`` visitors and as many URLs in one day
   (``bench.worker_main``; 3 page views per visitor), and the exact counts read back;
3. the worker alone, CPU seconds with visitors on, with the visits collected
   but no marker made (``bench.worker_main --collect-visitors-only``) and off:
   what the per-line collection and the markers each cost;
4. memcached bytes (``stats bytes``) per 100,000 visitors a day: the exact
   markers (measured: the same input with visitors on minus off), and a
   HyperLogLog-style sketch with ≤ 2 % error (4,096 six-bit registers, 3,072
   bytes: measured by storing 1,000 such items and scaling).

Results go to ``bench/out/visitors.json`` as well.  Run on a shared, loaded
machine, the absolute rates move by 10–20 % between runs; the ratios are the
point.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import time
from pathlib import Path

from . import OUT_DIR, logpipe_bin, python_bin
from .data import write_replicated
from .offline import goaccess_run, read_counters, run_worker
from .servers import Memcached

ALL_BUT_VISITORS = "url,referrer,referrer_host,keyword,browser,platform,bot,status,notfound,post_ip"


#: The daemon with the visits collected (per line, as always) but no marker made or sent:
#: ``VisitorMarkers.add`` patched in the supervisor before it forks the worker.
COLLECT_ONLY = ("import sys; from logpipe.daemon.visitors import VisitorMarkers; "
                "VisitorMarkers.add = lambda self, visits: None; "
                "from logpipe.commands.main import main; sys.exit(main())")


def daemon_run(path: Path, lines: int, options: list[str], collect_only: bool = False) -> dict:
    """The whole daemon on *path* as stdin into a fresh memcached: wall seconds to exit
    (*collect_only*: :data:`COLLECT_ONLY`)."""
    command = [python_bin(), "-c", COLLECT_ONLY] if collect_only else [logpipe_bin()]
    with Memcached(memory_mb=1024) as server:
        before = server.stats().get("bytes", 0)
        with open(path, "rb") as stdin:
            start = time.perf_counter()
            proc = subprocess.run([*command, "--memcached", server.spec, "--status-dir", "", *options],
                                  stdin=stdin, capture_output=True, timeout=1800)
            wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"logpipe exited {proc.returncode}: {proc.stderr[-500:]!r}")
        stats = server.stats()
        counters = read_counters(server)
    site = {k: n for k, n in counters.items() if k.endswith(":visitors:*")}
    return {"seconds": wall, "lines_per_s": lines / wall, "memcached_bytes": stats.get("bytes", 0) - before,
            "items": stats.get("curr_items"), "site_visitors_total": sum(site.values()),
            "days_with_visitors": len(site)}


def worker_split(path: Path, rounds: int = 2) -> dict:
    """The worker alone (``bench.worker_main``) on *path*, CPU seconds, best of *rounds*
    alternated runs each: visitors on, visits collected but no marker made
    (``--collect-visitors-only``), visitors off; so the visitors' cost splits into the
    per-line collection and the markers (hashing, claims, commits)."""
    variants = {"on": [], "collect_only": ["--collect-visitors-only"],
                "off": ["--dimensions", ALL_BUT_VISITORS]}
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for label, options in variants.items():
            with Memcached(memory_mb=1024) as server:
                report = run_worker(path, server, options)
            if label not in best or report["cpu_seconds"] < best[label]["cpu_seconds"]:
                best[label] = {k: report[k] for k in ("cpu_seconds", "lines_per_s", "lines")}
    return best


def visitor_lines(visitors: int, per_visitor: int = 3, seed: int = 12) -> list[bytes]:
    """One day: *visitors* (address, User-Agent) pairs, each viewing *per_visitor* pages out
    of as many URLs as visitors (the first page of visitor i is URL i: every URL is seen)."""
    rng = random.Random(seed)
    agents = [f"Mozilla/5.0 (X11; Linux x86_64; rv:12{n}.0) Gecko/20100101 Firefox/12{n}.0" for n in range(7)]
    day = time.strftime("%d/%b/%Y")
    out = []
    for k in range(per_visitor):
        for i in range(visitors):
            url = i if k == 0 else rng.randrange(visitors)
            out.append(f'10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256} - - [{day}:12:00:00 +0000] '
                       f'"GET /item/{url} HTTP/1.1" 200 512 "-" "{agents[i % 7]}"'.encode())
    return out


def memory_run(visitors: int, work: Path) -> dict:
    """Worker peak RSS and memcached bytes with *visitors* visitors and URLs in one day."""
    lines = visitor_lines(visitors)
    path = work / f"visitors-{visitors}-{os.getpid()}.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = {"visitors": visitors, "lines": len(lines)}
    try:
        for label, options in (("on", []), ("off", ["--dimensions", ALL_BUT_VISITORS])):
            with Memcached(memory_mb=1024) as server:
                report = run_worker(path, server, options)
                stats = server.stats()
                counters = read_counters(server)
            site = [n for k, n in counters.items() if k.endswith(":visitors:*")]
            per_url = sum(n for k, n in counters.items() if ":visitors:/" in k)
            out[label] = {"peak_rss": report["peak_rss"], "lines_per_s": report["lines_per_s"],
                          "memcached_bytes": stats.get("bytes"), "items": stats.get("curr_items"),
                          "site_visitors": site[0] if site else 0, "url_visitor_pairs": per_url,
                          "evictions": stats.get("evictions")}
    finally:
        path.unlink(missing_ok=True)
    return out


def sketch_bytes(sketches: int = 1000, size: int = 3072) -> dict:
    """memcached bytes of *sketches* items of *size* bytes (a dense HLL each), measured."""
    with Memcached(memory_mb=256) as server:
        client = server.client()
        before = server.stats()["bytes"]
        payload = os.urandom(size)
        for i in range(sketches):
            client.set(f"logpipe:2026-11-21:visitors:/item/{i}", payload, expire=86400)
        after = server.stats()["bytes"]
        client.close()
    return {"items": sketches, "register_bytes": size, "bytes_per_item": (after - before) / sketches}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.visitors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000,
                        help="lines of the replicated real logs (default 1,000,000)")
    parser.add_argument("--visitors", type=int, default=100_000,
                        help="visitors (and URLs) in the one-day memory run (default 100,000)")
    args = parser.parse_args(argv)
    work = OUT_DIR / "work"
    work.mkdir(parents=True, exist_ok=True)
    data = write_replicated(work / f"visitors-input-{os.getpid()}.log", args.lines)
    doc: dict = {"input_lines": data.lines, "loadavg_start": os.getloadavg()}
    try:
        doc["daemon_visitors_on"] = daemon_run(data.path, data.lines, [])
        doc["goaccess"] = goaccess_run(data, work)
        doc["daemon_visitors_off"] = daemon_run(data.path, data.lines, ["--dimensions", ALL_BUT_VISITORS])
        doc["daemon_collect_only"] = daemon_run(data.path, data.lines, [], collect_only=True)
        doc["worker_split"] = worker_split(data.path)
    finally:
        data.path.unlink(missing_ok=True)
    doc["memory"] = memory_run(args.visitors, work)
    doc["sketch"] = sketch_bytes()
    doc["loadavg_end"] = os.getloadavg()
    on, off, goa = doc["daemon_visitors_on"], doc["daemon_visitors_off"], doc["goaccess"]
    mem = doc["memory"]
    exact = mem["on"]["memcached_bytes"] - mem["off"]["memcached_bytes"]
    scale = 100_000 / mem["visitors"]
    per_url_sketch = doc["sketch"]["bytes_per_item"]
    pairs = mem["on"]["url_visitor_pairs"]
    print(f"input: {data.lines:,} lines (real logs replicated); load average {doc['loadavg_start'][0]:.2f}")
    print(f"logpipe, visitors on : {on['lines_per_s']:>10,.0f} lines/s  ({on['seconds']:.2f} s)")
    print(f"logpipe, visitors off: {off['lines_per_s']:>10,.0f} lines/s  ({off['seconds']:.2f} s)")
    floor = doc["daemon_collect_only"]
    print(f"logpipe, visits collected, no marker: {floor['lines_per_s']:>10,.0f} lines/s  ({floor['seconds']:.2f} s)")
    if "lines_per_s" in goa:
        print(f"GoAccess             : {goa['lines_per_s']:>10,.0f} lines/s  ({goa['seconds']:.2f} s)")
        print(f"ratio on/GoAccess  {on['lines_per_s'] / goa['lines_per_s']:.2f}x   "
              f"off/GoAccess {off['lines_per_s'] / goa['lines_per_s']:.2f}x   "
              f"on/off {on['lines_per_s'] / off['lines_per_s']:.2f}   "
              f"collected-only/GoAccess {floor['lines_per_s'] / goa['lines_per_s']:.2f}x")
    split = doc["worker_split"]
    collect = split["collect_only"]["cpu_seconds"] - split["off"]["cpu_seconds"]
    make = split["on"]["cpu_seconds"] - split["collect_only"]["cpu_seconds"]
    print(f"worker alone, CPU s (best of 2): visitors on {split['on']['cpu_seconds']:.2f}, visits collected only "
          f"{split['collect_only']['cpu_seconds']:.2f}, off {split['off']['cpu_seconds']:.2f}: collection "
          f"{collect:+.2f} s ({collect / split['off']['cpu_seconds']:+.0%}), markers {make:+.2f} s "
          f"({make / split['off']['cpu_seconds']:+.0%} of the worker without visitors)")
    print(f"worker peak RSS, {mem['visitors']:,} visitors and URLs, {mem['lines']:,} lines: "
          f"on {mem['on']['peak_rss'] / 2**20:.1f} MiB, off {mem['off']['peak_rss'] / 2**20:.1f} MiB; "
          f"counted {mem['on']['site_visitors']:,} visitors, {pairs:,} (visitor, URL) pairs")
    print(f"memcached bytes per 100,000 visitors/day, exact markers (site + per URL, "
          f"{pairs / mem['visitors']:.2f} URLs per visitor): {exact * scale / 2**20:.1f} MiB")
    print(f"memcached bytes per 100,000 visitors/day, HLL sketch (2 % error, {per_url_sketch:.0f} B per counter): "
          f"site {per_url_sketch / 1024:.1f} KiB; per URL with {mem['visitors']:,} URLs "
          f"{per_url_sketch * mem['visitors'] * scale / 2**20:.1f} MiB")
    doc["exact_bytes_per_100k"] = exact * scale
    doc["sketch_bytes_per_100k_with_as_many_urls"] = per_url_sketch * mem["visitors"] * scale
    (OUT_DIR / "visitors.json").write_text(json.dumps(doc, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
