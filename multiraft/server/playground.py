"""`multiraft playground`: a local cluster of real store processes to try things on.

Starts N `multiraft server` children (ports: `localcluster.store_ports`) with a fresh data
dir (a temporary one unless `--data-dir`), waits until every region has a leader, prints the
endpoints and a few commands to try, then watches. A store that dies is reported at once, on
one line naming it, its exit status or signal, and its log. Ctrl-C or SIGTERM stops every
child (SIGTERM, then SIGKILL after a timeout) and exits 0, or 1 if a store died or did not
stop cleanly; `--exit-after SECONDS` stops by itself (for CI). A temporary data dir is
removed, except for the logs of the stores that died (their paths are printed).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from multiraft.store.base import MAX_INITIAL_REGIONS

from .localcluster import DEFAULT_BASE_PORT, MAX_STORES, LocalCluster, StoreProc, WaitCancelled

__all__ = ["add_playground_parser", "run_playground"]

# How often the playground looks for stores that died (seconds).
_POLL = 0.2


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
    p.add_argument(
        "--server-arg", action="append", default=[], metavar="ARG",
        help="an argument for every store's `multiraft server`, e.g. "
        "--server-arg=--region-split-size=65536 (repeatable)",
    )
    return p


def _say(msg: str = "") -> None:
    print(msg, flush=True)


def _usage_error(args: argparse.Namespace) -> str | None:
    if not 1 <= args.stores <= 9:
        return "--stores must be in [1, 9]"
    if not 1 <= args.initial_regions <= MAX_INITIAL_REGIONS:
        return f"--initial-regions must be in [1, {MAX_INITIAL_REGIONS}]"
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
    # Stores that died (store id -> exit status), each reported once.
    dead: dict[int, int] = {}
    code = 0
    try:
        cluster = LocalCluster(
            args.stores,
            data_dir,
            initial_regions=args.initial_regions,
            base_port=args.base_port,
            base_tick_ms=args.base_tick_ms,
            extra_args=args.server_arg,
        )
        _say(f"starting {args.stores} stores in {data_dir} ...")
        cluster.start_all()
        try:
            leaders = cluster.wait_ready(args.ready_timeout, cancel=stop)
        except WaitCancelled:
            _say("\nstopping the stores ...")
        except RuntimeError as e:
            print(f"multiraft playground: error: {e}", file=sys.stderr)
            code = 1
        else:
            if not stop.is_set():
                _print_banner(cluster, leaders, temp)
                _watch(cluster, stop, args.exit_after, dead)
                _say("\nstopping the stores ...")
    finally:
        if cluster is not None:
            for sid, status in cluster.close().items():
                if status != 0 and sid not in dead:
                    dead[sid] = status
                    _report(cluster.stores[sid], status)
            if dead:
                code = 1
        for s, h in old.items():
            signal.signal(s, h)
        if temp:
            keep = [cluster.stores[sid].log_path for sid in sorted(dead)] if cluster else []
            _remove_temp(data_dir, keep)
            for path in keep:
                _say(f"kept the log of a store that died: {path}")
    if code == 0:
        _say("stopped.")
    return code


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def _report(sp: StoreProc, status: int) -> None:
    print(
        f"multiraft playground: store {sp.store_id} {_describe(status)}; its log: {sp.log_path}",
        file=sys.stderr,
        flush=True,
    )


def _watch(
    cluster: LocalCluster, stop: threading.Event, exit_after: float | None, dead: dict[int, int]
) -> None:
    """Until `stop` (or `exit_after` seconds, or every store died): report each store that
    exits, as it exits, into `dead`."""
    deadline = None if exit_after is None else time.monotonic() + exit_after
    while True:
        wait = _POLL if deadline is None else min(_POLL, max(0.0, deadline - time.monotonic()))
        if stop.wait(wait):
            return
        for sid, sp in cluster.stores.items():
            status = sp.proc.poll() if sp.proc is not None else None
            if status is not None and sid not in dead:
                dead[sid] = status
                _report(sp, status)
        if len(dead) == len(cluster.stores):
            print("multiraft playground: every store died; stopping", file=sys.stderr)
            return
        if deadline is not None and time.monotonic() >= deadline:
            return


def _remove_temp(data_dir: Path, keep: list[Path]) -> None:
    """Remove a temporary data dir, but for the files in `keep`."""
    if not keep:
        shutil.rmtree(data_dir, ignore_errors=True)
        return
    for child in data_dir.iterdir():
        if child in keep:
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _region_of(cluster: LocalCluster, key: bytes) -> int | None:
    """The id of the region holding `key` (as store 1 sees it), if store 1 answers."""
    try:
        regions = cluster.admin(1, "/regions", timeout=2.0)["regions"]
    except (OSError, ValueError):
        return None
    for r in regions:
        start, end = bytes.fromhex(r["start_key"]), bytes.fromhex(r["end_key"])
        if start <= key and (not end or key < end):
            return int(r["id"])
    return None


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
    rid = _region_of(cluster, b"m")
    if rid is not None:
        _say(f"  {ctl} split {rid} m          # cut region {rid} at key 'm' (prints the new region)")
        _say(f"  {ctl} merge NEW {rid}         # NEW: the region split printed; merges it back")
    _say(f"  curl -s http://{s1.admin_addr}/metrics | grep multiraft_proposals")
    _say(f"\nLogs: {cluster.data_dir}/store-*.log.  Ctrl-C stops the cluster"
         + (" (and removes its temporary data dir, but for the logs of stores that died)."
            if temp else "."))
