"""The worker's unique-visitor markers: salts, pending markers, takeovers, drops.

Per flush (:meth:`VisitorMarkers.flush`, before the counters are sent): the
day's salt is fetched or created (one round trip per day and worker, then
cached), the flush's distinct visits are hashed into marker items
(:class:`logpipe.counting.visitors.MarkerMaker`), and each marker goes
through two states, over :class:`logpipe.daemon.markerstore.MarkerStore`:

1. *claim* round trip: ``add`` with the pending value ``p<ttl>:<grace>:<unit>``,
   the markers grouped into *units* (one server and key head, each with a
   unique id).  ``HD``: this writer owns the marker.  ``NS``: it exists —
   read it later.
2. *commit* round trip, sent at once: for each unit with owned markers, its
   *commit record* ``{head}#c.{unit}`` and then ``ma <counter> +n`` for each
   of its counters — quiet commands, whole units per ``send()`` (see the
   store module: memcached applies every quiet command it received, even
   from a writer killed right after sending).  One record stands for all of
   a unit's markers: no marker is written twice.

A marker read later (``mg v c t``: an ``NS``, a lost claim, a commit whose
reply did not come) is: pending and its unit's record exists (or ``c`` or
empty, an older logpipe's) — counted, done; missing (expired, evicted, a
restarted server) — added again; pending without a record and *young* —
read again at the next flush; pending without a record and *old*: its age
(the TTL in its value minus the remaining TTL, memcached's own clock) is
over the grace (:func:`grace_seconds`, the larger of the creator's, written
in the value, and this writer's) — its owner is dead, so take it over with
a compare-and-swap set (``ms <marker> C<cas>``: one writer wins) to a fresh
pending value in one of this writer's units, then commit it as an owner.

**Why nothing is counted twice or lost.**  (1) A counter is incremented
only in a commit unit — the unit's record, then its ``ma`` commands — sent
by the owner of the markers holding that unit's id, counting exactly those
(a marker holds a unit's id only if its owner's ``add`` or compare-and-swap
stored it, and a unit whose claim round trip failed is never committed).
A unit goes to the kernel whole, in one ``send()`` that has room for it (a
SIGKILL acts between system calls; a timeout never leaves half a unit
sent), on one connection (markers and records live on their counter's
server), and memcached applies quiet commands in order and all of those it
received; so a marker whose unit has no record was never counted, and one
whose unit has its record was.  (2) One owner per marker: ``add`` and the
compare-and-swap takeover are atomic, and an owner starts no unit later
than ``owner_window`` after sending its claim, while a takeover needs the
marker to be older than the grace (> that window + the round trips): a
taker that still finds no record knows the owner's commit never happened
and never will.  (3) No loss: a worker acknowledges its lines only when all
their markers are resolved (``waiting()`` is 0), so a dead owner's lines
are replayed and its pending markers found again — by its successor if no
other writer gets there first — and taken over after the grace.  Windows,
each tested in ``tests/test_visitors.py`` with a worker that SIGKILLs itself
(:data:`KILL_ENV`):

* killed after the claim, before the commit: no record; after the grace
  the replaying worker (or another web server) takes the markers over.
* killed after sending the commit, before its reply: memcached applies the
  quiet commands it has; the records exist, counted once.
* killed between two ``send()`` calls of one commit: whole units are
  applied (record and counts) or not (no record, taken over later).

What remains is outside a writer's crash: memcached itself killed or
restarted (it loses every item anyway), a connection cut by the network
in the middle of a unit (a record without all its ``ma``: an undercount,
never a double count), memcached answering a record ``SERVER_ERROR`` (out
of memory with ``-M``), a record evicted before its markers (give memcached
the memory: an evicted marker counts again as well), or memcached frozen
(SIGSTOP, swap) for longer than the grace between a writer's claim and its
commit while another writer reads the marker.

While memcached is down, markers (and visits whose day has no salt yet) wait,
at most ``--max-pending-visitors``; past it new ones are dropped and counted
(``dropped_visitors`` in the status file).
"""

from __future__ import annotations

import os
import signal
import time
from array import array

from logpipe.config import Settings
from logpipe.counting.visitors import MarkerMaker, new_salt, salt_key
from logpipe.daemon.markerstore import SEND_CHUNK, MarkerStore
from logpipe.daemon.store import CounterStore, StoreError

__all__ = ["VisitorMarkers", "grace_seconds", "KILL_ENV"]

#: Slots of the direct-mapped cache of visits already made into markers
#: (pending or confirmed), not hashed or sent again: 8 bytes each (512 KiB).
KNOWN_VISITS = 1 << 16
#: The same for visitors (their site-wide marker): 256 KiB.
KNOWN_VISITORS = 1 << 15
#: Visits hashed and sent per round trip (two markers each): bounds the
#: memory a flush allocates for them.
CHUNK = 1500
#: Days whose salt a worker keeps (besides those of the visits at hand).
MAX_SALTS = 4
#: Test hook: ``claim:FILE``, ``commit:FILE`` or ``commit-half:FILE`` makes the
#: worker SIGKILL itself after a claim round trip that stored markers, after
#: sending a whole commit, or after sending half of one — once: only if FILE
#: does not exist yet (it is created first).  Read once at start; unset in
#: production (one attribute test per round trip).
KILL_ENV = "LOGPIPE_TEST_KILL_AT"


