"""``make bench``: every benchmark of issue 3 in one run, a table on stdout, JSON in bench/out/results.json.

Usage (from the repository root)::

    python -m bench.run                      # the full run (about 8-10 minutes)
    python -m bench.run --quick              # small sizes, short httpd runs (about 2 minutes)
    python -m bench.run --only pipeline      # some parts: pipeline,recipe,goaccess,alp,memory,eof,httpd
    python -m bench.run --duration 60        # longer httpd load runs
    python -m bench.run --only httpd --logpipe "/abs/path/to/logpipe"
                                             # the httpd runs with another logger build
    python -m bench.run --only httpd --visitors 0
                                             # the httpd runs on one page with one visitor

Parts (all on the same input file, the real combined logs replicated to at
least ``--lines`` lines, each copy one day later; a generated log when
``../shared/data/real`` is absent):

1. ``pipeline`` logpipe's worker (no supervisor) reading the file on stdin,
   flushing to a real memcached: all dimensions (the default), then
   ``--dimensions url``; lines/s, peak RSS, and every counter read back and
   checked (``status`` against an independent regex, ``url`` against the
   worker's page views).
2. ``recipe`` one incr-or-add round trip per line (first ``--recipe-lines``).
3. ``goaccess`` Debian's goaccess on the whole file.
4. ``alp`` apache-log-parser's stock ``make_parser`` per line (first ``--alp-lines``).
5. ``httpd`` real Apache under wrk: CustomLog to ``cat``, to logpipe, to
   logpipe with memcached SIGSTOPped, to logpipe with its worker SIGSTOPped;
   ``--visitors`` new visitors on ``--urls`` pages (``bench.visitorload``).
6. ``eof`` EOF to exit with 10,000 distinct keys pending (worker, daemon).
+. ``memory`` the worker's peak RSS with 100,000 distinct URLs in one day.

The machine is usually shared: rates are from one run and move by tens of
percent between runs; the ``/CPU-s`` figures (lines per CPU second of the
measured process) move less.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback

from . import OUT_DIR, REPO
from .data import write_replicated

__all__ = ["main", "PARTS", "run_parts", "checks", "format_table"]

PARTS = ("pipeline", "recipe", "goaccess", "alp", "memory", "eof", "httpd")

FULL = {"lines": 1_000_000, "recipe_lines": 200_000, "alp_lines": 20_000, "memory_distinct": 100_000,
        "memory_lines": 300_000, "eof_keys": 10_000, "duration": 30.0, "warmup": 3.0}
QUICK = {"lines": 100_000, "recipe_lines": 20_000, "alp_lines": 3_000, "memory_distinct": 100_000,
         "memory_lines": 150_000, "eof_keys": 10_000, "duration": 8.0, "warmup": 1.0}

MB = 1 << 20


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and short httpd runs (~2 min)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts ({','.join(PARTS)})")
    parser.add_argument("--duration", type=float, help="seconds of each httpd load run (default 30; quick 8)")
    parser.add_argument("--warmup", type=float, help="seconds of wrk warm-up before each load run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--probe-rate", type=float, default=20.0, help="probe requests per second (default 20)")
    parser.add_argument("--visitors", type=int, default=20_000,
                        help="new visitors (distinct browser User-Agents from 127.0.0.1) arriving at a steady "
                             "rate over each httpd load run, on --urls pages (default 20,000); 0: every request "
                             "is /index.html with one User-Agent (the visitor markers are not exercised)")
    parser.add_argument("--urls", type=int, default=2_000,
                        help="distinct page paths of the visitor load, Zipf popularity (default 2,000)")
    parser.add_argument("--httpd-runs", default="cat,logpipe,memcached-frozen,worker-frozen",
                        help="which httpd load runs (default: all four)")
    parser.add_argument("--logpipe", help="logger command for the httpd runs (default: .venv/bin/logpipe)")
    parser.add_argument("--log-level", default="warn", help="httpd LogLevel in the load runs (default warn)")
    parser.add_argument("--lines", type=int, help="input lines, at least (default 1,000,000; quick 100,000)")
    parser.add_argument("--recipe-lines", type=int, help="lines for the per-line recipe (default 200,000)")
    parser.add_argument("--alp-lines", type=int, help="lines for apache-log-parser (default 20,000)")
    parser.add_argument("--out", default=str(OUT_DIR / "results.json"), help="JSON output file")
    parser.add_argument("--keep-input", action="store_true", help="keep the generated input in bench/out/work")
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    for name in ("lines", "recipe_lines", "alp_lines", "duration", "warmup"):
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    args.sizes = sizes
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    from .httpd import KINDS

    unknown = set(args.httpd_runs.split(",")) - set(KINDS)
    if unknown:
        parser.error(f"unknown httpd run(s) {', '.join(sorted(unknown))}; choose from {', '.join(KINDS)}")
    return args


def _meta(args: argparse.Namespace) -> dict:
    def sh(*cmd: str) -> str | None:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=REPO).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    cpu = None
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        pass
    from logpipe import __version__

    return {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "quick": args.quick,
        "parts": args.parts,
        "sizes": args.sizes,
        "wrk": {"connections": args.connections, "threads": args.threads},
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "logpipe": __version__,
        "git_commit": sh("git", "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(sh("git", "status", "--porcelain", "--untracked-files=no")),
        "note": "one run on a shared 2-core machine: rates are noisy",
    }


def run_parts(args: argparse.Namespace, say=print) -> dict:
    """Run the selected parts; return the results document (without ``checks``)."""
    from . import offline

    sizes = args.sizes
    work = OUT_DIR / "work"
    doc: dict = {"meta": _meta(args), "results": {}}
    results = doc["results"]

    def part(name: str, func, *a, **kw):
        say(f"[{time.strftime('%H:%M:%S')}] {name} …")
        start = time.monotonic()
        try:
            results[name] = func(*a, **kw)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        say(f"           {time.monotonic() - start:.1f} s" + (f"  ERROR {results[name]['error']}"
                                                              if "error" in results[name] else ""))

    needs_input = {"pipeline", "recipe", "goaccess", "alp"} & set(args.parts)
    data = None
    if needs_input:
        say(f"[{time.strftime('%H:%M:%S')}] writing the input (at least {sizes['lines']:,} lines) …")
        data = write_replicated(work / f"input-{sizes['lines']}-{os.getpid()}.log", sizes["lines"])
        doc["input"] = {"file": str(data.path.relative_to(REPO)), "lines": data.lines, "bytes": data.bytes,
                        "replicas": data.replicas, "days": data.days, "source": data.source,
                        "parseable_lines": data.parseable, "sha256": data.sha256}
        say(f"           {data.lines:,} lines, {data.bytes / MB:.0f} MiB, {data.days} days; {data.source}")
    try:
        if "pipeline" in args.parts:
            part("pipeline", offline.pipeline_run, data, None)
            part("pipeline_url", offline.pipeline_run, data, "url")
            all_dims, url_only = results.get("pipeline", {}), results.get("pipeline_url", {})
            if "url_counts" in all_dims and "url_counts" in url_only:
                url_only["url_counts_match_all_dimensions_run"] = url_only["url_counts"] == all_dims["url_counts"]
            for r in (all_dims, url_only):
                r.pop("url_counts", None)
        if "recipe" in args.parts:
            part("recipe", offline.recipe_run, data, sizes["recipe_lines"])
        if "goaccess" in args.parts:
            part("goaccess", offline.goaccess_run, data, work)
        if "alp" in args.parts:
            part("alp", offline.alp_run, data, sizes["alp_lines"])
        if "memory" in args.parts:
            part("memory", offline.memory_run, sizes["memory_distinct"], sizes["memory_lines"], work)
        if "eof" in args.parts:
            part("eof_worker", offline.eof_run, sizes["eof_keys"], False)
            part("eof_daemon", offline.eof_run, sizes["eof_keys"], True)
        if "httpd" in args.parts:
            from .httpd import KINDS, LoadConfig, load_run

            cfg = LoadConfig(duration=sizes["duration"], warmup=sizes["warmup"], connections=args.connections,
                             threads=args.threads, probe_rate=args.probe_rate, log_level=args.log_level,
                             logpipe=args.logpipe, visitors=args.visitors, urls=args.urls)
            run_id = f"{os.getpid()}-{int(time.time())}"
            for kind in KINDS:
                if kind in args.httpd_runs.split(","):
                    part(f"httpd_{kind}", load_run, kind, cfg, f"{run_id}-{kind}")
    finally:
        if data is not None and not args.keep_input:
            data.path.unlink(missing_ok=True)
    doc["meta"]["loadavg_end"] = os.getloadavg()
    doc["meta"]["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    return doc


def _get(doc: dict, *path, default=None):
    node = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def checks(doc: dict) -> list[dict]:
    """The issue's targets and the benchmarks' own correctness checks, evaluated on *doc*."""
    r = doc["results"]
    out: list[dict] = []

    def add(name: str, value, target: str, ok) -> None:
        out.append({"check": name, "value": value, "target": target, "pass": ok})

    pipe = r.get("pipeline", {})
    if "lines_per_s" in pipe:
        add("worker pipeline lines/s (all dimensions)", round(pipe["lines_per_s"]), ">= 300,000",
            pipe["lines_per_s"] >= 300_000)
        add("pipeline counts: status counters = parseable lines", pipe.get("status_count_total"),
            f"= {pipe.get('status_expected_total')}", bool(pipe.get("status_counts_match")))
        add("pipeline counts: url counters = page views", pipe.get("url_count_total"),
            f"= {pipe.get('page_views')}", bool(pipe.get("url_counts_match_page_views")))
    url = r.get("pipeline_url", {})
    if "lines_per_s" in url:
        add("worker pipeline lines/s (--dimensions url)", round(url["lines_per_s"]), "(no target)", None)
        add("url-only run: url counters = page views", url.get("url_count_total"), f"= {url.get('page_views')}",
            bool(url.get("url_counts_match_page_views")) and url.get("url_counts_match_all_dimensions_run", True))
    goa = r.get("goaccess", {})
    if "lines_per_s" in pipe and "lines_per_s" in goa:
        ratio = pipe["lines_per_s"] / goa["lines_per_s"]
        add("pipeline / GoAccess", round(ratio, 2), ">= 2", ratio >= 2)
    rec = r.get("recipe", {})
    if "lines_per_s" in pipe and "lines_per_s" in rec:
        ratio = pipe["lines_per_s"] / rec["lines_per_s"]
        add("pipeline / per-line round trip", round(ratio, 1), ">= 20", ratio >= 20)
        add("recipe counts: counters = lines counted", rec.get("counter_total"), f"= {rec.get('counted')}",
            bool(rec.get("counts_match")))
    mem = r.get("memory", {})
    if "peak_rss" in mem:
        add(f"worker peak RSS, {mem['distinct_urls']:,} distinct URLs in a day", f"{mem['peak_rss'] / MB:.0f} MiB",
            "<= 64 MiB", mem["peak_rss"] <= 64 * MB)
        add("memory run counts exact", mem.get("url_count_total"), f"= {mem.get('lines')}", bool(mem.get("counts_match")))
    base = _get(r, "httpd_cat", "load", "requests_per_s")
    for kind in ("cat", "logpipe", "memcached-frozen", "worker-frozen"):
        run = r.get(f"httpd_{kind}", {})
        if "load" not in run:
            continue
        failed = run["load"]["failed"] + run.get("probe", {}).get("failed", 0)
        add(f"httpd [{kind}] failed requests", failed, "= 0", failed == 0)
        if kind != "cat" and base:
            ratio = run["load"]["requests_per_s"] / base
            add(f"httpd [{kind}] requests/s ÷ cat", round(ratio, 3), ">= 0.95", ratio >= 0.95)
        if kind != "cat":
            add(f"httpd [{kind}] every logged request counted once",
                f"{run.get('counted_requests')} / {run.get('logged_lines')}", "equal", bool(run.get("counts_exact")))
    p99 = _get(r, "httpd_logpipe", "probe", "delay_p99_s")
    if p99 is not None:
        missing = _get(r, "httpd_logpipe", "probe", "missing", default=0)
        add("request-to-count delay p99", f"{p99:.3f} s" + (f" ({missing} never seen)" if missing else ""),
            "<= 1.5 s", p99 <= 1.5 and not missing)
    p99 = _get(r, "httpd_logpipe", "probe", "visitors", "delay_p99_s")
    if p99 is not None:
        missing = _get(r, "httpd_logpipe", "probe", "visitors", "missing", default=0)
        add("request-to-visitor-count delay p99", f"{p99:.3f} s" + (f" ({missing} never seen)" if missing else ""),
            "<= 1.1 s", p99 <= 1.1 and not missing)
    for kind in ("logpipe", "memcached-frozen", "worker-frozen"):
        visitors = _get(r, f"httpd_{kind}", "visitors")
        if visitors:
            # drops past --max-pending-visitors (memcached frozen) are reported, not hidden
            dropped = _get(r, f"httpd_{kind}", "worker_status", "dropped_visitors", default=0) or 0
            add(f"httpd [{kind}] site visitors = User-Agents sent", f"{visitors['counted']} / {visitors['expected']}"
                + (f" ({dropped} dropped)" if dropped else ""), "equal", bool(visitors["exact"]))
    for name in ("eof_daemon", "eof_worker"):
        eof = r.get(name, {})
        if "eof_to_exit_ms" in eof:
            add(f"EOF to exit, {eof['pending_keys']:,} keys pending ({eof['process']})",
                f"{eof['eof_to_exit_ms']:.0f} ms", "<= 100 ms", eof["eof_to_exit_ms"] <= 100)
            add(f"EOF run counts exact ({eof['process']})", eof.get("url_keys"), f"= {eof['pending_keys']}",
                bool(eof.get("counts_match")))
    for name, result in r.items():
        if "error" in result:
            add(f"{name} ran", result["error"], "no error", False)
    return out


def _rate(n: float | None) -> str:
    return "-" if n is None else f"{n:,.0f}"


def format_table(doc: dict) -> str:
    """The human-readable summary: one row per benchmark, then the checks."""
    r = doc["results"]
    rows: list[tuple[str, str, str]] = []

    def row(num: str, what: str, result: str) -> None:
        rows.append((num, what, result))

    for key, label in (("pipeline", "worker pipeline, all dimensions"), ("pipeline_url", "worker pipeline, --dimensions url")):
        p = r.get(key)
        if p and "lines_per_s" in p:
            row("1", f"{label} ({p['lines']:,} lines → memcached)",
                f"{_rate(p['lines_per_s'])} lines/s ({_rate(p['lines_per_cpu_s'])}/CPU-s), "
                f"peak RSS {p['peak_rss'] / MB:.0f} MiB, {p['keys_in_memcached']:,} keys")
    rec = r.get("recipe")
    if rec and "lines_per_s" in rec:
        row("2", f"incr-or-add round trip per line ({rec['lines']:,} lines)", f"{_rate(rec['lines_per_s'])} lines/s")
    goa = r.get("goaccess")
    if goa and "lines_per_s" in goa:
        row("3", f"GoAccess {goa.get('version', '').replace('GoAccess - ', '').rstrip('.')} ({goa['lines']:,} lines, JSON report)",
            f"{_rate(goa['lines_per_s'])} lines/s ({_rate(goa['lines_per_cpu_s'])}/CPU-s), "
            f"peak RSS {goa['peak_rss'] / MB:.0f} MiB")
    alp = r.get("alp")
    if alp and "lines_per_s" in alp:
        row("4", f"apache-log-parser make_parser per line ({alp['lines']:,} lines)", f"{_rate(alp['lines_per_s'])} lines/s")
    base = _get(r, "httpd_cat", "load", "requests_per_s")
    for kind, label in (("cat", "(a) cat > /dev/null"), ("logpipe", "(b) logpipe"),
                        ("memcached-frozen", "(c) logpipe, memcached SIGSTOPped"),
                        ("worker-frozen", "(d) logpipe, worker SIGSTOPped")):
        run = r.get(f"httpd_{kind}")
        if not run or "load" not in run:
            continue
        load = run["load"]
        text = f"{_rate(load['requests_per_s'])} req/s"
        if base and kind != "cat":
            text += f" = {load['requests_per_s'] / base:.3f} × (a)"
        text += f", {load['failed'] + run['probe'].get('failed', 0)} failed"
        if kind != "cat":
            diff = run.get("count_difference")
            text += f", counted {run.get('counted_requests')} of {run.get('logged_lines')} logged"
            if diff:
                text += f" ({diff:+,})"
            if run.get("logpipe_cpu_percent") is not None:
                text += f", logpipe {run['logpipe_cpu_percent']:.0f}% CPU"
        if kind == "logpipe" and run["probe"].get("delay_p99_s") is not None:
            text += f", count delay p50 {run['probe']['delay_p50_s']:.2f} s p99 {run['probe']['delay_p99_s']:.2f} s"
        visitors = run["probe"].get("visitors") or {}
        if kind == "logpipe" and visitors.get("delay_p99_s") is not None:
            text += f", visitor count delay p50 {visitors['delay_p50_s']:.2f} s p99 {visitors['delay_p99_s']:.2f} s"
        if run.get("visitors"):
            text += f", visitors {run['visitors']['counted']} of {run['visitors']['expected']} sent"
        if kind == "worker-frozen" and run.get("supervisor"):
            text += f", worker restarts {len(run['supervisor'].get('worker_restarts') or [])}"
        row("5", f"httpd + wrk {load['seconds']:.0f} s, {label}", text)
    for name in ("eof_worker", "eof_daemon"):
        eof = r.get(name)
        if eof and "eof_to_exit_ms" in eof:
            row("6", f"EOF → exit, {eof['pending_keys']:,} keys pending, {eof['process']}",
                f"{eof['eof_to_exit_ms']:.0f} ms")
    mem = r.get("memory")
    if mem and "peak_rss" in mem:
        row("+", f"memory: {mem['distinct_urls']:,} distinct URLs in a day ({mem['lines']:,} lines)",
            f"peak RSS {mem['peak_rss'] / MB:.0f} MiB")
    width = max((len(w) for _, w, _ in rows), default=10)
    lines = [f"{'#':<2} {'benchmark':<{width}}  result", f"{'-' * 2} {'-' * width}  {'-' * 40}"]
    lines += [f"{n:<2} {w:<{width}}  {res}" for n, w, res in rows]
    lines.append("")
    cw = max((len(c["check"]) for c in doc.get("checks", [])), default=10)
    lines.append(f"{'check':<{cw}}  {'value':>22}  {'target':<12}  verdict")
    for c in doc.get("checks", []):
        verdict = "-" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")
        lines.append(f"{c['check']:<{cw}}  {str(c['value']):>22}  {c['target']:<12}  {verdict}")
    meta = doc["meta"]
    lines.append("")
    lines.append(f"{meta.get('cpus')} CPUs ({meta.get('cpu')}), load average {meta['loadavg_start'][0]:.2f} at start, "
                 f"{meta.get('loadavg_end', [0])[0]:.2f} at end — {meta['note']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; print the table and the JSON; write the JSON file. Exit 0 unless a part errored."""
    args = _parse_args(argv)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731 - progress on stderr
    try:
        doc = run_parts(args, say)
    except KeyboardInterrupt:
        print("interrupted: every server this run started has been stopped", file=sys.stderr)
        return 130
    doc["checks"] = checks(doc)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=1, default=str)
    print(format_table(doc))
    print()
    print(json.dumps({"results": doc["results"], "checks": doc["checks"]}, indent=1, default=str))
    print(f"\nwritten: {args.out}", file=sys.stderr)
    return 1 if any("error" in v for v in doc["results"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
