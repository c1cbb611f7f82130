"""Inputs for the demo and the benchmarks: real logs, replicated or replayed, or generated ones.

* :func:`source_lines` — the three ``combined`` real logs in
  ``../shared/data/real`` (or a generated sample when that is absent).
* :func:`write_replicated` — those lines repeated to at least N lines, each
  copy's timestamps shifted by one more day, plus the counts an independent
  regex expects (:class:`InputFile`).
* :func:`distinct_url_lines` — a generated day with many distinct URLs
  (the memory run, the EOF run).
* :func:`demo_requests` — HTTP requests (path, Referer, User-Agent) taken from
  the real lines, for replaying through a real httpd.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import COMBINED_FILES, REAL_DIR

__all__ = [
    "COMBINED_RE",
    "InputFile",
    "source_lines",
    "generate_sample",
    "write_replicated",
    "distinct_url_lines",
    "demo_requests",
    "BROWSER_UA",
    "unescape",
]

#: The standard Apache combined line, written independently of logpipe's
#: LogFormat compiler (SOURCES.md's definition: ``\\"`` and ``\\\\`` allowed
#: inside quoted fields, nothing after the User-Agent).  Groups: day, status.
COMBINED_RE = re.compile(
    rb'[^ ]+ [^ ]+ .*? \[(\d\d/[A-Za-z]{3}/\d{4}):\d\d:\d\d:\d\d [+-]\d{4}\] '
    rb'"(?:[^"\\]|\\.)*" (\d{3}) (?:-|\d+) "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*"\r?'
)
_TIME_RE = re.compile(rb" \[(\d\d/[A-Za-z]{3}/\d{4}):")
_REQUEST_RE = re.compile(
    rb'\] "((?:[^"\\]|\\.)*)" (\d{3}) (?:-|\d+) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"\r?\Z'
)
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTH_NUMBER = {m.encode(): i + 1 for i, m in enumerate(_MONTHS)}

#: A desktop browser's User-Agent (a human page view for logpipe's rules).
BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")

_UAS = [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36", 30),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", 15),
    (BROWSER_UA, 10),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Safari/605.1.15", 8),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Mobile Safari/537.36", 8),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51", 5),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 6),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", 3),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)", 2),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", 2),
    ("curl/8.5.0", 1),
    ("python-requests/2.31.0", 1),
]
_REFERERS = [
    ("-", 40), ("https://www.google.com/", 15), ("https://www.google.com/search?q=apache+log+counter", 5),
    ("https://duckduckgo.com/", 4), ("https://www.bing.com/search?q=memcached+counters", 3),
    ("https://news.ycombinator.com/item?id=4242", 3), ("https://example.org/blog/", 30),
]


def unescape(raw: bytes) -> bytes:
    """Undo Apache's log escaping (``\\xhh``, ``\\"``, ``\\\\``, ``\\n`` …)."""
    if b"\\" not in raw:
        return raw
    simple = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b'"': b'"', b"\\": b"\\"}

    def one(match: re.Match) -> bytes:
        code = match.group(1)
        if len(code) == 3:
            return bytes((int(code[1:], 16),))
        return simple.get(code, b"\\" + code)

    return re.sub(rb"\\(x[0-9a-fA-F]{2}|.)", one, raw, flags=re.DOTALL)


def _parse_day(raw: bytes) -> dt.date | None:
    try:
        return dt.date(int(raw[7:11]), _MONTH_NUMBER[raw[3:6]], int(raw[0:2]))
    except (KeyError, ValueError):
        return None


def _clf_day(day: dt.date) -> bytes:
    return f"{day.day:02d}/{_MONTHS[day.month - 1]}/{day.year:04d}".encode()


def source_lines() -> tuple[list[bytes], str]:
    """The combined-format real logs, concatenated, or a generated sample.

    Returns:
        ``(lines without newlines, description)``.
    """
    if REAL_DIR.is_dir() and all((REAL_DIR / name).is_file() for name in COMBINED_FILES):
        lines: list[bytes] = []
        for name in COMBINED_FILES:
            lines.extend((REAL_DIR / name).read_bytes().splitlines())
        return lines, "real: " + " + ".join(COMBINED_FILES) + f" ({len(lines):,} lines)"
    lines = generate_sample(30_000)
    return lines, f"generated sample ({len(lines):,} lines; {REAL_DIR} is absent)"


