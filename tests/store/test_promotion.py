"""A new voter joins as a learner and is promoted once it caught up; a learner that cannot
catch up stays a learner and the region keeps its quorum."""

from __future__ import annotations

from typing import Any

import pytest

from multiraft.engine import CF_KV
from multiraft.proto.serverpb_pb2 import Learner, Region, Voter
from multiraft.store import CatchUpTimeout, InvalidRequest, NotLeader, RegionBusy, StoreError
from multiraft.store.store import StoreConfig
from multiraft.testing import SimCluster


def _cluster(seed: int) -> SimCluster:
    cfg = StoreConfig(log_gc_keep=20)
    return SimCluster(stores=4, seed=seed, initial_regions=2, initial_stores=3, store_config=cfg)


def _roles(region: Region) -> dict[int, int]:
    return {p.store_id: p.role for p in region.peers}


def _leader_region(c: SimCluster, rid: int) -> Region | None:
    sid = c.leader_of(rid)
    return c.stores[sid].peers[rid].region if sid is not None else None


def _start(c: SimCluster, rid: int, op: str, store_id: int, **kw: Any) -> list[tuple[Any, Any]]:
    """Start a membership change on the region's leader; its outcome lands in the list."""
    box: list[tuple[Any, Any]] = []
    leader = c.leader_of(rid)
    assert leader is not None
    c.stores[leader].change_peer(rid, op, store_id, lambda r, e: box.append((r, e)), **kw)
    return box


def test_a_voter_joins_as_a_learner_and_is_promoted_once_caught_up() -> None:
    c = _cluster(seed=21)
    for i in range(50):
        c.put(b"\x00k%03d" % i, b"v%d" % i)
    before = _leader_region(c, 1)
    assert before is not None
    box = _start(c, 1, "add_voter", 4)
    seen: list[tuple[int, bool]] = []

    def watch() -> bool:
        region = _leader_region(c, 1)
        if region is not None and 4 in _roles(region):
            peer4 = c.stores[4].peers.get(1)
            seen.append((_roles(region)[4], peer4 is not None and peer4.initialized))
        return bool(box)

    c.run_until(watch, timeout=20)
    region, err = box[0]
    assert err is None, err
    assert _roles(region)[4] == Voter
    # Two changes: the learner, then its promotion.
    assert region.region_epoch.conf_ver == before.region_epoch.conf_ver + 2
    # Store 4 was a learner first, and a voter only once it held the region.
    assert seen[0][0] == Learner
    assert all(initialized for role, initialized in seen if role == Voter)
    assert c.stores[4].stats.snapshots_applied >= 1
    for i in range(50):
        assert c.get(b"\x00k%03d" % i) == b"v%d" % i


def test_a_learner_that_cannot_catch_up_stays_a_learner_and_the_quorum_holds() -> None:
    c = _cluster(seed=22)
    c.put(b"\x00a", b"1")
    c.partition([4], [1, 2, 3])  # store 4 is up but nobody reaches it
    before = _leader_region(c, 1)
    assert before is not None
    with pytest.raises(CatchUpTimeout, match="stays a learner"):
        c.change_peer(1, "add_voter", 4, catch_up_ticks=30)
    region = _leader_region(c, 1)
    assert region is not None
    assert _roles(region)[4] == Learner
    assert sorted(s for s, r in _roles(region).items() if r == Voter) == [1, 2, 3]
    # One more failure: two voters of three are left, the region still has a quorum.
    leader = c.leader_of(1)
    victim = next(s for s in (1, 2, 3) if s != leader)
    c.crash(victim)
    c.put(b"\x00a", b"2")
    assert c.get(b"\x00a") == b"2"
    # Once store 4 is reachable again, asking for the voter again promotes the learner.
    c.heal()
    c.restart(victim)
    region = c.change_peer(1, "add_voter", 4)
    assert _roles(region)[4] == Voter
    c.run_until(lambda: c.stores[4].engine.get(CF_KV, b"\x00a") == b"2", timeout=10)


def test_promoting_an_existing_learner_that_caught_up_is_one_change() -> None:
    c = _cluster(seed=23)
    c.put(b"\x00a", b"1")
    region = c.change_peer(1, "add_learner", 4)
    conf_ver = region.region_epoch.conf_ver
    c.run_until(lambda: 1 in c.stores[4].peers and c.stores[4].peers[1].initialized, timeout=10)
    c.run_for(1.0)
    region = c.change_peer(1, "add_voter", 4)
    assert _roles(region)[4] == Voter
    assert region.region_epoch.conf_ver == conf_ver + 1


def test_while_a_learner_catches_up_other_changes_wait_and_removing_it_cancels() -> None:
    c = _cluster(seed=24)
    c.partition([4], [1, 2, 3])
    box = _start(c, 1, "add_voter", 4, catch_up_ticks=10_000)
    c.run_until(lambda: _roles(_leader_region(c, 1) or Region()).get(4) == Learner, timeout=10)
    leader = c.leader_of(1)
    assert leader is not None
    store = c.stores[leader]
    assert store.promotion_pending(1) == 4

    def never(result: object, err: object) -> None:
        raise AssertionError("refused requests have no callback")

    other = next(s for s in (1, 2, 3) if s != leader)
    with pytest.raises(RegionBusy, match="catching up"):
        store.change_peer(1, "remove", other, never)
    with pytest.raises(RegionBusy):
        store.change_peer(1, "add_voter", 4, never)
    # Removing the learner itself ends the promotion.
    removed = _start(c, 1, "remove", 4)
    assert box and isinstance(box[0][1], InvalidRequest)
    c.run_until(lambda: bool(removed), timeout=10)
    assert removed[0][1] is None
    assert 4 not in _roles(removed[0][0])
    assert store.promotion_pending(1) is None


def test_losing_the_leadership_fails_the_request_and_a_retry_promotes() -> None:
    c = _cluster(seed=25)
    c.partition([4], [1, 2, 3])
    box = _start(c, 1, "add_voter", 4, catch_up_ticks=10_000)
    c.run_until(lambda: _roles(_leader_region(c, 1) or Region()).get(4) == Learner, timeout=10)
    leader = c.leader_of(1)
    other = next(s for s in (1, 2, 3) if s != leader)
    c.transfer_leader(1, other)
    c.run_until(lambda: bool(box), timeout=10)
    err = box[0][1]
    assert isinstance(err, NotLeader) and isinstance(err, StoreError) and err.retryable
    c.heal()
    region = c.change_peer(1, "add_voter", 4)  # on the new leader: the learner is promoted
    assert _roles(region)[4] == Voter
