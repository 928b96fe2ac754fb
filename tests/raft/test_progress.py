"""Unit tables for Inflights and Progress (raft-rs tracker/inflights.rs, tracker/progress.rs)."""

from __future__ import annotations

import pytest

from multiraft.raft.tracker import Inflights, Progress, ProgressState
from multiraft.raft.util import INVALID_INDEX


def _ins(cap: int, items: list[int]) -> Inflights:
    ins = Inflights(cap)
    for i in items:
        ins.add(i)
    return ins


def test_inflights_add_and_full() -> None:
    ins = Inflights(10)
    for i in range(5):
        ins.add(i)
    assert ins.count() == 5 and not ins.full()
    for i in range(5, 10):
        ins.add(i)
    assert ins.count() == 10 and ins.full()
    with pytest.raises(AssertionError):
        ins.add(10)


def test_inflights_must_increase() -> None:
    ins = _ins(10, [3])
    with pytest.raises(AssertionError):
        ins.add(3)


@pytest.mark.parametrize(
    "items, free_to, remaining",
    [
        (list(range(10)), 4, [5, 6, 7, 8, 9]),
        (list(range(10)), 8, [9]),
        (list(range(10)), 9, []),
        (list(range(10)), 20, []),
        (list(range(10)), -1, list(range(10))),
        ([2, 4, 6, 8], 5, [6, 8]),
    ],
)
def test_inflights_free_to(items: list[int], free_to: int, remaining: list[int]) -> None:
    ins = _ins(10, items)
    ins.free_to(free_to)
    assert ins.count() == len(remaining)
    ins.free_to(max(remaining, default=-1))
    assert ins.count() == 0


def test_inflights_wrap_around_window() -> None:
    """The window slides: free and add repeatedly, never exceeding the capacity."""
    ins = Inflights(4)
    nxt = 0
    for _ in range(50):
        while not ins.full():
            ins.add(nxt)
            nxt += 1
        ins.free_to(nxt - 3)
        assert ins.count() == 2
    assert ins.count() == 2


def test_inflights_free_first_one() -> None:
    ins = _ins(10, list(range(10)))
    ins.free_first_one()
    assert ins.count() == 9
    ins.free_to(8)
    ins.free_first_one()
    assert ins.count() == 0
    ins.free_first_one()  # freeing from an empty window is a no-op
    assert ins.count() == 0


@pytest.mark.parametrize(
    "cap, items, new_cap, wcap_now, free_to, wcap_after",
    [
        # growing applies at once
        (4, [1, 2, 3, 4], 8, 8, 0, 8),
        # shrinking above the count applies at once
        (8, [1, 2], 4, 4, 0, 4),
        # shrinking below the count waits until enough are freed
        (8, [1, 2, 3, 4, 5, 6], 2, 8, 4, 2),
        (8, [1, 2, 3, 4, 5, 6], 2, 8, 3, 8),
    ],
)
def test_inflights_set_cap(cap: int, items: list[int], new_cap: int, wcap_now: int, free_to: int, wcap_after: int) -> None:
    ins = _ins(cap, items)
    ins.set_cap(new_cap)
    assert ins.cap == wcap_now
    ins.free_to(free_to)
    assert ins.cap == wcap_after


def test_inflights_reset() -> None:
    ins = _ins(4, [1, 2, 3])
    ins.reset()
    assert ins.count() == 0 and not ins.full()


# -- Progress -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "update, wm, wn, wok",
    [
        (1, 2, 5, False),  # do not decrease match, next
        (2, 2, 5, False),  # do not decrease next
        (4, 4, 5, True),  # increase match, do not decrease next
        (5, 5, 6, True),  # increase match, next
        (6, 6, 7, True),  # increase match, next
    ],
)
def test_progress_maybe_update(update: int, wm: int, wn: int, wok: bool) -> None:
    p = Progress(5, 256)
    p.matched = 2
    assert p.maybe_update(update) == wok
    assert (p.matched, p.next_idx) == (wm, wn)


