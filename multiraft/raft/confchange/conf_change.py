"""Helpers over ConfChange / ConfChangeV2 (raft-rs `ConfChangeI` and friends)."""

from __future__ import annotations

from ..eraftpb import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
)

__all__ = [
    "into_v2",
    "as_v1",
    "enter_joint",
    "leave_joint",
    "new_conf_change_single",
    "parse_conf_change",
    "stringify_conf_change",
]


def new_conf_change_single(node_id: int, change_type: int) -> ConfChangeSingle:
    return ConfChangeSingle(node_id=node_id, change_type=change_type)  # type: ignore[arg-type]


def into_v2(cc: ConfChange | ConfChangeV2) -> ConfChangeV2:
    """A v1 change as the equivalent single-change ConfChangeV2 (v2 is returned as is)."""
    if isinstance(cc, ConfChangeV2):
        return cc
    v2 = ConfChangeV2(context=cc.context)
    v2.changes.add(change_type=cc.change_type, node_id=cc.node_id)
    return v2


def as_v1(cc: ConfChange | ConfChangeV2) -> ConfChange | None:
    return cc if isinstance(cc, ConfChange) else None


def enter_joint(cc: ConfChangeV2) -> bool | None:
    """Whether the change needs joint consensus, and if so whether to leave it automatically
    (None = the simple protocol). Joint consensus is used liberally: whenever the transition is
    not Auto or there is more than one change."""
    if cc.transition != ConfChangeTransition.Auto or len(cc.changes) > 1:
        return cc.transition != ConfChangeTransition.Explicit
    return None


def leave_joint(cc: ConfChangeV2) -> bool:
    """An empty Auto change means "leave the joint configuration"."""
    return cc.transition == ConfChangeTransition.Auto and len(cc.changes) == 0


_LETTERS = {
    "v": ConfChangeType.AddNode,
    "l": ConfChangeType.AddLearnerNode,
    "r": ConfChangeType.RemoveNode,
}


def parse_conf_change(s: str) -> list[ConfChangeSingle]:
    """Parse "v1 l2 r3" (v = voter, l = learner, r = remove) into single changes."""
    ccs = []
    for tok in s.split():
        if len(tok) < 2 or tok[0] not in _LETTERS:
            raise ValueError(f"unknown conf change token {tok!r}")
        ccs.append(new_conf_change_single(int(tok[1:]), _LETTERS[tok[0]]))
    return ccs


def stringify_conf_change(ccs: list[ConfChangeSingle]) -> str:
    rev = {v: k for k, v in _LETTERS.items()}
    return " ".join(f"{rev[cc.change_type]}{cc.node_id}" for cc in ccs)
