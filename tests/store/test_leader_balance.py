"""Leader balance: a store leading clearly more regions than its share hands leaders to the
store leading the fewest, rate-limited, until the stores are even (PD's balance-leader)."""

from __future__ import annotations

import pytest

from multiraft.store.balance import plan_leader_moves
from multiraft.store.store import StoreConfig
from multiraft.testing import SimCluster


@pytest.mark.parametrize(
    ("mine", "others", "batch", "plan"),
    [
        (334, {2: 666, 3: 0}, 8, None),  # at the average: the store above it moves them
        (700, {2: 300, 3: 0}, 8, (3, 8)),  # to the store leading the fewest, `batch` at most
        (340, {2: 330, 3: 330}, 8, None),  # within 5% of the average: even enough
        (12, {2: 9, 3: 9}, 8, (2, 1)),  # never past the average (both sides stay on theirs)
        (3, {2: 2}, 8, None),  # a difference of one is noise
        (9, {}, 8, None),  # nobody to hand them to
        (9, {2: 0}, 0, None),  # off
    ],
)
def test_plan(mine: int, others: dict[int, int], batch: int, plan: tuple[int, int] | None) -> None:
    assert plan_leader_moves(mine, others, batch) == plan


def test_plans_never_trade_leaders_back_and_forth() -> None:
    counts = {1: 700, 2: 250, 3: 50}
    for _ in range(200):
        moves = []
        for sid, mine in counts.items():
            plan = plan_leader_moves(mine, {s: n for s, n in counts.items() if s != sid}, 8)
            if plan is not None:
                moves.append((sid, *plan))
        for src, dst, n in moves:
            assert counts[src] > counts[dst]
            counts[src] -= n
            counts[dst] += n
    assert max(counts.values()) - min(counts.values()) <= 0.1 * 1000 / 3
    assert sum(counts.values()) == 1000


def test_a_restarted_store_gets_its_share_of_1000_leaders_back_without_client_errors() -> None:
    c = SimCluster(stores=3, seed=5, initial_regions=1000)
    c.crash(3)
    c.run_until(c.all_regions_have_leaders, timeout=30)
    assert c.stores[1].leaders() + c.stores[2].leaders() == 1000
    c.restart(3)
    assert c.stores[3].leaders() == 0
    ops = []
    n = 0

    def even() -> bool:
        counts = [s.leaders() for s in c.stores.values()]
        return sum(counts) == 1000 and all(abs(x - 1000 / 3) <= 1000 / 30 for x in counts)

    while not even():
        assert c.now < 120, {sid: s.leaders() for sid, s in c.stores.items()}
        # Clients keep writing and reading all over the key space meanwhile.
        for _ in range(4):
            n += 1
            key = (n * 40503 % 65536).to_bytes(2, "big") + b"k"
            ops.append(c.submit_put(key, b"v%d" % n))
            ops.append(c.submit_get(key))
        c.run_for(0.5)
    c.run_until(lambda: all(op.done for op in ops), timeout=30)
    assert [op for op in ops if op.error is not None] == []
    assert sum(s.stats.balance_transfers for s in c.stores.values()) >= 300
    # Balanced (the balance itself stops within 5% of the average: a last batch or two may
    # still go once `even` holds), it stays so: no more transfers.
    c.run_for(5)
    moved = sum(s.stats.balance_transfers for s in c.stores.values())
    c.run_for(10)
    assert sum(s.stats.balance_transfers for s in c.stores.values()) == moved
    assert even()


def test_off_when_configured() -> None:
    c = SimCluster(stores=3, seed=5, initial_regions=30, store_config=StoreConfig(leader_balance_ticks=0))
    c.crash(3)
    c.run_until(c.all_regions_have_leaders, timeout=30)
    c.restart(3)
    c.run_for(20)
    assert c.stores[3].leaders() == 0
    assert sum(s.stats.balance_transfers for s in c.stores.values()) == 0
