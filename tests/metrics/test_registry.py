"""Metric names follow Prometheus conventions, and the exposition parses."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from metrics import StoreMetrics, exposition


def test_names_and_units() -> None:
    m = StoreMetrics()
    families = list(m.registry.collect())
    assert len(families) >= 20
    for fam in families:
        assert fam.name.startswith(("multiraft_", "process_")), fam.name
        if fam.type == "counter":
            # prometheus-client strips _total from the family name and adds it to samples.
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples)
        if "duration" in fam.name or "latency" in fam.name or "propose_to_apply" in fam.name:
            assert fam.name.endswith("_seconds"), fam.name


def test_exposition_parses_and_counts() -> None:
    m = StoreMetrics()
    m.proposals.inc(3)
    m.bad_frames.labels(reason="oversized").inc()
    m.fsync_duration.observe(0.002)
    m.regions.set(1000)
    text = exposition(m.registry).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["multiraft_proposals"].samples[0].value == 3
    assert fams["multiraft_regions"].samples[0].value == 1000
    bad = [s for s in fams["multiraft_bad_frames"].samples if s.name.endswith("_total")]
    assert bad[0].labels == {"reason": "oversized"} and bad[0].value == 1


def test_registries_are_independent() -> None:
    a, b = StoreMetrics(), StoreMetrics()
    a.proposals.inc()
    assert b"multiraft_proposals_total 0.0" in exposition(b.registry)


def test_process_metrics_and_no_created_series() -> None:
    m = StoreMetrics()
    m.proposals.inc()
    m.fsync_duration.observe(0.002)
    text = exposition(m.registry).decode()
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert {"process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total",
            "process_start_time_seconds"} <= names
    assert "multiraft_proposals_total" in names and "multiraft_fsync_duration_seconds_count" in names
    assert not [n for n in names if n.endswith("_created")]
    # The registry itself still has them (only the exposition leaves them out).
    raw = {s.name for f in m.registry.collect() for s in f.samples}
    assert "multiraft_proposals_created" in raw
