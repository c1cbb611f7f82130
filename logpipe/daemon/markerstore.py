"""memcached commands of the unique-visitor markers (see :mod:`logpipe.daemon.visitors`).

Three pipelined exchanges over a :class:`~logpipe.daemon.store.CounterStore`'s
batch sockets (memcached ``doc/protocol.txt``, "Meta Set", "Meta Arithmetic",
"Meta Get"; checked against memcached 1.6.18):

* :meth:`MarkerStore.claim` — the markers are cut into *units* (one server,
  at most :data:`UNIT_MARKERS` markers), each with a unique id; ``ms <marker>
  <len> ME T<ttl>`` (``add``: ``HD`` stored, ``NS`` it exists) for new
  markers, ``ms <marker> <len> C<cas> T<ttl>`` (compare-and-swap: ``HD``
  stored, ``EX`` changed since read, ``NF`` gone) to take over a stale
  pending one; the value is the pending state naming the unit,
  ``p<ttl>:<grace>:<unit>``.
* :meth:`MarkerStore.commit` — per unit with markers this writer stored:
  its *commit record* ``ms {head}#c.{unit} 1 T<ttl> q`` (``c``; one per key
  head among the markers, *head* a marker's key up to ``#v.``/``#u.``), *then*
  ``ma <counter> N<ttl> J<n> D<n> q`` for each of its counters, *n* the
  unit's markers of that counter this writer stored: the record says
  "counted" before the increments that count them, and one record stands
  for all the unit's markers (no write per marker).  Every command is quiet
  (``q``: no ``HD``), so memcached writes nothing back before the closing
  ``mn``; measured here, it then applies every command it has received even
  when the writer is SIGKILLed right after sending (without ``q`` it stops at
  its first failed reply write: 170 of 2,000 applied).  An ``ma`` that
  creates its counter answers ``HD`` even under ``q``, so the claim round
  trip creates the counters first (``ma <counter> N<ttl> J0 D0``).  Units go
  out whole per ``send()``, each started only when the socket buffer has
  room for all of it (:func:`send_whole`) and only before the owner's
  deadline, so neither a writer killed between two ``send()`` calls nor a
  timeout leaves part of a unit sent.
* :meth:`MarkerStore.read` — ``mg <marker> v c t``: value, CAS and remaining
  TTL; a pending value's unit is then looked up (``mg {head}#c.{unit}``): a
  marker whose unit has its record is counted.  A marker holding ``c`` (the
  previous logpipe's per-marker commit) or nothing is counted too.

Markers and records are placed on their *counter's* server (not by their own
key), so a unit is one connection's ordered stream even with several
servers.  Readers never read markers, so this placement is the writers'
business only.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
import time
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter

from logpipe.counting.visitors import DIGEST_BYTES
from logpipe.daemon.store import CounterStore, StoreError, SEND_ERRORS, Server

__all__ = ["MarkerStore", "Claim", "Unit", "UNIT_MARKERS", "record_key"]

#: Markers per unit at most: a unit's commit (a record, and one ``ma`` per
#: counter of ≤ 250 bytes) stays under 72 KB, within one ``send()``.
UNIT_MARKERS = 256
#: Commit bytes per ``send()`` (whole units; one unit may be larger alone).
SEND_CHUNK = 60_000
#: Send buffer asked for the batch sockets (capped by net.core.wmem_max).
SEND_BUFFER = 512 << 10
#: Markers per claim or read round trip.
MARKER_BATCH = 3000


def record_key(marker: str, unit: str) -> str:
    """The commit record of *unit* for *marker*: ``{head}#c.{unit}``, *head* the
    marker's visitors key head (the key without its ``#v.``/``#u.`` and digest)."""
    return _head_of(marker) + "#c." + unit


