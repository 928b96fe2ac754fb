"""raft-rs `raft::prelude`: the names a user of the raft core almost always wants,
imported all at once: `from multiraft.prelude import *`.

The eraftpb message types plus `Config`, `Raft`, `Storage`, `RaftState`, `RawNode`, `Ready`,
`Peer`, `SnapshotStatus`, `Progress`, `Status`, `ReadOnlyOption` and `ReadState`, as in raft-rs
0.7, and `StatusRef`, which the prelude held before 0.5 (the same class as `Status`).
"""

from .raft.config import Config
from .raft.eraftpb import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from .raft.raft import Raft
from .raft.raw_node import Peer, RawNode, Ready, SnapshotStatus
from .raft.read_only import ReadOnlyOption, ReadState
from .raft.status import Status, StatusRef
from .raft.storage import RaftState, Storage
from .raft.tracker import Progress

__all__ = [
    "ConfChange",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfChangeV2",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "Snapshot",
    "SnapshotMetadata",
    "Config",
    "Raft",
    "RaftState",
    "Storage",
    "Peer",
    "RawNode",
    "Ready",
    "SnapshotStatus",
    "Progress",
    "Status",
    "StatusRef",
    "ReadOnlyOption",
    "ReadState",
]
