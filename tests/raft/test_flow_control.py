"""Flow control, size limits, snapshots, request_snapshot, group commit and priority
(raft-rs test_raft.rs, test_raft_flow_control.rs and test_raft_snap.rs cases, re-derived).

Rules (as raft-rs 0.7 behaves):

* "Probe: one append per heartbeat, then paused. Replicate: optimistic next, with an
  Inflights ring (a heartbeat response frees one slot when full). Snapshot: no appends."
* "report_unreachable: Replicate -> Probe."
* A snapshot is "sent when the needed term or entries are compacted, and only if the peer is
  recent_active"; "a report of Finish or Failure moves it to Probe and pauses it"; "an ack at
  index >= pending moves it to Probe".
* request_snapshot "requires a known leader, no pending snapshot, and last-entry term ==
  current term ... cleared on a term change or on becoming candidate".
* max_uncommitted_size: "Empty entries always pass, and one entry always passes when the
  count is 0. The count resets to 0 on election (a soft limit)."
"""

from __future__ import annotations

import pytest

from multiraft.raft import (
    Config,
    MemStorage,
    MessageType,
    ProposalDropped,
    RequestSnapshotDropped,
    StateRole,
)
from multiraft.raft.confchange.conf_change import into_v2
from multiraft.raft.eraftpb import (
    ConfChange,
    ConfChangeType,
    ConfChangeV2,
    Entry,
    HardState,
    Message,
)
from multiraft.raft.raft import Raft
from multiraft.raft.tracker import ProgressState
from multiraft.raft.util import INVALID_INDEX, NO_LIMIT
from multiraft.testing.network import (
    Network,
    empty_entry,
    new_entry,
    new_message,
    new_snapshot,
    new_storage,
    new_test_config,
    new_test_raft,
    new_test_raft_with_config,
    next_ents,
)

from .conftest import commit_noop_entry, persist, read_messages

MT = MessageType
SOME_DATA = b"somedata"


def _leader(peers: list[int], election: int = 10, cfg: Config | None = None) -> Raft[MemStorage]:
    if cfg is None:
        r = new_test_raft(1, peers, election, 1)
    else:
        r = new_test_raft_with_config(cfg, new_storage(peers))
    r.become_candidate()
    r.become_leader()
    return r


def _propose(r: Raft[MemStorage], data: bytes = SOME_DATA) -> None:
    m = new_message(1, 1, MT.MsgPropose)
    m.entries.add(data=data)
    r.step(m)


def _app_resp(from_: int, index: int, reject: bool = False) -> Message:
    m = new_message(from_, 1, MT.MsgAppendResponse)
    m.index = index
    m.reject = reject
    return m


# -- Probe / Replicate / Snapshot ---------------------------------------------------------


def test_progress_resume_by_heartbeat_resp() -> None:
    """A heartbeat does not unpause a probed peer; its heartbeat response does (and, in
    Probe, lets exactly one new append go out, which pauses it again)."""
    r = _leader([1, 2], election=5)
    pr = r.prs.progress[2]
    pr.pause()
    r.step(new_message(1, 1, MT.MsgBeat))
    assert pr.paused
    assert [m.msg_type for m in read_messages(r)] == [MT.MsgHeartbeat]
    r.step(new_message(2, 1, MT.MsgHeartbeatResponse))
    msgs = read_messages(r)
    assert [(m.msg_type, m.index) for m in msgs] == [(MT.MsgAppend, 0)]
    assert pr.paused
    # In Replicate state the paused flag is simply cleared.
    pr.pause()
    pr.become_replicate()
    r.step(new_message(2, 1, MT.MsgHeartbeatResponse))
    assert not pr.paused


def test_progress_paused() -> None:
    """In Probe state, three proposals produce one append."""
    r = _leader([1, 2])
    for _ in range(3):
        _propose(r)
    assert len(read_messages(r)) == 1


