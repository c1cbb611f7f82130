"""The memcached key contract: one function builds every key logpipe writes or reads.

Applications read logpipe's counters with plain memcached ``get`` calls, so the
key layout is a public contract (README, "Key contract")::

    {prefix}:{YYYY-MM-DD}:{dimension}:{value}              one site
    {prefix}:{YYYY-MM-DD}:{dimension}@{site}:{value}       per virtual host (%v)
    {prefix}:#today                                        the day the writer counts in
    {prefix}:{YYYY-MM-DD}:visitors:*                       unique visitors of the site
    {prefix}:{YYYY-MM-DD}:visitors:{path}                  unique visitors of one URL

memcached's text protocol allows keys of at most 250 bytes with no control
characters and no whitespace (memcached ``doc/protocol.txt``, "Keys").  A value
is written verbatim when it is printable ASCII (``!`` to ``~``) without ``#``
and the whole key fits; any other value is replaced by ``#`` followed by the
40 hex digits of its BLAKE2b-160 digest.  Verbatim values never contain ``#``
and digests always start with it, so two different values never share a key.
"""

from __future__ import annotations

import re

try:  # hashlib's own BLAKE2, without hashlib loading OpenSSL (about 3.6 MB of RSS in the worker)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_KEY_BYTES",
    "counter_key",
    "index_key",
    "index_suffix",
    "key_head",
    "index_keys",
    "encode_value",
    "normalize_path",
    "INDEX_SHARDS",
    "today_key",
    "today_value",
    "parse_today",
    "ALL_VISITORS",
    "visitors_key",
]

DEFAULT_PREFIX = "logpipe"
#: memcached's limit on a key's length, in bytes (protocol.txt, "Keys").
MAX_KEY_BYTES = 250
#: A per-day, per-dimension index is split in this many items so that 100,000
#: distinct values stay below memcached's default 1 MiB item size limit.
INDEX_SHARDS = 32
#: The value of the site-wide ``visitors`` counter; never a path (paths start with ``/``).
ALL_VISITORS = "*"

_VERBATIM = re.compile(r"[!-\"$-~]+\Z")  # printable ASCII without space and '#'
_UNSAFE_BYTE = re.compile(rb"[^!-~]")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)


def _digest(value: str) -> str:
    raw = value.encode("utf-8", "surrogateescape")
    return "#" + blake2b(raw, digest_size=20).hexdigest()


def _check_part(name: str, part: str) -> None:
    if not part or not _VERBATIM.match(part) or ":" in part:
        raise ValueError(
            f"{name} {part!r} must be non-empty printable ASCII without ':', '#' or spaces"
        )


def encode_value(value: str, room: int = MAX_KEY_BYTES) -> str:
    """Return *value* as it appears in a key: verbatim or ``#`` + 40 hex digits.

    Args:
        value: the counted value (a URL path, a browser family, ...), any str.
        room: bytes left for the value in the key; a longer value is digested.

    Returns:
        *value* itself when it is non-empty printable ASCII without ``#`` and at
        most *room* bytes long, else its digest (41 bytes).
    """
    if len(value) <= room and _VERBATIM.match(value):
        return value
    return _digest(value)


def key_head(day: str, dimension: str, site: str | None = None, prefix: str = DEFAULT_PREFIX) -> str:
    """The part of every key of one day, dimension and site before the value:
    ``{prefix}:{day}:{dimension}[@{site}]:``.

    :func:`counter_key` is ``head + encoded value``, and :func:`index_key`
    ``head + "#index.N"``; callers that build many keys of one head (the
    worker, per flush) build the head once.

    Raises:
        ValueError: *prefix* or *dimension* is not a plain ASCII token.
    """
    _check_part("prefix", prefix)
    _check_part("dimension", dimension)
    if site is None:
        return f"{prefix}:{day}:{dimension}:"
    site_part = encode_value(site, 64).replace(":", "_")
    return f"{prefix}:{day}:{dimension}@{site_part}:"


