"""`RegionStorage`: the raft `Storage` of one region, over an `Engine`.

Layout (`keys`): entries in ``raft_log`` as serialized `eraftpb.Entry`; hard state, conf state
and the truncated state (index + term of the entry before the first) in ``raft_state``.

Two views. A storage answers raft (`initial_state`, `entries`, `term`, `first_index`,
`last_index`, `snapshot`) from its *committed view*; its mutations (`append`,
`set_hard_state`, `set_conf_state`, `apply_snapshot`, `compact`, `destroy`) write into a
caller's `WriteBatch` and are checked against its *written view* (the committed view plus
every batch handed out and not yet committed), because the batching layer fills round N+1
while round N is being committed. Each mutation records its update in the batch's commit hook
for this storage (one hook per storage per batch); the hook moves the committed view forward.

Invariant: the committed view changes only in commit hooks, and `WriteBatch.run_commit_hooks`
refuses to run before an engine committed the batch, so the storage never reports anything
that is not on disk. A batch that fails or is dropped changes nothing the storage reports
(call `rollback_pending()` to resync the written view if it is dropped).
Invariant: a region's batches are committed, and their hooks run, in the order they were
filled (checked: each hook carries a sequence number); a hook applies its batch's updates in
the order the mutations were made.
Invariant: the committed log is `[truncated_index + 1, last_index]`, contiguous, and on disk;
`truncated_index <= last_index`.
Invariant: the entry cache is the suffix `[cache_first, last_index]` of the committed log
(empty iff `cache_first == last_index + 1`) and `cache_first > truncated_index`. It holds the
newest entries, so the hot path (entries just appended, about to be sent or applied) never
decodes from the engine.

The engine may be *ahead* of the committed view (a writer thread committed a batch whose hooks
have not run yet). Raft never reads the part of the log such a batch rewrites (it reads the
storage only below its unstable offset); a compaction that is on disk but not yet in the view
surfaces as `Compacted`, as if it had been seen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from multiraft.raft.eraftpb import ConfState, Entry, HardState, Snapshot
from multiraft.raft.errors import Compacted, SnapshotOutOfDate, Unavailable
from multiraft.raft.storage import GetEntriesContext, RaftState
from multiraft.raft.util import limit_size

from .engine import Engine, WriteBatch
from .keys import (
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    RAFT_LOG_KEY_LEN,
    conf_state_key,
    decode_raft_log_key,
    decode_truncated_state,
    encode_truncated_state,
    hard_state_key,
    pack_raft_log_key,
    raft_log_bounds,
    truncated_state_key,
)

__all__ = [
    "RegionStorage",
    "SnapshotBuilder",
    "DEFAULT_CACHE_MAX_ENTRIES",
    "DEFAULT_CACHE_MAX_BYTES",
]

# Builds the snapshot raft asks for: (request_index, to) -> Snapshot (`Storage.snapshot`).
SnapshotBuilder = Callable[[int, int], Snapshot]

DEFAULT_CACHE_MAX_ENTRIES = 256
DEFAULT_CACHE_MAX_BYTES = 256 * 1024
# Entries read per engine scan when a size limit may stop the read early (doubles up to 1024).
_READ_CHUNK = 32

_log_key = pack_raft_log_key
_parse_entry = Entry.FromString


class RegionStorage:
    """The raft `Storage` of region `region_id` over `engine` (module docstring).

    Not thread-safe: one thread (the store's) calls everything, hooks included.
    """

    __slots__ = (
        "_engine",
        "_region_id",
        "_snapshot_builder",
        "_cache_max_entries",
        "_cache_max_bytes",
        # committed view
        "_hard_state",
        "_conf_state",
        "_truncated_index",
        "_truncated_term",
        "_last_index",
        "_cache",
        "_cache_sizes",
        "_cache_bytes",
        "_cache_first",
        # written view
        "_w_first",
        "_w_last",
        "_w_hard_state",
        "_w_rewrites",
        # pending hooks
        "_epoch",
        "_seq_next",
        "_seq_done",
        "_cur",
        "_cur_batch",
        "_hs_key",
    )

    def __init__(
        self,
        engine: Engine,
        region_id: int,
        *,
        cache_max_entries: int = DEFAULT_CACHE_MAX_ENTRIES,
        cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
        snapshot_builder: SnapshotBuilder | None = None,
    ) -> None:
        self._engine = engine
        self._region_id = region_id
        self._hs_key = hard_state_key(region_id)
        # None: metadata-only snapshots at the commit index, like MemStorage (the store passes
        # a builder that also carries the region's data).
        self._snapshot_builder = snapshot_builder
        # Cache bounds; the newest entry is kept even past the byte bound (unless entries=0).
        self._cache_max_entries = cache_max_entries
        self._cache_max_bytes = cache_max_bytes

        # -- committed view (what raft sees; on disk) --
        self._hard_state = HardState()
        self._conf_state = ConfState()
        # The entry before the first one (snapshot or compaction point); (0, 0) initially.
        self._truncated_index = 0
        self._truncated_term = 0
        self._last_index = 0
        # The newest entries [cache_first, last_index] and their encoded sizes.
        self._cache: list[Entry] = []
        self._cache_sizes: list[int] = []
        self._cache_bytes = 0
        self._cache_first = 1

        # -- written view (committed + pending batches); mutations check against it --
        # Invariant: with no pending batch, it equals the committed view.
        self._w_first = 1
        self._w_last = 0
        self._w_hard_state = self._hard_state
        # (seq, first index rewritten) of every pending append (its first index), snapshot and
        # destroy (0: everything), oldest first: the terms from there on are not committed.
        self._w_rewrites: deque[tuple[int, int]] = deque()

        # Bumped by rollback_pending(): hooks of older batches must never run.
        self._epoch = 0
        # Sequence number of the next batch / of the next batch whose hook must run.
        self._seq_next = 0
        self._seq_done = 0
        # The updates of the last batch a mutation wrote into (to add more to the same hook).
        self._cur: _BatchUpdates | None = None
        self._cur_batch: WriteBatch | None = None

        self._load()

    def _load(self) -> None:
        """Recover hard state, conf state and log bounds from the engine."""
        engine, r = self._engine, self._region_id
        raw = engine.get(CF_RAFT_STATE, hard_state_key(r))
        if raw:
            self._hard_state = HardState.FromString(raw)
        raw = engine.get(CF_RAFT_STATE, conf_state_key(r))
        if raw:
            self._conf_state = ConfState.FromString(raw)
        raw = engine.get(CF_RAFT_STATE, truncated_state_key(r))
        if raw:
            self._truncated_index, self._truncated_term = decode_truncated_state(raw)
        start, end = raft_log_bounds(r)
        last = engine.scan(CF_RAFT_LOG, start, end, limit=1, reverse=True)
        if last:
            first = engine.scan(CF_RAFT_LOG, start, end, limit=1)
            first_index = decode_raft_log_key(first[0][0])[1]
            assert first_index == self._truncated_index + 1, (
                f"region {r}: raft log starts at {first_index} but is truncated at "
                f"{self._truncated_index}"
            )
            self._last_index = decode_raft_log_key(last[0][0])[1]
        else:
            self._last_index = self._truncated_index
        self._cache_first = self._last_index + 1
        self._w_first = self._truncated_index + 1
        self._w_last = self._last_index
        self._w_hard_state = self._hard_state

    # -- accessors --------------------------------------------------------------------------

    @property
    def region_id(self) -> int:
        return self._region_id

    def hard_state(self) -> HardState:
        """The committed hard state (do not mutate)."""
        return self._hard_state

    def conf_state(self) -> ConfState:
        """The committed conf state (do not mutate)."""
        return self._conf_state

    def truncated_index(self) -> int:
        """Index of the entry before the first one (snapshot or compaction point)."""
        return self._truncated_index

    def truncated_term(self) -> int:
        return self._truncated_term

    def has_pending(self) -> bool:
        """Whether a batch holding mutations has not been committed (its hooks run) yet."""
        return self._seq_next != self._seq_done

    def cached_range(self) -> tuple[int, int]:
        """The half-open index range `[lo, hi)` held by the entry cache."""
        return self._cache_first, self._last_index + 1

    # -- Storage ----------------------------------------------------------------------------

    def initial_state(self) -> RaftState:
        hs = HardState()
        hs.CopyFrom(self._hard_state)
        cs = ConfState()
        cs.CopyFrom(self._conf_state)
        return RaftState(hs, cs)

    def entries(
        self,
        low: int,
        high: int,
        max_size: int | None = None,
        context: GetEntriesContext | None = None,
    ) -> list[Entry]:
        if low <= self._truncated_index:
            raise Compacted()
        assert high <= self._last_index + 1, (
            f"index out of bound (last: {self._last_index}, high: {high})"
        )
        if low >= high:
            return []
        cache_first = self._cache_first
        if low >= cache_first:
            ents = self._cache[low - cache_first : high - cache_first]
            limit_size(ents, max_size)
            return ents
        ents, complete = self._read_log(low, min(high, cache_first), max_size)
        if complete and high > cache_first:
            ents.extend(self._cache[: high - cache_first])
            limit_size(ents, max_size)
        return ents

    def _read_log(self, low: int, high: int, max_size: int | None) -> tuple[list[Entry], bool]:
        """Decode entries `[low, high)` from the engine, stopping once they exceed `max_size`
        (keeping at least one). Returns (entries, whether all of `[low, high)` was read)."""
        engine, r = self._engine, self._region_id
        out: list[Entry] = []
        size = 0
        nxt = low
        chunk = high - low if max_size is None else _READ_CHUNK
        while nxt < high:
            rows = engine.scan(
                CF_RAFT_LOG, _log_key(r, nxt), _log_key(r, high), limit=min(chunk, high - nxt)
            )
            if not rows:
                break
            for _, raw in rows:
                # The stored bytes are the entry's encoding: len(raw) == entry.ByteSize().
                size += len(raw)
                if max_size is not None and out and size > max_size:
                    return out, False
                e = _parse_entry(raw)
                if e.index != nxt:
                    break
                out.append(e)
                nxt += 1
            else:
                chunk = min(chunk * 2, 1024)
                continue
            break
        if nxt < high:
            if nxt == low:
                # Compacted on disk by a batch whose commit hooks have not run yet.
                raise Compacted()
            raise AssertionError(f"region {r}: raft log has a hole at index {nxt}")
        return out, True

    def term(self, idx: int) -> int:
        if idx == self._truncated_index:
            return self._truncated_term
        if idx < self._truncated_index:
            raise Compacted()
        if idx > self._last_index:
            raise Unavailable()
        cache_first = self._cache_first
        if idx >= cache_first:
            return self._cache[idx - cache_first].term
        raw = self._engine.get(CF_RAFT_LOG, _log_key(self._region_id, idx))
        if raw is None:
            # Compacted on disk by a batch whose commit hooks have not run yet.
            raise Compacted()
        return _parse_entry(raw).term

    def first_index(self) -> int:
        return self._truncated_index + 1

    def last_index(self) -> int:
        return self._last_index

    def snapshot(self, request_index: int, to: int) -> Snapshot:
        if self._snapshot_builder is not None:
            return self._snapshot_builder(request_index, to)
        # MemStorage's behaviour: metadata only, at the commit index.
        snap = Snapshot()
        meta = snap.metadata
        index = self._hard_state.commit
        if index <= self._truncated_index:
            meta.index, meta.term = self._truncated_index, self._truncated_term
        else:
            meta.index, meta.term = index, self.term(index)
        meta.conf_state.CopyFrom(self._conf_state)
        if meta.index < request_index:
            meta.index = request_index
        return snap

    # -- mutations (into a batch; visible once its commit hooks run) ---------------------

    def _pending(self, batch: WriteBatch) -> _BatchUpdates:
        """The committed-view updates `batch` carries for this storage (one commit hook per
        storage per batch, whatever the number of mutations)."""
        cur = self._cur
        if cur is not None and self._cur_batch is batch:
            return cur
        cur = _BatchUpdates(self, self._epoch, self._seq_next)
        batch.add_commit_hook(cur)
        self._seq_next += 1
        self._cur = cur
        self._cur_batch = batch
        return cur

    def append(self, batch: WriteBatch, entries: Sequence[Entry]) -> None:
        """Append `entries` (contiguous), replacing any existing suffix from their first index
        on (the keys past their last index are deleted). The storage keeps the entry objects:
        do not mutate them afterwards."""
        n = len(entries)
        if not n:
            return
        first = entries[0].index
        w_last = self._w_last
        assert self._w_first <= first, (
            f"overwrite compacted raft logs, compacted: {self._w_first - 1}, append: {first}"
        )
        assert w_last + 1 >= first, (
            f"raft logs should be continuous, last index: {w_last}, new appended: {first}"
        )
        last = first + n - 1
        assert n == 1 or entries[-1].index == last, f"entries not contiguous from {first}"
        r = self._region_id
        if n == 1:
            raw = entries[0].SerializeToString()
            items = [(_log_key(r, first), raw)]
            sizes = [len(raw)]
            size = sizes[0]
        else:
            items = [(_log_key(r, i), e.SerializeToString()) for i, e in enumerate(entries, first)]
            sizes = [len(v) for _, v in items]
            size = sum(sizes)
        pending = self._cur if self._cur_batch is batch else self._pending(batch)
        assert pending is not None
        if last < w_last:
            batch.delete_range(CF_RAFT_LOG, _log_key(r, last + 1), _log_key(r, w_last + 1))
        batch.extend_trusted(CF_RAFT_LOG, items, size + RAFT_LOG_KEY_LEN * n)
        self._w_last = last
        self._w_rewrites.append((pending.seq, first))
        pending.updates.append((first, list(entries), sizes))

    def _commit_append(self, first: int, ents: list[Entry], sizes: list[int]) -> None:
        cache, cache_sizes = self._cache, self._cache_sizes
        cut = first - self._cache_first
        n = len(cache)
        if cut == n:
            pass  # the common case: new entries right after the cached ones
        elif cut <= 0:
            # Replaces the whole cache (the older part of the overwrite is only on disk).
            cache.clear()
            cache_sizes.clear()
            self._cache_bytes = 0
            self._cache_first = first
        else:
            self._cache_bytes -= sum(cache_sizes[cut:])
            del cache[cut:]
            del cache_sizes[cut:]
        cache.extend(ents)
        cache_sizes.extend(sizes)
        self._cache_bytes += sizes[0] if len(sizes) == 1 else sum(sizes)
        self._last_index = first + len(ents) - 1
        if len(cache) > self._cache_max_entries or self._cache_bytes > self._cache_max_bytes:
            self._trim_cache()

    def _trim_cache(self) -> None:
        """Drop the oldest cached entries down to 3/4 of the bounds (so trimming is amortized
        over many appends), keeping the newest entry unless the cache is disabled."""
        cache, sizes = self._cache, self._cache_sizes
        n = len(cache)
        max_n = self._cache_max_entries * 3 // 4
        max_bytes = self._cache_max_bytes * 3 // 4
        keep_at_least = 1 if self._cache_max_entries > 0 else 0
        drop = 0
        total = self._cache_bytes
        while n - drop > keep_at_least and (n - drop > max_n or total > max_bytes):
            total -= sizes[drop]
            drop += 1
        if drop:
            del cache[:drop]
            del sizes[:drop]
            self._cache_bytes = total
            self._cache_first += drop

    def compact_cache(self, index: int) -> None:
        """Drop cached entries before `index` (e.g. applied and sent to every follower). The
        log itself is untouched; those entries are then read from the engine."""
        cache_first = self._cache_first
        drop = min(index, self._last_index + 1) - cache_first
        if drop > 0:
            self._cache_bytes -= sum(self._cache_sizes[:drop])
            del self._cache[:drop]
            del self._cache_sizes[:drop]
            self._cache_first = cache_first + drop

    def set_hard_state(self, batch: WriteBatch, hs: HardState) -> None:
        """Persist `hs`. The storage keeps the object: do not mutate it afterwards."""
        pending = self._cur if self._cur_batch is batch else self._pending(batch)
        assert pending is not None
        batch.extend_trusted(CF_RAFT_STATE, [(self._hs_key, hs.SerializeToString())], 32)
        self._w_hard_state = hs
        pending.hard_state = hs

    def set_conf_state(self, batch: WriteBatch, cs: ConfState) -> None:
        """Persist `cs`. The storage keeps the object: do not mutate it afterwards."""
        pending = self._pending(batch)
        batch.put(CF_RAFT_STATE, conf_state_key(self._region_id), cs.SerializeToString())
        pending.conf_state = cs

    def apply_snapshot(self, batch: WriteBatch, snapshot: Snapshot) -> None:
        """Replace the log by `snapshot`'s metadata point: the log becomes empty after it, the
        hard state's commit moves to it (term raised to it), the conf state becomes its. The
        snapshot's data is the store's business. Raises `SnapshotOutOfDate` when the storage
        already holds its index (first_index > index), like MemStorage."""
        meta = snapshot.metadata
        index, term = meta.index, meta.term
        if self._w_first > index:
            raise SnapshotOutOfDate()
        r = self._region_id
        hs = HardState()
        hs.CopyFrom(self._w_hard_state)
        hs.term = max(hs.term, term)
        hs.commit = index
        cs = ConfState()
        cs.CopyFrom(meta.conf_state)
        pending = self._pending(batch)
        start, end = raft_log_bounds(r)
        batch.delete_range(CF_RAFT_LOG, start, end)
        batch.put(CF_RAFT_STATE, hard_state_key(r), hs.SerializeToString())
        batch.put(CF_RAFT_STATE, conf_state_key(r), cs.SerializeToString())
        batch.put(CF_RAFT_STATE, truncated_state_key(r), encode_truncated_state(index, term))
        self._w_first = index + 1
        self._w_last = index
        self._w_hard_state = hs
        self._w_rewrites.append((pending.seq, 0))
        pending.updates.append(lambda: self._reset_log(index, term))
        pending.hard_state = hs
        pending.conf_state = cs

    def _reset_log(self, index: int, term: int) -> None:
        self._truncated_index = index
        self._truncated_term = term
        self._last_index = index
        self._cache.clear()
        self._cache_sizes.clear()
        self._cache_bytes = 0
        self._cache_first = index + 1

    def compact(self, batch: WriteBatch, compact_index: int) -> bool:
        """Discard the entries before `compact_index`, keeping the term of the last one gone
        (so `term(first_index() - 1)` keeps working). Returns True when the compaction was
        written into `batch`; False, doing nothing, when there is nothing to compact
        (`compact_index <= first_index()`, pending compactions included) or when it must wait
        for a pending batch that rewrites the entry whose term the truncated state keeps (an
        append from that index or before, a snapshot, a destroy; log GC simply tries again
        later). Compacting past `last_index() + 1` is a caller bug."""
        w_first = self._w_first
        if compact_index <= w_first:
            return False
        assert compact_index <= self._w_last + 1, (
            f"compact not received raft logs: {compact_index}, last index: {self._w_last}"
        )
        idx = compact_index - 1
        if any(first <= idx for _, first in self._w_rewrites):
            return False
        assert compact_index <= self._last_index + 1, (
            f"compact uncommitted raft logs: {compact_index}, committed last: {self._last_index}"
        )
        term = self.term(idx)
        r = self._region_id
        pending = self._pending(batch)
        batch.delete_range(CF_RAFT_LOG, _log_key(r, w_first), _log_key(r, compact_index))
        batch.put(CF_RAFT_STATE, truncated_state_key(r), encode_truncated_state(idx, term))
        self._w_first = compact_index

        def update() -> None:
            self._truncated_index = idx
            self._truncated_term = term
            self.compact_cache(compact_index)

        pending.updates.append(update)
        return True

    def destroy(self, batch: WriteBatch) -> None:
        """Delete the region's raft log and raft state (hard state, conf state, truncated
        state); the region local state and apply state are the store's to delete."""
        r = self._region_id
        pending = self._pending(batch)
        start, end = raft_log_bounds(r)
        batch.delete_range(CF_RAFT_LOG, start, end)
        for key in (hard_state_key(r), conf_state_key(r), truncated_state_key(r)):
            batch.delete(CF_RAFT_STATE, key)
        empty = HardState()
        self._w_first = 1
        self._w_last = 0
        self._w_hard_state = empty
        self._w_rewrites.append((pending.seq, 0))
        pending.updates.append(lambda: self._reset_log(0, 0))
        pending.hard_state = empty
        pending.conf_state = ConfState()

    def rollback_pending(self) -> None:
        """Forget every batch not committed yet (they were dropped, never written): the
        written view returns to the committed one and their hooks become invalid. After a
        failed commit the engine's state is unknown: restart (a new RegionStorage) instead."""
        self._epoch += 1
        self._seq_next = self._seq_done
        self._w_rewrites.clear()
        self._cur = None
        self._cur_batch = None
        self._w_first = self._truncated_index + 1
        self._w_last = self._last_index
        self._w_hard_state = self._hard_state

    def __repr__(self) -> str:
        return (
            f"RegionStorage(region={self._region_id}, first={self._truncated_index + 1}, "
            f"last={self._last_index}, cache=[{self._cache_first}, {self._last_index + 1}))"
        )


