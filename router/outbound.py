"""The dialing side of the transport: the `Outbound` protocol (one dialed connection, a raft
link's or a snapshot transfer's), a raft `Link` with its queue, state and reconnect backoff, the
`RemoteStore` holding a remote store's links, and the errors that end a connection attempt or a
snapshot send. `Transport` drives them (the contract is in `transport`'s docstring)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from multiraft.proto.serverpb_pb2 import Handshake, SnapshotAck

from .codec import HANDSHAKE, SNAPSHOT_ACK, FrameDecoder, FrameError, encode_handshake
from .sockopts import WRITE_HIGH, WRITE_LOW, set_nodelay

if TYPE_CHECKING:
    from .transport import Transport

__all__ = [
    "BACKOFF",
    "BACKOFF_JITTER",
    "BACKOFF_MAX",
    "BACKOFF_MIN",
    "CONNECTED",
    "CONNECTING",
    "IDLE",
    "MAX_PENDING_ACKS",
    "HandshakeRejected",
    "Link",
    "Outbound",
    "SnapshotAborted",
    "RemoteStore",
]

# Snapshot acks an outbound connection holds unread, at most (a transfer gets two).
MAX_PENDING_ACKS = 2
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
BACKOFF_JITTER = 0.2

# Link states.
IDLE = 0
CONNECTING = 1
CONNECTED = 2
BACKOFF = 3


class HandshakeRejected(Exception):
    pass


class SnapshotAborted(Exception):
    pass


class Outbound(asyncio.Protocol):
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
        set_nodelay(tr)
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
                elif len(self._acks) < MAX_PENDING_ACKS:
                    self._acks.append(ack)
                else:
                    # A transfer gets two acks: more, unread, would pile up for as long as
                    # the remote sends them (a raft link reads none).
                    self._t._count_bad("unexpected_kind")
                    self.fail(ConnectionError(f"unasked snapshot acks from store {self.store_id}"))
                    return
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


class Link:
    """One outbound raft connection to a store: its queue, state and reconnect backoff.

    Invariant: queued_bytes == sum(len(f) for f in queue) <= max_pending_bytes.
    Invariant: state == CONNECTED iff conn is not None (its handshake was verified).
    Invariant: flush is not None only while state == CONNECTED.
    """

    __slots__ = ("store_id", "queue", "queued_bytes", "state", "conn", "flush", "backoff",
                 "task", "attempts")

    def __init__(self, store_id: int) -> None:
        self.store_id = store_id
        self.queue: list[bytes] = []
        self.queued_bytes = 0
        self.state = IDLE
        self.conn: Outbound | None = None
        # The scheduled flush (at most one per loop iteration).
        self.flush: asyncio.Handle | None = None
        # The next backoff delay in seconds (before jitter).
        self.backoff = BACKOFF_MIN
        # The dial / watch task, alive from CONNECTING until the end of BACKOFF.
        self.task: asyncio.Task[None] | None = None
        # Connection attempts so far.
        self.attempts = 0


class RemoteStore:
    """A remote store as the transport dials it: its address and its links."""

    __slots__ = ("addr", "links", "rr")

    def __init__(self, store_id: int, addr: str, n: int) -> None:
        self.addr = addr
        self.links = [Link(store_id) for _ in range(n)]
        # Round robin over links when connections_per_store > 1 (no order across links).
        self.rr = 0
