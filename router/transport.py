"""The store-to-store transport (asyncio): the only part of the router that touches sockets.

Modules. `Transport` (here) owns the listener, the links and the snapshot transfers; the
connection protocols live in `outbound` (dialed) and `inbound` (accepted), the socket settings
in `sockopts`, the TLS contexts in `tls`.

Connections. Each store dials ONE outbound connection per remote store (more with
`connections_per_store`) and sends its raft frames on it; connections it accepts only receive.
Every connection starts with a HANDSHAKE frame from each side (cluster id, store id, our
advertised addresses); the acceptor checks the cluster id first and answers with its own handshake, the
dialer checks the answer (cluster id and the store it meant to reach) before sending anything.
TCP_NODELAY on every socket. Optional mutual TLS (`server_ssl` / `client_ssl`): the dialer
uses the loop's TLS; the acceptor runs TLS itself over memory BIOs, so that a failed TLS
handshake (e.g. a plain-text client) is counted, the same way on any event loop.

Sending. `send()` never blocks and never creates a task or future: it appends the encoded
frame to the link's queue and schedules at most one flush per link per loop iteration; the
flush hands the whole queue to the socket in one `writelines` (coalescing every frame queued
meanwhile). While the socket's write buffer is above its high-water mark the flush waits for
`resume_writing`; frames keep queueing up to `max_pending_bytes`, past it they are dropped
and counted (Raft retransmits).

Failures. A link is IDLE (no connection), CONNECTING, CONNECTED or in BACKOFF. A failed
connect, a refused handshake, or a connection lost with frames queued is one failed attempt:
the queued frames are dropped, `on_unreachable(store_id)` is called once, and the link backs off
(50 ms doubling to 2 s, +-20% jitter from the injected rng); frames sent during the backoff are
dropped (counted in `dropped_unreachable`). After the backoff the link is IDLE again and the
next `send()` dials.

Snapshots travel on a connection of their own per transfer (a 50 MiB snapshot never sits in
front of a heartbeat): first chunk = header + total size, the receiver accepts or refuses
(`max_concurrent_snapshots` receptions at a time), then 1 MiB data chunks with write
backpressure, then the receiver's ack after `on_snapshot` took the reassembled whole.

Bad input on the peer port (garbage, oversized or truncated frames, frames before the
handshake, a wrong cluster, a batch claiming another store) closes that connection or drops
that frame, counted by reason in `stats`; other connections are unaffected. Exceptions raised
by the callbacks are logged and counted, never propagated into the transport.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from multiraft.proto.serverpb_pb2 import (
    BatchRaftMessage,
    Handshake,
    SnapshotAccepted,
    SnapshotChunk,
    SnapshotReceived,
)

from .codec import DEFAULT_MAX_FRAME, encode_snapshot_chunk
from .inbound import Inbound
from .outbound import (
    BACKOFF,
    BACKOFF_JITTER,
    BACKOFF_MAX,
    BACKOFF_MIN,
    CONNECTED,
    CONNECTING,
    IDLE,
    HandshakeRejected,
    Link,
    Outbound,
    RemoteStore,
    SnapshotAborted,
)
from .tls import make_ssl_contexts

__all__ = ["Transport", "TransportStats", "make_ssl_contexts", "parse_addr", "SNAPSHOT_CHUNK_SIZE"]

log = logging.getLogger(__name__)

SNAPSHOT_CHUNK_SIZE = 1 << 20


@dataclass(slots=True)
class TransportStats:
    """Plain counters (metrics/ exports them once per round)."""

    frames_sent: int = 0
    bytes_sent: int = 0
    # RAFT frames delivered to on_batch.
    frames_received: int = 0
    bytes_received: int = 0
    # Codec reasons (bad_length, oversized, unknown_kind, bad_protobuf, truncated) and the
    # transport's: no_handshake, unexpected_kind, store_mismatch, bad_snapshot,
    # handshake_timeout.
    bad_frames_by_reason: dict[str, int] = field(default_factory=dict)
    # Handshakes refused, by either side (wrong cluster, wrong or zero store id).
    handshake_rejects: int = 0
    # Accepted connections whose TLS handshake failed (e.g. a plain client on a TLS port).
    tls_handshake_failures: int = 0
    # Frames dropped because the link's queue was over max_pending_bytes.
    dropped_frames: int = 0
    # Frames dropped because the store was unreachable (unknown address, backoff, lost queue).
    dropped_unreachable: int = 0
    unreachable_reports: int = 0
    connects: int = 0
    # Connection attempts of a link after its first.
    reconnects: int = 0
    callback_errors: int = 0
    snapshots_sent: int = 0
    snapshots_received: int = 0
    # Sender side: transfers that ended with done(False).
    snapshots_failed: int = 0
    # Receiver side: transfers refused (concurrency limit) or broken off.
    snapshots_refused: int = 0
    snapshots_receive_failed: int = 0


def parse_addr(addr: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bad address {addr!r}: want host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class Transport:
    """Store-to-store connections of one store. See the module docstring for the contract.

    `send`, `send_snapshot` and `add_store` must be called on the event loop's thread, after
    `start()`.
    """

    def __init__(
        self,
        *,
        cluster_id: int,
        store_id: int,
        listen_addr: str,
        on_batch: Callable[[int, BatchRaftMessage], None],
        on_unreachable: Callable[[int], None],
        on_snapshot: Callable[[int, bytes, bytes], None] | None = None,
        on_peer_info: Callable[[Handshake], None] | None = None,
        client_addr: str = "",
        admin_addr: str = "",
        advertise_addr: str = "",
        max_frame: int = DEFAULT_MAX_FRAME,
        max_pending_bytes: int = 64 << 20,
        connections_per_store: int = 1,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        max_concurrent_snapshots: int = 2,
        rng: random.Random | None = None,
        connect_timeout: float = 5.0,
        snapshot_ack_timeout: float = 120.0,
    ) -> None:
        if store_id <= 0:
            raise ValueError("store_id must be positive")
        if connections_per_store < 1:
            raise ValueError("connections_per_store must be >= 1")
        parse_addr(listen_addr)
        self.cluster_id = cluster_id
        self.store_id = store_id
        self.listen_addr = listen_addr
        self.on_batch = on_batch
        self.on_unreachable = on_unreachable
        self.on_snapshot = on_snapshot
        self.on_peer_info = on_peer_info
        self.client_addr = client_addr
        self.admin_addr = admin_addr
        # The peer address our handshakes announce; empty: the listen host and port.
        self.advertise_addr = advertise_addr
        self.max_frame = max_frame
        self.max_pending_bytes = max_pending_bytes
        self.connections_per_store = connections_per_store
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.max_concurrent_snapshots = max_concurrent_snapshots
        self.connect_timeout = connect_timeout
        self.snapshot_ack_timeout = snapshot_ack_timeout
        self.stats = TransportStats()
        # Jitter only; injected so that a seed reproduces a run.
        self._rng = rng if rng is not None else random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._port = 0
        self._stores: dict[int, RemoteStore] = {}
        # Stores removed from the cluster: never dialed, their handshakes refused.
        self._refused: set[int] = set()
        # Accepted connections still open.
        self._inbound: set[Inbound] = set()
        # Background tasks (link dials, snapshot transfers): kept referenced until done.
        self._tasks: set[asyncio.Task[None]] = set()
        # Invariant: 0 <= _snapshots_receiving <= max_concurrent_snapshots.
        self._snapshots_receiving = 0
        self._closed = False

    # lifecycle

    async def start(self) -> None:
        """Listen on `listen_addr` (port 0 picks a free port, see `listen_port`)."""
        assert self._server is None, "start() twice"
        self._loop = asyncio.get_running_loop()
        host, port = parse_addr(self.listen_addr)
        self._server = await self._loop.create_server(
            lambda: Inbound(self), host or None, port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("store %d transport listening on %s:%d (TLS %s)", self.store_id, host,
                 self._port, "on" if self.server_ssl else "off")

    @property
    def listen_port(self) -> int:
        return self._port

    async def close(self) -> None:
        """Close the listener and every connection; pending snapshot sends end with
        done(False)."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for st in self._stores.values():
            for link in st.links:
                self._drop_link_connection(link)
        for c in list(self._inbound):
            if c.transport is not None:
                c.transport.abort()
            c._gone()
        tasks = set(self._tasks)
        while tasks:
            # Cancelled again until they end: a cancel can be lost (see _run_link).
            for task in tasks:
                task.cancel()
            _done, tasks = await asyncio.wait(tasks, timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()

    # addresses

    def add_store(self, store_id: int, peer_addr: str) -> None:
        """Where `store_id` listens (ignored once it was removed); a changed address drops the
        current connections (the next send dials the new one)."""
        parse_addr(peer_addr)
        if store_id in self._refused:
            return
        st = self._stores.get(store_id)
        if st is None:
            self._stores[store_id] = RemoteStore(store_id, peer_addr, self.connections_per_store)
        elif st.addr != peer_addr:
            st.addr = peer_addr
            for link in st.links:
                self._drop_link_connection(link)

    def remove_store(self, store_id: int) -> None:
        """`store_id` left the cluster for good: its connections are closed, frames for it are
        dropped, and its handshakes are refused from now on."""
        self._refused.add(store_id)
        st = self._stores.pop(store_id, None)
        if st is not None:
            for link in st.links:
                link.queue = []
                link.queued_bytes = 0
                self._drop_link_connection(link)
        for c in list(self._inbound):
            if c.peer_store == store_id and c.transport is not None:
                c.transport.abort()

    def pending_bytes(self, store_id: int) -> int:
        """Bytes queued for `store_id`, in our queues and in the sockets' write buffers."""
        st = self._stores.get(store_id)
        if st is None:
            return 0
        n = 0
        for link in st.links:
            n += link.queued_bytes
            if link.conn is not None and link.conn.transport is not None:
                n += link.conn.transport.get_write_buffer_size()
        return n

    # sending raft frames

    def send(self, store_id: int, frame: bytes) -> None:
        """Queue one encoded frame for `store_id`; never blocks. Dropped (and counted) when
        the store is unknown or unreachable, or its queue is over max_pending_bytes."""
        st = self._stores.get(store_id)
        if st is None or self._closed:
            self.stats.dropped_unreachable += 1
            if not self._closed:
                log.debug("no address for store %d", store_id)
                self._report_unreachable(store_id)
            return
        links = st.links
        if len(links) == 1:
            link = links[0]
        else:
            link = links[st.rr % len(links)]
            st.rr += 1
        state = link.state
        if state == BACKOFF:
            self.stats.dropped_unreachable += 1
            return
        if link.queued_bytes + len(frame) > self.max_pending_bytes:
            self.stats.dropped_frames += 1
            return
        link.queue.append(frame)
        link.queued_bytes += len(frame)
        if state == CONNECTED:
            if link.flush is None:
                conn = link.conn
                assert conn is not None
                if not conn.paused:
                    link.flush = self._loop_or_raise().call_soon(self._flush, link)
        elif state == IDLE:
            link.state = CONNECTING
            link.task = self._spawn(self._run_link(link))

    def _flush(self, link: Link) -> None:
        link.flush = None
        conn = link.conn
        if conn is None or conn.paused or not link.queue or conn.transport is None:
            return
        if conn.transport.is_closing():
            # Closed, and the link has not heard yet (connection_lost comes a loop iteration
            # later): the queue stays, to be dropped and reported as a failed attempt (uvloop
            # raises on a write to a closed transport; asyncio drops it silently).
            return
        queue = link.queue
        conn.transport.writelines(queue)
        self.stats.frames_sent += len(queue)
        self.stats.bytes_sent += link.queued_bytes
        link.queue = []
        link.queued_bytes = 0

    def _schedule_flush(self, link: Link) -> None:
        if link.flush is None and link.queue and link.state == CONNECTED:
            link.flush = self._loop_or_raise().call_soon(self._flush, link)

    async def _run_link(self, link: Link) -> None:
        """One connection attempt: dial, then watch the connection until it is lost; after a
        failure, back off. Ends IDLE (the next send() starts the next attempt)."""
        try:
            st = self._stores.get(link.store_id)
            assert st is not None
            if link.attempts:
                self.stats.reconnects += 1
            link.attempts += 1
            try:
                conn = await self._dial(link.store_id, st.addr)
            except (TimeoutError, OSError, HandshakeRejected) as e:
                log.info("store %d unreachable at %s: %s", link.store_id, st.addr, e)
            else:
                if self._closed:
                    # Closed while dialing, and the cancel lost: Python 3.11's wait_for
                    # swallows a cancellation that arrives as its inner future completes.
                    conn.fail(ConnectionResetError("closed locally"))
                    return
                link.conn = conn
                link.state = CONNECTED
                link.backoff = BACKOFF_MIN
                conn.on_resume = lambda: self._schedule_flush(link)
                self._flush(link)
                await conn.lost
                link.conn = None
                if link.flush is not None:
                    link.flush.cancel()
                    link.flush = None
                if not link.queue:
                    # Lost with nothing queued (the peer restarted, an address change): not a
                    # failure yet; the next send dials again.
                    return
                log.info("connection to store %d lost: %s", link.store_id, conn.error)
            # A failed attempt: drop what is queued, report once, back off.
            self.stats.dropped_unreachable += len(link.queue)
            link.queue = []
            link.queued_bytes = 0
            link.state = BACKOFF
            self._report_unreachable(link.store_id)
            delay = link.backoff * (1 + self._rng.uniform(-BACKOFF_JITTER, BACKOFF_JITTER))
            link.backoff = min(link.backoff * 2, BACKOFF_MAX)
            await asyncio.sleep(delay)
        finally:
            link.task = None
            link.state = IDLE
            link.conn = None

    def _drop_link_connection(self, link: Link) -> None:
        if link.conn is not None:
            link.conn.fail(ConnectionResetError("closed locally"))
        if self._closed and link.task is not None:
            link.task.cancel()

    async def _dial(self, store_id: int, addr: str) -> Outbound:
        """Connect to `store_id` at `addr` and exchange handshakes; raises OSError,
        TimeoutError or HandshakeRejected."""
        loop = self._loop_or_raise()
        host, port = parse_addr(addr)
        conn = Outbound(self, store_id)
        self.stats.connects += 1
        await asyncio.wait_for(
            loop.create_connection(
                lambda: conn, host, port, ssl=self.client_ssl,
                server_hostname=host if self.client_ssl is not None else None,
            ),
            self.connect_timeout,
        )
        try:
            hs = await asyncio.wait_for(conn.handshake, self.connect_timeout)
        except BaseException:
            conn.fail(ConnectionResetError("handshake failed"))
            raise
        why = self._check_handshake(hs, expect_store=store_id)
        if why:
            self.stats.handshake_rejects += 1
            conn.fail(ConnectionResetError(why))
            raise HandshakeRejected(why)
        self._peer_info(hs)
        return conn

    # snapshots

    def send_snapshot(self, store_id: int, header: bytes, data: bytes,
                      done: Callable[[bool], None]) -> None:
        """Stream a snapshot to `store_id` on a connection of its own; `done(True)` once the
        receiver acknowledged the whole, `done(False)` on any failure (called exactly once)."""
        self._spawn(self._send_snapshot(store_id, header, data, done))

    async def _send_snapshot(self, store_id: int, header: bytes, data: bytes,
                             done: Callable[[bool], None]) -> None:
        ok = False
        conn: Outbound | None = None
        try:
            st = self._stores.get(store_id)
            if st is None or self._closed:
                raise SnapshotAborted(f"no address for store {store_id}")
            conn = await self._dial(store_id, st.addr)
            tr = conn.transport
            assert tr is not None
            total = len(data)
            tr.write(encode_snapshot_chunk(
                SnapshotChunk(header=header, total_size=total, last=total == 0)))
            ack = await conn.next_ack(self.snapshot_ack_timeout)
            if ack.status != SnapshotAccepted:
                raise SnapshotAborted(f"refused: {ack.reason or ack.status}")
            for off in range(0, total, SNAPSHOT_CHUNK_SIZE):
                end = off + SNAPSHOT_CHUNK_SIZE
                tr.write(encode_snapshot_chunk(SnapshotChunk(data=data[off:end], last=end >= total)))
                if conn._acks:  # the receiver gave up early
                    break
                await conn.drain()
            ack = await conn.next_ack(self.snapshot_ack_timeout)
            if ack.status != SnapshotReceived:
                raise SnapshotAborted(f"receiver failed: {ack.reason or ack.status}")
            ok = True
        except (TimeoutError, OSError, HandshakeRejected, SnapshotAborted) as e:
            log.warning("snapshot to store %d failed: %s", store_id, e)
        finally:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            if ok:
                self.stats.snapshots_sent += 1
            else:
                self.stats.snapshots_failed += 1
            try:
                done(ok)
            except Exception:
                self.stats.callback_errors += 1
                log.exception("snapshot done callback failed")

    # shared helpers

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "Transport.start() first"
        return self._loop

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop_or_raise().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _our_handshake(self) -> Handshake:
        peer_addr = self.advertise_addr
        if not peer_addr:
            host, _ = parse_addr(self.listen_addr)
            peer_addr = f"{host}:{self._port}"
        return Handshake(cluster_id=self.cluster_id, store_id=self.store_id,
                         peer_addr=peer_addr, client_addr=self.client_addr,
                         admin_addr=self.admin_addr)

    def _check_handshake(self, hs: Handshake, *, expect_store: int) -> str:
        """Why `hs` is refused, or ""."""
        if hs.cluster_id != self.cluster_id:
            return f"cluster id {hs.cluster_id}, ours is {self.cluster_id}"
        if hs.store_id == 0:
            return "store id 0"
        if hs.store_id == self.store_id:
            return f"store id {hs.store_id} is our own"
        if hs.store_id in self._refused:
            return f"store {hs.store_id} was removed from the cluster"
        if expect_store and hs.store_id != expect_store:
            return f"store {hs.store_id} answered, expected store {expect_store}"
        return ""

    def _count_bad(self, reason: str) -> None:
        d = self.stats.bad_frames_by_reason
        d[reason] = d.get(reason, 0) + 1

    def _deliver(self, from_store: int, batch: BatchRaftMessage) -> None:
        self.stats.frames_received += 1
        try:
            self.on_batch(from_store, batch)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("on_batch from store %d failed", from_store)

    def _peer_info(self, hs: Handshake) -> None:
        if self.on_peer_info is None:
            return
        try:
            self.on_peer_info(hs)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("on_peer_info failed")

    def _report_unreachable(self, store_id: int) -> None:
        self.stats.unreachable_reports += 1
        try:
            self.on_unreachable(store_id)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("on_unreachable(%d) failed", store_id)
