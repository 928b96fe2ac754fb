"""A store that joins through one running store (`--join --initial-cluster <that store>`)
becomes known to every store and learns every store (gossip.py), keeps what it learned across
a restart, and can then receive a replica from a region whose leader is elsewhere."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from multiraft.client import AsyncClient

from .nodes import Nodes, http, until


def test_a_store_joining_through_one_store_is_known_to_all(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 3, initial_regions=2)
        await nodes.start_all()
        try:
            leaders: dict[int, int] = {}

            async def elected() -> bool:
                leaders.update(await nodes.leaders())
                return len(leaders) == 2

            await until(elected)
            async with AsyncClient([nodes.nodes[1].client_addr], timeout=20) as c:
                for i in range(20):
                    await c.put(b"\x00k%02d" % i, b"v%d" % i)
            # Region 1's leader is not on store 1, the store the new one joins through.
            if leaders[1] == 1:
                st, body = await http(
                    "POST", nodes.url(1, "/regions/1/transfer-leader"), json={"store_id": 2}
                )
                assert st == 202, body
                await until(lambda: nodes.nodes[2].store.peers[1].is_leader())
            n4 = await nodes.start(4, join=True, initial_cluster=f"1={nodes.nodes[1].peer_addr}")
            everyone = {1, 2, 3, 4}

            def known_everywhere() -> bool:
                return all(
                    set(n.addrs.peer) == everyone and set(n.addrs.admin) == everyone
                    for n in nodes.nodes.values()
                )

            await until(known_everywhere)
            assert n4.addrs.admin[3] == nodes.nodes[3].admin_addr
            saved = json.loads((Path(n4.config.data_dir) / "stores.json").read_text())
            assert {"1", "2", "3"} <= set(saved)
            # Every store watches the new one (store heartbeats), though no region is shared.
            await until(lambda: all(
                any(s.store_id == 4 and s.heard for s in nodes.nodes[i].store.store_liveness())
                for i in (1, 2, 3)
            ))

            # A voter on store 4, asked of store 1, for a region led elsewhere.
            st, body = await http(
                "POST", nodes.url(1, "/regions/1/peers"), json={"store_id": 4, "role": "voter"}
            )
            assert st == 200, body
            assert {"store_id": 4, "role": "voter"} in [
                {"store_id": p["store_id"], "role": p["role"]} for p in body["region"]["peers"]
            ]
            peer4 = n4.store.peers[1]
            assert peer4.initialized

            # Restarted with only store 1 configured, store 4 still knows every store.
            await n4.stop()
            n4 = await nodes.start(4, join=True, initial_cluster=f"1={nodes.nodes[1].peer_addr}")
            assert set(n4.addrs.peer) == everyone
        finally:
            await nodes.close()

    asyncio.run(main())
