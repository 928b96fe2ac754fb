"""The store in the deterministic cluster simulator: elections, KV semantics, crash/restart,
partitions, and linearizable histories under faults."""

from __future__ import annotations

import os
import random

import pytest

from multiraft.testing.cluster import SimCluster, SimOp
from multiraft.testing.linearizability import KvOp, check_history
from multiraft.testing.simnet import LinkFaults


def test_kv_semantics() -> None:
    c = SimCluster(stores=3, seed=7, initial_regions=1)
    assert c.get(b"k") is None
    c.put(b"k", b"v")
    assert c.get(b"k") == b"v"
    assert c.cas(b"k", b"v", b"w") is True
    assert c.cas(b"k", b"v", b"x") is False
    assert c.get(b"k") == b"w"
    assert c.cas(b"new", None, b"1") is True  # expected absent
    c.delete(b"k")
    assert c.get(b"k") is None
    st = c.stats()
    assert set(st) == {1, 2, 3}
    assert sum(s["leaders"] for s in st.values()) == 1
    assert all(s["regions"] == 1 and s["fsyncs"] > 0 for s in st.values())


def test_random_writes_are_readable() -> None:
    c = SimCluster(stores=3, seed=3, initial_regions=16)
    rng = random.Random(3)
    want: dict[bytes, bytes] = {}
    ops = []
    for i in range(300):
        k = bytes([rng.randrange(256), rng.randrange(256)])
        want[k] = b"v%d" % i
        ops.append(c.submit_put(k, want[k]))
        c.run_until(lambda op=ops[-1]: op.done)  # one client: writes in order
    assert all(o.error is None for o in ops)
    for k, v in want.items():
        assert c.get(k) == v


@pytest.mark.parametrize("victim", [1, 2, 3])
def test_crash_restart_keeps_acknowledged_writes(victim: int) -> None:
    c = SimCluster(stores=3, seed=10 + victim, initial_regions=4)
    acked: dict[bytes, bytes] = {}
    for i in range(40):
        c.put(b"a%d" % i, b"1")
        acked[b"a%d" % i] = b"1"
    c.crash(victim)
    for i in range(40):
        c.put(b"b%d" % i, b"2")
        acked[b"b%d" % i] = b"2"
    c.restart(victim)
    c.run_until(c.all_regions_have_leaders, timeout=30)
    for k, v in acked.items():
        assert c.get(k) == v
    # The restarted store caught up: crash the two others one at a time, it still serves.
    others = [s for s in (1, 2, 3) if s != victim]
    c.crash(others[0])
    c.run_until(c.all_regions_have_leaders, timeout=30)
    for k, v in acked.items():
        assert c.get(k) == v


def test_leader_isolated_majority_keeps_serving() -> None:
    c = SimCluster(stores=3, seed=5, initial_regions=1)
    c.put(b"k", b"1")
    leader = next(sid for sid, s in c.stores.items() if s.leaders())
    others = [s for s in (1, 2, 3) if s != leader]
    c.partition([leader], others)
    c.put(b"k", b"2")  # the majority side elects a new leader and serves
    new_leader = next(sid for sid, s in c.stores.items() if s.leaders() and sid != leader)
    assert new_leader in others
    c.heal()
    c.run_for(3.0)
    # The old leader stepped down (check_quorum / higher term) and caught up.
    assert c.get(b"k") == b"2"
    c.partition([others[0]], [leader, others[1]])  # now a minority follower is cut off
    c.put(b"k", b"3")
    assert c.get(b"k") == b"3"


def _history(ops: list[SimOp]) -> list[KvOp]:
    out = []
    for op in ops:
        pending = op.error is not None  # gave up: it may or may not have happened
        if op.kind == "get" and pending:
            continue
        out.append(
            KvOp(
                op.kind,
                op.key,
                value=op.value,
                expected=op.expected,
                result=op.result,
                invoked_at=op.invoked_at,
                completed_at=None if pending else op.completed_at,
                label=op.request_id.decode(),
            )
        )
    return out


