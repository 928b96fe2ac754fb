"""The batching package's public surface exists, every module imports on its own, and the
package keeps the house's walls: sans-asyncio (no event loop, sockets or prometheus; the
writer thread is its only thread)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import batching

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "batching"
MODULES = sorted(f"batching.{p.stem}" for p in PKG.glob("*.py") if p.stem != "__init__")
FORBIDDEN = {"asyncio", "uvloop", "socket", "selectors", "prometheus_client", "metrics", "router"}


def test_public_names_exist() -> None:
    for name in batching.__all__:
        assert hasattr(batching, name), name
    for name in ("Batcher", "Round", "ReadyNode", "BatchingStats", "BatchingFatalError"):
        assert name in batching.__all__


def test_every_module_imports_alone() -> None:
    procs = {
        m: subprocess.Popen([sys.executable, "-c", f"import {m}"], cwd=ROOT, stderr=subprocess.PIPE)
        for m in MODULES
    }
    for module, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{module}: {err.decode()[-1000:]}"


@pytest.mark.parametrize("path", sorted(PKG.glob("*.py")), ids=lambda p: p.name)
def test_sans_asyncio(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
