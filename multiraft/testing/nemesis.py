"""Faults on real processes: a Jepsen-style run of the register and set workloads against a
local cluster of `multiraft server` processes while a nemesis partitions, pauses, kills and
starves them, then a verdict.

    python -m multiraft.testing.nemesis --seconds 120 --faults partition,pause,kill,disk \\
        --seed 7 [--stores 3] [--lease-reads] [--artifacts DIR]

What runs (`run_nemesis`):

1. A `FaultyCluster` (multiraft/testing/faulty_cluster.py): every store-to-store connection
   through a `FaultProxy`; stores keep only `raft_log_gc_keep` = 100 applied entries, so a
   store that was away catches up by snapshot.
2. The workloads (multiraft/testing/workloads.py) through one `AsyncClient` that may talk to
   every store: registers (put / get / CAS, rotating keys) and a set (unique adds), plus a
   filler of large values the nemesis switches on.
3. The nemesis (multiraft/testing/nemesis_faults.py) with the fault kinds asked for.
4. Everything healed, every store running, every region with a leader and a replica on every
   store; a final read of every register and of the whole set.
5. The verdict: the register history linearizable (`linearizability.check_history`), every
   acknowledged add present and nothing present that was never added, no store exiting when no
   fault asked for it, the cluster recovered.

It prints the fault schedule, the history sizes and the verdict. A failing run (or any run
with `--save`) writes its history (`history.jsonl`, one operation a line, re-checkable with
`--check`), the set's outcome, the schedule, a summary and every store's log to a folder, and
says where.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from multiraft.client import AsyncClient

from .faulty_cluster import FaultyCluster
from .linearizability import CheckResult, KvOp, check_history
from .nemesis_faults import FAULT_KINDS, Event, Nemesis
from .workloads import Filler, RegisterWorkload, SetResult, SetWorkload

__all__ = ["NemesisConfig", "RunResult", "run_nemesis", "save_history", "load_history", "main"]

_log = logging.getLogger(__name__)

# Applied entries a store keeps: small, so that a store that was away gets a snapshot.
LOG_GC_KEEP = 100


@dataclass
class NemesisConfig:
    seconds: float = 30.0
    faults: tuple[str, ...] = FAULT_KINDS
    seed: int = 1
    stores: int = 3
    initial_regions: int = 2
    lease_reads: bool = False
    base_tick_ms: int = 50
    # The longest partition or slow disk, and the longest pause (seconds).
    max_fault: float = 8.0
    max_pause: float = 10.0
    register_workers: int = 6
    set_workers: int = 2
    # Where the stores keep their data and logs (a temporary directory if None, removed
    # after a passing run).
    data_dir: Path | None = None
    # Where a failing run saves its history and logs (default: <data_dir>/artifacts).
    artifacts: Path | None = None
    # Save the artifacts even when the run passes.
    save: bool = False

    def describe(self) -> str:
        return (
            f"seed {self.seed}, {self.stores} stores, {self.initial_regions} regions, faults "
            f"{','.join(self.faults) or 'none'}, {self.seconds:g}s, lease reads "
            f"{'on' if self.lease_reads else 'off'}"
        )


@dataclass
class RunResult:
    config: NemesisConfig
    schedule: list[Event] = field(default_factory=list)
    fault_counts: dict[str, int] = field(default_factory=dict)
    register: dict[str, int] = field(default_factory=dict)
    register_errors: dict[str, int] = field(default_factory=dict)
    linearizable: CheckResult | None = None
    set_result: SetResult | None = None
    failures: list[str] = field(default_factory=list)
    # ERROR lines of the stores' logs, by logger and message (digits as #): not part of the
    # verdict (a full disk logs one on purpose), but worth a look.
    log_errors: dict[str, int] = field(default_factory=dict)
    # What the stores' logs say happened (`LOG_EVENTS`), over every replica.
    log_events: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    check_seconds: float = 0.0
    artifacts: Path | None = None

    @property
    def ok(self) -> bool:
        return (
            not self.failures
            and self.linearizable is not None
            and self.linearizable.ok
            and self.set_result is not None
            and self.set_result.ok
        )

    def verdict(self) -> str:
        if self.ok:
            return "PASS: register history linearizable, set intact"
        parts = list(self.failures)
        if self.linearizable is not None and not self.linearizable.ok:
            parts.append(f"register history NOT linearizable on key {self.linearizable.key!r}")
        if self.set_result is not None and not self.set_result.ok:
            parts.append(self.set_result.explain())
        return "FAIL: " + "; ".join(parts or ["the run did not finish"])

    def report(self) -> str:
        reg = self.register
        s = self.set_result
        lines = [
            f"nemesis run: {self.config.describe()}",
            "schedule:",
            *(f"  {ev}" for ev in self.schedule),
            "faults: " + (", ".join(f"{k} {v}" for k, v in sorted(self.fault_counts.items()))
                          or "none"),
            f"history: register {reg.get('ops', 0)} ops ({reg.get('ok', 0)} ok, "
            f"{reg.get('unknown', 0)} unknown outcome) on {reg.get('keys', 0)} keys; "
            + (f"set {s.attempted} adds attempted, {s.acked} acknowledged, {s.present} present"
               if s is not None else "set not checked"),
            f"client errors: {dict(sorted(self.register_errors.items())) or 'none'}",
            "in the stores' logs (every replica counts): " + ", ".join(
                f"{what} {n}" for what, n in self.log_events.items()),
            "errors in the stores' logs: " + ("; ".join(
                f"{n} x {what}" for what, n in sorted(self.log_errors.items())) or "none"),
            f"took {self.seconds:.1f}s (checker {self.check_seconds:.1f}s)",
            f"verdict: {self.verdict()}",
        ]
        if self.artifacts is not None:
            lines.append(f"artifacts: {self.artifacts}")
        return "\n".join(lines)


# -- histories on disk -----------------------------------------------------------------------


def _b(v: bytes | None) -> str | None:
    return None if v is None else v.decode("latin-1")


def _unb(v: Any) -> bytes | None:
    return None if v is None else str(v).encode("latin-1")


def save_history(history: list[KvOp], path: Path) -> None:
    """One JSON object per operation (bytes as latin-1 strings)."""
    with open(path, "w") as f:
        for op in history:
            result: Any = op.result if isinstance(op.result, bool) else _b(op.result)
            f.write(json.dumps({
                "kind": op.kind, "key": _b(op.key), "value": _b(op.value),
                "expected": _b(op.expected), "result": result, "invoked_at": op.invoked_at,
                "completed_at": op.completed_at, "label": op.label,
            }) + "\n")


def load_history(path: Path) -> list[KvOp]:
    ops = []
    for line in Path(path).read_text().splitlines():
        d = json.loads(line)
        result = d["result"] if isinstance(d["result"], bool) else _unb(d["result"])
        key = _unb(d["key"])
        assert key is not None
        ops.append(KvOp(d["kind"], key, value=_unb(d["value"]), expected=_unb(d["expected"]),
                        result=result, invoked_at=d["invoked_at"],
                        completed_at=d["completed_at"], label=d["label"]))
    return ops


def _save(result: RunResult, fc: FaultyCluster, register: RegisterWorkload,
          sets: SetWorkload, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    save_history(register.history, dest / "history.jsonl")
    (dest / "schedule.txt").write_text("\n".join(str(ev) for ev in result.schedule) + "\n")
    (dest / "set.json").write_text(json.dumps({
        "attempted": sorted(_b(k) for k in sets.attempted),
        "acked": sorted(_b(k) for k in sets.acked),
        "result": None if result.set_result is None else {
            k: ([_b(x) for x in v] if isinstance(v, list) else v)
            for k, v in asdict(result.set_result).items()
        },
    }, indent=1))
    if result.linearizable is not None and not result.linearizable.ok:
        (dest / "linearizability.txt").write_text(result.linearizable.explain() + "\n")
    (dest / "summary.txt").write_text(result.report() + "\n")
    fc.save_logs(dest / "logs")


_ERROR_LINE = re.compile(r" ERROR +\[store \d+\] (\S+): (.*)")


# What the stores' logs tell of a run: the name in the report, and a pattern of the line; a
# pattern with a group counts the number it captures (the stores' periodic INFO summaries,
# "store 1, last 10 s: 3 elected a leader here, ..."; per-region events are logged at DEBUG).
# A store killed between two summaries takes its last ones along: these are lower bounds.
LOG_EVENTS = {
    "elections won": re.compile(r"[:,] ([\d,]+) elected a leader here"),
    "snapshots applied": re.compile(r"[:,] ([\d,]+) applied a snapshot"),
    "snapshot sends failed": re.compile(r"snapshot to store \d+ failed"),
    "splits": re.compile(r"[:,] ([\d,]+) splits"),
    "merges": re.compile(r"[:,] ([\d,]+) merges"),
    "exits with status 1": re.compile(r"server\.main: exit 1 after"),
}


def _log_lines(fc: FaultyCluster) -> list[str]:
    return [line for sid in fc.stores for path in fc.log_files(sid)
            for line in path.read_text(errors="replace").splitlines()]


def log_errors(fc: FaultyCluster) -> dict[str, int]:
    """ERROR lines of every store's log, counted by logger and message (digits as #)."""
    counts: dict[str, int] = {}
    for line in _log_lines(fc):
        m = _ERROR_LINE.search(line)
        if m:
            what = f"{m.group(1)}: " + re.sub(r"0x[0-9a-f]+|\d+", "#", m.group(2))[:100]
            counts[what] = counts.get(what, 0) + 1
    return counts


