"""Election scenarios (raft-rs test_raft.rs ★ election cases, re-derived)."""

from __future__ import annotations

import pytest

from multiraft.raft import ConfState, HardState, MemStorage, MessageType, StateRole
from multiraft.raft.raft import Raft
from multiraft.raft.util import INVALID_ID
from multiraft.testing.network import (
    Interface,
    Network,
    empty_entry,
    ents_with_config,
    new_message,
    new_test_config,
    new_test_raft,
    new_test_raft_with_config,
    voted_with_config,
)

from .conftest import read_messages

MT = MessageType


def _nop() -> Interface:
    return Interface(None)


@pytest.mark.parametrize("pre_vote", [False, True])
@pytest.mark.parametrize(
    "case",
    [
        "3/3", "2of3", "2of4", "3of5", "1of3", "longer_logs",
    ],
)
def test_leader_election(pre_vote: bool, case: str) -> None:
    """A majority elects a leader; a minority stays candidate (pre-candidate at term 0 with
    pre-vote); peers with longer logs of the same term refuse."""
    cfg = new_test_config(0, 10, 1)
    cfg.pre_vote = pre_vote
    candidate_state = StateRole.PreCandidate if pre_vote else StateRole.Candidate
    candidate_term = 0 if pre_vote else 1
    if case == "3/3":
        n, state, term = Network([None, None, None], cfg), StateRole.Leader, 1
    elif case == "2of3":
        n, state, term = Network([None, None, _nop()], cfg), StateRole.Leader, 1
    elif case == "2of4":
        n, state, term = Network([None, _nop(), _nop(), None], cfg), candidate_state, candidate_term
    elif case == "3of5":
        n, state, term = Network([None, _nop(), _nop(), None, None], cfg), StateRole.Leader, 1
    elif case == "1of3":
        n, state, term = Network([None, _nop(), _nop()], cfg), candidate_state, candidate_term
    else:
        # Three peers with logs [t1], [t1], [t1, t1]: node 1's log is shorter, so node 4 and
        # 5 (longer logs) refuse it; it becomes a follower at term 1.
        n = Network(
            [
                None,
                ents_with_config([1], pre_vote, 2),
                ents_with_config([1], pre_vote, 3),
                ents_with_config([1, 1], pre_vote, 4),
                None,
            ],
            cfg,
        )
        state, term = StateRole.Follower, 1
    n.send([new_message(1, 1, MT.MsgHup)])
    r = n.peer(1)
    assert r.state == state
    assert r.term == term


@pytest.mark.parametrize("pre_vote", [False, True])
def test_leader_cycle(pre_vote: bool) -> None:
    """Each node can be elected in turn, in a cluster whose logs are all equal."""
    cfg = new_test_config(0, 10, 1)
    cfg.pre_vote = pre_vote
    n = Network([None, None, None], cfg)
    for campaigner in (1, 2, 3):
        n.send([new_message(campaigner, campaigner, MT.MsgHup)])
        for id in n.peers:
            sm = n.peer(id)
            if id == campaigner:
                assert sm.state == StateRole.Leader
            else:
                assert sm.state == StateRole.Follower


def test_leader_election_overwrite_newer_logs() -> None:
    """A node with an entry of a newer (but uncommitted) term can lose the election and have
    that entry overwritten (five nodes; the Figure 8 setup)."""
    cfg = new_test_config(0, 10, 1)
    # n1 [t1], n2 [t1], n3 [t2], n4 and n5 voted for 3 at term 2.
    peers: list[Raft[MemStorage]] = []
    for id, terms in ((1, [1]), (2, [1]), (3, [2])):
        s = MemStorage.new_with_conf_state(ConfState(voters=[1, 2, 3, 4, 5]))
        s.wl().append([empty_entry(t, i) for i, t in enumerate(terms, 1)])
        c = new_test_config(id, 10, 1)
        r = new_test_raft_with_config(c, s)
        r.load_state(HardState(term=terms[-1]))
        peers.append(r)
    for id in (4, 5):
        s = MemStorage.new_with_conf_state(ConfState(voters=[1, 2, 3, 4, 5]))
        s.wl().set_hardstate(HardState(term=2, vote=3))
        peers.append(new_test_raft_with_config(new_test_config(id, 10, 1), s))
    n = Network(peers, cfg)
    # Node 1 campaigns. The election fails because a quorum of nodes know about the election
    # that already happened at term 2; node 1's term is pushed ahead to 2.
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == StateRole.Follower
    assert n.peer(1).term == 2
    # Node 1 campaigns again with a higher term. This time it succeeds.
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == StateRole.Leader
    assert n.peer(1).term == 3
    # Now all nodes agree on a log entry with term 1 at index 1 (and term 3 at index 2).
    for id in n.peers:
        ents = n.peer(id).raft_log.all_entries()
        assert [(e.term, e.index) for e in ents] == [(1, 1), (3, 2)], id


