"""The worker's unique-visitor markers: salts, pending markers, drops.

Per flush (:meth:`VisitorMarkers.flush`, before the counters are sent): the
day's salt is fetched or created (one round trip per day and worker, then
cached), the flush's distinct visits are hashed into marker items
(:class:`logpipe.counting.visitors.MarkerMaker`), the markers are added
(:meth:`logpipe.daemon.store.CounterStore.add_markers`), and each marker that
was *stored* adds 1 to its visitors counter, sent in the very next round
trip (or, if that fails, kept with the worker's pending counts).  A marker that existed (another web server,
a replay after a crash, an earlier flush) adds nothing: visitors are never
counted twice.  The one window left is a worker killed between the marker round
trip and the counter round trip right after it (about a millisecond): those
visitors are then not counted (an undercount, never a double count).

While memcached is down, markers (and visits whose day has no salt yet) wait,
at most ``--max-pending-visitors``; past it new ones are dropped and counted
(``dropped_visitors`` in the status file).
"""

from __future__ import annotations

from array import array

try:  # the C helper behind Counter.update(iterable)
    from _collections import _count_elements
except ImportError:  # pragma: no cover - other Pythons
    from collections import _count_elements  # type: ignore[attr-defined]

from logpipe.config import Settings
from logpipe.counting.visitors import MarkerMaker, new_salt, salt_key
from logpipe.daemon.store import CounterStore, StoreError

__all__ = ["VisitorMarkers"]

#: Slots of the direct-mapped cache of visits already made into markers
#: (pending or confirmed), not hashed or sent again: 8 bytes each (512 KiB).
KNOWN_VISITS = 1 << 16
#: Visits hashed and sent per round trip (two markers each): bounds the
#: memory a flush allocates for them.
CHUNK = 1500
#: Days whose salt a worker keeps (besides those of the visits at hand).
MAX_SALTS = 4


class VisitorMarkers:
    """Unique visitors of one worker (see the module docstring).

    Args:
        store: the worker's counter store (its ``ttl`` is the markers' and the salt's).
        settings: ``prefix`` and ``max_pending_visitors``.
    """

    def __init__(self, store: CounterStore, settings: Settings):
        self.store = store
        self.prefix = settings.prefix
        self.limit = settings.max_pending_visitors
        self.maker = MarkerMaker(settings.prefix)
        self.salts: dict[str, bytes] = {}
        self._proposed: dict[str, str] = {}
        self.raw: set[tuple] = set()
        self.pending: dict[str, str] = {}
        self._known = array("q", bytes(8 * KNOWN_VISITS))
        self.dropped = 0
        self.last_error: str | None = None

    def waiting(self) -> int:
        """Markers and raw visits not yet confirmed by memcached."""
        return len(self.pending) + len(self.raw)

    def add(self, visits: set[tuple]) -> None:
        """Hold *visits* (``Pipeline.take_visits()``) for the next flush, within the bound."""
        if not visits:
            return
        if not self.raw:
            self.raw = visits
        else:
            self.raw |= visits
        over = len(self.raw) + len(self.pending) - self.limit
        if over > 0:
            for _ in range(min(over, len(self.raw))):
                self.raw.pop()
                self.dropped += 1

    def flush(self) -> tuple[dict[str, int], bool]:
        """Salt, hash and add the held markers, :data:`CHUNK` visits at a time.

        Returns:
            ``({visitors counter key: n}, ok)``: increments for stored markers
            that could not be sent at once (to send with the other counts),
            and False when something must be retried.
        """
        ok = True
        increments: dict[str, int] = {}
        raw = list(self.raw)
        self.raw = set()
        if raw:
            ok = self._ensure_salts({visit[0] for visit in raw})
        for start in range(0, max(len(raw), 1), CHUNK):
            chunk = raw[start:start + CHUNK]
            if chunk:
                markers, left = self.maker.markers(chunk, self.salts, self._known)
                self.raw |= left
                self._hold(markers)
            if self.pending and not self._send(increments):
                ok = False
                self.raw.update(raw[start + CHUNK:])  # hashed on a later flush
                break
        return increments, ok and not self.pending and not self.raw

    def _hold(self, markers: dict[str, str]) -> None:
        """Add *markers* to the pending ones, within ``--max-pending-visitors``."""
        pending = self.pending
        room = self.limit - len(pending) - len(self.raw)
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

    def _send(self, increments: dict[str, int]) -> bool:
        """Add the pending markers and, in the very next round trip, increment the
        counters of the stored ones; increments that could not be sent are added
        to *increments* (for the worker's pending counts).  Returns False when a
        server failed (its markers stay pending)."""
        pending = self.pending
        stored, existed, failed = self.store.add_markers(list(pending))
        counts: dict[str, int] = {}
        if len(stored) == len(pending):  # all new: count in C
            _count_elements(counts, pending.values())
            pending.clear()
        else:
            get = counts.get
            for marker in stored:
                counter = pending.pop(marker)
                counts[counter] = get(counter, 0) + 1
            for marker in existed:
                del pending[marker]
        if counts:
            # At once: a worker killed between the two round trips would leave
            # markers whose visitors were never counted (replays see them as known).
            done, _appends, _failed = self.store.flush(counts, {})
            for counter, n in counts.items():
                if counter not in done:
                    increments[counter] = increments.get(counter, 0) + n
        if failed:
            self.last_error = "; ".join(
                f"{s.name}: {s.last_error}" for s in self.store.servers if s.name in failed and s.last_error
            ) or "backing off"
            return False
        return True

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
        self._proposed = {day: salt.hex() for day, salt in self.salts.items()}
        self.salts = {}
