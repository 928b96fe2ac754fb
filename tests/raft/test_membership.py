"""Membership changes, joint consensus and learners (Raft thesis §4; raft-rs test_raft.rs and
test_raw_node.rs ★ membership cases, re-derived).

Rules (as raft-rs 0.7 behaves):

* "Changes take effect at apply time."
* "Only one pending change at a time: while pending_conf_index > applied, a further CC
  proposal is silently replaced by an empty normal entry ... A new leader sets
  pending_conf_index to its last index."
* "Learners never campaign, even on MsgTimeoutNow. They still answer votes ... and are
  promoted by AddNode."
* "Quorum shrink: re-checks commit and answers pending reads."
* "MsgRequestVote and vote rejections carry commit/commit_term, so the receiver may
  fast-forward its commit. A candidate that thereby learns of an unapplied CC steps down."
* "Auto-leave: the leader appends the empty CCv2 itself when applied >= pending_conf_index."
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from multiraft.raft import (
    ConfChangeError,
    ConfState,
    EntryType,
    MemStorage,
    MessageType,
    RawNode,
    Ready,
    StateRole,
)
from multiraft.raft.confchange.conf_change import enter_joint, into_v2, new_conf_change_single
from multiraft.raft.eraftpb import (
    ConfChange,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    Entry,
    Message,
)
from multiraft.raft.raft import Raft
from multiraft.raft.util import NO_LIMIT
from multiraft.testing.network import (
    Network,
    empty_entry,
    new_message,
    new_snapshot,
    new_storage,
    new_test_config,
    new_test_learner_raft,
    new_test_raft,
    new_test_raft_with_config,
    next_ents,
)

from .conftest import read_messages

MT = MessageType
CCT = ConfChangeType
AddNode, AddLearner, Remove = CCT.AddNode, CCT.AddLearnerNode, CCT.RemoveNode


def _cc(t: ConfChangeType, id: int) -> ConfChangeV2:
    return into_v2(ConfChange(change_type=t, node_id=id))


def _cc_v2(
    changes: list[tuple[ConfChangeType, int]],
    transition: ConfChangeTransition = ConfChangeTransition.Auto,
    context: bytes = b"",
) -> ConfChangeV2:
    cc = ConfChangeV2(transition=transition, context=context)
    cc.changes.extend(new_conf_change_single(id, t) for t, id in changes)
    return cc


def _cs(
    voters: list[int],
    learners: list[int] = [],  # noqa: B006 - read only
    outgoing: list[int] = [],  # noqa: B006
    learners_next: list[int] = [],  # noqa: B006
    auto_leave: bool = False,
) -> ConfState:
    return ConfState(
        voters=voters,
        learners=learners,
        voters_outgoing=outgoing,
        learners_next=learners_next,
        auto_leave=auto_leave,
    )


def _propose_entry(r: Raft[MemStorage], e: Entry) -> None:
    m = new_message(1, 1, MT.MsgPropose)
    m.entries.append(e)
    r.step(m)


def _cc_entry(cc: ConfChange | ConfChangeV2) -> Entry:
    t = EntryType.EntryConfChange if isinstance(cc, ConfChange) else EntryType.EntryConfChangeV2
    return Entry(entry_type=t, data=cc.SerializeToString())


def _leader(peers: list[int]) -> Raft[MemStorage]:
    r = new_test_raft(1, peers, 10, 1)
    r.become_candidate()
    r.become_leader()
    return r


# -- one pending change at a time ----------------------------------------------------------


def test_step_config() -> None:
    """A leader appends a proposed conf change and records its index as pending."""
    r = _leader([1, 2])
    index = r.raft_log.last_index()
    _propose_entry(r, _cc_entry(ConfChange(change_type=AddNode, node_id=3)))
    assert r.raft_log.last_index() == index + 1
    assert r.raft_log.term(index + 1) == r.term
    assert r.pending_conf_index == index + 1


def test_step_ignore_config() -> None:
    """A second conf change while one is pending becomes an empty normal entry (it is not
    refused: the proposal still takes its place in the log), and the pending index stays."""
    r = _leader([1, 2])
    _propose_entry(r, _cc_entry(ConfChange(change_type=AddNode, node_id=3)))
    index = r.raft_log.last_index()
    pending = r.pending_conf_index
    _propose_entry(r, _cc_entry(ConfChange(change_type=AddNode, node_id=4)))
    assert r.raft_log.entries(index + 1, None) == [Entry(entry_type=EntryType.EntryNormal, term=1, index=3)]
    assert r.pending_conf_index == pending


@pytest.mark.parametrize(
    "cc, joint_first, wreplaced",
    [
        # A non-empty CCv2 while joint must wait for the leave.
        (_cc_v2([(AddNode, 3)]), True, True),
        # An empty CCv2 (leave) while not joint means nothing.
        (ConfChangeV2(), False, True),
        # The leave while joint is accepted.
        (ConfChangeV2(), True, False),
    ],
)
def test_step_joint_config_guards(cc: ConfChangeV2, joint_first: bool, wreplaced: bool) -> None:
    """"The same replacement happens to a non-empty CCv2 proposed while joint, and to an
    empty one proposed while not joint"."""
    r = _leader([1, 2])
    if joint_first:
        r.apply_conf_change(_cc_v2([(AddLearner, 3)], ConfChangeTransition.Explicit))
    assert r.pending_conf_index == 0 and not r.has_pending_conf()
    _propose_entry(r, _cc_entry(cc))
    last = r.raft_log.entries(r.raft_log.last_index(), None)[0]
    if wreplaced:
        assert (last.entry_type, last.data) == (EntryType.EntryNormal, b"")
        assert r.pending_conf_index == 0
    else:
        assert last.entry_type == EntryType.EntryConfChangeV2
        assert r.pending_conf_index == last.index


