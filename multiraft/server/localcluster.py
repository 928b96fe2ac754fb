"""`LocalCluster`: real `multiraft server` child processes on this machine (127.0.0.1).

Used by `multiraft playground`, the end-to-end tests and `bench/cluster.py`. Store `i` (1 to
10) listens on `base + i - 1` (client), `base + 10 + i - 1` (peer) and `base + 20 + i - 1`
(admin): with the default base 20160, store 1 has a bare `multiraft server`'s client and admin
ports (20160, 20180), which `multiraft kv` and `multiraft ctl` use when given no address. Each
child's output goes to `<data_dir>/store-<i>.log`. `close()` stops every child: SIGTERM, then
SIGKILL after a timeout.

For fault tests (multiraft/testing/nemesis.py): `advertise_peer` maps each store to the
address the other stores must dial (a fault-injecting proxy in front of it: the store
advertises it and every `--initial-cluster` lists it); `pause` / `resume` stop and continue a
child (SIGSTOP / SIGCONT); `set_file_size_limit` caps the size of the files a running child may
write (RLIMIT_FSIZE: a full disk); `env` is added to every child's environment.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LocalCluster", "StoreProc", "free_base_port", "port_free", "store_ports", "DEFAULT_BASE_PORT",
    "MAX_STORES", "WaitCancelled",
]

class WaitCancelled(Exception):
    """`LocalCluster.wait_ready` was cancelled (its `cancel` event was set)."""


# Store 1 of a cluster at this base gets a bare server's client and admin ports.
DEFAULT_BASE_PORT = 20160
# Stores per cluster: each kind of port has a block of this many.
MAX_STORES = 10


def store_ports(base: int, store_id: int) -> tuple[int, int, int]:
    """(client, peer, admin) ports of store `store_id` of a cluster at `base`."""
    if not 1 <= store_id <= MAX_STORES:
        raise ValueError(f"store ids of a local cluster are 1..{MAX_STORES}, got {store_id}")
    i = store_id - 1
    return base + i, base + MAX_STORES + i, base + 2 * MAX_STORES + i


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers bind: a port in TIME_WAIT is usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_base_port(
    stores: int, start: int = DEFAULT_BASE_PORT, attempts: int = 200
) -> int:
    """A base port such that the 3 ports of stores 1..`stores` (`store_ports`) are free:
    `start` if possible, else one above it (`start` + a multiple of 100), else ask the OS for
    a random one."""
    stores = min(stores, MAX_STORES)

    def ok(base: int) -> bool:
        return base + 3 * MAX_STORES < 65000 and all(
            port_free(p) for sid in range(1, stores + 1) for p in store_ports(base, sid)
        )

    for i in range(attempts):
        base = start + 100 * i
        if ok(base):
            return base
    for _ in range(attempts):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        base = min(base, 60000)
        if ok(base):
            return base
    raise RuntimeError("no free ports")


@dataclass
class StoreProc:
    store_id: int
    client_addr: str
    peer_addr: str
    admin_addr: str
    data_dir: Path
    log_path: Path
    args: list[str] = field(default_factory=list)
    # Its --initial-cluster, if not the cluster's (a store that joins through some stores).
    initial_cluster: str = ""
    # Where the other stores reach it, if not at `peer_addr` (--advertise-peer-addr).
    advertise_peer_addr: str = ""
    # Added to its environment (after the cluster's `env`).
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    # Stopped by `LocalCluster.pause` (SIGSTOP) and not resumed yet.
    paused: bool = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def dial_addr(self) -> str:
        """The peer address the other stores dial."""
        return self.advertise_peer_addr or self.peer_addr


class LocalCluster:
    """N stores bootstrapped together; more may join later (`add_store`)."""

    def __init__(
        self,
        stores: int,
        data_dir: str | os.PathLike[str],
        *,
        initial_regions: int = 1,
        base_port: int | None = None,
        base_tick_ms: int | None = None,
        fsync: bool = True,
        extra_args: list[str] | None = None,
        cluster_id: int = 1,
        log_level: str = "info",
        advertise_peer: Callable[[int, str], str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.n = stores
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.initial_regions = initial_regions
        self.base_port = base_port if base_port is not None else free_base_port(stores + 2)
        self.base_tick_ms = base_tick_ms
        self.fsync = fsync
        self.extra_args = list(extra_args or [])
        self.cluster_id = cluster_id
        self.log_level = log_level
        self.advertise_peer = advertise_peer
        self.env = dict(env or {})
        self.stores: dict[int, StoreProc] = {}
        for sid in range(1, stores + 1):
            self.stores[sid] = self._make(sid)
        self.initial_cluster = ",".join(f"{s.store_id}={s.dial_addr}" for s in self.stores.values())

    def _make(self, sid: int) -> StoreProc:
        client, peer, admin = store_ports(self.base_port, sid)
        d = self.data_dir / f"store-{sid}"
        sp = StoreProc(
            sid,
            f"127.0.0.1:{client}",
            f"127.0.0.1:{peer}",
            f"127.0.0.1:{admin}",
            d,
            self.data_dir / f"store-{sid}.log",
        )
        if self.advertise_peer is not None:
            sp.advertise_peer_addr = self.advertise_peer(sid, sp.peer_addr)
        return sp

    # -- processes ----------------------------------------------------------------------------

    def command(self, sp: StoreProc, join: bool = False) -> list[str]:
        cmd = [
            sys.executable, "-m", "multiraft", "server",
            "--store-id", str(sp.store_id),
            "--data-dir", str(sp.data_dir),
            "--client-addr", sp.client_addr,
            "--peer-addr", sp.peer_addr,
            "--admin-addr", sp.admin_addr,
            "--initial-cluster", sp.initial_cluster or self.initial_cluster,
            "--initial-regions", str(self.initial_regions),
            "--cluster-id", str(self.cluster_id),
            "--log-level", self.log_level,
        ]
        if join:
            cmd.append("--join")
        if sp.advertise_peer_addr:
            cmd += ["--advertise-peer-addr", sp.advertise_peer_addr]
        if self.base_tick_ms is not None:
            cmd += ["--base-tick-ms", str(self.base_tick_ms)]
        if not self.fsync:
            cmd.append("--no-fsync")
        return cmd + self.extra_args + sp.args

    def start(self, sid: int, join: bool = False) -> StoreProc:
        sp = self.stores[sid]
        assert not sp.running, f"store {sid} is running"
        log = open(sp.log_path, "ab")
        # The children run the same code as this process (not another installed copy).
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env.update(self.env)
        env.update(sp.env)
        sp.paused = False
        try:
            sp.proc = subprocess.Popen(
                self.command(sp, join), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env,
                # Ctrl-C in a terminal reaches the playground only; it stops the children.
                start_new_session=True,
            )
        finally:
            log.close()
        return sp

    def start_all(self) -> None:
        for sid in self.stores:
            if not self.stores[sid].running:
                self.start(sid)

    def add_store(self, join_via: list[int] | None = None) -> StoreProc:
        """A new store that joins the running cluster (it holds no region at first), through
        the stores `join_via` (default: the initial stores)."""
        sid = max(self.stores) + 1
        sp = self.stores[sid] = self._make(sid)
        if join_via is not None:
            sp.initial_cluster = ",".join(f"{s}={self.stores[s].dial_addr}" for s in join_via)
        self.start(sid, join=True)
        return sp

    def stop(self, sid: int, timeout: float = 20.0) -> int:
        """SIGTERM, wait; SIGKILL after `timeout`. Returns the exit status."""
        sp = self.stores[sid]
        p = sp.proc
        if p is None:
            return 0
        if p.poll() is None:
            self.resume(sid)
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def kill(self, sid: int) -> None:
        sp = self.stores[sid]
        p = sp.proc
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        sp.proc = None  # killed on purpose: not a crash for wait_ready to report
        sp.paused = False

    def pause(self, sid: int) -> None:
        """SIGSTOP store `sid` (a GC pause, a stalled VM) until `resume`."""
        sp = self.stores[sid]
        if sp.running and not sp.paused:
            assert sp.proc is not None
            sp.proc.send_signal(signal.SIGSTOP)
            sp.paused = True

    def resume(self, sid: int) -> None:
        """SIGCONT store `sid` if `pause` stopped it."""
        sp = self.stores[sid]
        if sp.paused:
            sp.paused = False
            if sp.running:
                assert sp.proc is not None
                sp.proc.send_signal(signal.SIGCONT)

    def set_file_size_limit(self, sid: int, limit: int | None) -> None:
        """Cap the size of any file running store `sid` writes (RLIMIT_FSIZE, set on the live
        process): past it a write fails with EFBIG, as on a full disk (the server ignores
        SIGXFSZ). None lifts the cap."""
        p = self.stores[sid].proc
        if p is None or p.poll() is not None:
            return
        _, hard = resource.prlimit(p.pid, resource.RLIMIT_FSIZE)
        if limit is None:
            soft = hard
        else:
            soft = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.prlimit(p.pid, resource.RLIMIT_FSIZE, (soft, hard))

    def close(self, timeout: float = 15.0) -> dict[int, int]:
        """Stop every store (SIGTERM all at once, then wait, SIGKILL stragglers)."""
        procs = {sid: sp.proc for sid, sp in self.stores.items() if sp.proc is not None}
        for sid in procs:
            self.resume(sid)
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[int, int] = {}
        for sid, p in procs.items():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            codes[sid] = p.returncode
        return codes

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the admin API ------------------------------------------------------------------------

    def admin(
        self, sid: int, path: str, method: str = "GET", body: Any = None, timeout: float = 10.0
    ) -> Any:
        """JSON from store `sid`'s admin API; raises urllib.error.HTTPError on >= 400."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://{self.stores[sid].admin_addr}{path}", data=data, method=method
        )
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if path != "/metrics" else raw.decode()

    def _running(self, sid: int) -> bool:
        sp = self.stores.get(sid)
        return sp is not None and sp.running

    def leaders(self) -> dict[int, int] | None:
        """Region id -> leader store as the running stores see it; None if some running store
        does not answer or some region has no leader yet."""
        out: dict[int, int] = {}
        for sid, sp in self.stores.items():
            if not sp.running:
                continue
            try:
                regions = self.admin(sid, "/regions", timeout=2.0)["regions"]
            except (OSError, ValueError, urllib.error.URLError):
                return None
            for r in regions:
                # A leader on a stopped store is a stale view: the region has none yet.
                if r["leader"] is None or not self._running(r["leader"]["store_id"]):
                    return None
                out.setdefault(r["id"], r["leader"]["store_id"])
        return out

    def all_led(self) -> bool:
        """Every running store answers `/status` and knows a leader for each of its regions:
        one small answer per store, whatever the number of regions (`leaders()` lists them
        all, and tells whether they are all there)."""
        for sid, sp in self.stores.items():
            if not sp.running:
                continue
            try:
                s = self.admin(sid, "/status", timeout=5.0)
            except (OSError, ValueError, urllib.error.URLError):
                return False
            if s["without_leader"]:
                return False
        return True

    def wait_ready(
        self,
        timeout: float = 60.0,
        regions: int | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[int, int]:
        """Until every running store answers and every region has a leader; returns region id
        -> leader store. Raises RuntimeError (with the logs' tail) on timeout or a dead child,
        WaitCancelled once `cancel` is set (checked every poll: a Ctrl-C is not kept waiting)."""
        want = regions if regions is not None else self.initial_regions
        deadline = time.monotonic() + timeout
        while True:
            for sid, sp in self.stores.items():
                if sp.proc is not None and sp.proc.poll() is not None and sp.proc.returncode != 0:
                    raise RuntimeError(
                        f"store {sid} exited with {sp.proc.returncode}:\n{self.log_tail(sid)}"
                    )
            if self.all_led():
                leaders = self.leaders()
                if leaders is not None and len(leaders) >= want:
                    return leaders
            if time.monotonic() > deadline:
                tails = "\n".join(self.log_tail(s) for s in self.stores)
                raise RuntimeError(f"cluster not ready after {timeout:.0f}s:\n{tails}")
            if cancel is None:
                time.sleep(0.1)
            elif cancel.wait(0.1):
                raise WaitCancelled("stopped while waiting for leaders")

    def log_tail(self, sid: int, lines: int = 15) -> str:
        try:
            text = self.stores[sid].log_path.read_text(errors="replace")
        except OSError:
            return f"(no log for store {sid})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- store {sid} ---\n{tail}"

    def client_addrs(self) -> list[str]:
        return [sp.client_addr for sp in self.stores.values()]
