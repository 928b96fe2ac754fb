"""The accepting side of the transport: the `Inbound` protocol (one accepted connection: the
handshake check, then RAFT frames or one snapshot reception; with `server_ssl`, TLS over memory
BIOs) and its connection states."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, cast

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
    HANDSHAKE,
    RAFT,
    SNAPSHOT_CHUNK,
    FrameDecoder,
    FrameError,
    encode_handshake,
    encode_snapshot_ack,
)
from .sockopts import WRITE_HIGH, WRITE_LOW, set_nodelay

if TYPE_CHECKING:
    from .transport import Transport

__all__ = ["Inbound"]

# The transport's logger: one name to configure for the whole transport.
log = logging.getLogger("router.transport")

# What an accepted connection carries, decided by the first frame after the handshake.
_IN_HANDSHAKE = 0  # waiting for the peer's handshake
_IN_OPEN = 1  # handshake done, nothing else yet
_IN_RAFT = 2
_IN_SNAPSHOT = 3
_IN_CLOSED = 4


class Inbound(asyncio.Protocol):
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
        set_nodelay(tr)
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
