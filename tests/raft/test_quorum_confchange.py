"""Data-driven tables for quorum/ and confchange/ (testdata/*.txt, etcd/raft-rs style), and
hypothesis properties comparing the optimized quorum code with naive oracles."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.confchange import Changer
from multiraft.raft.confchange.conf_change import parse_conf_change, stringify_conf_change
from multiraft.raft.errors import ConfChangeError
from multiraft.raft.quorum import Index, JointConfig, MajorityConfig, VoteResult
from multiraft.raft.tracker import ProgressTracker
from multiraft.raft.util import NO_LIMIT
from multiraft.testing.datadriven import TestData, run_file

TESTDATA = Path(__file__).parent / "testdata"


class _Acks:
    def __init__(self, acks: dict[int, Index]) -> None:
        self.acks = acks

    def acked_index(self, voter_id: int) -> Index | None:
        return self.acks.get(voter_id)


def _ids(td: TestData) -> tuple[list[int], list[int]]:
    cfg = [int(x) for x in td.args.get("cfg", [])]
    cfgj = [int(x) for x in td.args.get("cfgj", [])]
    return cfg, cfgj


def _quorum_handler(td: TestData) -> str:
    cfg, cfgj = _ids(td)
    # Values are given per id in order of first appearance in cfg, then cfgj.
    order = list(dict.fromkeys([*cfg, *cfgj]))
    joint = td.has("cfgj")
    if td.cmd == "committed":
        idxs = td.args.get("idx", [])
        groups = td.args.get("group", [])
        acks: dict[int, Index] = {}
        for i, id in enumerate(order):
            if idxs[i] != "_":
                acks[id] = Index(int(idxs[i]), int(groups[i]) if groups else 0)
        use_group = bool(groups)
        if joint:
            idx, gc = JointConfig(cfg, cfgj).committed_index(use_group, _Acks(acks))
        else:
            idx, gc = MajorityConfig(cfg).committed_index(use_group, _Acks(acks))
        text = "∞" if idx == NO_LIMIT else str(idx)
        return text + (" group" if gc and idx != NO_LIMIT else "")
    if td.cmd == "vote":
        votes = td.args.get("votes", [])
        vmap = {id: votes[i] == "y" for i, id in enumerate(order) if votes[i] != "_"}
        check = vmap.get
        res = JointConfig(cfg, cfgj).vote_result(check) if joint else MajorityConfig(cfg).vote_result(check)
        return {VoteResult.Won: "VoteWon", VoteResult.Lost: "VoteLost", VoteResult.Pending: "VotePending"}[res]
    raise ValueError(f"{td.pos}: unknown command {td.cmd}")


@pytest.mark.parametrize("path", sorted((TESTDATA / "quorum").glob("*.txt")), ids=lambda p: p.name)
def test_quorum_datadriven(path: Path) -> None:
    run_file(path, _quorum_handler)


@pytest.mark.parametrize("path", sorted((TESTDATA / "confchange").glob("*.txt")), ids=lambda p: p.name)
def test_confchange_datadriven(path: Path) -> None:
    tracker = ProgressTracker(10)
    # The index new peers start at; it moves by one per command, like a growing log.
    state = {"idx": 1}

    def handler(td: TestData) -> str:
        idx = state["idx"]
        state["idx"] += 1
        ccs = parse_conf_change(td.input)
        assert stringify_conf_change(ccs) == " ".join(td.input.split())
        try:
            changer = Changer(tracker)
            if td.cmd == "simple":
                cfg, changes = changer.simple(ccs)
            elif td.cmd == "enter-joint":
                cfg, changes = changer.enter_joint(td.arg("autoleave", "false") == "true", ccs)
            elif td.cmd == "leave-joint":
                assert not ccs, "leave-joint takes no input"
                cfg, changes = changer.leave_joint()
            else:
                raise ValueError(f"{td.pos}: unknown command {td.cmd}")
        except ConfChangeError as e:
            return str(e)
        tracker.apply_conf(cfg, changes, idx)
        lines = [str(tracker.conf)]
        learners = tracker.conf.learners | tracker.conf.learners_next
        for id in sorted(tracker.progress):
            pr = tracker.progress[id]
            suffix = " learner" if id in learners else ""
            lines.append(f"{id}: {pr.state.name} match={pr.matched} next={pr.next_idx}{suffix}")
        return "\n".join(lines)

    run_file(path, handler)


# -- properties -----------------------------------------------------------------------------


def _naive_committed(voters: set[int], acks: dict[int, int]) -> int:
    """The largest index that a majority of `voters` acknowledged (0 if none)."""
    if not voters:
        return NO_LIMIT
    q = len(voters) // 2 + 1
    best = 0
    for cand in {0, *acks.values()}:
        if sum(1 for v in voters if acks.get(v, 0) >= cand) >= q:
            best = max(best, cand)
    return best


def _naive_vote(voters: set[int], votes: dict[int, bool]) -> VoteResult:
    if not voters:
        return VoteResult.Won
    q = len(voters) // 2 + 1
    yes = sum(1 for v in voters if votes.get(v) is True)
    no = sum(1 for v in voters if votes.get(v) is False)
    if yes >= q:
        return VoteResult.Won
    if len(voters) - no >= q:
        return VoteResult.Pending
    return VoteResult.Lost


_ids_st = st.sets(st.integers(1, 9), max_size=7)
_acks_st = st.dictionaries(st.integers(1, 9), st.integers(0, 50), max_size=9)


@settings(max_examples=300, deadline=None)
@given(_ids_st, _ids_st, _acks_st)
def test_committed_index_matches_oracle(incoming: set[int], outgoing: set[int], acks: dict[int, int]) -> None:
    acked = _Acks({k: Index(v, 0) for k, v in acks.items()})
    got, _ = MajorityConfig(incoming).committed_index(False, acked)
    assert got == _naive_committed(incoming, acks)
    got_j, _ = JointConfig(incoming, outgoing).committed_index(False, acked)
    assert got_j == min(_naive_committed(incoming, acks), _naive_committed(outgoing, acks))


@settings(max_examples=300, deadline=None)
@given(_ids_st, _ids_st, st.dictionaries(st.integers(1, 9), st.booleans(), max_size=9))
def test_vote_result_matches_oracle(incoming: set[int], outgoing: set[int], votes: dict[int, bool]) -> None:
    assert MajorityConfig(incoming).vote_result(votes.get) == _naive_vote(incoming, votes)
    want_i, want_o = _naive_vote(incoming, votes), _naive_vote(outgoing, votes)
    if VoteResult.Lost in (want_i, want_o):
        want = VoteResult.Lost
    elif want_i == want_o == VoteResult.Won:
        want = VoteResult.Won
    else:
        want = VoteResult.Pending
    assert JointConfig(incoming, outgoing).vote_result(votes.get) == want


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(1, 9), min_size=1, max_size=7), _acks_st)
def test_tracker_fast_path_matches_quorum_code(voters: set[int], acks: dict[int, int]) -> None:
    """ProgressTracker.maximal_committed_index has a fast path for simple majorities: it must
    agree with the general quorum code."""
    from multiraft.raft.confchange import restore
    from multiraft.raft.eraftpb import ConfState

    tr = ProgressTracker(10)
    restore(tr, 1, ConfState(voters=sorted(voters)))
    for id, pr in tr.progress.items():
        pr.matched = acks.get(id, 0)
    fast, _ = tr.maximal_committed_index()
    slow, _ = tr.conf.voters.committed_index(False, tr)
    assert fast == slow == _naive_committed(voters, {v: acks.get(v, 0) for v in voters})
