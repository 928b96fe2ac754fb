"""Ticks, hibernation and store liveness.

Only awake regions tick (a follower whose leader's store is heard from, one tick in
`follower_tick_every`). A leader idle for an election timeout, with every follower caught
up, asks its followers whether the region may hibernate (MsgHibernateRequest); once all agree
the region stops ticking on every store. Any traffic but heartbeats wakes it. Stores exchange
a frame every tick (an empty one if nothing else went there): a store not heard from for
`suspect_ticks` (an election timeout by default; the server's default is three) is
suspected, and the hibernated regions whose leader was there wake up and elect a new one. A region hibernates without its replicas on suspected stores as long as
the others form a quorum (with one store of three down, every region would otherwise stay
awake, each leader heartbeating the dead store: TiKV's tikv#19070); once such a store is
heard from again, the leaders here of the regions with a replica there wake up, in waves, to
catch it up.

What a store knows of the others' liveness is public (`store_liveness`): the server shows it
(`GET /stores`) and exports it (`multiraft_store_up`). Besides the stores that hold replicas of
its regions, the server has the store watch every store it knows of (`track_store`), so that a
store without a region in common is seen too."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from multiraft.proto.serverpb_pb2 import (
    BatchRaftMessage,
    ExtraMessage,
    MsgHibernateRequest,
    MsgHibernateResponse,
    MsgRegionWakeUp,
    RaftMessage,
    Voter,
)
from multiraft.raft import StateRole
from router.codec import encode_batch

from .base import BOOTSTRAP_TERM, designated_store
from .errors import InvalidRequest
from .lifecycle import PeerLifecycle
from .peer import NOBODY, Peer

__all__ = ["Hibernation", "StoreLiveness"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoreLiveness:
    """Another store as this one sees it: `heard` once a frame came from it since this store
    started; `silent_ticks` since its last frame (or since it was first watched); `suspected`
    once silent for `StoreConfig.suspect_ticks` (its hibernated regions were woken up)."""

    store_id: int
    heard: bool
    silent_ticks: int
    suspected: bool


# Campaigns started per tick at most (a store of 100,000 regions starting, or taking over
# the leaders of a dead store, sends their votes in waves); as many hibernated leaders wake
# per tick for a store that came back.
_CAMPAIGNS_PER_TICK = 2000


class Hibernation(PeerLifecycle):
    """Ticks, hibernation and store liveness (module docstring)."""

    def tick(self) -> None:
        """One base tick for every awake region; hibernated regions cost nothing. Also sends
        store heartbeats and wakes the regions whose leader's store went silent."""
        self.lanes.clock += 1
        clock = self.lanes.clock
        election = self.config.election_ticks
        suspect = self.config.suspect_ticks or election
        if self._campaigns:
            self._start_campaigns(clock)
        if self._wakeups:
            self._wake_some()
        every = self.config.follower_tick_every
        suspected = self._suspected
        ticked = 0
        awake = list(self._awake)
        budget = self.config.max_region_ticks
        if budget and len(awake) > budget:
            # More awake regions than a tick may tick: this tick takes the next `budget` of
            # them, round-robin; the others' logical time waits (later heartbeats and
            # timeouts: safe, and the store keeps answering instead of stalling for
            # seconds a tick).
            start = self._tick_offset % len(awake)
            self._tick_offset = start + budget
            awake = (awake[start:] + awake[:start])[:budget]
        for rid in awake:
            peer = self.peers[rid]
            node = peer.node
            if (
                every > 1
                and (clock + rid) % every
                and node.leader_id()
                and node.role() == StateRole.Follower
            ):
                # A follower whose leader's store is heard from ticks one tick in `every`
                # (staggered by region): its election timer only matters if the leader is
                # gone, which store liveness tells (`_wake_regions_led_from` makes it forget
                # the leader: then it ticks every tick again). Slower timers are safe (raft
                # assumes no timing), and they keep the rare region-level failure electing.
                leader = peer.leader_meta()
                if leader is not None and leader.store_id not in suspected:
                    continue
            node.tick()
            ticked += 1
            self._dirty.add(rid)
            peer.idle_ticks += 1
            # Once idle for an election timeout, ask the followers (again every election
            # timeout while some have not agreed).
            if peer.idle_ticks >= election and peer.idle_ticks % election == 0:
                down = self._down_peers(peer)
                if down is not None and peer.can_hibernate(down):
                    self._ask_to_hibernate(peer, down)
        self.stats.ticks += ticked
        # Store heartbeats: one (empty) frame per store per tick if nothing else went there.
        for store in self._last_heard:
            if store not in self._sent_since_tick:
                self._send(
                    store,
                    encode_batch(
                        BatchRaftMessage(
                            from_store_id=self.store_id,
                            last_observed_time=clock,
                            leaders=self._leader_count,
                        )
                    ),
                )
                self.stats.frames_sent += 1
        self._sent_since_tick = set()
        grace = max(suspect, self.config.startup_grace_ticks)
        for store, heard in self._last_heard.items():
            if (
                clock - heard >= (suspect if store in self._heard else grace)
                and store not in self._suspected
            ):
                self._suspected.add(store)
                self._wake_regions_led_from(store)

    def _wake(self, rid: int) -> None:
        peer = self.peers[rid]
        peer.idle_ticks = 0
        peer.hibernate_votes = NOBODY
        if rid not in self._awake:
            self._awake.add(rid)
            if peer.is_leader():
                # Give the followers a full election timeout to answer before check_quorum.
                peer.node.reset_election_elapsed()
        self._dirty.add(rid)

    def _down_peers(self, peer: Peer) -> frozenset[int] | None:
        """The region's peers on suspected stores (hibernation does without them), or None
        if the voters on the other stores are no quorum (then the region stays awake)."""
        suspected = self._suspected
        if not suspected:
            return NOBODY
        peers = peer.region.peers
        down = frozenset(p.id for p in peers if p.store_id in suspected)
        if down:
            voters = [p.id for p in peers if p.role == Voter]
            if sum(1 for v in voters if v not in down) * 2 <= len(voters):
                return None
        return down

    def _note_store_clock(self, store: int, clock: int) -> None:
        """`store`'s frame tells its clock (0: not told, or before its first tick). A clock
        that went back means the store restarted, maybe too fast to be suspected: its
        leaders are gone (a replica restarts as a follower) and its replicas know no leader.
        So, as for a store suspected and back: the regions it led elect
        a new leader (`_wake_regions_led_from`), and the leaders here wake to tell it
        (`_on_store_back`)."""
        if not clock:
            return
        prev = self._store_clocks.get(store, 0)
        self._store_clocks[store] = clock
        if clock < prev and store not in self._suspected:
            _log.debug("store %d: store %d restarted", self.store_id, store)
            self._wake_regions_led_from(store)
            self._on_store_back(store)

    def _on_store_back(self, store: int) -> None:
        """`store` is heard from again after it was suspected: the hibernated leaders here
        of regions with a replica there wake up (`_CAMPAIGNS_PER_TICK` a tick), so that it
        learns its leaders and catches up with what it missed."""
        awake, wakeups = self._awake, self._wakeups
        for rid, peer in self.peers.items():
            if rid not in awake and peer.is_leader() and any(
                p.store_id == store for p in peer.region.peers
            ):
                wakeups.append(rid)

    def _wake_some(self) -> None:
        wakeups = self._wakeups
        for _ in range(min(len(wakeups), _CAMPAIGNS_PER_TICK)):
            rid = wakeups.popleft()
            if rid in self.peers:
                self._wake(rid)

    def _wake_regions_led_from(self, store: int) -> None:
        """A store went silent: the regions whose leader was there wake up (a hibernated one
        would not notice) and elect a new one, one chosen replica first
        (`_schedule_election`)."""
        for rid, peer in self.peers.items():
            leader = peer.leader_meta()
            if leader is not None and leader.store_id == store and peer.initialized:
                self._wake(rid)
                self._schedule_election(peer, gone=store)
            elif rid not in self._awake and leader is None and self._designated_there(peer, store):
                # Asleep without a leader: a region never led, waiting for its designated
                # replica, which was on that store. (The others wait for theirs: waking every
                # one of 100,000 such regions because one store stalled a few seconds made
                # every tick take seconds, and the stores never settled.)
                self._wake(rid)
                if peer.initialized:
                    self._schedule_election(peer, gone=store)

    @staticmethod
    def _designated_there(peer: Peer, store: int) -> bool:
        """Whether `store` holds the replica of `peer`'s region designated to lead it first
        (an uninitialized replica knows no voters: yes)."""
        voters = [p.store_id for p in peer.region.peers if p.role == Voter]
        return not peer.initialized or not voters or designated_store(peer.region.id, voters) == store

    def _start_campaigns(self, clock: int) -> None:
        """The campaigns `_schedule_election` chose this store for, in order, at most
        `_CAMPAIGNS_PER_TICK` a tick; each once a quorum of its voters' stores is heard from
        (at start, the others may not be up yet). A region of a cluster this process just
        bootstrapped is led at once instead, without an election (`bootstrap`)."""
        started = 0
        campaigns = self._campaigns
        while campaigns and started < _CAMPAIGNS_PER_TICK:
            rid, not_before = campaigns[0]
            if not_before > clock:
                return
            campaigns.popleft()
            peer = self.peers.get(rid)
            if peer is None or peer.node.leader_id() or peer.node.role() != StateRole.Follower:
                self._bootstrap_leads.discard(rid)
                continue  # a leader emerged meanwhile (or this replica is gone)
            voters = [p.store_id for p in peer.region.peers if p.role == Voter]
            heard = sum(
                1
                for s in voters
                if s == self.store_id or (self._last_heard.get(s, 0) > 0 and s not in self._suspected)
            )
            if heard * 2 <= len(voters):
                campaigns.append((rid, clock + 1))
                continue
            node = peer.node
            if rid in self._bootstrap_leads:
                self._bootstrap_leads.discard(rid)
                # The bootstrap this process wrote made every replica vote for this one at
                # BOOTSTRAP_TERM (a later term's vote for itself was a campaign it may have
                # lost: never lead that one unelected).
                if node.term() != BOOTSTRAP_TERM or not node.lead_at_bootstrap():
                    node.campaign()
            else:
                node.campaign()
            self._wake(rid)
            started += 1

    def _ask_to_hibernate(self, peer: Peer, down: frozenset[int]) -> None:
        node = peer.node
        peer.hibernate_votes = frozenset((peer.meta.id,))
        extra = ExtraMessage(type=MsgHibernateRequest, index=node.last_index(), term=node.term())
        for p in peer.region.peers:
            if p.id != peer.meta.id and p.id not in down:
                self._send_extra(peer, p, extra)

    def _on_extra(self, peer: Peer, m: RaftMessage) -> None:
        extra = m.extra_msg
        node = peer.node
        rid = peer.region.id
        if extra.type == MsgHibernateRequest:
            agree = (
                node.role() == StateRole.Follower
                and node.leader_id() == m.from_peer.id
                and node.term() == extra.term
                and node.last_index() == extra.index
                and node.commit_index() == extra.index
                and not peer.has_waiting_work()
            )
            reply = ExtraMessage(
                type=MsgHibernateResponse, agree=agree, index=extra.index, term=extra.term
            )
            self._send_extra(peer, m.from_peer, reply)
            if agree:
                self._awake.discard(rid)
        elif extra.type == MsgHibernateResponse:
            if (
                not extra.agree
                or not peer.hibernate_votes
                or extra.term != node.term()
                or extra.index != node.last_index()
            ):
                return
            down = self._down_peers(peer)
            if down is None or not peer.can_hibernate(down):
                return
            peer.hibernate_votes = votes = peer.hibernate_votes | {m.from_peer.id}
            if all(p.id in votes or p.id in down for p in peer.region.peers):
                self._awake.discard(rid)
        elif extra.type == MsgRegionWakeUp:
            self._wake(rid)

    def track_store(self, store_id: int) -> None:
        """Watch `store_id`'s liveness (store heartbeats go to it every tick) even while no
        region here has a replica there."""
        if store_id != self.store_id:
            self._last_heard.setdefault(store_id, self.lanes.clock)

    def forget_store(self, store_id: int) -> None:
        """Stop watching `store_id` (it left the cluster for good). Refused while
        a region here still has a replica on it (InvalidRequest)."""
        if any(p.store_id == store_id for peer in self.peers.values() for p in peer.region.peers):
            raise InvalidRequest(
                f"a region on store {self.store_id} still has a replica on store {store_id}"
            )
        self._last_heard.pop(store_id, None)
        self._suspected.discard(store_id)
        self._heard.discard(store_id)

    def store_liveness(self) -> list[StoreLiveness]:
        """Every store this one watches, by id (module docstring)."""
        clock = self.lanes.clock
        return [
            StoreLiveness(s, s in self._heard, clock - heard, s in self._suspected)
            for s, heard in sorted(self._last_heard.items())
        ]

    def suspected_stores(self) -> frozenset[int]:
        """The stores not heard from for an election timeout."""
        return frozenset(self._suspected)

    def awake_regions(self) -> int:
        return len(self._awake)

    def is_hibernated(self, region_id: int) -> bool:
        return region_id in self.peers and region_id not in self._awake
