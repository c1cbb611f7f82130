"""logpipe's lines in a real httpd's ErrorLog have Apache's shape (issue 16.4):
``[Wed Dec 02 22:00:00.123456 2026] [logpipe:warn] [pid N] message``, a level chosen by
``--log-level``, and repeats still rate-limited."""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from datetime import datetime

import pytest

from logpipe.log import ApacheFormatter, level_number
from servers import wait_for

#: Apache 2.4's default ErrorLogFormat: time with microseconds, [module:level], [pid N(:tid T)].
APACHE_LINE = re.compile(
    r"\[(?P<time>(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d\d \d\d:\d\d:\d\d\.\d{6} \d{4})\] \[(?P<module>[a-z_0-9]+):(?P<level>[a-z]+[0-9]?)\]"
    r" \[pid (?P<pid>\d+)(?::tid \d+)?\] (?P<message>\S.*)")
ROOT_WARNING = "running as root; set --user to drop privileges"


def _children(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    fields = handle.read().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[1] == str(pid) and fields[0] not in ("Z", "X"):
                out.append(int(name))
    return out


def _logpipe_lines(apache) -> list[str]:
    return [line for line in apache.error_log_text().splitlines() if "logpipe" in line
            and "AH0" not in line]  # httpd's own lines may name the command (AH00106 …)


def _start(apache_factory, logpipe_bin, memcached, tmp_path, *options):
    status = tmp_path / "status"
    marker = f"--status-dir {status}"
    apache = apache_factory(f'CustomLog "|{logpipe_bin} --memcached {memcached.spec} {marker} '
                            f'--dimensions url {" ".join(options)}" combined')
    supervisor = wait_for(lambda: next((p for p in apache.logger_pids(marker)
                                        if (status / f"supervisor-{p}.json").exists()
                                        and _children(p)), None),
                          timeout=20, message="a ready logpipe supervisor")
    return apache, supervisor


def test_lines_have_apaches_shape_level_and_pid(apache_factory, memcached, logpipe_bin,
                                                tmp_path) -> None:
    apache, supervisor = _start(apache_factory, logpipe_bin, memcached, tmp_path,
                                "--log-level info --log-interval 60")
    worker = _children(supervisor)[0]
    wait_for(lambda: any(ROOT_WARNING in line for line in _logpipe_lines(apache)), timeout=15,
             message="the root warning (1 s after start)")
    # three worker crashes within the interval: one error line, the others held back
    for _ in range(3):
        os.kill(worker, signal.SIGKILL)
        worker = wait_for(lambda: next((p for p in _children(supervisor) if p != worker), None),
                          timeout=15, message="the next worker")
    wait_for(lambda: any("[logpipe:error]" in line for line in _logpipe_lines(apache)),
             timeout=15, message="an error line for the crash")
    lines = _logpipe_lines(apache)
    seen = {}
    for line in lines:
        match = APACHE_LINE.fullmatch(line)
        assert match, f"not in Apache's ErrorLog shape: {line!r}"
        assert match["module"] == "logpipe"
        when = datetime.strptime(match["time"], "%a %b %d %H:%M:%S.%f %Y")
        assert abs(when.timestamp() - time.time()) < 600, line  # local time, like httpd's
        seen.setdefault(match["level"], []).append((int(match["pid"]), match["message"]))
    assert any(m.startswith("logpipe ") and "started" in m and pid == supervisor
               for pid, m in seen["info"]), seen
    assert (supervisor, ROOT_WARNING) in seen["warn"], seen
    crashes = [m for _, m in seen["error"] if "killed by signal 9" in m]
    assert len(crashes) == 1, seen["error"]  # rate-limited: --log-interval 60
    # httpd's own lines in the same file have the same shape (the same regex reads both)
    own = [line for line in apache.error_log_text().splitlines() if "AH00" in line]
    assert own and all(APACHE_LINE.fullmatch(line) for line in own), own


def test_default_level_is_warn_and_info_is_not_written(apache_factory, memcached, logpipe_bin,
                                                       tmp_path) -> None:
    apache, supervisor = _start(apache_factory, logpipe_bin, memcached, tmp_path)
    wait_for(lambda: any(ROOT_WARNING in line for line in _logpipe_lines(apache)), timeout=15,
             message="the root warning")
    lines = _logpipe_lines(apache)
    assert lines and all("[logpipe:info]" not in line for line in lines), lines
    assert all(APACHE_LINE.fullmatch(line) for line in lines), lines


def test_log_level_error_hides_warnings(apache_factory, memcached, logpipe_bin, tmp_path) -> None:
    apache, supervisor = _start(apache_factory, logpipe_bin, memcached, tmp_path,
                                "--log-level error")
    worker = _children(supervisor)[0]
    time.sleep(1.5)  # past the moment the root warning would be written
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: any("[logpipe:error]" in line for line in _logpipe_lines(apache)),
             timeout=15, message="the crash's error line")
    assert not any(ROOT_WARNING in line for line in _logpipe_lines(apache))


def test_formatter_exact_line() -> None:
    record = logging.LogRecord("logpipe", logging.ERROR, __file__, 1, "worker failed:\n%s",
                               ("boom",), None)
    record.created = time.mktime((2026, 12, 2, 22, 0, 0, 0, 0, -1)) + 0.123456
    record.process = 4321
    assert ApacheFormatter().format(record) == (
        "[Wed Dec 02 22:00:00.123456 2026] [logpipe:error] [pid 4321] worker failed: boom")


@pytest.mark.parametrize("name, number", [("debug", 10), ("INFO", 20), ("notice", 25),
                                          ("warn", 30), ("warning", 30), ("error", 40),
                                          ("crit", 50)])
def test_level_names(name, number) -> None:
    assert level_number(name) == number


def test_bad_level_is_a_bad_option(logpipe_bin) -> None:
    import subprocess

    res = subprocess.run([logpipe_bin, "--dry-run", "--log-level", "loud"], input=b"",
                         capture_output=True, timeout=60)
    assert res.returncode == 2
    assert b"--log-level" in res.stderr and b"loud" in res.stderr


def test_only_logpipes_own_lines_take_the_errorlog_shape(capsys) -> None:
    """warn() writes Apache's shape to stderr; an app's logger under ``logpipe.*`` (a Django
    app's) is left to the app's logging configuration."""
    from logpipe.config import warn

    warn("spool full")
    logging.getLogger("logpipe.django").warning("an app's own line")
    err = capsys.readouterr().err
    assert re.search(r"\] \[logpipe:warn\] \[pid \d+\] spool full\n", err), err
    assert "[logpipe:warn] [pid" not in err.split("spool full", 1)[1], err
