"""Region snapshots: the data half of a raft snapshot (the metadata half is eraftpb's).

A snapshot's `data` is msgpack `[1, region, kv, dedupe]`: the serialized serverpb Region as of
the snapshot's index (range, epoch, peers), every user key/value pair of the range as one flat
list `[k0, v0, k1, v1, ...]`, and the region's request-id records (so a retried write stays
applied once after the snapshot moved the state machine). It is read from one consistent
engine view plus the applied writes whose round is not committed yet (the store's overlay):
together they are exactly the state at the region's applied index.

Applying one on a follower replaces the range: delete every key of the region's range, write
the snapshot's pairs, the region, the apply state and the records, all in one write batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgpack

from multiraft.engine import CF_APPLY_STATE, CF_KV, WriteBatch
from multiraft.engine.engine import ReadView
from multiraft.engine.keys import MAX_KEY_SIZE
from multiraft.proto.serverpb_pb2 import Region

from .dedupe import dedupe_bounds
from .kv import Unwritten, scan_applied

__all__ = [
    "SnapshotData",
    "SnapshotDecodeError",
    "build_snapshot_data",
    "decode_snapshot_data",
    "write_snapshot_data",
]

_VERSION = 1


class SnapshotDecodeError(ValueError):
    """Snapshot data that is not a version-1 region snapshot (never applied)."""


@dataclass(slots=True)
class SnapshotData:
    region: Region
    kv: list[bytes]
    dedupe: list[bytes]


def build_snapshot_data(
    view: ReadView,
    region: Region,
    unwritten_kv: Unwritten | None = None,
    unwritten_records: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """The region's data as of `view` (see the module docstring), plus the applied writes
    not committed to the engine yet: `unwritten_kv` (the store's overlay, any region's keys)
    and `unwritten_records` (request-id records, keys without the region prefix)."""
    pairs = scan_applied(view, unwritten_kv or {}, region.start_key, region.end_key or None)
    lo, hi = dedupe_bounds(region.id)
    records: Iterable[tuple[bytes, bytes]] = (
        (k[8:], v) for k, v in view.scan(CF_APPLY_STATE, lo, hi)
    )
    if unwritten_records:
        merged_records = dict(records)
        merged_records.update(unwritten_records)
        records = sorted(merged_records.items())
    kv: list[bytes] = []
    for k, v in pairs:
        kv.append(k)
        kv.append(v)
    dedupe: list[bytes] = []
    for k, v in records:
        dedupe.append(k)
        dedupe.append(v)
    data: bytes = msgpack.packb(
        [_VERSION, region.SerializeToString(), kv, dedupe], use_bin_type=True
    )
    return data


def decode_snapshot_data(data: bytes) -> SnapshotData:
    try:
        obj = msgpack.unpackb(data, raw=False)
        version, region_bytes, kv, dedupe = obj
        if version != _VERSION or len(kv) % 2 or len(dedupe) % 2:
            raise ValueError("bad layout")
        region = Region.FromString(region_bytes)
    except Exception as e:  # msgpack and protobuf raise several types on garbage
        raise SnapshotDecodeError(f"not a region snapshot: {e}") from e
    _check_pairs(region, kv, dedupe)
    return SnapshotData(region, kv, dedupe)


# Request-id record keys, without the region prefix: [0x02, 0x04).
_RECORDS_LO, _RECORDS_HI = (b[8:] for b in dedupe_bounds(0))


def _check_pairs(region: Region, kv: object, dedupe: object) -> None:
    """Every pair must be writable the way `write_snapshot_data` writes it: keys of the
    region's range and record keys, bytes of storable lengths (checked at C speed: a
    snapshot holds up to millions of pairs)."""
    if type(kv) is not list or type(dedupe) is not list:
        raise SnapshotDecodeError("not a region snapshot: the pairs must be lists")
    if not set(map(type, kv)) <= {bytes} or not set(map(type, dedupe)) <= {bytes}:
        raise SnapshotDecodeError("not a region snapshot: keys and values must be bytes")
    keys = kv[::2]
    if keys:
        start, end = region.start_key, region.end_key
        if min(keys) < start or (end and max(keys) >= end):
            raise SnapshotDecodeError(f"region {region.id}: a key outside the region's range")
        if not 0 < min(map(len, keys)) <= max(map(len, keys)) <= MAX_KEY_SIZE:
            raise SnapshotDecodeError(f"region {region.id}: a key of a bad length")
    records = dedupe[::2]
    if records and (
        min(records) < _RECORDS_LO
        or max(records) >= _RECORDS_HI
        or max(map(len, records)) > MAX_KEY_SIZE - 8
    ):
        raise SnapshotDecodeError(f"region {region.id}: a bad request-id record key")


def write_snapshot_data(batch: WriteBatch, snap: SnapshotData) -> None:
    """Replace the region's range and request-id records by the snapshot's (into `batch`)."""
    region = snap.region
    batch.delete_range(CF_KV, region.start_key, region.end_key or None)
    kv = snap.kv
    for i in range(0, len(kv), 2):
        batch.put(CF_KV, kv[i], kv[i + 1])
    lo, hi = dedupe_bounds(region.id)
    batch.delete_range(CF_APPLY_STATE, lo, hi)
    dd = snap.dedupe
    for i in range(0, len(dd), 2):
        batch.put(CF_APPLY_STATE, lo[:8] + dd[i], dd[i + 1])
