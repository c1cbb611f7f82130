"""Unique visitors: private identities, marker items, exact local counts.

A visitor is one (client address, User-Agent) pair per ``%t`` day and virtual
host, counted on page views only (the ``url`` rules; README, "Unique
visitors").  The :class:`~logpipe.counting.classify.Classifier` records each
distinct ``(day, site, url, address, user_agent)`` of a page view; this module
turns them into counts without ever storing the address or the User-Agent:

* Live (the worker): the identity is BLAKE2b keyed with the day's random salt
  (:func:`new_salt`, shared by every writer through the memcached item
  :func:`salt_key`, created with ``add`` so the first writer wins, kept for
  the ``--ttl``), 12 bytes.  Each identity becomes one *marker* item per day
  (``{head}#v.{identity}``) and one per day and URL (``{head}#u.{digest}``),
  created with memcached ``add`` semantics; the counter (``{head}*`` or
  ``{head}{path}``) is incremented only by the writer whose add stored the
  marker (or that took over a dead writer's), once, so a replayed line or a
  second web server can never count a visitor twice, and a crashed writer's
  visitors are still counted (:class:`MarkerMaker`, :mod:`logpipe.daemon.visitors`).
* Offline (``--dry-run``, ``logpipe rollup``): exact sets of in-process
  ``hash()`` values, no salt needed (:class:`LocalVisitors`).

Per line only C code runs (:meth:`VisitCollector.note`: ``compress``/``map``
over the parsed tuples, set and dict lookups); the rules run once per distinct
(head, day, address, User-Agent) key, and the hashing once per distinct visit
of a flush, never per line.
"""

from __future__ import annotations

import os
from itertools import compress
from operator import attrgetter, itemgetter, not_

try:  # hashlib's own BLAKE2, without loading OpenSSL (see logpipe.keys)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover
    from hashlib import blake2b

from logpipe.keys import ALL_VISITORS, MAX_KEY_BYTES, encode_value, key_head

__all__ = ["VisitCollector", "MarkerMaker", "LocalVisitors", "new_salt", "salt_key", "DIGEST_BYTES"]

#: Bytes of an identity digest: 96 bits, so 10⁶ visitors a day collide with
#: probability about 10⁻¹⁷ (birthday bound).
DIGEST_BYTES = 12
#: Bytes of a salt (the BLAKE2b key).
SALT_BYTES = 16


#: Heads known not to be page views (static, method, status …) kept for the
#: per-line filter before the set starts again.
NOT_PAGE_HEADS = 20_000
#: Per-URL counter keys kept made (each about 350 bytes with its URL) before they are made again:
#: the popular pages; more is memory (RSS at 100,000 URLs a day) for little.
URL_KEYS = 1_024
#: Distinct User-Agent strings shared by the visits held (one bytes object each).
AGENT_STRINGS = 20_000


