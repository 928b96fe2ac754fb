"""The id allocator: unique per store, never reused across restarts, store id in the high bits."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiraft.engine import LmdbEngine, MemoryEngine
from multiraft.store.ids import COUNTER_BITS, IdAllocator


def test_ids_are_unique_and_carry_the_store_id() -> None:
    e = MemoryEngine()
    a = IdAllocator(e, 3, batch=10)
    ids = [a.next_id() for _ in range(35)]
    assert len(set(ids)) == 35
    assert all(i >> COUNTER_BITS == 3 for i in ids)
    assert 0 not in ids and all(i & ((1 << COUNTER_BITS) - 1) > 0 for i in ids)
    # Two stores never collide.
    b = IdAllocator(MemoryEngine(), 4)
    assert not set(ids) & {b.next_id() for _ in range(35)}


def test_ids_are_not_reused_after_restart(tmp_path: Path) -> None:
    e = LmdbEngine(tmp_path / "db")
    a = IdAllocator(e, 1, batch=10)
    first = [a.next_id() for _ in range(15)]
    e.close()
    e2 = LmdbEngine(tmp_path / "db")
    b = IdAllocator(e2, 1, batch=10)
    second = [b.next_id() for _ in range(15)]
    e2.close()
    assert not set(first) & set(second)
    assert min(second) > max(first)


def test_ceiling_is_persisted_before_use() -> None:
    """After a crash that loses every unsynced write, the ids handed out are still covered."""
    e = MemoryEngine()
    a = IdAllocator(e, 2, batch=5)
    used = [a.next_id() for _ in range(7)]
    e.crash()
    b = IdAllocator(e, 2, batch=5)
    assert not set(used) & {b.next_id() for _ in range(7)}


def test_bad_store_id() -> None:
    with pytest.raises(ValueError):
        IdAllocator(MemoryEngine(), 0)
