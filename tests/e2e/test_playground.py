"""The playground watches its stores: one that dies is reported at once (its id, the signal or
exit status, its log), and its log survives the removal of the temporary data dir."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from multiraft.server.datadir import LOCK_FILE
from tests.ports import free_test_base_port

ROOT = Path(__file__).resolve().parents[2]


def _lines(stream: IO[str]) -> queue.Queue[str | None]:
    """The lines of `stream`, read by a thread (None at the end)."""
    q: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _until(q: queue.Queue[str | None], pattern: str, seen: list[str]) -> str:
    while True:
        line = q.get(timeout=120)
        assert line is not None, "".join(seen)
        seen.append(line)
        if re.search(pattern, line):
            return line


def test_a_store_that_dies_is_reported_and_its_log_kept(tmp_path: Path) -> None:
    base = free_test_base_port(4)
    pg = subprocess.Popen(
        [
            sys.executable, "-m", "multiraft", "playground", "--stores", "3",
            "--initial-regions", "2", "--base-port", str(base), "--base-tick-ms", "50",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # The temporary data dir goes under tmp_path.
        env=dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path)),
    )
    assert pg.stdout is not None and pg.stderr is not None
    out, err = _lines(pg.stdout), _lines(pg.stderr)
    seen: list[str] = []
    try:
        first = _until(out, r"^starting 3 stores in ", seen)
        data_dir = Path(first.split(" in ", 1)[1].rsplit(" ...", 1)[0])
        assert data_dir.parent == tmp_path
        _until(out, r"all with a leader", seen)
        _until(out, r"^Logs:", seen)
        # The store's pid, from its data-dir lock.
        pid = int((data_dir / "store-2" / LOCK_FILE).read_text())
        os.kill(pid, signal.SIGKILL)
        line = _until(err, r"store 2", seen)
        log = data_dir / "store-2.log"
        assert line.strip() == f"multiraft playground: store 2 was killed by SIGKILL; its log: {log}"
        pg.send_signal(signal.SIGTERM)
        assert pg.wait(60) == 1  # a store died
        rest = []
        while (item := out.get(timeout=60)) is not None:
            rest.append(item)
    finally:
        if pg.poll() is None:
            pg.kill()
            pg.wait()
    assert f"kept the log of a store that died: {log}\n" in rest
    # The crashed store's log is kept; the rest of the temporary dir is gone.
    assert log.exists() and "store 2" in log.read_text()
    assert sorted(p.name for p in data_dir.iterdir()) == ["store-2.log"]


def test_ctrl_c_while_waiting_for_leaders_stops_the_cluster(tmp_path: Path) -> None:
    """The stores never tick (a base tick of 1,000 s), so no region gets a leader: a SIGINT
    must not wait for the (long) ready timeout."""
    base = free_test_base_port(4)
    pg = subprocess.Popen(
        [
            sys.executable, "-m", "multiraft", "playground", "--stores", "3",
            "--initial-regions", "2", "--base-port", str(base), "--base-tick-ms", "1000000",
            "--ready-timeout", "3600",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path)),
    )
    assert pg.stdout is not None
    out = _lines(pg.stdout)
    seen: list[str] = []
    try:
        first = _until(out, r"^starting 3 stores in ", seen)
        data_dir = Path(first.split(" in ", 1)[1].rsplit(" ...", 1)[0])
        # Once every store is up (a store stopped while it starts exits by the signal).
        logs = [data_dir / f"store-{i}.log" for i in (1, 2, 3)]
        while not all(log.exists() and " up: " in log.read_text() for log in logs):
            assert pg.poll() is None, "".join(seen)
            time.sleep(0.2)
        pg.send_signal(signal.SIGINT)
        assert pg.wait(120) == 0
        rest = []
        while (item := out.get(timeout=60)) is not None:
            rest.append(item)
    finally:
        if pg.poll() is None:
            pg.kill()
            pg.wait()
    assert "stopped.\n" in rest
    assert not any("all with a leader" in line for line in seen + rest)
