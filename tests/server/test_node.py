"""`StoreNode` in-process: kicked rounds serve writes and reads, a graceful stop answers every
waiting request, a restart recovers the data, a data dir of another store is a ConfigError, and
stores learn each other's addresses from the handshakes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from multiraft.server.config import ConfigError, load_config
from multiraft.server.node import StoreNode
from multiraft.store.cmd import OP_PUT, Command, Op

from .nodes import Nodes, node_config, until


async def _put(node: StoreNode, key: bytes, value: bytes, req: bytes) -> Any:
    store = node.store
    region = store.region_for_key(key)
    assert region is not None
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def cb(result: Any, err: Any) -> None:
        if not fut.done():
            fut.set_result((result, err))

    store.propose(Command(region.id, 0, 0, [Op(OP_PUT, key, value=value)], req), cb)
    node.kick()
    return await fut


async def _get(node: StoreNode, key: bytes) -> Any:
    store = node.store
    region = store.region_for_key(key)
    assert region is not None
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    store.get(region.id, key, lambda v, e: fut.done() or fut.set_result((v, e)))
    node.kick()
    return await fut


def test_writes_stop_restart_recover(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 1, initial_regions=4)
        node = await nodes.start(1)
        await until(lambda: node.store.leaders() == 4)
        keys = [bytes([b]) + b"key" for b in range(0, 256, 16)]
        for i, k in enumerate(keys):
            _, err = await _put(node, k, b"v%d" % i, b"r%d" % i)
            assert err is None
        # Proposals still in flight when the stop begins are answered (applied or failed).
        pending = [
            asyncio.ensure_future(_put(node, b"\x01late%d" % i, b"x", b"late%d" % i))
            for i in range(20)
        ]
        await asyncio.sleep(0)
        assert await node.stop() == 0
        answers = await asyncio.wait_for(asyncio.gather(*pending), 10)
        assert len(answers) == 20
        node = await nodes.start(1)
        try:
            await until(lambda: node.store.leaders() == 4)
            for i, k in enumerate(keys):
                assert await _get(node, k) == (b"v%d" % i, None)
        finally:
            await node.stop()

    asyncio.run(main())


def test_data_dir_of_another_store(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 1)
        node = await nodes.start(1)
        await node.stop()
        cfg = node_config(nodes.base, 1, 1, tmp_path)
        for other in ({"cluster_id": 9}, {"store_id": 2, "initial_cluster": ""}):
            bad = StoreNode(load_config(None, {**cfg, **other}))
            with pytest.raises(ConfigError, match="belongs to"):
                await bad.start()

    asyncio.run(main())


def test_stores_learn_addresses_from_handshakes(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 3)
        await nodes.start_all()
        try:
            def learned() -> bool:
                return all(
                    set(n.addrs.admin) == {1, 2, 3} and set(n.addrs.peer) == {1, 2, 3}
                    for n in nodes.nodes.values()
                )

            await until(learned)
            n1 = nodes.nodes[1]
            assert n1.addrs.admin[2] == nodes.nodes[2].admin_addr
            # Kept in the data dir for the next start.
            assert (Path(n1.config.data_dir) / "stores.json").exists()
        finally:
            await nodes.close()

    asyncio.run(main())
