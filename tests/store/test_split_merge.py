"""Region split and merge in the deterministic cluster simulator: the commands' semantics and
refusals, crashes at every step of a merge, a source replica that misses its merge, a split
racing a snapshot and a message-created peer, repeated split/merge cycles, and linearizable
client histories while regions split and merge under crashes and partitions."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import pytest

from multiraft.proto.serverpb_pb2 import RaftMessage, Region
from multiraft.raft import Message, MessageType
from multiraft.store import EpochNotMatch, InvalidRequest, RegionBusy, StoreError
from multiraft.store.errors import MergeRefused
from multiraft.store.store import Store, StoreConfig
from multiraft.testing.cluster import OpFailed, SimCluster, SimOp
from multiraft.testing.simnet import LinkFaults

from .test_sim_cluster import check_linearizable, inject_random_fault, submit_random_ops


def _keys(c: SimCluster, n: int = 26) -> dict[bytes, bytes]:
    want = {bytes([97 + i]): b"v%d" % i for i in range(n)}
    for k, v in want.items():
        c.put(k, v)
    return want


def _assert_data(c: SimCluster, want: dict[bytes, bytes]) -> None:
    for k, v in want.items():
        assert c.get(k) == v, k


def _layout(c: SimCluster) -> list[tuple[bytes, bytes]]:
    return [(r.start_key, r.end_key) for r in c.regions()]


def _converged(c: SimCluster) -> bool:
    """Every live store holds exactly the regions of `c.regions()`, with the same metadata,
    and no merge is in progress anywhere."""
    regions = c.regions()
    for sid, store in c.stores.items():
        want = {r.id: r for r in regions if any(p.store_id == sid for p in r.peers)}
        have = {rid: p.region for rid, p in store.peers.items()}
        if have != want or store._merging or store._merge_waiters:
            return False
    return True


def _kv(store: Store) -> list[tuple[bytes, bytes]]:
    from multiraft.store.kv import scan_applied

    return scan_applied(store.engine, store._unwritten, b"", None)


# -- split ---------------------------------------------------------------------------------


def test_split_cuts_the_range_and_keeps_every_key() -> None:
    c = SimCluster(stores=3, seed=1, initial_regions=1)
    want = _keys(c)
    left, mid, right = c.split(1, [b"h", b"p"])
    # The original region keeps the rightmost range (right_derive); the new ones take fresh ids.
    assert (left.start_key, left.end_key) == (b"", b"h")
    assert (mid.start_key, mid.end_key) == (b"h", b"p")
    assert (right.id, right.start_key, right.end_key) == (1, b"p", b"")
    assert len({left.id, mid.id, right.id}) == 3 and 1 not in (left.id, mid.id)
    # version += number of keys; conf_ver and the peers' stores are copied.
    assert {r.region_epoch.version for r in (left, mid, right)} == {3}
    assert {r.region_epoch.conf_ver for r in (left, mid, right)} == {1}
    for r in (left, mid):
        assert sorted(p.store_id for p in r.peers) == [1, 2, 3]
        assert not {p.id for p in r.peers} & {p.id for p in right.peers}
    c.run_until(c.all_regions_have_leaders, timeout=10)
    assert _layout(c) == [(b"", b"h"), (b"h", b"p"), (b"p", b"")]
    _assert_data(c, want)
    c.put(b"i", b"new")  # served by the new middle region
    assert c.get(b"i") == b"new"
    c.run_until(lambda: _converged(c), timeout=10)
    # No data moved: every store holds the same keys as before, in one KV column family.
    assert len({tuple(_kv(s)) for s in c.stores.values()}) == 1


def test_split_born_regions_get_their_leader_on_the_splitting_store_at_once() -> None:
    c = SimCluster(stores=3, seed=2, initial_regions=1)
    leader = c.leader_of(1)
    t0 = c.now
    regions = c.split(1, [b"m"])
    c.run_until(c.all_regions_have_leaders, timeout=10)
    # Well before an election timeout (1 s): the new region campaigned when it was created.
    assert c.now - t0 < 0.5
    assert {c.leader_of(r.id) for r in regions} == {leader}


def test_split_left_derive() -> None:
    c = SimCluster(stores=3, seed=3, initial_regions=1)
    box: list[tuple[Any, StoreError | None]] = []
    leader = c.stores[c.leader_of(1) or 0]
    leader.split(1, [b"m"], lambda r, e: box.append((r, e)), right_derive=False)
    c.run_until(lambda: bool(box))
    regions, err = box[0]
    assert err is None and regions[0].id == 1 and regions[0].end_key == b"m"


@pytest.mark.parametrize(
    "keys, why",
    [
        ([], "no split key"),
        ([b"m", b"c"], "sorted"),
        ([b"c", b"c"], "sorted and distinct"),
        ([b""], "1.."),
        ([b"\xff" * 600], "1.."),
    ],
)
def test_bad_split_keys_are_refused_and_change_nothing(keys: list[bytes], why: str) -> None:
    c = SimCluster(stores=3, seed=4, initial_regions=1)
    before = c.regions()
    with pytest.raises(InvalidRequest, match=why):
        c.split(1, keys)
    c.run_for(1.0)
    assert c.regions() == before


def test_split_keys_must_be_strictly_inside_the_range() -> None:
    c = SimCluster(stores=3, seed=5, initial_regions=1)
    left, right = c.split(1, [b"m"])
    with pytest.raises(InvalidRequest, match="strictly inside"):
        c.split(right.id, [b"m"])  # its start key
    with pytest.raises(InvalidRequest, match="strictly inside"):
        c.split(left.id, [b"x"])  # outside
    leader = c.stores[c.leader_of(right.id) or 0]
    stale = Region()
    stale.CopyFrom(right)
    stale.region_epoch.version -= 1
    with pytest.raises(EpochNotMatch):
        leader.split(right.id, [b"x"], lambda r, e: None, epoch=stale.region_epoch)
    assert len(c.regions()) == 2


def test_a_command_proposed_before_a_split_fails_with_the_new_regions() -> None:
    """A write to a key that moves, proposed before the split and applied after it, is refused
    by every replica with EpochNotMatch naming the new regions; retried (the simulator's
    client routes by the current layout) it applies once."""
    from multiraft.store.cmd import OP_PUT, Command, Op

    c = SimCluster(stores=3, seed=6, initial_regions=1)
    c.put(b"a", b"1")
    leader = c.stores[c.leader_of(1) or 0]
    box: list[tuple[Any, StoreError | None]] = []
    split_box: list[tuple[Any, StoreError | None]] = []
    leader.split(1, [b"m"], lambda r, e: split_box.append((r, e)))
    leader.propose(Command(1, 0, 0, [Op(OP_PUT, b"a", value=b"2")], b"req-1"), lambda r, e: box.append((r, e)))
    c.run_until(lambda: bool(box) and bool(split_box))
    _, err = box[0]
    assert isinstance(err, EpochNotMatch)
    assert [(r.start_key, r.end_key) for r in err.current_regions] == [(b"m", b""), (b"", b"m")]
    assert c.get(b"a") == b"1"


def test_a_retried_write_applies_once_across_a_split() -> None:
    """The new regions inherit the parent's request-id records."""
    from multiraft.store.cmd import OP_PUT, Command, Op

    c = SimCluster(stores=3, seed=7, initial_regions=1)
    leader = c.stores[c.leader_of(1) or 0]
    box: list[tuple[Any, StoreError | None]] = []
    leader.propose(Command(1, 0, 0, [Op(OP_PUT, b"a", value=b"1")], b"req-9"), lambda r, e: box.append((r, e)))
    c.run_until(lambda: bool(box))
    c.put(b"a", b"2")  # another client's write
    left, _ = c.split(1, [b"m"])
    c.run_until(c.all_regions_have_leaders, timeout=10)
    leader = c.stores[c.leader_of(left.id) or 0]
    box.clear()
    leader.propose(Command(left.id, 0, 0, [Op(OP_PUT, b"a", value=b"1")], b"req-9"), lambda r, e: box.append((r, e)))
    c.run_until(lambda: bool(box))
    assert box[0][1] is None
    assert c.get(b"a") == b"2"  # the retry did not apply again


