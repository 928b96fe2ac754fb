"""Helpers over ConfChange / ConfChangeV2 (raft-rs `raft-proto` `ConfChangeI`, `enter_joint`,
`leave_joint`, `parse_conf_change`, `stringify_conf_change`)."""

from __future__ import annotations

from collections.abc import Iterable

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


def new_conf_change_single(node_id: int, change_type: ConfChangeType) -> ConfChangeSingle:
    """One change of one node."""
    return ConfChangeSingle(node_id=node_id, change_type=change_type)


def into_v2(cc: ConfChange | ConfChangeV2) -> ConfChangeV2:
    """A v1 change as the equivalent single-change ConfChangeV2 (transition Auto, same
    context); a ConfChangeV2 is returned as is (not copied)."""
    if isinstance(cc, ConfChangeV2):
        return cc
    v2 = ConfChangeV2(transition=ConfChangeTransition.Auto, context=cc.context)
    v2.changes.add(change_type=cc.change_type, node_id=cc.node_id)
    return v2


def as_v1(cc: ConfChange | ConfChangeV2) -> ConfChange | None:
    """The change itself if it is a v1 ConfChange (a v2 cannot be turned back)."""
    return cc if isinstance(cc, ConfChange) else None


def enter_joint(cc: ConfChangeV2) -> bool | None:
    """None if the change uses the simple protocol; otherwise it enters a joint config and the
    result says whether to leave it automatically.

    Joint consensus is used liberally: whenever the transition is not Auto or there is more
    than one change (some multi-change sets would be safe as simple changes, but which ones
    depends on the config they apply to). Auto and Implicit leave automatically, Explicit
    waits for the application to propose an empty ConfChangeV2.
    """
    if cc.transition != ConfChangeTransition.Auto or len(cc.changes) > 1:
        return cc.transition != ConfChangeTransition.Explicit
    return None


def leave_joint(cc: ConfChangeV2) -> bool:
    """Whether the change means "leave the joint config": Auto with no changes (the context
    may be set)."""
    return cc.transition == ConfChangeTransition.Auto and len(cc.changes) == 0


_TYPE_OF = {
    "v": ConfChangeType.AddNode,
    "l": ConfChangeType.AddLearnerNode,
    "r": ConfChangeType.RemoveNode,
}
_LETTER_OF = {t: c for c, t in _TYPE_OF.items()}


def parse_conf_change(s: str) -> list[ConfChangeSingle]:
    """Parse space-separated changes: `vN` makes N a voter, `lN` a learner, `rN` removes it.

    Raises ValueError on anything else (raft-rs has no UpdateNode, so etcd's `uN` is refused
    too).
    """
    ccs = []
    for tok in s.split():
        t = _TYPE_OF.get(tok[0])
        if len(tok) < 2 or t is None:
            raise ValueError(f"unknown token {tok}")
        digits = tok[1:]
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"parse token {tok} fail: not a node id")
        ccs.append(new_conf_change_single(int(digits), t))
    return ccs


def stringify_conf_change(ccs: Iterable[ConfChangeSingle]) -> str:
    """The inverse of parse_conf_change."""
    return " ".join(f"{_LETTER_OF[cc.change_type]}{cc.node_id}" for cc in ccs)
