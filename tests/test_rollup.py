"""Issue 5, ``logpipe rollup`` and ``logpipe hits --days``: raw logs into SQLite or PostgreSQL.

The reference for every number is the live path: the same real log piped through the logpipe
daemon into a real memcached.  The rollup must store exactly those per-day counters.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import select
import time
import pty
import subprocess
from collections import defaultdict

import pytest
from sqlalchemy import create_engine, text

from logpipe.api import Reader
from logpipe.history import SCHEMA_VERSION, History, HistoryError, db_value, hits, hits_table
from logpipe.commands.rollup import archive_files, default_day

from servers import Memcached, MEMCACHED_BIN

ZAKI_FORMAT = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" "%{X-Forwarded-For}i"'
REAL = [
    ("elastic-examples-apache_logs.log", "combined"),
    ("1geek0-weblog-access.log", "combined"),
    ("nielsbasjes-logparser-hackers-access.log", "combined"),
    ("dmjacas-logs-other_vhosts_access.log", "vhost_combined"),
    ("zaki1003-bot-detection-prototype-access_10000.log", ZAKI_FORMAT),
]
DIMENSIONS = ("url", "referrer", "referrer_host", "keyword", "browser", "platform", "bot", "bot_category",
              "status", "notfound", "visitors")


def rollup(logpipe_bin, db, *args, check=True, **kwargs):
    run = subprocess.run([logpipe_bin, "rollup", "--db", db, *args], capture_output=True, text=True,
                         timeout=300, **kwargs)
    if check:
        assert run.returncode == 0, run.stderr
    return run


def sqlalchemy_url(db: str) -> str:
    return db.replace("postgresql://", "postgresql+psycopg://", 1) if db.startswith("postgresql://") else db


def stored(db: str, where: str = "1=1") -> dict[tuple, int]:
    """{(day, dimension, site, value): count} summed over files and source hosts (plain SQL)."""
    engine = create_engine(sqlalchemy_url(db))
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(
                f"SELECT day, dimension, site, value, SUM(count) FROM counts WHERE {where} "
                "GROUP BY day, dimension, site, value")).all()
    finally:
        engine.dispose()
    return {(str(day), dim, site, value): int(n) for day, dim, site, value, n in rows}


def table(db: str, sql: str) -> list[tuple]:
    engine = create_engine(sqlalchemy_url(db))
    try:
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(text(sql)).all()]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def live(real_logs_dir, logpipe_bin, tmp_path_factory):
    """Each real log piped through the daemon into one memcached, with its own key prefix."""
    if not os.access(MEMCACHED_BIN, os.X_OK):
        pytest.skip("memcached not installed")
    server = Memcached(memory_mb=256)
    status = tmp_path_factory.mktemp("status")
    try:
        for index, (name, fmt) in enumerate(REAL):
            run = subprocess.run([logpipe_bin, "--memcached", server.spec, "--prefix", f"lp{index}",
                                  "--format", fmt, "--status-dir", str(status)],
                                 stdin=open(real_logs_dir / name, "rb"), capture_output=True, timeout=300)
            assert run.returncode == 0, run.stderr
        yield server
    finally:
        server.stop()


def live_counts(server: Memcached, index: int, days, sites) -> dict[tuple, int]:
    """The live counters of real log *index* for these days and sites, as the database stores them."""
    reader = Reader(server.spec, prefix=f"lp{index}", timeout=5)
    out: dict[tuple, int] = {}
    try:
        for day in days:
            for site in sites:
                for dimension in DIMENSIONS:
                    for entry in reader.top(dimension, day, None, site or None):
                        key = (day, dimension, site, db_value(entry.value))
                        out[key] = out.get(key, 0) + entry.count
                # unique visitors of the whole site: live markers and the rollup's own count agree
                everyone = reader.visitors(None, day, site or None)
                if everyone:
                    out[(day, "visitors", site, "*")] = everyone
    finally:
        reader.close()
    return out


def compare_with_live(db: str, server: Memcached, real_logs_dir) -> None:
    for index, (name, _fmt) in enumerate(REAL):
        path = str(real_logs_dir / name)
        (file_id,) = [i for (i,) in table(db, f"SELECT id FROM files WHERE path = '{path}'")]
        mine = stored(db, f"file_id = {file_id}")
        days = sorted({k[0] for k in mine})
        sites = sorted({k[2] for k in mine})
        assert days, name
        # the days of this log hold nothing from another file: per-day totals are this file's
        assert stored(db, "day IN ({})".format(",".join(f"'{d}'" for d in days))) == mine
        expected = live_counts(server, index, days, sites)
        assert mine == expected, name
        assert sum(n for k, n in mine.items() if k[1] == "url") > 0


# -- real logs: SQLite and PostgreSQL equal the live counters ---------------------------------


def test_rollup_of_the_real_logs_into_sqlite_equals_the_live_counters(live, real_logs_dir, logpipe_bin,
                                                                     tmp_path):
    db = f"sqlite:///{tmp_path}/history/logpipe.sqlite3"  # the directory is created
    for name, fmt in REAL:
        rollup(logpipe_bin, db, "--format", fmt, "--source-host", "web1", str(real_logs_dir / name))
    compare_with_live(db, live, real_logs_dir)
    assert table(db, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    # file_days: page views per day are the url counts
    per_day = table(db, "SELECT day, SUM(page_views) FROM file_days GROUP BY day ORDER BY day")
    urls = defaultdict(int)
    for (day, dimension, _s, _v), n in stored(db).items():
        if dimension == "url":
            urls[day] += n
    assert {str(d): int(n) for d, n in per_day} == dict(urls)


def test_rollup_of_the_real_logs_into_postgresql_equals_the_live_counters(live, real_logs_dir, logpipe_bin,
                                                                         postgres_db):
    db = postgres_db.replace("postgresql+psycopg://", "postgresql://")  # plain URL: psycopg 3 is picked
    for name, fmt in REAL:
        rollup(logpipe_bin, db, "--format", fmt, "--source-host", "web1", str(real_logs_dir / name))
    compare_with_live(db, live, real_logs_dir)


# -- idempotency -------------------------------------------------------------------------------


def test_rerunning_a_file_replaces_its_rows(real_logs_dir, logpipe_bin, tmp_path):
    db = f"sqlite:///{tmp_path}/h.sqlite3"
    source = real_logs_dir / "elastic-examples-apache_logs.log"
    rollup(logpipe_bin, db, "--source-host", "web1", str(source))
    first = stored(db)
    snapshot = table(db, "SELECT * FROM counts ORDER BY file_id, day, dimension, site, value")
    rollup(logpipe_bin, db, "--source-host", "web1", str(source))
    assert table(db, "SELECT * FROM counts ORDER BY file_id, day, dimension, site, value") == snapshot
    # the same file renamed and compressed by logrotate is recognised by its first line
    rotated = tmp_path / "access.log.2.gz"
    with gzip.open(rotated, "wb") as handle:
        handle.write(source.read_bytes())
    rollup(logpipe_bin, db, "--source-host", "web1", str(rotated))
    assert stored(db) == first
    assert table(db, "SELECT COUNT(*), MAX(path) FROM files") == [(1, str(rotated))]
    # another source host adds its own rows: every count doubles
    rollup(logpipe_bin, db, "--source-host", "web2", str(source))
    assert stored(db) == {k: 2 * n for k, n in first.items()}


def test_two_source_hosts_into_one_postgresql_add_up(live, real_logs_dir, logpipe_bin, postgres_db, tmp_path):
    """A load balancer spreads requests over two web servers; both roll up at the same moment into
    a fresh database (racing to create the schema); the day's totals equal the live counters."""
    name, fmt = REAL[0]
    lines = (real_logs_dir / name).read_bytes().splitlines(keepends=True)
    web1, web2 = tmp_path / "web1.log", tmp_path / "web2.log"
    web1.write_bytes(b"".join(lines[0::2]))
    web2.write_bytes(b"".join(lines[1::2]))
    procs = [subprocess.Popen([logpipe_bin, "rollup", "--db", postgres_db, "--format", fmt,
                               "--source-host", host, str(path)], stderr=subprocess.PIPE)
             for host, path in (("web1", web1), ("web2", web2))]
    for proc in procs:
        assert proc.wait(300) == 0, proc.stderr.read()
    total = stored(postgres_db)
    days = sorted({k[0] for k in total})
    live_total = live_counts(live, 0, days, [""])
    # Unique visitors are exact per web server; only counts are stored, so a visitor that
    # both servers saw counts once on each (README, "Unique visitors"): the sum is an upper
    # bound, each host alone a lower bound of the live (exact) count.
    per_host = {host: stored(postgres_db, f"source_host = '{host}'") for host in ("web1", "web2")}
    for key, n in live_total.items():
        if key[1] == "visitors":
            assert max(h.get(key, 0) for h in per_host.values()) <= n <= total[key], key
    assert {k: n for k, n in total.items() if k[1] != "visitors"} == {
        k: n for k, n in live_total.items() if k[1] != "visitors"}
    hosts = table(postgres_db, "SELECT source_host, COUNT(*) FROM counts GROUP BY source_host ORDER BY 1")
    assert [h for h, _ in hosts] == ["web1", "web2"]
    rollup(logpipe_bin, postgres_db, "--format", fmt, "--source-host", "web1", str(web1))  # a re-run
    assert stored(postgres_db) == total


