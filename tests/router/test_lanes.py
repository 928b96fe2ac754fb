"""Per-store outbound lanes: one frame per destination store per round, size splits, bounded
lanes with counted drops."""

from __future__ import annotations

from multiraft.proto.serverpb_pb2 import RaftMessage
from router import FrameDecoder, OutboundLanes


def _msg(region: int, payload: int = 10) -> RaftMessage:
    m = RaftMessage(region_id=region)
    m.to_peer.store_id = 2
    m.message.msg_type = 8
    m.message.context = b"c" * payload
    return m


def _decode(frames: list[bytes]) -> list[list[int]]:
    dec = FrameDecoder()
    out = []
    for f in frames:
        for _, batch in dec.feed(f):
            out.append([m.region_id for m in batch.msgs])  # type: ignore[union-attr]
    return out


def test_many_regions_one_frame_per_store() -> None:
    lanes = OutboundLanes(1)
    for r in range(1000):
        lanes.push(2 + r % 2, _msg(r))
    frames = lanes.drain()
    assert sorted(frames) == [2, 3]
    assert all(len(fs) == 1 for fs in frames.values())
    assert sorted(_decode(frames[2])[0] + _decode(frames[3])[0]) == list(range(1000))
    assert lanes.stats.frames == 2 and lanes.stats.messages_framed == 1000
    assert lanes.drain() == {}  # lanes are empty after a drain


def test_split_past_the_size_limit_keeps_order() -> None:
    lanes = OutboundLanes(1, max_frame_bytes=1000)
    for r in range(50):
        lanes.push(2, _msg(r, payload=80))
    frames = lanes.drain()[2]
    assert len(frames) > 1
    assert all(len(f) <= 1000 + 100 for f in frames)
    regions = [r for batch in _decode(frames) for r in batch]
    assert regions == list(range(50))


def test_a_single_huge_message_still_goes_out() -> None:
    lanes = OutboundLanes(1, max_frame_bytes=100)
    lanes.push(2, _msg(1, payload=500))
    assert len(lanes.drain()[2]) == 1


def test_full_lane_drops_and_counts() -> None:
    lanes = OutboundLanes(1, max_lane_messages=10)
    dropped = lanes.push_many(2, [_msg(r) for r in range(15)])
    assert dropped == 5 and lanes.stats.messages_dropped == 5 and lanes.pending(2) == 10
    assert lanes.push(3, _msg(1))  # other lanes are unaffected
    lanes.drain()
    assert lanes.push(2, _msg(99))  # room again after the drain


def test_frames_carry_the_sender_and_clock() -> None:
    lanes = OutboundLanes(7)
    lanes.clock = 42
    lanes.push(2, _msg(1))
    dec = FrameDecoder()
    [(_, batch)] = dec.feed(lanes.drain()[2][0])
    assert batch.from_store_id == 7 and batch.last_observed_time == 42  # type: ignore[union-attr]


def test_a_serialized_envelope_reads_as_the_message_built_whole() -> None:
    """`envelope(header, message)`: the header's fields, then the message as field 4, parse
    as the RaftMessage built with all of them (protobuf takes fields in any order)."""
    from multiraft.proto.eraftpb_pb2 import Entry, Message, MessageType
    from multiraft.proto.serverpb_pb2 import Peer, RaftMessage, RegionEpoch
    from router.lanes import envelope

    whole = RaftMessage(
        region_id=7, from_peer=Peer(id=1, store_id=1), to_peer=Peer(id=2, store_id=2),
        region_epoch=RegionEpoch(conf_ver=3, version=4), start_key=b"a", end_key=b"z",
    )
    header = whole.SerializeToString()
    for size in (0, 100, 20_000):  # varint lengths of one, two and three bytes
        m = Message(msg_type=MessageType.MsgAppend, to=2, term=5,
                    entries=[Entry(index=9, term=5, data=b"x" * size)])
        whole.message.CopyFrom(m)
        assert RaftMessage.FromString(envelope(header, m.SerializeToString())) == whole
    lanes = OutboundLanes(1)
    lanes.push(2, envelope(header, m.SerializeToString()))
    lanes.push(2, whole)
    (frame,) = lanes.drain()[2]
    ((_, batch),) = FrameDecoder().feed(frame)
    assert list(batch.msgs) == [whole, whole]  # both kinds in one frame, alike
