"""RawNode scenarios (raft-rs test_raw_node.rs ★ cases, re-derived)."""

from __future__ import annotations

import random

import pytest

from multiraft.raft import (
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemStorage,
    Message,
    MessageType,
    ProposalDropped,
    RawNode,
    Ready,
    SoftState,
    StateRole,
    StepLocalMsg,
    StepPeerNotFound,
)
from multiraft.raft.util import NO_LIMIT, is_local_msg
from multiraft.testing.network import (
    empty_entry,
    new_entry,
    new_message,
    new_snapshot,
    new_test_config,
)

MT = MessageType


def _node(id: int, peers: list[int], election: int = 10, heartbeat: int = 1, storage: MemStorage | None = None,
          cfg: Config | None = None) -> RawNode[MemStorage]:
    if storage is None:
        storage = MemStorage.new_with_conf_state(ConfState(voters=peers))
    cfg = cfg or new_test_config(id, election, heartbeat)
    return RawNode(cfg, storage, rng=random.Random(id))


def _persist(node: RawNode[MemStorage], rd: Ready) -> None:
    store = node.mut_store().wl()
    if rd.snapshot.metadata.index:
        store.apply_snapshot(rd.snapshot)
    store.append(rd.entries)
    if rd.hs is not None:
        store.set_hardstate(rd.hs)


def _bootstrapped(id: int = 1, peers: list[int] | None = None, cfg: Config | None = None) -> RawNode[MemStorage]:
    """A node whose storage starts from a snapshot at (1, 1), like raft-rs's raw node tests."""
    peers = peers or [1]
    s = MemStorage()
    s.wl().apply_snapshot(new_snapshot(1, 1, peers))
    return _node(id, peers, storage=s, cfg=cfg)


def _leader_of_three() -> RawNode[MemStorage]:
    """Node 1 of [1, 2, 3], bootstrapped, leader, its first Ready persisted and advanced."""
    node = _bootstrapped(1, [1, 2, 3])
    node.raft.become_candidate()
    node.raft.become_leader()
    rd = node.ready()
    _persist(node, rd)
    node.advance(rd)
    return node


@pytest.mark.parametrize("msg_type", list(MT.values()))
def test_raw_node_step(msg_type: int) -> None:
    """Local message types are refused from outside; a response from an unknown peer is
    refused; anything else is stepped."""
    s = MemStorage()
    s.wl().set_hardstate(HardState(term=1, commit=1))
    s.wl().apply_snapshot(new_snapshot(1, 1, [1]))
    node = _node(1, [1], storage=s)
    m = Message(msg_type=msg_type, from_=3)  # type: ignore[arg-type]
    if msg_type == MT.MsgPropose:
        m.entries.add(data=b"x")
    if msg_type in (MT.MsgAppendResponse, MT.MsgRequestVoteResponse, MT.MsgHeartbeatResponse,
                    MT.MsgRequestPreVoteResponse):
        with pytest.raises(StepPeerNotFound):
            node.step(m)
    elif is_local_msg(msg_type):
        with pytest.raises(StepLocalMsg):
            node.step(m)
    elif msg_type == MT.MsgPropose:
        with pytest.raises(ProposalDropped):
            node.step(m)
    else:
        node.step(m)


def test_raw_node_start() -> None:
    """campaign -> Ready with the leader soft state, hard state (2, vote 1, commit 1) and the
    empty entry (2, 2); after persisting it commits, and a proposal flows through."""
    node = _bootstrapped()
    assert not node.has_ready()
    node.campaign()
    rd = node.ready()
    assert rd.ss == SoftState(leader_id=1, raft_state=StateRole.Leader)
    assert rd.hs == HardState(term=2, vote=1, commit=1)
    assert rd.entries == [empty_entry(2, 2)]
    assert rd.must_sync
    _persist(node, rd)
    light = node.advance(rd)
    assert light.commit_index == 2
    assert light.committed_entries == [empty_entry(2, 2)]
    node.advance_apply()
    node.propose(b"", b"foo")
    rd = node.ready()
    assert rd.entries == [new_entry(2, 3, b"foo")]
    assert rd.committed_entries == []
    _persist(node, rd)
    light = node.advance(rd)
    assert light.commit_index == 3
    assert light.committed_entries == [new_entry(2, 3, b"foo")]
    node.advance_apply()
    assert not node.has_ready()


