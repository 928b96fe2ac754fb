"""The replication state of a follower as seen by the leader."""

from __future__ import annotations

import enum

__all__ = ["ProgressState"]


class ProgressState(enum.IntEnum):
    # Probe: the leader sends at most one append per heartbeat interval and waits for the
    # answer, to find where the follower's log matches.
    Probe = 0
    # Replicate: the leader sends appends optimistically, bounded by the Inflights window.
    Replicate = 1
    # Snapshot: the follower needs a snapshot; no appends until it is applied.
    Snapshot = 2

    def __str__(self) -> str:
        return self.name
