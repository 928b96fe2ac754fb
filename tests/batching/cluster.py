"""A tiny in-process multi-raft cluster for the batching tests: each `MiniStore` has an engine,
optionally a `RaftWal`, a `Batcher` and one RawNode per region it hosts (peer id = store id);
messages travel through one in-memory queue. Rounds follow the store's protocol: collect every
Ready into one round, send a leader's messages at once, submit, and on completion send the held
messages."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable

from batching import Batcher
from multiraft.engine import Engine, MemoryEngine, RaftWal, RegionStorage, WriteBatch
from multiraft.raft import Config, ConfState, Entry, Message, RawNode

Node = RawNode[RegionStorage]


def bootstrap_region(
    engine: Engine, wal: RaftWal | None, region_id: int, voters: Iterable[int]
) -> RegionStorage:
    """A brand-new region's storage with its initial configuration on disk."""
    storage = RegionStorage(engine, region_id, wal=wal)
    wb = WriteBatch()
    storage.set_conf_state(wb, ConfState(voters=list(voters)))
    engine.write(wb)
    wb.run_commit_hooks()
    return storage


def new_node(storage: RegionStorage, peer_id: int, seed: int, applied: int = 0) -> Node:
    cfg = Config(
        id=peer_id,
        election_tick=10,
        heartbeat_tick=2,
        max_size_per_msg=1 << 20,
        max_inflight_msgs=256,
        applied=applied,
    )
    return RawNode(cfg, storage, rng=random.Random(seed))


class MiniStore:
    def __init__(
        self,
        store_id: int,
        *,
        engine: Engine | None = None,
        use_wal: bool = False,
        pipelined: bool = True,
        checkpoint_rounds: int = 8,
    ) -> None:
        self.store_id = store_id
        self.engine: Engine = engine if engine is not None else MemoryEngine()
        self.wal = RaftWal(self.engine, checkpoint_rounds=checkpoint_rounds) if use_wal else None
        self.batcher: Batcher[Node] = Batcher(self.engine, wal=self.wal, pipelined=pipelined)
        self.nodes: dict[int, Node] = {}
        self.region_of: dict[int, int] = {}  # id(node) -> region id
        # region -> applied entry data, in order
        self.applied: dict[int, list[bytes]] = defaultdict(list)

    def add_region(self, region_id: int, voters: list[int]) -> Node:
        storage = bootstrap_region(self.engine, self.wal, region_id, voters)
        node = new_node(storage, self.store_id, seed=region_id * 100 + self.store_id)
        self.nodes[region_id] = node
        self.region_of[id(node)] = region_id
        return node

    def collect(self, outbox: list[tuple[int, Message]]) -> int:
        """One round of collection; returns the number of Readies handed off."""
        n = 0
        for rid, node in self.nodes.items():
            if not node.has_ready():
                continue
            rd = node.ready()
            msgs, committed = self.batcher.add_ready(node, rd)
            outbox.extend((rid, m) for m in msgs)
            self.apply(rid, node, committed)
            n += 1
        return n

    def apply(self, rid: int, node: Node, committed: list[Entry]) -> None:
        if committed:
            self.applied[rid].extend(e.data for e in committed if e.data)
            node.advance_apply_to(committed[-1].index)

    def complete(self, outbox: list[tuple[int, Message]]) -> int:
        """Acknowledge the finished rounds; returns how many."""
        done = self.batcher.poll_completed()
        for rnd in done:
            for node, msgs in rnd.held:
                rid = self.region_of[id(node)]
                outbox.extend((rid, m) for m in msgs)
        return len(done)


class MiniCluster:
    def __init__(self, stores: list[MiniStore]) -> None:
        self.stores = {s.store_id: s for s in stores}
        self.outbox: list[tuple[int, Message]] = []

    def deliver(self) -> int:
        msgs, self.outbox = self.outbox, []
        for rid, m in msgs:
            self.stores[m.to].nodes[rid].step(m)
        return len(msgs)

    def round(self) -> int:
        """Collect + submit on every store, deliver, acknowledge what finished. Returns the
        amount of work done (0: idle)."""
        work = 0
        for s in self.stores.values():
            work += s.collect(self.outbox)
            work += s.batcher.submit() is not None
        work += self.deliver()
        for s in self.stores.values():
            work += s.complete(self.outbox)
        return work

    def settle(self, max_rounds: int = 10_000) -> None:
        """Run rounds until nothing is left to do anywhere."""
        idle = 0
        for _ in range(max_rounds):
            if self.round():
                idle = 0
                continue
            busy = any(s.batcher.in_flight() for s in self.stores.values())
            if busy:
                for s in self.stores.values():
                    s.batcher.wait(1.0)
                continue
            idle += 1
            if idle >= 2:
                return
        raise AssertionError("cluster did not settle")

    def close(self) -> None:
        for s in self.stores.values():
            s.batcher.close()
