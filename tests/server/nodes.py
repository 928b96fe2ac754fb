"""In-process store nodes for the server tests: several `StoreNode`s on one event loop, on free
loopback ports, with short ticks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from multiraft.server.config import load_config
from multiraft.server.localcluster import store_ports
from multiraft.server.node import StoreNode
from tests.ports import free_test_base_port


def node_config(
    base: int, sid: int, stores: int, data_dir: Path, **extra: Any
) -> dict[str, Any]:
    def port(s: int, j: int) -> int:
        return store_ports(base, s)[j]

    return {
        "store_id": sid,
        "data_dir": str(data_dir / f"store-{sid}"),
        "client_addr": f"127.0.0.1:{port(sid, 0)}",
        "peer_addr": f"127.0.0.1:{port(sid, 1)}",
        "admin_addr": f"127.0.0.1:{port(sid, 2)}",
        "initial_cluster": ",".join(f"{s}=127.0.0.1:{port(s, 1)}" for s in range(1, stores + 1)),
        "base_tick_ms": 20,
        "fsync": False,
        **extra,
    }


class Nodes:
    """`stores` nodes bootstrapped together; `join()` adds one more."""

    def __init__(self, tmp: Path, stores: int, **extra: Any) -> None:
        self.tmp = tmp
        self.n = stores
        self.base = free_test_base_port(stores + 2)
        self.extra = extra
        self.nodes: dict[int, StoreNode] = {}

    async def start(self, sid: int, **extra: Any) -> StoreNode:
        cfg = load_config(None, node_config(self.base, sid, self.n, self.tmp, **self.extra, **extra))
        node = StoreNode(cfg)
        await node.start()
        self.nodes[sid] = node
        return node

    async def start_all(self) -> None:
        for sid in range(1, self.n + 1):
            await self.start(sid)

    async def join(self) -> StoreNode:
        sid = max(self.nodes) + 1
        return await self.start(sid, join=True)

    async def close(self) -> None:
        for node in self.nodes.values():
            if not node.stopping:
                await node.stop()

    def url(self, sid: int, path: str) -> str:
        return f"http://{self.nodes[sid].admin_addr}{path}"

    async def leaders(self) -> dict[int, int]:
        """Region -> leader store, as the leaders themselves see it."""
        out: dict[int, int] = {}
        for sid, node in self.nodes.items():
            if node.stopping:
                continue
            for rid, peer in node.store.peers.items():
                if peer.is_leader():
                    out[rid] = sid
        return out


async def until(cond: Callable[[], Awaitable[bool] | bool], timeout: float = 20.0) -> None:
    """Poll `cond` until true (no timing assertion: the timeout only bounds a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = cond()
        if not isinstance(r, bool):
            r = await r
        if r:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def http(
    method: str, url: str, *, json: Any = None, data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(
        method, url, json=json, data=data, headers=headers
    ) as resp:
        body = await resp.read()
        if resp.content_type == "application/json":
            import json as _json

            return resp.status, _json.loads(body)
        return resp.status, body.decode()
