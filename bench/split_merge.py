"""Split and merge on a real cluster under load: how long they take, what they cost the clients,
and how far automatic split goes.

    python -m bench.split_merge --stores 3 --clients 32 --duration 20

Two parts, each with its own three-store cluster on loopback (fsync on):

1. `admin`: a client load (bench.cluster's workers: puts of fresh keys and linearizable
   gets, keys over the whole key space) runs twice for `--duration` seconds, first alone
   (baseline), then while this process splits a region through the admin API and merges the
   two halves back, again and again. Reports each split's and merge's latency (from the
   request to the answer: applied on the leader; asked again on 503/409, as a script would,
   e.g. while a region just split has no leader yet) and the clients' throughput and latency in
   both phases, with the ratio.
2. `auto`: one region, `--region-split-size` bytes as the threshold, the same write-only
   load for `--duration` seconds: the number of regions every second (automatic split by
   size), then what the stores counted.

Prints JSON and saves bench/results/split_merge.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from multiraft.server.localcluster import LocalCluster
from multiraft.server.main import install_uvloop

from .cluster import _load, _pct
from .common import base_port, emit


def _post(addr: str, path: str, body: Any) -> Any:
    req = urllib.request.Request(
        f"http://{addr}{path}", data=json.dumps(body).encode(), method="POST"
    )
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _retrying(cluster: LocalCluster, rid: int, path: str, body: Any, deadline: float = 30.0) -> Any:
    """POST to the region leader's admin API, again on 503 (no leader yet, forwarding), 409
    (busy: e.g. a new region whose replicas' progress is not known yet) and 404 (the store
    asked has not applied the split yet), as an operator's script would."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            return _post(_leader_admin(cluster, rid), path, body)
        except urllib.error.HTTPError as e:
            if e.code not in (404, 409, 503) or time.monotonic() > give_up:
                raise
        time.sleep(0.05)


def _regions(cluster: LocalCluster) -> list[dict[str, Any]]:
    regions: list[dict[str, Any]] = cluster.admin(1, "/regions")["regions"]
    return regions


def _leader_admin(cluster: LocalCluster, rid: int) -> str:
    """The admin address of the region's leader, as the first store that knows it says."""
    for sid in cluster.stores:
        try:
            r = cluster.admin(sid, f"/regions/{rid}")
        except urllib.error.HTTPError:
            continue  # not applied the split there yet
        if r["leader"]:
            return cluster.stores[r["leader"]["store_id"]].admin_addr
    return cluster.stores[1].admin_addr


def _load_args(args: argparse.Namespace, write_ratio: float) -> argparse.Namespace:
    return argparse.Namespace(
        seed=args.seed,
        value_size=args.value_size,
        clients=args.clients,
        write_ratio=write_ratio,
        warmup=1.0,
        duration=args.duration,
    )


def _cluster(tmp: str, name: str, args: argparse.Namespace, regions: int, extra: list[str]) -> LocalCluster:
    c = LocalCluster(
        args.stores,
        Path(tmp) / name,
        initial_regions=regions,
        base_port=base_port(args.stores),
        base_tick_ms=args.base_tick_ms,
        log_level="warning",
        extra_args=extra,
    )
    c.start_all()
    c.wait_ready(120)
    return c


