"""Turn buffers of log lines into field tuples, and explain the lines that fail.

The hot path is :meth:`LineParser.scan`: one ``finditer`` of the compiled
LogFormat over a whole buffer, each match reduced to a tuple of bytes fields
(:attr:`LineParser.fields` order) by C code, no Python per line.  Lines that do
not match are found only when the match count falls short of the line count.

Formats the fast compiler cannot handle go through apache-log-parser instead
(slow, about 40k lines/s), whose output is mapped into the same tuples; its
known bugs (HTTP/2.0 request lines, issue #22; ``+0530`` offsets, #19) do not
matter because logpipe re-parses the request line and takes the day from the
raw ``%t`` text itself.
"""

from __future__ import annotations

import operator
import re
from typing import Iterable

from logpipe.counting.logformat import FIELDS, UnsupportedFormat, compile_format, resolve_nickname

__all__ = [
    "LineParser",
    "check_format",
    "unescape",
    "split_request",
    "day_from_clf",
    "reject_reason",
    "MAX_LINE_BYTES",
]

#: Longest line parsed.  httpd's LimitRequestLine/LimitRequestFieldSize
#: default to 8190 bytes and escaping can quadruple a byte, so a combined
#: line can reach about 100 KB (see reference/apache-piped-logs.md §1.6).
MAX_LINE_BYTES = 128 * 1024

_MONTHS = {
    b"Jan": 1, b"Feb": 2, b"Mar": 3, b"Apr": 4, b"May": 5, b"Jun": 6,
    b"Jul": 7, b"Aug": 8, b"Sep": 9, b"Oct": 10, b"Nov": 11, b"Dec": 12,
}
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"v": b"\v",
                   b'"': b'"', b"\\": b"\\"}
_LAST = operator.itemgetter(-1)
_METHOD = re.compile(rb"[A-Z][A-Z0-9_-]*\Z")
_PROTOCOL = re.compile(rb"HTTP/\d(?:\.\d)?\Z")


def unescape(raw: bytes) -> bytes:
    """Undo ``ap_escape_logitem``: ``\\xhh`` → byte, ``\\"`` → ``"``, ``\\\\`` → ``\\``, ``\\n`` …

    Source: httpd ``server/util.c`` (``ap_escape_logitem``, ``c2x_table``).
    """
    if b"\\" not in raw:
        return raw
    return _ESCAPE.sub(_unescape_one, raw)


def _unescape_one(match: re.Match) -> bytes:
    code = match.group(1)
    if len(code) == 3:
        return bytes((int(code[1:], 16),))
    return _SIMPLE_ESCAPES.get(code, b"\\" + code)


def day_from_clf(raw: bytes) -> str | None:
    """``b"17/May/2015"`` → ``"2015-05-17"``; None for an impossible date."""
    try:
        day, month, year = int(raw[0:2]), _MONTHS[raw[3:6]], int(raw[7:11])
    except (KeyError, ValueError):
        return None
    if not 1 <= day <= 31 or year < 1970:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}"


def split_request(raw: bytes) -> tuple[bytes, bytes, bytes] | None:
    """Split a logged request line (``%r``, still escaped) into method, path, query.

    Returns:
        ``(method, path, query)`` with Apache's escapes undone and the query
        including its ``?`` (``b""`` when absent), or None when the line is not
        ``METHOD SP target [SP HTTP/x.y]`` — a 408's ``-``, a TLS handshake,
        junk sent to the port.
    """
    text = unescape(raw)
    parts = text.split(b" ")
    if len(parts) == 3:
        if not _PROTOCOL.match(parts[2]):
            return None
    elif len(parts) != 2:
        return None
    method, target = parts[0], parts[1]
    if not _METHOD.match(method) or not target:
        return None
    path, mark, query = target.partition(b"?")
    return method, path, (mark + query)


def reject_reason(line: bytes, expected_quotes: int = 4) -> str:
    """Name why a line did not parse: ``too long``, ``binary``, ``truncated`` or ``format``.

    Args:
        line: the line, without its newline.
        expected_quotes: how many ``"`` the LogFormat writes per line; a line
            with fewer unescaped ones was cut short (or interleaved with
            another line over PIPE_BUF, reference/apache-piped-logs.md §1.6).
    """
    if len(line) > MAX_LINE_BYTES:
        return "too long"
    if b"\0" in line or any(b < 0x09 or 0x0E <= b < 0x20 or b >= 0x80 for b in line[:512]):
        return "binary"
    quotes = line.count(b'"') - line.count(b'\\"')
    if 0 < quotes < expected_quotes or quotes % 2:
        return "truncated"
    return "format"


