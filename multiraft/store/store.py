"""The Store: one process's regions, driven in rounds (sans-I/O).

A round: acknowledge the write rounds the batcher finished (`on_persist_ready`, release the
messages that waited for them); propose the commands and ask the read indexes collected since
the last round; collect the Ready of every region that has one into the round's ONE engine
write batch (entries, hard states) while a leader's messages — and a follower's heartbeat
responses — go out at once (Raft thesis §10.2.1); apply the committed entries of every region
into that same batch (KV data, apply states, request-id records) and answer clients; hand the
batch to the batcher: one commit, one fsync, pipelined with the next round. Until a round is
committed, `_unwritten` (the overlay of its applied KV writes) answers reads, later commands
and snapshots. Frames for other stores leave through `OutboundLanes`, one frame per
destination store per round.

Time comes from `tick()`, randomness from the injected generator, bytes in through `on_frame`
and out through the `send(to_store, frame)` callable: the same code runs in the simulator and
in the server.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from batching import Batcher
from multiraft.engine import (
    CF_APPLY_STATE,
    CF_KV,
    CF_META,
    CF_RAFT_STATE,
    Engine,
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
from multiraft.proto.serverpb_pb2 import (
    BatchRaftMessage,
    ExtraMessage,
    Learner,
    MsgHibernateRequest,
    MsgHibernateResponse,
    MsgNone,
    MsgRegionWakeUp,
    RaftApplyState,
    RaftMessage,
    Region,
    RegionEpoch,
    RegionLocalState,
    Tombstone,
)
from multiraft.proto.serverpb_pb2 import Peer as PeerMeta
from multiraft.raft import (
    Config,
    EntryType,
    Error,
    MessageType,
    ProposalDropped,
    RawNode,
    ReadOnlyOption,
    Ready,
    Snapshot,
    SnapshotMetadata,
    SnapshotStatus,
    SnapshotTemporarilyUnavailable,
    SplitMix64,
    StateRole,
)
from router.codec import RAFT, FrameDecoder, FrameError, encode_batch
from router.lanes import OutboundLanes

from .apply import KvApplier, Unwritten, dedupe_bounds, read_applied, scan_applied
from .cmd import Command, CommandDecodeError, decode_command, encode_command
from .errors import (
    EpochNotMatch,
    InvalidRequest,
    KeyNotInRegion,
    RegionBusy,
    RegionNotFound,
    StaleCommand,
    StoreError,
)
from .ids import IdAllocator
from .membership import (
    REMOVE,
    apply_to_region,
    conf_state_from_region,
    decode_conf_change,
    plan_conf_change,
)
from .peer import Callback, Peer
from .region import (
    check_region_epoch,
    find_peer,
    find_peer_on_store,
    key_in_region,
    new_region,
    ranges_overlap,
    split_keys,
)
from .snapshot import (
    SnapshotDecodeError,
    build_snapshot_data,
    decode_snapshot_data,
    write_snapshot_data,
)

__all__ = ["StoreConfig", "StoreStats", "Store"]

_log = logging.getLogger(__name__)
_STORE_IDENT = meta_key("store_ident")
# Bootstrapped regions start at this log index (TiKV's RAFT_INIT_LOG_INDEX): a peer added
# later has an empty log, below it, so it always catches up with a snapshot that carries the
# region's data and membership.
RAFT_INIT_LOG_INDEX = 5
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
# Protobuf enum attribute lookups are slow (~2 µs): the hot paths use these constants.
_MSG_SNAPSHOT: Final = MessageType.MsgSnapshot
_MSG_HEARTBEAT: Final = MessageType.MsgHeartbeat
_MSG_HEARTBEAT_RESPONSE: Final = MessageType.MsgHeartbeatResponse
_ENTRY_CONF_CHANGE: Final = EntryType.EntryConfChange
_ENTRY_CONF_CHANGE_V2: Final = EntryType.EntryConfChangeV2
# Latency samples kept between two metrics flushes (the flush takes and clears them).
_MAX_SAMPLES: Final = 1 << 16
# send_snapshot(to_store, header, data, done): the server's snapshot connection.
SendSnapshot = Callable[[int, bytes, bytes, Callable[[bool], None]], None]


@dataclass
class StoreConfig:
    """The store's tunables (the server maps its TOML config onto these)."""

    election_ticks: int = 10
    heartbeat_ticks: int = 2
    check_quorum: bool = True
    pre_vote: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_frame_bytes: int = 4 << 20
    # Reads by leader lease instead of a ReadIndex heartbeat round (needs check_quorum; stale
    # for up to an election timeout if the clocks of the stores drift apart).
    lease_reads: bool = False
    # Followers learn a new commit index from the next append or heartbeat instead of an
    # append of its own (raft-rs `skip_bcast_commit`; TiKV's default): fewer messages per
    # write, followers apply a little later. Raft still broadcasts commits of conf changes.
    skip_bcast_commit: bool = True
    # Raft log GC: keep this many applied entries; compact once twice as many piled up.
    log_gc_keep: int = 1000
    # Retried writes apply once if retried within this many entries of the original.
    dedupe_window: int = 100_000


