"""Tests that read like the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable
Consensus Algorithm", 2014), sections 5.1-5.4. Each test quotes the rule it checks."""

from __future__ import annotations

import pytest

from multiraft.raft import Entry, MessageType, StateRole
from multiraft.testing.network import (
    Interface,
    Network,
    empty_entry,
    hard_state,
    new_entry,
    new_message,
    new_storage,
    new_test_config,
    new_test_raft,
    new_test_raft_with_config,
)

from .conftest import accept_and_reply, commit_noop_entry, persist, read_messages, sorted_msgs

MT = MessageType

# -- §5.1 Raft basics ----------------------------------------------------------------------


@pytest.mark.parametrize("state", [StateRole.Follower, StateRole.Candidate, StateRole.Leader])
def test_update_term_from_message(state: StateRole) -> None:
    """§5.1: "Current terms are exchanged whenever servers communicate; if one server's current
    term is smaller than the other's, then it updates its current term to the larger value. If
    a candidate or leader discovers that its term is out of date, it immediately reverts to
    follower state." """
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    if state == StateRole.Follower:
        r.become_follower(1, 2)
    elif state == StateRole.Candidate:
        r.become_candidate()
    else:
        r.become_candidate()
        r.become_leader()
    m = new_message(2, 1, MT.MsgAppend)
    m.term = 2
    r.step(m)
    assert r.term == 2
    assert r.state == StateRole.Follower
    assert r.leader_id == 2


def test_reject_stale_term_message() -> None:
    """§5.1: "If a server receives a request with a stale term number, it rejects the
    request." The message never reaches the role handler: nothing changes."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.load_state(hard_state(2, 0, 0))
    before = (r.term, r.vote, r.state, r.raft_log.last_index(), r.leader_id)
    for t in (MT.MsgAppend, MT.MsgHeartbeat, MT.MsgRequestVote, MT.MsgSnapshot):
        m = new_message(2, 1, t)
        m.term = 1
        m.log_term = 1
        m.index = 5
        m.entries.append(Entry(term=1, index=6))
        r.step(m)
    assert (r.term, r.vote, r.state, r.raft_log.last_index(), r.leader_id) == before
    assert read_messages(r) == []


# -- §5.2 Leader election ----------------------------------------------------------------


def test_start_as_follower() -> None:
    """§5.2: "When servers start up, they begin as followers." """
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    assert r.state == StateRole.Follower


def test_leader_bcast_beat() -> None:
    """§5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that carry no log entries)
    to all followers in order to maintain their authority." """
    hi = 1
    r = new_test_raft(1, [1, 2, 3], 10, hi)
    r.become_candidate()
    r.become_leader()
    for i in range(10):
        r.append_entry([empty_entry(0, i + 1)])
    read_messages(r)
    for _ in range(hi):
        r.tick()
    msgs = sorted_msgs(read_messages(r))
    assert [(m.msg_type, m.to, m.commit, len(m.entries)) for m in msgs] == [
        (MT.MsgHeartbeat, 2, 0, 0),
        (MT.MsgHeartbeat, 3, 0, 0),
    ]
    assert all(m.term == 1 and m.from_ == 1 for m in msgs)


@pytest.mark.parametrize("state", [StateRole.Follower, StateRole.Candidate])
def test_nonleader_start_election(state: StateRole) -> None:
    """§5.2: "If a follower receives no communication over a period of time called the
    election timeout, then it assumes there is no viable leader and begins an election ... a
    follower increments its current term and transitions to candidate state. It then votes
    for itself and issues RequestVote RPCs in parallel to each of the other servers." A
    candidate whose election times out starts a new one the same way."""
    et = 10
    r = new_test_raft(1, [1, 2, 3], et, 1)
    if state == StateRole.Follower:
        r.become_follower(1, 2)
    else:
        r.become_candidate()
    for _ in range(1, 2 * et):
        r.tick()
    assert r.term == 2
    assert r.state == StateRole.Candidate
    assert r.prs.votes[r.id] is True
    msgs = sorted_msgs(read_messages(r))
    assert [(m.msg_type, m.from_, m.to, m.term) for m in msgs] == [
        (MT.MsgRequestVote, 1, 2, 2),
        (MT.MsgRequestVote, 1, 3, 2),
    ]


