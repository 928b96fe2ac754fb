"""The application-facing node: drive a `Raft` with ticks and messages, collect its output as
numbered `Ready` structs, and report persistence back (raft-rs `raw_node.rs`, 0.7 API)."""

from __future__ import annotations

import enum
import logging
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .config import Config
from .eraftpb import (
    ConfChange,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
)
from .errors import StepLocalMsg, StepPeerNotFound
from .raft import Raft, Rng, SoftState, StateRole
from .read_only import ReadState
from .status import Status
from .storage import GetEntriesContext, Storage
from .util import INVALID_ID, is_local_msg, is_response_msg

__all__ = ["RawNode", "Ready", "LightReady", "Peer", "SnapshotStatus"]

S = TypeVar("S", bound=Storage)
# Every type a message may have: protobuf enums are open, so a message off the wire may carry
# any other number.
_MESSAGE_TYPES = frozenset(MessageType.values())


class SnapshotStatus(enum.Enum):
    """The outcome of sending a snapshot, reported with `RawNode.report_snapshot`."""

    Finish = 0
    Failure = 1


@dataclass(slots=True)
class Peer:
    """A peer to bootstrap a new group with (its id and an opaque context)."""

    id: int
    context: bytes | None = None


class LightReady:
    """What `advance` / `advance_append` return: the commit index if it moved, entries newly
    committed (and persisted) to apply, and messages to send."""

    __slots__ = ("commit_index", "committed_entries", "messages")

    def __init__(self) -> None:
        # The new commit index, if it changed.
        self.commit_index: int | None = None
        # Committed and persisted entries to apply, in order.
        self.committed_entries: list[Entry] = []
        # Messages to send now.
        self.messages: list[Message] = []

    def take_committed_entries(self) -> list[Entry]:
        ents, self.committed_entries = self.committed_entries, []
        return ents

    def take_messages(self) -> list[Message]:
        msgs, self.messages = self.messages, []
        return msgs


class Ready:
    """Everything a node wants the application to do, numbered for `on_persist_ready`.

    Order of work (sync use): persist `snapshot`, `entries` and `hs`; send `messages` (a
    leader's, which may go before the write, Raft thesis §10.2.1) and then `persisted_messages`
    (a non-leader's: votes and append acks must follow the write); apply `committed_entries`;
    serve `read_states`; call `advance`.
    """

    __slots__ = (
        "number",
        "ss",
        "hs",
        "read_states",
        "entries",
        "snapshot",
        "committed_entries",
        "messages",
        "persisted_messages",
        "must_sync",
    )

    def __init__(self, number: int) -> None:
        # The number to give to `on_persist_ready` once this Ready is durable.
        self.number = number
        # The soft state, if it changed.
        self.ss: SoftState | None = None
        # The hard state to persist, if it changed.
        self.hs: HardState | None = None
        # Answered ReadIndex requests.
        self.read_states: list[ReadState] = []
        # Entries to persist (append, truncating any conflicting suffix).
        self.entries: list[Entry] = []
        # A snapshot to persist and apply (empty if none).
        self.snapshot: Snapshot = Snapshot()
        # Committed and persisted entries to apply (empty when a snapshot is present).
        self.committed_entries: list[Entry] = []
        # Messages that may be sent before the write (only a leader's).
        self.messages: list[Message] = []
        # Messages that must be sent only after the write is durable (a non-leader's).
        self.persisted_messages: list[Message] = []
        # Whether the write must be synced: false only when nothing but the commit index
        # changed.
        self.must_sync = False

    def take_entries(self) -> list[Entry]:
        ents, self.entries = self.entries, []
        return ents

    def take_committed_entries(self) -> list[Entry]:
        ents, self.committed_entries = self.committed_entries, []
        return ents

    def take_messages(self) -> list[Message]:
        msgs, self.messages = self.messages, []
        return msgs

    def take_persisted_messages(self) -> list[Message]:
        msgs, self.persisted_messages = self.persisted_messages, []
        return msgs

    def take_read_states(self) -> list[ReadState]:
        rs, self.read_states = self.read_states, []
        return rs

    def take_snapshot(self) -> Snapshot:
        snap, self.snapshot = self.snapshot, Snapshot()
        return snap

    def __repr__(self) -> str:
        return (
            f"Ready(number={self.number}, ss={self.ss}, hs={self.hs!r}, "
            f"entries={len(self.entries)}, committed={len(self.committed_entries)}, "
            f"snapshot={self.snapshot.metadata.index}, messages={len(self.messages)}, "
            f"persisted_messages={len(self.persisted_messages)}, must_sync={self.must_sync})"
        )


