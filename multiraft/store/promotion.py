"""New voters join as learners and are promoted once caught up (TiKV's operators: add a
learner, then promote it).

A voter added straight away counts in the region's quorum before it holds anything: until its
snapshot arrived and it replayed the log it cannot acknowledge a write, and if its store
cannot be reached at all it never will — a three-replica region with such a fourth voter needs
three of four acknowledgements and loses its quorum at the next failure. So
`change_peer(add_voter)` on a store without a replica proposes a learner and registers a
`Promotion`; on every tick the leader checks the learner's progress (`learner_lag`: it holds
the region's data and lacks at most `promote_max_lag` entries, and its store is not suspected
down) and then proposes the promotion. A learner that does not catch up within its deadline
stays a learner: the request fails with CatchUpTimeout and the voters are as they were. Losing
the leadership meanwhile fails the request with NotLeader (retrying on the new leader finds
the learner and promotes it once caught up).
"""

from __future__ import annotations

import logging

from multiraft.proto.serverpb_pb2 import Learner, Voter
from multiraft.proto.serverpb_pb2 import Peer as PeerMeta
from multiraft.raft import ProposalDropped

from .apply import ApplyLoop
from .errors import CatchUpTimeout, InvalidRequest, RegionNotFound, StaleCommand, StoreError
from .membership import ADD_LEARNER, ADD_VOTER, Promotion, learner_lag, plan_conf_change
from .peer import Callback, Peer
from .region import find_peer

__all__ = ["Promotions"]

_log = logging.getLogger(__name__)


class Promotions(ApplyLoop):
    """The promotion layer of the store (module docstring)."""

    def tick(self) -> None:
        super().tick()
        if self._promotions:
            self._check_promotions()

    def _add_voter(
        self,
        peer: Peer,
        store_id: int,
        learner: PeerMeta | None,
        callback: Callback,
        catch_up_ticks: int | None,
    ) -> None:
        """A voter on `store_id`: add a learner there unless `learner` is already one, and
        promote it once caught up (`callback` with the region once promoted)."""
        region = peer.region
        rid = region.id
        ticks = self.config.learner_catch_up_ticks if catch_up_ticks is None else catch_up_ticks
        if ticks <= 0:
            raise InvalidRequest(f"catch-up ticks must be positive, got {ticks}")
        if learner is None:
            new_id = self.ids.next_id()
            cc = plan_conf_change(region, ADD_LEARNER, store_id, peer.meta.id, new_id)
            node = peer.node
            try:
                node.propose_conf_change(b"", cc)
            except ProposalDropped as e:
                raise StaleCommand(f"region {rid}: {e}") from e
            promotion = Promotion(store_id, new_id, callback, self.lanes.clock + ticks)

            def learner_added(result: object, err: StoreError | None) -> None:
                if err is not None:
                    self._end_promotion(rid, promotion, err)
                else:
                    _log.debug("region %d: learner %d on store %d added", rid, new_id, store_id)

            peer.track_proposal(node.last_index(), node.term(), learner_added, conf_change=True)
            self.stats.conf_changes += 1
            self._promotions[rid] = promotion
        else:
            assert learner.role == Learner
            self._promotions[rid] = Promotion(
                store_id, learner.id, callback, self.lanes.clock + ticks
            )
            self._check_promotion(rid)
        self._wake(rid)

    def promotion_pending(self, region_id: int) -> int | None:
        """The store whose learner waits to be promoted in the region (here, the leader), if
        one does."""
        p = self._promotions.get(region_id)
        return p.store_id if p is not None else None

    def cancel_promotion(
        self, region_id: int, store_id: int, err: StoreError | None = None
    ) -> bool:
        """Give up promoting the learner on `store_id` (it stays a learner; the request fails
        with `err`, by default CatchUpTimeout). False if no such promotion waits (it may have
        been proposed already)."""
        p = self._promotions.get(region_id)
        if p is None or p.store_id != store_id:
            return False
        self._end_promotion(region_id, p, err or self._catch_up_timeout(region_id, p))
        return True

    def _end_promotion(self, rid: int, p: Promotion, err: StoreError | None) -> None:
        """Forget `p` (if it is still the region's) and fail its request with `err`."""
        if self._promotions.get(rid) is p:
            del self._promotions[rid]
            if err is not None:
                _log.debug(
                    "region %d: not promoting the learner on store %d: %s", rid, p.store_id, err
                )
                p.callback(None, err)

    def _catch_up_timeout(self, rid: int, p: Promotion) -> CatchUpTimeout:
        peer = self.peers.get(rid)
        lag = learner_lag(peer.node, p.peer_id) if peer is not None and peer.is_leader() else None
        where = "holds none of the region's data yet" if lag is None else f"lacks {lag} entries"
        return CatchUpTimeout(
            f"region {rid}: the learner on store {p.store_id} did not catch up ({where}); "
            f"it stays a learner — check that store {p.store_id} is up and reachable"
        )

    def _check_promotions(self) -> None:
        for rid in list(self._promotions):
            self._check_promotion(rid)

    def _check_promotion(self, rid: int) -> None:
        p = self._promotions.get(rid)
        if p is None:
            return
        peer = self.peers.get(rid)
        if peer is None or not peer.initialized:
            self._end_promotion(rid, p, RegionNotFound(rid))
            return
        if not peer.is_leader():
            self._end_promotion(rid, p, peer.not_leader())
            return
        node = peer.node
        busy = node.has_pending_conf() or peer.has_pending_admin()
        learner = find_peer(peer.region, p.peer_id)
        if learner is None:
            if not busy:
                self._end_promotion(rid, p, InvalidRequest(
                    f"region {rid}: the learner on store {p.store_id} was removed"
                ))
            elif self.lanes.clock >= p.deadline:  # its own conf change is not applied yet
                self._end_promotion(rid, p, self._catch_up_timeout(rid, p))
            return
        if learner.role == Voter:
            del self._promotions[rid]
            p.callback(peer.region, None)
            return
        lag = learner_lag(node, p.peer_id)
        ready = (
            lag is not None
            and lag <= self.config.promote_max_lag
            and p.store_id not in self._suspected
            and not busy
            and not node.is_transferring_leader()
            and peer.merge_state is None
        )
        if not ready:
            if self.lanes.clock >= p.deadline:
                self._end_promotion(rid, p, self._catch_up_timeout(rid, p))
            else:
                self._wake(rid)  # keep ticking (no hibernation) until it is decided
            return
        del self._promotions[rid]
        cc = plan_conf_change(peer.region, ADD_VOTER, p.store_id, peer.meta.id, 0)
        try:
            node.propose_conf_change(b"", cc)
        except ProposalDropped as e:
            p.callback(None, StaleCommand(f"region {rid}: {e}"))
            return
        peer.track_proposal(node.last_index(), node.term(), p.callback, conf_change=True)
        self.stats.conf_changes += 1
        self._wake(rid)
        _log.debug(
            "region %d: promoting the learner on store %d (%d entries behind)", rid, p.store_id, lag
        )