@dataclass
class Claim:
    """A claim in progress (:meth:`MarkerStore.claim_send`).

    Attributes:
        sent: monotonic time the claim was sent (the owner's window starts there).
        stored, other, failed, units: as :meth:`MarkerStore.claim_finish` returns.
        inflight: ``(server, markers in reply order)`` of the batches sent, not yet read.
    """

    sent: float
    stored: set = field(default_factory=set)
    other: set = field(default_factory=set)
    failed: set = field(default_factory=set)
    units: list = field(default_factory=list)
    inflight: list = field(default_factory=list)

    def apply(self, order: list[str], replies: list[bytes]) -> None:
        """Sort one batch's markers by their replies (``HD`` stored; ``NS``/``EX``/``NF``
        other; ``SERVER_ERROR`` neither, added again).

        Raises:
            StoreError: any other reply (a protocol error).
        """
        if replies[:len(order)].count(b"HD") == len(order):  # the usual batch: all stored
            self.stored.update(order)
            return
        for key, reply in zip(order, replies):
            if reply == b"HD":
                self.stored.add(key)
            elif reply in (b"NS", b"EX", b"NF"):
                self.other.add(key)
            elif not reply.startswith(b"SERVER_ERROR"):  # out of memory: retried
                raise StoreError(f"{key}: {reply.decode('ascii', 'replace')}")


@dataclass
class Unit:
    """Markers claimed together on one server (at most :data:`UNIT_MARKERS`).

    Attributes:
        unit: the id written in the markers' pending value and the records' keys.
        server: where the markers, their counters and the records live.
        counters: ``{marker: counter}`` of the unit's markers.
    """

    unit: str
    server: Server
    counters: dict[str, str]


