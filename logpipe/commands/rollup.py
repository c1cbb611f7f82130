"""``logpipe rollup``: a finished day's raw log into the history database.

``logpipe rollup [--date D] [FILE…]`` reads raw access-log files -- by
default the raw archive's files of yesterday (``--archive`` pattern, in
``--archive-tz``) -- counts them with :class:`logpipe.daemon.pipeline.Pipeline`, the
same parsing and page-view rules as the live counters, and stores per-day
counts of every dimension in ``--db`` (SQLite by default, PostgreSQL for
several web servers).  Give it the daemon's ``--config`` so the rules match.

Idempotent: each file is one row of ``files``, recognised by its source host
and the SHA-256 of its whole content, or as the same file grown (same path or
inode, the old content its beginning; see :mod:`logpipe.history.identity`), and a
run replaces every count of that file in one transaction -- whatever days it held.  A file for day D holds a few lines of
D-1 (requests that finished after midnight): they are counted for D-1, as rows
of the D file, so re-running either file leaves the day's total right.
Several web servers write their own rows (``--source-host``, default the host
name) into one PostgreSQL; a day's number is the sum.  See
:mod:`logpipe.history` for the schema.

``post_ip`` (POSTs per client per hour, for anti-spam) is not rolled up: it is
per hour, per IP address, and short-lived on purpose.

One summary line is printed on stdout at the end (files, lines, days, rows:
:class:`RunSummary`); ``--verbose`` adds one line per file.  A progress bar
(rich) is drawn on stderr when it is a terminal and a file is over
:data:`PROGRESS_MIN_BYTES`; under systemd or cron there is none.
Exit status: 0 done; 1 a file is missing or unreadable, every line of a file
was rejected, or the database failed (nothing of that file is changed); 2 a
bad option.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gzip
import io
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

from logpipe import __version__
from logpipe.config import Settings, settings_for
from logpipe.commands.dates import DATE_HELP, day_arg
from logpipe.daemon.archive import zone
from logpipe.errors import RollupError, short_error  # RollupError: re-exported

__all__ = ["add_arguments", "run", "rollup_file", "read_counts", "store_counts", "archive_files",
           "default_day", "RollupResult", "FileCounts", "RollupError", "EmptyFile", "ROLLUP_SETTINGS",
           "RunSummary", "PROGRESS_MIN_BYTES"]

#: Settings the rollup takes on its command line (besides --db and --config): the counting
#: rules must be the daemon's, so they are the daemon's options.
ROLLUP_SETTINGS = settings_for("rollup")
#: Dimensions never rolled up (see the module docstring).
NOT_ROLLED_UP = frozenset({"post_ip"})
READ_SIZE = 4 << 20
#: Classify what was fed every this many bytes, so memory holds counts, not raw tuples.
TAKE_EVERY = 64 << 20
INSERT_BATCH = 5000
#: Files at least this big (bytes, as stored: gzip counts compressed) get a progress bar on a terminal.
PROGRESS_MIN_BYTES = 4 << 20


class EmptyFile(RollupError):
    """The file has no lines: nothing to store (not a failure)."""


@dataclass
class FileCounts:
    """What :func:`read_counts` found in one file.

    Attributes:
        path: the file name as given.
        fingerprint: SHA-256 (hex) of the whole content (decompressed).
        identity: what recognises the file in ``files`` (:class:`~logpipe.history.identity.FileIdentity`).
        lines: lines read; rejected: lines that did not parse.
        counts: ``{(day, dimension, site, value): n}`` from :class:`~logpipe.daemon.pipeline.Pipeline`.
        stats: the classifier's outcomes (``page view``, ``bot``, ``static`` …), in lines.
        dimensions: the dimensions that were counted.
    """

    path: str
    fingerprint: str = ""
    identity: object = None
    lines: int = 0
    rejected: int = 0
    counts: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    dimensions: frozenset = frozenset()


@dataclass
class RollupResult:
    """What one file's rollup stored.

    Attributes:
        path, source_host, fingerprint: the file and its key in ``files``.
        file_id: its ``files.id``.
        lines, rejected: lines read and lines that did not parse.
        rows: ``counts`` rows written.
        days: ``{day: page views}`` for the days the file held (``%t`` dates).
        replaced_days: days an earlier rollup of the same file had stored (now replaced).
    """

    path: str
    source_host: str
    fingerprint: str
    file_id: int
    lines: int
    rejected: int
    rows: int
    days: dict[str, int]
    replaced_days: list[str]

    def summary(self) -> str:
        """One line for the terminal or the journal."""
        days = sorted(self.days)
        span = "no day" if not days else days[0] if len(days) == 1 else f"{days[0]}..{days[-1]}"
        again = " (replaced an earlier rollup of this file)" if self.replaced_days else ""
        return (f"{self.path}: {self.lines} lines, {self.rejected} rejected; {len(days)} day(s) "
                f"{span}; {sum(self.days.values())} page views; {self.rows} rows{again}")


# -- command line ---------------------------------------------------------------------------


def add_arguments(parser, name: str) -> None:
    """Add ``rollup``'s options to *parser* (the counting options are the daemon's)."""
    parser.description = ("Count finished raw log files into the history database (--db): by "
                          "default yesterday's --archive file(s). Re-running a file replaces its rows.")
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="raw access-log files (plain or gzip; - for stdin) to roll up instead of "
                             "the archive's (default: none, the --archive files of --date)")
    parser.add_argument("--date", metavar="DAY", type=day_arg,
                        help=f"roll up this day's --archive file(s) ({DATE_HELP}; "
                             "default: yesterday in --archive-tz)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print one line per file (default: one summary line for the run)")


def run(args) -> int:
    """Run ``logpipe rollup``; return the exit status (0 ok, 1 failure, 2 bad option)."""
    from logpipe.commands.main import settings_from
    from logpipe.history import HistoryError, engine_for, ensure_schema

    settings = settings_from(args)
    source_host = settings.source_host or socket.gethostname()
    if args.files and args.date:
        _say("--date picks the archive's files; give either --date or FILEs")
        return 2
    if args.files:
        paths = list(args.files)
    else:
        if not settings.archive:
            _say("no FILE given and no --archive pattern to find yesterday's file")
            return 2
        try:
            day = _dt.date.fromisoformat(args.date) if args.date else default_day(settings.archive_tz)
            paths = archive_files(settings.archive, day, settings.archive_tz)
        except ValueError as exc:
            _say(str(exc))
            return 2
        if not paths:
            _say(f"no archive file for {day} (pattern {settings.archive}"
                 f"{', time zone ' + settings.archive_tz if settings.archive_tz else ''})")
            return 1
    big = [p for p in paths if p != "-" and _size(p) >= PROGRESS_MIN_BYTES]
    progress = _progress() if big and _isatty(sys.stderr) else None
    summary = RunSummary()
    status = 0
    try:
        engine = engine_for(settings.db, write=True)
        ensure_schema(engine)
    except HistoryError as exc:
        _say(str(exc))
        return 1
    try:
        if progress is not None:
            progress.start()
        for path in paths:
            try:
                result = rollup_file(path, settings, engine=engine, source_host=source_host,
                                     progress=progress if path in big else None)
            except EmptyFile as exc:
                summary.empty += 1
                if args.verbose:
                    _say(str(exc))
                continue
            except (RollupError, HistoryError) as exc:
                summary.failed += 1
                _say(str(exc))
                status = 1
                continue
            summary.add(result)
            if args.verbose:
                message = result.summary()
                if progress is not None:
                    progress.console.print(message, markup=False, highlight=False)
                else:
                    print(message, flush=True)
    finally:
        if progress is not None:
            progress.stop()
        engine.dispose()
    from logpipe.history import safe_url

    print(f"logpipe rollup: {summary.line()} into {safe_url(settings.db)}", flush=True)
    return status


@dataclass
class RunSummary:
    """What one ``logpipe rollup`` run did, for its one summary line."""

    files: int = 0
    lines: int = 0
    rejected: int = 0
    rows: int = 0
    replaced: int = 0
    empty: int = 0
    failed: int = 0
    days: set = field(default_factory=set)

    def add(self, result: "RollupResult") -> None:
        """Count one file's :class:`RollupResult`."""
        self.files += 1
        self.lines += result.lines
        self.rejected += result.rejected
        self.rows += result.rows
        self.replaced += bool(result.replaced_days)
        self.days.update(result.days)

    def line(self) -> str:
        """``2 files, 25070 lines (3 rejected), 4 days 2015-05-17..2015-05-20, 9120 rows …``."""
        days = sorted(self.days)
        span = "" if not days else f" {days[0]}" if len(days) == 1 else f" {days[0]}..{days[-1]}"
        text = (f"{self.files} file{'s' * (self.files != 1)}, {self.lines} lines ({self.rejected} rejected), "
                f"{len(days)} day{'s' * (len(days) != 1)}{span}, {self.rows} rows")
        notes = [f"{n} {what}" for n, what in ((self.replaced, "replaced an earlier rollup of the same file"),
                                              (self.empty, "empty, skipped"), (self.failed, "failed"))
                 if n]
        return text + (f" ({'; '.join(notes)})" if notes else "")


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _say(message: str) -> None:
    sys.stderr.write(f"logpipe rollup: {message}\n")
    sys.stderr.flush()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _progress():
    from rich.console import Console
    from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True))


