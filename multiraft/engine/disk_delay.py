"""Test-only: a slow disk for `LmdbEngine` (fault tests on real processes,
multiraft/testing/nemesis.py).

When the environment variable `MULTIRAFT_TEST_DISK_DELAY` is set, every durable commit of the
engine first sleeps (on the writer thread, inside the write transaction, as a slow fsync
would). Its value is either a number of milliseconds, fixed for the life of the process, or
the path of a file holding one: the file is re-read at most every 50 ms, so a test changes the
delay of a running store by rewriting it (a missing, empty or unreadable file means no delay).
Unset — the default, and the only setting for production — the engine does not look at any
of this.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

__all__ = ["ENV", "DiskDelay", "disk_delay_from_env"]

ENV = "MULTIRAFT_TEST_DISK_DELAY"
# A delay file is re-read at most this often (seconds).
_REREAD = 0.05

_log = logging.getLogger(__name__)


class DiskDelay:
    """The delay `spec` describes: milliseconds, or a file holding milliseconds."""

    def __init__(self, spec: str, reread: float = _REREAD) -> None:
        self.spec = spec
        self.reread = reread
        self._fixed: float | None
        try:
            self._fixed = max(0.0, float(spec)) / 1000
        except ValueError:
            self._fixed = None
        self._current = 0.0
        self._read_at = float("-inf")

    def seconds(self) -> float:
        """The delay now (seconds)."""
        if self._fixed is not None:
            return self._fixed
        now = time.monotonic()
        if now - self._read_at >= self.reread:
            self._read_at = now
            try:
                with open(self.spec) as f:
                    text = f.read().strip()
                self._current = max(0.0, float(text)) / 1000 if text else 0.0
            except (OSError, ValueError):
                self._current = 0.0
        return self._current

    def wait(self) -> None:
        delay = self.seconds()
        if delay > 0:
            time.sleep(delay)


def disk_delay_from_env(environ: Mapping[str, str] = os.environ) -> DiskDelay | None:
    spec = environ.get(ENV, "")
    if not spec:
        return None
    _log.warning("%s=%s: durable commits may be delayed on purpose (a test-only slow disk)",
                 ENV, spec)
    return DiskDelay(spec)
