from __future__ import annotations

import pytest

from .support import COUNTS, EXAMPLES_ENV, long_mode


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    mode = f"long mode, {EXAMPLES_ENV} set" if long_mode() else "CI"
    terminalreporter.write_sep("-", f"fuzz inputs per decoder ({mode})")
    for name, n in sorted(COUNTS.items()):
        terminalreporter.write_line(f"{name:40} {n:>12,}")
