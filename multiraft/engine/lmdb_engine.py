"""`LmdbEngine`: the store's default engine, on LMDB (the `lmdb` package).

One LMDB environment per store (a directory) with one named database per column family
(`keys.ALL_CFS`). A `WriteBatch` is one LMDB write transaction: all of it or nothing.

Durability. LMDB commits by shadow paging: it writes the new pages, flushes them, then writes
the meta page that makes them reachable. With the default ``fsync=True`` the environment is
opened ``sync=True, metasync=True`` and *every* commit is durable when `write` returns: one
``fdatasync`` of the data file plus the meta page written through a second ``O_DSYNC``
descriptor, whatever the batch holds. py-lmdb has no per-transaction durability switch, so
in this mode ``write(batch, sync=False)`` is durable too (the contract only promises "at least").
``fsync=False`` (tests and benchmarks only) opens ``sync=False``: commits flush nothing,
``write(..., sync=True)`` then calls ``mdb_env_sync`` (one ``fdatasync``); an OS crash before
that flush can tear the file, which is why production keeps the default.
A test may slow every commit down (a slow disk) with the environment variable
``MULTIRAFT_TEST_DISK_DELAY`` (`disk_delay.py`); unset, nothing changes.

Measured on this machine (2 cores, lmdb 3.0.0 / LMDB 0.9.36, Python 3.11):
``strace -f -c -e trace=fsync,fdatasync,msync`` over 40 durable commits of 100 puts counts
exactly 40 ``fdatasync`` more than an open + close alone (1), and no ``fsync`` / ``msync``;
the meta page goes out as one 120-byte ``pwrite64`` on the ``O_DSYNC`` descriptor
(`tests/engine/test_lmdb_engine.py::test_flushes_per_commit`).

The GIL. ``Transaction.commit`` releases the GIL for the whole C commit, fsync included. A
thread doing durable commits while the main thread spins on a counter: the counter moved
during 30 of 30 commits, against 13-17% of calls for a GIL-holding C loop of similar length
(`test_commit_releases_the_gil`); the main loop keeps 66-115% of its solo rate next to the
committer (noisy VM), 33-49% next to a pure-Python thread. Puts (``putmulti``) hold the GIL.
Caveat for the writer thread: after the fsync it needs the GIL back, and against a busy main
thread it gets it only at the next switch interval (`sys.getswitchinterval()`, 5 ms): ~100
commits/s instead of ~2,700/s; ~350-650/s with ``sys.setswitchinterval(0.0005)``.

Costs. Raft log keys are region-major (`keys`), so a round that appends one entry to each of
N regions dirties about N leaf pages, and LMDB copies and writes whole 4 KiB pages: measured
19-27x the batch's bytes written per round (1,000 regions x 1 entry: 3.7 MiB written for
194 KiB of batch, ~15 ms per durable write, ~3.4 µs of GIL-held CPU per put; sequential keys
cost ~0.4 µs per put). `RaftWal` avoids it: one sequential record put per round, the
region-major pages written in bulk at checkpoints.

Threads. Writes are serialized by `_write_lock` (the batching layer's writer thread is the
only writer). Reads run on any thread under `_map_lock`, which a map resize takes exclusively.
Point reads and scans reuse one cached read transaction until the next commit (~0.3-0.5 µs
saved per read); a commit drops it when no read holds it, so an idle reader never pins old
pages and makes the file grow.

Map growth. The map grows by itself: after a commit, if the file's high-water mark passes
`_GROW_AT` of the map and no snapshot is open, the map doubles; if a transaction still hits
``MDB_MAP_FULL`` the transaction is aborted, the map grows (at least doubling, and by twice
the batch size) and the whole batch is retried, so nothing is dropped. A resize invalidates
every open LMDB read transaction: a `LmdbSnapshot` open across a forced resize raises
`SnapshotInvalidated` on its next use.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from types import TracebackType
from typing import Self

import lmdb

from .disk_delay import disk_delay_from_env
from .engine import OP_DELETE, EngineStats, WriteBatch, check_cf
from .errors import EngineClosed, SnapshotInvalidated, WriteFailed
from .keys import ALL_CFS, MAX_KEY_SIZE

__all__ = ["LmdbEngine", "LmdbSnapshot", "DEFAULT_MAP_SIZE"]

log = logging.getLogger(__name__)

# Initial map size: address space, not disk (the data file grows with what is written).
DEFAULT_MAP_SIZE = 1 << 30
# Grow ahead of time once the data file's high-water mark passes this fraction of the map.
_GROW_AT = 0.75
# Map sizes are rounded up to this (a multiple of every page size LMDB uses).
_MAP_ROUND = 1 << 20


def _seek_ge(cur: lmdb.Cursor[bytes], key: bytes) -> bool:
    """Position `cur` at the first key >= `key`; False if there is none."""
    if not key:
        return cur.first()
    if len(key) <= MAX_KEY_SIZE:
        return cur.set_range(key)
    # LMDB cannot seek to an oversized key: seek to its prefix and walk (no stored key is
    # that long, so only keys sharing the prefix are walked over).
    ok = cur.set_range(key[:MAX_KEY_SIZE])
    while ok and cur.key() < key:
        ok = cur.next()
    return ok


def _scan(
    txn: lmdb.Transaction[bytes],
    db: lmdb._Database,
    start: bytes,
    end: bytes | None,
    limit: int | None,
    reverse: bool,
) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    if limit is not None and limit <= 0:
        return out
    cur = txn.cursor(db)
    try:
        if not reverse:
            if not _seek_ge(cur, start):
                return out
            for kv in cur.iternext():
                if end is not None and kv[0] >= end:
                    break
                out.append(kv)
                if limit is not None and len(out) >= limit:
                    break
        else:
            if end is None:
                ok = cur.last()
            else:
                ok = cur.prev() if _seek_ge(cur, end) else cur.last()
            if not ok:
                return out
            for kv in cur.iterprev():
                if kv[0] < start:
                    break
                out.append(kv)
                if limit is not None and len(out) >= limit:
                    break
        return out
    finally:
        cur.close()


def _delete_range(cur: lmdb.Cursor[bytes], start: bytes, end: bytes | None) -> None:
    if not _seek_ge(cur, start):
        return
    while True:
        key = cur.key()
        # An empty key means the cursor ran off the end (stored keys are never empty).
        if not key or (end is not None and key >= end):
            return
        cur.delete()


def _abort_quietly(txn: lmdb.Transaction[bytes]) -> None:
    try:
        txn.abort()
    except lmdb.Error:  # already invalidated by a resize, a failed commit or close()
        pass


class LmdbEngine:
    """The LMDB `Engine` (module docstring). `path` is a directory, created if missing."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int | None = None,
        fsync: bool = True,
        max_readers: int = 126,
    ) -> None:
        os.makedirs(path, exist_ok=True)
        self._path = os.fspath(path)
        # Whether every commit is durable (LMDB sync + metasync), see the module docstring.
        self._fsync = fsync
        self._max_map_size = max_map_size
        self._env = lmdb.open(
            self._path,
            map_size=map_size,
            max_dbs=len(ALL_CFS) + 3,
            max_readers=max_readers,
            max_spare_txns=4,
            sync=fsync,
            metasync=fsync,
        )
        # Create / open every column family in one transaction (one commit at open).
        with self._env.begin(write=True) as txn:
            self._dbs: dict[str, lmdb._Database] = {
                cf: self._env.open_db(cf.encode("ascii"), txn=txn) for cf in ALL_CFS
            }
        self._psize: int = self._env.stat()["psize"]
        # Serializes writers (and resizes, which run inside a write).
        self._write_lock = threading.Lock()
        # Held by every read and exclusively by a resize (which invalidates read txns).
        self._map_lock = threading.Lock()
        # Bumped after every commit: the cached reader is stale once it differs.
        self._gen = 0
        # Bumped by every resize: snapshots opened before it are invalid.
        self._map_gen = 0
        # The cached read transaction and the `_gen` it was begun at.
        self._reader: lmdb.Transaction[bytes] | None = None
        self._reader_gen = -1
        self._snapshots: weakref.WeakSet[LmdbSnapshot] = weakref.WeakSet()
        # fsync=False only: whether a commit since the last flush is not yet durable.
        self._unsynced = False
        self._closed = False
        self._stats = EngineStats()
        # Test-only slow disk (disk_delay.py); None unless MULTIRAFT_TEST_DISK_DELAY is set.
        self._disk_delay = disk_delay_from_env()

    @property
    def path(self) -> str:
        return self._path

    @property
    def stats(self) -> EngineStats:
        return self._stats

    def map_size(self) -> int:
        """The current LMDB map size in bytes."""
        return self._env.info()["map_size"]

    def _db(self, cf: str) -> lmdb._Database:
        try:
            return self._dbs[cf]
        except KeyError:
            check_cf(cf)
            raise

    # -- reads --------------------------------------------------------------------------

    def _read_txn(self) -> lmdb.Transaction[bytes]:
        # Caller holds _map_lock.
        if self._closed:
            raise EngineClosed()
        txn = self._reader
        if txn is None or self._reader_gen != self._gen:
            if txn is not None:
                _abort_quietly(txn)
            gen = self._gen
            txn = self._reader = self._env.begin()
            self._reader_gen = gen
        return txn

    def _drop_reader_locked(self) -> None:
        txn, self._reader = self._reader, None
        if txn is not None:
            _abort_quietly(txn)

    def get(self, cf: str, key: bytes) -> bytes | None:
        if not 0 < len(key) <= MAX_KEY_SIZE:
            raise ValueError(f"engine keys must be 1..{MAX_KEY_SIZE} bytes, got {len(key)}")
        db = self._db(cf)
        with self._map_lock:
            return self._read_txn().get(key, db=db)

    def scan(
        self,
        cf: str,
        start: bytes = b"",
        end: bytes | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        db = self._db(cf)
        with self._map_lock:
            return _scan(self._read_txn(), db, start, end, limit, reverse)

    def snapshot(self) -> LmdbSnapshot:
        with self._map_lock:
            if self._closed:
                raise EngineClosed()
            snap = LmdbSnapshot(self, self._env.begin(), self._map_gen)
            self._snapshots.add(snap)
            return snap

    # -- writes -------------------------------------------------------------------------

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        batch.check_writable()
        batch.prepare()
        with self._write_lock:
            if self._closed:
                raise EngineClosed()
            stats = self._stats
            if batch.is_empty():
                if sync and self._unsynced:
                    self._flush()
                batch.mark_committed()
                return
            while True:
                try:
                    self._commit(batch)
                    break
                except lmdb.MapFullError:
                    self._grow(batch.approximate_size())
                except lmdb.Error as e:
                    raise WriteFailed(f"LMDB commit failed: {e}") from e
            if self._fsync:
                stats.synced_commits += 1
            elif sync:
                self._flush()
                stats.synced_commits += 1
            else:
                self._unsynced = True
            self._gen += 1
            stats.commits += 1
            stats.ops += len(batch)
            stats.bytes += batch.approximate_size()
            self._maybe_grow_ahead()
        # Let go of the cached reader unless a read holds it: it would pin the pages this
        # commit freed. The next read begins a fresh transaction anyway.
        if self._map_lock.acquire(blocking=False):
            try:
                self._drop_reader_locked()
            finally:
                self._map_lock.release()
        batch.mark_committed()

    def _commit(self, batch: WriteBatch) -> None:
        """One write transaction holding the whole batch; the commit releases the GIL."""
        txn = self._env.begin(write=True)
        done = False
        try:
            dbs = self._dbs
            for cf, segs in batch.segments():
                if not segs:
                    continue
                cur = txn.cursor(dbs[cf])
                for seg in segs:
                    if isinstance(seg, list):
                        cur.putmulti(seg)
                    else:
                        op, a, b = seg
                        if op == OP_DELETE:
                            if cur.set_key(a):
                                cur.delete()
                        else:
                            _delete_range(cur, a, b)
                cur.close()
            if self._disk_delay is not None:
                self._disk_delay.wait()
            txn.commit()
            done = True
        finally:
            if not done:
                _abort_quietly(txn)

    def _flush(self) -> None:
        try:
            self._env.sync(True)
        except lmdb.Error as e:
            raise WriteFailed(f"LMDB sync failed: {e}") from e
        self._unsynced = False

    def _grow(self, needed: int) -> None:
        """Grow the map (caller holds `_write_lock`, no write transaction is open)."""
        with self._map_lock:
            self._drop_reader_locked()
            cur = self._env.info()["map_size"]
            new = max(cur * 2, cur + 2 * needed)
            new = -(-new // _MAP_ROUND) * _MAP_ROUND
            if self._max_map_size is not None:
                if cur >= self._max_map_size:
                    raise WriteFailed(f"LMDB map is full at its size limit ({cur} bytes)")
                new = min(new, self._max_map_size)
            try:
                self._env.set_mapsize(new)
            except lmdb.Error as e:
                raise WriteFailed(f"LMDB map resize to {new} bytes failed: {e}") from e
            self._map_gen += 1
            self._stats.map_resizes += 1
        log.info("LMDB map of %s grown from %d to %d bytes", self._path, cur, new)

    def _maybe_grow_ahead(self) -> None:
        if self._snapshots:
            return
        info = self._env.info()
        if (info["last_pgno"] + 1) * self._psize > info["map_size"] * _GROW_AT:
            self._grow(0)

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        with self._write_lock, self._map_lock:
            if self._closed:
                return
            self._closed = True
            self._drop_reader_locked()
            for snap in list(self._snapshots):
                snap._release_locked()
            self._env.close()

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
        return f"LmdbEngine({self._path!r})"


class LmdbSnapshot:
    """A consistent read view: one LMDB read transaction, held until `close()`."""

    __slots__ = ("_engine", "_txn", "_map_gen", "__weakref__")

    def __init__(self, engine: LmdbEngine, txn: lmdb.Transaction[bytes], map_gen: int) -> None:
        self._engine = engine
        # None once closed.
        self._txn: lmdb.Transaction[bytes] | None = txn
        # The engine's map generation at begin: a resize since then invalidated `_txn`.
        self._map_gen = map_gen

    def _txn_locked(self) -> lmdb.Transaction[bytes]:
        txn = self._txn
        if txn is None or self._engine._closed:
            raise EngineClosed("snapshot is closed")
        if self._map_gen != self._engine._map_gen:
            raise SnapshotInvalidated()
        return txn

    def get(self, cf: str, key: bytes) -> bytes | None:
        if not 0 < len(key) <= MAX_KEY_SIZE:
            raise ValueError(f"engine keys must be 1..{MAX_KEY_SIZE} bytes, got {len(key)}")
        engine = self._engine
        db = engine._db(cf)
        with engine._map_lock:
            return self._txn_locked().get(key, db=db)

    def scan(
        self,
        cf: str,
        start: bytes = b"",
        end: bytes | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        engine = self._engine
        db = engine._db(cf)
        with engine._map_lock:
            return _scan(self._txn_locked(), db, start, end, limit, reverse)

    def _release_locked(self) -> None:
        txn, self._txn = self._txn, None
        if txn is not None:
            self._engine._snapshots.discard(self)
            _abort_quietly(txn)

    def close(self) -> None:
        with self._engine._map_lock:
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
