"""The address book's rules and the gossip between stores, without sockets: several `Gossip`s
wired to each other by plain function calls; and the cluster view built from liveness views."""

from __future__ import annotations

from pathlib import Path

from multiraft.proto.serverpb_pb2 import BatchRaftMessage, StoreAddress
from multiraft.server.addrbook import StoreAddrs
from multiraft.server.gossip import DOWN, UNKNOWN, UNREACHABLE, UP, Gossip, View, cluster_view
from multiraft.store.hibernate import StoreLiveness
from router.codec import RAFT, FrameDecoder


def _addr(sid: int) -> StoreAddress:
    return StoreAddress(
        store_id=sid,
        peer_addr=f"db{sid}:20161",
        client_addr=f"db{sid}:20160",
        admin_addr=f"db{sid}:20180",
    )


def test_first_hand_wins_over_second_hand_and_configuration_over_both() -> None:
    b = StoreAddrs()
    b.configure_peer(2, "db2:20161")
    changed, new = b.learn_second_hand(1, [_addr(3), StoreAddress(store_id=4, peer_addr="0.0.0.0:1")])
    assert changed and new == [3]
    assert 4 not in b.peer  # a wildcard is nothing to dial
    # Second hand fills gaps only.
    changed, new = b.learn_second_hand(1, [StoreAddress(store_id=3, peer_addr="old:1", admin_addr="old:2")])
    assert not changed and new == [] and b.peer[3] == "db3:20161" and b.admin[3] == "db3:20180"
    # First hand replaces what was learned, not what is configured.
    assert b.learn_first_hand(3, "new3:20161", "new3:20160", "0.0.0.0:20180") == (True, True)
    assert b.peer[3] == "new3:20161" and b.admin[3] == "new3:20180"
    assert b.learn_first_hand(2, "elsewhere:20161", "", "") == (False, False)
    assert b.peer[2] == "db2:20161"
    # Our own entry never comes second hand.
    assert b.learn_second_hand(1, [_addr(1)]) == (False, [])


def test_the_book_survives_a_restart(tmp_path: Path) -> None:
    b = StoreAddrs()
    b.learn_second_hand(1, [_addr(2), _addr(5)])
    b.save(tmp_path / "stores.json")
    again = StoreAddrs()
    again.configure_peer(2, "configured:1")
    again.load(tmp_path / "stores.json", me=1)
    assert again.peer == {2: "configured:1", 5: "db5:20161"}
    assert again.admin[5] == "db5:20180"
    StoreAddrs().load(tmp_path / "missing.json", me=1)  # no file: nothing, no error


class Mesh:
    """Gossips of several stores; a frame is delivered when `deliver()` runs, unless its
    destination is in `down`."""

    def __init__(self, books: dict[int, StoreAddrs]) -> None:
        self.queue: list[tuple[int, int, bytes]] = []
        self.down: set[int] = set()
        self.learned: dict[int, list[int]] = {s: [] for s in books}
        self.g = {
            s: Gossip(
                s, book, lambda to, frame, s=s: self.queue.append((s, to, frame)),
                lambda ids, s=s: self.learned[s].extend(ids), lambda: None, interval_ticks=10,
            )
            for s, book in books.items()
        }

    def deliver(self) -> int:
        n = 0
        while self.queue:
            frm, to, frame = self.queue.pop(0)
            if to in self.down or to not in self.g:
                continue
            [(kind, batch)] = FrameDecoder().feed(frame)
            assert kind == RAFT and isinstance(batch, BatchRaftMessage)
            assert batch.from_store_id == frm and not batch.msgs
            self.g[to].on_gossip(frm, batch.gossip, now=0.0)
            n += 1
        return n

    def tick(self) -> None:
        for g in self.g.values():
            g.tick([])
        self.deliver()


def _book(me: int, *known: int) -> StoreAddrs:
    b = StoreAddrs()
    b.learn_first_hand(me, f"db{me}:20161", f"db{me}:20160", f"db{me}:20180")
    b.learn_second_hand(me, [_addr(s) for s in known])
    return b


