"""How a `RegionStorage`'s mutations reach the engine: the `RaftLogWriter` protocol, and
`DirectLog`, the writer that puts them straight into the region-major column families.

A writer turns each mutation of one region into write-batch operations. Two implementations:

- `DirectLog` (this module): entries in ``raft_log`` (key region id + index), hard state, conf
  state and truncated state in ``raft_state``, all in the caller's batch. Simple; a round that
  touches N regions dirties about N LMDB leaf pages.
- `WalRegion` (`raft_wal`): the round's changes of every region go into ONE ``raft_wal``
  record; a checkpoint moves them into the column families in bulk.

The storage tells the writer what changed and gets back, for an append, a *token*: the entries
become readable from the engine (so the storage may drop them from its cache) once the writer
calls the storage's `release(token)` callback with a token at least that large.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol

from multiraft.raft.eraftpb import HardState

from .engine import WriteBatch
from .keys import (
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    RAFT_LOG_KEY_LEN,
    conf_state_key,
    encode_truncated_state,
    hard_state_key,
    pack_raft_log_key,
    raft_log_bounds,
    truncated_state_key,
)

__all__ = ["RaftLogWriter", "DirectLog"]

_log_key = pack_raft_log_key


class RaftLogWriter(Protocol):
    """Writes one region's raft log and raft state changes into write batches.

    Every method takes the batch the change belongs to; a region's changes for one batch all
    come before its changes for any later batch (batches commit in that order).
    """

    def append(
        self,
        batch: WriteBatch,
        first: int,
        old_last: int,
        raws: list[bytes],
        size: int,
        hs: HardState | None,
    ) -> int:
        """Entries `[first, first + len(raws))` (serialized: `raws`, `size` bytes in all)
        replace the log from `first` on; `old_last` is the last index before; `hs`, if given,
        is a hard state to persist with them (the same as `hard_state` after). Returns the
        release token. The writer may keep `hs`: it is not mutated afterwards."""
        ...

    def append_one(
        self, batch: WriteBatch, index: int, raw: bytes, size: int, hs: HardState | None
    ) -> int:
        """`append(batch, index, index - 1, [raw], size, hs)`: one entry right after the last
        one (the hot path: one call per region per round)."""
        ...

    def hard_state(self, batch: WriteBatch, hs: HardState) -> None:
        """The hard state (kept, not mutated afterwards)."""
        ...

    def conf_state(self, batch: WriteBatch, raw: bytes) -> None:
        """The serialized conf state."""
        ...

    def compact(self, batch: WriteBatch, old_first: int, index: int, term: int) -> None:
        """Entries `[old_first, index]` are discarded; `(index, term)` is the new truncated
        state."""
        ...

    def reset(self, batch: WriteBatch, index: int, term: int, hs: HardState, cs: bytes) -> None:
        """A snapshot at `(index, term)`: the log becomes empty after `index`, with hard state
        `hs` and conf state `cs` (serialized)."""
        ...

    def destroy(self, batch: WriteBatch) -> None:
        """The region's raft log and raft state are deleted."""
        ...

    def has_pending(self) -> bool:
        """Whether a batch holding changes of this region is not committed yet."""
        ...