def test_progress_flow_control() -> None:
    """max_inflight_msgs 3 and max_size_per_msg 2048 with 1000-byte entries (two per
    message): one probe; after its ack, three messages fill the window; acking all three
    releases the last two (three entries left)."""
    cfg = new_test_config(1, 5, 1)
    cfg.max_inflight_msgs = 3
    cfg.max_size_per_msg = 2048
    r = _leader([1, 2], cfg=cfg)
    read_messages(r)
    # While node 2 is in probe state, propose a bunch of entries.
    r.prs.progress[2].become_probe()
    data = b"a" * 1000
    for _ in range(10):
        _propose(r, data)
    ms = read_messages(r)
    # The probe holds the leader's empty entry and the first proposal only: the others came
    # after the probe paused the peer.
    assert len(ms) == 1 and ms[0].msg_type == MT.MsgAppend
    assert [len(e.data) for e in ms[0].entries] == [0, 1000]
    # Its ack moves node 2 to Replicate: three messages of two entries fill the window.
    r.step(_app_resp(2, ms[0].entries[1].index))
    ms = read_messages(r)
    assert [(m.msg_type, len(m.entries)) for m in ms] == [(MT.MsgAppend, 2)] * 3
    assert r.prs.progress[2].ins.full()
    # Ack all three at once: the last three entries go out in two messages.
    r.step(_app_resp(2, ms[2].entries[1].index))
    ms = read_messages(r)
    assert [(m.msg_type, len(m.entries)) for m in ms] == [(MT.MsgAppend, 2), (MT.MsgAppend, 1)]


def test_send_append_for_progress_probe() -> None:
    """In Probe, one append per heartbeat interval: after the probe, nothing until a
    heartbeat response."""
    r = _leader([1, 2])
    read_messages(r)
    r.prs.progress[2].become_probe()
    # Each round is a heartbeat.
    for i in range(3):
        if i == 0:
            # Only one MsgAppend goes out in the first round; then the follower is paused
            # until a heartbeat response arrives.
            r.append_entry([new_entry(0, 0, SOME_DATA)])
            r.send_append(2)
            msgs = read_messages(r)
            assert [(m.msg_type, m.index) for m in msgs] == [(MT.MsgAppend, 0)]
        assert r.prs.progress[2].paused
        for _ in range(10):
            r.append_entry([new_entry(0, 0, SOME_DATA)])
            r.send_append(2)
            assert read_messages(r) == []
        # A heartbeat does not unpause it.
        for _ in range(r.heartbeat_timeout):
            r.step(new_message(1, 1, MT.MsgBeat))
        assert r.prs.progress[2].paused
        msgs = read_messages(r)
        assert [m.msg_type for m in msgs] == [MT.MsgHeartbeat]
    # A heartbeat response allows another message.
    r.step(new_message(2, 1, MT.MsgHeartbeatResponse))
    msgs = read_messages(r)
    assert [(m.msg_type, m.index) for m in msgs] == [(MT.MsgAppend, 0)]
    assert r.prs.progress[2].paused


def test_send_append_for_progress_replicate() -> None:
    """In Replicate, every new entry goes out at once."""
    r = _leader([1, 2])
    read_messages(r)
    r.prs.progress[2].become_replicate()
    for _ in range(10):
        r.append_entry([new_entry(0, 0, SOME_DATA)])
        r.send_append(2)
        assert len(read_messages(r)) == 1


def test_send_append_for_progress_snapshot() -> None:
    """In Snapshot state, nothing is appended."""
    r = _leader([1, 2])
    read_messages(r)
    r.prs.progress[2].become_snapshot(10)
    for _ in range(10):
        r.append_entry([new_entry(0, 0, SOME_DATA)])
        r.send_append(2)
        assert read_messages(r) == []


def test_recv_msg_unreachable() -> None:
    """An unreachable report moves a Replicate peer back to Probe at matched + 1 (a pipelined
    append was probably lost)."""
    s = new_storage([1, 2])
    s.wl().append([empty_entry(1, 1), empty_entry(1, 2), empty_entry(1, 3)])
    r = new_test_raft(1, [1, 2], 10, 1, s)
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    pr = r.prs.progress[2]
    pr.matched = 3
    pr.become_replicate()
    pr.optimistic_update(5)
    r.step(new_message(2, 1, MT.MsgUnreachable))
    assert pr.state == ProgressState.Probe
    assert pr.next_idx == pr.matched + 1 == 4


