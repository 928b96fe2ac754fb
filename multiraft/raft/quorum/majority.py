"""Majority quorums (raft-rs `quorum/majority.rs`)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["VoteResult", "Index", "AckedIndexer", "MajorityConfig"]


class VoteResult(enum.Enum):
    """The outcome of a vote."""

    # Pending: the vote may still be won or lost.
    Pending = 0
    # Lost: a quorum rejected.
    Lost = 1
    # Won: a quorum granted.
    Won = 2


@dataclass(slots=True)
class Index:
    """A voter's acknowledged index and its commit group (0 = none)."""

    index: int
    group_id: int = 0


class AckedIndexer(Protocol):
    def acked_index(self, voter_id: int) -> Index | None: ...


_NO_LIMIT = (1 << 64) - 1


class MajorityConfig:
    """A set of voters; a majority of them is a quorum."""

    __slots__ = ("voters",)

    def __init__(self, voters: Iterable[int] = ()) -> None:
        self.voters: set[int] = set(voters)

    def __contains__(self, id: object) -> bool:
        return id in self.voters

    def __iter__(self) -> Iterator[int]:
        return iter(self.voters)

    def __len__(self) -> int:
        return len(self.voters)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MajorityConfig) and self.voters == other.voters

    def __hash__(self) -> int:  # pragma: no cover - configs are mutable, never hashed
        raise TypeError("MajorityConfig is unhashable")

    def __repr__(self) -> str:
        return "(" + " ".join(str(v) for v in sorted(self.voters)) + ")"

    def ids(self) -> set[int]:
        return self.voters

    def clone(self) -> MajorityConfig:
        return MajorityConfig(self.voters)

    def committed_index(self, use_group_commit: bool, acked: AckedIndexer) -> tuple[int, bool]:
        """The largest index acknowledged by a quorum, and whether group commit decided it.

        An empty config commits everything (NO_LIMIT), so that a joint config with an empty
        half behaves like its other half. With group commit, the index must also be acked by
        voters of at least two commit groups (raft-rs): the largest index acked by a quorum is
        used only if the quorum spans two groups; otherwise the largest index acked by a
        member of a second group, capped by the quorum index.
        """
        n = len(self.voters)
        if n == 0:
            return _NO_LIMIT, True
        if not use_group_commit:
            # Fast path (every MsgAppendResponse): the quorum-th largest acked index.
            acked_idx = []
            for v in self.voters:
                a = acked.acked_index(v)
                acked_idx.append(a.index if a is not None else 0)
            acked_idx.sort(reverse=True)
            return acked_idx[n // 2], False
        matched = []
        for v in self.voters:
            a = acked.acked_index(v)
            matched.append(a if a is not None else Index(0, 0))
        matched.sort(key=lambda x: x.index, reverse=True)
        quorum_index = matched[n // 2].index
        checked_group = matched[n // 2].group_id
        single_group = True
        for m in matched:
            if m.group_id == 0:
                single_group = False
                continue
            if checked_group == 0:
                checked_group = m.group_id
                continue
            if checked_group == m.group_id:
                continue
            # The largest index acknowledged by voters of two different groups.
            return min(m.index, quorum_index), True
        if single_group:
            return quorum_index, False
        # Some voters have no group: be conservative.
        return matched[-1].index, False

    def vote_result(self, check: Callable[[int], bool | None]) -> VoteResult:
        """Won if a majority granted, Lost if a majority can no longer grant, else Pending.
        An empty config wins (by convention, so joint configs work)."""
        if not self.voters:
            return VoteResult.Won
        yes = missing = 0
        for v in self.voters:
            r = check(v)
            if r is None:
                missing += 1
            elif r:
                yes += 1
        q = len(self.voters) // 2 + 1
        if yes >= q:
            return VoteResult.Won
        if yes + missing >= q:
            return VoteResult.Pending
        return VoteResult.Lost
