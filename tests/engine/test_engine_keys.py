"""Key layouts (multiraft/engine/keys.py): fixed-width big-endian, so bytewise order is
(region id, index) order and a region's keys are contiguous."""

from __future__ import annotations

import pytest

from multiraft.engine import keys


def test_raft_log_keys_round_trip_and_order() -> None:
    k = keys.raft_log_key(7, 42)
    assert len(k) == keys.RAFT_LOG_KEY_LEN
    assert k == (7).to_bytes(8, "big") + (42).to_bytes(8, "big")
    assert keys.decode_raft_log_key(k) == (7, 42)
    assert keys.pack_raft_log_key(7, 42) == k
    ordered = [keys.raft_log_key(r, i) for r in (1, 2, 256) for i in (1, 255, 256, 1 << 40)]
    assert sorted(ordered) == ordered
    with pytest.raises(ValueError):
        keys.decode_raft_log_key(b"short")


def test_raft_log_bounds_cover_exactly_one_region() -> None:
    start, end = keys.raft_log_bounds(5)
    assert end is not None
    assert start <= keys.raft_log_key(5, 0) < keys.raft_log_key(5, keys.MAX_U64) < end
    assert keys.raft_log_key(4, keys.MAX_U64) < start
    assert keys.raft_log_key(6, 0) >= end
    assert keys.raft_log_bounds(keys.MAX_U64)[1] is None


def test_raft_state_keys() -> None:
    r = 9
    ks = [
        keys.hard_state_key(r),
        keys.conf_state_key(r),
        keys.truncated_state_key(r),
        keys.region_state_key(r),
    ]
    assert [keys.decode_raft_state_key(k) for k in ks] == [
        (r, keys.HARD_STATE),
        (r, keys.CONF_STATE),
        (r, keys.TRUNCATED_STATE),
        (r, keys.REGION_STATE),
    ]
    start, end = keys.raft_state_bounds(r)
    assert end is not None and all(start <= k < end for k in ks)
    assert keys.apply_state_key(r) == keys.raft_state_key(r, keys.APPLY_STATE)
    with pytest.raises(ValueError):
        keys.decode_raft_state_key(b"x")


def test_truncated_state_and_meta_keys() -> None:
    v = keys.encode_truncated_state(10, 3)
    assert keys.decode_truncated_state(v) == (10, 3)
    with pytest.raises(ValueError):
        keys.decode_truncated_state(b"")
    assert keys.meta_key("store_ident") == b"store_ident"
    with pytest.raises(ValueError):
        keys.meta_key("")
    keys.check_key(b"x" * keys.MAX_KEY_SIZE)
    with pytest.raises(ValueError):
        keys.check_key(b"x" * (keys.MAX_KEY_SIZE + 1))
