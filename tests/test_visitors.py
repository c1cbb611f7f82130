"""Issue 12, unique visitors: exact across web servers, crashes and restarts; private; everywhere.

Real memcached and real httpd (tests/servers.py).  A visitor is one (client address,
User-Agent) pair per day on page views (README, "Unique visitors").
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse
from collections import defaultdict
from hashlib import blake2b

import pytest

from logpipe.api import Reader, today
from logpipe.counting.visitors import salt_key
from logpipe.daemon.markerstore import MarkerStore
from logpipe.daemon.visitors import KILL_ENV
from logpipe.keys import visitors_key

from servers import wait_for

DAY = "2026-11-21"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.{n}) Gecko/20100101 Firefox/120.{n}"
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def line(ip: str, agent: str, path: str, *, clock: str = "10:00:00", status: int = 200,
         day: str = "21/Nov/2026") -> bytes:
    """One combined-format line."""
    return (f'{ip} - - [{day}:{clock} +0000] "GET {path} HTTP/1.1" {status} 5 "-" "{agent}"\n').encode()


def visits(ips: range, pages: int = 5) -> tuple[bytes, dict[str, set]]:
    """Lines of visitors 10.1.x.y (one Firefox version each) viewing pages; plus what they make:
    ``{"*": {visitor…}, "/p/N": {visitor…}}``."""
    out, seen = [], defaultdict(set)
    for i in ips:
        ip, agent = f"10.1.{i // 256}.{i % 256}", FIREFOX.format(n=i % 3)
        for k in range(1 + i % pages):
            path = f"/p/{(i + k) % 7}"
            out.append(line(ip, agent, path))
            seen["*"].add((ip, agent))
            seen[path].add((ip, agent))
    return b"".join(out), seen


def union(*parts: dict[str, set]) -> dict[str, set]:
    """The visitors of several ``visits()`` results together."""
    seen: dict[str, set] = defaultdict(set)
    for part in parts:
        for path, who in part.items():
            seen[path] |= who
    return seen


def noise(ips: range) -> bytes:
    """Requests that never make a visitor: bots, static files, errors, POSTs."""
    out = []
    for i in ips:
        ip = f"10.9.{i // 256}.{i % 256}"
        out.append(line(ip, BOT, "/p/1"))
        out.append(line(ip, FIREFOX.format(n=1), "/style.css"))
        out.append(line(ip, FIREFOX.format(n=1), "/favicon.ico"))
        out.append(line(ip, FIREFOX.format(n=1), "/p/2", status=404))
        out.append(line(ip, FIREFOX.format(n=1), "/p/3").replace(b"GET", b"POST"))
    return b"".join(out)


def expected_counts(seen: dict[str, set]) -> dict[str, int]:
    return {visitors_key(DAY, None if path == "*" else path): len(who) for path, who in seen.items()}


def read_visitors(memcached, keys) -> dict[str, int]:
    reader = Reader(memcached.spec)
    try:
        return reader.store.get_counts(list(keys))
    finally:
        reader.close()


def every_item(memcached) -> dict[str, bytes]:
    """Every item memcached holds, key → value (lru_crawler metadump, then mg)."""
    text = memcached.command(b"lru_crawler metadump all", b"END\r\n", timeout=10).decode("ascii")
    keys = [urllib.parse.unquote(row.split()[0][4:]) for row in text.splitlines() if row.startswith("key=")]
    out = {}
    for key in keys:
        reply = memcached.command(f"mg {key} v")
        out[key] = reply.split(b"\r\n", 1)[1] if reply.startswith(b"VA") else b""
    return out


def assert_no_raw_identity(items: dict[str, bytes], ips: list[str], agents: list[str]) -> None:
    assert items
    for key, value in items.items():
        if ":post_ip:" in key:
            # POSTs per client address and hour, for anti-spam (README, "post_ip"): the one
            # dimension that names addresses, for 2 hours; --dimensions without post_ip stores none.
            continue
        blob = key.encode() + b" " + value
        for ip in ips:
            assert ip.encode() not in blob, key
        for agent in agents:
            assert agent.encode() not in blob and b"Firefox/120" not in blob, key


def daemon(logpipe_bin, memcached, status_dir, *extra):
    return subprocess.Popen([logpipe_bin, "--memcached", memcached.spec, "--status-dir", str(status_dir),
                             "--flush-interval", "0.2", *extra], stdin=subprocess.PIPE, stderr=subprocess.PIPE)


# -- offline: --dry-run and --explain ------------------------------------------------------------


def test_dry_run_counts_visitors_exactly_and_never_bots_or_static(logpipe_bin):
    data, seen = visits(range(300))
    result = subprocess.run([logpipe_bin, "--dry-run"], input=data + noise(range(50)), capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    keys = {k: int(n) for n, k in (row.split() for row in out.splitlines() if ":visitors:" in row)}
    assert keys == expected_counts(seen)
    assert f"unique visitors   300 on {DAY}" in out.splitlines()
    off = subprocess.run([logpipe_bin, "--dry-run", "--dimensions", "url,status"], input=data,
                         capture_output=True, timeout=60)
    assert off.returncode == 0 and b"visitors" not in off.stdout


def test_explain_says_whether_a_line_was_a_new_visitor(logpipe_bin):
    agent = FIREFOX.format(n=0)
    data = (line("10.0.0.1", agent, "/a") + line("10.0.0.1", agent, "/b") + line("10.0.0.2", agent, "/a")
            + line("10.0.0.3", BOT, "/a") + line("10.0.0.1", agent, "/a", day="22/Nov/2026"))
    result = subprocess.run([logpipe_bin, "--dry-run", "--explain"], input=data, capture_output=True, timeout=60)
    notes = [row.strip() for row in result.stdout.decode().splitlines() if row.startswith("    visitor")]
    assert notes == ["visitor: new today", "visitor: already counted today", "visitor: new today",
                     "visitor: new today"]  # the bot line has none; a new day is a new visitor
    assert "unique visitors   2 on 2026-11-21" in result.stdout.decode()


# -- live: exactness -------------------------------------------------------------------------------


def assert_every_marker_counted(items: dict[str, bytes]) -> None:
    """Every visitor marker is counted: it holds ``p<ttl>:<grace>:<unit>`` and its unit's commit
    record ``{head}#c.{unit}`` exists (nothing is left pending, no marker lacks its record)."""
    markers = {k: v.strip() for k, v in items.items() if "#v." in k or "#u." in k}
    assert markers
    units = {k: v.split(b":")[2].decode() for k, v in markers.items() if v.startswith(b"p") and v.count(b":") == 2}
    assert units.keys() == markers.keys(), {k: v for k, v in markers.items() if k not in units}
    missing = [k for k, unit in units.items() if k[:k.rindex("#")] + "#c." + unit not in items]
    assert not missing, missing[:5]