def test_batch_msg_append() -> None:
    """With batch_append, new entries join the MsgAppend already queued for a peer; an append
    that does not continue it is sent separately."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.become_candidate()
    r.become_leader()
    r.set_batch_append(True)
    commit_noop_entry(r, r.raft_log.store)
    for _ in range(10):
        r.step(new_message(1, 1, MT.MsgPropose, 1))
    assert [(m.to, m.index, len(m.entries)) for m in r.msgs] == [(2, 1, 10), (3, 1, 10)]
    # A rejection makes node 2 probe again from index 2; that append cannot extend the
    # queued one (it does not start after entry 11).
    r.step(_app_resp(2, 2, reject=True))
    assert len(r.msgs) == 3
    assert (r.msgs[2].to, r.msgs[2].index) == (2, 1)


def _replicate_leader(max_inflight: int) -> Raft[MemStorage]:
    cfg = new_test_config(1, 5, 1)
    cfg.max_inflight_msgs = max_inflight
    r = _leader([1, 2], cfg=cfg)
    # Force node 2 into Replicate state.
    r.prs.progress[2].become_replicate()
    return r


def _fill_window(r: Raft[MemStorage]) -> None:
    for i in range(r.max_inflight):
        r.step(new_message(1, 1, MT.MsgPropose, 1))
        assert len(read_messages(r)) == 1, i


def test_msg_app_flow_control_full() -> None:
    """Once max_inflight appends are in flight, further proposals send nothing."""
    r = _replicate_leader(8)
    _fill_window(r)
    assert r.prs.progress[2].ins.full()
    for i in range(10):
        r.step(new_message(1, 1, MT.MsgPropose, 1))
        assert read_messages(r) == [], i


def test_msg_app_flow_control_move_forward() -> None:
    """An ack frees the window up to its index; stale acks free nothing."""
    r = _replicate_leader(8)
    _fill_window(r)
    pr = r.prs.progress[2]
    # Entry 1 is the leader's empty entry, sent with the first proposal (entry 2): the
    # in-flight messages end at 2, 3, ..., 9.
    for tt in range(2, r.max_inflight):
        # Move the window forward.
        r.step(_app_resp(2, tt))
        read_messages(r)
        # Fill it again: exactly one message fits.
        r.step(new_message(1, 1, MT.MsgPropose, 1))
        assert len(read_messages(r)) == 1, tt
        assert pr.ins.full()
        # Acks below or at the window's start free nothing.
        for i in range(tt):
            r.step(_app_resp(2, i))
            assert pr.ins.full(), (tt, i)


def test_msg_app_flow_control_recv_heartbeat() -> None:
    """A heartbeat response frees one slot of a full window (and only one)."""
    r = _replicate_leader(8)
    _fill_window(r)
    pr = r.prs.progress[2]
    for tt in range(1, 5):
        assert pr.ins.full(), tt
        # Receive tt heartbeat responses: one slot is freed, later ones do nothing.
        for i in range(tt):
            r.step(new_message(2, 1, MT.MsgHeartbeatResponse))
            read_messages(r)
            assert not pr.ins.full(), (tt, i)
        # One slot.
        r.step(new_message(1, 1, MT.MsgPropose, 1))
        assert len(read_messages(r)) == 1, tt
        # And just one.
        for i in range(10):
            r.step(new_message(1, 1, MT.MsgPropose, 1))
            assert read_messages(r) == [], (tt, i)
        # A heartbeat response frees a slot; the pending entries go in one message.
        r.step(new_message(2, 1, MT.MsgHeartbeatResponse))
        msgs = read_messages(r)
        assert [(m.msg_type, len(m.entries)) for m in msgs] == [(MT.MsgAppend, 10)]


def test_disable_progress() -> None:
    """An Inflights capacity of 0 disables a peer in Replicate state; raising it resumes."""
    r = _replicate_leader(8)
    read_messages(r)
    r.adjust_max_inflight_msgs(2, 0)
    assert r.prs.progress[2].is_paused()
    for _ in range(3):
        r.step(new_message(1, 1, MT.MsgPropose, 1))
    assert read_messages(r) == []
    r.adjust_max_inflight_msgs(2, 1)
    assert not r.prs.progress[2].is_paused()
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    msgs = read_messages(r)
    # The one message carries every pending entry (the empty one and four proposals).
    assert [(m.to, len(m.entries)) for m in msgs] == [(2, 5)]
    assert r.prs.progress[2].is_paused()
    # Unknown peers are ignored.
    r.adjust_max_inflight_msgs(7, 0)


def test_maybe_free_inflight_buffers() -> None:
    r = _replicate_leader(8)
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    ins = r.prs.progress[2].ins
    assert ins.buffer_is_allocated()
    r.maybe_free_inflight_buffers()
    assert ins.buffer_is_allocated()  # still in use
    r.step(_app_resp(2, r.raft_log.last_index()))
    r.maybe_free_inflight_buffers()
    assert not ins.buffer_is_allocated()


@pytest.mark.parametrize(
    "max_size, want",
    [
        (0, [1, 1, 1, 1, 1]),  # 0 = one entry per message
        (250, [2, 2, 1]),  # ~110 bytes per entry
        (NO_LIMIT, [5]),
        (1, [1, 1, 1, 1, 1]),  # an oversized entry still goes out, alone
    ],
)
def test_max_size_per_msg(max_size: int, want: list[int]) -> None:
    """max_size_per_msg caps the bytes of entries per MsgAppend, at least one entry each."""
    cfg = new_test_config(1, 10, 1)
    cfg.max_size_per_msg = max_size
    r = _leader([1, 2], cfg=cfg)
    commit_noop_entry(r, r.raft_log.store)
    read_messages(r)  # the empty append spreading the commit index
    for _ in range(5):
        r.append_entry([Entry(data=b"x" * 100)])
    r.send_append_aggressively(2)
    msgs = read_messages(r)
    assert [len(m.entries) for m in msgs] == want
    for m in msgs:
        if len(m.entries) > 1 and max_size != NO_LIMIT:
            assert sum(e.ByteSize() for e in m.entries) <= max_size


# -- uncommitted size ------------------------------------------------------------------------


def test_uncommitted_entries_size_limit() -> None:
    """Beyond max_uncommitted_size proposals are dropped; empty entries always pass; one entry
    always passes when nothing is uncommitted; committed entries release their bytes."""
    cfg = Config(id=1, max_uncommitted_size=12)
    n = Network([None, None, None], cfg)
    n.send([new_message(1, 1, MT.MsgHup)])
    leader = n.peer(1)

    def prop(data: bytes) -> Message:
        m = new_message(1, 1, MT.MsgPropose)
        m.entries.add(data=data)
        return m

    data = b"hello world!"
    n.dispatch([prop(data)])
    with pytest.raises(ProposalDropped):
        n.dispatch([prop(data)])
    # An empty entry is accepted.
    n.dispatch([prop(b"")])
    # After the entry commits its bytes are released (the app reports committed entries).
    leader.reduce_uncommitted_size([Entry(index=3, data=data)])
    assert leader.uncommitted_size == 0
    # A huge proposal is accepted when nothing is uncommitted, even over the limit...
    n.dispatch([prop(b"hello world and raft")])
    # ...but not a second one.
    with pytest.raises(ProposalDropped):
        n.dispatch([prop(b"hello world and raft")])
    n.dispatch([prop(b"")])
    assert leader.uncommitted_size == len(b"hello world and raft")


def test_uncommitted_entry_after_leader_election() -> None:
    """A new leader starts counting at 0: uncommitted entries of earlier terms are not
    counted (a soft limit), and do not count when they commit either."""
    cfg = Config(id=1, max_uncommitted_size=12)
    n = Network([None, None, None, None, None], cfg)
    n.send([new_message(1, 1, MT.MsgHup)])
    # Leave an uncommitted entry on node 2.
    n.cut(1, 3)
    n.cut(1, 4)
    n.cut(1, 5)
    m = new_message(1, 1, MT.MsgPropose)
    m.entries.add(data=b"hello world!")
    n.send([m])
    assert n.peer(1).uncommitted_size == 12
    # Node 1 is isolated; node 2 is elected by votes only.
    n.isolate(1)
    n.ignore(MT.MsgAppend)
    n.send([new_message(2, 2, MT.MsgHup)])
    p2 = n.peer(2)
    assert p2.state == StateRole.Leader
    assert p2.uncommitted_size == 0
    # Its own proposals are counted from 0.
    m = new_message(2, 2, MT.MsgPropose)
    m.entries.add(data=b"hello world!")
    p2.step(m)
    assert p2.uncommitted_size == 12
    # The old entry (index 2) commits with the new ones: only index 4 is subtracted.
    p2.reduce_uncommitted_size([new_entry(1, 2, b"hello world!"), empty_entry(2, 3), new_entry(2, 4, b"hello world!")])
    assert p2.uncommitted_size == 0


# -- snapshots -------------------------------------------------------------------------------


def _snap_leader(peers: list[int] = [1]) -> Raft[MemStorage]:  # noqa: B006 - read only
    """Leader 1 (term 1) restored from a snapshot (11, 11) of voters {1, 2}."""
    sm = new_test_raft(1, peers, 10, 1)
    assert sm.restore(new_snapshot(11, 11, [1, 2]))
    persist(sm)
    sm.become_candidate()
    sm.become_leader()
    return sm


def test_sending_snapshot_set_pending_snapshot() -> None:
    sm = _snap_leader()
    # Node 2 needs entries before the first index: a snapshot.
    sm.prs.progress[2].next_idx = sm.raft_log.first_index()
    sm.step(_app_resp(2, sm.prs.progress[2].next_idx - 1, reject=True))
    assert sm.prs.progress[2].state == ProgressState.Snapshot
    assert sm.prs.progress[2].pending_snapshot == 11


def test_pending_snapshot_pause_replication() -> None:
    sm = _snap_leader()
    sm.prs.progress[2].become_snapshot(11)
    sm.step(new_message(1, 1, MT.MsgPropose, 1))
    assert read_messages(sm) == []


@pytest.mark.parametrize(
    "reject, wnext", [(True, 1), (False, 12)], ids=["snapshot_failure", "snapshot_succeed"]
)
def test_snapshot_report(reject: bool, wnext: int) -> None:
    """snapshot_failure / snapshot_succeed: the report moves the peer to Probe, paused. After
    a failure it probes from matched + 1; after a success from just past the snapshot."""
    sm = _snap_leader()
    pr = sm.prs.progress[2]
    pr.next_idx = 1
    pr.become_snapshot(11)
    m = new_message(2, 1, MT.MsgSnapStatus)
    m.reject = reject
    sm.step(m)
    assert pr.state == ProgressState.Probe
    assert pr.pending_snapshot == 0
    assert pr.next_idx == wnext
    assert pr.paused


def test_snapshot_abort() -> None:
    """An acknowledgement at or above the pending snapshot's index ends the Snapshot state."""
    sm = _snap_leader()
    pr = sm.prs.progress[2]
    pr.next_idx = 1
    pr.become_snapshot(11)
    sm.step(_app_resp(2, 11))
    assert pr.state == ProgressState.Probe
    assert pr.pending_snapshot == 0
    assert pr.next_idx == 12


