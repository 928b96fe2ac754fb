"""Joint quorums (raft-rs `quorum/joint.rs`, etcd `quorum/joint.go`).

During joint consensus (Raft thesis §4.3, C_{old,new}) every decision needs a majority of the
incoming config AND a majority of the outgoing one. Outside of it the outgoing half is empty,
and an empty majority config agrees with everything (commits NO_LIMIT, wins every vote), so
the joint config then behaves exactly like its incoming half.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .majority import AckedIndexer, MajorityConfig, VoteResult

__all__ = ["JointConfig"]


class JointConfig:
    """Two majority configs: `incoming` (C_new) and `outgoing` (C_old).

    Invariant: `outgoing` is empty unless the configuration is joint.
    """

    __slots__ = ("incoming", "outgoing")

    def __init__(self, voters: Iterable[int] = (), outgoing: Iterable[int] = ()) -> None:
        # The config being moved to; the only one outside of joint consensus.
        self.incoming = MajorityConfig(voters)
        # The config being left; empty outside of joint consensus.
        self.outgoing = MajorityConfig(outgoing)

    @classmethod
    def new_joint_from_majorities(
        cls, incoming: MajorityConfig, outgoing: MajorityConfig
    ) -> JointConfig:
        """A joint config from two majority configs (copied)."""
        return cls(incoming.voters, outgoing.voters)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JointConfig):
            return NotImplemented
        return self.incoming == other.incoming and self.outgoing == other.outgoing

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __str__(self) -> str:
        """Joint: "(1 2 3)&&(1 2)"; otherwise "(1 2 3)"."""
        if self.outgoing.voters:
            return f"{self.incoming}&&{self.outgoing}"
        return str(self.incoming)

    __repr__ = __str__

    def clone(self) -> JointConfig:
        return JointConfig(self.incoming.voters, self.outgoing.voters)

    def committed_index(self, use_group_commit: bool, acked: AckedIndexer) -> tuple[int, bool]:
        """The largest index committed under both halves: the smaller of the two, with the
        group-commit flag of the half it came from."""
        i_idx, i_gc = self.incoming.committed_index(use_group_commit, acked)
        o_idx, o_gc = self.outgoing.committed_index(use_group_commit, acked)
        if i_idx < o_idx:
            return i_idx, i_gc
        return o_idx, o_gc

    def vote_result(self, check: Callable[[int], bool | None]) -> VoteResult:
        """Won if both halves won, Lost if either lost, Pending otherwise."""
        i = self.incoming.vote_result(check)
        o = self.outgoing.vote_result(check)
        if i == VoteResult.Won and o == VoteResult.Won:
            return VoteResult.Won
        if i == VoteResult.Lost or o == VoteResult.Lost:
            return VoteResult.Lost
        return VoteResult.Pending

    def clear(self) -> None:
        """Drop every voter of both halves."""
        self.incoming.voters.clear()
        self.outgoing.voters.clear()

    def is_singleton(self) -> bool:
        """Exactly one voter and not joint (a one-node cluster decides alone)."""
        return not self.outgoing.voters and len(self.incoming.voters) == 1

    def ids(self) -> set[int]:
        """Every voter of either half (a new set)."""
        return self.incoming.voters | self.outgoing.voters

    def contains(self, id: int) -> bool:
        """Whether `id` votes in either half."""
        return id in self.incoming.voters or id in self.outgoing.voters

    def describe(self, acked: AckedIndexer) -> str:
        """`MajorityConfig.describe` over the union of both halves."""
        return MajorityConfig(self.ids()).describe(acked)
