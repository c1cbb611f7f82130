"""The ``logpipe`` command: the daemon (what CustomLog runs), ``--dry-run``, and subcommands.

``logpipe [OPTIONS]`` is the piped logger.  ``logpipe --dry-run`` counts stdin
without any server.  ``logpipe COMMAND …`` runs a subcommand from
:data:`COMMANDS`; each lives in its own module with ``add_arguments(parser)``
and ``run(args) -> int``, imported only when named, so the daemon's supervisor
never imports the heavy libraries the commands use.

A bad option prints one line on stderr and exits 2 — except for the daemon run
by httpd (stdin a pipe, see :func:`under_httpd`): exiting would make httpd
respawn it every second while its pipe fills, so it reports once and keeps
draining stdin.
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
import importlib
import os
import stat
import sys

from logpipe import __version__
from logpipe.config import SETTINGS, ConfigError, Settings, add_groups, build_settings, settings_for, warn

__all__ = ["main", "COMMANDS", "SUMMARIES", "command_parser", "daemon_parser", "settings_from",
           "under_httpd"]

#: subcommand → module implementing it.
COMMANDS = {
    "hits": "logpipe.commands.query",
    "top": "logpipe.commands.query",
    "health": "logpipe.commands.health",
    "rollup": "logpipe.commands.rollup",
    "report": "logpipe.commands.report",
}

#: subcommand → its one-line summary (``logpipe --help``, the man page).
SUMMARIES = {
    "hits": "one URL's page views: today from memcached, earlier days (--days) from the history database",
    "top": "a dimension's most counted values for a day (post_ip: for an hour)",
    "health": "check every running logpipe: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (systemd timer)",
    "rollup": "count a finished day's raw log into the history database (re-running replaces its rows)",
    "report": "write one self-contained HTML report (charts and tables) from the history database",
}

#: Settings every subcommand accepted before each named its own: still accepted, not shown.
COMMON_SETTINGS = ["memcached", "prefix", "timeout", "connect_timeout", "status_dir", "db"]


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message):
        raise _ArgumentError(message)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34)


class _PrintConfig(argparse.Action):
    """``--print-config``: print the commented example config file and exit 0."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from logpipe.config import example_config

        sys.stdout.write(example_config())
        parser.exit(0)


def _fill(text: str) -> str:
    import textwrap

    return textwrap.fill(text, 79)


def _commands_text() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {SUMMARIES.get(name, '(logpipe ' + name + ' --help)')}"
             for name in COMMANDS]
    return "commands (logpipe COMMAND --help for each):\n" + "\n".join(lines)


def daemon_parser() -> argparse.ArgumentParser:
    """The parser of ``logpipe [OPTIONS]`` (the daemon) and ``logpipe --dry-run``.

    It takes every setting (those the daemon does not use are accepted and
    ignored, so one option line or file fits every command).
    """
    parser = _Parser(
        prog="logpipe", formatter_class=_formatter,
        usage="logpipe [OPTIONS] < access.log   (the piped logger: CustomLog \"|/usr/local/bin/logpipe …\")\n"
              "       logpipe --dry-run [OPTIONS] < access.log\n"
              "       logpipe COMMAND [OPTIONS]",
        description=_fill(
            "Apache piped logger: counts every request Apache logs into memcached counters "
            "(page views and unique visitors per URL per day, referrers, keywords, browsers, platforms, "
            "bots and their kinds, status codes), keeps the raw lines in a dated archive and rolls finished days "
            "into a database.") + "\n\n" + _commands_text(),
        epilog=_fill(
            "Every option is also a config-file key (flush_interval = 2 for --flush-interval 2) "
            "and an environment variable (LOGPIPE_FLUSH_INTERVAL=2); the command line wins, then "
            "the environment, then the file. Sizes take K, M, G suffixes (powers of 1024). "
            "Manual: man logpipe."),
    )
    parser.add_argument("--version", action="version", version=f"logpipe {__version__}",
                        help="print the version and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="count stdin without any server: print every key that would be "
                             "incremented with its count, then a summary (default: off)")
    parser.add_argument("--explain", action="store_true",
                        help="with --dry-run: print each line with what it counted or why it was "
                             "not a page view (default: off)")
    parser.add_argument("--print-config", action=_PrintConfig,
                        help="print a commented config file with every setting at its default, and exit")
    add_groups(parser, [s.name for s in SETTINGS])
    return parser


def command_parser(name: str, module) -> argparse.ArgumentParser:
    """The parser of subcommand *name*: its own options (*module*.add_arguments) and its settings."""
    parser = _Parser(prog=f"logpipe {name}", description=SUMMARIES.get(name),
                     formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=34))
    parser.add_argument("--version", action="version", version=f"logpipe {__version__}",
                        help="print the version and exit")
    module.add_arguments(parser, name)
    add_groups(parser, settings_for(name), hidden=COMMON_SETTINGS)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Build :class:`Settings` from parsed arguments (plus file and environment)."""
    return build_settings(vars(args))


def under_httpd(argv: list[str], fd: int = 0) -> bool:
    """Whether a bad option should be reported and stdin drained instead of exiting 2.

    Only a daemon fed by a pipe: stdin (*fd*) is a FIFO — httpd's piped log — and
    either the parent is httpd or the arguments are a daemon's option line (no
    command word, no ``--dry-run``).  A terminal, ``/dev/null``, a file, or a mistyped
    command (``logpipe tpo url``) from a script's pipe are strict: one line, exit 2.
    """
    if "--dry-run" in argv:
        return False
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
    except OSError:  # stdin closed
        return False
    if _parent_is_httpd():
        return True
    return not argv or argv[0].startswith("-")


def _parent_is_httpd() -> bool:
    try:
        with open(f"/proc/{os.getppid()}/comm", encoding="utf-8", errors="replace") as handle:
            name = handle.read().strip()
    except OSError:
        return False
    return name.startswith(("httpd", "apache"))


def _unknown_command(word: str) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(COMMANDS), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown command {word!r} (commands: {', '.join(COMMANDS)}){hint}"


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
    parser = daemon_parser()
    try:
        if argv and not argv[0].startswith("-"):
            raise _ArgumentError(_unknown_command(argv[0]))
        args = parser.parse_args(argv)
        settings = settings_from(args)
    except (_ArgumentError, ConfigError) as exc:
        if not under_httpd(argv):
            sys.stderr.write(f"logpipe: {exc} (logpipe --help lists the options)\n")
            return 2
        return _drain_after_bad_option(str(exc))
    if args.dry_run:
        from logpipe.commands.dryrun import run_dry_run

        try:
            return run_dry_run(settings, explain=args.explain)
        except BrokenPipeError:
            # The reader (head, less) closed the pipe: stop quietly, as cat does. stdout is
            # pointed at /dev/null so the interpreter's final flush raises nothing more.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
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
