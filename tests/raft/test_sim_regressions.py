"""Regressions found by the randomized safety simulator (`multiraft.testing.simulator`), each
reproduced deterministically on a small hand-built cluster. The docstring names the seed that
found it (with the simulator as it was then) and the property that broke."""

from __future__ import annotations

import random

from multiraft.raft import (
    ConfChangeSingle,
    ConfChangeType,
    ConfChangeV2,
    EntryType,
    Error,
    HardState,
    MemStorage,
    Message,
    MessageType,
    RawNode,
    Ready,
    StateRole,
)
from multiraft.testing.network import (
    Network,
    new_entry,
    new_snapshot,
    new_storage,
    new_test_config,
    new_test_raft_with_config,
)

MT = MessageType


def _read_index(ctx: bytes) -> Message:
    m = Message(msg_type=MT.MsgReadIndex)
    m.entries.add(data=ctx)
    return m


def test_removed_leader_does_not_answer_reads_for_another_singleton() -> None:
    """Seed 10 (ReadIndex safety). A leader that applied its own removal keeps leading
    (raft-rs semantics). When the remaining configuration is a single *other* voter, the
    leader took the one-voter shortcut and answered ReadIndex at once with its commit index,
    while that voter could elect itself at a higher term and commit writes: a stale read.
    The shortcut is only for a leader that is itself the single voter; otherwise the read
    waits for a heartbeat quorum of the current voters."""
    net = Network([None, None])
    net.send([Message(msg_type=MT.MsgHup, from_=1, to=1)])
    r1 = net.peer(1)
    assert r1.state == StateRole.Leader
    committed = r1.raft_log.committed

    # The removal of node 1 is committed and applied on node 1: voters = (2).
    cc = ConfChangeV2()
    cc.changes.append(ConfChangeSingle(change_type=ConfChangeType.RemoveNode, node_id=1))
    r1.apply_conf_change(cc)
    assert r1.state == StateRole.Leader
    assert r1.prs.conf.voters.ids() == {2}

    r1.step(_read_index(b"ctx"))
    assert r1.read_states == [], "answered a read without hearing from the only voter"
    heartbeats = [m for m in r1.msgs if m.msg_type == MT.MsgHeartbeat]
    assert [m.to for m in heartbeats] == [2]

    # Node 2 still follows term `r1.term`: its ack confirms the read.
    net.send(net.read_messages())
    assert [(rs.index, rs.request_ctx) for rs in r1.read_states] == [(committed, b"ctx")]


def test_leader_that_is_the_single_voter_answers_reads_at_once() -> None:
    """The one-voter shortcut itself (thesis §6.4): a single-voter leader answers at once."""
    net = Network([None])
    net.send([Message(msg_type=MT.MsgHup, from_=1, to=1)])
    r1 = net.peer(1)
    assert r1.state == StateRole.Leader
    r1.step(_read_index(b"ctx"))
    assert [(rs.index, rs.request_ctx) for rs in r1.read_states] == [
        (r1.raft_log.committed, b"ctx")
    ]


# -- a voter that wins alone must not send before its term is durable (seed 524) ----------


def _genesis_storage() -> MemStorage:
    """Voter 1 and learner 2, from a snapshot at (1, 1)."""
    s = MemStorage()
    snap = new_snapshot(1, 1, [1])
    snap.metadata.conf_state.learners.append(2)
    s.wl().apply_snapshot(snap)
    return s


def _write(node: RawNode[MemStorage], rd: Ready) -> None:
    store = node.mut_store().wl()
    if rd.snapshot.metadata.index:
        store.apply_snapshot(rd.snapshot)
    store.append(rd.entries)
    if rd.hs is not None:
        store.set_hardstate(rd.hs)


def _applied_data(ents: list, out: list[bytes]) -> None:  # type: ignore[type-arg]
    out.extend(e.data for e in ents if e.entry_type == EntryType.EntryNormal and e.data)


def _sync_round(node: RawNode[MemStorage], out: list[Message], applied: list[bytes]) -> None:
    """One synchronous Ready: write, send everything, apply, advance."""
    rd = node.ready()
    _write(node, rd)
    out.extend(rd.take_messages())
    out.extend(rd.take_persisted_messages())
    _applied_data(rd.take_committed_entries(), applied)
    light = node.advance(rd)
    if light.commit_index is not None:
        node.mut_store().wl().mut_hard_state().commit = light.commit_index
    out.extend(light.take_messages())
    _applied_data(light.take_committed_entries(), applied)
    node.advance_apply()


