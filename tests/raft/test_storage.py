"""Unit tables for `MemStorage` (raft-rs storage.rs tests)."""

from __future__ import annotations

import pytest

from multiraft.raft import (
    Compacted,
    ConfState,
    MemStorage,
    SnapshotOutOfDate,
    SnapshotTemporarilyUnavailable,
    Unavailable,
)
from multiraft.raft.eraftpb import Entry
from multiraft.raft.errors import LogTemporarilyUnavailable
from multiraft.raft.storage import GetEntriesContext, RaftState
from multiraft.testing.network import empty_entry, new_entry, new_snapshot


def _storage(ents: list[Entry]) -> MemStorage:
    """A storage whose log is `ents`, the first one being the snapshot/dummy position."""
    s = MemStorage()
    s.wl().snapshot_metadata.index = ents[0].index
    s.wl().snapshot_metadata.term = ents[0].term
    s.wl().entries = list(ents[1:])
    return s


ENTS = [empty_entry(3, 3), empty_entry(4, 4), empty_entry(5, 5)]
# The encoded size of one entry of the table below (all the same size).
U = empty_entry(4, 4).ByteSize()


@pytest.mark.parametrize(
    "idx, expect",
    [(2, Compacted), (3, 3), (4, 4), (5, 5), (6, Unavailable)],
)
def test_storage_term(idx: int, expect: object) -> None:
    s = _storage(ENTS)
    if isinstance(expect, int):
        assert s.term(idx) == expect
    else:
        with pytest.raises(expect):  # type: ignore[call-overload]
            s.term(idx)


def _size(e: Entry) -> int:
    return e.ByteSize()


@pytest.mark.parametrize(
    "lo, hi, max_size, expect",
    [
        (2, 6, None, Compacted),
        (3, 4, None, Compacted),
        (4, 5, None, [empty_entry(4, 4)]),
        (4, 6, None, [empty_entry(4, 4), empty_entry(5, 5)]),
        (4, 7, None, [empty_entry(4, 4), empty_entry(5, 5), empty_entry(6, 6)]),
        # even if max_size is zero, the first entry should be returned
        (4, 7, 0, [empty_entry(4, 4)]),
        # limit to 2
        (4, 7, 2 * U, [empty_entry(4, 4), empty_entry(5, 5)]),
        # limit to 2 (with a little slack)
        (4, 7, 2 * U + 1, [empty_entry(4, 4), empty_entry(5, 5)]),
        (4, 7, 3 * U - 1, [empty_entry(4, 4), empty_entry(5, 5)]),
        # all
        (4, 7, 3 * U, [empty_entry(4, 4), empty_entry(5, 5), empty_entry(6, 6)]),
    ],
)
def test_storage_entries(lo: int, hi: int, max_size: int | None, expect: object) -> None:
    assert all(_size(e) == U for e in [empty_entry(4, 4), empty_entry(5, 5), empty_entry(6, 6)])
    s = _storage([empty_entry(3, 3), empty_entry(4, 4), empty_entry(5, 5), empty_entry(6, 6)])
    if isinstance(expect, list):
        assert s.entries(lo, hi, max_size) == expect
    else:
        with pytest.raises(expect):  # type: ignore[call-overload]
            s.entries(lo, hi, max_size)


def test_storage_entries_past_last_is_a_caller_bug() -> None:
    s = _storage(ENTS)
    with pytest.raises(AssertionError):
        s.entries(4, 7)


def test_storage_last_first_index() -> None:
    s = _storage(ENTS)
    assert (s.first_index(), s.last_index()) == (4, 5)
    s.wl().append([empty_entry(5, 6)])
    assert (s.first_index(), s.last_index()) == (4, 6)


@pytest.mark.parametrize(
    "compact, wfirst, wterm, wlen",
    [(2, 4, 3, 2), (3, 4, 3, 2), (4, 4, 3, 2), (5, 5, 4, 1), (6, 6, 5, 0)],
)
def test_storage_compact(compact: int, wfirst: int, wterm: int, wlen: int) -> None:
    """Compacting drops the entries before `compact` (a no-op at or below the first index)
    and keeps the term of the entry before the first one readable."""
    s = _storage(ENTS)  # snapshot at (3, 3), entries 4 and 5
    s.wl().compact(compact)
    assert s.first_index() == wfirst
    assert s.term(wfirst - 1) == wterm
    assert len(s.wl().entries) == wlen
    with pytest.raises(Compacted):
        s.term(wfirst - 2)


