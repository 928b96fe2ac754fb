"""`AsyncClient`: the asyncio client of a multiraft cluster.

    async with AsyncClient(["127.0.0.1:20160", "127.0.0.1:20170"]) as c:
        await c.put(b"k", b"v")
        assert await c.get(b"k") == b"v"
        assert await c.cas(b"k", b"v", b"w")
        pairs = await c.scan(b"a", b"z", limit=100)

Routing: a region cache (sorted by start key) filled by `regions` from any reachable store
sends each request to its region's leader, over one pipelined connection per store. Retries:
NOT_LEADER follows the leader hint at once; EPOCH_NOT_MATCH refreshes the cache from the
current regions in the error; REGION_NOT_FOUND / KEY_NOT_IN_REGION drop the cached region and
ask again; STALE_COMMAND, SERVER_BUSY, REGION_BUSY, TIMEOUT, a lost connection or an
unanswered attempt (after `attempt_timeout`) back off (jittered, exponential) and try again,
on another store when the one asked is unreachable. Everything is bounded by the call's
`timeout`, after which `ClientTimeout` names the last error.

Writes apply at most once: each call gets a request id (a random client id and a sequence
number) that every retry of that call reuses; the store's apply path drops a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

from .cache import RegionCache
from .errors import (
    ClientClosed,
    ClientTimeout,
    InvalidRequest,
    ProtocolError,
    ServerError,
    StoreUnavailable,
)
from .protocol import (
    MAX_FRAME,
    MAX_KEY,
    MAX_SCAN_LIMIT,
    MAX_VALUE,
    RETRYABLE_CODES,
    FrameDecoder,
    FrameError,
    RegionInfo,
    encode_frame,
    parse_addr,
    region_from_wire,
)

__all__ = ["AsyncClient"]

_log = logging.getLogger(__name__)

# Backoff between attempts: base * 2**n, capped, times a uniform jitter in [0.5, 1).
_BACKOFF_BASE: Final = 0.01
_BACKOFF_CAP: Final = 0.5
# A store whose connection failed is tried last for this long (seconds).
_SUSPECT_FOR: Final = 1.0


class _Retry(Exception):
    """An attempt failed in a way the next attempt may fix (connection, no answer)."""


class _Connection(asyncio.Protocol):
    """One pipelined connection to a store: requests get ids, answers resolve futures by id.
    Invariant: `pending` holds the futures of the requests sent and not answered yet."""

    def __init__(self, addr: str, max_frame: int) -> None:
        self.addr = addr
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(max_frame, strict_map_key=False)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 1
        self.closed = False
        # Requests encoded since the last flush: one socket write per loop iteration.
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but behave as one.)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            responses = self.decoder.feed(data)
        except FrameError as e:
            _log.warning("store %s sent a bad frame (%s); dropping the connection", self.addr, e)
            self.close()
            return
        pending = self.pending
        for resp in responses:
            if type(resp) is not dict:
                _log.warning("store %s sent a non-map response; ignored", self.addr)
                continue
            rid = resp.get("id")
            fut = pending.pop(rid, None) if type(rid) is int else None
            if fut is not None and not fut.done():
                fut.set_result(resp)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        pending, self.pending = self.pending, {}
        why = f"connection to {self.addr} lost" + (f": {exc}" if exc else "")
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(_Retry(why))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def request(self, req: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise _Retry(f"connection to {self.addr} is closed")
        rid = self.next_id
        self.next_id += 1
        req["id"] = rid
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.pending[rid] = fut
        out = self._out
        out.append(encode_frame(req))
        if len(out) == 1:
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        out, self._out = self._out, []
        transport = self.transport
        if out and not self.closed and transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))

    def forget(self, fut: asyncio.Future[dict[str, Any]]) -> None:
        for rid, f in self.pending.items():
            if f is fut:
                del self.pending[rid]
                return


class _NoAnswer(Exception):
    """An attempt's answer did not come in time (`_expire`)."""


def _expire(fut: asyncio.Future[dict[str, Any]]) -> None:
    if not fut.done():
        fut.set_exception(_NoAnswer())


def _check_key(key: bytes, what: str = "key") -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, not {type(key).__name__}")
    key = bytes(key)
    if not 1 <= len(key) <= MAX_KEY:
        raise InvalidRequest("INVALID_REQUEST", f"{what} must be 1..{MAX_KEY} bytes")
    return key


