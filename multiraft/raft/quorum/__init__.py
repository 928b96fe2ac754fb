"""Quorum arithmetic: majority and joint configurations, commit indexes and vote results."""

from .joint import JointConfig
from .majority import AckedIndexer, Index, MajorityConfig, VoteResult

__all__ = ["AckedIndexer", "Index", "JointConfig", "MajorityConfig", "VoteResult"]
