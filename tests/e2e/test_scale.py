"""Many regions on real store processes, at a CI size (`bench/scale.py` measures the long
variant, 100,000 regions a store): every region gets a leader, leaders spread over the stores
by region id, the logs carry no per-region line at INFO, `/metrics` no per-region label; with
the busiest store killed every region is led again and goes back to sleep, and once it is
restarted its replicas are all served again."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from multiraft.server.localcluster import LocalCluster

from .conftest import make_cluster

N = 300


def _status(c: LocalCluster, sid: int) -> dict[str, Any]:
    s: dict[str, Any] = c.admin(sid, "/status", timeout=10)
    return s


def _until(c: LocalCluster, pred: Any, what: str, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"{what}:\n" + "\n".join(c.log_tail(s) for s in c.stores)
        time.sleep(0.2)


def _all_led(c: LocalCluster, stores: list[int]) -> bool:
    try:
        ss = [_status(c, s) for s in stores]
    except OSError:
        return False
    return all(s["regions"] == N and s["without_leader"] == 0 for s in ss) and sum(
        s["leaders"] for s in ss
    ) == N


def _hibernated(c: LocalCluster, stores: list[int]) -> bool:
    return all(_status(c, s)["hibernated"] == N for s in stores)


_PER_REGION = re.compile(r"\b(region|regions?) \d+\b")


def test_many_regions_elect_spread_sleep_and_recover(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, initial_regions=N, base_tick_ms=100, fsync=True)
    try:
        c.start_all()
        leaders = c.wait_ready(180)
        assert len(leaders) == N
        # Spread by region id: each store leads about a third (the designated campaigns).
        per_store = {sid: sum(1 for s in leaders.values() if s == sid) for sid in c.stores}
        assert all(n >= N // 6 for n in per_store.values()), per_store
        _until(c, lambda: _hibernated(c, list(c.stores)), "not every region hibernated")

        # /metrics: no per-region series.
        text = c.admin(1, "/metrics", timeout=10)
        labels = {m for line in text.splitlines() if not line.startswith("#")
                  for m in re.findall(r"(\w+)=\"", line)}
        assert not {lbl for lbl in labels if "region" in lbl}, labels
        series = [line for line in text.splitlines() if line.startswith("multiraft_")]
        assert len(series) < N, len(series)

        # The busiest store dies: the others lead every region and go back to sleep
        # without it.
        victim = max(per_store, key=lambda s: per_store[s])
        c.kill(victim)
        rest = [s for s in c.stores if s != victim]
        _until(c, lambda: _all_led(c, rest), "no leader for every region after the kill")
        _until(c, lambda: _hibernated(c, rest), "regions stay awake with a store down")

        # Back: its replicas learn their leaders.
        c.start(victim)
        _until(c, lambda: _all_led(c, list(c.stores)), "the restarted store's regions not led")
        _until(c, lambda: _hibernated(c, list(c.stores)), "not every region hibernated again")
    finally:
        c.close()
    # The logs: store-level lines only at INFO, none per region (hundreds of regions
    # elected leaders, took over a dead store's and caught up a restarted one).
    for sid, sp in c.stores.items():
        lines = sp.log_path.read_text().splitlines()
        per_region = [line for line in lines if _PER_REGION.search(line)]
        assert not per_region, (sid, per_region[:5])
        assert len(lines) < 200, (sid, len(lines))
