"""Fuzz the client protocol's decoders (multiraft/client/protocol.py): the frame decoder (the
store's, with strict map keys, and the client's), the region a store describes to a client,
and addresses. Each returns well-typed values or raises its documented error (FrameError,
ValueError) — never another exception, never more than the input's worth of memory."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.client.aio import _Connection as _ClientConnection
from multiraft.client.protocol import (
    FrameDecoder,
    FrameError,
    RegionInfo,
    encode_frame,
    parse_addr,
    region_from_wire,
)

from .support import (
    byte_variants,
    decode_or,
    fuzz_settings,
    garbage,
    guard,
    mutated,
    mutated_tree,
    run_inputs,
    seeds,
    tree_variants,
)

U64 = 2**64 - 1


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


# -- frames -------------------------------------------------------------------------------------

requests = st.fixed_dictionaries(
    {"id": st.integers(0, U64), "op": st.sampled_from(["get", "put", "scan", "batch", "ping"])},
    optional={
        "region_id": st.integers(0, 9),
        "epoch": st.lists(st.integers(0, 9), min_size=2, max_size=2),
        "key": st.binary(min_size=1, max_size=8),
        "value": st.binary(max_size=16),
    },
)
streams = st.lists(st.one_of(requests, garbage()), min_size=1, max_size=4).map(
    lambda objs: b"".join(encode_frame(o) for o in objs)
)
frame_inputs = st.one_of(streams, mutated(streams), st.binary(max_size=512))


def _feed(dec: FrameDecoder, data: bytes, cuts: list[int]) -> list[Any]:
    out: list[Any] = []
    prev = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        out += dec.feed(data[prev:cut])
        prev = max(prev, cut)
        assert dec.buffered <= len(data)
    return out


def _check_keys(obj: Any) -> None:
    """A strict decoder's maps have only str and bytes keys, at every depth."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, (str, bytes)), k
            _check_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            _check_keys(v)


@fuzz_settings(2000)
@given(frame_inputs, st.lists(st.integers(0, 1 << 12), max_size=5), st.booleans(), seeds)
def test_frame_decoder(data: bytes, cuts: list[int], strict: bool, seed: int) -> None:
    def check(data: bytes) -> None:
        with guard(len(data)):
            dec = FrameDecoder(max_frame=1 << 12, strict_map_key=strict)
            try:
                got = _feed(dec, data, cuts)
            except FrameError:
                return
        if strict:
            _check_keys(got)
        # The same bytes in one piece decode alike (compared packed: NaN != NaN).
        whole = _feed(FrameDecoder(1 << 12, strict_map_key=strict), data, [])
        assert _pack(whole) == _pack(got)

    run_inputs(
        "client.protocol.FrameDecoder" + (".strict" if strict else ""),
        byte_variants(data, seed),
        check,
    )


# -- the client's connection ------------------------------------------------------------------

answers = st.lists(
    st.one_of(
        st.fixed_dictionaries({"id": st.integers(0, 4), "ok": st.booleans()},
                              optional={"result": garbage(max_leaves=4),
                                        "error": garbage(max_leaves=4)}),
        mutated_tree(st.fixed_dictionaries({"id": st.integers(0, 4), "ok": st.just(True)})),
        garbage(),
    ),
    min_size=1,
    max_size=4,
).map(lambda objs: b"".join(encode_frame(o) for o in objs))

_LOOP = asyncio.new_event_loop()


@fuzz_settings(1500)
@given(st.one_of(answers, mutated(answers)), seeds)
def test_client_connection(data: bytes, seed: int) -> None:
    """What a store answers reaches the client's connection: it never raises, resolves the
    futures of requests 1..3 only with maps, and closes on a bad frame."""

    class Sock:
        closed = False

        def close(self) -> None:
            self.closed = True

    def check(data: bytes) -> None:
        conn = _ClientConnection("127.0.0.1:1", 1 << 12)
        sock = Sock()
        conn.connection_made(sock)  # type: ignore[arg-type]
        futs = {i: _LOOP.create_future() for i in (1, 2, 3)}
        conn.pending.update(futs)
        with guard(len(data), memory=False):
            conn.data_received(data)
        for fut in futs.values():
            assert not fut.done() or type(fut.result()) is dict
        conn.connection_lost(None)  # the others fail now: their errors are taken here
        assert all(fut.done() for fut in futs.values())
        for fut in futs.values():
            fut.exception()

    run_inputs("client.aio.connection", byte_variants(data, seed), check)


