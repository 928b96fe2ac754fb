"""Real RawNodes over RegionStorage and the batching layer: 50 single-voter regions and a few
3-voter regions spread over three in-process stores (each with its own engine and batcher,
messages delivered in process). Everything proposed is eventually applied on every replica,
in the same order, and survives a restart."""

from __future__ import annotations

import random

import pytest

from multiraft.engine import RaftWal, RegionStorage
from multiraft.raft import StateRole

from .cluster import MiniCluster, MiniStore, new_node

SINGLE = 50
GROUPS = [51, 52, 53, 54]


def build(use_wal: bool, pipelined: bool) -> MiniCluster:
    stores = [
        MiniStore(i, use_wal=use_wal, pipelined=pipelined, checkpoint_rounds=8) for i in (1, 2, 3)
    ]
    for rid in range(1, SINGLE + 1):
        s = stores[rid % 3]
        s.add_region(rid, [s.store_id])
    for rid in GROUPS:
        for s in stores:
            s.add_region(rid, [1, 2, 3])
    c = MiniCluster(stores)
    for s in c.stores.values():
        for rid, node in s.nodes.items():
            if rid <= SINGLE or s.store_id == 1 + rid % 3:
                node.campaign()
    c.settle()
    return c


def leaders(c: MiniCluster) -> dict[int, int]:
    out = {}
    for s in c.stores.values():
        for rid, node in s.nodes.items():
            if node.raft.state == StateRole.Leader:
                out[rid] = s.store_id
    return out


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "inline"])
@pytest.mark.parametrize("use_wal", [True, False], ids=["wal", "direct"])
def test_everything_proposed_is_applied_on_every_replica(use_wal: bool, pipelined: bool) -> None:
    rng = random.Random(4)
    c = build(use_wal, pipelined)
    lead = leaders(c)
    assert len(lead) == SINGLE + len(GROUPS)
    proposed: dict[int, list[bytes]] = {rid: [] for rid in lead}
    for i in range(30):
        for rid in rng.sample(sorted(lead), 20):
            node = c.stores[lead[rid]].nodes[rid]
            data = b"%d:%d" % (rid, i)
            node.propose(b"", data)
            proposed[rid].append(data)
        c.round()  # rounds overlap with proposals: pipelining under load
    c.settle()
    for rid, want in proposed.items():
        replicas = [s for s in c.stores.values() if rid in s.nodes]
        for s in replicas:
            assert s.applied[rid] == want, (rid, s.store_id)
    for s in c.stores.values():
        st = s.batcher.stats
        assert st.rounds == st.rounds_persisted
        # At most one commit per round (a round of Readies with nothing to write: none).
        assert st.fsyncs <= st.rounds
        assert s.engine.stats.commits == st.fsyncs + len(s.nodes)  # + one bootstrap each
        assert st.readies > 2 * st.rounds  # rounds carry many regions
    c.close()
    # A restart reads back every log as handed out (and acknowledged) before.
    for s in c.stores.values():
        wal = RaftWal(s.engine) if use_wal else None
        for rid, node in s.nodes.items():
            old = node.store()
            fresh = RegionStorage(s.engine, rid, wal=wal)
            assert (fresh.first_index(), fresh.last_index()) == (
                old.first_index(),
                old.last_index(),
            )
            last = old.last_index()
            assert [(e.index, e.term, e.data) for e in fresh.entries(1, last + 1)] == [
                (e.index, e.term, e.data) for e in old.entries(1, last + 1)
            ]
            assert fresh.initial_state() == old.initial_state()
            # And raft restarts from it: the same commit index, leadership regained.
            new_node(fresh, s.store_id, seed=1, applied=fresh.hard_state().commit)