@pytest.mark.parametrize("add_entry, wpending_index", [(False, 0), (True, 1)])
def test_new_leader_pending_config(add_entry: bool, wpending_index: int) -> None:
    """A new leader conservatively sets pending_conf_index to the last index of its log
    before its empty entry: anything there may be an unapplied conf change."""
    r = new_test_raft(1, [1, 2], 10, 1)
    if add_entry:
        r.append_entry([Entry()])
    r.become_candidate()
    r.become_leader()
    assert r.pending_conf_index == wpending_index


# -- applying changes ----------------------------------------------------------------------


def test_add_node() -> None:
    r = new_test_raft(1, [1], 10, 1)
    r.apply_conf_change(_cc(AddNode, 2))
    assert r.prs.conf.voters.ids() == {1, 2}


def test_add_learner() -> None:
    r = new_test_raft(1, [1], 10, 1)
    r.apply_conf_change(_cc(AddLearner, 2))
    assert r.prs.conf.voters.ids() == {1}
    assert r.prs.conf.learners == {2}
    assert 2 in r.prs.progress


def test_remove_node() -> None:
    """Removing a voter shrinks the config; removing the last voter is refused and leaves the
    config as it was."""
    r = new_test_raft(1, [1, 2], 10, 1)
    r.apply_conf_change(_cc(Remove, 2))
    assert r.prs.conf.voters.ids() == {1}
    with pytest.raises(ConfChangeError):
        r.apply_conf_change(_cc(Remove, 1))
    assert r.prs.conf.voters.ids() == {1}


def test_remove_learner() -> None:
    r = new_test_learner_raft(1, [1], [2], 10, 1)
    r.apply_conf_change(_cc(Remove, 2))
    assert r.prs.conf.voters.ids() == {1}
    assert r.prs.conf.learners == set()
    with pytest.raises(ConfChangeError):
        r.apply_conf_change(_cc(Remove, 1))


