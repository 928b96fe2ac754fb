"""The Raft state machine of one node (raft-rs `raft.rs`).

Every transition lives here: roles (`become_*`), the message handlers (`step`, `step_leader`,
`step_candidate`, `step_follower`, `handle_*`), replication (`send_append`, `bcast_*`), commit
(`maybe_commit`), elections (`hup`, `campaign`, `poll`), reads, leader transfer and membership.
It is sans-I/O: time is `tick()`, randomness an injected generator, output `self.msgs` plus the
state that `RawNode.ready()` collects. Sections of the Raft paper (§) and thesis are cited where
a rule comes from.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .confchange import Changer, restore
from .confchange.conf_change import enter_joint, into_v2, leave_joint
from .config import Config
from .eraftpb import (
    ConfChange,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
)
from .errors import (
    ConfigInvalid,
    LogTemporarilyUnavailable,
    ProposalDropped,
    RequestSnapshotDropped,
    SnapshotTemporarilyUnavailable,
    StorageError,
)
from .quorum import VoteResult
from .raft_log import RaftLog
from .read_only import ReadOnly, ReadOnlyOption, ReadState
from .storage import GetEntriesContext, Storage
from .tracker import Progress, ProgressState, ProgressTracker
from .util import INVALID_ID, INVALID_INDEX, NO_LIMIT, vote_resp_msg_type

__all__ = [
    "Raft",
    "StateRole",
    "SoftState",
    "Rng",
    "SplitMix64",
    "CAMPAIGN_PRE_ELECTION",
    "CAMPAIGN_ELECTION",
    "CAMPAIGN_TRANSFER",
    "default_logger",
    "new_message",
]

# The context of a pre-election campaign.
CAMPAIGN_PRE_ELECTION = b"CampaignPreElection"
# The context of a normal election campaign.
CAMPAIGN_ELECTION = b"CampaignElection"
# The context of a campaign started by a leader transfer (MsgTimeoutNow).
CAMPAIGN_TRANSFER = b"CampaignTransfer"

S = TypeVar("S", bound=Storage)

# Message types as plain ints: attribute lookups on the enum wrapper cost on hot paths.
_MsgHup = MessageType.MsgHup
_MsgBeat = MessageType.MsgBeat
_MsgPropose = MessageType.MsgPropose
_MsgAppend = MessageType.MsgAppend
_MsgAppendResponse = MessageType.MsgAppendResponse
_MsgRequestVote = MessageType.MsgRequestVote
_MsgRequestVoteResponse = MessageType.MsgRequestVoteResponse
_MsgSnapshot = MessageType.MsgSnapshot
_MsgHeartbeat = MessageType.MsgHeartbeat
_MsgHeartbeatResponse = MessageType.MsgHeartbeatResponse
_MsgUnreachable = MessageType.MsgUnreachable
_MsgSnapStatus = MessageType.MsgSnapStatus
_MsgCheckQuorum = MessageType.MsgCheckQuorum
_MsgTransferLeader = MessageType.MsgTransferLeader
_MsgTimeoutNow = MessageType.MsgTimeoutNow
_MsgReadIndex = MessageType.MsgReadIndex
_MsgReadIndexResp = MessageType.MsgReadIndexResp
_MsgRequestPreVote = MessageType.MsgRequestPreVote
_MsgRequestPreVoteResponse = MessageType.MsgRequestPreVoteResponse

_VOTE_MSGS = frozenset({_MsgRequestVote, _MsgRequestPreVote})
_CAMPAIGN_MSGS = frozenset(
    {_MsgRequestVote, _MsgRequestPreVote, _MsgRequestVoteResponse, _MsgRequestPreVoteResponse}
)
_LEADER_MSGS = frozenset({_MsgAppend, _MsgHeartbeat, _MsgSnapshot})

_EntryNormal = EntryType.EntryNormal
_EntryConfChange = EntryType.EntryConfChange
_EntryConfChangeV2 = EntryType.EntryConfChangeV2


class StateRole(enum.Enum):
    """The role of a node."""

    Follower = 0
    Candidate = 1
    Leader = 2
    PreCandidate = 3


@dataclass(slots=True, frozen=True)
class SoftState:
    """Volatile state that is useful for logging and debugging; never persisted."""

    leader_id: int = INVALID_ID
    raft_state: StateRole = StateRole.Follower


class Rng(Protocol):
    """The randomness the core needs: `random.Random` satisfies it."""

    def randrange(self, start: int, stop: int) -> int: ...


class SplitMix64:
    """A tiny deterministic `Rng` (16 bytes of state, where a `random.Random` holds ~2.5 KB:
    it matters with one generator per region replica). Used when no `Rng` is injected, seeded
    by the node id, so the same cluster gives the same trace. The core never touches global
    randomness."""

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = seed & 0xFFFFFFFFFFFFFFFF

    def randrange(self, start: int, stop: int) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
        return start + z % (stop - start)


def default_logger() -> logging.Logger:
    """The logger the core falls back to when a constructor is given none (raft-rs
    `default_logger()`, an slog root over the `log` crate): the standard library's
    `multiraft.raft.raft` logger, configured with `logging` as usual."""
    return logging.getLogger(__name__)


class _RaftLogger:
    """Stamps every record with the raft id and current term: a `LoggerAdapter`'s job, in
    two slots (there is one per region replica; an adapter's instance dicts cost ~300 bytes
    each). `logger` is the logger it writes to."""

    __slots__ = ("logger", "_raft")

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, raft: Raft[Any]) -> None:  # type: ignore[type-arg]
        self.logger = logger
        self._raft = raft

    def _log(self, level: int, msg: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        logger = self.logger
        if logger.isEnabledFor(level):
            r = self._raft
            # (stacklevel: the record names the core's line that logged, not this one.)
            kwargs.setdefault("stacklevel", 3)
            logger.log(level, f"[raft {r.id} term {r.term}] {msg}", *args, **kwargs)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(logging.DEBUG, msg, args, kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(logging.INFO, msg, args, kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(logging.WARNING, msg, args, kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(logging.ERROR, msg, args, kwargs)


def new_message(to: int, msg_type: int, from_: int | None = None) -> Message:
    """A message with only type, destination and (optionally) sender set."""
    if from_ is None:
        return Message(msg_type=msg_type, to=to)  # type: ignore[arg-type]
    return Message(msg_type=msg_type, to=to, from_=from_)  # type: ignore[arg-type]


class Raft(Generic[S]):
    """A raft node's state machine. Drive it through `RawNode`; tests may use it directly."""

    __slots__ = (
        "id",
        "term",
        "vote",
        "read_states",
        "raft_log",
        "max_inflight",
        "max_msg_size",
        "pending_request_snapshot",
        "state",
        "promotable",
        "leader_id",
        "lead_transferee",
        "pending_conf_index",
        "read_only",
        "election_elapsed",
        "heartbeat_elapsed",
        "check_quorum",
        "pre_vote",
        "_skip_bcast_commit",
        "_beat_ctx",
        "batch_append",
        "heartbeat_timeout",
        "election_timeout",
        "randomized_election_timeout",
        "min_election_timeout",
        "max_election_timeout",
        "priority",
        "max_uncommitted_size",
        "uncommitted_size",
        "last_log_tail_index",
        "max_committed_size_per_ready",
        "prs",
        "msgs",
        "rng",
        "logger",
    )

    def __init__(
        self,
        c: Config,
        store: S,
        logger: logging.Logger | logging.LoggerAdapter | None = None,  # type: ignore[type-arg]
        rng: Rng | None = None,
    ) -> None:
        c.validate()
        raft_state = store.initial_state()
        conf_state = raft_state.conf_state
        if c.peers or c.learners:
            if raft_state.initialized():
                raise ConfigInvalid(
                    "cannot specify both Config.peers/learners and a ConfState in storage"
                )
            conf_state = ConfState(voters=c.peers, learners=c.learners)

        # The node id. Invariant: non-zero.
        self.id: int = c.id
        # The current term (persisted in HardState).
        self.term: int = 0
        # Whom this node voted for in `term` (persisted in HardState), INVALID_ID if none.
        self.vote: int = INVALID_ID
        # Read requests answered since the last Ready.
        self.read_states: list[ReadState] = []
        # The log.
        self.raft_log: RaftLog[S] = RaftLog(store)
        # The most in-flight appends per follower in Replicate state.
        self.max_inflight: int = c.max_inflight_msgs
        # Byte cap of the entries in one append.
        self.max_msg_size: int = c.max_size_per_msg
        # The snapshot index this follower asked the leader for (INVALID_INDEX if none).
        self.pending_request_snapshot: int = INVALID_INDEX
        # The current role.
        self.state: StateRole = StateRole.Follower
        # Whether this node is a voter of the current configuration (may campaign).
        self.promotable: bool = False
        # The leader this node knows of in `term`, INVALID_ID if none.
        self.leader_id: int = INVALID_ID
        # The target of an ongoing leader transfer (leader only).
        self.lead_transferee: int | None = None
        # Only one conf change may be pending (in the log, but not yet applied) at a time.
        # This is enforced via `pending_conf_index`, set to a value >= the log index of the
        # latest pending configuration change (if any). Config changes are only allowed to be
        # proposed if the leader's applied index is greater than this value.
        self.pending_conf_index: int = 0
        # Pending ReadIndex requests (leader only).
        self.read_only = ReadOnly(c.read_only_option)
        # Ticks since the last election timeout reset (followers and candidates), or since the
        # last check-quorum / transfer deadline (leader).
        self.election_elapsed: int = 0
        # Ticks since the last heartbeat (leader only).
        self.heartbeat_elapsed: int = 0
        self.check_quorum: bool = c.check_quorum
        self.pre_vote: bool = c.pre_vote
        self._skip_bcast_commit: bool = c.skip_bcast_commit
        # The context of the last heartbeats of the heartbeat timer (or `ping`): the answers
        # to those may find lost appends (`handle_heartbeat_response`).
        self._beat_ctx = b""
        self.batch_append: bool = c.batch_append
        self.heartbeat_timeout: int = c.heartbeat_tick
        self.election_timeout: int = c.election_tick
        # Drawn in [min_election_timeout, max_election_timeout) at each reset.
        self.randomized_election_timeout: int = 0
        self.min_election_timeout: int = c.min_election_timeout()
        self.max_election_timeout: int = c.max_election_timeout()
        # Election priority: a voter refuses a candidate with a lower priority and an equally
        # long log.
        self.priority: int = c.priority
        # Uncommitted-size accounting (leader only). Invariant: uncommitted_size >= 0.
        self.max_uncommitted_size: int = c.max_uncommitted_size
        self.uncommitted_size: int = 0
        # The last index before this leader's first entry: committed entries at or below it
        # were never counted.
        self.last_log_tail_index: int = 0
        self.max_committed_size_per_ready: int = c.max_committed_size_per_ready
        # The progress of every peer (leader only, but kept up to date everywhere).
        self.prs = ProgressTracker(c.max_inflight_msgs)
        # Messages to send, drained by RawNode.ready().
        self.msgs: list[Message] = []
        self.rng: Rng = rng if rng is not None else SplitMix64(c.id)
        self.logger = _RaftLogger(logger or default_logger(), self)

        restore(self.prs, self.raft_log.last_index(), conf_state)
        new_cs = self.post_conf_change()
        assert _conf_state_eq(conf_state, new_cs), f"invalid restore: {conf_state} != {new_cs}"

        if raft_state.hard_state != HardState():
            self.load_state(raft_state.hard_state)
        if c.applied > 0:
            self.commit_apply(c.applied)
        self.become_follower(self.term, INVALID_ID)
        self.logger.debug(
            "newRaft: peers=%s, last index=%d, last term=%d, commit=%d, applied=%d",
            self.prs.conf,
            self.raft_log.last_index(),
            self.raft_log.last_term(),
            self.raft_log.committed,
            self.raft_log.applied,
        )

    # -- accessors ----------------------------------------------------------------------

    def store(self) -> S:
        return self.raft_log.store

    def mut_store(self) -> S:
        return self.raft_log.store

    def snap(self) -> Snapshot | None:
        """The pending (unstable) snapshot, if any."""
        return self.raft_log.unstable.snapshot

    def pending_read_count(self) -> int:
        return self.read_only.pending_read_count()

    def ready_read_count(self) -> int:
        return len(self.read_states)

    def soft_state(self) -> SoftState:
        return SoftState(self.leader_id, self.state)

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def in_lease(self) -> bool:
        """Whether this leader holds a lease (check_quorum keeps it honest)."""
        return self.state == StateRole.Leader and self.check_quorum

    def mut_prs(self) -> ProgressTracker:
        return self.prs

    def set_randomized_election_timeout(self, t: int) -> None:
        """For tests: fix the randomized election timeout."""
        assert self.min_election_timeout <= t < self.max_election_timeout
        self.randomized_election_timeout = t

    def skip_bcast_commit(self, skip: bool) -> None:
        """Don't broadcast appends whose only purpose is to spread the commit index."""
        self._skip_bcast_commit = skip

    def set_batch_append(self, batch_append: bool) -> None:
        self.batch_append = batch_append

    def set_priority(self, priority: int) -> None:
        self.priority = priority

    def set_check_quorum(self, check_quorum: bool) -> None:
        self.check_quorum = check_quorum

    def set_max_inflight_msgs(self, n: int) -> None:
        self.max_inflight = n

    def adjust_max_inflight_msgs(self, target: int, cap: int) -> None:
        """Change the Inflights capacity of one peer (raft-rs); 0 disables appends to it in
        Replicate state. Unknown peers are ignored."""
        pr = self.prs.progress.get(target)
        if pr is not None:
            pr.ins.set_cap(cap)

    def maybe_free_inflight_buffers(self) -> None:
        """Release the Inflights buffers of peers with nothing in flight (raft-rs)."""
        for pr in self.prs.progress.values():
            pr.ins.maybe_free_buffer()

    def enable_group_commit(self, enable: bool) -> None:
        """Commit only when the quorum spans at least two commit groups."""
        self.prs.enable_group_commit(enable)
        if self.state == StateRole.Leader and not enable and self.maybe_commit():
            self.bcast_append()

    def group_commit(self) -> bool:
        return self.prs.group_commit()

    def assign_commit_groups(self, ids: Sequence[tuple[int, int]]) -> None:
        """Assign each peer to a commit group (peer id, group id)."""
        for peer_id, group_id in ids:
            assert group_id > 0
            pr = self.prs.get(peer_id)
            if pr is not None:
                pr.commit_group_id = group_id
            else:
                continue
        if self.state == StateRole.Leader and self.group_commit() and self.maybe_commit():
            self.bcast_append()

    def clear_commit_group(self) -> None:
        for _, pr in self.prs.iter():
            pr.commit_group_id = 0

    def check_group_commit_consistent(self) -> bool | None:
        """Whether committed entries would be the same without group commit (leader only)."""
        if self.state != StateRole.Leader:
            return None
        # Previous leader may have reach consistency already.
        #
        # check applied_index instead of committed_index to avoid pending conf change.
        if not self.apply_to_current_term():
            return None
        index, use_group_commit = self.prs.maximal_committed_index()
        return index == self.raft_log.committed and not use_group_commit

    def commit_to_current_term(self) -> bool:
        """Whether the leader has committed an entry of its own term."""
        return self.raft_log.term(self.raft_log.committed) == self.term

    def apply_to_current_term(self) -> bool:
        return self.raft_log.term(self.raft_log.applied) == self.term

    # -- sending ------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        """Stamp `from_` and the term on a message and queue it."""
        if m.from_ == INVALID_ID:
            m.from_ = self.id
        t = m.msg_type
        if t in _CAMPAIGN_MSGS:
            # All {pre-,}campaign messages need to have the term set when sending:
            # - MsgVote: the term the node is campaigning for (already incremented);
            # - MsgVoteResp: the new term if the vote was granted;
            # - MsgPreVote: the term the node will campaign for;
            # - MsgPreVoteResp: the term of the pre-vote if granted.
            assert m.term != 0, f"term should be set when sending {MessageType.Name(t)}"
        else:
            assert m.term == 0, (
                f"term should not be set when sending {MessageType.Name(t)} (was {m.term})"
            )
            # Proposals and read requests forwarded to the leader are treated as local
            # messages there: they carry no term.
            if t != _MsgPropose and t != _MsgReadIndex:
                m.term = self.term
        if t == _MsgRequestVote or t == _MsgRequestPreVote:
            m.priority = self.priority
        self.msgs.append(m)

    def _prepare_send_snapshot(self, m: Message, pr: Progress, to: int) -> bool:
        """Turn `m` into a MsgSnapshot for `to` (paper §7). False if not possible now."""
        if not pr.recent_active:
            self.logger.debug("ignore sending snapshot to %d since it is not recently active", to)
            return False
        try:
            snapshot = self.raft_log.snapshot(pr.pending_request_snapshot, to)
        except SnapshotTemporarilyUnavailable:
            self.logger.debug(
                "failed to send snapshot to %d because snapshot is temporarily unavailable", to
            )
            return False
        assert snapshot.metadata.index != 0, "need non-empty snapshot"
        m.msg_type = _MsgSnapshot
        m.snapshot.CopyFrom(snapshot)
        sindex, sterm = snapshot.metadata.index, snapshot.metadata.term
        pr.become_snapshot(sindex)
        self.logger.debug(
            "[firstindex: %d, commit: %d] sent snapshot[index: %d, term: %d] to %d",
            self.raft_log.first_index(),
            self.raft_log.committed,
            sindex,
            sterm,
            to,
        )
        return True

    def _try_batching(self, to: int, pr: Progress, ents: list[Entry]) -> bool:
        """Merge `ents` into a MsgAppend to `to` already queued (batch_append)."""
        for msg in self.msgs:
            if msg.msg_type == _MsgAppend and msg.to == to:
                if ents:
                    batched = msg.entries
                    last = batched[-1].index if batched else msg.index
                    if last + 1 != ents[0].index:
                        return False
                    batched.extend(ents)
                    pr.update_state(ents[-1].index)
                msg.commit = self.raft_log.committed
                return True
        return False

    def send_append(self, to: int) -> None:
        """Send an append (possibly empty, to spread the commit index) or snapshot to `to`."""
        pr = self.prs.progress[to]
        self.maybe_send_append(to, pr, True)

    def send_append_aggressively(self, to: int) -> None:
        """Send as many non-empty appends to `to` as flow control allows."""
        pr = self.prs.progress[to]
        while self.maybe_send_append(to, pr, False):
            pass

    def maybe_send_append(self, to: int, pr: Progress, allow_empty: bool) -> bool:
        """Send an append RPC with new entries to `to` (paper §5.3), or a snapshot when the
        entries it needs are compacted. Returns whether a message was sent."""
        if pr.is_paused():
            return False
        m = Message(to=to)
        if pr.pending_request_snapshot != INVALID_INDEX:
            # Check the pending request snapshot first to avoid loading entries in vain.
            if not self._prepare_send_snapshot(m, pr, to):
                return False
        else:
            next_idx = pr.next_idx
            # The storage is asked (with a context) only below the unstable tail.
            ctx = (
                GetEntriesContext(
                    GetEntriesContext.SEND_APPEND,
                    to=to,
                    term=self.term,
                    aggressively=not allow_empty,
                    can_async=True,
                )
                if next_idx < self.raft_log.unstable.offset
                else None
            )
            try:
                ents = self.raft_log.entries(next_idx, self.max_msg_size, ctx)
                ents_err: StorageError | None = None
            except LogTemporarilyUnavailable:
                # Wait for the storage to fetch the entries asynchronously.
                return False
            except StorageError as e:
                ents, ents_err = [], e
            if not allow_empty and (ents_err is not None or not ents):
                return False
            try:
                term = self.raft_log.term(next_idx - 1)
                term_err: StorageError | None = None
            except StorageError as e:
                term, term_err = 0, e
            if ents_err is None and term_err is None:
                if self.batch_append and self._try_batching(to, pr, ents):
                    return True
                m.msg_type = _MsgAppend
                m.index = next_idx - 1
                m.log_term = term
                m.commit = self.raft_log.committed
                if ents:
                    m.entries.extend(ents)
                    pr.update_state(ents[-1].index)
            elif not self._prepare_send_snapshot(m, pr, to):
                # The term or the entries are compacted: a snapshot is needed, and cannot be
                # sent right now.
                return False
        self.send(m)
        return True

    def send_heartbeat(self, to: int, pr: Progress, ctx: bytes | None) -> None:
        """Send a heartbeat carrying commit = min(matched, committed): the follower may not
        have every committed entry, and must never commit past what it matches (§5.3)."""
        m = Message(
            to=to,
            msg_type=_MsgHeartbeat,
            commit=min(pr.matched, self.raft_log.committed),
        )
        if ctx:
            m.context = ctx
        self.send(m)

    def bcast_append(self) -> None:
        """Send appends to every peer (paper §5.3).

        Followers at the same `next_idx` get the same MsgAppend: it is built once and copied
        (a protobuf CopyFrom is ~10x cheaper than re-adding the entries)."""
        self_id = self.id
        msgs = self.msgs
        # (next_idx, message, last entry index) of the last MsgAppend built here.
        template: tuple[int, Message, int] | None = None
        for id, pr in self.prs.progress.items():
            if id == self_id:
                continue
            next_idx = pr.next_idx
            if (
                template is not None
                and template[0] == next_idx
                and pr.pending_request_snapshot == INVALID_INDEX
                and not self.batch_append
                and not pr.is_paused()
            ):
                m = Message()
                m.CopyFrom(template[1])
                m.to = id
                if template[2] >= next_idx:
                    pr.update_state(template[2])
                msgs.append(m)
                continue
            n = len(msgs)
            if self.maybe_send_append(id, pr, True) and len(msgs) == n + 1:
                m = msgs[-1]
                if m.msg_type == _MsgAppend:
                    template = (next_idx, m, m.index + len(m.entries))

    def bcast_heartbeat(self) -> None:
        ctx = self.read_only.last_pending_request_ctx()
        self._beat_ctx = ctx or b""
        self.bcast_heartbeat_with_ctx(ctx)

    def bcast_heartbeat_with_ctx(self, ctx: bytes | None) -> None:
        self_id = self.id
        for id, pr in self.prs.progress.items():
            if id != self_id:
                self.send_heartbeat(id, pr, ctx)

    def ping(self) -> None:
        """Broadcast heartbeats now (leader only)."""
        if self.state == StateRole.Leader:
            self.bcast_heartbeat()

    def send_timeout_now(self, to: int) -> None:
        self.send(new_message(to, _MsgTimeoutNow))

    # -- commit / persist / apply -----------------------------------------------------------

    def maybe_commit(self) -> bool:
        """Advance the commit index to what a quorum has matched, if that entry is of the
        current term (paper §5.4.2, Figure 8). Returns whether it moved."""
        mci, _ = self.prs.maximal_committed_index()
        if self.raft_log.maybe_commit(mci, self.term):
            pr = self.prs.progress.get(self.id)
            if pr is not None:
                pr.update_committed(self.raft_log.committed)
            return True
        return False

    def should_bcast_commit(self) -> bool:
        return not self._skip_bcast_commit or self.has_pending_conf()

    def has_pending_conf(self) -> bool:
        """Whether a conf change is in the log but not applied yet."""
        return self.pending_conf_index > self.raft_log.applied

    def commit_apply(self, applied: int) -> None:
        """Record that entries up to `applied` were applied; starts the automatic leave of a
        joint configuration once its entry is applied."""
        old_applied = self.raft_log.applied
        self.raft_log.applied_to(applied)
        if (
            self.prs.conf.auto_leave
            and old_applied <= self.pending_conf_index <= applied
            and self.state == StateRole.Leader
        ):
            # The joint configuration should be auto-left: propose an empty ConfChangeV2 now.
            # Its data is empty, so the uncommitted-size limit can never refuse it.
            entry = Entry(entry_type=_EntryConfChangeV2)
            ok = self.append_entry([entry])
            assert ok, "appending an empty EntryConfChangeV2 should never be dropped"
            self.pending_conf_index = self.raft_log.last_index()
            self.bcast_append()
            self.logger.debug(
                "initiating automatic transition out of joint configuration %s", self.prs.conf
            )

    def append_entry(self, es: Sequence[Entry]) -> bool:
        """Append entries of the current term to the leader's log. Returns False when the
        uncommitted-size limit refuses them."""
        if not self.maybe_increase_uncommitted_size(es):
            return False
        li = self.raft_log.last_index()
        term = self.term
        for i, e in enumerate(es, li + 1):
            e.term = term
            e.index = i
        self.raft_log.append(es)
        # The leader's own matched index moves only once the entries are persisted
        # (on_persist_entries): a leader counts toward a quorum only with what is on its disk.
        return True

    def on_persist_entries(self, index: int, term: int) -> None:
        """The application persisted entries up to `(index, term)`."""
        if self.raft_log.maybe_persist(index, term) and self.state == StateRole.Leader:
            if term != self.term:
                # Entries of an earlier term finished persisting after this node became
                # leader: they are in the leader's log and durable, so they count.
                self.logger.debug(
                    "leader persisted entries of earlier term %d up to %d", term, index
                )
            pr = self.prs.progress.get(self.id)
            if pr is not None and pr.maybe_update(index) and self.maybe_commit():
                if self.should_bcast_commit():
                    self.bcast_append()

    def on_persist_snap(self, index: int) -> None:
        self.raft_log.maybe_persist_snap(index)

    # -- uncommitted size ---------------------------------------------------------------

    def maybe_increase_uncommitted_size(self, ents: Sequence[Entry]) -> bool:
        if self.max_uncommitted_size == NO_LIMIT:
            return True
        size = sum(len(e.data) for e in ents)
        # 1. an entry without data is never dropped (e.g. a leader's first entry);
        # 2. at least one uncommitted entry is always allowed;
        # 3. otherwise the entries must fit under the limit.
        if size == 0 or self.uncommitted_size == 0 or size + self.uncommitted_size <= self.max_uncommitted_size:
            self.uncommitted_size += size
            return True
        return False

    def reduce_uncommitted_size(self, ents: Sequence[Entry]) -> None:
        """Committed entries no longer count toward the uncommitted size (leader only)."""
        if self.state != StateRole.Leader or self.max_uncommitted_size == NO_LIMIT or not ents:
            return
        # A Ready generated before this node became leader may hold entries of the previous
        # term, which were never counted.
        tail = self.last_log_tail_index
        size = sum(len(e.data) for e in ents if e.index > tail)
        if size > self.uncommitted_size:
            self.logger.error(
                "try to reduce uncommitted size less than 0, first index of pending ents is %d",
                ents[0].index,
            )
            self.uncommitted_size = 0
        else:
            self.uncommitted_size -= size

    # -- roles ----------------------------------------------------------------------------

    def reset(self, term: int) -> None:
        """Reset the volatile state for a new term (or a new role in the same term)."""
        if self.term != term:
            self.term = term
            self.vote = INVALID_ID
        self.leader_id = INVALID_ID
        self.reset_randomized_election_timeout()
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.abort_leader_transfer()
        self.prs.reset_votes()
        self.pending_conf_index = 0
        self.read_only = ReadOnly(self.read_only.option, self.read_only.next_ctx)
        self.pending_request_snapshot = INVALID_INDEX
        self.uncommitted_size = 0

        last_index = self.raft_log.last_index()
        committed = self.raft_log.committed
        persisted = self.raft_log.persisted
        self_id = self.id
        for id, pr in self.prs.progress.items():
            pr.reset(last_index + 1)
            if id == self_id:
                pr.matched = persisted
                pr.committed_index = committed

    def reset_randomized_election_timeout(self) -> None:
        """Draw a new election timeout in [min, max) (paper §5.2: randomized timeouts)."""
        self.randomized_election_timeout = self.rng.randrange(
            self.min_election_timeout, self.max_election_timeout
        )

    def pass_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def become_follower(self, term: int, leader_id: int) -> None:
        pending_request_snapshot = self.pending_request_snapshot
        self.reset(term)
        self.leader_id = leader_id
        from_role = self.state
        self.state = StateRole.Follower
        self.pending_request_snapshot = pending_request_snapshot
        self.logger.debug("became follower at term %d (from %s, leader %d)", term, from_role.name, leader_id)

    def become_candidate(self) -> None:
        """Start an election: new term, vote for self (paper §5.2)."""
        assert self.state != StateRole.Leader, "invalid transition [leader -> candidate]"
        self.reset(self.term + 1)
        self.vote = self.id
        self.state = StateRole.Candidate
        self.logger.debug("became candidate at term %d", self.term)

    def become_pre_candidate(self) -> None:
        """Start a pre-election (thesis §9.6): neither the term nor the vote change."""
        assert self.state != StateRole.Leader, "invalid transition [leader -> pre-candidate]"
        self.state = StateRole.PreCandidate
        self.prs.reset_votes()
        # If a network partition happens, and leader is in minority partition, it will step
        # down, and become follower without notifying others.
        self.leader_id = INVALID_ID
        self.logger.debug("became pre-candidate at term %d", self.term)

    def become_leader(self) -> None:
        assert self.state != StateRole.Follower, "invalid transition [follower -> leader]"
        self.reset(self.term)
        self.leader_id = self.id
        self.state = StateRole.Leader
        last_index = self.raft_log.last_index()
        # Followers enter replicate mode when they've been successfully probed (perhaps after
        # having received a snapshot as a result). The leader is trivially in this state.
        # Note that reset() has initialized this progress with the last index already.
        self.prs.progress[self.id].become_replicate()
        # Conservatively set the pending_conf_index to the last index in the log. There may or
        # may not be a pending config change, but it's safe to delay any future proposals
        # until we commit all our pending log entries, and scanning the entire tail of the log
        # could be expensive.
        self.pending_conf_index = last_index
        self.last_log_tail_index = last_index
        # An empty entry of the new term: committing it commits every earlier entry
        # (paper §5.4.2) and lets reads be served (thesis §6.4).
        ok = self.append_entry([Entry()])
        assert ok, "appending an empty entry should never be dropped"
        self.logger.debug("became leader at term %d", self.term)

    def lead_at_bootstrap(self) -> bool:
        """Become leader of the current term without an election: the group's bootstrap
        made every voter persist a vote for this node at this term before any of them sent
        or received a message. Returns whether it did (False, and nothing changes, if the
        node is not a follower that voted for itself at its term with no entry of that term
        in its log, or is no voter of a single-configuration group).

        Safety (Election Safety, paper §5.2): a node wins a term by the votes of a quorum,
        and a vote is cast once per term and persisted before it is sent. Every voter's
        first durable state is (term, vote = this node), so no other candidate can collect
        a single vote at this term: this node is the only possible leader of it, and the
        votes it would have asked for are already its own. Any other node that campaigns
        does so at a later term: ordinary raft. A replica created later by a message is no
        voter of this configuration's bootstrap and cannot campaign at this term either.

        The caller's duty: call it at most once per term over the node's whole life. A
        leader's messages leave before its own entries are durable, so a restarted node
        whose log lost its term's entries would pass the check below and append different
        entries at the same (index, term) as those its followers hold: Log Matching would
        break. A host calls it only in the process that wrote the bootstrap state (never
        after a restart), and the check on the log's last term refuses the common case
        anyway."""
        if (
            self.state != StateRole.Follower
            or not self.promotable
            or self.vote != self.id
            or self.leader_id != INVALID_ID
            or self.raft_log.last_term() >= self.term
            or self.prs.conf.voters.outgoing
            or self.raft_log.unstable.snapshot is not None
        ):
            return False
        # (become_leader's reset keeps the term and this node's vote.)
        self.state = StateRole.Candidate
        self.become_leader()
        self.bcast_append()
        self.logger.debug("leads term %d as the bootstrap's designated replica", self.term)
        return True

    # -- ticks ----------------------------------------------------------------------------

    def tick(self) -> bool:
        """Advance logical time by one tick. Returns whether a message may be ready."""
        if self.state == StateRole.Leader:
            return self.tick_heartbeat()
        return self.tick_election()

    def tick_election(self) -> bool:
        self.election_elapsed += 1
        if not self.pass_election_timeout() or not self.promotable:
            return False
        self.election_elapsed = 0
        self.step(new_message(INVALID_ID, _MsgHup, self.id))
        return True

    def tick_heartbeat(self) -> bool:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        has_ready = False
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                has_ready = True
                self.step(new_message(INVALID_ID, _MsgCheckQuorum, self.id))
            # A leader transfer must finish within one election timeout.
            if self.state == StateRole.Leader and self.lead_transferee is not None:
                self.abort_leader_transfer()
        if self.state != StateRole.Leader:
            return has_ready
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            has_ready = True
            self.step(new_message(INVALID_ID, _MsgBeat, self.id))
        return has_ready

    # -- elections ------------------------------------------------------------------------

    def hup(self, transfer_leader: bool) -> None:
        """Start an election if allowed."""
        if self.state == StateRole.Leader:
            self.logger.debug("ignoring MsgHup because already leader")
            return
        if not self.promotable:
            self.logger.debug("is unpromotable and can not campaign")
            return
        if self.raft_log.unstable.snapshot is not None:
            # A snapshot not yet handed to storage: the node's state is in flux (etcd #12163).
            self.logger.debug("is unpromotable and can not campaign; pending snapshot")
            return
        # Never campaign while committed conf changes are unapplied: the configuration this
        # node would campaign in may already be stale (etcd-io/etcd#7280).
        first_index = self.raft_log.applied + 1
        if self.has_unapplied_conf_changes(
            first_index,
            self.raft_log.committed + 1,
            GetEntriesContext(GetEntriesContext.TRANSFER_LEADER),
        ):
            self.logger.debug(
                "cannot campaign at term %d since there are still pending configuration changes to apply",
                self.term,
            )
            return
        self.logger.debug("starting a new election")
        if transfer_leader:
            self.campaign(CAMPAIGN_TRANSFER)
        elif self.pre_vote:
            self.campaign(CAMPAIGN_PRE_ELECTION)
        else:
            self.campaign(CAMPAIGN_ELECTION)

    def has_unapplied_conf_changes(self, lo: int, hi: int, context: GetEntriesContext) -> bool:
        """Whether a conf change entry lies in `[lo, hi)`, scanned in pages of
        max_committed_size_per_ready bytes (raft-rs #530)."""
        if self.raft_log.applied >= self.raft_log.committed or lo >= hi:
            return False
        found = False

        def visit(ents: list[Entry]) -> bool:
            nonlocal found
            for e in ents:
                if e.entry_type == _EntryConfChange or e.entry_type == _EntryConfChangeV2:
                    found = True
                    return False
            return True

        self.raft_log.scan(lo, hi, self.max_committed_size_per_ready, context, visit)
        return found

    def campaign(self, campaign_type: bytes) -> None:
        """Campaign to become leader (paper §5.2; pre-vote: thesis §9.6)."""
        if campaign_type == CAMPAIGN_PRE_ELECTION:
            self.become_pre_candidate()
            # Pre-vote RPCs are sent for the next term before we've incremented self.term.
            vote_msg, term = _MsgRequestPreVote, self.term + 1
        else:
            self.become_candidate()
            vote_msg, term = _MsgRequestVote, self.term
        self_id = self.id
        if self.poll(self_id, vote_msg, True) == VoteResult.Won:
            # We won the election after voting for ourselves (a single-voter cluster).
            return
        commit, commit_term = self.raft_log.commit_info()
        last_index = self.raft_log.last_index()
        last_term = self.raft_log.last_term()
        for id in sorted(self.prs.conf.voters.ids()):
            if id == self_id:
                continue
            m = Message(
                to=id,
                msg_type=vote_msg,
                term=term,
                index=last_index,
                log_term=last_term,
                commit=commit,
                commit_term=commit_term,
            )
            if campaign_type == CAMPAIGN_TRANSFER:
                m.context = campaign_type
            self.send(m)
        self.logger.debug(
            "[logterm: %d, index: %d] sent %s request to voters at term %d",
            last_term,
            last_index,
            MessageType.Name(vote_msg),
            term,
        )

    def poll(self, from_: int, t: int, vote: bool) -> VoteResult:
        """Record a vote and act on the result."""
        self.prs.record_vote(from_, vote)
        granted, rejected, res = self.prs.tally_votes()
        if from_ != self.id:
            self.logger.debug(
                "received %s %s from %d; %d granted, %d rejected",
                MessageType.Name(t),
                "rejection" if not vote else "grant",
                from_,
                granted,
                rejected,
            )
        if res == VoteResult.Won:
            if self.state == StateRole.PreCandidate:
                self.campaign(CAMPAIGN_ELECTION)
            else:
                self.become_leader()
                self.bcast_append()
        elif res == VoteResult.Lost:
            # A MsgPreVoteResp carries the future term of the pre-candidate (m.term >
            # self.term): reuse self.term.
            self.become_follower(self.term, INVALID_ID)
        return res

    def maybe_commit_by_vote(self, m: Message) -> None:
        """Fast-forward the commit index from the commit info a vote (response) carries
        (raft-rs; etcd-io/etcd#12359)."""
        if m.commit == 0 or m.commit_term == 0:
            return
        last_commit = self.raft_log.committed
        if m.commit <= last_commit or self.state == StateRole.Leader:
            return
        if not self.raft_log.maybe_commit(m.commit, m.commit_term):
            return
        self.logger.debug(
            "[commit: %d, lastindex: %d, lastterm: %d] fast-forwarded commit to vote request "
            "[index: %d, term: %d]",
            self.raft_log.committed,
            self.raft_log.last_index(),
            self.raft_log.last_term(),
            m.commit,
            m.commit_term,
        )
        if self.state != StateRole.Candidate and self.state != StateRole.PreCandidate:
            return
        # The candidate doesn't have to step down in theory; it does for safety, as the
        # election assumes the quorum does not change while it runs.
        if self.has_unapplied_conf_changes(
            last_commit + 1,
            self.raft_log.committed + 1,
            GetEntriesContext(GetEntriesContext.COMMITTED_BY_VOTE),
        ):
            self.become_follower(self.term, INVALID_ID)

    # -- step -------------------------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Handle one message (paper §5.1: any RPC with a higher term turns this node into a
        follower; lower-term messages are dropped)."""
        mt = m.msg_type
        if m.term == 0:
            # A local message.
            pass
        elif m.term > self.term:
            if mt in _VOTE_MSGS:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum
                    and self.leader_id != INVALID_ID
                    and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # A server that heard from a current leader within the minimum election
                    # timeout neither updates its term nor grants its vote (thesis §4.2.3):
                    # this stops removed or partitioned nodes from disrupting the cluster.
                    self.logger.debug(
                        "[logterm: %d, index: %d, vote: %d] ignored %s from %d "
                        "[logterm: %d, index: %d] at term %d: lease is not expired "
                        "(remaining ticks: %d)",
                        self.raft_log.last_term(),
                        self.raft_log.last_index(),
                        self.vote,
                        MessageType.Name(mt),
                        m.from_,
                        m.log_term,
                        m.index,
                        self.term,
                        self.election_timeout - self.election_elapsed,
                    )
                    return
            if mt == _MsgRequestPreVote or (mt == _MsgRequestPreVoteResponse and not m.reject):
                # Never change our term in response to a pre-vote request. A granted pre-vote
                # response carries the future term of our pre-campaign; we raise our term only
                # when a quorum grants it. A rejection's term comes from a node with a higher
                # term, and makes us a follower below.
                pass
            else:
                self.logger.debug(
                    "received a message with higher term from %d (%s at term %d)",
                    m.from_,
                    MessageType.Name(mt),
                    m.term,
                )
                if mt in _LEADER_MSGS:
                    self.become_follower(m.term, m.from_)
                else:
                    self.become_follower(m.term, INVALID_ID)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and (mt == _MsgHeartbeat or mt == _MsgAppend):
                # A leader at a lower term: maybe delayed, or maybe this node advanced its
                # term during a partition and can neither win an election nor rejoin on the
                # old term. With check_quorum (or pre-vote) the term would not advance through
                # votes, so answer with our term to depose the stale leader (etcd-io/etcd#8501).
                self.send(new_message(m.from_, _MsgAppendResponse))
            elif mt == _MsgRequestPreVote:
                # A pre-candidate with a lower term must learn our term, or a cluster that
                # switched to pre-vote could deadlock (etcd-io/etcd#8243).
                self.logger.debug(
                    "rejected %s from %d at lower term %d", MessageType.Name(mt), m.from_, m.term
                )
                to_send = new_message(m.from_, _MsgRequestPreVoteResponse)
                to_send.term = self.term
                to_send.reject = True
                self.send(to_send)
            else:
                self.logger.debug(
                    "ignored a %s with lower term %d from %d", MessageType.Name(mt), m.term, m.from_
                )
            return

        if mt == _MsgHup:
            self.hup(False)
        elif mt in _VOTE_MSGS:
            self._handle_vote_request(m)
        else:
            state = self.state
            if state == StateRole.Leader:
                self.step_leader(m)
            elif state == StateRole.Follower:
                self.step_follower(m)
            else:
                self.step_candidate(m)

    def _handle_vote_request(self, m: Message) -> None:
        """Grant or refuse a (pre-)vote (paper §5.2, §5.4.1)."""
        # We can vote if this is a repeat of a vote we've already cast...
        can_vote = (
            self.vote == m.from_
            # ...we haven't voted and we don't think there's a leader yet in this term...
            or (self.vote == INVALID_ID and self.leader_id == INVALID_ID)
            # ...or this is a PreVote for a future term...
            or (m.msg_type == _MsgRequestPreVote and m.term > self.term)
        )
        # ...and we believe the candidate is up to date, and not of lower priority with a log
        # as long as ours.
        if (
            can_vote
            and self.raft_log.is_up_to_date(m.index, m.log_term)
            and (m.index > self.raft_log.last_index() or self.priority <= m.priority)
        ):
            # When responding to Msg{Pre,}Vote messages we include the term from the message,
            # not the local term: a pre-vote is for a future term, and a node whose local term
            # is stale would otherwise have its answer ignored.
            self._log_vote(m, "cast")
            to_send = new_message(m.from_, vote_resp_msg_type(m.msg_type))
            to_send.reject = False
            to_send.term = m.term
            self.send(to_send)
            if m.msg_type == _MsgRequestVote:
                # Only record real votes.
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self._log_vote(m, "rejected")
            to_send = new_message(m.from_, vote_resp_msg_type(m.msg_type))
            to_send.reject = True
            to_send.term = self.term
            to_send.commit, to_send.commit_term = self.raft_log.commit_info()
            self.send(to_send)
            self.maybe_commit_by_vote(m)

    def _log_vote(self, m: Message, verdict: str) -> None:
        self.logger.debug(
            "[logterm: %d, index: %d, vote: %d] %s %s from %d [logterm: %d, index: %d] at term %d",
            self.raft_log.last_term(),
            self.raft_log.last_index(),
            self.vote,
            verdict,
            MessageType.Name(m.msg_type),
            m.from_,
            m.log_term,
            m.index,
            m.term,
        )

    def step_leader(self, m: Message) -> None:
        mt = m.msg_type
        # These message types do not require any progress for m.from_.
        if mt == _MsgBeat:
            self.bcast_heartbeat()
            return
        if mt == _MsgCheckQuorum:
            if not self.prs.quorum_recently_active(self.id):
                self.logger.debug("stepped down to follower since quorum is not active")
                self.become_follower(self.term, INVALID_ID)
            return
        if mt == _MsgPropose:
            self._handle_propose(m)
            return
        if mt == _MsgReadIndex:
            self._handle_read_index(m)
            return

        if mt not in _LEADER_RESPONSE_MSGS:
            return
        pr = self.prs.progress.get(m.from_)
        if pr is None:
            self.logger.debug("no progress available for %d", m.from_)
            return
        if mt == _MsgAppendResponse:
            self.handle_append_response(m, pr)
        elif mt == _MsgHeartbeatResponse:
            self.handle_heartbeat_response(m, pr)
        elif mt == _MsgSnapStatus:
            self.handle_snapshot_status(m, pr)
        elif mt == _MsgUnreachable:
            self.handle_unreachable(m, pr)
        else:
            self.handle_transfer_leader(m, pr)

    def _handle_propose(self, m: Message) -> None:
        assert len(m.entries) > 0, "stepped empty MsgProp"
        if self.id not in self.prs.progress:
            # This node was removed from the configuration while serving as leader: drop
            # every new proposal.
            raise ProposalDropped("raft: proposal dropped: leader removed from the configuration")
        if self.lead_transferee is not None:
            self.logger.debug(
                "transfer leadership to %d is in progress; dropping proposal", self.lead_transferee
            )
            raise ProposalDropped("raft: proposal dropped: leader transfer in progress")
        ents = list(m.entries)
        for i, e in enumerate(ents):
            et = e.entry_type
            if et == _EntryNormal:
                continue
            cc: ConfChangeV2
            try:
                if et == _EntryConfChange:
                    cc_v1 = ConfChange()
                    cc_v1.ParseFromString(e.data)
                    cc = into_v2(cc_v1)
                else:
                    cc = ConfChangeV2()
                    cc.ParseFromString(e.data)
            except Exception as err:  # protobuf DecodeError
                self.logger.error("invalid conf change: %s", err)
                raise ProposalDropped("raft: proposal dropped: invalid conf change") from err
            if self.has_pending_conf():
                reason = "possible unapplied conf change"
            else:
                already_joint = bool(self.prs.conf.voters.outgoing.voters)
                want_leave = len(cc.changes) == 0
                if already_joint and not want_leave:
                    reason = "must transition out of joint config first"
                elif not already_joint and want_leave:
                    reason = "not in joint state; refusing empty conf change"
                else:
                    reason = ""
            if not reason:
                self.pending_conf_index = self.raft_log.last_index() + i + 1
            else:
                self.logger.debug(
                    "ignoring conf change %s: %s (config %s, pending index %d, applied %d)",
                    cc,
                    reason,
                    self.prs.conf,
                    self.pending_conf_index,
                    self.raft_log.applied,
                )
                ents[i] = Entry(entry_type=_EntryNormal)
        if not self.append_entry(ents):
            self.logger.debug(
                "entries are dropped due to overlimit of max uncommitted size, uncommitted_size: %d",
                self.uncommitted_size,
            )
            raise ProposalDropped("raft: proposal dropped: uncommitted size limit reached")
        self.bcast_append()

    def _handle_read_index(self, m: Message) -> None:
        """ReadIndex on the leader (thesis §6.4)."""
        if not self.commit_to_current_term():
            # Reject read only request when this leader has not committed any log entry in
            # its term: its commit index may be stale (etcd-io/etcd#7331).
            return
        # The shortcut holds only if the single voter is this leader: a leader that applied
        # its own removal keeps leading (raft-rs), and must not answer at its stale commit
        # index while the remaining voter elects itself and commits (simulator seed 10).
        if self.prs.is_singleton() and self.prs.conf.voters.contains(self.id):
            read_index = self.raft_log.committed
            resp = self.handle_ready_read_index(m, read_index)
            if resp is not None:
                self.send(resp)
            return
        if self.read_only.option == ReadOnlyOption.Safe:
            ctx = self.read_only.add_request(self.raft_log.committed, m, self.id)
            self.bcast_heartbeat_with_ctx(ctx)
        else:
            read_index = self.raft_log.committed
            resp = self.handle_ready_read_index(m, read_index)
            if resp is not None:
                self.send(resp)

    def handle_ready_read_index(self, req: Message, index: int) -> Message | None:
        """Answer a confirmed read: locally as a ReadState, or to the follower that forwarded
        it as a MsgReadIndexResp."""
        if req.from_ == INVALID_ID or req.from_ == self.id:
            self.read_states.append(ReadState(index, req.entries[0].data))
            return None
        resp = Message(to=req.from_, msg_type=_MsgReadIndexResp, index=index)
        resp.entries.extend(req.entries)
        return resp

    def handle_append_response(self, m: Message, pr: Progress) -> None:
        next_probe_index = m.reject_hint
        if m.reject and m.log_term > 0:
            # Fast log rejection: the follower told us its term at reject_hint. Every index of
            # our log with a larger term cannot match, so probe at the largest index whose
            # term is <= the follower's (at most one probe per term of our log).
            next_probe_index, _ = self.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
        pr.recent_active = True
        # Update the follower's committed index from the response.
        pr.update_committed(m.commit)
        if m.reject:
            self.logger.debug(
                "received msgAppend rejection from %d (index %d, hint %d)",
                m.from_,
                m.index,
                next_probe_index,
            )
            if pr.maybe_decr_to(m.index, next_probe_index, m.request_snapshot):
                if pr.state == ProgressState.Replicate:
                    pr.become_probe()
                self.maybe_send_append(m.from_, pr, True)
            return

        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        state = pr.state
        if state == ProgressState.Probe:
            pr.become_replicate()
        elif state == ProgressState.Snapshot:
            if pr.is_snapshot_caught_up():
                self.logger.debug(
                    "snapshot aborted, resumed sending replication messages to %d", m.from_
                )
                pr.become_probe()
        else:
            pr.ins.free_to(m.index)

        if self.maybe_commit():
            if self.should_bcast_commit():
                self.bcast_append()
        elif old_paused:
            # The follower was paused: it may be missing the latest commit index.
            self.maybe_send_append(m.from_, pr, True)
        # Flow control may now allow several in-flight messages (e.g. after moving from probe
        # to replicate): send as many as possible, without empty ones for the commit index.
        while self.maybe_send_append(m.from_, pr, False):
            pass
        if m.from_ == self.lead_transferee and pr.matched == self.raft_log.last_index():
            self.logger.debug("sent MsgTimeoutNow to %d after received MsgAppResp", m.from_)
            self.send_timeout_now(m.from_)

    def handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.update_committed(m.commit)
        pr.recent_active = True
        pr.resume()
        # Free one slot for the full inflights window to allow progress.
        if pr.state == ProgressState.Replicate and pr.ins.full():
            pr.ins.free_first_one()
        # A lagging follower (or one that asked for a snapshot) gets an append: the answers to
        # the timer's heartbeats find appends that were lost. Not an answer to a ReadIndex
        # round's heartbeat while the follower was sent every entry already (optimistic
        # replication): the appends in flight will be answered, and a lost one is found by
        # the timer's next heartbeat; under reads and writes alike, that was one empty append
        # (and its answer) per follower per read round.
        last = self.raft_log.last_index()
        if pr.pending_request_snapshot != INVALID_INDEX or (
            pr.matched < last
            and not (
                m.context
                and m.context != self._beat_ctx
                and pr.state == ProgressState.Replicate
                and pr.next_idx > last
            )
        ):
            self.maybe_send_append(m.from_, pr, True)
        if self.read_only.option != ReadOnlyOption.Safe or not m.context:
            return
        acks = self.read_only.recv_ack(m.from_, m.context)
        if acks is None or not self.prs.has_quorum(acks):
            return
        for rs in self.read_only.advance(m.context):
            resp = self.handle_ready_read_index(rs.req, rs.index)
            if resp is not None:
                self.send(resp)

    def handle_snapshot_status(self, m: Message, pr: Progress) -> None:
        if pr.state != ProgressState.Snapshot:
            return
        if m.reject:
            pr.snapshot_failure()
            pr.become_probe()
            self.logger.debug("snapshot to %d failed, resumed probing", m.from_)
        else:
            pr.become_probe()
            self.logger.debug("snapshot to %d succeeded, resumed probing", m.from_)
        # After a success, wait for the MsgAppendResponse before the next append; after a
        # failure, wait for a heartbeat interval before trying again.
        pr.pause()
        pr.pending_request_snapshot = INVALID_INDEX

    def handle_unreachable(self, m: Message, pr: Progress) -> None:
        # During optimistic replication, if the remote becomes unreachable, there is a huge
        # probability that a MsgAppend was lost.
        if pr.state == ProgressState.Replicate:
            pr.become_probe()
        self.logger.debug("failed to send message to %d because it is unreachable", m.from_)

    def handle_transfer_leader(self, m: Message, pr: Progress) -> None:
        """Leader transfer (thesis §3.10): bring the target up to date, then MsgTimeoutNow."""
        lead_transferee = m.from_
        if lead_transferee in self.prs.conf.learners:
            self.logger.debug("ignored transferring leadership to learner %d", lead_transferee)
            return
        last = self.lead_transferee
        if last is not None:
            if last == lead_transferee:
                self.logger.debug(
                    "transfer leadership to %d is in progress, ignores request to same node", last
                )
                return
            self.abort_leader_transfer()
            self.logger.debug("abort previous transferring leadership to %d", last)
        if lead_transferee == self.id:
            self.logger.debug("already leader; ignored transferring leadership to self")
            return
        self.logger.debug("starts to transfer leadership to %d", lead_transferee)
        # The transfer should finish within one election timeout.
        self.election_elapsed = 0
        self.lead_transferee = lead_transferee
        if pr.matched == self.raft_log.last_index():
            self.send_timeout_now(lead_transferee)
            self.logger.debug(
                "sends MsgTimeoutNow to %d immediately as it already has up-to-date log",
                lead_transferee,
            )
        else:
            self.maybe_send_append(lead_transferee, pr, True)

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = None

    def step_candidate(self, m: Message) -> None:
        mt = m.msg_type
        if mt == _MsgPropose:
            self.logger.debug("no leader at term %d; dropping proposal", self.term)
            raise ProposalDropped("raft: proposal dropped: no leader")
        if mt == _MsgAppend:
            assert self.term == m.term
            self.become_follower(m.term, m.from_)
            self.handle_append_entries(m)
        elif mt == _MsgHeartbeat:
            assert self.term == m.term
            self.become_follower(m.term, m.from_)
            self.handle_heartbeat(m)
        elif mt == _MsgSnapshot:
            assert self.term == m.term
            self.become_follower(m.term, m.from_)
            self.handle_snapshot(m)
        elif mt == _MsgRequestPreVoteResponse or mt == _MsgRequestVoteResponse:
            # Only handle vote responses corresponding to our candidacy (while Candidate, we
            # may get stale MsgPreVoteResp messages in this term from our pre-candidate state).
            if (self.state == StateRole.PreCandidate and mt != _MsgRequestPreVoteResponse) or (
                self.state == StateRole.Candidate and mt != _MsgRequestVoteResponse
            ):
                return
            self.poll(m.from_, mt, not m.reject)
            self.maybe_commit_by_vote(m)
        elif mt == _MsgTimeoutNow:
            self.logger.debug("ignored MsgTimeoutNow from %d", m.from_)

    def step_follower(self, m: Message) -> None:
        mt = m.msg_type
        if mt == _MsgPropose:
            if self.leader_id == INVALID_ID:
                self.logger.debug("no leader at term %d; dropping proposal", self.term)
                raise ProposalDropped("raft: proposal dropped: no leader")
            m.to = self.leader_id
            self.send(m)
        elif mt == _MsgAppend:
            self.election_elapsed = 0
            self.leader_id = m.from_
            self.handle_append_entries(m)
        elif mt == _MsgHeartbeat:
            self.election_elapsed = 0
            self.leader_id = m.from_
            self.handle_heartbeat(m)
        elif mt == _MsgSnapshot:
            self.election_elapsed = 0
            self.leader_id = m.from_
            self.handle_snapshot(m)
        elif mt == _MsgTransferLeader:
            if self.leader_id == INVALID_ID:
                self.logger.debug("no leader at term %d; dropping leader transfer msg", self.term)
                return
            m.to = self.leader_id
            self.send(m)
        elif mt == _MsgTimeoutNow:
            if self.promotable:
                self.logger.debug(
                    "received MsgTimeoutNow from %d and starts an election to get leadership",
                    m.from_,
                )
                # Leadership transfers never use pre-vote even if self.pre_vote is true; we
                # know we are not recovering from a partition so there is no need for the
                # extra round trip.
                self.hup(True)
            else:
                self.logger.debug(
                    "received MsgTimeoutNow from %d but is not promotable", m.from_
                )
        elif mt == _MsgReadIndex:
            if self.leader_id == INVALID_ID:
                self.logger.debug("no leader at term %d; dropping index reading msg", self.term)
                return
            m.to = self.leader_id
            self.send(m)
        elif mt == _MsgReadIndexResp:
            if len(m.entries) != 1:
                self.logger.error(
                    "invalid format of MsgReadIndexResp from %d (%d entries)",
                    m.from_,
                    len(m.entries),
                )
                return
            self.read_states.append(ReadState(m.index, m.entries[0].data))
            # The leader answers reads only after committing an entry of its term, so the
            # entry at its commit index has the leader's term: commit it here too.
            self.raft_log.maybe_commit(m.index, m.term)

    def handle_append_entries(self, m: Message) -> None:
        """The follower side of AppendEntries (paper §5.3)."""
        if self.pending_request_snapshot != INVALID_INDEX:
            self.send_request_snapshot()
            return
        committed = self.raft_log.committed
        if m.index < committed:
            self.logger.debug("got message with lower index than committed")
            self.send(
                Message(
                    to=m.from_,
                    msg_type=_MsgAppendResponse,
                    index=committed,
                    commit=committed,
                )
            )
            return
        to_send = Message(to=m.from_, msg_type=_MsgAppendResponse)
        res = self.raft_log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if res is not None:
            to_send.index = res[1]
        else:
            # Fast log rejection: hint the largest index at or below the probe whose term is
            # <= the leader's term there, so the leader skips whole terms.
            hint_index = min(m.index, self.raft_log.last_index())
            hint_index, hint_term = self.raft_log.find_conflict_by_term(hint_index, m.log_term)
            assert hint_term is not None, f"term({hint_index}) must be valid"
            self.logger.debug(
                "rejected msgApp [logterm: %d, index: %d] from %d (hint %d, term %d)",
                m.log_term,
                m.index,
                m.from_,
                hint_index,
                hint_term,
            )
            to_send.index = m.index
            to_send.reject = True
            to_send.reject_hint = hint_index
            to_send.log_term = hint_term
        to_send.commit = self.raft_log.committed
        self.send(to_send)

    def handle_heartbeat(self, m: Message) -> None:
        self.raft_log.commit_to(m.commit)
        if self.pending_request_snapshot != INVALID_INDEX:
            self.send_request_snapshot()
            return
        to_send = Message(
            to=m.from_,
            msg_type=_MsgHeartbeatResponse,
            commit=self.raft_log.committed,
        )
        if m.context:
            to_send.context = m.context
        self.send(to_send)

    def handle_snapshot(self, m: Message) -> None:
        """The follower side of InstallSnapshot (paper §7)."""
        sindex, sterm = m.snapshot.metadata.index, m.snapshot.metadata.term
        snap = Snapshot()
        snap.CopyFrom(m.snapshot)
        if self.restore(snap):
            self.logger.debug(
                "[commit: %d] restored snapshot [index: %d, term: %d]",
                self.raft_log.committed,
                sindex,
                sterm,
            )
            index = self.raft_log.last_index()
        else:
            self.logger.debug(
                "[commit: %d] ignored snapshot [index: %d, term: %d]",
                self.raft_log.committed,
                sindex,
                sterm,
            )
            index = self.raft_log.committed
        self.send(Message(to=m.from_, msg_type=_MsgAppendResponse, index=index))

    def restore(self, snap: Snapshot) -> bool:
        """Recover the state machine from a snapshot: its log, commit index and
        configuration. Returns False when the snapshot is ignored."""
        meta = snap.metadata
        if meta.index < self.raft_log.committed:
            return False
        if self.state != StateRole.Follower:
            # Defense in depth: a non-follower must never restore a snapshot.
            self.logger.warning("non-follower attempted to restore snapshot (%s)", self.state.name)
            self.become_follower(self.term + 1, INVALID_ID)
            return False
        # More defense in depth: throw away a snapshot that leaves this node out of the
        # configuration (learners_next is a subset of voters_outgoing + voters).
        cs = meta.conf_state
        if (
            self.id not in cs.voters
            and self.id not in cs.learners
            and self.id not in cs.voters_outgoing
        ):
            self.logger.warning(
                "attempted to restore snapshot but it is not in the ConfState %s", cs
            )
            return False
        pending = self.pending_request_snapshot
        if pending != INVALID_INDEX and meta.index < pending:
            # Older than the snapshot this node asked for (sent before the request): restoring
            # it would drop entries already acknowledged to the leader, which counts them as
            # matched and may commit them on that basis (simulator seed 1413).
            self.logger.debug(
                "ignored snapshot [index: %d] older than requested %d", meta.index, pending
            )
            return False
        if self.pending_request_snapshot == INVALID_INDEX and self.raft_log.match_term(
            meta.index, meta.term
        ):
            # The log already has the snapshot's last entry: just fast-forward the commit.
            self.logger.debug(
                "fast-forwarded commit to snapshot [index: %d, term: %d]", meta.index, meta.term
            )
            self.raft_log.commit_to(meta.index)
            return False

        self.raft_log.restore(snap)
        cs = snap.metadata.conf_state
        group_commit = self.prs.group_commit()
        self.prs = ProgressTracker(self.max_inflight)
        self.prs.enable_group_commit(group_commit)
        restore(self.prs, self.raft_log.last_index(), cs)
        new_cs = self.post_conf_change()
        assert _conf_state_eq(cs, new_cs), f"invalid restore: {cs} != {new_cs}"
        pr = self.prs.progress[self.id]
        pr.maybe_update(pr.next_idx - 1)
        self.pending_request_snapshot = INVALID_INDEX
        self.logger.debug(
            "restored snapshot [index: %d, term: %d]", meta.index, meta.term
        )
        return True

    # -- snapshots requested by followers ----------------------------------------------------

    def request_snapshot(self) -> None:
        """Ask the leader for a snapshot at least as recent as our last index."""
        if self.state == StateRole.Leader:
            self.logger.debug("can not request snapshot on leader; dropping request snapshot")
        elif self.leader_id == INVALID_ID:
            self.logger.debug("drop request snapshot because of no leader")
        elif self.snap() is not None:
            self.logger.debug("there is a pending snapshot; dropping request snapshot")
        elif self.pending_request_snapshot != INVALID_INDEX:
            self.logger.debug("there is a pending snapshot request; dropping request snapshot")
        else:
            request_index = self.raft_log.last_index()
            request_index_term = self.raft_log.term(request_index)
            if self.term == request_index_term:
                self.pending_request_snapshot = request_index
                self.send_request_snapshot()
                return
            self.logger.debug(
                "mismatched term, request snapshot is dropped (term %d, last term %d)",
                self.term,
                request_index_term,
            )
        raise RequestSnapshotDropped()

    def send_request_snapshot(self) -> None:
        self.send(
            Message(
                to=self.leader_id,
                msg_type=_MsgAppendResponse,
                index=self.raft_log.committed,
                reject=True,
                reject_hint=self.raft_log.last_index(),
                request_snapshot=self.pending_request_snapshot,
            )
        )

    # -- membership -----------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChangeV2) -> ConfState:
        """Apply a committed conf change (changes take effect when applied)."""
        changer = Changer(self.prs)
        if leave_joint(cc):
            cfg, changes = changer.leave_joint()
        else:
            auto_leave = enter_joint(cc)
            if auto_leave is not None:
                cfg, changes = changer.enter_joint(auto_leave, cc.changes)
            else:
                cfg, changes = changer.simple(cc.changes)
        self.prs.apply_conf(cfg, changes, self.raft_log.last_index())
        return self.post_conf_change()

    def post_conf_change(self) -> ConfState:
        """Update derived state after the configuration changed."""
        self.logger.debug("switched to configuration %s", self.prs.conf)
        cs = self.prs.conf.to_conf_state()
        is_voter = self.prs.conf.voters.contains(self.id)
        self.promotable = is_voter
        if not is_voter and self.state == StateRole.Leader:
            # This node is leader and was removed or demoted. It keeps leading (raft-rs
            # semantics) but drops proposals; the application should transfer leadership.
            return cs
        # The remaining steps only make sense if this node is the leader and there are other
        # nodes.
        if self.state != StateRole.Leader or not cs.voters:
            return cs
        if self.maybe_commit():
            # The configuration change means more entries are committed now: tell everyone.
            self.bcast_append()
        else:
            # Otherwise, still probe the newly added replicas; there's no reason to let them
            # wait out a heartbeat interval (or the next incoming proposal).
            self_id = self.id
            for id, pr in self.prs.progress.items():
                if id != self_id:
                    self.maybe_send_append(id, pr, False)
        # The quorum size may have been reduced (but not to zero), so see if any pending read
        # only requests were blocked on the quorum.
        ctx = self.read_only.last_pending_request_ctx()
        if ctx is not None:
            acks = self.read_only.recv_ack(self.id, ctx)
            if acks is not None and self.prs.has_quorum(acks):
                for rs in self.read_only.advance(ctx):
                    resp = self.handle_ready_read_index(rs.req, rs.index)
                    if resp is not None:
                        self.send(resp)
        if self.lead_transferee is not None and not self.prs.conf.voters.contains(
            self.lead_transferee
        ):
            self.abort_leader_transfer()
        return cs

    def load_state(self, hs: HardState) -> None:
        """Restore the persisted hard state."""
        assert self.raft_log.committed <= hs.commit <= self.raft_log.last_index(), (
            f"{self.id} state.commit {hs.commit} is out of range "
            f"[{self.raft_log.committed}, {self.raft_log.last_index()}]"
        )
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote


_LEADER_RESPONSE_MSGS = frozenset(
    {
        _MsgAppendResponse,
        _MsgHeartbeatResponse,
        _MsgSnapStatus,
        _MsgUnreachable,
        _MsgTransferLeader,
    }
)


def _conf_state_eq(a: ConfState, b: ConfState) -> bool:
    """ConfStates are equal when their sets are (order does not matter)."""
    return (
        set(a.voters) == set(b.voters)
        and set(a.learners) == set(b.learners)
        and set(a.voters_outgoing) == set(b.voters_outgoing)
        and set(a.learners_next) == set(b.learners_next)
        and a.auto_leave == b.auto_leave
    )
