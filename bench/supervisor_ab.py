"""A/B the supervisor alone of two git revisions, runs alternated: its CPU seconds per input.

``python -m bench.supervisor_ab [--runs 5] [--lines 500000] REV_A [REV_B]``

:mod:`bench.ab` times the worker; this times the other process on the hot
path.  Each run pipes the bench input (``cat``, a 64 KiB pipe, so reads are
the size httpd's pipe gives) into ``logpipe.daemon.supervisor.run`` from a
checkout of the revision, with a worker that only reads its data pipe and
acks every read, and prints the supervisor's own CPU seconds
(``getrusage(RUSAGE_SELF)``: the worker, a child, is not included) and wall
seconds.  *REV_B* defaults to the working tree.  Start-up (imports, fork) is
included: run it with an empty ``--lines 0`` input to see that part alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from . import OUT_DIR, REPO
from .ab import checkout, remove_checkout
from .data import write_replicated

__all__ = ["main"]

#: Run in the checkout: the supervisor with a worker that reads and acks; prints
#: "exit-code cpu-seconds wall-seconds".
_DRIVER = r'''
import os, resource, time
from logpipe.config import Settings
from logpipe.daemon import supervisor

def worker_main(settings, data_fd, ctrl_fd):
    offset, beat = 0, 0.0
    while True:
        data = os.read(data_fd, 1 << 20)
        if not data:
            return 0
        offset += len(data)
        if time.monotonic() - beat > 0.2:
            os.write(ctrl_fd, b"H\n")
            beat = time.monotonic()
        os.write(ctrl_fd, b"A %d\n" % offset)

started = time.monotonic()
code = supervisor.run(Settings(status_dir="", log_interval=1e9, pipe_size=65536), worker_main)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(code, usage.ru_utime + usage.ru_stime, time.monotonic() - started)
'''


def run_once(tree: Path, path: Path) -> tuple[float, float]:
    """One run of the supervisor of *tree* on *path*: (CPU seconds, wall seconds).

    Raises:
        RuntimeError: the supervisor did not exit 0.
    """
    env = dict(os.environ, PYTHONPATH=str(tree))
    cat = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
    try:
        out = subprocess.run([sys.executable, "-c", _DRIVER], stdin=cat.stdout, env=env,
                             capture_output=True, text=True, cwd=tree)
    finally:
        cat.stdout.close()
        cat.wait()
    fields = out.stdout.split()
    if out.returncode != 0 or len(fields) != 3 or fields[0] != "0":
        raise RuntimeError(f"supervisor of {tree} failed: {out.stdout} {out.stderr[-500:]}")
    return float(fields[1]), float(fields[2])


def main(argv: list[str] | None = None) -> int:
    """Command line; prints each run, then best and median CPU seconds per revision."""
    parser = argparse.ArgumentParser(prog="python -m bench.supervisor_ab",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("rev_a")
    parser.add_argument("rev_b", nargs="?", default=None, help="default: the working tree")
    parser.add_argument("--runs", type=int, default=5, help="runs per revision (default 5)")
    parser.add_argument("--lines", type=int, default=500_000,
                        help="input lines, at least (default 500000; 0: empty input)")
    args = parser.parse_args(argv)
    if args.rev_a == args.rev_b:
        parser.error("two different revisions, please (or one, against the working tree)")
    trees: dict[str, Path] = {}
    path = OUT_DIR / "work" / f"supervisor-ab-input-{args.lines}.log"
    try:
        trees[args.rev_a] = checkout(args.rev_a)
        trees[args.rev_b or "working tree"] = checkout(args.rev_b) if args.rev_b else REPO
        if args.lines:
            data = write_replicated(path, args.lines)
            print(f"input: {data.lines:,} lines, {data.bytes:,} bytes")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            print("input: empty (start-up and exit only)")
        cpu: dict[str, list[float]] = {name: [] for name in trees}
        for run in range(args.runs):
            for name, tree in trees.items():
                seconds, wall = run_once(tree, path)
                cpu[name].append(seconds)
                print(f"  run {run + 1} {name:>14}: supervisor {seconds:.3f} CPU s, {wall:.3f} s")
        for name, values in cpu.items():
            print(f"{name:>14}: CPU s best {min(values):.3f}, median {statistics.median(values):.3f}")
        return 0
    finally:
        path.unlink(missing_ok=True)
        for tree in trees.values():
            if tree != REPO:
                remove_checkout(tree)


if __name__ == "__main__":
    sys.exit(main())