def test_commit_after_remove_node() -> None:
    """An entry that cannot commit in {1, 2} (node 2 never acks it) commits as soon as the
    removal of node 2 is applied: the smaller quorum is re-checked."""
    r = new_test_raft(1, [1, 2], 5, 1)
    s = r.raft_log.store
    r.become_candidate()
    r.become_leader()
    cc = _cc_v2([(Remove, 2)])
    _propose_entry(r, _cc_entry(cc))
    # Stabilize the log and make sure nothing is committed yet.
    assert next_ents(r, s) == []
    cc_index = r.raft_log.last_index()
    # While the config change is pending, make another proposal.
    _propose_entry(r, Entry(data=b"hello"))
    # Node 2 acknowledges the config change, committing it.
    m = new_message(2, 1, MT.MsgAppendResponse)
    m.index = cc_index
    r.step(m)
    ents = next_ents(r, s)
    assert [(e.entry_type, e.data) for e in ents] == [
        (EntryType.EntryNormal, b""),
        (EntryType.EntryConfChangeV2, cc.SerializeToString()),
    ]
    # Applying it reduces the quorum to node 1, which has the pending command.
    r.apply_conf_change(cc)
    ents = next_ents(r, s)
    assert [(e.entry_type, e.data) for e in ents] == [(EntryType.EntryNormal, b"hello")]


