"""Errors of the raft core, with raft-rs's names.

`Error` is the base of everything the core raises on purpose. Storage implementations raise the
`StorageError` family; the core turns `Compacted` / `Unavailable` into snapshots or probes where
raft-rs does, and lets the rest reach the caller. A broken internal invariant is an
`AssertionError` (raft-rs panics), never one of these.
"""

from __future__ import annotations

__all__ = [
    "Error",
    "StepLocalMsg",
    "StepPeerNotFound",
    "ProposalDropped",
    "ConfigInvalid",
    "ConfChangeError",
    "Exists",
    "RequestSnapshotDropped",
    "StorageError",
    "Compacted",
    "Unavailable",
    "LogTemporarilyUnavailable",
    "SnapshotOutOfDate",
    "SnapshotTemporarilyUnavailable",
]


class Error(Exception):
    """Base class of the raft core's errors."""


class StepLocalMsg(Error):
    """A local-only message type (MsgHup, MsgBeat, MsgUnreachable, MsgSnapStatus,
    MsgCheckQuorum) was passed to `RawNode.step` from outside."""

    def __init__(self, msg: str = "raft: cannot step raft local message") -> None:
        super().__init__(msg)


class StepPeerNotFound(Error):
    """A response message came from a peer the progress tracker does not know."""

    def __init__(self, msg: str = "raft: cannot step as peer not found") -> None:
        super().__init__(msg)


class ProposalDropped(Error):
    """The proposal was dropped: no leader, a leader transfer in flight, the leader was removed,
    or the uncommitted-size limit was hit. Retry later."""

    def __init__(self, msg: str = "raft: proposal dropped") -> None:
        super().__init__(msg)


class ConfigInvalid(Error):
    """`Config.validate()` refused the configuration; the message says which rule."""


class ConfChangeError(Error):
    """A configuration change cannot be applied (e.g. "removed all voters")."""


class Exists(Error):
    """A peer id is already present in the named set."""

    def __init__(self, id: int, set_name: str) -> None:
        super().__init__(f"The node {id} already exists in the {set_name} set.")
        self.id = id
        self.set_name = set_name


class RequestSnapshotDropped(Error):
    """`request_snapshot` was refused: no leader, a snapshot already pending, or the node's
    last entry is not of the current term."""

    def __init__(self, msg: str = "raft: request snapshot dropped") -> None:
        super().__init__(msg)


class StorageError(Error):
    """Base class of the errors a `Storage` raises."""


class Compacted(StorageError):
    """The requested index is unavailable because it precedes the last snapshot."""

    def __init__(self, msg: str = "log compacted") -> None:
        super().__init__(msg)


class Unavailable(StorageError):
    """The requested index is past the last index of the log."""

    def __init__(self, msg: str = "log unavailable") -> None:
        super().__init__(msg)


class LogTemporarilyUnavailable(StorageError):
    """The entries are being fetched asynchronously; `RawNode.on_entries_fetched` resumes."""

    def __init__(self, msg: str = "log is temporarily unavailable") -> None:
        super().__init__(msg)


class SnapshotOutOfDate(StorageError):
    """The snapshot is older than what the storage already holds."""

    def __init__(self, msg: str = "snapshot out of date") -> None:
        super().__init__(msg)


class SnapshotTemporarilyUnavailable(StorageError):
    """The snapshot is being generated; the leader retries later."""

    def __init__(self, msg: str = "snapshot is temporarily unavailable") -> None:
        super().__init__(msg)
