"""The tracker (multiraft.raft.tracker): Inflights and Progress tables (after raft-rs
`tracker/inflights.rs`, `tracker/progress.rs`), Configuration and ProgressTracker."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from multiraft.raft.confchange import MapChangeType, restore
from multiraft.raft.eraftpb import ConfState
from multiraft.raft.quorum import VoteResult
from multiraft.raft.tracker import (
    Configuration,
    Inflights,
    Progress,
    ProgressState,
    ProgressTracker,
)
from multiraft.raft.util import INVALID_INDEX, NO_LIMIT

Probe, Replicate, Snapshot = ProgressState.Probe, ProgressState.Replicate, ProgressState.Snapshot


def inflights(cap: int, items: list[int]) -> Inflights:
    ins = Inflights(cap)
    for i in items:
        ins.add(i)
    return ins


def contents(ins: Inflights) -> list[int]:
    """The in-flight indexes, oldest first."""
    return list(ins._buffer)


# -- Inflights ------------------------------------------------------------------------------------


def test_state_str_is_the_name() -> None:
    assert str(Replicate) == "Replicate" and int(Snapshot) == 2


def test_inflights_add_until_full() -> None:
    ins = Inflights(10)
    for i in range(5):
        ins.add(i)
    assert ins.count() == 5 and len(ins) == 5 and not ins.full()
    for i in range(5, 10):
        ins.add(i)
    assert ins.count() == 10 and ins.full()
    assert contents(ins) == list(range(10))
    with pytest.raises(AssertionError, match="full"):
        ins.add(10)


@pytest.mark.parametrize("last", [3, 2])
def test_inflights_add_must_increase(last: int) -> None:
    ins = inflights(10, [3])
    with pytest.raises(AssertionError, match="increase"):
        ins.add(last)


@pytest.mark.parametrize(
    "items, to, remaining",
    [
        (list(range(10)), 4, [5, 6, 7, 8, 9]),
        (list(range(10)), 8, [9]),
        (list(range(10)), 9, []),
        (list(range(10)), 20, []),
        # below the window: a stale acknowledgement frees nothing
        (list(range(10)), -1, list(range(10))),
        ([5, 6], 4, [5, 6]),
        # between two in-flight indexes
        ([2, 4, 6, 8], 5, [6, 8]),
        ([], 5, []),
    ],
)
def test_inflights_free_to(items: list[int], to: int, remaining: list[int]) -> None:
    ins = inflights(10, items)
    ins.free_to(to)
    assert contents(ins) == remaining
    assert ins.full() == (len(remaining) == 10)


def test_inflights_free_first_one() -> None:
    ins = inflights(10, list(range(10)))
    ins.free_first_one()
    assert contents(ins) == list(range(1, 10)) and not ins.full()
    ins.free_to(8)
    ins.free_first_one()
    assert ins.count() == 0
    ins.free_first_one()  # an empty window: no-op (raft-rs would not panic either)
    assert ins.count() == 0


def test_inflights_wrap_around() -> None:
    """The window slides forever (raft-rs's ring buffer wraps): fill, free some, refill."""
    ins = Inflights(4)
    nxt = 0
    for _ in range(50):
        while not ins.full():
            ins.add(nxt)
            nxt += 1
        assert ins.count() == 4
        ins.free_to(nxt - 3)
        assert contents(ins) == [nxt - 2, nxt - 1]
    ins.free_to(nxt)
    assert ins.count() == 0


def test_inflights_reset() -> None:
    ins = inflights(4, [1, 2, 3, 4])
    ins.reset()
    assert ins.count() == 0 and not ins.full() and not ins.buffer_is_allocated()
    ins.add(1)  # indexes may restart lower after a reset
    assert ins.count() == 1


@pytest.mark.parametrize(
    "cap, items, new_cap, wcap, wfull",
    [
        # growing applies at once
        (4, [1, 2, 3, 4], 8, 8, False),
        # same capacity
        (4, [1, 2], 4, 4, False),
        # shrinking to above the count applies at once
        (8, [1, 2], 4, 4, False),
        # shrinking to the count applies at once, and the window is full
        (8, [1, 2], 2, 2, True),
        # shrinking below the count waits, the window is full meanwhile
        (8, [1, 2, 3, 4, 5, 6], 2, 8, True),
        # 0 disables the peer
        (8, [], 0, 0, True),
        (8, [1], 0, 8, True),
    ],
)
def test_inflights_set_cap(
    cap: int, items: list[int], new_cap: int, wcap: int, wfull: bool
) -> None:
    ins = inflights(cap, items)
    ins.set_cap(new_cap)
    assert ins.cap == wcap
    assert ins.full() == wfull


def test_inflights_set_cap_shrink_waits_for_frees() -> None:
    """raft-rs test_inflights_set_cap: a pending shrink keeps the window full until the
    in-flight messages fit in the new capacity."""
    ins = inflights(128, list(range(16)))
    ins.set_cap(1024)
    assert ins.cap == 1024 and not ins.full()
    ins.set_cap(8)
    assert ins.full() and ins.cap == 1024
    ins.free_to(6)  # 9 left
    assert ins.full()
    ins.free_first_one()  # 8 left: fits, the shrink applies
    assert ins.cap == 8 and ins.full()
    ins.free_first_one()
    assert not ins.full()
    ins.free_to(15)
    assert ins.count() == 0 and ins.cap == 8
    # 8 -> 1024 -> 8 -> 1024: growing again cancels the pending shrink.
    ins.set_cap(1024)
    for i in range(16):
        ins.add(i)
    ins.set_cap(8)
    assert ins.full()
    ins.set_cap(1024)
    assert not ins.full() and ins.cap == 1024
    # A reset applies a pending shrink.
    ins.set_cap(512)
    ins.set_cap(4)
    ins.reset()
    assert ins.cap == 4 and not ins.full()


def test_inflights_disabled_then_enabled() -> None:
    """raft-rs test_disable_progress at the Inflights level: cap 0 is full even when empty,
    and freeing from it never fails."""
    ins = inflights(256, [])
    ins.set_cap(0)
    assert ins.full() and ins.count() == 0
    ins.free_first_one()
    ins.free_to(10)
    assert ins.full()
    ins.set_cap(10)
    assert not ins.full()
    ins.add(1)
    assert ins.count() == 1


def test_inflights_buffer_allocation() -> None:
    """raft-rs allocates the ring lazily on the first add and releases it on reset or
    maybe_free_buffer (test_msg_app_flow_control_with_freeing_resources)."""
    ins = Inflights(256)
    assert not ins.buffer_is_allocated() and ins.buffer_capacity() == 0
    ins.add(2)
    assert ins.buffer_is_allocated() and ins.buffer_capacity() == 256
    ins.maybe_free_buffer()  # not empty: kept
    assert ins.buffer_is_allocated()
    ins.free_to(2)
    assert ins.buffer_is_allocated()  # emptied, still allocated
    ins.maybe_free_buffer()
    assert not ins.buffer_is_allocated() and ins.count() == 0
    ins.add(3)
    ins.reset()
    assert not ins.buffer_is_allocated()


def test_inflights_eq_and_repr() -> None:
    assert inflights(4, [1, 2]) == inflights(4, [1, 2])
    assert inflights(4, [1, 2]) != inflights(5, [1, 2])
    assert inflights(4, [1, 2]) != inflights(4, [1, 3])
    assert repr(inflights(4, [1, 2])) == "Inflights(cap=4, [1, 2])"


# -- Progress -------------------------------------------------------------------------------------


def progress(
    state: ProgressState,
    matched: int,
    next_idx: int,
    pending_snapshot: int = 0,
    ins_size: int = 256,
) -> Progress:
    p = Progress(next_idx, ins_size)
    p.state = state
    p.matched = matched
    p.pending_snapshot = pending_snapshot
    return p


def test_progress_new() -> None:
    p = Progress(5, 10)
    assert (p.matched, p.next_idx, p.state, p.paused) == (0, 5, Probe, False)
    assert (p.pending_snapshot, p.pending_request_snapshot, p.recent_active) == (
        0,
        INVALID_INDEX,
        False,
    )
    assert (p.commit_group_id, p.committed_index, p.ins.cap) == (0, 0, 10)


@pytest.mark.parametrize(
    "update, wm, wn, wok",
    [
        (2, 3, 5, False),  # stale: do not decrease match or next
        (3, 3, 5, False),  # duplicate
        (4, 4, 5, True),  # increase match, next already past it
        (5, 5, 6, True),  # increase match and next
        (9, 9, 10, True),
    ],
)
def test_progress_maybe_update(update: int, wm: int, wn: int, wok: bool) -> None:
    p = Progress(5, 256)
    p.matched = 3
    p.paused = True
    assert p.maybe_update(update) == wok
    assert (p.matched, p.next_idx) == (wm, wn)
    # Only a real update resumes a paused probe.
    assert p.paused == (not wok)


@pytest.mark.parametrize(
    "state, m, n, rejected, hint, w, wn",
    [
        # Replicate: a rejection at or below match is stale.
        (Replicate, 5, 10, 5, 5, False, 10),
        (Replicate, 5, 10, 4, 4, False, 10),
        # Replicate: otherwise fall back to match + 1 (the hint is not used).
        (Replicate, 5, 10, 9, 9, True, 6),
        (Replicate, 5, 10, 9, 2, True, 6),
        # Probe: a rejection of anything but the last probe (next - 1) is stale.
        (Probe, 0, 0, 0, 0, False, 0),
        (Probe, 0, 10, 5, 5, False, 10),
        # Probe: go back to min(rejected, hint + 1)...
        (Probe, 0, 10, 9, 9, True, 9),
        (Probe, 0, 2, 1, 1, True, 1),
        (Probe, 0, 10, 9, 2, True, 3),
        # ...but never below 1...
        (Probe, 0, 1, 0, 0, True, 1),
        (Probe, 0, 10, 9, 0, True, 1),
        # ...nor below match + 1 (etcd-io/raft#148).
        (Probe, 5, 10, 9, 2, True, 6),
        (Probe, 5, 7, 6, 0, True, 6),
        # Snapshot behaves like Probe here.
        (Snapshot, 0, 10, 9, 3, True, 4),
        (Snapshot, 0, 10, 5, 3, False, 10),
    ],
)
def test_progress_maybe_decr_to(
    state: ProgressState, m: int, n: int, rejected: int, hint: int, w: bool, wn: int
) -> None:
    p = progress(state, m, n)
    p.paused = True
    assert p.maybe_decr_to(rejected, hint, INVALID_INDEX) == w
    assert p.matched == m
    assert p.next_idx == wn
    assert p.pending_request_snapshot == INVALID_INDEX
    if state == Probe:
        assert p.paused == (not w)  # an accepted rejection resumes the probe


@pytest.mark.parametrize(
    "state, m, n, rejected, pending, req, w, wpending, wn",
    [
        # Replicate: a request at match is not stale; it is recorded, next stays.
        (Replicate, 5, 10, 5, INVALID_INDEX, 7, True, 7, 10),
        # Replicate: below match it is stale.
        (Replicate, 5, 10, 4, INVALID_INDEX, 7, False, INVALID_INDEX, 10),
        # Replicate: a newer request replaces a pending one.
        (Replicate, 5, 10, 6, 7, 8, True, 8, 10),
        # Probe: a request is never stale, next stays.
        (Probe, 0, 10, 3, INVALID_INDEX, 8, True, 8, 10),
        (Probe, 0, 10, 9, INVALID_INDEX, 8, True, 8, 10),
        # Probe: a pending request is kept.
        (Probe, 0, 10, 9, 7, 8, True, 7, 10),
    ],
)
def test_progress_maybe_decr_to_request_snapshot(
    state: ProgressState,
    m: int,
    n: int,
    rejected: int,
    pending: int,
    req: int,
    w: bool,
    wpending: int,
    wn: int,
) -> None:
    p = progress(state, m, n)
    p.pending_request_snapshot = pending
    assert p.maybe_decr_to(rejected, rejected, req) == w
    assert (p.pending_request_snapshot, p.next_idx, p.matched) == (wpending, wn, m)


@pytest.mark.parametrize(
    "state, paused, full, wpaused",
    [
        (Probe, False, False, False),
        (Probe, True, False, True),
        (Replicate, False, False, False),
        (Replicate, True, False, False),  # paused does not matter in Replicate...
        (Replicate, False, True, True),  # ...a full window does
        (Snapshot, False, False, True),
        (Snapshot, True, False, True),
    ],
)
def test_progress_is_paused(state: ProgressState, paused: bool, full: bool, wpaused: bool) -> None:
    p = progress(state, 0, 1, ins_size=2)
    p.paused = paused
    if full:
        p.ins.add(1)
        p.ins.add(2)
    assert p.is_paused() == wpaused


def test_progress_pause_resume() -> None:
    p = Progress(2, 10)
    p.pause()
    assert p.paused and p.is_paused()
    p.resume()
    assert not p.paused
    p.pause()
    p.maybe_decr_to(1, 1, INVALID_INDEX)
    assert not p.paused


@pytest.mark.parametrize(
    "p, wnext",
    [
        (progress(Replicate, 1, 5), 2),
        # the snapshot was delivered: probe from after it
        (progress(Snapshot, 1, 5, pending_snapshot=10), 11),
        # the snapshot failed (pending cleared): probe from after match
        (progress(Snapshot, 1, 5, pending_snapshot=0), 2),
        # the follower is past the snapshot already
        (progress(Snapshot, 20, 21, pending_snapshot=10), 21),
        (progress(Probe, 1, 5), 2),
    ],
)
def test_progress_become_probe(p: Progress, wnext: int) -> None:
    p.paused = True
    if p.state == Replicate:
        p.ins.add(3)
    matched = p.matched
    p.become_probe()
    assert (p.state, p.matched, p.next_idx) == (Probe, matched, wnext)
    assert not p.paused and p.pending_snapshot == 0 and p.ins.count() == 0


def test_progress_become_replicate() -> None:
    p = progress(Probe, 1, 5)
    p.paused = True
    p.become_replicate()
    assert (p.state, p.matched, p.next_idx, p.paused) == (Replicate, 1, 2, False)


def test_progress_become_snapshot_and_caught_up() -> None:
    p = progress(Replicate, 1, 5)
    p.ins.add(4)
    p.become_snapshot(10)
    assert (p.state, p.matched, p.pending_snapshot, p.ins.count()) == (Snapshot, 1, 10, 0)
    assert not p.is_snapshot_caught_up()
    p.maybe_update(10)
    assert p.is_snapshot_caught_up()
    p.snapshot_failure()
    assert p.pending_snapshot == 0
    assert not progress(Probe, 10, 11).is_snapshot_caught_up()


def test_progress_update_state() -> None:
    p = progress(Replicate, 4, 5, ins_size=2)
    p.update_state(7)
    assert p.next_idx == 8 and p.ins.count() == 1 and not p.is_paused()
    p.update_state(9)
    assert p.next_idx == 10 and p.is_paused()  # window full
    p.maybe_update(9)
    p.ins.free_to(9)
    assert not p.is_paused()
    q = progress(Probe, 4, 5)
    q.update_state(7)  # a probe: wait for its answer; next does not move
    assert q.paused and q.next_idx == 5
    s = progress(Snapshot, 4, 5, pending_snapshot=3)
    with pytest.raises(AssertionError, match="Snapshot"):
        s.update_state(7)


def test_progress_optimistic_update_and_committed() -> None:
    p = Progress(5, 2)
    p.optimistic_update(9)
    assert p.next_idx == 10
    p.update_committed(5)
    p.update_committed(3)
    assert p.committed_index == 5


def test_progress_reset() -> None:
    p = progress(Replicate, 7, 10)
    p.ins.add(9)
    p.recent_active = True
    p.pending_request_snapshot = 5
    p.paused = True
    p.reset(20)
    assert p == Progress(20, 256)


# -- Configuration --------------------------------------------------------------------------------


def joint_conf() -> Configuration:
    c = Configuration([2, 1], [3])
    c.voters.outgoing.voters = {1, 5}
    c.learners_next = {5}
    c.auto_leave = True
    return c


def test_configuration_str_and_conf_state() -> None:
    assert str(Configuration()) == "voters=()"
    assert str(Configuration([1, 2], [3])) == "voters=(1 2) learners=(3)"
    c = joint_conf()
    assert str(c) == "voters=(1 2)&&(1 5) learners=(3) learners_next=(5) autoleave"
    assert c.to_conf_state() == ConfState(
        voters=[1, 2], voters_outgoing=[1, 5], learners=[3], learners_next=[5], auto_leave=True
    )


def test_configuration_clone_is_deep() -> None:
    c = joint_conf()
    d = c.clone()
    assert d == c
    d.voters.incoming.voters.add(9)
    d.voters.outgoing.voters.add(9)
    d.learners.add(9)
    d.learners_next.add(9)
    assert d != c and c == joint_conf()
    c.clear()
    assert c == Configuration()


# -- ProgressTracker ------------------------------------------------------------------------------


def tracker(
    voters: Sequence[int],
    learners: Sequence[int] = (),
    outgoing: Sequence[int] = (),
    max_inflight: int = 10,
) -> ProgressTracker:
    tr = ProgressTracker.with_capacity(len(voters), len(learners), max_inflight)
    restore(tr, 1, ConfState(voters=voters, learners=learners, voters_outgoing=outgoing))
    return tr


def test_tracker_ids_and_queries() -> None:
    tr = tracker([1, 2, 3], [4], outgoing=[1, 5])
    assert tr.voter_ids() == {1, 2, 3, 5}
    assert tr.learner_ids() == {4}
    assert sorted(id for id, _ in tr.iter()) == [1, 2, 3, 4, 5]
    assert tr.get(4) is tr.progress[4] and tr.get(9) is None
    assert tr.conf_state() == tr.conf.to_conf_state()
    assert not tr.is_singleton() and tracker([1]).is_singleton()
    assert tr() is tr  # raft-rs spelling raft.prs()
    assert all(pr.ins.cap == 10 for _, pr in tr.iter())


def test_tracker_votes() -> None:
    tr = tracker([1, 2, 3, 4, 5], [6])
    tr.record_vote(1, True)
    tr.record_vote(1, False)  # the first vote of a peer wins
    tr.record_vote(2, False)
    tr.record_vote(6, True)  # a learner's vote does not count
    tr.record_vote(9, True)  # nor does an unknown peer's
    assert tr.tally_votes() == (1, 1, VoteResult.Pending)
    tr.record_vote(3, True)
    tr.record_vote(4, True)
    assert tr.tally_votes() == (3, 1, VoteResult.Won)
    assert tr.vote_result({1: False, 2: False, 3: False}) == VoteResult.Lost
    tr.reset_votes()
    assert tr.votes == {} and tr.tally_votes() == (0, 0, VoteResult.Pending)


def test_tracker_joint_votes() -> None:
    tr = tracker([1, 2, 3], outgoing=[4, 5, 6])
    for id in (1, 2, 3):
        tr.record_vote(id, True)
    assert tr.tally_votes() == (3, 0, VoteResult.Pending)
    tr.record_vote(4, False)
    tr.record_vote(5, False)
    assert tr.tally_votes() == (3, 2, VoteResult.Lost)


def test_tracker_has_quorum() -> None:
    tr = tracker([1, 2, 3])
    assert tr.has_quorum({1, 2}) and not tr.has_quorum({1}) and not tr.has_quorum({1, 4})
    j = tracker([1, 2, 3], outgoing=[3, 4, 5])
    assert not j.has_quorum({1, 2}) and j.has_quorum({1, 3, 4}) and not j.has_quorum({4, 5})


def test_tracker_quorum_recently_active() -> None:
    """The leader always counts and stays active; every other flag is reset for the next
    check_quorum round."""
    tr = tracker([1, 2, 3, 4, 5], [6])
    # apply_conf marks new peers active.
    assert all(pr.recent_active for _, pr in tr.iter())
    assert tr.quorum_recently_active(1)
    assert [tr.progress[i].recent_active for i in range(1, 7)] == [True] + [False] * 5
    tr.progress[2].recent_active = True
    tr.progress[6].recent_active = True  # a learner does not make a quorum
    assert not tr.quorum_recently_active(1)
    tr.progress[2].recent_active = True
    tr.progress[3].recent_active = True
    assert tr.quorum_recently_active(1)
    assert not tr.quorum_recently_active(1)


def test_tracker_maximal_committed_index() -> None:
    tr = tracker([1, 2, 3])
    for id, m in ((1, 5), (2, 7), (3, 6)):
        tr.progress[id].matched = m
    assert tr.maximal_committed_index() == (6, False)
    # Singleton.
    one = tracker([1])
    one.progress[1].matched = 4
    assert one.maximal_committed_index() == (4, False)
    # Empty.
    assert ProgressTracker(10).maximal_committed_index() == (NO_LIMIT, True)
    # Joint: the smaller half.
    j = tracker([1, 2, 3], outgoing=[3, 4, 5])
    for id, m in ((1, 9), (2, 9), (3, 4), (4, 5), (5, 3)):
        j.progress[id].matched = m
    assert j.maximal_committed_index() == (4, False)
    # Group commit: the quorum index is 6, but only 5 is acknowledged by both groups 1 and 2.
    tr.enable_group_commit(True)
    assert tr.group_commit()
    for id, g in ((1, 2), (2, 1), (3, 1)):
        tr.progress[id].commit_group_id = g
    assert tr.maximal_committed_index() == (5, True)
    tr.enable_group_commit(False)
    assert tr.maximal_committed_index() == (6, False)


def test_tracker_apply_conf() -> None:
    tr = tracker([1, 2])
    tr.progress[1].matched = 3
    tr.progress[2].recent_active = False
    conf = Configuration([1, 3])
    tr.apply_conf(
        conf, [(3, MapChangeType.Add), (2, MapChangeType.Remove), (9, MapChangeType.Remove)], 7
    )
    assert tr.conf is conf
    assert sorted(tr.progress) == [1, 3]
    assert tr.progress[1].matched == 3  # untouched
    new = tr.progress[3]
    assert (new.next_idx, new.matched, new.state, new.recent_active, new.ins.cap) == (
        7,
        0,
        Probe,
        True,
        10,
    )
    # An id added then removed in one change ends up absent.
    tr.apply_conf(Configuration([1, 3]), [(4, MapChangeType.Add), (4, MapChangeType.Remove)], 8)
    assert 4 not in tr.progress


def test_tracker_clear_and_repr() -> None:
    tr = tracker([1, 2])
    tr.record_vote(1, True)
    assert repr(tr).startswith("ProgressTracker(voters=(1 2); 1: Probe match=0 next=1")
    tr.clear()
    assert tr.progress == {} and tr.votes == {} and tr.conf == Configuration()
