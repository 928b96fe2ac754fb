"""Rebuild a tracker's configuration from a ConfState (raft-rs `confchange/restore.rs`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..eraftpb import ConfChangeSingle, ConfChangeType, ConfState
from .changer import Changer, MapChangeType
from .conf_change import new_conf_change_single

if TYPE_CHECKING:
    from ..tracker import ProgressTracker

__all__ = ["restore", "to_conf_change_single"]


def to_conf_change_single(cs: ConfState) -> tuple[list[ConfChangeSingle], list[ConfChangeSingle]]:
    """The changes that build `cs` from an empty config, as (outgoing, incoming).

    `outgoing` adds the outgoing voters one by one (simple changes), giving the config that
    existed before the joint one. `incoming`, applied with enter_joint, removes them again,
    then adds the incoming voters, the learners and the staged learners (an outgoing voter
    made a learner lands in learners_next). Without outgoing voters, `incoming` is applied one
    simple change at a time.

    Example: voters=(1 2 3) learners=(5) voters_outgoing=(1 2 4 6) learners_next=(4) gives
    outgoing = v1 v2 v4 v6 and incoming = r1 r2 r4 r6 v1 v2 v3 l5 l4, hence
    voters=(1 2 3)&&(1 2 4 6) learners=(5) learners_next=(4). Whether 5 was a learner before
    the joint config cannot be told, and does not matter.
    """
    outgoing = [new_conf_change_single(id, ConfChangeType.AddNode) for id in cs.voters_outgoing]
    incoming = [new_conf_change_single(id, ConfChangeType.RemoveNode) for id in cs.voters_outgoing]
    incoming += [new_conf_change_single(id, ConfChangeType.AddNode) for id in cs.voters]
    incoming += [new_conf_change_single(id, ConfChangeType.AddLearnerNode) for id in cs.learners]
    incoming += [
        new_conf_change_single(id, ConfChangeType.AddLearnerNode) for id in cs.learners_next
    ]
    return outgoing, incoming


def restore(tracker: ProgressTracker, next_idx: int, cs: ConfState) -> None:
    """Make `tracker` (which must hold the empty config) hold exactly `cs`; new peers start
    at `next_idx`. Raises ConfChangeError if `cs` is not a valid configuration; the tracker
    may then hold part of it."""
    if _restore_simple(tracker, next_idx, cs):
        return
    outgoing, incoming = to_conf_change_single(cs)
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


def _restore_simple(tracker: ProgressTracker, next_idx: int, cs: ConfState) -> bool:
    """The common case in one step: no joint config, distinct voters and learners, an empty
    tracker. Adding them one simple change at a time (as `restore` does otherwise) reaches
    the same configuration and progress map; this skips the copy and check of each step (a
    store opening 100,000 regions restores 100,000 configurations). False: not this case."""
    if cs.voters_outgoing or cs.learners_next or not cs.voters or tracker.progress:
        return False
    voters, learners = list(cs.voters), list(cs.learners)
    ids = voters + learners
    if len(set(ids)) != len(ids):
        return False
    cfg = tracker.conf.clone()
    cfg.voters.incoming.voters = set(voters)
    cfg.learners = set(learners)
    tracker.apply_conf(cfg, [(id, MapChangeType.Add) for id in ids], next_idx)
    return True
