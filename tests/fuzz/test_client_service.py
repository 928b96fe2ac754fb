"""Fuzz the store's client port (multiraft/server/client_service.py): byte streams of request
frames (valid requests of every op, mutated, garbage maps, random bytes), in arbitrary
pieces, on a connection of a real `ClientService` over a real `Store` (in-memory engine, two
regions). Every request frame gets exactly one well-formed answer, never INTERNAL; a frame
that is not msgpack or too long closes that connection and nothing else; the service keeps
serving, and keys written before the fuzzing read back unchanged."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.client.protocol import (
    RETRYABLE_CODES,
    FrameDecoder,
    FrameError,
    encode_frame,
)
from multiraft.engine import MemoryEngine
from multiraft.server.client_service import ClientService, _Connection
from multiraft.store.errors import StoreError
from multiraft.store.store import Store, StoreConfig

from .support import (
    byte_variants,
    fuzz_settings,
    garbage,
    guard,
    mutated,
    mutated_tree,
    run_inputs,
    seeds,
    tree_variants,
)

MAX_FRAME = 1 << 12
CODES = RETRYABLE_CODES | {"INVALID_REQUEST"}
# Keys the fuzzer cannot produce (its keys are at most 8 bytes): written first, read last.
SENTINELS = [b"\x00sentinel-of-the-fuzz-1", b"\xffsentinel-of-the-fuzz-2"]


class FakeSocket:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.7", 5555) if name == "peername" else default

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@dataclass
class Service:
    loop: asyncio.AbstractEventLoop
    store: Store
    svc: ClientService

    def drive(self, done: Any, max_rounds: int = 400) -> None:
        """Tick and run rounds until `done()` (a raft round trip is local: few are needed)."""
        for i in range(max_rounds):
            if done():
                return
            if i % 4 == 3:
                self.store.tick()
            self.store.round()
        raise AssertionError("the store did not answer")

    def exchange(self, pieces: list[bytes]) -> tuple[FakeSocket, _Connection]:
        sock = FakeSocket()

        async def go() -> _Connection:
            conn = _Connection(self.svc)
            conn.connection_made(sock)  # type: ignore[arg-type]
            for piece in pieces:
                if conn.closed:
                    break
                conn.data_received(piece)
            self.drive(lambda: conn.inflight == 0)
            await asyncio.sleep(0)  # the flush
            conn.connection_lost(None)
            return conn

        return sock, self.loop.run_until_complete(go())

    def call(self, req: dict[str, Any]) -> dict[str, Any]:
        sock, _ = self.exchange([encode_frame(req)])
        (resp,) = FrameDecoder(strict_map_key=False).feed(bytes(sock.written))
        assert isinstance(resp, dict)
        return resp


def _region_of(store: Store, key: bytes) -> tuple[int, list[int]]:
    for rid, peer in store.peers.items():
        r = peer.region
        if r.start_key <= key and (not r.end_key or key < r.end_key):
            return rid, [r.region_epoch.conf_ver, r.region_epoch.version]
    raise AssertionError(f"no region holds {key!r}")


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    loop = asyncio.new_event_loop()
    store = Store(1, MemoryEngine(), lambda to, frame: None, StoreConfig(), random.Random(5))
    store.bootstrap(1, [1], 2)
    svc = ClientService(store, lambda: None, {1: "127.0.0.1:20160"}, max_frame=MAX_FRAME)
    s = Service(loop, store, svc)
    s.drive(lambda: store.leaders() == 2, max_rounds=2000)
    for key in SENTINELS:
        rid, epoch = _region_of(store, key)
        resp = s.call({"id": 1, "op": "put", "region_id": rid, "epoch": epoch, "key": key,
                       "value": b"kept:" + key, "request_id": b"sentinel" + key[-1:]})
        assert resp["ok"], resp
    log = logging.getLogger("multiraft.server.client_service")
    level = log.level
    log.setLevel(logging.CRITICAL)  # thousands of refused frames would only slow the run
    yield s
    log.setLevel(level)
    store.stop(StoreError("test over"))
    loop.close()


# -- inputs -------------------------------------------------------------------------------------

keys = st.one_of(st.binary(min_size=1, max_size=8), st.just(b""))
values = st.one_of(st.none(), st.binary(max_size=16))
region_ids = st.one_of(st.sampled_from([1, 2]), st.integers(0, 2**64 - 1))
epochs = st.one_of(st.none(), st.lists(st.integers(0, 3), min_size=2, max_size=2))
request_ids = st.one_of(st.binary(max_size=12), st.binary(min_size=60, max_size=70))
batch_op = st.one_of(
    st.builds(lambda k, v: {"op": "put", "key": k, "value": v}, keys, st.binary(max_size=8)),
    st.builds(lambda k: {"op": "delete", "key": k}, keys),
    st.builds(lambda k, e, v: {"op": "cas", "key": k, "expected": e, "value": v},
              keys, values, values),
)


def _req(op: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"id": st.one_of(st.integers(0, 100), st.integers(0, 2**64 - 1)), "op": st.just(op),
         **fields}
    )


# One request of each op with its fields (valid more often than not: each field may be off).
requests = st.one_of(
    _req("ping"),
    _req("regions"),
    _req("get", region_id=region_ids, epoch=epochs, key=keys),
    _req("scan", region_id=region_ids, epoch=epochs, start=keys, end=keys,
         limit=st.one_of(st.integers(1, 20), st.integers(-2, 20_000))),
    _req("put", region_id=region_ids, epoch=epochs, key=keys, value=st.binary(max_size=16),
         request_id=request_ids),
    _req("delete", region_id=region_ids, epoch=epochs, key=keys, request_id=request_ids),
    _req("cas", region_id=region_ids, epoch=epochs, key=keys, expected=values, value=values,
         request_id=request_ids),
    _req("batch", region_id=region_ids, epoch=epochs, request_id=request_ids,
         ops=st.lists(batch_op, min_size=1, max_size=4)),
)


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


request_trees = st.one_of(
    requests, mutated_tree(requests, max_ops=1), mutated_tree(requests), garbage()
)
streams = st.lists(request_trees, min_size=1, max_size=3).map(
    lambda objs: b"".join(encode_frame(o) for o in objs)
)
inputs = st.one_of(streams, mutated(streams), st.binary(max_size=128))


def _frame(obj: Any) -> bytes:
    return encode_frame(obj)


# -- the contract -------------------------------------------------------------------------------


def _expected_answers(pieces: list[bytes]) -> tuple[int, bool]:
    """(requests, whether the stream breaks): what a decoder fed the same pieces returns
    before it fails (a piece that fails yields no request)."""
    dec = FrameDecoder(MAX_FRAME, strict_map_key=True)
    n = 0
    for piece in pieces:
        try:
            n += len(dec.feed(piece))
        except FrameError:
            return n, True
    return n, False


def _check_answer(resp: Any) -> None:
    assert isinstance(resp, dict) and set(resp) >= {"id", "ok"}, resp
    assert resp["id"] is None or type(resp["id"]) is int
    if resp["ok"] is True:
        assert "result" in resp
        return
    assert resp["ok"] is False
    err = resp["error"]
    assert err["code"] in CODES, err  # never INTERNAL: a request cannot break the store
    assert isinstance(err["message"], str) and isinstance(err["retryable"], bool)


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    out, prev = [], 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        out.append(data[prev:cut])
        prev = cut
    out.append(data[prev:])
    return out


def _run(service: Service, data: bytes, cuts: list[int]) -> None:
    internal = service.svc.stats.get("internal_errors", 0)
    pieces = _pieces(data, cuts)
    due, breaks = _expected_answers(pieces)
    with guard(len(data), memory=False):
        sock, conn = service.exchange(pieces)
    answers = FrameDecoder(strict_map_key=False).feed(bytes(sock.written))
    # Every request is answered; once the stream breaks the connection closes, and requests
    # still waiting on the store then get no answer (the client retries elsewhere).
    assert len(answers) == due if not breaks else len(answers) <= due, (answers, due)
    for resp in answers:
        _check_answer(resp)
    assert sock.closed == breaks
    assert conn.inflight == 0
    assert service.svc.stats.get("internal_errors", 0) == internal


@fuzz_settings(2000, families=2)
@given(inputs, request_trees, st.lists(st.integers(0, 1 << 10), max_size=3), seeds)
def test_client_requests(
    service: Service, data: bytes, tree: Any, cuts: list[int], seed: int
) -> None:
    def variants() -> Iterator[bytes]:
        yield from byte_variants(data, seed)
        yield from tree_variants(tree, seed + 1, _frame)

    run_inputs("server.client_service", variants(), lambda d: _run(service, d, cuts))
    # The service still serves, and the keys written before are as they were.
    for key in SENTINELS:
        rid, epoch = _region_of(service.store, key)
        resp = service.call({"id": 7, "op": "get", "region_id": rid, "epoch": epoch, "key": key})
        assert resp == {"id": 7, "ok": True, "result": b"kept:" + key}, resp


def test_service_still_writes_after_fuzzing(service: Service) -> None:
    """Runs after the fuzz test (same module fixture): a real put and get."""
    key = b"\x80after-the-fuzz"
    rid, epoch = _region_of(service.store, key)
    resp = service.call({"id": 1, "op": "put", "region_id": rid, "epoch": epoch, "key": key,
                         "value": b"v", "request_id": b"after"})
    assert resp == {"id": 1, "ok": True, "result": None}, resp
    resp = service.call({"id": 2, "op": "get", "region_id": rid, "epoch": epoch, "key": key})
    assert resp == {"id": 2, "ok": True, "result": b"v"}, resp


def test_regression_unhashable_batch_op(service: Service) -> None:
    """Found by the fuzzer: a batch op whose "op" is a list or a map raised TypeError
    (unhashable) in the validation and was answered INTERNAL."""
    ops: list[Any] = [[], {"x": 1}]
    for op in ops:
        resp = service.call({"id": 9, "op": "batch", "region_id": 1, "request_id": b"",
                             "ops": [{"op": "put", "key": b"\x00", "value": b""},
                                     {"op": op, "key": b"k", "value": b""}]})
        assert resp["ok"] is False and resp["error"]["code"] == "INVALID_REQUEST", resp
        assert "batch op 1" in resp["error"]["message"]
