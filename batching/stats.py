"""`BatchingStats`: what the batching layer counts, in plain ints (the metrics layer reads them
once per round and exports them; nothing here imports prometheus)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BatchingStats", "MAX_ROUND_SAMPLES"]

# Per-round samples kept until the metrics layer takes them (older ones beyond this are
# dropped: a store whose metrics are never flushed does not grow).
MAX_ROUND_SAMPLES = 4096


@dataclass(slots=True)
class BatchingStats:
    """Counters since the batcher was created. Updated on the store's thread only (the writer
    thread records per-round figures in the `Round`, folded in at `poll_completed`)."""

    # Rounds handed to the writer, and rounds acknowledged (committed, hooks run,
    # `on_persist_ready` called).
    rounds: int = 0
    rounds_persisted: int = 0
    # Readies handed off (one per region per round, usually); the most in one round.
    readies: int = 0
    max_readies_per_round: int = 0
    # Entries and snapshots written.
    entries: int = 0
    snapshots: int = 0
    # Approximate bytes of the committed write batches (keys + values).
    bytes: int = 0
    # Durable commits of a non-empty batch: one per round whatever the number of regions.
    fsyncs: int = 0
    # Seconds spent in `Engine.write` (on the writer thread), in all and at most for one round.
    commit_seconds: float = 0.0
    max_commit_seconds: float = 0.0
    # Rounds whose batch carried a raft WAL checkpoint.
    checkpoints: int = 0
    # A leader's messages handed back at once, and messages held until their round was
    # durable (then released).
    messages_early: int = 0
    messages_held: int = 0
    # (commit seconds, readies) of each acknowledged round not yet taken by `take_samples`.
    round_samples: list[tuple[float, int]] = field(default_factory=list)

    def add_round_sample(self, commit_seconds: float, readies: int) -> None:
        samples = self.round_samples
        if len(samples) < MAX_ROUND_SAMPLES:
            samples.append((commit_seconds, readies))

    def take_samples(self) -> list[tuple[float, int]]:
        """The per-round samples since the last call (for histograms)."""
        samples, self.round_samples = self.round_samples, []
        return samples
