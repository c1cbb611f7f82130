"""The settings table (logpipe.config): types, defaults, precedence, validation, the example file."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from logpipe import config
from logpipe.config import (GROUPS, SETTINGS, ConfigError, Settings, build_settings, example_config,
                            format_size, load_config_file, parse_size, settings_for)
from logpipe.errors import LogpipeError

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_declared_once_with_its_documentation():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    assert [f.name for f in dataclasses.fields(Settings)] == names
    for s in SETTINGS:
        assert s.type in ("str", "int", "float", "size", "bool", "list"), s.name
        assert len(s.help) > 15 and s.metavar, s.name
        assert s.group in GROUPS or s.group == "general", s.name
        assert s.commands and set(s.commands) <= set(config.COMMANDS), s.name
        assert s.flag == "--" + s.name.replace("_", "-") and s.env == "LOGPIPE_" + s.name.upper()
        # a time or a size says its unit
        if s.type == "size":
            assert "bytes" in s.unit and "K, M, G" in s.unit, s.name
        if s.metavar == "SECONDS":
            assert s.unit == "seconds", s.name
        assert "default: " in s.help_text(), s.name


def test_defaults_and_types_of_the_generated_settings_object():
    s = Settings()
    assert (s.flush_interval, s.ttl, s.timeout, s.spool_max, s.max_rss) == (1.0, 86400, 0.5, 128 << 20, 512 << 20)
    assert s.memcached == "127.0.0.1:11211" and s.prefix == "logpipe" and s.format == "combined"
    assert s.site_host == [] and s.count_all is False and s.user is None
    assert Settings().site_host is not s.site_host  # lists are per object
    assert s.servers() == [("127.0.0.1", 11211)]
    assert "url" in s.dimension_set() and "post_ip" in s.dimension_set()
    assert Settings.__module__ == "logpipe.config" and Settings.__name__ == "Settings"
    assert Settings(ttl=5, flush_interval=0.1).ttl == 5  # keyword construction (tests, bench) works
    # the defaults the table declares are the object's, and they pass their own validation
    built = build_settings({}, environ={})
    assert built == Settings()


def test_precedence_cli_over_environment_over_file_over_default(tmp_path):
    conf = tmp_path / "logpipe.conf"
    conf.write_text("# comment\nflush_interval = 3\nttl = 600\nprefix = fromfile\n"
                    "site-host = a.example, b.example\nspool_max = 2M\ncount_all = yes\n")
    env = {"LOGPIPE_CONFIG": str(conf), "LOGPIPE_TTL": "700", "LOGPIPE_PREFIX": "fromenv"}
    s = build_settings({"prefix": "fromcli", "flush_interval": None}, environ=env)
    assert s.prefix == "fromcli"            # CLI > env
    assert s.ttl == 700                     # env > file
    assert s.flush_interval == 3.0          # file > default (None from argparse = not given)
    assert s.site_host == ["a.example", "b.example"] and s.spool_max == 2 << 20 and s.count_all is True
    assert s.timeout == 0.5                 # default
    # --config on the command line beats LOGPIPE_CONFIG
    other = tmp_path / "other.conf"
    other.write_text("ttl = 60\n")
    assert build_settings({"config": str(other)}, environ={"LOGPIPE_CONFIG": str(conf)}).ttl == 60
    # repeated options arrive as a list and stay one
    assert build_settings({"exclude_path": ["/a/*", "/b/*"]}, environ={}).exclude_path == ["/a/*", "/b/*"]


@pytest.mark.parametrize("values, env, message", [
    ({"ttl": "0"}, {}, "--ttl must be 1 to 2592000"),
    ({"ttl": str(31 * 86400)}, {}, "as a date"),
    ({}, {"LOGPIPE_TTL": "ten"}, "LOGPIPE_TTL: expected a whole number of seconds, got 'ten'"),
    ({}, {"LOGPIPE_FLUSH_INTERVAL": "0"}, "--flush-interval must be greater than 0, not 0 (from LOGPIPE_FLUSH_INTERVAL)"),
    ({"nice": "-21"}, {}, "--nice must be -20 to 19"),
    ({"worker_nice": "-1"}, {}, "--worker-nice must be 0 to 19"),
    ({"spool_max": "lots"}, {}, "--spool-max: not a size in bytes"),
    ({"memcached": "host:99999"}, {}, "bad memcached port"),
    ({"memcached": " , "}, {}, "no memcached server"),
    ({"prefix": "my site"}, {}, "--prefix must be printable ASCII without spaces"),
    ({"exclude_ip": ["10.0.0.0/8", "10.0.0.300"]}, {}, "'10.0.0.300' is not an IP address"),
    ({"format": "%{%Y-%m-%d}t %r"}, {}, "--format '%{%Y-%m-%d}t %r' cannot be parsed"),
    ({"count_all": "maybe"}, {}, "--count-all: expected yes or no"),
    ({"drain_timeout": "-1"}, {}, "--drain-timeout must be 0 or more"),
])
def test_validation_errors_name_the_setting_and_where_it_came_from(values, env, message):
    with pytest.raises(ConfigError) as caught:
        build_settings(values, environ=env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, LogpipeError) and isinstance(caught.value, ValueError)


def test_config_file_errors_give_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("ttl = 60\nflush_intervall = 2\n")
    with pytest.raises(ConfigError, match=r"bad.conf:2: unknown setting 'flush_intervall'"):
        build_settings({"config": str(conf)}, environ={})
    conf.write_text("\n\nheartbeat_timeout = soon\n")
    with pytest.raises(ConfigError, match=r"bad.conf:3: expected a number of seconds"):
        load_config_file(str(conf))
    conf.write_text("config = /etc/other.conf\n")  # a file cannot name another file
    with pytest.raises(ConfigError, match="unknown setting 'config'"):
        load_config_file(str(conf))
    with pytest.raises(ConfigError, match="cannot read config file"):
        build_settings({}, environ={"LOGPIPE_CONFIG": str(tmp_path / "missing.conf")})


def test_empty_value_leaves_an_unset_setting_unset(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("user =\narchive =\n")
    s = build_settings({"config": str(conf)}, environ={"LOGPIPE_SOURCE_HOST": ""})
    assert s.user is None and s.archive is None and s.source_host is None


@pytest.mark.parametrize("text, value", [("65536", 65536), ("64K", 65536), ("64k", 65536), ("1M", 1 << 20),
                                         ("1G", 1 << 30), ("1.5K", 1536), ("2MiB", 2 << 20), ("0", 0)])
def test_sizes(text, value):
    assert parse_size(text) == value
    assert parse_size(format_size(value)) == value


def test_example_config_has_every_setting_at_its_default_and_reads_back(tmp_path):
    text = example_config()
    for s in SETTINGS:
        if s.in_file:
            assert f"\n# {s.name} =" in text, s.name
    # commented out, it changes nothing...
    path = tmp_path / "logpipe.conf"
    path.write_text(text)
    assert load_config_file(str(path)) == {}
    # ...and uncommented, every line reads back as the default
    uncommented = "\n".join(line[2:] if " = " in line or line.rstrip().endswith(" =") else line
                            for line in text.splitlines() if not line.startswith("# ==")) + "\n"
    lines = [line for line in uncommented.splitlines()
             if line and not line.startswith("#") and line.split("=")[0].strip() in config.BY_NAME]
    path.write_text("\n".join(lines) + "\n")
    assert build_settings({"config": str(path)}, environ={}) == dataclasses.replace(Settings(), config=str(path))


def test_checked_in_example_config_is_up_to_date():
    checked_in = (ROOT / "systemd" / "logpipe.conf.example").read_text()
    assert checked_in == example_config(), "systemd/logpipe.conf.example is stale: run make config-example"
    out = subprocess.run([sys.executable, "-m", "logpipe", "--print-config"], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0 and out.stdout == checked_in


def test_argparse_options_come_from_the_table():
    parser = argparse.ArgumentParser()
    config.add_groups(parser, settings_for("rollup"), hidden=["memcached"])
    args = parser.parse_args(["--db", "sqlite://", "--site-host", "a", "--site-host", "b", "--count-all",
                              "--memcached", "m:1"])
    assert args.db == "sqlite://" and args.site_host == ["a", "b"] and args.count_all is True
    assert args.format is None  # not given: the file, the environment or the default decide
    text = parser.format_help()
    assert "--memcached" not in text  # accepted, not shown: rollup does not use it
    assert "counting rules:" in text and "history:" in text
    for name in settings_for("rollup"):
        assert config.BY_NAME[name].flag in text
