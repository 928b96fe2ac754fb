"""A small Jepsen-style run on real processes: concurrent clients put, get and compare-and-swap
a few keys while leaders move and the store leading a region is SIGKILLed and restarted; the
recorded history must be linearizable (multiraft.testing.check_history).

An operation that ends in a timeout or a lost connection has an unknown outcome: it stays
pending in the history (it may or may not have taken effect, at any time after it started).
`MULTIRAFT_E2E_JEPSEN_SECONDS` makes the run longer (default 12 s)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from multiraft.client import AsyncClient, ClientError, InvalidRequest
from multiraft.server.localcluster import LocalCluster
from multiraft.testing import KvOp, check_history

from .conftest import make_cluster

SECONDS = float(os.environ.get("MULTIRAFT_E2E_JEPSEN_SECONDS", "12"))
KEYS = [b"jepsen-%d" % i for i in range(6)]
WORKERS = 8
# Bounds the history (the checker's work grows fast with pending operations per key).
MAX_OPS_PER_WORKER = max(400, int(35 * SECONDS))
# Think time between one worker's operations (seconds, uniform): spreads the run over the
# nemesis's schedule.
THINK = 0.05


async def _worker(
    wid: int, client: AsyncClient, history: list[KvOp], end: float, rng: random.Random
) -> None:
    n = 0
    while time.monotonic() < end and n < MAX_OPS_PER_WORKER:
        await asyncio.sleep(rng.uniform(0, THINK))
        n += 1
        key = rng.choice(KEYS)
        r = rng.random()
        if r < 0.4:
            op = KvOp("get", key)
        elif r < 0.75:
            op = KvOp("put", key, value=b"w%d-%d" % (wid, n))
        else:
            # Compare against a recent value of the key (often right, sometimes stale).
            seen = [o.value for o in history[-50:] if o.key == key and o.kind == "put"]
            op = KvOp("cas", key, expected=rng.choice(seen) if seen else None,
                      value=b"c%d-%d" % (wid, n))
        op.label = f"worker {wid} op {n}"
        op.invoked_at = time.monotonic()
        history.append(op)
        try:
            if op.kind == "get":
                op.result = await client.get(key, timeout=3.0)
            elif op.kind == "put":
                assert op.value is not None
                await client.put(key, op.value, timeout=3.0)
            else:
                op.result = await client.cas(key, op.expected, op.value, timeout=3.0)
        except InvalidRequest:
            raise  # a bug in this test or the client, never an unknown outcome
        except ClientError:
            continue  # unknown outcome: stays pending
        op.completed_at = time.monotonic()


async def _nemesis(cluster: LocalCluster, end: float, kills: list[float]) -> list[str]:
    """Moves leaders, then kills the store leading the lowest region and restarts it, until
    `end`. Appends the time of each kill to `kills`; returns what it did (for messages)."""
    loop = asyncio.get_running_loop()
    log: list[str] = []
    rng = random.Random(7)
    while time.monotonic() < end - 4:
        await asyncio.sleep(1.5)
        leaders = await loop.run_in_executor(None, cluster.leaders)
        if not leaders:
            continue
        rid, sid = sorted(leaders.items())[0]
        to = rng.choice([s for s in cluster.stores if s != sid])
        try:
            await loop.run_in_executor(
                None, cluster.admin, sid, f"/regions/{rid}/transfer-leader", "POST",
                {"store_id": to},
            )
            log.append(f"transfer region {rid} {sid} -> {to}")
        except OSError as e:  # no longer the leader, or the store is busy: fine
            log.append(f"transfer region {rid} failed: {e}")
        await asyncio.sleep(1.5)
        leaders = await loop.run_in_executor(None, cluster.leaders)
        if not leaders:
            continue
        victim = leaders[min(leaders)]
        cluster.kill(victim)
        kills.append(time.monotonic())
        log.append(f"SIGKILL store {victim}")
        await asyncio.sleep(2.0)
        cluster.start(victim)
        log.append(f"restart store {victim}")
        await loop.run_in_executor(None, lambda: cluster.wait_ready(60))
    return log


async def _run(cluster: LocalCluster) -> tuple[list[KvOp], list[str], list[float]]:
    history: list[KvOp] = []
    kills: list[float] = []
    end = time.monotonic() + SECONDS
    rng = random.Random(1)
    async with AsyncClient(cluster.client_addrs(), attempt_timeout=1.0) as client:
        nemesis = asyncio.ensure_future(_nemesis(cluster, end, kills))
        await asyncio.gather(
            *(_worker(w, client, history, end, random.Random(rng.random())) for w in range(WORKERS))
        )
        log = await nemesis
    return history, log, kills


def test_history_stays_linearizable_through_leader_moves_and_kills(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, initial_regions=2, fsync=True)
    try:
        cluster.start_all()
        cluster.wait_ready(90)
        history, log, kills = asyncio.run(_run(cluster))
    finally:
        cluster.close()
    done = [op for op in history if not op.pending]
    assert len(done) > 100, f"the workload barely ran: {len(done)} ops; nemesis: {log}"
    # The faults happened while the clients were working.
    assert kills, f"no store was killed: {log}"
    after = [op for op in done if op.invoked_at > kills[0]]
    assert len(after) > 50, f"{len(after)} ops after the first kill; nemesis: {log}"
    assert any(op.kind == "get" and op.result is not None for op in done)
    result = check_history(history)
    assert result.ok, (
        f"not linearizable on key {result.key!r}; nemesis: {log}; "
        f"{sum(op.pending for op in history)} pending of {len(history)}"
    )
