"""Membership changes (multiraft.raft.confchange): data-driven Changer tables in
testdata/confchange/*.txt (after etcd/raft-rs `confchange/testdata`), restore from a ConfState
(after etcd `confchange/restore_test.go`), and the ConfChange helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.confchange import (
    Changer,
    MapChangeType,
    as_v1,
    enter_joint,
    into_v2,
    leave_joint,
    new_conf_change_single,
    parse_conf_change,
    restore,
    stringify_conf_change,
)
from multiraft.raft.confchange.restore import to_conf_change_single
from multiraft.raft.eraftpb import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
)
from multiraft.raft.errors import ConfChangeError
from multiraft.raft.tracker import Configuration, ProgressTracker
from multiraft.testing.datadriven import TestData, run_file

TESTDATA = Path(__file__).parent / "testdata" / "confchange"

FILES = [
    "simple_safety",
    "simple_idempotency",
    "simple_promote_demote",
    "joint_safety",
    "joint_autoleave",
    "joint_idempotency",
    "joint_learners_next",
    "zero",
]


def describe(tr: ProgressTracker) -> str:
    """The configuration, then one line per peer in id order; " learner" marks learners and
    staged learners (learners_next)."""
    lines = [str(tr.conf)]
    learners = tr.learner_ids()
    for id in sorted(tr.progress):
        pr = tr.progress[id]
        suffix = " learner" if id in learners else ""
        lines.append(f"{id}: {pr.state.name} match={pr.matched} next={pr.next_idx}{suffix}")
    return "\n".join(lines)


@pytest.mark.parametrize("name", FILES)
def test_confchange_datadriven(name: str) -> None:
    """Commands: `simple`, `enter-joint [autoleave=true]` (input: changes as in
    parse_conf_change) and `leave-joint`. Each command, refused or not, appends one entry to an
    imaginary log, starting at index 1; peers added by a command start probing at its index."""
    tr = ProgressTracker(10)
    index = 0

    def handler(td: TestData) -> str:
        nonlocal index
        index += 1
        ccs = parse_conf_change(td.input)
        assert stringify_conf_change(ccs) == " ".join(td.input.split())
        changer = Changer(tr)
        try:
            if td.cmd == "simple":
                cfg, changes = changer.simple(ccs)
            elif td.cmd == "enter-joint":
                cfg, changes = changer.enter_joint(td.arg("autoleave", "false") == "true", ccs)
            elif td.cmd == "leave-joint":
                assert not ccs, f"{td.pos}: leave-joint takes no input"
                cfg, changes = changer.leave_joint()
            else:
                raise ValueError(f"{td.pos}: unknown command {td.cmd}")
        except ConfChangeError as e:
            return str(e)
        tr.apply_conf(cfg, changes, index)
        return describe(tr)

    run_file(TESTDATA / f"{name}.txt", handler)


def test_every_testdata_file_runs() -> None:
    assert sorted(p.stem for p in TESTDATA.glob("*.txt")) == sorted(FILES)


# -- the Changer ----------------------------------------------------------------------------------


def tracker_of(cs: ConfState, next_idx: int = 1) -> ProgressTracker:
    tr = ProgressTracker(10)
    restore(tr, next_idx, cs)
    return tr


@pytest.mark.parametrize(
    "cmd, changes",
    [
        ("simple", "v4"),
        ("simple", "r1 v4"),  # refused
        ("enter-joint", "r1 v4 l2"),
        ("enter-joint", "r1 r2 r3"),  # refused
        ("leave-joint", ""),  # refused
    ],
)
def test_changer_never_mutates_the_tracker(cmd: str, changes: str) -> None:
    tr = tracker_of(ConfState(voters=[1, 2, 3], learners=[5]))
    before_conf, before_ids = tr.conf.clone(), dict(tr.progress)
    changer = Changer(tr)
    try:
        if cmd == "simple":
            changer.simple(parse_conf_change(changes))
        elif cmd == "enter-joint":
            changer.enter_joint(True, parse_conf_change(changes))
        else:
            changer.leave_joint()
    except ConfChangeError:
        pass
    assert tr.conf == before_conf
    assert tr.progress == before_ids


def test_changer_returns_progress_changes_in_order() -> None:
    tr = tracker_of(ConfState(voters=[1, 2, 3]))
    cfg, changes = Changer(tr).enter_joint(False, parse_conf_change("r3 v4 l5 l5 v6 r6"))
    assert str(cfg) == "voters=(1 2 4)&&(1 2 3) learners=(5)"
    # 3 keeps its Progress (outgoing voter); 6 is added then removed.
    assert changes == [
        (4, MapChangeType.Add),
        (5, MapChangeType.Add),
        (6, MapChangeType.Add),
        (6, MapChangeType.Remove),
    ]
    tr.apply_conf(cfg, changes, 9)
    cfg, changes = Changer(tr).leave_joint()
    assert changes == [(3, MapChangeType.Remove)]


def test_changer_checks_the_tracker_invariants() -> None:
    """A tracker whose configuration and progress disagree is refused, not silently fixed."""
    tr = ProgressTracker(10)
    tr.conf = Configuration([1])
    with pytest.raises(ConfChangeError, match="no progress for voter 1"):
        Changer(tr).simple([])
    tr = tracker_of(ConfState(voters=[1], learners=[2]))
    tr.conf.voters.incoming.voters.add(2)
    with pytest.raises(ConfChangeError, match="2 is in learners and incoming voters"):
        Changer(tr).simple([])
    tr = tracker_of(ConfState(voters=[1], learners=[2]))
    tr.conf.learners_next.add(2)
    tr.conf.learners.discard(2)
    with pytest.raises(ConfChangeError, match="2 is in learners_next and not outgoing voters"):
        Changer(tr).simple([])
    tr = tracker_of(ConfState(voters=[1]))
    tr.conf.auto_leave = True
    with pytest.raises(ConfChangeError, match="auto_leave must be false when not joint"):
        Changer(tr).simple([])


def test_changer_refuses_unknown_change_type() -> None:
    tr = tracker_of(ConfState(voters=[1]))
    cc = ConfChangeSingle(node_id=2)
    cc.change_type = 7  # type: ignore[assignment]  # an open proto3 enum accepts it
    with pytest.raises(ConfChangeError, match="unexpected conf change type 7"):
        Changer(tr).simple([cc])


# -- restore --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cs",
    [
        ConfState(),
        ConfState(voters=[1, 2, 3]),
        ConfState(voters=[1, 2, 3], learners=[4, 5]),
        ConfState(voters=[1, 2, 3], voters_outgoing=[1, 2, 4, 6], learners=[5], learners_next=[4]),
        ConfState(
            voters=[1, 2, 3],
            voters_outgoing=[1, 2, 4, 6],
            learners=[5],
            learners_next=[4],
            auto_leave=True,
        ),
        ConfState(voters=[7], voters_outgoing=[1, 2, 3], learners_next=[1, 2, 3]),
    ],
)
def test_restore(cs: ConfState) -> None:
    tr = tracker_of(cs, next_idx=5)
    assert tr.conf_state() == cs
    ids = {*cs.voters, *cs.voters_outgoing, *cs.learners, *cs.learners_next}
    assert set(tr.progress) == ids
    assert all(pr.next_idx == 5 and pr.recent_active for pr in tr.progress.values())


def test_to_conf_change_single() -> None:
    cs = ConfState(voters=[1, 2, 3], voters_outgoing=[1, 2, 4, 6], learners=[5], learners_next=[4])
    outgoing, incoming = to_conf_change_single(cs)
    assert stringify_conf_change(outgoing) == "v1 v2 v4 v6"
    assert stringify_conf_change(incoming) == "r1 r2 r4 r6 v1 v2 v3 l5 l4"


@pytest.mark.parametrize(
    "cs, error",
    [
        # a learner alone
        (ConfState(learners=[1]), "removed all voters"),
        # the only voter is also a learner
        (ConfState(voters=[1], learners=[1]), "removed all voters"),
        # every outgoing voter demoted, no incoming voter
        (ConfState(voters_outgoing=[1], learners_next=[1]), "removed all voters"),
    ],
)
def test_restore_refuses_invalid_conf_states(cs: ConfState, error: str) -> None:
    with pytest.raises(ConfChangeError, match=error):
        tracker_of(cs)


@pytest.mark.parametrize(
    "cs",
    [
        # a voter that is also a learner: demoted
        ConfState(voters=[1, 2], learners=[1]),
        # a staged learner that is no outgoing voter: a plain learner
        ConfState(voters=[1], voters_outgoing=[1], learners_next=[2]),
        # staged learners or auto_leave without a joint config
        ConfState(voters=[1], learners_next=[2]),
        ConfState(voters=[1], auto_leave=True),
    ],
)
def test_restore_of_inconsistent_conf_states_does_not_round_trip(cs: ConfState) -> None:
    """restore accepts some inconsistent ConfStates but builds another configuration, so a
    caller must compare (raft.py asserts `conf_state() == cs` after restoring)."""
    assert tracker_of(cs).conf_state() != cs


@st.composite
def conf_states(draw: st.DrawFn) -> ConfState:
    """Valid ConfStates: voters non-empty; learners disjoint from all voters; learners_next
    outgoing voters that are no incoming voters; auto_leave only while joint."""
    ids = st.integers(1, 12)
    voters = draw(st.sets(ids, min_size=1, max_size=6))
    outgoing = draw(st.one_of(st.just(set[int]()), st.sets(ids, min_size=1, max_size=6)))
    learners_next = (
        draw(st.sets(st.sampled_from(sorted(outgoing - voters)))) if outgoing - voters else set()
    )
    learners = draw(st.sets(ids, max_size=4)) - voters - outgoing
    return ConfState(
        voters=sorted(voters),
        voters_outgoing=sorted(outgoing),
        learners=sorted(learners),
        learners_next=sorted(learners_next),
        auto_leave=bool(outgoing) and draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None)
@given(conf_states())
def test_restore_round_trips(cs: ConfState) -> None:
    tr = tracker_of(cs)
    assert tr.conf_state() == cs
    assert set(tr.progress) == {*cs.voters, *cs.voters_outgoing, *cs.learners, *cs.learners_next}


# -- ConfChange helpers -----------------------------------------------------------------------------


def test_into_v2_and_as_v1() -> None:
    v1 = ConfChange(change_type=ConfChangeType.AddLearnerNode, node_id=3, context=b"ctx", id=9)
    v2 = into_v2(v1)
    assert v2.transition == ConfChangeTransition.Auto and v2.context == b"ctx"
    assert list(v2.changes) == [new_conf_change_single(3, ConfChangeType.AddLearnerNode)]
    assert as_v1(v1) is v1
    assert as_v1(v2) is None
    assert into_v2(v2) is v2
    # A v1 change never needs joint consensus.
    assert enter_joint(v2) is None and not leave_joint(v2)


def _v2(transition: ConfChangeTransition, n: int) -> ConfChangeV2:
    return ConfChangeV2(
        transition=transition,
        changes=[new_conf_change_single(i + 1, ConfChangeType.AddNode) for i in range(n)],
    )


Auto, Implicit, Explicit = (
    ConfChangeTransition.Auto,
    ConfChangeTransition.Implicit,
    ConfChangeTransition.Explicit,
)


@pytest.mark.parametrize(
    "transition, n, wenter, wleave",
    [
        (Auto, 0, None, True),
        (Auto, 1, None, False),
        (Auto, 2, True, False),
        (Implicit, 0, True, False),
        (Implicit, 1, True, False),
        (Implicit, 2, True, False),
        (Explicit, 0, False, False),
        (Explicit, 1, False, False),
        (Explicit, 2, False, False),
    ],
)
def test_enter_and_leave_joint(
    transition: ConfChangeTransition, n: int, wenter: bool | None, wleave: bool
) -> None:
    cc = _v2(transition, n)
    assert enter_joint(cc) is wenter
    assert leave_joint(cc) is wleave


def test_leave_joint_ignores_context() -> None:
    assert leave_joint(ConfChangeV2(context=b"bye"))


def test_parse_and_stringify() -> None:
    ccs = parse_conf_change("  v1 l2\tr3 v10 ")
    assert [(cc.change_type, cc.node_id) for cc in ccs] == [
        (ConfChangeType.AddNode, 1),
        (ConfChangeType.AddLearnerNode, 2),
        (ConfChangeType.RemoveNode, 3),
        (ConfChangeType.AddNode, 10),
    ]
    assert stringify_conf_change(ccs) == "v1 l2 r3 v10"
    assert parse_conf_change("") == [] and stringify_conf_change([]) == ""


@pytest.mark.parametrize("bad", ["x1", "v", "u4", "v-1", "vab", "v1_0", "V1"])
def test_parse_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        parse_conf_change(f"v1 {bad}")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("vlr"), st.integers(0, 10**6)), max_size=8))
def test_parse_stringify_round_trip(toks: list[tuple[str, int]]) -> None:
    s = " ".join(f"{c}{i}" for c, i in toks)
    assert stringify_conf_change(parse_conf_change(s)) == s


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=9, unique=True), st.data())
def test_restore_in_one_step_matches_one_change_at_a_time(ids: list[int], data: st.DataObject) -> None:
    """`restore`'s one-step path for plain configurations (no joint config, distinct voters
    and learners) ends exactly where raft-rs's change-by-change restore does."""
    k = data.draw(st.integers(1, len(ids)))
    cs = ConfState(voters=ids[:k], learners=ids[k:])
    fast = tracker_of(cs, next_idx=7)
    slow = ProgressTracker(10)
    for cc in to_conf_change_single(cs)[1]:
        cfg, changes = Changer(slow).simple([cc])
        slow.apply_conf(cfg, changes, 7)
    assert describe(fast) == describe(slow)
    assert fast.conf_state() == slow.conf_state()
    assert set(fast.conf_state().voters) == set(cs.voters)
    assert set(fast.conf_state().learners) == set(cs.learners)
    assert {i: (p.next_idx, p.recent_active) for i, p in fast.progress.items()} == {
        i: (p.next_idx, p.recent_active) for i, p in slow.progress.items()
    }
