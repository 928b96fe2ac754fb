"""Strategies for the wire messages of the peer port (serverpb / eraftpb), valid ones: the fuzz
tests mutate them."""

from __future__ import annotations

from hypothesis import strategies as st

from multiraft.proto.eraftpb_pb2 import Entry, Message, Snapshot, SnapshotMetadata
from multiraft.proto.serverpb_pb2 import (
    BatchRaftMessage,
    ExtraMessage,
    Handshake,
    Peer,
    RaftMessage,
    Region,
    RegionEpoch,
    SnapshotAck,
    SnapshotChunk,
)

__all__ = [
    "U64",
    "u64",
    "small",
    "peers",
    "regions",
    "raft_messages",
    "batches",
    "handshakes",
    "snapshot_chunks",
    "snapshot_acks",
]

U64 = 2**64 - 1
u64 = st.one_of(st.integers(0, 20), st.integers(0, U64))
small = st.integers(0, 12)
addrs = st.one_of(st.just("127.0.0.1:20161"), st.text(max_size=24))

peers = st.builds(Peer, id=small, store_id=small, role=st.integers(0, 3))
epochs = st.builds(RegionEpoch, conf_ver=small, version=small)
regions = st.builds(
    Region,
    id=small,
    start_key=st.binary(max_size=4),
    end_key=st.binary(max_size=4),
    region_epoch=epochs,
    peers=st.lists(peers, max_size=3),
)
entries = st.builds(
    Entry,
    entry_type=st.integers(0, 2),
    term=small,
    index=small,
    data=st.binary(max_size=24),
    context=st.binary(max_size=4),
)
snapshots = st.builds(
    Snapshot,
    data=st.binary(max_size=32),
    metadata=st.builds(SnapshotMetadata, index=small, term=small),
)
messages = st.builds(
    Message,
    msg_type=st.integers(0, 19),
    to=small,
    from_=small,
    term=small,
    log_term=small,
    index=small,
    entries=st.lists(entries, max_size=3),
    commit=small,
    snapshot=snapshots,
    request_snapshot=small,
    reject=st.booleans(),
    reject_hint=small,
    context=st.binary(max_size=8),
    priority=st.integers(-3, 3),
)
extras = st.builds(
    ExtraMessage, type=st.integers(0, 5), agree=st.booleans(), index=small, term=small
)
raft_messages = st.builds(
    RaftMessage,
    region_id=small,
    from_peer=peers,
    to_peer=peers,
    message=messages,
    region_epoch=epochs,
    is_tombstone=st.booleans(),
    start_key=st.binary(max_size=4),
    end_key=st.binary(max_size=4),
    merge_target=st.one_of(st.none(), regions),
    extra_msg=st.one_of(st.none(), extras),
)
batches = st.builds(
    BatchRaftMessage,
    msgs=st.lists(raft_messages, max_size=3),
    last_observed_time=u64,
    from_store_id=small,
)
handshakes = st.builds(
    Handshake,
    cluster_id=st.one_of(st.just(7), u64),
    store_id=small,
    peer_addr=addrs,
    client_addr=addrs,
    admin_addr=addrs,
)
snapshot_chunks = st.builds(
    SnapshotChunk,
    header=st.binary(max_size=32),
    total_size=st.one_of(small, u64),
    data=st.binary(max_size=32),
    last=st.booleans(),
)
snapshot_acks = st.builds(SnapshotAck, status=st.integers(0, 4), reason=st.text(max_size=12))