@pytest.mark.parametrize(
    "size, votes, state",
    [
        # win the election when receiving votes from a majority of the servers
        (1, {}, StateRole.Leader),
        (3, {2: True, 3: True}, StateRole.Leader),
        (3, {2: True}, StateRole.Leader),
        (5, {2: True, 3: True, 4: True, 5: True}, StateRole.Leader),
        (5, {2: True, 3: True, 4: True}, StateRole.Leader),
        (5, {2: True, 3: True}, StateRole.Leader),
        # return to follower state if it receives vote denial from a majority
        (3, {2: False, 3: False}, StateRole.Follower),
        (5, {2: False, 3: False, 4: False, 5: False}, StateRole.Follower),
        (5, {2: True, 3: False, 4: False, 5: False}, StateRole.Follower),
        # stay in candidate if it does not obtain the majority
        (3, {}, StateRole.Candidate),
        (5, {2: True}, StateRole.Candidate),
        (5, {2: False, 3: False}, StateRole.Candidate),
        (5, {}, StateRole.Candidate),
    ],
)
def test_leader_election_in_one_round_rpc(size: int, votes: dict[int, bool], state: StateRole) -> None:
    """§5.2: "A candidate wins an election if it receives votes from a majority of the servers
    in the full cluster for the same term ... If the election timeout elapses without a
    majority, the candidate stays and starts a new election." """
    r = new_test_raft(1, list(range(1, size + 1)), 10, 1)
    r.step(new_message(1, 1, MT.MsgHup))
    for id, vote in votes.items():
        m = new_message(id, 1, MT.MsgRequestVoteResponse)
        m.term = r.term
        m.reject = not vote
        r.step(m)
    assert r.state == state
    assert r.term == 1


@pytest.mark.parametrize(
    "vote, nvote, wreject",
    [
        (0, 2, False),
        (0, 3, False),
        (2, 2, False),
        (3, 3, False),
        (2, 3, True),
        (3, 2, True),
    ],
)
def test_follower_vote(vote: int, nvote: int, wreject: bool) -> None:
    """§5.2: "Each server will vote for at most one candidate in a given term, on a
    first-come-first-served basis." """
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.load_state(hard_state(1, 0, vote))
    m = new_message(nvote, 1, MT.MsgRequestVote)
    m.term = 1
    m.log_term = 1
    m.index = 1
    r.step(m)
    msgs = read_messages(r)
    assert [(x.msg_type, x.from_, x.to, x.term, x.reject) for x in msgs] == [
        (MT.MsgRequestVoteResponse, 1, nvote, 1, wreject)
    ]


@pytest.mark.parametrize("term", [1, 2])
def test_candidate_fallback(term: int) -> None:
    """§5.2: "While waiting for votes, a candidate may receive an AppendEntries RPC from
    another server claiming to be leader. If the leader's term is at least as large as the
    candidate's current term, then the candidate recognizes the leader as legitimate and
    returns to follower state." """
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.step(new_message(1, 1, MT.MsgHup))
    assert r.state == StateRole.Candidate
    m = new_message(2, 1, MT.MsgAppend)
    m.term = term
    r.step(m)
    assert r.state == StateRole.Follower
    assert r.term == term


@pytest.mark.parametrize("state", [StateRole.Follower, StateRole.Candidate])
def test_nonleader_election_timeout_randomized(state: StateRole) -> None:
    """§5.2: "Raft uses randomized election timeouts ... chosen randomly from a fixed interval"
    — every value of [et, 2et) is used."""
    et = 10
    r = new_test_raft(1, [1, 2, 3], et, 1)
    timeouts: set[int] = set()
    for _ in range(50 * et):
        if state == StateRole.Follower:
            r.become_follower(r.term + 1, 2)
        else:
            r.become_candidate()
        time = 0
        while not read_messages(r):
            r.tick()
            time += 1
        timeouts.add(time)
    assert timeouts == set(range(et, 2 * et))


