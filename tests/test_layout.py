"""The tree shows the design (issue 17): folders by concern, small parts, ``python -m logpipe``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from logpipe import __version__

PACKAGE = Path(__file__).resolve().parent.parent / "logpipe"
MAX_MODULE_LINES = 700
MAX_CLASS_LINES = 400


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_over_700_lines_and_no_class_over_400():
    too_big = []
    for path in _modules():
        source = path.read_text(encoding="utf-8")
        if source.count("\n") > MAX_MODULE_LINES:
            too_big.append(f"{path.relative_to(PACKAGE)}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_big.append(f"{path.relative_to(PACKAGE)}: class {node.name}, "
                               f"{node.end_lineno - node.lineno + 1} lines")
    assert not too_big, too_big


def test_each_concern_has_its_folder():
    for folder, members in {"daemon": ("supervisor", "worker.py", "pipeline.py", "store.py", "archive.py"),
                            "counting": ("logformat.py", "parsing.py", "classify.py", "referrers.py",
                                         "useragents.py"),
                            "commands": ("main.py", "dryrun.py", "query.py", "health", "rollup.py",
                                         "report.py"),
                            "history": ("__init__.py",)}.items():
        for member in members:
            assert (PACKAGE / folder / member).exists(), f"logpipe/{folder}/{member}"


def test_public_import_paths_still_work():
    from logpipe.api import Reader  # noqa: F401
    from logpipe.history import hits  # noqa: F401
    from logpipe.keys import counter_key

    assert counter_key("2026-12-04", "url", "/a") == "logpipe:2026-12-04:url:/a"


def test_python_dash_m_logpipe_is_the_logpipe_command():
    version = subprocess.run([sys.executable, "-m", "logpipe", "--version"],
                             capture_output=True, text=True, timeout=60)
    assert (version.returncode, version.stdout.strip()) == (0, f"logpipe {__version__}")
    counted = subprocess.run(
        [sys.executable, "-m", "logpipe", "--dry-run"], capture_output=True, text=True, timeout=60,
        input='192.0.2.1 - - [04/Dec/2026:10:00:00 +0000] "GET /a/ HTTP/1.1" 200 5 "-" "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"\n')
    assert counted.returncode == 0, counted.stderr
    # the trailing slash is not kept by default (--keep-trailing-slash), as for the daemon
    assert ["1", "logpipe:2026-12-04:url:/a"] in [line.split() for line in counted.stdout.splitlines()]
