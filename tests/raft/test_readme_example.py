"""The seed's example, as the README shows it, runs as written."""

from __future__ import annotations

from multiraft import Config, EntryType, MemStorage, Message, RawNode, StateRole
from multiraft.examples.three_nodes import run


def test_readme_single_node_example() -> None:
    config = Config(id=1, peers=[1])
    storage = MemStorage()
    config.validate()
    node = RawNode(config, storage, [])
    node.raft.become_candidate()
    node.raft.become_leader()

    sent: list[Message] = []
    applied: list[bytes] = []

    def send(msgs: list[Message]) -> None:
        sent.extend(msgs)

    def apply(entries: list) -> None:  # type: ignore[type-arg]
        for e in entries:
            if e.entry_type == EntryType.EntryNormal and e.data:
                applied.append(e.data)

    for _ in range(10):
        node.tick()
    node.propose(b"", b"some data")

    rounds = 0
    while node.has_ready():
        rounds += 1
        rd = node.ready()
        store = node.mut_store().wl()
        if rd.snapshot.metadata.index:
            store.apply_snapshot(rd.snapshot)
        store.append(rd.entries)
        if rd.hs is not None:
            store.set_hardstate(rd.hs)
        send(rd.take_messages())
        send(rd.take_persisted_messages())
        apply(rd.take_committed_entries())
        light = node.advance(rd)
        if light.commit_index is not None:
            store.mut_hard_state().commit = light.commit_index
        send(light.take_messages())
        apply(light.take_committed_entries())
        node.advance_apply()
        assert rounds < 10

    assert applied == [b"some data"]
    assert node.raft.state == StateRole.Leader
    assert sent == []  # a single voter talks to nobody
    assert storage.rl().hard_state().commit == node.raft.raft_log.committed == 2
    assert node.raft.raft_log.applied == 2


def test_three_node_example_applies_everything_everywhere() -> None:
    out: list[str] = []
    applied = run(entries=7, seed=3, out=out)
    expected = [f"entry-{i}".encode() for i in range(7)]
    assert applied == {1: expected, 2: expected, 3: expected}
    assert len(out) == 3 and all("applied: entry-0" in line for line in out)
