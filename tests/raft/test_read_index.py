"""ReadIndex and lease reads (Raft thesis §6.4; raft-rs test_raft.rs ★ read cases, re-derived).

Rules (as raft-rs 0.7 behaves):

* "A follower forwards it to the leader without stamping a term."
* "The leader drops it until it has committed an entry in its own term."
* "A single voter answers immediately."
* "Safe: the leader broadcasts a heartbeat carrying the ctx; a quorum of echoes answers every
  queued request up to that ctx, either as a local ReadState or as MsgReadIndexResp."
* "LeaseBased: answered at once with the commit index" (and only with check_quorum).
* "On MsgReadIndexResp the follower also tries to advance its commit."

Our ReadOnly differs from raft-rs on purpose: the heartbeat context is an 8-byte counter the
leader generates per request (read_only.py), not the user's context. Each request is therefore
answered on its own, duplicates included, and a heartbeat response can only confirm the
request whose heartbeat it echoes, or earlier ones (etcd-io/raft#397).
"""

from __future__ import annotations

import pytest

from multiraft.raft import ConfigInvalid, MemStorage, MessageType, ReadOnlyOption, StateRole
from multiraft.raft.confchange.conf_change import into_v2
from multiraft.raft.eraftpb import ConfChange, ConfChangeType, HardState, Message
from multiraft.raft.raft import Raft
from multiraft.raft.read_only import ReadState
from multiraft.testing.network import (
    Network,
    empty_entry,
    new_message,
    new_storage,
    new_test_config,
    new_test_learner_raft,
    new_test_raft,
    new_test_raft_with_config,
)

from .conftest import persist, read_messages

MT = MessageType


def _read_index(from_: int, to: int, ctx: bytes) -> Message:
    m = new_message(from_, to, MT.MsgReadIndex)
    m.entries.add(data=ctx)
    return m


def _take_read_states(r: Raft[MemStorage]) -> list[tuple[int, bytes]]:
    rs, r.read_states = r.read_states, []
    return [(s.index, s.request_ctx) for s in rs]


def _three_nodes(option: ReadOnlyOption = ReadOnlyOption.Safe) -> Network:
    peers = []
    for id in (1, 2, 3):
        cfg = new_test_config(id, 10, 1)
        cfg.read_only_option = option
        cfg.check_quorum = option == ReadOnlyOption.LeaseBased
        peers.append(new_test_raft_with_config(cfg, new_storage([1, 2, 3])))
    n = Network(peers)
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == StateRole.Leader
    return n


# (node the reads are sent to, proposals before, read index, ctx1, ctx2, pending): raft-rs's
# table, run in order on one cluster. `pending` rows lose every heartbeat response first.
_SAFE_ROWS = [
    (1, 10, 11, b"ctx1", b"ctx11", False),
    (2, 10, 21, b"ctx2", b"ctx22", False),
    (3, 10, 31, b"ctx3", b"ctx33", False),
    (1, 10, 41, b"ctx4", b"ctx44", True),
    (2, 10, 51, b"ctx5", b"ctx55", True),
    (3, 10, 61, b"ctx6", b"ctx66", True),
]


def test_read_only_option_safe() -> None:
    """Safe reads from the leader (a local ReadState) and from followers (forwarded, answered
    with MsgReadIndexResp) return the leader's commit index when the request arrived.

    Each row sends [ctx1, ctx1, ctx2]. The same user context sent twice is two requests, each
    answered (raft-rs drops the duplicate, as it keys reads by the user context; we key them by
    a leader-generated one). In `pending` rows the heartbeat responses are lost, so the three
    reads stay queued; a fourth read (ctx2 again) gets a heartbeat quorum, which confirms it and
    every read queued before it, in order."""
    n = _three_nodes()
    for i, (id, proposals, wri, ctx1, ctx2, pending) in enumerate(_SAFE_ROWS):
        for _ in range(proposals):
            n.send([new_message(1, 1, MT.MsgPropose, 1)])
        m1, m2 = _read_index(id, id, ctx1), _read_index(id, id, ctx2)
        if pending:
            n.ignore(MT.MsgHeartbeatResponse)
            n.send([m1, m1, m2])
            assert n.peer(1).pending_read_count() == 3, i
            assert _take_read_states(n.peer(id)) == [], i
            n.recover()
            n.send([m2])
            want = [(wri, ctx1), (wri, ctx1), (wri, ctx2), (wri, ctx2)]
        else:
            n.send([m1, m1, m2])
            want = [(wri, ctx1), (wri, ctx1), (wri, ctx2)]
        assert _take_read_states(n.peer(id)) == want, i
        assert n.peer(1).pending_read_count() == 0, i


