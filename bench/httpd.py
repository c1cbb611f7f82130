"""Benchmark 5: a real Apache httpd under load, its CustomLog piped to different loggers.

One run per logger, each on a fresh private httpd (``tests/servers.py``'s
:class:`Apache`: event MPM, keep-alive) and a fresh memcached:

* ``cat``              ``CustomLog "|$exec /bin/cat > /dev/null"`` — the baseline;
* ``logpipe``          ``CustomLog "|<venv>/bin/logpipe --memcached … --status-dir …"``;
* ``memcached-frozen`` the same, memcached stopped by SIGSTOP before the load
  and resumed after it;
* ``worker-frozen``    the same, logpipe's worker stopped by SIGSTOP before the
  load (the supervisor is expected to spool, then replace the silent worker).

Load: ``wrk`` with keep-alive connections, after a short warm-up.  By
default (``LoadConfig.visitors``) a Lua script (:mod:`bench.visitorload`)
spreads the requests over 2,000 pages and 20,000 browser User-Agents that
arrive at a steady rate, so logpipe's visitor markers (issue 12) work all
run long; with ``visitors=0`` every request is one small static page
(``/index.html``, 70 bytes) with one browser User-Agent.  Either way every
request sends a search Referer.  Meanwhile a probe thread requests unique URLs
(``/probe/<run>/<n>``) at a steady rate in every run (the same extra load
everywhere), each with a User-Agent of its own (a new visitor) in the
visitor load; in the ``logpipe`` run a poller reads each probe's ``url``
counter (:func:`logpipe.keys.counter_key` + :func:`~logpipe.keys.normalize_path`)
and its ``visitors:{path}`` counter (:func:`logpipe.keys.visitors_key`)
from memcached to measure both request-to-count delays.

After the load the supervisor's status file gives ``lines_read`` (every line
httpd wrote into the pipe); the sum of all ``status`` counters in memcached
must equal it once logpipe has flushed (for ``memcached-frozen``: once
memcached is resumed; the time that takes is reported).  With visitors, the
site-wide ``visitors:*`` counter must equal the distinct User-Agents sent
(``visitors_exact``), counted from the scripts' own reports and the probe's
answered requests, not by logpipe's code.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import logpipe_bin
from .data import BROWSER_UA
from .servers import Apache, Memcached, counter_keys, get_values, proc_children, proc_cpu_seconds, proc_state, \
    signal_pid, wait_for
from .visitorload import PROBE_BASE, VisitorLoad, browser_ua, parse_introduced

__all__ = ["LoadConfig", "KINDS", "load_run", "wrk", "Probe"]

KINDS = ("cat", "logpipe", "memcached-frozen", "worker-frozen")
REFERER = "https://www.google.com/search?q=apache+piped+log+counter"


@dataclass
class LoadConfig:
    """Parameters of the load runs (seconds, connections, requests per second)."""

    duration: float = 30.0
    warmup: float = 3.0
    connections: int = 32
    threads: int = 2
    probe_rate: float = 20.0
    path: str = "/index.html"
    #: httpd's LogLevel ("info" shows child process starts and exits)
    log_level: str = "warn"
    #: the logger command (default: the ``logpipe`` next to the running python);
    #: another build can be compared with ``python -m bench.run --logpipe CMD``
    logpipe: str | None = None
    #: how long to wait for counts to arrive after the load (memcached-frozen
    #: needs the worker's back-off, up to 30 s, to expire)
    settle_timeout: float = 75.0
    #: new visitors (distinct browser User-Agents) arriving over the load, on
    #: *urls* pages (:mod:`bench.visitorload`); 0: every request is *path*
    #: with one User-Agent (a single visitor: markers are not exercised)
    visitors: int = 20_000
    urls: int = 2_000


def wrk(url: str, duration: float, connections: int, threads: int, script: list[str] | None = None) -> dict:
    """Run ``wrk`` (keep-alive) and parse its summary.

    Args:
        script: ``-s FILE -- ARGS…`` (:meth:`bench.visitorload.VisitorLoad.write`)
            to generate the requests; None: every request is a GET of *url*
            with a browser User-Agent (wrk's own is a crawler's) and a search Referer.

    Returns:
        ``requests``, ``seconds``, ``requests_per_s``, ``socket_errors``
        (connect/read/write/timeout), ``non_2xx_3xx``, ``failed`` (their sum),
        ``latency_p50_ms``/``latency_p99_ms``, and with a *script* its
        ``visitors_introduced`` (:func:`bench.visitorload.parse_introduced`).
    """
    cmd = ["wrk", f"-t{threads}", f"-c{max(connections, threads)}", f"-d{max(1, round(duration))}s", "--latency"]
    if script:
        split = script.index("--")
        cmd += [*script[:split], url, *script[split:]]
    else:
        cmd += ["-H", f"User-Agent: {BROWSER_UA}", "-H", f"Referer: {REFERER}", url]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    out = res.stdout
    if res.returncode != 0 or "requests in" not in out:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stdout}{res.stderr}")
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    requests = int(match.group(1))
    seconds = float(match.group(2)) * (0.001 if match.group(3) == "ms" else 1)
    errors = {k: 0 for k in ("connect", "read", "write", "timeout")}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors = dict(zip(errors, map(int, sock.groups())))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(non2xx.group(1)) if non2xx else 0

    def percentile(p: str) -> float | None:
        found = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not found:
            return None
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
        return float(found.group(1)) * scale

    result = {
        "requests": requests,
        "seconds": seconds,
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "socket_errors": errors,
        "non_2xx_3xx": non2xx,
        "failed": non2xx + sum(errors.values()),
        "latency_p50_ms": percentile("50"),
        "latency_p99_ms": percentile("99"),
    }
    if script:
        result["visitors_introduced"] = parse_introduced(out)
    return result


class Probe:
    """Requests unique URLs at a steady rate; optionally polls memcached for their counters.

    Args:
        port: httpd's port.
        run_id: part of the probe paths (``/probe/<run_id>/<n>``).
        rate: requests per second.
        memcached: when given, a poller thread reads each probe's counter
            every *poll_interval* seconds and records when it appears.
        new_visitors: every probe is also a new visitor (its own User-Agent,
            :func:`bench.visitorload.browser_ua` from :data:`PROBE_BASE`); the
            poller then also waits for the probe URL's ``visitors:{path}``
            counter (:func:`logpipe.keys.visitors_key`), which needs the
            visitor's markers to be claimed and committed.
    """

    #: measures: ``url`` (the page view counted), ``visitors`` (the visitor counted)
    MEASURES = ("url", "visitors")

    def __init__(self, port: int, run_id: str, rate: float, memcached: Memcached | None = None,
                 poll_interval: float = 0.025, new_visitors: bool = False):
        from logpipe.keys import counter_key, normalize_path, visitors_key

        self.port = port
        self.run_id = run_id
        self.rate = rate
        self.memcached = memcached
        self.poll_interval = poll_interval
        self.new_visitors = new_visitors
        day = dt.date.today().isoformat()
        self._keys = {"url": lambda path: counter_key(day, "url", normalize_path(path)),
                      "visitors": lambda path: visitors_key(day, path)}
        self._measured = self.MEASURES if new_visitors else ("url",)
        #: per measure: key -> send time, key -> first time readable
        self.sent: dict[str, dict[str, float]] = {m: {} for m in self._measured}
        self.seen: dict[str, dict[str, float]] = {m: {} for m in self._measured}
        #: User-Agents of answered probes (each logged once) and of failed ones (maybe logged)
        self.agents: set[str] = set()
        self.uncertain_agents: set[str] = set()
        self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._done = False
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> "Probe":
        """Start the sender (and the poller)."""
        self._threads = [threading.Thread(target=self._send_loop, daemon=True)]
        if self.memcached is not None:
            self._threads.append(threading.Thread(target=self._poll_loop, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop_sending(self) -> None:
        """Stop sending (the poller goes on until :meth:`finish`)."""
        self._stop.set()
        self._threads[0].join(30)

    def finish(self, timeout: float) -> None:
        """Wait up to *timeout* seconds for every sent probe to be seen, then stop polling."""
        self.stop_sending()
        if self.memcached is not None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with self._lock:
                    if all(len(self.seen[m]) >= len(self.sent[m]) for m in self._measured):
                        break
                time.sleep(0.05)
        self._done = True
        for thread in self._threads[1:]:
            thread.join(5)

    def _send_loop(self) -> None:
        conn = None
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            path = f"/probe/{self.run_id}/{n}"
            agent = browser_ua(PROBE_BASE + n) if self.new_visitors else BROWSER_UA
            n += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                sent = time.monotonic()
                conn.request("GET", path, headers={"User-Agent": agent})
                response = conn.getresponse()
                response.read()
                if response.status >= 400:
                    self.failed += 1
                    self.errors.append(f"HTTP {response.status}")
                else:
                    with self._lock:
                        self.agents.add(agent)
                        for measure in self._measured:
                            self.sent[measure][self._keys[measure](path)] = sent
            except (OSError, http.client.HTTPException) as exc:
                self.failed += 1
                self.uncertain_agents.add(agent)
                self.errors.append(f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
            next_at += 1.0 / self.rate
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        if conn is not None:
            conn.close()

    def _poll_loop(self) -> None:
        client = self.memcached.client(timeout=2.0)
        while not self._done:
            with self._lock:
                waiting = [k for m in self._measured for k in self.sent[m] if k not in self.seen[m]]
            if waiting:
                try:
                    found = get_values(client, waiting)
                except Exception:  # noqa: BLE001 - memcached may be paused; try again
                    found = {}
                    client.close()
                now = time.monotonic()
                with self._lock:
                    for key in found:
                        for measure in self._measured:
                            if key in self.sent[measure]:
                                self.seen[measure].setdefault(key, now)
            time.sleep(self.poll_interval)
        client.close()

    def delays(self, measure: str = "url") -> list[float]:
        """Seconds from sending each seen probe to its *measure* counter being readable, sorted."""
        sent, seen = self.sent[measure], self.seen[measure]
        return sorted(seen[k] - sent[k] for k in seen if k in sent)

    def _delay_summary(self, measure: str) -> dict:
        delays = self.delays(measure)
        sent, seen = self.sent[measure], self.seen[measure]
        # the median delay of each tenth of the run (by send time): a worker
        # falling behind shows as a rising trend, a slow flush as a flat one
        ordered = [seen[k] - sent[k] for k in sorted(seen, key=sent.__getitem__)]
        tenths = [sorted(ordered[len(ordered) * i // 10:len(ordered) * (i + 1) // 10]) for i in range(10)]

        def pct(p: float) -> float | None:
            if not delays:
                return None
            return delays[min(len(delays) - 1, int(round(p / 100 * len(delays) + 0.5)) - 1)]

        return {
            "seen": len(delays),
            "missing": len(self.sent[measure]) - len(delays),
            "delay_p50_s": pct(50),
            "delay_p99_s": pct(99),
            "delay_max_s": delays[-1] if delays else None,
            "delay_p50_by_tenth_s": [round(t[len(t) // 2], 2) for t in tenths if t],
        }

    def summary(self) -> dict:
        """Probe statistics for the results: the ``url`` delays at the top, the visitors' under ``visitors``."""
        out = {"sent": len(self.sent["url"]), "failed": self.failed, "errors": self.errors[:5]}
        if self.memcached is not None:
            out.update(self._delay_summary("url"))
            if self.new_visitors:
                out["visitors"] = self._delay_summary("visitors")
        return out


