"""Three real store processes: writes and linearizable reads through the client, /metrics
moving with the workload, and garbage on the client and peer ports leaving the stores serving."""

from __future__ import annotations

import os
import socket
import struct
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from multiraft.server.config import parse_addr
from multiraft.server.localcluster import LocalCluster

from .conftest import client_module


def _counter(text: str, family: str) -> float:
    for fam in text_string_to_metric_families(text):
        if fam.name == family:
            return sum(s.value for s in fam.samples if s.name.endswith("_total"))
    raise AssertionError(f"no metric family {family}")


def _metrics(cluster: LocalCluster, sid: int) -> str:
    with urllib.request.urlopen(f"http://{cluster.stores[sid].admin_addr}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return str(r.read().decode())


def test_writes_and_linearizable_reads(cluster3: LocalCluster) -> None:
    mc = client_module()
    keys = [b"k%04d" % i for i in range(200)] + [bytes([b]) + b"-spread" for b in range(0, 256, 8)]
    with mc.Client(cluster3.client_addrs()) as c:
        for i, k in enumerate(keys):
            c.put(k, b"v%d" % i)
        # Every read sees the write that finished before it, whichever store answers.
        for i, k in enumerate(keys):
            assert c.get(k) == b"v%d" % i
        c.put(b"k0000", b"new")
        assert c.get(b"k0000") == b"new"
        c.delete(b"k0001")
        assert c.get(b"k0001") is None
        assert c.cas(b"k0002", b"v2", b"swapped")
        assert c.get(b"k0002") == b"swapped"
        assert not c.cas(b"k0002", b"v2", b"again")
        assert c.get(b"k0002") == b"swapped"
        got = c.scan(b"k0000", b"k0010", 100)
        assert [k for k, _ in got] == [b"k%04d" % i for i in range(10) if i != 1]
    # A fresh client (empty region cache) sees the same data.
    with mc.Client(cluster3.client_addrs()[::-1]) as c:
        assert c.get(b"k0000") == b"new"
        assert c.get(b"k0199") == b"v199"


def test_metrics_move_with_the_workload(cluster3: LocalCluster) -> None:
    mc = client_module()
    before = {sid: _counter(_metrics(cluster3, sid), "multiraft_proposals") for sid in cluster3.stores}
    applied_before = sum(
        _counter(_metrics(cluster3, sid), "multiraft_batch_rounds") for sid in cluster3.stores
    )
    with mc.Client(cluster3.client_addrs()) as c:
        for i in range(50):
            c.put(b"m%03d" % i, b"x")
        for i in range(50):
            assert c.get(b"m%03d" % i) == b"x"
    after = {sid: _counter(_metrics(cluster3, sid), "multiraft_proposals") for sid in cluster3.stores}
    assert sum(after.values()) >= sum(before.values()) + 50
    applied_after = sum(
        _counter(_metrics(cluster3, sid), "multiraft_batch_rounds") for sid in cluster3.stores
    )
    assert applied_after > applied_before
    text = _metrics(cluster3, 1)
    names = {f.name for f in text_string_to_metric_families(text)}
    for n in ("multiraft_regions", "multiraft_leaders", "multiraft_raft_messages_sent",
              "multiraft_propose_to_apply_seconds", "multiraft_fsync_duration_seconds"):
        assert n in names


def _send_raw(addr: str, payloads: list[bytes]) -> None:
    host, port = parse_addr(addr)
    for data in payloads:
        with socket.create_connection((host, port), timeout=5) as s:
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                s.settimeout(5)
                while s.recv(65536):
                    pass
            except OSError:
                pass  # the store closed the connection on us: fine


GARBAGE = [
    os.urandom(4096),
    struct.pack(">I", 0x7FFFFFFF) + b"\x02" + os.urandom(100),  # oversized length
    struct.pack(">I", 0) + os.urandom(64),  # zero length
    struct.pack(">IB", 10, 99) + os.urandom(9),  # unknown kind
    struct.pack(">IB", 50, 1) + os.urandom(49),  # a "handshake" of garbage protobuf
    struct.pack(">I", 1 << 20) + b"\x02" + os.urandom(1000),  # truncated large frame
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
]


def test_garbage_on_the_ports_leaves_the_stores_serving(cluster3: LocalCluster) -> None:
    mc = client_module()
    for sp in cluster3.stores.values():
        _send_raw(sp.peer_addr, GARBAGE)
        _send_raw(sp.client_addr, GARBAGE)
    for sp in cluster3.stores.values():
        assert sp.running
        with urllib.request.urlopen(f"http://{sp.admin_addr}/health", timeout=10) as r:
            assert r.status == 200
    with mc.Client(cluster3.client_addrs()) as c:
        for i in range(20):
            c.put(b"g%02d" % i, b"after-garbage")
        for i in range(20):
            assert c.get(b"g%02d" % i) == b"after-garbage"
    text = _metrics(cluster3, 1)
    assert _counter(text, "multiraft_bad_frames") > 0
