"""Hostile input (issue 6): any bytes, any line length, any split into reads.

Property tests (hypothesis, no servers): the supervisor's line cutting, the worker's reads and
the counting pipeline take any bytes cut anywhere and answer with a parse or a counted
rejection for every line, never an exception, never a stuck stream, and only keys memcached
accepts.  Then a corpus of real-world junk through the real daemon into real memcached, and
hostile requests through real httpd (``@pytest.mark.faults``, with a row in the reliability
table): every resulting key accepted by memcached and readable, and two different URLs never
sharing a key.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
import urllib.parse
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from faults_report import record
from logpipe.config import Settings
from logpipe.keys import MAX_KEY_BYTES, counter_key, normalize_path
from logpipe.counting.parsing import MAX_LINE_BYTES
from logpipe.daemon.pipeline import Pipeline
from logpipe.daemon.supervisor.errlog import Limiter
from logpipe.daemon.supervisor.intake import MAX_LINE, Intake
from logpipe.daemon.supervisor.spool import Spool
from logpipe.daemon.worker import Worker
from servers import wait_for

DAY = "2026-11-21"
GOOD = b'127.0.0.1 - - [21/Nov/2026:10:00:00 +0000] "GET %s HTTP/1.1" 200 512 "%s" "%s"'
UA = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def valid_key(key: str) -> bool:
    """What memcached's text protocol accepts as a key: 1-250 bytes, no control or space."""
    raw = key.encode("ascii", "replace")
    return key.isascii() and 0 < len(raw) <= MAX_KEY_BYTES and all(0x21 <= b <= 0x7E for b in raw)


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """*data* cut into pieces of the given sizes (cycled), the last piece whatever is left."""
    pieces, position, i = [], 0, 0
    while position < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        pieces.append(data[position:position + size])
        position += size
        i += 1
    return pieces


# -- strategies -------------------------------------------------------------------------------

_no_newline = st.binary(max_size=80).map(lambda b: b.replace(b"\n", b""))
_apache_like = st.builds(
    lambda path, ref, ua, status: (b'10.0.0.1 - - [21/Nov/2026:10:00:00 +0000] "GET %s HTTP/1.1" '
                                   b'%d 5 "%s" "%s"' % (path, status, ref, ua)),
    _no_newline, _no_newline, _no_newline, st.integers(100, 599))
_escaped_like = st.builds(
    lambda path, ref, ua: GOOD % (b"/" + path, ref, ua),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass").hex().encode()),
    st.sampled_from([b"-", b"https://www.google.com/search?q=x\\xff", b"\\\"quoted\\\""]),
    st.sampled_from([UA, b"-", b"\\x00\\xff\\\\", b"curl/8.0"]))
_junk = st.sampled_from([
    b'1.2.3.4 - - [21/Nov/2026:10:00:00 +0000] "\\x16\\x03\\x01\\x02" 400 226 "-" "-"',
    b'1.2.3.4 - - [21/Nov/2026:10:00:00 +0000] "CONNECT example.com:443 HTTP/1.1" 405 0 "-" "-"',
    b'1.2.3.4 - - [21/Nov/2026:10:00:00 +0000] "PRI * HTTP/2.0" 400 0 "-" "-"',
    b'1.2.3.4 - - [21/Nov/2026:10:00:00 +0000] "-" 408 0 "-" "-"',
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)).replace(b"\n", b""),
    b"", b" ", b'"', b"\\", b"\x00" * 10,
])
LINES = st.lists(st.one_of(_apache_like, _escaped_like, _junk, _no_newline), max_size=40)
SPLITS = st.lists(st.integers(1, 97), max_size=12)


# -- the supervisor: cutting stdin into lines -------------------------------------------------