@pytest.mark.parametrize("state", [StateRole.Follower, StateRole.Candidate])
def test_nonleaders_election_timeout_nonconflict(state: StateRole) -> None:
    """§5.2: randomized timeouts "ensure that split votes are rare": in most rounds only one
    server times out first (at most 30% of rounds see two servers time out on the same tick)."""
    et = 10
    size = 5
    ids = list(range(1, size + 1))
    rs = [
        new_test_raft_with_config(new_test_config(id, et, 1), new_storage(ids), seed=7)
        for id in ids
    ]
    conflicts = 0
    rounds = 1000
    for _ in range(rounds):
        for r in rs:
            if state == StateRole.Follower:
                r.become_follower(r.term + 1, 0)
            else:
                r.become_candidate()
        timeout_num = 0
        while timeout_num == 0:
            for r in rs:
                r.tick()
                if read_messages(r):
                    timeout_num += 1
        if timeout_num > 1:
            conflicts += 1
    assert conflicts / rounds <= 0.3


# -- §5.3 Log replication -----------------------------------------------------------------


def test_leader_start_replication() -> None:
    """§5.3: "When the leader receives a client request, it appends the command to its log as
    a new entry, then issues AppendEntries RPCs in parallel to each of the other servers to
    replicate the entry." The entry is not committed yet."""
    s = new_storage([1, 2, 3])
    r = new_test_raft(1, [1, 2, 3], 10, 1, s)
    r.become_candidate()
    r.become_leader()
    commit_noop_entry(r, s)
    li = r.raft_log.last_index()
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    assert r.raft_log.last_index() == li + 1
    assert r.raft_log.committed == li
    msgs = sorted_msgs(read_messages(r))
    want_entry = new_entry(1, li + 1, b"somedata")
    assert len(msgs) == 2
    for m, to in zip(msgs, (2, 3), strict=True):
        assert (m.msg_type, m.from_, m.to, m.term, m.index, m.log_term, m.commit) == (
            MT.MsgAppend, 1, to, 1, li, 1, li,
        )
        assert list(m.entries) == [want_entry]
    assert r.raft_log.unstable_entries() == [want_entry]


def test_leader_commit_entry() -> None:
    """§5.3: "When the entry has been safely replicated, the leader applies the entry to its
    state machine and returns the result of that execution to the client ... The leader keeps
    track of the highest index it knows to be committed, and it includes that index in future
    AppendEntries RPCs." """
    s = new_storage([1, 2, 3])
    r = new_test_raft(1, [1, 2, 3], 10, 1, s)
    r.become_candidate()
    r.become_leader()
    commit_noop_entry(r, s)
    li = r.raft_log.last_index()
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    for m in read_messages(r):
        r.step(accept_and_reply(m))
    assert r.raft_log.committed == li + 1
    persist(r)
    assert r.raft_log.next_entries() == [new_entry(1, li + 1, b"somedata")]
    msgs = sorted_msgs(read_messages(r))
    assert [(m.msg_type, m.to, m.commit) for m in msgs] == [
        (MT.MsgAppend, 2, li + 1),
        (MT.MsgAppend, 3, li + 1),
    ]


@pytest.mark.parametrize(
    "size, acceptors, wack",
    [
        (1, set(), True),
        (3, set(), False),
        (3, {2}, True),
        (3, {2, 3}, True),
        (5, set(), False),
        (5, {2}, False),
        (5, {2, 3}, True),
        (5, {2, 3, 4}, True),
        (5, {2, 3, 4, 5}, True),
    ],
)
def test_leader_acknowledge_commit(size: int, acceptors: set[int], wack: bool) -> None:
    """§5.3: "A log entry is committed once the leader that created the entry has replicated
    it on a majority of the servers." The leader's own copy counts once it is persisted."""
    s = new_storage(list(range(1, size + 1)))
    r = new_test_raft(1, list(range(1, size + 1)), 10, 1, s)
    r.become_candidate()
    r.become_leader()
    commit_noop_entry(r, s)
    li = r.raft_log.last_index()
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    persist(r)
    for m in read_messages(r):
        if m.to in acceptors:
            r.step(accept_and_reply(m))
    assert (r.raft_log.committed > li) == wack


