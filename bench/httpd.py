"""Benchmark 5: a real Apache httpd under load, its CustomLog piped to different loggers.

One run per logger, each on a fresh private httpd (``tests/servers.py``'s
:class:`Apache`: event MPM, keep-alive) and a fresh memcached:

* ``cat``              ``CustomLog "|$exec /bin/cat > /dev/null"`` — the baseline;
* ``logpipe``          ``CustomLog "|<venv>/bin/logpipe --memcached … --status-dir …"``;
* ``memcached-frozen`` the same, memcached stopped by SIGSTOP before the load
  and resumed after it;
* ``worker-frozen``    the same, logpipe's worker stopped by SIGSTOP before the
  load (the supervisor is expected to spool, then replace the silent worker).

Load: ``wrk`` with keep-alive connections on a small static page
(``/index.html``, 70 bytes) with a browser User-Agent and a search Referer, after a short
warm-up.  Meanwhile a probe thread requests unique URLs
(``/probe/<run>/<n>``) at a steady rate in every run (the same extra load
everywhere); in the ``logpipe`` run a poller reads each probe's counter key
(:func:`logpipe.keys.counter_key` + :func:`~logpipe.keys.normalize_path`)
from memcached to measure the request-to-count delay.

After the load the supervisor's status file gives ``lines_read`` (every line
httpd wrote into the pipe); the sum of all ``status`` counters in memcached
must equal it once logpipe has flushed (for ``memcached-frozen``: once
memcached is resumed; the time that takes is reported).
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


def wrk(url: str, duration: float, connections: int, threads: int) -> dict:
    """Run ``wrk`` (keep-alive) and parse its summary.

    Returns:
        ``requests``, ``seconds``, ``requests_per_s``, ``socket_errors``
        (connect/read/write/timeout), ``non_2xx_3xx``, ``failed`` (their sum)
        and ``latency_p50_ms``/``latency_p99_ms``.
    """
    cmd = ["wrk", f"-t{threads}", f"-c{max(connections, threads)}", f"-d{max(1, round(duration))}s",
           "--latency", "-H", f"User-Agent: {BROWSER_UA}", "-H", f"Referer: {REFERER}", url]
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

    return {
        "requests": requests,
        "seconds": seconds,
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "socket_errors": errors,
        "non_2xx_3xx": non2xx,
        "failed": non2xx + sum(errors.values()),
        "latency_p50_ms": percentile("50"),
        "latency_p99_ms": percentile("99"),
    }


class Probe:
    """Requests unique URLs at a steady rate; optionally polls memcached for their counters.

    Args:
        port: httpd's port.
        run_id: part of the probe paths (``/probe/<run_id>/<n>``).
        rate: requests per second.
        memcached: when given, a poller thread reads each probe's counter
            every *poll_interval* seconds and records when it appears.
    """

    def __init__(self, port: int, run_id: str, rate: float, memcached: Memcached | None = None,
                 poll_interval: float = 0.025):
        from logpipe.keys import counter_key, normalize_path

        self.port = port
        self.run_id = run_id
        self.rate = rate
        self.memcached = memcached
        self.poll_interval = poll_interval
        self._key = lambda path: counter_key(dt.date.today().isoformat(), "url", normalize_path(path))
        self.sent: dict[str, float] = {}  # key -> send time
        self.seen: dict[str, float] = {}  # key -> first time readable
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
                    if len(self.seen) >= len(self.sent):
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
            n += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                sent = time.monotonic()
                conn.request("GET", path, headers={"User-Agent": BROWSER_UA})
                response = conn.getresponse()
                response.read()
                if response.status >= 400:
                    self.failed += 1
                    self.errors.append(f"HTTP {response.status}")
                else:
                    with self._lock:
                        self.sent[self._key(path)] = sent
            except (OSError, http.client.HTTPException) as exc:
                self.failed += 1
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
                waiting = [k for k in self.sent if k not in self.seen]
            if waiting:
                try:
                    found = get_values(client, waiting)
                except Exception:  # noqa: BLE001 - memcached may be paused; try again
                    found = {}
                    client.close()
                now = time.monotonic()
                with self._lock:
                    for key in found:
                        self.seen.setdefault(key, now)
            time.sleep(self.poll_interval)
        client.close()

    def delays(self) -> list[float]:
        """Seconds from sending each seen probe to its counter being readable, sorted."""
        return sorted(self.seen[k] - self.sent[k] for k in self.seen if k in self.sent)

    def summary(self) -> dict:
        """Probe statistics for the results."""
        delays = self.delays()

        def pct(p: float) -> float | None:
            if not delays:
                return None
            return delays[min(len(delays) - 1, int(round(p / 100 * len(delays) + 0.5)) - 1)]

        out = {"sent": len(self.sent), "failed": self.failed, "errors": self.errors[:5]}
        if self.memcached is not None:
            out.update({
                "seen": len(delays),
                "missing": len(self.sent) - len(delays),
                "delay_p50_s": pct(50),
                "delay_p99_s": pct(99),
                "delay_max_s": delays[-1] if delays else None,
            })
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
    result: dict = {"kind": kind, "logger": custom_log}
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
        if cfg.warmup > 0:
            wrk(url, cfg.warmup, cfg.connections, cfg.threads)
        probe = Probe(apache.port, run_id, cfg.probe_rate, server if kind == "logpipe" else None)
        cpu_pids = [p for p in (supervisor, worker) if p]
        cpu_before = sum(proc_cpu_seconds(p) or 0.0 for p in cpu_pids)
        probe.start()
        load = wrk(url, cfg.duration, cfg.connections, cfg.threads)
        load_end = time.monotonic()
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
