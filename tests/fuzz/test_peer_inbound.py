"""Fuzz the accepting side of the peer transport (router/inbound.py): the byte stream of one
accepted connection (a handshake, raft batches, a snapshot's chunks; valid, mutated or random,
in arbitrary pieces, ended by EOF or not) goes to a real `Inbound` of a real `Transport` over
an in-memory socket. Whatever arrives: nothing raises, only a valid handshake of our cluster
opens the connection, only batches of the handshaken store reach the store, a snapshot reaches
it whole and only as announced, what we answer is well-formed frames, a bad stream closes the
connection, and once it is gone no slot or counter is left behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.proto.serverpb_pb2 import (
    BatchRaftMessage,
    Handshake,
    SnapshotAck,
    SnapshotChunk,
)
from router.codec import (
    HANDSHAKE,
    SNAPSHOT_ACK,
    FrameDecoder,
    encode_batch,
    encode_handshake,
    encode_snapshot_chunk,
)
from router.inbound import Inbound
from router.transport import Transport

from .strategies import batches, snapshot_acks, snapshot_chunks
from .support import byte_variants, fuzz_settings, guard, mutated, run_inputs, seeds

CLUSTER = 7
OUR_STORE = 1


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    """Each refused connection logs a warning: thousands of them would only slow the run."""
    log = logging.getLogger("router.transport")
    level = log.level
    log.setLevel(logging.CRITICAL)
    yield
    log.setLevel(level)


class FakeSocket:
    """The asyncio transport under the protocol: records writes and closes."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.9", 4242) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


@dataclass
class Seen:
    batches: list[tuple[int, BatchRaftMessage]] = field(default_factory=list)
    snapshots: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    peers: list[Handshake] = field(default_factory=list)


def _transport(seen: Seen, loop: asyncio.AbstractEventLoop) -> Transport:
    def on_snapshot(store: int, header: bytes, data: bytes) -> None:
        seen.snapshots.append((store, header, data))
        if header == b"boom":
            raise RuntimeError("the store could not take it")

    t = Transport(
        cluster_id=CLUSTER,
        store_id=OUR_STORE,
        listen_addr="127.0.0.1:0",
        on_batch=lambda store, batch: seen.batches.append((store, batch)),
        on_unreachable=lambda store: None,
        on_snapshot=on_snapshot,
        on_peer_info=seen.peers.append,
        max_frame=1 << 16,
        max_concurrent_snapshots=1,
    )
    t._loop = loop  # the handshake timer goes on it (never run: no timeouts here)
    return t


_LOOP = asyncio.new_event_loop()


# -- inputs -------------------------------------------------------------------------------------

good_handshakes = st.builds(
    Handshake,
    cluster_id=st.sampled_from([CLUSTER] * 8 + [0, 8]),
    store_id=st.sampled_from([2] * 5 + [3] * 3 + [0, OUR_STORE]),
    peer_addr=st.sampled_from(["127.0.0.1:20171", "", "[::1]:1"]),
)


@st.composite
def snapshot_stream(draw: st.DrawFn) -> bytes:
    """A snapshot transfer: the first chunk (header, total size), data chunks, the last."""
    data = draw(st.binary(max_size=64))
    total = draw(st.sampled_from([len(data), len(data), len(data) + 1, max(len(data) - 1, 0)]))
    header = draw(st.sampled_from([b"hdr", b"", b"boom"]))
    out = [encode_snapshot_chunk(SnapshotChunk(header=header, total_size=total))]
    pos = 0
    while pos < len(data):
        n = draw(st.integers(1, 32))
        out.append(encode_snapshot_chunk(SnapshotChunk(data=data[pos : pos + n])))
        pos += n
    out.append(encode_snapshot_chunk(SnapshotChunk(last=True)))
    return b"".join(out)


def _batch_from(store: int) -> st.SearchStrategy[bytes]:
    def build(b: BatchRaftMessage, own: bool) -> bytes:
        if own:
            b.from_store_id = store
        return encode_batch(b)

    return st.builds(build, batches, st.booleans())


@st.composite
def connection_stream(draw: st.DrawFn) -> bytes:
    hs = draw(good_handshakes)
    parts = [encode_handshake(hs)]
    for _ in range(draw(st.integers(1, 4))):
        parts.append(
            draw(
                st.one_of(
                    _batch_from(hs.store_id),
                    snapshot_stream(),
                    snapshot_chunks.map(encode_snapshot_chunk),
                    snapshot_acks.map(lambda a: b"\x00\x00\x00" + bytes([1 + len(
                        a.SerializeToString())]) + b"\x04" + a.SerializeToString()),
                    st.just(encode_handshake(hs)),
                )
            )
        )
    return b"".join(parts)


