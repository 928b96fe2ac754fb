"""Applying KV commands: atomic batches, compare-and-swap, same-round visibility, dedupe."""

from __future__ import annotations

from multiraft.engine import CF_APPLY_STATE, CF_KV, MemoryEngine, WriteBatch
from multiraft.store.cmd import OP_CAS, OP_DELETE, OP_PUT, Command, Op
from multiraft.store.dedupe import DedupeTable
from multiraft.store.kv import Applied, CasFailed, KvApplier


def _cmd(*ops: Op, rid: bytes = b"") -> Command:
    return Command(1, 1, 1, list(ops), rid)


def _engine_with(**kv: bytes) -> MemoryEngine:
    e = MemoryEngine()
    wb = WriteBatch()
    for k, v in kv.items():
        wb.put(CF_KV, k.encode(), v)
    if kv:
        e.write(wb)
    return e


def test_put_delete_and_round_visibility() -> None:
    e = _engine_with(a=b"1")
    wb = WriteBatch()
    ap = KvApplier(e, wb)
    assert ap.apply(_cmd(Op(OP_PUT, b"b", value=b"2"))) == Applied((None,))
    # A later command of the same round sees the earlier one, before the batch commits.
    assert ap.apply(_cmd(Op(OP_DELETE, b"a"), Op(OP_PUT, b"c", value=b"3"))) == Applied((b"1", None))
    assert ap.get(b"a") is None and ap.get(b"b") == b"2"
    assert e.get(CF_KV, b"b") is None  # nothing on disk yet
    e.write(wb)
    assert (e.get(CF_KV, b"a"), e.get(CF_KV, b"b"), e.get(CF_KV, b"c")) == (None, b"2", b"3")


def test_cas_success_and_failure_is_atomic() -> None:
    e = _engine_with(k=b"old")
    wb = WriteBatch()
    ap = KvApplier(e, wb)
    # Failing CAS: the put before it in the same command is not applied either.
    res = ap.apply(_cmd(Op(OP_PUT, b"x", value=b"1"), Op(OP_CAS, b"k", value=b"new", expected=b"nope")))
    assert res == CasFailed(1, b"old")
    assert ap.get(b"x") is None
    assert ap.apply(_cmd(Op(OP_CAS, b"k", value=b"new", expected=b"old"))) == Applied((b"old",))
    # CAS expecting absence, and CAS to delete.
    assert ap.apply(_cmd(Op(OP_CAS, b"n", value=b"v", expected=None))) == Applied((None,))
    assert ap.apply(_cmd(Op(OP_CAS, b"n", value=None, expected=b"v"))) == Applied((b"v",))
    e.write(wb)
    assert (e.get(CF_KV, b"k"), e.get(CF_KV, b"n"), e.get(CF_KV, b"x")) == (b"new", None, None)


def test_ops_within_a_command_see_each_other() -> None:
    e = _engine_with()
    ap = KvApplier(e, WriteBatch())
    res = ap.apply(_cmd(Op(OP_PUT, b"k", value=b"1"), Op(OP_CAS, b"k", value=b"2", expected=b"1")))
    assert res == Applied((None, b"1"))
    assert ap.get(b"k") == b"2"


def test_retried_request_applies_once() -> None:
    e = _engine_with(n=b"0")
    wb = WriteBatch()
    ap = KvApplier(e, wb)
    d = DedupeTable()
    inc = _cmd(Op(OP_CAS, b"n", value=b"1", expected=b"0"), rid=b"client-1:7")
    first = ap.apply(inc, d)
    again = ap.apply(inc, d)
    assert first == again == Applied((b"0",))
    assert ap.get(b"n") == b"1"
    assert ap.applied_ops == 1


def test_dedupe_table_is_bounded() -> None:
    d = DedupeTable(capacity=2)
    for i in range(5):
        d.record(bytes([i]), Applied(()))
    assert len(d) == 2 and d.get(b"\x00") is None and d.get(b"\x04") is not None


def test_dedupe_records_survive_a_restart() -> None:
    """Records are written with the apply batch, so a fresh table (after a restart) still
    refuses to apply a retried request again."""
    e = _engine_with(n=b"0")
    wb = WriteBatch()
    ap = KvApplier(e, wb)
    cas = _cmd(Op(OP_CAS, b"n", value=b"1", expected=b"0"), rid=b"client-9:1")
    first = ap.apply(cas, DedupeTable(e, region_id=5))
    e.write(wb)
    fresh = DedupeTable(e, region_id=5)
    wb2 = WriteBatch()
    again = KvApplier(e, wb2).apply(cas, fresh)
    assert first == again == Applied((b"0",))
    assert len(wb2) == 0  # nothing written twice
    # Another region's table does not see it.
    assert DedupeTable(e, region_id=6).get(b"client-9:1") is None
    failed = _cmd(Op(OP_CAS, b"n", value=b"2", expected=b"zzz"), rid=b"client-9:2")
    wb3 = WriteBatch()
    res = KvApplier(e, wb3).apply(failed, fresh)
    e.write(wb3)
    assert DedupeTable(e, region_id=5).get(b"client-9:2") == res == CasFailed(0, b"1")


