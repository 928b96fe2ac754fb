"""`Round`: the Readies of every region collected in one round and the one write batch that
persists them all.

Life of a round: *open* (the batcher adds Readies and the store may add its own writes to
`batch`), *submitted* (handed to a writer; the store no longer touches it), *finished* (the
writer committed the batch or failed: `error`), *acknowledged* (the store's thread ran the
batch's commit hooks and called `on_persist_ready` for every Ready, in hand-off order).

Invariant: a round is acknowledged only if its batch was committed durably (`error is None`
and not `skipped`), and only after every earlier round was acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from multiraft.engine import Engine, WriteBatch
from multiraft.raft import Message

from .node import ReadyNode

__all__ = ["Round", "N", "commit_round", "write_in_order"]

N = TypeVar("N", bound=ReadyNode)


class Round(Generic[N]):
    """One round (module docstring). The store reads `held` (messages to send now that the
    round is durable), `acks` (the nodes acknowledged, e.g. to look for their next Ready) and
    the counters; the rest is the batching layer's."""

    __slots__ = (
        "number",
        "batch",
        "acks",
        "synced_nodes",
        "held",
        "urgent",
        "entries",
        "snapshots",
        "checkpoint",
        "error",
        "skipped",
        "synced",
        "bytes",
        "commit_seconds",
    )

    def __init__(self, number: int) -> None:
        # The round's sequence number (1, 2, ... per batcher).
        self.number = number
        # Every region's writes of this round (and the store's, if it adds some).
        self.batch = WriteBatch()
        # (node, Ready number) of every Ready handed off, in hand-off order.
        self.acks: list[tuple[N, int]] = []
        # The nodes of the Readies that raft needed written (`must_sync`: entries, a snapshot,
        # a term or vote), in hand-off order: the only ones whose acknowledgement may let
        # raft go on (commit, apply). The others' (commit indexes, messages) changes nothing.
        self.synced_nodes: list[N] = []
        # (node, persisted messages) to send once the round is durable, in hand-off order.
        self.held: list[tuple[N, list[Message]]] = []
        # Whether anything waits for this round to be durable: an entry, a term or vote, a
        # snapshot, a held message (raft's `must_sync`), or a write the store marked so
        # (`Batcher.mark_urgent`). A round that is not urgent holds only what recovery derives
        # again from the durable raft log (applied data, apply states, a commit index): it may
        # stay open and go out with a later round (`Batcher.submit(lazy=True)`).
        self.urgent = False
        # Entries and snapshots the round writes.
        self.entries = 0
        self.snapshots = 0
        # Whether the batch carries a raft WAL checkpoint.
        self.checkpoint = False
        # -- set by the writer --
        # The commit's exception, if it failed.
        self.error: BaseException | None = None
        # True when the round was not written because an earlier one failed.
        self.skipped = False
        # Whether the commit was a durable write of a non-empty batch (one fsync).
        self.synced = False
        # Approximate bytes of the batch, and seconds spent in `Engine.write`.
        self.bytes = 0
        self.commit_seconds = 0.0

    @property
    def readies(self) -> int:
        return len(self.acks)

    def persisted_messages(self) -> list[Message]:
        """Every held message, in hand-off order (for callers that do not need the node)."""
        return [m for _, msgs in self.held for m in msgs]

    def is_empty(self) -> bool:
        """Nothing to write and nothing to acknowledge."""
        return not self.acks and self.batch.is_empty()

    def __repr__(self) -> str:
        state = "failed" if self.error is not None else "skipped" if self.skipped else "ok"
        return (
            f"Round({self.number}, readies={len(self.acks)}, entries={self.entries}, "
            f"held={sum(len(m) for _, m in self.held)}, {state})"
        )


def commit_round(engine: Engine, rnd: Round[N], clock: Callable[[], float]) -> None:
    """Write `rnd.batch` durably and record the outcome in `rnd` (on the writing thread).
    Every exception of the engine is recorded, never raised: the batcher turns it into a
    `BatchingFatalError` on the store's thread."""
    batch = rnd.batch
    t0 = clock()
    try:
        engine.write(batch, sync=True)
    except Exception as e:
        rnd.error = e
    else:
        rnd.synced = not batch.is_empty()
        rnd.bytes = batch.approximate_size()
    rnd.commit_seconds = clock() - t0


def write_in_order(
    engine: Engine, rnd: Round[N], failed: bool, clock: Callable[[], float]
) -> bool:
    """Commit `rnd` unless an earlier round failed (then it is marked `skipped`: it would
    build on writes that are not on disk). Returns whether the writer has failed now."""
    if failed:
        rnd.skipped = True
        return True
    commit_round(engine, rnd, clock)
    return rnd.error is not None
