"""LMDB-specific behaviour: map growth, durability (fsync count), the GIL, failures."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import lmdb
import pytest

from multiraft.engine import (
    CF_KV,
    CF_RAFT_LOG,
    LmdbEngine,
    SnapshotInvalidated,
    WriteBatch,
    WriteFailed,
)
from multiraft.engine import lmdb_engine as lmdb_engine_module

REPO = Path(__file__).resolve().parents[2]


def big_batch(n: int, value_size: int, prefix: bytes = b"k") -> WriteBatch:
    wb = WriteBatch()
    for i in range(n):
        wb.put(CF_KV, prefix + b"%06d" % i, bytes([i % 251]) * value_size)
    return wb


def test_map_grows_when_one_batch_does_not_fit(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path, map_size=64 * 1024, fsync=False)
    assert engine.map_size() < 100 * 1024
    engine.write(big_batch(2000, 1000))  # ~2 MB into a 64 KiB map
    assert engine.stats.map_resizes >= 1
    assert engine.map_size() > 2_000_000
    assert len(engine.scan(CF_KV)) == 2000
    assert engine.get(CF_KV, b"k001999") == bytes([1999 % 251]) * 1000
    engine.close()
    engine = LmdbEngine(tmp_path, map_size=64 * 1024, fsync=False)
    rows = engine.scan(CF_KV)
    assert len(rows) == 2000
    assert all(v == bytes([i % 251]) * 1000 for i, (_, v) in enumerate(rows))
    engine.close()


def test_map_grows_across_many_small_batches(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path, map_size=64 * 1024, fsync=False)
    for b in range(40):
        engine.write(big_batch(50, 1000, prefix=b"b%02d-" % b))
    assert engine.stats.map_resizes >= 3
    assert len(engine.scan(CF_KV)) == 2000
    engine.close()


def test_map_growth_limit_fails_the_write_and_keeps_the_rest(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path, map_size=64 * 1024, max_map_size=256 * 1024, fsync=False)
    wb = WriteBatch()
    wb.put(CF_KV, b"before", b"1")
    engine.write(wb)
    with pytest.raises(WriteFailed, match="limit"):
        engine.write(big_batch(2000, 1000))
    assert engine.scan(CF_KV) == [(b"before", b"1")]
    wb = WriteBatch()
    wb.put(CF_KV, b"after", b"2")
    engine.write(wb)
    assert engine.get(CF_KV, b"after") == b"2"
    engine.close()


def test_forced_growth_invalidates_open_snapshots(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path, map_size=64 * 1024, fsync=False)
    wb = WriteBatch()
    wb.put(CF_KV, b"a", b"1")
    engine.write(wb)
    snap = engine.snapshot()
    assert snap.get(CF_KV, b"a") == b"1"
    engine.write(big_batch(500, 1000))
    assert engine.stats.map_resizes >= 1
    with pytest.raises(SnapshotInvalidated):
        snap.get(CF_KV, b"a")
    with pytest.raises(SnapshotInvalidated):
        snap.scan(CF_KV)
    snap.close()
    with engine.snapshot() as snap2:
        assert snap2.get(CF_KV, b"a") == b"1"
    engine.close()


def test_growth_happens_ahead_of_time_while_no_snapshot_is_open(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path, map_size=1 << 20, fsync=False)
    retries = 0
    real_grow = engine._grow

    def counting_grow(needed: int) -> None:
        nonlocal retries
        retries += needed > 0  # only a MAP_FULL retry passes the batch size
        real_grow(needed)

    engine._grow = counting_grow  # type: ignore[method-assign]
    for b in range(60):
        engine.write(big_batch(10, 1000, prefix=b"b%02d-" % b))
    assert engine.stats.map_resizes >= 1
    assert retries == 0
    engine.close()


def test_an_idle_cached_reader_does_not_pin_pages(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path, fsync=False)
    wb = WriteBatch()
    wb.put(CF_KV, b"k", b"0")
    engine.write(wb)
    assert engine.get(CF_KV, b"k") == b"0"  # begins the cached read transaction
    for i in range(300):
        wb = WriteBatch()
        wb.put(CF_KV, b"k", bytes([i % 256]) * 10_000)
        engine.write(wb)
    # Without dropping the reader, every old 10 KB value would stay: > 3 MB.
    assert os.path.getsize(tmp_path / "data.mdb") < 1_000_000
    engine.close()


def test_failed_commit_leaves_nothing_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = LmdbEngine(tmp_path, fsync=False)

    def failing_delete_range(cur: object, start: bytes, end: bytes | None) -> None:
        raise lmdb.DiskError("injected", 5)

    monkeypatch.setattr(lmdb_engine_module, "_delete_range", failing_delete_range)
    wb = WriteBatch()
    wb.put(CF_RAFT_LOG, b"x" * 16, b"entry")
    wb.put(CF_KV, b"a", b"1")
    wb.delete_range(CF_KV, b"b", b"c")
    with pytest.raises(WriteFailed):
        engine.write(wb)
    assert not wb.committed
    assert engine.get(CF_KV, b"a") is None
    assert engine.get(CF_RAFT_LOG, b"x" * 16) is None
    assert engine.stats.commits == 0
    monkeypatch.undo()
    engine.write(wb)  # the batch can be retried
    assert engine.get(CF_KV, b"a") == b"1"
    engine.close()


def test_reads_from_another_thread_see_committed_writes(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path, fsync=False)
    assert engine.get(CF_KV, b"a") is None

    def writer() -> None:
        wb = WriteBatch()
        wb.put(CF_KV, b"a", b"1")
        engine.write(wb)

    t = threading.Thread(target=writer)
    t.start()
    t.join()
    assert engine.get(CF_KV, b"a") == b"1"
    engine.close()


# -- durability: one fdatasync per commit ----------------------------------------------------

_STRACE_SCRIPT = textwrap.dedent(
    """
    import sys
    from multiraft.engine import CF_KV, LmdbEngine, WriteBatch
    path, fsync, sync, n = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", int(sys.argv[4])
    engine = LmdbEngine(path, fsync=fsync)
    for i in range(n):
        wb = WriteBatch()
        for j in range(100):
            wb.put(CF_KV, b"%06d-%03d" % (i, j), b"v" * 128)
        engine.write(wb, sync=sync)
    engine.close()
    """
)


def _count_flushes(tmp_path: Path, fsync: bool, sync: bool, n: int) -> int:
    out = tmp_path / f"strace-{fsync}-{sync}-{n}.txt"
    db = tmp_path / f"db-{fsync}-{sync}-{n}"
    proc = subprocess.run(
        [
            "strace",
            "-f",
            "-c",
            "-o",
            str(out),
            "-e",
            "trace=fsync,fdatasync,msync",
            sys.executable,
            "-c",
            _STRACE_SCRIPT,
            str(db),
            str(int(fsync)),
            str(int(sync)),
            str(n),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0 or not out.exists():
        pytest.skip(f"strace unusable here: {proc.stderr.strip()[:200]}")
    total = 0
    for m in re.finditer(
        r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", out.read_text(), re.M
    ):
        if m.group(2) in ("fsync", "fdatasync", "msync"):
            total += int(m.group(1))
    return total


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize(
    "fsync, sync, per_commit",
    [(True, True, 1), (True, False, 1), (False, True, 1), (False, False, 0)],
)
def test_flushes_per_commit(tmp_path: Path, fsync: bool, sync: bool, per_commit: int) -> None:
    """A durable commit of 100 puts costs exactly one fdatasync (strace -c, 40 commits minus
    the open/close baseline)."""
    base = _count_flushes(tmp_path, fsync, sync, 0)
    n = 40
    assert _count_flushes(tmp_path, fsync, sync, n) - base == n * per_commit
