"""multiraft against etcd on the same machine, the same workload, alternating runs.

    python -m bench.vs_etcd --duration 30 --rounds 2            # 64 clients, A B A B
    python -m bench.vs_etcd --duration 10 --clients 1,16,64,256,1024

Starts a 3-member etcd (the `etcd` binary on PATH, or --etcd; Debian/Ubuntu:
`apt-get install etcd-server etcd-client`) on loopback ports, and a 3-store multiraft cluster
as `bench.cluster` does (16 regions, fsync on), and runs the same load generator
(`bench.cluster.drive`) against each: N asyncio workers, 50% puts of fresh keys, 50%
linearizable gets of keys written earlier, 128-byte values, a 2 s warmup not counted.
etcd is spoken to over gRPC (`etcdserverpb.KV/Put` and `/Range`, requests encoded by hand:
no etcd client library needed; ranges are linearizable, etcd's default) from one channel
per member, the workers spread over them; `--etcd-api json` uses the JSON gateway instead
(`/v3/kv/put`, `/v3/kv/range`, base64). multiraft through its own `AsyncClient`.

Each round starts each system afresh (etcd first), runs every `--clients` value, and stops
it, so the two systems alternate A B A B and each pair of measurements is taken minutes apart
at most. The CPU seconds of every server process and of the load generator (this process)
during the counted window come from /proc; "server CPU per op" is their sum over the ops.
Prints one JSON (saved as bench/results/vs_etcd.json): every run, and per client count the
ratios multiraft / etcd — the median over the interleaved pairs of rounds. `--baseline TREE`
adds a third system in every round: stores running another source tree's code (the same
client), for before/after ratios of a change measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from multiraft.server.localcluster import LocalCluster
from multiraft.server.main import install_uvloop
from router.lanes import varint

from .cluster import drive, store_metrics, store_pids
from .common import base_port, emit

# --- etcd ---------------------------------------------------------------------------------




def _field(num: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(num << 3 | 2) + varint(len(data)) + data


def put_request(key: bytes, value: bytes) -> bytes:
    """etcdserverpb.PutRequest{key=1, value=2}."""
    return _field(1, key) + _field(2, value)


def range_request(key: bytes) -> bytes:
    """etcdserverpb.RangeRequest{key=1} (serializable=false: linearizable)."""
    return _field(1, key)


class EtcdCluster:
    """Three etcd members on loopback, data in `root`, logs in `root/<name>.log`."""

    def __init__(self, binary: str, root: Path, members: int = 3) -> None:
        self.binary = binary
        self.root = root
        base = base_port(members)
        # (client, peer) port per member, from the free block `free_base_port` checked.
        self.ports = [(base + i, base + 10 + i) for i in range(members)]
        self.names = [f"m{i + 1}" for i in range(members)]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def client_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{c}" for c, _ in self.ports]

    def start(self, timeout: float = 30.0) -> None:
        initial = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, (_, p) in zip(self.names, self.ports, strict=True)
        )
        for name, (cport, pport) in zip(self.names, self.ports, strict=True):
            log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 (the child keeps it)
            self.procs.append(
                subprocess.Popen(
                    [
                        self.binary,
                        "--name", name,
                        "--data-dir", str(self.root / name),
                        "--listen-client-urls", f"http://127.0.0.1:{cport}",
                        "--advertise-client-urls", f"http://127.0.0.1:{cport}",
                        "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                        "--initial-cluster", initial,
                        "--initial-cluster-state", "new",
                        "--initial-cluster-token", f"bench-{os.getpid()}",
                        "--log-level", "warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
            log.close()
        deadline = time.monotonic() + timeout
        for url in self.client_urls:
            while True:
                try:
                    with urllib.request.urlopen(url + "/health", timeout=2) as r:
                        if b'"true"' in r.read():
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd at {url} not healthy within {timeout} s")
                time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in zip(self.names, self.procs, strict=True)}

    def close(self) -> list[int | None]:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        codes: list[int | None] = []
        for p in self.procs:
            try:
                codes.append(p.wait(15))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        return codes


async def _etcd_load_grpc(urls: list[str], clients: int, kw: dict[str, Any]) -> dict[str, Any]:
    import grpc  # type: ignore[import-untyped]

    channels = [grpc.aio.insecure_channel(u.removeprefix("http://")) for u in urls]
    puts = [ch.unary_unary("/etcdserverpb.KV/Put") for ch in channels]
    ranges = [ch.unary_unary("/etcdserverpb.KV/Range") for ch in channels]
    n = len(channels)
    # Sanity check (once): a put is visible to a linearizable range on another member.
    await puts[0](put_request(b"bench-check", b"v" * 8))
    got = await ranges[-1](range_request(b"bench-check"))
    assert b"v" * 8 in got, "etcd range did not return the value put"
    turn = 0

    def pick() -> int:
        nonlocal turn
        turn += 1
        return turn % n

    async def put(k: bytes, v: bytes) -> None:
        await puts[pick()](put_request(k, v))

    async def get(k: bytes) -> None:
        await ranges[pick()](range_request(k))

    try:
        return await drive(put, get, clients=clients, **kw)
    finally:
        for ch in channels:
            await ch.close()


async def _etcd_load_json(urls: list[str], clients: int, kw: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    b64 = base64.b64encode
    n = len(urls)
    turn = 0
    conn = aiohttp.TCPConnector(limit=clients + n)
    async with aiohttp.ClientSession(connector=conn) as session:

        def url(path: str) -> str:
            nonlocal turn
            turn += 1
            return urls[turn % n] + path

        async def put(k: bytes, v: bytes) -> None:
            body = {"key": b64(k).decode(), "value": b64(v).decode()}
            async with session.post(url("/v3/kv/put"), json=body) as r:
                r.raise_for_status()
                await r.read()

        async def get(k: bytes) -> None:
            async with session.post(url("/v3/kv/range"), json={"key": b64(k).decode()}) as r:
                r.raise_for_status()
                await r.read()

        return await drive(put, get, clients=clients, **kw)


@contextmanager
def etcd_cluster(binary: str) -> Iterator[EtcdCluster]:
    with tempfile.TemporaryDirectory(prefix="bench-etcd-") as tmp:
        cluster = EtcdCluster(binary, Path(tmp))
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.close()


# --- multiraft ----------------------------------------------------------------------------


@contextmanager
def multiraft_cluster(args: argparse.Namespace, tree: str | None = None) -> Iterator[LocalCluster]:
    """Three stores running this tree's code, or the code of the source tree `tree`."""
    with tempfile.TemporaryDirectory(prefix="bench-vs-etcd-") as tmp:
        cluster = LocalCluster(
            3,
            Path(tmp),
            initial_regions=args.regions,
            base_port=base_port(3),
            fsync=True,
            log_level="warning",
            extra_args=args.server_arg,
            # (Safe path: `python -m` would put the current directory, this tree, first.)
            env={"PYTHONPATH": str(Path(tree).resolve()), "PYTHONSAFEPATH": "1"} if tree else None,
        )
        try:
            cluster.start_all()
            cluster.wait_ready(120)
            yield cluster
        finally:
            cluster.close()


