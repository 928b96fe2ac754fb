"""A deterministic in-process network of raft nodes for tests (raft-rs `harness`, etcd
`network`): peers by id, synchronous delivery, seeded drops, cuts, isolation and ignored
message types.

Each peer is an `Interface` wrapping a `Raft` (or nothing: a black hole). Delivering a message
steps it into the destination, then "persists" that node (its unstable snapshot and entries go
to its `MemStorage` and are acknowledged, like a synchronous fsync), then collects the messages
it produced. A leader counts its own entries toward commit only after that persist, exactly as
with `RawNode.on_persist_ready`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import replace

from multiraft.raft.config import Config
from multiraft.raft.eraftpb import ConfState, Entry, HardState, Message, MessageType, Snapshot
from multiraft.raft.errors import Error
from multiraft.raft.raft import Raft
from multiraft.raft.storage import MemStorage
from multiraft.raft.util import NO_LIMIT

__all__ = [
    "Interface",
    "Network",
    "new_test_config",
    "new_test_raft",
    "new_test_raft_with_config",
    "new_test_raft_with_prevote",
    "new_test_raft_with_logs",
    "new_test_learner_raft",
    "new_storage",
    "new_message",
    "new_entry",
    "empty_entry",
    "new_snapshot",
    "hard_state",
    "ents_with_config",
    "voted_with_config",
    "next_ents",
]


class Interface:
    """One peer of a `Network`: a raft node, or None for a black hole (drops everything)."""

    __slots__ = ("raft",)

    def __init__(self, raft: Raft[MemStorage] | None) -> None:
        self.raft = raft

    def step(self, m: Message) -> None:
        if self.raft is not None:
            self.raft.step(m)

    def read_messages(self) -> list[Message]:
        if self.raft is None:
            return []
        msgs, self.raft.msgs = self.raft.msgs, []
        return msgs

    def persist(self) -> None:
        """Write the unstable snapshot, entries and hard state to storage and acknowledge them
        (a synchronous fsync)."""
        r = self.raft
        if r is None:
            return
        snap = r.raft_log.unstable_snapshot()
        if snap is not None:
            index = snap.metadata.index
            r.raft_log.stable_snap(index)
            r.raft_log.store.wl().apply_snapshot(snap)
            r.on_persist_snap(index)
            r.commit_apply(index)
        unstable = list(r.raft_log.unstable_entries())
        if unstable:
            last_idx, last_term = unstable[-1].index, unstable[-1].term
            r.raft_log.stable_entries(last_idx, last_term)
            r.raft_log.store.wl().append(unstable)
            r.on_persist_entries(last_idx, last_term)
        r.raft_log.store.wl().set_hardstate(r.hard_state())


def _peer(p: Raft[MemStorage] | Interface | None) -> Interface | None:
    if p is None or isinstance(p, Interface):
        return p
    return Interface(p)


class Network:
    """Peers 1..n exchanging messages synchronously.

    `peers[i]` is None for a fresh node with the default test config, a `Raft`, or an
    `Interface(None)` black hole. All randomness (message drops) comes from `seed`.
    """

    def __init__(
        self,
        peers: Sequence[Raft[MemStorage] | Interface | None],
        config: Config | None = None,
        *,
        seed: int = 0,
    ) -> None:
        config = config if config is not None else new_test_config(0, 10, 1)
        size = len(peers)
        ids = list(range(1, size + 1))
        self.peers: dict[int, Interface] = {}
        self.storage: dict[int, MemStorage] = {}
        for id, p in zip(ids, peers, strict=True):
            iface = _peer(p)
            if iface is None:
                store = MemStorage.new_with_conf_state(ConfState(voters=ids))
                self.storage[id] = store
                cfg = replace(config, id=id, peers=[], learners=[])
                iface = Interface(Raft(cfg, store, rng=random.Random(seed * 1000 + id)))
            elif iface.raft is not None:
                assert iface.raft.id == id, f"peer {iface.raft.id} in peers has a wrong position"
                self.storage[id] = iface.raft.raft_log.store
            self.peers[id] = iface
        # Probability of dropping a message from -> to.
        self.dropm: dict[tuple[int, int], float] = {}
        # Message types that are never delivered.
        self.ignorem: set[int] = set()
        self.rng = random.Random(seed)
        # Every message delivered, in order: (from, to, type, term, index, log_term, commit).
        self.trace: list[tuple[int, int, int, int, int, int, int]] = []

    def peer(self, id: int) -> Raft[MemStorage]:
        """The raft node `id` (it must not be a black hole)."""
        r = self.peers[id].raft
        assert r is not None, f"peer {id} is a black hole"
        return r

    def filter(self, msgs: Iterable[Message]) -> list[Message]:
        """Drop ignored types and, by probability, messages on dropped links."""
        out = []
        for m in msgs:
            if m.msg_type in self.ignorem:
                continue
            # Hups never go over the network.
            assert m.msg_type != MessageType.MsgHup, "unexpected MsgHup"
            perc = self.dropm.get((m.from_, m.to), 0.0)
            if perc > 0.0 and self.rng.random() < perc:
                continue
            out.append(m)
        return out

    def read_messages(self) -> list[Message]:
        """Drain the messages of every peer."""
        msgs: list[Message] = []
        for p in self.peers.values():
            msgs.extend(p.read_messages())
        return msgs

    def send(self, msgs: Iterable[Message]) -> None:
        """Deliver `msgs` (not filtered) and everything they cause (filtered), FIFO, until the
        network is quiet. Step errors are ignored, as on a real network."""
        queue = list(msgs)
        while queue:
            new_msgs: list[Message] = []
            for m in queue:
                p = self.peers[m.to]
                self.trace.append(
                    (m.from_, m.to, m.msg_type, m.term, m.index, m.log_term, m.commit)
                )
                try:
                    p.step(m)
                except Error:
                    pass
                p.persist()
                new_msgs.extend(self.filter(p.read_messages()))
            queue = new_msgs

    def filter_and_send(self, msgs: Iterable[Message]) -> None:
        self.send(self.filter(msgs))

    def dispatch(self, msgs: Iterable[Message]) -> None:
        """Step each (filtered) message once, raising the first step error; responses are
        left in the peers' queues."""
        for m in self.filter(msgs):
            self.peers[m.to].step(m)

    def drop(self, from_: int, to: int, perc: float) -> None:
        self.dropm[(from_, to)] = perc

    def cut(self, one: int, other: int) -> None:
        self.drop(one, other, 1.0)
        self.drop(other, one, 1.0)

    def isolate(self, id: int) -> None:
        for nid in self.peers:
            if nid != id:
                self.drop(id, nid, 1.0)
                self.drop(nid, id, 1.0)

    def ignore(self, t: int) -> None:
        self.ignorem.add(t)

    def recover(self) -> None:
        self.dropm = {}
        self.ignorem = set()


