"""Fuzz the dialing side of the peer transport (router/outbound.py): what a remote store answers
on a connection we dialed (its handshake, snapshot acks; valid, mutated or random, in
arbitrary pieces) goes to a real `Outbound` of a real `Transport` over an in-memory socket.
Whatever arrives: nothing raises, the handshake future resolves once (with the remote's first
frame if that is a handshake, else with an error once the connection is gone), a bad stream
closes the connection, and unread acks never pile up."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from multiraft.proto.serverpb_pb2 import Handshake, SnapshotAck, SnapshotReceived
from router.codec import (
    HANDSHAKE,
    FrameDecoder,
    encode_batch,
    encode_handshake,
    encode_snapshot_ack,
)
from router.outbound import MAX_PENDING_ACKS, Outbound
from router.transport import Transport

from .strategies import batches, handshakes, snapshot_acks
from .support import byte_variants, fuzz_settings, guard, mutated, run_inputs, seeds
from .test_peer_inbound import FakeSocket, _pieces

CLUSTER = 7

answers = st.lists(
    st.one_of(
        snapshot_acks.map(encode_snapshot_ack),
        snapshot_acks.map(encode_snapshot_ack),
        handshakes.map(encode_handshake),
        batches.map(encode_batch),  # no raft frames on a dialed connection
    ),
    max_size=6,
)
streams = st.builds(lambda hs, rest: encode_handshake(hs) + b"".join(rest), handshakes, answers)
inputs = st.one_of(streams, streams, mutated(streams), st.binary(max_size=128))

_LOOP = asyncio.new_event_loop()


def _run(data: bytes, cuts: list[int]) -> None:
    t = Transport(cluster_id=CLUSTER, store_id=1, listen_addr="127.0.0.1:0",
                  on_batch=lambda s, b: None, on_unreachable=lambda s: None, max_frame=1 << 16)
    t._loop = _LOOP
    sock = FakeSocket()
    conn = Outbound(t, 2)
    with guard(len(data), memory=False):
        conn.connection_made(sock)  # type: ignore[arg-type]
        for piece in _pieces(data, cuts):
            if sock.closed:
                break
            conn.data_received(piece)
            assert len(conn._acks) <= MAX_PENDING_ACKS
        conn.connection_lost(None)
    # Our handshake went out first.
    ours = FrameDecoder().feed(bytes(sock.written))
    assert [kind for kind, _ in ours] == [HANDSHAKE]
    assert conn.handshake.done() and conn.lost.done()
    if conn.handshake.exception() is None:
        assert isinstance(conn.handshake.result(), Handshake)
    if t.stats.bad_frames_by_reason:
        assert sock.closed


@fuzz_settings(2000)
@given(inputs, st.lists(st.integers(0, 1 << 10), max_size=4), seeds)
def test_outbound_connection(data: bytes, cuts: list[int], seed: int) -> None:
    run_inputs("router.outbound.Outbound", byte_variants(data, seed), lambda d: _run(d, cuts))


def test_regression_unread_acks_are_bounded() -> None:
    """Found while fuzzing: a remote answering a raft link with snapshot acks had each one
    kept (nobody reads acks on a raft link), as many as it sent. Past two, the connection
    closes."""
    ack = encode_snapshot_ack(SnapshotAck(status=SnapshotReceived))
    flood = encode_handshake(Handshake(cluster_id=CLUSTER, store_id=2)) + ack * 1000
    t = Transport(cluster_id=CLUSTER, store_id=1, listen_addr="127.0.0.1:0",
                  on_batch=lambda s, b: None, on_unreachable=lambda s: None)
    t._loop = _LOOP
    sock = FakeSocket()
    conn = Outbound(t, 2)
    conn.connection_made(sock)  # type: ignore[arg-type]
    conn.data_received(flood)
    assert len(conn._acks) == MAX_PENDING_ACKS and sock.closed
    assert t.stats.bad_frames_by_reason == {"unexpected_kind": 1}
    conn.connection_lost(None)

