"""Replication progress of every peer, and the active configuration (raft-rs `tracker`)."""

from .inflights import Inflights
from .progress import Progress
from .state import ProgressState
from .tracker import Configuration, ProgressMap, ProgressTracker

__all__ = [
    "Configuration",
    "Inflights",
    "Progress",
    "ProgressMap",
    "ProgressState",
    "ProgressTracker",
]
