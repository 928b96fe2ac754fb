"""The admin HTTP API of in-process store nodes: shapes, errors, token, forwarding to the
leader, membership changes, the OpenAPI document and /metrics."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from multiraft.client import AsyncClient
from multiraft.server.admin import AdminServer
from multiraft.server.openapi import OPENAPI

from .nodes import Nodes, http, until

REGION_KEYS = {
    "id", "start_key", "end_key", "epoch", "peers", "leader", "applied_index",
    "approximate_size", "hibernated",
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_single_store_reads(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 1, initial_regions=3)
        await nodes.start_all()
        try:
            await until(lambda: len(nodes.nodes[1].store.peers) == 3 and nodes.nodes[1].store.leaders() == 3)
            st, body = await http("GET", nodes.url(1, "/health"))
            assert st == 200 and body == {"status": "ok", "store_id": 1}
            st, s = await http("GET", nodes.url(1, "/status"))
            assert st == 200
            assert (s["store_id"], s["cluster_id"], s["regions"], s["leaders"]) == (1, 1, 3, 3)
            assert s["addresses"]["admin"] == nodes.nodes[1].admin_addr
            st, body = await http("GET", nodes.url(1, "/regions"))
            assert st == 200 and set(body) == {"regions"}
            regions = body["regions"]
            assert [r["id"] for r in regions] == [1, 2, 3]
            for r in regions:
                assert set(r) == REGION_KEYS
                assert set(r["epoch"]) == {"conf_ver", "version"}
                assert r["leader"] == {"peer_id": r["peers"][0]["id"], "store_id": 1}
                [p] = r["peers"]
                assert {k: p[k] for k in ("store_id", "role")} == {"store_id": 1, "role": "voter"}
                # The leader's store shows how far each replica's log goes (its own: all).
                assert p["matched"] >= r["applied_index"] > 0
                assert isinstance(r["hibernated"], bool)
            # Keys are hex; the ranges tile the key space.
            assert regions[0]["start_key"] == "" and regions[-1]["end_key"] == ""
            assert regions[0]["end_key"] == regions[1]["start_key"]
            bytes.fromhex(regions[0]["end_key"])
            st, one = await http("GET", nodes.url(1, "/regions/2"))
            assert st == 200 and one["id"] == 2 and set(one) == REGION_KEYS
        finally:
            await nodes.close()

    run(main())


def test_errors(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 1)
        await nodes.start_all()
        u = lambda p: nodes.url(1, p)  # noqa: E731
        try:
            await until(lambda: nodes.nodes[1].store.leaders() == 1)
            cases: list[tuple[str, str, dict[str, Any], int, str]] = [
                ("GET", "/regions/99", {}, 404, "REGION_NOT_FOUND"),
                ("GET", "/regions/abc", {}, 400, "BAD_REQUEST"),
                ("GET", "/no/such/route", {}, 404, "NOT_FOUND"),
                ("POST", "/regions/1/transfer-leader", {"data": b"{not json"}, 400, "BAD_REQUEST"),
                ("POST", "/regions/1/transfer-leader", {"json": [1]}, 400, "BAD_REQUEST"),
                ("POST", "/regions/1/transfer-leader", {"json": {"store_id": "2"}}, 400, "BAD_REQUEST"),
                ("POST", "/regions/1/transfer-leader", {"json": {"store_id": True}}, 400, "BAD_REQUEST"),
                ("POST", "/regions/1/transfer-leader", {"json": {"store_id": 2}}, 400, "INVALID_REQUEST"),
                ("POST", "/regions/1/peers", {"json": {"store_id": 2, "role": "boss"}}, 400, "BAD_REQUEST"),
                ("POST", "/regions/1/peers", {"json": {"role": "voter"}}, 400, "BAD_REQUEST"),
                ("POST", "/regions/9/peers", {"json": {"store_id": 2}}, 404, "REGION_NOT_FOUND"),
                ("DELETE", "/regions/1/peers/x", {}, 400, "BAD_REQUEST"),
                ("DELETE", "/regions/1/peers/7", {}, 400, "INVALID_REQUEST"),
                ("DELETE", "/regions/1/peers/1", {}, 400, "INVALID_REQUEST"),
                ("PUT", "/regions/1", {}, 405, "METHOD_NOT_ALLOWED"),
            ]
            for method, path, kw, status, code in cases:
                st, body = await http(method, u(path), **kw)
                assert (st, body["error"]["code"]) == (status, code), (method, path, kw, body)
                assert body["error"]["message"]
        finally:
            await nodes.close()

    run(main())


def test_token_protects_mutations(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 1, admin_token="s3cret")
        await nodes.start_all()
        try:
            await until(lambda: nodes.nodes[1].store.leaders() == 1)
            st, _ = await http("GET", nodes.url(1, "/regions"))
            assert st == 200  # reads need no token
            for method, path in (
                ("POST", "/regions/1/transfer-leader"),
                ("POST", "/regions/1/peers"),
                ("DELETE", "/regions/1/peers/2"),
            ):
                st, body = await http(method, nodes.url(1, path), json={"store_id": 2})
                assert st == 401 and body["error"]["code"] == "UNAUTHORIZED"
                st, body = await http(
                    method, nodes.url(1, path), json={"store_id": 2},
                    headers={"Authorization": "Bearer wrong"},
                )
                assert st == 401
            st, body = await http(
                "POST", nodes.url(1, "/regions/1/transfer-leader"), json={"store_id": 1},
                headers={"Authorization": "Bearer s3cret"},
            )
            assert st == 202 and body["status"] == "started"
        finally:
            await nodes.close()

    run(main())


def test_metrics_exposition(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 1, initial_regions=2)
        await nodes.start_all()
        try:
            await until(lambda: nodes.nodes[1].store.leaders() == 2)
            async with AsyncClient([nodes.nodes[1].client_addr]) as c:
                await c.put(b"k", b"v")  # rounds with writes to count
            async with __import__("aiohttp").ClientSession() as s:
                async with s.get(nodes.url(1, "/metrics")) as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/plain")
                    text = await resp.text()
            fams = {f.name: f for f in text_string_to_metric_families(text)}
            assert fams["multiraft_regions"].samples[0].value == 2
            assert fams["multiraft_leaders"].samples[0].value == 2
            ticks = [s for s in fams["multiraft_ticks"].samples if s.name.endswith("_total")]
            assert ticks[0].value > 0
            # One fsync-duration and regions-per-round observation per committed round.
            def one(family: str, sample: str) -> float:
                return next(s.value for s in fams[family].samples if s.name == sample)

            rounds = one("multiraft_batch_rounds", "multiraft_batch_rounds_total")
            assert rounds > 0
            assert one("multiraft_fsync_duration_seconds", "multiraft_fsync_duration_seconds_count") == rounds
            assert one("multiraft_batch_regions_per_round", "multiraft_batch_regions_per_round_count") == rounds
        finally:
            await nodes.close()

    run(main())


def _aiohttp_path(canonical: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", canonical)


def test_openapi_documents_every_route(tmp_path: Path) -> None:
    app = AdminServer.__new__(AdminServer)
    app.node = None  # type: ignore[assignment]
    routes = {
        (_aiohttp_path(r.resource.canonical), r.method.lower())
        for r in app.make_app().router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(p, m) for p, ops in OPENAPI["paths"].items() for m in ops}
    assert routes == documented
    from openapi_spec_validator import validate

    validate(OPENAPI)


def test_forwarding_and_membership(tmp_path: Path) -> None:
    """Three stores and a fourth that joins: transfer the leader through a follower (forwarded
    to the leader's store), add a replica on store 4, remove one from an old store."""

    async def main() -> None:
        nodes = Nodes(tmp_path, 3)
        await nodes.start_all()
        try:
            leaders: dict[int, int] = {}

            async def has_leader() -> bool:
                leaders.update(await nodes.leaders())
                return 1 in leaders

            await until(has_leader)
            leader = leaders[1]
            follower = next(s for s in (1, 2, 3) if s != leader)
            target = next(s for s in (1, 2, 3) if s not in (leader, follower))
            # Handshakes told every store the others' admin addresses.
            await until(lambda: all(len(n.addrs.admin) == 3 for n in nodes.nodes.values()))
            st, body = await http(
                "POST", nodes.url(follower, "/regions/1/transfer-leader"), json={"store_id": target}
            )
            assert st == 202, body
            await until(lambda: nodes.nodes[target].store.peers[1].is_leader())

            # A fourth store joins; a replica moves to it from a follower store.
            await nodes.join()
            await until(lambda: 4 in nodes.nodes[target].addrs.peer)
            st, body = await http(
                "POST", nodes.url(follower, "/regions/1/peers"), json={"store_id": 4, "role": "learner"}
            )
            assert st == 200, body
            assert {"store_id": 4, "role": "learner"} in [
                {"store_id": p["store_id"], "role": p["role"]} for p in body["region"]["peers"]
            ]
            await until(lambda: 1 in nodes.nodes[4].store.peers and nodes.nodes[4].store.peers[1].initialized)
            st, body = await http(
                "POST", nodes.url(target, "/regions/1/peers"), json={"store_id": 4, "role": "voter"}
            )
            assert st == 200, body
            # Same request again: a voter is there already.
            st, body = await http(
                "POST", nodes.url(target, "/regions/1/peers"), json={"store_id": 4}
            )
            assert st == 400 and body["error"]["code"] == "INVALID_REQUEST"
            st, body = await http("DELETE", nodes.url(4, f"/regions/1/peers/{follower}"))
            assert st == 200, body
            assert sorted(p["store_id"] for p in body["region"]["peers"]) == sorted(
                {1, 2, 3, 4} - {follower}
            )
            await until(lambda: 1 not in nodes.nodes[follower].store.peers)
            st, body = await http("GET", nodes.url(follower, "/regions/1"))
            assert st == 404
        finally:
            await nodes.close()

    run(main())
