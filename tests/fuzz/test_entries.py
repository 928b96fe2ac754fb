"""Fuzz the decoders of what raft entries and snapshots carry: KV commands (cmd.py), split and
merge commands (admin_cmd.py), membership changes (membership.py) and region snapshot data
(snapshot.py). Each either raises its documented error or returns a value that is fully
usable: it re-encodes to itself, and a decoded snapshot can be written to an engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.engine import MemoryEngine, WriteBatch
from multiraft.proto.serverpb_pb2 import MergeState, Peer, Region, RegionEpoch
from multiraft.raft import ConfChange, ConfChangeType, Entry
from multiraft.store.admin_cmd import (
    AdminDecodeError,
    AdminRequest,
    BatchSplit,
    CommitMerge,
    PrepareMerge,
    RollbackMerge,
    decode_admin,
    encode_admin,
    is_admin_entry,
)
from multiraft.store.cmd import (
    MAX_KEY,
    OP_CAS,
    OP_DELETE,
    OP_PUT,
    Command,
    CommandDecodeError,
    Op,
    command_body,
    decode_command,
    decode_entry,
    encode_batch,
    encode_command,
)
from multiraft.store.membership import ConfChangeDecodeError, decode_conf_change
from multiraft.store.snapshot import (
    SnapshotDecodeError,
    decode_snapshot_data,
    write_snapshot_data,
)

from .support import (
    byte_variants,
    decode_or,
    fuzz_settings,
    garbage,
    mutated,
    mutated_tree,
    run_inputs,
    seeds,
    tree_variants,
)

U64 = 2**64 - 1
u64 = st.one_of(st.integers(0, 20), st.integers(0, U64))
keys = st.binary(min_size=1, max_size=12)
values = st.binary(max_size=24)


# -- KV commands --------------------------------------------------------------------------------

ops = st.one_of(
    st.builds(Op, st.just(OP_PUT), keys, value=values),
    st.builds(Op, st.just(OP_DELETE), keys),
    st.builds(Op, st.just(OP_CAS), keys, value=st.none() | values, expected=st.none() | values),
)
commands = st.builds(
    Command, u64, u64, u64, st.lists(ops, max_size=4), st.binary(max_size=16)
)
command_bytes = commands.map(encode_command)


def _raw_tree(enc: bytes) -> Any:
    return msgpack.unpackb(enc, raw=False, strict_map_key=False)


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


command_trees = st.one_of(commands.map(encode_command).map(_raw_tree), garbage())
command_inputs = st.one_of(
    command_bytes,
    mutated(command_bytes),
    mutated_tree(command_bytes.map(_raw_tree)).map(_pack),
    garbage().map(_pack),
    st.binary(max_size=256),
)


def _variants(data: bytes, tree: Any, seed: int) -> Iterator[bytes]:
    """The hypothesis input's bytes and the tree's, each with their seeded fan-out."""
    yield from byte_variants(data, seed)
    yield from tree_variants(tree, seed + 1, _pack)


def _check_u64(*xs: object) -> None:
    for x in xs:
        assert isinstance(x, int) and 0 <= x <= U64, x


@fuzz_settings(2000, families=2)
@given(command_inputs, command_trees, seeds)
def test_decode_command(data: bytes, tree: Any, seed: int) -> None:
    run_inputs("store.cmd.decode_command", _variants(data, tree, seed), _check_command)


def _check_command(data: bytes) -> None:
    cmd = decode_or(decode_command, data, CommandDecodeError)
    if cmd is None:
        return
    _check_u64(cmd.region_id, cmd.conf_ver, cmd.version)
    assert isinstance(cmd.request_id, bytes)
    for op in cmd.ops:
        op.validate()
    assert decode_command(encode_command(cmd)) == cmd


batch_bytes = st.lists(commands, min_size=1, max_size=4).map(
    lambda cs: encode_batch([command_body(c) for c in cs])
)
batch_inputs = st.one_of(
    batch_bytes,
    command_bytes,
    mutated(batch_bytes),
    mutated_tree(batch_bytes.map(_raw_tree)).map(_pack),
    garbage().map(_pack),
)


@fuzz_settings(2000, families=2)
@given(batch_inputs, st.one_of(batch_bytes.map(_raw_tree), garbage()), seeds)
def test_decode_entry(data: bytes, tree: Any, seed: int) -> None:
    """A round's batch entry (or a single command): every command in it as valid as one
    decoded alone, and the batch round-trips."""
    run_inputs("store.cmd.decode_entry", _variants(data, tree, seed), _check_entry)


def _check_entry(data: bytes) -> None:
    got = decode_or(decode_entry, data, CommandDecodeError)
    if got is None:
        return
    cmds = got if isinstance(got, list) else [got]
    assert cmds
    for cmd in cmds:
        _check_u64(cmd.region_id, cmd.conf_ver, cmd.version)
        assert isinstance(cmd.request_id, bytes)
        for op in cmd.ops:
            op.validate()
    if isinstance(got, list):
        assert decode_entry(encode_batch([command_body(c) for c in cmds])) == cmds


# -- admin commands (split, merge) ------------------------------------------------------------

regions = st.builds(
    Region,
    id=u64,
    start_key=st.binary(max_size=6),
    end_key=st.binary(max_size=6),
    region_epoch=st.builds(RegionEpoch, conf_ver=u64, version=u64),
    peers=st.lists(st.builds(Peer, id=u64, store_id=u64, role=st.integers(0, 3)), max_size=3),
)
entries = st.builds(
    Entry, entry_type=st.integers(0, 2), term=u64, index=u64, data=st.binary(max_size=16)
)
pos_ids = st.lists(st.integers(1, U64), max_size=3)
admin_cmds = st.one_of(
    st.builds(
        BatchSplit,
        st.lists(keys, max_size=3),
        pos_ids,
        st.lists(pos_ids, max_size=3),
        st.booleans(),
    ),
    st.builds(PrepareMerge, u64, regions),
    st.builds(CommitMerge, regions, u64, st.lists(entries, max_size=3)),
    st.builds(RollbackMerge, u64),
)
admin_bytes = st.builds(AdminRequest, u64, u64, u64, admin_cmds).map(encode_admin)
admin_trees = st.one_of(admin_bytes.map(_raw_tree), garbage())
admin_inputs = st.one_of(
    admin_bytes,
    mutated(admin_bytes),
    mutated_tree(admin_bytes.map(_raw_tree)).map(_pack),
    garbage().map(_pack),
    st.binary(max_size=256),
)


@fuzz_settings(2000, families=2)
@given(admin_inputs, admin_trees, seeds)
def test_decode_admin(data: bytes, tree: Any, seed: int) -> None:
    run_inputs("store.admin_cmd.decode_admin", _variants(data, tree, seed), _check_admin)


def _check_admin(data: bytes) -> None:
    is_admin_entry(data)  # never raises
    req = decode_or(decode_admin, data, AdminDecodeError)
    if req is None:
        return
    _check_u64(req.region_id, req.conf_ver, req.version)
    cmd = req.cmd
    if isinstance(cmd, BatchSplit):
        assert all(isinstance(k, bytes) for k in cmd.split_keys)
        _check_u64(*cmd.new_region_ids, *(p for ps in cmd.new_peer_ids for p in ps))
        assert isinstance(cmd.right_derive, bool)
    elif isinstance(cmd, PrepareMerge):
        _check_u64(cmd.min_index)
        MergeState(min_index=cmd.min_index, target=cmd.target)  # what applying it builds
    elif isinstance(cmd, CommitMerge):
        _check_u64(cmd.commit)
        assert all(isinstance(e, Entry) for e in cmd.entries)
    else:
        assert isinstance(cmd, RollbackMerge)
        _check_u64(cmd.commit)
    again = decode_admin(encode_admin(req))
    assert again == req


# -- membership changes -----------------------------------------------------------------------


def _conf_change(
    change_type: Any, node_id: int, conf_ver: int, version: int, pid: int, sid: int, role: int
) -> bytes:
    ctx = _pack([conf_ver, version, pid, sid, role])
    return ConfChange(change_type=change_type, node_id=node_id, context=ctx).SerializeToString()


conf_change_bytes = st.builds(
    _conf_change, st.integers(0, 2), u64, u64, u64, u64, u64, st.integers(0, 3)
)


@st.composite
def conf_change_odd_context(draw: st.DrawFn) -> bytes:
    """A ConfChange whose context is a mutated or garbage msgpack value."""
    base = st.lists(u64, min_size=5, max_size=5)
    ctx = draw(st.one_of(mutated_tree(base).map(_pack), mutated(base.map(_pack)), garbage().map(_pack)))
    change_type: Any = draw(st.integers(0, 2))
    cc = ConfChange(change_type=change_type, node_id=draw(u64), context=ctx)
    return cc.SerializeToString()


conf_change_inputs = st.one_of(
    conf_change_bytes,
    mutated(conf_change_bytes),
    conf_change_odd_context(),
    st.binary(max_size=128),
)


@fuzz_settings(2000)
@given(conf_change_inputs, seeds)
def test_decode_conf_change(data: bytes, seed: int) -> None:
    run_inputs(
        "store.membership.decode_conf_change", byte_variants(data, seed), _check_conf_change
    )


def _check_conf_change(data: bytes) -> None:
    req = decode_or(decode_conf_change, data, ConfChangeDecodeError)
    if req is None:
        return
    _check_u64(req.conf_ver, req.version, req.peer.id, req.peer.store_id)
    assert req.peer.id == req.cc.node_id
    assert req.cc.change_type in (
        ConfChangeType.AddNode,
        ConfChangeType.RemoveNode,
        ConfChangeType.AddLearnerNode,
    )


# -- snapshot data -----------------------------------------------------------------------------


@st.composite
def snapshot_tree(draw: st.DrawFn) -> list[Any]:
    """A valid snapshot's msgpack value: [1, region, kv, dedupe] with the keys in range."""
    start = draw(st.binary(max_size=3))
    end = draw(st.one_of(st.just(b""), st.binary(min_size=1, max_size=3).map(lambda e: start + e)))
    region = draw(regions)
    region.start_key, region.end_key = start, end
    kv: list[bytes] = []
    for k in draw(st.lists(st.binary(max_size=6), max_size=5, unique=True)):
        key = start + b"\x00" + k
        if not end or key < end:
            kv += [key, draw(values)]
    dedupe: list[bytes] = []
    for rid in draw(st.lists(st.binary(min_size=1, max_size=8), max_size=3, unique=True)):
        dedupe += [draw(st.sampled_from([b"\x02", b"\x03"])) + rid, draw(values)]
    return [1, region.SerializeToString(), kv, dedupe]


