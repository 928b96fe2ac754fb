"""The consensus core: raft-rs 0.7's API in Python.

Sans-I/O and deterministic: time is `RawNode.tick()`, randomness an injected generator, output
a numbered `Ready`. Imports only the standard library and `multiraft.proto`.

The modules follow raft-rs's source files (`raft.py`, `raw_node.py`, `quorum/`, ...); the crate's
public paths (`raft::storage::MemStorage`, `raft::prelude`, `raft::quorum(n)`) are the top-level
`multiraft` package's. Here `quorum` is the package of majority and joint configurations
(raft-rs's private `quorum` module), not the crate's function `quorum(total)`.
"""

from . import eraftpb, quorum
from .confchange import Changer, MapChange
from .config import Config
from .eraftpb import (
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
from .errors import (
    Compacted,
    ConfChangeError,
    ConfigInvalid,
    Error,
    Exists,
    LogTemporarilyUnavailable,
    ProposalDropped,
    RequestSnapshotDropped,
    SnapshotOutOfDate,
    SnapshotTemporarilyUnavailable,
    StepLocalMsg,
    StepPeerNotFound,
    StorageError,
    Unavailable,
)
from .log_unstable import Unstable
from .quorum import JointConfig, MajorityConfig, VoteResult
from .raft import (
    CAMPAIGN_ELECTION,
    CAMPAIGN_PRE_ELECTION,
    CAMPAIGN_TRANSFER,
    Raft,
    Rng,
    SoftState,
    SplitMix64,
    StateRole,
    default_logger,
)
from .raft_log import RaftLog
from .raw_node import LightReady, Peer, RawNode, Ready, SnapshotStatus
from .read_only import ReadOnlyOption, ReadState
from .status import Status, StatusRef
from .storage import GetEntriesContext, MemStorage, MemStorageCore, RaftState, Storage
from .tracker import Inflights, Progress, ProgressState, ProgressTracker
from .util import (
    INVALID_ID,
    INVALID_INDEX,
    NO_LIMIT,
    is_empty_snap,
    is_local_msg,
    is_response_msg,
    majority,
    vote_resp_msg_type,
)

# raft-rs's name before 0.6.
ProgressSet = ProgressTracker

__all__ = [
    "eraftpb",
    "quorum",
    "Changer",
    "MapChange",
    "Config",
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
    "Error",
    "StepLocalMsg",
    "StepPeerNotFound",
    "ProposalDropped",
    "ConfigInvalid",
    "ConfChangeError",
    "Exists",
    "RequestSnapshotDropped",
    "StorageError",
    "Compacted",
    "Unavailable",
    "LogTemporarilyUnavailable",
    "SnapshotOutOfDate",
    "SnapshotTemporarilyUnavailable",
    "Unstable",
    "JointConfig",
    "MajorityConfig",
    "VoteResult",
    "Raft",
    "Rng",
    "SoftState",
    "SplitMix64",
    "StateRole",
    "CAMPAIGN_ELECTION",
    "CAMPAIGN_PRE_ELECTION",
    "CAMPAIGN_TRANSFER",
    "default_logger",
    "RaftLog",
    "RawNode",
    "Ready",
    "LightReady",
    "Peer",
    "SnapshotStatus",
    "ReadOnlyOption",
    "ReadState",
    "Status",
    "StatusRef",
    "Storage",
    "MemStorage",
    "MemStorageCore",
    "RaftState",
    "GetEntriesContext",
    "Inflights",
    "Progress",
    "ProgressState",
    "ProgressTracker",
    "ProgressSet",
    "INVALID_ID",
    "INVALID_INDEX",
    "NO_LIMIT",
    "is_empty_snap",
    "is_local_msg",
    "is_response_msg",
    "majority",
    "vote_resp_msg_type",
]
