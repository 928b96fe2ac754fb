"""The nemesis's verdict, report and artifacts, without processes: a history that is not
linearizable fails the run, and a failing run saves what is needed to look into it; a saved
history can be checked again from the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from multiraft.testing.linearizability import KvOp, check_history
from multiraft.testing.nemesis import (
    NemesisConfig,
    RunResult,
    _save,
    load_history,
    main,
    save_history,
)
from multiraft.testing.nemesis_faults import Event
from multiraft.testing.workloads import RegisterWorkload, SetResult, SetWorkload


def _stale_read_history() -> list[KvOp]:
    return [
        KvOp("put", b"reg/k", value=b"1", invoked_at=0, completed_at=1, label="w0"),
        KvOp("put", b"reg/k", value=b"2", invoked_at=2, completed_at=3, label="w1"),
        KvOp("get", b"reg/k", result=b"1", invoked_at=4, completed_at=5, label="w2"),
        KvOp("cas", b"reg/k", expected=b"2", value=b"3", result=True, invoked_at=6,
             completed_at=None, label="w3"),
    ]


class _Logs:
    """Stands for a FaultyCluster: only its logs are saved."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def save_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True)
        (dest / "store-1.log").write_text("a log line\n")
        return [dest / "store-1.log"]


def test_history_round_trips_through_a_file(tmp_path: Path) -> None:
    ops = _stale_read_history() + [KvOp("get", b"reg/\xff", result=None, invoked_at=7)]
    save_history(ops, tmp_path / "h.jsonl")
    again = load_history(tmp_path / "h.jsonl")
    assert [(o.kind, o.key, o.value, o.expected, o.result, o.invoked_at, o.completed_at, o.label)
            for o in again] == [
        (o.kind, o.key, o.value, o.expected, o.result, o.invoked_at, o.completed_at, o.label)
        for o in ops]


def test_a_failing_run_says_why_and_saves_its_history_and_logs(tmp_path: Path) -> None:
    import random

    register = RegisterWorkload(random.Random(1))
    register.history = _stale_read_history()
    sets = SetWorkload(random.Random(2))
    sets.attempted = {b"set/1", b"set/2"}
    sets.acked = {b"set/1"}
    result = RunResult(NemesisConfig(seconds=5, seed=3))
    result.schedule = [Event(1.0, "SIGSTOP store 2 for 1.0s"), Event(2.0, "SIGCONT store 2")]
    result.register = register.summary()
    result.linearizable = check_history(register.history)
    result.set_result = SetResult(False, 2, 1, 1, [b"set/1"], [b"set/9"])
    assert not result.ok
    verdict = result.verdict()
    assert verdict.startswith("FAIL") and "NOT linearizable on key b'reg/k'" in verdict
    assert "1 lost [b'set/1']" in verdict and "1 never attempted" in verdict
    dest = tmp_path / "artifacts"
    _save(result, _Logs(tmp_path), register, sets, dest)  # type: ignore[arg-type]
    result.artifacts = dest
    report = result.report()
    assert "SIGSTOP store 2" in report and f"artifacts: {dest}" in report
    assert "register 4 ops (3 ok, 1 unknown outcome)" in report
    assert len(load_history(dest / "history.jsonl")) == 4
    assert "not linearizable" in (dest / "linearizability.txt").read_text()
    assert json.loads((dest / "set.json").read_text())["result"]["lost"] == ["set/1"]
    assert (dest / "logs" / "store-1.log").exists()
    assert "SIGCONT" in (dest / "schedule.txt").read_text()
    # The saved history checks again from the command line: exit 1, the key explained.
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdout", out)
        assert main(["--check", str(dest / "history.jsonl")]) == 1
        assert "not linearizable" in out.getvalue()


def test_a_passing_verdict_needs_every_check() -> None:
    result = RunResult(NemesisConfig())
    assert not result.ok  # nothing checked yet
    result.linearizable = check_history([])
    result.set_result = SetResult(True, 0, 0, 0, [], [])
    assert result.ok and result.verdict().startswith("PASS")
    result.failures.append("store 2 exited with 1 when no fault asked for it")
    assert not result.ok and "store 2 exited" in result.verdict()


def test_unknown_fault_kinds_are_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--faults", "partition,meteor"])


def test_errors_in_the_stores_logs_are_counted(tmp_path: Path) -> None:
    from multiraft.testing.nemesis import log_errors, log_events

    log = tmp_path / "store-1.log"
    log.write_text(
        "2026-01-01 10:00:00,000 INFO    [store 1] multiraft.server.node: store 1 up\n"
        "2026-01-01 10:00:01,000 ERROR   [store 1] asyncio: Exception in callback at 0x7f12\n"
        "2026-01-01 10:00:02,000 ERROR   [store 1] asyncio: Exception in callback at 0x7f99\n"
        "2026-01-01 10:00:03,000 ERROR   [store 1] multiraft.server.node: store 1: round failed; stopping\n"
        "2026-01-01 10:00:04,000 INFO    [store 1] multiraft.server.main: exit 1 after 3.0s\n"
        "2026-01-01 10:00:05,000 INFO    [store 1] multiraft.store.store: store 1, last 10 s: "
        "1,204 elected a leader here, 3 applied a snapshot, 2 splits (now 5 regions, 2 led here, "
        "1 awake)\n"
        "2026-01-01 10:00:15,000 INFO    [store 1] multiraft.store.store: store 1, last 10 s: "
        "1 elected a leader here, 1 merges (now 4 regions, 3 led here, 0 awake)\n"
    )

    class Stub:
        stores = {1: None}

        def log_files(self, sid: int) -> list[Path]:
            return [log]

    assert log_errors(Stub()) == {  # type: ignore[arg-type]
        "asyncio: Exception in callback at #": 2,
        "multiraft.server.node: store #: round failed; stopping": 1,
    }
    events = log_events(Stub())  # type: ignore[arg-type]
    assert events == {
        "elections won": 1_205,
        "snapshots applied": 3,
        "snapshot sends failed": 0,
        "splits": 2,
        "merges": 1,
        "exits with status 1": 1,
    }