async def _multiraft_load(addrs: list[str], clients: int, kw: dict[str, Any]) -> dict[str, Any]:
    from multiraft.client import AsyncClient

    client = AsyncClient(addrs)
    try:
        await client.refresh_regions()
        return await drive(client.put, client.get, clients=clients, **kw)
    finally:
        await client.close()


# --- the comparison -----------------------------------------------------------------------


def _row(res: dict[str, Any]) -> dict[str, Any]:
    return {
        "writes_per_s": res["writes"]["per_second"],
        "reads_per_s": res["reads"]["per_second"],
        "p50_ms": res["all"]["p50_ms"],
        "p99_ms": res["all"]["p99_ms"],
        "put_p50_ms": res["writes"]["p50_ms"],
        "get_p50_ms": res["reads"]["p50_ms"],
        "server_cpu_us_per_op": res["server_cpu_us_per_op"],
        "loadgen_cpu_us_per_op": res["loadgen_cpu_us_per_op"],
        "errors": res["errors"],
    }


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _run_system(
    name: str,
    args: argparse.Namespace,
    clients_list: list[int],
    kw: dict[str, Any],
    log: Callable[[str], None],
) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    if name == "etcd":
        with etcd_cluster(args.etcd) as ec:
            load = _etcd_load_grpc if args.etcd_api == "grpc" else _etcd_load_json
            for c in clients_list:
                la = _loadavg()
                res = asyncio.run(load(ec.client_urls, c, {**kw, "pids": ec.pids()}))
                out[c] = {**_row(res), "loadavg_before": la, "cpu_seconds": res["cpu_seconds"]}
                log(f"etcd      clients={c:5d} {_brief(out[c])}")
    else:
        with multiraft_cluster(args, args.baseline if name == "baseline" else None) as mc:
            for c in clients_list:
                la = _loadavg()
                before = store_metrics(mc)
                res = asyncio.run(
                    _multiraft_load(mc.client_addrs(), c, {**kw, "pids": store_pids(mc)})
                )
                after = store_metrics(mc)
                row = {**_row(res), "loadavg_before": la, "cpu_seconds": res["cpu_seconds"]}
                delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                ops = res["all"]["ops"] or 1
                writes = res["writes"]["ops"] or 1
                # The stores' counters cover the warmup too: scaled to the counted window.
                scale = kw["duration"] / (kw["duration"] + kw["warmup"])

                def per(name: str, n: int, d: dict[str, int] = delta, f: float = scale) -> float:
                    return round(d.get(name, 0) * f / n, 2)

                row["stores_during_run"] = delta
                row["per_op"] = {
                    "raft_messages": per("raft_messages_sent_total", ops),
                    "store_rounds": per("batch_rounds_total", ops),
                    "readies_written": per("batch_regions_per_round_sum", ops),
                }
                row["per_write"] = {"applied_entries": per("applied_entries_total", writes)}
                out[c] = row
                log(f"{name:9s} clients={c:5d} {_brief(row)}")
    return out


