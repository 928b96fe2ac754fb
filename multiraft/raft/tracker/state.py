"""The replication state of a follower as the leader sees it (raft-rs `tracker/state.rs`)."""

from __future__ import annotations

import enum

__all__ = ["ProgressState"]


class ProgressState(enum.IntEnum):
    """How the leader sends appends to one follower (etcd `tracker/state.go` explains the
    state machine: Probe -> Replicate on a successful append, Replicate -> Probe on a
    rejection or an unreachable peer, any -> Snapshot when the needed entries are compacted,
    Snapshot -> Probe once the snapshot is reported)."""

    # At most one append per heartbeat interval, waiting for its answer, to find where the
    # follower's log matches the leader's.
    Probe = 0
    # Appends are sent optimistically (next_idx moves ahead of matched), bounded by the
    # Inflights window.
    Replicate = 1
    # The follower needs a snapshot; no appends until it is reported applied or failed.
    Snapshot = 2

    def __str__(self) -> str:
        return self.name
