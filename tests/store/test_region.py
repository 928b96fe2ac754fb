"""Region metadata helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.proto.serverpb_pb2 import RegionEpoch
from multiraft.store import (
    EpochNotMatch,
    KeyNotInRegion,
    NotLeader,
    check_key_in_region,
    check_region_epoch,
    find_peer,
    find_peer_on_store,
    is_epoch_stale,
    key_in_region,
    new_region,
    ranges_overlap,
    split_keys,
)


@pytest.mark.parametrize(
    "key, start, end, inside",
    [
        (b"", b"", b"", True),
        (b"a", b"", b"", True),
        (b"a", b"a", b"b", True),
        (b"b", b"a", b"b", False),  # end is exclusive
        (b"a\x00", b"a", b"b", True),
        (b"0", b"a", b"", False),
        (b"zzz", b"a", b"", True),  # empty end = +inf
    ],
)
def test_key_in_region(key: bytes, start: bytes, end: bytes, inside: bool) -> None:
    r = new_region(1, start, end, [(1, 1)])
    assert key_in_region(key, r) == inside
    if inside:
        check_key_in_region(key, r)
    else:
        with pytest.raises(KeyNotInRegion):
            check_key_in_region(key, r)


@pytest.mark.parametrize(
    "a, b, overlap",
    [
        ((b"a", b"c"), (b"c", b"e"), False),
        ((b"a", b"c"), (b"b", b"e"), True),
        ((b"a", b""), (b"z", b""), True),
        ((b"", b"b"), (b"b", b""), False),
        ((b"", b""), (b"x", b"y"), True),
        ((b"x", b"y"), (b"a", b"x"), False),
    ],
)
def test_ranges_overlap(a: tuple[bytes, bytes], b: tuple[bytes, bytes], overlap: bool) -> None:
    assert ranges_overlap(*a, *b) == overlap
    assert ranges_overlap(*b, *a) == overlap


@pytest.mark.parametrize(
    "req, cur, stale",
    [((1, 1), (1, 1), False), ((1, 2), (1, 1), False), ((0, 1), (1, 1), True), ((1, 0), (1, 1), True)],
)
def test_is_epoch_stale(req: tuple[int, int], cur: tuple[int, int], stale: bool) -> None:
    assert is_epoch_stale(RegionEpoch(conf_ver=req[0], version=req[1]), RegionEpoch(conf_ver=cur[0], version=cur[1])) == stale


def test_check_region_epoch() -> None:
    r = new_region(7, b"a", b"m", [(1, 1), (2, 2)])
    r.region_epoch.conf_ver, r.region_epoch.version = 3, 5
    check_region_epoch(RegionEpoch(conf_ver=1, version=5), r, check_conf_ver=False)
    with pytest.raises(EpochNotMatch) as e:
        check_region_epoch(RegionEpoch(conf_ver=1, version=5), r, check_conf_ver=True)
    assert e.value.current_regions == [r] and e.value.retryable
    with pytest.raises(EpochNotMatch):
        check_region_epoch(RegionEpoch(conf_ver=3, version=4), r, check_conf_ver=False)
    assert e.value.to_wire()["code"] == "EPOCH_NOT_MATCH"


def test_find_peers() -> None:
    r = new_region(7, b"", b"", [(10, 1), (20, 2)])
    assert find_peer(r, 20) is not None and find_peer(r, 20).store_id == 2  # type: ignore[union-attr]
    assert find_peer(r, 30) is None
    assert find_peer_on_store(r, 1).id == 10  # type: ignore[union-attr]
    assert find_peer_on_store(r, 3) is None
    err = NotLeader(7, find_peer(r, 20))
    assert err.to_wire()["leader"] == {"peer_id": 20, "store_id": 2}
    assert NotLeader(7).to_wire().get("leader") is None


@given(st.integers(1, 2000), st.binary(max_size=6))
def test_split_keys_partition_the_key_space(n: int, key: bytes) -> None:
    keys = split_keys(n)
    assert len(keys) == n - 1
    assert keys == sorted(set(keys))
    bounds = [b"", *keys, b""]
    owners = [i for i in range(n) if key_in_region(key, new_region(i + 1, bounds[i], bounds[i + 1], []))]
    assert len(owners) == 1


def test_split_keys_limits() -> None:
    assert split_keys(1) == []
    with pytest.raises(ValueError):
        split_keys(0)


def test_split_keys_past_65536_regions_use_4_byte_prefixes() -> None:
    keys = split_keys(100_000)
    assert len(keys) == 99_999 and all(len(k) == 4 for k in keys)
    assert keys == sorted(set(keys))
    assert len(split_keys(1 << 16)[0]) == 2
