"""`StoreAddrs`: what a store knows of every store's addresses, and how it learns them.

Three sources, in order of authority:

1. the configuration: `--initial-cluster` gives peer addresses, which nothing overrides (an
   operator moving a store points its name, or every store's entry for it, at the new place);
2. first hand: a store's own handshake gives its advertised peer, client and admin addresses
   (they replace anything learned before, but a configured peer address);
3. second hand: another store's gossip (`StoreGossip.stores`) fills in what is still unknown,
   never replacing what is known — so a stale address one store remembers cannot undo what
   another store said of itself.

A store removed from the cluster for good (`remove`, gossiped) is forgotten and never learned
again, whatever any source says. The book is kept in the data dir (`stores.json`, removed
stores as `{"removed": true}`) so that a restarted store can reach stores that joined after the
initial cluster. A wildcard host (0.0.0.0, ::) is never a peer address
to dial; advertised client and admin addresses with one are completed with the host of the
store's peer address.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from multiraft.proto.serverpb_pb2 import StoreAddress

from .config import WILDCARD_HOSTS, ConfigError, parse_addr

__all__ = ["StoreAddrs", "addr_with_port", "reachable"]

_log = logging.getLogger(__name__)


def addr_with_port(addr: str, port: int) -> str:
    """`addr`'s host with another port."""
    host, _ = parse_addr(addr)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def reachable(addr: str, peer_addr: str) -> str:
    """A store's advertised address, with a wildcard host (0.0.0.0, ::) replaced by the host
    of its peer address (what we reach it at)."""
    if not addr:
        return ""
    try:
        host, port = parse_addr(addr)
        peer_host, _ = parse_addr(peer_addr)
    except ConfigError:
        return addr
    if host in WILDCARD_HOSTS and peer_host not in WILDCARD_HOSTS:
        return addr_with_port(f"{peer_host}:1", port)
    return addr


def _dialable(peer_addr: str) -> bool:
    try:
        host, _ = parse_addr(peer_addr)
    except ConfigError:
        return False
    return host not in WILDCARD_HOSTS


class StoreAddrs:
    """What this store knows of every store's addresses (its own included: the advertised
    ones, see `ServerConfig.advertise_*`). See the module docstring for the rules."""

    def __init__(self) -> None:
        self.peer: dict[int, str] = {}
        self.client: dict[int, str] = {}
        self.admin: dict[int, str] = {}
        # Stores whose peer address comes from the configuration.
        self.configured: set[int] = set()
        # Stores removed from the cluster for good.
        self.removed: set[int] = set()

    def ids(self) -> set[int]:
        """Every store known, with at least one address."""
        return set(self.peer) | set(self.client) | set(self.admin)

    def configure_peer(self, store_id: int, peer_addr: str) -> None:
        if store_id not in self.removed:
            self.peer[store_id] = peer_addr
            self.configured.add(store_id)

    def remove(self, store_id: int) -> bool:
        """Forget `store_id` for good; False if it was removed already."""
        if store_id in self.removed:
            return False
        self.removed.add(store_id)
        self.configured.discard(store_id)
        for book in (self.peer, self.client, self.admin):
            book.pop(store_id, None)
        return True

    def learn_first_hand(
        self, store_id: int, peer_addr: str, client_addr: str, admin_addr: str
    ) -> tuple[bool, bool]:
        """What a store said of itself (its handshake): (anything changed, its peer address
        changed)."""
        if store_id in self.removed:
            return False, False
        changed = False
        for book, addr in (
            (self.client, reachable(client_addr, peer_addr)),
            (self.admin, reachable(admin_addr, peer_addr)),
        ):
            if addr and book.get(store_id) != addr:
                book[store_id] = addr
                changed = True
        peer_changed = False
        if (
            peer_addr
            and store_id not in self.configured
            and self.peer.get(store_id) != peer_addr
            and _dialable(peer_addr)
        ):
            self.peer[store_id] = peer_addr
            changed = peer_changed = True
        return changed, peer_changed

    def learn_second_hand(self, me: int, entries: Iterable[StoreAddress]) -> tuple[bool, list[int]]:
        """What another store said of the stores it knows: fills in what is unknown. Returns
        (anything changed, the stores whose peer address became known)."""
        changed = False
        new_peers: list[int] = []
        for e in entries:
            sid = e.store_id
            if sid == me or sid <= 0 or sid in self.removed:
                continue
            if e.peer_addr and sid not in self.peer and _dialable(e.peer_addr):
                self.peer[sid] = e.peer_addr
                new_peers.append(sid)
                changed = True
            for book, addr in (
                (self.client, reachable(e.client_addr, e.peer_addr)),
                (self.admin, reachable(e.admin_addr, e.peer_addr)),
            ):
                if addr and sid not in book:
                    book[sid] = addr
                    changed = True
        return changed, new_peers

    def to_proto(self) -> list[StoreAddress]:
        return [
            StoreAddress(
                store_id=s,
                peer_addr=self.peer.get(s, ""),
                client_addr=self.client.get(s, ""),
                admin_addr=self.admin.get(s, ""),
            )
            for s in sorted(self.ids())
        ]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            str(s): {
                "peer_addr": self.peer.get(s, ""),
                "client_addr": self.client.get(s, ""),
                "admin_addr": self.admin.get(s, ""),
            }
            for s in sorted(self.ids())
        }
        for s in sorted(self.removed):
            doc[str(s)] = {"removed": True}
        return doc

    # -- kept in the data dir ------------------------------------------------------------------

    def load(self, path: Path, me: int) -> None:
        """Addresses saved by an earlier life (never our own: the configuration gives those);
        known ones are kept. A missing or unreadable file is no error."""
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(doc, dict):
            return
        for sid_s, entry in doc.items():
            if not sid_s.isdigit() or not isinstance(entry, dict) or int(sid_s) == me:
                continue
            sid = int(sid_s)
            if entry.get("removed") is True:
                self.remove(sid)
                continue
            for book, key in (
                (self.peer, "peer_addr"),
                (self.client, "client_addr"),
                (self.admin, "admin_addr"),
            ):
                v = entry.get(key)
                if isinstance(v, str) and v and sid not in self.removed:
                    book.setdefault(sid, v)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError as e:
            _log.warning("could not save store addresses to %s: %s", path, e)
