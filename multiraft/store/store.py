"""The Store: one process's regions, driven in rounds (sans-I/O).

A round: propose the commands and ask the read indexes collected since the last round; collect
the Ready of every region that has one into ONE engine write batch (entries, hard states) while
a leader's messages go out at once (Raft thesis §10.2.1); commit the batch with one fsync;
acknowledge persistence to every region (`on_persist_ready`) and release the messages that had
to wait for it; apply the committed entries of every region into one KV write batch (with the
apply states); answer clients. Frames for other stores leave through `OutboundLanes`, one frame
per destination store per round.

Time comes from `tick()`, randomness from the injected generator, bytes in through `on_frame`
and out through the `send(to_store, frame)` callable: the same code runs in the simulator and
in the server.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    MsgHibernateRequest,
    MsgHibernateResponse,
    MsgNone,
    MsgRegionWakeUp,
    RaftApplyState,
    RaftMessage,
    Region,
    RegionEpoch,
    RegionLocalState,
)
from multiraft.proto.serverpb_pb2 import Peer as PeerMeta
from multiraft.raft import (
    Config,
    ConfState,
    EntryType,
    Error,
    MessageType,
    RawNode,
    SplitMix64,
    StateRole,
)
from router.codec import RAFT, FrameDecoder, FrameError, encode_batch
from router.lanes import OutboundLanes

from .apply import KvApplier
from .cmd import Command, CommandDecodeError, decode_command, encode_command
from .errors import EpochNotMatch, KeyNotInRegion, RegionNotFound, StoreError
from .peer import Callback, Peer
from .region import check_region_epoch, key_in_region, new_region, split_keys

__all__ = ["StoreConfig", "StoreStats", "Store"]

_log = logging.getLogger(__name__)
_STORE_IDENT = meta_key("store_ident")


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

    # -- bootstrap and recovery --------------------------------------------------------------

    def bootstrap(self, cluster_id: int, store_ids: list[int], initial_regions: int) -> None:
        """First start of a brand-new cluster: write the store ident and the initial regions
        (evenly split key ranges, one peer on each initial store). Every initial store derives
        the same regions. A store that already holds data is left as it is."""
        if self.engine.get(CF_META, _STORE_IDENT) is not None:
            self.open(cluster_id)
            return
        assert self.store_id in store_ids
        wb = WriteBatch()
        keys = [b"", *split_keys(initial_regions), b""]
        storages = []
        for i in range(initial_regions):
            rid = i + 1
            region = new_region(rid, keys[i], keys[i + 1], [(initial_peer_id(rid, s), s) for s in store_ids])
            wb.put(CF_RAFT_STATE, region_state_key(rid), RegionLocalState(region=region).SerializeToString())
            storage = RegionStorage(self.engine, rid)
            storage.set_conf_state(wb, ConfState(voters=[p.id for p in region.peers]))
            storages.append(storage)
        wb.put(CF_META, _STORE_IDENT, f"{cluster_id}:{self.store_id}".encode())
        self.engine.write(wb, sync=True)
        wb.run_commit_hooks()
        self.open(cluster_id)

    def open(self, cluster_id: int) -> None:
        """Recover every region from the engine."""
        ident = self.engine.get(CF_META, _STORE_IDENT)
        if ident is None:
            raise StoreError("the data dir holds no store (bootstrap first)")
        want = f"{cluster_id}:{self.store_id}".encode()
        if ident != want:
            raise StoreError(f"the data dir belongs to cluster:store {ident.decode()}, not {want.decode()}")
        for key, value in self.engine.scan(CF_RAFT_STATE):
            region_id, kind = decode_raft_state_key(key)
            if kind != REGION_STATE:
                continue
            state = RegionLocalState.FromString(value)
            self._open_peer(state.region)

    def _open_peer(self, region: Region) -> Peer:
        storage = RegionStorage(self.engine, region.id)
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
        )
        node = RawNode(cfg, storage, rng=SplitMix64(self.rng.getrandbits(64)))
        peer = Peer(
            self.store_id, region, node, storage, applied.applied_index, applied.applied_term, self.engine
        )
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
            if peer.idle_ticks >= election and peer.idle_ticks % election == 0 and peer.can_hibernate():
                self._ask_to_hibernate(peer)
        self.stats.ticks += len(self._awake)
        # Store heartbeats: one (empty) frame per store per tick if nothing else went there.
        for store in self._last_heard:
            if store not in self._sent_since_tick:
                self._send(store, encode_batch(BatchRaftMessage(from_store_id=self.store_id, last_observed_time=clock)))
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
        extra = ExtraMessage(type=MsgHibernateRequest, index=raft.raft_log.last_index(), term=raft.term)
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
            reply = ExtraMessage(type=MsgHibernateResponse, agree=agree, index=extra.index, term=extra.term)
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
        self._last_heard[from_store] = self.lanes.clock
        self._suspected.discard(from_store)
        for kind, frame in frames:
            if kind == RAFT:
                assert isinstance(frame, BatchRaftMessage)
                for m in frame.msgs:
                    self.on_raft_message(m)

    def on_raft_message(self, m: RaftMessage) -> None:
        self.stats.raft_messages_received += 1
        peer = self.peers.get(m.region_id)
        if peer is None or m.to_peer.id != peer.meta.id:
            # Unknown region or a peer that is not ours (stale or misrouted): drop it.
            self.stats.dropped_messages += 1
            return
        if not any(p.id == m.from_peer.id for p in peer.region.peers):
            # A message from a peer the region does not have (removed): drop it.
            self.stats.dropped_messages += 1
            return
        if m.HasField("extra_msg") and m.extra_msg.type != MsgNone:
            self._on_extra(peer, m)
            return
        mt = m.message.msg_type
        if mt != MessageType.MsgHeartbeat and mt != MessageType.MsgHeartbeatResponse:
            # Traffic other than heartbeats is activity: the region wakes up. A hibernated
            # follower does not need heartbeats to notice a dead leader: store-level liveness
            # wakes it when the leader's store goes silent.
            self._wake(m.region_id)
        try:
            peer.node.step(m.message)
        except Error as e:
            self.stats.dropped_messages += 1
            _log.debug("region %d: dropped %s: %s", m.region_id, m.message.msg_type, e)
        self._dirty.add(m.region_id)

    # -- client API ----------------------------------------------------------------------------

    def region_for_key(self, key: bytes) -> Region | None:
        for peer in self.peers.values():
            if key_in_region(key, peer.region):
                return peer.region
        return None

    def _peer_for(self, region_id: int, epoch: RegionEpoch | None, keys: list[bytes]) -> Peer:
        peer = self.peers.get(region_id)
        if peer is None:
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
        peer = self._peer_for(cmd.region_id, epoch, [op.key for op in cmd.ops])
        cmd.conf_ver = peer.region.region_epoch.conf_ver
        cmd.version = peer.region.region_epoch.version
        peer.submit_command(encode_command(cmd), callback)
        self.stats.proposals += 1
        self._wake(cmd.region_id)

    def get(self, region_id: int, key: bytes, callback: Callback, epoch: RegionEpoch | None = None) -> None:
        """A linearizable read (ReadIndex): `callback(value_or_None, error)`."""
        peer = self._peer_for(region_id, epoch, [key])

        def done(err: StoreError | None) -> None:
            if err is not None:
                callback(None, err)
            else:
                callback(self.engine.get(CF_KV, key), None)

        peer.submit_read(done)
        self._wake(region_id)

    # -- the round ----------------------------------------------------------------------------

    def round(self) -> None:
        """Do all the work that is ready: see the module docstring."""
        self.stats.rounds += 1
        dirty, self._dirty = self._dirty, set()
        raft_wb = WriteBatch()
        handled: list[tuple[Peer, int, list[Any]]] = []
        held: list[tuple[Peer, list[Any]]] = []
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
            if rd.read_states:
                peer.on_read_states(rd.read_states)
            storage = peer.storage
            if rd.snapshot.metadata.index:
                storage.apply_snapshot(raft_wb, rd.snapshot)
            if rd.entries:
                storage.append(raft_wb, rd.entries)
            if rd.hs is not None:
                storage.set_hard_state(raft_wb, rd.hs)
            node.advance_append_async(rd)
            self._send_raft(peer, rd.messages)
            held.append((peer, rd.persisted_messages))
            handled.append((peer, rd.number, rd.committed_entries))
        if not handled:
            self._flush_lanes()
            return
        if not raft_wb.is_empty():
            self.engine.write(raft_wb, sync=True)
            self.stats.fsyncs += 1
            raft_wb.run_commit_hooks()
        for peer, number, _ in handled:
            peer.node.on_persist_ready(number)
            # Persistence may make entries applicable or let the leader commit: next round.
            self._dirty.add(peer.region.id)
        for peer, msgs in held:
            self._send_raft(peer, msgs)
        self._apply([(p, ents) for p, _, ents in handled if ents])
        self._flush_lanes()

    def _apply(self, work: list[tuple[Peer, list[Any]]]) -> None:
        if not work:
            return
        kv_wb = WriteBatch()
        applier = KvApplier(self.engine, kv_wb)
        done: list[tuple[Peer, Any, Any, StoreError | None]] = []
        for peer, entries in work:
            for e in entries:
                result: Any = None
                err: StoreError | None = None
                if e.entry_type != EntryType.EntryNormal:
                    raise AssertionError(
                        f"region {peer.region.id}: conf change entry at {e.index}; membership "
                        "changes are not supported by this store yet"
                    )
                if e.data:
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
                            result = applier.apply(cmd, peer.dedupe)
                done.append((peer, e, result, err))
                peer.applied_index, peer.applied_term = e.index, e.term
                self.stats.applied_entries += 1
            state = RaftApplyState(applied_index=peer.applied_index, applied_term=peer.applied_term)
            kv_wb.put(CF_APPLY_STATE, apply_state_key(peer.region.id), state.SerializeToString())
        self.engine.write(kv_wb, sync=False)
        kv_wb.run_commit_hooks()
        for peer, _entries in work:
            peer.node.advance_apply_to(peer.applied_index)
        for peer, e, result, err in done:
            peer.complete_proposal(e, result, err)
        for peer, _entries in work:
            peer.serve_ready_reads()

    def _send_raft(self, peer: Peer, msgs: list[Any]) -> None:
        if not msgs:
            return
        region = peer.region
        by_id = {p.id: p for p in region.peers}
        for m in msgs:
            to = by_id.get(m.to)
            if to is None:
                self.stats.dropped_messages += 1
                continue
            rm = RaftMessage(region_id=region.id, start_key=region.start_key, end_key=region.end_key)
            rm.from_peer.CopyFrom(peer.meta)
            rm.to_peer.CopyFrom(to)
            rm.region_epoch.CopyFrom(region.region_epoch)
            rm.message.CopyFrom(m)
            self.lanes.push(to.store_id, rm)
            self.stats.raft_messages_sent += 1

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