def log_events(fc: FaultyCluster) -> dict[str, int]:
    """How many lines of the stores' logs tell of each of `LOG_EVENTS`."""
    counts = dict.fromkeys(LOG_EVENTS, 0)
    for line in _log_lines(fc):
        for name, pat in LOG_EVENTS.items():
            m = pat.search(line)
            if m:
                counts[name] += int(m.group(1).replace(",", "")) if pat.groups else 1
    return counts


# -- the run -----------------------------------------------------------------------------------


def _server_args(cfg: NemesisConfig) -> list[str]:
    args = ["--raft-log-gc-keep", str(LOG_GC_KEEP)]
    if cfg.lease_reads:
        args.append("--lease-reads")
    return args


async def _run(cfg: NemesisConfig, fc: FaultyCluster, result: RunResult,
               register: RegisterWorkload, sets: SetWorkload, rng: random.Random) -> None:
    filler = Filler(random.Random(rng.random()))
    t0 = time.monotonic()
    nemesis = Nemesis(fc, random.Random(rng.random()), filler, kinds=cfg.faults,
                      max_fault=cfg.max_fault, max_pause=cfg.max_pause, t0=t0)
    end = t0 + cfg.seconds
    async with AsyncClient(fc.cluster.client_addrs(), attempt_timeout=1.0) as client:
        watch = asyncio.ensure_future(nemesis.watch(float("inf")))
        try:
            await asyncio.gather(
                register.run(client, end),
                sets.run(client, end),
                filler.run(client, end),
                nemesis.run(end),
            )
            await nemesis.heal_all()
            try:
                await asyncio.to_thread(fc.wait_ready, 90)
            except RuntimeError as e:
                nemesis.fail(f"the cluster did not recover once healed: {e}")
            await nemesis.repair()
            failed = await register.final_reads(client)
            if failed:
                nemesis.fail(f"{failed} final reads failed once the faults were healed")
            result.set_result = await sets.check(client)
            nemesis.note("final reads done")
        finally:
            watch.cancel()
            result.schedule = nemesis.schedule
            result.failures = nemesis.failures
            result.fault_counts = nemesis.counts