def _status_total(server: Memcached) -> int:
    """Sum of every ``status`` counter in *server* (each logged request counts once there)."""
    keys = [k for k in counter_keys(server.port) if k.split(":", 3)[2:3] == ["status"]]
    client = server.client(timeout=5.0)
    try:
        return sum(int(v) for v in get_values(client, keys).values() if v.strip().isdigit())
    finally:
        client.close()


def _supervisor_status(status_dir: Path, pid: int | None = None) -> dict | None:
    best = None
    for path in status_dir.glob("supervisor-*.json"):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if pid is None or doc.get("pid") == pid:
            if best is None or doc.get("updated", 0) > best.get("updated", 0):
                best = doc
    return best


def _stable_status(status_dir: Path, pid: int, timeout: float = 10.0) -> dict | None:
    """The supervisor's status once two successive files agree on ``lines_read`` and nothing is spooled."""
    last = [None]

    def check() -> bool:
        doc = _supervisor_status(status_dir, pid)
        if doc is None:
            return False
        previous, last[0] = last[0], doc
        return (previous is not None and previous.get("updated") != doc.get("updated")
                and previous.get("lines_read") == doc.get("lines_read") and not doc.get("spool_bytes"))

    try:
        wait_for(check, timeout=timeout, interval=0.25)
    except TimeoutError:
        pass
    return last[0]


