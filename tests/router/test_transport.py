"""The asyncio transport between stores, over real loopback sockets: delivery in order,
reconnects, unreachable reports, handshake checks, bad input on the peer port, mutual TLS, and
snapshots on their own connections. No timing assertions (the machine is shared): waits poll
for a condition with a generous deadline."""

from __future__ import annotations

import asyncio
import datetime
import random
import shutil
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from multiraft.proto.eraftpb_pb2 import MessageType
from multiraft.proto.serverpb_pb2 import BatchRaftMessage, Handshake, RaftMessage
from router.codec import HANDSHAKE, RAFT, encode_batch, encode_frame, encode_handshake
from router.transport import Transport, make_ssl_contexts

CLUSTER = 7


def run(coro: Coroutine[Any, Any, None], timeout: float = 20.0, loop: str = "asyncio") -> None:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        runner: Callable[[Awaitable[None]], None] = uvloop.run
        runner(asyncio.wait_for(coro, timeout))
    else:
        asyncio.run(asyncio.wait_for(coro, timeout))


async def until(cond: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.005)


def frame(from_store: int, seq: int, regions: int = 1) -> bytes:
    b = BatchRaftMessage(from_store_id=from_store, last_observed_time=seq)
    for r in range(regions):
        m = RaftMessage(region_id=r + 1)
        m.message.msg_type = MessageType.MsgHeartbeat
        m.message.commit = seq
        b.msgs.append(m)
    return encode_batch(b)


@dataclass
class Node:
    """A transport plus everything its callbacks saw."""

    t: Transport
    batches: list[tuple[int, BatchRaftMessage]] = field(default_factory=list)
    unreachable: list[int] = field(default_factory=list)
    snapshots: list[tuple[int, bytes, int]] = field(default_factory=list)
    peers: list[Handshake] = field(default_factory=list)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.t.listen_port}"

    def seqs(self, from_store: int) -> list[int]:
        return [b.last_observed_time for s, b in self.batches if s == from_store]


async def node(store_id: int, *, cluster: int = CLUSTER, port: int = 0,
               on_batch: Callable[[int, BatchRaftMessage], None] | None = None,
               **kw: Any) -> Node:
    n = Node(t=None)  # type: ignore[arg-type]
    n.t = Transport(
        cluster_id=cluster, store_id=store_id, listen_addr=f"127.0.0.1:{port}",
        on_batch=on_batch or (lambda s, b: n.batches.append((s, b))),
        on_unreachable=n.unreachable.append,
        on_snapshot=lambda s, h, d: n.snapshots.append((s, h, len(d))),
        on_peer_info=n.peers.append,
        client_addr=f"client-{store_id}", rng=random.Random(store_id), **kw,
    )
    await n.t.start()
    return n


def link(*nodes: Node) -> None:
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.t.add_store(b.t.store_id, b.addr)


# ---------------------------------------------------------------------------------- delivery


def test_two_stores_deliver_in_order_both_ways() -> None:
    async def main() -> None:
        a, b = await node(1), await node(2)
        link(a, b)
        for i in range(500):
            a.t.send(2, frame(1, i, regions=3))
            b.t.send(1, frame(2, i))
            if i % 50 == 0:
                await asyncio.sleep(0)
        await until(lambda: len(b.batches) == 500 and len(a.batches) == 500)
        assert b.seqs(1) == list(range(500))
        assert a.seqs(2) == list(range(500))
        assert all(len(batch.msgs) == 3 for _, batch in b.batches)
        # Coalesced: far fewer socket writes than frames is not observable here, but every
        # frame was counted once and none dropped.
        assert a.t.stats.frames_sent == 500 and a.t.stats.dropped_frames == 0
        assert b.t.stats.frames_received == 500
        # One outbound connection each way.
        assert a.t.stats.connects == 1 and b.t.stats.connects == 1
        # Each learned the other's addresses from the handshake.
        assert {(p.store_id, p.client_addr) for p in a.peers} == {(2, "client-2")}
        assert b.peers[0].peer_addr == a.addr
        await a.t.close()
        await b.t.close()

    run(main())


