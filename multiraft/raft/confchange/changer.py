"""Configuration changes, simple and joint (raft-rs `confchange/changer.rs`).

The Changer validates a change against the tracker's configuration and returns the resulting
`Configuration` plus the progress additions/removals (`MapChange`) for
`ProgressTracker.apply_conf`; it never mutates the tracker, so a refused change leaves no
trace. Simple changes alter at most one voter (Raft thesis §4.1); anything else goes through a
joint configuration (thesis §4.3): `enter_joint` then `leave_joint`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..eraftpb import ConfChangeSingle, ConfChangeType
from ..errors import ConfChangeError

if TYPE_CHECKING:
    from ..tracker import Configuration, Progress, ProgressTracker

__all__ = ["Changer", "MapChange", "MapChangeType"]


class MapChangeType(enum.Enum):
    """What `ProgressTracker.apply_conf` does to one peer's Progress."""

    # Create a fresh Progress.
    Add = 0
    # Drop the Progress.
    Remove = 1


# The progress changes of one configuration change, applied in order.
MapChange = list[tuple[int, MapChangeType]]


class _IncrChangeMap:
    """The tracker's progress map as changed so far: the base map plus an ordered log of
    additions and removals (the last entry for an id wins)."""

    __slots__ = ("changes", "base")

    def __init__(self, base: Mapping[int, Progress]) -> None:
        self.changes: MapChange = []
        self.base = base

    def contains(self, id: int) -> bool:
        for cid, change in reversed(self.changes):
            if cid == id:
                return change == MapChangeType.Add
        return id in self.base


def _joint(cfg: Configuration) -> bool:
    return bool(cfg.voters.outgoing.voters)


