"""Peers come and go: bootstrap of a new cluster, join, recovery of every region from the
engine, creation of an uninitialized peer by a message, destruction (with a tombstone), and
the region snapshots a leader builds for its followers."""

from __future__ import annotations

import logging

from multiraft.engine import (
    CF_APPLY_STATE,
    CF_KV,
    CF_META,
    CF_RAFT_STATE,
    RegionStorage,
    WriteBatch,
)
from multiraft.engine.keys import (
    REGION_STATE,
    apply_state_key,
    decode_raft_state_key,
    meta_key,
    region_state_key,
)
from multiraft.engine.region_storage import check_no_wal
from multiraft.proto.serverpb_pb2 import (
    Learner,
    Merging,
    MsgNone,
    RaftApplyState,
    RaftMessage,
    Region,
    RegionLocalState,
    Tombstone,
    Voter,
)
from multiraft.raft import (
    Config,
    HardState,
    MessageType,
    RawNode,
    ReadOnlyOption,
    Snapshot,
    SnapshotMetadata,
    SnapshotTemporarilyUnavailable,
    SplitMix64,
    default_logger,
)

from .base import BOOTSTRAP_TERM, RAFT_INIT_LOG_INDEX, designated_store, initial_peer_id
from .dedupe import dedupe_bounds
from .errors import RegionNotFound, StoreError
from .membership import conf_state_from_region
from .outbox import Outbox
from .peer import Peer
from .region import find_peer_on_store, new_region, ranges_overlap, split_keys
from .snapshot import build_snapshot_data

__all__ = ['PeerLifecycle']

_log = logging.getLogger(__name__)
# The raft core's logger, looked up once (not once per replica opened: `getLogger` takes a lock).
_RAFT_LOG = default_logger()
_STORE_IDENT = meta_key("store_ident")
# Messages that may create a peer for a region this store does not know.
_CREATING_MSGS = frozenset(
    {
        MessageType.MsgAppend,
        MessageType.MsgHeartbeat,
        MessageType.MsgSnapshot,
        MessageType.MsgRequestVote,
        MessageType.MsgRequestPreVote,
    }
)


# The share of the election timeout a lease lasts (the rest is the margin for clock drift
# between stores and for timers that fire late; TiKV: 9 s of a 10 s election timeout).
_LEASE_SHARE = 0.8
_VOTES = frozenset({MessageType.MsgRequestVote, MessageType.MsgRequestPreVote})
_MAX_PENDING_VOTES = 1024
# A lane to another store holds at least this many messages per region here (a round over
# every region sends a few per region to each store: a heartbeat or an append, a response,
# a hibernation message). The lanes' own bound (16,384) stays the floor.
_LANE_MESSAGES_PER_REGION = 4


def _was_led(peer: Peer) -> bool:
    """Whether the region had a leader this replica heard of: every leader's first entry
    lies past the initial log (`RAFT_INIT_LOG_INDEX`)."""
    return peer.node.last_index() > RAFT_INIT_LOG_INDEX


