"""Benchmarks on a log file: logpipe's worker, the per-line recipe, GoAccess, apache-log-parser.

Every function returns a JSON-ready dict.  Rates are input lines per second
of wall-clock time (``lines_per_s``); for the CPU-bound runs the rate per CPU
second of the measured process (``lines_per_cpu_s``) is given too, which is
less disturbed by other work on a shared machine.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from . import REPO, python_bin, logpipe_bin
from .data import InputFile, distinct_url_lines
from .servers import Memcached, counter_keys, get_values, proc_children, proc_cpu_seconds, wait_for

__all__ = [
    "read_counters",
    "run_worker",
    "pipeline_run",
    "recipe_run",
    "goaccess_run",
    "alp_run",
    "memory_run",
    "eof_run",
    "COMBINED_FORMAT",
]

#: Debian's ``combined`` LogFormat (what logpipe's nickname means).
COMBINED_FORMAT = '%h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"'


def _wait4(proc: subprocess.Popen, timeout: float | None = None):
    """Wait for *proc* with ``wait4`` (to get its rusage); returns ``(exit code, rusage)``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, 0 if deadline is None else os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() > deadline:
            proc.kill()
            deadline = None
        time.sleep(0.005)


def read_counters(server: Memcached) -> dict[str, int]:
    """Every counter in *server*: ``{key: value}`` (index items and non-numbers left out).

    Keys are listed with ``lru_crawler metadump`` and logpipe's per-day
    indexes (:func:`bench.servers.counter_keys`).
    """
    keys = sorted(counter_keys(server.port))
    client = server.client(timeout=10.0)
    try:
        values = get_values(client, keys)
    finally:
        client.close()
    return {k: int(v) for k, v in values.items() if v.strip().isdigit()}


def _by_dimension(counters: dict[str, int]) -> dict[str, dict[tuple[str, str], int]]:
    """``{dimension: {(day, value): n}}`` from ``prefix:day:dimension:value`` keys."""
    out: dict[str, dict[tuple[str, str], int]] = {}
    for key, n in counters.items():
        parts = key.split(":", 3)
        if len(parts) == 4:
            out.setdefault(parts[2], {})[(parts[1], parts[3])] = n
    return out


def run_worker(input_path: Path, server: Memcached, options: list[str] = (), *,
               stdin_data: bytes | None = None, timeout: float = 600.0, cwd: Path = REPO) -> dict:
    """Run ``bench.worker_main`` (the worker, no supervisor) with *input_path* as stdin.

    *cwd* is the checkout whose ``logpipe`` and ``bench`` run (``bench.ab``).

    Returns the worker's report plus ``wall_seconds`` (process start to
    exit), ``lines_per_s`` and ``lines_per_cpu_s`` (over the worker's read
    loop, see :mod:`bench.worker_main`) and ``stderr`` (its last lines).
    """
    with tempfile.TemporaryDirectory(prefix="logpipe-bench-") as tmp:
        report_path = Path(tmp) / "report.json"
        err_path = Path(tmp) / "stderr"
        cmd = [python_bin(), "-m", "bench.worker_main", "--report", str(report_path),
               "--memcached", server.spec, "--status-dir", "", *options]
        with open(input_path, "rb") as stdin, open(err_path, "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=err, cwd=cwd,
                                    env={**os.environ, "PYTHONPATH": str(cwd)})
            code, usage = _wait4(proc, timeout)
            wall = time.perf_counter() - start
        stderr = err_path.read_text(errors="replace").splitlines()
        if code != 0 or not report_path.exists():
            raise RuntimeError(f"worker exited {code}: " + "\n".join(stderr[-20:]))
        report = json.loads(report_path.read_text())
    report["wall_seconds"] = wall
    report["lines_per_s"] = report["lines"] / report["run_seconds"]
    report["lines_per_cpu_s"] = report["lines"] / max(report["cpu_seconds"], 1e-9)
    report["child_maxrss"] = usage.ru_maxrss * 1024
    report["stderr"] = stderr[-5:]
    return report