def run_nemesis(cfg: NemesisConfig, out: Any = None) -> RunResult:
    """One run (module docstring); prints its report to `out` (default stdout)."""
    out = out if out is not None else sys.stdout
    rng = random.Random(cfg.seed)
    tmp = None
    data_dir = cfg.data_dir
    if data_dir is None:
        tmp = data_dir = Path(tempfile.mkdtemp(prefix=f"nemesis-{cfg.seed}-"))
    result = RunResult(cfg)
    register = RegisterWorkload(random.Random(rng.random()), workers=cfg.register_workers)
    sets = SetWorkload(random.Random(rng.random()), workers=cfg.set_workers)
    started = time.monotonic()
    print(f"nemesis run: {cfg.describe()}; data in {data_dir}", file=out, flush=True)
    fc = FaultyCluster(data_dir, cfg.stores, initial_regions=cfg.initial_regions,
                       base_tick_ms=cfg.base_tick_ms, extra_args=_server_args(cfg),
                       seed=rng.randrange(1 << 30))
    try:
        fc.start_all()
        fc.wait_ready(90)
        asyncio.run(_run(cfg, fc, result, register, sets, rng))
    except Exception as e:
        _log.exception("nemesis run failed")
        result.failures.append(f"the run broke off: {type(e).__name__}: {e}")
    finally:
        fc.close()
    result.log_errors = log_errors(fc)
    result.log_events = log_events(fc)
    result.register = register.summary()
    result.register_errors = dict(register.errors)
    t = time.monotonic()
    result.linearizable = check_history(register.history)
    result.check_seconds = time.monotonic() - t
    result.seconds = time.monotonic() - started
    if not result.ok or cfg.save:
        dest = cfg.artifacts or data_dir / "artifacts"
        _save(result, fc, register, sets, dest)
        result.artifacts = dest
    print(result.report(), file=out, flush=True)
    if tmp is not None and result.ok and not cfg.save:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