def submit_random_ops(c: SimCluster, rng: random.Random, keys: list[bytes], clients: list[SimOp | None]) -> None:
    """Each client without an operation in flight starts one: put, get (twice as likely),
    CAS or delete of one of `keys`, with small values so that CAS often matches."""
    for i, cur in enumerate(clients):
        if cur is None or cur.done:
            k = rng.choice(keys)
            kind = rng.choice(["put", "get", "cas", "delete", "get"])
            v = bytes([rng.randrange(4)])
            if kind == "put":
                clients[i] = c.submit_put(k, v)
            elif kind == "get":
                clients[i] = c.submit_get(k)
            elif kind == "delete":
                clients[i] = c.submit_delete(k)
            else:
                clients[i] = c.submit_cas(k, rng.choice([None, bytes([rng.randrange(4)])]), v)


def inject_random_fault(c: SimCluster, rng: random.Random, crashed: int | None) -> int | None:
    """Maybe crash a store (one at a time), restart the crashed one, isolate one, or heal;
    returns the store now crashed, if any."""
    fault = rng.random()
    if fault < 0.08 and crashed is None:
        crashed = rng.choice([1, 2, 3])
        c.crash(crashed)
    elif fault < 0.16 and crashed is not None:
        c.restart(crashed)
        crashed = None
    elif fault < 0.22:
        a = rng.choice([1, 2, 3])
        c.partition([a], [s for s in (1, 2, 3) if s != a])
    elif fault < 0.30:
        c.heal()
    return crashed


def check_linearizable(c: SimCluster, crashed: int | None, seed: int) -> None:
    """Heal, restart, let every operation finish, and check the history."""
    c.heal()
    if crashed is not None:
        c.restart(crashed)
    c.run_until(lambda: all(o.done for o in c.ops), timeout=60)
    res = check_history(_history(c.ops))
    assert res.ok, f"seed {seed}: {res.explain()}"
    assert any(o.error is None for o in c.ops)
    # Every request the stores took was answered (the bound on waiting requests leaks none).
    c.run_until(lambda: all(s.pending_requests == 0 for s in c.stores.values()), timeout=30)


def _linearizability_run(
    seed: int, steps: int = 40, write_delay: tuple[float, float] | None = None
) -> None:
    rng = random.Random(seed)
    c = SimCluster(
        stores=3,
        seed=seed,
        initial_regions=2,
        faults=LinkFaults(min_latency=0.0005, max_latency=0.01, drop=0.02, duplicate=0.02),
        op_timeout=8.0,
        write_delay=write_delay,
    )
    keys = [b"\x00a", b"\x00b", b"\xffa"]  # two keys in region 1, one in region 2
    clients: list[SimOp | None] = [None] * 4
    crashed: int | None = None
    for _ in range(steps):
        submit_random_ops(c, rng, keys, clients)
        crashed = inject_random_fault(c, rng, crashed)
        c.run_for(rng.uniform(0.05, 0.6))
    check_linearizable(c, crashed, seed)


SEEDS = int(os.environ.get("MULTIRAFT_LIN_SEEDS", "100"))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_concurrent_histories_are_linearizable_under_faults(seed: int) -> None:
    _linearizability_run(seed)


@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_histories_stay_linearizable_with_a_pipelined_writer(seed: int) -> None:
    """As above, with write rounds committed 0.5-8 ms after submission (the server's writer
    thread): acknowledgements come late, applied writes wait in the writer, reads wait for
    them, and a crash loses the rounds still in the writer."""
    _linearizability_run(10_000 + seed, write_delay=(0.0005, 0.008))


def test_thousand_regions_elect_hibernate_and_wake_only_what_is_written() -> None:
    c = SimCluster(stores=3, seed=2, initial_regions=1000)
    st = c.stats()
    assert sum(s["leaders"] for s in st.values()) == 1000
    assert all(s["regions"] == 1000 for s in st.values())
    c.run_for(4.0)  # warm-up: idle for several election timeouts
    st = c.stats()
    assert all(s["awake_regions"] == 0 for s in st.values()), st
    ticks = {sid: s["ticks"] for sid, s in st.items()}
    c.run_for(2.0)
    st = c.stats()
    assert all(st[sid]["ticks"] == ticks[sid] for sid in st), "hibernated regions must not tick"
    c.put(b"\x12\x34", b"v")  # one key: one region
    awake = [s["awake_regions"] for s in c.stats().values()]
    assert max(awake) == 1 and sum(awake) >= 2  # the leader and the followers it wrote to
    assert c.get(b"\x12\x34") == b"v"


