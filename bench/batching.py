"""Batched persistence of Readies: one write batch and one fsync per round for every region.

    python -m bench.batching [--regions N] [--rounds R] [--baseline] [--layout wal|direct|both]
                             [--repeat K] [--inline] [--switch-interval S]
                             [--entries-per-region E] [--gc default|tuned] [--no-save]

Without --regions it runs the table: 1, 10, 100, 1,000 and 10,000 regions.

What is measured: the batching layer and the engine under it, on the code path the store
uses, against a real LMDB directory (a tempdir) with durable commits (fsync on). Each round,
every region hands the batcher a Ready holding one 128-byte entry and a hard state:
`Batcher.add_ready` (RegionStorage.append of the entry + hard state into the round's write
batch, then `advance_append_async`), `Batcher.submit` (the round goes to the writer thread:
one durable LMDB commit; with the raft WAL, one record put, plus a checkpoint every 64 rounds /
16 MiB), `Batcher.poll_completed` (commit hooks, `on_persist_ready` per region). The raft core
itself is not run: a region is a synthetic node whose Ready is refilled each round with a new
`Entry` and `HardState` (created in the timed loop, as raft would create them). The clock runs
from the first round to the acknowledgement of the last one.

Reported per configuration: rounds/s, entries persisted (acknowledged) per second, fsync calls
per round (`engine.stats.synced_commits`: one per durable LMDB commit), commit time per round,
and the baseline: the same entries written one region per commit (a write batch with the
region's entry and hard state, direct layout, durable commit), measured in the same run on
its own directory; `ratio` = batched / baseline entries per second. The environment records
the median latency of a 4 KiB write + fdatasync in the same directory: the disk sets the
ceiling (an LMDB durable commit is one fdatasync plus one O_DSYNC meta page write).

`--gc tuned` runs each configuration the way a long-running server should: `gc.freeze()` once
the regions are set up (the long-lived objects leave the collector's generations) and a
generation-0 threshold of 50,000 allocations instead of 700 (collections stay, 70x rarer).
`--gc default` leaves CPython's collector as it is.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

from batching import Batcher
from multiraft.engine import LmdbEngine, RaftWal, RegionStorage, WriteBatch
from multiraft.raft import Entry, HardState, Ready

from .common import emit

TABLE = [(1, 400), (10, 400), (100, 300), (1_000, 200), (10_000, 30)]
ENTRY_SIZE = 128
WARMUP_ROUNDS = 5
# `--gc tuned`: the generation-0 threshold (CPython's default is 700).
GC_TUNED_THRESHOLD0 = 50_000
# Baseline commits measured per configuration (one region per commit is slow on purpose).
BASELINE_COMMITS = 300


class SyntheticNode:
    """A region seen by the batcher: its storage and a Ready refilled every round."""

    __slots__ = ("storage", "rd", "persisted", "index")

    def __init__(self, storage: RegionStorage) -> None:
        self.storage = storage
        self.rd = Ready(0)
        self.persisted = 0
        self.index = storage.last_index()

    def store(self) -> RegionStorage:
        return self.storage

    def advance_append_async(self, rd: Ready) -> None:
        pass

    def on_persist_ready(self, number: int) -> None:
        self.persisted = number


def fsync_latency_ms(directory: str, n: int = 50) -> float:
    fd = os.open(os.path.join(directory, "fsync-probe"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        times = []
        for i in range(n):
            os.pwrite(fd, b"x" * 4096, (i % 8) * 4096)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(os.path.join(directory, "fsync-probe"))
    return round(statistics.median(times) * 1e3, 3)


def tune_gc(mode: str) -> tuple[int, int, int]:
    """Apply `--gc` (module docstring) once the long-lived objects exist; returns the previous
    thresholds (for `restore_gc`)."""
    old = gc.get_threshold()
    if mode == "tuned":
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_TUNED_THRESHOLD0, old[1], old[2])
    return old


def restore_gc(old: tuple[int, int, int]) -> None:
    gc.set_threshold(*old)
    gc.unfreeze()
    gc.collect()


def run_batched(
    directory: str,
    regions: int,
    rounds: int,
    layout: str,
    pipelined: bool,
    per_region: int = 1,
    gc_mode: str = "default",
) -> dict[str, Any]:
    engine = LmdbEngine(directory)
    old_gc = gc.get_threshold()
    try:
        wal = RaftWal(engine) if layout == "wal" else None
        nodes = [SyntheticNode(RegionStorage(engine, r, wal=wal)) for r in range(1, regions + 1)]
        batcher: Batcher[SyntheticNode] = Batcher(engine, wal=wal, pipelined=pipelined)
        payload = b"x" * ENTRY_SIZE
        number = 0
        old_gc = tune_gc(gc_mode)

        def one_round() -> None:
            nonlocal number
            number += 1
            add = batcher.add_ready
            for node in nodes:
                i = node.index + 1
                node.index = i + per_region - 1
                rd = node.rd
                rd.number = number
                if per_region == 1:
                    rd.entries = [Entry(term=1, index=i, data=payload)]
                else:
                    rd.entries = [
                        Entry(term=1, index=j, data=payload) for j in range(i, i + per_region)
                    ]
                rd.hs = HardState(term=1, vote=1, commit=i - 1)
                add(node, rd)
            batcher.submit()
            batcher.poll_completed()

        for _ in range(WARMUP_ROUNDS):
            one_round()
        batcher.flush()
        synced0 = engine.stats.synced_commits
        commit0 = batcher.stats.commit_seconds
        ckpt0 = batcher.stats.checkpoints
        t0 = time.perf_counter()
        for _ in range(rounds):
            one_round()
        batcher.flush()
        elapsed = time.perf_counter() - t0
        assert all(n.persisted == number for n in nodes)
        fsyncs = engine.stats.synced_commits - synced0
        batcher.close()
        return {
            "rounds_per_sec": round(rounds / elapsed, 1),
            "entries_per_sec": round(regions * rounds * per_region / elapsed),
            "fsyncs_per_round": round(fsyncs / rounds, 3),
            "commit_ms_per_round": round(
                (batcher.stats.commit_seconds - commit0) / rounds * 1e3, 3
            ),
            "checkpoints": batcher.stats.checkpoints - ckpt0,
            "seconds": round(elapsed, 3),
        }
    finally:
        engine.close()
        restore_gc(old_gc)


def run_baseline(directory: str, regions: int, commits: int) -> dict[str, Any]:
    """The same entries, one region per commit (no batching), direct layout."""
    engine = LmdbEngine(directory)
    try:
        storages = [RegionStorage(engine, r) for r in range(1, regions + 1)]
        payload = b"x" * ENTRY_SIZE
        last = [0] * regions

        def one(k: int) -> None:
            j = k % regions
            i = last[j] = last[j] + 1
            wb = WriteBatch()
            storages[j].append(
                wb, [Entry(term=1, index=i, data=payload)], HardState(term=1, vote=1, commit=i - 1)
            )
            engine.write(wb, sync=True)
            wb.run_commit_hooks()

        for k in range(min(20, commits)):
            one(k)
        synced0 = engine.stats.synced_commits
        t0 = time.perf_counter()
        for k in range(commits):
            one(k)
        elapsed = time.perf_counter() - t0
        return {
            "baseline_entries_per_sec": round(commits / elapsed),
            "baseline_fsyncs_per_entry": round(
                (engine.stats.synced_commits - synced0) / commits, 3
            ),
        }
    finally:
        engine.close()


def run(
    regions: int,
    rounds: int,
    layout: str,
    baseline: bool,
    pipelined: bool,
    repeat: int,
    per_region: int = 1,
    gc_mode: str = "default",
) -> dict[str, Any]:
    best: dict[str, Any] | None = None
    rates = []
    for _ in range(repeat):
        d = tempfile.mkdtemp(prefix="bench-batching-")
        try:
            r = run_batched(d, regions, rounds, layout, pipelined, per_region, gc_mode)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        rates.append(r["entries_per_sec"])
        if best is None or r["entries_per_sec"] > best["entries_per_sec"]:
            best = r
    assert best is not None
    out: dict[str, Any] = {
        "regions": regions,
        "entries_per_region_per_round": per_region,
        "rounds": rounds,
        "layout": layout,
        "pipelined": pipelined,
        "gc": gc_mode,
        **best,
        "median_entries_per_sec": sorted(rates)[len(rates) // 2],
        "runs": repeat,
    }
    if baseline:
        d = tempfile.mkdtemp(prefix="bench-batching-base-")
        try:
            out.update(run_baseline(d, regions, BASELINE_COMMITS))
        finally:
            shutil.rmtree(d, ignore_errors=True)
        out["ratio"] = round(out["entries_per_sec"] / out["baseline_entries_per_sec"], 1)
    print(
        f"regions={regions:>6} {layout:6} rounds/s={out['rounds_per_sec']:>8} "
        f"entries/s={out['entries_per_sec']:>8} fsync/round={out['fsyncs_per_round']} "
        f"commit={out['commit_ms_per_round']}ms"
        + (
            f" baseline={out['baseline_entries_per_sec']}/s ratio={out['ratio']}x"
            if baseline
            else ""
        ),
        file=sys.stderr,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--regions", type=int, help="one configuration (default: the whole table)")
    p.add_argument("--rounds", type=int, help="rounds per configuration")
    p.add_argument("--baseline", action="store_true", help="also measure one region per commit")
    p.add_argument("--layout", choices=["wal", "direct", "both"], default=None)
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration (best reported)")
    p.add_argument("--inline", action="store_true", help="commit inline (no writer thread)")
    p.add_argument(
        "--entries-per-region", type=int, default=1, help="entries per region per round (1)"
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval for the run (the writer thread needs the GIL back after "
        "each fsync; the default 5 ms delays it behind a busy main thread)",
    )
    p.add_argument(
        "--gc",
        choices=["default", "tuned"],
        default="default",
        help="tuned: gc.freeze() after setup and a 50,000 generation-0 threshold (module doc)",
    )
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if args.regions is not None:
        configs = [(args.regions, args.rounds or 100)]
        layouts = ["wal", "direct"] if args.layout == "both" else [args.layout or "wal"]
        baseline = args.baseline
    else:
        configs = [(n, args.rounds or r) for n, r in TABLE]
        layouts = ["wal", "direct"] if args.layout in (None, "both") else [args.layout]
        baseline = True
    results = []
    for regions, rounds in configs:
        for i, layout in enumerate(layouts):
            results.append(
                run(
                    regions,
                    rounds,
                    layout,
                    baseline and i == 0,
                    not args.inline,
                    args.repeat,
                    args.entries_per_region,
                    args.gc,
                )
            )
    d = tempfile.mkdtemp(prefix="bench-batching-probe-")
    try:
        latency = fsync_latency_ms(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    emit(
        "batching",
        {
            "entry_size": ENTRY_SIZE,
            "fsync_4k_median_ms": latency,
            "switch_interval_s": sys.getswitchinterval(),
            "gc": args.gc,
            "results": results,
        },
        save=not args.no_save,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
