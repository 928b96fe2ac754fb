"""One regression test per known Raft pitfall (bugs found over the years in etcd/raft and raft-rs).

Each test names the upstream issue(s) and asserts the safe behaviour of our implementation.
Where a scenario is also covered at length in another file, the test here is the short,
focused version.
"""

from __future__ import annotations

import pytest

from multiraft.raft import (
    ConfChangeTransition,
    ConfigInvalid,
    EntryType,
    GetEntriesContext,
    MemStorage,
    MessageType,
    ProposalDropped,
    RawNode,
    ReadOnlyOption,
    StateRole,
)
from multiraft.raft.confchange.conf_change import into_v2
from multiraft.raft.eraftpb import (
    ConfChange,
    ConfChangeType,
    ConfChangeV2,
    Entry,
    HardState,
    Message,
)
from multiraft.raft.tracker import ProgressState
from multiraft.raft.util import INVALID_ID
from multiraft.testing.network import (
    Network,
    empty_entry,
    new_entry,
    new_message,
    new_snapshot,
    new_storage,
    new_test_config,
    new_test_learner_raft,
    new_test_raft,
    new_test_raft_with_config,
)

from .conftest import commit_noop_entry, persist, read_messages

MT = MessageType


def _read_index(from_: int, to: int, ctx: bytes) -> Message:
    m = new_message(from_, to, MT.MsgReadIndex)
    m.entries.add(data=ctx)
    return m


def _with_term(m: Message, term: int) -> Message:
    m.term = term
    return m


def _ack(from_: int, index: int, term: int) -> Message:
    m = new_message(from_, 1, MT.MsgAppendResponse)
    m.index = index
    m.term = term
    return m


def _cc(t: ConfChangeType, id: int) -> ConfChangeV2:
    return into_v2(ConfChange(change_type=t, node_id=id))


# 1 ------------------------------------------------------------------------------------------


def test_pitfall_01_no_commit_of_earlier_term_by_counting() -> None:
    """§4.1, Raft paper Figure 8; logcabin/logcabin#44. An entry of an earlier term stored on
    a majority is not committed by counting replicas; it commits only together with an entry
    of the leader's term."""
    s = new_storage([1, 2, 3])
    s.wl().append([empty_entry(1, 1), empty_entry(2, 2)])
    s.wl().set_hardstate(HardState(term=2))
    r = new_test_raft(1, [1, 2, 3], 10, 1, s)
    r.become_candidate()
    r.become_leader()
    assert (r.term, r.raft_log.last_index()) == (3, 3)
    persist(r)
    for id in (2, 3):
        r.step(_ack(id, 2, 3))
    # Index 2 (term 2) is on all three nodes: still not committed.
    assert r.raft_log.committed == 0
    r.step(_ack(2, 3, 3))
    assert r.raft_log.committed == 3


# 2 ------------------------------------------------------------------------------------------


def test_pitfall_02_read_index_on_new_leader() -> None:
    """§4.2; etcd-io/etcd#7331, tikv/tikv#6340. A new leader's commit index may be stale
    until it commits an entry of its term: it drops reads until then (raft-rs), instead of
    answering with an index that may miss acknowledged writes."""
    s = new_storage([1, 2, 3])
    s.wl().append([empty_entry(1, 1), empty_entry(1, 2)])
    s.wl().set_hardstate(HardState(term=1, commit=1))
    r = new_test_raft(1, [1, 2, 3], 10, 1, s)
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    r.step(_read_index(1, 1, b"early"))
    r.step(_read_index(2, 1, b"forwarded"))
    assert read_messages(r) == []  # no heartbeat round, no MsgReadIndexResp
    assert r.read_states == [] and r.pending_read_count() == 0
    # Once the term's empty entry commits, reads are served at that index.
    commit_noop_entry(r, s)
    assert r.raft_log.committed == 3
    r.step(_read_index(1, 1, b"later"))
    hbs = [m for m in read_messages(r) if m.msg_type == MT.MsgHeartbeat]
    resp = _with_term(new_message(2, 1, MT.MsgHeartbeatResponse), r.term)
    resp.context = hbs[0].context
    r.step(resp)
    assert [(x.index, x.request_ctx) for x in r.read_states] == [(3, b"later")]


