"""Loopback ports for the tests that start servers: a random free range per call, so that two
test runs on one machine (or a test beside a benchmark, which picks from 45000 up) do not
reach for the same fixed ports between the check and the bind."""

from __future__ import annotations

import random

from multiraft.server.localcluster import free_base_port


def free_test_base_port(stores: int) -> int:
    """A base port with the ports of stores 1..`stores` free, from 30000–44900."""
    return free_base_port(stores, start=random.randrange(30000, 44900, 100))
