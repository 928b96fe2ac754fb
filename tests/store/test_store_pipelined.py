"""The Store over a real LMDB directory with a pipelined batcher (a writer thread commits round
N while round N+1 is collected), as the server runs it; and recovery of a conf state that a
crash separated from its region metadata."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from batching import Batcher
from multiraft.engine import CF_KV, LmdbEngine, MemoryEngine, WriteBatch
from multiraft.raft import ConfState
from multiraft.store.cmd import OP_CAS, OP_DELETE, OP_PUT, Command, Op
from multiraft.store.snapshot import decode_snapshot_data
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


class _GatedEngine(MemoryEngine):
    """A MemoryEngine whose commits wait for permission (`allow(n)`: let n more through;
    None: all), so a test can hold a round in the writer."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self._allowed: int | None = None
        self.waiting = False

    def allow(self, n: int | None) -> None:
        with self._cond:
            self._allowed = n
            self._cond.notify_all()

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        with self._cond:
            while self._allowed is not None and self._allowed <= 0:
                self.waiting = True
                self._cond.wait()
            self.waiting = False
            if self._allowed is not None:
                self._allowed -= 1
        super().write(batch, sync)


def test_rounds_wait_for_the_writer_and_applied_state_waits_for_the_tick() -> None:
    """No round is due while the writer is full (it runs one when it finishes: the server
    spun rounds doing nothing before), and a round holding only applied state (nothing waits
    on its fsync) is written with the next round that must be, or at the next tick."""
    engine = _GatedEngine()
    batcher: Batcher[Any] = Batcher(engine, pipelined=True, max_in_flight=2)
    store = Store(1, engine, send=lambda to, frame: None, config=StoreConfig(election_ticks=5), batcher=batcher)
    store.bootstrap(1, [1], 1)
    _drive(store, lambda: store.leaders() == 1)
    store.tick()
    store.round()
    assert batcher.wait(5) and not batcher.in_flight()
    store.round()
    assert not store.has_work()

    put: list[Any] = []
    store.propose(Command(1, 0, 0, [Op(OP_PUT, b"k", value=b"v")], b"p1"), lambda r, e: put.append(e))
    store.round()  # the entry: submitted
    assert batcher.wait(5) and not batcher.in_flight()
    commits = engine.stats.commits
    store.round()  # durable: committed and applied, the client answered
    assert put == [None]
    assert batcher.has_open_writes() and not batcher.in_flight()
    assert not store.has_work() and engine.stats.commits == commits
    assert engine.get(CF_KV, b"k") is None and store.peers[1].applied_index > 0
    store.tick()
    assert store.has_work()
    store._dirty.clear()  # (the tick woke the region; only persistence is looked at here)
    store.round()
    assert batcher.wait(5) and not batcher.in_flight()
    assert engine.get(CF_KV, b"k") == b"v"
    # That round held a commit index and applied state only: once written, raft has nothing
    # new to say, and the region is not looked at again for it.
    store._poll_persisted()
    assert not store._dirty

    engine.allow(0)  # the writer holds what it gets
    for i in range(3):
        store.propose(Command(1, 0, 0, [Op(OP_PUT, b"k%d" % i, value=b"v")], b"q%d" % i), lambda r, e: None)
        store.round()
    assert batcher.in_flight() == 2 and batcher.has_urgent_writes()
    assert not store.has_work()
    engine.allow(None)
    assert batcher.wait(5)
    assert store.has_work()
    store.round()
    assert batcher.flush() is not None


def test_applied_writes_ride_the_round_and_are_readable_before_it_commits() -> None:
    """The KV writes of applied commands go into the round's batch (one commit per round, no
    commit of their own). While that round waits in the writer, the store's overlay answers
    for them: a linearizable read, a scan and a snapshot all see the applied state."""
    engine = _GatedEngine()
    batcher: Batcher[Any] = Batcher(engine, pipelined=True)
    store = Store(1, engine, send=lambda to, frame: None, config=StoreConfig(election_ticks=5), batcher=batcher)
    store.bootstrap(1, [1], 1)
    _drive(store, lambda: store.leaders() == 1)
    _drive(store, lambda: not batcher.in_flight())
    commits, rounds = engine.stats.commits, batcher.stats.rounds

    put: list[Any] = []
    store.propose(Command(1, 0, 0, [Op(OP_PUT, b"k", value=b"v1")], b"p1"), lambda r, e: put.append(e))
    store.propose(Command(1, 0, 0, [Op(OP_PUT, b"k2", value=b"x")], b"p0"), lambda r, e: put.append(e))
    _drive(store, lambda: len(put) == 2)
    _drive(store, lambda: not batcher.in_flight())
    assert put == [None, None]
    # Every commit was a round's: the apply did not write on its own.
    assert engine.stats.commits - commits == batcher.stats.rounds - rounds

    # The round holding the entries goes through; the one holding their applied writes waits.
    engine.allow(1)
    put2: list[Any] = []
    store.propose(Command(1, 0, 0, [Op(OP_PUT, b"k", value=b"v2")], b"p2"), lambda r, e: put2.append(e))
    store.propose(Command(1, 0, 0, [Op(OP_DELETE, b"k2")], b"p3"), lambda r, e: put2.append(e))
    _drive(store, lambda: len(put2) == 2 and engine.waiting)
    assert put2 == [None, None] and engine.get(CF_KV, b"k") == b"v1"
    reads: list[Any] = []
    store.get(1, b"k", lambda v, e: reads.append((v, e)))
    store.scan(1, b"", b"", 10, lambda v, e: reads.append((v, e)))
    _drive(store, lambda: len(reads) == 2)
    assert reads == [(b"v2", None), ([(b"k", b"v2")], None)]
    assert engine.waiting  # still not committed: the overlay answered
    peer = store.peers[1]
    # A snapshot now is the state at the applied index: the engine plus the round in flight.
    early = store._build_snapshot(1, peer.applied_index)
    assert early.metadata.index == peer.applied_index
    data = decode_snapshot_data(early.data)
    assert dict(zip(data.kv[::2], data.kv[1::2], strict=True)) == {b"k": b"v2"}
    assert any(k.endswith(b"p2") for k in data.dedupe[::2])  # the retry record travels too
    engine.allow(None)
    _drive(store, lambda: not batcher.in_flight())
    store.round()  # runs the commit hooks
    assert store._unwritten == {} and engine.get(CF_KV, b"k") == b"v2"
    # Once committed, the engine alone gives the very same snapshot.
    assert store._build_snapshot(1, peer.applied_index).data == early.data
    batcher.close()

