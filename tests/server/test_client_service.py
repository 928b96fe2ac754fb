"""The client service over real TCP with raw frames: every op, pipelining, and a hostile
client (garbage, oversized frames, wrong types, unknown ops) that never disturbs the others."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from multiraft.client.protocol import FrameDecoder, encode_frame, parse_addr
from tests.client.harness import LocalStores


class Raw:
    """A blocking raw-frame connection to the client port."""

    def __init__(self, addr: str) -> None:
        self.sock = socket.create_connection(parse_addr(addr), timeout=10)
        self.dec = FrameDecoder(strict_map_key=False)
        self.queue: list[Any] = []

    def send(self, obj: Any) -> None:
        self.sock.sendall(encode_frame(obj))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> Any:
        while not self.queue:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.queue.extend(self.dec.feed(data))
        return self.queue.pop(0)

    def call(self, req: dict[str, Any]) -> Any:
        self.send(req)
        return self.recv()

    def closed_by_server(self) -> bool:
        """True once the server closed (reads EOF); answers before EOF are skipped."""
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def stores() -> Iterator[LocalStores]:
    with LocalStores(stores=1, regions=4) as ls:
        ls.wait_for_leaders()
        yield ls


@pytest.fixture
def raw(stores: LocalStores) -> Iterator[Raw]:
    r = Raw(stores.addrs()[0])
    yield r
    r.close()


def _regions(raw: Raw) -> list[dict[str, Any]]:
    resp = raw.call({"id": 1, "op": "regions"})
    assert resp["ok"], resp
    regions: list[dict[str, Any]] = resp["result"]["regions"]
    return sorted(regions, key=lambda r: r["start"])


def _region_for(raw: Raw, key: bytes) -> dict[str, Any]:
    for r in _regions(raw):
        if key >= r["start"] and (not r["end"] or key < r["end"]):
            return r
    raise AssertionError("the regions cover every key")


def _req(op: str, region: dict[str, Any], rid: int = 2, **fields: Any) -> dict[str, Any]:
    return {"id": rid, "op": op, "region_id": region["id"], "epoch": region["epoch"], **fields}


def test_ping_and_regions(stores: LocalStores, raw: Raw) -> None:
    assert raw.call({"id": 9, "op": "ping"}) == {"id": 9, "ok": True, "result": {"store_id": 1}}
    resp = raw.call({"id": 10, "op": "regions"})
    assert resp["id"] == 10 and resp["ok"]
    result = resp["result"]
    assert result["store_id"] == 1
    assert result["stores"] == {1: stores.addrs()[0]}
    regions = sorted(result["regions"], key=lambda r: r["start"])
    assert len(regions) == 4
    assert regions[0]["start"] == b"" and regions[-1]["end"] == b""
    for a, b in zip(regions, regions[1:], strict=False):
        assert a["end"] == b["start"]
    for r in regions:
        assert r["epoch"] == [1, 1] and r["leader"] == 1 and [p[1] for p in r["peers"]] == [1]


def test_every_op_round_trip(raw: Raw) -> None:
    r = _region_for(raw, b"rt-key")
    assert raw.call(_req("put", r, key=b"rt-key", value=b"v1", request_id=b"rt-1")) == {
        "id": 2, "ok": True, "result": None
    }
    assert raw.call(_req("get", r, key=b"rt-key"))["result"] == b"v1"
    assert raw.call(_req("cas", r, key=b"rt-key", expected=b"nope", value=b"v2"))["result"] is False
    assert raw.call(_req("cas", r, key=b"rt-key", expected=b"v1", value=b"v2"))["result"] is True
    scan = raw.call(_req("scan", r, start=b"rt-", end=b"rt.", limit=10))
    assert scan["result"] == [[b"rt-key", b"v2"]]
    batch = raw.call(
        _req("batch", r, request_id=b"rt-b", ops=[
            {"op": "put", "key": b"rt-a", "value": b"A"},
            {"op": "cas", "key": b"rt-key", "expected": b"v2", "value": None},
        ])
    )
    assert batch["result"] == {"applied": True, "previous": [None, b"v2"]}
    failed = raw.call(
        _req("batch", r, ops=[{"op": "delete", "key": b"rt-a"},
                              {"op": "cas", "key": b"rt-key", "expected": b"v2", "value": b"x"}])
    )
    assert failed["result"] == {"applied": False, "failed_op": 1, "current": None}
    assert raw.call(_req("get", r, key=b"rt-a"))["result"] == b"A"  # the batch was atomic
    assert raw.call(_req("delete", r, key=b"rt-a"))["ok"]
    assert raw.call(_req("get", r, key=b"rt-a"))["result"] is None


def test_a_retried_write_with_the_same_request_id_applies_once(raw: Raw) -> None:
    r = _region_for(raw, b"once")
    put_if_absent = _req("cas", r, key=b"once", expected=None, value=b"1", request_id=b"once-1")
    assert raw.call(put_if_absent)["result"] is True
    # The same request again (a retry): the recorded result, nothing applied twice.
    assert raw.call(put_if_absent)["result"] is True
    # A new request id is a new write: the compare fails now.
    assert raw.call({**put_if_absent, "request_id": b"once-2"})["result"] is False


def test_pipelined_requests_are_matched_by_id(raw: Raw) -> None:
    regions = _regions(raw)
    n = 300
    for i in range(n):
        key = b"pipe-%04d" % i
        region = next(r for r in regions if key >= r["start"] and (not r["end"] or key < r["end"]))
        raw.send(_req("put", region, rid=1000 + i, key=key, value=b"%d" % i, request_id=key))
    answers = [raw.recv() for _ in range(n)]
    assert sorted(a["id"] for a in answers) == list(range(1000, 1000 + n))
    assert all(a["ok"] for a in answers), [a for a in answers if not a["ok"]][:3]


def test_errors_carry_hints(raw: Raw) -> None:
    r = _region_for(raw, b"hint")
    stale = raw.call({**_req("get", r, key=b"hint"), "epoch": [1, 0]})
    assert stale["error"]["code"] == "EPOCH_NOT_MATCH" and stale["error"]["retryable"]
    assert stale["error"]["current_regions"] == [r]
    missing = raw.call(_req("get", {"id": 999, "epoch": [1, 1]}, key=b"hint"))
    assert missing["error"]["code"] == "REGION_NOT_FOUND"
    assert missing["error"]["region_id"] == 999
    other = next(x for x in _regions(raw) if x["id"] != r["id"])
    wrong = raw.call(_req("get", other, key=b"hint"))
    assert wrong["error"]["code"] == "KEY_NOT_IN_REGION"
    assert wrong["error"]["region"] == other


BAD_REQUESTS: list[tuple[Any, str]] = [
    ([1, 2, 3], "map"),
    ({"op": "get"}, "'id'"),
    ({"id": -1, "op": "get"}, "'id'"),
    ({"id": True, "op": "ping"}, "'id'"),
    ({"id": 1}, "unknown op"),
    ({"id": 1, "op": "frobnicate"}, "unknown op"),
    ({"id": 1, "op": 7}, "unknown op"),
    ({"id": 1, "op": "get", "key": b"k"}, "'region_id'"),
    ({"id": 1, "op": "get", "region_id": "1", "key": b"k"}, "'region_id'"),
    ({"id": 1, "op": "get", "region_id": 1, "key": "text"}, "'key'"),
    ({"id": 1, "op": "get", "region_id": 1, "key": b""}, "'key'"),
    ({"id": 1, "op": "get", "region_id": 1, "key": b"k" * 512}, "'key'"),
    ({"id": 1, "op": "get", "region_id": 1, "key": b"k", "epoch": [1]}, "'epoch'"),
    ({"id": 1, "op": "get", "region_id": 1, "key": b"k", "epoch": "1,1"}, "'epoch'"),
    ({"id": 1, "op": "put", "region_id": 1, "key": b"k"}, "'value'"),
    ({"id": 1, "op": "put", "region_id": 1, "key": b"k", "value": 5}, "'value'"),
    ({"id": 1, "op": "put", "region_id": 1, "key": b"k", "value": b"v", "request_id": 5}, "'request_id'"),
    ({"id": 1, "op": "cas", "region_id": 1, "key": b"k", "expected": 1}, "'expected'"),
    ({"id": 1, "op": "scan", "region_id": 1, "start": b"", "limit": 0}, "'limit'"),
    ({"id": 1, "op": "scan", "region_id": 1, "start": b""}, "'limit'"),
    ({"id": 1, "op": "scan", "region_id": 1, "start": 3, "limit": 1}, "'start'"),
    ({"id": 1, "op": "batch", "region_id": 1, "ops": []}, "'ops'"),
    ({"id": 1, "op": "batch", "region_id": 1, "ops": [{"op": "get", "key": b"k"}]}, "batch op 0"),
    ({"id": 1, "op": "batch", "region_id": 1, "ops": ["put"]}, "batch op 0"),
]


@pytest.mark.parametrize("req, mentions", BAD_REQUESTS)
def test_malformed_requests_get_invalid_request(raw: Raw, req: Any, mentions: str) -> None:
    resp = raw.call(req)
    assert resp["ok"] is False
    assert resp["error"]["code"] == "INVALID_REQUEST", resp
    assert mentions in resp["error"]["message"]
    expected_id = req.get("id") if isinstance(req, dict) and type(req.get("id")) is int else None
    assert resp["id"] == (expected_id if expected_id is not None and expected_id >= 0 else None)
    # The connection still serves.
    assert raw.call({"id": 77, "op": "ping"})["ok"]


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # a length of 1.2 GB: oversized
        (64 << 20).to_bytes(4, "big"),  # oversized
        (5).to_bytes(4, "big") + b"\xc1\xc1\xc1\xc1\xc1",  # not msgpack
        (0).to_bytes(4, "big"),  # empty
        (3).to_bytes(4, "big") + msgpack.packb({1: 2}),  # an int map key (refused)
    ],
)
def test_undecodable_or_oversized_frames_close_only_that_connection(
    stores: LocalStores, data: bytes
) -> None:
    bad_before = stores.stats(1)["bad_frames"]
    other = Raw(stores.addrs()[0])
    bad = Raw(stores.addrs()[0])
    try:
        assert other.call({"id": 1, "op": "ping"})["ok"]
        bad.send_raw(data)
        assert bad.closed_by_server()
        assert other.call({"id": 2, "op": "ping"})["ok"]
        r = _region_for(other, b"after-bad")
        assert other.call(_req("put", r, key=b"after-bad", value=b"ok"))["ok"]
        assert stores.stats(1)["bad_frames"] == bad_before + 1
    finally:
        bad.close()
        other.close()


def test_too_many_in_flight_requests_get_server_busy(stores: LocalStores, raw: Raw) -> None:
    # 200 gets in one write: they arrive in one chunk, before any round could answer one,
    # so all past max_inflight_per_conn (64 here) are refused.
    r = _region_for(raw, b"busy")
    svc = stores.services[1]
    stores.call(lambda: setattr(svc, "max_inflight_per_conn", 64))
    try:
        payload = b"".join(encode_frame(_req("get", r, rid=i, key=b"busy")) for i in range(200))
        raw.send_raw(payload)
        answers = [raw.recv() for _ in range(200)]
    finally:
        stores.call(lambda: setattr(svc, "max_inflight_per_conn", 1024))
    codes = [a["error"]["code"] if not a["ok"] else "OK" for a in answers]
    assert codes.count("SERVER_BUSY") >= 200 - 64
    assert codes.count("OK") >= 1
    assert set(codes) <= {"OK", "SERVER_BUSY"}
    assert stores.stats(1)["busy"] >= 200 - 64
    assert raw.call({"id": 5, "op": "ping"})["ok"]


def test_stats_count_requests_and_errors(stores: LocalStores, raw: Raw) -> None:
    before = stores.stats(1)
    raw.call({"id": 1, "op": "ping"})
    raw.call({"id": 1, "op": "nope"})
    after = stores.stats(1)
    assert after["requests_ping"] == before.get("requests_ping", 0) + 1
    assert after["errors_INVALID_REQUEST"] == before.get("errors_INVALID_REQUEST", 0) + 1
    assert all(isinstance(v, int) for v in after.values())


def test_lost_answer_hook_drops_or_closes(stores: LocalStores, raw: Raw) -> None:
    r = _region_for(raw, b"hook")
    svc = stores.services[1]
    stores.call(lambda: setattr(svc, "response_fault", lambda op, resp: "drop"))
    try:
        raw.send(_req("put", r, rid=1, key=b"hook", value=b"1", request_id=b"hook-1"))
        # Pings are answered at once (not through the hook): the put's answer never comes.
        assert raw.call({"id": 2, "op": "ping"})["id"] == 2
        stores.call(lambda: setattr(svc, "response_fault", lambda op, resp: "close"))
        raw.send(_req("get", r, rid=3, key=b"hook"))
        assert raw.closed_by_server()
    finally:
        stores.call(lambda: setattr(svc, "response_fault", None))
    fresh = Raw(stores.addrs()[0])
    try:
        assert fresh.call(_req("get", r, key=b"hook"))["result"] == b"1"
    finally:
        fresh.close()
