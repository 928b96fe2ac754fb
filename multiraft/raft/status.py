"""A snapshot of a node's state for monitoring (raft-rs `status.rs`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .eraftpb import HardState
from .tracker import ProgressTracker

if TYPE_CHECKING:
    from .raft import Raft, SoftState

__all__ = ["Status", "StatusRef"]


@dataclass
class Status:
    """Id, hard state, soft state, applied index, and — on a leader only — the progress of
    every peer: the live `ProgressTracker`, referenced, not copied (raft-rs's borrowed status;
    `StatusRef` is this class)."""

    id: int = 0
    hs: HardState = field(default_factory=HardState)
    ss: SoftState | None = None
    applied: int = 0
    progress: ProgressTracker | None = None

    @classmethod
    def new(cls, raft: Raft[Any]) -> Status:
        from .raft import StateRole

        ss = raft.soft_state()
        return cls(
            id=raft.id,
            hs=raft.hard_state(),
            ss=ss,
            applied=raft.raft_log.applied,
            progress=raft.prs if ss.raft_state == StateRole.Leader else None,
        )


# raft-rs before 0.5 had an owned `Status` (progress copied) and a borrowed `StatusRef<'a>`
# (progress referenced); 0.5 kept only the borrowed form, named `Status`. This `Status` is that
# borrowed form already (`progress` is the leader's live tracker, not a copy), so `StatusRef`
# names the same class.
StatusRef = Status