class PeerLifecycle(Outbox):
    """Creating, recovering and destroying the peers of this store."""

    def bootstrap(self, cluster_id: int, store_ids: list[int], initial_regions: int) -> None:
        """First start of a brand-new cluster: write the store ident and the initial regions
        (evenly split key ranges, one peer on each initial store), each starting at log index
        `RAFT_INIT_LOG_INDEX`. Every initial store derives the same regions. A store that
        already holds data is left as it is.

        No region needs an election: every replica's first hard state is `BOOTSTRAP_TERM`
        with a vote for the region's designated replica (`designated_store`), durable
        before this store sends or answers anything, so the designated replica leads that
        term unelected (`_start_campaigns`, through `RawNode.lead_at_bootstrap`), and no
        other replica can win it. A designated store that never starts leaves its regions
        to the others: they campaign after their hold-back, at a later term."""
        if self.engine.get(CF_META, _STORE_IDENT) is not None:
            self.open(cluster_id)
            return
        assert self.store_id in store_ids
        check_no_wal(self.engine)
        wb = WriteBatch()
        keys = [b"", *split_keys(initial_regions), b""]
        init = RAFT_INIT_LOG_INDEX
        leads = set()
        for i in range(initial_regions):
            rid = i + 1
            region = new_region(
                rid, keys[i], keys[i + 1], [(initial_peer_id(rid, s), s) for s in store_ids]
            )
            designated = designated_store(rid, store_ids)
            if designated == self.store_id:
                leads.add(rid)
            wb.put(
                CF_RAFT_STATE,
                region_state_key(rid),
                RegionLocalState(region=region).SerializeToString(),
            )
            snap = Snapshot(metadata=SnapshotMetadata(index=init, term=init))
            snap.metadata.conf_state.voters.extend(p.id for p in region.peers)
            storage = RegionStorage(self.engine, rid, check_wal=False)
            storage.apply_snapshot(wb, snap)
            vote = initial_peer_id(rid, designated)
            storage.set_hard_state(wb, HardState(term=BOOTSTRAP_TERM, vote=vote, commit=init))
            state = RaftApplyState(applied_index=init, applied_term=init)
            wb.put(CF_APPLY_STATE, apply_state_key(rid), state.SerializeToString())
        wb.put(CF_META, _STORE_IDENT, f"{cluster_id}:{self.store_id}".encode())
        self.engine.write(wb, sync=True)
        wb.run_commit_hooks()
        self._bootstrap_leads = leads
        self.open(cluster_id)

    def join(self, cluster_id: int) -> None:
        """First start of a store joining a running cluster: it holds no region until the
        admin API adds replicas here (they arrive by snapshot). Opens if data exists."""
        if self.engine.get(CF_META, _STORE_IDENT) is None:
            wb = WriteBatch()
            wb.put(CF_META, _STORE_IDENT, f"{cluster_id}:{self.store_id}".encode())
            self.engine.write(wb, sync=True)
        self.open(cluster_id)

    def open(self, cluster_id: int) -> None:
        """Recover every region from the engine."""
        ident = self.engine.get(CF_META, _STORE_IDENT)
        if ident is None:
            raise StoreError("the data dir holds no store (bootstrap first)")
        want = f"{cluster_id}:{self.store_id}".encode()
        if ident != want:
            raise StoreError(
                f"the data dir belongs to cluster:store {ident.decode()}, not {want.decode()}"
            )
        check_no_wal(self.engine)
        for key, value in self.engine.scan(CF_RAFT_STATE):
            region_id, kind = decode_raft_state_key(key)
            if kind != REGION_STATE:
                continue
            state = RegionLocalState.FromString(value)
            if state.state == Tombstone:
                self.tombstones[region_id] = state.region
                if state.merge_state.target.id:
                    self.merged_into[region_id] = state.merge_state.target
            else:
                peer = self._open_peer(state.region)
                if state.state == Merging:
                    peer.merge_state = state.merge_state
                    self._merging.add(region_id)
                if peer.initialized:
                    self._schedule_election(peer)
                    if peer.merge_state is None and not _was_led(peer):
                        # Never led (a new cluster): nothing to tick for until its
                        # designated replica leads or campaigns (`_start_campaigns` wakes it; its
                        # votes wake the others) or a store falls silent (the regions
                        # without a leader wake). 100,000 awake regions cost seconds a tick.
                        # (A region led before stays awake: a replica removed meanwhile
                        # learns it from the answers to its campaign.)
                        self._awake.discard(region_id)

    def _new_storage(self, region_id: int) -> RegionStorage:
        return RegionStorage(
            self.engine,
            region_id,
            check_wal=False,  # (`open` and `bootstrap` checked the engine once)
            snapshot_builder=lambda req, to: self._build_snapshot(region_id, req),
        )

    def _open_peer(
        self,
        region: Region,
        storage: RegionStorage | None = None,
        applied: RaftApplyState | None = None,
    ) -> Peer:
        """A peer for `region` over its storage as the engine (or `storage`'s view, with
        `applied`, for a peer whose state is still in the round's batch) holds it."""
        if storage is None:
            storage = self._new_storage(region.id)
        if applied is None:
            raw = self.engine.get(CF_APPLY_STATE, apply_state_key(region.id))
            applied = RaftApplyState.FromString(raw) if raw is not None else RaftApplyState()
        me = next(p for p in region.peers if p.store_id == self.store_id)
        c = self.config
        cfg = Config(
            id=me.id,
            election_tick=c.election_ticks,
            heartbeat_tick=c.heartbeat_ticks,
            check_quorum=c.check_quorum,
            pre_vote=c.pre_vote,
            applied=applied.applied_index,
            max_size_per_msg=c.max_size_per_msg,
            max_inflight_msgs=c.max_inflight_msgs,
            # Always confirmed by a quorum: lease reads are the store's (`Peer.lease_until`,
            # on a clock), not raft's tick-counted lease, which a paused process outlives.
            read_only_option=ReadOnlyOption.Safe,
            skip_bcast_commit=c.skip_bcast_commit,
        )
        if region.region_epoch.version:
            have = storage.conf_state()
            # (The sets, not `conf_state_from_region`'s protobuf: this runs for every region
            # a store opens.)
            voters = {p.id for p in region.peers if p.role == Voter}
            learners = {p.id for p in region.peers if p.role == Learner}
            if voters != set(have.voters) or learners != set(have.learners):
                # A crash between an applied conf change and its raft conf state: repair.
                wb = WriteBatch()
                storage.set_conf_state(wb, conf_state_from_region(region))
                self.engine.write(wb, sync=True)
                wb.run_commit_hooks()
        node = RawNode(cfg, storage, logger=_RAFT_LOG, rng=SplitMix64(self.rng.getrandbits(64)))
        peer = Peer(
            self.store_id,
            region,
            node,
            storage,
            applied.applied_index,
            applied.applied_term,
            self.engine,
        )
        peer.dedupe.window = c.dedupe_window
        peer.born = self.lanes.clock
        if c.lease_reads and self._clock is not None:
            peer.lease_seconds = c.election_ticks * c.base_tick_seconds * _LEASE_SHARE
        self.peers[region.id] = peer
        lanes = self.lanes
        if len(self.peers) * _LANE_MESSAGES_PER_REGION > lanes.max_lane_messages:
            # A round over every region (a wave of elections, heartbeats, hibernation
            # requests) must not overflow a lane: dropped votes and heartbeats are elections
            # repeated, and more rounds like it.
            lanes.max_lane_messages = len(self.peers) * _LANE_MESSAGES_PER_REGION
        self._dirty.add(region.id)
        self._awake.add(region.id)
        for p in region.peers:
            if p.store_id != self.store_id:
                self._last_heard.setdefault(p.store_id, 0)
        return peer

    def _schedule_election(self, peer: Peer, gone: int = 0) -> None:
        """The region needs a leader (it was just opened, or its leader's store `gone` fell
        silent). Rather than let every replica campaign at a random moment — at 100,000
        regions a storm of split votes — one replica, chosen by region id among the voters
        on the stores still heard from, campaigns first (so leaders also spread evenly over
        the stores); the others hold their own campaign back a few election timeouts, in
        case the chosen one cannot (under load a round over thousands of regions takes
        seconds: a shorter wait let them campaign against it, and depose the leaders it had
        just won). A region reopened with a term past the bootstrap's was led before: the
        other stores most likely still lead it (a restart of this store alone), and their
        leaders wake up to tell this one (`_on_store_back`), so the chosen replica waits a
        few election timeouts for that before it campaigns (a whole cluster restarted still
        elects then). Campaigns start at most `_CAMPAIGNS_PER_TICK` a tick."""
        stores = [
            p.store_id
            for p in peer.region.peers
            if p.role == Voter and p.store_id != gone and p.store_id not in self._suspected
        ]
        if self.store_id not in stores:
            return  # a learner here, or this store is not among the chosen's candidates
        node = peer.node
        election = self.config.election_ticks
        if gone:
            # (A couple of ticks: the other stores notice the silence too, and stop
            # honouring the old leader's lease.)
            wait = 2
        elif _was_led(peer):
            wait = 3 * election
        else:
            wait = 0
        if designated_store(peer.region.id, stores) == self.store_id:
            node.forget_leader(wait)
            self._campaigns.append((peer.region.id, self.lanes.clock + wait))
        else:
            node.forget_leader(wait + 3 * election)

    def _maybe_create_peer(self, m: RaftMessage) -> Peer | None:
        """An uninitialized replica for a message to a region this store does not know, if the
        message may create one and its range overlaps no initialized region here (TiKV's
        rules)."""
        if (
            m.message.msg_type not in _CREATING_MSGS
            or m.HasField("extra_msg")
            and m.extra_msg.type != MsgNone
        ):
            return None
        dead = self.tombstones.get(m.region_id)
        if dead is not None:
            if m.region_epoch.conf_ver <= dead.region_epoch.conf_ver:
                return None
            gone = find_peer_on_store(dead, self.store_id)
            if gone is not None and m.to_peer.id == gone.id:
                # Peer ids are never reused: a message to the destroyed replica must not bring
                # it back empty. (Not `<=` as in TiKV, whose ids from PD only grow: ours are
                # `(allocating store << 40) | counter`, so a replica added back by a leader on
                # a store of lower id has a lower id. Older replicas are refused by the epoch.)
                return None
        for other in self.peers.values():
            o = other.region
            if other.initialized and ranges_overlap(m.start_key, m.end_key, o.start_key, o.end_key):
                # (Uninitialized replicas do not count, as in TiKV: a new region's message
                # may arrive before the snapshot of the region it split from; whichever
                # snapshot comes first wins, the other is refused as overlapping.)
                if (
                    m.message.msg_type in _VOTES
                    and other.region.region_epoch.version < m.region_epoch.version
                ):
                    # A region split off `other` elsewhere, not here yet: the split will
                    # create the peer; keep the vote for it until then.
                    if len(self._pending_votes) >= _MAX_PENDING_VOTES:
                        self._pending_votes.pop(next(iter(self._pending_votes)))
                    self._pending_votes[m.region_id] = m
                return None
        region = Region(id=m.region_id, start_key=m.start_key, end_key=m.end_key)
        region.peers.add().CopyFrom(m.to_peer)
        # Written now so that the votes this replica casts are never forgotten by a restart.
        wb = WriteBatch()
        wb.put(
            CF_RAFT_STATE,
            region_state_key(region.id),
            RegionLocalState(region=region).SerializeToString(),
        )
        self.engine.write(wb, sync=False)
        self.tombstones.pop(region.id, None)
        self.stats.peers_created += 1
        _log.debug("store %d: created peer %d of region %d", self.store_id, m.to_peer.id, region.id)
        return self._open_peer(region)

    def _destroy_peer(self, peer: Peer, *, merged_into: Region | None = None) -> None:
        """Remove this replica for good: its raft state, log, request-id records and apply
        state are deleted in the round's batch (after the region's earlier writes: rounds
        commit in order); a tombstone record keeps stale messages from recreating it. Its KV
        data goes too, unless it was merged: then the range belongs to `merged_into`."""
        rid = peer.region.id
        wb = self.batcher.batch
        self.batcher.mark_urgent()
        peer.storage.destroy(wb)
        if peer.initialized:
            region = peer.region
            if merged_into is None:
                wb.delete_range(CF_KV, region.start_key, region.end_key or None)
            lo, hi = dedupe_bounds(rid)
            wb.delete_range(CF_APPLY_STATE, lo, hi)
        wb.delete(CF_APPLY_STATE, apply_state_key(rid))
        state = RegionLocalState(state=Tombstone, region=peer.region)
        if merged_into is not None:
            state.merge_state.target.CopyFrom(merged_into)
            self.merged_into[rid] = merged_into
        wb.put(CF_RAFT_STATE, region_state_key(rid), state.SerializeToString())
        peer.fail_all(RegionNotFound(rid))
        if peer.was_leader:
            self._leader_count -= 1
        merge_cb = self._merge_callbacks.pop(rid, None)
        if merge_cb is not None:  # a merge asked here, settled elsewhere
            if merged_into is not None:
                merge_cb(merged_into, None)
            else:
                merge_cb(None, RegionNotFound(rid))
        del self.peers[rid]
        self._awake.discard(rid)
        self._dirty.discard(rid)
        self.tombstones[rid] = peer.region
        self.stats.peers_destroyed += 1
        _log.debug("store %d: destroyed peer %d of region %d", self.store_id, peer.meta.id, rid)

    def _build_snapshot(self, region_id: int, request_index: int) -> Snapshot:
        """The raft snapshot of a region at its applied index: called by raft on the leader
        when a follower needs one. The engine holds the applied state of the rounds already
        committed; the writes of applied rounds still in flight (or in the open round) come
        from the store's overlays, so the data is exactly the state at the applied index,
        and the region and conf state in memory are those of that index."""
        peer = self.peers[region_id]
        if peer.applied_index < request_index or peer.merge_state is not None:
            # (A merging region's replicas catch up from its log, which it keeps: a snapshot
            # would not carry the merge.)
            raise SnapshotTemporarilyUnavailable()
        data = build_snapshot_data(
            self.engine, peer.region, self._unwritten, peer.dedupe.unwritten_records()
        )
        snap = Snapshot(data=data)
        meta = snap.metadata
        meta.index, meta.term = peer.applied_index, peer.applied_term
        meta.conf_state.CopyFrom(peer.storage.conf_state())
        return snap
