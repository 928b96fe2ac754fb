"""A seeded, deterministic randomized safety simulator of a raft group (etcd `rafttest`,
Jepsen-style fault schedules, on logical time).

`Simulator(seed)` draws a cluster (3–7 server ids, 1–7 initial voters, maybe a learner) and a
configuration (check_quorum, pre_vote, flow-control limits...) from one `random.Random(seed)`,
then takes random steps, each one action:

- time: `tick` (every live node) and `tick1` (one node: clocks drift);
- network: a queue of messages in flight, delivered oldest-first or picked at random
  (reordering), dropped (with `report_unreachable`, and `report_snapshot(Failure)` for a
  snapshot), duplicated; partitions (random splits, one-way cuts, isolation) and heal.
  Delivering a MsgSnapshot reports `Finish` to its sender;
- nodes: process a Ready (`ready`, or `pump` for all), make pending write rounds durable
  (`persist`: `on_persist_ready` lags the writes), crash (losing what is not durable) and
  restart, compact the log below the applied index (lagging nodes then need MsgSnapshot),
  resume asynchronous storage reads (`fetch` -> `on_entries_fetched`), `request_snapshot`;
- clients: proposals with unique payloads, ReadIndex reads, leader transfers, elections
  (`campaign`), membership changes: ConfChange v1 and ConfChangeV2 with one or several
  changes (Auto / Implicit / Explicit transitions, explicit leaves), over a fixed pool of ids,
  with learners, promotions and demotions.

See `sim_node` for the storage and crash model and `sim_checks` for what is checked after
every step. Reads use `ReadOnlyOption.Safe` only: LeaseBased reads depend on bounded clock
drift, which `tick1` deliberately violates.

A failure raises `SimulationFailure` (an AssertionError) naming the seed, the configuration,
the shortest failing prefix of the trace and its last actions. Since everything is checked
after every step, the first failing step *is* the shortest prefix: it is confirmed by
re-running the seed truncated to that many steps (it fails) and one fewer (it passes).

    python -m multiraft.testing.simulator --seeds 10000 --start 0 [--steps N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from multiraft.raft import (
    ConfChange,
    ConfChangeError,
    ConfChangeV2,
    Config,
    ConfState,
    Entry,
    EntryType,
    Error,
    HardState,
    Message,
    MessageType,
    RaftLog,
    RawNode,
    Snapshot,
    SnapshotStatus,
    StateRole,
)

from .sim_checks import GENESIS_DIGEST, AppliedRecord, SafetyChecker, digest_step
from .sim_node import SimNode, SimStorage, encode_sm
from .sim_options import SimOptions, SimStats, cc_desc, draw_conf_change, hs_desc, msg_desc

__all__ = [
    "DEFAULT_STEPS",
    "SimOptions",
    "SimStats",
    "SimulationFailure",
    "Simulator",
    "check_seed",
    "run_seed",
    "main",
]

# Steps per seed when not told otherwise (MULTIRAFT_SIM_STEPS overrides it in the tests).
DEFAULT_STEPS = 700
# The entry type recorded for the genesis snapshot's position (index 1).
GENESIS_KIND = -1
# How many actions a failure report shows.
TRACE_TAIL = 30

_MT = MessageType
_MsgSnapshot = MessageType.MsgSnapshot


def _quiet_logger() -> logging.Logger:
    """A logger outside the logging tree that discards everything (the core logs a lot)."""
    log = logging.Logger("multiraft.testing.simulator.raft")
    log.setLevel(logging.CRITICAL + 1)
    return log


class SimulationFailure(AssertionError):
    """A seed violated a safety property (or made the core fail)."""

    def __init__(self, seed: int, step: int, trace: list[str], options: SimOptions,
                 cause: BaseException, confirmed: str = "") -> None:
        self.seed = seed
        self.step = step
        self.trace = trace
        self.options = options
        self.cause = cause
        tail = trace[-TRACE_TAIL:]
        lines = [
            f"simulator seed {seed} failed at step {step}: {type(cause).__name__}: {cause}",
            f"  shortest failing prefix: {step} steps {confirmed}".rstrip(),
            f"  reproduce: python -m multiraft.testing.simulator --seeds 1 --start {seed} "
            f"--steps {step}",
            f"  options: {options.describe()}",
            f"  last {len(tail)} actions:",
        ]
        lines += [f"    {a}" for a in tail]
        super().__init__("\n".join(lines))


@dataclass(slots=True)
class _InFlight:
    # The node that emitted the message (forwarded messages keep the original `from_`).
    sender: int
    msg: Message


@dataclass(slots=True)
class Simulator:
    """A seeded random run over a cluster of `SimNode`s."""

    seed: int
    # Bootstrap as a store does (`Raft.lead_at_bootstrap`): every voter's first durable state
    # is term 2 with a vote for the first voter, which leads term 2 at once, unelected.
    bootstrap_leader: bool = False
    rng: random.Random = field(init=False)
    options: SimOptions = field(init=False)
    nodes: dict[int, SimNode] = field(init=False)
    checker: SafetyChecker = field(init=False)
    stats: SimStats = field(init=False)
    net: list[_InFlight] = field(init=False)
    # Directed links that drop everything.
    blocked: set[tuple[int, int]] = field(init=False)
    trace: list[str] = field(init=False)
    logger: logging.Logger = field(init=False)
    _next_payload: int = 0
    _next_read: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.options = SimOptions.draw(self.rng)
        self.checker = SafetyChecker()
        self.stats = SimStats()
        self.net = []
        self.blocked = set()
        self.trace = []
        self.logger = _quiet_logger()
        opts = self.options
        self.nodes = {
            id: SimNode(id, self.rng, opts.snap_unavailable, opts.async_fetch) for id in opts.pool
        }
        genesis = self._genesis()
        genesis_rec = AppliedRecord(1, GENESIS_KIND, b"")
        genesis_conf = conf_key(genesis.metadata.conf_state)
        designated = opts.voters[0]
        for id in opts.voters + opts.learners:
            self.nodes[id].bootstrap(genesis)
            if self.bootstrap_leader and id in opts.voters:
                self.nodes[id].disk.set_hardstate(HardState(term=2, vote=designated, commit=1))
            self.checker.apply(id, 1, genesis_rec, genesis_conf)
        for node in self.nodes.values():
            self._start(node)
        if self.bootstrap_leader:
            led = self.nodes[designated].node().lead_at_bootstrap()
            assert led, "the designated voter did not take the lead"
            self._log(f"bootstrap: {designated} leads term 2")

    def _genesis(self) -> Snapshot:
        """Index 1, term 1: the group's initial configuration, as a snapshot (new members
        then always catch up through a snapshot, never by replaying the log from 1)."""
        digest = digest_step(GENESIS_DIGEST, 1, AppliedRecord(1, GENESIS_KIND, b""))
        snap = Snapshot(data=encode_sm(1, digest))
        snap.metadata.index = 1
        snap.metadata.term = 1
        snap.metadata.conf_state.CopyFrom(
            ConfState(voters=self.options.voters, learners=self.options.learners)
        )
        return snap

    def _config(self, id: int, applied: int) -> Config:
        o = self.options
        return Config(
            id=id,
            election_tick=o.election_tick,
            heartbeat_tick=o.heartbeat_tick,
            applied=applied,
            max_size_per_msg=o.max_size_per_msg,
            max_inflight_msgs=o.max_inflight_msgs,
            check_quorum=o.check_quorum,
            pre_vote=o.pre_vote,
            batch_append=o.batch_append,
            max_uncommitted_size=o.max_uncommitted_size,
            max_committed_size_per_ready=o.max_committed_size_per_ready,
            skip_bcast_commit=o.skip_bcast_commit,
            priority=o.priority.get(id, 0),
        )

    def _start(self, node: SimNode) -> None:
        """(Re)start a node from its durable state: Config.applied is the index of its
        durable state-machine snapshot, and committed entries after it are applied again."""
        node.reload()
        node.raw = RawNode(
            self._config(node.id, node.sm_index), node.mem, logger=self.logger, rng=self.rng
        )
        self.checker.node_state(node.id, node.sm_index, node.sm_digest,
                                conf_key(node.mem.core.raft_state.conf_state))
        # The durable log is held by this life of the node too (see SafetyChecker.log_entry).
        core = node.mem.core
        prev = core.snapshot_metadata.term
        for e in core.entries:
            self.checker.log_entry(node.id, e.index, e.term, e.entry_type, e.data, prev,
                                   node.incarnation)
            prev = e.term

    # -- running ----------------------------------------------------------------------------

    def run(self, steps: int) -> SimStats:
        """Take `steps` steps, checking safety after each; raises `SimulationFailure`."""
        for _ in range(steps):
            self.step()
        return self.stats

    def step(self) -> None:
        n = self.stats.steps + 1
        self.stats.steps = n
        try:
            self._random_action()
            self._check()
        except Exception as e:  # the core's assertions too: any exception fails the seed
            raise SimulationFailure(self.seed, n, self.trace, self.options, e) from e

    def _log(self, what: str) -> None:
        self.trace.append(f"{self.stats.steps}: {what}")

    def _up(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.raw is not None]

    def _leader(self) -> SimNode | None:
        """The live leader with the highest term, if any."""
        best: SimNode | None = None
        for n in self._up():
            r = n.node().raft
            if r.state == StateRole.Leader and (best is None or r.term > best.node().raft.term):
                best = n
        return best

    def _random_action(self) -> None:
        up = self._up()
        has_ready = [n for n in up if n.node().has_ready()]
        pending = [n for n in up if n.pending]
        down = [n for n in self.nodes.values() if n.raw is None]
        fetching = [n for n in up if n.fetches]
        unacked = [n for n in up if n.durable_number > n.acked_number]
        net = bool(self.net)
        c = self.options.chaos
        actions: list[tuple[float, Callable[[], None]]] = [
            (30.0 if net else 0.0, self._act_deliver),
            (3.0 if net else 0.0, self._act_deliver_all),
            (3.0 * c if net else 0.0, self._act_drop),
            (2.0 * c if net else 0.0, self._act_dup),
            (20.0 if has_ready else 0.0, lambda: self._act_ready(self.rng.choice(has_ready))),
            (6.0 if has_ready else 0.0, self._act_pump),
            (12.0 if pending else 0.0, lambda: self._act_persist(self.rng.choice(pending))),
            (4.0 if unacked else 0.0, lambda: self._act_ack(self.rng.choice(unacked))),
            (5.0, self._act_tick),
            (2.0 if up else 0.0, lambda: self._act_tick1(self.rng.choice(up))),
            (8.0 if up else 0.0, lambda: self._act_propose(self._client_target(up))),
            (3.0 if up else 0.0, lambda: self._act_read(self._client_target(up))),
            (self.options.conf_rate if up else 0.0, self._act_conf_change),
            (1.0 * c if up else 0.0, self._act_transfer),
            (0.5 * c if up else 0.0, lambda: self._act_campaign(self.rng.choice(up))),
            (2.0 if up else 0.0, lambda: self._act_compact(self.rng.choice(up))),
            (0.6 * c if up else 0.0, lambda: self._act_crash(self._crash_target(up, pending))),
            (4.0 if down else 0.0, lambda: self._act_restart(self.rng.choice(down))),
            (0.7 * c if not self.blocked else 0.0, self._act_partition),
            (2.0 if self.blocked else 0.0, self._act_heal),
            (4.0 if fetching else 0.0, lambda: self._act_fetch(self.rng.choice(fetching))),
            (0.3 if up else 0.0, lambda: self._act_request_snapshot(self.rng.choice(up))),
        ]
        weights = [w for w, _ in actions]
        (_, act), = self.rng.choices(actions, weights)
        act()

    def _crash_target(self, up: list[SimNode], pending: list[SimNode]) -> SimNode:
        """Mostly a node with writes in flight: losing them is what a crash tests."""
        if pending and self.rng.random() < 0.7:
            return self.rng.choice(pending)
        return self.rng.choice(up)

    def _client_target(self, up: list[SimNode]) -> SimNode:
        """Where a client sends a request: mostly the leader, else any live node."""
        leader = self._leader()
        if leader is not None and self.rng.random() < 0.6:
            return leader
        return self.rng.choice(up)

    # -- network ----------------------------------------------------------------------------

    def _send(self, sender: int, msgs: list[Message]) -> None:
        for m in msgs:
            self.net.append(_InFlight(sender, m))

    def _take(self) -> _InFlight:
        """The oldest message in flight, or (reordering) a random one."""
        net = self.net
        i = 0 if self.rng.random() < 0.6 else self.rng.randrange(len(net))
        return net.pop(i)

    def _act_deliver(self) -> None:
        self._deliver(self._take(), "deliver")

    def _act_deliver_all(self) -> None:
        batch, self.net = self.net, []
        self.rng.shuffle(batch)
        self._log(f"deliver-all ({len(batch)} messages, shuffled)")
        for f in batch:
            self._deliver(f, "  deliver")

    def _act_drop(self) -> None:
        self._lose(self._take(), "drop")

    def _act_dup(self) -> None:
        f = self.rng.choice(self.net)
        copy = Message()
        copy.CopyFrom(f.msg)
        self._deliver(_InFlight(f.sender, copy), "duplicate")

    def _deliver(self, f: _InFlight, verb: str) -> None:
        m = f.msg
        dst = self.nodes.get(m.to)
        if dst is None or dst.raw is None:
            self._lose(f, f"{verb} (lost: destination down)")
            return
        if (f.sender, m.to) in self.blocked:
            self._lose(f, f"{verb} (lost: partition)")
            return
        self._log(f"{verb} {msg_desc(f.sender, m)}")
        self.stats.delivered += 1
        is_snap = m.msg_type == _MsgSnapshot
        if is_snap:
            self.stats.snapshots_sent += 1
        try:
            dst.raw.step(m)
        except Error as e:
            self._log(f"  step error: {type(e).__name__}")
        if is_snap:
            src = self.nodes.get(f.sender)
            if src is not None and src.raw is not None:
                src.raw.report_snapshot(m.to, SnapshotStatus.Finish)

    def _lose(self, f: _InFlight, verb: str) -> None:
        m = f.msg
        self._log(f"{verb} {msg_desc(f.sender, m)}")
        self.stats.dropped += 1
        src = self.nodes.get(f.sender)
        if src is None or src.raw is None:
            return
        if m.msg_type == _MsgSnapshot:
            src.raw.report_snapshot(m.to, SnapshotStatus.Failure)
        elif self.rng.random() < 0.3:
            src.raw.report_unreachable(m.to)

    def _act_partition(self) -> None:
        ids = list(self.options.pool)
        kind = self.rng.random()
        if kind < 0.4:
            # Isolate one node.
            victim = self.rng.choice(ids)
            side = {victim}
        else:
            self.rng.shuffle(ids)
            side = set(ids[: self.rng.randint(1, len(ids) - 1)])
        one_way = self.rng.random() < 0.2
        for a in ids:
            for b in ids:
                if (a in side) != (b in side) and (not one_way or a in side):
                    self.blocked.add((a, b))
        self._log(f"partition {sorted(side)} | {sorted(set(ids) - side)}"
                  + (" (one way: the first side cannot send)" if one_way else ""))

    def _act_heal(self) -> None:
        self.blocked.clear()
        self._log("heal")

    # -- time -------------------------------------------------------------------------------

    def _act_tick(self) -> None:
        self._log("tick")
        for n in self._up():
            n.node().tick()

    def _act_tick1(self, n: SimNode) -> None:
        self._log(f"tick {n.id}")
        n.node().tick()

    # -- ready / persistence ----------------------------------------------------------------

    def _act_pump(self) -> None:
        self._log("pump (a Ready from every node)")
        for n in self._up():
            if n.node().has_ready():
                self._act_ready(n)

    def _act_ready(self, n: SimNode) -> None:
        raw = n.node()
        rd = raw.ready()
        sync = self.rng.random() < self.options.sync_ready
        self._log(f"ready {n.id} #{rd.number} {'sync' if sync else 'async'}: "
                  f"entries={len(rd.entries)} committed={len(rd.committed_entries)} "
                  f"snap={rd.snapshot.metadata.index} hs={hs_desc(rd)} "
                  f"msgs={len(rd.messages)}+{len(rd.persisted_messages)}")
        snap = rd.snapshot if rd.snapshot.metadata.index else None
        if snap is not None:
            n.sm_restore(snap)
            self.checker.node_state(n.id, n.sm_index, n.sm_digest,
                                    conf_key(snap.metadata.conf_state))
            self.stats.snapshots_installed += 1
        rnd = n.write_ready(rd.number, snap, rd.take_entries(), rd.hs,
                            rd.take_persisted_messages())
        self._send(n.id, rd.take_messages())
        for rs in rd.take_read_states():
            self.checker.read_answered(n.id, rs.request_ctx, rs.index)
            self.stats.reads_answered += 1
        self._apply(n, rd.take_committed_entries())
        if not sync:
            n.pending.append(rnd)
            raw.advance_append_async(rd)
            raw.advance_apply()
            return
        # Synchronous: everything queued before it becomes durable first, then this Ready.
        self._make_durable(n, len(n.pending), ack=False)
        n.make_durable(rnd)
        self._send(n.id, rnd.messages)
        light = raw.advance(rd)
        n.durable_number = n.acked_number = rd.number
        if light.commit_index is not None:
            n.mem.core.mut_hard_state().commit = light.commit_index
            n.disk.mut_hard_state().commit = light.commit_index
        self._send(n.id, light.take_messages())
        self._apply(n, light.take_committed_entries())
        raw.advance_apply()

    def _act_persist(self, n: SimNode) -> None:
        k = self.rng.randint(1, len(n.pending))
        ack = self.rng.random() < self.options.ack_now
        self._log(f"persist {n.id}: {k} of {len(n.pending)} write rounds durable"
                  + ("" if ack else " (on_persist_ready later)"))
        self._make_durable(n, k, ack)

    def _act_ack(self, n: SimNode) -> None:
        self._log(f"on_persist_ready {n.id} #{n.durable_number}")
        n.acked_number = n.durable_number
        n.node().on_persist_ready(n.durable_number)

    def _make_durable(self, n: SimNode, k: int, ack: bool) -> None:
        """Make the `k` oldest write rounds durable and release their messages; if `ack`,
        report the newest durable Ready with `on_persist_ready` (else a later `ack` does)."""
        for _ in range(k):
            rnd = n.pending.popleft()
            n.make_durable(rnd)
            self._send(n.id, rnd.messages)
            n.durable_number = max(n.durable_number, rnd.number)
        if ack and n.durable_number > n.acked_number:
            self._act_ack(n)

    def _apply(self, n: SimNode, ents: list[Entry]) -> None:
        """Apply committed entries to the state machine; a membership change goes to the
        RawNode first and to `mem`'s ConfState, and only then does the state machine move
        past it: `apply_conf_change` may make the leader send a snapshot, which must show
        the configuration of the index it is taken at."""
        raw = n.node()
        for e in ents:
            rec = AppliedRecord(e.term, e.entry_type, e.data)
            self.stats.applied = max(self.stats.applied, e.index)
            if e.entry_type == EntryType.EntryNormal:
                n.sm_apply(e.index, rec)
                self.checker.apply(n.id, e.index, rec)
                continue
            cc: ConfChange | ConfChangeV2
            if e.entry_type == EntryType.EntryConfChange:
                cc = ConfChange()
            else:
                cc = ConfChangeV2()
            cc.ParseFromString(e.data)
            try:
                cs = raw.apply_conf_change(cc)
            except ConfChangeError as err:
                # Refused the same way on every node: the configuration does not change.
                self._log(f"  node {n.id} refused conf change {cc_desc(cc)} at {e.index}: {err}")
                self.stats.conf_changes_refused += 1
            else:
                n.mem.core.set_conf_state(cs)
                self.stats.conf_changes_applied += 1
                if cs.voters_outgoing:
                    self.stats.joint_entered += 1
            n.sm_apply(e.index, rec)
            self.checker.apply(n.id, e.index, rec, conf_key(n.mem.core.raft_state.conf_state))

    def _act_compact(self, n: SimNode) -> None:
        first = n.mem.core.first_index()
        if first >= n.sm_index + 1:
            self._log(f"compact {n.id}: nothing to compact")
            return
        to = self.rng.randint(first + 1, n.sm_index + 1)
        self._log(f"compact {n.id}: log before {to}, snapshot at {n.sm_index}")
        n.pending.append(n.compact(to))
        self.stats.compactions += 1

    def _act_fetch(self, n: SimNode) -> None:
        ctx = n.fetches.pop(0)
        self._log(f"fetch {n.id}: entries ready for {ctx!r}")
        n.node().on_entries_fetched(ctx)

    # -- crashes ----------------------------------------------------------------------------

    def _act_crash(self, n: SimNode) -> None:
        self._log(f"crash {n.id} (losing {len(n.pending)} write rounds)")
        n.crash()
        self.stats.crashes += 1

    def _act_restart(self, n: SimNode) -> None:
        self._start(n)
        hs = n.disk.hard_state()
        self._log(f"restart {n.id}: term {hs.term} vote {hs.vote} commit {hs.commit} "
                  f"applied {n.sm_index} last {n.disk.last_index()}")

    # -- clients ----------------------------------------------------------------------------

    def _act_propose(self, n: SimNode) -> None:
        self._next_payload += 1
        data = b"p%d" % self._next_payload
        self._log(f"propose {data.decode()} at {n.id}")
        self.stats.proposals += 1
        try:
            n.node().propose(b"", data)
        except Error as e:
            self._log(f"  {type(e).__name__}")

    def _act_read(self, n: SimNode) -> None:
        self._next_read += 1
        ctx = b"r%d" % self._next_read
        self._log(f"read-index {ctx.decode()} at {n.id} (applied anywhere: "
                  f"{self.checker.applied_index()})")
        self.checker.read_issued(ctx)
        try:
            n.node().read_index(ctx)
        except Error as e:
            self._log(f"  {type(e).__name__}")

    def _act_transfer(self) -> None:
        leader = self._leader()
        n = leader if leader is not None and self.rng.random() < 0.8 else self.rng.choice(self._up())
        target = self.rng.choice(self.options.pool)
        self._log(f"transfer-leader to {target} at {n.id}")
        self.stats.transfers += 1
        try:
            n.node().transfer_leader(target)
        except Error as e:
            self._log(f"  {type(e).__name__}")

    def _act_campaign(self, n: SimNode) -> None:
        self._log(f"campaign {n.id}")
        n.node().campaign()

    def _act_request_snapshot(self, n: SimNode) -> None:
        self._log(f"request-snapshot {n.id}")
        try:
            n.node().request_snapshot()
        except Error as e:
            self._log(f"  {type(e).__name__}")

    def _act_conf_change(self) -> None:
        leader = self._leader()
        n = leader if leader is not None and self.rng.random() < 0.8 else self.rng.choice(self._up())
        cc = draw_conf_change(self.rng, n.node().raft.prs.conf, self.options.pool)
        if cc is None:
            self._log(f"conf-change at {n.id}: none drawn")
            return
        self._log(f"conf-change {cc_desc(cc)} at {n.id}")
        try:
            n.node().propose_conf_change(b"", cc)
        except Error as e:
            self._log(f"  {type(e).__name__}")

    # -- checks -----------------------------------------------------------------------------

    def _check(self) -> None:
        """After every step: election safety, leader completeness (for a leader seen for
        the first time) and leader append-only for every live leader; log matching for every
        entry not yet handed to storage (storage only ever receives such entries, and a
        restart re-registers what is durable). State machine safety and ReadIndex safety are
        checked as entries are applied and reads answered (`_apply`, `_act_ready`)."""
        checker = self.checker
        for n in self.nodes.values():
            raw = n.raw
            if raw is None:
                continue
            r = raw.raft
            log = r.raft_log
            if r.state == StateRole.Leader:
                if r.term not in checker.leaders:
                    self.stats.leaders += 1
                term_at = _term_at(log)
                checker.leader(r.term, n.id, term_at, log.last_index())
                checker.leader_log(n.id, r.term, n.incarnation, log.last_index(), term_at)
            ents = log.unstable.entries
            if ents:
                prev = log.term(ents[0].index - 1)
                for e in ents:
                    checker.log_entry(n.id, e.index, e.term, e.entry_type, e.data, prev,
                                      n.incarnation)
                    prev = e.term


def conf_key(cs: ConfState) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...],
                                      tuple[int, ...], bool]:
    """A configuration as a comparable value (ConfState lists are unordered sets)."""
    return (
        tuple(sorted(cs.voters)),
        tuple(sorted(cs.learners)),
        tuple(sorted(cs.voters_outgoing)),
        tuple(sorted(cs.learners_next)),
        cs.auto_leave,
    )


def _term_at(log: RaftLog[SimStorage]) -> Callable[[int], int | None]:
    """The term at an index of a node's log (persisted and unstable), None if compacted."""
    first = log.first_index()

    def term_at(i: int) -> int | None:
        return None if i < first - 1 else log.term(i)

    return term_at


