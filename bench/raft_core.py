"""Three RawNodes in one process over MemStorage: committed-and-applied throughput.

    python -m bench.raft_core [--batches 1,16,64,256] [--entries 20000] [--size 128]

Each round the leader proposes a batch of `size`-byte entries; the round ends when all three
replicas applied them (the Ready loop runs synchronously: persist to MemStorage, deliver
messages in process without serialization, apply, advance). Reported per batch size:
entries/s committed and applied on all three replicas, and the mean time per round. Two ways to
propose are compared in the same run: `propose` (one `RawNode.propose` call per entry, the
raft-rs API), the same with `batch_append` on (appends queued in one Ready merge), and `step`
(one MsgPropose carrying the whole batch, how the store proposes).
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from multiraft.raft import (
    Config,
    MemStorage,
    Message,
    MessageType,
    RawNode,
    StateRole,
)

from .common import emit


def _group(batch_append: bool) -> dict[int, RawNode[MemStorage]]:
    nodes = {}
    for id in (1, 2, 3):
        cfg = Config(
            id=id,
            election_tick=10,
            heartbeat_tick=3,
            max_size_per_msg=1 << 20,
            max_inflight_msgs=256,
            batch_append=batch_append,
        )
        nodes[id] = RawNode(cfg, MemStorage.new_with_conf_state(([1, 2, 3], [])), rng=random.Random(id))
    return nodes


class _Cluster:
    def __init__(self, batch_append: bool = False) -> None:
        self.nodes = _group(batch_append)
        self.inflight: list[Message] = []
        self.applied = {1: 0, 2: 0, 3: 0}

    def handle_ready(self, node: RawNode[MemStorage], id: int) -> None:
        rd = node.ready()
        store = node.raft.raft_log.store.core
        if rd.snapshot.metadata.index:
            store.apply_snapshot(rd.snapshot)
        if rd.entries:
            store.append(rd.entries)
        if rd.hs is not None:
            store.raft_state.hard_state = rd.hs
        self.inflight.extend(rd.messages)
        self.inflight.extend(rd.persisted_messages)
        self._apply(id, rd.committed_entries)
        light = node.advance_append(rd)
        if light.commit_index is not None:
            store.raft_state.hard_state.commit = light.commit_index
        self.inflight.extend(light.messages)
        self._apply(id, light.committed_entries)
        node.advance_apply()

    def _apply(self, id: int, ents: list[Any]) -> None:
        n = 0
        for e in ents:
            if e.data:
                n += 1
        self.applied[id] += n

    def pump(self) -> None:
        """Run Ready rounds until nothing moves."""
        nodes = self.nodes
        while True:
            moved = False
            for id, node in nodes.items():
                if node.has_ready():
                    self.handle_ready(node, id)
                    moved = True
            if self.inflight:
                msgs, self.inflight = self.inflight, []
                for m in msgs:
                    nodes[m.to].step(m)
                moved = True
            if not moved:
                return

    def elect(self) -> RawNode[MemStorage]:
        self.nodes[1].campaign()
        self.pump()
        leader = self.nodes[1]
        assert leader.raft.state == StateRole.Leader
        return leader


def run(batch: int, entries: int, size: int, mode: str) -> dict[str, Any]:
    c = _Cluster(batch_append=mode == "propose_batch_append")
    leader = c.elect()
    payload = b"x" * size
    rounds = max(1, entries // batch)
    base = dict(c.applied)
    t0 = time.perf_counter()
    for _ in range(rounds):
        if mode in ("propose", "propose_batch_append"):
            for _ in range(batch):
                leader.propose(b"", payload)
        else:
            m = Message(msg_type=MessageType.MsgPropose, from_=1)
            add = m.entries.add
            for _ in range(batch):
                add(data=payload)
            leader.raft.step(m)
        c.pump()
    elapsed = time.perf_counter() - t0
    done = min(c.applied[id] - base[id] for id in (1, 2, 3))
    assert done == rounds * batch, (done, rounds * batch)
    return {
        "mode": mode,
        "batch": batch,
        "rounds": rounds,
        "entries": done,
        "seconds": round(elapsed, 4),
        "entries_per_sec": round(done / elapsed),
        "us_per_round": round(elapsed / rounds * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--batches", default="1,16,64,256")
    p.add_argument("--entries", type=int, default=20000, help="entries per configuration")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--modes", default="step,propose,propose_batch_append")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    results = []
    for mode in args.modes.split(","):
        for b in (int(x) for x in args.batches.split(",")):
            results.append(run(b, args.entries, args.size, mode))
    emit("raft_core", {"entry_size": args.size, "replicas": 3, "results": results}, save=not args.no_save)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
