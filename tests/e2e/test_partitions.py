"""Partitions between real store processes: every store-to-store connection passes the fault
proxy (what the stores learn from each other names the proxy, never a store's own address),
and a cut there really cuts: no raft frame crosses it, the others see the store down and go
on without it, and it catches up once healed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multiraft.client import Client
from multiraft.testing.faulty_cluster import FaultyCluster
from multiraft.testing.proxy import BLACKHOLE


def _wait(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _states(fc: FaultyCluster, sid: int) -> dict[int, str]:
    return {s["store_id"]: s["state"] for s in fc.cluster.admin(sid, "/stores")["stores"]}


def _applied(fc: FaultyCluster, sid: int) -> int:
    return int(fc.cluster.admin(sid, "/regions/1")["applied_index"])


def test_every_link_passes_the_proxy_and_an_isolated_store_is_cut_off(tmp_path: Path) -> None:
    fc = FaultyCluster(tmp_path, 3, initial_regions=1)
    try:
        fc.start_all()
        fc.wait_ready(90)
        proxied = {sid: fc.proxy.addr(sid) for sid in fc.stores}
        real = {sid: sp.peer_addr for sid, sp in fc.stores.items()}
        assert not set(proxied.values()) & set(real.values())
        # Every store knows every store (itself included) at its proxy address: from the
        # configuration, the handshakes and the gossip alike; and keeps that on disk.
        for sid in fc.stores:
            book = {s["store_id"]: s["peer_addr"] for s in fc.cluster.admin(sid, "/stores")["stores"]}
            assert book == proxied, f"store {sid} knows {book}"
        # Traffic flows on every directed pair, through the proxy.
        _wait(lambda: all(
            fc.proxy.stats().get((a, b)) is not None and fc.proxy.stats()[(a, b)].raft_frames > 0
            for a in fc.stores for b in fc.stores if a != b), 30, "frames on every pair")
        for sid, sp in fc.stores.items():
            saved = json.loads((sp.data_dir / "stores.json").read_text())
            assert {v["peer_addr"] for k, v in saved.items() if int(k) != sid} <= set(proxied.values())

        with Client(fc.cluster.client_addrs(), timeout=30) as c:
            c.put(b"before", b"1")
            fc.proxy.isolate(3, BLACKHOLE)
            cut = fc.proxy.stats()
            # The others stop hearing from store 3; store 3 from them.
            _wait(lambda: _states(fc, 1)[3] != "up" and _states(fc, 2)[3] != "up", 30,
                  "stores 1 and 2 to see store 3 down")
            _wait(lambda: _states(fc, 3)[1] != "up" and _states(fc, 3)[2] != "up", 30,
                  "store 3 to see the others down")
            # The majority goes on.
            for i in range(20):
                c.put(b"during-%d" % i, b"2")
            applied_3 = _applied(fc, 3)
            leader_applied = max(_applied(fc, 1), _applied(fc, 2))
            assert applied_3 < leader_applied
            after = fc.proxy.stats()
            # Not one raft frame crossed the cut, though both sides kept trying.
            for a, b in ((1, 3), (2, 3), (3, 1), (3, 2)):
                assert after[(a, b)].raft_frames == cut[(a, b)].raft_frames, (a, b)
            assert after[(1, 3)].dropped > cut[(1, 3)].dropped
            assert after[(3, 1)].dropped + after[(3, 2)].dropped > cut[(3, 1)].dropped + cut[(3, 2)].dropped
            # Healed, store 3 catches up.
            fc.proxy.heal()
            _wait(lambda: _applied(fc, 3) >= leader_applied, 60, "store 3 to catch up")
            _wait(lambda: _states(fc, 1)[3] == "up", 30, "store 3 up again")
            assert fc.proxy.stats()[(1, 3)].raft_frames > after[(1, 3)].raft_frames
            assert c.get(b"during-19") == b"2"
    finally:
        fc.close()