def test_two_daemons_with_overlapping_visitors_count_each_once(logpipe_bin, memcached, tmp_path):
    """Two web servers (two logpipe daemons) see overlapping visitors; memcached holds the exact
    union, and no item holds a client address or User-Agent."""
    first, seen_a = visits(range(0, 3000))
    second, seen_b = visits(range(2000, 5000))
    seen = union(seen_a, seen_b)
    procs = [daemon(logpipe_bin, memcached, tmp_path / f"s{i}") for i in range(2)]
    # fed at the same time, so both daemons add the shared visitors' markers concurrently
    for proc, data in zip(procs, (first, second)):
        threading.Thread(target=lambda p=proc, d=data: (p.stdin.write(d + noise(range(200))), p.stdin.close()),
                         daemon=True).start()
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read()
    expected = expected_counts(seen)
    assert read_visitors(memcached, expected) == expected
    assert expected[visitors_key(DAY)] == 5000
    items = every_item(memcached)
    assert_no_raw_identity(items, ["10.1.", "10.9."], [FIREFOX.format(n=n) for n in range(3)] + [BOT])
    # one salt, one marker per visitor and one per (visitor, URL): nothing else per visitor
    markers = [k for k in items if "#v." in k]
    assert len(markers) == 5000 and len([k for k in items if k.endswith("#salt")]) == 1
    assert_every_marker_counted(items)
    assert len([k for k in items if "#u." in k]) == sum(len(w) for p, w in seen.items() if p != "*")