def test_a_split_racing_a_snapshot_initializes_the_message_created_peer() -> None:
    """TiKV's split-created vs message-created race: store 4, a new learner of the region,
    first hears from the new region (which creates an uninitialized peer for it), then gets
    the parent's snapshot taken before the split, then the parent's log with the split: the
    split initializes the peer that the message created (one peer, its data, its term)."""
    c = SimCluster(stores=4, seed=8, initial_regions=1, initial_stores=3)
    want = _keys(c)
    c.partition([4], [1, 2, 3])
    region = c.change_peer(1, "add_learner", 4)
    learner = next(p for p in region.peers if p.store_id == 4)
    leader = c.stores[c.leader_of(1) or 0]
    lp = leader.peers[1]
    snap = leader._build_snapshot(1, 0)  # the parent before the split
    msg = Message(msg_type=MessageType.MsgSnapshot, to=learner.id, term=lp.node.term(), snapshot=snap)
    msg.from_ = lp.meta.id
    snap_msg = RaftMessage(region_id=1, start_key=b"", end_key=b"", message=msg)
    snap_msg.from_peer.CopyFrom(lp.meta)
    snap_msg.to_peer.CopyFrom(learner)
    snap_msg.region_epoch.CopyFrom(lp.region.region_epoch)
    left, right = c.split(1, [b"m"])
    c.run_until(c.all_regions_have_leaders, timeout=10)
    # The new region's leader reaches store 4 first: a heartbeat creates the peer there.
    new_leader = c.stores[c.leader_of(left.id) or 0].peers[left.id]
    new_learner = next(p for p in left.peers if p.store_id == 4)
    hb = Message(msg_type=MessageType.MsgHeartbeat, to=new_learner.id, term=new_leader.node.term())
    hb.from_ = new_leader.meta.id
    hb_msg = RaftMessage(region_id=left.id, start_key=left.start_key, end_key=left.end_key, message=hb)
    hb_msg.from_peer.CopyFrom(new_leader.meta)
    hb_msg.to_peer.CopyFrom(new_learner)
    hb_msg.region_epoch.CopyFrom(left.region_epoch)
    s4 = c.stores[4]
    s4.on_raft_message(hb_msg)
    assert left.id in s4.peers and not s4.peers[left.id].initialized
    created = s4.peers[left.id]
    s4.on_raft_message(snap_msg)
    c.run_for(0.5)
    assert s4.peers[1].initialized and s4.peers[1].region.end_key == b""  # pre-split range
    c.heal()
    c.run_until(lambda: _converged(c), timeout=30)
    assert s4.peers[left.id] is not created and s4.peers[left.id].initialized
    assert s4.peers[left.id].meta.id == new_learner.id
    c.put(b"b", b"after")
    want[b"b"] = b"after"
    c.run_until(lambda: all(_kv(s) == _kv(c.stores[1]) for s in c.stores.values()), timeout=10)
    assert dict(_kv(s4)) == want


