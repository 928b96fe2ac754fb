"""The randomized safety simulator (`multiraft.testing.simulator`): many seeds must pass, a
seed must replay identically, and the checker must catch fabricated violations.

Raft paper §5.4 / Figure 3 lists the properties: Election Safety, Log Matching, Leader
Completeness, State Machine Safety; thesis §6.4 gives the ReadIndex rule. Each has a
fabricated history below that breaks it.

MULTIRAFT_SIM_SEEDS=N runs N seeds (default 300) of MULTIRAFT_SIM_STEPS steps each (default
`DEFAULT_STEPS`), in chunks so that a failure names its seed range; the failure message names
the seed itself, the shortest failing prefix and the last actions.
"""

from __future__ import annotations

import os

import pytest

from multiraft.raft import EntryType
from multiraft.testing import simulator as sim_mod
from multiraft.testing.sim_checks import (
    GENESIS_DIGEST,
    AppliedRecord,
    SafetyChecker,
    SafetyViolation,
    digest_step,
)
from multiraft.testing.sim_node import SimNode, WriteRound
from multiraft.testing.simulator import (
    DEFAULT_STEPS,
    SimulationFailure,
    Simulator,
    check_seed,
    main,
)

SEEDS = int(os.environ.get("MULTIRAFT_SIM_SEEDS", "300"))
STEPS = int(os.environ.get("MULTIRAFT_SIM_STEPS", str(DEFAULT_STEPS)))
START = int(os.environ.get("MULTIRAFT_SIM_START", "0"))
CHUNK = 10

_CHUNKS = [(lo, min(lo + CHUNK, START + SEEDS)) for lo in range(START, START + SEEDS, CHUNK)]


@pytest.mark.parametrize("lo, hi", _CHUNKS, ids=[f"seeds-{lo}-{hi - 1}" for lo, hi in _CHUNKS])
def test_seeds_are_safe(lo: int, hi: int) -> None:
    for seed in range(lo, hi):
        check_seed(seed, STEPS)


@pytest.mark.parametrize("seed", [0, 7, 123])
def test_same_seed_same_trace(seed: int) -> None:
    """Logical time and one injected generator: a seed replays action by action."""
    a, b = Simulator(seed), Simulator(seed)
    a.run(400)
    b.run(400)
    assert a.trace == b.trace
    assert a.stats == b.stats
    assert a.checker.records == b.checker.records
    other = Simulator(seed + 1)
    other.run(400)
    assert other.trace != a.trace


def test_runs_exercise_the_features() -> None:
    """Over a handful of seeds the workload reaches the interesting paths (a guard against a
    harness that silently stops doing things)."""
    total = sim_mod.SimStats()
    for seed in range(20):
        s = Simulator(seed)
        s.run(600)
        total.add(s.stats)
    assert total.applied > 200
    assert total.leaders > 20
    assert total.crashes > 10
    assert total.snapshots_installed > 5
    assert total.compactions > 10
    assert total.conf_changes_applied > 20
    assert total.joint_entered > 5
    assert total.reads_answered > 20


# -- the checker catches violations -----------------------------------------------------------


def _rec(term: int, data: bytes) -> AppliedRecord:
    return AppliedRecord(term, EntryType.EntryNormal, data)


def test_two_leaders_in_one_term_are_caught() -> None:
    """Election Safety: at most one leader can be elected in a given term (§5.2). The history
    counts, not only the current state: node 1 may be gone by the time node 2 leads."""
    c = SafetyChecker()
    c.leader(5, 1)
    c.leader(5, 1)  # seen again: fine
    c.leader(6, 2)
    with pytest.raises(SafetyViolation, match="two leaders in term 5"):
        c.leader(5, 2)


def test_diverging_applied_sequences_are_caught() -> None:
    """State Machine Safety: if a server has applied a log entry at a given index, no other
    server will ever apply a different entry for the same index (§5.4.3)."""
    c = SafetyChecker()
    c.apply(1, 1, _rec(1, b"a"))
    c.apply(2, 1, _rec(1, b"a"))
    c.apply(1, 2, _rec(1, b"b"))
    with pytest.raises(SafetyViolation, match="state machine safety"):
        c.apply(2, 2, _rec(2, b"c"))