# -- helpers (raft-rs harness `test_util`) -----------------------------------------------


def new_test_config(id: int, election: int, heartbeat: int) -> Config:
    return Config(
        id=id,
        election_tick=election,
        heartbeat_tick=heartbeat,
        max_size_per_msg=NO_LIMIT,
        max_inflight_msgs=256,
    )


def new_storage(voters: Sequence[int], learners: Sequence[int] = ()) -> MemStorage:
    return MemStorage.new_with_conf_state(ConfState(voters=voters, learners=learners))


def new_test_raft_with_config(config: Config, storage: MemStorage, seed: int = 0) -> Raft[MemStorage]:
    return Raft(config, storage, rng=random.Random(seed * 1000 + config.id))


def new_test_raft(
    id: int, peers: Sequence[int], election: int, heartbeat: int, storage: MemStorage | None = None
) -> Raft[MemStorage]:
    if storage is None:
        storage = new_storage(peers)
    elif peers and not storage.initial_state().initialized():
        storage.initialize_with_conf_state(ConfState(voters=peers))
    return new_test_raft_with_config(new_test_config(id, election, heartbeat), storage)


def new_test_raft_with_prevote(
    id: int,
    peers: Sequence[int],
    election: int,
    heartbeat: int,
    storage: MemStorage | None = None,
    pre_vote: bool = True,
) -> Raft[MemStorage]:
    config = new_test_config(id, election, heartbeat)
    config.pre_vote = pre_vote
    if storage is None:
        storage = new_storage(peers)
    elif peers and not storage.initial_state().initialized():
        storage.initialize_with_conf_state(ConfState(voters=peers))
    return new_test_raft_with_config(config, storage)