def test_a_store_that_misses_a_split_catches_up_by_the_parents_snapshot() -> None:
    c = SimCluster(stores=3, seed=9, initial_regions=1, store_config=StoreConfig(log_gc_keep=5))
    want = _keys(c)
    c.partition([3], [1, 2])
    c.run_until(lambda: c.leader_of(1) in (1, 2), timeout=10)
    left, right = c.split(1, [b"m"])
    for i in range(40):  # compact both regions' logs past the split
        k = b"a%d" % i if i % 2 else b"z%d" % i
        c.put(k, b"x")
        want[k] = b"x"
    c.heal()
    c.run_until(lambda: _converged(c), timeout=30)
    c.run_until(lambda: _kv(c.stores[3]) == _kv(c.stores[1]), timeout=10)
    assert dict(_kv(c.stores[3])) == want


# -- merge ---------------------------------------------------------------------------------


def test_merge_widens_the_target_and_keeps_every_key() -> None:
    c = SimCluster(stores=3, seed=11, initial_regions=1)
    want = _keys(c)
    left, mid, right = c.split(1, [b"h", b"p"])
    merged = c.merge(mid.id, right.id)
    assert (merged.id, merged.start_key, merged.end_key) == (1, b"h", b"")
    # version = max(source after PrepareMerge, target) + 1; conf_ver unchanged.
    assert merged.region_epoch.version == 5 and merged.region_epoch.conf_ver == 1
    merged = c.merge(left.id, merged.id)
    assert (merged.start_key, merged.end_key) == (b"", b"")
    c.run_until(lambda: _converged(c), timeout=30)
    assert [r.id for r in c.regions()] == [1]
    for store in c.stores.values():
        assert set(store.peers) == {1} and set(store.merged_into) == {left.id, mid.id}
    _assert_data(c, want)
    c.put(b"c", b"after")
    assert c.get(b"c") == b"after"


