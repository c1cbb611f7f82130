"""The man page logpipe(1), generated from the settings table, the commands' parsers and the README.

``python -m logpipe.commands.manpage [-o man/logpipe.1] [--readme README.md]``
(``make man``) writes it.  Options and environment variables come from
:data:`logpipe.config.SETTINGS`; each command's own options from its argparse
parser; the key contract and the httpd examples from the README's prose (the
"The key contract" section and the ``CustomLog``/``GlobalLog`` lines of its
``apache`` blocks), converted from Markdown to roff.  The output has no date, so
the same sources give the same file (the checked-in ``man/logpipe.1`` is
tested to be up to date).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from logpipe import __version__
from logpipe.config import GROUPS, SETTINGS, Setting

__all__ = ["render", "markdown_to_roff", "readme_section", "main"]

_README = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "README.md")


def _esc(text: str) -> str:
    """Plain text for roff: backslashes, dashes (ASCII in the output), leading dots."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.M)


def _inline(text: str) -> str:
    """Markdown inline markup (`code`, **bold**, *italic*, [text](link)) to roff fonts."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    parts = re.split(r"(`[^`]+`|\*\*[^*]+\*\*|\*[^*\s][^*]*\*)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(r"\fB" + _esc(part[1:-1]) + r"\fR")
        elif part.startswith("**") and part.endswith("**") and len(part) > 3:
            out.append(r"\fB" + _esc(part[2:-2]) + r"\fR")
        elif part.startswith("*") and part.endswith("*") and len(part) > 2:
            out.append(r"\fI" + _esc(part[1:-1]) + r"\fR")
        else:
            out.append(_esc(part))
    return "".join(out)


def markdown_to_roff(markdown: str) -> str:
    """Convert the README's Markdown subset (paragraphs, ``*`` lists, fenced code) to man(7) roff."""
    out: list[str] = []
    paragraph: list[str] = []
    in_code = False

    def flush() -> None:
        if paragraph:
            out.append(_inline(" ".join(paragraph)))
            paragraph.clear()

    for line in markdown.splitlines():
        if line.startswith("```"):
            flush()
            out += [".PP", ".RS 2", ".nf"] if not in_code else [".fi", ".RE"]
            in_code = not in_code
            continue
        if in_code:
            out.append(_esc(line) or "\\&")
        elif not line.strip():
            flush()
        elif line.startswith(("* ", "- ")):
            flush()
            out += [".IP \\(bu 2"]
            paragraph.append(line[2:].strip())
        else:
            if not paragraph and not (out and out[-1].startswith(".IP")):
                out.append(".PP")
            paragraph.append(line.strip())
    flush()
    return "\n".join(out)