# 3 ------------------------------------------------------------------------------------------


def test_pitfall_03_lease_read_needs_check_quorum() -> None:
    """§4.3; tikv/raft-rs#140 (fixed by #141), sofastack/sofa-jraft#25. A lease nobody
    enforces never expires: LeaseBased without check_quorum is refused by validate(). With
    check_quorum, a leader cut off from its quorum steps down after an election timeout and
    stops answering lease reads."""
    cfg = new_test_config(1, 10, 1)
    cfg.read_only_option = ReadOnlyOption.LeaseBased
    with pytest.raises(ConfigInvalid):
        cfg.validate()
    peers = []
    for id in (1, 2, 3):
        c = new_test_config(id, 10, 1)
        c.read_only_option = ReadOnlyOption.LeaseBased
        c.check_quorum = True
        peers.append(new_test_raft_with_config(c, new_storage([1, 2, 3])))
    n = Network(peers)
    n.send([new_message(1, 1, MT.MsgHup)])
    leader = n.peer(1)
    n.send([_read_index(1, 1, b"in-lease")])
    assert [(x.index, x.request_ctx) for x in leader.read_states] == [(1, b"in-lease")]
    leader.read_states = []
    n.isolate(1)
    # The first check (one election timeout) still counts the acks from before the cut;
    # the second one finds no quorum.
    for _ in range(2 * leader.election_timeout):
        leader.tick()
    assert leader.state == StateRole.Follower
    n.send([_read_index(1, 1, b"after-lease")])
    assert leader.read_states == []


# 4 ------------------------------------------------------------------------------------------


def test_pitfall_04_duplicate_read_context_and_delayed_ack() -> None:
    """§4.4; etcd-io/raft#397 (and the read-queue leak etcd-io/etcd#7571, dropped reads
    raft-rs #169). Two reads with the same user context get distinct heartbeat contexts: an
    ack echoing the first heartbeat confirms only the first read; a context the leader never
    issued confirms nothing; every confirmed read leaves the queue."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.become_candidate()
    r.become_leader()
    commit_noop_entry(r, r.raft_log.store)
    read_messages(r)
    r.step(_read_index(1, 1, b"A"))
    first = read_messages(r)[0].context
    r.step(_read_index(1, 1, b"A"))
    second = read_messages(r)[0].context
    assert first != second and len(first) == len(second) == 8
    assert r.pending_read_count() == 2

    def ack(from_: int, ctx: bytes) -> None:
        m = _with_term(new_message(from_, 1, MT.MsgHeartbeatResponse), r.term)
        m.context = ctx
        r.step(m)

    ack(2, b"A")  # the user context is not a heartbeat context
    assert r.read_states == [] and r.pending_read_count() == 2
    ack(2, first)
    assert [(x.index, x.request_ctx) for x in r.read_states] == [(1, b"A")]
    assert r.pending_read_count() == 1
    ack(3, first)  # late ack of the first heartbeat: does not confirm the second read
    assert r.pending_read_count() == 1 and len(r.read_states) == 1
    ack(3, second)
    assert r.pending_read_count() == 0 and len(r.read_states) == 2


# 5 ------------------------------------------------------------------------------------------


class _RecordingStorage(MemStorage):
    """A MemStorage that records the max_size of every entries() call."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int | None] = []

    def entries(
        self,
        low: int,
        high: int,
        max_size: int | None = None,
        context: GetEntriesContext | None = None,
    ) -> list[Entry]:
        self.sizes.append(max_size)
        return super().entries(low, high, max_size, context)


