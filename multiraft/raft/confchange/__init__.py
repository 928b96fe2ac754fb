"""Membership changes (raft-rs `confchange`): the Changer (simple and joint), restoring a
configuration from a ConfState, and the ConfChange/ConfChangeV2 helpers."""

from .changer import Changer, MapChange, MapChangeType
from .conf_change import (
    as_v1,
    enter_joint,
    into_v2,
    leave_joint,
    new_conf_change_single,
    parse_conf_change,
    stringify_conf_change,
)
from .restore import restore

__all__ = [
    "Changer",
    "MapChange",
    "MapChangeType",
    "as_v1",
    "enter_joint",
    "into_v2",
    "leave_joint",
    "new_conf_change_single",
    "parse_conf_change",
    "restore",
    "stringify_conf_change",
]
