"""`RaftWal`: an append-only raft write-ahead log shared by every region of a store.

Why. With region-major ``raft_log`` keys, a round that appends one entry to each of N regions
dirties about N LMDB leaf pages (measured 19-27x write amplification, ~15 ms per durable
commit at 1,000 regions, `lmdb_engine`). With the WAL a round's durable write is ONE put: a
record keyed by the round's sequence number holding every region's raft log changes of that
round, encoded compactly (LMDB stores it in contiguous overflow pages). Every
`checkpoint_rounds` rounds or `checkpoint_bytes` bytes a *checkpoint* moves the changes into
``raft_log`` / ``raft_state`` in bulk, sorted by region (each region's leaf page is written
once per checkpoint instead of once per round), and deletes the WAL records, in the same write
batch. Recovery (`RaftWal(engine)`) replays the records left in the WAL. Measured
(`bench/batching.py`, docs/benchmarks.md): 1,000 regions with one entry each, ~6 ms per durable
round instead of ~60 ms with the region-major layout.

Record format (value of a ``raft_wal`` key, the u64 big-endian round sequence number)::

    version u8 (= 1), then operations to the end; each is region_id u64, kind u8, payload:
    APPEND    first u64, count u32, count x (length u32, serialized Entry)
    HARD      term u64, vote u64, commit u64              (the hard state)
    CONF      length u32, serialized ConfState
    COMPACT   index u64, term u64       (the log now starts after index; term is its term)
    SNAPSHOT  index u64, term u64, hard state (3 x u64), length u32 + serialized ConfState
    DESTROY   -                         (the region's raft log and raft state are deleted)

All integers are big-endian. APPEND replaces the region's log from `first` on.

Invariant: the column families ``raft_log`` + ``raft_state``, with every ``raft_wal`` record
replayed on top in key order, are the raft state of every region as of the last committed
batch. A checkpoint folds every change made up to the moment it is emitted and deletes every
record in the same transaction (the records of earlier batches are committed before it); the
changes made to the same batch after it go into that batch's record, written after the delete.
Invariant: per region, the *fold* (`Fold`) is the net effect of its changes not yet handed to a
checkpoint; `inflight` holds the folds of checkpoints emitted but not committed yet.

Threads: everything runs on the store's thread except a batch's prepare hook (the record's
encoding), which runs on the writing thread and touches only that batch's own record.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import repeat

from multiraft.raft.eraftpb import HardState

from .engine import Engine, WriteBatch
from .errors import EngineError
from .keys import (
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    CF_RAFT_WAL,
    RAFT_LOG_KEY_LEN,
    conf_state_key,
    decode_wal_key,
    encode_truncated_state,
    hard_state_key,
    pack_raft_log_key,
    raft_log_bounds,
    truncated_state_key,
    wal_key,
)

__all__ = [
    "RaftWal",
    "WalRegion",
    "WalStats",
    "Fold",
    "DEFAULT_CHECKPOINT_ROUNDS",
    "DEFAULT_CHECKPOINT_BYTES",
]

DEFAULT_CHECKPOINT_ROUNDS = 64
DEFAULT_CHECKPOINT_BYTES = 16 << 20

_VERSION = b"\x01"
APPEND = 1
HARD = 2
CONF = 3
COMPACT = 4
SNAPSHOT = 5
DESTROY = 6

_HDR = struct.Struct(">QB")  # region id, kind
_APPEND_HDR = struct.Struct(">QBQI")  # + first, count
_APPEND_ONE = struct.Struct(">QBQII")  # + first, count (1), length of the one entry
# The hard state then the header of one entry: the usual Ready, as two operations whose
# headers take one pack (the entry's bytes follow).
_HARD_APPEND_ONE = struct.Struct(">QBQQQQBQII")
_HARD = struct.Struct(">QBQQQ")  # + term, vote, commit
_STATE_HDR = struct.Struct(">QBI")  # + length
_COMPACT = struct.Struct(">QBQQ")  # + index, term
_SNAPSHOT_HDR = struct.Struct(">QBQQQQQ")  # + index, term, hard state term, vote, commit
_U32 = struct.Struct(">I")
_U64_U32 = struct.Struct(">QI")
_U64_U64 = struct.Struct(">QQ")
_U64_3 = struct.Struct(">QQQ")

_pack_append_one = _APPEND_ONE.pack
_pack_hard_append_one = _HARD_APPEND_ONE.pack
_pack_append_hdr = _APPEND_HDR.pack
_pack_hard = _HARD.pack
_pack_state_hdr = _STATE_HDR.pack
_pack_u32 = _U32.pack
_log_key = pack_raft_log_key

# Bytes counted per operation besides the payload (for the checkpoint byte trigger).
_OP_OVERHEAD = 21
_HARD_APPEND_OVERHEAD = 2 * _OP_OVERHEAD + 24


@dataclass(slots=True)
class WalStats:
    """Counters of a `RaftWal` (plain ints, read by the metrics layer)."""

    # Records committed and their encoded bytes.
    records: int = 0
    record_bytes: int = 0
    # Checkpoints emitted, regions and entries they moved into the column families.
    checkpoints: int = 0
    checkpoint_regions: int = 0
    checkpoint_entries: int = 0
    # Records replayed when the WAL was opened.
    recovered_records: int = 0


class Fold:
    """The net effect of one region's changes since its last checkpoint.

    Applied in this order it gives the region's state: if `reset`, the log is emptied (and if
    `state_deleted`, hard state / conf state / truncated state too); the log is replaced from
    `first` on by `raws` (`first` None: no append); entries up to `trunc[0]` are discarded and
    `trunc` is the truncated state; `hs` / `cs` are the hard state / conf state.

    Invariant: `raws` are the serialized entries of indexes `first, first + 1, ...`.
    """

    __slots__ = ("reset", "state_deleted", "first", "raws", "trunc", "hs", "cs")

    def __init__(self) -> None:
        self.reset = False
        self.state_deleted = False
        self.first: int | None = None
        self.raws: list[bytes] = []
        self.trunc: tuple[int, int] | None = None
        self.hs: HardState | None = None
        self.cs: bytes | None = None

    def append(self, first: int, raws: list[bytes]) -> None:
        """Entries from `first` replace the log from `first` on."""
        cur = self.first
        if cur is None or first <= cur:
            self.first = first
            self.raws = raws
            return
        cut = first - cur
        have = self.raws
        assert cut <= len(have), f"append at {first} leaves a gap after {cur + len(have) - 1}"
        del have[cut:]
        have.extend(raws)

    def snapshot(self, index: int, term: int, hs: HardState, cs: bytes) -> None:
        self.reset = True
        self.first = None
        self.raws = []
        self.trunc = (index, term)
        self.hs = hs
        self.cs = cs

    def destroy(self) -> None:
        self.reset = True
        self.state_deleted = True
        self.first = None
        self.raws = []
        self.trunc = None
        self.hs = None
        self.cs = None


class _Record:
    """The WAL record of one batch: encoded operations, written by the batch's prepare hook."""

    __slots__ = ("wal", "batch", "seq", "parts", "skip", "encoded")

    def __init__(self, wal: RaftWal, batch: WriteBatch, seq: int) -> None:
        self.wal = wal
        # The batch it belongs to (None once committed).
        self.batch: WriteBatch | None = batch
        self.seq = seq
        # Encoded operations; parts[0] is the version byte.
        self.parts: list[bytes] = [_VERSION]
        # Operations before parts[skip] are covered by a checkpoint in the same batch.
        self.skip = 1
        # Bytes written by the prepare hook.
        self.encoded = 0

    def prepare(self) -> None:
        """On the writing thread: one put holding every operation of the batch."""
        parts = self.parts
        if self.skip > 1:
            parts = [_VERSION, *parts[self.skip :]]
        if len(parts) > 1:
            value = b"".join(parts)
            self.encoded = len(value)
            assert self.batch is not None
            self.batch.put(CF_RAFT_WAL, wal_key(self.seq), value)

    def committed(self) -> None:
        wal = self.wal
        wal._durable_seq = self.seq
        if self.encoded:
            wal.stats.records += 1
            wal.stats.record_bytes += self.encoded
        self.batch = None
        self.parts = []
        if wal._cur is self:
            wal._cur = None


