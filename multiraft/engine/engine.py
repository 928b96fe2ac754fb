"""The `Engine` protocol and the `WriteBatch` every engine commits.

An engine is an ordered key-value store with named column families (`keys.ALL_CFS`), atomic
multi-CF write batches, point reads, ordered range scans and consistent read views. Two
implementations share this contract and one test suite: `LmdbEngine` (the store's default, on
disk) and `MemoryEngine` (the simulator's and the unit tests').

Contract, per method (both engines):

- `write(batch, sync=True)`: first runs the batch's prepare hooks (`WriteBatch.prepare`, on
  the writing thread; they may add operations), then applies every operation of the batch
  atomically (all or nothing) and in order within a column family; with `sync=True` the batch
  is durable when `write` returns. Raises `WriteFailed` when the commit fails (nothing of the
  batch is visible) and `ValueError` for a batch that was already written. On success the
  batch is marked committed (`WriteBatch.committed`); the engine never runs the batch's commit
  hooks itself (the owner runs them, on its own thread, with `WriteBatch.run_commit_hooks`).
- `get(cf, key)`: the value or None. Reads see every write that returned before the read began.
- `scan(cf, start, end, limit, reverse)`: the `(key, value)` pairs with `start <= key < end`
  (`end=None`: no upper bound) in ascending key order, or descending with `reverse=True`
  (the *last* `limit` keys of the range then come first); at most `limit` pairs.
- `snapshot()`: a read view of the whole engine at one instant with the same `get` / `scan`;
  later writes are not visible in it. Hold it briefly and close it (it is a context manager);
  an LMDB snapshot pins old pages and is invalidated (`SnapshotInvalidated`) if the map has
  to grow while it is open.
- `close()`: releases the engine; later calls raise `EngineClosed`.

Keys are 1..`keys.MAX_KEY_SIZE` bytes (checked when a batch is built and on reads, so both
engines refuse the same keys); an unknown column family is a `ValueError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from .keys import ALL_CFS, MAX_KEY_SIZE

__all__ = [
    "ReadView",
    "EngineSnapshot",
    "Engine",
    "EngineStats",
    "WriteBatch",
    "PutRun",
    "RangeOp",
    "OP_DELETE",
    "OP_DELETE_RANGE",
    "check_cf",
]

_CF_SET = frozenset(ALL_CFS)

# A batch holds, per column family, an ordered list of segments: a run of consecutive puts
# (`PutRun`, a list of (key, value) pairs, committed with one LMDB putmulti) or a deletion
# (`RangeOp`: (OP_DELETE, key, None) or (OP_DELETE_RANGE, start, end)). Operations on
# different column families commute, so only the per-CF order is kept.
OP_DELETE = 1
OP_DELETE_RANGE = 2
PutRun = list[tuple[bytes, bytes]]
RangeOp = tuple[int, bytes, bytes | None]

# Per-operation bytes counted by `WriteBatch.approximate_size` besides keys and values.
_OP_OVERHEAD = 8

# Batch lifecycle.
_OPEN = 0
_COMMITTED = 1
_HOOKS_RUN = 2


def check_cf(cf: str) -> None:
    """Raise ValueError for an unknown column family."""
    if cf not in _CF_SET:
        raise ValueError(f"unknown column family {cf!r} (known: {', '.join(ALL_CFS)})")


class ReadView(Protocol):
    """Point reads and ordered scans, on an engine or on one of its snapshots."""

    def get(self, cf: str, key: bytes) -> bytes | None:
        """The value stored at `key` in `cf`, or None."""
        ...

    def scan(
        self,
        cf: str,
        start: bytes = b"",
        end: bytes | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """Pairs with `start <= key < end`, ascending (descending if `reverse`), at most
        `limit` of them."""
        ...


class EngineSnapshot(ReadView, Protocol):
    """A consistent read view of a whole engine, held until `close()`."""

    def close(self) -> None:
        """Release the view (idempotent)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@dataclass(slots=True)