class _Input:
    """The supervisor's input side alone: the intake cutting lines into an unbounded spool."""

    def __init__(self):
        self.intake = Intake(Limiter(1e9))
        self.spool = Spool(spool_max=1 << 40, replay_max=1 << 40)

    def take(self, data: bytes) -> None:
        chunk, lines = self.intake.take(data, 0.0)
        if chunk:
            assert self.spool.add(chunk, lines)

    def eof(self) -> None:  # EOF: a last line without newline still counts
        chunk, cut = self.intake.close(eof=True)
        assert cut == 0
        if chunk:
            assert self.spool.add(chunk, 1)


def _spooled(state: _Input) -> bytes:
    return b"".join(state.spool.pending)


@settings(max_examples=300, deadline=None)
@given(LINES, SPLITS, st.booleans())
def test_supervisor_cuts_any_bytes_into_the_same_lines_whatever_the_reads(lines, sizes, final_newline):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    state = _Input()
    for piece in cut(data, sizes):
        state.take(piece)
    state.eof()
    expected = data if not data or data.endswith(b"\n") else data + b"\n"
    assert _spooled(state) == expected
    assert state.intake.lines_read == expected.count(b"\n")
    assert state.spool.lines_dropped == 0 and state.intake.too_long_lines == 0


@pytest.mark.parametrize("seed", range(4))
def test_supervisor_drops_only_the_lines_over_1_mib_and_resynchronises(seed):
    rng = random.Random(seed)
    lines = [b"a" * rng.choice([10, 4097, 100_000, MAX_LINE, MAX_LINE + 1, 3 * MAX_LINE])
             for _ in range(12)]
    data = b"\n".join(lines) + b"\n"
    state = _Input()
    position = 0
    while position < len(data):
        size = rng.choice([1, 7, 4096, 65536, 1 << 20])
        state.take(data[position:position + size])
        position += size
    state.eof()
    kept = [line for line in lines if len(line) <= MAX_LINE]
    assert _spooled(state) == b"".join(line + b"\n" for line in kept)
    assert state.intake.too_long_lines == len(lines) - len(kept)
    assert state.intake.lines_read == len(kept)


# -- the worker: reads of any size, then the pipeline -----------------------------------------




@pytest.fixture(scope="module")
def worker():
    """One worker for all examples (building its classifiers costs ~0.15 s); each example
    gives it a new data pipe and judges the differences of its counters."""
    import logpipe.daemon.worker as worker_module

    settings = Settings(memcached="127.0.0.1:1", status_dir="", log_interval=1e9,
                        count_all=True)
    one = Worker(settings, -1, -1)
    # read coalescing (a short sleep after a small read) is about CPU, not correctness: off
    delay = getattr(worker_module, "COALESCE_DELAY", None)
    if delay is not None:
        worker_module.COALESCE_DELAY = 0.0
    try:
        yield one
    finally:
        if delay is not None:
            worker_module.COALESCE_DELAY = delay
        one.store.close()


def _totals(pipeline: Pipeline) -> tuple[int, int, int]:
    return (pipeline.lines, sum(pipeline.classifier.stats.values()),
            sum(pipeline.rejected.values()))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lines=LINES, sizes=SPLITS, buffer_size=st.sampled_from([1 << 20, 64]))
def test_worker_reads_any_split_and_every_line_is_a_parse_or_a_counted_rejection(
        worker, lines, sizes, buffer_size):
    data = b"".join(line + b"\n" for line in lines)
    read_end, write_end = os.pipe()
    # A 64-byte read buffer: lines longer than it make it grow.
    worker.data_fd, worker._held, worker.offset = read_end, 0, 0
    worker._buffer = bytearray(buffer_size)
    lines0, outcomes0, rejected0 = _totals(worker.pipeline)
    page_views0 = worker.pipeline.classifier.stats["page view"]
    try:
        for piece in cut(data, sizes):
            os.write(write_end, piece)
            assert not worker._read()
        os.close(write_end)
        write_end = -1
        for _ in range(len(data) + 1):  # a small buffer leaves data in the pipe
            if worker._read():
                break
        else:
            raise AssertionError("EOF must end the stream")
        counts, appends = worker.pipeline.to_keys(worker.pipeline.take())
        lines1, outcomes1, rejected1 = _totals(worker.pipeline)
        assert lines1 - lines0 == len(lines)
        assert (outcomes1 - outcomes0) + (rejected1 - rejected0) == len(lines)
        assert all(valid_key(k) for k in counts), [k for k in counts if not valid_key(k)]
        assert all(valid_key(k) for k in appends), [k for k in appends if not valid_key(k)]
        assert sum(counts[k] for k in counts if ":url:" in k) == \
            worker.pipeline.classifier.stats["page view"] - page_views0
        assert worker.offset == len(data)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline(Settings(status_dir="", count_all=True))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=300), max_size=30))
