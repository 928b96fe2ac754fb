"""Shared pieces of the fuzz tests: the settings profile, input strategies (mutated valid
messages, garbage values, raw bytes), fast seeded mutators, and the guard every decoder call
runs under.

Inputs. Each hypothesis example is one structured input (a valid message, mutated or not, or
random bytes) plus `fan_out()` more inputs derived from it by a seeded mutator (bit flips,
truncation, special runs, garbage subtrees): hypothesis explores the structure, the mutator
adds volume cheaply. A test states its CI input count; `MULTIRAFT_FUZZ_EXAMPLES=N` (the long
mode) makes every test run at least N inputs:

    MULTIRAFT_FUZZ_EXAMPLES=1000000 python -m pytest tests/fuzz -p no:randomly -s

The inputs each decoder saw are counted (`count`) and printed at the end of the session.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "EXAMPLES_ENV",
    "COUNTS",
    "count",
    "fan_out",
    "fuzz_settings",
    "long_mode",
    "mutated",
    "garbage",
    "mutated_tree",
    "mutate_bytes",
    "mutate_tree",
    "random_garbage",
    "byte_variants",
    "tree_variants",
    "seeds",
    "guard",
    "Hang",
    "decode_or",
]

EXAMPLES_ENV = "MULTIRAFT_FUZZ_EXAMPLES"
_T = TypeVar("_T")
# Inputs run per decoder (by the name given to `count`), for the session summary.
COUNTS: Counter[str] = Counter()


def long_mode() -> bool:
    return bool(os.environ.get(EXAMPLES_ENV))


def fan_out() -> int:
    """Inputs derived from each hypothesis example by the seeded mutator."""
    return 99 if long_mode() else 9


def fuzz_settings(ci_inputs: int, families: int = 1) -> settings:
    """Enough examples for `ci_inputs` inputs (or the long mode's count) with the fan-out;
    no deadline (a shared 2-core machine: `guard` bounds a hang instead), every health check
    off (the inputs are big and filtered on purpose); `families`: how many inputs with their
    fan-out one example makes; in the long mode no example database
    (a million passing inputs are not worth keeping)."""
    total = int(os.environ.get(EXAMPLES_ENV) or ci_inputs)
    per_example = families * (1 + fan_out())
    return settings(
        max_examples=-(-total // per_example),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None if long_mode() else settings().database,
        print_blob=True,
        report_multiple_bugs=False,
    )


def count(name: str, n: int = 1) -> None:
    COUNTS[name] += n


seeds = st.integers(0, 2**32 - 1)


# -- byte mutations ----------------------------------------------------------------------------

# Byte runs that mean "a huge length" or "a type byte" in the formats fuzzed here: u32 BE
# lengths (both frame codecs), msgpack str32/bin32/array32/map32/ext32 headers, protobuf
# varints of 10 bytes, and the empty/ones/ASCII extremes.
_SPECIAL = [
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x00\x00\x00\x01",
    b"\x04\x00\x00\x00",
    b"\xdb\xff\xff\xff\xff",  # msgpack str32
    b"\xc6\xff\xff\xff\xff",  # msgpack bin32
    b"\xdd\xff\xff\xff\xff",  # msgpack array32
    b"\xdf\xff\xff\xff\xff",  # msgpack map32
    b"\xc9\xff\xff\xff\xff\x01",  # msgpack ext32
    b"\xd6\xff\x00\x00\x00\x00",  # msgpack timestamp ext
    b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",  # msgpack uint64 max
    b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",  # msgpack int64 min
    b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # msgpack float64 NaN
    b"\xc1",  # msgpack "never used"
    b"\x91" * 16,  # nested arrays
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # protobuf varint 2**64 - 1
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # protobuf varint, too long
    b"\x0a\xff\xff\xff\xff\x0f",  # protobuf field 1, length 4 GiB
    b"\x12\x80\x80\x80\x80\x08",  # protobuf field 2, length 2 GiB
    b"[" * 64,
    b"{" * 64,
    b"\x00",
    b"\xff",
]


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes], max_ops: int = 4) -> bytes:
    """`base`'s bytes after 1..max_ops mutations: bit flips, truncation, insertions and
    deletions, overwrites with special runs (huge lengths, type bytes), duplication."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.integers(0, 7))
        n = len(data)
        pos = draw(st.integers(0, n))
        if op == 0 and n:  # bit flip
            i = min(pos, n - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:  # truncate
            del data[pos:]
        elif op == 2:  # insert random bytes
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == 3 and n:  # delete a slice
            end = draw(st.integers(pos, min(n, pos + 16)))
            del data[pos:end]
        elif op == 4:  # overwrite with a special run
            run = draw(st.sampled_from(_SPECIAL))
            data[pos : pos + len(run)] = run
        elif op == 5:  # insert a special run
            data[pos:pos] = draw(st.sampled_from(_SPECIAL))
        elif op == 6 and n:  # duplicate a slice
            end = draw(st.integers(pos, min(n, pos + 64)))
            data[pos:pos] = data[pos:end]
        else:  # set one byte
            if n:
                data[min(pos, n - 1)] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
    return bytes(data)


# -- value mutations (msgpack / JSON trees) ---------------------------------------------------

_EDGE_INTS = [0, 1, -1, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]


def _scalars(json_only: bool) -> st.SearchStrategy[Any]:
    ints = st.one_of(st.sampled_from(_EDGE_INTS), st.integers(-(2**63), 2**64 - 1))
    if json_only:
        ints = st.one_of(ints, st.sampled_from([2**64, 10**30, -(10**30)]))
    floats = st.one_of(
        st.floats(allow_nan=not json_only, allow_infinity=not json_only),
        st.sampled_from([0.0, -0.0, 1.0, 1e300]),
    )
    text = st.one_of(
        st.text(max_size=24),
        st.sampled_from(["", "0", "1", "-1", "\u00b2", "\u0663", "1e5", "0x10", "ff", "nan", "00"]),
    )
    out = st.one_of(st.none(), st.booleans(), ints, floats, text)
    if not json_only:
        out = st.one_of(out, st.binary(max_size=24))
    return out


def garbage(json_only: bool = False, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Arbitrary nested values of msgpack's types (or JSON's)."""
    keys: st.SearchStrategy[Any] = st.text(max_size=12)
    if not json_only:
        keys = st.one_of(keys, st.binary(max_size=12))
    return st.recursive(
        _scalars(json_only),
        lambda inner: st.one_of(
            st.lists(inner, max_size=6),
            st.dictionaries(keys, inner, max_size=6),
        ),
        max_leaves=max_leaves,
    )


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))


def _replace(obj: Any, path: tuple[Any, ...], fn: Callable[[Any], Any]) -> Any:
    if not path:
        return fn(obj)
    head, rest = path[0], path[1:]
    if isinstance(obj, list):
        out = list(obj)
        out[head] = _replace(obj[head], rest, fn)
        return out
    out_d = dict(obj)
    out_d[head] = _replace(obj[head], rest, fn)
    return out_d


def _tweak(v: Any, pick: Callable[[list[Any]], Any], json_only: bool) -> Any:
    """A near miss of `v`: an int off by one, negated or at an edge, or the same value in
    another type (int <-> str / float / bool, bytes <-> str, a container emptied)."""
    if isinstance(v, bool):
        return pick([int(v), str(v).lower(), not v])
    if isinstance(v, int):
        near = [-v, v - 1, v + 1, -1, 0, 2**63, 2**64 - 1, 2**64]
        if not json_only:  # what msgpack can carry
            near = [x for x in near if -(2**63) <= x < 2**64]
        return pick([*near, str(v), float(v), True])
    if isinstance(v, bytes):
        return pick([v.decode("latin-1"), v.hex(), b"", v * 2, v[:-1]])
    if isinstance(v, str):
        return pick([v.encode() if not json_only else v.upper(), "", v + "\x00", v * 2, v[:-1]])
    if isinstance(v, list):
        return pick([[], v[:-1], v + v[-1:], {"0": v} if json_only else tuple(v)])
    if isinstance(v, dict):
        return pick([{}, list(v.values()), list(v)])
    return pick([0, "", [], -1])


def _tree_op(
    obj: Any, path: tuple[Any, ...], op: int, junk: Any, pick: Callable[[list[Any]], Any],
    json_only: bool,
) -> Any:
    """Mutation `op` (0..5) of the node at `path`: replaced by `junk`, dropped from its
    parent, wrapped in a list or a map, extended with `junk` (a list) or doubled, or tweaked
    (`_tweak`, choosing with `pick`)."""
    if op == 5:
        return _replace(obj, path, lambda v: _tweak(v, pick, json_only))
    if op == 0 or not path:
        return _replace(obj, path, lambda v: junk)
    if op == 1:
        parent, key = path[:-1], path[-1]

        def drop(p: Any) -> Any:
            if isinstance(p, list):
                return p[:key] + p[key + 1 :]
            return {k: v for k, v in p.items() if k != key}

        return _replace(obj, parent, drop)
    if op == 2:
        return _replace(obj, path, lambda v: [v])
    if op == 3:
        return _replace(obj, path, lambda v: {"x": v} if json_only else {b"x": v})
    return _replace(obj, path, lambda v: [*v, junk] if isinstance(v, list) else [v, v])


@st.composite
def mutated_tree(
    draw: st.DrawFn, base: st.SearchStrategy[Any], json_only: bool = False, max_ops: int = 3
) -> Any:
    """`base`'s value with 1..max_ops nodes replaced by garbage, dropped, duplicated, wrapped
    in a list or map, tweaked (an int off by one, a value in another type), or (lists)
    extended."""
    obj = draw(base)
    for _ in range(draw(st.integers(1, max_ops))):
        path = draw(st.sampled_from(list(_paths(obj))))
        op = draw(st.integers(0, 5))
        junk = draw(garbage(json_only, max_leaves=4)) if op in (0, 4) else None

        def pick(choices: list[Any]) -> Any:
            return draw(st.sampled_from(choices))

        obj = _tree_op(obj, path, op, junk, pick, json_only)
    return obj


# -- seeded mutators (the fan-out) ------------------------------------------------------------


def mutate_bytes(rng: random.Random, data: bytes, max_ops: int = 4) -> bytes:
    """What `mutated` does, driven by `rng` (fast: no hypothesis)."""
    buf = bytearray(data)
    # Mostly one mutation: a valid message one step off reaches deeper than a shredded one.
    for _ in range(min(max_ops, 1 + int(rng.expovariate(1.2)))):
        op = rng.randrange(8)
        n = len(buf)
        pos = rng.randint(0, n)
        if op == 0 and n:
            buf[min(pos, n - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del buf[pos:]
        elif op == 2:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and n:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 4:
            run = rng.choice(_SPECIAL)
            buf[pos : pos + len(run)] = run
        elif op == 5:
            buf[pos:pos] = rng.choice(_SPECIAL)
        elif op == 6 and n:
            buf[pos:pos] = buf[pos : pos + rng.randint(1, 64)]
        elif n:
            buf[min(pos, n - 1)] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))
    return bytes(buf)


_RANDOM_TEXT = ["", "0", "1", "-1", "\u00b2", "\u0663", "1e5", "0x10", "ff", "nan", "00", "\x00",
                "\ud7ff", "key", "voter", "learner", "put", "get", "split"]


def random_garbage(rng: random.Random, json_only: bool = False, depth: int = 0) -> Any:
    """A random value of msgpack's types (or JSON's), nested up to 3 levels."""
    r = rng.randrange(10 if depth < 3 else 7)
    if r == 0:
        return None
    if r == 1:
        return rng.random() < 0.5
    if r == 2:
        return rng.choice(_EDGE_INTS) if rng.random() < 0.5 else rng.randint(-(2**63), 2**64 - 1)
    if r == 3:
        if json_only:
            return rng.choice([0.5, -0.0, 1e300, 2.0**64])
        return rng.choice([0.5, -0.0, 1e300, float("nan"), float("inf"), 2.0**64])
    if r == 4:
        return rng.choice(_RANDOM_TEXT)
    if r == 5:
        return "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 8)))
    if r == 6:
        return rng.choice(_RANDOM_TEXT) if json_only else rng.randbytes(rng.randint(0, 12))
    if r in (7, 8):
        return [random_garbage(rng, json_only, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = _RANDOM_TEXT if json_only else [*_RANDOM_TEXT, b"", b"k"]
    return {rng.choice(keys): random_garbage(rng, json_only, depth + 1)
            for _ in range(rng.randint(0, 4))}


def mutate_tree(rng: random.Random, obj: Any, json_only: bool = False, max_ops: int = 3) -> Any:
    """What `mutated_tree` does, driven by `rng` (mostly one mutation)."""
    for _ in range(min(max_ops, 1 + int(rng.expovariate(1.2)))):
        path = rng.choice(list(_paths(obj)))
        op = rng.randrange(6)
        junk = random_garbage(rng, json_only, depth=1) if op in (0, 4) else None
        obj = _tree_op(obj, path, op, junk, rng.choice, json_only)
    return obj


def byte_variants(data: bytes, seed: int) -> Iterator[bytes]:
    """`data`, then `fan_out()` seeded mutations of it."""
    yield data
    rng = random.Random(seed)
    for _ in range(fan_out()):
        yield mutate_bytes(rng, data) if data or rng.random() < 0.5 else rng.randbytes(8)


def tree_variants(
    obj: Any, seed: int, encode: Callable[[Any], bytes], json_only: bool = False
) -> Iterator[bytes]:
    """`encode(obj)`, then `fan_out()` seeded mutations: of the tree (re-encoded) or of its
    bytes."""
    base = encode(obj)
    yield base
    rng = random.Random(seed)
    for _ in range(fan_out()):
        if rng.random() < 0.6:
            yield encode(mutate_tree(rng, obj, json_only))
        else:
            yield mutate_bytes(rng, base)


# -- guards -----------------------------------------------------------------------------------


class Hang(BaseException):
    """An example ran longer than the hang bound (a BaseException: a decoder's `except
    Exception` must not turn it into a decode error)."""


# Bounds of one decoder call: time (only to turn a hang into a failure, far above any real
# cost) and Python heap growth (a small input must not make a decoder allocate much: a fixed
# allowance plus a multiple of the input's length). A call hangs once it has used
# HANG_CPU_SECONDS of CPU (a loop) or HANG_WALL_SECONDS of wall time (blocked for good): a
# process starved of CPU by other work (the long mode runs niced beside benchmarks) is not
# taken for a hang.
HANG_CPU_SECONDS = 20.0
HANG_WALL_SECONDS = 300.0
HANG_CHECK_SECONDS = 5.0
MEMORY_BASE = 4 << 20
MEMORY_PER_BYTE = 64


class _HangTimer:
    """SIGALRM every HANG_CHECK_SECONDS while a guarded call runs; raises Hang once a bound
    is passed. A Hang can be swallowed where the signal lands (a gc callback, a decoder's
    `except BaseException`): `passed` remembers it, and `guard` fails the call at its end."""

    def __init__(self) -> None:
        self.wall0 = time.monotonic()
        self.cpu0 = time.process_time()
        self.passed: str | None = None

    def check(self) -> None:
        cpu = time.process_time() - self.cpu0
        wall = time.monotonic() - self.wall0
        if cpu >= HANG_CPU_SECONDS or wall >= HANG_WALL_SECONDS:
            self.passed = f"no result after {cpu:.1f} s of CPU, {wall:.1f} s of wall time"
        if self.passed is not None:
            raise Hang(self.passed)

    def on_alarm(self, signum: int, frame: Any) -> None:
        self.check()


@contextmanager
def guard(input_len: int, *, memory: bool = True) -> Iterator[None]:
    """Run the body under the hang bounds (main thread) and, with `memory`, the heap bound
    (tracemalloc runs for the body only; use it where no other thread allocates)."""
    in_main = threading.current_thread() is threading.main_thread()
    old: Any = None
    timer = _HangTimer()
    if in_main:
        old = signal.signal(signal.SIGALRM, timer.on_alarm)
        signal.setitimer(signal.ITIMER_REAL, HANG_CHECK_SECONDS, HANG_CHECK_SECONDS)
    trace = memory and not tracemalloc.is_tracing()
    if trace:
        tracemalloc.start()
    try:
        yield
        if trace:
            peak = tracemalloc.get_traced_memory()[1]
            limit = MEMORY_BASE + MEMORY_PER_BYTE * input_len
            assert peak <= limit, f"{peak} bytes allocated for a {input_len}-byte input"
    finally:
        if trace:
            tracemalloc.stop()
        if in_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    # A Hang raised where it was swallowed still fails the call.
    if timer.passed is not None:
        raise Hang(timer.passed)


def decode_or(
    decode: Callable[[bytes], _T],
    data: bytes,
    errors: type[BaseException] | tuple[type[BaseException], ...],
) -> _T | None:
    """`decode(data)` under the guard; None if it raised one of its documented `errors` (any
    other exception propagates: the fuzz test fails, naming the input)."""
    with guard(len(data)):
        try:
            return decode(data)
        except errors:
            return None


class FuzzFailure(AssertionError):
    """An input broke a contract; the message names the input (the cause is chained)."""


def run_inputs(name: str, inputs: Iterable[_T], check: Callable[[_T], None]) -> None:
    """`check` every input, counting them under `name`; a failure names its input."""
    n = 0
    try:
        for x in inputs:
            try:
                check(x)
            except (KeyboardInterrupt, FuzzFailure):
                raise
            except BaseException as e:
                raise FuzzFailure(f"{name}: {type(e).__name__} for the input {x!r:.3000}") from e
            n += 1
    finally:
        count(name, n)
