"""The run configuration of the simulator (`SimOptions`, drawn from the seed), its counters
(`SimStats`), the random membership changes it proposes, and how actions are described in a
trace."""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

from multiraft.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    Message,
    MessageType,
    Ready,
)
from multiraft.raft.tracker import Configuration
from multiraft.raft.util import NO_LIMIT

__all__ = ["SimOptions", "SimStats", "draw_conf_change", "msg_desc", "cc_desc", "hs_desc"]

_MT = MessageType
_MsgSnapshot = MessageType.MsgSnapshot
# Looked up once: attribute access on protobuf enum wrappers is slow.
_NAMES = {v: k for k, v in MessageType.items()}
_APPEND_LIKE = frozenset({_MT.MsgAppend, _MT.MsgAppendResponse, _MT.MsgHeartbeat})
_VOTES = frozenset({_MT.MsgRequestVote, _MT.MsgRequestPreVote})


@dataclass(slots=True)
class SimOptions:
    """The cluster and configuration of one seed (all drawn from the seed)."""

    pool: list[int]
    voters: list[int]
    learners: list[int]
    election_tick: int
    heartbeat_tick: int
    check_quorum: bool
    pre_vote: bool
    max_size_per_msg: int
    max_inflight_msgs: int
    batch_append: bool
    max_uncommitted_size: int
    max_committed_size_per_ready: int
    skip_bcast_commit: bool
    # Probability that a Ready is persisted synchronously (`advance`) instead of queued.
    sync_ready: float
    # Probability that a read the core allows to be asynchronous is answered later.
    async_fetch: float
    # Probability that `Storage.snapshot` is temporarily unavailable.
    snap_unavailable: float
    # Probability that making writes durable is reported at once with on_persist_ready.
    ack_now: float
    # Election priorities (raft-rs `priority`), by node id; empty when all are equal.
    priority: dict[int, int]
    # Scales the weight of faults (drops, duplicates, crashes, partitions, elections).
    chaos: float
    # The weight of membership changes.
    conf_rate: float

    @classmethod
    def draw(cls, rng: random.Random) -> SimOptions:
        n = rng.randint(3, 7)
        pool = list(range(1, n + 1))
        nv = min(n, rng.choice([1, 2, 3, 3, 3, 4, 5, 5, n]))
        voters = pool[:nv]
        learners = pool[nv : nv + 1] if nv < n and rng.random() < 0.3 else []
        election = rng.randint(5, 10)
        heartbeat = rng.randint(1, 2)
        max_size = rng.choice([0, 64, 256, NO_LIMIT])
        max_uncommitted = rng.choice([NO_LIMIT, NO_LIMIT, 256])
        if max_uncommitted < max_size:
            max_uncommitted = NO_LIMIT
        return cls(
            pool=pool,
            voters=voters,
            learners=learners,
            election_tick=election,
            heartbeat_tick=heartbeat,
            check_quorum=rng.random() < 0.5,
            pre_vote=rng.random() < 0.5,
            max_size_per_msg=max_size,
            max_inflight_msgs=rng.choice([1, 2, 4, 256]),
            batch_append=rng.random() < 0.3,
            max_uncommitted_size=max_uncommitted,
            max_committed_size_per_ready=rng.choice([NO_LIMIT, NO_LIMIT, 64]),
            skip_bcast_commit=rng.random() < 0.2,
            sync_ready=rng.choice([0.0, 0.3, 0.7, 1.0]),
            async_fetch=rng.choice([0.0, 0.0, 0.2]),
            snap_unavailable=rng.choice([0.0, 0.2]),
            ack_now=rng.choice([0.5, 1.0]),
            priority={id: rng.randint(0, 2) for id in pool} if rng.random() < 0.2 else {},
            chaos=rng.choice([0.25, 0.5, 1.0, 2.0]),
            conf_rate=rng.choice([0.5, 1.0, 3.0]),
        )

    def describe(self) -> str:
        def lim(v: int) -> str:
            return "inf" if v == NO_LIMIT else str(v)

        return (
            f"pool={self.pool} voters={self.voters} learners={self.learners} "
            f"election={self.election_tick} heartbeat={self.heartbeat_tick} "
            f"check_quorum={self.check_quorum} pre_vote={self.pre_vote} "
            f"max_size_per_msg={lim(self.max_size_per_msg)} "
            f"max_inflight={self.max_inflight_msgs} batch_append={self.batch_append} "
            f"max_uncommitted={lim(self.max_uncommitted_size)} "
            f"max_committed_per_ready={lim(self.max_committed_size_per_ready)} "
            f"skip_bcast_commit={self.skip_bcast_commit} sync_ready={self.sync_ready} "
            f"async_fetch={self.async_fetch} snap_unavailable={self.snap_unavailable} "
            f"ack_now={self.ack_now} priority={self.priority} "
            f"chaos={self.chaos} conf_rate={self.conf_rate}"
        )


