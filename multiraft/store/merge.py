"""Region merge (TiKV's PrepareMerge / CommitMerge / RollbackMerge), through both regions'
raft logs, with this store doing what TiKV's placement driver does.

1. The source's leader checks that source and target are adjacent, have their replicas on the
   same stores, have no split, merge or membership change in flight, and that no source
   replica lags more than `merge_max_log_gap` entries; then proposes `PrepareMerge(min_index,
   target)` on the source. `min_index` is the smallest index every source replica holds.
2. Every source replica applies it: the region is `Merging` (it serves nothing; both epoch
   numbers grow by one, so nothing proposed before can apply after) and remembers the merge
   (`MergeState`: min_index, the expected target, commit = this entry's index). Its log is no
   longer compacted and no snapshot of it is built until the merge ends.
3. On the store where the target leads, the source replica (on a merge-check tick) proposes
   `CommitMerge(source, commit, entries)` on the target, carrying the source's entries
   `(min_index, commit]` and the target epoch the merge expects.
4. Every target replica applies it if the target's epoch is still the expected one: it first
   waits until its local source replica has applied through `commit` — handing it the carried
   entries if it lags (CatchUpLogs), so a source replica whose group can no longer replicate
   still catches up — then widens its range over the source's (version = max of both + 1),
   inherits the source's request-id records, and destroys the source replica (its data stays:
   the keys are the target's now). All in one write batch.
5. If the target's epoch moved on without the merge (a split, a membership change, another
   merge), the CommitMerge can never apply: its check fails the same way on every replica,
   now and later (epochs only grow). A source replica that sees its local target past the
   expected epoch (or merged away itself) wants a rollback; once a majority of the source's
   voters do, the source's leader proposes `RollbackMerge(commit)`: the source serves again
   (version + 1). A target replica applies a CommitMerge before anything after it in its
   log, and that destroys the source replica on its store; so a source replica that still
   exists and sees its target past the expected epoch knows the merge did not commit. (This
   holds while the target keeps the stores it had at the merge: the store refuses membership
   changes of a region that a source here is merging into.)

A source replica that missed the whole merge (isolated, or its group destroyed by the merge)
finds out: stores answer its messages with a tombstone naming the merge target. If its local
target replica is behind, that target will still apply the CommitMerge and catch it up, or a
snapshot of the target (at the merge or later) replaces the source replica; otherwise the
source replica destroys itself, and the range comes back with the snapshots of its owners.
Only such authoritative news destroys a replica: a replica whose range another region now
covers may still be a live member elsewhere (its range moved by a merge and a split), and
its raft log, which its group counted on, must not be lost.

A crash anywhere leaves each replica at one of these steps, each written atomically; recovery
resumes from it (a Merging source reloads its MergeState, a target re-applies the CommitMerge
it had not finished).
"""

from __future__ import annotations

import logging
from typing import Any

from multiraft.engine import CF_RAFT_STATE, WriteBatch
from multiraft.engine.keys import region_state_key
from multiraft.proto.serverpb_pb2 import (
    ExtraMessage,
    MergeState,
    Merging,
    MsgWantRollbackMerge,
    RaftMessage,
    Region,
    RegionLocalState,
    Voter,
)
from multiraft.raft import Entry, RequestSnapshotDropped

from .admin_cmd import CommitMerge, PrepareMerge, RollbackMerge
from .errors import InvalidRequest, MergeRefused, MergeRolledBack, RegionBusy, StoreError
from .peer import NOBODY, Callback, Peer
from .region import is_epoch_stale
from .split import Split

__all__ = ["Merge"]

_log = logging.getLogger(__name__)


def _placement(region: Region) -> set[tuple[int, int]]:
    return {(p.store_id, p.role) for p in region.peers}


