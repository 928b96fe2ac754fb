"""Applying committed KV commands: every region's commands of a round go into one engine
WriteBatch (with the apply states, written by the caller in the same batch).

Semantics of one command (atomic): its ops run in order against the data as left by earlier
commands of the round; if a compare-and-swap does not match, the command writes nothing and
its result is a `CasFailed` naming the op and the current value. A command whose request id
was already applied in the region returns the recorded result and writes nothing again
(retried writes are applied at most once).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import msgpack

from multiraft.engine import CF_APPLY_STATE, CF_KV, WriteBatch
from multiraft.engine.engine import ReadView

from .cmd import OP_CAS, OP_DELETE, OP_PUT, Command

__all__ = [
    "CasFailed",
    "Applied",
    "KvApplier",
    "DedupeTable",
    "Unwritten",
    "dedupe_bounds",
    "read_applied",
    "scan_applied",
]


@dataclass(slots=True, frozen=True)
class CasFailed:
    """The op at `op_index` expected another value; `current` is what the key holds."""

    op_index: int
    current: bytes | None


@dataclass(slots=True, frozen=True)
class Applied:
    """The command was applied; `previous` holds, per op, the value the key had before."""

    previous: tuple[bytes | None, ...]


Result = Applied | CasFailed


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

    __slots__ = ("_cache", "capacity", "_view", "_prefix", "window", "_unwritten")

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

    def __len__(self) -> int:
        return len(self._cache)

    def clear_cache(self) -> None:
        """Forget the cached records (a snapshot replaced the persisted ones)."""
        self._cache.clear()
        self._unwritten.clear()

    def get(self, request_id: bytes, index: int = 0) -> Result | None:
        """The result recorded for `request_id`, unless expired when applying `index`."""
        hit = self._cache.get(request_id)
        if hit is None:
            hit = self._unwritten.get(request_id)
        if hit is None and self._view is not None:
            raw = self._view.get(CF_APPLY_STATE, self._prefix + _RECORD + request_id)
            if raw is not None:
                hit = _decode_record(raw)
        if hit is None or hit[0] + self.window < index:
            return None
        return hit[1]

    def record(
        self, request_id: bytes, result: Result, batch: WriteBatch | None = None, index: int = 0
    ) -> tuple[int, Result]:
        """Remember `result` for `request_id` (and persist it into `batch`). Returns the
        record; the caller hands it to `forget_unwritten` once `batch` is committed."""
        rec = (index, result)
        self._cache[request_id] = rec
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
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


# The store's overlay of applied KV writes whose round is not committed yet: key -> (round,
# value or None = deleted). See KvApplier.
Unwritten = dict[bytes, tuple[int, bytes | None]]


def read_applied(view: ReadView, unwritten: Unwritten, key: bytes) -> bytes | None:
    """The applied value of `key`: the overlay of rounds in flight, then the engine."""
    hit = unwritten.get(key)
    if hit is not None:
        return hit[1]
    return view.get(CF_KV, key)


def scan_applied(
    view: ReadView, unwritten: Unwritten, lo: bytes, hi: bytes | None, limit: int | None = None
) -> list[tuple[bytes, bytes]]:
    """Applied pairs with `lo <= key < hi` (None: no bound) in key order, at most `limit`: the
    engine's, with the overlay of rounds in flight on top."""
    pending = [(k, v) for k, (_, v) in unwritten.items() if lo <= k and (hi is None or k < hi)]
    if not pending:
        return view.scan(CF_KV, lo, hi, limit)
    # Every overlay key may hide one engine pair (a delete): read that many more.
    merged = dict(view.scan(CF_KV, lo, hi, None if limit is None else limit + len(pending)))
    for k, v in pending:
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    return sorted(merged.items())[:limit]


class KvApplier:
    """Applies the commands of one round over a read view of the engine into `batch` (the
    round's write batch, committed later by the writer).

    `unwritten` is the store's overlay of rounds not committed yet: key -> (round, value or
    None = deleted), shared by every round's applier. Invariant: it holds the latest value of
    every key written by a round whose commit has not finished, so reads see earlier commands
    (of this round and of rounds in flight) before the engine does. `written` is this round's
    part, removed by `forget_written` once the round is committed.
    """

    __slots__ = ("_view", "batch", "_unwritten", "_round", "written", "records", "applied_ops")

    def __init__(
        self,
        view: ReadView,
        batch: WriteBatch,
        unwritten: Unwritten | None = None,
        round_number: int = 0,
    ) -> None:
        self._view = view
        self.batch = batch
        self._unwritten = unwritten if unwritten is not None else {}
        self._round = round_number
        # The keys this round wrote, and the request-id records it made.
        self.written: list[bytes] = []
        self.records: list[tuple[DedupeTable, bytes, tuple[int, Result]]] = []
        # Ops written in this round (for metrics).
        self.applied_ops = 0

    def get(self, key: bytes) -> bytes | None:
        return read_applied(self._view, self._unwritten, key)

    def forget_written(self) -> None:
        """This round is committed: the engine holds its writes (a later round's newer value
        of a key stays)."""
        unwritten, rnd = self._unwritten, self._round
        for key in self.written:
            hit = unwritten.get(key)
            if hit is not None and hit[0] == rnd:
                del unwritten[key]
        for table, request_id, rec in self.records:
            table.forget_unwritten(request_id, rec)

    def apply(self, cmd: Command, dedupe: DedupeTable | None = None, index: int = 0) -> Result:
        """Apply one command (the entry at `index`) atomically (see the module docstring)."""
        if dedupe is not None and cmd.request_id:
            seen = dedupe.get(cmd.request_id, index)
            if seen is not None:
                return seen
        local: dict[bytes, bytes | None] = {}

        def current(key: bytes) -> bytes | None:
            return local[key] if key in local else self.get(key)

        previous: list[bytes | None] = []
        for i, op in enumerate(cmd.ops):
            cur = current(op.key)
            if op.kind == OP_CAS and cur != op.expected:
                result: Result = CasFailed(i, cur)
                break
            previous.append(cur)
            if op.kind == OP_PUT or (op.kind == OP_CAS and op.value is not None):
                local[op.key] = op.value
            else:
                assert op.kind in (OP_DELETE, OP_CAS)
                local[op.key] = None
        else:
            unwritten, rnd, written = self._unwritten, self._round, self.written
            for key, value in local.items():
                if value is None:
                    self.batch.delete(CF_KV, key)
                else:
                    self.batch.put(CF_KV, key, value)
                unwritten[key] = (rnd, value)
                written.append(key)
            self.applied_ops += len(cmd.ops)
            result = Applied(tuple(previous))
        if dedupe is not None and cmd.request_id:
            rec = dedupe.record(cmd.request_id, result, self.batch, index)
            self.records.append((dedupe, cmd.request_id, rec))
        return result
