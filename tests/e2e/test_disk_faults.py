"""Disk faults on real processes: a store whose disk is full (its files capped by RLIMIT_FSIZE
on the live process) stops with a clear message and exit status 1 — the server ignores
SIGXFSZ, so the write fails with EFBIG instead of killing it — acknowledges nothing it did
not write, and recovers once restarted; a slow disk (every commit delayed) slows the store down
and nothing else."""

from __future__ import annotations

import os
import time
from pathlib import Path

from multiraft.client import Client, ClientError
from multiraft.testing.faulty_cluster import FaultyCluster
from multiraft.testing.nemesis_faults import FAIL_STOP_MESSAGE


def test_a_full_disk_stops_the_leaders_store_and_a_restart_recovers(tmp_path: Path) -> None:
    fc = FaultyCluster(tmp_path, 3, initial_regions=1)
    try:
        fc.start_all()
        leader = fc.wait_ready(90)[1]
        acked: dict[bytes, bytes] = {}
        with Client(fc.cluster.client_addrs(), timeout=30) as c:
            c.put(b"first", b"1")
            acked[b"first"] = b"1"
            limit = fc.fill_disk(leader, 64 << 10)
            deadline = time.monotonic() + 120
            i = 0
            while fc.exit_code(leader) is None:
                assert time.monotonic() < deadline, "the store never filled its disk"
                key, value = b"k%04d" % i, os.urandom(8 << 10)
                i += 1
                try:
                    c.put(key, value)
                except ClientError:
                    continue  # unknown outcome
                acked[key] = value
            assert fc.exit_code(leader) == 1
            log = fc.log_text(leader)
            assert FAIL_STOP_MESSAGE in log and "stop and restart the store from disk" in log, log[-3000:]
            assert fc.data_file_size(leader) <= limit
            # The others go on without it.
            c.put(b"after", b"2")
            acked[b"after"] = b"2"
            fc.start(leader)  # a new process: no cap
            fc.wait_ready(90)
            for key, value in acked.items():
                assert c.get(key) == value, key
            # The restarted store recovered what it had written and caught up: it can lead.
            fc.cluster.admin(leader, "/regions/1/transfer-leader", "POST", {"store_id": leader})
            deadline = time.monotonic() + 60
            while fc.cluster.admin(leader, "/regions/1")["leader"] != {
                "peer_id": 1 << 16 | leader, "store_id": leader}:
                assert time.monotonic() < deadline, "the restarted store never led again"
                time.sleep(0.2)
            assert c.get(b"after") == b"2"
            c.put(b"last", b"3")
            assert c.get(b"last") == b"3"
    finally:
        fc.close()


def _samples(metrics: str, name: str) -> float:
    """The value of the sample named exactly `name` (labels included) in Prometheus text."""
    for line in metrics.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == name:
            return float(value)
    raise AssertionError(f"no sample {name} in the metrics")


def _slow_commits(fc: FaultyCluster, sid: int) -> float:
    """Durable commits of store `sid` that took more than 0.25 s."""
    metrics = fc.cluster.admin(sid, "/metrics")
    return _samples(metrics, "multiraft_fsync_duration_seconds_count") - _samples(
        metrics, 'multiraft_fsync_duration_seconds_bucket{le="0.25"}')


def test_a_slow_disk_delays_commits_and_loses_nothing(tmp_path: Path) -> None:
    fc = FaultyCluster(tmp_path, 3, initial_regions=1)
    try:
        fc.start_all()
        leader = fc.wait_ready(90)[1]
        with Client(fc.cluster.client_addrs(), timeout=30) as c:
            assert _slow_commits(fc, leader) == 0
            fc.slow_disk(leader, 300)
            # The leader's commits now take at least 300 ms each (a sleep lasts at least what
            # it is asked): they show in its commit latency histogram.
            deadline = time.monotonic() + 60
            i = 0
            while _slow_commits(fc, leader) < 3:
                assert time.monotonic() < deadline, "no slow commit seen"
                c.put(b"s%d" % i, b"v%d" % i)
                i += 1
            fc.slow_disk(leader, 0)
            assert [c.get(b"s%d" % j) for j in range(i)] == [b"v%d" % j for j in range(i)]
        # The store said at its start that it could be slowed down on purpose (test-only).
        assert "may be delayed on purpose" in fc.log_text(leader)
        assert all(sp.running for sp in fc.stores.values())
    finally:
        fc.close()
