"""The KV command codec: round trips, and malformed input is refused with a clear error."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.store.admin_cmd import is_admin_entry
from multiraft.store.cmd import (
    OP_CAS,
    OP_DELETE,
    OP_PUT,
    Command,
    CommandDecodeError,
    Op,
    command_body,
    decode_command,
    decode_entry,
    encode_batch,
    encode_command,
)

_key = st.binary(min_size=1, max_size=64)
_val = st.binary(max_size=256)
_op = st.one_of(
    st.builds(Op, st.just(OP_PUT), _key, value=_val),
    st.builds(Op, st.just(OP_DELETE), _key),
    st.builds(Op, st.just(OP_CAS), _key, value=st.none() | _val, expected=st.none() | _val),
)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**32), st.integers(0, 2**32), st.lists(_op, max_size=8), st.binary(max_size=24))
def test_round_trip(region_id: int, conf_ver: int, version: int, ops: list[Op], rid: bytes) -> None:
    cmd = Command(region_id, conf_ver, version, ops, rid)
    assert decode_command(encode_command(cmd)) == cmd


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        msgpack.packb({"a": 1}),
        msgpack.packb([2, b"", 1, 1, 1, []]),  # unknown version
        msgpack.packb([1, "str-id", 1, 1, 1, []]),
        msgpack.packb([1, b"", -1, 1, 1, []]),
        msgpack.packb([1, b"", 1, 1, 1, "ops"]),
        msgpack.packb([1, b"", 1, 1, 1, [[]]]),
        msgpack.packb([1, b"", 1, 1, 1, [[9, b"k"]]]),
        msgpack.packb([1, b"", 1, 1, 1, [[OP_PUT, b"k"]]]),  # put without value
        msgpack.packb([1, b"", 1, 1, 1, [[OP_PUT, b"", b"v"]]]),  # empty key
        msgpack.packb([1, b"", 1, 1, 1, [[OP_PUT, b"k" * 512, b"v"]]]),  # key too long
        msgpack.packb([1, b"", 1, 1, 1, [[OP_PUT, "k", b"v"]]]),  # str key
    ],
)
def test_malformed_commands_are_refused(data: bytes) -> None:
    with pytest.raises(CommandDecodeError):
        decode_command(data)


def test_encode_refuses_invalid_ops() -> None:
    with pytest.raises(CommandDecodeError):
        encode_command(Command(1, 1, 1, [Op(OP_PUT, b"k")]))
    with pytest.raises(CommandDecodeError):
        encode_command(Command(1, 1, 1, [Op(OP_DELETE, b"")]))


@given(st.lists(st.tuples(st.integers(0, 2**32), st.lists(_op, max_size=4), st.binary(max_size=24)), min_size=1, max_size=8))
def test_batch_round_trip(cmds: list[tuple[int, list[Op], bytes]]) -> None:
    """A round's commands in one entry come back in order, each with its own request id and
    epoch; a single (version 1) command still decodes as one command."""
    batch = [Command(7, 1, version, ops, rid) for version, ops, rid in cmds]
    data = encode_batch([command_body(c) for c in batch])
    assert decode_entry(data) == batch
    assert not is_admin_entry(data)
    assert decode_entry(encode_command(batch[0])) == batch[0]


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb([3, []]),
        msgpack.packb([3, [[b"r", 1, 1, 1]]]),
        msgpack.packb([3, [[b"r", -1, 1, 1, []]]]),
        msgpack.packb([3, [[b"r", 1, 1, 1, [[9, b"k"]]]]]),
        msgpack.packb([3, "x"]),
    ],
)
def test_bad_batches_are_refused(data: bytes) -> None:
    with pytest.raises(CommandDecodeError):
        decode_entry(data)