def test_three_stores_all_pairs() -> None:
    async def main() -> None:
        nodes = [await node(i) for i in (1, 2, 3)]
        link(*nodes)
        for i in range(100):
            for n in nodes:
                for m in nodes:
                    if n is not m:
                        n.t.send(m.t.store_id, frame(n.t.store_id, i))
            await asyncio.sleep(0)
        await until(lambda: all(len(n.batches) == 200 for n in nodes))
        for n in nodes:
            for m in nodes:
                if n is not m:
                    assert n.seqs(m.t.store_id) == list(range(100))
        for n in nodes:
            await n.t.close()

    run(main())


def test_queue_bound_drops_and_counts() -> None:
    async def main() -> None:
        a, b = await node(1, max_pending_bytes=4096), await node(2)
        link(a, b)
        f = frame(1, 0, regions=10)
        # All sent in one loop iteration, before the connection exists: the queue fills.
        for _ in range(100):
            a.t.send(2, f)
        fit = 4096 // len(f)
        assert a.t.stats.dropped_frames == 100 - fit
        await until(lambda: len(b.batches) == fit)
        await a.t.close()
        await b.t.close()

    run(main())


def test_several_connections_per_store() -> None:
    async def main() -> None:
        a, b = await node(1, connections_per_store=3), await node(2)
        link(a, b)
        for i in range(300):
            a.t.send(2, frame(1, i))
        await until(lambda: len(b.batches) == 300)
        # Frames are spread over the connections: no order across them.
        assert sorted(b.seqs(1)) == list(range(300))
        assert a.t.stats.connects == 3
        await a.t.close()
        await b.t.close()

    run(main())


def test_address_change_redials() -> None:
    async def main() -> None:
        a, b1, b2 = await node(1), await node(2), await node(2)
        a.t.add_store(2, b1.addr)
        a.t.send(2, frame(1, 0))
        await until(lambda: len(b1.batches) == 1)
        a.t.add_store(2, b2.addr)
        seq = 1
        while not b2.batches:
            a.t.send(2, frame(1, seq))
            seq += 1
            await asyncio.sleep(0.005)
        assert b1.seqs(1) == [0] and a.t.stats.connects == 2
        for n in (a, b1, b2):
            await n.t.close()

    run(main())


def test_callback_exception_is_contained() -> None:
    async def main() -> None:
        seen: list[int] = []

        def on_batch(s: int, batch: BatchRaftMessage) -> None:
            seen.append(batch.last_observed_time)
            if batch.last_observed_time == 0:
                raise RuntimeError("boom")

        a, b = await node(1), await node(2, on_batch=on_batch)
        link(a, b)
        for i in range(3):
            a.t.send(2, frame(1, i))
        await until(lambda: len(seen) == 3)
        assert seen == [0, 1, 2]
        assert b.t.stats.callback_errors == 1
        await a.t.close()
        await b.t.close()

    run(main())


# ------------------------------------------------------------------- failures and reconnects


def test_killed_peer_reconnect_and_resume() -> None:
    async def main() -> None:
        a, b = await node(1), await node(2)
        link(a, b)
        a.t.send(2, frame(1, 0))
        await until(lambda: len(b.batches) == 1)
        port = b.t.listen_port
        await b.t.close()
        # While the peer is down, sends fail: reported unreachable, not once per frame.
        seq = 1
        while not a.unreachable:
            a.t.send(2, frame(1, seq))
            seq += 1
            await asyncio.sleep(0.005)
        for _ in range(20):  # still down, in backoff
            a.t.send(2, frame(1, seq))
            seq += 1
        assert a.t.stats.unreachable_reports == len(a.unreachable) <= 2
        assert set(a.unreachable) == {2}
        b2 = await node(2, port=port)
        while not b2.batches:
            a.t.send(2, frame(1, seq))
            seq += 1
            await asyncio.sleep(0.01)
        got = b2.seqs(1)
        assert got == sorted(got) and got[-1] < seq
        assert a.t.stats.reconnects >= 1
        await a.t.close()
        await b2.t.close()

    run(main())


