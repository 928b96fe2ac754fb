"""Unit tables for `Unstable` (raft-rs log_unstable.rs tests)."""

from __future__ import annotations

import pytest

from multiraft.raft.eraftpb import Entry, Snapshot
from multiraft.raft.log_unstable import Unstable
from multiraft.testing.network import empty_entry, new_snapshot


def _u(entries: list[Entry], offset: int, snap: Snapshot | None) -> Unstable:
    u = Unstable(offset)
    u.entries = list(entries)
    u.snapshot = snap
    return u


@pytest.mark.parametrize(
    "entries, offset, snap, wok, windex",
    [
        # no snapshot
        ([empty_entry(1, 5)], 5, None, False, 0),
        ([], 0, None, False, 0),
        # has snapshot
        ([empty_entry(1, 5)], 5, new_snapshot(4, 1, [1]), True, 5),
        ([], 5, new_snapshot(4, 1, [1]), True, 5),
    ],
)
def test_maybe_first_index(entries: list[Entry], offset: int, snap: Snapshot | None, wok: bool, windex: int) -> None:
    got = _u(entries, offset, snap).maybe_first_index()
    assert got == (windex if wok else None)


@pytest.mark.parametrize(
    "entries, offset, snap, wok, windex",
    [
        # last in entries
        ([empty_entry(1, 5)], 5, None, True, 5),
        ([empty_entry(1, 5)], 5, new_snapshot(4, 1, [1]), True, 5),
        # last in snapshot
        ([], 5, new_snapshot(4, 1, [1]), True, 4),
        # empty unstable
        ([], 0, None, False, 0),
    ],
)
def test_maybe_last_index(entries: list[Entry], offset: int, snap: Snapshot | None, wok: bool, windex: int) -> None:
    got = _u(entries, offset, snap).maybe_last_index()
    assert got == (windex if wok else None)


@pytest.mark.parametrize(
    "entries, offset, snap, index, wok, wterm",
    [
        # term from entries
        ([empty_entry(1, 5)], 5, None, 5, True, 1),
        ([empty_entry(1, 5)], 5, None, 6, False, 0),
        ([empty_entry(1, 5)], 5, None, 4, False, 0),
        ([empty_entry(1, 5)], 5, new_snapshot(4, 1, [1]), 5, True, 1),
        ([empty_entry(1, 5)], 5, new_snapshot(4, 1, [1]), 6, False, 0),
        # term from snapshot
        ([empty_entry(1, 5)], 5, new_snapshot(4, 1, [1]), 4, True, 1),
        ([empty_entry(1, 5)], 5, new_snapshot(4, 1, [1]), 3, False, 0),
        ([], 5, new_snapshot(4, 1, [1]), 5, False, 0),
        ([], 5, new_snapshot(4, 1, [1]), 4, True, 1),
        ([], 0, None, 5, False, 0),
    ],
)
def test_maybe_term(
    entries: list[Entry], offset: int, snap: Snapshot | None, index: int, wok: bool, wterm: int
) -> None:
    got = _u(entries, offset, snap).maybe_term(index)
    assert got == (wterm if wok else None)


def test_restore() -> None:
    u = _u([empty_entry(1, 5)], 5, new_snapshot(4, 1, [1]))
    s = new_snapshot(6, 2, [1])
    u.restore(s)
    assert u.offset == s.metadata.index + 1
    assert u.entries == []
    assert u.snapshot == s


@pytest.mark.parametrize(
    "entries, offset, snap, index, term, woffset, wlen",
    [
        ([empty_entry(1, 5)], 5, None, 5, 1, 6, 0),
        ([empty_entry(1, 5), empty_entry(1, 6)], 5, None, 6, 1, 7, 0),
    ],
)
def test_stable_entries(
    entries: list[Entry], offset: int, snap: Snapshot | None, index: int, term: int, woffset: int, wlen: int
) -> None:
    u = _u(entries, offset, snap)
    u.stable_entries(index, term)
    assert (u.offset, len(u.entries)) == (woffset, wlen)


@pytest.mark.parametrize(
    "entries, offset, snap, index, term",
    [
        # stable to a stale term / index: the log moved on (ABA) — an invariant violation
        ([empty_entry(2, 6)], 6, None, 6, 1),
        ([empty_entry(1, 5)], 5, None, 4, 1),
        # the snapshot must be stabled first
        ([empty_entry(1, 5)], 5, new_snapshot(4, 1, [1]), 5, 1),
        ([], 5, None, 5, 1),
    ],
)
def test_stable_entries_mismatch_is_an_invariant_violation(
    entries: list[Entry], offset: int, snap: Snapshot | None, index: int, term: int
) -> None:
    with pytest.raises(AssertionError):
        _u(entries, offset, snap).stable_entries(index, term)


def test_stable_snap() -> None:
    u = _u([empty_entry(1, 5)], 5, new_snapshot(4, 1, [1]))
    with pytest.raises(AssertionError):
        u.stable_snap(3)
    u.stable_snap(4)
    assert u.snapshot is None
    with pytest.raises(AssertionError):
        u.stable_snap(4)


@pytest.mark.parametrize(
    "entries, offset, snap, toappend, woffset, wentries",
    [
        # append to the end
        ([empty_entry(1, 5)], 5, None, [empty_entry(1, 6), empty_entry(1, 7)], 5,
         [empty_entry(1, 5), empty_entry(1, 6), empty_entry(1, 7)]),
        # replace the unstable entries
        ([empty_entry(1, 5)], 5, None, [empty_entry(2, 5), empty_entry(2, 6)], 5,
         [empty_entry(2, 5), empty_entry(2, 6)]),
        ([empty_entry(1, 5)], 5, None, [empty_entry(2, 4), empty_entry(2, 5), empty_entry(2, 6)], 4,
         [empty_entry(2, 4), empty_entry(2, 5), empty_entry(2, 6)]),
        # truncate the existing entries and append
        ([empty_entry(1, 5), empty_entry(1, 6), empty_entry(1, 7)], 5, None, [empty_entry(2, 6)], 5,
         [empty_entry(1, 5), empty_entry(2, 6)]),
        ([empty_entry(1, 5), empty_entry(1, 6), empty_entry(1, 7)], 5, None,
         [empty_entry(2, 7), empty_entry(2, 8)], 5,
         [empty_entry(1, 5), empty_entry(1, 6), empty_entry(2, 7), empty_entry(2, 8)]),
    ],
)
def test_truncate_and_append(
    entries: list[Entry], offset: int, snap: Snapshot | None, toappend: list[Entry], woffset: int, wentries: list[Entry]
) -> None:
    u = _u(entries, offset, snap)
    u.truncate_and_append(toappend)
    assert u.offset == woffset
    assert u.entries == wentries


def test_slice_bounds() -> None:
    u = _u([empty_entry(1, 5), empty_entry(1, 6)], 5, None)
    assert u.slice(5, 7) == [empty_entry(1, 5), empty_entry(1, 6)]
    assert u.slice(6, 6) == []
    for lo, hi in [(4, 6), (5, 8), (7, 6)]:
        with pytest.raises(AssertionError):
            u.slice(lo, hi)