def test_read_only_option_lease() -> None:
    """Lease reads are answered at once with the leader's commit index, from the leader or
    forwarded from a follower."""
    n = _three_nodes(ReadOnlyOption.LeaseBased)
    wri = 1
    for id in (1, 2, 3, 1, 2, 3):
        for _ in range(10):
            n.send([new_message(1, 1, MT.MsgPropose, 1)])
        wri += 10
        ctx = f"ctx{wri}".encode()
        # No heartbeat round is needed: drop every heartbeat response.
        n.ignore(MT.MsgHeartbeatResponse)
        n.send([_read_index(id, id, ctx)])
        n.recover()
        assert _take_read_states(n.peer(id)) == [(wri, ctx)]
    assert n.peer(1).pending_read_count() == 0


def test_read_only_option_lease_without_check_quorum() -> None:
    """LeaseBased reads without check_quorum would trust a lease nobody enforces
    (tikv/raft-rs#140): validate() refuses the config."""
    cfg = new_test_config(1, 10, 1)
    cfg.read_only_option = ReadOnlyOption.LeaseBased
    cfg.check_quorum = False
    with pytest.raises(ConfigInvalid):
        cfg.validate()
    with pytest.raises(ConfigInvalid):
        Raft(cfg, new_storage([1, 2, 3]))


def test_read_only_for_new_leader() -> None:
    """A new leader drops reads until it has committed an entry of its own term; its commit
    index before that may be stale (etcd-io/etcd#7331)."""
    peers = []
    # (id, committed, applied, compact index)
    for id, committed, applied, compact in ((1, 1, 1, 0), (2, 2, 2, 2), (3, 2, 2, 2)):
        cfg = new_test_config(id, 10, 1)
        cfg.applied = applied
        s = new_storage([1, 2, 3])
        s.wl().append([empty_entry(1, 1), empty_entry(1, 2)])
        s.wl().set_hardstate(HardState(term=1, commit=committed))
        if compact:
            s.wl().compact(compact)
        peers.append(new_test_raft_with_config(cfg, s))
    n = Network(peers)
    # Drop MsgAppend so that node 1 cannot commit anything at its term once elected.
    n.ignore(MT.MsgAppend)
    n.send([new_message(1, 1, MT.MsgHup)])
    leader = n.peer(1)
    assert (leader.state, leader.term, leader.raft_log.committed) == (StateRole.Leader, 2, 1)
    n.send([_read_index(1, 1, b"ctx")])
    assert leader.read_states == []
    assert leader.pending_read_count() == 0
    # A read forwarded by a follower is dropped too (no MsgReadIndexResp comes back).
    n.send([_read_index(2, 1, b"ctx")])
    assert n.peer(2).read_states == [] and leader.pending_read_count() == 0

    n.recover()
    # A heartbeat lets the followers catch up (entry 3 of term 2 commits), then a proposal.
    leader.tick()
    n.send(n.read_messages())
    assert leader.raft_log.committed == 3
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert leader.raft_log.committed == 4
    assert leader.raft_log.term(leader.raft_log.committed) == leader.term
    n.send([_read_index(1, 1, b"ctx")])
    assert _take_read_states(leader) == [(4, b"ctx")]


def test_raft_frees_read_only_mem() -> None:
    """Once the quorum acknowledged the heartbeat of a read, the read leaves the queue
    (a leak here grew without bound: etcd-io/etcd#7571)."""
    sm = new_test_raft(1, [1, 2], 5, 1)
    sm.become_candidate()
    sm.become_leader()
    sm.raft_log.commit_to(sm.raft_log.last_index())
    # The leader starts a linearizable read (thesis §6.4 step 2): a heartbeat with a context.
    sm.step(_read_index(2, 1, b"ctx"))
    msgs = read_messages(sm)
    assert [(m.msg_type, m.to) for m in msgs] == [(MT.MsgHeartbeat, 2)]
    hb_ctx = msgs[0].context
    assert len(hb_ctx) == 8
    assert sm.pending_read_count() == 1
    assert list(sm.read_only.pending_read_index) == [hb_ctx]
    # The heartbeat response of a quorum (node 2) confirms leadership (step 3).
    resp = new_message(2, 1, MT.MsgHeartbeatResponse)
    resp.context = hb_ctx
    sm.step(resp)
    assert sm.pending_read_count() == 0
    assert len(sm.read_only.read_index_queue) == 0
    assert sm.read_only.pending_read_index == {}
    # The read came from node 2: it is answered with MsgReadIndexResp carrying its context.
    out = read_messages(sm)
    answers = [m for m in out if m.msg_type == MT.MsgReadIndexResp]
    assert [(m.to, m.index, [e.data for e in m.entries]) for m in answers] == [(2, 1, [b"ctx"])]