def test_raw_node_restart() -> None:
    """A node restarted from its storage hands out exactly the committed, unapplied entries."""
    entries = [empty_entry(1, 1), new_entry(1, 2, b"foo")]
    s = MemStorage.new_with_conf_state(ConfState(voters=[1]))
    s.wl().set_hardstate(HardState(term=1, commit=1))
    s.wl().append(entries)
    node = _node(1, [1], storage=s)
    rd = node.ready()
    assert rd.hs is None and rd.entries == []
    assert rd.committed_entries == entries[:1]
    assert not rd.must_sync
    node.advance(rd)
    assert not node.has_ready()


def test_raw_node_restart_from_snapshot() -> None:
    entries = [new_entry(1, 3, b"foo")]
    s = MemStorage()
    s.wl().apply_snapshot(new_snapshot(2, 1, [1, 2]))
    s.wl().set_hardstate(HardState(term=1, commit=3))
    s.wl().append(entries)
    node = _node(1, [1, 2], storage=s)
    rd = node.ready()
    assert rd.committed_entries == entries
    node.advance(rd)
    assert not node.has_ready()


def test_raw_node_restart_with_applied() -> None:
    """Config.applied: entries at or below it are never handed out again."""
    entries = [empty_entry(1, 1), new_entry(1, 2, b"a"), new_entry(1, 3, b"b")]
    s = MemStorage.new_with_conf_state(ConfState(voters=[1]))
    s.wl().set_hardstate(HardState(term=1, commit=3))
    s.wl().append(entries)
    cfg = new_test_config(1, 10, 1)
    cfg.applied = 2
    node = RawNode(cfg, s)
    rd = node.ready()
    assert rd.committed_entries == entries[2:]


def test_raw_node_entries_after_snapshot() -> None:
    """After a snapshot is restored, committed entries start after its index."""
    s = MemStorage.new_with_conf_state(ConfState(voters=[1, 2]))
    node = _node(1, [1, 2], storage=s)
    snap = new_snapshot(10, 2, [1, 2])
    m = Message(msg_type=MT.MsgSnapshot, from_=2, to=1, term=2)
    m.snapshot.CopyFrom(snap)
    node.step(m)
    rd = node.ready()
    assert rd.snapshot.metadata.index == 10
    assert rd.committed_entries == []
    assert rd.must_sync
    _persist(node, rd)
    node.advance(rd)
    app = Message(msg_type=MT.MsgAppend, from_=2, to=1, term=2, index=10, log_term=2, commit=12)
    app.entries.extend([new_entry(2, 11, b"a"), new_entry(2, 12, b"b")])
    node.step(app)
    rd = node.ready()
    assert rd.entries == [new_entry(2, 11, b"a"), new_entry(2, 12, b"b")]
    # Not persisted yet: nothing to apply.
    assert rd.committed_entries == []
    _persist(node, rd)
    light = node.advance(rd)
    assert light.committed_entries == [new_entry(2, 11, b"a"), new_entry(2, 12, b"b")]
    # The follower's ack goes out only after persistence.
    assert [(x.msg_type, x.index) for x in rd.persisted_messages] == [(MT.MsgAppendResponse, 12)]
    assert rd.messages == []


def test_raw_node_read_index() -> None:
    """A single voter answers a read at once (after committing in its term)."""
    node = _bootstrapped()
    node.campaign()
    rd = node.ready()
    _persist(node, rd)
    node.advance(rd)
    node.read_index(b"ctx1")
    rd = node.ready()
    assert [(rs.index, rs.request_ctx) for rs in rd.read_states] == [(2, b"ctx1")]


def test_async_ready_leader() -> None:
    """With asynchronous persistence, the leader counts its own entries only up to what
    `on_persist_ready` acknowledged: commit = min(own persisted, quorum acked)."""
    node = _leader_of_three()
    first = node.raft.raft_log.last_index()
    # Propose three batches, each in its own Ready handed to the writer (its entries are in
    # the storage's memory) but not yet durable.
    readies = []
    for i in range(3):
        node.propose(b"", f"d{i}".encode())
        rd = node.ready()
        assert rd.entries and rd.entries[-1].index == first + i + 1
        _persist(node, rd)
        readies.append(rd)
        node.advance_append_async(rd)
    last = node.raft.raft_log.last_index()
    assert last == first + 3
    # Followers ack everything.
    for id in (2, 3):
        m = Message(msg_type=MT.MsgAppendResponse, from_=id, to=1, term=node.raft.term, index=last)
        node.step(m)
    # A quorum of followers has the entries, so they are committed...
    assert node.raft.raft_log.committed == last
    # ...but the leader has not made them durable: nothing can be applied yet.
    assert not node.raft.raft_log.has_next_entries_since(first)
    # The first two Readies become durable.
    node.on_persist_ready(readies[1].number)
    rd = node.ready()
    # The empty entry of the new term commits with them.
    assert [e.index for e in rd.committed_entries] == [first, first + 1, first + 2]
    node.advance_append_async(rd)
    node.on_persist_ready(readies[2].number)
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [last]


