"""Joint quorums: the union of an incoming and an outgoing majority config during joint
consensus (raft-rs `quorum/joint.rs`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .majority import AckedIndexer, MajorityConfig, VoteResult

__all__ = ["JointConfig"]


class JointConfig:
    """Decisions require a majority of `incoming` AND, while joint, of `outgoing`.

    Invariant: `outgoing` is empty unless the configuration is joint.
    """

    __slots__ = ("incoming", "outgoing")

    def __init__(self, voters: Iterable[int] = (), outgoing: Iterable[int] = ()) -> None:
        self.incoming = MajorityConfig(voters)
        self.outgoing = MajorityConfig(outgoing)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, JointConfig)
            and self.incoming == other.incoming
            and self.outgoing == other.outgoing
        )

    def __hash__(self) -> int:  # pragma: no cover
        raise TypeError("JointConfig is unhashable")

    def __repr__(self) -> str:
        if self.outgoing.voters:
            return f"{self.incoming!r}&&{self.outgoing!r}"
        return repr(self.incoming)

    def clone(self) -> JointConfig:
        return JointConfig(self.incoming.voters, self.outgoing.voters)

    def committed_index(self, use_group_commit: bool, acked: AckedIndexer) -> tuple[int, bool]:
        """The largest index committed under both halves."""
        i_idx, i_gc = self.incoming.committed_index(use_group_commit, acked)
        o_idx, o_gc = self.outgoing.committed_index(use_group_commit, acked)
        if i_idx < o_idx:
            return i_idx, i_gc
        return o_idx, o_gc

    def vote_result(self, check: Callable[[int], bool | None]) -> VoteResult:
        """Won only if both halves won; Lost if either lost."""
        i = self.incoming.vote_result(check)
        o = self.outgoing.vote_result(check)
        if i == o:
            return i
        if i == VoteResult.Lost or o == VoteResult.Lost:
            return VoteResult.Lost
        return VoteResult.Pending

    def clear(self) -> None:
        self.incoming.voters.clear()
        self.outgoing.voters.clear()

    def is_singleton(self) -> bool:
        """A single voter and no outgoing config."""
        return not self.outgoing.voters and len(self.incoming.voters) == 1

    def ids(self) -> set[int]:
        return self.incoming.voters | self.outgoing.voters

    def contains(self, id: int) -> bool:
        return id in self.incoming.voters or id in self.outgoing.voters
