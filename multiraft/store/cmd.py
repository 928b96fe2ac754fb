"""KV commands carried in raft entries, msgpack-encoded (one codec module per wire schema).

One command's data is `[1, request_id, region_id, conf_ver, version, ops]` where each op is
`[OP_PUT, key, value]`, `[OP_DELETE, key]` or `[OP_CAS, key, expected, new]` (`expected` /
`new` may be None: "must not exist" / "delete"). The request id (client id + sequence,
opaque bytes) lets the apply path drop a retried duplicate; the epoch lets it refuse a command
proposed before a split or merge moved the range.

The store proposes the commands a region received in one round as ONE entry (TiKV's
RaftCmdRequest batching): `[3, [[request_id, region_id, conf_ver, version, ops], ...]]`. Each
command in it keeps its own request id, epoch check and result, and they apply in order, as
consecutive entries would. `decode_entry` reads both forms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

__all__ = [
    "OP_PUT",
    "OP_DELETE",
    "OP_CAS",
    "Op",
    "Command",
    "Applied",
    "CasFailed",
    "Result",
    "CommandDecodeError",
    "encode_command",
    "decode_command",
    "command_body",
    "encode_single",
    "encode_batch",
    "decode_entry",
]

_VERSION = 1
_BATCH_VERSION = 3  # (2 tags admin commands: admin_cmd.py)
OP_PUT = 1
OP_DELETE = 2
OP_CAS = 3

# Keys are 1..MAX_KEY bytes (LMDB's key limit); values up to MAX_VALUE bytes.
MAX_KEY = 511
MAX_VALUE = 8 << 20


@dataclass(slots=True, frozen=True)
class Op:
    """One write: put (value), delete, or compare-and-swap (expected -> value)."""

    kind: int
    key: bytes
    value: bytes | None = None
    expected: bytes | None = None

    def validate(self) -> None:
        if self.kind not in (OP_PUT, OP_DELETE, OP_CAS):
            raise CommandDecodeError(f"unknown op kind {self.kind}")
        if not isinstance(self.key, bytes) or not 1 <= len(self.key) <= MAX_KEY:
            raise CommandDecodeError(f"key must be 1..{MAX_KEY} bytes")
        if self.kind == OP_PUT and not isinstance(self.value, bytes):
            raise CommandDecodeError("put needs a bytes value")
        for v in (self.value, self.expected):
            if v is not None and (not isinstance(v, bytes) or len(v) > MAX_VALUE):
                raise CommandDecodeError(f"values must be bytes of at most {MAX_VALUE} bytes")


@dataclass(slots=True)
class Command:
    """A batch of writes to one region, applied atomically."""

    region_id: int
    conf_ver: int
    version: int
    ops: list[Op] = field(default_factory=list)
    request_id: bytes = b""


@dataclass(slots=True, frozen=True)
class CasFailed:
    """The op at `op_index` expected another value; `current` is what the key holds."""

    op_index: int
    current: bytes | None


@dataclass(slots=True, frozen=True)
class Applied:
    """The command was applied; `previous` holds, per op, the value the key had before."""

    previous: tuple[bytes | None, ...]


Result = Applied | CasFailed


class CommandDecodeError(ValueError):
    """Malformed command bytes (never applied; the entry is skipped with this error)."""


def encode_command(cmd: Command) -> bytes:
    return encode_single(command_body(cmd))


def command_body(cmd: Command) -> list[object]:
    """The command as an element of a batch (`encode_batch`); validates its ops."""
    ops: list[object] = []
    for op in cmd.ops:
        op.validate()
        if op.kind == OP_PUT:
            ops.append([OP_PUT, op.key, op.value])
        elif op.kind == OP_DELETE:
            ops.append([OP_DELETE, op.key])
        else:
            ops.append([OP_CAS, op.key, op.expected, op.value])
    return [cmd.request_id, cmd.region_id, cmd.conf_ver, cmd.version, ops]


def encode_single(body: list[object]) -> bytes:
    """One command (`command_body`) as an entry of its own (what any version applies)."""
    data: bytes = msgpack.packb([_VERSION, *body], use_bin_type=True)
    return data


def encode_batch(bodies: list[list[object]]) -> bytes:
    """One entry's data carrying several commands (`command_body` each), applied in order."""
    data: bytes = msgpack.packb([_BATCH_VERSION, bodies], use_bin_type=True)
    return data


def _unpack(data: bytes) -> object:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several types on garbage
        raise CommandDecodeError(f"not a command: {e}") from e


def decode_entry(data: bytes) -> Command | list[Command]:
    """An entry's commands: a list for a batch (version 3), a single (version 1) command."""
    obj = _unpack(data)
    if isinstance(obj, list) and len(obj) == 2 and obj[0] == _BATCH_VERSION:
        if not isinstance(obj[1], list) or not obj[1]:
            raise CommandDecodeError("a batch must be a non-empty list of commands")
        out = []
        for body in obj[1]:
            if not isinstance(body, list) or len(body) != 5:
                raise CommandDecodeError("bad command in a batch")
            out.append(_command(*body))
        return out
    return _decode_v1(obj)


def decode_command(data: bytes) -> Command:
    return _decode_v1(_unpack(data))


def _decode_v1(obj: object) -> Command:
    if not isinstance(obj, list) or len(obj) != 6 or obj[0] != _VERSION:
        raise CommandDecodeError("not a version-1 command")
    _, request_id, region_id, conf_ver, version, raw_ops = obj
    return _command(request_id, region_id, conf_ver, version, raw_ops)


def _command(
    request_id: object, region_id: object, conf_ver: object, version: object, raw_ops: object
) -> Command:
    if not (
        isinstance(request_id, bytes)
        and isinstance(region_id, int)
        and isinstance(conf_ver, int)
        and isinstance(version, int)
        and min(region_id, conf_ver, version) >= 0
    ):
        raise CommandDecodeError("bad command header")
    if not isinstance(raw_ops, list):
        raise CommandDecodeError("ops must be a list")
    ops = []
    for raw in raw_ops:
        if not isinstance(raw, list) or not raw:
            raise CommandDecodeError("an op must be a non-empty list")
        kind = raw[0]
        if kind == OP_PUT and len(raw) == 3:
            op = Op(OP_PUT, raw[1], value=raw[2])
        elif kind == OP_DELETE and len(raw) == 2:
            op = Op(OP_DELETE, raw[1])
        elif kind == OP_CAS and len(raw) == 4:
            op = Op(OP_CAS, raw[1], value=raw[3], expected=raw[2])
        else:
            raise CommandDecodeError(f"bad op {raw!r:.80}")
        op.validate()
        ops.append(op)
    return Command(region_id, conf_ver, version, ops, request_id)
