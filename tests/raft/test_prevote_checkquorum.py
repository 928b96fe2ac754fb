"""Check-quorum, leader leases and pre-vote (raft-rs test_raft.rs ★ cases, re-derived).

Rules exercised (raft-rs 0.7 Config semantics, Raft thesis §4.2.3, §6.2 and §9.6):

* check_quorum: "the leader steps down if a quorum was not active within an election
  timeout"; "voters that heard from a leader within the timeout ignore higher-term
  (pre)votes, unless the vote is a transfer campaign".
* pre_vote: "pre-election at term+1; the node's own term is not raised".
* a lower-term MsgAppend/MsgHeartbeat is answered (with our term) when check_quorum or
  pre_vote is on, and a lower-term pre-vote is rejected with our term (etcd-io/etcd#8501,
  #8243), so that a node whose term ran ahead can rejoin.
"""

from __future__ import annotations

import pytest

from multiraft.raft import MemStorage, MessageType, StateRole
from multiraft.raft.confchange.conf_change import into_v2
from multiraft.raft.eraftpb import ConfChange, ConfChangeType
from multiraft.raft.raft import Raft
from multiraft.raft.util import INVALID_ID
from multiraft.testing.network import (
    Network,
    new_message,
    new_test_raft,
    new_test_raft_with_prevote,
)

from .conftest import read_messages

MT = MessageType


def _cq_raft(id: int, peers: list[int], election: int = 10) -> Raft[MemStorage]:
    r = new_test_raft(id, peers, election, 1)
    r.check_quorum = True
    return r


def _tick(r: Raft[MemStorage], n: int) -> None:
    for _ in range(n):
        r.tick()


def _add_node(id: int) -> ConfChange:
    return ConfChange(change_type=ConfChangeType.AddNode, node_id=id)


# -- check quorum ------------------------------------------------------------------------


def test_leader_stepdown_when_quorum_active() -> None:
    """A leader that hears from a quorum (here node 2) every election timeout stays leader."""
    sm = _cq_raft(1, [1, 2, 3], election=5)
    sm.become_candidate()
    sm.become_leader()
    for _ in range(3 * sm.election_timeout + 1):
        m = new_message(2, 1, MT.MsgHeartbeatResponse)
        m.term = sm.term
        sm.step(m)
        sm.tick()
    assert sm.state == StateRole.Leader
    assert sm.term == 1


def test_leader_stepdown_when_quorum_lost() -> None:
    """"The leader steps down if a quorum was not active within an election timeout": with
    no answer at all, the check at the election_timeout-th tick deposes it, at the same term
    and with no known leader."""
    sm = _cq_raft(1, [1, 2, 3], election=5)
    sm.become_candidate()
    sm.become_leader()
    _tick(sm, sm.election_timeout - 1)
    assert sm.state == StateRole.Leader
    sm.tick()
    assert sm.state == StateRole.Follower
    assert sm.term == 1
    assert sm.leader_id == INVALID_ID


def test_leader_superseding_with_check_quorum() -> None:
    """An in-lease follower ignores a higher-term vote request; once its election timeout
    has elapsed without hearing from the leader, it grants it."""
    n = Network([_cq_raft(1, [1, 2, 3]), _cq_raft(2, [1, 2, 3]), _cq_raft(3, [1, 2, 3])])
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == StateRole.Leader
    assert n.peer(3).state == StateRole.Follower
    b = n.peer(2)
    # Node 2 must not campaign by itself while we let its lease run out.
    b.set_randomized_election_timeout(b.election_timeout + 1)

    n.send([new_message(3, 3, MT.MsgHup)])
    # Node 2 heard from leader 1 zero ticks ago: it ignored 3's vote; node 1 (the leader,
    # in its own lease) too. Node 3 stays candidate at term 2.
    assert (n.peer(3).state, n.peer(3).term) == (StateRole.Candidate, 2)
    assert (b.state, b.term) == (StateRole.Follower, 1)

    # Letting node 2's election_elapsed reach the election timeout ends the lease.
    _tick(b, b.election_timeout)
    assert b.state == StateRole.Follower
    n.send([new_message(3, 3, MT.MsgHup)])
    assert (n.peer(3).state, n.peer(3).term) == (StateRole.Leader, 3)