def test_pipeline_takes_any_bytes(pipeline, lines):
    lines = [line.replace(b"\n", b"") for line in lines]
    before = _totals(pipeline)
    pipeline.feed(b"".join(line + b"\n" for line in lines))
    counts, appends = pipeline.to_keys(pipeline.take())
    after = _totals(pipeline)
    assert after[0] - before[0] == len(lines)
    assert (after[1] - before[1]) + (after[2] - before[2]) == len(lines)
    assert all(valid_key(k) for k in [*counts, *appends])


@pytest.mark.parametrize("shape", [
    b'"' * 100_000,
    b'\\"' * 50_000,
    b'" "' * 33_000,
    b"\\" * 100_001,
    b"a " * 50_000,
    GOOD % (b"/" + b"\\x41" * 30_000, b"-", b"\\" * 1000 + b'"'),
    b'1.2.3.4 - - [21/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "' + b'\\"' * 40_000,
])
def test_no_catastrophic_backtracking_on_100_kb_lines(shape):
    pipeline = Pipeline(Settings(status_dir="", count_all=True))  # every dimension
    chunk = b"".join((shape + b"\n", GOOD % (b"/after", b"-", UA) + b"\n") * 3)
    began = time.monotonic()
    pipeline.feed(chunk)
    counts, _ = pipeline.to_keys(pipeline.take())
    assert time.monotonic() - began < 2.0
    assert pipeline.lines == 6
    assert counts.get(counter_key(DAY, "url", "/after")) == 3


def test_lines_over_4_kib_interleaved_mid_line_cost_only_themselves():
    """httpd writes a line over PIPE_BUF (4096) in pieces that other children's lines may
    split: the torn lines are rejected (counted), the lines around them are counted."""
    long_a = GOOD % (b"/long-a", b"-", b"A" * 6000)
    short_b = GOOD % (b"/short-b", b"-", UA)
    torn = long_a[:4096] + short_b + b"\n" + long_a[4096:] + b"\n"
    before = GOOD % (b"/before", b"-", UA) + b"\n"
    after = GOOD % (b"/after", b"-", UA) + b"\n"
    pipeline = Pipeline(Settings(status_dir="", count_all=True))
    pipeline.feed(before + torn + after)
    counts, _ = pipeline.to_keys(pipeline.take())
    urls = {k.rsplit(":", 1)[1]: n for k, n in counts.items() if ":url:" in k}
    assert urls.get("/before") == 1 and urls.get("/after") == 1
    assert "/long-a" not in urls  # torn: rejected ("truncated")
    assert urls.get("/short-b", 0) <= 1  # whole inside the torn line: recovered (or rejected)
    assert pipeline.lines == 4
    assert sum(pipeline.rejected.values()) + sum(pipeline.classifier.stats.values()) == 4


# -- a corpus of real-world junk through the real daemon ---------------------------------------


