"""Issue 16.1: ``logpipe rollup`` recognises "the same file" without ever replacing another file's rows.

Real ``logpipe rollup`` processes, real SQLite (and PostgreSQL for the collision); the counts are
read back with plain SQL written here.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import sqlite3
import subprocess

import pytest
from sqlalchemy import create_engine, text

from logpipe.history import SCHEMA_VERSION

DAY = dt.date(2026, 11, 20)
# A monitoring probe at midnight: the first line of every log of this host.
PROBE = b'192.0.2.250 - - [20/Nov/2026:00:00:00 +0000] "GET /health HTTP/1.1" 200 2 "-" "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"\n'

V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL, updated DATETIME);
CREATE TABLE files (
    id INTEGER NOT NULL, source_host VARCHAR(255) NOT NULL, fingerprint VARCHAR(64) NOT NULL,
    path TEXT, lines BIGINT NOT NULL, rejected BIGINT NOT NULL, first_day DATE, last_day DATE,
    rolled_up DATETIME, logpipe_version VARCHAR(32), PRIMARY KEY (id),
    CONSTRAINT uq_files_source_fingerprint UNIQUE (source_host, fingerprint));
CREATE TABLE file_days (
    file_id INTEGER NOT NULL, day DATE NOT NULL, requests BIGINT, page_views BIGINT,
    CONSTRAINT pk_file_days PRIMARY KEY (file_id, day),
    FOREIGN KEY(file_id) REFERENCES files (id) ON DELETE CASCADE);
CREATE INDEX ix_file_days_day ON file_days (day);
CREATE TABLE counts (
    day DATE NOT NULL, source_host VARCHAR(255) NOT NULL, file_id INTEGER NOT NULL,
    site VARCHAR(255) NOT NULL, dimension VARCHAR(32) NOT NULL, value TEXT NOT NULL,
    count BIGINT NOT NULL, CONSTRAINT pk_counts PRIMARY KEY (file_id, day, dimension, site, value),
    FOREIGN KEY(file_id) REFERENCES files (id) ON DELETE CASCADE);
CREATE INDEX ix_counts_value ON counts (dimension, site, value, day);
CREATE INDEX ix_counts_day ON counts (day, dimension, site);
"""  # what logpipe's schema version 1 created (sqlite_master of a v1 database)


def line(path: str, clock: str = "12:00:00") -> bytes:
    return (f'192.0.2.1 - - [20/Nov/2026:{clock} +0000] "GET {path} HTTP/1.1" 200 5 "-" '
            '"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"\n').encode()


def rollup(logpipe_bin, db, *args, check=True):
    run = subprocess.run([logpipe_bin, "rollup", "--db", db, "--source-host", "web1", *args],
                         capture_output=True, text=True, timeout=120)
    if check:
        assert run.returncode == 0, run.stderr
    return run


def sql(db: str, query: str) -> list[tuple]:
    engine = create_engine(db)
    try:
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(text(query)).all()]
    finally:
        engine.dispose()


def views(db: str) -> dict[str, int]:
    """Page views per URL on DAY, summed over every file (plain SQL)."""
    return {v: int(n) for v, n in sql(db, f"SELECT value, SUM(count) FROM counts WHERE dimension = 'url' "
                                          f"AND day = '{DAY}' GROUP BY value")}


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/h.sqlite3"
    return request.getfixturevalue("postgres_db")