def pipeline_run(data: InputFile, dimensions: str | None = None, *, label: str = "") -> dict:
    """Benchmark 1: the worker pipeline, *data* on stdin, to a fresh real memcached.

    Afterwards every counter is read back (``metadump``) and checked:
    ``status`` counters against the independent regex's expectation (all
    dimensions), ``url`` counters against the worker's page-view count.
    """
    options = [] if dimensions is None else ["--dimensions", dimensions]
    with Memcached(memory_mb=1024) as server:
        report = run_worker(data.path, server, options)
        counters = read_counters(server)
        stats = server.stats()
    dims = _by_dimension(counters)
    url_total = sum(dims.get("url", {}).values())
    result = {
        "label": label or ("all dimensions" if dimensions is None else f"--dimensions {dimensions}"),
        "dimensions": report["dimensions"],
        "input_lines": data.lines,
        **{k: report[k] for k in ("lines", "page_views", "rejected", "outcomes", "dropped_counts",
                                   "pending_keys", "flushes", "run_seconds", "cpu_seconds",
                                   "startup_seconds", "wall_seconds", "lines_per_s",
                                   "lines_per_cpu_s", "peak_rss", "stderr")},
        "keys_in_memcached": len(counters),
        "keys_per_dimension": {d: len(v) for d, v in sorted(dims.items())},
        "url_count_total": url_total,
        "url_counts_match_page_views": url_total == report["page_views"],
        "memcached_evictions": stats.get("evictions"),
        "url_counts": dims.get("url", {}),  # removed before JSON output; used for comparisons
    }
    if "status" in dims:
        status = {(day, value): n for (day, value), n in dims["status"].items()}
        expected = data.status_counts
        wrong = {k: (status.get(k, 0), expected.get(k, 0))
                 for k in set(status) | set(expected) if status.get(k, 0) != expected.get(k, 0)}
        result["status_count_total"] = sum(status.values())
        result["status_expected_total"] = data.parseable
        result["status_counts_match"] = not wrong
        result["status_mismatches"] = {f"{d} {s}": v for (d, s), v in sorted(wrong.items())[:10]}
    return result


# -- 2. the original recipe: one incr-or-add round trip per line ------------------------------

_RECIPE_RE = re.compile(rb'[^ ]+ [^ ]+ .*? \[(\d\d/[A-Za-z]{3}/\d{4}):[^\]]*\] "[A-Z]+ ([^ "?]*)[^"]*" \d{3} ')


def recipe_run(data: InputFile, max_lines: int) -> dict:
    """Benchmark 2: per line, parse, then ``incr``; on a miss ``add`` (then ``incr`` if that lost a race).

    The approach of the original recipe: one counter per URL per day, one
    confirmed memcached round trip (two on a key's first hit) per line.  Run
    on the first *max_lines* lines of the same input, against a fresh
    memcached; the counters' sum is checked against the lines counted.
    """
    from logpipe.keys import counter_key, normalize_path
    from logpipe.counting.parsing import day_from_clf

    days: dict[bytes, str] = {}
    counted = 0
    lines = 0
    with Memcached(memory_mb=512) as server:
        client = server.client(timeout=5.0)
        with open(data.path, "rb") as handle:
            start = time.perf_counter()
            cpu = time.process_time()
            for line in handle:
                lines += 1
                if lines > max_lines:
                    lines -= 1
                    break
                match = _RECIPE_RE.match(line)
                if not match:
                    continue
                raw_day = match.group(1)
                day = days.get(raw_day) or days.setdefault(raw_day, day_from_clf(raw_day) or "0000-00-00")
                key = counter_key(day, "url", normalize_path(match.group(2)), prefix="recipe")
                if client.incr(key, 1) is None:
                    if not client.add(key, b"1", expire=86400, noreply=False):
                        client.incr(key, 1)
                counted += 1
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
        client.close()
        total = sum(read_counters(server).values())
    return {
        "lines": lines,
        "counted": counted,
        "seconds": elapsed,
        "client_cpu_seconds": cpu,
        "lines_per_s": lines / elapsed,
        "counter_total": total,
        "counts_match": total == counted,
    }


