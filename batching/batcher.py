"""`Batcher`: every region's Ready of a round into ONE write batch, one commit (one fsync) per
round, persistence acknowledged by number (raft-rs 0.7 async-ready API).

The store's thread drives it (sans-asyncio: docs/architecture.md, "Import rules")::

    for node in nodes_with_a_ready:                 # one round
        rd = node.ready()
        send_now, to_apply = batcher.add_ready(node, rd)
        router.send(send_now)                       # a leader's messages: before the fsync
        apply(to_apply)                             # committed AND persisted: apply now
    batcher.submit()                                # one batch, one commit, for all of them
    ...
    for rnd in batcher.poll_completed():            # when woken by `on_complete`, in order
        for node, msgs in rnd.held:                 # each node already got on_persist_ready
            router.send(msgs)                       # votes and acks: only after the fsync

`add_ready` writes the Ready's snapshot, entries (truncating a conflicting suffix) and hard
state into the open round's batch through the region's `RegionStorage`, then calls
`advance_append_async(rd)` (the storage serves them from then on), returns the leader's
`messages` at once (Raft thesis §10.2.1) and keeps `persisted_messages` until the round is
durable. `submit` hands the round to the writer: with `pipelined=True` a writer thread
commits it while the next round is collected (at most `max_in_flight` rounds in the writer,
then `submit` blocks, or with `block=False` leaves the round open to keep collecting);
with `pipelined=False` it commits inline. `poll_completed` returns the finished rounds in
order after running, for each, the batch's commit hooks and `on_persist_ready(number)` for
every Ready in hand-off order, so per region acknowledgements are in order.

Faults: if a commit fails, no later round is written; `poll_completed` acknowledges the rounds
before it, and the next call (of any method) raises `BatchingFatalError` with the cause, as
does every call after: nothing is reported persisted unless it is. The store must restart from
disk (a restart recovers to the last committed round).

Threads and the GIL: LMDB releases the GIL for the commit and its fsyncs, so round N's fsync
overlaps round N+1's collection; but the writer thread needs the GIL to start the commit and
again when it returns, and behind a busy event loop CPython hands it over only every switch
interval (5 ms by default). The server should lower it (`sys.setswitchinterval(0.0005)`);
`bench/batching.py --switch-interval` measures the difference.

Invariant: rounds are acknowledged in submission order, each only after its batch was durably
committed; a Ready's `on_persist_ready` is called exactly once, after its round is durable.
Invariant: the writer holds at most `max_in_flight` rounds; only the open round is mutable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic

from multiraft.engine import Engine, RaftWal, WriteBatch
from multiraft.raft import Entry, Message, Ready

from .errors import BatcherClosed, BatchingFatalError
from .round import N, Round
from .stats import BatchingStats
from .writer import InlineWriter, RoundWriter, ThreadWriter

__all__ = ["Batcher"]


class Batcher(Generic[N]):
    """Collects Readies into rounds and persists each round with one commit (module doc).

    `engine` is the store's engine; `wal` its `RaftWal` when the region storages use one (a
    checkpoint is then emitted into a round's batch when due). `on_complete` is called on the
    writer thread after each finished round (thread-safe callbacks only); it may also be set
    later. Not thread-safe otherwise: one thread (the store's) calls everything.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        wal: RaftWal | None = None,
        pipelined: bool = True,
        max_in_flight: int = 2,
        on_complete: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        writer: RoundWriter[N] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if wal is not None and wal.engine is not engine:
            raise ValueError("the RaftWal belongs to another engine")
        self._engine = engine
        self._wal = wal
        self.pipelined = pipelined
        self.max_in_flight = max_in_flight
        # `writer` (over `engine`) replaces the default one: the simulator's delayed writer.
        if writer is None:
            writer = ThreadWriter(engine, clock=clock) if pipelined else InlineWriter(engine, clock)
        self._writer: RoundWriter[N] = writer
        self._writer.on_complete = on_complete
        self.stats = BatchingStats()
        # The round being collected.
        self._open: Round[N] = Round(1)
        # The first failure (raised by every call once seen).
        self._fatal: BatchingFatalError | None = None
        self._closed = False
        # `_fatal is not None or _closed`: one test on the hot path.
        self._broken = False

    # -- the open round -------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def batch(self) -> WriteBatch:
        """The open round's write batch: the store may add its own writes (region state, apply
        state, a snapshot's data) to persist them atomically with the round."""
        return self._open.batch

    def has_open_writes(self) -> bool:
        """Whether the open round holds anything to submit."""
        return not self._open.is_empty()

    def has_urgent_writes(self) -> bool:
        """Whether something in the open round waits for it to be durable (`Round.urgent`)."""
        return self._open.urgent

    def mark_urgent(self) -> None:
        """The store added a write to the open round that must not wait for a later one (a
        replica destroyed, a region's layout changed): `submit(lazy=True)` submits it."""
        self._open.urgent = True

    @property
    def round_number(self) -> int:
        """The number of the open round."""
        return self._open.number

    @property
    def on_complete(self) -> Callable[[], None] | None:
        return self._writer.on_complete

    @on_complete.setter
    def on_complete(self, callback: Callable[[], None] | None) -> None:
        self._writer.on_complete = callback

    def _check(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closed:
            raise BatcherClosed()

    def add_ready(self, node: N, rd: Ready) -> tuple[list[Message], list[Entry]]:
        """Hand `rd` (the newest Ready of `node`) to the open round. Returns the messages to
        send now (a leader's) and the committed entries to apply now (committed and persisted;
        raft hands out nothing else). The Ready's persisted messages are released by
        `poll_completed` once the round is durable."""
        # The hot path: one call per region per round.
        if self._broken:
            self._check()
        rnd = self._open
        snap = rd.snapshot
        if snap.HasField("metadata") and snap.metadata.index:
            node.store().apply_snapshot(rnd.batch, snap)
            rnd.snapshots += 1
        ents = rd.entries
        if ents:
            node.store().append(rnd.batch, ents, rd.hs)  # entries + hard state in one call
            rnd.entries += len(ents)
        elif rd.hs is not None:
            node.store().set_hard_state(rnd.batch, rd.hs)
        node.advance_append_async(rd)
        rnd.acks.append((node, rd.number))
        if rd.must_sync:
            rnd.urgent = True
            rnd.synced_nodes.append(node)
        held = rd.persisted_messages
        if held:
            rnd.held.append((node, held))
            rd.persisted_messages = []
            rnd.urgent = True
        msgs = rd.messages
        if msgs:
            rd.messages = []
            self.stats.messages_early += len(msgs)
        # Handed over (the Ready is spent once `advance_append_async` was called); an empty
        # list stays where it is, like an empty `messages`.
        committed = rd.committed_entries
        if committed:
            rd.committed_entries = []
        return msgs, committed

    # -- submitting and acknowledging ------------------------------------------------------

    def in_flight(self) -> int:
        """Rounds submitted whose commit has not finished."""
        return self._writer.in_flight()

    def can_submit(self) -> bool:
        """Whether `submit()` would hand the round over without blocking."""
        return self._writer.in_flight() < self.max_in_flight

    def submit(self, *, block: bool = True, lazy: bool = False) -> Round[N] | None:
        """Close the open round and hand it to the writer; returns it. Returns None, doing
        nothing, when the round is empty, when the writer is full and `block` is False, or
        when `lazy` and the round is not urgent (`Round.urgent`): the round stays open: keep
        adding to it and submit later. (Lazy rounds spare a durable commit, and the wait
        behind it, for writes nothing waits on: the applied state of a round whose entries
        are already durable goes out with the next round that appends entries.)"""
        self._check()
        rnd = self._open
        if rnd.is_empty() or (lazy and not rnd.urgent):
            return None
        writer = self._writer
        if writer.in_flight() >= self.max_in_flight:
            if not block:
                return None
            writer.wait_for_room(self.max_in_flight)
        if self._wal is not None:
            rnd.checkpoint = self._wal.end_round(rnd.batch)
        self._open = Round(rnd.number + 1)
        stats = self.stats
        stats.rounds += 1
        n = len(rnd.acks)
        stats.readies += n
        if n > stats.max_readies_per_round:
            stats.max_readies_per_round = n
        stats.entries += rnd.entries
        stats.snapshots += rnd.snapshots
        stats.checkpoints += rnd.checkpoint
        writer.start(rnd)
        return rnd

    def poll_completed(self) -> list[Round[N]]:
        """The rounds finished since the last call, in order, each acknowledged: its batch's
        commit hooks run and `on_persist_ready(number)` called for each of its Readies. Send
        each round's `held` messages now. Raises `BatchingFatalError` once a round failed (after
        returning the rounds before it). Works after `close()` too (the rounds it finished)."""
        if self._fatal is not None:
            raise self._fatal
        done: list[Round[N]] = []
        stats = self.stats
        for rnd in self._writer.take_finished():
            if rnd.error is not None or rnd.skipped:
                cause = rnd.error if rnd.error is not None else RuntimeError("not written")
                self._fatal = BatchingFatalError(rnd.number, cause)
                self._broken = True
                break
            rnd.batch.run_commit_hooks()
            for node, number in rnd.acks:
                node.on_persist_ready(number)
            stats.rounds_persisted += 1
            stats.fsyncs += rnd.synced
            stats.bytes += rnd.bytes
            stats.commit_seconds += rnd.commit_seconds
            stats.add_round_sample(rnd.commit_seconds, len(rnd.acks))
            if rnd.commit_seconds > stats.max_commit_seconds:
                stats.max_commit_seconds = rnd.commit_seconds
            for _, msgs in rnd.held:
                stats.messages_held += len(msgs)
            done.append(rnd)
        if not done and self._fatal is not None:
            raise self._fatal
        return done

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a submitted round finished (and is waiting for `poll_completed`) or
        none is in flight; False on timeout. For tests, benchmarks and simple drivers: an event
        loop uses `on_complete` instead."""
        return self._writer.wait(timeout)

    def flush(self) -> list[Round[N]]:
        """Submit the open round (if not empty), wait for every round in flight, and return
        `poll_completed()`."""
        self.submit()
        self._writer.wait_for_room(1)
        return self.poll_completed()

    def close(self) -> None:
        """Stop the writer after the rounds in flight are written (they can still be polled);
        the open round is dropped. Idempotent."""
        if not self._closed:
            self._writer.close()
            self._closed = True
            self._broken = True

    @property
    def fatal(self) -> BatchingFatalError | None:
        """The failure, once seen by `poll_completed`."""
        return self._fatal

    def __repr__(self) -> str:
        mode = "pipelined" if self.pipelined else "inline"
        return (
            f"Batcher({mode}, open round {self._open.number} with {len(self._open.acks)} "
            f"readies, {self._writer.in_flight()} in flight)"
        )