@pytest.mark.parametrize(
    "tt",
    [
        [],
        [empty_entry(2, 1)],
        [empty_entry(1, 1), empty_entry(2, 2)],
        [empty_entry(1, 1)],
    ],
)
def test_leader_commit_preceding_entries(tt: list[Entry]) -> None:
    """§5.3: "When the leader commits an entry, it also commits all preceding entries in the
    leader's log, including entries created by previous leaders." """
    s = new_storage([1, 2, 3])
    s.wl().append(list(tt))
    r = new_test_raft(1, [1, 2, 3], 10, 1, s)
    r.load_state(hard_state(2, 0, 0))
    r.become_candidate()
    r.become_leader()
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    persist(r)
    for m in read_messages(r):
        r.step(accept_and_reply(m))
    li = len(tt)
    want = [*tt, empty_entry(3, li + 1), new_entry(3, li + 2, b"somedata")]
    assert r.raft_log.next_entries() == want


@pytest.mark.parametrize(
    "ents, commit",
    [
        ([new_entry(1, 1, b"some data")], 1),
        ([new_entry(1, 1, b"some data"), new_entry(1, 2, b"some data2")], 2),
        ([new_entry(1, 1, b"some data2"), new_entry(1, 2, b"some data")], 2),
        ([new_entry(1, 1, b"some data"), new_entry(1, 2, b"some data2")], 1),
    ],
)
def test_follower_commit_entry(ents: list[Entry], commit: int) -> None:
    """§5.3: "Once a follower learns that a log entry is committed, it applies the entry to its
    local state machine (in log order)." """
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.become_follower(1, 2)
    m = new_message(2, 1, MT.MsgAppend)
    m.term = 1
    m.commit = commit
    m.entries.extend(ents)
    r.step(m)
    persist(r)
    assert r.raft_log.committed == commit
    assert r.raft_log.next_entries() == ents[:commit]


_FCMA_ENTS = [empty_entry(1, 1), empty_entry(2, 2)]


@pytest.mark.parametrize(
    "term, index, windex, wreject, wreject_hint, wlogterm",
    [
        # match with committed entries
        (0, 0, 1, False, 0, 0),
        (1, 1, 1, False, 0, 0),
        # match with uncommitted entries
        (2, 2, 2, False, 0, 0),
        # unmatch with existing entry
        (1, 2, 2, True, 1, 1),
        # unexisting entry
        (3, 3, 3, True, 2, 2),
    ],
)
def test_follower_check_msg_append(
    term: int, index: int, windex: int, wreject: bool, wreject_hint: int, wlogterm: int
) -> None:
    """§5.3: "When sending an AppendEntries RPC, the leader includes the index and term of the
    entry in its log that immediately precedes the new entries. If the follower does not find
    an entry in its log with the same index and term, then it refuses the new entries." The
    refusal hints where the logs may agree (fast log rejection)."""
    s = new_storage([1, 2, 3])
    s.wl().append(list(_FCMA_ENTS))
    r = new_test_raft(1, [1, 2, 3], 10, 1, s)
    r.load_state(hard_state(0, 1, 0))
    r.become_follower(2, 2)
    m = new_message(2, 1, MT.MsgAppend)
    m.term = 2
    m.log_term = term
    m.index = index
    r.step(m)
    msgs = read_messages(r)
    assert [
        (x.msg_type, x.from_, x.to, x.term, x.index, x.reject, x.reject_hint, x.log_term)
        for x in msgs
    ] == [(MT.MsgAppendResponse, 1, 2, 2, windex, wreject, wreject_hint, wlogterm)]


