"""`Client`: a blocking facade over `AsyncClient`, running its own event loop in a background
thread (safe to call from several threads at once; calls are pipelined on the loop).

    with Client(["127.0.0.1:20160"]) as c:
        c.put(b"k", b"v")
        assert c.get(b"k") == b"v"
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from .aio import AsyncClient
from .errors import ClientClosed
from .protocol import MAX_FRAME, RegionInfo

__all__ = ["Client"]

_T = TypeVar("_T")


class Client:
    """Blocking client; the same methods and arguments as `AsyncClient`."""

    def __init__(
        self,
        addrs: Iterable[str] | str,
        *,
        timeout: float = 10.0,
        attempt_timeout: float = 2.0,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self.aio = AsyncClient(
            addrs, timeout=timeout, attempt_timeout=attempt_timeout, max_frame=max_frame
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="multiraft-client", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()
        self._closed = False

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed:
            coro.close()
            raise ClientClosed("the client is closed")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()  # e.g. KeyboardInterrupt in the caller: stop the call too
            raise

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the background loop (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self.aio.close(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    @property
    def timeout(self) -> float:
        return self.aio.timeout

    # -- the API --------------------------------------------------------------------------------

    def get(self, key: bytes, *, timeout: float | None = None) -> bytes | None:
        return self._run(self.aio.get(key, timeout=timeout))

    def put(self, key: bytes, value: bytes, *, timeout: float | None = None) -> None:
        self._run(self.aio.put(key, value, timeout=timeout))

    def delete(self, key: bytes, *, timeout: float | None = None) -> None:
        self._run(self.aio.delete(key, timeout=timeout))

    def cas(
        self, key: bytes, expected: bytes | None, new: bytes | None, *, timeout: float | None = None
    ) -> bool:
        return self._run(self.aio.cas(key, expected, new, timeout=timeout))

    def scan(
        self, start: bytes = b"", end: bytes = b"", limit: int = 100, *, timeout: float | None = None
    ) -> list[tuple[bytes, bytes]]:
        return self._run(self.aio.scan(start, end, limit, timeout=timeout))

    def ping(self, addr: str | None = None, *, timeout: float | None = None) -> int:
        return self._run(self.aio.ping(addr, timeout=timeout))

    def refresh_regions(self, *, timeout: float | None = None) -> list[RegionInfo]:
        return self._run(self.aio.refresh_regions(timeout=timeout))
