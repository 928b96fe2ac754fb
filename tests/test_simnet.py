"""Virtual time and the simulated network."""

from __future__ import annotations

import random

from multiraft.testing.simnet import LinkFaults, SimLoop, SimNetwork


def test_loop_runs_in_time_order() -> None:
    loop = SimLoop()
    seen: list[tuple[float, str]] = []
    loop.call_at(2.0, lambda: seen.append((loop.now, "b")))
    loop.call_at(1.0, lambda: seen.append((loop.now, "a")))
    loop.call_at(1.0, lambda: seen.append((loop.now, "a2")))
    assert loop.run_until(1.5) == 2
    assert seen == [(1.0, "a"), (1.0, "a2")] and loop.now == 1.5
    loop.run_until(3)
    assert seen[-1] == (2.0, "b")


def _net(seed: int, faults: LinkFaults) -> tuple[SimLoop, SimNetwork, list[tuple[int, int, bytes]]]:
    loop = SimLoop()
    got: list[tuple[int, int, bytes]] = []
    net = SimNetwork(loop, random.Random(seed), lambda to, frm, f: got.append((to, frm, f)), faults)
    return loop, net, got


def test_delivery_reorder_and_determinism() -> None:
    def run(seed: int) -> list[tuple[int, int, bytes]]:
        loop, net, got = _net(seed, LinkFaults(min_latency=0.001, max_latency=0.01))
        for i in range(50):
            net.send(1, 2, bytes([i]))
        loop.run_until(1.0)
        return got

    a = run(5)
    assert sorted(f for _, _, f in a) == [bytes([i]) for i in range(50)]
    assert [f for _, _, f in a] != [bytes([i]) for i in range(50)]  # reordered
    assert run(5) == a  # same seed, same order


def test_drops_duplicates_partitions_and_crashes() -> None:
    loop, net, got = _net(1, LinkFaults(drop=0.5, duplicate=0.5))
    for _ in range(200):
        net.send(1, 2, b"x")
    loop.run_until(1.0)
    st = net.faults.stats
    assert 0 < st["dropped"] < 200 and st["duplicated"] > 0
    assert len(got) == st["delivered"]

    loop, net, got = _net(1, LinkFaults())
    net.partition([1], [2, 3])
    net.send(1, 2, b"a")
    net.send(2, 3, b"b")
    loop.run_until(1.0)
    assert [f for _, _, f in got] == [b"b"]
    net.heal()
    net.send(1, 2, b"c")
    net.set_down(2, True)  # crashed while the frame is in flight
    loop.run_until(2.0)
    assert [f for _, _, f in got] == [b"b"]
    net.set_down(2, False)
    net.send(1, 2, b"d")
    loop.run_until(3.0)
    assert [f for _, _, f in got] == [b"b", b"d"]
