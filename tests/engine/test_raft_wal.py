"""The raft WAL: one record per batch for every region, checkpoints that move the changes into
the region-major column families (byte for byte what the direct layout writes), recovery of
what the WAL holds, and the corner cases (regions never reopened, a storage reopened while a
checkpoint is in flight, changes made after a checkpoint in the same batch)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.engine import (
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    CF_RAFT_WAL,
    Engine,
    EngineError,
    MemoryEngine,
    RaftWal,
    RegionStorage,
    WriteBatch,
)
from multiraft.engine.keys import raft_log_bounds, wal_key
from multiraft.engine.region_storage import check_no_wal
from multiraft.raft.eraftpb import ConfState, Entry, HardState, Snapshot
from multiraft.raft.errors import SnapshotOutOfDate


def ents(first: int, n: int, term: int = 1) -> list[Entry]:
    return [Entry(index=i, term=term, data=b"d%d" % i) for i in range(first, first + n)]


def commit(engine: Engine, wb: WriteBatch) -> None:
    engine.write(wb)
    wb.run_commit_hooks()


def log_keys(engine: Engine, rid: int) -> list[bytes]:
    start, end = raft_log_bounds(rid)
    return [k for k, _ in engine.scan(CF_RAFT_LOG, start, end)]


def test_one_record_per_batch_for_every_region() -> None:
    engine = MemoryEngine()
    wal = RaftWal(engine)
    storages = [RegionStorage(engine, r, wal=wal) for r in range(1, 101)]
    wb = WriteBatch()
    for s in storages:
        s.append(wb, ents(1, 2), HardState(term=1, vote=1, commit=1))
    commit(engine, wb)
    assert len(engine.scan(CF_RAFT_WAL)) == 1
    assert engine.scan(CF_RAFT_LOG) == [] and engine.scan(CF_RAFT_STATE) == []
    assert wal.stats.records == 1 and not wal.has_pending()
    # Recovery: everything comes back from the record.
    wal2 = RaftWal(engine)
    assert wal2.stats.recovered_records == 1
    for r in range(1, 101):
        s = RegionStorage(engine, r, wal=wal2)
        assert s.last_index() == 2 and s.hard_state() == HardState(term=1, vote=1, commit=1)
        assert [e.data for e in s.entries(1, 3)] == [b"d1", b"d2"]


def test_checkpoint_moves_everything_into_the_column_families() -> None:
    engine = MemoryEngine()
    wal = RaftWal(engine, checkpoint_rounds=3)
    s = RegionStorage(engine, 5, wal=wal)
    for i in range(1, 4):
        wb = WriteBatch()
        s.append(wb, ents(i, 1), HardState(term=1, commit=i - 1))
        assert wal.end_round(wb) == (i == 3)
        commit(engine, wb)
    assert engine.scan(CF_RAFT_WAL) == []
    assert len(log_keys(engine, 5)) == 3
    assert wal.stats.checkpoints == 1 and wal.stats.checkpoint_entries == 3
    assert s.unreleased_from() == 4  # readable from raft_log now
    assert RegionStorage(engine, 5, wal=RaftWal(engine)).hard_state().commit == 2


def test_checkpoint_by_bytes() -> None:
    engine = MemoryEngine()
    wal = RaftWal(engine, checkpoint_rounds=1000, checkpoint_bytes=1000)
    s = RegionStorage(engine, 1, wal=wal)
    done = []
    for i in range(1, 30):
        wb = WriteBatch()
        s.append(wb, [Entry(index=i, term=1, data=b"x" * 100)])
        done.append(wal.end_round(wb))
        commit(engine, wb)
    assert 1 < sum(done) < 29


def test_changes_after_the_checkpoint_in_the_same_batch_are_in_its_record() -> None:
    engine = MemoryEngine()
    wal = RaftWal(engine)
    a, b = RegionStorage(engine, 1, wal=wal), RegionStorage(engine, 2, wal=wal)
    wb = WriteBatch()
    a.append(wb, ents(1, 3))
    assert wal.checkpoint(wb)
    b.append(wb, ents(1, 2))  # after the checkpoint: goes into the batch's record
    a.set_hard_state(wb, HardState(term=1, commit=3))
    commit(engine, wb)
    assert len(log_keys(engine, 1)) == 3 and log_keys(engine, 2) == []
    assert len(engine.scan(CF_RAFT_WAL)) == 1
    wal2 = RaftWal(engine)
    assert RegionStorage(engine, 2, wal=wal2).last_index() == 2
    assert RegionStorage(engine, 1, wal=wal2).hard_state().commit == 3


def test_regions_never_reopened_are_folded_by_the_next_checkpoint() -> None:
    engine = MemoryEngine()
    wal = RaftWal(engine)
    for r in (1, 2, 3):
        s = RegionStorage(engine, r, wal=wal)
        wb = WriteBatch()
        s.append(wb, ents(1, 4), HardState(term=2, commit=4))
        commit(engine, wb)
    wal2 = RaftWal(engine)  # restart: only region 2 is opened again
    s2 = RegionStorage(engine, 2, wal=wal2)
    wb = WriteBatch()
    s2.append(wb, ents(5, 1))
    assert wal2.checkpoint(wb)
    commit(engine, wb)
    assert engine.scan(CF_RAFT_WAL) == []
    for r in (1, 2, 3):
        assert len(log_keys(engine, r)) == (5 if r == 2 else 4)
        s = RegionStorage(engine, r, wal=RaftWal(engine))
        assert s.hard_state() == HardState(term=2, commit=4)


def test_reopening_a_storage_while_its_checkpoint_is_in_flight() -> None:
    engine = MemoryEngine()
    wal = RaftWal(engine)
    s = RegionStorage(engine, 1, wal=wal)
    wb1 = WriteBatch()
    s.append(wb1, ents(1, 5))
    s.compact(wb1, 3)
    assert wal.checkpoint(wb1)  # in flight: not written yet
    wb2 = WriteBatch()
    s.append(wb2, ents(4, 3, term=2))  # conflicts with 4..5
    # The region's storage is recreated now (e.g. a peer re-created): it must see the
    # in-flight checkpoint's changes and the newer ones.
    again = RegionStorage(engine, 1, wal=wal)
    assert (again.first_index(), again.last_index()) == (3, 6)
    assert [e.term for e in again.entries(3, 7)] == [1, 2, 2, 2]
    engine.write(wb1)
    # Now the column families hold the checkpoint but its hook has not run: reopening again
    # replays it on top (leniently) and still sees the same log.
    yet_again = RegionStorage(engine, 1, wal=wal)
    assert (yet_again.first_index(), yet_again.last_index()) == (3, 6)
    wb1.run_commit_hooks()
    commit(engine, wb2)
    final = RegionStorage(engine, 1, wal=RaftWal(engine))
    assert [(e.index, e.term) for e in final.entries(3, 7)] == [(3, 1), (4, 2), (5, 2), (6, 2)]


def test_unknown_record_versions_and_truncated_records_are_refused() -> None:
    engine = MemoryEngine()
    wb = WriteBatch()
    wb.put(CF_RAFT_WAL, wal_key(1), b"\x09garbage")
    commit(engine, wb)
    with pytest.raises(EngineError, match="version"):
        RaftWal(engine)
    engine = MemoryEngine()
    wb = WriteBatch()
    wb.put(CF_RAFT_WAL, wal_key(1), b"\x01\x00\x00\x00\x00\x00\x00\x00\x01\x01\x00")
    commit(engine, wb)
    with pytest.raises(EngineError, match="truncated"):
        RaftWal(engine)


def test_wal_argument_checks() -> None:
    engine = MemoryEngine()
    with pytest.raises(ValueError):
        RaftWal(engine, checkpoint_rounds=0)
    with pytest.raises(ValueError):
        RegionStorage(engine, 1, wal=RaftWal(MemoryEngine()))
    wal = RaftWal(engine)
    assert "RaftWal" in repr(wal) and wal.dirty_regions() == 0
    assert not wal.checkpoint(WriteBatch())  # nothing to move


def test_a_storage_without_the_wal_is_refused_over_wal_records() -> None:
    """Once per storage, or once per engine (`check_no_wal`) for a store opening many."""
    engine = MemoryEngine()
    wb = WriteBatch()
    RegionStorage(engine, 1, wal=RaftWal(engine)).append(wb, ents(1, 1), HardState(term=1, commit=1))
    commit(engine, wb)
    with pytest.raises(EngineError, match="RaftWal"):
        RegionStorage(engine, 1)
    with pytest.raises(EngineError, match="RaftWal"):
        check_no_wal(engine)
    RegionStorage(engine, 2, check_wal=False)  # the caller checked
    check_no_wal(MemoryEngine())


# -- the WAL layout ends up byte for byte like the direct one --------------------------------

REGIONS = (1, 2)
_u = st.integers(0, 1000)
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.sampled_from(REGIONS),
            _u,
            st.integers(1, 4),
            st.integers(1, 9),
            st.booleans(),
        ),
        st.tuples(st.just("hard_state"), st.sampled_from(REGIONS), st.integers(0, 9), _u),
        st.tuples(
            st.just("conf_state"),
            st.sampled_from(REGIONS),
            st.lists(st.integers(1, 5), max_size=3, unique=True),
        ),
        st.tuples(st.just("compact"), st.sampled_from(REGIONS), _u),
        st.tuples(st.just("snapshot"), st.sampled_from(REGIONS), _u, st.integers(1, 9)),
        st.tuples(st.just("destroy"), st.sampled_from(REGIONS)),
        st.tuples(st.just("cut")),
        st.tuples(st.just("cut")),
        st.tuples(st.just("checkpoint")),
        st.tuples(st.just("restart")),
        st.tuples(st.just("crash")),
    ),
    max_size=50,
)


class Side:
    """One engine with storages for every region, direct or through a WAL."""

    def __init__(self, use_wal: bool) -> None:
        self.engine = MemoryEngine()
        self.use_wal = use_wal
        self.pending: list[WriteBatch] = []
        self.batch = WriteBatch()
        self.open()

    def open(self) -> None:
        self.wal = RaftWal(self.engine, checkpoint_rounds=2) if self.use_wal else None
        self.s = {
            r: RegionStorage(self.engine, r, wal=self.wal, cache_max_entries=2) for r in REGIONS
        }

    def cut(self) -> None:
        """Close the batch like the batching layer (a checkpoint every 2 batches)."""
        if self.wal is not None:
            self.wal.end_round(self.batch)
        self.pending.append(self.batch)
        self.batch = WriteBatch()

    def flush(self) -> None:
        self.cut()
        for wb in self.pending:
            commit(self.engine, wb)
        self.pending = []

    def dump(self) -> tuple[Any, ...]:
        return tuple(self.engine.scan(cf) for cf in (CF_RAFT_LOG, CF_RAFT_STATE))


@settings(max_examples=150, deadline=None)
@given(ops=OPS)
def test_checkpointed_wal_equals_the_direct_layout(ops: list[tuple[Any, ...]]) -> None:
    direct, wal = Side(False), Side(True)
    for op in ops:
        kind = op[0]
        if kind in ("cut", "checkpoint", "restart", "crash"):
            for side in (direct, wal):
                if kind == "cut":
                    side.cut()
                elif kind == "checkpoint":
                    if side.wal is not None:
                        side.wal.checkpoint(side.batch)
                elif kind == "restart":
                    side.flush()
                    side.open()
                else:  # crash: nothing pending reaches the disk
                    side.pending, side.batch = [], WriteBatch()
                    side.open()
            continue
        r = op[1]
        ref = direct.s[r]
        first, last = ref.first_index(), ref.last_index()
        for side in (direct, wal):
            s, wb = side.s[r], side.batch
            if kind == "append":
                _, _, a, n, term, with_hs = op
                start = first + a % (last - first + 2)
                hs = HardState(term=term, commit=min(start - 1, last)) if with_hs else None
                s.append(wb, ents(start, n, term), hs)
            elif kind == "hard_state":
                s.set_hard_state(wb, HardState(term=op[2], vote=1, commit=op[3] % (last + 1)))
            elif kind == "conf_state":
                s.set_conf_state(wb, ConfState(voters=op[2]))
            elif kind == "compact":
                s.compact(wb, first + op[2] % (last - first + 2))
            elif kind == "snapshot":
                snap = Snapshot()
                snap.metadata.index = max(0, first - 2 + op[2] % (last - first + 6))
                snap.metadata.term = op[3]
                snap.metadata.conf_state.voters.extend([1, 2])
                try:
                    s.apply_snapshot(wb, snap)
                except SnapshotOutOfDate:
                    pass
            else:
                s.destroy(wb)
        # Both views agree at every step.
        w = wal.s[r]
        assert (w.first_index(), w.last_index()) == (ref.first_index(), ref.last_index())
        assert w.initial_state() == ref.initial_state()
    for side in (direct, wal):
        side.flush()
    assert wal.wal is not None
    wb = WriteBatch()
    wal.wal.checkpoint(wb)
    commit(wal.engine, wb)
    assert wal.engine.scan(CF_RAFT_WAL) == []
    assert wal.dump() == direct.dump()


SCENARIOS = [
    # compaction of entries already checkpointed
    [("append", 1, 0, 4, 1, True), ("checkpoint",), ("restart",), ("compact", 1, 2), ("restart",)],
    # a conflicting append over checkpointed entries
    [("append", 1, 0, 4, 1, True), ("cut",), ("cut",), ("append", 1, 1, 1, 2, True), ("cut",)],
    # snapshot over checkpointed entries, then appends after it
    [
        ("append", 2, 0, 4, 1, False),
        ("checkpoint",),
        ("cut",),
        ("snapshot", 2, 7, 3),
        ("append", 2, 9, 2, 3, True),
    ],
    # destroy then re-create
    [
        ("append", 1, 0, 3, 1, True),
        ("checkpoint",),
        ("cut",),
        ("destroy", 1),
        ("conf_state", 1, [1]),
        ("append", 1, 0, 2, 1, True),
    ],
    # compaction pending, then a crash drops it
    [
        ("append", 1, 0, 4, 1, True),
        ("restart",),
        ("compact", 1, 3),
        ("checkpoint",),
        ("crash",),
        ("compact", 1, 1),
    ],
]


@pytest.mark.parametrize("ops", SCENARIOS, ids=range(len(SCENARIOS)))
def test_known_scenarios(ops: list[tuple[Any, ...]]) -> None:
    test_checkpointed_wal_equals_the_direct_layout.hypothesis.inner_test(ops=ops)  # type: ignore[attr-defined]