# -- finding the archive's files ------------------------------------------------------------


def default_day(tz: str | None = None, now: float | None = None) -> _dt.date:
    """Yesterday in time zone *tz* (IANA name; None: local), at Unix time *now* (default: now).

    Raises:
        ValueError: an unknown time zone.
    """
    when = _dt.datetime.now().timestamp() if now is None else now
    return (_moment(when, tz) - _dt.timedelta(days=1)).date()


def _moment(when: float, tz: str | None) -> _dt.datetime:
    if tz:
        return _dt.datetime.fromtimestamp(when, zone(tz))
    return _dt.datetime.fromtimestamp(when).astimezone()


def archive_files(pattern: str, day: _dt.date, tz: str | None = None) -> list[str]:
    """The existing archive files that the raw archive wrote during *day* (in *tz*), in order.

    The pattern is rendered for every minute of the day (so ``%H`` or ``%M``
    patterns give several files); a name that does not exist but whose
    ``.gz`` does (compressed by logrotate) is taken compressed.

    Raises:
        ValueError: an unknown time zone.
    """
    from logpipe.daemon.archive import Archive

    archive = Archive(pattern, tz=tz)
    if tz:
        tzinfo = zone(tz)
        start = _dt.datetime.combine(day, _dt.time(), tzinfo).timestamp()
        end = _dt.datetime.combine(day + _dt.timedelta(days=1), _dt.time(), tzinfo).timestamp()
    else:  # naive: local time
        start = _dt.datetime.combine(day, _dt.time()).timestamp()
        end = _dt.datetime.combine(day + _dt.timedelta(days=1), _dt.time()).timestamp()
    names: dict[str, None] = {}
    moment = start
    while moment < end:
        names[archive.path_for(moment)] = None
        moment += 60
    found = []
    for name in names:
        if os.path.exists(name):
            found.append(name)
        elif os.path.exists(name + ".gz"):
            found.append(name + ".gz")
    return found


