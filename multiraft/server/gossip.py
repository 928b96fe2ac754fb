"""Store-level gossip: every store learns every other store's addresses, and how the others
see each store's liveness.

A store joining through any one running store (`--join --initial-cluster <that store>`) is
known at first to that store only; the others must learn its addresses before a region leader
there can send it anything. So stores tell each other what they know, in a RAFT frame of its
own carrying a `StoreGossip` (the sender's whole address book, the stores removed from the
cluster, and its liveness view: the stores it hears from and those it does not):

- to the other side of every handshake (a new connection, either direction);
- to every known store whenever the book or the liveness view changed (at the next tick), and
  every `interval_ticks` anyway (a frame may be lost);
- back to the sender when its book lacks stores ours has (so one exchange brings both sides to
  the union: a store asks its neighbours by sending them its book);
- to every known store when a frame must go to a store we have no address for (at most once
  per `ask_interval` seconds): whoever knows it answers.

Books only grow (a removed store stays removed), so this converges. What a store learns second hand never replaces what it
knows (`addrbook.StoreAddrs`). The stores a store learns of are watched by its store layer
(store heartbeats every tick: `Store.track_store`), which dials them, so they learn of it too.

`cluster_view` combines this store's liveness view with the latest views the others gossiped
into each store's state: up (every store that watches it hears from it), down (none does),
unreachable (some do, some do not), with the stores it is unreachable from; or unknown (no
view of it yet, e.g. no peer address known).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from multiraft.proto.serverpb_pb2 import BatchRaftMessage, StoreGossip
from multiraft.store.hibernate import StoreLiveness
from router.codec import encode_batch

from .addrbook import StoreAddrs

__all__ = ["Gossip", "StoreState", "cluster_view", "UP", "DOWN", "UNREACHABLE", "UNKNOWN"]

_log = logging.getLogger(__name__)

UP = "up"
DOWN = "down"
UNREACHABLE = "unreachable"
UNKNOWN = "unknown"


class Gossip:
    """The gossip of one store (module docstring). `send(store, frame)` sends a frame;
    `learned(store_ids)` is called with the stores whose peer address this store just
    learned second hand, `removed(store_ids)` with the stores it just heard were removed;
    `saved()` when the book changed (to persist it). Times are the caller's monotonic
    seconds."""

    def __init__(
        self,
        me: int,
        book: StoreAddrs,
        send: Callable[[int, bytes], None],
        learned: Callable[[list[int]], None],
        saved: Callable[[], None],
        removed: Callable[[list[int]], None] | None = None,
        *,
        interval_ticks: int = 50,
        ask_interval: float = 1.0,
    ) -> None:
        self.me = me
        self.book = book
        self._send = send
        self._learned = learned
        self._saved = saved
        self._removed = removed
        self.interval_ticks = max(1, interval_ticks)
        self.ask_interval = ask_interval
        # The latest liveness view each store gossiped.
        self.views: dict[int, View] = {}
        self._view = View(frozenset(), frozenset(), 0.0)
        self._dirty = False
        self._ticks = 0
        self._last_ask = float("-inf")
        self.frames_sent = 0

    def message(self) -> StoreGossip:
        v = self._view
        return StoreGossip(
            stores=self.book.to_proto(),
            heard=sorted(v.heard),
            suspected=sorted(v.suspected),
            removed=sorted(self.book.removed),
        )

    def send_to(self, store_id: int) -> None:
        if store_id == self.me:
            return
        batch = BatchRaftMessage(from_store_id=self.me)
        batch.gossip.CopyFrom(self.message())
        self.frames_sent += 1
        self._send(store_id, encode_batch(batch))

    def push_all(self) -> None:
        self._dirty = False
        self._ticks = 0
        for sid in sorted(self.book.peer):
            if sid != self.me:
                self.send_to(sid)

    def changed(self) -> None:
        """The book changed (e.g. a handshake taught us a store): push at the next tick."""
        self._dirty = True

    def tick(self, liveness: Iterable[StoreLiveness]) -> None:
        """One base tick, with this store's liveness view now (`Store.store_liveness`)."""
        self._ticks += 1
        view = View.of(liveness)
        if (view.heard, view.suspected) != (self._view.heard, self._view.suspected):
            self._view = view
            self._dirty = True
        if self._dirty or self._ticks >= self.interval_ticks:
            self.push_all()

    def ask(self, store_id: int, now: float) -> None:
        """A frame must go to `store_id` and we have no address for it: ask every store we
        know (our book goes to them; whoever knows more answers with theirs)."""
        if now - self._last_ask < self.ask_interval:
            return
        self._last_ask = now
        _log.info("no address for store %d: asking the stores we know", store_id)
        self.push_all()

    def on_gossip(self, sender: int, g: StoreGossip, now: float) -> None:
        """`sender`'s gossip arrived."""
        self.views[sender] = View(frozenset(g.heard), frozenset(g.suspected), now)
        gone = [s for s in g.removed if s != self.me and self.book.remove(s)]
        if gone:
            _log.info("store %d told us stores %s were removed from the cluster", sender, gone)
            self.views = {s: v for s, v in self.views.items() if s not in gone}
            if self._removed is not None:
                self._removed(gone)
        changed, new_peers = self.book.learn_second_hand(self.me, g.stores)
        if new_peers:
            _log.info("store %d told us of stores %s", sender, new_peers)
            self._learned(new_peers)
        if changed or gone:
            self._saved()
            self._dirty = True
        theirs = {e.store_id for e in g.stores}
        if set(self.book.peer) - theirs or self.book.removed - set(g.removed):
            self.send_to(sender)  # it lacks what we know: answer


