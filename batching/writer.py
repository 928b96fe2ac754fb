"""Round writers: they commit submitted rounds, in order, and hand them back finished.

- `InlineWriter`: commits in `start()` itself, on the caller's thread (the deterministic
  simulator and unit tests).
- `ThreadWriter`: one writer thread commits round N while the store's thread collects round
  N+1 (pipelining); LMDB releases the GIL for the commit and its fsync. It is the only thread
  of the batching layer, and it touches nothing but the rounds it was given (their batches'
  prepare hooks run on it) and its own queues.

Both: rounds finish in submission order; after a failed commit no later round is written (it
would build on writes that are not on disk): each is marked `skipped`. `on_complete` (if set)
is called after every finished round, on the writing thread: it must be thread-safe (the
server sets `loop.call_soon_threadsafe(...)`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol

from multiraft.engine import Engine

from .round import N, Round, write_in_order

__all__ = ["RoundWriter", "InlineWriter", "ThreadWriter"]

log = logging.getLogger(__name__)


class RoundWriter(Protocol[N]):
    """Commits rounds in submission order (module docstring)."""

    on_complete: Callable[[], None] | None

    def start(self, rnd: Round[N]) -> None:
        """Commit `rnd` after every round started before it."""
        ...

    def in_flight(self) -> int:
        """Rounds started and not finished."""
        ...

    def take_finished(self) -> list[Round[N]]:
        """The rounds finished since the last call, in order."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a round is finished and not taken yet, or none is in flight; False on
        timeout."""
        ...

    def wait_for_room(self, limit: int) -> None:
        """Block until fewer than `limit` rounds are in flight."""
        ...

    def close(self) -> None:
        """Finish the rounds started, then stop (idempotent)."""
        ...


class InlineWriter(Generic[N]):
    """Commits each round when it is started, on the caller's thread."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.perf_counter) -> None:
        self._engine = engine
        self._clock = clock
        self._finished: list[Round[N]] = []
        # An earlier round failed: write nothing more.
        self._failed = False
        self.on_complete: Callable[[], None] | None = None

    def start(self, rnd: Round[N]) -> None:
        self._failed = write_in_order(self._engine, rnd, self._failed, self._clock)
        self._finished.append(rnd)
        if self.on_complete is not None:
            self.on_complete()

    def in_flight(self) -> int:
        return 0

    def take_finished(self) -> list[Round[N]]:
        done, self._finished = self._finished, []
        return done

    def wait(self, timeout: float | None = None) -> bool:
        return True

    def wait_for_room(self, limit: int) -> None:
        pass

    def close(self) -> None:
        pass


class ThreadWriter(Generic[N]):
    """Commits rounds on its own thread (module docstring).

    Invariant: `_queue` holds the rounds started and not finished, oldest first (the head is
    being committed); `_finished` the rounds finished and not taken, oldest first.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        name: str = "batching-writer",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._cv = threading.Condition()
        self._queue: deque[Round[N] | None] = deque()
        self._finished: deque[Round[N]] = deque()
        self._failed = False
        self._closed = False
        self.on_complete: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def start(self, rnd: Round[N]) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError("writer is closed")
            self._queue.append(rnd)
            self._cv.notify_all()

    def in_flight(self) -> int:
        return len(self._queue)

    def take_finished(self) -> list[Round[N]]:
        finished = self._finished
        if not finished:
            return []
        with self._cv:
            done = list(finished)
            finished.clear()
        return done

    def wait(self, timeout: float | None = None) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: bool(self._finished) or not self._queue, timeout)

    def wait_for_room(self, limit: int) -> None:
        with self._cv:
            self._cv.wait_for(lambda: len(self._queue) < limit)

    def _run(self) -> None:
        cv, queue = self._cv, self._queue
        while True:
            with cv:
                while not queue:
                    cv.wait()
                rnd = queue[0]
            if rnd is None:
                with cv:
                    queue.popleft()
                    cv.notify_all()
                return
            self._failed = write_in_order(self._engine, rnd, self._failed, self._clock)
            with cv:
                queue.popleft()
                self._finished.append(rnd)
                cv.notify_all()
            callback = self.on_complete
            if callback is not None:
                try:
                    callback()
                except Exception:
                    log.exception("batching: the on_complete callback failed")

    def close(self) -> None:
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._queue.append(None)
            self._cv.notify_all()
        self._thread.join()
