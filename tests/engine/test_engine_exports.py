"""The engine package's public surface exists, and every module imports on its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import multiraft.engine as engine_pkg

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(
    f"multiraft.engine.{p.stem}"
    for p in (REPO / "multiraft" / "engine").glob("*.py")
    if p.stem != "__init__"
)


def test_public_names_exist() -> None:
    for name in engine_pkg.__all__:
        assert hasattr(engine_pkg, name), name
    for name in (
        "Engine",
        "WriteBatch",
        "LmdbEngine",
        "MemoryEngine",
        "RegionStorage",
        "CF_RAFT_LOG",
        "CF_RAFT_STATE",
        "CF_APPLY_STATE",
        "CF_KV",
        "CF_META",
    ):
        assert name in engine_pkg.__all__, name


def test_cf_names() -> None:
    assert engine_pkg.ALL_CFS == (
        "raft_log",
        "raft_state",
        "apply_state",
        "kv",
        "meta",
        "raft_wal",
    )


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module: str) -> None:
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, check=True, timeout=60)
