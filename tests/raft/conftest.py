"""Shared helpers for the raft core tests."""

from __future__ import annotations

from multiraft.raft.eraftpb import Message, MessageType
from multiraft.raft.raft import Raft
from multiraft.raft.storage import MemStorage
from multiraft.testing.network import Interface, new_message


def read_messages(r: Raft[MemStorage]) -> list[Message]:
    msgs, r.msgs = r.msgs, []
    return msgs


def persist(r: Raft[MemStorage]) -> None:
    Interface(r).persist()


def accept_and_reply(m: Message) -> Message:
    """A follower's acceptance of an append."""
    assert m.msg_type == MessageType.MsgAppend
    reply = new_message(m.to, m.from_, MessageType.MsgAppendResponse)
    reply.term = m.term
    reply.index = m.index + len(m.entries)
    return reply


def commit_noop_entry(r: Raft[MemStorage], s: MemStorage) -> None:
    """Commit the new leader's empty entry: followers accept it, the leader persists it."""
    from multiraft.raft.raft import StateRole

    assert r.state == StateRole.Leader
    r.bcast_append()
    for m in read_messages(r):
        assert m.msg_type == MessageType.MsgAppend
        assert len(m.entries) == 1 and not m.entries[0].data
        r.step(accept_and_reply(m))
    # Ignore further messages that refresh the followers' commit index.
    read_messages(r)
    persist(r)
    r.commit_apply(r.raft_log.committed)


def sorted_msgs(msgs: list[Message]) -> list[Message]:
    return sorted(msgs, key=lambda m: (m.to, m.msg_type))


def ents_terms(r: Raft[MemStorage]) -> list[tuple[int, int]]:
    return [(e.term, e.index) for e in r.raft_log.all_entries()]
