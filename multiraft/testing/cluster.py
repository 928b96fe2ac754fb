"""`SimCluster`: N stores in one process on virtual time, over a simulated network, with an
in-memory engine per store and crash/restart (a crashed store loses every write that was not
synced). Everything comes from one seed; the same Store code runs here and in the server.

    c = SimCluster(stores=3, seed=7, initial_regions=1)    # bootstraps and elects
    c.put(b"k", b"v"); c.get(b"k"); c.delete(b"k"); c.cas(b"k", b"old", b"new")
    op = c.submit_put(b"k", b"v"); c.run_until(lambda: op.done, timeout=30)
    c.crash(2); c.restart(2); c.partition([1], [2, 3]); c.heal(); c.stats()
    left, right = c.split(1, [b"m"]); c.merge(left.id, right.id); c.regions()
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batching import Batcher
from multiraft.engine import MemoryEngine
from multiraft.proto.serverpb_pb2 import Region
from multiraft.store.cmd import OP_CAS, OP_DELETE, OP_PUT, Command, Op
from multiraft.store.errors import NotLeader, RegionBusy, StaleCommand, StoreError, Timeout
from multiraft.store.kv import Applied, CasFailed
from multiraft.store.region import key_in_region, ranges_overlap
from multiraft.store.store import Store, StoreConfig

from .simnet import LinkFaults, SimLoop, SimNetwork
from .simwriter import SimWriter

__all__ = ["SimCluster", "SimOp", "OpFailed"]

CLUSTER_ID = 1
# Errors after which a client looks up the region layout again.
_LAYOUT_CHANGED = frozenset({"EPOCH_NOT_MATCH", "REGION_NOT_FOUND", "KEY_NOT_IN_REGION", "REGION_BUSY"})


class OpFailed(Exception):
    """A blocking SimCluster call (`put`, `get`, ...) ended with an error."""


@dataclass
class SimOp:
    """One client operation and what became of it (times are virtual seconds)."""

    kind: str
    key: bytes
    value: bytes | None = None
    expected: bytes | None = None
    request_id: bytes = b""
    invoked_at: float = 0.0
    completed_at: float | None = None
    done: bool = False
    result: Any = None
    error: StoreError | None = None
    attempts: int = 0
    deadline: float = 0.0
    history: list[str] = field(default_factory=list)


class SimCluster:
    """See the module docstring. `tick` is the base tick in virtual seconds; `round_interval`
    how often each store runs a round."""

    def __init__(
        self,
        stores: int = 3,
        seed: int = 7,
        initial_regions: int = 1,
        *,
        tick: float = 0.1,
        round_interval: float = 0.002,
        faults: LinkFaults | None = None,
        store_config: StoreConfig | None = None,
        op_timeout: float = 30.0,
        elect: bool = True,
        initial_stores: int | None = None,
        write_delay: tuple[float, float] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.loop = SimLoop()
        self.net = SimNetwork(self.loop, random.Random(self.rng.getrandbits(64)), self._deliver, faults)
        self.store_ids = list(range(1, stores + 1))
        self.tick_interval = tick
        self.round_interval = round_interval
        self.store_config = store_config or StoreConfig()
        self.op_timeout = op_timeout
        self.engines: dict[int, MemoryEngine] = {sid: MemoryEngine() for sid in self.store_ids}
        # With `write_delay` (seconds, min and max), each store's write rounds commit that long
        # after they are submitted (a pipelined writer, see SimWriter); without, inline.
        self.write_delay = write_delay
        self._writers: dict[int, SimWriter[Any]] = {}
        self.stores: dict[int, Store] = {}
        # Bumped at every crash: periodic events of a dead incarnation stop.
        self._generation: dict[int, int] = dict.fromkeys(self.store_ids, 0)
        self._leader_hint: dict[int, int] = {}
        self._next_request = 0
        self.ops: list[SimOp] = []
        # Stores past `initial_stores` start empty (joined), ready to receive replicas.
        initial = self.store_ids[: initial_stores or stores]
        for sid in self.store_ids:
            store = self._new_store(sid)
            if sid in initial:
                store.bootstrap(CLUSTER_ID, initial, initial_regions)
            else:
                store.join(CLUSTER_ID)
            self._start(sid, store)
        # Paused stores: what reaches them meanwhile, taken in order when they resume.
        self._held: dict[int, list[Callable[[], None]]] = {}
        self._held_ops: dict[int, list[SimOp]] = {}
        # The region layout the clients route by (refreshed when a store says it changed).
        self._layout: list[Region] = []
        if elect:
            # (Until the stores' rounds counted them too: a bootstrap's designated replicas
            # become leaders in a tick, before any round ran.)
            self.run_until(
                lambda: self.all_regions_have_leaders()
                and sum(s.leaders() for s in self.stores.values()) >= initial_regions,
                timeout=60,
            )

    # -- stores -------------------------------------------------------------------------------

    def _new_store(self, sid: int) -> Store:
        batcher: Batcher[Any] | None = None
        if self.write_delay is not None:
            writer: SimWriter[Any] = SimWriter(
                self.engines[sid], self.loop, random.Random(self.rng.getrandbits(64)), self.write_delay
            )
            self._writers[sid] = writer
            batcher = Batcher(self.engines[sid], writer=writer)
        return Store(
            sid,
            self.engines[sid],
            lambda to, frame: self.net.send(sid, to, frame),
            self.store_config,
            random.Random(self.rng.getrandbits(64)),
            send_snapshot=lambda to, header, data, done: self._send_snapshot(sid, to, header, data, done),
            batcher=batcher,
            clock=lambda: self.loop.now,
        )

    def _send_snapshot(self, frm: int, to: int, header: bytes, data: bytes, done: Callable[[bool], None]) -> None:
        def deliver() -> None:
            store = self.stores.get(to)
            if store is not None:
                if to in self._held:
                    self._held[to].append(lambda: store.on_snapshot(frm, header, data))
                else:
                    store.on_snapshot(frm, header, data)

        self.net.send_stream(frm, to, deliver, done, len(data))

    def _start(self, sid: int, store: Store) -> None:
        self.stores[sid] = store
        gen = self._generation[sid]
        # Stores tick at their own phase, like independent timers.
        self.loop.call_later(self.rng.uniform(0, self.tick_interval), lambda: self._tick(sid, gen))
        self.loop.call_later(self.rng.uniform(0, self.round_interval), lambda: self._round(sid, gen))

    def _alive(self, sid: int, gen: int) -> Store | None:
        if self._generation[sid] != gen:
            return None
        return self.stores.get(sid)

    def _tick(self, sid: int, gen: int) -> None:
        store = self._alive(sid, gen)
        if store is None:
            return
        if sid not in self._held:  # (a paused store's ticks are lost, as a process's are)
            store.tick()
        self.loop.call_later(self.tick_interval, lambda: self._tick(sid, gen))

    def _round(self, sid: int, gen: int) -> None:
        store = self._alive(sid, gen)
        if store is None:
            return
        if sid not in self._held:
            store.round()
        self.loop.call_later(self.round_interval, lambda: self._round(sid, gen))

    def _deliver(self, to: int, frm: int, frame: bytes) -> None:
        store = self.stores.get(to)
        if store is not None:
            if to in self._held:
                self._held[to].append(lambda: store.on_frame(frm, frame))
            else:
                store.on_frame(frm, frame)

    def pause(self, sid: int, seconds: float) -> None:
        """Stop store `sid` for `seconds` of virtual time, as SIGSTOP / SIGCONT would: it
        ticks and works no more, what reaches it (frames, snapshots, client requests) waits
        and is taken in order when it resumes; time goes on, so its clock jumps."""
        assert sid in self.stores and sid not in self._held, f"store {sid} is not running"
        self._held[sid] = []
        gen = self._generation[sid]
        self.loop.call_later(seconds, lambda: self._resume(sid, gen))

    def _resume(self, sid: int, gen: int) -> None:
        if self._alive(sid, gen) is None:
            return  # crashed meanwhile (and maybe restarted and paused again: not ours)
        held = self._held.pop(sid, [])
        ops = self._held_ops.pop(sid, [])
        for work in held:
            work()
        for op in ops:
            self._attempt(op, sid)

    def crash(self, sid: int) -> None:
        """Kill a store: it loses everything not synced; clients waiting on it get errors."""
        store = self.stores.pop(sid)
        self._held.pop(sid, None)
        for op in self._held_ops.pop(sid, []):  # their connection broke: the client retries
            self._retry(op, 0.02)
        self._generation[sid] += 1
        store.stop(StoreError(f"store {sid} crashed"))
        writer = self._writers.pop(sid, None)
        if writer is not None:
            writer.kill()
        self.engines[sid].crash()
        self.net.set_down(sid, True)

    def restart(self, sid: int) -> None:
        assert sid not in self.stores, f"store {sid} is running"
        self.net.set_down(sid, False)
        store = self._new_store(sid)
        store.open(CLUSTER_ID)
        self._start(sid, store)

    def partition(self, *groups: list[int]) -> None:
        self.net.partition(*groups)

    def heal(self) -> None:
        self.net.heal()

    # -- time ---------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.loop.now

    def run_for(self, seconds: float) -> None:
        self.loop.run_until(self.loop.now + seconds)

    def run_until(self, pred: Callable[[], bool], timeout: float = 30.0, step: float = 0.01) -> None:
        deadline = self.loop.now + timeout
        while not pred():
            if self.loop.now >= deadline:
                raise TimeoutError(f"condition not met within {timeout} virtual seconds")
            self.loop.run_until(min(self.loop.now + step, deadline))

    def all_regions_have_leaders(self) -> bool:
        led: set[int] = set()
        held: set[int] = set()
        for store in self.stores.values():
            for rid, peer in store.peers.items():
                held.add(rid)
                if peer.is_leader():
                    led.add(rid)
        # Every region a live store holds is led; else look closer (a replica may be stale).
        return held <= led or all(r.id in led for r in self.regions())

    def regions(self) -> list[Region]:
        """Every live region in key order, as its leader knows it (without a leader: the
        newest metadata a live store has); a region some store still holds but that a newer
        region replaced (merged away, or stale) is left out."""
        best: dict[int, tuple[tuple[int, int, int], Region]] = {}
        for store in self.stores.values():
            for rid, peer in store.peers.items():
                if not peer.initialized:
                    continue
                e = peer.region.region_epoch
                rank = (int(peer.is_leader()) * peer.node.term(), e.version, e.conf_ver)
                if rid not in best or rank > best[rid][0]:
                    best[rid] = (rank, peer.region)
        # Newest first: an older region overlapping a kept one is stale. Kept regions never
        # overlap, so only the neighbours by start key can overlap a candidate.
        starts: list[bytes] = []
        out: list[Region] = []
        for r in sorted((r for _, r in best.values()), key=lambda r: -r.region_epoch.version):
            i = bisect_left(starts, r.start_key)
            near = out[max(0, i - 1) : i + 1]
            if not any(ranges_overlap(r.start_key, r.end_key, o.start_key, o.end_key) for o in near):
                starts.insert(i, r.start_key)
                out.insert(i, r)
        return out

    # -- clients ------------------------------------------------------------------------------

    def _region_of(self, key: bytes) -> int:
        for refresh in (False, True):
            if refresh or not self._layout:
                self._layout = self.regions()
            for r in self._layout:
                if key_in_region(key, r):
                    return r.id
        return 0  # no live store holds the key's region now: the attempt fails and retries

    def _new_op(self, kind: str, key: bytes, value: bytes | None = None, expected: bytes | None = None) -> SimOp:
        self._next_request += 1
        op = SimOp(kind, key, value, expected, request_id=f"sim:{self._next_request}".encode(),
                   invoked_at=self.loop.now, deadline=self.loop.now + self.op_timeout)
        self.ops.append(op)
        self._attempt(op)
        return op

    def submit_put(self, key: bytes, value: bytes) -> SimOp:
        return self._new_op("put", key, value)

    def submit_delete(self, key: bytes) -> SimOp:
        return self._new_op("delete", key)

    def submit_cas(self, key: bytes, expected: bytes | None, new: bytes | None) -> SimOp:
        return self._new_op("cas", key, new, expected)

    def submit_get(self, key: bytes) -> SimOp:
        return self._new_op("get", key)

    def _attempt(self, op: SimOp, to: int | None = None) -> None:
        """One try of `op`, at store `to` (a request that waited for it to resume) or at the
        region's leader as far as the client knows."""
        if op.done:
            return
        if self.loop.now >= op.deadline:
            self._finish(op, None, Timeout(f"{op.kind} {op.key!r}: no answer within {self.op_timeout}s"))
            return
        op.attempts += 1
        region_id = self._region_of(op.key)
        live = [s for s in self.store_ids if s in self.stores]
        hint = self._leader_hint.get(region_id)
        if to is not None and to in self.stores:
            sid: int | None = to
        else:
            sid = hint if hint in self.stores else (live[op.attempts % len(live)] if live else None)
        if sid is None:
            self._retry(op, 0.1)
            return
        store = self.stores[sid]
        if sid in self._held:  # the request waits in the paused store's socket
            op.attempts -= 1
            self._held_ops.setdefault(sid, []).append(op)
            return

        def on_done(result: Any, err: StoreError | None) -> None:
            if err is None:
                self._leader_hint[region_id] = sid
                self._finish(op, result, None)
            else:
                op.history.append(f"{self.loop.now:.3f} store {sid}: {err.code}")
                if err.code in _LAYOUT_CHANGED:
                    self._layout = []
                self._retry(op, 0.02)

        try:
            if op.kind == "get":
                store.get(region_id, op.key, on_done)
            else:
                if op.kind == "put":
                    o = Op(OP_PUT, op.key, value=op.value)
                elif op.kind == "delete":
                    o = Op(OP_DELETE, op.key)
                else:
                    o = Op(OP_CAS, op.key, value=op.value, expected=op.expected)
                store.propose(Command(region_id, 0, 0, [o], op.request_id), on_done)
        except NotLeader as e:
            if e.leader is not None and e.leader.store_id != sid:
                self._leader_hint[region_id] = e.leader.store_id
                self._retry(op, 0.0005)
            else:
                self._leader_hint.pop(region_id, None)
                self._retry(op, 0.05)
        except StoreError as e:
            op.history.append(f"{self.loop.now:.3f} store {sid}: {e.code}")
            self._leader_hint.pop(region_id, None)
            if e.code in _LAYOUT_CHANGED:
                self._layout = []
            self._retry(op, 0.05)

    def _retry(self, op: SimOp, delay: float) -> None:
        self.loop.call_later(delay, lambda: self._attempt(op))

    def _finish(self, op: SimOp, result: Any, err: StoreError | None) -> None:
        if op.done:
            return
        op.done = True
        op.completed_at = self.loop.now
        op.error = err
        if op.kind == "cas" and err is None:
            op.result = isinstance(result, Applied)
        elif op.kind == "get":
            op.result = result
        elif err is None:
            op.result = None
        if isinstance(result, CasFailed) and op.kind != "cas":
            raise AssertionError("only CAS can fail a compare")

    def _wait(self, op: SimOp) -> Any:
        self.run_until(lambda: op.done, timeout=self.op_timeout + 1)
        if op.error is not None:
            raise OpFailed(f"{op.kind} {op.key!r}: {op.error}")
        return op.result

    def put(self, key: bytes, value: bytes) -> None:
        self._wait(self.submit_put(key, value))

    def delete(self, key: bytes) -> None:
        self._wait(self.submit_delete(key))

    def get(self, key: bytes) -> bytes | None:
        result: bytes | None = self._wait(self.submit_get(key))
        return result

    def cas(self, key: bytes, expected: bytes | None, new: bytes | None) -> bool:
        return bool(self._wait(self.submit_cas(key, expected, new)))

    # -- administration -----------------------------------------------------------------------

    def leader_of(self, region_id: int) -> int | None:
        """The store holding the region's leader (the highest term's, if two think so)."""
        best: tuple[int, int] | None = None
        for sid, store in self.stores.items():
            peer = store.peers.get(region_id)
            if peer is not None and peer.is_leader():
                term = peer.node.term()
                if best is None or term > best[0]:
                    best = (term, sid)
        return best[1] if best else None

    def _admin(self, region_id: int, call: Callable[[Store, Callable[[Any, StoreError | None], None]], None]) -> Any:
        """Run an admin call on the region's leader, retrying while leadership moves."""
        deadline = self.loop.now + self.op_timeout
        while True:
            box: list[tuple[Any, StoreError | None]] = []
            sid = self.leader_of(region_id)
            if sid is not None:
                try:
                    call(self.stores[sid], _collector(box))
                except (NotLeader, RegionBusy, StaleCommand) as e:
                    box.append((None, e))
                try:
                    self.run_until(_nonempty(box), timeout=max(0.01, deadline - self.loop.now))
                except TimeoutError:
                    pass
                if box and (box[0][1] is None or not box[0][1].retryable):
                    result, err = box[0]
                    if err is not None:
                        raise err
                    return result
            if self.loop.now >= deadline:
                raise OpFailed(f"admin call on region {region_id}: no answer within {self.op_timeout}s")
            self.run_for(0.05)

    def change_peer(
        self, region_id: int, op: str, store_id: int, *, catch_up_ticks: int | None = None
    ) -> Region:
        """Add a voter / learner or remove the replica on `store_id` (see Store.change_peer:
        a voter joins as a learner and is promoted once caught up); returns the region once
        the change is applied on the leader. Raises the store's error if refused
        (CatchUpTimeout: the learner did not catch up within `catch_up_ticks`)."""
        region: Region = self._admin(
            region_id,
            lambda s, cb: s.change_peer(region_id, op, store_id, cb, catch_up_ticks=catch_up_ticks),
        )
        return region

    def split(self, region_id: int, keys: list[bytes]) -> list[Region]:
        """Split the region at `keys` (see Store.split); returns the resulting regions in key
        order once the split is applied on the leader. Raises the store's error if refused."""
        regions: list[Region] = self._admin(region_id, lambda s, cb: s.split(region_id, keys, cb))
        self._layout = []
        return regions

    def merge(self, source_id: int, target_id: int) -> Region:
        """Merge region `source_id` into its neighbour `target_id` (see Store.merge); returns
        the merged region once the merge is applied on the leader's store. Raises the store's
        error if refused or rolled back."""
        region: Region = self._admin(source_id, lambda s, cb: s.merge(source_id, target_id, cb))
        self._layout = []
        return region

    def transfer_leader(self, region_id: int, store_id: int) -> None:
        """Start moving the region's leadership to `store_id` and wait until it moved."""
        self._admin(region_id, lambda s, cb: s.transfer_leader(region_id, store_id, cb))
        self.run_until(lambda: self.leader_of(region_id) == store_id, timeout=self.op_timeout)

    def replica_stores(self, region_id: int) -> set[int]:
        """Stores currently holding an initialized replica of the region."""
        return {sid for sid, st in self.stores.items() if region_id in st.peers and st.peers[region_id].initialized}

    # -- inspection ---------------------------------------------------------------------------

    def stats(self) -> dict[int, dict[str, int]]:
        out = {}
        for sid, store in self.stores.items():
            st = store.stats
            out[sid] = {
                "regions": len(store.peers),
                "leaders": store.leaders(),
                "awake_regions": store.awake_regions(),
                "ticks": st.ticks,
                "fsyncs": st.fsyncs,
                "raft_messages_sent": st.raft_messages_sent,
                "frames_sent": st.frames_sent,
            }
        return out


def _collector(
    box: list[tuple[Any, StoreError | None]],
) -> Callable[[Any, StoreError | None], None]:
    """A store callback that records its outcome in `box`."""

    def done(result: Any, err: StoreError | None) -> None:
        box.append((result, err))

    return done


def _nonempty(box: list[Any]) -> Callable[[], bool]:
    return lambda: bool(box)