# -- days: late lines, the archive's files, yesterday ------------------------------------------


def clf(day: dt.date, clock: str, path: str) -> bytes:
    month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][day.month - 1]
    return (f'192.0.2.1 - - [{day.day:02d}/{month}/{day.year}:{clock} +0000] "GET {path} HTTP/1.1" 200 5 '
            f'"-" "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"\n').encode()


def test_late_lines_count_for_their_own_day_and_reruns_of_either_file_stay_exact(logpipe_bin, tmp_path):
    d1, d2 = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
    root = tmp_path / "archive"
    pattern = str(root / "%Y" / "%m" / "%d" / "access.log")
    (root / "2026/11/20").mkdir(parents=True)
    (root / "2026/11/21").mkdir(parents=True)
    (root / "2026/11/20/access.log").write_bytes(b"".join(clf(d1, "12:00:00", "/a") for _ in range(10)))
    # the 21st's file starts with three slow requests of the 20th that finished after midnight
    late = b"".join(clf(d1, "23:59:5%d" % i, "/a") for i in range(3))
    with gzip.open(root / "2026/11/21/access.log.gz", "wb") as handle:  # compressed by logrotate
        handle.write(late + b"".join(clf(d2, "00:00:10", "/a") for _ in range(5)))
    db = f"sqlite:///{tmp_path}/h.sqlite3"
    common = ["--archive", pattern, "--archive-tz", "UTC", "--source-host", "web1"]

    def views():
        return {k[0]: n for k, n in stored(db).items() if k[1] == "url"}

    rollup(logpipe_bin, db, *common, "--date", "2026-11-21")
    assert views() == {"2026-11-20": 3, "2026-11-21": 5}
    rollup(logpipe_bin, db, *common, "--date", "2026-11-20")
    assert views() == {"2026-11-20": 13, "2026-11-21": 5}
    for day in ("2026-11-21", "2026-11-20", "2026-11-21"):
        rollup(logpipe_bin, db, *common, "--date", day)
        assert views() == {"2026-11-20": 13, "2026-11-21": 5}
    files = table(db, "SELECT f.path, d.day, d.page_views FROM files f JOIN file_days d ON d.file_id = f.id "
                      "ORDER BY f.path, d.day")
    assert [(os.path.basename(p), str(d), n) for p, d, n in files] == [
        ("access.log", "2026-11-20", 10), ("access.log.gz", "2026-11-20", 3), ("access.log.gz", "2026-11-21", 5)]
    missing = rollup(logpipe_bin, db, *common, "--date", "2026-11-22", check=False)
    assert missing.returncode == 1 and "no archive file for 2026-11-22" in missing.stderr


