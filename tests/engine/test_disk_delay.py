"""The test-only slow disk (MULTIRAFT_TEST_DISK_DELAY): fixed or read from a file, and honoured
by LmdbEngine's commits. Sleeps are recorded, not measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiraft.engine import LmdbEngine, WriteBatch
from multiraft.engine import disk_delay as dd
from multiraft.engine.keys import CF_KV


def test_a_fixed_delay_in_milliseconds() -> None:
    assert dd.DiskDelay("25").seconds() == pytest.approx(0.025)
    assert dd.DiskDelay("-5").seconds() == 0.0


def test_a_delay_file_is_reread(tmp_path: Path) -> None:
    path = tmp_path / "delay"
    d = dd.DiskDelay(str(path), reread=0.0)
    assert d.seconds() == 0.0  # no file: no delay
    path.write_text("200\n")
    assert d.seconds() == pytest.approx(0.2)
    path.write_text("")
    assert d.seconds() == 0.0
    path.write_text("garbage")
    assert d.seconds() == 0.0


def test_unset_means_no_hook() -> None:
    assert dd.disk_delay_from_env({}) is None
    assert dd.disk_delay_from_env({dd.ENV: ""}) is None


def test_the_engine_sleeps_before_each_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "delay"
    path.write_text("30")
    monkeypatch.setenv(dd.ENV, str(path))
    slept: list[float] = []
    monkeypatch.setattr(dd.time, "sleep", slept.append)
    with LmdbEngine(tmp_path / "db") as engine:
        for i in range(3):
            wb = WriteBatch()
            wb.put(CF_KV, b"k%d" % i, b"v")
            engine.write(wb)
        assert slept == [pytest.approx(0.03)] * 3
        assert engine.get(CF_KV, b"k2") == b"v"
    monkeypatch.delenv(dd.ENV)
    with LmdbEngine(tmp_path / "db2") as engine:
        wb = WriteBatch()
        wb.put(CF_KV, b"k", b"v")
        engine.write(wb)
    assert len(slept) == 3
