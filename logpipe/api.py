"""Read logpipe's counters from a web application (Django, Flask, …).

Example, a Django view showing "views today"::

    from logpipe.api import Reader
    counts = Reader("127.0.0.1:11211")          # module level: one per process

    def article(request, slug):
        views = counts.hits_today(request.path)  # '/blog/1/' or '/blog/1'
        ...

The counts lag the requests by about one flush interval (1 s by default).
Keys are built by :mod:`logpipe.keys`, the same code the writer uses, so a path
is looked up exactly as it was counted.
"""

from __future__ import annotations

import datetime as _dt
import time as _time
from dataclasses import dataclass

from logpipe.config import parse_servers
from logpipe.keys import (DEFAULT_PREFIX, counter_key, index_keys, normalize_path, parse_today, today_key,
                          visitors_key)
from logpipe.daemon.store import CounterStore, StoreError

__all__ = ["Reader", "StoreError", "today", "hits_today", "top"]


#: Seconds a :meth:`Reader.today` keeps the writer's ``{prefix}:#today`` before reading it again.
TODAY_REFRESH = 10.0


def today() -> str:
    """Today's date in this process's local time zone, as ``YYYY-MM-DD``.

    Right only when this process has Apache's time zone; :meth:`Reader.today`
    asks the writer instead.
    """
    return _dt.date.today().isoformat()


@dataclass(frozen=True)
class Entry:
    """One row of :meth:`Reader.top`: a counted value and its count."""

    value: str
    count: int


