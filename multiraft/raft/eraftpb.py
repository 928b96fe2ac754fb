"""The raft core's protobuf messages (raft-rs `eraftpb`), re-exported from the generated code.

Enum types are protobuf enum wrappers: `MessageType.MsgAppend` is the int 3,
`MessageType.Name(3)` is "MsgAppend".
"""

from multiraft.proto.eraftpb_pb2 import (
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
]