def _bytes(chunk, start: int, end: int) -> bytes:
    """``chunk[start:end]`` as bytes, without a copy when it already is."""
    if type(chunk) is bytes and start == 0 and end == len(chunk):
        return chunk
    with memoryview(chunk) as view:
        return bytes(view[start:end])


def check_format(fmt: str) -> None:
    """Check that LogFormat *fmt* (or a nickname) can be parsed at all.

    Raises:
        UnsupportedFormat: neither the fast compiler nor apache-log-parser
            reads it (e.g. a custom ``%{%Y-%m-%d}t``), with both reasons.
    """
    try:
        compile_format(fmt)
    except UnsupportedFormat as first:
        try:
            LineParser(fmt, force_fallback=True)
        except UnsupportedFormat as second:
            raise UnsupportedFormat(f"{first}; {second}") from None


class LineParser:
    """Parse log lines of one LogFormat into tuples of bytes fields.

    Args:
        fmt: a LogFormat string or nickname (``combined`` …).
        capture: the field names to capture (a subset of
            :data:`logpipe.counting.logformat.FIELDS`); fewer fields, fewer distinct tuples.
        force_fallback: use apache-log-parser even when the fast compiler
            could (tests hold both to the same answers).

    Attributes:
        fields: names of the tuple's items, in order.
        fallback: True when apache-log-parser does the parsing.
    """

    def __init__(self, fmt: str, capture: Iterable[str] | None = None, *, force_fallback: bool = False):
        self.format = resolve_nickname(fmt)
        self._quotes = self.format.count('"')
        wanted = frozenset(FIELDS if capture is None else capture)
        self.fallback = force_fallback
        if not force_fallback:
            try:
                compiled = compile_format(self.format, capture=wanted)
            except UnsupportedFormat:
                self.fallback = True
        if self.fallback:
            self._init_fallback(wanted)
            return
        self.fields: tuple[str, ...] = compiled.fields
        self._chunk_regex = compiled.chunk_regex
        # The loose body with a catch-all alternative: findall returns one
        # tuple per line, a line the loose body misses as empty fields plus
        # its text last (an unmatched group is b"" with findall, not None).
        self._catch_all = re.compile(rb"^(?:" + compiled.loose_body + rb"|(.+))$", re.MULTILINE)
        self._line_regex = compiled.line_regex
        count = len(self.fields)
        if count == 0:
            self._getter = lambda m: ()
        elif count == 1:
            self._getter = lambda m: (m.group(1),)
        else:
            self._getter = operator.methodcaller("group", *range(1, count + 1))

    def scan(self, chunk: bytes, start: int = 0, end: int | None = None) -> tuple[list[tuple], list[tuple[str, bytes]]]:
        """Parse ``chunk[start:end]``, complete lines (each ending in ``\\n``).

        *chunk* may be any bytes-like buffer (the worker's reusable read
        buffer is a ``bytearray``); every field and line returned is ``bytes``.

        Fields the line does not have are ``b""`` here (``None`` from
        :meth:`parse_line`); the tuples of the fast path carry one more item
        at the end (always ``b""``).

        Returns:
            ``(tuples, rejected)``: one tuple per parsed line, and
            ``(reason, line)`` for each line that did not parse.
        """
        end = len(chunk) if end is None else end
        if self.fallback:
            return self._scan_fallback(_bytes(chunk, start, end))
        if not self.fields:  # findall would return bare strings, not tuples
            return self._scan_slow(_bytes(chunk, start, end))
        # endpos before the last newline: no empty match after it.  The
        # groups are bytes whatever the buffer's type (sre copies them out).
        tuples = self._catch_all.findall(chunk, start, end - 1)
        if len(tuples) != chunk.count(b"\n", start, end):  # an empty line, or a field ran over a newline
            return self._scan_slow(_bytes(chunk, start, end))
        if chunk.find(b"\\", start, end) >= 0 and chunk.find(b'\\"', start, end) >= 0:
            # (one byte is found far faster than two.)  The loose fields may
            # have stopped at an escaped quote: such lines go to the strict
            # re-parse below with the catch-all's.
            lines = _bytes(chunk, start, end).split(b"\n")
            empty = (b"",) * len(self.fields)
            for i in [i for i, line in enumerate(lines) if b'\\"' in line]:
                tuples[i] = empty + (lines[i],)
        if not any(map(_LAST, tuples)):
            return tuples, []
        # The loose scan's misses and the lines with an escaped quote, parsed
        # again with the strict line regex; the rest are rejected.
        parsed = [t for t in tuples if not t[-1]]
        rejected = []
        for line in [t[-1] for t in tuples if t[-1]]:
            strict = self.parse_line(line)
            if strict is None:
                rejected.append((self.reason(line), line))
            else:  # the fast path's shape: b"" for a missing field, one more item
                parsed.append(tuple(b"" if v is None else v for v in strict) + (b"",))
        return parsed, rejected

    def parse_line(self, line: bytes) -> tuple | None:
        """Parse one line (without its newline); None when it does not match."""
        if self.fallback:
            return self._parse_fallback(line)
        if len(line) > MAX_LINE_BYTES:
            return None
        match = self._line_regex.fullmatch(line)
        return self._getter(match) if match else None

    def _scan_slow(self, chunk: bytes) -> tuple[list[tuple], list[tuple[str, bytes]]]:
        # Some line did not match: walk the matches and take the gaps between
        # them (whole lines, since matches are anchored at line ends).
        tuples: list[tuple] = []
        rejected: list[tuple[str, bytes]] = []
        getter = self._getter
        position = 0
        for match in self._chunk_regex.finditer(chunk):
            start = match.start()
            if start > position:
                self._reject_gap(chunk[position:start], rejected)
            tuples.append(getter(match))
            position = match.end() + 1  # past the newline
        if position < len(chunk):
            self._reject_gap(chunk[position:], rejected)
        return tuples, rejected

    def reason(self, line: bytes) -> str:
        """Why *line* did not parse (see :func:`reject_reason`)."""
        return reject_reason(line, self._quotes) if line else "empty"

    def _reject_gap(self, gap: bytes, rejected: list[tuple[str, bytes]]) -> None:
        # A gap is whole lines, each ended by a newline.
        for line in gap.split(b"\n")[:-1]:
            rejected.append((self.reason(line), line))

    # -- apache-log-parser fallback ------------------------------------------------

    def _init_fallback(self, wanted: frozenset[str]) -> None:
        import apache_log_parser  # slow import: only for formats the compiler lacks

        # Any spelling but "User-Agent" keeps apache-log-parser from running
        # user_agents.parse() on every line (82 % of its time).
        fmt = re.sub(r"%\{User-Agent\}i", "%{User-agent}i", self.format, flags=re.I)
        try:
            self._alp = apache_log_parser.make_parser(fmt)
        except Exception as exc:  # it compiles its own regex and may fail in many ways (re.error …)
            raise UnsupportedFormat(f"apache-log-parser cannot read it either ({type(exc).__name__}: {exc})") from None
        self._alp_errors = (apache_log_parser.ApacheLogParserException, ValueError)
        self.fields = tuple(f for f in FIELDS if f in wanted and f not in ("method", "path", "query"))
        self._getter = None

    def _parse_fallback(self, line: bytes) -> tuple | None:
        try:
            values = self._alp(line.decode("latin-1"))
        except self._alp_errors:
            return None
        mapped = {
            "site": values.get("server_name") or values.get("server_name2"),
            "ip": values.get("remote_host") or values.get("remote_ip"),
            "request": values.get("request_first_line"),
            "status": values.get("status"),
            "referer": values.get("request_header_referer"),
            "user_agent": values.get("request_header_user_agent"),
        }
        received = values.get("time_received")  # "[17/May/2015:10:05:03 +0000]"
        if received and len(received) > 15:
            mapped["day"], mapped["hour"] = received[1:12], received[13:15]
        return tuple(
            None if mapped.get(name) is None else mapped[name].encode("latin-1")
            for name in self.fields
        )

    def _scan_fallback(self, chunk: bytes) -> tuple[list[tuple], list[tuple[str, bytes]]]:
        tuples: list[tuple] = []
        rejected: list[tuple[str, bytes]] = []
        for line in chunk.split(b"\n")[:-1]:
            parsed = None if len(line) > MAX_LINE_BYTES else self._parse_fallback(line)
            if parsed is None:
                rejected.append((self.reason(line), line))
            else:
                tuples.append(parsed)
        return tuples, rejected
