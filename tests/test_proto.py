"""The wire schemas: eraftpb field numbers match raft-rs's, and serverpb envelopes round-trip."""

from __future__ import annotations

from multiraft.proto import eraftpb_pb2, serverpb_pb2

# Field numbers of raft-rs's eraftpb.proto (the wire format must match).
RAFT_RS_FIELDS = {
    "Entry": {"entry_type": 1, "term": 2, "index": 3, "data": 4, "sync_log": 5, "context": 6},
    "SnapshotMetadata": {"conf_state": 1, "index": 2, "term": 3},
    "Snapshot": {"data": 1, "metadata": 2},
    "Message": {
        "msg_type": 1, "to": 2, "from_": 3, "term": 4, "log_term": 5, "index": 6, "entries": 7,
        "commit": 8, "snapshot": 9, "reject": 10, "reject_hint": 11, "context": 12,
        "request_snapshot": 13, "deprecated_priority": 14, "commit_term": 15, "priority": 16,
    },
    "HardState": {"term": 1, "vote": 2, "commit": 3},
    "ConfState": {"voters": 1, "learners": 2, "voters_outgoing": 3, "learners_next": 4, "auto_leave": 5},
    "ConfChange": {"id": 1, "change_type": 2, "node_id": 3, "context": 4},
    "ConfChangeSingle": {"change_type": 1, "node_id": 2},
    "ConfChangeV2": {"transition": 1, "changes": 2, "context": 3},
}


def test_eraftpb_field_numbers_match_raft_rs() -> None:
    for msg, fields in RAFT_RS_FIELDS.items():
        desc = getattr(eraftpb_pb2, msg).DESCRIPTOR
        got = {f.name: f.number for f in desc.fields}
        assert got == fields, msg


def test_message_type_values_match_raft_rs() -> None:
    names = [
        "MsgHup", "MsgBeat", "MsgPropose", "MsgAppend", "MsgAppendResponse", "MsgRequestVote",
        "MsgRequestVoteResponse", "MsgSnapshot", "MsgHeartbeat", "MsgHeartbeatResponse",
        "MsgUnreachable", "MsgSnapStatus", "MsgCheckQuorum", "MsgTransferLeader", "MsgTimeoutNow",
        "MsgReadIndex", "MsgReadIndexResp", "MsgRequestPreVote", "MsgRequestPreVoteResponse",
    ]
    assert [eraftpb_pb2.MessageType.Value(n) for n in names] == list(range(len(names)))


def test_batch_raft_message_round_trip() -> None:
    m = serverpb_pb2.RaftMessage(region_id=7, start_key=b"a", end_key=b"m")
    m.from_peer.id, m.from_peer.store_id = 1, 1
    m.to_peer.id, m.to_peer.store_id = 2, 2
    m.region_epoch.conf_ver, m.region_epoch.version = 3, 4
    m.message.msg_type = eraftpb_pb2.MsgAppend
    m.message.entries.add(term=2, index=5, data=b"x")
    m.extra_msg.type = serverpb_pb2.MsgHibernateRequest
    batch = serverpb_pb2.BatchRaftMessage(msgs=[m, m], from_store_id=1)
    back = serverpb_pb2.BatchRaftMessage.FromString(batch.SerializeToString())
    assert back == batch
    assert back.msgs[1].message.entries[0].data == b"x"