def _loggers(apache: Apache) -> tuple[int | None, int | None]:
    """(supervisor pid, worker pid) of the single live logpipe under *apache*."""
    supervisors = apache.logger_pids(contains="logpipe")
    if len(supervisors) != 1:
        return None, None
    workers = proc_children(supervisors[0])
    return supervisors[0], (workers[0] if len(workers) == 1 else None)


def _settle_counts(server: Memcached, lines: int | None, since: float, timeout: float) -> dict:
    """Poll the ``status`` total until it equals *lines*, or stays above it, or *timeout* passes.

    Returns ``counts_arrived_after_s`` (None when never exact) and the totals
    seen at the first poll and at the end of the wait.
    """
    first = last = None
    stable_since = time.monotonic()
    arrived = None
    while True:
        counted = _status_total(server)
        now = time.monotonic()
        first = counted if first is None else first
        if counted != last:
            last, stable_since = counted, now
        if lines is not None and counted == lines:
            arrived = round(now - since, 2)
            break
        if lines is not None and counted > lines and now - stable_since > 8:
            break  # more than was logged, and no longer moving
        if now - since > timeout:
            break
        time.sleep(0.25)
    return {"counts_arrived_after_s": arrived, "counted_at_first_poll": first,
            "counted_at_end_of_wait": last}


