"""Test doubles for the batching tests: an engine whose commits wait at a gate, and a node
that records what the batcher does to it."""

from __future__ import annotations

import threading
from typing import Any

from multiraft.engine import EngineSnapshot, EngineStats, MemoryEngine, RegionStorage, WriteBatch
from multiraft.raft import Entry, HardState, Message, MessageType, Ready


class GateEngine:
    """A `MemoryEngine` whose `write` blocks until the test opens the gate once per write
    (`release()`), so a test can hold a round inside the writer."""

    def __init__(self) -> None:
        self.inner = MemoryEngine()
        self._gate = threading.Semaphore(0)
        # Set when a write is waiting at the gate.
        self.waiting = threading.Event()
        self.closed_gate = True
        self.committed: list[WriteBatch] = []

    @property
    def stats(self) -> EngineStats:
        return self.inner.stats

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._gate.release()

    def open(self) -> None:
        """Let every write through from now on."""
        self.closed_gate = False
        self._gate.release()

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        if self.closed_gate:
            self.waiting.set()
            self._gate.acquire()
            self.waiting.clear()
        self.inner.write(batch, sync)
        self.committed.append(batch)

    def get(self, cf: str, key: bytes) -> bytes | None:
        return self.inner.get(cf, key)

    def scan(
        self,
        cf: str,
        start: bytes = b"",
        end: bytes | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        return self.inner.scan(cf, start, end, limit, reverse)

    def snapshot(self) -> EngineSnapshot:
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class RecordingNode:
    """A `ReadyNode` over a real RegionStorage that records `advance_append_async` and
    `on_persist_ready` calls (and checks they come in order)."""

    def __init__(self, storage: RegionStorage, engine: Any = None) -> None:
        self.storage = storage
        self.engine = engine
        self.advanced: list[int] = []
        self.persisted: list[int] = []
        self.next_index = storage.last_index() + 1
        self.number = 0

    def store(self) -> RegionStorage:
        return self.storage

    def advance_append_async(self, rd: Ready) -> None:
        assert not self.advanced or rd.number > self.advanced[-1]
        self.advanced.append(rd.number)

    def on_persist_ready(self, number: int) -> None:
        assert number in self.advanced, "acknowledged a Ready that was never handed off"
        assert not self.persisted or number > self.persisted[-1], "acknowledgements out of order"
        self.persisted.append(number)

    def ready(
        self,
        n_entries: int = 1,
        messages: int = 0,
        persisted_messages: int = 0,
        committed: list[Entry] | None = None,
    ) -> Ready:
        """A Ready like a single-voter leader's (or a follower's with `persisted_messages`)."""
        self.number += 1
        rd = Ready(self.number)
        first = self.next_index
        rd.entries = [
            Entry(index=i, term=1, data=b"e%d" % i) for i in range(first, first + n_entries)
        ]
        self.next_index += n_entries
        rd.hs = HardState(term=1, vote=1, commit=max(0, first - 1))
        rd.messages = [
            Message(msg_type=MessageType.MsgAppend, to=2, index=i) for i in range(messages)
        ]
        rd.persisted_messages = [
            Message(msg_type=MessageType.MsgAppendResponse, to=2, index=i)
            for i in range(persisted_messages)
        ]
        rd.committed_entries = list(committed or [])
        rd.must_sync = n_entries > 0
        return rd