def new_test_raft_with_logs(
    id: int, peers: Sequence[int], election: int, heartbeat: int, logs: Sequence[Entry]
) -> Raft[MemStorage]:
    storage = new_storage(peers)
    storage.wl().append(list(logs))
    return new_test_raft_with_config(new_test_config(id, election, heartbeat), storage)


def new_test_learner_raft(
    id: int,
    peers: Sequence[int],
    learners: Sequence[int],
    election: int,
    heartbeat: int,
    storage: MemStorage | None = None,
) -> Raft[MemStorage]:
    if storage is None:
        storage = new_storage(peers, learners)
    elif not storage.initial_state().initialized():
        storage.initialize_with_conf_state(ConfState(voters=peers, learners=learners))
    return new_test_raft_with_config(new_test_config(id, election, heartbeat), storage)


def new_message(from_: int, to: int, t: int, n: int = 0) -> Message:
    """A message with `n` entries of data "somedata" (used for proposals)."""
    m = Message(from_=from_, to=to, msg_type=t)  # type: ignore[arg-type]
    for _ in range(n):
        m.entries.add(data=b"somedata")
    return m


def new_entry(term: int, index: int, data: bytes | None = None) -> Entry:
    e = Entry(term=term, index=index)
    if data is not None:
        e.data = data
    return e


def empty_entry(term: int, index: int) -> Entry:
    return Entry(term=term, index=index)


def new_snapshot(index: int, term: int, voters: Sequence[int]) -> Snapshot:
    s = Snapshot()
    s.metadata.index = index
    s.metadata.term = term
    s.metadata.conf_state.voters.extend(voters)
    return s


def hard_state(term: int, commit: int, vote: int) -> HardState:
    return HardState(term=term, commit=commit, vote=vote)


def ents_with_config(
    terms: Sequence[int],
    pre_vote: bool = False,
    id: int = 1,
    peers: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
) -> Raft[MemStorage]:
    """Node `id` whose log has one entry per term in `terms` (index i+1 has terms[i]), at the
    term of its last entry."""
    store = new_storage(peers)
    store.wl().append([empty_entry(t, i) for i, t in enumerate(terms, 1)])
    cfg = new_test_config(id, 5, 1)
    cfg.pre_vote = pre_vote
    r = new_test_raft_with_config(cfg, store, seed)
    r.reset(terms[-1] if terms else 0)
    return r


def voted_with_config(
    vote: int,
    term: int,
    pre_vote: bool = False,
    id: int = 1,
    peers: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
) -> Raft[MemStorage]:
    """Node `id` that voted for `vote` in `term` (with an empty log)."""
    store = new_storage(peers)
    store.wl().set_hardstate(HardState(vote=vote, term=term))
    cfg = new_test_config(id, 5, 1)
    cfg.pre_vote = pre_vote
    r = new_test_raft_with_config(cfg, store, seed)
    r.reset(term)
    return r


def next_ents(r: Raft[MemStorage], s: MemStorage) -> list[Entry]:
    """Persist what is unstable, then return and mark applied the committed entries."""
    Interface(r).persist()
    ents = r.raft_log.next_entries() or []
    r.commit_apply(r.raft_log.committed)
    return ents
