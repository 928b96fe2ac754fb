"""The frame codec: round trips in arbitrary chunks, and every malformed input is refused with
a reason."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.proto.serverpb_pb2 import BatchRaftMessage, Handshake, RaftMessage
from router import (
    HANDSHAKE,
    RAFT,
    FrameDecoder,
    FrameError,
    encode_batch,
    encode_frame,
    encode_handshake,
)


def _batch(n: int, data: bytes = b"x") -> BatchRaftMessage:
    b = BatchRaftMessage(from_store_id=1, last_observed_time=5)
    for i in range(n):
        m = RaftMessage(region_id=i + 1)
        m.message.msg_type = 3
        m.message.entries.add(term=1, index=i, data=data)
        b.msgs.append(m)
    return b


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=6), st.integers(1, 97))
def test_round_trip_in_any_chunking(sizes: list[int], chunk: int) -> None:
    hs = Handshake(cluster_id=9, store_id=2, peer_addr="127.0.0.1:1")
    batches = [_batch(n) for n in sizes]
    stream = encode_handshake(hs) + b"".join(encode_batch(b) for b in batches)
    dec = FrameDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got.extend(dec.feed(stream[i : i + chunk]))
    dec.eof()
    assert got[0] == (HANDSHAKE, hs)
    assert [f for _, f in got[1:]] == batches
    assert all(kind == RAFT for kind, _ in got[1:])


@pytest.mark.parametrize(
    "data, reason",
    [
        (struct.pack(">IB", 0, RAFT), "bad_length"),
        (struct.pack(">IB", (64 << 20) + 2, RAFT), "oversized"),
        (struct.pack(">IB", 5, 77) + b"abcd", "unknown_kind"),
        (encode_frame(RAFT, b"\xff\xff\xff\xff\xff"), "bad_protobuf"),
        (encode_frame(HANDSHAKE, b"\x0a"), "bad_protobuf"),
    ],
)
def test_malformed_frames(data: bytes, reason: str) -> None:
    dec = FrameDecoder()
    with pytest.raises(FrameError) as e:
        dec.feed(data)
    assert e.value.reason == reason


def test_truncated_frame_at_eof() -> None:
    frame = encode_batch(_batch(3))
    dec = FrameDecoder()
    assert dec.feed(frame[:-1]) == []
    with pytest.raises(FrameError) as e:
        dec.eof()
    assert e.value.reason == "truncated"


def test_small_max_frame() -> None:
    dec = FrameDecoder(max_frame=100)
    with pytest.raises(FrameError) as e:
        dec.feed(encode_batch(_batch(5, b"y" * 50)))
    assert e.value.reason == "oversized"


def test_garbage_never_crashes_the_decoder() -> None:
    import random

    rng = random.Random(3)
    for _ in range(300):
        dec = FrameDecoder(max_frame=1 << 16)
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        try:
            dec.feed(junk)
            dec.eof()
        except FrameError:
            pass