def _corpus() -> tuple[bytes, Counter]:
    """(the log, the url counts an exact logpipe makes of it)."""
    expected: Counter = Counter()
    out = []

    def good(path: bytes, n: int = 1, ref: bytes = b"-", ua: bytes = UA) -> None:
        for _ in range(n):
            out.append(GOOD % (path, ref, ua) + b"\n")
        expected[normalize_path(re.sub(rb"\\x([0-9a-f]{2})",
                                       lambda m: bytes([int(m.group(1), 16)]), path))] += n

    prefix = b'1.2.3.4 - - [21/Nov/2026:10:00:00 +0000] '
    good(b"/ok/1", 5)
    out.append(prefix + b'"\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03" 400 226 "-" "-"\n')
    out.append(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x1f\x00\xff\r\x00\x00\n")
    good(b"/ok/2", 3)
    out.append(prefix + b'"CONNECT example.com:443 HTTP/1.1" 405 0 "-" "-"\n')
    expected["/ok/never"] += 0
    out.append(prefix + b'"PRI * HTTP/2.0" 400 0 "-" "-"\n')
    out.append(prefix + b'"GET /nul\x00byte HTTP/1.1" 200 5 "-" "\x00\x00"\n')
    out.append(b"\x00" * 300 + b"\n")
    good(b"/ok/100kb", 2, ua=b"Mozilla/5.0 " + b"\\xff" * 25_000)  # a 100 KB line, counted
    out.append(GOOD % (b"/toolong", b"-", b"x" * (MAX_LINE_BYTES + 10)) + b"\n")  # rejected
    long_a = GOOD % (b"/long-a", b"-", b"A" * 6000)
    torn_b = GOOD % (b"/torn-b", b"-", UA)
    out.append(long_a[:4096] + torn_b + b"\n" + long_a[4096:] + b"\n")  # interleaved > 4 KiB
    # invalid UTF-8 (raw, as a non-Apache writer might log it) in every field
    out.append(b'\xff\xfe - \xc3\x28 [21/Nov/2026:10:00:00 +0000] "GET /utf\xff\xfe8 HTTP/1.1" 200 '
               b'5 "http://\xe2\x82/\xf0\x28\x8c\x28" "\xc0\xaf\xed\xa0\x80"\n')
    expected[normalize_path(b"/utf\xff\xfe8")] += 1
    good(b"/caf\\xc3\\xa9/", 2)  # escaped by Apache: /caf%C3%A9
    good(b"/%0d%0aset%20x%200%200%201", 2)  # CRLF injection attempt, still percent-encoded
    good(b"/ok/3", 4)
    out.append(GOOD % (b"/ok/last-no-newline", b"-", UA))  # EOF without a newline: counted
    expected["/ok/last-no-newline"] += 1
    return b"".join(out), expected


def _metadump(memcached) -> list[str]:
    """Every key memcached holds (lru_crawler metadump), decoded."""
    text = memcached.command(b"lru_crawler metadump all", b"END\r\n", timeout=10).decode("ascii")
    return [urllib.parse.unquote(line.split()[0][4:]) for line in text.splitlines()
            if line.startswith("key=")]


def _readable(memcached, keys: list[str]) -> list[str]:
    """Keys for which ``mg KEY v`` does not answer with a value."""
    bad = []
    for key in keys:
        reply = memcached.command(f"mg {key} v".encode("ascii"))
        if not reply.startswith(b"VA "):
            bad.append(key)
    return bad


@pytest.mark.faults
def test_junk_corpus_through_the_daemon(logpipe_bin, memcached, tmp_path):
    started = time.monotonic()
    data, expected = _corpus()
    proc = subprocess.Popen([logpipe_bin, "--memcached", memcached.spec, "--status-dir",
                             str(tmp_path / "status"), "--count-all", "--flush-interval", "0.1",
                             "--log-interval", "0"],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    rng = random.Random(1)
    position = 0
    while position < len(data):  # arbitrary writes: the reads split lines anywhere
        size = rng.choice([1, 13, 4095, 4097, 65536])
        proc.stdin.write(data[position:position + size])
        proc.stdin.flush()
        position += size
    proc.stdin.close()
    assert proc.wait(30) == 0
    stderr = proc.stderr.read().decode("utf-8", "replace")
    assert "Traceback" not in stderr and "worker failed" not in stderr, stderr
    assert "rejected a line" in stderr  # reported
    store = __import__("logpipe.daemon.store", fromlist=["CounterStore"]).CounterStore(
        [("127.0.0.1", memcached.port)])
    keys = {counter_key(DAY, "url", path): n for path, n in expected.items() if n}
    got = store.get_counts(list(keys))
    store.close()
    assert got == keys
    dumped = _metadump(memcached)
    assert dumped and all(valid_key(k) for k in dumped), [k for k in dumped if not valid_key(k)]
    assert all(k.startswith("logpipe:") for k in dumped)
    assert _readable(memcached, dumped) == []
    dry = subprocess.run([logpipe_bin, "--dry-run", "--count-all"], input=data,
                         capture_output=True, timeout=60)
    summary = {k.decode(): int(v) for k, v in re.findall(
        rb"^(lines read|page views|not page views|rejected) +(\d+)", dry.stdout, re.M)}
    lines = data.count(b"\n") + 1  # the last one has no newline
    assert summary["lines read"] == lines, summary
    # every line is an outcome: a page view (--count-all), not a page view, or rejected
    assert summary["page views"] + summary["not page views"] + summary["rejected"] == lines
    # the daemon counted exactly what --dry-run (same rules, no server) calls page views
    store = __import__("logpipe.daemon.store", fromlist=["CounterStore"]).CounterStore(
        [("127.0.0.1", memcached.port)])
    url_keys = [k for k in dumped if ":url:" in k and "#index." not in k]
    counted = sum(store.get_counts(url_keys).values())
    store.close()
    assert counted == summary["page views"], (counted, summary)
    record("junk corpus (TLS, CONNECT, PRI, NUL, 100 KB, torn >4 KiB, bad UTF-8, no final "
           "newline) into the daemon", sent=lines, failed=0, logged=lines, counted=counted,
           lost=lines - counted - summary["rejected"] - summary["not page views"], double=0,
           reported=summary["rejected"],
           notes=f"{counted} page views counted (= --dry-run's; the {sum(keys.values())} known "
                 f"ones exactly); {summary['not page views']} not page views (CONNECT, PRI); "
                 f"{summary['rejected']} rejected and reported; {len(dumped)} keys, all valid "
                 "and readable", seconds=time.monotonic() - started)


# -- hostile URLs through real httpd -----------------------------------------------------------

HOSTILE_TARGETS = [
    b"/" + b"x" * 3000,                       # far over a key: a digest ("File name too long")
    b"/plain",
    b"/Plain",
    b"/caf%C3%A9",
    b"/caf\xc3\xa9",                          # raw UTF-8: Apache logs it as \xc3\xa9
    b"/\xff\xfe\xfd",                         # invalid UTF-8, raw
    b"/%ff%fe",
    b"/%0d%0aset%20k%200%200%201%0d%0a",      # memcached protocol injection attempt
    b"/%20space%20",
    b"/a%00b",
    b"/tab%09here",
    b"/#not-a-fragment",
    b"/a:b:c",
    b"/%25",
    b"/~user",
    b"/" + b"k" * 226,                        # the longest value that fits a key verbatim
    b"/" + b"k" * 227,                        # one byte more: a digest
    b"/<script>alert(1)</script>",
    b"/..%2f..%2fetc%2fpasswd",
    b"/\"quote\\backslash",
    b"/a\\x41",                              # a literal backslash: not an escape...
    b"/aA",                                   # ... so not the same key as this one
    b"http://example.com/absolute-form",
    b"*",
]

JUNK_REQUESTS = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(200)),  # TLS on port 80
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET /nul\x00byte HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /two spaces HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"\r\n\r\n",
    b"GARBAGE\r\n\r\n",
]

