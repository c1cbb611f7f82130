"""Settings: command-line options, a config file and ``LOGPIPE_*`` variables.

Precedence, highest first: the command line, the environment
(``LOGPIPE_FLUSH_INTERVAL=2`` for ``--flush-interval 2``), the config file
(``--config FILE`` or ``LOGPIPE_CONFIG``; ``key = value`` lines, ``#``
comments, keys spelled like the long options without dashes, e.g.
``flush_interval = 2``), then the defaults below.

This module imports only the standard library: the supervisor uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass, field

__all__ = ["Settings", "ConfigError", "parse_size", "parse_servers", "load_config_file"]


class ConfigError(ValueError):
    """A setting has a value logpipe cannot use; the message names it."""


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


@dataclass
class Settings:
    """Every setting of the daemon and the commands, with its default.

    Sizes are bytes, times are seconds.
    """

    # memcached
    memcached: str = "127.0.0.1:11211"
    prefix: str = "logpipe"
    ttl: int = 86400
    timeout: float = 0.5
    connect_timeout: float = 0.5
    # input
    format: str = "combined"
    # worker
    flush_interval: float = 1.0
    max_pending_keys: int = 200_000
    # unique-visitor marker items (and raw visits awaiting the day's salt) held
    # while memcached is down; past it new visitors are dropped and counted
    max_pending_visitors: int = 200_000
    max_rss: int = 512 << 20
    worker_nice: int = 0
    # supervisor
    nice: int = -5
    spool_max: int = 128 << 20
    replay_max: int = 64 << 20
    pipe_size: int = 1 << 20
    heartbeat_timeout: float = 10.0
    drain_timeout: float = 60.0
    status_dir: str = "/run/logpipe"
    user: str | None = None
    group: str | None = None
    log_interval: float = 60.0
    # raw archive
    archive: str | None = None
    symlink: str | None = None
    archive_tz: str | None = None
    # what is counted
    count_all: bool = False
    site_host: list[str] = field(default_factory=list)
    exclude_path: list[str] = field(default_factory=list)
    exclude_ip: list[str] = field(default_factory=list)
    keep_query_param: list[str] = field(default_factory=list)
    keep_trailing_slash: bool = False
    static_ext: str = (
        "css,js,mjs,map,png,jpg,jpeg,gif,webp,avif,svg,ico,bmp,tif,tiff,woff,woff2,ttf,otf,eot,"
        "mp3,mp4,webm,ogg,wav,avi,mov,flv,swf,pdf,zip,gz,tgz,bz2,xz,7z,rar,tar,exe,dmg,iso,"
        "apk,deb,rpm,txt,xml,json,csv"
    )
    page_methods: str = "GET,HEAD"
    dimensions: str = "url,referrer,referrer_host,keyword,browser,platform,bot,status,notfound,post_ip,visitors"
    post_ip_ttl: int = 7200
    # database (rollup, history)
    db: str = "sqlite:////var/lib/logpipe/logpipe.sqlite3"
    source_host: str | None = None

    def servers(self) -> list[tuple[str, int] | str]:
        """The memcached servers as pymemcache specs (see :func:`parse_servers`)."""
        return parse_servers(self.memcached)

    def dimension_set(self) -> frozenset[str]:
        """The dimensions to count, from ``--dimensions``."""
        return frozenset(d.strip() for d in self.dimensions.split(",") if d.strip())


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_SIZE_FIELDS = {"max_rss", "spool_max", "replay_max", "pipe_size"}


def _convert(name: str, raw: object):
    """Turn a text value from the environment or a file into the field's type."""
    default = _FIELDS[name].default
    if isinstance(raw, list):
        return raw
    text = str(raw).strip()
    if name in _SIZE_FIELDS:
        return parse_size(text)
    if _FIELDS[name].default_factory is not dataclasses.MISSING:  # list fields
        return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected yes or no, got {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{name}: expected a whole number, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{name}: expected a number of seconds, got {text!r}") from None
    return text


def load_config_file(path: str) -> dict[str, object]:
    """Read ``key = value`` lines; return the settings they name.

    Raises:
        ConfigError: the file cannot be read, or names an unknown setting.
    """
    values: dict[str, object] = {}
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
        if not sep or key not in _FIELDS:
            raise ConfigError(f"{path}:{number}: unknown setting {key!r}")
        values[key] = _convert(key, value)
    return values


def add_options(parser: argparse.ArgumentParser, names: list[str]) -> None:
    """Add the long options for the named settings to *parser* (default: unset)."""
    for name in names:
        default = _FIELDS[name].default
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", default=None)
        elif _FIELDS[name].default_factory is not dataclasses.MISSING:
            parser.add_argument(flag, action="append", default=None, metavar=name.upper())
        else:
            parser.add_argument(flag, default=None, metavar=name.upper())


def build_settings(
    cli_values: dict[str, object], environ: os._Environ | dict | None = None
) -> Settings:
    """Merge defaults, the config file, ``LOGPIPE_*`` variables and the command line.

    Args:
        cli_values: argparse's namespace as a dict; ``None`` means "not given".
        environ: the environment (``os.environ`` by default).

    Raises:
        ConfigError: a value that cannot be used, with the setting's name.
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, object] = {}
    config_path = cli_values.get("config") or environ.get("LOGPIPE_CONFIG")
    if config_path:
        merged.update(load_config_file(str(config_path)))
    for name in _FIELDS:
        env_value = environ.get("LOGPIPE_" + name.upper())
        if env_value is not None:
            merged[name] = _convert(name, env_value)
    for name, value in cli_values.items():
        if name in _FIELDS and value is not None:
            merged[name] = _convert(name, value)
    settings = Settings(**merged)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    settings.servers()
    for name in ("ttl", "flush_interval", "timeout", "connect_timeout", "heartbeat_timeout"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be greater than 0")
    from logpipe.counting.logformat import UnsupportedFormat
    from logpipe.counting.parsing import check_format

    try:
        check_format(settings.format)
    except UnsupportedFormat as exc:
        raise ConfigError(f"--format {settings.format!r} cannot be parsed: {exc}") from None
    if not -20 <= settings.nice <= 19:
        raise ConfigError("--nice must be -20 (the highest priority) to 19 (the lowest)")
    if not 0 <= settings.worker_nice <= 19:
        raise ConfigError("--worker-nice must be 0 (the supervisor's priority) to 19 (the lowest)")
    if settings.ttl > 30 * 86400:
        # memcached reads an exptime above 30 days as an absolute Unix time.
        raise ConfigError("--ttl above 2592000 s (30 days) would be read by memcached as a date")


def warn(message: str) -> None:
    """Write one line to stderr (Apache's ErrorLog when run by httpd)."""
    try:
        sys.stderr.write(f"logpipe[{os.getpid()}]: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
