"""The reliability figures of the fault-injection scenarios (``make test-faults``).

Each scenario in ``tests/test_faults.py`` and ``tests/test_hostile_input.py`` calls
:func:`record` once with what it measured; every call rewrites
``bench/out/reliability.json`` and ``bench/out/reliability.md`` with the rows recorded so far
by this pytest process (a run that selects fewer tests writes fewer rows).
``python tests/faults_report.py`` prints the markdown table; ``make test-faults`` does that
after pytest.

Columns (counts are lines, i.e. requests):

sent
    requests the test client sent to httpd.
failed
    of those, requests that got no 2xx/3xx answer (connection reset, 5xx): httpd's side.
logged
    lines httpd wrote to a plain-file ``CustomLog`` beside the pipe: the ground truth of
    "what Apache wrote".
counted
    the sum of the counters in memcached for the logged requests.
lost
    counts missing, summed per key: ``max(0, logged - counted)``.
double
    counts in excess, summed per key: ``max(0, counted - logged)`` (a worker killed in the
    middle of a flush may count that batch twice).
reported
    lines or counts that logpipe itself reported as dropped (status files, ErrorLog):
    a loss it could not avoid is bounded, counted and reported, so ``lost`` should equal it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

__all__ = ["record", "rows", "markdown", "OUT_DIR"]

OUT_DIR = Path(__file__).resolve().parent.parent / "bench" / "out"
JSON_PATH = OUT_DIR / "reliability.json"
MD_PATH = OUT_DIR / "reliability.md"
COLUMNS = ("scenario", "sent", "failed", "logged", "counted", "lost", "double", "reported",
           "notes")

_ROWS: list[dict] = []


def record(scenario: str, *, sent: int, failed: int, logged: int, counted: int, lost: int,
           double: int = 0, reported: int = 0, notes: str = "", seconds: float | None = None
           ) -> dict:
    """Add one scenario's figures and rewrite the JSON and markdown files; return the row."""
    row = {"scenario": scenario, "sent": sent, "failed": failed, "logged": logged,
           "counted": counted, "lost": lost, "double": double, "reported": reported,
           "notes": notes, "seconds": None if seconds is None else round(seconds, 1)}
    _ROWS[:] = [r for r in _ROWS if r["scenario"] != scenario] + [row]
    _write()
    return row


def rows() -> list[dict]:
    """The rows recorded by this process, in order."""
    return list(_ROWS)


def markdown(table_rows: list[dict]) -> str:
    """The rows as a GitHub markdown table."""
    head = ["scenario", "requests sent", "failed Apache requests", "lines Apache logged",
            "counted", "lost", "double-counted", "reported dropped", "notes"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table_rows:
        cells = [r["scenario"], r["sent"], r["failed"], r["logged"], r["counted"], r["lost"],
                 r["double"], r["reported"], r["notes"]]
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"


def _write() -> None:
    try:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        document = {"generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "columns": COLUMNS,
                    "rows": _ROWS}
        tmp = JSON_PATH.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(document, indent=1) + "\n")
        os.replace(tmp, JSON_PATH)
        tmp = MD_PATH.with_suffix(".md.tmp")
        tmp.write_text(markdown(_ROWS))
        os.replace(tmp, MD_PATH)
    except OSError as exc:  # a read-only checkout must not fail the tests
        sys.stderr.write(f"faults_report: cannot write {OUT_DIR}: {exc}\n")


def main() -> int:
    """Print the table of the last run (``make test-faults``)."""
    try:
        document = json.loads(JSON_PATH.read_text())
    except (OSError, ValueError):
        print(f"no reliability figures: {JSON_PATH} is missing (run make test-faults)")
        return 1
    print(f"Reliability ({JSON_PATH}, {document.get('generated')}):\n")
    print(markdown(document["rows"]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