class VisitCollector:
    """Collect the page views' ``(day, site, url, address, user_agent)`` from parsed tuples.

    Args:
        classifier: the pipeline's :class:`~logpipe.counting.classify.Classifier`;
            its head verdicts, day and User-Agent caches are shared, so the
            rules are the ``url`` dimension's, judged once per head.
        fields: the parsed tuples' field names; must hold ``ip``, ``day``
            and ``user_agent`` (:meth:`possible`).

    Attributes:
        visits: distinct visits since :meth:`take` (address and User-Agent
            as raw bytes, in memory only).
    """

    def __init__(self, classifier, fields: tuple[str, ...]):
        self.classifier = classifier
        head = classifier.head_fields
        self._n = len(head)
        if len(head) > 1:
            self._head_of = itemgetter(*head)
        elif head:
            only = head[0]
            self._head_of = lambda parsed: (parsed[only],)
        else:
            self._head_of = lambda parsed: ()
        self._key_of = itemgetter(*head, fields.index("day"), fields.index("ip"), fields.index("user_agent"))
        self._ua_of = itemgetter(fields.index("user_agent"))
        # --count-all counts bots' page views too; without it a bot never makes a visitor.
        self._agent_of = None if classifier.count_all else classifier.agent_lookup()
        self._not_page: set[tuple] = set()
        self._agents: dict[bytes, bytes] = {}
        self.raw: set[tuple] = set()
        self.visits: set[tuple] = set()

    @staticmethod
    def possible(fields: tuple[str, ...]) -> bool:
        """Whether the LogFormat logs what a visitor is made of (%h or %a, %t, User-Agent)."""
        return {"ip", "day", "user_agent"} <= set(fields)

    def note(self, tuples: list[tuple]) -> None:
        """Keep the (head, day, address, User-Agent) of each tuple that may be a page view.

        Per line only C: heads already judged not to be a page view are
        dropped, then bots (the classifier's cached User-Agent verdict).
        """
        if not tuples:
            return
        pages = list(compress(tuples, map(not_, map(self._not_page.__contains__, map(self._head_of, tuples)))))
        if self._agent_of is not None:
            bot = attrgetter("bot")
            pages = compress(pages, map(not_, map(bot, map(self._agent_of, map(self._ua_of, pages)))))
        self.raw.update(map(self._key_of, pages))

    def resolve(self) -> None:
        """Judge the keys noted since the last call and add the page views to :attr:`visits`."""
        raw, self.raw = self.raw, set()
        page_of, day_of, n = self.classifier.page_of, self.classifier.day, self._n
        not_page, agents, visits = self._not_page, self._agents, self.visits
        if len(not_page) > NOT_PAGE_HEADS:
            not_page.clear()
        if len(agents) > AGENT_STRINGS:
            agents.clear()
        for key in raw:
            head = key[:n]
            page = page_of(head)
            if page is None:
                not_page.add(head)
                continue
            raw_day, address, agent = key[n:]
            day = day_of(raw_day)
            if day is None:
                continue
            # one bytes object per distinct User-Agent in the visits held
            visits.add((day, page[0], page[1], address, agents.setdefault(agent, agent)))

    def take(self) -> set[tuple]:
        """Resolve, return the visits and start a new set."""
        self.resolve()
        visits, self.visits = self.visits, set()
        return visits


def new_salt() -> str:
    """A fresh random salt, as 32 hex digits (what the salt item holds)."""
    return os.urandom(SALT_BYTES).hex()


def salt_key(day: str, prefix: str) -> str:
    """The memcached item holding *day*'s salt: ``{prefix}:{day}:visitors:#salt``."""
    return key_head(day, "visitors", None, prefix) + "#salt"


