"""logpipe.errors: one LogpipeError base, siblings per concern, old import paths, no private imports."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from logpipe import errors

PACKAGE = Path(__file__).resolve().parent.parent / "logpipe"
SIBLINGS = [errors.ConfigError, errors.StoreError, errors.HistoryError, errors.RollupError,
            errors.ArchiveError, errors.UnsupportedFormat]


def test_one_base_and_siblings():
    for cls in SIBLINGS:
        assert issubclass(cls, errors.LogpipeError)
    for a, b in itertools.permutations(SIBLINGS, 2):
        assert not issubclass(a, b), f"{a.__name__} must not be a {b.__name__}"


def test_old_import_paths_are_the_same_classes():
    from logpipe.api import StoreError as api_store
    from logpipe.commands.rollup import EmptyFile, RollupError
    from logpipe.config import ConfigError
    from logpipe.counting.logformat import UnsupportedFormat
    from logpipe.daemon.archive import ArchiveError
    from logpipe.daemon.store import StoreError
    from logpipe.history import HistoryError

    assert (ConfigError, StoreError, api_store, HistoryError, RollupError, ArchiveError, UnsupportedFormat) == (
        errors.ConfigError, errors.StoreError, errors.StoreError, errors.HistoryError, errors.RollupError,
        errors.ArchiveError, errors.UnsupportedFormat)
    assert issubclass(EmptyFile, errors.RollupError)


def test_callers_of_the_builtin_bases_still_catch_them():
    # ConfigError and UnsupportedFormat were ValueErrors, ArchiveError an OSError
    with pytest.raises(ValueError):
        raise errors.ConfigError("--ttl must be 1 to 2592000")
    with pytest.raises(ValueError):
        raise errors.UnsupportedFormat("%{%Y}t")
    exc = errors.ArchiveError(28, "No space left on device")
    assert isinstance(exc, OSError) and exc.errno == 28


def test_a_bad_format_raises_the_hierarchy_s_class():
    from logpipe.counting.parsing import check_format

    with pytest.raises(errors.LogpipeError):
        check_format("%{%Y-%m-%d}t %r")


def test_short_error_keeps_the_driver_s_first_line():
    class Wrapped(Exception):
        orig = RuntimeError("connection refused\n(Background on this error at: https://sqlalche.me/e/x)")

    assert errors.short_error(Wrapped("outer")) == "connection refused"
    assert errors.short_error(ValueError("")) == "ValueError"


def test_no_module_imports_another_module_s_private_names():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("logpipe"):
                offenders += [f"{path.relative_to(PACKAGE)}: {node.module}.{alias.name}"
                              for alias in node.names if alias.name.startswith("_") and alias.name != "__version__"]
    assert not offenders, offenders