def test_regression_unhashable_answer_id() -> None:
    """Found by the fuzzer: an answer whose id is a list raised TypeError (unhashable) out of
    the client connection's data_received."""
    conn = _ClientConnection("127.0.0.1:1", 1 << 12)
    fut = _LOOP.create_future()
    conn.pending[1] = fut
    conn.data_received(encode_frame({"id": [1], "ok": True}) + encode_frame({"id": 1, "ok": True}))
    assert fut.result() == {"id": 1, "ok": True}


# -- regions ----------------------------------------------------------------------------------

wire_regions = st.fixed_dictionaries(
    {
        "id": st.integers(1, U64),
        "start": st.binary(max_size=6),
        "end": st.binary(max_size=6),
        "epoch": st.lists(st.integers(0, U64), min_size=2, max_size=2),
        "peers": st.lists(
            st.lists(st.integers(0, 99), min_size=3, max_size=3), max_size=3
        ),
        "leader": st.one_of(st.none(), st.integers(1, 9)),
    }
)
region_inputs = st.one_of(wire_regions, mutated_tree(wire_regions), garbage())


def _decode_region(data: bytes) -> RegionInfo:
    return region_from_wire(msgpack.unpackb(data, raw=False, strict_map_key=False))


@fuzz_settings(2000)
@given(region_inputs, seeds)
def test_region_from_wire(obj: Any, seed: int) -> None:
    def check(data: bytes) -> None:
        try:
            msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception:
            return  # not a wire value: the frame decoder refuses it before
        info = decode_or(_decode_region, data, ValueError)
        if info is None:
            return
        assert type(info.start) is bytes and type(info.end) is bytes
        assert len(info.start) + len(info.end) <= len(data)
        assert all(type(x) is int for x in (info.id, info.conf_ver, info.version))
        assert all(type(x) is int for p in info.peers for x in p)
        assert info.leader is None or type(info.leader) is int
        info.contains(b"k")

    run_inputs("client.protocol.region_from_wire", tree_variants(obj, seed, _pack), check)


# -- addresses --------------------------------------------------------------------------------

addrs = st.one_of(
    st.builds(lambda h, p: f"{h}:{p}", st.sampled_from(["127.0.0.1", "[::1]", "h", ""]),
              st.integers(-1, 70000)),
    st.text(max_size=24),
)


@fuzz_settings(1000)
@given(addrs, seeds)
def test_parse_addr(addr: str, seed: int) -> None:
    def check(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        r = decode_or(lambda _: parse_addr(text), data, ValueError)
        if r is not None:
            host, port = r
            assert isinstance(host, str) and type(port) is int and 0 < port < 65536

    run_inputs("client.protocol.parse_addr", byte_variants(addr.encode(), seed), check)


# -- inputs the fuzzing found ------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        # `bytes(18054607266989452399)`: OverflowError escaped.
        {"id": 1, "start": b"", "end": 18054607266989452399, "epoch": [0, 0], "peers": [],
         "leader": None},
        # `bytes(10**7)`: ten megabytes of zeros for a start key, from a 5-byte integer.
        {"id": 1, "start": 10**7, "end": b"", "epoch": [1, 1]},
        {"id": 1, "start": b"", "end": b"", "epoch": [1, 1], "peers": [[float("inf"), 1, 1]]},
        {"id": 1, "start": [1, 2], "end": b"", "epoch": [1, 1]},
    ],
    ids=["found-huge-int", "int-start", "inf-peer", "list-start"],
)
def test_regression_region_from_wire(wire: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="malformed region"):
        region_from_wire(wire)