def test_advance_commit_index_by_read_index_response() -> None:
    """A follower's commit index moves up to the index of a MsgReadIndexResp (the leader
    answers only at an index of its own term, which it carries)."""
    n = Network([None, None, None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    # Don't commit entries: only node 2 receives them.
    n.cut(1, 3)
    n.cut(1, 4)
    n.cut(1, 5)
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.recover()
    n.cut(1, 2)
    # A read from node 3 triggers heartbeats; the next heartbeats of the leader's timer find
    # the appends 3, 4 and 5 lost (their answers to the read's own heartbeats do not: the
    # leader sent them every entry); they catch up and the leader commits 3, while node 2
    # (which has the entries) is left at commit 1.
    n.send([_read_index(3, 1, b"r")])
    assert n.peer(1).raft_log.committed == 1
    n.send([new_message(1, 1, MT.MsgBeat)])
    assert n.peer(1).raft_log.committed == 3
    assert n.peer(2).raft_log.committed == 1
    assert n.peer(2).raft_log.last_index() == 3
    # The MsgReadIndexResp alone advances node 2's commit index (no heartbeat involved).
    resp = new_message(1, 2, MT.MsgReadIndexResp)
    resp.term = n.peer(1).term
    resp.index = 3
    resp.entries.add(data=b"r2")
    n.recover()
    n.send([resp])
    assert _take_read_states(n.peer(2)) == [(3, b"r2")]
    assert n.peer(2).raft_log.committed == 3


def test_a_read_rounds_heartbeats_send_no_empty_appends() -> None:
    """The answers to a ReadIndex round's heartbeats do not make the leader send an (empty)
    append to a follower that was sent every entry already: its appends in flight answer
    for themselves (one empty append and its answer per follower per read round otherwise);
    a heartbeat of the leader's timer still does, to find appends that were lost."""
    n = Network([None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    leader = n.peer(1)
    leader.step(new_message(1, 1, MT.MsgPropose, 1))  # appends in flight to 2 and 3
    read_messages(leader)
    leader.step(_read_index(1, 1, b"r"))
    beats = read_messages(leader)
    assert {(m.msg_type, m.to) for m in beats} == {(MT.MsgHeartbeat, 2), (MT.MsgHeartbeat, 3)}
    for to in (2, 3):
        resp = new_message(to, 1, MT.MsgHeartbeatResponse)
        resp.term, resp.context = leader.term, beats[0].context
        leader.step(resp)
    assert [m.msg_type for m in read_messages(leader) if m.msg_type == MT.MsgAppend] == []
    assert _take_read_states(leader) == [(leader.raft_log.committed, b"r")]
    # The timer's heartbeat: its answer finds follower 2 still behind and sends an append.
    leader.step(new_message(1, 1, MT.MsgBeat))
    beats = read_messages(leader)
    resp = new_message(2, 1, MT.MsgHeartbeatResponse)
    resp.term, resp.context = leader.term, beats[0].context
    leader.step(resp)
    assert [(m.msg_type, m.to) for m in read_messages(leader)] == [(MT.MsgAppend, 2)]


def test_read_index_response_does_not_commit_a_mismatching_entry() -> None:
    """If the follower's entry at the read index has another term than the leader's, the
    response must not commit it (it is not the leader's entry)."""
    s = new_storage([1, 2])
    s.wl().append([empty_entry(1, 1), empty_entry(1, 2)])
    r = new_test_raft(2, [1, 2], 10, 1, s)
    r.become_follower(2, 1)
    resp = new_message(1, 2, MT.MsgReadIndexResp)
    resp.term = 2
    resp.index = 2
    resp.entries.add(data=b"x")
    r.step(resp)
    assert r.read_states == [ReadState(2, b"x")]
    assert r.raft_log.committed == 0


def test_read_when_quorum_becomes_less() -> None:
    """A read waiting for a heartbeat quorum is answered when a conf change shrinks the
    quorum to what already acknowledged it."""
    n = Network([None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    leader = n.peer(1)
    assert leader.raft_log.committed == 1
    n.dispatch([_read_index(1, 1, b"abcdefg")])
    # The heartbeats reach node 2; its response is dropped.
    heartbeats = n.read_messages()
    assert [m.msg_type for m in heartbeats] == [MT.MsgHeartbeat]
    n.dispatch(heartbeats)
    responses = n.read_messages()
    assert [m.msg_type for m in responses] == [MT.MsgHeartbeatResponse]
    assert leader.read_states == []
    leader.apply_conf_change(into_v2(ConfChange(change_type=ConfChangeType.RemoveNode, node_id=2)))
    assert _take_read_states(leader) == [(1, b"abcdefg")]
    assert leader.pending_read_count() == 0


def test_read_only_with_learner() -> None:
    """A learner's read is forwarded to the leader; a single voter answers it at once."""
    a = new_test_learner_raft(1, [1], [2], 10, 1)
    b = new_test_learner_raft(2, [1], [2], 10, 1)
    n = Network([a, b])
    n.send([new_message(1, 1, MT.MsgHup)])
    assert a.state == StateRole.Leader
    wri = 1
    for id in (1, 2, 1, 2):
        for _ in range(10):
            n.send([new_message(1, 1, MT.MsgPropose, 1)])
        wri += 10
        ctx = f"ctx{wri}".encode()
        # No heartbeat round: a single voter is its own quorum.
        n.ignore(MT.MsgHeartbeat)
        n.send([_read_index(id, id, ctx)])
        n.recover()
        assert _take_read_states(n.peer(id)) == [(wri, ctx)]


def test_single_voter_answers_read_at_once() -> None:
    """"A single voter answers immediately": no heartbeat, no queue."""
    r = new_test_raft(1, [1], 10, 1)
    r.become_candidate()
    r.become_leader()
    persist(r)
    assert r.raft_log.committed == 1
    r.step(_read_index(1, 1, b"x"))
    assert read_messages(r) == []
    assert _take_read_states(r) == [(1, b"x")]


def test_read_index_forwarded_without_term() -> None:
    """A follower forwards MsgReadIndex to the leader as a local message there (term 0);
    without a leader it drops it."""
    r = new_test_raft(2, [1, 2, 3], 10, 1)
    r.step(_read_index(2, 2, b"x"))
    assert read_messages(r) == []
    r.become_follower(1, 1)
    r.step(_read_index(2, 2, b"x"))
    msgs = read_messages(r)
    assert [(m.msg_type, m.to, m.from_, m.term) for m in msgs] == [(MT.MsgReadIndex, 1, 2, 0)]


def test_read_only_duplicate_request_not_confirmed_by_delayed_ack() -> None:
    """A delayed heartbeat response for an earlier read never confirms a later read, even one
    reusing the same user context (etcd-io/raft#397).

    Scenario: read "A" on leader 1 (term 1) is confirmed by node 2 while node 3's response is
    delayed. Node 1 is cut off; node 2 is elected at term 2 and commits a write. The client
    retries "A" on the stale leader 1. When node 3's delayed response (term 1, echoing the
    first read's heartbeat) reaches node 1, raft-rs (keyed by the user context) would count
    it for the retry and answer it at the old commit index, missing the write. Ours keys the
    retry by a fresh heartbeat context: it stays pending.
    """
    n = Network([None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    old = n.peer(1)
    read_a = _read_index(1, 1, b"A")
    old.step(read_a)
    heartbeats = read_messages(old)
    assert sorted(m.to for m in heartbeats) == [2, 3]
    first_ctx = heartbeats[0].context
    for hb in heartbeats:
        n.peers[hb.to].step(hb)
    resp2 = read_messages(n.peer(2))
    delayed = read_messages(n.peer(3))
    assert [(m.msg_type, m.context) for m in delayed] == [(MT.MsgHeartbeatResponse, first_ctx)]
    old.step(resp2[0])
    assert _take_read_states(old) == [(1, b"A")]

    # Leader 1 is cut off; node 2 wins term 2 and commits a write at index 3.
    n.isolate(1)
    n.send([new_message(2, 2, MT.MsgHup)])
    n.send([new_message(2, 2, MT.MsgPropose, 1)])
    assert n.peer(2).state == StateRole.Leader
    write_index = n.peer(2).raft_log.committed
    assert write_index == 3

    # The retry of "A" on the stale leader 1 (still leader at term 1, nothing tells it).
    assert (old.state, old.term) == (StateRole.Leader, 1)
    n.send([read_a])
    assert old.pending_read_count() == 1
    # Node 3's delayed response for the first read finally arrives.
    n.recover()
    n.send(delayed)
    for id in (1, 2, 3):
        for index, ctx in _take_read_states(n.peer(id)):
            assert not (ctx == b"A" and index < write_index), (id, index)
    assert old.pending_read_count() == 1
