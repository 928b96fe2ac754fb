"""Copy the plain-int counters of the store, the batcher and the transport into Prometheus.

Hot paths count in plain ints (a `Counter.inc()` costs ~0.8 µs: docs/architecture.md);
`MetricsFlusher` runs once per tick and before every scrape, and adds to each Prometheus
counter the delta since its previous run. Latency samples collected by the store are observed and cleared.

Metrics that `metrics.StoreMetrics` does not define yet (transport bytes, connections, client
service counters) are registered here on the same registry, with the same conventions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import Counter, Gauge

from metrics import StoreMetrics
from multiraft.raft import MessageType

__all__ = ["MetricsFlusher"]


def _type_name(t: int) -> str:
    try:
        return str(MessageType.Name(t))
    except ValueError:
        return str(t)


class _Deltas:
    """Last values seen, per key: `delta(key, now)` is how much a counter grew since."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[object, float] = {}

    def delta(self, key: object, now: float) -> float:
        last = self._last.get(key, 0)
        self._last[key] = now
        # A counter that went down was reset (e.g. a new transport): count from zero.
        return now - last if now >= last else now


class MetricsFlusher:
    """Flushes `store.stats`, `store.batcher.stats`, `store.lanes.stats`, `transport.stats`
    and the per-destination frame counts of the node into `metrics`."""

    def __init__(
        self,
        metrics: StoreMetrics,
        store: Any,
        transport: Any | None,
        frames_by_store: Mapping[int, int],
        client_stats: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.m = metrics
        self.store = store
        self.transport = transport
        self.frames_by_store = frames_by_store
        self.client_stats = client_stats
        self._d = _Deltas()
        r = metrics.registry
        self.transport_bytes = Counter(
            "multiraft_transport_bytes_total",
            "Bytes on store-to-store connections, by direction.",
            ["direction"],
            registry=r,
        )
        self.transport_frames_received = Counter(
            "multiraft_transport_frames_received_total",
            "Raft frames received from other stores.",
            registry=r,
        )
        self.transport_connects = Counter(
            "multiraft_transport_connects_total", "Outbound connection attempts.", registry=r
        )
        self.transport_dropped = Counter(
            "multiraft_transport_dropped_frames_total",
            "Frames the transport dropped, by reason.",
            ["reason"],
            registry=r,
        )
        self.handshake_rejects = Counter(
            "multiraft_transport_handshake_rejects_total", "Handshakes refused.", registry=r
        )
        self.client_requests = Counter(
            "multiraft_client_events_total",
            "Client service counters, by name.",
            ["event"],
            registry=r,
        )
        self.awake_regions = Gauge(
            "multiraft_awake_regions", "Region replicas that tick.", registry=r
        )
        self.fsyncs = Counter(
            "multiraft_fsyncs_total", "Durable commits of the write rounds.", registry=r
        )
        # The stores multiraft_store_up has a series for.
        self._store_up: set[str] = set()

    def flush(self) -> None:
        m, d = self.m, self._d
        store = self.store
        st = store.stats
        n = len(store.peers)
        awake = store.awake_regions()
        m.regions.set(n)
        m.leaders.set(store.leaders())
        m.hibernated_regions.set(n - awake)
        self.awake_regions.set(awake)
        self._flush_store_up()
        m.leader_changes.inc(d.delta("leader_changes", st.leader_changes))
        m.ticks.inc(d.delta("ticks", st.ticks))
        m.proposals.inc(d.delta("proposals", st.proposals))
        m.read_index.inc(d.delta("reads", st.reads))
        m.applied_entries.inc(d.delta("applied", st.applied_entries))
        m.server_busy.inc(d.delta("server_busy", st.server_busy))
        m.leader_balance_transfers.inc(d.delta("balance", st.balance_transfers))
        m.unreachable.inc(d.delta("unreachable", st.unreachable_reports))
        for code, v in list(st.proposals_failed.items()):
            inc = d.delta(("failed", code), v)
            if inc:
                m.proposals_dropped.labels(reason=code).inc(inc)
        for t, v in list(st.sent_by_type.items()):
            inc = d.delta(("sent", t), v)
            if inc:
                m.raft_messages_sent.labels(type=_type_name(t)).inc(inc)
        for t, v in list(st.received_by_type.items()):
            inc = d.delta(("recv", t), v)
            if inc:
                m.raft_messages_received.labels(type=_type_name(t)).inc(inc)
        samples, st.propose_to_apply_seconds = st.propose_to_apply_seconds, []
        for s in samples:
            m.propose_to_apply.observe(s)
        samples, st.apply_seconds = st.apply_seconds, []
        for s in samples:
            m.apply_duration.observe(s)
        for (trigger, outcome), v in list(st.splits.items()):
            inc = d.delta(("split", trigger, outcome), v)
            if inc:
                m.region_splits.labels(trigger=trigger, outcome=outcome).inc(inc)
        for (trigger, outcome), v in list(st.merges.items()):
            inc = d.delta(("merge", trigger, outcome), v)
            if inc:
                m.region_merges.labels(trigger=trigger, outcome=outcome).inc(inc)
        samples, st.merge_seconds = st.merge_seconds, []
        for s in samples:
            m.merge_duration.observe(s)
        inc = d.delta("store_bad_frames", st.bad_frames)
        if inc:
            m.bad_frames.labels(reason="store_decode").inc(inc)
        m.snapshots.labels(direction="applied", outcome="ok").inc(
            d.delta("snap_applied", st.snapshots_applied)
        )
        m.snapshots.labels(direction="received", outcome="rejected").inc(
            d.delta("snap_rejected", st.snapshots_rejected)
        )
        # The outbound lanes (one frame per destination store per round).
        ls = store.lanes.stats
        m.lane_drops.inc(d.delta("lane_drops", ls.messages_dropped))
        frames = d.delta("lane_frames", ls.frames)
        msgs = d.delta("lane_msgs", ls.messages_framed)
        if frames:
            # One observation per flush at the interval's mean (the lanes keep totals only).
            m.messages_per_frame.observe(msgs / frames)
        for sid, v in list(self.frames_by_store.items()):
            inc = d.delta(("frames_to", sid), v)
            if inc:
                m.frames_sent.labels(store=str(sid)).inc(inc)
        # Batching: rounds, bytes, fsyncs.
        bs = store.batcher.stats
        rounds = d.delta("rounds", bs.rounds_persisted)
        m.batch_rounds.inc(rounds)
        m.bytes_written.inc(d.delta("bytes", bs.bytes))
        self.fsyncs.inc(d.delta("fsyncs", bs.fsyncs))
        # One observation per acknowledged round (samples beyond the batcher's cap between
        # two flushes are dropped, never averaged).
        for commit_seconds, readies in bs.take_samples():
            m.fsync_duration.observe(commit_seconds)
            m.regions_per_round.observe(readies)
        self._flush_transport()
        if self.client_stats is not None:
            for name, v in self.client_stats().items():
                inc = d.delta(("client", name), v)
                if inc:
                    self.client_requests.labels(event=name).inc(inc)

    def _flush_store_up(self) -> None:
        seen: set[str] = set()
        for lv in self.store.store_liveness():
            label = str(lv.store_id)
            seen.add(label)
            self.m.store_up.labels(store=label).set(0 if lv.suspected else 1)
        for label in self._store_up - seen:  # no longer watched
            self.m.store_up.remove(label)
        self._store_up = seen

    def _flush_transport(self) -> None:
        t = self.transport
        if t is None:
            return
        m, d = self.m, self._d
        ts = t.stats
        self.transport_bytes.labels(direction="sent").inc(d.delta("t_bytes_sent", ts.bytes_sent))
        self.transport_bytes.labels(direction="received").inc(
            d.delta("t_bytes_recv", ts.bytes_received)
        )
        self.transport_frames_received.inc(d.delta("t_frames_recv", ts.frames_received))
        self.transport_connects.inc(d.delta("t_connects", ts.connects))
        self.handshake_rejects.inc(d.delta("t_hs_rejects", ts.handshake_rejects))
        self.transport_dropped.labels(reason="queue_full").inc(
            d.delta("t_dropped", ts.dropped_frames)
        )
        self.transport_dropped.labels(reason="unreachable").inc(
            d.delta("t_dropped_unreach", ts.dropped_unreachable)
        )
        for reason, v in list(ts.bad_frames_by_reason.items()):
            inc = d.delta(("t_bad", reason), v)
            if inc:
                m.bad_frames.labels(reason=reason).inc(inc)
        for direction, outcome, name in (
            ("sent", "ok", "snapshots_sent"),
            ("sent", "failed", "snapshots_failed"),
            ("received", "ok", "snapshots_received"),
            ("received", "refused", "snapshots_refused"),
            ("received", "failed", "snapshots_receive_failed"),
        ):
            m.snapshots.labels(direction=direction, outcome=outcome).inc(
                d.delta(("t_snap", name), getattr(ts, name))
            )