_LOGGED_REQUEST = re.compile(rb'\] "((?:[^"\\]|\\.)*)" (\d{3}) ')


def _unescape(raw: bytes) -> bytes:
    """Undo Apache's log escaping (written here, independently of logpipe.counting.parsing)."""
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i:i + 2] == b"\\x" and re.fullmatch(rb"[0-9a-fA-F]{2}", raw[i + 2:i + 4]):
            out.append(int(raw[i + 2:i + 4], 16))
            i += 4
        elif raw[i:i + 1] == b"\\" and i + 1 < len(raw):
            out += {b"n": b"\n", b"r": b"\r", b"t": b"\t"}.get(raw[i + 1:i + 2], raw[i + 1:i + 2])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def _expected_urls(truth: bytes) -> tuple[Counter, int]:
    """url value -> count for lines whose request line is METHOD SP /path SP HTTP/x, and the
    number of other lines (not counted by any rule)."""
    counts: Counter = Counter()
    other = 0
    for line in truth.splitlines():
        m = _LOGGED_REQUEST.search(line)
        request = _unescape(m.group(1)) if m else b""
        parts = request.split(b" ")
        if (len(parts) == 3 and re.fullmatch(rb"[A-Z][A-Z0-9_-]*", parts[0])
                and re.fullmatch(rb"HTTP/\d(\.\d)?", parts[2])):
            target = parts[1].split(b"?")[0]
            if target.startswith((b"http://", b"https://")):
                target = b"/" + target.split(b"/", 3)[3] if target.count(b"/") >= 3 else b"/"
            if target.startswith(b"/"):
                counts[normalize_path(target)] += 1
                continue
        other += 1
    return counts, other