class Merge(Split):
    """Merging regions (module docstring)."""

    def merge(self, source_id: int, target_id: int, callback: Callback, *, trigger: str = "admin") -> None:
        """Propose merging region `source_id` (led here) into its neighbour `target_id`;
        `callback(region, None)` with the merged target once the merge is applied here, or
        `callback(None, error)` (MergeRolledBack if it was rolled back). Raises NotLeader /
        RegionNotFound / InvalidRequest / MergeRefused (not adjacent or not on the same
        stores) / RegionBusy (a split, merge or membership change in flight, a lagging
        replica)."""
        if source_id == target_id:
            raise InvalidRequest(f"region {source_id} cannot merge into itself")
        src = self._leader_peer(source_id, None)
        tgt = self.peers.get(target_id)
        if tgt is None or not tgt.initialized:
            raise MergeRefused(
                f"region {target_id} has no replica on store {self.store_id}, where region "
                f"{source_id} leads: source and target must be on the same stores"
            )
        s, t = src.region, tgt.region
        if not (s.end_key and s.end_key == t.start_key) and not (t.end_key and t.end_key == s.start_key):
            raise MergeRefused(f"regions {source_id} and {target_id} are not adjacent")
        if _placement(s) != _placement(t):
            raise MergeRefused(
                f"regions {source_id} and {target_id} do not have their replicas on the same "
                "stores with the same roles; move replicas first"
            )
        if tgt.merge_state is not None or tgt.has_pending_admin() or tgt.node.has_pending_conf():
            raise RegionBusy(f"region {target_id}: a split, merge or membership change is in progress")
        if any(p.merge_state is not None and p.merge_state.target.id == target_id for p in self._merging_peers()):
            raise RegionBusy(f"region {target_id}: another region is merging into it")
        node = src.node
        last = node.last_index()
        min_index = min([last, *node.matched_indexes().values()])
        # Every replica must hold the log up to `min_index`, and the entries after it must
        # still be in the leader's log: CommitMerge carries them to whichever lags.
        if min_index < src.storage.truncated_index() or last - min_index > self.config.merge_max_log_gap:
            raise RegionBusy(
                f"region {source_id}: a replica is {last - min_index} entries behind; "
                "retry once it caught up"
            )
        stats = self.stats
        clock = self._clock
        t0 = clock() if clock is not None else 0.0

        def done(result: Any, err: StoreError | None) -> None:
            outcome = "ok" if err is None else err.code
            stats.merges[(trigger, outcome)] = stats.merges.get((trigger, outcome), 0) + 1
            if err is None and clock is not None:
                stats.merge_seconds.append(clock() - t0)
            callback(result, err)

        def prepared(_result: Any, err: StoreError | None) -> None:
            if err is not None and self._merge_callbacks.pop(source_id, None) is not None:
                done(None, err)

        target = Region()
        target.CopyFrom(t)
        self._propose_admin(src, PrepareMerge(min_index, target), prepared)
        self._merge_callbacks[source_id] = done
        (_log.info if trigger == "admin" else _log.debug)("region %d: merge into region %d proposed (%s)", source_id, target_id, trigger)

    def _merging_peers(self) -> list[Peer]:
        return [self.peers[rid] for rid in self._merging if rid in self.peers]

    # -- source side --------------------------------------------------------------------------

    def _apply_prepare_merge(
        self, peer: Peer, e: Entry, cmd: PrepareMerge, wb: WriteBatch
    ) -> tuple[Region, None]:
        region = Region()
        region.CopyFrom(peer.region)
        region.region_epoch.version += 1
        region.region_epoch.conf_ver += 1
        state = MergeState(min_index=cmd.min_index, commit=e.index)
        state.target.CopyFrom(cmd.target)
        wb.put(
            CF_RAFT_STATE,
            region_state_key(region.id),
            RegionLocalState(state=Merging, region=region, merge_state=state).SerializeToString(),
        )
        peer.set_region(region)
        peer.merge_state = state
        self._merging.add(region.id)
        self._merge_check_due = True
        # Nothing proposed after this applies (the epoch moved); reads stop here.
        peer.fail_after(e.index, RegionBusy(f"region {region.id} is merging"))
        self._wake(region.id)
        _log.debug(
            "region %d: prepared to merge into region %d at %d", region.id, cmd.target.id, e.index
        )
        return region, None

    def _apply_rollback_merge(
        self, peer: Peer, e: Entry, cmd: RollbackMerge, wb: WriteBatch
    ) -> tuple[Region | None, StoreError | None]:
        ms = peer.merge_state
        if ms is None or ms.commit != cmd.commit:
            return None, InvalidRequest(f"region {peer.region.id}: no merge at {cmd.commit} to roll back")
        region = Region()
        region.CopyFrom(peer.region)
        region.region_epoch.version += 1
        wb.put(CF_RAFT_STATE, region_state_key(region.id), RegionLocalState(region=region).SerializeToString())
        peer.set_region(region)
        peer.merge_state = None
        peer.want_rollback = NOBODY
        self._merging.discard(region.id)
        cb = self._merge_callbacks.pop(region.id, None)
        if cb is not None:
            cb(None, MergeRolledBack(f"region {region.id}: the merge into region {ms.target.id} was rolled back (the target changed)"))
        _log.debug("region %d: merge into region %d rolled back at %d", region.id, ms.target.id, e.index)
        return region, None

    def _check_merges(self) -> None:
        """The merge-check tick of every merging source replica here (module docstring, 3
        and 5)."""
        for source_id, target_id in self._merge_waiters.items():
            target = self.peers.get(target_id)
            sp = self.peers.get(source_id)
            if target is not None and (sp is None or not sp.initialized):
                self._request_snapshot(target)
        for peer in self._merging_peers():
            ms = peer.merge_state
            assert ms is not None
            target = self.peers.get(ms.target.id)
            if target is None or not target.initialized:
                if ms.target.id in self.merged_into:
                    # The target was merged into another region here: it applied a
                    # PrepareMerge of its own (from its log, after anything before it), so
                    # this merge's CommitMerge never applied and never will.
                    self._want_rollback(peer, ms)
                continue  # else its log, a snapshot or a tombstone answer settles it
            cur, expected = target.region.region_epoch, ms.target.region_epoch
            if cur.version == expected.version and cur.conf_ver == expected.conf_ver:
                if target.is_leader() and peer.applied_index >= ms.commit:
                    self._propose_commit_merge(peer, target, ms)
            elif not is_epoch_stale(cur, expected):
                self._want_rollback(peer, ms)

    def _propose_commit_merge(self, source: Peer, target: Peer, ms: MergeState) -> None:
        clock = self.lanes.clock
        # One proposal in flight; again if nothing happened for a few checks (a lost
        # leadership drops it).
        if source.commit_merge_proposed and clock - source.commit_merge_proposed < 3 * self.config.election_ticks:
            return
        if target.has_pending_admin() or target.pending_apply:
            return
        lo = max(ms.min_index + 1, source.storage.first_index())
        entries = source.storage.entries(lo, ms.commit + 1) if lo <= ms.commit else []
        region = Region()
        region.CopyFrom(source.region)
        try:
            self._propose_admin(
                target, CommitMerge(region, ms.commit, entries), _ignore, epoch=ms.target.region_epoch
            )
        except StoreError as err:
            _log.debug("region %d: CommitMerge not proposed: %s", target.region.id, err)
            return
        source.commit_merge_proposed = clock

    def _want_rollback(self, peer: Peer, ms: MergeState) -> None:
        if peer.is_leader():
            peer.want_rollback |= {peer.meta.id}
            self._maybe_rollback(peer, ms)
            return
        leader = peer.leader_meta()
        if leader is not None and leader.id != peer.meta.id:
            self._send_extra(peer, leader, ExtraMessage(type=MsgWantRollbackMerge, index=ms.commit))

    def _on_want_rollback(self, peer: Peer, m: RaftMessage) -> None:
        ms = peer.merge_state
        if ms is None or not peer.is_leader() or m.extra_msg.index != ms.commit:
            return
        peer.want_rollback |= {m.from_peer.id}
        self._maybe_rollback(peer, ms)

    def _maybe_rollback(self, peer: Peer, ms: MergeState) -> None:
        voters = {p.id for p in peer.region.peers if p.role == Voter}
        if len(peer.want_rollback & voters) * 2 <= len(voters) or peer.has_pending_admin():
            return
        try:
            self._propose_admin(peer, RollbackMerge(ms.commit), _ignore)
        except StoreError as err:
            _log.debug("region %d: RollbackMerge not proposed: %s", peer.region.id, err)

    # -- target side --------------------------------------------------------------------------

    def _apply_commit_merge(
        self, peer: Peer, e: Entry, cmd: CommitMerge, wb: WriteBatch
    ) -> tuple[Region | None, StoreError | None, bool]:
        """(merged region, error, wait): `wait` when the local source replica must catch up
        first (the entry is applied again once it did)."""
        source = cmd.source
        sp = self.peers.get(source.id)
        self._merge_waiters[source.id] = peer.region.id
        if sp is None or not sp.initialized:
            # The source replica here is gone (destroyed as stale before this target replica
            # got here): its data cannot be caught up. This replica takes a snapshot of the
            # target instead, which holds the merged range (asked again on merge checks).
            _log.debug(
                "region %d: CommitMerge of region %d, gone here; asking for a snapshot",
                peer.region.id,
                source.id,
            )
            self._request_snapshot(peer)
            return None, None, True
        if sp.applied_index < cmd.commit:
            # CatchUpLogs: the entries are committed in the source's group.
            sp.node.append_committed(cmd.entries, cmd.commit)
            self._wake(source.id)
            return None, None, True
        ms = sp.merge_state
        if ms is None or ms.commit != cmd.commit:
            _log.error("region %d: CommitMerge of region %d at %d, which is not merging at it", peer.region.id, source.id, cmd.commit)
            return None, None, True
        self._merge_waiters.pop(source.id, None)
        target = peer.region
        region = Region()
        region.CopyFrom(target)
        region.region_epoch.version = max(source.region_epoch.version, target.region_epoch.version) + 1
        if target.end_key and target.end_key == source.start_key:
            region.end_key = source.end_key
        else:
            region.start_key = source.start_key
        wb.put(CF_RAFT_STATE, region_state_key(region.id), RegionLocalState(region=region).SerializeToString())
        peer.set_region(region)
        peer.approx_keys = peer.approx_bytes = -1
        peer.born = self.lanes.clock
        self._checked.add(region.id)
        peer.dedupe.inherit(sp.dedupe.live_records(cmd.commit), wb, e.index)
        self._merging.discard(source.id)
        self._destroy_peer(sp, merged_into=region)  # (answers the merge if asked here)
        _log.debug(
            "region %d: merged region %d at %d, now [%s, %s)",
            region.id,
            source.id,
            e.index,
            region.start_key.hex(),
            region.end_key.hex(),
        )
        return region, None, False

    def _source_caught_up(self, source_id: int) -> bool:
        """Whether the target waiting for `source_id` may apply its CommitMerge again."""
        sp = self.peers.get(source_id)
        return sp is not None and sp.merge_state is not None and sp.applied_index >= sp.merge_state.commit

    def _request_snapshot(self, peer: Peer) -> None:
        try:
            peer.node.request_snapshot()
        except RequestSnapshotDropped:
            pass  # no leader known yet, or asked already: the next merge check asks again
        self._wake(peer.region.id)

    # -- stale source replicas ----------------------------------------------------------------

    def _on_merged_tombstone(self, peer: Peer, m: RaftMessage) -> None:
        """A store answered this replica: the region was merged into `m.merge_target`."""
        merged = m.merge_target
        target = self.peers.get(merged.id)
        if (
            target is not None
            and target.initialized
            and target.region.region_epoch.version < merged.region_epoch.version
        ):
            # Our target replica is behind: it will merge us when it gets there from its log,
            # or a snapshot of it will replace us.
            peer.merged_hint = merged
            return
        # Otherwise nothing here is about to merge this replica. (Should a target replica
        # appear later — a split of a stale region here creating it — and reach the
        # CommitMerge, it asks for a snapshot instead of waiting for a source that is gone.)
        _log.debug(
            "region %d: merged into region %d elsewhere; destroying the stale replica",
            peer.region.id,
            m.merge_target.id,
        )
        self._merging.discard(peer.region.id)
        self._destroy_peer(peer)

    def _send_stale_tombstone(self, m: RaftMessage, dead: Region) -> None:
        """Tell a stale replica of a region whose replica here is gone, at a newer epoch
        (removed, or merged away: then where it went), that its region moved on."""
        rm = RaftMessage(region_id=m.region_id, is_tombstone=True)
        rm.from_peer.CopyFrom(m.to_peer)
        rm.to_peer.CopyFrom(m.from_peer)
        rm.region_epoch.CopyFrom(dead.region_epoch)
        merged = self.merged_into.get(m.region_id)
        if merged is not None:
            rm.merge_target.CopyFrom(merged)
        self.lanes.push(m.from_peer.store_id, rm)


def _ignore(_result: Any, _err: StoreError | None) -> None:
    """Callback of proposals whose outcome shows in the regions' state (CommitMerge,
    RollbackMerge)."""
