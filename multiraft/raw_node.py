"""raft-rs `raft::raw_node`: `RawNode`, the thread-unsafe node the application drives, its
`Ready` / `LightReady` output, and the helpers that module exports.

Re-exports from `multiraft.raft` under the crate's path: `from multiraft.raw_node import RawNode`.
"""

from .raft.raw_node import LightReady, Peer, RawNode, Ready, SnapshotStatus
from .raft.util import is_empty_snap, is_local_msg

__all__ = ["LightReady", "Peer", "RawNode", "Ready", "SnapshotStatus", "is_empty_snap", "is_local_msg"]
