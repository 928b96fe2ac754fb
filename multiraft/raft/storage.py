"""The `Storage` interface of the raft core and its in-memory reference implementation.

The application owns storage: the core only reads from it (`Storage`) and tells the application
what to write through `Ready`. `MemStorage` is the in-memory implementation used by tests, the
simulator and examples (raft-rs `storage.rs`); the persistent one lives in `multiraft.engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .eraftpb import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from .errors import (
    Compacted,
    LogTemporarilyUnavailable,
    SnapshotOutOfDate,
    SnapshotTemporarilyUnavailable,
    Unavailable,
)
from .util import limit_size

__all__ = [
    "RaftState",
    "GetEntriesContext",
    "Storage",
    "MemStorage",
    "MemStorageCore",
]


@dataclass(slots=True)
class RaftState:
    """What `Storage.initial_state` returns: the persisted hard state and configuration."""

    hard_state: HardState = field(default_factory=HardState)
    conf_state: ConfState = field(default_factory=ConfState)

    def initialized(self) -> bool:
        """A storage is initialized once it holds a configuration."""
        return self.conf_state != ConfState()


class GetEntriesContext:
    """Why the core asks for entries, and whether the storage may answer asynchronously
    (raising `LogTemporarilyUnavailable` and later calling `RawNode.on_entries_fetched`)."""

    __slots__ = ("what", "to", "term", "aggressively", "can_async_")

    # `what` values.
    EMPTY = "empty"
    SEND_APPEND = "send_append"
    GEN_READY = "gen_ready"
    TRANSFER_LEADER = "transfer_leader"
    COMMITTED_BY_VOTE = "committed_by_vote"

    def __init__(
        self,
        what: str,
        *,
        to: int = 0,
        term: int = 0,
        aggressively: bool = False,
        can_async: bool = False,
    ) -> None:
        self.what = what
        # For SEND_APPEND: the peer, the leader's term, and whether the append was one of a
        # series sent as fast as flow control allows.
        self.to = to
        self.term = term
        self.aggressively = aggressively
        self.can_async_ = can_async

    @classmethod
    def empty(cls, can_async: bool = False) -> GetEntriesContext:
        return cls(cls.EMPTY, can_async=can_async)

    def can_async(self) -> bool:
        return self.can_async_

    def __repr__(self) -> str:
        return f"GetEntriesContext({self.what}, to={self.to}, term={self.term})"


class Storage(Protocol):
    """Read access to the persisted raft log, hard state and snapshot.

    Error contract (raft-rs): `entries` raises `Compacted` when `low` precedes the first index
    and `LogTemporarilyUnavailable` when it fetches asynchronously; `term` raises `Compacted`
    below `first_index() - 1` and `Unavailable` past `last_index()`; `snapshot` raises
    `SnapshotTemporarilyUnavailable` while one is being built. Asking for entries past
    `last_index() + 1` is a caller bug (AssertionError).
    """

    def initial_state(self) -> RaftState:
        """The hard state and conf state persisted so far."""
        ...

    def entries(
        self,
        low: int,
        high: int,
        max_size: int | None = None,
        context: GetEntriesContext | None = None,
    ) -> list[Entry]:
        """Entries in `[low, high)`, at most `max_size` bytes but at least one if the range is
        not empty. The returned list is new: the caller may extend or truncate it."""
        ...

    def term(self, idx: int) -> int:
        """The term of the entry at `idx`; valid for `[first_index() - 1, last_index()]`."""
        ...

    def first_index(self) -> int:
        """The index of the first entry that may be read (the snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        """The index of the last entry (the snapshot index when the log is empty)."""
        ...

    def snapshot(self, request_index: int, to: int) -> Snapshot:
        """The most recent snapshot, with metadata index >= `request_index`, to send to
        peer `to`."""
        ...


class MemStorageCore:
    """The mutable state behind a `MemStorage`; `MemStorage.wl()` returns it.

    Invariant: `entries[i].index == first_index() + i` (the log is contiguous).
    Invariant: `snapshot_metadata.index + 1 == first_index()` when the log is not empty.
    """

    __slots__ = (
        "raft_state",
        "entries",
        "snapshot_metadata",
        "_trigger_snap_unavailable",
        "_trigger_log_unavailable",
        "_get_entries_context",
    )

    def __init__(self) -> None:
        self.raft_state = RaftState()
        # entries[i] has raft log position i + snapshot_metadata.index + 1.
        self.entries: list[Entry] = []
        # Metadata of the last applied snapshot (index 0 = none).
        self.snapshot_metadata = SnapshotMetadata()
        # Whether the next `snapshot()` raises SnapshotTemporarilyUnavailable (tests).
        self._trigger_snap_unavailable = False
        # Whether `entries()` answers asynchronously when the context allows (tests).
        self._trigger_log_unavailable = False
        self._get_entries_context: GetEntriesContext | None = None

    # -- hard state / conf state -------------------------------------------------------------

    def set_hardstate(self, hs: HardState) -> None:
        self.raft_state.hard_state = hs

    def hard_state(self) -> HardState:
        return self.raft_state.hard_state

    def mut_hard_state(self) -> HardState:
        return self.raft_state.hard_state

    def set_conf_state(self, cs: ConfState) -> None:
        self.raft_state.conf_state = cs

    def commit_to(self, index: int) -> None:
        """Set the hard state's commit index; the entry must be in the log."""
        assert self.has_entry_at(index), (
            f"commit_to {index} but the entry does not exist "
            f"(first {self.first_index()}, last {self.last_index()})"
        )
        self.raft_state.hard_state.commit = index

    def commit_to_and_set_conf_states(self, idx: int, cs: ConfState | None) -> None:
        self.commit_to(idx)
        if cs is not None:
            self.raft_state.conf_state = cs

    # -- log bounds ----------------------------------------------------------------------

    def has_entry_at(self, index: int) -> bool:
        return bool(self.entries) and self.first_index() <= index <= self.last_index()

    def first_index(self) -> int:
        if self.entries:
            return self.entries[0].index
        return self.snapshot_metadata.index + 1

    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.snapshot_metadata.index

    # -- mutations ----------------------------------------------------------------------

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the log and state by a snapshot. Raises `SnapshotOutOfDate` when the storage
        already holds entries past the snapshot's first index."""
        meta = snapshot.metadata
        index = meta.index
        if self.first_index() > index:
            raise SnapshotOutOfDate()
        self.snapshot_metadata = SnapshotMetadata()
        self.snapshot_metadata.CopyFrom(meta)
        hs = self.raft_state.hard_state
        hs.term = max(hs.term, meta.term)
        hs.commit = index
        self.entries = []
        cs = ConfState()
        cs.CopyFrom(meta.conf_state)
        self.raft_state.conf_state = cs

    def snapshot(self) -> Snapshot:
        """A snapshot at the hard state's commit index (MemStorage carries no data)."""
        snap = Snapshot()
        meta = snap.metadata
        meta.index = self.raft_state.hard_state.commit
        if meta.index == self.snapshot_metadata.index:
            meta.term = self.snapshot_metadata.term
        else:
            offset = self.entries[0].index
            meta.term = self.entries[meta.index - offset].term
        meta.conf_state.CopyFrom(self.raft_state.conf_state)
        return snap

    def compact(self, compact_index: int) -> None:
        """Discard all entries before `compact_index`. Compacting past `last_index() + 1` is a
        caller bug."""
        if compact_index <= self.first_index():
            return
        assert compact_index <= self.last_index() + 1, (
            f"compact not received raft logs: {compact_index}, last index: {self.last_index()}"
        )
        offset = compact_index - self.entries[0].index
        # The snapshot metadata follows the compaction so term(first_index - 1) stays valid.
        last_gone = self.entries[offset - 1]
        self.snapshot_metadata.index = last_gone.index
        self.snapshot_metadata.term = last_gone.term
        del self.entries[:offset]

    def append(self, ents: list[Entry]) -> None:
        """Append entries, truncating any existing suffix they conflict with."""
        if not ents:
            return
        first = ents[0].index
        assert self.first_index() <= first, (
            f"overwrite compacted raft logs, compacted: {self.first_index() - 1}, append: {first}"
        )
        assert self.last_index() + 1 >= first, (
            f"raft logs should be continuous, last index: {self.last_index()}, "
            f"new appended: {first}"
        )
        diff = first - self.first_index()
        del self.entries[diff:]
        self.entries.extend(ents)

    # -- fault injection for tests -----------------------------------------------------------

    def trigger_snap_unavailable(self) -> None:
        """The next `snapshot()` call raises `SnapshotTemporarilyUnavailable`."""
        self._trigger_snap_unavailable = True

    def trigger_log_unavailable(self, v: bool) -> None:
        """While set, `entries()` raises `LogTemporarilyUnavailable` when the context allows."""
        self._trigger_log_unavailable = v

    def take_get_entries_context(self) -> GetEntriesContext | None:
        ctx, self._get_entries_context = self._get_entries_context, None
        return ctx


class MemStorage:
    """In-memory `Storage` (raft-rs `MemStorage`). Not thread-safe; the core is single-threaded."""

    __slots__ = ("core",)

    def __init__(self) -> None:
        self.core = MemStorageCore()

    @classmethod
    def new_with_conf_state(cls, conf_state: ConfState | tuple[list[int], list[int]]) -> MemStorage:
        """A storage bootstrapped with a configuration: empty log, first index 1, term 0."""
        store = cls()
        store.initialize_with_conf_state(conf_state)
        return store

    def initialize_with_conf_state(self, conf_state: ConfState | tuple[list[int], list[int]]) -> None:
        assert not self.initial_state().initialized(), "storage is already initialized"
        if isinstance(conf_state, tuple):
            voters, learners = conf_state
            conf_state = ConfState(voters=voters, learners=learners)
        self.core.raft_state.conf_state = conf_state

    def rl(self) -> MemStorageCore:
        """Read access to the core (raft-rs returns a read guard)."""
        return self.core

    def wl(self) -> MemStorageCore:
        """Write access to the core (raft-rs returns a write guard)."""
        return self.core

    # -- Storage --------------------------------------------------------------------------

    def initial_state(self) -> RaftState:
        rs = self.core.raft_state
        hs = HardState()
        hs.CopyFrom(rs.hard_state)
        cs = ConfState()
        cs.CopyFrom(rs.conf_state)
        return RaftState(hs, cs)

    def entries(
        self,
        low: int,
        high: int,
        max_size: int | None = None,
        context: GetEntriesContext | None = None,
    ) -> list[Entry]:
        core = self.core
        if low < core.first_index():
            raise Compacted()
        assert high <= core.last_index() + 1, (
            f"index out of bound (last: {core.last_index()}, high: {high})"
        )
        if core._trigger_log_unavailable and context is not None and context.can_async():
            core._get_entries_context = context
            raise LogTemporarilyUnavailable()
        if low >= high:
            return []
        offset = core.entries[0].index
        ents = core.entries[low - offset : high - offset]
        limit_size(ents, max_size)
        return ents

    def term(self, idx: int) -> int:
        core = self.core
        if idx == core.snapshot_metadata.index:
            return core.snapshot_metadata.term
        offset = core.first_index()
        if idx < offset:
            raise Compacted()
        if idx > core.last_index():
            raise Unavailable()
        return core.entries[idx - offset].term

    def first_index(self) -> int:
        core = self.core
        if core.entries:
            return core.entries[0].index
        return core.snapshot_metadata.index + 1

    def last_index(self) -> int:
        core = self.core
        if core.entries:
            return core.entries[-1].index
        return core.snapshot_metadata.index

    def snapshot(self, request_index: int, to: int) -> Snapshot:
        core = self.core
        if core._trigger_snap_unavailable:
            core._trigger_snap_unavailable = False
            raise SnapshotTemporarilyUnavailable()
        snap = core.snapshot()
        if snap.metadata.index < request_index:
            snap.metadata.index = request_index
        return snap