def readme_section(readme: str, title: str) -> str:
    """The Markdown body of the README's ``## {title}`` section.

    Raises:
        LookupError: no such section.
    """
    match = re.search(rf"^## {re.escape(title)}\s*\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    if not match:
        raise LookupError(f"README has no '## {title}' section")
    return match.group(1).strip()


def _apache_lines(readme: str) -> list[str]:
    lines = []
    for block in re.findall(r"```apache\n(.*?)```", readme, re.S):
        lines += [line.strip() for line in block.splitlines()
                  if line.strip().startswith(("CustomLog", "GlobalLog"))]
    return list(dict.fromkeys(lines))


def _setting_item(setting: Setting) -> list[str]:
    head = f".TP\n.BR {_esc(setting.flag)}"
    if setting.type != "bool":
        head = f".TP\n\\fB{_esc(setting.flag)}\\fR \\fI{_esc(setting.metavar)}\\fR"
    where = [f"environment \\fB{_esc(setting.env)}\\fR"]
    if setting.in_file:
        where.insert(0, f"config file \\fB{_esc(setting.name)}\\fR")
    used = ", ".join("logpipe" if c == "daemon" else "\\-\\-dry\\-run" if c == "dry-run" else c
                     for c in setting.commands)
    # \: lets troff break long comma lists (the --static-ext default) instead of warning
    return [head, _esc(setting.help_text()).replace(",", ",\\:") + ".",
            f"Also: {'; '.join(where)}. Used by: {used}."]


def _synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    """``logpipe report --html FILE [OPTIONS]``: required options and positionals of *parser*."""
    words = [f"\\fBlogpipe {name}\\fR"]
    for action in parser._actions:  # argparse keeps no public list of its actions
        if action.option_strings and action.required:
            words.append(f"\\fB{_esc(action.option_strings[-1])}\\fR \\fI{_esc(action.metavar or '')}\\fR")
    words.append("[\\fIOPTIONS\\fR]")
    for action in parser._actions:
        if not action.option_strings:
            metavar = _esc(action.metavar or action.dest)
            words.append({"?": f"[\\fI{metavar}\\fR]", "*": f"[\\fI{metavar}\\fR ...]"}.get(
                action.nargs, f"\\fI{metavar}\\fR"))
    return " ".join(words)


def _command_items(name: str, module_name: str) -> list[str]:
    from logpipe.commands.main import SUMMARIES, command_parser

    parser = command_parser(name, importlib.import_module(module_name))
    out = [".TP", _synopsis(name, parser), _esc(SUMMARIES[name]) + "."]
    names = {s.flag for s in SETTINGS}
    shared = []
    actions = sorted(parser._actions, key=lambda a: bool(a.option_strings))  # positionals first
    for action in actions:
        if action.help == argparse.SUPPRESS or isinstance(action, (argparse._HelpAction,
                                                                   argparse._VersionAction)):
            continue
        flags = ", ".join(action.option_strings) or (action.metavar or action.dest)
        if action.option_strings and action.option_strings[-1] in names:
            shared.append(action.option_strings[-1])
            continue
        metavar = "" if action.nargs == 0 or not action.option_strings else f" {action.metavar or action.dest.upper()}"
        text = (action.help or "") % {"default": action.default, "prog": parser.prog}
        out += [".RS", ".TP", f"\\fB{_esc(flags)}\\fR\\fI{_esc(metavar)}\\fR", _esc(text), ".RE"]
    if shared:
        out += [".RS", ".PP", "Settings (see OPTIONS): " + ", ".join(f"\\fB{_esc(f)}\\fR" for f in shared)
                + ".", ".RE"]
    return out


def render(readme: str) -> str:
    """The whole man page (roff) from the settings table, the commands and *readme* (Markdown)."""
    from logpipe.commands.main import COMMANDS, command_parser, daemon_parser

    out = [f'.TH LOGPIPE 1 "" "logpipe {__version__}" "User Commands"',
           ".nh", ".ad l", ".\\\" Generated by python -m logpipe.commands.manpage (make man); edit the sources, not this file.",
           ".SH NAME", "logpipe \\- Apache piped logger that counts every request in memcached",
           ".SH SYNOPSIS", ".nf",
           "\\fBlogpipe\\fR [\\fIOPTIONS\\fR] < \\fIaccess.log\\fR",
           "\\fBlogpipe \\-\\-dry\\-run\\fR [\\fB\\-\\-explain\\fR] [\\fIOPTIONS\\fR] < \\fIaccess.log\\fR"]
    for name, module_name in COMMANDS.items():
        out.append(_synopsis(name, command_parser(name, importlib.import_module(module_name))))
    out += [".fi", ".SH DESCRIPTION"]
    out.append(markdown_to_roff(
        "**logpipe** is the program behind `CustomLog \"|/usr/local/bin/logpipe …\" combined` in "
        "httpd.conf. It turns every request Apache logs into real-time counters in memcached "
        "(page views per URL per day with a 24-hour TTL, referrers, search keywords, browsers, "
        "platforms, bots, status codes), keeps the raw lines in dated files when `--archive` is "
        "given, and rolls each finished day into a database (`logpipe rollup`).\n\n"
        "Under httpd logpipe is the only reader of the pipe and never makes Apache wait: lines are "
        "spooled in memory while memcached or the worker is slow (counted drops past "
        "`--spool-max`); a worker that crashes is restarted and replays what it had not "
        "confirmed; on httpd's SIGTERM it reads on until the pipe closes, flushes and exits 0. "
        "Its messages go to Apache's ErrorLog, rate-limited.\n\n"
        "Every setting can be given as an option, in a config file (`--config FILE` or "
        "`LOGPIPE_CONFIG`) or as a `LOGPIPE_*` environment variable; the command line wins, then "
        "the environment, then the file, then the default. Sizes are bytes and take K, M, G "
        "suffixes (powers of 1024); times are seconds. `logpipe --print-config` prints a config "
        "file with every setting at its default."))
    out.append(".SH COMMANDS")
    out += [".TP", "\\fBlogpipe\\fR [\\fIOPTIONS\\fR]",
            _esc("The daemon (what CustomLog runs): stdin to memcached. It accepts every setting "
                 "below; those it does not use are ignored."),
            ".TP", "\\fBlogpipe \\-\\-dry\\-run\\fR [\\fB\\-\\-explain\\fR] [\\fIOPTIONS\\fR]",
            _esc("Parse stdin and print every key that would be incremented with its count, then a "
                 "summary of what was counted and rejected; touches no server.")]
    for name, module_name in COMMANDS.items():
        out += _command_items(name, module_name)
    out.append(".SH OPTIONS")
    general = daemon_parser()
    for action in general._actions:
        if action.option_strings and action.option_strings[-1] in ("--dry-run", "--explain", "--print-config",
                                                                   "--version"):
            out += [".TP", f".B {_esc(action.option_strings[-1])}", _esc(action.help)]
    for setting in SETTINGS:
        if setting.group not in GROUPS:
            out += _setting_item(setting)
    for key, (title, description) in GROUPS.items():
        out += [f".SS {_esc(title[0].upper() + title[1:])}", _esc(description[0].upper() + description[1:]) + "."]
        for setting in SETTINGS:
            if setting.group == key:
                out += _setting_item(setting)
    out += [".SH THE KEY CONTRACT", markdown_to_roff(readme_section(readme, "The key contract"))]
    out += [".SH FILES", ".TP", ".I /etc/logpipe.conf",
            _esc("Example config file, every setting at its default (read only when named by "
                 "--config or LOGPIPE_CONFIG)."),
            ".TP", ".I /etc/apache2/conf\\-available/logpipe.conf",
            _esc("The httpd snippet (a2enconf logpipe) with the GlobalLog line."),
            ".TP", ".I /run/logpipe/", _esc("Status files (supervisor-PID.json, worker-PID.json; "
                                            "--status-dir) that logpipe health reads."),
            ".TP", ".I /var/lib/logpipe/logpipe.sqlite3", _esc("The default history database (--db)."),
            ".TP", ".I /etc/systemd/system/logpipe\\-health.timer, logpipe\\-rollup.timer",
            _esc("The health check (every minute) and the daily rollup (00:15).")]
    out += [".SH ENVIRONMENT", ".TP", ".B LOGPIPE_CONFIG", _esc("The config file, as --config.")]
    for setting in SETTINGS:
        if setting.in_file:
            out += [".TP", f".B {_esc(setting.env)}", _esc(f"As {setting.flag}.")]
    out += [".SH EXIT STATUS", markdown_to_roff(
        "The daemon exits 0 at the end of its input (httpd closed the pipe), also after "
        "SIGTERM; with a bad option under httpd (stdin a pipe) it reports once on stderr and "
        "keeps reading stdin until EOF, counting nothing, so that Apache never blocks.\n\n"
        "`logpipe --dry-run`, `hits`, `top`, `rollup` and `report`: 0 done; 1 a server or "
        "file could not be read (memcached, the database, a log file) or there was nothing to "
        "report; 2 a bad option or argument (one line on stderr).\n\n"
        "`logpipe health`: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the monitoring-plugin "
        "convention; a bad option is UNKNOWN).")]
    out += [".SH EXAMPLES", markdown_to_roff(
        "The httpd configuration (an absolute path: httpd 2.4 runs a piped logger without a "
        "shell and without a PATH search):")]
    out += [".PP", ".RS 2", ".nf"] + [_esc(line) for line in _apache_lines(readme)] + [".fi", ".RE"]
    out.append(markdown_to_roff(
        "Reading the counters:\n\n```\nlogpipe hits /blog/1/\nlogpipe top url -n 10\n"
        "logpipe top referrer_host --watch\nlogpipe top post_ip          # the current hour\n"
        "logpipe hits /blog/1/ --days 30\nlogpipe report --html report.html --days 30\n"
        "cat access.log | logpipe --dry-run --format combined --explain\n```"))
    out += [".SH SEE ALSO", "\\fBhttpd\\fR(8), \\fBmemcached\\fR(1), \\fBrotatelogs\\fR(8); "
            "the README and docs/ of the source tree."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the man page; exit 0, or 1 when the README cannot be read."""
    parser = argparse.ArgumentParser(prog="python -m logpipe.commands.manpage",
                                     description="Write the man page logpipe(1).")
    parser.add_argument("-o", "--output", default="-", help="the output file (default: - for stdout)")
    parser.add_argument("--readme", default=_README, help="the README to take prose from "
                        "(default: the source tree's README.md)")
    args = parser.parse_args(argv)
    try:
        with open(args.readme, encoding="utf-8") as handle:
            text = render(handle.read())
    except (OSError, LookupError) as exc:
        sys.stderr.write(f"manpage: {exc}\n")
        return 1
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
