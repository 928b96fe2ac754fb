"""Advertised addresses are what other stores and clients learn: in the peer handshake (a
joining store's peer address too), in the client protocol's `regions` answer and in /status;
the stores still listen on their listen addresses."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from multiraft.client import AsyncClient
from multiraft.proto.serverpb_pb2 import BatchRaftMessage
from multiraft.server.localcluster import store_ports
from router.codec import encode_batch

from .nodes import Nodes, http, until


def _localhost_is_loopback() -> bool:
    try:
        infos = socket.getaddrinfo("localhost", 1, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return any(info[4][0] == "127.0.0.1" for info in infos)


@pytest.mark.skipif(not _localhost_is_loopback(), reason="localhost does not resolve to 127.0.0.1")
def test_others_learn_the_advertised_addresses(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 2, initial_regions=2)

        def advertised(sid: int) -> dict[str, str]:
            # The same ports, under another name: reachable, and told apart from the listen
            # addresses (127.0.0.1:...).
            client, peer, admin = store_ports(nodes.base, sid)
            return {
                "advertise_client_addr": f"localhost:{client}",
                "advertise_peer_addr": f"localhost:{peer}",
                "advertise_admin_addr": f"localhost:{admin}",
            }

        await nodes.start(1)
        n2 = await nodes.start(2, **advertised(2))
        try:
            n1 = nodes.nodes[1]
            want = advertised(2)
            # What store 2 says of itself.
            assert (n2.client_addr, n2.peer_addr, n2.admin_addr) == (
                want["advertise_client_addr"],
                want["advertise_peer_addr"],
                want["advertise_admin_addr"],
            )
            status, body = await http("GET", nodes.url(2, "/status"))
            assert status == 200
            assert body["addresses"] == {
                "client": want["advertise_client_addr"],
                "peer": want["advertise_peer_addr"],
                "admin": want["advertise_admin_addr"],
            }
            # What store 1 learns from the handshake.
            await until(lambda: n1.addrs.client.get(2) == want["advertise_client_addr"])
            await until(lambda: n1.addrs.admin.get(2) == want["advertise_admin_addr"])
            # What a client learns from store 1's `regions` answer.
            async with AsyncClient([n1.client_addr], timeout=20) as c:
                await c.refresh_regions()
                assert c.store_addrs[2] == want["advertise_client_addr"]

            # A joining store is learned, and dialed, at its advertised peer address.
            n3 = await nodes.start(3, join=True, **advertised(3))
            await until(lambda: n1.addrs.peer.get(3) == advertised(3)["advertise_peer_addr"])
            n1.transport.send(3, encode_batch(BatchRaftMessage(from_store_id=1)))
            await until(lambda: n3.transport.stats.frames_received > 0)
        finally:
            await nodes.close()

    asyncio.run(main())
