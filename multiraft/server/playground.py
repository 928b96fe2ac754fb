"""`multiraft playground`: a local cluster of real store processes to try things on.

Starts N `multiraft server` children on consecutive ports with a fresh data dir (a temporary
one unless `--data-dir`), waits until every region has a leader, prints the endpoints and a
few commands to try, then waits. Ctrl-C or SIGTERM stops every child (SIGTERM, then SIGKILL
after a timeout) and exits 0; `--exit-after SECONDS` stops by itself (for CI).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from .localcluster import DEFAULT_BASE_PORT, MAX_STORES, LocalCluster

__all__ = ["add_playground_parser", "run_playground"]


def add_playground_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "playground", help="start a local cluster of real store processes"
    )
    p.add_argument("--stores", type=int, default=3, help="how many stores (default 3)")
    p.add_argument(
        "--initial-regions", type=int, default=4, help="regions to bootstrap (default 4)"
    )
    p.add_argument("--data-dir", default=None, help="data dir (default: a temporary one)")
    p.add_argument(
        "--base-port", type=int, default=None,
        help="store i listens on BASE+i-1 (client), BASE+10+i-1 (peer), BASE+20+i-1 (admin); "
        f"default {DEFAULT_BASE_PORT} if free (store 1 then answers on the addresses "
        "`multiraft kv` and `multiraft ctl` use by default)",
    )
    p.add_argument("--base-tick-ms", type=int, default=None, help="raft base tick of the stores")
    p.add_argument(
        "--exit-after", type=float, default=None, metavar="SECONDS",
        help="stop the cluster after this many seconds once it is ready (for CI)",
    )
    p.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for leaders")
    return p


def _say(msg: str = "") -> None:
    print(msg, flush=True)


def _usage_error(args: argparse.Namespace) -> str | None:
    if not 1 <= args.stores <= 9:
        return "--stores must be in [1, 9]"
    if not 1 <= args.initial_regions <= 65536:
        return "--initial-regions must be in [1, 65536]"
    if args.base_port is not None and not 1024 <= args.base_port <= 65535 - 3 * MAX_STORES:
        return f"--base-port must be in [1024, {65535 - 3 * MAX_STORES}]"
    if args.base_tick_ms is not None and args.base_tick_ms <= 0:
        return "--base-tick-ms must be positive"
    if args.exit_after is not None and args.exit_after < 0:
        return "--exit-after must be >= 0"
    if not args.ready_timeout > 0:
        return "--ready-timeout must be positive"
    return None


def run_playground(args: argparse.Namespace) -> int:
    usage = _usage_error(args)
    if usage is not None:
        print(f"multiraft playground: error: {usage}", file=sys.stderr)
        return 2
    temp = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="multiraft-playground-")) if temp else Path(args.data_dir)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    cluster: LocalCluster | None = None
    code = 0
    try:
        cluster = LocalCluster(
            args.stores,
            data_dir,
            initial_regions=args.initial_regions,
            base_port=args.base_port,
            base_tick_ms=args.base_tick_ms,
        )
        _say(f"starting {args.stores} stores in {data_dir} ...")
        cluster.start_all()
        try:
            leaders = cluster.wait_ready(args.ready_timeout)
        except RuntimeError as e:
            print(f"multiraft playground: error: {e}", file=sys.stderr)
            return 1
        if stop.is_set():
            return 0
        _print_banner(cluster, leaders, temp)
        stop.wait(args.exit_after)
        _say("\nstopping the stores ...")
    finally:
        if cluster is not None:
            codes = cluster.close()
            bad = {s: c for s, c in codes.items() if c != 0}
            if bad:
                print(f"multiraft playground: stores exited with {bad}", file=sys.stderr)
                code = 1
        for s, h in old.items():
            signal.signal(s, h)
        if temp:
            shutil.rmtree(data_dir, ignore_errors=True)
    _say("stopped.")
    return code


def _print_banner(cluster: LocalCluster, leaders: dict[int, int], temp: bool) -> None:
    _say(f"\nmultiraft playground: {cluster.n} stores, {len(leaders)} regions, all with a leader\n")
    _say(f"{'STORE':<6} {'CLIENT':<18} {'ADMIN':<18} METRICS")
    for sp in cluster.stores.values():
        _say(f"{sp.store_id:<6} {sp.client_addr:<18} {sp.admin_addr:<18} "
             f"http://{sp.admin_addr}/metrics")
    s1 = cluster.stores[1]
    clients = ",".join(cluster.client_addrs())
    other = 2 if cluster.n >= 2 else 1
    # At the default ports, store 1 is where `multiraft kv` and `multiraft ctl` look first.
    default = cluster.base_port == DEFAULT_BASE_PORT
    kv = "multiraft kv" if default else f"multiraft kv --client {clients}"
    ctl = "multiraft ctl" if default else f"multiraft ctl --admin {s1.admin_addr}"
    _say("\nTry:")
    _say(f"  {kv} put hello world")
    _say(f"  {kv} get hello")
    _say(f"  {kv} scan '' '' --limit 10")
    _say(f"  {ctl} status")
    _say(f"  {ctl} regions")
    _say(f"  {ctl} transfer-leader 1 {other}")
    _say(f"  curl -s http://{s1.admin_addr}/metrics | grep multiraft_proposals")
    _say(f"\nLogs: {cluster.data_dir}/store-*.log.  Ctrl-C stops the cluster"
         + (" (and removes its temporary data dir)." if temp else "."))
