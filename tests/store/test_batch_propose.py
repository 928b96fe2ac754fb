"""A round's writes to a region are proposed as one raft entry (TiKV's RaftCmdRequest
batching), and each command in it keeps its own result, CAS outcome, dedupe and error."""

from __future__ import annotations

from typing import Any

import pytest

from multiraft.engine import MemoryEngine
from multiraft.store.cmd import OP_CAS, OP_PUT, Applied, CasFailed, Command, Op, command_body
from multiraft.store.errors import EpochNotMatch, ServerBusy
from multiraft.store.store import Store, StoreConfig


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
