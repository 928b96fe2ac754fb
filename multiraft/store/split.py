"""Region split (TiKV's BatchSplit), through the region's raft log.

The leader checks the keys (sorted, distinct, strictly inside the range), allocates the new
regions' ids and their peers' ids from the store's id allocator, and proposes one
`BatchSplit` entry carrying the epoch it saw. Every replica applies it at the same index: if
the epoch still matches, the range is cut at the keys, the version grows by the number of
keys, the new regions copy the epoch and the peer list (with their own peer ids), and the
original region keeps the rightmost range (`right_derive`, TiKV's default) or the leftmost.

No data moves: the KV column family is keyed by user key, so each new region starts at
`RAFT_INIT_LOG_INDEX` with the data already in place, like a bootstrapped region. The parent's
new metadata, the new regions' states, raft states, apply states and inherited request-id
records all go into the round's one write batch: a crash sees the whole split or none of it.

A new region's peer may already exist here, uninitialized, created by a message from a store
that split first: the split initializes it (its term and vote are kept) rather than creating
a second one. Its vote requests that arrived while the parent here had not split yet were
kept (`_pending_votes`) and are stepped now. On the store where the parent led, the new
regions campaign at once, so they get a leader without waiting for an election timeout.

Commands and reads in flight for keys that moved fail with EpochNotMatch naming the new
regions; the client refreshes its region cache from it and retries (a retried write applies
once: the new regions inherit the parent's request-id records).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from multiraft.engine import CF_APPLY_STATE, CF_KV, CF_RAFT_STATE, WriteBatch
from multiraft.engine.keys import apply_state_key, region_state_key
from multiraft.proto.serverpb_pb2 import RaftApplyState, Region, RegionEpoch, RegionLocalState
from multiraft.raft import Entry, ProposalDropped, Snapshot, SnapshotMetadata

from .admin_cmd import AdminCommand, AdminRequest, BatchSplit, encode_admin
from .base import RAFT_INIT_LOG_INDEX
from .cmd import MAX_KEY, Result
from .errors import (
    EpochNotMatch,
    InvalidRequest,
    RegionBusy,
    RegionNotFound,
    StaleCommand,
    StoreError,
)
from .hibernate import Hibernation
from .membership import conf_state_from_region
from .peer import Callback, Peer
from .region import check_region_epoch, key_in_region

__all__ = ["Split", "check_split_keys", "split_region"]

_log = logging.getLogger(__name__)


def check_split_keys(region: Region, keys: Sequence[bytes]) -> None:
    """InvalidRequest unless `keys` can split `region`: at least one, sorted, distinct, each
    a valid key strictly inside the range (not its start key)."""
    if not keys:
        raise InvalidRequest(f"region {region.id}: no split key given")
    for i, k in enumerate(keys):
        if not isinstance(k, bytes) or not 1 <= len(k) <= MAX_KEY:
            raise InvalidRequest(f"split keys must be 1..{MAX_KEY} bytes")
        if i and k <= keys[i - 1]:
            raise InvalidRequest("split keys must be sorted and distinct")
        if k == region.start_key or not key_in_region(k, region):
            raise InvalidRequest(
                f"split key {k.hex()} is not strictly inside region {region.id} "
                f"[{region.start_key.hex()}, {region.end_key.hex() or '+inf'})"
            )


def split_region(region: Region, cmd: BatchSplit) -> tuple[list[Region], int]:
    """The regions `cmd` cuts `region` into, in key order, and the position of the one that
    keeps `region`'s id. Raises InvalidRequest for a command that does not fit the region."""
    check_split_keys(region, cmd.split_keys)
    n = len(cmd.split_keys)
    if len(cmd.new_region_ids) != n or len(cmd.new_peer_ids) != n:
        raise InvalidRequest(f"region {region.id}: {n} split keys need {n} new region ids")
    if any(len(ids) != len(region.peers) for ids in cmd.new_peer_ids):
        raise InvalidRequest(f"region {region.id}: a new region needs one peer id per peer")
    bounds = [region.start_key, *cmd.split_keys, region.end_key]
    derived = n if cmd.right_derive else 0
    version = region.region_epoch.version + n
    new_ids = iter(zip(cmd.new_region_ids, cmd.new_peer_ids, strict=True))
    out: list[Region] = []
    for i in range(n + 1):
        r = Region()
        if i == derived:
            r.CopyFrom(region)
        else:
            rid, peer_ids = next(new_ids)
            r.id = rid
            r.region_epoch.conf_ver = region.region_epoch.conf_ver
            for p, pid in zip(region.peers, peer_ids, strict=True):
                r.peers.add(id=pid, store_id=p.store_id, role=p.role)
        r.start_key, r.end_key = bounds[i], bounds[i + 1]
        r.region_epoch.version = version
        out.append(r)
    return out, derived


