"""A linearizability checker for KV histories (Wing & Gong's search with Lowe's memoization,
as in Knossos and porcupine).

Linearizability is local (Herlihy & Wing): a history is linearizable iff its sub-history on
each key is, so keys are checked one at a time against a register model with compare-and-swap.
An operation whose outcome is unknown (the client gave up: timeout, crash) has
`completed_at=None`: it may take effect at any point after its invocation, or never.

    ops = [KvOp("put", b"k", value=b"1", invoked_at=0, completed_at=2), ...]
    result = check_history(ops)
    assert result.ok, result.explain()
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["KvOp", "CheckResult", "check_history", "check_key"]


@dataclass(slots=True)
class KvOp:
    """One client operation on one key.

    kind: "put" (value), "delete", "get" (result: the value read, None if absent) or "cas"
    (expected -> value, value None meaning delete; result: True if it swapped).
    """

    kind: str
    key: bytes
    value: bytes | None = None
    expected: bytes | None = None
    result: bytes | bool | None = None
    invoked_at: float = 0.0
    completed_at: float | None = None
    # Free-form label for reports (client id, op id).
    label: str = field(default="")

    @property
    def pending(self) -> bool:
        return self.completed_at is None


@dataclass(slots=True)
class CheckResult:
    ok: bool
    key: bytes | None = None
    ops: list[KvOp] = field(default_factory=list)

    def explain(self) -> str:
        if self.ok:
            return "linearizable"
        lines = [f"history of key {self.key!r} is not linearizable ({len(self.ops)} ops):"]
        for op in sorted(self.ops, key=lambda o: o.invoked_at):
            end = "?" if op.completed_at is None else f"{op.completed_at:g}"
            lines.append(
                f"  [{op.invoked_at:g}, {end}] {op.label} {op.kind} "
                f"value={op.value!r} expected={op.expected!r} -> {op.result!r}"
            )
        return "\n".join(lines)


_ABSENT: bytes | None = None


def _step(state: bytes | None, op: KvOp) -> tuple[bool, bytes | None]:
    """The register model: whether `op` may run in `state`, and the state after it."""
    kind = op.kind
    if kind == "put":
        return True, op.value
    if kind == "delete":
        return True, None
    if kind == "get":
        return state == op.result, state
    if kind == "cas":
        matches = state == op.expected
        if op.pending:
            # Unknown outcome: it swapped if it could (a failed CAS changes nothing, and an
            # op that never happened is modelled by leaving it out).
            return True, op.value if matches else state
        if op.result is True:
            return matches, op.value if matches else state
        return not matches, state
    raise ValueError(f"unknown op kind {kind!r}")


def check_key(ops: list[KvOp], initial: bytes | None = None) -> bool:
    """Whether the operations on one key are linearizable, starting from `initial`."""
    # A pending read constrains nothing.
    ops = [op for op in ops if not (op.pending and op.kind == "get")]
    n = len(ops)
    if n == 0:
        return True
    inv = [op.invoked_at for op in ops]
    ret = [math.inf if op.completed_at is None else op.completed_at for op in ops]
    required = 0
    for i, op in enumerate(ops):
        if not op.pending:
            required |= 1 << i
    order = sorted(range(n), key=lambda i: inv[i])
    seen: set[tuple[int, bytes | None]] = set()
    limit = sys.getrecursionlimit()
    if n + 100 > limit:
        sys.setrecursionlimit(n + 200)

    def search(done: int, state: bytes | None) -> bool:
        if done & required == required:
            # Every completed op is placed; pending ones may never have happened.
            return True
        key = (done, state)
        if key in seen:
            return False
        seen.add(key)
        # The next op must be invoked before every remaining op completed (real-time order).
        horizon = min(ret[i] for i in range(n) if not done >> i & 1)
        for i in order:
            if done >> i & 1:
                continue
            if inv[i] > horizon:
                break
            ok, nxt = _step(state, ops[i])
            if ok and search(done | 1 << i, nxt):
                return True
        return False

    return search(0, initial)


def check_history(
    ops: Iterable[KvOp], initial: dict[bytes, bytes] | None = None
) -> CheckResult:
    """Check a whole KV history key by key; the first non-linearizable key is reported."""
    by_key: dict[bytes, list[KvOp]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    initial = initial or {}
    for key in sorted(by_key):
        if not check_key(by_key[key], initial.get(key, _ABSENT)):
            return CheckResult(False, key, by_key[key])
    return CheckResult(True)