def test_merge_refusals_change_nothing() -> None:
    c = SimCluster(stores=4, seed=12, initial_regions=1, initial_stores=3)
    a, b, d = c.split(1, [b"h", b"p"])
    c.run_until(c.all_regions_have_leaders, timeout=10)
    with pytest.raises(MergeRefused, match="not adjacent"):
        c.merge(a.id, d.id)
    with pytest.raises(InvalidRequest, match="itself"):
        c.merge(a.id, a.id)
    c.change_peer(b.id, "add_learner", 4)
    with pytest.raises(MergeRefused, match="same stores"):
        c.merge(a.id, b.id)
    c.run_until(lambda: 4 in c.replica_stores(b.id), timeout=20)
    c.change_peer(b.id, "remove", 4)
    # Once the replicas match again the merge goes through.
    merged = c.merge(a.id, b.id)
    assert (merged.start_key, merged.end_key) == (b"", b"p")


def test_a_merge_into_a_region_with_a_membership_change_in_flight_is_busy() -> None:
    c = SimCluster(stores=4, seed=13, initial_regions=1, initial_stores=3)
    a, b = c.split(1, [b"m"])
    c.run_until(c.all_regions_have_leaders, timeout=10)
    c.transfer_leader(b.id, c.leader_of(a.id) or 0)
    store = c.stores[c.leader_of(a.id) or 0]
    store.change_peer(b.id, "add_learner", 4, lambda r, e: None)
    with pytest.raises(RegionBusy):
        store.merge(a.id, b.id, lambda r, e: None)


def test_a_merge_rolls_back_when_the_target_changes_first() -> None:
    """The target splits after PrepareMerge: the CommitMerge can never apply, the source's
    replicas want a rollback, and the source serves again."""
    c = SimCluster(stores=3, seed=14, initial_regions=1)
    want = _keys(c)
    a, b = c.split(1, [b"m"])
    c.run_until(c.all_regions_have_leaders, timeout=10)
    sid = c.leader_of(a.id) or 0
    c.transfer_leader(b.id, next(s for s in (1, 2, 3) if s != sid))  # target led elsewhere
    source_leader = c.stores[sid]
    target_store = c.stores[c.leader_of(b.id) or 0]
    # (Every replica of the source holds its log: else the merge is refused at once.)
    node = source_leader.peers[a.id].node
    c.run_until(lambda: min(node.matched_indexes().values()) == node.last_index(), timeout=10)
    box: list[tuple[Any, StoreError | None]] = []
    # Hold the CommitMerge back: the target's leader store never proposes it while it lags.
    c.partition([sid], [s for s in (1, 2, 3) if s != sid])
    source_leader.merge(a.id, b.id, lambda r, e: box.append((r, e)))
    c.run_for(0.3)
    c.heal()
    target_store.split(b.id, [b"t"], lambda r, e: None)
    c.run_until(lambda: bool(box), timeout=30)
    region, err = box[0]
    if err is None:  # the merge won the race: that is a valid outcome too
        assert region.id == b.id
    else:
        assert err.code == "MERGE_ROLLED_BACK"
        c.run_until(lambda: _converged(c), timeout=30)
        assert len(c.regions()) == 3
    c.run_until(lambda: _converged(c), timeout=30)
    _assert_data(c, want)


def _merge_async(c: SimCluster, source: int, target: int) -> list[tuple[Any, StoreError | None]]:
    """Propose the merge (retrying while the source's leader is not ready for it) and return
    the box its outcome lands in."""
    box: list[tuple[Any, StoreError | None]] = []
    for _ in range(200):
        sid = c.leader_of(source)
        try:
            if sid is not None:
                c.stores[sid].merge(source, target, lambda r, e: box.append((r, e)))
                return box
        except RegionBusy:
            pass
        c.run_for(0.05)
    raise AssertionError("the merge was never accepted")


_STEPS: dict[str, Callable[[SimCluster, int, int, int], bool]] = {
    # Right after the proposal: nothing applied anywhere yet.
    "proposed": lambda c, sid, src, tgt: True,
    # The victim's source replica applied PrepareMerge.
    "prepared": lambda c, sid, src, tgt: src in c.stores[sid].peers and c.stores[sid].peers[src].merge_state is not None,
    # The victim's target replica waits for its source to catch up, or merged.
    "committing": lambda c, sid, src, tgt: bool(c.stores[sid].peers[tgt].pending_apply) or src not in c.stores[sid].peers,
    # The victim merged.
    "merged": lambda c, sid, src, tgt: src not in c.stores[sid].peers,
}


