"""Many regions per store, in the simulator: the behaviours that keep a store of 100,000
regions cheap (the timings are `bench/scale.py`'s): one designated campaign per region at
start, so leaders spread by region id; every region hibernates, also with a store of three
dead (its replicas there are done without), and the leaders wake to catch that store up once
it is back."""

from __future__ import annotations

from collections import Counter

from multiraft.raft import MessageType
from multiraft.store.base import BOOTSTRAP_TERM, StoreConfig
from multiraft.testing import SimCluster

N = 300


def _leader_stores(c: SimCluster) -> Counter[int]:
    return Counter(sid for sid, s in c.stores.items() for p in s.peers.values() if p.is_leader())


def _awake(c: SimCluster, stores: list[int]) -> int:
    return sum(c.stores[s].awake_regions() for s in stores)


_VOTES = (
    MessageType.MsgRequestVote,
    MessageType.MsgRequestPreVote,
    MessageType.MsgRequestVoteResponse,
    MessageType.MsgRequestPreVoteResponse,
)


def _votes_sent(c: SimCluster) -> int:
    return sum(s.stats.sent_by_type.get(t, 0) for s in c.stores.values() for t in _VOTES)


def _leader_terms(c: SimCluster) -> dict[int, tuple[int, int]]:
    """region -> (store, term) of its leader (the highest term's)."""
    out: dict[int, tuple[int, int]] = {}
    for sid, store in c.stores.items():
        for rid, p in store.peers.items():
            if p.is_leader() and p.node.term() > out.get(rid, (0, 0))[1]:
                out[rid] = (sid, p.node.term())
    return out


def test_a_new_cluster_is_led_without_a_single_vote() -> None:
    """Every replica's bootstrap state is a vote for the designated replica at the first
    term: that replica leads it at once, unelected."""
    c = SimCluster(stores=3, seed=9, initial_regions=N)
    c.run_for(3.0)
    assert _votes_sent(c) == 0
    led = _leader_terms(c)
    assert len(led) == N
    assert all(term == BOOTSTRAP_TERM and sid == rid % 3 + 1 for rid, (sid, term) in led.items())
    # A restarted designated store is not let lead again unelected: it follows.
    c.crash(1)
    c.restart(1)
    c.run_for(3.0)
    assert all(not p.is_leader() or p.node.term() > BOOTSTRAP_TERM for p in c.stores[1].peers.values())
    c.put(b"\x00\x02", b"v")
    assert c.get(b"\x00\x02") == b"v"


def test_the_others_elect_when_a_designated_store_never_starts() -> None:
    """A designated store that is down from the start (its bootstrap written, never run):
    its regions are elected by the others after their hold-back, at a later term; the rest
    keep their unelected leaders."""
    c = SimCluster(stores=3, seed=10, initial_regions=N, elect=False)
    c.crash(1)
    c.run_until(lambda: len(_leader_terms(c)) == N, timeout=60)
    for rid, (sid, term) in _leader_terms(c).items():
        if rid % 3 == 0:  # designated: store 1
            assert sid in (2, 3) and term > BOOTSTRAP_TERM
        else:
            assert (sid, term) == (rid % 3 + 1, BOOTSTRAP_TERM)
    c.put(b"\x00\x03", b"v")
    # It starts late (a restart: it reads its bootstrap from disk) and follows.
    c.restart(1)
    c.run_until(lambda: all(p.node.leader_id() for p in c.stores[1].peers.values()), timeout=60)
    assert c.stores[1].leaders() == 0 or all(
        p.node.term() > BOOTSTRAP_TERM for p in c.stores[1].peers.values() if p.is_leader()
    )
    assert c.get(b"\x00\x03") == b"v"


def test_a_store_never_heard_from_gets_the_startup_grace() -> None:
    """Stores of a new cluster come up at different times: one not heard from at all is
    suspected only after `startup_grace_ticks`, so the regions it is to lead are not elected
    elsewhere meanwhile; it leads them once it is up. Past the grace, the others elect."""
    cfg = StoreConfig(startup_grace_ticks=100)
    c = SimCluster(stores=3, seed=11, initial_regions=N, elect=False, store_config=cfg)
    c.crash(1)
    c.run_for(8.0)
    assert c.stores[2].suspected_stores() == frozenset()
    led = _leader_terms(c)
    assert sorted(led) == [rid for rid in range(1, N + 1) if rid % 3 != 0]
    c.restart(1)
    c.run_until(lambda: len(_leader_terms(c)) == N, timeout=30)
    assert all(sid == rid % 3 + 1 for rid, (sid, _) in _leader_terms(c).items())
    # Heard once, a store falls under the ordinary suspicion time again.
    c.crash(1)
    c.run_until(lambda: 1 in c.stores[2].suspected_stores(), timeout=3)


def test_a_round_handles_a_bounded_number_of_regions() -> None:
    """With `max_regions_per_round`, a round takes that many of the regions with work; the
    rest stay for the next rounds (none starved), and the cluster runs as before."""
    cfg = StoreConfig(max_regions_per_round=16)
    c = SimCluster(stores=3, seed=12, initial_regions=N, elect=False, store_config=cfg)
    store = c.stores[1]
    assert len(store._dirty) == N  # every region opened
    store.round()
    assert len(store._dirty) == N - 16
    while store._dirty:
        store.round()
    assert store.stats.rounds == N // 16 + (N % 16 > 0)
    c.run_until(lambda: len(_leader_terms(c)) == N, timeout=30)
    assert _votes_sent(c) == 0
    c.put(b"\x00\x04", b"v")
    c.run_until(lambda: _awake(c, [1, 2, 3]) == 0, timeout=30)
    assert c.get(b"\x00\x04") == b"v"


