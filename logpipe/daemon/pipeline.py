"""The counting pipeline: buffers of lines in, memcached increments out.

Shared by the worker (live, flushing every interval) and ``--dry-run`` (one
batch at the end).  Per buffer it does one regex scan and one C-level count of
identical line keys (the fields but the User-Agent, plus the agent's
classification: :meth:`~logpipe.counting.classify.Classifier.line_keys`); it classifies
each distinct key once, when :data:`RAW_LIMIT` of them are held, when the
worker is idle or at the flush, and turns the result into keys
(:func:`logpipe.keys.counter_key`).
"""

from __future__ import annotations

import gc
import operator
from collections import Counter
from itertools import compress
from typing import Callable

from logpipe.counting.classify import REJECTED, Classifier, needed_fields
from logpipe.config import Settings
from logpipe.keys import MAX_KEY_BYTES, encode_value, index_suffix, key_head
from logpipe.counting.parsing import LineParser, split_request

try:  # the C helper behind Counter.update(iterable)
    from _collections import _count_elements
except ImportError:  # pragma: no cover - other Pythons
    from collections import _count_elements  # type: ignore[attr-defined]

__all__ = ["Pipeline", "RAW_LIMIT"]

#: Bytes scanned at a time.  The objects made for a 1 MiB read (about 40,000
#: per 4,000 lines) outgrow the CPU caches and the allocator's free arenas;
#: in pieces of 256 KiB the same feed took 9 % less CPU time (bench/PROFILE.md).
FEED_PIECE = 256 << 10
#: Methods of the tuples _count_posts looks at: POST, and b"" (a request line
#: of another shape, split there).
_POST_OR_OTHER = frozenset((b"POST", b""))

#: Distinct line keys held before they are classified ahead of the flush.
#: Each key holds its own copy of the path and Referer bytes, so a burst of
#: distinct URLs would otherwise grow memory until the next flush.
RAW_LIMIT = 10_000
#: Distinct visit keys (unique visitors) held before they are judged: each
#: keeps its line's address, User-Agent and path bytes alive.
VISITS_LIMIT = 2_000


