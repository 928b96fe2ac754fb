"""The router: per-store outbound batching and the store-to-store wire codec (sans-asyncio
parts; the asyncio transport comes with issue 6)."""

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