def test_awake_followers_of_a_live_leader_tick_one_tick_in_k() -> None:
    """With `follower_tick_every`, a follower whose leader's store is heard from ticks one
    base tick in k; a store going silent still gets its regions elected elsewhere."""
    cfg = StoreConfig(follower_tick_every=5)
    c = SimCluster(stores=3, seed=13, initial_regions=N, store_config=cfg)
    store = c.stores[2]
    awake = store.awake_regions()
    led = sum(1 for rid in store._awake if store.peers[rid].is_leader())
    assert awake == N and 0 < led < awake  # right after the start: every region awake
    before = store.stats.ticks
    store.tick()
    ticked = store.stats.ticks - before
    assert led <= ticked < led + (awake - led) // 5 + 10
    # The followers of store 1's leaders learn that it is gone from store liveness.
    c.crash(1)
    c.run_until(lambda: sum(c.stores[s].leaders() for s in (2, 3)) == N, timeout=30)
    c.put(b"\x00\x05", b"v")
    assert c.get(b"\x00\x05") == b"v"


def test_a_store_restarted_too_fast_to_be_suspected_is_served_again() -> None:
    """The others see a restarted store's clock go back: the regions it led elect a leader
    elsewhere and their leaders wake to tell it theirs, so every region there knows a leader
    again within a couple of seconds, without the store ever being suspected (its own
    campaigns wait three election timeouts, and would find the others' leaders asleep)."""
    cfg = StoreConfig(leader_balance_ticks=0)
    c = SimCluster(stores=3, seed=15, initial_regions=N, store_config=cfg)
    c.run_for(3.0)
    assert _awake(c, [1, 2, 3]) == 0
    c.crash(1)
    c.restart(1)
    back = c.stores[1]
    c.run_until(lambda: all(p.node.leader_id() for p in back.peers.values()), timeout=2)
    assert all(1 not in c.stores[s].suspected_stores() for s in (2, 3))
    assert sum(c.stores[s].leaders() for s in (2, 3)) == N
    c.put(b"\x00\x06", b"v")
    assert c.get(b"\x00\x06") == b"v"
    c.run_until(lambda: _awake(c, [1, 2, 3]) == 0, timeout=30)


def test_a_silent_store_wakes_only_the_leaderless_regions_it_was_to_lead() -> None:
    """Regions asleep without a leader (never led yet) wait for their designated replica:
    a store falling silent wakes those it was to lead (they elect elsewhere), not all."""
    c = SimCluster(stores=3, seed=16, initial_regions=N, elect=False)
    store = c.stores[1]
    assert store.awake_regions() == 0
    store._wake_regions_led_from(3)
    assert sorted(store._awake) == [rid for rid in range(1, N + 1) if rid % 3 == 2]


def test_a_tick_ticks_a_bounded_number_of_awake_regions_round_robin() -> None:
    cfg = StoreConfig(max_region_ticks=50)
    c = SimCluster(stores=3, seed=17, initial_regions=N, store_config=cfg)
    store = c.stores[2]
    assert store.awake_regions() > 50
    before = store.stats.ticks
    store.tick()
    assert store.stats.ticks - before == 50
    assert _votes_sent(c) == 0
    c.put(b"\x00\x07", b"v")
    c.run_until(lambda: _awake(c, [1, 2, 3]) == 0, timeout=60)
    assert c.get(b"\x00\x07") == b"v"


def test_leaders_spread_by_region_id_and_every_region_hibernates() -> None:
    c = SimCluster(stores=3, seed=5, initial_regions=N)
    # The designated replica (by region id among the sorted stores) won everywhere: no
    # split votes, no re-election.
    for sid, store in c.stores.items():
        for rid, peer in store.peers.items():
            assert peer.is_leader() == (rid % 3 == sid - 1), (rid, sid)
        assert store.stats.leaderships_lost == 0
    assert _leader_stores(c) == {1: N // 3, 2: N // 3, 3: N // 3}
    c.run_for(3.0)
    assert _awake(c, [1, 2, 3]) == 0


def test_regions_hibernate_with_a_store_down_and_catch_it_up_when_it_is_back() -> None:
    # (Without the leader balance, which hands the store that is back leaders of its own.)
    cfg = StoreConfig(leader_balance_ticks=0)
    c = SimCluster(stores=3, seed=6, initial_regions=N, store_config=cfg)
    c.run_for(3.0)
    victim = 1
    c.crash(victim)
    rest = [2, 3]
    c.run_until(lambda: sum(c.stores[s].leaders() for s in rest) == N, timeout=30)
    # Its leaders were taken over by the designated survivor, and the rest kept theirs.
    assert all(c.stores[s].stats.leaderships_lost == 0 for s in rest)
    c.put(b"\x00\x01", b"written while store 1 is down")
    # Every region, the one written to included, goes back to sleep without store 1.
    c.run_until(lambda: _awake(c, rest) == 0, timeout=30)
    c.restart(victim)
    back = c.stores[victim]
    rid = next(p.region.id for p in back.peers.values() if p.region.start_key <= b"\x00\x01" < p.region.end_key)

    def caught_up() -> bool:
        leader = next(c.stores[s].peers[rid] for s in rest if c.stores[s].peers[rid].is_leader())
        return back.peers[rid].applied_index == leader.applied_index

    # The leaders wake up for it: its replicas learn their leader and catch up, without
    # an election, and everything hibernates again.
    c.run_until(lambda: all(p.node.leader_id() for p in back.peers.values()) and caught_up(), timeout=30)
    assert sum(s.stats.leaderships_lost for s in c.stores.values()) == 0
    c.run_until(lambda: _awake(c, [1, 2, 3]) == 0, timeout=30)
    assert c.get(b"\x00\x01") == b"written while store 1 is down"
