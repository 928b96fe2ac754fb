"""Cluster-wide unique ids without a coordinator: `(store_id << 40) | counter`.

Each store hands out region and peer ids from its own counter. The counter is persisted in
steps (`batch` ids at a time) BEFORE any id of a step is used, so a restarted store never hands
out an id twice: it resumes after the last persisted ceiling (ids between the last used one and
the ceiling are skipped, never reused).
"""

from __future__ import annotations

import struct

from multiraft.engine import CF_META, Engine, WriteBatch
from multiraft.engine.keys import meta_key

__all__ = ["IdAllocator", "STORE_ID_BITS", "COUNTER_BITS"]

COUNTER_BITS = 40
STORE_ID_BITS = 24
_KEY = meta_key("id_alloc")


class IdAllocator:
    """Invariant: next_counter <= ceiling, and `ceiling` is durable in the engine."""

    __slots__ = ("store_id", "_engine", "_batch", "_next", "_ceiling")

    def __init__(self, engine: Engine, store_id: int, batch: int = 1000) -> None:
        if not 0 < store_id < 1 << STORE_ID_BITS:
            raise ValueError(f"store id must be in [1, {1 << STORE_ID_BITS})")
        self.store_id = store_id
        self._engine = engine
        self._batch = batch
        raw = engine.get(CF_META, _KEY)
        ceiling = struct.unpack(">Q", raw)[0] if raw is not None else 0
        # Counter 0 is never used, so no id is 0 (raft's INVALID_ID).
        self._next = max(ceiling, 1)
        self._ceiling = ceiling

    def next_id(self) -> int:
        """A fresh id; persists a new ceiling (one synced write) every `batch` ids."""
        if self._next >= self._ceiling:
            ceiling = self._next + self._batch
            if ceiling >= 1 << COUNTER_BITS:
                raise RuntimeError(f"store {self.store_id} ran out of ids")
            wb = WriteBatch()
            wb.put(CF_META, _KEY, struct.pack(">Q", ceiling))
            self._engine.write(wb, sync=True)
            self._ceiling = ceiling
        counter = self._next
        self._next += 1
        return (self.store_id << COUNTER_BITS) | counter