def test_restore() -> None:
    s = new_snapshot(11, 11, [1, 2, 3])
    sm = new_test_raft(1, [1, 2], 10, 1)
    assert sm.restore(s)
    assert sm.raft_log.last_index() == 11
    assert sm.raft_log.term(11) == 11
    assert sm.prs.conf.voters.ids() == {1, 2, 3}
    assert not sm.restore(s)


def test_restore_ignore_snapshot() -> None:
    """A snapshot at or below the commit index is ignored; one whose last entry the log
    already has only fast-forwards the commit index."""
    sm = new_test_raft(1, [1, 2], 10, 1)
    sm.raft_log.append([empty_entry(1, 1), empty_entry(1, 2), empty_entry(1, 3)])
    sm.raft_log.commit_to(1)
    s = new_snapshot(1, 1, [1, 2])
    assert not sm.restore(s)
    assert sm.raft_log.committed == 1
    s.metadata.index = 2
    assert not sm.restore(s)
    assert sm.raft_log.committed == 2
    assert sm.raft_log.last_index() == 3


def test_provide_snap() -> None:
    sm = _snap_leader()
    sm.prs.progress[2].next_idx = sm.raft_log.first_index()
    sm.step(_app_resp(2, sm.prs.progress[2].next_idx - 1, reject=True))
    msgs = read_messages(sm)
    assert [(m.msg_type, m.snapshot.metadata.index) for m in msgs] == [(MT.MsgSnapshot, 11)]


