"""`Nemesis`: the fault schedule of a run on real processes (multiraft/testing/nemesis.py runs
it beside the workloads and checks the outcome).

One fault at a time, each healed before the next, with quiet gaps between them. Kinds:

- `partition`: through the proxy, for 1 s to `max_fault`: the leader's store isolated, a
  majority / minority split, a bridge (two sides that only one store hears), messages lost one
  way (between two stores, or everything the leader sends), a flaky network (random loss and
  delay on every link), slow links to one store. Cuts are blackholes or rejects.
- `pause`: SIGSTOP of a store (the leader's, more often than not) for 0.5 s to `max_pause`,
  then SIGCONT.
- `kill`: SIGKILL of a store at a random moment, alone or during a split, a merge, or a
  membership change (a replica removed and added back, which sends it a snapshot); the store
  restarts after 0.5-4 s. Afterwards the nemesis waits until every region has a leader and
  puts every store back in every region (`repair`).
- `disk`: a full disk (the store's files capped just above its data file's size while the
  filler writes big values: the store must stop with "could not be persisted" and exit 1,
  and recover once restarted without the cap) or a slow disk (every commit of a store delayed
  by 50-1000 ms for a while).

`watch` notices a store that exits when no fault asked for it: a failure of the run (it is
restarted so that the run goes on). Everything done is in `schedule`, with the time since the
start of the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import urllib.error
from dataclasses import dataclass
from typing import Any

from .faulty_cluster import FaultyCluster
from .proxy import BLACKHOLE, REJECT, Rule
from .workloads import FILL_PREFIX, REG_PREFIX, SET_PREFIX, Filler

__all__ = ["Nemesis", "Event", "FAULT_KINDS", "FAIL_STOP_MESSAGE"]

_log = logging.getLogger(__name__)

FAULT_KINDS = ("partition", "pause", "kill", "disk")
# What a store whose write round failed logs before it exits 1 (batching/errors.py).
FAIL_STOP_MESSAGE = "could not be persisted"


@dataclass(frozen=True, slots=True)
class Event:
    t: float
    what: str

    def __str__(self) -> str:
        return f"+{self.t:7.2f}s  {self.what}"


class AdminError(Exception):
    pass


class Nemesis:
    """See the module docstring."""

    def __init__(
        self,
        fc: FaultyCluster,
        rng: random.Random,
        filler: Filler,
        *,
        kinds: tuple[str, ...] = FAULT_KINDS,
        max_fault: float = 8.0,
        max_pause: float = 10.0,
        t0: float | None = None,
    ) -> None:
        for k in kinds:
            if k not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {k!r} (known: {', '.join(FAULT_KINDS)})")
        self.fc = fc
        self.rng = rng
        self.filler = filler
        self.kinds = kinds
        self.max_fault = max_fault
        self.max_pause = max_pause
        self.t0 = time.monotonic() if t0 is None else t0
        self.schedule: list[Event] = []
        self.failures: list[str] = []
        # Stores down or failing on purpose (killed, or on a full disk): not a failure.
        self.expected_down: set[int] = set()
        self.counts: dict[str, int] = {}

    # -- bookkeeping ----------------------------------------------------------------------------

    def note(self, what: str) -> None:
        ev = Event(time.monotonic() - self.t0, what)
        self.schedule.append(ev)
        _log.info("nemesis %s", ev)

    def fail(self, what: str) -> None:
        self.failures.append(what)
        self.note(f"FAILURE: {what}")

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    @property
    def store_ids(self) -> list[int]:
        return sorted(self.fc.stores)

    def _up(self) -> list[int]:
        """Stores running and not paused."""
        return [s for s, sp in self.fc.stores.items() if sp.running and not sp.paused]

    # -- the admin API --------------------------------------------------------------------------

    async def admin(self, path: str, method: str = "GET", body: Any = None,
                    timeout: float = 5.0, stores: list[int] | None = None) -> Any:
        """The answer of the first of `stores` (default: every store up, in random order) that
        gives one (a mutating call is forwarded to the leader's store); raises AdminError with
        the last error."""
        errors: list[str] = []
        up = self._up()
        if stores is None:
            stores = self.rng.sample(up, len(up))
        for sid in stores:
            if sid not in up:
                continue
            try:
                return await asyncio.to_thread(self.fc.cluster.admin, sid, path, method, body,
                                               timeout)
            except urllib.error.HTTPError as e:
                try:
                    detail = json.loads(e.read())["error"]
                    errors.append(f"store {sid}: {e.code} {detail.get('code')}: "
                                  f"{detail.get('message')}")
                except (ValueError, KeyError, TypeError, OSError):
                    errors.append(f"store {sid}: HTTP {e.code}")
                if e.code in (400, 409) or e.code == 504:
                    break  # the cluster's answer, not one store's trouble
            except (OSError, ValueError) as e:
                errors.append(f"store {sid}: {e}")
        raise AdminError("; ".join(e[:200] for e in errors) or "no store up")

    async def region_admin(self, region: dict[str, Any], path: str, method: str,
                           body: Any = None, timeout: float = 20.0) -> Any:
        """An admin call about `region`, asked of its leader's store first, then of the other
        stores that hold it."""
        hosts: list[int] = [p["store_id"] for p in region["peers"]]
        leader = region["leader"]["store_id"] if region.get("leader") else None
        order = sorted(hosts, key=lambda s: s != leader)
        return await self.admin(path, method, body, timeout, stores=order)

    async def regions(self) -> list[dict[str, Any]]:
        """The regions as their leaders see them (each region from its leader's store), in key
        order; a region whose leader is unknown or down is left out."""
        out: dict[int, dict[str, Any]] = {}
        for sid in self._up():
            try:
                doc = await asyncio.to_thread(self.fc.cluster.admin, sid, "/regions", "GET",
                                              None, 3.0)
            except (OSError, ValueError):
                continue
            for r in doc["regions"]:
                if r.get("leader") and r["leader"]["store_id"] == sid:
                    out[r["id"]] = r
        return sorted(out.values(), key=lambda r: bytes.fromhex(r["start_key"]))

    async def leader_store(self) -> int | None:
        """The leader's store of a random region (as some store sees it)."""
        leaders = [r["leader"]["store_id"] for r in await self.regions() if r.get("leader")]
        up = self._up()
        leaders = [s for s in leaders if s in up]
        return self.rng.choice(leaders) if leaders else None

    async def victim(self, leader_bias: float = 0.6) -> int | None:
        up = self._up()
        if not up:
            return None
        if self.rng.random() < leader_bias:
            leader = await self.leader_store()
            if leader is not None:
                return leader
        return self.rng.choice(up)

    # -- the schedule ---------------------------------------------------------------------------

    async def run(self, end: float) -> None:
        """Faults until `end` (the last one healed before it)."""
        while True:
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            budget = end - time.monotonic() - 1.0
            if budget < 1.5:
                break
            kind = self.rng.choice(self.kinds)
            try:
                await getattr(self, "_" + kind)(min(budget, self.max_fault))
            except AdminError as e:
                self.note(f"{kind}: admin call failed: {e}")
            except asyncio.CancelledError:
                raise
            await self.settle(min(30.0, max(5.0, end - time.monotonic())))

    async def watch(self, end: float) -> None:
        """Until `end` (and while the final checks run): a store exiting on its own is a
        failure; it is restarted so that the run goes on."""
        while time.monotonic() < end:
            await asyncio.sleep(0.2)
            for sid in self.store_ids:
                code = self.fc.exit_code(sid)
                if code is None or sid in self.expected_down:
                    continue
                tail = self.fc.log_text(sid).splitlines()[-8:]
                self.fail(f"store {sid} exited with {code} when no fault asked for it; log: "
                          + " | ".join(tail))
                self.fc.start(sid)
                self.note(f"restart store {sid}")

    async def settle(self, timeout: float) -> bool:
        """Until every region has a leader on a running store (or `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = await asyncio.to_thread(self.fc.cluster.leaders)
            if leaders:
                return True
            await asyncio.sleep(0.2)
        self.note(f"no leader for every region after {timeout:.0f}s")
        return False

    async def heal_all(self) -> None:
        """Every fault off: links pass, stores resumed, disks as they should be, every store
        running."""
        self.fc.proxy.heal()
        self.filler.on.clear()
        for sid in self.store_ids:
            self.fc.resume(sid)
            self.fc.slow_disk(sid, 0)
            self.fc.free_disk(sid)
            if not self.fc.stores[sid].running:
                self.fc.start(sid)
            self.expected_down.discard(sid)
        self.note("heal everything")

    async def repair(self, timeout: float = 30.0) -> None:
        """Every store a voter of every region again (after interrupted membership changes)."""
        for r in await self.regions():
            have = {p["store_id"]: p["role"] for p in r["peers"]}
            for sid in self.store_ids:
                if have.get(sid) == "voter":
                    continue
                try:
                    await self.region_admin(r, f"/regions/{r['id']}/peers", "POST",
                                            {"store_id": sid, "role": "voter",
                                             "timeout": timeout}, timeout + 10)
                    self.note(f"repair: store {sid} a voter of region {r['id']} again")
                except AdminError as e:
                    self.note(f"repair: region {r['id']} store {sid}: {e}")

    # -- partitions -----------------------------------------------------------------------------

    async def _partition(self, budget: float) -> None:
        proxy, rng, ids = self.fc.proxy, self.rng, self.store_ids
        rule = rng.choice([BLACKHOLE, REJECT])
        flavor = rng.choice(["isolate-leader", "split", "bridge", "one-way", "flaky", "slow"])
        if flavor == "isolate-leader":
            leader = await self.leader_store() or rng.choice(ids)
            proxy.isolate(leader, rule)
            what = f"isolate leader store {leader} ({rule.describe()})"
        elif flavor == "split":
            shuffled = rng.sample(ids, len(ids))
            k = rng.randint(1, max(1, (len(ids) - 1) // 2))
            minority, majority = sorted(shuffled[:k]), sorted(shuffled[k:])
            proxy.partition(minority, majority, rule=rule)
            what = f"partition {minority} | {majority} ({rule.describe()})"
        elif flavor == "bridge":
            shuffled = rng.sample(ids, len(ids))
            middle, rest = shuffled[0], shuffled[1:]
            half = max(1, len(rest) // 2)
            left, right = sorted(rest[:half]), sorted(rest[half:])
            proxy.bridge(left, middle, right, rule)
            what = f"bridge {left} - {middle} - {right} ({rule.describe()} between the sides)"
        elif flavor == "one-way":
            if rng.random() < 0.5:
                src, dst = rng.sample(ids, 2)
                proxy.one_way(src, dst, rule)
                what = f"one way: {src} -> {dst} lost ({rule.describe()})"
            else:
                leader = await self.leader_store() or rng.choice(ids)
                for d in ids:
                    if d != leader:
                        proxy.one_way(leader, d, BLACKHOLE)
                what = f"one way: everything leader store {leader} sends is lost"
        elif flavor == "flaky":
            loss, delay = rng.uniform(0.05, 0.5), rng.uniform(0.0, 0.05)
            flaky = Rule(loss=loss, delay=delay, jitter=rng.uniform(0.0, 0.05))
            proxy.set_rules({(a, b): flaky for a in ids for b in ids if a != b})
            what = f"flaky network: {flaky.describe()} on every link"
        else:
            slow = rng.choice(ids)
            rule = Rule(delay=rng.uniform(0.05, 0.5), jitter=rng.uniform(0.0, 0.1))
            proxy.cut([slow], [s for s in ids if s != slow], rule)
            what = f"slow links to and from store {slow}: {rule.describe()}"
        self._count(f"partition/{flavor}")
        duration = rng.uniform(1.0, max(1.0, budget))
        self.note(f"{what} for {duration:.1f}s")
        await asyncio.sleep(duration)
        proxy.heal()
        self.note("heal the network")

    # -- pauses ---------------------------------------------------------------------------------

    async def _pause(self, budget: float) -> None:
        sid = await self.victim()
        if sid is None:
            return
        duration = self.rng.uniform(0.5, max(0.5, min(self.max_pause, budget)))
        self.fc.pause(sid)
        self._count("pause")
        self.note(f"SIGSTOP store {sid} for {duration:.1f}s")
        await asyncio.sleep(duration)
        self.fc.resume(sid)
        self.note(f"SIGCONT store {sid}")

    # -- kills ----------------------------------------------------------------------------------

    async def _kill(self, budget: float) -> None:
        flavor = self.rng.choice(["plain", "split", "merge", "membership"])
        if flavor == "plain":
            sid = await self.victim()
            if sid is not None:
                self._count("kill/plain")
                await self._kill_restart(sid)
            return
        regions = await self.regions()
        if not regions:
            self.note(f"kill during {flavor}: no region list")
            return
        if flavor == "merge":
            await self._kill_during_merge(regions)
        elif flavor == "split":
            await self._kill_during_split(regions)
        else:
            await self._kill_during_membership(regions)
        await self.settle(30.0)
        await self.repair()

    async def _kill_restart(self, sid: int, during: str = "") -> None:
        self.expected_down.add(sid)
        self.fc.kill(sid)
        self.note(f"SIGKILL store {sid}{during}")
        await asyncio.sleep(self.rng.uniform(0.5, 4.0))
        self.fc.start(sid)
        self.expected_down.discard(sid)
        self.note(f"restart store {sid}")

    async def _run_and_kill(self, what: str, call: Any, leader: int | None) -> None:
        """Start the admin call `call`, SIGKILL a store (the region's leader's or any) at a
        random moment of it, note the call's outcome, restart the store."""
        task = asyncio.ensure_future(call)
        await asyncio.sleep(self.rng.uniform(0.0, 0.6))
        up = self._up()
        sid = leader if leader in up and self.rng.random() < 0.5 else self.rng.choice(up) if up else None
        if sid is not None:
            self.expected_down.add(sid)
            self.fc.kill(sid)
            self.note(f"SIGKILL store {sid} during {what}")
        try:
            await task
            self.note(f"{what}: done")
        except AdminError as e:
            self.note(f"{what}: {e}")
        if sid is not None:
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))
            self.fc.start(sid)
            self.expected_down.discard(sid)
            self.note(f"restart store {sid}")

    def _split_key(self) -> bytes:
        rng = self.rng
        prefix = rng.choice([REG_PREFIX, SET_PREFIX, FILL_PREFIX, b"m"])
        if prefix == SET_PREFIX:
            return prefix + b"%02d" % rng.randrange(100)
        if prefix == FILL_PREFIX:
            return prefix + b"%03d" % rng.randrange(64)
        if prefix == REG_PREFIX:
            return prefix + b"%05d" % rng.randrange(0, 200)
        return prefix

    async def _kill_during_split(self, regions: list[dict[str, Any]]) -> None:
        key = self._split_key()
        region = next(
            (r for r in regions
             if bytes.fromhex(r["start_key"]) < key
             and (not r["end_key"] or key < bytes.fromhex(r["end_key"]))),
            None,
        )
        if region is None:
            self.note(f"split at {key!r}: already a boundary")
            return
        leader = region["leader"]["store_id"] if region.get("leader") else None
        self._count("kill/split")
        what = f"split of region {region['id']} at {key!r}"
        self.note(what)
        await self._run_and_kill(
            what, self.region_admin(region, f"/regions/{region['id']}/split", "POST",
                                    {"keys": [key.hex()]}), leader)

    async def _kill_during_merge(self, regions: list[dict[str, Any]]) -> None:
        pairs = [
            (a, b) for a, b in zip(regions, regions[1:], strict=False)
            if {p["store_id"] for p in a["peers"]} == {p["store_id"] for p in b["peers"]}
        ]
        if not pairs or len(regions) <= 2:
            await self._kill_during_split(regions)
            return
        source, target = self.rng.choice(pairs)
        if self.rng.random() < 0.5:
            source, target = target, source
        leader = source["leader"]["store_id"] if source.get("leader") else None
        self._count("kill/merge")
        what = f"merge of region {source['id']} into {target['id']}"
        self.note(what)
        await self._run_and_kill(
            what, self.region_admin(source, f"/regions/{source['id']}/merge", "POST",
                                    {"target": target["id"]}), leader)

    async def _kill_during_membership(self, regions: list[dict[str, Any]]) -> None:
        region = self.rng.choice(regions)
        leader = region["leader"]["store_id"] if region.get("leader") else None
        candidates = [p["store_id"] for p in region["peers"] if p["store_id"] != leader]
        if not candidates:
            return
        sid = self.rng.choice(candidates)
        rid = region["id"]
        self._count("kill/membership")
        # Data for the snapshot the re-added replica will get.
        self.filler.on.set()
        await asyncio.sleep(self.rng.uniform(0.3, 1.5))
        self.filler.on.clear()
        try:
            await self.region_admin(region, f"/regions/{rid}/peers/{sid}", "DELETE")
        except AdminError as e:
            self.note(f"remove store {sid} from region {rid}: {e}")
            return
        self.note(f"removed store {sid} from region {rid}")
        what = f"adding store {sid} back to region {rid} (a snapshot)"
        self.note(what)
        await self._run_and_kill(
            what, self.region_admin(region, f"/regions/{rid}/peers", "POST",
                                    {"store_id": sid, "role": "voter", "timeout": 20}, 30.0),
            leader if self.rng.random() < 0.5 else sid)

    # -- disks ----------------------------------------------------------------------------------

    async def _disk(self, budget: float) -> None:
        if self.rng.random() < 0.5:
            await self._full_disk(budget)
        else:
            await self._slow_disk(budget)

    async def _full_disk(self, budget: float) -> None:
        sid = await self.victim(leader_bias=0.5)
        if sid is None:
            return
        self._count("disk/full")
        headroom = self.rng.choice([64 << 10, 256 << 10, 1 << 20])
        self.expected_down.add(sid)
        limit = self.fc.fill_disk(sid, headroom)
        self.note(f"disk of store {sid} full: files capped at {limit} bytes "
                  f"({headroom >> 10} KiB over its data file)")
        self.filler.on.set()
        deadline = time.monotonic() + max(2.0, budget)
        while time.monotonic() < deadline and self.fc.exit_code(sid) is None:
            await asyncio.sleep(0.1)
        self.filler.on.clear()
        if self.fc.exit_code(sid) is None:
            self.fc.free_disk(sid)
            # A write that failed just before the cap went may still be stopping its store.
            await asyncio.sleep(1.0)
        code = self.fc.exit_code(sid)
        if code is None:
            self.expected_down.discard(sid)
            self.note(f"disk space back on store {sid} (it did not fill up)")
            return
        text = self.fc.log_text(sid)
        lines = [ln for ln in text.splitlines() if FAIL_STOP_MESSAGE in ln]
        if code == 1 and lines:
            msg = lines[-1].split("BatchingFatalError: ")[-1].split("; nothing from")[0]
            self.note(f"store {sid} stopped itself (exit 1): {msg}")
        else:
            self.fail(f"store {sid} on a full disk exited with {code} without saying that a "
                      f"round could not be persisted; log: "
                      + " | ".join(text.splitlines()[-8:]))
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))
        self.fc.start(sid)  # a new process: no cap
        self.expected_down.discard(sid)
        self.note(f"disk space back; restart store {sid}")

    async def _slow_disk(self, budget: float) -> None:
        sid = await self.victim(leader_bias=0.5)
        if sid is None:
            return
        self._count("disk/slow")
        ms = self.rng.uniform(50, 1000)
        duration = self.rng.uniform(1.0, max(1.0, budget))
        self.fc.slow_disk(sid, ms)
        self.note(f"slow disk on store {sid}: every commit {ms:.0f} ms late, for {duration:.1f}s")
        await asyncio.sleep(duration)
        self.fc.slow_disk(sid, 0)
        self.note(f"disk of store {sid} fast again")