def test_killing_the_store_of_hibernated_leaders_elects_elsewhere() -> None:
    c = SimCluster(stores=3, seed=4, initial_regions=60)
    c.run_for(5.0)
    assert all(s["awake_regions"] == 0 for s in c.stats().values())
    victim = max(c.stores, key=lambda sid: c.stores[sid].leaders())
    assert c.stores[victim].leaders() > 0
    c.crash(victim)
    t0 = c.now
    c.run_until(c.all_regions_have_leaders, timeout=10)
    # Silence detection (one election timeout) + an election (one to two timeouts).
    assert c.now - t0 <= 5 * c.store_config.election_ticks * c.tick_interval
    c.put(b"\x80", b"after")
    assert c.get(b"\x80") == b"after"


def test_lease_reads_when_configured() -> None:
    from multiraft.raft import ReadOnlyOption
    from multiraft.store.store import StoreConfig

    c = SimCluster(stores=3, seed=41, initial_regions=2, store_config=StoreConfig(lease_reads=True))
    leader = c.stores[c.leader_of(1) or 0]
    # The lease is the store's, on its clock; raft always confirms with a quorum.
    assert leader.peers[1].node.raft.read_only.option == ReadOnlyOption.Safe
    assert leader.peers[1].lease_seconds == 0.8
    c.put(b"\x00k", b"1")
    assert c.get(b"\x00k") == b"1"
    c.delete(b"\x00k")
    assert c.get(b"\x00k") is None


def test_store_counters_for_metrics() -> None:
    from multiraft.raft import MessageType
    from multiraft.store import NotLeader
    from multiraft.store.cmd import OP_PUT, Command, Op

    c = SimCluster(stores=3, seed=43, initial_regions=1)
    sid = c.leader_of(1)
    assert sid is not None
    leader = c.stores[sid]
    now = [0.0]
    leader._clock = lambda: now[0]
    assert leader.stats.leader_changes == 1
    done: list[object] = []
    leader.propose(Command(1, 0, 0, [Op(OP_PUT, b"k", value=b"v")]), lambda r, e: done.append(e))
    now[0] = 0.25
    c.run_until(lambda: bool(done))
    assert leader.stats.propose_to_apply_seconds == [0.25]
    assert leader.stats.apply_seconds
    assert leader.stats.sent_by_type[MessageType.MsgAppend] >= 2
    follower = c.stores[next(s for s in (1, 2, 3) if s != sid)]
    assert follower.stats.received_by_type[MessageType.MsgAppend] >= 1
    try:
        follower.propose(Command(1, 0, 0, [Op(OP_PUT, b"k", value=b"v")]), lambda r, e: None)
    except NotLeader:
        pass
    assert follower.stats.proposals_failed == {"NOT_LEADER": 1}
    c.get(b"k")
    assert sum(s.stats.reads for s in c.stores.values()) >= 1


def test_a_readindex_read_does_not_wait_for_the_followers_writes() -> None:
    """Followers answer heartbeats at once, not after their write round's fsync: with writes
    taking 50 ms (virtual time) everywhere, a read of a settled key confirms leadership in
    network round trips. The leader still waits for its own log before applying, so writes
    keep their durability; only the ReadIndex confirmation got faster."""
    c = SimCluster(stores=3, seed=61, initial_regions=1, write_delay=(0.05, 0.05))
    c.put(b"k", b"v")
    c.run_for(1.0)  # everything applied and written everywhere
    t0 = c.now
    assert c.get(b"k") == b"v"
    assert c.now - t0 < 0.05, f"the read took {c.now - t0:.3f}s of virtual time"
