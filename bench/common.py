"""Shared benchmark plumbing: the environment record and JSON output."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def environment() -> dict[str, Any]:
    from google.protobuf.internal import api_implementation

    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = (0.0, 0.0, 0.0)
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "protobuf": api_implementation.Type(),
        "loadavg": [round(x, 2) for x in load],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def emit(name: str, result: dict[str, Any], save: bool = True) -> None:
    """Print the result as JSON and save it to bench/results/<name>.json."""
    doc = {"benchmark": name, "environment": environment(), **result}
    text = json.dumps(doc, indent=2)
    print(text)
    if save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(text + "\n")


def base_port(stores: int) -> int:
    """Free ports for a benchmark cluster, away from the defaults (20160...) and from the
    ranges the tests pick from, so that a test or a playground running meanwhile does not
    take them between the check and the start."""
    import random

    from multiraft.server.localcluster import free_base_port

    return free_base_port(stores + 2, start=random.randrange(45000, 58000, 100))
