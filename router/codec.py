"""The store-to-store wire codec (sans-I/O, like h11): length-prefixed frames.

A frame is `[u32 BE length][u8 kind][payload]`, length counting the kind byte and the
payload. Kinds: HANDSHAKE (serverpb.Handshake, the first frame each side sends),
RAFT (serverpb.BatchRaftMessage), SNAPSHOT_CHUNK (serverpb.SnapshotChunk) and SNAPSHOT_ACK
(serverpb.SnapshotAck), the last two only on a snapshot connection. `FrameDecoder.feed()` accepts bytes as they arrive and
returns the complete frames; anything malformed raises `FrameError` with a reason code (the
transport closes that connection and counts the reason; the store keeps serving).
"""

from __future__ import annotations

import struct

from google.protobuf.message import DecodeError

from multiraft.proto.serverpb_pb2 import BatchRaftMessage, Handshake, SnapshotAck, SnapshotChunk

__all__ = [
    "HANDSHAKE",
    "RAFT",
    "SNAPSHOT_CHUNK",
    "SNAPSHOT_ACK",
    "DEFAULT_MAX_FRAME",
    "FrameError",
    "encode_frame",
    "encode_handshake",
    "encode_batch",
    "encode_snapshot_chunk",
    "encode_snapshot_ack",
    "FrameDecoder",
    "Frame",
]

HANDSHAKE = 1
RAFT = 2
SNAPSHOT_CHUNK = 3
SNAPSHOT_ACK = 4
_KINDS = (HANDSHAKE, RAFT, SNAPSHOT_CHUNK, SNAPSHOT_ACK)
_HEADER = struct.Struct(">IB")
# The largest frame accepted (64 MiB by default: docs/architecture.md, "Defaults, and why").
DEFAULT_MAX_FRAME = 64 << 20

Frame = Handshake | BatchRaftMessage | SnapshotChunk | SnapshotAck


class FrameError(Exception):
    """A malformed frame; `reason` is a stable label for the bad-frames counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def encode_frame(kind: int, payload: bytes) -> bytes:
    return _HEADER.pack(len(payload) + 1, kind) + payload


def encode_handshake(hs: Handshake) -> bytes:
    return encode_frame(HANDSHAKE, hs.SerializeToString())


def encode_batch(batch: BatchRaftMessage) -> bytes:
    return encode_frame(RAFT, batch.SerializeToString())


def encode_snapshot_chunk(chunk: SnapshotChunk) -> bytes:
    return encode_frame(SNAPSHOT_CHUNK, chunk.SerializeToString())


def encode_snapshot_ack(ack: SnapshotAck) -> bytes:
    return encode_frame(SNAPSHOT_ACK, ack.SerializeToString())


class FrameDecoder:
    """Incremental decoder of one connection's byte stream.

    Invariant: `_buf[_pos:]` holds the bytes received and not yet returned as frames.
    """

    __slots__ = ("max_frame", "_buf", "_pos")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0

    def pending_bytes(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[tuple[int, Frame]]:
        """Add received bytes; return the frames now complete, in order."""
        self._buf += data
        out: list[tuple[int, Frame]] = []
        buf = self._buf
        while True:
            avail = len(buf) - self._pos
            if avail < _HEADER.size:
                break
            length, kind = _HEADER.unpack_from(buf, self._pos)
            if length < 1 or length > self.max_frame:
                raise FrameError("oversized" if length > self.max_frame else "bad_length",
                                 f"frame length {length} (max {self.max_frame})")
            if kind not in _KINDS:
                raise FrameError("unknown_kind", f"frame kind {kind}")
            if avail < 4 + length:
                break
            start = self._pos + _HEADER.size
            payload = bytes(buf[start : self._pos + 4 + length])
            self._pos += 4 + length
            out.append((kind, _parse(kind, payload)))
        # Compact once the consumed prefix is large.
        if self._pos > 1 << 16 and self._pos * 2 > len(buf):
            del buf[: self._pos]
            self._pos = 0
        return out

    def eof(self) -> None:
        """The peer closed the connection: leftover bytes are a truncated frame."""
        if self.pending_bytes():
            raise FrameError("truncated", f"{self.pending_bytes()} bytes of an unfinished frame")


_MESSAGES: dict[int, type[Frame]] = {
    HANDSHAKE: Handshake,
    RAFT: BatchRaftMessage,
    SNAPSHOT_CHUNK: SnapshotChunk,
    SNAPSHOT_ACK: SnapshotAck,
}


def _parse(kind: int, payload: bytes) -> Frame:
    msg: Frame = BatchRaftMessage() if kind == RAFT else _MESSAGES[kind]()
    try:
        msg.ParseFromString(payload)
    except DecodeError as e:
        raise FrameError("bad_protobuf", str(e)) from e
    return msg