def test_archive_files_and_yesterday_follow_the_archive_time_zone(tmp_path):
    zone = "America/New_York"
    when = dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.timezone.utc).timestamp()  # 20th, 21:00 in New York
    assert default_day(zone, when) == dt.date(2026, 11, 19)
    assert default_day("Asia/Tokyo", when) == dt.date(2026, 11, 20)
    for hour in ("22", "23"):
        (tmp_path / f"2026-11-19-{hour}.log").write_bytes(b"x\n")
    (tmp_path / "2026-11-20-00.log").write_bytes(b"x\n")
    found = archive_files(str(tmp_path / "%Y-%m-%d-%H.log"), dt.date(2026, 11, 19), zone)
    assert [os.path.basename(p) for p in found] == ["2026-11-19-22.log", "2026-11-19-23.log"]
    # the day daylight saving time ends has 25 hours: an hourly pattern gives 25 files, in order
    from zoneinfo import ZoneInfo

    start = dt.datetime(2026, 11, 1, tzinfo=ZoneInfo(zone)).timestamp()
    hourly = [dt.datetime.fromtimestamp(start + 3600 * h, ZoneInfo(zone)).strftime("%d-%H%z.log")
              for h in range(26)]
    for name in hourly:
        (tmp_path / name).write_bytes(b"x\n")
    found = [os.path.basename(p) for p in archive_files(str(tmp_path / "%d-%H%z.log"), dt.date(2026, 11, 1), zone)]
    assert found == hourly[:25] and hourly[25].startswith("02-00")


