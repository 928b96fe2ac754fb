"""The raft log: storage (stable) + unstable tail, with commit / persist / apply marks
(raft-rs `raft_log.rs`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from .eraftpb import Entry, Snapshot
from .errors import Compacted, LogTemporarilyUnavailable, StorageError, Unavailable
from .log_unstable import Unstable
from .storage import GetEntriesContext, Storage
from .util import limit_size

__all__ = ["RaftLog"]

S = TypeVar("S", bound=Storage)

_log = logging.getLogger(__name__)


class RaftLog(Generic[S]):
    """The log of one raft node.

    Invariant: applied <= min(committed, persisted) — entries are applied only once they are
    both committed and persisted locally (raft-rs 0.7 async-ready rule).
    Invariant: committed <= last_index().
    Invariant: persisted < unstable.offset (unstable entries are by definition not persisted).
    """

    __slots__ = ("store", "unstable", "committed", "persisted", "applied")

    def __init__(self, store: S) -> None:
        first_index = store.first_index()
        last_index = store.last_index()
        # Contains all stable entries since the last snapshot.
        self.store: S = store
        # Contains all unstable entries and snapshot; they will be saved into storage.
        self.unstable = Unstable(last_index + 1)
        # The highest log position known to be in stable storage on a quorum of nodes.
        self.committed = first_index - 1
        # The highest log position known to be persisted in stable storage on this node.
        # Invariant: persisted < unstable.offset && applied <= persisted.
        self.persisted = last_index
        # The highest log position the application has been instructed to apply.
        # Invariant: applied <= committed.
        self.applied = first_index - 1

    def __repr__(self) -> str:
        return (
            f"committed={self.committed}, persisted={self.persisted}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, unstable.entries.len={len(self.unstable.entries)}"
        )

    # -- bounds and terms ------------------------------------------------------------------

    def first_index(self) -> int:
        snap = self.unstable.snapshot
        if snap is not None:
            return snap.metadata.index + 1
        return self.store.first_index()

    def last_index(self) -> int:
        u = self.unstable
        if u.entries:
            return u.offset + len(u.entries) - 1
        if u.snapshot is not None:
            return u.snapshot.metadata.index
        return self.store.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, idx: int) -> int:
        """The term of the entry at `idx`, 0 outside `[first_index() - 1, last_index()]`.
        Raises `Compacted` / `Unavailable` when the storage cannot answer."""
        u = self.unstable
        # Fast path: the entry is in the unstable tail (the common case on the hot path).
        off = idx - u.offset
        if 0 <= off < len(u.entries):
            return u.entries[off].term
        # The valid term range is [index of dummy entry, last index].
        dummy_idx = self.first_index() - 1
        if idx < dummy_idx or idx > self.last_index():
            return 0
        t = u.maybe_term(idx)
        if t is not None:
            return t
        try:
            return self.store.term(idx)
        except (Compacted, Unavailable):
            raise
        except StorageError as e:  # pragma: no cover - storage contract violation
            raise AssertionError(f"unexpected error: {e!r}") from e

    def match_term(self, idx: int, term: int) -> bool:
        try:
            return self.term(idx) == term
        except StorageError:
            return False

    def commit_info(self) -> tuple[int, int]:
        """The committed index and its term."""
        committed = self.committed
        try:
            return committed, self.term(committed)
        except StorageError as e:
            raise AssertionError(f"last committed entry at {committed} is missing: {e!r}") from e

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at `(last_index, term)` is at least as up to date as this one
        (Raft paper §5.4.1)."""
        last_term = self.last_term()
        return term > last_term or (term == last_term and last_index >= self.last_index())

    # -- conflicts and appends --------------------------------------------------------------

    def find_conflict(self, ents: Sequence[Entry]) -> int:
        """The index of the first entry of `ents` that conflicts with the log (same index,
        different term), or of the first new entry; 0 if all are already in the log."""
        last = self.last_index()
        for e in ents:
            idx = e.index
            if idx > last:
                return idx
            if not self.match_term(idx, e.term):
                _log.debug(
                    "found conflict at index %d [existing term: %d, conflicting term: %d]",
                    idx,
                    self.term(idx),
                    e.term,
                )
                return idx
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int | None]:
        """The largest index <= `index` whose term is <= `term` (used for fast log rejection),
        with its term; `(index, None)` when the term cannot be read."""
        conflict_index = index
        last_index = self.last_index()
        if index > last_index:
            _log.warning("index(%d) is out of range [0, last_index(%d)] in find_conflict_by_term", index, last_index)
            return index, None
        while True:
            try:
                t = self.term(conflict_index)
            except StorageError:
                return conflict_index, None
            if t > term:
                conflict_index -= 1
            else:
                return conflict_index, t

    def maybe_append(
        self, idx: int, term: int, committed: int, ents: Sequence[Entry]
    ) -> tuple[int, int] | None:
        """Append `ents` after `(idx, term)` if the log matches there (Raft §5.3 consistency
        check). Returns `(conflict_index, last_new_index)`, or None on a mismatch."""
        if not self.match_term(idx, term):
            return None
        conflict_idx = self.find_conflict(ents)
        if conflict_idx != 0:
            assert conflict_idx > self.committed, (
                f"entry {conflict_idx} conflict with committed entry {self.committed}"
            )
            start = conflict_idx - (idx + 1)
            self.append(ents[start:])
            # The persisted index goes back: entries past it are being replaced.
            if self.persisted > conflict_idx - 1:
                self.persisted = conflict_idx - 1
        last_new_index = idx + len(ents)
        self.commit_to(min(committed, last_new_index))
        return conflict_idx, last_new_index

    def append(self, ents: Sequence[Entry]) -> int:
        """Append entries to the unstable tail; returns the new last index."""
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        assert after >= self.committed, f"after {after} is out of range [committed {self.committed}]"
        self.unstable.truncate_and_append(list(ents))
        return self.last_index()

    # -- commit / persist / apply -----------------------------------------------------------

    def commit_to(self, to_commit: int) -> None:
        """Advance the commit index (never decreases it)."""
        if self.committed >= to_commit:
            return
        assert self.last_index() >= to_commit, (
            f"to_commit {to_commit} is out of range [last_index {self.last_index()}]"
        )
        self.committed = to_commit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to `max_index` if its entry has term `term` (Raft §5.4.2: only entries of
        the current term are committed by counting replicas)."""
        if max_index > self.committed and self.match_term(max_index, term):
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, idx: int) -> None:
        """Record that the application applied everything up to `idx`."""
        if idx == 0:
            return
        assert self.applied <= idx <= self.committed, (
            f"applied({idx}) is out of range [prev_applied({self.applied}), committed({self.committed})]"
        )
        self.applied = idx

    def stable_entries(self, index: int, term: int) -> None:
        self.unstable.stable_entries(index, term)

    def stable_snap(self, index: int) -> None:
        self.unstable.stable_snap(index)

    def maybe_persist(self, index: int, term: int) -> bool:
        """Advance the persisted mark to `index` if the entry persisted there is still the one
        at `(index, term)`.

        The persisted index is not moved past the first unstable position: an entry there may
        have been replaced after the write was issued (an ABA race after a term change: the same
        index written by two leaders), so only entries the log still holds in storage with the
        same term count as persisted.
        """
        snap = self.unstable.snapshot
        first_update_index = snap.metadata.index if snap is not None else self.unstable.offset
        if index > self.persisted and index < first_update_index:
            try:
                if self.store.term(index) != term:
                    return False
            except StorageError:
                return False
            self.persisted = index
            return True
        return False

    def maybe_persist_snap(self, index: int) -> bool:
        """Advance the persisted mark to a snapshot's index once the snapshot is durable."""
        if index > self.persisted:
            assert index <= self.committed, f"snapshot's index {index} > committed {self.committed}"
            assert index < self.unstable.offset, (
                f"snapshot's index {index} >= offset {self.unstable.offset}"
            )
            self.persisted = index
            return True
        return False

    # -- reading entries -------------------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        return self.unstable.entries

    def unstable_snapshot(self) -> Snapshot | None:
        return self.unstable.snapshot

    def pending_snapshot(self) -> Snapshot | None:
        return self.unstable.snapshot

    def entries(
        self, idx: int, max_size: int | None, context: GetEntriesContext | None = None
    ) -> list[Entry]:
        """Entries from `idx` to the end, at most `max_size` bytes (at least one)."""
        last = self.last_index()
        if idx > last:
            return []
        return self.slice(idx, last + 1, max_size, context)

    def all_entries(self) -> list[Entry]:
        first_index = self.first_index()
        while True:
            try:
                return self.entries(first_index, None)
            except Compacted:
                # The log may be compacted concurrently with this read; try again.
                first_index = self.first_index()

    def has_next_entries_since(self, since_idx: int) -> bool:
        high = min(self.committed, self.persisted) + 1
        if high <= since_idx + 1:
            return False
        return high > max(since_idx + 1, self.first_index())

    def has_next_entries(self) -> bool:
        return self.has_next_entries_since(self.applied)

    def next_entries_since(self, since_idx: int, max_size: int | None) -> list[Entry] | None:
        """Committed and persisted entries after `since_idx`, ready to apply."""
        high = min(self.committed, self.persisted) + 1
        if high <= since_idx + 1:
            return None
        offset = max(since_idx + 1, self.first_index())
        if high > offset:
            return self.slice(offset, high, max_size, GetEntriesContext(GetEntriesContext.GEN_READY))
        return None

    def next_entries(self, max_size: int | None = None) -> list[Entry] | None:
        return self.next_entries_since(self.applied, max_size)

    def snapshot(self, request_index: int, to: int) -> Snapshot:
        """A snapshot to send to peer `to`: the unstable one if recent enough, else storage's."""
        snap = self.unstable.snapshot
        if snap is not None and snap.metadata.index >= request_index:
            return snap
        return self.store.snapshot(request_index, to)

    def slice(
        self,
        low: int,
        high: int,
        max_size: int | None,
        context: GetEntriesContext | None = None,
    ) -> list[Entry]:
        """Entries in `[low, high)`, from storage and the unstable tail, size-limited.
        Raises `Compacted` when `low` precedes the log, `LogTemporarilyUnavailable` when the
        storage fetches asynchronously."""
        self._must_check_outofbounds(low, high)
        if low == high:
            return []
        u_offset = self.unstable.offset
        ents: list[Entry]
        if low < u_offset:
            unstable_high = min(high, u_offset)
            try:
                ents = self.store.entries(low, unstable_high, max_size, context)
            except (Compacted, LogTemporarilyUnavailable):
                raise
            except Unavailable as e:
                raise AssertionError(f"entries[{low}:{unstable_high}] is unavailable from storage") from e
            if len(ents) < unstable_high - low:
                return ents
            if high > u_offset:
                ents.extend(self.unstable.slice(u_offset, high))
        else:
            ents = self.unstable.slice(low, high)
        limit_size(ents, max_size)
        return ents

    def scan(
        self,
        lo: int,
        hi: int,
        page_size: int,
        context: GetEntriesContext | None,
        v: Callable[[list[Entry]], bool],
    ) -> None:
        """Visit the entries of `[lo, hi)` page by page (each page at most `page_size` bytes,
        at least one entry) until `v` returns False."""
        while lo < hi:
            ents = self.slice(lo, hi, page_size, context)
            if not ents:
                raise AssertionError(f"got 0 entries in [{lo}, {hi})")
            lo += len(ents)
            if not v(ents):
                return

    def _must_check_outofbounds(self, low: int, high: int) -> None:
        assert low <= high, f"invalid slice {low} > {high}"
        first_index = self.first_index()
        if low < first_index:
            raise Compacted()
        last = self.last_index()
        assert high <= last + 1, f"slice[{low},{high}] out of bound[{first_index},{last}]"

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the log by a snapshot (it becomes the unstable snapshot)."""
        index = snapshot.metadata.index
        _log.debug(
            "log [%r] starts to restore snapshot [index: %d, term: %d]",
            self,
            index,
            snapshot.metadata.term,
        )
        assert index >= self.committed, f"{index} < {self.committed}"
        # If `persisted` is greater than `index`, setting it to `index` is not necessary but
        # also correct: there is no entry between `index` and `persisted`.
        if self.persisted > index:
            self.persisted = index
        self.committed = index
        self.unstable.restore(snapshot)
