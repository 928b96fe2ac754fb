"""Test support: the deterministic cluster simulator (`SimCluster`), the raft-rs-style
`Network` harness, the randomized raft safety simulator and a linearizability checker."""

from .cluster import OpFailed, SimCluster, SimOp
from .linearizability import KvOp, check_history
from .simnet import LinkFaults, SimLoop, SimNetwork

__all__ = ["SimCluster", "SimOp", "OpFailed", "LinkFaults", "SimLoop", "SimNetwork", "KvOp", "check_history"]
