"""The `Engine` contract (multiraft/engine/engine.py), on both engines."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multiraft.engine import (
    ALL_CFS,
    CF_APPLY_STATE,
    CF_KV,
    CF_META,
    CF_RAFT_LOG,
    Engine,
    EngineClosed,
    WriteBatch,
)
from multiraft.engine.keys import MAX_KEY_SIZE

from .conftest import EngineFactory


def put(engine: Engine, cf: str, *pairs: tuple[bytes, bytes]) -> None:
    wb = WriteBatch()
    for k, v in pairs:
        wb.put(cf, k, v)
    engine.write(wb)


def keys_of(rows: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [k for k, _ in rows]


# -- point operations ---------------------------------------------------------------------


def test_put_get_delete(engine: Engine) -> None:
    assert engine.get(CF_KV, b"a") is None
    put(engine, CF_KV, (b"a", b"1"), (b"b", b"2"))
    assert engine.get(CF_KV, b"a") == b"1"
    assert engine.get(CF_KV, b"b") == b"2"
    put(engine, CF_KV, (b"a", b"3"))
    assert engine.get(CF_KV, b"a") == b"3"
    wb = WriteBatch()
    wb.delete(CF_KV, b"a")
    wb.delete(CF_KV, b"missing")
    engine.write(wb)
    assert engine.get(CF_KV, b"a") is None
    assert engine.get(CF_KV, b"b") == b"2"


def test_empty_value_is_a_value(engine: Engine) -> None:
    put(engine, CF_KV, (b"a", b""))
    assert engine.get(CF_KV, b"a") == b""


def test_column_families_are_separate(engine: Engine) -> None:
    wb = WriteBatch()
    for i, cf in enumerate(ALL_CFS):
        wb.put(cf, b"k", bytes([i]))
    engine.write(wb)
    for i, cf in enumerate(ALL_CFS):
        assert engine.get(cf, b"k") == bytes([i])
        assert engine.scan(cf) == [(b"k", bytes([i]))]
    wb = WriteBatch()
    wb.delete_range(CF_KV, b"\x00", None)
    engine.write(wb)
    assert engine.get(CF_KV, b"k") is None
    assert engine.get(CF_META, b"k") == bytes([4])


@pytest.mark.parametrize("key", [b"", b"x" * (MAX_KEY_SIZE + 1)])
def test_invalid_keys_are_refused_by_both_engines(engine: Engine, key: bytes) -> None:
    wb = WriteBatch()
    with pytest.raises(ValueError):
        wb.put(CF_KV, key, b"v")
    with pytest.raises(ValueError):
        wb.delete(CF_KV, key)
    with pytest.raises(ValueError):
        wb.put_many(CF_KV, [(b"ok", b"v"), (key, b"v")])
    assert wb.is_empty()
    with pytest.raises(ValueError):
        engine.get(CF_KV, key)


def test_max_size_key_works(engine: Engine) -> None:
    key = b"k" * MAX_KEY_SIZE
    put(engine, CF_KV, (key, b"v"))
    assert engine.get(CF_KV, key) == b"v"
    # Scan bounds may be longer than any key.
    assert engine.scan(CF_KV, key + b"\x00") == []
    assert engine.scan(CF_KV, b"a", key + b"\x00") == [(key, b"v")]
    assert engine.scan(CF_KV, b"a", key + b"\x00", reverse=True) == [(key, b"v")]


def test_unknown_column_family(engine: Engine) -> None:
    with pytest.raises(ValueError):
        WriteBatch().put("nope", b"k", b"v")
    with pytest.raises(ValueError):
        engine.get("nope", b"k")
    with pytest.raises(ValueError):
        engine.scan("nope")


# -- delete_range -------------------------------------------------------------------------


def fill(engine: Engine, cf: str = CF_KV, keys: str = "abcdefgh") -> None:
    put(engine, cf, *[(k.encode(), k.upper().encode()) for k in keys])


def test_delete_range_is_half_open(engine: Engine) -> None:
    fill(engine)
    wb = WriteBatch()
    wb.delete_range(CF_KV, b"b", b"e")
    engine.write(wb)
    assert keys_of(engine.scan(CF_KV)) == [b"a", b"e", b"f", b"g", b"h"]


def test_delete_range_open_end_and_bounds_between_keys(engine: Engine) -> None:
    fill(engine)
    wb = WriteBatch()
    wb.delete_range(CF_KV, b"bb", b"dd")  # removes c, d
    wb.delete_range(CF_KV, b"g", None)  # removes g, h
    engine.write(wb)
    assert keys_of(engine.scan(CF_KV)) == [b"a", b"b", b"e", b"f"]


def test_delete_range_empty_or_inverted_is_a_no_op(engine: Engine) -> None:
    fill(engine)
    wb = WriteBatch()
    wb.delete_range(CF_KV, b"c", b"c")
    wb.delete_range(CF_KV, b"e", b"b")
    assert len(wb) == 0
    wb.delete_range(CF_KV, b"x", b"z")  # a range with no keys in it
    engine.write(wb)
    assert len(engine.scan(CF_KV)) == 8


def test_operations_apply_in_order_within_a_cf(engine: Engine) -> None:
    fill(engine, keys="ab")
    wb = WriteBatch()
    wb.put(CF_KV, b"c", b"1")
    wb.delete_range(CF_KV, b"a", b"z")  # removes a, b and the c just put
    wb.put(CF_KV, b"d", b"2")  # survives
    wb.put(CF_KV, b"d", b"3")  # last put wins
    wb.delete(CF_KV, b"e")
    wb.put(CF_KV, b"e", b"4")
    wb.put(CF_META, b"a", b"m")  # another CF is untouched by the range delete
    engine.write(wb)
    assert engine.scan(CF_KV) == [(b"d", b"3"), (b"e", b"4")]
    assert engine.scan(CF_META) == [(b"a", b"m")]


# -- scans -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end, limit, reverse, expected",
    [
        (b"", None, None, False, "abcdefgh"),
        (b"", None, None, True, "hgfedcba"),
        (b"c", b"f", None, False, "cde"),
        (b"c", b"f", None, True, "edc"),
        (b"cc", b"ff", None, False, "def"),
        (b"cc", b"ff", None, True, "fed"),
        (b"c", None, 2, False, "cd"),
        (b"", b"f", 2, True, "ed"),  # reverse + limit: the last keys of the range
        (b"", None, 0, False, ""),
        (b"", None, 100, True, "hgfedcba"),
        (b"f", b"c", None, False, ""),
        (b"f", b"c", None, True, ""),
        (b"z", None, None, False, ""),
        (b"z", None, None, True, ""),
        (b"", b"a", None, True, ""),
        (b"", b"a", None, False, ""),
        (b"h", b"i", None, True, "h"),
        (b"\x00", b"\xff", 3, False, "abc"),
    ],
)
def test_scan(
    engine: Engine,
    start: bytes,
    end: bytes | None,
    limit: int | None,
    reverse: bool,
    expected: str,
) -> None:
    fill(engine)
    rows = engine.scan(CF_KV, start, end, limit, reverse)
    assert keys_of(rows) == [c.encode() for c in expected]
    assert all(v == k.upper() for k, v in rows)


def test_scan_empty_cf(engine: Engine) -> None:
    assert engine.scan(CF_APPLY_STATE) == []
    assert engine.scan(CF_APPLY_STATE, reverse=True) == []


def test_scan_orders_bytewise_like_big_endian_keys(engine: Engine) -> None:
    from multiraft.engine.keys import raft_log_bounds, raft_log_key

    wb = WriteBatch()
    for region in (1, 2, 256):
        for index in (1, 2, 255, 256, 65536):
            wb.put(CF_RAFT_LOG, raft_log_key(region, index), b"")
    engine.write(wb)
    start, end = raft_log_bounds(2)
    assert keys_of(engine.scan(CF_RAFT_LOG, start, end)) == [
        raft_log_key(2, i) for i in (1, 2, 255, 256, 65536)
    ]
    assert keys_of(engine.scan(CF_RAFT_LOG, start, end, 1, True)) == [raft_log_key(2, 65536)]


# -- batches ------------------------------------------------------------------------------


def test_batch_size_accounting() -> None:
    wb = WriteBatch()
    assert wb.is_empty() and len(wb) == 0 and wb.approximate_size() == 0
    wb.put(CF_KV, b"key", b"value")
    wb.put_many(CF_KV, [(b"k2", b"v2"), (b"k3", b"v3")])
    wb.delete(CF_KV, b"key")
    wb.delete_range(CF_KV, b"a", b"b")
    assert len(wb) == 5
    assert not wb.is_empty()
    assert wb.approximate_size() >= len(b"keyvaluek2v2k3v3keyab")
    assert "5 ops" in repr(wb)


def test_batch_is_written_once_and_frozen_after(engine: Engine) -> None:
    wb = WriteBatch()
    wb.put(CF_KV, b"a", b"1")
    assert not wb.committed
    engine.write(wb)
    assert wb.committed
    with pytest.raises(ValueError):
        engine.write(wb)
    with pytest.raises(ValueError):
        wb.put(CF_KV, b"b", b"2")
    with pytest.raises(ValueError):
        wb.add_commit_hook(lambda: None)


def test_empty_batch_commits_without_counting(engine: Engine) -> None:
    before = engine.stats.commits
    wb = WriteBatch()
    engine.write(wb)
    assert wb.committed
    assert engine.stats.commits == before


def test_commit_hooks_run_after_commit_in_order_once(engine: Engine) -> None:
    ran: list[int] = []
    wb = WriteBatch()
    wb.put(CF_KV, b"a", b"1")
    wb.add_commit_hook(lambda: ran.append(1))
    wb.add_commit_hook(lambda: ran.append(2))
    with pytest.raises(AssertionError, match="not committed"):
        wb.run_commit_hooks()
    engine.write(wb)
    assert ran == []  # the engine never runs them
    wb.run_commit_hooks()
    assert ran == [1, 2]
    with pytest.raises(AssertionError, match="twice"):
        wb.run_commit_hooks()


def test_stats_count_commits(engine: Engine) -> None:
    put(engine, CF_KV, (b"a", b"1"), (b"b", b"2"))
    put(engine, CF_KV, (b"c", b"3"))
    assert engine.stats.commits == 2
    assert engine.stats.ops == 3
    assert engine.stats.synced_commits == 2


def test_batch_is_atomic_for_concurrent_readers(engine: Engine) -> None:
    """A reader never sees part of a batch: every batch sets all keys to the same value."""
    keys = [b"k%03d" % i for i in range(50)]
    put(engine, CF_KV, *[(k, b"0") for k in keys])
    stop = threading.Event()
    torn: list[set[bytes]] = []

    def reader() -> None:
        while not stop.is_set():
            values = {v for _, v in engine.scan(CF_KV)}
            if len(values) != 1:
                torn.append(values)
            with engine.snapshot() as snap:
                values = {snap.get(CF_KV, k) or b"" for k in keys}
            if len(values) != 1:
                torn.append(values)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(1, 60):
            wb = WriteBatch()
            # Half via a range delete + puts, half via overwrites: both must be atomic.
            if i % 2:
                wb.delete_range(CF_KV, b"k", b"l")
            for k in keys:
                wb.put(CF_KV, k, b"%d" % i)
            engine.write(wb, sync=False)
    finally:
        stop.set()
        t.join()
    assert torn == []


# -- snapshots ----------------------------------------------------------------------------


def test_snapshot_isolation(engine: Engine) -> None:
    fill(engine, keys="abc")
    snap = engine.snapshot()
    wb = WriteBatch()
    wb.put(CF_KV, b"a", b"new")
    wb.delete(CF_KV, b"b")
    wb.put(CF_KV, b"d", b"D")
    wb.put(CF_META, b"m", b"M")
    engine.write(wb)
    assert snap.get(CF_KV, b"a") == b"A"
    assert snap.get(CF_KV, b"b") == b"B"
    assert snap.get(CF_KV, b"d") is None
    assert snap.get(CF_META, b"m") is None
    assert keys_of(snap.scan(CF_KV)) == [b"a", b"b", b"c"]
    assert keys_of(snap.scan(CF_KV, reverse=True, limit=1)) == [b"c"]
    assert engine.get(CF_KV, b"a") == b"new"
    assert keys_of(engine.scan(CF_KV)) == [b"a", b"c", b"d"]
    snap.close()
    snap.close()  # idempotent
    with pytest.raises(EngineClosed):
        snap.get(CF_KV, b"a")
    with pytest.raises(EngineClosed):
        snap.scan(CF_KV)


def test_snapshots_are_independent(engine: Engine) -> None:
    snaps = []
    for i in range(3):
        put(engine, CF_KV, (b"k", b"%d" % i))
        snaps.append(engine.snapshot())
    put(engine, CF_KV, (b"k", b"3"))
    assert [s.get(CF_KV, b"k") for s in snaps] == [b"0", b"1", b"2"]
    snaps[1].close()
    put(engine, CF_KV, (b"k", b"4"))
    assert snaps[0].get(CF_KV, b"k") == b"0"
    assert snaps[2].get(CF_KV, b"k") == b"2"
    for s in snaps:
        s.close()


def test_snapshot_is_a_context_manager(engine: Engine) -> None:
    fill(engine, keys="a")
    with engine.snapshot() as snap:
        put(engine, CF_KV, (b"a", b"x"))
        assert snap.get(CF_KV, b"a") == b"A"
    with pytest.raises(EngineClosed):
        snap.get(CF_KV, b"a")


# -- lifecycle ----------------------------------------------------------------------------


def test_closed_engine_refuses_everything(engine_factory: EngineFactory) -> None:
    engine = engine_factory.open()
    fill(engine, keys="a")
    snap = engine.snapshot()
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(EngineClosed):
        engine.get(CF_KV, b"a")
    with pytest.raises(EngineClosed):
        engine.scan(CF_KV)
    with pytest.raises(EngineClosed):
        engine.write(WriteBatch())
    with pytest.raises(EngineClosed):
        engine.snapshot()
    with pytest.raises(EngineClosed):
        snap.get(CF_KV, b"a")
    snap.close()


def test_reopen_keeps_everything(engine_factory: EngineFactory) -> None:
    engine = engine_factory.open()
    fill(engine)
    wb = WriteBatch()
    wb.delete_range(CF_KV, b"c", b"e")
    wb.put(CF_META, b"store_ident", b"7")
    engine.write(wb)
    engine = engine_factory.reopen()
    assert keys_of(engine.scan(CF_KV)) == [b"a", b"b", b"e", b"f", b"g", b"h"]
    assert engine.get(CF_META, b"store_ident") == b"7"


# -- model test ---------------------------------------------------------------------------

_key = st.binary(min_size=1, max_size=3)
_op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from([CF_KV, CF_META]), _key, st.binary(max_size=4)),
    st.tuples(st.just("delete"), st.sampled_from([CF_KV, CF_META]), _key, st.just(b"")),
    st.tuples(st.just("range"), st.sampled_from([CF_KV, CF_META]), _key, _key),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(st.lists(_op, max_size=8), max_size=6),
    bounds=st.tuples(st.binary(max_size=2), st.one_of(st.none(), _key)),
    limit=st.one_of(st.none(), st.integers(0, 5)),
)
def test_engine_matches_a_dict_model(
    engine: Engine,
    batches: list[list[tuple[str, str, bytes, bytes]]],
    bounds: tuple[bytes, bytes | None],
    limit: int | None,
) -> None:
    # The fixture engine is shared by every example: start from empty.
    wb = WriteBatch()
    for cf in (CF_KV, CF_META):
        wb.delete_range(cf, b"\x00", None)
    engine.write(wb, sync=False)
    model: dict[str, dict[bytes, bytes]] = {CF_KV: {}, CF_META: {}}
    for ops in batches:
        wb = WriteBatch()
        for op, cf, a, b in ops:
            m = model[cf]
            if op == "put":
                wb.put(cf, a, b)
                m[a] = b
            elif op == "delete":
                wb.delete(cf, a)
                m.pop(a, None)
            else:
                wb.delete_range(cf, a, b)
                for k in [k for k in m if a <= k < b]:
                    del m[k]
        engine.write(wb, sync=False)
    start, end = bounds
    for cf, m in model.items():
        for k, v in m.items():
            assert engine.get(cf, k) == v
        expected = sorted((k, v) for k, v in m.items() if k >= start and (end is None or k < end))
        fwd = expected if limit is None else expected[:limit]
        rev = expected[::-1] if limit is None else expected[::-1][:limit]
        assert engine.scan(cf, start, end, limit) == fwd
        assert engine.scan(cf, start, end, limit, reverse=True) == rev


def test_prepare_hooks_run_once_at_write_and_may_add_operations(engine: Engine) -> None:
    wb = WriteBatch()
    ran: list[int] = []

    def add_more() -> None:
        ran.append(1)
        wb.put(CF_META, b"added-by-prepare", b"1")

    wb.add_prepare_hook(add_more)
    assert engine.get(CF_META, b"added-by-prepare") is None
    engine.write(wb)  # an empty batch until prepared: the hook's put is written
    assert ran == [1]
    assert engine.get(CF_META, b"added-by-prepare") == b"1"
    with pytest.raises(ValueError):
        wb.add_prepare_hook(add_more)
    wb.prepare()  # at most once
    assert ran == [1]
