"""Request-id records: the results of recently applied writes of a region, so that a retried
write applies at most once."""

from __future__ import annotations

from collections import OrderedDict

import msgpack

from multiraft.engine import CF_APPLY_STATE, WriteBatch
from multiraft.engine.engine import ReadView

from .cmd import Applied, CasFailed, Result

__all__ = ["DedupeTable", "dedupe_bounds"]


def dedupe_bounds(region_id: int) -> tuple[bytes, bytes]:
    """The apply_state key range of one region's request-id records (both kinds)."""
    prefix = region_id.to_bytes(8, "big")
    return prefix + _RECORD, prefix + b"\x04"


_RECORD = b"\x02"  # region id, 0x02, request id -> [index, result]
_BY_INDEX = b"\x03"  # region id, 0x03, index u64 BE, request id -> b"" (for GC)


class DedupeTable:
    """The results of request ids applied in one region, so a retried write applies once.

    Records are persisted in the apply_state column family in the same write batch as the
    apply they describe, so they survive restarts exactly as far as the applied data does;
    recent ones are also cached in memory. A record expires `window` entries after the index
    it was applied at. Expiry is decided by log position, never by wall time or by when GC
    ran, so every replica makes the same decision for the same entry (a replica that still
    holds an expired record ignores it). `gc` deletes expired records at leisure.
    """

    __slots__ = ("_cache", "capacity", "_view", "_prefix", "window", "_unwritten", "_complete")

    def __init__(
        self,
        view: ReadView | None = None,
        region_id: int = 0,
        capacity: int = 4096,
        window: int = 100_000,
    ) -> None:
        self._cache: OrderedDict[bytes, tuple[int, Result]] = OrderedDict()
        self.capacity = capacity
        self._view = view
        self._prefix = region_id.to_bytes(8, "big")
        self.window = window
        # Records whose batch is not committed yet: the engine does not have them, so they
        # must not be lost to the cache's eviction (see `forget_unwritten`).
        self._unwritten: dict[bytes, tuple[int, Result]] = {}
        # Invariant: when True, every unexpired record the engine holds for the region is in
        # `_cache` too, so a request id missing there is new and `get` does not ask the
        # engine (one LMDB miss per new write otherwise). None: not known yet (`_load` finds
        # out at the first miss); False once a live record was evicted, or when the engine
        # held more than the cache takes.
        self._complete: bool | None = None

    def __len__(self) -> int:
        return len(self._cache)

    def clear_cache(self) -> None:
        """Forget the cached records (a snapshot replaced the persisted ones)."""
        self._cache.clear()
        self._unwritten.clear()
        self._complete = None

    def get(self, request_id: bytes, index: int = 0) -> Result | None:
        """The result recorded for `request_id`, unless expired when applying `index`."""
        hit = self._cache.get(request_id)
        if hit is None:
            hit = self._unwritten.get(request_id)
        if hit is None and self._view is not None:
            if self._complete is None:
                self._load()
                hit = self._cache.get(request_id)
            if hit is None and not self._complete:
                raw = self._view.get(CF_APPLY_STATE, self._prefix + _RECORD + request_id)
                if raw is not None:
                    hit = _decode_record(raw)
        if hit is None or hit[0] + self.window < index:
            return None
        return hit[1]

    def _load(self) -> None:
        """At the first miss: if the engine holds no more records of the region than the
        cache has room for, cache them all (oldest first, below the newer ones cached
        already) and stop asking the engine for the request ids the cache lacks."""
        assert self._view is not None
        cache = self._cache
        lo = self._prefix + _RECORD
        rows = self._view.scan(CF_APPLY_STATE, lo, self._prefix + _BY_INDEX, self.capacity + 1)
        if len(rows) + len(cache) > self.capacity:
            self._complete = False
            return
        n = len(lo)
        loaded = sorted(((key[n:], _decode_record(raw)) for key, raw in rows), key=_index_of)
        self._cache = OrderedDict(loaded)
        self._cache.update(cache)
        self._complete = True

    def record(
        self, request_id: bytes, result: Result, batch: WriteBatch | None = None, index: int = 0
    ) -> tuple[int, Result]:
        """Remember `result` for `request_id` (and persist it into `batch`). Returns the
        record; the caller hands it to `forget_unwritten` once `batch` is committed."""
        rec = (index, result)
        cache = self._cache
        cache[request_id] = rec
        while len(cache) > self.capacity:
            _, (old, _) = cache.popitem(last=False)
            if old + self.window >= index:
                self._complete = False  # a live record is in the engine only now
        if batch is not None and self._view is not None:
            self._unwritten[request_id] = rec
            batch.put(CF_APPLY_STATE, self._prefix + _RECORD + request_id, _encode_record(index, result))
            batch.put(CF_APPLY_STATE, self._prefix + _BY_INDEX + index.to_bytes(8, "big") + request_id, b"")
        return rec

    def forget_unwritten(self, request_id: bytes, rec: tuple[int, Result]) -> None:
        """The batch holding `rec` is committed: the engine answers for it now."""
        if self._unwritten.get(request_id) is rec:
            del self._unwritten[request_id]

    @property
    def unwritten(self) -> int:
        return len(self._unwritten)

    def unwritten_records(self) -> list[tuple[bytes, bytes]]:
        """The records whose batch is not committed yet, as the apply_state entries they
        write (keys without the region prefix, as in `dedupe_bounds`' range)."""
        out: list[tuple[bytes, bytes]] = []
        for request_id, (index, result) in self._unwritten.items():
            out.append((_RECORD + request_id, _encode_record(index, result)))
            out.append((_BY_INDEX + index.to_bytes(8, "big") + request_id, b""))
        return out

    def live_records(self, index: int) -> list[tuple[bytes, Result]]:
        """Every record not expired when applying `index` (persisted or in flight), in
        request-id order: what a region split off or merged into another inherits."""
        if self._view is None:
            return []
        lo = self._prefix + _RECORD
        recs = {
            key[len(lo) :]: _decode_record(raw)
            for key, raw in self._view.scan(CF_APPLY_STATE, lo, self._prefix + _BY_INDEX)
        }
        recs.update(self._unwritten)
        return [(rid, rec[1]) for rid, rec in sorted(recs.items()) if rec[0] + self.window >= index]

    def inherit(self, records: list[tuple[bytes, Result]], batch: WriteBatch, index: int) -> None:
        """Record `records` (another region's live records) as applied at `index` here, into
        `batch`: a write retried against this region after its keys moved here by a split or
        merge still applies once. Every replica inherits the same records at the same
        index, so expiry stays a function of the log."""
        made = [(rid, self.record(rid, result, batch, index)) for rid, result in records]

        def written() -> None:
            for rid, rec in made:
                self.forget_unwritten(rid, rec)

        if made:
            batch.add_commit_hook(written)

    def gc(self, batch: WriteBatch, applied_index: int) -> int:
        """Delete the records expired at `applied_index` (into `batch`); returns how many."""
        if self._view is None or applied_index <= self.window:
            return 0
        lo = self._prefix + _BY_INDEX
        hi = lo + (applied_index - self.window).to_bytes(8, "big")
        n = 0
        for key, _ in self._view.scan(CF_APPLY_STATE, lo, hi):
            request_id = key[len(lo) + 8 :]
            batch.delete(CF_APPLY_STATE, self._prefix + _RECORD + request_id)
            self._cache.pop(request_id, None)
            n += 1
        if n:
            batch.delete_range(CF_APPLY_STATE, lo, hi)
        return n


def _encode_record(index: int, r: Result) -> bytes:
    obj = [index, 0, list(r.previous)] if isinstance(r, Applied) else [index, 1, r.op_index, r.current]
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _decode_record(raw: bytes) -> tuple[int, Result]:
    obj = msgpack.unpackb(raw, raw=False)
    if obj[1] == 0:
        return obj[0], Applied(tuple(obj[2]))
    return obj[0], CasFailed(obj[2], obj[3])


def _index_of(item: tuple[bytes, tuple[int, Result]]) -> int:
    return item[1][0]
