"""`LocalStores`: real `Store`s (in-memory engines) with a real `ClientService` each, on an
event loop in a background thread, the stores connected by direct in-process delivery. Tests
talk to them over real TCP on 127.0.0.1 (port 0) from their own thread / loop, as a client
process would.

    with LocalStores(stores=3, regions=4) as ls:
        ls.wait_for_leaders()
        with Client(ls.addrs()) as c: ...
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop

from multiraft.engine import MemoryEngine
from multiraft.server.client_service import ClientService
from multiraft.store.errors import StoreError
from multiraft.store.store import Store, StoreConfig

_T = TypeVar("_T")
CLUSTER_ID = 1


class LocalStores:
    def __init__(
        self,
        stores: int = 1,
        regions: int = 4,
        *,
        tick: float = 0.02,
        **service_kw: Any,
    ) -> None:
        self.n = stores
        self.regions = regions
        self.tick_interval = tick
        self.service_kw = service_kw
        # The server runs on uvloop: so do the stores here.
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.stores: dict[int, Store] = {}
        self.services: dict[int, ClientService] = {}
        self.addr_book: dict[int, str] = {}
        # Stores cut off from the others (frames to and from them are dropped).
        self.down: set[int] = set()
        self._round_pending: set[int] = set()
        # While True no store runs a round (requests pile up, waiting): see `hold_rounds`.
        self._held = False
        self._tickers: list[asyncio.TimerHandle] = []
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> LocalStores:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        ids = list(range(1, self.n + 1))
        for sid in ids:
            store = Store(
                sid,
                MemoryEngine(),
                lambda to, frame, me=sid: self.loop.call_soon(self._deliver, me, to, frame),
                # (No leader balance: the tests place leaders by hand.)
                StoreConfig(leader_balance_ticks=0),
                random.Random(sid),
            )
            store.bootstrap(CLUSTER_ID, ids, self.regions)
            self.stores[sid] = store
        for sid in ids:
            svc = ClientService(
                self.stores[sid],
                lambda sid=sid: self.kick(sid),
                lambda: self.addr_book,
                **self.service_kw,
            )
            await svc.start("127.0.0.1", 0)
            self.services[sid] = svc
            self.addr_book[sid] = f"127.0.0.1:{svc.listen_port}"
        for sid in ids:
            self._tick(sid)

    def close(self) -> None:
        if not self.thread.is_alive():
            return

        async def stop() -> None:
            self._stopped = True
            for svc in self.services.values():
                await svc.close()
            for store in self.stores.values():
                store.stop(StoreError("test over"))

        try:
            self.run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    # -- driving the stores ---------------------------------------------------------------------

    def _tick(self, sid: int) -> None:
        if self._stopped or sid not in self.stores:
            return
        self.stores[sid].tick()
        self.kick(sid)
        self.loop.call_later(self.tick_interval, self._tick, sid)

    def kick(self, sid: int) -> None:
        if sid not in self._round_pending:
            self._round_pending.add(sid)
            self.loop.call_soon(self._round, sid)

    def _round(self, sid: int) -> None:
        self._round_pending.discard(sid)
        store = self.stores.get(sid)
        if store is None or self._stopped or self._held:
            return
        for _ in range(8):
            if not store.has_work():
                return
            store.round()
        if store.has_work():
            self.kick(sid)

    def _deliver(self, frm: int, to: int, frame: bytes) -> None:
        if frm in self.down or to in self.down or self._stopped:
            return
        store = self.stores.get(to)
        if store is not None:
            store.on_frame(frm, frame)
            self.kick(to)

    # -- helpers for tests (call from the test thread) ----------------------------------------

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 30.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], _T], timeout: float = 30.0) -> _T:
        async def wrap() -> _T:
            return fn()

        return self.run(wrap(), timeout)

    def addrs(self, *sids: int) -> list[str]:
        return [self.addr_book[s] for s in (sids or sorted(self.addr_book))]

    def leaders(self) -> dict[int, int]:
        """region id -> store id of its leader (regions without one are missing)."""

        def get() -> dict[int, int]:
            out: dict[int, int] = {}
            for sid, store in self.stores.items():
                if sid in self.down:
                    continue
                for rid, peer in store.peers.items():
                    if peer.is_leader():
                        out[rid] = sid
            return out

        return self.call(get)

    def wait_until(self, pred: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached within {timeout}s: {what}")
            time.sleep(0.02)

    def wait_for_leaders(self, timeout: float = 20.0) -> dict[int, int]:
        self.wait_until(lambda: len(self.leaders()) == self.regions, timeout, "every region led")
        return self.leaders()

    def transfer_all_leaders(self, to_store: int, timeout: float = 20.0) -> None:
        """Move the leader of every region to `to_store` and wait until it is there."""

        def ask() -> None:
            for rid, sid in self.leaders_now().items():
                if sid != to_store:
                    self.stores[sid].transfer_leader(rid, to_store, lambda r, e: None)
                    self.kick(sid)

        def done() -> bool:
            led = self.leaders()
            if len(led) == self.regions and all(s == to_store for s in led.values()):
                return True
            self.call(ask)
            return False

        self.wait_until(done, timeout, f"every leader on store {to_store}")

    def leaders_now(self) -> dict[int, int]:
        """Like `leaders()`, on the loop thread."""
        out: dict[int, int] = {}
        for sid, store in self.stores.items():
            for rid, peer in store.peers.items():
                if peer.is_leader() and sid not in self.down:
                    out[rid] = sid
        return out

    def hold_rounds(self, held: bool) -> None:
        """Stop (True) or resume (False) running rounds on every store."""

        def apply() -> None:
            self._held = held
            if not held:
                for sid in self.stores:
                    self.kick(sid)

        self.call(apply)

    def stats(self, sid: int) -> dict[str, int]:
        return self.call(lambda: dict(self.services[sid].stats))

    def close_services(self) -> None:
        """Every client port goes away (the stores keep running)."""

        async def close() -> None:
            for svc in self.services.values():
                await svc.close()

        self.run(close())