# -- 3. GoAccess ----------------------------------------------------------------------------------

def goaccess_run(data: InputFile, out_dir: Path) -> dict:
    """Benchmark 3: Debian's ``goaccess`` on the same file, combined format, JSON report.

    Wall time of the whole run (parse, aggregate, write the report); CPU
    from ``wait4``.  The report's own request totals are included.
    """
    binary = "/usr/bin/goaccess"
    if not os.access(binary, os.X_OK):
        return {"skipped": "goaccess not installed (Debian package goaccess)"}
    out = out_dir / f"goaccess-report-{os.getpid()}.json"
    cmd = [binary, str(data.path), "--log-format=COMBINED", "--no-global-config", "--no-progress",
           "-o", str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    code, usage = _wait4(proc, 900)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if code != 0:
        return {"error": f"goaccess exited {code}: {err[-500:]}"}
    general = {}
    try:
        general = json.loads(out.read_text(errors="replace")).get("general", {})
    except (OSError, ValueError):
        pass
    finally:
        out.unlink(missing_ok=True)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "version": subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0],
        "lines": data.lines,
        "seconds": wall,
        "cpu_seconds": cpu,
        "lines_per_s": data.lines / wall,
        "lines_per_cpu_s": data.lines / max(cpu, 1e-9),
        "peak_rss": usage.ru_maxrss * 1024,
        "total_requests": general.get("total_requests"),
        "valid_requests": general.get("valid_requests"),
        "failed_requests": general.get("failed_requests"),
    }


# -- 4. apache-log-parser -----------------------------------------------------------------------

def alp_run(data: InputFile, max_lines: int) -> dict:
    """Benchmark 4: apache-log-parser's stock ``make_parser(combined)`` called per line.

    Stock means as documented: the ``%{User-Agent}i`` directive, so it also
    parses every User-Agent (most of its time).  First *max_lines* lines.
    """
    import apache_log_parser

    parser = apache_log_parser.make_parser(COMBINED_FORMAT)
    parsed = failed = 0
    with open(data.path, "rb") as handle:
        lines = [next(handle, b"").decode("utf-8", "replace") for _ in range(max_lines)]
    lines = [line for line in lines if line]
    start = time.perf_counter()
    cpu = time.process_time()
    for line in lines:
        try:
            parser(line)
            parsed += 1
        except (apache_log_parser.LineDoesntMatchException, ValueError):
            failed += 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    return {
        "version": getattr(apache_log_parser, "__version__", "1.7.0"),
        "lines": len(lines),
        "parsed": parsed,
        "failed": failed,
        "seconds": elapsed,
        "lines_per_s": len(lines) / elapsed,
        "lines_per_cpu_s": len(lines) / max(cpu, 1e-9),
    }


# -- memory: 100,000 distinct URLs in a day -----------------------------------------------------

def memory_run(distinct: int, total: int, work_dir: Path) -> dict:
    """The worker's peak RSS with *distinct* distinct URLs in one day (*total* lines, all page views).

    The whole file is read at full speed, so a flush interval holds as many
    distinct keys as the worker can parse in a second: the worst case.
    """
    day = dt.date.today()
    path = work_dir / f"distinct-{distinct}-{total}-{os.getpid()}.log"
    work_dir.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(distinct_url_lines(distinct, total, day)) + b"\n")
    with Memcached(memory_mb=1024) as server:
        report = run_worker(path, server)
        counters = read_counters(server)
    urls = _by_dimension(counters).get("url", {})
    path.unlink()
    return {
        "distinct_urls": distinct,
        "lines": report["lines"],
        "page_views": report["page_views"],
        "peak_rss": report["peak_rss"],
        "lines_per_s": report["lines_per_s"],
        "url_keys": len(urls),
        "url_count_total": sum(urls.values()),
        "counts_match": len(urls) == distinct and sum(urls.values()) == total,
        "dropped_counts": report["dropped_counts"],
    }


