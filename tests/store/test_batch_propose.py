"""A round's writes to a region are proposed as one raft entry (TiKV's RaftCmdRequest
batching), and each command in it keeps its own result, CAS outcome, dedupe and error."""

from __future__ import annotations

from typing import Any

import pytest

from multiraft.engine import MemoryEngine
from multiraft.store.base import FEATURES
from multiraft.store.cmd import OP_CAS, OP_PUT, Applied, CasFailed, Command, Op, command_body
from multiraft.store.errors import EpochNotMatch, ServerBusy
from multiraft.store.store import Store, StoreConfig
from multiraft.testing.cluster import SimCluster


def _store() -> Store:
    store = Store(1, MemoryEngine(), send=lambda to, frame: None, config=StoreConfig(election_ticks=5))
    store.bootstrap(1, [1], 1)
    for i in range(200):
        if store.leaders() == 1:
            break
        if i % 10 == 0:
            store.tick()
        store.round()
    assert store.leaders() == 1
    for _ in range(10):  # the new leader's empty entry is applied
        store.round()
    return store


def _drive(store: Store, until: Any) -> None:
    for _ in range(200):
        if until():
            return
        store.round()
    raise AssertionError("not reached")


def test_one_round_of_writes_is_one_entry_with_a_result_per_command() -> None:
    store = _store()
    out: dict[str, tuple[Any, Any]] = {}

    def cb(name: str) -> Any:
        return lambda r, e: out.__setitem__(name, (r, e))

    put = lambda k, v, rid: Command(1, 0, 0, [Op(OP_PUT, k, value=v)], rid)  # noqa: E731
    store.propose(put(b"a", b"1", b"r1"), cb("put a"))
    store.propose(Command(1, 0, 0, [Op(OP_CAS, b"a", value=b"2", expected=b"1")], b"r2"), cb("cas ok"))
    store.propose(Command(1, 0, 0, [Op(OP_CAS, b"b", value=b"x", expected=b"y")], b"r3"), cb("cas fails"))
    store.propose(put(b"a", b"3", b"r1"), cb("retry of r1"))  # same request id: applied once
    before = store.stats.applied_entries
    _drive(store, lambda: len(out) == 4)
    assert store.stats.applied_entries - before == 1  # one entry carried all four
    assert out["put a"] == (Applied((None,)), None)
    assert out["cas ok"] == (Applied((b"1",)), None)
    assert out["cas fails"] == (CasFailed(0, None), None)
    assert out["retry of r1"] == (Applied((None,)), None)  # the first one's result
    got: list[Any] = []
    store.get(1, b"a", lambda v, e: got.append((v, e)))
    _drive(store, lambda: got)
    assert got == [(b"2", None)]  # the retry did not apply again


def test_a_command_proposed_before_a_split_fails_alone() -> None:
    store = _store()
    region = store.peers[1].region
    out: list[tuple[Any, Any]] = []
    store.propose(Command(1, 0, 0, [Op(OP_PUT, b"k", value=b"v")], b"ok"), lambda r, e: out.append((r, e)))
    # A command from before an epoch change (as if proposed at an older version): refused
    # at apply, while the other command of the same entry applies.
    peer = store.peers[1]
    stale = Command(1, region.region_epoch.conf_ver, region.region_epoch.version - 1,
                    [Op(OP_PUT, b"z", value=b"v")], b"stale")
    peer.submit_command(command_body(stale), lambda r, e: out.append((r, e)))
    store._wake(1)
    _drive(store, lambda: len(out) == 2)
    assert out[0] == (Applied((None,)), None)
    assert out[1][0] is None and isinstance(out[1][1], EpochNotMatch)


def test_requests_beyond_the_bound_are_refused_with_server_busy_until_answered() -> None:
    store = _store()
    store.config.max_pending_requests = 3
    out: list[Any] = []
    for i in range(3):
        store.propose(Command(1, 0, 0, [Op(OP_PUT, b"k%d" % i, value=b"v")], b"b%d" % i), lambda r, e: out.append(e))
    assert store.pending_requests == 3
    with pytest.raises(ServerBusy):
        store.propose(Command(1, 0, 0, [Op(OP_PUT, b"x", value=b"v")], b"bx"), lambda r, e: None)
    with pytest.raises(ServerBusy):
        store.get(1, b"x", lambda v, e: None)
    assert store.stats.server_busy == 2
    _drive(store, lambda: len(out) == 3)
    assert out == [None, None, None] and store.pending_requests == 0
    got: list[Any] = []
    store.get(1, b"k0", lambda v, e: got.append((v, e)))  # room again
    _drive(store, lambda: got)
    assert got == [(b"v", None)] and store.pending_requests == 0


def _entries_for_puts(c: SimCluster, leader: int, n: int, tag: bytes) -> int:
    """Submit `n` puts at once (one round of the leader) and return the entries the leader
    applied for them."""
    before = c.stores[leader].stats.applied_entries
    ops = [c.submit_put(tag + b"%d" % i, b"v") for i in range(n)]
    c.run_until(lambda: all(op.done for op in ops))
    assert all(op.error is None for op in ops)
    return c.stores[leader].stats.applied_entries - before


def test_batch_entries_wait_until_every_store_of_the_region_applies_them() -> None:
    """Rolling upgrade: a leader proposes batch entries only once every store holding a
    replica of the region announced that it applies them (`BatchRaftMessage.features`, in
    every frame of raft messages); a store that does not (older code: the field is absent)
    gets one entry per command, and each still has its own result."""
    c = SimCluster(stores=3, seed=11, initial_regions=1)
    c.put(b"warm", b"up")  # every store has sent frames by now
    leader = c.leader_of(1)
    assert leader is not None
    assert _entries_for_puts(c, leader, 4, b"a") == 1
    old = next(s for s in c.store_ids if s != leader)
    c.stores[old].lanes.features = None  # as a store of an older version frames them
    c.run_for(1.0)
    assert c.stores[leader]._store_features[old] == 0
    assert _entries_for_puts(c, leader, 4, b"b") == 4
    assert c.get(b"b3") == b"v"
    c.stores[old].lanes.features = FEATURES  # upgraded
    c.run_for(1.0)
    assert _entries_for_puts(c, leader, 4, b"c") == 1


def test_a_read_puts_no_ready_into_the_round() -> None:
    """The Readies of a ReadIndex round carry messages and read states only: nothing to
    write, so they stay out of the write round (`RawNode.advance_unwritten`)."""
    store = _store()
    store.tick()  # the settled state goes out
    store.round()
    batcher = store.batcher
    readies, rounds = batcher.stats.readies, batcher.stats.rounds
    got: list[Any] = []
    store.get(1, b"a", lambda v, e: got.append((v, e)))
    _drive(store, lambda: got)
    assert got == [(None, None)]
    assert not batcher.has_open_writes()
    assert (batcher.stats.readies, batcher.stats.rounds) == (readies, rounds)
