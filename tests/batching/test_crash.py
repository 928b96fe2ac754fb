"""Crash safety: a child process writes rounds as fast as it can through the real batching
layer to a real LMDB directory (durable commits, pipelined writer thread) and reports every
acknowledged round; the test SIGKILLs it at random (seeded) moments, many times over the same
directory, and after each kill reopens the engine and checks that

- every acknowledged round is fully present (in every region's log),
- no round is half-present (all regions' entries of a round, or none),
- every region's raft state is consistent: hard state commit <= last index, the log is
  contiguous from the truncated index, terms never decrease.

With the raft WAL, checkpoints run every 4 rounds, so kills also land during checkpoints."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multiraft.engine import CF_RAFT_LOG, LmdbEngine, RaftWal, RegionStorage
from multiraft.engine.keys import decode_raft_log_key, raft_log_bounds

from .crash_child import REGIONS, round_of

ROOT = Path(__file__).resolve().parents[2]


def run_child(path: Path, seed: int, layout: str, rng: random.Random) -> tuple[int, set[int]]:
    """Start the child, let it write for a random while, SIGKILL it. Returns (its first round,
    the rounds it acknowledged)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.batching.crash_child", str(path), str(seed), layout],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith(b"S "):
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"child failed to start: {first!r} {err.decode()[-2000:]}")
    time.sleep(rng.uniform(0.02, 0.35))
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    acked = {int(line.split()[1]) for line in out.splitlines() if line.startswith(b"A ")}
    return int(first.split()[1]), acked


def check(path: Path, layout: str, acked: set[int], stats: dict[str, int]) -> set[int]:
    """Reopen and check the invariants; returns the rounds on disk."""
    engine = LmdbEngine(path)
    try:
        wal = RaftWal(engine) if layout == "wal" else None
        if wal is not None:
            stats["wal_records"] += wal.stats.recovered_records
        rounds_by_region = []
        for rid in range(1, REGIONS + 1):
            s = RegionStorage(engine, rid, wal=wal)
            first, last = s.first_index(), s.last_index()
            hs = s.initial_state().hard_state
            assert hs.commit <= last, f"region {rid}: commit {hs.commit} > last index {last}"
            ents = s.entries(first, last + 1)
            assert [e.index for e in ents] == list(range(first, last + 1)), f"region {rid}: hole"
            terms = [s.term(first - 1), *(e.term for e in ents)]
            assert terms == sorted(terms), f"region {rid}: terms go down: {terms}"
            assert hs.term >= terms[-1]
            # On disk, the raft_log keys are contiguous too (with the WAL: as of the last
            # checkpoint, the WAL records hold the rest).
            start, end = raft_log_bounds(rid)
            idx = [decode_raft_log_key(k)[1] for k, _ in engine.scan(CF_RAFT_LOG, start, end)]
            assert idx == list(range(idx[0], idx[0] + len(idx))) if idx else True
            if wal is None:
                assert idx == list(range(first, last + 1))
            else:
                stats["cf_entries"] += len(idx)
            rounds = [r for e in ents if (r := round_of(e.data)) is not None]
            assert rounds == sorted(set(rounds)), f"region {rid}: rounds out of order"
            rounds_by_region.append(set(rounds))
        everywhere = set.intersection(*rounds_by_region)
        anywhere = set.union(*rounds_by_region)
        half = sorted(anywhere - everywhere)
        assert not half, f"rounds present in some regions only: {half[:10]}"
        missing = sorted(acked - everywhere)
        assert not missing, f"acknowledged rounds lost: {missing[:10]}"
        return everywhere
    finally:
        engine.close()


@pytest.mark.parametrize(("layout", "kills"), [("wal", 16), ("direct", 6)])
def test_sigkill_at_random_moments_loses_no_acknowledged_round(
    tmp_path: Path, layout: str, kills: int
) -> None:
    rng = random.Random(20261128)
    path = tmp_path / "store"
    acked: set[int] = set()
    total_acked = 0
    stats = {"wal_records": 0, "cf_entries": 0}
    for _ in range(kills):
        start, got = run_child(path, rng.randrange(1 << 30), layout, rng)
        # A new incarnation continues after every round on disk: nothing acknowledged is reused.
        assert not any(r >= start for r in acked)
        acked |= got
        total_acked += len(got)
        on_disk = check(path, layout, acked, stats)
        assert acked <= on_disk
    assert total_acked > kills, "the child barely wrote anything"
    if layout == "wal":
        # Recovery replayed WAL records, and checkpoints had moved entries into raft_log.
        assert stats["wal_records"] > 0 and stats["cf_entries"] > 0, stats
