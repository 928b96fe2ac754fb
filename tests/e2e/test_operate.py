"""Operating a cluster of real processes: a store that joins through one store that leads
nothing receives a replica and the region then survives a SIGKILL of its leader's store, which
is then replaced and forgotten; a new voter goes through a learner, and one whose store is
down stays a learner; a dead store shows as down in `ctl status` and `GET /stores`."""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multiraft.server.localcluster import LocalCluster

from .conftest import client_module, make_cluster
from .test_admin_ops import ctl, ctl_json


def until(cond: Callable[[], bool], timeout: float = 60.0, why: str = "") -> None:
    """Poll until true (the timeout only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not reached: {why}"
        time.sleep(0.1)


def _roles(region: dict[str, Any]) -> dict[int, str]:
    return {p["store_id"]: p["role"] for p in region["peers"]}


def _stores(cluster: LocalCluster, sid: int) -> dict[int, dict[str, Any]]:
    return {s["store_id"]: s for s in cluster.admin(sid, "/stores")["stores"]}


def test_join_through_a_follower_then_add_a_voter_then_lose_the_leader(tmp_path: Path) -> None:
    mc = client_module()
    cluster = make_cluster(tmp_path, initial_regions=2, fsync=False)
    try:
        cluster.start_all()
        leaders = cluster.wait_ready(90)
        keys = {b"\x00k%03d" % i: b"v%d" % i for i in range(100)}  # all in region 1
        with mc.Client(cluster.client_addrs()) as c:
            for k, v in keys.items():
                c.put(k, v)
        leader = leaders[1]
        via = next(s for s in (1, 2, 3) if s != leader)
        # Store 4 is told of one store, which does not lead region 1.
        s4 = cluster.add_store(join_via=[via])
        until(lambda: all(4 in _stores(cluster, s) for s in (1, 2, 3)), why="store 4 known")
        assert set(_stores(cluster, 4)) == {1, 2, 3, 4}
        saved = json.loads((s4.data_dir / "stores.json").read_text())
        assert {"1", "2", "3"} <= set(saved)

        out = ctl_json(cluster.stores[via].admin_addr, "add-peer", "1", "4")
        roles = _roles(out["region"])
        assert roles == {1: "voter", 2: "voter", 3: "voter", 4: "voter"}

        # Four voters: three must agree. Without store 4 holding its replica, losing the
        # leader's store would leave two.
        cluster.kill(leader)
        cluster.wait_ready(90)
        new_leader = ctl_json(cluster.stores[4].admin_addr, "transfer-leader", "1", "4")
        assert new_leader["region"]["leader"]["store_id"] == 4
        # Store 4 leads: the reads are served from its copy.
        with mc.Client([s4.client_addr]) as c:
            for k, v in keys.items():
                assert c.get(k) == v
            c.put(b"\x00after", b"kill")
            assert c.get(b"\x00after") == b"kill"
        # The killed store is down as every store sees it.
        until(lambda: _stores(cluster, via)[leader]["state"] == "down", why="leader down")
        view = _stores(cluster, via)[leader]
        assert view["unreachable_from"] == sorted({1, 2, 3, 4} - {leader})

        # Replacing it for good: its replicas move to store 4, then every store forgets it.
        admin = cluster.stores[via].admin_addr
        p = ctl(admin, "remove-store", str(leader))
        assert p.returncode == 1 and "STORE_HAS_REPLICAS" in p.stderr, p.stderr
        ctl_json(admin, "add-peer", "2", "4")
        for rid in ("1", "2"):
            out = ctl_json(admin, "remove-peer", rid, str(leader))
            assert sorted(_roles(out["region"])) == sorted({1, 2, 3, 4} - {leader})
        out = ctl_json(admin, "remove-store", str(leader))
        assert leader not in [s["store_id"] for s in out["stores"]]
        live = sorted({1, 2, 3, 4} - {leader})
        until(lambda: all(leader not in _stores(cluster, s) for s in live), why="forgotten")
        for s in live:
            assert all(v["state"] == "up" for v in _stores(cluster, s).values())
    finally:
        cluster.close()


def test_a_voter_on_a_dead_store_stays_a_learner_and_the_store_shows_down(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, initial_regions=2, fsync=False)
    try:
        cluster.start_all()
        cluster.wait_ready(90)
        cluster.add_store(join_via=[1])
        until(lambda: all(_stores(cluster, s).get(4, {}).get("state") == "up" for s in (1, 2, 3)),
              why="store 4 up everywhere")
        cluster.kill(4)

        # Down, as any store tells: ctl status (human and JSON), GET /stores.
        until(lambda: _stores(cluster, 2)[4]["state"] == "down", why="store 4 down")
        assert _stores(cluster, 2)[4]["unreachable_from"] == [1, 2, 3]
        status = ctl_json(cluster.stores[1].admin_addr, "status")
        four = status["stores"]["4"]
        assert four["state"] == "down" and four["down_since"] <= time.time()
        assert status["stores"]["2"]["state"] == "up"
        human = ctl(cluster.stores[3].admin_addr, "status")
        assert human.returncode == 0, human.stderr
        row = next(line for line in human.stdout.splitlines() if line.startswith("4 "))
        assert row.split()[1] == "down" and "1,2,3" in row, human.stdout
        metrics = cluster.admin(1, "/metrics")
        assert 'multiraft_store_up{store="4"} 0.0' in metrics
        assert 'multiraft_store_up{store="2"} 1.0' in metrics

        # A voter there: a learner that cannot catch up, so it stays a learner.
        p = ctl(cluster.stores[2].admin_addr, "--timeout", "3", "add-peer", "2", "4")
        assert p.returncode == 1 and "stays a learner" in p.stderr, p.stderr
        region = cluster.admin(1, "/regions/2")
        assert _roles(region) == {1: "voter", 2: "voter", 3: "voter", 4: "learner"}
        try:
            cluster.admin(1, "/regions/2/peers", "POST", {"store_id": 4, "timeout": 1})
            raise AssertionError("a voter that cannot catch up was added")
        except urllib.error.HTTPError as e:
            assert e.code == 504
            assert json.loads(e.read())["error"]["code"] == "CATCH_UP_TIMEOUT"
        assert _roles(cluster.admin(3, "/regions/2"))[4] == "learner"

        # Back: up again, and the learner is promoted on request.
        cluster.start(4, join=True)
        until(lambda: _stores(cluster, 1)[4]["state"] == "up", why="store 4 up again")
        out = ctl_json(cluster.stores[1].admin_addr, "add-peer", "2", "4")
        assert _roles(out["region"])[4] == "voter"
        regions = cluster.admin(4, "/regions")["regions"]
        assert [r["id"] for r in regions] == [2]
    finally:
        cluster.close()
