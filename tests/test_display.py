"""Issue 16.6: output a person reads -- decoded values with control characters escaped (``logpipe top``,
``--watch`` and the HTML report), ``--json`` raw, the ``--watch`` title within 80 columns."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest

from logpipe.api import today
from logpipe.commands.display import shown
from logpipe.config import parse_servers
from logpipe.daemon.store import CounterStore
from logpipe.keys import counter_key, index_key

CAFE = "/caf%C3%A9.html"
CLEAR = "/%1B%5B2J%1B%5D0;owned%07x"        # ESC [ 2 J  ESC ] 0;owned BEL: clears the screen, retitles
KEYWORD = "free \x1b[31mmoney\x9b"           # a keyword is stored decoded: ESC and a C1 CSI in it
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # any control but \t \n


@pytest.mark.parametrize("value, dimension, expected", [
    (CAFE, "url", "/café.html"),
    (CLEAR, "url", "/\\x1b[2J\\x1b]0;owned\\x07x"),
    ("/a%E9b", "url", "/a%E9b"),                      # Latin-1, not UTF-8: left encoded
    ("/x%E2%80%AEfdp.exe", "url", "/x\\u202efdp.exe"),  # RIGHT-TO-LEFT OVERRIDE made visible
    ("https://ex.org/?q=caf%C3%A9", "referrer", "https://ex.org/?q=café"),
    (KEYWORD, "keyword", "free \\x1b[31mmoney\\x9b"),
    ("caf%C3%A9", "browser", "caf%C3%A9"),             # not a URL dimension: not decoded
])
def test_shown(value, dimension, expected):
    assert shown(value, dimension) == expected
    assert not RAW_CONTROL.search(shown(value, dimension))


def seed(memcached, dimension: str, values: dict[str, int], site: str | None = None) -> None:
    store = CounterStore(parse_servers(memcached.spec))
    day = today()
    appends: dict[str, list[str]] = {}
    for value in values:
        appends.setdefault(index_key(day, dimension, value, site=site), []).append(value)
    store.flush({counter_key(day, dimension, v, site=site): n for v, n in values.items()}, appends)
    store.close()


def test_top_shows_values_decoded_and_json_keeps_them_raw(memcached, logpipe_bin, tmp_path):
    seed(memcached, "url", {CAFE: 5, CLEAR: 2})
    seed(memcached, "keyword", {KEYWORD: 3, "café": 1})
    common = ["--memcached", memcached.spec, "--db", f"sqlite:///{tmp_path}/none.sqlite3"]
    text = subprocess.run([logpipe_bin, "top", "url", *common], capture_output=True, text=True, timeout=30)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        f"top url · {today()} · site (none) · today from memcached",
        "        5  /café.html",
        "        2  /\\x1b[2J\\x1b]0;owned\\x07x",
        "        7  total of every url (top 2 shown)"]
    keywords = subprocess.run([logpipe_bin, "top", "keyword", *common], capture_output=True, text=True, timeout=30)
    assert "        3  free \\x1b[31mmoney\\x9b" in keywords.stdout.splitlines()
    for out in (text.stdout, keywords.stdout):
        assert not RAW_CONTROL.search(out)
    raw = subprocess.run([logpipe_bin, "top", "url", "--json", *common], capture_output=True, text=True, timeout=30)
    assert json.loads(raw.stdout)["rows"] == [{"value": CAFE, "count": 5}, {"value": CLEAR, "count": 2}]


def test_report_shows_values_decoded_and_escaped(logpipe_bin, tmp_path):
    log = tmp_path / "a.log"
    agent = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
    log.write_bytes(b"".join(
        f'192.0.2.1 - - [20/Nov/2026:10:00:00 +0000] "GET {path} HTTP/1.1" 200 5 "-" "{agent}"\n'.encode() * n
        for path, n in ((CAFE, 4), (CLEAR, 2))))
    db = f"sqlite:///{tmp_path}/h.sqlite3"
    assert subprocess.run([logpipe_bin, "rollup", "--db", db, str(log)], capture_output=True, timeout=60).returncode == 0
    out = tmp_path / "r.html"
    run = subprocess.run([logpipe_bin, "report", "--db", db, "--html", str(out), "--date", "2026-11-20", "--days", "1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    page = out.read_text(encoding="utf-8")
    cells = re.findall(r'<table class="numbers" id="table-url">.*?</table>', page, re.S)[0]
    assert re.findall(r'<td class="v">(.*?)</td>', cells) == ["/café.html", "/\\x1b[2J\\x1b]0;owned\\x07x"]
    assert not RAW_CONTROL.search(page.split("<script>", 1)[0])  # the page's HTML part
    data = json.loads(re.search(r'id="logpipe-data" type="application/json">(.*?)</script>', page, re.S).group(1))
    assert data["urls"]["top"] == [[CAFE, 4], [CLEAR, 2]]  # the data stays as counted
    assert data["shown"][CAFE] == "/café.html"


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def test_watch_title_fits_an_80_column_terminal(memcached, logpipe_bin, tmp_path):
    site = "www." + "very-long-virtual-host-name-" * 3 + "example.org"
    seed(memcached, "url", {"/" + "x" * 150: 3, CAFE: 2}, site=site)
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal program, 80 columns, as a person runs it
        os.environ.update(COLUMNS="80", LINES="24", TERM="xterm")
        os.execv(logpipe_bin, [logpipe_bin, "top", "url", "--watch", "--site", site, "--memcached", memcached.spec,
                               "--db", f"sqlite:///{tmp_path}/none.sqlite3"])
    screen = b""
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and "café".encode() not in screen:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    screen += os.read(fd, 65536)
                except OSError:
                    break
    finally:
        os.kill(pid, signal.SIGINT)
        for _ in range(100):
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    text = ANSI.sub("", screen.decode("utf-8", "replace"))
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    titles = [line for line in lines if line.startswith("logpipe top url · ")]
    assert titles, lines
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert titles[0].endswith("…")  # cut to the width, on one line
    assert any("/café.html" in line for line in lines)
