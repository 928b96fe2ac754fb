"""One replica of one region on this store: a RawNode over a RegionStorage, the region's
metadata, and the client work waiting on it (proposals until applied, reads until their read
index is applied). Sans-I/O: the Store drives it in rounds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from multiraft.engine import RegionStorage
from multiraft.engine.engine import ReadView
from multiraft.proto.serverpb_pb2 import MergeState, RaftMessage, Region
from multiraft.proto.serverpb_pb2 import Peer as PeerMeta
from multiraft.raft import Entry, MessageType, ProposalDropped, RawNode, Ready, StateRole

from .cmd import encode_batch, encode_single
from .dedupe import DedupeTable
from .errors import NotLeader, StaleCommand, StoreError

__all__ = ["Peer", "Callback", "NOBODY"]

# A client callback: called once with (result, None) or (None, error).
Callback = Callable[[Any, StoreError | None], None]

_log = logging.getLogger(__name__)
_MSG_PROPOSE = MessageType.MsgPropose
_LEADER = StateRole.Leader
# The empty set of peer ids most replicas hold (`frozenset()` is no singleton: 216 bytes each).
NOBODY: frozenset[int] = frozenset()


# A round's commands go into entries of at most about this many bytes (keys and values).
MAX_BATCH_BYTES = 1 << 20


def _batch_callback(callbacks: list[Callback]) -> Callback:
    """The callback of a batch entry: its result is one (result, error) per command, in
    order; an error of the entry as a whole (lost, overwritten, undecodable) fails them all."""

    def done(results: Any, err: StoreError | None) -> None:
        if err is not None:
            for cb in callbacks:
                cb(None, err)
            return
        assert len(results) == len(callbacks), "a batch entry's results match its commands"
        for cb, (result, cmd_err) in zip(callbacks, results, strict=True):
            cb(result, cmd_err)

    return done


@dataclass(slots=True)
class _Proposal:
    term: int
    callback: Callback
    # A membership change, or an epoch-changing admin command (split, merge): one at a time.
    conf_change: bool = False
    admin: bool = False


class Peer:
    """Invariant: every key of `proposals` is an index of this leader's log in `term`.
    Invariant: `applied_index <= node.commit_index()`."""

    __slots__ = (
        "store_id",
        "region",
        "meta",
        "node",
        "storage",
        "proposals",
        "_to_propose",
        "_envelopes",
        "_envelopes_for",
        "_to_read",
        "_reads_waiting_index",
        "_reads_waiting_apply",
        "_next_read_ctx",
        "dedupe",
        "applied_index",
        "applied_term",
        "was_leader",
        "idle_ticks",
        "hibernate_votes",
        "peer_cache",
        "restored_index",
        "merge_state",
        "pending_apply",
        "want_rollback",
        "commit_merge_proposed",
        "approx_keys",
        "approx_bytes",
        "load",
        "load_keys",
        "hot_checks",
        "born",
        "merged_hint",
        "lease_seconds",
        "lease_until",
        "_read_sent_at",
        "_term",
    )

    def __init__(
        self,
        store_id: int,
        region: Region,
        node: RawNode[RegionStorage],
        storage: RegionStorage,
        applied_index: int,
        applied_term: int,
        storage_engine: ReadView | None = None,
    ) -> None:
        self.store_id = store_id
        # The region as this replica knows it (range, epoch, peers).
        self.region = region
        meta = next((p for p in region.peers if p.store_id == store_id), None)
        assert meta is not None, f"store {store_id} holds no peer of region {region.id}"
        # This replica's own peer record.
        self.meta: PeerMeta = meta
        self.node = node
        self.storage = storage
        # Serialized envelope headers by destination peer id: (store id, header), valid for
        # the (region, own record) objects in `_envelopes_for` (see `envelope_header`).
        self._envelopes: dict[int, tuple[int, bytes]] = {}
        self._envelopes_for: tuple[Region, PeerMeta] | None = None
        # Proposals appended to the log, by index, until applied (or lost).
        self.proposals: dict[int, _Proposal] = {}
        # Commands submitted this round (`cmd.command_body`, callback, approximate bytes),
        # proposed together as one entry at the round's end.
        self._to_propose: list[tuple[list[object], Callback, int]] = []
        # Reads submitted this round: one read_index request for all of them.
        self._to_read: list[Callable[[StoreError | None], None]] = []
        # Reads whose read_index request is in flight, by context.
        self._reads_waiting_index: dict[bytes, list[Callable[[StoreError | None], None]]] = {}
        # Lease reads (0: off): a ReadIndex round whose heartbeats left at time `t` (the
        # store's monotonic clock) proves that no other leader can be elected before
        # `t + lease_seconds` — the quorum that answered will not vote for anyone else until
        # an election timeout after hearing from us (check-quorum), and `lease_seconds` is
        # shorter than that by a margin for clock drift. Until `lease_until`, reads are served
        # at the commit index without a heartbeat round. Measured on a clock, never in ticks:
        # a leader paused past its lease (its ticks stopped too) must not trust it.
        self.lease_seconds = 0.0
        self.lease_until = 0.0
        # When each ReadIndex round in flight was asked (its heartbeats go out in that round).
        self._read_sent_at: dict[bytes, float] = {}
        # The term of the last Ready's hard state.
        self._term = 0
        # Reads with a read index, waiting for it to be applied: (index, reads).
        self._reads_waiting_apply: list[tuple[int, list[Callable[[StoreError | None], None]]]] = []
        self._next_read_ctx = 1
        # Results of recently applied request ids (retried writes apply once).
        self.dedupe = DedupeTable(storage_engine, region.id)
        # The store ran the commands up to here; their writes may still wait in a write round
        # (the store's overlay answers for them until it is committed).
        self.applied_index = applied_index
        self.applied_term = applied_term
        self.was_leader = False
        # Ticks since the region last did anything but heartbeats (leader-side idleness).
        self.idle_ticks = 0
        # Followers that agreed to hibernate at the leader's current (term, last index).
        # (Frozen sets, replaced on change: most replicas hold the shared empty one.)
        self.hibernate_votes = NOBODY
        # Peers heard from that the region metadata does not list (yet): an uninitialized
        # replica knows only itself until its snapshot arrives.
        self.peer_cache: dict[int, PeerMeta] = {}
        # The index of a snapshot applied in a round not yet durable (0: none).
        self.restored_index = 0
        # Set once PrepareMerge is applied (the region serves nothing until the merge commits
        # or rolls back); None otherwise.
        self.merge_state: MergeState | None = None
        # Committed entries whose apply waits (a CommitMerge waiting for its source replica
        # here to catch up; the entries after it keep their order behind it).
        self.pending_apply: list[Entry] = []
        # Merging source, leader: the peers that want the merge rolled back.
        self.want_rollback = NOBODY
        # The region's data here, kept up to date by the apply loop once known (-1: not
        # counted yet; the split check counts it once).
        self.approx_keys = -1
        self.approx_bytes = -1
        # Leader: requests (writes and reads) since the last split check, a sample of their
        # keys, and the checks in a row that found the region hot (load-based split).
        self.load = 0
        self.load_keys: list[bytes] = []
        self.hot_checks = 0
        # The store tick at which this replica was opened or its range last changed (the
        # automatic merge leaves young regions alone).
        self.born = 0
        # A store answered this stale replica that its region was merged into this region
        # (as the merge left it), while the target replica here was behind: a snapshot of
        # that target at that version or later replaces this replica (`_check_snapshot`).
        self.merged_hint: Region | None = None
        # Merging source: the store tick at which this store last proposed the CommitMerge
        # on the target (0: never); re-proposed if nothing happened for a while.
        self.commit_merge_proposed = 0

    @property
    def region_id(self) -> int:
        return self.region.id

    @property
    def initialized(self) -> bool:
        """False for a replica created by a message, until its first snapshot gives it the
        region's range, data and membership (its epoch is (0, 0) until then)."""
        return self.region.region_epoch.version > 0

    def set_region(self, region: Region) -> None:
        """New metadata (conf change, snapshot): our own peer record may have changed role."""
        self.region = region
        meta = next((p for p in region.peers if p.store_id == self.store_id), None)
        if meta is not None:
            self.meta = meta

    def find_peer(self, peer_id: int) -> PeerMeta | None:
        for p in self.region.peers:
            if p.id == peer_id:
                return p
        return self.peer_cache.get(peer_id)

    def envelope_header(self, to: int) -> tuple[int, bytes] | None:
        """(store id, serialized RaftMessage fields but `message`) for a message to peer
        `to`, or None if that peer is unknown. Cached until `region` or `meta` is replaced
        (every change of the region's range, epoch or peers replaces the object:
        `set_region`) or the peer cache learns a peer."""
        region, meta = self.region, self.meta
        fors = self._envelopes_for
        if fors is None or fors[0] is not region or fors[1] is not meta:
            self._envelopes = {}
            self._envelopes_for = (region, meta)
        hit = self._envelopes.get(to)
        if hit is not None:
            return hit
        dest = self.find_peer(to)
        if dest is None:
            return None
        rm = RaftMessage(region_id=region.id, start_key=region.start_key, end_key=region.end_key)
        rm.from_peer.CopyFrom(meta)
        rm.to_peer.CopyFrom(dest)
        rm.region_epoch.CopyFrom(region.region_epoch)
        hit = self._envelopes[to] = (dest.store_id, rm.SerializeToString())
        return hit

    def is_leader(self) -> bool:
        return self.node.is_leader()

    def leader_meta(self) -> PeerMeta | None:
        lid = self.node.leader_id()
        return self.find_peer(lid) if lid else None

    def not_leader(self) -> NotLeader:
        return NotLeader(self.region.id, self.leader_meta())

    # -- batching.ReadyNode: the batcher persists this replica's Readies ---------------------

    def store(self) -> RegionStorage:
        return self.storage

    def advance_append_async(self, rd: Ready) -> None:
        self.node.advance_append_async(rd)

    def on_persist_ready(self, number: int) -> None:
        self.node.on_persist_ready(number)
        if self.restored_index:
            # The snapshot's data is durable and readable: raft may count it applied.
            self.node.advance_apply_to(self.restored_index)
            self.restored_index = 0
            self.serve_ready_reads()

    # -- client work ------------------------------------------------------------------------

    def submit_command(self, body: list[object], callback: Callback, size: int = 0) -> None:
        """Queue a command (`cmd.command_body`) for this round's batch entry."""
        if not self.is_leader():
            raise self.not_leader()
        self._to_propose.append((body, callback, size))

    def submit_read(self, callback: Callable[[StoreError | None], None]) -> None:
        """`callback(None)` once the read may be served from the applied state (linearizable:
        ReadIndex, Raft thesis §6.4), or `callback(error)`."""
        if not self.is_leader():
            raise self.not_leader()
        self._to_read.append(callback)

    def has_client_work(self) -> bool:
        return bool(self._to_propose or self._to_read)

    def has_waiting_work(self) -> bool:
        """Anything a client waits for: the region must stay awake."""
        return bool(
            self._to_propose
            or self._to_read
            or self.proposals
            or self._reads_waiting_index
            or self._reads_waiting_apply
        )

    def can_hibernate(self, down: Container[int] = ()) -> bool:
        """A leader may put the region to sleep when every follower (but the peers `down`:
        on stores known dead) has its whole log, it applied everything, and nothing is
        pending (TiKV's hibernate-region checks); never while a merge is in progress (its
        checks run on ticks)."""
        return (
            not self.has_waiting_work()
            and self.merge_state is None
            and not self.pending_apply
            and self.node.is_quiescent(down)
        )

    def track_proposal(
        self, index: int, term: int, callback: Callback, *, conf_change: bool = False, admin: bool = False
    ) -> None:
        self._track(index, _Proposal(term, callback, conf_change, admin))

    def _track(self, index: int, proposal: _Proposal) -> None:
        """Wait for the entry at `index`. One of an older term there was overwritten: this
        leader lost and regained leadership without a Ready showing it (a term change within
        one round), so nothing failed that proposal yet."""
        old = self.proposals.get(index)
        if old is not None:
            old.callback(None, StaleCommand(f"region {self.region.id}: proposal overwritten"))
        self.proposals[index] = proposal

    def has_pending_conf_change(self) -> bool:
        return any(p.conf_change for p in self.proposals.values())

    def has_pending_admin(self) -> bool:
        """A membership change, split or merge proposed here is not applied yet."""
        return any(p.conf_change or p.admin for p in self.proposals.values())

    def flush_client_work(self, now: float | None = None, batch_entries: bool = True) -> None:
        """Propose this round's commands as one MsgPropose, and ask one read index for this
        round's reads (or, with a valid lease at time `now`, serve them at the commit index).
        Without `batch_entries` (a store of the region has not announced that it applies
        them) each command is an entry of its own."""
        if self._to_propose and not batch_entries:
            queued, self._to_propose = self._to_propose, []
            node = self.node
            try:
                first = node.propose_batch([encode_single(body) for body, _, _ in queued])
            except ProposalDropped as e:
                for _, cb, _ in queued:
                    cb(None, StaleCommand(f"region {self.region.id}: {e}"))
            else:
                term = node.term()
                for i, (_, cb, _) in enumerate(queued):
                    self._track(first + i, _Proposal(term, cb))
        if self._to_propose:
            queued, self._to_propose = self._to_propose, []
            # One entry per round carrying every command (TiKV's RaftCmdRequest batching),
            # unless they are big: then entries of about MAX_BATCH_BYTES each.
            batches: list[list[tuple[list[object], Callback, int]]] = [[]]
            size = 0
            for item in queued:
                if size and size + item[2] > MAX_BATCH_BYTES:
                    batches.append([])
                    size = 0
                batches[-1].append(item)
                size += item[2]
            node = self.node
            try:
                first = node.propose_batch([encode_batch([b for b, _, _ in bt]) for bt in batches])
            except ProposalDropped as e:
                for _, cb, _ in queued:
                    cb(None, StaleCommand(f"region {self.region.id}: {e}"))
            else:
                term = node.term()
                for i, bt in enumerate(batches):
                    self._track(first + i, _Proposal(term, _batch_callback([cb for _, cb, _ in bt])))
        # Reads wait until the leader committed an entry of its term: before that its commit
        # index may be stale and raft drops the request (etcd-io/etcd#7331).
        if self._to_read and self.is_leader() and self.node.commit_to_current_term():
            reads, self._to_read = self._to_read, []
            if now is not None and now < self.lease_until and not self.node.is_transferring_leader():
                # Within the lease no other leader exists: our commit index is the latest.
                self._reads_waiting_apply.append((self.node.commit_index(), reads))
                self.serve_ready_reads()
                return
            ctx = self._next_read_ctx.to_bytes(8, "big")
            self._next_read_ctx += 1
            self._reads_waiting_index[ctx] = reads
            if now is not None and self.lease_seconds:
                self._read_sent_at[ctx] = now
            self.node.read_index(ctx)

    def on_read_states(self, read_states: list[Any]) -> None:
        for rs in read_states:
            ctx = rs.request_ctx
            reads = self._reads_waiting_index.pop(ctx, None)
            if reads is not None:
                self._reads_waiting_apply.append((rs.index, reads))
            sent = self._read_sent_at.pop(ctx, None)
            if sent is not None and self.is_leader():
                self.lease_until = max(self.lease_until, sent + self.lease_seconds)
        self.serve_ready_reads()

    def on_term(self, term: int) -> None:
        """A Ready's hard state carries `term`. If the term changed, the read index requests
        of the old term are gone from raft (even if this replica leads again, having lost
        and regained leadership within one round): fail their reads (retryable)."""
        if term == self._term:
            return
        self._term = term
        self.drop_lease()
        if self._reads_waiting_index:
            waiting, self._reads_waiting_index = self._reads_waiting_index, {}
            err = StaleCommand(f"region {self.region.id}: term changed")
            for reads in waiting.values():
                for cb in reads:
                    cb(err)

    def drop_lease(self) -> None:
        """No more lease reads until a ReadIndex round proves leadership again (leadership
        lost or handed over, membership changed)."""
        self.lease_until = 0.0
        self._read_sent_at.clear()

    def serve_ready_reads(self) -> None:
        if not self._reads_waiting_apply:
            return
        keep = []
        for index, reads in self._reads_waiting_apply:
            # (Not while a snapshot's data waits for its round: the engine has the old data.)
            if index <= self.applied_index and not self.restored_index:
                for cb in reads:
                    cb(None)
            else:
                keep.append((index, reads))
        self._reads_waiting_apply = keep

    def on_role_change(self) -> None:
        """Leadership was lost: every waiting proposal and read fails with a retryable error.
        A proposal may still commit later; a retry carries the same request id and the apply
        path deduplicates it."""
        is_leader = self.is_leader()
        if self.was_leader and not is_leader:
            self.fail_all(StaleCommand(f"region {self.region.id}: leadership changed"))
        if not is_leader or not self.was_leader:
            self.drop_lease()
        self.was_leader = is_leader

    def fail_all(self, err: StoreError) -> None:
        """Fail every waiting proposal and read with `err` (leadership lost, store stopping):
        nothing waits forever."""
        props, self.proposals = self.proposals, {}
        for p in props.values():
            p.callback(None, err)
        queued, self._to_propose = self._to_propose, []
        for _, proposal_cb, _ in queued:
            proposal_cb(None, err)
        reads: list[Callable[[StoreError | None], None]] = list(self._to_read)
        for rs in self._reads_waiting_index.values():
            reads.extend(rs)
        for _, rs in self._reads_waiting_apply:
            reads.extend(rs)
        self._to_read, self._reads_waiting_index, self._reads_waiting_apply = [], {}, []
        self._read_sent_at.clear()
        for read_cb in reads:
            read_cb(err)

    def fail_after(self, index: int, err: StoreError) -> None:
        """Fail the proposals after `index` and every read (the region stopped serving at
        `index`: a merge is prepared)."""
        for i in [i for i in self.proposals if i > index]:
            self.proposals.pop(i).callback(None, err)
        proposals, self.proposals = self.proposals, {}
        self.fail_all(err)
        self.proposals = proposals

    def complete_proposal(self, entry: Entry, result: Any, error: StoreError | None) -> None:
        p = self.proposals.pop(entry.index, None)
        if p is None:
            return
        if p.term != entry.term:
            # Our entry at this index was overwritten by another leader's.
            p.callback(None, StaleCommand(f"region {self.region.id}: proposal overwritten"))
        else:
            p.callback(result, error)
