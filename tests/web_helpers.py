"""Real input for the web tests (Django app, Flask extension): log lines with a chosen
``%t``, fed through the real ``logpipe`` daemon into memcached and through ``logpipe rollup``
into a SQLite history database."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

FIREFOX = b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def zone(offset: str) -> dt.timezone:
    """``"-1200"`` → a fixed-offset timezone."""
    sign = -1 if offset[0] == "-" else 1
    return dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))


def clf(moment: dt.datetime, path: str, n: int = 1) -> bytes:
    """*n* combined-format lines of a page view of *path* at *moment* (an aware datetime)."""
    stamp = moment.strftime("%d/%b/%Y:%H:%M:%S %z").encode()
    line = (b'192.0.2.7 - - [' + stamp + b'] "GET ' + path.encode() + b' HTTP/1.1" 200 512 "-" "'
            + FIREFOX + b'"\n')
    return line * n


def feed(logpipe_bin: str, memcached_spec: str, data: bytes, tmp_path: Path) -> None:
    """Pipe *data* through the logpipe daemon (as httpd would) into memcached; wait for its exit."""
    run = subprocess.run([logpipe_bin, "--memcached", memcached_spec, "--status-dir", str(tmp_path / "status")],
                         input=data, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr


def rollup(logpipe_bin: str, db: str, data: bytes, tmp_path: Path) -> None:
    """Store the days of *data* in the history database *db* with ``logpipe rollup``."""
    log = tmp_path / "access.log.1"
    log.write_bytes(data)
    run = subprocess.run([logpipe_bin, "rollup", "--db", db, "--source-host", "web1", str(log)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr


def site_data(logpipe_bin: str, memcached_spec: str, tmp_path: Path, offset: str = "-1200") -> dict:
    """The scenario of the web tests, with Apache's ``%t`` at UTC *offset*:

    * today (in that offset): ``/press/first-light/`` 5 views (one with a query string),
      ``/press/other/`` 2, ``/`` 1 — in memcached;
    * yesterday: ``/press/first-light/`` 3, two days ago 1 — in the rollup database.

    Returns ``{"db", "today", "yesterday", "before"}`` (dates in that offset).
    """
    now = dt.datetime.now(zone(offset)) - dt.timedelta(seconds=2)
    yesterday, before = now - dt.timedelta(days=1), now - dt.timedelta(days=2)
    db = f"sqlite:///{tmp_path}/history.sqlite3"
    rollup(logpipe_bin, db, clf(before, "/press/first-light/") + clf(yesterday, "/press/first-light/", 3),
           tmp_path)
    feed(logpipe_bin, memcached_spec,
         clf(now, "/press/first-light/", 4) + clf(now, "/press/first-light/?utm_source=x")
         + clf(now, "/press/other/", 2) + clf(now, "/"), tmp_path)
    return {"db": db, "today": now.date(), "yesterday": yesterday.date(), "before": before.date()}
