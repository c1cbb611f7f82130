"""memcached: batched create-or-increment with a TTL, spread over servers.

Each flush sends, per server, pipelined meta commands (memcached
``doc/protocol.txt``, "Meta Arithmetic" and "Meta Set"), in batches of at most
:data:`BATCH_COMMANDS`, each batch one confirmed round trip:

* ``ma <key> N<ttl> J<n> D<n>`` — increment by *n*; on a miss create the item
  with value *n* and exptime *ttl* (``N`` auto-vivifies; ``J`` is the initial
  value, and ``D`` is not applied on creation).  Race-free across writers: the
  server does the create-or-increment atomically.  Answers ``HD``.
* ``ms <index> 0 ME T<ttl>`` + ``ms <index> <len> MA`` — create the index item
  if missing (``NS`` when it exists), then append the new values to it.
* ``ms <key> <len> T<ttl>`` + value — an item set with the TTL in the
  counters' round trip (the day the worker counts in, ``{prefix}:#today``,
  :mod:`logpipe.daemon.today`).  Answers ``HD``.
* unique-visitor markers: :mod:`logpipe.daemon.markerstore` (their own
  batches over these sockets).
* ``mn`` — answers ``MN``, the end of the batch's replies.

The batch exchange uses its own small socket code (:class:`_BatchConnection`):
pymemcache 4.0.0's ``raw_command`` reads through ``_readsegment``, which drops
what it has buffered when a reply spans more than one ``recv`` (measured
here: a 4,000-command batch came back as 6 replies), so it cannot carry a
batch.  pymemcache's ``Client`` is used for reads (``get_many``, ``stats``).

Keys go to servers by rendezvous hashing with the node names pymemcache's
``HashClient`` uses (``host:port`` or the socket path), so an application
reading with ``HashClient(servers)`` finds every key.

Delivery: a batch whose replies all arrived is applied exactly once.  A batch
that fails (connection refused, timeout, closed) keeps its counts for a retry
with back-off; if the failure came after the server had read the batch (a
timeout while waiting for replies) the retry counts that batch twice.  A new
connection carries a batch only after the server answered a no-op (``mn``):
a frozen server (SIGSTOP, swapping) still accepts connections and buffers
what they send, so without it every retry would count once more when it
wakes.  The README's "Reliability" section measures both.
"""

from __future__ import annotations

import socket
import time
from collections import defaultdict

from logpipe.errors import StoreError  # re-exported: defined in logpipe.errors

__all__ = ["CounterStore", "node_name", "StoreError", "BATCH_COMMANDS"]

#: Commands per round trip.  Replies (4 bytes each) must fit the socket
#: buffers while the batch is still being sent, or client and server block
#: each other until the timeout.
BATCH_COMMANDS = 4000
#: Back-off after a server fails: first delay and cap, in seconds.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


# The write path (meta batches) raises only these.  pymemcache is imported
# only by the readers and for several servers: it loads ssl (about 6 MB of
# RSS) that a worker with one server never needs.
#: The errors of the write path (meta batches), for callers that send batches of their own.
SEND_ERRORS = (OSError, StoreError)


def _read_errors() -> tuple[type[BaseException], ...]:
    from pymemcache.exceptions import MemcacheError

    return (MemcacheError, OSError, StoreError)


def node_name(server: tuple[str, int] | str) -> str:
    """The rendezvous node name pymemcache's ``HashClient`` gives *server*."""
    if isinstance(server, (tuple, list)):
        return "%s:%s" % (server[0], server[1])
    return server


