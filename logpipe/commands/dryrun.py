"""``logpipe --dry-run``: count stdin as the daemon would and print it; no server.

Output (stdout): one line per memcached key, ``COUNT KEY``, sorted by key,
then a summary of lines read, page views, unique visitors per day (and
virtual host), requests not counted as page views
by reason, and rejected lines by reason.  With ``--explain``, each line is
printed first with what it counted or why it was not a page view.
"""

from __future__ import annotations

import os
import sys

from logpipe.config import Settings
from logpipe.daemon.pipeline import Pipeline

__all__ = ["run_dry_run", "summary_lines"]

READ_SIZE = 1 << 20


def run_dry_run(settings: Settings, *, explain: bool = False, infd: int = 0, out=None) -> int:
    """Read *infd* to EOF, count, print keys and the summary to *out*; return 0.

    Args:
        settings: parsing and counting options (``--format`` …).
        explain: print each line and the decisions taken on it.
        infd: file descriptor to read (stdin).
        out: text stream (stdout).
    """
    out = out or sys.stdout
    pipeline = Pipeline(settings)
    totals: dict[str, int] = {}
    tail = b""

    def consume(chunk: bytes) -> None:
        if explain:
            for line in chunk.split(b"\n")[:-1]:
                out.write(f"{line[:300].decode('latin-1')}\n")
                increments = pipeline.explain_line(line, lambda note: out.write(f"    {note}\n"))
                _add(totals, pipeline.to_keys(increments)[0])
        else:
            pipeline.feed(chunk)

    while True:
        data = os.read(infd, READ_SIZE)
        if not data:
            break
        cut = data.rfind(b"\n")
        if cut < 0:
            tail += data
            continue
        chunk, tail = tail + data[:cut + 1], data[cut + 1:]
        consume(chunk)
    if tail:
        consume(tail + b"\n")
    if not explain:
        _add(totals, pipeline.to_keys(pipeline.take())[0])
    for key in sorted(totals):
        out.write(f"{totals[key]:>9}  {key}\n")
    out.write("\n")
    for line in summary_lines(pipeline, len(totals)):
        out.write(line + "\n")
    out.flush()
    return 0


def _add(totals: dict[str, int], counts: dict[str, int]) -> None:
    for key, n in counts.items():
        totals[key] = totals.get(key, 0) + n


def summary_lines(pipeline: Pipeline, keys: int) -> list[str]:
    """The dry-run summary: read, parsed, page views, not counted, rejected."""
    stats = pipeline.classifier.stats
    rejected = pipeline.rejected_counts()
    not_counted = {k: v for k, v in stats.items() if k not in rejected and k != "page view"}
    parsed = pipeline.lines - sum(pipeline.rejected.values())

    def listing(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"

    visitors = []
    if pipeline.visitors is not None:
        for (day, site), n in sorted(pipeline.visitors.totals.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            visitors.append(f"unique visitors   {n} on {day}" + (f" ({site})" if site else ""))
    return [
        f"lines read        {pipeline.lines}",
        f"parsed            {parsed}",
        f"page views        {stats.get('page view', 0)}",
        *visitors,
        f"not page views    {sum(not_counted.values())} ({listing(not_counted)})",
        f"rejected          {sum(rejected.values())} ({listing(rejected)})",
        f"keys              {keys}",
    ]
