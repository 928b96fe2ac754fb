"""Property test: RegionStorage (direct and WAL layouts), driven with pipelined batches,
checkpoints, restarts and crashes, answers like MemStorage (the naive oracle) driven with the
same operations applied at once: at every step (the view includes what is handed out), and
after a crash exactly like the oracle as of the last commit (a batch never committed changes
nothing on disk)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.engine import Engine, LmdbEngine, MemoryEngine, RaftWal, RegionStorage, WriteBatch
from multiraft.raft.eraftpb import ConfState, Entry, HardState, Snapshot
from multiraft.raft.errors import SnapshotOutOfDate, StorageError
from multiraft.raft.storage import MemStorage

REGION = 3

_u = st.integers(0, 1000)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), _u, st.integers(1, 6), st.integers(1, 9)),
        st.tuples(st.just("compact"), _u),
        st.tuples(st.just("snapshot"), _u, st.integers(1, 9)),
        st.tuples(st.just("hard_state"), st.integers(0, 9), st.integers(0, 3), _u),
        st.tuples(st.just("conf_state"), st.lists(st.integers(1, 5), max_size=3, unique=True)),
        st.tuples(st.just("cut")),  # start a new batch; the previous one stays pending
        st.tuples(st.just("flush")),  # commit every pending batch, in order
        st.tuples(st.just("checkpoint")),  # WAL: a checkpoint into the current batch
        st.tuples(st.just("restart")),  # flush, then reopen engine + storage
        st.tuples(st.just("crash")),  # drop the pending batches, then reopen
    ),
    max_size=40,
)


def answer(fn: Any, *args: Any) -> Any:
    try:
        result = fn(*args)
    except StorageError as e:
        return type(e)
    if isinstance(result, list):
        return [(e.index, e.term, e.data) for e in result]
    return result


def compare(oracle: MemStorage, s: RegionStorage) -> None:
    first, last = oracle.first_index(), oracle.last_index()
    assert (s.first_index(), s.last_index()) == (first, last)
    for i in range(max(0, first - 3), last + 3):
        assert answer(s.term, i) == answer(oracle.term, i), i
    assert answer(s.entries, first, last + 1) == answer(oracle.entries, first, last + 1)
    for lo in range(max(1, first - 1), last + 1):
        for max_size in (0, 15, 40):
            want = answer(oracle.entries, lo, last + 1, max_size)
            assert answer(s.entries, lo, last + 1, max_size) == want, (lo, max_size)
    assert s.initial_state() == oracle.initial_state()


def run(ops: list[tuple[Any, ...]], open_engine: Any, cache: int, use_wal: bool) -> None:
    engine: Engine = open_engine(None)

    def open_storage() -> RegionStorage:
        wal = RaftWal(engine, checkpoint_rounds=3) if use_wal else None
        return RegionStorage(engine, REGION, wal=wal, cache_max_entries=cache)

    s = open_storage()
    oracle = MemStorage()
    durable = copy.deepcopy(oracle)  # the oracle as of the last flush
    pending: list[WriteBatch] = []
    batch = WriteBatch()

    def flush() -> None:
        nonlocal batch, durable
        for wb in [*pending, batch]:
            if s._wal is not None:
                s._wal.end_round(wb)
            engine.write(wb)
            wb.run_commit_hooks()
        pending.clear()
        batch = WriteBatch()
        assert not s.has_pending()
        compare(oracle, s)
        durable = copy.deepcopy(oracle)

    for op in ops:
        first, last = oracle.first_index(), oracle.last_index()
        kind = op[0]
        if kind == "append":
            _, a, n, term = op
            start = first + a % (last - first + 2)
            ents = [Entry(index=i, term=term, data=b"%d" % i) for i in range(start, start + n)]
            s.append(batch, ents)
            oracle.wl().append([Entry(index=e.index, term=e.term, data=e.data) for e in ents])
        elif kind == "compact":
            ci = first + op[1] % (last - first + 2)
            if s.compact(batch, ci):
                oracle.wl().compact(ci)
            else:
                assert ci <= first
        elif kind == "snapshot":
            _, a, term = op
            index = max(0, first - 2 + a % (last - first + 6))
            snap = Snapshot()
            snap.metadata.index = index
            snap.metadata.term = term
            snap.metadata.conf_state.voters.extend([1, 2])
            try:
                oracle.wl().apply_snapshot(snap)
            except SnapshotOutOfDate:
                try:
                    s.apply_snapshot(batch, snap)
                except SnapshotOutOfDate:
                    continue
                raise AssertionError("RegionStorage accepted an out-of-date snapshot") from None
            s.apply_snapshot(batch, snap)
        elif kind == "hard_state":
            _, term, vote, commit = op
            hs = HardState(term=term, vote=vote, commit=commit % (last + 1))
            s.set_hard_state(batch, hs)
            oracle.wl().set_hardstate(HardState(term=term, vote=vote, commit=hs.commit))
        elif kind == "conf_state":
            s.set_conf_state(batch, ConfState(voters=op[1]))
            oracle.wl().set_conf_state(ConfState(voters=op[1]))
        elif kind == "cut":
            pending.append(batch)
            batch = WriteBatch()
        elif kind == "flush":
            flush()
        elif kind == "checkpoint":
            if s._wal is not None:
                s._wal.checkpoint(batch)
        elif kind == "restart":
            flush()
            engine = open_engine(engine)
            s = open_storage()
        else:  # crash: the pending batches are never written
            pending.clear()
            batch = WriteBatch()
            engine = open_engine(engine)
            s = open_storage()
            oracle = copy.deepcopy(durable)
        compare(oracle, s)
    flush()
    engine = open_engine(engine)
    s = open_storage()
    compare(oracle, s)
    engine.close()


@settings(max_examples=120, deadline=None)
@given(ops=OPS, cache=st.sampled_from([0, 2, 256]), use_wal=st.booleans())
def test_memory_engine_region_storage_matches_memstorage(
    ops: list[tuple[Any, ...]], cache: int, use_wal: bool
) -> None:
    shared = MemoryEngine()
    run(ops, lambda old: shared, cache, use_wal)


@settings(max_examples=40, deadline=None)
@given(ops=OPS, cache=st.sampled_from([0, 2, 256]), use_wal=st.booleans())
def test_lmdb_region_storage_matches_memstorage(
    ops: list[tuple[Any, ...]], cache: int, use_wal: bool
) -> None:
    with tempfile.TemporaryDirectory() as d:

        def open_engine(old: Engine | None) -> Engine:
            if old is not None:
                old.close()
            return LmdbEngine(Path(d), fsync=False)

        run(ops, open_engine, cache, use_wal)
