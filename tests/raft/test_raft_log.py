"""Unit tables for `RaftLog` (etcd log_test.go / raft-rs raft_log.rs tests)."""

from __future__ import annotations

import pytest

from multiraft.raft import Compacted, ConfState, MemStorage
from multiraft.raft.eraftpb import Entry
from multiraft.raft.raft_log import RaftLog
from multiraft.testing.network import empty_entry, new_entry, new_snapshot

E = empty_entry


def _log(ents: list[Entry] | None = None) -> RaftLog[MemStorage]:
    s = MemStorage.new_with_conf_state(ConfState(voters=[1]))
    if ents:
        s.wl().append(list(ents))
    return RaftLog(s)


PREV = [E(1, 1), E(2, 2), E(3, 3)]


@pytest.mark.parametrize(
    "ents, wconflict",
    [
        # no conflict, empty ent
        ([], 0),
        # no conflict
        ([E(1, 1), E(2, 2), E(3, 3)], 0),
        ([E(2, 2), E(3, 3)], 0),
        ([E(3, 3)], 0),
        # no conflict, but has new entries
        ([E(1, 1), E(2, 2), E(3, 3), E(4, 4), E(4, 5)], 4),
        ([E(2, 2), E(3, 3), E(4, 4), E(4, 5)], 4),
        ([E(3, 3), E(4, 4), E(4, 5)], 4),
        ([E(4, 4), E(4, 5)], 4),
        # conflicts with existing entries
        ([E(4, 1), E(4, 2)], 1),
        ([E(1, 2), E(4, 3), E(4, 4)], 2),
        ([E(1, 3), E(2, 4), E(4, 5), E(4, 6)], 3),
    ],
)
def test_find_conflict(ents: list[Entry], wconflict: int) -> None:
    log = _log()
    log.append(PREV)
    assert log.find_conflict(ents) == wconflict


@pytest.mark.parametrize(
    "ents, index, term, want",
    [
        # Log starts from index 1.
        ([E(2, 1), E(2, 2), E(2, 3), E(4, 4), E(4, 5)], 100, 2, (100, None)),
        ([E(2, 1), E(2, 2), E(2, 3), E(4, 4), E(4, 5)], 5, 6, (5, 4)),
        ([E(2, 1), E(2, 2), E(2, 3), E(4, 4), E(4, 5)], 5, 4, (5, 4)),
        ([E(2, 1), E(2, 2), E(2, 3), E(4, 4), E(4, 5)], 5, 3, (3, 2)),
        ([E(2, 1), E(2, 2), E(2, 3), E(4, 4), E(4, 5)], 5, 2, (3, 2)),
        ([E(2, 1), E(2, 2), E(2, 3), E(4, 4), E(4, 5)], 5, 1, (0, 0)),
        ([E(2, 1), E(2, 2), E(2, 3), E(4, 4), E(4, 5)], 1, 2, (1, 2)),
        ([E(2, 1), E(2, 2), E(2, 3), E(4, 4), E(4, 5)], 1, 1, (0, 0)),
        ([E(2, 1), E(2, 2), E(2, 3), E(4, 4), E(4, 5)], 0, 0, (0, 0)),
    ],
)
def test_find_conflict_by_term(ents: list[Entry], index: int, term: int, want: tuple[int, int | None]) -> None:
    log = _log(ents)
    assert log.find_conflict_by_term(index, term) == want


def test_find_conflict_by_term_after_compaction() -> None:
    """Terms below the compaction point cannot be read: the search stops there."""
    s = MemStorage.new_with_conf_state(ConfState(voters=[1]))
    s.wl().apply_snapshot(new_snapshot(10, 3, [1]))
    s.wl().append([E(3, 11), E(3, 12), E(5, 13), E(5, 14), E(5, 15)])
    log = RaftLog(s)
    assert log.find_conflict_by_term(15, 4) == (12, 3)
    # Below the compaction point terms read as 0 (outside the log): the search ends there.
    assert log.find_conflict_by_term(15, 2) == (9, 0)


@pytest.mark.parametrize(
    "last_index, term, wup",
    [
        # greater term, ignore last_index
        (3 - 1, 4, True),
        (3, 4, True),
        (3 + 1, 4, True),
        # smaller term, ignore last_index
        (3 - 1, 2, False),
        (3, 2, False),
        (3 + 1, 2, False),
        # equal term, equal or larger last_index wins
        (3 - 1, 3, False),
        (3, 3, True),
        (3 + 1, 3, True),
    ],
)
def test_is_up_to_date(last_index: int, term: int, wup: bool) -> None:
    log = _log()
    log.append(PREV)
    assert log.is_up_to_date(last_index, term) == wup


