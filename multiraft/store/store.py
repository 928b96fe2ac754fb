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
from typing import Any, Final

from multiraft.proto.serverpb_pb2 import Learner, RegionEpoch
from multiraft.raft import MessageType, ProposalDropped, Ready

from .balance import LeaderBalance
from .base import (
    FEATURE_BATCH_ENTRIES,
    MAX_SAMPLES,
    RAFT_INIT_LOG_INDEX,
    StoreConfig,
    StoreStats,
    initial_peer_id,
)
from .cmd import Command, command_body
from .errors import (
    InvalidRequest,
    KeyNotInRegion,
    RegionBusy,
    RegionNotFound,
    ServerBusy,
    StaleCommand,
    StoreError,
)
from .kv import read_applied, scan_applied
from .membership import ADD_VOTER, REMOVE, plan_conf_change
from .peer import Callback, Peer
from .region import check_region_epoch, find_peer_on_store, key_in_region

__all__ = ["StoreConfig", "StoreStats", "Store", "RAFT_INIT_LOG_INDEX", "initial_peer_id"]

_log = logging.getLogger(__name__)
# Protobuf enum attribute lookups are slow (~2 µs): the hot paths use these constants.
_MSG_HEARTBEAT_RESPONSE: Final = MessageType.MsgHeartbeatResponse


