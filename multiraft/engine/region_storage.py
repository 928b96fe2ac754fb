"""`RegionStorage`: the raft `Storage` of one region, over an `Engine`.

Two ways to reach the disk (a `RaftLogWriter`, `direct_log`):

- direct (`DirectLog`, the default): entries in ``raft_log`` (key region id + index); hard
  state, conf state and the truncated state (index + term of the entry before the first) in
  ``raft_state``; written into the caller's `WriteBatch`.
- WAL (pass ``wal=RaftWal(engine)``): the changes go into the batch's raft WAL record (one put
  per round for every region) and reach ``raft_log`` / ``raft_state`` at the WAL's
  checkpoints; opening the storage replays what the WAL holds for the region.

One view. Raft reads (`initial_state`, `entries`, `term`, `first_index`, `last_index`,
`snapshot`) answer from the storage's *view*: what is on disk plus every mutation handed out
in a batch that is not committed yet. raft-rs 0.7's async-ready contract requires it: once
`RawNode.advance_append_async(rd)` is called, the Ready's entries and snapshot have left the
raft unstable log, so the storage must serve them, or raft would see a stale `last_index`
while round N is being committed and give two entries the same index. TiKV does the same
(its entry cache and raft state are updated at hand-off). Durability is reported separately:
raft counts entries as persisted only at `on_persist_ready`, which the batching layer calls
once the batch is committed, and nothing is acknowledged to anyone before that. A batch that
is never committed changes nothing on disk; after a *failed* commit the store is done (it
stops acknowledging and restarts from disk: a new RegionStorage reads what is there).

Mutations (`append`, `set_hard_state`, `set_conf_state`, `apply_snapshot`, `compact`,
`destroy`) write into a caller's batch and update the view at once.

Invariant: the batches holding a region's mutations are committed in the order they were
filled (every mutation for one batch comes before those for a later batch; the direct writer
checks the commit order).
Invariant: the log is `[truncated_index + 1, last_index]`, contiguous, and
`truncated_index <= last_index`.
Invariant: the entry cache is the suffix `[cache_first, last_index]` of the log (empty iff
`cache_first == last_index + 1`), `cache_first > truncated_index`, and every entry not yet
readable from the engine (its batch not committed; with a WAL, not checkpointed) is in it:
`cache_first <= floor`, the smallest first index of an unreleased append. Entries below
`cache_first` are read from ``raft_log``, where they are on disk and no pending batch changes
them (pending truncations only touch indexes >= their append's first, pending compactions only
indexes below `first_index()`). The newest entries, just appended and about to be sent or
applied, never decode from the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from multiraft.raft.eraftpb import ConfState, Entry, HardState, Snapshot
from multiraft.raft.errors import Compacted, SnapshotOutOfDate, Unavailable
from multiraft.raft.storage import GetEntriesContext, RaftState
from multiraft.raft.util import limit_size

from .direct_log import DirectLog, RaftLogWriter
from .engine import Engine, WriteBatch
from .errors import EngineError
from .keys import (
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    CF_RAFT_WAL,
    conf_state_key,
    decode_raft_log_key,
    decode_truncated_state,
    hard_state_key,
    pack_raft_log_key,
    raft_log_bounds,
    truncated_state_key,
)
from .raft_wal import Fold, RaftWal

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


def check_no_wal(engine: Engine) -> None:
    """Raise EngineError if `engine` holds raft WAL records (its region storages must then
    be opened with its `RaftWal`). A store opening many regions checks once and opens each
    with `check_wal=False`."""
    if engine.scan(CF_RAFT_WAL, limit=1):
        raise EngineError(
            "the engine holds raft WAL records: open the region storages with its RaftWal"
        )


class RegionStorage:
    """The raft `Storage` of region `region_id` over `engine` (module docstring).

    Not thread-safe: one thread (the store's) calls everything, commit hooks included.
    """

    __slots__ = (
        "_engine",
        "_region_id",
        "_snapshot_builder",
        "_cache_max_entries",
        "_cache_max_bytes",
        "_writer",
        "_wal",
        # the view
        "_hard_state",
        "_conf_state",
        "_truncated_index",
        "_truncated_term",
        "_last_index",
        "_cache",
        "_cache_sizes",
        "_cache_bytes",
        "_cache_first",
        # appends not yet readable from the engine
        "_unread",
        "_unread_token",
    )

    def __init__(
        self,
        engine: Engine,
        region_id: int,
        *,
        wal: RaftWal | None = None,
        cache_max_entries: int = DEFAULT_CACHE_MAX_ENTRIES,
        cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
        snapshot_builder: SnapshotBuilder | None = None,
        check_wal: bool = True,
    ) -> None:
        if wal is not None and wal.engine is not engine:
            raise ValueError("the RaftWal belongs to another engine")
        self._engine = engine
        self._region_id = region_id
        self._wal = wal
        # None: metadata-only snapshots at the commit index, like MemStorage (the store passes
        # a builder that also carries the region's data).
        self._snapshot_builder = snapshot_builder
        # Cache bounds for entries readable from the engine; the newest entry is kept even past
        # the byte bound (unless entries=0), and unreleased entries are kept whatever the bounds.
        self._cache_max_entries = cache_max_entries
        self._cache_max_bytes = cache_max_bytes

        # -- the view (what raft sees: on disk + handed out) --
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
        # [token, smallest first index] of appends whose entries are not yet readable from the
        # engine, oldest token first; the writer calls `_release(token)` once they are. (A
        # list, not a deque: it holds the few rounds in flight, and an empty deque costs 600
        # bytes, per region.)
        self._unread: list[list[int]] = []
        # The token of `_unread[-1]` (-1 when `_unread` is empty): the hot path compares it
        # without touching the list.
        self._unread_token = -1

        self._load()
        self._writer: RaftLogWriter
        if wal is None:
            if check_wal:
                check_no_wal(engine)
            self._writer = DirectLog(region_id, self._release)
        else:
            reg = wal.attach(region_id, self._last_index, self._release)
            self._writer = reg
            for token, fold in reg.pending_folds(wal.gen):
                self._replay(fold, token)

    def _load(self) -> None:
        """Recover hard state, conf state and log bounds from the column families."""
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

    def _replay(self, f: Fold, token: int) -> None:
        """Apply a WAL fold (changes not in the column families) to the view. Lenient: the
        column families may already hold part of it (a checkpoint committed, its hook not run)."""
        if f.reset:
            if f.state_deleted:
                self._view_reset(0, 0)
                self._hard_state = HardState()
                self._conf_state = ConfState()
            if f.trunc is not None:
                self._view_reset(*f.trunc)
        first = f.first
        if first is not None:
            raws = f.raws
            skip = self._truncated_index + 1 - first
            if skip > 0:
                raws = raws[skip:]
                first += skip
            if raws:
                assert first <= self._last_index + 1, f"region {self._region_id}: WAL gap"
                self._note_unread(token, first)
                self._view_append(first, [_parse_entry(v) for v in raws], [len(v) for v in raws])
        if f.trunc is not None and f.trunc[0] > self._truncated_index:
            self._view_compact(*f.trunc)
        if f.hs is not None:
            self._hard_state = f.hs
        if f.cs is not None:
            self._conf_state = ConfState.FromString(f.cs)

    # -- accessors --------------------------------------------------------------------------

    @property
    def region_id(self) -> int:
        return self._region_id

    @property
    def engine(self) -> Engine:
        return self._engine

    def hard_state(self) -> HardState:
        """The hard state of the view (do not mutate)."""
        return self._hard_state

    def conf_state(self) -> ConfState:
        """The conf state of the view (do not mutate)."""
        return self._conf_state

    def truncated_index(self) -> int:
        """Index of the entry before the first one (snapshot or compaction point)."""
        return self._truncated_index

    def truncated_term(self) -> int:
        return self._truncated_term

    def has_pending(self) -> bool:
        """Whether a batch holding mutations of this storage is not committed yet."""
        return self._writer.has_pending()

    def cached_range(self) -> tuple[int, int]:
        """The half-open index range `[lo, hi)` held by the entry cache."""
        return self._cache_first, self._last_index + 1

    def unreleased_from(self) -> int:
        """The smallest index that may not be readable from the engine yet (`last_index() + 1`
        when every entry is)."""
        u = self._unread
        if not u:
            return self._last_index + 1
        return min(first for _, first in u)

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
            raise AssertionError(f"region {self._region_id}: raft log has a hole at index {idx}")
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

    # -- mutations (into a batch; in the view at once) ---------------------------------------

    def append(
        self, batch: WriteBatch, entries: Sequence[Entry], hs: HardState | None = None
    ) -> None:
        """Append `entries` (contiguous), replacing any existing suffix from their first index
        on; with `hs`, also persist that hard state (the same as `set_hard_state(batch, hs)`
        afterwards, in one call: a Ready's usual writes). The storage keeps the entry and hard
        state objects: do not mutate them afterwards."""
        n = len(entries)
        if n == 1:
            e = entries[0]
            first = e.index
            old_last = self._last_index
            if first == old_last + 1:
                # The hot path (one call per region per round): one entry right after the last
                # one, so right after the cached ones (the cache is the log's suffix), above
                # the truncated index, and at or above every unreleased append's first index.
                raw = e.SerializeToString()
                size = len(raw)
                token = self._writer.append_one(batch, first, raw, size, hs)
                if token != self._unread_token:
                    self._unread.append([token, first])
                    self._unread_token = token
                if hs is not None:
                    self._hard_state = hs
                cache = self._cache
                cache.append(e)
                self._cache_sizes.append(size)
                self._cache_bytes += size
                self._last_index = first
                if (
                    len(cache) > self._cache_max_entries
                    or self._cache_bytes > self._cache_max_bytes
                ):
                    self._trim_cache()
                return
        elif not n:
            if hs is not None:
                self.set_hard_state(batch, hs)
            return
        else:
            e = entries[0]
            first = e.index
            old_last = self._last_index
        assert self._truncated_index < first, (
            f"overwrite compacted raft logs, compacted: {self._truncated_index}, append: {first}"
        )
        assert old_last + 1 >= first, (
            f"raft logs should be continuous, last index: {old_last}, new appended: {first}"
        )
        if n == 1:
            raw = e.SerializeToString()
            size = len(raw)
            token = self._writer.append(batch, first, old_last, [raw], size, hs)
        else:
            assert entries[-1].index == first + n - 1, f"entries not contiguous from {first}"
            raws = [x.SerializeToString() for x in entries]
            sizes = [len(v) for v in raws]
            token = self._writer.append(batch, first, old_last, raws, sum(sizes), hs)
        # Before the cache update: its trimming must see these entries as unreleased.
        self._note_unread(token, first)
        if hs is not None:
            self._hard_state = hs
        if n == 1:
            cache = self._cache
            if first == self._cache_first + len(cache):
                # The hot path: one entry right after the cached ones.
                cache.append(e)
                self._cache_sizes.append(size)
                self._cache_bytes += size
                self._last_index = first
                if (
                    len(cache) > self._cache_max_entries
                    or self._cache_bytes > self._cache_max_bytes
                ):
                    self._trim_cache()
            else:
                self._view_append(first, [e], [size])
        else:
            self._view_append(first, list(entries), sizes)

    def _note_unread(self, token: int, first: int) -> None:
        u = self._unread
        if token == self._unread_token:
            if first < u[-1][1]:
                u[-1][1] = first
        else:
            u.append([token, first])
            self._unread_token = token

    def _release(self, token: int) -> None:
        """The writer's callback: appends with tokens <= `token` are readable from the
        engine."""
        u = self._unread
        done = 0
        while done < len(u) and u[done][0] <= token:
            done += 1
        if done:
            del u[:done]
        if not u:
            self._unread_token = -1
        if len(self._cache) > self._cache_max_entries or self._cache_bytes > self._cache_max_bytes:
            self._trim_cache()

    def _view_append(self, first: int, ents: list[Entry], sizes: list[int]) -> None:
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
        over many appends), never an unreleased one, keeping the newest entry unless the cache
        is disabled."""
        cache, sizes = self._cache, self._cache_sizes
        n = len(cache)
        max_n = self._cache_max_entries * 3 // 4
        max_bytes = self._cache_max_bytes * 3 // 4
        keep_at_least = 1 if self._cache_max_entries > 0 else 0
        # Never drop entries at or past the unread floor.
        n_max_drop = self.unreleased_from() - self._cache_first
        drop = 0
        total = self._cache_bytes
        while (
            drop < n_max_drop
            and n - drop > keep_at_least
            and (n - drop > max_n or total > max_bytes)
        ):
            total -= sizes[drop]
            drop += 1
        if drop:
            del cache[:drop]
            del sizes[:drop]
            self._cache_bytes = total
            self._cache_first += drop

    def _drop_cache_before(self, index: int) -> None:
        cache_first = self._cache_first
        drop = min(index, self._last_index + 1) - cache_first
        if drop > 0:
            self._cache_bytes -= sum(self._cache_sizes[:drop])
            del self._cache[:drop]
            del self._cache_sizes[:drop]
            self._cache_first = cache_first + drop

    def compact_cache(self, index: int) -> None:
        """Drop cached entries before `index` (e.g. applied and sent to every follower) that
        are readable from the engine; the log itself is untouched."""
        self._drop_cache_before(min(index, self.unreleased_from()))

    def set_hard_state(self, batch: WriteBatch, hs: HardState) -> None:
        """Persist `hs`. The storage keeps the object: do not mutate it afterwards."""
        self._writer.hard_state(batch, hs)
        self._hard_state = hs

    def set_conf_state(self, batch: WriteBatch, cs: ConfState) -> None:
        """Persist `cs`. The storage keeps the object: do not mutate it afterwards."""
        self._writer.conf_state(batch, cs.SerializeToString())
        self._conf_state = cs

    def apply_snapshot(self, batch: WriteBatch, snapshot: Snapshot) -> None:
        """Replace the log by `snapshot`'s metadata point: the log becomes empty after it, the
        hard state's commit moves to it (term raised to it), the conf state becomes its. The
        snapshot's data is the store's business. Raises `SnapshotOutOfDate` when the storage
        already holds its index (first_index > index), like MemStorage."""
        meta = snapshot.metadata
        index, term = meta.index, meta.term
        if self._truncated_index + 1 > index:
            raise SnapshotOutOfDate()
        hs = HardState()
        hs.CopyFrom(self._hard_state)
        hs.term = max(hs.term, term)
        hs.commit = index
        cs = ConfState()
        cs.CopyFrom(meta.conf_state)
        self._writer.reset(batch, index, term, hs, cs.SerializeToString())
        self._view_reset(index, term)
        self._hard_state = hs
        self._conf_state = cs

    def _view_reset(self, index: int, term: int) -> None:
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
        written into `batch`, False (doing nothing) when there is nothing to compact
        (`compact_index <= first_index()`). Compacting past `last_index() + 1` is a caller
        bug."""
        old_first = self._truncated_index + 1
        if compact_index <= old_first:
            return False
        assert compact_index <= self._last_index + 1, (
            f"compact not received raft logs: {compact_index}, last index: {self._last_index}"
        )
        idx = compact_index - 1
        term = self.term(idx)
        self._writer.compact(batch, old_first, idx, term)
        self._view_compact(idx, term)
        return True

    def _view_compact(self, idx: int, term: int) -> None:
        self._truncated_index = idx
        self._truncated_term = term
        if self._cache_first <= idx:
            self._drop_cache_before(idx + 1)
            self._cache_first = max(self._cache_first, idx + 1)

    def destroy(self, batch: WriteBatch) -> None:
        """Delete the region's raft log and raft state (hard state, conf state, truncated
        state); the region local state and apply state are the store's to delete."""
        self._writer.destroy(batch)
        self._view_reset(0, 0)
        self._hard_state = HardState()
        self._conf_state = ConfState()

    def __repr__(self) -> str:
        mode = "wal" if self._wal is not None else "direct"
        return (
            f"RegionStorage(region={self._region_id}, {mode}, first={self._truncated_index + 1}, "
            f"last={self._last_index}, cache=[{self._cache_first}, {self._last_index + 1}))"
        )
