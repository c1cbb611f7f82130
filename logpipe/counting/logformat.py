"""Compile an Apache LogFormat into one fast regular expression over bytes.

Directive syntax and meanings follow mod_log_config
(https://httpd.apache.org/docs/2.4/mod/mod_log_config.html#formats) and
mod_logio for ``%I``/``%O``/``%S``.  Quoted fields are escaped by
``ap_escape_logitem``: ``"`` → ``\\"``, ``\\`` → ``\\\\``, control bytes and every
byte ≥ 0x80 → ``\\xhh`` (httpd ``server/util.c``), so a quoted field matches
``"([^"\\\\\\n]*(?:\\\\.[^"\\\\\\n]*)*)"`` and never holds a raw newline.

Only the fields logpipe counts are captured; the rest are matched and skipped.
A format with a directive this module does not know falls back to
apache-log-parser (see :mod:`logpipe.counting.parsing`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from logpipe.errors import UnsupportedFormat  # re-exported: defined in logpipe.errors

__all__ = [
    "NICKNAMES",
    "FIELDS",
    "CompiledFormat",
    "UnsupportedFormat",
    "compile_format",
    "resolve_nickname",
    "tokenize",
]

#: Debian's LogFormat definitions (``/etc/apache2/apache2.conf``, which uses
#: mod_logio's %O where upstream uses %b) and mod_logio's ``combinedio``.
NICKNAMES = {
    "common": '%h %l %u %t "%r" %>s %O',
    "combined": '%h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"',
    "vhost_combined": '%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"',
    "combinedio": '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %I %O',
}

#: Names of the fields a compiled format may capture, in tuple order.
#: ``day`` is ``dd/Mon/yyyy`` and ``hour`` ``hh`` from ``%t``; ``query``
#: includes its leading ``?``; ``request`` is a whole request line that did not
#: have the usual ``METHOD /path[?query] HTTP/x`` shape (parsed slowly later).
FIELDS = ("site", "ip", "day", "hour", "method", "path", "query", "request", "status",
          "referer", "user_agent")

_DIRECTIVE = re.compile(
    r"%(?P<mod>[<>]?!?(?:\d{3}(?:,\d{3})*)?[<>]?)(?:\{(?P<arg>[^}]*)\})?(?P<code>[a-zA-Z%])"
)

# Field patterns (bytes).  Quoted content uses the unrolled-loop form, which
# sre runs far faster than an alternation inside a repeat.
_QUOTED = rb'[^"\\\n]*(?:\\.[^"\\\n]*)*'
# The same field for the chunk scan: up to the next quote, whatever it holds.
# Python's re runs a single negated literal as a tight loop (26 % less scan
# time on the bench input than _QUOTED).  It can stop early at an escaped
# quote (\"), but a field that ends early cannot match the rest of the format,
# because every quote inside a field is preceded by a backslash and every
# quote of the format by something else; such a line falls to the catch-all
# and is parsed again with line_regex.  It can also run over a newline, which
# the caller detects (fewer matches than lines).
_LOOSE_QUOTED = rb'[^"]*'
_TOKEN = rb"[^ \n]*"
_TIME = rb"\[(\d\d/[A-Za-z]{3}/\d{4}):(\d\d):\d\d:\d\d [+-]\d{4}\]"
_TIME_SKIP = rb"\[\d\d/[A-Za-z]{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"
_NUMBER_OR_DASH = rb"(?:-|\d+)"


def resolve_nickname(fmt: str) -> str:
    """Return the LogFormat string for a nickname (``combined`` …) or *fmt* itself."""
    return NICKNAMES.get(fmt.strip(), fmt)


def tokenize(fmt: str) -> list[tuple[str, str | None, str]]:
    """Split a LogFormat string into ``("lit", None, text)`` and ``(code, arg, modifiers)``.

    Apache's own backslash escapes in a LogFormat (``\\"`` in httpd.conf) are
    expected to be already undone, as httpd does when it reads the config.
    """
    tokens: list[tuple[str, str | None, str]] = []
    pos = 0
    for match in _DIRECTIVE.finditer(fmt):
        if match.start() > pos:
            tokens.append(("lit", None, fmt[pos:match.start()]))
        code = match.group("code")
        if code == "%":
            tokens.append(("lit", None, "%"))
        else:
            tokens.append((code, match.group("arg"), match.group("mod")))
        pos = match.end()
    if pos < len(fmt):
        tokens.append(("lit", None, fmt[pos:]))
    return tokens


@dataclass
class CompiledFormat:
    """A LogFormat compiled for the hot path.

    Attributes:
        format: the LogFormat string.
        line_regex: matches one whole line (no newline), for ``fullmatch``.
        chunk_regex: the same anchored with ``^``/``$`` in MULTILINE mode, for
            ``finditer`` over a buffer of many lines.
        fields: the field names captured, in group order (a subset of FIELDS).
        loose_body: the pattern of one line (no anchors) with quoted fields
            matched as ``[^"]*`` and tokens as ``[^ ]``: faster, and equal to ``line_regex`` on every
            line httpd writes; a caller must re-check a line it rejects with
            ``line_regex`` and must count its matches against the lines.
    """

    format: str
    line_regex: re.Pattern
    chunk_regex: re.Pattern
    fields: tuple[str, ...]
    loose_body: bytes = b""


def compile_format(fmt: str, *, capture: frozenset[str] | set[str] | None = None) -> CompiledFormat:
    """Compile a LogFormat (or nickname) into a :class:`CompiledFormat`.

    Args:
        fmt: a nickname from :data:`NICKNAMES` or a LogFormat string.
        capture: the fields to capture (default: all of :data:`FIELDS` the
            format has).  Fewer captures mean fewer distinct tuples to count.

    Raises:
        UnsupportedFormat: a directive this compiler does not know, such as a
            custom ``%{format}t``; callers fall back to apache-log-parser.
    """
    fmt = resolve_nickname(fmt)
    want = set(FIELDS) if capture is None else set(capture)
    tokens = tokenize(fmt)
    body, fields = _body(tokens, want, _QUOTED)
    loose_body, _ = _body(tokens, want, _LOOSE_QUOTED)
    # Unquoted tokens too: a single negated literal is sre's tight loop, a
    # two-byte class is not.  A token that runs over a newline makes a match
    # span two lines, which the caller detects the same way (fewer matches).
    loose_body = loose_body.replace(rb"[^ \n]", rb"[^ ]")
    line_regex = re.compile(body + rb"\r?")
    chunk_regex = re.compile(rb"^" + body + rb"\r?$", re.MULTILINE)
    return CompiledFormat(fmt, line_regex, chunk_regex, tuple(fields), loose_body + rb"\r?")


def _body(tokens, want: set[str], quoted_field: bytes) -> tuple[bytes, list[str]]:
    """The regex of one line and the names of its groups; *quoted_field* is
    the pattern of a field between double quotes (_QUOTED or _LOOSE_QUOTED)."""
    parts: list[bytes] = []
    fields: list[str] = []
    seen: set[str] = set()

    def grab(name: str, pattern: bytes, skip: bytes) -> bytes:
        if name in want and name not in seen:
            seen.add(name)
            fields.append(name)
            return b"(" + pattern + b")"
        return skip

    for index, (code, arg, mod) in enumerate(tokens):
        if code == "lit":
            parts.append(re.escape(mod.encode("ascii", "backslashreplace")))
            continue
        quoted = _is_quoted(tokens, index)
        generic = quoted_field if quoted else _generic_unquoted(tokens, index)
        if "!" in mod or re.search(r"\d", mod):
            # A status condition (%400,501{X}i) logs "-" when not met.
            generic = quoted_field if quoted else _TOKEN
        if code in ("h", "a"):
            parts.append(grab("ip", rb"[^ \n]+", rb"[^ \n]+"))
        elif code in ("l",):
            parts.append(_TOKEN)
        elif code == "u":
            # A user name is one token, except a rare one with a space (not
            # escaped by httpd): the second alternative, tried only on failure.
            parts.append(quoted_field if quoted else rb"(?:[^ \n]*|[^\n]*?)")
        elif code == "t":
            if arg:
                raise UnsupportedFormat(f"%{{{arg}}}t (a custom time format)")
            if "day" in want or "hour" in want:
                day = _TIME.replace(rb"(\d\d/[A-Za-z]{3}/\d{4})", grab("day", rb"\d\d/[A-Za-z]{3}/\d{4}", rb"\d\d/[A-Za-z]{3}/\d{4}"), 1)
                day = day.replace(rb":(\d\d):", b":" + grab("hour", rb"\d\d", rb"\d\d") + b":", 1)
                parts.append(day)
            else:
                parts.append(_TIME_SKIP)
        elif code == "r":
            parts.append(_request_pattern(want, seen, fields, quoted, quoted_field))
        elif code == "m":
            parts.append(grab("method", rb"[A-Za-z0-9_-]+", rb"[^ \n]*"))
        elif code == "U":
            parts.append(grab("path", rb"[^ ?\n\"]*", rb"[^ ?\n\"]*"))
        elif code == "q":
            parts.append(grab("query", rb"(?:\?[^ \n\"]*)?", rb"(?:\?[^ \n\"]*)?"))
        elif code == "H":
            parts.append(rb"[^ \n\"]*")
        elif code == "s":
            parts.append(grab("status", rb"\d{3}", rb"\d{3}"))
        elif code in ("b", "B", "D", "T", "I", "O", "S", "k", "P", "p"):
            parts.append(_NUMBER_OR_DASH if not arg or code in ("T", "p", "P") else rb"[^ \n]*")
        elif code in ("v", "V"):
            parts.append(grab("site", rb"[^ :\n\"]*", rb"[^ :\n\"]*") if not quoted else grab("site", quoted_field, quoted_field))
        elif code == "i":
            header = (arg or "").lower()
            if header in ("referer", "referrer"):
                parts.append(grab("referer", generic, generic))
            elif header == "user-agent":
                parts.append(grab("user_agent", generic, generic))
            else:
                parts.append(generic)
        elif code in ("e", "n", "o", "C", "f", "A", "L", "R", "X", "x", "^"):
            parts.append(generic)
        else:
            raise UnsupportedFormat(f"%{code} (not handled by the fast parser)")
    return b"".join(parts), fields


def _is_quoted(tokens, index: int) -> bool:
    before = tokens[index - 1] if index > 0 else None
    after = tokens[index + 1] if index + 1 < len(tokens) else None
    return (
        before is not None and before[0] == "lit" and before[2].endswith('"')
        and after is not None and after[0] == "lit" and after[2].startswith('"')
    )


def _generic_unquoted(tokens, index: int) -> bytes:
    # An unquoted text field at the end of the format takes the rest of the line.
    return _TOKEN if index + 1 < len(tokens) else rb"[^\n]*?"


def _request_pattern(want: set[str], seen: set[str], fields: list[str], quoted: bool,
                     quoted_field: bytes) -> bytes:
    """``%r``: the usual shape split into method/path/query, anything else whole.

    The first alternative covers ``GET /path?query HTTP/1.1`` (and HTTP/2.0,
    and HTTP/0.9 without a protocol); a request line with escapes in the path,
    ``-`` (a 408), a TLS handshake or any other shape takes the second.
    """
    names = [n for n in ("method", "path", "query", "request") if n in want and n not in seen]
    for name in names:
        seen.add(name)
    fields.extend(names)

    def group(name: str, pattern: bytes) -> bytes:
        return b"(" + pattern + b")" if name in names else pattern

    end = b'(?="' + b")" if quoted else rb"(?=[ \n]|$)"
    usual = (
        group("method", rb"[A-Z][A-Z0-9_-]*") + b" "
        + group("path", rb'[^ ?"\\\n]+')
        + group("query", rb'(?:\?[^ "\\\n]*)?')
        + rb"(?: HTTP/\d(?:\.\d)?)?" + end
    )
    other = group("request", quoted_field if quoted else rb"[^\n]*?")
    return b"(?:" + usual + b"|" + other + b")"
