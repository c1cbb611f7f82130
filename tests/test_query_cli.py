"""``logpipe top`` and ``logpipe hits`` as a person uses them: JSON, --watch in a terminal, errors."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest

from logpipe.api import today
from logpipe.config import parse_servers
from logpipe.keys import counter_key, index_key
from logpipe.daemon.store import CounterStore


def _seed(memcached, values: dict[str, int], dimension: str = "url") -> None:
    store = CounterStore(parse_servers(memcached.spec))
    day = today()
    appends: dict[str, list[str]] = {}
    for value in values:
        appends.setdefault(index_key(day, dimension, value), []).append(value)
    store.flush({counter_key(day, dimension, v): n for v, n in values.items()}, appends)


def test_top_json_for_a_dimension(memcached, logpipe_bin):
    _seed(memcached, {"Firefox": 5, "Chrome": 9}, "browser")
    out = subprocess.run([logpipe_bin, "top", "browser", "--json", "--memcached", memcached.spec],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    document = json.loads(out.stdout)
    assert document["dimension"] == "browser" and document["date"] == today()
    assert document["rows"] == [{"value": "Chrome", "count": 9}, {"value": "Firefox", "count": 5}]


def test_top_watch_draws_a_live_table_in_a_terminal(memcached, logpipe_bin):
    _seed(memcached, {"/a": 3, "/b": 1})
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal program, as a person runs it
        os.execv(logpipe_bin, [logpipe_bin, "top", "url", "--watch", "--memcached", memcached.spec])
    screen = b""
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline and b"/b" not in screen:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    screen += os.read(fd, 65536)
                except OSError:
                    break
        _seed(memcached, {"/a": 4318})  # 3 + 4318 = 4321: the next refresh must show it
        while time.monotonic() < deadline and b"4321" not in screen:
            if select.select([fd], [], [], 0.5)[0]:
                screen += os.read(fd, 65536)
    finally:
        os.kill(pid, signal.SIGINT)
        for _ in range(100):  # bounded: SIGINT may be ignored if pytest inherited that
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
    text = screen.decode("utf-8", "replace")
    assert "logpipe top url" in text and "/a" in text and "/b" in text
    assert "4321" in text, "the table was refreshed with the new count"
    assert os.waitstatus_to_exitcode(status) == 0


def test_unreachable_memcached_is_one_clear_line(logpipe_bin):
    out = subprocess.run([logpipe_bin, "hits", "/x", "--memcached", "127.0.0.1:1", "--timeout", "0.3"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1 and "127.0.0.1:1" in out.stderr


def test_bad_option_outside_httpd_is_one_line_and_exit_2(logpipe_bin):
    out = subprocess.run([logpipe_bin, "--dry-run", "--flush-interval", "soon"], capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--flush-interval" in out.stderr


UNREADABLE_FORMAT = '%h %l %u %t "%r" %>s %b %{%Y-%m-%d}t'  # a custom %t: neither parser reads it


def test_an_unreadable_log_format_is_one_line_and_exit_2(logpipe_bin):
    out = subprocess.run([logpipe_bin, "--dry-run", "--format", UNREADABLE_FORMAT], capture_output=True,
                         text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--format" in out.stderr and "%{%Y-%m-%d}t" in out.stderr


@pytest.mark.parametrize("options, named", [(["--no-such-option"], "--no-such-option"),
                                            (["--format", UNREADABLE_FORMAT], "--format")])
def test_bad_option_under_httpd_keeps_draining_stdin(logpipe_bin, options, named):
    """A daemon with a bad option must not exit (httpd would respawn it every second)."""
    proc = subprocess.Popen([logpipe_bin, *options], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"x\n" * 200_000)  # far more than a pipe holds: it must be read
    proc.stdin.close()
    assert proc.wait(30) == 0
    err = proc.stderr.read().decode()
    assert named in err and "200000 lines read" in err and "Traceback" not in err