class Store(LeaderBalance):
    """One process's regions (module docstring). The layers it is built of, bottom up:
    `base` (state), `outbox`, `lifecycle`, `hibernate`, `split`, `merge`, `messages`, `apply`,
    `promotion`, `balance`; this module adds the round, the client API and the membership operations."""

    def tick(self) -> None:
        """One base tick (see `Hibernation.tick`), the merge checks every election timeout,
        the split check every `split_check_ticks`, and a summary in the log every
        `summary_ticks` if anything happened."""
        super().tick()
        self._submit_due = True
        clock = self.lanes.clock
        if clock % self.config.summary_ticks == 0:
            self._log_summary()
        if (self._merging or self._merge_waiters) and clock % self.config.election_ticks == 0:
            self._check_merges()
        if clock % self.config.split_check_ticks == 0:
            self._check_splits()
        balance = self.config.leader_balance_ticks
        if balance and clock % balance == 0:
            self.balance_leaders()

    def _peer_for(self, region_id: int, epoch: RegionEpoch | None, keys: list[bytes]) -> Peer:
        """The region's initialized peer here for a request on `keys` made at `epoch` (the
        client's view; EpochNotMatch with the current region if it is stale, as in TiKV)."""
        peer = self.peers.get(region_id)
        if peer is None or not peer.initialized:
            # (The region that holds the key here now, if any, as a hint for the client.)
            holder = self.region_for_key(keys[0]) if keys else None
            raise RegionNotFound(region_id, [holder] if holder is not None else None)
        if epoch is not None:
            check_region_epoch(epoch, peer.region, check_conf_ver=False)
        for k in keys:
            if not key_in_region(k, peer.region):
                holder = self.region_for_key(k)
                raise KeyNotInRegion(k, peer.region, [holder] if holder is not None else None)
        if peer.merge_state is not None:
            raise RegionBusy(f"region {region_id} is merging")
        return peer

    def _moved(self, peer: Peer, version: int, key: bytes) -> StoreError | None:
        """EpochNotMatch if a read of `key` submitted at region `version` cannot be served by
        the region any more (a split or merge moved the key elsewhere)."""
        region = peer.region
        if region.region_epoch.version == version or key_in_region(key, region):
            return None
        return self._epoch_error(peer, [key], "read submitted")

    def propose(self, cmd: Command, callback: Callback, epoch: RegionEpoch | None = None) -> None:
        """Submit a write command; `callback(result, error)` fires once when it is applied (or
        definitely lost). Raises NotLeader / RegionNotFound / EpochNotMatch / KeyNotInRegion /
        ServerBusy (too many requests are waiting already)."""
        stats = self.stats
        try:
            self._admit()
            peer = self._peer_for(cmd.region_id, epoch, [op.key for op in cmd.ops])
            cmd.conf_ver = peer.region.region_epoch.conf_ver
            cmd.version = peer.region.region_epoch.version
            body = command_body(cmd)
            clock = self._clock
            t0 = clock() if clock is not None else 0.0

            def done(result: Any, err: StoreError | None) -> None:
                self.pending_requests -= 1
                if err is not None:
                    stats.failed(err.code)
                elif clock is not None and len(stats.propose_to_apply_seconds) < MAX_SAMPLES:
                    stats.propose_to_apply_seconds.append(clock() - t0)
                callback(result, err)

            size = 32
            for op in cmd.ops:
                size += len(op.key) + len(op.value or b"") + len(op.expected or b"")
            peer.submit_command(body, done, size)
            self.pending_requests += 1
            if cmd.ops:
                self.note_load(peer, cmd.ops[0].key)
        except StoreError as e:
            stats.failed(e.code)
            raise
        stats.proposals += 1
        self._wake(cmd.region_id)

    def get(
        self, region_id: int, key: bytes, callback: Callback, epoch: RegionEpoch | None = None
    ) -> None:
        """A linearizable read (ReadIndex): `callback(value_or_None, error)`."""
        self._admit()
        peer = self._peer_for(region_id, epoch, [key])
        version = peer.region.region_epoch.version

        def done(err: StoreError | None) -> None:
            self.pending_requests -= 1
            if err is None:
                err = self._moved(peer, version, key)
            if err is not None:
                callback(None, err)
            else:
                callback(read_applied(self.engine, self._unwritten, key), None)

        peer.submit_read(done)
        self.pending_requests += 1
        self.note_load(peer, key)
        self.stats.reads += 1
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
        self._admit()
        peer = self._peer_for(region_id, epoch, [start] if start else [])
        version = peer.region.region_epoch.version

        def done(err: StoreError | None) -> None:
            self.pending_requests -= 1
            if err is None and peer.region.region_epoch.version != version:
                # The range changed under the scan: the client must learn the new layout
                # (it resumes each region's scan from that region's end).
                err = self._epoch_error(peer, [start or peer.region.start_key], "scan submitted")
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
        self.pending_requests += 1
        self.stats.reads += 1
        self._wake(region_id)

    def _admit(self) -> None:
        """Raise ServerBusy if `max_pending_requests` client requests wait already."""
        limit = self.config.max_pending_requests
        if limit and self.pending_requests >= limit:
            self.stats.server_busy += 1
            raise ServerBusy(f"store {self.store_id}: {self.pending_requests} requests waiting")

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
            peer.drop_lease()  # the transferee is elected at once, not after a timeout
            peer.node.transfer_leader(target.id)
        callback(None, None)

    def change_peer(
        self,
        region_id: int,
        op: str,
        store_id: int,
        callback: Callback,
        *,
        catch_up_ticks: int | None = None,
    ) -> None:
        """Add a voter ("add_voter"), add a learner ("add_learner") or remove the replica on
        `store_id` ("remove"). `callback(region, None)` with the new region once the change
        is applied here (the leader), or `callback(None, error)`. A voter joins as a learner
        first and is promoted once caught up (`promotion.py`): its callback waits for the
        promotion, and fails with CatchUpTimeout (it stays a learner) if the learner did not
        catch up within `catch_up_ticks` (default `learner_catch_up_ticks`). Raises NotLeader
        / RegionNotFound / InvalidRequest / RegionBusy (another change is in flight)."""
        peer = self.peers.get(region_id)
        if peer is None or not peer.initialized:
            raise RegionNotFound(region_id)
        if not peer.is_leader():
            raise peer.not_leader()
        node = peer.node
        if node.has_pending_conf() or peer.has_pending_admin():
            raise RegionBusy(f"region {region_id}: a membership change, split or merge is in progress")
        if peer.merge_state is not None or any(
            p.merge_state is not None and p.merge_state.target.id == region_id
            for p in self._merging_peers()
        ):
            raise RegionBusy(f"region {region_id}: a merge is in progress")
        if node.is_transferring_leader():
            raise RegionBusy(f"region {region_id}: a leader transfer is in progress")
        promoting = self.promotion_pending(region_id)
        if promoting is not None:
            if not (op == REMOVE and store_id == promoting):
                raise RegionBusy(
                    f"region {region_id}: the learner on store {promoting} is catching up to "
                    "become a voter"
                )
            self.cancel_promotion(region_id, store_id, InvalidRequest(
                f"region {region_id}: the learner on store {store_id} is being removed"
            ))
        existing = find_peer_on_store(peer.region, store_id)
        if op == ADD_VOTER and (existing is None or existing.role == Learner):
            self._add_voter(peer, store_id, existing, callback, catch_up_ticks)
            return
        new_id = 0 if op == REMOVE else self.ids.next_id()
        cc = plan_conf_change(peer.region, op, store_id, peer.meta.id, new_id)
        try:
            peer.node.propose_conf_change(b"", cc)
        except ProposalDropped as e:
            raise StaleCommand(f"region {region_id}: {e}") from e
        peer.track_proposal(node.last_index(), node.term(), callback, conf_change=True)
        self.stats.conf_changes += 1
        self._wake(region_id)

    def has_work(self) -> bool:
        """True when a `round()` would do something (the server runs one soon after input).
        Open writes alone are work only when the writer can take them and they are due: a
        full writer runs a round when it finishes one, and writes nothing waits on wait for
        the next tick or the next urgent round."""
        if self._dirty:
            return True
        batcher = self.batcher
        return (
            batcher.has_open_writes()
            and batcher.can_submit()
            and (self._submit_due or batcher.has_urgent_writes())
        )

    def request_submit(self) -> None:
        """The next round submits whatever it holds (the store is about to stop)."""
        self._submit_due = True

    def round(self) -> None:
        """Do all the work that is ready: see the module docstring."""
        self.stats.rounds += 1
        self._poll_persisted()
        if self._snapshot_reports:
            self._report_snapshots()
        if self._replay:
            replay, self._replay = self._replay, []
            for m in replay:
                self.on_raft_message(m)
        dirty = self._take_dirty()
        now = self._clock() if self._clock is not None else None
        batcher = self.batcher
        work: list[tuple[Peer, list[Any]]] = []
        restored = False
        for rid in dirty:
            peer = self.peers.get(rid)
            if peer is None:
                continue
            if peer.has_client_work():
                peer.flush_client_work(now, self._batch_entries_ok(peer))
            node = peer.node
            if not node.has_ready():
                continue
            rd = node.ready()
            if rd.hs is not None:
                peer.on_term(rd.hs.term)
            if rd.ss is not None:
                was = peer.was_leader
                peer.on_role_change()
                self._wake(rid)
                if peer.was_leader and not was:
                    self.stats.leader_changes += 1
                    self._leader_count += 1
                elif was and not peer.was_leader:
                    self.stats.leaderships_lost += 1
                    self._leader_count -= 1
            if rd.read_states:
                peer.on_read_states(rd.read_states)
            restored_now = rd.snapshot.metadata.index != 0
            if restored_now:
                self._apply_snapshot(peer, batcher.batch, rd.snapshot)
                restored = True
            if rd.persisted_messages:
                self._send_heartbeat_responses_now(peer, rd)
            if rd.hs is None and not rd.entries and not rd.persisted_messages and not restored_now:
                # Nothing to write (a leader's messages, read states, entries to apply): the
                # Ready stays out of the round (a ReadIndex round's Readies, mostly).
                node.advance_unwritten(rd)
                send_now, to_apply = rd.messages, rd.committed_entries
            else:
                # Entries, hard state and the snapshot's raft state go into the round's batch;
                # a leader's messages go out now, the rest once the round is durable.
                send_now, to_apply = batcher.add_ready(peer, rd)
            self._send_raft(peer, send_now)
            if to_apply:
                work.append((peer, to_apply))
        if self._resume_apply:
            # Regions whose apply waited (at a CommitMerge) and may go on.
            resume, self._resume_apply = self._resume_apply, set()
            resume.difference_update(p.region.id for p, _ in work)
            for rid in resume:
                peer = self.peers.get(rid)
                if peer is not None and peer.pending_apply:
                    work.append((peer, []))
        # What raft hands out to apply is committed and already durable here.
        self._apply(work)
        if self._merge_check_due:
            self._merge_check_due = False
            self._check_merges()
        if batcher.submit(block=restored, lazy=not self._submit_due) is not None and restored:
            # A snapshot's data must be readable before the region serves from it: wait
            # (rare; an inline batcher committed already).
            while batcher.in_flight():
                batcher.wait()
        self._submit_due = self._submit_due and batcher.has_open_writes()
        self._poll_persisted()
        self._flush_lanes()

    def _batch_entries_ok(self, peer: Peer) -> bool:
        """Whether every other store holding a replica of the region announced that it
        applies batch entries (FEATURE_BATCH_ENTRIES; a rolling upgrade from a version that
        does not: until then, one entry per command)."""
        features, me = self._store_features, self.store_id
        for p in peer.region.peers:
            if p.store_id != me and not features.get(p.store_id, 0) & FEATURE_BATCH_ENTRIES:
                return False
        return True

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
        batcher); release the messages that waited for the fsync; look again at the regions
        whose written Readies carried entries, a snapshot or a vote (persistence may let a
        leader commit or a follower apply); a Ready of commit indexes and messages only
        changes nothing once written."""
        peers, dirty = self.peers, self._dirty
        for rnd in self.batcher.poll_completed():
            self.stats.fsyncs += rnd.synced
            for peer, msgs in rnd.held:
                self._send_raft(peer, msgs)
            for peer in rnd.synced_nodes:
                rid = peer.region.id
                if peers.get(rid) is peer:
                    dirty.add(rid)

    def leaders(self) -> int:
        """Regions led here, as the last rounds saw them (O(1): kept up to date)."""
        return self._leader_count

    def _log_summary(self) -> None:
        """One INFO line for what the regions did since the last one (per-region events are
        logged at DEBUG only: a store of 100,000 regions would write hundreds of MB)."""
        st = self.stats
        now = {
            "elected a leader here": st.leader_changes,
            "lost their leader here": st.leaderships_lost,
            "applied a snapshot": st.snapshots_applied,
            "changed membership": st.conf_changes_applied,
            "replicas created": st.peers_created,
            "replicas destroyed": st.peers_destroyed,
            "splits": sum(v for (_t, o), v in st.splits.items() if o == "ok"),
            "merges": sum(v for (_t, o), v in st.merges.items() if o == "ok"),
        }
        prev, self._summary = self._summary, now
        changed = [f"{now[k] - prev.get(k, 0):,} {k}" for k in now if now[k] != prev.get(k, 0)]
        if changed:
            seconds = self.config.summary_ticks * self.config.base_tick_seconds
            _log.info(
                "store %d, last %.0f s: %s (now %s regions, %s led here, %s awake)",
                self.store_id,
                seconds,
                ", ".join(changed),
                f"{len(self.peers):,}",
                f"{self._leader_count:,}",
                f"{len(self._awake):,}",
            )

    def stop(self, err: StoreError) -> None:
        """Fail everything that waits on this store (it is going away)."""
        for peer in self.peers.values():
            peer.fail_all(err)
        promotions, self._promotions = self._promotions, {}
        for p in promotions.values():
            p.callback(None, err)
