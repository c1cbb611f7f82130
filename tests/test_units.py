"""The systemd units in systemd/, the tmpfiles.d entry, and ``make install`` / ``uninstall``.

``systemd-analyze verify`` works without systemd as PID 1; it checks that each ExecStart=
binary exists, so the units are verified from a copy whose ``/usr/local/bin/logpipe`` is
this environment's logpipe when that path does not exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYSTEMD = REPO / "systemd"
INSTALLED_BIN = "/usr/local/bin/logpipe"
UNITS = sorted(p.name for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer"))
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed "
                                   "(Debian package systemd; make deps)")


def unit_settings(name: str) -> dict[str, list[str]]:
    """``{Key: [values]}`` of a unit file (all sections; comments and blanks skipped)."""
    values: dict[str, list[str]] = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.fixture
def unit_dir(tmp_path, logpipe_bin) -> Path:
    """The units, with ExecStart= pointing at an existing logpipe."""
    target = tmp_path / "units"
    target.mkdir()
    binary = INSTALLED_BIN if os.access(INSTALLED_BIN, os.X_OK) else logpipe_bin
    for name in UNITS:
        text = (SYSTEMD / name).read_text().replace(INSTALLED_BIN, binary)
        (target / name).write_text(text)
    return target


def test_the_expected_units_exist() -> None:
    assert UNITS == ["logpipe-health.service", "logpipe-health.timer", "logpipe-notify@.service",
                     "logpipe-rollup.service", "logpipe-rollup.timer"]
    assert (SYSTEMD / "logpipe.tmpfiles").is_file()


@needs_analyze
def test_every_unit_verifies(unit_dir: Path) -> None:
    files = [str(unit_dir / name) for name in UNITS]
    res = subprocess.run([ANALYZE, "verify", "--recursive-errors=no", "--man=no", *files],
                         capture_output=True, text=True, timeout=60, cwd=unit_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr.strip() == "", res.stderr  # no warnings either


@needs_analyze
def test_verify_catches_a_mistake(unit_dir: Path) -> None:
    """The check above can fail: a typo and a missing binary are reported."""
    unit = unit_dir / "logpipe-health.service"
    unit.write_text(unit.read_text().replace("TimeoutStartSec=", "TimeoutStartSecs=")
                    .replace("ExecStart=/", "ExecStart=/nonexistent/"))
    res = subprocess.run([ANALYZE, "verify", "--recursive-errors=no", "--man=no", str(unit)],
                         capture_output=True, text=True, timeout=60, cwd=unit_dir)
    assert res.returncode != 0
    assert "TimeoutStartSecs" in res.stderr and "/nonexistent/" in res.stderr


def test_health_service() -> None:
    unit = unit_settings("logpipe-health.service")
    assert unit["Type"] == ["oneshot"]
    assert unit["ExecStart"] == [f"{INSTALLED_BIN} health"]
    assert unit["TimeoutStartSec"] == ["30s"]  # oneshot units have no start timeout by default
    condition = unit["ExecCondition"][0].split()
    assert condition[0] == "/usr/bin/systemctl" and "is-active" in condition
    assert "apache2.service" in condition
    assert unit["OnFailure"] == ["logpipe-notify@%n.service"]
    assert unit["ProtectSystem"] == ["strict"]  # read-only, enforced
    assert any(v.startswith("~kill ") for v in unit["SystemCallFilter"])  # signals nothing


def test_health_timer_every_minute() -> None:
    timer = unit_settings("logpipe-health.timer")
    assert timer["AccuracySec"] == ["1s"]
    assert timer["WantedBy"] == ["timers.target"]
    assert "Unit" not in timer  # starts logpipe-health.service, its namesake
    if ANALYZE:
        runs = next_elapses(timer["OnCalendar"][0], 3)
        assert [b - a for a, b in zip(runs, runs[1:])] == [timedelta(minutes=1)] * 2
        assert all(t.second == 0 for t in runs)


def test_rollup_units() -> None:
    service = unit_settings("logpipe-rollup.service")
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [f"{INSTALLED_BIN} rollup"]
    assert "TimeoutStartSec" in service
    assert service["OnFailure"] == ["logpipe-notify@%n.service"]
    timer = unit_settings("logpipe-rollup.timer")
    assert timer["Persistent"] == ["true"]
    if ANALYZE:
        runs = next_elapses(timer["OnCalendar"][0], 2)
        assert runs[1] - runs[0] == timedelta(days=1)
        assert (runs[0].hour, 0 < runs[0].minute <= 30) == (0, True)  # shortly after midnight


def test_notify_example_is_a_template() -> None:
    unit = unit_settings("logpipe-notify@.service")
    assert unit["Type"] == ["oneshot"]
    assert "%i" in unit["ExecStart"][0]
    assert os.access(unit["ExecStart"][0].split()[0], os.X_OK)


def next_elapses(spec: str, n: int) -> list[datetime]:
    """The next *n* times of an OnCalendar= spec, from systemd-analyze calendar."""
    res = subprocess.run([ANALYZE, "calendar", f"--iterations={n}", spec], capture_output=True,
                         text=True, timeout=30, env={**os.environ, "TZ": "UTC"})
    assert res.returncode == 0, res.stderr
    times = []
    for line in res.stdout.splitlines():  # "Next elapse: Sat 2026-11-21 09:31:00 UTC", "Iter. #2: …"
        label, _, value = line.partition(": ")
        if label.strip() == "Next elapse" or label.strip().startswith("Iter. #"):
            times.append(datetime.strptime(" ".join(value.split()[1:3]), "%Y-%m-%d %H:%M:%S"))
    assert len(times) == n, res.stdout
    return times


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles not installed")
def test_tmpfiles_creates_the_status_dir(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group"):  # users are resolved inside --root
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    res = subprocess.run(["systemd-tmpfiles", "--create", f"--root={root}",
                          str(SYSTEMD / "logpipe.tmpfiles")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    status = root / "run" / "logpipe"
    st = status.stat()
    assert status.is_dir() and (st.st_mode & 0o7777) == 0o755
    import pwd
    assert pwd.getpwuid(st.st_uid).pw_name == "www-data"


def test_health_exec_start_runs(logpipe_bin) -> None:
    """The command the service runs answers in the monitoring-plugin way."""
    command = unit_settings("logpipe-health.service")["ExecStart"][0].replace(INSTALLED_BIN, logpipe_bin)
    res = subprocess.run(command.split(), capture_output=True, text=True, timeout=30)
    assert res.returncode in (0, 1, 2, 3)
    assert res.stdout.split(" ", 1)[0] in ("OK", "WARNING", "CRITICAL", "UNKNOWN"), res.stdout


# ------------------------------------------------------------------------------ make install


def make(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env})


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_install_and_uninstall(tmp_path) -> None:
    dest = tmp_path / "dest"
    common = [f"DESTDIR={dest}", "PREFIX=/opt/lp", "INSTALL_PACKAGE=no"]
    res = make("install", *common)
    assert res.returncode == 0, res.stdout + res.stderr
    units = dest / "etc" / "systemd" / "system"
    assert sorted(p.name for p in units.iterdir()) == UNITS
    for name in UNITS:
        text = (units / name).read_text()
        assert INSTALLED_BIN not in text  # PREFIX respected
        assert text == (SYSTEMD / name).read_text().replace(INSTALLED_BIN, "/opt/lp/bin/logpipe")
    assert "ExecStart=/opt/lp/bin/logpipe health" in (units / "logpipe-health.service").read_text()
    assert (dest / "etc/tmpfiles.d/logpipe.conf").read_bytes() == (SYSTEMD / "logpipe.tmpfiles").read_bytes()
    conf = dest / "etc/apache2/conf-available/logpipe.conf"
    assert "exec /opt/lp/bin/logpipe --format combined" in conf.read_text()

    # an edited snippet is neither overwritten nor removed
    conf.write_text(conf.read_text() + "# mine\n")
    assert make("install", *common).returncode == 0
    assert conf.read_text().endswith("# mine\n")
    res = make("uninstall", *common)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not units.exists() or list(units.iterdir()) == []
    assert not (dest / "etc/tmpfiles.d/logpipe.conf").exists()
    assert conf.exists() and "kept" in res.stdout

    # uninstall refuses while Apache has the snippet enabled
    assert make("install", *common).returncode == 0
    enabled = dest / "etc/apache2/conf-enabled"
    enabled.mkdir()
    (enabled / "logpipe.conf").symlink_to("../conf-available/logpipe.conf")
    res = make("uninstall", *common)
    assert res.returncode != 0 and "a2disconf logpipe" in res.stdout
    assert (units / "logpipe-health.service").exists()
    (enabled / "logpipe.conf").unlink()
    conf.unlink()
    assert make("uninstall", *common).returncode == 0
    assert list(units.iterdir()) == []