@dataclass(slots=True)
class SimStats:
    """What happened in a run (to judge coverage)."""

    steps: int = 0
    proposals: int = 0
    applied: int = 0
    leaders: int = 0
    crashes: int = 0
    snapshots_sent: int = 0
    snapshots_installed: int = 0
    compactions: int = 0
    conf_changes_applied: int = 0
    conf_changes_refused: int = 0
    joint_entered: int = 0
    reads_answered: int = 0
    transfers: int = 0
    delivered: int = 0
    dropped: int = 0

    def add(self, other: SimStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def draw_conf_change(
    rng: random.Random, conf: Configuration, pool: list[int]
) -> ConfChange | ConfChangeV2 | None:
    """A membership change against the configuration `conf`: leave a joint config, or one
    to three changes over the ids of `pool` that keep at least one voter (others may still
    be refused when applied, e.g. if `conf` is stale)."""
    if conf.voters.outgoing.voters:
        return ConfChangeV2() if rng.random() < 0.8 else None
    voters = set(conf.voters.incoming.voters)
    learners = set(conf.learners)
    changes: list[tuple[ConfChangeType, int]] = []
    t: ConfChangeType
    for _ in range(1 if rng.random() < 0.6 else rng.randint(2, 3)):
        id = rng.choice(pool)
        if id in voters:
            t = rng.choice([ConfChangeType.RemoveNode, ConfChangeType.AddLearnerNode])
            voters.discard(id)
            if t == ConfChangeType.AddLearnerNode:
                learners.add(id)
        elif id in learners:
            t = rng.choice([ConfChangeType.AddNode, ConfChangeType.RemoveNode])
            learners.discard(id)
            if t == ConfChangeType.AddNode:
                voters.add(id)
        else:
            t = rng.choice([ConfChangeType.AddNode, ConfChangeType.AddLearnerNode])
            (voters if t == ConfChangeType.AddNode else learners).add(id)
        changes.append((t, id))
    if not voters:
        return None
    if len(changes) == 1 and rng.random() < 0.4:
        t, id = changes[0]
        return ConfChange(change_type=t, node_id=id)
    cc = ConfChangeV2()
    if len(changes) > 1 or rng.random() < 0.3:
        cc.transition = rng.choice(
            [ConfChangeTransition.Auto, ConfChangeTransition.Implicit,
             ConfChangeTransition.Explicit]
        )
    for t, id in changes:
        cc.changes.append(ConfChangeSingle(change_type=t, node_id=id))
    return cc


def msg_desc(sender: int, m: Message) -> str:
    """A message as a trace shows it, e.g. `MsgAppend 1->2 t3 i5 lt3 c4 n2`."""
    t = m.msg_type
    s = f"{_NAMES[t]} {sender}->{m.to} t{m.term}"
    if t in _APPEND_LIKE:
        s += f" i{m.index} lt{m.log_term} c{m.commit}"
        if m.entries:
            s += f" n{len(m.entries)}"
        if m.reject:
            s += f" reject(hint {m.reject_hint})"
    elif t == _MsgSnapshot:
        s += f" snap@{m.snapshot.metadata.index}/{m.snapshot.metadata.term}"
    elif t in _VOTES:
        s += f" i{m.index} lt{m.log_term}"
    elif m.reject:
        s += " reject"
    return s


def cc_desc(cc: ConfChange | ConfChangeV2) -> str:
    """A membership change in the notation of the confchange testdata (v voter, l learner,
    r remove)."""
    letter = {ConfChangeType.AddNode: "v", ConfChangeType.AddLearnerNode: "l",
              ConfChangeType.RemoveNode: "r"}
    if isinstance(cc, ConfChange):
        return f"v1 {letter[cc.change_type]}{cc.node_id}"
    if not cc.changes:
        return "v2 leave-joint"
    changes = " ".join(f"{letter[c.change_type]}{c.node_id}" for c in cc.changes)
    return f"v2 {ConfChangeTransition.Name(cc.transition)} {changes}"


def hs_desc(rd: Ready) -> str:
    """The hard state of a Ready, or "-"."""
    hs = rd.hs
    if hs is None:
        return "-"
    return f"(t{hs.term} v{hs.vote} c{hs.commit})"