# -- 6. EOF to exit with 10,000 distinct keys pending -------------------------------------------

def _settle(pids: list[int], quiet: float = 0.3, timeout: float = 15.0) -> None:
    """Wait until *pids* have used no CPU for *quiet* seconds."""
    def total() -> float:
        return sum(proc_cpu_seconds(p) or 0.0 for p in pids)

    deadline = time.monotonic() + timeout
    last = total()
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = total()
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet:
            return


def eof_run(keys: int, daemon: bool) -> dict:
    """Benchmark 6: time from closing stdin (EOF) to process exit, *keys* distinct URLs pending.

    *keys* page-view lines with distinct URLs are written, the process is
    left to read and count them (``--flush-interval 3600``, so none is
    flushed before EOF), then stdin is closed and the exit awaited with
    ``wait4``.  With *daemon*, the real ``logpipe`` (supervisor + worker) as
    httpd runs it; otherwise the worker alone.  Afterwards every URL counter
    must be in memcached with value 1.
    """
    day = dt.date.today()
    data = b"\n".join(distinct_url_lines(keys, keys, day, prefix="/eof/")) + b"\n"
    with Memcached(memory_mb=256) as server, tempfile.TemporaryDirectory(prefix="logpipe-bench-") as tmp:
        if daemon:
            cmd = [logpipe_bin(), "--memcached", server.spec, "--flush-interval", "3600",
                   "--status-dir", tmp]
        else:
            cmd = [python_bin(), "-m", "bench.worker_main", "--report", os.path.join(tmp, "r.json"),
                   "--memcached", server.spec, "--status-dir", "", "--flush-interval", "3600"]
        err = open(os.path.join(tmp, "stderr"), "wb")
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)
        try:
            time.sleep(0.5 if daemon else 0.0)  # let the supervisor fork its worker
            proc.stdin.write(data)
            proc.stdin.flush()
            pids = [proc.pid] + (proc_children(proc.pid) if daemon else [])
            time.sleep(0.2)
            _settle(pids)
            status_lines = None
            if daemon:
                status_lines = _supervisor_lines(Path(tmp), keys)
            start = time.perf_counter()
            proc.stdin.close()
            code, _usage = _wait4(proc, 30)
            elapsed = time.perf_counter() - start
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            err.close()
        stderr = Path(tmp, "stderr").read_text(errors="replace").splitlines()
        urls = _by_dimension(read_counters(server)).get("url", {})
    return {
        "process": "logpipe daemon (supervisor + worker)" if daemon else "worker alone",
        "pending_keys": keys,
        "eof_to_exit_ms": elapsed * 1000,
        "exit_code": code,
        "supervisor_lines_read": status_lines,
        "url_keys": len(urls),
        "counts_match": len(urls) == keys and all(v == 1 for v in urls.values()),
        "stderr": stderr[-5:],
    }


def _supervisor_lines(status_dir: Path, want: int, timeout: float = 5.0) -> int | None:
    """``lines_read`` from the supervisor's status file once it reaches *want* (or the last seen)."""
    seen = [None]

    def check() -> bool:
        for path in status_dir.glob("supervisor-*.json"):
            try:
                seen[0] = json.loads(path.read_text()).get("lines_read")
            except (OSError, ValueError):
                continue
            if seen[0] == want:
                return True
        return False

    try:
        wait_for(check, timeout=timeout, interval=0.1)
    except TimeoutError:
        pass
    return seen[0]


def counter_summary(counters: dict[str, int]) -> Counter:
    """Total count per dimension of a ``{key: n}`` dump."""
    totals: Counter = Counter()
    for dim, values in _by_dimension(counters).items():
        totals[dim] += sum(values.values())
    return totals
