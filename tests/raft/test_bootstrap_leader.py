"""Leading the bootstrap term unelected (`RawNode.lead_at_bootstrap`): every voter's first
durable state is (term, vote = the designated voter), so the designated voter may lead that
term without a single vote message, nobody else can win it, and a restart keeps the vote.

MULTIRAFT_SIM_SEEDS=N also scales the simulator seeds run from such a bootstrap (default 300:
60 of them here)."""

from __future__ import annotations

import os
import random

import pytest

from multiraft.raft import (
    Config,
    HardState,
    MemStorage,
    Message,
    MessageType,
    RawNode,
    StateRole,
)
from multiraft.testing.network import new_snapshot, new_test_config
from multiraft.testing.simulator import SimulationFailure, Simulator, check_seed

MT = MessageType
SEEDS = max(1, int(os.environ.get("MULTIRAFT_SIM_SEEDS", "300")) // 5)
CHUNK = 10
_CHUNKS = [(lo, min(lo + CHUNK, SEEDS)) for lo in range(0, SEEDS, CHUNK)]


def _storage(vote: int, term: int = 2) -> MemStorage:
    """A voter of {1, 2, 3} bootstrapped at (index 1, term 1) with its bootstrap vote."""
    s = MemStorage()
    s.wl().apply_snapshot(new_snapshot(1, 1, [1, 2, 3]))
    s.wl().set_hardstate(HardState(term=term, vote=vote, commit=1))
    return s


def _node(id: int, s: MemStorage, cfg: Config | None = None) -> RawNode[MemStorage]:
    return RawNode(cfg or new_test_config(id, 10, 1), s, rng=random.Random(id))


def test_the_designated_voter_leads_its_term_with_no_vote_message() -> None:
    node = _node(1, _storage(vote=1))
    assert node.lead_at_bootstrap()
    assert node.raft.state == StateRole.Leader and node.raft.term == 2
    rd = node.ready()
    assert rd.hs is None  # unchanged: the bootstrap persisted (2, vote 1) already
    assert [(e.index, e.term) for e in rd.entries] == [(2, 2)]
    sent = [m.msg_type for m in rd.messages]
    assert sent == [MT.MsgAppend, MT.MsgAppend]
    assert not node.lead_at_bootstrap()  # a leader already


@pytest.mark.parametrize("vote", [0, 2])
def test_only_a_voter_that_voted_for_itself_may(vote: int) -> None:
    node = _node(1, _storage(vote=vote))
    assert not node.lead_at_bootstrap()
    assert node.raft.state == StateRole.Follower and node.raft.term == 2


def test_a_learner_or_a_non_member_may_not() -> None:
    s = MemStorage()
    snap = new_snapshot(1, 1, [1, 2])
    snap.metadata.conf_state.learners.append(3)
    s.wl().apply_snapshot(snap)
    s.wl().set_hardstate(HardState(term=2, vote=3, commit=1))
    assert not _node(3, s).lead_at_bootstrap()
    assert not _node(4, _storage(vote=4)).lead_at_bootstrap()


def test_refused_once_the_log_holds_an_entry_of_the_term() -> None:
    """A restarted leader of the term (its first entry durable) does not lead it again."""
    s = _storage(vote=1)
    node = _node(1, s)
    assert node.lead_at_bootstrap()
    rd = node.ready()
    s.wl().append(rd.entries)
    again = _node(1, s)
    assert not again.lead_at_bootstrap()
    assert again.raft.state == StateRole.Follower


def _vote_request(frm: int, term: int) -> Message:
    return Message(msg_type=MT.MsgRequestVote, from_=frm, to=2, term=term, index=1, log_term=1)


def test_the_others_refuse_another_candidate_at_that_term_also_after_a_restart() -> None:
    s = _storage(vote=1)
    follower = _node(2, s)
    follower.step(_vote_request(3, 2))
    rd = follower.ready()
    [resp] = rd.persisted_messages
    assert resp.msg_type == MT.MsgRequestVoteResponse and resp.reject
    # Restarted from its storage: the vote is still there.
    again = _node(2, s)
    assert again.raft.vote == 1
    again.step(_vote_request(3, 2))
    [resp] = again.ready().persisted_messages
    assert resp.reject
    # A candidate of a later term is ordinary raft: granted.
    again.step(_vote_request(3, 3))
    [resp] = again.ready().persisted_messages
    assert resp.msg_type == MT.MsgRequestVoteResponse and not resp.reject and resp.term == 3


def test_the_others_follow_the_designated_leaders_first_append() -> None:
    leader = _node(1, _storage(vote=1))
    follower = _node(2, _storage(vote=1))
    assert leader.lead_at_bootstrap()
    [app] = [m for m in leader.ready().messages if m.to == 2]
    follower.step(app)
    assert follower.raft.leader_id == 1 and follower.raft.term == 2
    assert follower.raft.state == StateRole.Follower


def test_without_the_designated_voter_the_others_elect_at_a_later_term() -> None:
    node = _node(2, _storage(vote=1))
    node.campaign()
    rd = node.ready()
    assert node.raft.state == StateRole.Candidate and node.raft.term == 3
    assert rd.hs == HardState(term=3, vote=2, commit=1)


@pytest.mark.parametrize("lo, hi", _CHUNKS, ids=[f"seeds-{lo}-{hi - 1}" for lo, hi in _CHUNKS])
def test_simulated_runs_from_such_a_bootstrap_are_safe(lo: int, hi: int) -> None:
    """The randomized simulator (crashes, restarts, partitions, campaigns, transfers,
    membership changes) checks Election Safety and the rest after every step."""
    for seed in range(lo, hi):
        check_seed(seed, bootstrap_leader=True)


def test_the_checker_catches_a_second_unelected_leader() -> None:
    """The harness has teeth: a second voter leading the same term (its vote forged) is
    an Election Safety violation."""
    sim = Simulator(1, bootstrap_leader=True)
    other = next(n for n in sim.options.voters if n != sim.options.voters[0])
    raft = sim.nodes[other].node().raft
    raft.vote = other
    assert raft.lead_at_bootstrap()
    with pytest.raises(SimulationFailure):
        sim.run(5)
