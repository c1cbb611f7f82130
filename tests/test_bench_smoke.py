"""The benchmark harness (bench/) measures what it claims: every input line is counted once.

Correctness of what ``python -m bench.run`` exercises, not speed: the worker
reads every line, every line is either counted once in memcached's ``status``
counters or rejected, the ``url`` counters add up to the page views, and the
JSON has the fields the table is built from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not os.access("/usr/bin/memcached", os.X_OK),
                                reason="memcached not installed (Debian package memcached; make deps)")


@pytest.mark.slow
def test_quick_pipeline_bench_counts_every_line(tmp_path):
    """``bench.run --quick --only pipeline``: JSON with positive rates, every line counted once."""
    out = tmp_path / "results.json"
    res = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "pipeline", "--lines", "40000",
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads(out.read_text())
    lines = doc["input"]["lines"]
    assert lines >= 40000
    for name in ("pipeline", "pipeline_url"):
        run = doc["results"][name]
        assert "error" not in run, run.get("traceback")
        assert run["lines_per_s"] > 0 and run["lines_per_cpu_s"] > 0 and run["peak_rss"] > 0
        assert run["lines"] == lines  # the worker read every line
        assert run["pending_keys"] == 0 and run["dropped_counts"] == 0
        assert run["page_views"] > 0
        assert run["url_count_total"] == run["page_views"]  # every page view landed in memcached once
    full = doc["results"]["pipeline"]
    # every line is counted exactly once in the status counters, or rejected as unparseable
    assert full["status_count_total"] + sum(full["rejected"].values()) == lines
    assert full["status_count_total"] == doc["input"]["parseable_lines"]  # an independent regex agrees
    assert full["status_counts_match"], full["status_mismatches"]
    assert doc["results"]["pipeline_url"]["url_counts_match_all_dimensions_run"]
    assert full["keys_per_dimension"]["url"] > 0 and full["keys_per_dimension"]["status"] > 0
    assert doc["results"]["pipeline_url"]["keys_per_dimension"] == {
        "url": doc["results"]["pipeline_url"]["keys_in_memcached"]}
    checks = {c["check"]: c for c in doc["checks"]}
    assert checks["pipeline counts: status counters = parseable lines"]["pass"]
    assert checks["pipeline counts: url counters = page views"]["pass"]
    assert "worker pipeline" in res.stdout  # the table was printed


def test_generated_input_is_all_parseable_and_spread_over_days(tmp_path):
    """The fallback input (no ../shared): every line parses, each copy lands one day later."""
    sys.path.insert(0, str(REPO))
    try:
        from bench.data import generate_sample, write_replicated
    finally:
        sys.path.remove(str(REPO))
    lines = generate_sample(2000)
    data = write_replicated(tmp_path / "in.log", 5000, lines=lines, source="generated")
    assert data.replicas == 3 and data.lines == 6000
    assert data.parseable == 6000 == sum(data.status_counts.values())
    written = data.path.read_bytes().splitlines()
    assert len(written) == 6000
    assert written[0] != written[2000] and written[0].split(b"[")[0] == written[2000].split(b"[")[0]
    assert data.days == 5  # 3 days of lines, each copy one day later


@pytest.mark.slow
def test_ab_runs_both_revisions_on_the_same_input_and_compares_counts():
    """``bench.ab HEAD``: HEAD's checkout and the working tree, alternated, the same page views."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    res = subprocess.run(
        [sys.executable, "-m", "bench.ab", "HEAD", "--runs", "1", "--lines", "3000"],
        cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    runs = [line for line in res.stdout.splitlines() if line.strip().startswith("run 1")]
    assert len(runs) == 2
    assert len({line.rsplit(",", 1)[1] for line in runs}) == 1  # the same page views
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert not (REPO / "bench" / "out" / "ab" / head.strip()[:12]).exists()  # its checkout is removed


@pytest.mark.slow
def test_supervisor_ab_times_both_supervisors_and_removes_its_checkout():
    """``bench.supervisor_ab HEAD``: each revision's supervisor passes the input and exits 0."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    res = subprocess.run(
        [sys.executable, "-m", "bench.supervisor_ab", "HEAD", "--runs", "1", "--lines", "3000"],
        cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    runs = [line for line in res.stdout.splitlines() if line.strip().startswith("run 1")]
    assert len(runs) == 2 and all(" CPU s, " in line for line in runs)
    summaries = [line for line in res.stdout.splitlines() if "CPU s best" in line]
    assert len(summaries) == 2
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert not (REPO / "bench" / "out" / "ab" / head.strip()[:12]).exists()
    assert not list((REPO / "bench" / "out" / "work").glob("supervisor-ab-input-*"))
