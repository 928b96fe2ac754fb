"""The client against three in-process stores (each with its own client port): leaders found
through NOT_LEADER hints, retried writes applied once when answers are lost, failover to
the surviving stores, and a clear timeout when every store is gone."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from multiraft.client import AsyncClient, Client, ClientTimeout
from tests.client.harness import LocalStores


@pytest.fixture
def stores() -> Iterator[LocalStores]:
    with LocalStores(stores=3, regions=4) as ls:
        ls.wait_for_leaders()
        yield ls


def _errors(ls: LocalStores, code: str) -> int:
    return sum(ls.stats(s).get("errors_" + code, 0) for s in ls.stores)


def _set_fault(ls: LocalStores, fault: Callable[[str, dict[str, Any]], str | None] | None) -> None:
    def install() -> None:
        for svc in ls.services.values():
            svc.response_fault = fault

    ls.call(install)


def test_follower_addresses_lead_to_the_leaders_and_hints_are_followed(
    stores: LocalStores,
) -> None:
    stores.transfer_all_leaders(1)
    # The client knows only followers; it learns store 1's address from them.
    with Client(stores.addrs(2, 3)) as c:
        c.put(b"f", b"1")
        assert c.get(b"f") == b"1"
        assert set(c.aio.store_addrs) == {1, 2, 3}
        # Leaders move away: the cached leaders are stale; NOT_LEADER hints lead on.
        before = _errors(stores, "NOT_LEADER")
        stores.transfer_all_leaders(3)
        keys = [bytes([b]) + b"-moved" for b in (0x10, 0x50, 0x90, 0xd0)]  # every region
        for k in keys:
            c.put(k, b"v")
        assert [c.get(k) for k in keys] == [b"v"] * 4
        assert _errors(stores, "NOT_LEADER") > before
        assert all(r.leader == 3 for r in c.aio.cache.regions())


def _increment(c: Client, key: bytes) -> None:
    """Read-modify-write with CAS until it sticks."""
    while True:
        cur = c.get(key)
        new = b"%d" % (int(cur) + 1 if cur is not None else 1)
        if c.cas(key, cur, new):
            return


@pytest.mark.parametrize("fault", ["close", "drop"])
def test_writes_retried_after_lost_answers_apply_once(stores: LocalStores, fault: str) -> None:
    """Every other write answer is lost after the store applied it; the client retries with
    the same request id, the store replays the recorded result, so each increment counts
    once (without dedupe a retried CAS would answer False and the loop would add again)."""
    counter = itertools.count()

    def lose_every_other_write(op: str, resp: dict[str, Any]) -> str | None:
        if op in ("cas", "put") and next(counter) % 2 == 0:
            return fault
        return None

    # "drop" costs an attempt timeout per lost answer.
    n = 15 if fault == "close" else 6
    with Client(stores.addrs(), attempt_timeout=0.3) as c:
        c.put(b"counter", b"0")
        _set_fault(stores, lose_every_other_write)
        try:
            for _ in range(n):
                _increment(c, b"counter")
        finally:
            _set_fault(stores, None)
        assert c.get(b"counter") == b"%d" % n
    assert next(counter) >= 2 * n  # the fault did fire on about half of the answers


def test_failover_to_the_surviving_stores(stores: LocalStores) -> None:
    stores.transfer_all_leaders(1)
    with Client(stores.addrs(), timeout=30) as c:
        c.put(b"before", b"1")
        # Store 1 (every leader) is cut off and its client port goes away.
        stores.down.add(1)
        stores.run(stores.services[1].close())
        c.put(b"after", b"2")
        assert c.get(b"before") == b"1" and c.get(b"after") == b"2"
        assert all(r.leader in (2, 3) for r in c.aio.cache.regions() if r.leader is not None)


def test_timeout_when_every_store_is_gone(stores: LocalStores) -> None:
    with Client(stores.addrs()) as c:
        c.put(b"k", b"v")
        stores.close_services()
        with pytest.raises(ClientTimeout, match=r"get b'k': no success within 0.5s") as e:
            c.get(b"k", timeout=0.5)
        assert isinstance(e.value, TimeoutError)
        with pytest.raises(ClientTimeout, match="last error"):
            c.put(b"k", b"w", timeout=0.5)

    async def fresh_client() -> None:
        async with AsyncClient(stores.addrs(), timeout=0.5) as ac:
            with pytest.raises(ClientTimeout, match="cannot connect"):
                await ac.scan(b"", b"", 10)

    asyncio.run(fresh_client())