@dataclass(frozen=True, slots=True)
class View:
    """A store's liveness view: the stores it hears from, those it suspects down (silent for
    an election timeout; a store watched but not heard from yet is in neither), and when we
    got it (monotonic seconds)."""

    heard: frozenset[int]
    suspected: frozenset[int]
    at: float

    @staticmethod
    def of(liveness: Iterable[StoreLiveness], at: float = 0.0) -> View:
        lv = list(liveness)
        return View(
            frozenset(s.store_id for s in lv if s.heard and not s.suspected),
            frozenset(s.store_id for s in lv if s.suspected),
            at,
        )


@dataclass(frozen=True, slots=True)
class StoreState:
    """One store as this store sees the cluster (see `cluster_view`)."""

    store_id: int
    state: str
    # Seconds since this store last heard from it (None: never, since this store started).
    last_heard_ago: float | None
    # When this store suspects it: seconds since it went silent (since the last frame heard,
    # or since this store started watching it if never heard).
    silent_for: float | None
    # The stores (this one included) that do not hear from it, sorted.
    unreachable_from: tuple[int, ...]


def cluster_view(
    me: int,
    stores: Iterable[int],
    liveness: Iterable[StoreLiveness],
    views: dict[int, View],
    now: float,
    tick_seconds: float,
    view_ttl: float,
) -> list[StoreState]:
    """The state of every store in `stores` (and every store watched), by id: this store's
    own liveness view (`Store.store_liveness`) and the views other stores gossiped (`views`;
    only those at most `view_ttl` seconds old, from stores this one hears from, count)."""
    live = {s.store_id: s for s in liveness}
    mine = View.of(live.values(), now)
    reporters: dict[int, View] = {me: mine}
    for sid, v in views.items():
        if sid != me and sid in mine.heard and now - v.at <= view_ttl:
            reporters[sid] = v
    out: list[StoreState] = []
    for sid in sorted(set(stores) | set(live) | {me}):
        if sid == me:
            out.append(StoreState(sid, UP, 0.0, None, ()))
            continue
        hear = any(sid in v.heard for r, v in reporters.items() if r != sid)
        unreachable_from = tuple(sorted(r for r, v in reporters.items() if sid in v.suspected))
        if not unreachable_from:
            state = UP if hear else UNKNOWN
        else:
            state = UNREACHABLE if hear else DOWN
        lv = live.get(sid)
        ago = lv.silent_ticks * tick_seconds if lv is not None else None
        out.append(
            StoreState(
                sid,
                state,
                ago if lv is not None and lv.heard else None,
                ago if lv is not None and lv.suspected else None,
                unreachable_from,
            )
        )
    return out
