"""Every admin operation on real processes, through `multiraft ctl`: status, regions, transfer
the leader (asked of a follower: forwarded), move a replica to a fourth store that joined (add
a voter there, remove one elsewhere), and the errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multiraft.server.localcluster import LocalCluster

from .conftest import make_cluster

ROOT = Path(__file__).resolve().parents[2]


def ctl(admin: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "multiraft", "ctl", "--admin", admin, "--timeout", "60", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )


def ctl_json(admin: str, *args: str) -> Any:
    p = ctl(admin, "--json", *args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory.mktemp("admin"), initial_regions=2, fsync=False)
    try:
        c.start_all()
        c.wait_ready(90)
        yield c
    finally:
        c.close()


def test_status_and_regions(cluster: LocalCluster) -> None:
    s1 = cluster.stores[1]
    status = ctl_json(s1.admin_addr, "status")
    assert status["store_id"] == 1 and status["regions"] == 2
    assert status["addresses"]["client"] == s1.client_addr
    regions = ctl_json(s1.admin_addr, "regions")["regions"]
    assert [r["id"] for r in regions] == [1, 2]
    human = ctl(s1.admin_addr, "regions")
    assert human.returncode == 0 and "REGION" in human.stdout and "LEADER" in human.stdout
    human = ctl(s1.admin_addr, "status")
    assert human.returncode == 0 and "store 1 of cluster 1" in human.stdout


def test_errors_are_one_line(cluster: LocalCluster) -> None:
    s1 = cluster.stores[1]
    for args in (("region", "99"), ("transfer-leader", "1", "9"), ("remove-peer", "1", "9")):
        p = ctl(s1.admin_addr, *args)
        assert p.returncode == 1
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("multiraft ctl: error:"), p.stderr
    p = ctl("127.0.0.1:1", "status")
    assert p.returncode == 1 and "cannot reach" in p.stderr


def test_transfer_leader_through_a_follower(cluster: LocalCluster) -> None:
    leaders = cluster.wait_ready(60)
    leader = leaders[1]
    follower = next(s for s in (1, 2, 3) if s != leader)
    target = next(s for s in (1, 2, 3) if s not in (leader, follower))
    out = ctl_json(cluster.stores[follower].admin_addr, "transfer-leader", "1", str(target))
    assert out["region"]["leader"]["store_id"] == target
    assert cluster.admin(target, "/regions/1")["leader"]["store_id"] == target


def test_move_a_replica_to_a_fourth_store(cluster: LocalCluster) -> None:
    leaders = cluster.wait_ready(60)
    s4 = cluster.add_store()
    cluster.wait_ready(60)  # the new store answers (it has no region yet)
    assert cluster.admin(4, "/regions")["regions"] == []
    leader = leaders[2]
    gone = next(s for s in (1, 2, 3) if s != leader)
    admin = cluster.stores[gone].admin_addr  # asked of a follower: forwarded
    out = ctl_json(admin, "add-peer", "2", "4")
    assert {"store_id": 4, "role": "voter"} in [
        {"store_id": p["store_id"], "role": p["role"]} for p in out["region"]["peers"]
    ]
    out = ctl_json(cluster.stores[leader].admin_addr, "remove-peer", "2", str(gone))
    assert sorted(p["store_id"] for p in out["region"]["peers"]) == sorted({1, 2, 3, 4} - {gone})

    def on_store_4() -> bool:
        regions = cluster.admin(4, "/regions")["regions"]
        return [r["id"] for r in regions] == [2] and regions[0]["leader"] is not None

    import time

    deadline = time.monotonic() + 60
    while not on_store_4():
        assert time.monotonic() < deadline, cluster.log_tail(4)
        time.sleep(0.1)
    assert s4.running
    # The old replica is gone from its store.
    deadline = time.monotonic() + 60
    while 2 in [r["id"] for r in cluster.admin(gone, "/regions")["regions"]]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # Learner then promotion, on region 1.
    out = ctl_json(cluster.stores[1].admin_addr, "add-peer", "1", "4", "--learner")
    assert {"store_id": 4, "role": "learner"} in [
        {"store_id": p["store_id"], "role": p["role"]} for p in out["region"]["peers"]
    ]
    out = ctl_json(cluster.stores[1].admin_addr, "add-peer", "1", "4")
    assert {"store_id": 4, "role": "voter"} in [
        {"store_id": p["store_id"], "role": p["role"]} for p in out["region"]["peers"]
    ]