@pytest.mark.parametrize(
    "index, term, ents, wents, wunstable",
    [
        (2, 2, [empty_entry(3, 3)], [empty_entry(1, 1), empty_entry(2, 2), empty_entry(3, 3)], [empty_entry(3, 3)]),
        (
            1,
            1,
            [empty_entry(3, 2), empty_entry(4, 3)],
            [empty_entry(1, 1), empty_entry(3, 2), empty_entry(4, 3)],
            [empty_entry(3, 2), empty_entry(4, 3)],
        ),
        (0, 0, [empty_entry(1, 1)], [empty_entry(1, 1), empty_entry(2, 2)], []),
        (0, 0, [empty_entry(3, 1)], [empty_entry(3, 1)], [empty_entry(3, 1)]),
    ],
)
def test_follower_append_entries(
    index: int, term: int, ents: list[Entry], wents: list[Entry], wunstable: list[Entry]
) -> None:
    """§5.3: "If an existing entry conflicts with a new one (same index but different terms),
    delete the existing entry and all that follow it; append any new entries not already in
    the log." """
    s = new_storage([1, 2, 3])
    s.wl().append([empty_entry(1, 1), empty_entry(2, 2)])
    r = new_test_raft(1, [1, 2, 3], 10, 1, s)
    r.become_follower(2, 2)
    m = new_message(2, 1, MT.MsgAppend)
    m.term = 2
    m.log_term = term
    m.index = index
    m.entries.extend(ents)
    r.step(m)
    assert r.raft_log.all_entries() == wents
    assert r.raft_log.unstable_entries() == wunstable


def _e(term: int, index: int) -> Entry:
    return empty_entry(term, index)


_FIG7_LEADER = [_e(1, 1), _e(1, 2), _e(1, 3), _e(4, 4), _e(4, 5), _e(5, 6), _e(5, 7), _e(6, 8), _e(6, 9), _e(6, 10)]


@pytest.mark.parametrize(
    "follower",
    [
        _FIG7_LEADER[:9],
        _FIG7_LEADER[:4],
        [*_FIG7_LEADER, _e(6, 11)],
        [*_FIG7_LEADER, _e(7, 11), _e(7, 12)],
        [_e(1, 1), _e(1, 2), _e(1, 3), _e(4, 4), _e(4, 5), _e(4, 6), _e(4, 7)],
        [_e(1, 1), _e(1, 2), _e(1, 3), _e(2, 4), _e(2, 5), _e(2, 6), _e(3, 7), _e(3, 8), _e(3, 9), _e(3, 10), _e(3, 11)],
    ],
    ids=["a", "b", "c", "d", "e", "f"],
)
def test_leader_sync_follower_log(follower: list[Entry]) -> None:
    """§5.3, Figure 7: "the leader handles inconsistencies by forcing the followers' logs to
    duplicate its own" — each of the six follower logs converges to the leader's."""
    term = 8
    lead_store = new_storage([1, 2, 3])
    lead_store.wl().append(list(_FIG7_LEADER))
    lead = new_test_raft(1, [1, 2, 3], 10, 1, lead_store)
    lead.load_state(hard_state(term, lead.raft_log.last_index(), 0))
    follower_store = new_storage([1, 2, 3])
    follower_store.wl().append(list(follower))
    f = new_test_raft(2, [1, 2, 3], 10, 1, follower_store)
    f.load_state(hard_state(term - 1, 0, 0))
    # A three-node cluster: the follower may have a more up-to-date log than the leader, so
    # the leader needs the vote of the third node.
    n = Network([lead, f, Interface(None)])
    n.send([new_message(1, 1, MT.MsgHup)])
    # The election occurs in the term after the one loaded above.
    m = new_message(3, 1, MT.MsgRequestVoteResponse)
    m.term = term + 1
    n.send([m])
    p = new_message(1, 1, MT.MsgPropose)
    p.entries.append(Entry())
    n.send([p])
    a, b = n.peer(1), n.peer(2)
    assert a.state == StateRole.Leader
    assert [(e.term, e.index) for e in a.raft_log.all_entries()] == [
        (e.term, e.index) for e in b.raft_log.all_entries()
    ]
    assert a.raft_log.committed == b.raft_log.committed == a.raft_log.last_index()


