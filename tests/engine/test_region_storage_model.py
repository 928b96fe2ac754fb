"""Property test: RegionStorage, driven with pipelined batches and restarts, answers like
MemStorage (the naive oracle) driven with the same operations applied at once."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.engine import Engine, LmdbEngine, MemoryEngine, RegionStorage, WriteBatch
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
        st.tuples(st.just("restart")),  # flush, then reopen engine + storage
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


def run(ops: list[tuple[Any, ...]], open_engine: Any, cache: int) -> None:
    engine: Engine = open_engine(None)
    s = RegionStorage(engine, REGION, cache_max_entries=cache)
    oracle = MemStorage()
    pending: list[WriteBatch] = []
    batch = WriteBatch()

    def flush() -> None:
        nonlocal batch
        for wb in [*pending, batch]:
            engine.write(wb)
            wb.run_commit_hooks()
        pending.clear()
        batch = WriteBatch()
        assert not s.has_pending()
        compare(oracle, s)

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
            no_pending = not pending and batch.is_empty()
            if s.compact(batch, ci):
                oracle.wl().compact(ci)
            else:
                # Nothing to do, or it must wait for a pending rewrite: never when idle.
                assert ci <= first or not no_pending
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
        else:  # restart
            flush()
            engine = open_engine(engine)
            s = RegionStorage(engine, REGION, cache_max_entries=cache)
            compare(oracle, s)
    flush()
    engine.close()


@settings(max_examples=150, deadline=None)
@given(ops=OPS, cache=st.sampled_from([0, 2, 256]))
def test_memory_engine_region_storage_matches_memstorage(
    ops: list[tuple[Any, ...]], cache: int
) -> None:
    shared = MemoryEngine()
    run(ops, lambda old: shared, cache)


@settings(max_examples=40, deadline=None)
@given(ops=OPS, cache=st.sampled_from([0, 2, 256]))
def test_lmdb_region_storage_matches_memstorage(ops: list[tuple[Any, ...]], cache: int) -> None:
    with tempfile.TemporaryDirectory() as d:

        def open_engine(old: Engine | None) -> Engine:
            if old is not None:
                old.close()
            return LmdbEngine(Path(d), fsync=False)

        run(ops, open_engine, cache)
