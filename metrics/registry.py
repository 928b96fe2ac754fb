"""The Prometheus metrics of a store process: one registry, names prefixed `multiraft_`, units
in the names (`_seconds`, `_bytes`, `_total`), plus the standard `process_*` metrics of the
process (CPU seconds, resident memory, open file descriptors, start time). The exposition
leaves out the `*_created` series (one timestamp per counter and histogram: as many series
again, and nothing a dashboard uses; a restart shows in `process_start_time_seconds`).

Hot paths never touch prometheus objects (a `Counter.inc()` costs ~0.8 µs): the store, the
router and batching count in plain ints and the server flushes deltas here once per round
(`MetricsSink.add_*`), which keeps per-message cost at an integer increment.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["StoreMetrics", "exposition"]

# Latency buckets from 100 µs to ~30 s.
_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
)
_COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class StoreMetrics:
    """Every metric of one store process, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        self.process = ProcessCollector(registry=r)
        # Regions.
        self.regions = Gauge("multiraft_regions", "Region replicas hosted by this store.", registry=r)
        self.leaders = Gauge("multiraft_leaders", "Regions whose leader is on this store.", registry=r)
        self.hibernated_regions = Gauge(
            "multiraft_hibernated_regions", "Region replicas that stopped ticking.", registry=r
        )
        # Store liveness as this store sees the others (no series for itself).
        self.store_up = Gauge(
            "multiraft_store_up",
            "1 if this store hears from the store (a frame within an election timeout), 0 if "
            "not; one series per other store it knows.",
            ["store"],
            registry=r,
        )
        self.leader_changes = Counter(
            "multiraft_leader_changes_total", "Leaders elected on this store.", registry=r
        )
        self.ticks = Counter("multiraft_ticks_total", "Region ticks processed.", registry=r)
        # Proposals and reads.
        self.proposals = Counter("multiraft_proposals_total", "Commands proposed.", registry=r)
        self.proposals_dropped = Counter(
            "multiraft_proposals_dropped_total", "Proposals refused or lost, by reason.", ["reason"], registry=r
        )
        self.read_index = Counter(
            "multiraft_read_index_total", "Linearizable reads served through ReadIndex.", registry=r
        )
        self.server_busy = Counter(
            "multiraft_server_busy_total",
            "Client requests refused with SERVER_BUSY: too many were waiting in the store.",
            registry=r,
        )
        self.leader_balance_transfers = Counter(
            "multiraft_leader_balance_transfers_total",
            "Leader transfers started by the leader balance (to even out leaders per store).",
            registry=r,
        )
        self.applied_entries = Counter(
            "multiraft_applied_entries_total",
            "Raft log entries applied by the replicas of this store.",
            registry=r,
        )
        self.propose_to_apply = Histogram(
            "multiraft_propose_to_apply_seconds", "From propose to applied.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.apply_duration = Histogram(
            "multiraft_apply_duration_seconds", "Applying one round of committed entries.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        # Raft messages.
        self.raft_messages_sent = Counter(
            "multiraft_raft_messages_sent_total", "Raft messages sent, by type.", ["type"], registry=r
        )
        self.raft_messages_received = Counter(
            "multiraft_raft_messages_received_total", "Raft messages received, by type.", ["type"], registry=r
        )
        self.unreachable = Counter(
            "multiraft_unreachable_reports_total", "report_unreachable calls.", registry=r
        )
        # Router.
        self.frames_sent = Counter(
            "multiraft_frames_sent_total", "Frames sent, by destination store.", ["store"], registry=r
        )
        self.messages_per_frame = Histogram(
            "multiraft_messages_per_frame", "Raft messages per frame.", buckets=_COUNT_BUCKETS, registry=r
        )
        self.lane_drops = Counter(
            "multiraft_router_lane_drops_total", "Messages dropped because a lane was full.", registry=r
        )
        self.bad_frames = Counter(
            "multiraft_bad_frames_total", "Malformed frames received, by reason.", ["reason"], registry=r
        )
        # Batching.
        self.batch_rounds = Counter("multiraft_batch_rounds_total", "Write rounds committed.", registry=r)
        self.regions_per_round = Histogram(
            "multiraft_batch_regions_per_round", "Regions written per round.", buckets=_COUNT_BUCKETS, registry=r
        )
        self.fsync_duration = Histogram(
            "multiraft_fsync_duration_seconds", "Durable commit of one round.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.bytes_written = Counter(
            "multiraft_bytes_written_total", "Bytes written to the engine.", registry=r
        )
        # Splits and merges asked of this store (the leader's), by trigger and outcome.
        self.region_splits = Counter(
            "multiraft_region_splits_total",
            "Region splits proposed here, by trigger (admin, size, keys, load) and outcome (ok "
            "or an error code).",
            ["trigger", "outcome"],
            registry=r,
        )
        self.region_merges = Counter(
            "multiraft_region_merges_total",
            "Region merges proposed here, by trigger (admin, auto) and outcome (ok, "
            "MERGE_ROLLED_BACK or another error code).",
            ["trigger", "outcome"],
            registry=r,
        )
        # Zero-valued series from the start, so that rate() sees the first one.
        for trigger in ("admin", "size", "keys", "load"):
            self.region_splits.labels(trigger=trigger, outcome="ok")
        for trigger in ("admin", "auto"):
            self.region_merges.labels(trigger=trigger, outcome="ok")
        self.merge_duration = Histogram(
            "multiraft_region_merge_duration_seconds",
            "From a merge's proposal to its commit on this store.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        # Snapshots.
        self.snapshots = Counter(
            "multiraft_snapshots_total", "Snapshots, by direction and outcome.", ["direction", "outcome"], registry=r
        )


# Metric types whose families carry a `<name>_created` sample per series.
_WITH_CREATED = frozenset({"counter", "histogram", "summary"})


class _WithoutCreated(Collector):
    """A view of a registry without the `_created` samples (the registry is untouched, and
    so is any other registry of the process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            if family.type in _WITH_CREATED:
                created = family.name + "_created"
                family.samples = [s for s in family.samples if s.name != created]
            yield family


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of `registry` (served at /metrics), without `_created`."""
    data: bytes = generate_latest(_WithoutCreated(registry))
    return data
