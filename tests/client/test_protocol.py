"""The client wire codec, the region cache and the package's public surface (no sockets)."""

from __future__ import annotations

import msgpack
import pytest

import multiraft.client as mc
from multiraft.client.cache import RegionCache
from multiraft.client.protocol import (
    MAX_FRAME,
    FrameDecoder,
    FrameError,
    RegionInfo,
    encode_frame,
    format_addr,
    parse_addr,
    region_from_wire,
)


def test_exports() -> None:
    for name in mc.__all__:
        assert hasattr(mc, name), name
    assert issubclass(mc.ClientTimeout, mc.ClientError)
    assert issubclass(mc.ClientTimeout, TimeoutError)  # the builtin: either catch works
    assert mc.TimeoutError is mc.ClientTimeout
    assert issubclass(mc.InvalidRequest, mc.ServerError)


def test_frames_round_trip_in_any_chunking() -> None:
    msgs = [{"id": i, "op": "put", "key": b"k%d" % i, "value": b"\x00" * i} for i in range(50)]
    stream = b"".join(encode_frame(m) for m in msgs)
    for chunk in (1, 3, 7, 64, len(stream)):
        dec = FrameDecoder()
        got = []
        for i in range(0, len(stream), chunk):
            got.extend(dec.feed(stream[i : i + chunk]))
        assert got == msgs
        assert dec.buffered == 0


def test_frame_header_is_u32_big_endian_length() -> None:
    frame = encode_frame({"id": 1})
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert msgpack.unpackb(frame[4:]) == {"id": 1}


@pytest.mark.parametrize(
    "data, why",
    [
        ((MAX_FRAME + 1).to_bytes(4, "big"), "exceeds"),
        ((0).to_bytes(4, "big"), "empty"),
        ((3).to_bytes(4, "big") + b"\xc1\xc1\xc1", "undecodable"),  # 0xc1 is never used
        ((2).to_bytes(4, "big") + b"\x92\x01", "undecodable"),  # truncated array
    ],
)
def test_bad_frames_raise(data: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        FrameDecoder().feed(data)


def test_server_decoder_refuses_int_map_keys_client_accepts_them() -> None:
    frame = encode_frame({1: "127.0.0.1:1"})
    with pytest.raises(FrameError):
        FrameDecoder(strict_map_key=True).feed(frame)
    assert FrameDecoder(strict_map_key=False).feed(frame) == [{1: "127.0.0.1:1"}]


def test_region_from_wire() -> None:
    d = {"id": 7, "start": b"a", "end": b"", "epoch": [2, 3], "peers": [[70, 1, 0]], "leader": 1}
    r = region_from_wire(d)
    assert r == RegionInfo(7, b"a", b"", 2, 3, [(70, 1, 0)], 1)
    assert r.contains(b"zzz") and not r.contains(b"")
    with pytest.raises(ValueError):
        region_from_wire({"id": 7})


@pytest.mark.parametrize(
    "addr, parsed",
    [("127.0.0.1:20160", ("127.0.0.1", 20160)), ("[::1]:5", ("::1", 5)), ("h:1", ("h", 1))],
)
def test_addresses(addr: str, parsed: tuple[str, int]) -> None:
    assert parse_addr(addr) == parsed
    assert format_addr(*parsed) == addr


@pytest.mark.parametrize("addr", ["nohost", ":1", "h:", "h:0", "h:99999", "h:x"])
def test_bad_addresses(addr: str) -> None:
    with pytest.raises(ValueError):
        parse_addr(addr)


def _r(rid: int, start: bytes, end: bytes, version: int = 1, leader: int | None = None) -> RegionInfo:
    return RegionInfo(rid, start, end, 1, version, [(rid, 1, 0)], leader)


def test_cache_lookup_with_gaps() -> None:
    c = RegionCache()
    c.update(_r(1, b"", b"c"))
    c.update(_r(3, b"m", b""))
    assert c.lookup(b"") is not None and c.lookup(b"b").id == 1  # type: ignore[union-attr]
    assert c.lookup(b"c") is None and c.lookup(b"l") is None
    assert c.lookup(b"m").id == 3 and c.lookup(b"\xff" * 10).id == 3  # type: ignore[union-attr]


def test_cache_split_replaces_the_parent_and_ignores_stale_news() -> None:
    c = RegionCache()
    c.update(_r(1, b"", b""))
    # Region 1 split at "m" into 1 [, m) and 2 [m, ), both at version 2.
    assert c.update(_r(2, b"m", b"", version=2))
    assert c.lookup(b"a") is None  # the parent's stale copy is gone
    assert c.update(_r(1, b"", b"m", version=2))
    assert [r.id for r in c.regions()] == [1, 2]
    # A lagging store still reports the parent at version 1: ignored.
    assert not c.update(_r(1, b"", b"", version=1))
    assert [(r.id, r.version) for r in c.regions()] == [(1, 2), (2, 2)]


def test_cache_merge_and_leaders() -> None:
    c = RegionCache()
    c.update(_r(1, b"", b"m", version=2, leader=1))
    c.update(_r(2, b"m", b"", version=2, leader=1))
    # The same region again without a leader keeps the known one; with one, learns it.
    c.update(_r(1, b"", b"m", version=2))
    assert c.get(1).leader == 1  # type: ignore[union-attr]
    c.update(_r(1, b"", b"m", version=2, leader=3))
    assert c.get(1).leader == 3  # type: ignore[union-attr]
    c.forget_store_leaders(3)
    assert c.get(1).leader is None  # type: ignore[union-attr]
    # Region 2 merged into 1: version 3 covers everything.
    assert c.update(_r(1, b"", b"", version=3))
    assert [r.id for r in c.regions()] == [1]
    c.invalidate(1)
    assert len(c) == 0
