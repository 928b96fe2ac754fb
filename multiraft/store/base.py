"""The store's state and configuration, shared by the layers of `Store` (outbox,
lifecycle, hibernate, messages, apply, store)."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from batching import Batcher
from multiraft.engine import Engine
from multiraft.proto.serverpb_pb2 import RaftMessage, Region
from router.codec import FrameDecoder
from router.lanes import OutboundLanes

from .ids import IdAllocator
from .kv import Unwritten
from .membership import Promotion
from .peer import Callback, Peer

__all__ = [
    "StoreConfig",
    "StoreStats",
    "StoreBase",
    "SendSnapshot",
    "RAFT_INIT_LOG_INDEX",
    "BOOTSTRAP_TERM",
    "designated_store",
    "MAX_SAMPLES",
    "initial_peer_id",
    "MAX_INITIAL_REGIONS",
    "FEATURE_BATCH_ENTRIES",
    "FEATURES",
]

# Bootstrapped regions start at this log index (TiKV's RAFT_INIT_LOG_INDEX): a peer added
# later has an empty log, below it, so it always catches up with a snapshot that carries the
# region's data and membership.
RAFT_INIT_LOG_INDEX = 5
# The first term of a new cluster's regions: every initial replica's first durable state is
# this term with its vote for the region's designated replica (`designated_store`), which
# leads it without an election (`RawNode.lead_at_bootstrap`). Split-born regions start at
# RAFT_INIT_LOG_INDEX and elect as usual.
BOOTSTRAP_TERM = RAFT_INIT_LOG_INDEX + 1
# Latency samples kept between two metrics flushes (the flush takes and clears them).
MAX_SAMPLES: Final = 1 << 16
# What this store's code understands, announced to the other stores in every frame of raft
# messages (`BatchRaftMessage.features`; a frame without it is from code older than these
# bits). A leader writes an entry format only once every store of the region announced it,
# so a rolling upgrade never replicates an entry that an old store cannot apply.
# - FEATURE_BATCH_ENTRIES: it applies entries that carry several commands (`cmd.encode_batch`).
FEATURE_BATCH_ENTRIES: Final = 1
FEATURES: Final = FEATURE_BATCH_ENTRIES
# send_snapshot(to_store, header, data, done): the server's snapshot connection.
SendSnapshot = Callable[[int, bytes, bytes, Callable[[bool], None]], None]


@dataclass
class StoreConfig:
    """The store's tunables (the server maps its TOML config onto these)."""

    election_ticks: int = 10
    heartbeat_ticks: int = 2
    # Another store not heard from for this many ticks is suspected down (0: an election
    # timeout): the hibernated regions it led elect a new leader. Longer than an election
    # timeout, a store whose event loop stalls a moment under load (a round of thousands
    # of regions) is not taken for dead, and its regions' leaders are not deposed.
    suspect_ticks: int = 0
    # A store not heard from at all since this one started is suspected only after this
    # many ticks (if more than `suspect_ticks`): stores of a new cluster finish opening
    # their regions at different times (tens of seconds apart at 100,000 regions), and a
    # late one must not see the regions it was to lead elected elsewhere meanwhile.
    startup_grace_ticks: int = 0
    check_quorum: bool = True
    pre_vote: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_frame_bytes: int = 4 << 20
    # Reads by leader lease instead of a ReadIndex heartbeat round, within 80% of an election
    # timeout of the last heartbeat round a quorum answered, measured on the store's clock
    # (needs check_quorum, and a clock: stale only if clocks drift by more than the margin).
    lease_reads: bool = False
    # Followers learn a new commit index from the next append or heartbeat instead of an
    # append of its own (raft-rs `skip_bcast_commit`; TiKV's default): fewer messages per
    # write, followers apply a little later. Raft still broadcasts commits of conf changes.
    skip_bcast_commit: bool = True
    # Raft log GC: keep this many applied entries; compact once twice as many piled up.
    log_gc_keep: int = 1000
    # An awake follower whose leader's store is heard from ticks one base tick in this many
    # (1: every tick). At 100,000 regions the ticks of the awake followers, two thirds of
    # the awake replicas, took most of a store's time after a start or a failover.
    follower_tick_every: int = 1
    # A tick ticks at most this many awake regions (0: all), the next ones at the next tick.
    max_region_ticks: int = 0
    # A round handles at most this many regions (0: all that have work); the others wait
    # for the next round, which the server runs right after. At 100,000 regions a round
    # over every one took seconds, during which the store answered nothing and sent no
    # frame: the others suspected it and re-elected its regions.
    max_regions_per_round: int = 4096
    # Retried writes apply once if retried within this many entries of the original.
    dedupe_window: int = 100_000
    # A summary of the regions' events in the log every this many ticks (if any happened).
    summary_ticks: int = 100
    # The base tick in seconds (turns request counts per check into a rate; the store
    # reads no clock).
    base_tick_seconds: float = 0.1
    # Automatic split (checked on leaders every `split_check_ticks`): at the middle key once
    # a region holds more than `region_split_size` bytes or `region_split_keys` keys (0: off),
    # or by load once it serves more than `region_split_qps` requests per second for
    # `split_qps_checks` checks in a row (0: off).
    split_check_ticks: int = 10
    region_split_size: int = 96 << 20
    region_split_keys: int = 960_000
    region_split_qps: int = 0
    split_qps_checks: int = 3
    # Automatic merge of a region below both `region_merge_size` bytes and
    # `region_merge_keys` keys into an adjacent one on the same stores (both small enough that
    # the result stays below the split thresholds), not within `split_merge_cooldown_ticks` of
    # a split of either.
    auto_merge: bool = True
    region_merge_size: int = 20 << 20
    region_merge_keys: int = 200_000
    split_merge_cooldown_ticks: int = 36_000
    # A merge is refused while a source replica lags more than this many entries behind.
    merge_max_log_gap: int = 128
    # A new voter joins as a learner and is promoted once the leader sees it hold the
    # region's data with at most `promote_max_lag` entries missing; if it has not caught up
    # within `learner_catch_up_ticks` ticks, it stays a learner (promotion.py).
    promote_max_lag: int = 8
    learner_catch_up_ticks: int = 600
    # Overload: at most this many client requests (writes and reads) wait in the store at
    # once; more are refused with ServerBusy (the client backs off and retries) instead of
    # queueing without limit. 0: no limit.
    max_pending_requests: int = 1024
    # Leader balance: every `leader_balance_ticks` a store that leads clearly more regions
    # than its share (the average over the stores it hears from, which tell their counts in
    # their store heartbeats) hands up to `leader_balance_batch` leaders to the store that
    # leads the fewest. 0 ticks: off.
    leader_balance_ticks: int = 10
    leader_balance_batch: int = 8


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
    # Regions that elected a leader here / whose leader here stepped down.
    leader_changes: int = 0
    leaderships_lost: int = 0
    conf_changes_applied: int = 0
    reads: int = 0
    # Client requests refused because `max_pending_requests` were waiting.
    server_busy: int = 0
    # Leader transfers started by the leader balance.
    balance_transfers: int = 0
    # Raft messages by eraftpb MessageType value.
    sent_by_type: dict[int, int] = field(default_factory=dict)
    received_by_type: dict[int, int] = field(default_factory=dict)
    # Proposals that failed, by error code (raised at once or reported by callback).
    proposals_failed: dict[str, int] = field(default_factory=dict)
    # Splits and merges asked of this store, by (trigger, outcome): trigger "admin", "size",
    # "keys", "load" or "auto"; outcome "ok" or an error code.
    splits: dict[tuple[str, str], int] = field(default_factory=dict)
    merges: dict[tuple[str, str], int] = field(default_factory=dict)
    # With a clock: samples since the metrics flush last took them (it clears them).
    propose_to_apply_seconds: list[float] = field(default_factory=list)
    apply_seconds: list[float] = field(default_factory=list)
    merge_seconds: list[float] = field(default_factory=list)

    def failed(self, code: str) -> None:
        self.proposals_failed[code] = self.proposals_failed.get(code, 0) + 1


