"""MemoryEngine-specific behaviour: crash simulation, fault injection, copy-on-write."""

from __future__ import annotations

import pytest

from multiraft.engine import CF_KV, CF_META, EngineClosed, MemoryEngine, WriteBatch, WriteFailed


def write(engine: MemoryEngine, *pairs: tuple[bytes, bytes | None], sync: bool = True) -> None:
    wb = WriteBatch()
    for k, v in pairs:
        if v is None:
            wb.delete(CF_KV, k)
        else:
            wb.put(CF_KV, k, v)
    engine.write(wb, sync=sync)


def test_crash_loses_only_unsynced_writes() -> None:
    engine = MemoryEngine()
    write(engine, (b"a", b"1"), (b"b", b"1"))
    write(engine, (b"a", b"2"), (b"c", b"2"), (b"b", None), sync=False)
    wb = WriteBatch()
    wb.delete_range(CF_KV, b"a", b"b")
    wb.put(CF_META, b"m", b"x")
    engine.write(wb, sync=False)
    assert engine.scan(CF_KV) == [(b"c", b"2")]
    assert engine.unsynced_writes() > 0
    engine.crash()
    assert engine.scan(CF_KV) == [(b"a", b"1"), (b"b", b"1")]
    assert engine.get(CF_META, b"m") is None
    assert engine.unsynced_writes() == 0


def test_a_synced_write_makes_earlier_writes_durable() -> None:
    engine = MemoryEngine()
    write(engine, (b"a", b"1"), sync=False)
    write(engine, (b"b", b"2"), sync=True)
    write(engine, (b"c", b"3"), sync=False)
    engine.crash()
    assert engine.scan(CF_KV) == [(b"a", b"1"), (b"b", b"2")]


def test_an_empty_synced_batch_flushes() -> None:
    engine = MemoryEngine()
    write(engine, (b"a", b"1"), sync=False)
    engine.write(WriteBatch(), sync=True)
    engine.crash()
    assert engine.get(CF_KV, b"a") == b"1"


def test_crash_closes_snapshots_and_keeps_the_engine_usable() -> None:
    engine = MemoryEngine()
    write(engine, (b"a", b"1"))
    snap = engine.snapshot()
    write(engine, (b"a", b"2"), sync=False)
    engine.crash()
    with pytest.raises(EngineClosed):
        snap.get(CF_KV, b"a")
    assert engine.get(CF_KV, b"a") == b"1"
    write(engine, (b"b", b"2"))
    assert engine.get(CF_KV, b"b") == b"2"


def test_fail_next_write() -> None:
    engine = MemoryEngine()
    engine.fail_next_write()
    wb = WriteBatch()
    wb.put(CF_KV, b"a", b"1")
    with pytest.raises(WriteFailed):
        engine.write(wb)
    assert not wb.committed
    assert engine.get(CF_KV, b"a") is None
    assert engine.stats.commits == 0
    engine.write(wb)
    assert engine.get(CF_KV, b"a") == b"1"
    engine.fail_next_write(OSError(28, "No space left on device"))
    with pytest.raises(OSError):
        engine.write(WriteBatch())


def test_copy_on_write_copies_once_per_snapshot() -> None:
    engine = MemoryEngine()
    write(engine, (b"a", b"1"))
    table = engine._tables[CF_KV]
    with engine.snapshot():
        write(engine, (b"a", b"2"))
        copied = engine._tables[CF_KV]
        assert copied is not table
        write(engine, (b"a", b"3"))
        assert engine._tables[CF_KV] is copied
    # A table no snapshot shares is written in place.
    meta = engine._tables[CF_META]
    wb = WriteBatch()
    wb.put(CF_META, b"m", b"1")
    engine.write(wb)
    assert engine._tables[CF_META] is meta
    assert "kv=1" in repr(engine)
