"""The admin HTTP API and the Prometheus endpoint of a store (aiohttp, on `admin_addr`).

Read-only: `GET /metrics`, `/health`, `/status`, `/stores`, `/regions`, `/regions/{id}`,
`/openapi.json`. `/stores` (and the `stores` of `/status`) is every store known with its state
as this store sees the cluster: up, down, unreachable (from which stores), or unknown
(`gossip.cluster_view`).
Mutating (bearer token if `admin_token` is set): `DELETE /stores/{id}` (forget a dead store
for good, once no replica here is on it), `POST /regions/{id}/transfer-leader`,
`POST /regions/{id}/peers`, `DELETE /regions/{id}/peers/{store_id}`, `POST
/regions/{id}/split`, `POST /regions/{id}/merge`. A mutating call asked of
a follower is forwarded to the leader's store (its admin address comes from the peer
handshake), at most one hop. Errors are `{"error": {"code", "message", ...}}` with 400 (bad
input), 401 (token), 404 (unknown region or route), 409 (conflicts with the region's epoch or a
change in progress; a merge of regions not adjacent or not on the same stores, or rolled back),
503 (no leader known, shutting down), 504 (no answer in time; for a new voter, its learner did
not catch up in time and stays a learner). A new voter is added as a learner and promoted once
caught up (`multiraft/store/promotion.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from metrics import exposition
from multiraft.engine import CF_KV
from multiraft.proto.serverpb_pb2 import Learner, Region, RegionEpoch, Voter
from multiraft.store.errors import (
    CatchUpTimeout,
    EpochNotMatch,
    InvalidRequest,
    MergeRefused,
    MergeRolledBack,
    NotLeader,
    RegionBusy,
    RegionNotFound,
    StoreError,
)

from .config import parse_addr
from .openapi import OPENAPI

if TYPE_CHECKING:
    from multiraft.store.peer import Callback, Peer

    from .node import StoreNode

__all__ = ["AdminServer", "region_json", "FORWARDED_HEADER"]

_log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Multiraft-Forwarded"
# How long a membership change may take to apply on the leader before we answer 504.
CHANGE_TIMEOUT = 15.0
# How long a new voter's learner may take to catch up (a request's "timeout" may say), and the
# longest a request may ask for.
CATCH_UP_TIMEOUT = 60.0
MAX_TIMEOUT = 3600.0
# Scanning a region to estimate its size stops after this many pairs (a lower bound past it).
_SIZE_SCAN_LIMIT = 20_000
# Ids and epochs are unsigned 64-bit integers (protobuf uint64).
_U64 = 1 << 64
_ROLES = {Voter: "voter", Learner: "learner", 2: "incoming_voter", 3: "demoting_voter"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra

    def response(self) -> web.Response:
        body: dict[str, Any] = {"code": self.code, "message": str(self), **self.extra}
        return web.json_response({"error": body}, status=self.status)


def _store_error(e: StoreError) -> ApiError:
    if isinstance(e, CatchUpTimeout):
        return ApiError(504, e.code, str(e))
    if isinstance(e, RegionNotFound):
        return ApiError(404, e.code, str(e))
    if isinstance(e, InvalidRequest):
        return ApiError(400, e.code, str(e))
    if isinstance(e, (RegionBusy, EpochNotMatch, MergeRefused, MergeRolledBack)):
        return ApiError(409, e.code, str(e))
    if isinstance(e, NotLeader):
        extra: dict[str, Any] = {}
        if e.leader is not None:
            extra["leader"] = {"peer_id": e.leader.id, "store_id": e.leader.store_id}
        return ApiError(503, e.code, str(e), **extra)
    if e.retryable:
        return ApiError(503, e.code, str(e))
    return ApiError(500, e.code, str(e))


def region_json(region: Region, peer: Peer | None, hibernated: bool, size: int) -> dict[str, Any]:
    """A region as the API shows it (keys in hex). On the leader's store each peer also has
    `matched`, the last log index the leader knows it holds (the leader's own: its last
    index); elsewhere `matched` is null."""
    leader = peer.leader_meta() if peer is not None else None
    matched: dict[int, int] = {}
    if peer is not None and peer.is_leader():
        matched = peer.node.matched_indexes()
        matched[peer.meta.id] = peer.node.last_index()
    return {
        "id": region.id,
        "start_key": region.start_key.hex(),
        "end_key": region.end_key.hex(),
        "epoch": {
            "conf_ver": region.region_epoch.conf_ver,
            "version": region.region_epoch.version,
        },
        "peers": [
            {
                "id": p.id,
                "store_id": p.store_id,
                "role": _ROLES.get(p.role, str(p.role)),
                "matched": matched.get(p.id) if matched else None,
            }
            for p in region.peers
        ],
        "leader": (
            {"peer_id": leader.id, "store_id": leader.store_id} if leader is not None else None
        ),
        "applied_index": peer.applied_index if peer is not None else 0,
        "approximate_size": size,
        "hibernated": hibernated,
    }


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return e.response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(e.status, "HTTP_ERROR")
        return ApiError(e.status, code, e.reason).response()


class AdminServer:
    """The admin API of `node` (see the module docstring)."""

    def __init__(self, node: StoreNode) -> None:
        self.node = node
        self.app = self.make_app()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        # (region id, applied index) -> approximate size, so that polling stays cheap.
        self._sizes: dict[int, tuple[int, int]] = {}

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[_errors], client_max_size=1 << 16)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/health", self.health)
        app.router.add_get("/status", self.status)
        app.router.add_get("/stores", self.stores)
        app.router.add_delete("/stores/{store_id}", self.remove_store)
        app.router.add_get("/regions", self.regions)
        app.router.add_get("/regions/{id}", self.region)
        app.router.add_post("/regions/{id}/transfer-leader", self.transfer_leader)
        app.router.add_post("/regions/{id}/peers", self.add_peer)
        app.router.add_delete("/regions/{id}/peers/{store_id}", self.remove_peer)
        app.router.add_post("/regions/{id}/split", self.split)
        app.router.add_post("/regions/{id}/merge", self.merge)
        app.router.add_get("/openapi.json", self.openapi)
        return app

    async def start(self, addr: str) -> int:
        """Listen on `addr`; returns the port."""
        host, port = parse_addr(addr, "admin_addr")
        runner = self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0]
        return int(bound[1])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- read-only ---------------------------------------------------------------------------

    async def metrics(self, request: web.Request) -> web.Response:
        self.node.flush_metrics()
        body = exposition(self.node.metrics.registry)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def health(self, request: web.Request) -> web.Response:
        node = self.node
        if node.stopping:
            raise ApiError(503, "STOPPING", "the store is shutting down")
        return web.json_response({"status": "ok", "store_id": node.config.store_id})

    async def status(self, request: web.Request) -> web.Response:
        node = self.node
        store = node.store
        peers = store.peers
        hibernated = len(peers) - store.awake_regions()
        leaderless = sum(1 for p in peers.values() if p.node.leader_id() == 0)
        c = node.config
        return web.json_response(
            {
                "store_id": c.store_id,
                "cluster_id": c.cluster_id,
                "regions": len(peers),
                "leaders": store.leaders(),
                "hibernated": hibernated,
                "without_leader": leaderless,
                "addresses": {
                    "peer": node.peer_addr,
                    "client": node.client_addr,
                    "admin": node.admin_addr,
                },
                "stores": {str(s["store_id"]): s for s in self._stores_json()},
                "uptime_seconds": round(node.uptime(), 3),
                "stopping": node.stopping,
            }
        )

    async def stores(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"store_id": self.node.config.store_id, "stores": self._stores_json()}
        )

    async def remove_store(self, request: web.Request) -> web.Response:
        """Forget a store that is gone for good (gossiped to every store). Only a store that
        no running store hears from, and that no region on this store has a replica on."""
        self._auth(request)
        sid = self._store_id_param(request)
        node = self.node
        me = node.config.store_id
        if sid == me:
            raise ApiError(400, "BAD_REQUEST", f"store {sid} is the store asked: ask another one")
        if sid not in node.addrs.removed:
            view = {s.store_id: s for s in node.cluster_view()}
            if sid not in view:
                raise ApiError(404, "STORE_NOT_FOUND", f"store {sid} is not known here")
            if view[sid].state != "down":
                raise ApiError(
                    409,
                    "STORE_NOT_DOWN",
                    f"store {sid} is {view[sid].state} as store {me} sees the cluster: only a "
                    "store that no running store hears from can be removed",
                )
            holding = sorted(
                rid
                for rid, peer in node.store.peers.items()
                if any(p.store_id == sid for p in peer.region.peers)
            )
            if holding:
                raise ApiError(
                    409,
                    "STORE_HAS_REPLICAS",
                    f"regions {holding} still have a replica on store {sid}: move them first "
                    f"(add-peer R NEW, remove-peer R {sid})",
                )
            node.remove_store(sid)
        return web.json_response({"store_id": me, "stores": self._stores_json()})

    def _stores_json(self) -> list[dict[str, Any]]:
        node = self.node
        addrs = node.addrs
        now = time.time()
        out = []
        for st in node.cluster_view():
            sid = st.store_id
            out.append(
                {
                    "store_id": sid,
                    "state": st.state,
                    "peer_addr": addrs.peer.get(sid, ""),
                    "client_addr": addrs.client.get(sid, ""),
                    "admin_addr": addrs.admin.get(sid, ""),
                    "last_heard_seconds_ago": (
                        round(st.last_heard_ago, 1) if st.last_heard_ago is not None else None
                    ),
                    "down_since": (
                        round(now - st.silent_for, 1) if st.silent_for is not None else None
                    ),
                    "unreachable_from": list(st.unreachable_from),
                }
            )
        return out

    def _region_json(self, peer: Peer) -> dict[str, Any]:
        store = self.node.store
        rid = peer.region.id
        return region_json(peer.region, peer, store.is_hibernated(rid), self._size(peer))

    def _size(self, peer: Peer) -> int:
        if peer.approx_bytes >= 0:
            return peer.approx_bytes  # counted once, kept up to date by the apply loop
        rid, applied = peer.region.id, peer.applied_index
        cached = self._sizes.get(rid)
        if cached is not None and cached[0] == applied:
            return cached[1]
        if not peer.initialized:
            return 0
        region = peer.region
        pairs = self.node.store.engine.scan(
            CF_KV, region.start_key, region.end_key or None, _SIZE_SCAN_LIMIT
        )
        size = sum(len(k) + len(v) for k, v in pairs)
        self._sizes[rid] = (applied, size)
        return size

    async def regions(self, request: web.Request) -> web.Response:
        peers = sorted(self.node.store.peers.values(), key=lambda p: p.region.start_key)
        return web.json_response({"regions": [self._region_json(p) for p in peers]})

    async def region(self, request: web.Request) -> web.Response:
        return web.json_response(self._region_json(self._peer(request)))

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    # -- mutating ----------------------------------------------------------------------------

    async def transfer_leader(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        body = await self._body(request)
        to_store = self._int_field(body, "store_id")
        peer = self._peer(request)
        store = self.node.store
        forwarded, _ = await self._leader_call(
            request, body, peer, lambda cb: store.transfer_leader(peer.region.id, to_store, cb)
        )
        if forwarded is not None:
            return forwarded
        return web.json_response(
            {"status": "started", "to_store": to_store, "region": self._region_json(peer)},
            status=202,
        )

    async def add_peer(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        body = await self._body(request)
        store_id = self._int_field(body, "store_id")
        role = body.get("role", "voter")
        if role not in ("voter", "learner"):
            raise ApiError(400, "BAD_REQUEST", f"role must be 'voter' or 'learner', got {role!r}")
        timeout = self._timeout_field(body, CATCH_UP_TIMEOUT if role == "voter" else CHANGE_TIMEOUT)
        if role == "learner":
            return await self._change(request, body, "add_learner", store_id, timeout)
        # A voter joins as a learner and is promoted once caught up (store/promotion.py);
        # the store gives up after `timeout` and the learner stays.
        peer = self._peer(request)
        store = self.node.store
        ticks = max(1, math.ceil(timeout * 1000 / self.node.config.base_tick_ms))
        rid = peer.region.id
        forwarded, region = await self._leader_call(
            request,
            body,
            peer,
            lambda cb: store.change_peer(rid, "add_voter", store_id, cb, catch_up_ticks=ticks),
            # The store's own deadline answers first; past this, give up here.
            timeout + 5,
            on_timeout=lambda: store.cancel_promotion(rid, store_id),
        )
        if forwarded is not None:
            return forwarded
        return web.json_response({"region": self._result_json(region)})

    async def remove_peer(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        store_id = self._store_id_param(request)
        return await self._change(request, None, "remove", store_id, CHANGE_TIMEOUT)

    async def _change(
        self,
        request: web.Request,
        body: dict[str, Any] | None,
        op: str,
        store_id: int,
        timeout: float,
    ) -> web.StreamResponse:
        peer = self._peer(request)
        store = self.node.store
        forwarded, region = await self._leader_call(
            request,
            body,
            peer,
            lambda cb: store.change_peer(peer.region.id, op, store_id, cb),
            timeout,
        )
        if forwarded is not None:
            return forwarded
        return web.json_response({"region": self._result_json(region)})

    async def split(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        body = await self._body(request)
        keys = body.get("keys")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise ApiError(400, "BAD_REQUEST", "'keys' must be a non-empty list of hex strings")
        try:
            split_keys = [bytes.fromhex(k) for k in keys]
        except ValueError as e:
            raise ApiError(400, "BAD_REQUEST", f"'keys' must be hex strings: {e}") from None
        epoch = self._epoch_field(body)
        peer = self._peer(request)
        store = self.node.store
        forwarded, regions = await self._leader_call(
            request,
            body,
            peer,
            lambda cb: store.split(peer.region.id, split_keys, cb, epoch=epoch),
        )
        if forwarded is not None:
            return forwarded
        return web.json_response({"regions": [self._result_json(r) for r in regions]})

    async def merge(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        body = await self._body(request)
        target = self._int_field(body, "target")
        peer = self._peer(request)
        store = self.node.store
        forwarded, region = await self._leader_call(
            request, body, peer, lambda cb: store.merge(peer.region.id, target, cb)
        )
        if forwarded is not None:
            return forwarded
        return web.json_response({"region": self._result_json(region)})

    def _result_json(self, region: Region) -> dict[str, Any]:
        """A region a change returned, with what this store knows of it now."""
        store = self.node.store
        cur = store.peers.get(region.id)
        size = self._size(cur) if cur is not None else 0
        return region_json(region, cur, store.is_hibernated(region.id), size)

    async def _leader_call(
        self,
        request: web.Request,
        body: dict[str, Any] | None,
        peer: Peer,
        start: Callable[[Callback], None],
        timeout: float = CHANGE_TIMEOUT,
        on_timeout: Callable[[], object] | None = None,
    ) -> tuple[web.StreamResponse | None, Any]:
        """Run `start(callback)` if this store leads the region and wait for the callback
        (504 after `timeout` seconds, once `on_timeout()` ran): `(None, result)`; else
        forward the request to the leader's store: `(response, None)`."""
        if not peer.is_leader():
            return await self._forward(request, peer, body, timeout), None
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def callback(result: Any, err: StoreError | None) -> None:
            if done.done():
                return
            if err is not None:
                done.set_exception(err)
            else:
                done.set_result(result)

        try:
            start(callback)
        except NotLeader:
            return await self._forward(request, peer, body, timeout), None
        except StoreError as e:
            raise _store_error(e) from None
        self.node.kick()
        try:
            return None, await asyncio.wait_for(done, timeout)
        except TimeoutError:
            if on_timeout is not None:
                on_timeout()
                self.node.kick()
            raise ApiError(
                504, "TIMEOUT", f"not applied within {timeout:.0f}s; check the region"
            ) from None
        except StoreError as e:
            raise _store_error(e) from None

    async def _forward(
        self, request: web.Request, peer: Peer, body: dict[str, Any] | None, timeout: float
    ) -> web.StreamResponse:
        """Ask the leader's store to do it (one hop at most)."""
        leader = peer.leader_meta()
        hint: dict[str, Any] = {}
        if leader is not None:
            hint["leader"] = {"peer_id": leader.id, "store_id": leader.store_id}
        rid = peer.region.id
        if leader is None or leader.store_id == self.node.config.store_id:
            raise ApiError(503, "NOT_LEADER", f"region {rid}: no leader known yet", **hint)
        if request.headers.get(FORWARDED_HEADER):
            raise ApiError(
                503, "NOT_LEADER", f"region {rid}: not the leader here either (forwarded)", **hint
            )
        addr = self.node.addrs.admin.get(leader.store_id)
        if not addr:
            raise ApiError(
                503,
                "NOT_LEADER",
                f"region {rid}: the leader is on store {leader.store_id}, address unknown",
                **hint,
            )
        headers = {FORWARDED_HEADER: str(self.node.config.store_id)}
        auth = request.headers.get("Authorization")
        if auth:
            headers["Authorization"] = auth
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = f"http://{addr}{request.rel_url}"
        try:
            async with self._session.request(
                request.method,
                url,
                json=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout + 10),
            ) as resp:
                data = await resp.read()
                return web.Response(
                    body=data,
                    status=resp.status,
                    content_type=resp.content_type or "application/json",
                )
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ApiError(
                503,
                "FORWARD_FAILED",
                f"region {rid}: forwarding to store {leader.store_id} at {addr} failed: {e!r}",
                **hint,
            ) from None

    # -- request parsing ---------------------------------------------------------------------

    def _auth(self, request: web.Request) -> None:
        token = self.node.config.admin_token
        if not token:
            return
        got = request.headers.get("Authorization", "")
        if got != f"Bearer {token}":
            raise ApiError(401, "UNAUTHORIZED", "a valid bearer token is required")

    @staticmethod
    def _store_id_param(request: web.Request) -> int:
        return _path_id(request, "store_id", "store id")

    def _peer(self, request: web.Request) -> Peer:
        rid = _path_id(request, "id", "region id")
        peer = self.node.store.peers.get(rid)
        if peer is None:
            raise ApiError(404, "REGION_NOT_FOUND", f"region {rid} not found on this store")
        return peer

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.read() or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, "BAD_REQUEST", f"the body is not valid JSON: {e}") from None
        except RecursionError:
            raise ApiError(400, "BAD_REQUEST", "the body is nested too deeply") from None
        if not isinstance(body, dict):
            raise ApiError(400, "BAD_REQUEST", "the body must be a JSON object")
        return body

    @staticmethod
    def _epoch_field(body: dict[str, Any]) -> RegionEpoch | None:
        raw = body.get("epoch")
        if raw is None:
            return None
        if not isinstance(raw, dict) or not all(
            isinstance(raw.get(k), int) and not isinstance(raw.get(k), bool) and 0 <= raw[k] < _U64
            for k in ("conf_ver", "version")
        ):
            raise ApiError(
                400, "BAD_REQUEST", "'epoch' must be {\"conf_ver\": int, \"version\": int}"
            )
        return RegionEpoch(conf_ver=raw["conf_ver"], version=raw["version"])

    @staticmethod
    def _timeout_field(body: dict[str, Any], default: float) -> float:
        v = body.get("timeout", default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= MAX_TIMEOUT:
            raise ApiError(
                400,
                "BAD_REQUEST",
                f"'timeout' must be a number of seconds in (0, {MAX_TIMEOUT:.0f}], got {v!r}",
            )
        return float(v)

    @staticmethod
    def _int_field(body: dict[str, Any], name: str) -> int:
        v = body.get(name)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < _U64:
            raise ApiError(400, "BAD_REQUEST", f"{name!r} must be a positive integer, got {v!r:.40}")
        return v


def _path_id(request: web.Request, name: str, what: str) -> int:
    """An id in the path: ASCII digits of a positive 64-bit integer (at most 20 of them: a
    longer text is refused before `int()` gets to see it)."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20) or not 0 < int(raw) < _U64:
        raise ApiError(400, "BAD_REQUEST", f"{what} must be a positive integer, got {raw!r:.40}")
    return int(raw)
