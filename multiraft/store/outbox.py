"""Outbound raft traffic of a store: each raft message wrapped in its RaftMessage envelope
and pushed to the destination store's lane (one frame per store per round), snapshots on
their own connection, extra (store-level) and tombstone messages."""

from __future__ import annotations

from typing import Any, Final

from multiraft.proto.serverpb_pb2 import ExtraMessage, RaftMessage
from multiraft.proto.serverpb_pb2 import Peer as PeerMeta
from multiraft.raft import MessageType, SnapshotStatus
from router.lanes import envelope

from .base import StoreBase
from .peer import Peer

__all__ = ['Outbox']

# Protobuf enum attribute lookups are slow (~2 µs): the hot paths use these constants.
_MSG_SNAPSHOT: Final = MessageType.MsgSnapshot


class Outbox(StoreBase):
    """The outbound half of the store's messages."""

    def _send_raft(self, peer: Peer, msgs: list[Any]) -> None:
        """Each message in its envelope, to its store's lane. The envelope's other fields
        (region, range, epoch, both peers) are serialized once per destination peer and
        reused while the region and this replica's record stay the same
        (`Peer.envelope_header`); the message is serialized behind them."""
        if not msgs:
            return
        stats = self.stats
        by_type = stats.sent_by_type
        push = self.lanes.push
        for m in msgs:
            mt = m.msg_type
            dest = peer.envelope_header(m.to)
            if dest is None:
                stats.dropped_messages += 1
                continue
            if mt == _MSG_SNAPSHOT:
                rm = RaftMessage.FromString(dest[1])
                rm.message.CopyFrom(m)
                self._send_snapshot_msg(peer, rm.to_peer, rm)
            else:
                push(dest[0], envelope(dest[1], m.SerializeToString()))
            stats.raft_messages_sent += 1
            by_type[mt] = by_type.get(mt, 0) + 1

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

    def _send_extra(self, peer: Peer, to: PeerMeta, extra: ExtraMessage) -> None:
        region = peer.region
        rm = RaftMessage(region_id=region.id, start_key=region.start_key, end_key=region.end_key)
        rm.from_peer.CopyFrom(peer.meta)
        rm.to_peer.CopyFrom(to)
        rm.region_epoch.CopyFrom(region.region_epoch)
        rm.extra_msg.CopyFrom(extra)
        self.lanes.push(to.store_id, rm)

    def _send_tombstone(self, peer: Peer, to: PeerMeta) -> None:
        region = peer.region
        rm = RaftMessage(region_id=region.id, is_tombstone=True)
        rm.from_peer.CopyFrom(peer.meta)
        rm.to_peer.CopyFrom(to)
        rm.region_epoch.CopyFrom(region.region_epoch)
        self.lanes.push(to.store_id, rm)

    def _flush_lanes(self) -> None:
        self.lanes.leaders = self._leader_count
        for store, frames in self.lanes.drain().items():
            self._sent_since_tick.add(store)
            for f in frames:
                self.stats.frames_sent += 1
                self._send(store, f)