@pytest.mark.parametrize("vt", [MT.MsgRequestVote, MT.MsgRequestPreVote])
@pytest.mark.parametrize("state", [StateRole.Follower, StateRole.Candidate, StateRole.PreCandidate, StateRole.Leader])
def test_vote_from_any_state(vt: int, state: StateRole) -> None:
    """A higher-term vote is granted from any role (the node becomes a follower that voted for
    the candidate); a pre-vote is granted without any state change."""
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
    orig_term = r.term
    new_term = r.term + 1
    m = new_message(2, 1, vt)
    m.term = new_term
    m.log_term = new_term
    m.index = 42
    r.step(m)
    msgs = read_messages(r)
    assert len(msgs) == 1
    resp = msgs[0]
    assert resp.msg_type == (MT.MsgRequestVoteResponse if vt == MT.MsgRequestVote else MT.MsgRequestPreVoteResponse)
    assert not resp.reject
    if vt == MT.MsgRequestVote:
        # If this was a real vote, we reset our state and term.
        assert r.state == StateRole.Follower
        assert r.term == new_term
        assert r.vote == 2
    else:
        # In a pre-vote, nothing changes.
        assert r.state == state
        assert r.term == orig_term
        # If state was Follower or PreCandidate, the vote is still empty; Candidate and Leader
        # voted for themselves.
        assert r.vote in (INVALID_ID, 1)


@pytest.mark.parametrize("pre_vote", [False, True])
def test_dueling_candidates(pre_vote: bool) -> None:
    """With 1 and 3 cut apart, 1 wins (3 stays candidate); after healing, 3's campaign bumps
    every term but loses (its log is shorter). With pre-vote, the leader is never disrupted."""
    cfg = new_test_config(0, 10, 1)
    cfg.pre_vote = pre_vote
    n = Network([None, None, None], cfg)
    n.cut(1, 3)
    n.send([new_message(1, 1, MT.MsgHup)])
    n.send([new_message(3, 3, MT.MsgHup)])
    # 1 becomes leader since it receives votes from 1 and 2.
    assert n.peer(1).state == StateRole.Leader
    # Without pre-vote, 3 stays candidate: it has its own vote and a rejection from 2. With
    # pre-vote, 2's rejection carries term 1, above 3's term 0: 3 becomes a follower at term 1.
    if pre_vote:
        assert (n.peer(3).state, n.peer(3).term) == (StateRole.Follower, 1)
    else:
        assert (n.peer(3).state, n.peer(3).term) == (StateRole.Candidate, 1)
    n.recover()
    # Candidate 3 now increases its term and tries to vote again; we expect it to disrupt the
    # leader 1 (without pre-vote) since it has a higher term. 3 is refused because its log is
    # shorter than 1's and 2's.
    n.send([new_message(3, 3, MT.MsgHup)])
    if pre_vote:
        assert n.peer(1).state == StateRole.Leader and n.peer(1).term == 1
        assert n.peer(3).state == StateRole.Follower and n.peer(3).term == 1
    else:
        for id, state, term in ((1, StateRole.Follower, 2), (2, StateRole.Follower, 2), (3, StateRole.Follower, 2)):
            assert (n.peer(id).state, n.peer(id).term) == (state, term)
    for id in (1, 2):
        assert [(e.term, e.index) for e in n.peer(id).raft_log.all_entries()] == [(1, 1)]
    assert n.peer(3).raft_log.all_entries() == []


@pytest.mark.parametrize("pre_vote", [False, True])
def test_single_node_candidate(pre_vote: bool) -> None:
    """A single voter wins its election at once."""
    cfg = new_test_config(0, 10, 1)
    cfg.pre_vote = pre_vote
    n = Network([None], cfg)
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == StateRole.Leader


