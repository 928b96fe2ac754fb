"""Raft configuration (raft-rs `config.rs`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigInvalid
from .read_only import ReadOnlyOption
from .util import INVALID_ID, NO_LIMIT

__all__ = ["Config"]

HEARTBEAT_TICK = 2


@dataclass
class Config:
    """The parameters of one raft node. Defaults are raft-rs's."""

    # The identity of the local raft. It cannot be 0, and must be unique in the group.
    id: int = 0
    # The number of node.tick invocations that must pass between elections: a follower that
    # hears nothing from a leader for this long starts an election.
    election_tick: int = HEARTBEAT_TICK * 10
    # The number of node.tick invocations that must pass between heartbeats.
    heartbeat_tick: int = HEARTBEAT_TICK
    # The last applied index, given when restarting. Entries at or below it are not returned
    # again in committed entries.
    applied: int = 0
    # Limits the max size of each append message (0 = one entry per message, NO_LIMIT = all).
    max_size_per_msg: int = 0
    # Limits the max number of in-flight append messages during optimistic replication.
    max_inflight_msgs: int = 256
    # The leader steps down when it does not hear from a quorum for an election timeout.
    check_quorum: bool = False
    # Enables the Pre-Vote algorithm (Raft thesis §9.6).
    pre_vote: bool = False
    # The range of the randomized election timeout: [min_election_tick, max_election_tick).
    # 0 means election_tick and 2 * election_tick.
    min_election_tick: int = 0
    max_election_tick: int = 0
    # How read-only requests are confirmed (LeaseBased requires check_quorum).
    read_only_option: ReadOnlyOption = ReadOnlyOption.Safe
    # Don't broadcast an empty raft entry to notify follower to commit an entry.
    skip_bcast_commit: bool = False
    # Batches every append msg if any append msg already exists.
    batch_append: bool = False
    # The election priority of this node.
    priority: int = 0
    # Max size for uncommitted entries on the leader (entry data bytes).
    max_uncommitted_size: int = NO_LIMIT
    # Max size of committed entries in one Ready / LightReady.
    max_committed_size_per_ready: int = NO_LIMIT
    # Bootstrap voters, used only when the storage holds no configuration yet.
    peers: list[int] = field(default_factory=list)
    # Bootstrap learners, used only when the storage holds no configuration yet.
    learners: list[int] = field(default_factory=list)

    @classmethod
    def new(cls, id: int) -> Config:
        return cls(id=id)

    def min_election_timeout(self) -> int:
        """The effective lower bound of the randomized election timeout."""
        return self.election_tick if self.min_election_tick == 0 else self.min_election_tick

    def max_election_timeout(self) -> int:
        """The effective upper bound (exclusive) of the randomized election timeout."""
        return 2 * self.election_tick if self.max_election_tick == 0 else self.max_election_tick

    def validate(self) -> None:
        """Raise `ConfigInvalid` if the configuration cannot work."""
        if self.id == INVALID_ID:
            raise ConfigInvalid("invalid node id")
        if self.heartbeat_tick <= 0:
            raise ConfigInvalid("heartbeat tick must greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigInvalid("election tick must be greater than heartbeat tick")
        min_timeout = self.min_election_timeout()
        max_timeout = self.max_election_timeout()
        if min_timeout < self.election_tick:
            raise ConfigInvalid(
                f"min election tick {min_timeout} must not be less than election_tick "
                f"{self.election_tick}"
            )
        if min_timeout >= max_timeout:
            raise ConfigInvalid(
                f"min election tick {min_timeout} should be less than max election tick "
                f"{max_timeout}"
            )
        if self.max_inflight_msgs <= 0:
            raise ConfigInvalid("max inflight messages must be greater than 0")
        if self.read_only_option == ReadOnlyOption.LeaseBased and not self.check_quorum:
            raise ConfigInvalid("read_only_option == LeaseBased requires check_quorum == true")
        if self.max_uncommitted_size < self.max_size_per_msg:
            raise ConfigInvalid("max uncommitted size should greater than max_size_per_msg")
        if self.max_size_per_msg < 0 or self.max_committed_size_per_ready < 0 or self.applied < 0:
            raise ConfigInvalid("sizes and indexes must not be negative")
        overlap = set(self.peers) & set(self.learners)
        if overlap:
            raise ConfigInvalid(f"nodes {sorted(overlap)} are both voters and learners")
        if INVALID_ID in self.peers or INVALID_ID in self.learners:
            raise ConfigInvalid("peer id 0 is invalid")