@pytest.mark.faults
def test_hostile_urls_through_httpd_give_valid_distinct_readable_keys(
        apache_factory, memcached, logpipe_bin, tmp_path):
    started = time.monotonic()
    truth = tmp_path / "truth.log"
    status = tmp_path / "status"
    apache = apache_factory(
        [f'CustomLog "|{logpipe_bin} --memcached {memcached.spec} --status-dir {status} '
         f'--count-all --flush-interval 0.2 --log-interval 0" combined',
         f'CustomLog "{truth}" combined'],
        "LimitRequestLine 16384\n")
    sent = failed = 0
    # target i is sent i + 1 times: if two targets shared a key, its count would be a sum
    for i, target in enumerate(HOSTILE_TARGETS):
        for _ in range(i + 1):
            reply = apache.raw_request(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n"
                                       b"Referer: http://ref.example/\xff\xfe?q=a b\r\n"
                                       b"User-Agent: Mozilla/5.0 \xc3\x28 \x80\r\n"
                                       b"Connection: close\r\n\r\n")
            sent += 1
            failed += not reply.startswith(b"HTTP/1.1 2")
    for request in JUNK_REQUESTS:
        apache.raw_request(request, timeout=2)
        sent += 1
        failed += 1  # none of them is a request httpd can serve
    wait_for(lambda: truth.exists() and truth.read_bytes().count(b"\n") >= sent - 2, timeout=10)
    apache.stop()
    logged = truth.read_bytes()
    expected, other = _expected_urls(logged)
    day = time.strftime("%Y-%m-%d")
    keys = {counter_key(day, "url", path): n for path, n in expected.items() if n}
    from logpipe.daemon.store import CounterStore

    store = CounterStore([("127.0.0.1", memcached.port)])
    got = store.get_counts(list(keys))
    store.close()
    distinct_targets = {normalize_path(_unescape(t)) for t in HOSTILE_TARGETS if t.startswith(b"/")}
    assert len(keys) >= len(distinct_targets) - 1  # "/a%00b" may be refused by httpd
    assert got == keys, {k: (n, got.get(k)) for k, n in keys.items() if got.get(k) != n}
    dumped = _metadump(memcached)
    assert all(valid_key(k) for k in dumped), [k for k in dumped if not valid_key(k)]
    assert all(k.startswith("logpipe:") for k in dumped), dumped
    assert _readable(memcached, dumped) == []
    errors = apache.error_log_text()
    assert "Traceback" not in errors and "worker failed" not in errors
    lines = logged.count(b"\n")
    record("hostile URLs, headers and junk requests through httpd (all dimensions)", sent=sent,
           failed=failed, logged=lines, counted=sum(got.values()), lost=0, double=0,
           reported=other,
           notes=f"{len(keys)} URL keys, each its own count; {len(dumped)} keys in memcached, "
                 f"all valid and readable; {other} junk lines rejected",
           seconds=time.monotonic() - started)