def test_old_messages() -> None:
    """An append from an older term is ignored: the log keeps only the current leader's
    entries."""
    n = Network([None, None, None])
    # Make 1 leader @ term 3.
    n.send([new_message(1, 1, MT.MsgHup)])
    n.send([new_message(2, 2, MT.MsgHup)])
    n.send([new_message(1, 1, MT.MsgHup)])
    # Pretend we're an old leader trying to make progress; this entry is expected to be
    # ignored.
    m = new_message(2, 1, MT.MsgAppend)
    m.term = 2
    m.entries.append(empty_entry(2, 3))
    n.send([m])
    # Commit a new entry.
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    for id in n.peers:
        ents = n.peer(id).raft_log.all_entries()
        assert [(e.term, e.index, e.data) for e in ents] == [
            (1, 1, b""),
            (2, 2, b""),
            (3, 3, b""),
            (3, 4, b"somedata"),
        ]
        assert n.peer(id).raft_log.committed == 4


@pytest.mark.parametrize("msg_type", [MT.MsgRequestVote, MT.MsgRequestPreVote])
@pytest.mark.parametrize(
    "state, index, log_term, vote_for, wreject",
    [
        (StateRole.Follower, 0, 0, INVALID_ID, True),
        (StateRole.Follower, 0, 1, INVALID_ID, True),
        (StateRole.Follower, 0, 2, INVALID_ID, True),
        (StateRole.Follower, 0, 3, INVALID_ID, False),
        (StateRole.Follower, 1, 0, INVALID_ID, True),
        (StateRole.Follower, 1, 1, INVALID_ID, True),
        (StateRole.Follower, 1, 2, INVALID_ID, True),
        (StateRole.Follower, 1, 3, INVALID_ID, False),
        (StateRole.Follower, 2, 0, INVALID_ID, True),
        (StateRole.Follower, 2, 1, INVALID_ID, True),
        (StateRole.Follower, 2, 2, INVALID_ID, False),
        (StateRole.Follower, 2, 3, INVALID_ID, False),
        (StateRole.Follower, 3, 0, INVALID_ID, True),
        (StateRole.Follower, 3, 1, INVALID_ID, True),
        (StateRole.Follower, 3, 2, INVALID_ID, False),
        (StateRole.Follower, 3, 3, INVALID_ID, False),
        (StateRole.Follower, 3, 2, 2, False),
        (StateRole.Follower, 3, 2, 1, True),
        (StateRole.Leader, 3, 3, 1, True),
        (StateRole.PreCandidate, 3, 3, 1, True),
        (StateRole.Candidate, 3, 3, 1, True),
    ],
)
def test_recv_msg_request_vote(
    msg_type: int, state: StateRole, index: int, log_term: int, vote_for: int, wreject: bool
) -> None:
    """The vote table: reject unless the candidate's log is up to date and this node has not
    voted for someone else in the term."""
    s = MemStorage.new_with_conf_state(ConfState(voters=[1, 2]))
    s.wl().append([empty_entry(2, 1), empty_entry(2, 2)])
    sm = new_test_raft(1, [1], 10, 1, s)
    sm.state = state
    sm.vote = vote_for
    term = max(sm.raft_log.last_term(), log_term)
    sm.term = term
    m = new_message(2, 1, msg_type)
    m.term = term
    m.log_term = log_term
    m.index = index
    sm.step(m)
    msgs = read_messages(sm)
    assert len(msgs) == 1
    assert msgs[0].msg_type == (
        MT.MsgRequestVoteResponse if msg_type == MT.MsgRequestVote else MT.MsgRequestPreVoteResponse
    )
    assert msgs[0].reject == wreject