class MarkerMaker:
    """Raw visits → marker items and the counters they stand for.

    Marker keys: ``{head}#v.{identity}`` and ``{head}#u.{digest}``, *head* the
    ``visitors`` key head of the day and site, *identity* the 24 hex digits
    of BLAKE2b-96 keyed with the day's salt over address and User-Agent,
    *digest* BLAKE2b-96 of the identity and the URL (so URLs of one visitor
    cannot be linked without the salt either).

    Args:
        prefix: the key prefix (``--prefix``).
        per_url: also make per-URL markers (``visitors:{path}`` counters).
    """

    def __init__(self, prefix: str, per_url: bool = True):
        self.prefix = prefix
        self.per_url = per_url
        # (day, site) → (counter head, site counter, marker prefixes, salt)
        self._heads: dict[tuple, tuple] = {}
        # (counter head, url) → (per-URL counter key, URL bytes)
        self._urls: dict[tuple, tuple[str, bytes]] = {}
        self._salted: tuple = ()

    def markers(self, visits, salts: dict[str, bytes], known=None, known_visitors=None) -> tuple[dict[str, str], set]:
        """Hash *visits* with their day's salt.

        Args:
            visits: ``(day, site, url, address bytes, user_agent bytes)`` tuples.
            salts: ``{day: salt bytes}``; a visit whose day has none is left over.
            known: an ``array('q')`` whose length is a power of two: a
                direct-mapped cache of the ``hash()`` of visits already made
                into markers (slot ``hash & (len - 1)``).  Those are skipped,
                and the others written in; a visit pushed out by another is
                only sent again (memcached answers that its marker exists).
            known_visitors: the same for ``(day, site, address, user_agent)``:
                a returning visitor's site-wide marker is not sent again.

        Returns:
            ``({marker key: counter key}, visits left over)``.
        """
        out: dict[str, str] = {}
        left = set()
        idents: dict[tuple, bytes] = {}  # (day, site, address, agent) → identity, this call
        heads, urls = self._heads, self._urls
        salted = tuple(salts.items())
        if salted != self._salted or len(heads) > 1000:  # a new salt (memcached restarted?)
            heads.clear()
            self._salted = salted
        if len(urls) > URL_KEYS:
            urls.clear()
        per_url = self.per_url
        mask = len(known) - 1 if known is not None else -1
        visitor_mask = len(known_visitors) - 1 if known_visitors is not None else -1
        for visit in visits:
            if mask >= 0:
                mark = hash(visit)
                slot = mark & mask
                if known[slot] == mark:
                    continue
            day, site, url, address, agent = visit
            place = heads.get((day, site))
            if place is None:
                salt = salts.get(day)
                if salt is None:
                    left.add(visit)
                    continue
                head = key_head(day, "visitors", site, self.prefix)
                place = heads[(day, site)] = (head, head + ALL_VISITORS, head + "#v.", head + "#u.", salt)
            head, everyone, site_marker, url_marker, salt = place
            if mask >= 0:
                known[slot] = mark
            who = (day, site, address, agent)
            ident = idents.get(who)
            if ident is None:  # one identity and one site-wide marker per visitor
                ident = idents[who] = blake2b(address + b"\0" + agent, key=salt, digest_size=DIGEST_BYTES).digest()
                returning = False
                if visitor_mask >= 0:
                    seen = hash(who)
                    returning = known_visitors[seen & visitor_mask] == seen
                    known_visitors[seen & visitor_mask] = seen
                if not returning:
                    out[site_marker + ident.hex()] = everyone
            if per_url:
                made = urls.get((head, url))
                if made is None:
                    made = urls[(head, url)] = (head + encode_value(url, MAX_KEY_BYTES - len(head)),
                                                url.encode("utf-8", "surrogateescape"))
                out[url_marker + blake2b(ident + made[1], digest_size=DIGEST_BYTES).hexdigest()] = made[0]
        return out, left


class LocalVisitors:
    """Exact visitor counts within one process (``--dry-run``, ``logpipe rollup``).

    Keeps one ``hash()`` (an int) per visitor and per (visitor, URL) seen:
    about 60 bytes each.

    Args:
        per_url: count ``visitors`` per URL as well as for the whole site.
    """

    def __init__(self, per_url: bool = True):
        self.per_url = per_url
        self._seen: set[int] = set()
        #: ``{(day, site): site-wide visitors}`` counted so far.
        self.totals: dict[tuple[str, str | None], int] = {}

    def count(self, visits, out: dict) -> int:
        """Add new visitors of *visits* to *out* (``{(day, "visitors", site, value): n}``).

        Returns:
            How many site-wide visitors were new.
        """
        seen = self._seen
        new = 0
        for day, site, url, address, agent in visits:
            marker = hash((day, site, address, agent))
            if marker not in seen:
                seen.add(marker)
                new += 1
                self.totals[(day, site)] = self.totals.get((day, site), 0) + 1
                key = (day, "visitors", site, ALL_VISITORS)
                out[key] = out.get(key, 0) + 1
            if self.per_url:
                marker = hash((day, site, url, address, agent))
                if marker not in seen:
                    seen.add(marker)
                    key = (day, "visitors", site, url)
                    out[key] = out.get(key, 0) + 1
        return new