def counter_key(
    day: str,
    dimension: str,
    value: str,
    *,
    site: str | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> str:
    """Build the memcached key of one counter.

    Args:
        day: the request's day as ``YYYY-MM-DD`` (from the line's ``%t``); for
            hourly dimensions ``YYYY-MM-DDTHH``.
        dimension: ``url``, ``referrer``, ``browser``, ... (ASCII, no ``:``).
        value: the counted value; URL paths should first go through
            :func:`normalize_path` so that the writer and readers agree.
        site: the virtual host (``%v``) when counts are kept per site.
        prefix: the key prefix, ``logpipe`` by default.

    Returns:
        An ASCII str of at most 250 bytes that memcached accepts.

    Raises:
        ValueError: *prefix* or *dimension* is not a plain ASCII token.
    """
    head = key_head(day, dimension, site, prefix)
    return head + encode_value(value, MAX_KEY_BYTES - len(head))


def index_key(
    day: str,
    dimension: str,
    value: str,
    *,
    site: str | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> str:
    """The index item (one of :data:`INDEX_SHARDS`) that lists *value*.

    memcached cannot list keys, so each writer appends every value it counts
    for the first time to ``{head}#index.{shard}`` (newline-separated).  The
    shard is chosen by the value's digest, so every writer agrees on it.
    """
    return key_head(day, dimension, site, prefix) + index_suffix(value)


def index_suffix(value: str) -> str:
    """``#index.N``: which of the :data:`INDEX_SHARDS` index items of a head lists *value*."""
    shard = blake2b(value.encode("utf-8", "surrogateescape"), digest_size=4)
    return f"#index.{int.from_bytes(shard.digest(), 'big') % INDEX_SHARDS}"


def index_keys(
    day: str, dimension: str, *, site: str | None = None, prefix: str = DEFAULT_PREFIX
) -> list[str]:
    """All index items of one day and dimension (see :func:`index_key`)."""
    head = key_head(day, dimension, site, prefix)
    return [f"{head}#index.{n}" for n in range(INDEX_SHARDS)]


def visitors_key(day: str, path: str | None = None, *, site: str | None = None,
                 prefix: str = DEFAULT_PREFIX, fold_trailing_slash: bool = True) -> str:
    """The key of a unique-visitors counter (README, "Unique visitors").

    Args:
        day: ``YYYY-MM-DD``, the requests' ``%t`` day.
        path: a URL path (query string ignored, normalized as for ``url``);
            None for the whole site (``…:visitors:*``).
        site: the virtual host (``%v``), when counts are kept per site.
        prefix: the key prefix.
        fold_trailing_slash: False when the writer runs with ``--keep-trailing-slash``.
    """
    value = ALL_VISITORS if path is None else normalize_path(
        path.split("?", 1)[0], fold_trailing_slash=fold_trailing_slash)
    return counter_key(day, "visitors", value, site=site, prefix=prefix)


def normalize_path(path: str | bytes, *, fold_trailing_slash: bool = True) -> str:
    """Normalize a URL path the same way for the writer and for readers.

    Rules (RFC 3986 §6.2.2): bytes outside printable ASCII (and space) are
    percent-encoded with uppercase hex; percent-encoded unreserved characters
    are decoded; other percent escapes get uppercase hex.  With
    *fold_trailing_slash*, ``/path/`` and ``/path`` become ``/path`` (``/``
    stays).  The query string must already be removed.

    Args:
        path: the path as a client sent it (``/caf%C3%A9/``), or as a web
            framework decoded it (``/café/``), or raw bytes from the log.

    Returns:
        The canonical path, printable ASCII.
    """
    raw = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else path
    if _UNSAFE_BYTE.search(raw):
        raw = b"".join(
            bytes((b,)) if 0x21 <= b <= 0x7E else b"%%%02X" % b for b in raw
        )
    text = raw.decode("ascii")
    if "%" in text:
        text = _PERCENT.sub(_fix_escape, text)
    if fold_trailing_slash and len(text) > 1 and text.endswith("/"):
        text = text.rstrip("/") or "/"
    return text


def _fix_escape(match: re.Match) -> str:
    byte = int(match.group(1), 16)
    if byte in _UNRESERVED:
        return chr(byte)
    return "%" + match.group(1).upper()


def today_key(prefix: str = DEFAULT_PREFIX) -> str:
    """The item in which writers publish the day they count in: ``{prefix}:#today``.

    Its value is :func:`today_value`'s text, ``YYYY-MM-DD ±hhmm`` (the date and
    UTC offset of the newest ``%t`` the writer has seen), set with the
    counters' TTL at every flush.  No counter key has ``#`` right after the
    prefix, so it cannot collide with one.

    Raises:
        ValueError: *prefix* is not a plain ASCII token.
    """
    _check_part("prefix", prefix)
    return f"{prefix}:#today"


def today_value(day: str, utc_offset: str) -> str:
    """``"2026-11-21 +0900"``: the value of :func:`today_key` (*utc_offset* as in ``%t``)."""
    return f"{day} {utc_offset}"


_TODAY_VALUE = re.compile(r"(\d{4})-(\d\d)-(\d\d) ([+-])(\d\d)(\d\d)\Z")


def parse_today(value: str | bytes):
    """Parse a :func:`today_key` value.

    Returns:
        ``(datetime.date, datetime.timezone)``, or None when *value* is not
        ``YYYY-MM-DD ±hhmm`` (an item written by something else).
    """
    import datetime as _dt

    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    match = _TODAY_VALUE.match(value.strip())
    if match is None:
        return None
    year, month, day, sign, hours, minutes = match.groups()
    try:
        offset = _dt.timedelta(hours=int(hours), minutes=int(minutes))
        zone = _dt.timezone(-offset if sign == "-" else offset)
        return _dt.date(int(year), int(month), int(day)), zone
    except ValueError:  # an impossible date, or an offset of 24 hours or more
        return None
