"""The defaults agree: `multiraft --version`; a playground at its default ports answers
`multiraft ctl` and `multiraft kv` given no address (store 1 has a bare server's client and
admin ports, which are the CLIs' defaults)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import multiraft
from multiraft.client.cli import DEFAULT_CLIENT_ADDR
from multiraft.server.config import ServerConfig
from multiraft.server.localcluster import DEFAULT_BASE_PORT, port_free, store_ports

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MULTIRAFT_CLIENT", None)
    return env


def _cli_defaults() -> tuple[str, str]:
    """(ctl's --admin default, kv's --client default), from the parsers `multiraft` uses."""
    from multiraft.client.cli import add_kv_parser
    from multiraft.server.ctl import add_ctl_parser

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_ctl_parser(sub)
    add_kv_parser(sub)
    ctl = parser.parse_args(["ctl", "status"])
    kv = parser.parse_args(["kv", "get", "k"])
    return ctl.admin, kv.client


def test_playground_layout_matches_the_cli_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MULTIRAFT_CLIENT", raising=False)
    ctl_admin, kv_client = _cli_defaults()
    client, _, admin = store_ports(DEFAULT_BASE_PORT, 1)
    assert ctl_admin == f"127.0.0.1:{admin}" == ServerConfig().admin_addr
    assert kv_client == f"127.0.0.1:{client}" == ServerConfig().client_addr == DEFAULT_CLIENT_ADDR
    # No two ports of a full local cluster collide.
    ports = [p for sid in range(1, 11) for p in store_ports(DEFAULT_BASE_PORT, sid)]
    assert len(set(ports)) == len(ports)


def test_version() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "multiraft", "--version"],
        capture_output=True, text=True, timeout=60, env=_env(),
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"multiraft {multiraft.__version__}\n"
    with open(ROOT / "pyproject.toml", "rb") as f:
        assert tomllib.load(f)["project"]["version"] == multiraft.__version__


def test_ctl_and_kv_reach_a_default_playground(tmp_path: Path) -> None:
    ports = [p for sid in (1, 2) for p in store_ports(DEFAULT_BASE_PORT, sid)]
    if not all(port_free(p) for p in ports):
        pytest.skip("the default ports are in use")
    pg = subprocess.Popen(
        [
            sys.executable, "-m", "multiraft", "playground", "--stores", "2",
            "--initial-regions", "2", "--data-dir", str(tmp_path / "pg"), "--base-tick-ms", "50",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        assert pg.stdout is not None
        banner = []
        for line in pg.stdout:
            banner.append(line)
            if line.startswith("Logs:"):
                break
        text = "".join(banner)
        assert "all with a leader" in text, text + (pg.stderr.read() if pg.stderr else "")
        # The banner's commands need no address at the default ports.
        assert "  multiraft ctl status" in text and "  multiraft kv put hello world" in text

        def run(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "multiraft", *argv],
                capture_output=True, text=True, timeout=120, env=_env(),
            )

        st = run("ctl", "status")
        assert st.returncode == 0, st.stderr
        assert st.stdout.startswith("store 1 of cluster 1")
        put = run("kv", "put", "hello", "world")
        assert put.returncode == 0, put.stderr
        get = run("kv", "get", "hello")
        assert (get.returncode, get.stdout) == (0, "world\n"), get.stderr
    finally:
        pg.send_signal(signal.SIGTERM)
        try:
            pg.communicate(timeout=60)
        finally:
            if pg.poll() is None:
                pg.kill()
    assert pg.returncode == 0
