"""The window of in-flight appends to one follower (raft-rs `tracker/inflights.rs`)."""

from __future__ import annotations

from collections import deque

__all__ = ["Inflights"]


class Inflights:
    """The last index of each in-flight MsgAppend, oldest first, at most `cap` of them.

    Invariant: the indexes are strictly increasing.
    """

    __slots__ = ("cap", "_buffer", "_incoming_cap")

    def __init__(self, cap: int) -> None:
        # The maximum number of in-flight messages.
        self.cap = cap
        self._buffer: deque[int] = deque()
        # A capacity to switch to once the window drains below it (set_cap while full).
        self._incoming_cap: int | None = None

    def __len__(self) -> int:
        return len(self._buffer)

    def count(self) -> int:
        """The number of in-flight messages."""
        return len(self._buffer)

    def full(self) -> bool:
        return len(self._buffer) >= self.cap

    def add(self, inflight: int) -> None:
        """Record a message whose last entry has index `inflight`."""
        assert not self.full(), "cannot add into a full inflights"
        buf = self._buffer
        assert not buf or buf[-1] < inflight, f"inflights must increase: {buf[-1]} >= {inflight}"
        buf.append(inflight)

    def set_cap(self, incoming_cap: int) -> None:
        """Change the capacity. Shrinking below the current count takes effect as messages
        are freed."""
        if incoming_cap >= len(self._buffer):
            self.cap = incoming_cap
            self._incoming_cap = None
        else:
            self._incoming_cap = incoming_cap

    def free_to(self, to: int) -> None:
        """Free every in-flight message whose index is <= `to`."""
        buf = self._buffer
        while buf and buf[0] <= to:
            buf.popleft()
        self._apply_incoming_cap()

    def free_first_one(self) -> None:
        if self._buffer:
            self._buffer.popleft()
        self._apply_incoming_cap()

    def reset(self) -> None:
        self._buffer.clear()
        self._apply_incoming_cap()

    def _apply_incoming_cap(self) -> None:
        if self._incoming_cap is not None and len(self._buffer) <= self._incoming_cap:
            self.cap = self._incoming_cap
            self._incoming_cap = None

    def maybe_free_buffer(self) -> None:
        """Release memory of an empty window (a deque frees as it shrinks)."""

    def buffer_is_allocated(self) -> bool:
        return bool(self._buffer)

    def __repr__(self) -> str:
        return f"Inflights(cap={self.cap}, {list(self._buffer)})"
