"""Operating safely, on real processes: a second server on a data dir in use exits 2 naming the
holder's pid (and the first keeps serving); a listen address in use exits 2 before anything is
created."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from multiraft.server.localcluster import store_ports
from tests.ports import free_test_base_port

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _addr_args(base: int, sid: int) -> list[str]:
    client, peer, admin = store_ports(base, sid)
    return [
        "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
        "--admin-addr", f"127.0.0.1:{admin}",
    ]


def _server(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "multiraft", "server", "--base-tick-ms", "50", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(), cwd=cwd,
    )


def _wait_leader(admin: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    import json

    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            with urllib.request.urlopen(f"http://{admin}/regions", timeout=2) as r:
                regions = json.loads(r.read())["regions"]
            if regions and all(x["leader"] is not None for x in regions):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "no leader"
        time.sleep(0.1)


def test_second_server_on_the_same_data_dir_exits_2(tmp_path: Path) -> None:
    from multiraft.client import Client

    base = free_test_base_port(2)
    data = ["--data-dir", str(tmp_path / "d")]
    first = _server([*_addr_args(base, 1), *data], tmp_path)
    try:
        client, _, admin = store_ports(base, 1)
        _wait_leader(f"127.0.0.1:{admin}", first)
        # Same data dir, every port different.
        second = subprocess.run(
            [sys.executable, "-m", "multiraft", "server", *_addr_args(base, 2), *data],
            capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path,
        )
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1, second.stderr
        assert "in use by another multiraft process" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        # The first one still serves.
        with Client([f"127.0.0.1:{client}"], timeout=30) as c:
            c.put(b"k", b"v")
            assert c.get(b"k") == b"v"
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=30)
    assert first.returncode == 0, err


def test_port_in_use_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    base = free_test_base_port(1)
    args = _addr_args(base, 1)
    _, peer, _ = store_ports(base, 1)
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", peer))
        busy.listen(1)
        p = subprocess.run(
            [sys.executable, "-m", "multiraft", "server", *args, "--data-dir",
             str(tmp_path / "new")],
            capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path,
        )
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1, p.stderr
    assert f"peer_addr 127.0.0.1:{peer}" in p.stderr and "already in use" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "new").exists()
