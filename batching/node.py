"""`ReadyNode`: what the batching layer needs from a raft group (a `RawNode` over a
`RegionStorage` is one as it is)."""

from __future__ import annotations

from typing import Protocol

from multiraft.engine import RegionStorage
from multiraft.raft import Ready

__all__ = ["ReadyNode"]


class ReadyNode(Protocol):
    """One region's raft node, seen from the batching layer (raft-rs 0.7 async-ready API)."""

    def store(self) -> RegionStorage:
        """The region's raft storage; the Ready's writes go through it."""
        ...

    def advance_append_async(self, rd: Ready) -> None:
        """The Ready's writes were handed to the storage (readable, not yet durable)."""
        ...

    def on_persist_ready(self, number: int) -> None:
        """Every Ready up to `number` is durable."""
        ...
