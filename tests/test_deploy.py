"""The deploy examples are valid configurations: every store of the docker-compose file, the
Kubernetes StatefulSet and the systemd example parses as `multiraft server` would parse it,
advertises reachable addresses, and advertises the peer address the others dial it at."""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path

import yaml

from multiraft.server.config import ServerConfig
from multiraft.server.main import add_server_parser, config_from_args

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _config(argv: list[str]) -> ServerConfig:
    parser = argparse.ArgumentParser()
    add_server_parser(parser.add_subparsers(dest="command"))
    return config_from_args(parser.parse_args(["server", *argv]))


def _check_cluster(configs: dict[int, ServerConfig]) -> None:
    assert sorted(configs) == [1, 2, 3]
    for sid, c in configs.items():
        assert c.store_id == sid
        assert c.advertise_client_addr and c.advertise_peer_addr and c.advertise_admin_addr
        # The address the others dial (initial_cluster) is the one this store advertises.
        host, port = c.peers()[sid]
        assert c.advertise_peer_addr == f"{host}:{port}"


def test_docker_compose() -> None:
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    stores = {name: s for name, s in doc["services"].items() if name.startswith("store")}
    configs = {}
    for s in stores.values():
        c = _config(s["command"])
        configs[c.store_id] = c
        # Clients run on the host: the advertised client address is the published port.
        published = [p for p in s["ports"] if p.endswith(":20160")]
        assert [c.advertise_client_addr] == [p.rsplit(":", 1)[0] for p in published]
    _check_cluster(configs)


def test_kubernetes_statefulset() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "statefulset.yaml").read_text()))
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    script = container["args"][0]
    assert "exec multiraft server" in script
    # Let the shell expand it as in the pod, printing the arguments instead of running.
    script = script.replace("exec multiraft server", "printf '%s\\n'")
    configs = {}
    for ordinal in range(3):
        out = subprocess.run(
            ["sh", "-c", script], capture_output=True, text=True, check=True, timeout=30,
            env={"HOSTNAME": f"multiraft-{ordinal}", "POD_NAMESPACE": "prod"},
        ).stdout
        c = _config(out.splitlines())
        assert c.advertise_peer_addr == f"multiraft-{ordinal}.multiraft.prod.svc:20161"
        configs[c.store_id] = c
    _check_cluster(configs)


def test_systemd_example() -> None:
    unit = (DEPLOY / "systemd" / "multiraft.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[1] == "server"
    toml = str(DEPLOY / "systemd" / "multiraft.toml")
    argv = [toml if a == "/etc/multiraft/multiraft.toml" else a for a in argv[2:]]
    c = _config(argv)
    assert c.store_id == 1 and c.client_addr.startswith("0.0.0.0:")
    assert c.advertise_client_addr == "10.0.0.1:20160"
    assert c.advertise_peer_addr == "10.0.0.1:20161" == ":".join(map(str, c.peers()[1]))
    assert c.advertise_admin_addr == "10.0.0.1:20180"
