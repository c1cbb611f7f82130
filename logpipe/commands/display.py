"""Counted values as a person reads them: percent-decoded, control characters escaped.

The counters and the database keep values as counted (URLs percent-encoded,
printable ASCII: the key contract); ``--json`` prints them that way.  Tables
for people (``logpipe top``, ``logpipe report``) show :func:`shown` instead:
``/caf%C3%A9.html`` reads ``/café.html``.  Visitors choose URLs, referrers and
search keywords, so whatever decoding produces, a control character never
reaches the terminal raw (an ``ESC`` could redraw the screen or retitle the
window): C0/C1 controls, DEL and the Unicode bidirectional overrides are
written as visible escapes (``\\x1b``, ``\\u202e``), as Apache escapes them in
its own log.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["shown", "escape_controls", "DECODED_DIMENSIONS"]

#: Dimensions whose values are percent-encoded URLs (decoded for display).
DECODED_DIMENSIONS = frozenset({"url", "notfound", "referrer"})
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
# Unicode format characters that reorder or hide text (Trojan Source, CVE-2021-42574).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _decode_run(match: re.Match) -> str:
    run = match.group(0)
    raw = bytes.fromhex(run.replace("%", ""))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # not UTF-8 (Latin-1 URLs, cut sequences): decode the valid parts, keep the rest encoded
        return raw.decode("utf-8", "surrogateescape")


def escape_controls(text: str) -> str:
    """*text* with every control character written as a visible escape (``\\x1b``, ``\\u202e``).

    Escaped: C0 and C1 controls and DEL (Unicode category Cc), the
    bidirectional formatting characters, and lone surrogates (bytes that were
    not UTF-8, from ``surrogateescape``: shown as ``%XX``, as they were sent).
    """
    if text.isprintable() and not _BIDI.intersection(text):
        return text
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append(f"%{code - 0xDC00:02X}")
        elif char in _BIDI or unicodedata.category(char) in ("Cc", "Cs"):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def shown(value: str, dimension: str = "url") -> str:
    """*value* of *dimension* for display: percent-decoded for URLs, controls escaped for all.

    Never use the result as a key or to look a value up: keys stay encoded.
    """
    if dimension in DECODED_DIMENSIONS and "%" in value:
        value = _ESCAPES.sub(_decode_run, value)
    return escape_controls(value)
