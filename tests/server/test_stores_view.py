"""`GET /stores`, the `stores` of `GET /status` and `multiraft_store_up`: a stopped store is
down, from every store that is up; it is up again once back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .nodes import Nodes, http, until


def _store_up(text: str) -> dict[str, float]:
    for fam in text_string_to_metric_families(text):
        if fam.name == "multiraft_store_up":
            return {s.labels["store"]: s.value for s in fam.samples}
    return {}


def test_a_stopped_store_is_down_and_up_again_once_back(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 3)
        await nodes.start_all()
        try:
            async def stores(sid: int) -> dict[int, dict[str, Any]]:
                st, body = await http("GET", nodes.url(sid, "/stores"))
                assert st == 200 and body["store_id"] == sid
                return {s["store_id"]: s for s in body["stores"]}

            async def all_up() -> bool:
                view = await stores(1)
                return sorted(view) == [1, 2, 3] and all(
                    s["state"] == "up" and s["last_heard_seconds_ago"] is not None
                    for s in view.values()
                )

            await until(all_up)
            view = await stores(1)
            assert view[2]["peer_addr"] == nodes.nodes[2].peer_addr
            assert view[2]["last_heard_seconds_ago"] is not None and view[2]["down_since"] is None
            assert view[1]["last_heard_seconds_ago"] == 0 and view[3]["unreachable_from"] == []

            await nodes.nodes[3].stop()

            async def three_down() -> bool:
                view = await stores(1)
                return view[3]["state"] == "down" and view[3]["unreachable_from"] == [1, 2]

            await until(three_down)
            view = await stores(1)
            assert view[3]["down_since"] is not None and view[2]["state"] == "up"
            st, status = await http("GET", nodes.url(2, "/status"))
            assert status["stores"]["3"]["state"] == "down"
            assert status["stores"]["1"]["state"] == "up"
            st, text = await http("GET", nodes.url(1, "/metrics"))
            assert _store_up(text) == {"2": 1.0, "3": 0.0}

            await nodes.start(3)
            await until(all_up)
            st, text = await http("GET", nodes.url(1, "/metrics"))
            assert _store_up(text) == {"2": 1.0, "3": 1.0}
        finally:
            await nodes.close()

    asyncio.run(main())


def test_a_dead_store_is_removed_once_its_replicas_moved(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 3)
        await nodes.start_all()
        try:
            await until(lambda: any(n.store.leaders() for n in nodes.nodes.values()))
            n4 = await nodes.join()
            await until(lambda: all(4 in n.addrs.peer for n in nodes.nodes.values()))
            st, body = await http("POST", nodes.url(1, "/regions/1/peers"), json={"store_id": 4})
            assert st == 200, body
            st, body = await http("DELETE", nodes.url(1, "/stores/3"))
            assert st == 409 and body["error"]["code"] == "STORE_NOT_DOWN"
            await nodes.nodes[3].stop()

            async def down() -> bool:
                st, body = await http("GET", nodes.url(1, "/stores"))
                return any(s["store_id"] == 3 and s["state"] == "down" for s in body["stores"])

            await until(down)
            for path, status, code in (
                ("/stores/3", 409, "STORE_HAS_REPLICAS"),
                ("/stores/1", 400, "BAD_REQUEST"),
                ("/stores/99", 404, "STORE_NOT_FOUND"),
                ("/stores/x", 400, "BAD_REQUEST"),
            ):
                st, body = await http("DELETE", nodes.url(1, path))
                assert (st, body["error"]["code"]) == (status, code), (path, body)
            # (Region 1 may have been led from store 3: wait for its new leader.)
            await until(lambda: any(
                n.store.peers[1].is_leader() for n in (nodes.nodes[1], nodes.nodes[2], n4)
                if 1 in n.store.peers
            ))
            st, body = await http("DELETE", nodes.url(2, "/regions/1/peers/3"))
            assert st == 200, body
            st, body = await http("DELETE", nodes.url(1, "/stores/3"))
            assert st == 200, body
            assert 3 not in [s["store_id"] for s in body["stores"]]
            live = [nodes.nodes[s] for s in (1, 2, 4)]
            await until(lambda: all(
                3 in n.addrs.removed and all(s.store_id != 3 for s in n.store.store_liveness())
                for n in live
            ))
            st, text = await http("GET", nodes.url(2, "/metrics"))
            assert "3" not in _store_up(text)
            st, body = await http("DELETE", nodes.url(4, "/stores/3"))
            assert st == 200  # idempotent
            # Started again with its old id, it is refused.
            n1 = nodes.nodes[1]
            rejects = n1.transport.stats.handshake_rejects
            await nodes.start(3)
            await until(lambda: n1.transport.stats.handshake_rejects > rejects)
            assert 3 not in n1.addrs.ids()
            assert n4.store.peers[1].initialized
        finally:
            await nodes.close()

    asyncio.run(main())
