"""RegionStorage: the raft `Storage` contract, run as the same tables against MemStorage and
RegionStorage (memory and LMDB engines; default cache, no cache, a 2-entry cache so reads
straddle the engine and the cache), plus what only RegionStorage does (commit visibility,
pipelined batches, restart recovery)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

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
    WriteFailed,
)
from multiraft.engine.keys import hard_state_key, raft_log_bounds, raft_log_key
from multiraft.raft.eraftpb import ConfState, Entry, HardState, Snapshot
from multiraft.raft.errors import Compacted, SnapshotOutOfDate, Unavailable
from multiraft.raft.storage import MemStorage

from .conftest import EngineFactory

REGION = 7


def new_entry(index: int, term: int, data: bytes = b"") -> Entry:
    return Entry(index=index, term=term, data=data)


def new_snapshot(index: int, term: int, voters: Sequence[int] = (1, 2, 3)) -> Snapshot:
    snap = Snapshot()
    snap.metadata.index = index
    snap.metadata.term = term
    snap.metadata.conf_state.voters.extend(voters)
    return snap


def pairs(ents: Sequence[Entry]) -> list[tuple[int, int, bytes]]:
    return [(e.index, e.term, e.data) for e in ents]


# -- harnesses ------------------------------------------------------------------------------


class Harness:
    """Drives one storage through the mutations both implementations have."""

    storage: Any

    def append(self, ents: Sequence[Entry]) -> None:
        raise NotImplementedError

    def compact(self, index: int) -> None:
        raise NotImplementedError

    def apply_snapshot(self, snap: Snapshot) -> None:
        raise NotImplementedError

    def set_hard_state(self, hs: HardState) -> None:
        raise NotImplementedError

    def set_conf_state(self, cs: ConfState) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        """Reopen from what is persisted (MemStorage: nothing to do)."""


class MemHarness(Harness):
    def __init__(self) -> None:
        self.storage = MemStorage()

    def append(self, ents: Sequence[Entry]) -> None:
        self.storage.wl().append(list(ents))

    def compact(self, index: int) -> None:
        self.storage.wl().compact(index)

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.storage.wl().apply_snapshot(snap)

    def set_hard_state(self, hs: HardState) -> None:
        self.storage.wl().set_hardstate(hs)

    def set_conf_state(self, cs: ConfState) -> None:
        self.storage.wl().set_conf_state(cs)


class RegionHarness(Harness):
    """RegionStorage over an engine; with `wal=True` over a `RaftWal` that checkpoints every
    `checkpoint_rounds` commits (so reads straddle the WAL view and the column families)."""

    def __init__(
        self, factory: EngineFactory, wal: bool = False, checkpoint_rounds: int = 2, **kwargs: Any
    ) -> None:
        self.factory = factory
        self.use_wal = wal
        self.checkpoint_rounds = checkpoint_rounds
        self.kwargs = kwargs
        self.engine = factory.open()
        self.wal = self.open_wal()
        self.storage: RegionStorage = self.new_storage(REGION, **kwargs)
        # Neighbour regions share the column families: they must never be touched.
        for rid in (REGION - 1, REGION + 1):
            s = self.new_storage(rid)
            wb = WriteBatch()
            s.append(wb, [new_entry(i, 1) for i in (1, 2, 3)])
            s.set_hard_state(wb, HardState(term=1, vote=1, commit=3))
            self.write(wb)

    def open_wal(self) -> RaftWal | None:
        if not self.use_wal:
            return None
        return RaftWal(self.engine, checkpoint_rounds=self.checkpoint_rounds)

    def new_storage(self, rid: int, **kwargs: Any) -> RegionStorage:
        return RegionStorage(self.engine, rid, wal=self.wal, **kwargs)

    def write(self, wb: WriteBatch) -> None:
        """Commit `wb` the way the batching layer does."""
        if self.wal is not None:
            self.wal.end_round(wb)
        self.engine.write(wb)
        wb.run_commit_hooks()

    def commit(self, mutate: Callable[[WriteBatch], object]) -> None:
        wb = WriteBatch()
        mutate(wb)
        self.write(wb)

    def append(self, ents: Sequence[Entry]) -> None:
        self.commit(lambda wb: self.storage.append(wb, ents))

    def compact(self, index: int) -> None:
        self.commit(lambda wb: self.storage.compact(wb, index))

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.commit(lambda wb: self.storage.apply_snapshot(wb, snap))

    def set_hard_state(self, hs: HardState) -> None:
        self.commit(lambda wb: self.storage.set_hard_state(wb, hs))

    def set_conf_state(self, cs: ConfState) -> None:
        self.commit(lambda wb: self.storage.set_conf_state(wb, cs))

    def restart(self) -> None:
        self.engine = self.factory.reopen()
        self.wal = self.open_wal()
        self.storage = self.new_storage(REGION, **self.kwargs)

    def check_neighbours(self) -> None:
        for rid in (REGION - 1, REGION + 1):
            s = self.new_storage(rid)
            assert (s.first_index(), s.last_index()) == (1, 3)
            assert s.initial_state().hard_state == HardState(term=1, vote=1, commit=3)


HARNESSES = [
    "mem",
    "region-memory",
    "region-memory-nocache",
    "region-memory-cache2",
    "region-lmdb",
    "region-lmdb-cache2",
    "region-memory-wal",
    "region-memory-wal-nocache",
    "region-lmdb-wal-cache2",
]


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    kind: str = request.param
    if kind == "mem":
        yield MemHarness()
        return
    engine_kind = "lmdb" if "lmdb" in kind else "memory"
    kwargs: dict[str, Any] = {}
    if kind.endswith("nocache"):
        kwargs["cache_max_entries"] = 0
    elif kind.endswith("cache2"):
        kwargs["cache_max_entries"] = 2
    factory = EngineFactory(engine_kind, tmp_path / "store")
    h = RegionHarness(factory, wal="-wal" in kind, **kwargs)
    yield h
    h.check_neighbours()
    factory.close()


def setup_log(h: Harness, ents: Sequence[Entry], snap: tuple[int, int] = (2, 2)) -> None:
    """The state raft-rs's storage tests start from: a snapshot at `snap`, then `ents`."""
    h.apply_snapshot(new_snapshot(*snap))
    h.append(ents)