def test_leader_election_with_check_quorum() -> None:
    """With check quorum, a node can be elected once the voters' leases expired; the old
    leader (kept in office by its own active quorum) is deposed by the new term."""
    n = Network([_cq_raft(1, [1, 2, 3]), _cq_raft(2, [1, 2, 3]), _cq_raft(3, [1, 2, 3])])
    a, b = n.peer(1), n.peer(2)
    # Immediately after creation, votes are cast regardless of the election timeout.
    n.send([new_message(1, 1, MT.MsgHup)])
    assert a.state == StateRole.Leader
    assert n.peer(3).state == StateRole.Follower
    # Randomized timeouts above the election timeout: nobody campaigns by itself.
    a.set_randomized_election_timeout(a.election_timeout + 1)
    b.set_randomized_election_timeout(b.election_timeout + 2)
    # The leader's check at its election timeout finds 2 and 3 active (they acked the
    # first entry): it stays leader. Node 2's lease on leader 1 expires.
    _tick(a, a.election_timeout)
    assert a.state == StateRole.Leader
    _tick(b, b.election_timeout)
    n.send([new_message(3, 3, MT.MsgHup)])
    assert (a.state, a.term) == (StateRole.Follower, 2)
    assert (n.peer(3).state, n.peer(3).term) == (StateRole.Leader, 2)


def test_free_stuck_candidate_with_check_quorum() -> None:
    """A candidate whose term ran ahead while it was cut off answers the old leader's
    heartbeat with its own term, deposing it, after which the candidate can be elected
    (etcd-io/etcd#8501)."""
    n = Network([_cq_raft(1, [1, 2, 3]), _cq_raft(2, [1, 2, 3]), _cq_raft(3, [1, 2, 3])])
    n.send([new_message(1, 1, MT.MsgHup)])
    a, b, c = n.peer(1), n.peer(2), n.peer(3)
    assert a.state == StateRole.Leader
    b.set_randomized_election_timeout(b.election_timeout + 1)

    n.isolate(1)
    n.send([new_message(3, 3, MT.MsgHup)])
    # Node 2 is in its lease on leader 1: it ignores 3, whose election is stuck.
    assert (b.state, b.term) == (StateRole.Follower, 1)
    assert (c.state, c.term) == (StateRole.Candidate, 2)
    # Vote again for safety.
    n.send([new_message(3, 3, MT.MsgHup)])
    assert (b.state, b.term) == (StateRole.Follower, 1)
    assert (c.state, c.term) == (StateRole.Candidate, 3)

    n.recover()
    hb = new_message(1, 3, MT.MsgHeartbeat)
    hb.term = a.term
    n.send([hb])
    # Node 3 answered the stale heartbeat with a MsgAppendResponse at term 3: the leader
    # learns the higher term and steps down, freeing the stuck candidate.
    assert (a.state, a.term, a.leader_id) == (StateRole.Follower, 3, INVALID_ID)
    assert c.term == a.term
    # Node 1 has no lease any more (no leader), so it grants 3's next vote.
    n.send([new_message(3, 3, MT.MsgHup)])
    assert (c.state, c.term) == (StateRole.Leader, 4)


def test_non_promotable_voter_with_check_quorum() -> None:
    """A node that is not in the configuration never campaigns, even with check quorum, and
    follows the leader of the configuration it is not part of."""
    a = _cq_raft(1, [1, 2])
    b = _cq_raft(2, [1])  # node 2's storage does not list itself: it is not promotable
    n = Network([a, b])
    assert not b.promotable
    _tick(b, 2 * b.election_timeout)
    assert (b.state, b.term) == (StateRole.Follower, 0)
    n.send([new_message(1, 1, MT.MsgHup)])
    assert a.state == StateRole.Leader
    assert b.state == StateRole.Follower
    assert b.leader_id == 1


def _disruptive_cluster(pre_vote: bool) -> Network:
    peers = []
    for id in (1, 2, 3):
        r = new_test_raft_with_prevote(id, [1, 2, 3], 10, 1, pre_vote=pre_vote)
        r.check_quorum = True
        r.become_follower(1, INVALID_ID)
        peers.append(r)
    n = Network(peers)
    n.send([new_message(1, 1, MT.MsgHup)])
    assert [n.peer(i).state for i in (1, 2, 3)] == [
        StateRole.Leader,
        StateRole.Follower,
        StateRole.Follower,
    ]
    return n


def test_disruptive_follower() -> None:
    """Without pre-vote, a follower whose election timer fires just before the leader's
    heartbeat arrives becomes a candidate at a higher term; it answers the (now lower-term)
    heartbeat with its term, and the leader steps down."""
    n = _disruptive_cluster(pre_vote=False)
    n1, n2, n3 = n.peer(1), n.peer(2), n.peer(3)
    # The last election tick elapses before any message from the leader reaches n3
    # (e.g. delayed leader messages, or etcd's advanceTicksForElection on restart).
    n3.set_randomized_election_timeout(n3.election_timeout + 2)
    _tick(n3, n3.randomized_election_timeout - 1)
    assert n3.state == StateRole.Follower
    n3.tick()
    assert [r.state for r in (n1, n2, n3)] == [StateRole.Leader, StateRole.Follower, StateRole.Candidate]
    assert [r.term for r in (n1, n2, n3)] == [2, 2, 3]
    # While n3's vote requests are still queued, the leader's heartbeat arrives at the lower
    # term 2. n3 answers with MsgAppendResponse at term 3; its queued vote requests are
    # ignored by n1 and n2, both still in their lease.
    hb = new_message(1, 3, MT.MsgHeartbeat)
    hb.term = n1.term
    n.send([hb])
    assert [r.state for r in (n1, n2, n3)] == [StateRole.Follower, StateRole.Follower, StateRole.Candidate]
    assert [r.term for r in (n1, n2, n3)] == [3, 2, 3]