inputs = st.one_of(
    connection_stream(), connection_stream(), mutated(connection_stream()), st.binary(max_size=256)
)


# -- the contract -------------------------------------------------------------------------------


def _pieces(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    prev = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        yield data[prev:cut]
        prev = cut
    yield data[prev:]


def _answers(written: bytes) -> list[tuple[int, Any]]:
    dec = FrameDecoder()
    frames = dec.feed(written)
    assert dec.pending_bytes() == 0, "a partial frame written"
    return frames


def _run_connection(data: bytes, cuts: list[int], eof: bool) -> None:
    seen = Seen()
    t = _transport(seen, _LOOP)
    sock = FakeSocket()
    conn = Inbound(t)
    with guard(len(data), memory=False):
        conn.connection_made(sock)  # type: ignore[arg-type]
        for piece in _pieces(data, cuts):
            if sock.closed:
                break
            conn.data_received(piece)
        if eof and not sock.closed:
            conn.eof_received()
        conn.connection_lost(None)
    # Nothing left behind.
    assert not t._inbound
    assert t._snapshots_receiving == 0
    assert t.stats.callback_errors == sum(1 for _, h, _ in seen.snapshots if h == b"boom")
    # What reached the store came after a handshake of our cluster from another store, and
    # batches only of that store.
    answers = _answers(bytes(sock.written))
    if seen.batches or seen.snapshots or seen.peers:
        assert len(seen.peers) == 1
        hs = seen.peers[0]
        assert hs.cluster_id == CLUSTER and hs.store_id not in (0, OUR_STORE)
        assert answers and answers[0][0] == HANDSHAKE
        assert all(store == hs.store_id for store, _ in seen.batches)
        assert all(b.from_store_id == hs.store_id for _, b in seen.batches)
        assert all(store == hs.store_id for store, _, _ in seen.snapshots)
    assert all(kind == SNAPSHOT_ACK for kind, _ in answers[1:])
    for _, ack in answers[1:]:
        assert isinstance(ack, SnapshotAck)
    assert all(len(d) <= len(data) for _, _, d in seen.snapshots)
    received = sum(1 for _, a in answers if isinstance(a, SnapshotAck) and a.status == 3)
    assert received == len(seen.snapshots) - t.stats.callback_errors
    # A connection that broke the protocol was closed (a truncated frame at EOF: by the
    # event loop, as `eof_received` returns False; a batch of another store is dropped alone).
    bad = dict(t.stats.bad_frames_by_reason)
    bad.pop("store_mismatch", None)
    if eof:
        bad.pop("truncated", None)
    if bad or t.stats.handshake_rejects:
        assert sock.closed


@fuzz_settings(2000)
@given(inputs, st.lists(st.integers(0, 1 << 12), max_size=5), st.booleans(), seeds)
def test_inbound_connection(data: bytes, cuts: list[int], eof: bool, seed: int) -> None:
    run_inputs(
        "router.inbound.Inbound",
        byte_variants(data, seed),
        lambda d: _run_connection(d, cuts, eof),
    )


def test_snapshot_reaches_the_store_whole() -> None:
    """The contract's positive side: a valid transfer arrives, in any pieces."""
    hs = Handshake(cluster_id=CLUSTER, store_id=2, peer_addr="127.0.0.1:1")
    payload = bytes(range(200))
    stream = encode_handshake(hs) + encode_snapshot_chunk(
        SnapshotChunk(header=b"h", total_size=len(payload))
    )
    for i in range(0, len(payload), 50):
        stream += encode_snapshot_chunk(SnapshotChunk(data=payload[i : i + 50]))
    stream += encode_snapshot_chunk(SnapshotChunk(last=True))
    seen = Seen()
    t = _transport(seen, _LOOP)
    sock = FakeSocket()
    conn = Inbound(t)
    conn.connection_made(sock)  # type: ignore[arg-type]
    for i in range(0, len(stream), 7):
        conn.data_received(stream[i : i + 7])
    assert seen.snapshots == [(2, b"h", payload)]
    statuses = [a.status for _, a in _answers(bytes(sock.written))[1:]]
    assert statuses == [1, 3]  # accepted, received
    conn.connection_lost(None)
    assert t._snapshots_receiving == 0 and not t._inbound
