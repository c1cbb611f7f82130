"""Reading the history database back: :class:`History`, :func:`hits_table`, :func:`hits`.

See :mod:`logpipe.history` for the schema and where each day's number comes from.
"""

from __future__ import annotations

import datetime as _dt
from typing import Iterable

from logpipe.history.schema import (DEFAULT_DB, SCHEMA_VERSION, HistoryError, as_day, read_version,
                                    safe_url, short_error, sqlite_missing, counts, db_value, engine_for,
                                    file_days, files)

# -- reading --------------------------------------------------------------------------------


class History:
    """Read the rolled-up counts.  Days are ``YYYY-MM-DD`` strings (or dates); ranges include both ends.

    Args:
        db: a SQLAlchemy URL (``--db``), e.g. ``sqlite:////var/lib/logpipe/logpipe.sqlite3``
            or ``postgresql://user@host/logpipe``.

    A SQLite file that does not exist, or a database that ``logpipe rollup``
    never wrote to, reads as empty (:attr:`available` is False); it is never
    created by reading.

    Errors: methods raise :class:`HistoryError` when the database cannot be
    reached or has a newer schema.
    """

    def __init__(self, db: str = DEFAULT_DB):
        self.url = db
        self._engine = None
        self._available: bool | None = None

    # -- plumbing
    @property
    def engine(self):
        """The SQLAlchemy Engine (created on first use)."""
        if self._engine is None:
            self._engine = engine_for(self.url)
        return self._engine

    @property
    def available(self) -> bool:
        """True when the database exists and has logpipe's tables."""
        if self._available is None:
            if sqlite_missing(self.engine):
                self._available = False
            else:
                def check(connection):
                    version = read_version(connection)
                    if version is not None and version > SCHEMA_VERSION:
                        raise HistoryError(f"the database has schema version {version}; this logpipe "
                                           f"reads up to {SCHEMA_VERSION}: upgrade logpipe")
                    return version is not None
                self._available = self._run(check)
        return self._available

    def _run(self, work):
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as connection:
                return work(connection)
        except HistoryError:
            raise
        except SQLAlchemyError as exc:
            raise HistoryError(f"database {safe_url(self.url)}: {short_error(exc)}") from None

    def _rows(self, statement) -> list:
        if not self.available:
            return []
        return self._run(lambda connection: connection.execute(statement).all())

    def close(self) -> None:
        """Close the database connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @staticmethod
    def _site(statement, site: str | None):
        return statement if site is None else statement.where(counts.c.site == site)

    # -- queries
    def hits(self, path: str, day: str | _dt.date, site: str | None = None, *,
             fold_trailing_slash: bool = True) -> int:
        """Page views of *path* (query string ignored) on *day*, summed over source hosts.

        *site* None means the counters without a site (a LogFormat without ``%v``),
        as :meth:`logpipe.api.Reader.hits` reads them.
        """
        day = as_day(day)
        return self.daily("url", url_value(path, fold_trailing_slash), day, day, site or "").get(day.isoformat(), 0)

    def daily(self, dimension: str, value: str, start, end, site: str | None = "") -> dict[str, int]:
        """``{day: count}`` of one value (as counted, see :func:`db_value`) from *start* to *end*.

        *site*: ``''`` for counters without a site, a vhost name, or None for
        every site together.  Days without a row are absent.
        """
        from sqlalchemy import func, select

        statement = (select(counts.c.day, func.sum(counts.c.count))
                     .where(counts.c.dimension == dimension, counts.c.value == db_value(value),
                            counts.c.day.between(as_day(start), as_day(end)))
                     .group_by(counts.c.day))
        return {d.isoformat(): int(n) for d, n in self._rows(self._site(statement, site))}

    def covered_days(self, start, end) -> set[str]:
        """Days from *start* to *end* for which some rolled-up file had lines."""
        from sqlalchemy import select

        statement = select(file_days.c.day).where(file_days.c.day.between(as_day(start), as_day(end))).distinct()
        return {d.isoformat() for (d,) in self._rows(statement)}

    def totals(self, dimension: str, start, end, site: str | None = None) -> dict[str, int]:
        """``{day: sum of every value of dimension}`` (page views for ``url``, requests for ``status``)."""
        from sqlalchemy import func, select

        statement = (select(counts.c.day, func.sum(counts.c.count))
                     .where(counts.c.dimension == dimension, counts.c.day.between(as_day(start), as_day(end)))
                     .group_by(counts.c.day))
        return {d.isoformat(): int(n) for d, n in self._rows(self._site(statement, site))}

    def top(self, dimension: str, start, end, n: int | None = 10,
            site: str | None = None) -> list[tuple[str, int]]:
        """The *n* most counted values of *dimension* from *start* to *end*: ``[(value, count)]``.

        Ties are ordered by value; *n* None gives every value.
        """
        from sqlalchemy import func, select

        total = func.sum(counts.c.count).label("total")
        statement = (select(counts.c.value, total)
                     .where(counts.c.dimension == dimension, counts.c.day.between(as_day(start), as_day(end)))
                     .group_by(counts.c.value).order_by(total.desc(), counts.c.value))
        statement = self._site(statement, site)
        if n is not None:
            statement = statement.limit(n)
        return [(value, int(count)) for value, count in self._rows(statement)]

    def series(self, dimension: str, values: Iterable[str], start, end,
               site: str | None = None) -> dict[str, dict[str, int]]:
        """``{value: {day: count}}`` for several values of *dimension* (days without a row absent)."""
        from sqlalchemy import func, select

        wanted = list(values)
        if not wanted:
            return {}
        statement = (select(counts.c.value, counts.c.day, func.sum(counts.c.count))
                     .where(counts.c.dimension == dimension, counts.c.value.in_(wanted),
                            counts.c.day.between(as_day(start), as_day(end)))
                     .group_by(counts.c.value, counts.c.day))
        out: dict[str, dict[str, int]] = {v: {} for v in wanted}
        for value, day, count in self._rows(self._site(statement, site)):
            out[value][day.isoformat()] = int(count)
        return out

    def last_day(self) -> str | None:
        """The latest day with rolled-up lines, or None."""
        from sqlalchemy import func, select

        rows = self._rows(select(func.max(file_days.c.day)))
        return rows[0][0].isoformat() if rows and rows[0][0] else None

    def sites(self, start, end) -> list[str]:
        """The sites (``%v``) with counts from *start* to *end*; ``''`` is "no site"."""
        from sqlalchemy import select

        statement = (select(counts.c.site).where(counts.c.day.between(as_day(start), as_day(end)))
                     .distinct().order_by(counts.c.site))
        return [site for (site,) in self._rows(statement)]

    def sources(self, start, end) -> list[dict]:
        """Per source host: days covered from *start* to *end*, files, lines and the last rollup."""
        from sqlalchemy import func, select

        statement = (select(files.c.source_host, func.count(func.distinct(file_days.c.day)),
                            func.count(func.distinct(files.c.id)), func.max(files.c.rolled_up))
                     .join(file_days, file_days.c.file_id == files.c.id)
                     .where(file_days.c.day.between(as_day(start), as_day(end)))
                     .group_by(files.c.source_host).order_by(files.c.source_host))
        return [{"source_host": host, "days": int(days), "files": int(nfiles),
                 "last_rollup": last.isoformat() if last else None}
                for host, days, nfiles, last in self._rows(statement)]


def url_value(path: str, fold_trailing_slash: bool = True) -> str:
    """*path* as the ``url`` dimension stores it: query dropped, normalized (see logpipe.keys)."""
    from logpipe.keys import normalize_path

    return normalize_path(path.split("?", 1)[0], fold_trailing_slash=fold_trailing_slash)
