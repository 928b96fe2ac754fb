"""Errors of the store layer: each has a stable code (on the wire, in logs, in metrics) and,
where it helps the client retry, a hint (the leader, the current regions)."""

from __future__ import annotations

from typing import Any

from multiraft.proto.serverpb_pb2 import Peer, Region

__all__ = [
    "StoreError",
    "NotLeader",
    "RegionNotFound",
    "KeyNotInRegion",
    "EpochNotMatch",
    "ServerBusy",
    "Timeout",
    "StaleCommand",
    "RegionBusy",
    "InvalidRequest",
    "MergeRefused",
    "MergeRolledBack",
]


class StoreError(Exception):
    """Base class; `code` is stable, `retryable` tells a client whether to retry."""

    code = "STORE_ERROR"
    retryable = False

    def to_wire(self) -> dict[str, Any]:
        """The error as a msgpack-able dict: {"code", "message", ...hints}."""
        return {"code": self.code, "message": str(self)}


class NotLeader(StoreError):
    """This replica is not the region's leader; `leader` is the one it knows of, if any."""

    code = "NOT_LEADER"
    retryable = True

    def __init__(self, region_id: int, leader: Peer | None = None) -> None:
        who = f"peer {leader.id} on store {leader.store_id}" if leader is not None else "unknown"
        super().__init__(f"region {region_id}: not leader (leader: {who})")
        self.region_id = region_id
        self.leader = leader

    def to_wire(self) -> dict[str, Any]:
        d = super().to_wire()
        d["region_id"] = self.region_id
        if self.leader is not None:
            d["leader"] = {"peer_id": self.leader.id, "store_id": self.leader.store_id}
        return d


class RegionNotFound(StoreError):
    """No replica of the region here; `current_regions` are the regions here that now hold
    the keys asked for (the region was merged away or split), if any."""

    code = "REGION_NOT_FOUND"
    retryable = True

    def __init__(self, region_id: int, current_regions: list[Region] | None = None) -> None:
        super().__init__(f"region {region_id} not found on this store")
        self.region_id = region_id
        self.current_regions = current_regions or []

    def to_wire(self) -> dict[str, Any]:
        d = super().to_wire()
        d["region_id"] = self.region_id
        if self.current_regions:
            d["current_regions"] = [r.SerializeToString() for r in self.current_regions]
        return d


class KeyNotInRegion(StoreError):
    """`region` (as it is now) does not hold `key`; `current_regions` are the regions of this
    store that do, if any."""

    code = "KEY_NOT_IN_REGION"
    retryable = True

    def __init__(self, key: bytes, region: Region, current_regions: list[Region] | None = None) -> None:
        super().__init__(
            f"key {key!r} is not in region {region.id} "
            f"[{region.start_key!r}, {region.end_key!r})"
        )
        self.key = key
        self.region = region
        self.current_regions = current_regions or []


class EpochNotMatch(StoreError):
    """The request's region epoch is stale; `current_regions` is what the store has now."""

    code = "EPOCH_NOT_MATCH"
    retryable = True

    def __init__(self, message: str, current_regions: list[Region]) -> None:
        super().__init__(message)
        self.current_regions = current_regions

    def to_wire(self) -> dict[str, Any]:
        d = super().to_wire()
        d["current_regions"] = [r.SerializeToString() for r in self.current_regions]
        return d


class ServerBusy(StoreError):
    code = "SERVER_BUSY"
    retryable = True


class Timeout(StoreError):
    code = "TIMEOUT"
    retryable = True


class StaleCommand(StoreError):
    """The proposal was lost to a leadership or term change before it committed; it was not
    applied and may be retried (with the same request id)."""

    code = "STALE_COMMAND"
    retryable = True


class RegionBusy(StoreError):
    """The region cannot serve now (e.g. merging, applying a snapshot)."""

    code = "REGION_BUSY"
    retryable = True


class InvalidRequest(StoreError):
    """The request can never succeed as asked (e.g. adding a peer on a store that already has
    one, transferring leadership to a store without a replica); nothing changed."""

    code = "INVALID_REQUEST"


class MergeRefused(StoreError):
    """The regions cannot be merged as they are (not adjacent, not on the same stores);
    nothing changed."""

    code = "MERGE_REFUSED"


class MergeRolledBack(StoreError):
    """The merge was prepared but rolled back (its target changed before it could commit):
    both regions serve as before."""

    code = "MERGE_ROLLED_BACK"


class CatchUpTimeout(StoreError):
    """A replica added as a learner on the way to becoming a voter did not catch up with the
    leader in time (its store is down, unreachable or slow): it stays a learner, the region's
    voters are as they were."""

    code = "CATCH_UP_TIMEOUT"