def check_both_before_and_after_restart(h: Harness, check: Callable[[], None]) -> None:
    check()
    h.restart()
    check()


# -- the tables (raft-rs storage.rs tests, from a snapshot at (2, 2)) -----------------------

ENTS_345 = [new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)]


@pytest.mark.parametrize(
    "idx, want",
    [(1, Compacted), (2, 2), (3, 3), (4, 4), (5, 5), (6, Unavailable)],
)
def test_term(harness: Harness, idx: int, want: int | type[Exception]) -> None:
    setup_log(harness, ENTS_345)

    def check() -> None:
        if isinstance(want, int):
            assert harness.storage.term(idx) == want
        else:
            with pytest.raises(want):
                harness.storage.term(idx)

    check_both_before_and_after_restart(harness, check)


def _size(*ents: Entry) -> int:
    return sum(e.ByteSize() for e in ents)


E3, E4, E5, E6 = (new_entry(i, i, b"d" * (10 * i)) for i in (3, 4, 5, 6))


@pytest.mark.parametrize(
    "lo, hi, max_size, want",
    [
        (2, 6, None, Compacted),
        (1, 6, None, Compacted),
        (3, 4, None, [E3]),
        (4, 5, None, [E4]),
        (4, 6, None, [E4, E5]),
        (4, 7, None, [E4, E5, E6]),
        (3, 7, None, [E3, E4, E5, E6]),
        (5, 5, None, []),
        # even if max_size is zero, the first entry is returned
        (4, 7, 0, [E4]),
        (3, 7, 0, [E3]),
        # limit to 2
        (4, 7, _size(E4, E5), [E4, E5]),
        (4, 7, _size(E4, E5) + _size(E6) // 2, [E4, E5]),
        (4, 7, _size(E4, E5, E6) - 1, [E4, E5]),
        (3, 7, _size(E3, E4, E5), [E3, E4, E5]),
        # all
        (4, 7, _size(E4, E5, E6), [E4, E5, E6]),
        (3, 7, 1 << 64 - 1, [E3, E4, E5, E6]),
    ],
)
def test_entries(
    harness: Harness,
    lo: int,
    hi: int,
    max_size: int | None,
    want: list[Entry] | type[Exception],
) -> None:
    setup_log(harness, [E3, E4, E5, E6])

    def check() -> None:
        if isinstance(want, list):
            assert pairs(harness.storage.entries(lo, hi, max_size)) == pairs(want)
        else:
            with pytest.raises(want):
                harness.storage.entries(lo, hi, max_size)

    check_both_before_and_after_restart(harness, check)


def test_entries_past_last_index_is_a_caller_bug(harness: Harness) -> None:
    setup_log(harness, ENTS_345)
    with pytest.raises(AssertionError):
        harness.storage.entries(4, 7)


def test_last_index(harness: Harness) -> None:
    setup_log(harness, ENTS_345)
    check_both_before_and_after_restart(harness, lambda: _eq(harness.storage.last_index(), 5))
    harness.append([new_entry(6, 5)])
    check_both_before_and_after_restart(harness, lambda: _eq(harness.storage.last_index(), 6))


def test_first_index(harness: Harness) -> None:
    setup_log(harness, ENTS_345)
    check_both_before_and_after_restart(harness, lambda: _eq(harness.storage.first_index(), 3))
    harness.compact(4)
    check_both_before_and_after_restart(harness, lambda: _eq(harness.storage.first_index(), 4))


def _eq(a: object, b: object) -> None:
    assert a == b


@pytest.mark.parametrize(
    "compact_index, first, truncated_term, remaining",
    [
        (2, 3, 2, 3),  # already compacted: no-op
        (3, 3, 2, 3),  # first index: no-op
        (4, 4, 3, 2),
        (5, 5, 4, 1),
        (6, 6, 5, 0),  # everything: the log is empty, last index stays
    ],
)
def test_compact(
    harness: Harness, compact_index: int, first: int, truncated_term: int, remaining: int
) -> None:
    setup_log(harness, ENTS_345)
    harness.compact(compact_index)

    def check() -> None:
        s = harness.storage
        assert s.first_index() == first
        assert s.last_index() == 5
        assert s.term(first - 1) == truncated_term
        assert len(s.entries(first, 6)) == remaining
        with pytest.raises(Compacted):
            s.term(first - 2)
        with pytest.raises(Compacted):
            s.entries(first - 1, 6)

    check_both_before_and_after_restart(harness, check)


def test_compact_past_last_index_is_a_caller_bug(harness: Harness) -> None:
    setup_log(harness, ENTS_345)
    with pytest.raises(AssertionError):
        harness.compact(7)


@pytest.mark.parametrize(
    "ents, want",
    [
        ([(3, 3), (4, 4), (5, 5)], [(3, 3), (4, 4), (5, 5)]),
        ([(3, 3), (4, 6), (5, 6)], [(3, 3), (4, 6), (5, 6)]),
        ([(3, 3), (4, 4), (5, 5), (6, 5)], [(3, 3), (4, 4), (5, 5), (6, 5)]),
        # truncate the existing entries and append
        ([(4, 5)], [(3, 3), (4, 5)]),
        ([(3, 5)], [(3, 5)]),
        # direct append
        ([(6, 5)], [(3, 3), (4, 4), (5, 5), (6, 5)]),
    ],
)
def test_append(harness: Harness, ents: list[tuple[int, int]], want: list[tuple[int, int]]) -> None:
    setup_log(harness, ENTS_345)
    harness.append([new_entry(i, t) for i, t in ents])

    def check() -> None:
        s = harness.storage
        last = want[-1][0]
        assert s.last_index() == last
        assert [(e.index, e.term) for e in s.entries(3, last + 1)] == want
        with pytest.raises(Unavailable):
            s.term(last + 1)

    check_both_before_and_after_restart(harness, check)
    if isinstance(harness, RegionHarness):
        # The conflicting suffix is gone from disk too (with a WAL: once checkpointed).
        if harness.wal is not None:
            harness.commit(harness.wal.checkpoint)
        start, end = raft_log_bounds(REGION)
        keys = [k for k, _ in harness.engine.scan(CF_RAFT_LOG, start, end)]
        assert keys == [raft_log_key(REGION, i) for i, _ in want]


@pytest.mark.parametrize("ents", [[(2, 3)], [(7, 5)]], ids=["compacted", "gap"])
def test_append_outside_the_log_is_a_caller_bug(
    harness: Harness, ents: list[tuple[int, int]]
) -> None:
    setup_log(harness, ENTS_345)
    with pytest.raises(AssertionError):
        harness.append([new_entry(i, t) for i, t in ents])


def test_apply_snapshot(harness: Harness) -> None:
    harness.set_hard_state(HardState(term=3, vote=2, commit=0))
    harness.apply_snapshot(new_snapshot(4, 4))

    def check() -> None:
        s = harness.storage
        assert (s.first_index(), s.last_index(), s.term(4)) == (5, 4, 4)
        rs = s.initial_state()
        assert rs.hard_state == HardState(term=4, vote=2, commit=4)
        assert list(rs.conf_state.voters) == [1, 2, 3]
        assert rs.initialized()

    check_both_before_and_after_restart(harness, check)
    with pytest.raises(SnapshotOutOfDate):
        harness.apply_snapshot(new_snapshot(3, 3))
    with pytest.raises(SnapshotOutOfDate):
        harness.apply_snapshot(new_snapshot(4, 4))
    check()


def test_apply_snapshot_replaces_the_log(harness: Harness) -> None:
    setup_log(harness, ENTS_345)
    harness.set_hard_state(HardState(term=9, vote=1, commit=4))
    harness.apply_snapshot(new_snapshot(4, 4, voters=(4, 5)))

    def check() -> None:
        s = harness.storage
        assert (s.first_index(), s.last_index(), s.term(4)) == (5, 4, 4)
        with pytest.raises(Unavailable):
            s.term(5)
        assert s.entries(5, 5) == []
        assert s.initial_state().hard_state == HardState(term=9, vote=1, commit=4)
        assert list(s.initial_state().conf_state.voters) == [4, 5]

    check_both_before_and_after_restart(harness, check)
    harness.append([new_entry(5, 9)])
    assert pairs(harness.storage.entries(5, 6)) == [(5, 9, b"")]


def test_initial_state(harness: Harness) -> None:
    assert not harness.storage.initial_state().initialized()
    assert (harness.storage.first_index(), harness.storage.last_index()) == (1, 0)
    assert harness.storage.term(0) == 0
    harness.set_conf_state(ConfState(voters=[1, 2], learners=[3]))
    harness.append([new_entry(1, 1), new_entry(2, 1)])
    harness.set_hard_state(HardState(term=1, vote=2, commit=2))

    def check() -> None:
        rs = harness.storage.initial_state()
        assert rs.hard_state == HardState(term=1, vote=2, commit=2)
        assert rs.conf_state == ConfState(voters=[1, 2], learners=[3])
        assert rs.initialized()
        # A copy: mutating it changes nothing.
        rs.hard_state.commit = 99
        assert harness.storage.initial_state().hard_state.commit == 2

    check_both_before_and_after_restart(harness, check)


def test_snapshot_like_memstorage(harness: Harness) -> None:
    setup_log(harness, ENTS_345)
    harness.set_hard_state(HardState(term=5, commit=4))

    def check() -> None:
        snap = harness.storage.snapshot(0, 2)
        assert (snap.metadata.index, snap.metadata.term) == (4, 4)
        assert list(snap.metadata.conf_state.voters) == [1, 2, 3]
        assert harness.storage.snapshot(5, 2).metadata.index == 5

    check_both_before_and_after_restart(harness, check)


# -- RegionStorage only ---------------------------------------------------------------------


@pytest.fixture(params=["memory", "lmdb", "memory-wal", "lmdb-wal"])
def region(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegionHarness]:
    kind: str = request.param
    factory = EngineFactory(kind.removesuffix("-wal"), tmp_path / "store")
    h = RegionHarness(factory, wal=kind.endswith("-wal"))
    yield h
    h.check_neighbours()
    factory.close()


def write_raw(region: RegionHarness, wb: WriteBatch) -> None:
    """Commit without running the hooks (a writer thread did it, the store has not polled)."""
    if region.wal is not None:
        region.wal.end_round(wb)
    region.engine.write(wb)


def test_mutations_are_readable_at_once(region: RegionHarness) -> None:
    """raft-rs's async-ready contract: what is handed out in a batch is readable through the
    Storage at once (it left the raft unstable log), before the batch is committed."""
    s = region.storage
    setup_log(region, ENTS_345)
    wb = WriteBatch()
    s.append(wb, [new_entry(4, 6), new_entry(5, 6), new_entry(6, 6)])
    s.set_hard_state(wb, HardState(term=6, vote=3, commit=5))
    assert s.compact(wb, 4)
    assert s.has_pending()
    assert (s.first_index(), s.last_index(), s.term(5), s.term(3)) == (4, 6, 6, 3)
    assert pairs(s.entries(4, 7)) == [(4, 6, b""), (5, 6, b""), (6, 6, b"")]
    assert s.initial_state().hard_state == HardState(term=6, vote=3, commit=5)
    # Not on disk: a fresh storage (a restart) sees the old state.
    region.restart()
    s2 = region.storage
    assert (s2.first_index(), s2.last_index(), s2.term(5)) == (3, 5, 5)
    assert s2.initial_state().hard_state.term == 2


def test_commit_makes_it_durable(region: RegionHarness) -> None:
    s = region.storage
    setup_log(region, ENTS_345)
    wb = WriteBatch()
    s.append(wb, [new_entry(6, 6)])
    s.set_hard_state(wb, HardState(term=6, vote=3, commit=5))
    write_raw(region, wb)
    assert s.has_pending()  # the hooks have not run
    wb.run_commit_hooks()
    assert not s.has_pending()
    region.restart()
    s2 = region.storage
    assert (s2.first_index(), s2.last_index(), s2.term(6)) == (3, 6, 6)
    assert s2.initial_state().hard_state == HardState(term=6, vote=3, commit=5)


def test_a_batch_never_committed_changes_nothing_after_restart(region: RegionHarness) -> None:
    setup_log(region, ENTS_345)
    region.set_hard_state(HardState(term=5, vote=1, commit=4))
    wb = WriteBatch()
    region.storage.append(wb, [new_entry(4, 7), new_entry(5, 7), new_entry(6, 7)])
    region.storage.set_hard_state(wb, HardState(term=7, vote=2, commit=6))
    region.storage.apply_snapshot(wb, new_snapshot(6, 7))
    region.storage.compact(wb, 7)
    region.restart()  # the batch is dropped
    s = region.storage
    assert (s.first_index(), s.last_index()) == (3, 5)
    assert pairs(s.entries(3, 6)) == [(3, 3, b""), (4, 4, b""), (5, 5, b"")]
    assert s.initial_state().hard_state == HardState(term=5, vote=1, commit=4)


def test_a_failed_commit_changes_nothing_on_disk() -> None:
    engine = MemoryEngine()
    s = RegionStorage(engine, REGION)
    wb = WriteBatch()
    s.append(wb, [new_entry(1, 1)])
    engine.write(wb)
    wb.run_commit_hooks()
    wb = WriteBatch()
    s.append(wb, [new_entry(2, 1)])
    assert s.last_index() == 2  # handed out
    engine.fail_next_write()
    with pytest.raises(WriteFailed):
        engine.write(wb)
    with pytest.raises(AssertionError):
        wb.run_commit_hooks()
    assert s.has_pending()  # never acknowledged
    assert RegionStorage(engine, REGION).last_index() == 1  # the restart sees the disk


def test_pipelined_batches_see_what_earlier_batches_handed_out(region: RegionHarness) -> None:
    """Round N+1 is filled while round N is not committed: a conflicting append in N+1 must
    delete what N wrote past its end."""
    s = region.storage
    wb1, wb2 = WriteBatch(), WriteBatch()
    s.append(wb1, [new_entry(i, 1) for i in range(1, 6)])
    assert s.last_index() == 5
    s.append(wb2, [new_entry(3, 2)])  # conflicts with 3..5 of wb1
    s.set_hard_state(wb2, HardState(term=2, commit=2))
    assert [(e.index, e.term) for e in s.entries(1, 4)] == [(1, 1), (2, 1), (3, 2)]
    region.write(wb1)
    region.write(wb2)
    assert pairs(s.entries(1, 4)) == [(1, 1, b""), (2, 1, b""), (3, 2, b"")]
    region.restart()
    assert region.storage.last_index() == 3
    assert [(e.index, e.term) for e in region.storage.entries(1, 4)] == [(1, 1), (2, 1), (3, 2)]


def test_commit_hooks_out_of_order_are_refused(tmp_path: Path) -> None:
    engine = MemoryEngine()
    s = RegionStorage(engine, REGION)
    wb1, wb2 = WriteBatch(), WriteBatch()
    s.append(wb1, [new_entry(1, 1)])
    s.append(wb2, [new_entry(2, 1)])
    engine.write(wb2)
    with pytest.raises(AssertionError, match="out of order"):
        wb2.run_commit_hooks()


def test_compaction_is_visible_at_once_and_reads_stay_correct(region: RegionHarness) -> None:
    s = region.storage
    s._cache_max_entries = 0  # force engine reads of what is released
    setup_log(region, [new_entry(i, 3) for i in range(3, 20)])
    wb = WriteBatch()
    assert s.compact(wb, 10)
    assert s.first_index() == 10
    with pytest.raises(Compacted):
        s.entries(3, 12)
    with pytest.raises(Compacted):
        s.term(5)
    assert s.term(12) == 3
    assert s.term(9) == 3
    write_raw(region, wb)  # on disk, hooks not run: the engine is ahead of the hooks
    assert pairs(s.entries(10, 20)) == [(i, 3, b"") for i in range(10, 20)]
    wb.run_commit_hooks()
    assert s.first_index() == 10
    region.restart()
    assert region.storage.first_index() == 10
    assert pairs(region.storage.entries(10, 20)) == [(i, 3, b"") for i in range(10, 20)]


def test_compaction_does_not_wait_for_pending_rewrites(region: RegionHarness) -> None:
    s = region.storage
    setup_log(region, [new_entry(i, 3) for i in range(3, 10)])
    pending = WriteBatch()
    s.append(pending, [new_entry(6, 4)])  # rewrites 6.. (not durable yet)
    wb = WriteBatch()
    assert s.compact(wb, 7)  # keeps the term of 6 as handed out: 4
    assert (s.first_index(), s.truncated_term()) == (7, 4)
    assert not s.compact(WriteBatch(), 7)  # nothing left to compact
    snap = WriteBatch()
    s.apply_snapshot(snap, new_snapshot(20, 5))
    assert not s.compact(WriteBatch(), 8)  # behind the snapshot: nothing to do
    for b in (pending, wb, snap):
        region.write(b)
    assert (s.first_index(), s.last_index(), s.term(20)) == (21, 20, 5)
    region.restart()
    s = region.storage
    assert (s.first_index(), s.last_index(), s.term(20)) == (21, 20, 5)


def test_compact_under_continuous_pipelining(region: RegionHarness) -> None:
    """Rounds keep one batch in flight: compaction of older entries still proceeds."""
    s = region.storage
    in_flight: WriteBatch | None = None
    for i in range(1, 30):
        wb = WriteBatch()
        s.append(wb, [new_entry(i, 1)])
        if i > 10:
            assert s.compact(wb, i - 5)
        if in_flight is not None:
            region.write(in_flight)
        in_flight = wb
    assert in_flight is not None
    region.write(in_flight)
    assert (s.first_index(), s.last_index()) == (24, 29)
    region.restart()
    assert (region.storage.first_index(), region.storage.last_index()) == (24, 29)


def test_unreleased_entries_stay_cached_whatever_the_bounds(region: RegionHarness) -> None:
    s = region.storage
    s._cache_max_entries = 0
    wb = WriteBatch()
    s.append(wb, [new_entry(i, 1) for i in range(1, 8)])
    assert s.cached_range() == (1, 8)
    assert s.unreleased_from() == 1
    region.write(wb)
    if region.wal is None:
        assert s.cached_range() == (8, 8)  # on disk: the disabled cache lets go of them
    else:
        assert region.wal.checkpoint(wb2 := WriteBatch())
        region.engine.write(wb2)
        wb2.run_commit_hooks()
        assert s.cached_range() == (8, 8)  # in raft_log once checkpointed
    assert s.unreleased_from() == 8
    assert pairs(s.entries(1, 8)) == [(i, 1, b"") for i in range(1, 8)]


def test_cache_serves_the_newest_entries(tmp_path: Path) -> None:
    engine = MemoryEngine()
    s = RegionStorage(engine, REGION, cache_max_entries=4, cache_max_bytes=1 << 20)
    for i in range(1, 11):
        wb = WriteBatch()
        s.append(wb, [new_entry(i, 1, b"x%d" % i)])
        engine.write(wb)
        wb.run_commit_hooks()
    assert s.cached_range() == (7, 11)
    cached = s.entries(7, 11)
    assert cached[0] is s.entries(7, 8)[0]  # no decoding: the same objects
    assert pairs(s.entries(1, 11)) == [(i, 1, b"x%d" % i) for i in range(1, 11)]
    assert s.term(2) == 1
    s.compact_cache(9)
    assert s.cached_range() == (9, 11)
    s.compact_cache(100)
    assert s.cached_range() == (11, 11)
    assert pairs(s.entries(8, 11)) == [(i, 1, b"x%d" % i) for i in range(8, 11)]


def test_cache_byte_bound_keeps_the_newest_entry(tmp_path: Path) -> None:
    engine = MemoryEngine()
    s = RegionStorage(engine, REGION, cache_max_entries=100, cache_max_bytes=1000)
    wb = WriteBatch()
    s.append(wb, [new_entry(i, 1, b"y" * 300) for i in range(1, 6)])
    engine.write(wb)
    wb.run_commit_hooks()
    # Over 1000 bytes: trimmed to 3/4 of the bound, 2 entries of ~309 bytes.
    assert s.cached_range() == (4, 6)
    wb = WriteBatch()
    s.append(wb, [new_entry(6, 1, b"z" * 5000)])
    engine.write(wb)
    wb.run_commit_hooks()
    assert s.cached_range() == (6, 7)
    assert len(s.entries(1, 7)) == 6


def test_snapshot_builder_is_used() -> None:
    engine = MemoryEngine()
    calls: list[tuple[int, int]] = []

    def build(request_index: int, to: int) -> Snapshot:
        calls.append((request_index, to))
        snap = new_snapshot(request_index, 1)
        snap.data = b"region data"
        return snap

    s = RegionStorage(engine, REGION, snapshot_builder=build)
    assert s.snapshot(5, 3).data == b"region data"
    assert calls == [(5, 3)]


def test_destroy(region: RegionHarness) -> None:
    setup_log(region, ENTS_345)
    region.set_hard_state(HardState(term=5, vote=1, commit=5))
    region.commit(region.storage.destroy)

    def check() -> None:
        s = region.storage
        assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
        assert not s.initial_state().initialized()

    check_both_before_and_after_restart(region, check)
    if region.wal is not None:
        region.commit(region.wal.checkpoint)
    assert region.engine.get(CF_RAFT_STATE, hard_state_key(REGION)) is None
    start, end = raft_log_bounds(REGION)
    assert region.engine.scan(CF_RAFT_LOG, start, end) == []


@pytest.mark.parametrize("wal", [False, True], ids=["direct", "wal"])
def test_restart_recovers_everything(tmp_path: Path, wal: bool) -> None:
    factory = EngineFactory("lmdb", tmp_path / "store")
    h = RegionHarness(factory, wal=wal, checkpoint_rounds=3)
    setup_log(h, [new_entry(i, 2 + i // 10, b"p%d" % i) for i in range(3, 100)])
    h.compact(40)
    h.append([new_entry(i, 20, b"q%d" % i) for i in range(90, 120)])
    h.set_hard_state(HardState(term=20, vote=3, commit=110))
    h.set_conf_state(ConfState(voters=[1, 2, 3], learners=[4]))
    before = h.storage

    def state(s: RegionStorage) -> tuple[object, ...]:
        first, last = s.first_index(), s.last_index()
        return (
            first,
            last,
            [s.term(i) for i in range(first - 1, last + 1)],
            pairs(s.entries(first, last + 1)),
            s.initial_state(),
        )

    want = state(before)
    h.restart()
    assert state(h.storage) == want
    if not wal:
        assert h.storage.cached_range() == (120, 120)  # the cache starts empty
    else:
        # The WAL's records since the last checkpoint are replayed into the cache.
        assert h.storage.cached_range()[1] == 120
    factory.close()


def test_repr_and_accessors() -> None:
    s = RegionStorage(MemoryEngine(), REGION)
    assert s.region_id == REGION
    assert (s.truncated_index(), s.truncated_term()) == (0, 0)
    assert s.hard_state() == HardState()
    assert s.conf_state() == ConfState()
    assert "region=7" in repr(s)


def test_mutations_need_an_open_batch() -> None:
    engine: Engine = MemoryEngine()
    s = RegionStorage(engine, REGION)
    wb = WriteBatch()
    engine.write(wb)
    with pytest.raises(ValueError):
        s.append(wb, [new_entry(1, 1)])
    assert s.last_index() == 0
    w = RegionStorage(engine, REGION + 1, wal=RaftWal(engine))
    with pytest.raises(ValueError):
        w.append(wb, [new_entry(1, 1)])
    assert w.last_index() == 0


def test_direct_mode_refuses_an_engine_with_wal_records() -> None:
    engine = MemoryEngine()
    wal = RaftWal(engine)
    s = RegionStorage(engine, REGION, wal=wal)
    wb = WriteBatch()
    s.append(wb, [new_entry(1, 1)])
    engine.write(wb)
    assert engine.scan(CF_RAFT_WAL)
    with pytest.raises(EngineError, match="RaftWal"):
        RegionStorage(engine, REGION)