class EngineStats:
    """Counters an engine keeps (plain ints; the metrics layer reads them once per round)."""

    # Write batches committed (empty batches are not counted).
    commits: int = 0
    # Commits that were made durable before `write` returned (one fsync round each).
    synced_commits: int = 0
    # Operations and key + value bytes committed.
    ops: int = 0
    bytes: int = 0
    # Times the LMDB map was grown (always 0 for the memory engine).
    map_resizes: int = 0


class Engine(ReadView, Protocol):
    """An ordered KV store with column families, atomic batches and snapshots (module doc)."""

    @property
    def stats(self) -> EngineStats:
        """Counters since the engine was opened."""
        ...

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        """Commit `batch` atomically; durable on return when `sync`."""
        ...

    def snapshot(self) -> EngineSnapshot:
        """A consistent read view of the engine as of now."""
        ...

    def close(self) -> None:
        """Release the engine (idempotent)."""
        ...


class WriteBatch:
    """Operations committed together by `Engine.write`, plus the hooks to run once they are
    durable.

    Per column family the operations apply in the order they were added (a delete_range
    after a put removes it; a put after a delete_range survives). A batch is written once.

    Commit hooks carry the in-memory consequences of a batch becoming durable (e.g.
    `RegionStorage` letting go of cached entries that are now on disk). The engine only marks
    the batch `committed`; the owner calls `run_commit_hooks()` afterwards on the thread that
    owns those objects. Hooks of a batch that was never committed never run.

    Prepare hooks run once, in `Engine.write`, just before the batch is applied, on the writing
    thread (e.g. `RaftWal` encoding a round's record there, off the event loop's thread); they
    may add operations. The owner must not touch the batch once it is handed to a writer.
    """

    __slots__ = ("_cfs", "_count", "_bytes", "_hooks", "_prepare", "_state")

    def __init__(self) -> None:
        # cf -> ordered segments (see PutRun / RangeOp above).
        self._cfs: dict[str, list[PutRun | RangeOp]] = {}
        # Number of operations (puts + deletes + range deletes).
        self._count = 0
        # Approximate payload: key and value bytes plus a small per-operation overhead.
        self._bytes = 0
        self._hooks: list[Callable[[], None]] = []
        # Run by `prepare()` (None once run).
        self._prepare: list[Callable[[], None]] | None = []
        self._state = _OPEN

    # -- building -------------------------------------------------------------------------

    def _segments(self, cf: str) -> list[PutRun | RangeOp]:
        if self._state:
            raise ValueError("write batch was already committed")
        segs = self._cfs.get(cf)
        if segs is None:
            check_cf(cf)
            segs = self._cfs[cf] = []
        return segs

    def put(self, cf: str, key: bytes, value: bytes) -> None:
        """Set `key` to `value` in `cf`."""
        if not 0 < len(key) <= MAX_KEY_SIZE:
            raise ValueError(f"engine keys must be 1..{MAX_KEY_SIZE} bytes, got {len(key)}")
        segs = self._cfs.get(cf)
        if segs is None or self._state:
            segs = self._segments(cf)
        if segs and type(last := segs[-1]) is list:
            last.append((key, value))
        else:
            segs.append([(key, value)])
        self._count += 1
        self._bytes += len(key) + len(value) + _OP_OVERHEAD

    def extend_trusted(self, cf: str, items: PutRun, size: int) -> None:
        """`put` every `(key, value)` of `items` without checking the keys: for keys built by
        `keys` (always valid). The batch takes `items` over; `size` is their key + value bytes.
        The raft log's hot path (one call per region append)."""
        segs = self._cfs.get(cf)
        if segs is None or self._state:
            segs = self._segments(cf)
        if segs and type(last := segs[-1]) is list:
            last.extend(items)
        else:
            segs.append(items)
        n = len(items)
        self._count += n
        self._bytes += size + n * _OP_OVERHEAD

    def put_many(self, cf: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        """`put` every `(key, value)` of `items`, in order (one call per raft log append)."""
        segs = self._segments(cf)
        if segs and type(segs[-1]) is list:
            run = segs[-1]
        else:
            run = []
            segs.append(run)
        n = len(run)
        size = 0
        for key, value in items:
            if not 0 < len(key) <= MAX_KEY_SIZE:
                del run[n:]
                if not run:
                    segs.pop()
                raise ValueError(f"engine keys must be 1..{MAX_KEY_SIZE} bytes, got {len(key)}")
            run.append((key, value))
            size += len(key) + len(value)
        added = len(run) - n
        if not run:
            segs.pop()
        self._count += added
        self._bytes += size + added * _OP_OVERHEAD

    def delete(self, cf: str, key: bytes) -> None:
        """Remove `key` from `cf` (no error if absent)."""
        if not 0 < len(key) <= MAX_KEY_SIZE:
            raise ValueError(f"engine keys must be 1..{MAX_KEY_SIZE} bytes, got {len(key)}")
        self._segments(cf).append((OP_DELETE, key, None))
        self._count += 1
        self._bytes += len(key) + _OP_OVERHEAD

    def delete_range(self, cf: str, start: bytes, end: bytes | None) -> None:
        """Remove every key of `cf` in `[start, end)` (`end=None`: no upper bound)."""
        segs = self._segments(cf)
        if end is not None and end <= start:
            return
        segs.append((OP_DELETE_RANGE, start, end))
        self._count += 1
        self._bytes += len(start) + (len(end) if end is not None else 0) + _OP_OVERHEAD

    # -- size -----------------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of operations."""
        return self._count

    def is_empty(self) -> bool:
        return self._count == 0

    def approximate_size(self) -> int:
        """Key + value bytes plus a small per-operation overhead."""
        return self._bytes

    # -- commit ---------------------------------------------------------------------------

    def segments(self) -> Iterable[tuple[str, list[PutRun | RangeOp]]]:
        """(cf, segments) pairs, for engines."""
        return self._cfs.items()

    @property
    def committed(self) -> bool:
        """Whether an engine committed this batch."""
        return self._state != _OPEN

    def check_writable(self) -> None:
        """Raise ValueError if the batch was already committed (engines call this first)."""
        if self._state != _OPEN:
            raise ValueError("write batch was already committed")

    def add_prepare_hook(self, hook: Callable[[], None]) -> None:
        """Run `hook` in `prepare()`, when an engine starts writing the batch."""
        if self._state != _OPEN or self._prepare is None:
            raise ValueError("write batch was already prepared or committed")
        self._prepare.append(hook)

    def prepare(self) -> None:
        """Run the prepare hooks in the order they were added, once (engines call this at the
        start of `write`, after `check_writable`; a second call does nothing)."""
        hooks, self._prepare = self._prepare, None
        if hooks:
            for hook in hooks:
                hook()

    def mark_committed(self) -> None:
        """Called by the engine once the batch is committed (and durable if asked)."""
        assert self._state == _OPEN, "write batch committed twice"
        self._state = _COMMITTED

    def add_commit_hook(self, hook: Callable[[], None]) -> None:
        """Run `hook` in `run_commit_hooks()`, after the batch is committed."""
        if self._state != _OPEN:
            raise ValueError("write batch was already committed")
        self._hooks.append(hook)

    def run_commit_hooks(self) -> None:
        """Run the commit hooks in the order they were added. Only after a successful
        `Engine.write`, only once."""
        assert self._state == _COMMITTED, (
            "run_commit_hooks on a batch that is not committed"
            if self._state == _OPEN
            else "run_commit_hooks called twice"
        )
        self._state = _HOOKS_RUN
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    def __repr__(self) -> str:
        state = ("open", "committed", "hooks run")[self._state]
        return f"WriteBatch({self._count} ops, ~{self._bytes} bytes, {state})"
