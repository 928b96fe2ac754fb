"""The client's region cache: which region owns a key, its epoch, replicas and leader.

Regions are kept sorted by start key and never overlap. Invariant: `_starts[i] ==
_regions[i].start` and `_regions[i].end <= _regions[i + 1].start` (with b"" = +inf only
last). Gaps are allowed: a key in a gap is a miss, and the client asks a store for `regions`.
Invariant: `_by_id` maps the id of every cached region to it (lookups by id, and the stale
copy an update replaces, without a scan: a store may hold 100,000 regions).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from .protocol import RegionInfo

__all__ = ["RegionCache"]


def _is_newer(a: RegionInfo, b: RegionInfo) -> bool:
    """Whether `a` is strictly newer metadata than `b` (versions move with splits and merges
    across overlapping regions; conf_ver breaks ties within one region)."""
    if a.version != b.version:
        return a.version > b.version
    return a.id == b.id and a.conf_ver > b.conf_ver


class RegionCache:
    __slots__ = ("_starts", "_regions", "_by_id")

    def __init__(self) -> None:
        self._starts: list[bytes] = []
        self._regions: list[RegionInfo] = []
        self._by_id: dict[int, RegionInfo] = {}

    def __len__(self) -> int:
        return len(self._regions)

    def regions(self) -> list[RegionInfo]:
        return list(self._regions)

    def lookup(self, key: bytes) -> RegionInfo | None:
        i = bisect_right(self._starts, key) - 1
        if i >= 0:
            r = self._regions[i]
            if r.contains(key):
                return r
        return None

    def get(self, region_id: int) -> RegionInfo | None:
        return self._by_id.get(region_id)

    def _index_of(self, r: RegionInfo) -> int:
        """The position of cached region `r` (start keys are unique: regions do not overlap)."""
        i = bisect_left(self._starts, r.start)
        assert self._regions[i] is r
        return i

    def _overlapping(self, start: bytes, end: bytes) -> tuple[int, int]:
        """Index range `[lo, hi)` of the cached regions overlapping `[start, end)`."""
        lo = bisect_right(self._starts, start) - 1
        if lo < 0 or (self._regions[lo].end and self._regions[lo].end <= start):
            lo += 1
        hi = lo
        n = len(self._regions)
        while hi < n and (not end or self._regions[hi].start < end):
            hi += 1
        return lo, hi

    def update(self, info: RegionInfo) -> bool:
        """Insert `info`, dropping the cached regions it overlaps, unless one of them is newer
        (then `info` is stale and ignored). Returns whether the cache changed."""
        lo, hi = self._overlapping(info.start, info.end)
        old = self._regions[lo:hi]
        for r in old:
            if _is_newer(r, info):
                return False
        if len(old) == 1:
            r = old[0]
            if (r.id, r.start, r.end, r.conf_ver, r.version) == (
                info.id, info.start, info.end, info.conf_ver, info.version
            ):
                # The same region: learn the leader (keep ours if this store knows none).
                if info.leader is not None:
                    r.leader = info.leader
                r.peers = info.peers
                return False
        # Drop any stale copy of the same region id outside this range (it moved by a merge).
        stale = self._by_id.get(info.id)
        if stale is not None:
            i = self._index_of(stale)
            if not lo <= i < hi:
                self._remove_at(i)
                if i < lo:
                    lo -= 1
                    hi -= 1
        for r in self._regions[lo:hi]:
            if self._by_id.get(r.id) is r:
                del self._by_id[r.id]
        self._regions[lo:hi] = [info]
        self._starts[lo:hi] = [info.start]
        self._by_id[info.id] = info
        return True

    def _remove_at(self, i: int) -> None:
        r = self._regions.pop(i)
        del self._starts[i]
        if self._by_id.get(r.id) is r:
            del self._by_id[r.id]

    def invalidate(self, region_id: int) -> None:
        """Forget a region (it moved, split, merged, or its store lost it)."""
        r = self._by_id.get(region_id)
        if r is not None:
            self._remove_at(self._index_of(r))

    def set_leader(self, region_id: int, store_id: int | None) -> None:
        r = self.get(region_id)
        if r is not None:
            r.leader = store_id

    def forget_store_leaders(self, store_id: int) -> None:
        """A store is unreachable: stop sending to it as the leader of anything."""
        for r in self._regions:
            if r.leader == store_id:
                r.leader = None