@dataclass(slots=True)
class _ReadyRecord:
    number: int
    # (index, term) of the last entry of the Ready, if it had entries.
    last_entry: tuple[int, int] | None = None
    # (index, term) of the Ready's snapshot, if it had one.
    snapshot: tuple[int, int] | None = None
    # Whether the Ready changed the term or the vote.
    vote: bool = False


class RawNode(Generic[S]):
    """A thread-unsafe node: the application owns the loop, the storage and the network."""

    # (One per region replica: no instance dict.)
    __slots__ = ("raft", "prev_ss", "prev_hs", "max_number", "records", "commit_since_index")

    def __init__(
        self,
        config: Config,
        store: S,
        peers: list[Peer] | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,  # type: ignore[type-arg]
        *,
        rng: Rng | None = None,
    ) -> None:
        assert config.id != 0, "config.id must not be zero"
        # The state machine; public like raft-rs's `raw_node.raft`.
        self.raft: Raft[S] = Raft(config, store, logger, rng)
        # The soft and hard state last handed out in a Ready.
        self.prev_ss: SoftState = self.raft.soft_state()
        self.prev_hs: HardState = self.raft.hard_state()
        if peers:
            self._bootstrap(peers)
            # The bootstrap hard state is new: the first Ready must carry it.
            self.prev_hs = HardState()
        # The number of the newest Ready.
        self.max_number = 0
        # Readies handed out and not yet acknowledged by `on_persist_ready`, oldest first.
        # (A list: an empty deque costs ~600 bytes per node.)
        self.records: list[_ReadyRecord] = []
        # Committed entries handed out so far end here: the next ones start after it.
        self.commit_since_index: int = config.applied

    def _bootstrap(self, peers: list[Peer]) -> None:
        """Start a brand-new group: one ConfChange(AddNode) entry per peer at term 1,
        committed (etcd's StartNode). Only on an empty, unconfigured storage."""
        raft = self.raft
        assert raft.raft_log.last_index() == 0 and not raft.prs.conf.voters.ids(), (
            "can only bootstrap peers on an empty storage"
        )
        raft.become_follower(1, INVALID_ID)
        ents = []
        for i, peer in enumerate(peers, 1):
            cc = ConfChange(change_type=ConfChangeType.AddNode, node_id=peer.id)
            if peer.context is not None:
                cc.context = peer.context
            ents.append(
                Entry(
                    entry_type=EntryType.EntryConfChange,
                    term=1,
                    index=i,
                    data=cc.SerializeToString(),
                )
            )
        raft.raft_log.append(ents)
        raft.raft_log.committed = len(ents)
        for peer in peers:
            self.apply_conf_change(ConfChange(change_type=ConfChangeType.AddNode, node_id=peer.id))

    # -- input ------------------------------------------------------------------------------

    def tick(self) -> bool:
        """Advance logical time by one tick; returns whether there may be something ready."""
        return self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (a no-op on a leader)."""
        self.raft.step(Message(msg_type=MessageType.MsgHup))

    def lead_at_bootstrap(self) -> bool:
        """Become leader of the current term without an election, as the replica every
        voter persisted its bootstrap vote for (see `Raft.lead_at_bootstrap`: at most once
        per term over the node's life, in the process that wrote the bootstrap state).
        Returns whether it did."""
        return self.raft.lead_at_bootstrap()

    def propose(self, context: bytes, data: bytes) -> None:
        """Propose `data` to be appended to the log. Raises `ProposalDropped`."""
        m = Message(msg_type=MessageType.MsgPropose, from_=self.raft.id)
        m.entries.add(data=data, context=context)
        self.raft.step(m)

    def propose_conf_change(self, context: bytes, cc: ConfChange | ConfChangeV2) -> None:
        """Propose a membership change; it takes effect when applied with
        `apply_conf_change`."""
        if isinstance(cc, ConfChange):
            ty = EntryType.EntryConfChange
        else:
            ty = EntryType.EntryConfChangeV2
        m = Message(msg_type=MessageType.MsgPropose)
        m.entries.add(entry_type=ty, data=cc.SerializeToString(), context=context)
        self.raft.step(m)

    def propose_batch(self, datas: Sequence[bytes]) -> int:
        """Propose several normal entries in one step (one MsgPropose); returns the index of
        the first one (the others follow it). Raises `ProposalDropped`."""
        m = Message(msg_type=MessageType.MsgPropose, from_=self.raft.id)
        add = m.entries.add
        for data in datas:
            add(data=data)
        raft = self.raft
        raft.step(m)
        return raft.raft_log.last_index() - len(datas) + 1

    def apply_conf_change(self, cc: ConfChange | ConfChangeV2) -> ConfState:
        """Apply a committed conf change entry; returns the new configuration."""
        from .confchange.conf_change import into_v2

        return self.raft.apply_conf_change(into_v2(cc))

    def step(self, m: Message) -> None:
        """Step a message received from a peer. Raises `StepLocalMsg` for local-only types (and
        for a type that is no MessageType at all) and `StepPeerNotFound` for a response from an
        unknown peer."""
        if is_local_msg(m.msg_type) or m.msg_type not in _MESSAGE_TYPES:
            raise StepLocalMsg()
        if m.from_ in self.raft.prs.progress or not is_response_msg(m.msg_type):
            self.raft.step(m)
            return
        raise StepPeerNotFound()

    def ping(self) -> None:
        """Broadcast heartbeats (leader only)."""
        self.raft.ping()

    def set_priority(self, priority: int) -> None:
        self.raft.set_priority(priority)

    def skip_bcast_commit(self, skip: bool) -> None:
        self.raft.skip_bcast_commit(skip)

    def set_batch_append(self, batch_append: bool) -> None:
        self.raft.set_batch_append(batch_append)

    def report_unreachable(self, id: int) -> None:
        """The last message to `id` could not be delivered."""
        self.raft.step(Message(msg_type=MessageType.MsgUnreachable, from_=id))

    def report_snapshot(self, id: int, status: SnapshotStatus) -> None:
        """Report the outcome of sending a snapshot to `id`."""
        self.raft.step(
            Message(
                msg_type=MessageType.MsgSnapStatus,
                from_=id,
                reject=status == SnapshotStatus.Failure,
            )
        )

    def request_snapshot(self) -> None:
        """Ask the leader for a snapshot. Raises `RequestSnapshotDropped`."""
        self.raft.request_snapshot()

    def transfer_leader(self, transferee: int) -> None:
        """Ask the leader to hand leadership to `transferee`."""
        self.raft.step(Message(msg_type=MessageType.MsgTransferLeader, from_=transferee))

    def read_index(self, rctx: bytes) -> None:
        """Request a linearizable read index; the answer comes as a `ReadState` carrying
        `rctx` in a later Ready."""
        m = Message(msg_type=MessageType.MsgReadIndex)
        m.entries.add(data=rctx)
        self.raft.step(m)

    def on_entries_fetched(self, context: GetEntriesContext) -> None:
        """An asynchronous `Storage.entries` finished: resume the append it was for."""
        if context.what == GetEntriesContext.SEND_APPEND:
            raft = self.raft
            if raft.term != context.term or raft.state != StateRole.Leader:
                return
            if context.to not in raft.prs.progress:
                return
            if context.aggressively:
                raft.send_append_aggressively(context.to)
            else:
                raft.send_append(context.to)
        elif context.what == GetEntriesContext.EMPTY and context.can_async():
            return
        else:
            raise AssertionError(f"unexpected fetch context {context!r}")

    # -- output -----------------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether `ready()` has anything to hand out."""
        raft = self.raft
        if raft.msgs:
            return True
        prev_ss = self.prev_ss
        if raft.leader_id != prev_ss.leader_id or raft.state != prev_ss.raft_state:
            return True
        prev_hs = self.prev_hs
        if (
            raft.term != prev_hs.term
            or raft.vote != prev_hs.vote
            or raft.raft_log.committed != prev_hs.commit
        ):
            return True
        if raft.read_states:
            return True
        if raft.raft_log.unstable.entries:
            return True
        if raft.raft_log.unstable.snapshot is not None:
            return True
        return raft.raft_log.has_next_entries_since(self.commit_since_index)

    def ready(self) -> Ready:
        """Collect the node's output. Hand it back with `advance*`."""
        raft = self.raft
        self.max_number += 1
        rd = Ready(self.max_number)
        record = _ReadyRecord(self.max_number)

        prev_ss = self.prev_ss
        if raft.leader_id != prev_ss.leader_id or raft.state != prev_ss.raft_state:
            rd.ss = raft.soft_state()
        prev_hs = self.prev_hs
        if raft.term != prev_hs.term or raft.vote != prev_hs.vote:
            rd.must_sync = True
            rd.hs = raft.hard_state()
            record.vote = True
        elif raft.raft_log.committed != prev_hs.commit:
            rd.hs = raft.hard_state()
        if raft.read_states:
            rd.read_states = raft.read_states
            raft.read_states = []

        snap = raft.raft_log.unstable.snapshot
        if snap is not None:
            rd.snapshot = snap
            meta = snap.metadata
            assert self.commit_since_index <= meta.index
            self.commit_since_index = meta.index
            # If a snapshot needs to be applied, no entry can be applied before it.
            assert not raft.raft_log.has_next_entries_since(self.commit_since_index), (
                f"has snapshot but also has committed entries since {self.commit_since_index}"
            )
            record.snapshot = (meta.index, meta.term)
            rd.must_sync = True

        entries = raft.raft_log.unstable.entries
        if entries:
            rd.entries = list(entries)
            last = entries[-1]
            record.last_entry = (last.index, last.term)
            rd.must_sync = True

        light = self._gen_light_ready()
        rd.committed_entries = light.committed_entries
        # A leader's messages can go out before its own write (thesis §10.2.1); anyone else's
        # only after the Ready is persisted. The leader's too while the term and vote it leads
        # with are not durable yet: a single voter wins its election without sending a vote
        # request, so its first Ready holds both the new term and appends to learners. Sent
        # early, a crash could lose the term; the node would lead the same term again and
        # write another entry at the same (index, term), which a learner that got the first
        # one keeps (match_term) and applies (simulator seed 524).
        if raft.state == StateRole.Leader and not record.vote and not any(
            r.vote for r in self.records
        ):
            rd.messages = light.messages
        else:
            rd.persisted_messages = light.messages
        self.records.append(record)
        return rd

    def _gen_light_ready(self) -> LightReady:
        rd = LightReady()
        raft = self.raft
        ents = raft.raft_log.next_entries_since(
            self.commit_since_index, raft.max_committed_size_per_ready
        )
        if ents:
            rd.committed_entries = ents
            raft.reduce_uncommitted_size(ents)
            last = ents[-1].index
            assert self.commit_since_index < last
            self.commit_since_index = last
        if raft.msgs:
            rd.messages = raft.msgs
            raft.msgs = []
        return rd

    def _commit_ready(self, rd: Ready) -> None:
        if rd.ss is not None:
            self.prev_ss = rd.ss
        if rd.hs is not None:
            self.prev_hs = rd.hs
        record = self.records[-1]
        assert record.number == rd.number, (
            f"advance must be called with the newest Ready ({record.number}), got {rd.number}"
        )
        raft_log = self.raft.raft_log
        if record.snapshot is not None:
            raft_log.stable_snap(record.snapshot[0])
        if record.last_entry is not None:
            raft_log.stable_entries(*record.last_entry)

    def on_persist_ready(self, number: int) -> None:
        """Everything up to Ready `number` is durable: the leader may count its own log toward
        the quorum, and persisted entries may be applied."""
        index = term = snap_index = 0
        records = self.records
        done = 0
        while done < len(records) and records[done].number <= number:
            record = records[done]
            done += 1
            if record.snapshot is not None:
                snap_index = record.snapshot[0]
                index = term = 0
            if record.last_entry is not None:
                index, term = record.last_entry
        del records[:done]
        if snap_index != 0:
            self.raft.on_persist_snap(snap_index)
        if index != 0:
            self.raft.on_persist_entries(index, term)

    def advance(self, rd: Ready) -> LightReady:
        """Sync use: the Ready was persisted and applied; returns what became ready since."""
        applied = self.commit_since_index
        light = self.advance_append(rd)
        self.advance_apply_to(applied)
        return light

    def advance_append(self, rd: Ready) -> LightReady:
        """The Ready's writes are durable (synchronously): acknowledge them and return the
        follow-up work."""
        self._commit_ready(rd)
        self.on_persist_ready(self.max_number)
        light = self._gen_light_ready()
        raft = self.raft
        assert raft.state == StateRole.Leader or not light.messages, (
            "not leader but has new msg after advance"
        )
        prev = self.prev_hs
        assert raft.term == prev.term and raft.vote == prev.vote, "hard state != prev_hs"
        committed = raft.raft_log.committed
        if committed > prev.commit:
            light.commit_index = committed
            self.prev_hs = raft.hard_state()
        else:
            assert committed == prev.commit
        return light

    def advance_append_async(self, rd: Ready) -> None:
        """The Ready's writes were queued: persistence is reported later with
        `on_persist_ready(rd.number)`.

        Contract (raft-rs): by the time this is called, the Ready's entries and snapshot must
        be readable through the `Storage` (e.g. from an in-memory cache), since they leave the
        unstable log here; only their durability is pending."""
        self._commit_ready(rd)

    def advance_unwritten(self, rd: Ready) -> None:
        """Hand back a Ready that has nothing to persist (no entries, snapshot or hard state;
        no messages that wait for a write): send its messages, apply its committed entries,
        serve its read states, but no write and no `on_persist_ready` for it. Its record
        carries nothing to acknowledge (no entry, snapshot or vote), so it goes at once; the
        Readies before it are still acknowledged by number, in order."""
        assert (
            not rd.entries
            and rd.hs is None
            and not rd.persisted_messages
            and not rd.snapshot.metadata.index
        ), "the Ready has something to persist"
        self._commit_ready(rd)
        self.records.pop()

    def advance_apply(self) -> None:
        """Everything handed out in committed entries so far is applied."""
        self.raft.commit_apply(self.commit_since_index)

    def advance_apply_to(self, applied: int) -> None:
        """Entries up to `applied` are applied."""
        self.raft.commit_apply(applied)

    # -- inspection -------------------------------------------------------------------------

    def status(self) -> Status:
        return Status.new(self.raft)

    # Cheap views of the state machine for a host that drives many nodes (a multi-raft
    # store), so it need not reach into `raft`; `status()` copies far more.

    def role(self) -> StateRole:
        return self.raft.state

    def is_leader(self) -> bool:
        return self.raft.state == StateRole.Leader

    def term(self) -> int:
        return self.raft.term

    def leader_id(self) -> int:
        """The leader this node knows of (`INVALID_ID` if none)."""
        return self.raft.leader_id

    def last_index(self) -> int:
        return self.raft.raft_log.last_index()

    def commit_index(self) -> int:
        return self.raft.raft_log.committed

    def has_pending_conf(self) -> bool:
        """A conf change is in the log and not applied yet."""
        return self.raft.has_pending_conf()

    def is_transferring_leader(self) -> bool:
        return self.raft.lead_transferee is not None

    def commit_to_current_term(self) -> bool:
        """The leader committed an entry of its term (before that, its commit index may be
        stale and read index requests are dropped)."""
        return self.raft.commit_to_current_term()

    def matched_indexes(self) -> dict[int, int]:
        """Leader: the matched index of every peer but itself (the tracker's view)."""
        me = self.raft.id
        return {id: pr.matched for id, pr in self.raft.prs.progress.items() if id != me}

    def is_quiescent(self, ignore: Container[int] = ()) -> bool:
        """Leader with nothing in flight: every entry committed, persisted, applied and
        matched by every other peer but those in `ignore` (a host's peers known down); no
        leader transfer or read index pending. (TiKV's checks before a region may
        hibernate.)"""
        raft = self.raft
        if raft.state != StateRole.Leader:
            return False
        log = raft.raft_log
        last = log.last_index()
        if log.applied != last or log.committed != last or log.persisted != last:
            return False
        if raft.lead_transferee is not None or raft.read_only.pending_read_count():
            return False
        return all(
            pr.matched == last
            for id, pr in raft.prs.progress.items()
            if id != raft.id and id not in ignore
        )

    def append_committed(self, entries: Sequence[Entry], commit: int) -> None:
        """Take entries the group has committed through `commit` from outside the protocol
        (a multi-raft host merging regions hands a lagging replica the entries it missed),
        as a follower takes an append: those it lacks are appended (replacing a conflicting
        uncommitted tail) and its commit index moves to `commit`; persisting and applying
        them follow through Ready as usual.

        Precondition: the log already matches the group's up to the entry before the first
        one not yet committed here (a host guarantees it: its entries start at or below an
        index this node had matched)."""
        log = self.raft.raft_log
        ents = [e for e in entries if e.index > log.committed]
        if not ents:
            return
        prev = ents[0].index - 1
        assert prev <= log.last_index(), f"entries start at {prev + 1}, past the log's end"
        log.maybe_append(prev, log.term(prev), commit, ents)

    def forget_leader(self, delay_ticks: int = 0) -> None:
        """The host knows this follower's leader is gone (its process fell silent, or the
        group is new): stop honouring the leader's lease — vote requests are answered again
        — and hold this node's own campaign back `delay_ticks` more ticks (a host that lets
        one chosen replica campaign first keeps the others from colliding with it).
        A leader or candidate is left as it is."""
        raft = self.raft
        if raft.state not in (StateRole.Follower, StateRole.PreCandidate):
            return
        raft.leader_id = INVALID_ID
        raft.election_elapsed = min(raft.election_elapsed, 0) - delay_ticks

    def reset_election_elapsed(self) -> None:
        """Restart the election timer (a host that stopped ticking this node — hibernation —
        gives its peers a whole timeout to answer before check-quorum counts them)."""
        self.raft.election_elapsed = 0

    def snap(self) -> Snapshot | None:
        return self.raft.snap()

    def store(self) -> S:
        return self.raft.raft_log.store

    def mut_store(self) -> S:
        return self.raft.raft_log.store