def test_async_ready_follower() -> None:
    """A follower's acks are persisted messages: released only after its Ready is durable."""
    s = MemStorage()
    s.wl().apply_snapshot(new_snapshot(1, 1, [1, 2]))
    node = _node(2, [1, 2], storage=s)
    app = Message(msg_type=MT.MsgAppend, from_=1, to=2, term=2, index=1, log_term=1, commit=1)
    app.entries.extend([new_entry(2, 2, b"a")])
    node.step(app)
    rd = node.ready()
    assert rd.messages == []
    assert [m.msg_type for m in rd.persisted_messages] == [MT.MsgAppendResponse]
    assert rd.persisted_messages[0].index == 2
    _persist(node, rd)  # in the storage's memory; durable only at on_persist_ready
    node.advance_append_async(rd)
    # The leader commits index 2 and tells us.
    hb = Message(msg_type=MT.MsgHeartbeat, from_=1, to=2, term=2, commit=2)
    node.step(hb)
    rd2 = node.ready()
    # Committed but not persisted here: nothing to apply.
    assert rd2.committed_entries == []
    node.advance_append_async(rd2)
    node.on_persist_ready(rd.number)
    rd3 = node.ready()
    assert rd3.committed_entries == [new_entry(2, 2, b"a")]


@pytest.mark.parametrize("restart", [False, True])
def test_committed_entries_pagination(restart: bool) -> None:
    """max_committed_size_per_ready pages committed entries; every entry is handed out exactly
    once, also across a restart (etcd #10063)."""
    s = MemStorage.new_with_conf_state(ConfState(voters=[1]))
    size = new_entry(1, 1, b"a" * 100).ByteSize()
    ents = [new_entry(1, i, b"a" * 100) for i in range(1, 11)]
    s.wl().append(ents)
    s.wl().set_hardstate(HardState(term=1, commit=10))
    cfg = new_test_config(1, 10, 1)
    cfg.max_committed_size_per_ready = 3 * size
    node = RawNode(cfg, s)
    seen: list[int] = []
    if restart:
        rd = node.ready()
        seen.extend(e.index for e in rd.committed_entries)
        node.advance(rd)
        cfg.applied = seen[-1]
        node = RawNode(cfg, s)
    while node.has_ready():
        rd = node.ready()
        assert sum(e.ByteSize() for e in rd.committed_entries) <= 3 * size
        seen.extend(e.index for e in rd.committed_entries)
        light = node.advance(rd)
        seen.extend(e.index for e in light.committed_entries)
        node.advance_apply()
    assert seen == list(range(1, 11))


