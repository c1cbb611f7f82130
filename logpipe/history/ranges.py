"""Date ranges over the database and memcached: :func:`hits_range`, :func:`top_range`, :func:`hits`.

A range's finished days come from the history database (``logpipe rollup``),
its live days (today, and yesterday until it is rolled up) from memcached
(:func:`live_days`).  When memcached cannot be read, the live days are
*unavailable* (None, never 0) and the database's days are still returned: no
exception for the outage (issue 13.3).  ``logpipe hits`` and ``logpipe top``
with ``--from/--to/--days`` and ``logpipe report`` read through here.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from logpipe.daemon.store import StoreError
from logpipe.history.reads import History, url_value
from logpipe.history.schema import DEFAULT_DB, as_day, db_value
from logpipe.keys import ALL_VISITORS

__all__ = ["UNAVAILABLE", "DayHits", "day_range", "live_days", "hits_range", "hits_table", "hits", "top_range",
           "RangeTop"]

#: ``source`` of a day whose number lives in memcached while memcached cannot be read:
#: its views are None ("unavailable"), never 0.
UNAVAILABLE = "unavailable"


def day_range(start=None, end=None, days: int | None = None, *, today=None) -> tuple[_dt.date, _dt.date]:
    """``(first, last)`` dates from a range or its short form, both ends included.

    *start*/*end* are dates or ``YYYY-MM-DD``; *end* defaults to *today* (default:
    the local date, as ``%t`` has it); *days* N means the N days ending with *end*
    and may not be combined with *start*.  One day when only *end* is given.

    Raises:
        ValueError: a bad date, *days* < 1, both *start* and *days*, or *start* after *end*.
    """
    last = as_day(end) if end is not None else (as_day(today) if today else _dt.date.today())
    if days is not None:
        if start is not None:
            raise ValueError("give either --from or --days, not both")
        if days < 1:
            raise ValueError("--days must be 1 or more")
        return last - _dt.timedelta(days=days - 1), last
    first = as_day(start) if start is not None else last
    if first > last:
        raise ValueError(f"--from {first} is after --to {last}")
    return first, last


def live_days(first: _dt.date, last: _dt.date, now: _dt.date, covered: set[str]) -> list[_dt.date]:
    """The days from *first* to *last* whose number is read from memcached.

    Today (and later), and yesterday while no rollup covers it yet (its
    counters live 24 hours).  Always the range's last days: the database is
    read for the days before them.
    """
    yesterday = now - _dt.timedelta(days=1)
    out = []
    day = first
    while day <= last:
        if day >= now or (day == yesterday and day.isoformat() not in covered):
            out.append(day)
        day += _dt.timedelta(days=1)
    return out


class DayHits(tuple):
    """One row of :func:`hits_range`: the tuple ``(day, views, source)``, plus
    ``.visitors`` (the URL's unique visitors that day, None when not counted)."""

    def __new__(cls, day: str, views: int | None, source: str, visitors: int | None = None):
        row = super().__new__(cls, (day, views, source))
        row.visitors = visitors
        return row


def hits_range(reader, db_url: str, url: str, start, end, site: str | None = None, *,
               today: str | None = None, history: "History | None" = None) -> list[tuple[str, int | None, str]]:
    """One URL's page views per day from *start* to *end*: ``[(day, views, source)]``, oldest first.

    Each row is a :class:`DayHits`: its ``.visitors`` holds the URL's unique
    visitors from the same source (None when unavailable or not counted).

    Where each day's number comes from (*source*):

    * ``"memcached"``: today (and later), read with ``reader.hits``; also
      yesterday while no rollup covers it yet (its counters live 24 hours);
    * ``"unavailable"``: such a day while memcached cannot be read (or *reader*
      is None): *views* is None, not 0.  The outage raises nothing: the
      database's days are still returned (issue 13.3);
    * ``"database"``: an earlier day that ``logpipe rollup`` stored, summed over
      every source host (0 when the URL had no views that day);
    * ``"none"``: an earlier day with no rollup (0).

    Args:
        reader: a :class:`logpipe.api.Reader`, or None (no memcached).
        db_url: the ``--db`` SQLAlchemy URL.
        url: the path; the query string is ignored, the path normalized as the writer does.
        start, end: the first and last day (``YYYY-MM-DD`` or dates), both included.
        site: the vhost (``%v``), or None for counters without one.
        today: today's date (default: the local date, as ``%t`` has it).
        history: an open :class:`History` to reuse (then *db_url* is not used);
            web applications keep one instead of connecting on every call.

    Raises:
        ValueError: a bad date, or *start* after *end*.
        HistoryError: the database cannot be read.
    """
    first, last = day_range(start, end)
    now = as_day(today) if today else _dt.date.today()
    value = url_value(url, getattr(reader, "fold", True))
    own = history is None
    if history is None:
        history = History(db_url)
    try:
        stored: dict[str, int] = {}
        stored_visitors: dict[str, int] = {}
        covered: set[str] = set()
        if first < now:
            stored = history.daily("url", value, first, min(last, now), site or "")
            stored_visitors = history.daily("visitors", value, first, min(last, now), site or "")
            covered = history.covered_days(first, min(last, now))
    finally:
        if own:
            history.close()
    live = set(live_days(first, last, now, covered))
    rows: list[DayHits] = []
    down = reader is None
    current = first
    while current <= last:
        name = current.isoformat()
        if current in live:
            views = visitors = None
            if not down:
                try:
                    views = int(reader.hits(url, name, site=site))
                    visitors = int(reader.visitors(url, name, site=site))
                except StoreError:
                    down = True  # one timeout, not one per day
            rows.append(DayHits(name, views, "memcached" if views is not None else UNAVAILABLE, visitors))
        elif name in covered:
            rows.append(DayHits(name, stored.get(name, 0), "database", stored_visitors.get(name, 0)))
        else:
            rows.append(DayHits(name, 0, "none"))
        current += _dt.timedelta(days=1)
    return rows


def hits_table(reader, db_url: str, url: str, day: str, days: int, site: str | None = None, *,
               today: str | None = None, history: "History | None" = None) -> list[tuple[str, int | None, str]]:
    """One URL's page views for *days* days ending with *day*: :func:`hits_range`'s rows.

    Raises:
        ValueError: a bad date or *days* < 1.
        HistoryError: the database cannot be read.
    """
    first, last = day_range(end=day, days=days)
    return hits_range(reader, db_url, url, first, last, site, today=today, history=history)


def hits(path: str, days: int | None = 30, *, day: str | None = None, start: str | None = None,
         end: str | None = None, servers: str | None = "127.0.0.1:11211", db: str = DEFAULT_DB,
         site: str | None = None, prefix: str = "logpipe", timeout: float = 1.0,
         history: "History | None" = None) -> list[tuple[str, int | None, str]]:
    """Page views of *path* per day, today from memcached and earlier days from the database.

    What ``logpipe hits PATH --days N --json`` (or ``--from D --to D``) prints,
    as ``[(day, views, source)]`` oldest first (see :func:`hits_range`): the
    *days* days ending with *day* (default today), or *start* to *end* when
    *start* is given.  *servers* None reads the database only.

    While memcached cannot be reached nothing is raised: today's row (and
    yesterday's, when not rolled up yet) is ``(day, None, "unavailable")`` and
    the database's days are there.  ``sum(v for _, v, _ in rows if v)`` is the
    range's total.

    Raises:
        ValueError: a bad date or range.
        HistoryError: the database cannot be read.
    """
    if start is not None:
        first, last = day_range(start, end or day)
    else:
        first, last = day_range(end=end or day, days=days or 1)
    reader = None
    if servers:
        from logpipe.api import Reader

        reader = Reader(servers, prefix=prefix, timeout=timeout)
    try:
        return hits_range(reader, db, path, first, last, site, history=history)
    finally:
        if reader is not None:
            reader.close()


@dataclass
class RangeTop:
    """The most counted values of one dimension over a date range (:func:`top_range`).

    Attributes:
        dimension, start, end, site: what was asked (days ``YYYY-MM-DD``).
        rows: ``[(value, count)]``, most counted first, ties by value; values as
            stored (encoded, see :func:`logpipe.history.db_value`): show them
            with :func:`logpipe.commands.display.shown`.
        total: every value's count summed over the days read (not only *rows*).
        database_days, live_days: days read from the database and from memcached.
        unavailable_days: live days memcached could not give (not in *total*).
        missing_days: finished days that no rollup covered (nothing to add).
    """

    dimension: str
    start: str
    end: str
    site: str | None
    rows: list = field(default_factory=list)
    total: int = 0
    database_days: list = field(default_factory=list)
    live_days: list = field(default_factory=list)
    unavailable_days: list = field(default_factory=list)
    missing_days: list = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """False when some live day was unavailable (memcached could not be read)."""
        return not self.unavailable_days


#: Values per SQL ``IN (…)`` when looking up live values in the database.
_IN_CHUNK = 500


def top_range(dimension: str, start, end, *, n: int | None = 10, site: str | None = None,
              reader=None, history: History | None = None, db: str = DEFAULT_DB,
              today=None, sites: list[str] | None = None) -> RangeTop:
    """The *n* most counted values of *dimension* from *start* to *end*, database and memcached summed.

    Finished days come from the database (every source host), live days
    (:func:`live_days`) from memcached through *reader*.  The sum is exact:
    the top *n* of the sum is among the database's top *n* and the values
    memcached counted on the live days, whose database counts are looked up.

    Args:
        dimension: ``url``, ``referrer_host``, … (``post_ip`` is not rolled up).
        start, end: first and last day, both included (dates or ``YYYY-MM-DD``).
        n: how many rows; None for every value.
        site: the vhost (``%v``); None for the counters without one, as
            :meth:`logpipe.api.Reader.top` reads them.
        reader: a :class:`logpipe.api.Reader`, or None (live days unavailable).
        history: an open :class:`History`; else *db* is opened and closed.
        today: today's date (default: the local date).
        sites: read these sites together instead of *site* (the report's "every
            site": the database's ``site`` None, memcached once per site).

    Raises:
        ValueError: a bad date or range.
        HistoryError: the database cannot be read (a memcached outage raises nothing).
    """
    first, last = day_range(start, end)
    now = as_day(today) if today else _dt.date.today()
    result = RangeTop(dimension, first.isoformat(), last.isoformat(), site)
    own = history is None
    if history is None:
        history = History(db)
    db_site = None if sites is not None else (site or "")
    live_sites = sites if sites is not None else [site]
    try:
        covered = history.covered_days(first, min(last, now)) if first < now else set()
        live = live_days(first, last, now, covered)
        result.live_days = [d.isoformat() for d in live]
        db_last = (live[0] - _dt.timedelta(days=1)) if live else last
        day = first
        while day <= db_last:
            (result.database_days if day.isoformat() in covered else result.missing_days).append(day.isoformat())
            day += _dt.timedelta(days=1)
        counted: dict[str, int] = {}
        for day in live:
            try:
                if reader is None:
                    raise StoreError("no memcached")
                for one_site in live_sites:
                    for entry in reader.top(dimension, day.isoformat(), None, one_site or None):
                        value = db_value(entry.value)
                        counted[value] = counted.get(value, 0) + entry.count
            except StoreError:
                result.unavailable_days = [d.isoformat() for d in live if d >= day]
                break
        result.total = sum(counted.values())
        if result.database_days:
            rows = history.top(dimension, first, db_last, n, db_site)
            result.total += sum(history.totals(dimension, first, db_last, db_site).values())
            stored = dict(rows)
            others = [v for v in counted if v not in stored]
            for i in range(0, len(others), _IN_CHUNK):
                for value, per_day in history.series(dimension, others[i:i + _IN_CHUNK], first, db_last,
                                                     db_site).items():
                    stored[value] = sum(per_day.values())
            for value, count in stored.items():
                counted[value] = counted.get(value, 0) + count
    finally:
        if own:
            history.close()
    if dimension == "visitors":
        # "*" is the site's unique visitors, not a URL: the total, not a row; summing the URLs'
        # visitors would count a visitor of several pages several times (README, "Unique visitors").
        result.total = counted.pop(ALL_VISITORS, 0)
        read = [d for d in result.live_days if d not in result.unavailable_days]
        try:
            result.total += sum(reader.visitors(None, day, one_site or None) for day in read for one_site in live_sites)
        except StoreError:
            result.unavailable_days = sorted(set(result.unavailable_days) | set(read))
    rows = sorted(counted.items(), key=lambda item: (-item[1], item[0]))
    result.rows = rows if n is None else rows[:n]
    return result
