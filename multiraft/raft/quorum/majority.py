"""Majority quorums (raft-rs `quorum/majority.rs`, etcd `quorum/majority.go`).

A `MajorityConfig` is a set of voter ids; any `len // 2 + 1` of them form a quorum. It answers
two questions: which log index a quorum has acknowledged (commit, Raft paper §5.3) and whether
a quorum granted a vote (election, §5.2).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

# NO_LIMIT (raft-rs `u64::MAX`) is what an empty config "commits", so that a joint config with
# one empty half behaves exactly like its other half.
from ..util import NO_LIMIT

__all__ = ["VoteResult", "Index", "AckedIndexer", "MajorityConfig"]


class VoteResult(enum.Enum):
    """The outcome of a vote, as far as it is known."""

    # The vote may still be won or lost: some voters have not answered.
    Pending = 0
    # A quorum can no longer grant the vote.
    Lost = 1
    # A quorum granted the vote.
    Won = 2


@dataclass(slots=True)
class Index:
    """What a voter acknowledged: the index it matched and its commit group (0 = none)."""

    index: int
    group_id: int = 0

    def __str__(self) -> str:
        return "∞" if self.index == NO_LIMIT else str(self.index)


class AckedIndexer(Protocol):
    """Where a quorum computation looks up each voter's acknowledged index."""

    def acked_index(self, voter_id: int) -> Index | None:
        """The voter's acknowledged index, or None if nothing is known about it (counted as
        index 0, group 0)."""
        ...


class MajorityConfig:
    """A set of voters that decides by simple majority.

    Invariant: `voters` holds ids only (no duplicates by construction; it is a set).
    """

    __slots__ = ("voters",)

    def __init__(self, voters: Iterable[int] = ()) -> None:
        # The voter ids. Mutable on purpose: the Changer edits copies of it.
        self.voters: set[int] = set(voters)

    def __contains__(self, id: object) -> bool:
        return id in self.voters

    def __iter__(self) -> Iterator[int]:
        return iter(self.voters)

    def __len__(self) -> int:
        return len(self.voters)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MajorityConfig):
            return NotImplemented
        return self.voters == other.voters

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __str__(self) -> str:
        """raft-rs/etcd spelling: the sorted ids in parentheses, e.g. "(1 2 3)"."""
        return "(" + " ".join(str(v) for v in sorted(self.voters)) + ")"

    __repr__ = __str__

    def ids(self) -> set[int]:
        """The voter ids (the live set, not a copy)."""
        return self.voters

    def slice(self) -> list[int]:
        """The voter ids, sorted (raft-rs `slice`)."""
        return sorted(self.voters)

    def clone(self) -> MajorityConfig:
        return MajorityConfig(self.voters)

    def committed_index(self, use_group_commit: bool, acked: AckedIndexer) -> tuple[int, bool]:
        """The largest index acknowledged by a quorum, and whether group commit decided it.

        An empty config returns `(NO_LIMIT, True)`. Without group commit the answer is the
        quorum-th largest acknowledged index (a voter with no entry counts as 0), flagged False.

        With group commit (raft-rs), an index also needs acknowledgements from two different
        commit groups: take the quorum index and the group of the voter holding it, then walk
        the voters from the highest index down; the first voter of another group caps the
        result at its own index (flag True). If every voter has a group and they all share one,
        the quorum index stands (flag False). If some voters have no group (0), fall back to the
        smallest acknowledged index (flag False), the conservative choice.
        """
        n = len(self.voters)
        if n == 0:
            return NO_LIMIT, True
        if not use_group_commit:
            idxs = []
            for v in self.voters:
                a = acked.acked_index(v)
                idxs.append(0 if a is None else a.index)
            idxs.sort()
            # The quorum-th largest of n values, n // 2 + 1 = q: ascending position n - q.
            return idxs[(n - 1) // 2], False
        matched = []
        # Sorted ids first, so that ties between equal indexes are broken deterministically.
        for v in sorted(self.voters):
            a = acked.acked_index(v)
            matched.append(Index(0, 0) if a is None else a)
        matched.sort(key=lambda x: x.index, reverse=True)
        quorum = matched[n // 2]
        quorum_index, checked_group = quorum.index, quorum.group_id
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
            return min(m.index, quorum_index), True
        if single_group:
            return quorum_index, False
        return matched[-1].index, False

    def vote_result(self, check: Callable[[int], bool | None]) -> VoteResult:
        """Won if a majority granted (`check(id)` is True), Lost if the granted ones plus the
        missing ones (`None`) cannot reach a majority, else Pending.

        An empty config wins by convention, so that a joint config with an empty half behaves
        like its other half.
        """
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

    def describe(self, acked: AckedIndexer) -> str:
        """A multi-line picture of the acknowledged indexes, for tests and debugging (after
        etcd's `Describe`): one row per voter in id order; the bar length is the rank of the
        voter's index (equal indexes get equal bars); `?` marks a voter with no entry.

        ```
               idx
        x>     100    (id=1)
        xx>    101    (id=2)
        >       99    (id=3)
        ```
        """
        n = len(self.voters)
        if n == 0:
            return "<empty majority quorum>"
        rows = [(v, acked.acked_index(v)) for v in sorted(self.voters)]
        # Rank by index (unknown ones lowest), ties by id.
        ranked = sorted(rows, key=lambda r: (-1 if r[1] is None else r[1].index, r[0]))
        bars: dict[int, int] = {}
        prev: int | None = None
        for i, (v, a) in enumerate(ranked):
            key = -1 if a is None else a.index
            bars[v] = bars[ranked[i - 1][0]] if i > 0 and key == prev else i
            prev = key
        lines = [" " * n + "    idx"]
        for v, a in rows:
            if a is None:
                lines.append("?" + " " * n + f" {0:>5}    (id={v})")
            else:
                bar = bars[v]
                lines.append("x" * bar + ">" + " " * (n - bar) + f" {str(a):>5}    (id={v})")
        return "\n".join(lines)
