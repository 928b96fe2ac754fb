"""One node of the randomized simulator: a `RawNode` over an in-memory storage, a durable copy
of that storage, the write rounds in between, and a digest state machine.

Storage model (raft-rs async-ready contract):

- `mem` (a `SimStorage`) is what the `RawNode` reads. A Ready's snapshot, entries and hard
  state are written into it *before* `advance_append_async(rd)`: the core drops them from its
  unstable log there, so from then on they must be readable from storage.
- Each Ready becomes a `WriteRound` in `pending`, oldest first. A round is *durable* once the
  simulator decides the write finished: it is then replayed onto `disk` (another
  `MemStorageCore`), the round's persisted messages are released to the network and
  `on_persist_ready(number)` is called. Rounds become durable in order, like one fsync'd log.
- A crash throws `mem` and `pending` away; the restarted node starts from a copy of `disk`.

State machine model: the state is a digest chain over the applied positions (`digest_step`),
so a snapshot carries `(index, digest)` as data and can be checked against the global applied
sequence. The durable state machine is the durable snapshot (`disk_snap`): on restart the
node rebuilds it from there and starts with `Config.applied = disk_snap index`, re-applying the
committed entries after it. Applying conf changes therefore only touches `mem`'s ConfState;
the durable ConfState is the one of the durable snapshot, so the restarted node's
configuration is exactly the one at its applied index.

Log compaction (`compact`) writes a snapshot of the current state machine and discards the
log below a chosen index in `mem` at once, and queues the same on `disk` as a write round.
`SimStorage.snapshot()` (what a leader sends to a lagging follower) builds a snapshot of the
current state machine on demand, like TiKV's snapshot generation.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from multiraft.raft import (
    ConfState,
    Entry,
    GetEntriesContext,
    HardState,
    LogTemporarilyUnavailable,
    MemStorage,
    MemStorageCore,
    Message,
    RawNode,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDate,
    SnapshotTemporarilyUnavailable,
)

from .sim_checks import GENESIS_DIGEST, AppliedRecord, digest_step

__all__ = [
    "SimStorage",
    "SimNode",
    "WriteRound",
    "encode_sm",
    "decode_sm",
    "clone_core",
    "install_snapshot",
]


def encode_sm(index: int, digest: bytes) -> bytes:
    """Snapshot data: the applied index and the state-machine digest."""
    return index.to_bytes(8, "big") + digest


def decode_sm(data: bytes) -> tuple[int, bytes]:
    assert len(data) == 24, f"bad snapshot data {data!r}"
    return int.from_bytes(data[:8], "big"), data[8:]


def clone_core(src: MemStorageCore) -> MemStorageCore:
    """A copy of a storage core whose mutations do not reach `src` (entries are shared:
    nothing mutates a stored entry)."""
    core = MemStorageCore()
    core.raft_state.hard_state.CopyFrom(src.raft_state.hard_state)
    core.raft_state.conf_state.CopyFrom(src.raft_state.conf_state)
    core.entries = list(src.entries)
    core.snapshot_metadata.CopyFrom(src.snapshot_metadata)
    return core


def install_snapshot(core: MemStorageCore, snap: Snapshot) -> None:
    """`MemStorageCore.apply_snapshot`, also accepting a snapshot at exactly the compacted
    index (first_index - 1): a requested snapshot (`request_snapshot`) may be one the log was
    already compacted to, and the storage must still drop the entries after it."""
    try:
        core.apply_snapshot(snap)
    except SnapshotOutOfDate:
        meta = snap.metadata
        if meta.index != core.first_index() - 1:
            raise
        core.entries = []
        core.snapshot_metadata = SnapshotMetadata()
        core.snapshot_metadata.CopyFrom(meta)
        hs = core.raft_state.hard_state
        hs.term = max(hs.term, meta.term)
        hs.commit = meta.index
        core.raft_state.conf_state = ConfState()
        core.raft_state.conf_state.CopyFrom(meta.conf_state)


class SimStorage(MemStorage):
    """A `MemStorage` whose snapshots come from the node's state machine and whose reads may
    be answered asynchronously (`LogTemporarilyUnavailable`, then `on_entries_fetched`)."""

    __slots__ = ("snapshot_source", "fetch_later")

    def __init__(self, core: MemStorageCore | None = None) -> None:
        super().__init__()
        if core is not None:
            self.core = core
        # Builds the snapshot to send (raises SnapshotTemporarilyUnavailable when it cannot).
        self.snapshot_source: Callable[[int, int], Snapshot] | None = None
        # Decides whether a read that may be asynchronous is answered later (and keeps the
        # context to resume it).
        self.fetch_later: Callable[[GetEntriesContext], bool] | None = None

    def snapshot(self, request_index: int, to: int) -> Snapshot:
        if self.snapshot_source is None:
            return super().snapshot(request_index, to)
        return self.snapshot_source(request_index, to)

    def entries(
        self,
        low: int,
        high: int,
        max_size: int | None = None,
        context: GetEntriesContext | None = None,
    ) -> list[Entry]:
        if (
            context is not None
            and context.can_async()
            and self.fetch_later is not None
            and low >= self.core.first_index()
            and self.fetch_later(context)
        ):
            raise LogTemporarilyUnavailable()
        return super().entries(low, high, max_size, context)


@dataclass(slots=True)
class WriteRound:
    """One write batch on its way to disk: a Ready's data, or a local log compaction."""

    # The Ready's number; 0 for a compaction.
    number: int
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    hs: HardState | None = None
    # Messages to release once the round is durable (the Ready's persisted messages).
    messages: list[Message] = field(default_factory=list)
    # Compaction: discard entries before `compact_to`; `compact_snap` is the state-machine
    # snapshot taken at the same time.
    compact_to: int = 0
    compact_snap: Snapshot | None = None