def run_seed(seed: int, steps: int = DEFAULT_STEPS, bootstrap_leader: bool = False) -> SimStats:
    """Run one seed; raises `SimulationFailure` (without shrinking) on a violation."""
    return Simulator(seed, bootstrap_leader).run(steps)


def check_seed(seed: int, steps: int = DEFAULT_STEPS, bootstrap_leader: bool = False) -> SimStats:
    """Run one seed; on a violation, raise `SimulationFailure` with the shortest failing
    prefix, confirmed by re-running the seed truncated to it."""
    try:
        return run_seed(seed, steps, bootstrap_leader)
    except SimulationFailure as failure:
        raise _shortest(failure, bootstrap_leader) from failure.cause


def _shortest(failure: SimulationFailure, bootstrap_leader: bool = False) -> SimulationFailure:
    """Re-run the failing seed truncated to the failing step (it must fail the same way) and
    to one step fewer (it must pass): that prefix is then the shortest one."""
    seed, step = failure.seed, failure.step
    try:
        Simulator(seed, bootstrap_leader).run(step)
        same = "NOT reproduced by a re-run: the run is not deterministic"
    except SimulationFailure as again:
        if again.step == step and str(again.cause) == str(failure.cause):
            same = f"{step} steps fail the same way"
        else:
            same = f"a re-run fails differently at step {again.step}: {again.cause}"
    try:
        Simulator(seed, bootstrap_leader).run(step - 1)
        before = f"{step - 1} steps pass"
    except SimulationFailure as earlier:
        before = f"{step - 1} steps fail at step {earlier.step}"
    return SimulationFailure(seed, step, failure.trace, failure.options, failure.cause,
                             f"(re-run: {same}; {before})")


