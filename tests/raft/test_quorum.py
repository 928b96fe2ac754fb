"""Quorum arithmetic (multiraft.raft.quorum): data-driven tables in testdata/quorum/*.txt
(after etcd/raft-rs `quorum/testdata`), hypothesis properties comparing the optimized code with
naive oracles (after etcd `quorum/quick_test.go`), and the datadriven runner itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.confchange import restore
from multiraft.raft.eraftpb import ConfState
from multiraft.raft.quorum import Index, JointConfig, MajorityConfig, VoteResult
from multiraft.raft.tracker import ProgressTracker
from multiraft.raft.util import NO_LIMIT
from multiraft.testing import datadriven
from multiraft.testing.datadriven import TestData, parse_file, run_file

TESTDATA = Path(__file__).parent / "testdata" / "quorum"


class Acks:
    """An AckedIndexer over a plain dict."""

    def __init__(self, acks: dict[int, Index]) -> None:
        self.acks = acks

    def acked_index(self, voter_id: int) -> Index | None:
        return self.acks.get(voter_id)


_VOTE_NAMES = {
    VoteResult.Won: "VoteWon",
    VoteResult.Lost: "VoteLost",
    VoteResult.Pending: "VotePending",
}


def quorum_handler(td: TestData) -> str:
    """`committed cfg=(..) [cfgj=(..)] idx=(..) [group=(..)]` prints the committed index (∞ for
    the empty config) and " group" if group commit decided it; `vote cfg=(..) [cfgj=(..)]
    votes=(..)` prints the VoteResult. Per-voter values follow the ids of cfg then cfgj, each id
    once; `_` means no entry."""
    cfg, cfgj = td.int_list("cfg"), td.int_list("cfgj")
    order = list(dict.fromkeys([*cfg, *cfgj]))
    joint = td.has("cfgj")
    config: MajorityConfig | JointConfig = JointConfig(cfg, cfgj) if joint else MajorityConfig(cfg)
    if td.cmd == "committed":
        idxs, groups = td.args.get("idx", []), td.args.get("group", [])
        assert len(idxs) == len(order), f"{td.pos}: need one idx per voter"
        assert not groups or len(groups) == len(order), f"{td.pos}: need one group per voter"
        acks = {
            id: Index(int(idxs[i]), int(groups[i]) if groups else 0)
            for i, id in enumerate(order)
            if idxs[i] != "_"
        }
        idx, by_group = config.committed_index(bool(groups), Acks(acks))
        if idx == NO_LIMIT:
            return "∞"
        return f"{idx} group" if by_group else str(idx)
    if td.cmd == "vote":
        votes = td.args.get("votes", [])
        assert len(votes) == len(order), f"{td.pos}: need one vote per voter"
        vmap = {id: votes[i] == "y" for i, id in enumerate(order) if votes[i] != "_"}
        return _VOTE_NAMES[config.vote_result(vmap.get)]
    raise ValueError(f"{td.pos}: unknown command {td.cmd}")


@pytest.mark.parametrize(
    "name", ["majority_commit", "joint_commit", "majority_vote", "joint_vote", "group_commit"]
)
def test_quorum_datadriven(name: str) -> None:
    run_file(TESTDATA / f"{name}.txt", quorum_handler)


# -- naive oracles and properties ---------------------------------------------------------------


def naive_committed(voters: set[int], acks: dict[int, int]) -> int:
    """The largest index that a majority of `voters` acknowledged: try every candidate."""
    if not voters:
        return NO_LIMIT
    q = len(voters) // 2 + 1
    best = 0
    for cand in {0, *acks.values()}:
        if sum(1 for v in voters if acks.get(v, 0) >= cand) >= q:
            best = max(best, cand)
    return best


def naive_vote(voters: set[int], votes: dict[int, bool]) -> VoteResult:
    """Won if a majority said yes, Lost if a majority can no longer say yes."""
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


ids = st.sets(st.integers(1, 9), max_size=7)
acks_st = st.dictionaries(st.integers(1, 9), st.integers(0, 50), max_size=9)
votes_st = st.dictionaries(st.integers(1, 9), st.booleans(), max_size=9)


@settings(max_examples=300, deadline=None)
@given(ids, ids, acks_st)
def test_committed_index_matches_oracle(
    incoming: set[int], outgoing: set[int], acks: dict[int, int]
) -> None:
    acked = Acks({k: Index(v) for k, v in acks.items()})
    assert MajorityConfig(incoming).committed_index(False, acked)[0] == naive_committed(
        incoming, acks
    )
    want = min(naive_committed(incoming, acks), naive_committed(outgoing, acks))
    assert JointConfig(incoming, outgoing).committed_index(False, acked)[0] == want
    # The halves are symmetric.
    assert JointConfig(outgoing, incoming).committed_index(False, acked)[0] == want


@settings(max_examples=300, deadline=None)
@given(ids, ids, votes_st)
def test_vote_result_matches_oracle(
    incoming: set[int], outgoing: set[int], votes: dict[int, bool]
) -> None:
    assert MajorityConfig(incoming).vote_result(votes.get) == naive_vote(incoming, votes)
    wi, wo = naive_vote(incoming, votes), naive_vote(outgoing, votes)
    if VoteResult.Lost in (wi, wo):
        want = VoteResult.Lost
    elif wi == wo == VoteResult.Won:
        want = VoteResult.Won
    else:
        want = VoteResult.Pending
    assert JointConfig(incoming, outgoing).vote_result(votes.get) == want


@settings(max_examples=300, deadline=None)
@given(
    st.sets(st.integers(1, 9), min_size=1, max_size=7),
    st.dictionaries(
        st.integers(1, 9), st.tuples(st.integers(0, 50), st.integers(0, 3)), max_size=9
    ),
)
def test_group_commit_is_sound(voters: set[int], acks: dict[int, tuple[int, int]]) -> None:
    """Group commit never exceeds the plain quorum index; when it decides (flag True) the index
    is acknowledged by a quorum and by voters of two groups; otherwise it is the quorum index
    (one group) or the smallest index (some voter without a group)."""
    acked = Acks({k: Index(i, g) for k, (i, g) in acks.items()})
    got, by_group = MajorityConfig(voters).committed_index(True, acked)
    index = {v: acks.get(v, (0, 0))[0] for v in voters}
    group = {v: acks.get(v, (0, 0))[1] for v in voters}
    plain = naive_committed(voters, index)
    assert got <= plain
    groups = {g for g in group.values() if g != 0}
    assert by_group == (len(groups) >= 2)
    if by_group:
        assert sum(1 for v in voters if index[v] >= got) >= len(voters) // 2 + 1
        assert len({group[v] for v in voters if index[v] >= got and group[v] != 0}) >= 2
    elif 0 in group.values():
        assert got == min(index.values())
    else:
        assert got == plain


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(1, 9), min_size=1, max_size=7), acks_st)
def test_tracker_fast_path_matches_quorum_code(voters: set[int], acks: dict[int, int]) -> None:
    """ProgressTracker.maximal_committed_index has a fast path for a simple majority without
    group commit: it must agree with the general quorum code and the oracle."""
    tr = ProgressTracker(10)
    restore(tr, 1, ConfState(voters=sorted(voters)))
    for id, pr in tr.progress.items():
        pr.matched = acks.get(id, 0)
    fast, _ = tr.maximal_committed_index()
    slow, _ = tr.conf.voters.committed_index(False, tr)
    assert fast == slow == naive_committed(voters, acks)


def test_empty_config_commits_everything_and_wins() -> None:
    assert MajorityConfig().committed_index(False, Acks({})) == (NO_LIMIT, True)
    assert MajorityConfig().committed_index(True, Acks({})) == (NO_LIMIT, True)
    assert MajorityConfig().vote_result(lambda _: None) == VoteResult.Won
    assert JointConfig().committed_index(False, Acks({})) == (NO_LIMIT, True)


# -- MajorityConfig / JointConfig helpers --------------------------------------------------------


def test_majority_config_container() -> None:
    c = MajorityConfig([3, 1, 2, 1])
    assert len(c) == 3 and 2 in c and 4 not in c
    assert sorted(c) == [1, 2, 3] == c.slice()
    assert c.ids() == {1, 2, 3}
    assert c == MajorityConfig({1, 2, 3}) and c != MajorityConfig({1, 2})
    assert str(c) == "(1 2 3)" and str(MajorityConfig()) == "()"
    d = c.clone()
    d.voters.add(4)
    assert 4 not in c


def test_joint_config_helpers() -> None:
    j = JointConfig([1, 2, 3], [1, 4])
    assert str(j) == "(1 2 3)&&(1 4)"
    assert j.ids() == {1, 2, 3, 4}
    assert j.contains(4) and j.contains(2) and not j.contains(5)
    assert not j.is_singleton()
    assert JointConfig([1]).is_singleton()
    assert not JointConfig([1], [1]).is_singleton()
    assert not JointConfig([1, 2]).is_singleton()
    assert (
        JointConfig.new_joint_from_majorities(MajorityConfig([1, 2, 3]), MajorityConfig([1, 4]))
        == j
    )
    assert j.clone() == j and j.clone() is not j
    j.clear()
    assert j == JointConfig() and str(j) == "()"


def test_describe() -> None:
    """A picture of the acknowledged indexes: bars rank the indexes, `?` marks no entry, and
    equal indexes get equal bars."""
    acks = Acks({1: Index(100), 2: Index(101), 3: Index(99), 5: Index(101)})
    assert MajorityConfig([1, 2, 3]).describe(acks) == "\n".join(
        [
            "       idx",
            "x>     100    (id=1)",
            "xx>    101    (id=2)",
            ">       99    (id=3)",
        ]
    )
    assert MajorityConfig([1, 2, 4, 5]).describe(acks) == "\n".join(
        [
            "        idx",
            "x>      100    (id=1)",
            "xx>     101    (id=2)",
            "?         0    (id=4)",
            "xx>     101    (id=5)",
        ]
    )
    assert MajorityConfig().describe(acks) == "<empty majority quorum>"
    assert JointConfig([1], [2]).describe(acks) == MajorityConfig([1, 2]).describe(acks)


# -- the datadriven runner ------------------------------------------------------------------------


SAMPLE = """\
# a comment