def test_conf_change_check_before_campaign() -> None:
    """A node never campaigns while committed conf changes are unapplied (etcd-io/etcd#7280),
    not on its election timeout and not on MsgTimeoutNow."""
    n = Network([None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == StateRole.Leader
    m = new_message(1, 1, MT.MsgPropose)
    m.entries.append(_cc_entry(ConfChange(change_type=Remove, node_id=3)))
    n.send([m])
    p1, p2 = n.peer(1), n.peer(2)
    assert p2.raft_log.committed == 2 and p2.raft_log.applied == 0
    # Trigger a campaign in node 2: refused.
    p2.reset_randomized_election_timeout()
    for _ in range(p2.randomized_election_timeout):
        p2.tick()
    assert (p2.state, p2.term) == (StateRole.Follower, 1)
    assert read_messages(p2) == []
    # Transfer leadership to node 2: MsgTimeoutNow is refused too.
    n.send([new_message(2, 1, MT.MsgTransferLeader)])
    assert p1.state == StateRole.Leader
    assert (p2.state, p2.term) == (StateRole.Follower, 1)
    p1.abort_leader_transfer()
    # Once node 2 applied the change, the transfer succeeds.
    committed = p2.raft_log.committed
    p2.commit_apply(committed)
    p2.apply_conf_change(_cc(Remove, 3))
    n.send([new_message(2, 1, MT.MsgTransferLeader)])
    assert p1.state == StateRole.Follower
    assert p2.state == StateRole.Leader
    # Node 1 applies it too (entry 3, node 2's empty entry, is normal): it may campaign.
    p1.commit_apply(committed)
    p1.apply_conf_change(_cc(Remove, 3))
    p1.reset_randomized_election_timeout()
    for _ in range(p1.randomized_election_timeout):
        p1.tick()
    assert p1.state == StateRole.Candidate


# -- commit index carried by votes (raft-rs only) -------------------------------------------


def _learner_cluster(pre_vote: bool) -> Network:
    peers = []
    for id in (1, 2, 3, 4):
        cfg = new_test_config(id, 10, 1)
        cfg.pre_vote = pre_vote
        peers.append(new_test_raft_with_config(cfg, new_storage([1, 2, 3], [4])))
    return Network(peers)


def _voter_cluster(pre_vote: bool) -> Network:
    peers = []
    for id in (1, 2, 3, 4):
        cfg = new_test_config(id, 10, 1)
        cfg.pre_vote = pre_vote
        peers.append(new_test_raft_with_config(cfg, new_storage([1, 2, 3, 4])))
    return Network(peers)


def _propose_uncommitted_cc(n: Network, cc: ConfChange | ConfChangeV2) -> int:
    """Leader 1 proposes `cc`; every follower gets it but no ack arrives."""
    n.ignore(MT.MsgAppendResponse)
    m = new_message(1, 1, MT.MsgPropose)
    m.entries.append(_cc_entry(cc))
    n.send([m])
    n.recover()
    return n.peer(1).raft_log.last_index()


def _campaign_by_ticks(r: Raft[MemStorage]) -> None:
    for _ in range(r.randomized_election_timeout):
        r.tick()


@pytest.mark.parametrize("pre_vote", [False, True])
@pytest.mark.parametrize(
    "cc",
    [
        ConfChange(change_type=AddNode, node_id=4),
        _cc_v2([(AddLearner, 3), (AddNode, 4)]),
    ],
    ids=["v1_add_voter", "v2_joint"],
)
def test_advance_commit_index_by_vote_request(pre_vote: bool, cc: ConfChange | ConfChangeV2) -> None:
    """A voter that rejects a (pre-)vote fast-forwards its commit index to the candidate's,
    when it holds that entry: learner 4, promoted by a conf change it has but does not know
    is committed, learns it from node 2's vote request and can then lead."""
    n = _learner_cluster(pre_vote)
    n.send([new_message(1, 1, MT.MsgHup)])
    cc_index = _propose_uncommitted_cc(n, cc)
    # Node 4 gets one more entry than the voters 2 and 3.
    n.cut(1, 2)
    n.cut(1, 3)
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.recover()
    # The change commits (node 2's ack); the commit index reaches 2 but not 4.
    n.cut(1, 4)
    n.ignore(MT.MsgAppend)
    ack = new_message(2, 1, MT.MsgAppendResponse)
    ack.index = n.peer(2).raft_log.last_index()
    n.send([ack, new_message(1, 1, MT.MsgBeat)])
    n.recover()
    n.isolate(1)  # the leader goes down

    p2, p4 = n.peer(2), n.peer(4)
    assert p4.raft_log.committed < cc_index
    # Node 4 believes it is a learner: it never campaigns.
    _campaign_by_ticks(p4)
    assert p4.state == StateRole.Follower
    assert p2.raft_log.committed >= cc_index
    p2.apply_conf_change(into_v2(cc))
    p2.commit_apply(cc_index)
    # Node 2 needs node 4's vote, which node 4 refuses (its log is longer).
    _campaign_by_ticks(p2)
    assert p2.state == (StateRole.PreCandidate if pre_vote else StateRole.Candidate)
    msgs = read_messages(p2)
    requests = [m for m in msgs if m.to == 4]
    assert [(m.commit, m.commit_term) for m in requests] == [(cc_index, 1)]
    n.filter_and_send(msgs + n.read_messages())
    assert p2.state != StateRole.Leader
    # The rejected request carried node 2's commit index: node 4 now knows the change is
    # committed, applies it, and can win.
    assert p4.raft_log.committed >= cc_index
    p4.apply_conf_change(into_v2(cc))
    p4.commit_apply(cc_index)
    _campaign_by_ticks(p4)
    n.filter_and_send(n.read_messages())
    assert p4.state == StateRole.Leader


@pytest.mark.parametrize("pre_vote", [False, True])
@pytest.mark.parametrize("case", ["v1_remove_voter", "v2_leave_joint"])
def test_advance_commit_index_by_vote_response(pre_vote: bool, case: str) -> None:
    """A candidate fast-forwards its commit index from a rejection; when it learns that way
    of a committed, unapplied conf change it steps down (its election assumed the old
    config). After applying the change it wins."""
    n = _voter_cluster(pre_vote)
    if case == "v1_remove_voter":
        cc: ConfChange | ConfChangeV2 = ConfChange(change_type=Remove, node_id=4)
    else:
        cc = ConfChangeV2()
        enter = _cc_v2([(AddNode, 3), (AddLearner, 4)], ConfChangeTransition.Explicit)
        for id in (1, 2, 3, 4):
            n.peer(id).apply_conf_change(enter)
    n.send([new_message(1, 1, MT.MsgHup)])
    cc_index = _propose_uncommitted_cc(n, cc)
    # Node 4 gets one more entry than 2 and 3.
    n.cut(1, 2)
    n.cut(1, 3)
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    # A delayed ack of node 2 commits the change; only node 4 hears of it.
    ack = new_message(2, 1, MT.MsgAppendResponse)
    ack.index = n.peer(2).raft_log.last_index()
    n.send([ack, new_message(1, 1, MT.MsgBeat)])
    n.recover()
    n.isolate(1)

    p2, p4 = n.peer(2), n.peer(4)
    assert p4.raft_log.committed >= cc_index
    p4.apply_conf_change(into_v2(cc))
    p4.commit_apply(cc_index)
    _campaign_by_ticks(p4)  # removed / demoted: never campaigns
    assert p4.state == StateRole.Follower
    assert p2.raft_log.committed < cc_index
    _campaign_by_ticks(p2)
    assert p2.state == (StateRole.PreCandidate if pre_vote else StateRole.Candidate)
    n.filter_and_send(n.read_messages())
    assert p2.state == StateRole.Follower
    assert p2.raft_log.committed >= cc_index
    p2.apply_conf_change(into_v2(cc))
    p2.commit_apply(cc_index)
    _campaign_by_ticks(p2)
    n.filter_and_send(n.read_messages())
    assert p2.state == StateRole.Leader


def test_vote_commit_info_needs_matching_term() -> None:
    """The commit carried by a vote request is only adopted where the voter's entry has the
    same term (otherwise it is not the committed entry)."""
    s = new_storage([1, 2, 3])
    s.wl().append([empty_entry(1, 1), empty_entry(2, 2), empty_entry(2, 3)])
    r = new_test_raft(2, [1, 2, 3], 10, 1, s)
    r.become_follower(2, 0)
    m = new_message(3, 2, MT.MsgRequestVote)
    m.term, m.index, m.log_term, m.commit, m.commit_term = 3, 2, 1, 2, 1
    r.step(m)
    assert [(x.msg_type, x.reject) for x in read_messages(r)] == [(MT.MsgRequestVoteResponse, True)]
    assert r.raft_log.committed == 0
    # The same request with the right term is adopted.
    m.commit_term = 2
    m.log_term = 2
    r.step(m)
    assert r.raft_log.committed == 2


# -- learners -------------------------------------------------------------------------------


def test_learner_election_timeout() -> None:
    """A learner never campaigns, however long it waits."""
    n2 = new_test_learner_raft(2, [1], [2], 10, 1)
    n2.become_follower(1, 0)
    n2.set_randomized_election_timeout(n2.election_timeout)
    for _ in range(3 * n2.election_timeout):
        n2.tick()
    assert (n2.state, n2.term) == (StateRole.Follower, 1)
    assert read_messages(n2) == []


def test_learner_promotion() -> None:
    """A learner promoted by AddNode may campaign, and wins."""
    n1 = new_test_learner_raft(1, [1], [2], 10, 1)
    n2 = new_test_learner_raft(2, [1], [2], 10, 1)
    n1.become_follower(1, 0)
    n2.become_follower(1, 0)
    n = Network([n1, n2])
    n1.set_randomized_election_timeout(n1.election_timeout)
    for _ in range(n1.election_timeout):
        n1.tick()
    assert n1.state == StateRole.Leader
    assert n2.state == StateRole.Follower
    n.send([new_message(1, 1, MT.MsgBeat)])
    # Promote node 2 from learner to voter.
    n1.apply_conf_change(_cc(AddNode, 2))
    n2.apply_conf_change(_cc(AddNode, 2))
    assert n2.state == StateRole.Follower
    assert n2.promotable
    n2.set_randomized_election_timeout(n2.election_timeout)
    for _ in range(n2.election_timeout):
        n2.tick()
    n.send([new_message(2, 2, MT.MsgBeat)])
    assert n1.state == StateRole.Follower
    assert (n2.state, n2.term) == (StateRole.Leader, 3)


def test_learner_log_replication() -> None:
    """A learner receives and commits the log, without counting toward the quorum."""
    n1 = new_test_learner_raft(1, [1], [2], 10, 1)
    n2 = new_test_learner_raft(2, [1], [2], 10, 1)
    n = Network([n1, n2])
    n1.become_follower(1, 0)
    n2.become_follower(1, 0)
    n1.set_randomized_election_timeout(n1.election_timeout)
    for _ in range(n1.election_timeout):
        n1.tick()
    n.send([new_message(1, 1, MT.MsgBeat)])
    assert n1.state == StateRole.Leader
    assert n2.state == StateRole.Follower
    assert not n2.promotable
    next_committed = n1.raft_log.committed + 1
    # The learner never acks: the single voter commits alone.
    n.ignore(MT.MsgAppendResponse)
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert n1.raft_log.committed == next_committed
    n.recover()
    n.send([new_message(1, 1, MT.MsgBeat)])
    assert n2.raft_log.committed == n1.raft_log.committed
    assert n1.prs.progress[2].matched == n2.raft_log.committed


def test_learner_respond_vote() -> None:
    """Learners answer vote requests (tikv/raft-rs#57; etcd-io/etcd#10998): a promoted
    learner may not know it yet, and its vote may be needed."""
    n1 = new_test_learner_raft(1, [1, 2], [3], 10, 1)
    n3 = new_test_learner_raft(3, [1, 2], [3], 10, 1)
    n1.become_follower(1, 0)
    n3.become_follower(1, 0)
    n = Network([n1, None, n3])
    n.isolate(2)
    # Node 1 cannot win: it sends no vote request to learner 3.
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n1.state == StateRole.Candidate
    # Once node 1 applied the promotion of 3 (which 3 has not), 3's vote elects it.
    n1.apply_conf_change(_cc(AddNode, 3))
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n1.state == StateRole.Leader
    assert not n3.promotable


def test_learner_grants_vote_directly() -> None:
    r = new_test_learner_raft(3, [1, 2], [3], 10, 1)
    m = new_message(1, 3, MT.MsgRequestVote)
    m.term, m.index, m.log_term = 2, 0, 0
    r.step(m)
    msgs = read_messages(r)
    assert [(x.msg_type, x.to, x.term, x.reject) for x in msgs] == [
        (MT.MsgRequestVoteResponse, 1, 2, False)
    ]
    assert r.vote == 1


# -- restore ----------------------------------------------------------------------------------


def test_restore_with_learner() -> None:
    s = new_snapshot(11, 11, [1, 2])
    s.metadata.conf_state.learners.append(3)
    sm = new_test_learner_raft(3, [1, 2], [3], 10, 1)
    assert sm.restore(s)
    assert sm.raft_log.last_index() == 11
    assert sm.raft_log.term(11) == 11
    assert sm.prs.conf.voters.ids() == {1, 2}
    assert sm.prs.conf.learners == {3}
    assert set(sm.prs.progress) == {1, 2, 3}
    assert not sm.promotable
    # The same snapshot again is not restored: the log already holds its last entry.
    assert not sm.restore(s)


def test_restore_with_voters_outgoing() -> None:
    """A snapshot of a joint config restores both halves; the node, in the outgoing half
    only, stays a voter. It must not campaign before the snapshot is persisted."""
    s = new_snapshot(11, 11, [2, 3, 4])
    s.metadata.conf_state.voters_outgoing.extend([1, 2, 3])
    sm = new_test_raft(1, [1, 2], 10, 1)
    assert sm.restore(s)
    assert sm.raft_log.last_index() == 11
    assert sm.raft_log.term(11) == 11
    assert sm.prs.conf.voters.ids() == {1, 2, 3, 4}
    assert sm.prs.conf_state() == _cs([2, 3, 4], outgoing=[1, 2, 3])
    assert not sm.restore(s)
    for _ in range(sm.randomized_election_timeout):
        sm.tick()
    assert sm.state == StateRole.Follower


def test_restore_depromote_voter() -> None:
    """A voter demoted to learner by a snapshot accepts it (etcd-io/etcd#10864)."""
    s = new_snapshot(11, 11, [1, 2])
    s.metadata.conf_state.learners.append(3)
    sm = new_test_raft(3, [1, 2, 3], 10, 1)
    assert sm.promotable
    assert sm.restore(s)
    assert not sm.promotable
    assert sm.prs.conf.learners == {3}


def test_restore_learner_promotion() -> None:
    s = new_snapshot(11, 11, [1, 2, 3])
    sm = new_test_learner_raft(3, [1, 2], [3], 10, 1)
    assert not sm.promotable
    assert sm.restore(s)
    assert sm.promotable


def test_restore_refuses_snapshot_without_self() -> None:
    """A snapshot whose ConfState omits this node is refused."""
    s = new_snapshot(11, 11, [1, 2])
    sm = new_test_raft(3, [1, 2, 3], 10, 1)
    assert not sm.restore(s)
    assert sm.raft_log.last_index() == 0
    assert sm.prs.conf.voters.ids() == {1, 2, 3}


# -- RawNode: propose and apply conf changes -------------------------------------------------


def _handle_cc(node: RawNode[MemStorage], ents: list[Entry], on_cc: Callable[[ConfChangeV2], None]) -> None:
    for e in ents:
        if e.entry_type == EntryType.EntryConfChange:
            v1 = ConfChange()
            v1.ParseFromString(e.data)
            on_cc(into_v2(v1))
        elif e.entry_type == EntryType.EntryConfChangeV2:
            v2 = ConfChangeV2()
            v2.ParseFromString(e.data)
            on_cc(v2)


def _persist(s: MemStorage, rd: Ready) -> None:
    s.wl().append(rd.entries)
    if rd.hs is not None:
        s.wl().set_hardstate(rd.hs)


def _run_until_conf_applied(
    node: RawNode[MemStorage],
    s: MemStorage,
    cc: ConfChange | ConfChangeV2,
    on_committed_cc: Callable[[ConfChangeV2], None] | None = None,
) -> ConfState:
    """Drive a single-node RawNode: once leader, propose b"somedata" and `cc`; return the
    ConfState of applying `cc`."""
    cs: list[ConfState] = []

    def apply(c: ConfChangeV2) -> None:
        if on_committed_cc is not None:
            on_committed_cc(c)
        cs.append(node.apply_conf_change(c))

    proposed = False
    for _ in range(10):
        rd = node.ready()
        _persist(s, rd)
        is_leader = rd.ss is not None and rd.ss.raft_state == StateRole.Leader
        _handle_cc(node, rd.take_committed_entries(), apply)
        light = node.advance(rd)
        _handle_cc(node, light.take_committed_entries(), apply)
        node.advance_apply()
        if cs:
            return cs[0]
        if not proposed and is_leader:
            node.propose(b"", b"somedata")
            node.propose_conf_change(b"", cc)
            proposed = True
    raise AssertionError("the conf change was never applied")


_MIXED = [(AddNode, 2), (AddLearner, 1), (AddLearner, 3)]


@pytest.mark.parametrize(
    "cc, exp, exp2",
    [
        # A v1 change.
        (ConfChange(change_type=AddNode, node_id=2), _cs([1, 2]), None),
        # The same as a V2 change: no joint config.
        (_cc_v2([(AddNode, 2)]), _cs([1, 2]), None),
        # Ditto, as a learner.
        (_cc_v2([(AddLearner, 2)]), _cs([1], [2]), None),
        # Joint consensus on request: Explicit (the app leaves) and Implicit (auto-leave).
        (
            _cc_v2([(AddLearner, 2)], ConfChangeTransition.Explicit),
            _cs([1], [2], outgoing=[1]),
            _cs([1], [2]),
        ),
        (
            _cc_v2([(AddLearner, 2)], ConfChangeTransition.Implicit),
            _cs([1], [2], outgoing=[1], auto_leave=True),
            _cs([1], [2]),
        ),
        # Add node 2 and demote node 1: node 1 stays an outgoing voter and waits in
        # learners_next until the leave. Auto with several changes means joint + auto-leave.
        (_cc_v2(_MIXED), _cs([2], [3], [1], [1], True), _cs([2], [1, 3])),
        (
            _cc_v2(_MIXED, ConfChangeTransition.Explicit),
            _cs([2], [3], [1], [1], False),
            _cs([2], [1, 3]),
        ),
        (
            _cc_v2(_MIXED, ConfChangeTransition.Implicit),
            _cs([2], [3], [1], [1], True),
            _cs([2], [1, 3]),
        ),
    ],
    ids=["v1", "v2", "v2_learner", "explicit", "implicit", "demote_auto", "demote_explicit", "demote_implicit"],
)
def test_raw_node_propose_and_conf_change(
    cc: ConfChange | ConfChangeV2, exp: ConfState, exp2: ConfState | None
) -> None:
    """A conf change proposed through RawNode lands in the log bit for bit, applies to the
    expected ConfState, and sets pending_conf_index; a joint config is left automatically
    (the leader appends an empty CCv2) or by the application (Explicit)."""
    s = new_storage([1])
    node = RawNode(new_test_config(1, 10, 1), s)
    node.campaign()
    cs = _run_until_conf_applied(node, s, cc)
    last_index = s.last_index()
    entries = s.entries(last_index - 1, last_index + 1, NO_LIMIT)
    assert [e.data for e in entries][0] == b"somedata"
    want_type = EntryType.EntryConfChange if isinstance(cc, ConfChange) else EntryType.EntryConfChangeV2
    assert (entries[1].entry_type, entries[1].data) == (want_type, cc.SerializeToString())
    assert cs == exp
    # An auto-leaving joint change appended the leave entry (not in storage yet).
    auto = enter_joint(into_v2(cc)) is True
    assert node.raft.pending_conf_index == (last_index + 1 if auto else last_index)

    rd = node.ready()
    context = b""
    if not exp.auto_leave:
        assert rd.entries == []
        if exp2 is None:
            return
        context = b"manual"
        node.propose_conf_change(b"", ConfChangeV2(context=context))
        rd = node.ready()
    assert len(rd.entries) == 1
    assert rd.entries[0].entry_type == EntryType.EntryConfChangeV2
    leave = ConfChangeV2()
    leave.ParseFromString(rd.entries[0].data)
    assert leave.context == context
    assert len(leave.changes) == 0
    # Pretend the leave applied (a joint quorum with node 2 would be needed to commit it).
    assert node.apply_conf_change(leave) == exp2


def test_raw_node_joint_auto_leave() -> None:
    """The automatic leave is not lost if the leader steps down before applying the joint
    config (etcd-io/etcd#12136): once leader again, it leaves after applying."""
    cc = _cc_v2([(AddLearner, 2)], ConfChangeTransition.Implicit)
    s = new_storage([1])
    node = RawNode(new_test_config(1, 10, 1), s)
    node.campaign()

    def step_down(_: ConfChangeV2) -> None:
        # Force it to step down before it applies the joint config.
        m = Message(msg_type=MT.MsgHeartbeatResponse, from_=1, to=1, term=node.raft.term + 1)
        node.step(m)

    cs = _run_until_conf_applied(node, s, cc, step_down)
    last_index = s.last_index()
    entries = s.entries(last_index - 1, last_index + 1, NO_LIMIT)
    assert entries[0].data == b"somedata"
    assert (entries[1].entry_type, entries[1].data) == (EntryType.EntryConfChangeV2, cc.SerializeToString())
    assert cs == _cs([1], [2], outgoing=[1], auto_leave=True)
    assert node.raft.state == StateRole.Follower
    assert node.raft.pending_conf_index == 0
    # A follower does not leave the joint config.
    rd = node.ready()
    assert rd.entries == []
    node.advance(rd)
    # Leader again: it leaves once the applied index passes its pending_conf_index.
    node.campaign()
    rd = node.ready()
    _persist(s, rd)
    node.advance(rd)
    rd = node.ready()
    _persist(s, rd)
    assert len(rd.entries) == 1
    assert rd.entries[0].entry_type == EntryType.EntryConfChangeV2
    leave = ConfChangeV2()
    leave.ParseFromString(rd.entries[0].data)
    assert leave.context == b"" and len(leave.changes) == 0
    assert node.apply_conf_change(leave) == _cs([1], [2])
