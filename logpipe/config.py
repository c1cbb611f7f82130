"""Settings, declared once: the table :data:`SETTINGS` drives every way to give them.

Each :class:`Setting` carries its name, type, default, unit, help text,
argparse group, the commands that use it and its validation (the way
gunicorn's ``config.py`` settings carry their own).  From the table come:

* the long options (``--flush-interval SECONDS``) with their help, in argparse
  groups (:func:`add_options`, :func:`add_groups`);
* the config file (``--config FILE`` or ``LOGPIPE_CONFIG``): ``key = value``
  lines, ``#`` comments, keys spelled like the options without dashes
  (``flush_interval = 2``; :func:`load_config_file`, :func:`example_config`);
* the environment: ``LOGPIPE_FLUSH_INTERVAL=2``;
* the docs: ``--help``, the man page (``logpipe.commands.manpage``) and
  ``logpipe --print-config``.

Precedence, highest first: the command line, the environment, the config file,
the defaults.  :func:`build_settings` merges them into a :class:`Settings`
object (a dataclass generated from the table: ``settings.flush_interval``…).

This module imports only the standard library: the supervisor uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import os
from dataclasses import dataclass
from typing import Callable

from logpipe.errors import ConfigError  # re-exported: defined in logpipe.errors
from logpipe.log import level_number, logger as _logger

__all__ = ["Settings", "Setting", "SETTINGS", "GROUPS", "COMMANDS", "ConfigError", "parse_size",
           "format_size", "parse_servers", "load_config_file", "build_settings", "add_options",
           "add_groups", "example_config", "settings_for", "warn"]


def parse_size(text: str) -> int:
    """Parse a byte count such as ``65536``, ``64K``, ``64M`` or ``1G`` (powers of 1024).

    Raises:
        ConfigError: not a non-negative size.
    """
    units = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    raw = text.strip().upper().removesuffix("IB")
    number, unit = raw, ""
    if raw and raw[-1] in units:
        number, unit = raw[:-1], raw[-1]
    try:
        value = int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise ConfigError(f"not a size in bytes: {text!r} (examples: 65536, 64K, 64M)") from None
    if value < 0:
        raise ConfigError(f"a size cannot be negative: {text!r}")
    return value


def format_size(value: int) -> str:
    """A byte count the way :func:`parse_size` reads it back: ``128M``, ``64K``, ``1000``."""
    for suffix, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value and value % factor == 0:
            return f"{value // factor}{suffix}"
    return str(value)


def parse_servers(text: str) -> list[tuple[str, int] | str]:
    """Parse ``host:port[,host:port…]`` or unix socket paths into pymemcache server specs.

    ``[::1]:11211`` is an IPv6 address; a spec starting with ``/`` is a unix
    socket path; a host without a port gets 11211.

    Raises:
        ConfigError: an empty list or a bad port.
    """
    servers: list[tuple[str, int] | str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("/"):
            servers.append(part)
            continue
        host, port = part, "11211"
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest.lstrip(":") or "11211"
        elif part.count(":") == 1:
            host, port = part.split(":")
        try:
            number = int(port)
            if not 0 < number < 65536:
                raise ValueError
        except ValueError:
            raise ConfigError(f"bad memcached port in {part!r}") from None
        servers.append((host, number))
    if not servers:
        raise ConfigError(f"no memcached server in {text!r}")
    return servers


# -- validators: each takes the converted value and returns an error text or None -----------

def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _between(low: float, high: float | None = None, why: str = "") -> Callable[[object], str | None]:
    def check(value) -> str | None:
        if value < low or (high is not None and value > high):
            span = f"{_num(low)} or more" if high is None else f"{_num(low)} to {_num(high)}"
            return f"must be {span}{why}, not {_num(value)}"
        return None
    return check


def _positive(value) -> str | None:
    return None if value > 0 else f"must be greater than 0, not {_num(value)}"


def _servers(value) -> str | None:
    parse_servers(value)  # raises ConfigError with the reason
    return None


def _log_level(value) -> str | None:
    try:
        level_number(value)
    except ValueError:
        return f"must be debug, info, notice, warn, error or crit (Apache's LogLevel names), not {value!r}"
    return None


def _prefix(value) -> str | None:
    # The prefix starts every memcached key: printable ASCII without spaces (the key contract).
    if not value or not all("!" <= ch <= "~" for ch in value):
        return "must be printable ASCII without spaces (it starts every memcached key)"
    return None


def _log_format(value) -> str | None:
    from logpipe.counting.parsing import check_format  # only when validating: not in the supervisor's imports

    try:
        check_format(value)
    except ValueError as exc:  # UnsupportedFormat
        return f"{value!r} cannot be parsed: {exc}"
    return None


def _networks(value) -> str | None:
    for text in value:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            return f"{text!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8)"
    return None


# memcached reads an exptime above 30 days as an absolute Unix time.
_TTL = _between(1, 30 * 86400, " (memcached reads more than 30 days as a date)")

#: argparse groups, in --help order: key → (title, description).
GROUPS = {
    "memcached": ("memcached", "where the counters go (memcached items, one per key)"),
    "input": ("input/format", "what Apache writes into the pipe"),
    "daemon": ("the daemon under httpd", "the piped logger's supervisor and worker processes"),
    "archive": ("raw archive", "every line Apache logged, into dated files (replaces cronolog)"),
    "counting": ("counting rules", "what is counted as a page view and in which dimensions"),
    "history": ("history", "the database that rollup fills and hits --days / report read"),
}

#: Commands a setting can be for: the daemon (``logpipe [OPTIONS]``), ``--dry-run``, subcommands.
COMMANDS = ("daemon", "dry-run", "hits", "top", "health", "rollup", "report")

_SECONDS = "seconds"
_BYTES = "bytes; K, M, G suffixes (powers of 1024)"
_READERS = ("hits", "top", "health")
_COUNTING = ("daemon", "dry-run", "rollup")


@dataclass(frozen=True)
class Setting:
    """One setting: its option, config-file key, environment variable, help and validation.

    Attributes:
        name: the Python name (``flush_interval``): the :class:`Settings` attribute and the
            config-file key; the option is ``--flush-interval``, the environment variable
            ``LOGPIPE_FLUSH_INTERVAL``.
        type: ``str``, ``int``, ``float``, ``size`` (bytes, :func:`parse_size`), ``bool``
            (a flag; ``yes``/``no`` in files and the environment) or ``list`` (a
            repeatable option; comma-separated in files and the environment).
        default: the value when nothing sets it (None: unset).
        help: what it does, in the field's terms (the default and unit are appended).
        group: a key of :data:`GROUPS`.
        commands: the commands that use it (names from :data:`COMMANDS`).
        unit: seconds, bytes…, or "" for none.
        metavar: the option's argument in ``--help`` (``SECONDS``, ``BYTES``…).
        validate: returns an error text (or raises ConfigError) for a value that
            converts but cannot be used; None when any value of the type is fine.
        shown_default: the default as ``--help`` shows it, when ``str(default)`` would not say it.
        in_file: False for ``config`` itself (a config file cannot name another).
    """

    name: str
    type: str
    default: object
    help: str
    group: str
    commands: tuple[str, ...]
    unit: str = ""
    metavar: str = ""
    validate: Callable[[object], str | None] | None = None
    shown_default: str = ""
    in_file: bool = True

    @property
    def flag(self) -> str:
        """The long option, ``--flush-interval``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable, ``LOGPIPE_FLUSH_INTERVAL``."""
        return "LOGPIPE_" + self.name.upper()

    def default_text(self) -> str:
        """The default for people: ``1``, ``128M``, ``off``, ``unset``…"""
        if self.shown_default:
            return self.shown_default
        if self.type == "bool":
            return "on" if self.default else "off"
        if self.type == "list":
            return ", ".join(self.default) if self.default else "none"
        if self.default is None:
            return "unset"
        if self.type == "size":
            return format_size(self.default)
        if self.type == "float":
            return f"{self.default:g}"
        return str(self.default)

    def help_text(self) -> str:
        """The help line: what it does, then its default and unit."""
        tail = f"default: {self.default_text()}"
        if self.unit:
            tail += f"; {self.unit}"
        if self.type == "list":
            tail += "; repeatable"
        return f"{self.help} ({tail})"

    def convert(self, raw: object, source: str = "") -> object:
        """*raw* (text from an option, a file or the environment) as this setting's type.

        Args:
            raw: a string, True for a given flag, a list for a repeated option.
            source: where it came from, for the message (``--ttl``, ``LOGPIPE_TTL``, ``FILE:3``).

        Raises:
            ConfigError: the text is not of the type; the message names *source*.
        """
        where = source or self.flag
        if self.type == "list":
            if isinstance(raw, (list, tuple)):
                return [str(part) for part in raw]
            return [part.strip() for part in str(raw).split(",") if part.strip()]
        text = str(raw).strip()
        if not text and self.default is None:
            return None  # "user =" in a file, LOGPIPE_USER= in the environment: unset
        if self.type == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{where}: expected yes or no, got {text!r}")
        if self.type == "size":
            try:
                return parse_size(text)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if self.type in ("int", "float"):
            try:
                return int(text) if self.type == "int" else float(text)
            except ValueError:
                kind = "a whole number" if self.type == "int" else "a number"
                raise ConfigError(f"{where}: expected {kind}{' of ' + self.unit if self.unit else ''}, "
                                  f"got {text!r}") from None
        return text

    def check(self, value: object, source: str = "") -> None:
        """Validate a converted value.

        Raises:
            ConfigError: ``"--ttl must be 1 to 2592000 … (from LOGPIPE_TTL)"``.
        """
        if self.validate is None or value is None:
            return
        try:
            problem = self.validate(value)
        except ConfigError as exc:
            problem = str(exc)
        if problem:
            origin = f" (from {source})" if source and source != self.flag else ""
            raise ConfigError(f"{self.flag} {problem}{origin}")


def _s(name, type, default, help, group, commands, unit="", metavar="", **more) -> Setting:
    return Setting(name, type, default, help, group, tuple(commands), unit,
                   metavar or name.upper(), **more)


_STATIC_EXT = ("css,js,mjs,map,png,jpg,jpeg,gif,webp,avif,svg,ico,bmp,tif,tiff,woff,woff2,ttf,otf,eot,"
               "mp3,mp4,webm,ogg,wav,avi,mov,flv,swf,pdf,zip,gz,tgz,bz2,xz,7z,rar,tar,exe,dmg,iso,"
               "apk,deb,rpm,txt,xml,json,csv")
_DIMENSIONS = "url,referrer,referrer_host,keyword,browser,platform,bot,bot_category,status,notfound,post_ip,visitors"

#: Every setting, once.  Order: groups as in :data:`GROUPS`, then by importance.
SETTINGS: tuple[Setting, ...] = (
    _s("config", "str", None,
       "read settings from FILE: 'key = value' lines (keys as the options without dashes, "
       "e.g. flush_interval = 2), '#' comments; the command line and LOGPIPE_* variables win",
       "general", COMMANDS, "a file path", "FILE", in_file=False),
    # memcached
    _s("memcached", "str", "127.0.0.1:11211",
       "memcached servers: host:port[,host:port…], [IPv6]:port or a unix socket path; "
       "keys are spread by rendezvous hashing like pymemcache's HashClient",
       "memcached", ("daemon", *_READERS), "host:port list", "SERVERS", validate=_servers),
    _s("prefix", "str", "logpipe",
       "first part of every key, {prefix}:{YYYY-MM-DD}:{dimension}:{value}; give each site or "
       "vhost its own to keep their counters apart", "memcached", ("daemon", "dry-run", "hits", "top"),
       validate=_prefix),
    _s("ttl", "int", 86400,
       "TTL of a counter, set when its first increment creates the memcached item "
       "(never refreshed by later ones)", "memcached", ("daemon", "dry-run"), _SECONDS, "SECONDS",
       validate=_TTL),
    _s("timeout", "float", 0.5,
       "memcached socket timeout of one request (a batch flush, a read)", "memcached",
       ("daemon", "hits", "top"), _SECONDS, "SECONDS", validate=_positive),
    _s("connect_timeout", "float", 0.5,
       "timeout of a TCP/unix connect to a memcached server", "memcached",
       ("daemon",), _SECONDS, "SECONDS", validate=_positive),
    # input
    _s("format", "str", "combined",
       "the LogFormat of the CustomLog/GlobalLog line: a nickname (common, combined, "
       "vhost_combined, combinedio; Debian's definitions) or the LogFormat string itself",
       "input", _COUNTING, "", "LOGFORMAT", validate=_log_format),
    # the daemon under httpd
    _s("flush_interval", "float", 1.0,
       "the worker sends its counts to memcached every this often (and at end of input)",
       "daemon", ("daemon",), _SECONDS, "SECONDS", validate=_positive),
    _s("max_pending_keys", "int", 200_000,
       "distinct counter keys the worker holds while memcached is unreachable; counts for new "
       "keys beyond it are dropped and reported (dropped_counts)", "daemon", ("daemon",), "keys",
       "N", validate=_between(0)),
    _s("max_pending_visitors", "int", 200_000,
       "unique-visitor marker items (and visits awaiting the day's salt) the worker holds while "
       "memcached is unreachable; new visitors beyond it are dropped and reported (dropped_visitors)",
       "daemon", ("daemon",), "visitors", "N", validate=_between(0)),
    _s("max_rss", "size", 512 << 20,
       "the worker is recycled after a flush when its resident memory (RSS) passes this",
       "daemon", ("daemon",), _BYTES, "BYTES"),
    _s("nice", "int", -5,
       "niceness of the supervisor and worker, set before dropping privileges (-5 is ahead "
       "of Apache's children)", "daemon", ("daemon",), "-20 (first) to 19 (last)", "N",
       validate=_between(-20, 19)),
    _s("worker_nice", "int", 0,
       "how many steps nicer than the supervisor the worker runs", "daemon", ("daemon",),
       "0 to 19", "N", validate=_between(0, 19)),
    _s("spool_max", "size", 128 << 20,
       "lines the supervisor holds in memory while the worker lags or restarts; past it lines "
       "are dropped and counted (lines_dropped), Apache never waits", "daemon", ("daemon",),
       _BYTES, "BYTES"),
    _s("replay_max", "size", 64 << 20,
       "lines kept until the worker confirms their flush, replayed to a new worker after a crash; "
       "lines beyond it are unprotected (unprotected_lines)", "daemon", ("daemon",), _BYTES, "BYTES"),
    _s("pipe_size", "size", 1 << 20,
       "capacity asked for stdin's pipe and the pipe to the worker (F_SETPIPE_SZ; capped by "
       "/proc/sys/fs/pipe-max-size)", "daemon", ("daemon",), _BYTES, "BYTES"),
    _s("heartbeat_timeout", "float", 10.0,
       "a worker silent this long is killed and replaced", "daemon", ("daemon",), _SECONDS,
       "SECONDS", validate=_positive),
    _s("drain_timeout", "float", 60.0,
       "after httpd's SIGTERM, read on until EOF for at most this long, then flush and exit",
       "daemon", ("daemon",), _SECONDS, "SECONDS", validate=_between(0)),
    _s("status_dir", "str", "/run/logpipe",
       "directory of the status files (supervisor-PID.json, worker-PID.json, every 2 s) that "
       "logpipe health reads; empty: none", "daemon", ("daemon", "health"), "a directory", "DIR"),
    _s("user", "str", None,
       "drop root privileges to this user after start-up (httpd starts piped loggers as root)",
       "daemon", ("daemon",), "a user name", "USER", shown_default="unset: stay as started"),
    _s("group", "str", None,
       "group to drop to with --user", "daemon", ("daemon",), "a group name", "GROUP",
       shown_default="the user's primary group"),
    _s("log_interval", "float", 60.0,
       "repeats of one kind of message to Apache's ErrorLog are held back this long",
       "daemon", ("daemon",), _SECONDS, "SECONDS", validate=_between(0)),
    _s("log_level", "str", "warn",
       "the least severe message written to stderr (Apache's ErrorLog under httpd), by Apache's "
       "LogLevel names: debug, info, notice, warn, error or crit (warn is Apache's default LogLevel)",
       "daemon", ("daemon",), "an Apache LogLevel name", "LEVEL", validate=_log_level),
    # raw archive
    _s("archive", "str", None,
       "append every raw line to the file this strftime pattern names "
       "(e.g. /var/log/apache2/%Y/%m/%d/access.log) before counting it; rollup reads it",
       "archive", ("daemon", "rollup"), "a strftime pattern", "PATTERN", shown_default="no archive"),
    _s("symlink", "str", None,
       "keep this symlink pointing at the current archive file", "archive", ("daemon",),
       "a file path", "PATH", shown_default="none"),
    _s("archive_tz", "str", None,
       "time zone of the archive's file names and of rollup's yesterday (IANA name, e.g. UTC)",
       "archive", ("daemon", "rollup"), "a zoneinfo name", "TZ", shown_default="local time"),
    # counting rules
    _s("count_all", "bool", False,
       "count every request as a page view (no bot, method, status or static-file rule)",
       "counting", _COUNTING),
    _s("site_host", "list", [],
       "a host name of this site: its Referers are internal, not referrers", "counting",
       _COUNTING, "a host name", "HOST"),
    _s("exclude_path", "list", [],
       "do not count paths matching this glob (e.g. /admin/*)", "counting", _COUNTING,
       "a shell glob", "GLOB"),
    _s("exclude_ip", "list", [],
       "do not count requests from this address or CIDR network (e.g. 10.0.0.0/8)", "counting",
       _COUNTING, "an IP address or CIDR", "CIDR", validate=_networks),
    _s("keep_query_param", "list", [],
       "keep this query-string parameter in URL values (the query string is dropped otherwise)",
       "counting", _COUNTING, "a parameter name", "NAME"),
    _s("keep_trailing_slash", "bool", False,
       "count /path/ and /path as two URLs (they are one, /path, otherwise)", "counting",
       _COUNTING),
    _s("static_ext", "str", _STATIC_EXT,
       "file extensions that are static assets, not page views", "counting", _COUNTING,
       "comma-separated extensions", "EXTS"),
    _s("page_methods", "str", "GET,HEAD",
       "HTTP methods that can be page views", "counting", _COUNTING,
       "comma-separated methods", "METHODS"),
    _s("dimensions", "str", _DIMENSIONS,
       "the dimensions to count", "counting", _COUNTING, "comma-separated dimension names",
       "LIST"),
    _s("post_ip_ttl", "int", 7200,
       "TTL of the per-hour post_ip counters (POSTs per client IP)", "counting",
       ("daemon", "dry-run"), _SECONDS, "SECONDS", validate=_TTL),
    # history
    _s("db", "str", "sqlite:////var/lib/logpipe/logpipe.sqlite3",
       "the history database, an SQLAlchemy URL: sqlite:////path or postgresql://user@host/db "
       "(needs the postgresql extra)", "history", ("rollup", "report", "hits", "top"),
       "a database URL", "URL"),
    _s("source_host", "str", None,
       "this web server's name in the history database (several servers can share one)",
       "history", ("rollup",), "a host name", "NAME", shown_default="the host name"),
)

#: name → Setting.
BY_NAME = {s.name: s for s in SETTINGS}


class _SettingsMethods:
    def servers(self) -> list[tuple[str, int] | str]:
        """The memcached servers as pymemcache specs (see :func:`parse_servers`)."""
        return parse_servers(self.memcached)

    def dimension_set(self) -> frozenset[str]:
        """The dimensions to count, from ``--dimensions``."""
        return frozenset(d.strip() for d in self.dimensions.split(",") if d.strip())


def _field(setting: Setting) -> tuple[str, str, dataclasses.Field]:
    kinds = {"str": "str", "int": "int", "float": "float", "size": "int", "bool": "bool", "list": "list[str]"}
    kind = kinds[setting.type] + (" | None" if setting.default is None else "")
    if setting.type == "list":
        return setting.name, kind, dataclasses.field(default_factory=list)
    return setting.name, kind, dataclasses.field(default=setting.default)


#: Every setting with its value (a dataclass generated from :data:`SETTINGS`: one attribute per
#: setting, e.g. ``settings.flush_interval``; sizes are bytes, times are seconds).
Settings = dataclasses.make_dataclass(
    "Settings", [_field(s) for s in SETTINGS], bases=(_SettingsMethods,),
    namespace={"__module__": __name__, "__doc__": "Every setting of the daemon and the commands "
               "(logpipe.config.SETTINGS), with its default. Sizes are bytes, times are seconds."})


def settings_for(command: str) -> list[str]:
    """Names of the settings *command* (one of :data:`COMMANDS`) uses, in table order."""
    return [s.name for s in SETTINGS if command in s.commands]


def load_config_file(path: str) -> dict[str, object]:
    """Read ``key = value`` lines; return the settings they name, converted.

    Raises:
        ConfigError: the file cannot be read, names an unknown setting, or has a bad value
            (the message gives ``FILE:LINE``).
    """
    return {name: value for name, (value, _) in _read_file(path).items()}


def _read_file(path: str) -> dict[str, tuple[object, str]]:
    values: dict[str, tuple[object, str]] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().replace("-", "_")
        setting = BY_NAME.get(key)
        if not sep or setting is None or not setting.in_file:
            raise ConfigError(f"{path}:{number}: unknown setting {key!r}")
        where = f"{path}:{number}"
        values[key] = (setting.convert(value, where), where)
    return values


def add_options(parser, names: list[str], *, hidden: bool = False) -> None:
    """Add the long options of the named settings to *parser* (or an argument group).

    Each option's value is None unless given, so :func:`build_settings` can tell
    "not given" from a default.  *hidden*: accepted, but left out of ``--help``
    (options a command takes for compatibility without using them).
    """
    for name in names:
        setting = BY_NAME[name]
        text = argparse.SUPPRESS if hidden else setting.help_text().replace("%", "%%")
        if setting.type == "bool":
            parser.add_argument(setting.flag, action="store_true", default=None, help=text)
        elif setting.type == "list":
            parser.add_argument(setting.flag, action="append", default=None, metavar=setting.metavar,
                                help=text)
        else:
            parser.add_argument(setting.flag, default=None, metavar=setting.metavar, help=text)


def add_groups(parser: argparse.ArgumentParser, names: list[str], *, hidden: list[str] = ()) -> None:
    """Add the named settings to *parser*, each in its :data:`GROUPS` argparse group.

    Settings of the ``general`` group go to the parser's own option list.  *hidden* names
    are accepted without being shown (see :func:`add_options`).
    """
    groups: dict[str, object] = {}
    for name in names:
        key = BY_NAME[name].group
        if key not in GROUPS:
            target = parser
        else:
            if key not in groups:
                groups[key] = parser.add_argument_group(*GROUPS[key])
            target = groups[key]
        add_options(target, [name])
    add_options(parser, [n for n in hidden if n not in names], hidden=True)


def build_settings(
    cli_values: dict[str, object], environ: os._Environ | dict | None = None
) -> Settings:
    """Merge defaults, the config file, ``LOGPIPE_*`` variables and the command line.

    Args:
        cli_values: argparse's namespace as a dict (or any ``{name: value}``); ``None``
            means "not given"; keys that are not settings are ignored.
        environ: the environment (``os.environ`` by default).

    Raises:
        ConfigError: a value that cannot be used; the message names the setting and,
            when it is not the command line, where the value came from.
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, tuple[object, str]] = {}
    config_path = cli_values.get("config") or environ.get("LOGPIPE_CONFIG")
    if config_path:
        merged.update(_read_file(str(config_path)))
    for setting in SETTINGS:
        env_value = environ.get(setting.env)
        if env_value is not None:
            merged[setting.name] = (setting.convert(env_value, setting.env), setting.env)
    for name, value in cli_values.items():
        setting = BY_NAME.get(name)
        if setting is not None and value is not None:
            merged[name] = (setting.convert(value, setting.flag), setting.flag)
    for name, (value, source) in merged.items():
        BY_NAME[name].check(value, source)
    values = {name: value for name, (value, _) in merged.items()}
    for setting in SETTINGS:  # a default is checked too (the format's parser may be missing)
        if setting.name not in values and setting.validate is _log_format:
            setting.check(setting.default)
    return Settings(**values)


