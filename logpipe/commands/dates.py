"""The ``--date`` argument of ``hits``, ``top``, ``rollup`` and ``report``: one parser for all.

Accepted, in the server's local time (the time Apache logs ``%t`` in):
``YYYY-MM-DD``, ``today``, ``yesterday`` and ``-N`` (N days ago, ``-0`` is
today).  ``top post_ip`` also takes an hour, ``YYYY-MM-DDTHH`` (post_ip is
counted per clock hour).  Anything else is a bad option: one line, exit 2.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re

__all__ = ["DATE_HELP", "parse_day", "parse_day_or_hour", "day_arg", "day_or_hour_arg", "current_hour"]

#: The accepted forms, for help texts.
DATE_HELP = "YYYY-MM-DD, today, yesterday or -N (N days ago), local time"

_AGO = re.compile(r"-(\d{1,5})")
_HOUR = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d)")


def parse_day(text: str, *, now: _dt.datetime | None = None) -> str:
    """The day *text* names, as ``YYYY-MM-DD``.

    Args:
        text: ``YYYY-MM-DD``, ``today``, ``yesterday`` or ``-N`` (N days before today).
        now: the current local time (default: now; tests pass a fixed one).

    Raises:
        ValueError: any other text, or a date that does not exist (``2026-13-45``);
            the message lists the accepted forms.
    """
    today = (now or _dt.datetime.now()).date()
    word = text.strip().lower()
    if word == "today":
        return today.isoformat()
    if word == "yesterday":
        return (today - _dt.timedelta(days=1)).isoformat()
    ago = _AGO.fullmatch(word)
    if ago:
        return (today - _dt.timedelta(days=int(ago.group(1)))).isoformat()
    if re.fullmatch(r"\d{4}-\d\d-\d\d", word):
        try:
            return _dt.date.fromisoformat(word).isoformat()
        except ValueError:
            pass
    raise ValueError(f"not a day: {text!r} (use {DATE_HELP})")


def parse_day_or_hour(text: str, *, now: _dt.datetime | None = None) -> str:
    """Like :func:`parse_day`, and also ``YYYY-MM-DDTHH`` (an hour, returned as given).

    Raises:
        ValueError: neither a day nor an existing hour.
    """
    hour = _HOUR.fullmatch(text.strip())
    if hour:
        try:
            _dt.datetime.fromisoformat(f"{hour.group(1)}T{hour.group(2)}:00")
            return f"{hour.group(1)}T{hour.group(2)}"
        except ValueError:
            pass
        raise ValueError(f"not an hour: {text!r} (use YYYY-MM-DDTHH, hours 00-23)")
    try:
        return parse_day(text, now=now)
    except ValueError:
        raise ValueError(f"not a day or an hour: {text!r} (use {DATE_HELP}, or YYYY-MM-DDTHH)") from None


def current_hour(now: _dt.datetime | None = None) -> str:
    """The current local clock hour, ``YYYY-MM-DDTHH`` (the post_ip keys' period)."""
    return (now or _dt.datetime.now()).strftime("%Y-%m-%dT%H")


def day_arg(text: str) -> str:
    """argparse ``type=`` for ``--date``: :func:`parse_day`, errors as argparse's."""
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def day_or_hour_arg(text: str) -> str:
    """argparse ``type=`` for ``top --date``: :func:`parse_day_or_hour`, errors as argparse's."""
    try:
        return parse_day_or_hour(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
