"""Counts for web pages, shared by the Django app (:mod:`logpipe.django`) and the
Flask extension (:mod:`logpipe.flask`): settings, one reader per process, and
reads that never raise.

A page template must render when memcached is down: every read here returns
``None`` (a count) or ``[]`` (a list) instead of raising, logs one warning per
outage on the ``logpipe.web`` logger, and does not try memcached again for
:data:`RETRY_SECONDS` (a page listing fifty objects must not wait fifty
timeouts).  Imports no web framework.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from logpipe.config import ConfigError, Settings, parse_servers
from logpipe.daemon.store import StoreError

__all__ = ["DEFAULTS", "Day", "Page", "PageCounts", "path_of", "options_from", "RETRY_SECONDS"]

log = logging.getLogger("logpipe.web")

_CLI = Settings()  # the command line's defaults

#: The settings (Django's ``LOGPIPE``, Flask's ``app.config["LOGPIPE"]``), with
#: the command line's defaults and meaning: ``MEMCACHED`` is ``--memcached``,
#: ``DB`` ``--db``, ``PREFIX`` ``--prefix``, ``SITE`` ``--site`` (the ``%v``
#: virtual host, None without one); ``TIME_ZONE`` the IANA zone of Apache's
#: ``%t`` used before a writer has published its day (None: the local date);
#: ``TIMEOUT`` seconds per memcached request; ``DAYS`` how many days ``hits``
#: covers; ``KEEP_TRAILING_SLASH`` as ``--keep-trailing-slash``.
DEFAULTS: dict[str, Any] = {
    "MEMCACHED": _CLI.memcached,    # 127.0.0.1:11211
    "DB": _CLI.db,                  # sqlite:////var/lib/logpipe/logpipe.sqlite3
    "PREFIX": _CLI.prefix,          # logpipe
    "SITE": None,
    "TIME_ZONE": None,
    "TIMEOUT": _CLI.timeout,        # 0.5 s
    "DAYS": 30,
    "KEEP_TRAILING_SLASH": _CLI.keep_trailing_slash,
}
#: Seconds without memcached reads after one failed.
RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Day:
    """One day of a page's history (:meth:`PageCounts.history`).

    Attributes:
        date: the day (a ``datetime.date``), as the request's ``%t`` has it.
        views: page views; None when its source (memcached) could not be read.
        source: ``"memcached"`` (today, or yesterday before its rollup), ``"database"``, or
            ``"unavailable"`` (a live day while memcached cannot be read; views None).
        visitors: unique visitors, when logpipe counts them for that day, else None.
    """

    date: _dt.date
    views: int | None
    source: str
    visitors: int | None = None


@dataclass(frozen=True)
class Page:
    """One row of :meth:`PageCounts.top_pages`: a URL path and its page views today."""

    path: str
    views: int


def path_of(target: Any) -> str:
    """The URL path of *target*: a str itself, else ``target.get_absolute_url()``.

    Raises:
        TypeError: *target* is neither.
    """
    if isinstance(target, str):
        return target
    url = getattr(target, "get_absolute_url", None)
    if url is None:
        raise TypeError(f"expected a URL path or an object with get_absolute_url(), got {type(target).__name__}")
    return url()


def options_from(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """:data:`DEFAULTS` updated with *settings*, checked.

    Raises:
        ConfigError: an unknown key, a bad ``MEMCACHED`` list, an unknown
            ``TIME_ZONE``, or a ``TIMEOUT``/``DAYS`` that is not positive.
    """
    options = dict(DEFAULTS)
    if settings is not None:
        if not isinstance(settings, Mapping):
            raise ConfigError(f"LOGPIPE must be a dict, not {type(settings).__name__}")
        unknown = sorted(set(settings) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"LOGPIPE: unknown key(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
        options.update(settings)
    parse_servers(str(options["MEMCACHED"]))
    if options["TIME_ZONE"]:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(options["TIME_ZONE"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"LOGPIPE TIME_ZONE: unknown time zone {options['TIME_ZONE']!r}") from exc
    for name in ("TIMEOUT", "DAYS"):
        if not isinstance(options[name], (int, float)) or options[name] <= 0:
            raise ConfigError(f"LOGPIPE {name} must be a positive number, got {options[name]!r}")
    return options


class PageCounts:
    """Reads for web pages from one set of settings; safe to share between threads.

    Args:
        settings: a ``LOGPIPE`` dict (keys of :data:`DEFAULTS`; missing keys
            take the defaults).

    The :class:`logpipe.api.Reader` and the :class:`logpipe.history.History`
    are made on first use; calls are serialised by a lock (pymemcache's
    client is not thread-safe; a memcached ``get`` is about 0.1 ms).

    Raises:
        ConfigError: from :func:`options_from`.
    """

    def __init__(self, settings: Mapping[str, Any] | None = None):
        self.options = options_from(settings)
        self._lock = threading.RLock()
        self._reader = None
        self._history = None
        self._retry_at = 0.0
        self._down: set[str] = set()  # the parts ("memcached", "database") reported as failing

    # -- plumbing -------------------------------------------------------------
    @property
    def reader(self):
        """The :class:`logpipe.api.Reader` (made on first use)."""
        if self._reader is None:
            from logpipe.api import Reader

            o = self.options
            self._reader = Reader(str(o["MEMCACHED"]), prefix=o["PREFIX"], timeout=float(o["TIMEOUT"]),
                                  keep_trailing_slash=bool(o["KEEP_TRAILING_SLASH"]), time_zone=o["TIME_ZONE"])
        return self._reader

    @property
    def history_db(self):
        """The :class:`logpipe.history.History` of ``DB`` (made on first use)."""
        if self._history is None:
            from logpipe.history import History

            self._history = History(str(self.options["DB"]))
        return self._history

    @property
    def has_visitors(self) -> bool:
        """True when this logpipe's Reader counts unique visitors (``Reader.visitors_today``)."""
        from logpipe.api import Reader

        return hasattr(Reader, "visitors_today")

    def _safely(self, work: Callable[[], Any], fallback: Any, *, memcached: bool = True,
                database: bool = False) -> Any:
        """Run *work*; on a StoreError log once per outage, back off, return *fallback*.

        *memcached*, *database*: what *work* reads.  While memcached backs off
        (:data:`RETRY_SECONDS` after a failure) work that reads it is skipped;
        a success ends the outage of what it read (logged at INFO).
        """
        from logpipe.history import HistoryError

        with self._lock:
            if memcached and time.monotonic() < self._retry_at:
                return fallback
            try:
                result = work()
            except StoreError as exc:
                part = "database" if isinstance(exc, HistoryError) else "memcached"
                if part == "memcached":
                    self._retry_at = time.monotonic() + RETRY_SECONDS
                if part not in self._down:
                    self._down.add(part)
                    log.warning("logpipe: %s cannot be read, counts show as unknown: %s", part, exc)
                return fallback
            for part, used in (("memcached", memcached), ("database", database)):
                if used and part in self._down:
                    self._down.discard(part)
                    log.info("logpipe: %s can be read again", part)
            return result

    def close(self) -> None:
        """Close the connections (they are made again on the next read)."""
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._history is not None:
                self._history.close()
                self._history = None

    # -- reads ------------------------------------------------------------------
    def today(self) -> str:
        """The day logpipe counts in, ``YYYY-MM-DD`` (:meth:`logpipe.api.Reader.today`)."""
        with self._lock:
            return self.reader.today()

    def views_today(self, target: Any) -> int | None:
        """Today's page views of *target* (a path or an object with ``get_absolute_url``);
        0 when nobody came, None when memcached cannot be read."""
        path = path_of(target)
        return self._safely(lambda: self.reader.hits_today(path, site=self.options["SITE"]), None)

    def visitors_today(self, target: Any = None) -> int | None:
        """Today's unique visitors of *target* (None: the whole site); None when
        memcached cannot be read or this logpipe does not count visitors."""
        if not self.has_visitors:
            return None
        path = None if target is None else path_of(target)
        site = self.options["SITE"]
        if site is None:
            return self._safely(lambda: self.reader.visitors_today(path), None)
        return self._safely(lambda: self.reader.visitors_today(path, site=site), None)

    def top_pages(self, n: int = 10) -> list[Page]:
        """Today's *n* most viewed URL paths, most viewed first; [] when memcached cannot be read."""
        rows = self._safely(lambda: self.reader.top("url", None, int(n), self.options["SITE"]), [])
        return [Page(row.value, row.count) for row in rows]

    def history(self, target: Any, days: int | None = None) -> list[Day]:
        """*target*'s page views per day for the last *days* days (``DAYS`` by default),
        **newest first**, including today.

        Today (and yesterday until ``logpipe rollup`` stored it) come from
        memcached, earlier days from the rollup database
        (:func:`logpipe.history.hits_table`); days that neither has are left
        out.  memcached down: those days have ``views`` None; database down:
        today alone.  ``visitors`` comes from the same source, where logpipe
        counts unique visitors.
        """
        from logpipe.history import hits_table

        path = path_of(target)
        days = int(days or self.options["DAYS"])
        site = self.options["SITE"]
        today = self.today()

        def table(reader):
            return hits_table(reader, "", path, today, days, site, today=today, history=self.history_db)

        def with_visitors(rows):  # (day, views, source, visitors): rows have .visitors once visitors are counted
            return [(row[0], row[1], row[2], getattr(row, "visitors", None)) for row in rows]

        rows = self._safely(lambda: with_visitors(table(self.reader)), None, database=True)
        if rows is None:  # memcached or the database failed
            rows = self._safely(lambda: with_visitors(table(None)), None, memcached=False, database=True)
            rows = rows or [(today, 0, "none", None)]
            yesterday = (_dt.date.fromisoformat(today) - _dt.timedelta(days=1)).isoformat()
            rows = [(today, self.views_today(path), "memcached", self.visitors_today(path)) if d == today and s == "none"
                    else (d, None, "memcached", None) if d == yesterday and s == "none" else (d, n, s, v)
                    for d, n, s, v in rows]
        return [Day(_dt.date.fromisoformat(d), n, s, v) for d, n, s, v in reversed(rows) if s != "none"]

    def ping(self, timeout: float = 0.5) -> dict[str, str | None]:
        """``{server: None or the error}`` for each memcached server, with a fresh connection."""
        from logpipe.daemon.store import CounterStore

        store = CounterStore(parse_servers(str(self.options["MEMCACHED"])), timeout=timeout,
                             connect_timeout=timeout)
        try:
            return {name: None if entry["ok"] else entry["error"] for name, entry in store.ping().items()}
        finally:
            store.close()
