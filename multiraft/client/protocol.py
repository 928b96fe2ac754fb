"""The client <-> store wire protocol (one codec module per wire schema; no I/O here).

Transport: TCP. Each frame is a u32 big-endian payload length followed by a msgpack payload
(binary strings as msgpack `bin`, text as `str`). A frame longer than the receiver's maximum
(`MAX_FRAME` by default) or a payload that is not msgpack ends the connection.

Requests are maps, pipelined: a client may have many in flight on one connection, and the
responses may come back in any order, matched by `id`::

    {"id": int, "op": str, ...fields of the op}

    op        fields                                                    result
    ping      -                                                         {"store_id"}
    regions   -                                                         see below
    get       region_id, epoch, key                                     value | None
    scan      region_id, epoch, start, end, limit                       [[key, value], ...]
    put       region_id, epoch, key, value, request_id                  None
    delete    region_id, epoch, key, request_id                         None
    cas       region_id, epoch, key, expected, value, request_id        bool (swapped)
    batch     region_id, epoch, ops, request_id                         see below

`epoch` is `[conf_ver, version]` of the region as the client knows it, or absent/None (no
check). `scan` reads `start <= key < end` clipped to the region (`end` b"" = the region's end;
`start` must lie in the region, b"" = the region's start) and at most `limit` pairs. `cas`
swaps `key` from `expected` to `value`; `expected` None means "must not exist", `value` None
deletes. `request_id` (opaque bytes, at most `MAX_REQUEST_ID`) makes a retried write apply at
most once: a client reuses it for every retry of one call. A `batch` applies its `ops` (each
`{"op": "put"|"delete"|"cas", "key", "value", "expected"}`) atomically; its result is
`{"applied": true, "previous": [value | None per op]}` or, when a compare failed,
`{"applied": false, "failed_op": index, "current": value | None}`.

Responses::

    {"id": int, "ok": true, "result": ...}
    {"id": int | None, "ok": false, "error": {"code": str, "message": str, "retryable": bool,
                                             ...hints}}

`id` is None only when the request carried no usable id. Error codes and their hints:

    NOT_LEADER         region_id, leader: {"peer_id", "store_id", "addr" (client address or
                       None)} when this store knows the leader
    EPOCH_NOT_MATCH    current_regions: [region, ...] (as in `regions`)
    REGION_NOT_FOUND   region_id; current_regions: the regions of this store that hold the
                       request's key now (it was merged or split away), when there are any
    KEY_NOT_IN_REGION  key, region; current_regions: the regions of this store that hold the
                       key, when there are any
    STALE_COMMAND, SERVER_BUSY, REGION_BUSY, TIMEOUT    (retry, with the same request id)
    INVALID_REQUEST    the request can never succeed as sent (bad field, unknown op)
    INTERNAL           a bug on the store; logged there

`regions` answers `{"store_id": int, "regions": [region, ...], "stores": {store_id: addr}}`
with every region this store hosts, where a region is::

    {"id": int, "start": bytes, "end": bytes (b"" = +inf), "epoch": [conf_ver, version],
     "peers": [[peer_id, store_id, role], ...], "leader": store_id | None}

`role` is the serverpb PeerRole value (0 voter, 1 learner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgpack

__all__ = [
    "MAX_FRAME",
    "MAX_KEY",
    "MAX_VALUE",
    "MAX_REQUEST_ID",
    "MAX_SCAN_LIMIT",
    "OPS",
    "WRITE_OPS",
    "RETRYABLE_CODES",
    "FrameError",
    "FrameDecoder",
    "RegionInfo",
    "encode_frame",
    "pack",
    "region_from_wire",
    "format_addr",
    "parse_addr",
]

# Largest payload accepted by default (a max-size value plus its envelope fits).
MAX_FRAME: Final = 16 << 20
# Keys are 1..MAX_KEY bytes, values at most MAX_VALUE bytes (the store's limits, cmd.py).
MAX_KEY: Final = 511
MAX_VALUE: Final = 8 << 20
MAX_REQUEST_ID: Final = 64
# Most pairs one `scan` request returns (a client asks again for more).
MAX_SCAN_LIMIT: Final = 10_000

OPS: Final = frozenset({"ping", "regions", "get", "scan", "put", "delete", "cas", "batch"})
WRITE_OPS: Final = frozenset({"put", "delete", "cas", "batch"})
# Errors after which the same request may succeed later (the client retries them).
RETRYABLE_CODES: Final = frozenset(
    {
        "NOT_LEADER",
        "EPOCH_NOT_MATCH",
        "REGION_NOT_FOUND",
        "KEY_NOT_IN_REGION",
        "STALE_COMMAND",
        "SERVER_BUSY",
        "REGION_BUSY",
        "TIMEOUT",
    }
)

_HEADER: Final = 4


class FrameError(ValueError):
    """A frame that cannot be read: too long, or not msgpack. The connection must end."""


def pack(obj: Any) -> bytes:
    """msgpack payload of one frame (without the length prefix)."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def encode_frame(obj: Any) -> bytes:
    """One whole frame: u32 big-endian length + msgpack payload."""
    payload = pack(obj)
    return len(payload).to_bytes(_HEADER, "big") + payload