def test_pitfall_05_no_campaign_with_unapplied_conf_change_or_snapshot() -> None:
    """§4.5; etcd-io/etcd#7280 (and #7625): never campaign while a committed conf change is
    unapplied; the scan is paged by max_committed_size_per_ready (raft-rs #530, port of
    etcd-io/raft#32); and no campaign with a snapshot not yet persisted (etcd #12163)."""
    s = _RecordingStorage()
    s.initialize_with_conf_state(([1, 2, 3], []))
    cc = ConfChange(change_type=ConfChangeType.AddNode, node_id=4)
    ents = [new_entry(1, i, b"x" * 10) for i in range(1, 5)]
    ents.append(Entry(term=1, index=5, entry_type=EntryType.EntryConfChange, data=cc.SerializeToString()))
    s.wl().append(ents)
    s.wl().set_hardstate(HardState(term=1, commit=5))
    cfg = new_test_config(1, 10, 1)
    page = ents[0].ByteSize()
    cfg.max_committed_size_per_ready = page
    r = new_test_raft_with_config(cfg, s)
    s.sizes.clear()
    r.step(new_message(1, 1, MT.MsgHup))
    assert (r.state, r.term) == (StateRole.Follower, 1)
    assert read_messages(r) == []
    # Five pages of one entry each, all asked with the page size.
    assert s.sizes == [page] * 5
    # Applied: the campaign goes ahead.
    r.commit_apply(5)
    r.step(new_message(1, 1, MT.MsgHup))
    assert r.state == StateRole.Candidate

    # A node holding an unpersisted snapshot does not campaign either.
    f = new_test_raft(2, [1, 2, 3], 10, 1)
    assert f.restore(new_snapshot(11, 11, [1, 2, 3]))
    f.step(new_message(2, 2, MT.MsgHup))
    assert (f.state, f.term) == (StateRole.Follower, 0)
    persist(f)
    f.step(new_message(2, 2, MT.MsgHup))
    assert f.state == StateRole.Candidate


# 6 ------------------------------------------------------------------------------------------


def test_pitfall_06_learner_answers_votes() -> None:
    """§4.6; tikv/raft-rs#57, etcd-io/etcd#10998 (liveness: etcd-io/etcd#12359). A learner
    that does not know yet it was promoted must still answer vote requests."""
    learner = new_test_learner_raft(3, [1, 2], [3], 10, 1)
    assert not learner.promotable
    m = _with_term(new_message(1, 3, MT.MsgRequestVote), 2)
    learner.step(m)
    pre = _with_term(new_message(2, 3, MT.MsgRequestPreVote), 3)
    learner.step(pre)
    # Both are granted: the learner's (empty) log is no longer than the candidates', and a
    # pre-vote for a future term does not conflict with its vote for 1 in term 2.
    assert [(x.msg_type, x.to, x.term, x.reject) for x in read_messages(learner)] == [
        (MT.MsgRequestVoteResponse, 1, 2, False),
        (MT.MsgRequestPreVoteResponse, 2, 3, False),
    ]
    assert (learner.vote, learner.term) == (1, 2)


# 7 ------------------------------------------------------------------------------------------


def test_pitfall_07_snapshot_demoting_voter_or_excluding_self() -> None:
    """§4.7; etcd-io/etcd#10864. A voter demoted to learner by a snapshot accepts it; a node
    only in voters_outgoing accepts it too; a snapshot whose ConfState omits the node is
    refused."""
    demote = new_snapshot(11, 11, [1, 2])
    demote.metadata.conf_state.learners.append(3)
    r3 = new_test_raft(3, [1, 2, 3], 10, 1)
    assert r3.restore(demote)
    assert not r3.promotable

    outgoing = new_snapshot(11, 11, [2, 3])
    outgoing.metadata.conf_state.voters_outgoing.extend([1, 2, 3])
    r1 = new_test_raft(1, [1, 2, 3], 10, 1)
    assert r1.restore(outgoing)
    assert r1.promotable

    excluded = new_snapshot(11, 11, [1, 2])
    r4 = new_test_raft(4, [1, 2, 4], 10, 1)
    assert not r4.restore(excluded)
    assert r4.raft_log.last_index() == 0


