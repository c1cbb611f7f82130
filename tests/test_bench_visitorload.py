"""The httpd benchmark's visitor load (bench/visitorload.py) sends what it says it sent.

The benchmark's ``visitors_exact`` compares logpipe's site-wide visitors
counter with the User-Agents the load reports having introduced; these tests
check that report against httpd's own access log (a real httpd, a 3 s wrk
run), and that every generated User-Agent is a browser and every path a page
to logpipe's rules.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
try:
    from bench.visitorload import PROBE_BASE, UA_PERIOD, VisitorLoad, browser_ua, page_path, parse_introduced
finally:
    sys.path.remove(str(REPO))


def test_browser_uas_are_distinct_browsers_on_pages():
    """Each index its own User-Agent; ``logpipe --dry-run`` counts each line as a page view of a new visitor."""
    indices = [*range(400), 799_999, 800_000, PROBE_BASE, PROBE_BASE + 1, UA_PERIOD - 1]
    agents = [browser_ua(i) for i in indices]
    assert len(set(agents)) == len(agents)
    with pytest.raises(ValueError):
        browser_ua(UA_PERIOD)
    paths = [page_path(n) for n in range(1, len(agents) + 1)]
    assert len(set(paths)) == len(paths) and all("." not in p for p in paths)
    log = "".join(f'127.0.0.1 - - [04/Dec/2026:19:00:00 +0000] "GET {path} HTTP/1.1" 200 70 "-" "{agent}"\n'
                  for path, agent in zip(paths, agents))
    res = subprocess.run([sys.executable, "-m", "logpipe", "--dry-run"], input=log, capture_output=True,
                         text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    assert re.search(rf"^page views\s+{len(agents)}$", res.stdout, re.M), res.stdout[-800:]
    assert re.search(rf"^unique visitors\s+{len(agents)} on 2026-12-04$", res.stdout, re.M), res.stdout[-800:]


def test_agents_sent_rebuilds_each_threads_share():
    """Thread t introduces agents t, t+T, …; a count past a thread's share is refused."""
    load = VisitorLoad(visitors=10, urls=5, threads=3, duration=30, offset=100)
    output = "Requests/sec: 1.0\nvisitors-thread 0 introduced 4 requests 90\nvisitors-thread 1 introduced 2 requests 80\n" \
             "visitors-thread 2 introduced 0 requests 70\n"
    introduced = parse_introduced(output)
    assert introduced == {0: 4, 1: 2, 2: 0}
    assert load.agents_sent(introduced) == {browser_ua(100 + i) for i in (0, 3, 6, 9, 1, 4)}
    with pytest.raises(ValueError):
        load.agents_sent({0: 5, 1: 0, 2: 0})  # thread 0's share is 4 (0, 3, 6, 9)
    with pytest.raises(ValueError):
        load.agents_sent({0: 1, 1: 1})
    with pytest.raises(ValueError):
        VisitorLoad(visitors=1, urls=5, threads=2, duration=30)


@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk not installed (Debian package wrk)")
def test_wrk_script_sends_exactly_the_reported_visitors(apache_factory, tmp_path):
    """A 3 s wrk run: the User-Agents in httpd's access log are the ones the script reports, all pages, all 200."""
    access = tmp_path / "access.log"
    apache = apache_factory([f'CustomLog "{access}" "%>s %r\t%{{User-Agent}}i\t%{{Referer}}i"'])
    load = VisitorLoad(visitors=300, urls=50, threads=2, duration=3, referer="https://example.org/")
    args = load.write(tmp_path / "wrk")
    split = args.index("--")
    res = subprocess.run(["wrk", "-t2", "-c4", "-d3s", *args[:split], apache.url("/"), *args[split:]],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    introduced = parse_introduced(res.stdout)
    sent = load.agents_sent(introduced)
    assert len(sent) > 100  # most of the 300 arrive in the 2 s they are given
    apache.stop()  # every line written
    lines = access.read_text().splitlines()
    assert len(lines) > len(sent)  # returning visitors too
    logged = set()
    pages = {page_path(n) for n in range(1, 51)}
    for line in lines:
        status_request, agent, referer = line.split("\t")
        status, method, path, _ = status_request.split(" ")
        assert (status, method, referer) == ("200", "GET", "https://example.org/")
        assert path in pages
        logged.add(agent)
    assert logged == sent
