"""Raft messages through the router between two store processes on loopback.

    python -m bench.router [--regions N] [--seconds S] [--kind mix|heartbeat|append]
                           [--pack lanes|wire|both]
                           [--loop uvloop|asyncio] [--repeat K] [--profile] [--no-save]

Without --regions it runs 1, 100, 1,000 and 10,000 regions; by default each size twice: with
the store's `OutboundLanes` and with the `WireLanes` packing prototype (see its docstring).

What is measured: the store-to-store path the store uses, minus raft itself. The sender
process simulates N regions, each producing one raft message per round (a MsgHeartbeat, or a
MsgAppend carrying one 128-byte entry; `mix` alternates by region) in its `RaftMessage`
envelope (region id, from/to peer, epoch). Every round pushes all N messages into
`OutboundLanes` (one lane: the one destination store), `drain()`s them into frames (one frame
per destination store per round, split past 4 MiB) and hands each frame to `Transport.send`.
The receiver process runs a `Transport` whose `on_batch` counts the messages of each decoded
frame (one `ParseFromString` per frame, in the codec; no per-message work). The envelopes are
built once, before the clock starts (the store builds them as part of raft's work). Pacing:
the sender yields to its loop after every round and waits while more than 4 MiB are queued
for the receiver, so nothing is dropped (dropped frames are reported and should be 0).

Reported per configuration: raft messages/s received (from the receiver's first to its last
frame), messages per frame, frames/s, rounds/s, and CPU µs per message: the process CPU time
of both sides (sender from its first round to its last, receiver from its first frame to its
last) divided by the messages received.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import multiprocessing as mp
import pstats
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any

from multiraft.proto.eraftpb_pb2 import Entry, Message, MessageType
from multiraft.proto.serverpb_pb2 import BatchRaftMessage, Peer, RaftMessage, RegionEpoch
from router.codec import RAFT, encode_batch, encode_frame
from router.lanes import LaneStats, OutboundLanes, varint
from router.transport import Transport

from .common import emit

TABLE = [1, 100, 1_000, 10_000]
CLUSTER = 1
SENDER, RECEIVER = 1, 2
ENTRY_SIZE = 128
# The end-of-run marker (last_observed_time of an empty batch).
END = (1 << 63) - 1
# Warm-up frames (connecting) are stamped with this clock and not counted.
WARMUP = END - 1
PENDING_HIGH = 4 << 20
PENDING_LOW = 1 << 20




# Field 1 (BatchRaftMessage.msgs, length-delimited) tag + length, for lengths < 16 KiB.
_MSG_PREFIX = [b"\x0a" + varint(n) for n in range(1 << 14)]


class WireLanes:
    """A prototype of `OutboundLanes.drain` that packs each frame from the envelopes' own
    serialization (`SerializeToString` + a precomputed tag/length prefix, concatenated, then
    the batch's scalar fields: protobuf accepts fields in any order) instead of copying every
    envelope into a `BatchRaftMessage` (`msgs.append`, ~1.1 µs) and sizing it (`ByteSize`,
    ~0.5 µs). Same interface as `OutboundLanes` for what the benchmark uses; one lane, no
    frame splitting (the benchmark's frames stay under 4 MiB). The receiver decodes the
    frames exactly as it decodes `OutboundLanes` frames."""

    __slots__ = ("store_id", "clock", "_lane", "stats")

    def __init__(self, store_id: int, max_lane_messages: int = 16384) -> None:
        self.store_id = store_id
        self.clock = 0
        self._lane: list[RaftMessage] = []
        self.stats = LaneStats()

    def push(self, to_store: int, msg: RaftMessage) -> bool:
        self._lane.append(msg)
        return True

    def drain(self) -> dict[int, list[bytes]]:
        prefix = _MSG_PREFIX
        parts: list[bytes] = []
        add = parts.append
        for m in self._lane:
            b = m.SerializeToString()
            add(prefix[len(b)])
            add(b)
        add(BatchRaftMessage(last_observed_time=self.clock,
                             from_store_id=self.store_id).SerializeToString())
        self._lane.clear()
        return {RECEIVER: [encode_frame(RAFT, b"".join(parts))]}


def make_message(region: int, kind: str) -> RaftMessage:
    """One region's message to its follower on the receiving store, as the store builds it."""
    leader, follower = (region << 2) | SENDER, (region << 2) | RECEIVER
    m = RaftMessage(
        region_id=region,
        from_peer=Peer(id=leader, store_id=SENDER),
        to_peer=Peer(id=follower, store_id=RECEIVER),
        region_epoch=RegionEpoch(conf_ver=3, version=7),
    )
    append = kind == "append" or (kind == "mix" and region % 2 == 1)
    msg: Message = m.message
    msg.to = follower
    msg.from_ = leader
    msg.term = 6
    if append:
        msg.msg_type = MessageType.MsgAppend
        msg.index = 1000
        msg.log_term = 6
        msg.commit = 1000
        msg.entries.append(Entry(term=6, index=1001, data=b"v" * ENTRY_SIZE))
    else:
        msg.msg_type = MessageType.MsgHeartbeat
        msg.commit = 1000
    return m


# ----------------------------------------------------------------------------- receiver


def _receiver(conn: Connection, loop_kind: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        st = {"msgs": 0, "frames": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0, "cpu1": 0.0}

        def on_batch(from_store: int, batch: BatchRaftMessage) -> None:
            if batch.last_observed_time == END:
                st["last"] = time.perf_counter()
                st["cpu1"] = time.process_time()
                if not done.done():
                    done.set_result(None)
                return
            if batch.last_observed_time == WARMUP:
                return
            if not st["frames"]:
                st["first"] = time.perf_counter()
                st["cpu0"] = time.process_time()
            st["frames"] += 1
            st["msgs"] += len(batch.msgs)

        t = Transport(cluster_id=CLUSTER, store_id=RECEIVER, listen_addr="127.0.0.1:0",
                      on_batch=on_batch, on_unreachable=lambda s: None)
        await t.start()
        conn.send(t.listen_port)
        await done
        st["bad_frames"] = sum(t.stats.bad_frames_by_reason.values())
        conn.send(st)
        await t.close()

    _run_loop(main(), loop_kind)


def _run_loop(coro: Any, loop_kind: str) -> None:
    if loop_kind == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


# ------------------------------------------------------------------------------- sender


async def _send(regions: int, seconds: float, kind: str, pack: str, port: int,
                conn: Connection, profile: cProfile.Profile | None) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    t = Transport(cluster_id=CLUSTER, store_id=SENDER, listen_addr="127.0.0.1:0",
                  on_batch=lambda s, b: None, on_unreachable=lambda s: None)
    await t.start()
    t.add_store(RECEIVER, f"127.0.0.1:{port}")
    lanes: OutboundLanes | WireLanes
    if pack == "lanes":
        lanes = OutboundLanes(SENDER, max_lane_messages=max(16384, regions))
    else:
        lanes = WireLanes(SENDER)
    msgs = [make_message(r + 1, kind) for r in range(regions)]
    push = lanes.push
    send = t.send
    # Connect and warm up outside the clock.
    lanes.clock = WARMUP
    for m in msgs[:10]:
        push(RECEIVER, m)
    for f in lanes.drain()[RECEIVER]:
        send(RECEIVER, f)
    while t.stats.frames_sent == 0 or t.pending_bytes(RECEIVER):
        await asyncio.sleep(0.001)
    lanes.clock = 0
    rounds = 0
    if profile is not None:
        profile.enable()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for m in msgs:
            push(RECEIVER, m)
        for f in lanes.drain()[RECEIVER]:
            send(RECEIVER, f)
        rounds += 1
        if t.pending_bytes(RECEIVER) > PENDING_HIGH:
            while t.pending_bytes(RECEIVER) > PENDING_LOW:
                await asyncio.sleep(0.0005)
        else:
            await asyncio.sleep(0)
    while t.pending_bytes(RECEIVER):
        await asyncio.sleep(0.0005)
    cpu1 = time.process_time()
    t1 = time.perf_counter()
    if profile is not None:
        profile.disable()
    send(RECEIVER, encode_batch(BatchRaftMessage(from_store_id=SENDER, last_observed_time=END)))
    recv: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
    out = {
        "rounds": rounds,
        "sender_wall_s": t1 - t0,
        "sender_cpu_s": cpu1 - cpu0,
        "frames_sent": t.stats.frames_sent - 1,
        "dropped_frames": t.stats.dropped_frames + t.stats.dropped_unreachable,
        "lane_drops": lanes.stats.messages_dropped,
        "recv": recv,
    }
    await t.close()
    return out


def run_one(regions: int, seconds: float, kind: str, pack: str, loop_kind: str,
            profile: bool) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_receiver, args=(child, loop_kind), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        prof = cProfile.Profile() if profile else None
        result: dict[str, Any] = {}

        async def main() -> None:
            result.update(await _send(regions, seconds, kind, pack, port, parent, prof))

        _run_loop(main(), loop_kind)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    recv = result.pop("recv")
    msgs, frames = recv["msgs"], recv["frames"]
    window = max(recv["last"] - recv["first"], 1e-9)
    cpu = result["sender_cpu_s"] + (recv["cpu1"] - recv["cpu0"])
    row = {
        "regions": regions,
        "kind": kind,
        "pack": pack,
        "messages": msgs,
        "messages_per_s": round(msgs / window),
        "messages_per_frame": round(msgs / max(frames, 1), 1),
        "frames_per_s": round(frames / window),
        "rounds_per_s": round(result["rounds"] / result["sender_wall_s"]),
        "cpu_us_per_message": round(cpu / max(msgs, 1) * 1e6, 3),
        "sender_cpu_us_per_message": round(result["sender_cpu_s"] / max(msgs, 1) * 1e6, 3),
        "receiver_cpu_us_per_message": round((recv["cpu1"] - recv["cpu0"]) / max(msgs, 1) * 1e6, 3),
        "frames": frames,
        "dropped_frames": result["dropped_frames"],
        "lane_drops": result["lane_drops"],
        "bad_frames": recv["bad_frames"],
        "all_delivered": msgs == result["rounds"] * regions,
    }
    if prof is not None:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(15)
        row["profile_sender"] = s.getvalue()
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--regions", type=int, help="one configuration (default: 1, 100, 1000, 10000)")
    p.add_argument("--seconds", type=float, default=3.0, help="sending time per run (3)")
    p.add_argument("--kind", choices=["mix", "heartbeat", "append"], default="mix")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    p.add_argument("--pack", choices=["lanes", "wire", "both"], default="both",
                   help="lanes: router.lanes.OutboundLanes (the store's path); wire: the "
                   "WireLanes prototype; both (default): each, in the same run")
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration (best kept)")
    p.add_argument("--profile", action="store_true", help="cProfile the sender's rounds")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    if args.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            args.loop = "asyncio"
    sizes = [args.regions] if args.regions is not None else TABLE
    results = []
    packs = ["lanes", "wire"] if args.pack == "both" else [args.pack]
    for n in sizes:
        for pack in packs:
            runs = [run_one(n, args.seconds, args.kind, pack, args.loop, args.profile)
                    for _ in range(args.repeat)]
            best = max(runs, key=lambda r: r["messages_per_s"])
            if len(runs) > 1:
                best["median_messages_per_s"] = round(
                    statistics.median(r["messages_per_s"] for r in runs))
                best["runs"] = len(runs)
            if args.profile:
                print(best.pop("profile_sender"))
            results.append(best)
    emit("router", {"loop": args.loop, "seconds": args.seconds,
                    "entry_size": ENTRY_SIZE, "results": results}, save=not args.no_save)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
