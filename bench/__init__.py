"""logpipe's demo and benchmarks (``make demo``, ``make bench``).

Run from the repository root:

* ``python -m bench.demo``  — a private memcached and Apache httpd, a few
  thousand real-looking requests, ``logpipe top``, and a count check.
* ``python -m bench.run``   — issue 3's benchmarks in one run: a table on
  stdout and JSON in ``bench/out/results.json`` (``--quick`` for a 1–2 minute
  development run, ``--only`` to pick parts, ``--duration`` for the httpd
  load runs).

Input comes from the real logs in ``<repo>/../shared/data/real`` (the three
plain ``combined`` files); when that directory is absent a log is generated
(:mod:`bench.data`).  Servers come from ``tests/servers.py`` (real Debian
binaries on loopback, private temporary directories, always stopped).
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["REPO", "REAL_DIR", "OUT_DIR", "COMBINED_FILES", "logpipe_bin", "python_bin"]

#: The repository root (the directory holding ``bench/`` and ``logpipe/``).
REPO = Path(__file__).resolve().parent.parent
#: Real access logs shared beside the repository (may be absent).
REAL_DIR = REPO.parent / "shared" / "data" / "real"
#: Where results and generated inputs go (git-ignored).
OUT_DIR = REPO / "bench" / "out"
#: The real logs in plain Apache ``combined`` format (SOURCES.md there): the
#: vhost_combined and nginx files are left out of combined-format runs.
COMBINED_FILES = (
    "elastic-examples-apache_logs.log",
    "nielsbasjes-logparser-hackers-access.log",
    "1geek0-weblog-access.log",
)


def python_bin() -> str:
    """The running interpreter, as an absolute path (the venv's python under ``make``)."""
    return str(Path(sys.executable).absolute())


def logpipe_bin() -> str:
    """Absolute path of the ``logpipe`` console script next to the running interpreter.

    httpd 2.4 runs ``CustomLog "|prog"`` without a shell or PATH search, so
    the path must be absolute.

    Raises:
        FileNotFoundError: logpipe is not installed in this environment.
    """
    path = Path(sys.executable).absolute().parent / "logpipe"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: install logpipe in this environment (make venv)")
    return str(path)
