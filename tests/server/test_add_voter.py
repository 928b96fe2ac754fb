"""`POST /regions/{id}/peers` with role voter: a learner first, promoted once caught up; a
learner that cannot catch up in time stays a learner (504 CATCH_UP_TIMEOUT), the voters do
not change; role learner adds a learner only."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .nodes import Nodes, http, until


def _roles(region: dict[str, object]) -> dict[int, str]:
    return {p["store_id"]: p["role"] for p in region["peers"]}  # type: ignore[attr-defined, index]


def test_a_voter_on_a_store_that_is_down_stays_a_learner(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 3, initial_regions=2)
        await nodes.start_all()
        try:
            await until(lambda: any(n.store.leaders() for n in nodes.nodes.values()))
            n4 = await nodes.join()
            await until(lambda: all(4 in n.addrs.peer for n in nodes.nodes.values()))
            await n4.stop()  # known to all, but down
            url = nodes.url(1, "/regions/1/peers")
            st, body = await http("POST", url, json={"store_id": 4, "timeout": 0})
            assert st == 400 and "timeout" in body["error"]["message"]
            st, body = await http("POST", url, json={"store_id": 4, "role": "voter", "timeout": 1})
            assert st == 504, body
            assert body["error"]["code"] == "CATCH_UP_TIMEOUT"
            assert "stays a learner" in body["error"]["message"]
            st, region = await http("GET", nodes.url(1, "/regions/1"))
            roles = _roles(region)
            assert roles[4] == "learner"
            assert sorted(s for s, r in roles.items() if r == "voter") == [1, 2, 3]

            # Back up: asking again promotes the learner once it caught up.
            n4 = await nodes.start(4, join=True)
            st, body = await http("POST", url, json={"store_id": 4, "role": "voter"})
            assert st == 200, body
            assert _roles(body["region"])[4] == "voter"
            assert n4.store.peers[1].initialized

            st, body = await http("POST", url, json={"store_id": 4})
            assert st == 400 and body["error"]["code"] == "INVALID_REQUEST"  # a voter already

            # Role learner: a learner only, never promoted by itself.
            st, body = await http(
                "POST", nodes.url(2, "/regions/2/peers"), json={"store_id": 4, "role": "learner"}
            )
            assert st == 200, body
            assert _roles(body["region"])[4] == "learner"
            await until(lambda: 2 in n4.store.peers and n4.store.peers[2].initialized)
            await until(lambda: n4.store.peers[2].applied_index >= max(
                n.store.peers[2].applied_index for n in nodes.nodes.values() if n is not n4
            ))
            st, region = await http("GET", nodes.url(2, "/regions/2"))
            assert _roles(region)[4] == "learner"
        finally:
            await nodes.close()

    asyncio.run(main())
