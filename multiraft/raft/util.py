"""Small helpers shared by the core modules (raft-rs `util.rs`)."""

from __future__ import annotations

from collections.abc import Iterator, Set
from typing import TypeVar

from .eraftpb import Entry, Message, MessageType, Snapshot

__all__ = [
    "NO_LIMIT",
    "INVALID_ID",
    "INVALID_INDEX",
    "limit_size",
    "entry_size",
    "entry_approximate_size",
    "is_continuous_ents",
    "is_empty_snap",
    "is_local_msg",
    "is_response_msg",
    "vote_resp_msg_type",
    "majority",
    "quorum",
    "Union",
]

# A constant represents invalid id of raft.
INVALID_ID = 0
# A constant represents invalid index of raft log.
INVALID_INDEX = 0
# "No limit" for sizes (raft-rs `u64::MAX`).
NO_LIMIT = (1 << 64) - 1

# Upper bound of the protobuf framing around an entry's payloads: five tags, three 10-byte
# varints (entry_type, term, index), two 5-byte length prefixes and a bool.
_ENTRY_OVERHEAD_BOUND = 5 + 30 + 10 + 2

T = TypeVar("T", bound=Entry)


def entry_size(e: Entry) -> int:
    """The encoded size of an entry (what raft-rs's `compute_size` returns)."""
    return e.ByteSize()


def limit_size(entries: list[T], max_size: int | None) -> None:
    """Truncate `entries` in place so their total encoded size is at most `max_size`.

    At least one entry is always kept (raft-rs semantics: a single oversized entry must still
    make progress). `None` or `NO_LIMIT` keeps everything.
    """
    if len(entries) <= 1 or max_size is None or max_size == NO_LIMIT:
        return
    # Fast path: a cheap upper bound of the total size fits, so nothing is cut. This keeps
    # protobuf's ByteSize() (~0.5 µs per entry) off the replication hot path.
    bound = 0
    for e in entries:
        bound += len(e.data) + len(e.context) + _ENTRY_OVERHEAD_BOUND
    if bound <= max_size:
        return
    size = 0
    for i, e in enumerate(entries):
        size += e.ByteSize()
        if i > 0 and size > max_size:
            del entries[i:]
            return


def entry_approximate_size(e: Entry) -> int:
    """An upper estimate of an entry's encoded size without encoding it: its payloads plus 12
    bytes of tags and small varints (raft-rs's constant)."""
    return len(e.data) + len(e.context) + 12


def is_continuous_ents(msg: Message, ents: list[Entry]) -> bool:
    """Whether `ents` start right after the last entry of `msg` (true if either is empty)."""
    if msg.entries and ents:
        return msg.entries[-1].index + 1 == ents[0].index
    return True


def is_empty_snap(s: Snapshot) -> bool:
    """A snapshot whose metadata index is 0 carries nothing."""
    return s.metadata.index == 0


_LOCAL_MSGS = frozenset(
    {
        MessageType.MsgHup,
        MessageType.MsgBeat,
        MessageType.MsgUnreachable,
        MessageType.MsgSnapStatus,
        MessageType.MsgCheckQuorum,
    }
)

_RESPONSE_MSGS = frozenset(
    {
        MessageType.MsgAppendResponse,
        MessageType.MsgRequestVoteResponse,
        MessageType.MsgHeartbeatResponse,
        MessageType.MsgUnreachable,
        MessageType.MsgRequestPreVoteResponse,
    }
)


def is_local_msg(t: int) -> bool:
    """Messages that are generated and consumed by the node itself, never sent over the wire."""
    return t in _LOCAL_MSGS


def is_response_msg(t: int) -> bool:
    """Messages that answer a request of a peer (a response from an unknown peer is an error)."""
    return t in _RESPONSE_MSGS


def vote_resp_msg_type(t: int) -> int:
    """The response type of a (pre-)vote request type."""
    if t == MessageType.MsgRequestVote:
        return MessageType.MsgRequestVoteResponse
    if t == MessageType.MsgRequestPreVote:
        return MessageType.MsgRequestPreVoteResponse
    raise ValueError(f"Not a vote message: {MessageType.Name(t)}")


def majority(total: int) -> int:
    """The size of a majority of `total` voters."""
    return total // 2 + 1


def quorum(total: int) -> int:
    """Calculate the quorum of a Raft cluster with the specified total nodes (raft-rs's name
    before 0.6; `majority` since)."""
    return majority(total)


class Union:
    """Queries over two id sets at once without building their union (raft-rs `util::Union`;
    the second set is usually empty)."""

    __slots__ = ("first", "second")

    def __init__(self, first: Set[int], second: Set[int]) -> None:
        self.first = first
        self.second = second

    def contains(self, id: int) -> bool:
        """Whether `id` is in either set."""
        return id in self.first or id in self.second

    __contains__ = contains

    def iter(self) -> Iterator[int]:
        """The distinct ids of both sets."""
        yield from self.first
        for id in self.second:
            if id not in self.first:
                yield id

    __iter__ = iter

    def is_empty(self) -> bool:
        return not self.first and not self.second

    def len(self) -> int:
        """The number of distinct ids, O(len(second))."""
        return len(self.first) + sum(1 for id in self.second if id not in self.first)

    __len__ = len
