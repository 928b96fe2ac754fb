"""`SimWriter`: the batching layer's round writer for the simulator — rounds commit after a
seeded, virtual-time delay, in order, as a writer thread would commit them while the store
collects the next rounds. It exercises in the deterministic simulator everything the server's
pipelining does (acknowledgements after the fact, applied writes not yet committed, reads
waiting for them) and, with `kill()`, what a crash does to rounds still in the writer.

Blocking calls (`wait`, `wait_for_room`) cannot block a single-threaded simulation: they commit
the oldest rounds at once, which is one of the interleavings a real writer allows.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Generic

from batching.round import N, Round, write_in_order
from multiraft.engine import Engine

from .simnet import SimLoop

__all__ = ["SimWriter"]


class SimWriter(Generic[N]):
    """Invariant: `_queue` holds the rounds started and not committed, oldest first; every
    `start` schedules one `_commit_one`, which commits the oldest (so order is kept whatever
    the delays)."""

    def __init__(
        self,
        engine: Engine,
        loop: SimLoop,
        rng: random.Random,
        delay: tuple[float, float],
    ) -> None:
        self._engine = engine
        self._loop = loop
        self._rng = rng
        self._delay = delay
        self._queue: deque[Round[N]] = deque()
        self._finished: list[Round[N]] = []
        self._failed = False
        # Set by `kill()`: the process is gone; nothing more is written.
        self._dead = False
        self.on_complete: Callable[[], None] | None = None

    def _now(self) -> float:
        return self._loop.now

    def start(self, rnd: Round[N]) -> None:
        self._queue.append(rnd)
        self._loop.call_later(self._rng.uniform(*self._delay), self._commit_one)

    def _commit_one(self) -> None:
        if self._dead or not self._queue:
            return
        rnd = self._queue.popleft()
        self._failed = write_in_order(self._engine, rnd, self._failed, self._now)
        self._finished.append(rnd)
        if self.on_complete is not None:
            self.on_complete()

    def in_flight(self) -> int:
        return len(self._queue)

    def take_finished(self) -> list[Round[N]]:
        done, self._finished = self._finished, []
        return done

    def wait(self, timeout: float | None = None) -> bool:
        if self._queue:
            self._commit_one()
        return True

    def wait_for_room(self, limit: int) -> None:
        while len(self._queue) >= limit and not self._dead:
            self._commit_one()

    def close(self) -> None:
        while self._queue and not self._dead:
            self._commit_one()

    def kill(self) -> None:
        """A crash: the rounds not committed yet are never written."""
        self._dead = True
        self._queue.clear()
