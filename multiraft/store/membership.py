"""Membership changes of a region: add a voter, add a learner, promote a learner, remove a peer.

A change is proposed as a raft v1 `ConfChange` whose context is msgpack
`[conf_ver, version, peer_id, store_id, role]`: the epoch it was proposed in, and the peer
record, so every replica learns the new peer's store. Applying it bumps `conf_ver` by one
(TiKV's rule). A change proposed in an older `conf_ver` than the region's at apply time is
refused by every replica alike (the epoch travels in the entry, so the decision is
deterministic) and leaves the configuration as it is.

A voter is never added straight away: the store adds a learner and promotes it once it caught
up (`Promotion`, `learner_lag`; the store's `promotion` layer), so that a region never counts
in its quorum a replica that holds nothing yet or cannot be reached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from multiraft.proto.serverpb_pb2 import Learner, Peer, Region, Voter
from multiraft.raft import ConfChange, ConfChangeType, ConfState, RawNode

from .errors import InvalidRequest
from .region import find_peer, find_peer_on_store

__all__ = [
    "ADD_VOTER",
    "ADD_LEARNER",
    "REMOVE",
    "OPS",
    "ConfChangeRequest",
    "Promotion",
    "learner_lag",
    "ConfChangeDecodeError",
    "plan_conf_change",
    "decode_conf_change",
    "apply_to_region",
    "conf_state_from_region",
]

ADD_VOTER: Final = "add_voter"
ADD_LEARNER: Final = "add_learner"
REMOVE: Final = "remove"
OPS: Final = (ADD_VOTER, ADD_LEARNER, REMOVE)


@dataclass(slots=True, frozen=True)
class ConfChangeRequest:
    """A decoded conf change entry: the raft change and the peer record it is about."""

    cc: ConfChange
    conf_ver: int
    version: int
    peer: Peer


@dataclass(slots=True)
class Promotion:
    """A voter being added: its learner (`peer_id` on `store_id`, proposed or already in the
    region) is promoted once caught up; `callback(region, None)` once the promotion is
    applied, or `callback(None, error)`. `deadline` is the store tick after which it is given
    up (the learner stays)."""

    store_id: int
    peer_id: int
    callback: Callable[[Any, Any], None]
    deadline: int


def learner_lag(node: RawNode[Any], peer_id: int) -> int | None:
    """Leader: how many entries of its log the replica `peer_id` lacks, or None while it
    holds none of them (it has not applied its first snapshot: a new replica's log starts
    below the region's, so raft must send it one)."""
    matched = node.matched_indexes().get(peer_id, 0)
    if matched == 0:
        return None
    return max(0, node.last_index() - matched)


def plan_conf_change(
    region: Region, op: str, store_id: int, leader_peer_id: int, new_peer_id: int
) -> ConfChange:
    """The ConfChange doing `op` for the replica on `store_id`, or InvalidRequest (nothing to
    do, or a change the region must not make). `new_peer_id` is used when a peer is added."""
    if op not in OPS:
        raise InvalidRequest(
            f"unknown membership operation {op!r} (expected one of {', '.join(OPS)})"
        )
    existing = find_peer_on_store(region, store_id)
    epoch = region.region_epoch
    if op == REMOVE:
        if existing is None:
            raise InvalidRequest(f"region {region.id} has no replica on store {store_id}")
        if existing.id == leader_peer_id:
            raise InvalidRequest(
                f"region {region.id}: store {store_id} holds the leader; transfer leadership first"
            )
        if existing.role == Voter and sum(1 for p in region.peers if p.role == Voter) <= 1:
            raise InvalidRequest(f"region {region.id}: cannot remove the last voter")
        peer = Peer(id=existing.id, store_id=store_id, role=existing.role)
        change = ConfChangeType.RemoveNode
    elif op == ADD_LEARNER:
        if existing is not None:
            raise InvalidRequest(f"region {region.id} already has a replica on store {store_id}")
        peer = Peer(id=new_peer_id, store_id=store_id, role=Learner)
        change = ConfChangeType.AddLearnerNode
    else:
        if existing is not None and existing.role == Voter:
            raise InvalidRequest(f"region {region.id} already has a voter on store {store_id}")
        # A learner on that store is promoted; otherwise a new voter joins.
        pid = existing.id if existing is not None else new_peer_id
        peer = Peer(id=pid, store_id=store_id, role=Voter)
        change = ConfChangeType.AddNode
    ctx: bytes = msgpack.packb(
        [epoch.conf_ver, epoch.version, peer.id, peer.store_id, int(peer.role)]
    )
    return ConfChange(change_type=change, node_id=peer.id, context=ctx)


class ConfChangeDecodeError(ValueError):
    """Malformed conf change entry data (never applied; the entry is skipped with this
    error)."""


_CHANGE_TYPES: Final = (
    ConfChangeType.AddNode,
    ConfChangeType.RemoveNode,
    ConfChangeType.AddLearnerNode,
)


def decode_conf_change(data: bytes) -> ConfChangeRequest:
    try:
        cc = ConfChange.FromString(data)
        conf_ver, version, pid, sid, role = msgpack.unpackb(cc.context)
        if not all(type(x) is int for x in (conf_ver, version, pid, sid, role)):
            raise ValueError("the context must hold five integers")
        peer = Peer(id=pid, store_id=sid, role=role)  # (ValueError if out of range)
    except Exception as e:  # protobuf and msgpack raise several types on garbage
        raise ConfChangeDecodeError(f"not a conf change: {e}") from e
    if cc.change_type not in _CHANGE_TYPES:
        raise ConfChangeDecodeError(f"unknown conf change type {cc.change_type}")
    if conf_ver < 0 or version < 0:
        raise ConfChangeDecodeError(f"bad epoch in the context: {conf_ver}, {version}")
    if pid != cc.node_id:
        raise ConfChangeDecodeError(
            f"conf change context names peer {pid}, the change {cc.node_id}"
        )
    return ConfChangeRequest(cc, conf_ver, version, peer)


def apply_to_region(region: Region, req: ConfChangeRequest) -> Region:
    """The region after the change (conf_ver + 1); `region` itself is left untouched."""
    new = Region()
    new.CopyFrom(region)
    new.region_epoch.conf_ver += 1
    peer = req.peer
    t = req.cc.change_type
    if t == ConfChangeType.RemoveNode:
        keep = [p for p in new.peers if p.id != peer.id]
        del new.peers[:]
        new.peers.extend(keep)
    else:
        cur = find_peer(new, peer.id)
        role = Learner if t == ConfChangeType.AddLearnerNode else Voter
        if cur is None:
            new.peers.add(id=peer.id, store_id=peer.store_id, role=role)
        else:
            cur.role = role
    return new


def conf_state_from_region(region: Region) -> ConfState:
    """The raft configuration a region's metadata describes (the metadata is the source of
    truth: it is persisted with the apply state, the raft conf state follows it)."""
    cs = ConfState()
    cs.voters.extend(p.id for p in region.peers if p.role == Voter)
    cs.learners.extend(p.id for p in region.peers if p.role == Learner)
    return cs
