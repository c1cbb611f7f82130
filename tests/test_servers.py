"""The test servers themselves: each starts, works, and leaves nothing behind."""

from __future__ import annotations

import collections
import os
import re
import socket
import time
from pathlib import Path

import pytest

try:
    from servers import Apache, Memcached, free_port, port_open, wait_for
except ImportError:  # pragma: no cover
    from tests.servers import Apache, Memcached, free_port, port_open, wait_for

COMBINED = re.compile(
    r'^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] '
    r'"(?P<method>\S+) (?P<path>\S+) (?P<proto>[^"]+)" (?P<status>\d{3}) (?P<bytes>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_lines(path: Path, n: int, timeout: float = 5.0) -> list[str]:
    """Wait until ``path`` has at least ``n`` lines (httpd logs after sending the response),
    then a little longer to catch extra ones; return them all."""
    wait_for(lambda: len(read_lines(path)) >= n, timeout=timeout, message=f"{n} lines in {path}")
    time.sleep(0.2)
    return read_lines(path)


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


# ------------------------------------------------------------------------------ helpers


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_wait_for_returns_value_and_times_out() -> None:
    calls = []
    assert wait_for(lambda: calls.append(1) or len(calls) >= 3, timeout=2, interval=0.01) is True
    assert len(calls) == 3
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="never"):
        wait_for(lambda: False, timeout=0.2, interval=0.05, message="never")
    assert 0.15 < time.monotonic() - t0 < 1.5


# ------------------------------------------------------------------------------ memcached


def test_memcached_set_get_and_stats(memcached: Memcached) -> None:
    assert memcached.spec == f"127.0.0.1:{memcached.port}"
    client = memcached.client()
    client.set("logpipe:test:url:/", b"7", expire=60)
    assert client.get("logpipe:test:url:/") == b"7"
    assert client.incr("logpipe:test:url:/", 3) == 10
    client.close()
    stats = memcached.stats()
    assert stats["pid"] == memcached.pid
    assert stats["curr_items"] == 1
    assert stats["get_hits"] == 1
    assert stats["incr_hits"] == 1
    assert stats["limit_maxbytes"] == 64 * 1024 * 1024


def test_memcached_pause_times_out_and_resume_restores(memcached: Memcached) -> None:
    client = memcached.client(timeout=0.3)
    client.set("k", b"v")
    memcached.pause()
    assert memcached.paused
    t0 = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError)):
        client.get("k")
    assert 0.25 < time.monotonic() - t0 < 2.0
    memcached.resume()
    assert client.get("k") == b"v"


def test_memcached_kill_and_restart_same_port_empty(memcached: Memcached) -> None:
    port, old_pid = memcached.port, memcached.pid
    memcached.client().set("k", b"v")
    memcached.kill()
    assert not memcached.running and process_gone(old_pid)
    assert not port_open(port)
    memcached.restart()
    assert memcached.port == port and memcached.pid != old_pid
    assert memcached.client().get("k") is None
    assert memcached.stats()["curr_items"] == 0


def test_memcached_factory_makes_independent_servers(memcached_factory) -> None:
    servers = [memcached_factory() for _ in range(3)]
    assert len({s.port for s in servers}) == 3
    for i, s in enumerate(servers):
        s.client().set("which", str(i).encode())
    assert [s.client().get("which") for s in servers] == [b"0", b"1", b"2"]
    pids = [s.pid for s in servers]
    servers[1].stop()
    assert process_gone(pids[1]) and servers[0].client().get("which") == b"0"


# ------------------------------------------------------------------------------ Apache


