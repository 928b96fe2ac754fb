"""The Store over a real LMDB directory with a pipelined batcher (a writer thread commits round
N while round N+1 is collected), as the server runs it; and recovery of a conf state that a
crash separated from its region metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batching import Batcher
from multiraft.engine import LmdbEngine, WriteBatch
from multiraft.raft import ConfState
from multiraft.store.cmd import OP_CAS, OP_PUT, Command, Op
from multiraft.store.store import Store, StoreConfig
from multiraft.testing import SimCluster


def _drive(store: Store, until: Any, max_rounds: int = 20000) -> None:
    """Rounds, with a tick every 10 rounds, until `until()`; waits on the writer between."""
    for i in range(max_rounds):
        if until():
            return
        if i % 10 == 0:
            store.tick()
        store.round()
        store.batcher.wait(0.005)
    raise AssertionError("condition not reached")


def _open(path: Path) -> tuple[LmdbEngine, Store]:
    engine = LmdbEngine(path)
    batcher: Batcher[Any] = Batcher(engine, pipelined=True)
    store = Store(1, engine, send=lambda to, frame: None, config=StoreConfig(election_ticks=5), batcher=batcher)
    store.bootstrap(1, [1], 4)
    return engine, store


def test_pipelined_store_writes_reads_and_recovers(tmp_path: Path) -> None:
    engine, store = _open(tmp_path)
    _drive(store, lambda: store.leaders() == 4)
    results: list[tuple[Any, Any]] = []
    n = 200
    for i in range(n):
        key = bytes([i % 256, i // 256]) + b"k"
        region = store.region_for_key(key)
        assert region is not None
        store.propose(Command(region.id, 0, 0, [Op(OP_PUT, key, value=b"v%d" % i)], b"req%d" % i), lambda r, e: results.append((r, e)))
        if i % 16 == 0:
            store.round()
    _drive(store, lambda: len(results) == n)
    assert all(e is None for _, e in results)
    stats = store.batcher.stats
    assert stats.fsyncs <= stats.rounds_persisted  # one commit per round, whatever the regions
    # A CAS sees every earlier write (the applied state is visible at once).
    key = bytes([5, 0]) + b"k"
    region = store.region_for_key(key)
    assert region is not None
    out: list[tuple[Any, Any]] = []
    store.propose(Command(region.id, 0, 0, [Op(OP_CAS, key, value=b"x", expected=b"v5")], b"cas1"), lambda r, e: out.append((r, e)))
    reads: list[tuple[Any, Any]] = []
    store.get(region.id, key, lambda v, e: reads.append((v, e)))
    _drive(store, lambda: len(out) == 1 and len(reads) == 1)
    assert out[0][1] is None
    _drive(store, lambda: not store.batcher.in_flight())
    store.batcher.close()
    engine.close()

    engine, store = _open(tmp_path)
    _drive(store, lambda: store.leaders() == 4)
    got: list[Any] = []
    for i in range(n):
        key = bytes([i % 256, i // 256]) + b"k"
        region = store.region_for_key(key)
        assert region is not None
        store.get(region.id, key, lambda v, e: got.append(v))
    _drive(store, lambda: len(got) == n)
    assert sorted(got) == sorted(b"x" if i == 5 else b"v%d" % i for i in range(n))
    store.batcher.close()
    engine.close()


def test_a_conf_state_left_behind_by_a_crash_is_repaired_from_the_region() -> None:
    c = SimCluster(stores=4, seed=31, initial_regions=1, initial_stores=3)
    region = c.change_peer(1, "add_voter", 4)
    c.run_until(lambda: 4 in c.replica_stores(1), timeout=10)
    # Store 2 crashes "between" the apply batch (region metadata) and the round batch (conf
    # state): put the old conf state back, as if that write was lost.
    store = c.stores[2]
    old = ConfState(voters=[p.id for p in region.peers if p.store_id != 4])
    wb = WriteBatch()
    store.peers[1].storage.set_conf_state(wb, old)
    store.engine.write(wb)
    c.crash(2)
    c.restart(2)
    cs = c.stores[2].peers[1].storage.conf_state()
    assert set(cs.voters) == {p.id for p in region.peers}
    assert set(c.stores[2].peers[1].node.raft.prs.conf.voters.ids()) == {p.id for p in region.peers}
    c.put(b"a", b"1")
    assert c.get(b"a") == b"1"
