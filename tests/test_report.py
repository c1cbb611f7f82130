"""Issue 5, ``logpipe report --html``: a self-contained page, opened in headless Chromium.

The page is checked as a person would see it (a screenshot, drawn charts, no network, no script
from the data) and against the database with plain SQL written here, independently of
logpipe.history.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess

import pytest
from sqlalchemy import create_engine, text

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START, END = "2015-05-14", "2015-05-20"  # 7 days; the elastic log covers the last four
EVIL_PATH = "/<script>alert(1)</script>"


def sql(db: str, query: str, **params) -> list[tuple]:
    engine = create_engine(db)
    try:
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(text(query), params).all()]
    finally:
        engine.dispose()


def top(db: str, dimension: str, n: int = 10) -> list[list]:
    return [[v, int(c)] for v, c in sql(
        db, "SELECT value, SUM(count) AS c FROM counts WHERE dimension = :d AND day BETWEEN :a AND :b "
            "GROUP BY value ORDER BY c DESC, value LIMIT :n", d=dimension, a=START, b=END, n=n)]


def per_day(db: str, dimension: str) -> dict[str, int]:
    return {str(d): int(n) for d, n in sql(
        db, "SELECT day, SUM(count) FROM counts WHERE dimension = :d AND day BETWEEN :a AND :b GROUP BY day",
        d=dimension, a=START, b=END)}


@pytest.fixture(scope="module")
def history_db(real_logs_dir, logpipe_bin, tmp_path_factory):
    """The elastic log (plus two hostile lines) rolled up into SQLite by two source hosts."""
    root = tmp_path_factory.mktemp("report")
    db = f"sqlite:///{root}/h.sqlite3"
    evil = root / "evil.log"
    evil.write_bytes(
        f'192.0.2.9 - - [18/May/2015:10:00:00 +0000] "GET {EVIL_PATH} HTTP/1.1" 200 5 '
        '"https://www.google.com/search?q=%3Cimg+src%3Dx+onerror%3Dalert(2)%3E" '
        '"Mozilla/5.0 (X11; Linux x86_64; rv:38.0) Gecko/20100101 Firefox/38.0"\n'.encode() * 300)
    for host, path in (("web1", real_logs_dir / "elastic-examples-apache_logs.log"), ("web2", evil)):
        run = subprocess.run([logpipe_bin, "rollup", "--db", db, "--source-host", host, str(path)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
    return db, root


@pytest.fixture(scope="module")
def report_file(history_db, logpipe_bin):
    db, root = history_db
    out = root / "report.html"
    run = subprocess.run([logpipe_bin, "report", "--db", db, "--html", str(out), "--date", END, "--days", "7"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return out


def test_the_report_is_one_self_contained_file(report_file):
    page = report_file.read_text(encoding="utf-8")
    assert "Chart.js v4" in page  # the library is inlined
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", page, re.I)
    assert "default-src 'none'" in page  # and the page may not fetch anything
    assert EVIL_PATH not in page  # hostile values are escaped (as text and in the JSON)
    assert oct(report_file.stat().st_mode & 0o777) == "0o644"


def test_report_in_headless_chromium_draws_charts_whose_numbers_match_the_database(
        history_db, report_file, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("Debian's chromium is not installed")
    db, _ = history_db
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems, requests = [], []
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.on("pageerror", lambda e: problems.append(f"error: {e}"))
            page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report_file.as_uri())
            page.wait_for_function("window.logpipeChartsDrawn !== undefined", timeout=20000)
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 50_000

            # every chart is drawn: each canvas has many painted pixels
            painted = page.evaluate("""() => Array.from(document.querySelectorAll('canvas')).map(c => {
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                return [c.id, n, c.width, c.height]; })""")
            ids = [p[0] for p in painted]
            assert {"chart-daily", "chart-bot-share", "chart-urls", "chart-browser", "chart-platform",
                    "chart-bot", "chart-status", "chart-keyword"} <= set(ids)
            assert page.evaluate("window.logpipeChartsDrawn") == len(painted)
            for chart_id, pixels, width, height in painted:
                assert width > 100 and height > 100 and pixels > 2000, (chart_id, pixels)

            # the numbers in the page are the database's
            days = [(dt.date(2015, 5, 14) + dt.timedelta(days=i)).isoformat() for i in range(7)]
            covered = {str(d) for (d,) in sql(db, "SELECT DISTINCT day FROM file_days")}
            views, requests_per_day, bots = per_day(db, "url"), per_day(db, "status"), per_day(db, "bot")
            visitors = {str(d): int(n) for d, n in sql(
                db, "SELECT day, SUM(count) FROM counts WHERE dimension = 'visitors' AND value = '*' "
                    "AND day BETWEEN :a AND :b GROUP BY day", a=START, b=END)}
            assert visitors and all(0 < visitors[d] <= views[d] for d in visitors)
            expect_daily = [views.get(d, 0) if d in covered else None for d in days]
            assert expect_daily[:3] == [None, None, None] and all(expect_daily[3:])
            chart = page.evaluate("""id => { const c = Chart.getChart(id);
                return {labels: c.data.labels, sets: c.data.datasets.map(s => [s.label, s.data])}; }""",
                                  "chart-daily")
            assert chart["labels"] == days and chart["sets"][0][1] == expect_daily
            rows = page.eval_on_selector_all("#table-daily tbody tr", """rows => rows.map(r =>
                [r.dataset.day, ...Array.from(r.querySelectorAll('td.n')).map(td => td.dataset.count)])""")
            assert rows == [[d, *("" if d not in covered else str(m.get(d, 0))
                                  for m in (views, visitors, requests_per_day, bots))] for d in days]
            tiles = page.evaluate("""() => ['page-views', 'requests', 'bots'].map(
                t => Number(document.querySelector('#tile-' + t + ' b').dataset.count))""")
            assert tiles == [sum(views.values()), sum(requests_per_day.values()), sum(bots.values())]
            share = page.inner_text("#tile-bot-share b")
            assert share.replace("\u202f", " ") == f"{100 * sum(bots.values()) / sum(requests_per_day.values()):.1f} %"

            for dimension in ("url", "referrer_host", "referrer", "keyword", "browser", "platform", "bot",
                              "status", "notfound"):
                shown = page.eval_on_selector_all(f"#table-{dimension} tbody tr", """rows => rows
                    .filter(r => r.querySelector('td[data-count]'))
                    .map(r => [r.querySelector('td.v').textContent, Number(r.querySelector('td.n').dataset.count)])""")
                assert shown == top(db, dimension), dimension
            top_urls = top(db, "url")
            lines = page.evaluate("""() => Chart.getChart('chart-urls').data.datasets.map(s => s.data)""")
            for (url, _), data in zip(top_urls, lines, strict=True):
                series = {str(d): int(n) for d, n in sql(
                    db, "SELECT day, SUM(count) FROM counts WHERE dimension = 'url' AND value = :v GROUP BY day",
                    v=url)}
                assert data == [series.get(d, 0) if d in covered else None for d in days], url
            browsers = page.evaluate("""() => { const c = Chart.getChart('chart-browser');
                return [c.data.labels, c.data.datasets[0].data]; }""")
            expect_browsers = top(db, "browser")
            other = sum(views.values()) - sum(n for _, n in expect_browsers)
            assert browsers == [[v for v, _ in expect_browsers] + (["other"] if other else []),
                                [n for _, n in expect_browsers] + ([other] if other else [])]

            # hostile values are shown as text and run nothing
            assert EVIL_PATH in page.inner_text("#table-url")
            assert "<img src=x onerror=alert(2)>" in page.inner_text("#table-keyword")
            assert problems == []
            assert all(url.startswith("file://") for url in requests), requests
        finally:
            browser.close()


def test_report_options_and_errors(history_db, logpipe_bin, tmp_path):
    db, _ = history_db
    out = subprocess.run([logpipe_bin, "report", "--db", db, "--html", "-", "--days", "2", "--top", "3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(re.search(r'<script id="logpipe-data" type="application/json">(.*?)</script>',
                                out.stdout, re.S).group(1))
    assert data["days"] == ["2015-05-19", "2015-05-20"]  # ends with the latest rolled-up day
    assert len(data["urls"]["top"]) == 3
    assert [s["source_host"] for s in data["sources"]] == ["web1"]
    empty = subprocess.run([logpipe_bin, "report", "--db", f"sqlite:///{tmp_path}/none.sqlite3",
                            "--html", str(tmp_path / "r.html")], capture_output=True, text=True, timeout=60)
    assert empty.returncode == 1 and "no rolled-up data" in empty.stderr
    assert not (tmp_path / "none.sqlite3").exists() and not (tmp_path / "r.html").exists()


def test_report_of_one_virtual_host(real_logs_dir, logpipe_bin, tmp_path):
    db = f"sqlite:///{tmp_path}/h.sqlite3"
    run = subprocess.run([logpipe_bin, "rollup", "--db", db, "--format", "vhost_combined",
                          str(real_logs_dir / "dmjacas-logs-other_vhosts_access.log")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    for site, expected in (("neutralbank.app", None), ("elsewhere.example", 0)):
        out = subprocess.run([logpipe_bin, "report", "--db", db, "--html", "-", "--site", site, "--days", "15"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        data = json.loads(re.search(r'type="application/json">(.*?)</script>', out.stdout, re.S).group(1))
        total = sql(db, "SELECT SUM(count) FROM counts WHERE dimension = 'url' AND site = :s", s=site)[0][0] or 0
        assert data["summary"]["page_views"] == total == (expected if expected is not None else total)
        assert data["site"] == site
