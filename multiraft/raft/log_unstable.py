"""The unstable part of the raft log: entries and a snapshot not yet handed to storage
(raft-rs `log_unstable.rs`)."""

from __future__ import annotations

from .eraftpb import Entry, Snapshot

__all__ = ["Unstable"]


class Unstable:
    """Entries (and possibly a snapshot) that the application has not been asked to persist yet.

    Invariant: `entries[i].index == offset + i`.
    Invariant: if `snapshot` is set, `offset == snapshot.metadata.index + 1`.
    """

    __slots__ = ("snapshot", "entries", "offset")

    def __init__(self, offset: int) -> None:
        # The incoming unstable snapshot, if any.
        self.snapshot: Snapshot | None = None
        # All entries that have not yet been written to storage.
        self.entries: list[Entry] = []
        # The index of entries[0] (or of the next entry when `entries` is empty).
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        """The first index of the log if the unstable part starts it (only with a snapshot)."""
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        """The last index, if there is at least an unstable entry or snapshot."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, idx: int) -> int | None:
        """The term of the entry at `idx`, if the unstable part holds it."""
        offset = self.offset
        if idx < offset:
            snap = self.snapshot
            if snap is not None and snap.metadata.index == idx:
                return snap.metadata.term
            return None
        entries = self.entries
        if idx - offset < len(entries):
            return entries[idx - offset].term
        return None

    def stable_entries(self, index: int, term: int) -> None:
        """Drop the entries up to `(index, term)`: the application took them to persist.
        Must be called with the last unstable entry (the snapshot, if any, goes first)."""
        assert self.snapshot is None, "the snapshot must be stabled before entries"
        assert self.entries, (
            f"unstable.slice is empty, expect its last one's index and term are {index} and {term}"
        )
        last = self.entries[-1]
        assert last.index == index and last.term == term, (
            f"the last one of unstable.slice has different index {last.index} and term "
            f"{last.term}, expect {index} {term}"
        )
        self.offset = last.index + 1
        self.entries = []

    def stable_snap(self, index: int) -> None:
        """Drop the unstable snapshot at `index`: the application took it to persist."""
        assert self.snapshot is not None, f"unstable.snap is none, expect a snapshot with index {index}"
        assert self.snapshot.metadata.index == index, (
            f"unstable.snap has different index {self.snapshot.metadata.index}, expect {index}"
        )
        self.snapshot = None

    def restore(self, snap: Snapshot) -> None:
        """Replace everything by a snapshot."""
        self.entries = []
        self.offset = snap.metadata.index + 1
        self.snapshot = snap

    def truncate_and_append(self, ents: list[Entry]) -> None:
        """Append entries, truncating any unstable suffix from `ents[0].index` on."""
        after = ents[0].index
        offset = self.offset
        if after == offset + len(self.entries):
            # The next index: append directly.
            self.entries.extend(ents)
        elif after <= offset:
            # The log is being truncated to before our current offset portion, so set the
            # offset and replace the entries.
            self.offset = after
            self.entries = list(ents)
        else:
            # Truncate to `after`, then append.
            self.must_check_outofbounds(offset, after)
            del self.entries[after - offset :]
            self.entries.extend(ents)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """The unstable entries in `[lo, hi)`."""
        self.must_check_outofbounds(lo, hi)
        off = self.offset
        return self.entries[lo - off : hi - off]

    def must_check_outofbounds(self, lo: int, hi: int) -> None:
        assert lo <= hi, f"invalid unstable.slice {lo} > {hi}"
        upper = self.offset + len(self.entries)
        assert self.offset <= lo and hi <= upper, (
            f"unstable.slice[{lo}, {hi}] out of bound[{self.offset}, {upper}]"
        )