class Reader:
    """Reads counters from the memcached servers logpipe writes to.

    Args:
        servers: ``host:port[,host:port…]`` or a unix socket path — the same
            list, in any order, as logpipe's ``--memcached``.
        prefix: the key prefix (``--prefix``).
        timeout: seconds for connecting and for each request.
        keep_trailing_slash: must match the writer's ``--keep-trailing-slash``.
        time_zone: an IANA zone name (``"Europe/Paris"``) for :meth:`today`
            when no writer has published its day yet; None: this process's
            local date.

    Errors: every method raises :class:`StoreError` when a server that holds
    a needed key cannot be reached (:meth:`today` excepted).
    """

    def __init__(self, servers: str = "127.0.0.1:11211", *, prefix: str = DEFAULT_PREFIX,
                 timeout: float = 1.0, keep_trailing_slash: bool = False, time_zone: str | None = None):
        self.prefix = prefix
        self.fold = not keep_trailing_slash
        self.store = CounterStore(parse_servers(servers), timeout=timeout, connect_timeout=timeout)
        self.zone = None
        if time_zone:
            from zoneinfo import ZoneInfo

            self.zone = ZoneInfo(time_zone)  # ZoneInfoNotFoundError (a KeyError) for an unknown name
        self._published = None  # (date, timezone) from {prefix}:#today
        self._published_read = -1e9

    def today(self) -> str:
        """The day the writer counts in, ``YYYY-MM-DD``: the day whose keys hold "today".

        From the writer's ``{prefix}:#today`` item (the date and UTC offset
        of the newest ``%t``, :func:`logpipe.keys.today_key`), read at most
        every :data:`TODAY_REFRESH` seconds: the later of that date and the
        current date at that UTC offset (a quiet site after midnight).
        Without the item (no line counted yet, a LogFormat without ``%t``,
        memcached unreachable and never read): the current date in
        *time_zone*, else the local date.  Never raises.
        """
        now = _time.monotonic()
        if now - self._published_read >= TODAY_REFRESH:
            self._published_read = now
            key = today_key(self.prefix)
            try:
                blob = self.store.get_many([key]).get(key)
                self._published = parse_today(blob) if blob else None
            except StoreError:
                pass  # memcached down: the day last read, if any
        utc = _dt.datetime.now(_dt.timezone.utc)
        if self._published is not None:
            day, zone = self._published
            return max(day, utc.astimezone(zone).date()).isoformat()
        if self.zone is not None:
            return utc.astimezone(self.zone).date().isoformat()
        return _dt.date.today().isoformat()

    def key(self, dimension: str, value: str, day: str | None = None, site: str | None = None) -> str:
        """The memcached key of one counter (see :func:`logpipe.keys.counter_key`)."""
        if dimension in ("url", "notfound") or (dimension == "visitors" and value != "*"):
            value = normalize_path(value, fold_trailing_slash=self.fold)
        return counter_key(day or self.today(), dimension, value, site=site, prefix=self.prefix)

    def count(self, dimension: str, value: str, day: str | None = None, site: str | None = None) -> int:
        """One counter's value; 0 when it does not exist (no hit yet, or expired)."""
        key = self.key(dimension, value, day, site)
        return self.store.get_counts([key]).get(key, 0)

    def hits_today(self, path: str, site: str | None = None) -> int:
        """Page views of *path* today (:meth:`today`; query string ignored)."""
        return self.count("url", path.split("?", 1)[0], None, site)

    def hits(self, path: str, day: str, site: str | None = None) -> int:
        """Page views of *path* on *day* (``YYYY-MM-DD``) while memcached still has it."""
        return self.count("url", path.split("?", 1)[0], day, site)

    def visitors_today(self, path: str | None = None, site: str | None = None) -> int:
        """Unique visitors today: of the whole site (*path* None), or of one URL
        path (query string ignored).  A visitor is one (client address,
        User-Agent) pair per day on page views (README, "Unique visitors")."""
        return self.visitors(path, None, site)

    def visitors(self, path: str | None, day: str | None, site: str | None = None) -> int:
        """Unique visitors of *path* (None: the whole site) on *day* (``YYYY-MM-DD``,
        default today) while memcached still has it; 0 when none."""
        key = visitors_key(day or self.today(), path, site=site, prefix=self.prefix, fold_trailing_slash=self.fold)
        return self.store.get_counts([key]).get(key, 0)

    def posts_last_hour(self, ip: str, now: _dt.datetime | None = None) -> int:
        """POST requests from *ip* in the current and the previous clock hour.

        For comment anti-spam: ``if reader.posts_last_hour(ip) >= 5: reject``.
        Counts arrive about one flush interval after the requests; behind a
        reverse proxy, log the client address (``%{X-Forwarded-For}i`` or
        mod_remoteip's ``%a``) so *ip* is the visitor's.
        """
        now = now or _dt.datetime.now()
        hours = [now, now - _dt.timedelta(hours=1)]
        keys = [counter_key(h.strftime("%Y-%m-%dT%H"), "post_ip", ip, prefix=self.prefix) for h in hours]
        return sum(self.store.get_counts(keys).values())

    def values(self, dimension: str, day: str | None = None, site: str | None = None) -> list[str]:
        """Every value counted for *dimension* on *day* (default :meth:`today`), from the per-day index."""
        day = day or self.today()
        blobs = self.store.get_many(index_keys(day, dimension, site=site, prefix=self.prefix))
        seen: dict[str, None] = {}
        for blob in blobs.values():
            for value in blob.decode("utf-8", "surrogateescape").split("\n"):
                if value:
                    seen[value] = None
        return list(seen)

    def top(self, dimension: str = "url", day: str | None = None, n: int | None = 10,
            site: str | None = None) -> list[Entry]:
        """The *n* most counted values of *dimension* on *day* (all when *n* is None;
        *day* default :meth:`today`).

        Exact counts, from any number of writers: the values come from the
        day's index and each count from its own counter.  ``visitors`` ranks
        URLs by unique visitors (values from the ``url`` index).
        """
        day = day or self.today()
        # visitors per URL have no index of their own: every such URL has url views that day.
        values = self.values("url" if dimension == "visitors" else dimension, day, site)
        keys = {counter_key(day, dimension, v, site=site, prefix=self.prefix): v for v in values}
        counts = self.store.get_counts(list(keys))
        rows = sorted((Entry(keys[k], c) for k, c in counts.items()), key=lambda e: (-e.count, e.value))
        return rows if n is None else rows[:n]

    def close(self) -> None:
        """Close the connections."""
        self.store.close()


def hits_today(path: str, servers: str = "127.0.0.1:11211", **options) -> int:
    """Page views of *path* today — a one-call shortcut for :meth:`Reader.hits_today`."""
    reader = Reader(servers, **{k: v for k, v in options.items() if k != "site"})
    try:
        return reader.hits_today(path, site=options.get("site"))
    finally:
        reader.close()


def top(dimension: str = "url", n: int = 10, servers: str = "127.0.0.1:11211", **options) -> list[Entry]:
    """Today's top values of *dimension* — a shortcut for :meth:`Reader.top`."""
    site = options.pop("site", None)
    day = options.pop("day", None)
    reader = Reader(servers, **options)
    try:
        return reader.top(dimension, day, n, site)
    finally:
        reader.close()