def test_gaps_in_an_applied_sequence_are_caught() -> None:
    c = SafetyChecker()
    c.apply(1, 1, _rec(1, b"a"))
    with pytest.raises(SafetyViolation, match="applies index 3 after 1"):
        c.apply(1, 3, _rec(1, b"c"))


def test_a_snapshot_that_is_not_a_prefix_is_caught() -> None:
    """A state installed from a snapshot must be the global prefix of its length."""
    c = SafetyChecker()
    c.apply(1, 1, _rec(1, b"a"))
    c.apply(1, 2, _rec(1, b"b"))
    good = digest_step(digest_step(GENESIS_DIGEST, 1, _rec(1, b"a")), 2, _rec(1, b"b"))
    c.node_state(2, 2, good)
    bad = digest_step(digest_step(GENESIS_DIGEST, 1, _rec(1, b"a")), 2, _rec(1, b"x"))
    with pytest.raises(SafetyViolation, match="not the global prefix"):
        c.node_state(3, 2, bad)
    with pytest.raises(SafetyViolation, match="only 2 positions"):
        c.node_state(3, 3, good)


def test_log_matching_violations_are_caught() -> None:
    """Log Matching: if two logs contain an entry with the same index and term, the logs are
    identical in all entries up through the given index (§5.3)."""
    c = SafetyChecker()
    c.log_entry(1, 3, 2, 0, b"x", 2)
    c.log_entry(2, 3, 2, 0, b"x", 2)
    with pytest.raises(SafetyViolation, match="log matching"):
        c.log_entry(3, 3, 2, 0, b"y", 2)  # same (index, term), other entry
    with pytest.raises(SafetyViolation, match="log matching"):
        c.log_entry(3, 3, 2, 0, b"x", 1)  # same entry, different history before it


def test_an_entry_only_a_crashed_life_held_may_be_rewritten() -> None:
    """A node that led a term whose vote never became durable may lead it again after a
    crash: what only its lost life held may be written anew. Anyone else holding the old
    entry makes it a violation."""
    c = SafetyChecker()
    c.log_entry(1, 3, 2, 0, b"x", 2, incarnation=1)
    c.log_entry(1, 3, 2, 0, b"y", 2, incarnation=2)
    c.log_entry(2, 3, 2, 0, b"y", 2, incarnation=1)
    with pytest.raises(SafetyViolation, match="log matching"):
        c.log_entry(1, 3, 2, 0, b"z", 2, incarnation=3)


def test_a_leader_that_rewrites_its_log_is_caught() -> None:
    """Leader Append-Only: a leader never overwrites or deletes entries in its log (§5.3)."""
    c = SafetyChecker()
    c.leader_log(1, 2, 1, 3, {3: 2}.get)
    c.leader_log(1, 2, 1, 5, {3: 2, 5: 2}.get)  # grew: fine
    c.leader_log(1, 3, 1, 4, {4: 3}.get)  # a new term: a new tail
    c.leader_log(1, 3, 2, 2, {2: 3}.get)  # a new life: a new tail
    with pytest.raises(SafetyViolation, match="has term 1 there"):
        c.leader_log(1, 3, 2, 2, {2: 1}.get)
    c.leader_log(2, 4, 1, 6, {6: 4}.get)
    with pytest.raises(SafetyViolation, match="has nothing there"):
        c.leader_log(2, 4, 1, 5, {5: 4}.get)


def test_a_leader_missing_a_committed_entry_is_caught() -> None:
    """Leader Completeness: a committed entry is present in the logs of all leaders of
    higher-numbered terms (§5.4)."""
    c = SafetyChecker()
    c.apply(1, 1, _rec(1, b"a"))
    c.apply(1, 2, _rec(2, b"b"))
    terms = {1: 1, 2: 2}
    c.leader(3, 2, terms.get, 2)
    with pytest.raises(SafetyViolation, match="has term 3 at index 2"):
        c.leader(4, 3, {1: 1, 2: 3}.get, 2)
    with pytest.raises(SafetyViolation, match="has last index 1"):
        c.leader(5, 1, {1: 1}.get, 1)
    # Compacted positions are covered by the leader's snapshot.
    c.leader(6, 1, {2: 2}.get, 2)