def test_ignore_providing_snapshot() -> None:
    """No snapshot goes to a peer that was not recently active."""
    sm = _snap_leader()
    pr = sm.prs.progress[2]
    pr.next_idx = sm.raft_log.first_index() - 1
    pr.recent_active = False
    sm.step(new_message(1, 1, MT.MsgPropose, 1))
    assert read_messages(sm) == []
    assert pr.state == ProgressState.Probe


def test_restore_from_snap_msg() -> None:
    sm = new_test_raft(2, [1, 2], 10, 1)
    m = new_message(1, 2, MT.MsgSnapshot)
    m.term = 2
    m.snapshot.CopyFrom(new_snapshot(11, 11, [1, 2]))
    sm.step(m)
    assert sm.leader_id == 1
    assert sm.raft_log.committed == 11


def test_slow_node_restore() -> None:
    """A node that missed compacted entries catches up through a snapshot, then appends."""
    n = Network([None, None, None])
    n.send([new_message(1, 1, MT.MsgHup)])
    n.isolate(3)
    for _ in range(100):
        n.send([new_message(1, 1, MT.MsgPropose, 1)])
    leader = n.peer(1)
    next_ents(leader, n.storage[1])
    n.storage[1].wl().compact(leader.raft_log.applied)
    n.recover()
    # Heartbeats until the leader learns node 3 is active (a snapshot goes out then).
    for _ in range(10):
        n.send([new_message(1, 1, MT.MsgBeat)])
        if leader.prs.progress[3].recent_active:
            break
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    n.send([new_message(1, 1, MT.MsgPropose, 1)])
    assert n.peer(3).raft_log.committed == leader.raft_log.committed == 103
    assert n.peer(3).raft_log.first_index() > 1


