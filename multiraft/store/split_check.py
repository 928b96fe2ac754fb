"""Automatic split and merge: what TiKV's split checker and PD's merge checker do, done by the
store on the regions it leads.

Every `split_check_ticks` the leader looks at the regions that wrote or served since the last
check:

- by size: a region over `region_split_size` bytes or `region_split_keys` keys splits at its
  middle key (by bytes, or by keys when the key count is what is over). Sizes are counters
  the apply loop keeps up to date on every replica from what each command changed; a region
  is counted by one scan of its range the first time it is checked (after a restart, a split
  or a merge).
- by load: a region serving more than `region_split_qps` requests per second for
  `split_qps_checks` checks in a row splits at the median of a sample of the keys it served
  (so each half takes about half of the recent load).

Every few checks it also looks at all the regions it leads for merges: a region below both
`region_merge_size` and `region_merge_keys`, not split or merged for
`split_merge_cooldown_ticks`, not hot, merges into an adjacent region on the same stores that
is old enough too (its right neighbour by preference), if the two together stay below the
split thresholds (so the merge does not undo itself). Stores decide alone, so neighbours led
on different stores may pick each other at once (one merge rolls back): each candidate
tries with probability 1/2 per check, which breaks such ties. At most `_MERGES_PER_CHECK`
merges start per check.

Each automatic split or merge is logged at INFO and counted by trigger (`StoreStats.splits`
and `.merges`: "size", "keys", "load", "auto").
"""

from __future__ import annotations

import logging
from typing import Any

from multiraft.engine import CF_KV

from .errors import StoreError
from .merge import Merge
from .peer import Peer

__all__ = ["SplitCheck"]

_log = logging.getLogger(__name__)
# Keys sampled per region and check for the load-based split.
_LOAD_SAMPLES = 64
# Pairs read per engine scan while counting or looking for a split key.
_SCAN_CHUNK = 4096
# Merges started per check, at most (each needs the two regions' replicas to agree).
_MERGES_PER_CHECK = 8
# The merge look runs every this many split checks.
_MERGE_CHECK_EVERY = 10


def _log_outcome(what: str, rid: int) -> Any:
    def done(_result: Any, err: StoreError | None) -> None:
        if err is not None:
            _log.debug("region %d: automatic %s not done: %s", rid, what, err)

    return done


