"""The batching layer: one commit per round whatever the number of regions, acknowledgements
by Ready number and in order, a leader's messages at once and everyone else's only once the
round is durable, real overlap of round N's commit with round N+1's collection, and fatal
failures that acknowledge nothing after them."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from batching import Batcher, BatcherClosed, BatchingFatalError, BatchingStats
from multiraft.engine import (
    CF_META,
    CF_RAFT_WAL,
    Engine,
    MemoryEngine,
    RaftWal,
    RegionStorage,
    WriteFailed,
)
from multiraft.raft import Entry

from .fakes import GateEngine, RecordingNode

MODES = ["inline", "pipelined"]
LAYOUTS = ["direct", "wal"]


def make(
    engine: Engine, n: int, layout: str, pipelined: bool, **kw: object
) -> tuple[Batcher[RecordingNode], list[RecordingNode], RaftWal | None]:
    wal = RaftWal(engine, checkpoint_rounds=4) if layout == "wal" else None
    nodes = [RecordingNode(RegionStorage(engine, r, wal=wal)) for r in range(1, n + 1)]
    batcher: Batcher[RecordingNode] = Batcher(engine, wal=wal, pipelined=pipelined, **kw)  # type: ignore[arg-type]
    return batcher, nodes, wal


@pytest.fixture(params=[(m, lay) for m in MODES for lay in LAYOUTS], ids=lambda p: "-".join(p))
def setup(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[MemoryEngine, Batcher[RecordingNode], list[RecordingNode], RaftWal | None]]:
    mode, layout = request.param
    engine = MemoryEngine()
    batcher, nodes, wal = make(engine, 100, layout, mode == "pipelined")
    yield engine, batcher, nodes, wal
    batcher.close()


def test_many_regions_one_commit_per_round(
    setup: tuple[MemoryEngine, Batcher[RecordingNode], list[RecordingNode], RaftWal | None],
) -> None:
    engine, batcher, nodes, wal = setup
    for r in range(1, 11):
        before = engine.stats.commits
        for node in nodes:
            batcher.add_ready(node, node.ready(n_entries=1 + r % 3))
        rnd = batcher.submit()
        assert rnd is not None and rnd.readies == 100
        done = batcher.flush()
        assert [d.number for d in done] == [r]
        assert engine.stats.commits - before == 1  # one commit (and one fsync) per round
        assert done[0].synced
    stats = batcher.stats
    assert (stats.rounds, stats.rounds_persisted, stats.fsyncs) == (10, 10, 10)
    assert stats.readies == 1000 and stats.max_readies_per_round == 100
    assert stats.entries == sum(100 * (1 + r % 3) for r in range(1, 11))
    if wal is not None:
        assert stats.checkpoints >= 2 and engine.stats.commits == 10 + 0  # checkpoints ride along
    # Everything is on disk: a restart sees every region's log.
    wal2 = RaftWal(engine) if wal is not None else None
    for node in nodes:
        s = RegionStorage(engine, node.storage.region_id, wal=wal2)
        assert s.last_index() == node.next_index - 1
        assert s.initial_state().hard_state.commit == node.next_index - 1 - (1 + 10 % 3)


def test_acknowledgements_are_per_region_in_order_and_only_when_durable(
    setup: tuple[MemoryEngine, Batcher[RecordingNode], list[RecordingNode], RaftWal | None],
) -> None:
    engine, batcher, nodes, _ = setup
    committed_rounds: set[int] = set()
    for r in range(1, 31):
        # A region may hand off several Readies in one round.
        for node in nodes[: 10 + r]:
            batcher.add_ready(node, node.ready())
            if r % 4 == 0:
                batcher.add_ready(node, node.ready(n_entries=2))
        rnd = batcher.submit()
        assert rnd is not None
        for done in batcher.poll_completed():
            assert done.batch.committed
            committed_rounds.add(done.number)
    for done in batcher.flush():
        committed_rounds.add(done.number)
    assert committed_rounds == set(range(1, 31))
    for node in nodes:
        # Every Ready handed off was acknowledged exactly once, in order (checked by the node).
        assert node.persisted == node.advanced


def test_leader_messages_at_once_persisted_messages_after_the_commit() -> None:
    engine = GateEngine()
    batcher, nodes, _ = make(engine, 3, "direct", pipelined=True)  # type: ignore[arg-type]
    leader, follower, other = nodes
    send_now, to_apply = batcher.add_ready(leader, leader.ready(messages=2))
    assert [m.to for m in send_now] == [2, 2]  # before the fsync (thesis §10.2.1)
    assert to_apply == []
    send_now, _ = batcher.add_ready(follower, follower.ready(persisted_messages=3))
    assert send_now == []  # a follower's acks wait for the round to be durable
    committed = [Entry(index=1, term=1, data=b"x")]
    _, to_apply = batcher.add_ready(other, other.ready(committed=committed))
    assert [e.data for e in to_apply] == [b"x"]  # committed and persisted: apply now
    rnd = batcher.submit()
    assert rnd is not None
    assert engine.waiting.wait(5)  # the writer holds the round at the gate
    assert batcher.poll_completed() == []
    assert follower.persisted == [] and batcher.stats.messages_held == 0
    engine.release()
    assert batcher.wait(5)
    (done,) = batcher.poll_completed()
    assert [(n.storage.region_id, len(m)) for n, m in done.held] == [(2, 3)]
    assert len(done.persisted_messages()) == 3
    assert (leader.persisted, follower.persisted, other.persisted) == ([1], [1], [1])
    assert batcher.stats.messages_early == 2 and batcher.stats.messages_held == 3
    engine.open()
    batcher.close()


def test_pipelining_collects_round_n_plus_1_while_round_n_commits() -> None:
    engine = GateEngine()
    batcher, nodes, _ = make(engine, 20, "wal", pipelined=True, max_in_flight=2)  # type: ignore[arg-type]
    for node in nodes:
        batcher.add_ready(node, node.ready())
    r1 = batcher.submit()
    assert engine.waiting.wait(5)  # round 1 is inside Engine.write
    # Round 2 is collected meanwhile: the storages serve round 1's entries already.
    for node in nodes:
        assert node.storage.last_index() == 1
        batcher.add_ready(node, node.ready())
        assert node.storage.last_index() == 2
    r2 = batcher.submit()
    assert r1 is not None and r2 is not None
    assert batcher.in_flight() == 2 and not batcher.can_submit()
    # Round 3: the writer is full; without blocking the round stays open and keeps growing.
    for node in nodes:
        batcher.add_ready(node, node.ready())
    assert batcher.submit(block=False) is None
    assert batcher.round_number == 3
    assert batcher.poll_completed() == []
    assert all(n.persisted == [] for n in nodes)
    engine.release()  # round 1 commits
    assert batcher.wait(5)
    done = batcher.poll_completed()
    assert [d.number for d in done] == [1]
    assert all(n.persisted == [1] for n in nodes)
    engine.open()
    assert [d.number for d in batcher.flush()] == [2, 3]
    assert all(n.persisted == [1, 2, 3] for n in nodes)
    assert engine.stats.commits == 3
    batcher.close()


def test_a_lazy_submit_leaves_open_a_round_nothing_waits_on() -> None:
    """`submit(lazy=True)` submits a round only if something waits for it to be durable: an
    entry (raft's must_sync), a held message, or a write the store marked urgent. Until then
    the round stays open and later Readies join it."""
    engine = MemoryEngine()
    batcher, (a, b, c), _ = make(engine, 3, "direct", pipelined=False)
    # A commit-only Ready and the store's applied state: recovery derives them again.
    batcher.add_ready(a, a.ready(n_entries=0))
    batcher.batch.put(CF_META, b"applied", b"1")
    assert not batcher.has_urgent_writes()
    assert batcher.submit(lazy=True) is None
    assert engine.stats.commits == 0 and batcher.round_number == 1
    # Entries make it urgent: they go out together with what waited.
    batcher.add_ready(b, b.ready(n_entries=1))
    rnd = batcher.submit(lazy=True)
    assert rnd is not None and rnd.readies == 2 and engine.stats.commits == 1
    assert rnd.synced_nodes == [b]  # only its acknowledgement may let raft go on
    assert engine.get(CF_META, b"applied") == b"1"
    # A message held until the write is durable makes it urgent too.
    batcher.add_ready(c, c.ready(n_entries=0, persisted_messages=1))
    assert batcher.submit(lazy=True) is not None
    # So does the store's word.
    batcher.batch.put(CF_META, b"region", b"2")
    assert batcher.submit(lazy=True) is None
    batcher.mark_urgent()
    assert batcher.submit(lazy=True) is not None and engine.stats.commits == 3
    # Without `lazy` anything goes.
    batcher.add_ready(a, a.ready(n_entries=0))
    assert batcher.submit() is not None and engine.stats.commits == 4
    assert [d.number for d in batcher.poll_completed()] == [1, 2, 3, 4]
    batcher.close()


def test_submit_blocks_while_the_writer_is_full() -> None:
    engine = GateEngine()
    batcher, nodes, _ = make(engine, 2, "direct", pipelined=True, max_in_flight=1)  # type: ignore[arg-type]
    for node in nodes:
        batcher.add_ready(node, node.ready())
    batcher.submit()
    for node in nodes:
        batcher.add_ready(node, node.ready())
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(batcher.submit()))
    t.start()
    t.join(0.2)
    assert t.is_alive() and result == []  # blocked: round 1 is still being written
    engine.open()
    t.join(5)
    assert not t.is_alive() and result and result[0] is not None
    assert [d.number for d in batcher.flush()] == [1, 2]
    batcher.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_failed_commit_is_fatal_and_acknowledges_nothing_after(mode: str, layout: str) -> None:
    engine = MemoryEngine()
    batcher, nodes, wal = make(engine, 10, layout, pipelined=mode == "pipelined")
    for node in nodes:
        batcher.add_ready(node, node.ready())
    batcher.flush()
    for node in nodes:
        batcher.add_ready(node, node.ready())
    if mode == "pipelined":
        batcher.wait(5)
    engine.fail_next_write()  # disk full / I/O error on round 2's commit
    batcher.submit()
    for node in nodes:
        batcher.add_ready(node, node.ready())
    batcher.submit()  # round 3: must never be written (it builds on round 2)
    while batcher.in_flight():
        batcher.wait(5)
    with pytest.raises(BatchingFatalError) as info:
        batcher.poll_completed()
    err = info.value
    assert err.round_number == 2 and isinstance(err.cause, WriteFailed)
    assert "restart" in str(err)
    for call in (batcher.poll_completed, batcher.submit, batcher.flush):
        with pytest.raises(BatchingFatalError):
            call()
    with pytest.raises(BatchingFatalError):
        batcher.add_ready(nodes[0], nodes[0].ready())
    assert batcher.fatal is err
    for node in nodes:
        assert node.persisted == [1]  # nothing after the failure
    assert batcher.stats.rounds_persisted == 1
    batcher.close()
    # A restart recovers to the last committed round.
    wal2 = RaftWal(engine) if wal is not None else None
    for node in nodes:
        s = RegionStorage(engine, node.storage.region_id, wal=wal2)
        assert s.last_index() == 1


def test_rounds_before_the_failure_are_still_acknowledged() -> None:
    engine = GateEngine()
    batcher, nodes, _ = make(engine, 2, "direct", pipelined=True, max_in_flight=3)  # type: ignore[arg-type]
    for _ in range(2):
        for node in nodes:
            batcher.add_ready(node, node.ready())
        batcher.submit()
    engine.release()  # round 1: written
    while not engine.committed:
        batcher.wait(0.01)
    engine.inner.fail_next_write()
    engine.release()  # round 2: fails
    while batcher.in_flight():
        batcher.wait(5)
    done = batcher.poll_completed()
    assert [d.number for d in done] == [1]
    with pytest.raises(BatchingFatalError):
        batcher.poll_completed()
    assert [n.persisted for n in nodes] == [[1], [1]]
    engine.open()
    batcher.close()


def test_the_store_can_add_its_own_writes_to_the_round() -> None:
    engine = MemoryEngine()
    batcher, nodes, _ = make(engine, 1, "wal", pipelined=False)
    batcher.add_ready(nodes[0], nodes[0].ready())
    batcher.batch.put(CF_META, b"applied", b"7")
    batcher.flush()
    assert engine.get(CF_META, b"applied") == b"7"
    assert engine.stats.commits == 1
    # A round with only the store's writes is submitted too; an empty one is not.
    batcher.batch.put(CF_META, b"x", b"y")
    assert batcher.submit() is not None
    assert batcher.submit() is None
    assert [d.readies for d in batcher.flush()] == [0]


def test_on_complete_is_called_on_the_writer_thread() -> None:
    engine = MemoryEngine()
    calls: list[str] = []
    woken = threading.Event()

    def wake() -> None:
        calls.append(threading.current_thread().name)
        woken.set()

    batcher, nodes, _ = make(engine, 1, "direct", pipelined=True, on_complete=wake)
    batcher.add_ready(nodes[0], nodes[0].ready())
    batcher.submit()
    assert woken.wait(5)
    assert calls == ["batching-writer"]
    assert [d.number for d in batcher.poll_completed()] == [1]
    batcher.on_complete = None
    batcher.close()


def test_inline_mode_commits_in_submit_and_acknowledges_in_poll() -> None:
    engine = MemoryEngine()
    batcher, nodes, _ = make(engine, 3, "direct", pipelined=False)
    for node in nodes:
        batcher.add_ready(node, node.ready())
    batcher.submit()
    assert engine.stats.commits == 1 and batcher.in_flight() == 0
    assert all(n.persisted == [] for n in nodes)  # acknowledged only when polled
    assert [d.number for d in batcher.poll_completed()] == [1]
    assert all(n.persisted == [1] for n in nodes)


def test_close_lets_the_rounds_in_flight_finish() -> None:
    engine = MemoryEngine()
    batcher, nodes, _ = make(engine, 3, "wal", pipelined=True)
    for node in nodes:
        batcher.add_ready(node, node.ready())
    batcher.submit()
    batcher.close()
    batcher.close()
    assert [d.number for d in batcher.poll_completed()] == [1]
    with pytest.raises(BatcherClosed):
        batcher.add_ready(nodes[0], nodes[0].ready())
    with pytest.raises(BatcherClosed):
        batcher.submit()


def test_checkpoints_ride_along_in_round_batches() -> None:
    engine = MemoryEngine()
    batcher, nodes, wal = make(engine, 5, "wal", pipelined=False)
    assert wal is not None
    for _ in range(9):
        for node in nodes:
            batcher.add_ready(node, node.ready())
        batcher.flush()
    assert batcher.stats.checkpoints == 2  # rounds 4 and 8
    assert engine.stats.commits == 9
    assert len(engine.scan(CF_RAFT_WAL)) == 1  # round 9's record


def test_argument_checks() -> None:
    engine = MemoryEngine()
    with pytest.raises(ValueError):
        Batcher(engine, max_in_flight=0)
    with pytest.raises(ValueError):
        Batcher(engine, wal=RaftWal(MemoryEngine()))
    b: Batcher[RecordingNode] = Batcher(engine, pipelined=False)
    assert "inline" in repr(b)
    assert isinstance(b.stats, BatchingStats)
    assert b.engine is engine