class _BatchUpdates:
    """The committed-view updates one batch carries for one `RegionStorage`; the batch's commit
    hook (this object) applies them in order, then the batch's last hard / conf state."""

    __slots__ = ("storage", "epoch", "seq", "updates", "hard_state", "conf_state")

    def __init__(self, storage: RegionStorage, epoch: int, seq: int) -> None:
        self.storage = storage
        # The storage's epoch and batch sequence number when the batch was first written to.
        self.epoch = epoch
        self.seq = seq
        # Log updates, in mutation order: an append as (first, entries, encoded sizes), or a
        # callable (snapshot, compaction, destroy).
        self.updates: list[tuple[int, list[Entry], list[int]] | Callable[[], None]] = []
        # The last hard state / conf state this batch writes, if any.
        self.hard_state: HardState | None = None
        self.conf_state: ConfState | None = None

    def __call__(self) -> None:
        s, seq = self.storage, self.seq
        if self.epoch != s._epoch or seq != s._seq_done:
            raise AssertionError(
                f"region {s._region_id}: commit hook of a batch dropped by rollback_pending()"
                if self.epoch != s._epoch
                else f"region {s._region_id}: batches committed out of order "
                f"(batch {seq}, expected {s._seq_done})"
            )
        s._seq_done = seq + 1
        rewrites = s._w_rewrites
        while rewrites and rewrites[0][0] <= seq:
            rewrites.popleft()
        if s._cur is self:
            s._cur = None
            s._cur_batch = None
        for update in self.updates:
            if type(update) is tuple:
                s._commit_append(*update)
            else:
                assert callable(update)
                update()
        if self.hard_state is not None:
            s._hard_state = self.hard_state
        if self.conf_state is not None:
            s._conf_state = self.conf_state
