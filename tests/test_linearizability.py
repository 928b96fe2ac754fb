"""The linearizability checker: known histories, and properties against a real register."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.testing.linearizability import KvOp, check_history, check_key

K = b"k"


def op(kind: str, inv: float, done: float | None, value: bytes | None = None, result: object = None,
       expected: bytes | None = None) -> KvOp:
    return KvOp(kind, K, value=value, expected=expected, result=result, invoked_at=inv, completed_at=done)  # type: ignore[arg-type]


def test_sequential_register() -> None:
    h = [op("put", 0, 1, b"a"), op("get", 2, 3, result=b"a"), op("delete", 4, 5), op("get", 6, 7, result=None)]
    assert check_key(h)


def test_stale_read_after_write_completed_is_not_linearizable() -> None:
    h = [op("put", 0, 1, b"a"), op("put", 2, 3, b"b"), op("get", 4, 5, result=b"a")]
    assert not check_key(h)
    res = check_history(h)
    assert not res.ok and res.key == K and "not linearizable" in res.explain()


def test_concurrent_read_may_see_either_value() -> None:
    for seen in (b"a", b"b"):
        h = [op("put", 0, 1, b"a"), op("put", 2, 6, b"b"), op("get", 3, 4, result=seen)]
        assert check_key(h)


def test_reads_cannot_go_back_in_time() -> None:
    """Two sequential reads during one write: once the new value is seen, the old cannot be."""
    h = [op("put", 0, 1, b"a"), op("put", 2, 10, b"b"), op("get", 3, 4, result=b"b"), op("get", 5, 6, result=b"a")]
    assert not check_key(h)


def test_cas_semantics() -> None:
    ok = [op("put", 0, 1, b"0"), op("cas", 2, 3, b"1", True, expected=b"0"), op("get", 4, 5, result=b"1")]
    assert check_key(ok)
    # Two CAS from the same value cannot both succeed.
    both = [op("put", 0, 1, b"0"), op("cas", 2, 5, b"1", True, b"0"), op("cas", 3, 6, b"2", True, b"0")]
    assert not check_key(both)
    # A failed CAS must have seen another value.
    failed = [op("put", 0, 1, b"0"), op("cas", 2, 3, b"1", False, expected=b"0")]
    assert not check_key(failed)


def test_pending_write_may_or_may_not_happen() -> None:
    base = [op("put", 0, 1, b"a"), op("put", 2, None, b"b")]
    assert check_key([*base, op("get", 5, 6, result=b"b")])
    assert check_key([*base, op("get", 5, 6, result=b"a")])
    # ...but once its value was observed it cannot be undone.
    assert not check_key([*base, op("get", 5, 6, result=b"b"), op("get", 7, 8, result=b"a")])


def test_keys_are_independent() -> None:
    h = [KvOp("put", b"x", value=b"1", invoked_at=0, completed_at=1),
         KvOp("get", b"y", result=None, invoked_at=2, completed_at=3)]
    assert check_history(h).ok
    assert check_history(h, initial={b"y": b"0"}).ok is False


def _run_register(seed: int, n_clients: int, n_ops: int) -> list[KvOp]:
    """A real (atomic) register driven by concurrent clients: each op takes effect at one
    random instant inside its [invoke, complete] interval, so the history is linearizable."""
    rng = random.Random(seed)
    events = []
    t = 0.0
    for c in range(n_clients):
        t = rng.random()
        for _ in range(n_ops):
            start = t
            lin = start + rng.random()
            end = lin + rng.random()
            kind = rng.choice(["put", "get", "delete", "cas"])
            events.append((lin, c, kind, start, end, bytes([rng.randrange(3)]), bytes([rng.randrange(3)])))
            t = end + rng.random() * 0.1
    events.sort()
    state: bytes | None = None
    ops = []
    for _lin, c, kind, start, end, v, e in events:
        if kind == "put":
            state = v
            ops.append(KvOp("put", K, value=v, invoked_at=start, completed_at=end, label=f"c{c}"))
        elif kind == "delete":
            state = None
            ops.append(KvOp("delete", K, invoked_at=start, completed_at=end, label=f"c{c}"))
        elif kind == "get":
            ops.append(KvOp("get", K, result=state, invoked_at=start, completed_at=end, label=f"c{c}"))
        else:
            swapped = state == e
            if swapped:
                state = v
            ops.append(KvOp("cas", K, value=v, expected=e, result=swapped, invoked_at=start, completed_at=end))
    return ops


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 4), st.integers(1, 6))
def test_real_register_histories_are_linearizable(seed: int, clients: int, n: int) -> None:
    assert check_key(_run_register(seed, clients, n))


@pytest.mark.parametrize("seed", range(30))
def test_corrupted_read_is_caught_when_it_is_impossible(seed: int) -> None:
    """Make one completed read return a value the key never held: never linearizable."""
    ops = _run_register(seed, 3, 5)
    reads = [o for o in ops if o.kind == "get"]
    if not reads:
        return
    reads[0].result = b"never-written"
    assert not check_key(ops)
