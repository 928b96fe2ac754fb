"""`FaultProxy`: a fault-injecting TCP proxy for the store-to-store traffic of a test cluster.

No root and no iptables: ordinary asyncio, on a loop of its own in a thread of the test
process (`start()` / `close()`; every other method may be called from any thread and returns
once the change is in force).

Wiring. `add_store(sid, real_peer_addr)` opens a listening port for store `sid` and returns its
address; the store is told to advertise that address (`--advertise-peer-addr`) and every
store's `--initial-cluster` lists the proxy addresses (`LocalCluster(advertise_peer=...)`), so
whatever a store learns (configuration, handshakes, gossip) names the proxy: every
connection to store `sid` passes it. The dialing store is known from the first frame it sends
(its HANDSHAKE carries its store id, `router/codec.py`); a connection whose first frame is not
a handshake has source 0, which no rule names.

Rules. Each *directed* pair (sender, receiver) has a `Rule` for the frames the sender sends
the receiver, whichever side dialed: on a connection A dialed to B, A's frames follow
rule(A, B) and B's answers (its handshake answer, snapshot acknowledgements) rule(B, A).
Frames are forwarded whole, so a stream stays well-formed whatever is dropped.

- `PASS`: forwarded at once.
- `Rule(delay=s, jitter=j)`: each frame held s + U(0, j) seconds, order kept.
- `Rule(loss=p)`: each RAFT frame lost with probability p (a handshake or snapshot frame is
  never lost: that would only stall the connection).
- `BLACKHOLE`: every frame swallowed, connections left open (a dialer waits for a handshake
  that never comes; a connected sender notices nothing). B's handshake answer on a
  connection A dialed passes even when B -> A is blackholed: it belongs to the connection,
  not to B's messages, and without it A -> B would be cut too.
- `REJECT`: A's connections to B are reset, and new ones reset as soon as A's handshake
  arrives (a firewall's REJECT); frames B sends A are swallowed.

Topologies (`partition`, `isolate`, `bridge`, `one_way`, `heal`) set rules for many pairs at
once. `stats()` counts frames and bytes forwarded and dropped per directed pair, and
connections accepted and refused, so a test can assert that traffic did pass the proxy and
that a cut stopped it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import random
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar, cast

from multiraft.proto.serverpb_pb2 import Handshake

__all__ = ["FaultProxy", "Rule", "PairStats", "PASS", "BLACKHOLE", "REJECT"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

# The store-to-store frame header: u32 BE length (kind + payload), u8 kind (router/codec.py).
_HEADER = struct.Struct(">IB")
_HANDSHAKE = 1
_RAFT = 2
# Larger than any frame a store sends or accepts (its --max-frame-bytes default is 64 MiB).
_MAX_FRAME = 256 << 20
# Flow control: stop reading a side while the other side's write buffer is above this.
_HIGH_WATER = 4 << 20
_LOW_WATER = 1 << 20


@dataclass(frozen=True, slots=True)
class Rule:
    """What happens to the frames one store sends another (module docstring)."""

    blackhole: bool = False
    reject: bool = False
    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be in [0, 1], got {self.loss}")
        if self.delay < 0 or self.jitter < 0:
            raise ValueError("delay and jitter must not be negative")

    @property
    def passes(self) -> bool:
        return self == PASS

    def describe(self) -> str:
        if self.reject:
            return "reject"
        if self.blackhole:
            return "blackhole"
        parts = []
        if self.loss:
            parts.append(f"loss {self.loss:.0%}")
        if self.delay or self.jitter:
            parts.append(f"delay {self.delay * 1000:.0f}+{self.jitter * 1000:.0f}ms")
        return ", ".join(parts) or "pass"


PASS = Rule()
BLACKHOLE = Rule(blackhole=True)
REJECT = Rule(reject=True)


@dataclass(slots=True)
class PairStats:
    """Counters of one directed pair (sender, receiver): frames and bytes forwarded (RAFT
    frames among them), frames dropped, connections the sender dialed and those refused."""

    frames: int = 0
    bytes: int = 0
    raft_frames: int = 0
    dropped: int = 0
    connections: int = 0
    refused: int = 0

    def copy(self) -> PairStats:
        return PairStats(self.frames, self.bytes, self.raft_frames, self.dropped,
                         self.connections, self.refused)


class _Side(asyncio.Protocol):
    """One socket of a proxied connection (the accepted one or the one to the store)."""

    def __init__(self, conn: _Conn, downstream: bool) -> None:
        self.conn = conn
        self.downstream = downstream
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=_HIGH_WATER, low=_LOW_WATER)
        self.conn.side_up(self)

    def data_received(self, data: bytes) -> None:
        self.conn.received(self, data)

    def eof_received(self) -> bool | None:
        self.conn.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.close()

    def pause_writing(self) -> None:
        self.conn.pause_reading_from(self, True)

    def resume_writing(self) -> None:
        self.conn.pause_reading_from(self, False)


class _Pipe:
    """One direction of a proxied connection: splits the byte stream into frames and passes
    each through the current rule of (sender, receiver)."""

    def __init__(self, conn: _Conn, forward: bool) -> None:
        self.conn = conn
        self.forward = forward
        self.buf = bytearray()
        # Frames held by a delay: (release time, frame), release times non-decreasing.
        self.held: deque[tuple[float, bytes]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        # Frames ready for a destination that is not connected yet.
        self.waiting: list[bytes] = []
        self.frames_seen = 0

    def feed(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        while len(buf) - pos >= _HEADER.size:
            length, kind = _HEADER.unpack_from(buf, pos)
            if not 1 <= length <= _MAX_FRAME:
                self.conn.close()
                return
            end = pos + 4 + length
            if len(buf) < end:
                break
            frame = bytes(buf[pos:end])
            pos = end
            self.frame(kind, frame)
            if self.conn.closed:
                return
        if pos:
            del buf[:pos]

    def frame(self, kind: int, frame: bytes) -> None:
        conn = self.conn
        first = self.frames_seen == 0
        self.frames_seen += 1
        if self.forward and first:
            conn.identify(frame if kind == _HANDSHAKE else b"")
            if conn.closed:
                return
        proxy = conn.proxy
        sender, receiver = (conn.src, conn.dst) if self.forward else (conn.dst, conn.src)
        rule = proxy._rules.get((sender, receiver), PASS)
        stats = proxy._pair(sender, receiver)
        answer = not self.forward and first and kind == _HANDSHAKE
        if (rule.blackhole or rule.reject) and not answer:
            stats.dropped += 1
            return
        if rule.loss and kind == _RAFT and proxy._rng.random() < rule.loss:
            stats.dropped += 1
            return
        stats.frames += 1
        stats.bytes += len(frame)
        if kind == _RAFT:
            stats.raft_frames += 1
        if rule.delay or rule.jitter or self.held:
            loop = proxy._loop_or_raise()
            at = loop.time() + rule.delay + proxy._rng.uniform(0, rule.jitter)
            if self.held:
                at = max(at, self.held[-1][0])
            self.held.append((at, frame))
            if self.timer is None:
                self.timer = loop.call_at(self.held[0][0], self.release)
            return
        self.out(frame)

    def release(self) -> None:
        self.timer = None
        loop = self.conn.proxy._loop_or_raise()
        now = loop.time()
        held = self.held
        while held and held[0][0] <= now:
            self.out(held.popleft()[1])
        if held and not self.conn.closed:
            self.timer = loop.call_at(held[0][0], self.release)

    def out(self, frame: bytes) -> None:
        side = self.conn.upstream if self.forward else self.conn.downstream
        if side is None or side.transport is None:
            self.waiting.append(frame)
        else:
            side.transport.write(frame)

    def flush_waiting(self) -> None:
        side = self.conn.upstream if self.forward else self.conn.downstream
        if self.waiting and side is not None and side.transport is not None:
            side.transport.writelines(self.waiting)
            self.waiting = []

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.held.clear()
        self.waiting = []


class _Conn:
    """A proxied connection: a store dialed the proxy port of store `dst`."""

    def __init__(self, proxy: FaultProxy, dst: int, cid: int) -> None:
        self.proxy = proxy
        self.dst = dst
        self.cid = cid
        # The dialing store (from its handshake); 0 until known or if unknown.
        self.src = 0
        self.downstream: _Side | None = None
        self.upstream: _Side | None = None
        self.fwd = _Pipe(self, True)
        self.rev = _Pipe(self, False)
        self.closed = False
        self._dial_task: asyncio.Task[None] | None = None

    def side_up(self, side: _Side) -> None:
        if side.downstream:
            self.downstream = side
            self.proxy._conns[self.cid] = self
            self._dial_task = self.proxy._loop_or_raise().create_task(self._dial())
        elif self.closed:
            assert side.transport is not None
            side.transport.abort()
        else:
            self.upstream = side
            self.fwd.flush_waiting()

    async def _dial(self) -> None:
        host, port = self.proxy._upstream[self.dst]
        loop = self.proxy._loop_or_raise()
        try:
            await loop.create_connection(lambda: _Side(self, False), host, port)
        except OSError:
            # The store is down: the dialer sees its connection closed, as if refused.
            self.close()

    def identify(self, handshake: bytes) -> None:
        """The dialer's first frame: who it is; refused if a rule rejects it."""
        hs = Handshake()
        try:
            hs.ParseFromString(handshake[_HEADER.size:])
        except Exception:
            hs = Handshake()
        self.src = int(hs.store_id)
        stats = self.proxy._pair(self.src, self.dst)
        stats.connections += 1
        if self.proxy._rules.get((self.src, self.dst), PASS).reject:
            stats.refused += 1
            self.close()

    def received(self, side: _Side, data: bytes) -> None:
        if self.closed:
            return
        (self.fwd if side.downstream else self.rev).feed(data)

    def pause_reading_from(self, writer: _Side, pause: bool) -> None:
        """`writer`'s buffer is full (or drained): stop (or resume) reading the other side."""
        other = self.upstream if writer.downstream else self.downstream
        if other is None or other.transport is None or self.closed:
            return
        try:
            if pause:
                other.transport.pause_reading()
            else:
                other.transport.resume_reading()
        except RuntimeError:
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy._conns.pop(self.cid, None)
        self.fwd.cancel()
        self.rev.cancel()
        for side in (self.downstream, self.upstream):
            if side is not None and side.transport is not None:
                side.transport.abort()
        if self._dial_task is not None and not self._dial_task.done():
            self._dial_task.cancel()


