"""The command line as a person and a script meet it: --help of every command, the man page,
strict arguments (typos and bad dates exit 2 unless the daemon runs under httpd), --version."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from logpipe import config
from logpipe.commands import dates
from logpipe.commands.main import COMMANDS, SUMMARIES

ROOT = Path(__file__).resolve().parent.parent
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def _run(argv, stdin="devnull", timeout=60, env=None):
    """Run logpipe with stdin from /dev/null or from a pipe (a few lines, then EOF)."""
    if stdin == "devnull":
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          input="GET / HTTP/1.1\n" * 3, env=env)


# -- --help ---------------------------------------------------------------------------------


def _help_entries(text: str) -> list[tuple[str, str]]:
    """(invocation, help text) of every option and positional entry in argparse --help output."""
    entries = []
    lines = text.splitlines()
    section = ""
    for i, line in enumerate(lines):
        if line and not line.startswith(" "):
            section = line
            continue
        entry = re.match(r"^  (\S.*?)(?:\s{2,}(\S.*))?$", line)
        if not entry:
            continue
        is_option = entry.group(1).startswith("-")
        is_positional = section.startswith("positional arguments")
        if not (is_option or is_positional):
            continue  # a group's description line
        help_text = entry.group(2) or ""
        j = i + 1
        while j < len(lines) and re.match(r"^ {6,}\S", lines[j]):  # wrapped help lines
            help_text += " " + lines[j].strip()
            j += 1
        entries.append((entry.group(1), help_text.strip()))
    return entries


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_option_of_every_command_has_help_with_its_default(logpipe_bin, command):
    out = _run([logpipe_bin, *([command] if command else []), "--help"], env={**os.environ, "COLUMNS": "100"})
    assert out.returncode == 0, out.stderr
    entries = _help_entries(out.stdout)
    assert len(entries) >= 5
    bare = [inv for inv, text in entries if not text]
    assert not bare, f"options without help in logpipe {command} --help: {bare}"
    # what it does, and its default (flags: off; -h/--version/--print-config act and exit)
    exempt = {"-h, --help", "--version", "--print-config"}
    if command == "health":  # health's own --json/--match belong to the health helper's split
        exempt |= {"--json", "--match TEXT"}
    missing = [inv for inv, text in entries if inv not in exempt and "default" not in text
               and "required" not in text]
    assert not missing, f"options without a default in their help: {missing}"
    # every setting this command uses is offered, in its argparse group
    names = config.settings_for("daemon" if not command else command)
    for name in names:
        setting = config.BY_NAME[name]
        assert any(inv.startswith(setting.flag) for inv, _ in entries), setting.flag
        if setting.group in config.GROUPS:
            assert config.GROUPS[setting.group][0] + ":" in out.stdout


def test_top_level_help_lists_the_commands_with_a_summary(logpipe_bin):
    out = _run([logpipe_bin, "--help"])
    for name in COMMANDS:
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith(f"  {name} ")), "")
        assert len(line.split(None, 1)[-1]) > 20, f"{name} has no summary line"
    for title in ("memcached:", "input/format:", "the daemon under httpd:", "raw archive:",
                  "counting rules:", "history:"):
        assert title in out.stdout
    assert "seconds" in out.stdout and "K, M, G" in out.stdout


def test_version_on_every_command(logpipe_bin):
    top = _run([logpipe_bin, "--version"])
    assert top.returncode == 0 and re.fullmatch(r"logpipe \S+\n", top.stdout)
    for command in COMMANDS:
        out = _run([logpipe_bin, command, "--version"])
        assert (out.returncode, out.stdout) == (0, top.stdout), command


# -- the man page --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered_man() -> str:
    if not shutil.which("man"):
        pytest.fail("man (Debian man-db) is missing: make deps installs it")
    env = {**os.environ, "MANWIDTH": "100", "LC_ALL": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    out = subprocess.run(["man", "-l", str(ROOT / "man" / "logpipe.1")], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert "warning" not in out.stderr.lower(), out.stderr
    return re.sub(r".\x08", "", out.stdout)  # overstrike bold, if any


def test_man_page_documents_every_setting_command_and_option(rendered_man):
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "THE KEY CONTRACT", "FILES",
                    "ENVIRONMENT", "EXIT STATUS", "EXAMPLES"):
        assert re.search(rf"^{section}$", rendered_man, re.M), section
    for setting in config.SETTINGS:
        assert re.search(rf"^\s+{re.escape(setting.flag)}\b", rendered_man, re.M), f"{setting.flag} missing"
        assert setting.env in rendered_man, setting.env
    for name in COMMANDS:
        assert f"logpipe {name}" in rendered_man
    for option in ("--date", "--days", "--watch", "--html", "--top", "--title", "--verbose", "--json",
                   "--match", "--heartbeat-warn", "--dry-run", "--explain", "--print-config"):
        assert re.search(rf"^\s+(-\w, )?{re.escape(option)}\b", rendered_man, re.M), option
    assert "{prefix}:{YYYY-MM-DD}:{dimension}:{value}" in rendered_man
    # the shipped form: SIGTERM ignored from the shell's first command, then exec (issue 13.4)
    examples = re.findall(r'^\s+((?:GlobalLog|CustomLog) "\|.*)$', rendered_man, re.M)
    assert examples and all("exec /usr/local/bin/logpipe " in line for line in examples), examples
    assert any(line.startswith('GlobalLog "|$trap \\\'\\\' TERM; exec ') for line in examples), examples


def test_checked_in_man_page_is_up_to_date():
    from logpipe.commands.manpage import render

    fresh = render((ROOT / "README.md").read_text(encoding="utf-8"))
    assert (ROOT / "man" / "logpipe.1").read_text(encoding="utf-8") == fresh, \
        "man/logpipe.1 is stale: run make man"


def test_man_page_fails_without_its_readme_section(tmp_path):
    from logpipe.commands.manpage import main

    readme = tmp_path / "README.md"
    readme.write_text("# logpipe\n\n## Install\n\ntext\n")
    assert main(["--readme", str(readme), "-o", str(tmp_path / "x.1")]) == 1


# -- strict arguments -------------------------------------------------------------------------


@pytest.mark.parametrize("stdin", ["devnull", "pipe"])
def test_a_mistyped_command_is_one_line_and_exit_2(logpipe_bin, stdin):
    out = _run([logpipe_bin, "tpo", "url"], stdin=stdin, timeout=30)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "unknown command 'tpo'" in out.stderr and "top" in out.stderr


def test_a_bad_option_from_dev_null_is_exit_2_not_a_drain(logpipe_bin):
    out = _run([logpipe_bin, "--flush-intervall", "2"], stdin="devnull", timeout=30)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--flush-intervall" in out.stderr


@pytest.mark.parametrize("stdin", ["devnull", "pipe"])
@pytest.mark.parametrize("argv", [
    ["hits", "/", "--date", "2026-13-45"], ["hits", "/", "--date", "yesterdy"], ["top", "--date", "26-01-01"],
    ["top", "url", "--date", "+3"], ["top", "--date", "2026-01-01T24"], ["rollup", "--date", "tomorrow"],
    ["report", "--html", "-", "--date", "2026-02-30"], ["top", "url", "--date", "2026-01-01T05"],
    ["top", "post_ip", "--date", "2026-01-01"],
])
def test_bad_dates_are_one_line_and_exit_2(logpipe_bin, stdin, argv):
    out = _run([logpipe_bin, *argv, "--memcached", "127.0.0.1:1"] if argv[0] in ("hits", "top")
               else [logpipe_bin, *argv], stdin=stdin, timeout=30)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "--date" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("date", ["today", "yesterday", "-3", "-0", "2026-01-31"])
def test_good_dates_are_read(memcached, logpipe_bin, date):
    out = _run([logpipe_bin, "top", "url", "--date", date, "--json", "--memcached", memcached.spec], stdin="pipe")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["date"] == dates.parse_day(date)


def test_parse_day_forms():
    now = _dt.datetime(2026, 3, 1, 10, 30)
    assert dates.parse_day("today", now=now) == "2026-03-01"
    assert dates.parse_day("Yesterday", now=now) == "2026-02-28"
    assert dates.parse_day("-1", now=now) == "2026-02-28"
    assert dates.parse_day("-366", now=now) == "2025-02-28"
    assert dates.parse_day("2024-02-29", now=now) == "2024-02-29"
    for bad in ("2023-02-29", "2026-1-5", "1", "+1", "", "today ", "2026-03-01T10", "now"):
        if bad.strip() in ("today",):
            continue
        with pytest.raises(ValueError, match="YYYY-MM-DD, today, yesterday or -N"):
            dates.parse_day(bad, now=now)
    assert dates.parse_day_or_hour("2026-03-01T09") == "2026-03-01T09"
    assert dates.parse_day_or_hour("-1", now=now) == "2026-02-28"
    with pytest.raises(ValueError, match="hours 00-23"):
        dates.parse_day_or_hour("2026-03-01T25")
    assert dates.current_hour(now) == "2026-03-01T10"


def test_top_post_ip_defaults_to_the_current_hour(memcached, logpipe_bin, tmp_path):
    now = _dt.datetime.now().astimezone()
    stamp = f"{now:%d}/{_MONTHS[now.month - 1]}/{now:%Y:%H:%M:%S %z}"
    line = f'192.0.2.7 - - [{stamp}] "POST /comment HTTP/1.1" 302 0 "-" "Mozilla/5.0"\n'
    daemon = subprocess.run([logpipe_bin, "--memcached", memcached.spec, "--status-dir", str(tmp_path),
                             "--nice", "0"], input=line * 3, capture_output=True, text=True, timeout=60)
    assert daemon.returncode == 0, daemon.stderr
    hour = now.strftime("%Y-%m-%dT%H")
    deadline = time.monotonic() + 20
    while True:
        out = _run([logpipe_bin, "top", "post_ip", "--json", "--memcached", memcached.spec])
        assert out.returncode == 0, out.stderr
        document = json.loads(out.stdout)
        if document["rows"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if document["date"] != hour:  # the hour turned between the request and the query
        pytest.skip("the clock hour changed during the test")
    assert document["rows"] == [{"value": "192.0.2.7", "count": 3}]
    explicit = _run([logpipe_bin, "top", "post_ip", "--date", hour, "--json", "--memcached", memcached.spec])
    assert explicit.returncode == 0 and json.loads(explicit.stdout)["rows"] == document["rows"]


def test_summaries_cover_every_command():
    assert set(SUMMARIES) == set(COMMANDS)


def test_python_dash_m_logpipe_is_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "logpipe", "tpo"], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "unknown command 'tpo'" in out.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_install_puts_the_man_page_where_man_finds_it(tmp_path):
    dest = tmp_path / "dest"
    common = [f"DESTDIR={dest}", "PREFIX=/opt/lp", "INSTALL_PACKAGE=no"]

    def make(*args):
        return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args, *common],
                              capture_output=True, text=True, timeout=120)

    res = make("install")
    assert res.returncode == 0, res.stdout + res.stderr
    page = dest / "opt/lp/share/man/man1/logpipe.1"
    assert page.read_bytes() == (ROOT / "man" / "logpipe.1").read_bytes()
    found = subprocess.run(["man", "-M", str(dest / "opt/lp/share/man"), "logpipe"], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "MANPAGER": "cat", "PAGER": "cat"})
    assert found.returncode == 0 and "--flush-interval" in found.stdout
    res = make("uninstall")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not page.exists()


def test_a_mistyped_command_under_httpd_drains_instead_of_exiting(apache_factory, logpipe_bin):
    """httpd is the parent and stdin its pipe: report once, keep reading (exiting would make httpd
    respawn the logger every second while the pipe fills)."""
    apache = apache_factory([f'CustomLog "|{logpipe_bin} tpo url" combined'])
    for _ in range(50):
        assert apache.get("/")[0] == 200
    deadline = time.monotonic() + 20
    while "unknown command 'tpo'" not in apache.error_log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = apache.error_log_text()
    assert "unknown command 'tpo'" in text and "counting nothing" in text
    time.sleep(1.0)
    assert apache.logger_pids("tpo"), "the logger exited: httpd would respawn it"
    assert apache.error_log_text().count("unknown command 'tpo'") == text.count("unknown command 'tpo'")


def test_dry_run_into_a_closed_pipe_stops_quietly(logpipe_bin):
    """``logpipe --dry-run --explain | head -1``: no traceback when head closes the pipe."""
    line = (b'192.0.2.1 - - [04/Dec/2026:10:00:00 +0000] "GET /a/ HTTP/1.1" 200 5 "-" '
            b'"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"\n')
    proc = subprocess.Popen([logpipe_bin, "--dry-run", "--explain"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first write
    _out, err = proc.communicate(line * 20_000, timeout=60)
    assert proc.returncode == 1 and b"Traceback" not in err, err.decode(errors="replace")