class SimNode:
    """A simulated server: durable state that survives crashes, and volatile state that does
    not (`raw`, `mem`, `pending`, the state machine)."""

    __slots__ = (
        "id",
        "disk",
        "disk_snap",
        "mem",
        "raw",
        "pending",
        "sm_index",
        "sm_term",
        "sm_digest",
        "fetches",
        "rng",
        "snap_unavailable",
        "async_fetch",
        "incarnation",
        "durable_number",
        "acked_number",
    )

    def __init__(self, id: int, rng: random.Random, snap_unavailable: float, async_fetch: float) -> None:
        self.id = id
        # Durable storage (what a restart starts from) and the durable state-machine snapshot.
        self.disk = MemStorageCore()
        self.disk_snap: Snapshot | None = None
        # Volatile: the storage the RawNode reads, the node (None while down), write rounds
        # not yet durable (oldest first), the state machine, and asynchronous reads to resume.
        self.mem = SimStorage()
        self.raw: RawNode[SimStorage] | None = None
        self.pending: deque[WriteRound] = deque()
        # Invariant: sm_index <= raw.raft.raft_log.applied while up (applied synchronously).
        self.sm_index = 0
        self.sm_term = 0
        self.sm_digest = GENESIS_DIGEST
        self.fetches: list[GetEntriesContext] = []
        self.rng = rng
        self.snap_unavailable = snap_unavailable
        self.async_fetch = async_fetch
        # How many times the node was (re)started.
        self.incarnation = 0
        # The newest Ready number made durable, and the newest reported by on_persist_ready.
        # Invariant: acked_number <= durable_number.
        self.durable_number = 0
        self.acked_number = 0

    @property
    def up(self) -> bool:
        return self.raw is not None

    def node(self) -> RawNode[SimStorage]:
        assert self.raw is not None, f"node {self.id} is down"
        return self.raw

    # -- bootstrap / crash / restart ------------------------------------------------------

    def bootstrap(self, snap: Snapshot) -> None:
        """Make `snap` (the group's genesis) durable."""
        self.disk.apply_snapshot(snap)
        self.disk_snap = snap

    def reload(self) -> None:
        """Rebuild the volatile state from the durable one (the caller then makes `raw`)."""
        self.incarnation += 1
        self.mem = SimStorage(clone_core(self.disk))
        self.mem.snapshot_source = self.make_snapshot
        self.mem.fetch_later = self._fetch_later
        self.pending.clear()
        self.fetches.clear()
        # A new RawNode numbers its Readies from 1 again.
        self.durable_number = self.acked_number = 0
        if self.disk_snap is None:
            self.sm_index, self.sm_term, self.sm_digest = 0, 0, GENESIS_DIGEST
        else:
            meta = self.disk_snap.metadata
            index, digest = decode_sm(self.disk_snap.data)
            assert index == meta.index
            self.sm_index, self.sm_term, self.sm_digest = index, meta.term, digest

    def crash(self) -> None:
        """Lose everything not durable."""
        self.raw = None
        self.pending.clear()
        self.fetches.clear()

    # -- storage --------------------------------------------------------------------------

    def make_snapshot(self, request_index: int, to: int) -> Snapshot:
        """A snapshot of the current state machine (`Storage.snapshot`)."""
        if self.sm_index < request_index or self.rng.random() < self.snap_unavailable:
            raise SnapshotTemporarilyUnavailable()
        return self._snapshot_now()

    def _snapshot_now(self) -> Snapshot:
        snap = Snapshot(data=encode_sm(self.sm_index, self.sm_digest))
        meta: SnapshotMetadata = snap.metadata
        meta.index = self.sm_index
        meta.term = self.sm_term
        meta.conf_state.CopyFrom(self.mem.core.raft_state.conf_state)
        return snap

    def _fetch_later(self, ctx: GetEntriesContext) -> bool:
        if self.async_fetch and self.rng.random() < self.async_fetch:
            self.fetches.append(ctx)
            return True
        return False

    def write_ready(self, number: int, snap: Snapshot | None, entries: list[Entry],
                    hs: HardState | None, messages: list[Message]) -> WriteRound:
        """Write a Ready into `mem` (readable now) and return its write round (durable
        later). The round holds copies: nothing the core keeps is shared with `disk`."""
        core = self.mem.core
        snap_copy = None
        if snap is not None:
            install_snapshot(core, snap)
            snap_copy = Snapshot()
            snap_copy.CopyFrom(snap)
        copies = []
        if entries:
            core.append(list(entries))
            for e in entries:
                c = Entry()
                c.CopyFrom(e)
                copies.append(c)
        hs_copy = None
        if hs is not None:
            hs_copy = HardState()
            hs_copy.CopyFrom(hs)
            core.set_hardstate(HardState(term=hs.term, vote=hs.vote, commit=hs.commit))
        return WriteRound(number, snap_copy, copies, hs_copy, messages)

    def compact(self, compact_to: int) -> WriteRound:
        """Snapshot the state machine and discard the log before `compact_to` (now in
        `mem`, later on `disk`). Requires first_index < compact_to <= sm_index + 1."""
        core = self.mem.core
        assert core.first_index() < compact_to <= self.sm_index + 1
        snap = self._snapshot_now()
        core.compact(compact_to)
        return WriteRound(0, compact_to=compact_to, compact_snap=snap)

    def make_durable(self, rnd: WriteRound) -> None:
        """Replay a write round onto `disk`."""
        disk = self.disk
        if rnd.snapshot is not None:
            install_snapshot(disk, rnd.snapshot)
            self.disk_snap = rnd.snapshot
        if rnd.entries:
            disk.append(rnd.entries)
        if rnd.hs is not None:
            disk.set_hardstate(rnd.hs)
        if rnd.compact_snap is not None:
            if rnd.compact_to > disk.first_index():
                disk.compact(rnd.compact_to)
            snap = rnd.compact_snap
            if self.disk_snap is None or snap.metadata.index > self.disk_snap.metadata.index:
                self.disk_snap = snap
                disk.raft_state.conf_state = ConfState()
                disk.raft_state.conf_state.CopyFrom(snap.metadata.conf_state)
                hs = disk.raft_state.hard_state
                # The durable commit index may lag the applied one (a Ready's hard state can
                # still be in flight): a restart needs commit >= applied.
                hs.commit = max(hs.commit, snap.metadata.index)

    # -- state machine --------------------------------------------------------------------

    def sm_apply(self, index: int, rec: AppliedRecord) -> None:
        assert index == self.sm_index + 1, f"node {self.id}: apply {index} after {self.sm_index}"
        self.sm_digest = digest_step(self.sm_digest, index, rec)
        self.sm_index = index
        self.sm_term = rec.term

    def sm_restore(self, snap: Snapshot) -> None:
        index, digest = decode_sm(snap.data)
        assert index == snap.metadata.index, "snapshot data and metadata disagree"
        self.sm_index, self.sm_term, self.sm_digest = index, snap.metadata.term, digest