class FaultProxy:
    """See the module docstring. `seed` drives frame loss and delay jitter."""

    def __init__(self, host: str = "127.0.0.1", seed: int | None = None) -> None:
        self.host = host
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._upstream: dict[int, tuple[str, int]] = {}
        self._servers: dict[int, asyncio.Server] = {}
        self._addrs: dict[int, str] = {}
        self._rules: dict[tuple[int, int], Rule] = {}
        self._stats: dict[tuple[int, int], PairStats] = {}
        self._conns: dict[int, _Conn] = {}
        self._ids = itertools.count(1)

    # -- lifecycle (the caller's thread) --------------------------------------------------------

    def start(self) -> FaultProxy:
        assert self._thread is None, "start() twice"
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            for conn in list(self._conns.values()):
                conn.close()
            for server in self._servers.values():
                server.close()
            await asyncio.gather(*(s.wait_closed() for s in self._servers.values()),
                                 return_exceptions=True)

        if not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
            except (concurrent.futures.TimeoutError, RuntimeError):
                _log.warning("fault proxy: shutdown did not finish")
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "start() first"
        return self._loop

    def _call(self, fn: Callable[[], _T]) -> _T:
        """Run `fn` on the proxy's loop and return its result (at once if already there)."""
        loop = self._loop_or_raise()
        if self._thread is threading.current_thread():
            return fn()
        fut: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:  # handed to the caller
                fut.set_exception(e)

        loop.call_soon_threadsafe(run)
        return fut.result(30)

    # -- stores ---------------------------------------------------------------------------------

    def add_store(self, store_id: int, upstream: str) -> str:
        """Listen for connections to store `store_id`, which really listens at `upstream`;
        returns the address the other stores must dial. Idempotent."""
        if store_id in self._addrs:
            return self._addrs[store_id]
        host, _, port = upstream.rpartition(":")
        self._upstream[store_id] = (host.strip("[]"), int(port))

        async def listen() -> str:
            loop = self._loop_or_raise()

            def accept() -> _Side:
                return _Side(_Conn(self, store_id, next(self._ids)), True)

            server = await loop.create_server(accept, self.host, 0)
            self._servers[store_id] = server
            port = server.sockets[0].getsockname()[1]
            return f"{self.host}:{port}"

        addr = asyncio.run_coroutine_threadsafe(listen(), self._loop_or_raise()).result(10)
        self._addrs[store_id] = addr
        return addr

    def route(self, store_id: int, peer_addr: str) -> str:
        """`add_store` with the argument order `LocalCluster(advertise_peer=...)` uses."""
        return self.add_store(store_id, peer_addr)

    def addr(self, store_id: int) -> str:
        return self._addrs[store_id]

    def stores(self) -> list[int]:
        return sorted(self._addrs)

    # -- rules ----------------------------------------------------------------------------------

    def set_rules(self, rules: dict[tuple[int, int], Rule]) -> None:
        """Set the rule of each directed pair given; REJECT also resets the connections the
        sender has open to the receiver."""

        def apply() -> None:
            for (src, dst), rule in rules.items():
                if src == dst:
                    continue
                if rule.passes:
                    self._rules.pop((src, dst), None)
                else:
                    self._rules[(src, dst)] = rule
                if rule.reject:
                    for conn in list(self._conns.values()):
                        if conn.src == src and conn.dst == dst:
                            self._pair(src, dst).refused += 1
                            conn.close()

        self._call(apply)

    def set_rule(self, src: int, dst: int, rule: Rule) -> None:
        self.set_rules({(src, dst): rule})

    def rules(self) -> dict[tuple[int, int], Rule]:
        """Every directed pair whose rule is not PASS."""
        return self._call(lambda: dict(self._rules))

    def heal(self) -> None:
        """Every pair back to PASS (frames held by a delay are still delivered)."""
        self._call(self._rules.clear)

    def cut(self, a: Iterable[int], b: Iterable[int], rule: Rule = BLACKHOLE) -> None:
        """Both directions between every store of `a` and every store of `b`."""
        a, b = list(a), list(b)
        self.set_rules(
            {pair: rule for x in a for y in b if x != y for pair in ((x, y), (y, x))}
        )

    def partition(self, *groups: Iterable[int], rule: Rule = BLACKHOLE) -> None:
        """Stores talk only within their group (a store in no group is alone)."""
        gs = [set(g) for g in groups]
        everyone = set(self._addrs)
        for g in gs:
            everyone -= g
        gs += [{s} for s in everyone]
        rules: dict[tuple[int, int], Rule] = {}
        for i, g in enumerate(gs):
            for h in gs[i + 1:]:
                for x in g:
                    for y in h:
                        rules[(x, y)] = rules[(y, x)] = rule
        self.set_rules(rules)

    def isolate(self, store_id: int, rule: Rule = BLACKHOLE) -> None:
        self.cut([store_id], [s for s in self._addrs if s != store_id], rule)

    def bridge(self, left: Iterable[int], middle: int, right: Iterable[int],
               rule: Rule = BLACKHOLE) -> None:
        """`left` and `right` cut from each other; `middle` talks to both."""
        self.cut([s for s in left if s != middle], [s for s in right if s != middle], rule)

    def one_way(self, src: int, dst: int, rule: Rule = BLACKHOLE) -> None:
        """Only what `src` sends `dst` is affected."""
        self.set_rule(src, dst, rule)

    # -- observation ----------------------------------------------------------------------------

    def _pair(self, src: int, dst: int) -> PairStats:
        st = self._stats.get((src, dst))
        if st is None:
            st = self._stats[(src, dst)] = PairStats()
        return st

    def stats(self) -> dict[tuple[int, int], PairStats]:
        """A copy of the counters of every directed pair seen so far."""
        return self._call(lambda: {k: v.copy() for k, v in self._stats.items()})

    def open_connections(self) -> list[tuple[int, int]]:
        """(dialer, destination) of every proxied connection open now."""
        return self._call(lambda: [(c.src, c.dst) for c in self._conns.values()])

    def describe(self) -> str:
        rules = self.rules()
        if not rules:
            return "all pass"
        return "; ".join(f"{s}->{d} {r.describe()}" for (s, d), r in sorted(rules.items()))
