"""Crashes and stops of real store processes: SIGKILL of a leader's store loses no acknowledged
write and the region keeps serving after re-election; SIGTERM stops cleanly with status 0 and a
restart recovers every region from the data dir."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .conftest import client_module, make_cluster


def _writer(mc: Any, addrs: list[str], acked: dict[bytes, bytes], stop: threading.Event,
            errors: list[str]) -> None:
    with mc.Client(addrs) as c:
        i = 0
        while not stop.is_set() and i < 5000:
            k, v = b"w%05d" % i, b"value-%d" % i
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
            assert r["peers"] == before[rid]["peers"]
        codes = cluster.close()
        assert codes == {1: 0, 2: 0, 3: 0}
    finally:
        cluster.close()