def generate_sample(n: int, seed: int = 7, start: dt.date = dt.date(2026, 1, 5), days: int = 3) -> list[bytes]:
    """*n* synthetic combined lines over *days* days from *start*.

    About 5,000 distinct paths with Zipf-like popularity (a share of them
    static assets), a dozen User-Agents (a fifth bots), search, internal and
    external referrers, a few 404s, 304s and POSTs, some HTTP/2.0.
    """
    rng = random.Random(seed)
    pages = [f"/blog/{i}/" for i in range(2000)] + [f"/products/{i}" for i in range(1500)] + \
            [f"/tag/{w}" for w in ("python", "apache", "memcached", "linux", "logs")] + ["/", "/about", "/contact"]
    assets = [f"/static/app.{i}.js" for i in range(200)] + [f"/img/photo{i}.jpg" for i in range(1200)] + \
             ["/favicon.ico", "/robots.txt", "/static/style.css"]
    paths = pages + assets
    weights = [1.0 / (i + 1) ** 1.05 for i in range(len(paths))]
    rng.shuffle(weights)
    uas, ua_w = zip(*_UAS)
    refs, ref_w = zip(*_REFERERS)
    out = []
    seconds = days * 86400
    for i in range(n):
        t = dt.datetime.combine(start, dt.time()) + dt.timedelta(seconds=seconds * i // n)
        path = rng.choices(paths, weights)[0]
        if rng.random() < 0.1:
            path += f"?utm_source=x{rng.randrange(20)}"
        method = "POST" if rng.random() < 0.02 else "GET"
        proto = "HTTP/2.0" if rng.random() < 0.15 else "HTTP/1.1"
        roll = rng.random()
        status = 404 if roll < 0.03 else 304 if roll < 0.08 else 200
        ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        stamp = f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"
        ref = rng.choices(refs, ref_w)[0]
        ua = rng.choices(uas, ua_w)[0]
        size = rng.randrange(200, 40000)
        out.append(f'{ip} - - [{stamp}] "{method} {path} {proto}" {status} {size} "{ref}" "{ua}"'.encode())
    return out


@dataclass
class InputFile:
    """A benchmark input written by :func:`write_replicated`.

    Attributes:
        path: the file.
        lines: lines in it; ``bytes``: its size.
        replicas: copies of the source; copy *k* is shifted by *k* days.
        source: what the lines came from.
        parseable: lines the independent :data:`COMBINED_RE` accepts.
        status_counts: ``{(YYYY-MM-DD, status): n}`` those lines should produce
            (logpipe's ``status`` dimension counts every parsed request).
        days: distinct days in the file.
        sha256: of the file.
    """

    path: Path
    lines: int
    bytes: int
    replicas: int
    source: str
    parseable: int
    status_counts: dict = field(repr=False)
    days: int
    sha256: str


def write_replicated(path: Path, min_lines: int, lines: list[bytes] | None = None,
                     source: str | None = None) -> InputFile:
    """Write *lines* (default :func:`source_lines`) repeated to at least *min_lines* lines.

    Copy *k* (from 0) has every ``%t`` date moved *k* days later, so the
    copies spread over days and do not merge into the same counters.  A line
    without a recognisable date is copied unchanged (it stays a rejected line).
    """
    if lines is None:
        lines, source = source_lines()
    source = source or f"{len(lines):,} lines"
    replicas = max(1, -(-min_lines // len(lines)))
    split: list[tuple[bytes, bytes | None, bytes]] = []
    per_source: Counter = Counter()  # (date bytes, status) of parseable lines
    for line in lines:
        match = _TIME_RE.search(line)
        if match:
            split.append((line[:match.start(1)], match.group(1), line[match.end(1):]))
        else:
            split.append((line, None, b""))
        ok = COMBINED_RE.fullmatch(line)
        if ok:
            per_source[(ok.group(1), ok.group(2))] += 1
    parsed_days = {raw: _parse_day(raw) for raw, _ in per_source}
    status_counts: Counter = Counter()
    digest = hashlib.sha256()
    total = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for k in range(replicas):
            shifted: dict[bytes, bytes] = {}
            block = []
            for head, raw, tail in split:
                if raw is None:
                    block.append(head)
                    continue
                new = shifted.get(raw)
                if new is None:
                    day = _parse_day(raw)
                    new = shifted[raw] = _clf_day(day + dt.timedelta(days=k)) if day else raw
                block.append(head + new + tail)
            data = b"\n".join(block) + b"\n"
            digest.update(data)
            handle.write(data)
            total += len(block)
            for (raw, status), n in per_source.items():
                day = parsed_days[raw]
                if day is not None:
                    status_counts[((day + dt.timedelta(days=k)).isoformat(), status.decode())] += n
    return InputFile(
        path=path, lines=total, bytes=path.stat().st_size, replicas=replicas, source=source,
        parseable=sum(status_counts.values()), status_counts=dict(status_counts),
        days=len({d for d, _ in status_counts}), sha256=digest.hexdigest(),
    )


def distinct_url_lines(distinct: int, total: int, day: dt.date, seed: int = 3,
                       prefix: str = "/item/") -> list[bytes]:
    """*total* human GET page views on one *day*, over *distinct* distinct URLs.

    The first *distinct* lines visit every URL once (so all of them are
    counted), the rest pick URLs with Zipf-like popularity.
    """
    rng = random.Random(seed)
    stamp_day = _clf_day(day).decode()
    uas = [ua for ua, _ in _UAS[:6]]
    refs = ["-", "https://www.google.com/", "https://example.org/blog/"]
    out = []
    for i in range(total):
        n = i if i < distinct else min(distinct - 1, int(rng.paretovariate(1.1)) - 1)
        second = i * 86399 // max(1, total)
        stamp = f"{stamp_day}:{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d} +0000"
        out.append(
            f'10.{i % 250}.{i // 250 % 250}.{i % 199 + 1} - - [{stamp}] "GET {prefix}{n} HTTP/1.1" 200 '
            f'{1000 + n % 5000} "{refs[i % 3]}" "{uas[i % len(uas)]}"'.encode()
        )
    return out


def _encode_target(raw: bytes) -> str | None:
    """A request target safe for http.client: bytes outside printable ASCII percent-encoded."""
    if not raw.startswith(b"/"):
        return None
    out = []
    for b in raw:
        if 0x21 <= b <= 0x7E and b not in (0x22, 0x23, 0x3C, 0x3E, 0x5C, 0x5E, 0x60, 0x7B, 0x7C, 0x7D):
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def _header_value(raw: bytes) -> str | None:
    value = unescape(raw)
    if value in (b"-", b""):
        return None
    value = bytes(b for b in value if b >= 0x20 or b == 0x09)
    return value.decode("latin-1")


def demo_requests(count: int, seed: int = 11, lines: list[bytes] | None = None) -> list[tuple[str, dict, str]]:
    """*count* ``(path, headers, method)`` requests from real log lines.

    Only GET and HEAD lines with an origin-form target are used; the target
    keeps its query string, and the Referer and User-Agent headers are the
    logged ones (absent when the log had ``-``).  The sample keeps the logs'
    order and mix (a seeded random choice of lines).
    """
    if lines is None:
        lines, _ = source_lines()
    candidates = []
    for line in lines:
        match = _REQUEST_RE.search(line)
        if not match:
            continue
        parts = unescape(match.group(1)).split(b" ")
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
            continue
        target = _encode_target(parts[1])
        if target is None:
            continue
        headers = {}
        referer = _header_value(match.group(3))
        agent = _header_value(match.group(4))
        if referer is not None:
            headers["Referer"] = referer
        if agent is not None:
            headers["User-Agent"] = agent
        candidates.append((target, headers, parts[0].decode()))
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(candidates)), min(count, len(candidates))))
    return [candidates[i] for i in picked]
