"""Client workloads of the nemesis runs (multiraft/testing/nemesis.py), on `AsyncClient`.

- `RegisterWorkload`: workers put, get and compare-and-swap registers; the history is checked
  with `linearizability.check_history`. Keys rotate every `window` seconds (Jepsen's
  "independent keys"): a key's history stays short however long the run, and so does the
  checker's search, which grows fast with the operations of one key left pending.
- `SetWorkload`: workers add unique elements (one key each under `set/`); at the end every
  acknowledged add must be present and nothing present that was never attempted.
- `Filler`: large values overwritten under `fill/` while switched on, so that data files
  grow (a full disk is hit) and snapshots have something to carry.

An operation that ends in a client error (a timeout, a lost connection, an error the client
gave up on) has an unknown outcome: it stays pending in the history, as in Jepsen.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from multiraft.client import AsyncClient, ClientError, InvalidRequest

from .linearizability import KvOp

__all__ = ["RegisterWorkload", "SetWorkload", "SetResult", "Filler", "REG_PREFIX", "SET_PREFIX",
           "FILL_PREFIX"]

_log = logging.getLogger(__name__)

REG_PREFIX = b"reg/"
SET_PREFIX = b"set/"
FILL_PREFIX = b"fill/"


@dataclass
class RegisterWorkload:
    """Put / get / CAS on a few registers at a time (module docstring)."""

    rng: random.Random
    workers: int = 6
    keys: int = 3
    window: float = 10.0
    think: float = 0.05
    timeout: float = 3.0
    history: list[KvOp] = field(default_factory=list)
    # Client errors by type name (each left an operation pending).
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _t0: float = 0.0
    _recent: dict[bytes, deque[bytes]] = field(default_factory=lambda: defaultdict(lambda: deque(maxlen=4)))

    def key_at(self, now: float, rng: random.Random) -> bytes:
        gen = int((now - self._t0) / self.window)
        return REG_PREFIX + b"%05d-%d" % (gen, rng.randrange(self.keys))

    def keys_used(self) -> list[bytes]:
        return sorted({op.key for op in self.history})

    async def run(self, client: AsyncClient, end: float) -> None:
        self._t0 = time.monotonic()
        await asyncio.gather(
            *(self._worker(w, client, end, random.Random(self.rng.random()))
              for w in range(self.workers))
        )

    async def _worker(self, wid: int, client: AsyncClient, end: float, rng: random.Random) -> None:
        n = 0
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(0, self.think))
            n += 1
            key = self.key_at(time.monotonic(), rng)
            r = rng.random()
            if r < 0.4:
                op = KvOp("get", key)
            elif r < 0.75:
                op = KvOp("put", key, value=b"w%d-%d" % (wid, n))
            else:
                # Against a recent value of the key: often right, sometimes stale.
                seen = self._recent[key]
                op = KvOp("cas", key, expected=rng.choice(seen) if seen else None,
                          value=b"c%d-%d" % (wid, n))
            op.label = f"worker {wid} op {n}"
            await self.execute(client, op)

    async def execute(self, client: AsyncClient, op: KvOp, timeout: float | None = None) -> None:
        """Run `op`, recording it in the history (pending if its outcome is unknown)."""
        op.invoked_at = time.monotonic()
        self.history.append(op)
        t = self.timeout if timeout is None else timeout
        try:
            if op.kind == "get":
                op.result = await client.get(op.key, timeout=t)
            elif op.kind == "put":
                assert op.value is not None
                self._recent[op.key].append(op.value)
                await client.put(op.key, op.value, timeout=t)
            else:
                if op.value is not None:
                    self._recent[op.key].append(op.value)
                op.result = await client.cas(op.key, op.expected, op.value, timeout=t)
        except InvalidRequest:
            raise  # a bug in the workload or the client, never an unknown outcome
        except ClientError as e:
            self.errors[type(e).__name__] += 1
            return
        op.completed_at = time.monotonic()

    async def final_reads(self, client: AsyncClient, timeout: float = 30.0) -> int:
        """One more read of every key (after the faults are healed); returns how many
        failed."""
        failed = 0
        for key in self.keys_used():
            op = KvOp("get", key, label="final read")
            await self.execute(client, op, timeout)
            failed += op.pending
        return failed

    def summary(self) -> dict[str, int]:
        done = [op for op in self.history if not op.pending]
        return {
            "ops": len(self.history),
            "ok": len(done),
            "unknown": len(self.history) - len(done),
            "keys": len(self.keys_used()),
            "reads_with_value": sum(1 for op in done if op.kind == "get" and op.result is not None),
            "cas_swapped": sum(1 for op in done if op.kind == "cas" and op.result is True),
        }


@dataclass
class SetResult:
    ok: bool
    attempted: int
    acked: int
    present: int
    # Acknowledged adds missing at the end, and elements present that were never added.
    lost: list[bytes]
    unexpected: list[bytes]
    error: str = ""

    def explain(self) -> str:
        if self.error:
            return f"set: final read failed: {self.error}"
        return (
            f"set: {self.acked} acknowledged of {self.attempted} attempted, {self.present} "
            f"present, {len(self.lost)} lost {self.lost[:10]!r}, {len(self.unexpected)} "
            f"never attempted {self.unexpected[:10]!r}"
        )


@dataclass
class SetWorkload:
    """Unique adds (module docstring)."""

    rng: random.Random
    workers: int = 2
    think: float = 0.05
    timeout: float = 3.0
    attempted: set[bytes] = field(default_factory=set)
    acked: set[bytes] = field(default_factory=set)
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    async def run(self, client: AsyncClient, end: float) -> None:
        await asyncio.gather(
            *(self._worker(w, client, end, random.Random(self.rng.random()))
              for w in range(self.workers))
        )

    async def _worker(self, wid: int, client: AsyncClient, end: float, rng: random.Random) -> None:
        n = 0
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(0, self.think))
            n += 1
            # Spread over the key space of the set, so that splits cut through it.
            key = SET_PREFIX + b"%02d/%d-%d" % (rng.randrange(100), wid, n)
            self.attempted.add(key)
            try:
                await client.put(key, b"1", timeout=self.timeout)
            except InvalidRequest:
                raise
            except ClientError as e:
                self.errors[type(e).__name__] += 1
                continue
            self.acked.add(key)

    async def check(self, client: AsyncClient, timeout: float = 60.0) -> SetResult:
        """Read the whole set (after the faults are healed) and compare."""
        try:
            pairs = await client.scan(SET_PREFIX, SET_PREFIX[:-1] + b"0", limit=10**9,
                                      timeout=timeout)
        except ClientError as e:
            return SetResult(False, len(self.attempted), len(self.acked), 0, [], [], str(e))
        present = {k for k, _ in pairs}
        lost = sorted(self.acked - present)
        unexpected = sorted(present - self.attempted)
        return SetResult(not lost and not unexpected, len(self.attempted), len(self.acked),
                         len(present), lost, unexpected)


@dataclass
class Filler:
    """Large values under `fill/` while `on` is set (module docstring)."""

    rng: random.Random
    value_size: int = 16 << 10
    keys: int = 64
    timeout: float = 3.0
    on: asyncio.Event = field(default_factory=asyncio.Event)
    written: int = 0

    async def run(self, client: AsyncClient, end: float) -> None:
        while time.monotonic() < end:
            try:
                await asyncio.wait_for(self.on.wait(), max(0.01, end - time.monotonic()))
            except TimeoutError:
                return
            key = FILL_PREFIX + b"%03d" % self.rng.randrange(self.keys)
            try:
                await client.put(key, self.rng.randbytes(self.value_size), timeout=self.timeout)
            except ClientError:
                await asyncio.sleep(0.05)
                continue
            self.written += 1