@pytest.mark.parametrize(
    "from_, to, wallow, wterm, wlead",
    [
        (StateRole.Follower, StateRole.Follower, True, 1, INVALID_ID),
        (StateRole.Follower, StateRole.PreCandidate, True, 0, INVALID_ID),
        (StateRole.Follower, StateRole.Candidate, True, 1, INVALID_ID),
        (StateRole.Follower, StateRole.Leader, False, 0, INVALID_ID),
        (StateRole.PreCandidate, StateRole.Follower, True, 0, INVALID_ID),
        (StateRole.PreCandidate, StateRole.PreCandidate, True, 0, INVALID_ID),
        (StateRole.PreCandidate, StateRole.Candidate, True, 1, INVALID_ID),
        (StateRole.PreCandidate, StateRole.Leader, True, 0, 1),
        (StateRole.Candidate, StateRole.Follower, True, 0, INVALID_ID),
        (StateRole.Candidate, StateRole.PreCandidate, True, 0, INVALID_ID),
        (StateRole.Candidate, StateRole.Candidate, True, 1, INVALID_ID),
        (StateRole.Candidate, StateRole.Leader, True, 0, 1),
        (StateRole.Leader, StateRole.Follower, True, 1, INVALID_ID),
        (StateRole.Leader, StateRole.PreCandidate, False, 0, INVALID_ID),
        (StateRole.Leader, StateRole.Candidate, False, 1, INVALID_ID),
        (StateRole.Leader, StateRole.Leader, True, 0, 1),
    ],
)
def test_state_transition(from_: StateRole, to: StateRole, wallow: bool, wterm: int, wlead: int) -> None:
    """Legal and illegal `become_*` transitions (illegal ones are assertion failures)."""
    sm = new_test_raft(1, [1], 10, 1)
    sm.state = from_
    try:
        if to == StateRole.Follower:
            sm.become_follower(wterm, wlead)
        elif to == StateRole.PreCandidate:
            sm.become_pre_candidate()
        elif to == StateRole.Candidate:
            sm.become_candidate()
        else:
            sm.become_leader()
    except AssertionError:
        assert not wallow
        return
    assert wallow
    assert sm.term == wterm
    assert sm.leader_id == wlead


@pytest.mark.parametrize("state", [StateRole.Follower, StateRole.Candidate, StateRole.PreCandidate, StateRole.Leader])
@pytest.mark.parametrize("msg_type", [MT.MsgRequestVote, MT.MsgAppend])
def test_all_server_stepdown(state: StateRole, msg_type: int) -> None:
    """Any role receiving a higher-term vote or append becomes a follower at that term; only
    an append sets the leader."""
    tterm = 3
    sm = new_test_raft(1, [1, 2, 3], 10, 1)
    if state == StateRole.Follower:
        sm.become_follower(1, INVALID_ID)
    elif state == StateRole.PreCandidate:
        sm.become_pre_candidate()
    elif state == StateRole.Candidate:
        sm.become_candidate()
    else:
        sm.become_candidate()
        sm.become_leader()
    m = new_message(2, 1, msg_type)
    m.term = tterm
    m.log_term = tterm
    sm.step(m)
    assert sm.state == StateRole.Follower
    assert sm.term == tterm
    assert sm.raft_log.last_index() == (0 if state != StateRole.Leader else 1)
    assert len(sm.raft_log.all_entries()) == (0 if state != StateRole.Leader else 1)
    assert sm.leader_id == (2 if msg_type == MT.MsgAppend else INVALID_ID)


@pytest.mark.parametrize("mt", [MT.MsgHeartbeat, MT.MsgAppend])
def test_candidate_reset_term(mt: int) -> None:
    """An isolated candidate with an inflated term adopts the leader's term when it hears from
    it (here: the leader's append or heartbeat at the candidate's term after the leader's term
    was raised by the candidate's vote request)."""
    a = new_test_raft(1, [1, 2, 3], 10, 1)
    b = new_test_raft(2, [1, 2, 3], 10, 1)
    c = new_test_raft(3, [1, 2, 3], 10, 1)
    n = Network([a, b, c])
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == StateRole.Leader
    assert n.peer(2).state == StateRole.Follower
    assert n.peer(3).state == StateRole.Follower
    # Isolate 3 and increase its term.
    n.isolate(3)
    n.send([new_message(2, 2, MT.MsgHup)])
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == StateRole.Leader
    assert n.peer(2).state == StateRole.Follower
    # Trigger campaign in isolated c.
    c3 = n.peer(3)
    c3.reset_randomized_election_timeout()
    for _ in range(c3.randomized_election_timeout):
        c3.tick()
    n.send(n.read_messages())
    assert c3.state == StateRole.Candidate
    n.recover()
    # Leader sends to the isolated candidate and expects it to convert to follower.
    m = new_message(1, 3, mt)
    m.term = n.peer(1).term
    n.send([m])
    assert c3.state == StateRole.Follower
    # The follower c's term is reset with the leader's.
    assert n.peer(1).term == c3.term


def test_single_node_pre_candidate_and_voted_helper() -> None:
    cfg = new_test_config(0, 10, 1)
    cfg.pre_vote = True
    n = Network([None], cfg)
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == StateRole.Leader
    r = voted_with_config(3, 2, id=1)
    assert (r.vote, r.term) == (3, 2)
