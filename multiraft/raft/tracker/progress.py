"""A follower's replication progress as the leader sees it (raft-rs `tracker/progress.rs`).

Raft paper §5.3: the leader keeps, per follower, the highest index known replicated there
(`matched`) and the next index to send (`next_idx`); a rejection walks `next_idx` back until
the logs match. `state` (ProgressState) adds flow control on top.
"""

from __future__ import annotations

from ..util import INVALID_INDEX
from .inflights import Inflights
from .state import ProgressState

__all__ = ["Progress"]

_Probe = ProgressState.Probe
_Replicate = ProgressState.Replicate
_Snapshot = ProgressState.Snapshot


class Progress:
    """Invariant: matched < next_idx (once the leader has sent or probed anything).
    Invariant: pending_snapshot != 0 only in Snapshot state (the index of the snapshot sent).
    Invariant: ins is empty unless state is Replicate.
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
        # Probe state only: an append was sent, wait for its answer (or the next heartbeat
        # response) before sending another.
        self.paused = False
        # Snapshot state only: the index of the snapshot in flight (0 = failed / none).
        self.pending_snapshot = 0
        # The index of the snapshot the follower asked for (request_snapshot), or
        # INVALID_INDEX if it asked for none.
        self.pending_request_snapshot = INVALID_INDEX
        # Whether the follower was heard from since the last check_quorum round; reset every
        # election timeout by ProgressTracker.quorum_recently_active.
        self.recent_active = False
        # The in-flight appends (Replicate state flow control).
        self.ins = Inflights(ins_size)
        # The peer's commit group (group commit), 0 = none.
        self.commit_group_id = 0
        # The follower's commit index as last reported.
        self.committed_index = 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Progress):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in Progress.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        extra = ""
        if self.paused:
            extra += " paused"
        if self.pending_snapshot:
            extra += f" pending_snap={self.pending_snapshot}"
        if self.pending_request_snapshot:
            extra += f" request_snap={self.pending_request_snapshot}"
        if not self.recent_active:
            extra += " inactive"
        n = self.ins.count()
        if n:
            extra += f" inflight={n}" + ("[full]" if self.ins.full() else "")
        return f"{self.state.name} match={self.matched} next={self.next_idx}{extra}"

    def reset_state(self, state: ProgressState) -> None:
        """Enter `state` with flow control cleared (paused, pending snapshot, inflights)."""
        self.paused = False
        self.pending_snapshot = 0
        self.state = state
        self.ins.reset()

    def reset(self, next_idx: int) -> None:
        """A fresh Probe at `next_idx`, as a new leader sees every peer."""
        self.matched = 0
        self.next_idx = next_idx
        self.state = ProgressState.Probe
        self.paused = False
        self.pending_snapshot = 0
        self.pending_request_snapshot = INVALID_INDEX
        self.recent_active = False
        self.ins.reset()

    def become_probe(self) -> None:
        """Back to Probe. After a snapshot was delivered, probe from just past it; otherwise
        from just past what is known to match."""
        if self.state == _Snapshot:
            pending = self.pending_snapshot
            self.reset_state(_Probe)
            self.next_idx = max(self.matched + 1, pending + 1)
        else:
            self.reset_state(_Probe)
            self.next_idx = self.matched + 1

    def become_replicate(self) -> None:
        """To Replicate: send optimistically from just past matched."""
        self.reset_state(_Replicate)
        self.next_idx = self.matched + 1

    def become_snapshot(self, snapshot_idx: int) -> None:
        """To Snapshot: a snapshot at `snapshot_idx` is being sent."""
        self.reset_state(_Snapshot)
        self.pending_snapshot = snapshot_idx

    def snapshot_failure(self) -> None:
        """The snapshot was not delivered: the next probe starts from matched + 1."""
        self.pending_snapshot = 0

    def is_snapshot_caught_up(self) -> bool:
        """In Snapshot state, the follower already reached the snapshot's index."""
        return self.state == _Snapshot and self.matched >= self.pending_snapshot

    def maybe_update(self, n: int) -> bool:
        """The follower acknowledged entries up to `n`. Returns False for a stale ack (n <=
        matched); next_idx never goes back."""
        need_update = self.matched < n
        if need_update:
            self.matched = n
            self.paused = False
        if self.next_idx <= n:
            self.next_idx = n + 1
        return need_update

    def update_committed(self, committed_index: int) -> None:
        """The follower reported its commit index; it never decreases."""
        if committed_index > self.committed_index:
            self.committed_index = committed_index

    def optimistic_update(self, n: int) -> None:
        """An append ending at `n` was sent (Replicate state): the next one starts after it."""
        self.next_idx = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int, request_snapshot: int) -> bool:
        """The follower rejected the append whose previous index was `rejected`, hinting that
        its log may match up to `match_hint`. Returns False if the rejection is stale.

        `request_snapshot` != INVALID_INDEX means the follower asks for a snapshot at that
        index (raft-rs `request_snapshot`): it is recorded, next_idx is left alone.

        Invariant kept: next_idx >= matched + 1 (etcd-io/raft#148).
        """
        if self.state == _Replicate:
            # Appends are pipelined: a rejection below matched, or at matched without a
            # snapshot request, answers an older message.
            if rejected < self.matched or (
                rejected == self.matched and request_snapshot == INVALID_INDEX
            ):
                return False
            if request_snapshot == INVALID_INDEX:
                self.next_idx = self.matched + 1
            else:
                self.pending_request_snapshot = request_snapshot
            return True

        # Probe (or Snapshot): only the answer to the probe just sent (at next_idx - 1)
        # counts, unless it carries a snapshot request.
        if (self.next_idx == 0 or self.next_idx - 1 != rejected) and (
            request_snapshot == INVALID_INDEX
        ):
            return False
        if request_snapshot == INVALID_INDEX:
            self.next_idx = max(min(rejected, match_hint + 1), self.matched + 1)
        elif self.pending_request_snapshot == INVALID_INDEX:
            # A snapshot may be requested in any state.
            self.pending_request_snapshot = request_snapshot
        self.paused = False
        return True

    def is_paused(self) -> bool:
        """Whether appends to this peer must wait: a probe in flight (Probe), a full window
        (Replicate), or always (Snapshot)."""
        state = self.state
        if state == _Probe:
            return self.paused
        if state == _Replicate:
            return self.ins.full()
        return True

    def resume(self) -> None:
        self.paused = False

    def pause(self) -> None:
        self.paused = True

    def update_state(self, last: int) -> None:
        """An append whose last entry is `last` was sent."""
        state = self.state
        if state == _Replicate:
            self.next_idx = last + 1
            self.ins.add(last)
        elif state == _Probe:
            self.paused = True
        else:
            raise AssertionError(f"updating progress state in unhandled state {state.name}")