def test_two_different_files_with_the_same_first_line_are_both_kept(logpipe_bin, db, tmp_path):
    """Was data loss: the second file "replaced an earlier rollup" and deleted the first's rows."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(PROBE + line("/a") * 4)
    b.write_bytes(PROBE + line("/b") * 6)
    rollup(logpipe_bin, db, str(a))
    second = rollup(logpipe_bin, db, str(b))
    assert "replaced" not in second.stdout + second.stderr
    assert views(db) == {"/health": 2, "/a": 4, "/b": 6}
    # a concatenation of both (another path, another inode) is a third file: nothing replaced
    both = tmp_path / "both.log"
    both.write_bytes(a.read_bytes() + b.read_bytes())
    rollup(logpipe_bin, db, str(both))
    assert views(db) == {"/health": 4, "/a": 8, "/b": 12}
    assert sql(db, "SELECT COUNT(*) FROM files") == [(3,)]


def test_rerun_rename_and_gzip_of_one_file_replace_its_rows(logpipe_bin, tmp_path):
    db = f"sqlite:///{tmp_path}/h.sqlite3"
    log = tmp_path / "access.log"
    log.write_bytes(PROBE + line("/a") * 5)
    rollup(logpipe_bin, db, str(log))
    again = rollup(logpipe_bin, db, "-v", str(log))
    assert "replaced an earlier rollup" in again.stdout
    assert views(db) == {"/health": 1, "/a": 5}
    # logrotate: renamed, then compressed: the same content is the same file
    rotated = tmp_path / "access.log.2.gz"
    with gzip.open(rotated, "wb") as handle:
        handle.write(log.read_bytes())
    log.unlink()
    rollup(logpipe_bin, db, str(rotated))
    assert views(db) == {"/health": 1, "/a": 5}
    content = PROBE + line("/a") * 5
    assert sql(db, "SELECT path, fingerprint, size FROM files") == [
        (str(rotated), hashlib.sha256(content).hexdigest(), len(content))]


def test_a_file_that_grew_since_its_last_rollup_is_replaced_by_its_new_content(logpipe_bin, tmp_path):
    db = f"sqlite:///{tmp_path}/h.sqlite3"
    log = tmp_path / "access.log"
    log.write_bytes(PROBE + line("/a") * 5)
    rollup(logpipe_bin, db, str(log))
    with open(log, "ab") as handle:  # Apache went on writing
        handle.write(line("/a", "13:00:00") * 3 + line("/b", "13:00:01"))
    rollup(logpipe_bin, db, str(log))
    assert views(db) == {"/health": 1, "/a": 8, "/b": 1}
    assert sql(db, "SELECT COUNT(*), SUM(lines) FROM files") == [(1, 10)]
    # renamed by logrotate (same inode) and grown again: still the same file
    rotated = tmp_path / "access.log.1"
    log.rename(rotated)
    with open(rotated, "ab") as handle:
        handle.write(line("/c", "14:00:00"))
    rollup(logpipe_bin, db, str(rotated))
    assert views(db) == {"/health": 1, "/a": 8, "/b": 1, "/c": 1}
    # a new file at the old path, starting like the old one but not containing it: another file
    log.write_bytes(PROBE + line("/d") * 2)
    rollup(logpipe_bin, db, str(log))
    assert views(db) == {"/health": 2, "/a": 8, "/b": 1, "/c": 1, "/d": 2}
    assert sql(db, "SELECT COUNT(*) FROM files") == [(2,)]


def test_a_version_1_database_is_migrated_and_its_files_recognised_at_their_path(logpipe_bin, tmp_path):
    """A database written by schema v1 (first-line identity) keeps its rows; a re-run of the same
    file at the same path replaces them, another file with the same first line does not."""
    current = f"sqlite:///{tmp_path}/v2.sqlite3"
    log = tmp_path / "access.log"
    log.write_bytes(PROBE + line("/a") * 5)
    rollup(logpipe_bin, current, str(log))
    # the same rows, as logpipe v1 stored them: fingerprint = SHA-256 of the first line
    old = tmp_path / "v1.sqlite3"
    connection = sqlite3.connect(old)
    connection.executescript(V1_SCHEMA)
    connection.execute(f"ATTACH '{tmp_path}/v2.sqlite3' AS v2")
    connection.executescript("""
        INSERT INTO schema_version VALUES (1, '2026-11-21 00:00:00');
        INSERT INTO files SELECT id, source_host, first_line, path, lines, rejected, first_day, last_day,
                                 rolled_up, logpipe_version FROM v2.files;
        INSERT INTO file_days SELECT * FROM v2.file_days;
        INSERT INTO counts SELECT * FROM v2.counts;""")
    connection.commit()
    connection.close()
    db = f"sqlite:///{old}"
    other = tmp_path / "other.log"
    other.write_bytes(PROBE + line("/b") * 3)
    rollup(logpipe_bin, db, str(other))  # migrates, then a different file: kept beside
    assert sql(db, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)] == [(2,)]
    assert views(db) == {"/health": 2, "/a": 5, "/b": 3}
    rollup(logpipe_bin, db, str(log))  # the v1 file again, same path: replaced, not doubled
    assert views(db) == {"/health": 2, "/a": 5, "/b": 3}
    assert sql(db, "SELECT COUNT(*), COUNT(size) FROM files") == [(2, 2)]
    assert sql(db, "PRAGMA foreign_key_check") == []


def test_a_version_1_postgresql_database_is_migrated(logpipe_bin, postgres_db, tmp_path):
    log = tmp_path / "access.log"
    log.write_bytes(PROBE + line("/a") * 5)
    rollup(logpipe_bin, postgres_db, str(log))
    engine = create_engine(postgres_db)  # back to what schema v1 had: first-line identity, no new columns
    with engine.begin() as connection:
        connection.execute(text("UPDATE files SET fingerprint = first_line"))
        connection.execute(text("ALTER TABLE files DROP COLUMN size, DROP COLUMN first_line, "
                                "DROP COLUMN device, DROP COLUMN inode"))
        connection.execute(text("UPDATE schema_version SET version = 1"))
    engine.dispose()
    other = tmp_path / "other.log"
    other.write_bytes(PROBE + line("/b") * 3)
    rollup(logpipe_bin, postgres_db, str(other))
    assert sql(postgres_db, "SELECT version FROM schema_version") == [(2,)]
    assert views(postgres_db) == {"/health": 2, "/a": 5, "/b": 3}
    rollup(logpipe_bin, postgres_db, str(log))
    assert views(postgres_db) == {"/health": 2, "/a": 5, "/b": 3}
    assert sql(postgres_db, "SELECT COUNT(*), COUNT(size) FROM files") == [(2, 2)]
