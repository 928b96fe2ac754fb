"""Region metadata helpers: key ranges, epochs, peers, bootstrap layout.

A region owns `[start_key, end_key)`; an empty `end_key` means +infinity. Its epoch is
`(conf_ver, version)`: conf_ver moves with membership changes, version with splits and merges.
"""

from __future__ import annotations

from collections.abc import Sequence

from multiraft.proto.serverpb_pb2 import Peer, Region, RegionEpoch

from .errors import EpochNotMatch, KeyNotInRegion

__all__ = [
    "key_in_region",
    "check_key_in_region",
    "ranges_overlap",
    "is_epoch_stale",
    "check_region_epoch",
    "find_peer",
    "find_peer_on_store",
    "split_keys",
    "new_region",
]


def key_in_region(key: bytes, region: Region) -> bool:
    return key >= region.start_key and (not region.end_key or key < region.end_key)


def check_key_in_region(key: bytes, region: Region) -> None:
    if not key_in_region(key, region):
        raise KeyNotInRegion(key, region)


def ranges_overlap(a_start: bytes, a_end: bytes, b_start: bytes, b_end: bytes) -> bool:
    """Whether `[a_start, a_end)` and `[b_start, b_end)` intersect (empty end = +inf)."""
    a_before_b = bool(a_end) and a_end <= b_start
    b_before_a = bool(b_end) and b_end <= a_start
    return not (a_before_b or b_before_a)


def is_epoch_stale(epoch: RegionEpoch, current: RegionEpoch) -> bool:
    """An epoch older than the current one in either dimension is stale."""
    return epoch.version < current.version or epoch.conf_ver < current.conf_ver


def check_region_epoch(epoch: RegionEpoch, region: Region, *, check_conf_ver: bool) -> None:
    """Refuse a request whose epoch does not match the region's (EpochNotMatch carries the
    current region so the client can refresh its cache). Reads and writes check `version`
    (the range may have changed); admin membership commands also check `conf_ver`."""
    cur = region.region_epoch
    if epoch.version != cur.version or (check_conf_ver and epoch.conf_ver != cur.conf_ver):
        raise EpochNotMatch(
            f"region {region.id}: epoch not match, request (conf_ver {epoch.conf_ver}, "
            f"version {epoch.version}), current (conf_ver {cur.conf_ver}, version {cur.version})",
            [region],
        )


def find_peer(region: Region, peer_id: int) -> Peer | None:
    for p in region.peers:
        if p.id == peer_id:
            return p
    return None


def find_peer_on_store(region: Region, store_id: int) -> Peer | None:
    for p in region.peers:
        if p.store_id == store_id:
            return p
    return None


def split_keys(n: int) -> list[bytes]:
    """`n - 1` split keys dividing the key space evenly for `n` initial regions: big-endian
    prefixes of 2 bytes (4 past 65,536 regions), so keys of any length fall into exactly one
    region."""
    if n < 1:
        raise ValueError("at least one region")
    if n > 1 << 32:
        raise ValueError("at most 2**32 initial regions")
    width = 2 if n <= 1 << 16 else 4
    bits = 8 * width
    return [((i << bits) // n).to_bytes(width, "big") for i in range(1, n)]


def new_region(
    region_id: int, start_key: bytes, end_key: bytes, peers: Sequence[tuple[int, int]]
) -> Region:
    """A region at epoch (1, 1) with voters `(peer_id, store_id)`."""
    r = Region(id=region_id, start_key=start_key, end_key=end_key)
    r.region_epoch.conf_ver = 1
    r.region_epoch.version = 1
    for pid, sid in peers:
        r.peers.add(id=pid, store_id=sid)
    return r