@pytest.mark.parametrize(
    "state, m, n, rejected, last, w, wn",
    [
        # state replicate and rejected is not greater than match
        (ProgressState.Replicate, 5, 10, 5, 5, False, 10),
        (ProgressState.Replicate, 5, 10, 4, 4, False, 10),
        # state replicate and rejected is greater than match: directly decrease to match+1
        (ProgressState.Replicate, 5, 10, 9, 9, True, 6),
        # next-1 != rejected is always false
        (ProgressState.Probe, 0, 0, 0, 0, False, 0),
        # next-1 != rejected is always false
        (ProgressState.Probe, 0, 10, 5, 5, False, 10),
        # next > 1 = decremented by 1
        (ProgressState.Probe, 0, 10, 9, 9, True, 9),
        # next>1 = set to 1
        (ProgressState.Probe, 0, 2, 1, 1, True, 1),
        # next<=1 = reset to 1
        (ProgressState.Probe, 0, 1, 0, 0, True, 1),
        # decrease to min(rejected, last+1)
        (ProgressState.Probe, 0, 10, 9, 2, True, 3),
        # rejected < 1, reset to 1
        (ProgressState.Probe, 0, 10, 9, 0, True, 1),
        # never below match + 1 (etcd-io/raft#148)
        (ProgressState.Probe, 5, 10, 9, 2, True, 6),
    ],
)
def test_progress_maybe_decr_to(state: ProgressState, m: int, n: int, rejected: int, last: int, w: bool, wn: int) -> None:
    p = Progress(n, 10)
    p.matched = m
    p.state = state
    assert p.maybe_decr_to(rejected, last, INVALID_INDEX) == w
    assert p.matched == m
    assert p.next_idx == wn


def test_progress_maybe_decr_to_request_snapshot() -> None:
    """A rejection carrying request_snapshot records it (and never moves next)."""
    p = Progress(10, 10)
    p.matched = 5
    p.state = ProgressState.Replicate
    assert p.maybe_decr_to(5, 5, 7)
    assert p.pending_request_snapshot == 7 and p.next_idx == 10
    q = Progress(10, 10)
    assert q.maybe_decr_to(3, 3, 8)  # a probe: stale index, but the request still counts
    assert q.pending_request_snapshot == 8


@pytest.mark.parametrize(
    "state, paused, full, wpaused",
    [
        (ProgressState.Probe, False, False, False),
        (ProgressState.Probe, True, False, True),
        (ProgressState.Replicate, False, False, False),
        (ProgressState.Replicate, True, False, False),
        (ProgressState.Replicate, False, True, True),
        (ProgressState.Snapshot, False, False, True),
        (ProgressState.Snapshot, True, False, True),
    ],
)
def test_progress_is_paused(state: ProgressState, paused: bool, full: bool, wpaused: bool) -> None:
    p = Progress(1, 2)
    p.state = state
    p.paused = paused
    if full:
        p.ins.add(1)
        p.ins.add(2)
    assert p.is_paused() == wpaused


def test_progress_resume_and_pause() -> None:
    """maybe_update resumes a paused probe."""
    p = Progress(2, 10)
    p.pause()
    p.maybe_update(2)
    assert not p.paused


def test_progress_become_probe() -> None:
    # replicate -> probe: next = match + 1
    p = Progress(5, 10)
    p.matched = 1
    p.become_replicate()
    p.become_probe()
    assert (p.state, p.matched, p.next_idx) == (ProgressState.Probe, 1, 2)
    # snapshot finished -> probe from after the snapshot
    p = Progress(5, 10)
    p.matched = 1
    p.become_snapshot(10)
    p.become_probe()
    assert (p.state, p.next_idx) == (ProgressState.Probe, 11)
    # snapshot failed (pending cleared) -> probe from after match
    p = Progress(5, 10)
    p.matched = 1
    p.become_snapshot(10)
    p.snapshot_failure()
    p.become_probe()
    assert (p.state, p.next_idx) == (ProgressState.Probe, 2)


def test_progress_become_replicate_and_snapshot() -> None:
    p = Progress(5, 10)
    p.matched = 1
    p.become_replicate()
    assert (p.state, p.next_idx) == (ProgressState.Replicate, 2)
    p.become_snapshot(10)
    assert (p.state, p.pending_snapshot, p.matched) == (ProgressState.Snapshot, 10, 1)
    assert not p.is_snapshot_caught_up()
    p.matched = 10
    assert p.is_snapshot_caught_up()


def test_progress_update_state() -> None:
    p = Progress(5, 2)
    p.become_replicate()
    p.update_state(7)
    assert p.next_idx == 8 and p.ins.count() == 1
    p.update_state(9)
    assert p.is_paused()  # window full
    q = Progress(5, 2)
    q.update_state(7)  # probe: pause until answered
    assert q.paused
    s = Progress(5, 2)
    s.become_snapshot(3)
    with pytest.raises(AssertionError):
        s.update_state(7)


def test_progress_update_committed_never_decreases() -> None:
    p = Progress(1, 1)
    p.update_committed(5)
    p.update_committed(3)
    assert p.committed_index == 5
