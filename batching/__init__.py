"""Ready batching: every region's Ready of a round in ONE engine write batch, one commit (one
fsync) per round, persistence acknowledged by Ready number (raft-rs 0.7 async-ready API).

Sans-asyncio (docs/architecture.md, "Import rules"): the store's thread drives a `Batcher`
(`add_ready`, `submit`, `poll_completed`); in pipelined mode one writer thread commits round N
while round N+1 is collected and wakes the event loop through the `on_complete` callback. See `batcher` for the
protocol and the fault rules.
"""

from .batcher import Batcher
from .errors import BatcherClosed, BatchingError, BatchingFatalError
from .node import ReadyNode
from .round import Round
from .stats import BatchingStats
from .writer import InlineWriter, RoundWriter, ThreadWriter

__all__ = [
    "Batcher",
    "Round",
    "ReadyNode",
    "BatchingStats",
    "BatchingError",
    "BatchingFatalError",
    "BatcherClosed",
    "RoundWriter",
    "InlineWriter",
    "ThreadWriter",
]