class Split(Hibernation):
    """Splitting regions (module docstring)."""

    def split(
        self,
        region_id: int,
        keys: Sequence[bytes],
        callback: Callback,
        *,
        epoch: RegionEpoch | None = None,
        right_derive: bool = True,
        trigger: str = "admin",
    ) -> None:
        """Propose splitting the region (led here) at `keys`; `callback(regions, None)` with
        the resulting regions in key order once the split is applied here, or
        `callback(None, error)`. Raises NotLeader / RegionNotFound / InvalidRequest /
        EpochNotMatch / RegionBusy (a split, merge or membership change is in flight)."""
        peer = self._leader_peer(region_id, epoch)
        region = peer.region
        check_split_keys(region, keys)
        stats = self.stats

        def done(result: object, err: StoreError | None) -> None:
            outcome = "ok" if err is None else err.code
            stats.splits[(trigger, outcome)] = stats.splits.get((trigger, outcome), 0) + 1
            callback(result, err)

        cmd = BatchSplit(
            list(keys),
            [self.ids.next_id() for _ in keys],
            [[self.ids.next_id() for _ in region.peers] for _ in keys],
            right_derive,
        )
        self._propose_admin(peer, cmd, done)
        (_log.info if trigger == "admin" else _log.debug)(
            "region %d: split at %d key(s) proposed (%s)", region_id, len(keys), trigger
        )

    def _leader_peer(self, region_id: int, epoch: RegionEpoch | None) -> Peer:
        """The region's peer here, if it leads and may take an epoch-changing admin command."""
        peer = self.peers.get(region_id)
        if peer is None or not peer.initialized:
            raise RegionNotFound(region_id)
        if not peer.is_leader():
            raise peer.not_leader()
        if epoch is not None:
            check_region_epoch(epoch, peer.region, check_conf_ver=True)
        if peer.merge_state is not None:
            raise RegionBusy(f"region {region_id} is merging")
        node = peer.node
        if node.has_pending_conf() or peer.has_pending_admin():
            raise RegionBusy(f"region {region_id}: a split, merge or membership change is in progress")
        if node.is_transferring_leader():
            raise RegionBusy(f"region {region_id}: a leader transfer is in progress")
        return peer

    def _propose_admin(
        self, peer: Peer, cmd: AdminCommand, callback: Callback, *, epoch: RegionEpoch | None = None
    ) -> None:
        """Propose `cmd` on `peer`'s region in `epoch` (default: the region's current one)."""
        if epoch is None:
            epoch = peer.region.region_epoch
        req = AdminRequest(peer.region.id, epoch.conf_ver, epoch.version, cmd)
        node = peer.node
        try:
            node.propose(b"", encode_admin(req))
        except ProposalDropped as e:
            raise StaleCommand(f"region {peer.region.id}: {e}") from e
        peer.track_proposal(node.last_index(), node.term(), callback, admin=True)
        self._wake(peer.region.id)

    # -- apply ------------------------------------------------------------------------------

    def _apply_split(
        self, peer: Peer, e: Entry, cmd: BatchSplit, wb: WriteBatch
    ) -> tuple[list[Region] | None, StoreError | None]:
        """Apply a committed BatchSplit (its epoch was checked): see the module docstring."""
        parent = peer.region
        try:
            regions, derived = split_region(parent, cmd)
        except InvalidRequest as err:  # refused alike by every replica
            return None, err
        records = peer.dedupe.live_records(e.index)
        was_leader = peer.is_leader()
        me = regions[derived]
        wb.put(CF_RAFT_STATE, region_state_key(me.id), RegionLocalState(region=me).SerializeToString())
        peer.set_region(me)
        peer.approx_keys = peer.approx_bytes = -1
        peer.born = self.lanes.clock
        for i, region in enumerate(regions):
            if i != derived:
                self._create_split_peer(region, records, wb, campaign=was_leader)
        # Each piece may still be over the thresholds: the next split check looks again.
        self._checked.update(r.id for r in regions)
        _log.debug(
            "region %d: split at %d into %s",
            parent.id,
            e.index,
            [(r.id, r.start_key.hex(), r.end_key.hex()) for r in regions],
        )
        return regions, None

    def _create_split_peer(
        self, region: Region, records: list[tuple[bytes, Result]], wb: WriteBatch, *, campaign: bool
    ) -> None:
        rid = region.id
        existing = self.peers.get(rid)
        if existing is not None and existing.initialized:
            # Its snapshot came first (this store applied the split late): it is ahead.
            _log.warning("region %d: split found it initialized already; kept", rid)
            return
        if rid in self.tombstones:
            # Our replica of the new region was removed since: nothing here owns the range.
            wb.delete_range(CF_KV, region.start_key, region.end_key or None)
            return
        if existing is not None:
            # Created by a message before the split reached this store: initialize that
            # replica (its persisted term and vote carry over through its storage).
            existing.fail_all(RegionNotFound(rid))
            del self.peers[rid]
            storage = existing.storage
        else:
            storage = self._new_storage(rid)
        init = RAFT_INIT_LOG_INDEX
        snap = Snapshot(metadata=SnapshotMetadata(index=init, term=init))
        snap.metadata.conf_state.CopyFrom(conf_state_from_region(region))
        storage.apply_snapshot(wb, snap)
        wb.put(CF_RAFT_STATE, region_state_key(rid), RegionLocalState(region=region).SerializeToString())
        applied = RaftApplyState(applied_index=init, applied_term=init)
        wb.put(CF_APPLY_STATE, apply_state_key(rid), applied.SerializeToString())
        peer = self._open_peer(region, storage, applied)
        peer.dedupe.inherit(records, wb, init)
        self.stats.peers_created += 1
        if campaign:
            peer.node.campaign()
        vote = self._pending_votes.pop(rid, None)
        if vote is not None:
            self._replay.append(vote)

    def _epoch_error(self, peer: Peer, keys: Sequence[bytes], what: str) -> EpochNotMatch:
        """EpochNotMatch for a command or read of `peer`'s region that the region's epoch
        outran, carrying the region and the regions here that now hold `keys`."""
        regions = [peer.region]
        for k in keys:
            r = self.region_for_key(k)
            if r is not None and all(r.id != x.id for x in regions):
                regions.append(r)
        return EpochNotMatch(f"region {peer.region.id}: {what} in another epoch", regions)

    def region_for_key(self, key: bytes) -> Region | None:
        for peer in self.peers.values():
            if peer.initialized and key_in_region(key, peer.region):
                return peer.region
        return None