class FrameDecoder:
    """Splits a byte stream into decoded msgpack payloads.

    `strict_map_key=True` (the server: requests come from anyone) admits only str/bytes map
    keys; the client decodes with False because `regions` maps store ids (ints) to addresses.
    Invariant: `_buf` holds the bytes received and not yet returned as a whole frame.
    """

    __slots__ = ("_buf", "max_frame", "_strict")

    def __init__(self, max_frame: int = MAX_FRAME, *, strict_map_key: bool = True) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame
        self._strict = strict_map_key

    def feed(self, data: bytes) -> list[Any]:
        """The payloads completed by `data`, in order. Raises FrameError (then the stream is
        unusable: the caller closes the connection)."""
        buf = self._buf
        buf += data
        out: list[Any] = []
        pos = 0
        end = len(buf)
        while end - pos >= _HEADER:
            n = int.from_bytes(buf[pos : pos + _HEADER], "big")
            if n > self.max_frame:
                raise FrameError(f"frame of {n} bytes exceeds the maximum of {self.max_frame}")
            if n == 0:
                raise FrameError("empty frame")
            if end - pos - _HEADER < n:
                break
            start = pos + _HEADER
            try:
                out.append(
                    msgpack.unpackb(
                        buf[start : start + n], raw=False, strict_map_key=self._strict
                    )
                )
            except Exception as e:  # msgpack raises several types on garbage
                raise FrameError(f"undecodable frame: {e}") from None
            pos = start + n
        if pos:
            del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


@dataclass(slots=True)
class RegionInfo:
    """One region as the client caches it. `leader` is a store id or None (unknown)."""

    id: int
    start: bytes
    end: bytes  # b"" = +inf
    conf_ver: int
    version: int
    peers: list[tuple[int, int, int]]  # (peer_id, store_id, role)
    leader: int | None = None

    def contains(self, key: bytes) -> bool:
        return key >= self.start and (not self.end or key < self.end)

    @property
    def epoch(self) -> list[int]:
        return [self.conf_ver, self.version]

    def store_ids(self) -> list[int]:
        return [p[1] for p in self.peers]


def _wire_bytes(v: Any) -> bytes:
    # (Not bytes(v): an integer there would allocate that many zero bytes.)
    if type(v) is not bytes:
        raise TypeError(f"expected bytes, got {type(v).__name__}")
    return v


def region_from_wire(d: Any) -> RegionInfo:
    """Parse one wire region (see the module docstring); raises ValueError if malformed."""
    try:
        epoch = d["epoch"]
        peers = [(int(p[0]), int(p[1]), int(p[2])) for p in d.get("peers") or []]
        leader = d.get("leader")
        info = RegionInfo(
            id=int(d["id"]),
            start=_wire_bytes(d["start"]),
            end=_wire_bytes(d["end"]),
            conf_ver=int(epoch[0]),
            version=int(epoch[1]),
            peers=peers,
            leader=int(leader) if leader is not None else None,
        )
    except (KeyError, IndexError, TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"malformed region {d!r:.200}: {e}") from None
    return info


def parse_addr(addr: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); raises ValueError."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {addr!r}: expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def format_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
