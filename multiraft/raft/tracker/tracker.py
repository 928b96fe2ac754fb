"""The active configuration and every peer's Progress (raft-rs `tracker.rs`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..confchange.changer import MapChange, MapChangeType
from ..eraftpb import ConfState
from ..quorum import Index, JointConfig, VoteResult
from ..util import NO_LIMIT
from .progress import Progress

__all__ = ["Configuration", "ProgressTracker", "ProgressMap"]

ProgressMap = dict[int, Progress]


class Configuration:
    """Voters (possibly joint), learners, and the learners to be once the joint config is left.

    Invariant: learners and voters (either half) do not intersect.
    Invariant: learners_next is a subset of voters.outgoing (a voter demoted while joint
               stays a voter of the outgoing half until the leave), hence empty unless joint.
    Invariant: auto_leave is False unless joint.
    """

    __slots__ = ("voters", "learners", "learners_next", "auto_leave")

    def __init__(self, voters: Iterable[int] = (), learners: Iterable[int] = ()) -> None:
        # The voters: `incoming` always, `outgoing` too while joint.
        self.voters = JointConfig(voters)
        # Non-voting members that receive the log.
        self.learners: set[int] = set(learners)
        # Outgoing voters that become learners when the joint config is left.
        self.learners_next: set[int] = set()
        # Whether the leader leaves the joint config by itself once it is applied
        # (ConfChangeTransition Auto/Implicit) rather than waiting for the app (Explicit).
        self.auto_leave = False

    def clone(self) -> Configuration:
        """A deep copy."""
        c = Configuration()
        c.voters = self.voters.clone()
        c.learners = set(self.learners)
        c.learners_next = set(self.learners_next)
        c.auto_leave = self.auto_leave
        return c

    def clear(self) -> None:
        self.voters.clear()
        self.learners.clear()
        self.learners_next.clear()
        self.auto_leave = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Configuration):
            return NotImplemented
        return (
            self.voters == other.voters
            and self.learners == other.learners
            and self.learners_next == other.learners_next
            and self.auto_leave == other.auto_leave
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __str__(self) -> str:
        """raft-rs/etcd spelling: "voters=(1 2)&&(1) learners=(3) learners_next=(4) autoleave"."""
        s = f"voters={self.voters}"
        if self.learners:
            s += " learners=(" + " ".join(str(i) for i in sorted(self.learners)) + ")"
        if self.learners_next:
            s += " learners_next=(" + " ".join(str(i) for i in sorted(self.learners_next)) + ")"
        if self.auto_leave:
            s += " autoleave"
        return s

    __repr__ = __str__

    def to_conf_state(self) -> ConfState:
        """The configuration as a ConfState, every id list sorted (raft-rs does not sort;
        sorting makes ConfStates comparable with ==)."""
        return ConfState(
            voters=sorted(self.voters.incoming.voters),
            voters_outgoing=sorted(self.voters.outgoing.voters),
            learners=sorted(self.learners),
            learners_next=sorted(self.learners_next),
            auto_leave=self.auto_leave,
        )


class ProgressTracker:
    """The configuration, the Progress of every voter and learner, and the votes of the
    current election. It is also the `AckedIndexer` over the progress map (matched index and
    commit group of each voter).

    Invariant: progress has an entry for exactly the ids of conf.voters (both halves),
               conf.learners and conf.learners_next (the Changer + apply_conf keep it so).
    """

    __slots__ = ("conf", "progress", "votes", "max_inflight", "_group_commit")

    def __init__(self, max_inflight: int) -> None:
        self.conf = Configuration()
        self.progress: ProgressMap = {}
        # The votes of the current election: id -> granted. The first vote of a peer counts.
        self.votes: dict[int, bool] = {}
        # The Inflights capacity of every Progress created by apply_conf.
        self.max_inflight = max_inflight
        # Whether committing needs acknowledgements from two commit groups.
        self._group_commit = False

    @classmethod
    def with_capacity(cls, voters: int, learners: int, max_inflight: int) -> ProgressTracker:
        """raft-rs's constructor with reserved sizes (Python sets and dicts need none)."""
        return cls(max_inflight)

    def __call__(self) -> ProgressTracker:
        """raft-rs spells the tracker `raft.prs()`; calling it returns itself, so that both
        `raft.prs()` and `raft.prs` work."""
        return self

    def __repr__(self) -> str:
        prs = ", ".join(f"{id}: {pr!r}" for id, pr in sorted(self.progress.items()))
        return f"ProgressTracker({self.conf}; {prs})"

    # -- AckedIndexer ------------------------------------------------------------------------

    def acked_index(self, voter_id: int) -> Index | None:
        """The voter's matched index and commit group, None if it has no Progress."""
        pr = self.progress.get(voter_id)
        if pr is None:
            return None
        return Index(pr.matched, pr.commit_group_id)

    # -- queries -----------------------------------------------------------------------------

    def get(self, id: int) -> Progress | None:
        return self.progress.get(id)

    def iter(self) -> Iterator[tuple[int, Progress]]:
        """(id, Progress) of every voter and learner. Never count quorums with it: use
        has_quorum (the configuration may be joint)."""
        return iter(self.progress.items())

    def conf_state(self) -> ConfState:
        return self.conf.to_conf_state()

    def is_singleton(self) -> bool:
        """Exactly one voter, not joint."""
        return self.conf.voters.is_singleton()

    def voter_ids(self) -> set[int]:
        """Voters of either half (a new set)."""
        return self.conf.voters.ids()

    def learner_ids(self) -> set[int]:
        """Learners and staged learners (a new set)."""
        return self.conf.learners | self.conf.learners_next

    def enable_group_commit(self, enable: bool) -> None:
        self._group_commit = enable

    def group_commit(self) -> bool:
        return self._group_commit

    def clear(self) -> None:
        """Forget the configuration, the progress and the votes."""
        self.progress.clear()
        self.conf.clear()
        self.votes.clear()

    def maximal_committed_index(self) -> tuple[int, bool]:
        """The largest index a quorum of the (joint) configuration acknowledged, and whether
        group commit decided it (see MajorityConfig.committed_index).

        Called on every MsgAppendResponse: a simple majority without group commit takes a
        fast path over the progress map, without the AckedIndexer indirection.
        """
        voters = self.conf.voters
        if self._group_commit or voters.outgoing.voters:
            return voters.committed_index(self._group_commit, self)
        incoming = voters.incoming.voters
        n = len(incoming)
        progress = self.progress
        if n == 1:
            for v in incoming:
                pr = progress.get(v)
                return (0 if pr is None else pr.matched), False
        if n == 0:
            return NO_LIMIT, True
        try:
            matched = [progress[v].matched for v in incoming]
        except KeyError:
            # Only reachable if the progress invariant is broken from outside (tests).
            matched = [pr.matched if (pr := progress.get(v)) else 0 for v in incoming]
        matched.sort()
        return matched[(n - 1) // 2], False

    def quorum_recently_active(self, perspective_of: int) -> bool:
        """Whether a quorum was heard from since the last call (check_quorum, Raft thesis
        §6.2). `perspective_of` (the leader) always counts as active; every other peer's
        `recent_active` is reset to False for the next round."""
        active: set[int] = set()
        for id, pr in self.progress.items():
            if id == perspective_of:
                pr.recent_active = True
                active.add(id)
            elif pr.recent_active:
                # Learners may be added too: quorums are counted by voter id, not by size.
                active.add(id)
                pr.recent_active = False
        return self.has_quorum(active)

    def has_quorum(self, potential_quorum: set[int]) -> bool:
        """Whether `potential_quorum` contains a quorum of the (joint) configuration."""
        return (
            self.conf.voters.vote_result(lambda id: True if id in potential_quorum else None)
            == VoteResult.Won
        )

    # -- votes -------------------------------------------------------------------------------

    def reset_votes(self) -> None:
        """Prepare for a new election."""
        self.votes.clear()

    def record_vote(self, id: int, vote: bool) -> None:
        """Record `id`'s vote; a later vote of the same peer is ignored."""
        self.votes.setdefault(id, vote)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """(granted, rejected, result), counting only current voters."""
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

    def vote_result(self, votes: dict[int, bool]) -> VoteResult:
        """The outcome of `votes` under the current configuration."""
        return self.conf.voters.vote_result(votes.get)

    # -- configuration -----------------------------------------------------------------------

    def apply_conf(self, conf: Configuration, changes: MapChange, next_idx: int) -> None:
        """Switch to `conf` (from the Changer) and apply its progress `changes` in order: an
        added peer gets a fresh Probe at `next_idx`, a removed one loses its Progress."""
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
