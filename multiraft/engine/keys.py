"""Column families and key layouts of the store's engine: the one place that defines them.

Every engine holds the same six column families (LMDB named databases). Keys sort bytewise,
so every integer in a key is fixed-width big-endian and a region's keys are contiguous.

| column family | key | value |
|---|---|---|
| ``raft_log``    | region_id u64 BE + index u64 BE (16 bytes) | serialized ``eraftpb.Entry`` |
| ``raft_state``  | region_id u64 BE + kind u8 (9 bytes), kind: | |
|                 | ``0x01`` hard state | serialized ``eraftpb.HardState`` |
|                 | ``0x02`` conf state | serialized ``eraftpb.ConfState`` |
|                 | ``0x03`` truncated state | index u64 BE + term u64 BE of the entry before the |
|                 |                          | first one in the log (snapshot / compaction point) |
|                 | ``0x04`` region local state | owned by the store (serverpb) |
| ``apply_state`` | region_id u64 BE + kind u8, kind ``0x01`` apply state | owned by the store |
| ``kv``          | the user key itself (1..511 bytes) | the user value |
| ``meta``        | an ASCII name (``store_ident``, ``id_alloc``, ...) | owned by the store |
| ``raft_wal``    | round sequence number u64 BE (8 bytes) | one `RaftWal` record: every region's |
|                 |                                        | raft log changes of one round |

Invariant: a region's ``raft_log`` keys are exactly ``[truncated_index + 1, last_index]``
(contiguous; the log is compacted and truncated in the same write batch that moves the bounds).
With a `RaftWal`, ``raft_log`` + ``raft_state`` hold the state as of the last checkpoint and
the ``raft_wal`` records hold every change since (recovery replays them).
Keys are at most `MAX_KEY_SIZE` bytes (LMDB's limit) and never empty, in every engine.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "CF_RAFT_LOG",
    "CF_RAFT_STATE",
    "CF_APPLY_STATE",
    "CF_KV",
    "CF_META",
    "CF_RAFT_WAL",
    "ALL_CFS",
    "MAX_KEY_SIZE",
    "MAX_U64",
    "RAFT_LOG_KEY_LEN",
    "HARD_STATE",
    "CONF_STATE",
    "TRUNCATED_STATE",
    "REGION_STATE",
    "APPLY_STATE",
    "check_key",
    "region_prefix",
    "raft_log_key",
    "pack_raft_log_key",
    "decode_raft_log_key",
    "raft_log_bounds",
    "raft_state_key",
    "decode_raft_state_key",
    "raft_state_bounds",
    "hard_state_key",
    "conf_state_key",
    "truncated_state_key",
    "region_state_key",
    "apply_state_key",
    "encode_truncated_state",
    "decode_truncated_state",
    "meta_key",
    "WAL_KEY_LEN",
    "wal_key",
    "decode_wal_key",
]

CF_RAFT_LOG: Final = "raft_log"
CF_RAFT_STATE: Final = "raft_state"
CF_APPLY_STATE: Final = "apply_state"
CF_KV: Final = "kv"
CF_META: Final = "meta"
CF_RAFT_WAL: Final = "raft_wal"
ALL_CFS: Final[tuple[str, ...]] = (
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    CF_APPLY_STATE,
    CF_KV,
    CF_META,
    CF_RAFT_WAL,
)

# LMDB's compiled-in key size limit (mdb_env_get_maxkeysize); the memory engine enforces it too.
MAX_KEY_SIZE: Final = 511
MAX_U64: Final = (1 << 64) - 1
RAFT_LOG_KEY_LEN: Final = 16
WAL_KEY_LEN: Final = 8

# Kinds (the last byte) of raft_state / apply_state keys.
HARD_STATE: Final = 0x01
CONF_STATE: Final = 0x02
TRUNCATED_STATE: Final = 0x03
REGION_STATE: Final = 0x04
APPLY_STATE: Final = 0x01

_U64 = struct.Struct(">Q")
_U64_U64 = struct.Struct(">QQ")
_U64_U8 = struct.Struct(">QB")

# Bound methods: the raft log key is built once per entry on the hot path.
_pack_u64 = _U64.pack
_pack_log_key = _U64_U64.pack
_unpack_log_key = _U64_U64.unpack
_pack_state_key = _U64_U8.pack


def check_key(key: bytes) -> None:
    """Raise ValueError unless `key` is a storable key (1..MAX_KEY_SIZE bytes)."""
    if not 0 < len(key) <= MAX_KEY_SIZE:
        raise ValueError(f"engine keys must be 1..{MAX_KEY_SIZE} bytes, got {len(key)}")


def region_prefix(region_id: int) -> bytes:
    """The 8-byte big-endian region id every per-region key starts with."""
    return _pack_u64(region_id)


# -- raft_log -------------------------------------------------------------------------------


def raft_log_key(region_id: int, index: int) -> bytes:
    """Key of the raft log entry `index` of `region_id`."""
    return _pack_log_key(region_id, index)


# The same as `raft_log_key` without a Python call frame: the per-entry hot path.
pack_raft_log_key: Final = _pack_log_key


def decode_raft_log_key(key: bytes) -> tuple[int, int]:
    """(region_id, index) of a raft_log key."""
    if len(key) != RAFT_LOG_KEY_LEN:
        raise ValueError(f"not a raft log key: {key!r}")
    region_id, index = _unpack_log_key(key)
    return region_id, index


def _region_bounds(region_id: int, suffix: bytes) -> tuple[bytes, bytes | None]:
    start = _pack_u64(region_id) + suffix
    end = None if region_id == MAX_U64 else _pack_u64(region_id + 1)
    return start, end


def raft_log_bounds(region_id: int) -> tuple[bytes, bytes | None]:
    """Half-open key range `[start, end)` of every raft log key of `region_id` (end None =
    unbounded, only for the largest region id)."""
    return _region_bounds(region_id, bytes(8))


# -- raft_state / apply_state ---------------------------------------------------------------


def raft_state_key(region_id: int, kind: int) -> bytes:
    """Key of one raft_state record (`HARD_STATE`, `CONF_STATE`, ...) of `region_id`."""
    return _pack_state_key(region_id, kind)


def decode_raft_state_key(key: bytes) -> tuple[int, int]:
    """(region_id, kind) of a raft_state or apply_state key."""
    if len(key) != 9:
        raise ValueError(f"not a raft state key: {key!r}")
    region_id, kind = _U64_U8.unpack(key)
    return region_id, kind


def raft_state_bounds(region_id: int) -> tuple[bytes, bytes | None]:
    """Half-open key range of every raft_state (or apply_state) record of `region_id`."""
    return _region_bounds(region_id, b"")


def hard_state_key(region_id: int) -> bytes:
    return _pack_state_key(region_id, HARD_STATE)


def conf_state_key(region_id: int) -> bytes:
    return _pack_state_key(region_id, CONF_STATE)


def truncated_state_key(region_id: int) -> bytes:
    return _pack_state_key(region_id, TRUNCATED_STATE)


def region_state_key(region_id: int) -> bytes:
    return _pack_state_key(region_id, REGION_STATE)


def apply_state_key(region_id: int) -> bytes:
    """Key of the region's apply state in the apply_state CF."""
    return _pack_state_key(region_id, APPLY_STATE)


def encode_truncated_state(index: int, term: int) -> bytes:
    """Value of a truncated_state record: index and term of the entry before the first."""
    return _pack_log_key(index, term)


def decode_truncated_state(value: bytes) -> tuple[int, int]:
    if len(value) != 16:
        raise ValueError(f"not a truncated state: {value!r}")
    index, term = _unpack_log_key(value)
    return index, term


# -- meta -----------------------------------------------------------------------------------


def meta_key(name: str) -> bytes:
    """Key of a store-level record in the meta CF (an ASCII name)."""
    key = name.encode("ascii")
    check_key(key)
    return key


# -- raft_wal -------------------------------------------------------------------------------


def wal_key(seq: int) -> bytes:
    """Key of the raft WAL record of round `seq`."""
    return _pack_u64(seq)


def decode_wal_key(key: bytes) -> int:
    """The round sequence number of a raft_wal key."""
    if len(key) != WAL_KEY_LEN:
        raise ValueError(f"not a raft WAL key: {key!r}")
    seq: int = _U64.unpack(key)[0]
    return seq
