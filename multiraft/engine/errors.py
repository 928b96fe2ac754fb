"""Errors of the engine layer.

`EngineError` is the base of everything an engine raises on purpose. A caller bug (an empty or
oversized key, an unknown column family, writing a batch twice) is a `ValueError`; a broken
internal invariant is an `AssertionError`.
"""

from __future__ import annotations

__all__ = ["EngineError", "EngineClosed", "WriteFailed", "SnapshotInvalidated"]


class EngineError(Exception):
    """Base class of the engine's errors."""


class EngineClosed(EngineError):
    """The engine (or the snapshot) was closed."""

    def __init__(self, msg: str = "engine is closed") -> None:
        super().__init__(msg)


class WriteFailed(EngineError):
    """A write batch could not be committed (I/O error, disk full, map size limit). Nothing of
    the batch is visible; whether the engine can take further writes is unknown, so the store
    treats this as fatal and recovers by restarting from what is on disk."""


class SnapshotInvalidated(EngineError):
    """The read view is gone: LMDB grew its memory map while the snapshot was open (a resize
    invalidates every open read transaction). Take a new snapshot."""

    def __init__(self, msg: str = "snapshot invalidated by a map resize; take a new one") -> None:
        super().__init__(msg)