# -- counting -------------------------------------------------------------------------------


def rollup_settings(settings: Settings) -> Settings:
    """*settings* with the dimensions that are not rolled up (``post_ip``) removed."""
    kept = [d for d in settings.dimensions.split(",") if d.strip() and d.strip() not in NOT_ROLLED_UP]
    return dataclasses.replace(settings, dimensions=",".join(kept))


def _open(path: str) -> tuple[BinaryIO, BinaryIO, int | None]:
    """(stream of the content, the raw file for progress, size in bytes or None)."""
    if path == "-":
        raw = sys.stdin.buffer
        return raw, raw, None
    raw = open(path, "rb")
    size = os.fstat(raw.fileno()).st_size
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw, size
    raw.seek(0)
    return raw, raw, size


def read_counts(path: str, settings: Settings, *,
                on_progress: Callable[[int, int | None], None] | None = None,
                prefix_sizes: tuple | list = ()) -> FileCounts:
    """Count one raw log file with the live counters' rules.

    Args:
        path: a plain or gzip file, or ``-`` for stdin.
        settings: the counting options (``post_ip`` is left out).
        on_progress: called with (bytes of the file read so far, its size or None).
        prefix_sizes: content lengths whose prefix digest to keep (earlier rollups of
            this file, :func:`logpipe.history.identity.growth_candidates`).

    Raises:
        RollupError: the file cannot be read.
    """
    from logpipe.daemon.pipeline import Pipeline
    from logpipe.history.identity import ContentDigest

    counted = rollup_settings(settings)
    pipeline = Pipeline(counted)
    result = FileCounts(path, dimensions=counted.dimension_set())
    merged: dict = {}
    digest = ContentDigest(prefix_sizes)
    tail = b""
    fed = 0
    try:
        stream, raw, size = _open(path)
        stat = None if path == "-" else os.fstat(raw.fileno())
    except OSError as exc:
        raise RollupError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        while True:
            try:
                data = stream.read(READ_SIZE)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise RollupError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
            if not data:
                break
            digest.update(data)
            data = tail + data if tail else data
            cut = data.rfind(b"\n")
            if cut < 0:
                tail = data
                continue
            tail = data[cut + 1:]
            pipeline.feed(data, 0, cut + 1)
            fed += cut + 1
            if fed >= TAKE_EVERY:
                _merge(merged, pipeline.take())
                fed = 0
            if on_progress is not None:
                on_progress(_position(raw), size)
        if tail:
            pipeline.feed(tail + b"\n")
        _merge(merged, pipeline.take())
        if on_progress is not None:
            on_progress(size or _position(raw), size)
    finally:
        if path != "-":
            stream.close()
            raw.close()
    result.identity = digest.identity(path if path == "-" else os.path.abspath(path), stat)
    result.fingerprint = result.identity.fingerprint
    result.lines = pipeline.lines
    result.rejected = sum(pipeline.rejected.values())
    result.counts = merged
    result.stats = dict(pipeline.classifier.stats)
    return result


