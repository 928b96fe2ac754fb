"""bench/vs_etcd.py: the hand-encoded etcd requests and the skip without an etcd binary."""

from __future__ import annotations

import pytest

from bench.vs_etcd import main, put_request, range_request
from router.lanes import varint as _varint


def test_varint_matches_protobuf() -> None:
    assert _varint(1) == b"\x01"
    assert _varint(127) == b"\x7f"
    assert _varint(128) == b"\x80\x01"
    assert _varint(300) == b"\xac\x02"


def test_requests_are_length_delimited_fields() -> None:
    assert put_request(b"k", b"vv") == b"\x0a\x01k\x12\x02vv"
    assert range_request(b"key") == b"\x0a\x03key"
    long = b"x" * 200
    assert put_request(b"k", long) == b"\x0a\x01k\x12\xc8\x01" + long


def test_skips_with_a_message_without_etcd(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--etcd", "/nonexistent/etcd", "--only", "etcd", "--no-save"])
    err = capsys.readouterr().err
    assert "apt-get install etcd-server etcd-client" in err
