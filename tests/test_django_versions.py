"""Issue 15: the Django app's tests (tests/django_site) under Django 4.2 LTS too.

This environment has the current Django (the ``test`` extra); Django 4.2 is installed
beside it, into ``<venv>/django42`` (``make test`` does it, else this test does: one wheel,
``pip install --target --no-deps``; Django 4.2 uses the same asgiref and sqlparse), and put
first on ``PYTHONPATH`` of a pytest run of tests/django_site.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DJANGO42 = Path(sys.prefix) / "django42"
SPEC = "Django>=4.2,<4.3"


def django42() -> Path:
    """The directory holding Django 4.2 (installed on first use)."""
    if not (DJANGO42 / "django").is_dir():
        run = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                              str(DJANGO42), SPEC], capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            pytest.fail(f"cannot install {SPEC} into {DJANGO42}: {run.stderr[-2000:]}")
    return DJANGO42


@pytest.mark.slow
def test_the_django_app_under_django_4_2():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(django42()), os.environ.get("PYTHONPATH", "")]),
               LOGPIPE_EXPECT_DJANGO="4.2")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                          str(TESTS / "django_site")], capture_output=True, text=True, timeout=600,
                         cwd=TESTS.parent, env=env)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 7 and "skipped" not in summary, summary
