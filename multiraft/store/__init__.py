"""The store: one process hosting many regions (sans-asyncio, like TiKV's raftstore).

`Store` (`store.py`) is built in layers, one module each, bottom up: `base` (state and
tunables), `outbox` (raft messages out), `lifecycle` (bootstrap, recovery, peer creation and
destruction), `hibernate` (ticks, hibernation, store liveness), `split` and `merge` (region
split and merge through raft), `split_check` (automatic split and merge), `messages` (raft
messages in), `apply` (the apply loop and membership changes), `promotion` (a new voter joins
as a learner and is promoted once caught up), and `store` itself (the round, the client API).
A `Peer` (`peer.py`) is one region replica. `kv` applies KV commands, `dedupe` keeps
request-id records, `cmd`, `admin_cmd` and `membership` are the entry codecs, `snapshot` the
snapshot data, `region` the metadata helpers, `errors` the store's error types.
"""

from .errors import (
    CatchUpTimeout,
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
    "CatchUpTimeout",
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
