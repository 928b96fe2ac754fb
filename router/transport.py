"""The store-to-store transport (asyncio): the only part of the router that touches sockets.

Connections. Each store dials ONE outbound connection per remote store (more with
`connections_per_store`) and sends its raft frames on it; connections it accepts only receive.
Every connection starts with a HANDSHAKE frame from each side (cluster id, store id, our
addresses); the acceptor checks the cluster id first and answers with its own handshake, the
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
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from multiraft.proto.serverpb_pb2 import (
    BatchRaftMessage,
    Handshake,
    SnapshotAccepted,
    SnapshotAck,
    SnapshotChunk,
    SnapshotFailed,
    SnapshotReceived,
    SnapshotRefused,
    SnapshotStatus,
)

from .codec import (
    DEFAULT_MAX_FRAME,
    HANDSHAKE,
    RAFT,
    SNAPSHOT_ACK,
    SNAPSHOT_CHUNK,
    FrameDecoder,
    FrameError,
    encode_handshake,
    encode_snapshot_ack,
    encode_snapshot_chunk,
)

__all__ = ["Transport", "TransportStats", "make_ssl_contexts", "parse_addr", "SNAPSHOT_CHUNK_SIZE"]

log = logging.getLogger(__name__)

SNAPSHOT_CHUNK_SIZE = 1 << 20
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
BACKOFF_JITTER = 0.2
# Socket write buffer limits: flushes wait above HIGH until the buffer drains below LOW.
WRITE_HIGH = 1 << 20
WRITE_LOW = 256 << 10

# Link states.
_IDLE = 0
_CONNECTING = 1
_CONNECTED = 2
_BACKOFF = 3

# What an accepted connection carries, decided by the first frame after the handshake.
_IN_HANDSHAKE = 0  # waiting for the peer's handshake
_IN_OPEN = 1  # handshake done, nothing else yet
_IN_RAFT = 2
_IN_SNAPSHOT = 3
_IN_CLOSED = 4


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


def make_ssl_contexts(
    ca_file: str, cert_file: str, key_file: str, *, check_hostname: bool = False
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Mutual TLS between stores: (server context, client context). Both present
    `cert_file` and require the peer's certificate to chain to `ca_file`. A store's identity
    is "holds a certificate of the cluster CA"; host names are checked only on request (store
    addresses are often bare IPs absent from certificates)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_file)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    client.minimum_version = ssl.TLSVersion.TLSv1_2
    client.check_hostname = check_hostname
    client.verify_mode = ssl.CERT_REQUIRED
    client.load_cert_chain(cert_file, key_file)
    return server, client


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not TCP (tests may use other sockets)
        pass


class _HandshakeRejected(Exception):
    pass


class _SnapshotAborted(Exception):
    pass


class _Outbound(asyncio.Protocol):
    """The dialing side of one connection (a raft link or a snapshot transfer).

    Invariant: `handshake` resolves (or fails) exactly once; `lost` resolves when the
    connection is gone; after the handshake only SNAPSHOT_ACK frames are expected.
    """

    def __init__(self, t: Transport, store_id: int) -> None:
        loop = t._loop_or_raise()
        self._t = t
        self.store_id = store_id
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(t.max_frame)
        # The remote's handshake answer.
        self.handshake: asyncio.Future[Handshake] = loop.create_future()
        # Resolved (with None) in connection_lost; `error` says why.
        self.lost: asyncio.Future[None] = loop.create_future()
        self.error: Exception | None = None
        # The socket's write buffer is over WRITE_HIGH.
        self.paused = False
        self.on_resume: Callable[[], None] | None = None
        self._drain: asyncio.Future[None] | None = None
        # Snapshot acks received and not yet taken; a waiter for the next one.
        self._acks: list[SnapshotAck] = []
        self._ack_waiter: asyncio.Future[SnapshotAck] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr = cast(asyncio.Transport, transport)
        self.transport = tr
        _set_nodelay(tr)
        tr.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        tr.write(encode_handshake(self._t._our_handshake()))

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except FrameError as e:
            self._t._count_bad(e.reason)
            self.fail(ConnectionError(f"bad frame from store {self.store_id}: {e}"))
            return
        for kind, msg in frames:
            if not self.handshake.done():
                if kind != HANDSHAKE:
                    self._t._count_bad("no_handshake")
                    self.fail(ConnectionError("answer without a handshake"))
                    return
                self.handshake.set_result(cast(Handshake, msg))
            elif kind == SNAPSHOT_ACK:
                ack = cast(SnapshotAck, msg)
                w = self._ack_waiter
                if w is not None and not w.done():
                    self._ack_waiter = None
                    w.set_result(ack)
                else:
                    self._acks.append(ack)
            else:
                self._t._count_bad("unexpected_kind")
                self.fail(ConnectionError(f"unexpected frame kind {kind} on an outbound connection"))
                return

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            self.error = exc if exc is not None else ConnectionError("connection closed by peer")
        err = self.error
        if not self.handshake.done():
            self.handshake.set_exception(err)
        w = self._ack_waiter
        if w is not None and not w.done():
            w.set_exception(err)
        d = self._drain
        if d is not None and not d.done():
            d.set_exception(err)
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        d = self._drain
        if d is not None and not d.done():
            d.set_result(None)
        if self.on_resume is not None:
            self.on_resume()

    # helpers

    def fail(self, err: Exception) -> None:
        """Close the connection for a reason (pending waiters get `err`)."""
        if self.error is None:
            self.error = err
        if self.transport is not None:
            self.transport.abort()

    async def drain(self) -> None:
        if self.lost.done():
            raise self.error or ConnectionError("connection lost")
        if self.paused:
            self._drain = self._t._loop_or_raise().create_future()
            await self._drain

    async def next_ack(self, timeout: float) -> SnapshotAck:
        if self._acks:
            return self._acks.pop(0)
        if self.lost.done():
            raise self.error or ConnectionError("connection lost")
        self._ack_waiter = self._t._loop_or_raise().create_future()
        return await asyncio.wait_for(self._ack_waiter, timeout)


class _Link:
    """One outbound raft connection to a store: its queue, state and reconnect backoff.

    Invariant: queued_bytes == sum(len(f) for f in queue) <= max_pending_bytes.
    Invariant: state == _CONNECTED iff conn is not None (its handshake was verified).
    Invariant: flush is not None only while state == _CONNECTED.
    """

    __slots__ = ("store_id", "queue", "queued_bytes", "state", "conn", "flush", "backoff",
                 "task", "attempts")

    def __init__(self, store_id: int) -> None:
        self.store_id = store_id
        self.queue: list[bytes] = []
        self.queued_bytes = 0
        self.state = _IDLE
        self.conn: _Outbound | None = None
        # The scheduled flush (at most one per loop iteration).
        self.flush: asyncio.Handle | None = None
        # The next backoff delay in seconds (before jitter).
        self.backoff = BACKOFF_MIN
        # The dial / watch task, alive from CONNECTING until the end of BACKOFF.
        self.task: asyncio.Task[None] | None = None
        # Connection attempts so far.
        self.attempts = 0


class _Store:
    __slots__ = ("addr", "links", "rr")

    def __init__(self, store_id: int, addr: str, n: int) -> None:
        self.addr = addr
        self.links = [_Link(store_id) for _ in range(n)]
        # Round robin over links when connections_per_store > 1 (no order across links).
        self.rr = 0


class _Inbound(asyncio.Protocol):
    """An accepted connection: handshake check, then RAFT frames or one snapshot transfer.

    With `server_ssl`, TLS runs here over memory BIOs (`SSLContext.wrap_bio`) rather than by
    `create_server(ssl=...)` or `loop.start_tls`: a failed TLS handshake is then ours to count,
    and it behaves the same on asyncio's and uvloop's loops (uvloop delivers the ClientHello
    before a `start_tls` could take the connection over).
    """

    def __init__(self, t: Transport) -> None:
        self._t = t
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(t.max_frame)
        self.state = _IN_HANDSHAKE
        self.peer_store = 0
        self.peer_name = "?"
        self._timer: asyncio.TimerHandle | None = None
        # TLS (server_ssl set): the TLS object and its BIOs; _tls_up once its handshake is done.
        self._tls: ssl.SSLObject | None = None
        self._tls_in = ssl.MemoryBIO()
        self._tls_out = ssl.MemoryBIO()
        self._tls_up = False
        # Snapshot reception (state == _IN_SNAPSHOT).
        self._snap_header = b""
        self._snap_total = 0
        self._snap_size = 0
        self._snap_parts: list[bytes] = []
        self._snap_slot = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = self._t
        tr = self.transport = cast(asyncio.Transport, transport)
        peer = tr.get_extra_info("peername")
        self.peer_name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        t._inbound.add(self)
        _set_nodelay(tr)
        tr.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self._timer = t._loop_or_raise().call_later(t.connect_timeout, self._handshake_timeout)
        if t.server_ssl is not None:
            self._tls = t.server_ssl.wrap_bio(self._tls_in, self._tls_out, server_side=True)

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.state == _IN_HANDSHAKE:
            if self._tls is not None and not self._tls_up:
                self._t.stats.tls_handshake_failures += 1
            self._t._count_bad("handshake_timeout")
            self._close("handshake_timeout", f"no handshake in {self._t.connect_timeout:.1f}s")

    def _write(self, data: bytes) -> None:
        tr = self.transport
        assert tr is not None
        if self._tls is None:
            tr.write(data)
        else:
            self._tls.write(data)
            self._tls_flush()

    def _tls_flush(self) -> None:
        out = self._tls_out.read()
        if out and self.transport is not None:
            self.transport.write(out)

    def _close(self, reason: str, detail: str, *, abort: bool = True) -> None:
        log.warning("closing connection from %s (store %d): %s: %s", self.peer_name,
                    self.peer_store, reason, detail)
        tr = self.transport
        if tr is not None:
            if abort:
                tr.abort()
            else:
                tr.close()  # flush what we wrote (a refusal) first
        self._gone()

    def _bad(self, reason: str, detail: str) -> None:
        self._t._count_bad(reason)
        self._close(reason, detail)

    def data_received(self, data: bytes) -> None:
        if self._tls is None:
            self._received(data)
            return
        # TLS: decrypt what arrived, then handle the plaintext as a plain connection would.
        tls = self._tls
        self._tls_in.write(data)
        if not self._tls_up:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                self._tls_flush()
                return
            except (ssl.SSLError, OSError) as e:
                self._tls_flush()  # the alert, if any
                self._t.stats.tls_handshake_failures += 1
                self._close("tls_handshake_failed", repr(e))
                return
            self._tls_up = True
        while self.state != _IN_CLOSED:
            try:
                plain = tls.read(1 << 18)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify
                self.eof_received()
                self._close("closed", "TLS close_notify")
                return
            except (ssl.SSLError, OSError) as e:
                self._bad("tls_error", repr(e))
                return
            if not plain:
                break
            self._received(plain)
        self._tls_flush()

    def _received(self, data: bytes) -> None:
        if self.state == _IN_CLOSED:
            return
        self._t.stats.bytes_received += len(data)
        try:
            frames = self.decoder.feed(data)
        except FrameError as e:
            self._bad(e.reason, str(e))
            return
        t = self._t
        for kind, msg in frames:
            state = self.state
            if kind == RAFT and state == _IN_RAFT:  # the hot path
                batch = cast(BatchRaftMessage, msg)
                if batch.from_store_id != self.peer_store:
                    # A frame is dropped, the connection stays (its other frames are fine).
                    t._count_bad("store_mismatch")
                    continue
                t._deliver(self.peer_store, batch)
            elif state == _IN_HANDSHAKE:
                if kind != HANDSHAKE:
                    self._bad("no_handshake", f"frame kind {kind} before the handshake")
                    return
                if not self._handshake(cast(Handshake, msg)):
                    return
            elif kind == RAFT and state == _IN_OPEN:
                self.state = _IN_RAFT
                batch = cast(BatchRaftMessage, msg)
                if batch.from_store_id != self.peer_store:
                    t._count_bad("store_mismatch")
                    continue
                t._deliver(self.peer_store, batch)
            elif kind == SNAPSHOT_CHUNK and state in (_IN_OPEN, _IN_SNAPSHOT):
                if not self._snapshot_chunk(cast(SnapshotChunk, msg)):
                    return
            else:
                self._bad("unexpected_kind", f"frame kind {kind} in connection state {state}")
                return
            if self.state == _IN_CLOSED:
                return

    def _handshake(self, hs: Handshake) -> bool:
        t = self._t
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        why = t._check_handshake(hs, expect_store=0)
        if why:
            t.stats.handshake_rejects += 1
            self._close("handshake_rejected", why)
            return False
        self.peer_store = hs.store_id
        self.state = _IN_OPEN
        self._write(encode_handshake(t._our_handshake()))
        t._peer_info(hs)
        return True

    def _ack(self, status: SnapshotStatus, reason: str = "") -> None:
        self._write(encode_snapshot_ack(SnapshotAck(status=status, reason=reason)))

    def _snapshot_chunk(self, chunk: SnapshotChunk) -> bool:
        t = self._t
        if self.state == _IN_OPEN:
            if t.on_snapshot is None:
                t.stats.snapshots_refused += 1
                self._ack(SnapshotRefused, "this store takes no snapshots")
                self._close("snapshot_refused", "no on_snapshot callback", abort=False)
                return False
            if t._snapshots_receiving >= t.max_concurrent_snapshots:
                t.stats.snapshots_refused += 1
                self._ack(SnapshotRefused, "too many concurrent snapshots")
                self._close("snapshot_refused", f"{t._snapshots_receiving} receptions running",
                            abort=False)
                return False
            t._snapshots_receiving += 1
            self._snap_slot = True
            self.state = _IN_SNAPSHOT
            self._snap_header = chunk.header
            self._snap_total = chunk.total_size
            self._ack(SnapshotAccepted)
        if chunk.data:
            self._snap_size += len(chunk.data)
            if self._snap_size > self._snap_total:
                self._snapshot_failed("bad_snapshot",
                                      f"{self._snap_size} bytes, announced {self._snap_total}")
                return False
            self._snap_parts.append(chunk.data)
        if not chunk.last:
            return True
        if self._snap_size != self._snap_total:
            self._snapshot_failed("bad_snapshot",
                                  f"{self._snap_size} bytes, announced {self._snap_total}")
            return False
        data = b"".join(self._snap_parts)
        self._snap_parts = []
        self._release_snapshot_slot()
        try:
            assert t.on_snapshot is not None
            t.on_snapshot(self.peer_store, self._snap_header, data)
        except Exception:
            t.stats.callback_errors += 1
            t.stats.snapshots_receive_failed += 1
            log.exception("on_snapshot from store %d failed", self.peer_store)
            self._ack(SnapshotFailed, "the store could not take the snapshot")
        else:
            t.stats.snapshots_received += 1
            self._ack(SnapshotReceived)
        # The transfer is over; the sender closes the connection.
        self.state = _IN_OPEN
        self._snap_header = b""
        self._snap_total = self._snap_size = 0
        return True

    def _snapshot_failed(self, reason: str, detail: str) -> None:
        self._t.stats.snapshots_receive_failed += 1
        self._release_snapshot_slot()
        self.state = _IN_OPEN  # counted here, not again in _gone()
        self._snap_parts = []
        self._ack(SnapshotFailed, reason)
        self._t._count_bad(reason)
        self._close(reason, detail, abort=False)

    def _release_snapshot_slot(self) -> None:
        if self._snap_slot:
            self._snap_slot = False
            self._t._snapshots_receiving -= 1

    def eof_received(self) -> bool | None:
        try:
            self.decoder.eof()
        except FrameError as e:
            self._t._count_bad(e.reason)
            log.warning("connection from %s (store %d) ended mid-frame: %s", self.peer_name,
                        self.peer_store, e)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()

    def _gone(self) -> None:
        if self.state == _IN_CLOSED and self not in self._t._inbound:
            return
        if self.state == _IN_SNAPSHOT:
            self._t.stats.snapshots_receive_failed += 1
        self.state = _IN_CLOSED
        self._snap_parts = []
        self._release_snapshot_slot()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._t._inbound.discard(self)


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
        self._stores: dict[int, _Store] = {}
        # Accepted connections still open.
        self._inbound: set[_Inbound] = set()
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
            lambda: _Inbound(self), host or None, port, reuse_address=True
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
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # addresses

    def add_store(self, store_id: int, peer_addr: str) -> None:
        """Where `store_id` listens; a changed address drops the current connections (the next
        send dials the new one)."""
        parse_addr(peer_addr)
        st = self._stores.get(store_id)
        if st is None:
            self._stores[store_id] = _Store(store_id, peer_addr, self.connections_per_store)
        elif st.addr != peer_addr:
            st.addr = peer_addr
            for link in st.links:
                self._drop_link_connection(link)

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
        if state == _BACKOFF:
            self.stats.dropped_unreachable += 1
            return
        if link.queued_bytes + len(frame) > self.max_pending_bytes:
            self.stats.dropped_frames += 1
            return
        link.queue.append(frame)
        link.queued_bytes += len(frame)
        if state == _CONNECTED:
            if link.flush is None:
                conn = link.conn
                assert conn is not None
                if not conn.paused:
                    link.flush = self._loop_or_raise().call_soon(self._flush, link)
        elif state == _IDLE:
            link.state = _CONNECTING
            link.task = self._spawn(self._run_link(link))

    def _flush(self, link: _Link) -> None:
        link.flush = None
        conn = link.conn
        if conn is None or conn.paused or not link.queue or conn.transport is None:
            return
        queue = link.queue
        conn.transport.writelines(queue)
        self.stats.frames_sent += len(queue)
        self.stats.bytes_sent += link.queued_bytes
        link.queue = []
        link.queued_bytes = 0

    def _schedule_flush(self, link: _Link) -> None:
        if link.flush is None and link.queue and link.state == _CONNECTED:
            link.flush = self._loop_or_raise().call_soon(self._flush, link)

    async def _run_link(self, link: _Link) -> None:
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
            except (TimeoutError, OSError, _HandshakeRejected) as e:
                log.info("store %d unreachable at %s: %s", link.store_id, st.addr, e)
            else:
                link.conn = conn
                link.state = _CONNECTED
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
            link.state = _BACKOFF
            self._report_unreachable(link.store_id)
            delay = link.backoff * (1 + self._rng.uniform(-BACKOFF_JITTER, BACKOFF_JITTER))
            link.backoff = min(link.backoff * 2, BACKOFF_MAX)
            await asyncio.sleep(delay)
        finally:
            link.task = None
            link.state = _IDLE
            link.conn = None

    def _drop_link_connection(self, link: _Link) -> None:
        if link.conn is not None:
            link.conn.fail(ConnectionResetError("closed locally"))
        if self._closed and link.task is not None:
            link.task.cancel()

    async def _dial(self, store_id: int, addr: str) -> _Outbound:
        """Connect to `store_id` at `addr` and exchange handshakes; raises OSError,
        TimeoutError or _HandshakeRejected."""
        loop = self._loop_or_raise()
        host, port = parse_addr(addr)
        conn = _Outbound(self, store_id)
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
            raise _HandshakeRejected(why)
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
        conn: _Outbound | None = None
        try:
            st = self._stores.get(store_id)
            if st is None or self._closed:
                raise _SnapshotAborted(f"no address for store {store_id}")
            conn = await self._dial(store_id, st.addr)
            tr = conn.transport
            assert tr is not None
            total = len(data)
            tr.write(encode_snapshot_chunk(
                SnapshotChunk(header=header, total_size=total, last=total == 0)))
            ack = await conn.next_ack(self.snapshot_ack_timeout)
            if ack.status != SnapshotAccepted:
                raise _SnapshotAborted(f"refused: {ack.reason or ack.status}")
            for off in range(0, total, SNAPSHOT_CHUNK_SIZE):
                end = off + SNAPSHOT_CHUNK_SIZE
                tr.write(encode_snapshot_chunk(SnapshotChunk(data=data[off:end], last=end >= total)))
                if conn._acks:  # the receiver gave up early
                    break
                await conn.drain()
            ack = await conn.next_ack(self.snapshot_ack_timeout)
            if ack.status != SnapshotReceived:
                raise _SnapshotAborted(f"receiver failed: {ack.reason or ack.status}")
            ok = True
        except (TimeoutError, OSError, _HandshakeRejected, _SnapshotAborted) as e:
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
        host, _ = parse_addr(self.listen_addr)
        return Handshake(cluster_id=self.cluster_id, store_id=self.store_id,
                         peer_addr=f"{host}:{self._port}", client_addr=self.client_addr,
                         admin_addr=self.admin_addr)

    def _check_handshake(self, hs: Handshake, *, expect_store: int) -> str:
        """Why `hs` is refused, or ""."""
        if hs.cluster_id != self.cluster_id:
            return f"cluster id {hs.cluster_id}, ours is {self.cluster_id}"
        if hs.store_id == 0:
            return "store id 0"
        if hs.store_id == self.store_id:
            return f"store id {hs.store_id} is our own"
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