def test_wrong_format_fails_and_leaves_the_database_alone(real_logs_dir, logpipe_bin, tmp_path):
    db = f"sqlite:///{tmp_path}/h.sqlite3"
    source = str(real_logs_dir / "1geek0-weblog-access.log")
    rollup(logpipe_bin, db, "--source-host", "web1", source)
    before = stored(db)
    bad = rollup(logpipe_bin, db, "--source-host", "web1", "--format", "vhost_combined", source, check=False)
    assert bad.returncode == 1 and "none of its 15643 lines parsed" in bad.stderr
    assert stored(db) == before


def test_a_newer_schema_is_refused(logpipe_bin, tmp_path):
    db = f"sqlite:///{tmp_path}/h.sqlite3"
    log = tmp_path / "a.log"
    log.write_bytes(clf(dt.date(2026, 11, 20), "10:00:00", "/x"))
    rollup(logpipe_bin, db, str(log))
    engine = create_engine(db)
    with engine.begin() as connection:
        connection.execute(text("UPDATE schema_version SET version = 99"))
    engine.dispose()
    run = rollup(logpipe_bin, db, str(log), check=False)
    assert run.returncode == 1 and "schema version 99" in run.stderr
    with pytest.raises(HistoryError, match="upgrade logpipe"):
        History(db).covered_days("2026-11-20", "2026-11-20")


# -- progress ----------------------------------------------------------------------------------


