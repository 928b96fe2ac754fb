"""Reads through the store's overlay of applied writes whose round is not committed yet:
point reads and limited range scans equal reads of the state with the overlay applied."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.engine import CF_KV, MemoryEngine, WriteBatch
from multiraft.store.kv import read_applied, scan_applied

keys = st.binary(min_size=1, max_size=2)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(keys, st.binary(max_size=2), max_size=12),
    st.dictionaries(keys, st.one_of(st.none(), st.binary(max_size=2)), max_size=8),
    keys,
    st.one_of(st.none(), keys),
    st.integers(1, 15),
)
def test_scan_and_get_see_the_overlay(
    engine_kv: dict[bytes, bytes],
    overlay: dict[bytes, bytes | None],
    lo: bytes,
    hi: bytes | None,
    limit: int,
) -> None:
    engine = MemoryEngine()
    if engine_kv:
        wb = WriteBatch()
        for k, v in engine_kv.items():
            wb.put(CF_KV, k, v)
        engine.write(wb)
    unwritten = {k: (1, v) for k, v in overlay.items()}
    model = dict(engine_kv)
    for k, v in overlay.items():
        if v is None:
            model.pop(k, None)
        else:
            model[k] = v
    want = sorted((k, v) for k, v in model.items() if lo <= k and (hi is None or k < hi))[:limit]
    assert scan_applied(engine, unwritten, lo, hi, limit) == want
    for k in {*engine_kv, *overlay}:
        assert read_applied(engine, unwritten, k) == model.get(k)