def _error_log_summary(apache: Apache) -> dict:
    """The ErrorLog lines from logpipe and about piped logs or child processes (last few)."""
    lines = [line for line in apache.error_log_text().splitlines()
             if "AH00094" not in line and "AH00163" not in line]  # start-up notices
    return {"error_log": lines[-10:], "error_log_lines": len(lines)}


def _one_logger(apache: Apache) -> tuple[int, int] | None:
    pids = _loggers(apache)
    return pids if all(pids) else None


def _visitor_load(cfg: LoadConfig, start_rate: float) -> VisitorLoad | None:
    """The visitor load of the measured wrk run (None when ``cfg.visitors`` is 0).

    *start_rate* (requests per second of the warm-up) spreads the first
    second's new visitors.
    """
    if not cfg.visitors:
        return None
    return VisitorLoad(visitors=cfg.visitors, urls=cfg.urls, threads=cfg.threads, duration=cfg.duration,
                       referer=REFERER, start_rate=start_rate)


def _settle_visitors(server: Memcached, expected: int, uncertain: int, since: float, timeout: float) -> dict:
    """Poll the site-wide visitors counter of today until it equals *expected*, or stops moving.

    Args:
        expected: distinct User-Agents of the page views httpd logged today
            (from the wrk scripts' counts and the probe's answered requests).
        uncertain: probe User-Agents whose request failed (maybe logged):
            the counter may exceed *expected* by up to this many.

    Returns ``expected``, ``counted``, ``uncertain``, ``exact`` (counted ==
    expected, or within the uncertain ones) and ``arrived_after_s``.
    """
    from logpipe.keys import visitors_key

    key = visitors_key(dt.date.today().isoformat())
    client = server.client(timeout=5.0)
    counted, last_change, arrived = None, time.monotonic(), None
    try:
        while True:
            value = get_values(client, [key]).get(key, b"0")
            now = time.monotonic()
            if int(value) != counted:
                counted, last_change = int(value), now
            if expected <= counted <= expected + uncertain:
                arrived = round(now - since, 2)
                break
            if now - since > timeout or (counted > expected + uncertain and now - last_change > 5):
                break
            time.sleep(0.25)
    finally:
        client.close()
    return {"expected": expected, "counted": counted, "uncertain": uncertain,
            "exact": arrived is not None, "arrived_after_s": arrived}