# -- request_snapshot ------------------------------------------------------------------------


def _request_snapshot_cluster() -> Network:
    """Three nodes restored from a snapshot (11, 11); node 1 leads term 12; entries 13 and 14
    are committed everywhere."""
    peers = []
    for id in (1, 2, 3):
        s = MemStorage()
        s.wl().apply_snapshot(new_snapshot(11, 11, [1, 2, 3]))
        r = new_test_raft(id, [1, 2, 3], 5, 1, s)
        r.reset(11)
        peers.append(r)
    n = Network(peers)
    n.send([new_message(1, 1, MT.MsgHup)])
    m = new_message(1, 1, MT.MsgPropose)
    m.entries.add(data=b"testdata")
    n.send([m, m])
    for id in (1, 2, 3):
        assert n.peer(id).raft_log.committed == 14
    return n


def _take_request(r: Raft[MemStorage]) -> Message:
    msgs = read_messages(r)
    assert len(msgs) == 1
    m = msgs[0]
    assert (m.msg_type, m.reject, m.to) == (MT.MsgAppendResponse, True, r.leader_id)
    return m


def test_follower_request_snapshot() -> None:
    """An up-to-date follower asks for a snapshot; the leader sends one and stops replicating
    to it until the snapshot is reported; then replication resumes."""
    n = _request_snapshot_cluster()
    p1, p2 = n.peer(1), n.peer(2)
    p2.request_snapshot()
    req = _take_request(p2)
    assert req.request_snapshot == 14
    p1.step(req)
    pr = p1.prs.progress[2]
    assert (pr.state, pr.pending_snapshot) == (ProgressState.Snapshot, 14)
    # New proposals are not replicated to node 2 (the snapshot goes out with them).
    m = new_message(1, 1, MT.MsgPropose)
    m.entries.add(data=b"testdata")
    n.send([m])
    assert p1.raft_log.committed == 15
    assert pr.state == ProgressState.Snapshot
    assert p2.raft_log.committed == 14
    assert p2.pending_request_snapshot == INVALID_INDEX
    # Until the snapshot is reported.
    n.send([new_message(2, 1, MT.MsgSnapStatus)])
    assert (pr.state, pr.paused) == (ProgressState.Probe, True)
    n.send([new_message(2, 1, MT.MsgHeartbeatResponse)])
    assert p2.raft_log.committed == 15
    n.send([m])
    assert p1.raft_log.committed == p2.raft_log.committed == 16


def test_request_snapshot_unavailable() -> None:
    """SnapshotTemporarilyUnavailable keeps the peer in Probe; the repeated request (not
    stale, although it does not answer the last probe) finally gets it."""
    n = _request_snapshot_cluster()
    p1, p2 = n.peer(1), n.peer(2)
    p2.request_snapshot()
    req = _take_request(p2)
    for _ in range(2):
        p1.raft_log.store.wl().trigger_snap_unavailable()
        p1.step(req)
        assert p1.prs.progress[2].state == ProgressState.Probe
        assert p1.prs.progress[2].pending_request_snapshot == 14
    p1.step(req)
    assert p1.prs.progress[2].state == ProgressState.Snapshot


def test_request_snapshot_matched_change() -> None:
    """A request whose index is below the peer's matched index is out of order and ignored;
    the follower repeats it in answer to the next heartbeat, which the leader honours."""
    n = _request_snapshot_cluster()
    p1, p2 = n.peer(1), n.peer(2)
    # Let matched be greater than the follower's committed index.
    p2.raft_log.committed -= 1
    p2.request_snapshot()
    p1.step(_take_request(p2))
    assert p1.prs.progress[2].state == ProgressState.Replicate
    for _ in range(p1.heartbeat_timeout):
        p1.tick()
    hb = [m for m in read_messages(p1) if m.to == 2][0]
    p2.step(hb)
    p1.step(_take_request(p2))
    assert p1.prs.progress[2].state == ProgressState.Snapshot


