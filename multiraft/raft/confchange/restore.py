"""Rebuild a tracker's configuration from a ConfState (raft-rs `confchange/restore.rs`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..eraftpb import ConfChangeSingle, ConfChangeType, ConfState
from .changer import Changer
from .conf_change import new_conf_change_single

if TYPE_CHECKING:
    from ..tracker import ProgressTracker

__all__ = ["restore"]


def _to_conf_change_single(cs: ConfState) -> tuple[list[ConfChangeSingle], list[ConfChangeSingle]]:
    """The changes that rebuild `cs` from an empty config: `outgoing` builds the outgoing
    voters as a simple config; `incoming` then enters the joint config.

    Example: voters=(1 2 3) learners=(5) outgoing=(1 2 4 6) learners_next=(4) gives
    outgoing = add 1, add 2, add 4, add 6 and incoming = remove 1 2 4 6, add 1 2 3,
    add-learner 5, add-learner 4, i.e. quorum=(1 2 3)&&(1 2 4 6) learners=(5)
    learners_next=(4).
    """
    outgoing = [new_conf_change_single(id, ConfChangeType.AddNode) for id in cs.voters_outgoing]
    incoming = [new_conf_change_single(id, ConfChangeType.RemoveNode) for id in cs.voters_outgoing]
    incoming += [new_conf_change_single(id, ConfChangeType.AddNode) for id in cs.voters]
    incoming += [new_conf_change_single(id, ConfChangeType.AddLearnerNode) for id in cs.learners]
    incoming += [new_conf_change_single(id, ConfChangeType.AddLearnerNode) for id in cs.learners_next]
    return outgoing, incoming


def restore(tracker: ProgressTracker, next_idx: int, cs: ConfState) -> None:
    """Make `tracker` hold exactly the configuration `cs` (raises ConfChangeError)."""
    outgoing, incoming = _to_conf_change_single(cs)
    if not outgoing:
        for cc in incoming:
            cfg, changes = Changer(tracker).simple([cc])
            tracker.apply_conf(cfg, changes, next_idx)
        return
    for cc in outgoing:
        cfg, changes = Changer(tracker).simple([cc])
        tracker.apply_conf(cfg, changes, next_idx)
    cfg, changes = Changer(tracker).enter_joint(cs.auto_leave, incoming)
    tracker.apply_conf(cfg, changes, next_idx)