def _worker_status(status_dir: Path) -> dict | None:
    """The latest worker status file's visitor and flush figures (pending, dropped, flushes, RSS)."""
    docs = []
    for path in status_dir.glob("worker-*.json"):
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    if not docs:
        return None
    doc = max(docs, key=lambda d: d.get("updated", 0))
    return {k: doc.get(k) for k in ("pid", "updated", "lines", "page_views", "pending_keys", "pending_visitors",
                                    "dropped_visitors", "dropped_counts", "flushes", "last_flush_ok", "lines_per_second",
                                    "rss")}


class _WorkerWatch:
    """Reads the worker's status file every second during the load.

    :meth:`stop` returns the peaks of :attr:`FIELDS` and ``flush_cycle_s``:
    seconds per flush while the load ran (the flush interval plus the time a
    flush takes, when the worker always has counts to send).
    """

    FIELDS = ("pending_keys", "pending_visitors", "dropped_visitors", "lines_per_second", "rss")

    def __init__(self, status_dir: Path):
        self.status_dir = status_dir
        self.peaks: dict[str, float] = {}
        self.samples = 0
        self._flushes: list[tuple[float, int]] = []  # (status file's "updated", flushes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "_WorkerWatch":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            status = _worker_status(self.status_dir) or {}
            self.samples += 1
            for name in self.FIELDS:
                value = status.get(name)
                if isinstance(value, (int, float)):
                    self.peaks[name] = max(value, self.peaks.get(name, value))
            if isinstance(status.get("flushes"), int) and status.get("updated"):
                self._flushes.append((status["updated"], status["flushes"]))

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(5)
        out = {"samples": self.samples, **self.peaks}
        if len(self._flushes) >= 2 and self._flushes[-1][1] > self._flushes[0][1]:
            (t0, f0), (t1, f1) = self._flushes[0], self._flushes[-1]
            out["flush_cycle_s"] = round((t1 - t0) / (f1 - f0), 3)
        return out


