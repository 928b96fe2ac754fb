"""Fuzz a store's inbound raft traffic (multiraft/store/messages.py): `Store.on_frame` (the
bytes of frames from other stores: recorded real traffic mutated, structured batches of raft
messages with fields off — regions, peers, epochs, terms, indexes, message types, tombstones,
extra messages —, random bytes) and `Store.on_snapshot` (a snapshot's header and data:
built from the real region and mutated, or garbage), delivered to store 1 of a simulated
three-store cluster (two regions, their leaders elsewhere) between its rounds.

The contract: nothing raises, in the delivery or in any store's rounds after it; afterwards
the cluster elects leaders, serves reads and writes, and every key written before the fuzzing
reads back unchanged. (A well-formed message from a member is trusted, as in raft and TiKV —
a forged tombstone or snapshot can take store 1's replica out — so the data is checked on the
cluster, whose quorum does not depend on store 1.)"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any, cast

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.engine import CF_KV, MemoryEngine
from multiraft.proto.eraftpb_pb2 import MessageType
from multiraft.proto.serverpb_pb2 import BatchRaftMessage, RaftMessage
from multiraft.store.snapshot import build_snapshot_data
from multiraft.store.store import StoreConfig
from multiraft.testing import SimCluster
from router.codec import RAFT, encode_batch, encode_frame

from .strategies import raft_messages
from .support import fan_out, fuzz_settings, guard, mutate_bytes, run_inputs, seeds

SENTINELS = {b"\x00sentinel-store-1": b"one", b"\xf0sentinel-store-2": b"two"}
FUZZED = 1
RECORDED = 100


class Cluster:
    """The simulated cluster, the frames store 1 received lately, and snapshot material."""

    def __init__(self) -> None:
        self.c = SimCluster(stores=3, seed=11, initial_regions=2,
                            store_config=StoreConfig(log_gc_keep=50))
        self.recorded: list[bytes] = []
        self.recording = True
        net = self.c.net
        deliver = net._deliver

        def record(to: int, frm: int, frame: bytes) -> None:
            if self.recording and to == FUZZED and len(self.recorded) < RECORDED:
                self.recorded.append(frame)
            deliver(to, frm, frame)

        net._deliver = record
        for k, v in SENTINELS.items():
            self.c.put(k, v)
        for r in self.c.regions():
            if self.c.leader_of(r.id) == FUZZED:
                self.c.transfer_leader(r.id, 2)
        i = 0
        while len(self.recorded) < RECORDED:  # traffic to record
            self.c.put(b"warm-%d" % i, b"x" * (i % 7))
            self.c.run_for(0.05)
            i += 1
        self.recording = False
        assert len(self.recorded) == RECORDED

    @property
    def store(self) -> Any:
        return self.c.stores[FUZZED]

    def snapshot_material(self) -> list[tuple[bytes, bytes]]:
        """(header, data) of a snapshot of each region as its leader's store would send one
        to store 1 now."""
        out = []
        for r in self.c.regions():
            leader_sid = self.c.leader_of(r.id)
            ours = self.store.peers.get(r.id)
            if leader_sid is None or leader_sid == FUZZED or ours is None:
                continue
            leader = self.c.stores[leader_sid].peers[r.id]
            m = RaftMessage(region_id=r.id, region_epoch=r.region_epoch)
            m.from_peer.CopyFrom(leader.meta)
            m.to_peer.CopyFrom(ours.meta)
            m.message.msg_type = MessageType.MsgSnapshot
            m.message.term = leader.node.term()
            m.message.to = ours.meta.id
            m.message.from_ = leader.meta.id
            meta = m.message.snapshot.metadata
            meta.index, meta.term = leader.applied_index, leader.node.term()
            meta.conf_state.voters.extend(p.id for p in r.peers)
            engine = self.c.engines[leader_sid]
            assert isinstance(engine, MemoryEngine)
            with engine.snapshot() as view:
                data = build_snapshot_data(view, r)
            out.append((m.SerializeToString(), data))
        return out

    def settle(self) -> None:
        self.c.run_for(0.02)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    quiet = logging.getLogger("multiraft")
    level = quiet.level
    c = Cluster()
    quiet.setLevel(logging.CRITICAL)  # thousands of dropped messages would only slow the run
    yield c
    quiet.setLevel(level)


# -- inputs -------------------------------------------------------------------------------------


# How a generated message is addressed (resolved against the cluster when it is sent, so
# that the strategies do not depend on its state): left as generated, or to store 1's
# replica of region `n` from another store's replica (`n`, `sender`), with the real epoch
# or not.
addressing = st.one_of(
    st.none(),
    st.tuples(st.integers(0, 1), st.integers(0, 1), st.booleans()),
    st.tuples(st.integers(0, 1), st.integers(0, 1), st.booleans()),
    st.tuples(st.integers(0, 1), st.integers(0, 1), st.booleans()),
)
addressed = st.lists(st.tuples(raft_messages, addressing), min_size=1, max_size=3)


def _address(cl: Cluster, msgs: list[tuple[RaftMessage, Any]], from_store: int) -> bytes:
    regions = sorted(
        (p.region for p in cl.store.peers.values() if p.initialized), key=lambda r: r.start_key
    )
    batch = BatchRaftMessage(from_store_id=from_store)
    for m, how in msgs:
        m = RaftMessage.FromString(m.SerializeToString())
        if how is not None and regions:
            n, sender, real_epoch = how
            region = regions[n % len(regions)]
            m.region_id = region.id
            ours = [p for p in region.peers if p.store_id == FUZZED]
            others = [p for p in region.peers if p.store_id != FUZZED]
            if ours:
                m.to_peer.CopyFrom(ours[0])
            if others:
                m.from_peer.CopyFrom(others[sender % len(others)])
            m.message.to = m.to_peer.id
            m.message.from_ = m.from_peer.id
            if real_epoch:
                m.region_epoch.CopyFrom(region.region_epoch)
        batch.msgs.append(m)
    return encode_batch(batch)


# -- the contract -------------------------------------------------------------------------------


def _deliver_frame(cl: Cluster, frm: int, data: bytes) -> None:
    with guard(len(data), memory=False):
        cl.store.on_frame(frm, data)
        cl.settle()


def _deliver_snapshot(cl: Cluster, frm: int, header: bytes, data: bytes) -> None:
    with guard(len(header) + len(data), memory=False):
        cl.store.on_snapshot(frm, header, data)
        cl.settle()


@fuzz_settings(2000)
@given(st.data(), seeds)
def test_store_on_frame(cluster: Cluster, data: st.DataObject, seed: int) -> None:
    cl = cluster
    frm = data.draw(st.sampled_from([2, 3, 9]))
    kind, what = cast(tuple[str, Any], data.draw(st.one_of(
        st.tuples(st.just("recorded"), st.integers(0, RECORDED - 1)),
        st.tuples(st.just("addressed"), addressed),
        st.tuples(st.just("bytes"), st.binary(max_size=128)),
    )))
    if kind == "recorded":
        frame = cl.recorded[what]
    elif kind == "addressed":
        frame = _address(cl, what, frm)
    else:
        frame = what

    def variants() -> Iterator[bytes]:
        yield frame
        rng = random.Random(seed)
        for _ in range(fan_out()):
            if rng.random() < 0.5 and len(frame) > 5:
                # A mutated payload in a well-formed frame: the protobuf parser gets it.
                yield encode_frame(RAFT, mutate_bytes(rng, frame[5:]))
            else:
                yield mutate_bytes(rng, frame)

    run_inputs("store.on_frame", variants(), lambda d: _deliver_frame(cl, frm, d))


@fuzz_settings(1000)
@given(st.data(), seeds)
def test_store_on_snapshot(cluster: Cluster, data: st.DataObject, seed: int) -> None:
    cl = cluster
    frm = data.draw(st.sampled_from([2, 3, 9]))
    kind, what = cast(tuple[str, Any], data.draw(st.one_of(
        st.tuples(st.just("material"), st.integers(0, 1)),
        st.tuples(st.just("header"), st.tuples(raft_messages, st.binary(max_size=64))),
        st.tuples(st.just("bytes"), st.tuples(st.binary(max_size=64), st.binary(max_size=64))),
    )))
    material = cl.snapshot_material() if kind == "material" else []
    if material:
        header, snap = material[what % len(material)]
    elif kind == "header":
        header, snap = what[0].SerializeToString(), what[1]
    elif kind == "material":
        header, snap = b"", b""
    else:
        header, snap = what

    def variants() -> Iterator[tuple[bytes, bytes]]:
        yield header, snap
        rng = random.Random(seed)
        for _ in range(fan_out()):
            r = rng.random()
            if r < 0.4:
                yield header, mutate_bytes(rng, snap)
            elif r < 0.7:
                yield mutate_bytes(rng, header), snap
            elif r < 0.85:
                yield header, _mutate_snapshot_tree(rng, snap)
            else:
                yield mutate_bytes(rng, header), mutate_bytes(rng, snap)

    run_inputs(
        "store.on_snapshot", variants(), lambda hs: _deliver_snapshot(cl, frm, hs[0], hs[1])
    )


def _mutate_snapshot_tree(rng: random.Random, snap: bytes) -> bytes:
    from .support import mutate_tree

    try:
        tree = msgpack.unpackb(snap, raw=False)
    except Exception:
        return mutate_bytes(rng, snap)
    data: bytes = msgpack.packb(mutate_tree(rng, tree), use_bin_type=True)
    return data


def _leaders(c: SimCluster) -> None:
    try:
        c.run_until(c.all_regions_have_leaders, timeout=60)
    except TimeoutError:
        raise AssertionError(
            "no leader: "
            + "; ".join(
                f"region {r.id} [{r.start_key!r}, {r.end_key!r}) epoch "
                f"{(r.region_epoch.conf_ver, r.region_epoch.version)} peers "
                f"{[(p.id, p.store_id, p.role) for p in r.peers]} leader {c.leader_of(r.id)}"
                for r in c.regions()
            )
        ) from None


def test_cluster_serves_after_fuzzing(cluster: Cluster) -> None:
    """Runs after the fuzz tests (same module fixture): the data as it was, a write and a
    read through, leaders everywhere.

    Store 1 is restarted first. Well-formed forgeries among the inputs (a leader transfer to
    store 1's replica, then a tombstone naming a newer configuration: raft and the store trust
    a member) can leave a region whose leader was that replica without one while store 1
    lives: its followers hibernate, and only a silent store wakes them. A restart is silence."""
    c = cluster.c
    c.run_for(5.0)
    c.crash(FUZZED)
    c.run_for(1.0)
    c.restart(FUZZED)
    _leaders(c)
    for k, v in SENTINELS.items():
        assert c.get(k) == v
    c.put(b"after-the-fuzz", b"v")
    assert c.get(b"after-the-fuzz") == b"v"


def test_on_frame_drops_an_unfinished_frame() -> None:
    """Deliveries are whole frames: bytes of a frame that cannot complete (here a length of
    64 MiB) are dropped with the delivery, not kept to swallow the frames that follow."""
    c = SimCluster(stores=3, seed=3, initial_regions=1)
    store = c.stores[1]
    before = store.stats.bad_frames
    store.on_frame(2, b"\x03\xff\xff\xff\x02")  # header only: 64 MiB announced
    assert store.stats.bad_frames == before + 1
    c.put(b"k", b"v")  # store 2's next frames reach store 1 again
    c.run_until(lambda: c.engines[1].get(CF_KV, b"k") == b"v", timeout=30)



def test_a_destroyed_replica_is_not_recreated_under_its_old_id() -> None:
    """Found by the fuzzer: a tombstone naming a newer configuration destroyed store 1's
    replica; a message to the same peer id with a newer conf_ver then created it again,
    empty, and the leader's next heartbeat (commit = what the old replica had acked) failed
    raft's check `to_commit 7 is out of range [last_index 0]` inside `on_frame`. Peer ids are
    never reused: such a message must not create a replica (TiKV's rule)."""
    c = SimCluster(stores=3, seed=3, initial_regions=1)
    for i in range(5):
        c.put(b"k%d" % i, b"v")
    store = c.stores[1]
    region = store.peers[1].region
    ours = next(p for p in region.peers if p.store_id == 1)
    sender = next(p for p in region.peers if p.store_id == 2)

    def forged(**fields: Any) -> bytes:
        m = RaftMessage(region_id=1, **fields)
        m.from_peer.CopyFrom(sender)
        m.to_peer.CopyFrom(ours)
        m.region_epoch.conf_ver = region.region_epoch.conf_ver + 5
        m.region_epoch.version = region.region_epoch.version
        return encode_batch(BatchRaftMessage(from_store_id=2, msgs=[m]))

    store.on_frame(2, forged(is_tombstone=True))
    c.run_for(0.1)
    assert 1 not in store.peers  # trusted, as in TiKV: a newer configuration removed it
    hb = forged()
    m = BatchRaftMessage.FromString(hb[5:])
    m.msgs[0].message.msg_type = MessageType.MsgHeartbeat
    store.on_frame(2, encode_batch(m))
    assert 1 not in store.peers
    c.run_for(2.0)  # the leader's heartbeats to the old peer id: dropped, nothing raises
    assert c.get(b"k4") == b"v"


def test_a_message_of_an_unknown_type_is_dropped() -> None:
    """Found by the fuzzer: one bit flipped in a real MsgAppend (type 3 -> 35, a number no
    MessageType has: protobuf enums are open) made raft's step raise ValueError while
    logging the type's name, out of `on_frame`, losing the rest of the batch."""
    c = SimCluster(stores=3, seed=3, initial_regions=1)
    c.put(b"k", b"v")
    store = c.stores[1]
    region = store.peers[1].region
    m = RaftMessage(region_id=1, region_epoch=region.region_epoch)
    m.from_peer.CopyFrom(next(p for p in region.peers if p.store_id == 2))
    m.to_peer.CopyFrom(next(p for p in region.peers if p.store_id == 1))
    m.message.msg_type = 35  # type: ignore[assignment]
    m.message.to = m.to_peer.id
    m.message.from_ = m.from_peer.id
    dropped = store.stats.dropped_messages
    store.on_frame(2, encode_batch(BatchRaftMessage(from_store_id=2, msgs=[m, m])))
    assert store.stats.dropped_messages == dropped + 2
    c.put(b"k2", b"v2")
    assert c.get(b"k") == b"v"


def test_a_message_raft_cannot_take_is_dropped() -> None:
    """Found by the fuzzer: a recorded heartbeat with one bit flipped (its region id, to 0)
    created an empty replica of region 0, and raft refused the heartbeat's commit index (37,
    past that replica's empty log: `to_commit 37 is out of range [last_index 0]`) with an
    AssertionError out of `on_frame`. Ids start at 1 (a zero names nothing), and a message
    raft cannot take is dropped alone, the store going on."""
    c = SimCluster(stores=3, seed=3, initial_regions=1)
    c.put(b"k", b"v")
    store = c.stores[1]
    region = store.peers[1].region
    m = RaftMessage(region_id=0, region_epoch=region.region_epoch)
    m.from_peer.CopyFrom(next(p for p in region.peers if p.store_id == 2))
    m.to_peer.CopyFrom(next(p for p in region.peers if p.store_id == 1))
    m.message.msg_type = MessageType.MsgHeartbeat
    m.message.to = m.to_peer.id
    m.message.from_ = m.from_peer.id
    m.message.term = store.peers[1].node.term()
    m.message.commit = 37
    store.on_frame(2, encode_batch(BatchRaftMessage(from_store_id=2, msgs=[m])))
    assert 0 not in store.peers
    # The same heartbeat to region 1, its commit index past the replica's log.
    m.region_id = 1
    m.message.commit = store.peers[1].node.last_index() + 1000
    dropped = store.stats.dropped_messages
    store.on_frame(2, encode_batch(BatchRaftMessage(from_store_id=2, msgs=[m])))
    assert store.stats.dropped_messages == dropped + 1
    c.put(b"k2", b"v2")
    assert c.get(b"k") == b"v" and c.get(b"k2") == b"v2"