def _position(raw) -> int:
    try:
        return raw.tell()
    except (OSError, ValueError, io.UnsupportedOperation):
        return 0


def _merge(into: dict, more: dict) -> None:
    if not into:
        into.update(more)
        return
    for key, n in more.items():
        into[key] = into.get(key, 0) + n


# -- storing --------------------------------------------------------------------------------


def store_counts(engine, found: FileCounts, source_host: str, *,
                 on_progress: Callable[[int, int], None] | None = None) -> RollupResult:
    """Replace the rows of *found*'s file (same source host) with its counts, in one transaction.

    Every ``counts`` and ``file_days`` row of an earlier rollup of the same
    file by the same source host (:func:`logpipe.history.identity.claim_file`)
    is deleted, whatever its day, and the new rows inserted; other files and
    other hosts are untouched.

    Args:
        engine: from :func:`logpipe.history.engine_for` (schema ensured).
        found: from :func:`read_counts`.
        source_host: the web server the file came from.
        on_progress: called with (rows inserted so far, rows in all).

    Raises:
        HistoryError: the database failed; the transaction was rolled back.
    """
    from sqlalchemy import delete, insert, select, update
    from sqlalchemy.exc import SQLAlchemyError

    from logpipe.history import HistoryError, counts, db_value, file_days, files, safe_url
    from logpipe.history.identity import claim_file

    rows: dict[tuple, int] = {}
    for (day, dimension, site, value), n in found.counts.items():
        if dimension in NOT_ROLLED_UP or len(day) != 10:
            continue
        key = (day, dimension, site or "", db_value(value))
        rows[key] = rows.get(key, 0) + n
    page_views: dict[str, int] = {}
    requests: dict[str, int] = {}
    for (day, dimension, _site, _value), n in rows.items():
        page_views.setdefault(day, 0)
        if dimension == "url":
            page_views[day] += n
        elif dimension == "status":
            requests[day] = requests.get(day, 0) + n
    has_status = "status" in found.dimensions
    days = sorted(page_views)
    now = _dt.datetime.now(_dt.timezone.utc)
    try:
        with engine.begin() as connection:
            ids = claim_file(connection, source_host, found.identity)
            file_id = ids[0]
            replaced = [d.isoformat() for (d,) in connection.execute(
                select(file_days.c.day).where(file_days.c.file_id.in_(ids)).distinct().order_by(file_days.c.day))]
            connection.execute(delete(counts).where(counts.c.file_id.in_(ids)))
            connection.execute(delete(file_days).where(file_days.c.file_id.in_(ids)))
            if len(ids) > 1:  # one file rolled up under two rows (v1, then grown): keep one
                connection.execute(delete(files).where(files.c.id.in_(ids[1:])))
            batch: list[dict] = []
            done = 0
            for (day, dimension, site, value), n in rows.items():
                batch.append({"day": _dt.date.fromisoformat(day), "source_host": source_host,
                              "file_id": file_id, "site": site, "dimension": dimension,
                              "value": value, "count": n})
                if len(batch) >= INSERT_BATCH:
                    connection.execute(insert(counts), batch)
                    done += len(batch)
                    batch = []
                    if on_progress is not None:
                        on_progress(done, len(rows))
            if batch:
                connection.execute(insert(counts), batch)
                done += len(batch)
            if days:
                connection.execute(insert(file_days), [
                    {"file_id": file_id, "day": _dt.date.fromisoformat(d), "page_views": page_views[d],
                     "requests": requests.get(d, 0) if has_status else None} for d in days])
            identity = found.identity
            connection.execute(update(files).where(files.c.id == file_id).values(
                path=identity.path, fingerprint=identity.fingerprint, size=identity.size,
                first_line=identity.first_line, device=identity.device, inode=identity.inode,
                lines=found.lines, rejected=found.rejected,
                first_day=_dt.date.fromisoformat(days[0]) if days else None,
                last_day=_dt.date.fromisoformat(days[-1]) if days else None,
                rolled_up=now, logpipe_version=__version__[:32]))
            if on_progress is not None:
                on_progress(done, len(rows))
    except SQLAlchemyError as exc:
        raise HistoryError(f"database {safe_url(str(engine.url))}: {short_error(exc)} "
                           f"(nothing of {found.path} was changed)") from None
    return RollupResult(found.path, source_host, found.fingerprint, int(file_id), found.lines,
                        found.rejected, len(rows), page_views, replaced)


