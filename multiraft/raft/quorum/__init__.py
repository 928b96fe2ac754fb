"""Quorum arithmetic (raft-rs `quorum`): majority and joint configurations, the index a quorum
acknowledged (commit) and the outcome of a vote."""

from .joint import JointConfig
from .majority import AckedIndexer, Index, MajorityConfig, VoteResult

__all__ = ["AckedIndexer", "Index", "JointConfig", "MajorityConfig", "VoteResult"]
