"""The Python client of a multiraft cluster: `AsyncClient` (asyncio) and `Client` (blocking).

Both route each request to its region's leader through a region cache, retry what can be
retried (leader changes, splits, busy stores, lost connections) until the call's timeout, and
apply a retried write at most once. Errors derive from `ClientError`; a call that cannot
succeed in time raises `ClientTimeout` (alias `TimeoutError`). The wire protocol is in
`multiraft.client.protocol`.
"""

from __future__ import annotations

from .aio import AsyncClient
from .errors import (
    ClientClosed,
    ClientError,
    ClientTimeout,
    InvalidRequest,
    ProtocolError,
    ServerError,
    StoreUnavailable,
    TimeoutError,
)
from .protocol import RegionInfo
from .sync import Client

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "ClientTimeout",
    "TimeoutError",
    "ServerError",
    "InvalidRequest",
    "ClientClosed",
    "StoreUnavailable",
    "ProtocolError",
    "RegionInfo",
]