def test_skip_bcast_commit() -> None:
    """With skip_bcast_commit, the leader does not send empty appends just to spread the
    commit index; followers learn it with the next append or heartbeat."""
    from multiraft.testing.network import Network

    cfg = new_test_config(0, 10, 1)
    cfg.skip_bcast_commit = True
    n = Network([None, None, None], cfg)
    n.send([new_message(1, 1, MT.MsgHup)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    leader = n.peer(1)
    assert leader.raft_log.committed == 2
    # The followers learned commit 1 with the append of entry 2, nothing more.
    assert n.peer(2).raft_log.committed == 1 and n.peer(3).raft_log.committed == 1
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert leader.raft_log.committed == 3
    assert n.peer(2).raft_log.committed == 2
    # A heartbeat spreads the commit index.
    n.send([new_message(1, 1, MT.MsgBeat)])
    assert n.peer(2).raft_log.committed == 3 and n.peer(3).raft_log.committed == 3


def test_bounded_uncommitted_entries_growth_with_partition() -> None:
    """The uncommitted-size limit stops proposals while the leader is partitioned, and frees
    as entries commit."""
    cfg = new_test_config(1, 10, 1)
    cfg.max_size_per_msg = 0
    cfg.max_uncommitted_size = 12
    node = _bootstrapped(cfg=cfg)
    node.campaign()
    rd = node.ready()
    _persist(node, rd)
    node.advance(rd)
    node.advance_apply()
    data = b"hello world!"
    # One entry passes (the uncommitted size was 0).
    node.propose(b"", data)
    # The next one would exceed the limit.
    with pytest.raises(ProposalDropped):
        node.propose(b"", data)
    rd = node.ready()
    _persist(node, rd)
    light = node.advance(rd)
    assert [e.data for e in light.committed_entries] == [data]
    node.advance_apply()
    # Committed entries free the budget.
    node.propose(b"", data)


def test_bootstrap_peers_with_conf_change_entries() -> None:
    """RawNode(config, storage, peers): a new group starts with committed AddNode entries."""
    from multiraft.raft import Peer

    s = MemStorage()
    node = RawNode(new_test_config(1, 10, 1), s, [Peer(1), Peer(2, b"ctx")])
    rd = node.ready()
    assert [e.entry_type for e in rd.entries] == [EntryType.EntryConfChange] * 2
    assert rd.hs is not None and rd.hs.commit == 2 and rd.hs.term == 1
    _persist(node, rd)
    light = node.advance(rd)
    assert [e.index for e in light.committed_entries] == [1, 2]
    assert sorted(node.raft.prs.conf.voters.ids()) == [1, 2]
    assert NO_LIMIT > 0 and isinstance(Entry(), Entry)


def test_host_views_and_batch_propose() -> None:
    """The cheap views a multi-raft host reads instead of reaching into `raft`, and a batch
    of proposals in one step that returns the index of the first."""
    n = _bootstrapped(1, [1, 2])
    assert not n.is_leader() and n.role() == StateRole.Follower and n.leader_id() == 0
    n.campaign()
    n.step(new_message(2, 1, MT.MsgRequestVoteResponse))
    assert n.is_leader() and n.role() == StateRole.Leader and n.leader_id() == 1
    assert n.term() == n.raft.term and n.last_index() == 2  # the snapshot's 1, the empty entry
    first = n.propose_batch([b"a", b"b", b"c"])
    assert first == 3 and n.last_index() == 5
    assert [e.data for e in n.raft.raft_log.unstable.entries[-3:]] == [b"a", b"b", b"c"]
    assert n.commit_index() == 1 and not n.commit_to_current_term()
    assert n.matched_indexes() == {2: 0}
    assert not n.is_quiescent()  # nothing is replicated yet
    assert not n.has_pending_conf() and not n.is_transferring_leader()
    n.raft.election_elapsed = 3
    n.reset_election_elapsed()
    assert n.raft.election_elapsed == 0


def test_forget_leader_ends_the_lease_and_holds_the_campaign_back() -> None:
    """A host that knows the leader is gone: votes are granted again at once (check-quorum's
    lease is about a leader that may still be alive), and this node's own campaign waits."""
    cfg = new_test_config(2, 10, 1)
    cfg.check_quorum = True
    n = _node(2, [1, 2, 3], cfg=cfg)
    n.step(_heartbeat(1, 2, 1))
    assert n.leader_id() == 1
    n.forget_leader(5)
    assert n.leader_id() == 0 and n.raft.election_elapsed == -5
    # A vote request of a higher term is granted (no lease to honour any more).
    req = new_message(3, 2, MT.MsgRequestVote)
    req.term, req.log_term, req.index = 2, 1, 10
    n.step(req)
    assert any(m.msg_type == MT.MsgRequestVoteResponse and not m.reject for m in n.raft.msgs)
    leader = _bootstrapped(1, [1])
    leader.campaign()
    assert leader.is_leader()
    leader.forget_leader(3)  # a leader is left as it is
    assert leader.is_leader() and leader.leader_id() == 1


def _heartbeat(frm: int, to: int, term: int) -> Message:
    m = new_message(frm, to, MT.MsgHeartbeat)
    m.term = term
    return m


def test_a_ready_with_nothing_to_persist_is_handed_back_without_a_write() -> None:
    """`advance_unwritten`: a Ready of messages or read states only needs no write and
    leaves no record to acknowledge, while an earlier Ready still waits for its own
    acknowledgement. One with something to persist is refused."""
    node = _leader_of_three()
    node.raft.raft_log.commit_to(node.raft.raft_log.last_index())
    rd = node.ready()
    _persist(node, rd)
    node.advance(rd)
    node.read_index(b"r1")  # heartbeats: messages only
    rd = node.ready()
    assert rd.messages and rd.hs is None and not rd.entries
    node.advance_unwritten(rd)
    assert node.records == []
    node.propose(b"", b"data")  # entries: written asynchronously, not yet durable
    rd = node.ready()
    with pytest.raises(AssertionError):
        node.advance_unwritten(rd)
    _persist(node, rd)  # (into the storage's memory: readable, not yet durable)
    node.advance_append_async(rd)
    written = rd.number
    for ctx in (b"r2", b"r3"):
        node.read_index(ctx)
        rd = node.ready()
        node.advance_unwritten(rd)
    assert [r.number for r in node.records] == [written]  # still waits for its write
    assert node.raft.raft_log.persisted < node.raft.raft_log.last_index()
    node.on_persist_ready(written)
    assert node.records == []
    assert node.raft.raft_log.persisted == node.raft.raft_log.last_index()
