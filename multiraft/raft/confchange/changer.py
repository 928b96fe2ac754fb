"""Configuration changes, simple and joint (raft-rs `confchange/changer.rs`)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..eraftpb import ConfChangeSingle, ConfChangeType
from ..errors import ConfChangeError

if TYPE_CHECKING:
    from ..tracker import Configuration, ProgressMap, ProgressTracker

__all__ = ["Changer", "MapChange", "MapChangeType"]


class MapChangeType(enum.Enum):
    Add = 0
    Remove = 1


MapChange = list[tuple[int, MapChangeType]]


class _IncrChangeMap:
    """The progress map as changed so far: the tracker's map plus an ordered list of
    additions and removals."""

    __slots__ = ("changes", "base")

    def __init__(self, base: ProgressMap) -> None:
        self.changes: MapChange = []
        self.base = base

    def contains(self, id: int) -> bool:
        for cid, ct in reversed(self.changes):
            if cid == id:
                return ct == MapChangeType.Add
        return id in self.base

    def add(self, id: int) -> None:
        self.changes.append((id, MapChangeType.Add))

    def remove(self, id: int) -> None:
        self.changes.append((id, MapChangeType.Remove))


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
        """Enter a joint configuration: the current voters become the outgoing half, the
        changes apply to the incoming half."""
        if _joint(self.tracker.conf):
            raise ConfChangeError("config is already joint")
        cfg, prs = self._check_and_copy()
        if not cfg.voters.incoming.voters:
            # Adding nodes to an empty config is allowed (bootstrap), but not joint.
            raise ConfChangeError("can't make a zero-voter config joint")
        cfg.voters.outgoing.voters = set(cfg.voters.incoming.voters)
        self._apply(cfg, prs, ccs)
        cfg.auto_leave = auto_leave
        _check_invariants(cfg, prs)
        return cfg, prs.changes

    def leave_joint(self) -> tuple[Configuration, MapChange]:
        """Leave the joint configuration: the outgoing half goes away, staged learners
        become learners, and peers in no remaining set are removed."""
        if not _joint(self.tracker.conf):
            raise ConfChangeError("can't leave a non-joint config")
        cfg, prs = self._check_and_copy()
        cfg.learners |= cfg.learners_next
        cfg.learners_next = set()
        for id in cfg.voters.outgoing.voters:
            if id not in cfg.voters.incoming.voters and id not in cfg.learners:
                prs.remove(id)
        cfg.voters.outgoing.voters = set()
        cfg.auto_leave = False
        _check_invariants(cfg, prs)
        return cfg, prs.changes

    def simple(self, ccs: Sequence[ConfChangeSingle]) -> tuple[Configuration, MapChange]:
        """Apply changes that alter at most one voter, without joint consensus."""
        if _joint(self.tracker.conf):
            raise ConfChangeError("can't apply simple config change in joint config")
        cfg, prs = self._check_and_copy()
        self._apply(cfg, prs, ccs)
        if len(cfg.voters.incoming.voters ^ self.tracker.conf.voters.incoming.voters) > 1:
            raise ConfChangeError("more than one voter changed without entering joint config")
        _check_invariants(cfg, prs)
        return cfg, prs.changes

    def _apply(self, cfg: Configuration, prs: _IncrChangeMap, ccs: Sequence[ConfChangeSingle]) -> None:
        for cc in ccs:
            if cc.node_id == 0:
                # A change the application decided not to apply.
                continue
            t = cc.change_type
            if t == ConfChangeType.AddNode:
                self._make_voter(cfg, prs, cc.node_id)
            elif t == ConfChangeType.AddLearnerNode:
                self._make_learner(cfg, prs, cc.node_id)
            elif t == ConfChangeType.RemoveNode:
                self._remove(cfg, prs, cc.node_id)
            else:
                raise ConfChangeError(f"unexpected conf change type {t}")
        if not cfg.voters.incoming.voters:
            raise ConfChangeError("removed all voters")

    def _make_voter(self, cfg: Configuration, prs: _IncrChangeMap, id: int) -> None:
        if not prs.contains(id):
            cfg.voters.incoming.voters.add(id)
            prs.add(id)
            return
        cfg.voters.incoming.voters.add(id)
        cfg.learners.discard(id)
        cfg.learners_next.discard(id)

    def _make_learner(self, cfg: Configuration, prs: _IncrChangeMap, id: int) -> None:
        if not prs.contains(id):
            cfg.learners.add(id)
            prs.add(id)
            return
        if id in cfg.learners:
            return
        # Remove any existing voter in the incoming config...
        self._remove(cfg, prs, id)
        # ...but keep its Progress.
        if prs.changes and prs.changes[-1] == (id, MapChangeType.Remove):
            prs.changes.pop()
        # A peer still voting in the outgoing config becomes a learner only when the joint
        # config is left (learners_next); otherwise right away.
        if id in cfg.voters.outgoing.voters:
            cfg.learners_next.add(id)
        else:
            cfg.learners.add(id)

    def _remove(self, cfg: Configuration, prs: _IncrChangeMap, id: int) -> None:
        if not prs.contains(id):
            return
        cfg.voters.incoming.voters.discard(id)
        cfg.learners.discard(id)
        cfg.learners_next.discard(id)
        # A peer still voting in the outgoing config keeps its Progress.
        if id not in cfg.voters.outgoing.voters:
            prs.remove(id)

    def _check_and_copy(self) -> tuple[Configuration, _IncrChangeMap]:
        prs = _IncrChangeMap(self.tracker.progress)
        _check_invariants(self.tracker.conf, prs)
        return self.tracker.conf.clone(), prs


def _check_invariants(cfg: Configuration, prs: _IncrChangeMap) -> None:
    """The empty config is allowed (bootstrap); any other must be consistent."""
    for id in cfg.voters.ids():
        if not prs.contains(id):
            raise ConfChangeError(f"no progress for voter {id}")
    for id in cfg.learners:
        if not prs.contains(id):
            raise ConfChangeError(f"no progress for learner {id}")
        # Learners and voters don't intersect at all.
        if id in cfg.voters.outgoing.voters:
            raise ConfChangeError(f"{id} is in learners and outgoing voters")
        if id in cfg.voters.incoming.voters:
            raise ConfChangeError(f"{id} is in learners and incoming voters")
    for id in cfg.learners_next:
        if not prs.contains(id):
            raise ConfChangeError(f"no progress for learner(next) {id}")
        # A staged learner was staged because it is a voter in the outgoing config.
        if id not in cfg.voters.outgoing.voters:
            raise ConfChangeError(f"{id} is in learners_next and not outgoing voters")
    if not _joint(cfg):
        if cfg.learners_next:
            raise ConfChangeError("learners_next must be empty when not joint")
        if cfg.auto_leave:
            raise ConfChangeError("auto_leave must be false when not joint")
