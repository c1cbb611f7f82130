"""memcached commands of the unique-visitor markers (see :mod:`logpipe.daemon.visitors`).

Three pipelined exchanges over a :class:`~logpipe.daemon.store.CounterStore`'s
batch sockets (memcached ``doc/protocol.txt``, "Meta Set", "Meta Arithmetic",
"Meta Get"; checked against memcached 1.6.18):

* :meth:`MarkerStore.claim` — ``ms <marker> <len> ME T<ttl>`` (``add``: ``HD``
  stored, ``NS`` it exists) for new markers, ``ms <marker> <len> C<cas> T<ttl>``
  (compare-and-swap: ``HD`` stored, ``EX`` changed since read, ``NF`` gone)
  to take over a stale pending one; the value is the pending state.
* :meth:`MarkerStore.commit` — per counter, ``ms <marker> 1 T<ttl> q`` + ``c``
  for each of its markers, *then* ``ma <counter> N<ttl> J<n> D<n> q``: the
  markers say "counted" before the increment that counts them.  Every command
  is quiet (``q``: no ``HD``), so memcached writes nothing back before the
  closing ``mn``; measured here, it then applies every command it has
  received even when the writer is SIGKILLed right after sending (without
  ``q`` it stops at its first failed reply write: 170 of 2,000 applied).
  An ``ma`` that creates its counter answers ``HD`` even under ``q``, so the
  claim round trip creates the counters first (``ma <counter> N<ttl> J0 D0``).  The
  batch goes out in *units* (one counter's c-sets and its ``ma``), whole
  units per ``send()``, each started only when the socket buffer has room
  for all of it (:func:`send_whole`) and only before the owner's deadline,
  so neither a writer killed between two ``send()`` calls nor a timeout
  leaves part of a unit sent.
* :meth:`MarkerStore.read` — ``mg <marker> v c t``: value, CAS and remaining TTL.

Markers are placed on their *counter's* server (not by their own key), so a
unit is one connection's ordered stream even with several servers.  Readers
never read markers, so this placement is the writers' business only.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import time

from logpipe.daemon.store import CounterStore, StoreError, SEND_ERRORS, Server

__all__ = ["MarkerStore", "UNIT_MARKERS"]

#: Markers per unit at most (a unit is one ``ma`` after its markers' c-sets,
#: about 20 KB); a ``send()`` carries whole units, about 3 units' worth of markers.
UNIT_MARKERS = 256
#: Send buffer asked for the batch sockets (capped by net.core.wmem_max).
SEND_BUFFER = 512 << 10
#: Markers per claim or read round trip.
MARKER_BATCH = 3000


class MarkerStore:
    """Marker items of one worker, on the servers of *store*.

    Args:
        store: the worker's counter store (servers, placement, ``ttl``, back-off).
    """

    def __init__(self, store: CounterStore):
        self.store = store

    def _by_server(self, markers) -> dict[Server, list]:
        """``{server: [marker…]}``, each marker on its counter's server."""
        store = self.store
        if store._single is not None:
            return {store._single: list(markers)} if markers else {}
        out: dict[Server, list] = {}
        for marker, counter in markers.items():
            out.setdefault(store.server_for(counter), []).append(marker)
        return out

    def _live_batches(self, markers, failed: set[str]):
        """Yield ``(server, [batch of at most MARKER_BATCH markers…])`` per server not
        backing off; add the names of those backing off to *failed*."""
        now = time.monotonic()
        for server, keys in self._by_server(markers).items():
            if server.retry_at > now:
                failed.add(server.name)
                continue
            yield server, [keys[i:i + MARKER_BATCH] for i in range(0, len(keys), MARKER_BATCH)]

    def claim(self, new: dict[str, str], stale: dict[str, tuple[str, int]],
              value: bytes) -> tuple[set[str], set[str], set[str]]:
        """Add *new* markers and take over *stale* ones, with the pending *value*.

        Args:
            new: ``{marker: counter}`` to create if missing (``add``).
            stale: ``{marker: (counter, cas)}`` to overwrite if unchanged since read.
            value: the pending state (ASCII, no spaces).

        Returns:
            ``(stored, other, failed_servers)``: the markers this writer now
            owns; those it does not (``NS``/``EX``/``NF``: read them); servers
            that failed or back off (their markers are in neither set).
        """
        store = self.store
        ttl = store.ttl
        # One str join and one encode per batch, not a format per marker (keys are ASCII).
        head = " %d ME T%d\r\n%s\r\n" % (len(value), ttl, value.decode("ascii"))
        vivify = " N%d J0 D0\r\n" % ttl
        routes = dict(new)
        routes.update((m, c) for m, (c, _cas) in stale.items())
        stored: set[str] = set()
        other: set[str] = set()
        failed: set[str] = set()
        for server, parts in self._live_batches(routes, failed):
            try:
                for part in parts:
                    takeovers = [k for k in part if k in stale] if stale else ()
                    adds = [k for k in part if k not in stale] if takeovers else part
                    text = "ms " + (head + "ms ").join(adds) + head if adds else ""
                    text += "".join("ms %s %d C%d T%d\r\n%s\r\n" % (k, len(value), stale[k][1], ttl, value.decode())
                                    for k in takeovers)
                    # The counters too, as 0 if missing: the commit's ``ma`` then never creates
                    # one, and memcached answers a quiet commit nothing before ``mn``.
                    counters = set(map(routes.__getitem__, part))
                    text += "ma " + (vivify + "ma ").join(counters) + vivify
                    replies = store._round_trip(server, text.encode())
                    order = adds + takeovers if takeovers else part
                    if replies[:len(order)].count(b"HD") == len(order):  # the usual batch: all stored
                        stored.update(order)
                        continue
                    for key, reply in zip(order, replies):
                        if reply == b"HD":
                            stored.add(key)
                        elif reply in (b"NS", b"EX", b"NF"):
                            other.add(key)
                        elif not reply.startswith(b"SERVER_ERROR"):  # out of memory: retried
                            raise StoreError(f"{key}: {reply.decode('ascii', 'replace')}")
            except SEND_ERRORS as exc:
                server.failed(exc, time.monotonic())
                failed.add(server.name)
        return stored, other, failed

    def commit(self, owned: dict[str, str], deadline: float, on_sent=None) -> tuple[set[str], set[str]]:
        """Mark *owned* markers counted and increment their counters, in units.

        Args:
            owned: ``{marker: counter}`` this writer claimed.
            deadline: monotonic time after which no unit is sent (the owner's
                window: later, another writer may take the markers over).
            on_sent: test hook, called as ``on_sent(units_sent, units)``
                after each ``send()``; None in production.

        Returns:
            ``(done, unsure)``: markers confirmed counted, and markers whose
            batch failed or answered an error (applied or not: read them).
        """
        store = self.store
        now = time.monotonic()
        ttl = store.ttl
        cset = " 1 T%d q\r\nc\r\n" % ttl
        done: set[str] = set()
        unsure: set[str] = set()
        for server, keys in self._by_server(owned).items():
            if server.retry_at > now:
                unsure.update(keys)
                continue
            by_counter: dict[str, list[str]] = {}
            for key in keys:
                by_counter.setdefault(owned[key], []).append(key)
            chunks, current, held = [], [], 0
            for counter, markers in by_counter.items():
                ma = "ma " + counter + " N%d J" % ttl  # not a format: a counter may hold "%"
                for start in range(0, len(markers), UNIT_MARKERS):
                    part = markers[start:start + UNIT_MARKERS]
                    if held + len(part) > UNIT_MARKERS * 3:  # about 60 KB: a send()
                        chunks.append("".join(current).encode())
                        current, held = [], 0
                    current.append("ms " + (cset + "ms ").join(part) + cset + ma + "%d D%d q\r\n" % (len(part), len(part)))
                    held += len(part)
            if current:
                chunks.append("".join(current).encode())
            del by_counter, current
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
            ``(counted, others, failed_servers)``: the markers whose value is
            not pending (``c``, or an older logpipe's empty value), ``{marker:
            (value or None when missing, cas, remaining ttl)}`` for the rest,
            and the servers that failed (their markers are in neither).
        """
        store = self.store
        counted: set[str] = set()
        others: dict[str, tuple[bytes | None, int, int]] = {}
        failed: set[str] = set()
        for server, parts in self._live_batches(markers, failed):
            try:
                for part in parts:
                    replies = store._round_trip(server, b"".join(b"mg %s v c t\r\n" % k.encode() for k in part))
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
                        if value[:1] != b"p":  # the usual answer: counted
                            counted.add(key)
                            continue
                        flags = {f[:1]: f[1:] for f in reply.split()[2:]}
                        others[key] = (value, int(flags[b"c"]), int(flags[b"t"]))
            except (SEND_ERRORS + (IndexError, KeyError, ValueError)) as exc:
                server.failed(exc if isinstance(exc, SEND_ERRORS) else StoreError(f"bad reply: {exc!r}"),
                              time.monotonic())
                failed.add(server.name)
        return counted, others, failed


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
        if conn.sock is None:
            conn.sock = conn._connect()
            conn._send_and_read(b"")  # a frozen server must answer before it gets a batch
        set_send_buffer(conn.sock)
        for n, chunk in enumerate(chunks, 1):
            send_whole(conn.sock, chunk, deadline)
            if on_sent is not None:
                on_sent(n, len(chunks))
        return conn._send_and_read(b"")
    except BaseException:
        conn.close()
        raise


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