def test_unreachable_when_peer_down_backs_off() -> None:
    async def main() -> None:
        a = await node(1)
        # A port with nobody listening (bound then closed).
        dead = await node(9)
        a.t.add_store(9, dead.addr)
        await dead.t.close()
        f = frame(1, 0)
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:
            a.t.send(9, f)
            sent += 1
            await asyncio.sleep(0.002)
        reports = len(a.unreachable)
        # 50 ms doubling (+-20%): ~4 attempts in 0.5 s, never one per frame (~100-250 sent).
        assert 1 <= reports <= 8 < sent, (reports, sent)
        # Every frame was dropped, except those queued for the attempt still running.
        assert a.t.stats.dropped_unreachable * len(f) + a.t.pending_bytes(9) == sent * len(f)
        # A store without an address: reported at once.
        a.t.send(42, frame(1, 0))
        assert a.unreachable[-1] == 42
        await a.t.close()

    run(main())


def test_wrong_cluster_rejected_both_ways() -> None:
    async def main() -> None:
        a, b = await node(1), await node(2, cluster=CLUSTER + 1)
        link(a, b)
        a.t.send(2, frame(1, 0))
        await until(lambda: a.unreachable == [2])
        assert b.t.stats.handshake_rejects == 1 and not b.batches
        # A store answering with another store id than expected is refused by the dialer.
        c = await node(3)
        a.t.add_store(4, c.addr)
        a.t.send(4, frame(1, 0))
        await until(lambda: 4 in a.unreachable)
        assert a.t.stats.handshake_rejects == 1 and not c.batches
        for n in (a, b, c):
            await n.t.close()

    run(main())


# ------------------------------------------------------------------- bad input on the port


def _hs(store_id: int = 5, cluster: int = CLUSTER) -> bytes:
    return encode_handshake(Handshake(cluster_id=cluster, store_id=store_id, peer_addr="x:1"))


BAD_INPUTS: list[tuple[str, bytes, str, bool]] = [
    # (case, bytes sent then EOF, counter reason, the connection is closed by the receiver)
    ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "oversized", True),
    ("zero_length", struct.pack(">IB", 0, RAFT), "bad_length", True),
    ("unknown_kind", struct.pack(">IB", 3, 99) + b"ab", "unknown_kind", True),
    ("oversized", struct.pack(">IB", (1 << 20) + 1, RAFT), "oversized", True),
    ("bad_protobuf", _hs() + encode_frame(RAFT, b"\xff\xff\xff\xff"), "bad_protobuf", True),
    ("raft_before_handshake", frame(5, 0), "no_handshake", True),
    ("second_handshake", _hs() + _hs(), "unexpected_kind", True),
    ("batch_from_another_store", _hs() + frame(6, 0), "store_mismatch", False),
    ("truncated", _hs() + frame(5, 0)[:-3], "truncated", False),
]


async def _read_until_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    got = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                got += chunk
    except ConnectionResetError:
        pass
    return got