@pytest.mark.parametrize(
    "ents, windex, wents, wunstable",
    [
        ([], 2, [E(1, 1), E(2, 2)], 3),
        ([E(2, 3)], 3, [E(1, 1), E(2, 2), E(2, 3)], 3),
        # conflicts with index 1
        ([E(2, 1)], 1, [E(2, 1)], 1),
        # conflicts with index 2
        ([E(3, 2), E(3, 3)], 3, [E(1, 1), E(3, 2), E(3, 3)], 2),
    ],
)
def test_append(ents: list[Entry], windex: int, wents: list[Entry], wunstable: int) -> None:
    s = MemStorage.new_with_conf_state(ConfState(voters=[1]))
    s.wl().append([E(1, 1), E(2, 2)])
    log = RaftLog(s)
    assert log.append(ents) == windex
    assert log.entries(1, None) == wents
    assert log.unstable.offset == wunstable


LAST_INDEX, LAST_TERM, COMMIT = 3, 3, 1


@pytest.mark.parametrize(
    "log_term, index, committed, ents, wlasti, wappend, wcommit, wpanic",
    [
        # not match: term is different
        (LAST_TERM - 1, LAST_INDEX, LAST_INDEX, [E(LAST_TERM + 1, LAST_INDEX + 1)], 0, False, COMMIT, False),
        # not match: index out of bound
        (LAST_TERM, LAST_INDEX + 1, LAST_INDEX, [E(LAST_TERM + 1, LAST_INDEX + 2)], 0, False, COMMIT, False),
        # match with the last existing entry
        (LAST_TERM, LAST_INDEX, LAST_INDEX, [], LAST_INDEX, True, LAST_INDEX, False),
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 1, [], LAST_INDEX, True, LAST_INDEX, False),
        (LAST_TERM, LAST_INDEX, LAST_INDEX - 1, [], LAST_INDEX, True, LAST_INDEX - 1, False),
        (LAST_TERM, LAST_INDEX, 0, [], LAST_INDEX, True, COMMIT, False),
        (0, 0, LAST_INDEX, [], 0, True, COMMIT, False),
        (LAST_TERM, LAST_INDEX, LAST_INDEX, [E(4, LAST_INDEX + 1)], LAST_INDEX + 1, True, LAST_INDEX, False),
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 1, [E(4, LAST_INDEX + 1)], LAST_INDEX + 1, True, LAST_INDEX + 1, False),
        # do not increase commit higher than lastnewi
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 2, [E(4, LAST_INDEX + 1)], LAST_INDEX + 1, True, LAST_INDEX + 1, False),
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 2, [E(4, LAST_INDEX + 1), E(4, LAST_INDEX + 2)], LAST_INDEX + 2, True, LAST_INDEX + 2, False),
        # match with the entry in the middle
        (LAST_TERM - 1, LAST_INDEX - 1, LAST_INDEX, [E(4, LAST_INDEX)], LAST_INDEX, True, LAST_INDEX, False),
        (LAST_TERM - 2, LAST_INDEX - 2, LAST_INDEX, [E(4, LAST_INDEX - 1)], LAST_INDEX - 1, True, LAST_INDEX - 1, False),
        # conflict with an existing committed entry
        (LAST_TERM - 3, LAST_INDEX - 3, LAST_INDEX, [E(4, LAST_INDEX - 2)], LAST_INDEX - 2, True, LAST_INDEX - 2, True),
        (LAST_TERM - 2, LAST_INDEX - 2, LAST_INDEX, [E(4, LAST_INDEX - 1), E(4, LAST_INDEX)], LAST_INDEX, True, LAST_INDEX, False),
    ],
)
def test_maybe_append(
    log_term: int, index: int, committed: int, ents: list[Entry], wlasti: int, wappend: bool, wcommit: int, wpanic: bool
) -> None:
    log = _log()
    log.append(PREV)
    log.committed = COMMIT
    if wpanic:
        with pytest.raises(AssertionError):
            log.maybe_append(index, log_term, committed, ents)
        return
    res = log.maybe_append(index, log_term, committed, ents)
    assert (res is not None) == wappend
    if res is not None:
        assert res[1] == wlasti
    assert log.committed == wcommit
    if wappend and ents:
        got = log.slice(log.last_index() - len(ents) + 1, log.last_index() + 1, None)
        assert got == ents


def test_maybe_append_lowers_persisted_on_conflict() -> None:
    s = MemStorage.new_with_conf_state(ConfState(voters=[1]))
    s.wl().append(list(PREV))
    log = RaftLog(s)
    assert log.persisted == 3
    log.maybe_append(1, 1, 0, [E(4, 2)])
    assert log.persisted == 1


