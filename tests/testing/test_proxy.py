"""The fault proxy between real store transports (router.Transport on loopback): traffic passes
it, rules per directed pair drop, delay, blackhole and reject frames, and the topologies set
the rules they name. No timing assertions: "not delivered" is shown by a later frame that was
delivered (the proxy keeps each direction in order)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from multiraft.testing.proxy import BLACKHOLE, PASS, REJECT, FaultProxy, Rule
from tests.router.test_transport import Node, frame, node, run, until


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with FaultProxy(seed=1) as p:
        yield p


async def _pair(proxy: FaultProxy) -> tuple[Node, Node]:
    """Stores 1 and 2, each dialing the other through the proxy."""
    a, b = await node(1), await node(2)
    a.t.add_store(2, proxy.add_store(2, b.addr))
    b.t.add_store(1, proxy.add_store(1, a.addr))
    return a, b


async def _close(*nodes: Node) -> None:
    for n in nodes:
        await n.t.close()


async def _sync(a: Node, b: Node, seq: int) -> None:
    """Send a marker frame a -> b and wait for it: everything a sent before it was handled."""
    a.t.send(b.t.store_id, frame(a.t.store_id, seq))
    await until(lambda: seq in b.seqs(a.t.store_id), what=f"marker {seq}")


def test_frames_pass_in_order_and_are_counted_per_directed_pair(proxy: FaultProxy) -> None:
    async def main() -> None:
        a, b = await _pair(proxy)
        for i in range(200):
            a.t.send(2, frame(1, i))
            b.t.send(1, frame(2, i))
        await until(lambda: len(a.batches) == 200 and len(b.batches) == 200)
        assert b.seqs(1) == list(range(200)) and a.seqs(2) == list(range(200))
        stats = proxy.stats()
        # 200 raft frames and a handshake each way on each store's own connection, plus
        # the handshake answers on the other's.
        assert stats[(1, 2)].frames == 202 and stats[(2, 1)].frames == 202
        assert stats[(1, 2)].raft_frames == 200 and stats[(2, 1)].raft_frames == 200
        assert stats[(1, 2)].connections == 1 and stats[(2, 1)].connections == 1
        assert sorted(proxy.open_connections()) == [(1, 2), (2, 1)]
        # The stores learned each other's real addresses from the handshakes, but dial the
        # proxy: the configured address wins (addrbook.py); here add_store pinned it.
        assert b.peers[0].store_id == 1
        await _close(a, b)

    run(main())


def test_delay_keeps_the_order(proxy: FaultProxy) -> None:
    async def main() -> None:
        a, b = await _pair(proxy)
        await _sync(a, b, 0)
        proxy.set_rule(1, 2, Rule(delay=0.01, jitter=0.05))
        for i in range(1, 100):
            a.t.send(2, frame(1, i))
        await until(lambda: len(b.batches) == 100)
        assert b.seqs(1) == list(range(100))
        await _close(a, b)

    run(main())


def test_a_blackhole_swallows_one_direction_only(proxy: FaultProxy) -> None:
    async def main() -> None:
        a, b = await _pair(proxy)
        await _sync(a, b, 0)
        await _sync(b, a, 0)
        proxy.one_way(1, 2, BLACKHOLE)
        for i in range(1, 50):
            a.t.send(2, frame(1, i))
            b.t.send(1, frame(2, i))
        await until(lambda: len(a.batches) == 50)  # 2 -> 1 still passes
        assert a.seqs(2) == list(range(50))
        stats = proxy.stats()
        await until(lambda: proxy.stats()[(1, 2)].dropped == 49)
        proxy.heal()
        await _sync(a, b, 1000)
        # Nothing store 1 sent during the blackhole arrived, and the connection survived.
        assert b.seqs(1) == [0, 1000]
        assert stats[(1, 2)].connections == 1
        await _close(a, b)

    run(main())


def test_a_blackholed_dialer_gets_no_handshake_but_the_other_way_works(proxy: FaultProxy) -> None:
    async def main() -> None:
        a, b = await _pair(proxy)
        proxy.one_way(1, 2, BLACKHOLE)
        a.t.connect_timeout = 0.3
        b.t.send(1, frame(2, 7))
        await until(lambda: a.seqs(2) == [7])  # store 1's handshake answer passed
        a.t.send(2, frame(1, 7))
        await until(lambda: 2 in a.unreachable, what="store 1 never reaching store 2")
        assert b.seqs(1) == []
        proxy.heal()
        await until(lambda: a.t._stores[2].links[0].state == 0, what="backoff over")
        await _sync(a, b, 8)
        await _close(a, b)

    run(main())


def test_reject_resets_the_senders_connections_and_refuses_new_ones(proxy: FaultProxy) -> None:
    async def main() -> None:
        a, b = await _pair(proxy)
        await _sync(a, b, 0)
        await _sync(b, a, 0)
        proxy.set_rule(1, 2, REJECT)
        assert proxy.open_connections() == [(2, 1)]  # store 1's own connection is gone

        def resend() -> bool:
            a.t.send(2, frame(1, 1))
            return proxy.stats()[(1, 2)].refused >= 2

        await until(resend, what="a refused redial")
        await until(lambda: 2 in a.unreachable)
        # Store 2's frames still reach store 1.
        await _sync(b, a, 1)
        proxy.set_rule(1, 2, PASS)
        await until(lambda: a.t._stores[2].links[0].state == 0, what="backoff over")
        await _sync(a, b, 2)
        assert b.seqs(1) == [0, 2]
        await _close(a, b)

    run(main())


def test_loss_drops_raft_frames_but_not_handshakes(proxy: FaultProxy) -> None:
    async def main() -> None:
        a, b = await _pair(proxy)
        proxy.set_rule(1, 2, Rule(loss=1.0))
        for i in range(20):
            a.t.send(2, frame(1, i))
        await until(lambda: proxy.stats().get((1, 2)) is not None
                    and proxy.stats()[(1, 2)].dropped == 20)
        assert proxy.stats()[(1, 2)].connections == 1  # the handshake passed
        proxy.set_rule(1, 2, Rule(loss=0.5))
        for i in range(20, 220):
            a.t.send(2, frame(1, i))
        await _sync(b, a, 0)
        proxy.heal()
        await _sync(a, b, 1000)
        got = b.seqs(1)
        assert got == sorted(got) and 0 < len(got) - 1 < 200
        await _close(a, b)

    run(main())


def test_a_store_that_is_down_looks_refused(proxy: FaultProxy) -> None:
    async def main() -> None:
        a = await node(1)
        a.t.add_store(2, proxy.add_store(2, "127.0.0.1:1"))
        a.t.send(2, frame(1, 1))
        await until(lambda: 2 in a.unreachable)
        await _close(a)

    run(main())


def test_topologies_set_the_rules_they_name(proxy: FaultProxy) -> None:
    for sid in range(1, 6):
        proxy.add_store(sid, f"127.0.0.1:{20000 + sid}")
    proxy.partition([1, 2], [3, 4, 5])
    rules = proxy.rules()
    assert set(rules) == {(x, y) for x in (1, 2) for y in (3, 4, 5)} | {
        (y, x) for x in (1, 2) for y in (3, 4, 5)}
    assert set(rules.values()) == {BLACKHOLE}
    proxy.heal()
    assert proxy.rules() == {}
    proxy.bridge([1, 2, 3], 3, [3, 4, 5], REJECT)
    assert set(proxy.rules()) == {(x, y) for x in (1, 2) for y in (4, 5)} | {
        (y, x) for x in (1, 2) for y in (4, 5)}
    proxy.heal()
    proxy.isolate(4)
    assert set(proxy.rules()) == {(4, s) for s in (1, 2, 3, 5)} | {(s, 4) for s in (1, 2, 3, 5)}
    proxy.heal()
    proxy.partition([1], [2])  # 3, 4, 5 are alone
    assert len(proxy.rules()) == 5 * 4
    proxy.heal()
    proxy.one_way(2, 1, Rule(delay=0.2))
    assert proxy.rules() == {(2, 1): Rule(delay=0.2)}
    assert "2->1 delay 200+0ms" in proxy.describe()


def test_rules_are_checked() -> None:
    with pytest.raises(ValueError):
        Rule(loss=1.5)
    with pytest.raises(ValueError):
        Rule(delay=-1)
    assert Rule().passes and not BLACKHOLE.passes
    assert REJECT.describe() == "reject" and Rule(loss=0.25).describe() == "loss 25%"


def test_proxy_is_usable_from_inside_an_event_loop(proxy: FaultProxy) -> None:
    """Control calls block only until the proxy's own loop applied them."""

    async def main() -> None:
        proxy.add_store(9, "127.0.0.1:1")
        for _ in range(20):
            proxy.set_rule(9, 1, Rule(delay=random.random()))
            await asyncio.sleep(0)
        assert (9, 1) in proxy.rules()

    run(main())
