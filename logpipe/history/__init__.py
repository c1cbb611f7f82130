"""History: the database that ``logpipe rollup`` fills, and reading it back.

memcached keeps a day's counters for 24 hours; ``logpipe rollup`` stores each
finished day in a database through SQLAlchemy (SQLite by default, PostgreSQL
for several web servers).  This module owns the schema and the read side:
``logpipe hits URL --days N`` (:func:`hits_table`), ``logpipe report`` and web
applications (:class:`History`, :func:`hits`)::

    from logpipe.history import hits
    for day, views, source in hits("/blog/1/", days=30, db="sqlite:////var/lib/logpipe/logpipe.sqlite3"):
        ...

Schema (version 1, kept in ``schema_version``; created and migrated by
:func:`ensure_schema`, which ``logpipe rollup`` calls)::

    files      id PK, source_host, fingerprint, path, lines, rejected,
               first_day, last_day, rolled_up, logpipe_version
               UNIQUE (source_host, fingerprint)
    file_days  file_id → files.id, day, requests, page_views     PK (file_id, day)
    counts     day, source_host, file_id → files.id, site, dimension, value, count
               PK (file_id, day, dimension, site, value)

One row of ``files`` is one raw log file rolled up by one source host; its
*fingerprint* is the SHA-256 of the file's first line, so the same file is
recognised under another name (``access.log.1`` → ``access.log.2.gz``) and
while it grows.  ``counts`` holds that file's per-day counts: a file for day D
may also hold a few lines of D-1 (requests that finished after midnight), and
those are rows of day D-1 under the D file.  A day's number is the sum over
every file and every source host.  Re-running a file replaces all of its rows
in one transaction (delete by ``file_id``, insert): never added twice.
``site`` is ``''`` when the LogFormat has no ``%v``.  ``day`` is the date of
the request's ``%t``.  Values longer than 1000 UTF-8 bytes are stored cut, with
a digest (:func:`db_value`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from typing import Iterable

from logpipe.daemon.store import StoreError

__all__ = ["SCHEMA_VERSION", "DEFAULT_DB", "HistoryError", "History", "hits_table", "hits", "url_value", "DayHits",
           "ensure_schema", "engine_for", "db_value", "metadata", "counts", "files", "file_days",
           "schema_version"]

#: The schema version this logpipe writes and reads.
SCHEMA_VERSION = 1
#: ``--db`` default (Settings.db).
DEFAULT_DB = "sqlite:////var/lib/logpipe/logpipe.sqlite3"
#: Values longer than this many UTF-8 bytes are stored cut (index entries stay small).
MAX_VALUE_BYTES = 1000
_PG_LOCK_KEY = 0x6C6F6770  # "logp": serialises schema changes between hosts


class HistoryError(StoreError):
    """The history database cannot be used (unreachable, or a schema from a newer logpipe).

    A :class:`~logpipe.daemon.store.StoreError`, so callers that already report
    memcached errors report this one the same way.
    """


# -- schema ---------------------------------------------------------------------------------

from sqlalchemy import (BigInteger, Column, Date, DateTime, ForeignKey, Index, Integer,  # noqa: E402
                        MetaData, PrimaryKeyConstraint, String, Table, Text, UniqueConstraint)

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, nullable=False),
    Column("updated", DateTime(timezone=True)),
)

files = Table(
    "files", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_host", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("path", Text),
    Column("lines", BigInteger, nullable=False, default=0),
    Column("rejected", BigInteger, nullable=False, default=0),
    Column("first_day", Date),
    Column("last_day", Date),
    Column("rolled_up", DateTime(timezone=True)),
    Column("logpipe_version", String(32)),
    UniqueConstraint("source_host", "fingerprint", name="uq_files_source_fingerprint"),
)

file_days = Table(
    "file_days", metadata,
    Column("file_id", Integer, ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    Column("day", Date, nullable=False),
    Column("requests", BigInteger),
    Column("page_views", BigInteger),
    PrimaryKeyConstraint("file_id", "day", name="pk_file_days"),
    Index("ix_file_days_day", "day"),
)

counts = Table(
    "counts", metadata,
    Column("day", Date, nullable=False),
    Column("source_host", String(255), nullable=False),
    Column("file_id", Integer, ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    Column("site", String(255), nullable=False),
    Column("dimension", String(32), nullable=False),
    Column("value", Text, nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("file_id", "day", "dimension", "site", "value", name="pk_counts"),
    Index("ix_counts_value", "dimension", "site", "value", "day"),
    Index("ix_counts_day", "day", "dimension", "site"),
)

#: Migrations: ``version n → n + 1`` functions taking a Connection (none yet).
_MIGRATIONS: dict[int, object] = {}


def db_value(value: str) -> str:
    """A counted value as stored in ``counts.value``.

    NUL characters become U+FFFD (PostgreSQL text cannot hold them); text
    longer than 1000 UTF-8 bytes is cut at 960 bytes and ends with ``…#`` and
    16 hex digits of its SHA-256, so long values stay distinct and index
    entries small.  Look values up through this function.
    """
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from surrogateescape
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raw = value.encode("utf-8")
    if len(raw) <= MAX_VALUE_BYTES:
        return value
    head = raw[:MAX_VALUE_BYTES - 40].decode("utf-8", "ignore")
    return f"{head}…#{hashlib.sha256(raw).hexdigest()[:16]}"


def engine_for(url: str, *, write: bool = False):
    """A SQLAlchemy Engine for ``--db`` *url*.

    ``postgresql://`` uses psycopg 3 unless psycopg2 is installed.  For SQLite
    the parent directory is created when *write*; each transaction starts with
    ``BEGIN IMMEDIATE`` when *write* (one writer at a time, no lock upgrade
    failures) or ``BEGIN`` otherwise, and waits up to 60 s for a lock.

    Raises:
        HistoryError: the URL cannot be parsed or names no installed driver.
    """
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            try:
                import psycopg2  # noqa: F401
            except ImportError:
                parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_backend_name() != "sqlite":
            return create_engine(parsed, pool_pre_ping=True)
        database = parsed.database
        if write and database and database != ":memory:":
            directory = os.path.dirname(os.path.abspath(database))
            os.makedirs(directory, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 60})
    except HistoryError:
        raise
    except Exception as exc:  # ArgumentError, NoSuchModuleError, ImportError, OSError
        raise HistoryError(f"--db {_safe_url(url)}: {exc}") from None
    begin = "BEGIN IMMEDIATE" if write else "BEGIN"

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):  # pragma: no cover - driver callback
        dbapi_connection.isolation_level = None  # we send BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):  # pragma: no cover - driver callback
        connection.exec_driver_sql(begin)

    return engine


def _safe_url(url: str) -> str:
    """*url* without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