def test_a_killed_worker_and_a_restarted_daemon_count_no_visitor_twice(logpipe_bin, memcached, tmp_path):
    """SIGKILL the worker mid-stream (the supervisor replays what was not acknowledged), then run a
    second daemon (a restart) over the same visitors again: every visitor counted once."""
    data, seen = visits(range(4000))
    lines = data.splitlines(keepends=True)
    status = tmp_path / "status"
    proc = daemon(logpipe_bin, memcached, status)
    reader = Reader(memcached.spec)
    try:
        proc.stdin.write(b"".join(lines[: len(lines) // 2]))
        proc.stdin.flush()
        assert wait_for(lambda: reader.visitors(None, DAY) > 0, timeout=30)

        def replayed():
            for path in status.glob("supervisor-*.json"):
                try:
                    return json.loads(path.read_text()).get("lines_replayed", 0)
                except (OSError, ValueError):
                    pass
            return 0

        def worker_pid():
            for path in status.glob("worker-*.json"):
                pid = int(path.stem.split("-")[1])
                if pid not in killed:
                    return pid
            return None

        killed: list[int] = []
        rest = lines[len(lines) // 2:]
        for start in range(0, len(rest), 500):
            proc.stdin.write(b"".join(rest[start:start + 500]))
            proc.stdin.flush()
            if not replayed():
                # kill the worker right after a write, while it holds lines not yet acknowledged;
                # the supervisor gives them (and their visitors' markers) to the next worker
                pid = wait_for(worker_pid, timeout=30)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        assert wait_for(lambda: replayed() > 0, timeout=30)
        proc.stdin.close()
        assert proc.wait(120) == 0, proc.stderr.read()
        expected = expected_counts(seen)
        counted = read_visitors(memcached, expected)
        # Exact: the killed workers' pending markers were taken over by the next worker
        # (README, "Unique visitors"), and no visitor counted twice.
        assert counted == expected
        views = reader.hits("/p/0", DAY)
        # a restart (new daemon, new worker, same day) over the same lines: views double, visitors do not
        again = daemon(logpipe_bin, memcached, tmp_path / "again")
        again.stdin.write(data)
        again.stdin.close()
        assert again.wait(120) == 0
        assert reader.hits("/p/0", DAY) == 2 * views
        assert read_visitors(memcached, expected) == counted
    finally:
        reader.close()


@pytest.mark.parametrize("point", ["claim", "commit", "commit-half"])
def test_a_worker_killed_between_marker_and_counter_commands_counts_exactly(point, logpipe_bin, memcached,
                                                                            tmp_path):
    """The worker SIGKILLs itself (test hook) right after a claim round trip that stored markers
    (they stay pending: the replaying worker takes them over after the grace), right after sending
    a commit (memcached applies the quiet commands it received), or between two send() calls of a
    commit (whole units applied or not).  Site-wide and per-URL visitors are exact."""
    data, seen = visits(range(4000))
    flag = tmp_path / "killed"
    env = dict(os.environ, **{KILL_ENV: f"{point}:{flag}"})
    proc = subprocess.Popen([logpipe_bin, "--memcached", memcached.spec, "--status-dir", str(tmp_path / "s"),
                             "--flush-interval", "0.2"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdin.write(data + noise(range(100)))
    proc.stdin.close()
    assert proc.wait(120) == 0, proc.stderr.read()
    assert flag.exists()  # the hook fired: a worker died at that point
    expected = expected_counts(seen)
    assert read_visitors(memcached, expected) == expected
    assert_every_marker_counted(every_item(memcached))


def test_two_servers_two_daemons_one_killed_mid_commit_count_exactly(logpipe_bin, memcached_factory, tmp_path):
    """Two memcached servers (markers live on their counter's server) and two daemons with
    overlapping visitors; one daemon's worker dies between two send() calls of a commit."""
    servers = [memcached_factory() for _ in range(2)]
    spec = ",".join(server.spec for server in servers)
    first, seen_a = visits(range(0, 3000))
    second, seen_b = visits(range(1500, 4500))
    seen = union(seen_a, seen_b)
    flag = tmp_path / "killed"
    procs = []
    for i, data in enumerate((first, second)):
        env = dict(os.environ, **({KILL_ENV: f"commit-half:{flag}"} if i == 0 else {}))
        procs.append(subprocess.Popen([logpipe_bin, "--memcached", spec, "--status-dir", str(tmp_path / f"s{i}"),
                                       "--flush-interval", "0.2"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=env))
    for proc, data in zip(procs, (first, second)):
        threading.Thread(target=lambda p=proc, d=data: (p.stdin.write(d), p.stdin.close()), daemon=True).start()
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read()
    assert flag.exists()
    expected = expected_counts(seen)
    reader = Reader(spec)
    try:
        assert reader.store.get_counts(list(expected)) == expected
        # every site-wide marker is counted (c) and lives with visitors:*: keys recomputed from the salt
        salt = bytes.fromhex(reader.store.get_many([salt_key(DAY, "logpipe")])[salt_key(DAY, "logpipe")].decode())
        markers = {f"logpipe:{DAY}:visitors:#v." + blake2b(ip.encode() + b"\0" + agent.encode(), key=salt,
                                                             digest_size=12).hexdigest(): visitors_key(DAY)
                   for ip, agent in seen["*"]}
        counted, others, failed = MarkerStore(reader.store).read(markers)
        assert counted == set(markers) and not others and not failed
        home = reader.store.server_for(visitors_key(DAY)).name
        assert all(not [k for k in every_item(server) if "#v." in k] for server in servers if server.spec != home)
    finally:
        reader.close()


def test_a_live_writers_young_pending_markers_are_not_taken_over(memcached):
    """Another writer reads a young pending marker (age within the grace) and waits; an old one
    (its creator dead) it takes over with a compare-and-swap, and of two takers only one wins."""
    from logpipe.config import Settings
    from logpipe.daemon.store import CounterStore
    from logpipe.daemon.visitors import VisitorMarkers

    counter = visitors_key(DAY)
    young, old = f"logpipe:{DAY}:visitors:#v.{1:024x}", f"logpipe:{DAY}:visitors:#v.{2:024x}"
    memcached.command(f"ms {young} 6 T600\r\np600:5")
    memcached.command(f"ms {old} 6 T590\r\np600:5")  # created 10 s ago with --ttl 600
    takers = []
    for _ in range(2):
        store = CounterStore([("127.0.0.1", memcached.port)], ttl=600)
        takers.append(VisitorMarkers(store, Settings(memcached=memcached.spec)))
    for taker in takers:
        taker.checking = {young: counter, old: counter}
        assert taker._check()
        assert set(taker.stale) == {old} and set(taker.checking) == {young}
    for taker in takers:
        taker._start_claim()
        assert taker._finish_claim()
    assert [t.takeovers for t in takers] == [1, 0] and old in takers[1].checking
    assert read_visitors(memcached, [counter]) == {counter: 1}
    # the taken-over marker now names the winner's unit, whose commit record exists
    value = memcached.command(f"mg {old} v").split(b"\r\n")[1]
    unit = value.split(b":")[2].decode()
    assert value.startswith(b"p600:5:") and memcached.command(f"mg logpipe:{DAY}:visitors:#c.{unit}") == b"HD\r\n"
    assert memcached.command(f"mg {young} v").split(b"\r\n")[1] == b"p600:5"
    counted, others, _failed = MarkerStore(takers[0].store).read({old: counter, young: counter})
    assert counted == {old} and set(others) == {young}
    for taker in takers:
        taker.store.close()


def test_a_claim_in_flight_when_memcached_freezes_counts_once(memcached):
    """The worker sends a claim and reads lines while memcached answers it (the claim in flight);
    memcached freezes before answering, so the reply times out, but when it wakes it applies the
    adds up to its first failed reply write (the worker closed the connection): the worker adds
    them all again, owns those memcached had not applied (HD), finds the others pending without a
    commit record (its own unit, never committed: NS), takes them over after the grace and counts
    every visitor once."""
    from logpipe.config import Settings
    from logpipe.daemon.store import CounterStore
    from logpipe.daemon.visitors import VisitorMarkers

    people = [(b"10.2.0.%d" % i, FIREFOX.format(n=i % 3).encode()) for i in range(40)]
    held = {(DAY, None, f"/p/{i % 4}", address, agent) for i, (address, agent) in enumerate(people)}
    held |= {(DAY, None, "/p/9", address, agent) for address, agent in people[:10]}
    store = CounterStore([("127.0.0.1", memcached.port)], ttl=600, timeout=0.3)
    markers = VisitorMarkers(store, Settings(memcached=memcached.spec, timeout=0.3))
    try:
        # one visitor first: the salt exists and the connection is open before memcached freezes
        markers.add({(DAY, None, "/warm", b"10.3.0.1", people[0][1])})
        assert markers.flush(check=True)
        memcached.pause()
        try:
            markers.add(set(held))
            assert markers.flush(check=False)  # sent (the kernel buffers it), not answered
            assert markers.claimed_for() >= 0 and markers.waiting() == 40 + 50  # site + per-URL markers
            assert not markers.settle()  # the reply times out: nothing is known stored
        finally:
            memcached.resume()
        assert markers.claimed_for() < 0 and len(markers.pending) == 90
        deadline = time.monotonic() + 30
        while not markers.flush(check=True):
            assert time.monotonic() < deadline, (markers.waiting(), markers.last_error)
            for server in store.servers:
                server.retry_at = 0.0
            time.sleep(0.2)
        assert 1 <= markers.takeovers <= 90  # those applied unseen were taken over
        expected = {visitors_key(DAY): 41, **{visitors_key(DAY, f"/p/{k}"): 10 for k in range(4)},
                    visitors_key(DAY, "/p/9"): 10, visitors_key(DAY, "/warm"): 1}
        assert read_visitors(memcached, expected) == expected
        assert_every_marker_counted(every_item(memcached))
    finally:
        store.close()


def test_markers_of_the_previous_format_are_read_as_before(memcached):
    """An upgrade meets markers the previous logpipe wrote: ``c`` (committed one by one) is
    counted, ``p<ttl>:<grace>`` without a unit stays pending (its age decides), and a pending
    marker whose unit has no record is pending too."""
    from logpipe.daemon.store import CounterStore

    counter = visitors_key(DAY)
    keys = [f"logpipe:{DAY}:visitors:#v.{n:024x}" for n in range(4)]
    for key, value in zip(keys, ["c", "p600:5", "p600:5:0a0b0c0d.1", "p600:5:0a0b0c0d.2"]):
        memcached.command(f"ms {key} {len(value)} T600\r\n{value}")
    memcached.command(f"ms logpipe:{DAY}:visitors:#c.0a0b0c0d.2 1 T600\r\nc")
    store = CounterStore([("127.0.0.1", memcached.port)], ttl=600)
    try:
        counted, others, failed = MarkerStore(store).read(dict.fromkeys(keys, counter))
    finally:
        store.close()
    assert counted == {keys[0], keys[3]} and set(others) == {keys[1], keys[2]} and not failed
    assert others[keys[1]][0] == b"p600:5" and 590 < others[keys[1]][2] <= 600


def test_markers_wait_while_memcached_is_down_and_drops_are_reported(logpipe_bin, memcached_factory, tmp_path):
    """With memcached stopped, markers wait (bounded by --max-pending-visitors) and the status file
    says how many were dropped; once it is back, the kept ones are counted exactly once."""
    server = memcached_factory()
    server.stop()
    status = tmp_path / "status"
    proc = daemon(logpipe_bin, server, status, "--max-pending-visitors", "100")
    try:
        data, _seen = visits(range(400), pages=1)
        proc.stdin.write(data)
        proc.stdin.flush()

        def dropped():
            for path in status.glob("worker-*.json"):
                try:
                    doc = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if doc.get("dropped_visitors"):
                    return doc
            return None

        assert wait_for(dropped, timeout=30)
        doc = dropped()
        assert doc["pending_visitors"] <= 100 and doc["dropped_visitors"] >= 200
        server.restart()  # the same port, empty
        proc.stdin.close()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = read_visitors(server, [visitors_key(DAY)]).get(visitors_key(DAY), 0)
    assert 0 < kept <= 100


# -- through httpd -----------------------------------------------------------------------------------


def test_two_httpd_with_a_graceful_restart_count_exact_visitors(apache_factory, memcached, logpipe_bin,
                                                                   tmp_path):
    """Two real web servers behind one memcached; 60 browsers (distinct User-Agents) visit both,
    one server restarts gracefully under load; bots and static files never count."""
    logs = []
    for i in range(2):
        args = f"{logpipe_bin} --memcached {memcached.spec} --status-dir {tmp_path / f's{i}'} --flush-interval 0.2"
        logs.append(apache_factory([f'CustomLog "|{args}" combined']))
    for i in range(2):
        assert wait_for(lambda i=i: list((tmp_path / f"s{i}").glob("supervisor-*.json")), timeout=20)
    browsers = [f"Mozilla/5.0 (X11; Linux x86_64; rv:1{n}.0) Gecko/20100101 Firefox/1{n}.0" for n in range(60)]
    plan = [(f"/page/{(n + k) % 4}", {"User-Agent": ua}) for n, ua in enumerate(browsers) for k in range(3)]
    noise_plan = [("/page/1", {"User-Agent": BOT}), ("/style.css", {"User-Agent": browsers[0]})] * 20
    results = []
    threads = [threading.Thread(target=lambda a=apache: results.append(a.send(plan + noise_plan, concurrency=4)))
               for apache in logs]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    logs[0].graceful()
    for thread in threads:
        thread.join(120)
    for apache in logs:
        apache.stop()
    reader = Reader(memcached.spec)
    try:
        day = today()
        per_url = defaultdict(set)
        for path, headers in plan:
            per_url[path].add(headers["User-Agent"])
        assert wait_for(lambda: reader.visitors_today() == 60, timeout=20)
        assert {p: reader.visitors_today(p) for p in per_url} == {p: len(w) for p, w in per_url.items()}
        assert reader.visitors_today("/style.css") == 0
        top = reader.top("visitors", day, n=None)
        assert sorted((e.value, e.count) for e in top) == sorted((p, len(w)) for p, w in per_url.items())
        shown = subprocess.run([logpipe_bin, "hits", "/page/1", "--memcached", memcached.spec],
                               capture_output=True, text=True, timeout=30)
        views = reader.hits_today("/page/1")
        assert shown.stdout.strip() == f"{views} views, {len(per_url['/page/1'])} unique visitors"
        top_cli = subprocess.run([logpipe_bin, "top", "visitors", "--memcached", memcached.spec, "--json"],
                                 capture_output=True, text=True, timeout=30)
        assert {r["value"]: r["count"] for r in json.loads(top_cli.stdout)["rows"]} == {
            p: len(w) for p, w in per_url.items()}
        assert_no_raw_identity(every_item(memcached), ["127.0.0.1"], browsers)
    finally:
        reader.close()


# -- the real logs against GoAccess's visitors panel ------------------------------------------------

_LINE = re.compile(rb'^(\S+) \S+ .*? \[(\d\d)/(\w{3})/(\d{4}):[^\]]*\] "((?:[^"\\]|\\.)*)" (\d{3}) \S+ '
                   rb'"(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)"')
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def reference_visitors(data: bytes, keep) -> dict[str, int]:
    """Distinct (address, User-Agent) per day of the lines *keep(status, target)* accepts —
    an independent regex, not logpipe's parser."""
    days: dict[str, set] = defaultdict(set)
    for raw in data.splitlines():
        m = _LINE.match(raw)
        if m and keep(int(m.group(6)), m.group(5).split(b" ")[1:2]):
            day = f"{int(m.group(4)):04d}-{_MONTHS.index(m.group(3).decode()) + 1:02d}-{int(m.group(2)):02d}"
            days[day].add((m.group(1), m.group(7)))
    return {day: len(who) for day, who in days.items()}


@pytest.mark.parametrize("name", ["elastic-examples-apache_logs.log", "1geek0-weblog-access.log",
                                  "nielsbasjes-logparser-hackers-access.log"])
def test_real_logs_against_goaccess_visitors_panel(name, real_logs_dir, logpipe_bin, memcached, tmp_path):
    """GoAccess 1.7's "Unique visitors per day" is distinct (address, User-Agent) over every valid
    request but 4xx ones (its --4xx-to-unique-count is off by default): bots and static files
    included.  logpipe counts human page views only, so it is at most GoAccess's figure; with
    --count-all (every request with a path) it is distinct (address, User-Agent) of all of them."""
    if not os.access("/usr/bin/goaccess", os.X_OK):
        pytest.skip("goaccess not installed (Debian package goaccess)")
    data = (real_logs_dir / name).read_bytes()
    report = tmp_path / "goaccess.json"
    subprocess.run(["/usr/bin/goaccess", str(real_logs_dir / name), "--log-format=COMBINED", "--no-global-config",
                    "--no-progress", "-o", str(report)], check=True, capture_output=True, timeout=300)
    panel = {f"{r['data'][:4]}-{r['data'][4:6]}-{r['data'][6:]}": r["visitors"]["count"]
             for r in json.loads(report.read_text())["visitors"]["data"]}
    # GoAccess's definition, re-counted independently: equal, but for lines GoAccess reads and the
    # strict regex does not (one truncated line in the elastic log)
    goaccess_like = reference_visitors(data, lambda status, target: not 400 <= status < 500)
    assert panel.keys() == goaccess_like.keys()
    assert all(abs(panel[d] - goaccess_like[d]) <= 1 for d in panel), (panel, goaccess_like)
    for prefix, extra in (("lp", []), ("all", ["--count-all"])):
        run = subprocess.run([logpipe_bin, "--memcached", memcached.spec, "--status-dir", str(tmp_path / prefix),
                              "--prefix", prefix, *extra], input=data, capture_output=True, timeout=300)
        assert run.returncode == 0, run.stderr
    reader = Reader(memcached.spec, prefix="lp")
    everything = Reader(memcached.spec, prefix="all")
    try:
        mine = {d: reader.visitors(None, d) for d in panel}
        count_all = {d: everything.visitors(None, d) for d in panel}
    finally:
        reader.close()
        everything.close()
    all_requests = reference_visitors(data, lambda status, target: bool(target) and target[0].startswith((b"/", b"http://", b"https://")))
    assert count_all == {d: all_requests.get(d, 0) for d in panel}
    assert all(0 < mine[d] <= panel[d] for d in panel if goaccess_like[d] > 5), (mine, panel)
    print(f"{name}: GoAccess {panel}; logpipe {mine}; logpipe --count-all {count_all}")


# -- the store: markers and the shared salt --------------------------------------------------------


def test_markers_are_added_once_across_writers_and_the_first_salt_wins(memcached):
    """Two stores (two web servers) add overlapping markers concurrently: each marker is stored by
    exactly one of them; the salt item keeps the first writer's value, for --ttl seconds."""
    from logpipe.daemon.store import CounterStore

    stores = [CounterStore([("127.0.0.1", memcached.port)], ttl=600) for _ in range(2)]
    keys = [f"t:2026-11-21:visitors:#v.{i:024x}" for i in range(6000)]
    results = [None, None]

    def add(n):
        part = keys[n * 2000:n * 2000 + 4000]  # 2000 shared
        results[n] = MarkerStore(stores[n]).claim(dict.fromkeys(part, "t:2026-11-21:visitors:*"), {}, b"p600:5")[:3]

    threads = [threading.Thread(target=add, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    (stored_a, existed_a, failed_a), (stored_b, existed_b, failed_b) = results
    assert not failed_a and not failed_b and not stored_a & stored_b
    assert stored_a | stored_b == set(keys) and len(existed_a) + len(existed_b) == 2000
    first = stores[0].shared_value("t:2026-11-21:visitors:#salt", "a" * 32)
    second = stores[1].shared_value("t:2026-11-21:visitors:#salt", "b" * 32)
    assert first == second == "a" * 32
    ttl = int(memcached.command("mg t:2026-11-21:visitors:#salt t").split()[1][1:])
    assert 590 < ttl <= 600
    for store in stores:
        store.close()


def test_each_virtual_host_has_its_own_visitors(logpipe_bin):
    agent = FIREFOX.format(n=0)
    data = b"".join(b"%s:443 " % host.encode() + line(ip, agent, path)
                    for host, ip, path in [("a.example", "10.0.0.1", "/x"), ("a.example", "10.0.0.1", "/y"),
                                           ("b.example", "10.0.0.1", "/x"), ("b.example", "10.0.0.2", "/x")])
    out = subprocess.run([logpipe_bin, "--dry-run", "--format", "vhost_combined"], input=data,
                         capture_output=True, timeout=60).stdout.decode()
    keys = {k: int(n) for n, k in (row.split() for row in out.splitlines() if ":visitors" in row)}
    assert keys == {f"logpipe:{DAY}:visitors@a.example:*": 1, f"logpipe:{DAY}:visitors@a.example:/x": 1,
                    f"logpipe:{DAY}:visitors@a.example:/y": 1, f"logpipe:{DAY}:visitors@b.example:*": 2,
                    f"logpipe:{DAY}:visitors@b.example:/x": 2}
    assert f"unique visitors   1 on {DAY} (a.example)" in out and f"unique visitors   2 on {DAY} (b.example)" in out