@pytest.mark.parametrize(
    "applied, has_next, next_ents",
    [
        (0, True, [E(1, 4), E(1, 5)]),
        (3, True, [E(1, 4), E(1, 5)]),
        (4, True, [E(1, 5)]),
        (5, False, None),
    ],
)
def test_has_next_ents_and_next_ents(applied: int, has_next: bool, next_ents: list[Entry] | None) -> None:
    """Only entries that are both committed and persisted are applicable."""
    s = MemStorage.new_with_conf_state(ConfState(voters=[1]))
    s.wl().apply_snapshot(new_snapshot(3, 1, [1]))
    log = RaftLog(s)
    log.append([E(1, 4), E(1, 5), E(1, 6)])
    log.stable_entries(6, 1)
    s.wl().append([E(1, 4), E(1, 5), E(1, 6)])
    log.maybe_persist(6, 1)
    log.maybe_commit(5, 1)
    log.applied_to(applied)
    assert log.has_next_entries() == has_next
    assert log.next_entries() == next_ents


def test_next_entries_wait_for_persistence() -> None:
    log = _log()
    log.append([E(1, 1), E(1, 2)])
    log.commit_to(2)
    # Committed (by a quorum) but not persisted here: nothing to apply yet.
    assert not log.has_next_entries() and log.next_entries() is None
    log.stable_entries(2, 1)
    log.store.wl().append([E(1, 1), E(1, 2)])
    assert log.maybe_persist(2, 1)
    assert log.next_entries() == [E(1, 1), E(1, 2)]


@pytest.mark.parametrize(
    "commit, wcommit, wpanic",
    [(3, 3, False), (1, 2, False), (4, 0, True)],
)
def test_commit_to(commit: int, wcommit: int, wpanic: bool) -> None:
    log = _log()
    log.append(PREV)
    log.committed = 2
    if wpanic:
        with pytest.raises(AssertionError):
            log.commit_to(commit)
    else:
        log.commit_to(commit)
        assert log.committed == wcommit


def test_maybe_persist_aba() -> None:
    """An entry persisted at an index that was rewritten in a newer term in the meantime must
    not count as persisted (raft-rs maybe_persist; etcd-io/raft#8)."""
    s = MemStorage.new_with_conf_state(ConfState(voters=[1]))
    log = RaftLog(s)
    log.append([E(1, 1), E(1, 2)])
    log.stable_entries(2, 1)  # handed to the writer
    # Before the write lands, a new leader rewrites index 2 in term 2.
    log.append([E(2, 2)])
    s.wl().append([E(1, 1), E(1, 2)])  # the old write lands
    assert not log.maybe_persist(2, 1)  # 2 >= first unstable index: not persisted
    assert log.maybe_persist(1, 1)
    assert log.persisted == 1


@pytest.mark.parametrize("offset, num", [(100, 100)])
def test_term_and_slice(offset: int, num: int) -> None:
    s = MemStorage.new_with_conf_state(ConfState(voters=[1]))
    s.wl().apply_snapshot(new_snapshot(offset, 1, [1]))
    log = RaftLog(s)
    half = offset + num // 2
    ents = [new_entry(i, i) for i in range(offset + 1, offset + num)]
    s.wl().append(ents[: half - offset])
    log2 = RaftLog(s)
    log2.append(ents[half - offset :])
    assert log2.term(offset - 1) == 0
    assert log2.term(offset) == 1
    assert log2.term(half) == half
    assert log2.term(offset + num - 1) == offset + num - 1
    assert log2.term(offset + num) == 0
    assert log2.slice(half - 1, half + 1, None) == [new_entry(half - 1, half - 1), new_entry(half, half)]
    assert log2.slice(half, half, None) == []
    with pytest.raises(Compacted):
        log2.slice(offset, offset + 1, None)
    with pytest.raises(AssertionError):
        log2.slice(half, offset + num + 1, None)
    # A size limit keeps at least one entry, spanning storage and unstable parts.
    one = new_entry(half, half).ByteSize()
    assert len(log2.slice(half - 1, half + 2, 2 * one)) == 2
    assert len(log2.slice(half - 1, half + 2, 0)) == 1
    # A log made before the storage grew reads the new entries too.
    assert log.last_index() == offset + num // 2


def test_restore_snapshot_sets_marks() -> None:
    log = _log([E(1, 1)])
    log.restore(new_snapshot(10, 2, [1]))
    assert (log.committed, log.persisted, log.first_index(), log.last_index()) == (10, 1, 11, 10)
    assert log.term(10) == 2
    assert log.pending_snapshot() is not None