def _sqlite_missing(engine) -> bool:
    """True for a SQLite file that does not exist (reading must not create it)."""
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database
    return bool(database) and database != ":memory:" and not os.path.exists(database)


def _read_version(connection) -> int | None:
    from sqlalchemy import inspect, select

    if not inspect(connection).has_table("schema_version"):
        return None
    row = connection.execute(select(schema_version.c.version)).first()
    return None if row is None else int(row[0])


def ensure_schema(engine) -> int:
    """Create the tables, or migrate them to :data:`SCHEMA_VERSION`; return the version.

    Safe when several hosts run it at once on one PostgreSQL (a transaction
    advisory lock), and on SQLite (``BEGIN IMMEDIATE``).

    Raises:
        HistoryError: the database has a newer schema than this logpipe
            knows, or cannot be reached.
    """
    from sqlalchemy import delete, insert
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                from sqlalchemy import text

                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            version = _read_version(connection)
            if version is None:
                metadata.create_all(connection)
                version = SCHEMA_VERSION
            elif version > SCHEMA_VERSION:
                raise HistoryError(f"the database has schema version {version}; this logpipe knows "
                                   f"up to {SCHEMA_VERSION}: upgrade logpipe")
            else:
                while version < SCHEMA_VERSION:
                    _MIGRATIONS[version](connection)  # type: ignore[operator]
                    version += 1
            connection.execute(delete(schema_version))
            connection.execute(insert(schema_version).values(
                version=version, updated=_dt.datetime.now(_dt.timezone.utc)))
            return version
    except HistoryError:
        raise
    except SQLAlchemyError as exc:
        raise HistoryError(f"database {_safe_url(str(engine.url))}: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    """The first line of a database error, without SQLAlchemy's background link."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def _day(value: str | _dt.date) -> _dt.date:
    if isinstance(value, _dt.date):
        return value
    try:
        return _dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from None


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
            if _sqlite_missing(self.engine):
                self._available = False
            else:
                def check(connection):
                    version = _read_version(connection)
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
            raise HistoryError(f"database {_safe_url(self.url)}: {_short(exc)}") from None

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
        day = _day(day)
        return self.daily("url", url_value(path, fold_trailing_slash), day, day, site or "").get(day.isoformat(), 0)

    def daily(self, dimension: str, value: str, start, end, site: str | None = "") -> dict[str, int]:
        """``{day: count}`` of one value (as counted, see :func:`db_value`) from *start* to *end*.

        *site*: ``''`` for counters without a site, a vhost name, or None for
        every site together.  Days without a row are absent.
        """
        from sqlalchemy import func, select

        statement = (select(counts.c.day, func.sum(counts.c.count))
                     .where(counts.c.dimension == dimension, counts.c.value == db_value(value),
                            counts.c.day.between(_day(start), _day(end)))
                     .group_by(counts.c.day))
        return {d.isoformat(): int(n) for d, n in self._rows(self._site(statement, site))}

    def covered_days(self, start, end) -> set[str]:
        """Days from *start* to *end* for which some rolled-up file had lines."""
        from sqlalchemy import select

        statement = select(file_days.c.day).where(file_days.c.day.between(_day(start), _day(end))).distinct()
        return {d.isoformat() for (d,) in self._rows(statement)}

    def totals(self, dimension: str, start, end, site: str | None = None) -> dict[str, int]:
        """``{day: sum of every value of dimension}`` (page views for ``url``, requests for ``status``)."""
        from sqlalchemy import func, select

        statement = (select(counts.c.day, func.sum(counts.c.count))
                     .where(counts.c.dimension == dimension, counts.c.day.between(_day(start), _day(end)))
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
                     .where(counts.c.dimension == dimension, counts.c.day.between(_day(start), _day(end)))
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
                            counts.c.day.between(_day(start), _day(end)))
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

        statement = (select(counts.c.site).where(counts.c.day.between(_day(start), _day(end)))
                     .distinct().order_by(counts.c.site))
        return [site for (site,) in self._rows(statement)]

    def sources(self, start, end) -> list[dict]:
        """Per source host: days covered from *start* to *end*, files, lines and the last rollup."""
        from sqlalchemy import func, select

        statement = (select(files.c.source_host, func.count(func.distinct(file_days.c.day)),
                            func.count(func.distinct(files.c.id)), func.max(files.c.rolled_up))
                     .join(file_days, file_days.c.file_id == files.c.id)
                     .where(file_days.c.day.between(_day(start), _day(end)))
                     .group_by(files.c.source_host).order_by(files.c.source_host))
        return [{"source_host": host, "days": int(days), "files": int(nfiles),
                 "last_rollup": last.isoformat() if last else None}
                for host, days, nfiles, last in self._rows(statement)]


def url_value(path: str, fold_trailing_slash: bool = True) -> str:
    """*path* as the ``url`` dimension stores it: query dropped, normalized (see logpipe.keys)."""
    from logpipe.keys import normalize_path

    return normalize_path(path.split("?", 1)[0], fold_trailing_slash=fold_trailing_slash)


class DayHits(tuple):
    """One row of :func:`hits_table`: the tuple ``(day, views, source)``, plus
    ``.visitors`` (the URL's unique visitors that day, None when not counted)."""

    def __new__(cls, day: str, views: int, source: str, visitors: int | None = None):
        row = super().__new__(cls, (day, views, source))
        row.visitors = visitors
        return row


def hits_table(reader, db_url: str, url: str, day: str, days: int, site: str | None = None, *,
               today: str | None = None, history: History | None = None) -> list[tuple[str, int, str]]:
    """One URL's page views for *days* days ending with *day*: ``[(day, views, source)]``, oldest first.
    Each row is a :class:`DayHits`: its ``.visitors`` holds the URL's unique
    visitors from the same source.

    Where each day's number comes from (*source*):

    * ``"memcached"``: today (and later), read with ``reader.hits``; also
      yesterday while no rollup covers it yet (its counters live 24 hours);
    * ``"database"``: an earlier day that ``logpipe rollup`` stored, summed over
      every source host (0 when the URL had no views that day);
    * ``"none"``: an earlier day with no rollup (0).

    Args:
        reader: a :class:`logpipe.api.Reader` (or None: no memcached, today reads 0 as "none").
        db_url: the ``--db`` SQLAlchemy URL.
        url: the path; the query string is ignored, the path normalized as the writer does.
        day: the last day, ``YYYY-MM-DD``.
        days: how many days (≥ 1).
        site: the vhost (``%v``), or None for counters without one.
        today: today's date (default: the local date, as ``%t`` has it).
        history: an open :class:`History` to reuse (then *db_url* is not used);
            web applications keep one instead of connecting on every call.

    Raises:
        ValueError: a bad date or *days* < 1.
        HistoryError: the database cannot be read.
        logpipe.daemon.store.StoreError: memcached cannot be read.
    """
    if days < 1:
        raise ValueError("--days must be 1 or more")
    last = _day(day)
    now = _day(today) if today else _dt.date.today()
    first = last - _dt.timedelta(days=days - 1)
    fold = getattr(reader, "fold", True)
    value = url_value(url, fold)
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
    rows: list[tuple[str, int, str]] = []
    for offset in range(days):
        current = first + _dt.timedelta(days=offset)
        name = current.isoformat()
        live = current >= now or (current == now - _dt.timedelta(days=1) and name not in covered)
        if live and reader is not None:
            rows.append(DayHits(name, int(reader.hits(url, name, site=site)), "memcached",
                                int(reader.visitors(url, name, site=site))))
        elif name in covered:
            rows.append(DayHits(name, stored.get(name, 0), "database", stored_visitors.get(name, 0)))
        else:
            rows.append(DayHits(name, 0, "none"))
    return rows


def hits(path: str, days: int = 30, *, day: str | None = None, servers: str | None = "127.0.0.1:11211",
         db: str = DEFAULT_DB, site: str | None = None, prefix: str = "logpipe",
         timeout: float = 1.0) -> list[tuple[str, int, str]]:
    """Page views of *path* per day, today from memcached and earlier days from the database.
    Each row's ``.visitors`` is the URL's unique visitors (:class:`DayHits`).

    The recipe's ``hits``: what ``logpipe hits PATH --days N --json`` prints,
    as ``[(day, views, source)]`` oldest first (see :func:`hits_table`).
    *servers* None reads the database only.

    Raises:
        HistoryError, logpipe.daemon.store.StoreError: a server cannot be read.
    """
    reader = None
    if servers:
        from logpipe.api import Reader

        reader = Reader(servers, prefix=prefix, timeout=timeout)
    try:
        return hits_table(reader, db, path, day or _dt.date.today().isoformat(), days, site)
    finally:
        if reader is not None:
            reader.close()