class _BatchConnection:
    """A socket to one memcached server for pipelined meta-command batches.

    Args:
        spec: ``(host, port)`` or a unix socket path.
        timeout: seconds for each send and receive.
        connect_timeout: seconds to connect.
    """

    def __init__(self, spec, timeout: float, connect_timeout: float):
        self.spec = spec
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if isinstance(self.spec, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.connect_timeout)
            sock.connect(self.spec)
        else:
            sock = socket.create_connection(tuple(self.spec), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        return sock

    def open(self) -> socket.socket:
        """The socket, connected first if closed.

        A frozen server (SIGSTOP, swap) still accepts connections and buffers
        what is sent, and applies it when it wakes: a batch sent on each retry
        would be counted once per retry.  So a new connection carries a batch
        only after the server answered a no-op.

        Raises:
            OSError, StoreError: as :meth:`exchange` (the caller closes the connection).
        """
        if self.sock is None:
            self.sock = self._connect()
            self._send_and_read(b"")
        return self.sock

    def exchange(self, body: bytes) -> bytes:
        """Send *body* (commands; ``mn`` is added) and return the replies before ``MN``.

        Raises:
            OSError: connect, send or receive failed or timed out (the
                connection is closed).
            StoreError: the server closed the connection mid-reply.
        """
        try:
            self.open()
            return self._send_and_read(body)
        except BaseException:
            self.close()
            raise

    def send(self, body: bytes) -> None:
        """Send *body* (commands; ``mn`` is added) without reading the replies: the
        caller reads them with :meth:`receive` before any other use of this connection.

        Raises:
            OSError: as :meth:`exchange` (the connection is closed).
        """
        try:
            self.open().sendall(body + b"mn\r\n")
        except BaseException:
            self.close()
            raise

    def receive(self) -> bytes:
        """The replies to the last :meth:`send`, before its ``MN``.

        Raises:
            OSError, StoreError: as :meth:`exchange` (the connection is closed).
        """
        try:
            return self._read_until_mn()
        except BaseException:
            self.close()
            raise

    def _send_and_read(self, body: bytes) -> bytes:
        self.sock.sendall(body + b"mn\r\n")
        return self._read_until_mn()

    def _read_until_mn(self) -> bytes:
        reply = bytearray()
        while not reply.endswith(b"MN\r\n"):
            data = self.sock.recv(65536)
            if not data:
                raise StoreError("connection closed by the server")
            reply += data
        return bytes(reply[:-4])

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None


class Server:
    """One memcached server: its connections, and its back-off state."""

    def __init__(self, spec, timeout: float, connect_timeout: float):
        self.name = node_name(spec)
        self.spec = spec
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.batch = _BatchConnection(spec, timeout, connect_timeout)
        self._client = None
        self.failures = 0
        self.retry_at = 0.0
        self.last_error: str | None = None
        self.last_ok: float | None = None
        self.rtt: float | None = None

    @property
    def client(self):
        """A pymemcache ``Client`` for reads, made on first use."""
        if self._client is None:
            from pymemcache.client.base import Client

            self._client = Client(
                self.spec if isinstance(self.spec, str) else tuple(self.spec),
                timeout=self.timeout,
                connect_timeout=self.connect_timeout,
                no_delay=True,
                default_noreply=False,
            )
        return self._client

    def close(self) -> None:
        """Close both connections."""
        self.batch.close()
        if self._client is not None:
            self._client.close()

    def failed(self, error: BaseException, now: float) -> None:
        self.failures += 1
        self.last_error = f"{type(error).__name__}: {error}".strip()
        self.retry_at = now + min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures - 1))
        self.close()

    def succeeded(self, now: float, rtt: float) -> None:
        self.failures = 0
        self.retry_at = 0.0
        self.last_ok = now
        self.rtt = rtt


