"""Leader balance: a store that leads clearly more regions than its share hands some of its
leaders to the store that leads the fewest (PD's balance-leader scheduler, decided by each
store from the leader counts the other stores tell in every frame they send it, store
heartbeats included). Sans-I/O: `plan_leader_moves` is a pure function; the store calls
`LeaderBalance.balance_leaders` every `leader_balance_ticks` ticks."""

from __future__ import annotations

import logging

from multiraft.proto.serverpb_pb2 import Learner

from .peer import Peer
from .promotion import Promotions
from .region import find_peer_on_store

__all__ = ["LeaderBalance", "plan_leader_moves"]

_log = logging.getLogger(__name__)


def plan_leader_moves(mine: int, others: dict[int, int], batch: int) -> tuple[int, int] | None:
    """(target store, leaders to hand it) for a store leading `mine` regions while the other
    live stores lead `others` ({store id: count}), or None. Only while `mine` is clearly above
    the average (by more than 5% of it, and at least 1), only to the store leading the fewest,
    and never so many that either side crosses the average: two stores never trade leaders
    back and forth. At most `batch` at a time (the rate limit)."""
    if not others or batch <= 0:
        return None
    avg = (mine + sum(others.values())) / (len(others) + 1)
    if mine <= avg + max(1.0, 0.05 * avg):
        return None
    target, low = min(others.items(), key=lambda kv: (kv[1], kv[0]))
    n = min(batch, int(mine - avg), int(avg - low))
    if n <= 0:
        return None
    return target, n


class LeaderBalance(Promotions):
    """The store's side of the leader balance (module docstring)."""

    def balance_leaders(self) -> int:
        """Start up to `leader_balance_batch` leader transfers if this store leads clearly
        more regions than its share; returns how many were started. Not while this store
        still has campaigns to start, nor within the startup grace (`startup_grace_ticks`):
        a store still starting tells a leader count of 0 while its bootstrap leaders are on
        the way, and transfers to it would only add elections to the start."""
        if self._campaigns or self.lanes.clock < self.config.startup_grace_ticks:
            return 0
        others = {
            sid: n
            for sid, n in self._leader_counts.items()
            if sid in self._last_heard and sid not in self._suspected
        }
        plan = plan_leader_moves(self._leader_count, others, self.config.leader_balance_batch)
        if plan is None:
            return 0
        target_store, want = plan
        started = 0
        for peer in self.peers.values():
            if started >= want:
                break
            target = self._balance_target(peer, target_store)
            if target is None:
                continue
            peer.drop_lease()  # the transferee is elected at once, not after a timeout
            peer.node.transfer_leader(target)
            self._wake(peer.region.id)
            started += 1
        if started:
            self.stats.balance_transfers += started
            _log.info(
                "store %d: leader balance: handing %d leaders to store %d (here %d, there %d)",
                self.store_id, started, target_store, self._leader_count, others[target_store],
            )
        return started

    def _balance_target(self, peer: Peer, store_id: int) -> int | None:
        """The id of the voter on `store_id` that may take `peer`'s leadership now, or None:
        only for a leader here with nothing in progress that a transfer would disturb (a
        membership change, split or merge, a promotion, another transfer) and a voter there.
        Raft completes the transfer once that voter holds the whole log (it sends what is
        missing first) or gives it up after an election timeout."""
        if not peer.initialized or not peer.is_leader() or peer.merge_state is not None:
            return None
        node = peer.node
        if node.is_transferring_leader() or node.has_pending_conf() or peer.has_pending_admin():
            return None
        rid = peer.region.id
        if rid in self._promotions or rid in self._merge_waiters.values():
            return None
        target = find_peer_on_store(peer.region, store_id)
        if target is None or target.role == Learner:
            return None
        return target.id
