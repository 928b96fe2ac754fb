"""The fuzz guard itself: a loop or a block fails the call, a swallowed alarm still fails it,
and a quick call passes."""

from __future__ import annotations

import time

import pytest

from tests.fuzz import support
from tests.fuzz.support import Hang, guard


@pytest.fixture
def short_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(support, "HANG_CPU_SECONDS", 0.2)
    monkeypatch.setattr(support, "HANG_WALL_SECONDS", 0.5)
    monkeypatch.setattr(support, "HANG_CHECK_SECONDS", 0.05)


def test_a_quick_call_passes(short_bounds: None) -> None:
    with guard(10):
        sum(range(1000))


def _spin(cpu_seconds: float) -> None:
    end = time.process_time() + cpu_seconds
    while time.process_time() < end:
        pass


def test_a_swallowed_hang_still_fails_the_call(
    short_bounds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the CPU bound, so a starved test process cannot pass the wall bound before the
    # body's `try` is entered.
    monkeypatch.setattr(support, "HANG_WALL_SECONDS", 60.0)
    swallowed = 0
    with pytest.raises(Hang, match="of CPU"):
        with guard(10, memory=False):
            try:  # a decoder that catches everything
                _spin(5.0)
            except BaseException:
                swallowed += 1
    assert swallowed == 1


def test_a_blocked_call_fails_on_wall_time(short_bounds: None) -> None:
    with pytest.raises(Hang, match="wall time"):
        with guard(10, memory=False):
            time.sleep(2)