@dataclass
class StoreStats:
    """Cumulative plain counters (the simulator's `stats()` and the metrics flush read them)."""

    rounds: int = 0
    ticks: int = 0
    fsyncs: int = 0
    raft_messages_sent: int = 0
    frames_sent: int = 0
    raft_messages_received: int = 0
    bad_frames: int = 0
    dropped_messages: int = 0
    proposals: int = 0
    applied_entries: int = 0
    conf_changes: int = 0
    snapshots_sent: int = 0
    snapshots_failed: int = 0
    snapshots_applied: int = 0
    snapshots_rejected: int = 0
    log_compactions: int = 0
    peers_created: int = 0
    peers_destroyed: int = 0
    unreachable_reports: int = 0
    leader_changes: int = 0
    reads: int = 0
    # Raft messages by eraftpb MessageType value.
    sent_by_type: dict[int, int] = field(default_factory=dict)
    received_by_type: dict[int, int] = field(default_factory=dict)
    # Proposals that failed, by error code (raised at once or reported by callback).
    proposals_failed: dict[str, int] = field(default_factory=dict)
    # With a clock: samples since the metrics flush last took them (it clears them).
    propose_to_apply_seconds: list[float] = field(default_factory=list)
    apply_seconds: list[float] = field(default_factory=list)

    def failed(self, code: str) -> None:
        self.proposals_failed[code] = self.proposals_failed.get(code, 0) + 1


def initial_peer_id(region_id: int, store_id: int) -> int:
    """Peer ids of bootstrapped regions: every store derives the same ones. Later ids come
    from the id allocator, (store_id << 40) | counter, which never collides with these."""
    return (region_id << 16) | store_id