@pytest.mark.faults
def test_100_kb_lines_through_httpd(apache_factory, memcached, logpipe_bin, tmp_path):
    """httpd logs a header byte >= 0x80 as 4 bytes (\\xhh): a 25 KB User-Agent makes a 100 KB
    line, counted; a 40 KB one a 160 KB line, over the parser's 128 KB.
    Every dimension is on: the 25 KB agent is classified too (on its first 512 characters)."""
    started = time.monotonic()
    truth = tmp_path / "truth.log"
    apache = apache_factory(
        [f'CustomLog "|{logpipe_bin} --memcached {memcached.spec} --status-dir '
         f'{tmp_path / "status"} --count-all --log-interval 0" combined',
         f'CustomLog "{truth}" combined'],
        "LimitRequestFieldSize 65536\n")
    sizes = {b"/ua-100kb": 25_000, b"/ua-160kb": 40_000, b"/ua-short": 10}
    failed = 0
    for path, size in sizes.items():
        for _ in range(3):
            reply = apache.raw_request(b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n"
                                       b"User-Agent: " + b"\xff" * size + b"\r\n"
                                       b"Connection: close\r\n\r\n")
            failed += not reply.startswith(b"HTTP/1.1 2")
    apache.stop()
    logged = truth.read_bytes().splitlines()
    lengths = sorted({len(line) // 1000 for line in logged})
    assert failed == 0 and len(logged) == 9, lengths
    from logpipe.daemon.store import CounterStore

    store = CounterStore([("127.0.0.1", memcached.port)])
    day = time.strftime("%Y-%m-%d")
    got = {p: store.get_counts([counter_key(day, "url", p.decode())]) for p in sizes}
    store.close()
    counted = {p.decode(): sum(g.values()) for p, g in got.items()}
    errors = apache.error_log_text()
    too_long = errors.count("rejected a line (too long")
    assert counted["/ua-100kb"] == 3 and counted["/ua-short"] == 3, counted
    # over MAX_LINE_BYTES: the parser's fast path counts it, its slow path rejects it as
    # "too long" (reported): either way each line is accounted for once
    assert counted["/ua-160kb"] + too_long == 3, (counted, too_long)
    record("100 KB and 160 KB log lines through httpd", sent=9, failed=failed, logged=9,
           counted=sum(counted.values()), lost=0, double=0, reported=too_long,
           notes=f"100 KB lines counted; of the 160 KB ones (over the parser's 128 KB), "
                 f"{counted['/ua-160kb']} counted and {too_long} rejected as too long",
           seconds=time.monotonic() - started)


def test_a_long_user_agent_does_not_stall_counting():
    from logpipe.counting.useragents import UserAgentClassifier

    classifier = UserAgentClassifier()
    began = time.monotonic()
    classifier.classify("Mozilla/5.0 " + "x" * 8180)  # httpd's default LimitRequestFieldSize
    assert time.monotonic() - began < 0.5


def test_urls_with_a_backslash_keep_their_own_key():
    # what httpd logs for GET /a\x41, GET /aA and GET /a\b (a literal backslash is logged as \\)
    lines = [GOOD % (b"/a\\\\x41", b"-", UA), GOOD % (b"/aA", b"-", UA), GOOD % (b"/a\\\\b", b"-", UA)]
    pipeline = Pipeline(Settings(status_dir="", count_all=True, dimensions="url"))
    pipeline.feed(b"".join(line + b"\n" for line in lines))
    counts, _ = pipeline.to_keys(pipeline.take())
    assert sorted(counts) == sorted(counter_key(DAY, "url", normalize_path(p))
                                    for p in (b"/a\\x41", b"/aA", b"/a\\b"))
