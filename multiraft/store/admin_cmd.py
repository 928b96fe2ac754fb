"""Admin commands carried in raft entries: split and merge (one codec module per wire schema).

An admin entry's data is msgpack `[2, kind, region_id, conf_ver, version, body]`: the epoch
is the region's when the command was proposed, and every replica refuses the command alike
when the region's epoch moved since (the rules per kind are in `CHECK_CONF_VER`). KV commands
(`cmd.py`) start with 1 instead, so one byte tells the two apart (`is_admin_entry`).

- `BatchSplit(split_keys, new_region_ids, new_peer_ids, right_derive)`: cut the region at
  each key; the new regions take `new_region_ids` in key order, and `new_peer_ids[i]` holds
  their peers' ids in the order of the region's peers; the original region keeps the
  rightmost range when `right_derive`, else the leftmost (TiKV's BatchSplit).
- `PrepareMerge(min_index, target)`: the source stops serving and waits to be merged into
  `target` (the target region as the proposer knew it); `min_index` is the smallest index
  every source peer had when it was proposed (the entries after it travel in CommitMerge).
- `CommitMerge(source, commit, entries)`: proposed on the target; `source` is the source
  region as PrepareMerge left it, `commit` the PrepareMerge's index, `entries` the source's
  log `(min_index, commit]` so a lagging source replica can catch up without its group.
- `RollbackMerge(commit)`: the source serves again (the merge whose PrepareMerge is at
  `commit` did not happen).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from multiraft.proto.serverpb_pb2 import Region
from multiraft.raft import Entry

__all__ = [
    "BatchSplit",
    "PrepareMerge",
    "CommitMerge",
    "RollbackMerge",
    "AdminCommand",
    "AdminRequest",
    "AdminDecodeError",
    "CHECK_CONF_VER",
    "encode_admin",
    "decode_admin",
    "is_admin_entry",
]

_TAG = 2
_SPLIT = "split"
_PREPARE_MERGE = "prepare_merge"
_COMMIT_MERGE = "commit_merge"
_ROLLBACK_MERGE = "rollback_merge"


@dataclass(slots=True)
class BatchSplit:
    split_keys: list[bytes]
    new_region_ids: list[int]
    new_peer_ids: list[list[int]]
    right_derive: bool = True


@dataclass(slots=True)
class PrepareMerge:
    min_index: int
    target: Region


@dataclass(slots=True)
class CommitMerge:
    source: Region
    commit: int
    entries: list[Entry] = field(default_factory=list)


@dataclass(slots=True)
class RollbackMerge:
    commit: int


AdminCommand = BatchSplit | PrepareMerge | CommitMerge | RollbackMerge

# Whether a command also checks conf_ver (all check version). A split copies the peer list
# and uses peer ids allocated for it, so a membership change in between must refuse it; a
# rollback may follow anything the merging source did (TiKV's AdminCmdEpochState).
CHECK_CONF_VER: dict[type, bool] = {
    BatchSplit: True,
    PrepareMerge: True,
    CommitMerge: True,
    RollbackMerge: False,
}


@dataclass(slots=True)
class AdminRequest:
    """An admin command for `region_id`, proposed in epoch `(conf_ver, version)`."""

    region_id: int
    conf_ver: int
    version: int
    cmd: AdminCommand


class AdminDecodeError(ValueError):
    """Malformed admin entry data (never applied; the entry is skipped with this error)."""


def is_admin_entry(data: bytes) -> bool:
    """Whether normal-entry `data` holds an admin command: both kinds are msgpack arrays of
    six (one byte, 0x96) whose first element is the tag (one byte)."""
    return len(data) > 1 and data[1] == _TAG


def encode_admin(req: AdminRequest) -> bytes:
    cmd = req.cmd
    body: list[object]
    if isinstance(cmd, BatchSplit):
        kind = _SPLIT
        body = [cmd.split_keys, cmd.new_region_ids, cmd.new_peer_ids, cmd.right_derive]
    elif isinstance(cmd, PrepareMerge):
        kind = _PREPARE_MERGE
        body = [cmd.min_index, cmd.target.SerializeToString()]
    elif isinstance(cmd, CommitMerge):
        kind = _COMMIT_MERGE
        body = [
            cmd.source.SerializeToString(),
            cmd.commit,
            [e.SerializeToString() for e in cmd.entries],
        ]
    else:
        kind = _ROLLBACK_MERGE
        body = [cmd.commit]
    data: bytes = msgpack.packb(
        [_TAG, kind, req.region_id, req.conf_ver, req.version, body], use_bin_type=True
    )
    return data


def _ints(v: object, what: str) -> list[int]:
    if not isinstance(v, list) or not all(type(x) is int and x > 0 for x in v):
        raise AdminDecodeError(f"{what} must be a list of positive integers")
    return v


def _index(v: object) -> bool:
    """A log index: a non-negative integer (msgpack integers are below 2**64)."""
    return type(v) is int and v >= 0


def decode_admin(data: bytes) -> AdminRequest:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
        tag, kind, region_id, conf_ver, version, body = obj
    except Exception as e:  # msgpack raises several types on garbage; unpacking ValueError
        raise AdminDecodeError(f"not an admin command: {e}") from e
    if tag != _TAG or not all(isinstance(x, int) and x >= 0 for x in (region_id, conf_ver, version)):
        raise AdminDecodeError("bad admin command header")
    if not isinstance(body, list):
        raise AdminDecodeError("the body must be a list")
    cmd: AdminCommand
    try:
        if kind == _SPLIT:
            keys, region_ids, peer_ids, right_derive = body
            if not isinstance(keys, list) or not all(isinstance(k, bytes) for k in keys):
                raise AdminDecodeError("split keys must be a list of bytes")
            if not isinstance(peer_ids, list):
                raise AdminDecodeError("peer ids must be a list of lists")
            cmd = BatchSplit(
                keys,
                _ints(region_ids, "region ids"),
                [_ints(p, "peer ids") for p in peer_ids],
                bool(right_derive),
            )
        elif kind == _PREPARE_MERGE:
            min_index, target = body
            if not _index(min_index) or not isinstance(target, bytes):
                raise AdminDecodeError("bad PrepareMerge")
            cmd = PrepareMerge(min_index, Region.FromString(target))
        elif kind == _COMMIT_MERGE:
            source, commit, entries = body
            if not isinstance(source, bytes) or not _index(commit):
                raise AdminDecodeError("bad CommitMerge")
            if not isinstance(entries, list) or not all(isinstance(e, bytes) for e in entries):
                raise AdminDecodeError("CommitMerge entries must be a list of bytes")
            cmd = CommitMerge(
                Region.FromString(source), commit, [Entry.FromString(e) for e in entries]
            )
        elif kind == _ROLLBACK_MERGE:
            (commit,) = body
            if not _index(commit):
                raise AdminDecodeError("bad RollbackMerge")
            cmd = RollbackMerge(commit)
        else:
            raise AdminDecodeError(f"unknown admin command {kind!r:.40}")
    except AdminDecodeError:
        raise
    except Exception as e:  # wrong arity, protobuf DecodeError
        raise AdminDecodeError(f"bad {kind!r:.40} body: {e}") from e
    return AdminRequest(region_id, conf_ver, version, cmd)
