"""The store's persistent engine and the per-region raft storage over it.

`Engine` is the protocol (ordered KV with column families, atomic `WriteBatch`es, snapshots);
`LmdbEngine` is the default one, `MemoryEngine` the in-memory one for the simulator and tests;
`RegionStorage` is the raft `Storage` of one region, writing either straight into the
region-major column families (`DirectLog`) or through the store's `RaftWal` (one record per
round for every region, checkpointed into the column families in bulk). Key layouts live in
`keys`.
"""

from .direct_log import DirectLog, RaftLogWriter
from .engine import Engine, EngineSnapshot, EngineStats, ReadView, WriteBatch
from .errors import EngineClosed, EngineError, SnapshotInvalidated, WriteFailed
from .keys import (
    ALL_CFS,
    CF_APPLY_STATE,
    CF_KV,
    CF_META,
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    CF_RAFT_WAL,
)
from .lmdb_engine import LmdbEngine, LmdbSnapshot
from .memory_engine import MemoryEngine, MemorySnapshot
from .raft_wal import RaftWal, WalRegion, WalStats
from .region_storage import RegionStorage, SnapshotBuilder

__all__ = [
    "Engine",
    "EngineSnapshot",
    "EngineStats",
    "ReadView",
    "WriteBatch",
    "LmdbEngine",
    "LmdbSnapshot",
    "MemoryEngine",
    "MemorySnapshot",
    "RegionStorage",
    "SnapshotBuilder",
    "RaftLogWriter",
    "DirectLog",
    "RaftWal",
    "WalRegion",
    "WalStats",
    "EngineError",
    "EngineClosed",
    "WriteFailed",
    "SnapshotInvalidated",
    "CF_RAFT_LOG",
    "CF_RAFT_STATE",
    "CF_APPLY_STATE",
    "CF_KV",
    "CF_META",
    "CF_RAFT_WAL",
    "ALL_CFS",
]