snapshot_bytes = snapshot_tree().map(_pack)
snapshot_inputs = st.one_of(
    snapshot_bytes,
    mutated(snapshot_bytes),
    mutated_tree(snapshot_tree()).map(_pack),
    garbage().map(_pack),
    st.binary(max_size=256),
)


@fuzz_settings(2000, families=2)
@given(snapshot_inputs, snapshot_tree(), seeds)
def test_decode_snapshot_data(data: bytes, tree: list[Any], seed: int) -> None:
    run_inputs(
        "store.snapshot.decode_snapshot_data", _variants(data, tree, seed), _check_snapshot
    )


def _check_snapshot(data: bytes) -> None:
    snap = decode_or(decode_snapshot_data, data, SnapshotDecodeError)
    if snap is None:
        return
    # What applying the snapshot does must work: into a batch, written to an engine.
    batch = WriteBatch()
    write_snapshot_data(batch, snap)
    MemoryEngine().write(batch)
    region = snap.region
    for k in snap.kv[::2]:
        assert region.start_key <= k and (not region.end_key or k < region.end_key)
        assert 1 <= len(k) <= MAX_KEY


# -- inputs the fuzzing found (each broke the decoder's contract before its fix) ---------------


@pytest.mark.parametrize(
    "data",
    [
        # An empty key (a list, in fact): decoded, then applying the snapshot failed in the
        # engine ("engine keys must be 1..511 bytes").
        _pack([1, b'"\x00', [[], b""], []]),
        _pack([1, b"", [1, 2], []]),  # integers for a key and a value
        _pack([1, b"", b"ab", []]),  # bytes for the list of pairs
        # A key outside the region's range [b, c): it would have been written over another
        # region's data.
        _pack([1, Region(id=1, start_key=b"b", end_key=b"c").SerializeToString(), [b"z", b"v"], []]),
        _pack([1, b"", [b"k" * 600, b"v"], []]),  # a key LMDB cannot store
        _pack([1, b"", [], [b"\x07bad-record", b"v"]]),  # a record key outside its range
    ],
    ids=["found-empty-key", "int-pairs", "bytes-pairs", "out-of-range", "long-key", "record"],
)
def test_regression_snapshot_data(data: bytes) -> None:
    with pytest.raises(SnapshotDecodeError):
        decode_snapshot_data(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",  # protobuf DecodeError escaped
        _conf_change(0, 1, 1, 1, 1, "x", 0),  # type: ignore[arg-type]
        _conf_change(0, 1, 1, 1, 1, -1, 0),
        _conf_change(7, 1, 1, 1, 1, 1, 0),  # no such change type
        _conf_change(0, 1, -1, 1, 1, 1, 0),
    ],
    ids=["found-garbage", "str-store", "negative-store", "unknown-type", "negative-epoch"],
)
def test_regression_conf_change(data: bytes) -> None:
    with pytest.raises(ConfChangeDecodeError):
        decode_conf_change(data)


@pytest.mark.parametrize(
    "data",
    [
        # PrepareMerge with min_index -1: decoded, and applying it would have failed building
        # the MergeState (protobuf uint64).
        b'\x96\x02\xadprepare_merge\x00\x00\x00\x92\xff\xc4\x0f"\x04\x08H\x10\r*\x07\x08\xbe'
        b"\x08\x10\xf7\xa3l",
        _pack([2, "rollback_merge", 1, 1, 1, [-5]]),
        _pack([2, "commit_merge", 1, 1, 1, [b"", -1, []]]),
        _pack([2, "split", 1, 1, 1, [[b"a"], [True], [[1]], False]]),
    ],
    ids=["found-prepare-merge", "rollback", "commit", "bool-region-id"],
)
def test_regression_admin(data: bytes) -> None:
    with pytest.raises(AdminDecodeError):
        decode_admin(data)