def test_a_store_that_joined_through_one_store_is_known_to_all_and_knows_all() -> None:
    # Stores 1-3 know each other; store 4 knows only store 1, and store 1 heard of 4 (its
    # handshake): a change, pushed at the next tick.
    books = {1: _book(1, 2, 3, 4), 2: _book(2, 1, 3), 3: _book(3, 1, 2), 4: _book(4, 1)}
    m = Mesh(books)
    m.g[1].changed()
    m.tick()
    m.tick()
    for s in (1, 2, 3, 4):
        assert set(books[s].peer) == {1, 2, 3, 4}, s
        assert set(books[s].admin) == {1, 2, 3, 4}, s
    assert sorted(m.learned[4]) == [2, 3] and m.learned[2] == [4] and m.learned[3] == [4]
    # Settled: nothing changes, only the periodic pushes remain.
    for _ in range(9):
        m.tick()
    assert not any(g._dirty for g in m.g.values())


def test_asking_for_an_unknown_store_reaches_whoever_knows_it() -> None:
    books = {1: _book(1, 2, 3, 4), 2: _book(2, 1, 3), 3: _book(3, 1, 2)}
    m = Mesh(books)
    # Store 3 must send to store 4, which it never heard of: it asks the stores it knows.
    m.g[3].ask(4, now=10.0)
    m.g[3].ask(4, now=10.5)  # at most once per ask_interval
    assert len(m.queue) == 2
    m.deliver()
    assert books[3].peer[4] == "db4:20161" and m.learned[3] == [4]


def test_cluster_view_combines_the_stores_views() -> None:
    def lv(sid: int, suspected: bool, silent: int = 1, heard: bool = True) -> StoreLiveness:
        return StoreLiveness(sid, heard, silent, suspected)

    # Store 1's own view: 3 silent for 40 ticks, 4 fine, 5 never heard; store 2 (up) hears
    # from 5 and not from 3 nor 4; store 3's view is ignored (1 does not hear from 3), so is
    # store 7's (stale); store 6 is known by address only.
    views = {
        2: View(frozenset({1, 5}), frozenset({3, 4}), 99.0),
        3: View(frozenset({4}), frozenset({1, 2}), 99.0),
        7: View(frozenset(), frozenset({4, 5}), 1.0),
    }
    states = {
        s.store_id: s
        for s in cluster_view(
            1, {1, 2, 3, 4, 5, 6, 7},
            [lv(2, False), lv(3, True, silent=40), lv(4, False), lv(5, True, 30, heard=False),
             lv(7, False)],
            views, now=100.0, tick_seconds=0.1, view_ttl=15.0,
        )
    }
    assert states[1].state == UP and states[2].state == UP and states[7].state == UP
    assert states[3].state == DOWN and states[3].unreachable_from == (1, 2)
    assert states[3].last_heard_ago == 4.0 and states[3].silent_for == 4.0
    assert states[4].state == UNREACHABLE and states[4].unreachable_from == (2,)
    assert states[4].silent_for is None  # store 1 hears from it
    assert states[5].state == UNREACHABLE and states[5].unreachable_from == (1,)
    assert states[5].last_heard_ago is None and states[5].silent_for == 3.0
    assert states[6].state == UNKNOWN and states[6].unreachable_from == ()
    # Once store 2 does not hear from 5 either, it is down.
    views[2] = View(frozenset({1}), frozenset({3, 4, 5}), 99.0)
    live = [lv(2, False), lv(5, True, 30, heard=False)]
    five = cluster_view(1, {5}, live, views, 100.0, 0.1, 15.0)[2]
    assert five.store_id == 5 and five.state == DOWN and five.unreachable_from == (1, 2)


def test_a_removed_store_is_forgotten_everywhere_and_never_learned_again(tmp_path: Path) -> None:
    books = {1: _book(1, 2, 3, 4), 2: _book(2, 1, 3, 4), 3: _book(3, 1, 2)}
    m = Mesh(books)
    gone: dict[int, list[int]] = {s: [] for s in books}
    for s, g in m.g.items():
        g._removed = gone[s].extend
    assert books[1].remove(4) and not books[1].remove(4)
    m.g[1].changed()
    m.tick()
    for s in (1, 2, 3):
        assert 4 not in books[s].ids() and 4 in books[s].removed, s
    assert gone == {1: [], 2: [4], 3: [4]}  # (store 1 removed it itself)
    # Whatever anyone says of it later, it stays removed.
    assert books[2].learn_first_hand(4, "db4:20161", "db4:20160", "db4:20180") == (False, False)
    assert books[3].learn_second_hand(3, [_addr(4)]) == (False, [])
    books[2].configure_peer(4, "db4:20161")
    assert 4 not in books[2].peer
    # Kept across a restart.
    books[2].save(tmp_path / "stores.json")
    again = StoreAddrs()
    again.load(tmp_path / "stores.json", me=2)
    assert again.removed == {4} and 4 not in again.ids() and again.peer[3] == "db3:20161"
