"""Issue 15: the writer publishes the day it counts in (``{prefix}:#today``), and
``Reader.today()`` reads it — through the real ``logpipe`` daemon and a real memcached."""

from __future__ import annotations

import datetime as dt
import subprocess
import time

from logpipe.api import TODAY_REFRESH, Reader
from logpipe.keys import parse_today, today_key
from servers import wait_for
from web_helpers import clf, feed, zone


def published(memcached, prefix: str = "logpipe") -> bytes | None:
    return memcached.client().get(today_key(prefix))


def test_the_item_holds_the_newest_t_date_and_offset(memcached, logpipe_bin, tmp_path):
    now = dt.datetime.now(zone("-1200"))
    feed(logpipe_bin, memcached.spec, clf(now - dt.timedelta(days=1), "/a") + clf(now, "/a", 3), tmp_path)
    assert published(memcached) == f"{now.date()} -1200".encode()
    ttl = memcached.command(f"mg {today_key('logpipe')} t").decode()
    assert ttl.startswith("HD t") and 86000 < int(ttl.split()[1][1:]) <= 86400   # the counters' TTL
    # another --prefix, another item
    feed(logpipe_bin, memcached.spec, clf(now, "/a"), tmp_path)  # same prefix: unchanged
    run = subprocess.run([logpipe_bin, "--memcached", memcached.spec, "--prefix", "site2",
                          "--status-dir", str(tmp_path / "s2")],
                         input=clf(dt.datetime.now(zone("+0530")), "/b"), capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert published(memcached, "site2").endswith(b" +0530")


def test_several_servers_hold_the_item_where_readers_look(memcached_factory, logpipe_bin, tmp_path):
    servers = [memcached_factory(), memcached_factory(), memcached_factory()]
    spec = ",".join(s.spec for s in servers)
    now = dt.datetime.now(zone("+0930"))
    feed(logpipe_bin, spec, clf(now, "/a"), tmp_path)
    assert sum(published(s) is not None for s in servers) == 1          # one item, on its server
    reader = Reader(",".join(reversed(spec.split(","))))                # any order, as HashClient
    try:
        assert reader.today() == max(now.date(), dt.datetime.now(zone("+0930")).date()).isoformat()
        assert reader.hits_today("/a") == 1
    finally:
        reader.close()


def test_the_day_never_moves_back_and_a_future_t_is_ignored(memcached, logpipe_bin, tmp_path):
    now = dt.datetime.now(zone("+0100"))
    proc = subprocess.Popen([logpipe_bin, "--memcached", memcached.spec, "--status-dir", str(tmp_path / "s")],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(clf(now, "/a"))
        proc.stdin.flush()
        wait_for(lambda: published(memcached) is not None, timeout=30, message="#today")
        assert published(memcached) == f"{now.date()} +0100".encode()
        # a request that started yesterday, logged after midnight; then a forged future %t
        proc.stdin.write(clf(now - dt.timedelta(days=1), "/late"))
        proc.stdin.flush()
        wait_for(lambda: memcached.client().get(f"logpipe:{(now - dt.timedelta(days=1)).date()}:url:/late"),
                 timeout=30, message="the late line counted")
        proc.stdin.write(clf(now + dt.timedelta(days=2), "/future"))
        proc.stdin.flush()
        wait_for(lambda: memcached.client().get(f"logpipe:{(now + dt.timedelta(days=2)).date()}:url:/future"),
                 timeout=30, message="the future line counted")
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    assert published(memcached) == f"{now.date()} +0100".encode()


def test_reader_today_follows_the_writer_then_its_time_zone_then_the_local_date(memcached, monkeypatch):
    client = memcached.client()
    reader = Reader(memcached.spec, time_zone="Pacific/Kiritimati")
    try:
        # no item: the configured zone (UTC+14)
        assert reader.today() == dt.datetime.now(zone("+1400")).date().isoformat()
        # an item: its date, or the current date at its offset when later (a quiet night)
        client.set(today_key("logpipe"), b"2001-02-03 -1200")
        monkeypatch.setattr(reader, "_published_read", -1e9)
        assert reader.today() == dt.datetime.now(zone("-1200")).date().isoformat()
        future = (dt.datetime.now(zone("-1200")) + dt.timedelta(days=1)).date()
        client.set(today_key("logpipe"), f"{future} -1200".encode())
        assert reader.today() != future.isoformat()           # cached for TODAY_REFRESH seconds
        monkeypatch.setattr(reader, "_published_read", time.monotonic() - TODAY_REFRESH)
        assert reader.today() == future.isoformat()           # a writer whose clock is ahead
    finally:
        reader.close()
    assert Reader(memcached.spec).today() == future.isoformat()
    memcached.stop()
    assert Reader(memcached.spec, timeout=0.2).today() == dt.date.today().isoformat()  # never raises


def test_parse_today_rejects_what_the_writer_never_writes():
    assert parse_today(b"2026-11-21 +0900") == (dt.date(2026, 11, 21), zone("+0900"))
    assert parse_today("2026-11-21 -0330")[1] == zone("-0330")
    for bad in (b"", b"2026-11-21", b"2026-13-01 +0000", b"2026-11-21 +2400", b"2026-11-21 0900", b"junk"):
        assert parse_today(bad) is None, bad
