"""Many regions per store on real processes: bootstrap, memory, idle cost, restart, failover.

    python -m bench.scale --regions 10000
    python -m bench.scale --regions 100000 --timeout 600      # the long variant

Three stores (fsync on) bootstrap `--regions` regions together, each with a replica on every
store. Measured, in order:

1. `all_leaders_s`: from starting the processes until every region has a leader.
2. `rss_mib` per store once they have, and per replica (`rss_per_replica_kib`).
3. `idle_cpu_percent` per store over `--idle` seconds once the regions hibernated (after
   waiting up to `--hibernate-wait` s for it), and the leaders per store.
4. `/metrics` on each store: scrape time (median of 5) and size.
5. `restart`: a SIGTERM of one store (its stop time), a start again, the time until it
   answers and every region on it knows a leader again, then until every region sleeps again.
6. `kill`: SIGKILL of the store with the most leaders while a client writes to random keys;
   the time until every region has a leader on the two others, and the client's errors
   (calls that failed after the client's own retries).
7. `log_bytes` per store over the whole run, and per minute.

Prints JSON and saves bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
from pathlib import Path
from typing import Any

from multiraft.server.localcluster import LocalCluster
from multiraft.server.main import install_uvloop

from .common import base_port, emit

_TICK = os.sysconf("SC_CLK_TCK")


def _status(c: LocalCluster, sid: int, timeout: float = 5.0) -> dict[str, Any] | None:
    try:
        s: dict[str, Any] = c.admin(sid, "/status", timeout=timeout)
        return s
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _pid(c: LocalCluster, sid: int) -> int:
    p = c.stores[sid].proc
    assert p is not None
    return p.pid


def _wait(pred: Any, timeout: float, poll: float = 0.5) -> float | None:
    """Seconds until `pred()` held, or None if it did not within `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return round(time.monotonic() - t0, 2)
        time.sleep(poll)
    return None


def _all_led(c: LocalCluster, n: int, stores: list[int]) -> bool:
    total = 0
    for sid in stores:
        proc = c.stores[sid].proc
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"store {sid} exited with {proc.returncode}:\n{c.log_tail(sid)}")
        s = _status(c, sid)
        if s is None or s["regions"] != n or s["without_leader"]:
            return False
        total += s["leaders"]
    return total == n


def _writer(addrs: list[str], stop: threading.Event, out: dict[str, Any]) -> None:
    from multiraft.client import AsyncClient, ClientError

    async def run() -> None:
        rng = random.Random(1)
        async with AsyncClient(addrs, timeout=20) as c:
            async def worker() -> None:
                while not stop.is_set():
                    key = rng.getrandbits(64).to_bytes(8, "big")
                    try:
                        await c.put(key, b"v")
                        out["ok"] += 1
                    except ClientError as e:
                        out["errors"].append(str(e)[:200])

            await asyncio.gather(*(worker() for _ in range(4)))

    asyncio.run(run())


class _Progress(dict[str, Any]):
    """The results, each also printed to stderr as it is measured (a long run that is
    stopped still tells what it measured), with the load average at that moment."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"[{time.strftime('%H:%M:%S')} load {load}] {key}: {value}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--regions", type=int, default=10_000)
    p.add_argument("--stores", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300.0, help="limit of each wait (s)")
    p.add_argument("--idle", type=float, default=30.0)
    p.add_argument("--hibernate-wait", type=float, default=60.0)
    p.add_argument("--base-tick-ms", type=int, default=100)
    p.add_argument("--skip-restart", action="store_true")
    p.add_argument("--skip-kill", action="store_true")
    p.add_argument(
        "--server-arg", action="append", default=[], metavar="FLAG",
        help="an extra `multiraft server` flag (repeatable)",
    )
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    install_uvloop()
    n = args.regions
    out: dict[str, Any] = _Progress({
        "params": {
            "regions": n,
            "stores": args.stores,
            "base_tick_ms": args.base_tick_ms,
            "fsync": True,
            "server_args": args.server_arg,
        }
    })
    # (The machine is shared: the load at the start, beside the one `emit` records at the end.)
    out["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        c = LocalCluster(
            args.stores,
            Path(tmp),
            initial_regions=n,
            base_port=base_port(args.stores),
            base_tick_ms=args.base_tick_ms,
            extra_args=args.server_arg,
        )
        ids = list(c.stores)
        started = time.monotonic()
        try:
            c.start_all()
            out["all_leaders_s"] = _wait(lambda: _all_led(c, n, ids), args.timeout)
            rss = {sid: _rss_mib(_pid(c, sid)) for sid in ids}
            out["rss_mib"] = rss
            out["rss_per_replica_kib"] = round(max(rss.values()) * 1024 / n, 2)
            out["hibernated_s"] = _wait(
                lambda: all((_status(c, s) or {}).get("hibernated") == n for s in ids),
                args.hibernate_wait,
            )
            cpu0 = {sid: _cpu_seconds(_pid(c, sid)) for sid in ids}
            time.sleep(args.idle)
            out["idle_cpu_percent"] = {
                sid: round(100 * (_cpu_seconds(_pid(c, sid)) - cpu0[sid]) / args.idle, 2)
                for sid in ids
            }
            out["leaders"] = {sid: (_status(c, sid) or {}).get("leaders") for sid in ids}
            scrape: dict[int, Any] = {}
            for sid in ids:
                times, size = [], 0
                for _ in range(5):
                    t0 = time.perf_counter()
                    text = c.admin(sid, "/metrics", timeout=30)
                    times.append(time.perf_counter() - t0)
                    size = len(text)
                scrape[sid] = {"ms": round(statistics.median(times) * 1000, 1), "bytes": size}
            out["metrics_scrape"] = scrape
            if not args.skip_restart:
                sid = ids[1]
                t0 = time.monotonic()
                code = c.stop(sid, timeout=args.timeout)
                stop_s = round(time.monotonic() - t0, 2)
                t0 = time.monotonic()
                c.start(sid)
                serving = _wait(
                    lambda: (s := _status(c, sid)) is not None
                    and s["regions"] == n
                    and s["without_leader"] == 0,
                    args.timeout,
                )
                out["restart"] = {
                    "store": sid,
                    "stop_s": stop_s,
                    "exit_code": code,
                    "serving_s": None if serving is None else round(time.monotonic() - t0, 2),
                    # Until every region sleeps again (the kill below starts from a quiet
                    # cluster, as the first measurements did).
                    "hibernated_again_s": _wait(
                        lambda: all((_status(c, s) or {}).get("hibernated") == n for s in ids),
                        args.hibernate_wait,
                    ),
                }
            if not args.skip_kill:
                leaders = {sid: (_status(c, sid) or {}).get("leaders") or 0 for sid in ids}
                victim = max(leaders, key=lambda s: leaders[s])
                stop = threading.Event()
                load: dict[str, Any] = {"ok": 0, "errors": []}
                w = threading.Thread(target=_writer, args=(c.client_addrs(), stop, load), daemon=True)
                w.start()
                time.sleep(3.0)
                c.kill(victim)
                rest = [s for s in ids if s != victim]
                elected = _wait(lambda: _all_led(c, n, rest), args.timeout, poll=0.25)
                time.sleep(3.0)
                stop.set()
                w.join(30)
                out["kill"] = {
                    "store": victim,
                    "leaders_before": leaders[victim],
                    "all_leaders_s": elected,
                    "writes_ok": load["ok"],
                    "write_errors": len(load["errors"]),
                    "first_errors": load["errors"][:3],
                }
        finally:
            c.close(timeout=60)
            minutes = (time.monotonic() - started) / 60
            logs = {sid: sp.log_path.stat().st_size for sid, sp in c.stores.items() if sp.log_path.exists()}
            out["log_bytes"] = logs
            out["log_bytes_per_minute"] = {sid: int(b / minutes) for sid, b in logs.items()}
    emit("scale", out, save=not args.no_save)


if __name__ == "__main__":
    main()
