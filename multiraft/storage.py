"""raft-rs `raft::storage`: the `Storage` interface and the in-memory `MemStorage`.

Re-exports `multiraft.raft.storage` under the crate's path:
`from multiraft.storage import MemStorage`.
"""

from .raft.storage import GetEntriesContext, MemStorage, MemStorageCore, RaftState, Storage

__all__ = ["GetEntriesContext", "MemStorage", "MemStorageCore", "RaftState", "Storage"]
