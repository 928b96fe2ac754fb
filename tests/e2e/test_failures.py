"""Crashes and stops of real store processes: SIGKILL of a leader's store loses no acknowledged
write and the region keeps serving after re-election; SIGTERM stops cleanly with status 0 and a
restart recovers every region from the data dir."""

from __future__ import annotations

import threading
import time
import urllib.error
from pathlib import Path
from typing import Any

from .conftest import client_module, make_cluster


def _writer(mc: Any, addrs: list[str], acked: dict[bytes, bytes], stop: threading.Event,
            errors: list[str], prefix: bytes = b"w") -> None:
    with mc.Client(addrs) as c:
        i = 0
        while not stop.is_set() and i < 5000:
            k, v = prefix + b"%05d" % i, b"value-%d" % i
            try:
                c.put(k, v)
            except Exception as e:  # a timeout while the leader is gone: not acknowledged
                errors.append(repr(e))
            else:
                acked[k] = v
            i += 1


def test_sigkill_leader_loses_no_acknowledged_write(tmp_path: Path) -> None:
    mc = client_module()
    cluster = make_cluster(tmp_path, initial_regions=1, fsync=True)
    try:
        cluster.start_all()
        leaders = cluster.wait_ready(90)
        victim = leaders[1]
        acked: dict[bytes, bytes] = {}
        errors: list[str] = []
        stop = threading.Event()
        t = threading.Thread(
            target=_writer, args=(mc, cluster.client_addrs(), acked, stop, errors), daemon=True
        )
        t.start()
        try:
            while len(acked) < 100 and t.is_alive():
                stop.wait(0.05)
            cluster.kill(victim)  # SIGKILL, writes in flight
            n_at_kill = len(acked)
            # The survivors elect a leader and the writes go on.
            others = [s for s in cluster.stores if s != victim]
            while t.is_alive() and len(acked) < n_at_kill + 100:
                stop.wait(0.05)
            assert len(acked) >= n_at_kill + 100, errors[-5:]
            new = cluster.wait_ready(60)
            assert new[1] in others
            cluster.start(victim)  # rejoins without operator action
            cluster.wait_ready(60)
            while t.is_alive() and len(acked) < n_at_kill + 150:
                stop.wait(0.05)
        finally:
            stop.set()
            t.join(60)
        with mc.Client(cluster.client_addrs()) as c:
            for k, v in acked.items():
                assert c.get(k) == v, k
            c.put(b"after", b"restart")
            assert c.get(b"after") == b"restart"
        # The restarted store caught up: it holds the region with everyone else.
        regions = cluster.admin(victim, "/regions")["regions"]
        assert [r["id"] for r in regions] == [1]
    finally:
        cluster.close()


def test_sigterm_stops_cleanly_and_restart_recovers(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, initial_regions=3, fsync=False)
    try:
        cluster.start_all()
        cluster.wait_ready(90)
        before = {r["id"]: r for r in cluster.admin(2, "/regions")["regions"]}
        assert cluster.stop(2) == 0
        log = cluster.stores[2].log_path.read_text()
        assert "Traceback" not in log
        assert "stopped" in log
        cluster.start(2)
        cluster.wait_ready(60)
        after = {r["id"]: r for r in cluster.admin(2, "/regions")["regions"]}
        assert set(after) == set(before)
        for rid, r in after.items():
            assert r["applied_index"] >= before[rid]["applied_index"]
            # (`matched` is the leader's view of each log, which moves on.)
            assert [(p["id"], p["store_id"], p["role"]) for p in r["peers"]] == [
                (p["id"], p["store_id"], p["role"]) for p in before[rid]["peers"]
            ]
        codes = cluster.close()
        assert codes == {1: 0, 2: 0, 3: 0}
    finally:
        cluster.close()


def _remove_a_follower(cluster: Any, region_id: int) -> tuple[int, int]:
    """Remove a follower's replica of the region through its current leader: `(leader,
    removed store)`. The leader is looked up again right before each attempt, and an attempt
    refused while the leadership moves (the writes keep the stores busy) is tried again; the
    answers' bodies go into the failure message."""
    refused: list[str] = []
    deadline = time.monotonic() + 60
    while True:
        leader = cluster.wait_ready(30)[region_id]
        other = next(s for s in cluster.stores if s != leader)
        try:
            cluster.admin(leader, f"/regions/{region_id}/peers/{other}", "DELETE", timeout=30)
            return leader, other
        except urllib.error.HTTPError as e:
            refused.append(f"{e.code} from store {leader}: {e.read()[:300]!r}")
        assert time.monotonic() < deadline, refused
        time.sleep(0.2)


def test_a_replica_added_under_write_load_catches_up_by_snapshot(tmp_path: Path) -> None:
    """A new replica needs a snapshot built while applied rounds are always in flight (the
    leader keeps writing): it must still get one, catch up, and serve."""
    mc = client_module()
    cluster = make_cluster(tmp_path, initial_regions=1, fsync=True)
    try:
        cluster.start_all()
        cluster.wait_ready(90)
        acked: dict[bytes, bytes] = {}
        errors: list[str] = []
        stop = threading.Event()
        # Several writers keep a round with applied writes in flight nearly all the time.
        writers = [
            threading.Thread(
                target=_writer,
                args=(mc, cluster.client_addrs(), acked, stop, errors, b"w%d-" % i),
                daemon=True,
            )
            for i in range(6)
        ]
        for w in writers:
            w.start()
        t = writers[0]
        try:
            while len(acked) < 100 and t.is_alive():
                stop.wait(0.05)
            leader, other = _remove_a_follower(cluster, 1)
            deadline = time.monotonic() + 60
            while 1 in [r["id"] for r in cluster.admin(other, "/regions")["regions"]]:
                assert time.monotonic() < deadline, "the removed replica stayed"
                time.sleep(0.1)
            n_before = len(acked)
            out = cluster.admin(
                leader, "/regions/1/peers", "POST", {"store_id": other, "role": "voter"},
                timeout=30,
            )
            assert other in [p["store_id"] for p in out["region"]["peers"]]
            # The new replica catches up while the writes go on.
            deadline = time.monotonic() + 60
            while True:
                regions = cluster.admin(other, "/regions")["regions"]
                lead = cluster.admin(leader, "/regions/1")
                if regions and regions[0]["applied_index"] > 0 and (
                    lead["applied_index"] - regions[0]["applied_index"] < 50
                ):
                    break
                assert time.monotonic() < deadline, cluster.log_tail(other)
                time.sleep(0.1)
            assert len(acked) > n_before, "the writes stopped while the replica caught up"
        finally:
            stop.set()
            for w in writers:
                w.join(60)
        # The new replica holds every acknowledged write: make it the leader and read.
        cluster.admin(leader, "/regions/1/transfer-leader", "POST", {"store_id": other})
        deadline = time.monotonic() + 30
        while cluster.wait_ready(30)[1] != other:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with mc.Client(cluster.client_addrs()) as c:
            for k, v in acked.items():
                assert c.get(k) == v, k
    finally:
        cluster.close()