def _admin_part(tmp: str, args: argparse.Namespace) -> dict[str, Any]:
    c = _cluster(tmp, "admin", args, 4, ["--no-auto-merge"])
    try:
        baseline = asyncio.run(_load(_load_args(args, 0.5), c.client_addrs()))
        splits: list[float] = []
        merges: list[float] = []
        errors: list[str] = []
        stop = threading.Event()

        def churn() -> None:
            time.sleep(1.0)  # the load's warmup
            while not stop.is_set():
                try:
                    # Region holding 0x6000.. (the second of four): split it, merge it back.
                    region = next(
                        r for r in _regions(c)
                        if r["start_key"] <= "6000" and (not r["end_key"] or r["end_key"] > "6000")
                    )
                    rid = region["id"]
                    t0 = time.perf_counter()
                    left, right = _retrying(c, rid, f"/regions/{rid}/split", {"keys": ["6000"]})["regions"]
                    splits.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    _retrying(c, left["id"], f"/regions/{left['id']}/merge", {"target": right["id"]})
                    merges.append(time.perf_counter() - t0)
                    # Store 1 sees the range whole again before the next round.
                    while not any(r["start_key"] == "4000" and r["end_key"] == "8000" for r in _regions(c)):
                        time.sleep(0.05)
                    stop.wait(args.interval)
                except (urllib.error.URLError, OSError, KeyError, StopIteration, ValueError) as e:
                    errors.append(repr(e)[:200])
                    time.sleep(0.5)

        t = threading.Thread(target=churn, daemon=True)
        t.start()
        during = asyncio.run(_load(_load_args(args, 0.5), c.client_addrs()))
        stop.set()
        t.join(60)
    finally:
        c.close()

    def lat(xs: list[float]) -> dict[str, Any]:
        s = sorted(xs)
        return {"n": len(s), "p50_ms": _pct(s, 0.5), "p99_ms": _pct(s, 0.99), "max_ms": _pct(s, 1.0)}

    base_ops = baseline["all"]["per_second"]
    return {
        "split_latency": lat(splits),
        "merge_latency": lat(merges),
        "admin_errors": errors[:10],
        "baseline": {k: baseline[k] for k in ("writes", "reads", "all", "errors")},
        "with_split_merge": {k: during[k] for k in ("writes", "reads", "all", "errors")},
        "throughput_ratio": round(during["all"]["per_second"] / base_ops, 3) if base_ops else None,
    }


def _auto_part(tmp: str, args: argparse.Namespace) -> dict[str, Any]:
    extra = [
        f"--region-split-size={args.region_split_size}",
        "--region-split-keys=0",
        "--no-auto-merge",
    ]
    c = _cluster(tmp, "auto", args, 1, extra)
    timeline: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            try:
                timeline.append(len(_regions(c)))
            except (urllib.error.URLError, OSError, ValueError):
                timeline.append(-1)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        load = asyncio.run(_load(_load_args(args, 1.0), c.client_addrs()))
        stop.set()
        t.join(5)
        time.sleep(2.0)  # the last checks
        regions = _regions(c)
        metrics = "".join(c.admin(s, "/metrics") for s in c.stores)
    finally:
        c.close()
    splits = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("multiraft_region_splits_total{") and 'outcome="ok"' in line
    )
    sizes = sorted(r["approximate_size"] for r in regions)
    return {
        "region_split_size": args.region_split_size,
        "writes": load["writes"],
        "regions_per_second": timeline,
        "regions_at_end": len(regions),
        "splits_ok": int(splits),
        "region_size_bytes": {"min": sizes[0], "median": sizes[len(sizes) // 2], "max": sizes[-1]},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stores", type=int, default=3)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--value-size", type=int, default=128)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--base-tick-ms", type=int, default=100)
    p.add_argument("--region-split-size", type=int, default=256 << 10)
    p.add_argument(
        "--interval", type=float, default=2.0,
        help="seconds between two split-and-merge cycles (0: back to back, a stress test)",
    )
    p.add_argument("--only", choices=["admin", "auto"], default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    install_uvloop()
    doc: dict[str, Any] = {
        "params": {
            "stores": args.stores,
            "clients": args.clients,
            "value_size": args.value_size,
            "duration_s": args.duration,
            "base_tick_ms": args.base_tick_ms,
            "interval_s": args.interval,
            "fsync": True,
        }
    }
    with tempfile.TemporaryDirectory(prefix="bench-split-merge-") as tmp:
        if args.only in (None, "admin"):
            doc["admin"] = _admin_part(tmp, args)
        if args.only in (None, "auto"):
            doc["auto"] = _auto_part(tmp, args)
    emit("split_merge", doc, save=not args.no_save)


if __name__ == "__main__":
    main()