class Store:
    """Invariant: `peers` holds exactly the regions whose RegionLocalState is on disk."""

    def __init__(
        self,
        store_id: int,
        engine: Engine,
        send: Callable[[int, bytes], None],
        config: StoreConfig | None = None,
        rng: random.Random | None = None,
        send_snapshot: SendSnapshot | None = None,
        batcher: Batcher[Peer] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store_id = store_id
        self.engine = engine
        self.config = config or StoreConfig()
        self._send = send
        self.rng = rng if rng is not None else random.Random(store_id)
        self.peers: dict[int, Peer] = {}
        # Peers that may have work this round (a message, a tick, a proposal, persistence).
        self._dirty: set[int] = set()
        # Regions that tick (the others hibernate). Invariant: a subset of `peers`.
        self._awake: set[int] = set()
        # Store-level liveness: our tick count when we last heard from each store, and the
        # stores not heard from for an election timeout.
        self._last_heard: dict[int, int] = {}
        self._suspected: set[int] = set()
        # Stores a frame went to since the last tick (the others get a store heartbeat).
        self._sent_since_tick: set[int] = set()
        self.lanes = OutboundLanes(store_id, max_frame_bytes=self.config.max_frame_bytes)
        self._decoders: dict[int, FrameDecoder] = {}
        self.stats = StoreStats()
        self._send_snapshot = send_snapshot
        # Only for latency metrics (never for decisions: time is `tick()`).
        self._clock = clock
        # Raft writes of every region: one batch, one fsync per round. The server passes a
        # pipelined batcher (a writer thread) and sets its `on_complete` to run a round; by
        # default rounds commit inline (the simulator: deterministic).
        self.batcher: Batcher[Peer] = batcher if batcher is not None else Batcher(engine, pipelined=False)
        # Outcomes of snapshot sends, reported to raft at the next round: (region, peer, ok).
        self._snapshot_reports: list[tuple[int, int, bool]] = []
        # Regions whose replica here was removed: their last known metadata.
        self.tombstones: dict[int, Region] = {}
        # KV writes of applied commands whose round is not committed yet (see KvApplier).
        self._unwritten: Unwritten = {}
        self.ids = IdAllocator(engine, store_id)

    # -- bootstrap and recovery --------------------------------------------------------------

    def bootstrap(self, cluster_id: int, store_ids: list[int], initial_regions: int) -> None:
        """First start of a brand-new cluster: write the store ident and the initial regions
        (evenly split key ranges, one peer on each initial store), each starting at log index
        `RAFT_INIT_LOG_INDEX`. Every initial store derives the same regions. A store that
        already holds data is left as it is."""
        if self.engine.get(CF_META, _STORE_IDENT) is not None:
            self.open(cluster_id)
            return
        assert self.store_id in store_ids
        wb = WriteBatch()
        keys = [b"", *split_keys(initial_regions), b""]
        init = RAFT_INIT_LOG_INDEX
        for i in range(initial_regions):
            rid = i + 1
            region = new_region(
                rid, keys[i], keys[i + 1], [(initial_peer_id(rid, s), s) for s in store_ids]
            )
            wb.put(
                CF_RAFT_STATE,
                region_state_key(rid),
                RegionLocalState(region=region).SerializeToString(),
            )
            snap = Snapshot(metadata=SnapshotMetadata(index=init, term=init))
            snap.metadata.conf_state.voters.extend(p.id for p in region.peers)
            RegionStorage(self.engine, rid).apply_snapshot(wb, snap)
            state = RaftApplyState(applied_index=init, applied_term=init)
            wb.put(CF_APPLY_STATE, apply_state_key(rid), state.SerializeToString())
        wb.put(CF_META, _STORE_IDENT, f"{cluster_id}:{self.store_id}".encode())
        self.engine.write(wb, sync=True)
        wb.run_commit_hooks()
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
        for key, value in self.engine.scan(CF_RAFT_STATE):
            region_id, kind = decode_raft_state_key(key)
            if kind != REGION_STATE:
                continue
            state = RegionLocalState.FromString(value)
            if state.state == Tombstone:
                self.tombstones[region_id] = state.region
            else:
                self._open_peer(state.region)

    def _open_peer(self, region: Region) -> Peer:
        storage = RegionStorage(
            self.engine,
            region.id,
            snapshot_builder=lambda req, to: self._build_snapshot(region.id, req),
        )
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
            read_only_option=ReadOnlyOption.LeaseBased if c.lease_reads else ReadOnlyOption.Safe,
            skip_bcast_commit=c.skip_bcast_commit,
        )
        if region.region_epoch.version:
            cs = conf_state_from_region(region)
            have = storage.conf_state()
            if set(cs.voters) != set(have.voters) or set(cs.learners) != set(have.learners):
                # A crash between an applied conf change and its raft conf state: repair.
                wb = WriteBatch()
                storage.set_conf_state(wb, cs)
                self.engine.write(wb, sync=True)
                wb.run_commit_hooks()
        node = RawNode(cfg, storage, rng=SplitMix64(self.rng.getrandbits(64)))
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
        self.peers[region.id] = peer
        self._dirty.add(region.id)
        self._awake.add(region.id)
        for p in region.peers:
            if p.store_id != self.store_id:
                self._last_heard.setdefault(p.store_id, 0)
        return peer

    # -- input ------------------------------------------------------------------------------

    def tick(self) -> None:
        """One base tick for every awake region; hibernated regions cost nothing. Also sends
        store heartbeats and wakes the regions whose leader's store went silent."""
        self.lanes.clock += 1
        clock = self.lanes.clock
        election = self.config.election_ticks
        for rid in list(self._awake):
            peer = self.peers[rid]
            peer.node.tick()
            self._dirty.add(rid)
            peer.idle_ticks += 1
            # Once idle for an election timeout, ask the followers (again every election
            # timeout while some have not agreed).
            if (
                peer.idle_ticks >= election
                and peer.idle_ticks % election == 0
                and peer.can_hibernate()
            ):
                self._ask_to_hibernate(peer)
        self.stats.ticks += len(self._awake)
        # Store heartbeats: one (empty) frame per store per tick if nothing else went there.
        for store in self._last_heard:
            if store not in self._sent_since_tick:
                self._send(
                    store,
                    encode_batch(
                        BatchRaftMessage(from_store_id=self.store_id, last_observed_time=clock)
                    ),
                )
                self.stats.frames_sent += 1
        self._sent_since_tick = set()
        for store, heard in self._last_heard.items():
            if clock - heard >= election and store not in self._suspected:
                self._suspected.add(store)
                self._wake_regions_led_from(store)

    def _wake(self, rid: int) -> None:
        peer = self.peers[rid]
        peer.idle_ticks = 0
        peer.hibernate_votes = set()
        if rid not in self._awake:
            self._awake.add(rid)
            if peer.is_leader():
                # Give the followers a full election timeout to answer before check_quorum.
                peer.node.raft.election_elapsed = 0
        self._dirty.add(rid)

    def _wake_regions_led_from(self, store: int) -> None:
        """A store went silent: hibernated regions whose leader was there tick again, so they
        elect a new leader after an election timeout."""
        for rid, peer in self.peers.items():
            if rid in self._awake:
                continue
            leader = peer.leader_meta()
            if leader is None or leader.store_id == store:
                self._wake(rid)

    def _ask_to_hibernate(self, peer: Peer) -> None:
        raft = peer.node.raft
        peer.hibernate_votes = {raft.id}
        extra = ExtraMessage(
            type=MsgHibernateRequest, index=raft.raft_log.last_index(), term=raft.term
        )
        for p in peer.region.peers:
            if p.id != peer.meta.id:
                self._send_extra(peer, p, extra)

    def _on_extra(self, peer: Peer, m: RaftMessage) -> None:
        extra = m.extra_msg
        raft = peer.node.raft
        rid = peer.region.id
        if extra.type == MsgHibernateRequest:
            agree = (
                raft.state == StateRole.Follower
                and raft.leader_id == m.from_peer.id
                and raft.term == extra.term
                and raft.raft_log.last_index() == extra.index
                and raft.raft_log.committed == extra.index
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
                or extra.term != raft.term
                or extra.index != raft.raft_log.last_index()
                or not peer.can_hibernate()
            ):
                return
            peer.hibernate_votes.add(m.from_peer.id)
            if all(p.id in peer.hibernate_votes for p in peer.region.peers):
                self._awake.discard(rid)
        elif extra.type == MsgRegionWakeUp:
            self._wake(rid)

    def _send_extra(self, peer: Peer, to: PeerMeta, extra: ExtraMessage) -> None:
        region = peer.region
        rm = RaftMessage(region_id=region.id, start_key=region.start_key, end_key=region.end_key)
        rm.from_peer.CopyFrom(peer.meta)
        rm.to_peer.CopyFrom(to)
        rm.region_epoch.CopyFrom(region.region_epoch)
        rm.extra_msg.CopyFrom(extra)
        self.lanes.push(to.store_id, rm)

    def awake_regions(self) -> int:
        return len(self._awake)

    def on_frame(self, from_store: int, data: bytes) -> None:
        """Bytes from another store's connection (the simulator delivers whole frames)."""
        dec = self._decoders.get(from_store)
        if dec is None:
            dec = self._decoders[from_store] = FrameDecoder()
        try:
            frames = dec.feed(data)
        except FrameError as e:
            self.stats.bad_frames += 1
            _log.warning("store %d: bad frame from store %d: %s", self.store_id, from_store, e)
            self._decoders.pop(from_store, None)
            return
        for kind, frame in frames:
            if kind == RAFT:
                assert isinstance(frame, BatchRaftMessage)
                self.on_batch(from_store, frame)

    def on_batch(self, from_store: int, batch: BatchRaftMessage) -> None:
        """A decoded frame from another store (the transport decodes; the simulator hands
        bytes to `on_frame`). Any frame, even an empty one, is a store heartbeat."""
        self._last_heard[from_store] = self.lanes.clock
        self._suspected.discard(from_store)
        for m in batch.msgs:
            self.on_raft_message(m)

    def on_raft_message(self, m: RaftMessage) -> None:
        self.stats.raft_messages_received += 1
        rid = m.region_id
        peer = self.peers.get(rid)
        if m.to_peer.store_id != self.store_id:
            self.stats.dropped_messages += 1
            return
        if m.is_tombstone:
            self._on_tombstone(peer, m)
            return
        if peer is None:
            peer = self._maybe_create_peer(m)
            if peer is None:
                self.stats.dropped_messages += 1
                return
        elif m.to_peer.id != peer.meta.id:
            # Another replica of this region on this store: if the sender's configuration is
            # newer, ours was removed and replaced; it is gone for good.
            if (
                m.to_peer.id > peer.meta.id
                and m.region_epoch.conf_ver > peer.region.region_epoch.conf_ver
            ):
                self._destroy_peer(peer)
            self.stats.dropped_messages += 1
            return
        sender = m.from_peer
        if peer.find_peer(sender.id) is None:
            ours = peer.region.region_epoch
            if peer.initialized and m.region_epoch.conf_ver <= ours.conf_ver:
                # A message from a peer the region does not have: it was removed (ids are never
                # reused). Tell it, if it knows itself to be a member of an older configuration.
                self.stats.dropped_messages += 1
                if 0 < m.region_epoch.conf_ver < ours.conf_ver:
                    self._send_tombstone(peer, sender)
                return
            peer.peer_cache[sender.id] = sender
        if m.HasField("extra_msg") and m.extra_msg.type != MsgNone:
            self._on_extra(peer, m)
            return
        msg = m.message
        mt = msg.msg_type
        by_type = self.stats.received_by_type
        by_type[mt] = by_type.get(mt, 0) + 1
        if mt == _MSG_SNAPSHOT and not self._check_snapshot(peer, m):
            self.stats.snapshots_rejected += 1
            return
        if mt != _MSG_HEARTBEAT and mt != _MSG_HEARTBEAT_RESPONSE:
            # Traffic other than heartbeats is activity: the region wakes up. A hibernated
            # follower does not need heartbeats to notice a dead leader: store-level liveness
            # wakes it when the leader's store goes silent.
            self._wake(rid)
        try:
            peer.node.step(msg)
        except Error as e:
            self.stats.dropped_messages += 1
            _log.debug("region %d: dropped %s: %s", rid, msg.msg_type, e)
        self._dirty.add(rid)

    def on_snapshot(self, from_store: int, header: bytes, data: bytes) -> None:
        """A snapshot received on the snapshot connection: `header` is the RaftMessage with
        the snapshot's data left out, `data` the data."""
        try:
            m = RaftMessage.FromString(header)
        except Exception:  # protobuf raises DecodeError and others on garbage
            self.stats.snapshots_rejected += 1
            return
        m.message.snapshot.data = data
        self.on_raft_message(m)

    def report_unreachable(self, store_id: int) -> None:
        """The transport could not deliver to `store_id`: raft stops pipelining to its peers
        (probe state) until they answer again."""
        self.stats.unreachable_reports += 1
        for rid in self._awake:
            peer = self.peers[rid]
            if not peer.is_leader():
                continue
            for p in peer.region.peers:
                if p.store_id == store_id:
                    peer.node.report_unreachable(p.id)

    def _check_snapshot(self, peer: Peer, m: RaftMessage) -> bool:
        """A snapshot may be applied only if it is a region snapshot naming this replica whose
        range overlaps no other region of this store (TiKV's check before stepping it)."""
        try:
            snap = decode_snapshot_data(m.message.snapshot.data)
        except SnapshotDecodeError as e:
            _log.warning(
                "region %d: bad snapshot from store %d: %s", m.region_id, m.from_peer.store_id, e
            )
            return False
        region = snap.region
        if region.id != peer.region.id or find_peer(region, peer.meta.id) is None:
            return False
        for other in self.peers.values():
            if (
                other is not peer
                and other.initialized
                and ranges_overlap(
                    region.start_key, region.end_key, other.region.start_key, other.region.end_key
                )
            ):
                _log.info(
                    "region %d: snapshot overlaps region %d here; dropped",
                    region.id,
                    other.region.id,
                )
                return False
        return True

    def _maybe_create_peer(self, m: RaftMessage) -> Peer | None:
        """An uninitialized replica for a message to a region this store does not know, if the
        message may create one and its range overlaps no region here (TiKV's rules)."""
        if (
            m.message.msg_type not in _CREATING_MSGS
            or m.HasField("extra_msg")
            and m.extra_msg.type != MsgNone
        ):
            return None
        dead = self.tombstones.get(m.region_id)
        if dead is not None and m.region_epoch.conf_ver <= dead.region_epoch.conf_ver:
            return None
        for other in self.peers.values():
            if ranges_overlap(m.start_key, m.end_key, other.region.start_key, other.region.end_key):
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
        _log.info("store %d: created peer %d of region %d", self.store_id, m.to_peer.id, region.id)
        return self._open_peer(region)

    def _on_tombstone(self, peer: Peer | None, m: RaftMessage) -> None:
        if peer is None or peer.meta.id != m.to_peer.id:
            return
        if peer.initialized and m.region_epoch.conf_ver <= peer.region.region_epoch.conf_ver:
            return
        self._destroy_peer(peer)

    def _send_tombstone(self, peer: Peer, to: PeerMeta) -> None:
        region = peer.region
        rm = RaftMessage(region_id=region.id, is_tombstone=True)
        rm.from_peer.CopyFrom(peer.meta)
        rm.to_peer.CopyFrom(to)
        rm.region_epoch.CopyFrom(region.region_epoch)
        self.lanes.push(to.store_id, rm)

    def _destroy_peer(self, peer: Peer) -> None:
        """Remove this replica for good: its raft state, log, data and apply state are deleted
        in the round's batch (after the region's earlier writes: rounds commit in order); a
        tombstone record keeps stale messages from recreating it."""
        rid = peer.region.id
        wb = self.batcher.batch
        peer.storage.destroy(wb)
        if peer.initialized:
            region = peer.region
            wb.delete_range(CF_KV, region.start_key, region.end_key or None)
            lo, hi = dedupe_bounds(rid)
            wb.delete_range(CF_APPLY_STATE, lo, hi)
        wb.delete(CF_APPLY_STATE, apply_state_key(rid))
        state = RegionLocalState(state=Tombstone, region=peer.region)
        wb.put(CF_RAFT_STATE, region_state_key(rid), state.SerializeToString())
        peer.fail_all(RegionNotFound(rid))
        del self.peers[rid]
        self._awake.discard(rid)
        self._dirty.discard(rid)
        self.tombstones[rid] = peer.region
        self.stats.peers_destroyed += 1
        _log.info("store %d: destroyed peer %d of region %d", self.store_id, peer.meta.id, rid)

    def _build_snapshot(self, region_id: int, request_index: int) -> Snapshot:
        """The raft snapshot of a region at its applied index: called by raft on the leader
        when a follower needs one. The engine holds the applied state of the rounds already
        committed; the writes of applied rounds still in flight (or in the open round) come
        from the store's overlays, so the data is exactly the state at the applied index,
        and the region and conf state in memory are those of that index."""
        peer = self.peers[region_id]
        if peer.applied_index < request_index:
            raise SnapshotTemporarilyUnavailable()
        data = build_snapshot_data(
            self.engine, peer.region, self._unwritten, peer.dedupe.unwritten_records()
        )
        snap = Snapshot(data=data)
        meta = snap.metadata
        meta.index, meta.term = peer.applied_index, peer.applied_term
        meta.conf_state.CopyFrom(peer.storage.conf_state())
        return snap

    # -- client API ----------------------------------------------------------------------------

    def region_for_key(self, key: bytes) -> Region | None:
        for peer in self.peers.values():
            if peer.initialized and key_in_region(key, peer.region):
                return peer.region
        return None

    def _peer_for(self, region_id: int, epoch: RegionEpoch | None, keys: list[bytes]) -> Peer:
        peer = self.peers.get(region_id)
        if peer is None or not peer.initialized:
            raise RegionNotFound(region_id)
        if epoch is not None:
            check_region_epoch(epoch, peer.region, check_conf_ver=False)
        for k in keys:
            if not key_in_region(k, peer.region):
                raise KeyNotInRegion(k, peer.region)
        return peer

    def propose(self, cmd: Command, callback: Callback, epoch: RegionEpoch | None = None) -> None:
        """Submit a write command; `callback(result, error)` fires once when it is applied (or
        definitely lost). Raises NotLeader / RegionNotFound / EpochNotMatch / KeyNotInRegion."""
        stats = self.stats
        try:
            peer = self._peer_for(cmd.region_id, epoch, [op.key for op in cmd.ops])
            cmd.conf_ver = peer.region.region_epoch.conf_ver
            cmd.version = peer.region.region_epoch.version
            data = encode_command(cmd)
            clock = self._clock
            t0 = clock() if clock is not None else 0.0

            def done(result: Any, err: StoreError | None) -> None:
                if err is not None:
                    stats.failed(err.code)
                elif clock is not None and len(stats.propose_to_apply_seconds) < _MAX_SAMPLES:
                    stats.propose_to_apply_seconds.append(clock() - t0)
                callback(result, err)

            peer.submit_command(data, done)
        except StoreError as e:
            stats.failed(e.code)
            raise
        stats.proposals += 1
        self._wake(cmd.region_id)

    def get(
        self, region_id: int, key: bytes, callback: Callback, epoch: RegionEpoch | None = None
    ) -> None:
        """A linearizable read (ReadIndex): `callback(value_or_None, error)`."""
        peer = self._peer_for(region_id, epoch, [key])

        def done(err: StoreError | None) -> None:
            if err is not None:
                callback(None, err)
            else:
                callback(read_applied(self.engine, self._unwritten, key), None)

        peer.submit_read(done)
        self.stats.reads += 1
        self._wake(region_id)

    def transfer_leader(self, region_id: int, to_store: int, callback: Callback) -> None:
        """Ask the region's leader (here) to hand leadership to its replica on `to_store`;
        `callback(None, None)` once the transfer started (raft finishes it within an election
        timeout or abandons it). Raises NotLeader / RegionNotFound / InvalidRequest."""
        peer = self.peers.get(region_id)
        if peer is None or not peer.initialized:
            raise RegionNotFound(region_id)
        if not peer.is_leader():
            raise peer.not_leader()
        target = find_peer_on_store(peer.region, to_store)
        if target is None or target.role == Learner:
            raise InvalidRequest(f"region {region_id} has no voter on store {to_store}")
        self._wake(region_id)
        if target.id != peer.meta.id:
            peer.node.transfer_leader(target.id)
        callback(None, None)

    def change_peer(self, region_id: int, op: str, store_id: int, callback: Callback) -> None:
        """Add a voter ("add_voter", promoting a learner if that store has one), add a learner
        ("add_learner") or remove the replica on `store_id` ("remove"). `callback(region,
        None)` with the new region once the change is applied here (the leader), or
        `callback(None, error)`. Raises NotLeader / RegionNotFound / InvalidRequest /
        RegionBusy (another change is in flight)."""
        peer = self.peers.get(region_id)
        if peer is None or not peer.initialized:
            raise RegionNotFound(region_id)
        if not peer.is_leader():
            raise peer.not_leader()
        raft = peer.node.raft
        if raft.has_pending_conf() or peer.has_pending_conf_change():
            raise RegionBusy(f"region {region_id}: a membership change is in progress")
        if raft.lead_transferee is not None:
            raise RegionBusy(f"region {region_id}: a leader transfer is in progress")
        new_id = 0 if op == REMOVE else self.ids.next_id()
        cc = plan_conf_change(peer.region, op, store_id, peer.meta.id, new_id)
        try:
            peer.node.propose_conf_change(b"", cc)
        except ProposalDropped as e:
            raise StaleCommand(f"region {region_id}: {e}") from e
        peer.track_proposal(raft.raft_log.last_index(), raft.term, callback, conf_change=True)
        self.stats.conf_changes += 1
        self._wake(region_id)

    def scan(
        self,
        region_id: int,
        start: bytes,
        end: bytes,
        limit: int,
        callback: Callback,
        epoch: RegionEpoch | None = None,
    ) -> None:
        """A linearizable range read within one region (ReadIndex): `callback(pairs, error)`
        with at most `limit` (key, value) pairs, `start <= key < end` clipped to the region;
        an empty `end` means the region's end."""
        peer = self._peer_for(region_id, epoch, [start] if start else [])

        def done(err: StoreError | None) -> None:
            if err is not None:
                callback(None, err)
                return
            region = peer.region
            lo = max(start, region.start_key)
            hi: bytes | None = end or None
            if region.end_key and (hi is None or hi > region.end_key):
                hi = region.end_key
            callback(scan_applied(self.engine, self._unwritten, lo, hi, limit), None)

        peer.submit_read(done)
        self.stats.reads += 1
        self._wake(region_id)

    # -- the round ----------------------------------------------------------------------------

    def has_work(self) -> bool:
        """True when a `round()` would do something (the server runs one soon after input)."""
        return bool(self._dirty) or self.batcher.has_open_writes()

    def is_hibernated(self, region_id: int) -> bool:
        return region_id in self.peers and region_id not in self._awake

    def round(self) -> None:
        """Do all the work that is ready: see the module docstring."""
        self.stats.rounds += 1
        self._poll_persisted()
        if self._snapshot_reports:
            self._report_snapshots()
        dirty, self._dirty = self._dirty, set()
        batcher = self.batcher
        work: list[tuple[Peer, list[Any]]] = []
        restored = False
        for rid in dirty:
            peer = self.peers.get(rid)
            if peer is None:
                continue
            if peer.has_client_work():
                peer.flush_client_work()
            node = peer.node
            if not node.has_ready():
                continue
            rd = node.ready()
            if rd.ss is not None:
                peer.on_role_change()
                self._wake(rid)
                if peer.was_leader:
                    self.stats.leader_changes += 1
            if rd.read_states:
                peer.on_read_states(rd.read_states)
            if rd.snapshot.metadata.index:
                self._apply_snapshot(peer, batcher.batch, rd.snapshot)
                restored = True
            if rd.persisted_messages:
                self._send_heartbeat_responses_now(peer, rd)
            # Entries, hard state and the snapshot's raft state go into the round's batch; a
            # leader's messages go out now, the rest once the round is durable.
            send_now, to_apply = batcher.add_ready(peer, rd)
            self._send_raft(peer, send_now)
            if to_apply:
                work.append((peer, to_apply))
        # What raft hands out to apply is committed and already durable here.
        self._apply(work)
        if batcher.submit(block=restored) is not None and restored:
            # A snapshot's data must be readable before the region serves from it: wait
            # (rare; an inline batcher committed already).
            while batcher.in_flight():
                batcher.wait()
        self._poll_persisted()
        self._flush_lanes()

    def _send_heartbeat_responses_now(self, peer: Peer, rd: Ready) -> None:
        """A follower's heartbeat responses go out now instead of after the round's fsync
        (raft-rs holds every message of a non-leader until its Ready is persisted). They
        acknowledge no log entry and no vote — only that this replica is at the leader's term
        and not past it — which is what a ReadIndex round needs; the term they carry is in
        memory already, and a vote (the only state a crash must not lose before answering)
        travels in a vote response, which still waits. So ReadIndex reads stop queueing behind
        the followers' write rounds."""
        held = rd.persisted_messages
        early = [m for m in held if m.msg_type == _MSG_HEARTBEAT_RESPONSE]
        if early:
            rd.persisted_messages = [m for m in held if m.msg_type != _MSG_HEARTBEAT_RESPONSE]
            self._send_raft(peer, early)

    def _poll_persisted(self) -> None:
        """Acknowledge the rounds the writer finished: raft heard `on_persist_ready` (from the
        batcher); release the messages that waited for the fsync; look at those regions again
        (persistence may let a leader commit or a follower apply)."""
        for rnd in self.batcher.poll_completed():
            self.stats.fsyncs += rnd.synced
            for peer, msgs in rnd.held:
                self._send_raft(peer, msgs)
            for peer, _ in rnd.acks:
                if self.peers.get(peer.region.id) is peer:
                    self._dirty.add(peer.region.id)

    def _apply(self, work: list[tuple[Peer, list[Any]]]) -> None:
        if not work:
            return
        clock = self._clock
        t0 = clock() if clock is not None else 0.0
        # The writes go into the round's batch: one commit (one fsync) for the raft state and
        # the applied data of the round. Until it is committed, `_unwritten` answers for them
        # (reads, later commands, snapshots).
        batcher = self.batcher
        kv_wb = batcher.batch
        applier = KvApplier(self.engine, kv_wb, self._unwritten, batcher.round_number)
        done: list[tuple[Peer, Any, Any, StoreError | None]] = []
        removed: list[Peer] = []
        for peer, entries in work:
            for e in entries:
                result: Any = None
                err: StoreError | None = None
                if e.entry_type == _ENTRY_CONF_CHANGE:
                    result, err = self._apply_conf_change(peer, e, kv_wb)
                    if find_peer(peer.region, peer.meta.id) is None:
                        removed.append(peer)
                elif e.entry_type == _ENTRY_CONF_CHANGE_V2:
                    # Only raft's own empty "leave joint" entries: this store proposes v1 only.
                    if e.data:
                        err = StoreError(
                            f"region {peer.region.id}: unexpected ConfChangeV2 at {e.index}"
                        )
                elif e.data:
                    try:
                        cmd = decode_command(e.data)
                    except CommandDecodeError as ex:
                        err = StoreError(f"bad command at index {e.index}: {ex}")
                    else:
                        epoch = peer.region.region_epoch
                        if cmd.region_id != peer.region.id or cmd.version != epoch.version:
                            err = EpochNotMatch(
                                f"region {peer.region.id}: command proposed in another epoch",
                                [peer.region],
                            )
                        else:
                            result = applier.apply(cmd, peer.dedupe, e.index)
                done.append((peer, e, result, err))
                peer.applied_index, peer.applied_term = e.index, e.term
                self.stats.applied_entries += 1
            state = RaftApplyState(applied_index=peer.applied_index, applied_term=peer.applied_term)
            kv_wb.put(CF_APPLY_STATE, apply_state_key(peer.region.id), state.SerializeToString())
            self._maybe_gc_log(peer, kv_wb)
        kv_wb.add_commit_hook(applier.forget_written)
        if clock is not None and len(self.stats.apply_seconds) < _MAX_SAMPLES:
            self.stats.apply_seconds.append(clock() - t0)
        for peer, _entries in work:
            peer.node.advance_apply_to(peer.applied_index)
        # A write is answered now: its entry is committed (durable on a quorum) and its
        # result is final; a restart before this round is written applies it again.
        for peer, e, result, err in done:
            peer.complete_proposal(e, result, err)
        for peer, _entries in work:
            peer.serve_ready_reads()
        for peer in removed:
            if self.peers.get(peer.region.id) is peer:
                self._destroy_peer(peer)

    def _apply_conf_change(
        self, peer: Peer, e: Any, wb: WriteBatch
    ) -> tuple[Region | None, StoreError | None]:
        """Apply a committed membership change to raft and to the region metadata (persisted
        in the apply batch with the conf state)."""
        region = peer.region
        try:
            req = decode_conf_change(e.data)
        except Exception as ex:  # garbage in a committed entry: skipped alike everywhere
            return None, StoreError(f"region {region.id}: bad conf change at {e.index}: {ex}")
        if req.conf_ver != region.region_epoch.conf_ver:
            return None, EpochNotMatch(
                f"region {region.id}: conf change proposed in another epoch", [region]
            )
        cs = peer.node.apply_conf_change(req.cc)
        new = apply_to_region(region, req)
        # The region (with the apply state, in `wb`) is the source of truth; the raft conf
        # state follows in the round's batch (recovery re-derives it if a crash split them).
        peer.storage.set_conf_state(self.batcher.batch, cs)
        wb.put(
            CF_RAFT_STATE,
            region_state_key(region.id),
            RegionLocalState(region=new).SerializeToString(),
        )
        peer.set_region(new)
        for p in new.peers:
            if p.store_id != self.store_id:
                self._last_heard.setdefault(p.store_id, self.lanes.clock)
        gone = find_peer(region, req.peer.id) if find_peer(new, req.peer.id) is None else None
        if gone is not None and peer.is_leader():
            # The removed replica may never hear of its removal (the leader stops talking to
            # it): tell it directly.
            self._send_tombstone(peer, gone)
        _log.info(
            "region %d: applied conf change %s at %d, now %s",
            region.id,
            req.cc.change_type,
            e.index,
            [(p.id, p.store_id, p.role) for p in new.peers],
        )
        return new, None

    def _maybe_gc_log(self, peer: Peer, wb: WriteBatch) -> None:
        """Compact the applied log, keeping `log_gc_keep` entries for slow followers (those
        further behind get a snapshot); amortized: only once twice as many piled up."""
        keep = self.config.log_gc_keep
        storage = peer.storage
        if peer.applied_index - storage.truncated_index() <= 2 * keep:
            return
        compact_to = peer.applied_index - keep + 1
        # Into the round's batch, after this region's raft writes of the round: it becomes
        # durable with (never before) the apply state written just before it.
        batch = self.batcher.batch
        if storage.compact(batch, compact_to):
            self.stats.log_compactions += 1
            peer.dedupe.gc(batch, peer.applied_index)

    def _apply_snapshot(self, peer: Peer, wb: WriteBatch, snapshot: Snapshot) -> None:
        """Persist a snapshot raft accepted (checked by `_check_snapshot` before stepping): the
        range's data, the region and the apply state, in the round's batch (the batcher adds
        the raft state). Raft counts it applied once the round is durable."""
        data = decode_snapshot_data(snapshot.data)
        meta = snapshot.metadata
        region = data.region
        if peer.initialized:
            old = peer.region
            wb.delete_range(CF_KV, old.start_key, old.end_key or None)
        write_snapshot_data(wb, data)
        wb.put(
            CF_RAFT_STATE,
            region_state_key(region.id),
            RegionLocalState(region=region).SerializeToString(),
        )
        state = RaftApplyState(applied_index=meta.index, applied_term=meta.term)
        wb.put(CF_APPLY_STATE, apply_state_key(region.id), state.SerializeToString())
        peer.set_region(region)
        peer.applied_index, peer.applied_term = meta.index, meta.term
        peer.dedupe.clear_cache()
        peer.restored_index = meta.index
        for p in region.peers:
            if p.store_id != self.store_id:
                self._last_heard.setdefault(p.store_id, self.lanes.clock)
        self.stats.snapshots_applied += 1
        _log.info(
            "region %d: applied snapshot at %d (%d keys)", region.id, meta.index, len(data.kv) // 2
        )

    def _report_snapshots(self) -> None:
        reports, self._snapshot_reports = self._snapshot_reports, []
        for rid, to, ok in reports:
            peer = self.peers.get(rid)
            if peer is None:
                continue
            if not ok:
                self.stats.snapshots_failed += 1
            peer.node.report_snapshot(to, SnapshotStatus.Finish if ok else SnapshotStatus.Failure)
            self._dirty.add(rid)

    def _send_raft(self, peer: Peer, msgs: list[Any]) -> None:
        if not msgs:
            return
        region = peer.region
        stats = self.stats
        by_type = stats.sent_by_type
        for m in msgs:
            to = peer.find_peer(m.to)
            if to is None:
                self.stats.dropped_messages += 1
                continue
            rm = RaftMessage(
                region_id=region.id, start_key=region.start_key, end_key=region.end_key
            )
            rm.from_peer.CopyFrom(peer.meta)
            rm.to_peer.CopyFrom(to)
            rm.region_epoch.CopyFrom(region.region_epoch)
            rm.message.CopyFrom(m)
            stats.raft_messages_sent += 1
            mt = m.msg_type
            by_type[mt] = by_type.get(mt, 0) + 1
            if m.msg_type == _MSG_SNAPSHOT:
                self._send_snapshot_msg(peer, to, rm)
            else:
                self.lanes.push(to.store_id, rm)

    def _send_snapshot_msg(self, peer: Peer, to: PeerMeta, rm: RaftMessage) -> None:
        """Snapshots go on the snapshot connection (so they never delay heartbeats); raft
        hears how it went at the next round (`report_snapshot`)."""
        rid = peer.region.id
        self.stats.snapshots_sent += 1
        if self._send_snapshot is None:
            self.lanes.push(to.store_id, rm)
            self._snapshot_reports.append((rid, to.id, True))
            return
        data = rm.message.snapshot.data
        rm.message.snapshot.data = b""

        def done(ok: bool) -> None:
            self._snapshot_reports.append((rid, to.id, ok))
            self._dirty.add(rid)

        self._send_snapshot(to.store_id, rm.SerializeToString(), data, done)

    def _flush_lanes(self) -> None:
        for store, frames in self.lanes.drain().items():
            self._sent_since_tick.add(store)
            for f in frames:
                self.stats.frames_sent += 1
                self._send(store, f)

    # -- inspection -----------------------------------------------------------------------------

    def leaders(self) -> int:
        return sum(1 for p in self.peers.values() if p.node.raft.state == StateRole.Leader)

    def stop(self, err: StoreError) -> None:
        """Fail everything that waits on this store (it is going away)."""
        for peer in self.peers.values():
            peer.fail_all(err)