class WalRegion:
    """The `RaftLogWriter` of one region over a `RaftWal` (see `direct_log.RaftLogWriter`).

    Tokens are checkpoint numbers: entries appended now are in ``raft_log`` once the next
    checkpoint (number `wal.gen`) commits, and `release(n)` is called then.
    """

    __slots__ = (
        "_wal",
        "_region_id",
        "release",
        "fold",
        "inflight",
        "cf_last",
        "last",
        "_last_seq",
        "_dirty",
    )

    def __init__(self, wal: RaftWal, region_id: int) -> None:
        self._wal = wal
        self._region_id = region_id
        # The attached storage's callback (None while no storage is attached).
        self.release: Callable[[int], None] | None = None
        # Changes not handed to a checkpoint yet.
        self.fold = Fold()
        # (checkpoint number, fold) of checkpoints emitted but not committed, oldest first.
        self.inflight: deque[tuple[int, Fold]] = deque()
        # The last raft_log index in the column family after the checkpoints emitted so far;
        # -1 when unknown (then a checkpoint deletes any stale suffix to be safe).
        self.cf_last = -1
        # The region's last log index after every change so far (-1: unknown).
        self.last = -1
        # Sequence number of the last record this region wrote to.
        self._last_seq = 0
        # Whether the region is in the WAL's dirty set.
        self._dirty = False

    @property
    def region_id(self) -> int:
        return self._region_id

    def _record(self, batch: WriteBatch, size: int) -> _Record:
        wal = self._wal
        rec = wal._cur
        if rec is None or rec.batch is not batch:
            rec = wal._new_record(batch)
        wal._bytes += size + _OP_OVERHEAD
        self._last_seq = rec.seq
        if not self._dirty:
            self._dirty = True
            wal._dirty[self._region_id] = self
        return rec

    def has_pending(self) -> bool:
        return self._last_seq > self._wal._durable_seq

    def append(
        self,
        batch: WriteBatch,
        first: int,
        old_last: int,
        raws: list[bytes],
        size: int,
        hs: HardState | None,
    ) -> int:
        # The hot path (one call per region per round): `_record` and `Fold.append` inlined.
        wal = self._wal
        rec = wal._cur
        if rec is None or rec.batch is not batch:
            rec = wal._new_record(batch)
        self._last_seq = rec.seq
        r = self._region_id
        if not self._dirty:
            self._dirty = True
            wal._dirty[r] = self
        fold = self.fold
        n = len(raws)
        if n == 1:
            raw = raws[0]
            if hs is None:
                rec.parts += (_pack_append_one(r, APPEND, first, 1, len(raw)), raw)
                wal._bytes += size + _OP_OVERHEAD
            else:
                rec.parts += (
                    _pack_hard_append_one(
                        r, HARD, hs.term, hs.vote, hs.commit, r, APPEND, first, 1, len(raw)
                    ),
                    raw,
                )
                fold.hs = hs
                wal._bytes += size + 2 * _OP_OVERHEAD + 24
            cur = fold.first
            if cur is not None and first == cur + len(fold.raws):
                fold.raws.append(raw)
            else:
                fold.append(first, [raw])
        else:
            parts = rec.parts
            parts.append(_pack_append_hdr(r, APPEND, first, n))
            for raw in raws:
                parts += (_pack_u32(len(raw)), raw)
            fold.append(first, list(raws))
            wal._bytes += size + 4 * n + _OP_OVERHEAD
            if hs is not None:
                parts.append(_pack_hard(r, HARD, hs.term, hs.vote, hs.commit))
                fold.hs = hs
                wal._bytes += 24 + _OP_OVERHEAD
        self.last = first + n - 1
        return wal._gen

    def append_one(
        self, batch: WriteBatch, index: int, raw: bytes, size: int, hs: HardState | None
    ) -> int:
        # The hot path (one call per region per round): `append` for one entry right after
        # the last one, `_record` and `Fold.append` inlined.
        wal = self._wal
        rec = wal._cur
        if rec is None or rec.batch is not batch:
            rec = wal._new_record(batch)
        self._last_seq = rec.seq
        r = self._region_id
        if not self._dirty:
            self._dirty = True
            wal._dirty[r] = self
        fold = self.fold
        if hs is None:
            rec.parts += (_pack_append_one(r, APPEND, index, 1, size), raw)
            wal._bytes += size + _OP_OVERHEAD
        else:
            rec.parts += (
                _pack_hard_append_one(
                    r, HARD, hs.term, hs.vote, hs.commit, r, APPEND, index, 1, size
                ),
                raw,
            )
            fold.hs = hs
            wal._bytes += size + _HARD_APPEND_OVERHEAD
        raws = fold.raws
        cur = fold.first
        if cur is not None and index == cur + len(raws):
            raws.append(raw)
        else:
            fold.append(index, [raw])
        self.last = index
        return wal._gen

    def hard_state(self, batch: WriteBatch, hs: HardState) -> None:
        self._record(batch, 24).parts.append(
            _pack_hard(self._region_id, HARD, hs.term, hs.vote, hs.commit)
        )
        self.fold.hs = hs

    def conf_state(self, batch: WriteBatch, raw: bytes) -> None:
        parts = self._record(batch, len(raw)).parts
        parts.append(_pack_state_hdr(self._region_id, CONF, len(raw)))
        parts.append(raw)
        self.fold.cs = raw

    def compact(self, batch: WriteBatch, old_first: int, index: int, term: int) -> None:
        self._record(batch, 16).parts.append(_COMPACT.pack(self._region_id, COMPACT, index, term))
        self.fold.trunc = (index, term)

    def reset(self, batch: WriteBatch, index: int, term: int, hs: HardState, cs: bytes) -> None:
        parts = self._record(batch, 44 + len(cs)).parts
        parts.append(
            _SNAPSHOT_HDR.pack(self._region_id, SNAPSHOT, index, term, hs.term, hs.vote, hs.commit)
        )
        parts.append(_pack_u32(len(cs)))
        parts.append(cs)
        self.fold.snapshot(index, term, hs, cs)
        self.last = index

    def destroy(self, batch: WriteBatch) -> None:
        self._record(batch, 0).parts.append(_HDR.pack(self._region_id, DESTROY))
        self.fold.destroy()
        self.last = 0

    def pending_folds(self, token_now: int) -> list[tuple[int, Fold]]:
        """The folds not in the column families yet, oldest first, each with the token that
        releases it (for a storage attaching to this region)."""
        return [*self.inflight, (token_now, self.fold)]

    # -- checkpoint ---------------------------------------------------------------------------

    def flush(self, batch: WriteBatch, number: int) -> int:
        """Write the fold into the column families (checkpoint `number`); returns the number of
        entries written."""
        f = self.fold
        r = self._region_id
        start, end = raft_log_bounds(r)
        first = f.first
        if f.reset:
            batch.delete_range(CF_RAFT_LOG, start, end)
        elif first is not None and (self.cf_last < 0 or first <= self.cf_last):
            batch.delete_range(CF_RAFT_LOG, _log_key(r, first), end)
        raws = f.raws
        trunc = f.trunc
        if trunc is not None:
            index = trunc[0]
            if not f.reset:
                batch.delete_range(CF_RAFT_LOG, start, _log_key(r, index + 1))
            if first is not None and index >= first:
                raws = raws[index + 1 - first :]
                first = index + 1
        n = len(raws)
        if n:
            assert first is not None
            # Keys and pairs built in C (map / zip): the checkpoint's per-entry cost.
            keys = map(_log_key, repeat(r, n), range(first, first + n))
            items = list(zip(keys, raws, strict=True))
            size = sum(map(len, raws)) + RAFT_LOG_KEY_LEN * n
            batch.extend_trusted(CF_RAFT_LOG, items, size)
        if f.state_deleted:
            for key in (hard_state_key(r), conf_state_key(r), truncated_state_key(r)):
                batch.delete(CF_RAFT_STATE, key)
        if trunc is not None:
            batch.put(CF_RAFT_STATE, truncated_state_key(r), encode_truncated_state(*trunc))
        if f.hs is not None:
            batch.put(CF_RAFT_STATE, hard_state_key(r), f.hs.SerializeToString())
        if f.cs is not None:
            batch.put(CF_RAFT_STATE, conf_state_key(r), f.cs)
        if f.reset or f.first is not None:
            self.cf_last = self.last
        self.inflight.append((number, f))
        self.fold = Fold()
        self._dirty = False
        return n

    def flushed(self, number: int) -> None:
        """Checkpoint `number` is committed."""
        inflight = self.inflight
        while inflight and inflight[0][0] <= number:
            inflight.popleft()
        if self.release is not None:
            self.release(number)

    def __repr__(self) -> str:
        return f"WalRegion({self._region_id}, last={self.last}, cf_last={self.cf_last})"