@pytest.mark.parametrize("case, data, reason, closes", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_counted_and_others_unaffected(case: str, data: bytes, reason: str,
                                                 closes: bool) -> None:
    async def main() -> None:
        a, b = await node(1), await node(2, max_frame=1 << 20)
        link(a, b)
        a.t.send(2, frame(1, 0))
        await until(lambda: len(b.batches) == 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", b.t.listen_port)
        writer.write(data)
        await writer.drain()
        if closes:
            # The receiver closes on its own, without waiting for our EOF.
            await _read_until_closed(reader)
        else:
            writer.write_eof()
            await _read_until_closed(reader)
        await until(lambda: b.t.stats.bad_frames_by_reason.get(reason) == 1, what=reason)
        writer.close()
        # Nothing from the bad connection was delivered; the good connection still works.
        a.t.send(2, frame(1, 1))
        await until(lambda: len(b.batches) == 2)
        assert b.seqs(1) == [0, 1]
        assert sum(b.t.stats.bad_frames_by_reason.values()) == 1
        await a.t.close()
        await b.t.close()

    run(main())


@pytest.mark.parametrize("hs", [Handshake(cluster_id=CLUSTER + 1, store_id=5),
                                Handshake(cluster_id=CLUSTER, store_id=0),
                                Handshake(cluster_id=CLUSTER, store_id=2)],
                         ids=["wrong_cluster", "store_zero", "our_own_store_id"])
def test_bad_handshake_rejected(hs: Handshake) -> None:
    async def main() -> None:
        b = await node(2)
        reader, writer = await asyncio.open_connection("127.0.0.1", b.t.listen_port)
        writer.write(encode_handshake(hs) + frame(5, 0))
        await writer.drain()
        answer = await _read_until_closed(reader)
        assert answer == b""  # no handshake answer, closed
        assert b.t.stats.handshake_rejects == 1 and not b.batches
        writer.close()
        await b.t.close()

    run(main())


def test_raw_peer_gets_handshake_answer() -> None:
    async def main() -> None:
        b = await node(2)
        reader, writer = await asyncio.open_connection("127.0.0.1", b.t.listen_port)
        writer.write(_hs() + frame(5, 3))
        head = await reader.readexactly(5)
        length, kind = struct.unpack(">IB", head)
        assert kind == HANDSHAKE
        answer = Handshake.FromString(await reader.readexactly(length - 1))
        assert (answer.cluster_id, answer.store_id, answer.peer_addr) == (CLUSTER, 2, b.addr)
        await until(lambda: b.seqs(5) == [3])
        writer.close()
        await b.t.close()

    run(main())


# --------------------------------------------------------------------------------- snapshots


def test_snapshot_streams_while_heartbeats_flow() -> None:
    size = 50 << 20
    data = random.Random(1).randbytes(1 << 20) * 50
    assert len(data) == size

    async def main() -> None:
        delays: list[float] = []
        hb_times: list[float] = []

        def on_batch(s: int, batch: BatchRaftMessage) -> None:
            now = time.monotonic()
            hb_times.append(now)
            delays.append(now - batch.last_observed_time / 1e9)

        a, b = await node(1), await node(2, on_batch=on_batch)
        link(a, b)
        a.t.send(2, frame(1, time.monotonic_ns()))
        await until(lambda: len(hb_times) == 1)
        results: list[bool] = []
        start = time.monotonic()
        a.t.send_snapshot(2, b"snap-header", data, results.append)
        while not results:
            a.t.send(2, frame(1, time.monotonic_ns()))
            await asyncio.sleep(0.002)
        end = time.monotonic()
        assert results == [True]
        assert b.snapshots == [(1, b"snap-header", size)]
        during = [d for t, d in zip(hb_times, delays, strict=True) if start <= t <= end]
        assert during, "no heartbeat arrived while the snapshot streamed"
        print(f"\n50 MiB snapshot in {end - start:.3f}s; {len(during)} heartbeats during it, "
              f"max delay {max(during) * 1e3:.1f} ms, median "
              f"{sorted(during)[len(during) // 2] * 1e3:.2f} ms")
        assert a.t.stats.snapshots_sent == 1 and b.t.stats.snapshots_received == 1
        await a.t.close()
        await b.t.close()

    run(main(), timeout=60)


def test_snapshot_concurrency_limit_refuses_excess() -> None:
    data = bytes(16 << 20)

    async def main() -> None:
        a, b = await node(1), await node(2, max_concurrent_snapshots=1)
        link(a, b)
        results: list[bool] = []
        a.t.send_snapshot(2, b"h1", data, results.append)
        a.t.send_snapshot(2, b"h2", data, results.append)
        await until(lambda: len(results) == 2, timeout=30)
        assert sorted(results) == [False, True]
        assert b.t.stats.snapshots_refused == 1 and len(b.snapshots) == 1
        assert a.t.stats.snapshots_failed == 1
        # The slot is free again.
        a.t.send_snapshot(2, b"h3", b"small", results.append)
        await until(lambda: len(results) == 3)
        assert results[2] is True
        await a.t.close()
        await b.t.close()

    run(main(), timeout=40)


@pytest.mark.parametrize("case", ["receiver_raises", "peer_down", "empty_ok"])
def test_snapshot_failures_report_false(case: str) -> None:
    async def main() -> None:
        def boom(s: int, h: bytes, d: bytes) -> None:
            raise RuntimeError("disk full")

        a, b = await node(1), await node(2)
        link(a, b)
        if case == "receiver_raises":
            b.t.on_snapshot = boom
        results: list[bool] = []
        if case == "peer_down":
            await b.t.close()
        a.t.send_snapshot(2, b"h", b"" if case == "empty_ok" else b"x" * 3_000_000,
                          results.append)
        await until(lambda: bool(results))
        assert results == [case == "empty_ok"]
        await a.t.close()
        await b.t.close()

    run(main())


# ---------------------------------------------------------------------------------------- TLS


# Throwaway certificates: a cluster CA signing s1 and s2, and a foreign CA signing "intruder".
# With the `cryptography` package (the test extra) or else the openssl CLI.

CertFiles = dict[str, tuple[Path, Path]]  # name -> (certificate, key); "ca" -> (ca cert, -)


def _certs_with_cryptography(d: Path) -> CertFiles:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(name: str, issuer: tuple[Any, Any] | None) -> tuple[Any, Any, Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        b = (x509.CertificateBuilder().subject_name(subject)
             .issuer_name(issuer[1].subject if issuer else subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=1)))
        if issuer is None:
            b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        else:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = b.sign(issuer[0] if issuer else key, hashes.SHA256())
        crt, kp = d / f"{name}.crt", d / f"{name}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        return key, cert, crt, kp

    ca_key, ca_cert, ca_crt, ca_kp = issue("ca", None)
    o_key, o_cert, _, _ = issue("other-ca", None)
    out: CertFiles = {"ca": (ca_crt, ca_kp)}
    for name in ("s1", "s2"):
        out[name] = issue(name, (ca_key, ca_cert))[2:]
    out["intruder"] = issue("intruder", (o_key, o_cert))[2:]
    return out


def _certs_with_openssl(d: Path) -> CertFiles:
    import subprocess

    def sh(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (d / "leaf.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for ca in ("ca", "other-ca"):
        sh("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
           "-subj", f"/CN={ca}")
    out: CertFiles = {"ca": (d / "ca.crt", d / "ca.key")}
    for name, ca in (("s1", "ca"), ("s2", "ca"), ("intruder", "other-ca")):
        sh("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        sh("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
           "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", "leaf.ext")
        out[name] = (d / f"{name}.crt", d / f"{name}.key")
    return out


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[ssl.SSLContext, ssl.SSLContext]]:
    d = tmp_path_factory.mktemp("certs")
    try:
        import cryptography  # noqa: F401

        files = _certs_with_cryptography(d)
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("test certificates need the `cryptography` package or the openssl CLI")
        files = _certs_with_openssl(d)
    ca = str(files["ca"][0])
    return {name: make_ssl_contexts(ca, str(files[name][0]), str(files[name][1]))
            for name in ("s1", "s2", "intruder")}


def test_openssl_cli_certificates_work_too(tmp_path: Path) -> None:
    """The fallback when `cryptography` is missing produces usable contexts."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl CLI")
    files = _certs_with_openssl(tmp_path)
    server, client = make_ssl_contexts(str(files["ca"][0]), str(files["s1"][0]),
                                       str(files["s1"][1]))
    assert server.verify_mode == ssl.CERT_REQUIRED and client.verify_mode == ssl.CERT_REQUIRED


LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


@LOOPS
def test_a_send_racing_a_lost_connection_is_dropped_quietly(loop: str) -> None:
    """A connection closes (here locally; the peer's reset or EOF does the same) and a send
    comes before the link learned of it (connection_lost runs a loop iteration later): the
    flush must not write to the closed transport — uvloop raises RuntimeError there, which
    escaped as an "Exception in callback" with a traceback on every connection lost while
    sending (seen under the nemesis: stores killed, connections reset by the proxy)."""

    async def main() -> None:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        a, b = await node(1), await node(2)
        link(a, b)
        a.t.send(2, frame(1, 0))
        await until(lambda: len(b.batches) == 1)
        conn = a.t._stores[2].links[0].conn
        assert conn is not None and conn.transport is not None
        conn.transport.abort()
        a.t.send(2, frame(1, 1))
        await until(lambda: 2 in a.unreachable)  # the frame queued meanwhile was dropped
        seq = 1
        while len(b.batches) < 2:  # the link dials again and delivers
            seq += 1
            a.t.send(2, frame(1, seq))
            await asyncio.sleep(0.01)
        assert errors == []
        await a.t.close()
        await b.t.close()

    run(main(), loop=loop)


@LOOPS
def test_mutual_tls_delivers(tls: dict[str, tuple[ssl.SSLContext, ssl.SSLContext]],
                             loop: str) -> None:
    async def main() -> None:
        a = await node(1, server_ssl=tls["s1"][0], client_ssl=tls["s1"][1])
        b = await node(2, server_ssl=tls["s2"][0], client_ssl=tls["s2"][1])
        link(a, b)
        for i in range(50):
            a.t.send(2, frame(1, i))
            b.t.send(1, frame(2, i))
        await until(lambda: len(a.batches) == 50 and len(b.batches) == 50)
        assert b.seqs(1) == list(range(50)) and a.seqs(2) == list(range(50))
        results: list[bool] = []
        a.t.send_snapshot(2, b"h", b"z" * 3_000_000, results.append)
        await until(lambda: bool(results))
        assert results == [True] and b.snapshots == [(1, b"h", 3_000_000)]
        assert a.t.stats.tls_handshake_failures == b.t.stats.tls_handshake_failures == 0
        await a.t.close()
        await b.t.close()

    run(main(), loop=loop)


@LOOPS
def test_tls_refuses_plain_and_foreign_clients(
        tls: dict[str, tuple[ssl.SSLContext, ssl.SSLContext]], loop: str) -> None:
    async def main() -> None:
        b = await node(2, server_ssl=tls["s2"][0], client_ssl=tls["s2"][1])
        # A raw plain-text peer speaking our protocol: the TLS handshake fails, closed.
        reader, writer = await asyncio.open_connection("127.0.0.1", b.t.listen_port)
        writer.write(_hs() + frame(5, 0))
        await writer.drain()
        await _read_until_closed(reader)
        writer.close()
        await until(lambda: b.t.stats.tls_handshake_failures == 1)
        # A plain transport: its connection is refused, reported unreachable.
        plain = await node(1)
        link(plain, b)
        plain.t.send(2, frame(1, 0))
        await until(lambda: plain.unreachable == [2])
        await until(lambda: b.t.stats.tls_handshake_failures == 2)
        # A client whose certificate comes from another CA.
        intruder = await node(3, client_ssl=tls["intruder"][1])
        link(intruder, b)
        intruder.t.send(2, frame(3, 0))
        await until(lambda: intruder.unreachable == [2])
        await until(lambda: b.t.stats.tls_handshake_failures == 3)
        assert not b.batches
        for n in (b, plain, intruder):
            await n.t.close()

    run(main(), loop=loop)


# ---------------------------------------------------------------------- the loop is any loop


@pytest.mark.parametrize("case", ["deliver", "reconnect", "bad_input"])
def test_works_on_uvloop_too(case: str) -> None:
    async def main() -> None:
        a, b = await node(1), await node(2)
        link(a, b)
        for i in range(200):
            a.t.send(2, frame(1, i))
        await until(lambda: len(b.batches) == 200)
        assert b.seqs(1) == list(range(200))
        if case == "deliver":
            results: list[bool] = []
            a.t.send_snapshot(2, b"h", b"q" * 2_500_000, results.append)
            await until(lambda: bool(results))
            assert results == [True]
        elif case == "reconnect":
            port = b.t.listen_port
            await b.t.close()
            seq = 200
            while not a.unreachable:
                a.t.send(2, frame(1, seq))
                seq += 1
                await asyncio.sleep(0.005)
            b = await node(2, port=port)
            while not b.batches:
                a.t.send(2, frame(1, seq))
                seq += 1
                await asyncio.sleep(0.01)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", b.t.listen_port)
            writer.write(_hs() + frame(5, 0)[:-3])
            writer.write_eof()
            await _read_until_closed(reader)
            writer.close()
            await until(lambda: b.t.stats.bad_frames_by_reason == {"truncated": 1})
            a.t.send(2, frame(1, 200))
            await until(lambda: len(b.batches) == 201)
        await a.t.close()
        await b.t.close()

    run(main(), loop="uvloop")