class SplitCheck(Merge):
    """Automatic split and merge (module docstring)."""

    def note_load(self, peer: Peer, key: bytes) -> None:
        """A request for `key` reached the region's leader (load-based split)."""
        peer.load += 1
        if self.config.region_split_qps <= 0:
            return
        samples = peer.load_keys
        if len(samples) < _LOAD_SAMPLES:
            samples.append(key)
        else:  # a uniform sample of the check's requests (reservoir sampling)
            i = self.rng.randrange(peer.load)
            if i < _LOAD_SAMPLES:
                samples[i] = key
        self._checked.add(peer.region.id)

    def _check_splits(self) -> None:
        """The split check (and, every few, the merge check) of the regions led here."""
        self._split_checks += 1
        touched, self._checked = self._checked, set()
        for rid in touched:
            peer = self.peers.get(rid)
            if peer is None or not peer.initialized:
                continue
            if peer.is_leader() and peer.merge_state is None:
                self._check_split(peer)
            peer.load = 0
            peer.load_keys = []
        if self.config.auto_merge and self._split_checks % _MERGE_CHECK_EVERY == 0:
            self._check_auto_merges()

    def _check_split(self, peer: Peer) -> None:
        c = self.config
        rid = peer.region.id
        seconds = c.split_check_ticks * c.base_tick_seconds
        if c.region_split_qps > 0 and peer.load / seconds > c.region_split_qps:
            peer.hot_checks += 1
        else:
            peer.hot_checks = 0
        self._count(peer)
        key: bytes | None = None
        trigger = ""
        if c.region_split_size and peer.approx_bytes > c.region_split_size:
            key, trigger = self._middle_key(peer, by_bytes=True), "size"
        elif c.region_split_keys and peer.approx_keys > c.region_split_keys:
            key, trigger = self._middle_key(peer, by_bytes=False), "keys"
        elif peer.hot_checks >= c.split_qps_checks:
            key, trigger = self._load_key(peer), "load"
        if key is None:
            return
        try:
            self.split(rid, [key], _log_outcome("split", rid), trigger=trigger)
        except StoreError as e:
            _log.debug("region %d: automatic split not proposed: %s", rid, e)
            return
        peer.hot_checks = 0
        _log.info(
            "region %d: automatic split at %r (%s: %d keys, %d bytes, %d requests/s)",
            rid,
            key,
            trigger,
            peer.approx_keys,
            peer.approx_bytes,
            int(peer.load / seconds),
        )

    def _count(self, peer: Peer) -> None:
        """Count the region's keys and bytes once; the apply loop keeps them up to date."""
        if peer.approx_keys >= 0:
            return
        keys = size = 0
        for k, v in self._scan_region(peer):
            keys += 1
            size += len(k) + len(v)
        peer.approx_keys, peer.approx_bytes = keys, size

    def _scan_region(self, peer: Peer) -> Any:
        region = peer.region
        lo, hi = region.start_key, region.end_key or None
        while True:
            chunk = self.engine.scan(CF_KV, lo, hi, _SCAN_CHUNK)
            yield from chunk
            if len(chunk) < _SCAN_CHUNK:
                return
            lo = chunk[-1][0] + b"\x00"

    def _middle_key(self, peer: Peer, *, by_bytes: bool) -> bytes | None:
        """The key where the first half of the region's bytes (or keys) ends."""
        half = (peer.approx_bytes if by_bytes else peer.approx_keys) // 2
        acc = 0
        start = peer.region.start_key
        for k, v in self._scan_region(peer):
            acc += len(k) + len(v) if by_bytes else 1
            if acc >= half and k > start:
                return bytes(k)
        return None

    def _load_key(self, peer: Peer) -> bytes | None:
        """The median sampled key, if it is strictly inside the range."""
        samples = sorted(peer.load_keys)
        if not samples:
            return None
        key = samples[len(samples) // 2]
        region = peer.region
        if key <= region.start_key or (region.end_key and key >= region.end_key):
            return None
        return key

    def _check_auto_merges(self) -> None:
        c = self.config
        now = self.lanes.clock
        cooldown = c.split_merge_cooldown_ticks
        # The regions led here past their cooldown, in key order (one pass and no sort
        # while there are none: the check runs every few seconds over every region).
        candidates = [
            p
            for p in self.peers.values()
            if now - p.born >= cooldown and p.initialized and p.is_leader()
        ]
        if not candidates:
            return
        candidates.sort(key=lambda p: p.region.start_key)
        # Their neighbours here, by the key they meet at (a neighbour on other stores only
        # cannot be a target; initialized regions here do not overlap).
        by_start: dict[bytes, Peer] = {}
        by_end: dict[bytes, Peer] = {}
        for p in self.peers.values():
            if p.initialized:
                by_start[p.region.start_key] = p
                if p.region.end_key:
                    by_end[p.region.end_key] = p

        def ripe(p: Peer) -> bool:
            return (
                p.merge_state is None
                and now - p.born >= c.split_merge_cooldown_ticks
                and p.hot_checks == 0
                and not p.has_pending_admin()
                and not p.pending_apply
            )

        busy: set[int] = set()
        started = 0
        for p in candidates:
            if started >= _MERGES_PER_CHECK:
                return
            rid = p.region.id
            if rid in busy or not ripe(p):
                continue
            self._count(p)
            if p.approx_bytes >= c.region_merge_size or p.approx_keys >= c.region_merge_keys:
                continue
            left = by_end.get(p.region.start_key) if p.region.start_key else None
            right = by_start.get(p.region.end_key) if p.region.end_key else None
            best: Peer | None = None
            for n in (right, left):  # into the right neighbour by preference
                if n is None or n.region.id in busy or not ripe(n):
                    continue
                self._count(n)
                if not (
                    c.region_split_size
                    and p.approx_bytes + n.approx_bytes >= c.region_split_size
                    or c.region_split_keys
                    and p.approx_keys + n.approx_keys >= c.region_split_keys
                ):
                    best = n
                    break
            # Stores decide alone: two neighbours led on two stores may each pick the other,
            # or a chain of them form, and all but one of such merges roll back. A coin per
            # region and check breaks the symmetry, so some of them go through every time.
            if best is None or self.rng.random() < 0.5:
                continue
            try:
                self.merge(rid, best.region.id, _log_outcome("merge", rid), trigger="auto")
            except StoreError as e:
                _log.debug("region %d: automatic merge not proposed: %s", rid, e)
                continue
            busy |= {rid, best.region.id}
            started += 1
            _log.info(
                "region %d (%d keys, %d bytes): automatic merge into region %d (%d keys)",
                rid,
                p.approx_keys,
                p.approx_bytes,
                best.region.id,
                best.approx_keys,
            )