def test_apache_file_log_has_one_line_per_request(apache_factory, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    apache = apache_factory([f'CustomLog "{log}" combined'])
    paths = ["/", "/blog/2026/hello-world/", "/robots.txt", "/logo.png", "/search?q=logpipe",
             "/no/such/page.php"]
    n = 120
    reqs = [(paths[i % len(paths)], {"User-Agent": f"tester/{i % 3}", "Referer": "https://ex.org/"})
            for i in range(n)]
    assert apache.send(reqs, concurrency=8) == (n, 0)

    lines = wait_lines(log, n)
    assert len(lines) == n
    parsed = [COMBINED.match(line) for line in lines]
    assert all(parsed), [l for l, m in zip(lines, parsed) if not m][:3]
    assert collections.Counter(m["path"] for m in parsed) == collections.Counter(p for p, _ in reqs)
    assert {m["status"] for m in parsed} == {"200"}
    assert {m["method"] for m in parsed} == {"GET"}
    assert {m["agent"] for m in parsed} == {"tester/0", "tester/1", "tester/2"}
    assert {m["referer"] for m in parsed} == {"https://ex.org/"}
    assert all(int(m["bytes"]) > 0 for m in parsed)  # %O: bytes sent, headers included


def test_apache_graceful_restart_keeps_serving(apache_factory, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    apache = apache_factory([f'CustomLog "{log}" common'])
    pid = apache.pid
    assert apache.send([f"/before/{i}" for i in range(30)]) == (30, 0)
    wait_lines(log, 30)
    apache.graceful()
    assert apache.pid == pid
    assert apache.send([f"/after/{i}" for i in range(30)]) == (30, 0)
    lines = wait_lines(log, 60)
    assert len(lines) == 60
    assert sum('"GET /after/' in line for line in lines) == 30
    assert "SIGUSR1 received.  Doing graceful restart" in apache.error_log_text()


def test_apache_debian_log_formats(apache_factory, tmp_path: Path) -> None:
    names = ["combined", "common", "vhost_combined", "combinedio"]
    apache = apache_factory([f'CustomLog "{tmp_path / n}.log" {n}' for n in names],
                            server_name="www.example.test")
    status, body = apache.get("/a/b?c=d", {"User-Agent": 'Mozilla/5.0 "quoted"'})
    assert status == 200 and b"logpipe test site" in body
    got = {n: wait_lines(tmp_path / f"{n}.log", 1) for n in names}
    assert all(len(v) == 1 for v in got.values())
    req = r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /a/b\?c=d HTTP/1\.1" 200 (\d+)'
    tail = r' "-" "Mozilla/5\.0 \\"quoted\\""'
    assert re.fullmatch(req + tail, got["combined"][0])
    assert re.fullmatch(req, got["common"][0])
    assert re.fullmatch(rf"www\.example\.test:{apache.port} " + req + tail, got["vhost_combined"][0])
    m = re.fullmatch(req + tail + r" (\d+) (\d+)", got["combinedio"][0])
    assert m and int(m[2]) > 0 and int(m[3]) > int(m[1])  # %I > 0, %O > %b


def test_apache_any_path_is_200_and_keeps_request_line(apache_factory, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    apache = apache_factory([f'CustomLog "{log}" combined'])
    for path in ["/x", "/deep/path/", "/index.html/extra", "/a%20b", "/%E2%82%AC", "/enc%2Fslash"]:
        status, _ = apache.get(path)
        assert status == 200, path
    assert apache.get("/robots.txt")[1] == b"User-agent: *\nDisallow:\n"
    lines = wait_lines(log, 7)
    # sorted: httpd logs after sending the response, so even sequential requests on separate
    # connections can be logged out of order
    assert sorted(COMBINED.match(l)["path"] for l in lines) == sorted([
        "/x", "/deep/path/", "/index.html/extra", "/a%20b", "/%E2%82%AC", "/enc%2Fslash",
        "/robots.txt"])


def test_apache_piped_logger_runs_as_root_and_stop_leaves_nothing(apache_factory,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "piped.log"
    apache = apache_factory([f'CustomLog "|/usr/bin/tee -a {out}" combined'])
    loggers = wait_for(lambda: apache.logger_pids("tee"), timeout=5)
    assert len(loggers) == 1
    with open(f"/proc/{loggers[0]}/status") as f:
        uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
    assert uids[0] == "0"  # piped loggers run as the user that started httpd
    assert apache.send(["/p"] * 10) == (10, 0)
    assert len(wait_lines(out, 10)) == 10
    pids = [p["pid"] for p in apache.processes()]
    assert apache.pid in pids and loggers[0] in pids and len(pids) >= 3
    apache.stop()
    assert apache.pid is None
    assert all(process_gone(p) for p in pids)
    assert not port_open(apache.port)
    assert "AH00491: caught SIGTERM, shutting down" in apache.error_log_text()


def test_apache_config_passes_configtest(tmp_path: Path) -> None:
    apache = Apache([f'CustomLog "{tmp_path / "a.log"}" combined'],
                    extra_conf="<VirtualHost *:80>\n    ServerName other.test\n</VirtualHost>\n")
    try:
        assert "Syntax OK" in apache.configtest()
    finally:
        apache.cleanup()


# ------------------------------------------------------------------------------ PostgreSQL


def test_postgres_select_1_with_sqlalchemy(postgres) -> None:
    import sqlalchemy as sa

    assert postgres.url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/logpipe_test"
    engine = sa.create_engine(postgres.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            assert conn.execute(sa.text("select current_database()")).scalar_one() == "logpipe_test"
    finally:
        engine.dispose()


def test_postgres_db_is_fresh(postgres_db: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_db)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("create table t (n int)"))
            conn.execute(sa.text("insert into t values (1), (2)"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("select sum(n) from t")).scalar_one() == 3
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------ data, binaries


def test_real_logs_dir_has_logs(real_logs_dir: Path) -> None:
    assert real_logs_dir.name == "real"
    assert any(p.suffix == ".log" and p.stat().st_size > 0 for p in real_logs_dir.iterdir())


def test_logpipe_bin_is_absolute_and_executable(logpipe_bin: str) -> None:
    assert os.path.isabs(logpipe_bin) and os.access(logpipe_bin, os.X_OK)
