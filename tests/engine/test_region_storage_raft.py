"""RegionStorage under real RawNodes using the async-ready API with several Readies in flight:
raft-rs 0.7 requires a Ready's entries to be readable through the Storage as soon as
`advance_append_async(rd)` is called (they leave the raft unstable log then), while durability
is reported later with `on_persist_ready`. With a storage that served only durable state, raft
would see a stale `last_index` and give two entries the same index."""

from __future__ import annotations

import random
from collections import deque

import pytest

from multiraft.engine import Engine, MemoryEngine, RaftWal, RegionStorage, WriteBatch
from multiraft.raft import Config, ConfState, Message, RawNode, Ready, StateRole

REGION = 9


class AsyncPeer:
    """A RawNode whose Readies are written into batches that stay in flight (not committed)
    for a while, like the batching layer's pipelined rounds."""

    def __init__(
        self, engine: Engine, wal: RaftWal | None, peer_id: int, voters: list[int]
    ) -> None:
        self.engine = engine
        self.wal = wal
        self.storage = RegionStorage(engine, REGION, wal=wal)
        wb = WriteBatch()
        self.storage.set_conf_state(wb, ConfState(voters=voters))
        engine.write(wb)
        wb.run_commit_hooks()
        cfg = Config(id=peer_id, election_tick=10, heartbeat_tick=1, max_size_per_msg=1 << 20)
        self.node: RawNode[RegionStorage] = RawNode(cfg, self.storage, rng=random.Random(peer_id))
        self.in_flight: deque[tuple[WriteBatch, int, list[Message]]] = deque()
        self.handed_out: list[int] = []  # every entry index handed to the storage
        self.applied: list[bytes] = []

    def handle_ready(self, outbox: list[Message]) -> None:
        if not self.node.has_ready():
            return
        rd: Ready = self.node.ready()
        wb = WriteBatch()
        s = self.storage
        if rd.snapshot.metadata.index:
            s.apply_snapshot(wb, rd.snapshot)
        if rd.entries:
            self.handed_out.extend(e.index for e in rd.entries)
            s.append(wb, rd.entries, rd.hs)
        elif rd.hs is not None:
            s.set_hard_state(wb, rd.hs)
        self.node.advance_append_async(rd)
        # Readable at once: the storage serves what was just handed out.
        if rd.entries:
            assert s.last_index() == rd.entries[-1].index
            assert s.term(rd.entries[-1].index) == rd.entries[-1].term
        outbox.extend(rd.messages)
        self.in_flight.append((wb, rd.number, rd.persisted_messages))
        self.apply(rd.committed_entries)

    def apply(self, ents: list) -> None:  # type: ignore[type-arg]
        if ents:
            self.applied.extend(e.data for e in ents if e.data)
            self.node.advance_apply_to(ents[-1].index)

    def persist_oldest(self, outbox: list[Message]) -> bool:
        if not self.in_flight:
            return False
        wb, number, held = self.in_flight.popleft()
        if self.wal is not None:
            self.wal.end_round(wb)
        self.engine.write(wb)
        wb.run_commit_hooks()
        self.node.on_persist_ready(number)
        outbox.extend(held)
        return True


@pytest.mark.parametrize("use_wal", [False, True], ids=["direct", "wal"])
@pytest.mark.parametrize("depth", [1, 3, 6])
def test_single_voter_with_readies_in_flight(use_wal: bool, depth: int) -> None:
    engine = MemoryEngine()
    wal = RaftWal(engine, checkpoint_rounds=3) if use_wal else None
    p = AsyncPeer(engine, wal, 1, [1])
    p.node.campaign()
    outbox: list[Message] = []
    proposed: list[bytes] = []
    for i in range(60):
        for j in range(1 + i % 3):
            data = b"%d.%d" % (i, j)
            p.node.propose(b"", data)
            proposed.append(data)
        p.handle_ready(outbox)
        while len(p.in_flight) > depth:
            p.persist_oldest(outbox)
    while p.in_flight or p.node.has_ready():
        p.handle_ready(outbox)
        p.persist_oldest(outbox)
    assert p.handed_out == list(range(1, len(p.handed_out) + 1)), "an index was handed out twice"
    assert p.applied == proposed
    last = p.storage.last_index()
    assert p.storage.hard_state().commit == last
    # The disk holds the same log.
    fresh = RegionStorage(engine, REGION, wal=RaftWal(engine) if use_wal else None)
    assert fresh.last_index() == last
    assert [e.data for e in fresh.entries(1, last + 1) if e.data] == proposed


@pytest.mark.parametrize("use_wal", [False, True], ids=["direct", "wal"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_three_voters_with_random_persistence_delays(use_wal: bool, seed: int) -> None:
    """Followers truncate conflicting suffixes while earlier batches are still in flight; a
    leader change happens in the middle; everyone applies the same log."""
    rng = random.Random(seed)
    peers = {}
    for pid in (1, 2, 3):
        engine = MemoryEngine()
        wal = RaftWal(engine, checkpoint_rounds=2) if use_wal else None
        peers[pid] = AsyncPeer(engine, wal, pid, [1, 2, 3])
    outbox: list[Message] = []
    peers[1].node.campaign()

    def step(drop: float = 0.0) -> None:
        for p in peers.values():
            p.handle_ready(outbox)
        for p in peers.values():
            while p.in_flight and rng.random() < 0.5:
                p.persist_oldest(outbox)
        msgs, outbox[:] = list(outbox), []
        rng.shuffle(msgs)
        for m in msgs:
            if rng.random() >= drop:
                peers[m.to].node.step(m)

    for _ in range(30):
        step()
    proposed = 0
    for i in range(120):
        leader = [p for p in peers.values() if p.node.raft.state == StateRole.Leader]
        if leader and i % 2 == 0:
            leader[0].node.propose(b"", b"x%d" % i)
            proposed += 1
        if i == 50:
            # Force an election elsewhere while appends are in flight.
            peers[2 if leader and leader[0] is not peers[2] else 3].node.campaign()
        step(drop=0.1 if 20 < i < 80 else 0.0)
        if i % 5 == 0:
            for p in peers.values():
                p.node.tick()
    for _ in range(200):
        step()
        for p in peers.values():
            p.node.tick()
        logs = [p.applied for p in peers.values()]
        if logs[0] == logs[1] == logs[2] and not any(p.in_flight for p in peers.values()):
            break
    logs = [p.applied for p in peers.values()]
    assert logs[0] == logs[1] == logs[2]
    assert logs[0], "nothing was committed"
    for p in peers.values():
        s = p.storage
        last = s.last_index()
        terms = [s.term(i) for i in range(s.first_index(), last + 1)]
        assert terms == sorted(terms)
        fresh = RegionStorage(p.engine, REGION, wal=RaftWal(p.engine) if use_wal else None)
        assert (fresh.last_index(), fresh.initial_state()) == (last, s.initial_state())