def _earlier_sizes(engine, source_host: str, path: str) -> list[int]:
    """Sizes of earlier rollups of *path* (same path or inode): to recognise it grown."""
    from logpipe.history.identity import growth_candidates

    try:
        stat = None if path == "-" else os.stat(path)
    except OSError:
        return []  # read_counts reports it
    return growth_candidates(engine, source_host, path if path == "-" else os.path.abspath(path), stat)


def rollup_file(path: str, settings: Settings, *, engine=None, db: str | None = None,
                source_host: str | None = None, progress=None) -> RollupResult:
    """Count one raw log file and replace its rows in the database.

    Args:
        path: a plain or gzip raw log file (``-``: stdin).
        settings: counting options (use the daemon's).
        engine: a SQLAlchemy Engine whose schema is ensured; or None to open
            *db* (default ``settings.db``) and ensure the schema.
        source_host: the web server the file came from (default:
            ``settings.source_host``, else this host's name).
        progress: a started ``rich.progress.Progress``, or None.

    Raises:
        RollupError: the file cannot be read, or it had lines and none parsed
            (wrong ``--format``?); the database is left unchanged.
        HistoryError: the database failed (rolled back).
    """
    from logpipe.history import engine_for, ensure_schema

    source_host = source_host or settings.source_host or socket.gethostname()
    own_engine = engine is None
    if own_engine:
        engine = engine_for(db or settings.db, write=True)
        ensure_schema(engine)
    task = None
    on_read = on_store = None
    if progress is not None:
        task = progress.add_task(f"reading {os.path.basename(path) or path}", total=None)

        def on_read(done: int, size: int | None) -> None:
            progress.update(task, completed=done, total=size)

        def on_store(done: int, total: int) -> None:
            # The last update is drawn at once: rich's 10 Hz refresh would
            # miss a file stored in under 0.1 s, and the bar would never say 100 %.
            progress.update(task, description=f"storing {os.path.basename(path) or path}",
                            completed=done, total=max(total, 1), refresh=done >= total)
    try:
        found = read_counts(path, settings, on_progress=on_read,
                            prefix_sizes=_earlier_sizes(engine, source_host, path))
        parsed = found.lines - found.rejected
        if found.lines and not parsed:
            raise RollupError(f"{path}: none of its {found.lines} lines parsed with --format "
                              f"{settings.format!r}; nothing stored")
        if not found.lines:
            raise EmptyFile(f"{path}: empty, nothing to roll up")
        return store_counts(engine, found, source_host, on_progress=on_store)
    finally:
        if task is not None:
            progress.remove_task(task)
        if own_engine:
            engine.dispose()
