"""The socket settings every store-to-store connection gets, dialed or accepted: TCP_NODELAY
and the write buffer limits."""

from __future__ import annotations

import asyncio
import socket

__all__ = ["WRITE_HIGH", "WRITE_LOW", "set_nodelay"]

# Socket write buffer limits: flushes wait above HIGH until the buffer drains below LOW.
WRITE_HIGH = 1 << 20
WRITE_LOW = 256 << 10


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not TCP (tests may use other sockets)
        pass
