"""Replication and commit scenarios (raft-rs test_raft.rs ★ cases, re-derived)."""

from __future__ import annotations

import pytest

from multiraft.raft import ConfState, HardState, MemStorage, MessageType, ProposalDropped
from multiraft.raft.eraftpb import Entry, Message
from multiraft.raft.raft import Raft
from multiraft.raft.tracker import ProgressState
from multiraft.raft.util import NO_LIMIT
from multiraft.testing.network import (
    Interface,
    Network,
    empty_entry,
    new_entry,
    new_message,
    new_storage,
    new_test_config,
    new_test_raft,
    new_test_raft_with_config,
)

from .conftest import persist, read_messages, sorted_msgs

MT = MessageType


def _committed_data(r: Raft[MemStorage]) -> list[bytes]:
    ents = r.raft_log.slice(r.raft_log.first_index(), r.raft_log.committed + 1, None)
    return [e.data for e in ents if e.data]


def test_log_replication_simple() -> None:
    """Proposals commit on every node."""
    n = Network([None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    for id in n.peers:
        r = n.peer(id)
        assert r.raft_log.committed == 2
        assert _committed_data(r) == [b"somedata"]


def test_log_replication_after_leader_change() -> None:
    """Proposals commit on every node, including ones made after a leader change and ones
    proposed through a follower."""
    n = Network([None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.send([new_message(2, 2, MT.MsgHup)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])  # via follower 1 -> leader 2
    for id in n.peers:
        r = n.peer(id)
        assert r.raft_log.committed == 4
        assert _committed_data(r) == [b"somedata", b"somedata"]


def test_single_node_commit() -> None:
    n = Network([None])
    n.send([new_message(1, 1, MT.MsgHup)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert n.peer(1).raft_log.committed == 3


def test_cannot_commit_without_new_term_entry() -> None:
    """Entries from previous terms are not committed by counting replicas (§5.4.2, Figure 8):
    a new leader whose only knowledge of old entries is by replica count must not commit them
    until an entry of its own term commits."""
    n = Network([None, None, None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    # 0 cannot reach 2, 3, 4
    n.cut(1, 3)
    n.cut(1, 4)
    n.cut(1, 5)
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert n.peer(1).raft_log.committed == 1
    # network recovery
    n.recover()
    # avoid committing ChangeTerm proposal
    n.ignore(MT.MsgAppend)
    # elect 2 as the new leader with term 2
    n.send([new_message(2, 2, MT.MsgHup)])
    # no log entries from previous term should be committed
    assert n.peer(2).raft_log.committed == 1
    n.recover()
    # send heartbeat; reset wait
    n.send([new_message(2, 2, MT.MsgBeat)])
    # append an entry at current term
    n.send([new_message(2, 2, MT.MsgPropose, 1)])
    # expect the committed to be advanced
    assert n.peer(2).raft_log.committed == 5


def test_commit_without_new_term_entry() -> None:
    """The new leader's empty entry commits every earlier entry."""
    n = Network([None, None, None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    # 0 cannot reach 2, 3, 4
    n.cut(1, 3)
    n.cut(1, 4)
    n.cut(1, 5)
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert n.peer(1).raft_log.committed == 1
    n.recover()
    # elect 2 as the new leader with term 2; after the append of its empty entry, everything
    # is committed.
    n.send([new_message(2, 2, MT.MsgHup)])
    assert n.peer(1).raft_log.committed == 4


@pytest.mark.parametrize(
    "peers, success",
    [
        ([None, None, None], True),
        ([None, None, "nop"], True),
        ([None, "nop", "nop"], False),
        ([None, "nop", "nop", None], False),
        ([None, "nop", "nop", None, None], True),
    ],
)
def test_proposal(peers: list[str | None], success: bool) -> None:
    """A proposal commits only with a live quorum."""
    n = Network([Interface(None) if p == "nop" else None for p in peers])
    n.send([new_message(1, 1, MT.MsgHup)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    want = [b"somedata"] if success else []
    for id, p in enumerate(peers, 1):
        if p is None:
            assert _committed_data(n.peer(id)) == want
    assert n.peer(1).term == 1


@pytest.mark.parametrize("peers", [[None, None, None], [None, None, "nop"]])
def test_proposal_by_proxy(peers: list[str | None]) -> None:
    """A proposal to a follower is forwarded to the leader and commits."""
    n = Network([Interface(None) if p == "nop" else None for p in peers])
    n.send([new_message(1, 1, MT.MsgHup)])
    n.send([new_message(2, 2, MT.MsgPropose, 1)])
    for id, p in enumerate(peers, 1):
        if p is None:
            assert _committed_data(n.peer(id)) == [b"somedata"]
            assert n.peer(id).raft_log.committed == 2
    assert n.peer(1).term == 1


def test_proposal_without_leader_is_dropped() -> None:
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    with pytest.raises(ProposalDropped):
        r.step(new_message(1, 1, MT.MsgPropose, 1))
    r.become_candidate()
    with pytest.raises(ProposalDropped):
        r.step(new_message(1, 1, MT.MsgPropose, 1))


@pytest.mark.parametrize(
    "matches, logs, sm_term, w",
    [
        # single
        ([1], [empty_entry(1, 1)], 1, 1),
        ([1], [empty_entry(1, 1)], 2, 0),
        ([2], [empty_entry(1, 1), empty_entry(2, 2)], 2, 2),
        ([1], [empty_entry(2, 1)], 2, 1),
        # odd
        ([2, 1, 1], [empty_entry(1, 1), empty_entry(2, 2)], 1, 1),
        ([2, 1, 1], [empty_entry(1, 1), empty_entry(1, 2)], 2, 0),
        ([2, 1, 2], [empty_entry(1, 1), empty_entry(2, 2)], 2, 2),
        ([2, 1, 2], [empty_entry(1, 1), empty_entry(1, 2)], 2, 0),
        # even
        ([2, 1, 1, 1], [empty_entry(1, 1), empty_entry(2, 2)], 1, 1),
        ([2, 1, 1, 1], [empty_entry(1, 1), empty_entry(1, 2)], 2, 0),
        ([2, 1, 1, 2], [empty_entry(1, 1), empty_entry(2, 2)], 1, 1),
        ([2, 1, 1, 2], [empty_entry(1, 1), empty_entry(1, 2)], 2, 0),
        ([2, 1, 2, 2], [empty_entry(1, 1), empty_entry(2, 2)], 2, 2),
        ([2, 1, 2, 2], [empty_entry(1, 1), empty_entry(1, 2)], 2, 0),
    ],
)
def test_commit(matches: list[int], logs: list[Entry], sm_term: int, w: int) -> None:
    """`maybe_commit`: the commit index is the largest index matched by a quorum whose entry
    has the current term."""
    s = new_storage([1])
    s.wl().append(list(logs))
    s.wl().set_hardstate(HardState(term=sm_term))
    ids = list(range(1, len(matches) + 1))
    s.wl().set_conf_state(ConfState(voters=ids))
    sm = new_test_raft(1, [], 10, 2, s)
    for i, m in enumerate(matches, 1):
        pr = sm.prs.progress[i]
        pr.matched = m
        pr.next_idx = m + 1
    sm.maybe_commit()
    assert sm.raft_log.committed == w


@pytest.mark.parametrize(
    "index, log_term, commit, entries, windex, wcommit, wreject",
    [
        # Ensure 1: a mismatched previous entry is rejected.
        (2, 3, 3, [], 2, 0, True),  # previous log mismatch
        (3, 3, 3, [], 2, 0, True),  # previous log non-exist
        # Ensure 2
        (1, 1, 1, [], 2, 1, False),
        (0, 0, 1, [empty_entry(2, 1)], 1, 1, False),
        (2, 2, 3, [empty_entry(2, 3), empty_entry(2, 4)], 4, 3, False),
        (2, 2, 4, [empty_entry(2, 3)], 3, 3, False),
        (1, 1, 4, [empty_entry(2, 2)], 2, 2, False),
        # Ensure 3
        (1, 1, 3, [], 2, 1, False),  # match entry 1, commit up to last new entry 1
        (1, 1, 3, [empty_entry(2, 2)], 2, 2, False),  # match entry 1, commit up to last new entry 2
        (2, 2, 3, [], 2, 2, False),  # match entry 2, commit up to last new entry 2
        (2, 2, 4, [], 2, 2, False),  # commit up to log.last()
    ],
)
def test_handle_msg_append(
    index: int, log_term: int, commit: int, entries: list[Entry], windex: int, wcommit: int, wreject: bool
) -> None:
    """1. Reply false if log doesn't contain an entry at index whose term matches log_term.
    2. If an existing entry conflicts with a new one (same index but different terms), delete
       the existing entry and all that follow it; append any new entries not already in the
       log.
    3. If leader_commit > commit_index, set commit_index = min(leader_commit, index of last new
       entry)."""
    s = new_storage([1, 2])
    s.wl().append([empty_entry(1, 1), empty_entry(2, 2)])
    sm = new_test_raft(1, [1, 2], 10, 1, s)
    sm.become_follower(2, 0)
    m = new_message(2, 1, MT.MsgAppend)
    m.term = 2
    m.log_term = log_term
    m.index = index
    m.commit = commit
    m.entries.extend(entries)
    sm.handle_append_entries(m)
    assert sm.raft_log.last_index() == windex
    assert sm.raft_log.committed == wcommit
    msgs = read_messages(sm)
    assert len(msgs) == 1
    assert msgs[0].reject == wreject


@pytest.mark.parametrize("m_commit, wcommit", [(3, 3), (1, 2)])
def test_handle_heartbeat(m_commit: int, wcommit: int) -> None:
    """A heartbeat advances the commit index, never lowers it."""
    commit = 2
    s = new_storage([1, 2])
    s.wl().append([empty_entry(1, 1), empty_entry(2, 2), empty_entry(3, 3)])
    sm = new_test_raft(1, [1, 2], 5, 1, s)
    sm.become_follower(2, 2)
    sm.raft_log.commit_to(commit)
    m = new_message(2, 1, MT.MsgHeartbeat)
    m.term = 2
    m.commit = m_commit
    sm.handle_heartbeat(m)
    assert sm.raft_log.committed == wcommit
    msgs = read_messages(sm)
    assert len(msgs) == 1
    assert msgs[0].msg_type == MT.MsgHeartbeatResponse


def test_handle_heartbeat_resp() -> None:
    """A lagging follower's heartbeat response triggers an append until it acks."""
    s = new_storage([1, 2])
    s.wl().append([empty_entry(1, 1), empty_entry(2, 2), empty_entry(3, 3)])
    sm = new_test_raft(1, [1, 2], 5, 1, s)
    sm.become_candidate()
    sm.become_leader()
    sm.raft_log.commit_to(sm.raft_log.last_index())
    # A heartbeat response from a node that is behind re-sends MsgAppend.
    m = new_message(2, 1, MT.MsgHeartbeatResponse)
    m.term = sm.term
    sm.step(m)
    msgs = read_messages(sm)
    assert len(msgs) == 1 and msgs[0].msg_type == MT.MsgAppend
    # A second heartbeat response generates another MsgAppend re-send.
    sm.step(m)
    msgs = read_messages(sm)
    assert len(msgs) == 1 and msgs[0].msg_type == MT.MsgAppend
    # Once we have an MsgAppendResponse, heartbeats no longer send MsgAppend.
    resp = new_message(2, 1, MT.MsgAppendResponse)
    resp.term = sm.term
    resp.index = msgs[0].index + len(msgs[0].entries)
    sm.step(resp)
    # Consume the message sent in response to MsgAppendResponse.
    read_messages(sm)
    sm.step(m)
    assert read_messages(sm) == []


def test_msg_append_response_wait_reset() -> None:
    """A leader in Probe state waits for an ack before sending the next append; the ack moves
    the follower to Replicate and lets the next proposal flow."""
    sm = new_test_raft(1, [1, 2, 3], 5, 1)
    sm.become_candidate()
    sm.become_leader()
    # Run n1 which includes sending a message like the below one:
    # n1 -> n2 (MsgAppend), n1 -> n3 (MsgAppend)
    sm.bcast_append()
    # A new node n2 reports that it has accepted the first entry; that is enough for the
    # leader's empty entry to commit once the leader persisted it.
    persist(sm)
    m = new_message(2, 1, MT.MsgAppendResponse)
    m.term = sm.term
    m.index = 1
    sm.step(m)
    assert sm.raft_log.committed == 1
    # Also consume the MsgAppend messages that update the commit index on the followers.
    read_messages(sm)
    # A new command is now proposed on node 1.
    sm.step(new_message(1, 1, MT.MsgPropose, 1))
    # The command is broadcast to all nodes not in the wait state. Node 2 left the wait state
    # due to its MsgAppendResponse, but node 3 is still waiting.
    msgs = read_messages(sm)
    assert len(msgs) == 1
    assert (msgs[0].msg_type, msgs[0].to, len(msgs[0].entries), msgs[0].entries[0].index) == (MT.MsgAppend, 2, 1, 2)
    # Now node 3 acks the first entry. This releases the wait and entry 2 is sent.
    m = new_message(3, 1, MT.MsgAppendResponse)
    m.term = sm.term
    m.index = 1
    sm.step(m)
    msgs = read_messages(sm)
    assert len(msgs) == 1
    assert (msgs[0].msg_type, msgs[0].to, len(msgs[0].entries), msgs[0].entries[0].index) == (MT.MsgAppend, 3, 1, 2)


@pytest.mark.parametrize(
    "index, reject, wmatch, wnext, wmsg_num, windex, wcommitted",
    [
        # stale resp; no replies
        (3, True, 0, 3, 0, 0, 0),
        # denied resp; leader does not commit; decrease next and send probing msg
        (2, True, 0, 2, 1, 1, 0),
        # accept resp; leader commits; broadcast with commit index
        (2, False, 2, 4, 2, 2, 2),
        (0, False, 0, 3, 0, 0, 0),
    ],
)
def test_leader_append_response(
    index: int, reject: bool, wmatch: int, wnext: int, wmsg_num: int, windex: int, wcommitted: int
) -> None:
    """The leader's handling of append responses: stale, rejected and accepted."""
    # Initial progress: match = 0, next = 3 (the leader's empty entry appended at index 3).
    s = new_storage([1, 2, 3])
    s.wl().append([empty_entry(0, 1), empty_entry(1, 2)])
    sm = new_test_raft(1, [1, 2, 3], 10, 1, s)
    sm.become_candidate()
    sm.become_leader()
    read_messages(sm)
    persist(sm)
    m = new_message(2, 1, MT.MsgAppendResponse)
    m.index = index
    m.term = sm.term
    m.reject = reject
    m.reject_hint = index
    sm.step(m)
    pr = sm.prs.progress[2]
    assert pr.matched == wmatch
    assert pr.next_idx == wnext
    msgs = read_messages(sm)
    assert len(msgs) == wmsg_num
    for msg in msgs:
        assert msg.index == windex, msg
        assert msg.commit == wcommitted, msg


def test_bcast_beat() -> None:
    """Heartbeats carry commit = min(matched, committed) per follower (etcd-io/etcd#10166)."""
    offset = 1000
    # Make a state machine with log.offset = 1000.
    s = MemStorage.new_with_conf_state(ConfState(voters=[1, 2, 3]))
    snap = s.wl().snapshot()
    snap.metadata.index = offset
    snap.metadata.term = 1
    snap.metadata.conf_state.CopyFrom(ConfState(voters=[1, 2, 3]))
    s.wl().apply_snapshot(snap)
    sm = new_test_raft(1, [], 10, 1, s)
    sm.term = 1
    sm.become_candidate()
    sm.become_leader()
    for i in range(10):
        sm.append_entry([empty_entry(0, i + 1)])
    persist(sm)
    # slow follower
    sm.prs.progress[2].matched = 5
    sm.prs.progress[2].next_idx = 6
    # normal follower
    last = sm.raft_log.last_index()
    sm.prs.progress[3].matched = last
    sm.prs.progress[3].next_idx = last + 1
    sm.step(new_message(0, 0, MT.MsgBeat))
    msgs = sorted_msgs(read_messages(sm))
    assert len(msgs) == 2
    want_commit = {2: min(sm.raft_log.committed, 5), 3: min(sm.raft_log.committed, last)}
    for m in msgs:
        assert m.msg_type == MT.MsgHeartbeat
        assert m.index == 0 and m.log_term == 0 and len(m.entries) == 0
        assert m.commit == want_commit[m.to]


@pytest.mark.parametrize(
    "leader_log, follower_log, follower_compact, reject_hint_index, reject_hint_term, next_append_term, next_append_index",
    [
        # The follower's tail has a higher term than the probe: it hints the last index of
        # term <= 1 (3), and the leader probes there.
        ([1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 2, 2, 2], 0, 3, 1, 1, 3),
        # The leader's tail has a higher term: the leader skips its whole term-2 run.
        ([1, 2, 2, 2, 2, 2], [1, 1, 1, 1, 1, 1, 1], 0, 6, 1, 1, 1),
        ([1, 1, 1, 4, 4, 4, 4], [1, 1, 1, 2, 2, 3, 3, 3, 3, 3], 0, 7, 3, 1, 3),
        # The follower's log is shorter.
        ([1, 1, 1, 1, 1, 1], [1, 1, 1], 0, 3, 1, 1, 3),
        # The follower has a long divergent tail of higher terms (the comment's example):
        # first rejection at (9, term 6), the leader probes at 8 (term 3).
        ([1, 3, 3, 3, 3, 3, 3, 3, 7], [1, 3, 3, 4, 4, 5, 5, 5, 6], 0, 9, 6, 3, 8),
        ([1, 1, 1, 1, 5, 5, 5, 5, 5], [1, 1, 1, 1, 2, 2], 0, 6, 2, 1, 4),
        # The follower compacted its log: the search ends at the term of the compaction point.
        ([1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 2, 2, 2], 5, 5, 1, 1, 5),
        ([1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 1, 1, 1], 3, 6, 1, 1, 3),
    ],
)
def test_fast_log_rejection(
    leader_log: list[int],
    follower_log: list[int],
    follower_compact: int,
    reject_hint_index: int,
    reject_hint_term: int,
    next_append_term: int,
    next_append_index: int,
) -> None:
    """Fast log rejection: the follower hints the largest index whose term is <= the leader's
    probe term, and the leader skips to the largest index of its own log whose term is <= the
    hinted term: at most one probe per term (raft-rs #417 / etcd-io/etcd#11119)."""
    s1 = new_storage([1, 2, 3])
    s1.wl().append([empty_entry(t, i) for i, t in enumerate(leader_log, 1)])
    s2 = new_storage([1, 2, 3])
    s2.wl().append([empty_entry(t, i) for i, t in enumerate(follower_log, 1)])
    if follower_compact:
        s2.wl().commit_to(follower_compact)
        s2.wl().compact(follower_compact)
    term = max(leader_log[-1], follower_log[-1])
    n1 = new_test_raft(1, [1, 2, 3], 10, 1, s1)
    n2 = new_test_raft(2, [1, 2, 3], 10, 1, s2)
    n1.load_state(HardState(term=term))
    n2.load_state(HardState(term=term, commit=follower_compact))
    n1.become_candidate()
    n1.become_leader()
    read_messages(n1)
    # The leader probes at its last index.
    n1.send_append(2)
    msgs = read_messages(n1)
    assert len(msgs) == 1 and msgs[0].msg_type == MT.MsgAppend
    n2.step(msgs[0])
    msgs = read_messages(n2)
    assert len(msgs) == 1
    resp = msgs[0]
    assert resp.msg_type == MT.MsgAppendResponse and resp.reject
    assert (resp.reject_hint, resp.log_term) == (reject_hint_index, reject_hint_term)
    n1.step(resp)
    msgs = read_messages(n1)
    assert len(msgs) == 1
    assert (msgs[0].log_term, msgs[0].index) == (next_append_term, next_append_index)


def test_log_replication_with_reordered_message() -> None:
    """A delayed rejection must not move next below match (etcd-io/raft#148, tikv/raft-rs#555)."""
    s = new_storage([1, 2])
    r1 = new_test_raft(1, [1, 2], 10, 1, s)
    r1.become_candidate()
    r1.become_leader()
    read_messages(r1)
    persist(r1)
    r1.prs.progress[2].become_replicate()
    r2 = new_test_raft(2, [1, 2], 10, 1)
    # r1 sends 2 MsgAppend messages to r2.
    r1.step(new_message(1, 1, MT.MsgPropose, 1))
    req1 = read_messages(r1)[0]
    r1.step(new_message(1, 1, MT.MsgPropose, 1))
    req2 = read_messages(r1)[0]
    # r2 receives the second MsgAppend first due to reordering.
    r2.step(req2)
    resp2 = read_messages(r2)[0]
    assert resp2.reject
    # r2 receives and accepts the first message.
    r2.step(req1)
    resp1 = read_messages(r2)[0]
    assert not resp1.reject
    # r1 receives the accepting response first, then the stale rejection.
    r1.step(resp1)
    read_messages(r1)
    r1.step(resp2)
    pr = r1.prs.progress[2]
    # next must stay above match.
    assert pr.next_idx > pr.matched
    assert pr.matched == req1.index + len(req1.entries)


@pytest.mark.parametrize("max_size_per_msg", [NO_LIMIT])
def test_progress_paused_in_probe(max_size_per_msg: int) -> None:
    """In Probe state, a leader sends one append per heartbeat interval: three proposals make
    one message."""
    cfg = new_test_config(1, 5, 1)
    cfg.max_size_per_msg = max_size_per_msg
    r = new_test_raft_with_config(cfg, new_storage([1, 2]))
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    for _ in range(3):
        r.step(new_message(1, 1, MT.MsgPropose, 1))
    assert len(read_messages(r)) == 1
    assert r.prs.progress[2].state == ProgressState.Probe


def test_restart_leader_entries_stay(tmp_path: object) -> None:
    """A leader that restarts from its storage keeps every persisted entry (helper check of
    the harness: persist() writes to MemStorage)."""
    n = Network([None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    store = n.storage[1]
    r = Raft(new_test_config(1, 10, 1), store)
    assert r.raft_log.last_index() == 2
    assert r.term == 1
    assert [e.data for e in store.entries(1, 3)] == [b"", b"somedata"]
    assert isinstance(Message(), Message) and new_entry(1, 1).term == 1
    _ = Interface