# -- CLI --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m multiraft.testing.simulator",
        description="Run the randomized raft safety simulator over a range of seeds.",
    )
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="steps per seed")
    parser.add_argument("--bootstrap-leader", action="store_true",
                        help="start each seed with the first voter leading term 2 unelected")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    parser.add_argument("--trace", action="store_true",
                        help="print the whole trace of every seed (for one seed)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    total = SimStats()
    failures: list[dict[str, object]] = []
    every = max(1, args.seeds // 20)
    for i, seed in enumerate(range(args.start, args.start + args.seeds), 1):
        sim = Simulator(seed, args.bootstrap_leader)
        try:
            sim.run(args.steps)
        except SimulationFailure as f:
            failure = _shortest(f, args.bootstrap_leader)
            print(failure, file=sys.stderr)
            failures.append({"seed": seed, "step": failure.step,
                             "error": f"{type(f.cause).__name__}: {f.cause}"})
            if args.fail_fast:
                break
        finally:
            total.add(sim.stats)
            if args.trace:
                print("\n".join(sim.trace))
        if i % every == 0 or i == args.seeds:
            elapsed = time.perf_counter() - started
            print(f"[{i}/{args.seeds}] seeds {args.start}..{seed}: {len(failures)} failures, "
                  f"{elapsed:.1f}s ({i / elapsed:.1f} seeds/s)", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    summary = {
        "seeds": args.seeds,
        "start": args.start,
        "steps": args.steps,
        "seconds": round(elapsed, 2),
        "seeds_per_second": round(args.seeds / elapsed, 2) if elapsed else None,
        "failures": failures,
        "totals": total.as_dict(),
        "env": {"python": sys.version.split()[0], "cpus": os.cpu_count()},
    }
    print(json.dumps(summary, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
