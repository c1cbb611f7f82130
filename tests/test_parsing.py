"""LogFormat compilation and line parsing (logpipe.counting.logformat, logpipe.counting.parsing).

Rules come from mod_log_config's format directives and ap_escape_logitem
(httpd server/util.c): quoted fields escape '"' and '\\' and every byte
outside printable ASCII as \\xhh.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logpipe.config import Settings
from logpipe.counting.logformat import NICKNAMES, UnsupportedFormat, compile_format, tokenize
from logpipe.counting.parsing import LineParser, check_format, day_from_clf, reject_reason, split_request, unescape
from logpipe.daemon.pipeline import Pipeline

COMBINED = NICKNAMES["combined"]
LINE = (b'203.0.113.9 - alice [21/Nov/2026:10:11:12 +0530] "GET /blog/1/?page=2 HTTP/2.0" 200 5120 '
        b'"https://www.google.com/search?q=x" "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"')


def parse(fmt, line, capture=None):
    parser = LineParser(fmt, capture)
    parsed = parser.parse_line(line)
    return None if parsed is None else dict(zip(parser.fields, parsed))


def test_tokenize_separates_literals_and_directives():
    assert tokenize('%h "%{Referer}i" %>s%%') == [
        ("h", None, ""), ("lit", None, ' "'), ("i", "Referer", ""), ("lit", None, '" '), ("s", None, ">"),
        ("lit", None, "%")]


def test_combined_fields():
    fields = parse("combined", LINE)
    assert fields == {
        "ip": b"203.0.113.9", "day": b"21/Nov/2026", "hour": b"10", "method": b"GET", "path": b"/blog/1/",
        "query": b"?page=2", "request": None, "status": b"200",
        "referer": b"https://www.google.com/search?q=x",
        "user_agent": b"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
    }


def test_http2_request_line_keeps_the_path_clean():
    # apache-log-parser issue #22 puts " HTTP/2.0" into the path.
    assert parse("combined", LINE)["path"] == b"/blog/1/"


def test_escaped_quote_and_backslash_inside_quoted_fields():
    line = (b'1.2.3.4 - - [21/Nov/2026:10:11:12 +0000] "GET / HTTP/1.1" 200 1 "-" '
            b'"Bot \\"quoted\\" and \\\\ backslash"')
    assert parse("combined", line)["user_agent"] == b'Bot \\"quoted\\" and \\\\ backslash'
    assert unescape(b'Bot \\"quoted\\" and \\\\ backslash') == b'Bot "quoted" and \\ backslash'


def test_request_line_with_escapes_goes_through_the_slow_split():
    line = b'1.2.3.4 - - [21/Nov/2026:10:11:12 +0000] "GET /caf\\xc3\\xa9 HTTP/1.1" 200 1 "-" "-"'
    fields = parse("combined", line)
    assert fields["method"] is None and fields["request"] == b"GET /caf\\xc3\\xa9 HTTP/1.1"
    assert split_request(fields["request"]) == (b"GET", b"/caf\xc3\xa9", b"")


@pytest.mark.parametrize("request_line, expected", [
    (b"-", None),                                   # 408: no request line
    (b"\\x16\\x03\\x01\\x02", None),                # TLS handshake on a plain port
    (b"GET /x HTTP/1.1 extra", None),
    (b"get /x HTTP/1.1", None),
    (b"GET /x", (b"GET", b"/x", b"")),              # HTTP/0.9
    (b"PRI * HTTP/2.0", (b"PRI", b"*", b"")),
    (b"CONNECT example.com:443 HTTP/1.1", (b"CONNECT", b"example.com:443", b"")),
    (b"GET /a?b=\\\"c HTTP/1.1", (b"GET", b"/a", b'?b="c')),
])
def test_split_request(request_line, expected):
    assert split_request(request_line) == expected


def test_vhost_combined_site_and_common():
    line = b'www.example.org:443 ' + LINE.split(b' "https')[0]
    assert parse("vhost_combined", line + b' "-" "-"')["site"] == b"www.example.org"
    assert parse("common", LINE.split(b' "https')[0])["status"] == b"200"


def test_combinedio_and_custom_formats():
    line = LINE + b" 312 5400"
    assert parse("combinedio", line)["status"] == b"200"
    fmt = '%a %{c}a %u %t "%m %U%q %H" %>s %D %{ms}T "%{Referer}i" "%{User-Agent}i" %{X-Forwarded-For}i %X'
    custom = (b'10.0.0.1 10.0.0.2 - [21/Nov/2026:10:11:12 +0000] "POST /form?x=1 HTTP/1.1" 302 1234 1 '
              b'"-" "curl/8" 198.51.100.7 +')
    fields = parse(fmt, custom)
    assert (fields["ip"], fields["method"], fields["path"], fields["query"], fields["status"]) == (
        b"10.0.0.1", b"POST", b"/form", b"?x=1", b"302")


def test_user_name_with_a_space_still_parses():
    line = LINE.replace(b" alice ", b" alice smith ")
    assert parse("combined", line)["path"] == b"/blog/1/"


def test_unsupported_directive_falls_back_to_apache_log_parser():
    with pytest.raises(UnsupportedFormat):
        compile_format('%h %{%Y-%m-%d}t "%r" %>s')
    parser = LineParser('%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %{SSL_PROTOCOL}Z')
    assert parser.fallback  # %Z is not a directive the compiler knows


def test_check_format_names_why_no_parser_reads_a_format():
    check_format("combined")
    check_format('%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %{SSL_PROTOCOL}Z')  # the fallback's
    with pytest.raises(UnsupportedFormat, match=r"%\{%Y-%m-%d\}t.*apache-log-parser cannot read it either"):
        check_format('%h %{%Y-%m-%d}t "%r" %>s')


@pytest.mark.parametrize("raw, day", [
    (b"21/Nov/2026", "2026-11-21"), (b"01/Jan/1999", "1999-01-01"), (b"32/Foo/2026", None), (b"xx/Nov/2026", None)])
def test_day_from_clf(raw, day):
    assert day_from_clf(raw) == day


def test_scan_reports_bad_lines_and_keeps_the_good_ones():
    chunk = b"\n".join([LINE, b"garbage", b"", LINE[:60], LINE, b"\x16\x03\x01\x00\xff junk", b"x" * 200_000]) + b"\n"
    tuples, rejected = LineParser("combined").scan(chunk)
    assert len(tuples) == 2
    assert [reason for reason, _ in rejected] == ["format", "empty", "truncated", "binary", "too long"]


def test_reject_reason_names():
    assert reject_reason(b"\x16\x03\x01") == "binary"
    assert reject_reason(b"a" * 200_000) == "too long"
    assert reject_reason(LINE[:80]) == "truncated"
    assert reject_reason(LINE[:80], expected_quotes=2) == "format"


@pytest.mark.parametrize("name, fmt", [
    ("elastic-examples-apache_logs.log", "combined"),
    ("1geek0-weblog-access.log", "combined"),
    ("nielsbasjes-logparser-hackers-access.log", "combined"),
    ("dmjacas-logs-other_vhosts_access.log", "vhost_combined"),
])
def test_fast_parser_and_apache_log_parser_agree_on_real_logs(real_logs_dir, name, fmt):
    """DESIGN.md §2: hold the compiled regex and the fallback to the same answers.

    apache-log-parser matches quoted fields with `.*?`, so a `\\"` inside a
    field ends it early (a known trap, reference/libraries.md §2); lines with
    an escaped quote are compared separately and excluded from the equality.
    """
    data = (real_logs_dir / name).read_bytes()
    plain = b"".join(l for l in data.splitlines(keepends=True) if b'\\"' not in l)
    settings = Settings(format=fmt, count_all=True, dimensions="url,status,notfound,post_ip")
    results = []
    for fallback in (False, True):
        pipeline = Pipeline(settings, force_fallback=fallback)
        pipeline.feed(plain)
        results.append((Counter(pipeline.take()), pipeline.lines, sum(pipeline.rejected.values())))
    (fast, fast_lines, fast_rejected), (slow, slow_lines, slow_rejected) = results
    assert fast_lines == slow_lines == plain.count(b"\n")
    assert fast_rejected == slow_rejected
    assert fast == slow
    assert sum(n for (d, dim, s, v), n in fast.items() if dim == "status") == fast_lines - fast_rejected


# The chunk scan matches quoted fields loosely ([^"]*) and re-checks what it
# misses; it must give exactly what the strict per-line regex gives.
_FIELD_TEXT = st.text(alphabet='ab /"\\\x01é-', max_size=12)


def _escaped(text: str) -> bytes:
    """ap_escape_logitem: '"' and '\\' with a backslash, other bytes outside printable ASCII as \\xhh."""
    out = bytearray()
    for byte in text.encode("utf-8"):
        if byte in b'"\\':
            out += b"\\" + bytes((byte,))
        elif byte < 0x20 or byte >= 0x7F:
            out += b"\\x%02x" % byte
        else:
            out.append(byte)
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_FIELD_TEXT, _FIELD_TEXT, _FIELD_TEXT, st.booleans()), min_size=1, max_size=6))
def test_chunk_scan_equals_strict_line_parse(rows):
    lines = []
    for path, referer, agent, broken in rows:
        line = (b'1.2.3.4 - - [21/Nov/2026:10:11:12 +0000] "GET /' + _escaped(path) + b' HTTP/1.1" 200 1 "'
                + _escaped(referer) + b'" "' + _escaped(agent) + b'"')
        lines.append(line[:-1] if broken else line)  # broken: the closing quote is missing
    parser = LineParser("combined")
    body = b"\n".join(lines) + b"\n"
    strict = [parser.parse_line(line) for line in lines]
    want = Counter(tuple(b"" if v is None else v for v in t) for t in strict if t is not None)
    want_rejected = [line for line, t in zip(lines, strict) if t is None]
    # The same lines alone, and as a range of a larger buffer (Pipeline.feed's pieces).
    before, after = b"junk before\n" + LINE + b"\n", LINE + b"\njunk after\n"
    for chunk, start, end in ((body, 0, len(body)), (before + body + after, len(before), len(before) + len(body))):
        tuples, rejected = parser.scan(chunk, start, end)
        assert Counter(t[:-1] for t in tuples) == want
        assert [line for _, line in rejected] == want_rejected


@pytest.mark.parametrize("cut", [b"1.2.3.4", b"1.2.3.4 -", b"1.2.3.4 - frank", b'1.2.3.4 - - [21/Nov/2026:10:11:12'])
def test_a_line_cut_inside_a_token_does_not_swallow_the_next(cut):
    # The chunk scan's tokens match [^ ]*, which can run over a newline.
    tuples, rejected = LineParser("combined").scan(b"\n".join([LINE, cut, LINE]) + b"\n")
    assert len(tuples) == 2 and [line for _, line in rejected] == [cut]


def test_a_line_without_its_closing_quote_does_not_swallow_the_next():
    broken = LINE[:-1]  # the User-Agent's closing quote is missing
    tuples, rejected = LineParser("combined").scan(b"\n".join([broken, LINE, LINE]) + b"\n")
    assert len(tuples) == 2 and [line for _, line in rejected] == [broken]
