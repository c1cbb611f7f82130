"""``logpipe hits`` and ``logpipe top``: read counters back from memcached.

``logpipe hits URL [--date D] [--site S] [--json]`` prints one URL's page views
and unique visitors for a day (today by default).  ``logpipe top visitors``
ranks URLs by unique visitors.  ``logpipe top [DIMENSION] [--date D] [-n N]
[--site S] [--json] [--watch]`` prints a dimension's most counted values.
"""

from __future__ import annotations

import json
import sys
import time

from logpipe.api import Reader, today
from logpipe.config import ConfigError
from logpipe.daemon.store import StoreError

__all__ = ["add_arguments", "run"]

DIMENSIONS = ("url", "referrer", "referrer_host", "keyword", "browser", "platform", "bot",
              "status", "notfound", "post_ip", "visitors")


def add_arguments(parser, name: str) -> None:
    """Add the options of ``hits`` or ``top`` to *parser*."""
    parser.add_argument("--date", metavar="YYYY-MM-DD", help="the day (default: today, local time)")
    parser.add_argument("--site", metavar="VHOST", help="the virtual host, when the LogFormat has %%v")
    parser.add_argument("--json", action="store_true", help="print JSON")
    if name == "hits":
        parser.add_argument("url", help="the URL path, e.g. /blog/1/ (query string ignored)")
        parser.add_argument("--days", type=int, default=1, metavar="N",
                            help="N days ending with --date: today from memcached, earlier days from --db")
    else:
        parser.add_argument("dimension", nargs="?", default="url", choices=DIMENSIONS)
        parser.add_argument("-n", type=int, default=10, metavar="N", help="how many rows (default 10)")
        parser.add_argument("--watch", action="store_true", help="refresh a table every second (Ctrl-C ends)")


def run(args) -> int:
    """Run ``hits`` or ``top``; exit 0, or 1 when memcached cannot be read."""
    from logpipe.commands.main import settings_from

    try:
        settings = settings_from(args)
    except ConfigError as exc:
        sys.stderr.write(f"logpipe {args.command}: {exc}\n")
        return 2
    reader = Reader(settings.memcached, prefix=settings.prefix, timeout=max(settings.timeout, 1.0))
    try:
        if args.command == "hits":
            return _hits(reader, args, settings)
        if args.watch:
            return _watch(reader, args)
        return _top(reader, args)
    except StoreError as exc:
        sys.stderr.write(f"logpipe {args.command}: {exc}\n")
        return 1
    finally:
        reader.close()


def _hits(reader: Reader, args, settings) -> int:
    day = args.date or today()
    if args.days > 1:
        from logpipe.history import hits_table

        rows = [(*row, row.visitors) for row in
                hits_table(reader, settings.db, args.url, day, args.days, site=args.site)]
    else:
        rows = [(day, reader.hits(args.url, day, site=args.site), "memcached",
                 reader.visitors(args.url, day, site=args.site))]
    if args.json:
        print(json.dumps({"url": args.url, "site": args.site,
                          "days": [{"date": d, "views": n, "visitors": v, "source": s} for d, n, s, v in rows]}))
    elif len(rows) == 1:
        print(f"{rows[0][1]} views, {rows[0][3]} unique visitors")
    else:
        print(f"{'day':<10}  {'views':>9}  {'visitors':>9}  source")
        for d, n, source, visitors in rows:
            print(f"{d}  {n:>9}  {'-' if visitors is None else visitors:>9}  {source}")
    return 0


def _top(reader: Reader, args) -> int:
    day = args.date or today()
    rows = reader.top(args.dimension, day, args.n, args.site)
    if args.json:
        print(json.dumps({"date": day, "dimension": args.dimension, "site": args.site,
                          "rows": [{"value": r.value, "count": r.count} for r in rows]}))
        return 0
    if not rows:
        print(f"no {args.dimension} counted on {day}", file=sys.stderr)
    for row in rows:
        print(f"{row.count:>9}  {row.value}")
    return 0


def _watch(reader: Reader, args) -> int:
    from rich.live import Live
    from rich.table import Table

    def table() -> Table:
        day = args.date or today()
        grid = Table(title=f"logpipe top {args.dimension} — {day} — {time.strftime('%H:%M:%S')}")
        grid.add_column("count", justify="right")
        grid.add_column(args.dimension)
        for row in reader.top(args.dimension, day, args.n, args.site):
            grid.add_row(str(row.count), row.value)
        return grid

    try:
        with Live(table(), refresh_per_second=2, screen=False) as live:
            while True:
                time.sleep(1)
                live.update(table())
    except KeyboardInterrupt:
        return 0