# Regions a new cluster may bootstrap with (`--initial-regions`). Their ids are 1..N and their
# peer ids `initial_peer_id`: below 2**40, the allocator's first id, while N < 2**24.
MAX_INITIAL_REGIONS: Final = 1 << 20


def designated_store(region_id: int, store_ids: list[int]) -> int:
    """The store whose replica of `region_id` campaigns (or, at bootstrap, leads) first among
    the voters on `store_ids`: by region id, so leaders spread evenly over the stores."""
    stores = sorted(store_ids)
    return stores[region_id % len(stores)]


def initial_peer_id(region_id: int, store_id: int) -> int:
    """Peer ids of bootstrapped regions: every store derives the same ones. Later ids come
    from the id allocator, (store_id << 40) | counter, which never collides with these."""
    return (region_id << 16) | store_id


class StoreBase:
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
        # The stores a frame came from since this store started.
        self._heard: set[int] = set()
        # Where the last tick's round-robin over the awake regions stopped (max_region_ticks).
        self._tick_offset = 0
        # Each store's clock as its frames last told it (a clock going back: it restarted).
        self._store_clocks: dict[int, int] = {}
        # Stores a frame went to since the last tick (the others get a store heartbeat).
        self._sent_since_tick: set[int] = set()
        self.lanes = OutboundLanes(store_id, max_frame_bytes=self.config.max_frame_bytes)
        self.lanes.features = FEATURES
        # What each other store announced in its last frame of raft messages (FEATURES).
        self._store_features: dict[int, int] = {}
        self._decoders: dict[int, FrameDecoder] = {}
        self.stats = StoreStats()
        self._send_snapshot = send_snapshot
        # A monotonic clock (seconds): latency metrics, and the leases of lease reads (the
        # one decision made on it; everything else runs on `tick()`).
        self._clock = clock
        # Raft writes of every region: one batch, one fsync per round. The server passes a
        # pipelined batcher (a writer thread) and sets its `on_complete` to run a round; by
        # default rounds commit inline (the simulator: deterministic).
        self.batcher: Batcher[Peer] = batcher if batcher is not None else Batcher(engine, pipelined=False)
        # Whether the next round submits its writes even if nothing waits on them (set every
        # tick, and by `request_submit`): writes that are not urgent (`Round.urgent`) wait at
        # most a tick for a round that must be written anyway.
        self._submit_due = False
        # Outcomes of snapshot sends, reported to raft at the next round: (region, peer, ok).
        self._snapshot_reports: list[tuple[int, int, bool]] = []
        # Regions whose replica here was removed: their last known metadata.
        self.tombstones: dict[int, Region] = {}
        # Of those, the ones merged into another region: the target as the merge left it.
        self.merged_into: dict[int, Region] = {}
        # Vote requests for regions a split here has not created yet (the parent has not
        # applied it): stepped once the split creates the peer, so the new region's first
        # election is not lost (TiKV's pending votes). Bounded (lifecycle.py).
        self._pending_votes: dict[int, RaftMessage] = {}
        # Messages to step again at the start of the next round (a kept vote whose peer a
        # split just created).
        self._replay: list[RaftMessage] = []
        # Merges asked of this store (source region id -> callback with the merged region).
        self._merge_callbacks: dict[int, Callback] = {}
        # Target regions whose apply waits at a CommitMerge, by source region id: the source
        # replica here must apply through the merge's commit index first (CatchUpLogs).
        self._merge_waiters: dict[int, int] = {}
        # Regions whose replica here is merging (PrepareMerge applied). Invariant: exactly the
        # peers with a `merge_state`.
        self._merging: set[int] = set()
        # Regions that wrote or served since the last split check (they are the ones whose
        # size or load may call for a split), and the number of split checks so far.
        self._checked: set[int] = set()
        self._split_checks = 0
        # A merge was prepared in this round: check the merges at its end (the CommitMerge
        # goes out now rather than at the next merge-check tick).
        self._merge_check_due = False
        # Regions whose replica here was chosen to campaign first: (region id, the tick from
        # which it may), oldest first (`lifecycle._schedule_election`).
        self._campaigns: deque[tuple[int, int]] = deque()
        # Regions whose bootstrap state (a vote for the replica here) this process wrote:
        # that replica leads the bootstrap term unelected when its campaign comes up, once
        # (never after a restart: `Raft.lead_at_bootstrap` says why).
        self._bootstrap_leads: set[int] = set()
        # Hibernated leaders to wake, oldest first, a wave a tick (`hibernate._on_store_back`).
        self._wakeups: deque[int] = deque()
        # Regions led here (as the rounds saw the role changes), and the counters of the
        # last log summary.
        self._leader_count = 0
        # The other stores' leader counts, as their frames last told them (leader balance).
        self._leader_counts: dict[int, int] = {}
        self._summary: dict[str, int] = {}
        # Regions whose waiting entries may be applied again this round.
        self._resume_apply: set[int] = set()
        # Voters being added: the learner on the way, by region id (promotion.py).
        self._promotions: dict[int, Promotion] = {}
        # Client requests (writes and reads) handed to the store whose callback has not fired
        # yet (bounded by `config.max_pending_requests`).
        self.pending_requests = 0
        # KV writes of applied commands whose round is not committed yet (see KvApplier).
        self._unwritten: Unwritten = {}
        self.ids = IdAllocator(engine, store_id)

    def _take_dirty(self) -> set[int]:
        """The regions this round handles: every dirty one, or `max_regions_per_round` of
        them (the rest stay dirty). `set.pop` resumes where the last pop left off, so the
        regions left over are taken first by the next rounds, not starved by regions that
        turn dirty again every tick."""
        dirty = self._dirty
        limit = self.config.max_regions_per_round
        if not limit or len(dirty) <= limit:
            self._dirty = set()
            return dirty
        pop = dirty.pop
        return {pop() for _ in range(limit)}
