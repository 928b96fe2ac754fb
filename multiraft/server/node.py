"""`StoreNode`: the asyncio runtime of one store process.

Everything runs on one event loop (docs/architecture.md, "The process at run time"): the
ticker, the store's rounds, the transport, the client service and the admin server; beside it,
the batching writer thread commits the rounds (one fsync each) and wakes the loop through
`call_soon_threadsafe`.

Rounds are *kicked*, not polled: any input (a raft frame, a client request, a tick, a finished
write round, a snapshot outcome) calls `kick()`, which schedules at most one pending round with
`call_soon`; after a round, if the store still has work, another is kicked. So a burst of input
within one loop iteration costs one round, and an idle store runs no rounds but its ticks.

Invariant: at most one round is scheduled (`_round_handle`) and rounds never nest (the store is
not re-entrant; callbacks that fire inside a round only kick).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batching import Batcher, BatchingFatalError
from metrics import StoreMetrics
from multiraft.engine import LmdbEngine
from multiraft.proto.serverpb_pb2 import BatchRaftMessage, Handshake
from multiraft.store import StoreError
from multiraft.store.errors import ServerBusy
from multiraft.store.store import Store, StoreConfig
from router.transport import Transport, make_ssl_contexts

from .addrbook import StoreAddrs, addr_with_port
from .client_service import ClientService
from .config import ConfigError, ServerConfig, parse_addr
from .datadir import DataDirLock
from .gossip import Gossip, StoreState, cluster_view
from .ports import check_listen_addrs

__all__ = ["StoreNode", "StoreAddrs", "store_config_from", "tune_gc"]

_log = logging.getLogger(__name__)

# Learned addresses of other stores, kept in the data dir across restarts.
_ADDRS_FILE = "stores.json"
# Every store gossips its address book and liveness view this often anyway (s), besides
# whenever they change; views older than a few intervals are not used.
_GOSSIP_INTERVAL = 5.0
_VIEW_TTL = 3 * _GOSSIP_INTERVAL


def store_config_from(config: ServerConfig) -> StoreConfig:
    """The store's tunables from the server's configuration."""
    return StoreConfig(
        election_ticks=config.election_ticks,
        heartbeat_ticks=config.heartbeat_ticks,
        suspect_ticks=config.suspect_ticks(),
        # (Ten suspicion times: 30 s at the default ticks.)
        startup_grace_ticks=10 * config.suspect_ticks(),
        follower_tick_every=_FOLLOWER_TICK_EVERY,
        max_region_ticks=_MAX_REGION_TICKS,
        check_quorum=config.check_quorum,
        pre_vote=config.pre_vote,
        lease_reads=config.lease_reads,
        log_gc_keep=config.raft_log_gc_keep,
        base_tick_seconds=config.base_tick_ms / 1000,
        region_split_size=config.region_split_size,
        region_split_keys=config.region_split_keys,
        region_split_qps=config.region_split_qps,
        auto_merge=config.auto_merge,
        region_merge_size=config.region_merge_size,
        region_merge_keys=config.region_merge_keys,
        split_merge_cooldown_ticks=config.split_merge_interval_s * 1000 // config.base_tick_ms,
        max_pending_requests=config.max_pending_requests,
        leader_balance_ticks=StoreConfig.leader_balance_ticks if config.leader_balance else 0,
        # Outbound frames are split well below the receivers' limit.
        max_frame_bytes=min(4 << 20, config.max_frame_bytes // 2),
    )


class StoreNode:
    """One store process: `await start()`, then `await wait_stopped()`; `request_stop()` (e.g.
    from a signal handler) stops it gracefully. `exit_code` tells how it ended."""

    def __init__(self, config: ServerConfig, *, metrics: StoreMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else StoreMetrics()
        self.addrs = StoreAddrs()
        self.started_at = time.time()
        self.exit_code = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: LmdbEngine | None = None
        self._lock: DataDirLock | None = None
        self._store: Store | None = None
        self._transport: Transport | None = None
        self._client: ClientService | None = None
        self._admin: Any = None
        self._flusher: Any = None
        # The pending round, if one is scheduled (at most one).
        self._round_handle: asyncio.Handle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._gossip: Gossip | None = None
        # The stores not heard from at the last tick (their changes are logged).
        self._suspected: frozenset[int] = frozenset()
        # Removed stores the store layer still watches (a region here has a replica there).
        self._lingering: set[int] = set()
        self._in_round = False
        self._stopping = False
        self._stopped: asyncio.Event | None = None
        self._stop_task: asyncio.Task[None] | None = None
        # Raft frames sent, per destination store (the metrics flush reads it).
        self.frames_by_store: dict[int, int] = {}
        self.unreachable_reports = 0

    # -- accessors --------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        assert self._store is not None, "start() first"
        return self._store

    @property
    def transport(self) -> Transport:
        assert self._transport is not None, "start() first"
        return self._transport

    @property
    def client_service(self) -> ClientService | None:
        return self._client

    @property
    def client_addr(self) -> str:
        return self.addrs.client.get(self.config.store_id, self.config.client_addr)

    @property
    def admin_addr(self) -> str:
        return self.addrs.admin.get(self.config.store_id, self.config.admin_addr)

    @property
    def peer_addr(self) -> str:
        return self.addrs.peer.get(self.config.store_id, self.config.peer_addr)

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Check that the peer, client and admin addresses can be listened on, lock the data
        dir (`datadir.DataDirLock`), open it, recover or bootstrap the store, then listen.
        Raises ConfigError (nothing created) for an address in use, ConfigError for a data dir
        locked by another process or of another cluster or store, OSError otherwise."""
        c = self.config
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        # Nothing is created before we know we can listen and the data dir is ours alone.
        check_listen_addrs(
            {"peer_addr": c.peer_addr, "client_addr": c.client_addr, "admin_addr": c.admin_addr}
        )
        lock = DataDirLock(c.data_dir)
        lock.acquire()
        self._lock = lock
        # The writer thread needs the GIL back after each fsync (batching/batcher.py).
        sys.setswitchinterval(0.0005)
        try:
            engine = self._engine = LmdbEngine(Path(c.data_dir), fsync=c.fsync)
            batcher: Batcher[Any] = Batcher(
                engine,
                pipelined=True,
                on_complete=self._on_round_written,
            )
            store = self._store = Store(
                c.store_id,
                engine,
                self._send,
                store_config_from(c),
                random.Random(),
                send_snapshot=self._send_snapshot,
                batcher=batcher,
                clock=time.perf_counter,
            )
            _log.debug("store %d: opening %s", c.store_id, c.data_dir)
            try:
                if c.join:
                    store.join(c.cluster_id)
                else:
                    store.bootstrap(c.cluster_id, sorted(c.peers()), c.initial_regions)
            except StoreError as e:
                raise ConfigError(f"data dir {c.data_dir}: {e}") from None
            self.addrs.load(self._addrs_path(), c.store_id)
            self._gossip = Gossip(
                c.store_id,
                self.addrs,
                self._send,
                self._learned,
                self._save_addrs,
                self._on_removed,
                interval_ticks=round(_GOSSIP_INTERVAL * 1000 / c.base_tick_ms),
            )
            await self._start_transport()
            await self._start_client_service()
            await self._start_admin()
        except BaseException:
            await self._close_all()
            raise
        from .metrics_flush import MetricsFlusher

        self._flusher = MetricsFlusher(
            self.metrics,
            self._store,
            self._transport,
            self.frames_by_store,
            self._client_stats,
        )
        self._tick_handle = loop.call_later(c.base_tick_ms / 1000, self._tick)
        self.kick()
        _log.info(
            "store %d of cluster %d up: %d regions, peer %s, client %s, admin %s",
            c.store_id,
            c.cluster_id,
            len(self.store.peers),
            self.peer_addr,
            self.client_addr,
            self.admin_addr,
        )

    async def _start_transport(self) -> None:
        c = self.config
        server_ssl = client_ssl = None
        if c.tls_cert:
            server_ssl, client_ssl = make_ssl_contexts(c.tls_ca, c.tls_cert, c.tls_key)
        t = self._transport = Transport(
            cluster_id=c.cluster_id,
            store_id=c.store_id,
            listen_addr=c.peer_addr,
            on_batch=self._on_batch,
            on_unreachable=self._on_unreachable,
            on_snapshot=self._on_snapshot,
            on_peer_info=self._on_peer_info,
            client_addr=c.advertise_client_addr or c.client_addr,
            admin_addr=c.advertise_admin_addr or c.admin_addr,
            advertise_addr=c.advertise_peer_addr,
            max_frame=c.max_frame_bytes,
            server_ssl=server_ssl,
            client_ssl=client_ssl,
        )
        await t.start()
        me = c.store_id
        self.addrs.peer[me] = c.advertise_peer_addr or addr_with_port(c.peer_addr, t.listen_port)
        for sid, (host, port) in c.peers().items():
            if sid != me:
                # The configuration wins over addresses learned in an earlier life.
                self.addrs.configure_peer(sid, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        # Every store we know is dialed and watched (store heartbeats): it learns of us.
        self._learned([sid for sid in self.addrs.peer if sid != me])

    async def _start_client_service(self) -> None:
        c = self.config
        svc = self._client = ClientService(self.store, self.kick, self.addrs.client)
        host, port = parse_addr(c.client_addr, "client_addr")
        await svc.start(host, port)
        self.addrs.client[c.store_id] = c.advertise_client_addr or addr_with_port(
            c.client_addr, int(svc.listen_port)
        )
        self.transport.client_addr = self.addrs.client[c.store_id]

    async def _start_admin(self) -> None:
        from .admin import AdminServer

        c = self.config
        admin = self._admin = AdminServer(self)
        port = await admin.start(c.admin_addr)
        self.addrs.admin[c.store_id] = c.advertise_admin_addr or addr_with_port(c.admin_addr, port)
        self.transport.admin_addr = self.addrs.admin[c.store_id]

    def request_stop(self, exit_code: int = 0) -> None:
        """Begin a graceful stop (idempotent); `wait_stopped()` returns once it is done."""
        if self._stopping:
            return
        self._stopping = True
        if exit_code:
            self.exit_code = exit_code
        loop = self._loop
        assert loop is not None
        self._stop_task = loop.create_task(self._stop())

    async def wait_stopped(self) -> int:
        assert self._stopped is not None, "start() first"
        await self._stopped.wait()
        return self.exit_code

    async def stop(self) -> int:
        self.request_stop()
        return await self.wait_stopped()

    async def _stop(self) -> None:
        _log.info("store %d stopping", self.config.store_id)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        try:
            # Stop accepting client work; what was accepted gets its answer (or an error).
            if self._client is not None:
                await self._client.close()
                self._client = None
            store = self._store
            if store is not None and self.exit_code == 0:
                # Finish the round in flight and flush what is queued: durable before we go.
                try:
                    self._cancel_round()
                    store.request_submit()
                    self._run_round_now()
                    batcher = store.batcher
                    while batcher.in_flight():
                        await asyncio.to_thread(batcher.wait, 0.1)
                    store.request_submit()
                    self._run_round_now()
                except BatchingFatalError:
                    _log.exception("the last write round failed")
                    self.exit_code = 1
            if store is not None:
                store.stop(ServerBusy("the store is shutting down"))
        finally:
            await self._close_all()
            _log.info("store %d stopped", self.config.store_id)
            assert self._stopped is not None
            self._stopped.set()

    async def _close_all(self) -> None:
        self._cancel_round()
        for closer in (self._client, self._admin, self._transport):
            if closer is not None:
                try:
                    await closer.close()
                except Exception:
                    _log.exception("closing %r", closer)
        self._client = self._admin = None
        if self._store is not None:
            self._store.batcher.close()
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- the round ---------------------------------------------------------------------------

    def kick(self) -> None:
        """Run a round soon (coalesced: at most one is pending)."""
        if self._round_handle is None and self._loop is not None and self._engine is not None:
            self._round_handle = self._loop.call_soon(self._run_round)

    def _on_round_written(self) -> None:
        """On the writer thread: a round is durable; the loop acknowledges it in a round."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.kick)

    def _cancel_round(self) -> None:
        if self._round_handle is not None:
            self._round_handle.cancel()
            self._round_handle = None

    def _run_round(self) -> None:
        self._round_handle = None
        if self._engine is None:
            return
        try:
            self._run_round_now()
        except Exception:
            # A broken invariant or a failed durable write: nothing may be acknowledged after
            # it. Stop; a restart recovers from the last durable round.
            _log.exception("store %d: round failed; stopping", self.config.store_id)
            self.request_stop(exit_code=1)
            return
        if self.store.has_work() and not self._stopping:
            self.kick()

    def _run_round_now(self) -> None:
        assert not self._in_round, "rounds never nest"
        self._in_round = True
        try:
            self.store.round()
        finally:
            self._in_round = False

    def _tick(self) -> None:
        if self._stopping:
            return
        assert self._loop is not None
        self._tick_handle = self._loop.call_later(self.config.base_tick_ms / 1000, self._tick)
        store = self.store
        store.tick()
        suspected = store.suspected_stores()
        if suspected != self._suspected:
            self._log_liveness(self._suspected, suspected)
            self._suspected = suspected
        if self._lingering and store.lanes.clock % 10 == 0:
            self._forget(list(self._lingering))
        if self._gossip is not None:
            self._gossip.tick(store.store_liveness())
        self.kick()
        if self._flusher is not None:
            self._flusher.flush()

    def _log_liveness(self, before: frozenset[int], now: frozenset[int]) -> None:
        ticks = self.config.suspect_ticks() * self.config.base_tick_ms / 1000
        for sid in sorted(now - before):
            _log.warning("store %d: not heard from for %.1fs; suspected down", sid, ticks)
        for sid in sorted(before - now):
            _log.info("store %d: heard from again", sid)

    def flush_metrics(self) -> None:
        if self._flusher is not None:
            self._flusher.flush()

    # -- transport callbacks ------------------------------------------------------------------

    def _send(self, to_store: int, frame: bytes) -> None:
        t = self._transport
        if t is None:  # before the transport is up (e.g. a round at bootstrap)
            return
        fbs = self.frames_by_store
        fbs[to_store] = fbs.get(to_store, 0) + 1
        t.send(to_store, frame)

    def _send_snapshot(
        self, to_store: int, header: bytes, data: bytes, done: Callable[[bool], None]
    ) -> None:
        def finished(ok: bool) -> None:
            done(ok)
            self.kick()

        t = self._transport
        if t is None:
            finished(False)
            return
        t.send_snapshot(to_store, header, data, finished)

    def _on_batch(self, from_store: int, batch: BatchRaftMessage) -> None:
        if batch.HasField("gossip") and self._gossip is not None:
            self._gossip.on_gossip(from_store, batch.gossip, time.monotonic())
        self.store.on_batch(from_store, batch)
        self.kick()

    def _on_snapshot(self, from_store: int, header: bytes, data: bytes) -> None:
        self.store.on_snapshot(from_store, header, data)
        self.kick()

    def _on_unreachable(self, store_id: int) -> None:
        self.unreachable_reports += 1
        _log.debug("store %d unreachable", store_id)
        addrs = self.addrs
        g = self._gossip
        if store_id not in addrs.peer and store_id not in addrs.removed and g is not None:
            g.ask(store_id, time.monotonic())
        report = getattr(self._store, "report_unreachable", None)
        if report is not None:
            report(store_id)
            self.kick()

    def _on_peer_info(self, hs: Handshake) -> None:
        """A handshake (either direction): what the store says of itself; and it gets our
        address book (gossip.py)."""
        sid = hs.store_id
        changed, peer_changed = self.addrs.learn_first_hand(
            sid, hs.peer_addr, hs.client_addr, hs.admin_addr
        )
        if peer_changed:
            self._learned([sid])
        if changed:
            _log.info(
                "store %d: peer %s, client %s, admin %s", sid, hs.peer_addr, hs.client_addr,
                hs.admin_addr,
            )
            self._save_addrs()
            if self._gossip is not None:
                self._gossip.changed()
        if self._gossip is not None:
            self._gossip.send_to(sid)

    def _learned(self, store_ids: list[int]) -> None:
        """Stores whose peer address we now know (or that changed): dial and watch them."""
        t, store = self._transport, self._store
        for sid in store_ids:
            addr = self.addrs.peer.get(sid)
            if addr is None or sid == self.config.store_id:
                continue
            if t is not None:
                t.add_store(sid, addr)
            if store is not None:
                store.track_store(sid)

    def remove_store(self, store_id: int) -> None:
        """Forget `store_id` for good, here and (gossiped) on every store: its address is
        dropped, its handshakes refused, it is no longer watched. The caller checks that it is
        down and holds no replica here (admin.py)."""
        if store_id == self.config.store_id or not self.addrs.remove(store_id):
            return
        _log.info("store %d removed from the cluster", store_id)
        self._save_addrs()
        self._on_removed([store_id])
        if self._gossip is not None:
            self._gossip.changed()

    def _on_removed(self, store_ids: list[int]) -> None:
        if self._transport is not None:
            for sid in store_ids:
                self._transport.remove_store(sid)
        self._forget(store_ids)

    def _forget(self, store_ids: list[int]) -> None:
        """Stop watching removed stores; one a region here still has a replica on is kept
        until that replica is removed from the region."""
        store = self._store
        if store is None:
            return
        for sid in store_ids:
            try:
                store.forget_store(sid)
            except StoreError:
                self._lingering.add(sid)
            else:
                self._lingering.discard(sid)

    def cluster_view(self) -> list[StoreState]:
        """Every store known, with its state as this store sees the cluster (gossip.py)."""
        g = self._gossip
        return cluster_view(
            self.config.store_id,
            self.addrs.ids(),
            self.store.store_liveness(),
            g.views if g is not None else {},
            time.monotonic(),
            self.config.base_tick_ms / 1000,
            _VIEW_TTL,
        )

    # -- learned addresses, kept across restarts -----------------------------------------------

    def _addrs_path(self) -> Path:
        return Path(self.config.data_dir) / _ADDRS_FILE

    def _save_addrs(self) -> None:
        self.addrs.save(self._addrs_path())

    # -- stats --------------------------------------------------------------------------------

    def _client_stats(self) -> dict[str, int]:
        svc = self._client
        return dict(svc.stats) if svc is not None else {}

    def uptime(self) -> float:
        return time.time() - self.started_at


# An awake follower whose leader's store is heard from ticks every this many base ticks
# (StoreConfig.follower_tick_every).
_FOLLOWER_TICK_EVERY = 5
# Awake regions ticked per base tick at most (StoreConfig.max_region_ticks): ~40 µs each.
_MAX_REGION_TICKS = 10_000
# Generation-0 threshold of the cyclic GC once the store is up (CPython's default is 700).
GC_THRESHOLD0 = 50_000


def tune_gc() -> None:
    """Called by the server process once its store is up (not by in-process tests): the
    store's long-lived objects (regions, storages, caches) leave the collector's
    generations, and young collections run 70x less often: +20% entries/s in
    bench/batching.py at 1,000 regions (docs/benchmarks.md, "Batching"). Cycles are still
    collected."""
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD0, g1, g2)
