"""The helpers of `multiraft.raft.util` (raft-rs `util.rs` and its doc examples)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.raft.eraftpb import Entry, EntryType, Message
from multiraft.raft.util import (
    NO_LIMIT,
    Union,
    entry_approximate_size,
    is_continuous_ents,
    limit_size,
    majority,
    quorum,
)


def test_limit_size_doc_example() -> None:
    """raft-rs's `limit_size` doc example: five ~100-byte entries cut to 220 bytes keep two,
    and at least one entry is always kept."""
    entries = [Entry(data=b"*" * 100) for _ in range(5)]
    limit_size(entries, 220)
    assert len(entries) == 2
    limit_size(entries, 0)
    assert len(entries) == 1


@pytest.mark.parametrize("max_size", [None, NO_LIMIT])
def test_limit_size_no_limit(max_size: int | None) -> None:
    entries = [Entry(data=b"*" * 100) for _ in range(5)]
    limit_size(entries, max_size)
    assert len(entries) == 5


@pytest.mark.parametrize(
    "msg_indexes, ents_indexes, want",
    [([], [], True), ([1, 2], [], True), ([], [5], True), ([1, 2], [3, 4], True),
     ([1, 2], [4], False), ([1, 2], [2, 3], False)],
)
def test_is_continuous_ents(msg_indexes: list[int], ents_indexes: list[int], want: bool) -> None:
    msg = Message(entries=[Entry(index=i) for i in msg_indexes])
    ents = [Entry(index=i) for i in ents_indexes]
    assert is_continuous_ents(msg, ents) is want


@given(st.binary(max_size=300), st.binary(max_size=300), st.integers(0, 1 << 20),
       st.sampled_from([EntryType.EntryNormal, EntryType.EntryConfChangeV2]))
def test_entry_approximate_size(data: bytes, context: bytes, index: int, entry_type: int) -> None:
    """The payloads plus 12 bytes: within a few bytes of the encoded size for small indexes
    (raft-rs's estimate, not a bound)."""
    e = Entry(data=data, context=context, index=index, term=1, entry_type=entry_type)  # type: ignore[arg-type]
    assert entry_approximate_size(e) == len(data) + len(context) + 12
    assert abs(entry_approximate_size(e) - e.ByteSize()) <= 12


def test_quorum_is_majority() -> None:
    assert [quorum(n) for n in range(0, 8)] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert all(quorum(n) == majority(n) for n in range(100))


@given(st.frozensets(st.integers(1, 20)), st.frozensets(st.integers(1, 20)), st.integers(0, 21))
def test_union_matches_the_set_union(first: frozenset[int], second: frozenset[int], id: int) -> None:
    """`Union` answers as the built union would, without building it."""
    u = Union(first, second)
    both = first | second
    assert u.contains(id) is (id in both) and (id in u) is (id in both)
    assert sorted(u.iter()) == sorted(both) and sorted(u) == sorted(both)
    assert u.len() == len(u) == len(both)
    assert u.is_empty() is (not both)