class RaftWal:
    """The raft WAL of one engine (module docstring). Opening it recovers the records left in
    the engine; create it before the region storages and pass it to each (`RegionStorage(...,
    wal=wal)`). One `RaftWal` per engine; not thread-safe (the store's thread), except the
    records' prepare hooks.

    The batching layer calls `end_round(batch)` once a round's batch is complete; it emits a
    checkpoint into that batch every `checkpoint_rounds` rounds or `checkpoint_bytes` bytes of
    changes. `checkpoint(batch)` emits one at once.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        checkpoint_rounds: int = DEFAULT_CHECKPOINT_ROUNDS,
        checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES,
    ) -> None:
        if checkpoint_rounds < 1 or checkpoint_bytes < 1:
            raise ValueError("checkpoint_rounds and checkpoint_bytes must be positive")
        self._engine = engine
        self.checkpoint_rounds = checkpoint_rounds
        self.checkpoint_bytes = checkpoint_bytes
        self.stats = WalStats()
        # Every region seen (attached or recovered), by id.
        self._regions: dict[int, WalRegion] = {}
        # Regions with changes not handed to a checkpoint yet.
        self._dirty: dict[int, WalRegion] = {}
        # The record of the newest batch written to.
        self._cur: _Record | None = None
        # Sequence number of the next record / of the last committed one.
        # Invariant: _durable_seq < _next_seq.
        self._next_seq = 1
        self._durable_seq = 0
        # Number of the next checkpoint (the token of changes made now).
        self._gen = 1
        # Rounds and change bytes since the last checkpoint.
        self._rounds = 0
        self._bytes = 0
        self._recover()

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def gen(self) -> int:
        """Number of the next checkpoint."""
        return self._gen

    def attach(self, region_id: int, cf_last: int, release: Callable[[int], None]) -> WalRegion:
        """The writer of `region_id` for a storage that just loaded the column families
        (`cf_last`: the last raft_log index it found there). The storage then replays
        `pending_folds`. A new storage for a region replaces the previous one."""
        reg = self._regions.get(region_id)
        if reg is None:
            reg = self._regions[region_id] = WalRegion(self, region_id)
        if reg.cf_last < 0 and not reg.inflight:
            reg.cf_last = cf_last
        reg.release = release
        return reg

    def _new_record(self, batch: WriteBatch) -> _Record:
        rec = _Record(self, batch, self._next_seq)
        batch.add_prepare_hook(rec.prepare)  # raises for a batch already written
        batch.add_commit_hook(rec.committed)
        self._next_seq += 1
        self._cur = rec
        return rec

    def has_pending(self) -> bool:
        """Whether a record is not committed yet."""
        return self._durable_seq + 1 < self._next_seq

    def dirty_regions(self) -> int:
        """Regions with changes not yet handed to a checkpoint."""
        return len(self._dirty)

    # -- checkpoints ----------------------------------------------------------------------

    def end_round(self, batch: WriteBatch) -> bool:
        """A round's batch is complete: emit a checkpoint into it if one is due. Returns
        whether it did."""
        self._rounds += 1
        if self._rounds < self.checkpoint_rounds and self._bytes < self.checkpoint_bytes:
            return False
        return self.checkpoint(batch)

    def checkpoint(self, batch: WriteBatch) -> bool:
        """Move every change made so far into the column families and delete every WAL
        record, in `batch` (committed after every batch written to before). Returns False
        when there was nothing to move."""
        self._rounds = 0
        self._bytes = 0
        if not self._dirty:
            return False
        number = self._gen
        self._gen += 1
        regions = [self._dirty[r] for r in sorted(self._dirty)]
        self._dirty = {}
        entries = 0
        for reg in regions:
            entries += reg.flush(batch, number)
        batch.delete_range(CF_RAFT_WAL, wal_key(0), None)
        rec = self._cur
        if rec is not None and rec.batch is batch:
            rec.skip = len(rec.parts)
        batch.add_commit_hook(partial(self._checkpointed, number, regions))
        stats = self.stats
        stats.checkpoints += 1
        stats.checkpoint_regions += len(regions)
        stats.checkpoint_entries += entries
        return True

    def _checkpointed(self, number: int, regions: list[WalRegion]) -> None:
        for reg in regions:
            reg.flushed(number)

    # -- recovery -------------------------------------------------------------------------

    def _region(self, region_id: int) -> WalRegion:
        reg = self._regions.get(region_id)
        if reg is None:
            reg = self._regions[region_id] = WalRegion(self, region_id)
        if not reg._dirty:
            reg._dirty = True
            self._dirty[region_id] = reg
        return reg

    def _recover(self) -> None:
        rows = self._engine.scan(CF_RAFT_WAL)
        for key, value in rows:
            seq = decode_wal_key(key)
            self._replay(seq, value)
            self._bytes += len(value)
        if rows:
            last = decode_wal_key(rows[-1][0])
            self._next_seq = last + 1
            self._durable_seq = last
        self.stats.recovered_records = len(rows)

    def _replay(self, seq: int, value: bytes) -> None:
        if value[:1] != _VERSION:
            raise EngineError(f"raft WAL record {seq}: unknown version {value[:1]!r}")
        pos = 1
        end = len(value)
        unpack_from = struct.unpack_from
        try:
            while pos < end:
                r, kind = _HDR.unpack_from(value, pos)
                pos += 9
                reg = self._region(r)
                reg._last_seq = seq
                if kind == APPEND:
                    first, count = _U64_U32.unpack_from(value, pos)
                    pos += 12
                    raws = []
                    for _ in range(count):
                        (n,) = unpack_from(">I", value, pos)
                        pos += 4
                        raws.append(value[pos : pos + n])
                        pos += n
                    reg.fold.append(first, raws)
                    reg.last = first + count - 1
                elif kind == HARD:
                    term, vote, commit = _U64_3.unpack_from(value, pos)
                    pos += 24
                    reg.fold.hs = HardState(term=term, vote=vote, commit=commit)
                elif kind == CONF:
                    (n,) = unpack_from(">I", value, pos)
                    reg.fold.cs = value[pos + 4 : pos + 4 + n]
                    pos += 4 + n
                elif kind == COMPACT:
                    reg.fold.trunc = _U64_U64.unpack_from(value, pos)
                    pos += 16
                elif kind == SNAPSHOT:
                    index, term, t, v, c = struct.unpack_from(">QQQQQ", value, pos)
                    pos += 40
                    (n,) = unpack_from(">I", value, pos)
                    cs = value[pos + 4 : pos + 4 + n]
                    pos += 4 + n
                    reg.fold.snapshot(index, term, HardState(term=t, vote=v, commit=c), cs)
                    reg.last = index
                elif kind == DESTROY:
                    reg.fold.destroy()
                    reg.last = 0
                else:
                    raise EngineError(f"raft WAL record {seq}: unknown operation {kind}")
        except struct.error as e:
            raise EngineError(f"raft WAL record {seq} is truncated at byte {pos}") from e
        if pos != end:
            raise EngineError(f"raft WAL record {seq} is truncated at byte {pos}")

    def __repr__(self) -> str:
        return (
            f"RaftWal(next_seq={self._next_seq}, durable_seq={self._durable_seq}, "
            f"dirty={len(self._dirty)}, next_checkpoint={self._gen})"
        )
