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
  ``{head}{path}``) is incremented only when the add stored the marker, so a
  replayed line or a second web server can never count a visitor twice
  (:class:`MarkerMaker`, :meth:`logpipe.daemon.store.CounterStore.add_markers`).
* Offline (``--dry-run``, ``logpipe rollup``): exact sets of in-process
  ``hash()`` values, no salt needed (:class:`LocalVisitors`).

The hashing runs once per distinct visit of a flush, never per line.
"""

from __future__ import annotations

import base64
import os

try:  # hashlib's own BLAKE2, without loading OpenSSL (see logpipe.keys)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover
    from hashlib import blake2b

from logpipe.keys import ALL_VISITORS, MAX_KEY_BYTES, encode_value, key_head

__all__ = ["MarkerMaker", "LocalVisitors", "new_salt", "salt_key", "DIGEST_BYTES"]

#: Bytes of an identity digest: 96 bits, so 10⁶ visitors a day collide with
#: probability about 10⁻¹⁷ (birthday bound).
DIGEST_BYTES = 12
#: Bytes of a salt (the BLAKE2b key).
SALT_BYTES = 16


def new_salt() -> str:
    """A fresh random salt, as 32 hex digits (what the salt item holds)."""
    return os.urandom(SALT_BYTES).hex()


def salt_key(day: str, prefix: str) -> str:
    """The memcached item holding *day*'s salt: ``{prefix}:{day}:visitors:#salt``."""
    return key_head(day, "visitors", None, prefix) + "#salt"


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii")


class MarkerMaker:
    """Raw visits → marker items and the counters they stand for.

    Args:
        prefix: the key prefix (``--prefix``).
        per_url: also make per-URL markers (``visitors:{path}`` counters).
    """

    def __init__(self, prefix: str, per_url: bool = True):
        self.prefix = prefix
        self.per_url = per_url
        self._heads: dict[tuple, str] = {}

    def markers(self, visits, salts: dict[str, bytes]) -> tuple[dict[str, str], set]:
        """Hash *visits* with their day's salt.

        Args:
            visits: ``(day, site, url, address bytes, user_agent bytes)`` tuples.
            salts: ``{day: salt bytes}``; a visit whose day has none is left over.

        Returns:
            ``({marker key: counter key}, visits left over)``.
        """
        out: dict[str, str] = {}
        left = set()
        ids: dict[tuple, bytes] = {}
        heads = self._heads
        if len(heads) > 1000:
            heads.clear()
        for visit in visits:
            day, site, url, address, agent = visit
            salt = salts.get(day)
            if salt is None:
                left.add(visit)
                continue
            ident = ids.get((day, address, agent))
            if ident is None:
                ident = ids[(day, address, agent)] = blake2b(
                    address + b"\0" + agent, key=salt, digest_size=DIGEST_BYTES).digest()
            head = heads.get((day, site))
            if head is None:
                head = heads[(day, site)] = key_head(day, "visitors", site, self.prefix)
            out[head + "#v." + _b64(ident)] = head + ALL_VISITORS
            if self.per_url:
                per = blake2b(ident + url.encode("utf-8", "surrogateescape"), digest_size=DIGEST_BYTES).digest()
                out[head + "#u." + _b64(per)] = head + encode_value(url, MAX_KEY_BYTES - len(head))
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
