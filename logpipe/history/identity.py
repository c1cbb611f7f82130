"""Which row of ``files`` a raw log file is: the rule that makes ``logpipe rollup`` idempotent.

A rollup replaces every row of "the same file", so this rule decides what may be
replaced.  Schema v1 used the SHA-256 of the first line alone, and a different
file starting with the same line (a concatenation, a copy with more days, two
logs beginning with the same monitoring probe) replaced another file's rows
(issue 16.1).  Since schema v2, for one source host:

1. **Same content**: the SHA-256 of the whole content (decompressed, so
   ``access.log.1`` and ``access.log.2.gz`` are one file) is the row's
   ``fingerprint``.  A re-run, a renamed copy or a gzip of the file replaces it.
2. **The same file, grown**: a row whose file has the same path, or the same
   device and inode, and whose whole content (``size`` bytes, ``fingerprint``)
   is the beginning of the new content.  The file was rolled up while it was
   still written to; the new rollup replaces it.  A copy or a concatenation has
   another path and inode, so it is a different file and both are kept.
3. **A v1 row** (``size`` NULL, rolled up before the upgrade): the same path and
   the same first line.  Without the path it could be another file.

Anything else is a new file with its own row.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

__all__ = ["ContentDigest", "FileIdentity", "growth_candidates", "match_file", "claim_file"]


class ContentDigest:
    """SHA-256 of a stream's content, of its first line, and of given prefixes, in one pass.

    Args:
        prefix_sizes: lengths in bytes whose prefix digest is wanted (the sizes of
            earlier rollups of this path, see :func:`growth_candidates`).

    Feed every byte of content, in order, to :meth:`update`.
    """

    def __init__(self, prefix_sizes=()):
        self._sha = hashlib.sha256()
        self._line = hashlib.sha256()
        self._line_done = False
        self.size = 0
        self._pending = sorted({int(s) for s in prefix_sizes if s and s > 0}, reverse=True)
        self.prefixes: dict[int, str] = {}

    def update(self, data: bytes) -> None:
        """Add the next *data* of the content."""
        if not self._line_done:
            cut = data.find(b"\n")
            self._line.update(data if cut < 0 else data[:cut])
            self._line_done = cut >= 0
        view = memoryview(data)
        while self._pending and self.size + len(view) >= self._pending[-1]:
            cut = self._pending.pop() - self.size
            self._sha.update(view[:cut])
            self.size += cut
            view = view[cut:]
            self.prefixes[self.size] = self._sha.hexdigest()  # hexdigest() does not end the hash
        self._sha.update(view)
        self.size += len(view)

    def identity(self, path: str, stat: os.stat_result | None) -> "FileIdentity":
        """The finished :class:`FileIdentity` of the content fed so far."""
        return FileIdentity(path=path, fingerprint=self._sha.hexdigest(), size=self.size,
                            first_line=self._line.hexdigest(), prefixes=dict(self.prefixes),
                            device=_int64(stat.st_dev) if stat else None,
                            inode=_int64(stat.st_ino) if stat else None)


def _int64(n: int) -> int | None:
    """*n* if a signed 64-bit column holds it (BIGINT), else None (then only the path matches)."""
    return n if 0 <= n < 1 << 63 else None


@dataclass
class FileIdentity:
    """What recognises one file (see the module docstring).

    Attributes:
        path: absolute path, or ``-`` for stdin.
        fingerprint: SHA-256 (hex) of the whole content, decompressed.
        size: bytes of content, decompressed.
        first_line: SHA-256 (hex) of the first line without its newline (for v1 rows).
        prefixes: ``{size: SHA-256 of the first size bytes}`` for the sizes asked for.
        device, inode: of the file read (None for stdin).
    """

    path: str
    fingerprint: str = ""
    size: int = 0
    first_line: str = ""
    prefixes: dict = field(default_factory=dict)
    device: int | None = None
    inode: int | None = None


def _same_place(path: str, stat: tuple[int | None, int | None]):
    """A WHERE clause: ``files`` rows of this path, or of this device and inode."""
    from sqlalchemy import and_, or_

    from logpipe.history.schema import files

    device, inode = stat
    if device is None or inode is None:
        return files.c.path == path
    return or_(files.c.path == path, and_(files.c.device == device, files.c.inode == inode))


def growth_candidates(engine, source_host: str, path: str, stat: os.stat_result | None) -> list[int]:
    """Sizes of earlier rollups of this file (same path or inode) whose prefix digest is needed.

    Empty for stdin, a database without ``files`` yet, or a v1 database
    (it has no sizes): reading must not fail because of this look-up.
    """
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from logpipe.history.schema import files

    if path == "-" or stat is None:
        return []
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(files.c.size).where(files.c.source_host == source_host, files.c.size.is_not(None),
                                           _same_place(path, (stat.st_dev, stat.st_ino)))).all()
    except SQLAlchemyError:
        return []
    return sorted({int(size) for (size,) in rows if size})


def match_file(connection, source_host: str, found: FileIdentity) -> list[int]:
    """The ``files.id`` rows that *found* replaces, by the rules of the module docstring.

    Returns the ids in rule order (an exact match first); empty for a new file.
    Several ids happen only when rules 2 and 3 both match (a file rolled up by v1
    and then again, grown, by v2): all are that one file.
    """
    from sqlalchemy import and_, select

    from logpipe.history.schema import files

    exact = connection.execute(select(files.c.id).where(
        files.c.source_host == source_host, files.c.fingerprint == found.fingerprint)).scalars().all()
    ids = list(exact)
    if found.path == "-":
        return ids
    place = _same_place(found.path, (found.device, found.inode))
    grown = connection.execute(select(files.c.id, files.c.size, files.c.fingerprint).where(
        files.c.source_host == source_host, files.c.size.is_not(None), files.c.size < found.size,
        place)).all()
    ids += [i for i, size, digest in grown if found.prefixes.get(int(size)) == digest and i not in ids]
    legacy = connection.execute(select(files.c.id).where(
        files.c.source_host == source_host, files.c.size.is_(None),
        and_(files.c.path == found.path, files.c.first_line == found.first_line))).scalars().all()
    ids += [i for i in legacy if i not in ids]
    return ids


def claim_file(connection, source_host: str, found: FileIdentity) -> list[int]:
    """The ``files.id`` rows this rollup replaces, the first one kept for the new rows.

    Matches by :func:`match_file`; a new file gets a new row (PostgreSQL and
    SQLite: an insert that does nothing when another host or run inserted the
    same content first).  On PostgreSQL the kept row is locked until the
    transaction ends, so two runs of one file at once do not interleave.
    """
    from sqlalchemy import insert, select

    from logpipe.history.schema import files

    ids = match_file(connection, source_host, found)
    dialect = connection.dialect.name
    if not ids:
        keys = {"source_host": source_host, "fingerprint": found.fingerprint, "lines": 0, "rejected": 0}
        if dialect in ("postgresql", "sqlite"):
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as upsert
            else:
                from sqlalchemy.dialects.sqlite import insert as upsert
            connection.execute(upsert(files).values(**keys).on_conflict_do_nothing(
                index_elements=["source_host", "fingerprint"]))
        else:  # other databases: a plain insert
            connection.execute(insert(files).values(**keys))
        ids = list(connection.execute(select(files.c.id).where(
            files.c.source_host == source_host, files.c.fingerprint == found.fingerprint)).scalars())
    if dialect == "postgresql":
        connection.execute(select(files.c.id).where(files.c.id == ids[0]).with_for_update())
    return ids
