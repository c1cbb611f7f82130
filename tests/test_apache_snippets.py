"""The Apache snippets in apache/: each loads into a real httpd (``apache2 -t``, then a start)
and the requests it serves arrive as counts in a real memcached.

The snippets are used as shipped, with three substitutions a test needs: this environment's
logpipe instead of /usr/local/bin/logpipe (plus a private --status-dir), the test memcached
instead of 127.0.0.1:11211, and the test port instead of 80.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

try:
    from servers import APACHE_BIN, Apache, free_port, wait_for
except ImportError:  # pragma: no cover
    from tests.servers import APACHE_BIN, Apache, free_port, wait_for

from logpipe.api import Reader

REPO = Path(__file__).resolve().parent.parent
SNIPPETS = REPO / "apache"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


@pytest.fixture
def status_dir():
    parent = tempfile.mkdtemp(prefix="logpipe-snippet-")
    os.chmod(parent, 0o755)  # logpipe creates status/ as root, then runs as www-data
    yield os.path.join(parent, "status")
    subprocess.run(["rm", "-rf", parent], check=False)


@pytest.fixture
def httpd(request, status_dir):
    """``make(extra_conf, **kwargs) -> Apache``: configtest first, then start; stopped at the end.

    (It asks for status_dir only so that the directory is removed after httpd and logpipe
    stopped: a running supervisor would create it again.)"""
    if not os.access(APACHE_BIN, os.X_OK):
        pytest.skip("apache2 not installed (make deps)")
    made: list[Apache] = []

    def make(extra_conf: str, **kwargs) -> Apache:
        apache = Apache([], extra_conf, **kwargs)
        made.append(apache)
        assert "Syntax OK" in apache.configtest()
        return apache.start()

    yield make
    failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
    for apache in made:
        try:
            apache.stop()
        finally:
            if failed:
                print(f"--- {apache!r} error log ---\n{apache.error_log_text()}")
            apache.cleanup()


def www_data_can_run_logpipe() -> bool:
    """Whether www-data can import logpipe's worker with this Python: not when the interpreter
    lives in a private directory (a pyenv under /root), as in some development setups."""
    try:
        res = subprocess.run([sys.executable, "-c", "import logpipe.daemon.worker"], user=33, group=33,
                             extra_groups=[], capture_output=True, cwd="/", timeout=60)
    except (OSError, subprocess.SubprocessError):  # cannot even execute it
        return False
    return res.returncode == 0


def adapt(text: str, logpipe_bin: str, status_dir: str, memcached: str, port: int | None = None) -> str:
    assert text.count("/usr/local/bin/logpipe ") >= 1 and "127.0.0.1:11211" in text
    text = text.replace("/usr/local/bin/logpipe ", f"{logpipe_bin} --status-dir {status_dir} ")
    text = text.replace("127.0.0.1:11211", memcached)
    if not WWW_DATA_OK:
        text = text.replace(" --user www-data", "")
    if port is not None:
        text = text.replace("<VirtualHost *:80>", f"<VirtualHost *:{port}>")
    return text


WWW_DATA_OK = www_data_can_run_logpipe()


def directives(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def logpipe_uid(apache: Apache) -> int:
    pid = wait_for(lambda: apache.logger_pids("logpipe"), timeout=10)[0]
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


def wait_counts(memcached: str, prefix: str, paths: dict[str, int]) -> None:
    reader = Reader(memcached, prefix=prefix)
    try:
        wait_for(lambda: {p: reader.hits_today(p) for p in paths} == paths, timeout=15,
                 message=f"counts {paths} in memcached")
    finally:
        reader.close()


def test_global_snippet(httpd, memcached, logpipe_bin, status_dir, tmp_path) -> None:
    text = (SNIPPETS / "logpipe.conf").read_text()
    lines = directives(text)
    assert lines[1].startswith('GlobalLog "|/usr/local/bin/logpipe --format combined ')
    assert lines[1].endswith('" combined') and "--user www-data" in lines[1]
    assert "a2enconf logpipe" in text and "%O" in text  # the notes are there
    # Debian's default site has its own CustomLog: GlobalLog must still see its requests
    site = f'<VirtualHost *:{{port}}>\n    CustomLog "{tmp_path}/site.log" combined\n</VirtualHost>\n'
    port = free_port()
    apache = httpd(adapt(text, logpipe_bin, status_dir, memcached.spec) + site.format(port=port),
                   port=port)
    paths = {"/global/a": 3, "/global/b/": 2}
    requests = [(p, {"User-Agent": BROWSER}) for p, n in paths.items() for _ in range(n)]
    assert apache.send(requests) == (5, 0)
    wait_counts(memcached.spec, "logpipe", paths)
    assert logpipe_uid(apache) == (33 if WWW_DATA_OK else 0)  # --user www-data took effect
    assert len((tmp_path / "site.log").read_text().splitlines()) == 5  # the plain file log too
    health = subprocess.run([logpipe_bin, "health", "--json", "--status-dir", status_dir,
                             "--match", status_dir, "--rtt-warn", "0", "--rtt-crit", "0"],
                            capture_output=True, text=True, timeout=30)
    report = json.loads(health.stdout)
    assert report["status"] == "OK", report["problems"]
    assert health.returncode == 0


def test_vhost_snippet(httpd, memcached, logpipe_bin, status_dir, tmp_path) -> None:
    text = (SNIPPETS / "logpipe-vhost.conf").read_text()
    lines = directives(text)
    assert lines[0] == "<VirtualHost *:80>" and lines[-1] == "</VirtualHost>"
    pipe = next(line for line in lines if line.startswith('CustomLog "|'))
    assert re.fullmatch(r'CustomLog "\|/usr/local/bin/logpipe --format combined .*--prefix example" combined', pipe)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    apache = httpd(adapt(text, logpipe_bin, status_dir, memcached.spec, port), port=port,
                   env={"APACHE_LOG_DIR": str(logs)})
    paths = {"/vhost/x": 4, "/vhost/y": 1}
    requests = [(p, {"User-Agent": BROWSER, "Host": "www.example.com"})
                for p, n in paths.items() for _ in range(n)]
    assert apache.send(requests) == (5, 0)
    wait_counts(memcached.spec, "example", paths)
    # its own prefix: nothing under the default one
    reader = Reader(memcached.spec)
    try:
        assert reader.hits_today("/vhost/x") == 0
    finally:
        reader.close()
    assert logpipe_uid(apache) == (33 if WWW_DATA_OK else 0)
    assert len((logs / "access.log").read_text().splitlines()) == 5  # the plain log beside it