class CounterStore:
    """Counters and index items on one or more memcached servers.

    Args:
        servers: pymemcache server specs (``(host, port)`` or a socket path).
        ttl: exptime of created items, in seconds (≤ 30 days).
        timeout: seconds for every socket operation after connecting.
        connect_timeout: seconds to connect.
        ttl_by_dimension: exptimes for some dimensions, e.g. ``{"post_ip": 7200}``
            (the dimension is the key's third ``:`` field).
    """

    def __init__(self, servers, ttl: int = 86400, timeout: float = 0.5, connect_timeout: float = 0.5,
                 ttl_by_dimension: dict[str, int] | None = None):
        self.ttl = ttl
        self.ttl_by_dimension = dict(ttl_by_dimension or {})
        # A key is "prefix:day:dimension[@site]:value" (logpipe.keys).
        self._ttl_markers = [f":{d}{end}" for d in self.ttl_by_dimension if self.ttl_by_dimension[d] != ttl
                             for end in (":", "@")]
        self.servers = [Server(s, timeout, connect_timeout) for s in servers]
        self._by_name = {s.name: s for s in self.servers}
        self._single = self.servers[0] if len(self.servers) == 1 else None
        if self._single is None:
            from pymemcache.client.rendezvous import RendezvousHash

            self._hash = RendezvousHash()
            for server in self.servers:
                self._hash.add_node(server.name)

    def server_for(self, key: str) -> Server:
        """The server that holds *key* (the same one ``HashClient`` picks)."""
        if self._single is not None:
            return self._single
        return self._by_name[self._hash.get_node(key)]

    def flush(self, counts: dict[str, int], appends: dict[str, list[str]],
              sets: dict[str, bytes] | None = None) -> tuple[set[str], set[str], set[str]]:
        """Send counter increments and index appends; return what was applied.

        Args:
            counts: ``{key: n}`` increments (n ≥ 1).
            appends: ``{index key: [values]}`` to append, one per line.
            sets: ``{key: ASCII value}`` items to set with the TTL (``ms``), in
                the same round trip as the counters, e.g. ``{prefix}:#today``;
                not retried on failure (the next flush sets them again).

        Returns:
            ``(done_counts, done_appends, failed_servers)``: the keys applied,
            and the names of servers that failed or are backing off (their
            keys are not in the done sets and should be retried later).
        """
        now = time.monotonic()
        # Per server: counter keys and their commands, then index keys and
        # theirs.  The loops below run once per key of a flush: no calls that
        # can be avoided (one server: no hashing; one TTL: no key splitting).
        per_server: dict[Server, tuple[list[str], list[str], list[str], list[str]]] = {}
        single = self._single
        if single is not None:
            per_server[single] = (list(counts), [], [], [])
        else:
            for key in counts:
                server = self.server_for(key)
                if server not in per_server:
                    per_server[server] = ([], [], [], [])
                per_server[server][0].append(key)
        ttl_of = self._ttl_of
        tails: dict[tuple[int, int], str] = {}  # (ttl, n) → " N<ttl> J<n> D<n>\r\n"
        for count_keys, count_commands, _, _ in per_server.values():
            for key in count_keys:
                n = counts[key]
                key_ttl = ttl_of(key)
                tail = tails.get((key_ttl, n))
                if tail is None:
                    tail = tails[(key_ttl, n)] = f" N{key_ttl} J{n} D{n}\r\n"
                count_commands.append("ma " + key + tail)
        for key, value in (sets or {}).items():  # one ``ms`` each, answered ``HD`` like an ``ma``
            server = single or self.server_for(key)
            if server not in per_server:
                per_server[server] = ([], [], [], [])
            per_server[server][0].append(key)
            per_server[server][1].append(f"ms {key} {len(value)} T{self.ttl}\r\n{value.decode('ascii')}\r\n")
        ttl = self.ttl
        for key, values in appends.items():
            server = single or self.server_for(key)
            if server not in per_server:
                per_server[server] = ([], [], [], [])
            data = "".join(v.replace("\n", " ") + "\n" for v in values).encode("utf-8", "surrogateescape")
            per_server[server][2].append(key)
            per_server[server][3].append(
                b"ms %s 0 ME T%d\r\n\r\nms %s %d MA\r\n%s\r\n" % (key.encode(), ttl, key.encode(), len(data), data)
            )
        done_counts: set[str] = set()
        done_appends: set[str] = set()
        failed: set[str] = set()
        for server, (count_keys, count_commands, append_keys, append_commands) in per_server.items():
            if server.retry_at > now:
                failed.add(server.name)
                continue
            try:
                for start in range(0, len(count_commands), BATCH_COMMANDS):
                    body = "".join(count_commands[start:start + BATCH_COMMANDS]).encode("ascii")
                    replies = self._round_trip(server, body)
                    self._apply_count_replies(count_keys[start:start + BATCH_COMMANDS], replies, done_counts)
                for start in range(0, len(append_commands), BATCH_COMMANDS // 2):
                    body = b"".join(append_commands[start:start + BATCH_COMMANDS // 2])
                    replies = self._round_trip(server, body)
                    self._apply_append_replies(append_keys[start:start + BATCH_COMMANDS // 2], replies, done_appends)
            except SEND_ERRORS as exc:
                server.failed(exc, time.monotonic())
                failed.add(server.name)
        if sets:
            done_counts.difference_update(sets)
        return done_counts, done_appends, failed

    def shared_value(self, key: str, proposed: str) -> str:
        """Store *proposed* under *key* unless the item exists; return the item's value.

        ``ms <key> <len> ME T<ttl>`` (``add``: the first writer wins) then
        ``mg <key> v`` in one round trip, so every writer ends with the same
        value — used for the day's visitor salt, kept for ``ttl`` seconds.

        Args:
            key: the item's key; proposed: printable ASCII without spaces.

        Raises:
            StoreError: the server is backing off, failed, or answered badly.
        """
        server = self.server_for(key)
        if server.retry_at > time.monotonic():
            raise StoreError(f"{server.name}: backing off ({server.last_error})")
        data = proposed.encode("ascii")
        body = b"ms %s %d ME T%d\r\n%s\r\nmg %s v\r\n" % (key.encode(), len(data), self.ttl, data, key.encode())
        try:
            replies = self._round_trip(server, body)
        except SEND_ERRORS as exc:
            server.failed(exc, time.monotonic())
            raise StoreError(f"{server.name}: {server.last_error}") from None
        if len(replies) >= 3 and replies[0] in (b"HD", b"NS") and replies[1].startswith(b"VA "):
            return replies[2].decode("ascii")
        raise StoreError(f"{key}: unexpected reply {b' '.join(replies[:3])[:80]!r}")

    def _ttl_of(self, key: str) -> int:
        """The exptime of *key*: its dimension's (``ttl_by_dimension``) or the default."""
        for marker in self._ttl_markers:
            if marker in key:  # cheap test first; the dimension is the third field
                return self.ttl_by_dimension.get(key.split(":", 3)[2].partition("@")[0], self.ttl)
        return self.ttl

    @staticmethod
    def _round_trip(server: Server, body: bytes) -> list[bytes]:
        sent = time.monotonic()
        replies = server.batch.exchange(body).split(b"\r\n")
        server.succeeded(time.monotonic(), time.monotonic() - sent)
        return replies

    @staticmethod
    def _apply_count_replies(keys: list[str], replies: list[bytes], done_counts: set,
                             existed: set | None = None) -> None:
        """One reply per ``ma``, in order: ``HD`` applied; ``NS`` into *existed*
        when given; ``SERVER_ERROR``
        (e.g. out of memory) not stored, left for a retry.

        Raises:
            StoreError: any other reply (a protocol error).
        """
        if replies.count(b"HD") == len(keys):  # the usual batch: every one applied
            done_counts.update(keys)
            return
        for key, reply in zip(keys, replies):
            if reply == b"HD":
                done_counts.add(key)
            elif reply == b"NS" and existed is not None:
                existed.add(key)
            elif not reply.startswith(b"SERVER_ERROR"):
                raise StoreError(f"{key}: {reply.decode('ascii', 'replace')}")

    @staticmethod
    def _apply_append_replies(keys: list[str], replies: list[bytes], done_appends: set) -> None:
        """Two replies per index append: the create (``HD``, or ``NS`` when
        the item exists) and the append (``HD``).

        Raises:
            StoreError: the create got another reply.
        """
        for key, created, appended in zip(keys, replies[0::2], replies[1::2]):
            if created in (b"HD", b"NS") and appended == b"HD":
                done_appends.add(key)
            elif not created.startswith((b"HD", b"NS")):
                raise StoreError(f"index {key}: {created.decode('ascii', 'replace')}")

    # -- reading ------------------------------------------------------------------

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """Fetch *keys* from their servers (missing keys are absent).

        Raises:
            StoreError: a server that holds some of the keys failed.
        """
        per_server: dict[Server, list[str]] = defaultdict(list)
        for key in keys:
            per_server[self.server_for(key)].append(key)
        found: dict[str, bytes] = {}
        for server, wanted in per_server.items():
            try:
                for start in range(0, len(wanted), 500):
                    found.update(server.client.get_many(wanted[start:start + 500]))
            except _read_errors() as exc:
                raise StoreError(f"memcached {server.name}: {exc or type(exc).__name__}") from exc
        return found

    def get_counts(self, keys: list[str]) -> dict[str, int]:
        """Fetch counters as ints (missing keys → absent)."""
        return {k: int(v) for k, v in self.get_many(keys).items() if v.strip().isdigit()}

    def ping(self) -> dict[str, dict]:
        """Round-trip each server with ``mn`` and read ``stats``; for health checks.

        Returns:
            ``{name: {"ok": bool, "rtt": seconds | None, "error": str | None,
            "evictions": int | None, "uptime": int | None}}``.
        """
        report: dict[str, dict] = {}
        for server in self.servers:
            entry = {"ok": False, "rtt": None, "error": None, "evictions": None, "uptime": None}
            try:
                start = time.monotonic()
                server.batch.exchange(b"")
                entry["rtt"] = time.monotonic() - start
                stats = server.client.stats()
                entry["evictions"] = int(stats.get(b"evictions", 0))
                entry["uptime"] = int(stats.get(b"uptime", 0))
                entry["ok"] = True
            except _read_errors() as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
                server.close()
            report[server.name] = entry
        return report

    def close(self) -> None:
        """Close every connection."""
        for server in self.servers:
            server.close()


# socket.timeout is OSError's subclass TimeoutError on 3.10+: covered by SEND_ERRORS.
assert issubclass(socket.timeout, OSError)
