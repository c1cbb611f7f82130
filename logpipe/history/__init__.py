"""History: the database that ``logpipe rollup`` fills, and reading it back.

memcached keeps a day's counters for 24 hours; ``logpipe rollup`` stores each
finished day in a database through SQLAlchemy (SQLite by default, PostgreSQL
for several web servers).  This package owns the schema (:mod:`.schema`,
:mod:`.identity`) and the read side (:mod:`.reads`: :class:`History`;
:mod:`.ranges`: date ranges over the database and memcached, with memcached's
outage reported per day instead of raised): ``logpipe hits``/``top``
(:func:`hits_range`, :func:`top_range`), ``logpipe report`` and web
applications (:func:`hits`)::

    from logpipe.history import hits
    for day, views, source in hits("/blog/1/", days=30, db="sqlite:////var/lib/logpipe/logpipe.sqlite3"):
        ...

Schema (version 2, kept in ``schema_version``; created and migrated by
:func:`ensure_schema`, which ``logpipe rollup`` calls; module :mod:`.schema`)::

    files      id PK, source_host, fingerprint, path, size, first_line, device, inode,
               lines, rejected, first_day, last_day, rolled_up, logpipe_version
               UNIQUE (source_host, fingerprint)
    file_days  file_id → files.id, day, requests, page_views     PK (file_id, day)
    counts     day, source_host, file_id → files.id, site, dimension, value, count
               PK (file_id, day, dimension, site, value)

One row of ``files`` is one raw log file rolled up by one source host; its
*fingerprint* is the SHA-256 of the file's whole content (decompressed), so the
same file is recognised under another name and compressed (``access.log.1`` →
``access.log.2.gz``), and a different file is never taken for it, whatever its
first line.  A file that grew since its last rollup (same path or inode, and the
old content is its beginning) replaces its earlier row (:mod:`.identity`).
``counts`` holds that file's per-day counts: a file for day D
may also hold a few lines of D-1 (requests that finished after midnight), and
those are rows of day D-1 under the D file.  A day's number is the sum over
every file and every source host.  Re-running a file replaces all of its rows
in one transaction (delete by ``file_id``, insert): never added twice.
``site`` is ``''`` when the LogFormat has no ``%v``.  ``day`` is the date of
the request's ``%t``.  Values longer than 1000 UTF-8 bytes are stored cut, with
a digest (:func:`db_value`).
"""

from logpipe.history.schema import (DEFAULT_DB, MAX_VALUE_BYTES, SCHEMA_VERSION, HistoryError,  # noqa: F401
                                    as_day, counts, safe_url, db_value, engine_for,
                                    ensure_schema, file_days, files, metadata, schema_version)
from logpipe.history.reads import History, url_value  # noqa: F401
from logpipe.history.ranges import (UNAVAILABLE, DayHits, RangeTop, day_range, hits, hits_range, live_days,  # noqa: F401
                                    hits_table, top_range)

__all__ = ["SCHEMA_VERSION", "DEFAULT_DB", "HistoryError", "History", "hits_table", "hits", "url_value",
           "DayHits", "hits_range", "top_range", "day_range", "live_days", "RangeTop", "UNAVAILABLE",
           "ensure_schema", "engine_for", "db_value", "metadata", "counts", "files", "file_days",
           "schema_version", "safe_url"]