def _check_value(value: bytes | None, what: str, *, optional: bool) -> bytes | None:
    if value is None:
        if optional:
            return None
        raise TypeError(f"{what} must be bytes, not None")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    value = bytes(value)
    if len(value) > MAX_VALUE:
        raise InvalidRequest("INVALID_REQUEST", f"{what} must be at most {MAX_VALUE} bytes")
    return value


def _successor(key: bytes) -> bytes | None:
    """The smallest valid key (at most MAX_KEY bytes) after `key`, or None if none is."""
    if len(key) < MAX_KEY:
        return key + b"\x00"
    k = key.rstrip(b"\xff")
    if not k:
        return None
    return k[:-1] + bytes([k[-1] + 1])


class AsyncClient:
    """See the module docstring. `addrs`: client addresses ("host:port") of some stores (more
    are learned from them). `timeout`: default seconds per call (each call may override it);
    `attempt_timeout`: seconds to wait for one answer before retrying."""

    def __init__(
        self,
        addrs: Iterable[str] | str,
        *,
        timeout: float = 10.0,
        attempt_timeout: float = 2.0,
        max_frame: int = MAX_FRAME,
    ) -> None:
        if isinstance(addrs, str):
            addrs = addrs.split(",")
        seeds = [a.strip() for a in addrs if a.strip()]
        if not seeds:
            raise ValueError("at least one store address is needed")
        for a in seeds:
            parse_addr(a)
        if timeout <= 0 or attempt_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.seeds = seeds
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.max_frame = max_frame
        self.cache = RegionCache()
        # store id -> client address, learned from `regions` and NOT_LEADER hints.
        self.store_addrs: dict[int, str] = {}
        self._conns: dict[str, _Connection] = {}
        self._connecting: dict[str, asyncio.Future[_Connection]] = {}
        # addr -> loop time until which it is tried last (its connection failed).
        self._suspect: dict[str, float] = {}
        self._refresh_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._rng = random.Random()
        self.client_id = os.urandom(8)
        self._seq = 0
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection; calls in progress fail with ClientClosed."""
        self._closed = True
        for t in list(self._background):
            t.cancel()
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def next_request_id(self) -> bytes:
        """A request id unique to this client (random client id + sequence number)."""
        self._seq += 1
        return self.client_id + self._seq.to_bytes(8, "big")

    # -- the API --------------------------------------------------------------------------------

    async def get(self, key: bytes, *, timeout: float | None = None) -> bytes | None:
        """The value of `key`, or None (a linearizable read)."""
        key = _check_key(key)

        def build(r: RegionInfo) -> dict[str, Any]:
            return {"op": "get", "region_id": r.id, "epoch": r.epoch, "key": key}

        _, result = await self._run("get", key, build, timeout)
        if result is not None and not isinstance(result, bytes):
            raise ProtocolError(f"get answered {type(result).__name__}")
        return result

    async def put(self, key: bytes, value: bytes, *, timeout: float | None = None) -> None:
        key = _check_key(key)
        data = _check_value(value, "value", optional=False)
        request_id = self.next_request_id()

        def build(r: RegionInfo) -> dict[str, Any]:
            return {"op": "put", "region_id": r.id, "epoch": r.epoch, "key": key,
                    "value": data, "request_id": request_id}

        await self._run("put", key, build, timeout)

    async def delete(self, key: bytes, *, timeout: float | None = None) -> None:
        key = _check_key(key)
        request_id = self.next_request_id()

        def build(r: RegionInfo) -> dict[str, Any]:
            return {"op": "delete", "region_id": r.id, "epoch": r.epoch, "key": key,
                    "request_id": request_id}

        await self._run("delete", key, build, timeout)

    async def cas(
        self, key: bytes, expected: bytes | None, new: bytes | None, *, timeout: float | None = None
    ) -> bool:
        """Set `key` to `new` if it holds `expected` (None: absent; `new` None deletes).
        Returns whether it swapped."""
        key = _check_key(key)
        expected = _check_value(expected, "expected", optional=True)
        new = _check_value(new, "new", optional=True)
        request_id = self.next_request_id()

        def build(r: RegionInfo) -> dict[str, Any]:
            return {"op": "cas", "region_id": r.id, "epoch": r.epoch, "key": key,
                    "expected": expected, "value": new, "request_id": request_id}

        _, result = await self._run("cas", key, build, timeout)
        return bool(result)

    async def scan(
        self,
        start: bytes = b"",
        end: bytes = b"",
        limit: int = 100,
        *,
        timeout: float | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """At most `limit` pairs with `start <= key < end` (`end` b"": no bound), in key
        order, across regions. Each region is read linearizably; the whole scan is not one
        snapshot. `timeout` bounds the whole scan."""
        if not isinstance(start, bytes) or not isinstance(end, bytes):
            raise TypeError("start and end must be bytes")
        if len(start) > MAX_KEY or len(end) > MAX_KEY:
            raise InvalidRequest("INVALID_REQUEST", f"start and end must be at most {MAX_KEY} bytes")
        if limit < 0:
            raise ValueError("limit must be >= 0")
        loop = asyncio.get_running_loop()
        total = self.timeout if timeout is None else timeout
        deadline = loop.time() + total
        out: list[tuple[bytes, bytes]] = []
        cur = start
        while len(out) < limit and (not end or cur < end):
            want = min(limit - len(out), MAX_SCAN_LIMIT)
            lo = cur

            def build(r: RegionInfo, lo: bytes = lo, want: int = want) -> dict[str, Any]:
                return {"op": "scan", "region_id": r.id, "epoch": r.epoch, "start": lo,
                        "end": end, "limit": want}

            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ClientTimeout(f"scan [{start!r}, {end!r}): not done within {total}s")
            region, result = await self._run("scan from", lo, build, remaining)
            if not isinstance(result, list):
                raise ProtocolError(f"scan answered {type(result).__name__}")
            pairs = [(bytes(k), bytes(v)) for k, v in result]
            out.extend(pairs)
            if len(pairs) >= want:
                # Maybe more in this region: continue right after the last key.
                nxt = _successor(pairs[-1][0])
                if nxt is None:
                    break
                cur = nxt
            elif not region.end:
                break
            else:
                cur = region.end
        return out[:limit] if limit else []

    async def ping(self, addr: str | None = None, *, timeout: float | None = None) -> int:
        """Ask one store (default: the first address) for its id."""
        a = addr or self.seeds[0]
        try:
            resp = await self._call(a, {"op": "ping"}, timeout or self.attempt_timeout)
        except _Retry as e:
            raise StoreUnavailable(str(e)) from None
        if not resp.get("ok"):
            raise ProtocolError(f"ping failed: {resp.get('error')}")
        sid: int = resp["result"]["store_id"]
        return sid

    async def refresh_regions(self, *, timeout: float | None = None) -> list[RegionInfo]:
        """Reload the region cache from the stores; returns the cached regions."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout if timeout is None else timeout)
        try:
            await self._refresh(deadline)
        except _Retry as e:
            raise ClientTimeout(f"regions: {e}") from None
        return self.cache.regions()

    # -- the retry loop ---------------------------------------------------------------------

    async def _run(
        self,
        op: str,
        key: bytes,
        build: Callable[[RegionInfo], dict[str, Any]],
        timeout: float | None,
    ) -> tuple[RegionInfo, Any]:
        """Send `build(region of key)` (a new map each time) to the region's leader until it
        succeeds, retrying what can be retried, for at most `timeout` seconds. Returns
        (region, result). `op` names the call in errors (with the key, formatted only then)."""
        loop = asyncio.get_running_loop()
        total = self.timeout if timeout is None else timeout
        deadline = loop.time() + total
        failures = 0  # consecutive attempts that did not move us closer (for the backoff)
        hops = 0  # attempts sent at once to a region a store named (no backoff)
        last = "no store tried yet"
        while True:
            if self._closed:
                raise ClientClosed(f"{op} {key!r}: the client is closed")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ClientTimeout(f"{op} {key!r}: no success within {total:g}s (last error: {last})")
            region = self.cache.lookup(key)
            if region is None:
                try:
                    await self._refresh(deadline)
                except _Retry as e:
                    last = str(e)
                region = self.cache.lookup(key)
                if region is None:
                    if not last.startswith("no store"):
                        last = f"no region for {key!r} known yet"
                    failures += 1
                    await self._backoff(failures, deadline)
                    continue
            addr, store_id = self._route(region, failures)
            try:
                resp = await self._call(addr, build(region), min(remaining, self.attempt_timeout))
            except _Retry as e:
                last = str(e)
                self._suspect[addr] = loop.time() + _SUSPECT_FOR
                if store_id is not None:
                    self.cache.forget_store_leaders(store_id)
                failures += 1
                await self._backoff(failures, deadline)
                continue
            if resp.get("ok"):
                return region, resp.get("result")
            err = resp.get("error")
            if type(err) is not dict:
                raise ProtocolError(f"{op} {key!r}: malformed error {err!r:.200}")
            code = str(err.get("code"))
            message = str(err.get("message", ""))
            last = f"{addr}: {code}: {message}"
            if code == "NOT_LEADER":
                hint = err.get("leader")
                leader = hint.get("store_id") if type(hint) is dict else None
                if type(leader) is int and leader != store_id:
                    hint_addr = hint.get("addr") if type(hint) is dict else None
                    if isinstance(hint_addr, str) and hint_addr:
                        self.store_addrs[leader] = hint_addr
                    self.cache.set_leader(region.id, leader)
                    # A fresh hint: follow it at once (but back off if hints go around).
                    if failures < 3:
                        failures += 1
                        continue
                else:
                    self.cache.set_leader(region.id, None)
            elif code in ("EPOCH_NOT_MATCH", "REGION_NOT_FOUND", "KEY_NOT_IN_REGION"):
                # The layout changed (a split, a merge): the store names the regions that hold
                # the key now, which are newer than what a lagging store may still describe.
                if code == "EPOCH_NOT_MATCH":
                    self._learn_regions(err.get("current_regions"))
                    cached = self.cache.get(region.id)
                    if cached is not None and cached.version == region.version:
                        # The store knows no newer layout than ours: ask everyone.
                        self.cache.invalidate(region.id)
                else:
                    self.cache.invalidate(region.id)
                    self._learn_regions(err.get("current_regions"))
                    if code == "KEY_NOT_IN_REGION":
                        self._learn_regions([err.get("region")])
                now = self.cache.lookup(key)
                if now is not None and (now.id, now.version) != (region.id, region.version) and hops < 8:
                    hops += 1
                    continue  # a region to try that we did not know of: at once
            elif code == "INVALID_REQUEST":
                raise InvalidRequest(code, f"{op} {key!r}: {message}", err)
            elif not (err.get("retryable") or code in RETRYABLE_CODES):
                raise ServerError(code, f"{op} {key!r}: {message}", err)
            failures += 1
            await self._backoff(failures, deadline)

    async def _backoff(self, failures: int, deadline: float) -> None:
        delay = min(_BACKOFF_CAP, _BACKOFF_BASE * (1 << min(failures, 16)))
        delay *= self._rng.uniform(0.5, 1.0)
        loop = asyncio.get_running_loop()
        delay = min(delay, max(0.0, deadline - loop.time()))
        await asyncio.sleep(delay)

    def _addr_of(self, store_id: int) -> str | None:
        return self.store_addrs.get(store_id)

    def _store_of(self, addr: str) -> int | None:
        for sid, a in self.store_addrs.items():
            if a == addr:
                return sid
        return None

    def _all_addrs(self) -> list[str]:
        seen = dict.fromkeys(self.seeds)
        seen.update(dict.fromkeys(self.store_addrs.values()))
        return list(seen)

    def _order(self, addrs: list[str]) -> list[str]:
        """Addresses not suspected first (stable otherwise)."""
        now = asyncio.get_running_loop().time()
        return sorted(addrs, key=lambda a: self._suspect.get(a, 0.0) > now)

    def _route(self, region: RegionInfo, attempt: int) -> tuple[str, int | None]:
        """Where to send a request for `region`: its leader if known, else its replicas in
        turn, else any store. Returns (addr, store id or None)."""
        if region.leader is not None:
            addr = self._addr_of(region.leader)
            if addr is not None:
                return addr, region.leader
        replicas = [a for a in (self._addr_of(s) for s in region.store_ids()) if a is not None]
        candidates = self._order(replicas or self._all_addrs())
        # Among the healthy ones, rotate with the attempt number.
        healthy = [a for a in candidates if self._suspect.get(a, 0.0) <= asyncio.get_running_loop().time()]
        pool = healthy or candidates
        addr = pool[attempt % len(pool)]
        return addr, self._store_of(addr)

    # -- regions ----------------------------------------------------------------------------

    def _learn_regions(self, regions: Any) -> None:
        if type(regions) is not list:
            return
        for d in regions:
            if d is None:
                continue
            try:
                info = region_from_wire(d)
            except ValueError as e:
                _log.warning("ignoring a region: %s", e)
                continue
            self.cache.update(info)

    async def _refresh(self, deadline: float) -> None:
        """Fill the cache from `regions` of the stores (one refresh at a time; callers share
        it). Returns once one store answered; raises _Retry if none did by `deadline`."""
        task = self._refresh_task
        if task is None or task.done():
            task = self._refresh_task = asyncio.get_running_loop().create_task(self._refresh_once())
            # (Its callers may all stop waiting before it fails: its failure is retrieved.)
            self._track(task)
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(asyncio.shield(task), max(0.0, remaining))
        except TimeoutError:
            raise _Retry("no store answered 'regions' in time") from None

    async def _refresh_once(self) -> None:
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._fetch_regions(a)) for a in self._order(self._all_addrs())]
        for t in tasks:
            self._track(t)
        pending: set[asyncio.Task[None]] = set(tasks)
        errors: list[str] = []
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                exc = t.exception()
                if exc is None:
                    return  # the others still merge what they learn when they finish
                errors.append(str(exc))
        raise _Retry("no store answered 'regions': " + "; ".join(errors))

    def _track(self, task: asyncio.Task[Any]) -> None:
        """Keep a background task referenced until it is done. Its failure may be awaited by
        nobody (a refresh returns with the first store's answer, a caller gives up waiting for
        a connection): it is retrieved here, or asyncio logs "Task exception was never
        retrieved" with a traceback."""
        self._background.add(task)
        task.add_done_callback(self._untrack)

    def _untrack(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()

    async def _fetch_regions(self, addr: str) -> None:
        resp = await self._call(addr, {"op": "regions"}, self.attempt_timeout)
        if not resp.get("ok"):
            raise _Retry(f"{addr}: regions: {resp.get('error')}")
        result = resp.get("result")
        if type(result) is not dict:
            raise _Retry(f"{addr}: malformed regions answer")
        stores = result.get("stores")
        if type(stores) is dict:
            for s, a in stores.items():
                if type(s) is int and isinstance(a, str) and a:
                    try:
                        parse_addr(a)
                    except ValueError:
                        continue
                    self.store_addrs[s] = a
        sid = result.get("store_id")
        if type(sid) is int:
            # The address that answered wins over what the store calls itself.
            self.store_addrs[sid] = addr
        self._learn_regions(result.get("regions"))

    # -- connections ------------------------------------------------------------------------

    async def _connection(self, addr: str, timeout: float) -> _Connection:
        conn = self._conns.get(addr)
        if conn is not None and not conn.closed:
            return conn
        fut = self._connecting.get(addr)
        if fut is None:
            fut = asyncio.get_running_loop().create_task(self._connect(addr))
            self._connecting[addr] = fut
            self._track(fut)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise _Retry(f"connecting to {addr} timed out") from None

    async def _connect(self, addr: str) -> _Connection:
        try:
            if self._closed:
                raise ClientClosed("the client is closed")
            host, port = parse_addr(addr)
            loop = asyncio.get_running_loop()
            try:
                _, conn = await loop.create_connection(
                    lambda: _Connection(addr, self.max_frame), host, port
                )
            except OSError as e:
                raise _Retry(f"cannot connect to {addr}: {e.strerror or e}") from None
            if self._closed:
                conn.close()
                raise ClientClosed("the client is closed")
            self._conns[addr] = conn
            return conn
        finally:
            self._connecting.pop(addr, None)

    async def _call(self, addr: str, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request to one store: its response map. Raises _Retry (no connection, the
        connection ended, no answer within `timeout`)."""
        loop = asyncio.get_running_loop()
        t_end = loop.time() + timeout
        conn = await self._connection(addr, timeout)
        fut = conn.request(req)
        # (A timer on our own future, not asyncio.wait_for: that wraps every attempt in
        # another future and callbacks, a good part of the client's CPU per request.)
        timer = loop.call_later(max(0.0, t_end - loop.time()), _expire, fut)
        try:
            return await fut
        except _NoAnswer:
            conn.forget(fut)
            raise _Retry(f"{addr}: no answer within {timeout:.3g}s") from None
        finally:
            timer.cancel()