def test_request_snapshot_none_replicate() -> None:
    """A request is recorded in any progress state, not only Replicate."""
    n = _request_snapshot_cluster()
    p1, p2 = n.peer(1), n.peer(2)
    p1.prs.progress[2].become_probe()
    p2.request_snapshot()
    p1.step(_take_request(p2))
    assert p1.prs.progress[2].pending_request_snapshot == 14


def test_request_snapshot_step_down() -> None:
    """A request sent to a deposed leader is lost, but the follower repeats it to the new
    leader (on its heartbeat) and is served."""
    n = _request_snapshot_cluster()
    n.isolate(2)
    m = new_message(1, 1, MT.MsgPropose)
    m.entries.add(data=b"testdata")
    n.send([m])
    n.send([new_message(3, 3, MT.MsgHup)])
    assert n.peer(3).state == StateRole.Leader
    n.recover()
    p2 = n.peer(2)
    p2.request_snapshot()
    assert p2.pending_request_snapshot == 14
    n.send([new_message(3, 3, MT.MsgBeat)])
    assert p2.pending_request_snapshot == INVALID_INDEX
    assert (p2.leader_id, p2.raft_log.committed) == (3, n.peer(3).raft_log.committed)


def test_request_snapshot_on_role_change() -> None:
    n = _request_snapshot_cluster()
    p1, p2 = n.peer(1), n.peer(2)
    p2.request_snapshot()
    # Becoming follower does not reset pending_request_snapshot.
    p2.become_follower(p1.term, p1.id)
    assert p2.pending_request_snapshot != INVALID_INDEX
    # Becoming candidate does.
    p2.become_candidate()
    assert p2.pending_request_snapshot == INVALID_INDEX


def test_request_snapshot_after_term_change() -> None:
    n = _request_snapshot_cluster()
    p2 = n.peer(2)
    p2.request_snapshot()
    assert p2.pending_request_snapshot != INVALID_INDEX
    p2.reset(n.peer(1).term + 1)
    assert p2.pending_request_snapshot == INVALID_INDEX


def test_request_snapshot_dropped() -> None:
    """request_snapshot raises RequestSnapshotDropped without a leader, on the leader, with
    a pending request, and when the last entry is not of the current term."""
    sm = new_test_raft(1, [1, 2], 10, 1)
    assert sm.restore(new_snapshot(11, 11, [1, 2]))
    persist(sm)
    with pytest.raises(RequestSnapshotDropped):
        sm.request_snapshot()  # no leader
    sm.become_candidate()
    sm.become_leader()
    with pytest.raises(RequestSnapshotDropped):
        sm.request_snapshot()  # leader
    n = _request_snapshot_cluster()
    p2 = n.peer(2)
    p2.request_snapshot()
    with pytest.raises(RequestSnapshotDropped):
        p2.request_snapshot()  # already pending
    p3 = n.peer(3)
    p3.become_follower(p3.term + 1, 1)  # last entry of term 12, current term 13
    with pytest.raises(RequestSnapshotDropped):
        p3.request_snapshot()


# -- group commit ------------------------------------------------------------------------------


# (matched index of peers 1.., commit group of each (0 = none), committed with group commit,
# committed with a plain quorum). Rule: sort by matched index, descending; the quorum index
# q is the majority-th one. With group commit, scan from the top for a peer of a group other
# than the quorum peer's: the committed index is min(its index, q). No such peer: q if every
# peer is in the same group, else (some peers have no group) the smallest matched index.
_GROUP_COMMIT = [
    ([1], [0], 1, 1),
    ([1], [1], 1, 1),
    ([2, 2, 1], [1, 2, 1], 2, 2),
    ([2, 2, 1], [1, 1, 2], 1, 2),
    ([2, 2, 1], [1, 0, 1], 1, 2),
    ([2, 2, 1], [0, 0, 0], 1, 2),
    ([4, 2, 1, 3], [0, 0, 0, 0], 1, 2),
    ([4, 2, 1, 3], [1, 0, 0, 0], 1, 2),
    ([4, 2, 1, 3], [0, 1, 0, 2], 2, 2),
    ([4, 2, 1, 3], [0, 2, 1, 0], 1, 2),
    ([4, 2, 1, 3], [1, 1, 1, 1], 2, 2),
    ([4, 2, 1, 3], [1, 1, 2, 1], 1, 2),
    ([4, 2, 1, 3], [1, 2, 1, 1], 2, 2),
    ([4, 2, 1, 3], [4, 3, 2, 1], 2, 2),
]