class DirectLog:
    """The `RaftLogWriter` of the region-major layout (module docstring).

    Tokens are batch sequence numbers: one commit hook per batch the region writes to releases
    that batch's entries once it is committed.

    Invariant: `seq_done <= seq_next`; the hooks of batches `[seq_done, seq_next)` have not
    run, and they must run in sequence order (checked).
    """

    __slots__ = (
        "_region_id",
        "_release",
        "_hs_key",
        "_seq_next",
        "_seq_done",
        "_cur_batch",
        "_cur_seq",
    )

    def __init__(self, region_id: int, release: Callable[[int], None]) -> None:
        self._region_id = region_id
        # The storage's callback: entries with tokens <= its argument are on disk.
        self._release = release
        self._hs_key = hard_state_key(region_id)
        # Sequence number of the next batch / of the next batch whose hook must run.
        self._seq_next = 0
        self._seq_done = 0
        # The batch written to last and its sequence number (more changes share its hook).
        self._cur_batch: WriteBatch | None = None
        self._cur_seq = -1

    def _seq(self, batch: WriteBatch) -> int:
        if self._cur_batch is batch:
            return self._cur_seq
        seq = self._seq_next
        batch.add_commit_hook(partial(self._committed, seq))
        self._seq_next = seq + 1
        self._cur_batch = batch
        self._cur_seq = seq
        return seq

    def _committed(self, seq: int) -> None:
        if seq != self._seq_done:
            raise AssertionError(
                f"region {self._region_id}: batches committed out of order "
                f"(batch {seq}, expected {self._seq_done})"
            )
        self._seq_done = seq + 1
        if self._cur_seq == seq:
            self._cur_batch = None
        self._release(seq)

    def has_pending(self) -> bool:
        return self._seq_next != self._seq_done

    def append(
        self,
        batch: WriteBatch,
        first: int,
        old_last: int,
        raws: list[bytes],
        size: int,
        hs: HardState | None,
    ) -> int:
        seq = self._cur_seq if self._cur_batch is batch else self._seq(batch)
        r = self._region_id
        n = len(raws)
        last = first + n - 1
        if last < old_last:
            batch.delete_range(CF_RAFT_LOG, _log_key(r, last + 1), _log_key(r, old_last + 1))
        if n == 1:
            items = [(_log_key(r, first), raws[0])]
        else:
            items = [(_log_key(r, i), raw) for i, raw in enumerate(raws, first)]
        batch.extend_trusted(CF_RAFT_LOG, items, size + RAFT_LOG_KEY_LEN * n)
        if hs is not None:
            raw = hs.SerializeToString()
            batch.extend_trusted(CF_RAFT_STATE, [(self._hs_key, raw)], 9 + len(raw))
        return seq

    def append_one(
        self, batch: WriteBatch, index: int, raw: bytes, size: int, hs: HardState | None
    ) -> int:
        seq = self._cur_seq if self._cur_batch is batch else self._seq(batch)
        batch.extend_trusted(
            CF_RAFT_LOG, [(_log_key(self._region_id, index), raw)], size + RAFT_LOG_KEY_LEN
        )
        if hs is not None:
            raw = hs.SerializeToString()
            batch.extend_trusted(CF_RAFT_STATE, [(self._hs_key, raw)], 9 + len(raw))
        return seq

    def hard_state(self, batch: WriteBatch, hs: HardState) -> None:
        if self._cur_batch is not batch:
            self._seq(batch)
        raw = hs.SerializeToString()
        batch.extend_trusted(CF_RAFT_STATE, [(self._hs_key, raw)], 9 + len(raw))

    def conf_state(self, batch: WriteBatch, raw: bytes) -> None:
        self._seq(batch)
        batch.put(CF_RAFT_STATE, conf_state_key(self._region_id), raw)

    def compact(self, batch: WriteBatch, old_first: int, index: int, term: int) -> None:
        self._seq(batch)
        r = self._region_id
        batch.delete_range(CF_RAFT_LOG, _log_key(r, old_first), _log_key(r, index + 1))
        batch.put(CF_RAFT_STATE, truncated_state_key(r), encode_truncated_state(index, term))

    def reset(self, batch: WriteBatch, index: int, term: int, hs: HardState, cs: bytes) -> None:
        self._seq(batch)
        r = self._region_id
        start, end = raft_log_bounds(r)
        batch.delete_range(CF_RAFT_LOG, start, end)
        batch.put(CF_RAFT_STATE, hard_state_key(r), hs.SerializeToString())
        batch.put(CF_RAFT_STATE, conf_state_key(r), cs)
        batch.put(CF_RAFT_STATE, truncated_state_key(r), encode_truncated_state(index, term))

    def destroy(self, batch: WriteBatch) -> None:
        self._seq(batch)
        r = self._region_id
        start, end = raft_log_bounds(r)
        batch.delete_range(CF_RAFT_LOG, start, end)
        for key in (hard_state_key(r), conf_state_key(r), truncated_state_key(r)):
            batch.delete(CF_RAFT_STATE, key)