def load_run(kind: str, cfg: LoadConfig, run_id: str) -> dict:
    """One httpd load run with logger *kind* (one of :data:`KINDS`); returns its results."""
    if kind not in KINDS:
        raise ValueError(kind)
    server = Memcached(memory_mb=256) if kind != "cat" else None
    status_dir = Path(tempfile.mkdtemp(prefix="logpipe-bench-status-"))
    if kind == "cat":
        custom_log = 'CustomLog "|$exec /bin/cat > /dev/null" combined'
    else:
        custom_log = (f'CustomLog "|{cfg.logpipe or logpipe_bin()} --memcached {server.spec} '
                      f'--status-dir {status_dir}" combined')
    apache = Apache(custom_log, log_level=cfg.log_level)
    script_dir = status_dir.with_name(status_dir.name + "-wrk")
    result: dict = {"kind": kind, "logger": custom_log}
    if cfg.visitors:
        result["load_shape"] = {"visitors": cfg.visitors, "urls": cfg.urls, "connections": cfg.connections,
                                "threads": cfg.threads}
    frozen: list[int] = []
    try:
        apache.start()
        supervisor = worker = None
        if kind != "cat":
            supervisor, worker = wait_for(lambda: _one_logger(apache), timeout=15,
                                          message="one logpipe supervisor with its worker")
            result["supervisor_pid"], result["first_worker_pid"] = supervisor, worker
        if kind == "memcached-frozen":
            server.pause()
        elif kind == "worker-frozen":
            signal_pid(worker, signal.SIGSTOP)
            frozen.append(worker)
        url = apache.url(cfg.path)
        warm_rate, sent_agents = 0.0, set()
        if cfg.warmup > 0:
            # the one-page shape: a visitor script cannot keep its last seconds free
            # of new visitors in a run of 1-3 s (see bench.visitorload), so
            # exactness would depend on requests cut off at the end
            warm_rate = wrk(url, cfg.warmup, cfg.connections, cfg.threads)["requests_per_s"]
            sent_agents.add(BROWSER_UA)
        probe = Probe(apache.port, run_id, cfg.probe_rate, server if kind == "logpipe" else None,
                      new_visitors=cfg.visitors > 0)
        cpu_pids = [p for p in (supervisor, worker) if p]
        cpu_before = sum(proc_cpu_seconds(p) or 0.0 for p in cpu_pids)
        watch = _WorkerWatch(status_dir).start() if kind != "cat" else None
        probe.start()
        main = _visitor_load(cfg, warm_rate)
        load = wrk(url, cfg.duration, cfg.connections, cfg.threads, main.write(script_dir / "load") if main else None)
        load_end = time.monotonic()
        sent_agents |= main.agents_sent(load["visitors_introduced"]) if main else {BROWSER_UA}
        if watch is not None:
            result["worker_peaks"] = watch.stop()
        if kind != "cat":
            live = [p for p in cpu_pids if proc_state(p) is not None] + \
                   [p for p in proc_children(supervisor) if p not in cpu_pids]
            result["logpipe_cpu_percent"] = round(100 * (sum(proc_cpu_seconds(p) or 0.0 for p in live)
                                                         - cpu_before) / load["seconds"], 1)
        result["load"] = load
        if kind == "logpipe":
            probe.finish(timeout=10.0)
        else:
            probe.stop_sending()
        result["probe"] = probe.summary()
        if kind == "cat":
            result.update(_error_log_summary(apache))
            return result
        # everything httpd wrote has reached logpipe's supervisor
        status = _stable_status(status_dir, supervisor)
        result["supervisor"] = {k: status.get(k) for k in (
            "lines_read", "lines_forwarded", "lines_replayed", "lines_dropped", "unprotected_lines",
            "lines_lost", "worker_restarts", "spool_bytes", "pipe_size")} if status else None
        result["workers_now"] = proc_children(supervisor)
        if worker is not None:
            result["first_worker_state"] = proc_state(worker) or "gone"
        lines = status.get("lines_read") if status else None
        resumed = time.monotonic()
        if kind == "memcached-frozen":
            server.resume()
        for pid in frozen:
            signal_pid(pid, signal.SIGCONT)
        result.update(_settle_counts(server, lines, resumed, cfg.settle_timeout))
        result["seconds_from_load_end_to_resume"] = round(resumed - load_end, 2)
        if cfg.visitors:
            # every page view of the run is from 127.0.0.1: a visitor is a User-Agent
            expected = sent_agents | probe.agents
            result["visitors"] = _settle_visitors(server, len(expected), len(probe.uncertain_agents),
                                                  resumed, cfg.settle_timeout)
            result["visitors"]["from_wrk"] = len(sent_agents)
            result["visitors"]["from_probe"] = len(probe.agents)
            result["visitors_exact"] = result["visitors"]["exact"]
        result["worker_status"] = _worker_status(status_dir)
        apache.stop()
        counted = _status_total(server)
        result["counted_requests"] = counted
        result["logged_lines"] = lines
        result["counts_exact"] = lines is not None and counted == lines
        result["count_difference"] = None if lines is None else counted - lines
        result.update(_error_log_summary(apache))
        return result
    finally:
        for pid in frozen:
            signal_pid(pid, signal.SIGCONT)
        if server is not None and server.running and server.paused:
            server.resume()
        try:
            apache.stop()
        finally:
            apache.cleanup()
            if server is not None:
                server.stop()
            shutil.rmtree(status_dir, ignore_errors=True)
            shutil.rmtree(script_dir, ignore_errors=True)