def run_in_terminal(argv: list[str]) -> str:
    """Run *argv* with stdout and stderr on a pseudo-terminal; return what it drew."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                                env={**os.environ, "COLUMNS": "100", "TERM": "xterm"})
        # The parent keeps its end of the terminal open: when the last slave fd
        # closes, Linux may answer EIO before the master has read everything.
        output = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if select.select([controller], [], [], 0.1)[0]:
                output += os.read(controller, 65536)
            elif proc.poll() is not None:
                break
        assert proc.wait(1) == 0
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    return output.decode("utf-8", "replace")


def test_one_summary_line_and_a_progress_bar_on_a_terminal_for_big_files(real_logs_dir, logpipe_bin, tmp_path):
    db = f"sqlite:///{tmp_path}/h.sqlite3"
    source = str(real_logs_dir / "dmjacas-logs-other_vhosts_access.log")  # 4.3 MiB: over PROGRESS_MIN_BYTES
    quiet = rollup(logpipe_bin, db, "--format", "vhost_combined", source)
    # what systemd's journal gets: one line, no bar
    days = table(db, "SELECT COUNT(DISTINCT day), MIN(day), MAX(day) FROM file_days")[0]
    rows = table(db, "SELECT COUNT(*) FROM counts")[0][0]
    assert quiet.stderr == ""
    assert quiet.stdout == (f"logpipe rollup: 1 file, 25070 lines (0 rejected), {days[0]} days "
                            f"{days[1]}..{days[2]}, {rows} rows into {db}\n")
    screen = run_in_terminal([logpipe_bin, "rollup", "--db", db, "--format", "vhost_combined", source])
    assert "100%" in screen and "\x1b[" in screen  # rich's bar, drawn with escape codes
    assert screen.count("logpipe rollup: 1 file, 25070 lines") == 1
    assert "(1 replaced an earlier rollup of the same file)" in screen
    # a small file on a terminal: no bar, the summary line only (and -v adds the file's line)
    small = tmp_path / "small.log"
    small.write_bytes(clf(dt.date(2026, 11, 20), "10:00:00", "/x") * 3)
    screen = run_in_terminal([logpipe_bin, "rollup", "--db", db, "-v", str(small)])
    assert "\x1b[" not in screen and "%" not in screen
    rows = table(db, f"SELECT COUNT(*) FROM counts JOIN files ON files.id = file_id WHERE path = '{small}'")[0][0]
    assert rows >= 4  # url, browser, platform, status at least
    assert [line for line in screen.splitlines() if line] == [
        f"{small}: 3 lines, 0 rejected; 1 day(s) 2026-11-20; 3 page views; {rows} rows",
        f"logpipe rollup: 1 file, 3 lines (0 rejected), 1 day 2026-11-20, {rows} rows into {db}"]


# -- reading history: logpipe hits --days ------------------------------------------------------


def test_hits_days_today_from_memcached_and_history_from_the_database(logpipe_bin, memcached, tmp_path):
    today = dt.date.today()
    day = [today - dt.timedelta(days=n) for n in range(5)]  # day[0] is today
    db = f"sqlite:///{tmp_path}/h.sqlite3"
    history = tmp_path / "old.log"
    history.write_bytes(clf(day[3], "10:00:00", "/blog/1/") * 4 + clf(day[2], "10:00:00", "/blog/1?x=1") * 6
                        + clf(day[2], "10:00:00", "/other") * 9)
    rollup(logpipe_bin, db, "--source-host", "web1", str(history))
    other_host = tmp_path / "web2.log"
    other_host.write_bytes(clf(day[2], "11:00:00", "/blog/1") * 2)
    rollup(logpipe_bin, db, "--source-host", "web2", str(other_host))
    live = clf(day[1], "12:00:00", "/blog/1") * 3 + clf(day[0], "00:00:01", "/blog/1/") * 7
    run = subprocess.run([logpipe_bin, "--memcached", memcached.spec, "--status-dir", str(tmp_path / "s")],
                         input=live, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr
    shown = subprocess.run([logpipe_bin, "hits", "/blog/1/", "--days", "5", "--json", "--db", db,
                            "--memcached", memcached.spec], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    expected = [
        (day[4].isoformat(), 0, "none"),          # nothing rolled up that day
        (day[3].isoformat(), 4, "database"),
        (day[2].isoformat(), 8, "database"),      # web1 + web2
        (day[1].isoformat(), 3, "memcached"),     # yesterday, not rolled up yet
        (day[0].isoformat(), 7, "memcached"),     # today
    ]
    assert [(d["date"], d["views"], d["source"]) for d in json.loads(shown.stdout)["days"]] == expected
    # the Python API for apps says the same
    assert hits("/blog/1", days=5, servers=memcached.spec, db=db) == expected
    # once yesterday is rolled up it comes from the database
    yesterday = tmp_path / "yesterday.log"
    yesterday.write_bytes(clf(day[1], "12:00:00", "/blog/1") * 3)
    rollup(logpipe_bin, db, "--source-host", "web1", str(yesterday))
    reader = Reader(memcached.spec)
    try:
        rows = hits_table(reader, db, "/blog/1", today.isoformat(), 2)
    finally:
        reader.close()
    assert rows == [(day[1].isoformat(), 3, "database"), (day[0].isoformat(), 7, "memcached")]
    table_text = subprocess.run([logpipe_bin, "hits", "/blog/1", "--days", "3", "--db", db,
                                 "--memcached", memcached.spec], capture_output=True, text=True, timeout=60)
    assert table_text.returncode == 0
    # views and unique visitors (one client address and User-Agent: 1 a day; web1 + web2 are 2)
    assert [line.split() for line in table_text.stdout.splitlines()] == [
        ["day", "views", "visitors", "source"],
        [day[2].isoformat(), "8", "2", "database"], [day[1].isoformat(), "3", "1", "database"],
        [day[0].isoformat(), "7", "1", "memcached"], ["total", "18", "3", "days"]]
    assert [r.visitors for r in rows] == [1, 1]


def test_hits_days_without_a_database_yet(memcached, tmp_path):
    """Before the first rollup the history is empty, and reading it creates no file."""
    db = f"sqlite:///{tmp_path}/none/h.sqlite3"
    reader = Reader(memcached.spec)
    try:
        rows = hits_table(reader, db, "/x", "2026-11-21", 3, today="2026-11-21")
    finally:
        reader.close()
    assert rows == [("2026-11-19", 0, "none"), ("2026-11-20", 0, "memcached"), ("2026-11-21", 0, "memcached")]
    assert not (tmp_path / "none").exists()
