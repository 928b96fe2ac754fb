"""A real cluster on loopback: N store processes (fsync on), client load from this process.

    python -m bench.cluster --stores 3 --regions 16 --clients 64 --value-size 128 --duration 30

`--clients` concurrent asyncio workers share one `AsyncClient` (pipelined, one connection per
store) and loop: a write (put) with probability `--write-ratio`, else a linearizable read (get)
of a key written earlier, keys spread over every region. Prints JSON (and saves
bench/results/cluster.json): writes/s, reads/s, p50/p99/p999 latency per kind and overall,
errors, and the stores' batching figures from /metrics. The first `--warmup` seconds are not
counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from multiraft.server.localcluster import LocalCluster
from multiraft.server.main import install_uvloop

from .common import base_port, emit


def _pct(sorted_lat: list[float], q: float) -> float:
    if not sorted_lat:
        return 0.0
    i = min(len(sorted_lat) - 1, int(q * len(sorted_lat)))
    return round(sorted_lat[i] * 1000, 3)


def _summary(lat: list[float], seconds: float) -> dict[str, Any]:
    s = sorted(lat)
    return {
        "ops": len(s),
        "per_second": round(len(s) / seconds, 1) if seconds else 0.0,
        "p50_ms": _pct(s, 0.50),
        "p99_ms": _pct(s, 0.99),
        "p999_ms": _pct(s, 0.999),
        "max_ms": round(s[-1] * 1000, 3) if s else 0.0,
    }


Put = Callable[[bytes, bytes], Awaitable[Any]]
Get = Callable[[bytes], Awaitable[Any]]


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of process `pid` (this process if None), from /proc."""
    if pid is None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command's closing parenthesis: state is field 0, utime 11, stime 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    put: Put,
    get: Get,
    *,
    clients: int,
    duration: float,
    warmup: float = 2.0,
    write_ratio: float = 0.5,
    value_size: int = 128,
    seed: int = 1,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The load generator: `clients` workers loop over a put of a fresh key (probability
    `write_ratio`) or a get of a key written earlier, for `warmup + duration` seconds; the
    first `warmup` seconds are not counted. With `pids`, the CPU seconds each of those
    processes (and this one, "loadgen") used in the counted window are reported too."""
    rng = random.Random(seed)
    value = bytes(rng.getrandbits(8) for _ in range(value_size))
    written: list[bytes] = []
    writes: list[float] = []
    reads: list[float] = []
    errors: dict[str, int] = {}
    start = time.perf_counter()
    counting_from = start + warmup
    end = counting_from + duration

    def key(n: int) -> bytes:
        # The first two bytes spread the keys over the whole key space (every region).
        return struct.pack(">HI", (n * 40503) & 0xFFFF, n)

    counter = 0

    async def worker(wid: int) -> None:
        nonlocal counter
        r = random.Random(seed * 1000 + wid)
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            is_write = not written or r.random() < write_ratio
            try:
                if is_write:
                    counter += 1
                    k = key(counter)
                    await put(k, value)
                    written.append(k)
                else:
                    await get(written[r.randrange(len(written))])
            except Exception as e:  # counted, never fatal: the benchmark reports them
                name = type(e).__name__
                errors[name] = errors.get(name, 0) + 1
                continue
            t1 = time.perf_counter()
            if t0 >= counting_from:
                (writes if is_write else reads).append(t1 - t0)

    def sample() -> dict[str, float]:
        out = {"loadgen": cpu_seconds()}
        for name, pid in (pids or {}).items():
            try:
                out[name] = cpu_seconds(pid)
            except OSError:
                out[name] = float("nan")
        return out

    cpu: dict[str, float] = {}

    async def meter() -> None:
        await asyncio.sleep(max(0.0, counting_from - time.perf_counter()))
        first = sample()
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        last = sample()
        cpu.update({k: round(last[k] - first[k], 3) for k in first})

    await asyncio.gather(meter(), *(worker(i) for i in range(clients)))
    seconds = duration
    ops = len(writes) + len(reads)
    server_cpu = sum(v for k, v in cpu.items() if k != "loadgen")
    return {
        "writes": _summary(writes, seconds),
        "reads": _summary(reads, seconds),
        "all": _summary(writes + reads, seconds),
        "errors": errors,
        "cpu_seconds": cpu,
        "server_cpu_us_per_op": round(server_cpu / ops * 1e6, 1) if ops and pids else None,
        "loadgen_cpu_us_per_op": round(cpu.get("loadgen", 0.0) / ops * 1e6, 1) if ops else None,
    }


async def _load(
    args: argparse.Namespace, addrs: list[str], pids: dict[str, int] | None = None
) -> dict[str, Any]:
    from multiraft.client import AsyncClient

    client = AsyncClient(addrs)
    try:
        return await drive(
            client.put,
            client.get,
            clients=args.clients,
            duration=args.duration,
            warmup=args.warmup,
            write_ratio=args.write_ratio,
            value_size=args.value_size,
            seed=args.seed,
            pids=pids,
        )
    finally:
        await client.close()


def store_pids(cluster: LocalCluster) -> dict[str, int]:
    return {
        f"store{sid}": sp.proc.pid for sid, sp in cluster.stores.items() if sp.proc is not None
    }


def store_metrics(cluster: LocalCluster) -> dict[str, Any]:
    """Counters summed over the stores."""
    names = (
        "multiraft_batch_rounds_total",
        "multiraft_fsyncs_total",
        "multiraft_proposals_total",
        "multiraft_frames_sent_total",
        "multiraft_raft_messages_sent_total",
        "multiraft_applied_entries_total",
        "multiraft_read_index_total",
        "multiraft_fsync_duration_seconds_count",
        "multiraft_batch_regions_per_round_sum",
    )
    out: dict[str, float] = {}
    for sid in cluster.stores:
        text = cluster.admin(sid, "/metrics")
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name in names:
                    out[s.name] = out.get(s.name, 0.0) + s.value
    return {k.removeprefix("multiraft_"): int(v) for k, v in sorted(out.items())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stores", type=int, default=3)
    p.add_argument("--regions", type=int, default=16)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--value-size", type=int, default=128)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--write-ratio", type=float, default=0.5)
    p.add_argument("--no-fsync", action="store_true", help="stores without fsync (not the default)")
    p.add_argument("--base-tick-ms", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--server-arg", action="append", default=[], metavar="FLAG",
        help="an extra `multiraft server` flag (repeatable), e.g. --server-arg=--lease-reads",
    )
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    install_uvloop()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        cluster = LocalCluster(
            args.stores,
            Path(tmp),
            initial_regions=args.regions,
            base_port=base_port(args.stores),
            base_tick_ms=args.base_tick_ms,
            fsync=not args.no_fsync,
            log_level="warning",
            extra_args=args.server_arg,
        )
        try:
            cluster.start_all()
            cluster.wait_ready(120)
            before = store_metrics(cluster)
            result = asyncio.run(_load(args, cluster.client_addrs(), store_pids(cluster)))
            after = store_metrics(cluster)
        finally:
            codes = cluster.close()
    stores = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    doc = {
        "params": {
            "stores": args.stores,
            "regions": args.regions,
            "clients": args.clients,
            "value_size": args.value_size,
            "duration_s": args.duration,
            "write_ratio": args.write_ratio,
            "fsync": not args.no_fsync,
            "base_tick_ms": args.base_tick_ms,
            "server_args": args.server_arg,
        },
        "writes_per_s": result["writes"]["per_second"],
        "reads_per_s": result["reads"]["per_second"],
        "latency_ms": {
            "p50": result["all"]["p50_ms"],
            "p99": result["all"]["p99_ms"],
            "p999": result["all"]["p999_ms"],
        },
        **result,
        "stores_during_run": stores,
        "exit_codes": codes,
    }
    emit("cluster", doc, save=not args.no_save)


if __name__ == "__main__":
    main()