@pytest.mark.parametrize("step", list(_STEPS))
@pytest.mark.parametrize("victim", [1, 2, 3])
def test_a_crash_at_any_step_of_a_merge_ends_merged_or_unmerged_everywhere(victim: int, step: str) -> None:
    c = SimCluster(stores=3, seed=20 + victim, initial_regions=1, write_delay=(0.0005, 0.004))
    want = _keys(c)
    a, b = c.split(1, [b"m"])
    c.run_until(c.all_regions_have_leaders, timeout=10)
    box = _merge_async(c, a.id, b.id)
    try:
        c.run_until(lambda: _STEPS[step](c, victim, a.id, b.id), timeout=10, step=0.001)
    except TimeoutError:
        pass  # the step passed between two looks: crash at once
    c.crash(victim)
    c.run_for(1.0)
    c.restart(victim)
    c.run_until(lambda: _converged(c), timeout=60)
    layout = _layout(c)
    assert layout in ([(b"", b"")], [(b"", b"m"), (b"m", b"")]), layout
    _assert_data(c, want)
    c.run_until(lambda: len({tuple(_kv(s)) for s in c.stores.values()}) == 1, timeout=10)
    if layout == [(b"", b"")]:
        assert not box or box[0][1] is None


def _lead_on_1(c: SimCluster, *regions: int) -> None:
    """Leaders on store 1, which then knows how far every replica got (a merge needs that:
    a leader elected while a replica is cut off does not know it, and refuses to merge)."""
    for rid in regions:
        c.transfer_leader(rid, 1)
    c.run_for(0.5)


def test_an_isolated_source_replica_that_missed_the_merge_catches_up_through_the_target() -> None:
    """Store 3 misses the whole merge: the source group is gone on stores 1 and 2, so store
    3's target replica hands its source replica the entries carried by CommitMerge."""
    c = SimCluster(stores=3, seed=31, initial_regions=1)
    want = _keys(c)
    a, b = c.split(1, [b"m"])
    c.run_until(lambda: _converged(c), timeout=10)
    _lead_on_1(c, a.id, b.id)
    c.partition([3], [1, 2])
    c.put(b"c", b"during")  # in the source, after store 3 was cut off
    want[b"c"] = b"during"
    c.merge(a.id, b.id)
    c.heal()
    c.run_until(lambda: _converged(c), timeout=30)
    assert a.id not in c.stores[3].peers and c.stores[3].merged_into[a.id].id == b.id
    c.run_until(lambda: _kv(c.stores[3]) == _kv(c.stores[1]), timeout=10)
    assert dict(_kv(c.stores[3])) == want


def test_an_isolated_source_replica_is_replaced_by_the_merged_targets_snapshot() -> None:
    """As above, but the target's log was compacted meanwhile: store 3's target replica gets a
    snapshot covering the old source's range, which destroys the stale source replica."""
    c = SimCluster(stores=3, seed=32, initial_regions=1, store_config=StoreConfig(log_gc_keep=5))
    want = _keys(c)
    a, b = c.split(1, [b"m"])
    c.run_until(lambda: _converged(c), timeout=10)
    _lead_on_1(c, a.id, b.id)
    c.partition([3], [1, 2])
    merged = c.merge(a.id, b.id)
    for i in range(40):
        c.put(b"k%d" % i, b"x")
        want[b"k%d" % i] = b"x"
    assert merged.id == b.id
    c.heal()
    c.run_until(lambda: _converged(c), timeout=30)
    assert a.id not in c.stores[3].peers
    c.run_until(lambda: _kv(c.stores[3]) == _kv(c.stores[1]), timeout=10)
    assert dict(_kv(c.stores[3])) == want


def test_a_source_replica_left_alone_learns_of_the_merge_from_a_tombstone() -> None:
    """Store 3's source replica missed the merge and its target replica is gone from store 3
    (removed after the merge): the stores that merged answer its messages with a tombstone
    naming the merge target, and it destroys itself instead of blocking the range."""
    c = SimCluster(stores=4, seed=33, initial_regions=1, initial_stores=3)
    a, b = c.split(1, [b"m"])
    c.run_until(lambda: _converged(c), timeout=10)
    _lead_on_1(c, a.id, b.id)
    c.partition([3], [1, 2, 4])
    merged = c.merge(a.id, b.id)
    c.change_peer(merged.id, "add_voter", 4)
    c.change_peer(merged.id, "remove", 3)
    c.run_until(lambda: 4 in c.replica_stores(merged.id), timeout=20)
    c.heal()
    c.run_until(lambda: a.id not in c.stores[3].peers and merged.id not in c.stores[3].peers, timeout=30)
    assert c.stores[3].peers == {}


