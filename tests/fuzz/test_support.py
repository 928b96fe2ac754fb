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


def test_a_loop_that_swallows_the_alarm_still_fails(short_bounds: None) -> None:
    swallowed = 0
    with pytest.raises(Hang, match="of CPU"):
        with guard(10, memory=False):
            end = time.process_time() + 0.6
            while time.process_time() < end:
                try:
                    sum(range(1000))
                except BaseException:  # a decoder that catches everything
                    swallowed += 1
    assert swallowed >= 1


def test_a_blocked_call_fails_on_wall_time(short_bounds: None) -> None:
    with pytest.raises(Hang, match="wall time"):
        with guard(10, memory=False):
            time.sleep(2)
