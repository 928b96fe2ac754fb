"""Fixtures shared by the engine tests: every protocol test runs on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from multiraft.engine import Engine, LmdbEngine, MemoryEngine

ENGINE_KINDS = ["memory", "lmdb"]


class EngineFactory:
    """Opens the engine under test and reopens it (LMDB: close + open the same directory;
    memory: the same object, which is what survives a restart of the simulator's node)."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.current: Engine | None = None

    def open(self, **kwargs: object) -> Engine:
        if self.kind == "memory":
            if self.current is None:
                self.current = MemoryEngine()
            return self.current
        # fsync=False keeps the suite fast; the durable mode has its own tests.
        kwargs.setdefault("fsync", False)
        self.current = LmdbEngine(self.path, **kwargs)  # type: ignore[arg-type]
        return self.current

    def reopen(self, **kwargs: object) -> Engine:
        if self.kind == "memory":
            assert self.current is not None
            return self.current
        if self.current is not None:
            self.current.close()
        return self.open(**kwargs)

    def close(self) -> None:
        if self.current is not None:
            self.current.close()


@pytest.fixture(params=ENGINE_KINDS)
def engine_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineFactory]:
    factory = EngineFactory(request.param, tmp_path / "store")
    yield factory
    factory.close()


@pytest.fixture
def engine(engine_factory: EngineFactory) -> Engine:
    return engine_factory.open()
