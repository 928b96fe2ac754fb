"""Leader transfer (Raft thesis §3.10; raft-rs test_raft.rs ★ transfer cases, re-derived).

Rules (as raft-rs 0.7 behaves):

* MsgTransferLeader (from = target) is "ignored for an unknown target, a learner, self, or a
  repeat of the same target (no timeout extension). A new target aborts the old transfer."
* "If the target is caught up, the leader sends MsgTimeoutNow at once; otherwise after an
  append brings it level."
* "Proposals are dropped during the transfer."
* "The transfer aborts after one election timeout, or if the target leaves the voters."
* "The target campaigns with CAMPAIGN_TRANSFER: no pre-vote, and it overrides voters' leases."
"""

from __future__ import annotations

import pytest

from multiraft.raft import MemStorage, MessageType, ProposalDropped, StateRole
from multiraft.raft.confchange.conf_change import into_v2
from multiraft.raft.eraftpb import (
    ConfChange,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    Message,
)
from multiraft.raft.raft import Raft
from multiraft.testing.network import (
    Network,
    new_message,
    new_storage,
    new_test_config,
    new_test_raft,
    new_test_raft_with_config,
    next_ents,
)

from .conftest import read_messages

MT = MessageType


def _check(r: Raft[MemStorage], state: StateRole, lead: int) -> None:
    """The node is in `state` with leader `lead`, and no transfer is pending."""
    assert (r.state, r.leader_id) == (state, lead)
    assert r.lead_transferee is None


def _remove_node(id: int) -> ConfChange:
    return ConfChange(change_type=ConfChangeType.RemoveNode, node_id=id)


def _transfer(target: int, to: int) -> list[Message]:
    """MsgTransferLeader asking `to` (the leader, or a follower that forwards it) to hand
    leadership to `target` (carried in `from`)."""
    return [new_message(target, to, MT.MsgTransferLeader)]


def _cluster() -> Network:
    n = Network([None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).leader_id == 1
    return n


def test_leader_transfer_to_uptodate_node() -> None:
    """Transferring to a caught-up node succeeds at once; after more replication the
    leadership can be transferred back."""
    n = _cluster()
    n.send(_transfer(2, 1))
    _check(n.peer(1), StateRole.Follower, 2)
    assert (n.peer(2).state, n.peer(2).term) == (StateRole.Leader, 2)
    # After some log replication, transfer leadership back to node 1.
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.send(_transfer(1, 2))
    _check(n.peer(1), StateRole.Leader, 1)
    assert n.peer(1).term == 3


def test_leader_transfer_to_uptodate_node_from_follower() -> None:
    """A follower forwards the transfer request to its leader."""
    n = _cluster()
    n.send(_transfer(2, 2))
    _check(n.peer(1), StateRole.Follower, 2)
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.send(_transfer(1, 1))
    _check(n.peer(1), StateRole.Leader, 1)


def test_leader_transfer_with_check_quorum() -> None:
    """A transfer campaign overrides the voters' leases: node 3 grants its vote although it
    heard from leader 1 zero ticks ago."""
    n = Network([None, None, None])
    for i in (1, 2, 3):
        n.peer(i).check_quorum = True
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).leader_id == 1
    assert n.peer(3).election_elapsed < n.peer(3).election_timeout
    n.send(_transfer(2, 1))
    _check(n.peer(1), StateRole.Follower, 2)
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.send(_transfer(1, 2))
    _check(n.peer(1), StateRole.Leader, 1)


def test_leader_transfer_to_slow_follower() -> None:
    """A lagging target is first brought level by an append, then gets MsgTimeoutNow."""
    n = _cluster()
    n.isolate(3)
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.recover()
    assert n.peer(1).prs.progress[3].matched == 1
    n.send(_transfer(3, 1))
    _check(n.peer(1), StateRole.Follower, 3)
    assert n.peer(3).raft_log.last_index() == 3