@pytest.mark.parametrize("matches, groups, g_w, q_w", _GROUP_COMMIT)
def test_group_commit(matches: list[int], groups: list[int], g_w: int, q_w: int) -> None:
    """With group commit an entry commits once replicated to at least two commit groups;
    a follower never commits by itself; disabling group commit falls back to the quorum."""
    store = new_storage([1])
    store.wl().append([empty_entry(1, i) for i in range(min(matches), max(matches) + 1)])
    store.wl().set_hardstate(HardState(term=1))
    sm = new_test_raft_with_config(new_test_config(1, 5, 1), store)
    assert sm.prs.progress[1].matched == matches[0] == max(matches)
    assigned = []
    for id, (m, g) in enumerate(zip(matches, groups, strict=True), 1):
        if id != 1:
            sm.apply_conf_change(_add_node_v2(id))
            pr = sm.prs.progress[id]
            pr.matched, pr.next_idx = m, m + 1
        if g != 0:
            assigned.append((id, g))
    sm.enable_group_commit(True)
    sm.assign_commit_groups(assigned)
    assert sm.raft_log.committed == 0
    sm.state = StateRole.Leader
    sm.assign_commit_groups(assigned)
    assert sm.raft_log.committed == g_w
    sm.enable_group_commit(False)
    assert sm.raft_log.committed == q_w


def _add_node_v2(id: int) -> ConfChangeV2:
    return into_v2(ConfChange(change_type=ConfChangeType.AddNode, node_id=id))


# -- priority -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "l1, l2, l3, p1, p2, p3, wstate",
    [
        # Node 1 has the longer log: priorities do not matter.
        (True, False, False, 3, 1, 1, StateRole.Leader),
        (True, False, False, 2, 2, 2, StateRole.Leader),
        (True, False, False, 1, 3, 3, StateRole.Leader),
        # Equal logs: voters with a higher priority than node 1 refuse it.
        (True, True, True, 3, 1, 1, StateRole.Leader),
        (True, True, True, 2, 2, 2, StateRole.Leader),
        (True, True, True, 1, 3, 3, StateRole.Follower),
        # Node 1's log is behind: refused whatever its priority.
        (False, True, True, 3, 1, 1, StateRole.Follower),
        (False, True, True, 2, 2, 2, StateRole.Follower),
        (False, True, True, 1, 3, 3, StateRole.Follower),
        # Node 2 (equal log, higher priority) and node 3 (longer log) both refuse.
        (False, False, True, 1, 3, 1, StateRole.Follower),
        # Node 2 (equal log, equal priority) grants: elected with 2 of 3.
        (False, False, True, 1, 1, 3, StateRole.Leader),
    ],
)
def test_election_with_priority_log(
    l1: bool, l2: bool, l3: bool, p1: int, p2: int, p3: int, wstate: StateRole
) -> None:
    """"A voter whose log is as long as the candidate's refuses a candidate with lower
    priority than its own"; the log rule comes first."""
    rafts = []
    for id, has_log, prio in ((1, l1, p1), (2, l2, p2), (3, l3, p3)):
        r = new_test_raft(id, [1, 2, 3], 10, 1)
        r.set_priority(prio)
        if has_log:
            r.raft_log.append([new_entry(1, 1, SOME_DATA), new_entry(1, 2, SOME_DATA)])
        rafts.append(r)
    n = Network(rafts)
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == wstate


def test_election_after_change_priority() -> None:
    """A node wins by raising its priority and loses by lowering it (RawNode.set_priority
    changes it at runtime)."""
    n = Network([None, None, None])
    for id, prio in ((1, 1), (2, 2), (3, 3)):
        n.peer(id).set_priority(prio)
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == StateRole.Follower
    n.peer(1).set_priority(3)
    n.send([new_message(1, 1, MT.MsgHup)])
    assert n.peer(1).state == StateRole.Leader
    n.peer(1).set_priority(1)
    n.send([new_message(2, 2, MT.MsgHup)])
    assert n.peer(2).state == StateRole.Leader
    assert n.peer(1).state == StateRole.Follower


def test_vote_request_carries_priority() -> None:
    r = new_test_raft(1, [1, 2], 10, 1)
    r.set_priority(7)
    r.step(new_message(1, 1, MT.MsgHup))
    msgs = read_messages(r)
    assert [(m.msg_type, m.priority) for m in msgs] == [(MT.MsgRequestVote, 7)]
