"""Fuzz the peer port's frame codec (router/codec.py): byte streams of handshakes, raft
batches, snapshot chunks and acks, valid, mutated or random, fed in arbitrary pieces. The
decoder returns well-typed frames or raises FrameError with a known reason, whatever the
pieces; it never holds more than it was given."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.proto.serverpb_pb2 import BatchRaftMessage, Handshake, SnapshotAck, SnapshotChunk
from router.codec import (
    HANDSHAKE,
    RAFT,
    SNAPSHOT_ACK,
    SNAPSHOT_CHUNK,
    Frame,
    FrameDecoder,
    FrameError,
    encode_batch,
    encode_frame,
    encode_handshake,
    encode_snapshot_ack,
    encode_snapshot_chunk,
)

from .strategies import batches, handshakes, snapshot_acks, snapshot_chunks
from .support import byte_variants, fuzz_settings, guard, mutated, run_inputs, seeds

REASONS = {"bad_length", "oversized", "unknown_kind", "bad_protobuf", "truncated"}
TYPES: dict[int, type[Frame]] = {HANDSHAKE: Handshake, RAFT: BatchRaftMessage, SNAPSHOT_CHUNK: SnapshotChunk,
         SNAPSHOT_ACK: SnapshotAck}

frames = st.one_of(
    handshakes.map(encode_handshake),
    batches.map(encode_batch),
    snapshot_chunks.map(encode_snapshot_chunk),
    snapshot_acks.map(encode_snapshot_ack),
)
streams = st.lists(frames, min_size=1, max_size=4).map(b"".join)
# A mutated payload in a well-formed frame: the protobuf parsers get the garbage.
payloads = st.one_of(
    st.tuples(st.just(HANDSHAKE), mutated(handshakes.map(lambda m: m.SerializeToString()))),
    st.tuples(st.just(RAFT), mutated(batches.map(lambda m: m.SerializeToString()))),
    st.tuples(
        st.just(SNAPSHOT_CHUNK), mutated(snapshot_chunks.map(lambda m: m.SerializeToString()))
    ),
    st.tuples(st.just(SNAPSHOT_ACK), mutated(snapshot_acks.map(lambda m: m.SerializeToString()))),
    st.tuples(st.sampled_from(sorted(TYPES)), st.binary(max_size=64)),
)
reframed = st.lists(payloads, min_size=1, max_size=3).map(
    lambda fs: b"".join(encode_frame(kind, payload) for kind, payload in fs)
)
inputs = st.one_of(streams, mutated(streams), reframed, st.binary(max_size=512))


def _decode(data: bytes, cuts: list[int], max_frame: int) -> tuple[list[tuple[int, Any]], str]:
    """Feed `data` cut at `cuts`, then EOF: (frames, reason of the FrameError or "")."""
    dec = FrameDecoder(max_frame)
    out: list[tuple[int, Any]] = []
    prev = 0
    try:
        for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
            out += dec.feed(data[prev:cut])
            prev = max(prev, cut)
            assert dec.pending_bytes() <= len(data)
        dec.eof()
    except FrameError as e:
        assert e.reason in REASONS, e.reason
        return out, e.reason
    return out, ""


@fuzz_settings(2000)
@given(inputs, st.lists(st.integers(0, 1 << 16), max_size=6), st.sampled_from([64 << 20, 100]),
       seeds)
def test_frame_decoder(data: bytes, cuts: list[int], max_frame: int, seed: int) -> None:
    def check(data: bytes) -> None:
        with guard(len(data)):
            got, reason = _decode(data, cuts, max_frame)
            for kind, msg in got:
                assert isinstance(msg, TYPES[kind])
                msg.SerializeToString()
            # The same bytes in one piece: the same outcome (piece boundaries change nothing).
            whole, whole_reason = _decode(data, [], max_frame)
            assert whole_reason == reason
            if not reason:
                assert whole == got

    run_inputs("router.codec.FrameDecoder", byte_variants(data, seed), check)


@settings(max_examples=100, deadline=None)
@given(streams, st.lists(st.integers(0, 1 << 16), max_size=6))
def test_valid_streams_round_trip(data: bytes, cuts: list[int]) -> None:
    got, reason = _decode(data, cuts, 64 << 20)
    assert reason == ""
    assert b"".join(
        {HANDSHAKE: encode_handshake, RAFT: encode_batch, SNAPSHOT_CHUNK: encode_snapshot_chunk,
         SNAPSHOT_ACK: encode_snapshot_ack}[kind](msg)  # type: ignore[operator]
        for kind, msg in got
    ) == data
