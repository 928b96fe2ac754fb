"""KV commands applied: every region's commands of a round go into one engine WriteBatch
(with the apply states, written by the apply loop in the same batch), and the store's overlay
of applied writes whose round is not committed yet.

Semantics of one command (atomic): its ops run in order against the data as left by earlier
commands of the round; if a compare-and-swap does not match, the command writes nothing and
its result is a `CasFailed` naming the op and the current value. A command whose request id
was already applied in the region returns the recorded result and writes nothing again
(retried writes are applied at most once).
"""

from __future__ import annotations

from multiraft.engine import CF_KV, WriteBatch
from multiraft.engine.engine import ReadView

from .cmd import OP_CAS, OP_DELETE, OP_PUT, Applied, CasFailed, Command, Result
from .dedupe import DedupeTable

__all__ = [
    "CasFailed",
    "Applied",
    "KvApplier",
    "Unwritten",
    "read_applied",
    "scan_applied",
]




# The store's overlay of applied KV writes whose round is not committed yet: key -> (round,
# value or None = deleted). See KvApplier.
Unwritten = dict[bytes, tuple[int, bytes | None]]


def read_applied(view: ReadView, unwritten: Unwritten, key: bytes) -> bytes | None:
    """The applied value of `key`: the overlay of rounds in flight, then the engine."""
    hit = unwritten.get(key)
    if hit is not None:
        return hit[1]
    return view.get(CF_KV, key)


def scan_applied(
    view: ReadView, unwritten: Unwritten, lo: bytes, hi: bytes | None, limit: int | None = None
) -> list[tuple[bytes, bytes]]:
    """Applied pairs with `lo <= key < hi` (None: no bound) in key order, at most `limit`: the
    engine's, with the overlay of rounds in flight on top."""
    pending = [(k, v) for k, (_, v) in unwritten.items() if lo <= k and (hi is None or k < hi)]
    if not pending:
        return view.scan(CF_KV, lo, hi, limit)
    # Every overlay key may hide one engine pair (a delete): read that many more.
    merged = dict(view.scan(CF_KV, lo, hi, None if limit is None else limit + len(pending)))
    for k, v in pending:
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    return sorted(merged.items())[:limit]


class KvApplier:
    """Applies the commands of one round over a read view of the engine into `batch` (the
    round's write batch, committed later by the writer).

    `unwritten` is the store's overlay of rounds not committed yet: key -> (round, value or
    None = deleted), shared by every round's applier. Invariant: it holds the latest value of
    every key written by a round whose commit has not finished, so reads see earlier commands
    (of this round and of rounds in flight) before the engine does. `written` is this round's
    part, removed by `forget_written` once the round is committed.
    """

    __slots__ = (
        "_view",
        "batch",
        "_unwritten",
        "_round",
        "written",
        "records",
        "applied_ops",
        "delta_keys",
        "delta_bytes",
    )

    def __init__(
        self,
        view: ReadView,
        batch: WriteBatch,
        unwritten: Unwritten | None = None,
        round_number: int = 0,
    ) -> None:
        self._view = view
        self.batch = batch
        self._unwritten = unwritten if unwritten is not None else {}
        self._round = round_number
        # The keys this round wrote, and the request-id records it made.
        self.written: list[bytes] = []
        self.records: list[tuple[DedupeTable, bytes, tuple[int, Result]]] = []
        # Ops written in this round (for metrics).
        self.applied_ops = 0
        # What the last `apply` changed: keys added (negative: removed) and bytes of keys and
        # values (the regions' approximate sizes follow these).
        self.delta_keys = 0
        self.delta_bytes = 0

    def get(self, key: bytes) -> bytes | None:
        return read_applied(self._view, self._unwritten, key)

    def forget_written(self) -> None:
        """This round is committed: the engine holds its writes (a later round's newer value
        of a key stays)."""
        unwritten, rnd = self._unwritten, self._round
        for key in self.written:
            hit = unwritten.get(key)
            if hit is not None and hit[0] == rnd:
                del unwritten[key]
        for table, request_id, rec in self.records:
            table.forget_unwritten(request_id, rec)

    def apply(self, cmd: Command, dedupe: DedupeTable | None = None, index: int = 0) -> Result:
        """Apply one command (the entry at `index`) atomically (see the module docstring)."""
        self.delta_keys = self.delta_bytes = 0
        if dedupe is not None and cmd.request_id:
            seen = dedupe.get(cmd.request_id, index)
            if seen is not None:
                return seen
        local: dict[bytes, bytes | None] = {}
        before: dict[bytes, bytes | None] = {}

        def current(key: bytes) -> bytes | None:
            if key in local:
                return local[key]
            if key not in before:
                before[key] = self.get(key)
            return before[key]

        previous: list[bytes | None] = []
        for i, op in enumerate(cmd.ops):
            cur = current(op.key)
            if op.kind == OP_CAS and cur != op.expected:
                result: Result = CasFailed(i, cur)
                break
            previous.append(cur)
            if op.kind == OP_PUT or (op.kind == OP_CAS and op.value is not None):
                local[op.key] = op.value
            else:
                assert op.kind in (OP_DELETE, OP_CAS)
                local[op.key] = None
        else:
            unwritten, rnd, written = self._unwritten, self._round, self.written
            dk = db = 0
            for key, value in local.items():
                old = before[key]
                if value is None:
                    self.batch.delete(CF_KV, key)
                else:
                    self.batch.put(CF_KV, key, value)
                    dk += 1
                    db += len(key) + len(value)
                if old is not None:
                    dk -= 1
                    db -= len(key) + len(old)
                unwritten[key] = (rnd, value)
                written.append(key)
            self.delta_keys, self.delta_bytes = dk, db
            self.applied_ops += len(cmd.ops)
            result = Applied(tuple(previous))
        if dedupe is not None and cmd.request_id:
            rec = dedupe.record(cmd.request_id, result, self.batch, index)
            self.records.append((dedupe, cmd.request_id, rec))
        return result