class MarkerStore:
    """Marker items of one worker, on the servers of *store*.

    Args:
        store: the worker's counter store (servers, placement, ``ttl``, back-off).
    """

    def __init__(self, store: CounterStore):
        self.store = store
        # Unit ids: random per process (several writers, restarts), then a sequence.
        self._token = os.urandom(4).hex()
        self._sequence = 0

    def _by_server(self, markers) -> dict[Server, list]:
        """``{server: [marker…]}``, each marker on its counter's server."""
        store = self.store
        if store._single is not None:
            return {store._single: list(markers)} if markers else {}
        out: dict[Server, list] = {}
        for marker, counter in markers.items():
            out.setdefault(store.server_for(counter), []).append(marker)
        return out

    def _units(self, routes: dict[str, str], failed: set[str]) -> list[Unit]:
        """Cut *routes* (``{marker: counter}``) into units, per server not backing
        off (the names of those backing off go to *failed*); no Python code per marker."""
        now = time.monotonic()
        units: list[Unit] = []
        for server, keys in self._by_server(routes).items():
            if server.retry_at > now:
                failed.add(server.name)
                continue
            for start in range(0, len(keys), UNIT_MARKERS):
                part = keys[start:start + UNIT_MARKERS]
                self._sequence += 1
                units.append(Unit("%s.%x" % (self._token, self._sequence), server,
                                  dict(zip(part, map(routes.__getitem__, part)))))
        return units

    def claim(self, new: dict[str, str], stale: dict[str, tuple[str, int]],
              pending: bytes) -> tuple[set[str], set[str], set[str], list[Unit]]:
        """Add *new* markers and take over *stale* ones, pending in a unit:
        :meth:`claim_send` then :meth:`claim_finish` (see those)."""
        return self.claim_finish(self.claim_send(new, stale, pending))

    def claim_send(self, new: dict[str, str], stale: dict[str, tuple[str, int]], pending: bytes) -> "Claim":
        """Send the claim of *new* and *stale* markers; each server's last batch is
        only sent, its replies read by :meth:`claim_finish` — meanwhile the worker
        reads lines, memcached works.  Until then the claim's servers' batch
        connections must not be used otherwise.

        Args:
            new: ``{marker: counter}`` to create if missing (``add``).
            stale: ``{marker: (counter, cas)}`` to overwrite if unchanged since read.
            pending: the pending state without its unit (``p<ttl>:<grace>``,
                ASCII, no spaces); each marker holds ``{pending}:{unit}``.
        """
        store = self.store
        ttl = store.ttl
        vivify = " N%d J0 D0\r\n" % ttl
        routes = dict(new)
        routes.update((m, c) for m, (c, _cas) in stale.items())
        claim = Claim(time.monotonic())
        claim.units = self._units(routes, claim.failed)
        by_server: dict[Server, list[Unit]] = {}
        for unit in claim.units:
            by_server.setdefault(unit.server, []).append(unit)
        for server, server_units in by_server.items():
            batches = list(_batches(server_units))
            try:
                for n, batch in enumerate(batches, 1):
                    texts, order = [], []
                    for unit in batch:
                        value = "%s:%s" % (pending.decode("ascii"), unit.unit)
                        # One str join per unit, not a format per marker (keys are ASCII).
                        head = " %d ME T%d\r\n%s\r\n" % (len(value), ttl, value)
                        markers = list(unit.counters)
                        takeovers = [k for k in markers if k in stale] if stale else ()
                        adds = [k for k in markers if k not in stale] if takeovers else markers
                        if adds:
                            texts.append("ms " + (head + "ms ").join(adds) + head)
                        texts.extend("ms %s %d C%d T%d\r\n%s\r\n" % (k, len(value), stale[k][1], ttl, value)
                                     for k in takeovers)
                        order.extend(adds)
                        order.extend(takeovers)
                    # The counters too, as 0 if missing: the commit's ``ma`` then never creates
                    # one, and memcached answers a quiet commit nothing before ``mn``.
                    counters = set().union(*[unit.counters.values() for unit in batch])
                    texts.append("ma " + (vivify + "ma ").join(counters) + vivify)
                    body = "".join(texts).encode()
                    if n < len(batches):  # one batch in flight per connection: its replies stay small
                        claim.apply(order, store._round_trip(server, body))
                    else:
                        server.batch.send(body)
                        claim.inflight.append((server, order))
            except SEND_ERRORS as exc:
                server.failed(exc, time.monotonic())
                claim.failed.add(server.name)
        return claim

    def claim_finish(self, claim: "Claim") -> tuple[set[str], set[str], set[str], list[Unit]]:
        """Read the replies of *claim*'s batches in flight.

        Returns:
            ``(stored, other, failed_servers, units)``: the markers this writer
            now owns; those it does not (``NS``/``EX``/``NF``: read them);
            servers that failed or back off (their markers are in neither
            set); the units sent (commit those with stored markers).
        """
        for server, order in claim.inflight:
            if server.name in claim.failed:
                continue
            try:
                replies = server.batch.receive().split(b"\r\n")
                server.succeeded(time.monotonic(), time.monotonic() - claim.sent)
                claim.apply(order, replies)
            except SEND_ERRORS as exc:
                server.failed(exc, time.monotonic())
                claim.failed.add(server.name)
        claim.inflight = []
        # A failed server's markers are in neither set: added again (those applied unseen are
        # found pending, with no record: taken over after the grace).
        for server_name in claim.failed:
            for unit in claim.units:
                if unit.server.name == server_name:
                    claim.stored.difference_update(unit.counters)
                    claim.other.difference_update(unit.counters)
        return claim.stored, claim.other, claim.failed, claim.units

    def commit(self, units: list[Unit], stored: set[str], deadline: float,
               on_sent=None, chunk_bytes: int = SEND_CHUNK) -> tuple[set[str], set[str]]:
        """Write the records of *units* and increment their counters by the markers
        this writer *stored* in them; whole units per ``send()``.

        Args:
            units: from :meth:`claim`.
            stored: the markers this writer owns (claimed or taken over).
            deadline: monotonic time after which no unit is sent (the owner's
                window: later, another writer may take the markers over).
            on_sent: test hook, called as ``on_sent(sends_done, sends)``
                after each ``send()``; None in production.
            chunk_bytes: bytes of whole units per ``send()`` (the tests' kill
                hook sends one unit at a time).

        Returns:
            ``(done, unsure)``: owned markers confirmed counted, and owned
            markers whose send failed or answered an error (applied or not:
            read them).
        """
        ttl = self.store.ttl
        record = " 1 T%d q\r\nc\r\n" % ttl
        now = time.monotonic()
        done: set[str] = set()
        unsure: set[str] = set()
        by_server: dict[Server, list[tuple[list[str], str]]] = {}
        for unit in units:
            owned = list(unit.counters)
            if not stored.issuperset(owned):
                owned = [m for m in owned if m in stored]
                if not owned:
                    continue
            counts = Counter(map(unit.counters.__getitem__, owned))
            # A record per key head among the markers (one, but for a flush across days or
            # virtual hosts); not a format over the keys: a counter may hold "%".
            text = "".join("ms " + head + "#c." + unit.unit + record for head in set(map(_head_of, owned)))
            text += "".join("ma " + counter + " N%d J%d D%d q\r\n" % (ttl, n, n) for counter, n in counts.items())
            by_server.setdefault(unit.server, []).append((owned, text))
        for server, parts in by_server.items():
            keys = [m for owned, _ in parts for m in owned]
            if server.retry_at > now:
                unsure.update(keys)
                continue
            chunks, current, size = [], [], 0
            for _owned, text in parts:
                if current and size + len(text) > chunk_bytes:
                    chunks.append("".join(current).encode())
                    current, size = [], 0
                current.append(text)
                size += len(text)
            if current:
                chunks.append("".join(current).encode())
            try:
                sent = time.monotonic()
                replies = exchange_units(server.batch, chunks, deadline, on_sent)
                server.succeeded(time.monotonic(), time.monotonic() - sent)
            except SEND_ERRORS as exc:
                server.failed(exc, time.monotonic())
                unsure.update(keys)
                continue
            # Quiet: only errors answer, and ``HD`` from an ``ma`` that created its counter
            # (memcached 1.6.18 answers a vivifying ``N`` even under ``q``).
            errors = replies and replies.replace(b"HD\r\n", b"").strip()
            (unsure if errors else done).update(keys)
        return done, unsure

    def read(self, markers: dict[str, str]) -> tuple[set[str], dict[str, tuple[bytes | None, int, int]], set[str]]:
        """Read *markers* (``{marker: counter}``).

        Returns:
            ``(counted, others, failed_servers)``: the markers counted (their
            unit's record exists; or ``c``, or an older logpipe's empty
            value), ``{marker: (value or None when missing, cas, remaining
            ttl)}`` for the rest, and the servers that failed (their markers
            are in neither).
        """
        store = self.store
        counted: set[str] = set()
        others: dict[str, tuple[bytes | None, int, int]] = {}
        failed: set[str] = set()
        for server, parts in self._live_batches(markers, failed):
            try:
                for part in parts:
                    replies = store._round_trip(server, b"".join(b"mg %s v c t\r\n" % k.encode() for k in part))
                    pending: dict[str, tuple[bytes, int, int]] = {}
                    i = 0
                    for key in part:
                        reply = replies[i]
                        if reply == b"EN":
                            others[key] = (None, 0, 0)
                            i += 1
                            continue
                        if reply[:3] != b"VA ":
                            raise StoreError(f"{key}: {reply.decode('ascii', 'replace')}")
                        value = replies[i + 1]
                        i += 2
                        if value[:1] != b"p":  # an older logpipe's counted marker
                            counted.add(key)
                            continue
                        flags = {f[:1]: f[1:] for f in reply.split()[2:]}
                        pending[key] = (value, int(flags[b"c"]), int(flags[b"t"]))
                    records = {key: record_key(key, value.split(b":")[2].decode("ascii"))
                               for key, (value, _cas, _ttl) in pending.items() if value.count(b":") >= 2}
                    found = self._existing(server, set(records.values()))
                    for key, state in pending.items():
                        if records.get(key) in found:
                            counted.add(key)
                        else:
                            others[key] = state
            except (SEND_ERRORS + (IndexError, KeyError, ValueError)) as exc:
                server.failed(exc if isinstance(exc, SEND_ERRORS) else StoreError(f"bad reply: {exc!r}"),
                              time.monotonic())
                failed.add(server.name)
        return counted, others, failed

    def _existing(self, server: Server, keys: set[str]) -> set[str]:
        """Which of *keys* exist on *server* (``mg <key>``: ``HD`` or ``EN``), one round trip."""
        if not keys:
            return set()
        keys = list(keys)
        replies = self.store._round_trip(server, "".join("mg %s\r\n" % k for k in keys).encode())
        return {key for key, reply in zip(keys, replies) if reply == b"HD"}

    def _live_batches(self, markers, failed: set[str]):
        """Yield ``(server, [batch of at most MARKER_BATCH markers…])`` per server not
        backing off; add the names of those backing off to *failed*."""
        now = time.monotonic()
        for server, keys in self._by_server(markers).items():
            if server.retry_at > now:
                failed.add(server.name)
                continue
            yield server, [keys[i:i + MARKER_BATCH] for i in range(0, len(keys), MARKER_BATCH)]