class Changer:
    """Computes the configuration a change leads to; never mutates the tracker."""

    __slots__ = ("tracker",)

    def __init__(self, tracker: ProgressTracker) -> None:
        self.tracker = tracker

    def enter_joint(
        self, auto_leave: bool, ccs: Sequence[ConfChangeSingle]
    ) -> tuple[Configuration, MapChange]:
        """Enter a joint configuration: copy the incoming voters into the outgoing half, then
        apply `ccs` to the incoming half (C_old -> C_{old,new}).

        Raises ConfChangeError if already joint, if there are no voters to start from, if the
        change removes every incoming voter, or if the result breaks an invariant.
        """
        if _joint(self.tracker.conf):
            raise ConfChangeError("config is already joint")
        cfg, prs = self._check_and_copy()
        if not cfg.voters.incoming.voters:
            # Adding nodes to an empty config is allowed (bootstrap, tests), but not joint.
            raise ConfChangeError("can't make a zero-voter config joint")
        cfg.voters.outgoing.voters = set(cfg.voters.incoming.voters)
        self._apply(cfg, prs, ccs)
        cfg.auto_leave = auto_leave
        _check_invariants(cfg, prs)
        return cfg, prs.changes

    def leave_joint(self) -> tuple[Configuration, MapChange]:
        """Leave the joint configuration (C_{old,new} -> C_new): drop the outgoing half, turn
        the staged learners (learners_next) into learners, and remove the Progress of every
        outgoing voter that is neither an incoming voter nor a learner now."""
        if not _joint(self.tracker.conf):
            raise ConfChangeError("can't leave a non-joint config")
        cfg, prs = self._check_and_copy()
        cfg.learners |= cfg.learners_next
        cfg.learners_next = set()
        for id in sorted(cfg.voters.outgoing.voters):
            if id not in cfg.voters.incoming.voters and id not in cfg.learners:
                prs.changes.append((id, MapChangeType.Remove))
        cfg.voters.outgoing.voters = set()
        cfg.auto_leave = False
        _check_invariants(cfg, prs)
        return cfg, prs.changes

    def simple(self, ccs: Sequence[ConfChangeSingle]) -> tuple[Configuration, MapChange]:
        """Apply changes that, in aggregate, add or remove at most one voter, without joint
        consensus. Any number of learner changes may come with it."""
        if _joint(self.tracker.conf):
            raise ConfChangeError("can't apply simple config change in joint config")
        cfg, prs = self._check_and_copy()
        self._apply(cfg, prs, ccs)
        if len(cfg.voters.incoming.voters ^ self.tracker.conf.voters.incoming.voters) > 1:
            raise ConfChangeError("more than one voter changed without entering joint config")
        _check_invariants(cfg, prs)
        return cfg, prs.changes

    def _apply(
        self, cfg: Configuration, prs: _IncrChangeMap, ccs: Sequence[ConfChangeSingle]
    ) -> None:
        """Apply each change to the incoming half (the outgoing half is never edited)."""
        for cc in ccs:
            id = cc.node_id
            if id == 0:
                # The application zeroes the node id of a change it decided not to apply.
                continue
            t = cc.change_type
            if t == ConfChangeType.AddNode:
                self._make_voter(cfg, prs, id)
            elif t == ConfChangeType.AddLearnerNode:
                self._make_learner(cfg, prs, id)
            elif t == ConfChangeType.RemoveNode:
                self._remove(cfg, prs, id)
            else:
                raise ConfChangeError(f"unexpected conf change type {t}")
        if not cfg.voters.incoming.voters:
            raise ConfChangeError("removed all voters")

    @staticmethod
    def _make_voter(cfg: Configuration, prs: _IncrChangeMap, id: int) -> None:
        """Add or promote `id` as an incoming voter."""
        cfg.voters.incoming.voters.add(id)
        if not prs.contains(id):
            prs.changes.append((id, MapChangeType.Add))
            return
        cfg.learners.discard(id)
        cfg.learners_next.discard(id)

    @staticmethod
    def _make_learner(cfg: Configuration, prs: _IncrChangeMap, id: int) -> None:
        """Add `id` as a learner, or demote it, keeping its Progress. A voter of the outgoing
        half cannot be a learner too: it is staged in learners_next until the leave."""
        if not prs.contains(id):
            cfg.learners.add(id)
            prs.changes.append((id, MapChangeType.Add))
            return
        if id in cfg.learners:
            return
        cfg.voters.incoming.voters.discard(id)
        cfg.learners_next.discard(id)
        if id in cfg.voters.outgoing.voters:
            cfg.learners_next.add(id)
        else:
            cfg.learners.add(id)

    @staticmethod
    def _remove(cfg: Configuration, prs: _IncrChangeMap, id: int) -> None:
        """Remove `id` as an incoming voter or learner. Its Progress stays while it still
        votes in the outgoing half. Removing an unknown id is a no-op."""
        if not prs.contains(id):
            return
        cfg.voters.incoming.voters.discard(id)
        cfg.learners.discard(id)
        cfg.learners_next.discard(id)
        if id not in cfg.voters.outgoing.voters:
            prs.changes.append((id, MapChangeType.Remove))

    def _check_and_copy(self) -> tuple[Configuration, _IncrChangeMap]:
        """A copy of the tracker's configuration (checked) and an empty change log."""
        prs = _IncrChangeMap(self.tracker.progress)
        _check_invariants(self.tracker.conf, prs)
        return self.tracker.conf.clone(), prs


def _check_invariants(cfg: Configuration, prs: _IncrChangeMap) -> None:
    """The configuration and the (changed) progress map agree. The empty config passes, so
    that a first config can be built from nothing (bootstrap)."""
    for id in sorted(cfg.voters.ids()):
        if not prs.contains(id):
            raise ConfChangeError(f"no progress for voter {id}")
    for id in sorted(cfg.learners):
        if not prs.contains(id):
            raise ConfChangeError(f"no progress for learner {id}")
        if id in cfg.voters.outgoing.voters:
            raise ConfChangeError(f"{id} is in learners and outgoing voters")
        if id in cfg.voters.incoming.voters:
            raise ConfChangeError(f"{id} is in learners and incoming voters")
    for id in sorted(cfg.learners_next):
        if not prs.contains(id):
            raise ConfChangeError(f"no progress for learner(next) {id}")
        # A staged learner was staged because it is a voter of the outgoing half.
        if id not in cfg.voters.outgoing.voters:
            raise ConfChangeError(f"{id} is in learners_next and not outgoing voters")
    if not _joint(cfg):
        if cfg.learners_next:
            raise ConfChangeError("learners_next must be empty when not joint")
        if cfg.auto_leave:
            raise ConfChangeError("auto_leave must be false when not joint")
