"""Three RawNodes over MemStorage in one process: elect a leader, propose entries, and show
what every node applied. The Ready loop here is the one every application of the core runs.

    python -m multiraft.examples.three_nodes [--entries N]
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict

from multiraft.raft import (
    ConfChange,
    ConfChangeV2,
    Config,
    EntryType,
    MemStorage,
    Message,
    RawNode,
    StateRole,
)


def run(entries: int = 5, seed: int = 1, out: list[str] | None = None) -> dict[int, list[bytes]]:
    """Drive the group until every node applied `entries` proposals; returns what each node
    applied (the data of its normal entries, in order)."""
    ids = [1, 2, 3]
    nodes: dict[int, RawNode[MemStorage]] = {}
    for id in ids:
        cfg = Config(id=id, election_tick=10, heartbeat_tick=3, max_size_per_msg=1 << 20)
        storage = MemStorage.new_with_conf_state(([1, 2, 3], []))
        nodes[id] = RawNode(cfg, storage, rng=random.Random(seed * 100 + id))
    applied: dict[int, list[bytes]] = defaultdict(list)
    inflight: list[Message] = []
    proposed = 0

    def say(line: str) -> None:
        if out is not None:
            out.append(line)
        else:
            print(line)

    for _round in range(10_000):
        # Time passes for everyone; messages in flight are delivered.
        for node in nodes.values():
            node.tick()
        msgs, inflight = inflight, []
        for m in msgs:
            nodes[m.to].step(m)
        leader = next((n for n in nodes.values() if n.raft.state == StateRole.Leader), None)
        if leader is not None and proposed < entries:
            try:
                leader.propose(b"", f"entry-{proposed}".encode())
                proposed += 1
            except Exception:  # ProposalDropped during a leadership change: retry next round
                pass
        for id, node in nodes.items():
            if not node.has_ready():
                continue
            rd = node.ready()
            store = node.mut_store().wl()
            if rd.snapshot.metadata.index:
                store.apply_snapshot(rd.snapshot)
            if rd.entries:
                store.append(rd.entries)
            if rd.hs is not None:
                store.set_hardstate(rd.hs)
            inflight.extend(rd.take_messages())
            inflight.extend(rd.take_persisted_messages())
            _apply(node, id, rd.take_committed_entries(), applied)
            light = node.advance(rd)
            if light.commit_index is not None:
                store.mut_hard_state().commit = light.commit_index
            inflight.extend(light.take_messages())
            _apply(node, id, light.take_committed_entries(), applied)
            node.advance_apply()
        if all(len(applied[id]) >= entries for id in ids):
            break
    for id in ids:
        role = nodes[id].raft.state.name
        say(f"node {id} ({role}, term {nodes[id].raft.term}) applied: "
            + ", ".join(d.decode() for d in applied[id]))
    return dict(applied)


def _apply(node: RawNode[MemStorage], id: int, entries: list, applied: dict[int, list[bytes]]) -> None:  # type: ignore[type-arg]
    for e in entries:
        if e.entry_type == EntryType.EntryNormal:
            if e.data:
                applied[id].append(e.data)
        elif e.entry_type == EntryType.EntryConfChange:
            cc = ConfChange()
            cc.ParseFromString(e.data)
            node.mut_store().wl().set_conf_state(node.apply_conf_change(cc))
        else:
            ccv2 = ConfChangeV2()
            ccv2.ParseFromString(e.data)
            node.mut_store().wl().set_conf_state(node.apply_conf_change(ccv2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    run(args.entries, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