#: Characters after a marker's key head: ``#v.`` or ``#u.`` and the hex digest.
MARKER_TAIL = 3 + 2 * DIGEST_BYTES
_head_of = itemgetter(slice(None, -MARKER_TAIL))


def _batches(units: list[Unit]):
    """*units* in groups of about :data:`MARKER_BATCH` markers (one claim round trip each)."""
    batch, size = [], 0
    for unit in units:
        batch.append(unit)
        size += len(unit.counters)
        if size >= MARKER_BATCH:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def exchange_units(conn, chunks: list[bytes], deadline: float, on_sent=None) -> bytes:
    """Send *chunks* (quiet commands) over *conn*, each with :func:`send_whole`, then
    ``mn``; return the replies before ``MN``: errors, and the ``HD`` of an ``ma``
    that created its counter.

    Args:
        conn: a :class:`~logpipe.daemon.store._BatchConnection`.
        chunks: whole units each.
        deadline: monotonic time after which no chunk is started.
        on_sent: test hook ``on_sent(chunks_sent, chunks)``, or None.

    Raises:
        OSError, StoreError: as ``_BatchConnection.exchange`` (the connection is closed).
    """
    try:
        sock = conn.open()
        set_send_buffer(sock)
        for n, chunk in enumerate(chunks, 1):
            send_whole(sock, chunk, deadline)
            if on_sent is not None:
                on_sent(n, len(chunks))
    except BaseException:
        conn.close()
        raise
    return conn.exchange(b"")  # the closing ``mn``; the replies before its ``MN``


def send_whole(sock: socket.socket, chunk: bytes, deadline: float) -> None:
    """Send *chunk* with one ``send()`` once the socket buffer has room for all of it.

    A ``send()`` that finds room copies everything before returning, so
    neither a SIGKILL (it takes effect between system calls) nor a timeout
    can leave part of the chunk sent.  Waits (``SIOCOUTQ``: bytes not yet
    acknowledged) until *deadline* (monotonic seconds).

    Raises:
        TimeoutError: no room by *deadline*; nothing of *chunk* was sent.
        OSError: the socket failed.
    """
    room = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
    while True:
        try:
            queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            queued = 0  # no SIOCOUTQ here: rely on the send buffer
        if room - queued >= len(chunk):
            break
        if time.monotonic() >= deadline:
            raise TimeoutError("memcached reads too slowly: commit not sent")
        time.sleep(0.0005)
    sent = sock.send(chunk)
    if sent < len(chunk):  # the kernel took less than it had room for: finish the units
        sock.sendall(chunk[sent:])


def set_send_buffer(sock: socket.socket) -> None:
    """Ask for a :data:`SEND_BUFFER` send buffer (best effort)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    except OSError:
        pass
