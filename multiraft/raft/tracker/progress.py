"""A follower's replication progress as seen by the leader (raft-rs `tracker/progress.rs`)."""

from __future__ import annotations

from ..util import INVALID_INDEX
from .inflights import Inflights
from .state import ProgressState

__all__ = ["Progress"]


class Progress:
    """Invariant: matched < next_idx.
    Invariant: in Snapshot state, pending_snapshot is the index of the snapshot being sent.
    """

    __slots__ = (
        "matched",
        "next_idx",
        "state",
        "paused",
        "pending_snapshot",
        "pending_request_snapshot",
        "recent_active",
        "ins",
        "commit_group_id",
        "committed_index",
    )

    def __init__(self, next_idx: int, ins_size: int) -> None:
        # The highest index known to be replicated on the follower.
        self.matched = 0
        # The index of the next entry to send.
        self.next_idx = next_idx
        self.state = ProgressState.Probe
        # In Probe state: an append was sent and the leader waits for its answer.
        self.paused = False
        # In Snapshot state: the index of the snapshot in flight.
        self.pending_snapshot = 0
        # A snapshot the follower asked for (request_snapshot), INVALID_INDEX if none.
        self.pending_request_snapshot = 0
        # Whether the follower was heard from recently (check_quorum); reset each election
        # timeout by quorum_recently_active.
        self.recent_active = False
        # The in-flight appends (Replicate state).
        self.ins = Inflights(ins_size)
        # The commit group of the peer (group commit), 0 = none.
        self.commit_group_id = 0
        # The follower's commit index as last reported.
        self.committed_index = 0

    def __repr__(self) -> str:
        return (
            f"Progress(state={self.state.name}, match={self.matched}, next={self.next_idx}"
            f"{', paused' if self.paused else ''}"
            f"{f', pending_snap={self.pending_snapshot}' if self.pending_snapshot else ''}"
            f"{', inactive' if not self.recent_active else ''}, inflight={self.ins.count()})"
        )

    def reset_state(self, state: ProgressState) -> None:
        self.paused = False
        self.pending_snapshot = 0
        self.state = state
        self.ins.reset()

    def reset(self, next_idx: int) -> None:
        """Back to a fresh Probe at `next_idx` (a new leader's view)."""
        self.matched = 0
        self.next_idx = next_idx
        self.state = ProgressState.Probe
        self.paused = False
        self.pending_snapshot = 0
        self.pending_request_snapshot = INVALID_INDEX
        self.recent_active = False
        self.ins.reset()

    def become_probe(self) -> None:
        """After a snapshot was sent, probe from after it; otherwise from after matched."""
        if self.state == ProgressState.Snapshot:
            pending = self.pending_snapshot
            self.reset_state(ProgressState.Probe)
            self.next_idx = max(self.matched + 1, pending + 1)
        else:
            self.reset_state(ProgressState.Probe)
            self.next_idx = self.matched + 1

    def become_replicate(self) -> None:
        self.reset_state(ProgressState.Replicate)
        self.next_idx = self.matched + 1

    def become_snapshot(self, snapshot_idx: int) -> None:
        self.reset_state(ProgressState.Snapshot)
        self.pending_snapshot = snapshot_idx

    def snapshot_failure(self) -> None:
        """The snapshot was not delivered."""
        self.pending_snapshot = 0

    def is_snapshot_caught_up(self) -> bool:
        """In Snapshot state, the follower reached the snapshot's index by other means."""
        return self.state == ProgressState.Snapshot and self.matched >= self.pending_snapshot

    def maybe_update(self, n: int) -> bool:
        """The follower acknowledged up to `n`. Returns False for a stale ack."""
        need_update = self.matched < n
        if need_update:
            self.matched = n
            self.resume()
        if self.next_idx < n + 1:
            self.next_idx = n + 1
        return need_update

    def update_committed(self, committed_index: int) -> None:
        if committed_index > self.committed_index:
            self.committed_index = committed_index

    def optimistic_update(self, n: int) -> None:
        """An append ending at `n` was sent in Replicate state."""
        self.next_idx = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int, request_snapshot: int) -> bool:
        """The follower rejected an append at `rejected`, hinting it may match at
        `match_hint`. Returns False for a stale rejection."""
        if self.state == ProgressState.Replicate:
            # The rejection must be stale if "rejected" does not match "next - 1" ... in
            # Replicate state, it is stale if it is below matched.
            if rejected < self.matched or (
                rejected == self.matched and request_snapshot == INVALID_INDEX
            ):
                return False
            if request_snapshot == INVALID_INDEX:
                self.next_idx = self.matched + 1
            else:
                self.pending_request_snapshot = request_snapshot
            return True
        # In Probe state the rejection must be for the probe we sent (next - 1); otherwise
        # it is stale.
        if (self.next_idx == 0 or self.next_idx - 1 != rejected) and request_snapshot == INVALID_INDEX:
            return False
        if request_snapshot == INVALID_INDEX:
            self.next_idx = max(min(rejected, match_hint + 1), self.matched + 1)
        elif self.pending_request_snapshot == INVALID_INDEX:
            self.pending_request_snapshot = request_snapshot
        self.resume()
        return True

    def is_paused(self) -> bool:
        """Whether sending appends to this peer should wait."""
        state = self.state
        if state == ProgressState.Probe:
            return self.paused
        if state == ProgressState.Replicate:
            return self.ins.full()
        return True

    def resume(self) -> None:
        self.paused = False

    def pause(self) -> None:
        self.paused = True

    def update_state(self, last: int) -> None:
        """An append ending at `last` was sent."""
        state = self.state
        if state == ProgressState.Replicate:
            self.optimistic_update(last)
            self.ins.add(last)
        elif state == ProgressState.Probe:
            self.pause()
        else:
            raise AssertionError(f"updating progress state in unhandled state {state.name}")
