"""Raft log GC, snapshots (data format, catch-up of a store that was down while the logs were
compacted, rejection of bad or overlapping snapshots) and request-id record GC."""

from __future__ import annotations

import pytest

from multiraft.engine import CF_APPLY_STATE, CF_KV, MemoryEngine, WriteBatch
from multiraft.store.dedupe import DedupeTable, dedupe_bounds
from multiraft.store.kv import Applied
from multiraft.store.region import new_region
from multiraft.store.snapshot import (
    SnapshotDecodeError,
    build_snapshot_data,
    decode_snapshot_data,
    write_snapshot_data,
)
from multiraft.store.store import RAFT_INIT_LOG_INDEX, StoreConfig
from multiraft.testing import SimCluster


def test_snapshot_data_round_trip_replaces_the_range_only() -> None:
    src = MemoryEngine()
    wb = WriteBatch()
    for k in (b"a", b"b", b"m", b"z"):
        wb.put(CF_KV, k, k * 2)
    DedupeTable(src, region_id=7).record(b"req-1", Applied((None,)), wb, index=12)
    src.write(wb)
    region = new_region(7, b"a", b"n", [(1, 1)])
    data = build_snapshot_data(src, region)

    dst = MemoryEngine()
    wb = WriteBatch()
    wb.put(CF_KV, b"c", b"stale")  # inside the range: replaced
    wb.put(CF_KV, b"x", b"other region")  # outside: untouched
    dst.write(wb)
    snap = decode_snapshot_data(data)
    assert snap.region == region
    wb = WriteBatch()
    write_snapshot_data(wb, snap)
    dst.write(wb)
    assert dst.scan(CF_KV) == [(b"a", b"aa"), (b"b", b"bb"), (b"m", b"mm"), (b"x", b"other region")]
    assert DedupeTable(dst, region_id=7).get(b"req-1", index=13) == Applied((None,))


@pytest.mark.parametrize("garbage", [b"", b"\x00\x01", b"\x94\x02\xc0\x90\x90", b"\x94\x01\xa1x\x91\x01\x90"])
def test_garbage_snapshot_data_is_refused(garbage: bytes) -> None:
    with pytest.raises(SnapshotDecodeError):
        decode_snapshot_data(garbage)


def test_dedupe_records_expire_by_log_position_and_are_collected() -> None:
    e = MemoryEngine()
    d = DedupeTable(e, region_id=3, window=10)
    wb = WriteBatch()
    d.record(b"r1", Applied(()), wb, index=5)
    d.record(b"r2", Applied(()), wb, index=9)
    e.write(wb)
    # Expiry depends on the index being applied only: every replica decides alike.
    assert d.get(b"r1", index=15) is not None
    assert d.get(b"r1", index=16) is None
    assert DedupeTable(e, region_id=3, window=10).get(b"r1", index=16) is None
    wb = WriteBatch()
    assert d.gc(wb, applied_index=16) == 1
    e.write(wb)
    lo, hi = dedupe_bounds(3)
    left = e.scan(CF_APPLY_STATE, lo, hi)
    assert [k for k, _ in left if b"r1" in k] == []
    assert len([k for k, _ in left if b"r2" in k]) == 2  # the record and its index entry


def test_log_gc_keeps_a_bounded_tail() -> None:
    c = SimCluster(stores=3, seed=21, initial_regions=1, store_config=StoreConfig(log_gc_keep=10))
    for i in range(80):
        c.put(b"k%d" % i, b"v")
    c.run_for(0.5)
    for store in c.stores.values():
        peer = store.peers[1]
        first = peer.storage.first_index()
        assert first > RAFT_INIT_LOG_INDEX + 1
        assert peer.applied_index - first < 3 * 10
        assert store.stats.log_compactions >= 2


def test_a_store_down_while_logs_were_compacted_catches_up_by_snapshot() -> None:
    c = SimCluster(stores=3, seed=23, initial_regions=2, store_config=StoreConfig(log_gc_keep=10))
    c.put(b"\x00before", b"1")
    c.crash(3)
    for i in range(100):
        c.put(b"\x00k%03d" % i, b"v%d" % i)
        c.put(b"\xffk%03d" % i, b"w%d" % i)
    c.delete(b"\x00before")
    leaders = [s for s in c.stores.values() if s.leaders()]
    assert all(p.storage.first_index() > 20 for s in leaders for p in s.peers.values() if p.is_leader())
    c.restart(3)
    want = {**{b"\x00k%03d" % i: b"v%d" % i for i in range(100)}, **{b"\xffk%03d" % i: b"w%d" % i for i in range(100)}}

    def caught_up() -> bool:
        return dict(c.stores[3].engine.scan(CF_KV)) == want

    c.run_until(caught_up, timeout=20)
    st = c.stores[3].stats
    assert st.snapshots_applied >= 2  # one per region
    # The snapshots moved the apply state too: a restart resumes from them.
    c.crash(3)
    c.restart(3)
    assert caught_up()
    for peer in c.stores[3].peers.values():
        assert peer.applied_index > 100 and peer.storage.first_index() > 100
    # And the store keeps up afterwards, through the log.
    c.put(b"\x00after", b"2")
    c.run_until(lambda: c.stores[3].engine.get(CF_KV, b"\x00after") == b"2", timeout=5)


def test_a_snapshot_that_overlaps_another_region_here_is_rejected() -> None:
    c = SimCluster(stores=4, seed=29, initial_regions=2, initial_stores=3, store_config=StoreConfig(log_gc_keep=10))
    c.put(b"\x00a", b"1")
    leader = c.stores[c.leader_of(1) or 0]
    snap_msg_data = build_snapshot_data(leader.engine, leader.peers[1].region)
    from multiraft.proto.serverpb_pb2 import RaftMessage
    from multiraft.raft import MessageType

    # Store 4 holds an initialized region covering the same keys (made up, for the test).
    st4 = c.stores[4]
    fake = new_region(50, b"\x00", b"\x01", [(9, 4)])
    fake.region_epoch.version = 1
    st4._open_peer(fake)
    # The message claims a range that is free here, so an uninitialized replica is created,
    # but the snapshot's region overlaps region 50: it is not applied.
    m = RaftMessage(region_id=1, start_key=b"\xf0", end_key=b"\xf1")
    m.from_peer.CopyFrom(leader.peers[1].meta)
    m.to_peer.id, m.to_peer.store_id = 12345, 4
    m.region_epoch.CopyFrom(leader.peers[1].region.region_epoch)
    m.message.msg_type = MessageType.MsgSnapshot
    m.message.snapshot.data = snap_msg_data
    st4.on_raft_message(m)
    c.run_for(0.1)
    assert not st4.peers[1].initialized
    assert st4.stats.snapshots_rejected == 1
    assert st4.stats.snapshots_applied == 0