def test_storage_compact_past_last_is_a_caller_bug() -> None:
    s = _storage(ENTS)
    with pytest.raises(AssertionError):
        s.wl().compact(7)


@pytest.mark.parametrize("idx, wterm", [(4, 4), (5, 5)])
def test_storage_create_snapshot(idx: int, wterm: int) -> None:
    cs = ConfState(voters=[1, 2, 3])
    s = _storage(ENTS)
    s.wl().set_conf_state(cs)
    s.wl().commit_to(idx)
    snap = s.snapshot(0, 0)
    assert (snap.metadata.index, snap.metadata.term, snap.metadata.conf_state) == (idx, wterm, cs)
    # A request for a more recent index than committed is answered with that index.
    assert s.snapshot(idx + 1, 0).metadata.index == idx + 1


@pytest.mark.parametrize(
    "ents, wentries",
    [
        ([empty_entry(3, 3), empty_entry(4, 4), empty_entry(5, 5)], [empty_entry(4, 4), empty_entry(5, 5)]),
        ([empty_entry(3, 3), empty_entry(6, 4), empty_entry(6, 5)], [empty_entry(6, 4), empty_entry(6, 5)]),
        (
            [empty_entry(3, 3), empty_entry(4, 4), empty_entry(5, 5), empty_entry(5, 6)],
            [empty_entry(4, 4), empty_entry(5, 5), empty_entry(5, 6)],
        ),
        # truncate incoming entries, truncate the existing entries and append
        ([empty_entry(4, 4), empty_entry(5, 5), empty_entry(5, 6)], [empty_entry(4, 4), empty_entry(5, 5), empty_entry(5, 6)]),
        # truncate the existing entries and append
        ([empty_entry(5, 5)], [empty_entry(4, 4), empty_entry(5, 5)]),
        # direct append
        ([empty_entry(5, 6)], [empty_entry(4, 4), empty_entry(5, 5), empty_entry(5, 6)]),
    ],
)
def test_storage_append(ents: list[Entry], wentries: list[Entry]) -> None:
    s = _storage(ENTS)
    to_append = [e for e in ents if e.index >= s.first_index()]
    s.wl().append(to_append)
    assert s.wl().entries == wentries


def test_storage_append_over_compacted_or_with_gap_is_a_caller_bug() -> None:
    s = _storage(ENTS)
    with pytest.raises(AssertionError):
        s.wl().append([empty_entry(3, 3)])
    with pytest.raises(AssertionError):
        s.wl().append([empty_entry(5, 7)])


def test_storage_apply_snapshot() -> None:
    nodes = [1, 2, 3]
    s = MemStorage.new_with_conf_state(ConfState(voters=nodes))
    snap = new_snapshot(4, 4, nodes)
    s.wl().apply_snapshot(snap)
    assert (s.first_index(), s.last_index(), s.term(4)) == (5, 4, 4)
    assert s.initial_state().hard_state.commit == 4
    # An older snapshot is refused.
    with pytest.raises(SnapshotOutOfDate):
        s.wl().apply_snapshot(new_snapshot(3, 3, nodes))


def test_new_with_conf_state_and_initial_state() -> None:
    s = MemStorage.new_with_conf_state(([1, 2], [3]))
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
    rs = s.initial_state()
    assert isinstance(rs, RaftState) and rs.initialized()
    assert list(rs.conf_state.voters) == [1, 2] and list(rs.conf_state.learners) == [3]
    assert not MemStorage().initial_state().initialized()
    with pytest.raises(AssertionError):
        s.initialize_with_conf_state(ConfState(voters=[1]))


def test_trigger_snap_unavailable_and_async_entries() -> None:
    s = _storage(ENTS)
    s.wl().commit_to(5)
    s.wl().trigger_snap_unavailable()
    with pytest.raises(SnapshotTemporarilyUnavailable):
        s.snapshot(0, 0)
    assert s.snapshot(0, 0).metadata.index == 5
    s.wl().trigger_log_unavailable(True)
    ctx = GetEntriesContext(GetEntriesContext.SEND_APPEND, to=2, term=5, can_async=True)
    with pytest.raises(LogTemporarilyUnavailable):
        s.entries(4, 6, None, ctx)
    assert s.wl().take_get_entries_context() is ctx
    # A synchronous context is still answered.
    assert s.entries(4, 6, None, GetEntriesContext.empty(False)) == [empty_entry(4, 4), empty_entry(5, 5)]
    assert new_entry(1, 1, b"x").data == b"x"
