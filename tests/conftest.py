"""Fixtures shared by every logpipe test: real servers (tests/servers.py), data and binaries.

Fixtures
--------
memcached                 function  a fresh :class:`Memcached`, stopped at teardown
memcached_factory         function  ``make(**kwargs) -> Memcached``; all stopped at teardown
apache_factory            function  ``make(custom_logs, extra_conf="", **kwargs) -> Apache``
                                    (started); all stopped and removed at teardown
postgres                  session   one :class:`Postgres` for the whole run
postgres_db               function  SQLAlchemy URL of a fresh database on it, dropped afterwards
real_logs_dir             session   Path of ``<repo>/../shared/data/real`` (skips if absent)
logpipe_bin               session   absolute path of the ``logpipe`` console script (skips if absent)
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest

try:  # tests/ is not a package: pytest puts it on sys.path
    from servers import (APACHE_BIN, MEMCACHED_BIN, Apache, Memcached, Postgres, postgres_bindir,
                         reap_orphans)
except ImportError:  # pragma: no cover - if tests/ becomes a package
    from tests.servers import (APACHE_BIN, MEMCACHED_BIN, Apache, Memcached, Postgres,
                               postgres_bindir, reap_orphans)

REPO = Path(__file__).resolve().parent.parent
REAL_LOGS_DIR = REPO.parent / "shared" / "data" / "real"


def pytest_sessionstart(session: pytest.Session) -> None:
    # servers left behind by a test run that was killed (only runs that no longer exist)
    reap_orphans()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    # keep each phase's report on the item, so fixtures can tell whether the test failed
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def _failed(request: pytest.FixtureRequest) -> bool:
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


def _require(path: str, package: str) -> None:
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not found: install the Debian package {package} (make deps)")


@pytest.fixture
def memcached() -> Iterator[Memcached]:
    """A fresh, empty memcached on a free 127.0.0.1 port; stopped at teardown."""
    _require(MEMCACHED_BIN, "memcached")
    server = Memcached()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def memcached_factory() -> Iterator[Callable[..., Memcached]]:
    """``make(**kwargs) -> Memcached``: start another memcached (kwargs go to Memcached).

    Every server made is stopped at teardown.
    """
    _require(MEMCACHED_BIN, "memcached")
    made: list[Memcached] = []

    def make(**kwargs: Any) -> Memcached:
        server = Memcached(**kwargs)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.stop()


@pytest.fixture
def apache_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Apache]]:
    """``make(custom_logs, extra_conf="", **kwargs) -> Apache``, already started.

    ``custom_logs`` is a list of CustomLog directive strings (or one string); kwargs go to
    :class:`Apache` (port, mpm, log_level, server_name, env, files). At teardown every httpd is
    stopped (its piped loggers get ``logger_grace`` seconds to exit, then SIGKILL) and its temp
    dir removed; when the test failed, each ErrorLog is printed first.
    """
    _require(APACHE_BIN, "apache2")
    made: list[Apache] = []

    def make(custom_logs: Sequence[str] | str, extra_conf: str = "", **kwargs: Any) -> Apache:
        server = Apache(custom_logs, extra_conf, **kwargs)
        made.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        failed = _failed(request)
        for server in reversed(made):
            try:
                server.stop()
            finally:
                if failed:
                    print(f"--- {server!r} error log ---\n{server.error_log_text()}")
                server.cleanup()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server for the whole run; ``.url`` is a SQLAlchemy psycopg-3 URL."""
    if postgres_bindir() is None:
        pytest.skip("PostgreSQL not found under /usr/lib/postgresql/*/bin: install the Debian "
                    "package postgresql (make deps)")
    server = Postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_db(postgres: Postgres) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database on the session server; dropped at teardown."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = postgres.create_database(name)
    try:
        yield url
    finally:
        postgres.drop_database(name)


@pytest.fixture(scope="session")
def real_logs_dir() -> Path:
    """``<repo>/../shared/data/real``: real-world access logs (CI clones shared/ beside the repo)."""
    if not REAL_LOGS_DIR.is_dir():
        pytest.skip(f"real logs not available: {REAL_LOGS_DIR} is absent (CI clones the shared/ "
                    "directory beside the repository)")
    return REAL_LOGS_DIR


@pytest.fixture(scope="session")
def logpipe_bin() -> str:
    """Absolute path of the ``logpipe`` console script in the running virtualenv
    (next to ``sys.executable``), as an httpd ``CustomLog "|..."`` line needs it."""
    path = Path(sys.executable).absolute().parent / "logpipe"
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not found: install logpipe into this environment (pip install -e .)")
    return str(path)
