"""``make demo``: logpipe doing its job behind a real Apache httpd, on real-looking traffic.

``python -m bench.demo [--requests 3000] [--concurrency 8]``

1. starts a private memcached and a private Apache httpd (loopback, free
   ports, temporary directories) whose access log is piped to logpipe::

       CustomLog "|<abs path>/.venv/bin/logpipe --memcached 127.0.0.1:PORT --status-dir <tmp>" combined

   plus, for the final check only, the same lines to a plain file;
2. replays a few thousand requests whose paths, Referer and User-Agent
   headers come from the real combined logs in ``../shared/data/real``
   (or from a generated sample when that directory is absent);
3. stops httpd (logpipe reads to EOF, flushes, exits);
4. prints ``logpipe top url -n 10``, ``top referrer_host``, ``top browser``,
   ``top bot`` — what Apache's own requests produced in memcached;
5. checks the sum of the ``url`` counters (page views) against what the
   access log's lines say (``logpipe --dry-run`` on the plain file).

Everything it started is stopped, also on Ctrl-C and on errors.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import REAL_DIR, logpipe_bin
from .data import demo_requests, source_lines

__all__ = ["main", "dry_run_page_views"]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def dry_run_page_views(logpipe: str, log_file: Path) -> tuple[int, int]:
    """``(lines read, page views)`` from ``logpipe --dry-run`` on *log_file*."""
    with open(log_file, "rb") as handle:
        res = subprocess.run([logpipe, "--dry-run"], stdin=handle, capture_output=True, timeout=120)
    text = res.stdout.decode("utf-8", "replace")
    lines = re.search(r"^lines read\s+(\d+)", text, re.M)
    views = re.search(r"^page views\s+(\d+)", text, re.M)
    if res.returncode != 0 or not lines or not views:
        raise RuntimeError(f"logpipe --dry-run failed ({res.returncode}): {res.stderr.decode(errors='replace')[-500:]}")
    return int(lines.group(1)), int(views.group(1))


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 0 when the counts in memcached match the log, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests to replay (default 3000)")
    parser.add_argument("--concurrency", type=int, default=8, help="client connections (default 8)")
    args = parser.parse_args(argv)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    from .servers import Apache, Memcached, wait_for

    started = time.monotonic()
    logpipe = logpipe_bin()
    lines, source = source_lines()
    requests = demo_requests(args.requests, lines=lines)
    print(f"logpipe demo — {len(requests):,} requests taken from {source}")
    if not REAL_DIR.is_dir():
        print(f"  ({REAL_DIR} not found: using generated lines)")
    memcached = apache = None
    status_dir = Path(tempfile.mkdtemp(prefix="logpipe-demo-status-"))
    try:
        memcached = Memcached()
        command = f"{logpipe} --memcached {memcached.spec} --status-dir {status_dir}"
        apache = Apache([f'CustomLog "|{command}" combined'])
        access_log = apache.root / "logs" / "access.log"
        apache.custom_logs.append(f'CustomLog "{access_log}" combined')
        apache.start()
        print(f"\nmemcached  {memcached.spec} (pid {memcached.pid})")
        print(f"httpd      {apache.url('/')} (pid {apache.pid}), config {apache.conf_path}")
        print(f'           CustomLog "|{command}" combined')
        wait_for(lambda: len(apache.logger_pids(contains="logpipe")) == 1, timeout=15,
                 message="logpipe to start under httpd")
        t0 = time.monotonic()
        ok, failed = apache.send(requests, concurrency=args.concurrency)
        elapsed = time.monotonic() - t0
        print(f"\nreplayed   {ok + failed:,} requests in {elapsed:.1f} s ({(ok + failed) / elapsed:,.0f}/s): "
              f"{ok:,} answered < 400, {failed:,} answered ≥ 400 or failed")
        t0 = time.monotonic()
        apache.stop()  # httpd: SIGTERM to logpipe, then EOF; logpipe flushes and exits
        print(f"stopped    httpd and logpipe in {time.monotonic() - t0:.1f} s")
        day = time.strftime("%Y-%m-%d")
        logged = access_log.read_bytes().splitlines()
        if logged:
            match = re.search(rb"\[(\d\d)/(\w{3})/(\d{4}):", logged[0])
            if match:
                day = time.strftime("%Y-%m-%d", time.strptime(b"/".join(match.groups()).decode(), "%d/%b/%Y"))
        for dimension, n in (("url", 10), ("visitors", 5), ("referrer_host", 5), ("browser", 5), ("bot", 5),
                             ("bot_category", 5)):
            cmd = [logpipe, "top", dimension, "-n", str(n), "--memcached", memcached.spec, "--date", day]
            res = _run(cmd)
            print(f"\n$ logpipe top {dimension} -n {n}")
            print((res.stdout.rstrip() or "(none)") + (f"\n{res.stderr.rstrip()}" if res.returncode else ""))
        res = _run([logpipe, "top", "url", "-n", "1000000", "--json", "--memcached", memcached.spec, "--date", day])
        import json

        counted = sum(row["count"] for row in json.loads(res.stdout)["rows"]) if res.returncode == 0 else -1
        res = _run([logpipe, "top", "status", "-n", "1000", "--json", "--memcached", memcached.spec, "--date", day])
        requests_counted = sum(r["count"] for r in json.loads(res.stdout)["rows"]) if res.returncode == 0 else -1
        read, expected = dry_run_page_views(logpipe, access_log)
        same = counted == expected and requests_counted == read
        print(f"\ncheck: {counted:,} page views counted in memcached (sum of url counters, {day}) "
              f"{'=' if counted == expected else '≠'} {expected:,} page views in the {read:,} lines httpd wrote "
              f"to its own access.log (logpipe --dry-run); requests (status counters) {requests_counted:,} "
              f"{'=' if requests_counted == read else '≠'} {read:,} lines — {'OK' if same else 'MISMATCH'}")
        print(f"\ndone in {time.monotonic() - started:.1f} s")
        return 0 if same else 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    finally:
        if apache is not None:
            apache.cleanup()
        if memcached is not None:
            memcached.stop()
        import shutil

        shutil.rmtree(status_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