def test_diverging_configurations_are_caught() -> None:
    """Every node derives the same configuration from the same applied prefix; a snapshot's
    ConfState is the configuration at its index."""
    c = SafetyChecker()
    c.apply(1, 1, _rec(1, b"genesis"), conf=("1 2 3",))
    c.apply(1, 2, _rec(1, b"cc: add 4"), conf=("1 2 3 4",))
    c.apply(1, 3, _rec(1, b"x"))
    with pytest.raises(SafetyViolation, match="configuration"):
        c.apply(2, 1, _rec(1, b"genesis"), conf=("1 2",))
    digest = c.digest_at(3)
    c.node_state(3, 3, digest, conf=("1 2 3 4",))
    with pytest.raises(SafetyViolation, match="configuration"):
        c.node_state(4, 3, digest, conf=("1 2 3",))
    assert c.conf_at(1) == ("1 2 3",) and c.conf_at(3) == ("1 2 3 4",)


def test_a_stale_read_index_is_caught() -> None:
    """ReadIndex (thesis §6.4): the read index is at least the commit index of any write
    acknowledged before the read was issued."""
    c = SafetyChecker()
    c.apply(1, 1, _rec(1, b"a"))
    c.apply(1, 2, _rec(1, b"b"))
    c.read_issued(b"r1")
    c.read_answered(2, b"r1", 2)
    c.apply(1, 3, _rec(1, b"c"))
    c.read_issued(b"r2")
    with pytest.raises(SafetyViolation, match="read index"):
        c.read_answered(2, b"r2", 2)
    with pytest.raises(SafetyViolation, match="unknown read"):
        c.read_answered(2, b"r9", 5)


# -- the simulator reports failures usefully ---------------------------------------------------


class _FailsAtStep37(Simulator):
    """A simulator whose checker "finds" a violation after step 37."""

    def _check(self) -> None:
        super()._check()
        if self.stats.steps == 37:
            raise SafetyViolation("fabricated violation")


def test_a_failure_names_the_seed_and_the_shortest_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_mod, "Simulator", _FailsAtStep37)
    with pytest.raises(SimulationFailure) as info:
        sim_mod.check_seed(42, 100)
    f = info.value
    assert (f.seed, f.step) == (42, 37)
    text = str(f)
    assert "seed 42 failed at step 37" in text
    assert "37 steps fail the same way; 36 steps pass" in text
    assert "--start 42 --steps 37" in text
    assert "37: " in text.splitlines()[-1]
    assert len([ln for ln in text.splitlines() if ln.startswith("    ")]) <= sim_mod.TRACE_TAIL


def test_a_node_that_forgets_its_vote_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inject a storage bug: the hard state (term, vote) never becomes durable. A restarted
    node may then vote twice in a term; some seed must catch the consequences."""

    def forgetful(self: SimNode, rnd: WriteRound) -> None:
        rnd.hs = None  # the round is being retired: nothing else reads it
        original(self, rnd)

    original = SimNode.make_durable
    monkeypatch.setattr(SimNode, "make_durable", forgetful)
    for seed in range(150):
        try:
            Simulator(seed).run(600)
        except SimulationFailure as f:
            assert isinstance(f.cause, SafetyViolation), f
            return
    pytest.fail("150 seeds ran with non-durable votes and no violation was found")


def test_cli_prints_a_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["--seeds", "3", "--start", "5", "--steps", "50"]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert summary["seeds"] == 3 and summary["start"] == 5 and summary["steps"] == 50
    assert summary["failures"] == []
    assert summary["totals"]["steps"] == 150
    assert "[3/3]" in out.err
