"""``logpipe hits`` and ``logpipe top``: counts of one URL, or a dimension's top values.

``logpipe hits URL [--date D | --from D --to D | --days N] [--site S] [--json]``
prints one URL's page views and unique visitors: one number for one day, else a table per day and
a total.  ``logpipe top [DIMENSION] [--date D | --from D --to D | --days N]
[-n N] [--site S] [--json] [--watch]`` prints a header, a dimension's most
counted values and a total line (``top visitors`` ranks URLs by unique visitors).  Live days (today, and yesterday until it is
rolled up) come from memcached, finished days from the history database
(``--db``): see :mod:`logpipe.history.ranges`.

Values are shown decoded for reading (:mod:`logpipe.commands.display`);
``--json`` prints them as counted.

Exit status: 0; 1 memcached (or the database) cannot be read and there is
nothing to show; 2 a bad option; 3 (:data:`EXIT_INCOMPLETE`) the output is
printed but a live day is unavailable because memcached cannot be read.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time

from logpipe.api import Reader, today
from logpipe.commands.dates import DATE_HELP, current_hour, day_arg, day_or_hour_arg
from logpipe.config import ConfigError
from logpipe.daemon.store import StoreError
from logpipe.errors import HistoryError

__all__ = ["add_arguments", "run", "EXIT_INCOMPLETE", "EPILOG"]

DIMENSIONS = ("url", "referrer", "referrer_host", "keyword", "browser", "platform", "bot", "bot_category",
              "status", "notfound", "post_ip", "visitors")
#: Exit status when the output is printed but memcached could not give a live day (issue 13.3).
EXIT_INCOMPLETE = 3
EPILOG = ("Live days (today, and yesterday until logpipe rollup has stored it) come from memcached, "
          "earlier days from --db. Exit status: 0 ok; 1 nothing could be read; 2 bad option; "
          f"{EXIT_INCOMPLETE} printed, but memcached could not be reached: the live days show as "
          "unavailable (not 0) and are left out of the total.")


def add_arguments(parser, name: str) -> None:
    """Add the options of ``hits`` or ``top`` to *parser*."""
    parser.epilog = EPILOG
    if name == "hits":
        parser.add_argument("--date", metavar="DAY", type=day_arg,
                            help=f"the day, or the last day of --days ({DATE_HELP}; default: today)")
    else:
        parser.add_argument("--date", metavar="DAY", type=day_or_hour_arg,
                            help=f"the day, or the last day of --days ({DATE_HELP}); for post_ip an hour, "
                                 "YYYY-MM-DDTHH (default: today; for post_ip the current hour)")
    parser.add_argument("--from", dest="start", type=day_arg, metavar="DAY",
                        help="first day of a range summed over the database's days and, when the range "
                             f"reaches them, memcached's live days ({DATE_HELP}; default: one day)")
    parser.add_argument("--to", dest="end", type=day_arg, metavar="DAY",
                        help="last day of the range, same forms as --from (default: --date, else today)")
    parser.add_argument("--site", metavar="VHOST",
                        help="the virtual host's counters, when the LogFormat has %%v "
                             "(default: the counters without a site)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON with the values as counted (default: a table for people)")
    parser.add_argument("--days", type=int, default=None, metavar="N",
                        help="the N days ending with --to/--date: the short form of --from/--to "
                             "(default: 1; days)")
    if name == "hits":
        parser.add_argument("url", help="the URL path, e.g. /blog/1/ (required; the query string is ignored)")
    else:
        parser.add_argument("dimension", nargs="?", default="url", choices=DIMENSIONS, metavar="DIMENSION",
                            help=f"what to list: {', '.join(DIMENSIONS)} (default: url)")
        parser.add_argument("-n", type=int, default=10, metavar="N",
                            help="how many values to print (default: 10; rows)")
        parser.add_argument("--watch", action="store_true",
                            help="redraw the table every second until Ctrl-C (default: print once)")


def run(args) -> int:
    """Run ``hits`` or ``top``; see the module docstring for the exit status."""
    from logpipe.commands.main import settings_from
    from logpipe.history import day_range

    if args.command == "top":
        hourly = args.dimension == "post_ip"
        if args.date is None:
            args.date = current_hour() if hourly else None
        elif hourly != ("T" in args.date):
            sys.stderr.write("logpipe top: post_ip is counted per hour: --date YYYY-MM-DDTHH\n" if hourly else
                             f"logpipe top: {args.dimension} is counted per day: --date YYYY-MM-DD\n")
            return 2
    try:
        settings = settings_from(args)
        if args.date and args.end:
            raise ConfigError("--date and --to both name the last day: give one")
        if getattr(args, "dimension", None) == "post_ip":
            first = last = None  # an hour (YYYY-MM-DDTHH), not a day: see _top_result
        else:
            first, last = day_range(args.start, args.end or args.date, args.days)
    except (ConfigError, ValueError) as exc:
        sys.stderr.write(f"logpipe {args.command}: {exc}\n")
        return 2
    reader = Reader(settings.memcached, prefix=settings.prefix, timeout=max(settings.timeout, 1.0))
    try:
        if args.command == "hits":
            return _hits(reader, args, settings, first, last)
        if args.watch:
            return _watch(reader, args, settings, first, last)
        return _top(reader, args, settings, first, last)
    except (StoreError, HistoryError) as exc:
        sys.stderr.write(f"logpipe {args.command}: {exc}\n")
        return 1
    finally:
        reader.close()


def _outage(command: str, settings, days: list[str]) -> None:
    """The one stderr line saying which live days memcached could not give."""
    shown = days[0] if len(days) == 1 else f"{days[0]}..{days[-1]}"
    sys.stderr.write(f"logpipe {command}: memcached {settings.memcached} cannot be reached: "
                     f"{shown} unavailable (not counted in the total)\n")


def _hits(reader: Reader, args, settings, first: _dt.date, last: _dt.date) -> int:
    from logpipe.history import UNAVAILABLE, hits_range

    rows = hits_range(reader, settings.db, args.url, first, last, site=args.site)
    missing = [row[0] for row in rows if row[2] == UNAVAILABLE]
    total = sum(row[1] for row in rows if row[1])
    if len(rows) == 1 and missing:  # one live day and no memcached: nothing to show
        _outage(args.command, settings, missing)
        return 1
    if args.json:
        print(json.dumps({"url": args.url, "site": args.site, "from": rows[0][0], "to": rows[-1][0],
                          "total": total, "complete": not missing,
                          "days": [{"date": d, "views": n, "visitors": row.visitors, "source": s}
                                   for row in rows for d, n, s in [row]]}))
    elif len(rows) == 1:
        visitors = rows[0].visitors
        print(f"{rows[0][1]} views, {'-' if visitors is None else visitors} unique visitors")
    else:
        print(f"{'day':<10}  {'views':>9}  {'visitors':>9}  source")
        for row in rows:
            d, n, source = row
            print(f"{d}  {'-' if n is None else n:>9}  {'-' if row.visitors is None else row.visitors:>9}  {source}")
        print(f"{'total':<10}  {total:>9}  {'':>9}  {len(rows)} days"
              + (f", {len(missing)} unavailable" if missing else ""))
    if missing:
        _outage(args.command, settings, missing)
        return EXIT_INCOMPLETE
    return 0


def _top_result(reader: Reader, args, settings, first: _dt.date, last: _dt.date):
    from logpipe.history import RangeTop, top_range

    if args.dimension == "post_ip":  # per hour, never rolled up: memcached only, --date as given
        day = args.date or today()
        entries = reader.top("post_ip", day, None, args.site)
        return RangeTop("post_ip", day, day, args.site, rows=[(e.value, e.count) for e in entries][:args.n],
                        total=sum(e.count for e in entries), live_days=[day])
    return top_range(args.dimension, first, last, n=args.n, site=args.site, reader=reader, db=settings.db)


def _period(result) -> str:
    if result.start == result.end or "T" in result.start:
        return result.start
    days = (_dt.date.fromisoformat(result.end) - _dt.date.fromisoformat(result.start)).days + 1
    return f"{result.start}..{result.end} ({days} days)"


def header(result) -> str:
    """The header line of ``logpipe top``: dimension, day(s), site, and where the numbers come from."""
    sources = []
    if result.database_days:
        sources.append(f"{len(result.database_days)} day(s) from the database")
    live = len(result.live_days) - len(result.unavailable_days)
    if live:
        sources.append("today from memcached" if result.live_days == [today()] and live == 1
                       else f"{live} day(s) from memcached")
    if result.unavailable_days:
        sources.append(f"{len(result.unavailable_days)} unavailable")
    if result.missing_days:
        sources.append(f"{len(result.missing_days)} not rolled up")
    site = f"site {result.site}" if result.site else "site (none)"
    return f"top {result.dimension} · {_period(result)} · {site} · " + (", ".join(sources) or "no data")


def _top(reader: Reader, args, settings, first: _dt.date, last: _dt.date) -> int:
    from logpipe.commands.display import shown

    result = _top_result(reader, args, settings, first, last)
    nothing_else = not result.database_days and len(result.unavailable_days) == len(result.live_days)
    if result.unavailable_days and nothing_else:
        _outage(args.command, settings, result.unavailable_days)
        return 1
    if args.json:
        print(json.dumps({"date": result.end, "from": result.start, "to": result.end,
                          "dimension": args.dimension, "site": args.site, "total": result.total,
                          "complete": result.complete, "unavailable_days": result.unavailable_days,
                          "rows": [{"value": v, "count": n} for v, n in result.rows]}))
    else:
        print(header(result))
        if not result.rows:
            print(f"no {args.dimension} counted in {_period(result)}", file=sys.stderr)
        for value, count in result.rows:
            print(f"{count:>9}  {shown(value, args.dimension)}")
        shown_part = f"top {len(result.rows)} shown" if result.rows else "nothing counted"
        if args.dimension == "visitors":  # the site's unique visitors, not the sum of the URLs'
            days = "" if result.start == result.end else ", summed over the days"
            print(f"{result.total:>9}  unique visitors of the site ({shown_part}{days})")
        else:
            print(f"{result.total:>9}  total of every {args.dimension} ({shown_part})")
    if result.unavailable_days:
        _outage(args.command, settings, result.unavailable_days)
        return EXIT_INCOMPLETE
    return 0


def _watch(reader: Reader, args, settings, first: _dt.date, last: _dt.date) -> int:
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    from logpipe.commands.display import shown

    def view() -> Group:
        result = _top_result(reader, args, settings, first, last)
        site = f" · {args.site}" if args.site else ""
        # One line, cut with "…" to the terminal's width (80 columns or fewer): a title
        # wrapped inside a narrow table took three lines.
        title = Text(f"logpipe top {args.dimension} · {_period(result)}{site} · {time.strftime('%H:%M:%S')}"
                     + (" · memcached unavailable" if result.unavailable_days else ""),
                     no_wrap=True, overflow="ellipsis", style="bold")
        grid = Table(show_edge=False)
        grid.add_column("count", justify="right", no_wrap=True)
        grid.add_column(args.dimension, no_wrap=True, overflow="ellipsis")
        for value, count in result.rows:
            grid.add_row(str(count), Text(shown(value, args.dimension)))  # Text: no rich markup
        grid.add_row(str(result.total), Text("total", style="italic"))
        return Group(title, grid)

    try:
        with Live(view(), refresh_per_second=2, screen=False) as live:
            while True:
                time.sleep(1)
                live.update(view())
    except KeyboardInterrupt:
        return 0
