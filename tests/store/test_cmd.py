"""The KV command codec: round trips, and malformed input is refused with a clear error."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.store.cmd import (
    OP_CAS,
    OP_DELETE,
    OP_PUT,
    Command,
    CommandDecodeError,
    Op,
    decode_command,
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