def test_single_voter_leader_holds_messages_until_its_term_is_durable() -> None:
    """Seed 524 (log matching; here shown as state machine divergence). A single voter wins
    its election in `campaign` without sending a vote request, so its first Ready carries the
    new term and vote *and* appends to its learners. With asynchronous persistence the
    leader's messages went out at once (thesis §10.2.1 lets a leader send before its own
    write). Crashing before the term was durable, the node restarted in the old term, won the
    same term again and wrote a different entry at the same (index, term): the learner, which
    had the first one, kept it (the terms match) and applied it when the index committed.
    A leader now sends early only once the Readies that changed its term or vote are
    acknowledged by `on_persist_ready`; until then its messages are persisted messages."""
    n1 = RawNode(new_test_config(1, 10, 1), _genesis_storage(), rng=random.Random(1))
    n2 = RawNode(new_test_config(2, 10, 1), _genesis_storage(), rng=random.Random(2))
    applied1: list[bytes] = []
    applied2: list[bytes] = []

    # Incarnation 1 of node 1 leads term 2 and writes "X", but nothing of it becomes durable.
    # The learner gets whatever node 1 may send before its writes are durable.
    n1.campaign()
    assert n1.raft.state == StateRole.Leader and n1.raft.term == 2
    n1.propose(b"", b"X")
    for _ in range(5):
        early: list[Message] = []
        while n1.has_ready():
            rd = n1.ready()
            _write(n1, rd)  # in memory only
            early.extend(rd.take_messages())  # persisted messages wait for a durable write
            n1.advance_append_async(rd)
        to_n1: list[Message] = []
        for m in early:
            n2.step(m)
            while n2.has_ready():
                _sync_round(n2, to_n1, applied2)
        for m in to_n1:
            n1.step(m)
    # Node 1 crashes: it restarts from its durable state (term 1, nothing written).
    n1 = RawNode(new_test_config(1, 10, 1), _genesis_storage(), rng=random.Random(3))
    n1.campaign()
    assert n1.raft.state == StateRole.Leader and n1.raft.term == 2
    n1.propose(b"", b"Y")
    nodes = {1: n1, 2: n2}
    applied = {1: applied1, 2: applied2}
    for _ in range(20):
        msgs: list[Message] = []
        for id, node in nodes.items():
            while node.has_ready():
                _sync_round(node, msgs, applied[id])
        for m in msgs:
            try:
                nodes[m.to].step(m)
            except Error:
                pass
    assert applied1 == [b"Y"]
    assert applied2 == applied1, "the learner applied an entry the leader never committed"


def test_stale_snapshot_is_ignored_while_a_newer_one_is_requested() -> None:
    """Seed 1413 (the leader's matched index beyond the follower's log: a heartbeat asked it
    to commit past its last index). A follower with entries up to 7, all acknowledged, calls
    `request_snapshot` (request index 7). A MsgSnapshot at index 2 that the leader sent
    before the request arrives: with a request pending the follower skipped the
    "already have it" shortcut and restored it, truncating its log to 2 while the leader
    still counts it as matching 7. A snapshot older than the one requested is ignored."""
    store = new_storage([1, 2, 3])
    store.wl().append([new_entry(1, i) for i in range(1, 8)])
    store.wl().set_hardstate(HardState(term=1, commit=2))
    r = new_test_raft_with_config(new_test_config(2, 10, 1), store)
    r.become_follower(1, 1)
    r.request_snapshot()
    assert r.pending_request_snapshot == 7
    r.msgs.clear()

    m = Message(msg_type=MT.MsgSnapshot, from_=1, to=2, term=1)
    m.snapshot.CopyFrom(new_snapshot(2, 1, [1, 2, 3]))
    r.step(m)
    assert r.raft_log.last_index() == 7, "acknowledged entries were dropped"
    assert r.raft_log.unstable.snapshot is None
    assert r.pending_request_snapshot == 7

    # The requested snapshot (index >= 7) is restored.
    m = Message(msg_type=MT.MsgSnapshot, from_=1, to=2, term=1)
    m.snapshot.CopyFrom(new_snapshot(7, 1, [1, 2, 3]))
    r.step(m)
    assert r.raft_log.unstable.snapshot is not None
    assert r.raft_log.last_index() == 7
    assert r.pending_request_snapshot == 0