# -- the command line --------------------------------------------------------------------------


def config_from_env(**overrides: Any) -> NemesisConfig:
    """The configuration of the CI run and its long variants: `MULTIRAFT_NEMESIS_SECONDS`,
    `MULTIRAFT_NEMESIS_FAULTS` (comma-separated), `MULTIRAFT_NEMESIS_SEED`."""
    env = os.environ
    kw: dict[str, Any] = {
        "seconds": float(env.get("MULTIRAFT_NEMESIS_SECONDS", "30")),
        "faults": tuple(f for f in env.get("MULTIRAFT_NEMESIS_FAULTS", ",".join(FAULT_KINDS))
                        .split(",") if f),
        "seed": int(env.get("MULTIRAFT_NEMESIS_SEED", "1")),
    }
    kw.update(overrides)
    return NemesisConfig(**kw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m multiraft.testing.nemesis",
        description="Faults on real store processes while register and set workloads run; "
        "prints the fault schedule, the history sizes and the verdict (exit 0 pass, 1 fail).",
    )
    p.add_argument("--seconds", type=float, default=30.0, help="how long faults run (30)")
    p.add_argument("--faults", default=",".join(FAULT_KINDS),
                   help=f"comma-separated kinds among {','.join(FAULT_KINDS)} (all)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--stores", type=int, default=3)
    p.add_argument("--regions", type=int, default=2, help="initial regions (2)")
    p.add_argument("--lease-reads", action="store_true", help="run the stores with lease reads")
    p.add_argument("--max-fault", type=float, default=8.0,
                   help="longest partition or slow disk in seconds (8)")
    p.add_argument("--max-pause", type=float, default=10.0, help="longest pause in seconds (10)")
    p.add_argument("--data-dir", type=Path, help="where the stores live (default: a temporary "
                   "directory, removed after a passing run)")
    p.add_argument("--artifacts", type=Path, help="where a failing run saves its history and "
                   "logs (default: <data-dir>/artifacts)")
    p.add_argument("--save", action="store_true", help="save the artifacts even if it passes")
    p.add_argument("--check", type=Path, metavar="HISTORY",
                   help="only check a saved history.jsonl and print the verdict")
    p.add_argument("--log-level", default="warning", help="this process's log level (warning)")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if args.check is not None:
        ops = load_history(args.check)
        res = check_history(ops)
        print(f"{len(ops)} ops: {'linearizable' if res.ok else res.explain()}")
        return 0 if res.ok else 1
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = [f for f in faults if f not in FAULT_KINDS]
    if unknown:
        p.error(f"unknown fault kinds {unknown} (known: {', '.join(FAULT_KINDS)})")
    cfg = NemesisConfig(
        seconds=args.seconds, faults=faults,
        seed=args.seed if args.seed is not None else random.randrange(1 << 31),
        stores=args.stores, initial_regions=args.regions, lease_reads=args.lease_reads,
        max_fault=args.max_fault, max_pause=args.max_pause, data_dir=args.data_dir,
        artifacts=args.artifacts, save=args.save,
    )
    return 0 if run_nemesis(cfg).ok else 1


if __name__ == "__main__":
    sys.exit(main())
