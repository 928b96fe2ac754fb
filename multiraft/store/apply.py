"""The apply loop: the committed entries of every region of a round are applied into the
round's one write batch (KV commands, membership changes, splits and merges, the apply
states, log GC), then the clients waiting on them are answered. A region whose apply must
wait (a CommitMerge until its source replica here caught up) keeps the rest of its entries
in order (`Peer.pending_apply`) and goes on in a later round."""

from __future__ import annotations

import logging
from typing import Any, Final

from multiraft.engine import CF_APPLY_STATE, CF_KV, CF_RAFT_STATE, WriteBatch
from multiraft.engine.keys import apply_state_key, region_state_key
from multiraft.proto.serverpb_pb2 import RaftApplyState, Region, RegionLocalState
from multiraft.raft import Entry, EntryType, Snapshot

from .admin_cmd import (
    CHECK_CONF_VER,
    AdminDecodeError,
    BatchSplit,
    CommitMerge,
    PrepareMerge,
    RollbackMerge,
    decode_admin,
    is_admin_entry,
)
from .base import MAX_SAMPLES
from .cmd import Command, CommandDecodeError, Result, decode_entry
from .errors import EpochNotMatch, RegionBusy, StoreError
from .kv import KvApplier
from .membership import apply_to_region, decode_conf_change
from .messages import Inbound
from .peer import Peer
from .region import find_peer
from .snapshot import decode_snapshot_data, write_snapshot_data

__all__ = ["ApplyLoop"]

_log = logging.getLogger(__name__)
# Protobuf enum attribute lookups are slow (~2 µs): the hot paths use these constants.
_ENTRY_CONF_CHANGE: Final = EntryType.EntryConfChange
_ENTRY_CONF_CHANGE_V2: Final = EntryType.EntryConfChangeV2


