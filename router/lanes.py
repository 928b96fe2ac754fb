"""Per-destination-store outbound batching (sans-asyncio).

Every raft message a round produces for a remote store goes into that store's lane; at the end
of the round `drain()` turns each lane into ONE `BatchRaftMessage` frame (split only past
`max_frame_bytes`), so frames per round = destination stores, not regions. Lanes are bounded:
a message pushed into a full lane is dropped and counted (Raft retransmits), so memory stays
bounded while a peer store is slow or down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from multiraft.proto.serverpb_pb2 import BatchRaftMessage, RaftMessage

from .codec import RAFT, encode_frame

__all__ = ["LaneStats", "OutboundLanes", "varint"]

# Per message framing overhead inside a BatchRaftMessage (tag + length varint), an upper bound.
_PER_MSG_OVERHEAD = 6


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# BatchRaftMessage.msgs is field 1, length-delimited: tag 0x0a + varint length. Precomputed
# for envelopes under 16 KiB (heartbeats, small appends); computed for bigger ones.
_MSG_PREFIX = [b"\x0a" + varint(n) for n in range(1 << 14)]


def _prefix(n: int) -> bytes:
    return _MSG_PREFIX[n] if n < 1 << 14 else b"\x0a" + varint(n)


def envelope(header: bytes, message: bytes) -> bytes:
    """A serialized `RaftMessage`: `header` (the envelope's other fields, serialized once and
    reused for every message between the same two peers in the same region epoch) followed
    by the serialized eraftpb `Message` as field 4 (protobuf takes fields in any order)."""
    n = len(message)
    return b"".join((header, b"\x22", _MSG_PREFIX[n][1:] if n < 1 << 14 else varint(n), message))


@dataclass(slots=True)
class LaneStats:
    """Plain counters (metrics/ exports them)."""

    messages_pushed: int = 0
    messages_dropped: int = 0
    frames: int = 0
    messages_framed: int = 0
    bytes_framed: int = 0


class OutboundLanes:
    """Invariant: every lane holds at most `max_lane_messages` messages."""

    __slots__ = (
        "store_id", "max_frame_bytes", "max_lane_messages", "_lanes", "stats", "clock", "leaders",
        "features",
    )

    def __init__(
        self,
        store_id: int,
        *,
        max_frame_bytes: int = 4 << 20,
        max_lane_messages: int = 16384,
    ) -> None:
        self.store_id = store_id
        self.max_frame_bytes = max_frame_bytes
        self.max_lane_messages = max_lane_messages
        # Envelopes, as messages or already serialized (`envelope`).
        self._lanes: dict[int, list[RaftMessage | bytes]] = {}
        self.stats = LaneStats()
        # The sender's logical clock (ticks), stamped on frames for store-level liveness.
        self.clock = 0
        # The sender's leader count, told to the other stores in every frame (None: not told).
        self.leaders: int | None = None
        # What the sender's code understands (bits), told in every frame (None: not told).
        self.features: int | None = None

    def push(self, to_store: int, msg: RaftMessage | bytes) -> bool:
        """Queue a message (or a serialized one) for `to_store`; False (and counted) if the
        lane is full."""
        lane = self._lanes.get(to_store)
        if lane is None:
            lane = self._lanes[to_store] = []
        if len(lane) >= self.max_lane_messages:
            self.stats.messages_dropped += 1
            return False
        lane.append(msg)
        self.stats.messages_pushed += 1
        return True

    def push_many(self, to_store: int, msgs: Iterable[RaftMessage]) -> int:
        """Queue messages; returns how many were dropped."""
        return sum(0 if self.push(to_store, m) else 1 for m in msgs)

    def pending(self, to_store: int) -> int:
        return len(self._lanes.get(to_store, ()))

    def drain(self) -> dict[int, list[bytes]]:
        """Encode every non-empty lane into frames (one per lane unless it exceeds the size
        limit) and empty the lanes. Returns {store_id: [frame, ...]}.

        A frame is a `BatchRaftMessage` built on the wire directly: each envelope's own
        serialization behind its field tag and length, then the batch's scalar fields
        (protobuf accepts fields in any order). This skips copying every envelope into a
        batch message and sizing it, ~3x cheaper per message (bench/router.py)."""
        out: dict[int, list[bytes]] = {}
        limit = self.max_frame_bytes
        for store, lane in self._lanes.items():
            if not lane:
                continue
            frames: list[bytes] = []
            parts: list[bytes] = []
            count = size = 0
            for m in lane:
                b = m if isinstance(m, bytes) else m.SerializeToString()
                pre = _prefix(len(b))
                msz = len(b) + len(pre)
                if count and size + msz > limit:
                    frames.append(self._seal(parts, count))
                    parts = []
                    count = size = 0
                parts.append(pre)
                parts.append(b)
                count += 1
                size += msz
            frames.append(self._seal(parts, count))
            out[store] = frames
            lane.clear()
        return out

    def _seal(self, parts: list[bytes], count: int) -> bytes:
        tail = BatchRaftMessage(
            from_store_id=self.store_id,
            last_observed_time=self.clock,
            leaders=self.leaders,
            features=self.features,
        )
        parts.append(tail.SerializeToString())
        frame = encode_frame(RAFT, b"".join(parts))
        st = self.stats
        st.frames += 1
        st.messages_framed += count
        st.bytes_framed += len(frame)
        return frame
