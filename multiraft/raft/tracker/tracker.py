"""The configuration and the progress of every peer (raft-rs `tracker.rs`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ..eraftpb import ConfState
from ..quorum import Index, JointConfig, VoteResult
from .progress import Progress

if TYPE_CHECKING:
    from ..confchange.changer import MapChange

__all__ = ["Configuration", "ProgressTracker", "ProgressMap"]

ProgressMap = dict[int, Progress]


class Configuration:
    """The active configuration: voters (possibly joint), learners, and the learners that
    join once the joint configuration is left.

    Invariant: voters and learners do not overlap.
    Invariant: learners_next is a subset of the outgoing voters, and empty unless joint.
    Invariant: auto_leave is only set while joint.
    """

    __slots__ = ("voters", "learners", "learners_next", "auto_leave")

    def __init__(self, voters: Iterable[int] = (), learners: Iterable[int] = ()) -> None:
        self.voters = JointConfig(voters)
        self.learners: set[int] = set(learners)
        self.learners_next: set[int] = set()
        self.auto_leave = False

    def clone(self) -> Configuration:
        c = Configuration()
        c.voters = self.voters.clone()
        c.learners = set(self.learners)
        c.learners_next = set(self.learners_next)
        c.auto_leave = self.auto_leave
        return c

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Configuration)
            and self.voters == other.voters
            and self.learners == other.learners
            and self.learners_next == other.learners_next
            and self.auto_leave == other.auto_leave
        )

    def __hash__(self) -> int:  # pragma: no cover
        raise TypeError("Configuration is unhashable")

    def __str__(self) -> str:
        s = f"voters={self.voters!r}"
        if self.learners:
            s += " learners=(" + " ".join(str(i) for i in sorted(self.learners)) + ")"
        if self.learners_next:
            s += " learners_next=(" + " ".join(str(i) for i in sorted(self.learners_next)) + ")"
        if self.auto_leave:
            s += " autoleave"
        return s

    __repr__ = __str__

    def to_conf_state(self) -> ConfState:
        return ConfState(
            voters=sorted(self.voters.incoming.voters),
            voters_outgoing=sorted(self.voters.outgoing.voters),
            learners=sorted(self.learners),
            learners_next=sorted(self.learners_next),
            auto_leave=self.auto_leave,
        )


class ProgressTracker:
    """The configuration plus the Progress of every voter and learner, and the votes of the
    current election."""

    __slots__ = ("conf", "progress", "votes", "max_inflight", "_group_commit")

    def __init__(self, max_inflight: int) -> None:
        self.conf = Configuration()
        # Invariant: the keys are exactly conf's voters (both halves) and learners.
        self.progress: ProgressMap = {}
        # Votes of the current election: id -> granted.
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight
        self._group_commit = False

    def __call__(self) -> ProgressTracker:
        """raft-rs spells the tracker `raft.prs()`: calling it returns itself, so both
        `raft.prs()` and `raft.prs` work."""
        return self

    @classmethod
    def with_capacity(cls, voters: int, learners: int, max_inflight: int) -> ProgressTracker:
        return cls(max_inflight)

    # -- AckedIndexer over the progress map ---------------------------------------------

    def acked_index(self, voter_id: int) -> Index | None:
        pr = self.progress.get(voter_id)
        if pr is None:
            return None
        return Index(pr.matched, pr.commit_group_id)

    # -- queries --------------------------------------------------------------------------

    def get(self, id: int) -> Progress | None:
        return self.progress.get(id)

    def iter(self) -> Iterator[tuple[int, Progress]]:
        return iter(self.progress.items())

    def conf_state(self) -> ConfState:
        return self.conf.to_conf_state()

    def is_singleton(self) -> bool:
        return self.conf.voters.is_singleton()

    def voter_ids(self) -> set[int]:
        return self.conf.voters.ids()

    def learner_ids(self) -> set[int]:
        return self.conf.learners | self.conf.learners_next

    def enable_group_commit(self, enable: bool) -> None:
        self._group_commit = enable

    def group_commit(self) -> bool:
        return self._group_commit

    def maximal_committed_index(self) -> tuple[int, bool]:
        """The largest index acknowledged by a quorum of the (joint) configuration."""
        voters = self.conf.voters
        if not self._group_commit and not voters.outgoing.voters:
            # Fast path: a simple majority, on every MsgAppendResponse.
            incoming = voters.incoming.voters
            n = len(incoming)
            if n == 0:
                return (1 << 64) - 1, True
            progress = self.progress
            matched = sorted(
                (progress[v].matched if v in progress else 0 for v in incoming), reverse=True
            )
            return matched[n // 2], False
        return voters.committed_index(self._group_commit, self)

    def quorum_recently_active(self, perspective_of: int) -> bool:
        """Whether a quorum was active since the last check (check_quorum); resets the
        activity flags of everyone but `perspective_of` (which is always active)."""
        active: set[int] = set()
        for id, pr in self.progress.items():
            if id == perspective_of:
                pr.recent_active = True
                active.add(id)
            elif pr.recent_active:
                active.add(id)
                pr.recent_active = False
        return self.has_quorum(active)

    def has_quorum(self, potential_quorum: set[int]) -> bool:
        return self.conf.voters.vote_result(lambda id: True if id in potential_quorum else None) == VoteResult.Won

    # -- votes ----------------------------------------------------------------------------

    def reset_votes(self) -> None:
        self.votes.clear()

    def record_vote(self, id: int, vote: bool) -> None:
        """Record a vote; the first one of a peer counts."""
        self.votes.setdefault(id, vote)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """(granted, rejected, result) counting only current voters."""
        granted = rejected = 0
        voters = self.conf.voters
        for id, vote in self.votes.items():
            if not voters.contains(id):
                continue
            if vote:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, voters.vote_result(self.votes.get)

    # -- configuration --------------------------------------------------------------------

    def apply_conf(self, conf: Configuration, changes: MapChange, next_idx: int) -> None:
        """Switch to `conf`, adding and removing peers' progress as `changes` says."""
        from ..confchange.changer import MapChangeType

        self.conf = conf
        for id, change in changes:
            if change == MapChangeType.Add:
                pr = Progress(next_idx, self.max_inflight)
                # A new peer counts as recently active, so that check_quorum does not step the
                # leader down before the peer had a chance to answer.
                pr.recent_active = True
                self.progress[id] = pr
            else:
                self.progress.pop(id, None)