def test_disruptive_follower_pre_vote() -> None:
    """With pre-vote, a lagging follower's election never leaves the pre-vote round (the
    voters are in their lease and its log is behind), its term does not move, and the
    leader's delayed heartbeat just turns it back into a follower."""
    n = _disruptive_cluster(pre_vote=True)
    n1, n2, n3 = n.peer(1), n.peer(2), n.peer(3)
    n.isolate(3)
    for _ in range(3):
        n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.recover()
    n.send([new_message(3, 3, MT.MsgHup)])
    assert [r.state for r in (n1, n2, n3)] == [StateRole.Leader, StateRole.Follower, StateRole.PreCandidate]
    assert [r.term for r in (n1, n2, n3)] == [2, 2, 2]
    hb = new_message(1, 3, MT.MsgHeartbeat)
    hb.term = n1.term
    n.send([hb])
    assert n1.state == StateRole.Leader
    assert (n3.state, n3.term, n3.leader_id) == (StateRole.Follower, 2, 1)


def test_add_node_check_quorum() -> None:
    """A node added just before the quorum check counts as active for that check (it had no
    chance to answer), but not for the next one."""
    r = _cq_raft(1, [1])
    r.become_candidate()
    r.become_leader()
    _tick(r, r.election_timeout - 1)
    r.apply_conf_change(into_v2(_add_node(2)))
    # This tick reaches the election timeout and runs the quorum check.
    r.tick()
    assert r.state == StateRole.Leader
    # Another election timeout without hearing from node 2: 1 of 2 voters is no quorum.
    _tick(r, r.election_timeout - 1)
    assert r.state == StateRole.Leader
    r.tick()
    assert r.state == StateRole.Follower


# -- pre-vote ----------------------------------------------------------------------------


def _prevote_cluster(pre_votes: tuple[bool, bool, bool] = (True, True, True)) -> Network:
    peers = []
    for id, pv in zip((1, 2, 3), pre_votes, strict=True):
        r = new_test_raft_with_prevote(id, [1, 2, 3], 10, 1, pre_vote=pv)
        r.become_follower(1, INVALID_ID)
        peers.append(r)
    return Network(peers)


def test_node_with_smaller_term_can_complete_election() -> None:
    """A pre-candidate stuck at a lower term learns the cluster's term from a pre-vote
    rejection (etcd-io/etcd#8243) and can then vote, so an election completes."""
    n = _prevote_cluster()
    n1, n2, n3 = n.peer(1), n.peer(2), n.peer(3)
    n.cut(1, 3)
    n.cut(2, 3)
    n.send([new_message(1, 1, MT.MsgHup)])
    assert (n1.state, n2.state) == (StateRole.Leader, StateRole.Follower)
    n.send([new_message(3, 3, MT.MsgHup)])
    assert (n3.state, n3.term) == (StateRole.PreCandidate, 1)
    # Node 2 pre-campaigns for term 3: node 1 (no check quorum) grants the pre-vote since
    # 2's log is as up to date; the real vote deposes node 1.
    n.send([new_message(2, 2, MT.MsgHup)])
    assert [r.term for r in (n1, n2, n3)] == [3, 3, 1]
    assert [r.state for r in (n1, n2, n3)] == [StateRole.Follower, StateRole.Leader, StateRole.PreCandidate]

    # Recover, then cut off the leader 2 (as if it crashed).
    n.recover()
    n.cut(2, 1)
    n.cut(2, 3)
    # Node 3's pre-vote for term 2 reaches node 1 at term 3: rejected with term 3, which
    # makes node 3 a follower at term 3.
    n.send([new_message(3, 3, MT.MsgHup)])
    assert (n3.state, n3.term) == (StateRole.Follower, 3)
    # Node 1's log is longer than node 3's: node 3 grants its (pre-)votes.
    n.send([new_message(1, 1, MT.MsgHup)])
    assert (n1.state, n1.term) == (StateRole.Leader, 4)
    assert (n3.state, n3.term, n3.leader_id) == (StateRole.Follower, 4, 1)