class ApplyLoop(Inbound):
    """Applying committed entries (module docstring)."""

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
        peers = self.peers
        for peer, entries in work:
            rid = peer.region.id
            if peers.get(rid) is not peer:
                continue  # destroyed earlier in this round (merged into a region applied first)
            if peer.pending_apply:
                entries, peer.pending_apply = [*peer.pending_apply, *entries], []
            for i, e in enumerate(entries):
                result: Any = None
                err: StoreError | None = None
                if e.entry_type == _ENTRY_CONF_CHANGE:
                    # (Membership and layout changes are written without delay: the store
                    # acts on them at once, e.g. creating or destroying replicas.)
                    batcher.mark_urgent()
                    result, err = self._apply_conf_change(peer, e, kv_wb)
                    if find_peer(peer.region, peer.meta.id) is None:
                        removed.append(peer)
                elif e.entry_type == _ENTRY_CONF_CHANGE_V2:
                    # Only raft's own empty "leave joint" entries: this store proposes v1 only.
                    if e.data:
                        err = StoreError(
                            f"region {peer.region.id}: unexpected ConfChangeV2 at {e.index}"
                        )
                elif not e.data:
                    pass  # a new leader's empty entry
                elif is_admin_entry(e.data):
                    batcher.mark_urgent()
                    result, err, wait = self._apply_admin(peer, e, kv_wb)
                    if wait:
                        # This entry and the ones after it apply in a later round, in order.
                        peer.pending_apply = entries[i:]
                        break
                    if err is None and peer.is_leader():
                        # Followers learn the commit now (heartbeats carry it), not at the
                        # next append: the layout changes everywhere at about the same time,
                        # and the new regions' votes find their peers created.
                        peer.node.ping()
                else:
                    try:
                        cmds = decode_entry(e.data)
                    except CommandDecodeError as ex:
                        err = StoreError(f"bad command at index {e.index}: {ex}")
                    else:
                        if isinstance(cmds, list):
                            # A batch: one (result, error) per command, applied in order.
                            result = [self._apply_command(peer, c, applier, e.index) for c in cmds]
                        else:
                            result, err = self._apply_command(peer, cmds, applier, e.index)
                done.append((peer, e, result, err))
                peer.applied_index, peer.applied_term = e.index, e.term
                self.stats.applied_entries += 1
            if peers.get(rid) is not peer:
                continue  # destroyed by what it applied: nothing of it is written any more
            state = RaftApplyState(applied_index=peer.applied_index, applied_term=peer.applied_term)
            kv_wb.put(CF_APPLY_STATE, apply_state_key(rid), state.SerializeToString())
            self._maybe_gc_log(peer, kv_wb)
        kv_wb.add_commit_hook(applier.forget_written)
        if clock is not None and len(self.stats.apply_seconds) < MAX_SAMPLES:
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
        # Targets waiting at a CommitMerge whose source replica here caught up go on.
        for source_id, target_id in list(self._merge_waiters.items()):
            if self._source_caught_up(source_id) and target_id in self.peers:
                self._resume_apply.add(target_id)
                self._dirty.add(target_id)

    def _apply_command(
        self, peer: Peer, cmd: Command, applier: KvApplier, index: int
    ) -> tuple[Result | None, StoreError | None]:
        """Apply one KV command of the entry at `index`, refused if the region's range moved
        since it was proposed."""
        region = peer.region
        if cmd.region_id != region.id or cmd.version != region.region_epoch.version:
            return None, self._epoch_error(peer, [op.key for op in cmd.ops], "command proposed")
        result = applier.apply(cmd, peer.dedupe, index)
        if applier.delta_keys or applier.delta_bytes:
            if peer.approx_keys >= 0:
                peer.approx_keys += applier.delta_keys
                peer.approx_bytes += applier.delta_bytes
            self._checked.add(region.id)
        return result, None

    def _apply_admin(
        self, peer: Peer, e: Entry, wb: WriteBatch
    ) -> tuple[Any, StoreError | None, bool]:
        """Apply a committed split or merge command: (result, error, wait). Every replica
        refuses it alike if the region's epoch moved since it was proposed."""
        region = peer.region
        try:
            req = decode_admin(e.data)
        except AdminDecodeError as ex:
            return None, StoreError(f"region {region.id}: bad admin command at {e.index}: {ex}"), False
        cmd = req.cmd
        epoch = region.region_epoch
        if (
            req.region_id != region.id
            or req.version != epoch.version
            or (CHECK_CONF_VER[type(cmd)] and req.conf_ver != epoch.conf_ver)
        ):
            return None, self._epoch_error(peer, [], f"{type(cmd).__name__} proposed"), False
        if peer.merge_state is not None and not isinstance(cmd, RollbackMerge):
            return None, RegionBusy(f"region {region.id} is merging"), False
        if isinstance(cmd, BatchSplit):
            return (*self._apply_split(peer, e, cmd, wb), False)
        if isinstance(cmd, PrepareMerge):
            return (*self._apply_prepare_merge(peer, e, cmd, wb), False)
        if isinstance(cmd, CommitMerge):
            return self._apply_commit_merge(peer, e, cmd, wb)
        return (*self._apply_rollback_merge(peer, e, cmd, wb), False)

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
        self.stats.conf_changes_applied += 1
        peer.drop_lease()  # a quorum of the new configuration has not answered yet
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
        _log.debug(
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
        if peer.applied_index - storage.truncated_index() <= 2 * keep or peer.merge_state:
            return  # (a merging source keeps its log: CommitMerge carries the tail)
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
        # (A merging replica's region is not snapshotted: this one's merge is over; and the
        # entries a target replica kept waiting are all in the snapshot.)
        peer.merge_state = None
        self._merging.discard(region.id)
        peer.pending_apply = []
        peer.approx_keys = peer.approx_bytes = -1
        for source_id, target_id in list(self._merge_waiters.items()):
            if target_id == region.id:
                del self._merge_waiters[source_id]
        peer.applied_index, peer.applied_term = meta.index, meta.term
        peer.dedupe.clear_cache()
        peer.restored_index = meta.index
        for p in region.peers:
            if p.store_id != self.store_id:
                self._last_heard.setdefault(p.store_id, self.lanes.clock)
        self.stats.snapshots_applied += 1
        _log.debug(
            "region %d: applied snapshot at %d (%d keys)", region.id, meta.index, len(data.kv) // 2
        )
