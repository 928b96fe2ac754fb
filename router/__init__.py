"""The router: everything between one store and the others.

- `codec`: the store-to-store wire codec (sans-I/O): length-prefixed HANDSHAKE, RAFT,
  SNAPSHOT_CHUNK and SNAPSHOT_ACK frames.
- `lanes`: per-destination-store outbound batching (sans-asyncio): a round's raft messages
  become one frame per remote store.
- `transport`: the asyncio transport, `Transport` (import it from `router.transport`): the
  store-to-store connections, their handshakes, raft frames and snapshot transfers. Its parts:
  `outbound` (dialed connections, links and their backoff), `inbound` (accepted connections,
  snapshot reception), `sockopts` (socket settings) and `tls` (mutual TLS contexts).

This package exports only the sans-asyncio parts, so importing it pulls in no event loop.
"""

from .codec import (
    DEFAULT_MAX_FRAME,
    HANDSHAKE,
    RAFT,
    FrameDecoder,
    FrameError,
    encode_batch,
    encode_frame,
    encode_handshake,
)
from .lanes import LaneStats, OutboundLanes

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HANDSHAKE",
    "RAFT",
    "FrameDecoder",
    "FrameError",
    "LaneStats",
    "OutboundLanes",
    "encode_batch",
    "encode_frame",
    "encode_handshake",
]
