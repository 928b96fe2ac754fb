"""The window of in-flight appends to one follower (raft-rs `tracker/inflights.rs`).

In Replicate state the leader records the last index of every MsgAppend it sends (`add`) and
stops sending when `full()`; an acknowledgement frees everything up to the acked index
(`free_to`), a heartbeat response to a full window frees one slot (`free_first_one`).
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["Inflights"]


class Inflights:
    """A bounded FIFO of in-flight MsgAppend last indexes, oldest first.

    Invariant: the indexes are strictly increasing.
    Invariant: count() <= cap.
    Invariant: a pending shrink (`set_cap` below the current count) implies
               count() > the pending capacity; it takes effect as soon as count() fits.

    `count()` is a method (raft-rs spelling), as are `full()` and `buffer_is_allocated()`.
    """

    __slots__ = ("cap", "_buffer", "_incoming_cap", "_allocated")

    def __init__(self, cap: int) -> None:
        # The maximum number of in-flight messages (0 disables sending in Replicate state).
        self.cap = cap
        # The last index of each in-flight message, oldest first. A list, not a deque: an
        # empty deque costs ~600 bytes and every peer of every region holds one of these
        # (windows are at most max_inflight_msgs long, so front deletion stays cheap).
        self._buffer: list[int] = []
        # A smaller capacity asked for by set_cap while more messages than it were in flight.
        self._incoming_cap: int | None = None
        # Mirrors raft-rs's lazily allocated ring buffer: set by add(), cleared by reset()
        # and maybe_free_buffer(). Only observable through buffer_is_allocated/_capacity.
        self._allocated = False

    def __len__(self) -> int:
        return len(self._buffer)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Inflights):
            return NotImplemented
        return (
            self.cap == other.cap
            and self._incoming_cap == other._incoming_cap
            and self._buffer == other._buffer
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        pending = f", incoming_cap={self._incoming_cap}" if self._incoming_cap is not None else ""
        return f"Inflights(cap={self.cap}{pending}, {list(self._buffer)})"

    def count(self) -> int:
        """The number of in-flight messages."""
        return len(self._buffer)

    def full(self) -> bool:
        """Whether no more message may be sent. While a shrink is pending the window holds
        more than the new capacity, so it is full (raft-rs: `count >= incoming_cap`)."""
        return len(self._buffer) >= self.cap or self._incoming_cap is not None

    def add(self, inflight: int) -> None:
        """Record a message whose last entry has index `inflight`."""
        buf = self._buffer
        assert not (len(buf) >= self.cap or self._incoming_cap is not None), (
            "cannot add into a full inflights"
        )
        assert not buf or buf[-1] < inflight, f"inflights must increase: {buf[-1]} >= {inflight}"
        buf.append(inflight)
        self._allocated = True

    def free_to(self, to: int) -> None:
        """Free every in-flight message whose index is <= `to`."""
        buf = self._buffer
        if not buf or to < buf[0]:
            # Out of the left side of the window (a stale or duplicate acknowledgement).
            return
        if to >= buf[-1]:
            # The common case: the acknowledgement covers the whole window.
            buf.clear()
        else:
            del buf[: bisect_right(buf, to)]
        if self._incoming_cap is not None:
            self._apply_incoming_cap()

    def free_first_one(self) -> None:
        """Free the oldest in-flight message (no-op on an empty window)."""
        if self._buffer:
            del self._buffer[0]
            if self._incoming_cap is not None:
                self._apply_incoming_cap()

    def reset(self) -> None:
        """Forget every in-flight message and release the buffer; a pending shrink applies."""
        self._buffer.clear()
        self._allocated = False
        if self._incoming_cap is not None:
            self.cap = self._incoming_cap
            self._incoming_cap = None

    def set_cap(self, incoming_cap: int) -> None:
        """Change the capacity (raft-rs `set_cap`; 0 disables the peer).

        Growing (or keeping) the capacity applies at once and cancels a pending shrink.
        Shrinking applies at once if the in-flight messages fit in the new capacity;
        otherwise `full()` holds until enough messages are freed, and then `cap` changes.
        raft-rs keeps the old `cap` value until the window is empty; `full()` answers the same
        either way, which is all the protocol looks at.
        """
        if incoming_cap >= self.cap or len(self._buffer) <= incoming_cap:
            self.cap = incoming_cap
            self._incoming_cap = None
        else:
            self._incoming_cap = incoming_cap

    def _apply_incoming_cap(self) -> None:
        incoming = self._incoming_cap
        if incoming is not None and len(self._buffer) <= incoming:
            self.cap = incoming
            self._incoming_cap = None

    def maybe_free_buffer(self) -> None:
        """Release the buffer of an empty window (raft-rs `maybe_free_inflight_buffers`)."""
        if not self._buffer:
            self._allocated = False

    def buffer_capacity(self) -> int:
        """The slots the buffer holds (raft-rs: its Vec capacity): `cap` once allocated."""
        return self.cap if self._allocated else 0

    def buffer_is_allocated(self) -> bool:
        """Whether the buffer is allocated: after an add, until reset/maybe_free_buffer."""
        return self._allocated and self.cap > 0