class Pipeline:
    """Parse, classify and aggregate; no I/O.

    Args:
        settings: parsing and counting options.
        force_fallback: parse with apache-log-parser (tests).
        local_visitors: count ``visitors`` exactly in this process
            (:class:`~logpipe.counting.visitors.LocalVisitors`: dry-run,
            rollup); False leaves the visits to :meth:`take_visits` (the
            worker's memcached markers).

    Attributes:
        lines: lines fed so far; ``rejected``: Counter of unparseable lines
            by reason; ``classifier.stats``: outcomes of parsed lines.
    """

    def __init__(self, settings: Settings, *, force_fallback: bool = False, local_visitors: bool = True):
        self.settings = settings
        self.parser = LineParser(settings.format, needed_fields(settings), force_fallback=force_fallback)
        self.classifier = Classifier(settings, self.parser.fields)
        self.raw: dict[tuple, int] = {}
        self._classified: dict[tuple, int] = {}
        self.posts: dict[tuple[bytes, bytes, bytes], int] = {}
        # post_ip: the main tuples carry the client IP and hour, which the
        # classifier leaves out of its line keys (Classifier.line_keys).
        fields = self.parser.fields
        self._post_fields = None
        if "post_ip" in settings.dimension_set() and {"ip", "day", "hour"} <= set(fields):
            self._post_fields = (
                operator.itemgetter(fields.index("method")) if "method" in fields else None,
                fields.index("request") if "request" in fields else None,
                operator.itemgetter(fields.index("day"), fields.index("hour"), fields.index("ip")),
            )
        self.visits = None
        self.visitors = None
        if "visitors" in settings.dimension_set():
            from logpipe.counting.visitors import LocalVisitors, VisitCollector

            if VisitCollector.possible(fields):
                self.visits = VisitCollector(self.classifier, fields)
                if local_visitors:
                    self.visitors = LocalVisitors()
        self.lines = 0
        self.rejected: Counter = Counter()
        # day (YYYY-MM-DD) → {(day, dimension, site): values already in the index}
        self._indexed: dict[str, dict[tuple[str, str, str | None], set[int]]] = {}

    def feed(self, chunk: bytes, start: int = 0, end: int | None = None) -> list[tuple[str, bytes]]:
        """Count the complete lines in ``chunk[start:end]`` (which ends with ``\\n``).

        The range is scanned in pieces of about :data:`FEED_PIECE` bytes
        without copying them.

        Returns:
            The ``(reason, line)`` of each line that did not parse.
        """
        end = len(chunk) if end is None else end
        rejected: list[tuple[str, bytes]] = []
        # The scan makes a tuple or three per line that die within this call
        # and hold only bytes: nothing the cyclic collector could free, but
        # allocating them triggers it every 700 (~7 % of the feed's time).
        collecting = gc.isenabled()
        gc.disable()
        try:
            while start < end:
                stop = end
                if end - start > FEED_PIECE:
                    stop = chunk.rfind(b"\n", start, start + FEED_PIECE) + 1 or end
                tuples, piece_rejected = self.parser.scan(chunk, start, stop)
                self.lines += len(tuples) + len(piece_rejected)
                _count_elements(self.raw, self.classifier.line_keys(tuples))
                if self.visits is not None:
                    self.visits.note(tuples)
                if self._post_fields is not None:
                    self._count_posts(tuples)
                del tuples
                rejected += piece_rejected
                start = stop
        finally:
            if collecting:
                gc.enable()
        if len(self.raw) > RAW_LIMIT:
            self._classify_raw()
        if self.visits is not None and len(self.visits.raw) > VISITS_LIMIT:
            self.visits.resolve()
        for reason, _line in rejected:
            self.rejected[reason] += 1
        return rejected

    def held(self) -> int:
        """Distinct increments classified but not yet taken (:meth:`take`); the
        unclassified line keys are bounded by :data:`RAW_LIMIT` on their own."""
        return len(self._classified)

    def visits_held(self) -> int:
        """Distinct visits (judged or not) not yet taken (:meth:`take_visits`)."""
        return len(self.visits.raw) + len(self.visits.visits) if self.visits is not None else 0

    def rejected_counts(self) -> dict[str, int]:
        """Lines that cannot be counted, by reason: unparseable lines plus
        parsed lines rejected by the rules (:data:`logpipe.counting.classify.REJECTED`)."""
        stats = self.classifier.stats
        counts = dict(self.rejected)
        for reason in REJECTED:
            if stats.get(reason):
                counts[reason] = stats[reason]
        return counts

    def _count_posts(self, tuples: list[tuple]) -> None:
        """Count POST requests per client IP and hour (``post_ip``).

        POST lines are a small share of traffic: they are picked out in C
        (``compress`` on the method field), and only they, plus the rare
        request line of another shape (empty method), are looked at here.
        """
        method_of, i_request, post_key = self._post_fields
        if method_of is None:  # no %r split: every line has its whole request line
            candidates = tuples
        else:
            candidates = compress(tuples, map(_POST_OR_OTHER.__contains__, map(method_of, tuples)))
        posts = self.posts
        for parsed in candidates:
            method = method_of(parsed) if method_of is not None else None
            if not method:
                raw = parsed[i_request] if i_request is not None else None
                parts = split_request(raw) if raw else None
                method = parts[0] if parts else None
            if method == b"POST":
                key = post_key(parsed)
                posts[key] = posts.get(key, 0) + 1

    def take(self) -> dict[tuple, int]:
        """Classify everything fed since the last call.

        Returns:
            ``{(day, dimension, site, value): n}`` increments.
        """
        self._classify_raw()
        out, self._classified = self._classified, {}
        if self.visitors is not None:
            self.visitors.count(self.visits.take(), out)
        if self.posts:
            posts, self.posts = self.posts, {}
            for (day, hour, ip), n in posts.items():
                self.classifier.add_post(day, hour, ip, n, out)
        return out

    def take_visits(self) -> set[tuple]:
        """The distinct page-view visits since the last call (empty without ``visitors``);
        see :class:`~logpipe.counting.visitors.VisitCollector`."""
        return self.visits.take() if self.visits is not None else set()

    def _classify_raw(self) -> None:
        raw, self.raw = self.raw, {}
        self.classifier.add_counts(raw.items(), self._classified)

    def explain_line(self, line: bytes, say: Callable[[str], None]) -> dict[tuple, int]:
        """Classify one line on its own, calling *say* with each decision."""
        self.lines += 1
        parsed = self.parser.parse_line(line)
        out: dict[tuple, int] = {}
        if parsed is None:
            reason = self.parser.reason(line)
            self.rejected[reason] += 1
            say(f"rejected: {reason}")
            return out
        self.classifier.add(parsed, 1, out, say)
        if self.visits is not None:
            self.visits.note([parsed])
            taken = self.visits.take()
            if self.visitors is not None and taken:
                new = self.visitors.count(taken, out)
                say("visitor: new today" if new else "visitor: already counted today")
        if self._post_fields is not None:
            self._count_posts([tuple(b"" if v is None else v for v in parsed)])
            for (day, hour, ip), n in self.posts.items():
                self.classifier.add_post(day, hour, ip, n, out)
                say(f"post_ip {ip.decode('ascii', 'replace')}")
            self.posts = {}
        return out

    def to_keys(self, increments: dict[tuple, int]) -> tuple[dict[str, int], dict[str, list[str]]]:
        """Turn increments into memcached keys, plus index appends for new values.

        A value is appended to its day's index the first time this pipeline
        sees it (:meth:`forget_index` makes it append again, e.g. after a
        memcached restart may have lost the index).
        """
        prefix = self.settings.prefix
        counts: dict[str, int] = {}
        appends: dict[str, list[str]] = {}
        heads: dict[tuple[str, str, str | None], tuple[str, set[int]]] = {}
        for (day, dimension, site, value), n in increments.items():
            known = heads.get((day, dimension, site))
            if known is None:
                known = heads[(day, dimension, site)] = (
                    key_head(day, dimension, site, prefix), self._index_set(day, dimension, site))
            head, seen = known
            key = head + encode_value(value, MAX_KEY_BYTES - len(head))
            counts[key] = counts.get(key, 0) + n
            # hash(), not the value: an int per value seen today instead of a
            # second life for every URL string (a 64-bit collision would only
            # leave one value out of the index).
            marker = hash(value)
            if marker not in seen and dimension != "visitors":  # visitors: read through the url index
                seen.add(marker)
                appends.setdefault(head + index_suffix(value), []).append(value)
        return counts, appends

    def _index_set(self, day: str, dimension: str, site: str | None) -> set[int]:
        """``hash()`` of the values of one day, dimension and site already appended to the index."""
        days = self._indexed.get(day[:10])
        if days is None:
            days = self._indexed[day[:10]] = {}
            # Lines from three days ago no longer arrive: keep memory bounded.
            for old in sorted(self._indexed)[:-3]:
                del self._indexed[old]
        seen = days.get((day, dimension, site))
        if seen is None:
            seen = days[(day, dimension, site)] = set()
        return seen

    def forget_index(self) -> None:
        """Forget which values were appended to the indexes."""
        self._indexed.clear()