def test_split_then_merge_back_repeatedly() -> None:
    c = SimCluster(stores=3, seed=40, initial_regions=1)
    want = _keys(c)
    rng = random.Random(40)
    ids: set[int] = {1}
    version = 1
    for i in range(8):
        key = bytes([98 + rng.randrange(24)])
        left, right = c.split(1, [key])
        assert left.id not in ids
        ids.add(left.id)
        assert right.region_epoch.version > version
        merged = c.merge(left.id, 1) if i % 2 else c.merge(left.id, right.id)
        assert (merged.id, merged.start_key, merged.end_key) == (1, b"", b"")
        version = merged.region_epoch.version
        c.put(b"round", b"%d" % i)
        want[b"round"] = b"%d" % i
    c.run_until(lambda: _converged(c), timeout=30)
    for store in c.stores.values():
        assert set(store.peers) == {1}
        assert set(store.tombstones) == ids - {1} == set(store.merged_into)
        assert not store._merge_callbacks and not store._pending_votes and not store._replay
    _assert_data(c, want)


# -- randomized: histories stay linearizable while regions split and merge -----------------


def _split_merge_run(seed: int, steps: int = 50) -> dict[str, int]:
    rng = random.Random(seed)
    c = SimCluster(
        stores=3,
        seed=seed,
        initial_regions=1,
        faults=LinkFaults(min_latency=0.0005, max_latency=0.01, drop=0.02, duplicate=0.02),
        op_timeout=8.0,
        write_delay=(0.0005, 0.004) if seed % 2 else None,
    )
    keys = [bytes([k]) for k in b"bdfhjlnprtvx"]
    candidates = [bytes([k]) for k in b"cegikmoqsuw"]
    clients: list[SimOp | None] = [None] * 4
    outcomes: dict[str, int] = {}
    admin: list[tuple[str, list[tuple[Any, StoreError | None]]]] = []
    crashed: int | None = None
    for _ in range(steps):
        submit_random_ops(c, rng, keys, clients)
        regions = c.regions()
        if rng.random() < 0.25 and regions:
            # A split or a merge, asked of the region's leader (refusals are fine).
            if rng.random() < 0.5 or len(regions) == 1:
                region = rng.choice(regions)
                inside = [k for k in candidates if k > region.start_key and (not region.end_key or k < region.end_key)]
                sid = c.leader_of(region.id)
                if inside and sid is not None:
                    box: list[tuple[Any, StoreError | None]] = []
                    try:
                        c.stores[sid].split(region.id, sorted(rng.sample(inside, min(len(inside), rng.randint(1, 2)))), _into(box))
                        admin.append(("split", box))
                    except StoreError as e:
                        outcomes[f"split:{e.code}"] = outcomes.get(f"split:{e.code}", 0) + 1
            else:
                i = rng.randrange(len(regions) - 1)
                src, tgt = (regions[i], regions[i + 1]) if rng.random() < 0.5 else (regions[i + 1], regions[i])
                sid = c.leader_of(src.id)
                if sid is not None:
                    box = []
                    try:
                        c.stores[sid].merge(src.id, tgt.id, _into(box))
                        admin.append(("merge", box))
                    except StoreError as e:
                        outcomes[f"merge:{e.code}"] = outcomes.get(f"merge:{e.code}", 0) + 1
        crashed = inject_random_fault(c, rng, crashed)
        c.run_for(rng.uniform(0.05, 0.6))
    check_linearizable(c, crashed, seed)
    # The layout settles: every store agrees, the ranges tile the key space, and every
    # acknowledged state is readable through the regions that hold it now.
    c.run_until(lambda: _converged(c), timeout=120)
    layout = _layout(c)
    assert layout[0][0] == b"" and layout[-1][1] == b""
    assert all(layout[i][1] == layout[i + 1][0] for i in range(len(layout) - 1)), layout
    for kind, box in admin:
        key = f"{kind}:{'ok' if box and box[0][1] is None else (box[0][1].code if box and box[0][1] else 'pending')}"
        outcomes[key] = outcomes.get(key, 0) + 1
    return outcomes