def test_prevote_with_split_vote() -> None:
    """Two pre-candidates grant each other's pre-votes (a pre-vote for a future term does
    not bind), both become candidates at term 3 and split the vote; the next one to time
    out wins at term 4."""
    n = _prevote_cluster()
    n.send([new_message(1, 1, MT.MsgHup)])
    n.isolate(1)
    n.send([new_message(2, 2, MT.MsgHup), new_message(3, 3, MT.MsgHup)])
    n2, n3 = n.peer(2), n.peer(3)
    assert (n2.term, n3.term) == (3, 3)
    assert (n2.state, n3.state) == (StateRole.Candidate, StateRole.Candidate)
    n.send([new_message(2, 2, MT.MsgHup)])
    assert (n2.term, n3.term) == (4, 4)
    assert (n2.state, n3.state) == (StateRole.Leader, StateRole.Follower)


def _prevote_migration_cluster() -> Network:
    """Nodes 1 and 2 use pre-vote, node 3 not (a rolling upgrade). Node 3 is cut off and
    campaigns twice: it ends a Candidate at term 4 with a shorter log; then it enables
    pre-vote and the network heals."""
    n = _prevote_cluster((True, True, False))
    n.send([new_message(1, 1, MT.MsgHup)])
    n.isolate(3)
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.send([new_message(3, 3, MT.MsgHup)])
    n.send([new_message(3, 3, MT.MsgHup)])
    n1, n2, n3 = n.peer(1), n.peer(2), n.peer(3)
    assert [r.state for r in (n1, n2, n3)] == [StateRole.Leader, StateRole.Follower, StateRole.Candidate]
    assert [r.term for r in (n1, n2, n3)] == [2, 2, 4]
    assert (n1.raft_log.last_index(), n3.raft_log.last_index()) == (2, 1)
    n3.pre_vote = True
    n.recover()
    return n


def test_prevote_migration_can_complete_election() -> None:
    """The leader goes down; node 3 (term 4, short log) and node 2 (term 2, long log) both
    campaign with pre-vote. Node 2 learns term 4 from node 3's rejection; node 3's own
    pre-vote is refused for its short log. Then node 2 wins."""
    n = _prevote_migration_cluster()
    n2, n3 = n.peer(2), n.peer(3)
    n.isolate(1)
    n.send([new_message(3, 3, MT.MsgHup)])
    n.send([new_message(2, 2, MT.MsgHup)])
    assert (n2.state, n2.term) == (StateRole.Follower, 4)
    assert (n3.state, n3.term) == (StateRole.PreCandidate, 4)
    n.send([new_message(3, 3, MT.MsgHup)])
    n.send([new_message(2, 2, MT.MsgHup)])
    assert (n2.state, n2.term) == (StateRole.Leader, 5)
    assert (n3.state, n3.term, n3.leader_id) == (StateRole.Follower, 5, 2)


def test_prevote_migration_with_free_stuck_pre_candidate() -> None:
    """Node 3 (term 4, short log) is stuck pre-campaigning: the voters reject it at term 2,
    which it ignores as stale. The leader's heartbeat at term 2 is answered with term 4
    (pre_vote is on), which deposes the leader and frees node 3."""
    n = _prevote_migration_cluster()
    n1, n2, n3 = n.peer(1), n.peer(2), n.peer(3)
    for _ in range(2):
        n.send([new_message(3, 3, MT.MsgHup)])
        assert [r.state for r in (n1, n2, n3)] == [StateRole.Leader, StateRole.Follower, StateRole.PreCandidate]
        assert [r.term for r in (n1, n2, n3)] == [2, 2, 4]
    hb = new_message(1, 3, MT.MsgHeartbeat)
    hb.term = n1.term
    n.send([hb])
    assert n1.state == StateRole.Follower
    assert n1.term == n3.term == 4


@pytest.mark.parametrize(
    "state", [StateRole.Follower, StateRole.PreCandidate, StateRole.Candidate, StateRole.Leader]
)
def test_prevote_from_any_state(state: StateRole) -> None:
    """"A pre-vote is granted with no state change": from any role, a pre-vote for a higher
    term with an up-to-date log is granted at the pre-vote's term, while the node's role,
    term and vote stay as they were."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.term = 1
    if state == StateRole.Follower:
        r.become_follower(r.term, 3)
    elif state == StateRole.PreCandidate:
        r.become_pre_candidate()
    elif state == StateRole.Candidate:
        r.become_candidate()
    else:
        r.become_candidate()
        r.become_leader()
    read_messages(r)
    before = (r.state, r.term, r.vote, r.leader_id)
    m = new_message(2, 1, MT.MsgRequestPreVote)
    m.term = r.term + 1
    m.log_term = r.term + 1
    m.index = 42
    r.step(m)
    msgs = read_messages(r)
    assert [(x.msg_type, x.to, x.term, x.reject) for x in msgs] == [
        (MT.MsgRequestPreVoteResponse, 2, r.term + 1, False)
    ]
    assert (r.state, r.term, r.vote, r.leader_id) == before
