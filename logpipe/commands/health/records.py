"""The typed records that the parts of ``logpipe health`` hand to each other.

find → :class:`Census` of :class:`Found` instances (processes :class:`Proc`,
status files :class:`StatusFile`); judge → :class:`Verdict`; print → dicts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional


def number(value: Any) -> float | int | None:
    """*value* when it is a number (int or float, not bool), else None.

    Status files are read from disk and may hold anything: every figure goes through this.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


@dataclasses.dataclass(frozen=True)
class Proc:
    """One process, as psutil saw it in this run's single pass over the process table.

    ``create_time`` is a Unix time (seconds); ``status`` is psutil's (``sleeping``,
    ``stopped``, ``zombie``, …); ``cmdline`` is None when it could not be read.
    """

    pid: int
    ppid: int
    name: str
    cmdline: Optional[list[str]]
    create_time: float
    status: str

    @property
    def alive(self) -> bool:
        """False for a zombie or a dead process."""
        return self.status not in ("zombie", "dead")


@dataclasses.dataclass(frozen=True)
class StatusFile:
    """One status file (``supervisor-PID.json`` or ``worker-PID.json``) that parsed as a JSON object."""

    path: str
    document: dict

    def get(self, field: str, default: Any = None) -> Any:
        """The raw value of *field*, or *default*."""
        return self.document.get(field, default)

    def number(self, field: str) -> float | int | None:
        """The value of *field* when it is a number, else None."""
        return number(self.document.get(field))


#: An empty status file: what an instance has when its process wrote none (yet).
NO_STATUS = StatusFile(path="", document={})


@dataclasses.dataclass
class Found:
    """One instance as found: a supervisor and its worker, or an orphaned worker.

    Attributes:
        pid: the supervisor's pid (the worker's own for an orphaned worker).
        proc: that process.
        cmdline: its command line (from /proc, else the ``argv`` of its status file).
        status: its status file, or :data:`NO_STATUS`.
        memcached_spec: its ``--memcached`` (status file, else command line and config),
            or None when unknown.
        orphan: True when this is a worker whose supervisor is gone.
        worker_pid: the current worker's pid (possibly a process that is gone), or None.
        worker_proc: that process, when it exists (alive or a zombie).
        worker_status: the worker's status file, or :data:`NO_STATUS`.
        extra_workers: other live logpipe children of the supervisor (normally none).
    """

    pid: int
    proc: Proc
    cmdline: list[str]
    status: StatusFile = NO_STATUS
    memcached_spec: Optional[str] = None
    orphan: bool = False
    worker_pid: Optional[int] = None
    worker_proc: Optional[Proc] = None
    worker_status: StatusFile = NO_STATUS
    extra_workers: list[int] = dataclasses.field(default_factory=list)

    @property
    def alive(self) -> bool:
        """True for a live supervisor (not a zombie, not an orphaned worker)."""
        return self.proc.alive and not self.orphan


@dataclasses.dataclass
class Census:
    """Everything one pass found on the machine.

    Attributes:
        instances: the supervisors (and orphaned workers) kept by ``--match``, by pid.
        apache: pids of the live ``apache2``/``httpd`` processes, sorted.
        status_dirs: the status directories read, in order.
        stale_status_files: paths of status files whose process is gone (or whose pid
            now belongs to a younger process), sorted.
    """

    instances: list[Found]
    apache: list[int]
    status_dirs: list[str]
    stale_status_files: list[str]
