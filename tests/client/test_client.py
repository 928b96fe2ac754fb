"""`AsyncClient` and `Client` against one real store (4 regions) over TCP, and the `kv` CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from multiraft.__main__ import main
from multiraft.client import AsyncClient, Client, InvalidRequest
from multiraft.client.protocol import MAX_KEY, RegionInfo
from tests.client.harness import LocalStores

# Keys spread over the 4 initial regions (split at 0x40, 0x80, 0xc0).
SPREAD = [bytes([b]) + b"-%03d" % i for i, b in enumerate(range(0, 256, 8))]


@pytest.fixture(scope="module")
def stores() -> Iterator[LocalStores]:
    with LocalStores(stores=1, regions=4) as ls:
        ls.wait_for_leaders()
        yield ls


def test_sync_client_basic_ops(stores: LocalStores) -> None:
    with Client(stores.addrs()) as c:
        assert c.get(b"sync-k") is None
        c.put(b"sync-k", b"v1")
        assert c.get(b"sync-k") == b"v1"
        assert c.cas(b"sync-k", b"v1", b"v2") is True
        assert c.cas(b"sync-k", b"v1", b"v3") is False
        assert c.get(b"sync-k") == b"v2"
        assert c.cas(b"sync-new", None, b"created") is True
        assert c.cas(b"sync-new", None, b"again") is False
        assert c.cas(b"sync-new", b"created", None) is True  # a compare-and-delete
        assert c.get(b"sync-new") is None
        c.delete(b"sync-k")
        assert c.get(b"sync-k") is None
        c.delete(b"sync-k")  # deleting an absent key is fine
        assert c.ping() == 1
        regions = c.refresh_regions()
        assert [r.start for r in regions] == [b"", b"\x40\x00", b"\x80\x00", b"\xc0\x00"]
        assert all(r.leader == 1 for r in regions)


def test_scan_crosses_region_boundaries(stores: LocalStores) -> None:
    with Client(stores.addrs()) as c:
        for k in SPREAD:
            c.put(k, b"v" + k)
        everything = c.scan(SPREAD[0], SPREAD[-1] + b"\x00", limit=1000)
        assert everything == [(k, b"v" + k) for k in SPREAD]
        # A limit stops in the middle of a region; start / end clip both sides.
        assert [k for k, _ in c.scan(SPREAD[3], SPREAD[20], limit=5)] == SPREAD[3:8]
        assert [k for k, _ in c.scan(SPREAD[3], SPREAD[20], limit=100)] == SPREAD[3:20]
        # From the first region's start to the last region's (unbounded) end.
        keys = [k for k, _ in c.scan(b"", b"", limit=10_000)]
        assert keys == sorted(keys) and set(SPREAD) <= set(keys)
        assert c.scan(b"\x41", b"\x41\x00", limit=10) == []
        assert c.scan(b"", b"", limit=0) == []


def test_scan_pages_past_the_per_request_limit(stores: LocalStores) -> None:
    async def go() -> None:
        # Writes in waves of 500: thousands at once outlast a request's timeout on a loaded
        # machine, and what is tested here is the scan.
        async with AsyncClient(stores.addrs(), timeout=60) as c:
            keys = [b"\x90page-%05d" % i for i in range(10_500)]
            for i in range(0, len(keys), 500):
                await asyncio.gather(*(c.put(k, b"x") for k in keys[i : i + 500]))
            got = await c.scan(b"\x90page-", b"\x90page.", limit=20_000)
            assert [k for k, _ in got] == keys

    asyncio.run(go())


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_async_client_pipelines_hundreds_of_calls_on_one_connection(
    stores: LocalStores, run: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    async def go() -> None:
        async with AsyncClient(stores.addrs()) as c:
            keys = [b"\x10pipe-%04d" % i for i in range(500)]
            await asyncio.gather(*(c.put(k, k[::-1]) for k in keys))
            values = await asyncio.gather(*(c.get(k) for k in keys))
            assert values == [k[::-1] for k in keys]
            swapped = await asyncio.gather(*(c.cas(k, k[::-1], b"n") for k in keys))
            assert all(swapped)
            assert len(c._conns) == 1

    before = stores.stats(1).get("connections", 0)
    run(go())
    assert stores.stats(1)["connections"] == before + 1


def test_server_busy_is_retried(stores: LocalStores) -> None:
    svc = stores.services[1]
    stores.call(lambda: setattr(svc, "max_inflight_per_conn", 8))
    busy_before = stores.stats(1)["busy"]
    try:

        async def go() -> None:
            async with AsyncClient(stores.addrs(), timeout=30) as c:
                await c.refresh_regions()
                keys = [b"\x20busy-%03d" % i for i in range(100)]
                # No round runs: 8 requests wait in the store, the others are refused.
                stores.hold_rounds(True)
                puts = asyncio.gather(*(c.put(k, b"v") for k in keys))
                while stores.stats(1)["busy"] == busy_before:
                    await asyncio.sleep(0.01)
                stores.hold_rounds(False)
                await puts
                assert await asyncio.gather(*(c.get(k) for k in keys)) == [b"v"] * 100

        asyncio.run(go())
    finally:
        stores.hold_rounds(False)
        stores.call(lambda: setattr(svc, "max_inflight_per_conn", 1024))


def test_stale_epoch_in_the_cache_is_refreshed_from_the_error(stores: LocalStores) -> None:
    async def go() -> None:
        async with AsyncClient(stores.addrs()) as c:
            await c.put(b"\x50epoch", b"1")
            real = c.cache.lookup(b"\x50epoch")
            assert real is not None
            # Pretend the client cached an older layout of that region.
            c.cache.invalidate(real.id)
            c.cache.update(RegionInfo(real.id, real.start, real.end, 1, 0, real.peers, 1))
            assert await c.get(b"\x50epoch") == b"1"
            fresh = c.cache.lookup(b"\x50epoch")
            assert fresh is not None and fresh.version == real.version

    before = stores.stats(1).get("errors_EPOCH_NOT_MATCH", 0)
    asyncio.run(go())
    assert stores.stats(1)["errors_EPOCH_NOT_MATCH"] == before + 1


def test_bad_arguments_fail_fast_without_retrying(stores: LocalStores) -> None:
    with Client(stores.addrs(), timeout=30) as c:
        with pytest.raises(InvalidRequest):
            c.put(b"", b"v")
        with pytest.raises(InvalidRequest):
            c.get(b"k" * (MAX_KEY + 1))
        with pytest.raises(TypeError):
            c.put("text", b"v")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Client(["nohost"])


def test_a_key_of_max_length_scans_on(
    stores: LocalStores, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One pair per request: the scan continues after each key, even one of MAX_KEY bytes.
    monkeypatch.setattr("multiraft.client.aio.MAX_SCAN_LIMIT", 1)
    with Client(stores.addrs()) as c:
        a = b"\x6b" + b"\xff" * (MAX_KEY - 1)
        b = b"\x6c"
        c.put(a, b"a")
        c.put(b, b"b")
        assert c.scan(b"\x6b", b"\x6d", limit=5) == [(a, b"a"), (b, b"b")]


# -- the CLI ------------------------------------------------------------------------------------


def _kv(stores: LocalStores, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["kv", "--client", ",".join(stores.addrs()), "--timeout", "10", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli(stores: LocalStores, capsys: pytest.CaptureFixture[str]) -> None:
    assert _kv(stores, capsys, "put", "cli-a", "hello world") == (0, "OK\n", "")
    assert _kv(stores, capsys, "get", "cli-a") == (0, "hello world\n", "")
    code, out, err = _kv(stores, capsys, "get", "cli-missing")
    assert (code, out) == (1, "") and "not found" in err
    assert _kv(stores, capsys, "cas", "cli-a", "hello world", "bye") == (0, "swapped\n", "")
    code, out, err = _kv(stores, capsys, "cas", "cli-a", "hello world", "again")
    assert (code, out) == (1, "") and "not swapped" in err
    assert _kv(stores, capsys, "cas", "--expect-absent", "cli-b", "new")[0] == 0
    assert _kv(stores, capsys, "cas", "--new-absent", "cli-b", "new")[0] == 0
    assert _kv(stores, capsys, "put", "cli-c", "3")[0] == 0
    assert _kv(stores, capsys, "scan", "cli-", "cli.") == (0, "cli-a\tbye\ncli-c\t3\n", "")
    assert _kv(stores, capsys, "scan", "cli-", "cli.", "--limit", "1") == (0, "cli-a\tbye\n", "")
    assert _kv(stores, capsys, "delete", "cli-c") == (0, "OK\n", "")
    code, out, _ = _kv(stores, capsys, "--json", "scan", "cli-", "cli.")
    assert code == 0 and json.loads(out) == {"pairs": [["cli-a", "bye"]]}
    code, out, _ = _kv(stores, capsys, "--json", "get", "cli-missing")
    assert code == 1 and json.loads(out) == {"key": "cli-missing", "value": None}
    code, out, _ = _kv(stores, capsys, "--json", "cas", "cli-a", "bye", "ciao")
    assert code == 0 and json.loads(out) == {"swapped": True}
    # Binary keys and values with --hex.
    assert _kv(stores, capsys, "--hex", "put", "ff00", "00010203")[0] == 0
    assert _kv(stores, capsys, "--hex", "get", "ff00") == (0, "00010203\n", "")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--hex", "get", "zz"], "not hex"),
        (["cas", "k", "only-one"], "cas needs KEY EXPECTED NEW"),
        (["cas", "--expect-absent", "--new-absent", "k", "x"], "cas needs KEY"),
        (["get", ""], "KEY must be 1..511 bytes, got 0"),
        (["put", "k" * 512, "v"], "KEY must be 1..511 bytes, got 512"),
        (["scan", "--limit", "-1"], "--limit must be >= 0"),
        (["--timeout", "0", "get", "k"], "--timeout must be positive"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(
    stores: LocalStores, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _kv(stores, capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("multiraft kv: error: ") and message in err


def test_cli_bad_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["kv", "--client", "127.0.0.1:1,nohost", "get", "k"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "--client" in err and "nohost" in err


def test_cli_unreachable_cluster_fails_at_connect(capsys: pytest.CaptureFixture[str]) -> None:
    # A long --timeout: the call is never tried, the connect already fails.
    code = main(["kv", "--client", "127.0.0.1:1", "--timeout", "600", "get", "k"])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1
    assert "no store accepts a connection: 127.0.0.1:1: " in err
