"""Opening a store's regions from its engine: the checks made once per store, and the repair
of a raft conf state left behind its region's metadata by a crash."""

from __future__ import annotations

import pytest

from multiraft.engine import EngineError, MemoryEngine, RaftWal, RegionStorage, WriteBatch
from multiraft.raft.eraftpb import ConfState, Entry, HardState
from multiraft.store.store import Store


def _store(engine: MemoryEngine) -> Store:
    return Store(1, engine, lambda to, frame: None)


def test_open_refuses_an_engine_holding_raft_wal_records() -> None:
    engine = MemoryEngine()
    _store(engine).bootstrap(1, [1, 2, 3], 4)
    wb = WriteBatch()
    RegionStorage(engine, 99, wal=RaftWal(engine)).append(
        wb, [Entry(index=1, term=1)], HardState(term=1, commit=1)
    )
    engine.write(wb)
    wb.run_commit_hooks()
    with pytest.raises(EngineError, match="RaftWal"):
        _store(engine).open(1)


def test_open_repairs_a_conf_state_behind_the_region_metadata() -> None:
    engine = MemoryEngine()
    _store(engine).bootstrap(1, [1, 2, 3], 4)
    # A crash between an applied conf change (the region's metadata) and its conf state.
    storage = RegionStorage(engine, 2)
    want = set(storage.conf_state().voters)
    wb = WriteBatch()
    storage.set_conf_state(wb, ConfState(voters=sorted(want)[:2], learners=[12345]))
    engine.write(wb)
    wb.run_commit_hooks()
    store = _store(engine)
    store.open(1)
    cs = store.peers[2].storage.conf_state()
    assert set(cs.voters) == want and not cs.learners
    assert set(RegionStorage(engine, 2).conf_state().voters) == want
