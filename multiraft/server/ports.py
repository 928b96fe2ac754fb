"""Before a store creates anything: can it listen where it is told to?

`check_listen_addrs` binds (and listens on) every listen address the way the servers will,
all at the same time (so two settings naming the same port are caught too), then closes the
sockets. An address in use or not local is a `ConfigError` (exit 2, nothing created); a host
name that does not resolve is an `OSError` (exit 1: it may resolve on the next try).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping

from .config import ConfigError, parse_addr

__all__ = ["check_listen_addrs"]

_HINTS = {
    errno.EADDRINUSE: "already in use (is another store or program listening there?)",
    errno.EADDRNOTAVAIL: "not an address of this machine",
    errno.EACCES: "permission denied (a port below 1024?)",
}


def check_listen_addrs(addrs: Mapping[str, str]) -> None:
    """`addrs`: setting name -> "host:port". Raises ConfigError naming the first setting whose
    address cannot be listened on, OSError if a host name does not resolve."""
    held: list[socket.socket] = []
    try:
        for name, addr in addrs.items():
            host, port = parse_addr(addr, name)
            try:
                infos = socket.getaddrinfo(
                    host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )
            except socket.gaierror as e:
                raise OSError(f"{name} {addr}: cannot resolve {host!r}: {e.strerror}") from None
            seen: set[tuple[int, object]] = set()
            for family, type_, proto, _, sockaddr in infos:
                if (family, sockaddr) in seen:
                    continue
                seen.add((family, sockaddr))
                s = socket.socket(family, type_, proto)
                held.append(s)
                # As asyncio's create_server does: TIME_WAIT is fine, v6 sockets are v6 only.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s.bind(sockaddr)
                    s.listen(1)
                except OSError as e:
                    why = _HINTS.get(e.errno or 0, e.strerror or str(e))
                    raise ConfigError(f"{name} {addr}: cannot listen: {why}") from None
    finally:
        for s in held:
            s.close()