def test_leader_transfer_after_snapshot() -> None:
    """A target that needs entries the leader compacted receives a snapshot first; its
    acknowledgement brings it level and triggers MsgTimeoutNow."""
    n = _cluster()
    n.isolate(3)
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    leader = n.peer(1)
    next_ents(leader, n.storage[1])
    assert leader.raft_log.applied == 3
    # Keep only entry 3: term(1) is gone, so node 3 (at index 1) needs a snapshot.
    n.storage[1].wl().compact(3)
    n.recover()
    assert leader.prs.progress[3].matched == 1
    n.send(_transfer(3, 1))
    _check(leader, StateRole.Follower, 3)
    # The append probe was rejected and the probe at index 1 hit compacted entries: a
    # snapshot went out first; its acknowledgement made node 3 level and MsgTimeoutNow
    # followed.
    to_3 = [t[2] for t in n.trace if t[:2] == (1, 3)]
    assert MT.MsgSnapshot in to_3 and MT.MsgTimeoutNow in to_3
    assert to_3.index(MT.MsgSnapshot) < to_3.index(MT.MsgTimeoutNow)
    assert n.peer(3).raft_log.first_index() == 4


def test_leader_transfer_to_self() -> None:
    n = _cluster()
    n.send(_transfer(1, 1))
    _check(n.peer(1), StateRole.Leader, 1)


def test_leader_transfer_to_non_existing_node() -> None:
    n = _cluster()
    n.send(_transfer(4, 1))
    _check(n.peer(1), StateRole.Leader, 1)


def test_leader_transfer_to_learner() -> None:
    """A learner can never lead: the transfer is ignored (raft-rs #165)."""
    leader = new_test_raft_with_config(new_test_config(1, 10, 1), new_storage([1], [2]))
    learner = new_test_raft_with_config(new_test_config(2, 10, 1), new_storage([1], [2]))
    n = Network([leader, learner])
    n.send([new_message(1, 1, MT.MsgHup)])
    n.send(_transfer(2, 1))
    _check(n.peer(1), StateRole.Leader, 1)
    assert n.peer(2).state == StateRole.Follower


def test_leader_transfer_timeout() -> None:
    """The transfer is aborted exactly one election timeout after it started."""
    n = _cluster()
    n.isolate(3)
    leader = n.peer(1)
    n.send(_transfer(3, 1))
    assert leader.lead_transferee == 3
    for _ in range(leader.heartbeat_timeout):
        leader.tick()
    assert leader.lead_transferee == 3
    for _ in range(leader.election_timeout - leader.heartbeat_timeout - 1):
        leader.tick()
    assert leader.lead_transferee == 3
    leader.tick()
    _check(leader, StateRole.Leader, 1)


def test_leader_transfer_ignore_proposal() -> None:
    """"Proposals are dropped during the transfer": step raises ProposalDropped and the log
    does not grow."""
    n = _cluster()
    n.isolate(3)
    leader = n.peer(1)
    n.send(_transfer(3, 1))
    assert leader.lead_transferee == 3
    last = leader.raft_log.last_index()
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    with pytest.raises(ProposalDropped):
        leader.step(new_message(1, 1, MT.MsgPropose, 1))
    assert leader.raft_log.last_index() == last
    assert leader.prs.progress[1].matched == 1


def test_leader_transfer_receive_higher_term_vote() -> None:
    """A higher-term election deposes the leader in the middle of a transfer, which ends it."""
    n = _cluster()
    n.isolate(3)
    n.send(_transfer(3, 1))
    assert n.peer(1).lead_transferee == 3
    hup = new_message(2, 2, MT.MsgHup)
    hup.index = 1
    hup.term = 2
    n.send([hup])
    _check(n.peer(1), StateRole.Follower, 2)
    assert n.peer(2).state == StateRole.Leader


def test_leader_transfer_remove_node() -> None:
    """The transfer is aborted when its target leaves the voters (etcd #11417)."""
    n = _cluster()
    n.ignore(MT.MsgTimeoutNow)
    leader = n.peer(1)
    n.send(_transfer(3, 1))
    assert leader.lead_transferee == 3
    leader.apply_conf_change(into_v2(_remove_node(3)))
    _check(leader, StateRole.Leader, 1)


def test_leader_transfer_demote_node() -> None:
    """Demoting the target to a learner (through a joint config) aborts the transfer too."""
    n = _cluster()
    n.ignore(MT.MsgTimeoutNow)
    leader = n.peer(1)
    n.send(_transfer(3, 1))
    assert leader.lead_transferee == 3
    # Explicit transition: enter a joint config where 3 waits in learners_next.
    cc = into_v2(ConfChange(change_type=ConfChangeType.AddLearnerNode, node_id=3))
    cc.transition = ConfChangeTransition.Explicit
    leader.apply_conf_change(cc)
    # 3 is still a voter of the outgoing half, so it is still a voter: the transfer goes on.
    assert 3 in leader.prs.conf.learners_next
    assert leader.lead_transferee == 3
    # Leaving the joint config makes 3 a learner: the transfer is aborted.
    leader.apply_conf_change(ConfChangeV2())
    _check(leader, StateRole.Leader, 1)
    assert 3 in leader.prs.conf.learners


