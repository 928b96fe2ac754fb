"""`MemoryEngine`: the in-memory engine with the `Engine` contract, for the deterministic
simulator and unit tests.

Each column family is a `_Table`: a dict for point reads plus a sorted key list (bisect) for
scans. Snapshots are copy-on-write: a snapshot shares the tables it saw and the next write to
a shared table copies it first, so a snapshot costs nothing until someone writes.

Crash simulation: writes with `sync=False` are applied at once but remembered in an undo log;
a write with `sync=True` makes everything before it durable (like an fsync of the whole file)
and clears the log. `crash()` rolls back every unsynced write, as if the process died and the
OS lost its page cache. `fail_next_write()` makes the next commit fail (fault injection for
the batching layer's tests). Thread-safe (one lock), so a writer thread can commit to it.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left, insort
from types import TracebackType
from typing import Self

from .engine import OP_DELETE, EngineStats, WriteBatch, check_cf
from .errors import EngineClosed, WriteFailed
from .keys import ALL_CFS, MAX_KEY_SIZE

__all__ = ["MemoryEngine", "MemorySnapshot"]


class _Table:
    """One column family: `data` for point reads, `keys` sorted for scans.

    Invariant: `sorted(data) == keys`.
    Invariant: a table with `snap_refs > 0` is never mutated (writers copy it first).
    """

    __slots__ = ("data", "keys", "snap_refs")

    def __init__(self, data: dict[bytes, bytes] | None = None, keys: list[bytes] | None = None):
        self.data: dict[bytes, bytes] = data if data is not None else {}
        self.keys: list[bytes] = keys if keys is not None else []
        # Open snapshots that share this table.
        self.snap_refs = 0

    def copy(self) -> _Table:
        return _Table(dict(self.data), list(self.keys))

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(
        self, start: bytes, end: bytes | None, limit: int | None, reverse: bool
    ) -> list[tuple[bytes, bytes]]:
        keys = self.keys
        lo = bisect_left(keys, start) if start else 0
        hi = len(keys) if end is None else bisect_left(keys, end)
        if hi <= lo or (limit is not None and limit <= 0):
            return []
        data = self.data
        if reverse:
            if limit is not None:
                lo = max(lo, hi - limit)
            return [(k, data[k]) for k in reversed(keys[lo:hi])]
        if limit is not None:
            hi = min(hi, lo + limit)
        return [(k, data[k]) for k in keys[lo:hi]]

    def put(self, key: bytes, value: bytes) -> bytes | None:
        """Set key; returns the previous value."""
        data = self.data
        old = data.get(key)
        if old is None:
            insort(self.keys, key)
        data[key] = value
        return old

    def delete(self, key: bytes) -> bytes | None:
        """Remove key; returns the previous value."""
        old = self.data.pop(key, None)
        if old is not None:
            keys = self.keys
            del keys[bisect_left(keys, key)]
        return old

    def delete_range(self, start: bytes, end: bytes | None) -> list[tuple[bytes, bytes]]:
        """Remove `[start, end)`; returns the removed pairs."""
        keys = self.keys
        lo = bisect_left(keys, start)
        hi = len(keys) if end is None else bisect_left(keys, end)
        if hi <= lo:
            return []
        data = self.data
        gone = [(k, data.pop(k)) for k in keys[lo:hi]]
        del keys[lo:hi]
        return gone


# One undo record: (cf, key, value before the write or None if it was absent).
_Undo = tuple[str, bytes, bytes | None]


class MemoryEngine:
    """The in-memory `Engine` (module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # cf -> current table (replaced by a copy when a snapshot shares it).
        self._tables: dict[str, _Table] = {cf: _Table() for cf in ALL_CFS}
        # Undo records of the writes since the last synced one, oldest first.
        self._undo: list[_Undo] = []
        self._snapshots: weakref.WeakSet[MemorySnapshot] = weakref.WeakSet()
        self._fail_next: BaseException | None = None
        self._closed = False
        self._stats = EngineStats()

    @property
    def stats(self) -> EngineStats:
        return self._stats

    # -- reads --------------------------------------------------------------------------

    def get(self, cf: str, key: bytes) -> bytes | None:
        if not 0 < len(key) <= MAX_KEY_SIZE:
            raise ValueError(f"engine keys must be 1..{MAX_KEY_SIZE} bytes, got {len(key)}")
        with self._lock:
            if self._closed:
                raise EngineClosed()
            try:
                table = self._tables[cf]
            except KeyError:
                check_cf(cf)
                raise
            return table.data.get(key)

    def scan(
        self,
        cf: str,
        start: bytes = b"",
        end: bytes | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        check_cf(cf)
        with self._lock:
            if self._closed:
                raise EngineClosed()
            return self._tables[cf].scan(start, end, limit, reverse)

    def snapshot(self) -> MemorySnapshot:
        with self._lock:
            if self._closed:
                raise EngineClosed()
            tables = dict(self._tables)
            for t in tables.values():
                t.snap_refs += 1
            snap = MemorySnapshot(self, tables)
            self._snapshots.add(snap)
            return snap

    # -- writes -------------------------------------------------------------------------

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        batch.check_writable()
        batch.prepare()
        with self._lock:
            if self._closed:
                raise EngineClosed()
            if self._fail_next is not None:
                err, self._fail_next = self._fail_next, None
                raise err
            if batch.is_empty():
                if sync:
                    self._undo.clear()
                batch.mark_committed()
                return
            undo = None if sync else self._undo
            for cf, segs in batch.segments():
                if not segs:
                    continue
                table = self._tables[cf]
                if table.snap_refs:
                    table = self._tables[cf] = table.copy()
                for seg in segs:
                    if isinstance(seg, list):
                        if undo is None:
                            for key, value in seg:
                                table.put(key, value)
                        else:
                            for key, value in seg:
                                undo.append((cf, key, table.put(key, value)))
                    else:
                        op, a, b = seg
                        if op == OP_DELETE:
                            old = table.delete(a)
                            if undo is not None and old is not None:
                                undo.append((cf, a, old))
                        else:
                            gone = table.delete_range(a, b)
                            if undo is not None:
                                undo.extend((cf, k, v) for k, v in gone)
            if sync:
                self._undo.clear()
            stats = self._stats
            stats.commits += 1
            stats.synced_commits += sync
            stats.ops += len(batch)
            stats.bytes += batch.approximate_size()
            batch.mark_committed()

    # -- lifecycle and fault injection ----------------------------------------------------

    def fail_next_write(self, error: BaseException | None = None) -> None:
        """Make the next `write` raise `error` (default `WriteFailed`) without applying it."""
        self._fail_next = error if error is not None else WriteFailed("injected write failure")

    def crash(self) -> None:
        """Lose every write made since the last synced one (a process + OS crash), and close
        every open snapshot. The engine stays usable, like a restarted one."""
        with self._lock:
            for snap in list(self._snapshots):
                snap._release_locked()
            for cf, key, old in reversed(self._undo):
                table = self._tables[cf]
                if table.snap_refs:
                    table = self._tables[cf] = table.copy()
                if old is None:
                    table.delete(key)
                else:
                    table.put(key, old)
            self._undo.clear()
            self._fail_next = None

    def unsynced_writes(self) -> int:
        """Number of key changes a `crash()` would roll back."""
        return len(self._undo)

    def close(self) -> None:
        with self._lock:
            for snap in list(self._snapshots):
                snap._release_locked()
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{cf}={len(t.keys)}" for cf, t in self._tables.items())
        return f"MemoryEngine({sizes})"


class MemorySnapshot:
    """A copy-on-write read view of a `MemoryEngine`.

    A snapshot dropped without `close()` costs at most one extra table copy: the engine only
    looks at the share count of the tables it still points to.
    """

    __slots__ = ("_engine", "_tables", "__weakref__")

    def __init__(self, engine: MemoryEngine, tables: dict[str, _Table]) -> None:
        self._engine = engine
        # The engine's tables at snapshot time (None once closed); never mutated while shared.
        self._tables: dict[str, _Table] | None = tables

    def _table(self, cf: str) -> _Table:
        check_cf(cf)
        tables = self._tables
        if tables is None:
            raise EngineClosed("snapshot is closed")
        return tables[cf]

    def get(self, cf: str, key: bytes) -> bytes | None:
        if not 0 < len(key) <= MAX_KEY_SIZE:
            raise ValueError(f"engine keys must be 1..{MAX_KEY_SIZE} bytes, got {len(key)}")
        return self._table(cf).data.get(key)

    def scan(
        self,
        cf: str,
        start: bytes = b"",
        end: bytes | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        return self._table(cf).scan(start, end, limit, reverse)

    def _release_locked(self) -> None:
        # Caller holds the engine lock.
        if self._tables is not None:
            for t in self._tables.values():
                t.snap_refs -= 1
            self._tables = None
            self._engine._snapshots.discard(self)

    def close(self) -> None:
        with self._engine._lock:
            self._release_locked()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
