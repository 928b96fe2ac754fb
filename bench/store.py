"""The store in the simulator: memory per region replica, idle cost with hibernated regions,
and write throughput across active regions.

    python -m bench.store [--regions 10000] [--memory-regions 10000,100000] [--active 100]
                          [--writes 5000] [--only memory|idle|writes]

- memory: tracemalloc over a 3-store SimCluster holding `--regions` regions (each store holds
  one replica of every region), divided by the number of replicas;
- idle: real CPU seconds per virtual second once every region hibernated, compared in the
  same run with a cluster of `--regions / 10` regions (idle cost must not grow with regions);
- writes: writes per real second from many concurrent clients spread over `--active` regions.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from typing import Any

from multiraft.testing.cluster import SimCluster

from .common import emit


def _memory(regions: int) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    c = SimCluster(stores=3, seed=1, initial_regions=regions, elect=False)
    setup = time.perf_counter() - t0
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    replicas = 3 * regions
    del c
    return {
        "regions": regions,
        "replicas": replicas,
        "bytes_per_replica": round(used / replicas),
        "setup_seconds": round(setup, 2),
    }


def _idle(regions: int, seconds: float) -> dict[str, Any]:
    c = SimCluster(stores=3, seed=2, initial_regions=regions)
    c.run_until(lambda: all(s["awake_regions"] == 0 for s in c.stats().values()), timeout=30)
    t0 = time.process_time()
    c.run_for(seconds)
    cpu = time.process_time() - t0
    return {
        "regions": regions,
        "virtual_seconds": seconds,
        "cpu_seconds_per_virtual_second": round(cpu / seconds, 4),
        "awake_after": sum(s["awake_regions"] for s in c.stats().values()),
    }


def _writes(active: int, writes: int, clients: int) -> dict[str, Any]:
    c = SimCluster(stores=3, seed=3, initial_regions=active)
    rng = random.Random(3)
    t0 = time.perf_counter()
    v0 = c.now
    inflight: list[Any] = []
    done = 0
    while done < writes:
        inflight = [op for op in inflight if not op.done]
        while len(inflight) < clients and done + len(inflight) < writes:
            key = bytes([rng.randrange(256), rng.randrange(256)])
            inflight.append(c.submit_put(key, b"x" * 128))
        before = len(inflight)
        c.run_for(0.002)
        done += before - sum(1 for op in inflight if not op.done)
    elapsed = time.perf_counter() - t0
    errors = sum(1 for op in c.ops if op.error is not None)
    return {
        "active_regions": active,
        "clients": clients,
        "writes": writes,
        "errors": errors,
        "real_seconds": round(elapsed, 2),
        "writes_per_real_second": round(writes / elapsed),
        "virtual_seconds": round(c.now - v0, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--regions", type=int, default=10000, help="regions of the idle run")
    p.add_argument(
        "--memory-regions", default="10000,100000", help="comma-separated region counts of the memory runs"
    )
    p.add_argument("--only", choices=["memory", "idle", "writes"], help="run one part only")
    p.add_argument("--active", type=int, default=100)
    p.add_argument("--writes", type=int, default=5000)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--idle-seconds", type=float, default=5.0)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    out: dict[str, Any] = {}
    if args.only in (None, "memory"):
        out["memory"] = [_memory(int(n)) for n in args.memory_regions.split(",")]
    if args.only in (None, "idle"):
        out["idle"] = [_idle(args.regions // 10, args.idle_seconds), _idle(args.regions, args.idle_seconds)]
    if args.only in (None, "writes"):
        out["writes"] = _writes(args.active, args.writes, args.clients)
    emit("store", out, save=not args.no_save)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
