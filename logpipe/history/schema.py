"""The history database's schema: tables, engines, creation and migrations.

See :mod:`logpipe.history` for what the tables hold and the identity rule of
``files``.  ``logpipe rollup`` calls :func:`ensure_schema`; readers only check
the version.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os

from logpipe.errors import HistoryError, short_error
__all__ = ["SCHEMA_VERSION", "DEFAULT_DB", "HistoryError", "ensure_schema", "engine_for", "db_value",
           "metadata", "counts", "files", "file_days", "schema_version"]

#: The schema version this logpipe writes and reads.
SCHEMA_VERSION = 2
#: ``--db`` default (Settings.db).
DEFAULT_DB = "sqlite:////var/lib/logpipe/logpipe.sqlite3"
#: Values longer than this many UTF-8 bytes are stored cut (index entries stay small).
MAX_VALUE_BYTES = 1000
_PG_LOCK_KEY = 0x6C6F6770  # "logp": serialises schema changes between hosts


# HistoryError (re-exported here) is logpipe.errors.HistoryError, a sibling of StoreError.


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
    # v2: SHA-256 (hex) of the whole content, decompressed; v1 rows (size NULL) keep the
    # SHA-256 of their first line, the v1 identity (see _migrate_1_to_2).
    Column("fingerprint", String(64), nullable=False),
    Column("path", Text),
    Column("size", BigInteger),          # v2: bytes of content (decompressed); NULL for v1 rows
    Column("first_line", String(64)),    # v2: SHA-256 (hex) of the first line, without its newline
    Column("device", BigInteger),        # v2: st_dev and st_ino of the file last rolled up
    Column("inode", BigInteger),         #     (NULL for stdin), to recognise a file that grew
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



def _migrate_1_to_2(connection) -> None:
    """v1 → v2: ``files`` gets size, first_line, device and inode (issue 16.1).

    v1 recognised a file by the SHA-256 of its first line alone, so another file
    starting with the same line replaced its rows.  v2 recognises it by its whole
    content; a v1 row keeps its first-line digest in ``fingerprint`` (and in
    ``first_line``) with ``size`` NULL, and is taken for the same file again only
    at the same path with the same first line (see logpipe.history.identity).
    Adding columns keeps every row and the ``files.id`` the counts refer to.
    """
    from sqlalchemy import text

    for name, kind in (("size", "BIGINT"), ("first_line", "VARCHAR(64)"), ("device", "BIGINT"),
                       ("inode", "BIGINT")):
        connection.execute(text(f"ALTER TABLE files ADD COLUMN {name} {kind}"))
    connection.execute(text("UPDATE files SET first_line = fingerprint"))


#: Migrations: ``version n → n + 1`` functions taking a Connection.
_MIGRATIONS: dict[int, object] = {1: _migrate_1_to_2}


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
    except ImportError as exc:
        if url.startswith("postgres"):  # the optional extra (setup.cfg) is not installed
            raise HistoryError(
                f"--db {safe_url(url)}: the PostgreSQL driver psycopg is not installed ({exc}); "
                "install the extra: make install EXTRAS=postgresql, or "
                "pip install 'apache-logpipe[postgresql]' in logpipe's virtualenv") from None
        raise HistoryError(f"--db {safe_url(url)}: {exc}") from None
    except Exception as exc:  # ArgumentError, NoSuchModuleError, OSError
        raise HistoryError(f"--db {safe_url(url)}: {exc}") from None
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


def safe_url(url: str) -> str:
    """*url* (a ``--db`` SQLAlchemy URL) without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


def sqlite_missing(engine) -> bool:
    """True for a SQLite file that does not exist (reading must not create it)."""
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database
    return bool(database) and database != ":memory:" and not os.path.exists(database)


def read_version(connection) -> int | None:
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
            version = read_version(connection)
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
        raise HistoryError(f"database {safe_url(str(engine.url))}: {short_error(exc)}") from None




def as_day(value: str | _dt.date) -> _dt.date:
    """*value* (a ``datetime.date`` or ``YYYY-MM-DD`` text) as a date; ValueError for other text."""
    if isinstance(value, _dt.date):
        return value
    try:
        return _dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from None