def example_config() -> str:
    """A commented config file with every setting at its default (``logpipe --print-config``).

    Every ``key = value`` line is commented out, so the file changes nothing until
    a line is uncommented; :func:`load_config_file` reads it back unchanged.
    """
    out = ["# logpipe configuration (logpipe --config FILE, or LOGPIPE_CONFIG=FILE).",
           "# One 'key = value' per line; '#' starts a comment. Every setting is shown at its",
           "# default, commented out. The command line wins over LOGPIPE_* environment",
           "# variables, which win over this file. Lists are comma-separated; yes/no for flags;",
           "# an empty value leaves a setting unset.",
           "# Generated from logpipe.config.SETTINGS (logpipe --print-config)."]
    for key, (title, description) in GROUPS.items():
        out += ["", f"# == {title}: {description} =="]
        for setting in SETTINGS:
            if setting.group != key or not setting.in_file:
                continue
            out.append("")
            out += [f"# {line}" for line in _wrap(setting.help_text(), 76)]
            out.append(f"# {setting.name} = {_file_value(setting)}".rstrip())
    return "\n".join(out) + "\n"


def _file_value(setting: Setting) -> str:
    if setting.type == "bool":
        return "yes" if setting.default else "no"
    if setting.type == "list":
        return ",".join(setting.default)
    if setting.default is None:
        return ""
    return setting.default_text() if setting.type in ("size", "float") else str(setting.default)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_on_hyphens=False)


def warn(message: str, level: int = logging.WARNING) -> None:
    """Log one line to stderr (Apache's ErrorLog when run by httpd) in Apache's shape,
    through :mod:`logpipe.log`; *level* is a :mod:`logging` level (default WARNING)."""
    _logger.log(level, message)
