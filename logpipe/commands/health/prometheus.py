"""``logpipe health --prometheus FILE``: the report's figures for node_exporter's textfile collector.

The file is in Prometheus' text exposition format, written by
``prometheus_client.write_to_textfile`` (a temporary file beside it, then
rename(2): node_exporter reads the old file or the new one, never half of one).
Names and units follow Prometheus' conventions (base units: seconds, bytes;
``_total`` for counters, ``_ratio`` for 0-1 shares).

Labels: the per-instance figures carry ``supervisor`` (the supervisor's pid;
an orphaned worker's own pid), memcached's also ``server``, heartbeats also
``role``.  Not ``instance``: Prometheus owns that label (the scraped
node_exporter's host:port) and would rename ours to ``exported_instance``.
A figure that is unknown (null in ``--json``) is left out, not written as 0;
so is a metric with no sample at all (no instance found).

``prometheus_client`` is imported here only, and this module only when
``--prometheus`` is given.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from logpipe.commands.health.records import number

#: node_exporter's textfile collector reads only files named ``*.prom``.
SUFFIX = ".prom"

Getter = Callable[[dict], Any]


def _flag(value: Any) -> Optional[int]:
    return None if value is None else int(bool(value))


#: Run-wide figures: (name, type, help, value from the report).
RUN_METRICS: list[tuple[str, str, str, Getter]] = [
    ("logpipe_health_run_status", "gauge",
     "Exit code of the logpipe health run: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN "
     "(includes Apache running without logpipe).", lambda r: r["exit_code"]),
    ("logpipe_health_run_timestamp_seconds", "gauge",
     "Unix time of the logpipe health snapshot, seconds.", lambda r: r["time"]),
    ("logpipe_health_run_duration_seconds", "gauge",
     "Seconds the logpipe health check took.", lambda r: r["elapsed"]),
    ("logpipe_instances", "gauge",
     "logpipe supervisors (and orphaned workers) found.", lambda r: len(r["instances"])),
    ("logpipe_apache_up", "gauge",
     "1 when an apache2 or httpd process is running, else 0.", lambda r: _flag(r["apache"]["running"])),
    ("logpipe_stale_status_files", "gauge",
     "Status files whose process is gone.", lambda r: len(r["stale_status_files"])),
]

#: Per-instance figures, label ``supervisor``: (name, type, help, value from the instance).
INSTANCE_METRICS: list[tuple[str, str, str, Getter]] = [
    ("logpipe_health_status", "gauge",
     "Status of this logpipe instance: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.", lambda i: i["exit_code"]),
    ("logpipe_supervisor_up", "gauge",
     "1 when the supervisor is alive (not a zombie, not an orphaned worker), else 0.",
     lambda i: _flag(i["supervisor"]["alive"])),
    ("logpipe_worker_up", "gauge",
     "1 when the supervisor's worker is alive, else 0.",
     lambda i: _flag(i["worker"] and i["worker"]["alive"])),
    ("logpipe_lines_read_total", "counter",
     "Lines the supervisor read from Apache since it started.", lambda i: i["lines_read"]),
    ("logpipe_lines_dropped_total", "counter",
     "Lines the supervisor dropped (spool full, drain deadline) since it started.",
     lambda i: i["lines_dropped"]),
    ("logpipe_lines_lost_total", "counter",
     "Unconfirmed lines given up while stopping.", lambda i: i["lines_lost"]),
    ("logpipe_unprotected_lines_total", "counter",
     "Lines that fell out of the replay buffer before being confirmed.", lambda i: i["unprotected_lines"]),
    ("logpipe_too_long_lines_total", "counter",
     "Lines over 1 MiB, dropped.", lambda i: i["too_long_lines"]),
    ("logpipe_spool_bytes", "gauge",
     "Bytes waiting in the supervisor's spool for the worker.", lambda i: i["spool_bytes"]),
    ("logpipe_spool_limit_bytes", "gauge",
     "The spool's bound (--spool-max), bytes.", lambda i: i["spool_max"]),
    ("logpipe_worker_restarts", "gauge",
     "Worker restarts after crashes and hangs in the last hour.", lambda i: i["worker_restarts_last_hour"]),
    ("logpipe_worker_recycles_total", "counter",
     "Planned worker restarts (--max-rss) since the supervisor started.", lambda i: i["worker_recycles"]),
    ("logpipe_rejected_ratio", "gauge",
     "Share (0-1) of the current worker's lines rejected.", lambda i: i["rejected_share"]),
    ("logpipe_pending_keys", "gauge",
     "Counters waiting in the worker to be flushed to memcached.", lambda i: i["pending_keys"]),
    ("logpipe_dropped_counts_total", "counter",
     "Counts the current worker dropped past --max-pending-keys.", lambda i: i["dropped_counts"]),
    ("logpipe_dropped_visitors_total", "counter",
     "New unique visitors the current worker dropped past --max-pending-visitors.",
     lambda i: i["dropped_visitors"]),
    ("logpipe_last_flush_age_seconds", "gauge",
     "Seconds since the worker's last successful flush to memcached.", lambda i: i["last_flush_age"]),
    ("logpipe_flush_failing", "gauge",
     "1 while the worker's flushes to memcached fail, else 0.",
     lambda i: int(bool(i["last_flush_error"])) if i["worker"] and i["worker"]["status_file"] else None),
]

#: Per-instance figures with one sample per label value: (name, help, extra label, samples).
HEARTBEAT = ("logpipe_heartbeat_age_seconds",
             "Age of the last sign of life (status file, message), seconds.", "role")
#: Per memcached server of an instance, label ``server``: (name, help, value from the entry).
SERVER_METRICS: list[tuple[str, str, str, Getter]] = [
    ("logpipe_memcached_up", "gauge",
     "1 when the memcached server answered logpipe health, else 0.", lambda s: _flag(s["ok"])),
    ("logpipe_memcached_rtt_seconds", "gauge",
     "Round-trip time of a memcached no-op, seconds.", lambda s: s["rtt"]),
    ("logpipe_memcached_evictions_total", "counter",
     "Items memcached evicted since it started (its stats).", lambda s: s["evictions"]),
]

#: Every metric name written, for the docs' test.
METRIC_NAMES = [m[0] for m in RUN_METRICS + INSTANCE_METRICS + SERVER_METRICS] + [HEARTBEAT[0]]


def families(report: dict) -> list:
    """The metric families of *report* (the ``--json`` document), as prometheus_client objects."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def family(name: str, kind: str, text: str, labels: list[str]):
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        return cls(name, text, labels=labels)

    result = []
    for name, kind, text, get in RUN_METRICS:
        value = number(get(report))
        if value is not None:
            metric = family(name, kind, text, [])
            metric.add_metric([], value)
            result.append(metric)
    instances = report["instances"]
    for name, kind, text, get in INSTANCE_METRICS:
        metric = family(name, kind, text, ["supervisor"])
        for inst in instances:
            value = number(get(inst))
            if value is not None:
                metric.add_metric([str(inst["supervisor"]["pid"])], value)
        result.append(metric)
    name, text, label = HEARTBEAT
    metric = family(name, "gauge", text, ["supervisor", label])
    for inst in instances:
        for role in ("supervisor", "worker"):
            value = number((inst[role] or {}).get("heartbeat_age"))
            if value is not None:
                metric.add_metric([str(inst["supervisor"]["pid"]), role], value)
    result.append(metric)
    for name, kind, text, get in SERVER_METRICS:
        metric = family(name, kind, text, ["supervisor", "server"])
        for inst in instances:
            seen = set()  # a server named twice in --memcached is one series
            for server in inst["memcached"]:
                value = number(get(server))
                if value is not None and server["server"] not in seen:
                    seen.add(server["server"])
                    metric.add_metric([str(inst["supervisor"]["pid"]), server["server"]], value)
        result.append(metric)
    return [m for m in result if m.samples]  # a family with no sample says nothing


class _Report:
    """A prometheus_client collector of one report (the registry calls ``collect``)."""

    def __init__(self, report: dict) -> None:
        self.report = report

    def collect(self):
        return families(self.report)


def write(report: dict, path: str) -> None:
    """Write *report*'s figures to *path*, replacing the file atomically.

    Args:
        report: the ``--json`` document of one run.
        path: the ``.prom`` file, in node_exporter's ``--collector.textfile.directory``.

    Raises:
        OSError: the file could not be written (the temporary file is removed).
    """
    from prometheus_client import CollectorRegistry, write_to_textfile

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Report(report))
    write_to_textfile(path, registry)
