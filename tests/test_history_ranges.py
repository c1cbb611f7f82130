"""Issue 13.3 (history without memcached) and 13.6 (date ranges): real processes, real SQLite,
real memcached (stopped for the outage), PostgreSQL for one case.

The expected numbers are written here from the lines each test feeds, not read back through
logpipe.history.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess

import pytest

from logpipe.api import Reader
from logpipe.history import History, hits, top_range

TODAY = dt.date.today()
DAY = [TODAY - dt.timedelta(days=n) for n in range(6)]  # DAY[0] is today


def clf(day: dt.date, path: str, clock: str = "10:00:00") -> bytes:
    month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][day.month - 1]
    return (f'192.0.2.1 - - [{day.day:02d}/{month}/{day.year}:{clock} +0000] "GET {path} HTTP/1.1" 200 5 "-" '
            '"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"\n').encode()


def logpipe(logpipe_bin, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([logpipe_bin, *args], capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture
def site(logpipe_bin, memcached, tmp_path):
    """History: DAY[3] and DAY[2] rolled up (two source hosts); DAY[1] and today live in memcached.

    /blog/1: 4 (DAY[3]) + 6 + 2 (DAY[2]) + 3 (DAY[1], live) + 7 (today) = 22; /other: 9 on DAY[2];
    /new: 5 today only.
    """
    db = f"sqlite:///{tmp_path}/h.sqlite3"
    web1, web2 = tmp_path / "web1.log", tmp_path / "web2.log"
    web1.write_bytes(clf(DAY[3], "/blog/1/") * 4 + clf(DAY[2], "/blog/1?x=1") * 6 + clf(DAY[2], "/other") * 9)
    web2.write_bytes(clf(DAY[2], "/blog/1", "11:00:00") * 2)
    for host, path in (("web1", web1), ("web2", web2)):
        run = logpipe(logpipe_bin, "rollup", "--db", db, "--source-host", host, str(path))
        assert run.returncode == 0, run.stderr
    live = clf(DAY[1], "/blog/1") * 3 + clf(TODAY, "/blog/1/", "00:00:01") * 7 + clf(TODAY, "/new", "00:00:02") * 5
    run = subprocess.run([logpipe_bin, "--memcached", memcached.spec, "--status-dir", str(tmp_path / "s")],
                         input=live, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return db


# -- 13.3: history without memcached -----------------------------------------------------------


def test_hits_days_with_memcached_stopped_prints_the_database_days(logpipe_bin, memcached, site):
    common = ["--db", site, "--memcached", memcached.spec, "--timeout", "0.5"]
    up = logpipe(logpipe_bin, "hits", "/blog/1", "--days", "5", "--json", *common)
    assert up.returncode == 0 and json.loads(up.stdout)["total"] == 22
    memcached.stop()
    down = logpipe(logpipe_bin, "hits", "/blog/1", "--days", "5", *common)
    assert down.returncode == 3  # documented: printed, but memcached could not be reached
    assert [line.split() for line in down.stdout.splitlines()] == [
        ["day", "views", "visitors", "source"],
        [DAY[4].isoformat(), "0", "-", "none"],
        [DAY[3].isoformat(), "4", "1", "database"],
        [DAY[2].isoformat(), "8", "2", "database"],         # one visitor on each of two source hosts
        [DAY[1].isoformat(), "-", "-", "unavailable"],   # yesterday, not rolled up: memcached's
        [TODAY.isoformat(), "-", "-", "unavailable"],    # never shown as 0
        ["total", "12", "5", "days,", "2", "unavailable"]]
    assert len(down.stderr.splitlines()) == 1
    assert "memcached" in down.stderr and "unavailable" in down.stderr and memcached.spec in down.stderr
    as_json = logpipe(logpipe_bin, "hits", "/blog/1", "--days", "5", "--json", *common)
    assert as_json.returncode == 3 and len(as_json.stderr.splitlines()) == 1
    document = json.loads(as_json.stdout)
    assert [(d["date"], d["views"], d["source"]) for d in document["days"]][-3:] == [
        (DAY[2].isoformat(), 8, "database"), (DAY[1].isoformat(), None, "unavailable"),
        (TODAY.isoformat(), None, "unavailable")]
    assert document["total"] == 12 and document["complete"] is False
    # the Python API for apps: the same rows, and no exception for the outage
    rows = hits("/blog/1", days=5, servers=memcached.spec, db=site, timeout=0.5)
    assert rows == [(d["date"], d["views"], d["source"]) for d in document["days"]]
    # one live day and no memcached: nothing to show, exit 1 with one line (as before)
    today_only = logpipe(logpipe_bin, "hits", "/blog/1", *common)
    assert today_only.returncode == 1 and today_only.stdout == ""
    assert len(today_only.stderr.splitlines()) == 1


def report_data(path) -> dict:
    page = path.read_text(encoding="utf-8")
    found = re.search(r'<script id="logpipe-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def test_report_with_memcached_stopped_writes_every_database_day(logpipe_bin, memcached, site, tmp_path):
    common = ["--db", site, "--memcached", memcached.spec, "--timeout", "0.5", "--date", TODAY.isoformat(),
              "--days", "5"]
    up_file = tmp_path / "up.html"
    up = logpipe(logpipe_bin, "report", "--html", str(up_file), *common)
    assert up.returncode == 0, up.stderr
    data = report_data(up_file)
    assert data["daily"]["page_views"] == [None, 4, 17, 3, 12]  # DAY[2]: 8 /blog/1 + 9 /other
    assert data["urls"]["top"][:2] == [["/blog/1", 22], ["/other", 9]]
    assert data["unavailable_days"] == []
    memcached.stop()
    down_file = tmp_path / "down.html"
    down = logpipe(logpipe_bin, "report", "--html", str(down_file), *common)
    assert down.returncode == 3
    assert len(down.stderr.splitlines()) == 1 and "unavailable" in down.stderr
    data = report_data(down_file)
    assert data["daily"]["page_views"] == [None, 4, 17, None, None]  # gaps, not zeros
    assert data["unavailable_days"] == [DAY[1].isoformat(), TODAY.isoformat()]
    assert data["urls"]["top"] == [["/blog/1", 12], ["/other", 9]]
    page = down_file.read_text(encoding="utf-8")
    assert page.count('class="n unavailable"') == 8  # two days, four columns (views, visitors, requests, bots)
    assert "memcached could not be reached" in page


# -- 13.6: date ranges --------------------------------------------------------------------------


def test_top_from_to_sums_the_database_days_and_today_from_memcached(logpipe_bin, memcached, site):
    common = ["--db", site, "--memcached", memcached.spec]
    ranged = logpipe(logpipe_bin, "top", "url", "--from", DAY[3].isoformat(), "--to", TODAY.isoformat(),
                     "--json", *common)
    assert ranged.returncode == 0, ranged.stderr
    document = json.loads(ranged.stdout)
    assert document["rows"] == [{"value": "/blog/1", "count": 22}, {"value": "/other", "count": 9},
                                {"value": "/new", "count": 5}]
    assert document["total"] == 36 and document["from"] == DAY[3].isoformat()
    # --days N is the short form; -N and today are accepted as days
    for short in (["--days", "4"], ["--from", "-3", "--to", "today"], ["--from", "-3"]):
        again = logpipe(logpipe_bin, "top", "url", "--json", *short, *common)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["rows"] == document["rows"], short
    # the database's days only
    past = logpipe(logpipe_bin, "top", "url", "--from", DAY[3].isoformat(), "--to", DAY[2].isoformat(), *common)
    assert past.returncode == 0
    lines = past.stdout.splitlines()
    assert lines[0] == (f"top url · {DAY[3]}..{DAY[2]} (2 days) · site (none) · 2 day(s) from the database")
    assert [line.split() for line in lines[1:]] == [["12", "/blog/1"], ["9", "/other"],
                                                    ["21", "total", "of", "every", "url", "(top", "2", "shown)"]]
    hits_range = logpipe(logpipe_bin, "hits", "/blog/1/", "--from", DAY[3].isoformat(), "--to",
                         DAY[1].isoformat(), "--json", *common)
    assert hits_range.returncode == 0
    assert json.loads(hits_range.stdout)["total"] == 4 + 8 + 3
    # bad ranges are one line and exit 2
    for bad in (["--from", TODAY.isoformat(), "--to", DAY[2].isoformat()], ["--from", "-2", "--days", "3"],
                ["--from", "2026-13-45"], ["--to", "soon"], ["--date", TODAY.isoformat(), "--to", "today"]):
        out = logpipe(logpipe_bin, "top", "url", *bad, *common)
        assert out.returncode == 2 and len(out.stderr.splitlines()) == 1 and out.stdout == "", bad
    # memcached stopped: the database's part, exit 3
    memcached.stop()
    down = logpipe(logpipe_bin, "top", "url", "--days", "4", "--timeout", "0.5", *common)
    assert down.returncode == 3 and len(down.stderr.splitlines()) == 1
    lines = down.stdout.splitlines()
    assert "2 unavailable" in lines[0]
    assert [line.split()[:2] for line in lines[1:]] == [["12", "/blog/1"], ["9", "/other"], ["21", "total"]]


def test_top_range_in_python_against_postgresql(logpipe_bin, memcached, postgres_db, tmp_path):
    log = tmp_path / "old.log"
    log.write_bytes(clf(DAY[2], "/a") * 3 + clf(DAY[3], "/b") * 4 + clf(DAY[3], "/a"))
    run = logpipe(logpipe_bin, "rollup", "--db", postgres_db, str(log))
    assert run.returncode == 0, run.stderr
    live = subprocess.run([logpipe_bin, "--memcached", memcached.spec, "--status-dir", str(tmp_path / "s")],
                          input=clf(TODAY, "/b") * 2 + clf(TODAY, "/c"), capture_output=True, timeout=60)
    assert live.returncode == 0
    reader, history = Reader(memcached.spec), History(postgres_db)
    try:
        found = top_range("url", DAY[3], TODAY, n=2, reader=reader, history=history)
        assert found.rows == [("/b", 6), ("/a", 4)] and found.total == 11 and found.complete
        assert found.database_days == [DAY[3].isoformat(), DAY[2].isoformat()]
        assert found.live_days == [DAY[1].isoformat(), TODAY.isoformat()]
        memcached.stop()
        down = top_range("url", DAY[3], TODAY, n=None, reader=Reader(memcached.spec, timeout=0.5),
                         history=history)
        assert down.rows == [("/a", 4), ("/b", 4)] and down.total == 8
        assert down.unavailable_days == down.live_days and not down.complete
    finally:
        reader.close()
        history.close()


def test_top_visitors_totals_the_site_s_unique_visitors_not_the_urls_sum(logpipe_bin, memcached, tmp_path):
    """Two visitors who each read /a and /b: 2 per URL, and 2 for the site (not 4), in the
    database and in memcached; ``*`` (the site's counter) is never a row."""
    other = ('192.0.2.9 - - [{d}/{m}/{y}:10:00:00 +0000] "GET {p} HTTP/1.1" 200 5 "-" '
             '"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15"\n')

    def day_lines(day):
        month = day.strftime("%b")
        return b"".join(clf(day, p) + other.format(d=f"{day.day:02d}", m=month, y=day.year, p=p).encode()
                        for p in ("/a", "/b"))

    db = f"sqlite:///{tmp_path}/v.sqlite3"
    old = tmp_path / "old.log"
    old.write_bytes(day_lines(DAY[3]))
    assert logpipe(logpipe_bin, "rollup", "--db", db, str(old)).returncode == 0
    live = subprocess.run([logpipe_bin, "--memcached", memcached.spec, "--status-dir", str(tmp_path / "s")],
                          input=day_lines(TODAY), capture_output=True, timeout=60)
    assert live.returncode == 0, live.stderr
    common = ["--db", db, "--memcached", memcached.spec, "--json"]
    for when in (["--date", DAY[3].isoformat()], ["--date", "today"]):
        out = logpipe(logpipe_bin, "top", "visitors", *when, *common)
        assert out.returncode == 0, out.stderr
        document = json.loads(out.stdout)
        assert document["rows"] == [{"value": "/a", "count": 2}, {"value": "/b", "count": 2}], when
        assert document["total"] == 2, when
    both = json.loads(logpipe(logpipe_bin, "top", "visitors", "--from", DAY[3].isoformat(), "--to", "today",
                              *common).stdout)
    assert both["rows"] == [{"value": "/a", "count": 4}, {"value": "/b", "count": 4}]
    assert both["total"] == 4  # visitor-days: the same two people on two days
    text = logpipe(logpipe_bin, "top", "visitors", "--date", "today", *common[:-1])
    assert text.stdout.splitlines()[-1].split() == ["2", "unique", "visitors", "of", "the", "site", "(top", "2",
                                                    "shown)"]
