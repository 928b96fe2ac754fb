"""Inbound raft traffic of a store: frames from other stores decoded and routed to the peers'
raw nodes, after the checks TiKV's store makes (right store, known peer or one a message may
create, stale or removed peers, tombstones, snapshots that fit)."""

from __future__ import annotations

import logging
from typing import Final

from multiraft.proto.serverpb_pb2 import (
    BatchRaftMessage,
    MsgNone,
    MsgWantRollbackMerge,
    RaftMessage,
)
from multiraft.raft import Error, MessageType
from router.codec import RAFT, FrameDecoder, FrameError

from .peer import Peer
from .region import find_peer, is_epoch_stale, ranges_overlap
from .snapshot import SnapshotDecodeError, decode_snapshot_data
from .split_check import SplitCheck

__all__ = ['Inbound']

_log = logging.getLogger(__name__)
# Protobuf enum attribute lookups are slow (~2 µs): the hot paths use these constants.
_MSG_SNAPSHOT: Final = MessageType.MsgSnapshot
_MSG_HEARTBEAT: Final = MessageType.MsgHeartbeat
_MSG_HEARTBEAT_RESPONSE: Final = MessageType.MsgHeartbeatResponse


class Inbound(SplitCheck):
    """The inbound half of the store's messages."""

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
        if dec.pending_bytes():
            # Deliveries are whole frames: the rest of one can never complete (and would
            # swallow the frames that follow).
            self.stats.bad_frames += 1
            _log.warning("store %d: unfinished frame from store %d", self.store_id, from_store)
            self._decoders.pop(from_store, None)
        for kind, frame in frames:
            if kind == RAFT:
                assert isinstance(frame, BatchRaftMessage)
                self.on_batch(from_store, frame)

    def on_batch(self, from_store: int, batch: BatchRaftMessage) -> None:
        """A decoded frame from another store (the transport decodes; the simulator hands
        bytes to `on_frame`). Any frame, even an empty one, is a store heartbeat."""
        self._last_heard[from_store] = self.lanes.clock
        self._note_store_clock(from_store, batch.last_observed_time)
        if from_store in self._suspected:
            self._suspected.discard(from_store)
            self._on_store_back(from_store)
        self._heard.add(from_store)
        if batch.HasField("leaders"):
            self._leader_counts[from_store] = batch.leaders
        msgs = batch.msgs
        if msgs:
            # (Frames of raft messages only: gossip and store heartbeats do not carry it.)
            self._store_features[from_store] = batch.features
        for m in msgs:
            self.on_raft_message(m)

    def on_raft_message(self, m: RaftMessage) -> None:
        self.stats.raft_messages_received += 1
        rid = m.region_id
        peer = self.peers.get(rid)
        if m.to_peer.store_id != self.store_id or not rid or not m.to_peer.id:
            self.stats.dropped_messages += 1  # (ids start at 1: a zero is no region or peer)
            return
        if m.is_tombstone:
            self._on_tombstone(peer, m)
            return
        if peer is None:
            peer = self._maybe_create_peer(m)
            if peer is None:
                self.stats.dropped_messages += 1
                dead = self.tombstones.get(rid)
                if dead is not None and (
                    rid in self.merged_into or is_epoch_stale(m.region_epoch, dead.region_epoch)
                ):
                    # A replica that missed its region's removal or merge: without a leader
                    # left to tell it, the stores that hold tombstones do (TiKV's GC).
                    self._send_stale_tombstone(m, dead)
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
            if m.extra_msg.type == MsgWantRollbackMerge:
                self._on_want_rollback(peer, m)
            else:
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
        except AssertionError as e:
            # A message raft cannot take (a corrupted one: a commit index past our log, an
            # entry conflicting with a committed one): dropped, as the transport drops a
            # batch whose delivery raised, but alone and in the simulator too.
            self.stats.dropped_messages += 1
            _log.error("region %d: refused a %s from peer %d: %s", rid, mt, sender.id, e)
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
        range overlaps no other region of this store (TiKV's check before stepping it) —
        except stale source replicas a store told us were merged into this very region, by
        the merge this snapshot holds (`Peer.merged_hint`): they are destroyed to make room."""
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
        merged: list[Peer] = []
        for other in self.peers.values():
            o = other.region
            if (
                other is not peer
                and other.initialized
                and ranges_overlap(region.start_key, region.end_key, o.start_key, o.end_key)
            ):
                hint = other.merged_hint
                if (
                    hint is not None
                    and hint.id == region.id
                    and hint.region_epoch.version <= region.region_epoch.version
                ):
                    merged.append(other)
                    continue
                _log.debug(
                    "region %d: snapshot overlaps region %d here; dropped", region.id, o.id
                )
                return False
        if merged and m.message.snapshot.metadata.index <= peer.node.commit_index():
            return False  # raft would refuse it as stale: keep everything as it is
        for other in merged:
            _log.debug(
                "region %d: snapshot holds the merge of region %d; destroyed its stale replica",
                region.id,
                other.region.id,
            )
            self._merging.discard(other.region.id)
            self._destroy_peer(other)
        return True

    def _on_tombstone(self, peer: Peer | None, m: RaftMessage) -> None:
        if peer is None or peer.meta.id != m.to_peer.id:
            return
        if m.merge_target.id:
            self._on_merged_tombstone(peer, m)
            return
        if peer.initialized and m.region_epoch.conf_ver <= peer.region.region_epoch.conf_ver:
            return
        self._destroy_peer(peer)
