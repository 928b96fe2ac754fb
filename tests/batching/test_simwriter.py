"""The simulator's delayed round writer: rounds commit late but in order, blocking calls commit
the oldest at once, and a crash loses exactly the rounds still in the writer."""

from __future__ import annotations

import random

from batching import Batcher
from multiraft.engine import MemoryEngine, RegionStorage
from multiraft.testing import SimLoop
from multiraft.testing.simwriter import SimWriter

from .fakes import RecordingNode


def _setup(delay: tuple[float, float]) -> tuple[SimLoop, MemoryEngine, SimWriter[RecordingNode], Batcher[RecordingNode], RecordingNode]:
    loop, engine = SimLoop(), MemoryEngine()
    writer: SimWriter[RecordingNode] = SimWriter(engine, loop, random.Random(3), delay)
    batcher: Batcher[RecordingNode] = Batcher(engine, writer=writer, max_in_flight=8)
    node = RecordingNode(RegionStorage(engine, 1))
    return loop, engine, writer, batcher, node


def test_rounds_commit_late_and_in_order() -> None:
    loop, engine, writer, batcher, node = _setup((0.001, 0.05))
    for _ in range(6):
        batcher.add_ready(node, node.ready())
        batcher.submit(block=False)
    assert writer.in_flight() == 6 and batcher.poll_completed() == []
    assert engine.stats.commits == 0  # nothing written yet
    loop.run_until(1.0)
    batcher.poll_completed()
    assert node.persisted == [1, 2, 3, 4, 5, 6]  # in order whatever the delays
    assert engine.stats.commits == 6


def test_waiting_commits_the_oldest_round_at_once() -> None:
    loop, engine, writer, batcher, node = _setup((1.0, 2.0))
    for _ in range(3):
        batcher.add_ready(node, node.ready())
        batcher.submit(block=False)
    assert batcher.wait()
    batcher.poll_completed()
    assert node.persisted == [1] and writer.in_flight() == 2


def test_a_crash_loses_the_rounds_still_in_the_writer() -> None:
    loop, engine, writer, batcher, node = _setup((0.01, 0.01))
    batcher.add_ready(node, node.ready())
    batcher.submit(block=False)
    loop.run_until(0.02)
    batcher.add_ready(node, node.ready())
    batcher.submit(block=False)
    writer.kill()
    loop.run_until(1.0)
    batcher.poll_completed()
    assert node.persisted == [1]
    assert RegionStorage(engine, 1).last_index() == node.next_index - 2  # round 2 never written
