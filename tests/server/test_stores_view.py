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
                return sorted(view) == [1, 2, 3] and all(s["state"] == "up" for s in view.values())

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
