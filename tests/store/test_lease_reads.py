"""Lease reads measured on a clock: a leader whose process was paused past its lease (its ticks
stopped with it) must not serve a read from the lease while another leader took writes."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from multiraft.raft import RawNode
from multiraft.store.cmd import OP_PUT, Command, Op
from multiraft.store.errors import StoreError
from multiraft.store.store import StoreConfig
from multiraft.testing.cluster import SimCluster, SimOp
from multiraft.testing.simnet import LinkFaults

from .test_sim_cluster import check_linearizable, inject_random_fault, submit_random_ops

LEASE = StoreConfig(lease_reads=True)


def test_reads_within_the_lease_need_no_heartbeat_round(monkeypatch: pytest.MonkeyPatch) -> None:
    c = SimCluster(stores=3, seed=1, initial_regions=1, store_config=LEASE)
    c.put(b"k", b"v")
    assert c.get(b"k") == b"v"  # a ReadIndex round: the lease starts
    peer = c.stores[c.leader_of(1) or 0].peers[1]
    assert peer.lease_until > c.now
    asked: list[bytes] = []
    node, read_index = peer.node, RawNode.read_index

    def spy(self: RawNode[Any], ctx: bytes) -> None:
        if self is node:
            asked.append(ctx)
        read_index(self, ctx)

    monkeypatch.setattr(RawNode, "read_index", spy)  # (a RawNode has slots: patch the class)
    assert c.get(b"k") == b"v"
    assert asked == []  # served from the lease
    c.run_for(1.0)  # past the lease (0.8 of the 1 s election timeout)
    assert c.get(b"k") == b"v"
    assert len(asked) == 1  # a ReadIndex round again, which renews the lease


def test_a_leader_paused_past_its_lease_serves_no_stale_read() -> None:
    """Raft thesis §6.4.1: a lease is only as good as the clocks. The leader is paused (SIGSTOP)
    past its lease; the others elect a new leader, which takes a write; the old leader resumes
    cut off from them and is asked to read: the read must fail (or be fresh), never return the
    value the new leader overwrote."""
    c = SimCluster(stores=3, seed=2, initial_regions=1, store_config=LEASE)
    c.put(b"k", b"old")
    assert c.get(b"k") == b"old"
    old = c.leader_of(1)
    assert old is not None
    others = [s for s in (1, 2, 3) if s != old]
    c.pause(old, 5.0)
    c.partition([old], others)  # (nothing reaches it meanwhile: it will not hear of the new term)
    c.run_until(lambda: c.leader_of(1) in others, timeout=5)
    new_leader = c.stores[c.leader_of(1) or 0]
    box: list[tuple[Any, StoreError | None]] = []
    new_leader.propose(Command(1, 0, 0, [Op(OP_PUT, b"k", value=b"new")]), lambda r, e: box.append((r, e)))
    c.run_until(lambda: bool(box), timeout=5)
    assert box[0][1] is None
    c.run_until(lambda: old not in c._held, timeout=10)
    assert c.stores[old].peers[1].is_leader()  # as far as it knows
    reads: list[tuple[Any, StoreError | None]] = []
    c.stores[old].get(1, b"k", lambda v, e: reads.append((v, e)))
    c.run_until(lambda: bool(reads), timeout=10)
    value, err = reads[0]
    assert err is not None or value == b"new", f"stale read: {value!r}"


def _lease_run(seed: int, steps: int = 40) -> None:
    rng = random.Random(seed)
    c = SimCluster(
        stores=3,
        seed=seed,
        initial_regions=2,
        faults=LinkFaults(min_latency=0.0005, max_latency=0.01, drop=0.02, duplicate=0.02),
        op_timeout=8.0,
        store_config=LEASE,
        write_delay=(0.0005, 0.004) if seed % 2 else None,
    )
    keys = [b"\x00a", b"\x00b", b"\xffa"]
    clients: list[SimOp | None] = [None] * 4
    crashed: int | None = None
    for _ in range(steps):
        submit_random_ops(c, rng, keys, clients)
        if rng.random() < 0.15:
            # A pause of 0.5-3 s (election timeout: 1-2 s) of a running store, often the
            # leader's.
            running = [s for s in c.stores if s not in c._held]
            leaders = [s for s in running if c.stores[s].leaders()]
            if running:
                c.pause(rng.choice(leaders or running), rng.uniform(0.5, 3.0))
        else:
            crashed = inject_random_fault(c, rng, crashed)
        c.run_for(rng.uniform(0.05, 0.6))
    c.run_until(lambda: not c._held, timeout=10)
    check_linearizable(c, crashed, seed)


SEEDS = int(os.environ.get("MULTIRAFT_LEASE_SEEDS", "30"))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_histories_with_lease_reads_stay_linearizable_across_pauses(seed: int) -> None:
    _lease_run(40_000 + seed)
