"""Fixtures of the end-to-end tests: real `multiraft server` processes on 127.0.0.1, free
ports, temporary data dirs; every child is stopped (then killed) in teardown."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multiraft.server.localcluster import LocalCluster, free_base_port

# Short ticks keep elections quick; 50 ms x 10 ticks leaves room on a loaded 2-core machine.
TICK_MS = 50


def make_cluster(path: Path, stores: int = 3, **kw: Any) -> LocalCluster:
    kw.setdefault("base_tick_ms", TICK_MS)
    kw.setdefault("initial_regions", 4)
    # Away from the default ports (20160...), which a bare `multiraft server` test uses.
    kw.setdefault("base_port", free_base_port(stores + 2, start=random.randrange(21000, 29000, 100)))
    return LocalCluster(stores, path, **kw)


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A three-store cluster shared by the tests of a module that leave it as they found it."""
    c = make_cluster(tmp_path_factory.mktemp("cluster3"), fsync=False)
    try:
        c.start_all()
        c.wait_ready(90)
        yield c
    finally:
        c.close()


def client_module() -> Any:
    import multiraft.client

    return multiraft.client
