"""Membership changes: the Changer (simple and joint) and restore from a ConfState."""

from .changer import Changer, MapChange, MapChangeType
from .restore import restore

__all__ = ["Changer", "MapChange", "MapChangeType", "restore"]
