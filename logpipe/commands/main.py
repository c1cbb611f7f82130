"""The ``logpipe`` command: the daemon (what CustomLog runs), ``--dry-run``, and subcommands.

``logpipe [OPTIONS]`` is the piped logger.  ``logpipe --dry-run`` counts stdin
without any server.  ``logpipe COMMAND …`` runs a subcommand from
:data:`COMMANDS`; each lives in its own module with ``add_arguments(parser)``
and ``run(args) -> int``, imported only when named, so the daemon's supervisor
never imports the heavy libraries the commands use.

A bad option prints one line on stderr and exits 2 — except for the daemon run
by httpd (stdin is not a terminal): exiting would make httpd respawn it every
second while its pipe fills, so it reports once and keeps draining stdin.
"""

from __future__ import annotations

import signal as _signal
import sys as _sys

if (_sys.argv[0].rsplit("/", 1)[-1] == "logpipe" and "--dry-run" not in _sys.argv
        and (len(_sys.argv) < 2 or _sys.argv[1].startswith("-"))):
    # The daemon started by httpd: a graceful restart SIGTERMs it and expects it to read on
    # until EOF.  Ignore SIGTERM before the imports below (tens of ms, more under load): a
    # SIGTERM in that window would kill it with Apache's lines still in the pipe (lost).
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)

import argparse
import dataclasses
import importlib
import os
import sys

from logpipe import __version__
from logpipe.config import ConfigError, Settings, add_options, build_settings, warn

__all__ = ["main", "COMMANDS"]

#: subcommand → module implementing it.
COMMANDS = {
    "hits": "logpipe.commands.query",
    "top": "logpipe.commands.query",
    "health": "logpipe.commands.health",
    "rollup": "logpipe.commands.rollup",
    "report": "logpipe.commands.report",
}

_ALL_SETTINGS = [f.name for f in dataclasses.fields(Settings)]
COMMON_SETTINGS = ["memcached", "prefix", "timeout", "connect_timeout", "status_dir", "db"]


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message):
        raise _ArgumentError(message)


def _daemon_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="logpipe",
        description="Apache piped logger: counts every request in memcached. "
        "Subcommands: " + ", ".join(COMMANDS) + " (logpipe COMMAND --help).",
    )
    parser.add_argument("--version", action="version", version=f"logpipe {__version__}")
    parser.add_argument("--config", metavar="FILE", help="read settings from FILE (key = value lines)")
    parser.add_argument("--dry-run", action="store_true", help="count stdin and print the keys; touch no server")
    parser.add_argument("--explain", action="store_true", help="with --dry-run: say per line what was counted and why")
    add_options(parser, _ALL_SETTINGS)
    return parser


def command_parser(name: str, module) -> argparse.ArgumentParser:
    """The parser of subcommand *name*, with the common settings options."""
    parser = _Parser(prog=f"logpipe {name}")
    parser.add_argument("--config", metavar="FILE")
    add_options(parser, COMMON_SETTINGS)
    module.add_arguments(parser, name)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Build :class:`Settings` from parsed arguments (plus file and environment)."""
    return build_settings(vars(args))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``logpipe`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]])
        try:
            args = command_parser(argv[0], module).parse_args(argv[1:])
            args.command = argv[0]
            return module.run(args)
        except (_ArgumentError, ConfigError) as exc:
            sys.stderr.write(f"logpipe {argv[0]}: {exc}\n")
            return 2
    parser = _daemon_parser()
    try:
        args = parser.parse_args(argv)
        settings = settings_from(args)
    except (_ArgumentError, ConfigError) as exc:
        if "--dry-run" in argv or sys.stdin is None or sys.stdin.isatty():
            sys.stderr.write(f"logpipe: {exc} (logpipe --help lists the options)\n")
            return 2
        return _drain_after_bad_option(str(exc))
    if args.dry_run:
        from logpipe.commands.dryrun import run_dry_run

        return run_dry_run(settings, explain=args.explain)
    return run_daemon(settings)


def run_daemon(settings: Settings) -> int:
    """Run the supervisor with the worker (and the raw archive when configured)."""
    from logpipe.daemon import supervisor
    from logpipe.daemon import worker
    from logpipe.log import setup

    setup(settings.log_level).info(
        f"logpipe {__version__} started: --format {settings.format!r}, "
        f"--memcached {settings.memcached}, --log-level {settings.log_level}")

    sink = None
    if settings.archive:
        try:
            from logpipe.daemon.archive import Archive

            sink = Archive(settings.archive, symlink=settings.symlink, tz=settings.archive_tz)
        except Exception as exc:  # the stream must go on without the archive
            warn(f"raw archive disabled: {exc}")
    return supervisor.run(settings, worker.run, sink)


def _drain_after_bad_option(message: str) -> int:
    """Report once, then read stdin to EOF so httpd never blocks (lines are not counted)."""
    warn(f"{message}; counting nothing until the configuration is fixed, "
         "but reading the log so Apache does not block")
    import signal

    # httpd sends one SIGTERM at a graceful restart and EOF follows: read to it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lines = 0
    fd = 0
    try:
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            lines += data.count(b"\n")
    except (OSError, KeyboardInterrupt):
        pass
    warn(f"{lines} lines read and not counted because of the bad option")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