# 8 ------------------------------------------------------------------------------------------


def test_pitfall_08_joint_auto_leave_survives_leader_change() -> None:
    """§4.8; etcd-io/etcd#12136 (fixed by #12137), broadcast of the leave etcd #14538. The
    leader that proposed an auto-leaving joint change loses leadership before applying it;
    the new leader still leaves the joint config once it applied past its pending index, and
    sends the leave entry to its followers at once."""
    n = Network([None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    cc = ConfChangeV2(transition=ConfChangeTransition.Implicit)
    cc.changes.add(change_type=ConfChangeType.AddLearnerNode, node_id=3)
    m = new_message(1, 1, MT.MsgPropose)
    m.entries.add(entry_type=EntryType.EntryConfChangeV2, data=cc.SerializeToString())
    n.send([m])
    for id in (1, 2, 3):
        assert n.peer(id).raft_log.committed == 2
        n.peer(id).apply_conf_change(cc)
    # Node 2 applies and takes over before node 1 applied the entry.
    p1, p2 = n.peer(1), n.peer(2)
    p2.commit_apply(2)
    n.send([new_message(2, 2, MT.MsgHup)])
    assert p2.state == StateRole.Leader and p1.state == StateRole.Follower
    p1.commit_apply(2)  # a follower does not leave
    assert p1.raft_log.last_index() == 3
    assert p2.pending_conf_index == 2 and p2.raft_log.committed == 3
    p2.commit_apply(3)
    leave_index = p2.raft_log.last_index()
    assert p2.pending_conf_index == leave_index == 4
    sent = [x for x in read_messages(p2) if x.msg_type == MT.MsgAppend]
    assert sorted(x.to for x in sent) == [1, 3]
    for x in sent:
        assert [(e.index, e.entry_type, e.data) for e in x.entries] == [
            (4, EntryType.EntryConfChangeV2, b"")
        ]
    n.send(sent)
    assert p2.raft_log.committed == 4
    leave = ConfChangeV2()
    for id in (1, 2, 3):
        n.peer(id).apply_conf_change(leave)
    assert p2.prs.conf_state().voters == [1, 2]
    assert p2.prs.conf_state().learners == [3]


# 9 ------------------------------------------------------------------------------------------


def test_pitfall_09_prevote_deadlocks() -> None:
    """§4.9. (a) etcd-io/etcd#8243: a lower-term pre-candidate gets a rejection carrying our
    term; (b) etcd-io/etcd#8501, raft-rs #42: with check_quorum or pre_vote, a lower-term
    append/heartbeat is answered with MsgAppendResponse at our term (and ignored when both are
    off); (c) raft-rs #83, #84: a pre-candidate resets its votes and forgets the leader."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.become_follower(5, INVALID_ID)
    r.step(_with_term(new_message(2, 1, MT.MsgRequestPreVote), 3))
    assert [(x.msg_type, x.term, x.reject) for x in read_messages(r)] == [
        (MT.MsgRequestPreVoteResponse, 5, True)
    ]
    # The pre-candidate adopts the term from the rejection.
    pc = new_test_raft(2, [1, 2, 3], 10, 1)
    pc.pre_vote = True
    pc.become_follower(2, INVALID_ID)
    pc.step(new_message(2, 2, MT.MsgHup))
    assert (pc.state, pc.term) == (StateRole.PreCandidate, 2)
    rej = _with_term(new_message(1, 2, MT.MsgRequestPreVoteResponse), 5)
    rej.reject = True
    pc.step(rej)
    assert (pc.state, pc.term) == (StateRole.Follower, 5)

    for check_quorum, pre_vote, answered in ((False, False, False), (True, False, True), (False, True, True)):
        f = new_test_raft(1, [1, 2, 3], 10, 1)
        f.check_quorum, f.pre_vote = check_quorum, pre_vote
        f.become_follower(5, INVALID_ID)
        for t in (MT.MsgAppend, MT.MsgHeartbeat):
            f.step(_with_term(new_message(2, 1, t), 3))
        got = [(x.msg_type, x.to, x.term) for x in read_messages(f)]
        assert got == ([(MT.MsgAppendResponse, 2, 5)] * 2 if answered else [])

    c = new_test_raft(1, [1, 2, 3], 10, 1)
    c.become_follower(1, 2)
    c.prs.record_vote(3, True)
    c.become_pre_candidate()
    assert c.leader_id == INVALID_ID
    assert c.prs.votes == {}


# 10 -----------------------------------------------------------------------------------------


def test_pitfall_10_uncommitted_size_accounting() -> None:
    """§4.10; etcd-io/etcd#10167, tikv/raft-rs#131 and #398 (a leak dropped every proposal:
    etcd-io/etcd#10199). Empty entries never count; entries of earlier terms, never counted
    by this leader, are not subtracted when they commit; the count never goes negative."""
    s = new_storage([1, 2])
    s.wl().append([empty_entry(1, 1), new_entry(1, 2, b"x" * 12)])
    s.wl().set_hardstate(HardState(term=1))
    cfg = new_test_config(1, 10, 1)
    cfg.max_uncommitted_size = 24
    cfg.max_size_per_msg = 0  # validate(): the limit must hold at least one message
    r = new_test_raft_with_config(cfg, s)
    r.become_candidate()
    r.become_leader()  # appends the empty entry 3: counts 0
    assert r.uncommitted_size == 0
    for _ in range(2):
        m = new_message(1, 1, MT.MsgPropose)
        m.entries.add(data=b"y" * 12)
        r.step(m)
    assert r.uncommitted_size == 24
    with pytest.raises(ProposalDropped):
        m = new_message(1, 1, MT.MsgPropose)
        m.entries.add(data=b"z")
        r.step(m)
    r.step(_empty_proposal())
    assert r.uncommitted_size == 24
    # Entries 2 (old term), 3 and 4 commit: only entry 4 was counted.
    r.reduce_uncommitted_size([new_entry(1, 2, b"x" * 12), empty_entry(2, 3), new_entry(2, 4, b"y" * 12)])
    assert r.uncommitted_size == 12
    # Over-reduction (an inconsistent report) clamps at 0 instead of going negative.
    r.reduce_uncommitted_size([new_entry(2, 5, b"y" * 40)])
    assert r.uncommitted_size == 0


def _empty_proposal() -> Message:
    m = new_message(1, 1, MT.MsgPropose)
    m.entries.add()
    return m


# 11 -----------------------------------------------------------------------------------------


def test_pitfall_11_flow_control() -> None:
    """§4.11. etcd-io/raft#148, tikv/raft-rs#555 and #557: after a rejection `next` stays
    above `match`, even with a hint below it. raft-rs keeps freeing one Inflights slot per
    heartbeat response (the behaviour etcd-io/etcd#14633 revisited). etcd-io/raft#52: a
    caught-up follower left in Probe is resumed by a heartbeat response, and the ack of the
    next append moves it back to Replicate."""
    s = new_storage([1, 2])
    s.wl().append([empty_entry(1, i) for i in range(1, 6)])
    s.wl().set_hardstate(HardState(term=1))
    r = new_test_raft(1, [1, 2], 10, 1, s)
    r.become_candidate()
    r.become_leader()
    persist(r)
    read_messages(r)
    pr = r.prs.progress[2]
    pr.matched, pr.next_idx = 4, 7
    rej = _ack(2, 6, r.term)
    rej.reject, rej.reject_hint, rej.log_term = True, 2, 1
    r.step(rej)
    assert pr.next_idx == 5 > pr.matched
    assert [(x.msg_type, x.index) for x in read_messages(r)] == [(MT.MsgAppend, 4)]
    # Replicate: a rejection goes back to matched + 1, never below.
    pr.become_replicate()
    rej = _ack(2, 5, r.term)
    rej.reject, rej.reject_hint = True, 0
    r.step(rej)
    assert (pr.state, pr.next_idx) == (ProgressState.Probe, 5)
    read_messages(r)

    # A full window gets one slot per heartbeat response.
    r.step(_ack(2, 6, r.term))
    assert pr.state == ProgressState.Replicate and pr.matched == 6
    r.adjust_max_inflight_msgs(2, 2)
    for _ in range(2):
        r.step(new_message(1, 1, MT.MsgPropose, 1))
    assert pr.ins.full()
    r.step(_with_term(new_message(2, 1, MT.MsgHeartbeatResponse), r.term))
    assert pr.ins.count() == 1 and not pr.ins.full()
    read_messages(r)
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    assert pr.ins.full()
    read_messages(r)

    # A caught-up follower reported unreachable goes to Probe; a heartbeat response resumes
    # it, and the next append's ack restores Replicate.
    r.step(_ack(2, r.raft_log.last_index(), r.term))
    r.step(new_message(2, 1, MT.MsgUnreachable))
    assert pr.state == ProgressState.Probe
    r.step(_with_term(new_message(2, 1, MT.MsgHeartbeatResponse), r.term))
    assert not pr.is_paused()
    read_messages(r)
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    assert [(x.to, x.msg_type) for x in read_messages(r)] == [(2, MT.MsgAppend)]
    r.step(_ack(2, r.raft_log.last_index(), r.term))
    assert pr.state == ProgressState.Replicate


# 12 -----------------------------------------------------------------------------------------


def test_pitfall_12_compaction_and_commit_bounds() -> None:
    """§4.12. etcd-io/raft#31: an empty append with log_term 0 at a compacted index must not
    crash the follower; it answers with its commit index. A leader whose needed term is
    compacted sends a snapshot. etcd-io/etcd#10166, #16220: a heartbeat carries
    commit = min(match, committed), so a follower never commits past its log."""
    f = new_test_raft(2, [1, 2], 10, 1)
    assert f.restore(new_snapshot(5, 1, [1, 2]))
    persist(f)
    f.become_follower(2, 1)
    app = _with_term(new_message(1, 2, MT.MsgAppend), 2)
    app.index, app.log_term, app.commit = 3, 0, 5
    f.step(app)
    assert [(x.msg_type, x.reject, x.index) for x in read_messages(f)] == [
        (MT.MsgAppendResponse, False, 5)
    ]

    leader = new_test_raft(1, [1], 10, 1)
    assert leader.restore(new_snapshot(11, 11, [1, 2]))
    persist(leader)
    leader.become_candidate()
    leader.become_leader()
    leader.prs.progress[2].next_idx = 5  # needs term(4): compacted
    leader.prs.progress[2].recent_active = True
    leader.send_append(2)
    assert [x.msg_type for x in read_messages(leader)] == [MT.MsgSnapshot]

    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.become_candidate()
    r.become_leader()
    for _ in range(3):
        r.append_entry([Entry(data=b"d")])
    persist(r)
    r.prs.progress[2].matched = 4
    r.prs.progress[3].matched = 1
    assert r.maybe_commit() and r.raft_log.committed == 4
    read_messages(r)
    r.bcast_heartbeat()
    assert sorted((x.to, x.commit) for x in read_messages(r)) == [(2, 4), (3, 1)]


# 13 -----------------------------------------------------------------------------------------


def test_pitfall_13_snapshot_progress() -> None:
    """§4.13; etcd-io/etcd#10308. raft-rs moves a peer from Snapshot to Probe (not straight to
    Replicate) on an ack at or past the snapshot; without an ack or a report it stays in
    Snapshot, paused, whatever heartbeats say."""
    leader = new_test_raft(1, [1], 10, 1)
    assert leader.restore(new_snapshot(11, 11, [1, 2]))
    persist(leader)
    leader.become_candidate()
    leader.become_leader()
    pr = leader.prs.progress[2]
    pr.become_snapshot(11)
    for _ in range(3):
        leader.step(_with_term(new_message(2, 1, MT.MsgHeartbeatResponse), leader.term))
    assert pr.state == ProgressState.Snapshot and pr.is_paused()
    assert [x for x in read_messages(leader) if x.msg_type in (MT.MsgAppend, MT.MsgSnapshot)] == []
    leader.step(_ack(2, 11, leader.term))
    assert pr.state == ProgressState.Probe
    assert (pr.matched, pr.next_idx, pr.pending_snapshot) == (11, 12, 0)


# 14 -----------------------------------------------------------------------------------------


def _append(from_: int, term: int, index: int, log_term: int, ents: list[Entry], commit: int = 0) -> Message:
    m = Message(msg_type=MT.MsgAppend, from_=from_, to=2, term=term, index=index, log_term=log_term, commit=commit)
    m.entries.extend(ents)
    return m


def test_pitfall_14_append_aba_after_term_change() -> None:
    """§4.14; the raft_log maybe_persist ABA note, etcd-io/raft#8. A follower writes entries
    (2, 3) of term 2 asynchronously; before the write is acknowledged a leader of term 3
    overwrites index 2, and the old leader, re-elected at term 4, sends the same entries
    again. The late acknowledgement of the first write names (3, term 2), which storage
    holds, but the log's copy at 2 and 3 is a newer, unwritten one: `persisted` must not move
    past the first unstable index (Invariant: persisted < unstable.offset)."""
    s = MemStorage.new_with_conf_state(([1, 2, 3], []))
    s.wl().append([empty_entry(1, 1)])
    s.wl().set_hardstate(HardState(term=1, commit=1))
    node = RawNode(new_test_config(2, 10, 1), s)
    raft = node.raft
    a_ents = [empty_entry(2, 2), empty_entry(2, 3)]
    node.step(_append(1, 2, 1, 1, a_ents))
    rd1 = node.ready()
    assert [(e.index, e.term) for e in rd1.entries] == [(2, 2), (3, 2)]
    s.wl().append(rd1.entries)  # written to the storage's memory, not yet durable
    node.advance_append_async(rd1)
    # Leader 3 at term 3 overwrites index 2; no Ready is taken.
    node.step(_append(3, 3, 1, 1, [empty_entry(3, 2)]))
    # Leader 1, re-elected at term 4, re-sends its entries of term 2.
    node.step(_append(1, 4, 1, 1, a_ents))
    assert raft.raft_log.unstable.offset == 2
    node.on_persist_ready(rd1.number)
    assert raft.raft_log.persisted == 1
    assert raft.raft_log.persisted < raft.raft_log.unstable.offset
    # The new Ready writes them; its acknowledgement does move `persisted`.
    rd2 = node.ready()
    assert [(e.index, e.term) for e in rd2.entries] == [(2, 2), (3, 2)]
    s.wl().append(rd2.entries)
    node.advance_append_async(rd2)
    node.on_persist_ready(rd2.number)
    assert raft.raft_log.persisted == 3


def test_pitfall_14b_must_sync_and_removed_peer_fetch() -> None:
    """§4.14; raft-rs #372: must_sync is false only when nothing but the commit index
    changed. raft-rs #462: an asynchronous entries fetch that completes after its peer was
    removed is dropped instead of failing."""
    s = MemStorage.new_with_conf_state(([1, 2], []))
    node = RawNode(new_test_config(1, 10, 1), s)
    node.campaign()
    node.step(Message(msg_type=MT.MsgRequestVoteResponse, from_=2, to=1, term=1))
    assert node.raft.state == StateRole.Leader
    rd = node.ready()
    assert rd.must_sync  # term, vote and entries
    s.wl().append(rd.entries)
    node.advance(rd)
    node.step(_with_term(Message(msg_type=MT.MsgAppendResponse, from_=2, to=1, index=1), 1))
    rd = node.ready()
    assert rd.hs is not None and rd.hs.commit == 1
    assert rd.entries == [] and not rd.must_sync
    s.wl().set_hardstate(rd.hs)
    node.advance(rd)
    node.propose(b"", b"x")
    rd = node.ready()
    s.wl().append(rd.entries)
    node.advance(rd)
    # Node 2 lags at 1; its next append must come from storage, which answers later.
    s.wl().trigger_log_unavailable(True)
    pr = node.raft.prs.progress[2]
    pr.become_probe()
    pr.next_idx = 2
    node.raft.send_append(2)
    ctx = s.wl().take_get_entries_context()
    assert ctx is not None and ctx.what == GetEntriesContext.SEND_APPEND and ctx.to == 2
    node.apply_conf_change(_cc(ConfChangeType.RemoveNode, 2))
    s.wl().trigger_log_unavailable(False)
    read_messages(node.raft)
    node.on_entries_fetched(ctx)
    assert read_messages(node.raft) == []


# 15 -----------------------------------------------------------------------------------------


def test_pitfall_15_pagination_after_restart() -> None:
    """§4.15; etcd #10063. After a restart with `applied` in the middle of the committed
    entries and a small page size, every entry after `applied` is handed out once, in order,
    none skipped."""
    s = MemStorage.new_with_conf_state(([1], []))
    ents = [new_entry(1, i, bytes([i]) * 50) for i in range(1, 11)]
    s.wl().append(ents)
    s.wl().set_hardstate(HardState(term=1, commit=10))
    cfg = new_test_config(1, 10, 1)
    cfg.max_committed_size_per_ready = 2 * ents[0].ByteSize()
    cfg.applied = 3
    node = RawNode(cfg, s)
    seen: list[int] = []
    while node.has_ready():
        rd = node.ready()
        seen.extend(e.index for e in rd.committed_entries)
        light = node.advance(rd)
        seen.extend(e.index for e in light.committed_entries)
        node.advance_apply()
    assert seen == list(range(4, 11))


# 16 -----------------------------------------------------------------------------------------


def test_pitfall_16_leader_transfer_to_learner_or_removed_node() -> None:
    """§4.16; raft-rs #165 (transfer to a learner), etcd #11417 (target demoted mid-transfer).
    A transfer to a learner is ignored; one whose target is removed is aborted; a removed
    node ignores MsgTimeoutNow, so no leader comes of it."""
    leader = new_test_learner_raft(1, [1, 2], [3], 10, 1)
    leader.become_candidate()
    leader.become_leader()
    read_messages(leader)
    leader.step(new_message(3, 1, MT.MsgTransferLeader))
    assert leader.lead_transferee is None
    assert read_messages(leader) == []
    leader.step(new_message(2, 1, MT.MsgTransferLeader))
    assert leader.lead_transferee == 2
    leader.apply_conf_change(_cc(ConfChangeType.RemoveNode, 2))
    assert leader.lead_transferee is None

    removed = new_test_raft(3, [1, 2], 10, 1)  # not in its own configuration
    removed.become_follower(1, 1)
    removed.step(_with_term(new_message(1, 3, MT.MsgTimeoutNow), 1))
    assert (removed.state, removed.term) == (StateRole.Follower, 1)
    assert read_messages(removed) == []


# 17 -----------------------------------------------------------------------------------------


def test_pitfall_17_leader_progress_and_removed_leader() -> None:
    """§4.17; raft-rs #143, #146. The leader's own progress starts in Replicate (it can
    never be paused by its own flow control). A leader that applied its own removal keeps
    leading (raft-rs has no StepDownOnRemoval) but drops proposals."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.become_candidate()
    r.become_leader()
    own = r.prs.progress[1]
    assert own.state == ProgressState.Replicate
    assert not own.is_paused()
    # It counts only what it persisted (raft-rs 0.7: on_persist_entries).
    assert own.matched == 0
    persist(r)
    assert own.matched == 1
    r.apply_conf_change(_cc(ConfChangeType.RemoveNode, 1))
    assert r.state == StateRole.Leader
    with pytest.raises(ProposalDropped):
        r.step(new_message(1, 1, MT.MsgPropose, 1))
