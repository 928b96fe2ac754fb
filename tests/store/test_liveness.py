"""Store liveness as a store sees the others (`Store.store_liveness`): heard or silent, and
suspected once silent for an election timeout; watching a store without a common region."""

from __future__ import annotations

import pytest

from multiraft.store import InvalidRequest
from multiraft.store.hibernate import StoreLiveness
from multiraft.store.store import StoreConfig
from multiraft.testing import SimCluster


def _view(c: SimCluster, sid: int) -> dict[int, StoreLiveness]:
    return {s.store_id: s for s in c.stores[sid].store_liveness()}


def test_a_silent_store_is_suspected_and_heard_again_after_its_restart() -> None:
    c = SimCluster(stores=3, seed=31, initial_regions=2)
    c.run_for(1.0)
    view = _view(c, 1)
    assert set(view) == {2, 3}
    assert all(s.heard and not s.suspected for s in view.values())
    assert c.stores[1].suspected_stores() == frozenset()
    c.crash(3)
    election = c.store_config.election_ticks
    c.run_for((election + 2) * c.tick_interval)
    view = _view(c, 1)
    assert view[3].suspected and view[3].silent_ticks >= election
    assert not view[2].suspected
    assert c.stores[2].suspected_stores() == frozenset({3})
    c.restart(3)
    c.run_until(lambda: not _view(c, 1)[3].suspected, timeout=10)
    assert _view(c, 1)[3].silent_ticks <= 2


def test_suspect_ticks_sets_how_long_a_store_may_be_silent() -> None:
    c = SimCluster(stores=3, seed=33, initial_regions=2, store_config=StoreConfig(suspect_ticks=30))
    c.run_for(1.0)
    c.crash(3)
    c.run_for(25 * c.tick_interval)
    assert not _view(c, 1)[3].suspected  # past an election timeout, not yet suspected
    c.run_for(7 * c.tick_interval)
    assert _view(c, 1)[3].suspected


def test_a_store_without_a_common_region_is_watched_once_tracked() -> None:
    c = SimCluster(stores=4, seed=32, initial_regions=1, initial_stores=3)
    c.run_for(1.0)
    assert 4 not in _view(c, 1)  # no region in common, not tracked
    c.stores[1].track_store(4)
    c.stores[1].track_store(1)  # itself: ignored
    c.run_until(lambda: 4 in _view(c, 1) and _view(c, 1)[4].heard, timeout=5)
    assert 1 not in _view(c, 1)
    # Store 4 answers store 1's heartbeats, so it watches store 1 too.
    assert 1 in _view(c, 4) and not _view(c, 4)[1].suspected
    c.crash(4)
    c.run_until(lambda: _view(c, 1)[4].suspected, timeout=5)
    # A store that left for good is forgotten; one that holds replicas cannot be.
    c.stores[1].forget_store(4)
    assert 4 not in _view(c, 1)
    with pytest.raises(InvalidRequest, match="replica on store 2"):
        c.stores[1].forget_store(2)
