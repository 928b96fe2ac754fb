"""A short nemesis run on real processes (multiraft/testing/nemesis.py): partitions through the
proxy, pauses, SIGKILLs (alone and during splits, merges and membership changes) and disk
faults while the register and set workloads run, with lease reads on; the register history
must be linearizable and the set intact.

The long variants: `MULTIRAFT_NEMESIS_SECONDS` (default 30), `MULTIRAFT_NEMESIS_FAULTS`
(default partition,pause,kill,disk), `MULTIRAFT_NEMESIS_SEED` (default 1); or
`python -m multiraft.testing.nemesis --help`."""

from __future__ import annotations

import io
from pathlib import Path

from multiraft.testing.nemesis import config_from_env, run_nemesis


def test_a_short_nemesis_run_passes(tmp_path: Path) -> None:
    cfg = config_from_env(data_dir=tmp_path / "run", lease_reads=True)
    out = io.StringIO()
    result = run_nemesis(cfg, out)
    report = out.getvalue()
    print(report)
    # The faults happened while the clients worked.
    assert sum(result.fault_counts.values()) >= 1, report
    assert result.register["ok"] > 200, report
    assert result.set_result is not None and result.set_result.acked > 50, report
    assert result.ok, report
    assert "verdict: PASS" in report
