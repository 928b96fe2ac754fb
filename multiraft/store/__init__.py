"""The store: one process hosting many regions (sans-asyncio).

So far: region metadata helpers, the store's error types, the KV command codec (`cmd`) and
the KV apply path (`apply`); the Store and Peer come next
(issue 5).
"""

from .errors import (
    EpochNotMatch,
    InvalidRequest,
    KeyNotInRegion,
    NotLeader,
    RegionBusy,
    RegionNotFound,
    ServerBusy,
    StaleCommand,
    StoreError,
    Timeout,
)
from .region import (
    check_key_in_region,
    check_region_epoch,
    find_peer,
    find_peer_on_store,
    is_epoch_stale,
    key_in_region,
    new_region,
    ranges_overlap,
    split_keys,
)

__all__ = [
    "EpochNotMatch",
    "KeyNotInRegion",
    "NotLeader",
    "RegionBusy",
    "InvalidRequest",
    "RegionNotFound",
    "ServerBusy",
    "StaleCommand",
    "StoreError",
    "Timeout",
    "check_key_in_region",
    "check_region_epoch",
    "find_peer",
    "find_peer_on_store",
    "is_epoch_stale",
    "key_in_region",
    "new_region",
    "ranges_overlap",
    "split_keys",
]
