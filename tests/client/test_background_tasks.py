"""The client's background work leaves no "Task exception was never retrieved" behind: a
`regions` refresh asks every store and returns with the first answer; the others may fail
later (no answer in time), and nobody awaits them (seen in the nemesis runs, where a paused
store never answers)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from multiraft.client import AsyncClient
from multiraft.client.protocol import FrameDecoder, encode_frame

REGION = {"id": 1, "start": b"", "end": b"", "epoch": [1, 1], "peers": [[1, 1, 0]], "leader": 1}


async def _server(answer: bool) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        try:
            while data := await reader.read(1 << 16):
                for req in decoder.feed(data):
                    if answer:
                        result = {"store_id": 1, "regions": [REGION], "stores": {}}
                        writer.write(encode_frame({"id": req["id"], "ok": True, "result": result}))
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_a_refresh_that_returned_leaves_no_unretrieved_failure() -> None:
    async def main() -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        fast, fast_addr = await _server(True)
        mute, mute_addr = await _server(False)
        client = AsyncClient([fast_addr, mute_addr], attempt_timeout=0.2)
        try:
            regions = await client.refresh_regions(timeout=5)
            assert [r.id for r in regions] == [1]
            # The mute store's fetch gives up after attempt_timeout, in the background.
            for _ in range(100):
                if not client._background:
                    break
                await asyncio.sleep(0.05)
            assert not client._background
            gc.collect()
            await asyncio.sleep(0)
            # (Before the servers close: their handlers' cancellation is asyncio's own noise.)
            found = list(errors)
        finally:
            await client.close()
            fast.close()
            mute.close()
        return found

    errors = asyncio.run(main())
    assert [(e.get("message"), repr(e.get("exception")), str(e.get("future"))[:150]) for e in errors] == []


def test_a_refresh_its_callers_gave_up_on_leaves_no_unretrieved_failure() -> None:
    """Every store is mute: the caller's deadline passes first, then the refresh itself fails
    with nobody waiting for it (seen with stores too busy to answer in time)."""

    async def main() -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        mute, mute_addr = await _server(False)
        client = AsyncClient([mute_addr], attempt_timeout=0.3)
        try:
            # Twice: the second refresh replaces the first, failed one, which is then
            # collected (asyncio reports an unretrieved exception when it is).
            for _ in range(2):
                try:
                    await client.refresh_regions(timeout=0.05)
                except Exception:
                    pass  # (ClientTimeout: expected)
                for _ in range(100):
                    if not client._background:
                        break
                    await asyncio.sleep(0.05)
                assert not client._background
            gc.collect()
            await asyncio.sleep(0)
            found = list(errors)
        finally:
            await client.close()
            mute.close()
        return found

    errors = asyncio.run(main())
    assert [(e.get("message"), repr(e.get("exception")), str(e.get("future"))[:150]) for e in errors] == []
