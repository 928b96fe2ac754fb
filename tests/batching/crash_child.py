"""The child process of the crash-safety test: writes rounds as fast as it can through the real
batching layer (pipelined writer thread) to a real LMDB directory, and reports each round
acknowledged (durable) on stdout, flushed.

    python -m tests.batching.crash_child DIR SEED {wal|direct}

Every region is a single-voter RawNode over a RegionStorage. Data round `r` proposes one
entry `b"r:<r>:g:<region>:" + padding` in every region and is collected into ONE batcher round,
so after a crash each data round must be in every region's log or in none. On start the child
prints `S <first round>` (it continues after the highest round found on disk), then `A <r>`
for every data round whose batcher round was acknowledged.
"""

from __future__ import annotations

import random
import sys

from batching import Batcher
from multiraft.engine import LmdbEngine, RaftWal, RegionStorage, WriteBatch
from multiraft.raft import Config, ConfState, RawNode

REGIONS = 12


def round_of(data: bytes) -> int | None:
    """The data round an entry belongs to (None for raft's own empty entries)."""
    if not data.startswith(b"r:"):
        return None
    return int(data.split(b":", 2)[1])


def open_regions(
    engine: LmdbEngine, wal: RaftWal | None
) -> tuple[list[RawNode[RegionStorage]], int]:
    """Open (bootstrapping if new) every region; returns the nodes and the next data round."""
    nodes = []
    top = 0
    for rid in range(1, REGIONS + 1):
        storage = RegionStorage(engine, rid, wal=wal)
        if not storage.initial_state().initialized():
            wb = WriteBatch()
            storage.set_conf_state(wb, ConfState(voters=[1]))
            engine.write(wb)
            wb.run_commit_hooks()
        for e in storage.entries(storage.first_index(), storage.last_index() + 1):
            r = round_of(e.data)
            if r is not None:
                top = max(top, r)
        cfg = Config(id=1, election_tick=10, heartbeat_tick=1, applied=storage.hard_state().commit)
        node: RawNode[RegionStorage] = RawNode(cfg, storage, rng=random.Random(rid))
        node.campaign()
        nodes.append(node)
    return nodes, top + 1


def main() -> None:
    path, seed, layout = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = random.Random(seed)
    engine = LmdbEngine(path)  # durable commits: what production does
    wal = RaftWal(engine, checkpoint_rounds=4) if layout == "wal" else None
    nodes, r = open_regions(engine, wal)
    batcher: Batcher[RawNode[RegionStorage]] = Batcher(engine, wal=wal, pipelined=True)
    out = sys.stdout
    out.write(f"S {r}\n")
    out.flush()
    data_round: dict[int, int] = {}  # batcher round -> data round
    while True:
        for g, node in enumerate(nodes, 1):
            node.propose(b"", b"r:%d:g:%d:" % (r, g) + b"p" * rng.randrange(0, 400))
        for node in nodes:
            if node.has_ready():
                rd = node.ready()
                _, committed = batcher.add_ready(node, rd)
                if committed:
                    node.advance_apply_to(committed[-1].index)
        rnd = batcher.submit()
        assert rnd is not None
        data_round[rnd.number] = r
        r += 1
        for done in batcher.poll_completed():
            dr = data_round.pop(done.number)
            out.write(f"A {dr}\n")
            out.flush()


if __name__ == "__main__":
    main()
