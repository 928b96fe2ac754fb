"""Lease reads across a pause, on real processes (the simulator's version is
tests/store/test_lease_reads.py).

The stores run with `--lease-reads`. The leader's process is stopped (SIGSTOP) well past its
lease, and cut off through the proxy at once, so that it never hears of what follows; the
others elect a leader and overwrite the key. A read is sent to the old leader over the raw
client protocol while it is still stopped (it waits in the socket), then the process is
continued: the first thing it may do is answer that read from a lease its ticks, stopped with
it, would still count as valid. The answer must be an error or the new value, never the old
one. A client pointed only at that store must not read the old value either."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

from multiraft.client import AsyncClient, Client, ClientError
from multiraft.client.protocol import FrameDecoder, encode_frame
from multiraft.testing.faulty_cluster import FaultyCluster
from multiraft.testing.proxy import BLACKHOLE

# Election timeout 10 ticks of 50 ms: the lease is 0.4 s; the pause is far longer.
PAUSE = 3.0


class RawClient:
    """The client protocol by hand, on one connection to one store."""

    def __init__(self, addr: str) -> None:
        host, _, port = addr.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.decoder = FrameDecoder(strict_map_key=False)
        self.answers: dict[int, Any] = {}

    def send(self, req: dict[str, Any]) -> None:
        self.sock.sendall(encode_frame(req))

    def answer(self, rid: int, timeout: float) -> Any:
        """The answer to request `rid`, or None if none came within `timeout`."""
        deadline = time.monotonic() + timeout
        while rid not in self.answers:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                return None
            if not data:
                return None
            for msg in self.decoder.feed(data):
                self.answers[msg["id"]] = msg
        return self.answers.pop(rid)

    def close(self) -> None:
        self.sock.close()


def _leader_seen_by(fc: FaultyCluster, sid: int) -> int | None:
    leader = fc.cluster.admin(sid, "/regions/1", timeout=2.0)["leader"]
    return None if leader is None else int(leader["store_id"])


def test_a_leader_paused_past_its_lease_serves_no_stale_read(tmp_path: Path) -> None:
    fc = FaultyCluster(tmp_path, 3, initial_regions=1, extra_args=["--lease-reads"])
    try:
        fc.start_all()
        old = fc.wait_ready(90)[1]
        others = [s for s in fc.stores if s != old]
        with Client(fc.cluster.client_addrs(), timeout=30) as c:
            c.put(b"k", b"old")
            assert c.get(b"k") == b"old"  # a ReadIndex round: the lease starts
        raw = RawClient(fc.stores[old].client_addr)
        try:
            raw.send({"id": 1, "op": "regions"})
            region = next(r for r in raw.answer(1, 10)["result"]["regions"] if r["id"] == 1)
            raw.send({"id": 2, "op": "get", "region_id": 1, "epoch": region["epoch"], "key": b"k"})
            assert raw.answer(2, 10) == {"id": 2, "ok": True, "result": b"old"}

            fc.pause(old)
            fc.proxy.isolate(old, BLACKHOLE)
            paused_at = time.monotonic()
            # The others elect a leader among themselves and overwrite the key.
            deadline = time.monotonic() + 30
            while _leader_seen_by(fc, others[0]) not in others:
                assert time.monotonic() < deadline, "no new leader"
                time.sleep(0.05)
            addrs = [fc.stores[s].client_addr for s in others]
            with Client(addrs, timeout=30) as c:
                c.put(b"k", b"new")
                assert c.get(b"k") == b"new"
            time.sleep(max(0.0, PAUSE - (time.monotonic() - paused_at)))
            # The read waits in the stopped store's socket, then the store resumes.
            raw.send({"id": 3, "op": "get", "region_id": 1, "epoch": region["epoch"], "key": b"k"})
            fc.resume(old)
            raw.send({"id": 4, "op": "get", "region_id": 1, "epoch": region["epoch"], "key": b"k"})
            answers = [raw.answer(3, 15), raw.answer(4, 15)]
        finally:
            raw.close()
        for a in answers:
            # No answer (the read waited for a quorum that never came), an error, or fresh.
            assert a is None or not a["ok"] or a["result"] == b"new", answers
        assert any(a is not None for a in answers) or fc.stores[old].running

        async def through_old_leader_only() -> bytes | None:
            async with AsyncClient([fc.stores[old].client_addr], timeout=5) as ac:
                return await ac.get(b"k")

        try:
            got = asyncio.run(through_old_leader_only())
        except ClientError:
            got = b"new"  # failing is fine
        assert got == b"new"

        # Healed, the old leader rejoins and serves the new value.
        fc.proxy.heal()
        with Client([fc.stores[old].client_addr], timeout=30) as c:
            assert c.get(b"k") == b"new"
    finally:
        fc.close()