def test_leader_transfer_back() -> None:
    """Asking to transfer to the current leader while a transfer is pending cancels it."""
    n = _cluster()
    n.isolate(3)
    n.send(_transfer(3, 1))
    assert n.peer(1).lead_transferee == 3
    n.send(_transfer(1, 1))
    _check(n.peer(1), StateRole.Leader, 1)


def test_leader_transfer_second_transfer_to_another_node() -> None:
    """A transfer to a new target replaces a pending one."""
    n = _cluster()
    n.isolate(3)
    n.send(_transfer(3, 1))
    assert n.peer(1).lead_transferee == 3
    n.send(_transfer(2, 1))
    _check(n.peer(1), StateRole.Follower, 2)


def test_leader_transfer_second_transfer_to_same_node() -> None:
    """Repeating the request for the same target does not extend its deadline."""
    n = _cluster()
    n.isolate(3)
    leader = n.peer(1)
    n.send(_transfer(3, 1))
    assert leader.lead_transferee == 3
    for _ in range(leader.heartbeat_timeout):
        leader.tick()
    n.send(_transfer(3, 1))
    for _ in range(leader.election_timeout - leader.heartbeat_timeout):
        leader.tick()
    _check(leader, StateRole.Leader, 1)


def test_transfer_non_member() -> None:
    """MsgTimeoutNow to a node outside the configuration makes no candidate, let alone a
    leader, even if stray vote responses follow."""
    r = new_test_raft(1, [2, 3, 4], 5, 1)
    assert not r.promotable
    r.step(new_message(2, 1, MT.MsgTimeoutNow))
    r.step(new_message(2, 1, MT.MsgRequestVoteResponse))
    r.step(new_message(3, 1, MT.MsgRequestVoteResponse))
    assert (r.state, r.term) == (StateRole.Follower, 0)
    assert read_messages(r) == []


def test_timeout_now_to_removed_node_does_not_elect() -> None:
    """A node removed from the configuration (and that applied its removal) ignores a late
    MsgTimeoutNow at the current term: the cluster keeps its leader."""
    n = _cluster()
    cc = into_v2(_remove_node(3))
    for id in (1, 2, 3):
        n.peer(id).apply_conf_change(cc)
    assert not n.peer(3).promotable
    timeout_now = new_message(1, 3, MT.MsgTimeoutNow)
    timeout_now.term = n.peer(1).term
    n.send([timeout_now])
    assert (n.peer(3).state, n.peer(3).term) == (StateRole.Follower, 1)
    _check(n.peer(1), StateRole.Leader, 1)
    # And the leader never sends one to a node it no longer tracks.
    n.send(_transfer(3, 1))
    _check(n.peer(1), StateRole.Leader, 1)


def test_timeout_now_to_learner_does_not_campaign() -> None:
    """"Learners never campaign, even on MsgTimeoutNow"."""
    r = new_test_raft_with_config(new_test_config(2, 10, 1), new_storage([1], [2]))
    r.become_follower(1, 1)
    m = new_message(1, 2, MT.MsgTimeoutNow)
    m.term = 1
    r.step(m)
    assert (r.state, r.term) == (StateRole.Follower, 1)
    assert read_messages(r) == []


def test_transfer_target_campaigns_without_pre_vote() -> None:
    """The target of a transfer skips the pre-vote round: it becomes a Candidate at term+1
    and its vote requests carry the transfer context."""
    cfg = new_test_config(2, 10, 1)
    cfg.pre_vote = True
    r = new_test_raft_with_config(cfg, new_storage([1, 2, 3]))
    r.become_follower(1, 1)
    m = new_message(1, 2, MT.MsgTimeoutNow)
    m.term = 1
    r.step(m)
    assert (r.state, r.term) == (StateRole.Candidate, 2)
    msgs = read_messages(r)
    assert sorted((x.msg_type, x.to, x.context) for x in msgs) == [
        (MT.MsgRequestVote, 1, b"CampaignTransfer"),
        (MT.MsgRequestVote, 3, b"CampaignTransfer"),
    ]