# -- §5.4 Safety --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ents, wterm",
    [([empty_entry(1, 1)], 2), ([empty_entry(1, 1), empty_entry(2, 2)], 3)],
)
def test_vote_request(ents: list[Entry], wterm: int) -> None:
    """§5.4.1: "the RequestVote RPC ... includes information about the candidate's log" — the
    index and term of its last entry."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    m = new_message(2, 1, MT.MsgAppend)
    m.term = wterm - 1
    m.entries.extend(ents)
    r.step(m)
    read_messages(r)
    for _ in range(1, r.election_timeout * 2):
        r.tick_election()
    msgs = sorted_msgs(read_messages(r))
    assert [(x.msg_type, x.to, x.term, x.index, x.log_term) for x in msgs] == [
        (MT.MsgRequestVote, 2, wterm, ents[-1].index, ents[-1].term),
        (MT.MsgRequestVote, 3, wterm, ents[-1].index, ents[-1].term),
    ]


@pytest.mark.parametrize(
    "ents, log_term, index, wreject",
    [
        # same logterm
        ([_e(1, 1)], 1, 1, False),
        ([_e(1, 1)], 1, 2, False),
        ([_e(1, 1), _e(1, 2)], 1, 1, True),
        # candidate higher logterm
        ([_e(1, 1)], 2, 1, False),
        ([_e(1, 1)], 2, 2, False),
        ([_e(1, 1), _e(1, 2)], 2, 1, False),
        # voter higher logterm
        ([_e(2, 1)], 1, 1, True),
        ([_e(2, 1)], 1, 2, True),
        ([_e(2, 1), _e(1, 2)], 1, 1, True),
    ],
)
def test_voter(ents: list[Entry], log_term: int, index: int, wreject: bool) -> None:
    """§5.4.1: "the voter denies its vote if its own log is more up-to-date than that of the
    candidate ... If the logs have last entries with different terms, then the log with the
    later term is more up-to-date. If the logs end with the same term, then whichever log is
    longer is more up-to-date." """
    s = new_storage([1, 2])
    s.wl().append(list(ents))
    r = new_test_raft(1, [1, 2], 10, 1, s)
    m = new_message(2, 1, MT.MsgRequestVote)
    m.term = 3
    m.log_term = log_term
    m.index = index
    r.step(m)
    msgs = read_messages(r)
    assert [(x.msg_type, x.reject) for x in msgs] == [(MT.MsgRequestVoteResponse, wreject)]


@pytest.mark.parametrize("index, wcommit", [(1, 0), (2, 0), (3, 3)])
def test_leader_only_commits_log_from_current_term(index: int, wcommit: int) -> None:
    """§5.4.2: "Raft never commits log entries from previous terms by counting replicas. Only
    log entries from the leader's current term are committed by counting replicas; once an
    entry from the current term has been committed in this way, then all prior entries are
    committed indirectly." (Figure 8; logcabin/logcabin#44)"""
    s = new_storage([1, 2])
    s.wl().append([_e(1, 1), _e(2, 2)])
    r = new_test_raft(1, [1, 2], 10, 1, s)
    r.load_state(hard_state(2, 0, 0))
    # Become leader at term 3.
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    # Propose an entry of the current term.
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    persist(r)
    m = new_message(2, 1, MT.MsgAppendResponse)
    m.term = r.term
    m.index = index
    r.step(m)
    assert r.raft_log.committed == wcommit


def test_same_seed_same_trace() -> None:
    """Randomness is injected: the same seed gives the same message trace."""

    def trace(seed: int) -> list[tuple[int, ...]]:
        cfg = new_test_config(0, 10, 1)
        n = Network([None, None, None, None, None], cfg, seed=seed)
        for _ in range(60):
            for id in n.peers:
                n.peer(id).tick()
            n.send(n.read_messages())
        leader = next(id for id in n.peers if n.peer(id).state == StateRole.Leader)
        n.drop(leader, (leader % 5) + 1, 0.5)
        for _ in range(20):
            n.send([new_message(leader, leader, MT.MsgPropose, 1)])
            for id in n.peers:
                n.peer(id).tick()
            n.send(n.read_messages())
        return list(n.trace)

    a, b = trace(11), trace(11)
    assert a == b and len(a) > 50
    assert trace(12) != a

