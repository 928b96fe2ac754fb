"""Virtual time and a simulated network between stores, for the deterministic cluster
simulator: everything happens in one process, in the order of a seeded event queue.

`SimLoop` is a discrete-event scheduler on virtual seconds. `SimNetwork` delivers frames
between stores through it with random latency, drops, duplication and reordering, and supports
partitions; all randomness comes from one `random.Random`.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["SimLoop", "SimNetwork", "LinkFaults"]


class SimLoop:
    """Events run in (time, insertion) order; `now` only moves forward."""

    __slots__ = ("now", "_queue", "_seq")

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (max(when, self.now), next(self._seq), fn))

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self.call_at(self.now + delay, fn)

    def pending(self) -> int:
        return len(self._queue)

    def run_until(self, deadline: float) -> int:
        """Run every event due up to `deadline` (inclusive); returns how many ran."""
        n = 0
        q = self._queue
        while q and q[0][0] <= deadline:
            when, _, fn = heapq.heappop(q)
            self.now = when
            fn()
            n += 1
        self.now = max(self.now, deadline)
        return n


@dataclass(slots=True)
class LinkFaults:
    """Fault probabilities and latency range of the network (per message)."""

    min_latency: float = 0.0005
    max_latency: float = 0.002
    drop: float = 0.0
    duplicate: float = 0.0
    # Bytes per virtual second of a stream (snapshot) connection.
    bandwidth: float = 100e6
    stats: dict[str, int] = field(default_factory=lambda: {"sent": 0, "delivered": 0, "dropped": 0, "duplicated": 0})


class SimNetwork:
    """Frames between stores. A frame sent at t arrives at t + latency (so frames can overtake
    each other: reordering), unless dropped, cut by a partition, or the destination is down."""

    __slots__ = ("loop", "rng", "faults", "_deliver", "_blocked", "_down")

    def __init__(
        self,
        loop: SimLoop,
        rng: random.Random,
        deliver: Callable[[int, int, bytes], None],
        faults: LinkFaults | None = None,
    ) -> None:
        self.loop = loop
        self.rng = rng
        self.faults = faults if faults is not None else LinkFaults()
        # deliver(to_store, from_store, frame)
        self._deliver = deliver
        # Directed links that drop everything: (from, to).
        self._blocked: set[tuple[int, int]] = set()
        # Stores that are down (crashed): nothing reaches them, nothing leaves them.
        self._down: set[int] = set()

    def send(self, from_store: int, to_store: int, frame: bytes) -> None:
        f = self.faults
        f.stats["sent"] += 1
        if self._cut(from_store, to_store) or (f.drop and self.rng.random() < f.drop):
            f.stats["dropped"] += 1
            return
        copies = 2 if f.duplicate and self.rng.random() < f.duplicate else 1
        if copies == 2:
            f.stats["duplicated"] += 1
        for _ in range(copies):
            latency = self.rng.uniform(f.min_latency, f.max_latency)
            self.loop.call_later(latency, lambda: self._arrive(from_store, to_store, frame))

    def send_stream(self, from_store: int, to_store: int, deliver: Callable[[], None], done: Callable[[bool], None], size: int = 0) -> None:
        """A transfer on its own connection (a snapshot): no random loss (TCP), but a
        partition or crash before it arrives fails it; `done(ok)` reaches the sender one
        latency after the delivery. Takes `size / bandwidth` longer than a frame."""
        f = self.faults
        latency = self.rng.uniform(f.min_latency, f.max_latency) + size / f.bandwidth

        def arrive() -> None:
            if self._cut(from_store, to_store):
                self.loop.call_later(latency, lambda: done(False))
                return
            deliver()
            self.loop.call_later(latency, lambda: done(not self._cut(to_store, from_store)))

        self.loop.call_later(latency, arrive)

    def _cut(self, a: int, b: int) -> bool:
        return (a, b) in self._blocked or a in self._down or b in self._down

    def _arrive(self, from_store: int, to_store: int, frame: bytes) -> None:
        # A partition or crash that happened while the frame was in flight also stops it.
        if self._cut(from_store, to_store):
            self.faults.stats["dropped"] += 1
            return
        self.faults.stats["delivered"] += 1
        self._deliver(to_store, from_store, frame)

    def partition(self, *groups: Iterable[int]) -> None:
        """Split the stores into groups that cannot talk to each other (replaces any earlier
        partition)."""
        sets = [set(g) for g in groups]
        self._blocked = {(a, b) for i, ga in enumerate(sets) for j, gb in enumerate(sets) if i != j for a in ga for b in gb}

    def cut(self, a: int, b: int) -> None:
        self._blocked |= {(a, b), (b, a)}

    def heal(self) -> None:
        self._blocked = set()

    def set_down(self, store: int, down: bool) -> None:
        if down:
            self._down.add(store)
        else:
            self._down.discard(store)
