"""The command line on real processes: invalid configurations exit 2 with one line; a bare
`multiraft server` is a working single-store node that stops cleanly on SIGTERM; the
playground starts a cluster, waits for leaders and stops it."""

from __future__ import annotations

import json
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


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _server(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "multiraft", "server", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd, env=_env(),
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--store-id", "0"], "store_id must be"),
        (["--store-id", "two"], "expected an integer"),
        (["--client-addr", "nohost"], "client_addr: expected host:port"),
        (["--peer-addr", "127.0.0.1:70000"], "port out of range"),
        (["--initial-cluster", "1=127.0.0.1:1", "--store-id", "2"], "not in initial_cluster"),
        (["--config", "missing.toml"], "does not exist"),
        (["--config", "unknown.toml"], "unknown key 'colour'"),
        (["--log-format", "xml"], "log_format must be"),
    ],
)
def test_invalid_config_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "unknown.toml").write_text("colour = 'blue'\n")
    p = _server(args, tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and message in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_data_dir_of_another_store_exits_2(tmp_path: Path) -> None:
    client, peer, admin = store_ports(free_test_base_port(1), 1)
    addrs = [
        "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
        "--admin-addr", f"127.0.0.1:{admin}",
    ]
    data = ["--data-dir", str(tmp_path / "d")]
    # A store 1 writes its identity, and stops.
    proc = subprocess.Popen(
        [sys.executable, "-m", "multiraft", "server", *addrs, *data],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
    )
    try:
        _wait_http(f"http://127.0.0.1:{admin}/health", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    for other in (["--store-id", "2", "--peer-addr", f"127.0.0.1:{peer}"], ["--cluster-id", "7"]):
        p = _server([*addrs, *data, *other], tmp_path)
        assert p.returncode == 2, p.stderr
        assert p.stderr.count("\n") == 1 and "belongs to" in p.stderr, p.stderr


def _wait_http(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bytes(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_bare_server_is_a_single_store_node(tmp_path: Path) -> None:
    """`multiraft server` with no arguments at all (default ports; skipped if taken)."""
    from multiraft.server.localcluster import port_free

    if not all(port_free(p) for p in (20160, 20161, 20180)):
        pytest.skip("the default ports are in use")
    proc = subprocess.Popen(
        [sys.executable, "-m", "multiraft", "server"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
    )
    try:
        _wait_http("http://127.0.0.1:20180/health", proc)
        deadline = time.monotonic() + 60
        while True:
            regions = json.loads(_wait_http("http://127.0.0.1:20180/regions", proc))["regions"]
            if regions and regions[0]["leader"] is not None:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (tmp_path / "multiraft-data").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_json_logs(tmp_path: Path) -> None:
    client, peer, admin = store_ports(free_test_base_port(1), 1)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "multiraft", "server", "--log-format", "json",
            "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
            "--admin-addr", f"127.0.0.1:{admin}", "--data-dir", str(tmp_path / "d"),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        _wait_http(f"http://127.0.0.1:{admin}/health", proc)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(d) for d in lines)


def test_playground_starts_and_stops(tmp_path: Path) -> None:
    base = free_test_base_port(4)
    p = subprocess.run(
        [
            sys.executable, "-m", "multiraft", "playground", "--stores", "3",
            "--initial-regions", "2", "--data-dir", str(tmp_path / "pg"),
            "--base-port", str(base), "--base-tick-ms", "50", "--exit-after", "0.5",
        ],
        capture_output=True, text=True, timeout=180, env=_env(),
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "3 stores, 2 regions, all with a leader" in p.stdout
    assert f"127.0.0.1:{store_ports(base, 1)[2]}" in p.stdout  # an admin endpoint
    assert "multiraft ctl" in p.stdout and "multiraft kv" in p.stdout
    assert " split 1 m " in p.stdout and " merge NEW 1 " in p.stdout  # "m" is in region 1 of 2
    assert "stopped." in p.stdout


def test_playground_stops_on_sigterm(tmp_path: Path) -> None:
    base = free_test_base_port(2)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "multiraft", "playground", "--stores", "1",
            "--data-dir", str(tmp_path / "pg"), "--base-port", str(base),
            "--base-tick-ms", "50",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "all with a leader" in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped." in out


def test_sigterm_during_the_start_stops_the_store(tmp_path: Path) -> None:
    """A store bootstrapping 1,000,000 regions (minutes) stops at a SIGTERM where it is,
    before it serves, with status 0 and the data dir unlocked, not once its start is over."""
    client, peer, admin = store_ports(free_test_base_port(1), 1)
    args = [
        "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
        "--admin-addr", f"127.0.0.1:{admin}", "--data-dir", str(tmp_path / "d"),
        "--initial-regions", "1000000",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "multiraft", "server", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
    )
    assert proc.stderr is not None
    try:
        # Once the engine is open, the bootstrap runs.
        while not (tmp_path / "d" / "data.mdb").exists():
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        log = proc.stderr.read()
        assert proc.wait(120) == 0, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "SIGTERM during the start: stopped" in log, log
    assert " up: " not in log and "Traceback" not in log, log