echo a=(1, 2) b=x flag
hello
----
wrong

echo
----
----
one

two
----
----

# trailing comment
"""


def _echo(td: TestData) -> str:
    if td.input:
        return f"{td.input} {td.args}"
    return "one\n\ntwo"


def test_datadriven_parses_args_input_and_blocks(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text(SAMPLE)
    tds = parse_file(p)
    assert [td.cmd for td in tds] == ["echo", "echo"]
    assert tds[0].args == {"a": ["1", "2"], "b": ["x"], "flag": []}
    assert tds[0].arg("b") == "x" and tds[0].has("flag") and tds[0].int_list("a") == [1, 2]
    assert tds[0].input == "hello" and tds[0].expected == "wrong"
    assert tds[1].expected == "one\n\ntwo"
    assert tds[0].pos == "t.txt:3"
    with pytest.raises(KeyError):
        tds[0].arg("missing")


def test_datadriven_reports_a_diff(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text(SAMPLE)
    with pytest.raises(AssertionError, match=r"1 of 2 stanzas[\s\S]*-wrong[\s\S]*\+hello"):
        run_file(p, _echo)


def test_datadriven_rewrite_keeps_comments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "t.txt"
    p.write_text(SAMPLE)
    monkeypatch.setenv(datadriven.REWRITE_ENV, "1")
    run_file(p, _echo)
    text = p.read_text()
    assert "# a comment" in text and "# trailing comment" in text
    assert "hello {'a': ['1', '2'], 'b': ['x'], 'flag': []}" in text and "wrong" not in text
    monkeypatch.delenv(datadriven.REWRITE_ENV)
    run_file(p, _echo)  # now passes
    assert parse_file(p)[1].expected == "one\n\ntwo"


def test_datadriven_malformed(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("cmd\ninput without separator\n")
    with pytest.raises(ValueError, match="missing ---- separator"):
        parse_file(p)
