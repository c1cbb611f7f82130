"""A/B the worker pipeline of two git revisions, runs alternated, on the bench input.

``python -m bench.ab [--runs 3] [--lines 1000000] [--dimensions url] REV_A [REV_B]``

Identical runs on a shared VM move by ±10–20 %, and the load changes over
minutes, so comparing one ``bench.run`` today with one yesterday says little.
This runs ``bench.worker_main`` (the worker alone, stdin from the bench input
file, to a private real memcached, emptied between runs) from a checkout of
each revision (``git worktree`` under ``bench/out/ab/``, removed afterwards
unless ``--keep``), alternating A, B,
A, B …, and prints each run and the best and median lines/s and CPU seconds
per revision.  *REV_B* defaults to the working tree as it is.  Every run's
page views are checked against the first: a change that alters the counts
is reported, not timed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from . import OUT_DIR, REPO
from .data import write_replicated
from .offline import run_worker
from .servers import Memcached

__all__ = ["main", "checkout", "remove_checkout"]


def checkout(rev: str) -> Path:
    """A worktree of *rev* under ``bench/out/ab/`` (reused when it is already there)."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    path = OUT_DIR / "ab" / commit[:12]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(path), commit],
                       check=True, capture_output=True)
    return path


def remove_checkout(path: Path) -> None:
    """Remove a worktree made by :func:`checkout`."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    """Command line; exit 1 when the revisions count differently."""
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("rev_a")
    parser.add_argument("rev_b", nargs="?", default=None, help="default: the working tree")
    parser.add_argument("--runs", type=int, default=3, help="runs per revision (default 3)")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--dimensions", default=None, help="logpipe --dimensions (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the checkouts for the next comparison")
    args = parser.parse_args(argv)
    if args.rev_a == args.rev_b:
        parser.error("two different revisions, please (or one, against the working tree)")
    trees: dict[str, Path] = {}
    try:  # a checkout made before a later step failed is removed too
        trees[args.rev_a] = checkout(args.rev_a)
        trees[args.rev_b or "working tree"] = checkout(args.rev_b) if args.rev_b else REPO
        return _compare(args, trees)
    finally:
        if not args.keep:
            for tree in trees.values():
                if tree != REPO:
                    remove_checkout(tree)


def _compare(args: argparse.Namespace, trees: dict[str, Path]) -> int:
    data = write_replicated(OUT_DIR / "work" / f"ab-input-{args.lines}.log", args.lines)
    try:
        return _alternate(args, trees, data)
    finally:
        data.path.unlink(missing_ok=True)


def _alternate(args: argparse.Namespace, trees: dict[str, Path], data) -> int:
    print(f"input: {data.lines:,} lines, {data.source}")
    options = [] if args.dimensions is None else ["--dimensions", args.dimensions]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    page_views: set[int] = set()
    with Memcached(memory_mb=1024) as server:
        for run in range(args.runs):
            for name, tree in trees.items():
                server.command("flush_all")
                report = run_worker(data.path, server, options, cwd=tree)
                page_views.add(report["page_views"])
                results[name].append((report["lines_per_s"], report["cpu_seconds"]))
                print(f"  run {run + 1} {name:>14}: {report['lines_per_s']:>9,.0f} lines/s, "
                      f"{report['cpu_seconds']:.2f} CPU s, {report['page_views']:,} page views")
    for name, runs in results.items():
        rates = [rate for rate, _ in runs]
        cpu = [seconds for _, seconds in runs]
        print(f"{name:>14}: best {max(rates):,.0f} lines/s, median {statistics.median(rates):,.0f}; "
              f"CPU s best {min(cpu):.2f}, median {statistics.median(cpu):.2f}")
    if len(page_views) > 1:
        print(f"the revisions count differently: page views {sorted(page_views)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
