"""History-based safety checks for the randomized simulator (`multiraft.testing.simulator`).

`SafetyChecker` is fed events as they happen (a node seen as leader, entries seen in a log,
entries applied, snapshots installed, reads issued and answered) and raises `SafetyViolation`
the moment one of the Raft safety properties fails (Raft paper §5.4, Figure 3):

- Election Safety: at most one leader per term, over the whole history (term -> leader id).
- Log Matching: two logs holding an entry with the same index and term hold the same entry
  and agree on every earlier entry. Checked by induction: an `(index, term)` pair always maps
  to the same content *and* the same term at `index - 1`. Over the whole history, with one
  exception: an entry that only a crashed incarnation of a node ever held (it was never
  durable, never sent) may be written anew by a later incarnation of the same node.
- Leader Append-Only: while a node leads a term (in one life), its log only grows: the
  entry that was last is still there.
- Leader Completeness: an entry seen committed (handed out in some node's committed
  entries) is in the log of every leader elected afterwards, at its index, with its term.
- State Machine Safety: every node's applied sequence is a prefix of one global sequence. A
  node's state is summarized by a digest chain (`digest_step`), so an installed snapshot can
  be compared with the global prefix it claims to contain.
- Configuration agreement (thesis §4.1: a configuration takes effect when its entry is
  applied, so it is part of the replicated state): the configuration after applying a
  membership-change entry is the same on every node, refused changes included, and a
  snapshot's ConfState is the configuration at its index.
- ReadIndex safety (thesis §6.4): a read index is at least the index of every entry that had
  been applied somewhere (an acknowledged write) when the read was issued.

The checker knows nothing of the simulator: tests feed it fabricated histories to show that it
catches violations.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = [
    "GENESIS_DIGEST",
    "AppliedRecord",
    "SafetyChecker",
    "SafetyViolation",
    "digest_step",
]

# The digest of an empty state machine (nothing applied, index 0).
GENESIS_DIGEST = b"\x00" * 16


class SafetyViolation(AssertionError):
    """A Raft safety property does not hold."""


@dataclass(slots=True, frozen=True)
class AppliedRecord:
    """What applying one log position means for the state machine: the entry's term, type
    and data."""

    term: int
    kind: int
    data: bytes


def digest_step(prev: bytes, index: int, rec: AppliedRecord) -> bytes:
    """The state-machine digest after applying `rec` at `index` on a state with digest
    `prev` (a hash chain: equal digests mean equal applied sequences)."""
    h = hashlib.blake2b(prev, digest_size=16)
    h.update(b"%d/%d/%d/" % (index, rec.term, rec.kind))
    h.update(rec.data)
    return h.digest()


class SafetyChecker:
    """Accumulates the history of a cluster and checks it incrementally.

    Invariant: `digests[i]` is the digest of `records[1..i]` (index 0 is the empty state);
    `len(records) == len(digests)` and `records[0]` is a placeholder.
    """

    __slots__ = (
        "leaders",
        "leader_tails",
        "entries",
        "records",
        "digests",
        "confs",
        "conf_indexes",
        "applied",
        "reads",
    )

    def __init__(self) -> None:
        # term -> the one node ever seen leading it.
        self.leaders: dict[int, int] = {}
        # node -> (term, incarnation, last index, its term) of its log when last seen leading.
        self.leader_tails: dict[int, tuple[int, int, int, int]] = {}
        # (index, term) -> ((entry type, data, term at index - 1), the (node, incarnation)s
        # whose logs held it), for log matching.
        self.entries: dict[tuple[int, int], tuple[tuple[int, bytes, int], set[tuple[int, int]]]] = {}
        # The global applied sequence: records[i] is what position i means (i >= 1).
        self.records: list[AppliedRecord | None] = [None]
        self.digests: list[bytes] = [GENESIS_DIGEST]
        # index -> the configuration after applying the membership change there (any
        # hashable description); `conf_indexes` holds those indexes in increasing order.
        self.confs: dict[int, Hashable] = {}
        self.conf_indexes: list[int] = []
        # node id -> (applied index, digest) of its state machine.
        self.applied: dict[int, tuple[int, bytes]] = {}
        # read context -> highest index applied anywhere when the read was issued.
        self.reads: dict[bytes, int] = {}

    # -- election safety / leader completeness ------------------------------------------

    def leader(
        self,
        term: int,
        id: int,
        term_at: Callable[[int], int | None] | None = None,
        last_index: int = 0,
    ) -> None:
        """Node `id` is leader at `term`. The first time the pair is seen and `term_at` (the
        leader's log: the term at an index, None if compacted) is given, check that every
        committed entry is in that log."""
        known = self.leaders.get(term)
        if known is not None:
            if known != id:
                raise SafetyViolation(
                    f"election safety: two leaders in term {term}: {known} and {id}"
                )
            return
        self.leaders[term] = id
        if term_at is None:
            return
        committed = len(self.records) - 1
        if committed > last_index:
            raise SafetyViolation(
                f"leader completeness: leader {id} of term {term} has last index {last_index} "
                f"but index {committed} is committed"
            )
        for index in range(1, committed + 1):
            t = term_at(index)
            if t is None:  # compacted: covered by the leader's own applied state
                continue
            rec = self.records[index]
            assert rec is not None
            if t != rec.term:
                raise SafetyViolation(
                    f"leader completeness: leader {id} of term {term} has term {t} at index "
                    f"{index}, committed with term {rec.term}"
                )

    def leader_log(
        self,
        node: int,
        term: int,
        incarnation: int,
        last_index: int,
        term_at: Callable[[int], int | None],
    ) -> None:
        """Node `node` leads `term` with a log ending at `last_index`: the entry that ended
        it when last seen (same term, same life) must still be there."""
        tail = self.leader_tails.get(node)
        if tail is not None and tail[0] == term and tail[1] == incarnation:
            _, _, index, t = tail
            now = term_at(index) if index <= last_index else -1
            if now is not None and now != t:
                raise SafetyViolation(
                    f"leader append-only: leader {node} of term {term} had (index {index}, "
                    f"term {t}) and now has {'nothing' if now == -1 else f'term {now}'} there"
                )
        t_last = term_at(last_index)
        self.leader_tails[node] = (term, incarnation, last_index, t_last or 0)

    # -- log matching --------------------------------------------------------------------

    def log_entry(
        self,
        node: int,
        index: int,
        term: int,
        kind: int,
        data: bytes,
        prev_term: int,
        incarnation: int = 0,
    ) -> None:
        """Node `node` (in its `incarnation`-th life) holds an entry at `(index, term)` whose
        predecessor has `prev_term`."""
        key = (index, term)
        val = (kind, data, prev_term)
        holder = (node, incarnation)
        seen = self.entries.get(key)
        if seen is None:
            self.entries[key] = (val, {holder})
            return
        known, holders = seen
        if known == val:
            holders.add(holder)
            return
        if all(n == node and inc < incarnation for n, inc in holders):
            # Only earlier lives of this node held the other entry, and lost it in a crash.
            self.entries[key] = (val, {holder})
            return
        raise SafetyViolation(
            f"log matching: node {node} has entry (index {index}, term {term}) = "
            f"(type {kind}, data {data!r}, previous term {prev_term}); the log of "
            f"{sorted(holders)} (node, incarnation) has (type {known[0]}, data {known[1]!r}, "
            f"previous term {known[2]})"
        )

    # -- state machine safety ------------------------------------------------------------

    def node_state(self, node: int, index: int, digest: bytes, conf: Hashable = None) -> None:
        """Node `node`'s state machine is (re)set to `index` with `digest` and configuration
        `conf` (a snapshot was installed, or the node restarted from its durable state)."""
        if index >= len(self.digests):
            raise SafetyViolation(
                f"state machine safety: node {node} holds state at index {index}, but only "
                f"{len(self.digests) - 1} positions were ever applied"
            )
        if self.digests[index] != digest:
            raise SafetyViolation(
                f"state machine safety: node {node} holds a state at index {index} that is "
                f"not the global prefix of that length"
            )
        if conf is not None:
            known = self.conf_at(index)
            if known is not None and known != conf:
                raise SafetyViolation(
                    f"configuration: node {node} holds configuration {conf} at index {index}, "
                    f"where the applied log gives {known}"
                )
        self.applied[node] = (index, digest)

    def apply(self, node: int, index: int, rec: AppliedRecord, conf: Hashable = None) -> None:
        """Node `node` applies `rec` at `index` (it must be the next position); `conf` is
        its configuration afterwards if `rec` is a membership change."""
        prev_index, prev_digest = self.applied.get(node, (0, GENESIS_DIGEST))
        if index != prev_index + 1:
            raise SafetyViolation(
                f"state machine safety: node {node} applies index {index} after {prev_index}"
            )
        if index < len(self.records):
            known = self.records[index]
            if known != rec:
                raise SafetyViolation(
                    f"state machine safety: node {node} applies {rec} at index {index}; "
                    f"another node applied {known}"
                )
            digest = self.digests[index]
        else:
            digest = digest_step(prev_digest, index, rec)
            self.records.append(rec)
            self.digests.append(digest)
        if conf is not None:
            known_conf = self.confs.get(index)
            if known_conf is None:
                self.confs[index] = conf
                bisect.insort(self.conf_indexes, index)
            elif known_conf != conf:
                raise SafetyViolation(
                    f"configuration: node {node} has configuration {conf} after applying "
                    f"index {index}; another node has {known_conf}"
                )
        self.applied[node] = (index, digest)

    def conf_at(self, index: int) -> Hashable:
        """The configuration in force after applying `index` (None if unknown)."""
        i = bisect.bisect_right(self.conf_indexes, index)
        return self.confs[self.conf_indexes[i - 1]] if i else None

    def applied_index(self) -> int:
        """The highest index applied anywhere."""
        return len(self.records) - 1

    def digest_at(self, index: int) -> bytes:
        return self.digests[index]

    # -- ReadIndex -----------------------------------------------------------------------

    def read_issued(self, ctx: bytes) -> None:
        """A read with context `ctx` is issued now."""
        assert ctx not in self.reads, f"read context {ctx!r} reused"
        self.reads[ctx] = self.applied_index()

    def read_answered(self, node: int, ctx: bytes, index: int) -> None:
        """Node `node` got a ReadState for `ctx` at `index`."""
        floor = self.reads.get(ctx)
        if floor is None:
            raise SafetyViolation(f"read index: node {node} answered unknown read {ctx!r}")
        if index < floor:
            raise SafetyViolation(
                f"read index: read {ctx!r} answered at index {index} on node {node}, but "
                f"index {floor} had been applied before the read was issued"
            )