def test_commands_see_writes_of_rounds_still_in_flight() -> None:
    """The store's `unwritten` overlay: a round's applier sees the writes of earlier rounds
    whose batches are not committed yet; a committed round forgets only its own values."""
    e = _engine_with(k=b"0")
    unwritten: dict[bytes, tuple[int, bytes | None]] = {}
    wb1, wb2 = WriteBatch(), WriteBatch()
    r1 = KvApplier(e, wb1, unwritten, 1)
    assert r1.apply(_cmd(Op(OP_PUT, b"k", value=b"a"), Op(OP_PUT, b"x", value=b"1"))) == Applied((b"0", None))
    r2 = KvApplier(e, wb2, unwritten, 2)  # round 1 is still in the writer
    assert r2.apply(_cmd(Op(OP_CAS, b"k", value=b"b", expected=b"a"))) == Applied((b"a",))
    assert r2.apply(_cmd(Op(OP_DELETE, b"x"))) == Applied((b"1",))
    e.write(wb1)
    r1.forget_written()
    # Round 2's newer values stay until round 2 is committed.
    assert unwritten == {b"k": (2, b"b"), b"x": (2, None)}
    assert KvApplier(e, WriteBatch(), unwritten, 3).get(b"x") is None
    e.write(wb2)
    r2.forget_written()
    assert unwritten == {}
    assert (e.get(CF_KV, b"k"), e.get(CF_KV, b"x")) == (b"b", None)


def test_records_of_a_round_in_flight_outlive_the_cache() -> None:
    """A record whose batch is not committed yet is not in the engine: evicting it from the
    cache must not let a retry of that request apply twice."""
    e = _engine_with(n=b"0")
    d = DedupeTable(e, region_id=5, capacity=2)
    wb = WriteBatch()
    ap = KvApplier(e, wb, {}, 1)
    cas = _cmd(Op(OP_CAS, b"n", value=b"1", expected=b"0"), rid=b"first")
    assert ap.apply(cas, d, 10) == Applied((b"0",))
    for i in range(5):  # more records than the cache holds, same round
        ap.apply(_cmd(Op(OP_PUT, b"x%d" % i, value=b"v"), rid=b"other-%d" % i), d, 11 + i)
    assert d.get(b"first", 20) == Applied((b"0",))  # the retry is answered, not re-applied
    assert ap.apply(cas, d, 20) == Applied((b"0",))
    e.write(wb)
    ap.forget_written()
    assert d.unwritten == 0
    # Committed: the engine answers for it now.
    assert d.get(b"first", 20) == Applied((b"0",))


class _CountingEngine(MemoryEngine):
    """Counts point reads of request-id records."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, cf: str, key: bytes) -> bytes | None:
        if cf == CF_APPLY_STATE:
            self.gets += 1
        return super().get(cf, key)


def test_a_new_request_id_costs_no_engine_read_while_the_cache_holds_every_record() -> None:
    """The first miss loads the region's records from the engine (a restart: retries of
    requests applied before it are still refused); then, while the cache holds every live
    record, a request id it lacks is new without asking the engine. Once a live record was
    evicted (or there were more than the cache takes) misses ask the engine again."""
    e = _CountingEngine()
    d = DedupeTable(e, region_id=5, capacity=4)
    wb = WriteBatch()
    for i in range(3):
        d.record(b"old-%d" % i, Applied((None,)), wb, 10 + i)
    e.write(wb)
    fresh = DedupeTable(e, region_id=5, capacity=4)  # after a restart
    assert fresh.get(b"new-1", 20) is None
    assert fresh.get(b"old-1", 20) == Applied((None,))  # loaded: refused as a retry
    assert fresh.get(b"new-2", 20) is None and e.gets == 0
    wb2 = WriteBatch()
    fresh.record(b"new-1", Applied((None,)), wb2, 21)  # 4 records: the cache is full
    assert fresh.get(b"new-3", 22) is None and e.gets == 0
    fresh.record(b"new-2", Applied((None,)), wb2, 22)  # evicts old-0, still live
    e.write(wb2)
    assert fresh.get(b"old-0", 23) == Applied((None,)) and e.gets == 1  # from the engine
    assert fresh.get(b"new-4", 23) is None and e.gets == 2
    # More records in the engine than the cache takes: every miss asks the engine.
    small = DedupeTable(e, region_id=5, capacity=2)
    assert small.get(b"new-5", 23) is None and e.gets == 3
