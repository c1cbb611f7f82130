"""``make install`` verifies what it installed (issue 16.2), and a PostgreSQL --db without its
driver names the extra to install.

Each test runs the real ``make install`` of this tree into a private directory (``PREFIX``,
every /etc path overridden, or ``DESTDIR``) with a real virtualenv built on Debian's
``/usr/bin/python3``, and checks as the snippet's ``--user`` (www-data) with ``runuser``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.slow


def _usable() -> str | None:
    if os.geteuid() != 0:
        return "make install and its check need root (runuser)"
    if not shutil.which("runuser") or not os.access(DEBIAN_PYTHON, os.X_OK):
        return "needs runuser (util-linux) and /usr/bin/python3"
    try:
        subprocess.run(["id", "-u", "www-data"], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        return "no www-data user"
    return None


@pytest.fixture
def root():
    reason = _usable()
    if reason:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="logpipe-install-"))
    base.chmod(0o755)  # www-data must reach the virtualenv in it
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def make(target: str, **variables: str) -> subprocess.CompletedProcess:
    args = ["make", "-C", str(REPO), "--no-print-directory", target,
            *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(args, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})


def paths(root: Path) -> dict[str, str]:
    """Every install location of the Makefile, inside *root* (no DESTDIR)."""
    etc = root / "etc"
    return {"PREFIX": str(root / "usr/local"), "SYSTEMD_DIR": str(etc / "systemd/system"),
            "TMPFILES_DIR": str(etc / "tmpfiles.d"), "APACHE_CONF_DIR": str(etc / "apache2/conf-available"),
            "CONFIG_FILE": str(etc / "logpipe/logpipe.conf"), "DEFAULT_FILE": str(etc / "default/logpipe")}


def test_install_checks_as_www_data_refuses_a_foreign_command_then_force_reinstall_uninstall(root):
    where = paths(root)
    prefix = Path(where["PREFIX"])
    link = prefix / "bin" / "logpipe"
    home = prefix / "lib" / "logpipe"
    # a logpipe that is not ours (PyPI's "logpipe", say) is refused, before anything is built
    link.parent.mkdir(parents=True)
    link.write_text("#!/bin/sh\necho someone else's logpipe\n")
    refused = make("install", **where)
    assert refused.returncode != 0
    assert f"{link} exists and is not logpipe's link" in refused.stderr
    assert "FORCE=1" in refused.stderr
    assert "someone else's" in link.read_text() and not home.exists()

    # FORCE=1 replaces it; EXTRAS=postgresql puts psycopg into the virtualenv; www-data checked
    forced = make("install", FORCE="1", EXTRAS="postgresql", **where)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert f"replacing {link} (not a link)" in forced.stdout
    assert link.is_symlink() and os.readlink(link) == str(home / "bin" / "logpipe")
    assert f"checked: user www-data runs {link}: logpipe " in forced.stdout
    assert os.path.realpath(home / "bin" / "python") == os.path.realpath(DEBIAN_PYTHON)
    run = subprocess.run(["runuser", "-u", "www-data", "--", str(link), "--version"], cwd="/",
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("logpipe "), run
    assert subprocess.run([str(home / "bin" / "python"), "-c", "import psycopg"]).returncode == 0
    units = Path(where["SYSTEMD_DIR"])
    assert f"ExecStart={link} health" in (units / "logpipe-health.service").read_text()
    default = Path(where["DEFAULT_FILE"])
    assert default.read_text() == (REPO / "systemd" / "logpipe.default").read_text()
    example = REPO / "systemd" / "logpipe.conf.example"
    config = Path(where["CONFIG_FILE"])
    assert config.exists() == example.exists()

    # again, without FORCE: our own link is fine; an edited environment file is kept
    default.write_text(default.read_text() + "LOGPIPE_MEMCACHED=10.0.0.1:11211\n")
    again = make("install", **where)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "replacing" not in again.stdout and f"kept {default}" in again.stdout
    assert default.read_text().endswith("LOGPIPE_MEMCACHED=10.0.0.1:11211\n")

    removed = make("uninstall", **where)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not link.exists() and not link.is_symlink() and not home.exists()
    assert not (units / "logpipe-health.service").exists()
    assert not (Path(where["APACHE_CONF_DIR"]) / "logpipe.conf").exists()
    assert f"kept {default}: it was edited" in removed.stdout and default.exists()
    assert not config.exists()


def test_install_fails_clearly_when_www_data_cannot_read_the_python(root):
    """A Python under a 0700 directory (like pyenv's under /root): the virtualenv is built, but
    www-data cannot execute it, so make install must fail and say why."""
    private = root / "private"
    private.mkdir(mode=0o700)
    os.symlink(DEBIAN_PYTHON, private / "python3")
    dest = root / "dest"
    dest.mkdir()
    dest.chmod(0o755)
    res = make("install", DESTDIR=str(dest), INSTALL_PYTHON=str(private / "python3"))
    assert res.returncode != 0
    assert "FAILED: user www-data cannot run logpipe as installed" in res.stderr, res.stderr
    assert "Permission denied" in res.stderr
    assert f"the Python it is built on, {private}/python3" in res.stderr
    assert "INSTALL_PYTHON=/usr/bin/python3" in res.stderr
    assert "checked:" not in res.stdout


def test_install_needs_a_python_that_exists(root):
    res = make("install", DESTDIR=str(root), INSTALL_PYTHON=str(root / "no-python"))
    assert res.returncode != 0 and "no Python at INSTALL_PYTHON=" in res.stderr


def test_postgresql_db_without_psycopg_names_the_extra(tmp_path):
    """psycopg is an optional extra: without it, --db postgresql://… says what to install."""
    code = ("import sys; sys.modules['psycopg'] = None; sys.modules['psycopg2'] = None\n"
            "from logpipe.commands.main import main\n"
            "sys.exit(main(['rollup', '-', '--db', 'postgresql://u:secret@127.0.0.1:1/db']))\n")
    res = subprocess.run([sys.executable, "-c", code], input="", capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 1, res
    line = res.stderr.strip()
    assert "psycopg is not installed" in line and "EXTRAS=postgresql" in line, line
    assert "apache-logpipe[postgresql]" in line and "secret" not in line, line