def _brief(r: dict[str, Any]) -> str:
    return (
        f"w/s={r['writes_per_s']:8.1f} r/s={r['reads_per_s']:8.1f} p50={r['p50_ms']:7.2f} "
        f"p99={r['p99_ms']:7.2f} cpu/op={r['server_cpu_us_per_op']} us "
        f"loadgen/op={r['loadgen_cpu_us_per_op']} us err={sum(r['errors'].values())} "
        f"load={r['loadavg_before'][0]}"
    )


def _ratios(
    etcd: list[dict[int, dict[str, Any]]], mr: list[dict[int, dict[str, Any]]], clients: list[int]
) -> dict[int, dict[str, float | None]]:
    """Per client count: `mr` / `etcd`, the median over the rounds' pairs."""
    out: dict[int, dict[str, float | None]] = {}
    for c in clients:
        row: dict[str, float | None] = {}
        for k in ("writes_per_s", "reads_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_op"):
            pairs = [
                m[c][k] / e[c][k]
                for e, m in zip(etcd, mr, strict=True)
                if e[c][k] and m[c][k] is not None
            ]
            row[k] = round(statistics.median(pairs), 3) if pairs else None
        out[c] = row
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", default="64", help="comma-separated client counts (a sweep)")
    p.add_argument("--duration", type=float, default=30.0, help="counted seconds per run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=2, help="A B rounds (each starts both afresh)")
    p.add_argument("--regions", type=int, default=16)
    p.add_argument("--value-size", type=int, default=128)
    p.add_argument("--write-ratio", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--etcd", default=shutil.which("etcd") or "", help="the etcd binary")
    p.add_argument("--etcd-api", choices=("grpc", "json"), default="grpc")
    p.add_argument("--only", choices=("etcd", "multiraft"), help="run one system only")
    p.add_argument(
        "--baseline", metavar="TREE",
        help="also run stores from this source tree (e.g. `git worktree add /tmp/base main`), "
        "interleaved: ratios multiraft / baseline",
    )
    p.add_argument(
        "--server-arg", action="append", default=[], metavar="FLAG",
        help="an extra `multiraft server` flag (repeatable)",
    )
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    clients = [int(x) for x in args.clients.split(",") if x]
    systems = ["etcd", "multiraft"] if args.only is None else [args.only]
    if args.baseline:
        systems.insert(-1, "baseline")
    if "etcd" in systems and not (args.etcd and os.access(args.etcd, os.X_OK)):
        print(
            "bench.vs_etcd: no etcd binary on PATH (Debian/Ubuntu: apt-get install etcd-server "
            "etcd-client, or pass --etcd PATH); skipped",
            file=sys.stderr,
        )
        if args.only == "etcd" or args.only is None:
            return
    if args.etcd_api == "grpc" and "etcd" in systems:
        try:
            import grpc  # noqa: F401
        except ImportError:
            print("bench.vs_etcd: grpcio is not installed: using the JSON gateway", file=sys.stderr)
            args.etcd_api = "json"
    install_uvloop()
    kw = {
        "duration": args.duration,
        "warmup": args.warmup,
        "write_ratio": args.write_ratio,
        "value_size": args.value_size,
        "seed": args.seed,
    }

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results: dict[str, list[dict[int, dict[str, Any]]]] = {s: [] for s in systems}
    loads = [_loadavg()]
    for rnd in range(args.rounds):
        for s in systems:
            log(f"round {rnd + 1}: {s}")
            results[s].append(_run_system(s, args, clients, kw, log))
            loads.append(_loadavg())
    doc: dict[str, Any] = {
        "params": {
            "clients": clients,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "regions": args.regions,
            "value_size": args.value_size,
            "write_ratio": args.write_ratio,
            "etcd_api": args.etcd_api if "etcd" in systems else None,
            "etcd_version": _etcd_version(args.etcd) if "etcd" in systems else None,
            "multiraft_server_args": args.server_arg,
            "baseline_tree": args.baseline,
        },
        "loadavg_between_runs": loads,
        "runs": {s: [{str(c): r for c, r in rnd.items()} for rnd in v] for s, v in results.items()},
    }
    for a, b in (("multiraft", "etcd"), ("multiraft", "baseline"), ("baseline", "etcd")):
        if a in results and b in results:
            doc[f"ratio_{a}_over_{b}"] = {
                str(c): r for c, r in _ratios(results[b], results[a], clients).items()
            }
    emit("vs_etcd", doc, save=not args.no_save)


def _etcd_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    return out.stdout.splitlines()[0] if out.stdout else "?"


if __name__ == "__main__":
    main()
