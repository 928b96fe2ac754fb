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

from .codec import encode_batch

__all__ = ["LaneStats", "OutboundLanes"]

# Per message framing overhead inside a BatchRaftMessage (tag + length varint), an upper bound.
_PER_MSG_OVERHEAD = 6


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

    __slots__ = ("store_id", "max_frame_bytes", "max_lane_messages", "_lanes", "stats", "clock")

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
        self._lanes: dict[int, list[RaftMessage]] = {}
        self.stats = LaneStats()
        # The sender's logical clock (ticks), stamped on frames for store-level liveness.
        self.clock = 0

    def push(self, to_store: int, msg: RaftMessage) -> bool:
        """Queue a message for `to_store`; False (and counted) if the lane is full."""
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
        limit) and empty the lanes. Returns {store_id: [frame, ...]}."""
        out: dict[int, list[bytes]] = {}
        for store, lane in self._lanes.items():
            if not lane:
                continue
            frames: list[bytes] = []
            batch = BatchRaftMessage(from_store_id=self.store_id, last_observed_time=self.clock)
            size = 0
            for m in lane:
                msz = m.ByteSize() + _PER_MSG_OVERHEAD
                if size and size + msz > self.max_frame_bytes:
                    frames.append(self._seal(batch))
                    batch = BatchRaftMessage(from_store_id=self.store_id, last_observed_time=self.clock)
                    size = 0
                batch.msgs.append(m)
                size += msz
            frames.append(self._seal(batch))
            out[store] = frames
            lane.clear()
        return out

    def _seal(self, batch: BatchRaftMessage) -> bytes:
        frame = encode_batch(batch)
        st = self.stats
        st.frames += 1
        st.messages_framed += len(batch.msgs)
        st.bytes_framed += len(frame)
        return frame