def _into(box: list[tuple[Any, StoreError | None]]) -> Callable[[Any, StoreError | None], None]:
    return lambda r, e: box.append((r, e))


SEEDS = int(os.environ.get("MULTIRAFT_SPLIT_MERGE_SEEDS", "50"))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_histories_stay_linearizable_while_regions_split_and_merge(seed: int) -> None:
    _split_merge_run(20_000 + seed)


def test_the_randomized_run_does_split_and_merge() -> None:
    """The randomized test above is not vacuous: over a few seeds, splits and merges succeed."""
    total: dict[str, int] = {}
    for seed in range(3):
        for k, v in _split_merge_run(30_000 + seed).items():
            total[k] = total.get(k, 0) + v
    assert total.get("split:ok", 0) >= 3 and total.get("merge:ok", 0) >= 2, total


def test_simcluster_merge_raises_on_refusal() -> None:
    c = SimCluster(stores=3, seed=50, initial_regions=3)
    with pytest.raises((MergeRefused, OpFailed)):
        c.merge(1, 3)


# -- automatic split and merge -------------------------------------------------------------


def test_a_region_splits_by_size_and_merges_back_once_emptied() -> None:
    cfg = StoreConfig(
        region_split_size=2000,
        region_split_keys=0,
        region_merge_size=300,
        region_merge_keys=10,
        split_merge_cooldown_ticks=20,
    )
    c = SimCluster(stores=3, seed=60, initial_regions=1, store_config=cfg)
    for i in range(400):
        c.put(b"key%04d" % i, b"x" * 40)
    c.run_until(lambda: len(c.regions()) >= 8, timeout=60)
    # (A region split off last may still be electing its first leader.)
    c.run_until(lambda: _converged(c) and c.all_regions_have_leaders(), timeout=30)
    for r in c.regions():  # each piece is below the threshold, or about to split again
        leader = c.stores[c.leader_of(r.id) or 0].peers[r.id]
        assert leader.approx_bytes < 2 * cfg.region_split_size
    stats = [s.stats.splits for s in c.stores.values()]
    assert sum(v for st in stats for (t, o), v in st.items() if t == "size" and o == "ok") >= 7
    for i in range(400):
        assert c.get(b"key%04d" % i) == b"x" * 40
        c.delete(b"key%04d" % i)
    c.run_until(lambda: len(c.regions()) == 1, timeout=120)
    c.run_until(lambda: _converged(c), timeout=30)
    merges = [s.stats.merges for s in c.stores.values()]
    assert sum(v for st in merges for (t, o), v in st.items() if t == "auto" and o == "ok") >= 7
    c.put(b"after", b"1")
    assert c.get(b"after") == b"1"


def test_a_hot_region_splits_by_load_at_a_key_that_divides_it() -> None:
    cfg = StoreConfig(region_split_qps=50, split_qps_checks=2, auto_merge=False)
    c = SimCluster(stores=3, seed=61, initial_regions=1, store_config=cfg)
    rng = random.Random(61)
    keys = [b"k%03d" % i for i in range(100)]
    for k in keys:
        c.put(k, b"v")
    # ~200 reads/s over the keys (virtual time), for a few seconds.
    t_end = c.now + 6.0
    while c.now < t_end and len(c.regions()) == 1:
        for _ in range(4):
            c.submit_get(rng.choice(keys))
        c.run_for(0.02)
    c.run_until(lambda: all(o.done for o in c.ops), timeout=30)
    regions = c.regions()
    assert len(regions) >= 2
    boundary = regions[1].start_key
    assert keys[20] < boundary < keys[80]  # near the middle of the load
    assert any(o == "ok" and t == "load" for s in c.stores.values() for (t, o) in s.stats.splits)


def test_no_automatic_merge_with_auto_merge_off_or_before_the_cooldown() -> None:
    cfg = StoreConfig(region_merge_size=1000, region_merge_keys=100, split_merge_cooldown_ticks=50)
    c = SimCluster(stores=3, seed=62, initial_regions=4, store_config=cfg)
    c.run_for(3.0)  # 30 ticks: before the cooldown
    assert len(c.regions()) == 4
    c.run_until(lambda: len(c.regions()) < 4, timeout=30)
    off = StoreConfig(auto_merge=False, region_merge_size=1000, region_merge_keys=100, split_merge_cooldown_ticks=5)
    c = SimCluster(stores=3, seed=63, initial_regions=4, store_config=off)
    c.run_for(10.0)
    assert len(c.regions()) == 4
