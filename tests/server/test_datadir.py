"""The data-dir lock and the listen-address check that run before a store creates anything."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from multiraft.server.config import ConfigError, load_config
from multiraft.server.datadir import LOCK_FILE, DataDirLock, DataDirLocked
from multiraft.server.node import StoreNode
from multiraft.server.ports import check_listen_addrs

from .nodes import Nodes, node_config


def test_lock_names_the_holder_and_is_released(tmp_path: Path) -> None:
    d = tmp_path / "data"
    first = DataDirLock(d)
    first.acquire()
    assert (d / LOCK_FILE).read_text().strip() == str(os.getpid())
    # flock conflicts between two open files, even within one process.
    with pytest.raises(DataDirLocked) as e:
        DataDirLock(d).acquire()
    assert e.value.pid == os.getpid()
    assert f"pid {os.getpid()}" in str(e.value) and "\n" not in str(e.value)
    first.release()
    first.release()  # idempotent
    again = DataDirLock(d)
    again.acquire()
    again.release()


def test_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    d = tmp_path / "data"
    code = (
        "import sys, time; from multiraft.server.datadir import DataDirLock; "
        f"DataDirLock({str(d)!r}).acquire(); print('locked', flush=True); time.sleep(600)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirLocked) as e:
            DataDirLock(d).acquire()
        assert e.value.pid == child.pid
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    lock = DataDirLock(d)
    lock.acquire()  # the kernel released the dead holder's lock
    assert (d / LOCK_FILE).read_text().strip() == str(os.getpid())
    lock.release()


def _listening() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_listen_addrs(tmp_path: Path) -> None:
    free = f"127.0.0.1:{_free_port()}"
    check_listen_addrs({"peer_addr": free, "client_addr": f"127.0.0.1:{_free_port()}"})
    with _listening() as busy:
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"admin_addr 127.0.0.1:{port}: .*already in use"):
            check_listen_addrs({"peer_addr": free, "admin_addr": f"127.0.0.1:{port}"})
    # Two settings naming one port.
    port = _free_port()
    with pytest.raises(ConfigError, match="client_addr .*already in use"):
        check_listen_addrs({"peer_addr": f"127.0.0.1:{port}", "client_addr": f"127.0.0.1:{port}"})
    # 192.0.2.1 (TEST-NET-1) is nobody's address.
    with pytest.raises(ConfigError, match="not an address of this machine"):
        check_listen_addrs({"peer_addr": "192.0.2.1:20161"})


def test_store_on_a_busy_port_creates_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 1)
        with _listening() as busy:
            port = busy.getsockname()[1]
            cfg = node_config(nodes.base, 1, 1, tmp_path, client_addr=f"127.0.0.1:{port}")
            node = StoreNode(load_config(None, cfg))
            with pytest.raises(ConfigError, match="client_addr"):
                await node.start()
        assert not Path(cfg["data_dir"]).exists()

    asyncio.run(main())


def test_second_node_on_a_locked_data_dir(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = Nodes(tmp_path, 1)
        first = await nodes.start(1)
        try:
            # Same data dir, other ports (the layout of a store 2 of the same base).
            cfg = node_config(nodes.base, 1, 1, tmp_path)
            other = node_config(nodes.base, 2, 2, tmp_path)
            for key in ("client_addr", "peer_addr", "admin_addr"):
                cfg[key] = other[key]
            cfg["initial_cluster"] = f"1={other['peer_addr']}"
            second = StoreNode(load_config(None, cfg))
            with pytest.raises(DataDirLocked, match=f"pid {os.getpid()}"):
                await second.start()
            assert first.store.peers  # the first is unaffected
        finally:
            await nodes.close()
        # Stopped: the data dir is free again.
        again = await nodes.start(1)
        await again.stop()

    asyncio.run(main())