def grace_seconds(timeout: float) -> tuple[float, int]:
    """``(owner_window, grace)`` in seconds for a memcached ``--timeout`` of *timeout* s.

    An owner commits at most ``owner_window`` = 2 × timeout + 1 s after
    sending its claim (a reply takes at most *timeout*); others take a
    pending marker over only past ``grace`` = owner_window + 2 × timeout + 2 s
    (the commit's own round trip, and memcached's one-second clock), rounded
    up: 5 s with the default 0.5 s.
    """
    window = 2 * timeout + 1
    return window, int(window + 2 * timeout + 2.999)


class VisitorMarkers:
    """Unique visitors of one worker (see the module docstring).

    Args:
        store: the worker's counter store (its ``ttl`` is the markers' and the salt's).
        settings: ``prefix``, ``max_pending_visitors`` and ``timeout`` (the grace).
    """

    def __init__(self, store: CounterStore, settings: Settings):
        self.store = store
        self.markers = MarkerStore(store)
        self.prefix = settings.prefix
        self.limit = settings.max_pending_visitors
        self.owner_window, self.grace = grace_seconds(settings.timeout)
        self.pending_value = b"p%d:%d" % (store.ttl, self.grace)
        self.maker = MarkerMaker(settings.prefix)
        self.salts: dict[str, bytes] = {}
        self._proposed: dict[str, str] = {}
        self.raw: set[tuple] = set()
        self.pending: dict[str, str] = {}  # marker → counter: to add
        self.checking: dict[str, str] = {}  # to read (NS, lost claims, unsure commits)
        self.stale: dict[str, tuple[str, int]] = {}  # to take over: marker → (counter, cas)
        self._claim = None  # (Claim in flight, its new markers, its stale ones)
        self._known = array("q", bytes(8 * KNOWN_VISITS))
        self._known_visitors = array("q", bytes(8 * KNOWN_VISITORS))
        self.dropped = 0
        self.takeovers = 0
        self.last_error: str | None = None
        self._kill_at = os.environ.get(KILL_ENV) or None

    def waiting(self) -> int:
        """Markers and raw visits not yet confirmed by memcached."""
        claimed = len(self._claim[1]) + len(self._claim[2]) if self._claim is not None else 0
        return len(self.pending) + len(self.raw) + len(self.checking) + len(self.stale) + claimed

    def add(self, visits: set[tuple]) -> None:
        """Hold *visits* (``Pipeline.take_visits()``) for the next flush, within the bound."""
        if not visits:
            return
        if not self.raw:
            self.raw = visits
        else:
            self.raw |= visits
        over = self.waiting() - self.limit
        if over > 0:
            for _ in range(min(over, len(self.raw))):
                self.raw.pop()
                self.dropped += 1

    def flush(self, check: bool = True) -> bool:
        """Salt, hash, claim and commit the held markers, :data:`CHUNK` visits at a time,
        each chunk hashed while memcached answers the previous chunk's claim; with
        *check* (or when :data:`CHUNK` of them wait), then read the markers others
        hold (one ``mg`` round trip) and take over the stale ones.  Without
        *check* the last claim stays in flight (:meth:`settle` or the next call
        finishes it): the worker reads lines meanwhile.

        Returns:
            False when memcached failed; with *check*, also while some marker
            waits (memcached down, a pending marker still young): the lines
            that made them must not be acknowledged.
        """
        ok = self._finish_claim()
        raw = list(self.raw)
        self.raw = set()
        if raw and not self._ensure_salts({visit[0] for visit in raw}):
            ok = False
        for start in range(0, max(len(raw), 1), CHUNK):
            chunk = raw[start:start + CHUNK]
            if chunk:
                markers, left = self.maker.markers(chunk, self.salts, self._known, self._known_visitors)
                self.raw |= left
                self._hold(markers)
            if not self._finish_claim():
                ok = False
            if not ok:
                self.raw.update(raw[start + CHUNK:])  # hashed on a later flush
                break
            if self.pending:
                self._start_claim()
        check = check or len(self.checking) >= CHUNK  # bounds their memory between flushes
        if check:  # (after a failure no claim is in flight)
            ok = self._finish_claim() and ok
        if ok and check and self.checking and self._check() and (self.stale or self.pending):
            self._start_claim()
            ok = self._finish_claim()
        return ok and not (check and self.waiting())

    def claimed_for(self) -> float:
        """Seconds since the claim in flight was sent; -1 when none is."""
        return time.monotonic() - self._claim[0].sent if self._claim is not None else -1.0

    def settle(self) -> bool:
        """Finish the claim in flight, if any (before the store's connections are
        used for anything else, and when the worker is idle).  Returns False
        when memcached failed."""
        return self._finish_claim()

    def _hold(self, markers: dict[str, str]) -> None:
        """Add *markers* to the pending ones, within ``--max-pending-visitors``."""
        pending = self.pending
        room = self.limit - self.waiting()
        if len(markers) <= room:
            pending.update(markers)
            return
        for marker, counter in markers.items():
            if marker in pending:
                continue
            if room > 0:
                pending[marker] = counter
                room -= 1
            else:
                self.dropped += 1

    def _start_claim(self) -> None:
        """Send the claim of the pending and stale markers (:meth:`_finish_claim` reads it)."""
        new, stale = self.pending, self.stale
        self.pending, self.stale = {}, {}
        self._claim = (self.markers.claim_send(new, stale, self.pending_value), new, stale)

    def _finish_claim(self) -> bool:
        """Read the claim in flight and commit the markers now owned.
        Returns False when a server failed (what it held waits)."""
        if self._claim is None:
            return True
        claim, new, stale = self._claim
        self._claim = None
        stored, other, failed, units = self.markers.claim_finish(claim)
        if len(stored) == len(new) and not stale:  # the usual claim: every marker is new
            owned = new
        else:
            owned = {}
            for marker, counter in new.items():
                if marker in stored:
                    owned[marker] = counter
                elif marker in other:
                    self.checking[marker] = counter
                else:  # server failed, or out of memory: add again
                    self.pending[marker] = counter
            for marker, (counter, _cas) in stale.items():
                if marker in stored:
                    owned[marker] = counter
                    self.takeovers += 1
                else:
                    self.checking[marker] = counter
        if owned:
            on_sent = self._die_at if self._kill_at is not None else None
            if on_sent is not None:
                on_sent(0, 0)
            if time.monotonic() - claim.sent > self.owner_window:
                self.checking.update(owned)  # too late to commit: others may take over; read them
            else:
                # The kill hook's "commit-half" needs a commit of several send() calls.
                chunk = 1 if self._kill_at is not None else SEND_CHUNK
                _done, unsure = self.markers.commit(units, stored, claim.sent + self.owner_window, on_sent, chunk)
                for marker in unsure:
                    self.checking[marker] = owned[marker]
        if failed:
            self.last_error = "; ".join(
                f"{s.name}: {s.last_error}" for s in self.store.servers if s.name in failed and s.last_error
            ) or "backing off"
            return False
        return True

    def _check(self) -> bool:
        """Read the markers in :attr:`checking`: counted ones are done, missing ones
        are added again, stale pending ones go to :attr:`stale`, young ones stay."""
        counted, found, failed = self.markers.read(self.checking)
        checking = self.checking
        for marker in counted:
            del checking[marker]
        for marker, (value, cas, left) in found.items():
            counter = self.checking.pop(marker)
            if value is None:
                self.pending[marker] = counter
            elif value[:1] == b"p":
                ttl, grace = (value[1:].split(b":") + [b""])[:2]  # p<ttl>:<grace>[:<unit>]
                try:
                    age, grace = int(ttl) - left, max(self.grace, int(grace))
                except ValueError:
                    age, grace = self.grace + 1, self.grace
                if left < 0 or age > grace:
                    self.stale[marker] = (counter, cas)
                else:
                    self.checking[marker] = counter
        if failed:
            self.last_error = "memcached failed while reading visitor markers"
            return False
        return True

    def _die_at(self, sent: int, chunks: int) -> None:
        """The :data:`KILL_ENV` test hook (see there)."""
        point, _, flag = self._kill_at.partition(":")
        due = {"claim": chunks == 0, "commit": chunks and sent == chunks,
               "commit-half": chunks > 1 and sent == chunks // 2}.get(point)
        if due and flag and not os.path.exists(flag):
            open(flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)

    def _ensure_salts(self, days: set[str]) -> bool:
        """Fetch (or create: the first writer's wins) the salt of each day in *days*."""
        ok = True
        for day in days - self.salts.keys():
            proposed = self._proposed.get(day) or new_salt()
            try:
                value = self.store.shared_value(salt_key(day, self.prefix), proposed)
                self.salts[day] = bytes.fromhex(value)
            except (StoreError, ValueError) as exc:
                self.last_error = str(exc)
                ok = False
        # Live lines are at most a day late; old salts go, but never one this flush needs
        # (a replayed archive spans many days).
        for old in sorted(self.salts)[:-MAX_SALTS]:
            if old not in days:
                del self.salts[old]
        return ok

    def forget(self) -> None:
        """After a server failure: it may have restarted empty, losing the
        salt and markers.  Make markers again for visits seen before, and
        re-add the salts this worker holds (so the writers keep one salt for
        the day)."""
        self._known = array("q", bytes(8 * KNOWN_VISITS))
        self._known_visitors = array("q", bytes(8 * KNOWN_VISITORS))
        self._proposed = {day: salt.hex() for day, salt in self.salts.items()}
        self.salts = {}
