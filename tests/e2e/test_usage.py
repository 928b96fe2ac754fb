"""The command lines as an operator meets them (subprocesses): `multiraft kv` against a
stopped store fails at the connect, not after its call timeout; every usage error of the CLIs
exits 2 with a message on stderr."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from multiraft.server.localcluster import store_ports
from tests.ports import free_test_base_port

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "multiraft", *argv], capture_output=True, text=True,
        timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def test_kv_against_a_stopped_store_fails_at_connect(tmp_path: Path) -> None:
    client, peer, admin = store_ports(free_test_base_port(1), 1)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "multiraft", "server", "--data-dir", str(tmp_path / "d"),
            "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
            "--admin-addr", f"127.0.0.1:{admin}", "--base-tick-ms", "50",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/health", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        up = _run("kv", "--client", f"127.0.0.1:{client}", "put", "k", "v")
        assert up.returncode == 0, up.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    # Stopped. With a 10-minute --timeout, only failing at the connect ends within the
    # subprocess timeout.
    p = _run("kv", "--client", f"127.0.0.1:{client}", "--timeout", "600", "get", "k")
    assert p.returncode == 1, p.stderr
    assert p.stderr.count("\n") == 1
    assert f"no store accepts a connection: 127.0.0.1:{client}: " in p.stderr


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["--no-such-flag"],
        ["kv"],
        ["kv", "get"],
        ["kv", "scan", "--limit", "many"],
        ["kv", "--hex", "get", "xyz"],
        ["kv", "--client", "nohost", "get", "k"],
        ["ctl"],
        ["ctl", "region", "one"],
        ["ctl", "transfer-leader", "1"],
        ["server", "--store-id", "0"],
        ["server", "--no-such-flag"],
        ["playground", "--stores", "0"],
        ["playground", "--initial-regions", "0"],
        ["playground", "--exit-after", "-1"],
        ["playground", "--base-port", "70000"],
        ["example", "--entries", "-1"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    p = _run(*argv)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stdout == "" and "error" in p.stderr and "Traceback" not in p.stderr
